//! Identity links (SPEC §1): which user each linked anonymous id counts
//! for. An event carrying both `user_id` and `anonymous_id` offers a link;
//! the earliest offer wins (ties: the smallest `user_id` in byte order),
//! whenever it arrives, so merging offers in any order gives one answer.
//!
//! Links are kept by the anonymous id's person id. An anonymous id that
//! links before it ever was an event's person key has no id yet: its link
//! waits under its key ("pending") and moves to the id when the key is
//! first interned. Every sealed chunk's property file records the best
//! link, at seal time, of each anonymous id the chunk touched; loading
//! merges them all, and the open chunk's events are offered again by the
//! log replay.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::codec::{LinkAnon, LinkRecord};

/// The winning link of one anonymous id.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// The linking event's timestamp.
    pub ts: i64,
    /// The user's person id.
    pub user: u32,
    /// The user's key.
    pub user_key: Box<str>,
}

impl Link {
    fn beats(&self, other: &Link) -> bool {
        (self.ts, self.user_key.as_bytes()) < (other.ts, other.user_key.as_bytes())
    }
}

/// Every link known.
#[derive(Debug, Default)]
pub struct Links {
    by_person: HashMap<u32, Link>,
    pending: HashMap<Box<str>, Link>,
    /// `remap[p]`: the user person `p` counts for when anonymous, or
    /// `u32::MAX`; built on first use after a change.
    remap: OnceLock<Arc<Vec<u32>>>,
}

impl Clone for Links {
    fn clone(&self) -> Self {
        Links {
            by_person: self.by_person.clone(),
            pending: self.pending.clone(),
            remap: OnceLock::new(),
        }
    }
}

impl Links {
    /// Offers a link; keeps the better of it and what is known.
    pub fn offer(&mut self, anon: LinkAnon, link: Link) {
        let slot = match anon {
            LinkAnon::Person(p) => self.by_person.entry(p),
            LinkAnon::Key(k) => {
                let e = self.pending.entry(k.into_boxed_str());
                match e {
                    std::collections::hash_map::Entry::Occupied(mut o) => {
                        if link.beats(o.get()) {
                            o.insert(link);
                        }
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(link);
                    }
                }
                return;
            }
        };
        match slot {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if !link.beats(o.get()) {
                    return;
                }
                o.insert(link);
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(link);
            }
        }
        self.remap = OnceLock::new();
    }

    /// Offers a recorded link.
    pub fn record(&mut self, r: LinkRecord) {
        self.offer(
            r.anon,
            Link {
                ts: r.ts,
                user: r.user,
                user_key: r.user_key.into_boxed_str(),
            },
        );
    }

    /// `key` was just given person id `id`: a link waiting for it moves
    /// to the id.
    pub fn interned(&mut self, key: &str, id: u32) {
        if let Some(link) = self.pending.remove(key) {
            self.offer(LinkAnon::Person(id), link);
        }
    }

    /// The best known link of an anonymous id, as a record.
    pub fn best(&self, anon: &LinkAnon) -> Option<LinkRecord> {
        let link = match anon {
            LinkAnon::Person(p) => self.by_person.get(p),
            LinkAnon::Key(k) => self.pending.get(k.as_str()),
        }?;
        Some(LinkRecord {
            anon: anon.clone(),
            ts: link.ts,
            user: link.user,
            user_key: link.user_key.to_string(),
        })
    }

    /// True when no anonymous id with a person id is linked.
    pub fn is_empty(&self) -> bool {
        self.by_person.is_empty()
    }

    /// The user person `p` counts for when its event is anonymous, for
    /// every person id (`u32::MAX`: not linked).
    pub fn remap(&self) -> Arc<Vec<u32>> {
        self.remap
            .get_or_init(|| {
                let len = self.by_person.keys().max().map_or(0, |&m| m as usize + 1);
                let mut v = vec![u32::MAX; len];
                for (&anon, link) in &self.by_person {
                    v[anon as usize] = link.user;
                }
                Arc::new(v)
            })
            .clone()
    }

    /// Forgets `anon`'s link if it is to `user`.
    pub fn forget(&mut self, anon: u32, user: u32) {
        if self.by_person.get(&anon).is_some_and(|l| l.user == user) {
            self.by_person.remove(&anon);
            self.remap = OnceLock::new();
        }
    }

    /// The user an anonymous id's person is linked to.
    pub fn user_of(&self, anon: u32) -> Option<u32> {
        self.by_person.get(&anon).map(|l| l.user)
    }

    /// Anonymous person ids linked to `user`.
    pub fn linked_to(&self, user: u32) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .by_person
            .iter()
            .filter(|(_, l)| l.user == user)
            .map(|(&a, _)| a)
            .collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(ts: i64, user: u32, key: &str) -> Link {
        Link {
            ts,
            user,
            user_key: key.into(),
        }
    }

    #[test]
    fn the_earliest_link_wins_in_any_order_and_ties_go_to_the_smallest_user_id() {
        let offers = [
            link(5, 1, "b"),
            link(3, 2, "z"),
            link(3, 3, "a"),
            link(9, 4, "0"),
        ];
        for rotation in 0..offers.len() {
            let mut l = Links::default();
            for o in offers.iter().cycle().skip(rotation).take(offers.len()) {
                l.offer(LinkAnon::Person(7), o.clone());
            }
            assert_eq!(l.user_of(7), Some(3), "rotation {rotation}");
            assert_eq!(l.remap()[7], 3);
        }
    }

    #[test]
    fn a_pending_link_moves_to_the_id_its_key_gets() {
        let mut l = Links::default();
        l.offer(LinkAnon::Key("anon".into()), link(5, 1, "u1"));
        l.offer(LinkAnon::Key("anon".into()), link(4, 2, "u2"));
        assert!(l.is_empty());
        l.interned("other", 8);
        assert!(l.is_empty());
        l.interned("anon", 9);
        assert_eq!(l.user_of(9), Some(2));
        assert_eq!(l.best(&LinkAnon::Key("anon".into())), None);
        assert_eq!(l.linked_to(2), vec![9]);
        // The remap is rebuilt after a change.
        assert_eq!(l.remap()[9], 2);
        l.offer(LinkAnon::Person(9), link(1, 5, "u5"));
        assert_eq!(l.remap()[9], 5);
    }
}
