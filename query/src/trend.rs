//! Trend (SPEC §4): events, distinct persons or net revenue of one event
//! name (or `any`) per hour, day, ISO week or month in `--tz`.
//!
//! Buckets are every interval overlapping `[from, to)`, empty ones
//! included, labelled by their start; only rows in `[from, to)` count.
//! Bucket boundaries are computed once (at most [`MAX_BUCKETS`]); a row
//! finds its bucket by a division when all buckets have one length (UTC,
//! or no DST change in range) and by a binary search otherwise.
//!
//! Shape (see the crate doc): one scan of the name over `[from, to)`;
//! `events` and `revenue` fold rows into per-thread per-bucket sums that
//! add up. `users` sets one bit per (bucket, person) in a per-thread bitmap
//! merged by `|` when buckets × persons is small (days over a year: the
//! common case); otherwise it groups each person's bucket numbers (a
//! counting sort on dense person ids) and counts each person once per
//! bucket with a stamp per bucket, in parallel over blocks of persons:
//! blocks hold disjoint persons, so their per-bucket counts add up. Either
//! way `total` is the number of persons with any row (not the sum of the
//! buckets).
//!
//! With `--by` each event counts in the group of its own value: the one
//! scan's rows are split by group and each part is measured as above, so
//! `users` are distinct within a group.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tally_event::time::format_rfc3339;

use crate::calendar::{Interval, Zone};
use crate::error::QueryError;
use crate::group::{fold_rows, group_by_person};
use crate::params::RawParams;
use crate::render::{BAR_WIDTH, Report, align, bar, csv_field, money, thousands};
use crate::segment::{Breakdown, GroupIds, GroupReport, Grouped, Segment};
use crate::source::{Rows, Source};
use crate::stats::Sum;

/// Most buckets one answer may have; more is a bad parameter.
pub const MAX_BUCKETS: usize = 10_000;

/// What is counted per bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Measure {
    /// Number of events.
    #[default]
    Events,
    /// Distinct persons.
    Users,
    /// Net sum of `revenue` (refunds are negative amounts).
    Revenue,
}

impl Measure {
    /// `events`, `users` or `revenue`.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Events => "events",
            Measure::Users => "users",
            Measure::Revenue => "revenue",
        }
    }
}

impl std::str::FromStr for Measure {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "events" => Ok(Measure::Events),
            "users" => Ok(Measure::Users),
            "revenue" => Ok(Measure::Revenue),
            _ => Err(format!(
                "unknown measure '{s}' (expected events, users or revenue)"
            )),
        }
    }
}

/// Parameters of `tally trend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendParams {
    /// The event name, or `any` for every event.
    pub event: String,
    /// What is counted.
    pub measure: Measure,
    /// Bucket length.
    pub interval: Interval,
    /// Range start (inclusive), Unix ms.
    pub from: i64,
    /// Range end (exclusive), Unix ms.
    pub to: i64,
    /// The zone of the buckets (`--tz`).
    #[serde(default)]
    pub tz: Zone,
}

impl TrendParams {
    /// Reads `event` (required; `any` for every event), `measure` (default
    /// `events`), `interval` (default `day`), the range and `tz`.
    pub fn from_raw(raw: &mut RawParams, now_ms: i64) -> Result<Self, QueryError> {
        let event = raw.required("event")?.trim().to_string();
        if event.is_empty() {
            return Err(QueryError::bad(
                "event",
                "must not be empty (expected an event name or any)",
            ));
        }
        let measure = match raw.str("measure")? {
            None => Measure::default(),
            Some(s) => s
                .trim()
                .parse()
                .map_err(|m| QueryError::bad("measure", m))?,
        };
        let interval = match raw.str("interval")? {
            None => Interval::default(),
            Some(s) => s
                .trim()
                .parse()
                .map_err(|m| QueryError::bad("interval", m))?,
        };
        let (from, to) = raw.range(now_ms)?;
        let tz = raw.zone()?;
        let p = TrendParams {
            event,
            measure,
            interval,
            from,
            to,
            tz,
        };
        p.bounds()?;
        Ok(p)
    }

    /// True for `--event any`.
    pub fn is_any(&self) -> bool {
        self.event == "any"
    }

    /// The buckets' starts, then the end of the last.
    fn bounds(&self) -> Result<Vec<i64>, QueryError> {
        if self.from >= self.to {
            return Ok(Vec::new());
        }
        self.tz
            .buckets(self.interval, self.from, self.to, MAX_BUCKETS)
            .ok_or_else(|| {
                QueryError::bad(
                    "interval",
                    format!(
                        "the range has more than {} {} buckets; narrow --from/--to or \
                         take a longer --interval",
                        thousands(MAX_BUCKETS as u64),
                        self.interval.as_str()
                    ),
                )
            })
    }
}

/// A value: a count (events, users) or an amount of money (revenue).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// Events or users.
    Count(u64),
    /// Net revenue.
    Amount(f64),
}

impl Value {
    /// As a number, for bars.
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Count(n) => n as f64,
            Value::Amount(x) => x,
        }
    }

    fn table(self) -> String {
        match self {
            Value::Count(n) => thousands(n),
            Value::Amount(x) => money(Some(x)),
        }
    }

    fn csv(self) -> String {
        match self {
            Value::Count(n) => n.to_string(),
            Value::Amount(x) => x.to_string(),
        }
    }
}

/// One bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendPoint {
    /// The bucket's start: a local date `YYYY-MM-DD`, or for hours the
    /// local time with its offset, `2026-03-29T01:00+01:00`.
    pub bucket: String,
    /// The measure over the bucket's part of `[from, to)`.
    pub value: Value,
}

/// The answer of `tally trend`, exactly SPEC's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendResult {
    /// The event name or `any`.
    pub event: String,
    /// What was counted.
    pub measure: Measure,
    /// The bucket length.
    pub interval: Interval,
    /// Range start, RFC 3339 UTC.
    pub from: String,
    /// Range end (exclusive), RFC 3339 UTC.
    pub to: String,
    /// Every bucket overlapping the range, oldest first.
    pub series: Vec<TrendPoint>,
    /// The measure over the whole range (for users: distinct persons).
    pub total: Value,
}

/// Runs the trend analysis.
pub fn run(src: &dyn Source, p: &TrendParams) -> Result<TrendResult, QueryError> {
    run_segment(src, p, &Segment::default())
}

/// Runs the trend analysis over the events that pass `seg`'s filters, with
/// persons as `seg` says.
pub fn run_segment(
    src: &dyn Source,
    p: &TrendParams,
    seg: &Segment,
) -> Result<TrendResult, QueryError> {
    let bounds = p.bounds()?;
    let rows = scan(src, p, &bounds, seg, None)?;
    Ok(measure(&rows, src.person_count(), p, &bounds))
}

/// The trend broken down by each event's own value of `by` (SPEC §5):
/// `users` are distinct within a group. Ordered by `total`.
pub fn run_by(
    src: &dyn Source,
    p: &TrendParams,
    seg: &Segment,
    by: &Breakdown,
) -> Result<Grouped<TrendResult>, QueryError> {
    let bounds = p.bounds()?;
    let rows = scan(src, p, &bounds, seg, Some(by))?;
    let ids = GroupIds::new(&rows);
    // One scan, split by value; each group is measured as if its events
    // were all there was.
    let groups = ids
        .split(rows)
        .into_iter()
        .map(|part| (part.value, measure(&part.rows, part.persons, p, &bounds)))
        .collect();
    Ok(Grouped::new(by, groups))
}

/// The rows of the event (or every event), none when nothing can count.
fn scan(
    src: &dyn Source,
    p: &TrendParams,
    bounds: &[i64],
    seg: &Segment,
    by: Option<&Breakdown>,
) -> Result<Vec<Rows>, QueryError> {
    let buckets = bounds.len().saturating_sub(1);
    let id;
    let names = if p.is_any() {
        None
    } else {
        match src.name_id(&p.event) {
            Some(n) => {
                id = [n];
                Some(&id[..])
            }
            // Never stored: every bucket is empty.
            None => return Ok(Vec::new()),
        }
    };
    if buckets == 0 {
        return Ok(Vec::new());
    }
    src.scan(&match by {
        Some(by) => by.scan(seg, names, p.from, p.to),
        None => seg.scan(names, p.from, p.to),
    })
}

/// The measure per bucket of `bounds` and over the range.
fn measure(rows: &[Rows], persons: usize, p: &TrendParams, bounds: &[i64]) -> TrendResult {
    let buckets = bounds.len().saturating_sub(1);
    let find = Buckets::new(bounds);
    let (values, total): (Vec<Value>, Value) = match p.measure {
        Measure::Events => {
            let counts = fold_rows(
                rows,
                || vec![0u64; buckets],
                |counts, r, range| {
                    for i in range {
                        if let Some(b) = find.of(r.ts[i], p) {
                            counts[b] += 1;
                        }
                    }
                },
                add_counts,
            );
            let total = counts.iter().sum();
            (
                counts.into_iter().map(Value::Count).collect(),
                Value::Count(total),
            )
        }
        Measure::Revenue => {
            let sums = fold_rows(
                rows,
                || vec![Sum::default(); buckets],
                |sums, r, range| {
                    for i in range {
                        let amount = r.revenue[i];
                        // NaN: the event carries no revenue.
                        if amount.is_nan() {
                            continue;
                        }
                        if let Some(b) = find.of(r.ts[i], p) {
                            sums[b].add(amount);
                        }
                    }
                },
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        x.merge(y);
                    }
                    a
                },
            );
            let mut total = Sum::default();
            for s in &sums {
                total.merge(*s);
            }
            // `+ 0.0` turns a -0.0 into 0.0.
            (
                sums.into_iter()
                    .map(|s| Value::Amount(s.value() + 0.0))
                    .collect(),
                Value::Amount(total.value() + 0.0),
            )
        }
        Measure::Users => {
            let (counts, total) = distinct_users(persons, rows, &find, p, buckets);
            (
                counts.into_iter().map(Value::Count).collect(),
                Value::Count(total),
            )
        }
    };
    let series = bounds
        .iter()
        .zip(values)
        .map(|(&start, value)| TrendPoint {
            bucket: p.tz.bucket_label(p.interval, start),
            value,
        })
        .collect();
    TrendResult {
        event: p.event.clone(),
        measure: p.measure,
        interval: p.interval,
        from: format_rfc3339(p.from),
        to: format_rfc3339(p.to),
        series,
        total,
    }
}

fn add_counts(mut a: Vec<u64>, b: Vec<u64>) -> Vec<u64> {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
    a
}

/// Largest per-thread bitmap (in 64-bit words) for [`distinct_users`]'s
/// fast path: 32 MiB, e.g. 500,000 persons × 536 buckets.
const MAX_BITMAP_WORDS: usize = 1 << 22;

/// Distinct persons per bucket and over the whole range.
fn distinct_users(
    persons: usize,
    rows: &[Rows],
    find: &Buckets<'_>,
    p: &TrendParams,
    buckets: usize,
) -> (Vec<u64>, u64) {
    // Person ids beyond `person_count` are not expected; the grouping
    // below copes with them, the bitmaps would not.
    let max_person = rows
        .iter()
        .flat_map(|r| r.person.iter().max())
        .max()
        .map_or(0, |&m| m as usize + 1);
    let words = persons.max(max_person).div_ceil(64);
    if words.saturating_mul(buckets + 1) <= MAX_BITMAP_WORDS {
        users_by_bitmap(words, rows, find, p, buckets)
    } else {
        users_by_person(persons, rows, find, p, buckets)
    }
}

/// One bit per (bucket, person) plus one per person for the total, per
/// thread, merged by `|`: one random bit write per row, no sort.
fn users_by_bitmap(
    words: usize,
    rows: &[Rows],
    find: &Buckets<'_>,
    p: &TrendParams,
    buckets: usize,
) -> (Vec<u64>, u64) {
    // Bucket `b`'s persons are words `b * words ..`; the total's come last.
    let bits = fold_rows(
        rows,
        || vec![0u64; words * (buckets + 1)],
        |bits, r, range| {
            for i in range {
                if let Some(b) = find.of(r.ts[i], p) {
                    let person = r.person[i] as usize;
                    let bit = 1u64 << (person % 64);
                    bits[b * words + person / 64] |= bit;
                    bits[buckets * words + person / 64] |= bit;
                }
            }
        },
        |mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                *x |= y;
            }
            a
        },
    );
    let mut counts: Vec<u64> = bits
        .chunks(words.max(1))
        .map(|c| c.iter().map(|w| u64::from(w.count_ones())).sum())
        .collect();
    counts.resize(buckets + 1, 0);
    let total = counts.pop().unwrap_or(0);
    (counts, total)
}

/// Each person's bucket numbers grouped (a counting sort on person ids),
/// then counted once per bucket: memory grows with rows, not buckets ×
/// persons (hourly buckets over a long range).
fn users_by_person(
    persons: usize,
    rows: &[Rows],
    find: &Buckets<'_>,
    p: &TrendParams,
    buckets: usize,
) -> (Vec<u64>, u64) {
    let mut by_person = group_by_person(persons, rows, |_, _, ts| find.of(ts, p).map(|b| b as u32));
    /// Per-task state: counts per bucket, the number of persons seen, and
    /// per bucket the last person counted in it (plus one; 0 = nobody).
    struct Part {
        counts: Vec<u64>,
        users: u64,
        stamp: Vec<u32>,
    }
    let new = || Part {
        counts: vec![0; buckets],
        users: 0,
        stamp: vec![0; buckets],
    };
    let part = by_person
        .blocks()
        .into_par_iter()
        .fold(new, |mut part, mut block| {
            block.for_each(|person, items| {
                if items.is_empty() {
                    return;
                }
                part.users += 1;
                let mark = person + 1;
                for &b in items.iter() {
                    let b = b as usize;
                    if part.stamp[b] != mark {
                        part.stamp[b] = mark;
                        part.counts[b] += 1;
                    }
                }
            });
            part
        })
        .reduce(new, |a, b| Part {
            counts: add_counts(a.counts, b.counts),
            users: a.users + b.users,
            stamp: a.stamp,
        });
    (part.counts, part.users)
}

/// Finds the bucket of a timestamp.
struct Buckets<'a> {
    bounds: &'a [i64],
    /// The common length of every bucket, if they all have one.
    uniform: Option<i64>,
    /// Otherwise, when small enough: slots of `slot` ms from the first
    /// bound, each with the bucket its start is in. No bucket is shorter
    /// than a slot, so a slot meets at most two buckets: one comparison
    /// finds which (DST days of 23 and 25 hours, months).
    slot: i64,
    first_in_slot: Vec<u32>,
}

impl<'a> Buckets<'a> {
    fn new(bounds: &'a [i64]) -> Self {
        let lengths = || bounds.windows(2).map(|w| w[1] - w[0]);
        let shortest = lengths().min().unwrap_or(0);
        let uniform = (shortest > 0 && lengths().all(|l| l == shortest)).then_some(shortest);
        let mut first_in_slot = Vec::new();
        if uniform.is_none() && shortest > 0 {
            let span = bounds[bounds.len() - 1] - bounds[0];
            let slots = span / shortest + 1;
            // Odd tzdb history (an offset change of a few minutes) can make
            // one bucket very short: then binary search instead.
            if slots <= 4 * bounds.len() as i64 + 1024 {
                let mut b = 0usize;
                first_in_slot = (0..slots)
                    .map(|k| {
                        let at = bounds[0] + k * shortest;
                        while b + 1 < bounds.len() - 1 && bounds[b + 1] <= at {
                            b += 1;
                        }
                        b as u32
                    })
                    .collect();
            }
        }
        Buckets {
            bounds,
            uniform,
            slot: shortest,
            first_in_slot,
        }
    }

    /// The bucket of `ts`, if `ts` is in `[from, to)`.
    fn of(&self, ts: i64, p: &TrendParams) -> Option<usize> {
        if ts < p.from || ts >= p.to {
            return None;
        }
        let first = *self.bounds.first()?;
        if let Some(len) = self.uniform {
            return Some(((ts - first) / len) as usize);
        }
        if let Some(&b) = self.first_in_slot.get(((ts - first) / self.slot) as usize) {
            let b = b as usize;
            return Some(if self.bounds[b + 1] <= ts { b + 1 } else { b });
        }
        Some(self.bounds.partition_point(|&b| b <= ts) - 1)
    }
}

impl Report for TrendResult {
    fn table(&self) -> String {
        let what = match self.measure {
            Measure::Events => "events",
            Measure::Users => "users",
            Measure::Revenue => "revenue (net)",
        };
        let mut rows = vec![vec![
            self.interval.as_str().to_string(),
            what.to_string(),
            String::new(),
        ]];
        // Bars relative to the largest bucket (negative revenue: no bar).
        let peak = self
            .series
            .iter()
            .map(|s| s.value.as_f64())
            .fold(0.0, f64::max);
        for s in &self.series {
            let v = s.value.as_f64();
            rows.push(vec![
                s.bucket.clone(),
                s.value.table(),
                bar(
                    if peak > 0.0 { (v / peak).max(0.0) } else { 0.0 },
                    BAR_WIDTH,
                ),
            ]);
        }
        rows.push(vec!["total".into(), self.total.table(), String::new()]);
        let mut out = align(&rows);
        if self.measure == Measure::Users {
            out.push_str("\ntotal: distinct users over the whole range (not the sum)\n");
        }
        out
    }

    /// `bucket,value`, one row per bucket, then a `total` row (for users
    /// not the sum of the rows), as activation ends with its totals.
    fn csv(&self) -> String {
        let mut out = String::from("bucket,value\n");
        for s in &self.series {
            out.push_str(&csv_field(&s.bucket));
            out.push(',');
            out.push_str(&s.value.csv());
            out.push('\n');
        }
        out.push_str("total,");
        out.push_str(&self.total.csv());
        out.push('\n');
        out
    }
}

impl GroupReport for TrendResult {
    fn headline(&self) -> f64 {
        self.total.as_f64()
    }

    /// One column per group, one row per bucket, then the totals.
    fn grouped_table(g: &Grouped<Self>) -> String {
        let Some(first) = g.groups.first() else {
            return String::new();
        };
        let what = match first.result.measure {
            Measure::Events => "events",
            Measure::Users => "users",
            Measure::Revenue => "revenue (net)",
        };
        let mut out = format!("{what} by {}\n\n", g.by);
        let mut rows = vec![
            std::iter::once(first.result.interval.as_str().to_string())
                .chain(
                    g.groups
                        .iter()
                        .map(|x| crate::segment::group_label(&x.value)),
                )
                .collect::<Vec<_>>(),
        ];
        for (b, point) in first.result.series.iter().enumerate() {
            rows.push(
                std::iter::once(point.bucket.clone())
                    .chain(g.groups.iter().map(|x| x.result.series[b].value.table()))
                    .collect(),
            );
        }
        rows.push(
            std::iter::once("total".to_string())
                .chain(g.groups.iter().map(|x| x.result.total.table()))
                .collect(),
        );
        out.push_str(&align(&rows));
        if first.result.measure == Measure::Users {
            out.push_str("\ntotal: distinct users over the whole range (not the sum)\n");
        }
        out
    }
}
