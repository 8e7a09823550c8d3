//! Active users (SPEC §4): for each local day (`--tz`, UTC by default)
//! whose first instant is in `[from, to)`, the distinct persons active that
//! day (DAU), in the 7 days ending that day (WAU) and in the 30 days ending
//! that day (MAU). Days are local calendar days, so a DST day is 23 or 25
//! hours long: rows are put in days by the days' start instants.
//!
//! The first day is the first day start at or after `from`. A listed day
//! counts its whole 24 hours, even when `to` falls inside it. The windows
//! reach back before `from`, so the scan starts 29 days before the first day.
//!
//! Computation, O(rows + days) per thread instead of O(days × 30 × persons):
//! the rows are bucketed by day (a counting sort of person ids), then the
//! days are walked in order keeping each person's last active day. When a
//! person is active on day `a` after last being active on day `l`, they
//! newly cover the days `max(a, l + W) .. a + W` of a W-day window, which
//! goes into a difference array; its prefix sums are WAU (W = 7) and MAU
//! (W = 30). Threads split the persons (each handles a range of person ids
//! over all rows), so their per-day counts simply add up.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tally_event::time::DAY_MS;

use crate::calendar::{Zone, date_label};
use crate::error::QueryError;
use crate::params::RawParams;
use crate::render::{BAR_WIDTH, Report, align, bar, csv_field, percent, thousands};
use crate::segment::Segment;
use crate::source::{Rows, Source};

/// Days in the weekly window.
const WEEK: usize = 7;
/// Days in the monthly window.
const MONTH: usize = 30;

/// Most days one answer lists (a little over ten years). The answer holds
/// one entry per day of the range (about 100 bytes of JSON, more in
/// memory), so without a bound `--from 2000-01-01 --to 9999-12-31` built a
/// 327 MB answer; a longer range is a bad parameter.
pub const MAX_DAYS: i64 = 3660;

/// Parameters of `tally active`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveParams {
    /// Range start (inclusive), Unix ms.
    pub from: i64,
    /// Range end (exclusive), Unix ms.
    pub to: i64,
    /// The zone of the days (`--tz`).
    #[serde(default)]
    pub tz: Zone,
}

impl ActiveParams {
    /// Reads `from`, `to` and `tz`.
    pub fn from_raw(raw: &mut RawParams, now_ms: i64) -> Result<Self, QueryError> {
        let (from, to) = raw.range(now_ms)?;
        let tz = raw.zone()?;
        let (first, last) = listed_days(from, to, &tz);
        let days = last - first + 1;
        if days > MAX_DAYS {
            return Err(QueryError::bad(
                "to",
                format!(
                    "the range lists {days} days; active answers at most {MAX_DAYS} days \
                     (about ten years): narrow --from/--to"
                ),
            ));
        }
        Ok(ActiveParams { from, to, tz })
    }
}

/// Civil day numbers of the first and last local day whose first instant
/// is in `[from, to)` (first > last when there is none).
fn listed_days(from: i64, to: i64, tz: &Zone) -> (i64, i64) {
    let day = tz.local_day(from);
    let first = day + i64::from(tz.day_start(day) != from);
    let last = tz.local_day(to - 1);
    (first, last)
}

/// One day's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveDay {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Distinct persons active that day.
    pub dau: u64,
    /// Distinct persons active in the 7 days ending that day.
    pub wau: u64,
    /// Distinct persons active in the 30 days ending that day.
    pub mau: u64,
    /// `dau / mau`, 0 when `mau` is 0.
    pub stickiness: f64,
}

/// The answer of `tally active`, exactly SPEC's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveResult {
    /// Every day whose midnight is in range, oldest first.
    pub days: Vec<ActiveDay>,
    /// The day that is not over yet (`YYYY-MM-DD`), which tables mark as
    /// partial. Not part of the JSON: the analysis has no clock, so the
    /// caller sets it with [`ActiveResult::mark_today`].
    #[serde(skip)]
    pub today: Option<String>,
}

impl ActiveResult {
    /// Marks the local day of `now_ms` in `tz` as the one still running.
    pub fn mark_today(&mut self, now_ms: i64, tz: &Zone) {
        self.today = Some(date_label(tz.local_day(now_ms)));
    }
}

/// Below this many rows one thread does it all.
const PARALLEL_MIN_ROWS: usize = 1 << 16;

/// Runs the active-users analysis.
pub fn run(src: &dyn Source, p: &ActiveParams) -> Result<ActiveResult, QueryError> {
    run_segment(src, p, &Segment::default())
}

/// Runs the active-users analysis over the events that pass `seg`'s
/// filters, with persons as `seg` says. (No breakdown: SPEC §5 gives
/// `active` none.)
pub fn run_segment(
    src: &dyn Source,
    p: &ActiveParams,
    seg: &Segment,
) -> Result<ActiveResult, QueryError> {
    // Unix day numbers of the first and last listed day.
    let (first, last) = listed_days(p.from, p.to, &p.tz);
    if first > last {
        return Ok(ActiveResult {
            days: Vec::new(),
            today: None,
        });
    }
    // Day index 0 is `base`; listed days are indices MONTH - 1 .. span.
    let base = first - (MONTH as i64 - 1);
    let span = (last - base + 1) as usize;
    // Where each day starts, and the end of the last.
    let starts: Vec<i64> = (base..=last + 1).map(|d| p.tz.day_start(d)).collect();
    let rows = src.scan(&seg.scan(None, starts[0], starts[span]))?;
    let persons = src.person_count();
    let total: usize = rows.iter().map(Rows::len).sum();
    let parts = rayon::current_num_threads()
        .min(total / PARALLEL_MIN_ROWS)
        .max(1);
    let per = persons.div_ceil(parts).max(1);
    let counts = (0..parts)
        .into_par_iter()
        .map(|t| {
            let lo = (t * per).min(persons);
            let hi = ((t + 1) * per).min(persons);
            Counts::for_persons(&rows, lo..hi, &starts)
        })
        .reduce_with(Counts::merge)
        .unwrap_or_else(|| Counts::zero(span));
    let days = (MONTH - 1..span)
        .map(|d| {
            let (dau, wau, mau) = (counts.dau[d], counts.wau[d], counts.mau[d]);
            ActiveDay {
                day: date_label(base + d as i64),
                dau,
                wau,
                mau,
                stickiness: if mau == 0 {
                    0.0
                } else {
                    dau as f64 / mau as f64
                },
            }
        })
        .collect();
    Ok(ActiveResult { days, today: None })
}

/// Per-day distinct counts over the whole scanned span (a mergeable
/// intermediate: counts of disjoint person sets add up).
struct Counts {
    dau: Vec<u64>,
    wau: Vec<u64>,
    mau: Vec<u64>,
}

impl Counts {
    fn zero(span: usize) -> Self {
        Counts {
            dau: vec![0; span],
            wau: vec![0; span],
            mau: vec![0; span],
        }
    }

    fn merge(mut self, other: Counts) -> Counts {
        for (a, b) in [
            (&mut self.dau, other.dau),
            (&mut self.wau, other.wau),
            (&mut self.mau, other.mau),
        ] {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self
    }

    /// Counts the persons `persons` (ids in that range) active in the days
    /// that start at `starts` (the last entry is where the last day ends).
    fn for_persons(rows: &[Rows], persons: std::ops::Range<usize>, starts: &[i64]) -> Self {
        let span = starts.len() - 1;
        // Uniform days (UTC, or a zone without changes in the span) are a
        // division; otherwise a binary search over the day starts.
        let uniform = starts.windows(2).all(|w| w[1] - w[0] == DAY_MS);
        let base_ms = starts[0];
        let day_of = |ts: i64| {
            if ts < base_ms || ts >= starts[span] {
                return None;
            }
            Some(if uniform {
                ((ts - base_ms) / DAY_MS) as usize
            } else {
                starts.partition_point(|&s| s <= ts) - 1
            })
        };
        let each = |f: &mut dyn FnMut(usize, usize)| {
            for r in rows {
                for (&person, &ts) in r.person.iter().zip(&r.ts) {
                    let person = person as usize;
                    if !persons.contains(&person) {
                        continue;
                    }
                    if let Some(d) = day_of(ts) {
                        f(person - persons.start, d);
                    }
                }
            }
        };
        // Counting sort of the rows' persons by day.
        let mut start = vec![0usize; span + 1];
        each(&mut |_, d| start[d + 1] += 1);
        for d in 0..span {
            start[d + 1] += start[d];
        }
        let mut by_day = vec![0u32; start[span]];
        let mut next = start.clone();
        each(&mut |q, d| {
            by_day[next[d]] = q as u32;
            next[d] += 1;
        });

        const NEVER: usize = usize::MAX;
        let mut last = vec![NEVER; persons.len()];
        let mut dau = vec![0u64; span];
        let mut week = vec![0i64; span + WEEK];
        let mut month = vec![0i64; span + MONTH];
        for a in 0..span {
            for &q in &by_day[start[a]..start[a + 1]] {
                let l = last[q as usize];
                if l == a {
                    continue;
                }
                dau[a] += 1;
                for (w, diff) in [(WEEK, &mut week), (MONTH, &mut month)] {
                    // Days a .. a + w are covered; those before l + w already were.
                    let from = if l == NEVER { a } else { a.max(l + w) };
                    if from < a + w {
                        diff[from] += 1;
                        diff[a + w] -= 1;
                    }
                }
                last[q as usize] = a;
            }
        }
        let running = |diff: Vec<i64>| {
            let mut acc = 0i64;
            diff[..span]
                .iter()
                .map(|&x| {
                    acc += x;
                    acc as u64
                })
                .collect()
        };
        Counts {
            dau,
            wau: running(week),
            mau: running(month),
        }
    }
}

impl Report for ActiveResult {
    fn table(&self) -> String {
        if self.days.is_empty() {
            return "No day starts in the range.\n".into();
        }
        let mut rows = vec![
            ["day", "DAU", "WAU", "MAU", "DAU/MAU", ""]
                .map(String::from)
                .to_vec(),
        ];
        // Bars are DAU relative to the busiest day shown.
        let peak = self.days.iter().map(|d| d.dau).max().unwrap_or(0);
        let mut partial = false;
        for d in &self.days {
            let today = self.today.as_deref() == Some(d.day.as_str());
            partial |= today;
            rows.push(vec![
                if today {
                    format!("{} *", d.day)
                } else {
                    d.day.clone()
                },
                thousands(d.dau),
                thousands(d.wau),
                thousands(d.mau),
                percent(d.stickiness),
                bar(
                    if peak == 0 {
                        0.0
                    } else {
                        d.dau as f64 / peak as f64
                    },
                    BAR_WIDTH,
                ),
            ]);
        }
        let mut out = align(&rows);
        if partial {
            out.push_str("\n* today: the day is not over yet (counts so far)\n");
        }
        out
    }

    fn csv(&self) -> String {
        let mut out = String::from("day,dau,wau,mau,stickiness\n");
        for d in &self.days {
            out.push_str(&format!(
                "{},{},{},{},{}\n",
                csv_field(&d.day),
                d.dau,
                d.wau,
                d.mau,
                d.stickiness
            ));
        }
        out
    }
}
