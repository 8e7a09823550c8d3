//! The embedded store: immutable chunk files for the events, a write-ahead
//! log for the open chunk, and a small sled index that finds both.
//!
//! ```text
//! DATA/store/index/   sled: event names, chunk headers, id index, counters
//! DATA/store/chunks/  00000000.chunk, ...: sealed events, ids, columns, persons
//! DATA/store/wal/     00000007.wal: the events of the open chunk
//! ```
//!
//! A commit deduplicates against the open chunk (in memory) and the id
//! index, appends the accepted events to the log, and is durable once the
//! log is fdatasync'd (by the group commit). When the open chunk is full it
//! is *sealed*: written as a chunk file (fsync'd, renamed), the remainder
//! goes to a new log file (fsync'd), and only then one atomic sled batch
//! publishes the chunk, its ids, new names, the person count and the new log
//! number, and is flushed before the old log is deleted. So the index never
//! points at anything that is not durable, and a crash at any point
//! recovers to a state where every acknowledged event is present once.
//!
//! Why not events in sled (format 1): sled 0.34 rewrites a node whenever a
//! key in it changes and reclaims the old versions lazily, which kept the
//! store at 3-6x the gzip'd NDJSON although the live data was 1.5x. Chunk
//! files are written once, so their size on disk is their size.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use rayon::prelude::*;
use tally_event::Event;
use tally_query::filter::Prop;
use tally_query::{Identity, NameId, QueryError, Rows, Scan, Source};
use uuid::Uuid;

use super::chunk::{self, Chunk, Sealing};
use super::codec::{
    self, ChunkHeader, ColumnBlock, IdSpan, IdSpans, LinkAnon, LinkRecord, meta, prefix,
};
use super::deletions::{self, Deletions, RowTest};
use super::hooks;
use super::index::{Batch, Index};
use super::links::{Link, Links};
use super::props::{self, PathValues, PropsFile};
use super::recovery;
use super::wal::{self, Wal};
use super::{Admin, Export, Ingest, Outcome};
use crate::Error;

mod compact;
mod format1;
pub use compact::Compacted;

/// Decoded id sections kept by the writer for deduplication.
const ID_SECTIONS_CACHED: usize = 16;
/// Id index entries kept decoded by the writer.
const PREFIXES_CACHED: usize = 1 << 20;

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// sled's page cache, in bytes: bounds the index's memory.
    pub cache_capacity: u64,
    /// Events per chunk. Large chunks keep per-name column blocks long
    /// (tens of thousands of rows for busy names) and the index small; the
    /// log, and so recovery, holds at most one chunk.
    pub chunk_events: usize,
    /// Log bytes after which the open chunk is sealed early (events with
    /// large properties), bounding the log and the open chunk's memory.
    pub wal_max_bytes: u64,
    /// Open a damaged store to read what is intact (`tally export
    /// --skip-damaged`): missing or unreadable chunks are left out instead
    /// of refusing. Such a store never writes.
    pub skip_damaged: bool,
    /// Open to read only (queries, export, check): nothing in the data
    /// directory is written, so a read-only copy of it works, and readers
    /// share it (a shared lock: no writer can start meanwhile, and none
    /// may be running). sled has no read-only mode and locks its files
    /// exclusively, so a reader opens a private copy of the index.
    pub read_only: bool,
    /// `--keep`: events older than now minus this many milliseconds are
    /// left out of every read (and compaction removes them).
    pub keep_ms: Option<i64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity: 64 * 1024 * 1024,
            chunk_events: 65_536,
            wal_max_bytes: 64 << 20,
            keep_ms: None,
            skip_damaged: false,
            read_only: false,
        }
    }
}

/// [`EventStore`](crate::EventStore) on chunk files, a write-ahead log and a sled index.
pub struct DiskStore {
    /// The sled index. Reopened from disk after a failure: sled keeps an
    /// I/O error and refuses every later write, and its memory may hold
    /// what its files do not.
    db: RwLock<Option<Index>>,
    dir: PathBuf,
    cache_capacity: u64,
    chunk_events: usize,
    wal_max_bytes: u64,
    /// True when the index was created by this open: it witnesses nothing
    /// about the files already there.
    index_is_new: bool,
    /// [`StoreOptions::skip_damaged`].
    skip_damaged: bool,
    /// [`StoreOptions::keep_ms`].
    keep_ms: Option<i64>,
    /// What readers see; changed only by the writer, briefly.
    shared: RwLock<Shared>,
    /// Loaded on the first append, so read-only users (queries, export)
    /// never load the person dictionary or touch a file.
    writer: Mutex<Option<WriterState>>,
    /// The log the group commit fdatasyncs.
    wal_file: Mutex<Option<SyncTarget>>,
    /// sled blob files already fsync'd (sled writes blobs without fsync).
    synced_blobs: Mutex<HashSet<OsString>>,
    /// Set by any failed write or sync; writes are refused until the writer
    /// has reloaded its state from the files (see [`DiskStore::recover`]).
    failed: AtomicBool,
    /// What a reload must undo first, from the failures since the last one.
    undo: Mutex<Undo>,
    /// Bumped by every reload: a commit appended before it is never
    /// acknowledged after it.
    epoch: AtomicU64,
    /// Held by a compaction and by deletions, which wait for it.
    compacting: Mutex<()>,
    /// Property files opened so far, by chunk number (`None`: the chunk
    /// has no usable one, its events are read instead).
    props_files: Arc<Mutex<HashMap<u32, Option<Arc<PropsFile>>>>>,
    /// Writes property files behind the seals.
    props_queue: std::sync::OnceLock<PropsQueue>,
    /// Injected failures, for the tests of every failure path.
    #[cfg(test)]
    faults: faults::Faults,
    /// A reader's private copy of the index and its shared lock on the
    /// real one; dropped last, after the sled handle that uses the copy.
    reader: Option<ReaderIndex>,
}

/// A reader's copy of the index (see [`StoreOptions::read_only`]).
struct ReaderIndex {
    copy: PathBuf,
    _lock: Option<File>,
}

impl ReaderIndex {
    /// Takes a shared lock on the index's database file (sled holds it
    /// exclusively while a writer runs), then copies the index.
    fn open(dir: &Path) -> Result<Self, Error> {
        use fs2::FileExt;
        let index = dir.join("index");
        let lock = match File::open(index.join("db")) {
            Ok(f) => {
                if FileExt::try_lock_shared(&f).is_err() {
                    return Err(Error::Locked {
                        path: dir.parent().unwrap_or(dir).to_path_buf(),
                    });
                }
                Some(f)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Error::io(
                    format!("opening {}", index.join("db").display()),
                    e,
                ));
            }
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let copy = std::env::temp_dir().join(format!(
            "tally-index-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let reader = ReaderIndex { copy, _lock: lock };
        copy_tree(&index, &reader.copy)?;
        Ok(reader)
    }
}

impl Drop for ReaderIndex {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.copy);
    }
}

/// Bytes of the files under `dir` (0 for what cannot be read).
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => tree_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Copies the files of `from` (recursively) into `to`.
fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("listing {}", from.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", from.display()), e))?;
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| Error::io(format!("reading {}", entry.path().display()), e))?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| Error::io(format!("copying {}", entry.path().display()), e))?;
        }
    }
    Ok(())
}

/// Failpoints: the tests make a chosen write or sync fail, as a full disk
/// or a failing device would.
#[cfg(test)]
mod faults {
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Where a failure can be injected.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Point {
        LogAppend,
        LogSync,
        ChunkWrite,
        LogCreate,
        IndexApply,
        IndexFlush,
    }

    const POINTS: usize = 6;

    /// Per point: how many of the next calls fail.
    #[derive(Default)]
    pub struct Faults([AtomicU32; POINTS]);

    impl Faults {
        pub fn fail_next(&self, point: Point, times: u32) {
            self.0[point as usize].store(times, Ordering::SeqCst);
        }

        pub fn check(&self, point: Point) -> std::io::Result<()> {
            let n = &self.0[point as usize];
            if n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                .is_ok()
            {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    format!("injected failure at {point:?}"),
                ));
            }
            Ok(())
        }
    }
}

/// Fails at `point` when a test asked for it; nothing outside tests.
macro_rules! failpoint {
    ($store:expr, $point:ident) => {
        #[cfg(test)]
        $store
            .faults
            .check(faults::Point::$point)
            .map_err(|e| Error::io("failpoint", e))?;
    };
}

/// The open log as the sync thread sees it.
#[derive(Clone)]
struct SyncTarget {
    number: u64,
    file: Arc<File>,
    /// Bytes appended (shared with the writer's [`Wal`]).
    len: Arc<AtomicU64>,
    /// Bytes known to be on disk: an fdatasync that started after they
    /// were written returned success.
    synced: Arc<AtomicU64>,
}

/// What the failures since the last reload left that a reload must undo
/// before it reads the files.
#[derive(Default)]
struct Undo {
    /// `(log, length)`: cut the log back to what was synced before a
    /// failure. Bytes after it belong to commits that got an error, and
    /// after a failed fsync Linux may report pages clean that never reached
    /// the disk: they must not make a retry count as a duplicate.
    cut: Option<(u64, u64)>,
    /// A log a failed seal may have created: removing it undoes the seal's
    /// commit point (the previous log still holds everything).
    abandoned_log: Option<u64>,
}

/// The published chunks and the open one.
struct Shared {
    chunks: Vec<Arc<Chunk>>,
    open: OpenChunk,
    /// Every event name, those first seen in the open chunk included.
    names: HashMap<String, u32>,
    /// Person ids handed out (published and in the open chunk).
    persons: u32,
    /// The log holding the open chunk.
    wal: u64,
    /// Identity links, those of the open chunk included.
    links: Links,
    /// Deleted persons.
    deletions: Arc<Deletions>,
}

/// What [`DiskStore::load`] read.
struct Loaded {
    shared: Shared,
    /// Every person key with its id, when asked for.
    persons: HashMap<String, u32>,
    /// Length of the log's intact prefix (what a writer keeps of it).
    wal_valid: u64,
    /// Which files are the store.
    plan: recovery::Plan,
    /// Names first seen in adopted chunks, to add to the index.
    adopted_names: Vec<(String, u32)>,
}

/// Accepted events not sealed yet: in the log on disk, here in memory.
#[derive(Default)]
struct OpenChunk {
    events: Vec<Event>,
    /// `(person, name)` of each event.
    interned: Vec<(u32, u32)>,
    /// The events' analysis columns, by name.
    columns: HashMap<u32, ColumnBlock>,
    ids: HashSet<Uuid>,
    /// Persons and names first seen since the last seal; the next seal
    /// publishes them.
    new_persons: Vec<(String, u32)>,
    new_names: Vec<(String, u32)>,
}

impl OpenChunk {
    fn push(&mut self, e: Event, person: u32, name: u32) {
        self.columns
            .entry(name)
            .or_default()
            .push(person, e.timestamp, e.stage, e.revenue);
        self.ids.insert(e.id);
        self.interned.push((person, name));
        self.events.push(e);
    }
}

/// State only the writer needs.
struct WriterState {
    persons: HashMap<String, u32>,
    names: HashMap<String, u32>,
    wal: Wal,
    /// Decoded id index entries.
    prefixes: HashMap<[u8; 1 + codec::ID_PREFIX], IdSpans>,
    /// Decoded id sections of recently checked chunks.
    id_sections: HashMap<u32, Arc<Vec<[u8; 16]>>>,
}

impl DiskStore {
    /// Opens (creating if needed) the store in `dir`. Reads only: the
    /// files are checked against the index (see [`recovery`]), and a
    /// writer repairs what a crash left on its first append.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Self, Error> {
        if !options.read_only {
            format1::finish(dir)?;
        }
        if format1::is_format1(dir) {
            // Format 1 kept a sled database right here: a writer upgrades
            // it; a reader (which writes nothing) says how.
            if options.read_only || options.skip_damaged {
                return Err(Error::Config(format!(
                    "{} holds a format 1 store (before 2026-12-01); start `tally serve` (or run \
                     `tally import` or `tally compact`) once on it to upgrade it in place",
                    dir.display()
                )));
            }
            format1::upgrade(dir, options)?;
        }
        let reader = if options.read_only {
            Some(ReaderIndex::open(dir)?)
        } else {
            compact::finish_swap(dir)?;
            for sub in ["index", "chunks", "wal"] {
                let d = dir.join(sub);
                std::fs::create_dir_all(&d)
                    .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
            }
            None
        };
        let index_path = reader
            .as_ref()
            .map_or_else(|| dir.join("index"), |r| r.copy.clone());
        let db = Index::open(&index_path, dir, options.cache_capacity, false)?;
        let created = match db.get(codec::key(prefix::META, meta::FORMAT))? {
            None => {
                db.insert(
                    codec::key(prefix::META, meta::FORMAT),
                    &[codec::FORMAT_VERSION],
                )?;
                true
            }
            Some(v)
                if (codec::OLDEST_READABLE..=codec::FORMAT_VERSION).contains(&v[0])
                    && v.len() == 1 =>
            {
                false
            }
            Some(v) => {
                return Err(Error::UnsupportedFormat {
                    found: v.first().copied().unwrap_or(0),
                    supported: codec::FORMAT_VERSION,
                });
            }
        };
        let store = DiskStore {
            db: RwLock::new(Some(db)),
            dir: dir.to_path_buf(),
            cache_capacity: options.cache_capacity,
            chunk_events: options.chunk_events.max(1),
            wal_max_bytes: options.wal_max_bytes,
            index_is_new: created,
            skip_damaged: options.skip_damaged,
            keep_ms: options.keep_ms,
            shared: RwLock::new(Shared {
                chunks: Vec::new(),
                open: OpenChunk::default(),
                names: HashMap::new(),
                persons: 0,
                wal: 0,
                links: Links::default(),
                deletions: Arc::default(),
            }),
            writer: Mutex::new(None),
            wal_file: Mutex::new(None),
            synced_blobs: Mutex::new(HashSet::new()),
            compacting: Mutex::new(()),
            props_files: Arc::default(),
            props_queue: std::sync::OnceLock::new(),
            failed: AtomicBool::new(false),
            undo: Mutex::new(Undo::default()),
            epoch: AtomicU64::new(0),
            #[cfg(test)]
            faults: faults::Faults::default(),
            reader,
        };
        // Only a new store has written anything (its format marker); opening
        // an existing one for a query must not cost an fsync.
        if created && !options.read_only {
            store.flush_index()?;
            // The new directories' entries, up to the data directory.
            for d in ["index", "chunks", "wal"] {
                chunk::sync_dir(&dir.join(d))?;
            }
            chunk::sync_dir(dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                chunk::sync_dir(parent)?;
            }
        }
        *store.shared.write() = store.load(false)?.shared;
        Ok(store)
    }

    /// The failpoint after a seal's log was created (the log exists, as
    /// when its directory fsync fails).
    #[allow(clippy::unnecessary_wraps)]
    fn log_created(&self, wal: Wal) -> Result<Wal, Error> {
        failpoint!(self, LogCreate);
        Ok(wal)
    }

    /// Verifies every checksum and reference of the store in `dir` (it must
    /// not be held by a collector): the index against the files, every
    /// section of every chunk, the person dictionary, the id index and the
    /// log. Returns the problems, each naming a file; empty when sound.
    pub fn check(dir: &Path) -> Result<Check, Error> {
        let options = StoreOptions {
            skip_damaged: true,
            read_only: true,
            ..StoreOptions::default()
        };
        let store = match DiskStore::open(dir, &options) {
            Ok(store) => store,
            Err(e @ Error::Locked { .. }) => return Err(e),
            // The index or the files disagree (a damaged log is cut by
            // `repair` before it rebuilds the index).
            Err(e) => {
                return Ok(Check {
                    problems: vec![e.to_string()],
                    rebuild_index: true,
                    ..Check::default()
                });
            }
        };
        let mut report = Check::default();
        let loaded = match store.load(false) {
            Ok(l) => l,
            Err(e) => {
                report.problems.push(e.to_string());
                report.rebuild_index = true;
                return Ok(report);
            }
        };
        for n in &loaded.plan.missing {
            report.problems.push(format!(
                "{}: missing",
                chunk::path(&store.chunk_dir(), *n as u32).display()
            ));
        }
        let db = store.db()?;
        let chunks = &loaded.shared.chunks;
        let names = loaded.shared.names.len() as u32;
        // Each finding with whether rebuilding the index would mend it.
        let findings: Vec<Vec<(String, bool)>> = chunks
            .par_iter()
            .filter(|c| !loaded.plan.missing.contains(&u64::from(c.number)))
            .map(|c| {
                let mut found = Vec::new();
                match chunk::read_trailer(c.path()) {
                    Ok(own) if own == c.header => {}
                    Ok(_) => found.push((
                        format!(
                            "{}: its header differs from the index's copy",
                            c.path().display()
                        ),
                        true,
                    )),
                    Err(e) => found.push((e.to_string(), false)),
                }
                if let Err(e) = c.verify() {
                    found.push((e.to_string(), false));
                }
                // Derived from the chunk: `--repair` removes a bad one and
                // the next writer rebuilds it.
                let props = props::path(&store.chunk_dir(), c.number);
                let bad_props = match PropsFile::open(&store.chunk_dir(), c.number) {
                    Ok(None) => None,
                    Ok(Some(f)) => f.verify().err().map(|e| e.to_string()).or_else(|| {
                        let fits = f.names() == c.header.names.len()
                            && c.header.names.iter().all(|s| f.matches(s.name, s.rows));
                        (!fits).then(|| format!("{}: does not describe its chunk", props.display()))
                    }),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(e) = bad_props {
                    found.push((
                        format!("{e} (a property file: `tally check --repair` removes it and it is rebuilt from its chunk)"),
                        false,
                    ));
                }
                if let Some(s) = c.header.names.iter().find(|s| s.name >= names) {
                    let name = s.name;
                    let path = c.path().display();
                    found.push((
                        format!("{path}: names event name id {name} the index does not know"),
                        true,
                    ));
                }
                // Unreadable ids are reported by `verify`.
                let ids = c.ids().unwrap_or_default();
                let uncovered = ids
                    .chunk_by(|a, b| a[..codec::ID_PREFIX] == b[..codec::ID_PREFIX])
                    .any(|group| {
                        let key = codec::id_key(&Uuid::from_bytes(group[0]));
                        let (lo, hi) = (
                            codec::id_probe(&group[0]),
                            codec::id_probe(group.last().expect("non-empty")),
                        );
                        !read_spans(&db, &key).is_ok_and(|spans| {
                            spans
                                .0
                                .iter()
                                .any(|s| s.chunk == c.number && s.lo <= lo && s.hi >= hi)
                        })
                    });
                if uncovered {
                    found.push((
                        format!(
                            "{}: the id index does not cover the ids of {} (duplicates of them \
                             would be stored again)",
                            store.dir.join("index").display(),
                            c.path().display()
                        ),
                        true,
                    ));
                }
                found
            })
            .collect();
        for (problem, index) in findings.into_iter().flatten() {
            report.problems.push(problem);
            report.rebuild_index |= index;
        }
        if let Err(e) = Deletions::load(&store.dir) {
            report.problems.push(e.to_string());
        }
        if loaded.plan.missing.is_empty() {
            let published = loaded.shared.persons - loaded.shared.open.new_persons.len() as u32;
            if let Err(e) = person_dictionary(chunks, published) {
                report.problems.push(format!("person dictionary: {e}"));
            }
        }
        report.chunks = chunks.len();
        report.events = chunks
            .iter()
            .map(|c| u64::from(c.header.events))
            .sum::<u64>()
            + loaded.shared.open.events.len() as u64;
        report.logged = loaded.shared.open.events.len();
        Ok(report)
    }

    /// Copies the store into `dest` (a new or empty directory) while
    /// ingest goes on: every chunk sealed so far and the log's acknowledged
    /// records, captured under the writer's lock (appends wait only while
    /// the log is read; chunk files are immutable and copied after). The
    /// copy then gets its own index by adopting every chunk, which verifies
    /// every checksum, so a backup that returns is known to be readable.
    /// Returns the events it holds.
    fn backup_into(&self, dest: &Path) -> Result<u64, Error> {
        if std::fs::read_dir(dest).is_ok_and(|mut d| d.next().is_some()) {
            return Err(Error::Config(format!(
                "{} is not empty: a backup goes into a new or empty directory",
                dest.display()
            )));
        }
        let (chunks, log, deleted) = {
            let _writer = self.writer.lock();
            let shared = self.shared.read();
            let path = wal::path(&self.wal_dir(), shared.wal);
            let mut log = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
            };
            // Only what was fsync'd: records of a commit in flight were not
            // acknowledged before the backup started.
            if let Some(t) = self
                .wal_file
                .lock()
                .as_ref()
                .filter(|t| t.number == shared.wal)
            {
                log.truncate(t.synced.load(Ordering::SeqCst) as usize);
            }
            log.truncate(codec::wal_intact_prefix(&log));
            let deletions = match std::fs::read(deletions::path(&self.dir)) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io("reading the deletions file", e)),
            };
            (shared.chunks.clone(), log, deletions)
        };
        let store = dest.join("store");
        for sub in ["chunks", "wal"] {
            let d = store.join(sub);
            std::fs::create_dir_all(&d)
                .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        }
        chunks.par_iter().try_for_each(|c| {
            let to = chunk::path(&store.join("chunks"), c.number);
            std::fs::copy(c.path(), &to)
                .and_then(|_| File::open(&to)?.sync_all())
                .map_err(|e| Error::io(format!("copying {}", c.path().display()), e))?;
            // Its property file too, when it has one (the copy's writer
            // would rebuild it otherwise).
            let from = props::path(&self.chunk_dir(), c.number);
            if from.exists() {
                let to = props::path(&store.join("chunks"), c.number);
                std::fs::copy(&from, &to)
                    .and_then(|_| File::open(&to)?.sync_all())
                    .map_err(|e| Error::io(format!("copying {}", from.display()), e))?;
            }
            Ok::<(), Error>(())
        })?;
        // The log is numbered by the chunk count (the commit-point rule).
        let log_path = wal::path(&store.join("wal"), chunks.len() as u64);
        std::fs::write(&log_path, &log)
            .and_then(|()| File::open(&log_path)?.sync_all())
            .map_err(|e| Error::io(format!("writing {}", log_path.display()), e))?;
        // The deletions too: the copied chunks still hold deleted events.
        if let Some(bytes) = deleted {
            let to = deletions::path(&store);
            std::fs::write(&to, bytes)
                .and_then(|()| File::open(&to)?.sync_all())
                .map_err(|e| Error::io(format!("writing {}", to.display()), e))?;
        }
        for d in ["chunks", "wal"] {
            chunk::sync_dir(&store.join(d))?;
        }
        let copy = DiskStore::open(&store, &StoreOptions::default())?;
        copy.prepare_writer()?;
        let events = copy.stats().events;
        copy.close()?;
        chunk::sync_dir(&store)?;
        chunk::sync_dir(dest)?;
        Ok(events)
    }

    /// Repairs what can be repaired without losing an intact event: an
    /// index that disagrees with the files (or cannot be opened) is set
    /// aside and rebuilt from the chunk files; a log damaged before its
    /// end is copied to `DIR/damaged/` and cut before the damage. Returns
    /// what it did. Damaged chunk files are not repaired in place.
    pub fn repair(dir: &Path) -> Result<Vec<String>, Error> {
        let mut done = Vec::new();
        let wal_dir = dir.join("wal");
        for n in wal::list(&wal_dir)? {
            let path = wal::path(&wal_dir, n);
            let bytes = std::fs::read(&path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            if codec::decode_wal(&bytes).is_ok() {
                continue;
            }
            let keep = codec::wal_intact_prefix(&bytes);
            let copy = damaged_copy(dir, &path)?;
            wal::cut(&wal_dir, n, keep as u64)?;
            done.push(format!(
                "{}: cut at byte {keep} of {} (the damaged part is kept in {})",
                path.display(),
                bytes.len(),
                copy.display()
            ));
        }
        let chunk_dir = dir.join("chunks");
        for n in chunk::numbered_files(&chunk_dir, "props")? {
            let n = n as u32;
            let path = props::path(&chunk_dir, n);
            let good =
                PropsFile::open(&chunk_dir, n).is_ok_and(|f| f.is_some_and(|f| f.verify().is_ok()));
            if !good {
                remove(&path)?;
                done.push(format!(
                    "{}: removed (the next `tally serve` rebuilds it from its chunk)",
                    path.display()
                ));
            }
        }
        if DiskStore::check(dir)?.rebuild_index {
            let index = dir.join("index");
            let aside = dir.join(format!("index.damaged-{}", stamp()));
            let moved = match std::fs::rename(&index, &aside) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(Error::io(format!("moving {}", index.display()), e)),
            };
            chunk::sync_dir(dir)?;
            let store = DiskStore::open(dir, &StoreOptions::default())?;
            store.prepare_writer()?;
            store.close()?;
            let old = if moved {
                format!(" (the old one is in {})", aside.display())
            } else {
                String::new()
            };
            done.push(format!(
                "rebuilt the index from {} chunk file(s){old}",
                store.shared.read().chunks.len(),
            ));
        }
        Ok(done)
    }

    /// Reads every event with `from <= timestamp < to` that is intact,
    /// reporting each chunk that cannot be read to `damaged` (and what of
    /// it was already given to `each`) instead of stopping there.
    pub fn scan_intact_events(
        &self,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(Event) -> Result<(), Error>,
        damaged: &mut dyn FnMut(String),
    ) -> Result<(), Error> {
        self.scan_chunks(from, to, each, Some(damaged))
    }

    fn scan_chunks(
        &self,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(Event) -> Result<(), Error>,
        mut damaged: Option<&mut dyn FnMut(String)>,
    ) -> Result<(), Error> {
        // One snapshot of both, so a seal running meanwhile (which moves
        // the open events into a chunk) can neither hide nor double them.
        let (chunks, open, deleted) = {
            let shared = self.shared.read();
            (
                shared.chunks.clone(),
                shared.open.events.clone(),
                shared.deletions.clone(),
            )
        };
        let from = from.max(self.kept_from());
        for c in chunks {
            if c.header.max_ts < from || c.header.min_ts >= to {
                continue;
            }
            let mut given = 0u64;
            // Errors of `each` (the export's output) are not the chunk's.
            let mut downstream = None;
            let read = c.events(&mut |e| {
                if (from..to).contains(&e.timestamp) && !deleted.event_deleted(Some(c.number), &e) {
                    if let Err(err) = each(e) {
                        downstream = Some(err);
                        return Err(Error::Unavailable("stopped".into()));
                    }
                    given += 1;
                }
                Ok(())
            });
            if let Some(err) = downstream {
                return Err(err);
            }
            match (read, damaged.as_deref_mut()) {
                (Ok(()), _) => {}
                (Err(e), Some(report)) => report(format!(
                    "{e} ({given} of its {} events were read before the damage)",
                    c.header.events
                )),
                (Err(e), None) => {
                    let e = match e {
                        Error::Corrupt(msg) => msg,
                        other => other.to_string(),
                    };
                    return Err(Error::Damaged(format!(
                        "{e} (`tally export --skip-damaged` reads what is intact)"
                    )));
                }
            }
        }
        for e in open {
            if (from..to).contains(&e.timestamp) {
                each(e)?;
            }
        }
        Ok(())
    }

    /// The earliest timestamp reads keep (`--keep`), `i64::MIN` without.
    fn kept_from(&self) -> i64 {
        self.keep_ms
            .map_or(i64::MIN, |k| tally_event::time::now_ms().saturating_sub(k))
    }

    /// Starts the writer now (a collector does this at start), so that
    /// what a crash left is repaired, and damage reported, before the
    /// first request rather than at it.
    pub fn prepare_writer(&self) -> Result<(), Error> {
        self.with_writer(|_, _| Ok(()))
    }

    /// Chunk `c`'s property file, if it has a usable one (one that
    /// describes exactly its names and rows); a damaged one is logged and
    /// its chunk's events are read instead until a writer rebuilds it.
    fn props_file(&self, c: &Chunk) -> Option<Arc<PropsFile>> {
        if let Some(f) = self.props_files.lock().get(&c.number) {
            return f.clone();
        }
        let file = match PropsFile::open(&self.chunk_dir(), c.number) {
            Ok(Some(f))
                if f.names() == c.header.names.len()
                    && c.header.names.iter().all(|s| f.matches(s.name, s.rows)) =>
            {
                Some(Arc::new(f))
            }
            Ok(Some(_)) => {
                tracing::warn!(
                    chunk = c.number,
                    "a property file does not match its chunk; reading the chunk's events instead"
                );
                None
            }
            // Not written yet (it follows the seal) or not at all yet (a
            // format 2 store): not remembered, so it is found once written.
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "reading the chunk's events instead of its property file");
                None
            }
        };
        self.props_files.lock().insert(c.number, file.clone());
        file
    }

    fn chunk_dir(&self) -> PathBuf {
        self.dir.join("chunks")
    }

    fn wal_dir(&self) -> PathBuf {
        self.dir.join("wal")
    }

    /// The index, or an error while it is being reopened after a failure.
    fn db(&self) -> Result<Index, Error> {
        self.db
            .read()
            .clone()
            .ok_or_else(|| Error::Unavailable("the index is being reopened".into()))
    }

    fn counter(&self, db: &Index, name: &[u8]) -> Result<u64, Error> {
        db.get(codec::key(prefix::META, name))?
            .map_or(Ok(0), |v| codec::decode_counter(&v))
    }

    fn load_dictionary(&self, db: &Index, pfx: u8) -> Result<HashMap<String, u32>, Error> {
        let mut map = HashMap::new();
        for kv in db.scan_prefix(pfx) {
            let (k, v) = kv?;
            let name = String::from_utf8(k[1..].to_vec())
                .map_err(|_| Error::corrupt("dictionary key is not UTF-8"))?;
            map.insert(name, codec::decode_id(&v)?);
        }
        Ok(map)
    }

    /// Reads what is on disk: which files are the store ([`recovery`]), the
    /// chunks the index lists and those it has not caught up with (from
    /// their own headers), and the open chunk by replaying the log; with
    /// `dictionary`, also every person key with its id. Writes nothing.
    fn load(&self, dictionary: bool) -> Result<Loaded, Error> {
        let db = self.db()?;
        let index = recovery::IndexView {
            chunks: self.counter(&db, meta::CHUNKS)? as u32,
            wal: self.counter(&db, meta::WAL)?,
        };
        let disk = recovery::DiskView {
            chunks: chunk::numbered_files(&self.chunk_dir(), "chunk")?,
            logs: wal::list(&self.wal_dir())?,
        };
        let witness = !(self.index_is_new && index.chunks == 0);
        let plan = recovery::plan(witness.then_some(index), &disk)
            .map_err(|what| Error::Damaged(format!("{}: {what}", self.dir.display())))?;
        if !self.skip_damaged {
            plan.check_complete().map_err(|what| {
                Error::Damaged(format!(
                    "{}: {what} (`tally export --skip-damaged` reads what is intact)",
                    self.dir.display()
                ))
            })?;
        }
        let listed = index.chunks.min(plan.chunks);
        let mut chunks = Vec::with_capacity(plan.chunks as usize);
        for kv in db.scan_prefix(prefix::CHUNK) {
            let (k, v) = kv?;
            let n = codec::decode_id(&k[1..])?;
            if n >= listed {
                break;
            }
            if n as usize != chunks.len() {
                return Err(Error::Damaged(format!(
                    "the index skips chunk {} (next listed: {n})",
                    chunks.len()
                )));
            }
            chunks.push(Arc::new(Chunk::new(
                &self.chunk_dir(),
                n,
                ChunkHeader::decode(&v)?,
            )));
        }
        if chunks.len() != listed as usize {
            return Err(Error::Damaged(format!(
                "the index counts {} chunks but lists {}",
                index.chunks,
                chunks.len()
            )));
        }
        let mut names = self.load_dictionary(&db, prefix::NAME)?;
        let mut persons = self.counter(&db, meta::NEXT_PERSON)? as u32;
        let mut adopted_names = Vec::new();
        for n in plan.adopt.clone() {
            let c = match Chunk::adopt(&self.chunk_dir(), n) {
                Ok(c) => c,
                Err(e) if self.skip_damaged => {
                    tracing::warn!(error = %e, "skipping a damaged chunk the index does not list");
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Names get ids in the order events first use them, so replaying
            // the adopted chunks' events gives their new names the ids the
            // writer gave them; the chunk's own columns confirm it.
            let mut rows: HashMap<u32, u32> = HashMap::new();
            c.events(&mut |e| {
                let id = intern(&mut names, &e.event, &mut adopted_names);
                *rows.entry(id).or_default() += 1;
                Ok(())
            })?;
            let expected: HashMap<u32, u32> =
                c.header.names.iter().map(|s| (s.name, s.rows)).collect();
            if rows != expected {
                return Err(Error::Damaged(format!(
                    "{}: its event names do not match the index's names (run `tally check --repair`)",
                    c.path().display()
                )));
            }
            let introduced = c.persons()?.len() as u32;
            persons = persons.max(c.header.first_person + introduced);
            chunks.push(Arc::new(c));
        }
        let (events, wal_valid) = if disk.logs.binary_search(&plan.wal).is_ok() {
            wal::read(&self.wal_dir(), plan.wal)?
        } else {
            (Vec::new(), 0)
        };
        // Links recorded by the chunks' property files; a chunk without one
        // (a format 2 store not upgraded yet) offers its events' links.
        self.props_files.lock().clear();
        let mut links = Links::default();
        let mut without = Vec::new();
        // Read and decoded on every core; merged in chunk order.
        let recorded: Vec<Option<Vec<LinkRecord>>> = chunks
            .par_iter()
            .map(|c| self.props_file(c).map(|f| f.links()).transpose())
            .collect::<Result<_, Error>>()?;
        for (c, records) in chunks.iter().zip(recorded) {
            match records {
                Some(records) => records.into_iter().for_each(|r| links.record(r)),
                None => without.push(c.clone()),
            }
        }
        // Only a log to replay (or a chunk without links recorded) needs the
        // person dictionary (a query after a clean stop or an import reads
        // no person key at all).
        let mut published = if dictionary || !events.is_empty() || !without.is_empty() {
            person_dictionary(&chunks, persons)?
        } else {
            HashMap::new()
        };
        for c in &without {
            c.events(&mut |e| {
                if let Some((anon, link)) = offer(&e, |k| published.get(k).copied()) {
                    links.offer(anon, link);
                }
                Ok(())
            })?;
        }
        // A deleted person's linking events are gone for every read: their
        // links no longer hold (the log's links, all newer, follow).
        let deletions = Deletions::load(&self.dir)?;
        deletions.unlink(&mut links);

        // Replaying interns exactly as the writer did: a person or name the
        // last seal published has its id; newer ones get the next ids in
        // log order, as they did when accepted.
        let mut open = OpenChunk::default();
        let mut seen: HashMap<String, u32> = HashMap::new();
        for e in events {
            let key = e.person();
            let person = match seen.get(key) {
                Some(&id) => id,
                None => {
                    let id = match published.get(key) {
                        Some(&id) => id,
                        None => {
                            let id = persons;
                            persons += 1;
                            open.new_persons.push((key.to_string(), id));
                            links.interned(key, id);
                            id
                        }
                    };
                    seen.insert(key.to_string(), id);
                    id
                }
            };
            let lookup = |k: &str| seen.get(k).or_else(|| published.get(k)).copied();
            if let Some((anon, link)) = offer(&e, lookup) {
                links.offer(anon, link);
            }
            let name = intern(&mut names, &e.event, &mut open.new_names);
            open.push(e, person, name);
        }
        if dictionary {
            published.extend(open.new_persons.iter().cloned());
        }
        Ok(Loaded {
            shared: Shared {
                chunks,
                open,
                names,
                persons,
                wal: plan.wal,
                links,
                deletions: Arc::new(deletions),
            },
            persons: published,
            wal_valid,
            plan,
            adopted_names,
        })
    }

    /// Undoes what failed commits left, reloads from disk and prepares to
    /// write: the index catches up with adopted chunks, what an
    /// interrupted seal left is removed (or set aside), a log numbered the
    /// old way gets the new numbering, and a torn log tail is cut.
    fn start_writer(&self) -> Result<WriterState, Error> {
        self.undo_failures()?;
        let Loaded {
            shared: mut fresh,
            persons,
            wal_valid,
            plan,
            adopted_names,
        } = self.load(true)?;
        self.check_headers(&fresh.chunks[..plan.adopt.start as usize])?;
        let db = self.db()?;
        let mut prefixes = HashMap::new();
        if !plan.adopt.is_empty() {
            let adopted = &fresh.chunks[plan.adopt.start as usize..];
            let ids = adopted
                .iter()
                .map(|c| c.ids())
                .collect::<Result<Vec<_>, _>>()?;
            let headers: Vec<(u32, &ChunkHeader)> =
                adopted.iter().map(|c| (c.number, &c.header)).collect();
            let published_persons = fresh.persons - fresh.open.new_persons.len() as u32;
            let batch = self.index_batch(
                &db,
                &mut prefixes,
                &headers,
                &ids,
                &adopted_names,
                Counters {
                    chunks: plan.chunks,
                    wal: plan.wal,
                    persons: published_persons,
                    names: (fresh.names.len() - fresh.open.new_names.len()) as u32,
                },
            )?;
            db.apply(batch)?;
            self.flush_index()?;
            tracing::warn!(
                chunks = ?plan.adopt,
                "the index had not recorded the last seal(s) (a crash or a failed write); \
                 rebuilt it from the chunk files"
            );
        }
        // A log numbered by seals (before the commit-point rule) is renamed
        // to the chunk count, so that recovery never depends on the index to
        // know which chunks it follows.
        let legacy = plan.wal != u64::from(plan.chunks)
            && std::fs::metadata(wal::path(&self.wal_dir(), plan.wal)).is_ok();
        if legacy {
            let to = u64::from(plan.chunks);
            let from_path = wal::path(&self.wal_dir(), plan.wal);
            std::fs::rename(&from_path, wal::path(&self.wal_dir(), to))
                .map_err(|e| Error::io(format!("renaming {}", from_path.display()), e))?;
            hooks::renamed(&from_path, &wal::path(&self.wal_dir(), to));
            chunk::sync_dir(&self.wal_dir())?;
            db.insert(
                codec::key(prefix::META, meta::WAL),
                &codec::encode_counter(to),
            )?;
            self.flush_index()?;
            fresh.wal = to;
        } else if plan.wal != self.counter(&db, meta::WAL)? {
            db.insert(
                codec::key(prefix::META, meta::WAL),
                &codec::encode_counter(plan.wal),
            )?;
            self.flush_index()?;
        }
        for n in plan.stale_logs {
            remove(&wal::path(&self.wal_dir(), n))?;
        }
        for n in &plan.leftover_chunks {
            let path = chunk::path(&self.chunk_dir(), *n as u32);
            if plan.leftovers_redundant {
                remove(&path)?;
            } else {
                set_aside(&self.dir, &path)?;
            }
            // Derived from that chunk: it goes with it.
            let props = props::path(&self.chunk_dir(), *n as u32);
            if props.exists() {
                remove(&props)?;
            }
        }
        for n in chunk::numbered_files(&self.chunk_dir(), "chunk.tmp")? {
            remove(&chunk::path(&self.chunk_dir(), n as u32).with_extension("chunk.tmp"))?;
        }
        for n in chunk::numbered_files(&self.chunk_dir(), "props.tmp")? {
            remove(&props::path(&self.chunk_dir(), n as u32).with_extension("props.tmp"))?;
        }
        self.write_missing_props(&fresh, &persons)?;
        let wal = Wal::open(&self.wal_dir(), fresh.wal, wal_valid)?;
        let names = fresh.names.clone();
        *self.wal_file.lock() = Some(SyncTarget {
            number: fresh.wal,
            file: wal.sync_handle(),
            len: wal.len_handle(),
            synced: Arc::new(AtomicU64::new(wal.len())),
        });
        *self.shared.write() = fresh;
        Ok(WriterState {
            persons,
            names,
            wal,
            prefixes,
            id_sections: HashMap::new(),
        })
    }

    /// Writes the property file of every chunk without a usable one: a
    /// format 2 store's chunks (then marks the store format 3), a chunk
    /// adopted after a crash, a damaged file. Each is rebuilt from its
    /// chunk's events; nothing else changes.
    fn write_missing_props(
        &self,
        shared: &Shared,
        persons: &HashMap<String, u32>,
    ) -> Result<(), Error> {
        let missing: Vec<&Arc<Chunk>> = shared
            .chunks
            .iter()
            .filter(|c| self.props_file(c).is_none())
            .collect();
        if !missing.is_empty() {
            tracing::info!(
                chunks = missing.len(),
                "writing property files (filters, breakdowns and identity links read them)"
            );
        }
        for c in &missing {
            let mut events = Vec::with_capacity(c.header.events as usize);
            c.events(&mut |e| {
                events.push(e);
                Ok(())
            })?;
            let refs: Vec<&Event> = events.iter().collect();
            let names = events
                .iter()
                .map(|e| {
                    shared.names.get(&e.event).copied().ok_or_else(|| {
                        Error::corrupt(format!(
                            "{}: event name '{}' is not in the index",
                            c.path().display(),
                            e.event
                        ))
                    })
                })
                .collect::<Result<Vec<u32>, Error>>()?;
            let built = props::build(&refs, &names);
            let introduced = c.persons()?;
            let introduced: Vec<&str> = introduced.iter().map(String::as_str).collect();
            let links = link_records(&shared.links, &[], &refs, &introduced, |k| {
                persons.get(k).copied()
            });
            props::write(&self.chunk_dir(), c.number, &built, &links)?;
            self.props_files.lock().remove(&c.number);
        }
        if !missing.is_empty() {
            chunk::sync_dir(&self.chunk_dir())?;
        }
        let db = self.db()?;
        let format = codec::key(prefix::META, meta::FORMAT);
        if db
            .get(&format)?
            .is_none_or(|v| v.as_ref() != [codec::FORMAT_VERSION])
        {
            db.insert(format, &[codec::FORMAT_VERSION])?;
            self.flush_index()?;
            tracing::info!(format = codec::FORMAT_VERSION, "the store was upgraded");
        }
        Ok(())
    }

    /// Compares every listed chunk's header in the index with the copy at
    /// the end of its file: a file swapped, truncated or damaged where the
    /// index cannot see it is caught before the writer relies on it.
    fn check_headers(&self, chunks: &[Arc<Chunk>]) -> Result<(), Error> {
        chunks.par_iter().try_for_each(|c| {
            let own = chunk::read_trailer(c.path())?;
            if own != c.header {
                return Err(Error::Damaged(format!(
                    "{} does not match the index's header for it (run `tally check`)",
                    c.path().display()
                )));
            }
            Ok(())
        })
    }

    /// Before reloading after a failure: cut the log back to what was
    /// synced, remove a log a failed seal may have created, and reopen the
    /// index from its files.
    fn undo_failures(&self) -> Result<(), Error> {
        if !self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut undo = self.undo.lock();
        if let Some(n) = undo.abandoned_log {
            remove(&wal::path(&self.wal_dir(), n))?;
            chunk::sync_dir(&self.wal_dir())?;
            undo.abandoned_log = None;
        }
        if let Some((n, len)) = undo.cut {
            wal::cut(&self.wal_dir(), n, len)?;
            undo.cut = None;
        }
        drop(undo);
        self.reopen_index()?;
        Ok(())
    }

    fn reopen_index(&self) -> Result<(), Error> {
        let mut slot = self.db.write();
        if let Some(db) = slot.take() {
            // Best effort: whatever sled could not flush, recovery rebuilds.
            let _ = db.flush();
            drop(db);
        }
        *slot = Some(Index::open(
            &self.dir.join("index"),
            &self.dir,
            self.cache_capacity,
            true,
        )?);
        Ok(())
    }

    /// Runs `f` with the writer, starting it if needed. After any failure
    /// the store refuses writes until a writer has reloaded everything from
    /// the files: the in-memory state may have moved ahead of what was
    /// stored, and a client's retry must then not count as a duplicate.
    fn with_writer<T>(
        &self,
        f: impl FnOnce(&Self, &mut WriterState) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut guard = self.writer.lock();
        if self.failed.load(Ordering::SeqCst) {
            *guard = None;
        }
        if self.skip_damaged || self.reader.is_some() {
            return Err(Error::Unavailable(
                "the store was opened to read only".into(),
            ));
        }
        if guard.is_none() {
            let started = self.start_writer();
            match started {
                Ok(w) => {
                    *guard = Some(w);
                    if self.failed.swap(false, Ordering::SeqCst) {
                        self.epoch.fetch_add(1, Ordering::SeqCst);
                        tracing::info!(
                            "the store reloaded its state from disk and accepts writes again"
                        );
                    }
                }
                Err(e) => {
                    if !self.failed.load(Ordering::SeqCst) {
                        // A first start that fails (damage) leaves nothing to undo.
                        return Err(e);
                    }
                    return Err(Error::Unavailable(format!(
                        "recovering from an earlier failure: {e}"
                    )));
                }
            }
        }
        let w = guard.as_mut().expect("just started");
        let result = f(self, w);
        if result.is_err() {
            self.fail(w.wal.number());
            *guard = None;
        }
        result
    }

    /// Records a failure: writes are refused until a reload, which cuts
    /// log `wal` back to what was synced. Under the `undo` lock, which
    /// [`Ingest::sync`] holds to record a successful fsync, so a sync
    /// either counts before the failure (and its bytes are kept) or is not
    /// acknowledged.
    fn fail(&self, wal: u64) {
        let mut undo = self.undo.lock();
        let synced = {
            let target = self.wal_file.lock();
            target
                .as_ref()
                .filter(|t| t.number == wal)
                .map(|t| t.synced.load(Ordering::SeqCst))
        };
        if let Some(synced) = synced {
            let keep = match undo.cut {
                Some((n, len)) if n == wal => len.min(synced),
                _ => synced,
            };
            undo.cut = Some((wal, keep));
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    /// The ids among `ids` that are in a published chunk. Candidates are
    /// grouped by chunk, so a commit decodes each chunk's ids at most once.
    fn stored(
        &self,
        w: &mut WriterState,
        chunks: &[Arc<Chunk>],
        ids: &[Uuid],
    ) -> Result<HashSet<Uuid>, Error> {
        let mut by_chunk: HashMap<u32, Vec<&Uuid>> = HashMap::new();
        for id in ids {
            let key = codec::id_key(id);
            if !w.prefixes.contains_key(&key) {
                if w.prefixes.len() >= PREFIXES_CACHED {
                    w.prefixes.clear();
                }
                let spans = read_spans(&self.db()?, &key)?;
                w.prefixes.insert(key, spans);
            }
            for n in w.prefixes[&key].candidates(id.as_bytes()) {
                let chunk = chunks
                    .get(n as usize)
                    .ok_or_else(|| Error::corrupt(format!("id index names unknown chunk {n}")))?;
                if chunk.header.may_hold(id) {
                    by_chunk.entry(n).or_default().push(id);
                }
            }
        }
        let mut found = HashSet::new();
        for (n, candidates) in by_chunk {
            let ids = match w.id_sections.get(&n) {
                Some(ids) => ids.clone(),
                None => {
                    if w.id_sections.len() >= ID_SECTIONS_CACHED {
                        w.id_sections.clear();
                    }
                    match chunks[n as usize].ids() {
                        Ok(ids) => {
                            let ids = Arc::new(ids);
                            w.id_sections.insert(n, ids.clone());
                            ids
                        }
                        Err(e) => {
                            // A lost or damaged chunk must not stop every
                            // write of an id it held (a client re-sending
                            // it would get 503 forever): its ids count as
                            // absent, so a re-sent event is stored again.
                            tracing::error!(error = %e, "a chunk's ids cannot be read; its ids are treated as not stored (run `tally check`)");
                            continue;
                        }
                    }
                }
            };
            found.extend(
                candidates
                    .into_iter()
                    .filter(|id| ids.binary_search(id.as_bytes()).is_ok()),
            );
        }
        Ok(found)
    }

    fn append_locked(
        &self,
        w: &mut WriterState,
        events: Vec<Event>,
    ) -> Result<Vec<Outcome>, Error> {
        let mut outcomes = Vec::with_capacity(events.len());
        let mut accepted = Vec::with_capacity(events.len());
        let (open_len, chunks) = {
            let shared = self.shared.read();
            let chunks = shared.chunks.clone();
            let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
            let stored = self.stored(w, &chunks, &ids)?;
            let mut seen = HashSet::with_capacity(events.len());
            for e in events {
                if !seen.insert(e.id) || shared.open.ids.contains(&e.id) || stored.contains(&e.id) {
                    outcomes.push(Outcome::Duplicate);
                } else {
                    outcomes.push(Outcome::Accepted);
                    accepted.push(e);
                }
            }
            (shared.open.events.len(), chunks)
        };
        if accepted.is_empty() {
            return Ok(outcomes);
        }
        let mut new_persons = Vec::new();
        let mut new_names = Vec::new();
        let mut offers = Vec::new();
        let interned: Vec<(u32, u32)> = accepted
            .iter()
            .map(|e| {
                let person = intern(&mut w.persons, e.person(), &mut new_persons);
                let name = intern(&mut w.names, &e.event, &mut new_names);
                offers.extend(offer(e, |k| w.persons.get(k).copied()));
                (person, name)
            })
            .collect();
        let fresh = Fresh {
            events: accepted,
            interned,
            persons: new_persons,
            names: new_names,
            offers,
        };
        if open_len + fresh.events.len() >= self.chunk_events || w.wal.len() >= self.wal_max_bytes {
            self.seal(w, &chunks, fresh, false)?;
        } else {
            failpoint!(self, LogAppend);
            w.wal.append(&fresh.events)?;
            let mut shared = self.shared.write();
            shared.add(fresh);
        }
        Ok(outcomes)
    }

    /// Seals the open chunk and `fresh` into chunk files: full chunks only,
    /// the rest starting the next open chunk, unless `all`.
    ///
    /// The order is the crash argument: chunk files, each durable under its
    /// final name; then the next log, holding the rest, durable with its
    /// directory entry — the commit point ([`recovery`]); then the index;
    /// only once the index is flushed is the old log deleted.
    fn seal(
        &self,
        w: &mut WriterState,
        chunks: &[Arc<Chunk>],
        fresh: Fresh,
        all: bool,
    ) -> Result<(), Error> {
        let shared = self.shared.read();
        let open = &shared.open;
        let events: Vec<&Event> = open.events.iter().chain(&fresh.events).collect();
        let interned: Vec<(u32, u32)> = open
            .interned
            .iter()
            .chain(&fresh.interned)
            .copied()
            .collect();
        let mut sealed_len = events.len();
        if !all && w.wal.len() < self.wal_max_bytes {
            sealed_len -= events.len() % self.chunk_events;
        }
        assert!(sealed_len > 0, "a seal writes at least one chunk");
        // Every person given an id so far (those of the rest too) goes
        // into the last new chunk: the dictionary is the chunks' persons
        // in order.
        let new_persons: Vec<(String, u32)> = open
            .new_persons
            .iter()
            .chain(&fresh.persons)
            .cloned()
            .collect();
        let published_persons = shared.persons - open.new_persons.len() as u32;
        let persons = published_persons + new_persons.len() as u32;
        debug_assert!(
            new_persons
                .iter()
                .zip(published_persons..)
                .all(|((_, id), expected)| *id == expected)
        );
        // Chunk files first, each durable under its final name.
        let first = chunks.len() as u32;
        let mut headers = Vec::new();
        let mut sorted_ids = Vec::new();
        let starts: Vec<usize> = (0..sealed_len).step_by(self.chunk_events).collect();
        let mut props_links = Vec::with_capacity(starts.len());
        for (i, &start) in starts.iter().enumerate() {
            failpoint!(self, ChunkWrite);
            let end = (start + self.chunk_events).min(sealed_len);
            let last = i + 1 == starts.len();
            let (header, ids) = chunk::write(
                &self.chunk_dir(),
                first + i as u32,
                &Sealing {
                    events: &events[start..end],
                    interned: &interned[start..end],
                    new_persons: if last { &new_persons } else { &[] },
                    next_person: published_persons,
                },
            )?;
            let introduced: Vec<&str> = if last {
                new_persons.iter().map(|(k, _)| k.as_str()).collect()
            } else {
                Vec::new()
            };
            let links = link_records(
                &shared.links,
                &fresh.offers,
                &events[start..end],
                &introduced,
                |k| w.persons.get(k).copied(),
            );
            props_links.push(links);
            headers.push((first + i as u32, header));
            sorted_ids.push(ids);
        }
        chunk::sync_dir(&self.chunk_dir())?;
        // The commit point: the next log, numbered by the chunk count, with
        // the events that did not fill a chunk (those of the open chunk too
        // when `chunk_events` was lowered since they were logged).
        let next_wal = u64::from(first) + headers.len() as u64;
        let rest: Vec<Event> = events[sealed_len..].iter().map(|e| (*e).clone()).collect();
        let rest_interned = interned[sealed_len..].to_vec();
        let created = Wal::create(&self.wal_dir(), next_wal, &rest);
        let created = created.and_then(|wal| self.log_created(wal));
        let new_wal = match created {
            Ok(wal) => wal,
            Err(e) => {
                // Not committed: removing the log undoes the seal, and the
                // old log still holds every acknowledged event.
                self.undo.lock().abandoned_log = Some(next_wal);
                return Err(e);
            }
        };

        // Then the index.
        let header_refs: Vec<(u32, &ChunkHeader)> = headers.iter().map(|(n, h)| (*n, h)).collect();
        let new_names: Vec<(String, u32)> =
            open.new_names.iter().chain(&fresh.names).cloned().collect();
        let db = self.db()?;
        let batch = self.index_batch(
            &db,
            &mut w.prefixes,
            &header_refs,
            &sorted_ids,
            &new_names,
            Counters {
                chunks: first + headers.len() as u32,
                wal: next_wal,
                persons,
                names: (shared.names.len() + fresh.names.len()) as u32,
            },
        )?;
        failpoint!(self, IndexApply);
        db.apply(batch)?;
        self.flush_index()?;
        let old_wal = shared.wal;
        drop(shared);

        // Published: switch readers over, then drop the old log.
        let mut shared = self.shared.write();
        shared.chunks.extend(
            headers
                .into_iter()
                .map(|(n, h)| Arc::new(Chunk::new(&self.chunk_dir(), n, h))),
        );
        let sealed_open = std::mem::take(&mut shared.open);
        for (e, (person, name)) in rest.into_iter().zip(rest_interned) {
            shared.open.push(e, person, name);
        }
        shared.add_links(&fresh);
        for (key, id) in fresh.names {
            shared.names.insert(key, id);
        }
        shared.persons = persons;
        shared.wal = next_wal;
        drop(shared);
        *self.wal_file.lock() = Some(SyncTarget {
            number: next_wal,
            file: new_wal.sync_handle(),
            len: new_wal.len_handle(),
            synced: Arc::new(AtomicU64::new(new_wal.len())),
        });
        w.wal = new_wal;
        remove(&wal::path(&self.wal_dir(), old_wal))?;
        // The property files, off the commit path: they are derived from
        // the chunks, and a writer rebuilds any a crash prevented.
        let mut sealed = sealed_open.events;
        sealed.extend(fresh.events);
        sealed.truncate(sealed_len);
        let mut sealed = sealed.into_iter();
        for ((i, &start), links) in starts.iter().enumerate().zip(props_links) {
            let end = (start + self.chunk_events).min(sealed_len);
            self.props_queue().send(PropsJob::Write {
                n: first + i as u32,
                events: sealed.by_ref().take(end - start).collect(),
                names: interned[start..end].iter().map(|&(_, n)| n).collect(),
                links,
            });
        }
        Ok(())
    }

    /// The worker that writes property files, started on first use.
    fn props_queue(&self) -> &PropsQueue {
        self.props_queue
            .get_or_init(|| PropsQueue::start(self.chunk_dir(), self.props_files.clone()))
    }

    /// Waits until every property file queued so far is written.
    pub(crate) fn flush_props(&self) {
        if let Some(q) = self.props_queue.get() {
            q.flush();
        }
    }

    /// One sled batch that publishes chunks: their headers, their ids in
    /// the id index (entries read through `prefixes`, the writer's cache),
    /// new names and the counters.
    fn index_batch(
        &self,
        db: &Index,
        prefixes: &mut HashMap<[u8; 1 + codec::ID_PREFIX], IdSpans>,
        headers: &[(u32, &ChunkHeader)],
        sorted_ids: &[Vec<[u8; 16]>],
        new_names: &[(String, u32)],
        counters: Counters,
    ) -> Result<Batch, Error> {
        let mut batch = Batch::default();
        for ((n, h), ids) in headers.iter().zip(sorted_ids) {
            batch.insert(&codec::chunk_key(*n), h.encode());
            for group in ids.chunk_by(|a, b| a[..codec::ID_PREFIX] == b[..codec::ID_PREFIX]) {
                let key = codec::id_key(&Uuid::from_bytes(group[0]));
                let mut spans = match prefixes.remove(&key) {
                    Some(l) => l,
                    None => read_spans(db, &key)?,
                };
                // A rebuild may meet a chunk the entry already lists.
                spans.0.retain(|s| s.chunk != *n);
                spans.0.push(IdSpan {
                    chunk: *n,
                    lo: codec::id_probe(&group[0]),
                    hi: codec::id_probe(group.last().expect("groups are not empty")),
                });
                batch.insert(&key, spans.encode());
                prefixes.insert(key, spans);
            }
        }
        for (key, id) in new_names {
            batch.insert(
                codec::key(prefix::NAME, key.as_bytes()),
                &codec::encode_id(*id),
            );
        }
        for (name, value) in [
            (meta::CHUNKS, u64::from(counters.chunks)),
            (meta::WAL, counters.wal),
            (meta::NEXT_PERSON, u64::from(counters.persons)),
            (meta::NEXT_NAME, u64::from(counters.names)),
        ] {
            batch.insert(
                codec::key(prefix::META, name),
                &codec::encode_counter(value),
            );
        }
        Ok(batch)
    }

    /// Flushes sled and fsyncs its files: sled 0.34 only uses
    /// `sync_file_range`, which does not flush the device's write cache
    /// (sled issue #1452), and writes blobs without any sync at all.
    fn flush_index(&self) -> Result<(), Error> {
        failpoint!(self, IndexFlush);
        self.db()?.flush()?;
        let index = self.dir.join("index");
        let sync = |path: &Path| {
            File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(format!("fsync {}", path.display()), e))
        };
        sync(&index.join("db"))?;
        let blobs = index.join("blobs");
        if let Ok(entries) = std::fs::read_dir(&blobs) {
            let mut synced = self.synced_blobs.lock();
            let mut new_files = false;
            let mut present = HashSet::new();
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !synced.contains(&name) {
                    match File::open(entry.path()).and_then(|f| f.sync_all()) {
                        Ok(()) => new_files = true,
                        // sled's GC removed a superseded blob after we listed
                        // the directory: nothing left to make durable.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => {
                            return Err(Error::io(format!("fsync {}", entry.path().display()), e));
                        }
                    }
                    synced.insert(name.clone());
                }
                present.insert(name);
            }
            // Forget blobs sled has deleted, so the set does not grow forever.
            synced.retain(|name| present.contains(name));
            if new_files {
                sync(&blobs)?;
            }
        }
        hooks::index_flushed(&index);
        Ok(())
    }
}

/// A property file to write.
enum PropsJob {
    /// Chunk `n`'s, from its events in acceptance order.
    Write {
        n: u32,
        events: Vec<Event>,
        names: Vec<u32>,
        links: Vec<LinkRecord>,
    },
    /// Answered once everything before it is written.
    Barrier(std::sync::mpsc::Sender<()>),
}

/// One thread writing property files in seal order. Bounded, so seals
/// wait rather than pile up events in memory when it falls behind.
struct PropsQueue {
    tx: Mutex<Option<std::sync::mpsc::SyncSender<PropsJob>>>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// A store dropped has written the property files of its seals (they are
/// not needed for durability, but a directory a test or a compaction
/// renames next must not change under it).
impl Drop for PropsQueue {
    fn drop(&mut self) {
        self.tx.lock().take();
        if let Some(worker) = self.worker.lock().take() {
            let _ = worker.join();
        }
    }
}

impl PropsQueue {
    fn start(dir: PathBuf, cache: Arc<Mutex<HashMap<u32, Option<Arc<PropsFile>>>>>) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<PropsJob>(2);
        let spawned = std::thread::Builder::new()
            .name("tally-props".into())
            .spawn(move || {
                for job in rx {
                    match job {
                        PropsJob::Write {
                            n,
                            events,
                            names,
                            links,
                        } => {
                            let refs: Vec<&Event> = events.iter().collect();
                            let built = props::build(&refs, &names);
                            if let Err(e) = props::write(&dir, n, &built, &links) {
                                tracing::error!(error = %e, chunk = n, "writing a property file failed; the next start rebuilds it (answers come from the chunk meanwhile)");
                            }
                            cache.lock().remove(&n);
                        }
                        PropsJob::Barrier(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
        let worker = spawned
            .map_err(|e| tracing::error!(error = %e, "could not start the property file writer"))
            .ok();
        PropsQueue {
            tx: Mutex::new(Some(tx)),
            worker: Mutex::new(worker),
        }
    }

    fn send(&self, job: PropsJob) {
        // A worker that is gone (it could not start) leaves the files to
        // the next start.
        if let Some(tx) = self.tx.lock().as_ref() {
            let _ = tx.send(job);
        }
    }

    fn flush(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        self.send(PropsJob::Barrier(done));
        let _ = wait.recv();
    }
}

/// The accepted events of one commit, interned.
#[derive(Default)]
struct Fresh {
    events: Vec<Event>,
    interned: Vec<(u32, u32)>,
    persons: Vec<(String, u32)>,
    names: Vec<(String, u32)>,
    /// The identity links the events offer.
    offers: Vec<(LinkAnon, Link)>,
}

/// The published person dictionary: the persons sections of `chunks` in
/// order, which must hand out exactly the ids `0..count`.
fn person_dictionary(chunks: &[Arc<Chunk>], count: u32) -> Result<HashMap<String, u32>, Error> {
    let mut map = HashMap::with_capacity(count as usize);
    let sections: Vec<Vec<String>> = chunks
        .par_iter()
        .map(|c| c.persons())
        .collect::<Result<_, _>>()?;
    for (c, keys) in chunks.iter().zip(sections) {
        if !keys.is_empty() && c.header.first_person as usize != map.len() {
            return Err(Error::corrupt(format!(
                "chunk {} introduces persons from {}, expected {}",
                c.number,
                c.header.first_person,
                map.len()
            )));
        }
        for key in keys {
            let id = map.len() as u32;
            map.insert(key, id);
        }
    }
    if map.len() != count as usize {
        return Err(Error::corrupt(format!(
            "the chunks introduce {} persons, the index counts {count}",
            map.len()
        )));
    }
    Ok(map)
}

impl Shared {
    fn add(&mut self, fresh: Fresh) {
        self.add_links(&fresh);
        for (key, id) in &fresh.names {
            self.names.insert(key.clone(), *id);
        }
        self.persons += fresh.persons.len() as u32;
        self.open.new_persons.extend(fresh.persons);
        self.open.new_names.extend(fresh.names);
        for (e, (person, name)) in fresh.events.into_iter().zip(fresh.interned) {
            self.open.push(e, person, name);
        }
    }
}

/// The identity link `e` offers (SPEC §1), if it carries both ids;
/// `person` finds a key's person id. The user always has one (it is the
/// event's own person key, interned first).
fn offer(e: &Event, person: impl Fn(&str) -> Option<u32>) -> Option<(LinkAnon, Link)> {
    let (user, anon) = (e.user_id.as_deref()?, e.anonymous_id.as_deref()?);
    let user_id = person(user)?;
    let anon = match person(anon) {
        Some(id) => LinkAnon::Person(id),
        None => LinkAnon::Key(anon.to_string()),
    };
    Some((
        anon,
        Link {
            ts: e.timestamp,
            user: user_id,
            user_key: user.into(),
        },
    ))
}

impl Shared {
    /// `fresh`'s links: its offers, then its new persons (an offer may
    /// name a key a later event of the same commit interned).
    fn add_links(&mut self, fresh: &Fresh) {
        for (anon, link) in &fresh.offers {
            self.links.offer(anon.clone(), link.clone());
        }
        for (key, id) in &fresh.persons {
            self.links.interned(key, *id);
        }
    }
}

/// The links a chunk's property file records (loading merges every
/// file's): for each anonymous id a linking event of the chunk names, its
/// link if the chunk holds the winning one (so each link is written about
/// once, not by every chunk that repeats it); and for each person key the
/// chunk introduced that is linked, its link by id (a link made before the
/// key had an id was recorded under the key). `base` is what was known, `pending` offers not in it yet (the
/// sealing commit's); `person` finds a key's id.
fn link_records(
    base: &Links,
    pending: &[(LinkAnon, Link)],
    events: &[&Event],
    introduced: &[&str],
    person: impl Fn(&str) -> Option<u32>,
) -> Vec<LinkRecord> {
    let resolve =
        |key: &str| person(key).map_or_else(|| LinkAnon::Key(key.to_string()), LinkAnon::Person);
    let mut own = Links::default();
    let mut keys: Vec<&str> = Vec::new();
    for e in events {
        if let Some((anon, link)) = offer(e, &person) {
            keys.extend(e.anonymous_id.as_deref());
            own.offer(anon, link);
        }
    }
    let mut merged = Links::default();
    for (anon, link) in pending {
        let anon = match anon {
            LinkAnon::Key(k) => resolve(k),
            p => p.clone(),
        };
        merged.offer(anon, link.clone());
    }
    let mut out = Vec::new();
    let mut done = HashSet::new();
    let introduced_here: HashSet<&str> = introduced.iter().copied().collect();
    for &key in keys.iter().chain(introduced) {
        if !done.insert(key) {
            continue;
        }
        let here = introduced_here.contains(key);
        let anon = resolve(key);
        let waiting = base.best(&LinkAnon::Key(key.to_string()));
        for known in [base.best(&anon), waiting, own.best(&anon)]
            .into_iter()
            .flatten()
        {
            merged.record(LinkRecord {
                anon: anon.clone(),
                ..known
            });
        }
        let Some(best) = merged.best(&anon) else {
            continue;
        };
        // A key introduced here may have had its link waiting under the
        // key in an earlier file (it was resolved in memory when the key
        // got its id): recorded again, by id, where the id is given.
        let ours = own.best(&anon).is_some_and(|o| o == best);
        if ours || here {
            out.push(best);
        }
    }
    out
}

fn intern(map: &mut HashMap<String, u32>, key: &str, new: &mut Vec<(String, u32)>) -> u32 {
    if let Some(&id) = map.get(key) {
        return id;
    }
    let id = map.len() as u32;
    map.insert(key.to_string(), id);
    new.push((key.to_string(), id));
    id
}

/// What [`DiskStore::check`] found.
#[derive(Debug, Default)]
pub struct Check {
    /// Each problem, naming its file.
    pub problems: Vec<String>,
    /// Chunks checked.
    pub chunks: usize,
    /// Events in the store (chunks and log).
    pub events: u64,
    /// Events in the write-ahead log.
    pub logged: usize,
    /// True when rebuilding the index from the chunk files mends (some of)
    /// the problems: the index disagrees with the files or lacks entries.
    pub rebuild_index: bool,
}

/// Milliseconds since the epoch, to name files set aside uniquely.
fn stamp() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Where `path` goes when set aside into `DIR/sub/` (created).
fn aside(dir: &Path, sub: &str, path: &Path) -> Result<PathBuf, Error> {
    let to = dir.join(sub);
    std::fs::create_dir_all(&to).map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    Ok(to.join(format!("{name}.{}", stamp())))
}

/// Copies `path` into `DIR/damaged/` (kept for whoever investigates).
fn damaged_copy(dir: &Path, path: &Path) -> Result<PathBuf, Error> {
    let to = aside(dir, "damaged", path)?;
    std::fs::copy(path, &to).map_err(|e| Error::io(format!("copying {}", path.display()), e))?;
    Ok(to)
}

/// The counters a seal or an adoption publishes.
struct Counters {
    chunks: u32,
    wal: u64,
    persons: u32,
    names: u32,
}

/// The id index entry under `key` (empty if none).
fn read_spans(db: &Index, key: &[u8]) -> Result<IdSpans, Error> {
    match db.get(key)? {
        Some(v) => IdSpans::decode(&v),
        None => Ok(IdSpans::default()),
    }
}

/// Moves a file the store no longer uses, but that could hold data, to
/// `DIR/orphans/` rather than deleting it.
fn set_aside(dir: &Path, path: &Path) -> Result<(), Error> {
    let to = aside(dir, "orphans", path)?;
    std::fs::rename(path, &to).map_err(|e| Error::io(format!("moving {}", path.display()), e))?;
    hooks::renamed(path, &to);
    tracing::warn!(from = %path.display(), to = %to.display(), "set aside a chunk file of a seal that did not complete");
    chunk::sync_dir(to.parent().unwrap_or(dir))?;
    chunk::sync_dir(path.parent().unwrap_or(dir))
}

fn remove(path: &Path) -> Result<(), Error> {
    hooks::removed(path);
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

impl Ingest for DiskStore {
    fn append(&self, events: Vec<Event>) -> Result<Vec<Outcome>, Error> {
        self.with_writer(|s, w| s.append_locked(w, events))
    }

    fn sync(&self) -> Result<(), Error> {
        let refused =
            || Error::Unavailable("an earlier write failed; the store is reloading".into());
        if self.failed.load(Ordering::SeqCst) {
            return Err(refused());
        }
        let Some(target) = self.wal_file.lock().clone() else {
            return Ok(());
        };
        let len = target.len.load(Ordering::SeqCst);
        #[cfg(test)]
        let synced = self
            .faults
            .check(faults::Point::LogSync)
            .and_then(|()| target.file.sync_data());
        #[cfg(not(test))]
        let synced = target.file.sync_data();
        if synced.is_ok() {
            hooks::synced(&wal::path(&self.wal_dir(), target.number), hooks::Sync::Log);
        }
        if let Err(e) = synced {
            self.fail(target.number);
            return Err(Error::io(
                format!("fsync of the write-ahead log wal/{:08}.wal", target.number),
                e,
            ));
        }
        let _undo = self.undo.lock();
        if self.failed.load(Ordering::SeqCst) {
            return Err(refused());
        }
        target.synced.fetch_max(len, Ordering::SeqCst);
        Ok(())
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn close(&self) -> Result<(), Error> {
        if !self.shared.read().open.events.is_empty() {
            self.with_writer(|s, w| {
                let chunks = s.shared.read().chunks.clone();
                s.seal(w, &chunks, Fresh::default(), true)
            })?;
        }
        self.flush_props();
        Ok(())
    }
}

impl Admin for DiskStore {
    fn backup(&self, dest: &Path) -> Result<u64, Error> {
        self.backup_into(dest)
    }

    fn stats(&self) -> super::StoreStats {
        let (events, chunks) = {
            let shared = self.shared.read();
            let sealed: u64 = shared
                .chunks
                .iter()
                .map(|c| u64::from(c.header.events))
                .sum();
            (
                sealed + shared.open.events.len() as u64,
                shared.chunks.len() as u64,
            )
        };
        super::StoreStats {
            events,
            chunks,
            bytes_on_disk: tree_size(&self.dir),
        }
    }

    fn delete_person(&self, key: &str) -> Result<u64, Error> {
        let _no_compaction = self.compacting.lock();
        self.with_writer(|s, w| {
            // Sealed first, so the deletion covers whole chunks: exactly
            // the events stored before it.
            if !s.shared.read().open.events.is_empty() {
                let chunks = s.shared.read().chunks.clone();
                s.seal(w, &chunks, Fresh::default(), true)?;
            }
            let Some(&person) = w.persons.get(key) else {
                return Ok(0);
            };
            let counted = |s: &DiskStore| -> Result<u64, Error> {
                let rows = s
                    .scan(&Scan {
                        from: i64::MIN,
                        to: i64::MAX,
                        ..Scan::default()
                    })
                    .map_err(|e| Error::Unavailable(e.to_string()))?;
                Ok(rows
                    .iter()
                    .map(|r| r.person.iter().filter(|&&p| p == person).count() as u64)
                    .sum())
            };
            let deleted = counted(s)?;
            if deleted == 0 {
                return Ok(0);
            }
            let deletion = {
                let shared = s.shared.read();
                let anonymous = shared.links.linked_to(person);
                let wanted: HashSet<u32> = anonymous.iter().copied().collect();
                let mut keys: Vec<(u32, String)> = w
                    .persons
                    .iter()
                    .filter(|(_, id)| wanted.contains(id))
                    .map(|(k, &id)| (id, k.clone()))
                    .collect();
                keys.sort_unstable();
                codec::Deletion {
                    chunks: shared.chunks.len() as u32,
                    person,
                    key: key.to_string(),
                    own_anonymous: shared
                        .links
                        .user_of(person)
                        .is_none_or(|user| user == person),
                    anonymous,
                    anonymous_keys: keys.into_iter().map(|(_, k)| k).collect(),
                }
            };
            let mut all = (*s.shared.read().deletions).clone();
            all.append(&s.dir, deletion)?;
            let mut shared = s.shared.write();
            all.unlink(&mut shared.links);
            shared.deletions = Arc::new(all);
            drop(shared);
            debug_assert_eq!(counted(s)?, 0);
            Ok(deleted)
        })
    }
}

impl Export for DiskStore {
    fn scan_events(
        &self,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(Event) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.scan_chunks(from, to, each, None)
    }
}

impl Source for DiskStore {
    fn name_id(&self, name: &str) -> Option<NameId> {
        self.shared.read().names.get(name).copied()
    }

    fn person_count(&self) -> usize {
        self.shared.read().persons as usize
    }

    fn scan(&self, scan: &Scan<'_>) -> Result<Vec<Rows>, QueryError> {
        let source = |e: Error| QueryError::Source(e.to_string());
        let wanted = |name: u32| scan.names.is_none_or(|n| n.contains(&name));
        let overlaps = |min: i64, max: i64| max >= scan.from && min < scan.to;
        let paths: Vec<&[String]> = scan
            .filters
            .iter()
            .map(|f| f.path.as_slice())
            .chain(scan.by)
            .collect();
        let kept = Scan {
            from: scan.from.max(self.kept_from()),
            ..*scan
        };
        let scan = &kept;
        let (chunks, mut out, remap, deleted) = {
            let shared = self.shared.read();
            let remap = (scan.identity == Identity::Linked && !shared.links.is_empty())
                .then(|| shared.links.remap());
            let open = &shared.open;
            let mut rows = Vec::new();
            for (&name, block) in open.columns.iter().filter(|(name, _)| wanted(**name)) {
                // The open chunk's rows are in acceptance order; its events
                // are at hand, so they are read directly.
                let events: Vec<&Event> = open
                    .events
                    .iter()
                    .zip(&open.interned)
                    .filter(|(_, (_, n))| *n == name)
                    .map(|(e, _)| e)
                    .collect();
                let view = NameView {
                    props: None,
                    events: Some(&events),
                    anonymous: None,
                };
                let r = select(
                    name,
                    block.clone(),
                    scan,
                    remap.as_deref().map(Vec::as_slice),
                    None,
                    &view,
                );
                if !r.is_empty() {
                    rows.push(r);
                }
            }
            (shared.chunks.clone(), rows, remap, shared.deletions.clone())
        };
        let sections: Vec<(&Chunk, &codec::NameSection)> = chunks
            .iter()
            .filter(|c| overlaps(c.header.min_ts, c.header.max_ts))
            .flat_map(|c| c.header.names.iter().map(move |s| (&**c, s)))
            .filter(|(_, s)| wanted(s.name) && overlaps(s.min_ts, s.max_ts))
            .collect();
        let rows: Vec<Rows> = sections
            .par_iter()
            .map(|(c, s)| {
                let block = c.columns(s).map_err(source)?;
                let gone = deleted.rows(c.number);
                if paths.is_empty() && remap.is_none() && gone.is_none() {
                    return Ok(filter_rows(s.name, block, scan.from, scan.to));
                }
                let mut file = self.props_file(c);
                // A damaged section is derived data: the chunk's events
                // answer instead (and `tally check` reports it).
                fn usable<T>(read: Result<T, Error>) -> Option<T> {
                    read.map_err(
                        |e| tracing::warn!(error = %e, "reading the chunk's events instead"),
                    )
                    .ok()
                }
                let props = match (&file, paths.is_empty()) {
                    (Some(f), false) => usable(f.columns(s.name)),
                    _ => None,
                };
                let anonymous = match &file {
                    Some(f) if remap.is_some() || gone.is_some() => usable(f.anonymous(s.name)),
                    _ => None,
                };
                if (props.is_none() && !paths.is_empty())
                    || (anonymous.is_none() && (remap.is_some() || gone.is_some()))
                {
                    file = None;
                }
                let slow = file.is_none()
                    || props
                        .as_ref()
                        .is_some_and(|p| paths.iter().any(|path| props::lookup(p, path).is_none()));
                let events = if slow {
                    Some(self.name_events(c, s.name).map_err(source)?)
                } else {
                    None
                };
                let refs: Option<Vec<&Event>> = events.as_ref().map(|v| v.iter().collect());
                let view = NameView {
                    props: props.as_ref(),
                    events: refs.as_deref(),
                    anonymous: anonymous.as_deref(),
                };
                Ok(select(
                    s.name,
                    block,
                    scan,
                    remap.as_deref().map(Vec::as_slice),
                    gone.as_ref(),
                    &view,
                ))
            })
            .filter(|r| r.as_ref().map_or(true, |rows| !rows.is_empty()))
            .collect::<Result<_, QueryError>>()?;
        out.extend(rows);
        Ok(out)
    }
}

impl DiskStore {
    /// The events of chunk `c` named `name`, in the row order of its column
    /// block: the slow path of a chunk without a property file, or of a
    /// path without a column.
    fn name_events(&self, c: &Chunk, name: u32) -> Result<Vec<Event>, Error> {
        let mut events = Vec::new();
        c.events(&mut |e| {
            events.push(e);
            Ok(())
        })?;
        let names: Vec<u32> = {
            let shared = self.shared.read();
            events
                .iter()
                .map(|e| shared.names.get(&e.event).copied().unwrap_or(u32::MAX))
                .collect()
        };
        let refs: Vec<&Event> = events.iter().collect();
        let order = props::name_rows(&refs, &names)
            .remove(&name)
            .unwrap_or_default();
        let mut slots: Vec<Option<Event>> = events.into_iter().map(Some).collect();
        Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
    }
}

/// What [`select`] reads of one name's rows besides their columns: the
/// property columns, the events themselves (the slow path), and which
/// rows are anonymous.
struct NameView<'a> {
    props: Option<&'a codec::NameProps>,
    /// In row order; when present, anything `props` lacks is read here.
    events: Option<&'a [&'a Event]>,
    anonymous: Option<&'a [u8]>,
}

impl NameView<'_> {
    fn values(&self, path: &[String]) -> PathValues<'_> {
        if let Some(v) = self.props.and_then(|p| props::lookup(p, path)) {
            return v;
        }
        match self.events {
            Some(events) => PathValues::Rows(
                events
                    .iter()
                    .map(|e| Prop::at(e.properties.as_deref(), path))
                    .collect(),
            ),
            None => PathValues::Missing,
        }
    }

    fn anonymous(&self, row: usize) -> bool {
        match (self.anonymous, self.events) {
            (Some(bits), _) => props::bit(bits, row),
            (None, Some(events)) => events[row].user_id.is_none(),
            (None, None) => false,
        }
    }
}

/// The rows of one column block that `scan` asks for: in its range,
/// passing its filters, with their persons resolved and their groups.
fn select(
    name: NameId,
    b: ColumnBlock,
    scan: &Scan<'_>,
    remap: Option<&[u32]>,
    deleted: Option<&RowTest>,
    view: &NameView<'_>,
) -> Rows {
    let n = b.len();
    let mut keep: Vec<bool> =
        b.ts.iter()
            .map(|t| (scan.from..scan.to).contains(t))
            .collect();
    for f in scan.filters {
        view.values(&f.path).apply(f, &mut keep);
    }
    let groups = scan.by.map(|path| view.values(path).groups(n));
    let mut rows = Rows {
        name,
        ..Rows::default()
    };
    for i in (0..n).filter(|&i| keep[i]) {
        let mut person = b.person[i];
        if deleted.is_some_and(|d| d.deleted(person, view.anonymous(i))) {
            continue;
        }
        if let Some(remap) = remap
            && let Some(&user) = remap.get(person as usize)
            && user != u32::MAX
            && view.anonymous(i)
        {
            person = user;
        }
        rows.person.push(person);
        rows.ts.push(b.ts[i]);
        rows.stage.push(b.stage[i]);
        rows.revenue.push(b.revenue[i]);
        if let Some((codes, _)) = &groups {
            rows.group.push(codes[i]);
        }
    }
    if let Some((_, values)) = groups {
        rows.values = values;
    }
    rows
}

fn filter_rows(name: NameId, b: ColumnBlock, from: i64, to: i64) -> Rows {
    if b.ts.iter().all(|t| (from..to).contains(t)) {
        return Rows {
            name,
            person: b.person,
            ts: b.ts,
            stage: b.stage,
            revenue: b.revenue,
            ..Rows::default()
        };
    }
    let mut rows = Rows {
        name,
        ..Rows::default()
    };
    for i in 0..b.len() {
        if (from..to).contains(&b.ts[i]) {
            rows.person.push(b.person[i]);
            rows.ts.push(b.ts[i]);
            rows.stage.push(b.stage[i]);
            rows.revenue.push(b.revenue[i]);
        }
    }
    rows
}

/// Test access to the person keys, to compare stores by key.
#[cfg(test)]
impl DiskStore {
    pub(super) fn person_keys(&self) -> HashMap<u32, String> {
        let shared = self.shared.read();
        let published = shared.persons - shared.open.new_persons.len() as u32;
        let mut keys: HashMap<u32, String> = person_dictionary(&shared.chunks, published)
            .expect("dictionary")
            .into_iter()
            .map(|(k, v)| (v, k))
            .collect();
        keys.extend(shared.open.new_persons.iter().map(|(k, v)| (*v, k.clone())));
        keys
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const CHUNK: usize = 100;

    fn options() -> StoreOptions {
        StoreOptions {
            chunk_events: CHUNK,
            ..StoreOptions::default()
        }
    }

    /// Opens the store, waiting out sled's lock: after a `DiskStore` is
    /// dropped, sled's background I/O can hold the database file (and its
    /// lock) a moment longer. Processes never reopen in place; tests do.
    pub(crate) fn open(dir: &Path, options: &StoreOptions) -> DiskStore {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match DiskStore::open(dir, options) {
                Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other.unwrap(),
            }
        }
    }

    /// The error opening the store gives, waiting out sled's lock as
    /// [`open`] does.
    fn open_err(dir: &Path, options: &StoreOptions) -> Error {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match DiskStore::open(dir, options) {
                Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return e,
                Ok(_) => panic!("the store opened"),
            }
        }
    }

    fn event(id: Uuid, person: &str, name: &str, ts: i64) -> Event {
        Event {
            id,
            event: name.into(),
            user_id: Some(person.into()),
            anonymous_id: None,
            timestamp: ts,
            stage: None,
            revenue: Some(1.5),
            properties: Some(format!(r#"{{"ts":{ts}}}"#)),
        }
    }

    /// Event `i`: a UUIDv7-like id in time order, 13 persons, 3 names.
    fn nth(i: u128) -> Event {
        let ts = 1_800_000_000_000 + i as i64 * 10;
        let id = Uuid::from_u128(((ts as u128) << 80) | (0x7 << 76) | i);
        event(
            id,
            &format!("u{}", i % 13),
            ["a", "b", "c"][i as usize % 3],
            ts,
        )
    }

    /// Every event, in the order the store gives them (acceptance order).
    fn events_in_order(store: &DiskStore) -> Vec<Event> {
        let mut out = Vec::new();
        store
            .scan_events(i64::MIN, i64::MAX, &mut |e| {
                out.push(e);
                Ok(())
            })
            .unwrap();
        out
    }

    fn all_events(store: &DiskStore) -> Vec<Event> {
        let mut out = events_in_order(store);
        out.sort_by_key(|e| e.id);
        out
    }

    fn row_count(store: &DiskStore, name: &str) -> usize {
        let Some(id) = store.name_id(name) else {
            return 0;
        };
        store
            .scan(&Scan {
                names: Some(&[id]),
                from: i64::MIN,
                to: i64::MAX,
                ..Default::default()
            })
            .unwrap()
            .iter()
            .map(Rows::len)
            .sum()
    }

    /// The files in `dir/sub`, property files left out (each chunk has
    /// one; the tests of property files look for them by name).
    fn files(dir: &Path, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.ends_with(".props") && !name.ends_with(".props.tmp"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn small_commits_fill_chunks_and_every_event_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), &options());
        let total = 1_234u128;
        let mut next = 0;
        while next < total {
            let chunk: Vec<Event> = (next..(next + 7).min(total)).map(nth).collect();
            next += chunk.len() as u128;
            let out = store.append(chunk).unwrap();
            assert!(out.iter().all(|o| *o == Outcome::Accepted));
            store.sync().unwrap();
        }
        // 12 full chunks; the last 34 events wait in the log.
        assert_eq!(files(dir.path(), "chunks").len(), 12);
        assert_eq!(files(dir.path(), "wal").len(), 1);
        let expected: Vec<Event> = (0..total).map(nth).collect();
        assert_eq!(all_events(&store), expected);
        for (name, n) in [("a", 412), ("b", 411), ("c", 411)] {
            assert_eq!(row_count(&store, name), n, "{name}");
        }
        assert_eq!(store.person_count(), 13);

        // A time range reads exactly the events inside it, sealed or open.
        let from = nth(250).timestamp;
        let to = nth(1_230).timestamp;
        let mut n = 0;
        store
            .scan_events(from, to, &mut |e| {
                assert!((from..to).contains(&e.timestamp));
                n += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 980);
        let rows: usize = store
            .scan(&Scan {
                names: None,
                from,
                to,
                ..Default::default()
            })
            .unwrap()
            .iter()
            .map(Rows::len)
            .sum();
        assert_eq!(rows, 980);

        // Closing seals the rest; nothing is lost or doubled.
        store.close().unwrap();
        assert_eq!(files(dir.path(), "chunks").len(), 13);
        assert_eq!(all_events(&store), expected);
        drop(store);
        let store = open(dir.path(), &options());
        assert_eq!(all_events(&store), expected);
        assert_eq!(row_count(&store, "a"), 412);
    }

    #[test]
    fn duplicates_are_found_in_chunks_in_the_log_and_in_the_same_commit() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), &options());
            store.append((0..250).map(nth).collect()).unwrap();
            store.sync().unwrap();
            // Dropped without close: 50 events only in the log.
        }
        let store = open(dir.path(), &options());
        assert_eq!(all_events(&store).len(), 250);
        let mut again: Vec<Event> = [3, 120, 249, 249].into_iter().map(nth).collect();
        again.push(nth(250));
        again.push(nth(250));
        let out = store.append(again).unwrap();
        use Outcome::*;
        assert_eq!(
            out,
            vec![
                Duplicate, Duplicate, Duplicate, Duplicate, Accepted, Duplicate
            ]
        );
        // The first stored version wins, whatever the retry carries.
        let mut changed = nth(5);
        changed.event = "other".into();
        assert_eq!(store.append(vec![changed]).unwrap(), vec![Duplicate]);
        assert_eq!(store.name_id("other"), None);
        assert_eq!(all_events(&store).len(), 251);
    }

    #[test]
    fn random_ids_deduplicate_across_many_chunks_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<Uuid> = (0..1_000).map(|_| Uuid::new_v4()).collect();
        let evs = |ids: &[Uuid]| -> Vec<Event> {
            ids.iter()
                .enumerate()
                .map(|(i, id)| event(*id, "p", "e", 1_800_000_000_000 + i as i64))
                .collect()
        };
        {
            let store = open(dir.path(), &options());
            for part in ids.chunks(90) {
                let out = store.append(evs(part)).unwrap();
                assert!(out.iter().all(|o| *o == Outcome::Accepted));
            }
            store.sync().unwrap();
        }
        let store = open(dir.path(), &options());
        let out = store.append(evs(&ids)).unwrap();
        assert!(out.iter().all(|o| *o == Outcome::Duplicate));
        assert_eq!(
            store.append(evs(&[Uuid::new_v4()])).unwrap(),
            vec![Outcome::Accepted]
        );
        assert_eq!(row_count(&store, "e"), 1_001);
    }

    #[test]
    fn ids_sharing_prefixes_across_chunks_deduplicate_exactly() {
        // Three kinds of ids whose 4-byte prefixes are shared by many
        // chunks: two clients minting UUIDv7s in the same minute (one with a
        // clock 20 s behind), and sequence-like ids (`...0001`, `...0002`).
        let v7 = |ms: u64, n: u64| {
            let mut b = [0u8; 16];
            b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
            b[6] = 0x70;
            b[8] = 0x80;
            b[9..].copy_from_slice(&n.to_be_bytes()[1..]);
            Uuid::from_bytes(b)
        };
        let base = 1_800_000_000_000u64;
        let mut ids = Vec::new();
        for i in 0..600u64 {
            ids.push(v7(base + 20_000 + i, i));
            ids.push(v7(base + i, i));
            ids.push(Uuid::from_u128(u128::from(i) + 1));
        }
        let evs = |ids: &[Uuid]| -> Vec<Event> {
            ids.iter()
                .map(|id| event(*id, "p", "e", 1_800_000_000_000))
                .collect()
        };
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), &options());
        for part in ids.chunks(45) {
            let out = store.append(evs(part)).unwrap();
            assert!(out.iter().all(|o| *o == Outcome::Accepted));
        }
        assert!(store.shared.read().chunks.len() >= 17);
        // Every stored id is a duplicate; new ids between and beside them are not.
        let out = store.append(evs(&ids)).unwrap();
        assert!(out.iter().all(|o| *o == Outcome::Duplicate));
        let fresh = [
            v7(base + 20_000, 1_000),
            v7(base + 300, 1_000),
            v7(base + 700, 0),
            Uuid::from_u128(601),
            Uuid::from_u128(1 << 100),
        ];
        let out = store.append(evs(&fresh)).unwrap();
        assert_eq!(out, vec![Outcome::Accepted; fresh.len()]);
        assert_eq!(row_count(&store, "e"), ids.len() + fresh.len());
    }

    #[test]
    fn persons_keep_their_ids_across_chunks_the_log_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let ev = |i: u128, person: u32| {
            let mut e = nth(i);
            e.user_id = Some(format!("p{person}"));
            e
        };
        let distinct_ids = |store: &DiskStore| {
            let rows = store
                .scan(&Scan {
                    names: None,
                    from: i64::MIN,
                    to: i64::MAX,
                    ..Default::default()
                })
                .unwrap();
            let mut ids: Vec<u32> = rows.iter().flat_map(|r| r.person.clone()).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        {
            // p0..p9 sealed in chunks (two seals), p5..p14 partly in the log.
            let store = open(dir.path(), &options());
            store
                .append((0..120).map(|i| ev(i, i as u32 % 10)).collect())
                .unwrap();
            store
                .append((120..230).map(|i| ev(i, 5 + i as u32 % 10)).collect())
                .unwrap();
            assert_eq!(store.person_count(), 15);
        }
        // A reader replays the log with the published dictionary.
        let store = open(dir.path(), &options());
        assert_eq!(store.person_count(), 15);
        assert_eq!(distinct_ids(&store), (0..15).collect::<Vec<_>>());
        // A writer too: known persons keep their ids, a new one gets the next.
        store
            .append(vec![ev(230, 3), ev(231, 14), ev(232, 99)])
            .unwrap();
        assert_eq!(store.person_count(), 16);
        store.close().unwrap();
        drop(store);
        let store = open(dir.path(), &options());
        assert_eq!(distinct_ids(&store), (0..16).collect::<Vec<_>>());
        store.append(vec![ev(233, 99)]).unwrap();
        assert_eq!(store.person_count(), 16);
    }

    #[test]
    fn a_long_log_seals_the_open_chunk_early() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(
            dir.path(),
            &StoreOptions {
                wal_max_bytes: 2_000,
                ..options()
            },
        )
        .unwrap();
        // ~100 bytes of properties per event: the log passes 2,000 bytes
        // long before 100 events fill a chunk.
        for i in 0..60 {
            let mut e = nth(i);
            e.properties = Some(format!(r#"{{"pad":"{}"}}"#, "x".repeat(100)));
            store.append(vec![e]).unwrap();
        }
        let chunks = store.shared.read().chunks.len();
        assert!(chunks >= 2, "{chunks} chunks");
        let log = dir.path().join("wal").join(&files(dir.path(), "wal")[0]);
        assert!(std::fs::metadata(log).unwrap().len() < 2_000 + 400);
        assert_eq!(all_events(&store).len(), 60);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Append these pool events (repeats allowed) in one commit.
        Append(Vec<usize>),
        /// Drop the store without closing it (what a crash leaves once the
        /// log is synced) and open it again.
        Reopen,
        /// Seal what is open.
        Close,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            6 => proptest::collection::vec(0..120usize, 1..40).prop_map(Op::Append),
            1 => Just(Op::Reopen),
            1 => Just(Op::Close),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Against a model (the first event stored under each id wins):
        /// every outcome, every event read back, every row and person count,
        /// through seals, reopenings and closes.
        #[test]
        fn the_store_behaves_like_a_set_of_first_seen_events(
            ops in proptest::collection::vec(op(), 1..25),
            chunk in 1..12usize,
        ) {
            // Ids: mostly time-ordered v7-like, some random-looking.
            let pool: Vec<Event> = (0..120u128)
                .map(|i| {
                    let mut e = nth(i);
                    if i % 5 == 0 {
                        e.id = Uuid::from_u128(i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
                    }
                    e
                })
                .collect();
            let dir = tempfile::tempdir().unwrap();
            let opts = StoreOptions { chunk_events: chunk, ..StoreOptions::default() };
            let mut store = open(dir.path(), &opts);
            let mut model: std::collections::BTreeMap<Uuid, Event> = Default::default();
            let mut accepted_order: Vec<Event> = Vec::new();
            for op in ops {
                match op {
                    Op::Append(picks) => {
                        let events: Vec<Event> = picks.iter().map(|&i| pool[i].clone()).collect();
                        let expected: Vec<Outcome> = events
                            .iter()
                            .map(|e| match model.entry(e.id) {
                                std::collections::btree_map::Entry::Occupied(_) => Outcome::Duplicate,
                                std::collections::btree_map::Entry::Vacant(slot) => {
                                    slot.insert(e.clone());
                                    accepted_order.push(e.clone());
                                    Outcome::Accepted
                                }
                            })
                            .collect();
                        proptest::prop_assert_eq!(store.append(events).unwrap(), expected);
                        store.sync().unwrap();
                    }
                    Op::Reopen => {
                        drop(store);
                        store = open(dir.path(), &opts);
                    }
                    Op::Close => store.close().unwrap(),
                }
                let stored: Vec<Event> = model.values().cloned().collect();
                proptest::prop_assert_eq!(all_events(&store), stored);
                // Export order is acceptance order, across chunks and the log.
                proptest::prop_assert_eq!(&events_in_order(&store), &accepted_order);
                for name in ["a", "b", "c"] {
                    let n = model.values().filter(|e| e.event == name).count();
                    proptest::prop_assert_eq!(row_count(&store, name), n);
                }
                let persons: HashSet<&str> = model.values().map(|e| e.person()).collect();
                proptest::prop_assert_eq!(store.person_count(), persons.len());
            }
        }
    }

    #[test]
    fn a_torn_log_tail_is_cut_and_later_appends_survive() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), &options());
            store.append((0..30).map(nth).collect()).unwrap();
            store.append((30..40).map(nth).collect()).unwrap();
            store.sync().unwrap();
        }
        // A crash in the middle of writing a third record.
        let log = dir.path().join("wal").join(&files(dir.path(), "wal")[0]);
        let whole = std::fs::read(&log).unwrap();
        let third = codec::encode_wal_record(&(40..45).map(nth).collect::<Vec<_>>());
        let mut torn = whole.clone();
        torn.extend_from_slice(&third[..third.len() - 3]);
        std::fs::write(&log, &torn).unwrap();

        let store = open(dir.path(), &options());
        assert_eq!(all_events(&store).len(), 40);
        // Reading never writes; the writer cuts the torn bytes before appending.
        assert_eq!(std::fs::read(&log).unwrap(), torn);
        store.append((40..45).map(nth).collect()).unwrap();
        store.sync().unwrap();
        drop(store);
        let store = open(dir.path(), &options());
        assert_eq!(all_events(&store), (0..45).map(nth).collect::<Vec<_>>());
    }

    #[test]
    fn leftovers_of_an_interrupted_seal_are_ignored_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), &options());
            store.append((0..150).map(nth).collect()).unwrap();
            store.sync().unwrap();
        }
        // What a seal leaves when it dies before its commit point (the
        // next log): a chunk file the index does not know and a temporary
        // file. The index names log 1, the newest: the chunk is redundant.
        let chunks = dir.path().join("chunks");
        std::fs::copy(chunks.join("00000000.chunk"), chunks.join("00000001.chunk")).unwrap();
        std::fs::write(chunks.join("00000002.chunk.tmp"), b"partial").unwrap();

        let store = open(dir.path(), &options());
        assert_eq!(all_events(&store).len(), 150);
        store.append(vec![nth(150)]).unwrap();
        assert_eq!(files(dir.path(), "chunks"), vec!["00000000.chunk"]);
        assert_eq!(files(dir.path(), "wal"), vec!["00000001.wal"]);
        assert_eq!(all_events(&store), (0..151).map(nth).collect::<Vec<_>>());
    }

    /// Appends `events` and syncs, as one acknowledged commit.
    fn commit(store: &DiskStore, events: Vec<Event>) -> Result<Vec<Outcome>, Error> {
        let out = store.append(events)?;
        store.sync()?;
        Ok(out)
    }

    fn ids(events: &[Event]) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        ids.sort();
        ids
    }

    /// Issue 16.1: a failed index flush at a seal (a full disk) lost the
    /// open chunk's acknowledged events, because the store trusted sled's
    /// memory, deleted the old log and later deleted the chunk as
    /// unreferenced. Every failure point of a seal, once: what was
    /// acknowledged survives, writes come back without a restart, and a
    /// retry of what failed is stored (never a duplicate).
    #[test]
    fn a_failed_seal_at_any_step_loses_nothing_acknowledged_and_recovers() {
        use faults::Point::*;
        for point in [ChunkWrite, LogCreate, IndexApply, IndexFlush] {
            let dir = tempfile::tempdir().unwrap();
            let options = StoreOptions {
                chunk_events: 50,
                ..StoreOptions::default()
            };
            let mut acked = Vec::new();
            {
                let store = open(dir.path(), &options);
                let mut next = 0u128;
                // 2 full chunks, then 40 events in the open chunk.
                for _ in 0..7 {
                    let batch: Vec<Event> = (next..next + 20).map(nth).collect();
                    next += 20;
                    commit(&store, batch.clone()).unwrap();
                    acked.extend(batch);
                }
                store.faults.fail_next(point, 1);
                let failing: Vec<Event> = (next..next + 20).map(nth).collect();
                next += 20;
                assert!(commit(&store, failing.clone()).is_err(), "{point:?}");
                // Back without a restart; the retry is new, not a duplicate,
                // unless the seal had already made it durable (its files
                // were fsync'd before the index write that failed).
                let retry = commit(&store, failing.clone()).unwrap();
                let durable_before = matches!(point, IndexApply | IndexFlush);
                let expected = if durable_before {
                    Outcome::Duplicate
                } else {
                    Outcome::Accepted
                };
                assert!(retry.iter().all(|o| *o == expected), "{point:?}: {retry:?}");
                acked.extend(failing);
                let more: Vec<Event> = (next..next + 30).map(nth).collect();
                commit(&store, more.clone()).unwrap();
                acked.extend(more);
                assert_eq!(ids(&all_events(&store)), ids(&acked), "{point:?}");
            }
            let store = open(dir.path(), &options);
            assert_eq!(
                ids(&all_events(&store)),
                ids(&acked),
                "{point:?} after reopening"
            );
            store.append(vec![nth(10_000)]).unwrap();
            assert_eq!(all_events(&store).len(), acked.len() + 1, "{point:?}");
        }
    }

    /// A failed fsync of the log: the commit gets an error, writes are
    /// refused until the store reloads, the events that were never synced
    /// are cut, and the client's retry is stored (not a duplicate).
    #[test]
    fn a_failed_log_sync_is_not_acknowledged_and_its_retry_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), &options());
        commit(&store, (0..10).map(nth).collect()).unwrap();
        let epoch = store.epoch();
        store.append((10..20).map(nth).collect()).unwrap();
        store.faults.fail_next(faults::Point::LogSync, 1);
        assert!(store.sync().is_err());
        // Still failed: no later sync may acknowledge anything.
        assert!(store.sync().is_err());
        let retry = commit(&store, (10..20).map(nth).collect()).unwrap();
        assert!(retry.iter().all(|o| *o == Outcome::Accepted), "{retry:?}");
        assert_ne!(store.epoch(), epoch);
        drop(store);
        let store = open(dir.path(), &options());
        assert_eq!(all_events(&store), (0..20).map(nth).collect::<Vec<_>>());
    }

    #[test]
    fn a_failed_log_append_is_retried_as_new() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), &options());
        commit(&store, (0..10).map(nth).collect()).unwrap();
        store.faults.fail_next(faults::Point::LogAppend, 1);
        assert!(store.append((10..20).map(nth).collect()).is_err());
        let retry = commit(&store, (10..20).map(nth).collect()).unwrap();
        assert!(retry.iter().all(|o| *o == Outcome::Accepted));
        drop(store);
        let store = open(dir.path(), &options());
        assert_eq!(all_events(&store), (0..20).map(nth).collect::<Vec<_>>());
    }

    /// Issue 16.2: an index rolled back (damage, or a copy of an older one)
    /// must neither hide chunks nor let the next write delete them.
    #[test]
    fn an_index_rolled_back_is_caught_up_from_the_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let old_index = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), &options());
            commit(&store, (0..150).map(nth).collect()).unwrap();
            drop(store);
            copy_dir(&dir.path().join("index"), old_index.path());
            let store = open(dir.path(), &options());
            commit(&store, (150..420).map(nth).collect()).unwrap();
        }
        let index = dir.path().join("index");
        std::fs::remove_dir_all(&index).unwrap();
        copy_dir(old_index.path(), &index);
        let store = open(dir.path(), &options());
        assert_eq!(all_events(&store), (0..420).map(nth).collect::<Vec<_>>());
        // Old ids are still duplicates; nothing is deleted.
        let again = commit(&store, (100..110).map(nth).collect()).unwrap();
        assert!(again.iter().all(|o| *o == Outcome::Duplicate));
        assert_eq!(files(dir.path(), "chunks").len(), 4);
        drop(store);
        let store = open(dir.path(), &options());
        assert_eq!(all_events(&store).len(), 420);
    }

    /// A deleted index is rebuilt from the chunk files (names, persons,
    /// ids) with the same answers.
    #[test]
    fn a_deleted_index_is_rebuilt_from_the_chunks() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), &options());
            commit(&store, (0..333).map(nth).collect()).unwrap();
        }
        std::fs::remove_dir_all(dir.path().join("index")).unwrap();
        let store = open(dir.path(), &options());
        assert_eq!(all_events(&store), (0..333).map(nth).collect::<Vec<_>>());
        for (name, n) in [("a", 111), ("b", 111), ("c", 111)] {
            assert_eq!(row_count(&store, name), n, "{name}");
        }
        assert_eq!(store.person_count(), 13);
        let again = commit(&store, (0..5).map(nth).collect()).unwrap();
        assert!(again.iter().all(|o| *o == Outcome::Duplicate));
        commit(&store, vec![nth(333)]).unwrap();
        assert_eq!(store.person_count(), 13);
    }

    /// A byte flipped anywhere in sled's file: the store either catches up
    /// from the chunks or refuses to open, naming the index; it never
    /// answers with fewer events.
    #[test]
    fn a_damaged_index_file_never_gives_silently_wrong_answers() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), &options());
            commit(&store, (0..1000).map(nth).collect()).unwrap();
        }
        let db = dir.path().join("index").join("db");
        let pristine = std::fs::read(&db).unwrap();
        for at in (0..pristine.len()).step_by(pristine.len() / 23 + 1) {
            let mut bytes = pristine.clone();
            bytes[at] ^= 0x5a;
            std::fs::write(&db, &bytes).unwrap();
            let opened = loop {
                match DiskStore::open(dir.path(), &options()) {
                    Err(Error::Locked { .. }) => {
                        std::thread::sleep(std::time::Duration::from_millis(20))
                    }
                    other => break other,
                }
            };
            match opened {
                Ok(store) => {
                    let n = store_events(&store);
                    assert!(
                        matches!(n, Ok(1000))
                            || matches!(n, Err(Error::Damaged(_) | Error::Corrupt(_))),
                        "byte {at}: {n:?}"
                    );
                }
                Err(e) => assert!(
                    matches!(e, Error::Damaged(_) | Error::Corrupt(_) | Error::Index(_)),
                    "byte {at}: {e}"
                ),
            }
            std::fs::write(&db, &pristine).unwrap();
        }
        assert_eq!(files(dir.path(), "chunks").len(), 10);
    }

    fn store_events(store: &DiskStore) -> Result<usize, Error> {
        let mut n = 0;
        store.scan_events(i64::MIN, i64::MAX, &mut |_| {
            n += 1;
            Ok(())
        })?;
        Ok(n)
    }

    fn copy_dir(from: &Path, to: &Path) {
        copy_tree(from, to).unwrap();
    }

    /// Issue 16.3: a damaged record in the middle of the log is damage,
    /// not a torn tail: refused with the file and offset, the file kept.
    #[test]
    fn a_damaged_log_record_in_the_middle_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), &options());
            for i in 0..3 {
                commit(&store, (i * 10..i * 10 + 10).map(nth).collect()).unwrap();
            }
        }
        let log = dir.path().join("wal").join("00000000.wal");
        let mut bytes = std::fs::read(&log).unwrap();
        // The second record starts after the first one's header and payload.
        let record = 8 + u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        bytes[record + 20] ^= 1;
        std::fs::write(&log, &bytes).unwrap();
        let err = open_err(dir.path(), &options());
        let msg = err.to_string();
        assert!(
            msg.contains("00000000.wal") && msg.contains(&format!("byte {record}")),
            "{msg}"
        );
        assert_eq!(
            std::fs::read(&log).unwrap(),
            bytes,
            "the log is kept as it was"
        );
    }

    #[test]
    fn a_deleted_log_is_refused_not_read_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), &options());
            commit(&store, (0..150).map(nth).collect()).unwrap();
        }
        std::fs::remove_file(dir.path().join("wal").join("00000001.wal")).unwrap();
        let err = open_err(dir.path(), &options());
        assert!(err.to_string().contains("00000001.wal is missing"), "{err}");
    }

    /// Issue 16.4: lowering `chunk_events` below the open chunk's size
    /// after a crash made the next seal underflow (a panic).
    #[test]
    fn lowering_chunk_events_after_a_crash_seals_what_was_open() {
        let dir = tempfile::tempdir().unwrap();
        let big = StoreOptions {
            chunk_events: 1000,
            ..StoreOptions::default()
        };
        {
            let store = open(dir.path(), &big);
            commit(&store, (0..500).map(nth).collect()).unwrap();
            // Dropped without `close`: the events stay in the log.
        }
        let small = StoreOptions {
            chunk_events: 300,
            ..StoreOptions::default()
        };
        let store = open(dir.path(), &small);
        commit(&store, vec![nth(500)]).unwrap();
        assert_eq!(all_events(&store), (0..501).map(nth).collect::<Vec<_>>());
        drop(store);
        let store = open(dir.path(), &small);
        assert_eq!(all_events(&store), (0..501).map(nth).collect::<Vec<_>>());
        commit(&store, (501..900).map(nth).collect()).unwrap();
        assert_eq!(all_events(&store).len(), 900);
    }

    /// Issue 16.5: the ids of a chunk that is lost while the store runs
    /// can be written again (rather than 503 forever), and a reopened
    /// store refuses to start, naming the missing file.
    #[test]
    fn ids_of_a_lost_chunk_can_be_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), &options());
        commit(&store, (0..250).map(nth).collect()).unwrap();
        std::fs::remove_file(dir.path().join("chunks").join("00000001.chunk")).unwrap();
        let again = commit(&store, (150..160).map(nth).collect()).unwrap();
        assert!(again.iter().all(|o| *o == Outcome::Accepted), "{again:?}");
        drop(store);
        let err = open_err(dir.path(), &options());
        assert!(err.to_string().contains("chunks/00000001.chunk"), "{err}");
    }

    /// Format-2 stores written before the commit-point rule numbered the
    /// log by seals (log 1 after 2 chunks): they open, and a writer renames
    /// the log to the chunk count before anything else.
    #[test]
    fn a_log_numbered_the_old_way_is_renamed_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), &options());
            commit(&store, (0..250).map(nth).collect()).unwrap();
            let db = store.db().unwrap();
            db.insert(
                codec::key(prefix::META, meta::WAL),
                &codec::encode_counter(1),
            )
            .unwrap();
            store.flush_index().unwrap();
        }
        let wal = dir.path().join("wal");
        std::fs::rename(wal.join("00000002.wal"), wal.join("00000001.wal")).unwrap();
        let store = open(dir.path(), &options());
        assert_eq!(all_events(&store), (0..250).map(nth).collect::<Vec<_>>());
        commit(&store, (250..260).map(nth).collect()).unwrap();
        assert_eq!(files(dir.path(), "wal"), vec!["00000002.wal"]);
        drop(store);
        let store = open(dir.path(), &options());
        assert_eq!(all_events(&store), (0..260).map(nth).collect::<Vec<_>>());
    }

    /// Issue 16.7: readers write nothing in the data directory and share
    /// it; a writer and a reader exclude each other.
    #[test]
    fn readers_share_the_store_write_nothing_and_exclude_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), &options());
            commit(&store, (0..150).map(nth).collect()).unwrap();
        }
        let snapshot = || {
            let mut files = Vec::new();
            let mut stack = vec![dir.path().to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let e = e.unwrap();
                    let meta = e.metadata().unwrap();
                    if meta.is_dir() {
                        stack.push(e.path());
                    } else {
                        files.push((e.path(), meta.len(), meta.modified().unwrap()));
                    }
                }
            }
            files.sort();
            files
        };
        let before = snapshot();
        let reading = StoreOptions {
            read_only: true,
            ..options()
        };
        let a = open(dir.path(), &reading);
        let b = open(dir.path(), &reading);
        assert_eq!(all_events(&a), (0..150).map(nth).collect::<Vec<_>>());
        assert_eq!(all_events(&b).len(), 150);
        assert!(matches!(
            DiskStore::open(dir.path(), &options()),
            Err(Error::Locked { .. })
        ));
        assert!(a.append(vec![nth(150)]).is_err(), "a reader never writes");
        drop((a, b));
        assert_eq!(snapshot(), before, "a reader changed the data directory");
        let writer = open(dir.path(), &options());
        assert!(matches!(
            DiskStore::open(dir.path(), &reading),
            Err(Error::Locked { .. })
        ));
        drop(writer);
    }

    #[test]
    fn a_damaged_section_of_a_chunk_is_reported_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), &options());
            store.append((0..100).map(nth).collect()).unwrap();
        }
        let path = dir.path().join("chunks").join("00000000.chunk");
        let pristine = std::fs::read(&path).unwrap();
        let header = {
            let store = open(dir.path(), &options());
            store.shared.read().chunks[0].header.clone()
        };
        let mut sections = vec![header.ids];
        sections.extend(header.events_sections.iter().map(|s| s.section));
        sections.extend(header.names.iter().map(|s| s.section));
        for section in sections {
            let mut bytes = pristine.clone();
            bytes[(section.offset + u64::from(section.len) / 2) as usize] ^= 0x55;
            std::fs::write(&path, &bytes).unwrap();
            let store = open(dir.path(), &options());
            let export = store.scan_events(i64::MIN, i64::MAX, &mut |_| Ok(()));
            let rows = store.scan(&Scan {
                names: None,
                from: i64::MIN,
                to: i64::MAX,
                ..Default::default()
            });
            let errors: Vec<String> = [
                export.err().map(|e| e.to_string()),
                rows.err().map(|e| e.to_string()),
            ]
            .into_iter()
            .flatten()
            .collect();
            assert!(!errors.is_empty(), "damage at {section:?} went unnoticed");
            assert!(errors.iter().all(|e| e.contains("checksum")), "{errors:?}");
        }
    }

    #[test]
    fn a_reader_of_a_format_1_store_says_how_to_upgrade_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("conf"), b"sled").unwrap();
        let reading = StoreOptions {
            read_only: true,
            ..options()
        };
        let err = DiskStore::open(dir.path(), &reading).err().unwrap();
        assert!(err.to_string().contains("upgrade it in place"), "{err}");
    }
}
