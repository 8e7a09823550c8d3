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
    assert!(!msg.contains("expected a sequence"), "{msg}");
    assert!(!msg.contains("invalid type"), "{msg}");
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
