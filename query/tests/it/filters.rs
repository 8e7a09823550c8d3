//! `--where` through the analyses (SPEC §5): every operator against every
//! kind of property value, and "an analysis with filters runs as if the
//! events that fail them did not exist" in each analysis.

use serde_json::{Value, json};
use tally_event::Stage;
use tally_query::{MemEvent, MemSource};

use crate::seg::{D, H, bad, day, ok, t0, users};

/// One event `e` per property object, all on day 0.
fn typed_source() -> MemSource {
    let props: Vec<Option<Value>> = vec![
        Some(json!({"x": "5"})),         // 0: a string
        Some(json!({"x": 5})),           // 1: a number
        Some(json!({"x": 5.5})),         // 2
        Some(json!({"x": true})),        // 3: a boolean
        Some(json!({"x": null})),        // 4: null
        Some(json!({})),                 // 5: missing
        Some(json!({"x": {"a": 1}})),    // 6: an object
        Some(json!({"x": [1]})),         // 7: an array
        Some(json!({"x": "news"})),      // 8
        None,                            // 9: no properties at all
        Some(json!({"u": {"s": "a"}})),  // 10: nested
        Some(json!({"u": {"s": "b"}})),  // 11
        Some(json!({"u.s": "a"})),       // 12: a key with a dot: no path names it
        Some(json!({"x": "5", "y": 1})), // 13
        Some(json!({"x": "a=b"})),       // 14
    ];
    MemSource::new(props.into_iter().enumerate().map(|(i, p)| {
        let e = MemEvent::new(&format!("p{i}"), "e", t0() + i as i64 * 1000);
        match p {
            Some(p) => e.props(p),
            None => e,
        }
    }))
}

/// How many events pass every filter (trend's event count over day 0).
fn passing(src: &MemSource, filters: &[&str]) -> u64 {
    let (from, to) = (day(0), day(1));
    let mut pairs = vec![("event", "e"), ("from", from.as_str()), ("to", to.as_str())];
    pairs.extend(filters.iter().map(|f| ("where", *f)));
    ok(src, "trend", &pairs)["total"].as_u64().unwrap()
}

#[test]
fn every_operator_against_every_kind_of_value() {
    let src = typed_source();
    let all = 15;
    // (filter, events that pass: a count worked out from the list above)
    let cases: &[(&str, u64)] = &[
        // "5" and 5 (an unquoted number: the string compares as text, the
        // number numerically); 13's "5" too.
        ("x = 5", 3),
        // Quoted: a string literal, so the number 5 no longer matches.
        ("x = \"5\"", 2),
        // Everything but the three equal ones (null, missing, objects,
        // arrays, booleans and other values all pass !=).
        ("x != 5", all - 3),
        ("x != \"5\"", all - 2),
        // Strings in byte order ("news" and "a=b" > "5"), numbers
        // numerically (5.5).
        ("x > 5", 3),
        ("x >= 5", 6),
        // "5" < "5.5" as text (0, 13), 5 < 5.5 (1); "a=b" > "5.5".
        ("x < 5.5", 3),
        ("x <= 5", 3),
        // `~` looks inside strings only: not the number 5.
        ("x ~ 5", 2),
        ("x ~ ew", 1),
        ("x !~ ew", all - 1),
        ("x !~ 5", all - 2),
        // Booleans: = / != against unquoted true/false only.
        ("x = true", 1),
        ("x != true", all - 1),
        ("x = \"true\"", 0),
        ("x != \"true\"", all),
        // ...but a string compares with "true" as text: "5", "news",
        // "a=b" (twice "5") are below it; the boolean itself is not.
        ("x < true", 4),
        // Missing, null, objects and arrays: nothing but != and !~.
        ("nope = 1", 0),
        ("nope != 1", all),
        ("nope !~ 1", all),
        ("nope ~ 1", 0),
        // Dotted paths reach into nested objects, never into dotted keys.
        ("u.s = a", 1),
        ("u.s != a", all - 1),
        ("u = a", 0),
        // The first operator splits; the rest is the value.
        ("x = a=b", 1),
        ("x=\"a=b\"", 1),
    ];
    for &(filter, want) in cases {
        assert_eq!(passing(&src, &[filter]), want, "--where '{filter}'");
    }
}

#[test]
fn all_filters_must_hold() {
    let src = typed_source();
    assert_eq!(passing(&src, &["x = 5"]), 3);
    assert_eq!(passing(&src, &["y = 1"]), 1);
    assert_eq!(passing(&src, &["x = 5", "y = 1"]), 1);
    assert_eq!(passing(&src, &["x = 5", "y != 1"]), 2);
    assert_eq!(passing(&src, &["x = 5", "x = news"]), 0);
}

#[test]
fn bad_filters_name_the_where_parameter() {
    let src = typed_source();
    for f in ["plan", " = pro", "a..b = 1", "a = \"open"] {
        let (from, to) = (day(0), day(1));
        let msg = bad(
            &src,
            "trend",
            &[("event", "e"), ("from", &from), ("to", &to), ("where", f)],
        );
        assert!(msg.starts_with("--where: "), "{f}: {msg}");
    }
    let msg = bad(&src, "lifecycle", &[("identity", "merged")]);
    assert!(msg.starts_with("--identity: "), "{msg}");
    assert!(msg.contains("linked") && msg.contains("none"), "{msg}");
}

#[test]
fn activation_first_start_is_the_first_matching_one() {
    // p's first ever signup (free) is before the range; the first *pro*
    // signup is inside it. q has only a free signup inside the range.
    let src = MemSource::new([
        MemEvent::new("p", "signup", t0() - 3 * D).props(json!({"plan": "free"})),
        MemEvent::new("p", "signup", t0() + 2 * D).props(json!({"plan": "pro"})),
        MemEvent::new("p", "invoice", t0() + 3 * D).props(json!({"plan": "pro"})),
        MemEvent::new("p", "invoice", t0() + 3 * D + H),
        MemEvent::new("q", "signup", t0() + D).props(json!({"plan": "free"})),
        MemEvent::new("q", "invoice", t0() + D + H).props(json!({"plan": "free"})),
    ]);
    let (from, to) = (day(0), day(7));
    let base = [
        ("start", "signup"),
        ("event", "invoice"),
        ("from", from.as_str()),
        ("to", to.as_str()),
    ];
    let run = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = base.to_vec();
        pairs.extend_from_slice(extra);
        let r = ok(&src, "activation", &pairs);
        (
            r["cohort_size"].as_u64().unwrap(),
            r["activated"].as_u64().unwrap(),
        )
    };
    // Unfiltered: only q (p's first ever start is before the range).
    assert_eq!(run(&[]), (1, 1));
    // Only pro events exist: p's first start is day 2, and of its two
    // invoices only the pro one exists.
    assert_eq!(run(&[("where", "plan = pro")]), (1, 1));
    assert_eq!(run(&[("where", "plan = pro"), ("count", "2")]), (1, 0));
    assert_eq!(run(&[("count", "2")]), (1, 0));
    // Free events only: p's first start is before the range again.
    assert_eq!(run(&[("where", "plan = free")]), (1, 1));
    let r = ok(
        &src,
        "activation",
        &[base.as_slice(), &[("where", "plan = pro")]].concat(),
    );
    assert_eq!(r["median_seconds_to_activate"].as_f64(), Some(86_400.0));
}

#[test]
fn retention_cohorts_and_returns_are_the_matching_events() {
    let src = MemSource::new([
        MemEvent::new("p", "open", t0() - 3 * D).props(json!({"app": "ios"})),
        MemEvent::new("p", "open", t0() + D).props(json!({"app": "web"})),
        MemEvent::new("p", "open", t0() + 2 * D).props(json!({"app": "ios"})),
        MemEvent::new("p", "open", t0() + 3 * D).props(json!({"app": "web"})),
    ]);
    let (from, to) = (day(0), day(7));
    let run = |w: &str| {
        let pairs = [
            ("start", "open"),
            ("period", "day"),
            ("periods", "3"),
            ("from", from.as_str()),
            ("to", to.as_str()),
            ("where", w),
        ];
        ok(&src, "retention", &pairs)
    };
    // Only web opens exist: first start day 1, a return 2 days later.
    let r = run("app = web");
    assert_eq!(r["total"]["size"], 1);
    assert_eq!(r["total"]["retained"], json!([1, 0, 1, 0]));
    assert_eq!(r["cohorts"][0]["cohort"], day(1));
    // Only ios opens: the first is before the range, so nobody.
    let r = run("app = ios");
    assert_eq!(r["total"]["size"], 0);
    // Without a filter the first ever open is before the range too.
    let r = run("app != nothing");
    assert_eq!(r["total"]["size"], 0);
}

#[test]
fn funnel_steps_that_fail_the_filters_do_not_exist() {
    let src = MemSource::new([
        MemEvent::new("p", "view", t0()).props(json!({"src": "ad"})),
        MemEvent::new("p", "buy", t0() + H),
        MemEvent::new("q", "view", t0()).props(json!({"src": "ad"})),
        MemEvent::new("q", "buy", t0() + H).props(json!({"src": "ad"})),
        MemEvent::new("r", "view", t0()),
        MemEvent::new("r", "buy", t0() + H),
    ]);
    let (from, to) = (day(0), day(1));
    let run = |w: Option<&str>| {
        let mut pairs = vec![("steps", "view,buy"), ("from", &from), ("to", &to)];
        pairs.extend(w.map(|w| ("where", w)));
        users(&ok(&src, "funnel", &pairs))
    };
    assert_eq!(run(None), [3, 3]);
    // p's buy has no src: it does not exist for this funnel.
    assert_eq!(run(Some("src = ad")), [2, 1]);
    assert_eq!(run(Some("src != ad")), [1, 1]);
}

#[test]
fn lifecycle_active_and_trend_count_only_matching_events() {
    let src = MemSource::new([
        MemEvent {
            stage: Some(Stage::Revenue),
            revenue: Some(10.0),
            ..MemEvent::new("p", "buy", t0())
        }
        .props(json!({"country": "DE"})),
        MemEvent {
            stage: Some(Stage::Revenue),
            revenue: Some(30.0),
            ..MemEvent::new("q", "buy", t0() + H)
        }
        .props(json!({"country": "FR"})),
        MemEvent::new("q", "view", t0() + D).props(json!({"country": "DE"})),
    ]);
    let (from, to) = (day(0), day(2));
    let range = [("from", from.as_str()), ("to", to.as_str())];
    let with = |w: &'static str| [range.as_slice(), &[("where", w)]].concat();

    let l = ok(&src, "lifecycle", &with("country = DE"));
    assert_eq!(l["active_users"], 2);
    assert_eq!(l["revenue"], 10.0);
    assert_eq!(l["paying_users"], 1);
    let l = ok(&src, "lifecycle", &range);
    assert_eq!(
        (l["active_users"].clone(), l["revenue"].clone()),
        (json!(2), json!(40.0))
    );

    let a = ok(&src, "active", &with("country = FR"));
    let dau: Vec<u64> = a["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dau"].as_u64().unwrap())
        .collect();
    assert_eq!(dau, [1, 0]);
    let a = ok(&src, "active", &with("country = DE"));
    assert_eq!(a["days"][1]["dau"], 1);
    assert_eq!(a["days"][1]["wau"], 2);

    let t = ok(
        &src,
        "trend",
        &[
            with("country = DE").as_slice(),
            &[("event", "any"), ("measure", "users")],
        ]
        .concat(),
    );
    assert_eq!(t["total"], 2);
    let t = ok(
        &src,
        "trend",
        &[
            with("country = FR").as_slice(),
            &[("event", "buy"), ("measure", "revenue")],
        ]
        .concat(),
    );
    assert_eq!(t["total"], 30.0);
}
