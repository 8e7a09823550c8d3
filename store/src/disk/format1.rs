//! Upgrading a format 1 store (before 2026-12-01: events kept in sled
//! values, the sled files directly in the store directory) to the current
//! format, in place, when a writer first opens it: its events are read
//! from its raw blocks, in order, into a new store beside it through the
//! ordinary append path, which is then swapped in. The old files are kept
//! in `store.format1/` (nothing of a user's data is deleted; remove it
//! once the upgraded store has been checked). A crash in the middle leaves
//! the old store in place, and the next writer starts over.

use std::path::{Path, PathBuf};

use tally_event::Event;

use super::super::Ingest;
use super::super::chunk;
use super::super::codec::format1;
use super::super::index::Index;
use super::compact::{sibling, sync_parent};
use super::{DiskStore, StoreOptions};
use crate::Error;

/// Written into the new store once it holds every event.
const COMPLETE: &str = "UPGRADED";

/// Whether `dir` holds a format 1 store.
pub(super) fn is_format1(dir: &Path) -> bool {
    dir.join("conf").exists() || dir.join("db").exists()
}

/// Where the upgrade keeps the format 1 files.
pub(super) fn kept(dir: &Path) -> PathBuf {
    sibling(dir, ".format1")
}

/// Finishes an upgrade a crash interrupted between its renames.
pub(super) fn finish(dir: &Path) -> Result<(), Error> {
    let new = sibling(dir, ".upgrade");
    if !dir.exists() && new.join(COMPLETE).exists() {
        std::fs::rename(&new, dir)
            .map_err(|e| Error::io(format!("renaming {}", new.display()), e))?;
        sync_parent(dir)?;
    }
    let marker = dir.join(COMPLETE);
    if marker.exists() {
        std::fs::remove_file(&marker)
            .map_err(|e| Error::io(format!("removing {}", marker.display()), e))?;
    }
    Ok(())
}

/// Upgrades the format 1 store in `dir`; returns the events carried over.
pub(super) fn upgrade(dir: &Path, options: &StoreOptions) -> Result<u64, Error> {
    let new_dir = sibling(dir, ".upgrade");
    if new_dir.exists() {
        std::fs::remove_dir_all(&new_dir)
            .map_err(|e| Error::io(format!("removing {}", new_dir.display()), e))?;
    }
    let old = Index::open_format1(dir)?;
    match old.get(format1::FORMAT_KEY) {
        Ok(Some(v)) if v.as_ref() == [1] => {}
        other => {
            return Err(Error::Damaged(format!(
                "{}: looks like a format 1 store but its format marker is {other:?}",
                dir.display()
            )));
        }
    }
    let mut events = 0u64;
    {
        let new = DiskStore::open(
            &new_dir,
            &StoreOptions {
                read_only: false,
                skip_damaged: false,
                ..options.clone()
            },
        )?;
        let mut batch: Vec<Event> = Vec::with_capacity(8192);
        for kv in old.scan_prefix(format1::RAW) {
            let (_, v) = kv.map_err(|e| Error::Damaged(format!("{}: {e}", dir.display())))?;
            for e in format1::decode_raw_block(&v)
                .map_err(|e| Error::Damaged(format!("{}: {e}", dir.display())))?
            {
                batch.push(e);
                if batch.len() == batch.capacity() {
                    events += batch.len() as u64;
                    new.append(std::mem::take(&mut batch))?;
                }
            }
        }
        events += batch.len() as u64;
        if !batch.is_empty() {
            new.append(batch)?;
        }
        new.sync()?;
        new.close()?;
        new.flush_index()?;
    }
    drop(old);
    let marker = new_dir.join(COMPLETE);
    std::fs::File::create(&marker)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", marker.display()), e))?;
    chunk::sync_dir(&new_dir)?;
    let keep = kept(dir);
    std::fs::rename(dir, &keep).map_err(|e| Error::io(format!("renaming {}", dir.display()), e))?;
    std::fs::rename(&new_dir, dir)
        .map_err(|e| Error::io(format!("renaming {}", new_dir.display()), e))?;
    sync_parent(dir)?;
    std::fs::remove_file(dir.join(COMPLETE))
        .map_err(|e| Error::io("removing the upgrade marker", e))?;
    tracing::warn!(
        events,
        kept = %keep.display(),
        "upgraded a format 1 store; its old files are kept (remove them once you have checked the upgraded store)"
    );
    Ok(events)
}
