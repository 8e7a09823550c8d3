//! Shared pieces of Tally's benchmarks: deterministic synthetic events.

pub mod server;
pub mod synth;
