//! `tally events` and `GET /v1/events` (SPEC §3): which events the store
//! holds, how often, by how many people, when, and with which properties;
//! and the "did you mean" hint for an analysis that names an event the
//! store has never seen.
//!
//! Both read through the store's public interface
//! ([`Export::scan_events`](crate::store::Export::scan_events)): the analyses' [`Source`](tally_query::Source)
//! never sees names or properties.
//!
//! `GET /v1/events?names=only` ([`names`]) is the cheap list the dashboard's
//! pickers need: names and counts only. It counts rows through
//! [`Source::scan`](tally_query::Source::scan) (the columns the analyses read,
//! no event decoded) and turns name ids into names with a [`NameBook`] that
//! a running collector keeps; a name id the book has not seen yet sends it
//! to [`Export::scan_events`](crate::store::Export::scan_events) over the one millisecond of one of its
//! rows.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tally_event::time::format_rfc3339;
use tally_query::render::{align, csv_field, thousands};
use tally_query::{Identity, NameId, QueryError, Report, Scan};

use crate::store::EventStore;

/// Property paths listed per event.
pub const MAX_PROPERTIES: usize = 100;
/// Distinct paths collected per event before the list is cut (bounds the
/// memory an event with ever-new property names can take).
const MAX_COLLECTED_PATHS: usize = 10_000;

/// The answer of `tally events`, exactly SPEC's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsResult {
    /// Most frequent first (ties by name).
    pub events: Vec<EventSummary>,
}

/// One event name's line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSummary {
    /// The event name.
    pub event: String,
    /// Events of this name in range.
    pub count: u64,
    /// Distinct persons (person keys) who sent them.
    pub users: u64,
    /// Earliest timestamp, RFC 3339 UTC.
    pub first_seen: String,
    /// Latest timestamp, RFC 3339 UTC.
    pub last_seen: String,
    /// Dotted paths of the scalar properties seen, sorted, at most 100.
    pub properties: Vec<String>,
}

#[derive(Default)]
struct Acc {
    count: u64,
    users: HashSet<String>,
    first: i64,
    last: i64,
    paths: BTreeSet<String>,
}

/// Lists the events with `from <= timestamp < to`.
pub fn list(store: &dyn EventStore, from: i64, to: i64) -> Result<EventsResult, QueryError> {
    let mut by_name: BTreeMap<String, Acc> = BTreeMap::new();
    store
        .scan_events(from, to, &mut |e| {
            if !(from..to).contains(&e.timestamp) {
                return Ok(());
            }
            let acc = by_name.entry(e.event.clone()).or_insert_with(|| Acc {
                first: i64::MAX,
                last: i64::MIN,
                ..Acc::default()
            });
            acc.count += 1;
            acc.first = acc.first.min(e.timestamp);
            acc.last = acc.last.max(e.timestamp);
            if !acc.users.contains(e.person()) {
                acc.users.insert(e.person().to_string());
            }
            if let Some(props) = &e.properties
                && acc.paths.len() < MAX_COLLECTED_PATHS
                && let Ok(serde_json::Value::Object(map)) = serde_json::from_str(props)
            {
                scalar_paths(&map, "", &mut acc.paths);
            }
            Ok(())
        })
        .map_err(|e| QueryError::Source(e.to_string()))?;
    let mut events: Vec<EventSummary> = by_name
        .into_iter()
        .map(|(event, a)| EventSummary {
            event,
            count: a.count,
            users: a.users.len() as u64,
            first_seen: format_rfc3339(a.first),
            last_seen: format_rfc3339(a.last),
            properties: a.paths.into_iter().take(MAX_PROPERTIES).collect(),
        })
        .collect();
    // Stable: equal counts stay in name order.
    events.sort_by_key(|e| std::cmp::Reverse(e.count));
    Ok(EventsResult { events })
}

/// Adds the paths (`utm.source`) of the scalar values (strings, numbers,
/// booleans) under `map`; arrays and nulls are not properties one can
/// filter on.
fn scalar_paths(
    map: &serde_json::Map<String, serde_json::Value>,
    prefix: &str,
    out: &mut BTreeSet<String>,
) {
    for (k, v) in map {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            serde_json::Value::Object(inner) => scalar_paths(inner, &path, out),
            serde_json::Value::String(_)
            | serde_json::Value::Number(_)
            | serde_json::Value::Bool(_) => {
                out.insert(path);
            }
            serde_json::Value::Null | serde_json::Value::Array(_) => {}
        }
    }
}

impl Report for EventsResult {
    fn table(&self) -> String {
        if self.events.is_empty() {
            return "No events in this range.\n".into();
        }
        let mut rows = vec![
            [
                "event",
                "count",
                "users",
                "first seen",
                "last seen",
                "properties",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for e in &self.events {
            rows.push(vec![
                e.event.clone(),
                thousands(e.count),
                thousands(e.users),
                e.first_seen.clone(),
                e.last_seen.clone(),
                e.properties.join(", "),
            ]);
        }
        align(&rows)
    }

    /// One row per event; `properties` space-separated in one cell.
    fn csv(&self) -> String {
        let mut out = String::from("event,count,users,first_seen,last_seen,properties\n");
        for e in &self.events {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{}",
                csv_field(&e.event),
                e.count,
                e.users,
                e.first_seen,
                e.last_seen,
                csv_field(&e.properties.join(" "))
            );
        }
        out
    }
}

/// The answer of `GET /v1/events?names=only`: each name with events in
/// `[from, to)` and how many, most frequent first (ties by name), as
/// `tally events` orders them; no users, times or properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamesResult {
    /// Most frequent first (ties by name).
    pub events: Vec<NameCount>,
}

/// One event name's count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameCount {
    /// The event name.
    pub event: String,
    /// Events of this name in range.
    pub count: u64,
}

/// Name ids to names, as the store interned them. Ids never change meaning
/// while a store is open, so a book filled once stays right; it only
/// misses names first stored after it was filled.
#[derive(Debug, Default)]
pub struct NameBook {
    names: Mutex<HashMap<NameId, String>>,
}

/// Lists the event names with events in `[from, to)` and their counts,
/// without decoding events (see the module's documentation); `book` may
/// be fresh (it is then filled from the events of the names it lacks).
pub fn names(
    store: &dyn EventStore,
    book: &NameBook,
    from: i64,
    to: i64,
) -> Result<NamesResult, QueryError> {
    let rows = store.scan(&Scan {
        names: None,
        from,
        to,
        filters: &[],
        by: None,
        // Counting needs no person: skip resolving links.
        identity: Identity::PersonKey,
    })?;
    let mut counts: BTreeMap<NameId, u64> = BTreeMap::new();
    for r in &rows {
        *counts.entry(r.name).or_default() += r.len() as u64;
    }
    // One instant of a row of each name id the book lacks: the events of
    // that millisecond hold one with that name.
    let mut missing: BTreeMap<NameId, i64> = BTreeMap::new();
    {
        let known = book.names.lock().unwrap_or_else(|e| e.into_inner());
        for r in rows.iter().filter(|r| !known.contains_key(&r.name)) {
            if let Some(&t) = r.ts.first() {
                missing.entry(r.name).or_insert(t);
            }
        }
    }
    let mut found: HashMap<NameId, String> = HashMap::new();
    for (id, t) in missing {
        if found.contains_key(&id) {
            continue;
        }
        store
            .scan_events(t, t.saturating_add(1), &mut |e| {
                if let Some(n) = store.name_id(&e.event) {
                    found.entry(n).or_insert(e.event);
                }
                Ok(())
            })
            .map_err(|e| QueryError::Source(e.to_string()))?;
    }
    if !found.is_empty() {
        book.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(found);
    }
    let known = book.names.lock().unwrap_or_else(|e| e.into_inner());
    let mut events = Vec::with_capacity(counts.len());
    for (id, count) in counts {
        let event = known.get(&id).cloned().ok_or_else(|| {
            QueryError::Source(format!(
                "event name id {id} has rows but no stored event carries it"
            ))
        })?;
        events.push(NameCount { event, count });
    }
    drop(known);
    events.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.event.cmp(&b.event)));
    Ok(NamesResult { events })
}

impl Report for NamesResult {
    fn table(&self) -> String {
        if self.events.is_empty() {
            return "No events in this range.\n".into();
        }
        let mut rows = vec![vec!["event".to_string(), "count".to_string()]];
        for e in &self.events {
            rows.push(vec![e.event.clone(), thousands(e.count)]);
        }
        align(&rows)
    }

    fn csv(&self) -> String {
        let mut out = String::from("event,count\n");
        for e in &self.events {
            let _ = writeln!(out, "{},{}", csv_field(&e.event), e.count);
        }
        out
    }
}

/// Every event name stored, at any time.
pub fn known_names(store: &dyn EventStore) -> Result<Vec<String>, QueryError> {
    let mut names = BTreeSet::new();
    store
        .scan_events(i64::MIN, i64::MAX, &mut |e| {
            if !names.contains(&e.event) {
                names.insert(e.event);
            }
            Ok(())
        })
        .map_err(|e| QueryError::Source(e.to_string()))?;
    Ok(names.into_iter().collect())
}

/// Warnings for the names in `wanted` that no stored event has, each with
/// the closest known names.
pub fn unknown_name_warnings(
    store: &dyn EventStore,
    wanted: &[&str],
) -> Result<Vec<String>, QueryError> {
    let unknown: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|n| store.name_id(n).is_none())
        .collect();
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let known = known_names(store)?;
    let mut seen = HashSet::new();
    Ok(unknown
        .into_iter()
        .filter(|n| seen.insert(*n))
        .map(|name| {
            let close = closest(name, &known, 3);
            if known.is_empty() {
                format!("no event named '{name}' was ever stored (the store holds no events yet)")
            } else if close.is_empty() {
                format!(
                    "no event named '{name}' was ever stored; `tally events` lists the {} known",
                    known.len()
                )
            } else {
                format!(
                    "no event named '{name}' was ever stored; did you mean {}? (`tally events` lists them all)",
                    close
                        .iter()
                        .map(|c| format!("'{c}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        })
        .collect())
}

/// Up to `n` names of `known` closest to `name` by edit distance (case
/// differences and separators cost little), nearest first; names too far
/// to be a typo are left out.
pub fn closest<'a>(name: &str, known: &'a [String], n: usize) -> Vec<&'a str> {
    let norm = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                '-' | ' ' | '.' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect()
    };
    let target = norm(name);
    let limit = (target.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = known
        .iter()
        .filter_map(|k| {
            let nk = norm(k);
            let d = if nk == target {
                0
            } else {
                levenshtein(&nk, &target).max(1)
            };
            (d <= limit || nk.contains(&target) || (nk.len() >= 3 && target.contains(&nk)))
                .then_some((d, k.as_str()))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(n).map(|(_, k)| k).collect()
}

/// Edit distance (insertions, deletions, substitutions) by characters.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("signup", "signup"), 0);
        assert_eq!(levenshtein("signup", "sigup"), 1);
        assert_eq!(levenshtein("signup", "singup"), 2);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("é", "e"), 1);
    }

    #[test]
    fn closest_names() {
        let known: Vec<String> = ["signup", "sign_in", "invoice_sent", "purchase", "page_view"]
            .map(String::from)
            .to_vec();
        assert_eq!(closest("sigup", &known, 3), ["signup"]);
        assert_eq!(closest("Signup", &known, 3), ["signup"]);
        assert_eq!(closest("invoice-sent", &known, 3), ["invoice_sent"]);
        assert_eq!(closest("invoice", &known, 3), ["invoice_sent"]);
        assert_eq!(closest("purchased", &known, 3), ["purchase"]);
        assert!(closest("zzzzzzzz", &known, 3).is_empty());
    }

    #[test]
    fn scalar_property_paths() {
        let v: serde_json::Value = serde_json::json!({
            "plan": "pro", "seats": 3, "trial": false, "none": null, "tags": ["a"],
            "utm": {"source": "x", "deep": {"er": 1}, "empty": {}}
        });
        let mut out = BTreeSet::new();
        scalar_paths(v.as_object().unwrap(), "", &mut out);
        assert_eq!(
            out.into_iter().collect::<Vec<_>>(),
            ["plan", "seats", "trial", "utm.deep.er", "utm.source"]
        );
    }
}
