//! `tally export`: every stored event as a wire-form NDJSON line, which
//! `tally import` reads back to the same event.

use std::io::Write;

use crate::error::Error;
use crate::store::{DiskStore, Export};

/// Writes events with `from <= timestamp < to`; returns how many.
pub fn export(store: &dyn Export, from: i64, to: i64, out: &mut dyn Write) -> Result<u64, Error> {
    let mut n = 0;
    store.scan_events(from, to, &mut |e| {
        // The store filters already; checked again so that `--from/--to`
        // stay exact whatever the backend (SPEC §3: `[from, to)`).
        if !(from..to).contains(&e.timestamp) {
            return Ok(());
        }
        n += 1;
        writeln!(out, "{}", e.to_json_line())
            .map_err(|e| crate::store::Error::io("writing the export", e))
    })?;
    out.flush()
        .map_err(|e| Error::io("writing the export", e))?;
    Ok(n)
}

/// Like [`export`], but a chunk that cannot be read is reported to
/// `skipped` and the export goes on with the rest.
pub fn export_intact(
    store: &DiskStore,
    from: i64,
    to: i64,
    out: &mut dyn Write,
    skipped: &mut dyn FnMut(String),
) -> Result<u64, Error> {
    let mut n = 0;
    store.scan_intact_events(
        from,
        to,
        &mut |e| {
            n += 1;
            writeln!(out, "{}", e.to_json_line())
                .map_err(|e| crate::store::Error::io("writing the export", e))
        },
        skipped,
    )?;
    out.flush()
        .map_err(|e| Error::io("writing the export", e))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use tally_event::Event;

    use super::*;
    use crate::store::Error;

    /// A backend that hands `scan_events` every event, whatever the range:
    /// it fakes only the export seam.
    struct Unfiltered(Vec<Event>);

    impl Export for Unfiltered {
        fn scan_events(
            &self,
            _: i64,
            _: i64,
            each: &mut dyn FnMut(Event) -> Result<(), Error>,
        ) -> Result<(), Error> {
            self.0.iter().cloned().try_for_each(each)
        }
    }

    #[test]
    fn the_range_is_half_open_whatever_the_backend_returns() {
        let at = |ts: i64| Event {
            id: uuid::Uuid::from_u128(ts as u128),
            event: "e".into(),
            user_id: Some("u".into()),
            anonymous_id: None,
            timestamp: ts,
            stage: None,
            revenue: None,
            properties: None,
        };
        let store = Unfiltered((0..5).map(|i| at(1_000 + i)).collect());
        let mut out = Vec::new();
        assert_eq!(export(&store, 1_001, 1_003, &mut out).unwrap(), 2);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("1970-01-01T00:00:01.001Z"), "{text}");
        assert!(text.contains("1970-01-01T00:00:01.002Z"), "{text}");
    }
}
