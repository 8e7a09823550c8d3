//! The KPI file (`kpis.toml`, SPEC §6): parsed and checked in one pass
//! that collects every problem, each naming the file, the KPI and the
//! field, so a user fixes the file once rather than once per error.
//!
//! Each metric's parameters are checked by the analysis that will compute
//! it (its `from_raw` over a placeholder range), so the file accepts
//! exactly what the flags accept and says so in the same words.

use std::collections::HashMap;

use tally_event::Stage;
use toml::Value;

use super::{Condition, Kpi, Measure, MetricKind, Simple};
use crate::error::QueryError;
use crate::params::RawParams;
use crate::segment::Segment;
use crate::{activation, funnel, lifecycle, retention, trend};

/// One thing wrong with the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `KPI "name"` (or `KPI #3` when it has no name); `None` for the file
    /// as a whole.
    pub kpi: Option<String>,
    /// The field (`within`, `numerator.event`); `None` for the whole KPI.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Every problem of a KPI file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiFileError {
    /// The file as the user named it.
    pub file: String,
    /// In file order.
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for KpiFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} problem{} in the KPI file",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}: ", self.file)?;
            if let Some(k) = &p.kpi {
                write!(f, "{k}")?;
                if p.field.is_some() {
                    write!(f, ", ")?;
                }
            }
            if let Some(field) = &p.field {
                write!(f, "field `{field}`")?;
            }
            if p.kpi.is_some() || p.field.is_some() {
                write!(f, ": ")?;
            }
            write!(f, "{}", p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for KpiFileError {}

/// Fields every KPI may have.
const COMMON: [&str; 7] = [
    "name", "stage", "metric", "where", "target", "tripwire", "pair",
];

/// The metric's own fields: (name, required).
fn own_fields(kind: MetricKind) -> &'static [(&'static str, bool)] {
    match kind {
        MetricKind::Events | MetricKind::Users => &[("event", true)],
        MetricKind::Revenue | MetricKind::PayingUsers | MetricKind::Aov | MetricKind::Arpu => &[],
        MetricKind::Ratio => &[("numerator", true), ("denominator", true)],
        MetricKind::Funnel => &[("steps", true), ("window", false)],
        MetricKind::Activation => &[
            ("start", true),
            ("event", true),
            ("count", false),
            ("within", false),
        ],
        MetricKind::Retention => &[
            ("start", true),
            ("return", false),
            ("period", false),
            ("k", true),
            ("unbounded", false),
        ],
    }
}

fn metric_names() -> String {
    MetricKind::ALL.map(MetricKind::as_str).join(", ")
}

/// Parses and checks a KPI file. `file` names it in messages.
pub fn parse_kpis(file: &str, text: &str) -> Result<Vec<Kpi>, KpiFileError> {
    let mut problems = Vec::new();
    let fail = |problems| {
        Err(KpiFileError {
            file: file.to_string(),
            problems,
        })
    };
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            return fail(vec![Problem {
                kpi: None,
                field: None,
                message: format!("not valid TOML: {}", e.to_string().trim_end()),
            }]);
        }
    };
    for key in table.keys().filter(|k| *k != "kpi") {
        problems.push(Problem {
            kpi: None,
            field: Some(key.clone()),
            message: "unknown top-level field (KPIs are [[kpi]] tables)".into(),
        });
    }
    let entries: Vec<&toml::Table> = match table.get("kpi") {
        None => {
            problems.push(Problem {
                kpi: None,
                field: None,
                message: "defines no KPI (add [[kpi]] tables; `tally review --init` writes a starter file)".into(),
            });
            Vec::new()
        }
        Some(Value::Array(a)) => {
            let mut v = Vec::new();
            for (i, item) in a.iter().enumerate() {
                match item {
                    Value::Table(t) => v.push(t),
                    _ => problems.push(Problem {
                        kpi: Some(format!("KPI #{}", i + 1)),
                        field: None,
                        message: "is not a table (write [[kpi]] sections)".into(),
                    }),
                }
            }
            v
        }
        Some(_) => {
            problems.push(Problem {
                kpi: None,
                field: Some("kpi".into()),
                message: "must be an array of tables (write [[kpi]] sections)".into(),
            });
            Vec::new()
        }
    };

    let mut kpis = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    // (KPI label, the pair names it gives), checked once every name is known.
    let mut pairs: Vec<(String, String, Vec<String>)> = Vec::new();
    for (i, t) in entries.iter().enumerate() {
        let mut k = Checker {
            label: format!("KPI #{}", i + 1),
            problems: &mut problems,
        };
        let name = match t.get("name") {
            None => {
                k.problem(Some("name"), "is required");
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                k.problem(Some("name"), "must not be empty");
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                k.problem(Some("name"), "must be a string");
                None
            }
        };
        if let Some(n) = &name {
            k.label = format!("KPI \"{n}\" (#{})", i + 1);
            if let Some(first) = seen.get(n) {
                k.problem(
                    Some("name"),
                    format!("'{n}' is already the name of KPI #{first} (names must be unique)"),
                );
            } else {
                seen.insert(n.clone(), i + 1);
            }
        }
        let stage = k.string(t, "stage").and_then(|s| match s.parse::<Stage>() {
            Ok(st) => Some(st),
            Err(()) => {
                k.problem(
                    Some("stage"),
                    format!(
                        "unknown stage '{s}' (expected one of {})",
                        Stage::ALL.map(Stage::as_str).join(", ")
                    ),
                );
                None
            }
        });
        let metric = match t.get("metric") {
            None => {
                k.problem(
                    Some("metric"),
                    format!("is required (one of {})", metric_names()),
                );
                None
            }
            Some(Value::String(s)) => match MetricKind::parse(s.trim()) {
                Some(m) => Some(m),
                None => {
                    k.problem(
                        Some("metric"),
                        format!("unknown metric '{s}' (expected one of {})", metric_names()),
                    );
                    None
                }
            },
            Some(_) => {
                k.problem(Some("metric"), "must be a string");
                None
            }
        };
        let filters = k.strings(t, "where");
        let target = k.condition(t, "target");
        let tripwire = k.condition(t, "tripwire");
        let pair = k.strings(t, "pair");
        pairs.push((
            k.label.clone(),
            name.clone().unwrap_or_default(),
            pair.clone(),
        ));

        let measure = metric.and_then(|m| {
            for key in t.keys() {
                if !COMMON.contains(&key.as_str()) && !own_fields(m).iter().any(|(f, _)| f == key) {
                    k.problem(Some(key), unknown_field(m));
                }
            }
            for (f, required) in own_fields(m) {
                if *required && !t.contains_key(*f) {
                    k.problem(Some(f), format!("is required for metric '{}'", m.as_str()));
                }
            }
            k.measure(t, m, &filters)
        });
        if let (Some(name), Some(metric), Some(measure)) = (name, metric, measure) {
            kpis.push(Kpi {
                name,
                stage,
                metric,
                measure,
                target,
                tripwire,
                pair,
            });
        }
    }
    for (label, own, names) in &pairs {
        for p in names {
            if !seen.contains_key(p) {
                problems.push(Problem {
                    kpi: Some(label.clone()),
                    field: Some("pair".into()),
                    message: format!("names no KPI: '{p}'"),
                });
            } else if p == own {
                problems.push(Problem {
                    kpi: Some(label.clone()),
                    field: Some("pair".into()),
                    message: format!("'{p}' is this KPI itself (pair it with another KPI)"),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(kpis)
    } else {
        fail(problems)
    }
}

fn unknown_field(m: MetricKind) -> String {
    let own: Vec<&str> = own_fields(m).iter().map(|(f, _)| *f).collect();
    let mut all: Vec<&str> = COMMON.to_vec();
    all.extend(own);
    format!(
        "unknown field for metric '{}' (expected {})",
        m.as_str(),
        all.join(", ")
    )
}

/// Collects one KPI's problems.
struct Checker<'a> {
    label: String,
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&mut self, field: Option<&str>, message: impl Into<String>) {
        self.problems.push(Problem {
            kpi: Some(self.label.clone()),
            field: field.map(str::to_string),
            message: message.into(),
        });
    }

    /// An optional string field.
    fn string(&mut self, t: &toml::Table, field: &str) -> Option<String> {
        match t.get(field)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.problem(Some(field), "must be a string");
                None
            }
        }
    }

    /// An optional string or list of strings (`where`, `pair`).
    fn strings(&mut self, t: &toml::Table, field: &str) -> Vec<String> {
        match t.get(field) {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) if a.iter().all(Value::is_str) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(_) => {
                self.problem(Some(field), "must be a string or a list of strings");
                Vec::new()
            }
        }
    }

    fn condition(&mut self, t: &toml::Table, field: &str) -> Option<Condition> {
        let text = self.string(t, field)?;
        match Condition::parse(&text) {
            Ok(c) => Some(c),
            Err(m) => {
                self.problem(Some(field), m);
                None
            }
        }
    }

    /// A parameter as the flag would give it: strings as they are, whole
    /// numbers and booleans written out; `steps` may be a list.
    fn param(&mut self, t: &toml::Table, field: &str, prefix: &str) -> Option<String> {
        let name = format!("{prefix}{field}");
        match t.get(field)? {
            Value::String(s) => Some(s.clone()),
            Value::Integer(n) => Some(n.to_string()),
            Value::Array(a) if field == "steps" && a.iter().all(Value::is_str) => Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => {
                self.problem(
                    Some(&name),
                    if field == "steps" {
                        "must be a list of event names or a comma-separated string"
                    } else {
                        "must be a string or a whole number"
                    },
                );
                None
            }
        }
    }

    /// The metric's parameters, checked by the analysis that computes it.
    fn measure(&mut self, t: &toml::Table, m: MetricKind, filters: &[String]) -> Option<Measure> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut ok = true;
        let mut add = |k: &mut Self, field: &str, flag: &str| {
            if t.contains_key(field) {
                match k.param(t, field, "") {
                    Some(v) => pairs.push((flag.to_string(), v)),
                    None => ok = false,
                }
            }
        };
        match m {
            _ if m.is_simple() => {
                return self.simple(t, m, filters, "").map(Measure::Simple);
            }
            MetricKind::Ratio => {
                let n = self.side(t, "numerator", filters);
                let d = self.side(t, "denominator", filters);
                return Some(Measure::Ratio(n?, d?));
            }
            MetricKind::Funnel => {
                add(self, "steps", "steps");
                add(self, "window", "window");
            }
            MetricKind::Activation => {
                for f in ["start", "event", "count", "within"] {
                    add(self, f, f);
                }
            }
            MetricKind::Retention => {
                for f in ["start", "return", "period"] {
                    add(self, f, f);
                }
                add(self, "k", "periods");
            }
            _ => unreachable!("every metric is handled"),
        }
        let unbounded = match t.get("unbounded") {
            None => false,
            Some(Value::Boolean(b)) => *b,
            Some(_) => {
                self.problem(Some("unbounded"), "must be true or false");
                ok = false;
                false
            }
        };
        // A missing required field is already reported; a stand-in lets the
        // analysis check the other fields in the same pass.
        let mut complete = true;
        for (f, required) in own_fields(m) {
            if *required && !t.contains_key(*f) {
                complete = false;
                let (flag, stand_in) = match *f {
                    "steps" => ("steps", "a,b"),
                    "k" => ("periods", "1"),
                    other => (other, "x"),
                };
                pairs.push((flag.to_string(), stand_in.to_string()));
            }
        }
        pairs.extend(filters.iter().map(|w| ("where".to_string(), w.clone())));
        // The analysis's own parser, over a placeholder range, checks the
        // parameters; its flag names are mapped back to the file's fields.
        let field_of = |param: &str| match param {
            "periods" => "k".to_string(),
            p => p.to_string(),
        };
        let mut raw = RawParams::new(pairs.iter().cloned().chain(placeholder_range()));
        let checked = match m {
            MetricKind::Funnel => {
                funnel::FunnelParams::from_raw(&mut raw, 0).map(|p| Measure::Funnel {
                    params: pairs.clone(),
                    window_ms: p.window_ms,
                })
            }
            MetricKind::Activation => {
                activation::ActivationParams::from_raw(&mut raw, 0).map(|p| Measure::Activation {
                    params: pairs.clone(),
                    within_ms: p.within_ms,
                })
            }
            _ => retention::RetentionParams::from_raw(&mut raw, 0).map(|p| Measure::Retention {
                params: pairs.clone(),
                k: p.periods as usize,
                unbounded,
                lag_ms: (i64::from(p.periods) + 1) * p.period.length_ms(),
            }),
        }
        .and_then(|measure| Segment::from_raw(&mut raw).map(|_| measure))
        .and_then(|measure| raw.finish().map(|()| measure));
        match checked {
            Ok(measure) => (ok && complete).then_some(measure),
            Err(QueryError::BadParam { param, message }) => {
                self.problem(Some(&field_of(&param)), message);
                None
            }
            Err(e) => {
                self.problem(None, e.to_string());
                None
            }
        }
    }

    /// One side of a ratio: a table with `metric`, `event`, `where`.
    fn side(&mut self, t: &toml::Table, field: &str, filters: &[String]) -> Option<Simple> {
        let Some(Value::Table(side)) = t.get(field) else {
            if t.contains_key(field) {
                self.problem(
                    Some(field),
                    "must be a table such as { metric = \"events\", event = \"error\" }",
                );
            }
            return None;
        };
        let prefix = format!("{field}.");
        let kind = match side.get("metric") {
            Some(Value::String(s)) => match MetricKind::parse(s.trim()) {
                Some(k) if k.is_simple() => Some(k),
                _ => {
                    self.problem(
                        Some(&format!("{prefix}metric")),
                        format!(
                            "'{s}' cannot be a side of a ratio (expected events, users, revenue, paying_users, aov or arpu)"
                        ),
                    );
                    None
                }
            },
            Some(_) => {
                self.problem(Some(&format!("{prefix}metric")), "must be a string");
                None
            }
            None => {
                self.problem(Some(&format!("{prefix}metric")), "is required");
                None
            }
        };
        let kind = kind?;
        for key in side.keys() {
            let allowed = key == "metric"
                || key == "where"
                || (key == "event" && matches!(kind, MetricKind::Events | MetricKind::Users));
            if !allowed {
                self.problem(
                    Some(&format!("{prefix}{key}")),
                    format!("unknown field for a '{}' side of a ratio", kind.as_str()),
                );
            }
        }
        let mut all = filters.to_vec();
        all.extend(self.strings_prefixed(side, "where", &prefix));
        self.simple(side, kind, &all, &prefix)
    }

    fn strings_prefixed(&mut self, t: &toml::Table, field: &str, prefix: &str) -> Vec<String> {
        let before = self.problems.len();
        let v = self.strings(t, field);
        for p in &mut self.problems[before..] {
            p.field = Some(format!("{prefix}{field}"));
        }
        v
    }

    /// A count or lifecycle metric, checked by trend or lifecycle.
    fn simple(
        &mut self,
        t: &toml::Table,
        kind: MetricKind,
        filters: &[String],
        prefix: &str,
    ) -> Option<Simple> {
        let event = if matches!(kind, MetricKind::Events | MetricKind::Users) {
            match self.param(t, "event", prefix) {
                Some(e) => Some(e),
                None => {
                    if !t.contains_key("event") && !prefix.is_empty() {
                        self.problem(
                            Some(&format!("{prefix}event")),
                            format!("is required for metric '{}'", kind.as_str()),
                        );
                    }
                    return None;
                }
            }
        } else {
            None
        };
        let pairs = event
            .iter()
            .map(|e| ("event".to_string(), e.clone()))
            .chain(placeholder_range())
            .chain(filters.iter().map(|w| ("where".to_string(), w.clone())));
        let mut raw = RawParams::new(pairs);
        let checked = match &event {
            Some(_) => trend::TrendParams::from_raw(&mut raw, 0).map(|_| ()),
            None => lifecycle::LifecycleParams::from_raw(&mut raw, 0).map(|_| ()),
        }
        .and_then(|()| Segment::from_raw(&mut raw).map(|_| ()))
        .and_then(|()| raw.finish());
        match checked {
            Ok(()) => Some(Simple {
                kind,
                event,
                filters: filters.to_vec(),
            }),
            Err(QueryError::BadParam { param, message }) => {
                self.problem(Some(&format!("{prefix}{param}")), message);
                None
            }
            Err(e) => {
                self.problem(None, e.to_string());
                None
            }
        }
    }
}

/// A range for checking parameters; the review replaces it per period.
fn placeholder_range() -> [(String, String); 2] {
    [
        ("from".to_string(), "2026-01-01".to_string()),
        ("to".to_string(), "2026-01-02".to_string()),
    ]
}
