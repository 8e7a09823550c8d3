//! What the analyses read: interned rows, and the trait a store implements
//! to hand them over.
//!
//! Analyses never see strings for persons: person keys and event names are
//! interned to dense integers by the store, which lets per-person state live
//! in plain vectors indexed by [`PersonId`].

use std::collections::HashMap;

use tally_event::Stage;

use crate::error::QueryError;

/// Dense person number: `0..Source::person_count()`.
pub type PersonId = u32;
/// Interned event name.
pub type NameId = u32;

/// Rows of one event name, column by column (all columns have equal length).
/// Timestamps are not sorted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// The event name of every row.
    pub name: NameId,
    /// Who.
    pub person: Vec<PersonId>,
    /// When, Unix milliseconds.
    pub ts: Vec<i64>,
    /// [`Stage::code`] or 0 for no stage.
    pub stage: Vec<u8>,
    /// Revenue, `NaN` when the event carries none (stored revenue is always finite).
    pub revenue: Vec<f64>,
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }
}

/// Which rows to read.
#[derive(Debug, Clone, Copy)]
pub struct Scan<'a> {
    /// Only these names; `None` means every name.
    pub names: Option<&'a [NameId]>,
    /// Inclusive lower bound on `ts`.
    pub from: i64,
    /// Exclusive upper bound on `ts`.
    pub to: i64,
}

/// A store the analyses can read from.
pub trait Source: Sync {
    /// The id of an event name, `None` if no event of that name was ever stored.
    fn name_id(&self, name: &str) -> Option<NameId>;

    /// Upper bound (exclusive) of person ids handed out so far.
    fn person_count(&self) -> usize;

    /// Every row matching `scan` exactly (name in the set, `from <= ts < to`),
    /// grouped in [`Rows`] of a single name each; several `Rows` may share a name.
    fn scan(&self, scan: &Scan<'_>) -> Result<Vec<Rows>, QueryError>;
}

/// One event as the in-memory source takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemEvent {
    /// Person key.
    pub person: String,
    /// Event name.
    pub name: String,
    /// Unix milliseconds.
    pub ts: i64,
    /// Lifecycle stage.
    pub stage: Option<Stage>,
    /// Revenue.
    pub revenue: Option<f64>,
}

impl MemEvent {
    /// An event without stage or revenue.
    pub fn new(person: &str, name: &str, ts: i64) -> Self {
        MemEvent {
            person: person.into(),
            name: name.into(),
            ts,
            stage: None,
            revenue: None,
        }
    }
}

/// An in-memory [`Source`], for tests and small data.
#[derive(Debug, Default, Clone)]
pub struct MemSource {
    names: HashMap<String, NameId>,
    persons: HashMap<String, PersonId>,
    rows: Vec<Rows>,
}

impl MemSource {
    /// Interns `events` in the order given.
    pub fn new(events: impl IntoIterator<Item = MemEvent>) -> Self {
        let mut src = MemSource::default();
        for e in events {
            src.push(e);
        }
        src
    }

    /// Adds one event.
    pub fn push(&mut self, e: MemEvent) {
        let next = self.names.len() as NameId;
        let name = *self.names.entry(e.name).or_insert(next);
        let next = self.persons.len() as PersonId;
        let person = *self.persons.entry(e.person).or_insert(next);
        if self.rows.len() <= name as usize {
            self.rows.resize_with(name as usize + 1, Rows::default);
        }
        let rows = &mut self.rows[name as usize];
        rows.name = name;
        rows.person.push(person);
        rows.ts.push(e.ts);
        rows.stage.push(e.stage.map_or(0, Stage::code));
        rows.revenue.push(e.revenue.unwrap_or(f64::NAN));
    }
}

impl Source for MemSource {
    fn name_id(&self, name: &str) -> Option<NameId> {
        self.names.get(name).copied()
    }

    fn person_count(&self) -> usize {
        self.persons.len()
    }

    fn scan(&self, scan: &Scan<'_>) -> Result<Vec<Rows>, QueryError> {
        let wanted = |n: NameId| scan.names.is_none_or(|names| names.contains(&n));
        Ok(self
            .rows
            .iter()
            .filter(|r| wanted(r.name))
            .map(|r| {
                let mut out = Rows {
                    name: r.name,
                    ..Rows::default()
                };
                for i in 0..r.len() {
                    if (scan.from..scan.to).contains(&r.ts[i]) {
                        out.person.push(r.person[i]);
                        out.ts.push(r.ts[i]);
                        out.stage.push(r.stage[i]);
                        out.revenue.push(r.revenue[i]);
                    }
                }
                out
            })
            .filter(|r| !r.is_empty())
            .collect())
    }
}
