//! What a power cut would leave on disk, for the power-cut tests (compiled
//! only for tests; in the store the hooks are empty inline functions).
//!
//! SIGKILL keeps the page cache, so a crash test that kills the process
//! would pass with every fsync deleted. This model keeps, for every file the
//! store touches, the content its last fsync made durable, and for every
//! directory the entries its last fsync made durable (a file created or
//! renamed but whose directory was not fsync'd is gone or under its old
//! name after a cut). The index (sled, whose own I/O is not traced) is what
//! its last successful flush wrote. A cut after operation `k` freezes the
//! model there; [`Model::image`] then writes the disk a reboot would find,
//! optionally with a torn tail: a prefix of the bytes appended to a file
//! after its last fsync.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// An fsync the model can be told to ignore, to show that the tests would
/// catch it missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// fdatasync of the open log (group commit).
    Log,
    /// fsync of a new log file (a seal's commit point, or a new store's).
    NewLog,
    /// fsync of a chunk file before its rename.
    Chunk,
    /// fsync of the chunks directory after a rename.
    ChunkDir,
    /// fsync of the log directory after a new log.
    LogDir,
    /// sled's flush and the fsync of its files.
    Index,
}

#[derive(Default)]
struct State {
    ops: u64,
    freeze_after: Option<u64>,
    ignore: Option<Sync>,
    next_inode: u64,
    /// Path → inode, as the process sees it now.
    live: HashMap<PathBuf, u64>,
    /// Directory → name → inode, as of its last fsync.
    dirs: HashMap<PathBuf, HashMap<OsString, u64>>,
    /// Inode → content as of its last fsync.
    data: HashMap<u64, Vec<u8>>,
    /// Inode → content when the model froze (for torn tails).
    at_cut: HashMap<u64, Vec<u8>>,
    /// Copy of the index directory at its last flush.
    index: Option<PathBuf>,
    scratch: PathBuf,
}

/// The model of one store directory.
pub struct Model {
    root: PathBuf,
    state: Mutex<State>,
}

fn registry() -> &'static Mutex<Vec<Arc<Model>>> {
    static MODELS: OnceLock<Mutex<Vec<Arc<Model>>>> = OnceLock::new();
    MODELS.get_or_init(Default::default)
}

fn model_of(path: &Path) -> Option<Arc<Model>> {
    registry()
        .lock()
        .unwrap()
        .iter()
        .find(|m| path.starts_with(&m.root))
        .cloned()
}

impl Model {
    /// Starts tracing the store in `root` (which must not exist yet);
    /// `scratch` holds index snapshots. Freezes after `freeze_after`
    /// operations, if given, ignoring the fsyncs of kind `ignore`.
    pub fn trace(
        root: &Path,
        scratch: &Path,
        freeze_after: Option<u64>,
        ignore: Option<Sync>,
    ) -> Arc<Model> {
        let model = Arc::new(Model {
            root: root.to_path_buf(),
            state: Mutex::new(State {
                freeze_after,
                ignore,
                scratch: scratch.to_path_buf(),
                ..State::default()
            }),
        });
        registry().lock().unwrap().push(model.clone());
        model
    }

    /// Operations traced so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().unwrap().ops
    }

    /// Stops tracing.
    pub fn stop(self: &Arc<Self>) {
        registry().lock().unwrap().retain(|m| !Arc::ptr_eq(m, self));
    }

    /// True once the cut has happened: later operations are not durable.
    pub fn frozen(&self) -> bool {
        let s = self.state.lock().unwrap();
        s.freeze_after.is_some_and(|k| s.ops >= k)
    }

    fn with(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.state.lock().unwrap();
        if s.freeze_after.is_some_and(|k| s.ops >= k) {
            return;
        }
        s.ops += 1;
        f(&mut s);
        if s.freeze_after == Some(s.ops) {
            // The cut: remember what every live file held, for torn tails.
            let live: Vec<(PathBuf, u64)> = s.live.iter().map(|(p, i)| (p.clone(), *i)).collect();
            for (path, inode) in live {
                if let Ok(bytes) = std::fs::read(&path) {
                    s.at_cut.insert(inode, bytes);
                }
            }
        }
    }

    /// Writes what a reboot after the cut would find into `to`: durable
    /// directory entries with durable contents; with `torn`, each file also
    /// keeps the first `torn(len)` bytes of what was appended to it after
    /// its last fsync.
    pub fn image(&self, to: &Path, torn: &mut dyn FnMut(usize) -> usize) {
        let s = self.state.lock().unwrap();
        for sub in ["index", "chunks", "wal"] {
            std::fs::create_dir_all(to.join(sub)).unwrap();
        }
        for (dir, entries) in &s.dirs {
            let rel = dir.strip_prefix(&self.root).unwrap();
            let target_dir = to.join(rel);
            std::fs::create_dir_all(&target_dir).unwrap();
            for (name, inode) in entries {
                let mut bytes = s.data.get(inode).cloned().unwrap_or_default();
                if let Some(cut) = s.at_cut.get(inode) {
                    if cut.len() > bytes.len() && cut.starts_with(&bytes) {
                        let extra = torn(cut.len() - bytes.len());
                        bytes.extend_from_slice(&cut[bytes.len()..bytes.len() + extra]);
                    }
                }
                std::fs::write(target_dir.join(name), bytes).unwrap();
            }
        }
        if let Some(index) = &s.index {
            copy_dir(index, &to.join("index"));
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A file was created (or truncated to be rewritten).
pub fn created(path: &Path) {
    if let Some(m) = model_of(path) {
        m.with(|s| {
            let inode = s.next_inode;
            s.next_inode += 1;
            s.live.insert(path.to_path_buf(), inode);
        });
    }
}

/// A file's content was fsync'd (or fdatasync'd).
pub fn synced(path: &Path, kind: Sync) {
    if let Some(m) = model_of(path) {
        m.with(|s| {
            if s.ignore == Some(kind) {
                return;
            }
            let inode = match s.live.get(path) {
                Some(&i) => i,
                None => {
                    // A file from before tracing began (or reopened).
                    let i = s.next_inode;
                    s.next_inode += 1;
                    s.live.insert(path.to_path_buf(), i);
                    i
                }
            };
            if let Ok(bytes) = std::fs::read(path) {
                s.data.insert(inode, bytes);
            }
        });
    }
}

/// A directory was fsync'd: its entries now are durable.
pub fn dir_synced(dir: &Path) {
    let kind = match dir.file_name().and_then(|n| n.to_str()) {
        Some("chunks") => Sync::ChunkDir,
        Some("wal") => Sync::LogDir,
        _ => Sync::Index,
    };
    if let Some(m) = model_of(dir) {
        m.with(|s| {
            if s.ignore == Some(kind) {
                return;
            }
            let entries: HashMap<OsString, u64> = s
                .live
                .iter()
                .filter(|(p, _)| p.parent() == Some(dir))
                .map(|(p, i)| (p.file_name().unwrap().to_os_string(), *i))
                .collect();
            s.dirs.insert(dir.to_path_buf(), entries);
        });
    }
}

/// A file was renamed.
pub fn renamed(from: &Path, to: &Path) {
    if let Some(m) = model_of(from) {
        m.with(|s| {
            if let Some(i) = s.live.remove(from) {
                s.live.insert(to.to_path_buf(), i);
            }
        });
    }
}

/// A file was removed.
pub fn removed(path: &Path) {
    if let Some(m) = model_of(path) {
        m.with(|s| {
            s.live.remove(path);
        });
    }
}

/// The index was flushed and its files fsync'd.
pub fn index_flushed(index: &Path) {
    if let Some(m) = model_of(index) {
        m.with(|s| {
            if s.ignore == Some(Sync::Index) {
                return;
            }
            let snapshot = s.scratch.join(format!("index-{}", s.ops));
            copy_dir(index, &snapshot);
            s.index = Some(snapshot);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use rand::{Rng, SeedableRng};
    use tally_event::Event;
    use uuid::Uuid;

    use super::*;
    use crate::{DiskStore, Export, Ingest, StoreOptions};

    fn event(n: u64) -> Event {
        Event {
            id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(n)),
            event: ["view", "signup", "pay"][n as usize % 3].into(),
            user_id: Some(format!("u{}", n % 17)),
            anonymous_id: None,
            timestamp: 1_700_000_000_000 + n as i64 * 1000,
            stage: None,
            revenue: None,
            properties: Some(format!(r#"{{"n":{n}}}"#)),
        }
    }

    fn options() -> StoreOptions {
        options_with(30)
    }

    fn options_with(chunk_events: usize) -> StoreOptions {
        StoreOptions {
            chunk_events,
            ..StoreOptions::default()
        }
    }

    /// Runs a fixed workload (batches with repeated ids, seals, a clean
    /// stop, a stop that leaves events in the log, and a reopening with
    /// smaller chunks, so that a seal moves acknowledged events of the old
    /// log into the new one) on a store traced by `model`. Returns the ids that
    /// were acknowledged before the cut and every id ever sent.
    fn workload(dir: &Path, model: &Model) -> (HashSet<Uuid>, HashSet<Uuid>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut acked = HashSet::new();
        let mut sent = HashSet::new();
        let mut next = 0u64;
        for (round, chunk_events) in [30, 1000, 8].into_iter().enumerate() {
            let store = loop {
                // sled's background I/O can hold its lock a moment after a drop.
                match DiskStore::open(dir, &options_with(chunk_events)) {
                    Err(crate::Error::Locked { .. }) => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    other => break other.unwrap(),
                }
            };
            for _ in 0..[25, 12, 10][round] {
                let n = rng.random_range(1..[25, 25, 4][round]);
                let batch: Vec<Event> = (0..n)
                    .map(|_| {
                        if next > 0 && rng.random_bool(0.15) {
                            event(rng.random_range(0..next))
                        } else {
                            next += 1;
                            event(next - 1)
                        }
                    })
                    .collect();
                sent.extend(batch.iter().map(|e| e.id));
                let ids: Vec<Uuid> = batch.iter().map(|e| e.id).collect();
                if store.append(batch).is_err() {
                    continue;
                }
                let before = model.ops();
                // The answer goes out only if the fsync happened before the
                // cut (it is the first operation of `sync`).
                if store.sync().is_ok() && (model.ops() > before || !model.frozen()) {
                    acked.extend(ids);
                }
            }
            if round == 0 {
                store.close().unwrap();
            }
        }
        (acked, sent)
    }

    /// Which cut points a test sweeps: every `step`-th operation, every one
    /// with `TALLY_POWERCUT_ALL=1` (the soak in benches/soak/powercut.sh).
    fn cut_points(total: u64, step: usize) -> impl Iterator<Item = u64> {
        let step = if std::env::var_os("TALLY_POWERCUT_ALL").is_some() {
            1
        } else {
            step
        };
        (1..=total).step_by(step)
    }

    /// The events a store opened on `image` holds, by id (with counts).
    fn stored(image: &Path) -> Result<HashMap<Uuid, usize>, crate::Error> {
        let store = DiskStore::open(image, &options())?;
        let scan = |store: &DiskStore| {
            let mut ids: HashMap<Uuid, usize> = HashMap::new();
            store
                .scan_events(i64::MIN, i64::MAX, &mut |e| {
                    *ids.entry(e.id).or_default() += 1;
                    Ok(())
                })
                .map(|()| ids)
        };
        let read = scan(&store)?;
        // A writer on the image (recovery) starts and keeps the same events.
        store.prepare_writer()?;
        let recovered = scan(&store)?;
        if recovered != read {
            return Err(crate::Error::corrupt(
                "a writer's recovery changed the events",
            ));
        }
        Ok(read)
    }

    /// Cuts the power after each of `cuts` operations (with a torn tail or
    /// not) and returns the first problem found, if any.
    fn sweep(ignore: Option<Sync>, cuts: impl Iterator<Item = u64>) -> Option<String> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for k in cuts {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("store");
            let model = Model::trace(&dir, tmp.path(), Some(k), ignore);
            let (acked, sent) = workload(&dir, &model);
            model.stop();
            for torn in [false, true] {
                let image = tmp.path().join(format!("image-{torn}"));
                model.image(&image, &mut |extra| {
                    if torn { rng.random_range(0..=extra) } else { 0 }
                });
                let ids = match stored(&image) {
                    Ok(ids) => ids,
                    Err(e) => return Some(format!("cut after op {k} (torn {torn}): {e}")),
                };
                if let Some(lost) = acked.iter().find(|id| !ids.contains_key(id)) {
                    return Some(format!(
                        "cut after op {k} (torn {torn}): acknowledged {lost} lost"
                    ));
                }
                if let Some((id, n)) = ids.iter().find(|(_, n)| **n > 1) {
                    return Some(format!(
                        "cut after op {k} (torn {torn}): {id} stored {n} times"
                    ));
                }
                if let Some(id) = ids.keys().find(|id| !sent.contains(id)) {
                    return Some(format!(
                        "cut after op {k} (torn {torn}): {id} was never sent"
                    ));
                }
            }
        }
        None
    }

    fn total_ops() -> u64 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let model = Model::trace(&dir, tmp.path(), None, None);
        workload(&dir, &model);
        model.stop();
        model.ops()
    }

    /// Issue 10.4: a power cut after any operation (dropping what was not
    /// fsync'd, and tearing what was appended after the last fsync) loses no
    /// acknowledged event and stores none twice.
    #[test]
    fn a_power_cut_anywhere_loses_nothing_acknowledged() {
        let total = total_ops();
        assert!(total > 100, "the workload traced only {total} operations");
        eprintln!("{total} operations traced");
        if let Some(problem) = sweep(None, cut_points(total, 4)) {
            panic!("{problem}");
        }
    }

    /// The model would catch each fsync the store needs, if it were missing;
    /// the index's flush is not needed (recovery adopts what it lacks).
    #[test]
    fn every_needed_fsync_is_needed() {
        let total = total_ops();
        for kind in [
            Sync::Log,
            Sync::NewLog,
            Sync::Chunk,
            Sync::ChunkDir,
            Sync::LogDir,
        ] {
            assert!(
                sweep(Some(kind), cut_points(total, 3)).is_some(),
                "a power cut loses nothing without the {kind:?} fsync: the test cannot see it"
            );
        }
        assert_eq!(sweep(Some(Sync::Index), cut_points(total, 9)), None);
    }
}
