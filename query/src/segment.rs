//! Filters, identity and breakdowns as every analysis takes them (SPEC §1,
//! §5): the `--where` / `--identity` pair ([`Segment`]), the `--by` /
//! `--limit` pair ([`Breakdown`]), and what a broken-down answer is
//! ([`Grouped`]) and how it prints.
//!
//! They are kept apart from each analysis's own parameters because they
//! mean the same thing everywhere: a [`Segment`] only changes which rows a
//! [`Scan`] hands over, and a [`Breakdown`] only changes how
//! the analysis partitions what it counts (the attribution rule is the
//! analysis's own; ordering, limit and the JSON shape are shared here).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::QueryError;
use crate::filter::{GroupValue, Where, parse_path};
use crate::params::RawParams;
use crate::render::{Report, csv_field};
use crate::source::{Identity, Rows, Scan};

/// `--limit` when not given.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest `--limit`.
pub const MAX_LIMIT: usize = 1000;

/// Which events exist for an analysis and whom they count for: every
/// `--where` must hold (SPEC §5), persons are resolved as `--identity`
/// says (SPEC §1). The default is no filter and linked identities, which
/// is what an analysis without these flags computes.
#[derive(Debug, Clone, Default)]
pub struct Segment {
    /// `--where`, in the order given (all must hold).
    pub filters: Vec<Where>,
    /// `--identity linked|none`.
    pub identity: Identity,
}

impl Segment {
    /// Reads every `where` (repeatable) and `identity` (`linked`, the
    /// default, or `none`).
    pub fn from_raw(raw: &mut RawParams) -> Result<Segment, QueryError> {
        let filters = raw
            .all("where")
            .iter()
            .map(|text| Where::parse(text).map_err(|m| QueryError::bad("where", m)))
            .collect::<Result<Vec<_>, _>>()?;
        let identity = match raw.str("identity")?.as_deref().map(str::trim) {
            None | Some("linked") => Identity::Linked,
            Some("none") => Identity::PersonKey,
            Some(other) => {
                return Err(QueryError::bad(
                    "identity",
                    format!("unknown identity '{other}' (expected linked, the default, or none)"),
                ));
            }
        };
        Ok(Segment { filters, identity })
    }

    /// A scan of `names` over `[from, to)` with this segment's filters and
    /// identity.
    pub fn scan<'a>(&'a self, names: Option<&'a [crate::NameId]>, from: i64, to: i64) -> Scan<'a> {
        Scan {
            names,
            from,
            to,
            filters: &self.filters,
            by: None,
            identity: self.identity,
        }
    }
}

/// `--by PATH` with `--limit N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakdown {
    /// `PATH` as given (trimmed), echoed as the answer's `by`.
    pub by: String,
    /// `PATH` split at every dot.
    pub path: Vec<String>,
    /// How many groups the answer lists (the rest are counted).
    pub limit: usize,
}

impl Breakdown {
    /// A breakdown by `path` (dotted) keeping `limit` groups.
    pub fn new(path: &str, limit: usize) -> Result<Breakdown, QueryError> {
        let by = path.trim().to_string();
        if by.is_empty() {
            return Err(QueryError::bad(
                "by",
                "must name a property path, e.g. plan or utm.source",
            ));
        }
        let path = parse_path(&by).map_err(|m| QueryError::bad("by", m))?;
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(QueryError::bad(
                "limit",
                format!("{limit} is out of range (expected 1 to {MAX_LIMIT})"),
            ));
        }
        Ok(Breakdown { by, path, limit })
    }

    /// Reads `by` and `limit` (default 20, 1 to 1000). `--limit` without
    /// `--by` is an error rather than ignored: it limits nothing, and a
    /// user who gives it believes it does.
    pub fn from_raw(raw: &mut RawParams) -> Result<Option<Breakdown>, QueryError> {
        let by = raw.str("by")?;
        let limit = raw.int("limit", 1..=MAX_LIMIT as i64)?;
        match (by, limit) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(QueryError::bad(
                "limit",
                "only applies with --by (it caps the number of groups listed)",
            )),
            (Some(by), limit) => {
                Breakdown::new(&by, limit.map_or(DEFAULT_LIMIT, |n| n as usize)).map(Some)
            }
        }
    }

    /// The scan of `segment` that also reads this breakdown's values.
    pub fn scan<'a>(
        &'a self,
        segment: &'a Segment,
        names: Option<&'a [crate::NameId]>,
        from: i64,
        to: i64,
    ) -> Scan<'a> {
        Scan {
            by: Some(&self.path),
            ..segment.scan(names, from, to)
        }
    }
}

/// One group of a [`Grouped`] answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group<R> {
    /// The property's value (`null`: missing, `null`, an object or an array).
    pub value: GroupValue,
    /// The analysis's own answer for this group.
    pub result: R,
}

/// An analysis broken down `--by` a property (SPEC §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grouped<R> {
    /// The property path, as given.
    pub by: String,
    /// The first `--limit` groups, largest headline first.
    pub groups: Vec<Group<R>>,
    /// How many groups there were beyond `--limit`.
    pub other_groups: u64,
}

/// A result that can be one group of a breakdown.
pub trait GroupReport: Report + Sized {
    /// The count groups are ordered by, largest first (SPEC §5).
    fn headline(&self) -> f64;

    /// The human table of every group, side by side.
    fn grouped_table(g: &Grouped<Self>) -> String;
}

impl<R: GroupReport> Grouped<R> {
    /// Orders `groups` by headline (largest first), then by value (SPEC
    /// §5's order), and keeps the first `limit`.
    pub fn new(by: &Breakdown, groups: Vec<(GroupValue, R)>) -> Grouped<R> {
        let mut groups: Vec<Group<R>> = groups
            .into_iter()
            .map(|(value, result)| Group { value, result })
            .collect();
        groups.sort_by(|a, b| {
            b.result
                .headline()
                .total_cmp(&a.result.headline())
                .then_with(|| a.value.cmp(&b.value))
        });
        let other_groups = groups.len().saturating_sub(by.limit) as u64;
        groups.truncate(by.limit);
        Grouped {
            by: by.by.clone(),
            groups,
            other_groups,
        }
    }

    /// The line tables end with when groups were left out.
    pub fn others_note(&self) -> String {
        match self.other_groups {
            0 => String::new(),
            n => format!(
                "\n{n} more group{} not shown (raise --limit to see them)\n",
                if n == 1 { "" } else { "s" }
            ),
        }
    }
}

impl<R: GroupReport> Report for Grouped<R> {
    fn table(&self) -> String {
        if self.groups.is_empty() {
            return format!("No group by {}: nothing to count in this range.\n", self.by);
        }
        let mut out = R::grouped_table(self);
        out.push_str(&self.others_note());
        out
    }

    /// The analysis's own CSV with a `group` column in front: the header
    /// once, then every group's rows in group order. The `null` group's
    /// cell is empty.
    fn csv(&self) -> String {
        let mut out = String::new();
        let mut header_done = false;
        for g in &self.groups {
            let csv = g.result.csv();
            let mut lines = csv.lines();
            let header = lines.next().unwrap_or_default();
            if !header_done {
                out.push_str("group,");
                out.push_str(header);
                out.push('\n');
                header_done = true;
            }
            let cell = group_cell(&g.value);
            for line in lines {
                out.push_str(&cell);
                out.push(',');
                out.push_str(line);
                out.push('\n');
            }
        }
        if !header_done {
            out.push_str("group\n");
        }
        out
    }
}

/// A group value as a CSV cell: strings defused and quoted like every text
/// cell, numbers and booleans as written in JSON, `null` empty.
pub fn group_cell(v: &GroupValue) -> String {
    match v {
        GroupValue::Str(s) => csv_field(s),
        GroupValue::Null => String::new(),
        other => other.to_string(),
    }
}

/// A group value as a table label: strings as they are, `null` as
/// `(none)`.
pub fn group_label(v: &GroupValue) -> String {
    v.to_string()
}

/// Group values interned to dense numbers over a whole scan: `Rows` number
/// their values per block, so the same value has different local numbers
/// in different blocks.
pub(crate) struct GroupIds {
    /// Per `Rows` of the scan: local value number → group id.
    local: Vec<Vec<u32>>,
    /// The id of `null`, for rows a store gave no value.
    null: u32,
    /// Group id → value.
    pub(crate) values: Vec<GroupValue>,
    /// Group id → its rank in SPEC §5's order of values (for "the
    /// smallest value" when first starts tie).
    pub(crate) rank: Vec<u32>,
}

impl GroupIds {
    /// Interns the values of every `Rows` of a scan made with `by`.
    pub(crate) fn new(rows: &[Rows]) -> GroupIds {
        let mut ids: HashMap<GroupValue, u32> = HashMap::new();
        let mut values = Vec::new();
        let mut intern = |v: &GroupValue| {
            *ids.entry(v.clone()).or_insert_with(|| {
                values.push(v.clone());
                values.len() as u32 - 1
            })
        };
        let local = rows
            .iter()
            .map(|r| r.values.iter().map(&mut intern).collect())
            .collect();
        let null = intern(&GroupValue::Null);
        let mut order: Vec<u32> = (0..values.len() as u32).collect();
        order.sort_by(|&a, &b| values[a as usize].cmp(&values[b as usize]));
        let mut rank = vec![0; values.len()];
        for (r, &g) in order.iter().enumerate() {
            rank[g as usize] = r as u32;
        }
        GroupIds {
            local,
            null,
            values,
            rank,
        }
    }

    /// The group id of row `i` of `rows[k]`; a row without a value (a
    /// store that filled none) is in the `null` group.
    pub(crate) fn of(&self, k: usize, rows: &Rows, i: usize) -> u32 {
        rows.group
            .get(i)
            .and_then(|&g| self.local[k].get(g as usize).copied())
            .unwrap_or(self.null)
    }

    /// How many distinct values.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// Splits rows into one set of rows per group (each row keeps its name,
    /// time, stage and revenue), for analyses where every event counts in
    /// its own group and only distinct persons *within* a group matter
    /// (lifecycle, trend). Groups without rows are left out.
    ///
    /// Each group's persons are renumbered densely (`Part::persons` of
    /// them), so that a group costs memory and time for its own rows and
    /// persons, not for every person of the store: a breakdown by a
    /// property with thousands of values stays linear in the rows.
    pub(crate) fn split(&self, rows: Vec<Rows>) -> Vec<Part> {
        let mut out: Vec<Vec<Rows>> = vec![Vec::new(); self.len()];
        let mut count = vec![0usize; self.len()];
        for (k, r) in rows.iter().enumerate() {
            // Two passes per block: count each group's rows, then copy
            // them into columns allocated once at their final size.
            count.fill(0);
            let groups: Vec<u32> = (0..r.len()).map(|i| self.of(k, r, i)).collect();
            for &g in &groups {
                count[g as usize] += 1;
            }
            let at: Vec<usize> = count
                .iter()
                .enumerate()
                .map(|(g, &n)| {
                    if n == 0 {
                        return usize::MAX;
                    }
                    out[g].push(Rows {
                        name: r.name,
                        person: Vec::with_capacity(n),
                        ts: Vec::with_capacity(n),
                        stage: Vec::with_capacity(n),
                        revenue: Vec::with_capacity(n),
                        ..Rows::default()
                    });
                    out[g].len() - 1
                })
                .collect();
            for (i, &g) in groups.iter().enumerate() {
                let dst = &mut out[g as usize][at[g as usize]];
                dst.person.push(r.person[i]);
                dst.ts.push(r.ts[i]);
                dst.stage.push(r.stage[i]);
                dst.revenue.push(r.revenue[i]);
            }
        }
        drop(rows);
        // One map from person id to the group's own number, reset after
        // each group for the entries it touched.
        let mut local: Vec<u32> = Vec::new();
        let mut parts = Vec::new();
        for (value, mut rows) in self.values.iter().cloned().zip(out) {
            if rows.is_empty() {
                continue;
            }
            let mut persons: Vec<u32> = Vec::new();
            for r in &mut rows {
                for p in &mut r.person {
                    let slot = *p as usize;
                    if slot >= local.len() {
                        local.resize(slot + 1, u32::MAX);
                    }
                    if local[slot] == u32::MAX {
                        local[slot] = persons.len() as u32;
                        persons.push(*p);
                    }
                    *p = local[slot];
                }
            }
            for &p in &persons {
                local[p as usize] = u32::MAX;
            }
            parts.push(Part {
                value,
                rows,
                persons: persons.len(),
            });
        }
        parts
    }
}

/// One group's rows from [`GroupIds::split`].
pub(crate) struct Part {
    /// The group's value.
    pub(crate) value: GroupValue,
    /// Its rows, persons numbered `0..persons` within the group.
    pub(crate) rows: Vec<Rows>,
    /// How many distinct persons the rows have.
    pub(crate) persons: usize,
}
