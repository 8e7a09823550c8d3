//! `tally export`: every stored event as a wire-form NDJSON line, which
//! `tally import` reads back to the same event.

use std::io::Write;

use crate::error::Error;
use crate::store::EventStore;

/// Writes events with `from <= timestamp < to`; returns how many.
pub fn export(
    store: &dyn EventStore,
    from: i64,
    to: i64,
    out: &mut dyn Write,
) -> Result<u64, Error> {
    let mut n = 0;
    store.scan_events(from, to, &mut |e| {
        n += 1;
        writeln!(out, "{}", e.to_json_line()).map_err(|e| Error::io("writing the export", e))
    })?;
    out.flush()
        .map_err(|e| Error::io("writing the export", e))?;
    Ok(n)
}
