//! SDK tests against a fake collector (and through a fault-injecting proxy).
//! Everything listens on 127.0.0.1 only and every wait is bounded.

mod blocking;
mod delivery;
#[cfg(feature = "durable")]
mod durable;
mod fake;
mod faults;
mod identity;
mod layout;
mod proxy;
mod refusals;

use std::time::Duration;

use tally_sdk::{Client, ClientBuilder, DeliveryReport, Stats};

/// A builder with test-friendly timings: short intervals, timeouts and
/// backoffs, so that retries happen in milliseconds.
pub fn fast(url: &str) -> ClientBuilder {
    Client::builder(url, fake::KEY)
        .flush_interval(Duration::from_millis(50))
        .request_timeout(Duration::from_millis(500))
        .backoff(Duration::from_millis(5), Duration::from_millis(50))
        .max_retries(5)
        .shutdown_timeout(Duration::from_secs(5))
}

/// Every queued event is in exactly one bucket.
#[track_caller]
pub fn assert_conserved(s: &Stats) {
    assert_eq!(
        s.queued,
        s.accepted + s.duplicates + s.rejected + s.dropped + s.failed + s.pending,
        "conservation broken: {s:?}"
    );
}

/// Collects delivery reports from the callback.
#[derive(Clone, Default)]
pub struct Reports(std::sync::Arc<std::sync::Mutex<Vec<DeliveryReport>>>);

impl Reports {
    pub fn install(&self, b: ClientBuilder) -> ClientBuilder {
        let me = self.clone();
        b.on_delivery(move |r| me.0.lock().unwrap().push(r.clone()))
    }

    pub fn all(&self) -> Vec<DeliveryReport> {
        self.0.lock().unwrap().clone()
    }
}
