//! The durable queue (feature `durable`): an append-only log of queued and
//! settled events.
//!
//! One file, `tally-sdk-queue.log`, of text lines:
//!
//! - `E {json}`: an event was queued (its wire form without `sent_at`);
//! - `A id id ...`: these events are settled (delivered, rejected, dropped,
//!   or failed for good) and need not be sent again.
//!
//! Opening replays the log: the events queued and not settled are the ones
//! to send, in log order. A line torn by a crash does not parse and is
//! skipped. The log is then rewritten with just those events (written to a
//! temporary file, synced, and renamed over the old one), emptied whenever
//! nothing is pending, and rewritten from memory when it grows past
//! [`COMPACT_AT`].

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use tally_event::WireEvent;
use uuid::Uuid;

const FILE_NAME: &str = "tally-sdk-queue.log";

/// Size past which the log is rewritten with only the pending events.
const COMPACT_AT: u64 = 16 << 20;

#[derive(Debug)]
pub(crate) struct Log {
    file: File,
    path: PathBuf,
    bytes: u64,
    /// Whether a write error was already logged (once is enough).
    warned: bool,
}

impl Log {
    /// Opens (or creates) the log in `dir` and returns the events still
    /// pending in it, oldest first.
    pub(crate) fn open(dir: &Path) -> io::Result<(Log, Vec<WireEvent>)> {
        fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let pending = match File::open(&path) {
            Ok(f) => replay(f)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let log = Log::rewrite(&path, pending.iter())?;
        Ok((log, pending))
    }

    /// Replaces the log atomically with `E` lines for `events`.
    fn rewrite<'a>(path: &Path, events: impl Iterator<Item = &'a WireEvent>) -> io::Result<Log> {
        let tmp = path.with_extension("log.tmp");
        let mut w = BufWriter::new(File::create(&tmp)?);
        let mut bytes = 0u64;
        for e in events {
            let line = event_line(e);
            w.write_all(&line)?;
            bytes += line.len() as u64;
        }
        let f = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            // Make the rename itself durable (best effort: not every
            // platform can sync a directory).
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Log {
            file,
            path: path.to_owned(),
            bytes,
            warned: false,
        })
    }

    /// Records a queued event.
    pub(crate) fn append(&mut self, event: &WireEvent) {
        let line = event_line(event);
        self.write(&line);
    }

    /// Records one settled event.
    pub(crate) fn ack(&mut self, id: Option<Uuid>) {
        self.ack_all([id]);
    }

    /// Records settled events.
    pub(crate) fn ack_all(&mut self, ids: impl IntoIterator<Item = Option<Uuid>>) {
        let mut line = String::from("A");
        for id in ids.into_iter().flatten() {
            line.push(' ');
            line.push_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
        }
        if line.len() > 1 {
            line.push('\n');
            self.write(line.as_bytes());
        }
    }

    /// Nothing is pending: start over with an empty file.
    pub(crate) fn clear(&mut self) {
        if self.bytes == 0 {
            return;
        }
        match self.file.set_len(0) {
            Ok(()) => self.bytes = 0,
            Err(e) => self.warn(&e),
        }
    }

    /// Whether the log has grown enough to be worth [compacting](Log::compact).
    pub(crate) fn is_large(&self) -> bool {
        self.bytes >= COMPACT_AT
    }

    /// Rewrites the log with only the `pending` events.
    pub(crate) fn compact<'a>(&mut self, pending: impl Iterator<Item = &'a WireEvent>) {
        match Log::rewrite(&self.path, pending) {
            Ok(log) => *self = log,
            Err(e) => {
                self.warn(&e);
                // Do not retry on every ack.
                self.bytes = 0;
            }
        }
    }

    /// A second handle on the file, to fsync it without holding the queue lock.
    pub(crate) fn sync_handle(&self) -> Option<File> {
        self.file.try_clone().ok()
    }

    fn write(&mut self, buf: &[u8]) {
        match self.file.write_all(buf) {
            Ok(()) => self.bytes += buf.len() as u64,
            Err(e) => self.warn(&e),
        }
    }

    fn warn(&mut self, e: &io::Error) {
        if !self.warned {
            self.warned = true;
            tracing::warn!(
                path = %self.path.display(),
                error = %e,
                "tally-sdk: cannot write the durable queue; events are kept in memory only"
            );
        }
    }
}

fn event_line(e: &WireEvent) -> Vec<u8> {
    let mut line = b"E ".to_vec();
    // A WireEvent always serializes: string keys, finite numbers checked at
    // track time (and serde_json writes a non-finite float as null).
    if serde_json::to_writer(&mut line, e).is_err() {
        return Vec::new();
    }
    line.push(b'\n');
    line
}

/// The events queued and not settled, in log order.
fn replay(f: File) -> io::Result<Vec<WireEvent>> {
    let mut order: Vec<Option<WireEvent>> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    let mut skipped = 0usize;
    for line in BufReader::new(f).split(b'\n') {
        let line = line?;
        if let Some(json) = line.strip_prefix(b"E ") {
            match serde_json::from_slice::<WireEvent>(json) {
                Ok(mut e) => {
                    e.sent_at = None;
                    let Some(id) = e.id else {
                        skipped += 1;
                        continue;
                    };
                    // The same id queued twice while pending: send it once.
                    if let std::collections::hash_map::Entry::Vacant(v) = index.entry(id) {
                        v.insert(order.len());
                        order.push(Some(e));
                    }
                }
                Err(_) => skipped += 1,
            }
        } else if let Some(ids) = line.strip_prefix(b"A ") {
            let ids = String::from_utf8_lossy(ids);
            for id in ids
                .split_ascii_whitespace()
                .filter_map(|t| t.parse::<Uuid>().ok())
            {
                if let Some(i) = index.remove(&id) {
                    order[i] = None;
                }
            }
        } else if !line.is_empty() {
            skipped += 1;
        }
    }
    if skipped > 0 {
        tracing::warn!(
            lines = skipped,
            "tally-sdk: skipped unreadable lines in the durable queue (torn by a crash?)"
        );
    }
    Ok(order.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str) -> WireEvent {
        WireEvent {
            id: Some(Uuid::now_v7()),
            event: name.into(),
            user_id: Some("u1".into()),
            timestamp: Some(1_767_225_600_123),
            ..WireEvent::default()
        }
    }

    fn names(v: &[WireEvent]) -> Vec<&str> {
        v.iter().map(|e| e.event.as_str()).collect()
    }

    #[test]
    fn replays_unsettled_events_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, pending) = Log::open(dir.path()).unwrap();
        assert!(pending.is_empty());
        let events: Vec<WireEvent> = (0..5).map(|i| ev(&format!("e{i}"))).collect();
        for e in &events {
            log.append(e);
        }
        log.ack_all([events[1].id, events[3].id]);
        drop(log);

        let (mut log, pending) = Log::open(dir.path()).unwrap();
        assert_eq!(names(&pending), ["e0", "e2", "e4"]);
        assert_eq!(pending[0], events[0]);
        // The reopened log was compacted to the pending events.
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text.lines().count(), 3);

        log.ack(events[0].id);
        log.append(&ev("e5"));
        drop(log);
        let (_, pending) = Log::open(dir.path()).unwrap();
        assert_eq!(names(&pending), ["e2", "e4", "e5"]);
    }

    #[test]
    fn torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path()).unwrap();
        log.append(&ev("kept"));
        drop(log);
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        // A crash in the middle of a line, and junk.
        f.write_all(b"garbage\nE {\"id\":\"0190").unwrap();
        drop(f);
        let (_, pending) = Log::open(dir.path()).unwrap();
        assert_eq!(names(&pending), ["kept"]);
    }

    #[test]
    fn clear_empties_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path()).unwrap();
        let e = ev("x");
        log.append(&e);
        log.ack(e.id);
        log.clear();
        assert_eq!(fs::metadata(dir.path().join(FILE_NAME)).unwrap().len(), 0);
        // Appends after a clear land at the start of the file.
        log.append(&ev("y"));
        drop(log);
        let (_, pending) = Log::open(dir.path()).unwrap();
        assert_eq!(names(&pending), ["y"]);
    }
}
