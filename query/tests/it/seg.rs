//! Shared by the filter, identity and breakdown tests: every analysis run
//! from parameters as the CLI and HTTP give them, answering its JSON.

use serde_json::Value;
use tally_event::time::parse_date_or_rfc3339;
use tally_query::{
    Breakdown, QueryError, RawParams, Segment, Source, activation, active, funnel, lifecycle,
    retention, trend,
};

pub const S: i64 = 1000;
pub const M: i64 = 60 * S;
pub const H: i64 = 60 * M;
pub const D: i64 = 24 * H;

/// 2026-01-05T00:00:00Z, a Monday.
pub fn t0() -> i64 {
    parse_date_or_rfc3339("2026-01-05").unwrap()
}

/// `now` for every query here: later than every event and cohort.
pub fn now() -> i64 {
    parse_date_or_rfc3339("2030-01-01").unwrap()
}

/// Runs analysis `name` with `pairs` (flag names without dashes) and
/// answers its JSON, grouped when `by` is given.
pub fn answer(src: &dyn Source, name: &str, pairs: &[(&str, &str)]) -> Result<Value, QueryError> {
    let mut raw = RawParams::new(pairs.iter().map(|&(k, v)| (k, v.to_string())));
    let now = now();
    macro_rules! go {
        ($m:ident, $p:expr) => {{
            let p = $p;
            let seg = Segment::from_raw(&mut raw)?;
            let by = Breakdown::from_raw(&mut raw)?;
            raw.finish()?;
            let v = match by {
                Some(by) => serde_json::to_value($m::run_by(src, &p, &seg, &by)?),
                None => serde_json::to_value($m::run_segment(src, &p, &seg)?),
            };
            v.unwrap()
        }};
    }
    Ok(match name {
        "funnel" => go!(funnel, funnel::FunnelParams::from_raw(&mut raw, now)?),
        "activation" => go!(
            activation,
            activation::ActivationParams::from_raw(&mut raw, now)?
        ),
        "retention" => go!(
            retention,
            retention::RetentionParams::from_raw(&mut raw, now)?
        ),
        "lifecycle" => go!(
            lifecycle,
            lifecycle::LifecycleParams::from_raw(&mut raw, now)?
        ),
        "trend" => go!(trend, trend::TrendParams::from_raw(&mut raw, now)?),
        "active" => {
            let p = active::ActiveParams::from_raw(&mut raw, now)?;
            let seg = Segment::from_raw(&mut raw)?;
            raw.finish()?;
            serde_json::to_value(active::run_segment(src, &p, &seg)?).unwrap()
        }
        other => panic!("no analysis {other}"),
    })
}

/// [`answer`] that must succeed.
pub fn ok(src: &dyn Source, name: &str, pairs: &[(&str, &str)]) -> Value {
    answer(src, name, pairs).unwrap_or_else(|e| panic!("{name} {pairs:?}: {e}"))
}

/// The message of a bad parameter.
pub fn bad(src: &dyn Source, name: &str, pairs: &[(&str, &str)]) -> String {
    match answer(src, name, pairs) {
        Err(e @ QueryError::BadParam { .. }) => e.to_string(),
        other => panic!("{name} {pairs:?}: expected a bad parameter, got {other:?}"),
    }
}

/// `YYYY-MM-DD` of `t0() + days`.
pub fn day(days: i64) -> String {
    tally_event::time::ms_to_date(t0() + days * D)
        .format("%Y-%m-%d")
        .to_string()
}

/// Funnel step users of a funnel answer.
pub fn users(funnel: &Value) -> Vec<u64> {
    funnel["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["users"].as_u64().unwrap())
        .collect()
}

/// `(value, result)` of every group of a grouped answer.
pub fn groups(v: &Value) -> Vec<(Value, Value)> {
    v["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("not grouped: {v}"))
        .iter()
        .map(|g| (g["value"].clone(), g["result"].clone()))
        .collect()
}
