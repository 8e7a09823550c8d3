//! The `tally` command line: parses flags, sets up logging, and maps every
//! failure to an exit code in one place (0 ok, 1 failed, 2 bad usage).

use std::io::{BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tally_event::time::{format_rfc3339, parse_date_or_rfc3339};
use tally_query::{Format, QueryError};

use crate::backend;
use crate::config::Config;
use crate::error::Error;
use crate::store::{Admin, StoreOptions};

/// What `tally --help` starts with.
const ABOUT: &str = "\
Tally: self-hosted product analytics in one binary. `tally serve` collects
events over HTTP into an embedded store; the same binary answers funnel,
activation, retention, lifecycle, active-user and trend questions, and
keeps a KPI scorecard (`tally review`).

Examples:
  tally serve                                    # collector on 127.0.0.1:8080, data in ./tally-data
  tally events                                   # what has been sent so far
  tally funnel --steps signup,invoice_sent --window 7d --last 30d
  tally review --init && tally review            # the weekly KPI scorecard of DATA/kpis.toml";

/// Tally: self-hosted product analytics in one binary.
#[derive(Debug, Parser)]
#[command(name = "tally", version, about = ABOUT, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector (HTTP ingest and queries).
    Serve(ServeArgs),
    /// Bulk-load newline-delimited JSON events (a FILE, or - for stdin).
    Import(ImportArgs),
    /// Write stored events as newline-delimited JSON.
    Export(ExportArgs),
    /// Funnel conversion through ordered steps.
    Funnel(FunnelArgs),
    /// X-in-Y activation: did new users do EVENT COUNT times within a period?
    Activation(ActivationArgs),
    /// Retention cohorts.
    Retention(RetentionArgs),
    /// The AARRR lifecycle report.
    Lifecycle(LifecycleArgs),
    /// Daily, weekly and monthly active users.
    Active(ActiveArgs),
    /// Events, users or revenue of one event (or any) per hour, day, week
    /// or month.
    Trend(TrendArgs),
    /// The KPI scorecard of kpis.toml: each KPI for the latest period that
    /// is over and mature for it, beside the period before; exit 3 when a
    /// tripwire trips.
    Review(ReviewArgs),
    /// What is in the store: each event's count, users, first and last
    /// time and property names (all time unless --from/--to/--last).
    Events(EventsArgs),
    /// Verify every checksum and reference of a data directory (offline).
    Check(CheckArgs),
    /// A consistent copy of the store that `tally serve --data DEST` opens
    /// (offline with --data, or from a running collector with --server).
    Backup(BackupArgs),
    /// Delete every event counted for a person (with identity linking, a
    /// user's own events and those of the anonymous ids linked to it);
    /// offline with --data, or through a running collector with --server.
    DeletePerson(DeletePersonArgs),
    /// Rewrite the store without deleted persons' events and events older
    /// than --keep, merging small chunks (offline; `tally serve` does this
    /// by itself in the background).
    Compact(CompactArgs),
}

#[derive(Debug, Args)]
struct CompactArgs {
    /// Data directory
    #[arg(long, default_value = "./tally-data")]
    data: PathBuf,
    /// Remove events older than this, e.g. 400d (as `tally serve --keep`)
    #[arg(long)]
    keep: Option<String>,
    /// Output: table or json
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(Debug, Args)]
struct DeletePersonArgs {
    /// The person's key: a user_id, or an anonymous_id
    person: String,
    /// Data directory, when no collector holds it [default: ./tally-data]
    #[arg(long, conflicts_with = "server")]
    data: Option<PathBuf>,
    /// URL of a running collector, e.g. http://127.0.0.1:8080
    #[arg(long)]
    server: Option<String>,
    /// The collector's admin key (TALLY_ADMIN_KEY)
    #[arg(long, env = "TALLY_ADMIN_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Output: table or json
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(Debug, Args)]
struct BackupArgs {
    /// Where to put the copy: a new or empty directory (with --server, a
    /// path on the collector's machine)
    dest: PathBuf,
    /// Data directory, when no collector holds it [default: ./tally-data]
    #[arg(long, conflicts_with = "server")]
    data: Option<PathBuf>,
    /// URL of a running collector, e.g. http://127.0.0.1:8080
    #[arg(long)]
    server: Option<String>,
    /// The collector's admin key (TALLY_ADMIN_KEY)
    #[arg(long, env = "TALLY_ADMIN_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Output: table or json
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Data directory
    #[arg(long, default_value = "./tally-data")]
    data: PathBuf,
    /// Repair what can be repaired without losing an intact event: rebuild
    /// the index from the chunk files, cut a log before damage (a copy of
    /// the damaged file is kept)
    #[arg(long)]
    repair: bool,
    /// Output: table or json
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Data directory [default: ./tally-data]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long)]
    listen: Option<String>,
    /// Key for ingest (TALLY_WRITE_KEY); generated on first start if unset
    #[arg(long)]
    write_key: Option<String>,
    /// Key for queries (TALLY_READ_KEY); generated on first start if unset
    #[arg(long)]
    read_key: Option<String>,
    /// Key for deletion and backup (TALLY_ADMIN_KEY); generated on first
    /// start if unset
    #[arg(long)]
    admin_key: Option<String>,
    /// sled page cache in MiB (TALLY_CACHE_MB) [default: 256]
    #[arg(long)]
    cache_mb: Option<u64>,
    /// Seconds a client has to send a request body once its headers are in;
    /// later gets a 408 (TALLY_BODY_TIMEOUT_SECS) [default: 30]
    #[arg(long)]
    body_timeout_secs: Option<u64>,
    /// MiB of request bodies held in memory at once across all connections;
    /// beyond it a request gets a 503 with Retry-After
    /// (TALLY_MAX_INFLIGHT_BODY_MB) [default: 256]
    #[arg(long)]
    max_inflight_body_mb: Option<usize>,
    /// Browser origin allowed to send events (CORS), e.g.
    /// http://127.0.0.1:8000, or * for any; repeatable; replaces
    /// TALLY_CORS_ORIGINS and tally.toml's cors_origins [default: none]
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// Ingest requests a second from one client address (not loopback),
    /// burst twice that; more get a 429; 0 for no limit
    /// (TALLY_INGEST_RATE_PER_IP) [default: 50]
    #[arg(long)]
    ingest_rate_per_ip: Option<u32>,
    /// Keep events this long, e.g. 400d; older ones are left out of every
    /// answer and removed by compaction (TALLY_KEEP, tally.toml's keep)
    /// [default: keep everything]
    #[arg(long)]
    keep: Option<String>,
    /// Configuration file [default: ./tally.toml if present]
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// NDJSON file, or - for standard input
    file: PathBuf,
    /// Data directory
    #[arg(long, default_value = "./tally-data")]
    data: PathBuf,
    /// Send the events to a running collector instead, e.g.
    /// http://127.0.0.1:8080 (batches to /v1/batch, retried until acknowledged)
    #[arg(long, conflicts_with = "data")]
    server: Option<String>,
    /// Write key of the collector (with --server)
    #[arg(long, env = "TALLY_WRITE_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Summary format: table or json
    #[arg(long, default_value = "table")]
    format: String,
    /// Exit 1 if any line was rejected (valid lines are stored either way)
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Data directory (when no collector holds it) [default: ./tally-data]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Export from a running collector instead, e.g. http://127.0.0.1:8080
    /// (TALLY_SERVER when neither --server nor --data is given)
    #[arg(long, conflicts_with = "data")]
    server: Option<String>,
    /// Read key of the collector (with --server)
    #[arg(long, env = "TALLY_READ_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Only events at or after this time (date or RFC 3339) [default: all time]
    #[arg(long)]
    from: Option<String>,
    /// Only events before this time (date or RFC 3339) [default: all time]
    #[arg(long)]
    to: Option<String>,
    /// Only the last N whole days (30d) or weeks (2w) up to the end of
    /// today, instead of --from/--to
    #[arg(long, conflicts_with_all = ["from", "to"])]
    last: Option<String>,
    /// Write to this file instead of standard output
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Export what is intact of a damaged store: skip chunks that cannot be
    /// read (each is reported on stderr) instead of stopping at the first
    #[arg(long)]
    skip_damaged: bool,
}

/// Where an analysis reads from, and how it prints.
#[derive(Debug, Args)]
struct QueryArgs {
    /// Data directory (when no collector holds it) [default: ./tally-data]
    #[arg(long)]
    data: Option<PathBuf>,
    /// URL of a running collector, e.g. http://127.0.0.1:8080 (TALLY_SERVER
    /// when neither --server nor --data is given)
    // Not `env = "TALLY_SERVER"`: clap would then refuse an explicit
    // `--data` as conflicting whenever the variable is set.
    #[arg(long, conflicts_with = "data")]
    server: Option<String>,
    /// Read key of the collector
    #[arg(long, env = "TALLY_READ_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Output: table, json or csv
    #[arg(long, default_value = "table")]
    format: String,
    /// Start of the range: a date (2026-01-31, midnight in --tz) or RFC 3339
    /// [default: 30 days before --to; `tally events`: all time]
    #[arg(long)]
    from: Option<String>,
    /// End of the range (exclusive), a date or RFC 3339 [default: the
    /// midnight after today (in --tz); `tally events`: all time]
    #[arg(long)]
    to: Option<String>,
    /// The last N whole days (30d) or weeks (2w) up to the end of today,
    /// instead of --from/--to
    #[arg(long, conflicts_with_all = ["from", "to"])]
    last: Option<String>,
    /// IANA time zone of dates and calendar buckets, e.g. Europe/Berlin
    /// [default: UTC]
    #[arg(long)]
    tz: Option<String>,
}

/// `--where` and `--identity`, which every analysis takes (SPEC §5, §1).
#[derive(Debug, Args)]
struct FilterArgs {
    /// Only events whose property passes: 'PATH OP VALUE', OP one of
    /// = != < <= > >= ~ (contains) !~; repeatable, all must hold
    /// (e.g. --where 'plan = pro' --where 'utm.source ~ news')
    #[arg(long = "where", value_name = "FILTER", allow_hyphen_values = true)]
    where_: Vec<String>,
    /// linked: count an anonymous id's events for the user it is linked
    /// to; none: every person key is its own person [default: linked]
    #[arg(long)]
    identity: Option<String>,
}

/// `--by` and `--limit`, which every analysis but `active` takes.
#[derive(Debug, Args)]
struct ByArgs {
    /// Break the answer down by this property (a dotted path, e.g. plan or
    /// utm.source)
    #[arg(long, value_name = "PATH")]
    by: Option<String>,
    /// With --by: how many groups to list, 1 to 1000, largest first; the
    /// rest are counted [default: 20]
    #[arg(long, allow_hyphen_values = true)]
    limit: Option<String>,
}

impl FilterArgs {
    /// The flags as parameters (`where` once per filter).
    fn pairs(&self, by: Option<&ByArgs>) -> Vec<(&'static str, Option<String>)> {
        let mut pairs: Vec<(&'static str, Option<String>)> = self
            .where_
            .iter()
            .map(|w| ("where", Some(w.clone())))
            .collect();
        pairs.push(("identity", self.identity.clone()));
        if let Some(b) = by {
            pairs.push(("by", b.by.clone()));
            pairs.push(("limit", b.limit.clone()));
        }
        pairs
    }
}

#[derive(Debug, Args)]
struct FunnelArgs {
    /// Comma-separated event names, 2 to 20
    #[arg(long)]
    steps: Option<String>,
    /// Time allowed from the first step to the last: 90s, 30m, 24h, 7d, 2w [default: 14d]
    #[arg(long, allow_hyphen_values = true)]
    window: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    breakdown: ByArgs,
    #[command(flatten)]
    q: QueryArgs,
}

#[derive(Debug, Args)]
struct ActivationArgs {
    /// The event that starts the clock (first ever occurrence), e.g. signup
    #[arg(long)]
    start: Option<String>,
    /// The event that counts toward activation
    #[arg(long)]
    event: Option<String>,
    /// How many `event`s are needed [default: 1]
    #[arg(long, allow_hyphen_values = true)]
    count: Option<String>,
    /// Within how long of the start [default: 30d]
    #[arg(long, allow_hyphen_values = true)]
    within: Option<String>,
    /// Persons whose start + within is at or before this time are mature
    /// (a date or RFC 3339) [default: now]
    #[arg(long)]
    as_of: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    breakdown: ByArgs,
    #[command(flatten)]
    q: QueryArgs,
}

#[derive(Debug, Args)]
struct RetentionArgs {
    /// The event that puts a person in a cohort (first ever occurrence)
    #[arg(long)]
    start: Option<String>,
    /// The event that counts as coming back, or `any` [default: the start event]
    #[arg(long = "return")]
    return_: Option<String>,
    /// day or week [default: week]
    #[arg(long)]
    period: Option<String>,
    /// Number of periods after period 0, 0 to 365 [default: 8]
    #[arg(long, allow_hyphen_values = true)]
    periods: Option<String>,
    /// Time at which periods count as elapsed [default: now]
    #[arg(long)]
    as_of: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    breakdown: ByArgs,
    #[command(flatten)]
    q: QueryArgs,
}

#[derive(Debug, Args)]
struct LifecycleArgs {
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    breakdown: ByArgs,
    #[command(flatten)]
    q: QueryArgs,
}

#[derive(Debug, Args)]
struct ActiveArgs {
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    q: QueryArgs,
}

#[derive(Debug, Args)]
struct TrendArgs {
    /// The event to count, or `any` for every event
    #[arg(long)]
    event: Option<String>,
    /// events, users (distinct persons) or revenue (net) [default: events]
    #[arg(long)]
    measure: Option<String>,
    /// hour, day, week (ISO, Monday) or month, in --tz [default: day]
    #[arg(long)]
    interval: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    breakdown: ByArgs,
    #[command(flatten)]
    q: QueryArgs,
}

#[derive(Debug, Args)]
struct ReviewArgs {
    /// day, week (ISO, Monday) or month, in --tz [default: week]
    #[arg(long)]
    period: Option<String>,
    /// Report the periods that are over (and mature) by this time, a date
    /// or RFC 3339 [default: now]
    #[arg(long)]
    as_of: Option<String>,
    /// The KPI file [default: DATA/kpis.toml]; not with --server, where
    /// the collector reviews its own DATA/kpis.toml
    #[arg(long, conflicts_with = "server")]
    kpis: Option<PathBuf>,
    /// Write a starter KPI file (to --kpis FILE or DATA/kpis.toml); never
    /// overwrites one
    #[arg(long, conflicts_with = "server")]
    init: bool,
    /// Data directory (when no collector holds it) [default: ./tally-data]
    #[arg(long)]
    data: Option<PathBuf>,
    /// URL of a running collector, e.g. http://127.0.0.1:8080 (TALLY_SERVER
    /// when neither --server nor --data is given)
    #[arg(long, conflicts_with = "data")]
    server: Option<String>,
    /// Read key of the collector
    #[arg(long, env = "TALLY_READ_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Output: table, json, csv or markdown (a weekly update to paste)
    #[arg(long, default_value = "table")]
    format: String,
    /// IANA time zone of the periods, e.g. Europe/Berlin [default: UTC]
    #[arg(long)]
    tz: Option<String>,
}

#[derive(Debug, Args)]
struct EventsArgs {
    #[command(flatten)]
    q: QueryArgs,
}

/// A failure and its exit code.
enum Failure {
    /// Exit 2: the command line was wrong.
    Usage(String),
    /// Exit 1: the command could not do its work.
    Failed(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Query(QueryError::BadParam { .. }) => Failure::Usage(e.to_string()),
            other => Failure::Failed(other.to_string()),
        }
    }
}

impl From<crate::remote::RemoteError> for Failure {
    fn from(e: crate::remote::RemoteError) -> Self {
        match e {
            crate::remote::RemoteError::Usage(m) => Failure::Usage(m),
            crate::remote::RemoteError::Failed(m) => Failure::Failed(m),
        }
    }
}

impl From<tally_store::Error> for Failure {
    fn from(e: tally_store::Error) -> Self {
        Error::from(e).into()
    }
}

impl From<QueryError> for Failure {
    fn from(e: QueryError) -> Self {
        Error::Query(e).into()
    }
}

/// Runs the command line and returns the process exit code: 0 ok, 1
/// failed, 2 bad usage, 3 a KPI tripwire tripped (`tally review`).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_failure(e),
    };
    init_logging(matches!(cli.command, Command::Serve(_)));
    match run(cli.command) {
        Ok(code) => code,
        Err(Failure::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(1)
        }
    }
}

/// Prints clap's message (help and version included) with a hint for the
/// flags people bring from other tools, and picks the exit code.
fn clap_failure(e: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let _ = e.print();
    if e.kind() == ErrorKind::UnknownArgument
        && let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg)
        && (arg == "--port" || arg.starts_with("--port=") || arg == "-p")
    {
        eprintln!(
            "\nTally takes an address, not a port: use --listen ADDR, e.g. \
             `tally serve --listen 127.0.0.1:9000` (or 0.0.0.0:9000 for every interface)"
        );
    }
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}

fn init_logging(serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only for a person at a terminal, never in a log file
    // or journald.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Serve(a) => serve(a),
        Command::Import(a) => import(a),
        Command::Export(a) => export(a),
        Command::Funnel(a) => analysis(
            "funnel",
            &a.q,
            [("steps", a.steps), ("window", a.window)]
                .into_iter()
                .chain(a.filter.pairs(Some(&a.breakdown)))
                .collect(),
        ),
        Command::Activation(a) => analysis(
            "activation",
            &a.q,
            [
                ("start", a.start),
                ("event", a.event),
                ("count", a.count),
                ("within", a.within),
                ("as-of", a.as_of),
            ]
            .into_iter()
            .chain(a.filter.pairs(Some(&a.breakdown)))
            .collect(),
        ),
        Command::Retention(a) => analysis(
            "retention",
            &a.q,
            [
                ("start", a.start),
                ("return", a.return_),
                ("period", a.period),
                ("periods", a.periods),
                ("as-of", a.as_of),
            ]
            .into_iter()
            .chain(a.filter.pairs(Some(&a.breakdown)))
            .collect(),
        ),
        Command::Lifecycle(a) => analysis("lifecycle", &a.q, a.filter.pairs(Some(&a.breakdown))),
        Command::Active(a) => analysis("active", &a.q, a.filter.pairs(None)),
        Command::Trend(a) => analysis(
            "trend",
            &a.q,
            [
                ("event", a.event),
                ("measure", a.measure),
                ("interval", a.interval),
            ]
            .into_iter()
            .chain(a.filter.pairs(Some(&a.breakdown)))
            .collect(),
        ),
        Command::Check(a) => check(a),
        Command::Backup(a) => backup(a),
        Command::DeletePerson(a) => delete_person(a),
        Command::Compact(a) => compact(a),
        Command::Events(a) => analysis("events", &a.q, vec![]),
        Command::Review(a) => review(a),
    }
}

/// `tally review`: exit 0, or 3 when any tripwire tripped.
fn review(a: ReviewArgs) -> Result<ExitCode, Failure> {
    use tally_query::review::ReviewFormat;
    let format: ReviewFormat = a
        .format
        .parse()
        .map_err(|m| Failure::Usage(format!("--format: {m}")))?;
    let data = a
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from("./tally-data"));
    let path = a
        .kpis
        .clone()
        .unwrap_or_else(|| crate::review::default_path(&data));
    if a.init {
        crate::review::init(&path).map_err(Failure::Failed)?;
        println!(
            "wrote {}: edit the event names to yours, then run `tally review`",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let pairs: Vec<(String, String)> = [("period", &a.period), ("as-of", &a.as_of), ("tz", &a.tz)]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
        .collect();
    let zone = |tz: &Option<String>| {
        tz.as_deref()
            .and_then(|z| tally_query::Zone::parse(z).ok())
            .unwrap_or_default()
    };
    // As for the analyses: an explicit --data wins over TALLY_SERVER.
    let server = a.server.clone().or_else(|| {
        (a.data.is_none() && a.kpis.is_none())
            .then(|| std::env::var("TALLY_SERVER").ok())
            .flatten()
            .filter(|s| !s.trim().is_empty())
    });
    let (result, warnings) = match &server {
        Some(server) => {
            let key = a.key.as_deref().ok_or_else(|| {
                Failure::Usage("--key (or TALLY_READ_KEY) is required with --server".into())
            })?;
            let (json, warnings) = remote(server, key, "review", &pairs)?;
            let result: tally_query::review::ReviewResult =
                serde_json::from_str(&json).map_err(|e| {
                    Failure::Failed(format!("unexpected answer from the collector: {e}"))
                })?;
            (result, warnings)
        }
        None => {
            // Parameters and the file are checked before the store is
            // opened, so mistakes in them are usage errors even when the
            // data directory is busy.
            let params = crate::review::params(pairs, tally_event::time::now_ms())?;
            let kpis = crate::review::load(&path).map_err(|e| Failure::Usage(e.to_string()))?;
            let store = open_existing(&data, false)?;
            crate::review::run(&store, &kpis, &params)?
        }
    };
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(result.render(format, &zone(&a.tz)).as_bytes());
    let _ = stdout.flush();
    Ok(if result.tripped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// `--format` of the commands that print a table or JSON: true for JSON.
fn json_or_table(format: &str) -> Result<bool, Failure> {
    match format {
        "json" => Ok(true),
        "table" => Ok(false),
        other => Err(Failure::Usage(format!(
            "--format: expected table or json, got {other:?}"
        ))),
    }
}

fn compact(a: CompactArgs) -> Result<ExitCode, Failure> {
    let json = json_or_table(&a.format)?;
    let keep_ms = Config {
        keep: a.keep.clone(),
        ..Config::default()
    }
    .keep_ms()
    .map_err(|e| Failure::Usage(e.to_string()))?;
    let store = open_to_write(
        &a.data,
        &StoreOptions {
            keep_ms,
            ..StoreOptions::default()
        },
        "it compacts the store by itself",
    )?;
    let done = store.compact()?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "chunks_before": done.chunks_before,
                "chunks_after": done.chunks_after,
                "events": done.events,
                "removed": done.removed,
            })
        );
    } else {
        println!(
            "compacted {} chunks into {}: {} events kept, {} removed",
            done.chunks_before,
            done.chunks_after,
            tally_query::render::thousands(done.events),
            tally_query::render::thousands(done.removed)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn delete_person(a: DeletePersonArgs) -> Result<ExitCode, Failure> {
    let json = json_or_table(&a.format)?;
    if a.person.is_empty() {
        return Err(Failure::Usage("the person key is empty".into()));
    }
    let deleted = match &a.server {
        Some(server) => {
            let key = a.key.as_deref().ok_or_else(|| {
                Failure::Usage("--key (or TALLY_ADMIN_KEY) is required with --server".into())
            })?;
            crate::remote::delete_person(server, key, &a.person).map_err(|e| match e {
                crate::remote::RemoteError::Usage(m) => Failure::Usage(m),
                crate::remote::RemoteError::Failed(m) => Failure::Failed(m),
            })?
        }
        None => {
            let data = a
                .data
                .clone()
                .unwrap_or_else(|| PathBuf::from("./tally-data"));
            open_to_write(
                &data,
                &StoreOptions::default(),
                "delete through it with --server URL --key ADMIN_KEY",
            )?
            .delete_person(&a.person)?
        }
    };
    if json {
        println!("{}", serde_json::json!({ "deleted": deleted }));
    } else {
        println!(
            "deleted {} events of {} (their bytes leave the disk at the next compaction)",
            tally_query::render::thousands(deleted),
            a.person
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn backup(a: BackupArgs) -> Result<ExitCode, Failure> {
    let json = json_or_table(&a.format)?;
    let events = match &a.server {
        Some(server) => {
            let key = a.key.as_deref().ok_or_else(|| {
                Failure::Usage("--key (or TALLY_ADMIN_KEY) is required with --server".into())
            })?;
            let dest = a.dest.to_string_lossy().into_owned();
            crate::remote::backup(server, key, &dest).map_err(|e| match e {
                crate::remote::RemoteError::Usage(m) => Failure::Usage(m),
                crate::remote::RemoteError::Failed(m) => Failure::Failed(m),
            })?
        }
        None => {
            let data = a
                .data
                .clone()
                .unwrap_or_else(|| PathBuf::from("./tally-data"));
            let store = open_to_write(
                &data,
                &StoreOptions::default(),
                "back it up through it with --server URL --key ADMIN_KEY",
            )?;
            crate::backup::backup(&store, &data, &a.dest).map_err(|e| match e {
                Error::Config(m) => Failure::Usage(m),
                other => other.into(),
            })?
        }
    };
    if json {
        println!("{}", serde_json::json!({ "events": events }));
    } else {
        println!(
            "backed up {} events into {} (open it with `tally serve --data {}`)",
            tally_query::render::thousands(events),
            a.dest.display(),
            a.dest.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the store of data directory `data` for a command that changes it
/// offline (the readers' counterpart is `open_existing`); one that does not exist is a failure (not created), and one a
/// collector holds is refused with `instead`: what to do through it.
fn open_to_write(
    data: &Path,
    options: &StoreOptions,
    instead: &str,
) -> Result<backend::Backend, Failure> {
    if !Config::store_dir(data).exists() {
        return Err(Failure::Failed(format!(
            "no Tally data in {}",
            data.display()
        )));
    }
    backend::open(data, options).map_err(|e| match Error::from(e) {
        Error::Locked { path } => Failure::Failed(format!(
            "the data directory {} is in use by another process (is `tally serve` running?); \
             {instead}",
            path.display()
        )),
        other => other.into(),
    })
}

fn check(a: CheckArgs) -> Result<ExitCode, Failure> {
    let json = json_or_table(&a.format)?;
    let dir = Config::store_dir(&a.data);
    if !dir.exists() {
        return Err(Failure::Failed(format!(
            "no Tally data in {}",
            a.data.display()
        )));
    }
    let repaired = if a.repair {
        backend::repair(&a.data)?
    } else {
        Vec::new()
    };
    let report = backend::check(&a.data)?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "sound": report.problems.is_empty(),
                "problems": report.problems,
                "repaired": repaired,
                "chunks": report.chunks,
                "events": report.events,
            })
        );
    } else {
        for r in &repaired {
            println!("repaired: {r}");
        }
        if report.problems.is_empty() {
            println!(
                "sound: {} events in {} chunk files and the write-ahead log ({} events), every checksum and reference verified",
                report.events, report.chunks, report.logged
            );
        } else {
            for p in &report.problems {
                println!("damaged: {p}");
            }
            if !a.repair {
                println!(
                    "`tally check --repair` rebuilds the index and cuts a damaged log; `tally export --skip-damaged` reads every intact event"
                );
            }
        }
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn serve(a: ServeArgs) -> Result<ExitCode, Failure> {
    // A bad setting (flag, variable or tally.toml value) is a usage error.
    let usage = |e: Error| match e {
        Error::Config(_) => Failure::Usage(e.to_string()),
        other => other.into(),
    };
    let mut config = Config::load(a.config.as_deref(), std::env::vars()).map_err(usage)?;
    if let Some(d) = a.data {
        config.data = d;
    }
    if let Some(l) = a.listen {
        config.listen = l;
    }
    if a.write_key.is_some() {
        config.write_key = a.write_key;
    }
    if a.read_key.is_some() {
        config.read_key = a.read_key;
    }
    if a.admin_key.is_some() {
        config.admin_key = a.admin_key;
    }
    if let Some(c) = a.cache_mb {
        config.cache_mb = c;
    }
    if let Some(t) = a.body_timeout_secs {
        config.body_timeout_secs = t;
    }
    if let Some(m) = a.max_inflight_body_mb {
        config.max_inflight_body_mb = m;
    }
    if let Some(r) = a.ingest_rate_per_ip {
        config.ingest_rate_per_ip = r;
    }
    if !a.cors_origins.is_empty() {
        config.cors_origins = a.cors_origins;
    }
    if a.keep.is_some() {
        config.keep = a.keep;
    }
    config.validate().map_err(usage)?;
    for (name, key) in [
        ("write key", &config.write_key),
        ("read key", &config.read_key),
        ("admin key", &config.admin_key),
    ] {
        if let Some(k) = key.as_deref().filter(|k| k.len() < 8) {
            tracing::warn!(
                "the {name} is only {} characters long: a longer, random key is harder to guess",
                k.len()
            );
        }
    }
    let data = config.data.clone();
    actix_web::rt::System::new().block_on(async move {
        let running = crate::http::start(config)?;
        let url = format!("http://{}", running.addr);
        let source = &running.key_source;
        if !source.unshown.is_empty() {
            // Keys stored but never printed: just generated, or generated by
            // a start that failed (a port in use) before it could print them.
            let mut shown = String::new();
            for (kind, key) in &source.unshown {
                shown.push_str(&format!("  {:<10} {key}\n", format!("{}:", kind.label())));
            }
            let write_shown = source
                .unshown
                .iter()
                .any(|(k, _)| *k == crate::keys::Kind::Write);
            println!(
                "API keys (shown only this once; kept in {}):\n{shown}\
                 Send an event:\n  curl -X POST {url}/v1/track -H \"Authorization: Bearer {}\" \
                 -H 'Content-Type: application/json' -d '{{\"event\":\"signup\",\"user_id\":\"u1\"}}'",
                data.join("keys.toml").display(),
                if write_shown { running.keys.write_key.as_str() } else { "$TALLY_WRITE_KEY" },
            );
            let kinds: Vec<crate::keys::Kind> = source.unshown.iter().map(|(k, _)| *k).collect();
            if let Err(e) = crate::keys::mark_shown(&data, &kinds) {
                tracing::warn!("could not record that the keys were shown: {e}");
            }
        }
        match &source.file {
            Some(file) => {
                println!("API keys are kept in {}", file.display());
                for kind in &source.overridden {
                    println!(
                        "  the {} in force is the configured one (flag, TALLY_* or tally.toml), \
                         not the one in that file",
                        kind.label()
                    );
                }
            }
            None => println!("API keys: all from the configuration (flags, TALLY_* or tally.toml)"),
        }
        println!("tally listening on {url} (data in {})", data.display());
        let _ = std::io::stdout().flush();
        running.wait().await
    })
    .map_err(|e| match e {
        // The default message suggests --server, which serve does not take.
        Error::Locked { path } => Failure::Failed(format!(
            "the data directory {} is in use by another process (another `tally serve`?); \
             stop it, or give this one its own --data DIR",
            path.display()
        )),
        other => other.into(),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Opens an existing data directory, refusing to create one by accident.
fn open_existing(data: &Path, skip_damaged: bool) -> Result<backend::Backend, Error> {
    let dir = Config::store_dir(data);
    if !dir.exists() {
        return Err(Error::Config(format!(
            "no Tally data in {} (start `tally serve --data {0}` or `tally import --data {0}` first, \
             or pass --server URL)",
            data.display()
        )));
    }
    Ok(backend::open(
        data,
        &StoreOptions {
            skip_damaged,
            read_only: true,
            ..StoreOptions::default()
        },
    )?)
}

fn import(a: ImportArgs) -> Result<ExitCode, Failure> {
    let format: Format = a
        .format
        .parse()
        .map_err(|m| Failure::Usage(format!("--format: {m}")))?;
    if format == Format::Csv {
        return Err(Failure::Usage(
            "--format: import prints table or json".into(),
        ));
    }
    let store = match &a.server {
        Some(_) => None,
        None => Some(backend::open(&a.data, &StoreOptions::default()).map_err(
            |e| match Error::from(e) {
                Error::Locked { path } => Failure::Failed(format!(
                    "the data directory {} is in use by another process (is `tally serve` \
                         running?); send the file to it with `tally import FILE --server URL \
                         --key WRITE_KEY` instead",
                    path.display()
                )),
                other => other.into(),
            },
        )?),
    };
    let key = match &a.server {
        Some(_) => Some(a.key.clone().ok_or_else(|| {
            Failure::Usage("--key (or TALLY_WRITE_KEY) is required with --server".into())
        })?),
        None => None,
    };
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bytes}{total_bytes_suffix} read, {binary_bytes_per_sec} {wide_bar} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let input: Box<dyn std::io::Read + Send> = if a.file.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        let file = std::fs::File::open(&a.file)
            .map_err(|e| Error::io(format!("opening {}", a.file.display()), e))?;
        if let Ok(m) = file.metadata() {
            bar.set_length(m.len());
        }
        Box::new(file)
    };
    let input = BufReader::with_capacity(1 << 20, input);
    if let Some(store) = &store {
        // A writer first repairs what a crash left and upgrades an older
        // format (property files), as `tally serve` does on start.
        store.prepare_writer()?;
    }
    let summary = match (&store, &a.server, &key) {
        (Some(store), _, _) => crate::import::import(input, store, &|n| bar.set_position(n))?,
        (None, Some(server), Some(key)) => {
            crate::remote::import(input, server, key, &|n| bar.set_position(n))?
        }
        _ => unreachable!("a store or a server and key"),
    };
    bar.finish_and_clear();
    for w in summary.warnings() {
        eprintln!("warning: {w}");
    }
    match format {
        // A closed pipe (`tally import f | head`) is not an error worth a panic.
        Format::Json => {
            let line = serde_json::to_string(&summary).expect("serializes");
            let _ = writeln!(std::io::stdout(), "{line}");
        }
        _ => {
            let _ = write!(std::io::stdout(), "{}", summary.table());
        }
    }
    Ok(if a.strict && summary.rejected > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn export(a: ExportArgs) -> Result<ExitCode, Failure> {
    let time = |flag: &str, v: Option<String>, default: i64| {
        v.map_or(Ok(default), |v| {
            parse_date_or_rfc3339(&v).map_err(|m| Failure::Usage(format!("--{flag}: {m}")))
        })
    };
    let (from, to) = match &a.last {
        Some(last) => tally_query::params::last_range(last, tally_event::time::now_ms())
            .map_err(|m| Failure::Usage(format!("--last: {m}")))?,
        None => (time("from", a.from, i64::MIN)?, time("to", a.to, i64::MAX)?),
    };
    let mut out: Box<dyn Write> = match &a.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    // As for the analyses: an explicit --data wins over TALLY_SERVER.
    let server = a.server.clone().or_else(|| {
        a.data
            .is_none()
            .then(|| std::env::var("TALLY_SERVER").ok())
            .flatten()
            .filter(|s| !s.trim().is_empty())
    });
    if let Some(server) = &server {
        let key = a.key.as_deref().ok_or_else(|| {
            Failure::Usage("--key (or TALLY_READ_KEY) is required with --server".into())
        })?;
        let mut pairs = Vec::new();
        if from != i64::MIN {
            pairs.push(("from", format_rfc3339(from)));
        }
        if to != i64::MAX {
            pairs.push(("to", format_rfc3339(to)));
        }
        crate::remote::export(server, key, &pairs, &mut out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let data = a.data.unwrap_or_else(|| PathBuf::from("./tally-data"));
    let store = open_existing(&data, a.skip_damaged).map_err(|e| match e {
        Error::Locked { path } => Failure::Failed(format!(
            "the data directory {} is in use by another process (is `tally serve` running?); \
             export from it with --server URL --key READ_KEY instead",
            path.display()
        )),
        other => other.into(),
    })?;
    if a.skip_damaged {
        let mut skipped = 0;
        crate::export::export_intact(&store, from, to, &mut out, &mut |what| {
            skipped += 1;
            eprintln!("skipped: {what}");
        })?;
        if skipped > 0 {
            eprintln!("{skipped} damaged chunk(s) skipped; every other event was exported");
        }
    } else {
        crate::export::export(&store, from, to, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn analysis(
    name: &str,
    q: &QueryArgs,
    flags: Vec<(&str, Option<String>)>,
) -> Result<ExitCode, Failure> {
    let format: Format = q
        .format
        .parse()
        .map_err(|m| Failure::Usage(format!("--format: {m}")))?;
    let mut pairs: Vec<(String, String)> = flags
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect();
    for (k, v) in [
        ("from", &q.from),
        ("to", &q.to),
        ("last", &q.last),
        ("tz", &q.tz),
    ] {
        if let Some(v) = v {
            pairs.push((k.to_string(), v.clone()));
        }
    }
    // An explicit --data wins over TALLY_SERVER from the environment.
    let server = q.server.clone().or_else(|| {
        q.data
            .is_none()
            .then(|| std::env::var("TALLY_SERVER").ok())
            .flatten()
            .filter(|s| !s.trim().is_empty())
    });
    let out = match &server {
        Some(server) => {
            let key = q.key.as_deref().ok_or_else(|| {
                Failure::Usage("--key (or TALLY_READ_KEY) is required with --server".into())
            })?;
            let (json, warnings) = remote(server, key, name, &pairs)?;
            // The collector accepted the zone, so it parses here too.
            let tz =
                q.tz.as_deref()
                    .and_then(|z| tally_query::Zone::parse(z).ok())
                    .unwrap_or_default();
            crate::analysis::Answer {
                body: crate::analysis::render_json(name, &json, format, &tz)
                    .map_err(Failure::Failed)?,
                warnings,
            }
        }
        None => {
            let data = q
                .data
                .clone()
                .unwrap_or_else(|| PathBuf::from("./tally-data"));
            // Parameters are checked before the store is opened, so that a
            // typo is a usage error even when the data directory is busy.
            let query = crate::analysis::Query::parse(name, pairs, tally_event::time::now_ms())?;
            let store = open_existing(&data, false)?;
            query.run(&store, format)?
        }
    };
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.body.as_bytes());
    if format == Format::Table && !std::io::stdout().is_terminal() {
        let _ = stdout.flush();
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks a running collector; a 400 is the user's mistake (exit 2).
/// Returns the answer and its warnings.
fn remote(
    server: &str,
    key: &str,
    name: &str,
    pairs: &[(String, String)],
) -> Result<(String, Vec<String>), Failure> {
    let url = format!(
        "{}/v1/{name}",
        crate::remote::server_base(server).map_err(Failure::from)?
    );
    let client = reqwest::blocking::Client::new();
    let resp = client
        .get(&url)
        .bearer_auth(key)
        .query(pairs)
        .send()
        .map_err(|e| Failure::Failed(crate::remote::request_failure(&url, &e)))?;
    let status = resp.status();
    let warnings: Vec<String> = resp
        .headers()
        .get(crate::http::query::WARNING_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    let body = resp
        .text()
        .map_err(|e| Failure::Failed(format!("reading the answer of {url}: {e}")))?;
    if status.is_success() {
        return Ok((body, warnings));
    }
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or(body);
    if status == reqwest::StatusCode::BAD_REQUEST {
        Err(Failure::Usage(message))
    } else {
        Err(Failure::Failed(format!(
            "{url} answered {status}: {message}"
        )))
    }
}
