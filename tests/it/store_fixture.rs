//! The on-disk format is a promise: stores written by format versions 2 and
//! 3 are checked in under tests/fixtures/store-v2 and store-v3 (chunk
//! files, property files from version 3, and a write-ahead log) and must
//! read back to exactly the events they were written from; a version 2
//! store answers filters and identity links before and after its first
//! writer upgrades it in place; a format 1 store (tests/fixtures/store-v1)
//! is upgraded in place too, its old files kept beside it. If this fails after a change to
//! `store/src/codec.rs`, the change broke existing stores: bump
//! FORMAT_VERSION and add a migration instead.
//!
//! Regenerate (only for a deliberate new format, as a new fixture
//! directory): `TALLY_WRITE_FIXTURE=1 cargo test -p tally-collector --test it
//! write_fixture -- --ignored`.

use std::path::{Path, PathBuf};

use tally_collector::store::{DiskStore, Export, Ingest, StoreOptions};
use tally_event::validate_event_json;
use tally_query::{Identity, Scan, Source, Where};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn fixture_events() -> Vec<tally_event::Event> {
    let text = std::fs::read_to_string(fixture_dir().join("store-events.ndjson")).unwrap();
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
fn version_2_store_reads_back_exactly() {
    reads_back_exactly("store-v2");
}

#[test]
fn version_3_store_reads_back_exactly() {
    reads_back_exactly("store-v3");
}

fn reads_back_exactly(fixture: &str) {
    let tmp = tempfile::tempdir().unwrap();
    // sled may write on open; never touch the checked-in copy.
    copy_dir(&fixture_dir().join(fixture), tmp.path());
    let store = DiskStore::open(tmp.path(), &StoreOptions::default()).unwrap();

    let mut read = Vec::new();
    store
        .scan_events(i64::MIN, i64::MAX, &mut |e| {
            read.push(e);
            Ok(())
        })
        .unwrap();
    // Chunks hold their events in id order; the comparison does not care.
    let mut expected = fixture_events();
    expected.sort_by_key(|e| e.id);
    read.sort_by_key(|e| e.id);
    assert_eq!(read, expected);
    // The fixture has sealed chunks and events still in the log.
    assert!(tmp.path().join("chunks/00000000.chunk").exists());
    assert!(
        std::fs::read_dir(tmp.path().join("wal")).unwrap().any(|e| e
            .unwrap()
            .metadata()
            .unwrap()
            .len()
            > 0)
    );

    // The analysis columns agree with the raw events.
    let signup = store.name_id("signup").expect("signup interned");
    let rows = store
        .scan(&Scan {
            names: Some(&[signup]),
            from: i64::MIN,
            to: i64::MAX,
            ..Default::default()
        })
        .unwrap();
    let n: usize = rows.iter().map(|r| r.len()).sum();
    assert_eq!(n, read.iter().filter(|e| e.event == "signup").count());
    // anon-1, alice, bob, anon-2, carol: persons are keys; links resolve
    // them at query time (SPEC §1).
    assert_eq!(store.person_count(), 5);
    assert_filters_and_links(&store);
}

/// The fixture's anonymous `landing_view` (utm_source newsletter) counts
/// for alice, whose signup carried that anonymous id; with identity off,
/// for the anonymous id.
fn assert_filters_and_links(store: &DiskStore) {
    let view = store.name_id("landing_view").unwrap();
    let signup = store.name_id("signup").unwrap();
    let filter = [Where::parse("utm_source = newsletter").unwrap()];
    let person_of = |name: u32, identity: Identity, filters: &[Where]| -> Vec<u32> {
        let mut v: Vec<u32> = store
            .scan(&Scan {
                names: Some(&[name]),
                from: i64::MIN,
                to: i64::MAX,
                filters,
                identity,
                ..Default::default()
            })
            .unwrap()
            .iter()
            .flat_map(|r| r.person.clone())
            .collect();
        v.sort_unstable();
        v
    };
    let views = person_of(view, Identity::Linked, &filter);
    assert_eq!(views.len(), 1, "one landing view came from the newsletter");
    let alice_signup = person_of(signup, Identity::Linked, &[]);
    assert!(
        alice_signup.contains(&views[0]),
        "the anonymous view counts for alice"
    );
    let unlinked = person_of(view, Identity::PersonKey, &filter);
    assert!(
        !alice_signup.contains(&unlinked[0]),
        "--identity none keeps the anonymous id"
    );
    let by = ["utm_source".to_string()];
    let rows = store
        .scan(&Scan {
            names: Some(&[view]),
            from: i64::MIN,
            to: i64::MAX,
            by: Some(&by),
            ..Default::default()
        })
        .unwrap();
    let mut groups: Vec<String> = rows
        .iter()
        .flat_map(|r| (0..r.len()).map(move |i| serde_json::to_string(r.value(i)).unwrap()))
        .collect();
    groups.sort();
    let expected: Vec<String> = {
        let mut v: Vec<String> = fixture_events()
            .iter()
            .filter(|e| e.event == "landing_view")
            .map(|e| {
                let p: serde_json::Value = e
                    .properties
                    .as_deref()
                    .map_or(serde_json::Value::Null, |p| {
                        serde_json::from_str(p).unwrap()
                    });
                p.get("utm_source").map_or("null".into(), |v| v.to_string())
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(groups, expected);
}

#[test]
fn version_2_store_is_upgraded_in_place_by_its_first_writer() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir().join("store-v2"), tmp.path());
    let props = |dir: &Path| -> usize {
        std::fs::read_dir(dir.join("chunks"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "props")
            })
            .count()
    };
    assert_eq!(props(tmp.path()), 0, "format 2 has no property files");
    {
        let store = DiskStore::open(tmp.path(), &StoreOptions::default()).unwrap();
        store.prepare_writer().unwrap();
        assert_filters_and_links(&store);
        store.close().unwrap();
    }
    // The upgrade wrote the old chunks' files; closing sealed one more chunk.
    let chunks = std::fs::read_dir(tmp.path().join("chunks"))
        .unwrap()
        .count()
        - props(tmp.path());
    assert_eq!(props(tmp.path()), chunks, "one property file per chunk");
    // Reopened (as a reader, which writes nothing): the same answers and
    // every event, from the upgraded files.
    let store = loop {
        match DiskStore::open(
            tmp.path(),
            &StoreOptions {
                read_only: true,
                ..StoreOptions::default()
            },
        ) {
            Err(tally_collector::store::Error::Locked { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other.unwrap(),
        }
    };
    assert_filters_and_links(&store);
    let mut n = 0;
    store
        .scan_events(i64::MIN, i64::MAX, &mut |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(n, fixture_events().len());
}

#[test]
fn version_1_store_is_upgraded_in_place_and_its_files_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    copy_dir(&fixture_dir().join("store-v1"), &dir);
    // A reader writes nothing: it says how to upgrade.
    let err = DiskStore::open(
        &dir,
        &StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .err()
    .expect("a reader does not upgrade");
    assert!(err.to_string().contains("upgrade it in place"), "{err}");
    // A writer upgrades it: every event, once; the old files beside it.
    let store = DiskStore::open(&dir, &StoreOptions::default()).unwrap();
    let mut read = Vec::new();
    store
        .scan_events(i64::MIN, i64::MAX, &mut |e| {
            read.push(e);
            Ok(())
        })
        .unwrap();
    let mut expected = fixture_events();
    expected.sort_by_key(|e| e.id);
    read.sort_by_key(|e| e.id);
    assert_eq!(read, expected);
    assert!(tmp.path().join("store.format1").join("conf").exists());
    assert_filters_and_links(&store);
    // Ids stay taken: a retry of an upgraded event is a duplicate.
    let again = store.append(vec![expected[0].clone()]).unwrap();
    assert_eq!(again, vec![tally_collector::store::Outcome::Duplicate]);
}

#[test]
#[ignore = "writes the fixture; run only for a deliberate format change"]
fn write_fixture() {
    if std::env::var_os("TALLY_WRITE_FIXTURE").is_none() {
        return;
    }
    let dir = fixture_dir().join("store-v3");
    let _ = std::fs::remove_dir_all(&dir);
    // Small chunks, so the fixture holds sealed chunks and an open log.
    let options = StoreOptions {
        chunk_events: 4,
        ..StoreOptions::default()
    };
    let store = DiskStore::open(&dir, &options).unwrap();
    let events = fixture_events();
    let (a, b) = events.split_at(events.len() - 3);
    store.append(a.to_vec()).unwrap();
    store.append(b.to_vec()).unwrap();
    store.sync().unwrap();
}
