//! Populates a local `tally serve` with a few weeks of a simulated invoicing
//! SaaS ("Invoicely"), sent through the Rust SDK, then prints the query
//! commands to try on it.
//!
//! ```text
//! # terminal 1: a collector (prints its write and read keys on first start)
//! tally serve --data ./tally-data
//! # terminal 2: about 11,600 events from 2,000 visitors over 8 weeks
//! cargo run -p tally-examples --example saas_sim -- --key WRITE_KEY
//! ```
//!
//! Flags (or environment): `--server` (`TALLY_SERVER`, default
//! `http://127.0.0.1:8080`), `--key` (`TALLY_WRITE_KEY`), `--visitors`,
//! `--days`, `--seed`; `--dry-run` only prints what would be sent and
//! `--ndjson FILE` writes the events for `tally import` instead.
//! Re-running with the same seed within the same hour sends the same event
//! ids, which the collector counts as duplicates rather than storing twice.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use tally_event::time::{format_rfc3339, ms_to_date, now_ms};
use tally_examples::saas::{Params, SimEvent, simulate};
use tally_sdk::{Client, DeliveryReport, DropPolicy, IDENTIFY_EVENT, Person, WireEvent};

#[derive(Debug, Parser)]
#[command(about = "Send a simulated SaaS's lifecycle events to a Tally collector")]
struct Args {
    /// Collector base URL.
    #[arg(long, env = "TALLY_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The collector's write key (printed by `tally serve` on first start).
    #[arg(long, env = "TALLY_WRITE_KEY")]
    key: Option<String>,
    /// Visitors arriving on their own (invited teammates come on top).
    #[arg(long, default_value_t = 2000)]
    visitors: usize,
    /// Days of history, ending now.
    #[arg(long, default_value_t = 56)]
    days: u32,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep unsent events in this directory across runs (the SDK's durable queue).
    #[arg(long)]
    queue_dir: Option<PathBuf>,
    /// Print a summary of the events without sending them.
    #[arg(long)]
    dry_run: bool,
    /// Write the events as NDJSON to this file (for `tally import`) instead of sending.
    #[arg(long, conflicts_with = "dry_run")]
    ndjson: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // The end of the history is the start of the current hour, so that a
    // re-run within the hour produces the very same events.
    let now = now_ms();
    let params = Params {
        visitors: args.visitors,
        days: args.days.max(1),
        seed: args.seed,
        end_ms: now - now.rem_euclid(3_600_000),
    };
    let events = simulate(&params);
    let from = ms_to_date(params.end_ms - i64::from(params.days) * 86_400_000);
    let to = ms_to_date(now).succ_opt().unwrap_or(ms_to_date(now));
    println!(
        "Invoicely: {} visitors over {} days ({} to {}): {} events",
        args.visitors,
        params.days,
        from,
        format_rfc3339(params.end_ms),
        events.len()
    );
    print_summary(&events);

    if args.dry_run {
        return ExitCode::SUCCESS;
    }
    if let Some(path) = &args.ndjson {
        return match write_ndjson(path, &events) {
            Ok(()) => {
                println!(
                    "\nWrote {}; load it with: tally import {}",
                    path.display(),
                    path.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    let Some(key) = args.key.clone() else {
        eprintln!(
            "error: no write key. Pass --key or set TALLY_WRITE_KEY \
             (`tally serve` prints the keys on its first start)."
        );
        return ExitCode::from(2);
    };

    let rejections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = rejections.clone();
    let mut builder = Client::builder(&args.server, key)
        .batch_size(1000)
        .queue_capacity(events.len().max(1))
        .drop_policy(DropPolicy::Newest)
        .shutdown_timeout(Duration::from_secs(60))
        .on_delivery(move |report| {
            let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
            match report {
                DeliveryReport::Delivered { rejected, .. } => {
                    sink.extend(
                        rejected
                            .iter()
                            .map(|r| format!("{}: {}", r.event.event, r.error)),
                    );
                }
                DeliveryReport::Failed { events, error, .. } => {
                    sink.push(format!("{} events not delivered: {error}", events.len()));
                }
                _ => {}
            }
        });
    if let Some(dir) = &args.queue_dir {
        builder = builder.durable(dir);
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };

    let started = Instant::now();
    // Send the first event alone, to find out early whether the collector
    // is there and takes the key.
    if let Some(first) = events.first() {
        let _ = track(&client, first);
        let probe = client.flush_within(Duration::from_secs(5)).await;
        if !probe.all_delivered() {
            let why = probe
                .last_error
                .map(|e| e.to_string())
                .unwrap_or_else(|| "no answer within 5 s".into());
            eprintln!(
                "error: cannot deliver to {}: {why}\nIs `tally serve` running there, and is the key its write key?",
                args.server
            );
            client.shutdown_within(Duration::from_secs(1)).await;
            return ExitCode::FAILURE;
        }
    }
    for e in events.iter().skip(1) {
        let _ = track(&client, e);
    }
    println!("\nSending to {} ...", args.server);
    let report = client.shutdown().await;
    let s = client.stats();
    println!(
        "Done in {:.1} s: {} accepted, {} duplicates, {} rejected, {} failed, {} dropped ({} requests, {} retries)",
        started.elapsed().as_secs_f64(),
        s.accepted,
        s.duplicates,
        s.rejected,
        s.failed,
        s.dropped,
        s.requests,
        s.retries,
    );
    let problems = rejections.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for p in problems.iter().take(5) {
        eprintln!("  {p}");
    }
    if !report.all_delivered() {
        eprintln!(
            "\n{} events could not be delivered{}. Is `tally serve` running at {} with this write key?",
            report.undelivered().count(),
            report
                .last_error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default(),
            args.server
        );
        if args.queue_dir.is_some() {
            eprintln!("They are kept in the queue directory and will be sent by the next run.");
        }
        return ExitCode::FAILURE;
    }

    println!("\nNow ask questions (READ_KEY is the read key `tally serve` printed):\n");
    let conn = format!("--server {} --key READ_KEY", args.server);
    let range = format!("--from {from} --to {to}");
    for cmd in [
        format!(
            // Landing-page views are anonymous and signups carry both ids,
            // which links them (SPEC §1): the funnel follows each visitor
            // across the signup.
            "tally funnel --steps page_view,signup,invoice_sent,plan_upgraded --window 30d {range} {conn}"
        ),
        format!(
            "tally activation --start signup --event invoice_sent --count 2 --within 14d {range} {conn}"
        ),
        format!(
            "tally retention --start signup --return invoice_sent --period week --periods 6 {range} {conn}"
        ),
        format!("tally lifecycle {range} {conn}"),
        format!("tally active {range} {conn}"),
    ] {
        println!("  {cmd}");
    }
    ExitCode::SUCCESS
}

/// Tracks one simulated event, with the time it happened.
fn track(client: &Client, e: &SimEvent) -> Result<tally_sdk::Uuid, tally_sdk::TrackError> {
    let mut t = match (&e.person, &e.anonymous_id) {
        // A login on another device: link that browser's anonymous id.
        (Person::User(user), Some(anon)) if e.name == IDENTIFY_EVENT => client.identify(user, anon),
        // The signup carries both ids, which links them just the same.
        (person, anon) => {
            let t = client.track(person.clone(), e.name);
            match anon {
                Some(anon) => t.anonymous_id(anon),
                None => t,
            }
        }
    };
    t = t
        .id(e.id)
        .timestamp_ms(e.at_ms)
        .properties(e.properties.iter().cloned());
    if let Some(stage) = e.stage {
        t = t.stage(stage);
    }
    if let Some(r) = e.revenue {
        t = t.revenue(r);
    }
    t.send()
}

fn print_summary(events: &[SimEvent]) {
    let mut by_name: BTreeMap<&str, (usize, std::collections::HashSet<&str>)> = BTreeMap::new();
    let mut revenue = 0.0;
    for e in events {
        let entry = by_name.entry(e.name).or_default();
        entry.0 += 1;
        entry.1.insert(e.person.key());
        revenue += e.revenue.unwrap_or(0.0);
    }
    println!("  {:<24} {:>8} {:>8}", "event", "events", "people");
    for (name, (n, people)) in &by_name {
        println!("  {name:<24} {n:>8} {:>8}", people.len());
    }
    println!("  net revenue: {revenue:.2} EUR");
    println!(
        "  (people: distinct user or anonymous ids; the analyses count an anonymous id\n   \
         linked by a signup or an identify for its user)"
    );
}

fn write_ndjson(path: &PathBuf, events: &[SimEvent]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for e in events {
        let (user_id, anonymous_id) = match &e.person {
            Person::User(u) => (Some(u.clone()), e.anonymous_id.clone()),
            Person::Anonymous(a) => (None, Some(a.clone())),
        };
        let wire = WireEvent {
            id: Some(e.id),
            event: e.name.to_owned(),
            user_id,
            anonymous_id,
            timestamp: Some(e.at_ms),
            sent_at: None,
            stage: e.stage,
            revenue: e.revenue,
            properties: (!e.properties.is_empty()).then(|| {
                e.properties
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect()
            }),
        };
        tally_sdk::serde_json::to_writer(&mut out, &wire)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
