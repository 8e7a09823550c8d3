//! The browser SDK (`GET /sdk.js`) in a real headless Chromium (issue 12).
//!
//! Chromium is driven over WebDriver by Debian's `chromedriver`, through a
//! few lines of JSON over the `reqwest` client the tests already use: no
//! new dependency. Pages come from a tiny static server on another
//! loopback port than the collector's, so CORS is real. Every address is
//! 127.0.0.1.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` these tests fail
//! (CI installs them, `.ci/run`), unless `TALLY_SKIP_BROWSER_TESTS=1`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const UNIT_JS: &str = include_str!("browser/sdk_unit.js");
/// The SDK as `/sdk.js` serves it, for a page whose collector is down.
const SDK_JS: &str = include_str!("../../collector/assets/tally.js");

/// One browser at a time: two cores, and each test is short.
pub(crate) static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// Whether the browser tests run; panics when Chromium is missing unless
/// they are skipped on purpose.
pub(crate) fn browser_available() -> bool {
    if std::env::var("TALLY_SKIP_BROWSER_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("browser test skipped: TALLY_SKIP_BROWSER_TESTS=1");
        return false;
    }
    for bin in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} is missing: install it (`apt-get install -y chromium chromium-driver`, as \
             .ci/run does) or set TALLY_SKIP_BROWSER_TESTS=1 to skip the browser tests"
        );
    }
    true
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A chromedriver process and one WebDriver session of headless Chromium.
pub(crate) struct Browser {
    driver: Child,
    base: String,
    client: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) fn start() -> Browser {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let client = http();
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.get(format!("{root}/status")).send().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let resp: Value = client
            .post(format!("{root}/session"))
            .json(&caps)
            .send()
            .and_then(|r| r.json())
            .expect("new WebDriver session");
        let id = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {resp}"))
            .to_string();
        Browser {
            driver,
            base: format!("{root}/session/{id}"),
            client,
            _profile: profile,
        }
    }

    pub(crate) fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let resp: Value = self
            .client
            .request(method, format!("{}{path}", self.base))
            .json(&body)
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        if let Some(err) = resp["value"].get("error") {
            panic!("WebDriver {path}: {err} {}", resp["value"]["message"]);
        }
        resp["value"].clone()
    }

    pub(crate) fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub(crate) fn js(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// Polls `script` until it returns true.
    pub(crate) fn wait_for(&self, script: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.js(script) != json!(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Hides and closes the current tab (what a user closing it does): a
    /// new tab is opened first so the browser keeps running and delivers
    /// the beacon.
    fn close_tab(&self) {
        let old = self.call(reqwest::Method::GET, "/window", json!({}));
        let new = self.call(reqwest::Method::POST, "/window/new", json!({"type": "tab"}));
        self.call(reqwest::Method::DELETE, "/window", json!({}));
        self.call(
            reqwest::Method::POST,
            "/window",
            json!({"handle": new["handle"]}),
        );
        assert_ne!(old, new["handle"]);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.client.delete(&self.base).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A static file server for the test pages: every path gets the page
/// `page(path)` builds (so SPA routes and full loads both work).
struct Pages {
    origin: String,
}

impl Pages {
    fn start(page: impl Fn(&str) -> String + Send + Sync + 'static) -> Pages {
        Self::start_on(0, page)
    }

    fn start_on(port: u16, page: impl Fn(&str) -> String + Send + Sync + 'static) -> Pages {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let page = Arc::new(page);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let page = page.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let mut header = String::new();
                    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                        header.clear();
                    }
                    let (status, body) = if path == "/local/sdk.js" {
                        ("200 OK", SDK_JS.to_string())
                    } else if path.starts_with("/favicon") {
                        ("404 Not Found", String::new())
                    } else {
                        ("200 OK", page(&path))
                    };
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Pages { origin }
    }
}

/// A page that loads the SDK from `collector` and inits it with `opts`.
fn sdk_page(collector: &str, title: &str, opts: &str) -> String {
    sdk_page_from(collector, &format!("{collector}/sdk.js"), title, opts)
}

/// Like [`sdk_page`] with the script from `src`.
fn sdk_page_from(collector: &str, src: &str, title: &str, opts: &str) -> String {
    format!(
        "<!doctype html><html><head><title>{title}</title>\
         <script src=\"{src}\"></script>\
         <script>tally.init({{host: \"{collector}\", key: \"{WRITE_KEY}\", {opts}}});</script>\
         </head><body><pre id=\"result\"></pre></body></html>"
    )
}

/// Quick flushes and retries, so the tests take seconds.
const FAST: &str = "flushInterval: 200, retryBase: 100, retryMax: 400";

fn by_name<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

/// `users` of each step of a funnel's JSON.
fn funnel_users(funnel: &Value) -> Vec<u64> {
    funnel["steps"]
        .as_array()
        .map(|steps| steps.iter().filter_map(|s| s["users"].as_u64()).collect())
        .unwrap_or_default()
}

fn assert_v7(id: &Value) {
    let id = id.as_str().expect("id");
    let u = uuid::Uuid::parse_str(id).expect("uuid");
    assert_eq!(u.get_version_num(), 7, "{id}");
}

#[test]
fn sdk_unit_tests_pass_in_chromium() {
    if !browser_available() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let collector = server.url.clone();
    let pages = Pages::start(move |_| {
        sdk_page(&collector, "unit", "autoPageViews: false")
            .replace("</body>", &format!("<script>{UNIT_JS}</script></body>"))
    });
    let browser = Browser::start();
    browser.goto(&format!("{}/unit", pages.origin));
    browser.wait_for(
        "return document.getElementById('result').textContent !== ''",
        "the unit tests",
    );
    let result = browser.js("return document.getElementById('result').textContent");
    assert_eq!(result, json!("ok"), "SDK unit tests failed:\n{result}");
}

#[test]
fn page_views_spa_navigation_identify_and_beacon_arrive_exactly_once() {
    if !browser_available() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let page_port = free_port();
    let page_origin = format!("http://127.0.0.1:{page_port}");
    let mut server = Server::start_with(dir.path(), &["--cors-origin", &page_origin]);
    let collector = server.url.clone();
    // Pages under /slow/ only send from the beacon: nothing flushes on a
    // timer or a batch size before the tab is closed.
    let listener_origin = {
        let collector = collector.clone();
        let pages = Pages::start_on(page_port, move |path| {
            let opts = if path.starts_with("/slow/") {
                "flushInterval: 600000, batchSize: 1000"
            } else {
                FAST
            };
            let title = path.split('?').next().unwrap_or(path);
            sdk_page(&collector, title, opts)
        });
        pages.origin
    };
    assert_eq!(listener_origin, page_origin);
    let browser = Browser::start();
    browser.goto(&format!(
        "{page_origin}/app/landing?utm_source=newsletter&utm_medium=email&utm_campaign=launch"
    ));
    let anon = browser.js("return tally.anonymousId()");
    browser.js("tally.register({plan_seen: 'pro'});
         tally.track('cta_click', {button: 'hero', plan_seen: 'own'}, {stage: 'acquisition'});
         history.pushState({}, '', '/app/signup'); document.title = '/app/signup';");
    browser.wait_for("return tally._test.queue().length === 0", "the SPA events");
    browser.js("tally.identify('user-42');
         tally.track('signup', {}, {stage: 'acquisition', revenue: 0});");
    browser.wait_for("return tally._test.queue().length === 0", "signup");
    // A full page load: the ids come back from localStorage.
    browser.goto(&format!("{page_origin}/slow/welcome"));
    assert_eq!(browser.js("return tally.anonymousId()"), anon);
    assert_eq!(browser.js("return tally.userId()"), json!("user-42"));
    browser.js("tally.track('tour_started', {step: 1});");
    assert_eq!(
        browser.js("return tally._test.queue().map(e => e.event).join()"),
        json!("tour_started"),
        "the /slow/ page sends nothing after its first flush until it is hidden"
    );
    browser.close_tab();
    // The beacon is sent while the tab closes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) = get_text(&http(), &server.url, "/v1/events", Some(READ_KEY));
        if status == 200 && text.contains("tour_started") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the beacon never arrived: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(browser);
    // The two anonymous page views (landing, SPA) came before identify;
    // the signup after it, and the full-load view carries the user id.
    // Linked by identify, they are one person who reached the signup.
    // (Unlinked: the anonymous id and user-42 would be two persons that
    // viewed a page, and neither did before the signup: [2, 0].)
    let funnel_query = "/v1/funnel?steps=page_view,signup&window=1h&from=2000-01-01&to=2100-01-01";
    let (status, funnel) = get_json(&http(), &server.url, funnel_query);
    assert_eq!(status, 200, "{funnel}");
    assert_eq!(funnel_users(&funnel), [1, 1], "{funnel}");
    assert!(server.terminate().success());
    let out = tally()
        .args(["funnel", "--steps", "page_view,signup", "--window", "1h"])
        .args([
            "--from",
            "2000-01-01",
            "--to",
            "2100-01-01",
            "--format",
            "json",
            "--data",
        ])
        .arg(dir.path())
        .output()
        .expect("tally funnel");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let funnel: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(funnel_users(&funnel), [1, 1], "{funnel}");
    let events = export_events(dir.path(), &[]);
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        7,
        "every event exactly once, nothing else: {names:?}"
    );
    let mut ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7);
    for e in &events {
        assert_v7(&e["id"]);
        assert_eq!(e["anonymous_id"], anon, "{e}");
    }
    let views = by_name(&events, "page_view");
    assert_eq!(views.len(), 3, "{views:?}");
    let landing = views
        .iter()
        .find(|e| e["properties"]["path"] == "/app/landing")
        .expect("landing view");
    assert_eq!(landing["stage"], "discovery");
    assert_eq!(landing["properties"]["utm_source"], "newsletter");
    assert_eq!(landing["properties"]["utm_medium"], "email");
    assert_eq!(landing["properties"]["utm_campaign"], "launch");
    assert!(landing["properties"].get("utm_term").is_none());
    assert_eq!(landing["properties"]["title"], "/app/landing");
    assert!(landing.get("user_id").is_none(), "{landing}");
    let spa = views
        .iter()
        .find(|e| e["properties"]["path"] == "/app/signup")
        .expect("SPA view");
    assert_eq!(spa["properties"]["title"], "/app/signup");
    assert_eq!(spa["properties"]["plan_seen"], "pro", "registered property");
    let welcome = views
        .iter()
        .find(|e| e["properties"]["path"] == "/slow/welcome")
        .expect("full-load view, sent by the beacon");
    assert_eq!(welcome["user_id"], "user-42");
    let cta = &by_name(&events, "cta_click")[0];
    assert_eq!(cta["stage"], "acquisition");
    assert_eq!(cta["properties"]["button"], "hero");
    assert_eq!(
        cta["properties"]["plan_seen"], "own",
        "the event's key wins"
    );
    let identify = &by_name(&events, "identify")[0];
    assert_eq!(identify["user_id"], "user-42");
    assert_eq!(identify["anonymous_id"], anon);
    let signup = &by_name(&events, "signup")[0];
    assert_eq!(signup["user_id"], "user-42");
    assert_eq!(signup["revenue"], json!(0.0));
    let tour = &by_name(&events, "tour_started")[0];
    assert_eq!(tour["properties"]["step"], 1);
    assert_eq!(tour["user_id"], "user-42");
}

#[test]
fn unlisted_origins_are_refused_and_opted_out_pages_send_nothing() {
    if !browser_available() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), &["--cors-origin", "http://127.0.0.1:1"]);
    let collector = server.url.clone();
    let pages = Pages::start(move |_| sdk_page(&collector, "page", FAST));
    let browser = Browser::start();
    browser.goto(&format!("{}/refused", pages.origin));
    browser.js("tally.track('should_not_arrive');");
    // The browser blocks the answer: the SDK keeps the events queued.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(browser.js("return tally._test.queue().length"), json!(2));
    // Opted out (persisted across a load): nothing queued, nothing sent.
    browser.js("tally.optOut();");
    assert_eq!(browser.js("return tally._test.queue().length"), json!(0));
    browser.goto(&format!("{}/opted-out", pages.origin));
    browser.js("tally.track('opted_out_event'); tally.identify('u-1');");
    assert_eq!(browser.js("return tally._test.queue().length"), json!(0));
    browser.close_tab();
    std::thread::sleep(Duration::from_millis(500));
    drop(browser);
    assert!(server.terminate().success());
    let events = export_events(dir.path(), &[]);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn events_queued_while_the_collector_is_down_arrive_once_it_is_back() {
    if !browser_available() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let collector = format!("http://127.0.0.1:{port}");
    let page_collector = collector.clone();
    // The collector is down, so the script comes from the page's server.
    let pages =
        Pages::start(move |_| sdk_page_from(&page_collector, "/local/sdk.js", "page", FAST));
    let browser = Browser::start();
    browser.goto(&format!("{}/offline", pages.origin));
    browser.js("for (let i = 0; i < 30; i++) tally.track('offline_' + i, {i});");
    // Retries fail for a while (connection refused).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(browser.js("return tally._test.queue().length"), json!(31));
    let origin = pages.origin.clone();
    let mut server = Server::start_at(
        dir.path(),
        &format!("127.0.0.1:{port}"),
        &["--cors-origin", &origin],
        &[],
    );
    browser.wait_for(
        "return tally._test.queue().length === 0",
        "the queue to drain once the collector is back",
    );
    drop(browser);
    assert!(server.terminate().success());
    let events = export_events(dir.path(), &[]);
    assert_eq!(events.len(), 31, "{events:?}");
    for i in 0..30 {
        let e = by_name(&events, &format!("offline_{i}"));
        assert_eq!(e.len(), 1, "offline_{i}");
        assert_eq!(e[0]["properties"]["i"], i);
    }
    assert_eq!(by_name(&events, "page_view").len(), 1);
}
