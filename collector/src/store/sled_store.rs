//! The embedded store on sled 0.34.
//!
//! Layout (see [`codec`]): events are interned (person keys and names to
//! dense u32s) and appended to per-name column blocks for analysis, and to
//! compressed raw blocks for export; ids go to a dedup index. Everything of
//! one append goes into a single sled `Batch`, which sled applies
//! atomically, so a crash never leaves an id recorded without its event
//! (which would turn the client's retry into a silent loss).
//!
//! The most recent block of each name (its *tail*), and of the raw events,
//! stays open in memory. Each commit persists only its own rows as a small
//! *delta* block; the commit that fills a tail writes it as one sealed block
//! and removes its deltas in the same atomic batch. So many small commits
//! (single-event requests) still end up as blocks of thousands of rows, and
//! every event is written about twice, not once per later commit (an
//! earlier design rewrote the growing tail on every commit, and sled's log
//! kept every version until garbage collection: stores were 3-6x larger
//! than gzip'd NDJSON).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use rayon::prelude::*;
use tally_event::Event;
use tally_query::{NameId, QueryError, Rows, Scan, Source};

use super::codec::{self, ColumnBlock, IdBucket, IdSuffix, meta, prefix};
use super::{EventStore, Outcome};
use crate::error::Error;

/// Rows per column block before it is sealed and a new tail starts.
const COLUMN_BLOCK_ROWS: usize = 2048;
/// Events per raw block before it is sealed: large enough for zstd to find
/// the repetition across events (names, property keys).
const RAW_BLOCK_EVENTS: usize = 1024;

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// sled's page cache, in bytes: bounds the store's memory.
    pub cache_capacity: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity: 256 * 1024 * 1024,
        }
    }
}

/// [`EventStore`] on an embedded sled database.
pub struct SledStore {
    db: sled::Db,
    dir: PathBuf,
    /// Loaded on the first append, so read-only users (queries, export)
    /// never pay for loading the person dictionary.
    writer: Mutex<Option<WriterState>>,
    /// Blob files already fsync'd (sled writes blobs without fsync).
    synced_blobs: Mutex<HashSet<OsString>>,
    /// Held for writing only while a commit replaces deltas by a sealed
    /// block, and for reading while a scan walks the keys, so that a scan
    /// never counts a row twice (delta and sealed) or not at all.
    seal_lock: RwLock<()>,
}

/// In-memory state of the single writer.
struct WriterState {
    names: HashMap<String, u32>,
    persons: HashMap<String, u32>,
    next_seq: u64,
    column_tails: HashMap<u32, Tail<ColumnBlock>>,
    raw_tail: Tail<Vec<Event>>,
    /// Decoded dedup buckets of recent commits, exactly as stored: with
    /// ids minted in 256 ms buckets, consecutive small commits hit the same
    /// bucket, and re-reading and decoding it each time cost a quarter of
    /// single-event throughput.
    id_cache: HashMap<codec::IdBucketPrefix, Vec<(u16, IdBucket)>>,
}

/// Buckets kept decoded by the writer (each at most a few hundred KiB, and
/// usually one or two are hot); past this the cache starts over.
const ID_CACHE_BUCKETS: usize = 64;

/// An open block: everything since the last seal, of which `rows[..persisted]`
/// is already on disk as the delta blocks `deltas`.
#[derive(Default)]
struct Tail<B> {
    rows: B,
    persisted: usize,
    deltas: Vec<u64>,
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Self, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_capacity)
            .mode(sled::Mode::HighThroughput)
            // Durability comes from our own flush + fsync per commit; sled's
            // background flusher would only add uncoordinated writes.
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    Error::Locked {
                        path: dir.parent().unwrap_or(dir).to_path_buf(),
                    }
                }
                other => Error::Sled(other),
            })?;
        let created = match db.get(codec::key(prefix::META, meta::FORMAT))? {
            None => {
                db.insert(
                    codec::key(prefix::META, meta::FORMAT),
                    &[codec::FORMAT_VERSION],
                )?;
                true
            }
            Some(v) if v.as_ref() == [codec::FORMAT_VERSION] => false,
            Some(v) => {
                return Err(Error::UnsupportedFormat {
                    found: v.first().copied().unwrap_or(0),
                    supported: codec::FORMAT_VERSION,
                });
            }
        };
        let store = SledStore {
            db,
            dir: dir.to_path_buf(),
            writer: Mutex::new(None),
            synced_blobs: Mutex::new(HashSet::new()),
            seal_lock: RwLock::new(()),
        };
        // Only a new store has written anything (its format marker); opening
        // an existing one for a query must not cost an fsync.
        if created {
            store.sync()?;
        }
        Ok(store)
    }

    fn counter(&self, name: &[u8]) -> Result<u64, Error> {
        self.db
            .get(codec::key(prefix::META, name))?
            .map_or(Ok(0), |v| codec::decode_counter(&v))
    }

    fn load_dictionary(&self, pfx: u8) -> Result<HashMap<String, u32>, Error> {
        let mut map = HashMap::new();
        for kv in self.db.scan_prefix([pfx]) {
            let (k, v) = kv?;
            let name = String::from_utf8(k[1..].to_vec())
                .map_err(|_| Error::corrupt("dictionary key is not UTF-8"))?;
            map.insert(name, codec::decode_id(&v)?);
        }
        Ok(map)
    }

    fn load_writer_state(&self) -> Result<WriterState, Error> {
        // Tails are not reloaded: after a restart the deltas of the open
        // tails simply stay as short blocks (readers treat every block
        // alike), which keeps recovery trivial.
        Ok(WriterState {
            names: self.load_dictionary(prefix::NAME)?,
            persons: self.load_dictionary(prefix::PERSON)?,
            next_seq: self.counter(meta::NEXT_SEQ)?,
            column_tails: HashMap::new(),
            raw_tail: Tail::default(),
            id_cache: HashMap::new(),
        })
    }

    /// The stored dedup buckets of every id in `events`: from the writer's
    /// cache of recently used buckets (taken out of it; the commit puts
    /// them back), else read from sled.
    fn load_id_buckets(
        &self,
        events: &[Event],
        cache: &mut HashMap<codec::IdBucketPrefix, Vec<(u16, IdBucket)>>,
    ) -> Result<HashMap<codec::IdBucketPrefix, IdBuckets>, Error> {
        let mut buckets = HashMap::new();
        for e in events {
            let key = codec::id_bucket_prefix(&e.id);
            if let std::collections::hash_map::Entry::Vacant(slot) = buckets.entry(key) {
                let mut parts = cache.remove(&key).unwrap_or_default();
                if parts.is_empty() {
                    for kv in self.db.scan_prefix(key) {
                        let (k, v) = kv?;
                        parts.push((codec::id_bucket_part(&k)?, IdBucket::decode(&v)?));
                    }
                }
                slot.insert(IdBuckets {
                    parts,
                    new: Vec::new(),
                });
            }
        }
        Ok(buckets)
    }

    /// fsyncs sled's log file and any blob file not yet fsync'd. Needed
    /// because sled 0.34 only uses `sync_file_range`, which does not flush
    /// the device's write cache (sled issue #1452), and writes blobs without
    /// any sync at all.
    fn fsync_files(&self) -> Result<(), Error> {
        let sync = |path: &Path| {
            File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(format!("fsync {}", path.display()), e))
        };
        sync(&self.dir.join("db"))?;
        let blobs = self.dir.join("blobs");
        if let Ok(entries) = std::fs::read_dir(&blobs) {
            let mut synced = self.synced_blobs.lock().expect("blob set lock");
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
        Ok(())
    }
}

/// The stored parts of one dedup bucket and the ids an append adds to it.
struct IdBuckets {
    parts: Vec<(u16, IdBucket)>,
    new: Vec<IdSuffix>,
}

impl IdBuckets {
    fn contains(&self, suffix: &IdSuffix) -> bool {
        self.parts.iter().any(|(_, b)| b.contains(suffix))
    }

    /// Merges the new ids into the last part (starting new parts once it is
    /// full) and returns the parts to write; sealed parts are untouched.
    fn merge_new(&mut self) -> Vec<(u16, IdBucket)> {
        if self.new.is_empty() {
            return Vec::new();
        }
        let (mut part, mut last) = self.parts.pop().unwrap_or_default();
        last.extend(&std::mem::take(&mut self.new));
        let mut changed = Vec::new();
        let mut ids = last.suffixes.as_slice();
        loop {
            let take = ids.len().min(codec::ID_BUCKET_PART_MAX);
            let (chunk, rest) = ids.split_at(take);
            changed.push((
                part,
                IdBucket {
                    suffixes: chunk.to_vec(),
                },
            ));
            if rest.is_empty() {
                break;
            }
            part += 1;
            ids = rest;
        }
        self.parts.extend(changed.iter().cloned());
        changed
    }
}

impl WriterState {
    fn intern(map: &mut HashMap<String, u32>, key: &str, pfx: u8, batch: &mut sled::Batch) -> u32 {
        if let Some(&id) = map.get(key) {
            return id;
        }
        let id = map.len() as u32;
        map.insert(key.to_string(), id);
        batch.insert(codec::key(pfx, key.as_bytes()), &codec::encode_id(id));
        id
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }
}

impl EventStore for SledStore {
    fn append(&self, events: Vec<Event>) -> Result<Vec<Outcome>, Error> {
        let mut guard = self.writer.lock().expect("writer lock");
        if guard.is_none() {
            *guard = Some(self.load_writer_state()?);
        }
        let result = self.append_locked(guard.as_mut().expect("just loaded"), events);
        if result.is_err() {
            // The in-memory state (open tails, dictionaries, id cache) may
            // have moved ahead of what reached the store; a client's retry
            // would then be stored twice. Start again from what is on disk.
            *guard = None;
        }
        result
    }

    fn sync(&self) -> Result<(), Error> {
        self.db.flush()?;
        self.fsync_files()
    }

    fn scan_events(
        &self,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(Event) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let _consistent = self.seal_lock.read().expect("seal lock");
        for kv in self.db.scan_prefix([prefix::RAW]) {
            let (_, v) = kv?;
            for e in codec::decode_raw_block(&v)? {
                if (from..to).contains(&e.timestamp) {
                    each(e)?;
                }
            }
        }
        Ok(())
    }
}

impl SledStore {
    /// One commit's work under the writer lock; see [`EventStore::append`].
    fn append_locked(
        &self,
        w: &mut WriterState,
        events: Vec<Event>,
    ) -> Result<Vec<Outcome>, Error> {
        let mut batch = sled::Batch::default();
        let mut buckets = self.load_id_buckets(&events, &mut w.id_cache)?;
        let mut seen = HashSet::with_capacity(events.len());
        let mut outcomes = Vec::with_capacity(events.len());
        let mut touched_names = HashSet::new();
        let mut sealed_columns: Vec<(u32, Tail<ColumnBlock>)> = Vec::new();
        let mut sealed_raw: Vec<Tail<Vec<Event>>> = Vec::new();

        for e in events {
            let bucket = buckets
                .get_mut(&codec::id_bucket_prefix(&e.id))
                .expect("every event's bucket was loaded");
            let suffix = codec::id_suffix(&e.id);
            if !seen.insert(e.id) || bucket.contains(&suffix) {
                outcomes.push(Outcome::Duplicate);
                continue;
            }
            outcomes.push(Outcome::Accepted);
            bucket.new.push(suffix);
            let person =
                WriterState::intern(&mut w.persons, e.person(), prefix::PERSON, &mut batch);
            let name = WriterState::intern(&mut w.names, &e.event, prefix::NAME, &mut batch);

            let tail = w.column_tails.entry(name).or_default();
            tail.rows.push(person, e.timestamp, e.stage, e.revenue);
            touched_names.insert(name);
            if tail.rows.len() >= COLUMN_BLOCK_ROWS {
                let full = std::mem::take(tail);
                sealed_columns.push((name, full));
            }

            w.raw_tail.rows.push(e);
            if w.raw_tail.rows.len() >= RAW_BLOCK_EVENTS {
                sealed_raw.push(std::mem::take(&mut w.raw_tail));
            }
        }

        // Sealed blocks replace their deltas; open tails persist their new
        // rows as a delta each.
        let mut raw_blocks: Vec<(u64, &[Event])> = Vec::new();
        for tail in &sealed_raw {
            for d in &tail.deltas {
                batch.remove(&codec::raw_key(*d));
            }
            raw_blocks.push((w.take_seq(), &tail.rows));
        }
        let open = &mut w.raw_tail;
        if open.rows.len() > open.persisted {
            let seq = w.next_seq;
            w.next_seq += 1;
            raw_blocks.push((seq, &open.rows[open.persisted..]));
            open.deltas.push(seq);
            open.persisted = open.rows.len();
        }
        // Compression is the costliest step of a commit and parallelises well.
        let encoded: Vec<(u64, Vec<u8>)> = raw_blocks
            .par_iter()
            .map(|(seq, evs)| (*seq, codec::encode_raw_block(evs)))
            .collect();
        for (seq, bytes) in encoded {
            batch.insert(&codec::raw_key(seq), bytes);
        }
        for (name, tail) in &sealed_columns {
            for d in &tail.deltas {
                batch.remove(&codec::column_key(*name, *d));
            }
            let seq = w.take_seq();
            batch.insert(&codec::column_key(*name, seq), tail.rows.encode());
        }
        for name in touched_names {
            let seq = w.next_seq;
            let tail = w.column_tails.get_mut(&name).expect("touched tails exist");
            if tail.rows.len() > tail.persisted {
                batch.insert(
                    &codec::column_key(name, seq),
                    tail.rows.slice_from(tail.persisted).encode(),
                );
                tail.deltas.push(seq);
                tail.persisted = tail.rows.len();
                w.next_seq += 1;
            }
        }
        if w.id_cache.len() > ID_CACHE_BUCKETS {
            w.id_cache.clear();
        }
        for (prefix, mut bucket) in buckets {
            for (part, ids) in bucket.merge_new() {
                batch.insert(&codec::id_bucket_key(&prefix, part), ids.encode());
            }
            w.id_cache.insert(prefix, bucket.parts);
        }
        for (name, value) in [
            (meta::NEXT_SEQ, w.next_seq),
            (meta::NEXT_PERSON, w.persons.len() as u64),
            (meta::NEXT_NAME, w.names.len() as u64),
        ] {
            batch.insert(
                codec::key(prefix::META, name),
                &codec::encode_counter(value),
            );
        }
        let sealing = !sealed_columns.is_empty() || !sealed_raw.is_empty();
        let _exclusive = sealing.then(|| self.seal_lock.write().expect("seal lock"));
        self.db.apply_batch(batch)?;
        Ok(outcomes)
    }
}

impl Source for SledStore {
    fn name_id(&self, name: &str) -> Option<NameId> {
        let v = self
            .db
            .get(codec::key(prefix::NAME, name.as_bytes()))
            .ok()??;
        codec::decode_id(&v).ok()
    }

    fn person_count(&self) -> usize {
        // Person ids are dense, so the number handed out is the bound; it is
        // committed in the same batch as the persons themselves.
        self.counter(meta::NEXT_PERSON).unwrap_or(0) as usize
    }

    fn scan(&self, scan: &Scan<'_>) -> Result<Vec<Rows>, QueryError> {
        let err = |e: Error| QueryError::Source(e.to_string());
        let mut blobs = Vec::new();
        // Only the walk over keys needs the lock; decoding happens after.
        let consistent = self.seal_lock.read().expect("seal lock");
        let mut collect = |pfx: &[u8]| -> Result<(), Error> {
            for kv in self.db.scan_prefix(pfx) {
                let (k, v) = kv?;
                let (min, max) = ColumnBlock::time_bounds(&v)?;
                if max >= scan.from && min < scan.to {
                    blobs.push((codec::decode_id(&k[1..5])?, v));
                }
            }
            Ok(())
        };
        match scan.names {
            Some(names) => {
                for &n in names {
                    collect(&codec::column_prefix(n)).map_err(err)?;
                }
            }
            None => collect(&[prefix::COLUMNS]).map_err(err)?,
        }
        drop(consistent);
        blobs
            .par_iter()
            .map(|(name, bytes)| {
                let block = ColumnBlock::decode(bytes).map_err(err)?;
                Ok(filter_rows(*name, block, scan.from, scan.to))
            })
            .filter(|r| r.as_ref().map_or(true, |rows| !rows.is_empty()))
            .collect()
    }
}

fn filter_rows(name: NameId, b: ColumnBlock, from: i64, to: i64) -> Rows {
    if b.ts.iter().all(|t| (from..to).contains(t)) {
        return Rows {
            name,
            person: b.person,
            ts: b.ts,
            stage: b.stage,
            revenue: b.revenue,
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

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn event(id: Uuid) -> Event {
        Event {
            id,
            event: "e".into(),
            user_id: Some("u".into()),
            anonymous_id: None,
            timestamp: 1_800_000_000_000,
            stage: None,
            revenue: None,
            properties: None,
        }
    }

    #[test]
    fn small_commits_become_sealed_blocks_and_every_row_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), &StoreOptions::default()).unwrap();
        let total = 5_000u128;
        let mut next = 0u128;
        while next < total {
            // Commits of 7 events, like single-event traffic grouped by the writer.
            let chunk: Vec<Event> = (next..(next + 7).min(total))
                .map(|i| event(Uuid::from_u128((i << 64) | 0x7000_8000)))
                .collect();
            next += chunk.len() as u128;
            store.append(chunk).unwrap();
        }
        store.sync().unwrap();
        let name = store.name_id("e").unwrap();
        let rows = store
            .scan(&Scan {
                names: Some(&[name]),
                from: i64::MIN,
                to: i64::MAX,
            })
            .unwrap();
        assert_eq!(rows.iter().map(Rows::len).sum::<usize>(), total as usize);
        let mut exported = 0;
        store
            .scan_events(i64::MIN, i64::MAX, &mut |_| {
                exported += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(exported, total as usize);
        // 5000 rows = 2 sealed column blocks of 2048 + deltas of the open
        // tail; 4 sealed raw blocks of 1024 + deltas. Not one block per commit.
        let column_keys = store.db.scan_prefix(codec::column_prefix(name)).count();
        let raw_keys = store.db.scan_prefix([prefix::RAW]).count();
        let open_commits = (5_000 % 1024usize).div_ceil(7) + 1;
        assert!(
            column_keys <= 2 + (5_000 % 2048usize).div_ceil(7) + 1,
            "{column_keys}"
        );
        assert!(raw_keys <= 4 + open_commits, "{raw_keys}");
        assert!(column_keys < 200 && raw_keys < 200);
    }

    #[test]
    fn ids_sharing_a_prefix_fill_sealed_parts_and_stay_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        // Sequence-like ids: all share their leading bytes (one bucket).
        let ids: Vec<Uuid> = (1..=10_000u128).map(Uuid::from_u128).collect();
        {
            let store = SledStore::open(dir.path(), &StoreOptions::default()).unwrap();
            for chunk in ids.chunks(3000) {
                let out = store
                    .append(chunk.iter().copied().map(event).collect())
                    .unwrap();
                assert!(out.iter().all(|o| *o == Outcome::Accepted));
            }
            store.sync().unwrap();
            let parts = store
                .db
                .scan_prefix(codec::id_bucket_prefix(&ids[0]))
                .count();
            assert_eq!(parts, 10_000usize.div_ceil(codec::ID_BUCKET_PART_MAX));
        }
        // After a reopen, every id, old part or last, is still a duplicate.
        let store = SledStore::open(dir.path(), &StoreOptions::default()).unwrap();
        let again: Vec<Event> = ids.iter().step_by(7).copied().map(event).collect();
        let n = again.len();
        let out = store.append(again).unwrap();
        assert_eq!(out, vec![Outcome::Duplicate; n]);
        let fresh = store.append(vec![event(Uuid::from_u128(10_001))]).unwrap();
        assert_eq!(fresh, vec![Outcome::Accepted]);
    }
}
