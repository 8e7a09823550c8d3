//! The three target analyses on the store, as `tally funnel|retention|
//! activation --data DIR` run them (warm). The store is generated once per
//! size and kept under target/ for later runs.
//!
//! `TALLY_BENCH_PERSONS=500000 cargo bench -p tally-benches --bench queries`
//! (the default, 50,000 persons, is about 1M events).

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use tally_benches::synth::Lifecycle;
use tally_collector::store::{DiskStore, Ingest, StoreOptions};
use tally_query::{RawParams, Source, activation, funnel, retention, trend};

fn store() -> DiskStore {
    let persons: u64 = std::env::var("TALLY_BENCH_PERSONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/bench-store-{persons}-v3"));
    let ready = dir.join("READY");
    let options = StoreOptions::default();
    if !ready.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let store = DiskStore::open(&dir, &options).unwrap();
        let mut events = Lifecycle::new(persons, 7);
        let mut n = 0;
        loop {
            let chunk: Vec<_> = events.by_ref().take(65_536).collect();
            if chunk.is_empty() {
                break;
            }
            n += chunk.len();
            store.append(chunk).unwrap();
        }
        store.sync().unwrap();
        store.close().unwrap();
        eprintln!(
            "generated {n} events for {persons} persons in {}",
            dir.display()
        );
        std::fs::write(&ready, n.to_string()).unwrap();
        drop(store);
    }
    DiskStore::open(&dir, &options).unwrap()
}

fn params(pairs: &[(&str, &str)]) -> RawParams {
    RawParams::new(pairs.iter().map(|(k, v)| (*k, v.to_string())))
}

fn queries(c: &mut Criterion) {
    let store = store();
    let src: &dyn Source = &store;
    let now = 1_800_000_000_000;
    let range = [("from", "2026-01-05"), ("to", "2026-04-05")];
    let f = funnel::FunnelParams::from_raw(
        &mut params(&[
            ("steps", "page_view,signup,invoice_sent,plan_purchased"),
            ("window", "7d"),
            range[0],
            range[1],
        ]),
        now,
    )
    .unwrap();
    let r = retention::RetentionParams::from_raw(
        &mut params(&[
            ("start", "signup"),
            ("return", "invoice_sent"),
            range[0],
            range[1],
        ]),
        now,
    )
    .unwrap();
    let a = activation::ActivationParams::from_raw(
        &mut params(&[
            ("start", "signup"),
            ("event", "invoice_sent"),
            ("count", "2"),
            ("within", "30d"),
            range[0],
            range[1],
        ]),
        now,
    )
    .unwrap();
    let t = trend::TrendParams::from_raw(
        &mut params(&[
            ("event", "any"),
            ("measure", "users"),
            ("interval", "day"),
            range[0],
            range[1],
        ]),
        now,
    )
    .unwrap();
    let mut g = c.benchmark_group("queries");
    g.sample_size(10);
    g.bench_function("funnel_4_steps_7d", |b| {
        b.iter(|| funnel::run(src, &f).unwrap())
    });
    g.bench_function("retention_weekly_8", |b| {
        b.iter(|| retention::run(src, &r).unwrap())
    });
    g.bench_function("activation_2_in_30d", |b| {
        b.iter(|| activation::run(src, &a).unwrap())
    });
    g.bench_function("trend_users_per_day", |b| {
        b.iter(|| trend::run(src, &t).unwrap())
    });
    g.finish();
}

criterion_group!(benches, queries);
criterion_main!(benches);
