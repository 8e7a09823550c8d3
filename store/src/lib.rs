//! `tally-store`: where events live. HTTP, import and the analyses talk to
//! the [`EventStore`] trait; only [`disk`] touches the store's files, only
//! its `index` module names sled, and only [`codec`] knows the bytes on disk. A second backend (ClickHouse is
//! planned for scale-out) plugs in by implementing the trait.

pub mod chunk;
pub mod codec;
#[cfg(test)]
mod delete_tests;
pub mod deletions;
pub mod disk;
mod error;
mod index;
pub mod links;
#[cfg(test)]
mod powercut;
pub mod props;
pub mod recovery;
#[cfg(test)]
mod scan_tests;
pub mod wal;
pub mod writer;

use tally_event::Event;

/// Where the store's file operations report to the power-cut model
/// ([`powercut`]); empty outside tests.
mod hooks {
    #[cfg(test)]
    pub use super::powercut::{Sync, created, dir_synced, index_flushed, removed, renamed, synced};

    #[cfg(not(test))]
    mod off {
        use std::path::Path;

        #[derive(Clone, Copy)]
        pub enum Sync {
            Log,
            NewLog,
            Chunk,
        }

        #[inline(always)]
        pub fn created(_: &Path) {}
        #[inline(always)]
        pub fn synced(_: &Path, _: Sync) {}
        #[inline(always)]
        pub fn dir_synced(_: &Path) {}
        #[inline(always)]
        pub fn renamed(_: &Path, _: &Path) {}
        #[inline(always)]
        pub fn removed(_: &Path) {}
        #[inline(always)]
        pub fn index_flushed(_: &Path) {}
    }
    #[cfg(not(test))]
    pub use off::*;
}
use tally_query::Source;

pub use error::{Error, IndexError};

pub use disk::{DiskStore, StoreOptions};
pub use writer::{CommitReply, Writer};

/// What happened to one appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (durable once [`Ingest::sync`] returns).
    Accepted,
    /// An event with the same id was stored before; this one was dropped.
    Duplicate,
}

/// Gauges of a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Events stored (sealed and in the log).
    pub events: u64,
    /// Sealed chunk files.
    pub chunks: u64,
    /// Bytes of every file of the store.
    pub bytes_on_disk: u64,
}

/// The ingest seam: append with a per-event outcome, make durable, close.
pub trait Ingest: Send + Sync + 'static {
    /// Appends validated events in order, deduplicating by id (against the
    /// store and within `events`: the first occurrence wins). The result has
    /// one outcome per event. Not durable until [`Ingest::sync`].
    fn append(&self, events: Vec<Event>) -> Result<Vec<Outcome>, Error>;

    /// Makes everything appended so far durable on disk (fsync'd).
    fn sync(&self) -> Result<(), Error>;

    /// Changes whenever the store has reloaded its state after a failure:
    /// a commit appended in an earlier epoch must not be acknowledged, even
    /// if a later [`Ingest::sync`] succeeds (its bytes may have been
    /// cut from the log).
    fn epoch(&self) -> u64 {
        0
    }

    /// Puts everything appended into its final, compact form before the
    /// process exits (a clean shutdown, the end of an import). Appending
    /// afterwards is allowed. Durability never depends on it.
    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// The export seam: every full event of a time range.
pub trait Export: Send + Sync + 'static {
    /// Calls `each` for every full event with `from <= timestamp < to`, in
    /// storage order.
    fn scan_events(
        &self,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(Event) -> Result<(), Error>,
    ) -> Result<(), Error>;
}

/// The data operations of SPEC §2–3 and the store's gauges. Every method
/// has a default, so a backend (or a test double) implements only what it
/// offers.
pub trait Admin: Send + Sync + 'static {
    /// What `/metrics` shows of the store; may read the disk (call it off
    /// the async workers).
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }

    /// A consistent copy of the store in `dest` (new or empty), holding
    /// every event acknowledged before the call, made while ingest goes on;
    /// returns the events copied. Backends with their own backup tools
    /// refuse and say so.
    fn backup(&self, dest: &std::path::Path) -> Result<u64, Error> {
        let _ = dest;
        Err(Error::Unavailable(
            "this store has no built-in backup; use its own tools".into(),
        ))
    }

    /// Deletes every event counted for person `key` (SPEC §3: with
    /// identity linking, a user's own events and those of the anonymous
    /// ids linked to it); returns how many. From the answer on, no read
    /// sees them; compaction removes their bytes.
    fn delete_person(&self, key: &str) -> Result<u64, Error> {
        let _ = key;
        Err(Error::Unavailable(
            "this store cannot delete persons".into(),
        ))
    }
}

/// Everything `tally serve` needs of one backend: the seams together, and
/// the analyses' [`Source`]. Implemented for every type that has them all.
pub trait EventStore: Ingest + Export + Admin + Source {}

impl<T: Ingest + Export + Admin + Source> EventStore for T {}
