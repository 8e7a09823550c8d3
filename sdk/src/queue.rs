//! The bounded queue between `track` (app threads) and the background
//! sender, and the delivery counters.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tally_event::WireEvent;
use tokio::sync::Notify;

use crate::types::{DropPolicy, TrackError};

/// Delivery counters, from [`Client::stats`](crate::Client::stats).
///
/// Every event that [`Track::send`](crate::Track::send) accepts is counted
/// once in `queued` and ends in exactly one of `accepted`, `duplicates`,
/// `rejected`, `dropped` or `failed`, or is still `pending`:
///
/// `queued == accepted + duplicates + rejected + dropped + failed + pending`
///
/// (up to the instant a batch moves between them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Events taken by `send` (including those dropped at once because the
    /// queue was full or the client shut down), plus those recovered from a
    /// durable queue.
    pub queued: u64,
    /// Events put on the wire at least once.
    pub sent: u64,
    /// Events the collector stored.
    pub accepted: u64,
    /// Events the collector already had (a retried request whose first
    /// answer was lost); stored once all the same.
    pub duplicates: u64,
    /// Events refused by the collector, or by the SDK for breaking a rule
    /// only checked at send time (properties size and depth).
    pub rejected: u64,
    /// Events discarded because the queue was full, or tracked after
    /// shutdown.
    pub dropped: u64,
    /// Events given up on: a non-retryable error, retries exhausted, or the
    /// shutdown deadline passed.
    pub failed: u64,
    /// HTTP requests that were retries.
    pub retries: u64,
    /// HTTP requests made, retries included.
    pub requests: u64,
    /// Events refused by `send` as invalid (not counted in `queued`).
    pub invalid: u64,
    /// Events recovered from a durable queue at start (included in `queued`).
    pub recovered: u64,
    /// Events queued or in flight right now.
    pub pending: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    queued: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) requests: AtomicU64,
    invalid: AtomicU64,
    recovered: AtomicU64,
    pub(crate) in_flight: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn add_invalid(&self) {
        self.invalid.fetch_add(1, Relaxed);
    }
}

/// A queued event and its sequence number (from 1, in queue order).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) event: WireEvent,
}

#[derive(Debug)]
pub(crate) struct Queue {
    inner: Mutex<Inner>,
    /// Wakes the sender when a full batch is ready.
    pub(crate) notify: Notify,
    pub(crate) counters: Counters,
    capacity: usize,
    wake_at: usize,
    policy: DropPolicy,
}

#[derive(Debug)]
struct Inner {
    items: VecDeque<Entry>,
    next_seq: u64,
    closed: bool,
    #[cfg(feature = "durable")]
    log: Option<crate::durable::Log>,
}

impl Queue {
    pub(crate) fn new(capacity: usize, batch_size: usize, policy: DropPolicy) -> Self {
        Queue {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                next_seq: 1,
                closed: false,
                #[cfg(feature = "durable")]
                log: None,
            }),
            notify: Notify::new(),
            counters: Counters::default(),
            capacity,
            wake_at: batch_size.min(capacity),
            policy,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; if something ever did, the
        // queue itself is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends an event, applying the drop policy when full. The only work
    /// `track` does besides building the event.
    pub(crate) fn push(&self, event: WireEvent) -> Result<(), TrackError> {
        let c = &self.counters;
        let mut q = self.lock();
        c.queued.fetch_add(1, Relaxed);
        if q.closed {
            c.dropped.fetch_add(1, Relaxed);
            return Err(TrackError::Closed);
        }
        if q.items.len() >= self.capacity {
            match self.policy {
                DropPolicy::Newest => {
                    c.dropped.fetch_add(1, Relaxed);
                    return Err(TrackError::QueueFull);
                }
                DropPolicy::Oldest => {
                    let _evicted = q.items.pop_front();
                    c.dropped.fetch_add(1, Relaxed);
                    #[cfg(feature = "durable")]
                    if let (Some(log), Some(old)) = (q.log.as_mut(), &_evicted) {
                        log.ack(old.event.id);
                    }
                }
            }
        }
        #[cfg(feature = "durable")]
        if let Some(log) = q.log.as_mut() {
            log.append(&event);
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        q.items.push_back(Entry { seq, event });
        let len = q.items.len();
        drop(q);
        if len == self.wake_at {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Up to `n` events from the front.
    pub(crate) fn take(&self, n: usize) -> Vec<Entry> {
        let mut q = self.lock();
        let n = n.min(q.items.len());
        q.items.drain(..n).collect()
    }

    /// Returns events taken but not sent to the front, in order.
    pub(crate) fn put_back(&self, entries: Vec<Entry>) {
        let mut q = self.lock();
        for e in entries.into_iter().rev() {
            q.items.push_front(e);
        }
    }

    /// Everything queued, for shutdown.
    pub(crate) fn drain(&self) -> Vec<Entry> {
        self.lock().items.drain(..).collect()
    }

    /// Copies of the queued events with `seq <= marker`.
    pub(crate) fn pending_upto(&self, marker: u64) -> Vec<WireEvent> {
        self.lock()
            .items
            .iter()
            .take_while(|e| e.seq <= marker)
            .map(|e| e.event.clone())
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Sequence number of the front event.
    pub(crate) fn front_seq(&self) -> Option<u64> {
        self.lock().items.front().map(|e| e.seq)
    }

    /// Sequence number of the last event ever queued (0 if none).
    pub(crate) fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// Refuses further events.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// Settles events in the durable log (delivered, rejected, given up on
    /// for good). `in_flight` are the events the sender still holds: when
    /// neither they nor the queue hold anything, the log is emptied.
    #[cfg(feature = "durable")]
    pub(crate) fn ack<'a>(
        &self,
        ids: impl IntoIterator<Item = Option<uuid::Uuid>>,
        in_flight: impl Iterator<Item = &'a WireEvent> + Clone,
    ) {
        let mut q = self.lock();
        let q = &mut *q;
        let Some(log) = q.log.as_mut() else { return };
        log.ack_all(ids);
        if q.items.is_empty() && in_flight.clone().next().is_none() {
            log.clear();
        } else if log.is_large() {
            let mut live: Vec<&WireEvent> = in_flight.collect();
            live.extend(q.items.iter().map(|e| &e.event));
            log.compact(live.into_iter());
        }
    }

    #[cfg(not(feature = "durable"))]
    pub(crate) fn ack<'a>(
        &self,
        _ids: impl IntoIterator<Item = Option<uuid::Uuid>>,
        _in_flight: impl Iterator<Item = &'a WireEvent> + Clone,
    ) {
    }

    /// A handle to fsync the durable log outside the lock.
    #[cfg(feature = "durable")]
    pub(crate) fn log_sync_handle(&self) -> Option<std::fs::File> {
        self.lock()
            .log
            .as_ref()
            .and_then(crate::durable::Log::sync_handle)
    }

    /// Installs the durable log and queues what it recovered, applying the
    /// drop policy if it holds more than the capacity.
    #[cfg(feature = "durable")]
    pub(crate) fn attach_log(&self, mut log: crate::durable::Log, recovered: Vec<WireEvent>) {
        let c = &self.counters;
        let mut q = self.lock();
        let total = recovered.len();
        let excess = total.saturating_sub(self.capacity);
        let (dropped, kept): (Vec<_>, Vec<_>) = match self.policy {
            DropPolicy::Newest => {
                let mut kept = recovered;
                let dropped = kept.split_off(total - excess);
                (dropped, kept)
            }
            DropPolicy::Oldest => {
                let mut dropped = recovered;
                let kept = dropped.split_off(excess);
                (dropped, kept)
            }
        };
        if !dropped.is_empty() {
            log.ack_all(dropped.iter().map(|e| e.id));
        }
        Counters::add(&c.queued, total);
        Counters::add(&c.recovered, total);
        Counters::add(&c.dropped, dropped.len());
        for event in kept {
            let seq = q.next_seq;
            q.next_seq += 1;
            q.items.push_back(Entry { seq, event });
        }
        q.log = Some(log);
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        let queued_now = self.len() as u64;
        Stats {
            queued: c.queued.load(Relaxed),
            sent: c.sent.load(Relaxed),
            accepted: c.accepted.load(Relaxed),
            duplicates: c.duplicates.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            failed: c.failed.load(Relaxed),
            retries: c.retries.load(Relaxed),
            requests: c.requests.load(Relaxed),
            invalid: c.invalid.load(Relaxed),
            recovered: c.recovered.load(Relaxed),
            pending: queued_now + c.in_flight.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn ev(n: u32) -> WireEvent {
        WireEvent {
            id: Some(Uuid::now_v7()),
            event: format!("e{n}"),
            user_id: Some("u".into()),
            ..WireEvent::default()
        }
    }

    fn names(entries: &[Entry]) -> Vec<String> {
        entries.iter().map(|e| e.event.event.clone()).collect()
    }

    #[test]
    fn drop_newest_refuses_and_counts() {
        let q = Queue::new(3, 100, DropPolicy::Newest);
        for i in 0..5 {
            let r = q.push(ev(i));
            assert_eq!(r.is_ok(), i < 3, "event {i}");
            if i >= 3 {
                assert_eq!(r, Err(TrackError::QueueFull));
            }
        }
        let s = q.stats();
        assert_eq!((s.queued, s.dropped, s.pending), (5, 2, 3));
        assert_eq!(names(&q.drain()), ["e0", "e1", "e2"]);
    }

    #[test]
    fn drop_oldest_evicts_and_counts() {
        let q = Queue::new(3, 100, DropPolicy::Oldest);
        for i in 0..5 {
            assert!(q.push(ev(i)).is_ok());
        }
        let s = q.stats();
        assert_eq!((s.queued, s.dropped, s.pending), (5, 2, 3));
        assert_eq!(names(&q.drain()), ["e2", "e3", "e4"]);
    }

    #[test]
    fn closed_queue_drops() {
        let q = Queue::new(3, 100, DropPolicy::Oldest);
        q.push(ev(0)).unwrap();
        q.close();
        assert_eq!(q.push(ev(1)), Err(TrackError::Closed));
        let s = q.stats();
        assert_eq!((s.queued, s.dropped, s.pending), (2, 1, 1));
    }

    #[test]
    fn sequence_numbers_and_put_back_keep_order() {
        let q = Queue::new(10, 100, DropPolicy::Newest);
        for i in 0..6 {
            q.push(ev(i)).unwrap();
        }
        assert_eq!((q.front_seq(), q.last_seq()), (Some(1), 6));
        let mut taken = q.take(4);
        assert_eq!(
            taken.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        let rest = taken.split_off(2);
        q.put_back(rest);
        assert_eq!(q.front_seq(), Some(3));
        assert_eq!(q.pending_upto(4).len(), 2);
        assert_eq!(names(&q.drain()), ["e2", "e3", "e4", "e5"]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push,
        Take(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![4 => Just(Op::Push), 1 => (1usize..8).prop_map(Op::Take)]
    }

    proptest! {
        /// The queue against a model: a VecDeque with the same capacity and
        /// policy. Same contents, same drop count, conservation holds.
        #[test]
        fn queue_matches_model(
            capacity in 1usize..12,
            oldest: bool,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let policy = if oldest { DropPolicy::Oldest } else { DropPolicy::Newest };
            let q = Queue::new(capacity, 4, policy);
            let mut model: VecDeque<u32> = VecDeque::new();
            let (mut dropped, mut taken_total, mut next) = (0u64, 0u64, 0u32);
            for op in ops {
                match op {
                    Op::Push => {
                        let r = q.push(ev(next));
                        if model.len() >= capacity {
                            dropped += 1;
                            if oldest {
                                model.pop_front();
                                model.push_back(next);
                                prop_assert!(r.is_ok());
                            } else {
                                prop_assert_eq!(r, Err(TrackError::QueueFull));
                            }
                        } else {
                            model.push_back(next);
                            prop_assert!(r.is_ok());
                        }
                        next += 1;
                    }
                    Op::Take(n) => {
                        let got = q.take(n);
                        let want: Vec<u32> = (0..n.min(model.len())).filter_map(|_| model.pop_front()).collect();
                        let got_names = names(&got);
                        let want_names: Vec<String> = want.iter().map(|i| format!("e{i}")).collect();
                        prop_assert_eq!(got_names, want_names);
                        prop_assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
                        taken_total += got.len() as u64;
                    }
                }
                prop_assert!(q.len() <= capacity);
                let s = q.stats();
                prop_assert_eq!(s.dropped, dropped);
                prop_assert_eq!(s.queued, u64::from(next));
                prop_assert_eq!(s.queued, taken_total + s.dropped + s.pending);
            }
        }
    }
}
