//! Trend (SPEC §4): hand-worked cases for each measure and interval, and a
//! property test against a naive reference built from the SPEC text.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{Value, json};
use tally_event::time::parse_date_or_rfc3339;
use tally_query::trend::{self, TrendParams};
use tally_query::{Format, MemEvent, MemSource, QueryError, RawParams, Report};

fn t(s: &str) -> i64 {
    parse_date_or_rfc3339(s).unwrap()
}

fn ev(person: &str, name: &str, ts: &str) -> MemEvent {
    MemEvent::new(person, name, t(ts))
}

fn paid(person: &str, ts: &str, amount: f64) -> MemEvent {
    MemEvent {
        revenue: Some(amount),
        ..ev(person, "buy", ts)
    }
}

fn params(pairs: &[(&str, &str)]) -> Result<TrendParams, QueryError> {
    let mut raw = RawParams::new(pairs.iter().map(|&(k, v)| (k, v.to_string())));
    let p = TrendParams::from_raw(&mut raw, t("2030-01-01"))?;
    raw.finish()?;
    Ok(p)
}

fn run(events: &[MemEvent], pairs: &[(&str, &str)]) -> Value {
    let r = trend::run(&MemSource::new(events.to_vec()), &params(pairs).unwrap()).unwrap();
    serde_json::to_value(r).unwrap()
}

/// `[[bucket, value], ...]` and the total.
fn series(v: &Value) -> (Value, Value) {
    let s = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!([p["bucket"], p["value"]]))
        .collect();
    (Value::Array(s), v["total"].clone())
}

fn sample() -> Vec<MemEvent> {
    vec![
        ev("d", "view", "2026-01-04T23:59:59.999Z"), // before --from
        ev("a", "view", "2026-01-05T10:00:00Z"),
        ev("a", "view", "2026-01-05T11:00:00Z"),
        ev("b", "buy", "2026-01-06T12:00:00Z"),
        ev("b", "view", "2026-01-07T00:00:00Z"),
        ev("a", "view", "2026-01-07T23:59:59.999Z"),
        ev("c", "view", "2026-01-08T00:00:00Z"), // at --to: out
    ]
}

#[test]
fn events_per_day_with_empty_days_and_the_exact_json() {
    let v = run(
        &sample(),
        &[
            ("event", "view"),
            ("from", "2026-01-05"),
            ("to", "2026-01-08"),
        ],
    );
    assert_eq!(
        v,
        json!({
            "event": "view", "measure": "events", "interval": "day",
            "from": "2026-01-05T00:00:00Z", "to": "2026-01-08T00:00:00Z",
            "series": [
                {"bucket": "2026-01-05", "value": 2},
                {"bucket": "2026-01-06", "value": 0},
                {"bucket": "2026-01-07", "value": 2}
            ],
            "total": 4
        })
    );
}

#[test]
fn any_counts_every_event() {
    let v = run(
        &sample(),
        &[
            ("event", "any"),
            ("from", "2026-01-05"),
            ("to", "2026-01-08"),
        ],
    );
    assert_eq!(v["event"], "any");
    assert_eq!(
        series(&v),
        (
            json!([["2026-01-05", 2], ["2026-01-06", 1], ["2026-01-07", 2]]),
            json!(5)
        )
    );
}

#[test]
fn users_are_distinct_per_bucket_and_the_total_is_not_a_sum() {
    let v = run(
        &sample(),
        &[
            ("event", "any"),
            ("measure", "users"),
            ("from", "2026-01-05"),
            ("to", "2026-01-08"),
        ],
    );
    // a twice on the 5th counts once; a and b on the 7th; b on the 6th.
    // Over the range: a and b, 2 persons (the buckets sum to 4).
    assert_eq!(
        series(&v),
        (
            json!([["2026-01-05", 1], ["2026-01-06", 1], ["2026-01-07", 2]]),
            json!(2)
        )
    );
}

#[test]
fn revenue_is_net_of_refunds() {
    let events = vec![
        paid("a", "2026-01-05T09:00:00Z", 100.0),
        paid("a", "2026-01-05T10:00:00Z", -30.0), // a refund
        ev("a", "buy", "2026-01-05T11:00:00Z"),   // no revenue
        paid("b", "2026-01-07T09:00:00Z", 20.5),
        paid("c", "2026-01-06T09:00:00Z", -5.0), // only a refund that day
        paid("d", "2026-01-08T09:00:00Z", 1000.0), // out of range
    ];
    let v = run(
        &events,
        &[
            ("event", "buy"),
            ("measure", "revenue"),
            ("from", "2026-01-05"),
            ("to", "2026-01-08"),
        ],
    );
    assert_eq!(
        series(&v),
        (
            json!([
                ["2026-01-05", 70.0],
                ["2026-01-06", -5.0],
                ["2026-01-07", 20.5]
            ]),
            json!(85.5)
        )
    );
    // No revenue at all: zeros.
    let v = run(
        &[ev("a", "buy", "2026-01-05T11:00:00Z")],
        &[
            ("event", "buy"),
            ("measure", "revenue"),
            ("from", "2026-01-05"),
            ("to", "2026-01-06"),
        ],
    );
    assert_eq!(series(&v), (json!([["2026-01-05", 0.0]]), json!(0.0)));
}

#[test]
fn weeks_and_months_overlapping_the_range_count_only_events_inside_it() {
    let events = vec![
        ev("a", "e", "2026-01-06T12:00:00Z"), // Tue, before --from: out
        ev("a", "e", "2026-01-07T00:00:00Z"), // Wed, first instant: in
        ev("b", "e", "2026-01-18T23:59:59Z"), // Sun of the 2nd week
        ev("c", "e", "2026-01-20T00:00:00Z"), // at --to: out
    ];
    let v = run(
        &events,
        &[
            ("event", "e"),
            ("interval", "week"),
            ("from", "2026-01-07"),
            ("to", "2026-01-20"),
        ],
    );
    // Weeks are labelled by their Monday, even the partly covered ones.
    assert_eq!(
        series(&v),
        (
            json!([["2026-01-05", 1], ["2026-01-12", 1], ["2026-01-19", 0]]),
            json!(2)
        )
    );
    // Months: the range reaches into December and March by an hour and a
    // second, so both are buckets (empty); all four events are inside it.
    let v = run(
        &events,
        &[
            ("event", "e"),
            ("interval", "month"),
            ("from", "2025-12-31T23:00:00Z"),
            ("to", "2026-03-01T00:00:01Z"),
        ],
    );
    assert_eq!(
        series(&v),
        (
            json!([
                ["2025-12-01", 0],
                ["2026-01-01", 4],
                ["2026-02-01", 0],
                ["2026-03-01", 0]
            ]),
            json!(4)
        )
    );
}

#[test]
fn hours_are_labelled_with_their_offset() {
    let v = run(
        &[ev("a", "e", "2026-01-05T10:59:59Z")],
        &[
            ("event", "e"),
            ("interval", "hour"),
            ("from", "2026-01-05T10:30:00Z"),
            ("to", "2026-01-05T12:00:00Z"),
        ],
    );
    assert_eq!(
        series(&v),
        (
            json!([["2026-01-05T10:00+00:00", 1], ["2026-01-05T11:00+00:00", 0]]),
            json!(1)
        )
    );
}

#[test]
fn hours_across_dst_changes() {
    // Berlin, spring forward at 01:00Z: 02:00 local never happens.
    let v = run(
        &[
            ev("a", "e", "2026-03-29T00:59:59Z"),
            ev("b", "e", "2026-03-29T01:00:00Z"),
        ],
        &[
            ("event", "e"),
            ("interval", "hour"),
            ("measure", "users"),
            ("from", "2026-03-29T00:00:00Z"),
            ("to", "2026-03-29T02:00:00Z"),
            ("tz", "Europe/Berlin"),
        ],
    );
    assert_eq!(
        series(&v),
        (
            json!([["2026-03-29T01:00+01:00", 1], ["2026-03-29T03:00+02:00", 1]]),
            json!(2)
        )
    );
    // Berlin, fall back at 01:00Z: 02:00 local happens twice, two labels.
    let v = run(
        &[
            ev("a", "e", "2026-10-25T00:30:00Z"),
            ev("b", "e", "2026-10-25T01:30:00Z"),
            ev("c", "e", "2026-10-25T01:45:00Z"),
        ],
        &[
            ("event", "e"),
            ("interval", "hour"),
            ("from", "2026-10-25T00:00:00Z"),
            ("to", "2026-10-25T02:00:00Z"),
            ("tz", "Europe/Berlin"),
        ],
    );
    assert_eq!(
        series(&v),
        (
            json!([["2026-10-25T02:00+02:00", 1], ["2026-10-25T02:00+01:00", 2]]),
            json!(3)
        )
    );
    // New York, fall back at 06:00Z: 01:00 local twice.
    let v = run(
        &[],
        &[
            ("event", "e"),
            ("interval", "hour"),
            ("from", "2026-11-01T05:00:00Z"),
            ("to", "2026-11-01T07:00:00Z"),
            ("tz", "America/New_York"),
        ],
    );
    assert_eq!(
        series(&v).0,
        json!([["2026-11-01T01:00-04:00", 0], ["2026-11-01T01:00-05:00", 0]])
    );
}

#[test]
fn days_and_weeks_in_a_zone_are_23_or_25_hours() {
    // Berlin: the 29th of March is 23 hours, 23:00Z .. 22:00Z.
    let events = vec![
        ev("a", "e", "2026-03-28T22:59:59Z"),
        ev("b", "e", "2026-03-28T23:00:00Z"),
        ev("c", "e", "2026-03-29T21:59:59Z"),
        ev("d", "e", "2026-03-29T22:00:00Z"),
    ];
    let v = run(
        &events,
        &[
            ("event", "e"),
            ("from", "2026-03-28"),
            ("to", "2026-03-31"),
            ("tz", "Europe/Berlin"),
        ],
    );
    assert_eq!(v["from"], "2026-03-27T23:00:00Z");
    assert_eq!(v["to"], "2026-03-30T22:00:00Z");
    assert_eq!(
        series(&v),
        (
            json!([["2026-03-28", 1], ["2026-03-29", 2], ["2026-03-30", 1]]),
            json!(4)
        )
    );
    // New York: the week of Monday 2026-10-26 holds the 25-hour day and
    // ends at 2026-11-02T05:00Z (Monday 00:00 EST).
    let events = vec![
        ev("a", "e", "2026-10-26T03:59:59Z"), // Sunday 23:59:59 EDT: before
        ev("b", "e", "2026-10-26T04:00:00Z"), // Monday 00:00 EDT
        ev("c", "e", "2026-11-02T04:59:59Z"), // Sunday 23:59:59 EST
        ev("d", "e", "2026-11-02T05:00:00Z"), // Monday 00:00 EST
    ];
    let v = run(
        &events,
        &[
            ("event", "e"),
            ("interval", "week"),
            ("from", "2026-10-26"),
            ("to", "2026-11-09"),
            ("tz", "America/New_York"),
        ],
    );
    assert_eq!(
        series(&v),
        (json!([["2026-10-26", 2], ["2026-11-02", 1]]), json!(3))
    );
    // Months too: November 2026 in New York starts at 04:00Z (EDT).
    let v = run(
        &events,
        &[
            ("event", "e"),
            ("interval", "month"),
            ("from", "2026-10-01"),
            ("to", "2026-12-01"),
            ("tz", "America/New_York"),
        ],
    );
    assert_eq!(
        series(&v),
        (json!([["2026-10-01", 2], ["2026-11-01", 2]]), json!(4))
    );
}

#[test]
fn unknown_event_gives_empty_buckets() {
    let v = run(
        &sample(),
        &[
            ("event", "nope"),
            ("from", "2026-01-05"),
            ("to", "2026-01-07"),
        ],
    );
    assert_eq!(
        series(&v),
        (json!([["2026-01-05", 0], ["2026-01-06", 0]]), json!(0))
    );
}

#[test]
fn more_than_ten_thousand_buckets_is_a_bad_parameter() {
    let from = "2026-01-01T00:00:00Z";
    let ok = tally_event::time::format_rfc3339(t(from) + 10_000 * 3_600_000);
    let over = tally_event::time::format_rfc3339(t(from) + 10_000 * 3_600_000 + 1);
    let p = params(&[
        ("event", "e"),
        ("interval", "hour"),
        ("from", from),
        ("to", &ok),
    ])
    .unwrap();
    let r = trend::run(&MemSource::default(), &p).unwrap();
    assert_eq!(r.series.len(), 10_000);
    let err = params(&[
        ("event", "e"),
        ("interval", "hour"),
        ("from", from),
        ("to", &over),
    ])
    .unwrap_err();
    assert!(
        matches!(err, QueryError::BadParam { ref param, .. } if param == "interval"),
        "{err}"
    );
    assert!(err.to_string().contains("10,000"), "{err}");
    // 30 years of days.
    assert!(params(&[("event", "e"), ("from", "2000-01-01"), ("to", "2030-01-01")]).is_err());
}

#[test]
fn bad_parameters() {
    for (pairs, param) in [
        (vec![("from", "2026-01-01")], "event"),
        (vec![("event", " ")], "event"),
        (vec![("event", "e"), ("measure", "sum")], "measure"),
        (vec![("event", "e"), ("interval", "minute")], "interval"),
        (vec![("event", "e"), ("tz", "Nowhere/Town")], "tz"),
        (vec![("event", "e"), ("by", "plan")], "by"),
    ] {
        let err = params(&pairs).unwrap_err();
        assert!(
            matches!(err, QueryError::BadParam { param: ref p, .. } if p == param),
            "{pairs:?}: {err}"
        );
    }
    // Defaults: events, day, the 30 days up to the end of today.
    let p = params(&[("event", "e")]).unwrap();
    assert_eq!(
        (p.measure, p.interval, p.from, p.to),
        (
            trend::Measure::Events,
            tally_query::calendar::Interval::Day,
            t("2029-12-03"),
            t("2030-01-02")
        )
    );
}

#[test]
fn table_and_csv() {
    let events: Vec<MemEvent> = (0..1500)
        .map(|i| ev(&format!("p{i}"), "e", "2026-01-05T10:00:00Z"))
        .collect();
    let p = params(&[
        ("event", "e"),
        ("measure", "users"),
        ("from", "2026-01-05"),
        ("to", "2026-01-07"),
    ])
    .unwrap();
    let r = trend::run(&MemSource::new(events), &p).unwrap();
    let table = r.render(Format::Table);
    assert!(table.contains("2026-01-05"), "{table}");
    assert!(table.contains("1,500"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("total")), "{table}");
    assert_eq!(
        r.render(Format::Csv),
        "bucket,value\n2026-01-05,1500\n2026-01-06,0\ntotal,1500\n"
    );
    let json: Value = serde_json::from_str(&r.render(Format::Json)).unwrap();
    assert_eq!(json["total"], 1500);
}

// ---- property test against a naive reference ----

const ZONES: [&str; 3] = ["UTC", "Europe/Berlin", "America/New_York"];
const MEASURES: [&str; 3] = ["events", "users", "revenue"];
const INTERVALS: [&str; 4] = ["hour", "day", "week", "month"];
const Q: i64 = 15 * 60_000;

/// The SPEC read literally: a bucket is the local hour (with its offset),
/// local date, Monday of the local date or first of the local month an
/// instant is in; the buckets are those met walking `[from, to)` (every
/// quarter hour is enough: these zones change offset on the hour), in
/// order; only events in `[from, to)` count.
fn naive(events: &[MemEvent], p: &[(&str, String)]) -> (Vec<(String, String)>, String) {
    let get = |k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let tz = jiff::tz::TimeZone::get(&get("tz").unwrap()).unwrap();
    let from = t(&get("from").unwrap());
    let to = t(&get("to").unwrap());
    let interval = get("interval").unwrap();
    let measure = get("measure").unwrap();
    let event = get("event").unwrap();
    let label = |ms: i64| {
        let z = jiff::Timestamp::from_millisecond(ms)
            .unwrap()
            .to_zoned(tz.clone());
        let d = z.date();
        match interval.as_str() {
            "hour" => format!("{}", z.strftime("%Y-%m-%dT%H:00%:z")),
            "day" => d.to_string(),
            "week" => (d - jiff::Span::new().days(i64::from(d.weekday().to_monday_zero_offset())))
                .to_string(),
            _ => d.first_of_month().to_string(),
        }
    };
    let mut labels: Vec<String> = Vec::new();
    let mut at = from;
    while at < to {
        let l = label(at);
        if labels.last() != Some(&l) {
            labels.push(l);
        }
        at = (at.div_euclid(Q) + 1) * Q;
    }
    let mut per: BTreeMap<String, (i64, BTreeSet<String>, f64)> = BTreeMap::new();
    let mut all = (0i64, BTreeSet::new(), 0.0f64);
    for e in events {
        if !(from..to).contains(&e.ts) || (event != "any" && e.name != event) {
            continue;
        }
        let slot = per.entry(label(e.ts)).or_default();
        for s in [slot, &mut all] {
            s.0 += 1;
            s.1.insert(e.person.clone());
            s.2 += e.revenue.unwrap_or(0.0);
        }
    }
    let show = |s: &(i64, BTreeSet<String>, f64)| match measure.as_str() {
        "events" => s.0.to_string(),
        "users" => s.1.len().to_string(),
        _ => format!("{:.2}", s.2),
    };
    let series = labels
        .into_iter()
        .map(|l| {
            let v = per
                .get(&l)
                .map_or_else(|| show(&(0, BTreeSet::new(), 0.0)), show);
            (l, v)
        })
        .collect();
    (series, show(&all))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn trend_matches_the_naive_reference(
        events in prop::collection::vec(
            (0..6usize, 0..3usize, 0..(12 * 24 * 4i64), prop::option::of(-4..20i32)),
            0..60,
        ),
        zone in 0..3usize,
        measure in 0..3usize,
        interval in 0..4usize,
        from_q in 0..(4 * 24 * 4i64),
        len_q in 1..(8 * 24 * 4i64),
        base in 0..4usize,
    ) {
        // Windows around the 2026 DST changes of Berlin and New York.
        let base = t(["2026-03-06", "2026-03-26", "2026-10-22", "2026-10-29"][base]);
        let events: Vec<MemEvent> = events
            .iter()
            .map(|&(person, name, q, revenue)| MemEvent {
                revenue: revenue.map(|r| f64::from(r) * 0.5),
                ..MemEvent::new(&format!("p{person}"), ["a", "b", "c"][name], base + q * Q)
            })
            .collect();
        let from = base + from_q * Q;
        let to = from + len_q * Q;
        let pairs: Vec<(&str, String)> = vec![
            ("event", if measure == 1 { "any".into() } else { "a".into() }),
            ("measure", MEASURES[measure].into()),
            ("interval", INTERVALS[interval].into()),
            ("from", tally_event::time::format_rfc3339(from)),
            ("to", tally_event::time::format_rfc3339(to)),
            ("tz", ZONES[zone].into()),
        ];
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let got = trend::run(&MemSource::new(events.clone()), &params(&borrowed).unwrap()).unwrap();
        let show = |v: &trend::Value| match v {
            trend::Value::Count(n) => n.to_string(),
            trend::Value::Amount(x) => format!("{x:.2}"),
        };
        let got_series: Vec<(String, String)> =
            got.series.iter().map(|s| (s.bucket.clone(), show(&s.value))).collect();
        let (want_series, want_total) = naive(&events, &pairs);
        prop_assert_eq!(got_series, want_series);
        prop_assert_eq!(show(&got.total), want_total);
    }
}

/// 30,000 persons × 10,000 hourly buckets is too many bits for the
/// bitmap path: this takes the grouped-by-person path, which must agree.
#[test]
fn users_over_many_buckets_and_persons() {
    let from = t("2026-01-01");
    let h = 3_600_000;
    let mut events = Vec::new();
    for p in 0..30_000i64 {
        let person = format!("p{p}");
        events.push(MemEvent::new(&person, "e", from + (p % 100) * h + p % 7));
        // A second event in the same hour, and one in the last hour.
        events.push(MemEvent::new(&person, "e", from + (p % 100) * h + 60_000));
        if p % 1000 == 0 {
            events.push(MemEvent::new(&person, "e", from + 9_999 * h));
        }
    }
    let to = tally_event::time::format_rfc3339(from + 10_000 * h);
    let p = params(&[
        ("event", "e"),
        ("measure", "users"),
        ("interval", "hour"),
        ("from", "2026-01-01"),
        ("to", &to),
    ])
    .unwrap();
    let r = trend::run(&MemSource::new(events), &p).unwrap();
    assert_eq!(r.series.len(), 10_000);
    let value = |i: usize| r.series[i].value;
    for i in 0..100 {
        assert_eq!(value(i), trend::Value::Count(300), "hour {i}");
    }
    assert_eq!(value(100), trend::Value::Count(0));
    assert_eq!(value(9_999), trend::Value::Count(30));
    assert_eq!(r.total, trend::Value::Count(30_000));
}
