//! Turning queued events into request bodies.
//!
//! Each event is serialized once, without `sent_at`, when the sender takes
//! it from the queue; every attempt then splices the attempt's `sent_at` in
//! front of each event's fields, so retries resend byte-identical events
//! apart from that stamp.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value;
use tally_event::WireEvent;
use tally_event::ingest::MAX_BODY_BYTES;
use tally_event::validate::{MAX_PROPERTIES_BYTES, MAX_PROPERTIES_DEPTH};

use crate::queue::Entry;

/// Budget for the serialized events of one request: the limit minus room
/// for the envelope and for `"sent_at":"...",` in each of up to 1000 events.
pub(crate) const EVENTS_BUDGET: usize = MAX_BODY_BYTES - 64 * 1024;

/// An event ready to send: its JSON without `sent_at`.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) seq: u64,
    pub(crate) event: WireEvent,
    pub(crate) json: String,
}

impl Prepared {
    pub(crate) fn into_entry(self) -> Entry {
        Entry {
            seq: self.seq,
            event: self.event,
        }
    }
}

/// What [`prepare`] made of a queued event.
#[derive(Debug)]
pub(crate) enum Prep {
    /// Ready to send.
    Ready(Prepared),
    /// The collector would reject it, for this reason.
    Refused(Entry, String),
}

impl Prep {
    #[cfg(test)]
    fn unwrap(self) -> Prepared {
        match self {
            Prep::Ready(p) => p,
            Prep::Refused(_, why) => panic!("refused: {why}"),
        }
    }

    #[cfg(test)]
    fn unwrap_err(self) -> (Entry, String) {
        match self {
            Prep::Ready(p) => panic!("prepared: {}", p.json),
            Prep::Refused(e, why) => (e, why),
        }
    }

    #[cfg(test)]
    fn is_ok(&self) -> bool {
        matches!(self, Prep::Ready(_))
    }

    #[cfg(test)]
    fn is_err(&self) -> bool {
        !self.is_ok()
    }
}

/// Serializes a queued event, or says why the collector would reject it
/// (the checks too costly for the app thread).
pub(crate) fn prepare(entry: Entry) -> Prep {
    if let Some(props) = &entry.event.properties {
        let mut counter = ByteCounter(0);
        if serde_json::to_writer(&mut counter, props).is_err() {
            return Prep::Refused(entry, "properties: cannot be serialized".into());
        }
        if counter.0 > MAX_PROPERTIES_BYTES {
            let size = counter.0;
            return Prep::Refused(
                entry,
                format!(
                    "properties: {size} bytes as compact JSON (at most {MAX_PROPERTIES_BYTES}); not sent"
                ),
            );
        }
        let depth = object_depth(props);
        if depth > MAX_PROPERTIES_DEPTH {
            return Prep::Refused(
                entry,
                format!(
                    "properties: nested {depth} levels deep (at most {MAX_PROPERTIES_DEPTH}); not sent"
                ),
            );
        }
    }
    let mut event = entry.event;
    event.sent_at = None;
    match serde_json::to_string(&event) {
        Ok(json) if json.starts_with('{') && json.len() > 2 => Prep::Ready(Prepared {
            seq: entry.seq,
            event,
            json,
        }),
        _ => Prep::Refused(
            Entry {
                seq: entry.seq,
                event,
            },
            "event: cannot be serialized".into(),
        ),
    }
}

/// Nesting depth of a properties object: the object itself is level 1.
fn object_depth(props: &serde_json::Map<String, Value>) -> usize {
    // Iterative, so that hostile nesting cannot overflow the stack.
    let mut max = 1;
    let mut stack: Vec<(&Value, usize)> = props.values().map(|v| (v, 2)).collect();
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Object(m) => {
                max = max.max(d);
                stack.extend(m.values().map(|v| (v, d + 1)));
            }
            Value::Array(a) => {
                max = max.max(d);
                stack.extend(a.iter().map(|v| (v, d + 1)));
            }
            _ => {}
        }
    }
    max
}

struct ByteCounter(usize);

impl Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How many of the leading items (given their serialized sizes) go into one
/// request: at most `max_events`, their bytes plus separating commas within
/// `budget`, and at least one if there is any (a single event is always far
/// below the budget, since its properties are at most 32 KiB).
pub(crate) fn fit(
    sizes: impl IntoIterator<Item = usize>,
    max_events: usize,
    budget: usize,
) -> usize {
    let mut total = 0usize;
    let mut n = 0usize;
    for size in sizes {
        if n == max_events {
            break;
        }
        let next = total + size + usize::from(n > 0);
        if n > 0 && next > budget {
            break;
        }
        total = next;
        n += 1;
    }
    n
}

/// The JSON body `{"batch":[...]}` with `sent_at` stamped into every event.
pub(crate) fn body(items: &[Prepared], sent_at: &str) -> Vec<u8> {
    let stamp = format!("{{\"sent_at\":\"{sent_at}\",");
    let size: usize = items.iter().map(|p| p.json.len() + stamp.len()).sum();
    let mut out = Vec::with_capacity(size + 16);
    out.extend_from_slice(b"{\"batch\":[");
    for (i, p) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(stamp.as_bytes());
        // `prepare` guarantees a non-empty object: skip its `{`.
        out.extend_from_slice(&p.json.as_bytes()[1..]);
    }
    out.extend_from_slice(b"]}");
    out
}

/// Gzip at the fastest level: event JSON compresses about tenfold even so,
/// and the sender shares the app's runtime.
pub(crate) fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), Compression::fast());
    enc.write_all(body).ok()?;
    enc.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::io::Read;
    use uuid::Uuid;

    fn entry(seq: u64, props: Option<Value>) -> Entry {
        Entry {
            seq,
            event: WireEvent {
                id: Some(Uuid::now_v7()),
                event: format!("e{seq}"),
                user_id: Some("u1".into()),
                timestamp: Some(1_767_225_600_000),
                properties: props.map(|p| p.as_object().unwrap().clone()),
                ..WireEvent::default()
            },
        }
    }

    #[test]
    fn body_stamps_sent_at_and_round_trips() {
        let items: Vec<Prepared> = (1..=3)
            .map(|i| prepare(entry(i, Some(json!({"k": i, "nested": {"a": [1, 2]}})))).unwrap())
            .collect();
        let raw = body(&items, "2026-01-01T00:00:01.500Z");
        let v: Value = serde_json::from_slice(&raw).unwrap();
        let batch = v["batch"].as_array().unwrap();
        assert_eq!(batch.len(), 3);
        for (b, p) in batch.iter().zip(&items) {
            assert_eq!(b["sent_at"], "2026-01-01T00:00:01.500Z");
            assert_eq!(b["id"], p.event.id.unwrap().to_string());
            assert_eq!(b["timestamp"], "2026-01-01T00:00:00Z");
            // Everything else is the event as tracked: it parses back.
            let mut back: WireEvent = serde_json::from_value(b.clone()).unwrap();
            back.sent_at = None;
            assert_eq!(back, p.event);
        }
        let empty = body(&[], "x");
        assert_eq!(empty, b"{\"batch\":[]}");
    }

    #[test]
    fn gzip_inflates_back() {
        let raw = body(&[prepare(entry(1, None)).unwrap()], "2026-01-01T00:00:00Z");
        let gz = gzip(&raw).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, raw);
    }

    #[test]
    fn oversized_or_too_deep_properties_are_refused_locally() {
        let big = "x".repeat(MAX_PROPERTIES_BYTES);
        let (e, why) = prepare(entry(1, Some(json!({ "blob": big })))).unwrap_err();
        assert_eq!(e.seq, 1);
        assert!(why.starts_with("properties:"), "{why}");
        // Just under the limit passes: {"b":"..."} is 8 bytes of overhead.
        let ok = "x".repeat(MAX_PROPERTIES_BYTES - 8);
        assert!(prepare(entry(2, Some(json!({ "b": ok })))).is_ok());

        let mut deep = json!(1);
        for _ in 0..MAX_PROPERTIES_DEPTH {
            deep = json!([deep]);
        }
        // {"d": [[...[1]...]]}: the object plus 126 arrays = 127 levels.
        assert!(prepare(entry(3, Some(json!({ "d": deep.clone() })))).is_err());
        let shallower = deep[0].clone();
        assert!(prepare(entry(4, Some(json!({ "d": shallower })))).is_ok());
    }

    #[test]
    fn depth_counts_the_object_as_level_one() {
        let d = |v: Value| object_depth(v.as_object().unwrap());
        assert_eq!(d(json!({})), 1);
        assert_eq!(d(json!({"a": 1})), 1);
        assert_eq!(d(json!({"a": {}})), 2);
        assert_eq!(d(json!({"a": [1, {"b": [2]}]})), 4);
    }

    #[test]
    fn fit_table() {
        // (sizes, max_events, budget) -> n
        let cases: &[(&[usize], usize, usize, usize)] = &[
            (&[], 10, 100, 0),
            (&[10, 10, 10], 10, 100, 3),
            (&[10, 10, 10], 2, 100, 2),
            (&[50, 49, 10], 10, 100, 2), // 50 + 1 + 49 = 100 fits exactly
            (&[50, 50, 10], 10, 100, 1), // 50 + 1 + 50 = 101 does not
            (&[500], 10, 100, 1),        // one event always goes
            (&[500, 1], 10, 100, 1),
        ];
        for &(sizes, max, budget, want) in cases {
            assert_eq!(
                fit(sizes.iter().copied(), max, budget),
                want,
                "{sizes:?} {max} {budget}"
            );
        }
    }

    proptest! {
        /// Batching a stream by repeatedly applying `fit` against the model
        /// "a partition of the stream into consecutive runs": batches never
        /// exceed the event or byte limits (a lone oversized event aside),
        /// order is preserved, and every event appears exactly once.
        #[test]
        fn batches_partition_the_stream(
            sizes in proptest::collection::vec(1usize..300, 0..400),
            max_events in 1usize..50,
            budget in 1usize..2000,
        ) {
            let mut batches: Vec<Vec<usize>> = Vec::new();
            let mut at = 0;
            while at < sizes.len() {
                let n = fit(sizes[at..].iter().copied(), max_events, budget);
                prop_assert!(n >= 1);
                batches.push((at..at + n).collect());
                at += n;
            }
            let flat: Vec<usize> = batches.iter().flatten().copied().collect();
            prop_assert_eq!(flat, (0..sizes.len()).collect::<Vec<_>>());
            for b in &batches {
                prop_assert!(b.len() <= max_events);
                let bytes: usize = b.iter().map(|&i| sizes[i]).sum::<usize>() + b.len() - 1;
                prop_assert!(bytes <= budget || b.len() == 1);
                // Greedy: the next event would not have fit.
                if let Some(&next) = b.last().map(|l| l + 1).as_ref() {
                    if next < sizes.len() && b.len() < max_events {
                        prop_assert!(bytes + 1 + sizes[next] > budget);
                    }
                }
            }
        }
    }
}
