//! Retention (SPEC §4): of the persons whose first ever `start` event falls
//! in `[from, to)`, how many come back with a `return` event in each rolling
//! period after their own start.
//!
//! Shape of the computation (see the crate doc):
//! 1. scan the `start` rows up to `to` → per person the first start `s0`
//!    (a `Vec<i64>` indexed by [`PersonId`], merged by `min`);
//! 2. persons with `s0` in `[from, to)` become dense *members*, each with a
//!    cohort (local day or ISO week of `s0` in `--tz`);
//! 3. scan the `return` rows from `from` on → per member a bitset of the
//!    periods `1..=periods` hit plus one bit for "some later period"
//!    (the highest bit gives `unbounded`), merged by `|`;
//! 4. fold members into per-cohort counts.
//!
//! Both passes are O(rows) with plain vector lookups (one cache line per
//! row for the person's `s0` and member number, one for their bits), and
//! run in parallel over slices of the rows with one partial state per
//! thread. Memory: 8 bytes per person per thread for pass 1, 16 bytes per
//! person plus ⌈(periods + 2) / 64⌉ words per member per thread for pass 3.
//!
//! `--return any` scans every event name from `from` on: any event at or
//! after a person's `s0` counts as a return, including further `start`
//! events (and the start event itself, which only ever lands in period 0,
//! and period 0 is the whole cohort anyway). Events before `s0` never count,
//! so a page view before signing up is not a "return".
//!
//! Filters and identity (SPEC §5, §1) go into both scans. With `--by`, pass
//! 1 also keeps the group of each person's `s0` event (ties: the smallest
//! value); the return bits are computed once for every member, and the
//! members are then put in group order (a counting sort) and counted group
//! by group, each group's cohorts judged complete by its own latest member.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use tally_event::time::{DAY_MS, format_rfc3339, ms_to_date};

use crate::calendar::{Zone, monday_of};

use crate::error::QueryError;
use crate::filter::GroupValue;
use crate::group::fold_rows;
use crate::params::RawParams;
use crate::render::{Report, align, csv_field, percent, thousands};
use crate::segment::{Breakdown, GroupIds, GroupReport, Grouped, Segment};
use crate::source::{NameId, PersonId, Rows, Source};

/// Largest `--periods`.
pub const MAX_PERIODS: u32 = 365;
/// `--periods` when not given.
pub const DEFAULT_PERIODS: u32 = 8;

/// Length of one retention period, which is also how cohorts are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// 24 hours; cohorts by local day (`--tz`).
    Day,
    /// 7 × 24 hours; cohorts by local ISO week (starting Monday).
    #[default]
    Week,
}

impl Period {
    /// `day` or `week`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
        }
    }

    /// The period length `L` in milliseconds.
    pub fn length_ms(self) -> i64 {
        match self {
            Period::Day => DAY_MS,
            Period::Week => 7 * DAY_MS,
        }
    }

    /// The cohort `ms` belongs to, as the civil day number of its first
    /// day in `zone` (the local day itself, or the Monday of its ISO week).
    pub fn cohort_day(self, ms: i64, zone: &Zone) -> i64 {
        let day = zone.local_day(ms);
        match self {
            Period::Day => day,
            Period::Week => monday_of(day),
        }
    }
}

impl std::str::FromStr for Period {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            _ => Err(format!("unknown period '{s}' (expected day or week)")),
        }
    }
}

/// What counts as coming back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReturnEvent {
    /// Any event at all (`--return any`).
    Any,
    /// Events of this name (possibly the start event's name).
    Event(String),
}

/// Parameters of `tally retention`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetentionParams {
    /// The event that puts a person in a cohort (their first ever one).
    pub start: String,
    /// The event that counts as coming back.
    #[serde(rename = "return")]
    pub return_event: ReturnEvent,
    /// Period length and cohort grouping.
    pub period: Period,
    /// Number of periods after period 0 (`0..=365`).
    pub periods: u32,
    /// Cohort range start (inclusive), Unix ms.
    pub from: i64,
    /// Cohort range end (exclusive), Unix ms.
    pub to: i64,
    /// The moment periods are judged complete against, Unix ms.
    pub as_of: i64,
    /// The zone of the cohorts' days and weeks (`--tz`).
    #[serde(default)]
    pub tz: Zone,
}

impl RetentionParams {
    /// Reads `start`, `return`, `period`, `periods`, `from`, `to`, `as-of`
    /// (`now_ms` is the default `as-of` and the base of the default range).
    pub fn from_raw(raw: &mut RawParams, now_ms: i64) -> Result<Self, QueryError> {
        let start = raw.required("start")?;
        if start.is_empty() {
            return Err(QueryError::bad("start", "must not be empty"));
        }
        let return_event = match raw.str("return")? {
            None => ReturnEvent::Event(start.clone()),
            Some(r) if r == "any" => ReturnEvent::Any,
            Some(r) if r.is_empty() => {
                return Err(QueryError::bad(
                    "return",
                    "must not be empty (give an event name or 'any')",
                ));
            }
            Some(r) => ReturnEvent::Event(r),
        };
        let period = match raw.str("period")? {
            None => Period::default(),
            Some(s) => s
                .trim()
                .parse::<Period>()
                .map_err(|m| QueryError::bad("period", m))?,
        };
        let periods = raw
            .int("periods", 0..=i64::from(MAX_PERIODS))?
            .map_or(DEFAULT_PERIODS, |n| n as u32);
        let (from, to) = raw.range(now_ms)?;
        let as_of = raw.time("as-of")?.unwrap_or(now_ms);
        Ok(RetentionParams {
            start,
            return_event,
            period,
            periods,
            from,
            to,
            as_of,
            tz: raw.zone()?,
        })
    }
}

/// One cohort's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortRetention {
    /// First day of the cohort, `YYYY-MM-DD` (a Monday for weekly cohorts).
    pub cohort: String,
    /// Persons in the cohort.
    pub size: u64,
    /// `retained[k]`: persons with a return event in period `k` (`[0]` = size).
    pub retained: Vec<u64>,
    /// `unbounded[k]`: persons with a return event in period `k` or later
    /// (`[0]` = size).
    pub unbounded: Vec<u64>,
    /// First period not yet over for the cohort's latest member, if any.
    pub incomplete_from: Option<u32>,
}

/// Sums over all cohorts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionTotal {
    /// Persons in all cohorts.
    pub size: u64,
    /// Sum of the cohorts' `retained`.
    pub retained: Vec<u64>,
    /// Sum of the cohorts' `unbounded`.
    pub unbounded: Vec<u64>,
    /// `complete_size[k]`: persons in the cohorts for which period `k` has
    /// fully elapsed (`k < incomplete_from`, or `incomplete_from` null).
    pub complete_size: Vec<u64>,
    /// `retained` summed over the same cohorts, per `k`.
    pub complete_retained: Vec<u64>,
    /// `unbounded` summed over the same cohorts, per `k`.
    pub complete_unbounded: Vec<u64>,
}

impl RetentionTotal {
    fn zero(n: usize) -> Self {
        RetentionTotal {
            size: 0,
            retained: vec![0; n],
            unbounded: vec![0; n],
            complete_size: vec![0; n],
            complete_retained: vec![0; n],
            complete_unbounded: vec![0; n],
        }
    }

    /// Adds one cohort's row.
    fn add(&mut self, c: &CohortRetention) {
        self.size += c.size;
        let complete_until = c.incomplete_from.map_or(usize::MAX, |k| k as usize);
        for k in 0..self.retained.len() {
            self.retained[k] += c.retained[k];
            self.unbounded[k] += c.unbounded[k];
            if k < complete_until {
                self.complete_size[k] += c.size;
                self.complete_retained[k] += c.retained[k];
                self.complete_unbounded[k] += c.unbounded[k];
            }
        }
    }
}

/// The answer of `tally retention`, exactly SPEC's JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionResult {
    /// `day` or `week`.
    pub period: Period,
    /// `--as-of`, RFC 3339 UTC.
    pub as_of: String,
    /// Non-empty cohorts, oldest first.
    pub cohorts: Vec<CohortRetention>,
    /// Sums over the cohorts.
    pub total: RetentionTotal,
}

/// Runs the retention analysis.
pub fn run(src: &dyn Source, p: &RetentionParams) -> Result<RetentionResult, QueryError> {
    run_segment(src, p, &Segment::default())
}

/// Runs the retention analysis over the events that pass `seg`'s filters
/// (a person's first start is their first *matching* start, and only
/// matching events are returns, SPEC §5), with persons as `seg` says.
pub fn run_segment(
    src: &dyn Source,
    p: &RetentionParams,
    seg: &Segment,
) -> Result<RetentionResult, QueryError> {
    Ok(compute(src, p, seg, None)?
        .into_iter()
        .next()
        .map_or_else(|| empty(p), |(_, r)| r))
}

/// Retention broken down by the value of `by` on each person's cohort
/// event, their first start (the smallest value when several starts tie
/// for first, SPEC §5). Ordered by `total.size`.
pub fn run_by(
    src: &dyn Source,
    p: &RetentionParams,
    seg: &Segment,
    by: &Breakdown,
) -> Result<Grouped<RetentionResult>, QueryError> {
    Ok(Grouped::new(by, compute(src, p, seg, Some(by))?))
}

fn empty(p: &RetentionParams) -> RetentionResult {
    RetentionResult {
        period: p.period,
        as_of: format_rfc3339(p.as_of),
        cohorts: Vec::new(),
        total: RetentionTotal::zero(p.periods as usize + 1),
    }
}

/// The result of every non-empty group (one group, `null`, without a
/// breakdown).
fn compute(
    src: &dyn Source,
    p: &RetentionParams,
    seg: &Segment,
    by: Option<&Breakdown>,
) -> Result<Vec<(GroupValue, RetentionResult)>, QueryError> {
    let Some(start) = src.name_id(&p.start) else {
        return Ok(Vec::new());
    };
    let same = matches!(&p.return_event, ReturnEvent::Event(r) if *r == p.start);
    // When the return event is the start event, one scan over all time
    // serves both passes instead of reading `[from, to)` twice.
    let names = [start];
    let to = if same { i64::MAX } else { p.to };
    let start_rows = src.scan(&match by {
        Some(by) => by.scan(seg, Some(&names), i64::MIN, to),
        None => seg.scan(Some(&names), i64::MIN, to),
    })?;
    let ids = by.map(|_| GroupIds::new(&start_rows));
    let (first, person_group) = match &ids {
        None => (
            first_starts(&start_rows, src.person_count(), p.to),
            Vec::new(),
        ),
        Some(ids) => {
            let f =
                crate::activation::first_starts(&start_rows, src.person_count(), p.to, Some(ids));
            (f.s0, f.group)
        }
    };
    let members = Members::new(&first, p);
    if members.len() == 0 {
        return Ok(Vec::new());
    }
    drop(first);

    // (A breakdown's values on them are simply not read as returns.)
    let return_rows = if same {
        start_rows
    } else {
        drop(start_rows);
        // Every return that counts lies at or after some s0 >= from.
        let scan = |names: Option<&[NameId]>| src.scan(&seg.scan(names, p.from, i64::MAX));
        match &p.return_event {
            ReturnEvent::Any => scan(None)?,
            ReturnEvent::Event(name) => match src.name_id(name) {
                Some(id) => scan(Some(&[id]))?,
                None => Vec::new(),
            },
        }
    };
    let hits = members.hits(&return_rows, p);
    drop(return_rows);

    let Some(ids) = ids else {
        let all: Vec<u32> = (0..members.len() as u32).collect();
        return Ok(vec![(GroupValue::Null, members.result(p, &hits, &all))]);
    };
    // Members in group order (a counting sort), then one result per group.
    let member_group: Vec<u32> = members
        .person
        .iter()
        .map(|&person| person_group[person as usize])
        .collect();
    let mut start_of = vec![0usize; ids.len() + 1];
    for &g in &member_group {
        start_of[g as usize + 1] += 1;
    }
    for g in 0..ids.len() {
        start_of[g + 1] += start_of[g];
    }
    let mut order = vec![0u32; member_group.len()];
    let mut next = start_of.clone();
    for (m, &g) in member_group.iter().enumerate() {
        order[next[g as usize]] = m as u32;
        next[g as usize] += 1;
    }
    Ok((0..ids.len())
        .filter(|&g| start_of[g] < start_of[g + 1])
        .map(|g| {
            let list = &order[start_of[g]..start_of[g + 1]];
            (ids.values[g].clone(), members.result(p, &hits, list))
        })
        .collect())
}

/// Per person the first start event before `to`; `i64::MAX` when none.
fn first_starts(rows: &[Rows], persons: usize, to: i64) -> Vec<i64> {
    fold_rows(
        rows,
        || vec![i64::MAX; persons],
        |first, r, range| {
            for i in range {
                let ts = r.ts[i];
                if ts >= to {
                    continue;
                }
                if let Some(f) = first.get_mut(r.person[i] as usize) {
                    *f = (*f).min(ts);
                }
            }
        },
        |mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                *x = (*x).min(y);
            }
            a
        },
    )
}

/// A person's place in the cohorts.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// First start; `i64::MAX` for persons outside every cohort, so that no
    /// event is ever at or after it.
    s0: i64,
    /// Member number (dense over the cohorts' persons).
    member: u32,
}

/// The cohorts' persons, renumbered densely.
struct Members {
    /// Per person. `s0` and the member number sit side by side so that the
    /// hot loop over return rows touches one cache line per row.
    by_person: Vec<Slot>,
    /// Per member: index into `cohort_days`.
    cohort: Vec<u32>,
    /// Per cohort, ascending: Unix day number of its first day.
    cohort_days: Vec<i64>,
    /// Per member: their person and first start.
    person: Vec<PersonId>,
    s0: Vec<i64>,
}

impl Members {
    fn new(first: &[i64], p: &RetentionParams) -> Self {
        let outside = Slot {
            s0: i64::MAX,
            member: u32::MAX,
        };
        let mut by_person = vec![outside; first.len()];
        let mut days = Vec::new();
        let (mut persons, mut s0) = (Vec::new(), Vec::new());
        for (person, &f) in first.iter().enumerate() {
            if (p.from..p.to).contains(&f) {
                by_person[person] = Slot {
                    s0: f,
                    member: days.len() as u32,
                };
                days.push(p.period.cohort_day(f, &p.tz));
                persons.push(person as PersonId);
                s0.push(f);
            }
        }
        let mut cohort_days = days.clone();
        cohort_days.sort_unstable();
        cohort_days.dedup();
        let cohort: Vec<u32> = days
            .iter()
            .map(|d| cohort_days.binary_search(d).unwrap_or_default() as u32)
            .collect();
        Members {
            by_person,
            cohort,
            cohort_days,
            person: persons,
            s0,
        }
    }

    fn len(&self) -> usize {
        self.cohort.len()
    }

    /// Which periods each member returned in.
    fn hits(&self, rows: &[Rows], p: &RetentionParams) -> Hits {
        // The period length as a constant turns the division in the hot
        // loop into a multiplication.
        match p.period {
            Period::Day => self.hits_with::<DAY_MS>(rows, p.periods),
            Period::Week => self.hits_with::<{ 7 * DAY_MS }>(rows, p.periods),
        }
    }

    fn hits_with<const LEN: i64>(&self, rows: &[Rows], periods: u32) -> Hits {
        let beyond = u64::from(periods) + 1;
        let words = Hits::words(periods);
        fold_rows(
            rows,
            || Hits::new(self.len(), words),
            |h, r, range| {
                for (&person, &ts) in r.person[range.clone()].iter().zip(&r.ts[range]) {
                    let Some(slot) = self.by_person.get(person as usize) else {
                        continue;
                    };
                    let elapsed = ts.saturating_sub(slot.s0);
                    // Before s0 (or not a member): not a return. Period 0:
                    // the whole cohort regardless.
                    if elapsed < LEN {
                        continue;
                    }
                    let k = ((elapsed / LEN) as u64).min(beyond) as usize;
                    h.bits[slot.member as usize * words + k / 64] |= 1 << (k % 64);
                }
            },
            Hits::merge,
        )
    }

    /// The answer over the members `list` (all of them, or one group's):
    /// only their non-empty cohorts, each judged complete by its latest
    /// member among them.
    fn result(&self, p: &RetentionParams, hits: &Hits, list: &[u32]) -> RetentionResult {
        let n = p.periods as usize + 1;
        let len = p.period.length_ms();
        // The cohorts `list` has members in, numbered densely in cohort
        // order, so a group costs its own cohorts, not every cohort.
        let mut local = vec![u32::MAX; self.cohort_days.len()];
        let mut used: Vec<usize> = Vec::new();
        for &m in list {
            let c = self.cohort[m as usize] as usize;
            if local[c] == u32::MAX {
                local[c] = 0;
                used.push(c);
            }
        }
        used.sort_unstable();
        for (i, &c) in used.iter().enumerate() {
            local[c] = i as u32;
        }
        let cohorts = used.len();
        let mut size = vec![0u64; cohorts];
        let mut latest_s0 = vec![i64::MIN; cohorts];
        let mut retained = vec![0u64; cohorts * n];
        // `reached[c * n + k]`: members whose latest return period is k
        // (capped at `periods`).
        let mut reached = vec![0u64; cohorts * n];
        let words = hits.words;
        for &m in list {
            let m = m as usize;
            let c = local[self.cohort[m] as usize] as usize;
            size[c] += 1;
            latest_s0[c] = latest_s0[c].max(self.s0[m]);
            let mut latest = 0;
            for (w, &word) in hits.bits[m * words..(m + 1) * words].iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let k = w * 64 + bits.trailing_zeros() as usize;
                    if k < n {
                        retained[c * n + k] += 1;
                    }
                    latest = k;
                    bits &= bits - 1;
                }
            }
            reached[c * n + latest.min(n - 1)] += 1;
        }
        let mut total = RetentionTotal::zero(n);
        let rows: Vec<CohortRetention> = (0..cohorts)
            .map(|c| {
                let mut ret = retained[c * n..(c + 1) * n].to_vec();
                ret[0] = size[c];
                let mut unbounded = vec![0u64; n];
                let mut acc = 0;
                for k in (1..n).rev() {
                    acc += reached[c * n + k];
                    unbounded[k] = acc;
                }
                unbounded[0] = size[c];
                // Period k is over once s0 + (k + 1) L <= as_of for the
                // latest member, i.e. for k < floor((as_of - s0) / L).
                let done = p.as_of.saturating_sub(latest_s0[c]).div_euclid(len).max(0);
                CohortRetention {
                    cohort: ms_to_date(self.cohort_days[used[c]] * DAY_MS).to_string(),
                    size: size[c],
                    retained: ret,
                    unbounded,
                    incomplete_from: (done <= i64::from(p.periods)).then_some(done as u32),
                }
            })
            .collect();
        for row in &rows {
            total.add(row);
        }
        RetentionResult {
            period: p.period,
            as_of: format_rfc3339(p.as_of),
            cohorts: rows,
            total,
        }
    }
}

/// Per member, `words` bits: bit `k` for a return in period `k`
/// (`1..=periods`), bit `periods + 1` for one in any later period. The
/// highest bit set is the latest period hit, which gives `unbounded`.
struct Hits {
    words: usize,
    bits: Vec<u64>,
}

impl Hits {
    fn words(periods: u32) -> usize {
        (periods as usize + 2).div_ceil(64)
    }

    fn new(members: usize, words: usize) -> Self {
        Hits {
            words,
            bits: vec![0; members * words],
        }
    }

    fn merge(mut self, other: Hits) -> Hits {
        for (a, b) in self.bits.iter_mut().zip(other.bits) {
            *a |= b;
        }
        self
    }
}

/// A retention cell: `42.5%`, marked with `…` when the period is not over yet
/// (a partial count, not churn), or just `…` when nobody is counted yet.
fn cell(count: u64, size: u64, incomplete: bool) -> String {
    let rate = if size == 0 {
        0.0
    } else {
        count as f64 / size as f64
    };
    match (incomplete, count) {
        (true, 0) => "…".into(),
        (true, _) => format!("{}…", percent(rate)),
        (false, _) => percent(rate),
    }
}

impl Report for RetentionResult {
    fn table(&self) -> String {
        let n = self.total.retained.len();
        let unit = match self.period {
            Period::Day => "D",
            Period::Week => "W",
        };
        let mut out = format!(
            "Retention by {} (rolling {}s from each person's first start), as of {}\n\n",
            self.period.as_str(),
            self.period.as_str(),
            self.as_of
        );
        if self.cohorts.is_empty() {
            out.push_str("No one started in the range.\n");
            return out;
        }
        let mut rows = vec![
            ["cohort".to_string(), "size".to_string()]
                .into_iter()
                .chain((0..n).map(|k| format!("{unit}{k}")))
                .collect::<Vec<_>>(),
        ];
        let mut any_incomplete = vec![false; n];
        for c in &self.cohorts {
            let from = c.incomplete_from.map_or(n, |k| k as usize);
            let mut row = vec![c.cohort.clone(), thousands(c.size)];
            for (k, (&count, any)) in c.retained.iter().zip(&mut any_incomplete).enumerate() {
                *any |= k >= from;
                row.push(cell(count, c.size, k >= from));
            }
            rows.push(row);
        }
        // The total rows count, for each period, only the cohorts for which
        // it is over (`complete_`), so young cohorts do not drag the curve
        // down; a period no cohort has finished yet shows `…`.
        let t = &self.total;
        let totals = |name: &str, counts: &[u64]| {
            let mut row = vec![name.to_string(), thousands(t.size)];
            for (&count, &size) in counts.iter().zip(&t.complete_size) {
                row.push(if size == 0 {
                    "…".into()
                } else {
                    cell(count, size, false)
                });
            }
            row
        };
        rows.push(totals("total", &t.complete_retained));
        rows.push(totals("total, k or later", &t.complete_unbounded));
        out.push_str(&align(&rows));
        if any_incomplete.iter().any(|&b| b) {
            let _ = writeln!(
                out,
                "\n… period not over yet for every member (counts so far, not churn)"
            );
            let _ = writeln!(
                out,
                "total: for each period, only the cohorts for which it is over"
            );
        }
        out
    }

    fn csv(&self) -> String {
        let n = self.total.retained.len();
        let mut out = String::from("cohort,size,incomplete_from");
        for k in 0..n {
            let _ = write!(out, ",retained_{k}");
        }
        for k in 0..n {
            let _ = write!(out, ",unbounded_{k}");
        }
        out.push('\n');
        for c in &self.cohorts {
            let _ = write!(
                out,
                "{},{},{}",
                csv_field(&c.cohort),
                c.size,
                c.incomplete_from.map(|k| k.to_string()).unwrap_or_default()
            );
            for v in c.retained.iter().chain(&c.unbounded) {
                let _ = write!(out, ",{v}");
            }
            out.push('\n');
        }
        // The sums over every cohort, as `total` in the JSON.
        if !self.cohorts.is_empty() {
            let _ = write!(out, "total,{},", self.total.size);
            for v in self.total.retained.iter().chain(&self.total.unbounded) {
                let _ = write!(out, ",{v}");
            }
            out.push('\n');
        }
        out
    }
}

impl GroupReport for RetentionResult {
    fn headline(&self) -> f64 {
        self.total.size as f64
    }

    /// One block per group: each group's own table under its value.
    fn grouped_table(g: &Grouped<Self>) -> String {
        let mut out = String::new();
        for (i, group) in g.groups.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = writeln!(
                out,
                "== {} = {} ==",
                g.by,
                crate::segment::group_label(&group.value)
            );
            out.push_str(&group.result.table());
        }
        out
    }
}
