//! A client for apps without an async runtime.
//!
//! [`Client`] has the same `track` as the async client; `flush` and
//! `shutdown` block the calling thread (at most for their deadline). The
//! background sender runs on a dedicated thread with its own small Tokio
//! runtime, so the app needs none.
//!
//! ```
//! use std::time::Duration;
//! use tally_sdk::{Stage, blocking::Client};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder("http://127.0.0.1:9", "WRITE_KEY")
//!     .request_timeout(Duration::from_millis(200))
//!     .max_retries(0)
//!     .build()?;
//! client.track("user-42", "report_exported").stage(Stage::Engagement).send()?;
//! // Nothing listens on port 9 here, so the event cannot be delivered.
//! let report = client.shutdown_within(Duration::from_secs(1));
//! assert_eq!(report.undelivered().count(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! Calling `flush` or `shutdown` from async code, or from the delivery
//! callback, blocks that thread: use the async [`crate::Client`] there.

use std::fmt;
use std::sync::mpsc;
use std::time::Duration;

use crate::BuildError;
use crate::report::{DeliveryReport, FlushReport};
use crate::types::Reply;
use crate::{DropPolicy, Person, Stats, Track};

/// Grace beyond a deadline before a blocking call stops waiting for the
/// background thread (which answers by the deadline unless it is stuck, for
/// instance in a slow callback).
const GRACE: Duration = Duration::from_secs(2);

/// A blocking handle to the background sender. Cheap to clone; all clones
/// share one queue and one sender thread.
///
/// Dropping the last clone without [`shutdown`](Client::shutdown) does not
/// block: the sender thread then delivers what it can within the shutdown
/// timeout and exits, unless the process exits first. Call `shutdown`
/// before exiting to be sure.
#[derive(Clone)]
pub struct Client {
    inner: crate::Client,
}

impl Client {
    /// Starts configuring a blocking client; see [`crate::Client::builder`].
    pub fn builder(endpoint: impl Into<String>, write_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            inner: crate::ClientBuilder::new(endpoint, write_key),
        }
    }

    /// A client that sends nothing; see [`crate::Client::disabled`].
    ///
    /// ```
    /// let client = tally_sdk::blocking::Client::disabled();
    /// client.track("user-1", "signed_up").send().unwrap();
    /// assert_eq!(client.shutdown().undelivered().count(), 0);
    /// ```
    pub fn disabled() -> Client {
        Client {
            inner: crate::Client::disabled(),
        }
    }

    /// Starts an event; see [`crate::Client::track`]. Never blocks.
    pub fn track(&self, person: impl Into<Person>, event: impl Into<String>) -> Track<'_> {
        self.inner.track(person, event)
    }

    /// Links `anonymous_id` to `user_id`; see [`crate::Client::identify`].
    /// Never blocks.
    ///
    /// ```
    /// let client = tally_sdk::blocking::Client::disabled();
    /// client.identify("user-42", "visitor-7f3a").send().unwrap();
    /// ```
    pub fn identify(
        &self,
        user_id: impl Into<String>,
        anonymous_id: impl Into<String>,
    ) -> Track<'_> {
        self.inner.identify(user_id, anonymous_id)
    }

    /// Blocks until every event tracked before this call is delivered, or
    /// the [shutdown timeout](ClientBuilder::shutdown_timeout) passes.
    pub fn flush(&self) -> FlushReport {
        self.flush_within(self.inner.inner.shutdown_timeout)
    }

    /// [`flush`](Client::flush) with an explicit deadline.
    pub fn flush_within(&self, timeout: Duration) -> FlushReport {
        self.ask(false, timeout)
    }

    /// Stops accepting events and blocks until what is pending is delivered
    /// or the [shutdown timeout](ClientBuilder::shutdown_timeout) passes;
    /// see [`crate::Client::shutdown`].
    pub fn shutdown(&self) -> FlushReport {
        self.shutdown_within(self.inner.inner.shutdown_timeout)
    }

    /// [`shutdown`](Client::shutdown) with an explicit deadline.
    pub fn shutdown_within(&self, timeout: Duration) -> FlushReport {
        self.ask(true, timeout)
    }

    fn ask(&self, shutdown: bool, timeout: Duration) -> FlushReport {
        let (tx, rx) = mpsc::sync_channel(1);
        let reply: Reply = Box::new(move |report| {
            let _ = tx.send(report);
        });
        if !self.inner.inner.request(shutdown, timeout, reply) {
            return FlushReport::default();
        }
        match rx.recv_timeout(timeout.saturating_add(GRACE)) {
            Ok(report) => report,
            // The thread is gone (nothing pending) or stuck (say so).
            Err(mpsc::RecvTimeoutError::Disconnected) => FlushReport::default(),
            Err(mpsc::RecvTimeoutError::Timeout) => FlushReport {
                timed_out: true,
                ..FlushReport::default()
            },
        }
    }

    /// A snapshot of the delivery counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("blocking::Client")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Client`]; the settings are those of
/// [`crate::ClientBuilder`].
#[must_use = "a builder does nothing until .build()"]
#[derive(Debug)]
pub struct ClientBuilder {
    inner: crate::ClientBuilder,
}

macro_rules! delegate {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*); )*) => {
        $(
            $(#[$doc])*
            pub fn $name(self, $($arg: $ty),*) -> Self {
                ClientBuilder { inner: self.inner.$name($($arg),*) }
            }
        )*
    };
}

impl ClientBuilder {
    delegate! {
        /// See [`crate::ClientBuilder::batch_size`].
        fn batch_size(events: usize);
        /// See [`crate::ClientBuilder::flush_interval`].
        fn flush_interval(interval: Duration);
        /// See [`crate::ClientBuilder::queue_capacity`].
        fn queue_capacity(events: usize);
        /// See [`crate::ClientBuilder::request_timeout`].
        fn request_timeout(timeout: Duration);
        /// See [`crate::ClientBuilder::max_retries`].
        fn max_retries(retries: u32);
        /// See [`crate::ClientBuilder::backoff`].
        fn backoff(base: Duration, max: Duration);
        /// See [`crate::ClientBuilder::drop_policy`].
        fn drop_policy(policy: DropPolicy);
        /// See [`crate::ClientBuilder::shutdown_timeout`].
        fn shutdown_timeout(timeout: Duration);
        /// See [`crate::ClientBuilder::gzip`].
        fn gzip(enabled: bool);
        /// See [`crate::ClientBuilder::enabled`].
        fn enabled(enabled: bool);
    }

    /// See [`crate::ClientBuilder::property`].
    pub fn property(self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        ClientBuilder {
            inner: self.inner.property(key, value),
        }
    }

    /// See [`crate::ClientBuilder::on_delivery`]. The callback runs on the
    /// sender thread.
    pub fn on_delivery(self, callback: impl Fn(&DeliveryReport) + Send + Sync + 'static) -> Self {
        ClientBuilder {
            inner: self.inner.on_delivery(callback),
        }
    }

    /// See [`crate::ClientBuilder::durable`].
    #[cfg(feature = "durable")]
    pub fn durable(self, dir: impl Into<std::path::PathBuf>) -> Self {
        ClientBuilder {
            inner: self.inner.durable(dir),
        }
    }

    /// Builds the client and starts its sender thread (`tally-sdk`). Works
    /// inside or outside a Tokio runtime.
    pub fn build(self) -> Result<Client, BuildError> {
        if !self.inner.is_enabled() {
            return self.inner.build().map(|inner| Client { inner });
        }
        let (client, worker) = self.inner.into_parts()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("tally-sdk")
            .build()?;
        std::thread::Builder::new()
            .name("tally-sdk".into())
            .spawn(move || runtime.block_on(worker.run()))?;
        Ok(Client { inner: client })
    }
}
