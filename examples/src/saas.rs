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
use tally_sdk::{IDENTIFY_EVENT, Person, Stage, Uuid};

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
    /// An anonymous id on a user's event (`signup`, `identify`): links the
    /// two (SPEC §1).
    pub anonymous_id: Option<String>,
    /// Event name.
    pub name: &'static str,
    /// Lifecycle stage (none for `identify`, which links ids).
    pub stage: Option<Stage>,
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
        stage: Option<Stage>,
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

/// Where a visitor comes from: `utm_source`, `utm_medium`, `utm_campaign`
/// of the landing page's URL (`None` for direct visits, which have none).
fn channel(sim: &mut Sim, invited: bool) -> Option<(&'static str, &'static str, &'static str)> {
    if invited {
        return Some(("invite", "referral", "teammates"));
    }
    [
        Some(("google", "cpc", "invoicing-search")),
        Some(("google", "cpc", "invoicing-search")),
        Some(("newsletter", "email", "december-digest")),
        Some(("twitter", "social", "launch-week")),
        None,
        None,
    ][sim.between(0, 5) as usize]
}

/// A `page_view` as the browser SDK sends it: the path, and the UTM tags
/// of the URL.
fn page(path: &str, utm: Option<(&str, &str, &str)>) -> Vec<(&'static str, Value)> {
    let mut props = vec![("path", json!(path))];
    if let Some((source, medium, campaign)) = utm {
        props.push(("utm_source", json!(source)));
        props.push(("utm_medium", json!(medium)));
        props.push(("utm_campaign", json!(campaign)));
    }
    props
}

/// One visitor's life; returns when the teammates they invited arrive.
fn visitor(sim: &mut Sim, n: usize, arrival: i64, invited: bool) -> Vec<i64> {
    // The browser's anonymous id (the browser SDK keeps it in localStorage).
    let anon = Person::anonymous(format!("anon-{n:05}"));
    let utm = channel(sim, invited);
    let mut t = arrival;
    if !sim.emit(
        &anon,
        "page_view",
        Some(Stage::Discovery),
        t,
        page("/", utm),
    ) {
        return Vec::new();
    }
    if sim.chance(0.5) {
        t += sim.between(MINUTE, 10 * MINUTE);
        sim.emit(
            &anon,
            "page_view",
            Some(Stage::Discovery),
            t,
            page("/pricing", None),
        );
    }
    // Some come back another day (typing the address: no UTM tags) before
    // they decide.
    if sim.chance(0.3) {
        t += sim.between(DAY, 6 * DAY);
        sim.emit(
            &anon,
            "page_view",
            Some(Stage::Discovery),
            t,
            page("/", None),
        );
    }
    let signup_p = if invited { 0.55 } else { 0.3 };
    if !sim.chance(signup_p) {
        return Vec::new();
    }
    let user = Person::user(format!("user-{n:05}"));
    t += sim.between(2 * MINUTE, 30 * MINUTE);
    sim.emit(
        &anon,
        "page_view",
        Some(Stage::Discovery),
        t,
        page("/signup", None),
    );
    t += sim.between(MINUTE, 5 * MINUTE);
    let source = utm.map_or("direct", |(source, _, _)| source);
    if !sim.emit(
        &user,
        "signup",
        Some(Stage::Acquisition),
        t,
        vec![("plan", json!("free")), ("utm_source", json!(source))],
    ) {
        return Vec::new();
    }
    // The signup carries both ids: it links the visitor's page views to
    // the new user (SPEC §1).
    sim.last().anonymous_id = Some(anon.key().to_owned());

    // Activation: a first invoice, created then sent.
    if !sim.chance(if invited { 0.75 } else { 0.6 }) {
        return Vec::new();
    }
    t += sim.between(10 * MINUTE, 3 * DAY);
    sim.emit(&user, "invoice_created", Some(Stage::Activation), t, vec![]);
    t += sim.between(MINUTE, 2 * HOUR);
    let amount = sim.between(50, 5000);
    if !sim.emit(
        &user,
        "invoice_sent",
        Some(Stage::Activation),
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
            if sim.emit(&user, "teammate_invited", Some(Stage::Referral), at, vec![]) {
                invites.push(at + sim.between(HOUR, 3 * DAY));
            }
        }
    }

    // Weekly use, fading over time.
    let mut week_start = t - t.rem_euclid(WEEK) + WEEK;
    let mut week = 0i64;
    let mut quiet_weeks = 0;
    let mut second_device = false;
    while week_start < sim.end {
        week += 1;
        let active = sim.chance(stickiness * 0.96f64.powi(week as i32));
        if active {
            quiet_weeks = 0;
            let mut s = week_start;
            if week >= 2 && !second_device && sim.chance(0.1) {
                // A login from another device: its browser's anonymous id
                // views the login page, then the app identifies it.
                second_device = true;
                let device = Person::anonymous(format!("anon-{n:05}-2"));
                s = week_start + sim.between(0, 6) * DAY + sim.between(8 * HOUR, 18 * HOUR);
                sim.emit(
                    &device,
                    "page_view",
                    Some(Stage::Discovery),
                    s,
                    page("/login", None),
                );
                s += sim.between(MINUTE, 3 * MINUTE);
                if sim.emit(&user, IDENTIFY_EVENT, None, s, vec![]) {
                    sim.last().anonymous_id = Some(device.key().to_owned());
                }
            }
            for _ in 0..sim.between(1, 3) {
                s = week_start + sim.between(0, 6) * DAY + sim.between(8 * HOUR, 18 * HOUR);
                sim.emit(&user, "logged_in", Some(Stage::Retention), s, vec![]);
                for _ in 0..sim.between(1, 4) {
                    s += sim.between(5 * MINUTE, 3 * HOUR);
                    let amount = sim.between(50, 5000);
                    sim.emit(
                        &user,
                        "invoice_sent",
                        Some(Stage::Engagement),
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
                    Some(Stage::Revenue),
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
                            Some(Stage::Revenue),
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
                    && sim.emit(
                        &user,
                        "subscription_renewed",
                        Some(Stage::Revenue),
                        due,
                        vec![],
                    )
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

    /// Persons as the analyses count them (SPEC §1): an anonymous id that
    /// an event with both ids linked counts for that user.
    fn linked_people(events: &[SimEvent]) -> HashMap<&str, HashSet<String>> {
        let mut links: HashMap<&str, &str> = HashMap::new();
        for e in events {
            if let (Person::User(user), Some(anon)) = (&e.person, &e.anonymous_id) {
                assert!(links.insert(anon, user).is_none(), "{anon} is linked once");
            }
        }
        let mut people: HashMap<&str, HashSet<String>> = HashMap::new();
        for e in events {
            let key = e.person.key();
            let person = links.get(key).copied().unwrap_or(key);
            people.entry(e.name).or_default().insert(person.to_owned());
        }
        people
    }

    #[test]
    fn looks_like_a_funnel_across_the_signup() {
        let events = simulate(&params());
        let people = linked_people(&events);
        let n = |name: &str| people.get(name).map_or(0, HashSet::len);
        // One person per visitor: their anonymous page views, their signup
        // and a second device's views all count for them.
        let visitors: HashSet<&str> = events
            .iter()
            .filter(|e| e.person.is_anonymous())
            .map(|e| &e.person.key()[..10])
            .collect();
        assert!(visitors.len() >= 500, "invited teammates add visitors");
        assert_eq!(n("page_view"), visitors.len());
        assert!(n("signup") < n("page_view"));
        assert!(n("invoice_created") < n("signup"));
        assert!(n("plan_upgraded") < n("invoice_created"));
        assert!(n("plan_upgraded") > 0 && n("teammate_invited") > 0 && n("logged_in") > 0);
        // Everybody who signs up viewed a page first, as an anonymous
        // visitor: the funnel page_view -> signup counts every signup.
        for signup in events.iter().filter(|e| e.name == "signup") {
            let anon = signup.anonymous_id.as_deref().expect("signups link");
            assert!(signup.stage == Some(Stage::Acquisition));
            assert!(
                events.iter().any(|e| e.person == Person::anonymous(anon)
                    && e.name == "page_view"
                    && e.at_ms < signup.at_ms),
                "{anon}"
            );
        }
        assert!(
            events
                .iter()
                .filter(|e| e.stage == Some(Stage::Revenue))
                .all(|e| e.revenue.is_some())
        );
    }

    #[test]
    fn page_views_carry_paths_and_utm_tags() {
        let events = simulate(&params());
        let views: Vec<&SimEvent> = events.iter().filter(|e| e.name == "page_view").collect();
        assert!(views.iter().all(|e| e.person.is_anonymous()));
        assert!(views.iter().all(|e| e.stage == Some(Stage::Discovery)));
        assert!(
            views
                .iter()
                .all(|e| e.properties.iter().any(|(k, _)| *k == "path"))
        );
        let tagged = |source: &str| {
            views
                .iter()
                .filter(|e| e.properties.contains(&("utm_source", json!(source))))
                .count()
        };
        for source in ["google", "newsletter", "twitter", "invite"] {
            assert!(tagged(source) > 0, "{source}");
        }
        // Direct visits have no tags.
        assert!(views.iter().any(|e| e.properties.len() == 1));
    }

    #[test]
    fn logins_on_a_second_device_are_identified() {
        let events = simulate(&params());
        let identifies: Vec<&SimEvent> =
            events.iter().filter(|e| e.name == IDENTIFY_EVENT).collect();
        assert!(!identifies.is_empty());
        for id in identifies {
            assert!(!id.person.is_anonymous() && id.stage.is_none());
            let device = id.anonymous_id.as_deref().expect("both ids");
            assert!(device.ends_with("-2"), "{device}");
            // The device viewed the login page anonymously, before the link.
            assert!(events.iter().any(|e| e.person == Person::anonymous(device)
                && e.name == "page_view"
                && e.at_ms <= id.at_ms));
        }
    }
}
