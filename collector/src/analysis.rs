//! One entry point per analysis name, shared by the CLI and HTTP so both
//! parse the same parameters and print the same JSON.

use tally_query::{
    Breakdown, Format, GroupReport, Grouped, QueryError, RawParams, Report, Segment, Zone,
    activation, active, funnel, lifecycle, retention, trend,
};

use crate::catalog;
use crate::store::EventStore;

/// The analyses (and `events`), as subcommand and endpoint names.
pub const NAMES: [&str; 7] = [
    "funnel",
    "activation",
    "retention",
    "lifecycle",
    "active",
    "trend",
    "events",
];

/// A rendered answer, and warnings for stderr (an event name never seen).
pub struct Answer {
    /// The result in the format asked for.
    pub body: String,
    /// Things the user should know, one sentence each.
    pub warnings: Vec<String>,
}

/// An analysis with its parameters checked, ready to run on any source.
pub struct Query {
    /// Which analysis, with its own parameters.
    pub analysis: Analysis,
    /// `--where` and `--identity` (SPEC §5, §1); the default for `events`.
    pub segment: Segment,
    /// `--by` and `--limit`: never for `active` and `events`.
    pub by: Option<Breakdown>,
}

/// An analysis and its own parameters.
pub enum Analysis {
    /// `tally funnel`.
    Funnel(funnel::FunnelParams),
    /// `tally activation`.
    Activation(activation::ActivationParams),
    /// `tally retention`.
    Retention(retention::RetentionParams),
    /// `tally lifecycle`.
    Lifecycle(lifecycle::LifecycleParams),
    /// `tally active`.
    Active(active::ActiveParams),
    /// `tally trend`.
    Trend(trend::TrendParams),
    /// `tally events`: `[from, to)`, all time by default.
    Events {
        /// Inclusive, Unix ms.
        from: i64,
        /// Exclusive, Unix ms.
        to: i64,
    },
    /// `GET /v1/events?names=only`: names and counts in `[from, to)`,
    /// without decoding events ([`catalog::names`]).
    EventNames {
        /// Inclusive, Unix ms.
        from: i64,
        /// Exclusive, Unix ms.
        to: i64,
    },
}

impl Query {
    /// Parses analysis `name`'s parameters from `pairs` (flag names without
    /// dashes); unknown or malformed parameters are errors.
    pub fn parse(
        name: &str,
        pairs: Vec<(String, String)>,
        now_ms: i64,
    ) -> Result<Query, QueryError> {
        let mut raw = RawParams::new(pairs);
        let analysis = match name {
            "funnel" => Analysis::Funnel(funnel::FunnelParams::from_raw(&mut raw, now_ms)?),
            "activation" => {
                Analysis::Activation(activation::ActivationParams::from_raw(&mut raw, now_ms)?)
            }
            "retention" => {
                Analysis::Retention(retention::RetentionParams::from_raw(&mut raw, now_ms)?)
            }
            "lifecycle" => {
                Analysis::Lifecycle(lifecycle::LifecycleParams::from_raw(&mut raw, now_ms)?)
            }
            "active" => Analysis::Active(active::ActiveParams::from_raw(&mut raw, now_ms)?),
            "trend" => Analysis::Trend(trend::TrendParams::from_raw(&mut raw, now_ms)?),
            "events" => {
                // `tz` is taken even with no range (all time needs none),
                // so the dashboard can send it to every endpoint.
                raw.zone()?;
                let names_only = match raw.str("names")?.as_deref() {
                    None => false,
                    Some("only") => true,
                    Some(other) => {
                        return Err(QueryError::bad(
                            "names",
                            format!("'{other}' is not a mode (give names=only or nothing)"),
                        ));
                    }
                };
                let (from, to) = raw.range_or_all(now_ms)?;
                if names_only {
                    Analysis::EventNames { from, to }
                } else {
                    Analysis::Events { from, to }
                }
            }
            other => {
                return Err(QueryError::bad(
                    "analysis",
                    format!("unknown analysis '{other}'"),
                ));
            }
        };
        // SPEC §5: every analysis filters; all but `active` break down.
        // `events` lists the store as it is, so neither is read for it and
        // `finish` calls them unknown parameters.
        let (segment, by) = match analysis {
            Analysis::Events { .. } | Analysis::EventNames { .. } => (Segment::default(), None),
            Analysis::Active(_) => {
                let by = raw.str("by")?.is_some();
                if by || raw.str("limit")?.is_some() {
                    let flag = if by { "by" } else { "limit" };
                    return Err(QueryError::bad(
                        flag,
                        "active has no breakdown (every other analysis takes --by and --limit)",
                    ));
                }
                (Segment::from_raw(&mut raw)?, None)
            }
            _ => (Segment::from_raw(&mut raw)?, Breakdown::from_raw(&mut raw)?),
        };
        raw.finish()?;
        Ok(Query {
            analysis,
            segment,
            by,
        })
    }

    /// The event names the query asks about (`any` is not a name).
    pub fn event_names(&self) -> Vec<&str> {
        match &self.analysis {
            Analysis::Funnel(p) => p.steps.iter().map(String::as_str).collect(),
            Analysis::Activation(p) => vec![p.start.as_str(), p.event.as_str()],
            Analysis::Retention(p) => {
                let mut v = vec![p.start.as_str()];
                if let retention::ReturnEvent::Event(r) = &p.return_event {
                    v.push(r.as_str());
                }
                v
            }
            Analysis::Trend(p) if !p.is_any() => vec![p.event.as_str()],
            Analysis::Trend(_)
            | Analysis::Lifecycle(_)
            | Analysis::Active(_)
            | Analysis::Events { .. }
            | Analysis::EventNames { .. } => Vec::new(),
        }
    }

    /// Runs the query on `store` and renders it in `format`, with a warning
    /// for every event name it asks about that the store never saw.
    pub fn run(&self, store: &dyn EventStore, format: Format) -> Result<Answer, QueryError> {
        self.run_with(store, &catalog::NameBook::default(), format)
    }

    /// [`Query::run`] with the name book a running collector keeps (only
    /// `events?names=only` reads it).
    pub fn run_with(
        &self,
        store: &dyn EventStore,
        book: &catalog::NameBook,
        format: Format,
    ) -> Result<Answer, QueryError> {
        let body = match &self.analysis {
            Analysis::EventNames { from, to } => {
                catalog::names(store, book, *from, *to)?.render(format)
            }
            _ => self.render(store, format)?,
        };
        let warnings = catalog::unknown_name_warnings(store, &self.event_names())?;
        Ok(Answer { body, warnings })
    }

    fn render(&self, src: &dyn EventStore, format: Format) -> Result<String, QueryError> {
        let seg = &self.segment;
        let by = self.by.as_ref();
        Ok(match &self.analysis {
            Analysis::Funnel(p) => match by {
                Some(by) => funnel::run_by(src, p, seg, by)?.render(format),
                None => funnel::run_segment(src, p, seg)?.render(format),
            },
            Analysis::Activation(p) => match by {
                Some(by) => activation::run_by(src, p, seg, by)?.render(format),
                None => activation::run_segment(src, p, seg)?.render(format),
            },
            Analysis::Retention(p) => match by {
                Some(by) => retention::run_by(src, p, seg, by)?.render(format),
                None => retention::run_segment(src, p, seg)?.render(format),
            },
            Analysis::Lifecycle(p) => match by {
                Some(by) => lifecycle::run_by(src, p, seg, by)?.render(format),
                None => lifecycle::run_segment(src, p, seg)?.render(format),
            },
            Analysis::Active(p) => {
                let mut r = active::run_segment(src, p, seg)?;
                r.mark_today(tally_event::time::now_ms(), &p.tz);
                r.render(format)
            }
            Analysis::Trend(p) => match by {
                Some(by) => trend::run_by(src, p, seg, by)?.render(format),
                None => trend::run_segment(src, p, seg)?.render(format),
            },
            Analysis::Events { from, to } => catalog::list(src, *from, *to)?.render(format),
            Analysis::EventNames { from, to } => {
                catalog::names(src, &catalog::NameBook::default(), *from, *to)?.render(format)
            }
        })
    }
}

/// Parses and runs with JSON output and the current time, for HTTP.
pub fn run_json(
    name: &str,
    pairs: Vec<(String, String)>,
    store: &dyn EventStore,
    book: &catalog::NameBook,
) -> Result<Answer, QueryError> {
    Query::parse(name, pairs, tally_event::time::now_ms())?.run_with(store, book, Format::Json)
}

/// Re-renders an analysis's JSON (as a collector answered it) in `format`;
/// `tz` is the zone the query asked for (it marks `active`'s today).
pub fn render_json(name: &str, json: &str, format: Format, tz: &Zone) -> Result<String, String> {
    fn parse<R: Report + serde::de::DeserializeOwned>(
        json: &str,
        f: Format,
    ) -> Result<String, String> {
        serde_json::from_str::<R>(json)
            .map(|r| r.render(f))
            .map_err(|e| format!("unexpected answer from the collector: {e}"))
    }
    // A broken-down answer (`--by`) is `{"by", "groups", "other_groups"}`
    // around the analysis's own JSON.
    fn parse_any<R: GroupReport + serde::de::DeserializeOwned>(
        json: &str,
        f: Format,
    ) -> Result<String, String> {
        let grouped = serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .is_some_and(|v| v.get("groups").is_some() && v.get("by").is_some());
        if grouped {
            parse::<Grouped<R>>(json, f)
        } else {
            parse::<R>(json, f)
        }
    }
    match name {
        "funnel" => parse_any::<funnel::FunnelResult>(json, format),
        "activation" => parse_any::<activation::ActivationResult>(json, format),
        "retention" => parse_any::<retention::RetentionResult>(json, format),
        "lifecycle" => parse_any::<lifecycle::LifecycleResult>(json, format),
        "active" => serde_json::from_str::<active::ActiveResult>(json)
            .map(|mut r| {
                r.mark_today(tally_event::time::now_ms(), tz);
                r.render(format)
            })
            .map_err(|e| format!("unexpected answer from the collector: {e}")),
        "trend" => parse_any::<trend::TrendResult>(json, format),
        "events" => parse::<catalog::EventsResult>(json, format),
        other => Err(format!("unknown analysis '{other}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tally_query::{MemEvent, MemSource, Segment};

    /// `--server` prints what the collector answered in the format asked
    /// for: re-rendering a grouped answer's JSON must give exactly what
    /// the grouped result renders locally.
    #[test]
    fn grouped_answers_render_the_same_from_their_json() {
        let t0 = tally_event::time::parse_date_or_rfc3339("2026-01-05").unwrap();
        let src = MemSource::new([
            MemEvent::new("p", "a", t0).props(json!({"g": "x"})),
            MemEvent::new("p", "b", t0 + 60_000).props(json!({"g": 2})),
            MemEvent::new("q", "a", t0 + 3_600_000).props(json!({"g": null})),
        ]);
        let pairs = |extra: &[(&str, &str)]| {
            [
                ("from", "2026-01-05"),
                ("to", "2026-01-07"),
                ("by", "g"),
                ("limit", "2"),
            ]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
        };
        let cases: Vec<(&str, Vec<(String, String)>)> = vec![
            ("funnel", pairs(&[("steps", "a,b")])),
            (
                "activation",
                pairs(&[("start", "a"), ("event", "b"), ("as-of", "2026-02-01")]),
            ),
            (
                "retention",
                pairs(&[("start", "a"), ("period", "day"), ("as-of", "2026-02-01")]),
            ),
            ("lifecycle", pairs(&[])),
            ("trend", pairs(&[("event", "any"), ("measure", "users")])),
        ];
        for (name, pairs) in cases {
            let q = Query::parse(name, pairs, t0).unwrap();
            let by = q.by.as_ref().expect("a breakdown");
            let seg = Segment::default();
            let (json, rendered): (String, Vec<String>) = match &q.analysis {
                Analysis::Funnel(p) => {
                    let r = funnel::run_by(&src, p, &seg, by).unwrap();
                    (
                        r.render(Format::Json),
                        vec![r.render(Format::Table), r.render(Format::Csv)],
                    )
                }
                Analysis::Activation(p) => {
                    let r = activation::run_by(&src, p, &seg, by).unwrap();
                    (
                        r.render(Format::Json),
                        vec![r.render(Format::Table), r.render(Format::Csv)],
                    )
                }
                Analysis::Retention(p) => {
                    let r = retention::run_by(&src, p, &seg, by).unwrap();
                    (
                        r.render(Format::Json),
                        vec![r.render(Format::Table), r.render(Format::Csv)],
                    )
                }
                Analysis::Lifecycle(p) => {
                    let r = lifecycle::run_by(&src, p, &seg, by).unwrap();
                    (
                        r.render(Format::Json),
                        vec![r.render(Format::Table), r.render(Format::Csv)],
                    )
                }
                Analysis::Trend(p) => {
                    let r = trend::run_by(&src, p, &seg, by).unwrap();
                    (
                        r.render(Format::Json),
                        vec![r.render(Format::Table), r.render(Format::Csv)],
                    )
                }
                _ => unreachable!(),
            };
            assert!(json.contains("\"other_groups\""), "{name}: {json}");
            let zone = Zone::utc();
            let again =
                [Format::Table, Format::Csv].map(|f| render_json(name, &json, f, &zone).unwrap());
            assert_eq!(again.to_vec(), rendered, "{name}");
            assert!(rendered[1].starts_with("group,"), "{name}: {}", rendered[1]);
        }
    }
}
