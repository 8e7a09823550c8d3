//! The background sender: one task per client that drives the
//! [`sender::Core`](crate::sender::Core) state machine. It carries out the
//! core's actions (take a batch from the queue, post it, answer a flush,
//! report to the callback) and feeds it what happens: commands, answers,
//! timers and newly queued events.
//!
//! The request in flight is a boxed future kept across iterations, so
//! commands and deadlines are handled while it runs. The events of the
//! batch in flight, and the reports built from them, live here; the core
//! knows only how many there are.

use std::collections::HashMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tally_event::time::{format_rfc3339, now_ms};
use tally_event::{IngestAnswer, WireEvent};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use crate::batch::{self, EVENTS_BUDGET, Prep, Prepared};
use crate::http::Sender;
use crate::queue::{Counters, Entry, Queue};
use crate::report::{DeliveryError, DeliveryReport, FlushReport, Rejection};
use crate::sender::{self, Action, Core, Input, Outcome, Policy, QueueView, WaiterId};
use crate::types::{Callback, Command, Reply};

/// `now + timeout`, saturating far in the future instead of overflowing.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    sender::later(Instant::now(), timeout)
}

/// Worker settings, from the builder.
pub(crate) struct Settings {
    pub(crate) policy: Policy,
    pub(crate) callback: Option<Callback>,
}

/// A flush (or the shutdown) waiting for its events.
struct Waiter {
    marker: u64,
    report: FlushReport,
    reply: Reply,
}

type RequestFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

pub(crate) struct Worker {
    queue: Arc<Queue>,
    sender: Sender,
    core: Core,
    callback: Option<Callback>,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    /// The events of the batch in flight.
    in_flight: Vec<Prepared>,
    request: Option<RequestFuture>,
    waiters: HashMap<WaiterId, Waiter>,
    next_waiter: WaiterId,
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
        let recovered = queue.last_seq();
        let core = Core::new(
            settings.policy,
            recovered,
            Instant::now(),
            rand::rng().random(),
        );
        Worker {
            queue,
            sender,
            core,
            callback: settings.callback,
            commands,
            commands_open: true,
            in_flight: Vec::new(),
            request: None,
            waiters: HashMap::new(),
            next_waiter: 0,
            drops_reported: 0,
            refusals: Refusals::default(),
        }
    }

    fn view(&self) -> QueueView {
        QueueView {
            front: self.queue.front_seq(),
            len: self.queue.len(),
            last: self.queue.last_seq(),
        }
    }

    pub(crate) async fn run(mut self) {
        let mut input = Input::Wake;
        loop {
            self.report_drops();
            let actions = self.core.on(input, self.view(), Instant::now());
            let mut next = None;
            for action in actions {
                if let Some(i) = self.carry_out(action) {
                    next = Some(i);
                }
            }
            if self.core.is_done() {
                self.report_drops();
                break;
            }
            if let Some(i) = next {
                input = i;
                continue;
            }
            let idle = self.core.is_idle();
            let wake_at = self.core.next_wake();
            let far = Instant::now() + Duration::from_secs(86_400);
            input = tokio::select! {
                biased;
                outcome = poll_request(&mut self.request) => {
                    self.request = None;
                    Input::Sent(outcome)
                }
                cmd = self.commands.recv(), if self.commands_open => self.command(cmd),
                () = sleep_until(wake_at.unwrap_or(far)), if wake_at.is_some() => Input::Wake,
                () = self.queue.notify.notified(), if idle => Input::Wake,
            };
        }
    }

    /// Turns a command into the core's input, keeping its reply here.
    fn command(&mut self, cmd: Option<Command>) -> Input {
        let (marker, deadline, reply, shutdown) = match cmd {
            Some(Command::Flush {
                marker,
                deadline,
                reply,
            }) => (marker, deadline, reply, false),
            Some(Command::Shutdown { deadline, reply }) => (u64::MAX, deadline, reply, true),
            None => {
                // Every handle is gone: deliver what we can, then stop.
                self.commands_open = false;
                return Input::Closed;
            }
        };
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.insert(
            id,
            Waiter {
                marker,
                report: FlushReport::default(),
                reply,
            },
        );
        if shutdown {
            Input::Shutdown { id, deadline }
        } else {
            Input::Flush {
                id,
                marker,
                deadline,
            }
        }
    }

    /// Does what the core asks; returns the input that answers it, if any.
    fn carry_out(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::Take { max } => return Some(self.take(max)),
            Action::Send { attempt } => self.send(attempt),
            Action::Backoff { at, attempt, error } => {
                tracing::debug!(
                    events = self.in_flight.len(),
                    attempt = attempt,
                    delay = ?at.saturating_duration_since(Instant::now()),
                    %error,
                    "tally-sdk: request failed, will retry"
                );
            }
            Action::Delivered(answer) => self.delivered(answer),
            Action::Fail { error, attempts } => self.fail(error, attempts),
            Action::Split { keep } => {
                let rest = self.in_flight.split_off(keep);
                self.queue
                    .put_back(rest.into_iter().map(Prepared::into_entry).collect());
                let kept = std::mem::take(&mut self.in_flight);
                self.set_in_flight(kept);
            }
            Action::Close => self.queue.close(),
            Action::SyncLog =>
            {
                #[cfg(feature = "durable")]
                if let Some(file) = self.queue.log_sync_handle() {
                    let _ = file.sync_data();
                }
            }
            Action::Answer {
                id,
                expired,
                last_error,
            } => self.answer(id, expired, last_error),
            Action::Abandon {
                last_error,
                attempts,
            } => self.abandon(last_error, attempts),
            Action::Stop => {}
        }
        None
    }

    /// Posts the batch in flight.
    fn send(&mut self, attempt: u32) {
        let sent_at = format_rfc3339(now_ms());
        let json = batch::body(&self.in_flight, &sent_at);
        let (body, gzipped) = match self.sender.gzip.then(|| batch::gzip(&json)).flatten() {
            Some(gz) => (gz, true),
            None => (json, false),
        };
        let c = &self.queue.counters;
        Counters::add(&c.requests, 1);
        if attempt == 0 {
            Counters::add(&c.sent, self.in_flight.len());
        } else {
            Counters::add(&c.retries, 1);
        }
        self.request = Some(Box::pin(self.sender.send(body, gzipped)));
    }

    /// Takes up to a batch from the queue. Events the collector would reject
    /// are reported at once; events beyond the byte budget go back.
    fn take(&mut self, max: usize) -> Input {
        let entries = self.queue.take(max);
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
                items.iter().map(|p| &p.event),
            );
            let rejected: Vec<(u64, Rejection)> = refused
                .into_iter()
                .map(|(Entry { seq, event }, error)| (seq, Rejection { event, error }))
                .collect();
            self.report_outcome(0, 0, &[], rejected);
        }
        let first_seq = items.first().map_or(0, |p| p.seq);
        let len = items.len();
        self.set_in_flight(items);
        Input::Taken { len, first_seq }
    }

    /// A 200 answer for the batch in flight.
    fn delivered(&mut self, answer: IngestAnswer) {
        let items = std::mem::take(&mut self.in_flight);
        let n = items.len();
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
            .ack(items.iter().map(|p| p.event.id), std::iter::empty());
        let rejections: Vec<(u64, Rejection)> = rejected
            .into_iter()
            .map(|(i, error)| {
                let p = &items[i];
                (
                    p.seq,
                    Rejection {
                        event: p.event.clone(),
                        error,
                    },
                )
            })
            .collect();
        let delivered_seqs: Vec<u64> = items
            .iter()
            .zip(&is_rejected)
            .filter(|(_, rej)| !**rej)
            .map(|(p, _)| p.seq)
            .collect();
        self.set_in_flight(Vec::new());
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
        for w in self.waiters.values_mut() {
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

    /// Gives up on the batch in flight.
    fn fail(&mut self, error: DeliveryError, attempts: u32) {
        let items = std::mem::take(&mut self.in_flight);
        let refusal = refusal_cause(&error);
        match refusal {
            Some((cause, what)) if self.refusals.first(cause.clone()) => {
                tracing::warn!(
                    events = items.len(),
                    "tally-sdk: {what}: {error} (logged once per cause)"
                );
            }
            _ => tracing::debug!(events = items.len(), %error, "tally-sdk: giving up on a batch"),
        }
        Counters::add(&self.queue.counters.failed, items.len());
        // A durable queue keeps what may still be delivered later.
        let keep_on_disk = error.is_retryable() || error == DeliveryError::Abandoned;
        if !keep_on_disk {
            self.queue
                .ack(items.iter().map(|p| p.event.id), std::iter::empty());
        }
        self.set_in_flight(Vec::new());
        let entries: Vec<(u64, WireEvent)> = items.into_iter().map(|p| (p.seq, p.event)).collect();
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
        for w in self.waiters.values_mut() {
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

    fn set_in_flight(&mut self, items: Vec<Prepared>) {
        self.queue
            .counters
            .in_flight
            .store(items.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.in_flight = items;
    }

    /// Answers a waiter. An `expired` one is told what is still pending.
    fn answer(&mut self, id: WaiterId, expired: bool, last_error: Option<DeliveryError>) {
        let Some(mut w) = self.waiters.remove(&id) else {
            return;
        };
        if expired {
            w.report.pending = self
                .in_flight
                .iter()
                .filter(|p| p.seq <= w.marker)
                .map(|p| p.event.clone())
                .chain(self.queue.pending_upto(w.marker))
                .collect();
            if w.report.last_error.is_none() {
                w.report.last_error = last_error;
            }
            w.report.timed_out = true;
        }
        (w.reply)(w.report);
    }

    /// The shutdown deadline passed: drop the request in flight and give up
    /// on everything still pending.
    fn abandon(&mut self, last_error: Option<DeliveryError>, attempts: u32) {
        self.request = None;
        let mut entries: Vec<(u64, WireEvent)> = std::mem::take(&mut self.in_flight)
            .into_iter()
            .map(|p| (p.seq, p.event))
            .collect();
        let attempts = if entries.is_empty() { 0 } else { attempts };
        entries.extend(self.queue.drain().into_iter().map(|e| (e.seq, e.event)));
        self.set_in_flight(Vec::new());
        Counters::add(&self.queue.counters.failed, entries.len());
        for w in self.waiters.values_mut() {
            w.report.timed_out = true;
        }
        if !entries.is_empty() {
            tracing::debug!(
                events = entries.len(),
                "tally-sdk: shutdown deadline passed with events undelivered"
            );
            let last = last_error.unwrap_or(DeliveryError::Abandoned);
            self.settle_failed(entries, DeliveryError::Abandoned, attempts, true);
            for w in self.waiters.values_mut() {
                w.report.last_error = Some(last.clone());
            }
        }
    }

    fn report_drops(&mut self) {
        if self.callback.is_none() {
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
        if let Some(cb) = &self.callback {
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
