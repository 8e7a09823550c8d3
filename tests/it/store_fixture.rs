//! The on-disk format is a promise: a store written by format version 1 is
//! checked in under tests/fixtures/store-v1 and must read back to exactly
//! the events it was written from. If this fails after a change to
//! `collector/src/store/codec.rs`, the change broke existing stores: bump
//! FORMAT_VERSION and add a migration instead.
//!
//! Regenerate (only for a deliberate new format, as a new fixture
//! directory): `TALLY_WRITE_FIXTURE=1 cargo test -p tally-collector --test it
//! write_fixture -- --ignored`.

use std::path::{Path, PathBuf};

use tally_collector::store::{EventStore, SledStore, StoreOptions};
use tally_event::validate_event_json;
use tally_query::{Scan, Source};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn fixture_events() -> Vec<tally_event::Event> {
    let text = std::fs::read_to_string(fixture_dir().join("store-v1.ndjson")).unwrap();
    text.lines()
        .map(|l| validate_event_json(l, 1_800_000_000_000).expect("fixture line is valid"))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn version_1_store_reads_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    // sled may write on open; never touch the checked-in copy.
    copy_dir(&fixture_dir().join("store-v1"), tmp.path());
    let store = SledStore::open(tmp.path(), &StoreOptions::default()).unwrap();

    let mut read = Vec::new();
    store
        .scan_events(i64::MIN, i64::MAX, &mut |e| {
            read.push(e);
            Ok(())
        })
        .unwrap();
    assert_eq!(read, fixture_events());

    // The analysis columns agree with the raw events.
    let signup = store.name_id("signup").expect("signup interned");
    let rows = store
        .scan(&Scan {
            names: Some(&[signup]),
            from: i64::MIN,
            to: i64::MAX,
        })
        .unwrap();
    let n: usize = rows.iter().map(|r| r.len()).sum();
    assert_eq!(n, read.iter().filter(|e| e.event == "signup").count());
    // anon-1, alice, bob, anon-2, carol: no identity merging (SPEC §1 person key).
    assert_eq!(store.person_count(), 5);
}

#[test]
#[ignore = "writes the fixture; run only for a deliberate format change"]
fn write_fixture() {
    if std::env::var_os("TALLY_WRITE_FIXTURE").is_none() {
        return;
    }
    let dir = fixture_dir().join("store-v1");
    let _ = std::fs::remove_dir_all(&dir);
    let store = SledStore::open(&dir, &StoreOptions::default()).unwrap();
    let events = fixture_events();
    // Two appends, so the fixture holds more than one commit.
    let (a, b) = events.split_at(events.len() / 2);
    store.append(a.to_vec()).unwrap();
    store.append(b.to_vec()).unwrap();
    store.sync().unwrap();
}
