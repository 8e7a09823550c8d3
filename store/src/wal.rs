//! The write-ahead log: the events of the open chunk, in the order they
//! were accepted. Appending a record is a `write`; the group commit's
//! `fdatasync` makes it durable, and only then is a request answered. When
//! the open chunk is sealed into a chunk file, the rest starts a new log
//! file and the old one is deleted, so the log never holds more than one
//! chunk's worth of events.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tally_event::Event;

use super::codec;
use crate::Error;

/// The log file with number `n` in `dir`.
pub fn path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:08}.wal"))
}

/// The numbers of the log files in `dir`.
pub fn list(dir: &Path) -> Result<Vec<u64>, Error> {
    super::chunk::numbered_files(dir, "wal")
}

/// Reads log `n`: the events of its intact records and the length of the
/// valid prefix (a torn last record is not part of it). A missing log, or
/// damage before its last record, is an error naming the file: the
/// recovery plan only reads logs that exist, so neither may pass as empty.
pub fn read(dir: &Path, n: u64) -> Result<(Vec<Event>, u64), Error> {
    let p = path(dir, n);
    let bytes = std::fs::read(&p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
    let (events, valid) = codec::decode_wal(&bytes).map_err(|e| match e {
        Error::Corrupt(msg) => Error::corrupt(format!("{}: {msg}", p.display())),
        other => other,
    })?;
    Ok((events, valid as u64))
}

/// Cuts log `n` back to its first `len` bytes, durably: after a failure,
/// what was appended but never synced belongs to commits that got an
/// error. A missing log or a shorter one is left as it is.
pub fn cut(dir: &Path, n: u64, len: u64) -> Result<(), Error> {
    let p = path(dir, n);
    let io = |e| Error::io(format!("cutting {}", p.display()), e);
    let file = match OpenOptions::new().write(true).open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    if file.metadata().map_err(io)?.len() > len {
        file.set_len(len).map_err(io)?;
        file.sync_all().map_err(io)?;
        super::hooks::synced(&p, super::hooks::Sync::Log);
    }
    Ok(())
}

/// An open log file being appended to.
pub struct Wal {
    number: u64,
    file: Arc<File>,
    /// Bytes in the file (all of them intact records); shared with the
    /// sync thread, which records how much an fdatasync covered.
    len: Arc<AtomicU64>,
}

impl Wal {
    /// Opens log `n` for appending after its first `valid` bytes, cutting
    /// off a torn tail (never acknowledged). Creates it if missing.
    pub fn open(dir: &Path, n: u64, valid: u64) -> Result<Self, Error> {
        let p = path(dir, n);
        let io = |e| Error::io(format!("opening {}", p.display()), e);
        let existed = p.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io)?;
        if !existed {
            super::hooks::created(&p);
        }
        if file.metadata().map_err(io)?.len() != valid {
            file.set_len(valid).map_err(io)?;
        }
        // The file may be new: its directory entry must be durable before
        // a record in it is acknowledged.
        file.sync_all().map_err(io)?;
        super::hooks::synced(&p, super::hooks::Sync::NewLog);
        super::chunk::sync_dir(dir)?;
        Ok(Wal {
            number: n,
            file: Arc::new(file),
            len: Arc::new(AtomicU64::new(valid)),
        })
    }

    /// Creates log `n` holding `events` as its first record, durably (file
    /// and directory entry), before anything refers to it.
    pub fn create(dir: &Path, n: u64, events: &[Event]) -> Result<Self, Error> {
        let p = path(dir, n);
        let io = |e| Error::io(format!("writing {}", p.display()), e);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&p)
            .map_err(io)?;
        super::hooks::created(&p);
        let mut len = 0;
        if !events.is_empty() {
            let record = codec::encode_wal_record(events);
            file.write_all(&record).map_err(io)?;
            len = record.len() as u64;
        }
        file.sync_all().map_err(io)?;
        super::hooks::synced(&p, super::hooks::Sync::NewLog);
        super::chunk::sync_dir(dir)?;
        Ok(Wal {
            number: n,
            file: Arc::new(file),
            len: Arc::new(AtomicU64::new(len)),
        })
    }

    /// Appends one record; durable after [`Wal::sync_handle`]'s `sync_data`.
    pub fn append(&mut self, events: &[Event]) -> Result<(), Error> {
        let record = codec::encode_wal_record(events);
        let len = self.len();
        if let Err(e) = (&*self.file).write_all(&record) {
            // A partial record would hide every later one from recovery
            // (if this fails too, the reload after the failure cuts it).
            let _ = self.file.set_len(len);
            return Err(Error::io(
                format!(
                    "appending to the write-ahead log wal/{:08}.wal",
                    self.number
                ),
                e,
            ));
        }
        self.len.store(len + record.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    /// The log's number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Bytes in the log.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::SeqCst)
    }

    /// True when the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shared length, for the sync thread.
    pub fn len_handle(&self) -> Arc<AtomicU64> {
        self.len.clone()
    }

    /// A handle the sync thread can `fdatasync` while the writer appends.
    pub fn sync_handle(&self) -> Arc<File> {
        self.file.clone()
    }
}
