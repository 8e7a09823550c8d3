//! Tally's collector: HTTP ingest of lifecycle events into an embedded
//! store, bulk import/export, and the `tally` command line. See
//! ARCHITECTURE.md at the repository root for the bird's-eye view.

pub mod analysis;
pub mod backend;
pub mod backup;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod error;
pub mod export;
pub mod http;
pub mod import;
pub mod keys;
pub mod remote;
pub mod review;

pub use error::Error;
/// The event store, its own crate (`tally-store`); re-exported so
/// `tally_collector::store::…` paths keep working.
pub use tally_store as store;
