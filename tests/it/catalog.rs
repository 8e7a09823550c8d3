//! SPEC §3 `tally events` / `GET /v1/events`, the warning for an event name
//! never stored, and `--last` (issue 9, item 3).

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};
use tally_event::time::{DAY_MS, format_rfc3339, now_ms};

use crate::support::{
    READ_KEY, Server, WRITE_KEY, get_json, get_text, http, import_file, post_batch, tally,
    write_ndjson,
};

/// Five events: signups by u1 and u2 (with properties, one nested), three
/// views by u1, a purchase by an anonymous a1.
fn dataset() -> Vec<Value> {
    vec![
        json!({"event": "signup", "user_id": "u1", "timestamp": "2026-10-05T10:00:00Z",
               "properties": {"plan": "pro", "utm": {"source": "ads"}}}),
        json!({"event": "signup", "user_id": "u2", "timestamp": "2026-10-06T10:00:00Z",
               "properties": {"plan": "free", "tags": ["a"], "gone": null}}),
        json!({"event": "view", "user_id": "u1", "timestamp": "2026-10-05T11:00:00Z",
               "properties": {"path": "/"}}),
        json!({"event": "view", "user_id": "u1", "timestamp": "2026-10-07T11:00:00Z"}),
        json!({"event": "view", "user_id": "u1", "timestamp": "2026-10-08T11:00:00Z"}),
        json!({"event": "purchase", "anonymous_id": "a1", "timestamp": "2026-10-09T12:00:00.5Z"}),
    ]
}

fn data_with(events: &[Value]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    write_ndjson(&file, events);
    let data = dir.path().join("data");
    import_file(&data, &file);
    (dir, data)
}

fn run(data: &Path, args: &[&str]) -> Output {
    tally().args(args).arg("--data").arg(data).output().unwrap()
}

fn json_out(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// All time: view 3 (u1; `path`), signup 2 (u1, u2; `plan`, `utm.source`;
/// arrays and nulls are not scalar properties), purchase 1 (a1).
fn expected_all() -> Value {
    json!({"events": [
        {"event": "view", "count": 3, "users": 1,
         "first_seen": "2026-10-05T11:00:00Z", "last_seen": "2026-10-08T11:00:00Z",
         "properties": ["path"]},
        {"event": "signup", "count": 2, "users": 2,
         "first_seen": "2026-10-05T10:00:00Z", "last_seen": "2026-10-06T10:00:00Z",
         "properties": ["plan", "utm.source"]},
        {"event": "purchase", "count": 1, "users": 1,
         "first_seen": "2026-10-09T12:00:00.500Z", "last_seen": "2026-10-09T12:00:00.500Z",
         "properties": []},
    ]})
}

#[test]
fn events_lists_what_is_stored_most_frequent_first() {
    let (_dir, data) = data_with(&dataset());
    assert_eq!(
        json_out(&run(&data, &["events", "--format", "json"])),
        expected_all()
    );
    // [10-06, 10-08): signup by u2 and the view of 10-07, one each: equal
    // counts are listed by name.
    let v = json_out(&run(
        &data,
        &[
            "events",
            "--from",
            "2026-10-06",
            "--to",
            "2026-10-08",
            "--format",
            "json",
        ],
    ));
    assert_eq!(
        v,
        json!({"events": [
            {"event": "signup", "count": 1, "users": 1,
             "first_seen": "2026-10-06T10:00:00Z", "last_seen": "2026-10-06T10:00:00Z",
             "properties": ["plan"]},
            {"event": "view", "count": 1, "users": 1,
             "first_seen": "2026-10-07T11:00:00Z", "last_seen": "2026-10-07T11:00:00Z",
             "properties": []},
        ]})
    );
    // The table and CSV.
    let out = run(&data, &["events"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let first = table.lines().nth(1).unwrap();
    assert!(
        first.starts_with("view") && first.contains("path"),
        "{table}"
    );
    assert!(table.contains("plan, utm.source"), "{table}");
    let out = run(&data, &["events", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        csv.lines().next(),
        Some("event,count,users,first_seen,last_seen,properties")
    );
    assert!(
        csv.contains("signup,2,2,2026-10-05T10:00:00Z,2026-10-06T10:00:00Z,plan utm.source"),
        "{csv}"
    );
}

#[test]
fn events_over_http_and_server() {
    let (_dir, data) = data_with(&dataset());
    let server = Server::start(&data);
    let (status, body) = get_json(&http(), &server.url, "/v1/events");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, expected_all());
    // The read key only.
    let (status, _) = get_text(&http(), &server.url, "/v1/events", Some(WRITE_KEY));
    assert_eq!(status, 401);
    let (status, body) = get_json(&http(), &server.url, "/v1/events?from=2026-10-09");
    assert_eq!(status, 200);
    assert_eq!(body["events"].as_array().unwrap().len(), 1, "{body}");
    let (status, _) = get_json(&http(), &server.url, "/v1/events?form=2026-10-09");
    assert_eq!(status, 400);
    let out = tally()
        .args(["events", "--format", "json", "--server", &server.url])
        .args(["--key", READ_KEY])
        .output()
        .unwrap();
    assert_eq!(json_out(&out), expected_all());
}

/// `events`' names and counts, as `names=only` gives them.
fn names_of(full: &Value) -> Value {
    let events: Vec<Value> = full["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!({"event": e["event"], "count": e["count"]}))
        .collect();
    json!({ "events": events })
}

/// The dashboard's cheap list (`names=only`): the full list's names and
/// counts, in its order, for any range and zone, with names first stored
/// after the collector's name book was filled; `tz` is taken with no range.
#[test]
fn events_names_only_are_the_full_lists_names_and_counts() {
    let (_dir, data) = data_with(&dataset());
    let server = Server::start(&data);
    let c = http();
    let get = |q: &str| {
        let (status, body) = get_json(&c, &server.url, q);
        assert_eq!(status, 200, "{q}: {body}");
        body
    };
    assert_eq!(
        get("/v1/events?names=only"),
        json!({"events": [
            {"event": "view", "count": 3},
            {"event": "signup", "count": 2},
            {"event": "purchase", "count": 1},
        ]})
    );
    // Events that arrive now (a name the book has not seen, in the open
    // chunk) are listed at once.
    let (status, body) = post_batch(
        &c,
        &server.url,
        &[
            json!({"event": "checkout", "user_id": "u3", "timestamp": "2026-10-06T23:30:00Z"}),
            json!({"event": "checkout", "user_id": "u3", "timestamp": "2026-10-07T09:00:00Z"}),
            json!({"event": "checkout", "user_id": "u4", "timestamp": "2026-10-08T09:00:00Z"}),
            json!({"event": "view", "user_id": "u3", "timestamp": "2026-10-06T23:00:00Z"}),
        ],
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    for q in [
        "",
        "from=2026-10-06&to=2026-10-08",
        "from=2026-10-07&to=2026-10-08&tz=Europe/Berlin",
        "from=2026-10-06&to=2026-10-07&tz=Pacific/Auckland",
        "tz=America/New_York",
        "last=3650d&tz=Asia/Kolkata",
    ] {
        let names = get(&format!("/v1/events?names=only&{q}"));
        let full = get(&format!("/v1/events?{q}"));
        assert_eq!(names, names_of(&full), "{q}");
    }
    assert_eq!(
        get("/v1/events?names=only")["events"][0],
        json!({"event": "view", "count": 4})
    );
    assert_eq!(
        get("/v1/events?names=only&from=2026-10-07&to=2026-10-08&tz=Europe/Berlin"),
        json!({"events": [
            {"event": "checkout", "count": 2},
            {"event": "view", "count": 2},
        ]}),
        "Berlin's 7 October starts at 22:00 UTC on the 6th"
    );
    for bad in [
        "names=all",
        "names=only&names=only",
        "names=only&tz=Mars/Olympus",
    ] {
        let (status, body) = get_json(&c, &server.url, &format!("/v1/events?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[test]
fn an_unknown_event_name_warns_with_the_closest_known_names() {
    let (_dir, data) = data_with(&dataset());
    let out = run(
        &data,
        &[
            "funnel",
            "--steps",
            "sigup,purchase",
            "--from",
            "2026-10-01",
            "--to",
            "2026-11-01",
            "--format",
            "json",
        ],
    );
    // Still answers (zeros), exit 0, and says why on stderr.
    let v = json_out(&out);
    assert_eq!(v["steps"][0]["users"], 0, "{v}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no event named 'sigup' was ever stored")
            && stderr.contains("did you mean 'signup'"),
        "{stderr}"
    );
    assert!(!stderr.contains("'purchase' was"), "{stderr}");
    // Activation and retention too; `any` is not a name.
    let out = run(
        &data,
        &["activation", "--start", "signup", "--event", "Purchase"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(stderr.contains("did you mean 'purchase'"), "{stderr}");
    let out = run(&data, &["retention", "--start", "view", "--return", "any"]);
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Known names: no warning.
    let out = run(&data, &["funnel", "--steps", "signup,view"]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Over --server the warning comes along with the answer.
    let server = Server::start(&data);
    let out = tally()
        .args(["funnel", "--steps", "signup,veiw", "--server", &server.url])
        .args(["--key", READ_KEY])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did you mean 'view'"), "{stderr}");
}

#[test]
fn last_means_whole_days_ending_with_today() {
    let now = now_ms();
    let today = now.div_euclid(DAY_MS) * DAY_MS;
    // One event today, one at the first midnight of `--last 30d` (29 days
    // before today), one the millisecond before it.
    let (_dir, data) = data_with(&[
        json!({"event": "today", "user_id": "u", "timestamp": now - 1}),
        json!({"event": "edge", "user_id": "u", "timestamp": today - 29 * DAY_MS}),
        json!({"event": "before", "user_id": "u", "timestamp": today - 29 * DAY_MS - 1}),
    ]);
    let v = json_out(&run(
        &data,
        &["events", "--last", "30d", "--format", "json"],
    ));
    let names: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{v}");
    assert!(names.contains(&"today") && names.contains(&"edge"), "{v}");
    // Weeks: 2w = 14 days; `tally active` lists them, ending today.
    let v = json_out(&run(&data, &["active", "--last", "2w", "--format", "json"]));
    let days = v["days"].as_array().unwrap();
    assert_eq!(days.len(), 14, "{v}");
    assert_eq!(
        days[13]["day"],
        format_rfc3339(today)[..10].to_string(),
        "{v}"
    );
    assert_eq!(
        days[0]["day"],
        format_rfc3339(today - 13 * DAY_MS)[..10].to_string()
    );
    // Export too.
    let out = tally()
        .args(["export", "--last", "30d", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    // With --from or --to it is a usage error (exit 2), for every command.
    for args in [
        vec!["events", "--last", "30d", "--from", "2026-01-01"],
        vec!["active", "--last", "30d", "--to", "2026-01-01"],
        vec![
            "funnel",
            "--steps",
            "a,b",
            "--last",
            "30d",
            "--from",
            "2026-01-01",
        ],
        vec!["export", "--last", "30d", "--to", "2026-01-01"],
    ] {
        let out = run(&data, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    // A bad --last is a usage error that says what is expected.
    let out = run(&data, &["active", "--last", "30"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("30d or 2w"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Over HTTP `last` is a parameter like the others; with `from` a 400.
    let server = Server::start(&data);
    let (status, v) = get_json(&http(), &server.url, "/v1/active?last=2w");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["days"].as_array().unwrap().len(), 14);
    let (status, v) = get_json(&http(), &server.url, "/v1/active?last=2w&from=2026-01-01");
    assert_eq!(status, 400, "{v}");
}

#[test]
fn at_most_100_property_paths_sorted() {
    // 150 scalar properties, nested one level: `g.p000` .. `g.p149`.
    let mut props = serde_json::Map::new();
    for i in 0..150 {
        props.insert(format!("p{i:03}"), json!(i));
    }
    let (_dir, data) = data_with(&[json!({"event": "big", "user_id": "u",
        "timestamp": "2026-10-05T10:00:00Z", "properties": {"g": props}})]);
    let v = json_out(&run(&data, &["events", "--format", "json"]));
    let paths: Vec<&str> = v["events"][0]["properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 100);
    assert_eq!(paths[0], "g.p000");
    assert_eq!(paths[99], "g.p099");
}
