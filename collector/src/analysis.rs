//! One entry point per analysis name, shared by the CLI and HTTP so both
//! parse the same parameters and print the same JSON.

use tally_query::{
    Format, QueryError, RawParams, Report, Zone, activation, active, funnel, lifecycle, retention,
    trend,
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
pub enum Query {
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
        let query = match name {
            "funnel" => Query::Funnel(funnel::FunnelParams::from_raw(&mut raw, now_ms)?),
            "activation" => {
                Query::Activation(activation::ActivationParams::from_raw(&mut raw, now_ms)?)
            }
            "retention" => {
                Query::Retention(retention::RetentionParams::from_raw(&mut raw, now_ms)?)
            }
            "lifecycle" => {
                Query::Lifecycle(lifecycle::LifecycleParams::from_raw(&mut raw, now_ms)?)
            }
            "active" => Query::Active(active::ActiveParams::from_raw(&mut raw, now_ms)?),
            "trend" => Query::Trend(trend::TrendParams::from_raw(&mut raw, now_ms)?),
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
                    Query::EventNames { from, to }
                } else {
                    Query::Events { from, to }
                }
            }
            other => {
                return Err(QueryError::bad(
                    "analysis",
                    format!("unknown analysis '{other}'"),
                ));
            }
        };
        raw.finish()?;
        Ok(query)
    }

    /// The event names the query asks about (`any` is not a name).
    pub fn event_names(&self) -> Vec<&str> {
        match self {
            Query::Funnel(p) => p.steps.iter().map(String::as_str).collect(),
            Query::Activation(p) => vec![p.start.as_str(), p.event.as_str()],
            Query::Retention(p) => {
                let mut v = vec![p.start.as_str()];
                if let retention::ReturnEvent::Event(r) = &p.return_event {
                    v.push(r.as_str());
                }
                v
            }
            Query::Trend(p) if !p.is_any() => vec![p.event.as_str()],
            Query::Trend(_)
            | Query::Lifecycle(_)
            | Query::Active(_)
            | Query::Events { .. }
            | Query::EventNames { .. } => Vec::new(),
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
        let body = match self {
            Query::EventNames { from, to } => {
                catalog::names(store, book, *from, *to)?.render(format)
            }
            _ => self.render(store, format)?,
        };
        let warnings = catalog::unknown_name_warnings(store, &self.event_names())?;
        Ok(Answer { body, warnings })
    }

    fn render(&self, src: &dyn EventStore, format: Format) -> Result<String, QueryError> {
        Ok(match self {
            Query::Funnel(p) => funnel::run(src, p)?.render(format),
            Query::Activation(p) => activation::run(src, p)?.render(format),
            Query::Retention(p) => retention::run(src, p)?.render(format),
            Query::Lifecycle(p) => lifecycle::run(src, p)?.render(format),
            Query::Active(p) => {
                let mut r = active::run(src, p)?;
                r.mark_today(tally_event::time::now_ms(), &p.tz);
                r.render(format)
            }
            Query::Trend(p) => trend::run(src, p)?.render(format),
            Query::Events { from, to } => catalog::list(src, *from, *to)?.render(format),
            Query::EventNames { from, to } => {
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
    match name {
        "funnel" => parse::<funnel::FunnelResult>(json, format),
        "activation" => parse::<activation::ActivationResult>(json, format),
        "retention" => parse::<retention::RetentionResult>(json, format),
        "lifecycle" => parse::<lifecycle::LifecycleResult>(json, format),
        "active" => serde_json::from_str::<active::ActiveResult>(json)
            .map(|mut r| {
                r.mark_today(tally_event::time::now_ms(), tz);
                r.render(format)
            })
            .map_err(|e| format!("unexpected answer from the collector: {e}")),
        "trend" => parse::<trend::TrendResult>(json, format),
        "events" => parse::<catalog::EventsResult>(json, format),
        other => Err(format!("unknown analysis '{other}'")),
    }
}
