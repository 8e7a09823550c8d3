//! The store's one error type. Nothing of sled shows in it: an index
//! failure is an opaque [`IndexError`] (defined in `index.rs`), so the collector maps
//! [`Error`] into its own without naming the index's library.

use std::path::PathBuf;

pub use crate::index::IndexError;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The index reported an error.
    #[error("store: {0}")]
    Index(#[from] IndexError),
    /// Stored bytes do not decode.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The store's files disagree with each other or a file is damaged:
    /// the message names the files. Nothing is guessed or deleted.
    #[error("the store is damaged: {0} (`tally check` lists every problem)")]
    Damaged(String),
    /// The store was written by another version of Tally.
    #[error(
        "store format version {found} is not supported (this build reads version {supported}); \
         export the events with the Tally build that wrote them (`tally export`) and import \
         them into a new data directory"
    )]
    UnsupportedFormat {
        /// Version byte found on disk.
        found: u8,
        /// Version this build reads and writes.
        supported: u8,
    },
    /// Another process (normally a running `tally serve`) holds the data directory.
    #[error(
        "the data directory {} is in use by another process (is `tally serve` running?); \
         query the running collector with --server URL --key READ_KEY instead", path.display()
    )]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// Invalid options.
    #[error("configuration: {0}")]
    Config(String),
    /// The store is shutting down, its writer has stopped, or it refuses
    /// writes until it has reloaded after a failure.
    #[error("the store is not accepting writes: {0}")]
    Unavailable(String),
}

impl Error {
    /// A [`Error::Corrupt`] with a message.
    pub fn corrupt(msg: impl Into<String>) -> Self {
        Error::Corrupt(msg.into())
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
