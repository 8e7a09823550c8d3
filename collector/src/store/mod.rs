//! Where events live. HTTP, import and the analyses talk to the
//! [`EventStore`] trait; only [`sled_store`] touches sled, and only
//! [`codec`] knows the bytes on disk. A second backend (ClickHouse is
//! planned for scale-out) plugs in by implementing the trait.

pub mod codec;
pub mod sled_store;
pub mod writer;

use tally_event::Event;
use tally_query::Source;

use crate::error::Error;

pub use sled_store::{SledStore, StoreOptions};
pub use writer::{CommitReply, Writer};

/// What happened to one appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (durable once [`EventStore::sync`] returns).
    Accepted,
    /// An event with the same id was stored before; this one was dropped.
    Duplicate,
}

/// An append-only, deduplicating event store that analyses can read.
pub trait EventStore: Source + Send + Sync + 'static {
    /// Appends validated events in order, deduplicating by id (against the
    /// store and within `events`: the first occurrence wins). The result has
    /// one outcome per event. Not durable until [`EventStore::sync`].
    fn append(&self, events: Vec<Event>) -> Result<Vec<Outcome>, Error>;

    /// Makes everything appended so far durable on disk (fsync'd).
    fn sync(&self) -> Result<(), Error>;

    /// Calls `each` for every full event with `from <= timestamp < to`, in
    /// storage order.
    fn scan_events(
        &self,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(Event) -> Result<(), Error>,
    ) -> Result<(), Error>;
}
