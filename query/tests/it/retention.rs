//! Retention (SPEC §4): hand-worked cases for every rule, and a property
//! test against a brute-force reference.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration};
use proptest::prelude::*;
use serde_json::json;
use tally_event::time::{DAY_MS, format_rfc3339, ms_to_date, parse_date_or_rfc3339};
use tally_query::retention::{self, Period, RetentionParams, RetentionResult, ReturnEvent};
use tally_query::{Format, MemEvent, MemSource, QueryError, RawParams, Report};

const H: i64 = 3_600_000;
const WEEK: i64 = 7 * DAY_MS;

/// `2026-01-05` or an RFC 3339 time, in Unix ms.
fn t(s: &str) -> i64 {
    parse_date_or_rfc3339(s).unwrap()
}

fn ev(person: &str, name: &str, ts: i64) -> MemEvent {
    MemEvent::new(person, name, ts)
}

/// Parameters as the CLI would build them (`now` is far in the future, so
/// every period is complete unless `as-of` says otherwise).
fn params(pairs: &[(&str, &str)]) -> RetentionParams {
    let mut raw = RawParams::new(pairs.iter().copied());
    let p = RetentionParams::from_raw(&mut raw, t("2030-01-01")).unwrap();
    raw.finish().unwrap();
    p
}

fn run(events: Vec<MemEvent>, pairs: &[(&str, &str)]) -> RetentionResult {
    retention::run(&MemSource::new(events), &params(pairs)).unwrap()
}

fn param_error(pairs: &[(&str, &str)]) -> String {
    let mut raw = RawParams::new(pairs.iter().copied());
    match RetentionParams::from_raw(&mut raw, t("2026-03-01")) {
        Err(e @ QueryError::BadParam { .. }) => e.to_string(),
        other => panic!("expected a parameter error, got {other:?}"),
    }
}

#[test]
fn defaults() {
    let mut raw = RawParams::new([("start", "signup")]);
    let now = t("2026-03-01T12:34:56.789Z");
    let p = RetentionParams::from_raw(&mut raw, now).unwrap();
    raw.finish().unwrap();
    assert_eq!(p.return_event, ReturnEvent::Event("signup".into()));
    assert_eq!(p.period, Period::Week);
    assert_eq!(p.periods, 8);
    assert_eq!(p.as_of, now);
    // Default range: the 30 days up to the end of today.
    assert_eq!(p.to, t("2026-03-02"));
    assert_eq!(p.from, t("2026-01-31"));

    let p = params(&[
        ("start", "signup"),
        ("return", "any"),
        ("period", "day"),
        ("periods", "0"),
        ("as_of", "2026-02-01"),
        ("from", "2026-01-01"),
        ("to", "2026-01-31T12:00:00Z"),
    ]);
    assert_eq!(p.return_event, ReturnEvent::Any);
    assert_eq!(p.period, Period::Day);
    assert_eq!(p.periods, 0);
    assert_eq!(p.as_of, t("2026-02-01"));
    assert_eq!((p.from, p.to), (t("2026-01-01"), t("2026-01-31T12:00:00Z")));
    let p = params(&[
        ("start", "signup"),
        ("return", "purchase"),
        ("periods", "365"),
    ]);
    assert_eq!(p.return_event, ReturnEvent::Event("purchase".into()));
    assert_eq!(p.periods, 365);
}

#[test]
fn parameter_errors() {
    assert_eq!(
        param_error(&[("start", "s"), ("periods", "366")]),
        "--periods: 366 is out of range (expected 0 to 365)"
    );
    assert!(param_error(&[("start", "s"), ("periods", "-1")]).starts_with("--periods:"));
    assert!(param_error(&[("start", "s"), ("periods", "two")]).starts_with("--periods:"));
    assert_eq!(
        param_error(&[("start", "s"), ("period", "month")]),
        "--period: unknown period 'month' (expected day or week)"
    );
    assert_eq!(param_error(&[]), "--start: is required");
    assert!(param_error(&[("start", "")]).starts_with("--start:"));
    assert!(param_error(&[("start", "s"), ("return", "")]).starts_with("--return:"));
    assert!(param_error(&[("start", "s"), ("as-of", "yesterday")]).starts_with("--as-of:"));
    assert!(
        param_error(&[("start", "s"), ("from", "2026-02-01"), ("to", "2026-01-01")])
            .starts_with("--from:")
    );
}

#[test]
fn first_ever_start_before_from_is_excluded() {
    // alice first signed up before --from: her later signup does not put her
    // in a cohort. bob's first signup is inside the range.
    let r = run(
        vec![
            ev("alice", "signup", t("2026-01-01T09:00:00Z")),
            ev("alice", "signup", t("2026-01-06T09:00:00Z")),
            ev("bob", "signup", t("2026-01-06T09:00:00Z")),
            // carol's first signup is at --to, outside [from, to).
            ev("carol", "signup", t("2026-01-19")),
        ],
        &[
            ("start", "signup"),
            ("from", "2026-01-05"),
            ("to", "2026-01-19"),
            ("periods", "2"),
        ],
    );
    assert_eq!(r.cohorts.len(), 1);
    assert_eq!(r.cohorts[0].cohort, "2026-01-05");
    assert_eq!(r.cohorts[0].size, 1);
    assert_eq!(r.cohorts[0].retained, vec![1, 0, 0]);
    assert_eq!(r.total.size, 1);
}

#[test]
fn rolling_periods_from_each_persons_own_start() {
    // Return equal to start (the default). s0 = Tuesday 10:00.
    // a: again at exactly s0 + 7d       -> period 1
    // b: again at s0 + 7d - 1 ms        -> period 0 only
    // c: again at s0 + 14d - 1 ms       -> period 1; and s0 + 14d -> period 2
    // d: the same moment as s0 twice    -> period 0 only
    let s0 = t("2026-01-06T10:00:00Z");
    let r = run(
        vec![
            ev("a", "signup", s0),
            ev("a", "signup", s0 + WEEK),
            ev("b", "signup", s0),
            ev("b", "signup", s0 + WEEK - 1),
            ev("c", "signup", s0),
            ev("c", "signup", s0 + 2 * WEEK - 1),
            ev("c", "signup", s0 + 2 * WEEK),
            ev("d", "signup", s0),
            ev("d", "signup", s0),
        ],
        &[
            ("start", "signup"),
            ("from", "2026-01-05"),
            ("to", "2026-01-12"),
            ("periods", "3"),
        ],
    );
    assert_eq!(r.cohorts.len(), 1);
    let c = &r.cohorts[0];
    assert_eq!(c.size, 4);
    // period 1: a, c; period 2: c; period 3: nobody.
    assert_eq!(c.retained, vec![4, 2, 1, 0]);
    // period >= 1: a, c; >= 2: c; >= 3: nobody.
    assert_eq!(c.unbounded, vec![4, 2, 1, 0]);
    assert_eq!(c.incomplete_from, None);
}

#[test]
fn periods_are_relative_to_s0_not_to_the_calendar() {
    // Daily periods. x signs up Monday 23:00 and comes back Tuesday 01:00:
    // a different calendar day, but only 2 h later, so still period 0.
    // y signs up Monday 01:00 and comes back Tuesday 01:00: period 1.
    let r = run(
        vec![
            ev("x", "signup", t("2026-01-05T23:00:00Z")),
            ev("x", "open", t("2026-01-06T01:00:00Z")),
            ev("y", "signup", t("2026-01-05T01:00:00Z")),
            ev("y", "open", t("2026-01-06T01:00:00Z")),
        ],
        &[
            ("start", "signup"),
            ("return", "open"),
            ("period", "day"),
            ("periods", "2"),
            ("from", "2026-01-05"),
            ("to", "2026-01-06"),
        ],
    );
    assert_eq!(r.cohorts.len(), 1);
    assert_eq!(r.cohorts[0].cohort, "2026-01-05");
    assert_eq!(r.cohorts[0].retained, vec![2, 1, 0]);
    assert_eq!(r.cohorts[0].unbounded, vec![2, 1, 0]);
}

#[test]
fn return_events_before_s0_and_after_to_and_any() {
    // s0 = 2026-01-05T12:00 for p. Events:
    //   view   at s0 - 1h     (before s0: never a return)
    //   view   at s0 + 1d     (period 1 for daily periods)
    //   buy    at s0 + 3d     (period 3; after --to, still counts)
    //   signup at s0 + 2d     (period 2; a start event is "any" event too)
    let s0 = t("2026-01-05T12:00:00Z");
    let events = vec![
        ev("p", "view", s0 - H),
        ev("p", "signup", s0),
        ev("p", "view", s0 + DAY_MS),
        ev("p", "signup", s0 + 2 * DAY_MS),
        ev("p", "buy", s0 + 3 * DAY_MS),
        // q: only events before its s0, so never retained.
        ev("q", "view", s0 - 2 * H),
        ev("q", "buy", s0 - H),
        ev("q", "signup", s0),
    ];
    let base = [
        ("start", "signup"),
        ("period", "day"),
        ("periods", "4"),
        ("from", "2026-01-05"),
        ("to", "2026-01-06"),
    ];
    let with = |ret: &str| {
        let mut pairs = base.to_vec();
        pairs.push(("return", ret));
        let r = run(events.clone(), &pairs);
        assert_eq!(r.cohorts.len(), 1);
        (
            r.cohorts[0].retained.clone(),
            r.cohorts[0].unbounded.clone(),
        )
    };
    assert_eq!(with("view"), (vec![2, 1, 0, 0, 0], vec![2, 1, 0, 0, 0]));
    assert_eq!(with("buy"), (vec![2, 0, 0, 1, 0], vec![2, 1, 1, 1, 0]));
    assert_eq!(with("signup"), (vec![2, 0, 1, 0, 0], vec![2, 1, 1, 0, 0]));
    assert_eq!(with("any"), (vec![2, 1, 1, 1, 0], vec![2, 1, 1, 1, 0]));
    // A return event nobody ever sent: the cohort is there, nobody returns.
    assert_eq!(with("never"), (vec![2, 0, 0, 0, 0], vec![2, 0, 0, 0, 0]));
}

#[test]
fn iso_week_cohorts_split_between_sunday_and_monday() {
    // Sunday 23:59:59.999 belongs to the week of Monday 2026-01-05; Monday
    // 00:00 starts the week of 2026-01-12. The first day in range is a
    // Thursday (2026-01-01), whose ISO week starts Monday 2025-12-29.
    let r = run(
        vec![
            ev("thu", "signup", t("2026-01-01T08:00:00Z")),
            ev("mon", "signup", t("2026-01-05T00:00:00Z")),
            ev("sun", "signup", t("2026-01-11T23:59:59.999Z")),
            ev("next", "signup", t("2026-01-12T00:00:00Z")),
        ],
        &[
            ("start", "signup"),
            ("from", "2026-01-01"),
            ("to", "2026-01-13"),
            ("periods", "1"),
        ],
    );
    let cohorts: Vec<(&str, u64)> = r
        .cohorts
        .iter()
        .map(|c| (c.cohort.as_str(), c.size))
        .collect();
    assert_eq!(
        cohorts,
        vec![("2025-12-29", 1), ("2026-01-05", 2), ("2026-01-12", 1)]
    );
    assert_eq!(r.total.size, 4);
    assert_eq!(r.total.retained, vec![4, 0]);
}

#[test]
fn day_cohorts_skip_empty_days_and_list_oldest_first() {
    // Persons interned newest first, so the cohort order is not insertion order.
    let r = run(
        vec![
            ev("c", "signup", t("2026-01-09T05:00:00Z")),
            ev("a", "signup", t("2026-01-05T23:59:59.999Z")),
            ev("b", "signup", t("2026-01-06T00:00:00Z")),
            ev("a2", "signup", t("2026-01-05T00:00:00Z")),
        ],
        &[
            ("start", "signup"),
            ("period", "day"),
            ("periods", "1"),
            ("from", "2026-01-05"),
            ("to", "2026-01-10"),
        ],
    );
    let cohorts: Vec<(&str, u64)> = r
        .cohorts
        .iter()
        .map(|c| (c.cohort.as_str(), c.size))
        .collect();
    assert_eq!(
        cohorts,
        vec![("2026-01-05", 2), ("2026-01-06", 1), ("2026-01-09", 1)]
    );
}

#[test]
fn unbounded_counts_returns_beyond_the_last_period() {
    // periods = 2, weekly. u returns only in period 5 (beyond the table):
    // retained shows nothing, unbounded counts u in every column.
    // v returns in period 1 only. w never returns.
    let s0 = t("2026-01-05T10:00:00Z");
    let r = run(
        vec![
            ev("u", "signup", s0),
            ev("u", "buy", s0 + 5 * WEEK + 3 * H),
            ev("v", "signup", s0 + H),
            ev("v", "buy", s0 + H + WEEK),
            ev("w", "signup", s0 + 2 * H),
        ],
        &[
            ("start", "signup"),
            ("return", "buy"),
            ("periods", "2"),
            ("from", "2026-01-05"),
            ("to", "2026-01-12"),
        ],
    );
    let c = &r.cohorts[0];
    assert_eq!(c.size, 3);
    assert_eq!(c.retained, vec![3, 1, 0]);
    // >= 1: u, v; >= 2: u.
    assert_eq!(c.unbounded, vec![3, 2, 1]);
}

#[test]
fn zero_periods() {
    let s0 = t("2026-01-05T10:00:00Z");
    let r = run(
        vec![ev("u", "signup", s0), ev("u", "signup", s0 + 2 * WEEK)],
        &[
            ("start", "signup"),
            ("periods", "0"),
            ("from", "2026-01-05"),
            ("to", "2026-01-12"),
            ("as-of", "2026-01-05T10:00:00Z"),
        ],
    );
    assert_eq!(r.cohorts[0].retained, vec![1]);
    assert_eq!(r.cohorts[0].unbounded, vec![1]);
    // Period 0 ends at s0 + 7d, after as-of.
    assert_eq!(r.cohorts[0].incomplete_from, Some(0));
    assert_eq!(r.total.retained, vec![1]);
    assert_eq!(r.total.unbounded, vec![1]);
}

#[test]
fn incomplete_from_is_decided_by_the_cohorts_latest_member() {
    // Weekly cohort of 2026-01-05 with members at Monday 10:00 and
    // Wednesday 10:00 (the latest). Period k is over once
    // Wed 10:00 + (k + 1) * 7d <= as-of.
    let early = t("2026-01-05T10:00:00Z");
    let late = t("2026-01-07T10:00:00Z");
    let events = vec![
        ev("early", "signup", early),
        ev("late", "signup", late),
        ev("early", "signup", early + WEEK),
    ];
    let incomplete = |as_of: i64| {
        let as_of = format_rfc3339(as_of);
        let r = run(
            events.clone(),
            &[
                ("start", "signup"),
                ("periods", "2"),
                ("from", "2026-01-05"),
                ("to", "2026-01-12"),
                ("as-of", &as_of),
            ],
        );
        assert_eq!(r.as_of, as_of);
        r.cohorts[0].incomplete_from
    };
    // Before the latest member even started: everything is incomplete.
    assert_eq!(incomplete(early), Some(0));
    // The early member's period 0 is over, the late member's is not.
    assert_eq!(incomplete(early + WEEK), Some(0));
    assert_eq!(incomplete(late + WEEK - 1), Some(0));
    // Exactly at the end of period 0: it has elapsed.
    assert_eq!(incomplete(late + WEEK), Some(1));
    assert_eq!(incomplete(late + 2 * WEEK), Some(2));
    assert_eq!(incomplete(late + 3 * WEEK - 1), Some(2));
    // All of periods 0..=2 are over: null.
    assert_eq!(incomplete(late + 3 * WEEK), None);
    assert_eq!(incomplete(t("2027-01-01")), None);
}

#[test]
fn incomplete_from_is_per_cohort() {
    // Daily cohorts: 01-05 at 12:00, 01-06 at 12:00; as-of 01-07 12:00.
    // Cohort 01-05: elapsed 2 days -> periods 0, 1 over -> incomplete_from 2.
    // Cohort 01-06: elapsed 1 day -> incomplete_from 1.
    let r = run(
        vec![
            ev("a", "signup", t("2026-01-05T12:00:00Z")),
            ev("b", "signup", t("2026-01-06T12:00:00Z")),
        ],
        &[
            ("start", "signup"),
            ("period", "day"),
            ("periods", "3"),
            ("from", "2026-01-05"),
            ("to", "2026-01-07"),
            ("as-of", "2026-01-07T12:00:00Z"),
        ],
    );
    let inc: Vec<Option<u32>> = r.cohorts.iter().map(|c| c.incomplete_from).collect();
    assert_eq!(inc, vec![Some(2), Some(1)]);
}

#[test]
fn total_sums_the_cohorts() {
    // Two weekly cohorts.
    // 01-05: a (returns in 1 and 3), b (returns in 2)    periods = 3
    // 01-12: c (returns in 1), d (no return), e (returns in 7, beyond)
    let a = t("2026-01-05T01:00:00Z");
    let b = t("2026-01-06T01:00:00Z");
    let c = t("2026-01-12T01:00:00Z");
    let r = run(
        vec![
            ev("a", "s", a),
            ev("a", "r", a + WEEK),
            ev("a", "r", a + 3 * WEEK + 1),
            ev("b", "s", b),
            ev("b", "r", b + 2 * WEEK),
            ev("c", "s", c),
            ev("c", "r", c + WEEK + 5),
            ev("d", "s", c + H),
            ev("e", "s", c + 2 * H),
            ev("e", "r", c + 7 * WEEK),
        ],
        &[
            ("start", "s"),
            ("return", "r"),
            ("periods", "3"),
            ("from", "2026-01-05"),
            ("to", "2026-01-19"),
        ],
    );
    assert_eq!(r.cohorts[0].retained, vec![2, 1, 1, 1]);
    assert_eq!(r.cohorts[0].unbounded, vec![2, 2, 2, 1]);
    assert_eq!(r.cohorts[1].retained, vec![3, 1, 0, 0]);
    assert_eq!(r.cohorts[1].unbounded, vec![3, 2, 1, 1]);
    assert_eq!(r.total.size, 5);
    assert_eq!(r.total.retained, vec![5, 2, 1, 1]);
    assert_eq!(r.total.unbounded, vec![5, 4, 3, 2]);
}

#[test]
fn exact_json_shape() {
    let s0 = t("2026-01-06T10:00:00Z");
    let r = run(
        vec![ev("a", "signup", s0), ev("a", "signup", s0 + WEEK)],
        &[
            ("start", "signup"),
            ("periods", "2"),
            ("from", "2026-01-05"),
            ("to", "2026-01-12"),
            ("as-of", "2026-01-20T10:00:00.123Z"),
        ],
    );
    // as-of - s0 = 14d + 123 ms -> periods 0 and 1 over, 2 is not.
    let expected = json!({
        "period": "week",
        "as_of": "2026-01-20T10:00:00.123Z",
        "cohorts": [{
            "cohort": "2026-01-05",
            "size": 1,
            "retained": [1, 1, 0],
            "unbounded": [1, 1, 0],
            "incomplete_from": 2
        }],
        "total": {"size": 1, "retained": [1, 1, 0], "unbounded": [1, 1, 0],
                  "complete_size": [1, 1, 0], "complete_retained": [1, 1, 0],
                  "complete_unbounded": [1, 1, 0]}
    });
    assert_eq!(serde_json::to_value(&r).unwrap(), expected);
    // Round trip through the JSON form.
    let back: RetentionResult = serde_json::from_value(expected).unwrap();
    assert_eq!(back, r);

    // null incomplete_from, day period, date-only as-of echoed as RFC 3339.
    let r = run(
        vec![ev("a", "signup", s0)],
        &[
            ("start", "signup"),
            ("period", "day"),
            ("periods", "1"),
            ("from", "2026-01-05"),
            ("to", "2026-01-12"),
            ("as-of", "2026-02-01"),
        ],
    );
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({
            "period": "day",
            "as_of": "2026-02-01T00:00:00Z",
            "cohorts": [{
                "cohort": "2026-01-06",
                "size": 1,
                "retained": [1, 0],
                "unbounded": [1, 0],
                "incomplete_from": null
            }],
            "total": {"size": 1, "retained": [1, 0], "unbounded": [1, 0],
                      "complete_size": [1, 1], "complete_retained": [1, 0],
                      "complete_unbounded": [1, 0]}
        })
    );
}

#[test]
fn nobody_started() {
    let empty = json!({
        "period": "week",
        "as_of": "2026-02-01T00:00:00Z",
        "cohorts": [],
        "total": {"size": 0, "retained": [0, 0, 0], "unbounded": [0, 0, 0],
                  "complete_size": [0, 0, 0], "complete_retained": [0, 0, 0],
                  "complete_unbounded": [0, 0, 0]}
    });
    let pairs = [
        ("start", "signup"),
        ("periods", "2"),
        ("from", "2026-01-05"),
        ("to", "2026-01-12"),
        ("as-of", "2026-02-01"),
    ];
    // The start event was never stored at all.
    let r = run(vec![ev("a", "view", t("2026-01-06"))], &pairs);
    assert_eq!(serde_json::to_value(&r).unwrap(), empty);
    // It exists, but nobody's first one is in range.
    let r = run(vec![ev("a", "signup", t("2026-01-01"))], &pairs);
    assert_eq!(serde_json::to_value(&r).unwrap(), empty);
    assert!(r.render(Format::Table).contains("No one"));
    assert_eq!(r.render(Format::Csv).lines().count(), 1);
}

#[test]
fn table_and_csv() {
    // Cohort 01-05: a returns in week 1; as-of makes period 2 incomplete.
    let a = t("2026-01-05T10:00:00Z");
    let r = run(
        vec![
            ev("a", "signup", a),
            ev("a", "signup", a + WEEK),
            ev("b", "signup", a + H),
        ],
        &[
            ("start", "signup"),
            ("periods", "2"),
            ("from", "2026-01-05"),
            ("to", "2026-01-12"),
            // The latest member (b, Monday 11:00) is 7d 13h in: week 0 is over.
            ("as-of", "2026-01-13"),
        ],
    );
    assert_eq!(r.cohorts[0].incomplete_from, Some(1));
    let table = r.render(Format::Table);
    assert!(table.contains("2026-01-05"), "{table}");
    assert!(table.contains("100.0%"), "{table}");
    // Week 1 is incomplete: shown as a partial count, never as plain churn.
    assert!(table.contains("50.0%…"), "{table}");
    assert!(table.contains('…'), "{table}");
    assert!(table.ends_with('\n'));

    let csv = r.render(Format::Csv);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        vec![
            "cohort,size,incomplete_from,retained_0,retained_1,retained_2,unbounded_0,unbounded_1,unbounded_2",
            "2026-01-05,2,1,2,1,0,2,1,0",
            "total,2,,2,1,0,2,1,0",
        ]
    );
}

#[test]
fn complete_totals_count_only_cohorts_whose_period_is_over() {
    // Weekly, periods 3, as-of Monday 2026-01-26 00:00.
    // Cohort 01-05: a (s0 Mon 01-05 10:00) returns in week 1 and 2; b (s0
    //   Tue 01-06 10:00) returns in week 1. Latest s0 = 01-06 10:00:
    //   + 2w = 01-20 10:00 <= as-of, so periods 0 and 1 are over; + 3w =
    //   01-27 10:00 > as-of, so period 2 is not: incomplete_from 2.
    //   retained [2, 2, 1, 0], unbounded [2, 2, 1, 0].
    // Cohort 01-12: c (s0 01-12 10:00) returns in week 1 (01-19 11:00);
    //   + 2w = 01-26 10:00 > as-of → incomplete_from 1. retained [1, 1, 0, 0].
    // Cohort 01-19: d (s0 01-19 10:00), no return: + 1w = 01-26 10:00 >
    //   as-of → incomplete_from 0. retained [1, 0, 0, 0].
    //
    // complete_size:      k0: 01-05 + 01-12 = 3; k1: 01-05 = 2; k2, k3: 0.
    // complete_retained:  k0: 2 + 1 = 3; k1: 2; k2, k3: 0.
    // complete_unbounded: k0: 3; k1: 2 (a and b return in week 1 or later);
    //                     k2, k3: 0.
    // Plain totals: size 4, retained [4, 3, 1, 0] (c's week-1 return counts),
    // unbounded [4, 3, 1, 0].
    let a = t("2026-01-05T10:00:00Z");
    let b = t("2026-01-06T10:00:00Z");
    let c = t("2026-01-12T10:00:00Z");
    let d = t("2026-01-19T10:00:00Z");
    let r = run(
        vec![
            ev("a", "s", a),
            ev("a", "r", a + WEEK),
            ev("a", "r", a + 2 * WEEK + H),
            ev("b", "s", b),
            ev("b", "r", b + WEEK + H),
            ev("c", "s", c),
            ev("c", "r", c + WEEK + H),
            ev("d", "s", d),
        ],
        &[
            ("start", "s"),
            ("return", "r"),
            ("periods", "3"),
            ("from", "2026-01-05"),
            ("to", "2026-01-26"),
            ("as-of", "2026-01-26"),
        ],
    );
    let inc: Vec<Option<u32>> = r.cohorts.iter().map(|c| c.incomplete_from).collect();
    assert_eq!(inc, vec![Some(2), Some(1), Some(0)]);
    assert_eq!(r.cohorts[0].retained, vec![2, 2, 1, 0]);
    assert_eq!(r.total.size, 4);
    assert_eq!(r.total.retained, vec![4, 3, 1, 0]);
    assert_eq!(r.total.unbounded, vec![4, 3, 1, 0]);
    assert_eq!(r.total.complete_size, vec![3, 2, 0, 0]);
    assert_eq!(r.total.complete_retained, vec![3, 2, 0, 0]);
    assert_eq!(r.total.complete_unbounded, vec![3, 2, 0, 0]);

    // The table's total row is over complete cohorts only: week 1 is 2 of 2
    // = 100% (not 3 of 4 = 75%), week 0 is 3 of 3, and weeks 2 and 3,
    // which no cohort has finished, show `…`.
    let table = r.render(Format::Table);
    let total = table.lines().find(|l| l.starts_with("total ")).unwrap();
    let cells: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(
        cells,
        ["total", "4", "100.0%", "100.0%", "…", "…"],
        "{table}"
    );
    assert!(!table.contains("75.0%"), "{table}");
    assert!(
        table.contains("only the cohorts for which it is over"),
        "{table}"
    );

    // With as-of far away every cohort is complete and complete_ = plain.
    let r = run(
        vec![ev("a", "s", a), ev("a", "r", a + WEEK), ev("d", "s", d)],
        &[
            ("start", "s"),
            ("return", "r"),
            ("periods", "1"),
            ("from", "2026-01-05"),
            ("to", "2026-01-26"),
            ("as-of", "2027-01-01"),
        ],
    );
    assert_eq!(r.total.complete_size, vec![2, 2]);
    assert_eq!(r.total.complete_retained, r.total.retained);
    assert_eq!(r.total.complete_unbounded, r.total.unbounded);
}

/// Runs `f` on a rayon pool of `threads` threads.
fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn parallel_and_sequential_agree_on_many_rows() {
    // Enough rows for the parallel path; a small LCG keeps it deterministic.
    let mut x: u64 = 42;
    let mut next = move |m: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % m
    };
    let base = t("2026-01-01");
    let mut events = Vec::new();
    for _ in 0..300_000 {
        let person = format!("p{}", next(20_000));
        let name = ["signup", "buy", "view"][next(3) as usize];
        events.push(ev(&person, name, base + next(120) as i64 * 6 * H));
    }
    let src = MemSource::new(events);
    for ret in ["signup", "buy", "any"] {
        let p = params(&[
            ("start", "signup"),
            ("return", ret),
            ("period", "day"),
            ("periods", "20"),
            ("from", "2026-01-03"),
            ("to", "2026-01-20"),
            ("as-of", "2026-01-25"),
        ]);
        let one = on_threads(1, || retention::run(&src, &p).unwrap());
        let four = on_threads(4, || retention::run(&src, &p).unwrap());
        assert_eq!(one, four);
        assert!(one.total.size > 0);
    }
}

// ---------------------------------------------------------------------------
// Property test against a brute-force reference.

/// The naive model: SPEC §4 read literally, looping over every event for
/// every person, cohort and period.
fn reference(events: &[MemEvent], p: &RetentionParams) -> serde_json::Value {
    let len = match p.period {
        Period::Day => DAY_MS,
        Period::Week => WEEK,
    };
    let is_return = |e: &MemEvent| match &p.return_event {
        ReturnEvent::Any => true,
        ReturnEvent::Event(n) => e.name == *n,
    };
    // First ever start per person.
    let mut first: BTreeMap<&str, i64> = BTreeMap::new();
    for e in events.iter().filter(|e| e.name == p.start) {
        let f = first.entry(&e.person).or_insert(e.ts);
        *f = (*f).min(e.ts);
    }
    // Cohort date -> members.
    let mut cohorts: BTreeMap<chrono::NaiveDate, Vec<(&str, i64)>> = BTreeMap::new();
    for (&person, &s0) in &first {
        if s0 < p.from || s0 >= p.to {
            continue;
        }
        let date = ms_to_date(s0);
        let key = match p.period {
            Period::Day => date,
            Period::Week => date - Duration::days(i64::from(date.weekday().num_days_from_monday())),
        };
        cohorts.entry(key).or_default().push((person, s0));
    }
    let n = p.periods as usize + 1;
    let mut total_size = 0;
    let mut total_retained = vec![0u64; n];
    let mut total_unbounded = vec![0u64; n];
    let mut complete_size = vec![0u64; n];
    let mut complete_retained = vec![0u64; n];
    let mut complete_unbounded = vec![0u64; n];
    let mut out = Vec::new();
    for (date, members) in &cohorts {
        let size = members.len() as u64;
        let mut retained = vec![0u64; n];
        let mut unbounded = vec![0u64; n];
        for k in 0..n {
            for &(person, s0) in members {
                let period_of = |e: &&MemEvent| (e.ts - s0) / len;
                let mine = || {
                    events
                        .iter()
                        .filter(|e| e.person == person && is_return(e) && e.ts >= s0)
                };
                if k == 0 || mine().any(|e| period_of(&e) == k as i64) {
                    retained[k] += 1;
                }
                if k == 0 || mine().any(|e| period_of(&e) >= k as i64) {
                    unbounded[k] += 1;
                }
            }
        }
        let latest = members.iter().map(|m| m.1).max().unwrap();
        let incomplete = (0..n).find(|&k| latest + (k as i64 + 1) * len > p.as_of);
        total_size += size;
        for k in 0..n {
            total_retained[k] += retained[k];
            total_unbounded[k] += unbounded[k];
            // Period k has fully elapsed for this cohort.
            if latest + (k as i64 + 1) * len <= p.as_of {
                complete_size[k] += size;
                complete_retained[k] += retained[k];
                complete_unbounded[k] += unbounded[k];
            }
        }
        out.push(json!({
            "cohort": date.to_string(),
            "size": size,
            "retained": retained,
            "unbounded": unbounded,
            "incomplete_from": incomplete,
        }));
    }
    json!({
        "period": match p.period { Period::Day => "day", Period::Week => "week" },
        "as_of": format_rfc3339(p.as_of),
        "cohorts": out,
        "total": {"size": total_size, "retained": total_retained, "unbounded": total_unbounded,
                  "complete_size": complete_size, "complete_retained": complete_retained,
                  "complete_unbounded": complete_unbounded},
    })
}

/// Events on a 6-hour grid (so many land exactly on period boundaries),
/// nudged by -1, 0 or +1 ms, over ~7 weeks from Thursday 2026-01-01.
fn arb_events() -> impl Strategy<Value = Vec<MemEvent>> {
    let base = t("2026-01-01");
    prop::collection::vec((0..6usize, 0..4usize, 0..200i64, -1..=1i64), 0..40).prop_map(move |v| {
        v.into_iter()
            .map(|(person, name, slot, nudge)| {
                let name = ["s", "s", "r", "x"][name];
                ev(&format!("p{person}"), name, base + slot * 6 * H + nudge)
            })
            .collect()
    })
}

fn arb_params() -> impl Strategy<Value = RetentionParams> {
    let base = t("2026-01-01");
    (
        0..4usize,
        any::<bool>(),
        0..6u32,
        0..40i64,
        1..30i64,
        0..4i64,
        0..80i64,
    )
        .prop_map(move |(ret, day, periods, from, span, hour, as_of)| {
            let from = base + from * DAY_MS + hour * 6 * H;
            RetentionParams {
                start: "s".into(),
                return_event: match ret {
                    0 => ReturnEvent::Event("s".into()),
                    1 => ReturnEvent::Event("r".into()),
                    2 => ReturnEvent::Any,
                    _ => ReturnEvent::Event("never".into()),
                },
                period: if day { Period::Day } else { Period::Week },
                periods,
                from,
                to: from + span * DAY_MS,
                as_of: base + as_of * DAY_MS + hour * 6 * H - 1,
                tz: tally_query::Zone::utc(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn matches_the_naive_reference(events in arb_events(), p in arb_params()) {
        let got = retention::run(&MemSource::new(events.clone()), &p).unwrap();
        prop_assert_eq!(serde_json::to_value(&got).unwrap(), reference(&events, &p));
    }
}
