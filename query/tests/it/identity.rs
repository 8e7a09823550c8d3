//! Identity linking (SPEC §1) through the analyses: an anonymous id's
//! events count for the user its earliest linking event names, before and
//! after the link and whatever the range; never user to user; links come
//! from every event, filtered or not; `--identity none` turns it off.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;
use tally_query::{MemEvent, MemSource};

use crate::seg::{D, H, day, ok, t0, users};

fn funnel(src: &MemSource, steps: &str, extra: &[(&str, &str)]) -> Vec<u64> {
    let (from, to) = (day(0), day(1));
    let mut pairs = vec![("steps", steps), ("from", &from), ("to", &to)];
    pairs.extend_from_slice(extra);
    users(&ok(src, "funnel", &pairs))
}

const NONE: (&str, &str) = ("identity", "none");

#[test]
fn an_anonymous_landing_view_and_the_signup_are_one_person() {
    let src = MemSource::new([
        MemEvent::new("v1", "page_view", t0()).anonymous(),
        MemEvent::new("u1", "signup", t0() + H).identify("v1"),
        // A visitor who never signs up.
        MemEvent::new("v2", "page_view", t0()).anonymous(),
    ]);
    assert_eq!(funnel(&src, "page_view,signup", &[]), [2, 1]);
    assert_eq!(
        funnel(&src, "page_view,signup", &[("identity", "linked")]),
        [2, 1]
    );
    // Without linking the visitor and the user are two persons.
    assert_eq!(funnel(&src, "page_view,signup", &[NONE]), [2, 0]);
}

#[test]
fn a_late_link_applies_to_events_before_it_and_outside_the_range() {
    // The link comes ten days later, outside the range, and is stored
    // first or last: either way v's events are u's.
    let events = vec![
        MemEvent::new("v", "open", t0()).anonymous(),
        MemEvent::new("v", "open", t0() + H).anonymous(),
        MemEvent::new("u", "open", t0() + 2 * H),
        MemEvent::new("u", "hello", t0() + 10 * D).identify("v"),
    ];
    let (from, to) = (day(0), day(1));
    let pairs = [
        ("event", "open"),
        ("measure", "users"),
        ("from", from.as_str()),
        ("to", to.as_str()),
    ];
    let mut reversed = events.clone();
    reversed.reverse();
    for src in [MemSource::new(events), MemSource::new(reversed)] {
        assert_eq!(ok(&src, "trend", &pairs)["total"], 1);
        assert_eq!(
            ok(&src, "trend", &[pairs.as_slice(), &[NONE]].concat())["total"],
            2
        );
    }
}

#[test]
fn a_link_makes_the_first_ever_start_the_anonymous_one() {
    // v visited two days before the range, then signed in as u inside it:
    // u's first ever visit is v's, before the range.
    let src = MemSource::new([
        MemEvent::new("v", "visit", t0() - 2 * D).anonymous(),
        MemEvent::new("u", "visit", t0() + D).identify("v"),
    ]);
    let (from, to) = (day(0), day(7));
    let pairs = [
        ("start", "visit"),
        ("event", "visit"),
        ("from", from.as_str()),
        ("to", to.as_str()),
    ];
    assert_eq!(ok(&src, "activation", &pairs)["cohort_size"], 0);
    assert_eq!(
        ok(&src, "activation", &[pairs.as_slice(), &[NONE]].concat())["cohort_size"],
        1
    );
    let r = ok(
        &src,
        "retention",
        &[("start", "visit"), ("from", &from), ("to", &to)],
    );
    assert_eq!(r["total"]["size"], 0);
}

#[test]
fn the_earliest_link_wins_and_ties_go_to_the_smallest_user_id() {
    // v is linked by u1 at 1h and by u2 at 2h: v is u1, who never buys.
    let src = MemSource::new([
        MemEvent::new("v", "land", t0()).anonymous(),
        MemEvent::new("u2", "buy", t0() + 2 * H).identify("v"),
        MemEvent::new("u1", "hello", t0() + H).identify("v"),
    ]);
    assert_eq!(funnel(&src, "land,buy", &[]), [1, 0]);
    // The same links at the same moment: the smallest user_id in byte
    // order ("B" < "a") wins, whatever the order they were stored in.
    for (buyer, want) in [("B", [1, 1]), ("a", [1, 0])] {
        for (first, second) in [("a", "B"), ("B", "a")] {
            let name = |u: &str| if u == buyer { "buy" } else { "hello" };
            let src = MemSource::new([
                MemEvent::new("v", "land", t0()).anonymous(),
                MemEvent::new(first, name(first), t0() + H).identify("v"),
                MemEvent::new(second, name(second), t0() + H).identify("v"),
            ]);
            assert_eq!(funnel(&src, "land,buy", &[]), want, "buyer {buyer}");
        }
    }
}

#[test]
fn two_user_ids_are_never_merged() {
    // u2's event carries u1 as its anonymous id: u1's own (identified)
    // events stay u1's.
    let src = MemSource::new([
        MemEvent::new("u1", "land", t0()),
        MemEvent::new("u2", "buy", t0() + H).identify("u1"),
    ]);
    assert_eq!(funnel(&src, "land,buy", &[]), [1, 0]);
    let (from, to) = (day(0), day(1));
    let l = ok(&src, "lifecycle", &[("from", &from), ("to", &to)]);
    assert_eq!(l["active_users"], 2);
    // An anonymous id used by two users belongs to the first only; the
    // second keeps their own events.
    let src = MemSource::new([
        MemEvent::new("v", "land", t0()).anonymous(),
        MemEvent::new("u1", "land", t0() + H).identify("v"),
        MemEvent::new("u2", "land", t0() + 2 * H).identify("v"),
    ]);
    let l = ok(&src, "lifecycle", &[("from", &from), ("to", &to)]);
    assert_eq!(l["active_users"], 2);
    let l = ok(&src, "lifecycle", &[("from", &from), ("to", &to), NONE]);
    assert_eq!(l["active_users"], 3);
}

#[test]
fn links_made_by_filtered_out_events_still_apply() {
    let src = MemSource::new([
        MemEvent::new("v", "land", t0())
            .anonymous()
            .props(json!({"plan": "x"})),
        // The link: an event without the property, so filtered out.
        MemEvent::new("u", "hello", t0() + H).identify("v"),
        MemEvent::new("u", "buy", t0() + 2 * H).props(json!({"plan": "x"})),
    ]);
    let w = ("where", "plan = x");
    assert_eq!(funnel(&src, "land,buy", &[w]), [1, 1]);
    assert_eq!(funnel(&src, "land,buy", &[w, NONE]), [1, 0]);
    // With a breakdown too: v's entry is u's.
    let (from, to) = (day(0), day(1));
    let r = ok(
        &src,
        "funnel",
        &[
            ("steps", "land,buy"),
            ("from", &from),
            ("to", &to),
            w,
            ("by", "plan"),
        ],
    );
    assert_eq!(users(&r["groups"][0]["result"]), [1, 1]);
}

#[test]
fn identity_none_counts_every_person_key() {
    let src = MemSource::new([
        MemEvent::new("v", "open", t0()).anonymous(),
        MemEvent::new("u", "open", t0() + H).identify("v"),
    ]);
    let (from, to) = (day(0), day(2));
    let range = [("from", from.as_str()), ("to", to.as_str())];
    let dau = |extra: &[(&str, &str)]| {
        ok(&src, "active", &[range.as_slice(), extra].concat())["days"][0]["dau"].clone()
    };
    assert_eq!(dau(&[]), 1);
    assert_eq!(dau(&[NONE]), 2);
}

// --- Property test: linking equals rewriting the person keys by hand ---------

/// `(key index, anonymous, linked anonymous index, name, minutes)`.
type Ev = (usize, bool, Option<usize>, usize, i64);

fn user(i: usize) -> String {
    format!("u{i}")
}

fn anon(i: usize) -> String {
    format!("a{i}")
}

fn mem(e: &Ev) -> MemEvent {
    let &(key, anonymous, link, name, minutes) = e;
    let name = ["land", "buy", "open"][name];
    let ts = t0() + minutes * 60_000;
    if anonymous {
        MemEvent::new(&anon(key), name, ts).anonymous()
    } else {
        let e = MemEvent::new(&user(key), name, ts);
        match link {
            Some(a) => e.identify(&anon(a)),
            None => e,
        }
    }
}

/// SPEC §1 by hand: each anonymous id's user is the one of its earliest
/// linking event, ties to the smallest user_id; every anonymous event is
/// rewritten to that user (identified events keep their user).
fn resolved(events: &[Ev]) -> Vec<MemEvent> {
    let mut link: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for e in events {
        if let (false, Some(a)) = (e.1, e.2) {
            let candidate = (e.4, user(e.0));
            let slot = link.entry(anon(a)).or_insert(candidate.clone());
            if candidate < *slot {
                *slot = candidate;
            }
        }
    }
    events
        .iter()
        .map(|e| {
            let mut m = mem(e);
            if let Some((_, u)) = link.get(&m.person).filter(|_| e.1) {
                m = MemEvent {
                    person: u.clone(),
                    anonymous: false,
                    ..m
                };
            }
            m.links = None;
            m
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn linking_is_rewriting_person_keys(
        events in prop::collection::vec(
            (0..4usize, any::<bool>(), prop::option::of(0..4usize), 0..3usize, 0..(3 * 24 * 60i64)),
            0..30,
        ),
    ) {
        let linked = MemSource::new(events.iter().map(mem));
        let by_hand = MemSource::new(resolved(&events));
        let (from, to) = (day(0), day(2));
        let range = [("from", from.as_str()), ("to", to.as_str())];
        let queries: Vec<(&str, Vec<(&str, &str)>)> = vec![
            ("funnel", vec![("steps", "land,buy"), ("window", "1d")]),
            ("funnel", vec![("steps", "land,open,land")]),
            ("activation", vec![("start", "land"), ("event", "buy")]),
            ("retention", vec![("start", "land"), ("return", "any"), ("period", "day"), ("periods", "3")]),
            ("lifecycle", vec![]),
            ("active", vec![]),
            ("trend", vec![("event", "any"), ("measure", "users")]),
        ];
        for (name, pairs) in queries {
            let pairs = [range.as_slice(), &pairs].concat();
            let want = ok(&by_hand, name, &[pairs.as_slice(), &[NONE]].concat());
            prop_assert_eq!(ok(&linked, name, &pairs), want, "{}", name);
        }
    }
}
