//! Compaction: the store rewritten without what it no longer needs — the
//! small chunks every clean stop seals, merged into full ones; deleted
//! persons' events; events older than `--keep` — while ingest and
//! queries go on.
//!
//! A rewrite, not an edit: the live events go, in their order, into a new
//! store beside the live one (`store.compact/`), through the same append
//! and seal code as any ingest (so it is deduplicated, interned, sealed
//! and fsync'd exactly the same way). Ingest continues meanwhile; then,
//! holding the writer, the chunks sealed since and the open chunk are
//! added, the new store is marked complete, and the directories are
//! swapped with two renames; a crash between them is finished by the next
//! open ([`finish_swap`]). Readers switch from the old snapshot to the new
//! one at once, so no event is ever counted twice or not at all. It needs
//! the store's size again in free space while it runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tally_event::Event;

use super::super::chunk;
use super::super::{Admin, Ingest};
use super::{DiskStore, StoreOptions};
use crate::Error;

/// Written (and fsync'd) into a new store once it holds everything: the
/// swap's commit point.
const COMPLETE: &str = "COMPLETE";

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Chunk files before.
    pub chunks_before: u64,
    /// Chunk files after.
    pub chunks_after: u64,
    /// Events kept.
    pub events: u64,
    /// Events removed (deleted persons', older than `--keep`).
    pub removed: u64,
}

/// `dir` with `suffix` added to its name (`store` → `store.compact`).
pub(super) fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

/// fsyncs the directory holding `dir` (after renaming `dir`).
pub(super) fn sync_parent(dir: &Path) -> Result<(), Error> {
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => chunk::sync_dir(p),
        None => chunk::sync_dir(Path::new(".")),
    }
}

fn remove_tree(path: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// Finishes or undoes a compaction a crash interrupted, before the store
/// in `dir` is opened: a complete new store whose swap had started
/// replaces the old one; anything less is removed.
pub(super) fn finish_swap(dir: &Path) -> Result<(), Error> {
    let new = sibling(dir, ".compact");
    let old = sibling(dir, ".old");
    let complete = new.join(COMPLETE).exists();
    if !dir.exists() && complete {
        // Crashed between the two renames.
        std::fs::rename(&new, dir)
            .map_err(|e| Error::io(format!("renaming {}", new.display()), e))?;
        sync_parent(dir)?;
        tracing::warn!("finished a compaction a crash interrupted");
    } else if !dir.exists() && old.exists() {
        std::fs::rename(&old, dir)
            .map_err(|e| Error::io(format!("renaming {}", old.display()), e))?;
        sync_parent(dir)?;
    }
    if new.exists() {
        remove_tree(&new)?;
    }
    if old.exists() {
        remove_tree(&old)?;
    }
    let marker = dir.join(COMPLETE);
    if marker.exists() {
        std::fs::remove_file(&marker)
            .map_err(|e| Error::io(format!("removing {}", marker.display()), e))?;
    }
    Ok(())
}

/// Events per append into the new store.
const BATCH: usize = 8192;

/// Chunks beyond what the events fill that do not yet call for a
/// compaction (each costs a file and a little per query).
const SMALL_CHUNKS_TOLERATED: u64 = 16;

impl DiskStore {
    /// Compacts the store (see the module doc). Deletions wait for it.
    pub fn compact(&self) -> Result<Compacted, Error> {
        let _one = self.compacting.lock();
        if self.skip_damaged || self.reader.is_some() {
            return Err(Error::Unavailable(
                "the store was opened to read only".into(),
            ));
        }
        // The writer has started (what a crash left is repaired first).
        self.prepare_writer()?;
        let new_dir = sibling(&self.dir, ".compact");
        remove_tree(&new_dir)?;
        let result = self.compact_into(&new_dir);
        if result.is_err() && !new_dir.join(COMPLETE).exists() {
            let _ = remove_tree(&new_dir);
        }
        result
    }

    /// Whether a compaction would change anything worth its cost: a
    /// deletion to apply, events past `--keep`, or more than a few chunks
    /// beyond what the events fill (the small chunks clean stops seal).
    pub fn needs_compaction(&self) -> bool {
        let shared = self.shared.read();
        if !shared.deletions.is_empty() {
            return true;
        }
        let kept_from = self.kept_from();
        if shared.chunks.iter().any(|c| c.header.min_ts < kept_from) {
            return true;
        }
        let events: u64 = shared
            .chunks
            .iter()
            .map(|c| u64::from(c.header.events))
            .sum();
        let full = events.div_ceil(self.chunk_events as u64);
        shared.chunks.len() as u64 > full + SMALL_CHUNKS_TOLERATED
    }

    /// Runs compactions in the background of a collector: checks every
    /// `every`, compacts when [`DiskStore::needs_compaction`]; ends when
    /// the store is dropped.
    pub fn compact_in_background(store: &Arc<DiskStore>, every: std::time::Duration) {
        let store = Arc::downgrade(store);
        let spawned = std::thread::Builder::new()
            .name("tally-compact".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    let Some(store) = store.upgrade() else { return };
                    if !store.needs_compaction() {
                        continue;
                    }
                    let started = std::time::Instant::now();
                    match store.compact() {
                        Ok(c) => tracing::info!(
                            chunks_before = c.chunks_before,
                            chunks_after = c.chunks_after,
                            events = c.events,
                            removed = c.removed,
                            seconds = started.elapsed().as_secs_f64(),
                            "compacted the store"
                        ),
                        Err(e) => {
                            tracing::error!(error = %e, "compaction failed; the store is unchanged")
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the compaction thread");
        }
    }

    fn compact_into(&self, new_dir: &Path) -> Result<Compacted, Error> {
        let new = DiskStore::open(
            new_dir,
            &StoreOptions {
                chunk_events: self.chunk_events,
                wal_max_bytes: self.wal_max_bytes,
                cache_capacity: self.cache_capacity,
                ..StoreOptions::default()
            },
        )?;
        // Phase 1, ingest going on: the chunks sealed so far.
        let (chunks, deletions) = {
            let shared = self.shared.read();
            (shared.chunks.clone(), shared.deletions.clone())
        };
        let mut copier = Copier {
            new,
            batch: Vec::with_capacity(BATCH),
            deletions,
            kept_from: self.kept_from(),
            stats: Compacted {
                chunks_before: chunks.len() as u64,
                ..Compacted::default()
            },
        };
        for c in &chunks {
            c.events(&mut |e| copier.push(Some(c.number), e))?;
        }
        // Phase 2, holding the writer: what was sealed since, and the open
        // chunk; then the swap.
        self.with_writer(|s, w| {
            let (since, open) = {
                let shared = s.shared.read();
                (
                    shared.chunks[chunks.len()..].to_vec(),
                    shared.open.events.clone(),
                )
            };
            copier.stats.chunks_before += since.len() as u64;
            for c in &since {
                c.events(&mut |e| copier.push(Some(c.number), e))?;
            }
            for e in open {
                copier.push(None, e)?;
            }
            let stats = copier.finish()?;
            s.swap_in(new_dir)?;
            *w = s.start_writer()?;
            Ok(stats)
        })
    }

    /// Replaces this store's files with the complete store in `new_dir`.
    fn swap_in(&self, new_dir: &Path) -> Result<(), Error> {
        // Property files still queued belong to the old files: written
        // after the swap, they would land beside the new store's chunks.
        self.flush_props();
        let marker = new_dir.join(COMPLETE);
        std::fs::File::create(&marker)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", marker.display()), e))?;
        chunk::sync_dir(new_dir)?;
        sync_parent(new_dir)?;
        // Queries running on the old snapshot keep reading its files
        // through open handles after the rename.
        {
            let shared = self.shared.read();
            for c in &shared.chunks {
                c.open_file()?;
            }
        }
        if let Some(db) = self.db.write().take() {
            let _ = db.flush();
        }
        *self.wal_file.lock() = None;
        let old = sibling(&self.dir, ".old");
        std::fs::rename(&self.dir, &old)
            .map_err(|e| Error::io(format!("renaming {}", self.dir.display()), e))?;
        std::fs::rename(new_dir, &self.dir)
            .map_err(|e| Error::io(format!("renaming {}", new_dir.display()), e))?;
        sync_parent(&self.dir)?;
        std::fs::remove_file(self.dir.join(COMPLETE))
            .map_err(|e| Error::io("removing the compaction marker", e))?;
        // The old index's sled may still be letting go of its files: a
        // leftover is removed by the next open.
        if let Err(e) = remove_tree(&old) {
            tracing::warn!(error = %e, "the old store's files stay until the next start");
        }
        // The new store's index, once its sled has let go of it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match self.reopen_index() {
                Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other,
            }
        }?;
        self.props_files.lock().clear();
        Ok(())
    }
}

/// Copies the live events into the new store.
struct Copier {
    new: DiskStore,
    batch: Vec<Event>,
    deletions: std::sync::Arc<super::Deletions>,
    kept_from: i64,
    stats: Compacted,
}

impl Copier {
    /// Event `e` of chunk `n` (`None`: the open chunk).
    fn push(&mut self, n: Option<u32>, e: Event) -> Result<(), Error> {
        if e.timestamp < self.kept_from || self.deletions.event_deleted(n, &e) {
            self.stats.removed += 1;
            return Ok(());
        }
        self.stats.events += 1;
        self.batch.push(e);
        if self.batch.len() >= BATCH {
            self.new.append(std::mem::take(&mut self.batch))?;
        }
        Ok(())
    }

    /// Makes the new store durable and lets go of it.
    fn finish(mut self) -> Result<Compacted, Error> {
        if !self.batch.is_empty() {
            self.new.append(std::mem::take(&mut self.batch))?;
        }
        self.new.sync()?;
        self.new.flush_index()?;
        self.new.flush_props();
        self.stats.chunks_after = self.new.stats().chunks;
        Ok(self.stats)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use tally_query::{MemEvent, MemSource, Scan, Source};
    use uuid::Uuid;

    use super::*;
    use crate::{Export, Outcome};

    const T: i64 = 1_800_000_000_000;

    fn ev(i: u128, user: Option<&str>, anon: Option<&str>, ts: i64) -> Event {
        Event {
            id: Uuid::from_u128(0x0188_0000_0000_7000_8000_0000_0000_0000 | i),
            event: ["view", "signup", "buy"][i as usize % 3].into(),
            user_id: user.map(Into::into),
            anonymous_id: anon.map(Into::into),
            timestamp: ts,
            stage: None,
            revenue: (i % 5 == 0).then_some(2.5),
            properties: Some(format!(
                r#"{{"plan":"{}"}}"#,
                ["pro", "free"][i as usize % 2]
            )),
        }
    }

    /// Event `i` of a small product: visitors `v*` who sign up as `u*`.
    fn nth(i: u128) -> Event {
        let k = i % 7;
        let anon = format!("v{k}");
        let user = format!("u{k}");
        match i % 3 {
            0 => ev(i, None, Some(&anon), T + i as i64),
            1 => ev(i, Some(&user), Some(&anon), T + i as i64),
            _ => ev(i, Some(&user), None, T + i as i64),
        }
    }

    fn open(dir: &Path, chunk_events: usize) -> DiskStore {
        super::super::tests::open(
            dir,
            &StoreOptions {
                chunk_events,
                ..StoreOptions::default()
            },
        )
    }

    fn exported(store: &DiskStore) -> Vec<Event> {
        let mut out = Vec::new();
        store
            .scan_events(i64::MIN, i64::MAX, &mut |e| {
                out.push(e);
                Ok(())
            })
            .unwrap();
        out
    }

    /// Every row with its person's key, as MemSource over `events` would
    /// give it (identity linked, a filter and a breakdown).
    fn same_rows_as_a_plain_statement(store: &DiskStore, events: &[Event]) {
        let mem = MemSource::new(events.iter().map(MemEvent::of_event));
        let keys = store.person_keys();
        let filters = [tally_query::Where::parse("plan = pro").unwrap()];
        let by = ["plan".to_string()];
        let scan = Scan {
            from: i64::MIN,
            to: i64::MAX,
            filters: &filters,
            by: Some(&by),
            ..Scan::default()
        };
        let rows = |src: &dyn Source, key: &dyn Fn(u32) -> String| {
            let mut v: Vec<(i64, String, String)> = src
                .scan(&scan)
                .unwrap()
                .iter()
                .flat_map(|r| {
                    (0..r.len())
                        .map(|i| (r.ts[i], key(r.person[i]), r.value(i).to_string()))
                        .collect::<Vec<_>>()
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            rows(store, &|p| keys[&p].clone()),
            rows(&mem, &|p| mem.person_key(p).unwrap().to_string())
        );
    }

    #[test]
    fn a_store_restarted_200_times_compacts_to_the_chunks_of_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        let mut i = 0u128;
        for _ in 0..200 {
            let store = open(&store_dir, 50);
            store.append((i..i + 7).map(nth).collect()).unwrap();
            store.sync().unwrap();
            store.close().unwrap();
            i += 7;
        }
        let store = open(&store_dir, 50);
        assert_eq!(store.stats().chunks, 200, "every clean stop sealed a chunk");
        // u3, and visitor v3's events (linked to u3): a seventh.
        assert_eq!(store.delete_person("u3").unwrap(), 200);
        let before: Vec<Event> = exported(&store);
        let done = store.compact().unwrap();
        assert_eq!(done.chunks_before, 200);
        assert_eq!(done.removed, 200);
        assert_eq!(done.events, 1200);
        // A fresh store given the same events: 24 full chunks.
        let fresh_dir = dir.path().join("fresh");
        let fresh = open(&fresh_dir, 50);
        fresh.append(before.clone()).unwrap();
        fresh.sync().unwrap();
        assert_eq!(done.chunks_after, fresh.stats().chunks);
        assert_eq!(store.stats().chunks, fresh.stats().chunks);
        // Nothing else changed: the events, in order; the rows with links,
        // filters and groups; deduplication of every stored id.
        assert_eq!(exported(&store), before);
        same_rows_as_a_plain_statement(&store, &before);
        let again: Vec<Event> = (0..i).map(nth).collect();
        let outcomes = store.append(again).unwrap();
        let accepted: Vec<u128> = outcomes
            .iter()
            .zip(0..)
            .filter(|(o, _)| **o == Outcome::Accepted)
            .map(|(_, i)| i)
            .collect();
        // The kept events' ids are still known; the deleted events are gone
        // with their ids, so those are stored again.
        assert_eq!(accepted, (0..i).filter(|i| i % 7 == 3).collect::<Vec<_>>());
        drop(store);
        let store = open(&store_dir, 50);
        let after = exported(&store);
        assert_eq!(after.len(), before.len() + accepted.len());
        assert!(
            after[..before.len()] == before[..],
            "the compacted events, in order"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut leftovers = leftovers;
        leftovers.sort();
        assert_eq!(leftovers, ["fresh", "store"]);
    }

    #[test]
    fn ingest_goes_on_during_a_compaction_and_nothing_is_lost_or_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        let store = Arc::new(open(&store_dir, 64));
        for b in 0..20u128 {
            store
                .append((b * 50..b * 50 + 50).map(nth).collect())
                .unwrap();
            store.sync().unwrap();
        }
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for b in 0..60u128 {
                    let batch: Vec<Event> =
                        (10_000 + b * 10..10_000 + b * 10 + 10).map(nth).collect();
                    let ids: Vec<Uuid> = batch.iter().map(|e| e.id).collect();
                    if store.append(batch).is_ok() && store.sync().is_ok() {
                        acked.extend(ids);
                    }
                }
                acked
            })
        };
        let done = store.compact().unwrap();
        let acked = writer.join().unwrap();
        assert_eq!(acked.len(), 600, "no write failed");
        let events = exported(&store);
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let unique: HashSet<Uuid> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "nothing doubled");
        assert_eq!(ids.len(), 1600);
        for id in acked {
            assert!(unique.contains(&id));
        }
        assert!(done.events >= 1000);
        same_rows_as_a_plain_statement(&store, &events);
    }

    #[test]
    fn a_swap_a_crash_interrupted_is_finished_or_undone_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        {
            let store = open(&store_dir, 10);
            store.append((0..25).map(nth).collect()).unwrap();
            store.sync().unwrap();
        }
        // A complete new store, the old one renamed away: the new one wins.
        let copy = dir.path().join("copy");
        {
            let store = open(&store_dir, 10);
            store.backup(&copy).unwrap();
        }
        let new = sibling(&store_dir, ".compact");
        std::fs::rename(copy.join("store"), &new).unwrap();
        std::fs::write(new.join(COMPLETE), b"").unwrap();
        std::fs::rename(&store_dir, sibling(&store_dir, ".old")).unwrap();
        let store = open(&store_dir, 10);
        assert_eq!(exported(&store).len(), 25);
        drop(store);
        assert!(!sibling(&store_dir, ".old").exists() && !new.exists());
        // An incomplete new store beside the live one is removed.
        std::fs::create_dir_all(new.join("chunks")).unwrap();
        let store = open(&store_dir, 10);
        assert_eq!(exported(&store).len(), 25);
        assert!(!new.exists());
    }
}
