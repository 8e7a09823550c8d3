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
                    // Nobody waits for this one: an id the worker never
                    // hands out, whose answer it ignores.
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

#[cfg(test)]
mod tests {
    //! The core under made-up times: every test starts at `t0` and moves
    //! the clock by adding to it, so nothing sleeps and nothing is flaky.

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> Policy {
        Policy {
            batch_size: 3,
            flush_interval: 1000 * MS,
            shutdown_timeout: 5000 * MS,
            max_retries: 3,
            retry_forever: false,
            backoff: Backoff::new(100 * MS, 1000 * MS),
        }
    }

    /// `len` events queued, numbered `front..front + len`.
    fn queued(front: u64, len: usize) -> QueueView {
        QueueView {
            front: (len > 0).then_some(front),
            len,
            last: front + len as u64 - u64::from(len > 0),
        }
    }

    fn empty(last: u64) -> QueueView {
        QueueView {
            front: None,
            len: 0,
            last,
        }
    }

    fn server_error() -> Outcome {
        Outcome::Retry {
            error: DeliveryError::Status {
                status: 503,
                message: "busy".into(),
            },
            after: None,
        }
    }

    fn refused(status: u16) -> Outcome {
        Outcome::Fail(DeliveryError::Status {
            status,
            message: "no".into(),
        })
    }

    fn ok(accepted: usize) -> Outcome {
        Outcome::Answer(IngestAnswer {
            accepted,
            ..IngestAnswer::default()
        })
    }

    /// A core with one batch of `len` events (numbered from 1) taken and
    /// its first request sent, at `t0`.
    fn sending(policy: Policy, len: usize, t0: Instant) -> Core {
        let mut core = Core::new(policy, len as u64, t0, 7);
        let a = core.on(Input::Wake, queued(1, len), t0);
        assert!(matches!(a[..], [Action::Take { .. }]), "{a:?}");
        let a = core.on(Input::Taken { len, first_seq: 1 }, empty(len as u64), t0);
        assert!(matches!(a[..], [Action::Send { attempt: 0 }]), "{a:?}");
        core
    }

    #[test]
    fn a_full_batch_goes_at_once_and_a_partial_one_after_the_interval() {
        let t0 = Instant::now();
        let mut core = Core::new(policy(), 0, t0, 1);
        // Two of three: nothing until the flush interval elapses.
        assert!(core.on(Input::Wake, queued(1, 2), t0).is_empty());
        assert_eq!(core.next_wake(), Some(t0 + 1000 * MS));
        assert!(core.on(Input::Wake, queued(1, 2), t0 + 999 * MS).is_empty());
        let a = core.on(Input::Wake, queued(1, 2), t0 + 1000 * MS);
        assert!(
            matches!(a[..], [Action::SyncLog, Action::Take { max: 3 }]),
            "{a:?}"
        );

        // A third event fills the batch: taken without waiting.
        let mut core = Core::new(policy(), 0, t0, 1);
        assert!(core.on(Input::Wake, queued(1, 2), t0).is_empty());
        let a = core.on(Input::Wake, queued(1, 3), t0 + 10 * MS);
        assert!(matches!(a[..], [Action::Take { max: 3 }]), "{a:?}");
        let a = core.on(
            Input::Taken {
                len: 3,
                first_seq: 1,
            },
            empty(3),
            t0 + 10 * MS,
        );
        assert!(matches!(a[..], [Action::Send { attempt: 0 }]), "{a:?}");
        // While a batch is in flight the interval does not wake the sender.
        assert_eq!(core.next_wake(), None);
        assert!(!core.is_idle());
    }

    #[test]
    fn events_refused_locally_make_an_empty_take_and_the_next_batch_follows() {
        let t0 = Instant::now();
        let mut core = Core::new(policy(), 0, t0, 1);
        let a = core.on(Input::Wake, queued(1, 5), t0);
        assert!(matches!(a[..], [Action::Take { max: 3 }]), "{a:?}");
        // All three refused: the next three are taken at once.
        let none = Input::Taken {
            len: 0,
            first_seq: 0,
        };
        let a = core.on(none, queued(4, 3), t0);
        assert!(matches!(a[..], [Action::Take { max: 3 }]), "{a:?}");
        // Those refused too: the last two wait for the interval.
        let none = Input::Taken {
            len: 0,
            first_seq: 0,
        };
        let a = core.on(none, queued(7, 2), t0);
        assert!(a.is_empty(), "{a:?}");
        assert!(core.is_idle());
    }

    #[test]
    fn recovered_events_go_out_at_once() {
        let t0 = Instant::now();
        let mut core = Core::new(policy(), 2, t0, 1);
        let a = core.on(Input::Wake, queued(1, 2), t0);
        assert!(matches!(a[..], [Action::Take { max: 3 }]), "{a:?}");
    }

    /// Drives retries of one batch until the core gives up; returns the
    /// wait before each retry.
    fn retry_schedule(seed: u64) -> (Vec<Duration>, u32) {
        let t0 = Instant::now();
        let mut core = sending(policy(), 3, t0);
        core.rng = StdRng::seed_from_u64(seed);
        let mut now = t0;
        let mut waits = Vec::new();
        loop {
            now += 50 * MS; // the request's round trip
            let a = core.on(Input::Sent(server_error()), empty(3), now);
            match &a[..] {
                [Action::Backoff { at, attempt, error }] => {
                    assert_eq!(*attempt as usize, waits.len() + 1);
                    assert_eq!(error.status(), Some(503));
                    assert_eq!(core.next_wake(), Some(*at));
                    let wait = *at - now;
                    waits.push(wait);
                    // Nothing before the backoff ends ...
                    if !wait.is_zero() {
                        let early = core.on(Input::Wake, empty(3), *at - Duration::from_nanos(1));
                        assert!(early.is_empty(), "{early:?}");
                    }
                    // ... then the same batch again.
                    now = *at;
                    let a = core.on(Input::Wake, empty(3), now);
                    assert!(
                        matches!(a[..], [Action::Send { attempt: n }] if n as usize == waits.len()),
                        "{a:?}"
                    );
                }
                [Action::Fail { error, attempts }] => {
                    assert_eq!(error.status(), Some(503));
                    return (waits, *attempts);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn retries_back_off_with_full_jitter_then_give_up() {
        let backoff = policy().backoff;
        for seed in 0..50 {
            let (waits, attempts) = retry_schedule(seed);
            // max_retries 3: four requests, three waits.
            assert_eq!(attempts, 4);
            assert_eq!(waits.len(), 3);
            for (n, wait) in waits.iter().enumerate() {
                // Retry n waits in [0, min(max, base × 2ⁿ)].
                assert!(*wait <= backoff.ceiling(n as u32), "seed {seed}: {waits:?}");
            }
            // The jitter is the seed's: the same seed, the same schedule.
            assert_eq!(retry_schedule(seed), (waits, attempts));
        }
    }

    #[test]
    fn zero_retries_give_up_after_one_request() {
        let t0 = Instant::now();
        let mut core = sending(
            Policy {
                max_retries: 0,
                ..policy()
            },
            3,
            t0,
        );
        let a = core.on(Input::Sent(server_error()), empty(3), t0 + MS);
        assert!(matches!(a[..], [Action::Fail { attempts: 1, .. }]), "{a:?}");
        assert!(core.is_idle());
    }

    #[test]
    fn a_durable_queue_retries_without_limit() {
        let t0 = Instant::now();
        let mut core = sending(
            Policy {
                retry_forever: true,
                ..policy()
            },
            3,
            t0,
        );
        let mut now = t0;
        for attempt in 1..100 {
            let a = core.on(Input::Sent(server_error()), empty(3), now);
            let [Action::Backoff { at, .. }] = a[..] else {
                panic!("{a:?}")
            };
            // The ceiling stops growing at the backoff's max.
            assert!(at - now <= 1000 * MS);
            now = at;
            let a = core.on(Input::Wake, empty(3), now);
            assert!(
                matches!(a[..], [Action::Send { attempt: n }] if n == attempt),
                "{a:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_and_never_below_the_base() {
        let t0 = Instant::now();
        let mut core = sending(policy(), 3, t0);
        let too_many = |after| {
            Input::Sent(Outcome::Retry {
                error: DeliveryError::Status {
                    status: 429,
                    message: "slow down".into(),
                },
                after: Some(after),
            })
        };
        let a = core.on(too_many(2000 * MS), empty(3), t0);
        // Above the backoff's max (1 s): the collector knows best.
        assert!(
            matches!(a[..], [Action::Backoff { at, .. }] if at == t0 + 2000 * MS),
            "{a:?}"
        );
        assert!(core.on(Input::Wake, empty(3), t0 + 1999 * MS).is_empty());
        let now = t0 + 2000 * MS;
        let a = core.on(Input::Wake, empty(3), now);
        assert!(matches!(a[..], [Action::Send { attempt: 1 }]), "{a:?}");
        // `Retry-After: 0` waits the base, not a hot loop.
        let a = core.on(too_many(Duration::ZERO), empty(3), now);
        assert!(
            matches!(a[..], [Action::Backoff { at, .. }] if at == now + 100 * MS),
            "{a:?}"
        );
    }

    #[test]
    fn permanent_refusals_fail_at_once_and_413_halves_the_batch() {
        for status in [400, 401, 403, 404, 422] {
            let t0 = Instant::now();
            let mut core = sending(policy(), 3, t0);
            let a = core.on(Input::Sent(refused(status)), empty(3), t0 + MS);
            match &a[..] {
                [Action::Fail { error, attempts: 1 }] => assert_eq!(error.status(), Some(status)),
                other => panic!("{status}: {other:?}"),
            }
            assert!(core.is_idle());
        }

        // 413: halve until one event is left, then give up on it.
        let t0 = Instant::now();
        let mut core = sending(policy(), 3, t0);
        let a = core.on(Input::Sent(refused(413)), empty(3), t0);
        assert!(
            matches!(
                a[..],
                [Action::Split { keep: 1 }, Action::Send { attempt: 1 }]
            ),
            "{a:?}"
        );
        let a = core.on(Input::Sent(refused(413)), queued(2, 2), t0);
        assert!(
            matches!(
                a[..],
                [Action::Fail { attempts: 2, .. }, Action::Take { max: 3 }]
            ),
            "the rest is taken once the first fails: {a:?}"
        );
    }

    #[test]
    fn a_flush_sends_at_once_and_is_answered_when_its_events_settle() {
        let t0 = Instant::now();
        let mut core = Core::new(policy(), 0, t0, 1);
        assert!(core.on(Input::Wake, queued(1, 2), t0).is_empty());
        let flush = Input::Flush {
            id: 1,
            marker: 2,
            deadline: t0 + 5000 * MS,
        };
        let a = core.on(flush, queued(1, 2), t0 + 10 * MS);
        assert!(matches!(a[..], [Action::Take { max: 3 }]), "{a:?}");
        let a = core.on(
            Input::Taken {
                len: 2,
                first_seq: 1,
            },
            empty(2),
            t0 + 10 * MS,
        );
        assert!(matches!(a[..], [Action::Send { attempt: 0 }]), "{a:?}");
        // An event tracked after the flush does not hold it up.
        let a = core.on(Input::Sent(ok(2)), queued(3, 1), t0 + 60 * MS);
        assert!(
            matches!(
                a[..],
                [
                    Action::Delivered(_),
                    Action::Answer {
                        id: 1,
                        expired: false,
                        ..
                    }
                ]
            ),
            "{a:?}"
        );
        // Nothing waits any more: the interval is the next wake-up.
        assert_eq!(core.next_wake(), Some(t0 + 1000 * MS));
    }

    #[test]
    fn a_flush_with_nothing_pending_is_answered_at_once() {
        let t0 = Instant::now();
        let mut core = Core::new(policy(), 0, t0, 1);
        let flush = Input::Flush {
            id: 4,
            marker: 0,
            deadline: t0 + MS,
        };
        let a = core.on(flush, empty(0), t0);
        assert!(
            matches!(
                a[..],
                [Action::Answer {
                    id: 4,
                    expired: false,
                    ..
                }]
            ),
            "{a:?}"
        );
    }

    #[test]
    fn a_flush_times_out_during_retries_with_the_last_error() {
        let t0 = Instant::now();
        let mut core = sending(policy(), 3, t0);
        let flush = Input::Flush {
            id: 9,
            marker: 3,
            deadline: t0 + 300 * MS,
        };
        assert!(core.on(flush, empty(3), t0).is_empty());
        let a = core.on(Input::Sent(server_error()), empty(3), t0 + 250 * MS);
        assert!(matches!(a[..], [Action::Backoff { .. }]), "{a:?}");
        // The deadline comes before the backoff ends (at most 100 ms later).
        assert!(core.next_wake().is_some_and(|at| at <= t0 + 300 * MS));
        let a = core.on(Input::Wake, empty(3), t0 + 300 * MS);
        let expired = a.iter().find_map(|a| match a {
            Action::Answer {
                id: 9,
                expired: true,
                last_error,
            } => Some(last_error.clone()),
            _ => None,
        });
        assert_eq!(
            expired.flatten().and_then(|e| e.status()),
            Some(503),
            "{a:?}"
        );
        // The batch is still retried for later.
        assert!(!core.is_idle());
    }

    #[test]
    fn shutdown_delivers_what_is_pending_then_stops() {
        let t0 = Instant::now();
        let mut core = Core::new(policy(), 0, t0, 1);
        let shutdown = Input::Shutdown {
            id: 1,
            deadline: t0 + 5000 * MS,
        };
        let a = core.on(shutdown, queued(1, 1), t0);
        assert!(
            matches!(a[..], [Action::Close, Action::Take { max: 3 }]),
            "{a:?}"
        );
        let a = core.on(
            Input::Taken {
                len: 1,
                first_seq: 1,
            },
            empty(1),
            t0,
        );
        assert!(matches!(a[..], [Action::Send { attempt: 0 }]), "{a:?}");
        // A second shutdown meanwhile is answered with the first.
        let again = Input::Shutdown {
            id: 2,
            deadline: t0 + 5000 * MS,
        };
        assert!(core.on(again, empty(1), t0).is_empty());
        let a = core.on(Input::Sent(ok(1)), empty(1), t0 + 20 * MS);
        let answered: Vec<WaiterId> = a
            .iter()
            .filter_map(|a| match a {
                Action::Answer { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(answered, [2, 1], "{a:?}");
        assert!(matches!(a.last(), Some(Action::Stop)));
        assert!(core.is_done());
        assert!(core.on(Input::Wake, empty(1), t0 + 30 * MS).is_empty());
    }

    #[test]
    fn shutdown_abandons_pending_retries_at_its_deadline() {
        let t0 = Instant::now();
        let mut core = sending(policy(), 3, t0);
        let shutdown = Input::Shutdown {
            id: 1,
            deadline: t0 + 150 * MS,
        };
        let a = core.on(shutdown, queued(4, 1), t0);
        assert!(matches!(a[..], [Action::Close]), "{a:?}");
        let a = core.on(
            Input::Sent(Outcome::Retry {
                error: DeliveryError::Timeout,
                after: Some(1000 * MS),
            }),
            queued(4, 1),
            t0 + 100 * MS,
        );
        assert!(matches!(a[..], [Action::Backoff { .. }]), "{a:?}");
        // The deadline comes first: wake then, and give up on everything.
        assert_eq!(core.next_wake(), Some(t0 + 150 * MS));
        let a = core.on(Input::Wake, queued(4, 1), t0 + 150 * MS);
        match &a[..] {
            [
                Action::Abandon {
                    last_error: Some(DeliveryError::Timeout),
                    attempts: 1,
                },
                Action::SyncLog,
                Action::Answer {
                    id: 1,
                    expired: false,
                    ..
                },
                Action::Stop,
            ] => {}
            other => panic!("{other:?}"),
        }
        assert!(core.is_done());
    }

    #[test]
    fn dropping_every_handle_gives_the_shutdown_timeout() {
        let t0 = Instant::now();
        let mut core = Core::new(policy(), 0, t0, 1);
        assert!(core.on(Input::Wake, queued(1, 1), t0).is_empty());
        let a = core.on(Input::Closed, queued(1, 1), t0);
        assert!(
            matches!(a[..], [Action::Close, Action::Take { max: 3 }]),
            "{a:?}"
        );
        let a = core.on(
            Input::Taken {
                len: 1,
                first_seq: 1,
            },
            empty(1),
            t0,
        );
        assert!(matches!(a[..], [Action::Send { attempt: 0 }]), "{a:?}");
        assert_eq!(core.next_wake(), Some(t0 + 5000 * MS));
        let a = core.on(Input::Wake, empty(1), t0 + 5000 * MS);
        assert!(
            matches!(
                a[..],
                [
                    Action::Abandon { .. },
                    Action::SyncLog,
                    Action::Answer { .. },
                    Action::Stop
                ]
            ),
            "{a:?}"
        );
    }

    #[test]
    fn huge_timeouts_saturate() {
        let t0 = Instant::now();
        assert!(later(t0, Duration::MAX) > t0 + Duration::from_secs(365 * 86_400));
    }
}
