//! Issue 16, items 6 and 7 (HTTP side): what one client, or many, can make
//! the collector hold or do. Bodies have a deadline and share a budget of
//! bytes in flight; a body cut short is never stored; analyses whose answer
//! grows with the range are bounded; gzip is bounded in members; every
//! error answer the handlers can see carries a JSON body.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    READ_KEY, Server, WRITE_KEY, error_message, export_ids, get_text, http_fresh, tally,
};

/// An answer read off a raw connection.
struct RawAnswer {
    status: u16,
    head: String,
    body: String,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The body as the JSON error SPEC §2 promises; returns its message.
    fn json_error(&self) -> String {
        let ctype = self.header("content-type").unwrap_or_default();
        assert!(
            ctype.starts_with("application/json"),
            "content-type {ctype:?}: {}\n{}",
            self.head,
            self.body
        );
        let v: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body));
        error_message(&v)
    }
}

fn connect(server: &Server) -> TcpStream {
    let addr = server.url.strip_prefix("http://").expect("http url");
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Reads one answer (until the server closes, or its Content-Length).
fn read_answer(s: &mut TcpStream) -> RawAnswer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            if let Some(len) = len
                && buf.len() >= end + 4 + len
            {
                break;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if buf.is_empty() => panic!("no answer: {e}"),
            Err(_) => break,
        }
    }
    let end = find(&buf, b"\r\n\r\n").unwrap_or_else(|| {
        panic!(
            "incomplete answer head: {:?}",
            String::from_utf8_lossy(&buf)
        )
    });
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    RawAnswer {
        status,
        head,
        body: String::from_utf8_lossy(&buf[end + 4..]).to_string(),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn post_head(path: &str, content_length: usize, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {WRITE_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {content_length}\r\n{extra}\r\n"
    )
}

/// The body-bytes gauge of `/metrics`.
fn body_bytes_in_flight(server: &Server) -> u64 {
    let (_, text) = get_text(&http_fresh(), &server.url, "/metrics", None);
    text.lines()
        .find_map(|l| l.strip_prefix("tally_http_body_bytes_in_flight "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no body gauge in /metrics:\n{text}"))
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Regression (issue 16, 7): actix ends a request's payload normally when
/// the client half-closes, so a body cut short of its Content-Length that
/// happened to be valid JSON (a whole object and some padding) was stored,
/// and so was a chunked body without its last chunk.
#[test]
fn a_body_cut_short_by_a_half_close_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    for path in ["/v1/track", "/v1/batch"] {
        let body = if path == "/v1/track" {
            r#"{"event":"x","user_id":"u"}"#.to_string()
        } else {
            r#"{"batch":[{"event":"x","user_id":"u"}]}"#.to_string()
        };
        let sent = format!("{body}{}", " ".repeat(40));
        let mut s = connect(&server);
        s.write_all(post_head(path, sent.len() + 100, "").as_bytes())
            .unwrap();
        s.write_all(sent.as_bytes()).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let answer = read_answer(&mut s);
        assert_eq!(
            answer.status, 400,
            "{path}: {}\n{}",
            answer.head, answer.body
        );
        let msg = answer.json_error();
        assert!(msg.contains("Content-Length"), "{path}: {msg}");
    }
    // A chunked body has no length to check, so a chunked body cut short
    // (no terminating chunk) looked whole too: chunked bodies get a 411.
    let chunk = r#"{"event":"x","user_id":"u"}"#;
    for terminator in ["", "0\r\n\r\n"] {
        let mut s = connect(&server);
        let head = format!(
            "POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE_KEY}\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n{terminator}",
            chunk.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let answer = read_answer(&mut s);
        assert_eq!(answer.status, 411, "{}\n{}", answer.head, answer.body);
        assert!(answer.json_error().contains("Content-Length"));
    }
    // The same bytes with the right Content-Length are stored.
    let body = format!(r#"{{"event":"x","user_id":"u"}}{}"#, " ".repeat(40));
    let mut s = connect(&server);
    s.write_all(post_head("/v1/track", body.len(), "Connection: close\r\n").as_bytes())
        .unwrap();
    s.write_all(body.as_bytes()).unwrap();
    assert_eq!(read_answer(&mut s).status, 200);
    drop(server);
    assert_eq!(export_ids(dir.path()).len(), 1, "only the complete body");
}

/// Regression (issue 16, 6): a client that sends headers and part of its
/// body, then stalls, was held (with its buffer) for as long as it liked.
#[test]
fn a_body_that_does_not_arrive_in_time_gets_408_and_the_connection_closes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--body-timeout-secs", "1"]);
    let mut s = connect(&server);
    let started = Instant::now();
    s.write_all(post_head("/v1/track", 1000, "").as_bytes())
        .unwrap();
    s.write_all(br#"{"event":"x","user_id":"u"}"#).unwrap();
    let answer = read_answer(&mut s);
    assert_eq!(answer.status, 408, "{}\n{}", answer.head, answer.body);
    assert!(answer.json_error().contains("did not arrive within 1 s"));
    assert!(started.elapsed() < Duration::from_secs(10));
    // The server closes the connection after the answer.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "more after the 408: {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(body_bytes_in_flight(&server), 0);
    drop(server);
    assert!(export_ids(dir.path()).is_empty());
}

/// Regression (issue 16, 6): 400 stalled connections each holding almost
/// 5 MiB held 3.5 GB. Bodies now reserve their Content-Length from one
/// budget (`--max-inflight-body-mb`) before they are read.
#[test]
fn bodies_beyond_the_in_flight_budget_get_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--max-inflight-body-mb", "5"]);
    // A stalled client reserves 4,000,000 bytes.
    let mut stalled = connect(&server);
    stalled
        .write_all(post_head("/v1/batch", 4_000_000, "").as_bytes())
        .unwrap();
    stalled.write_all(b"{\"batch\":[").unwrap();
    wait_for("the stalled body's reservation", || {
        body_bytes_in_flight(&server) == 4_000_000
    });
    // A 2 MB body does not fit in what is left.
    let events: Vec<Value> = (0..100)
        .map(|n| {
            json!({"event": "e", "user_id": format!("u{n}"),
                   "properties": {"pad": "x".repeat(20_000)}})
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "batch": events })).unwrap();
    assert!(body.len() > 1_300_000);
    let post = || {
        http_fresh()
            .post(format!("{}/v1/batch", server.url))
            .bearer_auth(WRITE_KEY)
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .unwrap()
    };
    let resp = post();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string()),
        Some("1".to_string())
    );
    let v: Value = resp.json().unwrap();
    assert!(error_message(&v).contains("max_inflight_body_mb"), "{v}");
    // Once the stalled client goes away its bytes are given back.
    drop(stalled);
    wait_for("the reservation to be given back", || {
        body_bytes_in_flight(&server) == 0
    });
    let resp = post();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(body_bytes_in_flight(&server), 0);
}

/// Regression (issue 16, 7): 262k empty gzip members took 0.8 s of an
/// async worker. A body may hold at most 64 members (and all inflating,
/// parsing and validating runs on the blocking pool).
#[test]
fn a_gzip_body_of_many_members_is_refused() {
    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let post = |body: Vec<u8>| {
        let resp = http_fresh()
            .post(format!("{}/v1/batch", server.url))
            .bearer_auth(WRITE_KEY)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .body(body)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().unwrap())
    };
    let mut bomb = gzip(br#"{"batch":[{"event":"x","user_id":"u"}]}"#);
    let empty = gzip(b"");
    for _ in 0..100_000 {
        bomb.extend_from_slice(&empty);
    }
    let (status, body) = post(bomb);
    assert_eq!(status, 400, "{body}");
    assert!(error_message(&body).contains("members"), "{body}");
    // A body in a few members is still one stream (RFC 1952).
    let text = br#"{"batch":[{"event":"x","user_id":"u"}]}"#;
    let mut split = gzip(&text[..10]);
    split.extend(gzip(&text[10..]));
    let (status, body) = post(split);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1);
}

/// Regression (issue 16, 6): `active` over 2000-01-01..9999-12-31 built a
/// 327 MB answer. Day-by-day answers are bounded to 3,660 days.
#[test]
fn active_over_more_than_3660_days_is_a_bad_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = http_fresh();
    let get = |from: &str, to: &str| {
        let q = format!("/v1/active?from={from}&to={to}");
        get_text(&client, &server.url, &q, Some(READ_KEY))
    };
    let (status, text) = get("2000-01-01", "9999-12-31");
    assert_eq!(status, 400, "{text}");
    let msg = error_message(&serde_json::from_str(&text).unwrap());
    assert!(msg.contains("3660") && msg.contains("to"), "{msg}");
    // 3,660 days is the most: 2016-01-01 + 3660 days = 2026-01-08.
    let (status, text) = get("2016-01-01", "2026-01-08");
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["days"].as_array().unwrap().len(), 3660);
    let (status, _) = get("2016-01-01", "2026-01-09");
    assert_eq!(status, 400);
    drop(server);
    // The command line refuses it the same way (a usage error, exit 2).
    let out = tally()
        .args([
            "active",
            "--from",
            "2000-01-01",
            "--to",
            "9999-12-31",
            "--data",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("3660"));
}

/// Regression (issue 16, 7): HEAD on a GET endpoint was a 405; it answers
/// like GET, without a body. Unknown methods and paths still get 404/405
/// with a JSON error.
#[test]
fn head_answers_like_get_and_other_methods_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = http_fresh();
    for (path, key) in [
        ("/healthz", None),
        ("/metrics", None),
        ("/v1/lifecycle", Some(READ_KEY)),
    ] {
        let mut req = client.head(format!("{}{path}", server.url));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().unwrap();
        assert_eq!(resp.status().as_u16(), 200, "HEAD {path}");
        assert!(resp.bytes().unwrap().is_empty(), "HEAD {path} has a body");
    }
    // An unknown method, on a raw connection (reqwest would refuse it).
    for (request, status) in [
        ("BREW /healthz HTTP/1.1", 405),
        ("BREW /v1/funnel HTTP/1.1", 405),
        ("BREW /nope HTTP/1.1", 404),
    ] {
        let mut s = connect(&server);
        write!(s, "{request}\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let answer = read_answer(&mut s);
        assert_eq!(answer.status, status, "{request}: {}", answer.head);
        answer.json_error();
    }
}

/// Regression (issue 16, 7): the answers actix's HTTP/1 dispatcher writes
/// itself, before any handler runs, had empty bodies. (Its 408 for a head
/// slower than 5 s is rewritten the same way; it is not waited for here.)
#[test]
fn the_dispatchers_own_error_answers_have_json_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let many = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..120)
            .map(|i| format!("X-H{i}: 1\r\n"))
            .collect::<String>()
    );
    for (what, request, status) in [
        ("a bad request line", "GARBAGE\r\n\r\n".to_string(), 400),
        (
            "a bad Content-Length",
            "POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".into(),
            400,
        ),
        (
            "two Content-Lengths",
            "POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
                .into(),
            400,
        ),
        ("HTTP/2.0 on HTTP/1", "GET / HTTP/2.0\r\nHost: x\r\n\r\n".into(), 400),
        ("a 200 KB header", big, 431),
        ("120 headers", many, 431),
    ] {
        let mut s = connect(&server);
        // The server may close before reading everything it was sent.
        let _ = s.write_all(request.as_bytes());
        let answer = read_answer(&mut s);
        assert_eq!(answer.status, status, "{what}: {}", answer.head);
        let msg = answer.json_error();
        assert!(!msg.is_empty(), "{what}");
    }
    // The server still answers.
    let (status, _) = get_text(&http_fresh(), &server.url, "/healthz", None);
    assert_eq!(status, 200);
}
