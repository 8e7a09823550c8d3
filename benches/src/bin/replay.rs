//! Replays an NDJSON file of wire-form events to a running collector in
//! `POST /v1/batch` requests (the HTTP half of `benches/compare.sh`), and
//! reports events/s, request latency and the summed ingest answers.
//!
//! ```text
//! target/release/replay --url http://127.0.0.1:8080 --key $TALLY_WRITE_KEY events.ndjson
//! ```
//!
//! Lines are spliced into the batch body as they are (not parsed), so every
//! line must be JSON; blank lines are skipped. Each request is answered only
//! once its events are fsync'd, so the figure includes durability.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use tokio::sync::{Mutex, mpsc};

#[derive(Debug, Parser)]
#[command(name = "replay")]
struct Args {
    /// NDJSON file to send
    file: PathBuf,
    /// Collector URL
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Write key
    #[arg(long, env = "TALLY_WRITE_KEY", hide_env_values = true)]
    key: String,
    /// Events per request
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Requests in flight at once
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Print one JSON line instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Default)]
struct Totals {
    lines: u64,
    requests: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u64>,
}

/// Reads `file` into batch bodies of `batch` lines each.
fn read_batches(
    file: PathBuf,
    batch: usize,
    tx: mpsc::Sender<(u64, String)>,
) -> anyhow::Result<()> {
    let input =
        std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
    let mut input = std::io::BufReader::with_capacity(1 << 20, input);
    let mut line = String::new();
    loop {
        let mut body = String::with_capacity(batch * 260 + 16);
        body.push_str("{\"batch\":[");
        let mut n = 0u64;
        while n < batch as u64 {
            line.clear();
            if input.read_line(&mut line)? == 0 {
                break;
            }
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            if n > 0 {
                body.push(',');
            }
            body.push_str(text);
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        body.push_str("]}");
        if tx.blocking_send((n, body)).is_err() {
            return Ok(());
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let (tx, rx) = mpsc::channel::<(u64, String)>(args.concurrency * 2);
    let rx = Arc::new(Mutex::new(rx));
    let totals = Arc::new(Mutex::new(Totals::default()));
    let started = Instant::now();
    let (file, batch) = (args.file.clone(), args.batch);
    let reader = tokio::task::spawn_blocking(move || read_batches(file, batch, tx));
    let url = format!("{}/v1/batch", args.url.trim_end_matches('/'));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (client, url, key) = (client.clone(), url.clone(), args.key.clone());
            let (rx, totals) = (rx.clone(), totals.clone());
            tokio::spawn(async move {
                loop {
                    let Some((n, body)) = rx.lock().await.recv().await else {
                        return;
                    };
                    let t = Instant::now();
                    let resp = client
                        .post(&url)
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    let outcome = match resp {
                        Ok(r) => {
                            let ok = r.status().is_success();
                            let status = r.status();
                            match r.text().await {
                                Ok(text) if ok => serde_json::from_str::<serde_json::Value>(&text)
                                    .map_err(|e| format!("unreadable answer ({e}): {text}")),
                                Ok(text) => Err(format!("{status}: {text}")),
                                Err(e) => Err(format!("{status}: {e}")),
                            }
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    let us = t.elapsed().as_micros() as u64;
                    let mut tot = totals.lock().await;
                    tot.lines += n;
                    tot.requests += 1;
                    match outcome {
                        Ok(v) => {
                            let count = |k: &str| v[k].as_u64().unwrap_or(0);
                            tot.accepted += count("accepted");
                            tot.duplicates += count("duplicates");
                            tot.rejected += v["rejected"].as_array().map_or(0, |a| a.len() as u64);
                            tot.latencies_us.push(us);
                        }
                        Err(e) => {
                            tot.errors += 1;
                            tot.first_error.get_or_insert(e);
                        }
                    }
                }
            })
        })
        .collect();
    reader.await??;
    for w in workers {
        w.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut tot = totals.lock().await;
    tot.latencies_us.sort_unstable();
    let lat = &tot.latencies_us;
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let report = serde_json::json!({
        "lines": tot.lines,
        "seconds": secs,
        "lines_per_sec": tot.lines as f64 / secs,
        "requests": tot.requests,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "accepted": tot.accepted,
        "duplicates": tot.duplicates,
        "rejected": tot.rejected,
        "errors": tot.errors,
        "first_error": tot.first_error,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} lines in {:.1} s: {:.0} lines/s; accepted {}, duplicates {}, rejected {}, \
             failed requests {}; p50 {:.1} ms, p99 {:.1} ms",
            tot.lines,
            secs,
            tot.lines as f64 / secs,
            tot.accepted,
            tot.duplicates,
            tot.rejected,
            tot.errors,
            pct(0.5),
            pct(0.99)
        );
    }
    if tot.errors > 0 {
        anyhow::bail!(
            "{} requests failed, the first with: {}",
            tot.errors,
            tot.first_error.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}
