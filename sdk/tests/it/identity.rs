//! `identify` and stable anonymous ids: what goes on the wire, and the
//! file that keeps a CLI's anonymous id.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use tally_sdk::{
    Client, IDENTIFY_EVENT, Person, Stage, TrackError, Uuid, blocking, new_anonymous_id,
    stored_anonymous_id,
};

use crate::fake::{FakeCollector, KEY, Reply};
use crate::{assert_conserved, fast};

#[tokio::test]
async fn identify_sends_one_event_with_both_ids_retried_under_one_id() {
    let fake = FakeCollector::start().await;
    // The first attempt fails: the retry must carry the same event id.
    fake.script([Reply::Status(500)]);
    let client = fast(&fake.url())
        .property("app_version", "2.4.1")
        .build()
        .unwrap();
    let anon = new_anonymous_id();
    let view = client
        .track(Person::anonymous(&anon), "page_view")
        .stage(Stage::Discovery)
        .send()
        .unwrap();
    let link = client
        .identify("user-42", &anon)
        .property("method", "password")
        .send()
        .unwrap();
    assert_eq!(link.get_version_num(), 7);
    let report = client.shutdown().await;
    assert!(report.all_delivered(), "{report:?}");

    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "one failed attempt and its retry");
    assert_eq!(requests[0].ids(), requests[1].ids(), "same ids on retry");
    let stored = fake.stored();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["id"], view.to_string());
    assert_eq!(stored[0]["anonymous_id"], anon.as_str());
    assert!(stored[0].get("user_id").is_none());

    let e = &stored[1];
    assert_eq!(e["id"], link.to_string());
    assert_eq!(e["event"], IDENTIFY_EVENT);
    assert_eq!(IDENTIFY_EVENT, "identify", "the browser SDK's name too");
    assert_eq!(e["user_id"], "user-42");
    assert_eq!(e["anonymous_id"], anon.as_str());
    assert!(
        e["timestamp"].is_string() && e["sent_at"].is_string(),
        "{e}"
    );
    assert!(e.get("stage").is_none(), "{e}");
    assert_eq!(
        e["properties"],
        serde_json::json!({"app_version": "2.4.1", "method": "password"}),
        "default properties too"
    );
    let s = client.stats();
    assert_eq!((s.queued, s.accepted, s.retries), (2, 2, 1));
    assert_conserved(&s);
}

#[tokio::test]
async fn identify_checks_both_ids_and_a_disabled_client_sends_nothing() {
    let fake = FakeCollector::start().await;
    let client = fast(&fake.url()).build().unwrap();
    for (user, anon) in [
        ("", "anon-1"),
        ("user-1", ""),
        ("user-1", &*"a".repeat(256)),
        (&*"u".repeat(256), "anon-1"),
    ] {
        let refused = client.identify(user, anon).send();
        assert!(
            matches!(refused, Err(TrackError::Invalid(_))),
            "{user:?} {anon:?}: {refused:?}"
        );
    }
    client
        .identify("u".repeat(255), "a".repeat(255))
        .send()
        .unwrap();
    let report = client.shutdown().await;
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(fake.stored().len(), 1);
    let s = client.stats();
    assert_eq!((s.invalid, s.accepted), (4, 1));

    let off = Client::disabled();
    off.identify("user-1", "anon-1").send().unwrap();
    assert!(off.identify("", "anon-1").send().is_err());
    assert_eq!(off.stats().queued, 0);
}

#[test]
fn blocking_identify_delivers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(FakeCollector::start());
    let client = blocking::Client::builder(fake.url(), KEY)
        .flush_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    client.identify("user-7", "anon-7").send().unwrap();
    assert!(client.shutdown().all_delivered());
    let stored = fake.stored();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (
            &stored[0]["event"],
            &stored[0]["user_id"],
            &stored[0]["anonymous_id"]
        ),
        (
            &serde_json::json!("identify"),
            &serde_json::json!("user-7"),
            &serde_json::json!("anon-7")
        )
    );
}

#[test]
fn new_anonymous_ids_are_unique_uuid_v7s() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let id = new_anonymous_id();
        let u = Uuid::parse_str(&id).unwrap();
        assert_eq!(u.get_version_num(), 7);
        assert_eq!(id, u.hyphenated().to_string(), "lower-case hyphenated");
        assert!(seen.insert(id));
    }
}

#[test]
fn a_stored_anonymous_id_is_created_once_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app/data/anonymous_id");
    let id = stored_anonymous_id(&path).unwrap();
    assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{id}\n"));
    for _ in 0..3 {
        assert_eq!(stored_anonymous_id(&path).unwrap(), id);
    }
    // An id the app (or an older version) wrote itself is kept as it is.
    std::fs::write(&path, "  device-9 \n").unwrap();
    assert_eq!(stored_anonymous_id(&path).unwrap(), "device-9");
    // Deleting the file starts a new anonymous identity.
    std::fs::remove_file(&path).unwrap();
    let next = stored_anonymous_id(&path).unwrap();
    assert_ne!(next, id);
    assert_eq!(stored_anonymous_id(&path).unwrap(), next);
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["anonymous_id"]);
}

#[test]
fn a_file_without_a_usable_id_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anonymous_id");
    let long = "x".repeat(256);
    for junk in ["", "\n", "  ", "a\u{0}b", "line\nbreak", &long] {
        std::fs::write(&path, junk).unwrap();
        let id = stored_anonymous_id(&path).unwrap();
        assert_eq!(
            Uuid::parse_str(&id).unwrap().get_version_num(),
            7,
            "{junk:?}"
        );
        assert_eq!(stored_anonymous_id(&path).unwrap(), id, "{junk:?}");
    }
    // 255 bytes is still an id.
    std::fs::write(&path, "y".repeat(255)).unwrap();
    assert_eq!(stored_anonymous_id(&path).unwrap(), "y".repeat(255));
}

#[test]
fn processes_starting_together_share_one_anonymous_id() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join("anonymous_id"));
        let start = Arc::new(Barrier::new(8));
        let ids: Vec<String> = (0..8)
            .map(|_| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    stored_anonymous_id(&*path).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "round {round}: {ids:?}");
        assert_eq!(stored_anonymous_id(&*path).unwrap(), ids[0]);
    }
}

#[test]
fn an_unusable_path_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be.
    assert!(stored_anonymous_id(dir.path()).is_err());
    // A file where a parent directory should be.
    let file = dir.path().join("plain");
    std::fs::write(&file, "x").unwrap();
    assert!(stored_anonymous_id(file.join("anonymous_id")).is_err());
}
