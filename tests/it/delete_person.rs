//! SPEC §2–3: `tally delete-person` (offline and through a collector) and
//! `POST /v1/admin/delete-person` — identity-aware, admin key only, and
//! from the answer on no analysis, export or backup sees the events;
//! `tally serve --keep`.

use serde_json::json;

use crate::support::{READ_KEY, Server, export_ids, http, post_batch, tally, uuid_n};

const ADMIN_KEY: &str = "test-admin-key";

/// Visitor `v1` views the landing page twice and signs up as `alice`;
/// `bob` signs up; visitor `v2` never signs up.
fn events() -> Vec<serde_json::Value> {
    vec![
        json!({"id": uuid_n(1), "event": "page_view", "anonymous_id": "v1", "timestamp": "2026-03-02T10:00:00Z"}),
        json!({"id": uuid_n(2), "event": "page_view", "anonymous_id": "v1", "timestamp": "2026-03-02T10:01:00Z"}),
        json!({"id": uuid_n(3), "event": "signup", "user_id": "alice", "anonymous_id": "v1", "timestamp": "2026-03-02T10:02:00Z"}),
        json!({"id": uuid_n(4), "event": "signup", "user_id": "bob", "timestamp": "2026-03-02T11:00:00Z"}),
        json!({"id": uuid_n(5), "event": "page_view", "anonymous_id": "v2", "timestamp": "2026-03-02T12:00:00Z"}),
    ]
}

fn delete(url: &str, key: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let resp = http()
        .post(format!("{url}/v1/admin/delete-person"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.json().unwrap_or_default())
}

fn funnel(url: &str) -> serde_json::Value {
    http()
        .get(format!(
            "{url}/v1/funnel?steps=page_view,signup&from=2026-03-01&to=2026-03-05"
        ))
        .bearer_auth(READ_KEY)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn deleting_a_person_over_http_removes_them_from_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_with(&data, &["--admin-key", ADMIN_KEY]);
    let client = http();
    assert_eq!(post_batch(&client, &server.url, &events()).unwrap().0, 200);
    // The anonymous views count for alice: one person goes through.
    let f = funnel(&server.url);
    assert_eq!(f["steps"][0]["users"], json!(2), "{f}");
    assert_eq!(f["steps"][1]["users"], json!(1), "{f}");

    // Keys: only the admin key deletes; bad bodies are 400 with an error.
    let (status, _) = delete(&server.url, READ_KEY, json!({"person": "alice"}));
    assert_eq!(status, 401);
    let (status, body) = delete(&server.url, ADMIN_KEY, json!({"who": "alice"}));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].is_string(), "{body}");

    // A linked anonymous id owns no events: its user is the one to delete.
    let (status, body) = delete(&server.url, ADMIN_KEY, json!({"person": "v1"}));
    assert_eq!((status, body), (200, json!({"deleted": 0})));
    let (status, body) = delete(&server.url, ADMIN_KEY, json!({"person": "alice"}));
    assert_eq!((status, body), (200, json!({"deleted": 3})));
    let f = funnel(&server.url);
    assert_eq!(f["steps"][0]["users"], json!(1), "{f}");
    assert_eq!(f["steps"][1]["users"], json!(0), "{f}");
    let exported = http()
        .get(format!("{}/v1/export", server.url))
        .bearer_auth(READ_KEY)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(exported.lines().count(), 2, "{exported}");
    assert!(
        !exported.contains("alice") && !exported.contains("\"v1\""),
        "{exported}"
    );
    assert!(server.terminate().success());

    // After a restart, and in the store read offline.
    let mut ids = export_ids(&data);
    ids.sort();
    assert_eq!(ids, vec![uuid_n(4), uuid_n(5)]);
}

#[test]
fn tally_delete_person_offline_and_through_a_collector() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_with(&data, &["--admin-key", ADMIN_KEY]);
    assert_eq!(post_batch(&http(), &server.url, &events()).unwrap().0, 200);
    let out = tally()
        .args([
            "delete-person",
            "v2",
            "--format",
            "json",
            "--server",
            &server.url,
            "--key",
            ADMIN_KEY,
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"deleted":1}"#
    );
    // Offline while the collector holds the directory: refused with advice.
    let out = tally()
        .args(["delete-person", "bob", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server"));
    assert!(server.terminate().success());
    let out = tally()
        .args(["delete-person", "bob", "--format", "json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"deleted":1}"#
    );
    let mut ids = export_ids(&data);
    ids.sort();
    assert_eq!(ids, vec![uuid_n(1), uuid_n(2), uuid_n(3)]);
}

#[test]
fn keep_leaves_older_events_out_of_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let now = chrono::Utc::now();
    let at = |days: i64| (now - chrono::Duration::days(days)).to_rfc3339();
    let batch = vec![
        json!({"id": uuid_n(1), "event": "e", "user_id": "a", "timestamp": at(40)}),
        json!({"id": uuid_n(2), "event": "e", "user_id": "b", "timestamp": at(2)}),
    ];
    let mut server = Server::start(&data);
    assert_eq!(post_batch(&http(), &server.url, &batch).unwrap().0, 200);
    assert!(server.terminate().success());
    let mut server = Server::start_with(&data, &["--keep", "30d"]);
    let body: serde_json::Value = http()
        .get(format!("{}/v1/lifecycle?last=90d", server.url))
        .bearer_auth(READ_KEY)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(body["active_users"], json!(1), "{body}");
    assert!(server.terminate().success());
    let out = tally()
        .args(["serve", "--keep", "3h", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a keep under a day is a usage error"
    );
}

#[test]
fn a_running_collector_compacts_deleted_persons_out_of_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_with_env(
        &data,
        &["--admin-key", ADMIN_KEY],
        &[("TALLY_COMPACT_CHECK_SECS", "1")],
    );
    assert_eq!(post_batch(&http(), &server.url, &events()).unwrap().0, 200);
    let (status, body) = delete(&server.url, ADMIN_KEY, json!({"person": "alice"}));
    assert_eq!((status, body), (200, json!({"deleted": 3})));
    // The deletion is applied to the files (and its record dropped) by the
    // next compaction, here within seconds.
    let deletions = data.join("store").join("deletions");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while deletions.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction within a minute"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // It goes on ingesting and answering, with the same answers.
    let more = [
        json!({"id": uuid_n(9), "event": "signup", "user_id": "carol", "timestamp": "2026-03-02T13:00:00Z"}),
    ];
    assert_eq!(post_batch(&http(), &server.url, &more).unwrap().0, 200);
    let f = funnel(&server.url);
    assert_eq!(f["steps"][0]["users"], json!(1), "{f}");
    assert!(server.terminate().success());
    let mut ids = export_ids(&data);
    ids.sort();
    assert_eq!(ids, vec![uuid_n(4), uuid_n(5), uuid_n(9)]);
}

#[test]
fn tally_compact_offline_applies_deletions_and_keep() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    assert_eq!(post_batch(&http(), &server.url, &events()).unwrap().0, 200);
    assert!(server.terminate().success());
    let out = tally()
        .args(["delete-person", "bob", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tally()
        .args(["compact", "--format", "json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&done["events"], &done["removed"]),
        (&json!(4), &json!(1)),
        "{done}"
    );
    assert!(!data.join("store").join("deletions").exists());
    // --keep: every event here is from March 2026, older than a day.
    let out = tally()
        .args(["compact", "--keep", "1d", "--format", "json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&done["events"], &done["removed"]),
        (&json!(0), &json!(4)),
        "{done}"
    );
    assert!(export_ids(&data).is_empty());
    let out = tally()
        .args(["compact", "--keep", "soon", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
