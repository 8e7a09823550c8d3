//! The background sender: one task per client that takes batches from the
//! queue, posts them one at a time, retries, and answers flush and shutdown
//! requests.
//!
//! Everything happens in one loop that wakes on whichever comes first: the
//! answer to the request in flight, a command, a flush deadline, the end of
//! a backoff, the flush-interval tick, or a full batch in the queue. The
//! request in flight is a boxed future kept across iterations, so commands
//! and deadlines are handled while it runs.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use tally_event::time::{format_rfc3339, now_ms};
use tally_event::{IngestAnswer as Answer, WireEvent};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};

use crate::backoff::{Backoff, parse_retry_after, retryable_status};
use crate::batch::{self, EVENTS_BUDGET, Prep, Prepared};
use crate::queue::{Counters, Entry, Queue};
use crate::report::{DeliveryError, DeliveryReport, FlushReport, Rejection};
use crate::types::{Callback, Command, Reply};

/// `now + timeout`, saturating far in the future instead of overflowing.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(10 * 365 * 86_400))
}

/// Biggest answer body read; the collector's are tiny.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// How the sender talks HTTP.
pub(crate) struct Sender {
    pub(crate) http: reqwest::Client,
    pub(crate) url: Url,
    pub(crate) auth: HeaderValue,
    pub(crate) gzip: bool,
}

/// The outcome of one request.
#[derive(Debug)]
pub(crate) enum Outcome {
    Answer(Answer),
    Retry {
        error: DeliveryError,
        after: Option<Duration>,
    },
    Fail(DeliveryError),
}

impl Sender {
    /// One attempt. The future owns everything it needs, so that it can be
    /// kept while the worker handles other wake-ups.
    fn send(&self, body: Vec<u8>, gzipped: bool) -> impl Future<Output = Outcome> + Send + 'static {
        let mut req = self
            .http
            .post(self.url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/json");
        if gzipped {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        let req = req.body(body);
        async move {
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => return retry(transport_error(&e), None),
            };
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let body = match read_capped(resp).await {
                Ok(b) => b,
                // The collector may have stored the events; resending is
                // safe, the ids make it idempotent.
                Err(e) => return retry(transport_error(&e), None),
            };
            classify(status, retry_after, &body)
        }
    }
}

fn retry(error: DeliveryError, after: Option<Duration>) -> Outcome {
    Outcome::Retry { error, after }
}

/// Maps an HTTP answer to what the worker does next.
pub(crate) fn classify(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    if status == 200 {
        return match serde_json::from_slice::<Answer>(body) {
            Ok(a) => Outcome::Answer(a),
            Err(e) => Outcome::Fail(DeliveryError::InvalidResponse(format!(
                "{e} in {:?}",
                snippet(body)
            ))),
        };
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_else(|_| snippet(body));
    let error = DeliveryError::Status { status, message };
    if retryable_status(status) {
        retry(error, retry_after)
    } else {
        Outcome::Fail(error)
    }
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.trim().to_owned()
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_ANSWER_BYTES - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() == MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(out)
}

fn transport_error(e: &reqwest::Error) -> DeliveryError {
    if e.is_timeout() {
        return DeliveryError::Timeout;
    }
    // reqwest's own message is terse; the causes say what happened.
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    DeliveryError::Transport(msg)
}

/// Worker settings, from the builder.
pub(crate) struct Settings {
    pub(crate) batch_size: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) max_retries: u32,
    /// Durable queues never give up on retryable failures.
    pub(crate) retry_forever: bool,
    pub(crate) backoff: Backoff,
    pub(crate) callback: Option<Callback>,
}

/// The batch being delivered.
struct InFlight {
    items: Vec<Prepared>,
    /// Requests made so far.
    attempts: u32,
    /// When the next attempt may start (after a backoff).
    next_attempt: Option<Instant>,
    last_error: Option<DeliveryError>,
}

/// A flush (or the shutdown) waiting for its events.
struct Waiter {
    marker: u64,
    deadline: Instant,
    report: FlushReport,
    reply: Option<Reply>,
}

impl Waiter {
    fn answer(mut self) {
        if let Some(reply) = self.reply.take() {
            reply(self.report);
        }
    }
}

type RequestFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

enum Wake {
    Answer(Outcome),
    Command(Option<Command>),
    Deadline,
    BackoffOver,
    Tick,
    Notified,
}

pub(crate) struct Worker {
    queue: Arc<Queue>,
    sender: Sender,
    settings: Settings,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    in_flight: Option<InFlight>,
    request: Option<RequestFuture>,
    /// Events with `seq <= send_upto` go out now, without waiting for a
    /// full batch (set by the interval tick, flushes and shutdown).
    send_upto: u64,
    flushes: Vec<Waiter>,
    /// Set once shutting down (asked for, or every handle dropped).
    exit: Option<Waiter>,
    done: bool,
    drops_reported: u64,
    refusals: Refusals,
}

/// Causes of refusal already logged at `warn`: a wrong key or an app that
/// sends bad events would otherwise log the same line for every batch.
#[derive(Default)]
pub(crate) struct Refusals {
    seen: std::collections::HashSet<String>,
}

/// At most this many distinct causes are logged (then only `debug`).
const MAX_REFUSAL_CAUSES: usize = 32;

impl Refusals {
    /// True the first time `cause` is seen (and while few causes were).
    pub(crate) fn first(&mut self, cause: String) -> bool {
        self.seen.len() < MAX_REFUSAL_CAUSES && self.seen.insert(cause)
    }
}

/// The cause of a refusal worth a warning: the collector said no to the key
/// (401, 403) or to the events (400, 413); retries cannot fix these.
pub(crate) fn refusal_cause(error: &DeliveryError) -> Option<(String, &'static str)> {
    let status = error.status()?;
    let what = match status {
        401 | 403 => {
            "the collector refused the write key; no event is being delivered \
                      (check the key given to Client::builder)"
        }
        400 => "the collector refused a batch as malformed",
        413 => "the collector refused an event as too large",
        _ => return None,
    };
    Some((format!("status {status}"), what))
}

/// The cause of one rejected event: the field its message names
/// (`user_id: required ...` → `user_id`).
pub(crate) fn rejection_cause(error: &str) -> String {
    let field = error.split(':').next().unwrap_or(error);
    format!("rejected {field}")
}

impl Worker {
    pub(crate) fn new(
        queue: Arc<Queue>,
        sender: Sender,
        settings: Settings,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        // Events recovered from a durable queue go out at once.
        let send_upto = queue.last_seq();
        Worker {
            queue,
            sender,
            settings,
            commands,
            commands_open: true,
            in_flight: None,
            request: None,
            send_upto,
            flushes: Vec::new(),
            exit: None,
            done: false,
            drops_reported: 0,
            refusals: Refusals::default(),
        }
    }

    pub(crate) async fn run(mut self) {
        let period = self.settings.flush_interval;
        let mut tick = interval_at(Instant::now() + period, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            self.report_drops();
            self.expire_deadlines();
            self.advance();
            self.settle();
            if self.done {
                break;
            }
            let idle = self.in_flight.is_none();
            let deadline = self.next_deadline();
            let backoff_until = match (&self.request, &self.in_flight) {
                (None, Some(b)) => b.next_attempt,
                _ => None,
            };
            let far = Instant::now() + Duration::from_secs(86_400);
            let wake = tokio::select! {
                biased;
                outcome = poll_request(&mut self.request) => Wake::Answer(outcome),
                cmd = self.commands.recv(), if self.commands_open => Wake::Command(cmd),
                () = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => Wake::Deadline,
                () = sleep_until(backoff_until.unwrap_or(far)), if backoff_until.is_some() => Wake::BackoffOver,
                _ = tick.tick(), if idle => Wake::Tick,
                () = self.queue.notify.notified(), if idle => Wake::Notified,
            };
            self.handle(wake);
        }
    }

    fn handle(&mut self, wake: Wake) {
        match wake {
            Wake::Answer(outcome) => {
                self.request = None;
                self.on_outcome(outcome);
            }
            Wake::Command(Some(Command::Flush {
                marker,
                deadline,
                reply,
            })) => {
                self.send_upto = self.send_upto.max(marker);
                self.flushes.push(Waiter {
                    marker,
                    deadline,
                    report: FlushReport::default(),
                    reply: Some(reply),
                });
            }
            Wake::Command(Some(Command::Shutdown { deadline, reply })) => {
                if self.exit.is_some() {
                    // A concurrent second shutdown: it waits like a flush of
                    // everything, and is answered when the first one is.
                    self.flushes.push(Waiter {
                        marker: u64::MAX,
                        deadline,
                        report: FlushReport::default(),
                        reply: Some(reply),
                    });
                } else {
                    self.begin_exit(deadline, Some(reply));
                }
            }
            Wake::Command(None) => {
                // Every handle is gone: deliver what we can, then stop.
                self.commands_open = false;
                if self.exit.is_none() {
                    self.begin_exit(deadline_after(self.settings.shutdown_timeout), None);
                }
            }
            Wake::Deadline | Wake::Notified => {}
            Wake::BackoffOver => {
                if let Some(b) = &mut self.in_flight {
                    b.next_attempt = None;
                }
            }
            Wake::Tick => {
                self.send_upto = self.send_upto.max(self.queue.last_seq());
                #[cfg(feature = "durable")]
                if let Some(file) = self.queue.log_sync_handle() {
                    let _ = file.sync_data();
                }
            }
        }
    }

    fn begin_exit(&mut self, deadline: Instant, reply: Option<Reply>) {
        self.queue.close();
        self.send_upto = u64::MAX;
        self.exit = Some(Waiter {
            marker: u64::MAX,
            deadline,
            report: FlushReport::default(),
            reply,
        });
    }

    /// Whether a batch should be taken from the queue now.
    fn due(&self) -> bool {
        match self.queue.front_seq() {
            None => false,
            Some(front) => front <= self.send_upto || self.queue.len() >= self.settings.batch_size,
        }
    }

    /// Starts whatever can start: forms a batch if one is due, and sends the
    /// batch in flight unless it waits for a backoff.
    fn advance(&mut self) {
        if self.request.is_some() {
            return;
        }
        while self.in_flight.is_none() && self.due() {
            if let Some(batch) = self.form_batch() {
                self.set_in_flight(Some(batch));
            }
        }
        let Some(b) = &mut self.in_flight else { return };
        if b.next_attempt.is_some_and(|at| at > Instant::now()) {
            return;
        }
        b.next_attempt = None;
        let sent_at = format_rfc3339(now_ms());
        let json = batch::body(&b.items, &sent_at);
        let (body, gzipped) = match self.sender.gzip.then(|| batch::gzip(&json)).flatten() {
            Some(gz) => (gz, true),
            None => (json, false),
        };
        let c = &self.queue.counters;
        Counters::add(&c.requests, 1);
        if b.attempts == 0 {
            Counters::add(&c.sent, b.items.len());
        } else {
            Counters::add(&c.retries, 1);
        }
        b.attempts += 1;
        self.request = Some(Box::pin(self.sender.send(body, gzipped)));
    }

    /// Takes up to a batch from the queue. Events the collector would reject
    /// are reported at once; events beyond the byte budget go back.
    fn form_batch(&mut self) -> Option<InFlight> {
        let entries = self.queue.take(self.settings.batch_size);
        let mut items = Vec::with_capacity(entries.len());
        let mut refused = Vec::new();
        for entry in entries {
            match batch::prepare(entry) {
                Prep::Ready(p) => items.push(p),
                Prep::Refused(entry, error) => refused.push((entry, error)),
            }
        }
        let n = batch::fit(
            items.iter().map(|p| p.json.len()),
            usize::MAX,
            EVENTS_BUDGET,
        );
        if n < items.len() {
            let rest = items.split_off(n);
            self.queue
                .put_back(rest.into_iter().map(Prepared::into_entry).collect());
        }
        if !refused.is_empty() {
            Counters::add(&self.queue.counters.rejected, refused.len());
            self.queue.ack(
                refused.iter().map(|(e, _)| e.event.id),
                self.in_flight_events()
                    .chain(items.iter().map(|p| &p.event)),
            );
            let rejected: Vec<(u64, Rejection)> = refused
                .into_iter()
                .map(|(Entry { seq, event }, error)| (seq, Rejection { event, error }))
                .collect();
            self.report_outcome(0, 0, &[], rejected);
        }
        (!items.is_empty()).then_some(InFlight {
            items,
            attempts: 0,
            next_attempt: None,
            last_error: None,
        })
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        let Some(mut b) = self.in_flight.take() else {
            return;
        };
        match outcome {
            Outcome::Answer(answer) => self.delivered(b, answer),
            Outcome::Retry { error, after } => {
                let retries_done = b.attempts.saturating_sub(1);
                if self.settings.retry_forever || retries_done < self.settings.max_retries {
                    // Retry-After is a floor, and never below the backoff's
                    // base: `Retry-After: 0` must not turn into a hot loop.
                    let backoff = self.settings.backoff;
                    let delay = after.map_or_else(
                        || backoff.delay(retries_done, &mut rand::rng()),
                        |after| after.max(backoff.base()),
                    );
                    tracing::debug!(
                        events = b.items.len(),
                        attempt = b.attempts,
                        ?delay,
                        %error,
                        "tally-sdk: request failed, will retry"
                    );
                    b.next_attempt = Some(Instant::now() + delay);
                    b.last_error = Some(error);
                    self.set_in_flight(Some(b));
                } else {
                    self.fail(b, error);
                }
            }
            Outcome::Fail(error) if error.status() == Some(413) && b.items.len() > 1 => {
                // Too big for this collector after all: halve and resend.
                let rest = b.items.split_off(b.items.len() / 2);
                self.queue
                    .put_back(rest.into_iter().map(Prepared::into_entry).collect());
                b.next_attempt = None;
                self.set_in_flight(Some(b));
            }
            Outcome::Fail(error) => self.fail(b, error),
        }
    }

    /// A 200 answer for the batch `b`.
    fn delivered(&mut self, b: InFlight, answer: Answer) {
        let n = b.items.len();
        let mut is_rejected = vec![false; n];
        let mut rejected = Vec::new();
        for r in answer.rejected {
            // Ignore indexes out of range or repeated: each event counts once.
            if r.index < n && !is_rejected[r.index] {
                is_rejected[r.index] = true;
                rejected.push((r.index, r.error));
            }
        }
        rejected.sort_by_key(|(i, _)| *i);
        for (_, error) in &rejected {
            if self.refusals.first(rejection_cause(error)) {
                tracing::warn!(
                    "tally-sdk: the collector rejected an event: {error} (logged once per \
                     reason; every rejection is in the flush and shutdown reports)"
                );
            }
        }
        let r = rejected.len();
        // Trust the collector's split of the rest into new and duplicate,
        // but keep every event counted exactly once.
        let duplicates = answer.duplicates.min(n - r);
        let accepted = n - r - duplicates;
        if answer.accepted != accepted {
            tracing::debug!(
                expected = accepted,
                got = answer.accepted,
                "tally-sdk: collector's counts do not add up to the batch"
            );
        }
        let c = &self.queue.counters;
        Counters::add(&c.accepted, accepted);
        Counters::add(&c.duplicates, duplicates);
        Counters::add(&c.rejected, r);
        self.queue
            .ack(b.items.iter().map(|p| p.event.id), std::iter::empty());
        let rejections: Vec<(u64, Rejection)> = rejected
            .into_iter()
            .map(|(i, error)| {
                let p = &b.items[i];
                (
                    p.seq,
                    Rejection {
                        event: p.event.clone(),
                        error,
                    },
                )
            })
            .collect();
        let delivered_seqs: Vec<u64> = b
            .items
            .iter()
            .zip(&is_rejected)
            .filter(|(_, rej)| !**rej)
            .map(|(p, _)| p.seq)
            .collect();
        self.set_in_flight(None);
        self.report_outcome(
            accepted as u64,
            duplicates as u64,
            &delivered_seqs,
            rejections,
        );
    }

    /// Reports a settled batch to the callback and to waiting flushes.
    fn report_outcome(
        &mut self,
        accepted: u64,
        duplicates: u64,
        delivered_seqs: &[u64],
        rejected: Vec<(u64, Rejection)>,
    ) {
        for w in self.waiters() {
            w.report.delivered += delivered_seqs.iter().filter(|s| **s <= w.marker).count() as u64;
            w.report.rejected.extend(
                rejected
                    .iter()
                    .filter(|(s, _)| *s <= w.marker)
                    .map(|(_, r)| r.clone()),
            );
        }
        self.emit(|| DeliveryReport::Delivered {
            accepted,
            duplicates,
            rejected: rejected.into_iter().map(|(_, r)| r).collect(),
        });
    }

    /// Gives up on a batch.
    fn fail(&mut self, b: InFlight, error: DeliveryError) {
        let refusal = refusal_cause(&error);
        match refusal {
            Some((cause, what)) if self.refusals.first(cause.clone()) => {
                tracing::warn!(
                    events = b.items.len(),
                    "tally-sdk: {what}: {error} (logged once per cause)"
                );
            }
            _ => tracing::debug!(events = b.items.len(), %error, "tally-sdk: giving up on a batch"),
        }
        Counters::add(&self.queue.counters.failed, b.items.len());
        // A durable queue keeps what may still be delivered later.
        let keep_on_disk = error.is_retryable() || error == DeliveryError::Abandoned;
        if !keep_on_disk {
            self.queue
                .ack(b.items.iter().map(|p| p.event.id), std::iter::empty());
        }
        self.set_in_flight(None);
        let attempts = b.attempts;
        let entries: Vec<(u64, WireEvent)> =
            b.items.into_iter().map(|p| (p.seq, p.event)).collect();
        self.settle_failed(entries, error, attempts, false);
    }

    /// Hands failed (or, when `pending`, abandoned at shutdown) events to the
    /// waiters and the callback.
    fn settle_failed(
        &mut self,
        entries: Vec<(u64, WireEvent)>,
        error: DeliveryError,
        attempts: u32,
        pending: bool,
    ) {
        if entries.is_empty() {
            return;
        }
        for w in self.waiters() {
            let mine = entries
                .iter()
                .filter(|(s, _)| *s <= w.marker)
                .map(|(_, e)| e.clone());
            if pending {
                w.report.pending.extend(mine);
            } else {
                w.report.failed.extend(mine);
            }
            w.report.last_error = Some(error.clone());
        }
        self.emit(|| DeliveryReport::Failed {
            events: entries.into_iter().map(|(_, e)| e).collect(),
            error,
            attempts,
        });
    }

    fn waiters(&mut self) -> impl Iterator<Item = &mut Waiter> {
        self.flushes.iter_mut().chain(self.exit.as_mut())
    }

    fn set_in_flight(&mut self, b: Option<InFlight>) {
        let n = b.as_ref().map_or(0, |b| b.items.len());
        self.queue
            .counters
            .in_flight
            .store(n as u64, std::sync::atomic::Ordering::Relaxed);
        self.in_flight = b;
    }

    fn in_flight_events(&self) -> impl Iterator<Item = &WireEvent> + Clone {
        self.in_flight
            .iter()
            .flat_map(|b| b.items.iter().map(|p| &p.event))
    }

    /// Oldest sequence number not yet settled.
    fn oldest_pending(&self) -> Option<u64> {
        let in_flight = self
            .in_flight
            .as_ref()
            .and_then(|b| b.items.iter().map(|p| p.seq).min());
        match (in_flight, self.queue.front_seq()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Answers the waiters whose events are all settled.
    fn settle(&mut self) {
        let oldest = self.oldest_pending();
        let settled = |w: &Waiter| oldest.is_none_or(|o| o > w.marker);
        let (ready, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(settled);
        self.flushes = waiting;
        for w in ready {
            w.answer();
        }
        if self.exit.as_ref().is_some_and(settled) {
            self.finish();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.flushes
            .iter()
            .chain(&self.exit)
            .map(|w| w.deadline)
            .min()
    }

    /// Answers the waiters whose deadline has passed, with what is still
    /// pending; at the shutdown deadline, abandons everything.
    fn expire_deadlines(&mut self) {
        let now = Instant::now();
        if self.exit.as_ref().is_some_and(|w| w.deadline <= now) {
            self.abandon();
            return;
        }
        let (expired, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|w| w.deadline <= now);
        self.flushes = waiting;
        for mut w in expired {
            w.report.pending = self
                .in_flight
                .iter()
                .flat_map(|b| &b.items)
                .filter(|p| p.seq <= w.marker)
                .map(|p| p.event.clone())
                .chain(self.queue.pending_upto(w.marker))
                .collect();
            if w.report.last_error.is_none() {
                w.report.last_error = self.in_flight.as_ref().and_then(|b| b.last_error.clone());
            }
            w.report.timed_out = true;
            w.answer();
        }
    }

    /// The shutdown deadline passed: drop the request in flight and give up
    /// on everything still pending.
    fn abandon(&mut self) {
        self.request = None;
        let mut entries: Vec<(u64, WireEvent)> = Vec::new();
        let mut attempts = 0;
        let mut error = DeliveryError::Abandoned;
        if let Some(b) = self.in_flight.take() {
            attempts = b.attempts;
            if let Some(e) = b.last_error {
                error = e;
            }
            entries.extend(b.items.into_iter().map(|p| (p.seq, p.event)));
        }
        entries.extend(self.queue.drain().into_iter().map(|e| (e.seq, e.event)));
        self.set_in_flight(None);
        Counters::add(&self.queue.counters.failed, entries.len());
        for w in self.waiters() {
            w.report.timed_out = true;
        }
        if !entries.is_empty() {
            tracing::debug!(
                events = entries.len(),
                "tally-sdk: shutdown deadline passed with events undelivered"
            );
            let last = error.clone();
            self.settle_failed(entries, DeliveryError::Abandoned, attempts, true);
            for w in self.waiters() {
                w.report.last_error = Some(last.clone());
            }
        }
        self.finish();
    }

    /// Answers every waiter and stops.
    fn finish(&mut self) {
        #[cfg(feature = "durable")]
        if let Some(file) = self.queue.log_sync_handle() {
            let _ = file.sync_data();
        }
        for w in std::mem::take(&mut self.flushes) {
            w.answer();
        }
        if let Some(w) = self.exit.take() {
            w.answer();
        }
        self.report_drops();
        self.done = true;
    }

    fn report_drops(&mut self) {
        if self.settings.callback.is_none() {
            return;
        }
        let dropped = self
            .queue
            .counters
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed);
        if dropped > self.drops_reported {
            let count = dropped - self.drops_reported;
            self.drops_reported = dropped;
            self.emit(|| DeliveryReport::Dropped { count });
        }
    }

    /// Calls the callback, if any; a panic in it is contained.
    fn emit(&self, report: impl FnOnce() -> DeliveryReport) {
        if let Some(cb) = &self.settings.callback {
            let report = report();
            if catch_unwind(AssertUnwindSafe(|| cb(&report))).is_err() {
                tracing::debug!("tally-sdk: the delivery callback panicked");
            }
        }
    }
}

/// Polls the request in flight; never completes when there is none.
async fn poll_request(request: &mut Option<RequestFuture>) -> Outcome {
    match request {
        Some(fut) => fut.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_of_answers() {
        let ok = br#"{"accepted":2,"duplicates":1,"rejected":[{"index":0,"error":"bad"}]}"#;
        match classify(200, None, ok) {
            Outcome::Answer(a) => {
                assert_eq!((a.accepted, a.duplicates, a.rejected.len()), (2, 1, 1));
                assert_eq!(a.rejected[0].error, "bad");
            }
            other => panic!("{other:?}"),
        }
        // Missing optional fields are fine; garbage is not.
        assert!(matches!(
            classify(200, None, br#"{"accepted":3}"#),
            Outcome::Answer(_)
        ));
        assert!(matches!(
            classify(200, None, b"<html>ok</html>"),
            Outcome::Fail(DeliveryError::InvalidResponse(_))
        ));
        for status in [500, 502, 503, 504, 429] {
            match classify(status, Some(Duration::from_secs(2)), br#"{"error":"busy"}"#) {
                Outcome::Retry { error, after } => {
                    assert_eq!(error.status(), Some(status));
                    assert_eq!(after, Some(Duration::from_secs(2)));
                    assert!(error.to_string().contains("busy"));
                    assert!(error.is_retryable());
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        for status in [400, 401, 403, 404, 413, 422] {
            match classify(status, None, br#"{"error":"no"}"#) {
                Outcome::Fail(DeliveryError::Status { status: s, message }) => {
                    assert_eq!((s, message.as_str()), (status, "no"));
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        // A non-JSON error body is quoted.
        match classify(502, None, b"Bad Gateway") {
            Outcome::Retry { error, .. } => assert!(error.to_string().contains("Bad Gateway")),
            other => panic!("{other:?}"),
        }
        assert!(DeliveryError::Timeout.is_retryable());
        assert!(DeliveryError::Transport("x".into()).is_retryable());
        assert!(!DeliveryError::Abandoned.is_retryable());
    }

    #[test]
    fn refusals_are_warned_once_per_cause() {
        let status = |status: u16| DeliveryError::Status {
            status,
            message: "no".into(),
        };
        for s in [400, 401, 403, 413] {
            assert!(refusal_cause(&status(s)).is_some(), "{s}");
        }
        // Retryable failures and other statuses are not refusals.
        for e in [
            status(500),
            status(429),
            status(404),
            DeliveryError::Timeout,
            DeliveryError::Transport("refused".into()),
        ] {
            assert!(refusal_cause(&e).is_none(), "{e}");
        }
        assert!(refusal_cause(&status(401)).unwrap().1.contains("write key"));
        let mut r = Refusals::default();
        let key = |s| refusal_cause(&status(s)).unwrap().0;
        assert!(r.first(key(401)));
        assert!(!r.first(key(401)));
        assert!(r.first(key(403)));
        // Rejections: one cause per field named.
        assert!(r.first(rejection_cause("user_id: required unless anonymous_id")));
        assert!(!r.first(rejection_cause("user_id: too long")));
        assert!(r.first(rejection_cause("event: required")));
        // A bounded number of causes.
        for i in 0..100 {
            r.first(format!("cause {i}"));
        }
        assert_eq!(r.seen.len(), MAX_REFUSAL_CAUSES);
    }

    #[test]
    fn deadlines_saturate() {
        let d = deadline_after(Duration::MAX);
        assert!(d > Instant::now() + Duration::from_secs(365 * 86_400));
    }
}
