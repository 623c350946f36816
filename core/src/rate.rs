//! A token bucket: at most `per_second` events a second on average, with
//! bursts of up to `burst`. Used to limit handshakes per source address and
//! channel creation per peer and per service.

use crate::time::Instant;

const NANOS: u64 = 1_000_000_000;

/// One bucket. It starts full.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    /// Credit in nanoseconds-of-rate: one event costs `NANOS / per_second`.
    credit: u64,
    last: Option<Instant>,
}

impl Default for TokenBucket {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenBucket {
    /// A full bucket.
    pub const fn new() -> Self {
        TokenBucket {
            credit: u64::MAX,
            last: None,
        }
    }

    fn cost(per_second: u32) -> u64 {
        NANOS / u64::from(per_second.max(1))
    }

    /// Takes one token at `now` if there is one. `per_second` of 0 allows
    /// nothing.
    pub fn take(&mut self, now: Instant, per_second: u32, burst: u32) -> bool {
        if per_second == 0 {
            return false;
        }
        let cost = Self::cost(per_second);
        let max = cost.saturating_mul(u64::from(burst.max(1)));
        let earned = self.last.map_or(u64::MAX, |last| {
            u64::try_from(now.saturating_since(last).as_nanos()).unwrap_or(u64::MAX)
        });
        self.credit = self.credit.min(max).saturating_add(earned).min(max);
        self.last = Some(now);
        if self.credit >= cost {
            self.credit -= cost;
            true
        } else {
            false
        }
    }

    /// Whether the bucket would be full at `now`: nothing taken lately.
    pub fn is_full(&self, now: Instant, per_second: u32, burst: u32) -> bool {
        let max = Self::cost(per_second).saturating_mul(u64::from(burst.max(1)));
        let earned = self.last.map_or(u64::MAX, |last| {
            u64::try_from(now.saturating_since(last).as_nanos()).unwrap_or(u64::MAX)
        });
        self.credit.min(max).saturating_add(earned) >= max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::from_secs(1);
        let mut b = TokenBucket::new();
        let n = (0..50).filter(|_| b.take(t0, 20, 5)).count();
        assert_eq!(n, 5);
        let mut n = 0;
        for i in 1..=1000u64 {
            n += usize::from(b.take(t0 + Duration::from_millis(i), 20, 5));
        }
        assert_eq!(n, 20);
        assert!(!b.is_full(t0 + Duration::from_millis(1000), 20, 5));
        assert!(b.is_full(t0 + Duration::from_secs(3), 20, 5));
        assert!(
            !TokenBucket::new().take(t0, 0, 5),
            "a rate of 0 allows nothing"
        );
    }
}
