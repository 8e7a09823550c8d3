//! Activation, "X in Y" (SPEC §4): of the persons whose first ever `start`
//! event `s0` is in `[from, to)`, how many did `count` `event`s within
//! `within` of `s0`, how long that took, and the same per ISO week of `s0`.
//!
//! Shape of the computation (see the crate doc):
//! 1. scan `start` over all time before `to` → per person the first start
//!    `s0` (a `Vec<i64>` indexed by [`PersonId`](crate::PersonId)); a person
//!    whose first start is before `from` is not in the cohort, which is why
//!    the scan cannot begin at `from`;
//! 2. scan `event` over `[from, to + within)` — a qualifying event is at or
//!    after some `s0 >= from` and at most `s0 + within < to + within` — and
//!    group by person (counting sort) only the events inside the person's
//!    own `[s0, s0 + within]`;
//! 3. per cohort member: activated when they have at least `count` of
//!    those; the time to activate is the `count`-th smallest minus `s0`
//!    (a selection, not a sort);
//! 4. fold members into per-week counts and durations, one map per rayon
//!    task over blocks of persons, merged by adding counts and
//!    concatenating durations;
//! 5. the result: rates and medians.
//!
//! When `event` equals `start`, the start event itself is one of the
//! qualifying events (it is at `s0`), as SPEC says.
//!
//! Filters and identity (SPEC §5, §1) go into both scans, so `s0` is the
//! first *matching* start. With `--by`, step 1 also keeps the group of
//! each person's `s0` event (ties: the smallest value), and step 4 keeps
//! one set of weeks per group; step 2 is done once for everybody.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tally_event::time::{DAY_MS, format_rfc3339, ms_to_date};

use crate::calendar::{Zone, monday_of};

use crate::error::QueryError;
use crate::filter::GroupValue;
use crate::group::{ByPerson, group_by_person};
use crate::params::{RawParams, check_window};
use crate::render::{BAR_WIDTH, Report, align, bar, human_duration, percent, thousands};
use crate::segment::{Breakdown, GroupIds, GroupReport, Grouped, Segment};
use crate::source::{Rows, Source};
use crate::stats::{median_seconds, ratio};

/// `--within` when not given: 30 days.
pub const DEFAULT_WITHIN_MS: i64 = 30 * DAY_MS;

/// What to compute:
/// `tally activation --start signup --event invoice_sent --count 2 --within 30d --from F --to T`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationParams {
    /// The event that puts a person in a cohort (their first ever one).
    pub start: String,
    /// The event that counts towards activation.
    pub event: String,
    /// How many `event`s activate (at least 1).
    pub count: u32,
    /// How long after `s0` they may happen (inclusive).
    pub within_ms: i64,
    /// Cohort from (inclusive), Unix milliseconds.
    pub from: i64,
    /// Cohort until (exclusive), Unix milliseconds.
    pub to: i64,
    /// The moment maturity is judged against (`--as-of`, default now),
    /// Unix milliseconds: a person is mature when `s0 + within <= as_of`.
    pub as_of: i64,
    /// The zone of `by_week`'s weeks (`--tz`).
    #[serde(default)]
    pub tz: Zone,
}

impl ActivationParams {
    /// Reads `start`, `event` (both required), `count` (default 1),
    /// `within` (default 30d), `from` / `to` and `as-of` (default
    /// `now_ms`). Leaves
    /// [`RawParams::finish`] to the caller.
    pub fn from_raw(raw: &mut RawParams, now_ms: i64) -> Result<Self, QueryError> {
        let start = event_name(raw, "start")?;
        let event = event_name(raw, "event")?;
        let count = match raw.int("count", i64::MIN..=i64::MAX)? {
            None => 1,
            Some(n) if n < 1 => {
                return Err(QueryError::bad(
                    "count",
                    format!("must be at least 1 (got {n})"),
                ));
            }
            Some(n) => u32::try_from(n).map_err(|_| {
                QueryError::bad("count", format!("{n} is too large (at most {})", u32::MAX))
            })?,
        };
        let within_ms = raw.duration("within")?.unwrap_or(DEFAULT_WITHIN_MS);
        check_window("within", within_ms)?;
        let (from, to) = raw.range(now_ms)?;
        let as_of = raw.time("as-of")?.unwrap_or(now_ms);
        Ok(ActivationParams {
            start,
            event,
            count,
            within_ms,
            from,
            to,
            as_of,
            tz: raw.zone()?,
        })
    }

    /// What [`run`] needs to be well defined (the remaining bounds are the
    /// user-facing contract, checked by [`Self::from_raw`]).
    fn validate(&self) -> Result<(), QueryError> {
        if self.count < 1 {
            return Err(QueryError::bad("count", "must be at least 1 (got 0)"));
        }
        Ok(())
    }
}

/// A required event name; surrounding spaces are trimmed, as for `--steps`.
fn event_name(raw: &mut RawParams, param: &str) -> Result<String, QueryError> {
    let name = raw.required(param)?.trim().to_string();
    if name.is_empty() {
        return Err(QueryError::bad(
            param,
            "must not be empty (expected an event name)",
        ));
    }
    Ok(name)
}

/// The answer, serializing exactly to the SPEC JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationResult {
    /// Persons whose first ever `start` is in `[from, to)`.
    pub cohort_size: u64,
    /// Of those, persons with `count` qualifying events.
    pub activated: u64,
    /// `activated / cohort_size`, 0 for an empty cohort.
    pub rate: f64,
    /// Median of the activated persons' times to activate, seconds.
    pub median_seconds_to_activate: Option<f64>,
    /// Per local ISO week (Monday, in `--tz`) of `s0`, oldest first; only non-empty weeks.
    pub by_week: Vec<ActivationWeek>,
    /// `--as-of`, RFC 3339 UTC.
    pub as_of: String,
    /// The same counts over mature persons only (`s0 + within <= as_of`):
    /// everyone counted here has had their whole `within` to activate.
    pub mature: MatureCounts,
}

/// [`ActivationResult::mature`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatureCounts {
    /// Mature persons of the cohort.
    pub cohort_size: u64,
    /// Of those, activated persons.
    pub activated: u64,
    /// `activated / cohort_size`, 0 when nobody is mature yet.
    pub rate: f64,
}

/// One week of an [`ActivationResult`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationWeek {
    /// The Monday, `YYYY-MM-DD`.
    pub cohort: String,
    /// Persons whose `s0` is in this week.
    pub cohort_size: u64,
    /// Of those, activated persons.
    pub activated: u64,
    /// `activated / cohort_size`.
    pub rate: f64,
    /// True when every person of the week is mature: the week's end (the
    /// next Monday 00:00) plus `within` is at or before `as_of`. A week
    /// that is not is still running, not a failure.
    pub mature: bool,
}

/// Marks "not in the cohort" in the per-person `s0` vector.
const NOT_IN_COHORT: i64 = i64::MAX;

/// Computes the activation.
pub fn run(src: &dyn Source, p: &ActivationParams) -> Result<ActivationResult, QueryError> {
    run_segment(src, p, &Segment::default())
}

/// Computes the activation over the events that pass `seg`'s filters (so
/// a person's first start is their first *matching* start, SPEC §5), with
/// persons as `seg` says.
pub fn run_segment(
    src: &dyn Source,
    p: &ActivationParams,
    seg: &Segment,
) -> Result<ActivationResult, QueryError> {
    let groups = compute(src, p, seg, None)?;
    Ok(groups
        .into_iter()
        .next()
        .map_or_else(Weeks::new, |(_, w)| w)
        .finish(p))
}

/// The activation broken down by the value of `by` on each person's cohort
/// event, their first start (the smallest value when several starts tie
/// for first, SPEC §5). Ordered by `cohort_size`.
pub fn run_by(
    src: &dyn Source,
    p: &ActivationParams,
    seg: &Segment,
    by: &Breakdown,
) -> Result<Grouped<ActivationResult>, QueryError> {
    let groups = compute(src, p, seg, Some(by))?
        .into_iter()
        .map(|(v, w)| (v, w.finish(p)))
        .collect();
    Ok(Grouped::new(by, groups))
}

/// The non-empty cohorts' weeks, per group (one group, `null`, without a
/// breakdown).
fn compute(
    src: &dyn Source,
    p: &ActivationParams,
    seg: &Segment,
    by: Option<&Breakdown>,
) -> Result<Vec<(GroupValue, Weeks)>, QueryError> {
    p.validate()?;
    let Some(start_id) = src.name_id(&p.start) else {
        return Ok(Vec::new());
    };
    if p.from >= p.to {
        return Ok(Vec::new());
    }

    // Step 1: first ever start per person (and, with a breakdown, its
    // group), then keep only the cohort.
    let names = [start_id];
    let start_rows = src.scan(&match by {
        Some(by) => by.scan(seg, Some(&names), i64::MIN, p.to),
        None => seg.scan(Some(&names), i64::MIN, p.to),
    })?;
    let ids = by.map(|_| GroupIds::new(&start_rows));
    let FirstStarts {
        mut s0,
        group: cohort_group,
    } = first_starts(&start_rows, src.person_count(), p.to, ids.as_ref());
    drop(start_rows);
    for s in &mut s0 {
        if !(p.from..p.to).contains(s) {
            *s = NOT_IN_COHORT;
        }
    }

    // Step 2: each member's qualifying events. An unknown `event` name
    // leaves everybody with none.
    let mut qualifying: ByPerson<i64> = match src.name_id(&p.event) {
        None => group_by_person(s0.len(), &[], |_, _, _| None),
        Some(event_id) => {
            let rows =
                src.scan(&seg.scan(Some(&[event_id]), p.from, p.to.saturating_add(p.within_ms)))?;
            group_by_person(s0.len(), &rows, |_, person, ts| {
                let start = *s0.get(person as usize)?;
                let inside = start != NOT_IN_COHORT && ts >= start && ts - start <= p.within_ms;
                inside.then_some(ts)
            })
        }
    };

    // Steps 3 and 4, in parallel over blocks of persons.
    let nth = p.count as usize - 1;
    // Per group id (0 without a breakdown); a map, since a property with
    // many values leaves most groups absent from most blocks.
    let weeks = qualifying
        .blocks()
        .into_par_iter()
        .map(|mut block| {
            let mut weeks: HashMap<u32, Weeks> = HashMap::new();
            block.for_each(|person, ts| {
                let Some(&start) = s0.get(person as usize) else {
                    return;
                };
                if start == NOT_IN_COHORT {
                    return;
                }
                let time_to_activate = (ts.len() > nth).then(|| {
                    let (_, &mut at, _) = ts.select_nth_unstable(nth);
                    at - start
                });
                let mature = start.saturating_add(p.within_ms) <= p.as_of;
                let g = cohort_group.get(person as usize).copied().unwrap_or(0);
                weeks.entry(g).or_insert_with(Weeks::new).add(
                    monday_of(p.tz.local_day(start)),
                    time_to_activate,
                    mature,
                );
            });
            weeks
        })
        .reduce(HashMap::new, |mut a, b| {
            for (g, w) in b {
                let merged = match a.remove(&g) {
                    Some(w0) => w0.merge(w),
                    None => w,
                };
                a.insert(g, merged);
            }
            a
        });

    let values = ids.map_or_else(|| vec![GroupValue::Null], |ids| ids.values);
    Ok(weeks
        .into_iter()
        .map(|(g, w)| (values[g as usize].clone(), w))
        .collect())
}

/// Per person: the first start event (`NOT_IN_COHORT` when none) and, with
/// a breakdown, its group.
pub(crate) struct FirstStarts {
    pub(crate) s0: Vec<i64>,
    /// Empty without a breakdown.
    pub(crate) group: Vec<u32>,
}

/// The first start before `to` of every person; with `ids`, the group of
/// that event, and when several starts tie for first, the smallest of
/// their values in SPEC §5's order.
pub(crate) fn first_starts(
    rows: &[Rows],
    persons: usize,
    to: i64,
    ids: Option<&GroupIds>,
) -> FirstStarts {
    let mut s0 = vec![NOT_IN_COHORT; persons];
    let mut group: Vec<u32> = Vec::new();
    for (k, r) in rows.iter().enumerate() {
        for (i, (&person, &ts)) in r.person.iter().zip(&r.ts).enumerate() {
            if ts >= to {
                continue;
            }
            let person = person as usize;
            if person >= s0.len() {
                s0.resize(person + 1, NOT_IN_COHORT);
            }
            let Some(ids) = ids else {
                s0[person] = s0[person].min(ts);
                continue;
            };
            if group.len() < s0.len() {
                group.resize(s0.len(), 0);
            }
            let g = ids.of(k, r, i);
            let better = ts < s0[person]
                || (ts == s0[person] && ids.rank[g as usize] < ids.rank[group[person] as usize]);
            if better {
                s0[person] = ts;
                group[person] = g;
            }
        }
    }
    FirstStarts { s0, group }
}

/// The mergeable intermediate: per week (Monday's day number), the cohort
/// size, the activated members' times to activate (ms), and the same two
/// counts over the mature members.
struct Weeks(BTreeMap<i64, Week>);

#[derive(Default)]
struct Week {
    size: u64,
    times: Vec<i64>,
    mature_size: u64,
    mature_activated: u64,
}

impl Weeks {
    fn new() -> Self {
        Weeks(BTreeMap::new())
    }

    fn add(&mut self, monday: i64, time_to_activate: Option<i64>, mature: bool) {
        let week = self.0.entry(monday).or_default();
        week.size += 1;
        if mature {
            week.mature_size += 1;
            week.mature_activated += u64::from(time_to_activate.is_some());
        }
        week.times.extend(time_to_activate);
    }

    fn merge(mut self, other: Weeks) -> Weeks {
        for (monday, w) in other.0 {
            let week = self.0.entry(monday).or_default();
            week.size += w.size;
            week.times.extend(w.times);
            week.mature_size += w.mature_size;
            week.mature_activated += w.mature_activated;
        }
        self
    }

    fn finish(self, p: &ActivationParams) -> ActivationResult {
        let mut cohort_size = 0;
        let (mut mature_size, mut mature_activated) = (0, 0);
        let mut all_times = Vec::new();
        let mut by_week = Vec::with_capacity(self.0.len());
        for (monday, w) in self.0 {
            let activated = w.times.len() as u64;
            cohort_size += w.size;
            mature_size += w.mature_size;
            mature_activated += w.mature_activated;
            // The week's end in the zone: a DST week is 167 or 169 hours.
            let week_end = p.tz.day_start(monday + 7);
            by_week.push(ActivationWeek {
                cohort: ms_to_date(monday * DAY_MS).format("%Y-%m-%d").to_string(),
                cohort_size: w.size,
                activated,
                rate: ratio(activated, w.size),
                mature: week_end.saturating_add(p.within_ms) <= p.as_of,
            });
            all_times.extend(w.times);
        }
        let activated = all_times.len() as u64;
        ActivationResult {
            cohort_size,
            activated,
            rate: ratio(activated, cohort_size),
            median_seconds_to_activate: median_seconds(&mut all_times),
            by_week,
            as_of: format_rfc3339(p.as_of),
            mature: MatureCounts {
                cohort_size: mature_size,
                activated: mature_activated,
                rate: ratio(mature_activated, mature_size),
            },
        }
    }
}

impl Report for ActivationResult {
    fn table(&self) -> String {
        let mut out = String::new();
        if self.cohort_size == 0 {
            out.push_str("Nobody had their first start event in this range.\n");
            return out;
        }
        let median = self
            .median_seconds_to_activate
            .map_or_else(|| "-".to_string(), human_duration);
        let mature_rate = if self.mature.cohort_size == 0 {
            "- (nobody has had the whole period yet)".to_string()
        } else {
            percent(self.mature.rate)
        };
        out.push_str(&align(&[
            vec!["Cohort".into(), thousands(self.cohort_size)],
            vec!["Activated".into(), thousands(self.activated)],
            vec!["Rate".into(), percent(self.rate)],
            vec!["Median time to activate".into(), median],
            vec!["Mature cohort".into(), thousands(self.mature.cohort_size)],
            vec!["Mature activated".into(), thousands(self.mature.activated)],
            vec!["Mature rate".into(), mature_rate],
            vec!["As of".into(), self.as_of.clone()],
        ]));
        out.push('\n');
        let mut rows = vec![vec![
            "week of".to_string(),
            "cohort".into(),
            "activated".into(),
            "rate".into(),
            String::new(),
        ]];
        for w in &self.by_week {
            let (rate, bar_or_note) = if w.mature {
                (percent(w.rate), bar(w.rate, BAR_WIDTH))
            } else {
                (format!("{}…", percent(w.rate)), "still running".to_string())
            };
            rows.push(vec![
                w.cohort.clone(),
                thousands(w.cohort_size),
                thousands(w.activated),
                rate,
                bar_or_note,
            ]);
        }
        out.push_str(&align(&rows));
        if self.by_week.iter().any(|w| !w.mature) {
            out.push_str(
                "\n… still running: some of the week's people have not had their whole \
                 period yet (counts so far, not failures)\n",
            );
        }
        out
    }

    /// One row per line kind, told apart by `row`: `total` (the whole
    /// cohort), `mature` (mature persons only), then one `week` row per ISO
    /// week (`cohort` is its Monday; `mature` only on week rows).
    fn csv(&self) -> String {
        let mut out = String::from("row,cohort,cohort_size,activated,rate,mature\n");
        let _ = writeln!(
            out,
            "total,,{},{},{},",
            self.cohort_size, self.activated, self.rate
        );
        let _ = writeln!(
            out,
            "mature,,{},{},{},",
            self.mature.cohort_size, self.mature.activated, self.mature.rate
        );
        for w in &self.by_week {
            let _ = writeln!(
                out,
                "week,{},{},{},{},{}",
                w.cohort, w.cohort_size, w.activated, w.rate, w.mature
            );
        }
        out
    }
}

impl GroupReport for ActivationResult {
    fn headline(&self) -> f64 {
        self.cohort_size as f64
    }

    /// The summary of each group side by side, one column per group (the
    /// weeks are in the JSON and CSV).
    fn grouped_table(g: &Grouped<Self>) -> String {
        let mut rows = vec![
            std::iter::once(g.by.clone())
                .chain(
                    g.groups
                        .iter()
                        .map(|x| crate::segment::group_label(&x.value)),
                )
                .collect::<Vec<_>>(),
        ];
        let line = |name: &str, cell: &dyn Fn(&ActivationResult) -> String| {
            std::iter::once(name.to_string())
                .chain(g.groups.iter().map(|x| cell(&x.result)))
                .collect::<Vec<_>>()
        };
        rows.push(line("Cohort", &|r| thousands(r.cohort_size)));
        rows.push(line("Activated", &|r| thousands(r.activated)));
        rows.push(line("Rate", &|r| percent(r.rate)));
        rows.push(line("Median time to activate", &|r| {
            r.median_seconds_to_activate
                .map_or_else(|| "-".to_string(), human_duration)
        }));
        rows.push(line("Mature cohort", &|r| thousands(r.mature.cohort_size)));
        rows.push(line("Mature activated", &|r| thousands(r.mature.activated)));
        rows.push(line("Mature rate", &|r| {
            if r.mature.cohort_size == 0 {
                "-".to_string()
            } else {
                percent(r.mature.rate)
            }
        }));
        let mut out = align(&rows);
        if let Some(first) = g.groups.first() {
            let _ = writeln!(out, "\nAs of {}", first.result.as_of);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Weekday};

    #[test]
    fn monday_of_matches_chrono() {
        // Around the epoch, negative days, and a Sunday/Monday boundary.
        for day in -20..40 {
            for ms in [day * DAY_MS, day * DAY_MS + DAY_MS - 1] {
                let date = ms_to_date(ms);
                let monday = ms_to_date(monday_of(ms.div_euclid(DAY_MS)) * DAY_MS);
                assert_eq!(monday.weekday(), Weekday::Mon);
                assert_eq!(
                    monday,
                    date - chrono::Days::new(date.weekday().num_days_from_monday().into())
                );
            }
        }
    }
}
