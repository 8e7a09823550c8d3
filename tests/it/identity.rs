//! SPEC §1 identity linking end to end, against a real `tally serve`: a
//! visitor's anonymous page views and their identified signup are one
//! person in `tally funnel` (on the command line and over HTTP), also when
//! the link arrives after the anonymous events and after restarts of the
//! collector (clean and SIGKILL), and when it comes from the Rust SDK's
//! `identify` with an anonymous id kept in a file.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{READ_KEY, Server, WRITE_KEY, get_json, http, post_batch, tally};

const FROM: &str = "2026-11-01";
const TO: &str = "2026-11-08";

/// An event on 2026-11-02 at `hh:mm` UTC.
fn event(name: &str, user: Option<&str>, anon: Option<&str>, hh_mm: &str) -> Value {
    let mut e = json!({
        "id": uuid::Uuid::now_v7().to_string(),
        "event": name,
        "timestamp": format!("2026-11-02T{hh_mm}:00Z"),
    });
    if let Some(u) = user {
        e["user_id"] = json!(u);
    }
    if let Some(a) = anon {
        e["anonymous_id"] = json!(a);
        if name == "page_view" {
            e["stage"] = json!("discovery");
            e["properties"] = json!({"path": "/", "utm_source": "newsletter"});
        }
    }
    e
}

fn send(server: &Server, events: &[Value]) {
    let (status, body) = post_batch(&http(), &server.url, events).expect("POST /v1/batch");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], events.len(), "{body}");
}

/// `users` of each step of `page_view → signup` (window 1 day), from a
/// funnel's JSON.
fn users(funnel: &Value) -> Vec<u64> {
    funnel["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps in {funnel}"))
        .iter()
        .map(|s| s["users"].as_u64().expect("users"))
        .collect()
}

const STEPS: [&str; 4] = ["--steps", "page_view,signup", "--window", "1d"];

/// `tally funnel ... --format json` with `target` (`--server URL --key K`
/// or `--data DIR`).
fn cli_funnel(target: &[&str]) -> Vec<u64> {
    let out = tally()
        .arg("funnel")
        .args(STEPS)
        .args(["--from", FROM, "--to", TO, "--format", "json"])
        .args(target)
        .output()
        .expect("run tally funnel");
    assert!(
        out.status.success(),
        "tally funnel: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    users(&serde_json::from_slice(&out.stdout).expect("JSON funnel"))
}

/// The same funnel over HTTP and on the command line against `server`;
/// asserts they agree and returns the users per step.
fn funnel(server: &Server) -> Vec<u64> {
    let (status, body) = get_json(
        &http(),
        &server.url,
        &format!("/v1/funnel?steps=page_view,signup&window=1d&from={FROM}&to={TO}"),
    );
    assert_eq!(status, 200, "{body}");
    let over_http = users(&body);
    let cli = cli_funnel(&["--server", &server.url, "--key", READ_KEY]);
    assert_eq!(cli, over_http, "the CLI and HTTP answer alike");
    over_http
}

fn offline_funnel(data: &Path) -> Vec<u64> {
    cli_funnel(&["--data", data.to_str().expect("utf-8 path")])
}

#[test]
fn anonymous_page_views_and_an_identified_signup_are_one_person_across_late_links_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);

    // Visitor A: two anonymous page views, then a signup carrying both ids,
    // in a later request; later a page view as the identified user.
    send(
        &server,
        &[
            event("page_view", None, Some("anon-a"), "10:00"),
            event("page_view", None, Some("anon-a"), "10:05"),
        ],
    );
    send(
        &server,
        &[event("signup", Some("user-a"), Some("anon-a"), "10:10")],
    );
    send(
        &server,
        &[event("page_view", Some("user-a"), None, "18:00")],
    );
    // Visitor B: an anonymous page view and a signup that carries only the
    // user id: not linked (yet). Visitor C never signs up.
    send(
        &server,
        &[
            event("page_view", None, Some("anon-b"), "11:00"),
            event("signup", Some("user-b"), None, "11:20"),
            event("page_view", None, Some("anon-c"), "12:00"),
        ],
    );
    // Persons with a page view: user-a (anon-a's views and their own),
    // anon-b, anon-c; only user-a signed up after one. (Were anon-a not
    // linked, this would be [4, 0]: four keys, and user-a's own view comes
    // after their signup.)
    assert_eq!(funnel(&server), [3, 1]);

    // A clean restart: the link is kept.
    assert!(server.terminate().success());
    assert_eq!(offline_funnel(&data), [3, 1]);
    let mut server = Server::start(&data);
    assert_eq!(funnel(&server), [3, 1]);

    // B's link arrives now, after the anonymous events and the restart,
    // timestamped between their page view and their signup (an app's
    // `identify`, delivered late). It applies retroactively.
    send(
        &server,
        &[event("identify", Some("user-b"), Some("anon-b"), "11:15")],
    );
    assert_eq!(funnel(&server), [3, 2]);
    // A later link of the same anonymous id to another user changes
    // nothing: the earliest link wins (were anon-b now user-x's, user-b's
    // signup would have no page view before it: [3, 1]).
    send(
        &server,
        &[event("identify", Some("user-x"), Some("anon-b"), "11:30")],
    );
    assert_eq!(funnel(&server), [3, 2]);

    // SIGKILL: the links acknowledged since the last restart are only in
    // the write-ahead log. They survive, and so does the first one.
    server.kill();
    let mut server = Server::start(&data);
    assert_eq!(funnel(&server), [3, 2]);
    assert!(server.terminate().success());
    assert_eq!(offline_funnel(&data), [3, 2]);
}

#[test]
fn the_sdk_identify_links_an_anonymous_id_kept_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let at = |hh_mm: &str| {
        tally_event::time::parse_rfc3339(&format!("2026-11-02T{hh_mm}:00Z")).expect("time")
    };
    // Two runs of a CLI app: anonymous the first time, logged in the second.
    let id_file = dir.path().join("app/anonymous_id");
    for run in 0..2 {
        let anon = tally_sdk::stored_anonymous_id(&id_file).expect("anonymous id");
        let client = tally_sdk::blocking::Client::builder(server.url.clone(), WRITE_KEY)
            .build()
            .expect("client");
        if run == 0 {
            client
                .track(tally_sdk::Person::anonymous(&anon), "page_view")
                .stage(tally_sdk::Stage::Discovery)
                .timestamp_ms(at("09:00"))
                .send()
                .unwrap();
        } else {
            client
                .identify("user-s", &anon)
                .timestamp_ms(at("09:30"))
                .send()
                .unwrap();
            client
                .track("user-s", "signup")
                .stage(tally_sdk::Stage::Acquisition)
                .timestamp_ms(at("09:31"))
                .send()
                .unwrap();
        }
        let report = client.shutdown();
        assert!(report.all_delivered(), "{report:?}");
    }
    // Another visitor with an id of their own who never signs up.
    let other = dir.path().join("other/anonymous_id");
    let client = tally_sdk::blocking::Client::builder(server.url.clone(), WRITE_KEY)
        .build()
        .unwrap();
    client
        .track(
            tally_sdk::Person::anonymous(tally_sdk::stored_anonymous_id(&other).unwrap()),
            "page_view",
        )
        .timestamp_ms(at("09:10"))
        .send()
        .unwrap();
    assert!(client.shutdown().all_delivered());

    assert_eq!(funnel(&server), [2, 1]);
    assert!(server.terminate().success());
    let events = crate::support::export_events(&data, &[]);
    let identify: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == tally_sdk::IDENTIFY_EVENT)
        .collect();
    assert_eq!(identify.len(), 1, "{events:?}");
    let anon = std::fs::read_to_string(&id_file).unwrap();
    assert_eq!(identify[0]["anonymous_id"], anon.trim());
    assert_eq!(identify[0]["user_id"], "user-s");
}
