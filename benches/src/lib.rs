//! Shared pieces of Tally's benchmarks: deterministic synthetic events.

pub mod synth;
