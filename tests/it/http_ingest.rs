//! SPEC §2 (ingest side of the collector HTTP API), driven against the real
//! `tally serve` binary: every answer of `/v1/track` and `/v1/batch`, the
//! size limits, auth, dedup, `/healthz`, `/metrics`, keys and shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    READ_KEY, Server, WRITE_KEY, error_message, export_events, export_ids, get_text, http,
    http_fresh, post_batch, uuid_n,
};

/// A valid event with a fixed id and a past timestamp.
fn valid(n: u32) -> Value {
    json!({
        "id": uuid_n(n),
        "event": "signup",
        "user_id": format!("user-{n}"),
        "timestamp": "2026-10-05T10:00:00Z",
    })
}

/// POSTs `body` (raw bytes) to `path` with the write key and `headers`.
fn post_raw(
    url: &str,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = http().post(format!("{url}{path}")).body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().expect("POST");
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn post_json(url: &str, path: &str, body: &Value) -> (u16, Value) {
    post_raw(
        url,
        path,
        Some(WRITE_KEY),
        &[("Content-Type", "application/json")],
        serde_json::to_vec(body).unwrap(),
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Asserts a 200 ingest answer has exactly the SPEC shape and returns
/// (accepted, duplicates, rejected as index -> error).
/// The 400 of `/v1/track` for its one rejected event (SPEC §2):
/// `{"error": "...", "rejected": [{"index": 0, "error": "..."}]}`; returns
/// the rejection's message.
fn track_rejection(status: u16, body: &Value) -> String {
    assert_eq!(status, 400, "expected 400, got {status}: {body}");
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["error", "rejected"]), "{body}");
    let rejected = body["rejected"].as_array().expect("rejected is an array");
    assert_eq!(rejected.len(), 1, "{body}");
    assert_eq!(rejected[0]["index"], 0, "{body}");
    let message = rejected[0]["error"].as_str().expect("error is a string");
    assert!(
        body["error"].as_str().unwrap().contains(message),
        "the top-level error names the reason: {body}"
    );
    message.to_string()
}

fn ingest_answer(status: u16, body: &Value) -> (u64, u64, BTreeMap<u64, String>) {
    assert_eq!(status, 200, "expected 200, got {status}: {body}");
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"));
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["accepted", "duplicates", "rejected"]),
        "ingest answer keys: {body}"
    );
    let rejected = body["rejected"]
        .as_array()
        .expect("rejected is an array")
        .iter()
        .map(|r| {
            let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                BTreeSet::from(["index", "error"]),
                "rejection shape: {r}"
            );
            (
                r["index"].as_u64().unwrap(),
                r["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (
        body["accepted"].as_u64().expect("accepted"),
        body["duplicates"].as_u64().expect("duplicates"),
        rejected,
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn batch_with_valid_and_invalid_events_stores_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let batch = vec![
        valid(1),
        json!({"id": uuid_n(2), "user_id": "u"}), // no event
        valid(3),
        json!({"id": uuid_n(4), "event": "x", "user_id": "u", "stage": "nope"}),
        json!({"id": uuid_n(5), "event": "x", "user_id": "u", "timestamp": now_ms() + 3 * 3_600_000}),
        valid(6),
    ];
    let (status, body) = post_batch(&http(), &server.url, &batch).unwrap();
    let (accepted, duplicates, rejected) = ingest_answer(status, &body);
    assert_eq!((accepted, duplicates), (3, 0), "{body}");
    assert_eq!(
        rejected.keys().copied().collect::<Vec<_>>(),
        vec![1, 3, 4],
        "{body}"
    );
    assert!(rejected[&1].contains("event"), "{body}");
    assert!(rejected[&3].contains("stage"), "{body}");
    assert!(rejected[&4].contains("timestamp"), "{body}");
    assert!(server.terminate().success());
    let ids: BTreeSet<String> = export_ids(dir.path()).into_iter().collect();
    assert_eq!(ids, BTreeSet::from([uuid_n(1), uuid_n(3), uuid_n(6)]));
}

#[test]
fn each_rejection_names_the_offending_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let now = now_ms();
    let cases: Vec<(&str, Value)> = vec![
        ("event", json!({"user_id": "u"})),
        ("event", json!({"event": "", "user_id": "u"})),
        ("event", json!({"event": "x".repeat(201), "user_id": "u"})),
        ("event", json!({"event": "a\u{7}b", "user_id": "u"})),
        ("event", json!({"event": "a\u{85}b", "user_id": "u"})),
        ("event", json!({"event": 5, "user_id": "u"})),
        ("user_id", json!({"event": "x"})),
        ("user_id", json!({"event": "x", "user_id": ""})),
        ("user_id", json!({"event": "x", "user_id": "u".repeat(256)})),
        ("user_id", json!({"event": "x", "user_id": 42})),
        ("anonymous_id", json!({"event": "x", "anonymous_id": ""})),
        (
            "anonymous_id",
            json!({"event": "x", "anonymous_id": "a".repeat(256)}),
        ),
        (
            "id",
            json!({"event": "x", "user_id": "u", "id": "not-a-uuid"}),
        ),
        (
            "id",
            json!({"event": "x", "user_id": "u", "id": "0190a6e47c3b7d2e9f1a2b3c4d5e6f70"}),
        ),
        (
            "timestamp",
            json!({"event": "x", "user_id": "u", "timestamp": "2026-10-05 10:00:00Z"}),
        ),
        (
            "timestamp",
            json!({"event": "x", "user_id": "u", "timestamp": "2016-12-31T23:59:60Z"}),
        ),
        (
            "timestamp",
            json!({"event": "x", "user_id": "u", "timestamp": 1.7e12}),
        ),
        (
            "timestamp",
            json!({"event": "x", "user_id": "u", "timestamp": "1999-12-31T23:59:59.999Z"}),
        ),
        (
            "timestamp",
            json!({"event": "x", "user_id": "u", "timestamp": 946_684_799_999_i64}),
        ),
        (
            "timestamp",
            json!({"event": "x", "user_id": "u", "timestamp": now + 2 * 3_600_000}),
        ),
        (
            "timestamp",
            json!({"event": "x", "user_id": "u", "timestamp": "yesterday"}),
        ),
        (
            "sent_at",
            json!({"event": "x", "user_id": "u", "sent_at": "soon"}),
        ),
        (
            "stage",
            json!({"event": "x", "user_id": "u", "stage": "Revenue"}),
        ),
        (
            "revenue",
            json!({"event": "x", "user_id": "u", "revenue": "10"}),
        ),
        (
            "properties",
            json!({"event": "x", "user_id": "u", "properties": [1, 2]}),
        ),
        (
            "properties",
            json!({"event": "x", "user_id": "u", "properties": "x"}),
        ),
        (
            "properties",
            json!({"event": "x", "user_id": "u", "properties": {"big": "p".repeat(33 * 1024)}}),
        ),
        (
            "colour",
            json!({"event": "x", "user_id": "u", "colour": "red"}),
        ),
    ];
    let batch: Vec<Value> = cases.iter().map(|(_, e)| e.clone()).collect();
    let (status, body) = post_batch(&http(), &server.url, &batch).unwrap();
    let (accepted, duplicates, rejected) = ingest_answer(status, &body);
    assert_eq!((accepted, duplicates), (0, 0), "{body}");
    assert_eq!(rejected.len(), cases.len(), "{body}");
    for (i, (field, event)) in cases.iter().enumerate() {
        let error = &rejected[&(i as u64)];
        assert!(
            error.contains(field),
            "event {i} {event}: error {error:?} does not name {field}"
        );
    }
}

#[test]
fn boundary_values_of_section_1_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let now = now_ms();
    let batch = vec![
        // 2000-01-01 is inclusive.
        json!({"id": uuid_n(1), "event": "x", "user_id": "u", "timestamp": "2000-01-01T00:00:00Z"}),
        json!({"id": uuid_n(2), "event": "x", "user_id": "u", "timestamp": 946_684_800_000_i64}),
        // Lower-case t and z, an offset, sub-millisecond digits truncated.
        json!({"id": uuid_n(3), "event": "x", "user_id": "u", "timestamp": "2026-10-05t10:00:00.123999z"}),
        json!({"id": uuid_n(4), "event": "x", "user_id": "u", "timestamp": "2026-10-05T12:00:00+02:00"}),
        // 200-byte name, 255-byte keys, multi-byte text.
        json!({"id": uuid_n(5), "event": "é".repeat(100), "user_id": "u".repeat(255)}),
        json!({"id": uuid_n(6), "event": "x", "anonymous_id": "a".repeat(255)}),
        // A clock 1 day ahead: timestamp and sent_at both 1 day in the
        // future, corrected to ~now (only checked after correction).
        json!({"id": uuid_n(7), "event": "x", "user_id": "u",
               "timestamp": now + 86_400_000 - 60_000, "sent_at": now + 86_400_000}),
        // Nested properties, negative revenue (a refund), upper-case id.
        json!({"id": uuid_n(8).to_uppercase(), "event": "x", "user_id": "u", "revenue": -12.5,
               "properties": {"plan": {"name": "pro", "seats": [1, 2, {"x": null}]}}}),
        json!({"id": uuid_n(9), "event": "x", "user_id": "u", "stage": "referral", "revenue": 0}),
    ];
    let (status, body) = post_batch(&http(), &server.url, &batch).unwrap();
    let (accepted, _, rejected) = ingest_answer(status, &body);
    assert!(rejected.is_empty(), "{body}");
    assert_eq!(accepted, batch.len() as u64);
    assert!(server.terminate().success());
    let by_id: BTreeMap<String, Value> = export_events(dir.path(), &[])
        .into_iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e))
        .collect();
    assert_eq!(by_id.len(), batch.len());
    assert_eq!(by_id[&uuid_n(1)]["timestamp"], "2000-01-01T00:00:00Z");
    assert_eq!(by_id[&uuid_n(2)]["timestamp"], "2000-01-01T00:00:00Z");
    assert_eq!(by_id[&uuid_n(3)]["timestamp"], "2026-10-05T10:00:00.123Z");
    assert_eq!(by_id[&uuid_n(4)]["timestamp"], "2026-10-05T10:00:00Z");
    // Corrected: about one minute before the time received.
    let ts = chrono::DateTime::parse_from_rfc3339(by_id[&uuid_n(7)]["timestamp"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(
        (ts - (now - 60_000)).abs() < 60_000,
        "skew correction: {ts} vs {now}"
    );
    assert!(
        by_id[&uuid_n(7)].get("sent_at").is_none(),
        "sent_at is not exported"
    );
    let e8 = &by_id[&uuid_n(8)];
    assert_eq!(e8["revenue"].as_f64(), Some(-12.5));
    assert_eq!(
        e8["properties"],
        json!({"plan": {"name": "pro", "seats": [1, 2, {"x": null}]}})
    );
    assert_eq!(by_id[&uuid_n(9)]["stage"], "referral");
}

#[test]
fn malformed_bodies_get_400_saying_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let ct = [("Content-Type", "application/json")];
    let cases: Vec<(&str, &[u8], &[&str])> = vec![
        // Not JSON: the message says where (line/column).
        ("/v1/batch", b"{\"batch\": [", &["line", "column"]),
        ("/v1/batch", b"hello", &["line", "column"]),
        ("/v1/batch", b"", &["batch"]),
        // Wrong shape.
        (
            "/v1/batch",
            b"[{\"event\":\"x\",\"user_id\":\"u\"}]",
            &["batch"],
        ),
        ("/v1/batch", b"{}", &["batch"]),
        ("/v1/batch", b"{\"events\": []}", &["batch"]),
        ("/v1/batch", b"{\"batch\": {}}", &["batch"]),
        ("/v1/batch", b"{\"batch\": \"x\"}", &["batch"]),
        ("/v1/batch", b"{\"batch\": null}", &["batch"]),
        ("/v1/batch", b"{\"batch\": [], \"extra\": 1}", &["extra"]),
        (
            "/v1/batch",
            b"{\"batch\": []} trailing",
            &["line", "column"],
        ),
        ("/v1/batch", b"\xff\xfe{}", &["UTF-8"]),
        ("/v1/track", b"{\"event\": ", &["line", "column"]),
        (
            "/v1/track",
            b"[{\"event\":\"x\",\"user_id\":\"u\"}]",
            &["object"],
        ),
        ("/v1/track", b"\"x\"", &["object"]),
    ];
    for (path, body, words) in cases {
        let (status, answer) = post_raw(&server.url, path, Some(WRITE_KEY), &ct, body.to_vec());
        let shown = String::from_utf8_lossy(body);
        assert_eq!(status, 400, "POST {path} {shown:?}: {answer}");
        let msg = error_message(&answer);
        for w in words {
            assert!(
                msg.contains(w),
                "POST {path} {shown:?}: {msg:?} should mention {w:?}"
            );
        }
    }
}

#[test]
fn keys_missing_wrong_or_of_the_wrong_kind_get_401() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let body = serde_json::to_vec(&json!({"batch": [valid(1)]})).unwrap();
    let one = serde_json::to_vec(&valid(2)).unwrap();
    let ct = [("Content-Type", "application/json")];
    for (path, b) in [("/v1/batch", &body), ("/v1/track", &one)] {
        for key in [None, Some("wrong-key-123"), Some(READ_KEY)] {
            let (status, answer) = post_raw(&server.url, path, key, &ct, b.clone());
            assert_eq!(status, 401, "POST {path} with {key:?}: {answer}");
            error_message(&answer);
        }
        // Not a Bearer credential at all.
        let (status, answer) = post_raw(
            &server.url,
            path,
            None,
            &[("Authorization", WRITE_KEY)],
            b.clone(),
        );
        assert_eq!(status, 401, "{answer}");
        error_message(&answer);
    }
    for path in ["/v1/lifecycle", "/v1/active", "/v1/funnel?steps=a,b"] {
        for key in [None, Some("wrong-key-123"), Some(WRITE_KEY)] {
            let (status, text) = get_text(&http(), &server.url, path, key);
            assert_eq!(status, 401, "GET {path} with {key:?}: {text}");
            error_message(&serde_json::from_str(&text).expect("401 body is JSON"));
        }
    }
    // The scheme is case-insensitive; the key is not.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let auth = format!("{scheme} {WRITE_KEY}");
        let (status, answer) = post_raw(
            &server.url,
            "/v1/track",
            None,
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            serde_json::to_vec(&valid(9)).unwrap(),
        );
        assert_eq!(status, 200, "{scheme}: {answer}");
    }
    let upper = format!("Bearer {}", WRITE_KEY.to_uppercase());
    let (status, _) = post_raw(
        &server.url,
        "/v1/track",
        None,
        &[("Authorization", upper.as_str())],
        one.clone(),
    );
    assert_eq!(status, 401);
    drop(server);
    assert_eq!(
        export_ids(dir.path()),
        vec![uuid_n(9)],
        "only the accepted event is stored"
    );
}

#[test]
fn serve_defaults_to_tally_data_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = crate::support::tally()
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--write-key", WRITE_KEY])
        .args(["--read-key", READ_KEY])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let url = loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "no listening line"
        );
        if let Some(rest) = line.trim().strip_prefix("tally listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let (status, body) = post_batch(&http(), &url, &[valid(1)]).unwrap();
    crate::support::signal(child.id() as i32, "TERM");
    let exit = child.wait().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(exit.success());
    assert!(
        dir.path().join("tally-data").is_dir(),
        "./tally-data was not created"
    );
    // The other commands default to ./tally-data too.
    let out = crate::support::tally()
        .current_dir(dir.path())
        .arg("export")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&uuid_n(1)));
}

#[test]
fn body_over_5_mib_gets_413() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // 200 events of ~30 KB: 6 MB, each event valid on its own.
    let batch: Vec<Value> = (0..200)
        .map(|n| {
            let mut e = valid(n);
            e["properties"] = json!({"blob": "b".repeat(30_000)});
            e
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "batch": batch })).unwrap();
    assert!(body.len() > 5 * 1024 * 1024);
    let (status, answer) = post_raw(
        &server.url,
        "/v1/batch",
        Some(WRITE_KEY),
        &[("Content-Type", "application/json")],
        body,
    );
    assert_eq!(status, 413, "{answer}");
    error_message(&answer);
    // The same body sent chunked (no Content-Length) is refused before its
    // size is known: only a declared length tells a whole body from one cut
    // short (http_limits.rs).
    let body = serde_json::to_vec(&json!({ "batch": batch })).unwrap();
    let resp = http()
        .post(format!("{}/v1/batch", server.url))
        .bearer_auth(WRITE_KEY)
        .header("Content-Type", "application/json")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(body)))
        .send()
        .expect("chunked POST");
    assert_eq!(resp.status().as_u16(), 411);
    error_message(&resp.json().unwrap());
    // A single /v1/track body over the limit too.
    let mut e = valid(1);
    e["properties"] = json!({"blob": "b".repeat(6 * 1024 * 1024)});
    let (status, answer) = post_raw(
        &server.url,
        "/v1/track",
        Some(WRITE_KEY),
        &[("Content-Type", "application/json")],
        serde_json::to_vec(&e).unwrap(),
    );
    assert_eq!(status, 413, "{answer}");
    error_message(&answer);
    drop(server);
    assert!(export_ids(dir.path()).is_empty());
}

#[test]
fn a_full_batch_of_1000_events_just_under_5_mib_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let batch: Vec<Value> = (0..1000)
        .map(|n| {
            let mut e = valid(n);
            e["properties"] = json!({"blob": "b".repeat(5000)});
            e
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "batch": batch })).unwrap();
    assert!(
        body.len() > 5_000_000 && body.len() <= 5 * 1024 * 1024,
        "{}",
        body.len()
    );
    let (status, answer) = post_raw(
        &server.url,
        "/v1/batch",
        Some(WRITE_KEY),
        &[("Content-Type", "application/json")],
        body,
    );
    assert_eq!(ingest_answer(status, &answer).0, 1000);
}

/// `{"batch":[valid(n)]` + spaces + `}`: valid JSON of exactly `len` bytes.
fn padded_batch(n: u32, len: usize) -> Vec<u8> {
    let mut body = format!("{{\"batch\":[{}]", valid(n)).into_bytes();
    body.resize(len - 1, b' ');
    body.push(b'}');
    body
}

/// The 5 MiB limit is inclusive, on the wire and once inflated.
#[test]
fn body_of_exactly_5_mib_is_accepted_one_byte_more_is_413() {
    const LIMIT: usize = 5 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let json = [("Content-Type", "application/json")];
    let (status, answer) = post_raw(
        &server.url,
        "/v1/batch",
        Some(WRITE_KEY),
        &json,
        padded_batch(1, LIMIT),
    );
    assert_eq!(ingest_answer(status, &answer).0, 1);
    let (status, answer) = post_raw(
        &server.url,
        "/v1/batch",
        Some(WRITE_KEY),
        &json,
        padded_batch(2, LIMIT + 1),
    );
    assert_eq!(status, 413, "{answer}");
    error_message(&answer);
    let gz = [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
    ];
    let (status, answer) = post_raw(
        &server.url,
        "/v1/batch",
        Some(WRITE_KEY),
        &gz,
        gzip(&padded_batch(3, LIMIT)),
    );
    assert_eq!(ingest_answer(status, &answer).0, 1);
    let (status, answer) = post_raw(
        &server.url,
        "/v1/batch",
        Some(WRITE_KEY),
        &gz,
        gzip(&padded_batch(4, LIMIT + 1)),
    );
    assert_eq!(status, 413, "{answer}");
    error_message(&answer);
    drop(server);
    assert_eq!(export_ids(dir.path()), vec![uuid_n(1), uuid_n(3)]);
}

#[test]
fn more_than_1000_events_gets_413() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let batch: Vec<Value> = (0..1001).map(valid).collect();
    let (status, answer) = post_batch(&http(), &server.url, &batch).unwrap();
    assert_eq!(status, 413, "{answer}");
    let msg = error_message(&answer);
    assert!(msg.contains("1000"), "{msg}");
    drop(server);
    assert!(
        export_ids(dir.path()).is_empty(),
        "nothing of a refused batch is stored"
    );
}

#[test]
fn gzip_body_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let batch: Vec<Value> = (0..50).map(valid).collect();
    let body = gzip(&serde_json::to_vec(&json!({ "batch": batch })).unwrap());
    let headers = [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
    ];
    let (status, answer) = post_raw(&server.url, "/v1/batch", Some(WRITE_KEY), &headers, body);
    assert_eq!(ingest_answer(status, &answer), (50, 0, BTreeMap::new()));
    // /v1/track too.
    let body = gzip(&serde_json::to_vec(&valid(50)).unwrap());
    let (status, answer) = post_raw(&server.url, "/v1/track", Some(WRITE_KEY), &headers, body);
    assert_eq!(ingest_answer(status, &answer), (1, 0, BTreeMap::new()));
    // A body that is not gzip although it says so: 400 with an error.
    let (status, answer) = post_raw(
        &server.url,
        "/v1/batch",
        Some(WRITE_KEY),
        &headers,
        b"{\"batch\":[]}".to_vec(),
    );
    assert_eq!(status, 400, "{answer}");
    error_message(&answer);
    assert!(server.terminate().success());
    assert_eq!(export_ids(dir.path()).len(), 51);
}

#[test]
fn gzip_bomb_gets_413() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // Valid JSON that inflates to 6 MiB of whitespace: a few KB on the wire.
    let mut json = b"{\"batch\": [".to_vec();
    json.extend(std::iter::repeat_n(b' ', 6 * 1024 * 1024));
    json.extend_from_slice(b"]}");
    let body = gzip(&json);
    assert!(body.len() < 100 * 1024, "{}", body.len());
    let headers = [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
    ];
    let (status, answer) = post_raw(
        &server.url,
        "/v1/batch",
        Some(WRITE_KEY),
        &headers,
        body.clone(),
    );
    assert_eq!(status, 413, "{answer}");
    error_message(&answer);
    let (status, answer) = post_raw(&server.url, "/v1/track", Some(WRITE_KEY), &headers, body);
    assert_eq!(status, 413, "{answer}");
    error_message(&answer);
    // The server is still fine afterwards.
    let (status, text) = get_text(&http(), &server.url, "/healthz", None);
    assert_eq!((status, text.as_str()), (200, "ok"));
}

#[test]
fn unsupported_content_encoding_is_refused_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let headers = [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "br"),
    ];
    let (status, answer) = post_raw(
        &server.url,
        "/v1/batch",
        Some(WRITE_KEY),
        &headers,
        b"{\"batch\":[]}".to_vec(),
    );
    assert!((400..500).contains(&status), "{status} {answer}");
    error_message(&answer);
}

#[test]
fn duplicates_within_one_batch_keep_the_first_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let first = valid(1);
    let mut second = valid(1);
    second["event"] = json!("other");
    let mut upper = valid(1);
    upper["id"] = json!(uuid_n(1).to_uppercase());
    upper["event"] = json!("third");
    // An invalid event with the same id is a rejection, not a duplicate.
    let invalid = json!({"id": uuid_n(1), "event": ""});
    let batch = vec![first, second, valid(2), upper, invalid];
    let (status, body) = post_batch(&http(), &server.url, &batch).unwrap();
    let (accepted, duplicates, rejected) = ingest_answer(status, &body);
    assert_eq!((accepted, duplicates), (2, 2), "{body}");
    assert_eq!(rejected.keys().copied().collect::<Vec<_>>(), vec![4]);
    assert!(server.terminate().success());
    let events = export_events(dir.path(), &[]);
    assert_eq!(events.len(), 2);
    let e1 = events.iter().find(|e| e["id"] == uuid_n(1)).unwrap();
    assert_eq!(e1["event"], "signup", "the first one is kept");
}

#[test]
fn a_valid_event_after_an_invalid_one_with_the_same_id_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let batch = vec![json!({"id": uuid_n(1), "event": ""}), valid(1)];
    let (status, body) = post_batch(&http(), &server.url, &batch).unwrap();
    let (accepted, duplicates, rejected) = ingest_answer(status, &body);
    assert_eq!((accepted, duplicates, rejected.len()), (1, 0, 1), "{body}");
    assert!(server.terminate().success());
    assert_eq!(export_ids(dir.path()), vec![uuid_n(1)]);
}

#[test]
fn duplicates_across_requests_and_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let client = http_fresh();
    let (status, body) = post_batch(&client, &server.url, &[valid(1), valid(2)]).unwrap();
    assert_eq!(ingest_answer(status, &body).0, 2);
    let mut changed = valid(2);
    changed["event"] = json!("changed");
    changed["id"] = json!(uuid_n(2).to_uppercase());
    let (status, body) = post_batch(&client, &server.url, &[changed, valid(3)]).unwrap();
    assert_eq!(ingest_answer(status, &body), (1, 1, BTreeMap::new()));
    let (status, body) = post_json(&server.url, "/v1/track", &valid(1));
    assert_eq!(ingest_answer(status, &body), (0, 1, BTreeMap::new()));
    assert!(server.terminate().success());
    let events = export_events(dir.path(), &[]);
    assert_eq!(events.len(), 3);
    assert!(
        events.iter().all(|e| e["event"] == "signup"),
        "first version kept: {events:?}"
    );
}

#[test]
fn duplicates_are_recognised_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let batch: Vec<Value> = (0..20).map(valid).collect();
    let (status, body) = post_batch(&http(), &server.url, &batch).unwrap();
    assert_eq!(ingest_answer(status, &body).0, 20);
    assert!(server.terminate().success());
    let mut server = Server::start(dir.path());
    let mut again: Vec<Value> = (10..30).map(valid).collect();
    again[0]["event"] = json!("changed");
    let (status, body) = post_batch(&http(), &server.url, &again).unwrap();
    assert_eq!(ingest_answer(status, &body), (10, 10, BTreeMap::new()));
    assert!(server.terminate().success());
    let events = export_events(dir.path(), &[]);
    assert_eq!(events.len(), 30);
    assert!(events.iter().all(|e| e["event"] == "signup"));
}

#[test]
fn duplicates_are_recognised_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let (status, body) = post_batch(&http(), &server.url, &[valid(1), valid(2)]).unwrap();
    assert_eq!(ingest_answer(status, &body).0, 2);
    server.kill();
    let server = Server::start(dir.path());
    let (status, body) = post_batch(&http(), &server.url, &[valid(2), valid(3)]).unwrap();
    assert_eq!(ingest_answer(status, &body), (1, 1, BTreeMap::new()));
}

#[test]
fn track_takes_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let (status, body) = post_json(&server.url, "/v1/track", &valid(1));
    assert_eq!(ingest_answer(status, &body), (1, 0, BTreeMap::new()));
    // An invalid event is a 400 (SPEC §2) with an error and the rejection
    // at index 0, and is not stored.
    let (status, body) = post_json(
        &server.url,
        "/v1/track",
        &json!({"id": uuid_n(2), "event": "x"}),
    );
    let rejected = track_rejection(status, &body);
    assert!(rejected.contains("user_id"), "{body}");
    // A duplicate is still a 200: the event is stored.
    let (status, body) = post_json(&server.url, "/v1/track", &valid(1));
    assert_eq!(ingest_answer(status, &body), (0, 1, BTreeMap::new()));
    // Without an id, the collector assigns one; without a timestamp, the
    // time received is used.
    let before = now_ms();
    let (status, body) = post_json(
        &server.url,
        "/v1/track",
        &json!({"event": "noid", "anonymous_id": "a1"}),
    );
    assert_eq!(ingest_answer(status, &body), (1, 0, BTreeMap::new()));
    let after = now_ms();
    // A batch-shaped body on /v1/track is not an event.
    let (status, body) = post_json(&server.url, "/v1/track", &json!({"batch": [valid(3)]}));
    assert!(track_rejection(status, &body).contains("batch"), "{body}");
    assert!(server.terminate().success());
    let events = export_events(dir.path(), &[]);
    assert_eq!(events.len(), 2, "{events:?}");
    let noid = events.iter().find(|e| e["event"] == "noid").unwrap();
    let id = noid["id"].as_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(id).is_ok() && id == id.to_lowercase(),
        "{id}"
    );
    assert_eq!(noid["anonymous_id"], "a1");
    assert!(noid.get("user_id").is_none());
    let ts = chrono::DateTime::parse_from_rfc3339(noid["timestamp"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(
        ts >= before - 1000 && ts <= after + 1000,
        "{ts} not in [{before}, {after}]"
    );
}

#[test]
fn null_fields_mean_absent() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let batch = vec![
        json!({"id": uuid_n(1), "event": "x", "user_id": "u1", "anonymous_id": null,
               "timestamp": "2026-10-05T10:00:00Z", "sent_at": null, "stage": null,
               "revenue": null, "properties": null}),
        json!({"id": uuid_n(2), "event": "x", "user_id": null, "anonymous_id": "a2",
               "timestamp": "2026-10-05T10:00:00Z"}),
        // id null: one is assigned; timestamp null: time received.
        json!({"id": null, "event": "nullid", "user_id": "u3", "timestamp": null}),
        // A required field given as null is missing.
        json!({"id": uuid_n(4), "event": null, "user_id": "u4"}),
        json!({"id": uuid_n(5), "event": "x", "user_id": null, "anonymous_id": null}),
    ];
    let (status, body) = post_batch(&http(), &server.url, &batch).unwrap();
    let (accepted, _, rejected) = ingest_answer(status, &body);
    assert_eq!(accepted, 3, "{body}");
    assert_eq!(
        rejected.keys().copied().collect::<Vec<_>>(),
        vec![3, 4],
        "{body}"
    );
    assert!(rejected[&3].contains("event"));
    assert!(rejected[&4].contains("user_id"));
    assert!(server.terminate().success());
    let events = export_events(dir.path(), &[]);
    let e1 = events.iter().find(|e| e["id"] == uuid_n(1)).unwrap();
    assert_eq!(
        e1,
        &json!({"id": uuid_n(1), "event": "x", "user_id": "u1", "timestamp": "2026-10-05T10:00:00Z"})
    );
    let e2 = events.iter().find(|e| e["id"] == uuid_n(2)).unwrap();
    assert_eq!(
        e2,
        &json!({"id": uuid_n(2), "event": "x", "anonymous_id": "a2", "timestamp": "2026-10-05T10:00:00Z"})
    );
    assert!(events.iter().any(|e| e["event"] == "nullid"));
}

#[test]
fn unknown_top_level_fields_are_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let batch = vec![
        json!({"id": uuid_n(1), "event": "x", "user_id": "u", "userId": "u"}),
        json!({"id": uuid_n(2), "event": "x", "user_id": "u", "context": {"ip": "1.2.3.4"}}),
        json!({"id": uuid_n(3), "event": "x", "user_id": "u", "extra": null}),
    ];
    let (status, body) = post_batch(&http(), &server.url, &batch).unwrap();
    let (accepted, _, rejected) = ingest_answer(status, &body);
    assert_eq!(accepted, 0, "{body}");
    assert!(rejected[&0].contains("userId"), "{body}");
    assert!(rejected[&1].contains("context"), "{body}");
    assert!(rejected[&2].contains("extra"), "{body}");
    let (status, body) = post_json(
        &server.url,
        "/v1/track",
        &json!({"id": uuid_n(4), "event": "x", "user_id": "u", "name": "n"}),
    );
    assert!(track_rejection(status, &body).contains("name"), "{body}");
    assert!(server.terminate().success());
    assert!(export_ids(dir.path()).is_empty());
}

#[test]
fn empty_batch_is_a_200_with_zero_counts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (status, body) = post_batch(&http(), &server.url, &[]).unwrap();
    assert_eq!(ingest_answer(status, &body), (0, 0, BTreeMap::new()));
}

#[test]
fn every_non_200_answer_has_an_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = http_fresh();
    let cases: Vec<(reqwest::Method, &str, u16)> = vec![
        // `GET /` is the dashboard (SPEC §2).
        (reqwest::Method::GET, "/nope", 404),
        (reqwest::Method::GET, "/v1", 404),
        (reqwest::Method::GET, "/v1/nope", 404),
        (reqwest::Method::GET, "/v1/funnel/extra", 404),
        (reqwest::Method::POST, "/v2/batch", 404),
        (reqwest::Method::POST, "/v1/identify", 404),
        (reqwest::Method::DELETE, "/v1/nope", 404),
        (reqwest::Method::POST, "/v1/batch/extra", 404),
        (reqwest::Method::GET, "/v1/batch", 405),
        (reqwest::Method::GET, "/v1/track", 405),
        (reqwest::Method::PUT, "/v1/batch", 405),
        (reqwest::Method::POST, "/v1/funnel", 405),
        (reqwest::Method::DELETE, "/v1/lifecycle", 405),
        (reqwest::Method::POST, "/healthz", 405),
        (reqwest::Method::POST, "/metrics", 405),
        (reqwest::Method::GET, "/v1/admin/backup", 405),
    ];
    for (method, path, expected) in cases {
        let resp = client
            .request(method.clone(), format!("{}{path}", server.url))
            .bearer_auth(WRITE_KEY)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = resp.text().unwrap();
        assert_eq!(status, expected, "{method} {path}: {text}");
        assert!(
            ctype.starts_with("application/json"),
            "{method} {path}: content-type {ctype}"
        );
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: body is not JSON: {text}"));
        error_message(&body);
    }
}

#[test]
fn healthz_answers_ok() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let resp = http()
        .get(format!("{}/healthz", server.url))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().unwrap().trim(), "ok");
}

/// The value of the first sample whose line starts with `name` (e.g.
/// `tally_events_accepted_total`), or 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            (series == name).then(|| value.parse::<f64>().unwrap())
        })
        .unwrap_or(0.0)
}

#[test]
fn metrics_count_accepted_rejected_and_deduplicated_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = http_fresh();
    let metrics = || {
        let resp = client
            .get(format!("{}/metrics", server.url))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        let text = resp.text().unwrap();
        // The 0.0.4 text format has no OpenMetrics terminator.
        assert!(!text.contains("# EOF"), "{text}");
        text
    };
    // A scraper that asks for OpenMetrics gets it, labelled as such.
    let resp = client
        .get(format!("{}/metrics", server.url))
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(resp.text().unwrap().ends_with("# EOF\n"));
    let before = metrics();
    for name in ["accepted", "rejected", "deduplicated"] {
        assert!(
            before.contains(&format!("# TYPE tally_events_{name} counter")),
            "missing {name} counter:\n{before}"
        );
        assert_eq!(sample(&before, &format!("tally_events_{name}_total")), 0.0);
    }
    let batch = vec![
        valid(1),
        valid(2),
        valid(1),
        json!({"event": "x"}),
        valid(3),
    ];
    let (status, body) = post_batch(&client, &server.url, &batch).unwrap();
    assert_eq!(ingest_answer(status, &body).0, 3);
    let (status, body) = post_json(&server.url, "/v1/track", &valid(2));
    assert_eq!(ingest_answer(status, &body).1, 1);
    let after = metrics();
    assert_eq!(
        sample(&after, "tally_events_accepted_total"),
        3.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, "tally_events_rejected_total"),
        1.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, "tally_events_deduplicated_total"),
        2.0,
        "{after}"
    );
    // Store gauges: what is stored, its files, the writer.
    assert_eq!(sample(&after, "tally_store_events"), 3.0, "{after}");
    assert_eq!(sample(&after, "tally_store_chunks"), 0.0, "{after}");
    assert!(sample(&after, "tally_store_bytes") > 0.0, "{after}");
    assert_eq!(sample(&after, "tally_write_queue_depth"), 0.0, "{after}");
    let fsync = sample(&after, "tally_last_fsync_seconds");
    assert!(fsync > 0.0 && fsync < 10.0, "{after}");
    // Request latency is a histogram with observations by now.
    assert!(
        after.contains("# TYPE tally_http_request_duration_seconds histogram"),
        "{after}"
    );
    let batch_count = after
        .lines()
        .find(|l| {
            l.starts_with("tally_http_request_duration_seconds_count")
                && l.contains("/v1/batch")
                && l.contains("200")
        })
        .unwrap_or_else(|| panic!("no latency count for /v1/batch:\n{after}"));
    assert!(batch_count.ends_with(" 1"), "{batch_count}");
}

#[test]
fn keys_are_generated_printed_once_stored_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, out) = Server::start_keyless(&data, &[]);
    let printed = out.before.join("\n");
    let key_after = |label: &str| {
        out.before
            .iter()
            .find_map(|l| l.trim().strip_prefix(label).map(|k| k.trim().to_string()))
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{printed}"))
    };
    let write = key_after("write key:");
    let read = key_after("read key:");
    assert!(!write.is_empty() && !read.is_empty() && write != read);
    let curl = out
        .before
        .iter()
        .find(|l| l.contains("curl"))
        .unwrap_or_else(|| panic!("no curl line in:\n{printed}"));
    assert!(
        curl.contains(&write) && curl.contains(&server.url) && curl.contains("/v1/"),
        "{curl}"
    );
    // Both keys live somewhere in the data directory.
    let mut stored = String::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            stored.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    assert!(
        stored.contains(&write) && stored.contains(&read),
        "keys not stored in {data:?}"
    );
    // They work, each for its side only.
    let client = http_fresh();
    let send = |key: &str| {
        client
            .post(format!("{}/v1/batch", server.url))
            .bearer_auth(key)
            .json(&json!({"batch": [valid(1)]}))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(send(&write), 200);
    assert_eq!(send(&read), 401);
    assert_eq!(send(WRITE_KEY), 401);
    assert_eq!(
        get_text(&client, &server.url, "/v1/lifecycle", Some(&read)).0,
        200
    );
    assert_eq!(
        get_text(&client, &server.url, "/v1/lifecycle", Some(&write)).0,
        401
    );
    assert!(server.terminate().success());
    let rest = out.rest.join().unwrap();
    assert!(
        !rest.iter().any(|l| l.contains(&write) || l.contains(&read)),
        "keys printed again: {rest:?}"
    );

    // Second start: same keys, not printed.
    let (mut server, out) = Server::start_keyless(&data, &[]);
    assert_eq!(send_with(&server.url, &write), 200);
    assert_eq!(
        get_text(&client, &server.url, "/v1/lifecycle", Some(&read)).0,
        200
    );
    assert!(server.terminate().success());
    let all: Vec<String> = out
        .before
        .into_iter()
        .chain(out.rest.join().unwrap())
        .collect();
    assert!(
        !all.iter().any(|l| l.contains(&write) || l.contains(&read)),
        "keys printed on the second start: {all:?}"
    );
}

fn send_with(url: &str, key: &str) -> u16 {
    http()
        .post(format!("{url}/v1/batch"))
        .bearer_auth(key)
        .json(&json!({"batch": [valid(7)]}))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn keys_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [
        ("TALLY_WRITE_KEY", "env-write-key-1"),
        ("TALLY_READ_KEY", "env-read-key-1"),
    ];
    let (mut server, out) = Server::start_keyless(&data, &env);
    assert!(
        !out.before
            .iter()
            .any(|l| l.contains("write key:") || l.contains("read key:")),
        "no write or read key is generated when both are set: {:?}",
        out.before
    );
    // The admin key was not set: it is generated and printed, alone.
    assert!(
        out.before
            .iter()
            .any(|l| l.trim().starts_with("admin key:")),
        "{:?}",
        out.before
    );
    assert!(
        !out.before.iter().any(|l| l.contains("in force")),
        "{:?}",
        out.before
    );
    assert_eq!(send_with(&server.url, "env-write-key-1"), 200);
    assert_eq!(send_with(&server.url, "env-read-key-1"), 401);
    let client = http_fresh();
    assert_eq!(
        get_text(&client, &server.url, "/v1/active", Some("env-read-key-1")).0,
        200
    );
    assert_eq!(
        get_text(&client, &server.url, "/v1/active", Some("env-write-key-1")).0,
        401
    );
    assert!(server.terminate().success());
}

/// SPEC §2 sets no minimum length for keys: short ones work (with a warning).
#[test]
fn short_keys_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, _out) =
        Server::start_keyless(&data, &[("TALLY_WRITE_KEY", "w"), ("TALLY_READ_KEY", "r")]);
    assert_eq!(send_with(&server.url, "w"), 200);
    assert_eq!(send_with(&server.url, "r"), 401);
    let client = http_fresh();
    assert_eq!(
        get_text(&client, &server.url, "/v1/active", Some("r")).0,
        200
    );
    assert_eq!(
        get_text(&client, &server.url, "/v1/active", Some("w")).0,
        401
    );
    assert!(server.terminate().success());
}

#[test]
fn flags_override_environment_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cmd = crate::support::tally();
    cmd.env("TALLY_WRITE_KEY", "env-write-key-1")
        .env("TALLY_READ_KEY", "env-read-key-1")
        .args(["serve", "--listen", "127.0.0.1:0", "--write-key", WRITE_KEY])
        .args(["--read-key", READ_KEY, "--data"])
        .arg(&data)
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let url = loop {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0);
        if let Some(rest) = line.trim().strip_prefix("tally listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let s1 = send_with(&url, WRITE_KEY);
    let s2 = send_with(&url, "env-write-key-1");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((s1, s2), (200, 401));
}

#[test]
fn sigterm_with_requests_in_flight_keeps_every_acknowledged_event() {
    stop_under_load("TERM");
}

#[test]
fn sigint_with_requests_in_flight_keeps_every_acknowledged_event() {
    stop_under_load("INT");
}

/// Four clients send batches on kept-alive connections as fast as they can;
/// `sig` arrives mid-way. The collector exits 0 promptly (clients that keep
/// sending do not hold it open) and every acknowledged event is stored.
fn stop_under_load(sig: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Instant::now() + Duration::from_secs(20);
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let url = server.url.clone();
            let acked = acked.clone();
            std::thread::spawn(move || {
                let client = http();
                for r in 0..400u32 {
                    if Instant::now() > stop {
                        break;
                    }
                    let batch: Vec<Value> = (0..50)
                        .map(|i| valid(t * 1_000_000 + r * 100 + i))
                        .collect();
                    match post_batch(&client, &url, &batch) {
                        Ok((200, body)) => {
                            assert_eq!(body["accepted"], 50, "{body}");
                            let mut a = acked.lock().unwrap();
                            a.extend(batch.iter().map(|e| e["id"].as_str().unwrap().to_string()));
                        }
                        // Refused or cut off by the shutdown: not acknowledged.
                        Ok((status, body)) => {
                            assert_eq!(status, 503, "{body}");
                            break;
                        }
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    // Let some requests through, then stop the server under load.
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked.lock().unwrap().len() < 2000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stopping = Instant::now();
    let status = server.stop_with(sig);
    let took = stopping.elapsed();
    for t in threads {
        t.join().unwrap();
    }
    assert!(status.success(), "graceful exit on SIG{sig}: {status:?}");
    assert!(
        took < Duration::from_secs(10),
        "SIG{sig}: stopping took {took:?}"
    );
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 2000,
        "only {} events acknowledged",
        acked.len()
    );
    let stored: BTreeSet<String> = export_ids(dir.path()).into_iter().collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..1]
    );
}

#[test]
fn batch_elements_that_are_not_objects_are_rejected_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let batch = vec![
        json!(1),
        json!(null),
        valid(1),
        json!("signup"),
        json!([valid(2)]),
    ];
    let (status, body) = post_batch(&http(), &server.url, &batch).unwrap();
    let (accepted, _, rejected) = ingest_answer(status, &body);
    assert_eq!(accepted, 1, "{body}");
    assert_eq!(
        rejected.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 3, 4],
        "{body}"
    );
    assert!(rejected.values().all(|e| e.contains("object")), "{body}");
}

#[test]
fn a_second_collector_on_the_same_data_dir_fails() {
    let dir = tempfile::tempdir().unwrap();
    let _server = Server::start(dir.path());
    let out = crate::support::tally()
        .args(["serve", "--listen", "127.0.0.1:0", "--write-key", WRITE_KEY])
        .args(["--read-key", READ_KEY, "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
}

#[test]
fn bad_serve_settings_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (args, env, word) in [
        (
            vec!["--write-key", "", "--read-key", READ_KEY],
            vec![],
            "write key",
        ),
        (
            vec!["--write-key", WRITE_KEY, "--read-key", WRITE_KEY],
            vec![],
            "differ",
        ),
        (
            vec![],
            vec![
                ("TALLY_WRITE_KEY", "has space 123"),
                ("TALLY_READ_KEY", READ_KEY),
            ],
            "write key",
        ),
        (
            vec![
                "--write-key",
                WRITE_KEY,
                "--read-key",
                READ_KEY,
                "--cache-mb",
                "0",
            ],
            vec![],
            "cache",
        ),
        (
            vec![
                "--write-key",
                WRITE_KEY,
                "--read-key",
                READ_KEY,
                "--body-timeout-secs",
                "0",
            ],
            vec![],
            "body_timeout_secs",
        ),
        (
            vec!["--write-key", WRITE_KEY, "--read-key", READ_KEY],
            vec![("TALLY_MAX_INFLIGHT_BODY_MB", "4")],
            "max_inflight_body_mb",
        ),
        (
            vec!["--write-key", WRITE_KEY, "--read-key", READ_KEY],
            vec![("TALLY_BODY_TIMEOUT_SECS", "soon")],
            "TALLY_BODY_TIMEOUT_SECS",
        ),
    ] {
        let mut cmd = crate::support::tally();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path())
            .args(&args);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(
            err.contains(word),
            "{args:?}: {err:?} should mention {word:?}"
        );
    }
}

/// Issue 9, item 1: a first start that cannot bind generates and stores the
/// keys but cannot print them; the next start prints them (once), and
/// every start says where the keys are kept.
#[test]
fn keys_not_shown_by_a_failed_first_start_are_printed_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = crate::support::tally()
        .args(["serve", "--listen", &addr, "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("write key"), "{stdout}");
    let stored = std::fs::read_to_string(data.join("keys.toml")).unwrap();
    drop(taken);

    // The next start prints the stored keys, which work.
    let (mut server, out) = Server::start_keyless(&data, &[]);
    let printed = out.before.join("\n");
    let key_after = |label: &str| {
        out.before
            .iter()
            .find_map(|l| l.trim().strip_prefix(label).map(|k| k.trim().to_string()))
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{printed}"))
    };
    let write = key_after("write key:");
    let read = key_after("read key:");
    assert!(
        stored.contains(&write) && stored.contains(&read),
        "{stored}"
    );
    assert!(printed.contains("keys.toml"), "{printed}");
    assert_eq!(send_with(&server.url, &write), 200);
    assert!(server.terminate().success());

    // The one after: not printed again, but where they are kept is said.
    let (mut server, out) = Server::start_keyless(&data, &[]);
    let printed = out.before.join("\n");
    assert!(
        !printed.contains(&write) && !printed.contains(&read),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "API keys are kept in {}",
            data.join("keys.toml").display()
        )),
        "{printed}"
    );
    // (A request first: SIGTERM right after "listening" may beat the
    // signal handler.)
    assert_eq!(send_with(&server.url, &write), 200);
    assert!(server.terminate().success());

    // A configured key that differs from the stored one: say which is in force.
    let (mut server, out) = Server::start_keyless(&data, &[("TALLY_WRITE_KEY", "other-write-key")]);
    let printed = out.before.join("\n");
    assert!(
        printed.contains("the write key in force is the configured one"),
        "{printed}"
    );
    assert!(!printed.contains("the read key in force"), "{printed}");
    assert_eq!(send_with(&server.url, "other-write-key"), 200);
    assert!(server.terminate().success());
}
