//! The KPI review (SPEC §6): a scorecard of KPIs defined in a file, each
//! reported for the latest calendar period (day, ISO week or month in
//! `--tz`) that has ended and is mature for it, beside the period before.
//!
//! No number is computed here: every KPI's value is a field of one of the
//! existing analyses (trend for `events`/`users`, lifecycle for the money
//! metrics, funnel, activation, retention) run over the period, with its
//! parameters built as name/value pairs through [`RawParams`] exactly as a
//! flag or query string gives them, so an analysis's own rules (and its
//! filters, `where`) apply unchanged. This module only picks the periods,
//! divides where a KPI is a ratio of two metrics, and compares with the
//! targets and tripwires.

mod file;
mod period;
mod render;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tally_event::Stage;
use tally_event::time::format_rfc3339;

use crate::calendar::{Interval, Zone};
use crate::error::QueryError;
use crate::params::RawParams;
use crate::segment::Segment;
use crate::source::Source;
use crate::{activation, funnel, lifecycle, retention, trend};

pub use file::{KpiFileError, Problem, parse_kpis};
pub use period::{ReviewPeriod, reported_periods};
pub use render::ReviewFormat;

/// One KPI of the file, checked.
#[derive(Debug, Clone)]
pub struct Kpi {
    /// Unique within the file.
    pub name: String,
    /// Groups the table.
    pub stage: Option<Stage>,
    /// The `metric` as written (`activation`, `ratio`, ...).
    pub metric: MetricKind,
    measure: Measure,
    /// The goal, if any.
    pub target: Option<Condition>,
    /// The health limit, if any.
    pub tripwire: Option<Condition>,
    /// Names of the KPIs shown beside it.
    pub pair: Vec<String>,
}

impl Kpi {
    /// The event names the KPI reads (`any` excluded), so a misspelt name
    /// can be warned about.
    pub fn event_names(&self) -> Vec<&str> {
        fn simple(s: &Simple) -> Option<&str> {
            s.event.as_deref().filter(|e| *e != "any")
        }
        let mut names: Vec<&str> = match &self.measure {
            Measure::Simple(s) => simple(s).into_iter().collect(),
            Measure::Ratio(n, d) => simple(n).into_iter().chain(simple(d)).collect(),
            Measure::Funnel { params, .. }
            | Measure::Activation { params, .. }
            | Measure::Retention { params, .. } => params
                .iter()
                .flat_map(|(k, v)| match k.as_str() {
                    "steps" => v.split(',').map(str::trim).collect(),
                    "start" | "event" | "return" => vec![v.trim()],
                    _ => Vec::new(),
                })
                .filter(|e| *e != "any")
                .collect(),
        };
        names.dedup();
        names
    }

    /// How long after a period's end the KPI's number for it is final:
    /// zero for counts and ratios, the window, `within`, or `(k + 1) × L`.
    pub fn maturity_ms(&self) -> i64 {
        match &self.measure {
            Measure::Simple(_) | Measure::Ratio(..) => 0,
            Measure::Funnel { window_ms, .. } => *window_ms,
            Measure::Activation { within_ms, .. } => *within_ms,
            Measure::Retention { lag_ms, .. } => *lag_ms,
        }
    }
}

/// The metrics of SPEC §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Events of `event` (or `any`).
    Events,
    /// Distinct persons with `event` (or `any`).
    Users,
    /// Net revenue, as lifecycle sums it.
    Revenue,
    /// Persons with a positive amount.
    PayingUsers,
    /// Sum of positive amounts / orders.
    Aov,
    /// Net revenue / active users.
    Arpu,
    /// One of the above divided by another.
    Ratio,
    /// The last step's `conversion_from_first`.
    Funnel,
    /// The cohort's activation `rate`.
    Activation,
    /// `retained[k] / size` (or `unbounded[k]`).
    Retention,
}

impl MetricKind {
    /// Every metric, in the order the documentation lists them.
    pub const ALL: [MetricKind; 10] = [
        MetricKind::Events,
        MetricKind::Users,
        MetricKind::Revenue,
        MetricKind::PayingUsers,
        MetricKind::Aov,
        MetricKind::Arpu,
        MetricKind::Ratio,
        MetricKind::Funnel,
        MetricKind::Activation,
        MetricKind::Retention,
    ];

    /// The name in the file and the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Events => "events",
            MetricKind::Users => "users",
            MetricKind::Revenue => "revenue",
            MetricKind::PayingUsers => "paying_users",
            MetricKind::Aov => "aov",
            MetricKind::Arpu => "arpu",
            MetricKind::Ratio => "ratio",
            MetricKind::Funnel => "funnel",
            MetricKind::Activation => "activation",
            MetricKind::Retention => "retention",
        }
    }

    /// Parses a metric name.
    pub fn parse(s: &str) -> Option<MetricKind> {
        MetricKind::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Metrics a `ratio`'s numerator and denominator may be.
    fn is_simple(self) -> bool {
        matches!(
            self,
            MetricKind::Events
                | MetricKind::Users
                | MetricKind::Revenue
                | MetricKind::PayingUsers
                | MetricKind::Aov
                | MetricKind::Arpu
        )
    }

    /// True for fractions of persons, shown as percentages.
    pub fn is_rate(self) -> bool {
        matches!(
            self,
            MetricKind::Funnel | MetricKind::Activation | MetricKind::Retention
        )
    }

    /// True for amounts of money.
    pub fn is_money(self) -> bool {
        matches!(
            self,
            MetricKind::Revenue | MetricKind::Aov | MetricKind::Arpu
        )
    }
}

/// How a KPI's number is obtained.
#[derive(Debug, Clone)]
enum Measure {
    Simple(Simple),
    Ratio(Simple, Simple),
    /// Analysis parameters other than the range, `where` included.
    Funnel {
        params: Vec<(String, String)>,
        window_ms: i64,
    },
    Activation {
        params: Vec<(String, String)>,
        within_ms: i64,
    },
    Retention {
        params: Vec<(String, String)>,
        k: usize,
        unbounded: bool,
        lag_ms: i64,
    },
}

/// A count or lifecycle metric (also each side of a ratio).
#[derive(Debug, Clone)]
struct Simple {
    kind: MetricKind,
    /// `events` / `users` only.
    event: Option<String>,
    filters: Vec<String>,
}

/// `OP NUMBER`, OP one of `<`, `<=`, `>`, `>=`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// As written in the file (echoed in the JSON).
    pub text: String,
    op: Op,
    number: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Condition {
    /// Parses `>= 0.4`.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let t = text.trim();
        let (op, rest) = if let Some(r) = t.strip_prefix("<=") {
            (Op::Le, r)
        } else if let Some(r) = t.strip_prefix(">=") {
            (Op::Ge, r)
        } else if let Some(r) = t.strip_prefix('<') {
            (Op::Lt, r)
        } else if let Some(r) = t.strip_prefix('>') {
            (Op::Gt, r)
        } else {
            return Err(format!(
                "'{text}' is not OP NUMBER (OP one of <, <=, >, >=; e.g. \">= 0.4\")"
            ));
        };
        let number: f64 = rest.trim().parse().map_err(|_| {
            format!(
                "'{text}': '{}' is not a number (e.g. \">= 0.4\")",
                rest.trim()
            )
        })?;
        if !number.is_finite() {
            return Err(format!("'{text}': the number must be finite"));
        }
        Ok(Condition {
            text: text.to_string(),
            op,
            number,
        })
    }

    /// Whether `value OP NUMBER` is true.
    pub fn holds(&self, value: f64) -> bool {
        match self.op {
            Op::Lt => value < self.number,
            Op::Le => value <= self.number,
            Op::Gt => value > self.number,
            Op::Ge => value >= self.number,
        }
    }

    /// +1 when a larger value satisfies it more (`>`, `>=`), −1 otherwise.
    fn upward(&self) -> i8 {
        match self.op {
            Op::Gt | Op::Ge => 1,
            Op::Lt | Op::Le => -1,
        }
    }
}

/// A number of the answer: counts stay integers in the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Num {
    /// A count (or a difference of counts).
    Int(i64),
    /// Money, a rate or a quotient.
    Float(f64),
}

impl Num {
    /// As a float, for comparisons and division.
    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(n) => n as f64,
            Num::Float(x) => x,
        }
    }

    fn count(n: u64) -> Num {
        Num::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }

    /// `self − other`, an integer when both are.
    fn minus(self, other: Num) -> Num {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Num::Int(a.saturating_sub(b)),
            (a, b) => Num::Float(a.as_f64() - b.as_f64()),
        }
    }
}

/// `--period`, `--as-of` and `--tz` of a review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewParams {
    /// The cadence.
    pub period: ReviewPeriod,
    /// Periods must have ended (and matured) by this time, Unix ms.
    pub as_of: i64,
    /// The zone of the calendar periods.
    pub tz: Zone,
}

impl ReviewParams {
    /// Reads `period` (default `week`), `as-of` (default `now_ms`) and `tz`.
    pub fn from_raw(raw: &mut RawParams, now_ms: i64) -> Result<Self, QueryError> {
        let period = match raw.str("period")? {
            None => ReviewPeriod::Week,
            Some(s) => s.trim().parse().map_err(|m| QueryError::bad("period", m))?,
        };
        let as_of = raw.time("as-of")?.unwrap_or(now_ms);
        Ok(ReviewParams {
            period,
            as_of,
            tz: raw.zone()?,
        })
    }
}

/// The previous period's number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Previous {
    /// RFC 3339 UTC.
    pub from: String,
    /// RFC 3339 UTC (exclusive).
    pub to: String,
    /// As `value`.
    pub value: Option<Num>,
}

/// One KPI's line of the answer, exactly SPEC §6's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiResult {
    /// The KPI's name.
    pub name: String,
    /// Its stage, if given.
    pub stage: Option<Stage>,
    /// The metric name.
    pub metric: String,
    /// The period reported, RFC 3339 UTC.
    pub from: String,
    /// Its end (exclusive).
    pub to: String,
    /// `null` when the denominator is 0.
    pub value: Option<Num>,
    /// Rates and ratios only.
    pub numerator: Option<Num>,
    /// Rates and ratios only.
    pub denominator: Option<Num>,
    /// The period before.
    pub previous: Previous,
    /// `value − previous.value`.
    pub change: Option<Num>,
    /// As written.
    pub target: Option<String>,
    /// `null` without a target or a value.
    pub target_met: Option<bool>,
    /// As written.
    pub tripwire: Option<String>,
    /// Whether the tripwire holds (never for a null value).
    pub tripped: bool,
    /// Names of the paired KPIs.
    pub pair: Vec<String>,
}

impl KpiResult {
    /// +1 when up is good for this KPI, −1 when down is, from its target
    /// (or else its tripwire, which marks the bad side); `None` without
    /// either.
    pub fn good_direction(&self) -> Option<i8> {
        let parse = |t: &Option<String>| t.as_deref().and_then(|t| Condition::parse(t).ok());
        parse(&self.target)
            .map(|c| c.upward())
            .or_else(|| parse(&self.tripwire).map(|c| -c.upward()))
    }

    /// +1, −1 or 0 for the change's sign; `None` without a change.
    pub fn change_sign(&self) -> Option<i8> {
        self.change.map(|c| {
            let c = c.as_f64();
            if c > 0.0 {
                1
            } else if c < 0.0 {
                -1
            } else {
                0
            }
        })
    }
}

/// The answer of `tally review`, exactly SPEC §6's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewResult {
    /// `day`, `week` or `month`.
    pub period: ReviewPeriod,
    /// `--as-of`, RFC 3339 UTC.
    pub as_of: String,
    /// In file order.
    pub kpis: Vec<KpiResult>,
    /// Names of the KPIs whose tripwire holds, in file order.
    pub tripped: Vec<String>,
}

/// A KPI's number for one period.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Outcome {
    value: Option<Num>,
    numerator: Option<Num>,
    denominator: Option<Num>,
}

impl Outcome {
    fn count(n: Num) -> Outcome {
        Outcome {
            value: Some(n),
            numerator: None,
            denominator: None,
        }
    }

    fn rate(numerator: Num, denominator: Num) -> Outcome {
        let d = denominator.as_f64();
        Outcome {
            value: (d != 0.0).then(|| Num::Float(numerator.as_f64() / d)),
            numerator: Some(numerator),
            denominator: Some(denominator),
        }
    }
}

/// Runs every KPI for its periods (see [`reported_periods`]).
pub fn run(src: &dyn Source, kpis: &[Kpi], p: &ReviewParams) -> Result<ReviewResult, QueryError> {
    let mut ctx = Context {
        src,
        p,
        lifecycles: HashMap::new(),
    };
    let mut out = Vec::with_capacity(kpis.len());
    for kpi in kpis {
        let (current, before) =
            reported_periods(p.period.interval(), &p.tz, p.as_of, kpi.maturity_ms());
        let now = ctx.measure(kpi, &kpi.measure, current)?;
        let prev = ctx.measure(kpi, &kpi.measure, before)?;
        let change = match (now.value, prev.value) {
            (Some(a), Some(b)) => Some(a.minus(b)),
            _ => None,
        };
        let value = now.value.map(Num::as_f64);
        out.push(KpiResult {
            name: kpi.name.clone(),
            stage: kpi.stage,
            metric: kpi.metric.as_str().to_string(),
            from: format_rfc3339(current.0),
            to: format_rfc3339(current.1),
            value: now.value,
            numerator: now.numerator,
            denominator: now.denominator,
            previous: Previous {
                from: format_rfc3339(before.0),
                to: format_rfc3339(before.1),
                value: prev.value,
            },
            change,
            target: kpi.target.as_ref().map(|c| c.text.clone()),
            target_met: kpi.target.as_ref().and_then(|c| value.map(|v| c.holds(v))),
            tripwire: kpi.tripwire.as_ref().map(|c| c.text.clone()),
            tripped: kpi
                .tripwire
                .as_ref()
                .is_some_and(|c| value.is_some_and(|v| c.holds(v))),
            pair: kpi.pair.clone(),
        });
    }
    let tripped = out
        .iter()
        .filter(|k| k.tripped)
        .map(|k| k.name.clone())
        .collect();
    Ok(ReviewResult {
        period: p.period,
        as_of: format_rfc3339(p.as_of),
        kpis: out,
        tripped,
    })
}

/// Key of a lifecycle run: its filters and range.
type LifecycleKey = (Vec<String>, i64, i64);

struct Context<'a> {
    src: &'a dyn Source,
    p: &'a ReviewParams,
    /// The money metrics share one lifecycle scan per filters and period.
    lifecycles: HashMap<LifecycleKey, (lifecycle::LifecycleResult, f64)>,
}

impl Context<'_> {
    /// The range, zone (and for cohorts `as-of`) as parameters.
    fn range_pairs(&self, (from, to): (i64, i64), as_of: bool) -> Vec<(String, String)> {
        let mut v = vec![
            ("from".to_string(), format_rfc3339(from)),
            ("to".to_string(), format_rfc3339(to)),
            ("tz".to_string(), self.p.tz.name().to_string()),
        ];
        if as_of {
            v.push(("as-of".to_string(), format_rfc3339(self.p.as_of)));
        }
        v
    }

    fn measure(
        &mut self,
        kpi: &Kpi,
        m: &Measure,
        range: (i64, i64),
    ) -> Result<Outcome, QueryError> {
        let in_kpi = |e: QueryError| match e {
            QueryError::BadParam { param, message } => QueryError::BadParam {
                param: "kpis".into(),
                message: format!("KPI '{}': {param}: {message}", kpi.name),
            },
            other => other,
        };
        match m {
            Measure::Simple(s) => self.simple(s, range).map_err(in_kpi),
            Measure::Ratio(n, d) => {
                let n = self.simple(n, range).map_err(in_kpi)?.value;
                let d = self.simple(d, range).map_err(in_kpi)?.value;
                Ok(match (n, d) {
                    (Some(n), Some(d)) => Outcome::rate(n, d),
                    _ => Outcome {
                        value: None,
                        numerator: n,
                        denominator: d,
                    },
                })
            }
            Measure::Funnel { params, .. } => {
                let mut raw = raw(params, self.range_pairs(range, false));
                let fp = funnel::FunnelParams::from_raw(&mut raw, self.p.as_of).map_err(in_kpi)?;
                let seg = Segment::from_raw(&mut raw).map_err(in_kpi)?;
                raw.finish().map_err(in_kpi)?;
                let r = funnel::run_segment(self.src, &fp, &seg)?;
                let first = r.steps.first().map_or(0, |s| s.users);
                let last = r.steps.last().map_or(0, |s| s.users);
                Ok(Outcome::rate(Num::count(last), Num::count(first)))
            }
            Measure::Activation { params, .. } => {
                let mut raw = raw(params, self.range_pairs(range, true));
                let ap = activation::ActivationParams::from_raw(&mut raw, self.p.as_of)
                    .map_err(in_kpi)?;
                let seg = Segment::from_raw(&mut raw).map_err(in_kpi)?;
                raw.finish().map_err(in_kpi)?;
                let r = activation::run_segment(self.src, &ap, &seg)?;
                Ok(Outcome::rate(
                    Num::count(r.activated),
                    Num::count(r.cohort_size),
                ))
            }
            Measure::Retention {
                params,
                k,
                unbounded,
                ..
            } => {
                let mut raw = raw(params, self.range_pairs(range, true));
                let rp =
                    retention::RetentionParams::from_raw(&mut raw, self.p.as_of).map_err(in_kpi)?;
                let seg = Segment::from_raw(&mut raw).map_err(in_kpi)?;
                raw.finish().map_err(in_kpi)?;
                let r = retention::run_segment(self.src, &rp, &seg)?;
                let list = if *unbounded {
                    &r.total.unbounded
                } else {
                    &r.total.retained
                };
                let back = list.get(*k).copied().unwrap_or(0);
                Ok(Outcome::rate(Num::count(back), Num::count(r.total.size)))
            }
        }
    }

    /// A count or lifecycle metric under the KPI's filters.
    fn simple(&mut self, s: &Simple, range: (i64, i64)) -> Result<Outcome, QueryError> {
        let wheres = s.filters.iter().map(|w| ("where".to_string(), w.clone()));
        match s.kind {
            MetricKind::Events | MetricKind::Users => {
                let mut pairs = vec![
                    (
                        "event".to_string(),
                        s.event.clone().unwrap_or_else(|| "any".into()),
                    ),
                    (
                        "measure".to_string(),
                        if s.kind == MetricKind::Events {
                            "events"
                        } else {
                            "users"
                        }
                        .to_string(),
                    ),
                    // The period is one calendar bucket of this interval, so
                    // the trend has exactly one bucket; its total is the value.
                    (
                        "interval".to_string(),
                        self.p.period.interval().as_str().to_string(),
                    ),
                ];
                pairs.extend(wheres);
                let mut raw = raw(&pairs, self.range_pairs(range, false));
                let tp = trend::TrendParams::from_raw(&mut raw, self.p.as_of)?;
                let seg = Segment::from_raw(&mut raw)?;
                raw.finish()?;
                let r = trend::run_segment(self.src, &tp, &seg)?;
                Ok(Outcome::count(match r.total {
                    trend::Value::Count(n) => Num::count(n),
                    trend::Value::Amount(x) => Num::Float(x),
                }))
            }
            _ => {
                let key = (s.filters.clone(), range.0, range.1);
                if !self.lifecycles.contains_key(&key) {
                    let pairs: Vec<(String, String)> = wheres.collect();
                    let mut raw = raw(&pairs, self.range_pairs(range, false));
                    let lp = lifecycle::LifecycleParams::from_raw(&mut raw, self.p.as_of)?;
                    let seg = Segment::from_raw(&mut raw)?;
                    raw.finish()?;
                    let answer = lifecycle::run_with_sales(self.src, &lp, &seg)?;
                    self.lifecycles.insert(key.clone(), answer);
                }
                let (l, sales) = &self.lifecycles[&key];
                Ok(match s.kind {
                    MetricKind::Revenue => Outcome::count(Num::Float(l.revenue)),
                    MetricKind::PayingUsers => Outcome::count(Num::count(l.paying_users)),
                    MetricKind::Aov => Outcome {
                        // The analysis's own quotient, so the two agree to the bit.
                        value: l.aov.map(Num::Float),
                        numerator: Some(Num::Float(*sales)),
                        denominator: Some(Num::count(l.orders)),
                    },
                    MetricKind::Arpu => Outcome {
                        value: l.arpu.map(Num::Float),
                        numerator: Some(Num::Float(l.revenue)),
                        denominator: Some(Num::count(l.active_users)),
                    },
                    other => unreachable!("{other:?} is not a lifecycle metric"),
                })
            }
        }
    }
}

/// A KPI's parameters followed by the period's.
fn raw(params: &[(String, String)], range: Vec<(String, String)>) -> RawParams {
    RawParams::new(params.iter().cloned().chain(range))
}

/// The review's period as a calendar interval.
impl ReviewPeriod {
    /// The calendar bucket of this cadence.
    pub fn interval(self) -> Interval {
        match self {
            ReviewPeriod::Day => Interval::Day,
            ReviewPeriod::Week => Interval::Week,
            ReviewPeriod::Month => Interval::Month,
        }
    }
}

#[cfg(test)]
mod tests;
