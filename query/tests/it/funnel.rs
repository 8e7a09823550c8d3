//! Funnel (SPEC §4): every rule by hand, with the numbers worked out in the
//! comments, then a property test against a brute-force reference.

use proptest::prelude::*;
use serde_json::{Value, json};
use tally_event::time::parse_date_or_rfc3339;
use tally_query::funnel::{self, FunnelParams, FunnelResult};
use tally_query::{Format, MemEvent, MemSource, QueryError, RawParams, Report};

const S: i64 = 1000;
const M: i64 = 60 * S;
const H: i64 = 60 * M;
const D: i64 = 24 * H;

/// 2026-01-05T00:00:00Z, a Monday; the default range is one day from here.
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

fn params(steps: &str, window_ms: i64) -> FunnelParams {
    FunnelParams {
        steps: steps.split(',').map(String::from).collect(),
        window_ms,
        from: t0(),
        to: t0() + D,
    }
}

fn run(events: &[(&str, &str, i64)], p: &FunnelParams) -> FunnelResult {
    funnel::run(&source(events), p).unwrap()
}

fn users(r: &FunnelResult) -> Vec<u64> {
    r.steps.iter().map(|s| s.users).collect()
}

fn medians(r: &FunnelResult) -> Vec<Option<f64>> {
    r.steps
        .iter()
        .map(|s| s.median_seconds_from_previous)
        .collect()
}

// --- SPEC worked examples (window 1h, steps A,B) ----------------------------

#[test]
fn spec_browse_browse_buy_measures_from_the_last_entry() {
    // A@0s, A@10s, B@20s: both entries complete at 20 s; the later entry
    // (10 s) wins, so the step-2 time is 20 - 10 = 10 s.
    let r = run(
        &[("p", "A", 0), ("p", "A", 10 * S), ("p", "B", 20 * S)],
        &params("A,B", H),
    );
    assert_eq!(users(&r), [1, 1]);
    assert_eq!(medians(&r), [None, Some(10.0)]);
}

#[test]
fn spec_the_entry_completing_first_is_the_chain() {
    // A@0s, B@5s, A@6s, B@7s: entry 0 completes at 5 s, entry 6 at 7 s;
    // the chain is A@0 → B@5, time 5 s.
    let r = run(
        &[
            ("p", "A", 0),
            ("p", "B", 5 * S),
            ("p", "A", 6 * S),
            ("p", "B", 7 * S),
        ],
        &params("A,B", H),
    );
    assert_eq!(users(&r), [1, 1]);
    assert_eq!(medians(&r), [None, Some(5.0)]);
}

#[test]
fn spec_median_of_three_then_four_persons() {
    // Step-2 times 10 s, 5 s, 2 s → median 5 s.
    let mut events = vec![
        ("p1", "A", 0),
        ("p1", "B", 10 * S),
        ("p2", "A", 0),
        ("p2", "B", 5 * S),
        ("p3", "A", 0),
        ("p3", "B", 2 * S),
    ];
    let r = run(&events, &params("A,B", H));
    assert_eq!(users(&r), [3, 3]);
    assert_eq!(medians(&r), [None, Some(5.0)]);
    // A fourth at 60 s → (5 + 10) / 2 = 7.5 s.
    events.extend([("p4", "A", 0), ("p4", "B", 60 * S)]);
    let r = run(&events, &params("A,B", H));
    assert_eq!(users(&r), [4, 4]);
    assert_eq!(medians(&r), [None, Some(7.5)]);
}

#[test]
fn spec_one_event_cannot_fill_two_steps_of_the_same_name() {
    // view,view,buy with view@0, buy@1m: level 1.
    let r = run(
        &[("p", "view", 0), ("p", "buy", M)],
        &params("view,view,buy", H),
    );
    assert_eq!(users(&r), [1, 0, 0]);
    assert_eq!(medians(&r), [None, None, None]);
}

#[test]
fn spec_equal_timestamps_fill_consecutive_steps() {
    // view@0, view@0, buy@0: level 3, both step times 0 s.
    let r = run(
        &[("p", "view", 0), ("p", "view", 0), ("p", "buy", 0)],
        &params("view,view,buy", H),
    );
    assert_eq!(users(&r), [1, 1, 1]);
    assert_eq!(medians(&r), [None, Some(0.0), Some(0.0)]);
    // Insertion order does not matter: buy first, still level 3.
    let r = run(
        &[("p", "buy", 0), ("p", "view", 0), ("p", "view", 0)],
        &params("view,view,buy", H),
    );
    assert_eq!(users(&r), [1, 1, 1]);
}

#[test]
fn spec_window_is_inclusive() {
    // A@0, B@1h with a 1h window: level 2 (1h <= 1h).
    let r = run(&[("p", "A", 0), ("p", "B", H)], &params("A,B", H));
    assert_eq!(users(&r), [1, 1]);
    assert_eq!(medians(&r), [None, Some(3600.0)]);
    // B@1h+1ms: level 1.
    let r = run(&[("p", "A", 0), ("p", "B", H + 1)], &params("A,B", H));
    assert_eq!(users(&r), [1, 0]);
    assert_eq!(medians(&r), [None, None]);
}

// --- Entries and the range --------------------------------------------------

#[test]
fn later_steps_may_fall_after_to() {
    // Range [t0, t0 + 1d); entry 1 ms before `to`, B 59 min after `to`:
    // B - A = 59 min + 1 ms <= 1h → level 2, 3540.001 s.
    let events = [("p", "A", D - 1), ("p", "B", D + 59 * M)];
    let r = run(&events, &params("A,B", H));
    assert_eq!(users(&r), [1, 1]);
    assert_eq!(medians(&r), [None, Some(3540.001)]);
    // Exactly at the window's edge after `to`: A@to-1ms, B@to-1ms+1h → level 2.
    let r = run(
        &[("p", "A", D - 1), ("p", "B", D - 1 + H)],
        &params("A,B", H),
    );
    assert_eq!(users(&r), [1, 1]);
    // One ms later → level 1.
    let r = run(&[("p", "A", D - 1), ("p", "B", D + H)], &params("A,B", H));
    assert_eq!(users(&r), [1, 0]);
}

#[test]
fn an_entry_must_be_inside_from_to() {
    // A 1 ms before `from`: no entry. A at `to` (exclusive): no entry.
    let r = run(
        &[
            ("p1", "A", -1),
            ("p1", "B", 10 * S),
            ("p2", "A", D),
            ("p2", "B", D + S),
        ],
        &params("A,B", H),
    );
    assert_eq!(users(&r), [0, 0]);
    // Nobody entered: both conversions of step 1 are 0, and every rate is 0.
    for s in &r.steps {
        assert_eq!(s.conversion_from_previous, 0.0);
        assert_eq!(s.conversion_from_first, 0.0);
        assert_eq!(s.median_seconds_from_previous, None);
    }
    // A exactly at `from` is an entry.
    let r = run(&[("p", "A", 0), ("p", "B", S)], &params("A,B", H));
    assert_eq!(users(&r), [1, 1]);
}

#[test]
fn an_entry_before_from_does_not_count_but_one_inside_does() {
    // A@-10m (outside), A@+10m (inside), B@+15m: the chain starts at the
    // inside entry: 5 min.
    let r = run(
        &[("p", "A", -10 * M), ("p", "A", 10 * M), ("p", "B", 15 * M)],
        &params("A,B", H),
    );
    assert_eq!(users(&r), [1, 1]);
    assert_eq!(medians(&r), [None, Some(300.0)]);
}

// --- Order ------------------------------------------------------------------

#[test]
fn order_is_loose_but_steps_must_follow_in_time() {
    // Other events in between do not matter: A, C, X, B → level 2 for A,B.
    let r = run(
        &[
            ("p", "A", 0),
            ("p", "C", S),
            ("p", "X", 2 * S),
            ("p", "B", 3 * S),
        ],
        &params("A,B", H),
    );
    assert_eq!(users(&r), [1, 1]);
    // B before A does not count.
    let r = run(&[("p", "B", 0), ("p", "A", 10 * S)], &params("A,B", H));
    assert_eq!(users(&r), [1, 0]);
    // Reaching C needs B in between: A, C → level 1; A, C, B → level 2
    // (C before B cannot be step 3); A, B, C → level 3.
    let p = params("A,B,C", H);
    assert_eq!(users(&run(&[("p", "A", 0), ("p", "C", S)], &p)), [1, 0, 0]);
    assert_eq!(
        users(&run(&[("p", "A", 0), ("p", "C", S), ("p", "B", 2 * S)], &p)),
        [1, 1, 0]
    );
    assert_eq!(
        users(&run(&[("p", "A", 0), ("p", "B", S), ("p", "C", 2 * S)], &p)),
        [1, 1, 1]
    );
}

#[test]
fn same_time_steps_count_in_either_insertion_order() {
    // A@5s and B@5s: t1 <= t2 → level 2, a zero-second step.
    for events in [
        [("p", "A", 5 * S), ("p", "B", 5 * S)],
        [("p", "B", 5 * S), ("p", "A", 5 * S)],
    ] {
        let r = run(&events, &params("A,B", H));
        assert_eq!(users(&r), [1, 1]);
        assert_eq!(medians(&r), [None, Some(0.0)]);
    }
    // A,B,C all at once, inserted backwards → level 3.
    let r = run(
        &[("p", "C", S), ("p", "B", S), ("p", "A", S)],
        &params("A,B,C", H),
    );
    assert_eq!(users(&r), [1, 1, 1]);
}

// --- Levels and chains ------------------------------------------------------

#[test]
fn each_person_counts_once_per_step() {
    // Three complete entries, one person → 1 user per step.
    let r = run(
        &[
            ("p", "A", 0),
            ("p", "B", S),
            ("p", "A", 2 * S),
            ("p", "B", 3 * S),
            ("p", "A", 4 * S),
            ("p", "B", 5 * S),
        ],
        &params("A,B", H),
    );
    assert_eq!(users(&r), [1, 1]);
    // Chains complete at 1 s, 3 s, 5 s: the first (A@0 → B@1s), 1 s.
    assert_eq!(medians(&r), [None, Some(1.0)]);
}

#[test]
fn the_level_is_the_best_over_all_entries() {
    // Window 1h, steps A,B,C. Entry A@0 reaches B@10m but C@2h20m is too
    // late (level 2); entry A@2h reaches B@2h10m and C@2h20m (level 3).
    // The chain is the level-3 one: 10 min and 10 min.
    let r = run(
        &[
            ("p", "A", 0),
            ("p", "B", 10 * M),
            ("p", "A", 2 * H),
            ("p", "B", 2 * H + 10 * M),
            ("p", "C", 2 * H + 20 * M),
        ],
        &params("A,B,C", H),
    );
    assert_eq!(users(&r), [1, 1, 1]);
    assert_eq!(medians(&r), [None, Some(600.0), Some(600.0)]);
}

#[test]
fn ties_in_completion_go_to_the_latest_entry() {
    // A@0 and A@1m both complete A,B,C at C@10m (greedy B@2m for both).
    // The latest entry wins: A@1m → B@2m (1 min) → C@10m (8 min).
    let r = run(
        &[
            ("p", "A", 0),
            ("p", "A", M),
            ("p", "B", 2 * M),
            ("p", "C", 10 * M),
        ],
        &params("A,B,C", H),
    );
    assert_eq!(users(&r), [1, 1, 1]);
    assert_eq!(medians(&r), [None, Some(60.0), Some(480.0)]);
}

#[test]
fn later_steps_take_the_earliest_qualifying_events() {
    // A@0, B@1m, B@2m, C@3m: B@1m is taken (not B@2m): 1 min, then 2 min.
    let r = run(
        &[
            ("p", "A", 0),
            ("p", "B", M),
            ("p", "B", 2 * M),
            ("p", "C", 3 * M),
        ],
        &params("A,B,C", H),
    );
    assert_eq!(medians(&r), [None, Some(60.0), Some(120.0)]);
}

#[test]
fn a_later_entry_with_a_higher_level_beats_an_earlier_completion() {
    // Window 10m, steps A,B,C. A@0 → B@1m (level 2, done at 1 m; C@15m is
    // 15 min after A@0: too late). A@9m → B@12m → C@15m (level 3).
    let r = run(
        &[
            ("p", "A", 0),
            ("p", "B", M),
            ("p", "A", 9 * M),
            ("p", "B", 12 * M),
            ("p", "C", 15 * M),
        ],
        &params("A,B,C", 10 * M),
    );
    assert_eq!(users(&r), [1, 1, 1]);
    assert_eq!(medians(&r), [None, Some(180.0), Some(180.0)]);
}

#[test]
fn repeated_names_need_distinct_events() {
    // Steps a,b,a: a@0, b@1s → level 2 (the entry a cannot be step 3).
    let p = params("a,b,a", H);
    assert_eq!(users(&run(&[("p", "a", 0), ("p", "b", S)], &p)), [1, 1, 0]);
    // + a@2s → level 3: 1 s, 1 s.
    let r = run(&[("p", "a", 0), ("p", "b", S), ("p", "a", 2 * S)], &p);
    assert_eq!(users(&r), [1, 1, 1]);
    // Entries a@0 and a@2s; only a@0 reaches level 3 (a@2s has no later b).
    assert_eq!(medians(&r), [None, Some(1.0), Some(1.0)]);
    // a@0, b@0: the third step needs a second a → level 2; with a second
    // a@0 → level 3 with zero-second steps.
    assert_eq!(users(&run(&[("p", "a", 0), ("p", "b", 0)], &p)), [1, 1, 0]);
    let r = run(&[("p", "a", 0), ("p", "b", 0), ("p", "a", 0)], &p);
    assert_eq!(users(&r), [1, 1, 1]);
    assert_eq!(medians(&r), [None, Some(0.0), Some(0.0)]);
}

#[test]
fn same_time_entries_can_use_each_other() {
    // Steps a,a,b: a@0 (twice), a@5s, b@5s. The entries at 0 are
    // interchangeable: either one takes the other as step 2 (0 s), then
    // b@5s (5 s) — not a@5s as step 2 (which would give 5 s, 0 s).
    let r = run(
        &[
            ("p", "a", 0),
            ("p", "a", 0),
            ("p", "a", 5 * S),
            ("p", "b", 5 * S),
        ],
        &params("a,a,b", H),
    );
    assert_eq!(users(&r), [1, 1, 1]);
    assert_eq!(medians(&r), [None, Some(0.0), Some(5.0)]);
}

#[test]
fn an_event_before_from_is_neither_an_entry_nor_a_later_step() {
    // Steps view,view: view@-1s (before `from`) cannot be a later step
    // (it is before any entry) nor an entry.
    let p = params("view,view", H);
    let r = run(&[("p", "view", -S), ("p", "view", S)], &p);
    assert_eq!(users(&r), [1, 0]);
    // Two views inside: level 2, the chain from the first (the second has no
    // later view): 2 s.
    let r = run(&[("p", "view", S), ("p", "view", 3 * S)], &p);
    assert_eq!(users(&r), [1, 1]);
    assert_eq!(medians(&r), [None, Some(2.0)]);
}

#[test]
fn conversions_and_medians_over_several_persons() {
    // 4 persons enter; p1, p2 reach B; p1 reaches C.
    // users [4, 2, 1]; from previous [1, 2/4, 1/2]; from first [1, .5, .25].
    // B times: p1 30 s, p2 90 s → median 60 s. C times: p1 5 min.
    let r = run(
        &[
            ("p1", "A", 0),
            ("p1", "B", 30 * S),
            ("p1", "C", 30 * S + 5 * M),
            ("p2", "A", 0),
            ("p2", "B", 90 * S),
            ("p3", "A", 0),
            ("p3", "C", S),
            ("p4", "A", 0),
            ("p5", "B", 0),
        ],
        &params("A,B,C", H),
    );
    assert_eq!(users(&r), [4, 2, 1]);
    let prev: Vec<f64> = r.steps.iter().map(|s| s.conversion_from_previous).collect();
    let first: Vec<f64> = r.steps.iter().map(|s| s.conversion_from_first).collect();
    assert_eq!(prev, [1.0, 0.5, 0.5]);
    assert_eq!(first, [1.0, 0.5, 0.25]);
    assert_eq!(medians(&r), [None, Some(60.0), Some(300.0)]);
}

#[test]
fn a_step_nobody_reached_has_zero_rates_after_it() {
    // users [1, 0, 0]: step 3's conversion from previous is 0 (0 / 0).
    let r = run(&[("p", "A", 0)], &params("A,B,C", H));
    assert_eq!(users(&r), [1, 0, 0]);
    assert_eq!(r.steps[2].conversion_from_previous, 0.0);
    assert_eq!(r.steps[2].conversion_from_first, 0.0);
}

#[test]
fn unknown_names_match_nobody() {
    let events = [("p", "A", 0), ("p", "B", S)];
    // Unknown last step: users [1, 0].
    let r = run(&events, &params("A,nope", H));
    assert_eq!(users(&r), [1, 0]);
    assert_eq!(r.steps[1].event, "nope");
    // Unknown first step: nobody enters.
    let r = run(&events, &params("nope,B", H));
    assert_eq!(users(&r), [0, 0]);
    // Unknown middle step: stops there.
    let r = run(&events, &params("A,nope,B", H));
    assert_eq!(users(&r), [1, 0, 0]);
}

#[test]
fn an_empty_source_gives_zeros() {
    let r = funnel::run(&MemSource::default(), &params("A,B", H)).unwrap();
    assert_eq!(users(&r), [0, 0]);
    assert_eq!(medians(&r), [None, None]);
}

#[test]
fn many_entries_for_one_person_stay_fast_and_right() {
    // 20 000 alternating A/B one second apart, plus a bot burst of 5 000
    // A's at one instant. Every chain A@2k → B@2k+1 takes 1 s; the chosen
    // chain (the earliest completing) is 1 s.
    let mut events = Vec::new();
    for k in 0..10_000 {
        events.push(MemEvent::new("p", "A", t0() + 2 * k * S));
        events.push(MemEvent::new("p", "B", t0() + (2 * k + 1) * S));
    }
    for _ in 0..5_000 {
        events.push(MemEvent::new("bot", "A", t0() + 7 * S));
    }
    events.push(MemEvent::new("bot", "B", t0() + 9 * S));
    let r = funnel::run(&MemSource::new(events), &params("A,A,B", H)).unwrap();
    // p: A@0 → A@2s → B@3s is level 3 and completes first (A@2s's chain
    // ends at B@5s): 2 s, 1 s. bot: A@7s → another A@7s → B@9s: 0 s, 2 s.
    // Medians: step 2 of {2 s, 0 s} = 1 s, step 3 of {1 s, 2 s} = 1.5 s.
    assert_eq!(users(&r), [2, 2, 2]);
    assert_eq!(medians(&r), [None, Some(1.0), Some(1.5)]);
}

// --- JSON -------------------------------------------------------------------

#[test]
fn json_has_exactly_the_spec_shape() {
    let mut p = params("signup,purchase", 7 * D);
    p.from = parse_date_or_rfc3339("2026-01-01").unwrap();
    p.to = parse_date_or_rfc3339("2026-01-31").unwrap();
    let base = p.from;
    let src = MemSource::new([
        MemEvent::new("p", "signup", base),
        MemEvent::new("p", "purchase", base + 237_715),
        MemEvent::new("q", "signup", base),
    ]);
    let r = funnel::run(&src, &p).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v,
        json!({
            "window_seconds": 604800,
            "from": "2026-01-01T00:00:00Z",
            "to": "2026-01-31T00:00:00Z",
            "steps": [
                {"event": "signup", "users": 2, "conversion_from_previous": 1.0,
                 "conversion_from_first": 1.0, "median_seconds_from_previous": null},
                {"event": "purchase", "users": 1, "conversion_from_previous": 0.5,
                 "conversion_from_first": 0.5, "median_seconds_from_previous": 237.715},
            ]
        })
    );
    // Exact keys, in the SPEC order.
    let text = r.render(Format::Json);
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort_unstable();
        k
    };
    assert_eq!(keys(&v), ["from", "steps", "to", "window_seconds"]);
    assert_eq!(
        keys(&v["steps"][0]),
        [
            "conversion_from_first",
            "conversion_from_previous",
            "event",
            "median_seconds_from_previous",
            "users"
        ]
    );
    let at = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
    assert!(at("window_seconds") < at("from") && at("from") < at("to") && at("to") < at("steps"));
    assert!(text.contains("\"window_seconds\": 604800,"), "{text}");
    assert!(text.contains("237.715"), "{text}");
    // And back.
    let back: FunnelResult = serde_json::from_str(&text).unwrap();
    assert_eq!(back, r);
}

#[test]
fn json_medians_keep_millisecond_precision() {
    // Step-2 times 1 ms and 2 ms → median 1.5 ms = 0.0015 s.
    let r = run(
        &[("p", "A", 0), ("p", "B", 1), ("q", "A", 0), ("q", "B", 2)],
        &params("A,B", H),
    );
    let v: Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["steps"][1]["median_seconds_from_previous"], json!(0.0015));
    assert_eq!(v["window_seconds"], json!(3600));
}

#[test]
fn nobody_entered_json_has_zero_rates_and_null_medians() {
    let r = run(&[], &params("A,B", H));
    let v = serde_json::to_value(&r).unwrap();
    for step in v["steps"].as_array().unwrap() {
        assert_eq!(step["users"], json!(0));
        assert_eq!(step["conversion_from_previous"], json!(0.0));
        assert_eq!(step["conversion_from_first"], json!(0.0));
        assert_eq!(step["median_seconds_from_previous"], Value::Null);
    }
}

// --- Parameters -------------------------------------------------------------

fn from_raw(pairs: &[(&str, &str)]) -> Result<FunnelParams, QueryError> {
    let mut raw = RawParams::new(pairs.iter().copied());
    FunnelParams::from_raw(&mut raw, t0())
}

fn bad_param(r: Result<FunnelParams, QueryError>) -> (String, String) {
    match r {
        Err(QueryError::BadParam { param, message }) => (param, message),
        other => panic!("expected a bad parameter, got {other:?}"),
    }
}

#[test]
fn params_defaults_and_parsing() {
    let p = from_raw(&[
        ("steps", "signup, activate ,purchase"),
        ("from", "2026-01-01"),
        ("to", "2026-01-31"),
    ])
    .unwrap();
    assert_eq!(p.steps, ["signup", "activate", "purchase"]);
    assert_eq!(p.window_ms, 14 * D);
    assert_eq!(p.from, parse_date_or_rfc3339("2026-01-01").unwrap());
    assert_eq!(p.to, parse_date_or_rfc3339("2026-01-31").unwrap());

    let p = from_raw(&[("steps", "a,b"), ("window", "90s")]).unwrap();
    assert_eq!(p.window_ms, 90 * S);
    // Default range: the 30 days up to the end of today.
    assert_eq!(p.to, t0() + D);
    assert_eq!(p.from, t0() + D - 30 * D);

    // The bounds themselves are accepted; repeated names too; 20 steps.
    assert_eq!(
        from_raw(&[("steps", "a,a"), ("window", "1s")])
            .unwrap()
            .window_ms,
        S
    );
    assert_eq!(
        from_raw(&[("steps", "a,b"), ("window", "3650d")])
            .unwrap()
            .window_ms,
        3650 * D
    );
    let twenty: Vec<String> = (0..20).map(|i| format!("e{i}")).collect();
    assert_eq!(
        from_raw(&[("steps", &twenty.join(","))])
            .unwrap()
            .steps
            .len(),
        20
    );
}

#[test]
fn params_errors_name_the_flag() {
    let (param, message) = bad_param(from_raw(&[("steps", "a")]));
    assert_eq!(param, "steps");
    assert!(message.contains("2 to 20"), "{message}");
    let twenty_one: Vec<String> = (0..21).map(|i| format!("e{i}")).collect();
    let (param, message) = bad_param(from_raw(&[("steps", &twenty_one.join(","))]));
    assert_eq!(param, "steps");
    assert!(message.contains("21 steps"), "{message}");
    let (param, _) = bad_param(from_raw(&[("steps", "a,,b")]));
    assert_eq!(param, "steps");
    let (param, _) = bad_param(from_raw(&[("steps", "")]));
    assert_eq!(param, "steps");
    let (param, message) = bad_param(from_raw(&[]));
    assert_eq!((param.as_str(), message.as_str()), ("steps", "is required"));

    for (window, expect) in [
        ("0s", "1s to 3650d"),
        ("3651d", "1s to 3650d"),
        ("7x", "unknown duration unit"),
        ("7", "no unit"),
        ("-1d", "not a duration"),
    ] {
        let (param, message) = bad_param(from_raw(&[("steps", "a,b"), ("window", window)]));
        assert_eq!(param, "window");
        assert!(message.contains(expect), "{window}: {message}");
    }
    let (param, _) = bad_param(from_raw(&[
        ("steps", "a,b"),
        ("from", "2026-02-01"),
        ("to", "2026-01-01"),
    ]));
    assert_eq!(param, "from");
    let (param, _) = bad_param(from_raw(&[("steps", "a,b"), ("from", "yesterday")]));
    assert_eq!(param, "from");
}

#[test]
fn from_raw_leaves_unknown_parameters_to_finish() {
    let mut raw = RawParams::new([("steps", "a,b"), ("windw", "7d")]);
    FunnelParams::from_raw(&mut raw, t0()).unwrap();
    assert_eq!(
        raw.finish().unwrap_err().to_string(),
        "--windw: unknown parameter"
    );
}

#[test]
fn run_rejects_a_step_count_out_of_bounds() {
    for steps in ["A".to_string(), vec!["A"; 21].join(",")] {
        assert!(matches!(
            funnel::run(&MemSource::default(), &params(&steps, H)),
            Err(QueryError::BadParam { .. })
        ));
    }
}

#[test]
fn run_takes_any_window_in_milliseconds() {
    // The 1s..=3650d bounds are the flag's; `run` itself is exact to the
    // millisecond: a 0 ms window only joins same-time steps.
    let p = params("A,B", 0);
    assert_eq!(users(&run(&[("p", "A", 0), ("p", "B", 0)], &p)), [1, 1]);
    assert_eq!(users(&run(&[("p", "A", 0), ("p", "B", 1)], &p)), [1, 0]);
}

// --- Table and CSV ----------------------------------------------------------

#[test]
fn table_and_csv() {
    // p: signup → activate after 2h 13m. q only signs up.
    let r = run(
        &[
            ("p", "signup", 0),
            ("p", "activate", 2 * H + 13 * M),
            ("q", "signup", 0),
        ],
        &params("signup,activate", D),
    );
    let table = r.render(Format::Table);
    assert!(table.contains("1. signup"), "{table}");
    assert!(table.contains("2. activate"), "{table}");
    assert!(table.contains("100.0%"), "{table}");
    assert!(table.contains("50.0%"), "{table}");
    assert!(table.contains("2h 13m"), "{table}");
    assert!(table.contains('█') && table.contains('░'), "{table}");
    assert!(table.contains("window 1d"), "{table}");

    let csv = r.render(Format::Csv);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        [
            "step,event,users,conversion_from_previous,conversion_from_first,median_seconds_from_previous",
            "1,signup,2,1,1,",
            "2,activate,1,0.5,0.5,7980",
        ]
    );
    // Names needing quotes are quoted.
    let mut p = params("x,y", H);
    p.steps[0] = "a,b".into();
    let r = run(&[("p", "a,b", 0)], &p);
    assert!(r.render(Format::Csv).contains("1,\"a,b\",1,1,1,"));

    // Nobody entered: the table says so.
    let table = run(&[], &params("A,B", H)).render(Format::Table);
    assert!(table.contains("Nobody entered"), "{table}");
}

// --- Property test against a brute-force reference ----------------------------

/// The person's level and chain by brute force: every entry, every way to
/// pick distinct events for the later steps; per entry the best chain is
/// the longest, then the lexicographically earliest (= "matched to the
/// earliest qualifying events"); per person the highest level, then the
/// earliest completion, then the latest entry.
fn naive_person(
    evs: &[(usize, i64)],
    steps: &[usize],
    window: i64,
    from: i64,
    to: i64,
) -> (usize, Vec<i64>) {
    fn extend(
        evs: &[(usize, i64)],
        steps: &[usize],
        deadline: i64,
        used: &mut Vec<usize>,
        chain: &mut Vec<i64>,
        best: &mut Vec<i64>,
    ) {
        if chain.len() > best.len() || (chain.len() == best.len() && *chain < *best) {
            *best = chain.clone();
        }
        if chain.len() == steps.len() {
            return;
        }
        let prev = *chain.last().unwrap();
        for (i, &(name, ts)) in evs.iter().enumerate() {
            if name == steps[chain.len()] && ts >= prev && ts <= deadline && !used.contains(&i) {
                used.push(i);
                chain.push(ts);
                extend(evs, steps, deadline, used, chain, best);
                chain.pop();
                used.pop();
            }
        }
    }

    let mut best: (usize, Vec<i64>) = (0, Vec::new());
    for (i, &(name, t1)) in evs.iter().enumerate() {
        if name != steps[0] || t1 < from || t1 >= to {
            continue;
        }
        let mut chain = vec![t1];
        let mut entry_best = Vec::new();
        extend(
            evs,
            steps,
            t1 + window,
            &mut vec![i],
            &mut chain,
            &mut entry_best,
        );
        let level = entry_best.len();
        let better = level > best.0
            || (level == best.0
                && (entry_best[level - 1] < best.1[level - 1]
                    || (entry_best[level - 1] == best.1[level - 1] && t1 >= best.1[0])));
        if better {
            best = (level, entry_best);
        }
    }
    best
}

fn naive_median_seconds(mut ms: Vec<i64>) -> Option<f64> {
    ms.sort_unstable();
    let n = ms.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(ms[n / 2] as f64 / 1000.0),
        _ => Some((ms[n / 2 - 1] + ms[n / 2]) as f64 / 2.0 / 1000.0),
    }
}

const NAMES: [&str; 4] = ["a", "b", "c", "zz"];

#[derive(Debug, Clone)]
struct Case {
    /// (person, name index into NAMES[..3], ts)
    events: Vec<(usize, usize, i64)>,
    /// Indexes into NAMES (3 = a name never stored).
    steps: Vec<usize>,
    window_ms: i64,
    from: i64,
    to: i64,
}

/// Random cases: up to 24 events of `persons` persons, `names` distinct event names (step names may also be the
/// unknown `zz`), timestamps in whole seconds `0..secs` with an occasional
/// extra millisecond, so ties and "exactly at the window / one ms after"
/// both happen often.
fn case(persons: usize, names: usize, secs: i64) -> impl Strategy<Value = Case> {
    let ts = (0..secs, prop::bool::weighted(0.2)).prop_map(|(s, ms)| s * S + i64::from(ms));
    let event = (0..persons, 0..names, ts);
    let step = prop_oneof![8 => 0..names, 1 => Just(3usize)];
    (
        prop::collection::vec(event, 0..24),
        prop::collection::vec(step, 2..5),
        1i64..8,
        0i64..6,
        1i64..10,
    )
        .prop_map(|(events, steps, w, f, len)| Case {
            events,
            steps,
            window_ms: w * S,
            from: f * S,
            to: (f + len) * S,
        })
}

fn check_against_brute_force(c: &Case) -> Result<(), TestCaseError> {
    let src = MemSource::new(
        c.events
            .iter()
            .map(|&(p, n, t)| MemEvent::new(&format!("p{p}"), NAMES[n], t)),
    );
    let p = FunnelParams {
        steps: c.steps.iter().map(|&s| NAMES[s].to_string()).collect(),
        window_ms: c.window_ms,
        from: c.from,
        to: c.to,
    };
    let got = funnel::run(&src, &p).unwrap();

    let n = c.steps.len();
    let mut want_users = vec![0u64; n];
    let mut gaps: Vec<Vec<i64>> = vec![Vec::new(); n];
    for person in 0..4 {
        let evs: Vec<(usize, i64)> = c
            .events
            .iter()
            .filter(|e| e.0 == person)
            .map(|e| (e.1, e.2))
            .collect();
        let (level, chain) = naive_person(&evs, &c.steps, c.window_ms, c.from, c.to);
        for k in 0..level {
            want_users[k] += 1;
            if k > 0 {
                gaps[k].push(chain[k] - chain[k - 1]);
            }
        }
    }
    prop_assert_eq!(users(&got), want_users.clone());
    let rate = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    for k in 0..n {
        let want = if k == 0 {
            None
        } else {
            naive_median_seconds(gaps[k].clone())
        };
        let have = got.steps[k].median_seconds_from_previous;
        match (have, want) {
            (None, None) => {}
            (Some(h), Some(w)) => prop_assert!((h - w).abs() < 1e-9, "step {}: {} vs {}", k, h, w),
            _ => prop_assert!(false, "step {}: {:?} vs {:?}", k, have, want),
        }
        let prev = if k == 0 {
            want_users[0]
        } else {
            want_users[k - 1]
        };
        prop_assert_eq!(
            got.steps[k].conversion_from_previous,
            rate(want_users[k], prev)
        );
        prop_assert_eq!(
            got.steps[k].conversion_from_first,
            rate(want_users[k], want_users[0])
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn matches_brute_force(c in case(4, 3, 12)) {
        check_against_brute_force(&c)?;
    }

    /// Two names over few seconds: repeated step names and same-time
    /// events everywhere.
    #[test]
    fn matches_brute_force_with_heavy_repeats_and_ties(c in case(2, 2, 5)) {
        check_against_brute_force(&c)?;
    }
}

// --- Scale ----------------------------------------------------------------------

/// A columnar [`Source`](tally_query::Source) for scale runs: rows built
/// directly, without the per-event strings of [`MemSource`].
pub(crate) struct Columns {
    pub(crate) names: Vec<String>,
    pub(crate) rows: Vec<tally_query::Rows>,
    pub(crate) persons: usize,
}

impl Columns {
    /// `events` rows over `persons` persons and `names` names `e0, e1, …`,
    /// spread over 30 days from 2026-01-01, from a fixed xorshift seed.
    pub(crate) fn synthetic(events: usize, persons: usize, names: usize) -> Columns {
        let base = parse_date_or_rfc3339("2026-01-01").unwrap();
        let mut rows: Vec<tally_query::Rows> = (0..names)
            .map(|n| tally_query::Rows {
                name: n as u32,
                ..Default::default()
            })
            .collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..events {
            // Earlier names are more frequent, like a real funnel.
            let r = next();
            let name = ((r % 1000) as f64 / 1000.0).powi(2) * names as f64;
            let rows = &mut rows[name as usize];
            rows.person.push((next() % persons as u64) as u32);
            rows.ts.push(base + (next() % (30 * D as u64)) as i64);
            rows.stage.push(0);
            rows.revenue.push(f64::NAN);
        }
        Columns {
            names: (0..names).map(|n| format!("e{n}")).collect(),
            rows,
            persons,
        }
    }
}

impl tally_query::Source for Columns {
    fn name_id(&self, name: &str) -> Option<u32> {
        self.names.iter().position(|n| n == name).map(|n| n as u32)
    }

    fn person_count(&self) -> usize {
        self.persons
    }

    fn scan(&self, scan: &tally_query::Scan<'_>) -> Result<Vec<tally_query::Rows>, QueryError> {
        Ok(self
            .rows
            .iter()
            .filter(|r| scan.names.is_none_or(|n| n.contains(&r.name)))
            .map(|r| {
                let mut out = tally_query::Rows {
                    name: r.name,
                    ..Default::default()
                };
                for i in 0..r.len() {
                    if (scan.from..scan.to).contains(&r.ts[i]) {
                        out.person.push(r.person[i]);
                        out.ts.push(r.ts[i]);
                        out.stage.push(r.stage[i]);
                        out.revenue.push(r.revenue[i]);
                    }
                }
                out
            })
            .collect())
    }
}

/// The SPEC's scale target: 10M events, 500k persons.
/// `cargo test -p tally-query --release -- --ignored --nocapture scale`
#[test]
#[ignore = "a scale run: use --release"]
fn scale_funnel_10m_events() {
    let src = Columns::synthetic(10_000_000, 500_000, 8);
    let p = FunnelParams {
        steps: vec![
            "e0".into(),
            "e1".into(),
            "e2".into(),
            "e3".into(),
            "e0".into(),
        ],
        window_ms: 7 * D,
        from: parse_date_or_rfc3339("2026-01-01").unwrap(),
        to: parse_date_or_rfc3339("2026-01-31").unwrap(),
    };
    let scan = std::time::Instant::now();
    let _ = tally_query::Source::scan(
        &src,
        &tally_query::Scan {
            names: Some(&[0, 1, 2, 3]),
            from: p.from,
            to: p.to + p.window_ms,
            ..Default::default()
        },
    )
    .unwrap();
    let scan = scan.elapsed();
    let t = std::time::Instant::now();
    let r = funnel::run(&src, &p).unwrap();
    let total = t.elapsed();
    println!(
        "funnel: {total:?} in all, of which the test source's scan ≈ {scan:?}; users {:?}",
        users(&r)
    );
}
