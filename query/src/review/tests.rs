//! The review against hand-computed numbers, the KPI file's errors and the
//! JSON of SPEC §6.

use serde_json::json;
use tally_event::Stage;
use tally_event::time::parse_rfc3339;

use super::*;
use crate::source::{MemEvent, MemSource};

fn t(s: &str) -> i64 {
    parse_rfc3339(s).unwrap()
}

fn ev(person: &str, name: &str, at: &str) -> MemEvent {
    MemEvent::new(person, name, t(at))
}

fn paid(person: &str, name: &str, at: &str, amount: f64) -> MemEvent {
    MemEvent {
        stage: Some(Stage::Revenue),
        revenue: Some(amount),
        ..ev(person, name, at)
    }
}

/// Week W1 = Monday 2026-03-02 .. 03-09 (reported for counts as of
/// Wednesday 03-11), W0 = 02-23 .. 03-02 before it, W-1 = 02-16 .. 02-23.
fn dataset() -> MemSource {
    MemSource::new([
        // W0: p3 signs up, sends one invoice 22 h later, gets a refund.
        ev("p3", "signup", "2026-02-24T10:00:00Z"),
        ev("p3", "invoice_sent", "2026-02-25T08:00:00Z"),
        paid("p3", "refund", "2026-02-26T10:00:00Z", -10.0),
        // W1: p1 signs up, invoices after 23 h and 46 h, buys.
        ev("p1", "signup", "2026-03-03T10:00:00Z"),
        ev("p1", "invoice_sent", "2026-03-04T09:00:00Z"),
        ev("p1", "invoice_sent", "2026-03-05T08:00:00Z"),
        paid("p1", "purchase", "2026-03-05T12:00:00Z", 30.0),
        // W1: p2 signs up, invoices exactly 48 h later, buys.
        ev("p2", "signup", "2026-03-04T10:00:00Z"),
        ev("p2", "invoice_sent", "2026-03-06T10:00:00Z"),
        paid("p2", "purchase", "2026-03-07T12:00:00Z", 50.0),
        // W1: p4 visits and buys without signing up.
        ev("p4", "visit", "2026-03-03T12:00:00Z"),
        paid("p4", "purchase", "2026-03-06T12:00:00Z", 20.0),
        // After W1 (not reported).
        ev("p5", "signup", "2026-03-10T10:00:00Z"),
    ])
}

fn params(as_of: &str) -> ReviewParams {
    ReviewParams {
        period: ReviewPeriod::Week,
        as_of: t(as_of),
        tz: Zone::utc(),
    }
}

fn review(src: &MemSource, file: &str, as_of: &str) -> ReviewResult {
    let kpis = parse_kpis("kpis.toml", file).unwrap_or_else(|e| panic!("{e}"));
    run(src, &kpis, &params(as_of)).unwrap()
}

fn one(file: &str) -> KpiResult {
    let r = review(&dataset(), file, "2026-03-11T00:00:00Z");
    assert_eq!(r.kpis.len(), 1);
    r.kpis[0].clone()
}

fn f(x: Option<Num>) -> Option<f64> {
    x.map(Num::as_f64)
}

const W1: (&str, &str) = ("2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z");
const W0: (&str, &str) = ("2026-02-23T00:00:00Z", "2026-03-02T00:00:00Z");

fn assert_period(k: &KpiResult, now: (&str, &str), before: (&str, &str)) {
    assert_eq!((k.from.as_str(), k.to.as_str()), now, "{}", k.name);
    assert_eq!(
        (k.previous.from.as_str(), k.previous.to.as_str()),
        before,
        "{}",
        k.name
    );
}

#[test]
fn events_count_in_the_last_whole_week_and_the_one_before() {
    let k = one("[[kpi]]\nname = \"Signups\"\nmetric = \"events\"\nevent = \"signup\"\n");
    assert_period(&k, W1, W0);
    assert_eq!(k.value, Some(Num::Int(2)));
    assert_eq!(k.previous.value, Some(Num::Int(1)));
    assert_eq!(k.change, Some(Num::Int(1)));
    // Counts carry no numerator or denominator.
    assert_eq!((k.numerator, k.denominator), (None, None));
}

#[test]
fn users_of_any_event() {
    let k = one("[[kpi]]\nname = \"Active\"\nmetric = \"users\"\nevent = \"any\"\n");
    assert_eq!(k.value, Some(Num::Int(3)), "p1, p2, p4");
    assert_eq!(k.previous.value, Some(Num::Int(1)), "p3");
}

#[test]
fn lifecycle_money_metrics() {
    let r = review(
        &dataset(),
        r#"
[[kpi]]
name = "Revenue"
metric = "revenue"
[[kpi]]
name = "Paying"
metric = "paying_users"
[[kpi]]
name = "AOV"
metric = "aov"
[[kpi]]
name = "ARPU"
metric = "arpu"
"#,
        "2026-03-11T00:00:00Z",
    );
    let [rev, paying, aov, arpu] = &r.kpis[..] else {
        panic!("four KPIs")
    };
    assert_eq!(f(rev.value), Some(100.0));
    assert_eq!(f(rev.previous.value), Some(-10.0));
    assert_eq!(f(rev.change), Some(110.0));
    assert_eq!(paying.value, Some(Num::Int(3)));
    assert_eq!(paying.previous.value, Some(Num::Int(0)));
    // AOV = positive amounts / orders; W0 has no order: null, no change.
    assert_eq!(f(aov.value), Some(100.0 / 3.0));
    assert_eq!(f(aov.numerator), Some(100.0));
    assert_eq!(aov.denominator, Some(Num::Int(3)));
    assert_eq!((aov.previous.value, aov.change), (None, None));
    // ARPU = net revenue / active users.
    assert_eq!(f(arpu.value), Some(100.0 / 3.0));
    assert_eq!(arpu.denominator, Some(Num::Int(3)));
    assert_eq!(f(arpu.previous.value), Some(-10.0));
}

#[test]
fn ratio_of_two_counts() {
    let k = one(r#"
[[kpi]]
name = "Invoices per signup"
metric = "ratio"
numerator = { metric = "events", event = "invoice_sent" }
denominator = { metric = "events", event = "signup" }
"#);
    assert_eq!(f(k.value), Some(1.5));
    assert_eq!(k.numerator, Some(Num::Int(3)));
    assert_eq!(k.denominator, Some(Num::Int(2)));
    assert_eq!(f(k.previous.value), Some(1.0));
    assert_eq!(f(k.change), Some(0.5));
}

#[test]
fn a_zero_denominator_is_a_null_value_that_never_trips() {
    let k = one(r#"
[[kpi]]
name = "Errors per request"
metric = "ratio"
numerator = { metric = "events", event = "error" }
denominator = { metric = "events", event = "request" }
target = "< 0.01"
tripwire = "> 0.05"
"#);
    assert_eq!(k.value, None);
    assert_eq!(k.numerator, Some(Num::Int(0)));
    assert_eq!(k.denominator, Some(Num::Int(0)));
    assert_eq!(k.target_met, None);
    assert!(!k.tripped);
    assert_eq!(k.change, None);
}

#[test]
fn funnel_waits_for_its_window_and_reports_the_last_steps_conversion() {
    // Window 1d: W1 ended 03-09, + 1 d = 03-10 <= as_of: W1 is reported.
    let k = one(r#"
[[kpi]]
name = "Invoice within a day"
metric = "funnel"
steps = ["signup", "invoice_sent"]
window = "1d"
"#);
    assert_period(&k, W1, W0);
    // p1 invoices 23 h after signing up, p2 48 h after: 1 of 2.
    assert_eq!(f(k.value), Some(0.5));
    assert_eq!(
        (k.numerator, k.denominator),
        (Some(Num::Int(1)), Some(Num::Int(2)))
    );
    assert_eq!(f(k.previous.value), Some(1.0));
    // With a 3-day window W1 is not mature on 03-11: W0 is reported.
    let r = review(
        &dataset(),
        "[[kpi]]\nname = \"F\"\nmetric = \"funnel\"\nsteps = \"signup,invoice_sent\"\nwindow = \"3d\"\n",
        "2026-03-11T00:00:00Z",
    );
    assert_period(
        &r.kpis[0],
        W0,
        ("2026-02-16T00:00:00Z", "2026-02-23T00:00:00Z"),
    );
}

#[test]
fn activation_reports_the_latest_cohort_week_past_within_and_trips() {
    let r = review(
        &dataset(),
        r#"
[[kpi]]
name = "Activated: 2 invoices in 7 days"
stage = "activation"
metric = "activation"
start = "signup"
event = "invoice_sent"
count = 2
within = "7d"
target = ">= 0.4"
tripwire = "< 0.3"
"#,
        "2026-03-11T00:00:00Z",
    );
    let k = &r.kpis[0];
    // W1 + 7 d = 03-16 > as_of; W0 + 7 d = 03-09 <= as_of.
    assert_period(k, W0, ("2026-02-16T00:00:00Z", "2026-02-23T00:00:00Z"));
    // p3 sent one invoice: 0 of 1.
    assert_eq!(f(k.value), Some(0.0));
    assert_eq!(
        (k.numerator, k.denominator),
        (Some(Num::Int(0)), Some(Num::Int(1)))
    );
    assert_eq!(k.previous.value, None, "nobody signed up the week before");
    assert_eq!(k.target_met, Some(false));
    assert!(k.tripped);
    assert_eq!(
        r.tripped,
        vec!["Activated: 2 invoices in 7 days".to_string()]
    );
    // A week later W1 is mature: p1 sent two invoices within 7 days, p2 one.
    let r = review(
        &dataset(),
        "[[kpi]]\nname = \"A\"\nmetric = \"activation\"\nstart = \"signup\"\nevent = \"invoice_sent\"\ncount = 2\nwithin = \"7d\"\ntarget = \">= 0.4\"\n",
        "2026-03-16T00:00:00Z",
    );
    assert_period(&r.kpis[0], W1, W0);
    assert_eq!(f(r.kpis[0].value), Some(0.5));
    assert_eq!(r.kpis[0].target_met, Some(true));
    assert_eq!(f(r.kpis[0].change), Some(0.5));
    assert!(r.tripped.is_empty());
}

#[test]
fn retention_bounded_and_unbounded() {
    let file = |unbounded: bool| {
        format!(
            "[[kpi]]\nname = \"Day-1 retention\"\nmetric = \"retention\"\nstart = \"signup\"\n\
             return = \"invoice_sent\"\nperiod = \"day\"\nk = 1\nunbounded = {unbounded}\n"
        )
    };
    // Lag (k + 1) × 1 d = 2 d: W1 + 2 d = 03-11 <= as_of.
    let k = one(&file(false));
    assert_period(&k, W1, W0);
    // p1 came back 46 h after signing up (period 1); p2 at 48 h (period 2).
    assert_eq!(f(k.value), Some(0.5));
    assert_eq!(
        (k.numerator, k.denominator),
        (Some(Num::Int(1)), Some(Num::Int(2)))
    );
    // p3's invoice 22 h after signup is period 0: not retained on day 1.
    assert_eq!(f(k.previous.value), Some(0.0));
    let k = one(&file(true));
    assert_eq!(f(k.value), Some(1.0));
    // One millisecond before maturity, the week before is reported.
    let r = review(&dataset(), &file(false), "2026-03-10T23:59:59.999Z");
    assert_period(
        &r.kpis[0],
        W0,
        ("2026-02-16T00:00:00Z", "2026-02-23T00:00:00Z"),
    );
}

#[test]
fn weeks_are_local_in_the_review_zone() {
    let src = MemSource::new([
        // Monday 03-23 00:30 in Berlin, still Sunday in UTC.
        ev("a", "x", "2026-03-22T23:30:00Z"),
        ev("b", "x", "2026-03-22T23:40:00Z"),
        // Monday 03-30 00:30 in Berlin (+02:00), still Sunday in UTC.
        ev("c", "x", "2026-03-29T22:30:00Z"),
    ]);
    let kpis = parse_kpis(
        "kpis.toml",
        "[[kpi]]\nname = \"X\"\nmetric = \"events\"\nevent = \"x\"\n",
    )
    .unwrap();
    let mut p = params("2026-03-31T12:00:00Z");
    let utc = run(&src, &kpis, &p).unwrap();
    assert_eq!(utc.kpis[0].value, Some(Num::Int(1)));
    assert_eq!(utc.kpis[0].from, "2026-03-23T00:00:00Z");
    p.tz = Zone::parse("Europe/Berlin").unwrap();
    let berlin = run(&src, &kpis, &p).unwrap();
    // The DST week: 167 hours from local midnight to local midnight.
    assert_eq!(berlin.kpis[0].from, "2026-03-22T23:00:00Z");
    assert_eq!(berlin.kpis[0].to, "2026-03-29T22:00:00Z");
    assert_eq!(berlin.kpis[0].value, Some(Num::Int(2)));
}

#[test]
fn json_is_exactly_the_spec_shape() {
    let r = review(
        &dataset(),
        r#"
[[kpi]]
name = "Invoice within a day"
stage = "activation"
metric = "funnel"
steps = ["signup", "invoice_sent"]
window = "1d"
target = ">= 0.6"
tripwire = "< 0.3"
pair = ["Signups"]

[[kpi]]
name = "Signups"
metric = "events"
event = "signup"
"#,
        "2026-03-11T00:00:00Z",
    );
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v,
        json!({
            "period": "week",
            "as_of": "2026-03-11T00:00:00Z",
            "kpis": [
                {
                    "name": "Invoice within a day", "stage": "activation", "metric": "funnel",
                    "from": "2026-03-02T00:00:00Z", "to": "2026-03-09T00:00:00Z",
                    "value": 0.5, "numerator": 1, "denominator": 2,
                    "previous": {"from": "2026-02-23T00:00:00Z", "to": "2026-03-02T00:00:00Z", "value": 1.0},
                    "change": -0.5, "target": ">= 0.6", "target_met": false,
                    "tripwire": "< 0.3", "tripped": false, "pair": ["Signups"]
                },
                {
                    "name": "Signups", "stage": null, "metric": "events",
                    "from": "2026-03-02T00:00:00Z", "to": "2026-03-09T00:00:00Z",
                    "value": 2, "numerator": null, "denominator": null,
                    "previous": {"from": "2026-02-23T00:00:00Z", "to": "2026-03-02T00:00:00Z", "value": 1},
                    "change": 1, "target": null, "target_met": null,
                    "tripwire": null, "tripped": false, "pair": []
                }
            ],
            "tripped": []
        })
    );
    // Key order is the SPEC's, and counts are JSON integers.
    let text = r.render(ReviewFormat::Json, &Zone::utc());
    let keys = [
        "\"name\"",
        "\"stage\"",
        "\"metric\"",
        "\"from\"",
        "\"to\"",
        "\"value\"",
        "\"numerator\"",
        "\"denominator\"",
        "\"previous\"",
        "\"change\"",
        "\"target\"",
        "\"target_met\"",
        "\"tripwire\"",
        "\"tripped\"",
        "\"pair\"",
    ];
    let mut at = 0;
    for k in keys {
        at += text[at..]
            .find(k)
            .unwrap_or_else(|| panic!("{k} after {at}"));
    }
    assert!(text.contains("\"value\": 2,"), "{text}");
    // The answer reads back (what `tally review --server` does).
    let back: ReviewResult = serde_json::from_str(&text).unwrap();
    assert_eq!(back, r);
}

#[test]
fn table_groups_by_stage_with_pairs_and_statuses() {
    let r = review(
        &dataset(),
        r#"
[[kpi]]
name = "Revenue"
stage = "revenue"
metric = "revenue"
[[kpi]]
name = "Signups"
stage = "acquisition"
metric = "events"
event = "signup"
target = ">= 2"
pair = ["Invoice within a day"]
[[kpi]]
name = "Invoice within a day"
metric = "funnel"
steps = ["signup", "invoice_sent"]
window = "1d"
tripwire = "< 0.6"
"#,
        "2026-03-11T00:00:00Z",
    );
    let table = r.render(ReviewFormat::Table, &Zone::utc());
    let pos = |s: &str| table.find(s).unwrap_or_else(|| panic!("{s} in\n{table}"));
    assert!(pos("ACQUISITION") < pos("REVENUE"), "{table}");
    assert!(pos("REVENUE") < pos("(no stage)"), "{table}");
    assert!(pos("  Signups") < pos("↳ paired with Invoice within a day: 50.0% ▼ -50.0 pts"));
    assert!(pos("↳ paired with") < pos("REVENUE"));
    assert!(table.contains(">= 2 ✓ met"), "{table}");
    assert!(table.contains("< 0.6 TRIPPED"), "{table}");
    assert!(table.contains("1 / 2"), "{table}");
    assert!(table.contains("▲ +110.00"), "{table}");
    assert!(table.contains("week of 2026-03-02"), "{table}");
    assert!(table.contains("TRIPPED: Invoice within a day"), "{table}");

    let md = r.render(ReviewFormat::Markdown, &Zone::utc());
    let wins = &md[md.find("### Wins").unwrap()..md.find("### Watch").unwrap()];
    let watch = &md[md.find("### Watch").unwrap()..md.find("### All KPIs").unwrap()];
    assert!(
        wins.contains("**Signups**") && wins.contains("target >= 2 met"),
        "{md}"
    );
    // Revenue rose, but has no target or tripwire to say that is good.
    assert!(!wins.contains("**Revenue**"), "{md}");
    assert!(
        watch.contains("**Invoice within a day**") && watch.contains("tripwire < 0.6 tripped"),
        "{md}"
    );
    assert!(
        md.contains("| revenue | Revenue | week of 2026-03-02 | 100.00 |"),
        "{md}"
    );

    let csv = r.render(ReviewFormat::Csv, &Zone::utc());
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("name,stage,metric,from,to,value,numerator,denominator"));
    assert_eq!(
        lines[2],
        "Signups,acquisition,events,2026-03-02T00:00:00Z,2026-03-09T00:00:00Z,2,,,\
         2026-02-23T00:00:00Z,2026-03-02T00:00:00Z,1,1,>= 2,true,,false,Invoice within a day"
    );
}

#[test]
fn markdown_watches_a_pair_that_moved_the_wrong_way() {
    let r = review(
        &dataset(),
        r#"
[[kpi]]
name = "Paying"
metric = "paying_users"
target = ">= 1"
pair = ["ARPU"]
[[kpi]]
name = "ARPU"
metric = "arpu"
tripwire = "> 1000"
[[kpi]]
name = "Signups"
metric = "events"
event = "signup"
tripwire = "> 1000"
"#,
        // Next week (W2 = 03-09..03-16): one signup, no purchase.
        "2026-03-18T00:00:00Z",
    );
    let md = r.render(ReviewFormat::Markdown, &Zone::utc());
    let watch = &md[md.find("### Watch").unwrap()..md.find("### All KPIs").unwrap()];
    // ARPU fell from 33.33 to 0 and a "> 1000" tripwire says up is bad,
    // so it moved the right way: not watched. Signups fell (1 from 2) but
    // are paired with nothing: not watched either.
    assert!(watch.contains("- none"), "{md}");
    let wins = &md[md.find("### Wins").unwrap()..md.find("### Watch").unwrap()];
    assert!(
        wins.contains("**ARPU**") && wins.contains("moved the right way"),
        "{md}"
    );
    // The goal fell below its target: not a win.
    assert!(!wins.contains("**Paying**"), "{md}");

    let r = review(
        &dataset(),
        "[[kpi]]\nname = \"Paying\"\nmetric = \"paying_users\"\npair = [\"ARPU\", \"Revenue\"]\n\
         [[kpi]]\nname = \"ARPU\"\nmetric = \"arpu\"\ntripwire = \"< 5\"\n\
         [[kpi]]\nname = \"Revenue\"\nmetric = \"revenue\"\n",
        "2026-03-18T00:00:00Z",
    );
    let md = r.render(ReviewFormat::Markdown, &Zone::utc());
    let watch = &md[md.find("### Watch").unwrap()..md.find("### All KPIs").unwrap()];
    assert!(
        watch.contains("**ARPU**") && watch.contains("tripwire < 5 tripped"),
        "{md}"
    );
    // Revenue has neither target nor tripwire: higher is better, and it
    // fell from 100 to 0 beside the goal it is paired with.
    assert!(
        watch.contains("**Revenue** (week of 2026-03-09): 0.00, ▼ -100.00 — moved the wrong way (paired with Paying)"),
        "{md}"
    );
    // Paying fell too, but is no one's pair.
    assert!(!watch.contains("**Paying**"), "{md}");
}

#[test]
fn every_problem_of_a_bad_file_at_once_naming_file_kpi_and_field() {
    let err = parse_kpis(
        "conf/kpis.toml",
        r#"
[[kpi]]
name = "A"
metric = "conversion"

[[kpi]]
name = "B"
metric = "activation"
event = "invoice_sent"
within = "30x"

[[kpi]]
name = "A"
metric = "events"
event = "signup"
target = "about 3"
tripwire = ">= lots"
pair = ["Nope"]
colour = "red"

[[kpi]]
metric = "retention"
start = "signup"
k = 400
stage = "growth"

[[kpi]]
name = "R"
metric = "ratio"
numerator = { metric = "funnel" }
denominator = { metric = "users" }
"#,
    )
    .unwrap_err();
    let found: Vec<(Option<&str>, Option<&str>)> = err
        .problems
        .iter()
        .map(|p| (p.kpi.as_deref(), p.field.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            (Some("KPI \"A\" (#1)"), Some("metric")),
            (Some("KPI \"B\" (#2)"), Some("start")),
            (Some("KPI \"B\" (#2)"), Some("within")),
            (Some("KPI \"A\" (#3)"), Some("name")),
            (Some("KPI \"A\" (#3)"), Some("target")),
            (Some("KPI \"A\" (#3)"), Some("tripwire")),
            (Some("KPI \"A\" (#3)"), Some("colour")),
            (Some("KPI #4"), Some("name")),
            (Some("KPI #4"), Some("stage")),
            (Some("KPI #4"), Some("k")),
            (Some("KPI \"R\" (#5)"), Some("numerator.metric")),
            (Some("KPI \"R\" (#5)"), Some("denominator.event")),
            (Some("KPI \"A\" (#3)"), Some("pair")),
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(text.starts_with("conf/kpis.toml: 13 problems"), "{text}");
    for line in text.lines().skip(1) {
        assert!(
            line.trim_start().starts_with("conf/kpis.toml: KPI "),
            "{line}"
        );
    }
    assert!(text.contains("unknown metric 'conversion'"), "{text}");
    assert!(text.contains("'A' is already the name of KPI #1"), "{text}");
    assert!(text.contains("unknown duration unit 'x'"), "{text}");
    assert!(text.contains("names no KPI: 'Nope'"), "{text}");
    assert!(text.contains("'about 3' is not OP NUMBER"), "{text}");
    assert!(text.contains("400 is out of range"), "{text}");
}

#[test]
fn file_level_problems() {
    let err = parse_kpis("k.toml", "[[kpi]\nname = 1").unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert!(err.to_string().contains("k.toml: not valid TOML"), "{err}");
    let err = parse_kpis("k.toml", "title = \"x\"\n").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("field `title`") && text.contains("defines no KPI"),
        "{text}"
    );
    // A pair naming the KPI itself is refused too.
    let err = parse_kpis(
        "k.toml",
        "[[kpi]]\nname = \"A\"\nmetric = \"revenue\"\npair = \"A\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("is this KPI itself"), "{err}");
}

#[test]
fn where_goes_to_the_analysis_as_its_own_parameter() {
    // Filters are the analyses' (SPEC §5): the KPI passes each `where`
    // to them as a parameter and never filters by itself; a bad one is a
    // problem of the file, naming the field.
    let kpis = parse_kpis(
        "k.toml",
        "[[kpi]]\nname = \"Pro signups\"\nmetric = \"events\"\nevent = \"signup\"\nwhere = [\"plan = pro\"]\n",
    )
    .unwrap();
    let Measure::Simple(s) = &kpis[0].measure else {
        panic!("a simple metric")
    };
    assert_eq!(s.filters, ["plan = pro"]);
    let e = parse_kpis(
        "k.toml",
        "[[kpi]]\nname = \"Bad\"\nmetric = \"events\"\nevent = \"signup\"\nwhere = [\"plan\"]\n",
    )
    .unwrap_err();
    assert_eq!(e.problems[0].field.as_deref(), Some("where"), "{e}");
}

#[test]
fn conditions() {
    let c = Condition::parse(">= 0.4").unwrap();
    assert!(c.holds(0.4) && !c.holds(0.39));
    assert!(Condition::parse("<0.3").unwrap().holds(0.29));
    assert!(!Condition::parse("< 0.3").unwrap().holds(0.3));
    assert!(Condition::parse("> 5").unwrap().holds(6.0));
    assert!(Condition::parse("<= -1").unwrap().holds(-1.0));
    for bad in ["0.4", "= 1", ">= x", "> inf", "", ">=", "=> 1"] {
        assert!(Condition::parse(bad).is_err(), "{bad}");
    }
}

mod same_answers {
    //! Each KPI's value is its analysis's own answer for the same range.

    use proptest::prelude::*;

    use super::*;

    const NAMES: [&str; 3] = ["a", "b", "c"];

    fn events() -> impl Strategy<Value = Vec<MemEvent>> {
        // Five weeks before 2026-03-09 and one after, in 10-minute steps.
        let base = t("2026-02-02T00:00:00Z");
        prop::collection::vec(
            (
                0u8..6,
                0usize..3,
                0i64..(6 * 7 * 144),
                prop::option::of(-20i32..60),
            ),
            0..80,
        )
        .prop_map(move |v| {
            v.into_iter()
                .map(|(p, n, at, money)| MemEvent {
                    stage: money.map(|_| Stage::Revenue),
                    revenue: money.map(f64::from),
                    ..MemEvent::new(&format!("p{p}"), NAMES[n], base + at * 600_000)
                })
                .collect()
        })
    }

    const FILE: &str = r#"
[[kpi]]
name = "funnel"
metric = "funnel"
steps = "a,b,c"
window = "2d"
[[kpi]]
name = "activation"
metric = "activation"
start = "a"
event = "b"
count = 2
within = "5d"
[[kpi]]
name = "retention"
metric = "retention"
start = "a"
return = "c"
k = 1
[[kpi]]
name = "arpu"
metric = "arpu"
[[kpi]]
name = "users"
metric = "users"
event = "b"
"#;

    proptest! {
        #[test]
        fn values_are_the_analyses_answers(evs in events(), hour in 0i64..(7 * 24)) {
            let src = MemSource::new(evs);
            let as_of = t("2026-03-09T00:00:00Z") + hour * 3_600_000;
            let kpis = parse_kpis("k.toml", FILE).unwrap();
            let p = ReviewParams { period: ReviewPeriod::Week, as_of, tz: Zone::utc() };
            let r = run(&src, &kpis, &p).unwrap();
            for k in &r.kpis {
                for (from, to, value) in [
                    (&k.from, &k.to, k.value),
                    (&k.previous.from, &k.previous.to, k.previous.value),
                ] {
                    let (from, to) = (t(from), t(to));
                    let expected: Option<f64> = match k.name.as_str() {
                        "funnel" => {
                            let r = crate::funnel::run(&src, &crate::funnel::FunnelParams {
                                steps: vec!["a".into(), "b".into(), "c".into()],
                                window_ms: 2 * 86_400_000, from, to,
                            }).unwrap();
                            (r.steps[0].users > 0).then_some(r.steps[2].conversion_from_first)
                        }
                        "activation" => {
                            let r = crate::activation::run(&src, &crate::activation::ActivationParams {
                                start: "a".into(), event: "b".into(), count: 2,
                                within_ms: 5 * 86_400_000, from, to, as_of, tz: Zone::utc(),
                            }).unwrap();
                            // Reported periods are mature: every person counts.
                            prop_assert_eq!(r.mature.cohort_size, r.cohort_size);
                            (r.cohort_size > 0).then_some(r.rate)
                        }
                        "retention" => {
                            let r = crate::retention::run(&src, &crate::retention::RetentionParams {
                                start: "a".into(),
                                return_event: crate::retention::ReturnEvent::Event("c".into()),
                                period: crate::retention::Period::Week, periods: 1,
                                from, to, as_of, tz: Zone::utc(),
                            }).unwrap();
                            prop_assert_eq!(r.total.complete_size[1], r.total.size);
                            (r.total.size > 0)
                                .then(|| r.total.retained[1] as f64 / r.total.size as f64)
                        }
                        "arpu" => crate::lifecycle::run(
                            &src, &crate::lifecycle::LifecycleParams { from, to },
                        ).unwrap().arpu,
                        "users" => {
                            let tp = crate::trend::TrendParams {
                                event: "b".into(), measure: crate::trend::Measure::Users,
                                interval: crate::calendar::Interval::Week, from, to,
                                tz: Zone::utc(),
                            };
                            Some(crate::trend::run(&src, &tp).unwrap().total.as_f64())
                        }
                        other => unreachable!("{other}"),
                    };
                    prop_assert_eq!(value.map(Num::as_f64), expected, "{}", k.name);
                }
            }
        }
    }
}
