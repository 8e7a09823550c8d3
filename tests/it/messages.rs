//! Error messages a newcomer meets in the first hour (issue 9, item 6):
//! each says what to do, not only what went wrong.

use serde_json::{Value, json};

use crate::support::{READ_KEY, Server, WRITE_KEY, error_message, http, tally};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_server_without_scheme_says_to_add_http() {
    let out = tally()
        .args(["lifecycle", "--server", "127.0.0.1:8080", "--key", READ_KEY])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("add http://") && err.contains("http://127.0.0.1:8080"),
        "{err}"
    );
}

#[test]
fn a_collector_that_is_not_running_is_named() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = tally()
        .args(["active", "--server", &url, "--key", READ_KEY])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("connection refused at {url}"))
            && err.contains("is `tally serve` running?"),
        "{err}"
    );
}

#[test]
fn serve_port_suggests_listen() {
    let out = tally().args(["serve", "--port", "9000"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--listen"), "{err}");
    assert!(err.contains("127.0.0.1:9000"), "{err}");
}

#[test]
fn a_time_without_zone_says_the_zone_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = tally()
        .args(["active", "--from", "2026-01-01T00:00:00", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("time zone is missing"), "{err}");
    assert!(!err.contains("too short"), "{err}");
}

#[test]
fn http_messages_for_a_bare_array_and_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let post = |path: &str, body: &Value| {
        let resp = http()
            .post(format!("{}{path}", server.url))
            .bearer_auth(WRITE_KEY)
            .json(body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().unwrap())
    };
    // A bare array on /v1/batch: say the body must be an object.
    let (status, body) = post("/v1/batch", &json!([{"event": "signup", "user_id": "u1"}]));
    assert_eq!(status, 400, "{body}");
    let msg = error_message(&body);
    assert!(msg.contains("{\"batch\": [...]}"), "{msg}");
    assert!(msg.contains("not a bare array"), "{msg}");
    assert!(!msg.contains("expected a sequence"), "{msg}");
    // Unix seconds where milliseconds are expected.
    let (status, body) = post(
        "/v1/track",
        &json!({"event": "signup", "user_id": "u1", "timestamp": 1_767_225_600}),
    );
    assert_eq!(status, 400, "{body}");
    let msg = body["rejected"][0]["error"].as_str().unwrap();
    assert!(
        msg.contains("looks like Unix seconds") && msg.contains("1767225600000"),
        "{msg}"
    );
}

#[test]
fn help_starts_with_what_tally_is_and_examples() {
    let out = tally().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.starts_with("Tally: self-hosted product analytics"),
        "{help}"
    );
    let examples = help
        .lines()
        .filter(|l| l.trim_start().starts_with("tally "))
        .count();
    assert!(examples >= 3, "{help}");
    // The range defaults are in every analysis's help.
    let out = tally().args(["active", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("[default: 30 days before --to"), "{help}");
    assert!(
        help.contains("[default: the midnight after today"),
        "{help}"
    );
}

#[test]
fn logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    // A short key is worth a warning, logged right at start.
    let mut child = tally()
        .env("RUST_LOG", "info")
        .args(["serve", "--listen", "127.0.0.1:0", "--write-key", "short"])
        .args(["--read-key", READ_KEY, "--data"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let warning = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("characters long"))
        .expect("the short-key warning");
    let _ = child.kill();
    let _ = child.wait();
    assert!(warning.contains("WARN"), "{warning:?}");
    assert!(!warning.contains('\u{1b}'), "{warning:?}");
}

#[test]
fn csv_defuses_event_names_that_look_like_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e.ndjson");
    crate::support::write_ndjson(
        &file,
        &[
            json!({"event": "=HYPERLINK(\"http://x\")", "user_id": "u",
                   "timestamp": "2026-10-05T10:00:00Z"}),
            json!({"event": "buy", "user_id": "u", "timestamp": "2026-10-05T10:01:00Z",
                   "revenue": -30, "stage": "revenue"}),
        ],
    );
    let data = dir.path().join("data");
    crate::support::import_file(&data, &file);
    let run = |args: &[&str]| {
        let out = tally()
            .args(args)
            .args([
                "--from",
                "2026-10-01",
                "--to",
                "2026-10-10",
                "--format",
                "csv",
            ])
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let funnel = run(&["funnel", "--steps", "=HYPERLINK(\"http://x\"),buy"]);
    assert!(
        funnel.contains("\"'=HYPERLINK(\"\"http://x\"\")\""),
        "{funnel}"
    );
    let events = run(&["events"]);
    assert!(events.contains("\"'=HYPERLINK("), "{events}");
    // A negative number the tool computes stays a number.
    let lifecycle = run(&["lifecycle"]);
    assert!(lifecycle.contains("\nrevenue,,-30\n"), "{lifecycle}");
}
