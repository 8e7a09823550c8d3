//! `--by` and `--limit` (SPEC §5): which group each analysis puts an event
//! or a person in, group values, ordering, `other_groups`, the JSON shape;
//! then a property test of every analysis with `--by` against the same
//! analysis without it on a source restricted by hand.

use proptest::prelude::*;
use serde_json::{Value, json};
use tally_event::Stage;
use tally_query::funnel::{self, FunnelParams};
use tally_query::{
    Breakdown, Format, GroupValue, MemEvent, MemSource, Prop, Report, Segment, lifecycle,
};

use crate::seg::{D, H, M, bad, day, groups, ok, t0, users};

fn ev(person: &str, name: &str, ts: i64, props: Value) -> MemEvent {
    MemEvent::new(person, name, ts).props(props)
}

fn funnel_by(src: &MemSource, steps: &str, by: &str) -> Value {
    let (from, to) = (day(0), day(1));
    ok(
        src,
        "funnel",
        &[("steps", steps), ("from", &from), ("to", &to), ("by", by)],
    )
}

/// `(value, step users)` of a grouped funnel.
fn funnel_groups(v: &Value) -> Vec<(Value, Vec<u64>)> {
    groups(v)
        .into_iter()
        .map(|(value, r)| (value, users(&r)))
        .collect()
}

#[test]
fn a_funnel_person_is_in_the_group_of_each_of_their_entries() {
    // p enters from src a at 0 and from src b at 1h, buys at 2h: level 2
    // in both groups, measured from each group's own entry. q enters from
    // a only.
    let src = MemSource::new([
        ev("p", "view", t0(), json!({"src": "a"})),
        ev("p", "view", t0() + H, json!({"src": "b"})),
        ev("p", "buy", t0() + 2 * H, json!({"src": "c"})),
        ev("q", "view", t0(), json!({"src": "a"})),
    ]);
    let r = funnel_by(&src, "view,buy", "src");
    assert_eq!(
        funnel_groups(&r),
        [(json!("a"), vec![2, 1]), (json!("b"), vec![1, 1])]
    );
    assert_eq!(r["by"], "src");
    assert_eq!(r["other_groups"], 0);
    let median =
        |g: usize| r["groups"][g]["result"]["steps"][1]["median_seconds_from_previous"].as_f64();
    assert_eq!((median(0), median(1)), (Some(7200.0), Some(3600.0)));
    // The buy's own value (c) makes no group: it is no entry.
    assert!(!funnel_groups(&r).iter().any(|(v, _)| v == "c"));
}

#[test]
fn repeated_step_names_take_later_steps_from_any_group() {
    // view{a}@0, view{b}@1m, buy@2m: from a's entry the second view is b's
    // (any value); b's entry has no later view.
    let src = MemSource::new([
        ev("p", "view", t0(), json!({"src": "a"})),
        ev("p", "view", t0() + M, json!({"src": "b"})),
        ev("p", "buy", t0() + 2 * M, json!({})),
    ]);
    assert_eq!(
        funnel_groups(&funnel_by(&src, "view,view,buy", "src")),
        [(json!("a"), vec![1, 1, 1]), (json!("b"), vec![1, 0, 0])]
    );
    // At equal timestamps each entry can use the other view as step 2,
    // whichever was stored first.
    for (first, second) in [("a", "b"), ("b", "a")] {
        let src = MemSource::new([
            ev("p", "view", t0(), json!({ "src": first })),
            ev("p", "view", t0(), json!({ "src": second })),
            ev("p", "buy", t0(), json!({})),
        ]);
        assert_eq!(
            funnel_groups(&funnel_by(&src, "view,view,buy", "src")),
            [(json!("a"), vec![1, 1, 1]), (json!("b"), vec![1, 1, 1])]
        );
    }
}

#[test]
fn cohorts_are_grouped_by_the_first_start_with_ties_to_the_smallest_value() {
    let src = MemSource::new([
        // p: two first starts at once, plan b and a: group a.
        ev("p", "signup", t0(), json!({"plan": "b"})),
        ev("p", "signup", t0(), json!({"plan": "a"})),
        // q: a number and a string tie: numbers come first.
        ev("q", "signup", t0() + H, json!({"plan": "x"})),
        ev("q", "signup", t0() + H, json!({"plan": 2})),
        // r: the first start's value, however small a later one is.
        ev("r", "signup", t0() + 2 * H, json!({"plan": "z"})),
        ev("r", "signup", t0() + 3 * H, json!({"plan": "a"})),
        // s: a missing value is null, which is last; true is first.
        ev("s", "signup", t0() + 4 * H, json!({})),
        ev("s", "signup", t0() + 4 * H, json!({"plan": true})),
        ev("p", "invoice", t0() + D, json!({})),
    ]);
    let (from, to) = (day(0), day(7));
    let a = ok(
        &src,
        "activation",
        &[
            ("start", "signup"),
            ("event", "invoice"),
            ("from", &from),
            ("to", &to),
            ("by", "plan"),
        ],
    );
    let got: Vec<(Value, u64, u64)> = groups(&a)
        .into_iter()
        .map(|(v, r)| {
            (
                v,
                r["cohort_size"].as_u64().unwrap(),
                r["activated"].as_u64().unwrap(),
            )
        })
        .collect();
    // All of size 1: by value, booleans, numbers, strings.
    assert_eq!(
        got,
        [
            (json!(true), 1, 0),
            (json!(2), 1, 0),
            (json!("a"), 1, 1),
            (json!("z"), 1, 0)
        ]
    );
    let r = ok(
        &src,
        "retention",
        &[
            ("start", "signup"),
            ("from", &from),
            ("to", &to),
            ("by", "plan"),
        ],
    );
    let got: Vec<(Value, u64)> = groups(&r)
        .into_iter()
        .map(|(v, r)| (v, r["total"]["size"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (json!(true), 1),
            (json!(2), 1),
            (json!("a"), 1),
            (json!("z"), 1)
        ]
    );
}

/// One `e` event per property object on day 0, each by its own person
/// unless `same_person`.
fn trend_source(props: &[Value], same_person: bool) -> MemSource {
    MemSource::new(props.iter().enumerate().map(|(i, p)| {
        let person = if same_person {
            "p".to_string()
        } else {
            format!("p{i}")
        };
        ev(&person, "e", t0() + i as i64 * 1000, p.clone())
    }))
}

fn trend_by(src: &MemSource, extra: &[(&str, &str)]) -> Value {
    let (from, to) = (day(0), day(1));
    let mut pairs = vec![("event", "e"), ("from", from.as_str()), ("to", to.as_str())];
    pairs.extend_from_slice(extra);
    ok(src, "trend", &pairs)
}

fn totals(v: &Value) -> Vec<(Value, Value)> {
    groups(v)
        .into_iter()
        .map(|(value, r)| (value, r["total"].clone()))
        .collect()
}

#[test]
fn groups_are_ordered_by_headline_then_value_and_limited() {
    let p = |v: Value| json!({ "k": v });
    let props = [
        p(json!("c")),
        p(json!("c")),
        p(json!("c")),
        p(json!("b")),
        p(json!("a")),
        p(json!("b")),
        p(json!("a")),
        p(json!("d")),
    ];
    let src = trend_source(&props, false);
    let r = trend_by(&src, &[("by", "k")]);
    assert_eq!(
        totals(&r),
        [
            (json!("c"), json!(3)),
            (json!("a"), json!(2)),
            (json!("b"), json!(2)),
            (json!("d"), json!(1))
        ]
    );
    assert_eq!(r["other_groups"], 0);
    let r = trend_by(&src, &[("by", "k"), ("limit", "2")]);
    assert_eq!(totals(&r), [(json!("c"), json!(3)), (json!("a"), json!(2))]);
    assert_eq!(r["other_groups"], 2);
    let r = trend_by(&src, &[("by", "k"), ("limit", "1000")]);
    assert_eq!(groups(&r).len(), 4);

    // Equal headlines across kinds: booleans, numbers, strings, null last.
    let src = trend_source(
        &[p(json!("x")), p(json!(null)), p(json!(1)), p(json!(false))],
        false,
    );
    let values: Vec<Value> = groups(&trend_by(&src, &[("by", "k")]))
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    assert_eq!(values, [json!(false), json!(1), json!("x"), json!(null)]);
}

#[test]
fn missing_null_objects_and_arrays_are_the_null_group() {
    let src = trend_source(
        &[
            json!({}),
            json!({"k": null}),
            json!({"k": {"a": 1}}),
            json!({"k": [1, 2]}),
            json!({"k": "v"}),
        ],
        false,
    );
    let src = {
        // And an event without any properties.
        let mut s = src;
        s.push(MemEvent::new("q", "e", t0() + H));
        s
    };
    let r = trend_by(&src, &[("by", "k")]);
    assert_eq!(
        totals(&r),
        [(json!(null), json!(5)), (json!("v"), json!(1))]
    );
    // A nested path: utm.source.
    let src = trend_source(
        &[
            json!({"utm": {"source": "news"}}),
            json!({"utm": "news"}),
            json!({"utm.source": "x"}),
        ],
        false,
    );
    let r = trend_by(&src, &[("by", "utm.source")]);
    assert_eq!(
        totals(&r),
        [(json!(null), json!(2)), (json!("news"), json!(1))]
    );
}

#[test]
fn numbers_are_grouped_by_numeric_value() {
    let src = trend_source(
        &[
            json!({"k": 1}),
            json!({"k": 1.0}),
            json!({"k": 1e0}),
            json!({"k": "1"}),
            json!({"k": 1.5}),
        ],
        false,
    );
    let r = trend_by(&src, &[("by", "k")]);
    assert_eq!(
        totals(&r),
        [
            (json!(1), json!(3)),
            (json!(1.5), json!(1)),
            (json!("1"), json!(1))
        ]
    );
}

#[test]
fn lifecycle_and_trend_count_each_event_in_its_own_group() {
    // p has events in both plans: one person in each group; two events in
    // plan a are still one user there.
    let src = MemSource::new([
        MemEvent {
            stage: Some(Stage::Revenue),
            revenue: Some(5.0),
            ..ev("p", "e", t0(), json!({"plan": "a"}))
        },
        ev("p", "e", t0() + H, json!({"plan": "a"})),
        ev("p", "e", t0() + 2 * H, json!({"plan": "b"})),
        ev("q", "e", t0() + 3 * H, json!({"plan": "b"})),
    ]);
    let r = trend_by(&src, &[("by", "plan"), ("measure", "users")]);
    assert_eq!(totals(&r), [(json!("b"), json!(2)), (json!("a"), json!(1))]);
    let r = trend_by(&src, &[("by", "plan")]);
    assert_eq!(totals(&r), [(json!("a"), json!(2)), (json!("b"), json!(2))]);
    let (from, to) = (day(0), day(1));
    let l = ok(
        &src,
        "lifecycle",
        &[("from", &from), ("to", &to), ("by", "plan")],
    );
    let got: Vec<(Value, Value, Value)> = groups(&l)
        .into_iter()
        .map(|(v, r)| (v, r["active_users"].clone(), r["revenue"].clone()))
        .collect();
    assert_eq!(
        got,
        [
            (json!("b"), json!(2), json!(0.0)),
            (json!("a"), json!(1), json!(5.0))
        ]
    );
}

#[test]
fn grouped_json_is_exactly_the_spec_shape() {
    let src = MemSource::new([
        ev("p", "e", t0(), json!({"plan": "a"})),
        ev("q", "e", t0(), json!({"plan": "b"})),
        ev("r", "e", t0(), json!({"plan": "b"})),
    ]);
    let (from, to) = (t0(), t0() + D);
    let p = lifecycle::LifecycleParams { from, to };
    let by = Breakdown::new("plan", 1).unwrap();
    let got = serde_json::to_value(lifecycle::run_by(&src, &p, &Segment::default(), &by).unwrap())
        .unwrap();
    // The group's result is exactly the analysis's own answer for it.
    let only_b = MemSource::new([ev("q", "e", t0(), json!({})), ev("r", "e", t0(), json!({}))]);
    let want = json!({
        "by": "plan",
        "groups": [{"value": "b", "result": lifecycle::run(&only_b, &p).unwrap()}],
        "other_groups": 1,
    });
    assert_eq!(got, want);
}

#[test]
fn tables_and_csv_show_every_group() {
    let src = MemSource::new([
        ev("p", "view", t0(), json!({"src": "ads"})),
        ev("p", "buy", t0() + H, json!({})),
        ev("q", "view", t0(), json!({"src": "=cmd"})),
        ev("r", "view", t0(), json!({})),
    ]);
    let p = FunnelParams {
        steps: vec!["view".into(), "buy".into()],
        window_ms: D,
        from: t0(),
        to: t0() + D,
    };
    let by = Breakdown::new("src", 20).unwrap();
    let r = funnel::run_by(&src, &p, &Segment::default(), &by).unwrap();
    let csv = r.render(Format::Csv);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "group,step,event,users,conversion_from_previous,conversion_from_first,median_seconds_from_previous"
        )
    );
    // Groups in order (all of one user: by value, null last), each with
    // its steps; a value that looks like a formula is defused.
    let rest: Vec<&str> = lines.collect();
    assert_eq!(rest.len(), 6, "{csv}");
    assert!(rest[0].starts_with("'=cmd,1,view,1,"), "{csv}");
    assert!(rest[2].starts_with("ads,1,view,1,"), "{csv}");
    assert!(rest[3].starts_with("ads,2,buy,1,"), "{csv}");
    assert!(rest[4].starts_with(",1,view,1,"), "{csv}");
    let table = r.render(Format::Table);
    for needle in ["by src", "ads", "=cmd", "(none)", "1. view", "2. buy"] {
        assert!(table.contains(needle), "{needle}: {table}");
    }
    let limited = funnel::run_by(
        &src,
        &p,
        &Segment::default(),
        &Breakdown::new("src", 1).unwrap(),
    )
    .unwrap()
    .render(Format::Table);
    assert!(limited.contains("2 more groups not shown"), "{limited}");
    // Without --by the output is the analysis's own.
    assert_eq!(
        funnel::run_segment(&src, &p, &Segment::default())
            .unwrap()
            .render(Format::Json),
        funnel::run(&src, &p).unwrap().render(Format::Json)
    );
}

#[test]
fn bad_breakdowns_name_their_parameter() {
    let src = MemSource::default();
    let (from, to) = (day(0), day(1));
    let base = [("event", "e"), ("from", from.as_str()), ("to", to.as_str())];
    let msg = |extra: &[(&str, &str)]| bad(&src, "trend", &[base.as_slice(), extra].concat());
    for limit in ["0", "1001", "x", "-1"] {
        let m = msg(&[("by", "plan"), ("limit", limit)]);
        assert!(m.starts_with("--limit: "), "{limit}: {m}");
    }
    assert!(msg(&[("limit", "5")]).starts_with("--limit: only applies with --by"));
    for by in ["", " ", "a..b", ".a"] {
        let m = msg(&[("by", by)]);
        assert!(m.starts_with("--by: "), "{by:?}: {m}");
    }
    assert!(msg(&[("by", "a"), ("by", "b")]).starts_with("--by: given more than once"));
}

// --- Property test: --by against the analysis on a source restricted by hand

/// The property values the random events take (index 0: no properties).
fn value(i: usize) -> Option<Value> {
    [
        None,
        Some(json!("a")),
        Some(json!("b")),
        Some(json!(1)),
        Some(json!(1.0)),
        Some(json!(true)),
        Some(json!({"k": 1})),
        Some(json!(null)),
    ][i]
        .clone()
}

/// `(person, name, quarter hours, value, revenue)`.
type Ev = (usize, usize, i64, usize, Option<i8>);

const NAMES: [&str; 3] = ["a", "b", "c"];

/// Parameters of one query.
type Pairs = Vec<(&'static str, String)>;

fn mem(e: &Ev) -> MemEvent {
    let &(person, name, q, v, revenue) = e;
    let m = MemEvent {
        revenue: revenue.map(f64::from),
        stage: revenue.map(|_| Stage::Revenue),
        ..MemEvent::new(&format!("p{person}"), NAMES[name], t0() + q * 15 * M)
    };
    match value(v) {
        Some(p) => m.props(json!({ "g": p })),
        None => m,
    }
}

fn group_of(e: &Ev) -> GroupValue {
    let props = value(e.3).map(|p| json!({ "g": p })).unwrap_or(Value::Null);
    GroupValue::of(&Prop::at_value(&props, &["g".to_string()]))
}

/// SPEC §5's order of groups: headline desc, then value.
fn check_order(got: &Value, headline: impl Fn(&Value) -> f64) -> Result<(), TestCaseError> {
    let gs = groups(got);
    for w in gs.windows(2) {
        let (a, b) = (headline(&w[0].1), headline(&w[1].1));
        let va: GroupValue = serde_json::from_value(w[0].0.clone()).unwrap();
        let vb: GroupValue = serde_json::from_value(w[1].0.clone()).unwrap();
        prop_assert!(a > b || (a == b && va < vb), "order: {:?} {:?}", w[0], w[1]);
    }
    Ok(())
}

/// The funnel of one group by brute force (SPEC §4 with §5's entry
/// rule): per person the best level over their entries *of that group*,
/// with every way to pick later steps among all their events.
fn naive_funnel_users(
    events: &[Ev],
    steps: &[usize],
    window: i64,
    from: i64,
    to: i64,
    g: &GroupValue,
) -> Vec<u64> {
    fn reach(
        evs: &[(usize, i64)],
        steps: &[usize],
        k: usize,
        prev: i64,
        deadline: i64,
        used: &mut Vec<usize>,
    ) -> usize {
        if k == steps.len() {
            return k;
        }
        let mut best = k;
        for (i, &(name, ts)) in evs.iter().enumerate() {
            if name == steps[k] && ts >= prev && ts <= deadline && !used.contains(&i) {
                used.push(i);
                best = best.max(reach(evs, steps, k + 1, ts, deadline, used));
                used.pop();
            }
        }
        best
    }
    let mut users = vec![0u64; steps.len()];
    for person in 0..4 {
        let mine: Vec<&Ev> = events.iter().filter(|e| e.0 == person).collect();
        let evs: Vec<(usize, i64)> = mine.iter().map(|e| (e.1, t0() + e.2 * 15 * M)).collect();
        let mut level = 0;
        for (i, e) in mine.iter().enumerate() {
            let (name, ts) = evs[i];
            if name != steps[0] || ts < from || ts >= to || group_of(e) != *g {
                continue;
            }
            level = level.max(reach(&evs, steps, 1, ts, ts + window, &mut vec![i]));
        }
        for u in users.iter_mut().take(level) {
            *u += 1;
        }
    }
    users
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]

    #[test]
    fn by_matches_the_analysis_on_each_group_by_hand(
        events in prop::collection::vec(
            (0..4usize, 0..3usize, 0..(3 * 24 * 4i64), 0..8usize, prop::option::of(-3..10i8)),
            0..28,
        ),
        steps in prop::collection::vec(0..3usize, 2..4),
        limit in 1..6usize,
    ) {
        let src = MemSource::new(events.iter().map(mem));
        let (from, to) = (day(0), day(2));
        let range = [("from", from.as_str()), ("to", to.as_str())];
        let limit_s = limit.to_string();
        let by = [("by", "g"), ("limit", limit_s.as_str())];
        let with = |pairs: &[(&'static str, &str)]| -> Pairs {
            range.iter().chain(pairs).map(|&(k, v)| (k, v.to_string())).collect()
        };
        let run = |src: &MemSource, name: &str, pairs: &[(&'static str, String)], grouped: bool| {
            let mut p: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if grouped {
                p.extend_from_slice(&by);
            }
            ok(src, name, &p)
        };
        let distinct = |evs: &[&Ev]| {
            let mut vs: Vec<GroupValue> = evs.iter().map(|e| group_of(e)).collect();
            vs.sort();
            vs.dedup();
            vs
        };
        let in_range = |e: &Ev| (0..2 * 24 * 4).contains(&e.2);

        // Lifecycle and trend: a group is the analysis over its events.
        let step_names: Vec<&str> = steps.iter().map(|&s| NAMES[s]).collect();
        let steps_s = step_names.join(",");
        let per_event: Vec<(&str, Pairs, &str)> = vec![
            ("lifecycle", with(&[]), "active_users"),
            ("trend", with(&[("event", "any"), ("measure", "users"), ("interval", "day")]), "total"),
            ("trend", with(&[("event", "a"), ("measure", "revenue"), ("interval", "week")]), "total"),
        ];
        for (name, pairs, headline) in per_event {
            let got = run(&src, name, &pairs, true);
            check_order(&got, |r| r[headline].as_f64().unwrap())?;
            let relevant: Vec<&Ev> = events
                .iter()
                .filter(|e| in_range(e) && (name == "lifecycle" || pairs.iter().any(|p| p.1 == "any") || e.1 == 0))
                .collect();
            let values = distinct(&relevant);
            prop_assert_eq!(got["other_groups"].as_u64().unwrap() as usize, values.len().saturating_sub(limit));
            for (v, result) in groups(&got) {
                let v: GroupValue = serde_json::from_value(v).unwrap();
                let only = MemSource::new(events.iter().filter(|e| group_of(e) == v).map(mem));
                prop_assert_eq!(&result, &run(&only, name, &pairs, false), "{} {:?}", name, v);
            }
        }

        // Activation and retention: a person's group is their first
        // start's value (ties: the smallest); a group is the analysis over
        // its persons' events.
        let cohort_pairs: Vec<(&str, Pairs, &str)> = vec![
            ("activation", with(&[("start", "a"), ("event", "b"), ("within", "1d")]), "cohort_size"),
            ("retention", with(&[("start", "a"), ("return", "any"), ("period", "day"), ("periods", "2")]), "size"),
        ];
        let mut person_group: Vec<Option<GroupValue>> = vec![None; 4];
        for (person, slot) in person_group.iter_mut().enumerate() {
            let first = events.iter().filter(|e| e.0 == person && e.1 == 0).map(|e| e.2).min();
            if let Some(first) = first.filter(|&q| q < 2 * 24 * 4) {
                *slot = events
                    .iter()
                    .filter(|e| e.0 == person && e.1 == 0 && e.2 == first)
                    .map(group_of)
                    .min();
            }
        }
        for (name, pairs, headline) in cohort_pairs {
            let got = run(&src, name, &pairs, true);
            check_order(&got, |r| {
                if name == "retention" { r["total"][headline].as_f64().unwrap() } else { r[headline].as_f64().unwrap() }
            })?;
            let mut values: Vec<GroupValue> = person_group.iter().flatten().cloned().collect();
            values.sort();
            values.dedup();
            prop_assert_eq!(got["other_groups"].as_u64().unwrap() as usize, values.len().saturating_sub(limit));
            for (v, result) in groups(&got) {
                let v: GroupValue = serde_json::from_value(v).unwrap();
                let only = MemSource::new(
                    events.iter().filter(|e| person_group[e.0].as_ref() == Some(&v)).map(mem),
                );
                prop_assert_eq!(&result, &run(&only, name, &pairs, false), "{} {:?}", name, v);
            }
        }

        // Funnel: against a brute force with the entry rule.
        let pairs = with(&[("steps", steps_s.as_str()), ("window", "6h")]);
        let got = run(&src, "funnel", &pairs, true);
        check_order(&got, |r| r["steps"][0]["users"].as_f64().unwrap())?;
        let entries: Vec<&Ev> = events.iter().filter(|e| in_range(e) && e.1 == steps[0]).collect();
        let values = distinct(&entries);
        prop_assert_eq!(got["other_groups"].as_u64().unwrap() as usize, values.len().saturating_sub(limit));
        let listed = groups(&got);
        prop_assert_eq!(listed.len(), values.len().min(limit));
        for (v, result) in listed {
            let v: GroupValue = serde_json::from_value(v).unwrap();
            let want = naive_funnel_users(&events, &steps, 6 * H, t0(), t0() + 2 * D, &v);
            prop_assert_eq!(users(&result), want, "funnel {:?}", v);
        }
    }
}

// --- Scale: a breakdown by a 10-value property -------------------------------

/// [`Columns`](crate::funnel::Columns) with a property of 10 values (the
/// row's position modulo 10), so `by` costs what a store's value column
/// would: the analysis's share is what the scale runs time.
struct TenValues(crate::funnel::Columns);

impl tally_query::Source for TenValues {
    fn name_id(&self, name: &str) -> Option<u32> {
        self.0.name_id(name)
    }

    fn person_count(&self) -> usize {
        self.0.person_count()
    }

    fn scan(
        &self,
        scan: &tally_query::Scan<'_>,
    ) -> Result<Vec<tally_query::Rows>, tally_query::QueryError> {
        let mut rows = self.0.scan(scan)?;
        if scan.by.is_some() {
            for r in &mut rows {
                r.values = (0..10).map(|v| GroupValue::Num(f64::from(v))).collect();
                r.group = (0..r.len() as u32).map(|i| i % 10).collect();
            }
        }
        Ok(rows)
    }
}

/// `cargo test -p tally-query --release -- --ignored --nocapture scale`
#[test]
#[ignore = "a scale run: use --release"]
fn scale_breakdowns_10m_events() {
    use tally_event::time::parse_date_or_rfc3339;
    let src = TenValues(crate::funnel::Columns::synthetic(10_000_000, 500_000, 8));
    let from = parse_date_or_rfc3339("2026-01-08").unwrap();
    let to = parse_date_or_rfc3339("2026-01-31").unwrap();
    let seg = Segment::default();
    let by = Breakdown::new("v", 20).unwrap();
    let time = |what: &str, f: &dyn Fn() -> usize| {
        let t = std::time::Instant::now();
        let groups = f();
        println!("{what}: {:?} ({groups} groups)", t.elapsed());
    };
    let f = FunnelParams {
        steps: ["e0", "e1", "e2", "e3", "e0"].map(String::from).to_vec(),
        window_ms: 7 * D,
        from,
        to,
    };
    time("funnel", &|| {
        funnel::run_segment(&src, &f, &seg).map(|_| 1).unwrap()
    });
    time("funnel --by", &|| {
        funnel::run_by(&src, &f, &seg, &by).unwrap().groups.len()
    });
    let a = tally_query::activation::ActivationParams {
        start: "e0".into(),
        event: "e1".into(),
        count: 2,
        within_ms: 7 * D,
        from,
        to,
        as_of: to + 30 * D,
        tz: tally_query::Zone::utc(),
    };
    use tally_query::activation;
    time("activation", &|| {
        activation::run_segment(&src, &a, &seg).map(|_| 1).unwrap()
    });
    time("activation --by", &|| {
        activation::run_by(&src, &a, &seg, &by)
            .unwrap()
            .groups
            .len()
    });
    let l = lifecycle::LifecycleParams { from, to };
    time("lifecycle", &|| {
        lifecycle::run_segment(&src, &l, &seg).map(|_| 1).unwrap()
    });
    time("lifecycle --by", &|| {
        lifecycle::run_by(&src, &l, &seg, &by).unwrap().groups.len()
    });
    let mut raw = tally_query::RawParams::new([
        ("start", "e0"),
        ("return", "e1"),
        ("from", "2026-01-08"),
        ("to", "2026-01-31"),
    ]);
    let r = tally_query::retention::RetentionParams::from_raw(&mut raw, to).unwrap();
    use tally_query::retention;
    time("retention", &|| {
        retention::run_segment(&src, &r, &seg).map(|_| 1).unwrap()
    });
    time("retention --by", &|| {
        retention::run_by(&src, &r, &seg, &by).unwrap().groups.len()
    });
    let mut raw = tally_query::RawParams::new([
        ("event", "any"),
        ("measure", "users"),
        ("from", "2026-01-08"),
        ("to", "2026-01-31"),
    ]);
    let t = tally_query::trend::TrendParams::from_raw(&mut raw, to).unwrap();
    use tally_query::trend;
    time("trend users", &|| {
        trend::run_segment(&src, &t, &seg).map(|_| 1).unwrap()
    });
    time("trend users --by", &|| {
        trend::run_by(&src, &t, &seg, &by).unwrap().groups.len()
    });
}
