//! # tally-sdk — send lifecycle events to a Tally collector
//!
//! Instrumenting an app takes three lines: build a [`Client`] once, call
//! [`Client::track`] wherever something happens, and call
//! [`Client::shutdown`] before the app exits.
//!
//! ```
//! use std::time::Duration;
//! use tally_sdk::{Client, Person, Stage};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In a real app: the collector's URL and its write key.
//! // (Nothing listens on port 9 here, so delivery fails fast.)
//! let client = Client::builder("http://127.0.0.1:9", "WRITE_KEY")
//!     .request_timeout(Duration::from_millis(200))
//!     .max_retries(0)
//!     .build()?;
//!
//! // A plain string is a user id.
//! client
//!     .track("user-42", "invoice_sent")
//!     .stage(Stage::Engagement)
//!     .property("amount_eur", 120.5)
//!     .send()?;
//!
//! // Before anybody signs up, track a visitor by an anonymous id ...
//! client
//!     .track(Person::anonymous("visitor-7f3a"), "page_view")
//!     .stage(Stage::Discovery)
//!     .property("utm_source", "newsletter")
//!     .send()?;
//! // ... and link it at signup by giving both keys ...
//! client
//!     .track("user-43", "signup")
//!     .anonymous_id("visitor-7f3a")
//!     .stage(Stage::Acquisition)
//!     .send()?;
//! // ... or, when there is no such event (a login), with `identify`.
//! client.identify("user-44", "visitor-9c2d").send()?;
//!
//! // Before exit: deliver what is pending, within a deadline.
//! let report = client.shutdown_within(Duration::from_secs(2)).await;
//! // No collector listens on port 9, so nothing could be delivered here:
//! assert_eq!(report.undelivered().count(), 4);
//! # Ok(())
//! # }
//! ```
//!
//! ## Persons
//!
//! Every event belongs to a person (SPEC §1): an identified user (`user_id`)
//! or, before sign-up, an anonymous visitor (`anonymous_id`). The first
//! argument of [`Client::track`] is anything that converts into a
//! [`Person`]:
//!
//! - `"u1"`, a `String` or `Person::user("u1")`: an identified user;
//! - `Person::anonymous("device-9")`: an anonymous visitor.
//!
//! An event that carries both ids *links* the anonymous id to the user:
//! every analysis then counts the anonymous id's events (earlier ones too)
//! for the user, so a funnel from an anonymous `page_view` to a `signup`
//! counts one person. Send one with [`Client::identify`] (an `identify`
//! event, as the browser SDK's `tally.identify` sends), or give the signup
//! event both ids with [`Track::anonymous_id`].
//!
//! The link only helps if the visitor keeps one anonymous id until then:
//! a web server keeps it in a cookie (set it with [`new_anonymous_id`]); a
//! CLI or desktop app can keep it in a file with [`stored_anonymous_id`].
//!
//! ## What `track` does, and what it never does
//!
//! [`Client::track`] returns a [`Track`] builder; nothing happens until
//! [`Track::send`], which checks the event against the collector's cheap
//! rules, assigns it a UUIDv7 `id` and a `timestamp` (now, unless given),
//! and appends it to a bounded in-memory queue. It never touches the network,
//! never waits for the background sender, and never panics; it costs a few
//! hundred nanoseconds (see the `sdk_track` bench in `tally-benches`). A
//! [`Track`] dropped without `send` is discarded (the builder is
//! `#[must_use]`, so the compiler points out a forgotten `send`).
//!
//! `send` returns the event id, or a [`TrackError`] when the event was
//! invalid, the queue was full (with [`DropPolicy::Newest`]), or the client
//! had been shut down. Ignoring that result is fine: every outcome is also
//! counted in [`Client::stats`].
//!
//! ## Delivery
//!
//! A background task takes events from the queue in batches of up to
//! [`ClientBuilder::batch_size`] (default 100) events, or whatever is queued
//! when [`ClientBuilder::flush_interval`] (default 1 s) elapses, whichever
//! comes first, and posts them gzip-compressed to the collector's
//! `POST /v1/batch`, one request at a time, in order. Each attempt stamps
//! `sent_at`, so that the collector corrects the app's clock skew.
//!
//! - Connection errors, timeouts, `5xx` and `429` answers are retried with
//!   exponential backoff and full jitter (a `Retry-After` header in seconds
//!   is honoured), up to [`ClientBuilder::max_retries`] times. Retries reuse
//!   the event ids, so the collector stores each event once.
//! - Any other answer (`400`, `401`, `413`, ...) fails the batch without
//!   retry (a `413` batch is first split in halves).
//! - Events that the collector rejects in a `200` answer (see SPEC §1) are
//!   reported, never retried.
//!
//! Outcomes are visible in [`Client::stats`] and, if set, in the callback
//! given to [`ClientBuilder::on_delivery`]; the SDK itself logs only through
//! [`tracing`] at debug level.
//!
//! ## Flush and shutdown
//!
//! [`Client::flush`] delivers everything tracked so far and
//! [`Client::shutdown`] also stops the client; both wait at most
//! [`ClientBuilder::shutdown_timeout`] (default 5 s; `flush_within` and
//! `shutdown_within` take an explicit deadline) and return a
//! [`FlushReport`] of what was delivered, rejected, failed, or is still
//! pending. Call `shutdown` before the process exits: the background task
//! runs on the app's Tokio runtime and dies with it.
//!
//! Dropping every clone of a [`Client`] without `shutdown` never blocks:
//! the background task then makes a best-effort attempt (bounded by the
//! shutdown timeout) to deliver what is pending, for as long as the runtime
//! lives.
//!
//! ## Non-async apps
//!
//! [`blocking::Client`] has the same API with blocking `flush` and
//! `shutdown`, and runs the sender on a thread of its own.
//!
//! ## Durable queue (feature `durable`)
//!
//! With the `durable` cargo feature, `ClientBuilder::durable` keeps queued
//! events in an append-only file until the collector acknowledges them, so
//! that an app restarted while the collector is down sends them on its next
//! start.
#![deny(missing_docs)]

mod backoff;
mod batch;
pub mod blocking;
mod config;
#[cfg(feature = "durable")]
mod durable;
mod http;
mod identity;
mod person;
mod queue;
mod report;
mod sender;
mod track;
mod types;
mod worker;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

pub use config::{BuildError, ClientBuilder};
pub use identity::{IDENTIFY_EVENT, new_anonymous_id, stored_anonymous_id};
pub use person::Person;
pub use queue::Stats;
pub use report::{DeliveryError, DeliveryReport, FlushReport, Rejection};
pub use track::Track;
pub use types::{DropPolicy, TrackError};

pub use serde_json;
pub use tally_event::{Stage, WireEvent};
pub use uuid::Uuid;

use http::Sender;
use queue::Queue;
use types::{Command, Reply};
use worker::Worker;

/// A handle to the background sender. Cheap to clone; all clones share one
/// queue and one sender.
///
/// Built with [`Client::builder`] inside a Tokio runtime, whose tasks the
/// sender runs on. For apps without a runtime, see [`blocking::Client`].
#[derive(Clone)]
pub struct Client {
    inner: Arc<Handle>,
}

/// What every clone shares. Dropping the last one closes the command channel,
/// which tells the background task to wind down.
pub(crate) struct Handle {
    pub(crate) queue: Arc<Queue>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) shutdown_timeout: Duration,
    /// Properties added to every event ([`ClientBuilder::property`]).
    pub(crate) defaults: serde_json::Map<String, serde_json::Value>,
    /// False for a [disabled](Client::disabled) client.
    pub(crate) enabled: bool,
}

impl Handle {
    /// Asks the background task to flush (or shut down) and to call `reply`
    /// with the outcome. Returns false when the task is gone.
    pub(crate) fn request(&self, shutdown: bool, timeout: Duration, reply: Reply) -> bool {
        let deadline = worker::deadline_after(timeout);
        let command = if shutdown {
            // Close now, so that no event tracked after this call slips in.
            self.queue.close();
            Command::Shutdown { deadline, reply }
        } else {
            Command::Flush {
                marker: self.queue.last_seq(),
                deadline,
                reply,
            }
        };
        self.commands.send(command).is_ok()
    }
}

impl Client {
    /// Starts configuring a client for the collector at `endpoint` (its base
    /// URL, e.g. `http://127.0.0.1:8080`; events go to `/v1/batch` below
    /// it) with the project's write key.
    pub fn builder(endpoint: impl Into<String>, write_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(endpoint, write_key)
    }

    /// Starts an event named `event` for `person` (a `&str` or `String` user
    /// id, or a [`Person`]). Add details with the [`Track`] methods and queue
    /// it with [`Track::send`].
    pub fn track(&self, person: impl Into<Person>, event: impl Into<String>) -> Track<'_> {
        Track::new(
            &self.inner.queue,
            &self.inner.defaults,
            self.inner.enabled,
            person.into(),
            event.into(),
        )
    }

    /// Links the visitor known so far by `anonymous_id` to the user
    /// `user_id`: an [`IDENTIFY_EVENT`] (`"identify"`) event carrying both
    /// ids, as the browser SDK's `tally.identify(userId)` sends. Call it
    /// when a visitor signs up or logs in; queue it with [`Track::send`]
    /// like any event (it is batched, retried and deduplicated the same
    /// way, and never blocks).
    ///
    /// Every analysis then counts the anonymous id's events, those before
    /// the link included, for the user (SPEC §1; the earliest link of an
    /// anonymous id wins, and two user ids are never merged). Sending a
    /// signup event with both ids ([`Track::anonymous_id`]) links them
    /// just as well; `identify` is for when there is no such event, such
    /// as a login on a new device. Track the user's later events under
    /// `user_id`. See [`stored_anonymous_id`] and [`new_anonymous_id`] for
    /// keeping a visitor's anonymous id stable until then.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tally_sdk::{Client, Person, Stage};
    ///
    /// let client = Client::builder("http://127.0.0.1:9", "WRITE_KEY").build()?;
    /// // The visitor's id, e.g. from a cookie (see `new_anonymous_id`).
    /// let anon = "0193a4b2-7c1e-7d3f-9a2b-5c6d7e8f9a0b";
    /// client
    ///     .track(Person::anonymous(anon), "page_view")
    ///     .stage(Stage::Discovery)
    ///     .property("utm_source", "newsletter")
    ///     .send()?;
    /// // At login: link the id to the account, then track the user as the user.
    /// let id = client.identify("user-42", anon).send()?;
    /// assert_eq!(id.get_version_num(), 7);
    /// client.track("user-42", "report_exported").send()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn identify(
        &self,
        user_id: impl Into<String>,
        anonymous_id: impl Into<String>,
    ) -> Track<'_> {
        self.track(Person::user(user_id), IDENTIFY_EVENT)
            .anonymous_id(anonymous_id)
    }

    /// A client that sends nothing: [`Track::send`] still checks the event
    /// and returns an id, but queues nothing; `flush` and `shutdown` return
    /// empty reports at once. For tests, and for an app whose user opted
    /// out. Needs no runtime, collector or key; the same as
    /// `Client::builder(..).enabled(false).build()`.
    ///
    /// ```
    /// let client = tally_sdk::Client::disabled();
    /// client.track("user-1", "signed_up").send().unwrap();
    /// assert_eq!(client.stats().queued, 0);
    /// assert_eq!(client.stats().sent, 0);
    /// assert!(!client.is_enabled());
    /// ```
    pub fn disabled() -> Client {
        Client::disabled_with(serde_json::Map::new())
    }

    pub(crate) fn disabled_with(defaults: serde_json::Map<String, serde_json::Value>) -> Client {
        // No background task: a closed command channel makes `flush` and
        // `shutdown` answer with an empty report.
        let (commands, _) = mpsc::unbounded_channel();
        Client {
            inner: Arc::new(Handle {
                queue: Arc::new(Queue::new(1, 1, DropPolicy::Newest)),
                commands,
                shutdown_timeout: Duration::ZERO,
                defaults,
                enabled: false,
            }),
        }
    }

    /// False for a [disabled](Client::disabled) client.
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Delivers every event tracked before this call, waiting at most the
    /// [shutdown timeout](ClientBuilder::shutdown_timeout). Events still
    /// pending at the deadline stay queued and are listed in the report.
    pub async fn flush(&self) -> FlushReport {
        self.flush_within(self.inner.shutdown_timeout).await
    }

    /// [`flush`](Client::flush) with an explicit deadline.
    pub async fn flush_within(&self, timeout: Duration) -> FlushReport {
        self.ask(false, timeout).await
    }

    /// Stops accepting events, delivers what is pending within the
    /// [shutdown timeout](ClientBuilder::shutdown_timeout), and stops the
    /// background task. Events that could not be delivered by then are
    /// returned in the report (and, with a durable queue, stay on disk for
    /// the next start). Later calls to [`track`](Client::track) fail with
    /// [`TrackError::Closed`]; a second `shutdown` returns an empty report.
    pub async fn shutdown(&self) -> FlushReport {
        self.shutdown_within(self.inner.shutdown_timeout).await
    }

    /// [`shutdown`](Client::shutdown) with an explicit deadline.
    pub async fn shutdown_within(&self, timeout: Duration) -> FlushReport {
        self.ask(true, timeout).await
    }

    async fn ask(&self, shutdown: bool, timeout: Duration) -> FlushReport {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reply: Reply = Box::new(move |report| {
            let _ = tx.send(report);
        });
        if !self.inner.request(shutdown, timeout, reply) {
            return FlushReport::default();
        }
        // The background task answers by the deadline; if it died instead
        // (its runtime shut down), the channel closes and nothing is pending.
        rx.await.unwrap_or_default()
    }

    /// A snapshot of the delivery counters.
    pub fn stats(&self) -> Stats {
        self.inner.queue.stats()
    }
}

impl ClientBuilder {
    /// Builds the client and starts its background sender on the current
    /// Tokio runtime.
    ///
    /// Fails on an invalid endpoint, write key or setting, or when called
    /// outside a runtime ([`BuildError::NoRuntime`]).
    pub fn build(self) -> Result<Client, BuildError> {
        if !self.is_enabled() {
            return Ok(Client::disabled_with(self.into_defaults()));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let (client, worker) = self.into_parts()?;
        runtime.spawn(worker.run());
        Ok(client)
    }

    /// Validates the settings and creates the client handle and its (not yet
    /// running) background task.
    pub(crate) fn into_parts(self) -> Result<(Client, Worker), BuildError> {
        let config = self.validate()?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("tally-sdk/", env!("CARGO_PKG_VERSION")))
            .build()?;

        let queue = Arc::new(Queue::new(
            config.queue_capacity,
            config.batch_size,
            config.drop_policy,
        ));
        #[cfg(feature = "durable")]
        let durable = match &config.durable_dir {
            Some(dir) => {
                let (log, recovered) = durable::Log::open(dir)?;
                queue.attach_log(log, recovered);
                true
            }
            None => false,
        };
        #[cfg(not(feature = "durable"))]
        let durable = false;

        let (commands, command_rx) = mpsc::unbounded_channel();
        let worker = Worker::new(
            queue.clone(),
            Sender {
                http,
                url: config.url,
                auth: config.auth,
                gzip: config.gzip,
            },
            worker::Settings {
                policy: sender::Policy {
                    batch_size: config.batch_size,
                    flush_interval: config.flush_interval,
                    shutdown_timeout: config.shutdown_timeout,
                    max_retries: config.max_retries,
                    retry_forever: durable,
                    backoff: config.backoff,
                },
                callback: config.on_delivery,
            },
            command_rx,
        );
        let client = Client {
            inner: Arc::new(Handle {
                queue,
                commands,
                shutdown_timeout: config.shutdown_timeout,
                defaults: config.defaults,
                enabled: true,
            }),
        };
        Ok((client, worker))
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_are_send_and_sync() {
        send_sync::<super::Client>();
        send_sync::<super::blocking::Client>();
        send_sync::<super::Track<'static>>();
        send_sync::<super::FlushReport>();
        send_sync::<super::DeliveryReport>();
        send_sync::<super::Stats>();
    }
}
