//! Plumbing shared by the analyses: rows grouped by person (a counting sort
//! on dense person ids), and folding rows into per-thread partial states
//! that merge. These are the "per-person state" and "mergeable
//! intermediate" steps of the pipeline described in the crate docs.

use std::ops::Range;

use rayon::prelude::*;

use crate::source::{PersonId, Rows};

/// Items grouped by person: person `p`'s items are
/// `items[offsets[p]..offsets[p + 1]]`.
pub(crate) struct ByPerson<T> {
    offsets: Vec<usize>,
    items: Vec<T>,
}

/// A block of consecutive persons for one rayon task.
pub(crate) struct Block<'a, T> {
    first: usize,
    /// `offsets[first..=last]` of the whole grouping (absolute positions).
    offsets: &'a [usize],
    items: &'a mut [T],
}

/// Blocks hold about this many items…
const BLOCK_ITEMS: usize = 1 << 15;
/// …or at most this many persons (persons without items cost little, but
/// still something).
const BLOCK_PERSONS: usize = 1 << 14;

/// Groups the rows `pick` keeps by person, with a counting sort on the
/// dense person id: two passes over the rows and one flat array, instead of
/// a map per person. `pick(k, person, ts)` sees row `ts` of `rows[k]` and
/// must answer the same both times it is asked.
///
/// Persons are `0..person_count`, or more if a row names a larger id.
pub(crate) fn group_by_person<T: Copy + Default>(
    person_count: usize,
    rows: &[Rows],
    pick: impl Fn(usize, PersonId, i64) -> Option<T>,
) -> ByPerson<T> {
    group_by_person_at(person_count, rows, |k, _, person, ts| pick(k, person, ts))
}

/// [`group_by_person`] with the row's index too: `pick(k, i, person, ts)`
/// sees row `i` of `rows[k]` (for columns beyond person and time, such as
/// a breakdown's group).
pub(crate) fn group_by_person_at<T: Copy + Default>(
    person_count: usize,
    rows: &[Rows],
    pick: impl Fn(usize, usize, PersonId, i64) -> Option<T>,
) -> ByPerson<T> {
    // Pass 1: count each person's items into `offsets[p + 1]`.
    let mut offsets = vec![0usize; person_count + 1];
    for (k, r) in rows.iter().enumerate() {
        for (i, (&person, &ts)) in r.person.iter().zip(&r.ts).enumerate() {
            if pick(k, i, person, ts).is_some() {
                let slot = person as usize + 1;
                if slot >= offsets.len() {
                    offsets.resize(slot + 1, 0);
                }
                offsets[slot] += 1;
            }
        }
    }
    // Prefix sums: `offsets[p]` becomes where person `p`'s items start.
    for i in 1..offsets.len() {
        offsets[i] += offsets[i - 1];
    }
    // Pass 2: scatter.
    let mut items = vec![T::default(); *offsets.last().expect("never empty")];
    let mut next = offsets[..offsets.len() - 1].to_vec();
    for (k, r) in rows.iter().enumerate() {
        for (i, (&person, &ts)) in r.person.iter().zip(&r.ts).enumerate() {
            if let Some(item) = pick(k, i, person, ts) {
                let at = &mut next[person as usize];
                items[*at] = item;
                *at += 1;
            }
        }
    }
    ByPerson { offsets, items }
}

impl<T> ByPerson<T> {
    /// Number of persons (with or without items).
    pub(crate) fn persons(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Splits into blocks of whole persons that can be processed in parallel.
    pub(crate) fn blocks(&mut self) -> Vec<Block<'_, T>> {
        let persons = self.persons();
        let offsets = &self.offsets;
        let mut rest: &mut [T] = &mut self.items;
        let mut blocks = Vec::new();
        let mut first = 0;
        while first < persons {
            let mut last = first + 1;
            while last < persons
                && last - first < BLOCK_PERSONS
                && offsets[last] - offsets[first] < BLOCK_ITEMS
            {
                last += 1;
            }
            let (items, tail) =
                std::mem::take(&mut rest).split_at_mut(offsets[last] - offsets[first]);
            blocks.push(Block {
                first,
                offsets: &offsets[first..=last],
                items,
            });
            rest = tail;
            first = last;
        }
        blocks
    }
}

impl<T> Block<'_, T> {
    /// Calls `f` with every person of the block and their items.
    pub(crate) fn for_each(&mut self, mut f: impl FnMut(PersonId, &mut [T])) {
        let base = self.offsets[0];
        for (k, w) in self.offsets.windows(2).enumerate() {
            f(
                (self.first + k) as PersonId,
                &mut self.items[w[0] - base..w[1] - base],
            );
        }
    }
}

/// Below this many rows a query runs on one thread: per-thread states cost
/// more than they save.
const PARALLEL_MIN_ROWS: usize = 1 << 16;

/// Folds `rows` into one state: `step` runs over contiguous slices of the
/// rows, one fresh `init()` state per worker thread, and the partial states
/// are combined with `merge`. One state per thread (rather than per rayon
/// split) bounds memory when states are per-person vectors.
pub(crate) fn fold_rows<S: Send>(
    rows: &[Rows],
    init: impl Fn() -> S + Sync,
    step: impl Fn(&mut S, &Rows, Range<usize>) + Sync,
    merge: impl Fn(S, S) -> S + Sync,
) -> S {
    let total: usize = rows.iter().map(Rows::len).sum();
    let parts = rayon::current_num_threads().min(total / PARALLEL_MIN_ROWS);
    if parts <= 1 {
        let mut state = init();
        for r in rows {
            step(&mut state, r, 0..r.len());
        }
        return state;
    }
    split_rows(rows, parts, total)
        .into_par_iter()
        .map(|piece| {
            let mut state = init();
            for (r, range) in piece {
                step(&mut state, r, range);
            }
            state
        })
        .reduce_with(&merge)
        .unwrap_or_else(init)
}

/// Cuts `rows` into `parts` pieces of about `total / parts` rows each.
fn split_rows(rows: &[Rows], parts: usize, total: usize) -> Vec<Vec<(&Rows, Range<usize>)>> {
    let per = total.div_ceil(parts).max(1);
    let mut pieces = vec![Vec::new()];
    let mut room = per;
    for r in rows {
        let mut at = 0;
        while at < r.len() {
            if room == 0 {
                pieces.push(Vec::new());
                room = per;
            }
            let take = room.min(r.len() - at);
            pieces
                .last_mut()
                .expect("non-empty")
                .push((r, at..at + take));
            at += take;
            room -= take;
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_keeps_each_persons_items_together() {
        let rows = vec![
            Rows {
                name: 0,
                person: vec![2, 0, 2],
                ts: vec![10, 11, 12],
                ..Rows::default()
            },
            Rows {
                name: 1,
                person: vec![0, 5],
                ts: vec![13, 14],
                ..Rows::default()
            },
        ];
        // Person 5 is beyond `person_count`: the grouping grows.
        let mut g = group_by_person(3, &rows, |k, _, ts| (ts != 12).then_some((k, ts)));
        assert_eq!(g.persons(), 6);
        let mut seen = Vec::new();
        for mut b in g.blocks() {
            b.for_each(|p, items| seen.push((p, items.to_vec())));
        }
        assert_eq!(
            seen,
            vec![
                (0, vec![(0, 11), (1, 13)]),
                (1, vec![]),
                (2, vec![(0, 10)]),
                (3, vec![]),
                (4, vec![]),
                (5, vec![(1, 14)]),
            ]
        );
    }

    #[test]
    fn blocks_cover_all_persons_once() {
        let n = BLOCK_PERSONS * 2 + 7;
        let rows = vec![Rows {
            name: 0,
            person: (0..n as u32).collect(),
            ts: vec![1; n],
            ..Rows::default()
        }];
        let mut g = group_by_person(n, &rows, |_, p, _| Some(p));
        let mut count = 0;
        for mut b in g.blocks() {
            b.for_each(|p, items| {
                assert_eq!(items, &[p]);
                count += 1;
            });
        }
        assert_eq!(count, n);
    }
}
