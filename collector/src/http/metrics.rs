//! Prometheus metrics for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route pattern, e.g. `/v1/batch` (never the raw path, to bound cardinality).
    pub path: String,
    /// HTTP status code.
    pub status: u16,
}

/// All collector metrics.
pub struct Metrics {
    registry: Registry,
    /// Events stored.
    pub accepted: Counter,
    /// Events rejected by validation.
    pub rejected: Counter,
    /// Events dropped as duplicates of a stored id.
    pub duplicates: Counter,
    /// Request latency by route and status.
    pub latency: Family<RequestLabels, Histogram>,
    /// Bytes of request bodies reserved right now (see `body::Budget`).
    pub body_bytes_in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tally");
        let accepted = Counter::default();
        let rejected = Counter::default();
        let duplicates = Counter::default();
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
        });
        registry.register("events_accepted", "Events stored", accepted.clone());
        registry.register(
            "events_rejected",
            "Events rejected by validation",
            rejected.clone(),
        );
        registry.register(
            "events_deduplicated",
            "Events dropped because their id was already stored",
            duplicates.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        let body_bytes_in_flight = Gauge::default();
        registry.register(
            "http_body_bytes_in_flight",
            "Bytes of request bodies held in memory right now",
            body_bytes_in_flight.clone(),
        );
        Metrics {
            registry,
            body_bytes_in_flight,
            accepted,
            rejected,
            duplicates,
            latency,
        }
    }
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}
