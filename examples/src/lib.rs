//! Walkthrough examples for Tally.
//!
//! [`saas`] simulates the users of a small invoicing SaaS ("Invoicely"); the
//! `saas_sim` example sends its events to a running `tally serve` through
//! the SDK, so that the query commands have real-looking data to chew on:
//!
//! ```text
//! cargo run -p tally-examples --example saas_sim -- --key WRITE_KEY
//! ```

pub mod saas;
