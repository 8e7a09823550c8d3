//! The disk store's scans against `MemSource`, the plain statement of
//! SPEC §1 (identity) and §5 (filters, group values): the same events,
//! sealed into many chunks or still in the log, read through property
//! files or the slow path, before and after a restart, give the same rows.

use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value, json};
use tally_event::Event;
use tally_query::{GroupValue, Identity, MemEvent, MemSource, Scan, Source, Where};
use uuid::Uuid;

use super::Ingest;
use super::disk::{DiskStore, StoreOptions};

const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
/// `u1` is also an anonymous id: a user id and an anonymous id may be
/// the same string, and only the anonymous one's events follow a link.
const ANONS: [&str; 4] = ["a0", "a1", "a2", "u1"];
const NAMES: [&str; 3] = ["view", "signup", "buy"];

fn arb_props() -> impl Strategy<Value = Option<Value>> {
    let plan = prop_oneof![
        Just(json!("pro")),
        Just(json!("free")),
        Just(json!(1)),
        Just(json!(true)),
        Just(Value::Null),
        Just(json!({"x": 1})),
    ];
    let n = prop_oneof![
        Just(json!(0)),
        Just(json!(2)),
        Just(json!(2.0)),
        Just(json!("2"))
    ];
    let source = prop_oneof![Just(json!("news")), Just(json!("ads")), Just(json!([1]))];
    proptest::option::of((
        proptest::option::of(plan),
        proptest::option::of(n),
        proptest::option::of(source),
    ))
    .prop_map(|p| {
        p.map(|(plan, n, source)| {
            let mut m = serde_json::Map::new();
            if let Some(v) = plan {
                m.insert("plan".into(), v);
            }
            if let Some(v) = n {
                m.insert("n".into(), v);
            }
            if let Some(v) = source {
                m.insert("utm".into(), json!({ "source": v }));
            }
            Value::Object(m)
        })
    })
}

fn arb_event() -> impl Strategy<Value = (Option<usize>, Option<usize>, usize, i64, Option<Value>)> {
    (
        proptest::option::of(0..USERS.len()),
        0..ANONS.len(),
        any::<bool>(),
        0..NAMES.len(),
        0..40i64,
        arb_props(),
    )
        .prop_map(|(user, anon, with_anon, name, t, props)| {
            let anon = (with_anon || user.is_none()).then_some(anon);
            (user, anon, name, t, props)
        })
}

fn event(i: usize, e: &(Option<usize>, Option<usize>, usize, i64, Option<Value>)) -> Event {
    Event {
        id: Uuid::from_u128(0x0188_0000_0000_7000_8000_0000_0000_0000 | i as u128),
        event: NAMES[e.2].into(),
        user_id: e.0.map(|u| USERS[u].to_string()),
        anonymous_id: e.1.map(|a| ANONS[a].to_string()),
        timestamp: 1_800_000_000_000 + e.3 * 1000,
        stage: None,
        revenue: None,
        properties: e.4.as_ref().map(Value::to_string),
    }
}

const FILTERS: [&str; 9] = [
    "plan = pro",
    "plan != pro",
    "n > 1",
    "n = 2",
    "utm.source ~ ew",
    "plan !~ r",
    "utm = x",
    "plan = true",
    "utm.source != \"ads\"",
];
const BY: [&str; 4] = ["plan", "n", "utm.source", "utm"];

type Row = (String, i64, String, Option<String>);

fn rows(src: &dyn Source, key: &dyn Fn(u32) -> String, scan: &Scan<'_>) -> Vec<Row> {
    let mut out = Vec::new();
    for r in src.scan(scan).unwrap() {
        let name = NAMES
            .iter()
            .find(|n| src.name_id(n) == Some(r.name))
            .unwrap()
            .to_string();
        for i in 0..r.len() {
            let group = scan
                .by
                .map(|_| serde_json::to_string::<GroupValue>(r.value(i)).unwrap());
            out.push((name.clone(), r.ts[i], key(r.person[i]), group));
        }
    }
    out.sort();
    out
}

fn open(dir: &Path, chunk_events: usize, read_only: bool) -> DiskStore {
    super::disk::tests::open(
        dir,
        &StoreOptions {
            chunk_events,
            read_only,
            ..StoreOptions::default()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn disk_scans_agree_with_the_in_memory_statement(
        raw in proptest::collection::vec(arb_event(), 1..90),
        chunk_events in 2usize..25,
        batch in 1usize..9,
        restart in any::<bool>(),
        drop_props in any::<bool>(),
        queries in proptest::collection::vec(
            (proptest::collection::vec(0..FILTERS.len(), 0..3), proptest::option::of(0..BY.len()), any::<bool>(), 0..40i64),
            1..5,
        ),
    ) {
        let events: Vec<Event> = raw.iter().enumerate().map(|(i, e)| event(i, e)).collect();
        let mem = MemSource::new(events.iter().map(MemEvent::of_event));
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), chunk_events, false);
        for b in events.chunks(batch) {
            store.append(b.to_vec()).unwrap();
            store.sync().unwrap();
        }
        if restart || drop_props {
            store.close().unwrap();
            drop(store);
            if drop_props {
                // The slow path: chunks without property files (a reader
                // never writes them).
                for f in std::fs::read_dir(dir.path().join("chunks")).unwrap() {
                    let p = f.unwrap().path();
                    if p.extension().is_some_and(|x| x == "props") {
                        std::fs::remove_file(p).unwrap();
                    }
                }
            }
            store = open(dir.path(), chunk_events, drop_props);
        }
        let disk_keys = store.person_keys();
        for (filters, by, linked, from) in &queries {
            let filters: Vec<Where> = filters.iter().map(|&f| Where::parse(FILTERS[f]).unwrap()).collect();
            let by: Option<Vec<String>> = by.map(|b| BY[b].split('.').map(String::from).collect());
            let scan = Scan {
                names: None,
                from: 1_800_000_000_000 + from * 1000,
                to: i64::MAX,
                filters: &filters,
                by: by.as_deref(),
                identity: if *linked { Identity::Linked } else { Identity::PersonKey },
            };
            let got = rows(&store, &|p| disk_keys[&p].clone(), &scan);
            let want = rows(&mem, &|p| mem.person_key(p).unwrap().to_string(), &scan);
            prop_assert_eq!(got, want);
        }
    }
}

#[test]
fn a_damaged_property_file_is_answered_around_reported_and_rebuilt() {
    let raw: Vec<_> = (0..40)
        .map(|i| {
            (
                Some(i % 4),
                Some(i % 3),
                i % 3,
                i as i64,
                Some(json!({"plan": if i % 2 == 0 { "pro" } else { "free" }, "utm": {"source": "news"}})),
            )
        })
        .collect();
    let events: Vec<Event> = raw.iter().enumerate().map(|(i, e)| event(i, e)).collect();
    let mem = MemSource::new(events.iter().map(MemEvent::of_event));
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), 10, false);
        store.append(events.clone()).unwrap();
        store.sync().unwrap();
        store.close().unwrap();
    }
    // Flip a byte inside the first section of chunk 0's property file.
    let path = super::props::path(&dir.path().join("chunks"), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[12] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let filters = [Where::parse("plan = pro").unwrap()];
    let by = ["utm".to_string(), "source".to_string()];
    let scan = Scan {
        from: i64::MIN,
        to: i64::MAX,
        filters: &filters,
        by: Some(&by),
        ..Scan::default()
    };
    let want = rows(&mem, &|p| mem.person_key(p).unwrap().to_string(), &scan);
    {
        let store = open(dir.path(), 10, true);
        let keys = store.person_keys();
        assert_eq!(rows(&store, &|p| keys[&p].clone(), &scan), want);
    }
    let check = DiskStore::check(dir.path()).unwrap();
    assert!(
        check.problems.iter().any(|p| p.contains("00000000.props")),
        "{:?}",
        check.problems
    );
    let done = DiskStore::repair(dir.path()).unwrap();
    assert!(
        done.iter().any(|d| d.contains("00000000.props")),
        "{done:?}"
    );
    assert!(!path.exists());
    {
        let store = open(dir.path(), 10, false);
        store.prepare_writer().unwrap();
        assert!(path.exists(), "rebuilt by the writer");
        let keys = store.person_keys();
        assert_eq!(rows(&store, &|p| keys[&p].clone(), &scan), want);
    }
    assert!(DiskStore::check(dir.path()).unwrap().problems.is_empty());
}
