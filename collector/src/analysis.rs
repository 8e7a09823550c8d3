//! One entry point per analysis name, shared by the CLI and HTTP so both
//! parse the same parameters and print the same JSON.

use tally_query::{
    Format, QueryError, RawParams, Report, Source, activation, active, funnel, lifecycle, retention,
};

/// The analyses, as subcommand and endpoint names.
pub const NAMES: [&str; 5] = ["funnel", "activation", "retention", "lifecycle", "active"];

/// Runs analysis `name` with `pairs` (flag names without dashes) and renders it.
pub fn run(
    name: &str,
    pairs: Vec<(String, String)>,
    src: &dyn Source,
    format: Format,
    now_ms: i64,
) -> Result<String, QueryError> {
    let mut raw = RawParams::new(pairs);
    macro_rules! analysis {
        ($module:ident, $params:ty) => {{
            let params = <$params>::from_raw(&mut raw, now_ms)?;
            raw.finish()?;
            Ok($module::run(src, &params)?.render(format))
        }};
    }
    match name {
        "funnel" => analysis!(funnel, funnel::FunnelParams),
        "activation" => analysis!(activation, activation::ActivationParams),
        "retention" => analysis!(retention, retention::RetentionParams),
        "lifecycle" => analysis!(lifecycle, lifecycle::LifecycleParams),
        "active" => analysis!(active, active::ActiveParams),
        other => Err(QueryError::bad(
            "analysis",
            format!("unknown analysis '{other}'"),
        )),
    }
}

/// [`run`] with JSON output and the current time, for HTTP.
pub fn run_json(
    name: &str,
    pairs: Vec<(String, String)>,
    src: &dyn Source,
) -> Result<String, QueryError> {
    run(name, pairs, src, Format::Json, tally_event::time::now_ms())
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
        "active" => parse::<active::ActiveResult>(json, format),
        other => Err(format!("unknown analysis '{other}'")),
    }
}
