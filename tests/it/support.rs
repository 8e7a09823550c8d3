//! Starting and stopping real `tally serve` processes on loopback ports.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const WRITE_KEY: &str = "test-write-key";
pub const READ_KEY: &str = "test-read-key";

/// Path of the `tally` binary under test.
pub fn tally_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tally")
}

/// A `tally` command with logging quiet unless RUST_LOG says otherwise.
pub fn tally() -> Command {
    let mut c = Command::new(tally_bin());
    c.env_remove("TALLY_SERVER")
        .env_remove("TALLY_READ_KEY")
        .env_remove("TALLY_WRITE_KEY");
    if std::env::var_os("RUST_LOG").is_none() {
        c.env("RUST_LOG", "warn");
    }
    c
}

/// A running `tally serve` child process.
pub struct Server {
    child: Child,
    pub url: String,
    pub data: PathBuf,
}

impl Server {
    /// Starts `tally serve` on 127.0.0.1 with a free port and fixed test keys.
    pub fn start(data: &Path) -> Server {
        Self::start_with(data, &[])
    }

    /// Like [`Server::start`] with extra flags.
    pub fn start_with(data: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(data, extra, &[])
    }

    /// Like [`Server::start_with`] with extra environment variables.
    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_at(data, "127.0.0.1:0", extra, env)
    }

    /// Like [`Server::start_with_env`] on a given address (a restart on
    /// the same port).
    pub fn start_at(data: &Path, listen: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = tally()
            .envs(env.iter().copied())
            .args(["serve", "--listen", listen, "--write-key", WRITE_KEY])
            .args(["--read-key", READ_KEY, "--data"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tally serve");
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut line = String::new();
        let url = loop {
            line.clear();
            let n = out.read_line(&mut line).expect("read server stdout");
            assert!(n > 0, "tally serve exited before listening");
            if let Some(rest) = line.trim().strip_prefix("tally listening on ") {
                break rest.split_whitespace().next().expect("url").to_string();
            }
            assert!(Instant::now() < deadline, "tally serve did not start");
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while out.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        Server {
            child,
            url,
            data: data.to_path_buf(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a graceful exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.pid(), "TERM");
        self.child.wait().expect("wait for tally serve")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn signal(pid: i32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
    assert!(
        status.map(|s| s.success()).unwrap_or(false),
        "kill -{sig} {pid}"
    );
}

/// A blocking HTTP client with a sane timeout.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// POST /v1/batch with the write key; returns (status, body as JSON).
pub fn post_batch(
    client: &reqwest::blocking::Client,
    url: &str,
    events: &[serde_json::Value],
) -> reqwest::Result<(u16, serde_json::Value)> {
    let resp = client
        .post(format!("{url}/v1/batch"))
        .bearer_auth(WRITE_KEY)
        .json(&serde_json::json!({ "batch": events }))
        .send()?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().unwrap_or(serde_json::Value::Null)))
}

/// Exports `data` and returns the events by id.
pub fn export_ids(data: &Path) -> Vec<String> {
    let out = tally()
        .args(["export", "--data"])
        .arg(data)
        .output()
        .expect("run export");
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("export line is JSON");
            v["id"].as_str().expect("id").to_string()
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Helpers added for the HTTP / CLI / import-export tests.
// ---------------------------------------------------------------------------

impl Server {
    /// Starts `tally serve` on 127.0.0.1 with a free port, WITHOUT
    /// `--write-key` / `--read-key` (and with `TALLY_WRITE_KEY` /
    /// `TALLY_READ_KEY` removed unless `env` sets them). Returns the server
    /// and every stdout line printed before the "listening" line.
    pub fn start_keyless(data: &Path, env: &[(&str, &str)]) -> (Server, ServerStdout) {
        let mut cmd = tally();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tally serve");
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut before = Vec::new();
        let mut line = String::new();
        let url = loop {
            line.clear();
            let n = out.read_line(&mut line).expect("read server stdout");
            assert!(
                n > 0,
                "tally serve exited before listening; printed {before:?}"
            );
            if let Some(rest) = line.trim().strip_prefix("tally listening on ") {
                break rest.split_whitespace().next().expect("url").to_string();
            }
            before.push(line.trim_end().to_string());
            assert!(
                before.len() < 1000,
                "tally serve printed too much before listening"
            );
        };
        // Keep draining (and collecting) stdout until the child exits.
        let rest = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut l = String::new();
            while out.read_line(&mut l).map(|n| n > 0).unwrap_or(false) {
                lines.push(l.trim_end().to_string());
                l.clear();
            }
            lines
        });
        (
            Server {
                child,
                url,
                data: data.to_path_buf(),
            },
            ServerStdout { before, rest },
        )
    }
}

/// What a server started by [`Server::start_keyless`] printed on stdout.
pub struct ServerStdout {
    /// Lines printed before "tally listening on ...".
    pub before: Vec<String>,
    /// Lines printed after it, available once the server has exited.
    pub rest: std::thread::JoinHandle<Vec<String>>,
}

/// GET `url` + `path_and_query` with `key` (if any); returns (status, body text).
pub fn get_text(
    client: &reqwest::blocking::Client,
    url: &str,
    path_and_query: &str,
    key: Option<&str>,
) -> (u16, String) {
    let mut req = client.get(format!("{url}{path_and_query}"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().expect("GET");
    let status = resp.status().as_u16();
    (status, resp.text().expect("body text"))
}

/// GET with the read key; returns (status, body as JSON, Null if not JSON).
pub fn get_json(
    client: &reqwest::blocking::Client,
    url: &str,
    path_and_query: &str,
) -> (u16, serde_json::Value) {
    let (status, text) = get_text(client, url, path_and_query, Some(READ_KEY));
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Asserts that `body` is `{"error": "<non-empty string>"}` and returns the message.
pub fn error_message(body: &serde_json::Value) -> String {
    let msg = body
        .get("error")
        .and_then(|e| e.as_str())
        .unwrap_or_else(|| panic!("expected an {{\"error\": string}} body, got {body}"));
    assert!(!msg.is_empty(), "empty error message in {body}");
    msg.to_string()
}

/// Writes `events` as NDJSON to `path`.
pub fn write_ndjson(path: &Path, events: &[serde_json::Value]) {
    let mut text = String::new();
    for e in events {
        text.push_str(&serde_json::to_string(e).expect("serialize"));
        text.push('\n');
    }
    std::fs::write(path, text).expect("write ndjson");
}

/// `tally import FILE --data DATA --format json`; asserts exit 0 and returns the summary.
pub fn import_file(data: &Path, file: &Path) -> serde_json::Value {
    let out = tally()
        .arg("import")
        .arg(file)
        .arg("--data")
        .arg(data)
        .args(["--format", "json"])
        .output()
        .expect("run import");
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("import summary is JSON")
}

/// Exports `data` (extra args such as --from) and returns every line parsed.
pub fn export_events(data: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let out = tally()
        .args(["export", "--data"])
        .arg(data)
        .args(extra)
        .output()
        .expect("run export");
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("export line is JSON"))
        .collect()
}

/// A fixed UUID for test event number `n` (lower case, valid v4 layout).
pub fn uuid_n(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// The small dataset the query tests compute by hand (see the comments in
/// http_queries.rs / cli_queries.rs). All times are in October 2026, UTC;
/// 2026-10-05 is a Monday.
///
/// | # | person | event    | time              | stage       | revenue |
/// |---|--------|----------|-------------------|-------------|---------|
/// | 1 | anon-4 | signup   | 10-05 09:00       | acquisition |         |
/// | 2 | u1     | signup   | 10-05 10:00       | acquisition |         |
/// | 3 | u1     | purchase | 10-05 10:30       | revenue     | 20      |
/// | 4 | u2     | signup   | 10-05 11:00       | acquisition |         |
/// | 5 | u2     | purchase | 10-05 13:00       | revenue     | 30      |
/// | 6 | u3     | signup   | 10-05 12:00       | acquisition |         |
/// | 7 | u3     | purchase | 10-05 12:10       | revenue     | 10      |
/// | 8 | u5     | purchase | 10-05 14:00       | revenue     | 5       |
/// | 9 | u2     | refund   | 10-05 13:13       | revenue     | -30     |
/// |10 | u1     | purchase | 10-13 10:00       | retention   |         |
/// |11 | u6     | signup   | 10-13 08:00       | acquisition |         |
/// |12 | u6     | purchase | 10-13 09:00       | revenue     | 15      |
/// |13 | u3     | purchase | 10-25 12:00       |             | 0       |
/// |14 | u7     | pageview | 09-30 12:00       | discovery   |         |
/// |15 | u1     | invite   | 10-14 10:00       | referral    |         |
///
/// anon-4 has only an `anonymous_id`; u1's events also carry an
/// `anonymous_id` (the person key is still `u1`).
pub fn analysis_dataset() -> Vec<serde_json::Value> {
    use serde_json::json;
    let ev = |n: u32, person: &str, name: &str, ts: &str, stage: Option<&str>, rev: Option<f64>| {
        let mut e =
            json!({ "id": uuid_n(n), "event": name, "timestamp": format!("2026-{ts}:00Z") });
        if person.starts_with("anon") {
            e["anonymous_id"] = json!(person);
        } else {
            e["user_id"] = json!(person);
        }
        if person == "u1" {
            e["anonymous_id"] = json!("device-of-u1");
        }
        if let Some(s) = stage {
            e["stage"] = json!(s);
        }
        if let Some(r) = rev {
            e["revenue"] = json!(r);
        }
        e
    };
    vec![
        ev(
            1,
            "anon-4",
            "signup",
            "10-05T09:00",
            Some("acquisition"),
            None,
        ),
        ev(2, "u1", "signup", "10-05T10:00", Some("acquisition"), None),
        ev(
            3,
            "u1",
            "purchase",
            "10-05T10:30",
            Some("revenue"),
            Some(20.0),
        ),
        ev(4, "u2", "signup", "10-05T11:00", Some("acquisition"), None),
        ev(
            5,
            "u2",
            "purchase",
            "10-05T13:00",
            Some("revenue"),
            Some(30.0),
        ),
        ev(6, "u3", "signup", "10-05T12:00", Some("acquisition"), None),
        ev(
            7,
            "u3",
            "purchase",
            "10-05T12:10",
            Some("revenue"),
            Some(10.0),
        ),
        ev(
            8,
            "u5",
            "purchase",
            "10-05T14:00",
            Some("revenue"),
            Some(5.0),
        ),
        ev(
            9,
            "u2",
            "refund",
            "10-05T13:13",
            Some("revenue"),
            Some(-30.0),
        ),
        ev(10, "u1", "purchase", "10-13T10:00", Some("retention"), None),
        ev(11, "u6", "signup", "10-13T08:00", Some("acquisition"), None),
        ev(
            12,
            "u6",
            "purchase",
            "10-13T09:00",
            Some("revenue"),
            Some(15.0),
        ),
        ev(13, "u3", "purchase", "10-25T12:00", None, Some(0.0)),
        ev(14, "u7", "pageview", "09-30T12:00", Some("discovery"), None),
        ev(15, "u1", "invite", "10-14T10:00", Some("referral"), None),
    ]
}

/// Asserts two JSON numbers are equal within 1e-9.
pub fn assert_close(actual: &serde_json::Value, expected: f64, what: &str) {
    let a = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {actual} is not a number"));
    assert!(
        (a - expected).abs() < 1e-9,
        "{what}: got {a}, expected {expected}"
    );
}

/// Asserts `actual` has exactly the shape of `expected` (same object keys,
/// same array lengths, same strings / booleans / nulls) and the same
/// numbers within 1e-9; `at` names the place for messages.
pub fn assert_json_matches(actual: &serde_json::Value, expected: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            let ak: Vec<&String> = a.keys().collect();
            let ek: Vec<&String> = e.keys().collect();
            assert_eq!(ak, ek, "{at}: keys differ in {actual}");
            for (k, v) in e {
                assert_json_matches(&a[k], v, &format!("{at}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{at}: length differs in {actual}");
            for (i, (x, y)) in a.iter().zip(e).enumerate() {
                assert_json_matches(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
            assert!((a - e).abs() < 1e-9, "{at}: got {a}, expected {e}");
        }
        _ => assert_eq!(actual, expected, "{at}"),
    }
}

/// Like [`http`] but keeps no idle connections, so that stopping a server
/// while the client is still in scope does not wait for keep-alive expiry.
pub fn http_fresh() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client")
}

impl Server {
    /// Sends `sig` (e.g. "INT", "TERM") and waits for the process to exit.
    pub fn stop_with(&mut self, sig: &str) -> std::process::ExitStatus {
        signal(self.pid(), sig);
        self.child.wait().expect("wait for tally serve")
    }
}
