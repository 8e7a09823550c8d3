//! Active users (SPEC §4): hand-worked cases, and a property test against a
//! brute-force reference.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::json;
use tally_event::time::{DAY_MS, ms_to_date, parse_date_or_rfc3339};
use tally_query::active::{self, ActiveParams, ActiveResult};
use tally_query::{Format, MemEvent, MemSource, RawParams, Report};

fn t(s: &str) -> i64 {
    parse_date_or_rfc3339(s).unwrap()
}

fn ev(person: &str, ts: &str) -> MemEvent {
    MemEvent::new(person, "e", t(ts))
}

fn params(from: &str, to: &str) -> ActiveParams {
    let mut raw = RawParams::new([("from", from), ("to", to)]);
    let p = ActiveParams::from_raw(&mut raw, t("2030-01-01")).unwrap();
    raw.finish().unwrap();
    p
}

fn run(events: Vec<MemEvent>, from: &str, to: &str) -> ActiveResult {
    active::run(&MemSource::new(events), &params(from, to)).unwrap()
}

/// `(day, dau, wau, mau)` per day.
fn rows(r: &ActiveResult) -> Vec<(&str, u64, u64, u64)> {
    r.days
        .iter()
        .map(|d| (d.day.as_str(), d.dau, d.wau, d.mau))
        .collect()
}

#[test]
fn params_and_defaults() {
    let mut raw = RawParams::new(Vec::<(&str, &str)>::new());
    let p = ActiveParams::from_raw(&mut raw, t("2026-03-01T15:00:00Z")).unwrap();
    assert_eq!((p.from, p.to), (t("2026-01-31"), t("2026-03-02")));
    let mut raw = RawParams::new([("from", "2026-01-01"), ("to", "2026-01-01")]);
    assert!(ActiveParams::from_raw(&mut raw, 0).is_err());
}

/// Regression (issue 16, 6): the answer has one entry per day, so a range
/// of millennia built hundreds of megabytes. At most 3,660 days are listed.
#[test]
fn more_than_3660_days_is_a_bad_parameter() {
    assert_eq!(active::MAX_DAYS, 3660);
    let from_raw = |from: &str, to: &str| {
        ActiveParams::from_raw(&mut RawParams::new([("from", from), ("to", to)]), 0)
    };
    // 2016-01-01 + 3660 days = 2026-01-08; a `from` after midnight does not
    // list its own day.
    assert!(from_raw("2016-01-01", "2026-01-08").is_ok());
    assert!(from_raw("2016-01-01T00:00:01Z", "2026-01-09").is_ok());
    for (from, to) in [
        ("2016-01-01", "2026-01-09"),
        ("2016-01-01", "2026-01-08T00:00:01Z"),
        ("2000-01-01", "9999-12-31"),
    ] {
        let err = from_raw(from, to).unwrap_err().to_string();
        assert!(err.starts_with("--to: ") && err.contains("3660"), "{err}");
    }
}

#[test]
fn windows_reach_back_before_from() {
    let r = run(
        vec![
            // a: twice on 01-10 (counted once).
            ev("a", "2026-01-10T08:00:00Z"),
            ev("a", "2026-01-10T20:00:00Z"),
            // b: 01-04 = 01-10 minus 6 days: in 01-10's week, not 01-11's.
            ev("b", "2026-01-04T23:59:59.999Z"),
            // c: 2025-12-12 = 01-10 minus 29 days: in 01-10's month only.
            ev("c", "2025-12-12T00:00:00Z"),
            // d: 2025-12-11, 30 days before 01-10: in no window.
            ev("d", "2025-12-11T23:59:59.999Z"),
            // e: the last millisecond of 01-12.
            ev("e", "2026-01-12T23:59:59.999Z"),
            // f: 01-13, the day of --to: not listed, and too late for 01-12.
            ev("f", "2026-01-13T00:00:00Z"),
        ],
        "2026-01-10",
        "2026-01-13",
    );
    assert_eq!(
        rows(&r),
        vec![
            // dau {a}; wau {a, b}; mau {a, b, c}
            ("2026-01-10", 1, 2, 3),
            // dau {}; wau (01-05..=01-11) {a}; mau (12-13..=01-11) {a, b}
            ("2026-01-11", 0, 1, 2),
            // dau {e}; wau {a, e}; mau {a, b, e}
            ("2026-01-12", 1, 2, 3),
        ]
    );
    let stickiness: Vec<f64> = r.days.iter().map(|d| d.stickiness).collect();
    assert_eq!(stickiness, vec![1.0 / 3.0, 0.0, 1.0 / 3.0]);
}

#[test]
fn a_person_active_on_several_days_counts_once_per_window() {
    // p is active every day from 01-01 to 01-10; q on 01-03 and 01-09.
    let mut events: Vec<MemEvent> = (1..=10)
        .map(|d| ev("p", &format!("2026-01-{d:02}T12:00:00Z")))
        .collect();
    events.push(ev("q", "2026-01-03T00:00:00Z"));
    events.push(ev("q", "2026-01-09T00:00:00Z"));
    let r = run(events, "2026-01-08", "2026-01-12");
    assert_eq!(
        rows(&r),
        vec![
            ("2026-01-08", 1, 2, 2),
            ("2026-01-09", 2, 2, 2),
            // 01-10's week is 01-04..=01-10: q's 01-09 keeps them in.
            ("2026-01-10", 1, 2, 2),
            // 01-11: nobody that day; week 01-05..=01-11 still has both.
            ("2026-01-11", 0, 2, 2),
        ]
    );
}

#[test]
fn stickiness_is_zero_without_anyone() {
    let r = run(vec![ev("a", "2026-03-01")], "2026-01-01", "2026-01-03");
    assert_eq!(
        rows(&r),
        vec![("2026-01-01", 0, 0, 0), ("2026-01-02", 0, 0, 0)]
    );
    assert!(r.days.iter().all(|d| d.stickiness == 0.0));
}

#[test]
fn days_are_the_midnights_in_range() {
    let events = vec![
        ev("early", "2026-01-10T00:00:00Z"),
        ev("late", "2026-01-12T18:00:00Z"),
    ];
    // A from just after midnight: the first day is the next midnight.
    let r = run(
        events.clone(),
        "2026-01-10T00:00:00.001Z",
        "2026-01-12T12:00:00Z",
    );
    // 01-12's midnight is before --to, so 01-12 is listed, whole: the event
    // at 18:00 (after --to) is "an event on day d".
    assert_eq!(
        rows(&r),
        vec![("2026-01-11", 0, 1, 1), ("2026-01-12", 1, 2, 2)]
    );
    // From exactly midnight: that day is listed.
    let r = run(events.clone(), "2026-01-10", "2026-01-11");
    assert_eq!(rows(&r), vec![("2026-01-10", 1, 1, 1)]);
    // --to exactly at a midnight excludes that day.
    let r = run(events.clone(), "2026-01-10T06:00:00Z", "2026-01-12");
    assert_eq!(rows(&r), vec![("2026-01-11", 0, 1, 1)]);
    // No midnight in range: no days.
    let r = run(events, "2026-01-10T01:00:00Z", "2026-01-10T23:00:00Z");
    assert_eq!(r.days, vec![]);
    assert_eq!(serde_json::to_value(&r).unwrap(), json!({"days": []}));
}

#[test]
fn exact_json_shape() {
    let r = run(
        vec![
            ev("a", "2026-01-09T10:00:00Z"),
            ev("b", "2026-01-10T10:00:00Z"),
        ],
        "2026-01-10",
        "2026-01-11",
    );
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v,
        json!({"days": [{"day": "2026-01-10", "dau": 1, "wau": 2, "mau": 2, "stickiness": 0.5}]})
    );
    let back: ActiveResult = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

#[test]
fn table_and_csv() {
    let r = run(
        vec![
            ev("a", "2026-01-09T10:00:00Z"),
            ev("b", "2026-01-10T10:00:00Z"),
        ],
        "2026-01-09",
        "2026-01-11",
    );
    let table = r.render(Format::Table);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("day"), "{table}");
    assert!(lines[2].starts_with("2026-01-10"), "{table}");
    assert!(lines[2].contains("50.0%"), "{table}");
    // A bar per row, DAU relative to the busiest day (both have 1: full).
    assert!(lines[1].ends_with(&"█".repeat(24)), "{table}");
    assert!(lines[2].ends_with(&"█".repeat(24)), "{table}");
    // Aligned: every row as wide as the others.
    assert_eq!(lines[1].chars().count(), lines[2].chars().count());
    assert!(!table.contains('*'), "{table}");

    // Today is marked as partial, with a note.
    let mut r = r;
    r.mark_today(t("2026-01-10T15:00:00Z"), &tally_query::Zone::utc());
    let table = r.render(Format::Table);
    let line = table.lines().find(|l| l.starts_with("2026-01-10")).unwrap();
    assert!(line.starts_with("2026-01-10 *"), "{table}");
    assert!(!table.contains("2026-01-09 *"), "{table}");
    assert!(table.contains("today: the day is not over yet"), "{table}");
    // JSON is unchanged by the mark.
    assert!(!r.render(Format::Json).contains("today"));

    assert_eq!(
        r.render(Format::Csv),
        "day,dau,wau,mau,stickiness\n2026-01-09,1,1,1,1\n2026-01-10,1,2,2,0.5\n"
    );
}

#[test]
fn table_bars_are_relative_to_the_busiest_day_with_thousands_separators() {
    // 2 persons on 01-09, 1 on 01-10: bars of 24 and 12 cells.
    let r = run(
        vec![
            ev("a", "2026-01-09T10:00:00Z"),
            ev("b", "2026-01-09T11:00:00Z"),
            ev("b", "2026-01-10T10:00:00Z"),
        ],
        "2026-01-09",
        "2026-01-11",
    );
    let table = r.render(Format::Table);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[1].ends_with(&"█".repeat(24)), "{table}");
    assert!(
        lines[2].ends_with(&format!("{}{}", "█".repeat(12), "░".repeat(12))),
        "{table}"
    );
    // Thousands separators: a synthetic 1,234 persons on one day.
    let many: Vec<MemEvent> = (0..1234)
        .map(|i| ev(&format!("p{i}"), "2026-01-09T10:00:00Z"))
        .collect();
    let table = run(many, "2026-01-09", "2026-01-10").render(Format::Table);
    assert!(table.contains("1,234"), "{table}");
}

fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn parallel_and_sequential_agree_on_many_rows() {
    let mut x: u64 = 99;
    let mut next = move |m: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % m
    };
    let base = t("2025-12-01");
    let events: Vec<MemEvent> = (0..300_000)
        .map(|_| {
            MemEvent::new(
                &format!("p{}", next(30_000)),
                "e",
                base + next(70 * DAY_MS as u64) as i64,
            )
        })
        .collect();
    let src = MemSource::new(events);
    let p = params("2026-01-03T05:00:00Z", "2026-02-01");
    let one = on_threads(1, || active::run(&src, &p).unwrap());
    let four = on_threads(4, || active::run(&src, &p).unwrap());
    assert_eq!(one, four);
    assert_eq!(one.days.len(), 28);
    assert!(one.days.iter().all(|d| d.dau <= d.wau && d.wau <= d.mau));
}

// ---------------------------------------------------------------------------
// Property test against a brute-force reference.

fn reference(events: &[MemEvent], p: &ActiveParams) -> serde_json::Value {
    let distinct = |lo: i64, hi: i64| {
        events
            .iter()
            .filter(|e| lo <= e.ts && e.ts < hi)
            .map(|e| e.person.as_str())
            .collect::<BTreeSet<_>>()
            .len() as u64
    };
    let mut days = Vec::new();
    // Every midnight in [from, to), stepping a day at a time from the first
    // one at or after `from` (found by stepping back from the next one).
    let mut midnight = (p.from.div_euclid(DAY_MS) + 1) * DAY_MS;
    if midnight - DAY_MS == p.from {
        midnight = p.from;
    }
    while midnight < p.to {
        let next = midnight + DAY_MS;
        let dau = distinct(midnight, next);
        let wau = distinct(next - 7 * DAY_MS, next);
        let mau = distinct(next - 30 * DAY_MS, next);
        let stickiness = if mau == 0 {
            0.0
        } else {
            dau as f64 / mau as f64
        };
        days.push(json!({
            "day": ms_to_date(midnight).to_string(),
            "dau": dau, "wau": wau, "mau": mau, "stickiness": stickiness,
        }));
        midnight = next;
    }
    json!({ "days": days })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn matches_the_naive_reference(
        raw in prop::collection::vec((0..6usize, 0..60i64, 0..4i64, -1..=1i64), 0..40),
        from_h in 0..(70 * 24i64),
        span_h in 1..(20 * 24i64),
        odd in any::<bool>(),
    ) {
        let base = t("2025-12-01");
        const H: i64 = 3_600_000;
        // Events on a 6-hour grid nudged by a millisecond, over 60 days.
        let events: Vec<MemEvent> = raw
            .into_iter()
            .map(|(person, day, q, nudge)| {
                MemEvent::new(&format!("p{person}"), "e", base + day * DAY_MS + q * 6 * H + nudge)
            })
            .collect();
        // Ranges on an hourly grid, sometimes a millisecond off.
        let from = base + from_h * H + i64::from(odd);
        let p = ActiveParams {
            from,
            to: from + span_h * H,
            tz: tally_query::Zone::utc(),
        };
        let got = active::run(&MemSource::new(events.clone()), &p).unwrap();
        prop_assert_eq!(serde_json::to_value(&got).unwrap(), reference(&events, &p));
    }
}
