//! Client configuration: the builder and its validation. Wiring the parts
//! together is [`ClientBuilder::build`]'s, in `lib.rs`.

use std::fmt;
#[cfg(feature = "durable")]
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderValue;
use serde_json::{Map, Value};
use tally_event::ingest::MAX_BATCH_EVENTS;

use crate::backoff::Backoff;
use crate::report::DeliveryReport;
use crate::types::{Callback, DropPolicy};

/// Longest interval, timeout or backoff the builder accepts; longer values
/// are clamped to it.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Why [`ClientBuilder::build`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("invalid collector endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The write key is empty or cannot travel in an HTTP header.
    #[error("invalid write key: {0}")]
    InvalidWriteKey(&'static str),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// [`ClientBuilder::build`] was called outside a Tokio runtime; build
    /// inside one, or use [`blocking::Client`](crate::blocking::Client).
    #[error("no Tokio runtime: build the client inside one, or use tally_sdk::blocking::Client")]
    NoRuntime,
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The blocking client's runtime thread could not be started, or the
    /// durable queue could not be opened.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Configures a [`Client`](crate::Client) (from [`Client::builder`](crate::Client::builder)) or, through
/// [`blocking::ClientBuilder`](crate::blocking::ClientBuilder), a blocking
/// one.
///
/// ```
/// use std::time::Duration;
/// use tally_sdk::{Client, DropPolicy};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tally_sdk::BuildError> {
/// let client = Client::builder("http://127.0.0.1:9", "WRITE_KEY")
///     .batch_size(500)
///     .flush_interval(Duration::from_millis(250))
///     .queue_capacity(50_000)
///     .drop_policy(DropPolicy::Oldest)
///     .on_delivery(|report| eprintln!("{report:?}"))
///     .build()?;
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until .build()"]
pub struct ClientBuilder {
    endpoint: String,
    write_key: String,
    batch_size: usize,
    flush_interval: Duration,
    queue_capacity: usize,
    request_timeout: Duration,
    max_retries: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    drop_policy: DropPolicy,
    shutdown_timeout: Duration,
    gzip: bool,
    on_delivery: Option<Callback>,
    #[cfg(feature = "durable")]
    durable_dir: Option<PathBuf>,
    defaults: Map<String, Value>,
    enabled: bool,
}

impl ClientBuilder {
    pub(crate) fn new(endpoint: impl Into<String>, write_key: impl Into<String>) -> Self {
        ClientBuilder {
            endpoint: endpoint.into(),
            write_key: write_key.into(),
            batch_size: 100,
            flush_interval: Duration::from_secs(1),
            queue_capacity: 10_000,
            request_timeout: Duration::from_secs(10),
            max_retries: 10,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            drop_policy: DropPolicy::Newest,
            shutdown_timeout: Duration::from_secs(5),
            gzip: true,
            on_delivery: None,
            #[cfg(feature = "durable")]
            durable_dir: None,
            defaults: Map::new(),
            enabled: true,
        }
    }

    /// A property added to every event this client sends (like the browser
    /// SDK's `register`): an app version, a deployment, a tenant. An
    /// event's own property of the same name wins.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tally_sdk::Client;
    ///
    /// let client = Client::builder("http://127.0.0.1:9", "WRITE_KEY")
    ///     .property("app_version", "2.4.1")
    ///     .property("region", "eu")
    ///     .build()?;
    /// // Sent with app_version 2.4.1 and region "us" (its own wins).
    /// client.track("user-1", "report_exported").property("region", "us").send()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.defaults.insert(key.into(), value.into());
        self
    }

    /// Several [default properties](Self::property) at once.
    pub fn properties<K, V>(mut self, properties: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<Value>,
    {
        for (k, v) in properties {
            self.defaults.insert(k.into(), v.into());
        }
        self
    }

    /// `false` builds a [disabled](crate::Client::disabled) client: `track` checks
    /// events but sends and queues nothing, and `build` then needs neither
    /// a runtime nor a valid endpoint or key (default true). For tests, or
    /// an app whose user opted out of analytics.
    ///
    /// ```
    /// use tally_sdk::Client;
    ///
    /// // E.g. from the app's settings; no Tokio runtime here, and no key.
    /// let analytics_on = false;
    /// let client = Client::builder("", "")
    ///     .enabled(analytics_on)
    ///     .build()
    ///     .unwrap();
    /// assert!(!client.is_enabled());
    /// client.track("user-1", "signed_up").send().unwrap();
    /// assert_eq!(client.stats().queued, 0);
    /// ```
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Most events per request, 1 to 1000 (default 100). A batch is sent
    /// as soon as this many events are queued.
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = events;
        self
    }

    /// How long an event may wait for its batch to fill before it is sent
    /// anyway (default 1 s; at most a day).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Most events waiting to be sent (default 10,000), not counting the
    /// batch in flight. When full, [`drop_policy`](Self::drop_policy)
    /// decides what is lost.
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.queue_capacity = events;
        self
    }

    /// Limit for one HTTP request, from connecting to reading the answer
    /// (default 10 s). A timed-out request is retried.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How many times a failed request is retried before its events count
    /// as [failed](crate::Stats::failed) (default 10; 0 disables retries).
    /// With a durable queue (feature `durable`), retryable failures are retried
    /// without limit instead.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Backoff between retries: retry `n` (from 0) waits a random time in
    /// `[0, min(max, base × 2ⁿ)]` ("full jitter"). Defaults: 100 ms, 10 s.
    /// A `Retry-After` answer header overrides it.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// What to drop when the queue is full (default [`DropPolicy::Newest`]).
    pub fn drop_policy(mut self, policy: DropPolicy) -> Self {
        self.drop_policy = policy;
        self
    }

    /// Deadline of [`Client::flush`](crate::Client::flush) and [`Client::shutdown`](crate::Client::shutdown), and of the
    /// best-effort delivery after the last clone is dropped (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Whether request bodies are gzip-compressed (default true).
    pub fn gzip(mut self, enabled: bool) -> Self {
        self.gzip = enabled;
        self
    }

    /// Calls `callback` with each [`DeliveryReport`]: every answered batch
    /// (with per-event rejections), every batch given up on, and every
    /// count of events dropped from a full queue.
    ///
    /// The callback runs on the background sender: keep it short and do not
    /// call `flush` or `shutdown` from it. A panic in it is caught.
    pub fn on_delivery(
        mut self,
        callback: impl Fn(&DeliveryReport) + Send + Sync + 'static,
    ) -> Self {
        self.on_delivery = Some(Arc::new(callback));
        self
    }

    /// Keeps queued events in an append-only log in `dir` (created if
    /// missing) until the collector acknowledges them. Events still on disk
    /// when the app restarts (after a shutdown that could not deliver them,
    /// or a crash) are sent first by the next client built on `dir`.
    ///
    /// Each [`Track::send`](crate::Track::send) then also writes one line to
    /// the log (no fsync; the background task syncs it every flush
    /// interval), so events survive a crash of the app, and the OS's own
    /// crash loses at most the last interval. Retryable failures are retried
    /// without limit; [`queue_capacity`](Self::queue_capacity) still bounds
    /// what is kept. Use one directory per client.
    #[cfg(feature = "durable")]
    pub fn durable(mut self, dir: impl Into<PathBuf>) -> Self {
        self.durable_dir = Some(dir.into());
        self
    }

    /// Checks every setting once and returns them validated and clamped;
    /// [`build`](Self::build) (in `lib.rs`) wires the parts from this.
    pub(crate) fn validate(self) -> Result<Config, BuildError> {
        let url = batch_url(&self.endpoint)?;
        if self.write_key.is_empty() {
            return Err(BuildError::InvalidWriteKey("it is empty"));
        }
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", self.write_key)).map_err(|_| {
                BuildError::InvalidWriteKey("it contains characters not allowed in an HTTP header")
            })?;
        auth.set_sensitive(true);
        if !(1..=MAX_BATCH_EVENTS).contains(&self.batch_size) {
            return Err(BuildError::InvalidSetting(format!(
                "batch_size must be 1 to {MAX_BATCH_EVENTS}, got {}",
                self.batch_size
            )));
        }
        if self.queue_capacity == 0 {
            return Err(BuildError::InvalidSetting(
                "queue_capacity must be at least 1".into(),
            ));
        }
        if self.flush_interval.is_zero() {
            return Err(BuildError::InvalidSetting(
                "flush_interval must be positive".into(),
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(BuildError::InvalidSetting(
                "request_timeout must be positive".into(),
            ));
        }
        let backoff_max = self.backoff_max.min(MAX_DURATION);
        Ok(Config {
            url,
            auth,
            batch_size: self.batch_size,
            flush_interval: self.flush_interval.min(MAX_DURATION),
            queue_capacity: self.queue_capacity,
            request_timeout: self.request_timeout.min(MAX_DURATION),
            max_retries: self.max_retries,
            backoff: Backoff::new(self.backoff_base.min(backoff_max), backoff_max),
            drop_policy: self.drop_policy,
            shutdown_timeout: self.shutdown_timeout.min(MAX_DURATION),
            gzip: self.gzip,
            on_delivery: self.on_delivery,
            #[cfg(feature = "durable")]
            durable_dir: self.durable_dir,
            defaults: self.defaults,
        })
    }

    /// The default properties, for a disabled client.
    pub(crate) fn into_defaults(self) -> Map<String, Value> {
        self.defaults
    }
}

/// The builder's settings, validated and clamped.
pub(crate) struct Config {
    pub(crate) url: Url,
    pub(crate) auth: HeaderValue,
    pub(crate) batch_size: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) queue_capacity: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) backoff: Backoff,
    pub(crate) drop_policy: DropPolicy,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) gzip: bool,
    pub(crate) on_delivery: Option<Callback>,
    #[cfg(feature = "durable")]
    pub(crate) durable_dir: Option<PathBuf>,
    pub(crate) defaults: Map<String, Value>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ClientBuilder");
        d.field("endpoint", &self.endpoint)
            .field("write_key", &"<redacted>")
            .field("batch_size", &self.batch_size)
            .field("flush_interval", &self.flush_interval)
            .field("queue_capacity", &self.queue_capacity)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff", &(self.backoff_base, self.backoff_max))
            .field("drop_policy", &self.drop_policy)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("gzip", &self.gzip)
            .field("on_delivery", &self.on_delivery.is_some());
        #[cfg(feature = "durable")]
        d.field("durable", &self.durable_dir);
        d.finish()
    }
}

/// `POST /v1/batch` below the collector's base URL. A URL that already ends
/// in `/v1/batch` is taken as is.
pub(crate) fn batch_url(endpoint: &str) -> Result<Url, BuildError> {
    let bad = |reason: String| BuildError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let mut url = Url::parse(endpoint.trim()).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "the scheme must be http or https, not {:?}",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/').to_owned();
    if path.ends_with("/v1/batch") {
        url.set_path(&path);
    } else {
        url.set_path(&format!("{path}/v1/batch"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_url_appends_the_path_once() {
        for (given, want) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/batch"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1/batch"),
            (
                "https://t.example.com/tally",
                "https://t.example.com/tally/v1/batch",
            ),
            (
                "https://t.example.com/tally/",
                "https://t.example.com/tally/v1/batch",
            ),
            ("http://h:1/v1/batch", "http://h:1/v1/batch"),
            (" http://h:1/x?q=1#f ", "http://h:1/x/v1/batch"),
        ] {
            assert_eq!(batch_url(given).unwrap().as_str(), want, "{given}");
        }
        for bad in ["", "127.0.0.1:8080", "ftp://h/", "file:///tmp/x", "http://"] {
            assert!(batch_url(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn settings_are_checked() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let b = || ClientBuilder::new("http://127.0.0.1:9", "k");
        assert!(b().batch_size(0).build().is_err());
        assert!(b().batch_size(1001).build().is_err());
        assert!(b().batch_size(1000).build().is_ok());
        assert!(b().queue_capacity(0).build().is_err());
        assert!(b().flush_interval(Duration::ZERO).build().is_err());
        assert!(b().request_timeout(Duration::ZERO).build().is_err());
        assert!(matches!(
            ClientBuilder::new("http://127.0.0.1:9", "").build(),
            Err(BuildError::InvalidWriteKey(_))
        ));
        assert!(matches!(
            ClientBuilder::new("http://127.0.0.1:9", "a\nb").build(),
            Err(BuildError::InvalidWriteKey(_))
        ));
        // Huge durations are clamped rather than overflowing timers.
        assert!(
            b().flush_interval(Duration::MAX)
                .request_timeout(Duration::MAX)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn build_outside_a_runtime_is_an_error_not_a_panic() {
        assert!(matches!(
            ClientBuilder::new("http://127.0.0.1:9", "k").build(),
            Err(BuildError::NoRuntime)
        ));
    }
}
