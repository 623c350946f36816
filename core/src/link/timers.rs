//! When each peer next needs [`Link::handle_timeout`](super::Link), kept so
//! that the earliest deadline is known in O(1) and a change costs
//! O(log P).
//!
//! A tournament tree over the `P` peer slots: leaf `i` holds slot `i`'s
//! deadline, every inner node the slot with the earliest deadline below
//! it, node 1 the earliest of all. Node `n` has children `2n` and `2n + 1`;
//! indices `P..2P` are the leaves. This layout works for any `P`, not only
//! powers of two: every leaf reaches node 1 through its parents, so node 1
//! wins over all of them.
//!
//! Hand-written because the crates of the field (heapless's `BinaryHeap`,
//! for one) offer no way to change or remove the key of a given slot,
//! which a peer's timer needs on every touch.

use crate::time::Instant;

/// A deadline of "never".
const NEVER: u64 = u64::MAX;

/// The next deadline of each of `P` slots.
pub(crate) struct Timers<const P: usize> {
    /// Slot `i`'s deadline in nanoseconds, [`NEVER`] for none.
    deadline: [u64; P],
    /// `winner[n]`, for inner nodes `1..P`: the slot with the earliest
    /// deadline below node `n`.
    winner: [u16; P],
}

impl<const P: usize> Timers<P> {
    /// Holds up to 65,536 slots, as many as a [`PeerId`](super::PeerId) names.
    const FITS: () = assert!(P >= 1 && P <= 1 << 16);

    /// No slot has a deadline.
    pub fn new() -> Self {
        let () = Self::FITS;
        let mut t = Timers {
            deadline: [NEVER; P],
            winner: [0; P],
        };
        for n in (1..P).rev() {
            t.winner[n] = t.play(n);
        }
        t
    }

    /// The slot winning at node `n` (a leaf or an inner node).
    fn at(&self, n: usize) -> u16 {
        if n >= P {
            (n - P) as u16
        } else {
            self.winner[n]
        }
    }

    /// The winner of inner node `n`'s two children.
    fn play(&self, n: usize) -> u16 {
        let (a, b) = (self.at(2 * n), self.at(2 * n + 1));
        if self.deadline[b as usize] < self.deadline[a as usize] {
            b
        } else {
            a
        }
    }

    /// Sets `slot`'s deadline (`None`: no deadline). Slots past `P` are
    /// ignored.
    pub fn set(&mut self, slot: usize, at: Option<Instant>) {
        let Some(d) = self.deadline.get_mut(slot) else {
            return;
        };
        let new = at.map_or(NEVER, Instant::as_nanos);
        if *d == new {
            return;
        }
        *d = new;
        let mut n = (slot + P) / 2;
        while n >= 1 {
            let w = self.play(n);
            self.winner[n] = w;
            n /= 2;
        }
    }

    /// The earliest deadline, with its slot.
    pub fn next(&self) -> Option<(usize, Instant)> {
        // With one slot, node 1 is that slot's leaf.
        let slot = self.at(1) as usize;
        match self.deadline[slot] {
            NEVER => None,
            d => Some((slot, Instant::from_nanos(d))),
        }
    }

    /// A slot whose deadline is at or before `now`, if any.
    pub fn due(&self, now: Instant) -> Option<usize> {
        self.next()
            .filter(|&(_, at)| at <= now)
            .map(|(slot, _)| slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn earliest<const P: usize>(d: &[Option<u64>; P]) -> Option<u64> {
        d.iter().flatten().copied().min()
    }

    proptest! {
        /// After any sequence of changes the tree names the earliest
        /// deadline, for sizes that are and are not powers of two.
        #[test]
        fn names_the_earliest(ops in proptest::collection::vec((0usize..7, proptest::option::of(0u64..50)), 0..60)) {
            let mut t = Timers::<7>::new();
            let mut model = [None; 7];
            for (slot, at) in ops {
                t.set(slot, at.map(Instant::from_nanos));
                model[slot] = at;
                let got = t.next().map(|(s, at)| {
                    prop_assert_eq!(model[s], Some(at.as_nanos()));
                    Ok(at.as_nanos())
                }).transpose()?;
                prop_assert_eq!(got, earliest(&model));
            }
        }
    }

    #[test]
    fn one_slot() {
        let mut t = Timers::<1>::new();
        assert_eq!(t.next(), None);
        t.set(0, Some(Instant::from_nanos(5)));
        assert_eq!(t.next(), Some((0, Instant::from_nanos(5))));
        assert_eq!(t.due(Instant::from_nanos(4)), None);
        assert_eq!(t.due(Instant::from_nanos(5)), Some(0));
        t.set(3, Some(Instant::ZERO));
        t.set(0, None);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn power_of_two() {
        let mut t = Timers::<8>::new();
        for s in 0..8 {
            t.set(s, Some(Instant::from_nanos(100 - s as u64)));
        }
        assert_eq!(t.next().map(|x| x.0), Some(7));
        t.set(7, None);
        assert_eq!(t.next().map(|x| x.0), Some(6));
    }
}
