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
    /// Store gauges, set at each scrape.
    pub store: StoreGauges,
}

/// What `/metrics` shows of the store and its writer.
#[derive(Default, Clone)]
pub struct StoreGauges {
    /// Events stored.
    pub events: Gauge,
    /// Sealed chunk files.
    pub chunks: Gauge,
    /// Bytes of the store's files.
    pub bytes: Gauge,
    /// Requests waiting for the writer.
    pub queue: Gauge,
    /// Seconds the last fsync of the log took.
    pub last_fsync: Gauge<f64, std::sync::atomic::AtomicU64>,
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
        let store = StoreGauges::default();
        for (name, help, gauge) in [
            ("store_events", "Events stored", &store.events),
            ("store_chunks", "Sealed chunk files", &store.chunks),
            (
                "store_bytes",
                "Bytes of the store's files on disk",
                &store.bytes,
            ),
            (
                "write_queue_depth",
                "Requests waiting for the store's writer",
                &store.queue,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "last_fsync_seconds",
            "Duration of the last fsync of the write-ahead log",
            store.last_fsync.clone(),
        );
        Metrics {
            registry,
            store,
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
