//! Lifecycle / AARRR (SPEC §4): per stage, how many persons had an event of
//! that stage in `[from, to)` and how many such events there were; plus the
//! revenue block (net revenue, paying users, orders, AOV, ARPU).
//!
//! One scan of every name over `[from, to)`. Per person a `u16` of flags
//! (one bit per stage, "active", "paying") lives in a vector indexed by
//! person id; event counts and money are plain sums. Partial states per
//! thread merge with `|` and `+`, so distinct persons are never
//! double-counted across threads.
//!
//! Money is summed with Neumaier's compensated summation, so the totals do
//! not depend (beyond the last bit) on the order the store returns rows in
//! or on how the rows were split across threads.
//!
//! With `--by` each event counts in the group of its own value: the one
//! scan's rows are split by group and each part is counted as above.

use serde::{Deserialize, Serialize};
use tally_event::Stage;

use crate::error::QueryError;
use crate::group::fold_rows;
use crate::params::RawParams;
use std::fmt::Write as _;

use crate::render::{Report, align, bar, csv_field, money, percent, thousands};
use crate::segment::{Breakdown, GroupIds, GroupReport, Grouped, Segment};
use crate::source::{Rows, Source};
use crate::stats::Sum;

/// Parameters of `tally lifecycle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleParams {
    /// Range start (inclusive), Unix ms.
    pub from: i64,
    /// Range end (exclusive), Unix ms.
    pub to: i64,
}

impl LifecycleParams {
    /// Reads `from` and `to`.
    pub fn from_raw(raw: &mut RawParams, now_ms: i64) -> Result<Self, QueryError> {
        let (from, to) = raw.range(now_ms)?;
        Ok(LifecycleParams { from, to })
    }
}

/// One stage's counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageCount {
    /// The stage.
    pub stage: Stage,
    /// Distinct persons with an event of this stage in range.
    pub users: u64,
    /// Events of this stage in range.
    pub events: u64,
}

/// The answer of `tally lifecycle`, exactly SPEC's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleResult {
    /// All seven stages, in lifecycle order (zeros included).
    pub stages: Vec<StageCount>,
    /// Distinct persons with any event in range.
    pub active_users: u64,
    /// Net revenue: every amount in range, refunds (negative) included.
    pub revenue: f64,
    /// Distinct persons with a positive amount in range.
    pub paying_users: u64,
    /// Events with a positive amount in range.
    pub orders: u64,
    /// Sum of positive amounts / orders; `null` without orders.
    pub aov: Option<f64>,
    /// Net revenue / active users; `null` without active users.
    pub arpu: Option<f64>,
}

/// Bits of the per-person flags: stages use bits `0..7` (`code - 1`).
const ACTIVE: u16 = 1 << 7;
const PAYING: u16 = 1 << 8;

/// Runs the lifecycle analysis.
pub fn run(src: &dyn Source, p: &LifecycleParams) -> Result<LifecycleResult, QueryError> {
    run_segment(src, p, &Segment::default())
}

/// Runs the lifecycle analysis and also returns the sum of the positive
/// amounts (AOV's numerator), which the KPI review shows beside AOV: the
/// JSON of SPEC §4 has only the quotient, and `aov × orders` is not exact.
pub fn run_with_sales(
    src: &dyn Source,
    p: &LifecycleParams,
    seg: &Segment,
) -> Result<(LifecycleResult, f64), QueryError> {
    let rows = src.scan(&seg.scan(None, p.from, p.to))?;
    Ok(count(&rows, src.person_count(), p))
}

/// Runs the lifecycle analysis over the events that pass `seg`'s filters,
/// with persons as `seg` says.
pub fn run_segment(
    src: &dyn Source,
    p: &LifecycleParams,
    seg: &Segment,
) -> Result<LifecycleResult, QueryError> {
    run_with_sales(src, p, seg).map(|(result, _)| result)
}

/// The lifecycle broken down by each event's own value of `by` (SPEC §5):
/// a person counts in every group they have an event in. Ordered by
/// `active_users`.
pub fn run_by(
    src: &dyn Source,
    p: &LifecycleParams,
    seg: &Segment,
    by: &Breakdown,
) -> Result<Grouped<LifecycleResult>, QueryError> {
    let rows = src.scan(&by.scan(seg, None, p.from, p.to))?;
    let ids = GroupIds::new(&rows);
    // One scan, split by value; each group is counted as if its events
    // were all there was.
    let groups = ids
        .split(rows)
        .into_iter()
        .map(|part| (part.value, count(&part.rows, part.persons, p).0))
        .collect();
    Ok(Grouped::new(by, groups))
}

/// The result, and the sum of the positive amounts.
fn count(rows: &[Rows], persons: usize, p: &LifecycleParams) -> (LifecycleResult, f64) {
    // `Source::scan` is exact; the range is checked again anyway (one
    // comparison per row) because, unlike the other analyses, nothing else
    // here would drop a row outside `[from, to)`.
    let part = fold_rows(
        rows,
        || Partial::new(persons),
        |part, r, range| part.add_rows(r, range, p),
        Partial::merge,
    );
    let sales = part.positive.value() + 0.0;
    (part.finish(), sales)
}

/// A mergeable partial lifecycle.
struct Partial {
    flags: Vec<u16>,
    events: [u64; 7],
    revenue: Sum,
    positive: Sum,
    orders: u64,
}

impl Partial {
    fn new(persons: usize) -> Self {
        Partial {
            flags: vec![0; persons],
            events: [0; 7],
            revenue: Sum::default(),
            positive: Sum::default(),
            orders: 0,
        }
    }

    fn add_rows(&mut self, r: &Rows, range: std::ops::Range<usize>, p: &LifecycleParams) {
        for i in range {
            if !(p.from..p.to).contains(&r.ts[i]) {
                continue;
            }
            let Some(flags) = self.flags.get_mut(r.person[i] as usize) else {
                continue;
            };
            let mut f = ACTIVE;
            let stage = r.stage[i];
            if (1..=7).contains(&stage) {
                self.events[usize::from(stage - 1)] += 1;
                f |= 1 << (stage - 1);
            }
            let amount = r.revenue[i];
            // NaN means "no revenue on this event".
            if !amount.is_nan() {
                self.revenue.add(amount);
                if amount > 0.0 {
                    self.positive.add(amount);
                    self.orders += 1;
                    f |= PAYING;
                }
            }
            *flags |= f;
        }
    }

    fn merge(mut self, other: Partial) -> Partial {
        for (a, b) in self.flags.iter_mut().zip(other.flags) {
            *a |= b;
        }
        for (a, b) in self.events.iter_mut().zip(other.events) {
            *a += b;
        }
        self.revenue.merge(other.revenue);
        self.positive.merge(other.positive);
        self.orders += other.orders;
        self
    }

    fn finish(self) -> LifecycleResult {
        let mut users = [0u64; 7];
        let (mut active, mut paying) = (0u64, 0u64);
        for &f in &self.flags {
            if f == 0 {
                continue;
            }
            for (s, u) in users.iter_mut().enumerate() {
                *u += u64::from(f >> s & 1);
            }
            active += u64::from(f & ACTIVE != 0);
            paying += u64::from(f & PAYING != 0);
        }
        // `+ 0.0` turns a -0.0 into 0.0.
        let revenue = self.revenue.value() + 0.0;
        LifecycleResult {
            stages: Stage::ALL
                .iter()
                .enumerate()
                .map(|(s, &stage)| StageCount {
                    stage,
                    users: users[s],
                    events: self.events[s],
                })
                .collect(),
            active_users: active,
            revenue,
            paying_users: paying,
            orders: self.orders,
            aov: (self.orders > 0).then(|| self.positive.value() / self.orders as f64),
            arpu: (active > 0).then(|| revenue / active as f64),
        }
    }
}

/// A number as CSV shows it (shortest round-trip form), empty when absent.
fn csv_number(x: Option<f64>) -> String {
    x.map(|v| v.to_string()).unwrap_or_default()
}

impl Report for LifecycleResult {
    fn table(&self) -> String {
        let share = |users: u64| {
            if self.active_users == 0 {
                0.0
            } else {
                users as f64 / self.active_users as f64
            }
        };
        let mut rows = vec![vec![
            "stage".to_string(),
            "users".to_string(),
            "events".to_string(),
            "of active".to_string(),
            String::new(),
        ]];
        for s in &self.stages {
            rows.push(vec![
                s.stage.to_string(),
                thousands(s.users),
                thousands(s.events),
                percent(share(s.users)),
                bar(share(s.users), 20),
            ]);
        }
        let mut out = align(&rows);
        out.push('\n');
        out.push_str(&align(&[
            vec!["active users".into(), thousands(self.active_users)],
            vec!["revenue (net)".into(), money(Some(self.revenue))],
            vec!["paying users".into(), thousands(self.paying_users)],
            vec!["orders".into(), thousands(self.orders)],
            vec!["AOV".into(), money(self.aov)],
            vec!["ARPU".into(), money(self.arpu)],
        ]));
        out
    }

    /// A long format, one number per row: `metric,stage,value`. Per stage
    /// in order its `users` and `events` rows; then the range-wide totals,
    /// which belong to no stage (`stage` empty): `active_users`, `revenue`,
    /// `paying_users`, `orders`, `aov`, `arpu` (`aov`/`arpu` empty when
    /// undefined). Nothing is repeated, and every row has three cells.
    fn csv(&self) -> String {
        let mut out = String::from("metric,stage,value\n");
        for s in &self.stages {
            let stage = csv_field(s.stage.as_str());
            let _ = writeln!(out, "users,{stage},{}", s.users);
            let _ = writeln!(out, "events,{stage},{}", s.events);
        }
        let _ = writeln!(out, "active_users,,{}", self.active_users);
        let _ = writeln!(out, "revenue,,{}", self.revenue);
        let _ = writeln!(out, "paying_users,,{}", self.paying_users);
        let _ = writeln!(out, "orders,,{}", self.orders);
        let _ = writeln!(out, "aov,,{}", csv_number(self.aov));
        let _ = writeln!(out, "arpu,,{}", csv_number(self.arpu));
        out
    }
}

impl GroupReport for LifecycleResult {
    fn headline(&self) -> f64 {
        self.active_users as f64
    }

    /// One column per group: each stage's users, then the revenue block.
    fn grouped_table(g: &Grouped<Self>) -> String {
        let header = std::iter::once(g.by.clone())
            .chain(
                g.groups
                    .iter()
                    .map(|x| crate::segment::group_label(&x.value)),
            )
            .collect::<Vec<_>>();
        let line = |name: String, cell: &dyn Fn(&LifecycleResult) -> String| {
            std::iter::once(name)
                .chain(g.groups.iter().map(|x| cell(&x.result)))
                .collect::<Vec<_>>()
        };
        let mut rows = vec![header];
        for (i, stage) in Stage::ALL.iter().enumerate() {
            rows.push(line(format!("{stage} users"), &|r| {
                thousands(r.stages[i].users)
            }));
        }
        rows.push(line("active users".into(), &|r| thousands(r.active_users)));
        rows.push(line("revenue (net)".into(), &|r| money(Some(r.revenue))));
        rows.push(line("paying users".into(), &|r| thousands(r.paying_users)));
        rows.push(line("orders".into(), &|r| thousands(r.orders)));
        rows.push(line("AOV".into(), &|r| money(r.aov)));
        rows.push(line("ARPU".into(), &|r| money(r.arpu)));
        align(&rows)
    }
}
