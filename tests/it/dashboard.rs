//! The web dashboard (`GET /`, issue 14) in headless Chromium, driven over
//! WebDriver by the client in `browser.rs`: every figure the pages render
//! must equal the JSON endpoint's, the controls rewrite the URL and the
//! query, untrusted names render as text, and the page fits a phone.
//! Screenshots go to `target/dashboard-screenshots/` for review.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::{Browser, ONE_BROWSER, browser_available};
use crate::support::*;

/// The dashboard's `num`: integers as they are, other numbers to 2 places.
fn num(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        v if v.as_f64().is_some_and(|f| f.fract() == 0.0) => {
            format!("{}", v.as_f64().unwrap() as i64)
        }
        v => format!("{:.2}", v.as_f64().unwrap()),
    }
}

/// The dashboard's `pct`.
fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or("—".into(), |r| format!("{:.1}%", r * 100.0))
}

/// The dashboard's `dur`.
fn dur(v: &Value) -> String {
    let Some(s) = v.as_f64() else {
        return "—".into();
    };
    if s < 60.0 {
        format!("{s:.0}s")
    } else if s < 3600.0 {
        format!("{:.1}m", s / 60.0)
    } else if s < 86400.0 {
        format!("{:.1}h", s / 3600.0)
    } else {
        format!("{:.1}d", s / 86400.0)
    }
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Standard base64 (WebDriver's screenshot encoding), without a crate.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && c != b'\n').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(val(c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

struct Dash {
    browser: Browser,
    server: Server,
    client: reqwest::blocking::Client,
}

impl Dash {
    fn start(events: &[Value]) -> (Dash, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path());
        let client = http();
        let (status, body) = post_batch(&client, &server.url, events).unwrap();
        assert_eq!(status, 200, "{body}");
        let browser = Browser::start();
        (
            Dash {
                browser,
                server,
                client,
            },
            dir,
        )
    }

    fn size(&self, width: u32, height: u32) {
        self.browser.call(
            reqwest::Method::POST,
            "/window/rect",
            json!({"width": width, "height": height}),
        );
    }

    /// Opens `#hash` and waits until the page has drawn (or failed).
    fn open(&self, hash: &str) {
        self.browser.goto(&format!("{}/#{hash}", self.server.url));
        self.settle(hash);
    }

    fn settle(&self, what: &str) {
        self.browser.wait_for(
            "return document.body.dataset.state === 'ready' || document.body.dataset.state === 'error'",
            what,
        );
    }

    fn api(&self, path_and_query: &str) -> Value {
        let (status, body) = get_json(&self.client, &self.server.url, path_and_query);
        assert_eq!(status, 200, "{path_and_query}: {body}");
        body
    }

    /// Text of every cell of every row of `#id`'s body.
    fn rows(&self, id: &str) -> Vec<Vec<String>> {
        let v = self.browser.js(&format!(
            "return [...document.querySelectorAll('#{id} tbody tr')].map(r => [...r.cells].map(c => c.textContent))"
        ));
        serde_json::from_value(v).unwrap()
    }

    fn text(&self, selector: &str) -> String {
        self.browser
            .js(&format!(
                "const e = document.querySelector({}); return e ? e.textContent : null",
                json!(selector)
            ))
            .as_str()
            .unwrap_or_else(|| panic!("no element {selector}"))
            .to_string()
    }

    fn screenshot(&self, name: &str) {
        let b64 = self
            .browser
            .call(reqwest::Method::GET, "/screenshot", json!({}));
        let png = base64_decode(b64.as_str().unwrap());
        assert_eq!(&png[1..4], b"PNG");
        std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
    }

    /// The page body never scrolls sideways (wide tables scroll inside).
    fn assert_no_overflow(&self, what: &str) {
        let v = self.browser.js(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]",
        );
        assert!(v[0].as_i64() <= v[1].as_i64(), "{what} overflows: {v}");
    }

    /// Types the read key into the dashboard's prompt.
    fn log_in(&self) {
        self.browser.goto(&format!("{}/", self.server.url));
        self.browser.wait_for(
            "return !document.getElementById('keyform').hidden",
            "the key prompt",
        );
        self.browser.js(&format!(
            "document.getElementById('key').value = {}; document.getElementById('keyform').requestSubmit()",
            json!(READ_KEY)
        ));
        self.settle("the first page");
        let stored = self
            .browser
            .js("return localStorage.getItem('tally.readKey')");
        assert_eq!(stored, json!(READ_KEY));
        let url = self.browser.call(reqwest::Method::GET, "/url", json!({}));
        assert!(
            !url.as_str().unwrap().contains(READ_KEY),
            "key in the URL: {url}"
        );
    }
}

const RANGE: &str = "from=2026-10-01&to=2026-11-01&tz=UTC";
const OVERVIEW: &str = "overview?period=month&as_of=2026-11-01&tz=UTC";
const OCTOBER: (&str, &str) = ("2026-10-01", "2026-11-01");
const SEPTEMBER: (&str, &str) = ("2026-09-01", "2026-10-01");

/// The overview's lifecycle report: `period` (as local dates) against
/// `previous`, and the period's event names and counts.
fn check_overview(d: &Dash, hash: &str, period: (&str, &str), previous: (&str, &str)) {
    d.open(hash);
    let tz = "tz=UTC";
    let q = format!("from={}&to={}&{tz}", period.0, period.1);
    let cur = d.api(&format!("/v1/lifecycle?{q}"));
    let old = d.api(&format!(
        "/v1/lifecycle?from={}&to={}&{tz}",
        previous.0, previous.1
    ));
    let rows = d.rows("lifecycle");
    let mut expected = Vec::new();
    for (c, o) in cur["stages"]
        .as_array()
        .unwrap()
        .iter()
        .zip(old["stages"].as_array().unwrap())
    {
        for what in ["users", "events"] {
            expected.push((
                format!("{} {what}", c["stage"].as_str().unwrap()),
                &c[what],
                &o[what],
            ));
        }
    }
    let labels = [
        ("Active users", "active_users"),
        ("Revenue", "revenue"),
        ("Paying users", "paying_users"),
        ("Orders", "orders"),
        ("AOV", "aov"),
        ("ARPU", "arpu"),
    ];
    for (label, key) in labels {
        expected.push((label.to_string(), &cur[key], &old[key]));
    }
    assert_eq!(rows.len(), expected.len());
    for (row, (label, c, o)) in rows.iter().zip(&expected) {
        let change = match (c.as_f64(), o.as_f64()) {
            (Some(a), Some(b)) => {
                let d = a - b;
                let s = num(&json!(d));
                if d > 0.0 { format!("+{s}") } else { s }
            }
            _ => "—".into(),
        };
        assert_eq!(row, &vec![label.clone(), num(c), num(o), change], "{label}");
    }
    assert_eq!(d.text("[data-kpi=revenue] b"), num(&cur["revenue"]));
    assert_eq!(d.text("[data-kpi=arpu] b"), num(&cur["arpu"]));

    // The event list (names and counts) comes after the report.
    d.browser.wait_for(
        "return document.querySelector('#catalog-box[data-state=ready]') !== null",
        "the event list",
    );
    let events = d.api(&format!("/v1/events?names=only&{q}"));
    let want: Vec<Vec<String>> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| vec![e["event"].as_str().unwrap().to_string(), num(&e["count"])])
        .collect();
    assert!(!want.is_empty());
    assert_eq!(d.rows("catalog"), want);
}

fn check_funnel(d: &Dash, window: &str) {
    let q = format!("{RANGE}&steps=signup,purchase&window={window}");
    let f = d.api(&format!("/v1/funnel?{q}"));
    let rows = d.rows("funnel");
    let steps = f["steps"].as_array().unwrap();
    assert_eq!(rows.len(), steps.len());
    for (i, (row, s)) in rows.iter().zip(steps).enumerate() {
        let drop = if i == 0 {
            "—".to_string()
        } else {
            num(&json!(
                steps[i - 1]["users"].as_i64().unwrap() - s["users"].as_i64().unwrap()
            ))
        };
        assert_eq!(
            row,
            &vec![
                s["event"].as_str().unwrap().to_string(),
                String::new(),
                num(&s["users"]),
                pct(&s["conversion_from_previous"]),
                pct(&s["conversion_from_first"]),
                drop,
                dur(&s["median_seconds_from_previous"]),
            ],
            "window {window}, step {i}"
        );
    }
}

/// The trends page of `/v1/trend?{q}`, with the previous period's series
/// (`/v1/trend?{previous}`) beside it, bucket by bucket, or without one.
fn check_trend(d: &Dash, q: &str, previous: Option<&str>) {
    let t = d.api(&format!("/v1/trend?{q}"));
    assert_eq!(d.text("[data-kpi=total] b"), num(&t["total"]));
    let cur = t["series"].as_array().unwrap();
    let old = previous.map(|p| d.api(&format!("/v1/trend?{p}")));
    let none = Vec::new();
    let prev = old
        .as_ref()
        .map_or(&none, |o| o["series"].as_array().unwrap());
    let cell = |s: &[Value], i: usize, k: &str| {
        s.get(i).map_or(String::new(), |p| match k {
            "bucket" => p["bucket"].as_str().unwrap().to_string(),
            _ => num(&p["value"]),
        })
    };
    let want: Vec<Vec<String>> = (0..cur.len().max(prev.len()))
        .map(|i| {
            let mut row = vec![cell(cur, i, "bucket"), cell(cur, i, "value")];
            if old.is_some() {
                row.extend([cell(prev, i, "bucket"), cell(prev, i, "value")]);
            }
            row
        })
        .collect();
    assert_eq!(d.rows("trend"), want);
    // uPlot's legend: the x axis and one line per series.
    let lines = d
        .browser
        .js("return document.querySelectorAll('.chart .u-legend .u-series').length");
    assert_eq!(lines, json!(if old.is_some() { 3 } else { 2 }), "{q}");
    match &old {
        Some(o) => {
            assert_eq!(d.text("[data-kpi=previous_total] b"), num(&o["total"]));
            let range = d.browser.js(
                "const e = document.getElementById('trend-previous'); return [e.dataset.from, e.dataset.to]",
            );
            let p = previous.unwrap();
            assert!(
                p.starts_with(&format!(
                    "from={}&to={}",
                    range[0].as_str().unwrap(),
                    range[1].as_str().unwrap()
                )),
                "{range} for {p}"
            );
            assert!(
                o["series"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["value"] != json!(0)),
                "the previous period should not be empty: {o}"
            );
        }
        None => assert_eq!(
            d.browser
                .js("return document.getElementById('trend-previous') === null"),
            json!(true)
        ),
    }
}

#[test]
fn dashboard_pages_show_the_apis_numbers_and_fit_a_phone() {
    if !browser_available() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let (d, _dir) = Dash::start(&analysis_dataset());
    d.size(1280, 800);
    d.log_in();

    // Overview: the last whole month by 1 November (October) and the one
    // before, with the change. A full load (key already stored) measures
    // the time to the first render.
    d.browser.goto("about:blank");
    d.open(OVERVIEW);
    let first = d.browser.js("return document.body.dataset.firstRenderMs");
    eprintln!("overview: first render {first} ms after navigation start");
    check_overview(&d, OVERVIEW, OCTOBER, SEPTEMBER);
    d.screenshot("overview-1280");

    // Funnel, then a different window through the controls: the URL and
    // the numbers follow.
    d.open(&format!("funnel?{RANGE}&steps=signup,purchase&window=7d"));
    check_funnel(&d, "7d");
    d.screenshot("funnel-1280");
    // The pickers come with the event names, after the page.
    d.browser.wait_for(
        "return document.getElementById('add-step') !== null",
        "the step pickers",
    );
    d.browser
        .js("document.getElementById('window').value = '30m'; \
         document.getElementById('controls').requestSubmit()");
    d.browser.wait_for(
        "return location.hash.includes('window=30m') && document.body.dataset.state === 'ready'",
        "the funnel with a 30m window",
    );
    check_funnel(&d, "30m");
    // A third step through the pickers.
    // The pickers come with the event names, after the page.
    d.browser.wait_for(
        "return document.getElementById('add-step') !== null",
        "the step pickers",
    );
    d.browser.js("document.getElementById('add-step').click(); \
         const s = document.querySelectorAll('#steps select'); s[2].value = 'refund'; \
         document.getElementById('controls').requestSubmit()");
    d.browser.wait_for(
        "return location.hash.includes('steps=signup%2Cpurchase%2Crefund') && document.body.dataset.state === 'ready'",
        "the three-step funnel",
    );
    let f3 = d.api(&format!(
        "/v1/funnel?{RANGE}&steps=signup,purchase,refund&window=30m"
    ));
    assert_eq!(d.rows("funnel").len(), 3);
    assert_eq!(d.rows("funnel")[2][2], num(&f3["steps"][2]["users"]));

    // Retention: counts per cohort and period; cells at or after a
    // cohort's incomplete_from are marked incomplete; the total row is the
    // complete_ totals.
    let rq = format!("{RANGE}&start=signup&return=purchase&period=week&periods=8");
    d.open(&format!("retention?{rq}"));
    let r = d.api(&format!("/v1/retention?{rq}"));
    let rows = d.rows("retention");
    let cohorts = r["cohorts"].as_array().unwrap();
    assert_eq!(rows.len(), cohorts.len() + 1);
    for (row, c) in rows.iter().zip(cohorts) {
        let mut want = vec![c["cohort"].as_str().unwrap().to_string(), num(&c["size"])];
        want.extend(c["retained"].as_array().unwrap().iter().map(num));
        assert_eq!(row, &want);
        let incomplete: Vec<bool> = serde_json::from_value(d.browser.js(&format!(
            "return [...document.querySelectorAll('#retention tr[data-cohort=\"{}\"] td.cell')].map(c => c.classList.contains('incomplete'))",
            c["cohort"].as_str().unwrap()
        )))
        .unwrap();
        let from = c["incomplete_from"]
            .as_u64()
            .map_or(usize::MAX, |k| k as usize);
        let want: Vec<bool> = (0..incomplete.len()).map(|k| k >= from).collect();
        assert_eq!(incomplete, want, "{c}");
    }
    assert!(
        cohorts.iter().any(|c| !c["incomplete_from"].is_null()),
        "the dataset should have a cohort with incomplete periods"
    );
    let t = &r["total"];
    let mut want = vec!["All (complete periods)".to_string(), num(&t["size"])];
    for (v, of) in t["complete_retained"]
        .as_array()
        .unwrap()
        .iter()
        .zip(t["complete_size"].as_array().unwrap())
    {
        want.push(format!("{} / {}", num(v), num(of)));
    }
    assert_eq!(rows.last().unwrap(), &want);
    d.screenshot("retention-1280");

    // Activation by cohort week, running weeks marked.
    let aq = format!("{RANGE}&start=signup&event=purchase&count=1&within=30d");
    d.open(&format!("activation?{aq}"));
    let a = d.api(&format!("/v1/activation?{aq}"));
    let rows = d.rows("activation");
    for (row, w) in rows.iter().zip(a["by_week"].as_array().unwrap()) {
        let status = if w["mature"] == json!(true) {
            "complete"
        } else {
            "still running"
        };
        assert_eq!(
            row,
            &vec![
                w["cohort"].as_str().unwrap().to_string(),
                num(&w["cohort_size"]),
                num(&w["activated"]),
                pct(&w["rate"]),
                String::new(),
                status.to_string(),
            ]
        );
    }
    assert_eq!(d.text("[data-kpi=rate] b"), pct(&a["rate"]));
    assert_eq!(
        d.text("[data-kpi=mature_rate] b"),
        pct(&a["mature"]["rate"])
    );
    d.screenshot("activation-1280");

    // Active users.
    d.open("active?from=2026-10-01&to=2026-10-20&tz=UTC");
    let act = d.api("/v1/active?from=2026-10-01&to=2026-10-20&tz=UTC");
    let rows = d.rows("active");
    let days = act["days"].as_array().unwrap();
    assert_eq!(rows.len(), days.len());
    for (row, day) in rows.iter().zip(days) {
        assert_eq!(
            row,
            &vec![
                day["day"].as_str().unwrap().to_string(),
                num(&day["dau"]),
                num(&day["wau"]),
                num(&day["mau"]),
                pct(&day["stickiness"]),
            ]
        );
    }
    assert_eq!(
        d.browser
            .js("return document.querySelectorAll('.chart canvas').length >= 2"),
        json!(true),
        "uPlot drew the charts"
    );
    d.screenshot("active-1280");

    // Trends, with the previous period (the 14 days before) as a second
    // series from the same endpoint; then without it.
    let tq = "from=2026-10-12&to=2026-10-26&tz=UTC&event=purchase&measure=events&interval=day";
    d.open(&format!("trends?{tq}"));
    check_trend(
        &d,
        tq,
        Some("from=2026-09-28&to=2026-10-12&tz=UTC&event=purchase&measure=events&interval=day"),
    );
    d.screenshot("trends-1280");
    d.browser.wait_for(
        "return document.getElementById('compare') !== null",
        "the trend pickers",
    );
    d.browser
        .js("document.getElementById('compare').value = 'none'; \
         document.getElementById('measure').value = 'users'; \
         document.getElementById('controls').requestSubmit()");
    d.browser.wait_for(
        "return location.hash.includes('compare=none') && document.body.dataset.state === 'ready'",
        "the trend without comparison",
    );
    check_trend(
        &d,
        "from=2026-10-12&to=2026-10-26&tz=UTC&event=purchase&measure=users&interval=day",
        None,
    );

    // The range control: last 7 days on the active users page.
    d.open("active?from=2026-10-01&to=2026-10-20&tz=UTC");
    d.browser
        .js("document.getElementById('mode').value = 'last'; \
         document.getElementById('last').value = '7'; \
         document.getElementById('controls').requestSubmit()");
    d.browser.wait_for(
        "return location.hash === '#active?last=7d&tz=UTC' && document.body.dataset.state === 'ready'",
        "the active users of the last 7 days",
    );
    let last7 = d.api("/v1/active?last=7d&tz=UTC");
    let days: Vec<String> = last7["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|day| day["day"].as_str().unwrap().to_string())
        .collect();
    let shown: Vec<String> = d.rows("active").into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(shown, days);

    // A phone: every page fits without sideways scrolling of the body.
    d.size(390, 844);
    for (page, q) in [
        (
            "overview",
            "period=month&as_of=2026-11-01&tz=UTC".to_string(),
        ),
        ("funnel", format!("{RANGE}&steps=signup,purchase&window=7d")),
        ("retention", rq.clone()),
        ("activation", aq.clone()),
        ("trends", tq.to_string()),
        ("active", "from=2026-10-01&to=2026-10-20&tz=UTC".to_string()),
    ] {
        d.open(&format!("{page}?{q}"));
        d.assert_no_overflow(page);
        d.screenshot(&format!("{page}-390"));
    }
    // Numbers still match on the phone layout.
    check_overview(&d, OVERVIEW, OCTOBER, SEPTEMBER);
    eprintln!("dashboard browser test: {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// Percent-encodes everything but letters and digits (for a URL's hash).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn dashboard_renders_untrusted_names_as_text() {
    if !browser_available() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    const ALERT: &str = "<img src=x onerror=alert(1)>";
    const FLAG: &str = "<img src=x onerror=window.__xss=1>";
    let ev = |n: u32, name: &str, ts: &str| {
        json!({
            "id": uuid_n(n), "event": name, "user_id": format!("u{}", n % 3),
            "timestamp": format!("2026-10-0{ts}:00Z"),
            "properties": {
                "note": "</script><script>window.__xss=2</script>",
                "<svg onload=window.__xss=3>": "x",
                "plan": if n == 1 { ALERT } else { FLAG },
            },
        })
    };
    let events = vec![
        ev(1, ALERT, "5T10:00"),
        ev(2, FLAG, "5T10:05"),
        ev(3, ALERT, "6T10:00"),
        ev(4, FLAG, "6T11:00"),
    ];
    let (d, _dir) = Dash::start(&events);
    d.size(1280, 800);
    d.log_in();

    d.open(OVERVIEW);
    d.browser.wait_for(
        "return document.querySelector('#catalog-box[data-state=ready]') !== null",
        "the event list",
    );
    let names: Vec<String> = d
        .rows("catalog")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert!(names.contains(&ALERT.to_string()), "{names:?}");
    assert!(names.contains(&FLAG.to_string()), "{names:?}");

    d.open(&format!(
        "funnel?{RANGE}&window=1d&steps={}",
        encode(&format!("{ALERT},{FLAG}"))
    ));
    let rows = d.rows("funnel");
    assert_eq!(rows[0][0], ALERT);
    assert_eq!(rows[1][0], FLAG);
    // The step pickers hold the names as option text too.
    d.browser.wait_for(
        "return document.getElementById('add-step') !== null",
        "the step pickers",
    );
    let options = d
        .browser
        .js("return [...document.querySelectorAll('#steps option')].map(o => o.textContent)");
    assert!(
        options.as_array().unwrap().contains(&json!(FLAG)),
        "{options}"
    );
    d.screenshot("xss-funnel");

    // Group values are text too: breakdowns by a property holding markup,
    // and a filter whose value is markup.
    d.open(&format!(
        "funnel?{RANGE}&window=1d&steps={}&by=plan",
        encode(&format!("{ALERT},{FLAG}"))
    ));
    let groups: Vec<String> = d
        .rows("funnel-by")
        .into_iter()
        .map(|r| r[1].clone())
        .collect();
    assert!(groups.contains(&ALERT.to_string()), "{groups:?}");
    assert!(groups.contains(&FLAG.to_string()), "{groups:?}");
    d.open(&format!("trends?{RANGE}&event=any&interval=week&by=plan"));
    let head = d
        .browser
        .js("return [...document.querySelectorAll('#trend-groups th')].map(h => h.textContent)");
    // Largest total first: FLAG on three events, ALERT on one.
    assert_eq!(head, json!(["Bucket", FLAG, ALERT]));
    let legend = d.browser.js(
        "return [...document.querySelectorAll('.chart .u-legend .u-series .u-label')].map(l => l.textContent)",
    );
    assert!(
        legend.as_array().unwrap().contains(&json!(FLAG)),
        "{legend}"
    );
    d.open(&format!(
        "retention?{RANGE}&start={}&by=plan&where={}",
        encode(ALERT),
        encode(&format!("plan != {FLAG}"))
    ));
    assert_eq!(
        d.browser.js("return document.body.dataset.state"),
        json!("ready")
    );
    let heads = d
        .browser
        .js("return [...document.querySelectorAll('section.group h3')].map(h => h.textContent)");
    assert_eq!(heads, json!([format!("plan: {ALERT}")]));
    let value = d
        .browser
        .js("return document.querySelector('#where-rows .w-value').value");
    assert_eq!(value, json!(FLAG));
    d.screenshot("xss-retention-by");

    // Nothing ran: no flag, no element made from a name.
    assert_eq!(
        d.browser.js("return typeof window.__xss"),
        json!("undefined")
    );
    assert_eq!(
        d.browser
            .js("return document.querySelectorAll('img, svg:not(.u-wrap svg)').length"),
        json!(0)
    );

    // A refused key brings the prompt back with the API's error text.
    d.browser
        .js("localStorage.setItem('tally.readKey', 'wrong'); location.reload()");
    d.browser.wait_for(
        "return document.body.dataset.state === 'error' && !document.getElementById('keyform').hidden",
        "the key prompt after a 401",
    );
    let (status, body) = get_text(
        &d.client,
        &d.server.url,
        "/v1/lifecycle?last=30d",
        Some("wrong"),
    );
    assert_eq!(status, 401);
    let msg = error_message(&serde_json::from_str(&body).unwrap());
    assert_eq!(d.text("#status"), msg);
}

/// Every dashboard answer carries the CSP; the page has no inline script or
/// event handler for it to allow.
#[test]
fn dashboard_is_served_with_a_csp_and_no_inline_script() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = http();
    for path in [
        "/",
        "/dashboard/app.js",
        "/dashboard/app.css",
        "/dashboard/uPlot.iife.min.js",
        "/dashboard/uPlot.min.css",
    ] {
        let resp = client.get(format!("{}{path}", server.url)).send().unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let csp = resp.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    }
    let (status, html) = get_text(&client, &server.url, "/", None);
    assert_eq!(status, 200);
    assert!(!html.contains("<script>"), "inline script");
    for tag in html.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap();
        assert!(!tag.contains(" on"), "inline handler in <{tag}>");
        assert!(!tag.contains("style="), "inline style in <{tag}>");
        if tag.starts_with("script") {
            assert!(tag.contains("src="), "<{tag}>");
        }
    }
    let (status, _) = get_text(&client, &server.url, "/dashboard/nope.js", None);
    assert_eq!(status, 404);
}

/// KPIs over `analysis_dataset`: counts, a ratio, a funnel, a target met
/// and one missed, a tripwire that trips, pairs, a KPI with no stage, and a
/// name that is markup.
const KPIS: &str = r#"
[[kpi]]
name = "Signups"
stage = "acquisition"
metric = "events"
event = "signup"
target = ">= 2"
pair = ["Paying users", "<img src=x onerror=window.__xss=4>"]

[[kpi]]
name = "Purchases per signup"
metric = "ratio"
numerator = { metric = "events", event = "purchase" }
denominator = { metric = "events", event = "signup" }

[[kpi]]
name = "Paying users"
stage = "revenue"
metric = "paying_users"
tripwire = "< 2"
pair = ["Signups"]

[[kpi]]
name = "<img src=x onerror=window.__xss=4>"
stage = "engagement"
metric = "users"
event = "any"
target = "> 0"

[[kpi]]
name = "Signup to purchase in a day"
stage = "activation"
metric = "funnel"
steps = ["signup", "purchase"]
window = "1d"
target = ">= 0.5"
"#;

const STAGE_ORDER: [&str; 7] = [
    "discovery",
    "acquisition",
    "activation",
    "engagement",
    "retention",
    "revenue",
    "referral",
];

/// The scorecard's text for a KPI's value (rates as %, ratios to 4 places).
fn kpi_value(k: &Value, v: &Value) -> String {
    match (k["metric"].as_str().unwrap(), v.as_f64()) {
        (_, None) => "—".into(),
        ("funnel" | "activation" | "retention", _) => pct(v),
        ("ratio", Some(f)) => format!("{f:.4}"),
        _ => num(v),
    }
}

/// The scorecard's text for a KPI's change: ▲/▼ and the sign.
fn kpi_change(k: &Value) -> String {
    let Some(c) = k["change"].as_f64() else {
        return "—".into();
    };
    let arrow = if c > 0.0 {
        "▲ "
    } else if c < 0.0 {
        "▼ "
    } else {
        ""
    };
    let sign = if c > 0.0 { "+" } else { "" };
    match k["metric"].as_str().unwrap() {
        "funnel" | "activation" | "retention" => format!("{arrow}{sign}{:.1} pp", c * 100.0),
        "ratio" => format!("{arrow}{sign}{c:.4}"),
        _ => format!("{arrow}{sign}{}", num(&k["change"])),
    }
}

/// The scorecard rows the page must show for `/v1/review`'s answer `r`:
/// grouped by stage in lifecycle order (no stage last), file order within.
/// `date` turns an instant of the answer into the local date shown.
fn expected_scorecard(r: &Value, date: &dyn Fn(&str) -> String) -> Vec<Vec<String>> {
    let kpis = r["kpis"].as_array().unwrap();
    let by_name = |n: &str| kpis.iter().find(|k| k["name"] == n);
    let mut order: Vec<&Value> = Vec::new();
    for stage in STAGE_ORDER {
        order.extend(kpis.iter().filter(|k| k["stage"] == stage));
    }
    order.extend(kpis.iter().filter(|k| k["stage"].is_null()));
    order
        .into_iter()
        .map(|k| {
            let target = match (k["target"].as_str(), &k["target_met"]) {
                (None, _) => "—".to_string(),
                (Some(t), Value::Bool(true)) => format!("{t} ✓ met"),
                (Some(t), Value::Bool(false)) => format!("{t} ✗ missed"),
                (Some(t), _) => format!("{t} (no value)"),
            };
            let trip = match k["tripwire"].as_str() {
                None => "—".to_string(),
                Some(t) if k["tripped"] == json!(true) => format!("{t} ⚠ TRIPPED"),
                Some(t) => format!("{t} ok"),
            };
            let ratio = if k["numerator"].is_null() || k["denominator"].is_null() {
                "—".to_string()
            } else {
                format!("{} / {}", num(&k["numerator"]), num(&k["denominator"]))
            };
            let pairs: Vec<String> = k["pair"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let p = by_name(p.as_str().unwrap()).unwrap();
                    format!(
                        "↔ {}: {} ({})",
                        p["name"].as_str().unwrap(),
                        kpi_value(p, &p["value"]),
                        kpi_change(p)
                    )
                })
                .collect();
            // The name, then its pairs under it.
            vec![
                format!("{}{}", k["name"].as_str().unwrap(), pairs.concat()),
                kpi_value(k, &k["value"]),
                kpi_change(k),
                kpi_value(k, &k["previous"]["value"]),
                ratio,
                target,
                trip,
                format!(
                    "{} – {}",
                    date(k["from"].as_str().unwrap()),
                    date(k["to"].as_str().unwrap())
                ),
            ]
        })
        .collect()
}

#[test]
fn dashboard_overview_shows_the_kpi_scorecard_in_the_urls_zone() {
    if !browser_available() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let (d, dir) = Dash::start(&analysis_dataset());
    d.size(1280, 800);
    d.log_in();
    let scorecard_rows = |d: &Dash| -> Vec<Vec<String>> {
        serde_json::from_value(d.browser.js(
            "return [...document.querySelectorAll('#scorecard tr.kpi-row')].map(r => [...r.cells].map(c => c.textContent))",
        ))
        .unwrap()
    };

    // No kpis.toml yet: the API's error, the way to write one, and the
    // lifecycle report all the same.
    let week = "period=week&as_of=2026-10-20";
    d.open(&format!("overview?{week}&tz=UTC"));
    let (status, body) = get_json(
        &d.client,
        &d.server.url,
        &format!("/v1/review?{week}&tz=UTC"),
    );
    assert_eq!(status, 500, "{body}");
    let box_text = d.text("#scorecard-error");
    assert!(box_text.starts_with(&error_message(&body)), "{box_text}");
    assert!(box_text.contains("tally review --init"), "{box_text}");
    assert_eq!(
        d.browser.js("return document.body.dataset.state"),
        json!("ready")
    );
    assert!(!d.rows("lifecycle").is_empty());

    // With the file: every KPI's figures as /v1/review gives them, in
    // stage order, with its pairs; the lifecycle report covers the week
    // the counts are reported for (12 to 19 October) against the week
    // before.
    std::fs::write(dir.path().join("kpis.toml"), KPIS).unwrap();
    d.browser.goto("about:blank");
    d.open(&format!("overview?{week}&tz=UTC"));
    let r = d.api(&format!("/v1/review?{week}&tz=UTC"));
    let utc_date = |s: &str| local_date(s, 0);
    let want = expected_scorecard(&r, &utc_date);
    assert_eq!(scorecard_rows(&d), want);
    assert!(
        want[0][0].starts_with("Signups↔ Paying users: 1 ("),
        "acquisition first, with its pairs: {want:?}"
    );
    assert_eq!(
        want.last().unwrap()[0],
        "Purchases per signup",
        "no stage last"
    );
    let first = d.browser.js(
        "const r = document.querySelector('#scorecard tr.kpi-row'); \
         return [r.querySelector('.kname-text').textContent, r.querySelectorAll('.pair').length]",
    );
    assert_eq!(first, json!(["Signups", 2]), "two pairs under the name");
    assert!(want.iter().any(|r| r[6].ends_with("TRIPPED")), "{want:?}");
    assert!(want.iter().any(|r| r[5].ends_with("missed")), "{want:?}");
    assert!(want.iter().any(|r| r[2].starts_with('▲')), "{want:?}");
    assert!(want.iter().any(|r| r[2].starts_with('▼')), "{want:?}");
    assert_eq!(
        d.text("#tripped"),
        format!(
            "Tripwire tripped: {}",
            r["tripped"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(", ")
        )
    );
    let signups = &r["kpis"][0];
    assert_eq!(signups["from"], "2026-10-12T00:00:00Z");
    check_overview(
        &d,
        &format!("overview?{week}&tz=UTC"),
        ("2026-10-12", "2026-10-19"),
        ("2026-10-05", "2026-10-12"),
    );
    // The markup name is text: nothing ran.
    assert_eq!(
        d.browser.js("return typeof window.__xss"),
        json!("undefined")
    );
    assert_eq!(
        d.browser
            .js("return document.querySelectorAll('img').length"),
        json!(0)
    );
    d.screenshot("overview-scorecard-1280");

    // Another zone: every API call carries it, the figures are the
    // review's in that zone, and periods show as its local dates (New
    // York is 4 hours behind UTC in October).
    let ny = "tz=America%2FNew_York";
    d.browser.goto("about:blank"); // a fresh list of the page's requests
    d.open(&format!("overview?{week}&{ny}"));
    let r_ny = d.api(&format!("/v1/review?{week}&{ny}"));
    assert_eq!(r_ny["kpis"][0]["from"], "2026-10-12T04:00:00Z");
    let ny_date = |s: &str| local_date(s, -4);
    assert_eq!(scorecard_rows(&d), expected_scorecard(&r_ny, &ny_date));
    let calls: Vec<String> = serde_json::from_value(d.browser.js(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(u => u.includes('/v1/'))",
    ))
    .unwrap();
    assert!(calls.len() >= 4, "{calls:?}");
    for c in &calls {
        assert!(c.contains(ny), "{c} lacks the zone");
    }
    assert_eq!(
        d.browser.js("return document.getElementById('tz').value"),
        json!("America/New_York")
    );

    // A URL without a zone gets the browser's, written into the URL.
    d.open(&format!("overview?{week}"));
    let browser_zone = d
        .browser
        .js("return Intl.DateTimeFormat().resolvedOptions().timeZone");
    let hash = d.browser.js("return location.hash");
    assert_eq!(
        hash,
        json!(format!(
            "#overview?{week}&tz={}",
            encode_query(browser_zone.as_str().unwrap())
        ))
    );
    // The zone picker and the period picker rewrite the URL; moving to
    // another page keeps the zone.
    d.browser.wait_for(
        "return document.getElementById('period') !== null",
        "the period picker",
    );
    d.browser
        .js("document.getElementById('tz').value = 'Asia/Tokyo'; \
         document.getElementById('period').value = 'day'; \
         document.getElementById('controls').requestSubmit()");
    d.browser.wait_for(
        "return location.hash === '#overview?period=day&as_of=2026-10-20&tz=Asia%2FTokyo' \
         && document.body.dataset.state === 'ready'",
        "the daily review in Tokyo",
    );
    let r_tokyo = d.api("/v1/review?period=day&as_of=2026-10-20&tz=Asia/Tokyo");
    let tokyo_date = |s: &str| local_date(s, 9);
    assert_eq!(
        scorecard_rows(&d),
        expected_scorecard(&r_tokyo, &tokyo_date)
    );
    d.browser
        .js("document.querySelector('#nav a[href=\"#active\"]').click()");
    d.browser.wait_for(
        "return location.hash.startsWith('#active?') && document.body.dataset.state === 'ready'",
        "the active users page",
    );
    assert_eq!(
        d.browser.js("return location.hash"),
        json!("#active?tz=Asia%2FTokyo")
    );
}

/// The local date of instant `s` at a UTC offset of `hours`, which must be
/// a local midnight there.
fn local_date(s: &str, hours: i64) -> String {
    let ms = tally_event::time::parse_rfc3339(s).unwrap() + hours * 3_600_000;
    let t = tally_event::time::format_rfc3339(ms);
    assert!(
        t[10..].starts_with("T00:00:00"),
        "{s} is not a local midnight at {hours} h"
    );
    t[..10].to_string()
}

/// Percent-encodes as `URLSearchParams` does for a zone name.
fn encode_query(s: &str) -> String {
    s.replace('/', "%2F").replace('+', "%2B")
}

/// The dashboard's `groupLabel`: a group's JSON value as text.
fn group_label(v: &Value) -> String {
    match v {
        Value::Null => "(no value)".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// `analysis_dataset` with a `plan` per person (strings, a number, a
/// boolean, and none) and a nested `utm.source` on every other event.
fn segmented_dataset() -> Vec<Value> {
    let mut events = analysis_dataset();
    for (i, e) in events.iter_mut().enumerate() {
        let person = e["user_id"]
            .as_str()
            .or(e["anonymous_id"].as_str())
            .unwrap()
            .to_string();
        let plan = match person.as_str() {
            "u1" | "u3" => json!("pro"),
            "u2" | "u5" => json!("free"),
            "u6" => json!(2),
            "anon-4" => json!(true),
            _ => Value::Null,
        };
        let mut props = json!({ "plan": plan });
        if i % 2 == 0 {
            props["utm"] = json!({ "source": if i % 4 == 0 { "ads" } else { "mail" } });
        }
        e["properties"] = props;
    }
    events
}

/// A funnel's rows as the page draws them (`#funnel`).
fn funnel_rows(f: &Value) -> Vec<Vec<String>> {
    let steps = f["steps"].as_array().unwrap();
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut row = vec![s["event"].as_str().unwrap().to_string()];
            row.extend(funnel_cells(steps, i));
            row
        })
        .collect()
}

/// A step's cells after its name: bar (no text), users, conversions,
/// drop-off, median.
fn funnel_cells(steps: &[Value], i: usize) -> Vec<String> {
    let s = &steps[i];
    let drop = if i == 0 {
        "—".to_string()
    } else {
        num(&json!(
            steps[i - 1]["users"].as_i64().unwrap() - s["users"].as_i64().unwrap()
        ))
    };
    vec![
        String::new(),
        num(&s["users"]),
        pct(&s["conversion_from_previous"]),
        pct(&s["conversion_from_first"]),
        drop,
        dur(&s["median_seconds_from_previous"]),
    ]
}

/// A grouped funnel's rows (`#funnel-by`): per step, one row per group.
fn funnel_by_rows(f: &Value) -> Vec<Vec<String>> {
    let groups = f["groups"].as_array().unwrap();
    let n = groups[0]["result"]["steps"].as_array().unwrap().len();
    let mut rows = Vec::new();
    for i in 0..n {
        for (j, g) in groups.iter().enumerate() {
            let steps = g["result"]["steps"].as_array().unwrap();
            let name = if j == 0 {
                steps[i]["event"].as_str().unwrap().to_string()
            } else {
                String::new()
            };
            let mut row = vec![name, group_label(&g["value"])];
            row.extend(funnel_cells(steps, i));
            rows.push(row);
        }
    }
    rows
}

/// A retention table's rows (cohorts, then the complete totals).
fn retention_rows(r: &Value) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = r["cohorts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut row = vec![c["cohort"].as_str().unwrap().to_string(), num(&c["size"])];
            row.extend(c["retained"].as_array().unwrap().iter().map(num));
            row
        })
        .collect();
    let t = &r["total"];
    let mut total = vec!["All (complete periods)".to_string(), num(&t["size"])];
    for (v, of) in t["complete_retained"]
        .as_array()
        .unwrap()
        .iter()
        .zip(t["complete_size"].as_array().unwrap())
    {
        total.push(format!("{} / {}", num(v), num(of)));
    }
    rows.push(total);
    rows
}

/// An activation table's rows (`by_week`).
fn activation_rows(a: &Value) -> Vec<Vec<String>> {
    a["by_week"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let status = if w["mature"] == json!(true) {
                "complete"
            } else {
                "still running"
            };
            vec![
                w["cohort"].as_str().unwrap().to_string(),
                num(&w["cohort_size"]),
                num(&w["activated"]),
                pct(&w["rate"]),
                String::new(),
                status.to_string(),
            ]
        })
        .collect()
}

impl Dash {
    /// Text of every cell of every body row of the tables `selector` picks.
    fn rows_of(&self, selector: &str) -> Vec<Vec<String>> {
        let v = self.browser.js(&format!(
            "return [...document.querySelectorAll({})].map(r => [...r.cells].map(c => c.textContent))",
            json!(format!("{selector} tbody tr"))
        ));
        serde_json::from_value(v).unwrap()
    }

    /// The page's query (the URL's hash after `?`).
    fn hash(&self) -> String {
        self.browser
            .js("return location.hash")
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Each group's block (`section.group`) against the API's groups:
    /// its heading, then `check(result, index)`. The `N more groups` line
    /// when the limit cut some.
    fn check_groups(&self, answer: &Value, check: impl Fn(&Value, usize)) {
        let groups = answer["groups"].as_array().unwrap();
        let heads: Vec<String> = serde_json::from_value(self.browser.js(
            "return [...document.querySelectorAll('section.group h3')].map(h => h.textContent)",
        ))
        .unwrap();
        let by = answer["by"].as_str().unwrap();
        let want: Vec<String> = groups
            .iter()
            .map(|g| format!("{by}: {}", group_label(&g["value"])))
            .collect();
        assert_eq!(heads, want);
        for (i, g) in groups.iter().enumerate() {
            check(&g["result"], i);
        }
        self.check_more(answer);
    }

    fn check_more(&self, answer: &Value) {
        let other = answer["other_groups"].as_u64().unwrap();
        let shown = self.browser.js(
            "const e = document.getElementById('other-groups'); return e ? e.textContent : null",
        );
        if other == 0 {
            assert_eq!(shown, Value::Null);
        } else {
            let s = if other == 1 { "" } else { "s" };
            assert_eq!(shown, json!(format!("{other} more group{s}")));
        }
    }
}

/// Filters and breakdowns on every page: set through the controls, carried
/// in the URL (a reload shows the same view, Apply rewrites the same URL),
/// and every figure equal to the endpoint's JSON for the same parameters;
/// a bad `where` shows the API's error text.
#[test]
fn dashboard_filters_and_breakdowns_show_the_apis_numbers() {
    if !browser_available() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let (d, _dir) = Dash::start(&segmented_dataset());
    d.size(1280, 800);
    d.log_in();

    // A filter through the controls.
    let fq = format!("{RANGE}&steps=signup,purchase&window=7d");
    d.open(&format!("funnel?{fq}"));
    assert_eq!(
        d.rows("funnel"),
        funnel_rows(&d.api(&format!("/v1/funnel?{fq}")))
    );
    d.browser
        .js("document.getElementById('add-where').click(); \
         const r = document.querySelector('#where-rows .where'); \
         r.querySelector('.w-path').value = 'plan'; r.querySelector('.w-op').value = '!='; \
         r.querySelector('.w-value').value = 'free'; \
         document.getElementById('controls').requestSubmit()");
    d.browser.wait_for(
        "return location.hash.includes('where=') && document.body.dataset.state === 'ready'",
        "the filtered funnel",
    );
    assert!(d.hash().contains("where=plan+%21%3D+free"), "{}", d.hash());
    let filtered = d.api(&format!("/v1/funnel?{fq}&where={}", encode("plan != free")));
    let all = d.api(&format!("/v1/funnel?{fq}"));
    assert_ne!(
        filtered["steps"], all["steps"],
        "the filter should change the funnel"
    );
    assert_eq!(d.rows("funnel"), funnel_rows(&filtered));

    // A second filter on a nested path, a breakdown with a limit, and no
    // identity linking.
    d.browser.wait_for(
        "return document.getElementById('add-step') !== null",
        "the step pickers",
    );
    d.browser.js(
        "document.getElementById('add-where').click(); \
         const r = document.querySelectorAll('#where-rows .where')[1]; \
         r.querySelector('.w-path').value = 'utm.source'; r.querySelector('.w-op').value = '!~'; \
         r.querySelector('.w-value').value = 'zzz'; \
         document.getElementById('by').value = 'plan'; document.getElementById('limit').value = '2'; \
         document.getElementById('identity').value = 'none'; \
         document.getElementById('controls').requestSubmit()",
    );
    d.browser.wait_for(
        "return location.hash.includes('by=plan') && document.body.dataset.state === 'ready'",
        "the funnel by plan",
    );
    let q = format!(
        "{fq}&where={}&where={}&by=plan&limit=2&identity=none",
        encode("plan != free"),
        encode("utm.source !~ zzz")
    );
    let f = d.api(&format!("/v1/funnel?{q}"));
    assert!(f["other_groups"].as_u64().unwrap() > 0, "{f}");
    assert_eq!(d.rows("funnel-by"), funnel_by_rows(&f));
    d.check_more(&f);
    d.screenshot("funnel-by-1280");

    // The URL holds the whole query: a reload draws the same view with the
    // same controls, and Apply without a change keeps the URL.
    let hash = d.hash();
    d.browser.js("location.reload()");
    d.settle("the reloaded funnel");
    assert_eq!(d.hash(), hash);
    assert_eq!(d.rows("funnel-by"), funnel_by_rows(&f));
    let controls = d.browser.js(
        "return [[...document.querySelectorAll('#where-rows .where')].map(r => \
         [r.querySelector('.w-path').value, r.querySelector('.w-op').value, r.querySelector('.w-value').value]), \
         document.getElementById('by').value, document.getElementById('limit').value, \
         document.getElementById('identity').value]",
    );
    assert_eq!(
        controls,
        json!([
            [["plan", "!=", "free"], ["utm.source", "!~", "zzz"]],
            "plan",
            "2",
            "none"
        ])
    );
    d.browser.wait_for(
        "return document.getElementById('add-step') !== null",
        "the step pickers",
    );
    d.browser
        .js("document.getElementById('controls').requestSubmit()");
    std::thread::sleep(Duration::from_millis(300));
    d.settle("the funnel after Apply");
    assert_eq!(d.hash(), hash);

    // Removing a filter.
    d.browser.js(
        "document.querySelectorAll('#where-rows .w-remove')[0].click(); \
         document.getElementById('controls').requestSubmit()",
    );
    d.browser.wait_for(
        "return !location.hash.includes('free') && document.body.dataset.state === 'ready'",
        "the funnel without the plan filter",
    );
    let q2 = format!(
        "{fq}&where={}&by=plan&limit=2&identity=none",
        encode("utm.source !~ zzz")
    );
    assert_eq!(
        d.rows("funnel-by"),
        funnel_by_rows(&d.api(&format!("/v1/funnel?{q2}")))
    );

    // Moving to another page keeps the filters and the breakdown.
    d.browser
        .js("document.querySelector('#nav a[href=\"#trends\"]').click()");
    d.browser.wait_for(
        "return location.hash.startsWith('#trends') && document.body.dataset.state === 'ready'",
        "the trends page",
    );
    assert!(d.hash().contains("by=plan"), "{}", d.hash());
    assert!(d.hash().contains("where=utm.source"), "{}", d.hash());

    // Trends: one line and one column per group, the totals last.
    let tq = format!(
        "from=2026-10-01&to=2026-10-15&tz=UTC&event=any&measure=users&interval=day&where={}&by=plan",
        encode("utm.source != ads")
    );
    d.open(&format!("trends?{tq}"));
    let t = d.api(&format!("/v1/trend?{tq}"));
    let groups = t["groups"].as_array().unwrap();
    assert!(groups.len() >= 3, "{t}");
    let n = groups[0]["result"]["series"].as_array().unwrap().len();
    let mut want: Vec<Vec<String>> = (0..n)
        .map(|i| {
            let mut row = vec![
                groups[0]["result"]["series"][i]["bucket"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ];
            row.extend(
                groups
                    .iter()
                    .map(|g| num(&g["result"]["series"][i]["value"])),
            );
            row
        })
        .collect();
    let mut total = vec!["Total".to_string()];
    total.extend(groups.iter().map(|g| num(&g["result"]["total"])));
    want.push(total);
    assert_eq!(d.rows("trend-groups"), want);
    let head: Vec<String> =
        serde_json::from_value(d.browser.js(
            "return [...document.querySelectorAll('#trend-groups th')].map(h => h.textContent)",
        ))
        .unwrap();
    let mut want_head = vec!["Bucket".to_string()];
    want_head.extend(groups.iter().map(|g| group_label(&g["value"])));
    assert_eq!(head, want_head);
    assert_eq!(
        d.browser
            .js("return document.querySelectorAll('.chart .u-legend .u-series').length"),
        json!(groups.len() + 1)
    );
    d.check_more(&t);
    d.screenshot("trends-by-1280");

    // Retention: one heatmap per group.
    let rq = format!(
        "{RANGE}&start=signup&return=purchase&period=week&periods=4&by=plan&where={}",
        encode("plan != 2")
    );
    d.open(&format!("retention?{rq}"));
    let r = d.api(&format!("/v1/retention?{rq}"));
    assert!(r["groups"].as_array().unwrap().len() >= 2, "{r}");
    d.check_groups(&r, |g, i| {
        assert_eq!(
            d.rows_of(&format!(
                "section.group[data-group=\"{i}\"] table.retention"
            )),
            retention_rows(g)
        );
    });
    d.screenshot("retention-by-1280");

    // Activation: the totals and the weeks of each group.
    let aq = format!("{RANGE}&start=signup&event=purchase&count=1&within=30d&by=plan&limit=3");
    d.open(&format!("activation?{aq}"));
    let a = d.api(&format!("/v1/activation?{aq}"));
    d.check_groups(&a, |g, i| {
        let sec = format!("section.group[data-group=\"{i}\"]");
        assert_eq!(
            d.rows_of(&format!("{sec} table.activation")),
            activation_rows(g)
        );
        assert_eq!(d.text(&format!("{sec} [data-kpi=rate] b")), pct(&g["rate"]));
        assert_eq!(
            d.text(&format!("{sec} [data-kpi=cohort_size] b")),
            num(&g["cohort_size"])
        );
    });

    // The overview: the lifecycle report filtered, and by group.
    let oq = format!("{OVERVIEW}&where={}&by=plan", encode("plan != free"));
    d.open(&oq);
    let lq = format!(
        "from=2026-10-01&to=2026-11-01&tz=UTC&where={}",
        encode("plan != free")
    );
    let cur = d.api(&format!("/v1/lifecycle?{lq}"));
    assert_eq!(
        d.text("[data-kpi=active_users] b"),
        num(&cur["active_users"])
    );
    let lb = d.api(&format!("/v1/lifecycle?{lq}&by=plan"));
    let want: Vec<Vec<String>> = lb["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let r = &g["result"];
            let mut row = vec![group_label(&g["value"])];
            for k in [
                "active_users",
                "revenue",
                "paying_users",
                "orders",
                "aov",
                "arpu",
            ] {
                row.push(num(&r[k]));
            }
            row.extend(
                r["stages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| num(&s["users"])),
            );
            row
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(d.rows("lifecycle-by"), want);

    // Active users take filters (and no breakdown).
    let actq = format!(
        "from=2026-10-01&to=2026-10-10&tz=UTC&where={}",
        encode("plan = pro")
    );
    d.open(&format!("active?{actq}"));
    let act = d.api(&format!("/v1/active?{actq}"));
    let shown: Vec<String> = d.rows("active").into_iter().map(|r| r[1].clone()).collect();
    let want: Vec<String> = act["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|day| num(&day["dau"]))
        .collect();
    assert_eq!(shown, want);
    assert_eq!(
        d.browser
            .js("return document.getElementById('breakdown').hidden"),
        json!(true)
    );

    // A bad filter: the API's 400 text, as the page's status.
    let bad = format!("{fq}&where={}", encode("plan"));
    d.open(&format!("funnel?{bad}"));
    let (status, body) = get_text(
        &d.client,
        &d.server.url,
        &format!("/v1/funnel?{bad}"),
        Some(READ_KEY),
    );
    assert_eq!(status, 400);
    let msg = error_message(&serde_json::from_str(&body).unwrap());
    assert_eq!(
        d.browser.js("return document.body.dataset.state"),
        json!("error")
    );
    assert_eq!(d.text("#status"), msg);

    // A phone: the filter rows and a grouped funnel fit without sideways
    // scrolling of the body.
    d.size(390, 844);
    d.open(&format!("funnel?{q}"));
    assert_eq!(d.rows("funnel-by"), funnel_by_rows(&f));
    d.assert_no_overflow("the grouped funnel with filters");
    d.screenshot("funnel-by-390");
    d.size(1280, 800);

    // The path inputs offer the paths /v1/events reports for the page's
    // events over the last 7 days of its range.
    d.open("funnel?from=2026-10-01&to=2026-10-15&tz=UTC&steps=signup,purchase&window=7d");
    d.browser.js("document.getElementById('add-where').click()");
    d.browser.wait_for(
        "return document.querySelectorAll('#paths option').length > 0",
        "the known property paths",
    );
    let paths = d
        .browser
        .js("return [...document.querySelectorAll('#paths option')].map(o => o.value)");
    let ev = d.api("/v1/events?from=2026-10-08&to=2026-10-15&tz=UTC");
    let mut want: Vec<String> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "signup" || e["event"] == "purchase")
        .flat_map(|e| e["properties"].as_array().unwrap().clone())
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    want.sort();
    want.dedup();
    assert!(want.contains(&"plan".to_string()), "{ev}");
    assert_eq!(paths, json!(want));
}
