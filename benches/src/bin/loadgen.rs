//! Load generator for `tally serve`: concurrent batched (`/v1/batch`) or
//! single-event (`/v1/track`) requests over loopback, reporting events/s
//! and request latency percentiles. Every request is acknowledged durably
//! by the collector (fsync'd group commit), so the figures include that.
//!
//! ```text
//! cargo build --release -p tally-collector -p tally-benches
//! target/release/loadgen --spawn target/release/tally --mode batch --seconds 20
//! target/release/loadgen --spawn target/release/tally --mode track --concurrency 128
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use tally_benches::server::spawn;
use tally_benches::synth::event_json;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum Mode {
    /// `POST /v1/batch` with `--batch` events per request.
    Batch,
    /// `POST /v1/track`, one event per request.
    Track,
}

#[derive(Debug, Parser)]
struct Args {
    /// Collector URL (ignored with --spawn).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Write key (ignored with --spawn).
    #[arg(long, env = "TALLY_WRITE_KEY", default_value = "")]
    key: String,
    /// Start this `tally` binary on a fresh temporary data dir instead.
    #[arg(long)]
    spawn: Option<String>,
    #[arg(long, value_enum, default_value = "batch")]
    mode: Mode,
    /// Events per batch request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long to run.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Persons to spread events over.
    #[arg(long, default_value_t = 50_000)]
    persons: u64,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (_guard, url, key) = match &args.spawn {
        Some(bin) => {
            let (g, u, k) = spawn(bin)?;
            (Some(g), u, k)
        }
        None => (None, args.url.clone(), args.key.clone()),
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let events = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|worker| {
            let (client, url, key) = (client.clone(), url.clone(), key.clone());
            let (events, errors) = (events.clone(), errors.clone());
            let (mode, batch, persons) = (args.mode, args.batch, args.persons);
            tokio::spawn(async move {
                let mut latencies_us = Vec::new();
                let mut seq = worker as u64 * 1_000_000_000;
                while Instant::now() < deadline {
                    let (path, body, n) = match mode {
                        Mode::Batch => {
                            let mut body = String::with_capacity(batch * 260);
                            body.push_str("{\"batch\":[");
                            for i in 0..batch {
                                if i > 0 {
                                    body.push(',');
                                }
                                body.push_str(&event_json(seq, persons));
                                seq += 1;
                            }
                            body.push_str("]}");
                            ("/v1/batch", body, batch as u64)
                        }
                        Mode::Track => {
                            seq += 1;
                            ("/v1/track", event_json(seq, persons), 1)
                        }
                    };
                    let t = Instant::now();
                    let resp = client
                        .post(format!("{url}{path}"))
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            latencies_us.push(t.elapsed().as_micros() as u64);
                            events.fetch_add(n, Ordering::Relaxed);
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies_us
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    let total = events.load(Ordering::Relaxed);
    let report = serde_json::json!({
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "batch": if args.mode == Mode::Batch { args.batch } else { 1 },
        "concurrency": args.concurrency,
        "seconds": secs,
        "events": total,
        "events_per_sec": total as f64 / secs,
        "requests_per_sec": lat.len() as f64 / secs,
        "p50_ms": pct(0.50) as f64 / 1000.0,
        "p99_ms": pct(0.99) as f64 / 1000.0,
        "errors": errors.load(Ordering::Relaxed),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{:>6} x{:<4} c={:<4} {:>10.0} events/s {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
            report["mode"].as_str().unwrap_or(""),
            report["batch"],
            args.concurrency,
            report["events_per_sec"].as_f64().unwrap_or(0.0),
            report["requests_per_sec"].as_f64().unwrap_or(0.0),
            report["p50_ms"].as_f64().unwrap_or(0.0),
            report["p99_ms"].as_f64().unwrap_or(0.0),
            report["errors"],
        );
    }
    Ok(())
}
