//! `Source::scan` promises exactly the rows of the range asked for, but a
//! store may be tempted to hand back whole blocks overlapping it. Every
//! analysis gives the same answer over such a source, so a store that reads
//! at block granularity cannot change any number of SPEC §4.

use tally_event::Stage;
use tally_event::time::parse_date_or_rfc3339;
use tally_query::{
    MemEvent, MemSource, NameId, QueryError, RawParams, Rows, Scan, Source, activation, active,
    funnel, lifecycle, retention,
};

/// Ignores the time range of every scan (still filters by name).
struct WholeBlocks(MemSource);

impl Source for WholeBlocks {
    fn name_id(&self, name: &str) -> Option<NameId> {
        self.0.name_id(name)
    }

    fn person_count(&self) -> usize {
        self.0.person_count()
    }

    fn scan(&self, scan: &Scan<'_>) -> Result<Vec<Rows>, QueryError> {
        self.0.scan(&Scan {
            from: i64::MIN,
            to: i64::MAX,
            ..*scan
        })
    }
}

fn t(s: &str) -> i64 {
    parse_date_or_rfc3339(s).unwrap()
}

/// Events of every kind well before, inside and well after January 2026.
fn events() -> Vec<MemEvent> {
    let mut out = Vec::new();
    for (i, day) in ["2025-11-20", "2026-01-10", "2026-01-11", "2026-03-20"]
        .iter()
        .enumerate()
    {
        for p in 0..3 {
            let ts = t(day) + p * 3_600_000;
            let person = format!("p{}", (p as usize + i) % 4);
            out.push(MemEvent::new(&person, "signup", ts));
            out.push(MemEvent {
                stage: Some(Stage::Revenue),
                revenue: Some(10.0 + p as f64),
                ..MemEvent::new(&person, "buy", ts + 60_000)
            });
        }
    }
    out
}

fn raw(pairs: &[(&str, &str)]) -> RawParams {
    let mut all = vec![("from", "2026-01-01"), ("to", "2026-02-01")];
    all.extend_from_slice(pairs);
    RawParams::new(all)
}

#[test]
fn every_analysis_ignores_rows_outside_the_range_it_asked_for() {
    let exact = MemSource::new(events());
    let sloppy = WholeBlocks(MemSource::new(events()));
    let now = t("2026-06-01");
    let json = |v: serde_json::Value| v.to_string();

    let p = lifecycle::LifecycleParams::from_raw(&mut raw(&[]), now).unwrap();
    let want = lifecycle::run(&exact, &p).unwrap();
    assert_eq!((want.active_users, want.orders), (4, 6), "{want:?}");
    assert_eq!(
        json(serde_json::to_value(lifecycle::run(&sloppy, &p).unwrap()).unwrap()),
        json(serde_json::to_value(want).unwrap())
    );

    let p = active::ActiveParams::from_raw(&mut raw(&[]), now).unwrap();
    assert_eq!(
        active::run(&sloppy, &p).unwrap(),
        active::run(&exact, &p).unwrap()
    );

    let p = funnel::FunnelParams::from_raw(&mut raw(&[("steps", "signup,buy")]), now).unwrap();
    assert_eq!(
        funnel::run(&sloppy, &p).unwrap(),
        funnel::run(&exact, &p).unwrap()
    );

    let p = activation::ActivationParams::from_raw(
        &mut raw(&[("start", "signup"), ("event", "buy")]),
        now,
    )
    .unwrap();
    assert_eq!(
        activation::run(&sloppy, &p).unwrap(),
        activation::run(&exact, &p).unwrap()
    );

    for ret in ["signup", "buy", "any"] {
        let p = retention::RetentionParams::from_raw(
            &mut raw(&[("start", "signup"), ("return", ret), ("period", "day")]),
            now,
        )
        .unwrap();
        assert_eq!(
            retention::run(&sloppy, &p).unwrap(),
            retention::run(&exact, &p).unwrap(),
            "--return {ret}"
        );
    }
}
