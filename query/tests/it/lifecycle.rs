//! Lifecycle / AARRR (SPEC §4): hand-worked cases, and a property test
//! against a brute-force reference.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::json;
use tally_event::Stage;
use tally_event::time::parse_date_or_rfc3339;
use tally_query::lifecycle::{self, LifecycleParams, LifecycleResult};
use tally_query::{Format, MemEvent, MemSource, RawParams, Report};

const H: i64 = 3_600_000;

fn t(s: &str) -> i64 {
    parse_date_or_rfc3339(s).unwrap()
}

fn ev(person: &str, ts: i64, stage: Option<Stage>, revenue: Option<f64>) -> MemEvent {
    MemEvent {
        stage,
        revenue,
        ..MemEvent::new(person, "e", ts)
    }
}

fn staged(person: &str, ts: i64, stage: Stage) -> MemEvent {
    ev(person, ts, Some(stage), None)
}

fn paid(person: &str, ts: i64, amount: f64) -> MemEvent {
    ev(person, ts, Some(Stage::Revenue), Some(amount))
}

fn params(from: &str, to: &str) -> LifecycleParams {
    let mut raw = RawParams::new([("from", from), ("to", to)]);
    let p = LifecycleParams::from_raw(&mut raw, t("2030-01-01")).unwrap();
    raw.finish().unwrap();
    p
}

fn run(events: Vec<MemEvent>) -> LifecycleResult {
    lifecycle::run(&MemSource::new(events), &params("2026-01-01", "2026-02-01")).unwrap()
}

fn stage_counts(r: &LifecycleResult) -> Vec<(&'static str, u64, u64)> {
    r.stages
        .iter()
        .map(|s| (s.stage.as_str(), s.users, s.events))
        .collect()
}

#[test]
fn params_and_defaults() {
    let mut raw = RawParams::new(Vec::<(&str, &str)>::new());
    let p = LifecycleParams::from_raw(&mut raw, t("2026-03-01T15:00:00Z")).unwrap();
    // The 30 days up to the end of today.
    assert_eq!((p.from, p.to), (t("2026-01-31"), t("2026-03-02")));
    let mut raw = RawParams::new([("from", "2026-02-01"), ("to", "2026-01-01")]);
    assert!(LifecycleParams::from_raw(&mut raw, 0).is_err());
    let mut raw = RawParams::new([("from", "soon")]);
    assert!(LifecycleParams::from_raw(&mut raw, 0).is_err());
}

#[test]
fn stage_users_and_events_in_range() {
    let jan = t("2026-01-10");
    let r = run(vec![
        // a: two discovery events, one acquisition.
        staged("a", jan, Stage::Discovery),
        staged("a", jan + H, Stage::Discovery),
        staged("a", jan + 2 * H, Stage::Acquisition),
        // b: one discovery, one referral.
        staged("b", jan, Stage::Discovery),
        staged("b", jan, Stage::Referral),
        // c: no stage at all: active, but in no stage.
        ev("c", jan, None, None),
        // d: only outside the range (before from, at to): not counted anywhere.
        staged("d", t("2026-01-01") - 1, Stage::Engagement),
        staged("d", t("2026-02-01"), Stage::Engagement),
        // e: exactly at from: inside.
        staged("e", t("2026-01-01"), Stage::Retention),
    ]);
    assert_eq!(
        stage_counts(&r),
        vec![
            ("discovery", 2, 3),
            ("acquisition", 1, 1),
            ("activation", 0, 0),
            ("engagement", 0, 0),
            ("retention", 1, 1),
            ("revenue", 0, 0),
            ("referral", 1, 1),
        ]
    );
    // a, b, c, e.
    assert_eq!(r.active_users, 4);
    assert_eq!(r.revenue, 0.0);
    assert_eq!(r.paying_users, 0);
    assert_eq!(r.orders, 0);
    assert_eq!(r.aov, None);
    assert_eq!(r.arpu, Some(0.0));
}

#[test]
fn revenue_refunds_orders_aov_arpu() {
    let jan = t("2026-01-10");
    let r = run(vec![
        // a: two orders (10 + 25.5) and a refund of 5.
        paid("a", jan, 10.0),
        paid("a", jan + H, 25.5),
        paid("a", jan + 2 * H, -5.0),
        // b: only a refund: not paying, no order.
        paid("b", jan, -2.5),
        // c: a zero amount: not an order, not paying.
        paid("c", jan, 0.0),
        // d: an order on an event with another stage (revenue is per event).
        ev("d", jan, Some(Stage::Engagement), Some(4.0)),
        // e: no revenue at all.
        ev("e", jan, None, None),
        // f: an order outside the range.
        paid("f", t("2026-02-01"), 100.0),
    ]);
    // Net: 10 + 25.5 - 5 - 2.5 + 0 + 4 = 32.
    assert_eq!(r.revenue, 32.0);
    // Orders: 10, 25.5, 4 -> 3; positive sum 39.5 -> aov 39.5 / 3.
    assert_eq!(r.orders, 3);
    assert_eq!(r.aov, Some(39.5 / 3.0));
    // a and d.
    assert_eq!(r.paying_users, 2);
    // a, b, c, d, e -> arpu = 32 / 5.
    assert_eq!(r.active_users, 5);
    assert_eq!(r.arpu, Some(32.0 / 5.0));
    // Stage counts still count every event of the stage: a (3), b, c.
    assert_eq!(r.stages[5].users, 3);
    assert_eq!(r.stages[5].events, 5);
    assert_eq!(r.stages[3].users, 1);
}

#[test]
fn only_refunds_give_null_aov_and_negative_revenue() {
    let r = run(vec![paid("a", t("2026-01-10"), -7.25)]);
    assert_eq!(r.revenue, -7.25);
    assert_eq!(r.orders, 0);
    assert_eq!(r.paying_users, 0);
    assert_eq!(r.aov, None);
    assert_eq!(r.arpu, Some(-7.25));
}

#[test]
fn exact_json_shape_and_empty_range() {
    let r = run(vec![]);
    let zeros: Vec<_> = [
        "discovery",
        "acquisition",
        "activation",
        "engagement",
        "retention",
        "revenue",
        "referral",
    ]
    .iter()
    .map(|s| json!({"stage": s, "users": 0, "events": 0}))
    .collect();
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({
            "stages": zeros,
            "active_users": 0,
            "revenue": 0.0,
            "paying_users": 0,
            "orders": 0,
            "aov": null,
            "arpu": null
        })
    );

    let r = run(vec![
        paid("a", t("2026-01-10"), 30.0),
        staged("b", t("2026-01-11"), Stage::Discovery),
    ]);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v,
        json!({
            "stages": [
                {"stage": "discovery", "users": 1, "events": 1},
                {"stage": "acquisition", "users": 0, "events": 0},
                {"stage": "activation", "users": 0, "events": 0},
                {"stage": "engagement", "users": 0, "events": 0},
                {"stage": "retention", "users": 0, "events": 0},
                {"stage": "revenue", "users": 1, "events": 1},
                {"stage": "referral", "users": 0, "events": 0}
            ],
            "active_users": 2,
            "revenue": 30.0,
            "paying_users": 1,
            "orders": 1,
            "aov": 30.0,
            "arpu": 15.0
        })
    );
    let back: LifecycleResult = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

#[test]
fn table_and_csv() {
    let r = run(vec![
        paid("a", t("2026-01-10"), 30.0),
        paid("a", t("2026-01-10"), -10.0),
        staged("b", t("2026-01-11"), Stage::Discovery),
    ]);
    let table = r.render(Format::Table);
    for stage in Stage::ALL {
        assert!(table.contains(stage.as_str()), "{table}");
    }
    assert!(table.contains("50.0%"), "{table}");
    assert!(table.contains('█'), "{table}");
    assert!(table.contains("20.00"), "{table}");
    assert!(table.contains("AOV"), "{table}");
    assert!(table.ends_with('\n'));

    // The long format: per stage its users and events, then the totals
    // once (not repeated on every stage row).
    let csv = r.render(Format::Csv);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * 7 + 6, "{csv}");
    assert_eq!(lines[0], "metric,stage,value");
    assert_eq!(lines[1], "users,discovery,1");
    assert_eq!(lines[2], "events,discovery,1");
    assert_eq!(lines[11], "users,revenue,1");
    assert_eq!(lines[12], "events,revenue,2");
    assert_eq!(
        lines[15..],
        [
            "active_users,,2",
            "revenue,,20",
            "paying_users,,1",
            "orders,,1",
            "aov,,30",
            "arpu,,10"
        ]
    );
    assert_eq!(csv.matches("active_users").count(), 1);
    let empty = run(vec![]).render(Format::Csv);
    assert!(empty.contains("\naov,,\narpu,,\n"), "{empty}");
}

#[test]
fn table_numbers_have_thousands_separators() {
    let events: Vec<_> = (0..1500)
        .map(|i| paid(&format!("p{i}"), t("2026-01-10"), 1000.0))
        .collect();
    let table = run(events).render(Format::Table);
    // 1,500 paying users; revenue 1,500,000.00.
    assert!(table.contains("1,500"), "{table}");
    assert!(table.contains("1,500,000.00"), "{table}");
    assert!(table.contains("1,000.00"), "{table}");
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
    let mut x: u64 = 7;
    let mut next = move |m: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % m
    };
    let base = t("2026-01-01");
    let events: Vec<MemEvent> = (0..300_000)
        .map(|_| {
            let stage = Stage::from_code(next(8) as u8);
            // Quarters are exact in binary, so sums do not depend on order.
            let revenue = (next(4) == 0).then(|| next(400) as f64 / 4.0 - 30.0);
            MemEvent {
                stage,
                revenue,
                ..MemEvent::new(
                    &format!("p{}", next(50_000)),
                    ["a", "b"][next(2) as usize],
                    base + next(40 * 24) as i64 * H,
                )
            }
        })
        .collect();
    let src = MemSource::new(events.clone());
    let p = params("2026-01-05", "2026-02-03");
    let one = on_threads(1, || lifecycle::run(&src, &p).unwrap());
    let four = on_threads(4, || lifecycle::run(&src, &p).unwrap());
    assert_eq!(one, four);
    assert_eq!(serde_json::to_value(&one).unwrap(), reference(&events, &p));
}

// ---------------------------------------------------------------------------
// Property test against a brute-force reference.

fn reference(events: &[MemEvent], p: &LifecycleParams) -> serde_json::Value {
    let inside: Vec<&MemEvent> = events
        .iter()
        .filter(|e| p.from <= e.ts && e.ts < p.to)
        .collect();
    let stages: Vec<_> = Stage::ALL
        .iter()
        .map(|&s| {
            let of_stage = inside.iter().filter(|e| e.stage == Some(s));
            let users: BTreeSet<&str> = of_stage.clone().map(|e| e.person.as_str()).collect();
            json!({"stage": s.as_str(), "users": users.len(), "events": of_stage.count()})
        })
        .collect();
    let active: BTreeSet<&str> = inside.iter().map(|e| e.person.as_str()).collect();
    let revenue: f64 = inside.iter().filter_map(|e| e.revenue).sum();
    let positive: Vec<f64> = inside
        .iter()
        .filter_map(|e| e.revenue)
        .filter(|&r| r > 0.0)
        .collect();
    let paying: BTreeSet<&str> = inside
        .iter()
        .filter(|e| e.revenue.is_some_and(|r| r > 0.0))
        .map(|e| e.person.as_str())
        .collect();
    let aov = (!positive.is_empty()).then(|| positive.iter().sum::<f64>() / positive.len() as f64);
    let arpu = (!active.is_empty()).then(|| revenue / active.len() as f64);
    json!({
        "stages": stages,
        "active_users": active.len(),
        "revenue": revenue + 0.0,
        "paying_users": paying.len(),
        "orders": positive.len(),
        "aov": aov,
        "arpu": arpu,
    })
}

fn arb_events() -> impl Strategy<Value = Vec<MemEvent>> {
    let base = t("2026-01-01");
    prop::collection::vec(
        (
            0..6usize,
            0..8u8,
            prop::option::of(-8..20i32),
            0..40i64,
            -1..=1i64,
        ),
        0..40,
    )
    .prop_map(move |v| {
        v.into_iter()
            .map(|(person, stage, revenue, day, nudge)| {
                ev(
                    &format!("p{person}"),
                    base + day * 86_400_000 + nudge,
                    Stage::from_code(stage),
                    // Quarters: exact, so any summation order gives the same.
                    revenue.map(|r| f64::from(r) / 4.0),
                )
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn matches_the_naive_reference(
        events in arb_events(),
        from in 0..40i64,
        span in 1..40i64,
    ) {
        let from = t("2026-01-01") + from * 86_400_000;
        let p = LifecycleParams { from, to: from + span * 86_400_000 };
        let got = lifecycle::run(&MemSource::new(events.clone()), &p).unwrap();
        prop_assert_eq!(serde_json::to_value(&got).unwrap(), reference(&events, &p));
    }
}
