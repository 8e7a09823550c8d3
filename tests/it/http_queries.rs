//! SPEC §2/§3/§4 over HTTP: `GET /v1/{funnel,retention,activation,lifecycle,active}`
//! with the read key, parameters named as the CLI flags, answers in the SPEC
//! JSON shapes with numbers worked out by hand for `support::analysis_dataset`,
//! 400 for bad parameters, 401 for the wrong key, and the same JSON as the
//! CLI's `--format json` (local and `--server`).

use serde_json::{Value, json};

use crate::support::{
    READ_KEY, Server, WRITE_KEY, analysis_dataset, assert_json_matches, error_message, get_json,
    get_text, http, http_fresh, post_batch, tally,
};

/// The range used by most queries: 2026-10-01 (a Thursday) to 2026-10-20.
pub const RANGE: &str = "from=2026-10-01&to=2026-10-20";

/// Starts a collector and ingests the dataset over HTTP.
fn server_with_dataset() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (status, body) = post_batch(&http(), &server.url, &analysis_dataset()).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 15, "{body}");
    (dir, server)
}

/// `funnel?steps=signup,purchase&window=1h` over RANGE.
///
/// Entries (first signup in range): anon-4 09:00, u1 10:00, u2 11:00,
/// u3 12:00 (all 10-05) and u6 10-13 08:00 → 5 users.
/// Purchase within 1 h: u1 10:30 (1800 s), u3 12:10 (600 s), u6 09:00
/// (exactly 3600 s: inclusive); u2's purchase is 2 h later, anon-4 has none
/// → 3 users, 3/5 = 0.6; median of 600, 1800, 3600 = 1800 s.
pub fn expected_funnel() -> Value {
    json!({
        "window_seconds": 3600,
        "from": "2026-10-01T00:00:00Z",
        "to": "2026-10-20T00:00:00Z",
        "steps": [
            {"event": "signup", "users": 5, "conversion_from_previous": 1.0,
             "conversion_from_first": 1.0, "median_seconds_from_previous": null},
            {"event": "purchase", "users": 3, "conversion_from_previous": 0.6,
             "conversion_from_first": 0.6, "median_seconds_from_previous": 1800.0},
        ]
    })
}

/// `activation?start=signup&event=purchase&within=1d` (count 1) over RANGE.
///
/// Cohort: anon-4, u1, u2, u3 (week of 10-05) and u6 (week of 10-12) = 5.
/// Times to the first purchase: u1 1800, u2 7200, u3 600, u6 3600 → 4
/// activated (anon-4 never purchases), rate 0.8, median (1800+3600)/2 = 2700.
/// Week 10-05: 4 people, 3 activated (0.75); week 10-12: 1 of 1.
/// As of 2026-11-14 every s0 + 1d and every week's end + 1d is long past:
/// all mature.
pub fn expected_activation() -> Value {
    json!({
        "cohort_size": 5,
        "activated": 4,
        "rate": 0.8,
        "median_seconds_to_activate": 2700.0,
        "by_week": [
            {"cohort": "2026-10-05", "cohort_size": 4, "activated": 3, "rate": 0.75,
             "mature": true},
            {"cohort": "2026-10-12", "cohort_size": 1, "activated": 1, "rate": 1.0,
             "mature": true},
        ],
        "as_of": "2026-11-14T00:00:00Z",
        "mature": {"cohort_size": 5, "activated": 4, "rate": 0.8}
    })
}

/// `activation?start=signup&event=purchase&count=2&within=30d` over RANGE.
///
/// Two purchases within 30 days of the first signup: u1 (10-05 10:30 and
/// 10-13 10:00: 8 days = 691200 s after its signup) and u3 (12:10 and 10-25
/// 12:00: 20 days = 1728000 s). u2 and u6 purchase once (a refund is not a
/// purchase). 2 of 5 = 0.4; median (691200+1728000)/2 = 1209600.
///
/// As of 2026-11-14T00:00Z: the 10-05 signups' s0 + 30d is 11-04, u6's
/// (10-13 08:00) is 11-12 08:00: all five are mature, so `mature` equals
/// the cohort. Week 10-05 ends 10-12, + 30d = 11-11 <= as_of: mature; week
/// 10-12 ends 10-19, + 30d = 11-18 > as_of: still running, although its one
/// person is already mature (the week's end decides).
pub fn expected_activation_count_2() -> Value {
    json!({
        "cohort_size": 5,
        "activated": 2,
        "rate": 0.4,
        "median_seconds_to_activate": 1_209_600.0,
        "by_week": [
            {"cohort": "2026-10-05", "cohort_size": 4, "activated": 2, "rate": 0.5,
             "mature": true},
            {"cohort": "2026-10-12", "cohort_size": 1, "activated": 0, "rate": 0.0,
             "mature": false},
        ],
        "as_of": "2026-11-14T00:00:00Z",
        "mature": {"cohort_size": 5, "activated": 2, "rate": 0.4}
    })
}

/// `activation?start=signup&event=purchase&count=2&within=30d&as_of=2026-11-12T08:00:00+00:00`:
/// as above, but u6 is mature exactly at as_of (s0 + 30d = 11-12 08:00, at
/// or before) and the 10-05 four since 11-04: still 5 mature. One
/// millisecond earlier u6 is not: mature 4, activated 2 (u1, u3), 0.5.
pub fn expected_activation_mature_edge() -> Value {
    let mut v = expected_activation_count_2();
    v["as_of"] = json!("2026-11-12T07:59:59.999Z");
    v["mature"] = json!({"cohort_size": 4, "activated": 2, "rate": 0.5});
    v["by_week"][0]["mature"] = json!(true);
    v
}

/// `retention?start=signup&return=purchase&period=week&periods=2&as-of=2026-11-01` over RANGE.
///
/// Cohort 2026-10-05: anon-4, u1, u2, u3. Rolling weeks from each s0:
/// u1 purchases 8 days after signup (k=1); u3 20 days after (k=2); the other
/// purchases are within the first week (k=0). retained = [4, 1, 1];
/// unbounded = [4, 2 (u1, u3), 1 (u3)]. Latest s0 = u3 10-05 12:00;
/// s0 + 3 weeks = 10-26 12:00 <= as-of → complete (null).
/// Cohort 2026-10-12: u6 (s0 10-13 08:00), purchase after 1 h (k=0):
/// [1, 0, 0] both ways; s0 + 2 weeks = 10-27 <= as-of but s0 + 3 weeks =
/// 11-03 > as-of → incomplete_from 2.
pub fn expected_retention() -> Value {
    json!({
        "period": "week",
        "as_of": "2026-11-01T00:00:00Z",
        "cohorts": [
            {"cohort": "2026-10-05", "size": 4, "retained": [4, 1, 1],
             "unbounded": [4, 2, 1], "incomplete_from": null},
            {"cohort": "2026-10-12", "size": 1, "retained": [1, 0, 0],
             "unbounded": [1, 0, 0], "incomplete_from": 2},
        ],
        // complete_: k = 0, 1 over both cohorts; k = 2 only the 10-05 one.
        "total": {"size": 5, "retained": [5, 1, 1], "unbounded": [5, 2, 1],
                  "complete_size": [5, 5, 4], "complete_retained": [5, 1, 1],
                  "complete_unbounded": [5, 2, 1]}
    })
}

/// `lifecycle` over RANGE (events 1-12 and 15; u7's 09-30 pageview and u3's
/// 10-25 purchase are outside).
///
/// acquisition: 5 signups by 5 persons; retention: u1 once; revenue: 6
/// events (purchases 20, 30, 10, 5, 15 and u2's -30 refund) by u1, u2, u3,
/// u5, u6; referral: u1's invite. Active: anon-4, u1, u2, u3, u5, u6 = 6.
/// Net revenue 20+30+10+5-30+15 = 50; 5 paying users; 5 orders; AOV =
/// 80/5 = 16; ARPU = 50/6.
pub fn expected_lifecycle() -> Value {
    json!({
        "stages": [
            {"stage": "discovery", "users": 0, "events": 0},
            {"stage": "acquisition", "users": 5, "events": 5},
            {"stage": "activation", "users": 0, "events": 0},
            {"stage": "engagement", "users": 0, "events": 0},
            {"stage": "retention", "users": 1, "events": 1},
            {"stage": "revenue", "users": 5, "events": 6},
            {"stage": "referral", "users": 1, "events": 1},
        ],
        "active_users": 6,
        "revenue": 50.0,
        "paying_users": 5,
        "orders": 5,
        "aov": 16.0,
        "arpu": 50.0 / 6.0
    })
}

/// `active?from=2026-10-05&to=2026-10-08`: days 10-05, 10-06, 10-07.
///
/// 10-05: anon-4, u1, u2, u3, u5 → DAU 5; u7 (09-30) is within the 7 and
/// 30 days → WAU = MAU = 6, stickiness 5/6. 10-06: DAU 0, 09-30 is still
/// d-6 → WAU 6. 10-07: 09-30 is d-7 → WAU 5, MAU 6.
pub fn expected_active() -> Value {
    json!({
        "days": [
            {"day": "2026-10-05", "dau": 5, "wau": 6, "mau": 6, "stickiness": 5.0 / 6.0},
            {"day": "2026-10-06", "dau": 0, "wau": 6, "mau": 6, "stickiness": 0.0},
            {"day": "2026-10-07", "dau": 0, "wau": 5, "mau": 6, "stickiness": 0.0},
        ]
    })
}

/// The queries of this file, as (analysis, HTTP query string, CLI flags, expected).
pub fn query_cases() -> Vec<(&'static str, String, Vec<&'static str>, Value)> {
    let range = vec!["--from", "2026-10-01", "--to", "2026-10-20"];
    let with = |extra: &[&'static str]| {
        let mut v: Vec<&'static str> = extra.to_vec();
        v.extend(&range);
        v
    };
    vec![
        (
            "funnel",
            format!("steps=signup,purchase&window=1h&{RANGE}"),
            with(&["--steps", "signup,purchase", "--window", "1h"]),
            expected_funnel(),
        ),
        (
            "activation",
            format!("start=signup&event=purchase&within=1d&as_of=2026-11-14&{RANGE}"),
            with(&[
                "--start",
                "signup",
                "--event",
                "purchase",
                "--within",
                "1d",
                "--as-of",
                "2026-11-14",
            ]),
            expected_activation(),
        ),
        (
            "activation",
            format!("start=signup&event=purchase&count=2&within=30d&as-of=2026-11-14&{RANGE}"),
            with(&[
                "--start",
                "signup",
                "--event",
                "purchase",
                "--count",
                "2",
                "--within",
                "30d",
                "--as-of",
                "2026-11-14",
            ]),
            expected_activation_count_2(),
        ),
        (
            "activation",
            format!(
                "start=signup&event=purchase&count=2&within=30d\
                 &as_of=2026-11-12T07:59:59.999Z&{RANGE}"
            ),
            with(&[
                "--start",
                "signup",
                "--event",
                "purchase",
                "--count",
                "2",
                "--within",
                "30d",
                "--as-of",
                "2026-11-12T07:59:59.999Z",
            ]),
            expected_activation_mature_edge(),
        ),
        (
            "retention",
            format!("start=signup&return=purchase&period=week&periods=2&as-of=2026-11-01&{RANGE}"),
            with(&[
                "--start",
                "signup",
                "--return",
                "purchase",
                "--period",
                "week",
                "--periods",
                "2",
                "--as-of",
                "2026-11-01",
            ]),
            expected_retention(),
        ),
        (
            "lifecycle",
            RANGE.to_string(),
            with(&[]),
            expected_lifecycle(),
        ),
        (
            "active",
            "from=2026-10-05&to=2026-10-08".to_string(),
            vec!["--from", "2026-10-05", "--to", "2026-10-08"],
            expected_active(),
        ),
        (
            "trend",
            format!("event=purchase&measure=users&interval=week&{RANGE}"),
            with(&[
                "--event",
                "purchase",
                "--measure",
                "users",
                "--interval",
                "week",
            ]),
            expected_trend_users(),
        ),
        (
            "trend",
            "event=any&measure=revenue&from=2026-10-05&to=2026-10-07&tz=Europe/Berlin".to_string(),
            vec![
                "--event",
                "any",
                "--measure",
                "revenue",
                "--from",
                "2026-10-05",
                "--to",
                "2026-10-07",
                "--tz",
                "Europe/Berlin",
            ],
            expected_trend_revenue_berlin(),
        ),
        (
            "trend",
            "event=signup&interval=hour&from=2026-10-05T09:00:00Z&to=2026-10-05T12:00:00Z"
                .to_string(),
            vec![
                "--event",
                "signup",
                "--interval",
                "hour",
                "--from",
                "2026-10-05T09:00:00Z",
                "--to",
                "2026-10-05T12:00:00Z",
            ],
            expected_trend_hours(),
        ),
    ]
}

/// `trend?event=purchase&measure=users&interval=week` over RANGE: the ISO
/// weeks overlapping 2026-10-01 .. 2026-10-20 start 09-28, 10-05, 10-12,
/// 10-19. Purchases in range: u1, u2, u3, u5 in the week of 10-05; u1, u6
/// in the week of 10-12 (u3's of 10-25 is after --to). Total: 5 distinct
/// persons (not 4 + 2).
pub fn expected_trend_users() -> Value {
    json!({
        "event": "purchase", "measure": "users", "interval": "week",
        "from": "2026-10-01T00:00:00Z", "to": "2026-10-20T00:00:00Z",
        "series": [
            {"bucket": "2026-09-28", "value": 0},
            {"bucket": "2026-10-05", "value": 4},
            {"bucket": "2026-10-12", "value": 2},
            {"bucket": "2026-10-19", "value": 0},
        ],
        "total": 5
    })
}

/// `trend?event=any&measure=revenue&from=2026-10-05&to=2026-10-07&tz=Europe/Berlin`:
/// Berlin is UTC+2 then, so the range is 10-04T22:00Z .. 10-06T22:00Z; on
/// 10-05 the amounts are 20 + 30 + 10 + 5 and the refund -30: net 35.
pub fn expected_trend_revenue_berlin() -> Value {
    json!({
        "event": "any", "measure": "revenue", "interval": "day",
        "from": "2026-10-04T22:00:00Z", "to": "2026-10-06T22:00:00Z",
        "series": [
            {"bucket": "2026-10-05", "value": 35.0},
            {"bucket": "2026-10-06", "value": 0.0},
        ],
        "total": 35.0
    })
}

/// `trend?event=signup&interval=hour` from 09:00Z to 12:00Z on 10-05:
/// anon-4 09:00, u1 10:00, u2 11:00 (u3's 12:00 is at --to: out).
pub fn expected_trend_hours() -> Value {
    json!({
        "event": "signup", "measure": "events", "interval": "hour",
        "from": "2026-10-05T09:00:00Z", "to": "2026-10-05T12:00:00Z",
        "series": [
            {"bucket": "2026-10-05T09:00+00:00", "value": 1},
            {"bucket": "2026-10-05T10:00+00:00", "value": 1},
            {"bucket": "2026-10-05T11:00+00:00", "value": 1},
        ],
        "total": 3
    })
}

#[test]
fn every_analysis_answers_the_spec_json_with_the_right_numbers() {
    let (_dir, server) = server_with_dataset();
    let client = http_fresh();
    for (name, query, _, expected) in query_cases() {
        let path = format!("/v1/{name}?{query}");
        let resp = client
            .get(format!("{}{path}", server.url))
            .bearer_auth(READ_KEY)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "GET {path}");
        let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ctype.starts_with("application/json"), "GET {path}: {ctype}");
        let body: Value = resp.json().unwrap();
        assert_json_matches(&body, &expected, &path);
    }
}

#[test]
fn funnel_median_and_window_echo() {
    let (_dir, server) = server_with_dataset();
    let client = http_fresh();
    // signup → refund within 1 day: only u2 (11:00 → 13:13 = 7980 s).
    let (status, body) = get_json(
        &client,
        &server.url,
        &format!("/v1/funnel?steps=signup,refund&window=1d&{RANGE}"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["window_seconds"], 86_400);
    assert_eq!(body["steps"][1]["users"], 1);
    assert_json_matches(
        &body["steps"][1]["conversion_from_previous"],
        &json!(0.2),
        "conv",
    );
    assert_json_matches(
        &body["steps"][1]["median_seconds_from_previous"],
        &json!(7980),
        "median",
    );
    // The default window is 14 days.
    let (status, body) = get_json(
        &client,
        &server.url,
        &format!("/v1/funnel?steps=signup,purchase&{RANGE}"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["window_seconds"], 14 * 86_400);
    // Within 14 days everyone but anon-4 purchases: u2 too (7200 s).
    assert_eq!(body["steps"][1]["users"], 4);
    // Nobody entered: both conversions 0, medians null.
    let (status, body) = get_json(
        &client,
        &server.url,
        &format!("/v1/funnel?steps=nothing,purchase&{RANGE}"),
    );
    assert_eq!(status, 200, "{body}");
    for step in body["steps"].as_array().unwrap() {
        assert_eq!(step["users"], 0);
        assert_json_matches(&step["conversion_from_previous"], &json!(0), "conv");
        assert_json_matches(&step["conversion_from_first"], &json!(0), "conv");
        assert!(step["median_seconds_from_previous"].is_null(), "{body}");
    }
}

#[test]
fn durations_in_json_have_millisecond_precision() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let at = |n: u32, p: &str, e: &str, ts: &str| json!({"id": crate::support::uuid_n(n), "event": e, "user_id": p, "timestamp": ts});
    let batch = vec![
        // 237.715 s.
        at(1, "p1", "a", "2026-10-05T10:00:00.000Z"),
        at(2, "p1", "b", "2026-10-05T10:03:57.715Z"),
        // 1 ms and 2 ms: the median is 0.0015 (or rounded to 0.002 / 0.001).
        at(3, "p2", "c", "2026-10-05T10:00:00.000Z"),
        at(4, "p2", "d", "2026-10-05T10:00:00.001Z"),
        at(5, "p3", "c", "2026-10-05T10:00:00.000Z"),
        at(6, "p3", "d", "2026-10-05T10:00:00.002Z"),
    ];
    let (status, body) = post_batch(&http(), &server.url, &batch).unwrap();
    assert_eq!(
        (status, body["accepted"].clone()),
        (200, json!(6)),
        "{body}"
    );
    let (status, body) = get_json(
        &http(),
        &server.url,
        &format!("/v1/funnel?steps=a,b&window=1h&{RANGE}"),
    );
    assert_eq!(status, 200, "{body}");
    let m = body["steps"][1]["median_seconds_from_previous"]
        .as_f64()
        .unwrap();
    assert!((m - 237.715).abs() < 1e-6, "{m}");
    let (status, body) = get_json(
        &http(),
        &server.url,
        &format!("/v1/funnel?steps=c,d&window=1s&{RANGE}"),
    );
    assert_eq!(status, 200, "{body}");
    let m = body["steps"][1]["median_seconds_from_previous"]
        .as_f64()
        .unwrap();
    assert!((0.001..=0.002).contains(&m), "{m}");
    // Activation's median too: count 1 of d within 1s of the first c.
    let (status, body) = get_json(
        &http(),
        &server.url,
        &format!("/v1/activation?start=c&event=d&within=1s&{RANGE}"),
    );
    assert_eq!(status, 200, "{body}");
    let m = body["median_seconds_to_activate"].as_f64().unwrap();
    assert!((0.001..=0.002).contains(&m), "{m}");
}

#[test]
fn retention_defaults_and_return_any() {
    let (_dir, server) = server_with_dataset();
    let client = http_fresh();
    // Defaults: period week, 8 periods, return = start (signup). Nobody signs
    // up twice, so only period 0 is non-zero; k runs 0..=8.
    let (status, body) = get_json(
        &client,
        &server.url,
        &format!("/v1/retention?start=signup&as-of=2026-11-01&{RANGE}"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["period"], "week");
    let c0 = &body["cohorts"][0];
    assert_eq!(c0["retained"], json!([4, 0, 0, 0, 0, 0, 0, 0, 0]), "{body}");
    assert_eq!(body["total"]["unbounded"].as_array().unwrap().len(), 9);
    // return=any, by day, 1 period: u1 (purchase 30 min later, same day
    // window), ... only events one day or more after s0 count for k=1.
    // u1: 10-13 purchase is 8 d later → not in period 1 but unbounded;
    // nobody has an event 24-48 h after their signup.
    let (status, body) = get_json(
        &client,
        &server.url,
        &format!(
            "/v1/retention?start=signup&return=any&period=day&periods=1&as-of=2026-11-01&{RANGE}"
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["period"], "day");
    // Cohorts by day: 10-05 (anon-4, u1, u2, u3) and 10-13 (u6).
    assert_eq!(body["cohorts"][0]["cohort"], "2026-10-05");
    assert_eq!(body["cohorts"][1]["cohort"], "2026-10-13");
    assert_eq!(body["total"]["retained"], json!([5, 0]), "{body}");
    // Period 1 or later: u1 (10-13, 10-14) and u3 (10-25) → 2.
    assert_eq!(body["total"]["unbounded"], json!([5, 2]), "{body}");
    // periods=0 is allowed.
    let (status, body) = get_json(
        &client,
        &server.url,
        &format!("/v1/retention?start=signup&periods=0&as-of=2026-11-01&{RANGE}"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"]["retained"], json!([5]));
}

#[test]
fn times_are_echoed_as_rfc3339_utc() {
    let (_dir, server) = server_with_dataset();
    let client = http_fresh();
    // An offset, percent-encoded: 2026-10-01T02:00:00+02:00 is midnight UTC.
    let (status, body) = get_json(
        &client,
        &server.url,
        "/v1/funnel?steps=signup,purchase&window=1h&from=2026-10-01T02:00:00%2B02:00&to=2026-10-20",
    );
    assert_eq!(status, 200, "{body}");
    assert_json_matches(&body, &expected_funnel(), "offset");
    // The same with a literal '+' (decoded as a space by form rules).
    let (status, body) = get_json(
        &client,
        &server.url,
        "/v1/funnel?steps=signup,purchase&window=1h&from=2026-10-01T02:00:00+02:00&to=2026-10-20",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["from"], "2026-10-01T00:00:00Z");
    // Lower-case t/z and a negative offset.
    let (status, body) = get_json(
        &client,
        &server.url,
        "/v1/retention?start=signup&from=2026-09-30t19:00:00-05:00&to=2026-10-20&as-of=2026-11-01t00:00:00z",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["as_of"], "2026-11-01T00:00:00Z");
    // as_of with an underscore is the same parameter.
    let (status, body) = get_json(
        &client,
        &server.url,
        &format!("/v1/retention?start=signup&as_of=2026-11-01&{RANGE}"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["as_of"], "2026-11-01T00:00:00Z");
}

#[test]
fn bad_parameters_get_400_naming_the_parameter() {
    let (_dir, server) = server_with_dataset();
    let client = http_fresh();
    let cases: Vec<(&str, &[&str])> = vec![
        (
            "/v1/funnel?steps=signup,purchase&window=7x",
            &["window", "unit"],
        ),
        ("/v1/funnel?steps=signup,purchase&window=7", &["window"]),
        ("/v1/funnel?steps=signup,purchase&window=0s", &["window"]),
        ("/v1/funnel?steps=signup,purchase&window=3651d", &["window"]),
        ("/v1/funnel?steps=signup", &["steps"]),
        (
            "/v1/funnel?steps=a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u",
            &["steps"],
        ),
        ("/v1/funnel?steps=a,,b", &["steps"]),
        ("/v1/funnel", &["steps"]),
        ("/v1/funnel?steps=a,b&windw=1h", &["windw"]),
        ("/v1/funnel?steps=a,b&steps=c,d", &["steps"]),
        ("/v1/funnel?steps=a,b&from=2026-13-01", &["from"]),
        ("/v1/funnel?steps=a,b&from=2026-10-05 10:00:00Z", &["from"]),
        ("/v1/funnel?steps=a,b&to=yesterday", &["to"]),
        (
            "/v1/funnel?steps=a,b&from=2026-10-20&to=2026-10-01",
            &["from"],
        ),
        (
            "/v1/activation?start=signup&event=purchase&count=0",
            &["count"],
        ),
        (
            "/v1/activation?start=signup&event=purchase&count=-1",
            &["count"],
        ),
        (
            "/v1/activation?start=signup&event=purchase&count=two",
            &["count"],
        ),
        (
            "/v1/activation?start=signup&event=purchase&within=1y",
            &["within"],
        ),
        ("/v1/activation?event=purchase", &["start"]),
        ("/v1/activation?start=signup", &["event"]),
        ("/v1/retention?start=signup&periods=366", &["periods"]),
        ("/v1/retention?start=signup&periods=-1", &["periods"]),
        ("/v1/retention?start=signup&period=month", &["period"]),
        ("/v1/retention?start=signup&as-of=soon", &["as-of"]),
        ("/v1/retention?return=purchase", &["start"]),
        ("/v1/lifecycle?steps=a,b", &["steps"]),
        ("/v1/active?format=csv", &["format"]),
        ("/v1/active?from=2026-10-05&to=2026-10-05", &["from"]),
        ("/v1/trend?measure=users", &["event"]),
        ("/v1/trend?event=e&measure=sum", &["measure"]),
        ("/v1/trend?event=e&interval=minute", &["interval"]),
        (
            "/v1/trend?event=e&interval=hour&from=2025-01-01&to=2026-10-01",
            &["interval", "10,000"],
        ),
        ("/v1/trend?event=e&tz=Mars/Olympus", &["tz", "Mars/Olympus"]),
        ("/v1/active?tz=Europe/Atlantis", &["tz", "Europe/Atlantis"]),
    ];
    for (path, words) in cases {
        let (status, body) = get_json(&client, &server.url, path);
        assert_eq!(status, 400, "GET {path}: {body}");
        let msg = error_message(&body);
        for w in words {
            assert!(msg.contains(w), "GET {path}: {msg:?} should mention {w:?}");
        }
    }
}

#[test]
fn bad_filters_and_breakdowns_get_400_naming_the_parameter() {
    let (_dir, server) = server_with_dataset();
    let client = http_fresh();
    let cases: Vec<(&str, &[&str])> = vec![
        ("/v1/funnel?steps=a,b&where=plan", &["--where", "'plan'"]),
        // `where` repeats; every repeat is parsed (the second is bad).
        (
            "/v1/funnel?steps=a,b&where=plan%20%3D%20pro&where=oops",
            &["--where", "'oops'"],
        ),
        ("/v1/lifecycle?where=a+%3D+%22x", &["--where"]),
        ("/v1/trend?event=e&by=a..b", &["--by"]),
        (
            "/v1/trend?event=e&by=plan&by=x",
            &["--by", "more than once"],
        ),
        ("/v1/retention?start=s&by=plan&limit=0", &["--limit"]),
        ("/v1/retention?start=s&by=plan&limit=x", &["--limit"]),
        ("/v1/lifecycle?limit=3", &["--limit", "--by"]),
        (
            "/v1/activation?start=s&event=e&identity=all",
            &["--identity"],
        ),
        ("/v1/active?by=plan", &["--by", "active"]),
        ("/v1/active?limit=2", &["--limit"]),
        ("/v1/events?where=a%3D1", &["--where", "unknown"]),
        ("/v1/events?by=plan", &["--by", "unknown"]),
    ];
    for (path, words) in cases {
        let (status, body) = get_json(&client, &server.url, path);
        assert_eq!(status, 400, "GET {path}: {body}");
        let msg = error_message(&body);
        for w in words {
            assert!(msg.contains(w), "GET {path}: {msg:?} should mention {w:?}");
        }
    }
}

#[test]
fn format_json_is_accepted_over_http() {
    let (_dir, server) = server_with_dataset();
    let (status, body) = get_json(
        &http(),
        &server.url,
        &format!("/v1/lifecycle?{RANGE}&format=json"),
    );
    assert_eq!(status, 200, "{body}");
    assert_json_matches(&body, &expected_lifecycle(), "format=json");
}

#[test]
fn queries_on_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = http_fresh();
    let (status, body) = get_json(&client, &server.url, &format!("/v1/lifecycle?{RANGE}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active_users"], 0);
    assert_eq!(body["stages"].as_array().unwrap().len(), 7);
    assert_json_matches(&body["revenue"], &json!(0), "revenue");
    assert!(body["aov"].is_null() && body["arpu"].is_null(), "{body}");
    let (status, body) = get_json(
        &client,
        &server.url,
        "/v1/active?from=2026-10-05&to=2026-10-07",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["days"].as_array().unwrap().len(), 2);
    assert_json_matches(&body["days"][0]["stickiness"], &json!(0), "stickiness");
    let (status, body) = get_json(
        &client,
        &server.url,
        &format!("/v1/funnel?steps=a,b&{RANGE}"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["steps"][0]["users"], 0);
    assert_json_matches(
        &body["steps"][0]["conversion_from_first"],
        &json!(0),
        "conv",
    );
    let (status, body) = get_json(
        &client,
        &server.url,
        &format!("/v1/activation?start=a&event=b&{RANGE}"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cohort_size"], 0);
    assert!(body["median_seconds_to_activate"].is_null());
    assert_eq!(body["by_week"], json!([]));
    let (status, body) = get_json(
        &client,
        &server.url,
        &format!("/v1/retention?start=a&{RANGE}"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cohorts"], json!([]));
    assert_eq!(body["total"]["size"], 0);
}

#[test]
fn queries_need_the_read_key() {
    let (_dir, server) = server_with_dataset();
    let client = http_fresh();
    for (name, query, _, _) in query_cases() {
        let path = format!("/v1/{name}?{query}");
        for key in [Some(WRITE_KEY), None, Some("nope-nope-nope")] {
            let (status, text) = get_text(&client, &server.url, &path, key);
            assert_eq!(status, 401, "GET {path} with {key:?}: {text}");
            error_message(&serde_json::from_str(&text).expect("JSON error body"));
        }
    }
}

#[test]
fn http_json_equals_cli_json_locally_and_through_server() {
    let (dir, mut server) = server_with_dataset();
    let client = http_fresh();
    let mut http_answers = Vec::new();
    for (name, query, flags, _) in query_cases() {
        let (status, body) = get_json(&client, &server.url, &format!("/v1/{name}?{query}"));
        assert_eq!(status, 200, "{name}?{query}: {body}");
        // The CLI through the running collector.
        let out = tally()
            .arg(name)
            .args(&flags)
            .args([
                "--server",
                &server.url,
                "--key",
                READ_KEY,
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} --server: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cli: Value = serde_json::from_slice(&out.stdout).expect("CLI JSON");
        assert_eq!(cli, body, "{name}: CLI --server vs HTTP");
        http_answers.push((name, flags, body));
    }
    // The CLI on the data directory, once the collector has stopped.
    assert!(server.terminate().success());
    for (name, flags, body) in http_answers {
        let out = tally()
            .arg(name)
            .args(&flags)
            .arg("--data")
            .arg(dir.path())
            .args(["--format", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} --data: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cli: Value = serde_json::from_slice(&out.stdout).expect("CLI JSON");
        assert_eq!(cli, body, "{name}: CLI --data vs HTTP");
    }
}

#[test]
fn cli_through_server_reports_bad_parameters_and_keys() {
    let (_dir, server) = server_with_dataset();
    // A bad parameter: the collector's 400 becomes exit 2 with its message.
    let out = tally()
        .args([
            "funnel",
            "--steps",
            "a,b",
            "--window",
            "7x",
            "--server",
            &server.url,
        ])
        .args(["--key", READ_KEY])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("window") && err.contains("unit"), "{err}");
    // The write key is refused: exit 1, not a usage error.
    let out = tally()
        .args(["lifecycle", "--server", &server.url, "--key", WRITE_KEY])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
}
