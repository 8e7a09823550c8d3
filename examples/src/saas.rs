//! A simulated invoicing SaaS: visitors land, some sign up, some send a first
//! invoice, keep using it week after week, pay for a plan, and invite
//! teammates (who arrive as new visitors).
//!
//! The simulation is deterministic for a given [`Params`]: the same seed and
//! end time give the same events with the same ids, so sending them twice
//! stores them once (the second run reports duplicates).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tally_sdk::serde_json::{Value, json};
use tally_sdk::{Person, Stage, Uuid};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Params {
    /// Visitors arriving on their own (invited teammates come on top).
    pub visitors: usize,
    /// Length of the simulated history, ending at `end_ms`.
    pub days: u32,
    /// Seed of the random choices.
    pub seed: u64,
    /// End of the history, Unix ms; no event is later than this.
    pub end_ms: i64,
}

/// One simulated event.
#[derive(Debug, Clone, PartialEq)]
pub struct SimEvent {
    /// A UUIDv7 derived from the seed and the timestamp.
    pub id: Uuid,
    /// Who.
    pub person: Person,
    /// The visitor's anonymous id on the sign-up event (links the two).
    pub anonymous_id: Option<String>,
    /// Event name.
    pub name: &'static str,
    /// Lifecycle stage.
    pub stage: Stage,
    /// When, Unix ms.
    pub at_ms: i64,
    /// Money, for plan purchases, renewals and refunds.
    pub revenue: Option<f64>,
    /// Properties.
    pub properties: Vec<(&'static str, Value)>,
}

struct Sim {
    rng: StdRng,
    start: i64,
    end: i64,
    events: Vec<SimEvent>,
}

impl Sim {
    fn emit(
        &mut self,
        person: &Person,
        name: &'static str,
        stage: Stage,
        at: i64,
        props: Vec<(&'static str, Value)>,
    ) -> bool {
        if at > self.end {
            return false;
        }
        let bytes: [u8; 10] = self.rng.random();
        let id = uuid::Builder::from_unix_timestamp_millis(at as u64, &bytes).into_uuid();
        self.events.push(SimEvent {
            id,
            person: person.clone(),
            anonymous_id: None,
            name,
            stage,
            at_ms: at,
            revenue: None,
            properties: props,
        });
        true
    }

    fn last(&mut self) -> &mut SimEvent {
        self.events.last_mut().expect("an event was just emitted")
    }

    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        self.rng.random_range(lo..=hi)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }
}

/// Runs the simulation; events come out sorted by time.
pub fn simulate(p: &Params) -> Vec<SimEvent> {
    let mut sim = Sim {
        rng: StdRng::seed_from_u64(p.seed),
        start: p.end_ms - i64::from(p.days) * DAY,
        end: p.end_ms,
        events: Vec::new(),
    };
    // (visitor number, arrival time, came through an invite)
    let mut arrivals: Vec<(usize, i64, bool)> = (0..p.visitors)
        .map(|i| {
            // More visitors lately: the product is growing.
            let span = (sim.end - sim.start) as f64;
            let t = sim.start + (span * sim.rng.random::<f64>().powf(0.75)) as i64;
            (i, t, false)
        })
        .collect();
    let mut next_visitor = p.visitors;
    let invite_cap = p.visitors / 2;
    let mut i = 0;
    while i < arrivals.len() {
        let (n, at, invited) = arrivals[i];
        i += 1;
        for when in visitor(&mut sim, n, at, invited) {
            if next_visitor - p.visitors < invite_cap {
                arrivals.push((next_visitor, when, true));
                next_visitor += 1;
            }
        }
    }
    sim.events.sort_by_key(|e| e.at_ms);
    sim.events
}

/// One visitor's life; returns when the teammates they invited arrive.
fn visitor(sim: &mut Sim, n: usize, arrival: i64, invited: bool) -> Vec<i64> {
    let anon = Person::anonymous(format!("anon-{n:05}"));
    let source = if invited {
        "invite"
    } else {
        [
            "google",
            "google",
            "newsletter",
            "twitter",
            "direct",
            "direct",
        ][sim.between(0, 5) as usize]
    };
    let mut t = arrival;
    if !sim.emit(
        &anon,
        "landing_page_viewed",
        Stage::Discovery,
        t,
        vec![("utm_source", json!(source))],
    ) {
        return Vec::new();
    }
    if sim.chance(0.5) {
        t += sim.between(MINUTE, 10 * MINUTE);
        sim.emit(&anon, "pricing_page_viewed", Stage::Discovery, t, vec![]);
    }
    let signup_p = if invited { 0.55 } else { 0.3 };
    if !sim.chance(signup_p) {
        return Vec::new();
    }
    let user = Person::user(format!("user-{n:05}"));
    t += sim.between(2 * MINUTE, 30 * MINUTE);
    if !sim.emit(
        &user,
        "signed_up",
        Stage::Acquisition,
        t,
        vec![("plan", json!("free")), ("utm_source", json!(source))],
    ) {
        return Vec::new();
    }
    sim.last().anonymous_id = Some(anon.key().to_owned());

    // Activation: a first invoice, created then sent.
    if !sim.chance(if invited { 0.75 } else { 0.6 }) {
        return Vec::new();
    }
    t += sim.between(10 * MINUTE, 3 * DAY);
    sim.emit(&user, "invoice_created", Stage::Activation, t, vec![]);
    t += sim.between(MINUTE, 2 * HOUR);
    let amount = sim.between(50, 5000);
    if !sim.emit(
        &user,
        "invoice_sent",
        Stage::Activation,
        t,
        vec![("amount_eur", json!(amount)), ("first", json!(true))],
    ) {
        return Vec::new();
    }

    let stickiness: f64 = sim.rng.random_range(0.5..0.98);
    let pays = sim.chance(0.3);
    let upgrade_week = sim.between(0, 4);
    let mut plan: Option<(f64, i64)> = None; // (monthly price, next renewal)
    let mut invites = Vec::new();
    if sim.chance(0.25) {
        let at = t + sim.between(HOUR, 5 * DAY);
        let count = sim.between(1, 3);
        for _ in 0..count {
            if sim.emit(&user, "teammate_invited", Stage::Referral, at, vec![]) {
                invites.push(at + sim.between(HOUR, 3 * DAY));
            }
        }
    }

    // Weekly use, fading over time.
    let mut week_start = t - t.rem_euclid(WEEK) + WEEK;
    let mut week = 0i64;
    let mut quiet_weeks = 0;
    while week_start < sim.end {
        week += 1;
        let active = sim.chance(stickiness * 0.96f64.powi(week as i32));
        if active {
            quiet_weeks = 0;
            let mut s = week_start;
            for _ in 0..sim.between(1, 3) {
                s = week_start + sim.between(0, 6) * DAY + sim.between(8 * HOUR, 18 * HOUR);
                sim.emit(&user, "logged_in", Stage::Retention, s, vec![]);
                for _ in 0..sim.between(1, 4) {
                    s += sim.between(5 * MINUTE, 3 * HOUR);
                    let amount = sim.between(50, 5000);
                    sim.emit(
                        &user,
                        "invoice_sent",
                        Stage::Engagement,
                        s,
                        vec![("amount_eur", json!(amount))],
                    );
                }
            }
            if pays && plan.is_none() && week >= upgrade_week {
                s += sim.between(MINUTE, HOUR);
                let (name, price) = if sim.chance(0.3) {
                    ("pro", 79.0)
                } else {
                    ("starter", 29.0)
                };
                if sim.emit(
                    &user,
                    "plan_upgraded",
                    Stage::Revenue,
                    s,
                    vec![("plan", json!(name))],
                ) {
                    sim.last().revenue = Some(price);
                    plan = Some((price, s + 30 * DAY));
                    if sim.chance(0.03) {
                        let r = s + sim.between(HOUR, 5 * DAY);
                        if sim.emit(
                            &user,
                            "refund_issued",
                            Stage::Revenue,
                            r,
                            vec![("plan", json!(name))],
                        ) {
                            sim.last().revenue = Some(-price);
                            plan = None;
                        }
                    }
                }
            }
        } else {
            quiet_weeks += 1;
        }
        // Monthly renewals while the user keeps coming back.
        if let Some((price, due)) = plan {
            if due < week_start + WEEK {
                if quiet_weeks < 3
                    && sim.emit(&user, "subscription_renewed", Stage::Revenue, due, vec![])
                {
                    sim.last().revenue = Some(price);
                    plan = Some((price, due + 30 * DAY));
                } else {
                    plan = None;
                }
            }
        }
        week_start += WEEK;
    }
    invites
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn params() -> Params {
        Params {
            visitors: 500,
            days: 56,
            seed: 7,
            end_ms: 1_767_225_600_000,
        }
    }

    #[test]
    fn deterministic_sorted_and_in_range() {
        let p = params();
        let a = simulate(&p);
        assert_eq!(a, simulate(&p));
        assert!(a.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        let start = p.end_ms - i64::from(p.days) * DAY;
        assert!(a.iter().all(|e| e.at_ms >= start && e.at_ms <= p.end_ms));
        let ids: HashSet<Uuid> = a.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), a.len());
        assert!(a.iter().all(|e| e.id.get_version_num() == 7));
    }

    #[test]
    fn looks_like_a_funnel() {
        let events = simulate(&params());
        let mut people: HashMap<&str, HashSet<String>> = HashMap::new();
        for e in &events {
            people
                .entry(e.name)
                .or_default()
                .insert(e.person.key().to_owned());
        }
        let n = |name: &str| people.get(name).map_or(0, HashSet::len);
        assert!(
            n("landing_page_viewed") >= 500,
            "invited teammates add visitors"
        );
        assert!(n("signed_up") < n("landing_page_viewed"));
        assert!(n("invoice_created") < n("signed_up"));
        assert!(n("plan_upgraded") < n("invoice_created"));
        assert!(n("plan_upgraded") > 0 && n("teammate_invited") > 0 && n("logged_in") > 0);
        // Sign-ups link the visitor's anonymous id.
        assert!(
            events
                .iter()
                .filter(|e| e.name == "signed_up")
                .all(|e| e.anonymous_id.is_some())
        );
        assert!(
            events
                .iter()
                .filter(|e| e.stage == Stage::Revenue)
                .all(|e| e.revenue.is_some())
        );
    }
}
