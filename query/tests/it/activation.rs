//! Activation (SPEC §4): every rule by hand, with the numbers worked out in
//! the comments, then a property test against a naive reference.

use chrono::Datelike;
use proptest::prelude::*;
use serde_json::{Value, json};
use tally_event::time::{ms_to_date, parse_date_or_rfc3339};
use tally_query::Zone;
use tally_query::activation::{self, ActivationParams, ActivationResult, ActivationWeek};
use tally_query::{Format, MemEvent, MemSource, QueryError, RawParams, Report};

const S: i64 = 1000;
const M: i64 = 60 * S;
const H: i64 = 60 * M;
const D: i64 = 24 * H;

/// 2026-01-05T00:00:00Z, a Monday. The default range is two weeks from here.
fn t0() -> i64 {
    parse_date_or_rfc3339("2026-01-05").unwrap()
}

/// Events `(person, name, ms after t0)`.
fn source(events: &[(&str, &str, i64)]) -> MemSource {
    MemSource::new(
        events
            .iter()
            .map(|&(p, n, t)| MemEvent::new(p, n, t0() + t)),
    )
}

fn params(start: &str, event: &str, count: u32, within_ms: i64) -> ActivationParams {
    ActivationParams {
        start: start.into(),
        event: event.into(),
        count,
        within_ms,
        from: t0(),
        to: t0() + 14 * D,
        as_of: far_future(),
        tz: Zone::utc(),
    }
}

/// An `as_of` by which every cohort in these tests is mature.
fn far_future() -> i64 {
    t0() + 4000 * D
}

fn run(events: &[(&str, &str, i64)], p: &ActivationParams) -> ActivationResult {
    activation::run(&source(events), p).unwrap()
}

/// (cohort_size, activated, median seconds)
fn summary(r: &ActivationResult) -> (u64, u64, Option<f64>) {
    (r.cohort_size, r.activated, r.median_seconds_to_activate)
}

#[test]
fn counts_rate_and_median() {
    // count 2 within 30d.
    // p1: signup@0, invoices @1h, @3h → activated, 3h.
    // p2: signup@0, invoice @2h only → not activated.
    // p3: signup@1d, invoices @1d+1h, @1d+2h, @1d+9h → activated at the 2nd, 2h.
    // p4: signup@2d, nothing.
    // cohort 4, activated 2, rate .5, median of {3h, 2h} = 2.5h = 9000 s.
    let r = run(
        &[
            ("p1", "signup", 0),
            ("p1", "invoice", H),
            ("p1", "invoice", 3 * H),
            ("p2", "signup", 0),
            ("p2", "invoice", 2 * H),
            ("p3", "signup", D),
            ("p3", "invoice", D + 9 * H),
            ("p3", "invoice", D + H),
            ("p3", "invoice", D + 2 * H),
            ("p4", "signup", 2 * D),
        ],
        &params("signup", "invoice", 2, 30 * D),
    );
    assert_eq!(summary(&r), (4, 2, Some(9000.0)));
    assert_eq!(r.rate, 0.5);
    // Odd count: with count 1 the times are 1h, 2h, 1h → median 1h.
    let r = run(
        &[
            ("p1", "signup", 0),
            ("p1", "invoice", H),
            ("p2", "signup", 0),
            ("p2", "invoice", 2 * H),
            ("p3", "signup", 0),
            ("p3", "invoice", H),
        ],
        &params("signup", "invoice", 1, 30 * D),
    );
    assert_eq!(summary(&r), (3, 3, Some(3600.0)));
    assert_eq!(r.rate, 1.0);
}

#[test]
fn the_count_th_event_in_time_order_sets_the_time() {
    // Inserted out of order: 5h, 1h, 3h, 2h. count 3 → the 3rd by time is 3h.
    let r = run(
        &[
            ("p", "signup", 0),
            ("p", "e", 5 * H),
            ("p", "e", H),
            ("p", "e", 3 * H),
            ("p", "e", 2 * H),
        ],
        &params("signup", "e", 3, 30 * D),
    );
    assert_eq!(summary(&r), (1, 1, Some(3.0 * 3600.0)));
    // Same-time events count separately: two at 1h → count 2 at 1h.
    let r = run(
        &[("p", "signup", 0), ("p", "e", H), ("p", "e", H)],
        &params("signup", "e", 2, 30 * D),
    );
    assert_eq!(summary(&r), (1, 1, Some(3600.0)));
    // count 5 with four events: not activated.
    let r = run(
        &[
            ("p", "signup", 0),
            ("p", "e", H),
            ("p", "e", 2 * H),
            ("p", "e", 3 * H),
            ("p", "e", 4 * H),
        ],
        &params("signup", "e", 5, 30 * D),
    );
    assert_eq!(summary(&r), (1, 0, None));
}

#[test]
fn within_is_inclusive() {
    // e at s0 + 1d exactly: activated (1d = 86400 s). At 1d + 1 ms: not.
    let p = params("signup", "e", 1, D);
    let r = run(&[("p", "signup", H), ("p", "e", H + D)], &p);
    assert_eq!(summary(&r), (1, 1, Some(86_400.0)));
    let r = run(&[("p", "signup", H), ("p", "e", H + D + 1)], &p);
    assert_eq!(summary(&r), (1, 0, None));
}

#[test]
fn events_before_s0_do_not_qualify() {
    // e 1 ms before signup (inside the range): not counted; e at s0: counted
    // (0 s).
    let p = params("signup", "e", 1, D);
    let r = run(&[("p", "e", H - 1), ("p", "signup", H)], &p);
    assert_eq!(summary(&r), (1, 0, None));
    let r = run(&[("p", "e", H), ("p", "signup", H)], &p);
    assert_eq!(summary(&r), (1, 1, Some(0.0)));
}

#[test]
fn the_cohort_is_the_first_ever_start() {
    let p = params("signup", "e", 1, 30 * D);
    // First signup 1 ms before `from` (a second one inside): not in the cohort.
    let r = run(
        &[("p", "signup", -1), ("p", "signup", D), ("p", "e", D + H)],
        &p,
    );
    assert_eq!(summary(&r), (0, 0, None));
    assert!(r.by_week.is_empty());
    // A first signup long before `from`: likewise.
    let r = run(&[("p", "signup", -400 * D), ("p", "signup", D)], &p);
    assert_eq!(r.cohort_size, 0);
    // First signup exactly at `from`: in. At `to` (exclusive): out.
    let r = run(&[("p", "signup", 0), ("q", "signup", 14 * D)], &p);
    assert_eq!(r.cohort_size, 1);
    // A later signup does not move s0: signup@0, signup@2d, e@2d+1h within
    // 1d of s0? No (2d+1h after s0) → not activated with --within 1d.
    let r = run(
        &[
            ("p", "signup", 0),
            ("p", "signup", 2 * D),
            ("p", "e", 2 * D + H),
        ],
        &params("signup", "e", 1, D),
    );
    assert_eq!(summary(&r), (1, 0, None));
}

#[test]
fn qualifying_events_are_not_limited_to_the_range() {
    // Signup 1 h before `to`; events 5 h and 10 d after `to`. count 2
    // within 30d → activated at the second: 10d + 1h = 867600 s.
    let to = 14 * D;
    let r = run(
        &[
            ("p", "signup", to - H),
            ("p", "e", to + 5 * H),
            ("p", "e", to + 10 * D),
        ],
        &params("signup", "e", 2, 30 * D),
    );
    assert_eq!(summary(&r), (1, 1, Some(867_600.0)));
    // Recent cohorts are not excluded: nothing to show yet is simply "not
    // activated", still in the cohort.
    let r = run(
        &[("p", "signup", to - H)],
        &params("signup", "e", 1, 30 * D),
    );
    assert_eq!(summary(&r), (1, 0, None));
}

#[test]
fn event_equal_to_start_counts_the_start_itself() {
    // count 1: every cohort member is activated at 0 s.
    let events = [
        ("p", "signup", 0),
        ("q", "signup", D),
        ("q", "signup", D + 2 * H),
    ];
    let r = run(&events, &params("signup", "signup", 1, 30 * D));
    assert_eq!(summary(&r), (2, 2, Some(0.0)));
    // count 2: only q (start + one more, 2h) → 7200 s.
    let r = run(&events, &params("signup", "signup", 2, 30 * D));
    assert_eq!(summary(&r), (2, 1, Some(7200.0)));
    // A start before `from` excludes the person even though later starts
    // inside would count as events.
    let r = run(
        &[("p", "signup", -D), ("p", "signup", H)],
        &params("signup", "signup", 1, 30 * D),
    );
    assert_eq!(summary(&r), (0, 0, None));
}

#[test]
fn unknown_names() {
    let events = [("p", "signup", 0), ("p", "e", H)];
    // Unknown start: empty cohort, rate 0, median null, no weeks.
    let r = run(&events, &params("nope", "e", 1, D));
    assert_eq!(summary(&r), (0, 0, None));
    assert_eq!(r.rate, 0.0);
    assert!(r.by_week.is_empty());
    // Unknown event: the cohort is there, nobody activated.
    let r = run(&events, &params("signup", "nope", 1, D));
    assert_eq!(summary(&r), (1, 0, None));
    assert_eq!(r.rate, 0.0);
    assert_eq!(r.by_week.len(), 1);
    assert_eq!(r.by_week[0].rate, 0.0);
    // Empty source.
    let r = activation::run(&MemSource::default(), &params("a", "b", 1, D)).unwrap();
    assert_eq!(summary(&r), (0, 0, None));
}

#[test]
fn by_week_groups_by_the_iso_monday_of_s0() {
    // t0 = Monday 2026-01-05. Range [t0, t0 + 14d) spans weeks of 01-05 and 01-12.
    // a: Monday 00:00 (week 01-05), activated.
    // b: Sunday 2026-01-11 23:59:59.999 (week 01-05), not activated.
    // c: Monday 2026-01-12 00:00 (week 01-12), activated.
    // d: Sunday 2026-01-18 12:00 (week 01-12), activated.
    // e: Wednesday 2026-01-14 (week 01-12), not activated.
    let r = run(
        &[
            ("c", "signup", 7 * D),
            ("c", "e", 7 * D + H),
            ("a", "signup", 0),
            ("a", "e", M),
            ("b", "signup", 7 * D - 1),
            ("d", "signup", 13 * D + 12 * H),
            ("d", "e", 13 * D + 13 * H),
            ("e", "signup", 9 * D),
        ],
        &params("signup", "e", 1, D),
    );
    assert_eq!(
        r.by_week,
        [
            ActivationWeek {
                cohort: "2026-01-05".into(),
                cohort_size: 2,
                activated: 1,
                rate: 0.5,
                mature: true,
            },
            ActivationWeek {
                cohort: "2026-01-12".into(),
                cohort_size: 3,
                activated: 2,
                rate: 2.0 / 3.0,
                mature: true,
            },
        ]
    );
    // Overall: 5 in the cohort, 3 activated: 1 min, 1 h, 1 h → median 1 h.
    assert_eq!(summary(&r), (5, 3, Some(3600.0)));
}

#[test]
fn a_range_starting_mid_week_still_labels_weeks_by_monday() {
    // Range from Thursday 2026-01-08; a signup that Saturday → week 2026-01-05.
    let mut p = params("signup", "e", 1, D);
    p.from = t0() + 3 * D;
    let r = run(&[("p", "signup", 5 * D)], &p);
    assert_eq!(r.by_week.len(), 1);
    assert_eq!(r.by_week[0].cohort, "2026-01-05");
}

#[test]
fn json_has_exactly_the_spec_shape() {
    let r = run(
        &[
            ("p", "signup", 0),
            ("p", "e", 237_715),
            ("q", "signup", 7 * D),
        ],
        &params("signup", "e", 1, 30 * D),
    );
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v,
        json!({
            "cohort_size": 2,
            "activated": 1,
            "rate": 0.5,
            "median_seconds_to_activate": 237.715,
            "by_week": [
                {"cohort": "2026-01-05", "cohort_size": 1, "activated": 1, "rate": 1.0,
                 "mature": true},
                {"cohort": "2026-01-12", "cohort_size": 1, "activated": 0, "rate": 0.0,
                 "mature": true},
            ],
            "as_of": "2036-12-18T00:00:00Z",
            "mature": {"cohort_size": 2, "activated": 1, "rate": 0.5},
        })
    );
    let text = r.render(Format::Json);
    let at = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
    assert!(at("cohort_size") < at("activated"));
    assert!(at("activated") < at("rate"));
    assert!(at("rate") < at("median_seconds_to_activate"));
    assert!(at("median_seconds_to_activate") < at("by_week"));
    assert!(at("by_week") < at("as_of"));
    let back: ActivationResult = serde_json::from_str(&text).unwrap();
    assert_eq!(back, r);

    // Nobody activated: a null median; empty cohort: rate 0 and no weeks.
    let r = run(&[("p", "signup", 0)], &params("signup", "e", 1, D));
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["median_seconds_to_activate"], Value::Null);
    let r = run(&[], &params("signup", "e", 1, D));
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({"cohort_size": 0, "activated": 0, "rate": 0.0,
               "median_seconds_to_activate": null, "by_week": [],
               "as_of": "2036-12-18T00:00:00Z",
               "mature": {"cohort_size": 0, "activated": 0, "rate": 0.0}})
    );
}

#[test]
fn maturity_counts_only_persons_whose_whole_within_has_passed() {
    // within 7d; t0 = Monday 2026-01-05.
    // a: signup@0 (Mon 01-05), e@1h: activated; s0 + 7d = 01-12.
    // b: signup@3d (Thu 01-08), no e: not activated; s0 + 7d = 01-15 00:00.
    // c: signup@3d + 1 ms, e@3d + 2h: activated; s0 + 7d = 01-15 00:00.001.
    // d: signup@8d (Tue 01-13), e@8d + 1h: activated; s0 + 7d = 01-20.
    let events = [
        ("a", "signup", 0),
        ("a", "e", H),
        ("b", "signup", 3 * D),
        ("c", "signup", 3 * D + 1),
        ("c", "e", 3 * D + 2 * H),
        ("d", "signup", 8 * D),
        ("d", "e", 8 * D + H),
    ];
    let at = |as_of: i64| {
        let mut p = params("signup", "e", 1, 7 * D);
        p.as_of = as_of;
        run(&events, &p)
    };
    let mature = |r: &ActivationResult| {
        (
            r.mature.cohort_size,
            r.mature.activated,
            r.mature.rate,
            r.by_week.iter().map(|w| w.mature).collect::<Vec<_>>(),
        )
    };

    // As of Thu 01-15 00:00: a and b are mature (b exactly: "at or before"),
    // c is 1 ms short, d has days to go. Mature: 2, activated 1 (a), 50%.
    // Week 01-05 ends 01-12, + 7d = 01-19 > as_of; week 01-12: 01-26.
    let r = at(t0() + 10 * D);
    assert_eq!(r.as_of, "2026-01-15T00:00:00Z");
    assert_eq!(mature(&r), (2, 1, 0.5, vec![false, false]));
    // The overall numbers do not depend on as_of: 4 in the cohort, 3 activated.
    assert_eq!((r.cohort_size, r.activated, r.rate), (4, 3, 0.75));

    // As of Mon 01-19 00:00: a, b, c are mature (d's s0 + 7d is 01-20);
    // activated a and c → 2 of 3. Week 01-05 is mature exactly now.
    let r = at(t0() + 14 * D);
    assert_eq!(mature(&r), (3, 2, 2.0 / 3.0, vec![true, false]));
    // One millisecond earlier, the week 01-05 is still running.
    let r = at(t0() + 14 * D - 1);
    assert_eq!(mature(&r), (3, 2, 2.0 / 3.0, vec![false, false]));

    // As of 01-26 everybody is mature and so is every week.
    let r = at(t0() + 21 * D);
    assert_eq!(mature(&r), (4, 3, 0.75, vec![true, true]));

    // Before anybody's period is over: nobody mature, rate 0.
    let r = at(t0() + D);
    assert_eq!(mature(&r), (0, 0, 0.0, vec![false, false]));
}

#[test]
fn tables_mark_running_weeks_as_still_running() {
    // As above: as of 01-19 the week of 01-05 is mature, 01-12 is not.
    let mut p = params("signup", "e", 1, 7 * D);
    p.as_of = t0() + 14 * D;
    let r = run(
        &[("a", "signup", 0), ("a", "e", H), ("d", "signup", 8 * D)],
        &p,
    );
    let table = r.render(Format::Table);
    let line = |week: &str| table.lines().find(|l| l.starts_with(week)).unwrap();
    assert!(!line("2026-01-05").contains("still running"), "{table}");
    assert!(line("2026-01-05").contains('█'), "{table}");
    assert!(line("2026-01-12").contains("0.0%…"), "{table}");
    assert!(line("2026-01-12").contains("still running"), "{table}");
    assert!(table.contains("Mature rate"), "{table}");
    assert!(table.contains("100.0%"), "{table}");
    assert!(table.contains("2026-01-19T00:00:00Z"), "{table}");
    assert_eq!(
        r.render(Format::Csv),
        "row,cohort,cohort_size,activated,rate,mature\n\
         total,,2,1,0.5,\n\
         mature,,1,1,1,\n\
         week,2026-01-05,1,1,1,true\n\
         week,2026-01-12,1,0,0,false\n"
    );
}

// --- Parameters -------------------------------------------------------------

fn from_raw(pairs: &[(&str, &str)]) -> Result<ActivationParams, QueryError> {
    let mut raw = RawParams::new(pairs.iter().copied());
    ActivationParams::from_raw(&mut raw, t0())
}

fn bad_param(r: Result<ActivationParams, QueryError>) -> (String, String) {
    match r {
        Err(QueryError::BadParam { param, message }) => (param, message),
        other => panic!("expected a bad parameter, got {other:?}"),
    }
}

#[test]
fn params_defaults_and_parsing() {
    let p = from_raw(&[
        ("start", "signup"),
        ("event", "invoice_sent"),
        ("count", "2"),
        ("within", "30d"),
        ("from", "2026-01-01"),
        ("to", "2026-01-31"),
    ])
    .unwrap();
    assert_eq!(
        p,
        ActivationParams {
            start: "signup".into(),
            event: "invoice_sent".into(),
            count: 2,
            within_ms: 30 * D,
            from: parse_date_or_rfc3339("2026-01-01").unwrap(),
            to: parse_date_or_rfc3339("2026-01-31").unwrap(),
            as_of: t0(),
            tz: Zone::utc(),
        }
    );
    // Defaults: count 1, within 30d, the 30 days up to the end of today,
    // as of now.
    let p = from_raw(&[("start", "a"), ("event", "b")]).unwrap();
    assert_eq!((p.count, p.within_ms, p.as_of), (1, 30 * D, t0()));
    // --as-of takes a date or RFC 3339, either spelling.
    let p = from_raw(&[("start", "a"), ("event", "b"), ("as_of", "2026-02-01")]).unwrap();
    assert_eq!(p.as_of, parse_date_or_rfc3339("2026-02-01").unwrap());
    let p = from_raw(&[
        ("start", "a"),
        ("event", "b"),
        ("as-of", "2026-02-01T10:00:00+02:00"),
    ])
    .unwrap();
    assert_eq!(
        p.as_of,
        parse_date_or_rfc3339("2026-02-01T08:00:00Z").unwrap()
    );
    assert_eq!((p.from, p.to), (t0() + D - 30 * D, t0() + D));
    // Bounds accepted.
    let p = from_raw(&[("start", "a"), ("event", "a"), ("within", "1s")]).unwrap();
    assert_eq!(p.within_ms, S);
    let p = from_raw(&[("start", "a"), ("event", "b"), ("within", "3650d")]).unwrap();
    assert_eq!(p.within_ms, 3650 * D);
}

#[test]
fn params_errors_name_the_flag() {
    for (pairs, flag, expect) in [
        (vec![("event", "b")], "start", "is required"),
        (vec![("start", "a")], "event", "is required"),
        (vec![("start", " "), ("event", "b")], "start", "empty"),
        (
            vec![("start", "a"), ("event", "b"), ("count", "0")],
            "count",
            "at least 1",
        ),
        (
            vec![("start", "a"), ("event", "b"), ("count", "-3")],
            "count",
            "at least 1",
        ),
        (
            vec![("start", "a"), ("event", "b"), ("count", "two")],
            "count",
            "whole number",
        ),
        (
            vec![("start", "a"), ("event", "b"), ("within", "0s")],
            "within",
            "1s to 3650d",
        ),
        (
            vec![("start", "a"), ("event", "b"), ("within", "3651d")],
            "within",
            "1s to 3650d",
        ),
        (
            vec![("start", "a"), ("event", "b"), ("within", "3y")],
            "within",
            "unknown duration unit",
        ),
        (
            vec![("start", "a"), ("event", "b"), ("from", "2026-02-30")],
            "from",
            "valid date",
        ),
        (
            vec![("start", "a"), ("event", "b"), ("as-of", "yesterday")],
            "as-of",
            "",
        ),
    ] {
        let (param, message) = bad_param(from_raw(&pairs));
        assert_eq!(param, flag, "{pairs:?}");
        assert!(message.contains(expect), "{pairs:?}: {message}");
    }
}

#[test]
fn from_raw_leaves_unknown_parameters_to_finish() {
    let mut raw = RawParams::new([("start", "a"), ("event", "b"), ("cuont", "2")]);
    ActivationParams::from_raw(&mut raw, t0()).unwrap();
    assert_eq!(
        raw.finish().unwrap_err().to_string(),
        "--cuont: unknown parameter"
    );
}

#[test]
fn run_rejects_count_zero() {
    assert!(matches!(
        activation::run(&MemSource::default(), &params("a", "b", 0, D)),
        Err(QueryError::BadParam { .. })
    ));
}

#[test]
fn run_takes_any_within_in_milliseconds() {
    // A 0 ms `within` only counts events at s0 itself.
    let p = params("signup", "e", 1, 0);
    let r = run(&[("p", "signup", H), ("p", "e", H)], &p);
    assert_eq!(summary(&r), (1, 1, Some(0.0)));
    let r = run(&[("p", "signup", H), ("p", "e", H + 1)], &p);
    assert_eq!(summary(&r), (1, 0, None));
}

// --- Table and CSV ----------------------------------------------------------

#[test]
fn table_and_csv() {
    let r = run(
        &[
            ("a", "signup", 0),
            ("a", "e", 2 * H + 13 * M),
            ("b", "signup", H),
            ("c", "signup", 7 * D),
        ],
        &params("signup", "e", 1, 30 * D),
    );
    let table = r.render(Format::Table);
    for want in [
        "Cohort",
        "Activated",
        "33.3%",
        "2h 13m",
        "2026-01-05",
        "2026-01-12",
        "50.0%",
        "█",
    ] {
        assert!(table.contains(want), "{want}: {table}");
    }
    assert!(!table.contains("still running"), "{table}");
    let csv = r.render(Format::Csv);
    assert_eq!(
        csv,
        "row,cohort,cohort_size,activated,rate,mature\n\
         total,,3,1,0.3333333333333333,\n\
         mature,,3,1,0.3333333333333333,\n\
         week,2026-01-05,2,1,0.5,true\n\
         week,2026-01-12,1,0,0,true\n"
    );
    let empty = run(&[], &params("signup", "e", 1, D));
    assert!(empty.render(Format::Table).contains("Nobody"));
    assert_eq!(
        empty.render(Format::Csv),
        "row,cohort,cohort_size,activated,rate,mature\ntotal,,0,0,0,\nmature,,0,0,0,\n"
    );
}

// --- Property test against a naive reference ---------------------------------

/// The reference, straight from SPEC: per person the first ever start, the
/// sorted qualifying events, the `count`-th one; weeks by chrono's weekday.
fn naive(events: &[(usize, &str, i64)], p: &ActivationParams) -> ActivationResult {
    use std::collections::BTreeMap;
    let mut weeks: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let (mut mature_size, mut mature_activated) = (0, 0);
    let mut times = Vec::new();
    for person in 0..4 {
        let mine: Vec<&(usize, &str, i64)> = events.iter().filter(|e| e.0 == person).collect();
        let Some(s0) = mine.iter().filter(|e| e.1 == p.start).map(|e| e.2).min() else {
            continue;
        };
        if s0 < p.from || s0 >= p.to {
            continue;
        }
        let mut q: Vec<i64> = mine
            .iter()
            .filter(|e| e.1 == p.event && e.2 >= s0 && e.2 - s0 <= p.within_ms)
            .map(|e| e.2)
            .collect();
        q.sort_unstable();
        let date = ms_to_date(s0);
        let monday = date - chrono::Days::new(date.weekday().num_days_from_monday().into());
        let w = weeks.entry(monday.to_string()).or_default();
        w.0 += 1;
        let activated = q.len() >= p.count as usize;
        if activated {
            w.1 += 1;
            times.push(q[p.count as usize - 1] - s0);
        }
        if s0 + p.within_ms <= p.as_of {
            mature_size += 1;
            mature_activated += u64::from(activated);
        }
    }
    times.sort_unstable();
    let n = times.len();
    let median = match n {
        0 => None,
        _ if n % 2 == 1 => Some(times[n / 2] as f64 / 1000.0),
        _ => Some((times[n / 2 - 1] + times[n / 2]) as f64 / 2.0 / 1000.0),
    };
    let rate = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let cohort_size = weeks.values().map(|w| w.0).sum();
    let activated = weeks.values().map(|w| w.1).sum();
    ActivationResult {
        cohort_size,
        activated,
        rate: rate(activated, cohort_size),
        median_seconds_to_activate: median,
        by_week: weeks
            .into_iter()
            .map(|(cohort, (size, act))| {
                let monday = parse_date_or_rfc3339(&cohort).unwrap();
                ActivationWeek {
                    mature: monday + 7 * D + p.within_ms <= p.as_of,
                    cohort,
                    cohort_size: size,
                    activated: act,
                    rate: rate(act, size),
                }
            })
            .collect(),
        as_of: tally_event::time::format_rfc3339(p.as_of),
        mature: activation::MatureCounts {
            cohort_size: mature_size,
            activated: mature_activated,
            rate: rate(mature_activated, mature_size),
        },
    }
}

const NAMES: [&str; 3] = ["s", "e", "x"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn matches_the_naive_reference(
        // Times in 6-hour steps over ~4 weeks around the range, with an
        // occasional extra millisecond for the `within` edge.
        events in prop::collection::vec(
            (0usize..4, 0usize..2, 0i64..110, prop::bool::weighted(0.2)),
            0..30,
        ),
        names in prop_oneof![Just((0usize, 1usize)), Just((0, 0)), Just((1, 0)), Just((0, 2))],
        count in 1u32..4,
        within_6h in 1i64..16,
        from_6h in 0i64..40,
        len_6h in 1i64..60,
        as_of_6h in 0i64..160,
        as_of_ms in prop::bool::weighted(0.2),
    ) {
        let base = parse_date_or_rfc3339("2026-01-01").unwrap();
        let six = 6 * H;
        let events: Vec<(usize, &str, i64)> = events
            .iter()
            .map(|&(p, n, t, ms)| (p, NAMES[n], base + t * six + i64::from(ms)))
            .collect();
        let p = ActivationParams {
            start: NAMES[names.0].into(),
            event: NAMES[names.1].into(),
            count,
            within_ms: within_6h * six,
            from: base + from_6h * six,
            to: base + (from_6h + len_6h) * six,
            as_of: base + as_of_6h * six - i64::from(as_of_ms),
            tz: Zone::utc(),
        };
        let src = MemSource::new(
            events.iter().map(|&(person, n, t)| MemEvent::new(&format!("p{person}"), n, t)),
        );
        let got = activation::run(&src, &p).unwrap();
        let want = naive(&events, &p);
        prop_assert_eq!(got, want);
    }
}

/// The SPEC's scale target: 10M events, 500k persons.
/// `cargo test -p tally-query --release -- --ignored --nocapture scale`
#[test]
#[ignore = "a scale run: use --release"]
fn scale_activation_10m_events() {
    let src = crate::funnel::Columns::synthetic(10_000_000, 500_000, 8);
    let p = ActivationParams {
        start: "e0".into(),
        event: "e1".into(),
        count: 2,
        within_ms: 7 * D,
        from: parse_date_or_rfc3339("2026-01-08").unwrap(),
        to: parse_date_or_rfc3339("2026-01-31").unwrap(),
        as_of: parse_date_or_rfc3339("2026-03-01").unwrap(),
        tz: Zone::utc(),
    };
    let t = std::time::Instant::now();
    let r = activation::run(&src, &p).unwrap();
    println!(
        "activation: {:?} (including the test source's scans); cohort {}, activated {}",
        t.elapsed(),
        r.cohort_size,
        r.activated
    );
}
