//! `--tz` (SPEC §3): dates are local midnights, calendar buckets are local
//! days and ISO weeks (a DST day is 23 or 25 hours), rolling durations stay
//! elapsed time. Hand-worked around real tzdb transitions:
//!
//! - Europe/Berlin: 2026-03-29 01:00 UTC spring forward (CET → CEST, the day
//!   is 23 h: 2026-03-28T23:00Z .. 2026-03-29T22:00Z); 2026-10-25 01:00 UTC
//!   fall back (the day is 25 h: 2026-10-24T22:00Z .. 2026-10-25T23:00Z).
//! - America/New_York: 2026-03-08 07:00 UTC spring forward (05:00Z ..
//!   2026-03-09T04:00Z, 23 h); 2026-11-01 06:00 UTC fall back (04:00Z ..
//!   2026-11-02T05:00Z, 25 h).
//! - America/Santiago: tzdb `Rule Chile 2023 max - Sep Sun>=2 4:00u 1:00 -`
//!   puts the 2026 change at 2026-09-06 04:00 UTC, i.e. local midnight
//!   (-04) jumps to 01:00 (-03): 2026-09-06 has no midnight and starts at
//!   the end of the gap, 01:00 -03 = 04:00 UTC.

use serde_json::json;
use tally_event::time::parse_date_or_rfc3339;
use tally_query::activation::{self, ActivationParams};
use tally_query::active::{self, ActiveParams};
use tally_query::retention::{self, RetentionParams};
use tally_query::{MemEvent, MemSource, QueryError, RawParams};

fn t(s: &str) -> i64 {
    parse_date_or_rfc3339(s).unwrap()
}

fn raw(pairs: &[(&str, &str)]) -> RawParams {
    RawParams::new(pairs.iter().map(|&(k, v)| (k, v.to_string())))
}

fn range(pairs: &[(&str, &str)], now: &str) -> (i64, i64) {
    let mut r = raw(pairs);
    let range = r.range(t(now)).unwrap();
    r.finish().unwrap();
    range
}

#[test]
fn dates_are_local_midnights() {
    assert_eq!(
        range(
            &[
                ("from", "2026-03-29"),
                ("to", "2026-03-30"),
                ("tz", "Europe/Berlin")
            ],
            "2030-01-01"
        ),
        (t("2026-03-28T23:00:00Z"), t("2026-03-29T22:00:00Z"))
    );
    // A 25-hour day in New York.
    assert_eq!(
        range(
            &[
                ("from", "2026-11-01"),
                ("to", "2026-11-02"),
                ("tz", "America/New_York")
            ],
            "2030-01-01"
        ),
        (t("2026-11-01T04:00:00Z"), t("2026-11-02T05:00:00Z"))
    );
    // RFC 3339 times are instants, whatever the zone.
    assert_eq!(
        range(
            &[
                ("from", "2026-03-29T00:00:00Z"),
                ("to", "2026-03-30T00:00:00+02:00"),
                ("tz", "Europe/Berlin")
            ],
            "2030-01-01"
        ),
        (t("2026-03-29T00:00:00Z"), t("2026-03-29T22:00:00Z"))
    );
    // The day without a midnight starts at the end of the gap.
    assert_eq!(
        range(
            &[
                ("from", "2026-09-06"),
                ("to", "2026-09-07"),
                ("tz", "America/Santiago")
            ],
            "2030-01-01"
        ),
        (t("2026-09-06T04:00:00Z"), t("2026-09-07T03:00:00Z"))
    );
    // Default UTC, and `UTC` spelled out.
    assert_eq!(
        range(
            &[("from", "2026-03-29"), ("to", "2026-03-30")],
            "2030-01-01"
        ),
        (t("2026-03-29"), t("2026-03-30"))
    );
    assert_eq!(
        range(
            &[("from", "2026-03-29"), ("to", "2026-03-30"), ("tz", "UTC")],
            "2030-01-01"
        ),
        (t("2026-03-29"), t("2026-03-30"))
    );
}

#[test]
fn last_and_the_default_range_are_local_days() {
    // 2026-03-30T21:30Z is 23:30 CEST on the 30th: today is the 30th.
    assert_eq!(
        range(
            &[("last", "2d"), ("tz", "Europe/Berlin")],
            "2026-03-30T21:30:00Z"
        ),
        (t("2026-03-28T23:00:00Z"), t("2026-03-30T22:00:00Z"))
    );
    // 22:30Z is already the 31st in Berlin.
    assert_eq!(
        range(
            &[("last", "1d"), ("tz", "Europe/Berlin")],
            "2026-03-30T22:30:00Z"
        ),
        (t("2026-03-30T22:00:00Z"), t("2026-03-31T22:00:00Z"))
    );
    // No range given: 30 local days up to the local midnight after today.
    assert_eq!(
        range(&[("tz", "Europe/Berlin")], "2026-04-10T12:00:00Z"),
        (t("2026-03-11T23:00:00Z"), t("2026-04-10T22:00:00Z"))
    );
}

#[test]
fn unknown_zone_is_a_bad_parameter_naming_it() {
    let mut r = raw(&[("from", "2026-01-01"), ("tz", "Europe/Atlantis")]);
    let err = r.range(t("2030-01-01")).unwrap_err();
    assert!(matches!(err, QueryError::BadParam { ref param, .. } if param == "tz"));
    assert!(err.to_string().contains("Europe/Atlantis"), "{err}");
    // Even where no date needs it.
    let mut r = raw(&[("from", "2026-01-01T00:00:00Z"), ("tz", "")]);
    assert!(r.range(t("2030-01-01")).is_err());
}

fn active_days(events: &[(&str, &str)], from: &str, to: &str, tz: &str) -> serde_json::Value {
    let src = MemSource::new(events.iter().map(|&(p, ts)| MemEvent::new(p, "e", t(ts))));
    let mut r = raw(&[("from", from), ("to", to), ("tz", tz)]);
    let p = ActiveParams::from_raw(&mut r, t("2030-01-01")).unwrap();
    r.finish().unwrap();
    let res = active::run(&src, &p).unwrap();
    json!(
        res.days
            .iter()
            .map(|d| json!([d.day, d.dau, d.wau, d.mau]))
            .collect::<Vec<_>>()
    )
}

#[test]
fn active_days_are_local_days_of_23_and_25_hours() {
    // Berlin, spring forward: the 29th is 23:00Z (28th) .. 22:00Z (29th).
    let events = [
        ("a", "2026-03-28T22:59:59Z"), // 23:59:59 CET on the 28th
        ("b", "2026-03-28T23:00:00Z"), // 00:00 CET on the 29th
        ("c", "2026-03-29T21:59:59Z"), // 23:59:59 CEST on the 29th
        ("d", "2026-03-29T22:00:00Z"), // 00:00 CEST on the 30th
    ];
    assert_eq!(
        active_days(&events, "2026-03-28", "2026-03-31", "Europe/Berlin"),
        json!([
            ["2026-03-28", 1, 1, 1],
            ["2026-03-29", 2, 3, 3],
            ["2026-03-30", 1, 4, 4]
        ])
    );
    // The same events in UTC fall on other days.
    assert_eq!(
        active_days(&events, "2026-03-28", "2026-03-31", "UTC"),
        json!([
            ["2026-03-28", 2, 2, 2],
            ["2026-03-29", 2, 4, 4],
            ["2026-03-30", 0, 4, 4]
        ])
    );
    // New York, fall back: the 1st of November is 25 hours, 04:00Z .. 05:00Z
    // next day; wau counts the local days d-6 ..= d.
    let events = [
        ("a", "2026-10-26T03:59:59Z"), // 23:59:59 EDT on Oct 25
        ("b", "2026-10-26T04:00:00Z"), // 00:00 EDT on Oct 26
        ("c", "2026-11-01T04:00:00Z"), // 00:00 EDT on Nov 1
        ("d", "2026-11-02T04:30:00Z"), // 23:30 EST on Nov 1
        ("e", "2026-11-02T05:00:00Z"), // 00:00 EST on Nov 2
    ];
    assert_eq!(
        active_days(&events, "2026-11-01", "2026-11-03", "America/New_York"),
        json!([["2026-11-01", 2, 3, 4], ["2026-11-02", 1, 3, 5]])
    );
    // A range starting mid-day lists the days whose first instant is in it.
    assert_eq!(
        active_days(
            &events,
            "2026-11-01T04:00:01Z",
            "2026-11-02T05:00:01Z",
            "America/New_York"
        ),
        json!([["2026-11-02", 1, 3, 5]])
    );
    // Santiago: the 6th of September starts at 04:00Z (no midnight).
    let events = [
        ("a", "2026-09-06T03:59:59Z"), // 23:59:59 -04 on the 5th
        ("b", "2026-09-06T04:00:00Z"), // 01:00 -03 on the 6th
    ];
    assert_eq!(
        active_days(&events, "2026-09-05", "2026-09-07", "America/Santiago"),
        json!([["2026-09-05", 1, 1, 1], ["2026-09-06", 1, 2, 2]])
    );
}

#[test]
fn retention_cohorts_are_local_days_and_weeks_with_elapsed_periods() {
    let events = vec![
        // 23:30 EDT on Sunday 2026-03-08 (the 23-hour day).
        MemEvent::new("a", "s", t("2026-03-09T03:30:00Z")),
        // 00:30 EDT on Monday 2026-03-09.
        MemEvent::new("b", "s", t("2026-03-09T04:30:00Z")),
        // a returns 24 h later (period 1 is elapsed time, not a local day).
        MemEvent::new("a", "s", t("2026-03-10T03:30:00Z")),
        // b returns 23 h 59 m later: still period 0.
        MemEvent::new("b", "s", t("2026-03-10T04:29:00Z")),
    ];
    let src = MemSource::new(events);
    let run = |period: &str, tz: &str| {
        let mut r = raw(&[
            ("start", "s"),
            ("period", period),
            ("periods", "1"),
            ("from", "2026-03-01"),
            ("to", "2026-03-20"),
            ("as-of", "2026-04-01"),
            ("tz", tz),
        ]);
        let p = RetentionParams::from_raw(&mut r, t("2030-01-01")).unwrap();
        r.finish().unwrap();
        let res = retention::run(&src, &p).unwrap();
        json!(
            res.cohorts
                .iter()
                .map(|c| json!([c.cohort, c.size, c.retained]))
                .collect::<Vec<_>>()
        )
    };
    assert_eq!(
        run("day", "America/New_York"),
        json!([["2026-03-08", 1, [1, 1]], ["2026-03-09", 1, [1, 0]]])
    );
    // ISO weeks: Sunday the 8th belongs to the week of Monday the 2nd.
    assert_eq!(
        run("week", "America/New_York"),
        json!([["2026-03-02", 1, [1, 0]], ["2026-03-09", 1, [1, 0]]])
    );
    // In UTC both start on Monday the 9th.
    assert_eq!(run("day", "UTC"), json!([["2026-03-09", 2, [2, 1]]]));
}

#[test]
fn activation_weeks_are_local_iso_weeks_and_mature_at_the_local_week_end() {
    let events = vec![
        // Sunday 2026-03-29 23:30 CEST: the week of Monday 2026-03-23.
        MemEvent::new("a", "signup", t("2026-03-29T21:30:00Z")),
        MemEvent::new("a", "use", t("2026-03-30T21:30:00Z")),
        // Monday 2026-03-30 00:30 CEST: the week of 2026-03-30.
        MemEvent::new("b", "signup", t("2026-03-29T22:30:00Z")),
    ];
    let src = MemSource::new(events);
    let run = |as_of: &str, tz: &str| {
        let mut r = raw(&[
            ("start", "signup"),
            ("event", "use"),
            ("within", "1d"),
            ("from", "2026-03-01"),
            ("to", "2026-04-30"),
            ("as-of", as_of),
            ("tz", tz),
        ]);
        let p = ActivationParams::from_raw(&mut r, t("2030-01-01")).unwrap();
        r.finish().unwrap();
        let res = activation::run(&src, &p).unwrap();
        json!(
            res.by_week
                .iter()
                .map(|w| json!([w.cohort, w.cohort_size, w.activated, w.mature]))
                .collect::<Vec<_>>()
        )
    };
    // The week of the 23rd (167 hours: it holds the spring-forward day)
    // ends at 2026-03-29T22:00Z, so it is mature 24 h later.
    assert_eq!(
        run("2026-03-30T22:00:00Z", "Europe/Berlin"),
        json!([["2026-03-23", 1, 1, true], ["2026-03-30", 1, 0, false]])
    );
    assert_eq!(
        run("2026-03-30T21:59:59.999Z", "Europe/Berlin"),
        json!([["2026-03-23", 1, 1, false], ["2026-03-30", 1, 0, false]])
    );
    // `--as-of` as a date is a local midnight too: 2026-03-31 in Berlin is
    // 2026-03-30T22:00Z.
    assert_eq!(
        run("2026-03-31", "Europe/Berlin"),
        json!([["2026-03-23", 1, 1, true], ["2026-03-30", 1, 0, false]])
    );
    // In UTC both signed up in the week of the 23rd.
    assert_eq!(
        run("2026-04-30", "UTC"),
        json!([["2026-03-23", 2, 1, true]])
    );
}
