//! The sender's state machine, without I/O: when to take a batch from the
//! queue, when to send it, whether and when to retry, when to give up, and
//! when each flush or shutdown is answered.
//!
//! [`Core::on`] takes one [`Input`] (a command, a request's outcome, or a
//! plain wake-up), what the queue holds ([`QueueView`]) and the current
//! time, and returns the [`Action`]s to carry out, in order. It never reads
//! a clock, sleeps, or touches the queue or the network: the async
//! [`Worker`](crate::worker::Worker) does that and feeds the results back,
//! and the tests below drive it with made-up times.
//!
//! The core knows the batch in flight only by its size and its oldest
//! sequence number; the events themselves, and the reports built from
//! them, stay with the worker.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tally_event::IngestAnswer;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::report::DeliveryError;

/// The outcome of one request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A 200 answer.
    Answer(IngestAnswer),
    /// Worth retrying (connection error, timeout, `5xx`, `429`), after at
    /// least `after` if the collector said so (`Retry-After`).
    Retry {
        error: DeliveryError,
        after: Option<Duration>,
    },
    /// Not worth retrying (`400`, `401`, `413`, an unreadable answer).
    Fail(DeliveryError),
}

/// Identifies a flush or shutdown caller waiting for its events.
pub(crate) type WaiterId = u64;

/// What woke the sender.
#[derive(Debug)]
pub(crate) enum Input {
    /// A timer fired, or events were queued: only the time and the queue
    /// have changed.
    Wake,
    /// Deliver every event with `seq <= marker` by `deadline`.
    Flush {
        id: WaiterId,
        marker: u64,
        deadline: Instant,
    },
    /// Deliver everything by `deadline`, then stop.
    Shutdown { id: WaiterId, deadline: Instant },
    /// Every handle is gone: deliver what can be delivered within the
    /// shutdown timeout, then stop.
    Closed,
    /// The worker took a batch after [`Action::Take`]: `len` events (0 if
    /// every one was refused locally), the oldest numbered `first_seq`.
    Taken { len: usize, first_seq: u64 },
    /// The request in flight finished.
    Sent(Outcome),
}

/// What the queue holds, as seen by the worker just before a step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QueueView {
    /// Sequence number of the oldest queued event.
    pub(crate) front: Option<u64>,
    /// Events queued.
    pub(crate) len: usize,
    /// Sequence number of the newest event ever queued.
    pub(crate) last: u64,
}

/// What the worker must do.
#[derive(Debug)]
pub(crate) enum Action {
    /// Take up to `max` events from the queue as the next batch, and
    /// answer with [`Input::Taken`]. Always the last action of a step.
    Take { max: usize },
    /// Send the batch in flight; `attempt` counts from 0.
    Send { attempt: u32 },
    /// The batch in flight failed and will be sent again at `at`.
    Backoff {
        at: Instant,
        attempt: u32,
        error: DeliveryError,
    },
    /// The collector answered the batch in flight: it is settled.
    Delivered(IngestAnswer),
    /// Give up on the batch in flight.
    Fail { error: DeliveryError, attempts: u32 },
    /// `413`: keep the first `keep` events of the batch in flight, put the
    /// rest back at the front of the queue, and send again.
    Split { keep: usize },
    /// Stop accepting events.
    Close,
    /// Sync the durable log (every flush interval, and before stopping).
    SyncLog,
    /// Answer a waiter. When `expired`, its deadline passed first: what it
    /// waits for is still pending, and `last_error` is the batch in
    /// flight's last failure.
    Answer {
        id: WaiterId,
        expired: bool,
        last_error: Option<DeliveryError>,
    },
    /// The shutdown deadline passed: drop the request in flight, and give
    /// up on the batch in flight (whose last failure was `last_error`,
    /// after `attempts` requests) and on everything queued.
    Abandon {
        last_error: Option<DeliveryError>,
        attempts: u32,
    },
    /// Done: every waiter has been answered.
    Stop,
}

/// The sender's settings.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) batch_size: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) max_retries: u32,
    /// Durable queues never give up on retryable failures.
    pub(crate) retry_forever: bool,
    pub(crate) backoff: Backoff,
}

/// The batch being delivered.
#[derive(Debug)]
struct Batch {
    len: usize,
    first_seq: u64,
    /// Requests made so far.
    attempts: u32,
    /// A request is running.
    sending: bool,
    /// When the next attempt may start (after a backoff).
    next_attempt: Option<Instant>,
    last_error: Option<DeliveryError>,
}

#[derive(Debug, Clone, Copy)]
struct Waiter {
    id: WaiterId,
    marker: u64,
    deadline: Instant,
}

/// The sender's state.
#[derive(Debug)]
pub(crate) struct Core {
    policy: Policy,
    rng: StdRng,
    /// Events with `seq <= send_upto` go out now, without waiting for a
    /// full batch (set by the interval tick, flushes and shutdown).
    send_upto: u64,
    /// When the flush interval next elapses (counted while idle).
    next_tick: Instant,
    batch: Option<Batch>,
    /// A `Take` is outstanding.
    taking: bool,
    flushes: Vec<Waiter>,
    /// Set once shutting down (asked for, or every handle dropped).
    exit: Option<Waiter>,
    done: bool,
}

/// Far enough to mean "never", near enough not to overflow.
const FAR: Duration = Duration::from_secs(10 * 365 * 86_400);

/// `now + d`, saturating far in the future instead of overflowing.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| now + FAR)
}

impl Core {
    /// A sender started at `now`; events up to `recovered` (from a durable
    /// queue) go out at once. `seed` drives the backoff's jitter.
    pub(crate) fn new(policy: Policy, recovered: u64, now: Instant, seed: u64) -> Self {
        Core {
            next_tick: later(now, policy.flush_interval),
            policy,
            rng: StdRng::seed_from_u64(seed),
            send_upto: recovered,
            batch: None,
            taking: false,
            flushes: Vec::new(),
            exit: None,
            done: false,
        }
    }

    /// One step: handles `input`, then does whatever has become due.
    pub(crate) fn on(&mut self, input: Input, queue: QueueView, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.handle(input, now, &mut out);
        if self.done {
            return out;
        }
        if self.expire(now, &mut out) {
            return out;
        }
        self.tick(queue, now, &mut out);
        if self.advance(queue, now, &mut out) {
            // The rest waits for the `Taken` answer.
            return out;
        }
        self.settle(queue, &mut out);
        out
    }

    /// When the sender next has something to do unprompted: a waiter's
    /// deadline, the end of a backoff, or (while idle) the flush interval.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let backoff = self
            .batch
            .as_ref()
            .filter(|b| !b.sending)
            .and_then(|b| b.next_attempt);
        let tick = self.is_idle().then_some(self.next_tick);
        self.flushes
            .iter()
            .chain(&self.exit)
            .map(|w| w.deadline)
            .chain(backoff)
            .chain(tick)
            .min()
    }

    /// No batch in flight: new events in the queue are worth a wake-up.
    pub(crate) fn is_idle(&self) -> bool {
        self.batch.is_none()
    }

    /// Every waiter has been answered; the worker may end.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    fn handle(&mut self, input: Input, now: Instant, out: &mut Vec<Action>) {
        match input {
            Input::Wake => {}
            Input::Flush {
                id,
                marker,
                deadline,
            } => {
                self.send_upto = self.send_upto.max(marker);
                self.flushes.push(Waiter {
                    id,
                    marker,
                    deadline,
                });
            }
            Input::Shutdown { id, deadline } => {
                if self.exit.is_some() {
                    // A concurrent second shutdown: it waits like a flush of
                    // everything, and is answered when the first one is.
                    self.flushes.push(Waiter {
                        id,
                        marker: u64::MAX,
                        deadline,
                    });
                } else {
                    self.begin_exit(id, deadline, out);
                }
            }
            Input::Closed => {
                if self.exit.is_none() {
                    let deadline = later(now, self.policy.shutdown_timeout);
                    self.begin_exit(WaiterId::MAX, deadline, out);
                }
            }
            Input::Taken { len, first_seq } => {
                self.taking = false;
                if len > 0 {
                    self.batch = Some(Batch {
                        len,
                        first_seq,
                        attempts: 0,
                        sending: false,
                        next_attempt: None,
                        last_error: None,
                    });
                }
            }
            Input::Sent(outcome) => self.on_outcome(outcome, now, out),
        }
    }

    fn begin_exit(&mut self, id: WaiterId, deadline: Instant, out: &mut Vec<Action>) {
        out.push(Action::Close);
        self.send_upto = u64::MAX;
        self.exit = Some(Waiter {
            id,
            marker: u64::MAX,
            deadline,
        });
    }

    fn on_outcome(&mut self, outcome: Outcome, now: Instant, out: &mut Vec<Action>) {
        let Some(mut b) = self.batch.take() else {
            return;
        };
        b.sending = false;
        match outcome {
            Outcome::Answer(answer) => out.push(Action::Delivered(answer)),
            Outcome::Retry { error, after } => {
                let retries_done = b.attempts.saturating_sub(1);
                if self.policy.retry_forever || retries_done < self.policy.max_retries {
                    // Retry-After is a floor, and never below the backoff's
                    // base: `Retry-After: 0` must not turn into a hot loop.
                    let backoff = self.policy.backoff;
                    let delay = after.map_or_else(
                        || backoff.delay(retries_done, &mut self.rng),
                        |after| after.max(backoff.base()),
                    );
                    let at = later(now, delay);
                    b.next_attempt = Some(at);
                    b.last_error = Some(error.clone());
                    out.push(Action::Backoff {
                        at,
                        attempt: b.attempts,
                        error,
                    });
                    self.batch = Some(b);
                } else {
                    out.push(Action::Fail {
                        error,
                        attempts: b.attempts,
                    });
                }
            }
            Outcome::Fail(error) if error.status() == Some(413) && b.len > 1 => {
                // Too big for this collector after all: halve and resend.
                let keep = b.len / 2;
                out.push(Action::Split { keep });
                b.len = keep;
                b.next_attempt = None;
                self.batch = Some(b);
            }
            Outcome::Fail(error) => out.push(Action::Fail {
                error,
                attempts: b.attempts,
            }),
        }
    }

    /// Answers the waiters whose deadline has passed; at the shutdown
    /// deadline, abandons everything. True when that stopped the sender.
    fn expire(&mut self, now: Instant, out: &mut Vec<Action>) -> bool {
        if self.exit.is_some_and(|w| w.deadline <= now) {
            let (last_error, attempts) = match self.batch.take() {
                Some(b) => (b.last_error, b.attempts),
                None => (None, 0),
            };
            self.taking = false;
            out.push(Action::Abandon {
                last_error,
                attempts,
            });
            self.finish(out);
            return true;
        }
        let last_error = self.batch.as_ref().and_then(|b| b.last_error.clone());
        self.flushes.retain(|w| {
            if w.deadline > now {
                return true;
            }
            out.push(Action::Answer {
                id: w.id,
                expired: true,
                last_error: last_error.clone(),
            });
            false
        });
        false
    }

    /// The flush interval: while idle, once it elapses, whatever is queued
    /// goes out without waiting for a full batch.
    fn tick(&mut self, queue: QueueView, now: Instant, out: &mut Vec<Action>) {
        if self.is_idle() && now >= self.next_tick {
            self.send_upto = self.send_upto.max(queue.last);
            self.next_tick = later(now, self.policy.flush_interval);
            out.push(Action::SyncLog);
        }
    }

    /// Whether a batch should be taken from the queue now: a full one is
    /// queued, or the oldest queued event is due.
    fn due(&self, queue: QueueView) -> bool {
        queue
            .front
            .is_some_and(|front| front <= self.send_upto || queue.len >= self.policy.batch_size)
    }

    /// Starts whatever can start: takes a batch if one is due, and sends
    /// the batch in flight unless it waits for a backoff. True when a
    /// `Take` was asked for.
    fn advance(&mut self, queue: QueueView, now: Instant, out: &mut Vec<Action>) -> bool {
        if self.taking {
            return true;
        }
        if self.batch.is_none() {
            if self.due(queue) {
                self.taking = true;
                out.push(Action::Take {
                    max: self.policy.batch_size,
                });
                return true;
            }
            return false;
        }
        let Some(b) = &mut self.batch else {
            return false;
        };
        if b.sending || b.next_attempt.is_some_and(|at| at > now) {
            return false;
        }
        b.next_attempt = None;
        b.sending = true;
        out.push(Action::Send {
            attempt: b.attempts,
        });
        b.attempts += 1;
        false
    }

    /// Answers the waiters whose events are all settled.
    fn settle(&mut self, queue: QueueView, out: &mut Vec<Action>) {
        let in_flight = self.batch.as_ref().map(|b| b.first_seq);
        let oldest = match (in_flight, queue.front) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let settled = |w: &Waiter| oldest.is_none_or(|o| o > w.marker);
        self.flushes.retain(|w| {
            if !settled(w) {
                return true;
            }
            out.push(Action::Answer {
                id: w.id,
                expired: false,
                last_error: None,
            });
            false
        });
        if self.exit.as_ref().is_some_and(settled) {
            self.finish(out);
        }
    }

    /// Answers every waiter and stops.
    fn finish(&mut self, out: &mut Vec<Action>) {
        out.push(Action::SyncLog);
        for w in std::mem::take(&mut self.flushes)
            .into_iter()
            .chain(self.exit.take())
        {
            out.push(Action::Answer {
                id: w.id,
                expired: false,
                last_error: None,
            });
        }
        out.push(Action::Stop);
        self.done = true;
    }
}
