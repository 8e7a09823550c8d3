//! SPEC §3 `tally import` and `tally export` against the real binary:
//! summaries (table and `--format json`), line numbers, `--strict`, dedup,
//! `--from/--to`, the export → import round trip, and a busy data directory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::{Value, json};

use crate::support::{
    Server, export_events, export_ids, http, import_file, post_batch, tally, uuid_n, write_ndjson,
};

fn ev(n: u32) -> Value {
    json!({"id": uuid_n(n), "event": "signup", "user_id": format!("u{n}"),
           "timestamp": "2026-10-05T10:00:00Z"})
}

fn line(v: &Value) -> String {
    serde_json::to_string(v).unwrap()
}

/// `tally import FILE --data DATA <extra>`.
fn import(data: &Path, file: &Path, extra: &[&str]) -> Output {
    tally()
        .arg("import")
        .arg(file)
        .arg("--data")
        .arg(data)
        .args(extra)
        .output()
        .unwrap()
}

/// `tally import - --data DATA <extra>` with `input` on stdin.
fn import_stdin(data: &Path, input: &[u8], extra: &[&str]) -> Output {
    let mut child = tally()
        .args(["import", "-", "--data"])
        .arg(data)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The command may exit before reading everything (e.g. a busy data
    // directory): a broken pipe here is not the test's concern.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn json_summary(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "summary is not JSON ({e}): {text:?}; stderr {}",
            stderr(out)
        )
    });
    // Exactly the SPEC keys.
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["accepted", "duplicates", "rejected", "errors"]),
        "{v}"
    );
    for e in v["errors"].as_array().unwrap() {
        let keys: BTreeSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["line", "error"]), "{e}");
        assert!(e["line"].as_u64().unwrap() >= 1);
        assert!(!e["error"].as_str().unwrap().is_empty());
    }
    v
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// (accepted, duplicates, rejected, [(line, error)]).
fn counts(v: &Value) -> (u64, u64, u64, Vec<(u64, String)>) {
    (
        v["accepted"].as_u64().unwrap(),
        v["duplicates"].as_u64().unwrap(),
        v["rejected"].as_u64().unwrap(),
        v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["line"].as_u64().unwrap(),
                    e["error"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
    )
}

/// A file exercising line numbering: blank and whitespace-only lines keep
/// their numbers, CRLF endings, no final newline.
fn mixed_file() -> String {
    [
        line(&ev(1)),                     // 1 ok
        String::new(),                    // 2 blank
        "{\"event\": \"x\"}".to_string(), // 3 rejected: user_id
        line(&ev(2)) + "\r",              // 4 ok (CRLF)
        "   \t".to_string(),              // 5 blank
        "not json".to_string(),           // 6 rejected
        line(&json!({"id": uuid_n(1).to_uppercase(), "event": "again", "user_id": "u1"})), // 7 dup
        line(&json!({"id": uuid_n(3), "event": "x", "user_id": "u", "stage": "nope"})), // 8 rejected
        String::new(),                                                                  // 9 blank
        line(&ev(3)), // 10 ok (no final newline)
    ]
    .join("\n")
}

#[test]
fn import_file_json_summary_with_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, mixed_file()).unwrap();
    let data = dir.path().join("data");
    let out = import(&data, &file, &["--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "rejections are not fatal: {}",
        stderr(&out)
    );
    let (accepted, duplicates, rejected, errors) = counts(&json_summary(&out));
    assert_eq!((accepted, duplicates, rejected), (3, 1, 3));
    let lines: Vec<u64> = errors.iter().map(|e| e.0).collect();
    assert_eq!(lines, vec![3, 6, 8], "{errors:?}");
    assert!(errors[0].1.contains("user_id"), "{errors:?}");
    assert!(errors[2].1.contains("stage"), "{errors:?}");
    let ids: BTreeSet<String> = export_ids(&data).into_iter().collect();
    assert_eq!(ids, BTreeSet::from([uuid_n(1), uuid_n(2), uuid_n(3)]));
    // The first occurrence is the one kept.
    let e1 = export_events(&data, &[])
        .into_iter()
        .find(|e| e["id"] == uuid_n(1))
        .unwrap();
    assert_eq!(e1["event"], "signup");
}

#[test]
fn import_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = import_stdin(&data, mixed_file().as_bytes(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (accepted, duplicates, rejected, errors) = counts(&json_summary(&out));
    assert_eq!((accepted, duplicates, rejected), (3, 1, 3));
    assert_eq!(
        errors.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![3, 6, 8]
    );
    assert_eq!(export_ids(&data).len(), 3);
}

#[test]
fn import_table_summary_reports_counts_and_rejected_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, mixed_file()).unwrap();
    let out = import(&dir.path().join("data"), &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &stderr(&out);
    assert!(text.contains("3 accepted"), "{text}");
    assert!(text.contains("1 duplicate"), "{text}");
    assert!(text.contains("3 rejected"), "{text}");
    for n in ["line 3", "line 6", "line 8"] {
        assert!(text.contains(n), "{text} should mention {n}");
    }
}

#[test]
fn import_strict_exits_1_on_rejections_but_stores_valid_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, mixed_file()).unwrap();
    let data = dir.path().join("data");
    let out = import(&data, &file, &["--strict", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let (accepted, _, rejected, _) = counts(&json_summary(&out));
    assert_eq!((accepted, rejected), (3, 3));
    assert_eq!(
        export_ids(&data).len(),
        3,
        "valid lines are stored either way"
    );
    // Stdin too.
    let data2 = dir.path().join("data2");
    let out = import_stdin(&data2, mixed_file().as_bytes(), &["--strict"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(export_ids(&data2).len(), 3);
    // --strict without rejections (duplicates are not rejections): exit 0.
    let clean = dir.path().join("clean.ndjson");
    write_ndjson(&clean, &[ev(1), ev(4), ev(4)]);
    let out = import(&data, &clean, &["--strict", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (accepted, duplicates, rejected, errors) = counts(&json_summary(&out));
    assert_eq!((accepted, duplicates, rejected, errors.len()), (1, 2, 0, 0));
}

#[test]
fn import_lists_the_first_100_rejections_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    // 25 000 lines (more than one internal chunk), every 200th line bad:
    // 125 rejections, the first 100 on lines 200, 400, ..., 20 000.
    let mut text = String::new();
    for n in 1..=25_000u32 {
        if n % 200 == 0 {
            text.push_str(&format!(
                "{{\"event\": \"bad\", \"user_id\": \"u\", \"stage\": \"s{n}\"}}\n"
            ));
        } else {
            text.push_str(&line(&ev(n)));
            text.push('\n');
        }
    }
    std::fs::write(&file, text).unwrap();
    let data = dir.path().join("data");
    let out = import(&data, &file, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (accepted, duplicates, rejected, errors) = counts(&json_summary(&out));
    assert_eq!((accepted, duplicates, rejected), (24_875, 0, 125));
    let lines: Vec<u64> = errors.iter().map(|e| e.0).collect();
    let expected: Vec<u64> = (1..=100).map(|k| k * 200).collect();
    assert_eq!(lines, expected);
    assert!(errors.iter().all(|e| e.1.contains("stage")));
}

#[test]
fn import_deduplicates_within_the_file_and_against_earlier_imports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = dir.path().join("first.ndjson");
    write_ndjson(&first, &[ev(1), ev(2), ev(1), ev(3)]);
    let s = import_file(&data, &first);
    let (accepted, duplicates, rejected, _) = counts(&s);
    assert_eq!((accepted, duplicates, rejected), (3, 1, 0));
    let second = dir.path().join("second.ndjson");
    let mut changed = ev(2);
    changed["event"] = json!("changed");
    changed["id"] = json!(uuid_n(2).to_uppercase());
    write_ndjson(&second, &[changed, ev(4), ev(3), ev(4)]);
    let s = import_file(&data, &second);
    let (accepted, duplicates, rejected, _) = counts(&s);
    assert_eq!((accepted, duplicates, rejected), (1, 3, 0));
    // Against events that came in over HTTP, too.
    let mut server = Server::start(&data);
    let (status, body) = post_batch(&http(), &server.url, &[ev(4), ev(5)]).unwrap();
    assert_eq!(
        (status, body["duplicates"].clone()),
        (200, json!(1)),
        "{body}"
    );
    assert!(server.terminate().success());
    let third = dir.path().join("third.ndjson");
    write_ndjson(&third, &[ev(5), ev(6)]);
    let (accepted, duplicates, _, _) = counts(&import_file(&data, &third));
    assert_eq!((accepted, duplicates), (1, 1));
    let events = export_events(&data, &[]);
    assert_eq!(events.len(), 6);
    let e2 = events.iter().find(|e| e["id"] == uuid_n(2)).unwrap();
    assert_eq!(e2["event"], "signup");
}

#[test]
fn import_rejects_what_http_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let far_future = 4_102_444_800_000_i64; // 2100-01-01
    let mut text = String::new();
    for l in [
        json!({"event": "x", "user_id": "u", "timestamp": "2026-10-05 10:00:00Z"}),
        json!({"event": "x", "user_id": "u", "timestamp": far_future}),
        json!({"event": "x", "user_id": "u", "timestamp": "1999-12-31T23:59:59Z"}),
        json!({"event": "x", "user_id": "u", "unknown": 1}),
        json!({"event": "x".repeat(201), "user_id": "u"}),
        json!({"event": "x", "user_id": "u", "revenue": "12"}),
        json!([1, 2]),
    ] {
        text.push_str(&line(&l));
        text.push('\n');
    }
    // A line that is not UTF-8, then a good line.
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"{\"event\": \"\xff\", \"user_id\": \"u\"}\n");
    bytes.extend_from_slice(line(&ev(1)).as_bytes());
    std::fs::write(&file, bytes).unwrap();
    let out = import(&dir.path().join("data"), &file, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (accepted, _, rejected, errors) = counts(&json_summary(&out));
    assert_eq!((accepted, rejected), (1, 8), "{errors:?}");
    assert_eq!(
        errors.iter().map(|e| e.0).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    for (i, field) in [
        "timestamp",
        "timestamp",
        "timestamp",
        "unknown",
        "event",
        "revenue",
    ]
    .into_iter()
    .enumerate()
    {
        assert!(
            errors[i].1.contains(field),
            "line {}: {:?}",
            i + 1,
            errors[i].1
        );
    }
}

#[test]
fn import_tolerates_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bom.ndjson");
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    bytes.extend(line(&ev(1)).as_bytes());
    bytes.push(b'\n');
    bytes.extend(line(&ev(2)).as_bytes());
    std::fs::write(&file, bytes).unwrap();
    let (accepted, _, rejected, _) = counts(&import_file(&dir.path().join("data"), &file));
    assert_eq!((accepted, rejected), (2, 0));
}

#[test]
fn import_bad_usage_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    write_ndjson(&file, &[ev(1)]);
    let out = import(&dir.path().join("data"), &file, &["--format", "xml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--format"), "{}", stderr(&out));
    let out = import(
        &dir.path().join("data"),
        &dir.path().join("missing.ndjson"),
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing.ndjson"), "{}", stderr(&out));
}

/// Events exercising every exported field.
fn varied_events(now_ms: i64) -> Vec<Value> {
    vec![
        json!({"id": uuid_n(1).to_uppercase(), "event": "signup", "user_id": "u1",
               "anonymous_id": "dev-1", "timestamp": "2026-10-05T12:00:00.123456+02:00",
               "stage": "acquisition", "properties": {"plan": "pro", "nested": {"a": [1, 2.5, "x", null, true]}}}),
        json!({"id": uuid_n(2), "event": "purchase", "anonymous_id": "anon-2",
               "timestamp": 1_790_000_000_000_i64, "stage": "revenue", "revenue": 19.99}),
        json!({"id": uuid_n(3), "event": "refund", "user_id": "u1",
               "timestamp": "2026-10-06T00:00:00Z", "revenue": -5.5, "properties": {}}),
        // Skewed clock: the client is 1 day ahead; the export has the
        // corrected timestamp (about 1 minute before the import).
        json!({"id": uuid_n(4), "event": "skewed", "user_id": "u4",
               "timestamp": now_ms + 86_400_000 - 60_000, "sent_at": now_ms + 86_400_000}),
        // No id: the collector assigns one (exported, lower case).
        json!({"event": "noid", "user_id": "u5", "timestamp": "2026-10-07T08:00:00Z",
               "stage": "engagement", "revenue": 0}),
        json!({"id": uuid_n(6), "event": "unicode é ✓", "user_id": "ü",
               "timestamp": "2026-10-07T08:00:00.001Z", "properties": {"emoji": "😀", "q": "a\"b"}}),
    ]
}

fn by_id(events: Vec<Value>) -> BTreeMap<String, Value> {
    events
        .into_iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e))
        .collect()
}

#[test]
fn export_writes_wire_form_events_that_import_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let file = dir.path().join("in.ndjson");
    write_ndjson(&file, &varied_events(now));
    let a = dir.path().join("a");
    let (accepted, _, rejected, _) = counts(&import_file(&a, &file));
    assert_eq!((accepted, rejected), (6, 0));
    let exported = export_events(&a, &[]);
    assert_eq!(exported.len(), 6);
    let events = by_id(exported.clone());
    // Each line as SPEC §3 describes it.
    assert_eq!(
        events[&uuid_n(1)],
        json!({"id": uuid_n(1), "event": "signup", "user_id": "u1", "anonymous_id": "dev-1",
               "timestamp": "2026-10-05T10:00:00.123Z", "stage": "acquisition",
               "properties": {"plan": "pro", "nested": {"a": [1, 2.5, "x", null, true]}}})
    );
    let e2 = &events[&uuid_n(2)];
    assert_eq!(e2["anonymous_id"], "anon-2");
    assert!(e2.get("user_id").is_none());
    assert_eq!(e2["timestamp"], "2026-09-21T14:13:20Z");
    assert_eq!(e2["revenue"].as_f64(), Some(19.99));
    assert_eq!(e2["stage"], "revenue");
    let e3 = &events[&uuid_n(3)];
    assert_eq!(e3["revenue"].as_f64(), Some(-5.5));
    assert_eq!(e3["properties"], json!({}));
    let e4 = &events[&uuid_n(4)];
    assert!(e4.get("sent_at").is_none(), "{e4}");
    let ts = chrono::DateTime::parse_from_rfc3339(e4["timestamp"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(
        (ts - (now - 60_000)).abs() < 60_000,
        "corrected timestamp {ts}, now {now}"
    );
    let noid = exported.iter().find(|e| e["event"] == "noid").unwrap();
    let id = noid["id"].as_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(id).is_ok() && id == id.to_lowercase(),
        "{id}"
    );
    assert_eq!(noid["revenue"].as_f64(), Some(0.0));
    assert_eq!(noid["stage"], "engagement");
    assert_eq!(events[&uuid_n(6)]["event"], "unicode é ✓");
    assert_eq!(events[&uuid_n(6)]["properties"]["emoji"], "😀");
    assert_eq!(events[&uuid_n(6)]["timestamp"], "2026-10-07T08:00:00.001Z");
    // Every line has exactly wire-form fields.
    let allowed = [
        "id",
        "event",
        "user_id",
        "anonymous_id",
        "timestamp",
        "stage",
        "revenue",
        "properties",
    ];
    for e in &exported {
        for k in e.as_object().unwrap().keys() {
            assert!(allowed.contains(&k.as_str()), "unexpected field {k} in {e}");
        }
    }

    // Round trip: export → import into a fresh directory → export again.
    let out = tally().args(["export", "--data"]).arg(&a).output().unwrap();
    assert!(out.status.success());
    let dump = dir.path().join("dump.ndjson");
    std::fs::write(&dump, &out.stdout).unwrap();
    let b = dir.path().join("b");
    let (accepted, duplicates, rejected, _) = counts(&import_file(&b, &dump));
    assert_eq!((accepted, duplicates, rejected), (6, 0, 0));
    assert_eq!(by_id(export_events(&b, &[])), events);
    // Importing the export again into the same directory: all duplicates.
    let (accepted, duplicates, _, _) = counts(&import_file(&a, &dump));
    assert_eq!((accepted, duplicates), (0, 6));
}

#[test]
fn export_gives_events_back_in_the_order_they_were_stored() {
    // Ids in descending order and events interleaved: export follows the
    // file (acceptance order), not ids or timestamps, in the sealed chunk
    // an import leaves and across later imports.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first: Vec<Value> = (0..50u32).rev().map(ev).collect();
    let second: Vec<Value> = (50..60u32)
        .map(ev)
        .chain((60..70u32).rev().map(ev))
        .collect();
    for (name, events) in [("a.ndjson", &first), ("b.ndjson", &second)] {
        let file = dir.path().join(name);
        write_ndjson(&file, events);
        let (accepted, _, rejected, _) = counts(&import_file(&data, &file));
        assert_eq!((accepted, rejected), (events.len() as u64, 0));
    }
    let expected: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(export_ids(&data), expected);
}

#[test]
fn export_from_to_is_half_open() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.ndjson");
    let at =
        |n: u32, ts: &str| json!({"id": uuid_n(n), "event": "e", "user_id": "u", "timestamp": ts});
    write_ndjson(
        &file,
        &[
            at(1, "2026-10-04T23:59:59.999Z"),
            at(2, "2026-10-05T00:00:00Z"),
            at(3, "2026-10-05T12:00:00Z"),
            at(4, "2026-10-05T23:59:59.999Z"),
            at(5, "2026-10-06T00:00:00Z"),
            at(6, "2026-10-07T00:00:00Z"),
        ],
    );
    let data = dir.path().join("data");
    import_file(&data, &file);
    let ids = |args: &[&str]| -> BTreeSet<u32> {
        export_events(&data, args)
            .iter()
            .map(|e| {
                let id = e["id"].as_str().unwrap();
                u32::from_str_radix(&id[24..], 16).unwrap()
            })
            .collect()
    };
    assert_eq!(ids(&[]), BTreeSet::from([1, 2, 3, 4, 5, 6]));
    assert_eq!(
        ids(&["--from", "2026-10-05", "--to", "2026-10-06"]),
        BTreeSet::from([2, 3, 4])
    );
    assert_eq!(
        ids(&["--from", "2026-10-05"]),
        BTreeSet::from([2, 3, 4, 5, 6])
    );
    assert_eq!(ids(&["--to", "2026-10-05"]), BTreeSet::from([1]));
    assert_eq!(
        ids(&[
            "--from",
            "2026-10-05T12:00:00Z",
            "--to",
            "2026-10-06T00:00:00.001Z"
        ]),
        BTreeSet::from([3, 4, 5])
    );
    // RFC 3339 with an offset: 2026-10-05T14:00:00+02:00 is 12:00 UTC.
    assert_eq!(
        ids(&["--from", "2026-10-05T14:00:00+02:00", "--to", "2026-10-06"]),
        BTreeSet::from([3, 4])
    );
    // A bad time is a usage error naming the flag.
    let out = tally()
        .args(["export", "--from", "2026-10-05 00:00:00Z", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--from"), "{}", stderr(&out));
}

#[test]
fn import_and_export_exit_1_when_a_collector_holds_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let file = dir.path().join("in.ndjson");
    write_ndjson(&file, &[ev(1)]);
    let out = import(&data, &file, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // Each suggests what that command can do: import sends with the write
    // key, export reads with the read key.
    assert!(
        stderr(&out).contains("--server URL --key WRITE_KEY"),
        "{}",
        stderr(&out)
    );
    let out = import_stdin(&data, line(&ev(2)).as_bytes(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = tally()
        .args(["export", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--server URL --key READ_KEY"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    // A second `tally serve` on the same directory has no --server flag to
    // suggest.
    let out = tally()
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("--server"), "{}", stderr(&out));
    drop(server);
    // Nothing was imported behind the collector's back.
    assert!(export_ids(&data).is_empty());
}

/// Issue 9, item 2: lines stored with a generated id or the import time as
/// their timestamp are worth a warning, since a re-import duplicates them.
#[test]
fn import_warns_about_lines_without_id_or_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("events.ndjson");
    // Line 1: complete; 2 and 3: no id; 4: no timestamp; 5: id null (absent).
    write_ndjson(
        &file,
        &[
            ev(1),
            json!({"event": "signup", "user_id": "a", "timestamp": "2026-10-05T10:00:00Z"}),
            json!({"event": "signup", "user_id": "b", "timestamp": "2026-10-05T10:00:00Z"}),
            json!({"id": uuid_n(4), "event": "signup", "user_id": "c"}),
            json!({"id": null, "event": "signup", "user_id": "d",
                   "timestamp": "2026-10-05T10:00:00Z"}),
        ],
    );
    let out = import(&data, &file, &["--format", "json"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: 3 lines had no \"id\"")
            && stderr.contains("importing this file again will store them again"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: 1 line had no \"timestamp\"")
            && stderr.contains("time of this import"),
        "{stderr}"
    );
    // The JSON summary keeps exactly the SPEC shape.
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary,
        json!({"accepted": 5, "duplicates": 0, "rejected": 0, "errors": []})
    );
    // Lines with both: no warning.
    let file = dir.path().join("complete.ndjson");
    write_ndjson(&file, &[ev(10), ev(11)]);
    let out = import(&data, &file, &[]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// Issue 9, item 5: import and export against a running collector.
#[test]
fn import_and_export_through_a_running_collector() {
    use crate::support::{READ_KEY, WRITE_KEY};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    // 2500 valid lines (three batches), a blank line, two bad lines, and
    // a duplicate id; line numbers are the file's.
    let file = dir.path().join("in.ndjson");
    let mut text = String::new();
    for n in 1..=2500 {
        text.push_str(&line(&ev(n)));
        text.push('\n');
        if n == 10 {
            text.push('\n'); // line 11
        }
        if n == 1500 {
            text.push_str("{not json\n"); // line 1502
        }
    }
    text.push_str(&line(
        &json!({"id": uuid_n(2), "event": "x", "user_id": "u"}),
    )); // dup
    text.push('\n');
    text.push_str(&line(&json!({"event": "x"}))); // no user: line 2504
    text.push('\n');
    std::fs::write(&file, &text).unwrap();
    let out = tally()
        .arg("import")
        .arg(&file)
        .args([
            "--server",
            &server.url,
            "--key",
            WRITE_KEY,
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["accepted"], 2500, "{summary}");
    assert_eq!(summary["duplicates"], 1, "{summary}");
    assert_eq!(summary["rejected"], 2, "{summary}");
    let lines: Vec<u64> = summary["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [1502, 2504], "{summary}");
    // --strict: exit 1 on rejections, as offline.
    let out = tally()
        .arg("import")
        .arg(&file)
        .args(["--server", &server.url, "--key", WRITE_KEY, "--strict"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // The read key cannot write.
    let out = tally()
        .arg("import")
        .arg(&file)
        .args(["--server", &server.url, "--key", READ_KEY])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));

    // Export over HTTP: the same lines as `tally export` would write.
    let out = tally()
        .args(["export", "--server", &server.url, "--key", READ_KEY])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let remote = String::from_utf8(out.stdout).unwrap();
    assert_eq!(remote.lines().count(), 2500);
    // TALLY_SERVER / TALLY_READ_KEY, as for the analyses.
    let out = tally()
        .env("TALLY_SERVER", &server.url)
        .env("TALLY_READ_KEY", READ_KEY)
        .arg("export")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), remote);
    let (status, body) = crate::support::get_text(
        &http(),
        &server.url,
        "/v1/export?from=2026-10-05&to=2026-10-06",
        Some(READ_KEY),
    );
    assert_eq!(status, 200);
    assert_eq!(body.lines().count(), 2500);
    let (status, body) = crate::support::get_text(
        &http(),
        &server.url,
        "/v1/export?from=2026-10-06",
        Some(READ_KEY),
    );
    assert_eq!((status, body.as_str()), (200, ""));
    let (status, _) = crate::support::get_text(&http(), &server.url, "/v1/export", Some(WRITE_KEY));
    assert_eq!(status, 401);
    let (status, _) =
        crate::support::get_text(&http(), &server.url, "/v1/export?fro=1", Some(READ_KEY));
    assert_eq!(status, 400);
    drop(server);
    let offline = tally()
        .args(["export", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(offline.status.success());
    assert_eq!(String::from_utf8(offline.stdout).unwrap(), remote);
}

/// A stand-in collector on loopback that answers `answers` in turn (status
/// and extra headers; `200` answers count the batch as accepted) and
/// reports every request body it got.
fn fake_collector(
    answers: Vec<(u16, &'static str)>,
) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (status, headers) in answers {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let answer = if status == 200 {
                let v: Value = serde_json::from_str(&body).unwrap();
                let n = v["batch"].as_array().unwrap().len();
                format!(r#"{{"accepted":{n},"duplicates":0,"rejected":[]}}"#)
            } else {
                r#"{"error":"busy"}"#.to_string()
            };
            let _ = tx.send(body);
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{headers}\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, rx)
}

#[test]
fn import_server_retries_5xx_and_429_with_the_same_events() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.ndjson");
    // One line without an id: the id is fixed before the first attempt, so
    // every retry carries the same one and the collector deduplicates.
    write_ndjson(
        &file,
        &[
            ev(1),
            json!({"event": "signup", "user_id": "x", "timestamp": "2026-10-05T10:00:00Z"}),
        ],
    );
    let (url, bodies) = fake_collector(vec![(503, ""), (429, "Retry-After: 0\r\n"), (200, "")]);
    let out = tally()
        .arg("import")
        .arg(&file)
        .args(["--server", &url, "--key", "k", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary,
        json!({"accepted": 2, "duplicates": 0, "rejected": 0, "errors": []})
    );
    assert!(stderr(&out).contains("retrying"), "{}", stderr(&out));
    let got: Vec<String> = bodies.try_iter().collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|b| *b == got[0]), "{got:?}");
    let batch: Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(batch["batch"].as_array().unwrap().len(), 2);
    assert!(batch["batch"][1]["id"].is_string(), "{batch}");

    // A refusal that retrying cannot fix (a wrong key) stops at once, exit 1.
    let (url, _bodies) = fake_collector(vec![(401, "")]);
    let out = tally()
        .arg("import")
        .arg(&file)
        .args(["--server", &url, "--key", "wrong"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));

    // Nobody listening at all: the not-running message, no endless retry.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = tally()
        .arg("import")
        .arg(&file)
        .args(["--server", &url, "--key", "k"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is `tally serve` running?"),
        "{}",
        stderr(&out)
    );
}
