//! Which files on disk are the store, decided from the files themselves
//! with the index as a witness, never on the index's word alone.
//!
//! A seal writes its chunk files (each fsync'd, then renamed), then creates
//! the next log, numbered by the chunk count after the seal, fsync'd with
//! its directory entry. **Creating that log is the seal's commit point**:
//! a log numbered `L` exists only once chunks `0..L` are durable, and it
//! supersedes every older log. The index (sled) is updated after that and
//! may lag behind (a crash, a failed flush, damage that rolled sled back):
//! then the chunks it does not list are *adopted*, rebuilt from their own
//! headers. Chunk files past the newest log are leftovers of a seal that
//! never reached its commit point; every event in them is also in that log
//! or was never acknowledged.
//!
//! Stores written before this rule numbered logs by seal (`wal` was the
//! count of seals, not of chunks); such a log is trusted only while the
//! index names it, and a writer renames it to the new numbering first
//! thing.

use std::ops::Range;

/// What the index says (its last durable or in-memory state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexView {
    /// Chunks the index lists.
    pub chunks: u32,
    /// The log the index names as open.
    pub wal: u64,
}

/// The numbered files present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskView {
    /// `chunks/NNNNNNNN.chunk`, ascending.
    pub chunks: Vec<u64>,
    /// `wal/NNNNNNNN.wal`, ascending.
    pub logs: Vec<u64>,
}

/// The store as recovery sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Committed chunks: `0..chunks`.
    pub chunks: u32,
    /// The open log (it may not exist yet in a new store).
    pub wal: u64,
    /// Committed chunks the index does not list yet.
    pub adopt: Range<u32>,
    /// Chunk files of a seal that never committed.
    pub leftover_chunks: Vec<u64>,
    /// True when the leftovers are provably redundant (the index names the
    /// log they were sealed from); otherwise they are set aside, not
    /// deleted.
    pub leftovers_redundant: bool,
    /// Logs superseded by a committed seal.
    pub stale_logs: Vec<u64>,
    /// Committed chunks whose files are missing.
    pub missing: Vec<u64>,
}

impl Plan {
    /// An error naming the missing chunk files, if any.
    pub fn check_complete(&self) -> Result<(), String> {
        if self.missing.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = self
            .missing
            .iter()
            .take(5)
            .map(|n| format!("chunks/{n:08}.chunk"))
            .collect();
        Err(format!(
            "{} committed chunk file(s) missing: {}{}",
            self.missing.len(),
            shown.join(", "),
            if self.missing.len() > 5 { ", ..." } else { "" }
        ))
    }
}

/// Decides what the store is, or says what disagrees (the message names
/// the files). `index` is `None` when there is no index to witness (it was
/// just created, or is being rebuilt): then nothing is deleted on its
/// behalf.
pub fn plan(index: Option<IndexView>, disk: &DiskView) -> Result<Plan, String> {
    let witness = index.is_some();
    let index = index.unwrap_or(IndexView { chunks: 0, wal: 0 });
    let newest = disk.logs.last().copied();
    let (chunks, wal, redundant) = match newest {
        None if index.chunks == 0 && disk.chunks.is_empty() => (0, index.wal, true),
        None if index.chunks == 0 => {
            return Err(format!(
                "chunks/ holds {} chunk file(s) but wal/ holds no write-ahead log and the index \
                 lists no chunk (were the index and the log deleted?)",
                disk.chunks.len()
            ));
        }
        None => {
            return Err(format!(
                "the write-ahead log wal/{:08}.wal is missing",
                index.wal
            ));
        }
        // The index names the newest log: it is current.
        Some(l) if l == index.wal => (index.chunks, l, witness),
        // A seal committed after the index's state: its log's number is
        // the chunk count.
        Some(l) if l > index.wal => {
            let Ok(count) = u32::try_from(l) else {
                return Err(format!("wal/{l:08}.wal has an impossible number"));
            };
            if count < index.chunks {
                return Err(format!(
                    "the index lists {} chunks and names log {:08}, but the newest log is \
                     wal/{l:08}.wal",
                    index.chunks, index.wal
                ));
            }
            (count, l, false)
        }
        Some(l) => {
            return Err(format!(
                "the index names the write-ahead log wal/{:08}.wal, which is missing \
                 (the newest log is wal/{l:08}.wal)",
                index.wal
            ));
        }
    };
    let missing: Vec<u64> = (0..u64::from(chunks))
        .filter(|n| disk.chunks.binary_search(n).is_err())
        .collect();
    Ok(Plan {
        chunks,
        wal,
        adopt: index.chunks.min(chunks)..chunks,
        leftover_chunks: disk
            .chunks
            .iter()
            .copied()
            .filter(|&n| n >= u64::from(chunks))
            .collect(),
        leftovers_redundant: redundant,
        stale_logs: disk.logs.iter().copied().filter(|&n| n < wal).collect(),
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(chunks: &[u64], logs: &[u64]) -> DiskView {
        DiskView {
            chunks: chunks.to_vec(),
            logs: logs.to_vec(),
        }
    }

    fn index(chunks: u32, wal: u64) -> Option<IndexView> {
        Some(IndexView { chunks, wal })
    }

    #[test]
    fn a_new_store_has_nothing_to_recover() {
        let p = plan(index(0, 0), &disk(&[], &[])).unwrap();
        assert_eq!((p.chunks, p.wal, p.adopt), (0, 0, 0..0));
    }

    #[test]
    fn an_index_that_names_the_newest_log_is_current() {
        let p = plan(index(3, 3), &disk(&[0, 1, 2], &[3])).unwrap();
        assert_eq!((p.chunks, p.wal, p.adopt.clone()), (3, 3, 3..3));
        assert!(p.leftover_chunks.is_empty() && p.stale_logs.is_empty());
    }

    #[test]
    fn a_seal_cut_before_its_log_leaves_redundant_chunks() {
        // Chunk 3 was written; log 4 (the commit point) never was.
        let p = plan(index(3, 3), &disk(&[0, 1, 2, 3], &[3])).unwrap();
        assert_eq!((p.chunks, p.wal), (3, 3));
        assert_eq!(p.leftover_chunks, vec![3]);
        assert!(p.leftovers_redundant);
    }

    #[test]
    fn a_seal_committed_but_not_indexed_is_adopted() {
        // Log 5 exists: chunks 3 and 4 are committed; the index (a failed
        // flush, a crash, damage) still says 3 chunks and log 3.
        let p = plan(index(3, 3), &disk(&[0, 1, 2, 3, 4], &[3, 5])).unwrap();
        assert_eq!((p.chunks, p.wal, p.adopt.clone()), (5, 5, 3..5));
        assert_eq!(p.stale_logs, vec![3]);
        assert!(p.leftover_chunks.is_empty());
    }

    #[test]
    fn an_index_rolled_back_past_a_deleted_log_adopts_everything_after_it() {
        let p = plan(index(2, 2), &disk(&[0, 1, 2, 3, 4, 5], &[6])).unwrap();
        assert_eq!((p.chunks, p.adopt.clone()), (6, 2..6));
        // A new (rebuilt) index adopts every chunk.
        let p = plan(None, &disk(&[0, 1, 2], &[3])).unwrap();
        assert_eq!(p.adopt, 0..3);
    }

    #[test]
    fn without_an_index_to_witness_nothing_is_deleted() {
        let p = plan(None, &disk(&[0, 1], &[0])).unwrap();
        assert_eq!(p.leftover_chunks, vec![0, 1]);
        assert!(!p.leftovers_redundant);
    }

    #[test]
    fn a_legacy_log_is_trusted_while_the_index_names_it() {
        // Format-2 stores before the commit-point rule: log 1 after 4 chunks.
        let p = plan(index(4, 1), &disk(&[0, 1, 2, 3], &[1])).unwrap();
        assert_eq!((p.chunks, p.wal), (4, 1));
        assert!(p.leftover_chunks.is_empty());
    }

    #[test]
    fn leftovers_past_an_unindexed_commit_are_set_aside_not_deleted() {
        let p = plan(index(3, 3), &disk(&[0, 1, 2, 3, 4], &[4])).unwrap();
        assert_eq!((p.chunks, p.adopt.clone()), (4, 3..4));
        assert_eq!(p.leftover_chunks, vec![4]);
        assert!(!p.leftovers_redundant);
        let p = plan(index(3, 3), &disk(&[0, 1, 2, 3, 4, 5], &[3, 4])).unwrap();
        assert_eq!(p.leftover_chunks, vec![4, 5]);
        assert!(!p.leftovers_redundant);
    }

    #[test]
    fn what_disagrees_is_named() {
        let e = plan(index(3, 3), &disk(&[0, 2], &[3]))
            .unwrap()
            .check_complete()
            .unwrap_err();
        assert!(
            e.contains("chunks/00000001.chunk") && e.contains("1 committed"),
            "{e}"
        );
        let e = plan(index(3, 3), &disk(&[0, 1, 2], &[])).unwrap_err();
        assert!(e.contains("wal/00000003.wal is missing"), "{e}");
        let e = plan(index(3, 3), &disk(&[0, 1, 2], &[2])).unwrap_err();
        assert!(e.contains("wal/00000003.wal, which is missing"), "{e}");
        let e = plan(None, &disk(&[0, 1], &[])).unwrap_err();
        assert!(e.contains("no write-ahead log"), "{e}");
        let e = plan(index(5, 1), &disk(&[0, 1, 2, 3, 4], &[3])).unwrap_err();
        assert!(e.contains("newest log is wal/00000003.wal"), "{e}");
    }
}
