//! Realistic lifecycle events for a small invoicing SaaS, written as NDJSON
//! in Tally's wire form (SPEC §1): the dataset of `benches/compare.sh`.
//!
//! ```text
//! cargo build --release -p tally-benches --bin gen_dataset
//! target/release/gen_dataset --events 1000000 --seed 1 --out target/events-1m.ndjson
//! target/release/gen_dataset --events 10000 --seed 7 | head
//! ```
//!
//! What a person does (drop-off at every stage, all rates per person):
//! - **discovery**: arrives on a day of the span (more persons later in the
//!   span, fewer at weekends, more in the afternoon UTC) from a `utm_source`,
//!   browses a few sessions of `page_view`s. About 60% never sign up; they
//!   are known only by an `anonymous_id`.
//! - **acquisition**: `signup` (about 1% sign up a second time later, which
//!   analyses keyed on the *first* signup must ignore); from then on the
//!   person is a `user_id` (browser events also carry the `anonymous_id`,
//!   as Segment-style SDKs send after `identify`; the pre-signup visits are
//!   attributed to the user, as identity resolution would).
//! - **activation**: `onboarding_completed` (some) and a first
//!   `invoice_sent` after a log-normal delay (median 3 h, some after weeks);
//!   a third of sign-ups never send one.
//! - **engagement**: heavy-tailed invoicing (a Pareto weekly rate: most send
//!   one or two a week, a few hundreds), with `invoice_viewed` and
//!   `invoice_paid` by their clients.
//! - **retention**: weekly churn (loyal, casual and tourist users churn at
//!   different rates); survivors `login` and send invoices in later weeks.
//! - **revenue**: `plan_purchased` with `revenue` (9, 29 or 99 a month, or
//!   ten times that a year), monthly `subscription_renewed`, and a few
//!   `refund_issued` with negative revenue.
//! - **referral**: `invite_sent` by engaged users.
//! - `settings_updated` has no stage.
//!
//! Lines come in arrival order (event time, plus a delay for a few offline
//! mobile events), with UUIDv7 ids minted as the SDK would when replaying
//! history (`--id-clock backfill`, the default: a clock at about 4 ids per
//! millisecond, see `--ids-per-ms` and `synth::id_for` for why the store
//! cares) or as live traffic would (`--id-clock event`: the id's time is
//! the event's).
//! Timestamps are mostly RFC 3339 with milliseconds (the SDK's form), some
//! integer milliseconds, a few with a UTC offset or microseconds. A few
//! events are sent twice (SDK retries: same id, sometimes upper-cased) and a
//! few lines are invalid (each kind of SPEC §1 rejection), so a loader must
//! validate and deduplicate. The output depends only on the arguments.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;

/// Mean events per person of the model below (calibrated), so that
/// `--events N` yields about N events.
const EVENTS_PER_PERSON: f64 = 20.0;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum IdClock {
    /// Ids minted in file order at about 4 per millisecond (a backfill
    /// through the SDK, or a busy app).
    Backfill,
    /// Each id carries its event's own millisecond (live traffic).
    Event,
}

/// Generate realistic lifecycle events as NDJSON (Tally's wire form).
#[derive(Debug, Parser)]
#[command(name = "gen_dataset")]
struct Args {
    /// About how many events (persons = events / 20 unless --persons)
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Number of persons (overrides the one derived from --events)
    #[arg(long)]
    persons: Option<u64>,
    /// Seed: the same arguments give the same bytes
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// End of the span (exclusive): a date or RFC 3339
    #[arg(long, default_value = "2026-11-02")]
    end: String,
    /// Length of the span in days
    #[arg(long, default_value_t = 90)]
    days: i64,
    /// Write here instead of standard output
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Fraction of events sent a second time (same id)
    #[arg(long, default_value_t = 0.001)]
    dup_rate: f64,
    /// Extra invalid lines, as a fraction of events
    #[arg(long, default_value_t = 0.0002)]
    invalid_rate: f64,
    /// How event ids get their millisecond
    #[arg(long, value_enum, default_value = "backfill")]
    id_clock: IdClock,
    /// Ids minted per millisecond on average with `--id-clock backfill`
    #[arg(long, default_value_t = 4.0)]
    ids_per_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    PageView,
    Signup,
    Onboarding,
    InvoiceSent,
    InvoiceViewed,
    InvoicePaid,
    Login,
    PlanPurchased,
    Renewed,
    Refund,
    InviteSent,
    Settings,
}

const KINDS: [Kind; 12] = [
    Kind::PageView,
    Kind::Signup,
    Kind::Onboarding,
    Kind::InvoiceSent,
    Kind::InvoiceViewed,
    Kind::InvoicePaid,
    Kind::Login,
    Kind::PlanPurchased,
    Kind::Renewed,
    Kind::Refund,
    Kind::InviteSent,
    Kind::Settings,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::PageView => "page_view",
            Kind::Signup => "signup",
            Kind::Onboarding => "onboarding_completed",
            Kind::InvoiceSent => "invoice_sent",
            Kind::InvoiceViewed => "invoice_viewed",
            Kind::InvoicePaid => "invoice_paid",
            Kind::Login => "login",
            Kind::PlanPurchased => "plan_purchased",
            Kind::Renewed => "subscription_renewed",
            Kind::Refund => "refund_issued",
            Kind::InviteSent => "invite_sent",
            Kind::Settings => "settings_updated",
        }
    }
}

const STAGES: [&str; 8] = [
    "",
    "discovery",
    "acquisition",
    "activation",
    "engagement",
    "retention",
    "revenue",
    "referral",
];
const NO_STAGE: u8 = 0;
const DISCOVERY: u8 = 1;
const ACQUISITION: u8 = 2;
const ACTIVATION: u8 = 3;
const ENGAGEMENT: u8 = 4;
const RETENTION: u8 = 5;
const REVENUE: u8 = 6;
const REFERRAL: u8 = 7;

const UTM: [&str; 8] = [
    "google",
    "direct",
    "twitter",
    "linkedin",
    "newsletter",
    "producthunt",
    "partner",
    "referral",
];
const UTM_WEIGHTS: [f64; 8] = [0.30, 0.25, 0.08, 0.07, 0.08, 0.04, 0.06, 0.12];
/// Chance that a visitor from each source signs up.
const UTM_SIGNUP: [f64; 8] = [0.36, 0.45, 0.25, 0.35, 0.42, 0.22, 0.5, 0.6];
const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];
const DEVICE_WEIGHTS: [f64; 3] = [0.55, 0.38, 0.07];
const COUNTRIES: [&str; 8] = ["US", "GB", "DE", "FR", "IN", "BR", "CA", "NL"];
const COUNTRY_WEIGHTS: [f64; 8] = [0.35, 0.1, 0.1, 0.07, 0.12, 0.08, 0.08, 0.1];
const PATHS: [&str; 10] = [
    "/",
    "/pricing",
    "/features/invoicing",
    "/features/reminders",
    "/blog/how-to-invoice",
    "/blog/late-payments",
    "/templates/freelance",
    "/about",
    "/docs/api",
    "/signup",
];
const PLANS: [&str; 3] = ["starter", "pro", "business"];
const PLAN_WEIGHTS: [f64; 3] = [0.5, 0.38, 0.12];
const PLAN_MONTHLY: [i64; 3] = [9, 29, 99];
const CURRENCIES: [&str; 3] = ["USD", "EUR", "GBP"];
const CHANNELS: [&str; 3] = ["email", "link", "slack"];
const SECTIONS: [&str; 4] = ["branding", "taxes", "payment_methods", "team"];
const REASONS: [&str; 3] = ["too_expensive", "missing_feature", "duplicate_charge"];

/// Bit of [`Ev::flags`]: the event carries `user_id`.
const HAS_USER: u8 = 1;
/// Bit of [`Ev::flags`]: the event carries `anonymous_id`.
const HAS_ANON: u8 = 2;

/// One generated event, compact until it is written.
#[derive(Debug, Clone, Copy)]
struct Ev {
    /// When it reaches the collector: the order of the file.
    arrival: i64,
    /// Unique, to order equal arrivals deterministically.
    seq: u64,
    ts: i64,
    person: u32,
    kind: Kind,
    stage: u8,
    flags: u8,
    /// A small index whose meaning depends on `kind` (path, plan, ...).
    aux: u8,
    /// Money in cents (revenue, or an invoice's amount).
    cents: i64,
}

/// Events waiting for their arrival time, in one-minute buckets: a person
/// who arrives at `t` only adds events arriving at `t` or later, so every
/// bucket that ends by `t` is final and can be written out, sorted.
struct Arrivals {
    start: i64,
    buckets: Vec<Vec<Ev>>,
    /// First bucket not written yet.
    next: usize,
}

impl Arrivals {
    const WIDTH: i64 = MINUTE;

    fn push(&mut self, e: Ev) {
        let i = ((e.arrival - self.start) / Self::WIDTH).max(0) as usize;
        if i >= self.buckets.len() {
            self.buckets.resize_with(i + 1, Vec::new);
        }
        self.buckets[i.max(self.next)].push(e);
    }

    /// Writes every bucket that ends at or before `before` (all of them
    /// with `i64::MAX`).
    fn release<W: Write>(
        &mut self,
        before: i64,
        writer: &mut Writer<W>,
        persons: &[Person],
    ) -> std::io::Result<()> {
        while self.next < self.buckets.len()
            && self.start + (self.next as i64 + 1) * Self::WIDTH <= before
        {
            let mut bucket = std::mem::take(&mut self.buckets[self.next]);
            bucket.sort_unstable_by_key(|e| (e.arrival, e.seq));
            for e in &bucket {
                writer.emit(e, persons)?;
            }
            self.next += 1;
        }
        Ok(())
    }
}

/// What stays the same for a person.
#[derive(Debug, Clone, Copy)]
struct Person {
    utm: u8,
    device: u8,
    country: u8,
    plan: u8,
    annual: bool,
    currency: u8,
}

/// Samplers over a seeded generator.
struct Dice(StdRng);

impl Dice {
    fn u(&mut self) -> f64 {
        self.0.random::<f64>()
    }
    fn chance(&mut self, p: f64) -> bool {
        self.u() < p
    }
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.u()).ln()
    }
    fn normal(&mut self) -> f64 {
        let (a, b) = (1.0 - self.u(), self.u());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    }
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }
    /// Failures before the first success.
    fn geometric(&mut self, p: f64) -> u32 {
        ((1.0 - self.u()).ln() / (1.0 - p).ln()).floor().min(1e6) as u32
    }
    fn poisson(&mut self, lambda: f64) -> u32 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda > 30.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u32;
        }
        let limit = (-lambda).exp();
        let (mut k, mut p) = (0, self.u());
        while p > limit {
            k += 1;
            p *= self.u();
        }
        k
    }
    fn pick(&mut self, weights: &[f64]) -> u8 {
        let mut x = self.u() * weights.iter().sum::<f64>();
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i as u8;
            }
            x -= w;
        }
        (weights.len() - 1) as u8
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            lo
        } else {
            self.0.random_range(lo..hi)
        }
    }
}

/// Builds each person's events and queues them by arrival.
struct World {
    dice: Dice,
    seq: u64,
    /// Users who activated so far.
    users: u64,
    persons: Vec<Person>,
    queue: Arrivals,
    /// One person's events.
    out: Events,
}

/// One person's events, up to the end of the span.
struct Events {
    end: i64,
    evs: Vec<Ev>,
}

impl Events {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        ts: i64,
        person: u32,
        kind: Kind,
        stage: u8,
        flags: u8,
        aux: u8,
        cents: i64,
    ) {
        if ts >= self.end {
            return;
        }
        self.evs.push(Ev {
            arrival: ts,
            seq: 0,
            ts,
            person,
            kind,
            stage,
            flags,
            aux,
            cents,
        });
    }
}

impl World {
    /// Generates person `p`, who first visits at `arrival`.
    fn person(&mut self, p: u32, arrival: i64) {
        let d = &mut self.dice;
        let utm = d.pick(&UTM_WEIGHTS);
        let person = Person {
            utm,
            device: d.pick(&DEVICE_WEIGHTS),
            country: d.pick(&COUNTRY_WEIGHTS),
            plan: d.pick(&PLAN_WEIGHTS),
            annual: d.chance(0.2),
            currency: d.pick(&[0.7, 0.2, 0.1]),
        };
        self.persons.push(person);
        let signs_up = d.chance(UTM_SIGNUP[utm as usize]);
        let who = if signs_up {
            HAS_USER | HAS_ANON
        } else {
            HAS_ANON
        };

        // Discovery: sessions of page views.
        let sessions = 1 + if signs_up {
            d.geometric(0.5).min(5)
        } else {
            d.geometric(0.6).min(8)
        };
        let mut t = arrival;
        let mut session_start = arrival;
        for s in 0..sessions {
            if s > 0 {
                session_start += (d.exp(2.0 * DAY as f64) as i64).max(30 * MINUTE);
                t = session_start;
            }
            let views = 1 + d.geometric(0.42).min(20);
            for v in 0..views {
                if v > 0 {
                    t += (d.exp(50_000.0) as i64).max(2 * SECOND);
                }
                let path = if s == 0 && v == 0 {
                    d.pick(&[3.0, 1.0, 1.5, 0.7, 1.5, 1.0, 1.0, 0.1, 0.2, 0.0])
                } else {
                    d.pick(&[1.0, 2.0, 1.0, 0.7, 0.6, 0.5, 0.5, 0.3, 0.3, 0.0])
                };
                let d2 = d.range(0, 1000);
                self.out
                    .push(t, p, Kind::PageView, DISCOVERY, who, path, d2);
            }
        }
        if !signs_up {
            self.flush_person();
            return;
        }
        let d = &mut self.dice;
        t += (d.exp(90_000.0) as i64).max(5 * SECOND);
        self.out.push(t, p, Kind::PageView, DISCOVERY, who, 9, 0);
        // Some single-page apps log the signup in the same millisecond as
        // the page view that led to it.
        let s0 = if d.chance(0.1) {
            t
        } else {
            t + (d.exp(120_000.0) as i64).max(10 * SECOND)
        };
        self.out.push(s0, p, Kind::Signup, ACQUISITION, who, 0, 0);
        if d.chance(0.01) {
            let again = s0 + d.range(DAY, 60 * DAY);
            self.out
                .push(again, p, Kind::Signup, ACQUISITION, who, 0, 0);
        }
        if d.chance(0.55) {
            let at = s0 + (d.exp(20.0 * MINUTE as f64) as i64).max(30 * SECOND);
            let steps = d.range(3, 7) as u8;
            self.out
                .push(at, p, Kind::Onboarding, ACTIVATION, who, steps, 0);
        }
        self.using_the_product(p, s0, person);
        self.flush_person();
    }

    /// Activation, engagement, retention, revenue and referral of a person
    /// who signed up at `s0`.
    fn using_the_product(&mut self, p: u32, s0: i64, person: Person) {
        let user = HAS_USER;
        let web = HAS_USER | HAS_ANON;
        // Loyal, casual, tourist.
        let d = &mut self.dice;
        let class = d.pick(&[0.25, 0.45, 0.30]) as usize;
        let mut hazard = [0.05, 0.22, 0.6][class];
        if !d.chance([0.88, 0.7, 0.42][class]) {
            // Never activates; may look around once more.
            if d.chance(0.3) {
                let at = s0 + d.range(HOUR, 10 * DAY);
                self.out.push(at, p, Kind::Login, RETENTION, web, 0, 0);
            }
            return;
        }
        let t_act = s0 + (d.lognormal(3.0 * HOUR as f64, 2.1) as i64).max(MINUTE);
        // Invoices per active week: heavy-tailed (Pareto, alpha 1.5). Its
        // quantiles are spread evenly over the users (a Weyl sequence)
        // rather than drawn independently, so that a small dataset's size
        // does not hinge on how many whales it happens to draw.
        self.users += 1;
        let q = (0.5 + self.users as f64 * 0.618_033_988_749_894_9).fract();
        let rate = (2.4 / (1.0 - q).powf(1.0 / 1.5)).min(250.0);
        let mut invoices = 0u32;
        let mut paid_until: Option<i64> = None;
        let mut first = true;
        let first_week = (t_act - s0) / WEEK;
        let mut w = 0;
        loop {
            let week_start = s0 + w * WEEK;
            if week_start >= self.out.end {
                break;
            }
            let week_end = week_start + WEEK;
            let d = &mut self.dice;
            if w > 0
                && d.chance(if paid_until.is_some() {
                    hazard * 0.4
                } else {
                    hazard
                })
            {
                break;
            }
            if w >= 1 {
                let logins = 1 + d.poisson(0.5 + rate * 0.3);
                for _ in 0..logins.min(40) {
                    let at = d.range(week_start, week_end);
                    self.out.push(at, p, Kind::Login, RETENTION, web, 0, 0);
                }
            }
            if w >= first_week {
                let from = if w == first_week { t_act } else { week_start };
                let n = if w == first_week {
                    let left = (week_end - t_act) as f64 / WEEK as f64;
                    1 + d.poisson(rate * left)
                } else {
                    d.poisson(rate)
                };
                let mut times: Vec<i64> = (0..n)
                    .map(|i| {
                        if i == 0 && first {
                            from
                        } else {
                            d.range(from, week_end)
                        }
                    })
                    .collect();
                // Bulk sends: several invoices in one millisecond.
                if n >= 2 && d.chance(0.1) {
                    let bulk = (2 + d.geometric(0.5) as usize).min(times.len());
                    let at = times[times.len() - 1];
                    let len = times.len();
                    times[len - bulk..].fill(at);
                }
                times.sort_unstable();
                for at in times {
                    let stage = if first { ACTIVATION } else { ENGAGEMENT };
                    first = false;
                    invoices += 1;
                    let amount = (d.lognormal(35_000.0, 1.1) as i64).clamp(500, 5_000_000);
                    let items = 1 + d.geometric(0.4).min(30) as u8;
                    self.out
                        .push(at, p, Kind::InvoiceSent, stage, user, items, amount);
                    if d.chance(0.6) {
                        let seen = at + (d.exp(6.0 * HOUR as f64) as i64).max(MINUTE);
                        let dev = d.pick(&DEVICE_WEIGHTS);
                        self.out
                            .push(seen, p, Kind::InvoiceViewed, ENGAGEMENT, user, dev, 0);
                    }
                    if d.chance(0.45) {
                        let paid = at + (d.exp(4.0 * DAY as f64) as i64).max(HOUR);
                        let method = d.range(0, 3) as u8;
                        self.out
                            .push(paid, p, Kind::InvoicePaid, ENGAGEMENT, user, method, amount);
                    }
                }
            }
            if paid_until.is_none() && invoices >= 2 && d.chance([0.12, 0.06, 0.03][class]) {
                let at = d.range(week_start.max(t_act), week_end);
                let price = PLAN_MONTHLY[person.plan as usize] * if person.annual { 10 } else { 1 };
                self.out
                    .push(at, p, Kind::PlanPurchased, REVENUE, user, 0, price * 100);
                if d.chance(0.05) {
                    let back = at + (d.exp(4.0 * DAY as f64) as i64).max(HOUR);
                    let reason = d.range(0, 3) as u8;
                    self.out
                        .push(back, p, Kind::Refund, REVENUE, user, reason, -price * 100);
                    hazard = hazard.max(0.5);
                } else {
                    paid_until = Some(at);
                    hazard *= 0.8;
                }
            }
            // Monthly renewals falling in this week.
            if let Some(since) = paid_until.filter(|_| !person.annual) {
                let mut due = since + 30 * DAY;
                while due < week_end {
                    if due >= week_start {
                        let cents = PLAN_MONTHLY[person.plan as usize] * 100;
                        self.out
                            .push(due, p, Kind::Renewed, REVENUE, user, 0, cents);
                    }
                    due += 30 * DAY;
                }
            }
            if invoices >= 3 && d.chance(0.06) {
                let n = 1 + d.geometric(0.5).min(10);
                for _ in 0..n {
                    let at = d.range(week_start.max(t_act), week_end);
                    let channel = d.pick(&[0.6, 0.3, 0.1]);
                    self.out
                        .push(at, p, Kind::InviteSent, REFERRAL, web, channel, 0);
                }
            }
            if d.chance(0.08) {
                let at = d.range(week_start.max(s0), week_end);
                let section = d.range(0, 4) as u8;
                self.out
                    .push(at, p, Kind::Settings, NO_STAGE, web, section, 0);
            }
            w += 1;
        }
    }

    /// Moves the person's events into the arrival queue.
    fn flush_person(&mut self) {
        let d = &mut self.dice;
        for mut e in self.out.evs.drain(..) {
            // A few mobile events are queued offline and arrive late.
            if d.chance(0.02) {
                e.arrival += d.exp(30.0 * MINUTE as f64) as i64;
            }
            e.seq = self.seq;
            self.seq += 1;
            self.queue.push(e);
        }
    }
}

/// Writes events as wire-form lines, with ids, retries and bad lines.
struct Writer<W: Write> {
    out: W,
    dice: Dice,
    seed: u64,
    clock: IdClock,
    /// Chance that the backfill clock moves to the next millisecond.
    tick: f64,
    mint_ms: i64,
    dup_rate: f64,
    invalid_rate: f64,
    line: Vec<u8>,
    /// Retries waiting to be sent again: (lines to wait, the line).
    retries: Vec<(u32, Vec<u8>)>,
    stats: Stats,
}

#[derive(Debug, Default)]
struct Stats {
    lines: u64,
    events: u64,
    duplicates: u64,
    invalid: u64,
    by_name: [u64; 12],
}

/// splitmix64's finaliser: a bijection, so distinct inputs stay distinct.
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `YYYY-MM-DDTHH:MM:SS.mmm` of Unix ms (UTC), without the zone.
fn write_datetime(out: &mut Vec<u8>, ms: i64) {
    let days = ms.div_euclid(DAY);
    let in_day = ms.rem_euclid(DAY);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}",
        in_day / HOUR,
        in_day / MINUTE % 60,
        in_day / SECOND % 60,
        in_day % SECOND
    );
}

fn write_money(out: &mut Vec<u8>, cents: i64) {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.abs();
    if c % 100 == 0 {
        let _ = write!(out, "{sign}{}", c / 100);
    } else {
        let _ = write!(out, "{sign}{}.{:02}", c / 100, c % 100);
    }
}

impl<W: Write> Writer<W> {
    fn next_id(&mut self, ts: i64) -> Uuid {
        let ms = match self.clock {
            IdClock::Backfill => {
                if self.dice.chance(self.tick) {
                    self.mint_ms += 1;
                }
                self.mint_ms
            }
            IdClock::Event => ts,
        };
        let random: [u8; 10] = self.dice.0.random();
        uuid::Builder::from_unix_timestamp_millis(ms as u64, &random).into_uuid()
    }

    fn user_id(&self, person: u32) -> String {
        format!(
            "u_{:010x}",
            mix64(self.seed << 32 | u64::from(person)) >> 24
        )
    }

    fn anonymous_id(&self, person: u32) -> String {
        format!(
            "anon-{:016x}",
            mix64((self.seed ^ 0x5eed) << 32 | u64::from(person))
        )
    }

    /// The wire form of `e` into `self.line` (without the newline).
    fn format(&mut self, e: &Ev, persons: &[Person], id: Uuid) {
        let pr = persons[e.person as usize];
        let mut buf = [0u8; 36];
        let mut l = std::mem::take(&mut self.line);
        l.clear();
        l.extend_from_slice(b"{\"id\":\"");
        l.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
        l.extend_from_slice(b"\",\"event\":\"");
        l.extend_from_slice(e.kind.name().as_bytes());
        l.push(b'"');
        if e.flags & HAS_USER != 0 {
            let _ = write!(l, ",\"user_id\":\"{}\"", self.user_id(e.person));
        }
        if e.flags & HAS_ANON != 0 {
            let _ = write!(l, ",\"anonymous_id\":\"{}\"", self.anonymous_id(e.person));
        }
        l.extend_from_slice(b",\"timestamp\":");
        // Mostly the SDK's RFC 3339; other producers send Unix ms, a local
        // offset, or microseconds.
        match self.dice.0.random_range(0..100u32) {
            0..75 => {
                l.push(b'"');
                write_datetime(&mut l, e.ts);
                l.extend_from_slice(b"Z\"");
            }
            75..97 => {
                let _ = write!(l, "{}", e.ts);
            }
            97..99 => {
                let offset = [2 * HOUR, -5 * HOUR, 5 * HOUR + 30 * MINUTE][e.person as usize % 3];
                l.push(b'"');
                write_datetime(&mut l, e.ts + offset);
                let sign = if offset < 0 { '-' } else { '+' };
                let _ = write!(
                    l,
                    "{sign}{:02}:{:02}\"",
                    offset.abs() / HOUR,
                    offset.abs() / MINUTE % 60
                );
            }
            _ => {
                l.push(b'"');
                write_datetime(&mut l, e.ts);
                let micros = self.dice.0.random_range(0..1000u32);
                let _ = write!(l, "{micros:03}Z\"");
            }
        }
        if e.stage != NO_STAGE {
            let _ = write!(l, ",\"stage\":\"{}\"", STAGES[e.stage as usize]);
        }
        let revenue = matches!(e.kind, Kind::PlanPurchased | Kind::Renewed | Kind::Refund);
        if revenue {
            l.extend_from_slice(b",\"revenue\":");
            write_money(&mut l, e.cents);
        }
        l.extend_from_slice(b",\"properties\":{");
        let utm = UTM[pr.utm as usize];
        let device = DEVICES[pr.device as usize];
        let plan = PLANS[pr.plan as usize];
        let billing = if pr.annual { "annual" } else { "monthly" };
        let currency = CURRENCIES[pr.currency as usize];
        let _ = match e.kind {
            Kind::PageView => write!(
                l,
                "\"path\":\"{}\",\"utm_source\":\"{utm}\",\"device\":\"{device}\",\"country\":\"{}\"",
                PATHS[e.aux as usize], COUNTRIES[pr.country as usize]
            ),
            Kind::Signup => write!(
                l,
                "\"plan\":\"free\",\"utm_source\":\"{utm}\",\"device\":\"{device}\",\"country\":\"{}\"",
                COUNTRIES[pr.country as usize]
            ),
            Kind::Onboarding => write!(l, "\"steps_completed\":{}", e.aux),
            Kind::InvoiceSent => {
                l.extend_from_slice(b"\"amount\":");
                write_money(&mut l, e.cents);
                write!(l, ",\"currency\":\"{currency}\",\"items\":{}", e.aux)
            }
            Kind::InvoiceViewed => write!(l, "\"device\":\"{}\"", DEVICES[e.aux as usize]),
            Kind::InvoicePaid => {
                l.extend_from_slice(b"\"amount\":");
                write_money(&mut l, e.cents);
                let method = ["card", "bank_transfer", "paypal"][e.aux as usize];
                write!(l, ",\"currency\":\"{currency}\",\"method\":\"{method}\"")
            }
            Kind::Login => write!(l, "\"device\":\"{device}\",\"method\":\"password\""),
            Kind::PlanPurchased | Kind::Renewed => {
                l.extend_from_slice(b"\"plan\":\"");
                l.extend_from_slice(plan.as_bytes());
                write!(
                    l,
                    "\",\"billing\":\"{billing}\",\"amount\":{}",
                    e.cents / 100
                )
            }
            Kind::Refund => write!(
                l,
                "\"plan\":\"{plan}\",\"reason\":\"{}\"",
                REASONS[e.aux as usize]
            ),
            Kind::InviteSent => write!(l, "\"channel\":\"{}\"", CHANNELS[e.aux as usize]),
            Kind::Settings => write!(l, "\"section\":\"{}\"", SECTIONS[e.aux as usize]),
        };
        l.extend_from_slice(b"}}");
        self.line = l;
    }

    fn emit(&mut self, e: &Ev, persons: &[Person]) -> std::io::Result<()> {
        let id = self.next_id(e.ts);
        self.format(e, persons, id);
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.stats.lines += 1;
        self.stats.events += 1;
        self.stats.by_name[e.kind as usize] += 1;
        if self.dice.chance(self.dup_rate) {
            let mut again = self.line.clone();
            // Some clients upper-case ids; ids compare case-insensitively.
            if self.dice.chance(0.2) {
                again[7..43].make_ascii_uppercase();
            }
            let wait = self.dice.0.random_range(1..64);
            self.retries.push((wait, again));
        }
        if self.dice.chance(self.invalid_rate) {
            self.invalid(e, persons)?;
        }
        let mut i = 0;
        while i < self.retries.len() {
            self.retries[i].0 -= 1;
            if self.retries[i].0 == 0 {
                let (_, line) = self.retries.swap_remove(i);
                self.out.write_all(&line)?;
                self.stats.lines += 1;
                self.stats.duplicates += 1;
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// One line that SPEC §1 rejects, derived from a valid event.
    fn invalid(&mut self, e: &Ev, persons: &[Person]) -> std::io::Result<()> {
        let id = self.next_id(e.ts);
        self.format(e, persons, id);
        let line = String::from_utf8(std::mem::take(&mut self.line)).expect("ASCII");
        let name = format!("\"event\":\"{}\"", e.kind.name());
        let key = format!("\"anonymous_id\":\"{}\"", self.anonymous_id(e.person));
        let user = format!("\"user_id\":\"{}\"", self.user_id(e.person));
        let bad = match self.dice.0.random_range(0..8u32) {
            0 => line.replacen(&format!("{name},"), "", 1),
            1 => line.replacen(&name, "\"event\":\"\"", 1),
            2 => {
                let cut = line.find(",\"timestamp\":").expect("has a timestamp");
                let rest = &line[cut + 1..];
                let end = rest.find(",\"").expect("more fields");
                format!(
                    "{},\"timestamp\":\"2099-01-01T00:00:00Z\"{}",
                    &line[..cut],
                    &rest[end..]
                )
            }
            3 => line.replacen(
                "\"properties\"",
                "\"context\":{\"ip\":\"203.0.113.7\"},\"properties\"",
                1,
            ),
            4 => replace_field(&line, "revenue", "\"29.00\""),
            5 => replace_field(&line, "stage", "\"activated\""),
            6 => line
                .replacen(&format!(",{user}"), "", 1)
                .replacen(&format!(",{key}"), "", 1),
            _ => {
                let cut = line.find(",\"timestamp\":").expect("has a timestamp");
                let rest = &line[cut + 1..];
                let end = rest.find(",\"").expect("more fields");
                format!(
                    "{},\"timestamp\":\"2026-08-03 12:00:00Z\"{}",
                    &line[..cut],
                    &rest[end..]
                )
            }
        };
        self.out.write_all(bad.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.stats.lines += 1;
        self.stats.invalid += 1;
        Ok(())
    }
}

/// `line` with top-level `field` set to the JSON `value` (replaced if
/// present, else inserted before the properties). The generated values
/// never contain `,"`.
fn replace_field(line: &str, field: &str, value: &str) -> String {
    let key = format!(",\"{field}\":");
    match line.find(&key) {
        Some(at) => {
            let rest = &line[at + key.len()..];
            let end = rest.find(",\"").expect("more fields");
            format!("{}{key}{value}{}", &line[..at], &rest[end..])
        }
        None => line.replacen(
            ",\"properties\"",
            &format!("{key}{value},\"properties\""),
            1,
        ),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let end = tally_event::time::parse_date_or_rfc3339(&args.end)
        .map_err(|m| anyhow::anyhow!("--end: {m}"))?;
    if args.ids_per_ms.is_nan() || args.ids_per_ms < 1.0 {
        bail!("--ids-per-ms must be at least 1");
    }
    if args.days < 1 {
        bail!("--days must be at least 1");
    }
    let start = end - args.days * DAY;
    let persons = args
        .persons
        .unwrap_or(((args.events as f64 / EVENTS_PER_PERSON).round() as u64).max(1));
    if persons > u64::from(u32::MAX) {
        bail!("at most {} persons", u32::MAX);
    }
    let out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut world = World {
        dice: Dice(StdRng::seed_from_u64(args.seed)),
        users: 0,
        seq: 0,
        persons: Vec::with_capacity(persons as usize),
        queue: Arrivals {
            start,
            buckets: Vec::new(),
            next: 0,
        },
        out: Events {
            end,
            evs: Vec::new(),
        },
    };
    let mut writer = Writer {
        out: std::io::BufWriter::with_capacity(1 << 20, out),
        dice: Dice(StdRng::seed_from_u64(mix64(args.seed ^ 0xa5a5_a5a5))),
        seed: args.seed,
        clock: args.id_clock,
        tick: 1.0 / args.ids_per_ms,
        // The backfill runs a day after the span.
        mint_ms: end + DAY,
        dup_rate: args.dup_rate,
        invalid_rate: args.invalid_rate,
        line: Vec::with_capacity(512),
        retries: Vec::new(),
        stats: Stats::default(),
    };

    // Arrivals per day: growing over the span, fewer at weekends.
    let weights: Vec<f64> = (0..args.days)
        .map(|day| {
            let weekday = (start / DAY + day + 3).rem_euclid(7); // 0 = Monday
            let weekend = if weekday >= 5 { 0.65 } else { 1.0 };
            (1.0 + day as f64 / args.days as f64) * weekend
        })
        .collect();
    let total: f64 = weights.iter().sum();
    // Hours of the day, UTC: quiet at night, busy in the afternoon.
    let hours: Vec<f64> = (0..24)
        .map(|h| 1.0 + 0.9 * (std::f64::consts::TAU * (h as f64 - 9.0) / 24.0).sin())
        .collect();
    let mut made = 0u64;
    let mut carry = 0.0;
    let mut arrivals = Vec::new();
    for (day, w) in weights.iter().enumerate() {
        let want = persons as f64 * w / total + carry;
        let mut n = want.floor() as u64;
        if day as i64 == args.days - 1 {
            n = persons - made;
        }
        carry = want - n as f64;
        made += n;
        let day_start = start + day as i64 * DAY;
        arrivals.clear();
        for _ in 0..n {
            let hour = i64::from(world.dice.pick(&hours));
            arrivals.push(day_start + hour * HOUR + world.dice.range(0, HOUR));
        }
        arrivals.sort_unstable();
        for &at in &arrivals {
            // Everything due before this person arrives is final.
            world.queue.release(at, &mut writer, &world.persons)?;
            let p = world.persons.len() as u32;
            world.person(p, at);
        }
    }
    world.queue.release(i64::MAX, &mut writer, &world.persons)?;
    for (_, line) in std::mem::take(&mut writer.retries) {
        writer.out.write_all(&line)?;
        writer.stats.lines += 1;
        writer.stats.duplicates += 1;
    }
    writer.out.flush()?;
    let secs = started.elapsed().as_secs_f64();
    let s = &writer.stats;
    let by_name: serde_json::Map<String, serde_json::Value> = KINDS
        .iter()
        .map(|k| (k.name().to_string(), s.by_name[*k as usize].into()))
        .collect();
    eprintln!(
        "{}",
        serde_json::json!({
            "lines": s.lines,
            "events": s.events,
            "duplicate_lines": s.duplicates,
            "invalid_lines": s.invalid,
            "persons": persons,
            "from": tally_event::time::format_rfc3339(start),
            "to": tally_event::time::format_rfc3339(end),
            "seconds": secs,
            "lines_per_sec": s.lines as f64 / secs,
            "by_name": by_name,
        })
    );
    Ok(())
}
