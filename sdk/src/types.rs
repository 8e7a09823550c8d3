//! Types that the client's parts share: the handle, the queue, the
//! builder and the sender all speak in them. Plain data, no logic; this
//! module imports nothing from the crate but the reports, so that the
//! modules above it form no cycle.

use std::sync::Arc;

use tokio::time::Instant;

use crate::report::{DeliveryReport, FlushReport};

/// Which event to discard when [`Track::send`](crate::Track::send) finds the
/// queue full. Either way the loss is counted in
/// [`Stats::dropped`](crate::Stats::dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DropPolicy {
    /// Refuse the new event: `send` returns
    /// [`TrackError::QueueFull`](crate::TrackError::QueueFull). The default:
    /// what is already queued is kept in order.
    #[default]
    Newest,
    /// Make room by discarding the oldest queued event; `send` succeeds.
    /// Keeps the most recent activity during a long outage.
    Oldest,
}

/// Why [`Track::send`](crate::Track::send) did not queue an event. Each case is also counted in
/// [`Stats`](crate::Stats).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackError {
    /// The collector would reject the event (e.g. an empty name); counted
    /// in [`Stats::invalid`](crate::Stats::invalid).
    #[error("invalid event: {0}")]
    Invalid(String),
    /// The queue was full and the drop policy is
    /// [`Newest`](crate::DropPolicy::Newest); counted in
    /// [`Stats::dropped`](crate::Stats::dropped).
    #[error("the event queue is full: event dropped")]
    QueueFull,
    /// The client was shut down; counted in
    /// [`Stats::dropped`](crate::Stats::dropped).
    #[error("the client is shut down: event dropped")]
    Closed,
}

/// The delivery-report callback.
pub(crate) type Callback = Arc<dyn Fn(&DeliveryReport) + Send + Sync + 'static>;

/// How a flush or shutdown caller gets its report.
pub(crate) type Reply = Box<dyn FnOnce(FlushReport) + Send + 'static>;

pub(crate) enum Command {
    /// Deliver every event with `seq <= marker`.
    Flush {
        marker: u64,
        deadline: Instant,
        reply: Reply,
    },
    /// Deliver everything, then stop.
    Shutdown { deadline: Instant, reply: Reply },
}
