//! One entry point per analysis name, shared by the CLI and HTTP so both
//! parse the same parameters and print the same JSON.

use tally_query::{
    Format, QueryError, RawParams, Report, Source, activation, active, funnel, lifecycle, retention,
};

/// The analyses, as subcommand and endpoint names.
pub const NAMES: [&str; 5] = ["funnel", "activation", "retention", "lifecycle", "active"];

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

    /// Runs the analysis on `src` and renders it in `format`.
    pub fn run(&self, src: &dyn Source, format: Format) -> Result<String, QueryError> {
        Ok(match self {
            Query::Funnel(p) => funnel::run(src, p)?.render(format),
            Query::Activation(p) => activation::run(src, p)?.render(format),
            Query::Retention(p) => retention::run(src, p)?.render(format),
            Query::Lifecycle(p) => lifecycle::run(src, p)?.render(format),
            Query::Active(p) => {
                let mut r = active::run(src, p)?;
                r.mark_today(tally_event::time::now_ms());
                r.render(format)
            }
        })
    }
}

/// Parses and runs with JSON output and the current time, for HTTP.
pub fn run_json(
    name: &str,
    pairs: Vec<(String, String)>,
    src: &dyn Source,
) -> Result<String, QueryError> {
    Query::parse(name, pairs, tally_event::time::now_ms())?.run(src, Format::Json)
}

/// Re-renders an analysis's JSON (as a collector answered it) in `format`.
pub fn render_json(name: &str, json: &str, format: Format) -> Result<String, String> {
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
                r.mark_today(tally_event::time::now_ms());
                r.render(format)
            })
            .map_err(|e| format!("unexpected answer from the collector: {e}")),
        other => Err(format!("unknown analysis '{other}'")),
    }
}
