//! SPEC §2–3: the admin key (generated, stored and printed with the
//! others; refused where another key is needed and vice versa) and
//! `tally backup` / `POST /v1/admin/backup`: a consistent copy, made while
//! ingest goes on, that `tally serve --data DEST` opens.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use crate::support::{READ_KEY, Server, WRITE_KEY, export_ids, http, post_batch, tally};

const ADMIN_KEY: &str = "test-admin-key";

fn event(i: u32) -> serde_json::Value {
    json!({"id": crate::support::uuid_n(i), "event": "signup", "user_id": format!("u{}", i % 50)})
}

fn post_backup(url: &str, key: &str, dest: &Path) -> (u16, serde_json::Value) {
    let resp = http()
        .post(format!("{url}/v1/admin/backup"))
        .bearer_auth(key)
        .json(&json!({ "dest": dest }))
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.json().unwrap_or_default())
}

#[test]
fn a_new_collector_prints_an_admin_key_and_each_key_opens_only_its_doors() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, out) = Server::start_keyless(dir.path(), &[]);
    let printed = out.before.join("\n");
    let admin = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("admin key:"))
        .map(|k| k.trim().to_string())
        .unwrap_or_else(|| panic!("no admin key printed:\n{printed}"));
    let stored = std::fs::read_to_string(dir.path().join("keys.toml")).unwrap();
    assert!(stored.contains(&admin), "{stored}");
    let write = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("write key:"))
        .unwrap()
        .trim()
        .to_string();
    let client = http();
    // The admin key cannot write or read...
    let resp = client
        .post(format!("{}/v1/batch", server.url))
        .bearer_auth(&admin)
        .json(&json!({"batch": [event(1)]}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: serde_json::Value = resp.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("admin key"),
        "{body}"
    );
    let resp = client
        .get(format!("{}/v1/lifecycle?last=7d", server.url))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // ... and the write key cannot back up.
    let (status, body) = post_backup(&server.url, &write, &dir.path().join("nope"));
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("needs the admin key"),
        "{body}"
    );
    assert!(server.terminate().success());
    // Printed once: the next start only says where the keys are.
    let (mut again, out) = Server::start_keyless(dir.path(), &[]);
    assert!(!out.before.join("\n").contains(&admin));
    again.terminate();
}

#[test]
fn a_backup_made_during_ingest_holds_every_event_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_with_env(
        &data,
        &["--admin-key", ADMIN_KEY],
        &[("TALLY_CHUNK_EVENTS", "300")],
    );
    let client = http();
    for b in 0..10u32 {
        let batch: Vec<_> = (b * 100..b * 100 + 100).map(event).collect();
        assert_eq!(post_batch(&client, &server.url, &batch).unwrap().0, 200);
    }
    // Ingest goes on while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, url) = (stop.clone(), server.url.clone());
        std::thread::spawn(move || {
            let client = http();
            let mut i = 100_000u32;
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<_> = (i..i + 50).map(event).collect();
                assert_eq!(post_batch(&client, &url, &batch).unwrap().0, 200);
                i += 50;
            }
        })
    };
    let dest = dir.path().join("copy");
    let (status, body) = post_backup(&server.url, READ_KEY, &dest);
    assert_eq!(status, 401, "the read key cannot back up: {body}");
    let (status, body) = post_backup(&server.url, ADMIN_KEY, &dest);
    assert_eq!(status, 200, "{body}");
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let events = body["events"].as_u64().unwrap();
    assert!(events >= 1000, "{body}");
    // Not into a directory that holds something.
    let (status, body) = post_backup(&server.url, ADMIN_KEY, &dest);
    assert_eq!(status, 400, "{body}");
    assert!(server.terminate().success());

    // The copy holds the first 1000 (acknowledged before) and opens as a
    // data directory with the same keys.
    let ids = export_ids(&dest);
    assert_eq!(ids.len() as u64, events);
    for i in 0..1000 {
        assert!(
            ids.contains(&crate::support::uuid_n(i)),
            "event {i} missing"
        );
    }
    let (status, out) = {
        let out = tally()
            .args(["check", "--data"])
            .arg(&dest)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(status, Some(0), "{out}");
    let restored = Server::start_with(&dest, &["--admin-key", ADMIN_KEY]);
    let (status, body) = post_batch(&client, &restored.url, &[event(1), event(999_999)]).unwrap();
    assert_eq!((status, &body["duplicates"]), (200, &json!(1)), "{body}");
}

#[test]
fn tally_backup_offline_and_through_a_collector() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_with(&data, &["--admin-key", ADMIN_KEY]);
    let batch: Vec<_> = (0..250).map(event).collect();
    assert_eq!(post_batch(&http(), &server.url, &batch).unwrap().0, 200);
    let online = dir.path().join("online");
    let out = tally()
        .args([
            "backup",
            "--format",
            "json",
            "--server",
            &server.url,
            "--key",
            ADMIN_KEY,
        ])
        .arg(&online)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer, json!({"events": 250}));
    // Offline while the collector holds the directory: refused, pointing
    // to --server.
    let out = tally()
        .args(["backup", "--data"])
        .arg(&data)
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server"));
    assert!(server.terminate().success());
    let offline = dir.path().join("offline");
    let out = tally()
        .args(["backup", "--format", "json", "--data"])
        .arg(&data)
        .arg(&offline)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        json!({"events": 250})
    );
    let mut a = export_ids(&online);
    let mut b = export_ids(&offline);
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(a.len(), 250);
    // A destination that holds something is a usage error.
    let out = tally()
        .args(["backup", "--data"])
        .arg(&data)
        .arg(&offline)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = WRITE_KEY;
}
