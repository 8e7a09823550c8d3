//! The query crate's tests: hand-worked cases for every SPEC §4 rule, and
//! property tests of each analysis against a naive reference model.
//! One test binary (see matklad's "Delete Cargo Integration Tests").

mod activation;
mod active;
mod breakdowns;
mod filters;
mod funnel;
mod identity;
mod lifecycle;
mod retention;
mod seg;
mod source_ranges;
mod trend;
mod tz;
