//! The collector crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the collector, the store and the CLI.
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
    /// The store's index reported an error (opaque: the index's library
    /// stays inside `tally-store`).
    #[error("store: {0}")]
    Index(#[from] tally_store::IndexError),
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
    /// Invalid configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] tally_query::QueryError),
    /// The store is shutting down or its writer has stopped.
    #[error("the store is not accepting writes: {0}")]
    Unavailable(String),
}

impl From<tally_store::Error> for Error {
    /// The store's errors, variant for variant, so a caller matches
    /// `Locked` or `Damaged` the same whichever layer raised it.
    fn from(e: tally_store::Error) -> Self {
        use tally_store::Error as S;
        match e {
            S::Io { context, source } => Error::Io { context, source },
            S::Index(e) => Error::Index(e),
            S::Corrupt(m) => Error::Corrupt(m),
            S::Damaged(m) => Error::Damaged(m),
            S::UnsupportedFormat { found, supported } => {
                Error::UnsupportedFormat { found, supported }
            }
            S::Locked { path } => Error::Locked { path },
            S::Config(m) => Error::Config(m),
            S::Unavailable(m) => Error::Unavailable(m),
        }
    }
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
