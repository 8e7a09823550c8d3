//! CORS and `sendBeacon` bodies on the ingest endpoints (SPEC §2,
//! issue 12), over plain HTTP; `browser.rs` does the same from Chromium.

use serde_json::json;

use crate::support::*;

const PAGE: &str = "http://127.0.0.1:8000";

fn event(n: u32) -> serde_json::Value {
    json!({"id": uuid_n(n), "event": "page_view", "anonymous_id": "anon-1"})
}

fn header(resp: &reqwest::blocking::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

#[test]
fn listed_origins_get_cors_answers_and_others_none() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--cors-origin", PAGE]);
    let client = http();
    for path in ["/v1/track", "/v1/batch"] {
        let pre = client
            .request(reqwest::Method::OPTIONS, format!("{}{path}", server.url))
            .header("Origin", PAGE)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
            .unwrap();
        assert_eq!(pre.status().as_u16(), 204, "preflight of {path}");
        assert_eq!(
            header(&pre, "access-control-allow-origin").as_deref(),
            Some(PAGE)
        );
        assert_eq!(header(&pre, "vary").as_deref(), Some("Origin"));
        let methods = header(&pre, "access-control-allow-methods").unwrap();
        assert!(
            methods.contains("POST") && methods.contains("OPTIONS"),
            "{methods}"
        );
        let allowed = header(&pre, "access-control-allow-headers").unwrap();
        assert!(allowed.contains("Authorization") && allowed.contains("Content-Type"));
        assert_eq!(
            header(&pre, "access-control-max-age").as_deref(),
            Some("86400")
        );

        // An unlisted origin: refused, with a JSON error and no CORS header.
        let pre = client
            .request(reqwest::Method::OPTIONS, format!("{}{path}", server.url))
            .header("Origin", "http://evil.test")
            .header("Access-Control-Request-Method", "POST")
            .send()
            .unwrap();
        assert_eq!(pre.status().as_u16(), 403);
        assert!(header(&pre, "access-control-allow-origin").is_none());
        let body: serde_json::Value = pre.json().unwrap();
        assert!(error_message(&body).contains("http://evil.test"), "{body}");
    }
    // The answer itself, errors included, carries the header for a listed
    // origin only.
    let post = |origin: &str, key: Option<&str>| {
        let mut req = client
            .post(format!("{}/v1/track", server.url))
            .header("Origin", origin)
            .json(&event(1));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send().unwrap()
    };
    let ok = post(PAGE, Some(WRITE_KEY));
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(
        header(&ok, "access-control-allow-origin").as_deref(),
        Some(PAGE)
    );
    let denied = post(PAGE, None);
    assert_eq!(denied.status().as_u16(), 401);
    assert_eq!(
        header(&denied, "access-control-allow-origin").as_deref(),
        Some(PAGE)
    );
    let other = post("http://evil.test", Some(WRITE_KEY));
    assert!(header(&other, "access-control-allow-origin").is_none());
    // Queries never answer CORS.
    let q = client
        .get(format!("{}/v1/events", server.url))
        .header("Origin", PAGE)
        .bearer_auth(READ_KEY)
        .send()
        .unwrap();
    assert!(header(&q, "access-control-allow-origin").is_none());
}

#[test]
fn without_cors_origins_a_preflight_is_refused_and_star_allows_any() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let pre = http()
        .request(reqwest::Method::OPTIONS, format!("{}/v1/batch", server.url))
        .header("Origin", PAGE)
        .send()
        .unwrap();
    assert_eq!(pre.status().as_u16(), 403);
    drop(server);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(dir.path(), &[], &[("TALLY_CORS_ORIGINS", "*")]);
    let pre = http()
        .request(reqwest::Method::OPTIONS, format!("{}/v1/batch", server.url))
        .header("Origin", "http://any.test:1234")
        .send()
        .unwrap();
    assert_eq!(pre.status().as_u16(), 204);
    assert_eq!(
        header(&pre, "access-control-allow-origin").as_deref(),
        Some("http://any.test:1234")
    );
}

#[test]
fn batch_takes_the_key_in_a_text_plain_body() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = http();
    let send = |body: serde_json::Value| {
        let resp = client
            .post(format!("{}/v1/batch", server.url))
            .header("Content-Type", "text/plain;charset=UTF-8")
            .body(body.to_string())
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<serde_json::Value>().unwrap())
    };
    let (status, answer) = send(json!({"key": WRITE_KEY, "batch": [event(1), event(2)]}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 2);
    // Retried (a beacon and a fetch of the same events): duplicates.
    let (status, answer) = send(json!({"key": WRITE_KEY, "batch": [event(1)]}));
    assert_eq!((status, answer["duplicates"].clone()), (200, json!(1)));
    for (body, what) in [
        (json!({"batch": [event(3)]}), "no key"),
        (
            json!({"key": READ_KEY, "batch": [event(3)]}),
            "the read key",
        ),
        (
            json!({"key": "wrong-key-123", "batch": [event(3)]}),
            "a wrong key",
        ),
        (
            json!({"key": 7, "batch": [event(3)]}),
            "a key that is no string",
        ),
    ] {
        let (status, answer) = send(body);
        assert_eq!(status, 401, "{what}: {answer}");
        error_message(&answer);
    }
    // Same validation as ever: rejected events are listed.
    let (status, answer) = send(json!({"key": WRITE_KEY, "batch": [{"event": ""}]}));
    assert_eq!(status, 200);
    assert_eq!(answer["rejected"].as_array().unwrap().len(), 1);
    // A header and a wrong body key: the body key is checked too.
    let resp = client
        .post(format!("{}/v1/batch", server.url))
        .bearer_auth(WRITE_KEY)
        .json(&json!({"key": "wrong-key-123", "batch": [event(4)]}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    drop(server);
    let ids = export_ids(dir.path());
    assert_eq!(ids.len(), 2, "{ids:?}");
}
#[test]
fn sdk_js_is_served_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let resp = http().get(format!("{}/sdk.js", server.url)).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        header(&resp, "content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    let text = resp.text().unwrap();
    assert!(text.contains("tally"), "{}", &text[..text.len().min(200)]);
}
