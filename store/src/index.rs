//! The index: the one module that names sled. The rest of the store sees
//! an [`Index`] (open, get, insert, scan a prefix, apply a batch, flush)
//! and its [`Batch`]; what the keys and values mean is `codec`'s, when the
//! index is written is the sealing's (see ARCHITECTURE.md, "the files are
//! the truth; the index is a witness").

use std::path::Path;

use crate::Error;

/// A value (or key) read from the index.
pub(crate) type Value = sled::IVec;

/// The store's index, shared by clones.
#[derive(Clone)]
pub(crate) struct Index(sled::Db);

/// Writes applied to the index atomically by [`Index::apply`].
#[derive(Default)]
pub(crate) struct Batch(sled::Batch);

impl Batch {
    /// Sets `key` to `value` when the batch is applied.
    pub(crate) fn insert(&mut self, key: impl Into<Value>, value: impl Into<Value>) {
        self.0.insert(key, value);
    }
}

impl Index {
    /// Opens the index at `index` of the store in `dir`. Right after
    /// another handle of this process was dropped, sled's background I/O
    /// can hold its file lock for a moment: with `wait` that is waited
    /// out; another process's lock is not.
    pub(crate) fn open(
        index: &Path,
        dir: &Path,
        cache_capacity: u64,
        wait: bool,
    ) -> Result<Index, Error> {
        let mut waited = 0;
        loop {
            let opened = sled::Config::new()
                .path(index)
                .cache_capacity(cache_capacity)
                // Durability comes from our own flush + fsync at each seal.
                .flush_every_ms(None)
                .open();
            match opened {
                Ok(db) => return Ok(Index(db)),
                Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                    if !wait || waited >= 40 {
                        return Err(Error::Locked {
                            path: dir.parent().unwrap_or(dir).to_path_buf(),
                        });
                    }
                    waited += 1;
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                // A failing disk (full, read errors) is not damage: say what.
                Err(sled::Error::Io(io)) => {
                    return Err(Error::io(
                        format!("opening the index {}", index.display()),
                        io,
                    ));
                }
                Err(other) => {
                    return Err(Error::Damaged(format!(
                        "the index {} cannot be opened: {other} (run `tally check --repair` to \
                         rebuild it from the chunk files)",
                        index.display()
                    )));
                }
            }
        }
    }

    /// Opens a format 1 store's sled files (directly in `dir`) to read
    /// them once, for the upgrade (`disk/format1.rs`).
    pub(crate) fn open_format1(dir: &Path) -> Result<Index, Error> {
        sled::Config::new()
            .path(dir)
            .open()
            .map(Index)
            .map_err(|e| {
                Error::Damaged(format!(
                    "{}: the format 1 store cannot be opened: {e}",
                    dir.display()
                ))
            })
    }

    /// The value under `key`, if any.
    pub(crate) fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>, Error> {
        Ok(self.0.get(key)?)
    }

    /// Sets `key` to `value` (not durable until [`Index::flush`]).
    pub(crate) fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Value>,
    ) -> Result<(), Error> {
        self.0.insert(key, value)?;
        Ok(())
    }

    /// Every entry whose key starts with the byte `prefix`, in key order.
    pub(crate) fn scan_prefix(
        &self,
        prefix: u8,
    ) -> impl Iterator<Item = Result<(Value, Value), Error>> + use<> {
        self.0.scan_prefix([prefix]).map(|kv| Ok(kv?))
    }

    /// Applies every write of `batch` atomically.
    pub(crate) fn apply(&self, batch: Batch) -> Result<(), Error> {
        Ok(self.0.apply_batch(batch.0)?)
    }

    /// Writes sled's dirty state to its files (sled 0.34 does not fsync
    /// them fully: the caller fsyncs the files after).
    pub(crate) fn flush(&self) -> Result<(), Error> {
        self.0.flush()?;
        Ok(())
    }
}

/// A failure of the index, opaque so that sled's type stays inside this
/// module.
#[derive(Debug)]
pub struct IndexError(sled::Error);

impl std::fmt::Display for IndexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for IndexError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Index(IndexError(e))
    }
}
