//! Deleted persons (`tally delete-person`): an append-only file of
//! [`Deletion`] records beside the chunks (`store/deletions`), applied by
//! every read — the analyses' rows, export and backup — until compaction
//! rewrites the chunks without those events (and starts a new file).
//!
//! A deletion covers the chunks that existed when it was made (the open
//! chunk is sealed first), so events a person sends afterwards are kept:
//! a deleted person who comes back is a new start, as in PostHog.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use tally_event::Event;

use super::chunk;
use super::codec::{self, Deletion};
use super::hooks;
use crate::Error;

/// The deletions file of a store directory.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("deletions")
}

/// Every deletion recorded.
#[derive(Debug, Clone, Default)]
pub struct Deletions {
    list: Vec<Deletion>,
}

/// Which rows of one chunk are deleted.
#[derive(Debug, Default)]
pub struct RowTest {
    /// Persons whose identified rows are deleted.
    users: HashSet<u32>,
    /// …and whose anonymous rows (their key used as an anonymous id) too.
    users_anonymous: HashSet<u32>,
    /// Anonymous ids whose anonymous rows are deleted.
    anonymous: HashSet<u32>,
}

impl RowTest {
    /// Whether a row of person `person` (as stored, before links) is deleted.
    pub fn deleted(&self, person: u32, anonymous: bool) -> bool {
        if anonymous {
            self.users_anonymous.contains(&person) || self.anonymous.contains(&person)
        } else {
            self.users.contains(&person)
        }
    }
}

impl Deletions {
    /// Reads the deletions file of store directory `dir` (none: nothing
    /// deleted). A record torn by a crash ends it (it was never
    /// acknowledged); damage before the end is refused.
    pub fn load(dir: &Path) -> Result<Deletions, Error> {
        let path = path(dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Deletions::default()),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let (list, _) = codec::decode_deletions(&bytes)
            .map_err(|e| Error::Damaged(format!("{}: {e}", path.display())))?;
        Ok(Deletions { list })
    }

    /// Appends `d` durably (a torn record a crash left at the end is cut
    /// first) and adds it.
    pub fn append(&mut self, dir: &Path, d: Deletion) -> Result<(), Error> {
        let path = path(dir);
        let io = |e| Error::io(format!("writing {}", path.display()), e);
        let existed = path.exists();
        let bytes = if existed {
            std::fs::read(&path).map_err(io)?
        } else {
            Vec::new()
        };
        let (_, valid) = codec::decode_deletions(&bytes)
            .map_err(|e| Error::Damaged(format!("{}: {e}", path.display())))?;
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if !existed {
            hooks::created(&path);
        }
        f.set_len(valid as u64).map_err(io)?;
        let record = codec::encode_deletion(&d);
        std::os::unix::fs::FileExt::write_all_at(&f, &record, valid as u64).map_err(io)?;
        f.flush().map_err(io)?;
        f.sync_all().map_err(io)?;
        hooks::synced(&path, hooks::Sync::Chunk);
        if !existed {
            chunk::sync_dir(dir)?;
        }
        self.list.push(d);
        Ok(())
    }

    /// Drops the links that made the deleted persons' anonymous ids count
    /// for them: the linking events are deleted too, so the ids' later
    /// events count for themselves (until a compaction, which recomputes
    /// links from the events that remain, finds any other).
    pub fn unlink(&self, links: &mut super::links::Links) {
        for d in &self.list {
            for &anon in &d.anonymous {
                links.forget(anon, d.person);
            }
        }
    }

    /// True when nothing is deleted.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The test for chunk `n`'s rows; `None` when no deletion covers it.
    pub fn rows(&self, n: u32) -> Option<RowTest> {
        let mut t = RowTest::default();
        let mut any = false;
        for d in self.list.iter().filter(|d| n < d.chunks) {
            any = true;
            t.users.insert(d.person);
            if d.own_anonymous {
                t.users_anonymous.insert(d.person);
            }
            t.anonymous.extend(&d.anonymous);
        }
        any.then_some(t)
    }

    /// Whether event `e` of chunk `n` is deleted (`None`: the open chunk,
    /// which no deletion covers).
    pub fn event_deleted(&self, n: Option<u32>, e: &Event) -> bool {
        let Some(n) = n else { return false };
        self.list
            .iter()
            .filter(|d| n < d.chunks)
            .any(|d| match &e.user_id {
                Some(user) => *user == d.key,
                None => e.anonymous_id.as_deref().is_some_and(|anon| {
                    (d.own_anonymous && anon == d.key) || d.anonymous_keys.iter().any(|k| k == anon)
                }),
            })
    }
}
