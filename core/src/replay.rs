//! The sliding anti-replay window for data frame counters (RFC 6479).
//!
//! Every data frame carries a 64-bit counter, its AEAD nonce. A receiver
//! accepts each counter at most once, and accepts frames that arrive out of
//! order as long as they are less than [`WINDOW`] behind the highest counter
//! accepted so far. The window is a ring of bitmap words: moving it forward
//! clears whole words instead of shifting bits, so each check and update is
//! O(1) (at most one pass over the ring when the counter jumps far ahead).
//!
//! The caller must authenticate a frame before [`ReplayWindow::update`]:
//! otherwise a forged counter far ahead would shut out genuine frames.

/// Bitmap words in the ring.
const WORDS: usize = 33;
const WORD_BITS: u64 = u64::BITS as u64;
/// How far behind the highest accepted counter a frame may be and still be
/// accepted: counters `top - WINDOW + 1 ..= top` are tracked individually.
/// One word of the ring is the slack that lets it move by whole words.
pub const WINDOW: u64 = (WORDS as u64 - 1) * WORD_BITS;

/// Why a counter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// [`WINDOW`] or more behind the highest counter accepted.
    TooOld,
    /// Already accepted once.
    Duplicate,
}

/// Which counters of one session were received. 264 bytes of bitmap.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    /// The highest counter accepted, if any.
    top: Option<u64>,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// A window that has accepted nothing yet.
    pub const fn new() -> Self {
        ReplayWindow {
            top: None,
            bits: [0; WORDS],
        }
    }

    fn slot(counter: u64) -> (usize, u64) {
        let word = ((counter / WORD_BITS) % WORDS as u64) as usize;
        (word, 1 << (counter % WORD_BITS))
    }

    /// Whether `counter` would be accepted, without recording it.
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        let Some(top) = self.top else { return Ok(()) };
        if counter > top {
            return Ok(());
        }
        if top - counter >= WINDOW {
            return Err(ReplayError::TooOld);
        }
        let (word, bit) = Self::slot(counter);
        if self.bits[word] & bit != 0 {
            return Err(ReplayError::Duplicate);
        }
        Ok(())
    }

    /// Records `counter` as received, refusing it as [`check`](Self::check)
    /// would. Call only for authenticated frames.
    pub fn update(&mut self, counter: u64) -> Result<(), ReplayError> {
        self.check(counter)?;
        match self.top {
            Some(top) if counter <= top => {}
            top => {
                // Clear the words the window moves into. Before the first
                // counter every word is already clear.
                let old_word = top.unwrap_or(0) / WORD_BITS;
                let steps = (counter / WORD_BITS - old_word).min(WORDS as u64);
                for i in 1..=steps {
                    self.bits[((old_word + i) % WORDS as u64) as usize] = 0;
                }
                self.top = Some(counter);
            }
        }
        let (word, bit) = Self::slot(counter);
        self.bits[word] |= bit;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn in_order_then_duplicates() {
        let mut w = ReplayWindow::new();
        for c in 0..10_000 {
            assert_eq!(w.update(c), Ok(()));
            assert_eq!(w.update(c), Err(ReplayError::Duplicate));
        }
    }

    #[test]
    fn window_edges() {
        let mut w = ReplayWindow::new();
        w.update(10_000).unwrap();
        assert_eq!(w.check(10_000 - WINDOW), Err(ReplayError::TooOld));
        assert_eq!(w.update(10_000 - WINDOW + 1), Ok(()));
        assert_eq!(w.update(10_000 - WINDOW + 1), Err(ReplayError::Duplicate));
        assert_eq!(w.update(9_999), Ok(()));
        assert_eq!(w.update(u64::MAX), Ok(()));
        assert_eq!(w.check(10_000), Err(ReplayError::TooOld));
        assert_eq!(w.check(u64::MAX), Err(ReplayError::Duplicate));
    }

    #[test]
    fn at_least_2048() {
        const { assert!(WINDOW >= 2048) };
        let mut w = ReplayWindow::new();
        w.update(5000).unwrap();
        for c in (5000 - 2047..5000).rev() {
            assert_eq!(w.update(c), Ok(()), "{c}");
        }
    }

    /// The model: a set of accepted counters and the definition of the window.
    fn model_accepts(seen: &BTreeSet<u64>, c: u64) -> Result<(), ReplayError> {
        match seen.last() {
            Some(&top) if c <= top && top - c >= WINDOW => Err(ReplayError::TooOld),
            _ if seen.contains(&c) => Err(ReplayError::Duplicate),
            _ => Ok(()),
        }
    }

    fn counters() -> impl Strategy<Value = Vec<u64>> {
        // Mostly clustered counters (reordering, duplicates), with jumps.
        prop::collection::vec(
            prop_oneof![
                8 => 0u64..6000,
                1 => 0u64..100_000,
                1 => any::<u64>(),
            ],
            1..600,
        )
    }

    proptest! {
        #[test]
        fn agrees_with_the_model(cs in counters()) {
            let mut w = ReplayWindow::new();
            let mut seen = BTreeSet::new();
            for c in cs {
                let expected = model_accepts(&seen, c);
                prop_assert_eq!(w.check(c), expected);
                prop_assert_eq!(w.update(c), expected);
                if expected.is_ok() {
                    seen.insert(c);
                }
            }
        }
    }
}
