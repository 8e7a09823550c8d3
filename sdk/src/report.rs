//! What happened to the events: per-batch reports for the callback, and the
//! summary that `flush` and `shutdown` return.

use tally_event::WireEvent;

use crate::backoff::retryable_status;

/// An event the collector refused (SPEC §1 rules), or that the SDK did not
/// send because the collector would refuse it (`properties` over 32 KiB or
/// nested too deep). Rejections are final: never retried.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The event, as tracked.
    pub event: WireEvent,
    /// Why, as the collector put it (e.g. `"timestamp: ..."`).
    pub error: String,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The collector could not be reached, or the connection broke.
    #[error("could not reach the collector: {0}")]
    Transport(String),
    /// No answer within the [request timeout](crate::ClientBuilder::request_timeout).
    #[error("the request timed out")]
    Timeout,
    /// The collector answered with a status other than 200.
    #[error("the collector answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The answer's `{"error": ...}` text, or its start.
        message: String,
    },
    /// A 200 answer that is not the collector's JSON (a wrong endpoint?).
    #[error("unexpected answer from the collector: {0}")]
    InvalidResponse(String),
    /// The shutdown deadline passed (or the runtime went away) before the
    /// events could be delivered.
    #[error("the shutdown deadline passed before delivery")]
    Abandoned,
}

impl DeliveryError {
    /// Whether the SDK retries after this error: connection errors, timeouts,
    /// `429` and `5xx` answers.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Transport(_) | DeliveryError::Timeout => true,
            DeliveryError::Status { status, .. } => retryable_status(*status),
            DeliveryError::InvalidResponse(_) | DeliveryError::Abandoned => false,
        }
    }

    /// The HTTP status, when the collector answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            DeliveryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One delivery outcome, passed to the
/// [`on_delivery`](crate::ClientBuilder::on_delivery) callback.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DeliveryReport {
    /// The collector answered 200 for a batch (or the SDK refused events
    /// without sending them, in which case `accepted` and `duplicates` are 0).
    Delivered {
        /// Events newly stored.
        accepted: u64,
        /// Events the collector already had (same `id`): a retry of a
        /// request whose answer was lost.
        duplicates: u64,
        /// Events refused, with the reason.
        rejected: Vec<Rejection>,
    },
    /// Events given up on: a non-retryable answer, retries exhausted, or the
    /// shutdown deadline passed.
    Failed {
        /// The events, as tracked.
        events: Vec<WireEvent>,
        /// The last error.
        error: DeliveryError,
        /// Requests made for these events.
        attempts: u32,
    },
    /// Events discarded because the queue was full (or tracked after
    /// shutdown) since the previous report.
    Dropped {
        /// How many.
        count: u64,
    },
}

/// What [`flush`](crate::Client::flush) or [`shutdown`](crate::Client::shutdown)
/// achieved for the events tracked before the call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlushReport {
    /// Events the collector stored (`accepted` or `duplicates`) during the call.
    pub delivered: u64,
    /// Events refused during the call (never retried).
    pub rejected: Vec<Rejection>,
    /// Events given up on during the call (see [`DeliveryReport::Failed`]).
    pub failed: Vec<WireEvent>,
    /// Events not yet delivered when the deadline passed. After `flush` they
    /// stay queued and the sender keeps trying; after `shutdown` they are
    /// abandoned (and counted as failed), except that a durable queue keeps
    /// them on disk for the next start.
    pub pending: Vec<WireEvent>,
    /// Whether the deadline passed before everything was settled.
    pub timed_out: bool,
    /// The last delivery error seen during the call, if any.
    pub last_error: Option<DeliveryError>,
}

impl FlushReport {
    /// True when nothing failed or is still pending (rejections aside:
    /// they were delivered, and refused).
    pub fn all_delivered(&self) -> bool {
        self.failed.is_empty() && self.pending.is_empty()
    }

    /// The events that could not be delivered: failed, then pending.
    pub fn undelivered(&self) -> impl Iterator<Item = &WireEvent> {
        self.failed.iter().chain(&self.pending)
    }
}
