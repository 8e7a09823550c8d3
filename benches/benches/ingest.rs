//! Per-event cost of the ingest path without HTTP: decode + validate, and
//! store appends (with and without the fsync of a group commit).
//! `cargo bench -p tally-benches --bench ingest`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tally_benches::synth::{event, event_json};
use tally_collector::store::{DiskStore, Ingest, StoreOptions};

const BATCH: u64 = 4096;

fn validate(c: &mut Criterion) {
    let lines: Vec<String> = (0..BATCH).map(|i| event_json(i, 50_000)).collect();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("decode_validate", |b| {
        b.iter(|| {
            for l in &lines {
                tally_event::validate_event_json(l, 1_900_000_000_000).unwrap();
            }
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path(), &StoreOptions::default()).unwrap();
    let mut seq = 0u64;
    let mut next_batch = || {
        let events: Vec<_> = (seq..seq + BATCH).map(|i| event(i, 50_000)).collect();
        seq += BATCH;
        events
    };
    g.bench_function("store_append", |b| {
        b.iter_batched(
            &mut next_batch,
            |events| store.append(events).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("store_append_fsync", |b| {
        b.iter_batched(
            &mut next_batch,
            |events| {
                store.append(events).unwrap();
                store.sync().unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
