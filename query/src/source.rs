//! What the analyses read: interned rows, and the trait a store implements
//! to hand them over.
//!
//! Analyses never see strings for persons: person keys and event names are
//! interned to dense integers by the store, which lets per-person state live
//! in plain vectors indexed by [`PersonId`].

use std::collections::HashMap;

use serde_json::Value;
use tally_event::Stage;

use crate::error::QueryError;
use crate::filter::{GroupValue, Prop, Where};

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
    /// Who: the person the row counts for under the scan's [`Identity`].
    pub person: Vec<PersonId>,
    /// When, Unix milliseconds.
    pub ts: Vec<i64>,
    /// [`Stage::code`] or 0 for no stage.
    pub stage: Vec<u8>,
    /// Revenue, `NaN` when the event carries none (stored revenue is always finite).
    pub revenue: Vec<f64>,
    /// With [`Scan::by`]: each row's group, an index into `values`; empty
    /// otherwise.
    pub group: Vec<u32>,
    /// The group values `group` points into (their order means nothing;
    /// a value may appear more than once).
    pub values: Vec<GroupValue>,
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

    /// Row `i`'s group value (`Null` when the scan asked for none).
    pub fn value(&self, i: usize) -> &GroupValue {
        static NULL: GroupValue = GroupValue::Null;
        self.group
            .get(i)
            .map_or(&NULL, |&g| &self.values[g as usize])
    }
}

/// Whom an event counts for (SPEC §1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Identity {
    /// The linked user for an anonymous id that is linked (the default).
    #[default]
    Linked,
    /// `--identity none`: the event's own person key.
    PersonKey,
}

/// Which rows to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scan<'a> {
    /// Only these names; `None` means every name.
    pub names: Option<&'a [NameId]>,
    /// Inclusive lower bound on `ts`.
    pub from: i64,
    /// Exclusive upper bound on `ts`.
    pub to: i64,
    /// Only rows whose event passes every one of these (SPEC §5).
    pub filters: &'a [Where],
    /// Fill [`Rows::group`] with each row's value at this property path.
    pub by: Option<&'a [String]>,
    /// Whom rows count for.
    pub identity: Identity,
}

/// A store the analyses can read from.
pub trait Source: Sync {
    /// The id of an event name, `None` if no event of that name was ever stored.
    fn name_id(&self, name: &str) -> Option<NameId>;

    /// Upper bound (exclusive) of person ids handed out so far.
    fn person_count(&self) -> usize;

    /// Every row matching `scan` exactly (name in the set, `from <= ts < to`,
    /// every filter holding), grouped in [`Rows`] of a single name each;
    /// several `Rows` may share a name. Persons are resolved as
    /// `scan.identity` says, with links made by every stored event
    /// (filters and the range do not hide them).
    fn scan(&self, scan: &Scan<'_>) -> Result<Vec<Rows>, QueryError>;
}

/// One event as the in-memory source takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemEvent {
    /// Person key: the `user_id`, or the `anonymous_id` when `anonymous`.
    pub person: String,
    /// Event name.
    pub name: String,
    /// Unix milliseconds.
    pub ts: i64,
    /// Lifecycle stage.
    pub stage: Option<Stage>,
    /// Revenue.
    pub revenue: Option<f64>,
    /// True when the event has no `user_id` (`person` is its anonymous id).
    pub anonymous: bool,
    /// The `anonymous_id` an identified event also carries: it links that
    /// anonymous id to `person`.
    pub links: Option<String>,
    /// `properties`, a JSON object.
    pub properties: Option<Value>,
}

impl MemEvent {
    /// An identified event without stage, revenue or properties.
    pub fn new(person: &str, name: &str, ts: i64) -> Self {
        MemEvent {
            person: person.into(),
            name: name.into(),
            ts,
            stage: None,
            revenue: None,
            anonymous: false,
            links: None,
            properties: None,
        }
    }

    /// The same event sent by an anonymous visitor: `person` is its
    /// `anonymous_id`.
    pub fn anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }

    /// The same event also carrying `anonymous_id` (a link to `person`).
    pub fn identify(mut self, anonymous_id: &str) -> Self {
        self.links = Some(anonymous_id.into());
        self
    }

    /// The same event with these properties.
    pub fn props(mut self, properties: Value) -> Self {
        self.properties = Some(properties);
        self
    }

    /// A stored event as the in-memory source takes it.
    pub fn of_event(e: &tally_event::Event) -> Self {
        MemEvent {
            person: e.person().to_string(),
            name: e.event.clone(),
            ts: e.timestamp,
            stage: e.stage,
            revenue: e.revenue,
            anonymous: e.user_id.is_none(),
            links: e.user_id.as_ref().and(e.anonymous_id.clone()),
            properties: e
                .properties
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok()),
        }
    }
}

/// An in-memory [`Source`], for tests and small data: the plain statement
/// of every rule, with nothing precomputed but the interning.
#[derive(Debug, Default, Clone)]
pub struct MemSource {
    names: HashMap<String, NameId>,
    persons: HashMap<String, PersonId>,
    events: Vec<(MemEvent, NameId, PersonId)>,
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
        let name = *self.names.entry(e.name.clone()).or_insert(next);
        let person = self.intern(&e.person);
        if let Some(anon) = &e.links {
            self.intern(anon);
        }
        self.events.push((e, name, person));
    }

    /// The key of person `id` (for tests that compare sources).
    pub fn person_key(&self, id: PersonId) -> Option<&str> {
        self.persons
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(k, _)| k.as_str())
    }

    fn intern(&mut self, key: &str) -> PersonId {
        let next = self.persons.len() as PersonId;
        *self.persons.entry(key.to_string()).or_insert(next)
    }

    /// SPEC §1: each linked anonymous id's user, from its earliest linking
    /// event (ties: the smallest `user_id` in byte order).
    fn links(&self) -> HashMap<PersonId, PersonId> {
        let mut best: HashMap<&str, (i64, &str)> = HashMap::new();
        for (e, _, _) in &self.events {
            if let Some(anon) = &e.links {
                let candidate = (e.ts, e.person.as_str());
                let slot = best.entry(anon).or_insert(candidate);
                if (candidate.0, candidate.1.as_bytes()) < (slot.0, slot.1.as_bytes()) {
                    *slot = candidate;
                }
            }
        }
        best.into_iter()
            .map(|(anon, (_, user))| (self.persons[anon], self.persons[user]))
            .collect()
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
        let links = match scan.identity {
            Identity::Linked => self.links(),
            Identity::PersonKey => HashMap::new(),
        };
        let wanted = |n: NameId| scan.names.is_none_or(|names| names.contains(&n));
        let mut out: Vec<Rows> = Vec::new();
        for (e, name, person) in &self.events {
            if !wanted(*name) || !(scan.from..scan.to).contains(&e.ts) {
                continue;
            }
            let props = e.properties.as_ref().unwrap_or(&Value::Null);
            if !scan
                .filters
                .iter()
                .all(|f| f.holds(&Prop::at_value(props, &f.path)))
            {
                continue;
            }
            let person = match e.anonymous {
                true => links.get(person).copied().unwrap_or(*person),
                false => *person,
            };
            if out.len() <= *name as usize {
                out.resize_with(*name as usize + 1, Rows::default);
            }
            let rows = &mut out[*name as usize];
            rows.name = *name;
            rows.person.push(person);
            rows.ts.push(e.ts);
            rows.stage.push(e.stage.map_or(0, Stage::code));
            rows.revenue.push(e.revenue.unwrap_or(f64::NAN));
            if let Some(path) = scan.by {
                rows.group.push(rows.values.len() as u32);
                rows.values
                    .push(GroupValue::of(&Prop::at_value(props, path)));
            }
        }
        out.retain(|r| !r.is_empty());
        Ok(out)
    }
}
