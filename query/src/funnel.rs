//! Funnel (SPEC §4): how many persons go through steps `A → B → C …` within
//! a window after entering with `A` in `[from, to)`, and how long each step
//! takes.
//!
//! Shape of the computation (see the crate doc):
//! 1. scan the step names over `[from, to + window)` — an entry is at or
//!    after `from`, and a later step of an entry before `to` is at most
//!    `to - 1 ms + window`, so nothing outside that range can matter;
//! 2. group the rows by person with a counting sort on the dense
//!    [`PersonId`](crate::PersonId) into one flat array of `(slot, ts)` (no per-event maps);
//! 3. per person: sort that small slice by `(slot, ts)` and walk it once to
//!    get the person's *level* and *chain* (`walk`, which documents the
//!    matching);
//! 4. fold persons into a `Tally` (users per step and the step durations
//!    of every chain), one per rayon task over blocks of persons, merged by
//!    adding counts and concatenating durations;
//! 5. the result: conversion rates and medians.
//!
//! A *slot* is a distinct step name: `view,view,buy` has slots `view` (0)
//! and `buy` (1). Slots are numbered in order of first appearance, so the
//! entry step is always slot 0.
//!
//! With `--by`, the scan also gives each entry its group (the value on the
//! step-1 event) and step 3 walks a person once per group they entered in,
//! taking only that group's entries and any events for later steps; step 4
//! keeps one `Tally` per group.

use std::collections::HashMap;
use std::fmt::Write as _;

use rayon::prelude::*;
use serde::{Deserialize, Serialize, Serializer};
use tally_event::time::{DAY_MS, format_rfc3339};

use crate::error::QueryError;
use crate::filter::GroupValue;
use crate::group::group_by_person_at;
use crate::params::{RawParams, check_window};
use crate::render::{BAR_WIDTH, Report, align, bar, csv_field, human_duration, percent, thousands};
use crate::segment::{Breakdown, GroupIds, GroupReport, Grouped, Segment};
use crate::source::{NameId, Source};
use crate::stats::{median_seconds, ratio};

/// Fewest `--steps`.
pub const MIN_STEPS: usize = 2;
/// Most `--steps`.
pub const MAX_STEPS: usize = 20;
/// `--window` when not given: 14 days.
pub const DEFAULT_WINDOW_MS: i64 = 14 * DAY_MS;

/// What to compute: `tally funnel --steps A,B,C --window 7d --from F --to T`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunnelParams {
    /// Event names, in funnel order (2 to 20, names may repeat).
    pub steps: Vec<String>,
    /// The last step must be at most this long after the first (inclusive).
    pub window_ms: i64,
    /// Entries from (inclusive), Unix milliseconds.
    pub from: i64,
    /// Entries until (exclusive), Unix milliseconds.
    pub to: i64,
}

impl FunnelParams {
    /// Reads `steps` (required), `window` (default 14d) and `from` / `to`.
    /// Leaves [`RawParams::finish`] to the caller.
    pub fn from_raw(raw: &mut RawParams, now_ms: i64) -> Result<Self, QueryError> {
        let steps = parse_steps(&raw.required("steps")?)?;
        let window_ms = raw.duration("window")?.unwrap_or(DEFAULT_WINDOW_MS);
        check_window("window", window_ms)?;
        let (from, to) = raw.range(now_ms)?;
        Ok(FunnelParams {
            steps,
            window_ms,
            from,
            to,
        })
    }

    /// What [`run`] needs to be well defined (the remaining bounds are the
    /// user-facing contract, checked by [`Self::from_raw`]).
    fn validate(&self) -> Result<(), QueryError> {
        check_step_count(self.steps.len())
    }
}

const STEPS_EXPECTED: &str = "expected 2 to 20 comma-separated event names, e.g. signup,purchase";

/// `signup, activate ,purchase` → three names. Spaces around a name are
/// trimmed (the way people type lists); an empty name is an error.
fn parse_steps(value: &str) -> Result<Vec<String>, QueryError> {
    let steps: Vec<String> = value.split(',').map(|s| s.trim().to_string()).collect();
    if steps.iter().any(String::is_empty) {
        return Err(QueryError::bad(
            "steps",
            format!("'{value}' contains an empty step name ({STEPS_EXPECTED})"),
        ));
    }
    check_step_count(steps.len())?;
    Ok(steps)
}

fn check_step_count(n: usize) -> Result<(), QueryError> {
    if (MIN_STEPS..=MAX_STEPS).contains(&n) {
        Ok(())
    } else {
        let s = if n == 1 { "" } else { "s" };
        Err(QueryError::bad(
            "steps",
            format!("{n} step{s} given ({STEPS_EXPECTED})"),
        ))
    }
}

/// The answer, serializing exactly to the SPEC JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelResult {
    /// The window in seconds (a whole number is written without `.0`).
    #[serde(serialize_with = "whole_as_integer")]
    pub window_seconds: f64,
    /// `--from`, RFC 3339 UTC.
    pub from: String,
    /// `--to`, RFC 3339 UTC.
    pub to: String,
    /// One entry per step, in order.
    pub steps: Vec<FunnelStep>,
}

/// One step of a [`FunnelResult`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelStep {
    /// The step's event name.
    pub event: String,
    /// Persons whose level is at least this step.
    pub users: u64,
    /// `users` / previous step's `users` (step 1: 1, or 0 if nobody entered).
    pub conversion_from_previous: f64,
    /// `users` / step 1's `users` (step 1: 1, or 0 if nobody entered).
    pub conversion_from_first: f64,
    /// Median time from the previous step in the persons' chains, seconds;
    /// `null` for step 1 and for steps nobody reached.
    pub median_seconds_from_previous: Option<f64>,
}

/// Writes `604800.0` as `604800`: the window is a whole number of seconds
/// whenever it came from a duration flag, and reads best that way.
fn whole_as_integer<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// Computes the funnel.
pub fn run(src: &dyn Source, p: &FunnelParams) -> Result<FunnelResult, QueryError> {
    run_segment(src, p, &Segment::default())
}

/// Computes the funnel over the events that pass `seg`'s filters, with
/// persons as `seg` says.
pub fn run_segment(
    src: &dyn Source,
    p: &FunnelParams,
    seg: &Segment,
) -> Result<FunnelResult, QueryError> {
    let (tallies, _) = compute(src, p, seg, None)?;
    let tally = tallies
        .into_iter()
        .next()
        .map_or_else(|| Tally::new(p.steps.len()), |(_, t)| t);
    Ok(tally.finish(p))
}

/// The funnel broken down by the value of `by` on each entry's step-1
/// event (SPEC §5): a person's level in a group counts only their entries
/// with that value, and later steps may be any events. Ordered by step-1
/// users.
pub fn run_by(
    src: &dyn Source,
    p: &FunnelParams,
    seg: &Segment,
    by: &Breakdown,
) -> Result<Grouped<FunnelResult>, QueryError> {
    let (tallies, values) = compute(src, p, seg, Some(by))?;
    let groups = tallies
        .into_iter()
        .map(|(g, t)| (values[g as usize].clone(), t.finish(p)))
        .collect();
    Ok(Grouped::new(by, groups))
}

/// The tallies per group id (one group, id 0, without a breakdown; none
/// when nobody entered), and the group ids' values.
fn compute(
    src: &dyn Source,
    p: &FunnelParams,
    seg: &Segment,
    by: Option<&Breakdown>,
) -> Result<(HashMap<u32, Tally>, Vec<GroupValue>), QueryError> {
    p.validate()?;

    // Distinct step names become slots; unknown names keep their slot (so
    // step indexes stay right) but have no rows.
    let mut slot_names: Vec<&str> = Vec::new();
    let mut step_slot: Vec<u8> = Vec::with_capacity(p.steps.len());
    for step in &p.steps {
        let slot = match slot_names.iter().position(|n| n == step) {
            Some(s) => s,
            None => {
                slot_names.push(step);
                slot_names.len() - 1
            }
        };
        step_slot.push(slot as u8);
    }
    let slot_ids: Vec<Option<NameId>> = slot_names.iter().map(|n| src.name_id(n)).collect();
    let scan_ids: Vec<NameId> = slot_ids.iter().flatten().copied().collect();

    // (A negative window, possible only without `from_raw`, joins nothing
    // but must not cut entries off.)
    let scan_to = p.to.saturating_add(p.window_ms.max(0));
    // Nobody can enter when the entry name was never seen or the range is empty.
    let rows = if slot_ids[0].is_none() || p.from >= p.to {
        Vec::new()
    } else {
        src.scan(&match by {
            Some(by) => by.scan(seg, Some(&scan_ids), p.from, scan_to),
            None => seg.scan(Some(&scan_ids), p.from, scan_to),
        })?
    };
    let ids = by.map(|_| GroupIds::new(&rows));

    // Step 2: counting sort by person. The filter on `ts` only guards
    // against a store that hands back more than asked.
    let row_slot: Vec<Option<u8>> = rows
        .iter()
        .map(|r| {
            slot_ids
                .iter()
                .position(|&id| id == Some(r.name))
                .map(|s| s as u8)
        })
        .collect();
    let mut grouped = group_by_person_at(src.person_count(), &rows, |k, i, _, ts| {
        let slot = row_slot[k]?;
        // Only entries' values matter; other rows are left in group 0.
        let group = match (&ids, slot) {
            (Some(ids), 0) => ids.of(k, &rows[k], i),
            _ => 0,
        };
        (p.from..scan_to)
            .contains(&ts)
            .then_some(Ev { slot, ts, group })
    });
    drop(rows);

    // Steps 3 and 4, in parallel over blocks of persons.
    let plan = Plan {
        step_slot,
        slots: slot_names.len(),
        from: p.from,
        to: p.to,
        window_ms: p.window_ms,
    };
    let n = p.steps.len();
    let breakdown = ids.is_some();
    let tallies = grouped
        .blocks()
        .into_par_iter()
        .map(|mut block| {
            let mut tallies: HashMap<u32, Tally> = HashMap::new();
            let mut chain = [0i64; MAX_STEPS];
            let mut entry_groups: Vec<u32> = Vec::new();
            block.for_each(|_, evs| {
                let is_entry = |e: &Ev| e.slot == 0 && (p.from..p.to).contains(&e.ts);
                // Persons who never entered cost one pass, not a sort.
                if !evs.iter().any(is_entry) {
                    return;
                }
                evs.sort_unstable();
                if !breakdown {
                    let level = walk(&plan, evs, None, &mut chain);
                    tallies
                        .entry(0)
                        .or_insert_with(|| Tally::new(n))
                        .add(level, &chain);
                    return;
                }
                entry_groups.clear();
                entry_groups.extend(evs.iter().filter(|e| is_entry(e)).map(|e| e.group));
                entry_groups.sort_unstable();
                entry_groups.dedup();
                for &g in &entry_groups {
                    let level = walk(&plan, evs, Some(g), &mut chain);
                    tallies
                        .entry(g)
                        .or_insert_with(|| Tally::new(n))
                        .add(level, &chain);
                }
            });
            tallies
        })
        .reduce(HashMap::new, |mut a, b| {
            for (g, t) in b {
                let merged = match a.remove(&g) {
                    Some(t0) => t0.merge(t),
                    None => t,
                };
                a.insert(g, merged);
            }
            a
        });
    Ok((tallies, ids.map(|ids| ids.values).unwrap_or_default()))
}

/// One scanned event: which slot (step name) and when. Ordered by slot,
/// then time, which is how [`walk`] wants a person's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Ev {
    slot: u8,
    ts: i64,
    /// With a breakdown, the group of an entry (slot 0); 0 otherwise.
    group: u32,
}

/// The parameters as [`walk`] needs them.
struct Plan {
    /// The slot of each step.
    step_slot: Vec<u8>,
    /// Number of distinct step names.
    slots: usize,
    from: i64,
    to: i64,
    window_ms: i64,
}

/// One person's level (0 when they never entered) and chain: `chain[k]` is
/// the time of step `k` for `k < level`.
///
/// `evs` must be sorted by `(slot, ts)`.
///
/// # Matching
///
/// From an entry at `t1`, the greedy match takes for each step `j` in turn
/// the earliest event of step `j`'s name that is at or after step `j - 1`'s
/// time and not already used by this chain; it stops at the first step
/// whose pick is missing or later than `t1 + window`. Greedy is optimal: an
/// exchange argument turns any valid chain into one whose picks are no
/// earlier than the greedy ones, so the greedy chain reaches the highest
/// level of that entry, and its picks are the "earliest qualifying events"
/// of SPEC §4.
///
/// Within one slot the picks of a chain are in increasing position order,
/// so "not already used" is simply "after this chain's last pick of that
/// slot" (`next_free`). Which of several events with equal `(slot, ts)` is
/// taken does not matter, so an entry is represented by the first event of
/// its timestamp, which makes earlier same-time events of slot 0 available
/// to later steps (`view@0, view@0, buy@0` reaches level 3).
///
/// # Cost
///
/// Entries at the same timestamp have identical chains, so each timestamp
/// is walked once. And the greedy pick of every step is monotone in the
/// entry: by induction over `j`, a later entry's pick for step `j` is at
/// the same or a later position (its lower bounds, the previous pick's time
/// and the slot's `next_free`, are both no smaller). So `pick[j]`, kept
/// across entries, is where the search for step `j` resumes, and each
/// slot's events are stepped over at most once per step: the walk is
/// O((events + entries) × steps) for a person, with no quadratic blow-up
/// for persons with thousands of entries.
///
/// # Chain
///
/// Among the entries reaching the person's level, the chain is the one
/// completing earliest; entries are walked oldest first and a tie replaces
/// the previous best, so the latest of the earliest-completing entries
/// wins (SPEC: "browse, browse, buy" measures from the last browse).
///
/// # Breakdown
///
/// With `only`, the entries are those whose event is in that group (SPEC
/// §5: a person's level in a group counts only their entries with that
/// value); later steps are matched among all events as before.
fn walk(plan: &Plan, evs: &[Ev], only: Option<u32>, chain: &mut [i64; MAX_STEPS]) -> usize {
    // Each slot's events are a time-sorted run `evs[bounds[s]..bounds[s + 1]]`.
    let mut bounds = [0usize; MAX_STEPS + 1];
    for (s, b) in bounds.iter_mut().enumerate().take(plan.slots + 1) {
        *b = evs.partition_point(|e| usize::from(e.slot) < s);
    }
    let run = |s: usize| &evs[bounds[s]..bounds[s + 1]];

    let entries = run(0);
    let mut e = entries.partition_point(|x| x.ts < plan.from);
    let end = entries.partition_point(|x| x.ts < plan.to);

    let steps = plan.step_slot.len();
    // Position (within its slot's run) of each step's greedy pick for the
    // previous entry: a lower bound for the current entry's pick.
    let mut pick = [0usize; MAX_STEPS];
    let mut cur = [0i64; MAX_STEPS];
    let mut best_level = 0;
    let mut best_done = i64::MAX;
    while e < end {
        let t1 = entries[e].ts;
        let same_time = e + entries[e..end].partition_point(|x| x.ts == t1);
        // With a breakdown, only the group's entries count; the entry is
        // still represented by the first event of its timestamp, since
        // every same-time event of its name stays free for later steps
        // whatever their values.
        if only.is_some_and(|g| !entries[e..same_time].iter().any(|x| x.group == g)) {
            e = same_time;
            continue;
        }
        let deadline = t1.saturating_add(plan.window_ms);
        // First unused position per slot for this chain; the entry uses `e`.
        let mut next_free = [0usize; MAX_STEPS];
        next_free[0] = e + 1;
        cur[0] = t1;
        let mut level = 1;
        for j in 1..steps {
            let s = usize::from(plan.step_slot[j]);
            let events = run(s);
            let mut i = pick[j].max(next_free[s]);
            while i < events.len() && events[i].ts < cur[j - 1] {
                i += 1;
            }
            pick[j] = i;
            if i == events.len() || events[i].ts > deadline {
                break;
            }
            next_free[s] = i + 1;
            cur[j] = events[i].ts;
            level += 1;
        }
        let done = cur[level - 1];
        if level > best_level || (level == best_level && done <= best_done) {
            best_level = level;
            best_done = done;
            chain[..level].copy_from_slice(&cur[..level]);
        }
        // The next entry timestamp (same-time entries have the same chain).
        e = same_time;
    }
    best_level
}

/// The mergeable intermediate: per step, how many persons reached it and
/// the step durations (ms) of their chains.
struct Tally {
    users: Vec<u64>,
    /// `gaps[k]` = `t_k - t_(k-1)` of every chain reaching step `k`
    /// (`gaps[0]` stays empty).
    gaps: Vec<Vec<i64>>,
}

impl Tally {
    fn new(steps: usize) -> Self {
        Tally {
            users: vec![0; steps],
            gaps: vec![Vec::new(); steps],
        }
    }

    fn add(&mut self, level: usize, chain: &[i64]) {
        for k in 0..level {
            self.users[k] += 1;
            if k > 0 {
                self.gaps[k].push(chain[k] - chain[k - 1]);
            }
        }
    }

    fn merge(mut self, mut other: Tally) -> Tally {
        if self.gaps.iter().map(Vec::len).sum::<usize>()
            < other.gaps.iter().map(Vec::len).sum::<usize>()
        {
            std::mem::swap(&mut self, &mut other);
        }
        for (a, b) in self.users.iter_mut().zip(&other.users) {
            *a += b;
        }
        for (a, b) in self.gaps.iter_mut().zip(other.gaps) {
            a.extend(b);
        }
        self
    }

    fn finish(mut self, p: &FunnelParams) -> FunnelResult {
        let entered = self.users[0];
        let steps = p
            .steps
            .iter()
            .enumerate()
            .map(|(k, event)| {
                let users = self.users[k];
                let previous = if k == 0 { entered } else { self.users[k - 1] };
                FunnelStep {
                    event: event.clone(),
                    users,
                    conversion_from_previous: ratio(users, previous),
                    conversion_from_first: ratio(users, entered),
                    median_seconds_from_previous: if k == 0 {
                        None
                    } else {
                        median_seconds(&mut self.gaps[k])
                    },
                }
            })
            .collect();
        FunnelResult {
            window_seconds: p.window_ms as f64 / 1000.0,
            from: format_rfc3339(p.from),
            to: format_rfc3339(p.to),
            steps,
        }
    }
}

impl Report for FunnelResult {
    fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Funnel: entries from {} to {}, window {}",
            self.from,
            self.to,
            human_duration(self.window_seconds)
        );
        out.push('\n');
        let mut rows = vec![vec![
            "step".to_string(),
            "users".into(),
            "from previous".into(),
            "overall".into(),
            "median time".into(),
            String::new(),
        ]];
        for (k, s) in self.steps.iter().enumerate() {
            rows.push(vec![
                format!("{}. {}", k + 1, s.event),
                thousands(s.users),
                percent(s.conversion_from_previous),
                percent(s.conversion_from_first),
                s.median_seconds_from_previous
                    .map_or_else(|| "-".to_string(), human_duration),
                bar(s.conversion_from_first, BAR_WIDTH),
            ]);
        }
        out.push_str(&align(&rows));
        match self.steps.first() {
            Some(first) if first.users == 0 => {
                out.push_str("\nNobody entered the funnel in this range.\n");
            }
            _ => {}
        }
        out
    }

    fn csv(&self) -> String {
        let mut out = String::from(
            "step,event,users,conversion_from_previous,conversion_from_first,median_seconds_from_previous\n",
        );
        for (k, s) in self.steps.iter().enumerate() {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{}",
                k + 1,
                csv_field(&s.event),
                s.users,
                s.conversion_from_previous,
                s.conversion_from_first,
                s.median_seconds_from_previous
                    .map_or_else(String::new, |m| m.to_string()),
            );
        }
        out
    }
}

impl GroupReport for FunnelResult {
    fn headline(&self) -> f64 {
        self.steps.first().map_or(0, |s| s.users) as f64
    }

    /// One bar per group under each step, so the groups' conversions read
    /// side by side.
    fn grouped_table(g: &Grouped<Self>) -> String {
        let mut out = String::new();
        let Some(first) = g.groups.first() else {
            return out;
        };
        let _ = writeln!(
            out,
            "Funnel: entries from {} to {}, window {}, by {}",
            first.result.from,
            first.result.to,
            human_duration(first.result.window_seconds),
            g.by
        );
        out.push('\n');
        // The step on a line of its own, then one indented line per group
        // (the first column is the only left-aligned one).
        let mut rows = vec![vec![
            format!("step / {}", g.by),
            "users".into(),
            "from previous".into(),
            "overall".into(),
            "median time".into(),
            String::new(),
        ]];
        for (k, step) in first.result.steps.iter().enumerate() {
            rows.push(vec![format!("{}. {}", k + 1, step.event)]);
            for group in &g.groups {
                let s = &group.result.steps[k];
                rows.push(vec![
                    format!("   {}", crate::segment::group_label(&group.value)),
                    thousands(s.users),
                    percent(s.conversion_from_previous),
                    percent(s.conversion_from_first),
                    s.median_seconds_from_previous
                        .map_or_else(|| "-".to_string(), human_duration),
                    bar(s.conversion_from_first, BAR_WIDTH),
                ]);
            }
        }
        out.push_str(&align(&rows));
        out
    }
}
