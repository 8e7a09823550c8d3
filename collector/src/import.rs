//! `tally import`: bulk-load NDJSON with the same validation and dedup as HTTP.

use std::io::BufRead;
use std::sync::mpsc;

use rayon::prelude::*;
use serde::Serialize;
use tally_event::{Defaulted, Event, time::now_ms, validate_event_json_defaults};

use crate::error::Error;
use crate::store::{EventStore, Outcome};

/// Lines validated (in parallel) and committed together.
const CHUNK_LINES: usize = 16_384;
/// Rejected lines listed in the summary.
pub const MAX_LISTED_ERRORS: usize = 100;

/// What an import did: SPEC §3's `--format json` shape.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct ImportSummary {
    /// Events stored.
    pub accepted: u64,
    /// Lines whose event id was already stored (or appeared earlier in the file).
    pub duplicates: u64,
    /// Lines that failed validation.
    pub rejected: u64,
    /// The first rejected lines, in file order.
    pub errors: Vec<LineError>,
    /// Valid lines without an `id` (one was generated, so importing the
    /// file again stores them again). Not part of the JSON summary: a
    /// warning on stderr.
    #[serde(skip)]
    pub without_id: u64,
    /// Valid lines without a `timestamp` (they got the import time).
    #[serde(skip)]
    pub without_timestamp: u64,
}

/// One rejected line.
#[derive(Debug, Serialize, PartialEq)]
pub struct LineError {
    /// 1-based line number (blank lines keep their numbers).
    pub line: u64,
    /// Why it was rejected.
    pub error: String,
}

/// Reads `input` to the end, storing valid events in chunks, then fsyncs
/// and closes the store.
/// `progress` is called with the bytes read so far.
pub fn import(
    input: impl BufRead + Send,
    store: &dyn EventStore,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ImportSummary, Error> {
    let mut summary = ImportSummary::default();
    std::thread::scope(|scope| {
        // Reading and validating one chunk overlaps with storing the previous one.
        let (tx, rx) = mpsc::sync_channel::<Result<Chunk, Error>>(2);
        scope.spawn(move || read_chunks(input, &tx, progress));
        for chunk in rx {
            let chunk = chunk?;
            let outcomes = store.append(chunk.events)?;
            let dup = outcomes
                .iter()
                .filter(|o| **o == Outcome::Duplicate)
                .count() as u64;
            summary.duplicates += dup;
            summary.accepted += outcomes.len() as u64 - dup;
            summary.rejected += chunk.errors.len() as u64;
            summary.without_id += chunk.without_id;
            summary.without_timestamp += chunk.without_timestamp;
            let room = MAX_LISTED_ERRORS.saturating_sub(summary.errors.len());
            summary.errors.extend(chunk.errors.into_iter().take(room));
        }
        store.sync()?;
        // Leaves the store compact, with nothing in the write-ahead log.
        store.close()?;
        Ok::<(), Error>(())
    })?;
    Ok(summary)
}

struct Chunk {
    events: Vec<Event>,
    errors: Vec<LineError>,
    without_id: u64,
    without_timestamp: u64,
}

fn read_chunks(
    mut input: impl BufRead,
    tx: &mpsc::SyncSender<Result<Chunk, Error>>,
    progress: &(dyn Fn(u64) + Sync),
) {
    let mut line_no = 0u64;
    let mut bytes = 0u64;
    loop {
        let mut lines: Vec<(u64, Vec<u8>)> = Vec::with_capacity(CHUNK_LINES);
        while lines.len() < CHUNK_LINES {
            let mut buf = Vec::new();
            match input.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    bytes += n as u64;
                    line_no += 1;
                    lines.push((line_no, buf));
                }
                Err(e) => {
                    let _ = tx.send(Err(Error::io(format!("reading line {}", line_no + 1), e)));
                    return;
                }
            }
        }
        if lines.is_empty() {
            return;
        }
        let received_at = now_ms();
        let results: Vec<(u64, Option<LineResult>)> = lines
            .par_iter()
            .map(|(n, buf)| (*n, validate_line(buf, received_at)))
            .collect();
        let mut chunk = Chunk {
            events: Vec::with_capacity(results.len()),
            errors: Vec::new(),
            without_id: 0,
            without_timestamp: 0,
        };
        for (line, r) in results {
            match r {
                None => {}
                Some(Ok((e, defaulted))) => {
                    chunk.without_id += u64::from(defaulted.id);
                    chunk.without_timestamp += u64::from(defaulted.timestamp);
                    chunk.events.push(e);
                }
                Some(Err(error)) => chunk.errors.push(LineError { line, error }),
            }
        }
        progress(bytes);
        if tx.send(Ok(chunk)).is_err() {
            return;
        }
    }
}

/// `None` for a blank line.
/// A valid line's event and which fields it lacked, or why it is rejected.
type LineResult = Result<(Event, Defaulted), String>;

fn validate_line(buf: &[u8], received_at: i64) -> Option<LineResult> {
    let text = match std::str::from_utf8(buf) {
        // A byte order mark (files saved by some Windows editors) is not content.
        Ok(t) => t.trim_start_matches('\u{feff}').trim(),
        Err(e) => {
            return Some(Err(format!(
                "line is not UTF-8 (at byte {})",
                e.valid_up_to()
            )));
        }
    };
    if text.is_empty() {
        return None;
    }
    Some(validate_event_json_defaults(text, received_at).map_err(|e| e.to_string()))
}

impl ImportSummary {
    /// Warnings about lines stored with defaults, for stderr; empty when
    /// every line had its own `id` and `timestamp`.
    pub fn warnings(&self) -> Vec<String> {
        let lines = |n: u64| {
            if n == 1 {
                "1 line".to_string()
            } else {
                format!("{n} lines")
            }
        };
        let mut w = Vec::new();
        if self.without_id > 0 {
            w.push(format!(
                "{} had no \"id\": each got a new one, so importing this file again will \
                 store them again (give every line an id to make re-imports safe)",
                lines(self.without_id)
            ));
        }
        if self.without_timestamp > 0 {
            w.push(format!(
                "{} had no \"timestamp\": they got the time of this import",
                lines(self.without_timestamp)
            ));
        }
        w
    }

    /// The human summary printed by `--format table`.
    pub fn table(&self) -> String {
        use tally_query::render::thousands;
        let mut s = format!(
            "{} accepted, {} duplicate{}, {} rejected\n",
            thousands(self.accepted),
            thousands(self.duplicates),
            if self.duplicates == 1 { "" } else { "s" },
            thousands(self.rejected)
        );
        if !self.errors.is_empty() {
            let shown = self.errors.len().min(10);
            s.push_str(&format!(
                "first rejected lines ({shown} of {}):\n",
                tally_query::render::thousands(self.rejected)
            ));
            for e in &self.errors[..shown] {
                s.push_str(&format!("  line {}: {}\n", e.line, e.error));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_table_and_warnings() {
        let s = ImportSummary {
            accepted: 1_234_567,
            duplicates: 1,
            ..ImportSummary::default()
        };
        assert_eq!(s.table(), "1,234,567 accepted, 1 duplicate, 0 rejected\n");
        assert!(s.warnings().is_empty());
        let s = ImportSummary {
            without_id: 2,
            without_timestamp: 1,
            ..ImportSummary::default()
        };
        let w = s.warnings();
        assert!(w[0].starts_with("2 lines had no \"id\""), "{w:?}");
        assert!(w[1].starts_with("1 line had no \"timestamp\""), "{w:?}");
        // The JSON summary keeps SPEC's four fields.
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"accepted": 0, "duplicates": 0, "rejected": 0, "errors": []})
        );
    }
}
