//! Issue 16.2 and 16.5: a damaged store never answers silently wrong and
//! never destroys intact data. `tally check` names every damaged file,
//! `tally check --repair` rebuilds the index, `tally export
//! --skip-damaged` reads everything intact, and `tally serve` refuses to
//! start on damage, naming it.

use std::path::Path;

use serde_json::json;

use crate::support::{Server, http, post_batch, tally, uuid_n};

/// A store of 1000 events in 10 chunks of 100 (and an empty log).
fn store_of_ten_chunks(data: &Path) {
    let mut server = Server::start_with_env(data, &[], &[("TALLY_CHUNK_EVENTS", "100")]);
    let client = http();
    for b in 0..10u32 {
        let batch: Vec<_> = (b * 100..b * 100 + 100)
            .map(|i| {
                let name = ["a", "b"][i as usize % 2];
                let ts = 1_790_000_000_000u64 + u64::from(i) * 1000;
                json!({"id": uuid_n(i), "event": name, "user_id": format!("u{}", i % 37), "timestamp": ts})
            })
            .collect();
        let (status, body) = post_batch(&client, &server.url, &batch).unwrap();
        assert_eq!((status, &body["accepted"]), (200, &json!(100)), "{body}");
    }
    assert!(server.terminate().success());
}

fn run(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tally().args(args).arg("--data").arg(data).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn flip(path: &Path, at_fraction: f64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = (bytes.len() as f64 * at_fraction) as usize;
    bytes[at] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_damaged_chunk_is_named_skipped_on_request_and_never_misread() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    store_of_ten_chunks(data);
    let (code, out, _) = run(data, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sound: 1000 events"), "{out}");

    let chunk = data.join("store/chunks/00000003.chunk");
    flip(&chunk, 0.3); // inside the events section
    let (code, out, _) = run(data, &["check"]);
    assert_eq!(code, 1);
    assert!(out.contains("00000003.chunk"), "{out}");

    // Export stops, naming the file and the way out...
    let (code, _, err) = run(data, &["export"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("00000003.chunk") && err.contains("--skip-damaged"),
        "{err}"
    );
    // ... or reads every intact event, saying what it skipped.
    let (code, out, err) = run(data, &["export", "--skip-damaged"]);
    assert_eq!(code, 0, "{err}");
    let lines = out.lines().count();
    assert!((900..1000).contains(&lines), "{lines} lines");
    assert!(
        err.contains("skipped") && err.contains("00000003.chunk"),
        "{err}"
    );

    // A collector refuses to start on a missing chunk, naming it.
    std::fs::remove_file(data.join("store/chunks/00000005.chunk")).unwrap();
    let out = tally()
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chunks/00000005.chunk") && err.contains("tally check"),
        "{err}"
    );
}

#[test]
fn a_lost_index_is_reported_then_rebuilt_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    store_of_ten_chunks(data);
    let before = run(
        data,
        &[
            "funnel",
            "--steps",
            "a,b",
            "--from",
            "2027-01-01",
            "--to",
            "2027-02-01",
            "--format",
            "json",
        ],
    );
    assert_eq!(before.0, 0, "{}", before.2);
    std::fs::remove_dir_all(data.join("store/index")).unwrap();

    let (code, out, _) = run(data, &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("index"), "{out}");
    let (code, out, err) = run(data, &["check", "--repair"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("rebuilt the index from 10 chunk"), "{out}");
    let after = run(
        data,
        &[
            "funnel",
            "--steps",
            "a,b",
            "--from",
            "2027-01-01",
            "--to",
            "2027-02-01",
            "--format",
            "json",
        ],
    );
    assert_eq!(after.1, before.1);
    assert_eq!(crate::support::export_ids(data).len(), 1000);
}

#[test]
fn a_log_damaged_in_the_middle_is_refused_then_cut_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut server = Server::start(data);
    let client = http();
    for b in 0..3u32 {
        let batch: Vec<_> = (b * 10..b * 10 + 10)
            .map(|i| json!({"id": uuid_n(i), "event": "a", "user_id": "u"}))
            .collect();
        assert_eq!(post_batch(&client, &server.url, &batch).unwrap().0, 200);
    }
    server.kill();
    let log = std::fs::read_dir(data.join("store/wal"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    flip(&log, 0.5);
    let (code, _, err) = run(data, &["export"]);
    assert_eq!(code, 1);
    assert!(err.contains(".wal") && err.contains("byte"), "{err}");
    let (code, out, _) = run(data, &["check", "--repair"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cut at byte"), "{out}");
    let ids = crate::support::export_ids(data);
    assert!(ids.len() < 30 && ids.len() >= 10, "{}", ids.len());
    assert!(
        std::fs::read_dir(data.join("store/damaged"))
            .unwrap()
            .count()
            == 1
    );
}
