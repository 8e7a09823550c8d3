//! Tally's analyses as pure computation: no HTTP, no storage, no clock.
//!
//! Every analysis follows one shape (after tantivy's aggregations):
//! parameters (serde) → scan the rows it needs from a [`Source`] →
//! per-person state → a mergeable intermediate → the final result (serde,
//! exactly the JSON of SPEC §4). Mergeable intermediates are what let one
//! query use several cores now and several machines later.

pub mod calendar;
pub mod error;
pub mod filter;
pub mod params;
pub mod render;
pub mod segment;
pub mod source;

pub use calendar::Zone;
pub use error::QueryError;
pub use filter::{GroupValue, Prop, Where};
pub use params::RawParams;
pub use render::{Format, Report};
pub use segment::{Breakdown, Group, GroupReport, Grouped, Segment};
pub use source::{Identity, MemEvent, MemSource, NameId, PersonId, Rows, Scan, Source};

pub mod activation;
pub mod active;
pub mod funnel;
mod group;
pub mod lifecycle;
pub mod retention;
pub mod review;
mod stats;
pub mod trend;
