//! `delete-person` on the disk store (SPEC §3): identity-aware, covering
//! the events stored before it (sealed or still in the log), applied to
//! analyses, export and backup, kept across restarts; and `--keep`.

use tally_event::Event;
use tally_query::{Scan, Source};
use uuid::Uuid;

use super::disk::tests::open;
use super::disk::{DiskStore, StoreOptions};
use super::{Admin, Export, Ingest};

fn ev(i: u128, user: Option<&str>, anon: Option<&str>, name: &str, ts: i64) -> Event {
    Event {
        id: Uuid::from_u128(0x0188_0000_0000_7000_8000_0000_0000_0000 | i),
        event: name.into(),
        user_id: user.map(Into::into),
        anonymous_id: anon.map(Into::into),
        timestamp: ts,
        stage: None,
        revenue: None,
        properties: None,
    }
}

const T: i64 = 1_800_000_000_000;

fn exported(store: &DiskStore) -> Vec<u128> {
    let mut ids = Vec::new();
    store
        .scan_events(i64::MIN, i64::MAX, &mut |e| {
            ids.push(e.id.as_u128() & 0xffff);
            Ok(())
        })
        .unwrap();
    ids.sort_unstable();
    ids
}

fn rows(store: &DiskStore) -> usize {
    store
        .scan(&Scan {
            from: i64::MIN,
            to: i64::MAX,
            ..Scan::default()
        })
        .unwrap()
        .iter()
        .map(|r| r.len())
        .sum()
}

/// A visitor `a1` who signs up as `u1`; `u2`; an unlinked visitor `a2`.
fn sample() -> Vec<Event> {
    vec![
        ev(1, None, Some("a1"), "page_view", T),
        ev(2, Some("u1"), Some("a1"), "signup", T + 1),
        ev(3, Some("u1"), None, "buy", T + 2),
        ev(4, Some("u2"), None, "signup", T + 3),
        ev(5, None, Some("a2"), "page_view", T + 4),
        ev(6, None, Some("a2"), "page_view", T + 5),
    ]
}

#[test]
fn deleting_a_user_deletes_its_linked_visits_everywhere_and_for_good() {
    for chunk_events in [2, 100] {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            chunk_events,
            ..StoreOptions::default()
        };
        let store = open(dir.path(), &options);
        store.append(sample()).unwrap();
        store.sync().unwrap();
        assert_eq!(
            store.delete_person("a1").unwrap(),
            0,
            "a linked anonymous id owns nothing"
        );
        assert_eq!(store.delete_person("nobody").unwrap(), 0);
        assert_eq!(store.delete_person("u1").unwrap(), 3);
        assert_eq!(exported(&store), vec![4, 5, 6]);
        assert_eq!(rows(&store), 3);
        assert_eq!(store.delete_person("u1").unwrap(), 0, "already deleted");
        assert_eq!(store.delete_person("a2").unwrap(), 2);
        assert_eq!(exported(&store), vec![4]);
        // A deleted user who comes back starts again; the deleted events'
        // ids stay taken.
        store
            .append(vec![
                ev(7, Some("u1"), None, "login", T + 9),
                ev(3, Some("u1"), None, "buy", T + 2),
            ])
            .unwrap();
        store.sync().unwrap();
        assert_eq!(exported(&store), vec![4, 7]);
        // A backup holds no deleted event.
        let backup = tempfile::tempdir().unwrap();
        store.backup(backup.path()).unwrap();
        store.close().unwrap();
        drop(store);
        let copy = open(&backup.path().join("store"), &StoreOptions::default());
        assert_eq!(exported(&copy), vec![4, 7]);
        drop(copy);
        // After a restart too.
        let store = open(dir.path(), &options);
        assert_eq!(exported(&store), vec![4, 7]);
        assert_eq!(rows(&store), 2);
    }
}

#[test]
fn a_torn_deletion_record_is_not_a_deletion_and_the_next_one_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), &StoreOptions::default());
        store.append(sample()).unwrap();
        store.sync().unwrap();
        assert_eq!(store.delete_person("u2").unwrap(), 1);
    }
    let file = super::deletions::path(dir.path());
    let mut bytes = std::fs::read(&file).unwrap();
    let whole = bytes.len();
    let torn = bytes[..whole / 2].to_vec();
    bytes.extend_from_slice(&torn);
    std::fs::write(&file, &bytes).unwrap();
    let store = open(dir.path(), &StoreOptions::default());
    assert_eq!(exported(&store), vec![1, 2, 3, 5, 6]);
    assert_eq!(store.delete_person("a2").unwrap(), 2);
    drop(store);
    let store = open(dir.path(), &StoreOptions::default());
    assert_eq!(exported(&store), vec![1, 2, 3]);
}

#[test]
fn keep_leaves_out_events_older_than_it() {
    let dir = tempfile::tempdir().unwrap();
    let now = tally_event::time::now_ms();
    let day = 86_400_000;
    {
        let store = open(dir.path(), &StoreOptions::default());
        store
            .append(vec![
                ev(1, Some("u"), None, "old", now - 10 * day),
                ev(2, Some("u"), None, "new", now - day),
            ])
            .unwrap();
        store.sync().unwrap();
    }
    let store = open(
        dir.path(),
        &StoreOptions {
            keep_ms: Some(5 * day),
            ..StoreOptions::default()
        },
    );
    assert_eq!(exported(&store), vec![2]);
    assert_eq!(rows(&store), 1);
}

#[test]
fn a_deleted_users_links_no_longer_hold_for_later_visits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &StoreOptions::default());
    store.append(sample()).unwrap();
    store.sync().unwrap();
    assert_eq!(store.delete_person("u1").unwrap(), 3);
    // The visitor comes back anonymously: it is its own person now.
    store
        .append(vec![ev(8, None, Some("a1"), "page_view", T + 20)])
        .unwrap();
    store.sync().unwrap();
    let persons = |store: &DiskStore| -> Vec<u32> {
        let rows = store
            .scan(&Scan {
                from: T + 20,
                to: T + 21,
                ..Scan::default()
            })
            .unwrap();
        rows.iter().flat_map(|r| r.person.clone()).collect()
    };
    let keys = store.person_keys();
    assert_eq!(
        persons(&store)
            .iter()
            .map(|p| keys[p].as_str())
            .collect::<Vec<_>>(),
        ["a1"]
    );
    store.close().unwrap();
    drop(store);
    let store = open(dir.path(), &StoreOptions::default());
    let keys = store.person_keys();
    assert_eq!(
        persons(&store)
            .iter()
            .map(|p| keys[p].as_str())
            .collect::<Vec<_>>(),
        ["a1"],
        "after a restart too"
    );
}
