//! End-to-end throughput from the SDK into `tally serve`: one app tracks
//! events as fast as it can through `tally_sdk::Client` (batches of
//! `--batch`, gzip), then `shutdown` waits until the collector has
//! acknowledged (fsync'd) every one.
//!
//! ```text
//! cargo build --release -p tally-collector -p tally-benches --bin tally --bin sdk_load
//! target/release/sdk_load --spawn target/release/tally --events 1000000
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use tally_benches::server::spawn;

#[derive(Debug, Parser)]
struct Args {
    /// The `tally` binary to start on a temporary data directory.
    #[arg(long)]
    spawn: String,
    /// Events to track.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// SDK batch size.
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (_server, url, key) = spawn(&args.spawn)?;
    let client = tally_sdk::Client::builder(url, key)
        .batch_size(args.batch)
        .queue_capacity(200_000)
        .drop_policy(tally_sdk::DropPolicy::Newest)
        .shutdown_timeout(Duration::from_secs(600))
        .build()?;
    let started = Instant::now();
    let mut refused = 0u64;
    for i in 0..args.events {
        let sent = client
            .track(
                format!("user-{}", i % 50_000),
                if i % 4 == 0 { "signup" } else { "page_view" },
            )
            .property("n", i % 1000)
            .send();
        if sent.is_err() {
            // Queue full: the app would drop it; here, wait and count it.
            refused += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if i % 1024 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let tracked_in = started.elapsed();
    let report = client.shutdown().await;
    let total = started.elapsed().as_secs_f64();
    let stats = client.stats();
    println!(
        "sdk -> tally serve: {} events accepted in {:.2} s = {:.0} events/s end to end \
         (track loop {:.2} s; {} dropped on a full queue; all delivered: {})",
        stats.accepted,
        total,
        stats.accepted as f64 / total,
        tracked_in.as_secs_f64(),
        refused,
        report.all_delivered()
    );
    Ok(())
}
