//! Times one analysis on a data directory without the process around it:
//! opens the store once, then runs the analysis `--runs` times exactly as
//! `tally <analysis> --data DIR --format json` does, and prints the store
//! opening time, each run's time and the answer as one JSON object.
//!
//! ```text
//! target/release/query_time --data tally-data --runs 5 funnel \
//!     steps=page_view,signup,invoice_sent window=7d from=2026-08-10 to=2026-10-26
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use tally_collector::config::Config;
use tally_collector::store::{DiskStore, StoreOptions};
use tally_query::Format;

#[derive(Debug, Parser)]
#[command(name = "query_time")]
struct Args {
    /// Data directory (as `tally --data`)
    #[arg(long)]
    data: PathBuf,
    /// Timed runs after one untimed warm-up
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// funnel, activation, retention, lifecycle or active
    analysis: String,
    /// Parameters as NAME=VALUE, named as the command-line flags
    params: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pairs: Vec<(String, String)> = args
        .params
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim_start_matches('-').to_string(), v.to_string()))
                .with_context(|| format!("'{p}' is not NAME=VALUE"))
        })
        .collect::<anyhow::Result<_>>()?;
    let t = Instant::now();
    let store = DiskStore::open(&Config::store_dir(&args.data), &StoreOptions::default())?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let query = tally_collector::analysis::Query::parse(
        &args.analysis,
        pairs,
        tally_event::time::now_ms(),
    )?;
    let run = || query.run(&store, Format::Json).map(|a| a.body);
    let answer = run()?;
    let mut runs_ms = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let t = Instant::now();
        let again = run()?;
        runs_ms.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(again == answer, "the answer changed between runs");
    }
    let mut sorted = runs_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    let result: serde_json::Value = serde_json::from_str(&answer)?;
    println!(
        "{}",
        serde_json::json!({
            "analysis": args.analysis,
            "open_ms": open_ms,
            "runs_ms": runs_ms,
            "median_ms": median,
            "result": result,
        })
    );
    Ok(())
}
