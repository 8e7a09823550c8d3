//! Group commit: the one place that calls the store's blocking `append`
//! and `sync`, on dedicated threads, so actix's async workers never block
//! on sled or fsync.
//!
//! Requests queue their validated events on a bounded channel. The append
//! thread takes everything queued (up to a cap) as one commit and hands the
//! result to the sync thread, which fsyncs once for every commit that
//! arrived while the previous fsync ran. A request is answered only after
//! an fsync that covers its events has returned: durability costs latency,
//! not throughput.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use tally_event::Event;
use tokio::sync::{mpsc, oneshot};

use super::{EventStore, Outcome};
use crate::Error;

/// Most events taken into one commit.
const MAX_COMMIT_EVENTS: usize = 50_000;
/// Requests that may wait for the writer before senders are slowed down.
const QUEUE_REQUESTS: usize = 4096;

/// The answer to one submitted request: outcomes in the order submitted.
pub type CommitReply = Result<Vec<Outcome>, Arc<Error>>;

struct Job {
    events: Vec<Event>,
    reply: oneshot::Sender<CommitReply>,
}

enum Msg {
    Job(Job),
    /// Commit what came before, then stop.
    Stop,
}

/// Handle to the writer threads. Cloneable senders live in [`Writer`];
/// [`Writer::shutdown`] drains and syncs what was queued.
pub struct Writer {
    tx: mpsc::Sender<Msg>,
    health: Arc<Health>,
    threads: Vec<JoinHandle<()>>,
    /// Fires once when a writer thread has died.
    died: Option<oneshot::Receiver<()>>,
}

/// A cheap handle for submitting events.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Msg>,
    health: Arc<Health>,
}

/// What `/healthz` reports.
#[derive(Default)]
struct Health {
    /// False after a failed append or sync, until a commit succeeds again.
    writable: AtomicBool,
    /// Set for good when a writer thread panicked: no write can succeed.
    dead: AtomicBool,
    /// Duration of the last fsync of the log, in microseconds.
    last_sync_us: std::sync::atomic::AtomicU64,
}

/// Marks the writer dead if its thread unwinds (a panic), so `/healthz`
/// fails and the collector exits instead of answering 503 forever.
struct DeathWatch {
    health: Arc<Health>,
    died: Arc<parking_lot::Mutex<Option<oneshot::Sender<()>>>>,
}

impl Drop for DeathWatch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.health.dead.store(true, Ordering::SeqCst);
            self.health.writable.store(false, Ordering::SeqCst);
            if let Some(tx) = self.died.lock().take() {
                let _ = tx.send(());
            }
        }
    }
}

impl Writer {
    /// Starts the append and sync threads over `store`.
    pub fn start(store: Arc<dyn EventStore>) -> Self {
        let (tx, rx) = mpsc::channel::<Msg>(QUEUE_REQUESTS);
        let (sync_tx, sync_rx) = std::sync::mpsc::channel::<Pending>();
        let health = Arc::new(Health::default());
        health.writable.store(true, Ordering::SeqCst);
        let (died_tx, died) = oneshot::channel();
        let died_tx = Arc::new(parking_lot::Mutex::new(Some(died_tx)));
        let watch = |health: &Arc<Health>| DeathWatch {
            health: health.clone(),
            died: died_tx.clone(),
        };
        let append = {
            let store = store.clone();
            let watch = watch(&health);
            std::thread::Builder::new()
                .name("tally-append".into())
                .spawn(move || {
                    let health = watch.health.clone();
                    append_loop(&*store, rx, sync_tx, &health.writable);
                    drop(watch);
                })
                .expect("spawn append thread")
        };
        let sync = {
            let watch = watch(&health);
            std::thread::Builder::new()
                .name("tally-sync".into())
                .spawn(move || {
                    let health = watch.health.clone();
                    sync_loop(&*store, sync_rx, &health);
                    drop(watch);
                })
                .expect("spawn sync thread")
        };
        Writer {
            tx,
            health,
            threads: vec![append, sync],
            died: Some(died),
        }
    }

    /// A handle for submitting events.
    pub fn handle(&self) -> WriterHandle {
        WriterHandle {
            tx: self.tx.clone(),
            health: self.health.clone(),
        }
    }

    /// Resolves when a writer thread has died (a panic); never otherwise.
    pub fn died(&mut self) -> impl std::future::Future<Output = ()> + use<> {
        let rx = self.died.take();
        async move {
            let died = match rx {
                Some(rx) => rx.await.is_ok(),
                None => false,
            };
            if !died {
                std::future::pending::<()>().await;
            }
        }
    }

    /// True if a writer thread died.
    pub fn is_dead(&self) -> bool {
        self.health.dead.load(Ordering::SeqCst)
    }

    /// Commits and fsyncs everything queued so far, then stops the threads.
    /// Call it after the last request has been answered or abandoned.
    pub async fn shutdown(self) {
        let _ = self.tx.send(Msg::Stop).await;
        for t in self.threads {
            let _ = t.join();
        }
    }
}

impl WriterHandle {
    /// Submits events and waits until they are durable (or rejected as
    /// duplicates).
    pub async fn submit(&self, events: Vec<Event>) -> CommitReply {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Job(Job { events, reply }))
            .await
            .map_err(|_| Arc::new(Error::Unavailable("the writer has stopped".into())))?;
        rx.await
            .map_err(|_| Arc::new(Error::Unavailable("the writer has stopped".into())))?
    }

    /// Requests waiting for the append thread.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// How long the last fsync of the log took.
    pub fn last_sync_seconds(&self) -> f64 {
        self.health.last_sync_us.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// False after a failed append or sync, until one succeeds again, and
    /// for good once a writer thread has died.
    pub fn is_healthy(&self) -> bool {
        self.health.writable.load(Ordering::SeqCst) && !self.health.dead.load(Ordering::SeqCst)
    }
}

/// Appended but not yet durable.
struct Pending {
    replies: Vec<(oneshot::Sender<CommitReply>, Vec<Outcome>)>,
    /// The store's epoch when it was appended.
    epoch: u64,
}

fn append_loop(
    store: &dyn EventStore,
    mut rx: mpsc::Receiver<Msg>,
    sync_tx: std::sync::mpsc::Sender<Pending>,
    healthy: &AtomicBool,
) {
    let mut stopping = false;
    while !stopping {
        let Some(Msg::Job(first)) = rx.blocking_recv() else {
            return;
        };
        let mut jobs = vec![first];
        let mut total = jobs[0].events.len();
        while total < MAX_COMMIT_EVENTS {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => {
                    total += job.events.len();
                    jobs.push(job);
                }
                Ok(Msg::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let mut events = Vec::with_capacity(total);
        let mut waiting = Vec::with_capacity(jobs.len());
        for j in jobs {
            waiting.push((j.reply, j.events.len()));
            events.extend(j.events);
        }
        let n = events.len();
        match store.append(events) {
            Ok(outcomes) => {
                // Reloads happen only inside `append`, on this thread, so
                // this is the epoch the commit was appended in.
                let epoch = store.epoch();
                let mut outcomes = outcomes.into_iter();
                let replies = waiting
                    .into_iter()
                    .map(|(reply, len)| (reply, outcomes.by_ref().take(len).collect()))
                    .collect();
                if sync_tx.send(Pending { replies, epoch }).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = n, "append failed");
                healthy.store(false, Ordering::Relaxed);
                let e = Arc::new(e);
                for (reply, _) in waiting {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn sync_loop(store: &dyn EventStore, rx: std::sync::mpsc::Receiver<Pending>, health: &Health) {
    sync_all(store, &rx, health);
    // The append thread has stopped (shutdown): nothing can arrive any more.
    if let Err(e) = store.close() {
        tracing::error!(error = %e, "closing the store failed; it recovers on the next start");
    }
}

fn sync_all(store: &dyn EventStore, rx: &std::sync::mpsc::Receiver<Pending>, health: &Health) {
    let healthy = &health.writable;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let started = std::time::Instant::now();
        let result = store.sync();
        health
            .last_sync_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let epoch = store.epoch();
        match &result {
            Ok(()) => healthy.store(true, Ordering::Relaxed),
            Err(e) => {
                tracing::error!(error = %e, "fsync failed");
                healthy.store(false, Ordering::Relaxed);
            }
        }
        let shared_err = result.err().map(Arc::new);
        for pending in batch {
            // Appended before a reload: its bytes may have been cut.
            let stale = (pending.epoch != epoch).then(|| {
                Arc::new(Error::Unavailable(
                    "the store reloaded after a failed write; send again".into(),
                ))
            });
            for (reply, outcomes) in pending.replies {
                let _ = reply.send(match (&shared_err, &stale) {
                    (Some(e), _) | (None, Some(e)) => Err(e.clone()),
                    (None, None) => Ok(outcomes),
                });
            }
        }
    }
}
