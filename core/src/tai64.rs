//! TAI64N timestamps for handshake initiations.
//!
//! A responder remembers the greatest timestamp it accepted from each peer and
//! refuses an initiation whose timestamp is not greater, so a captured
//! initiation cannot be replayed to reset a session. The wire form is
//! WireGuard's: 12 bytes, an 8-byte big-endian TAI64 label (`2^62 + 10 +` Unix
//! seconds) then 4 bytes of big-endian nanoseconds.
//!
//! Core has no wall clock, so [`TimestampClock`] is given the Unix time once,
//! at start, and advances it with the caller's monotonic [`Instant`]s.

use core::time::Duration;

use crate::time::Instant;

/// Length of the wire form.
pub const TAI64N_LEN: usize = 12;

/// TAI64 label of the Unix epoch (TAI was 10 s ahead of UTC in 1972).
const TAI64_EPOCH: u64 = 0x4000_0000_0000_000a;

/// Timestamps are rounded down to this many nanoseconds (about 16.8 ms), as
/// WireGuard does, so an initiation does not reveal the sender's fine clock.
const WHITENING_NANOS: u64 = 1 << 24;

/// A TAI64N timestamp in wire form. Orders as time does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tai64N([u8; TAI64N_LEN]);

impl Tai64N {
    /// The timestamp `nanos` nanoseconds after the Unix epoch.
    pub fn from_unix_nanos(nanos: u64) -> Self {
        let secs = TAI64_EPOCH + nanos / 1_000_000_000;
        let subsec = (nanos % 1_000_000_000) as u32;
        let mut bytes = [0u8; TAI64N_LEN];
        bytes[..8].copy_from_slice(&secs.to_be_bytes());
        bytes[8..].copy_from_slice(&subsec.to_be_bytes());
        Tai64N(bytes)
    }

    /// Wraps the wire form as received. Any 12 bytes order consistently
    /// (big-endian byte order is time order for valid stamps).
    pub const fn from_bytes(bytes: [u8; TAI64N_LEN]) -> Self {
        Tai64N(bytes)
    }

    /// The wire form.
    pub const fn as_bytes(&self) -> &[u8; TAI64N_LEN] {
        &self.0
    }
}

/// Turns monotonic instants into strictly increasing TAI64N timestamps.
#[derive(Clone, Debug)]
pub struct TimestampClock {
    base: Instant,
    base_unix_nanos: u64,
    last: Option<Tai64N>,
}

impl TimestampClock {
    /// `unix_nanos` is the wall-clock time at `now`. Timestamps then follow
    /// the monotonic clock, so a later wall-clock step does not affect them.
    pub fn new(now: Instant, unix_nanos: u64) -> Self {
        TimestampClock {
            base: now,
            base_unix_nanos: unix_nanos,
            last: None,
        }
    }

    /// A timestamp for an initiation sent at `now`, strictly greater than
    /// every one this clock returned before, even if `now` repeats.
    pub fn stamp(&mut self, now: Instant) -> Tai64N {
        let elapsed: Duration = now - self.base;
        let elapsed = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let nanos = self.base_unix_nanos.saturating_add(elapsed);
        let mut stamp = Tai64N::from_unix_nanos(nanos - nanos % WHITENING_NANOS);
        if let Some(last) = self.last {
            if stamp <= last {
                stamp = successor(last);
            }
        }
        self.last = Some(stamp);
        stamp
    }
}

/// The next timestamp after `t`: one nanosecond later.
fn successor(t: Tai64N) -> Tai64N {
    let bytes = t.as_bytes();
    let secs = u64::from_be_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
    let nanos = u32::from_be_bytes(bytes[8..].try_into().unwrap_or([0; 4]));
    let (secs, nanos) = if nanos >= 999_999_999 {
        (secs.saturating_add(1), 0)
    } else {
        (secs, nanos + 1)
    };
    let mut out = [0u8; TAI64N_LEN];
    out[..8].copy_from_slice(&secs.to_be_bytes());
    out[8..].copy_from_slice(&nanos.to_be_bytes());
    Tai64N(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form() {
        // 2001-09-09T01:46:40.5Z, Unix 1_000_000_000.5 s.
        let t = Tai64N::from_unix_nanos(1_000_000_000_500_000_000);
        assert_eq!(
            t.as_bytes(),
            &[0x40, 0, 0, 0, 0x3b, 0x9a, 0xca, 0x0a, 0x1d, 0xcd, 0x65, 0x00]
        );
    }

    #[test]
    fn strictly_increasing_even_when_time_stands_still() {
        let start = Instant::from_secs(5);
        let mut clock = TimestampClock::new(start, 1_700_000_000_000_000_000);
        let mut last = clock.stamp(start);
        for i in 0..2000u64 {
            // Sometimes the same instant, sometimes a little later.
            let now = start + Duration::from_micros(i / 3 * 10);
            let t = clock.stamp(now);
            assert!(t > last, "step {i}");
            last = t;
        }
        // Across a second boundary of the successor.
        let t = successor(Tai64N::from_unix_nanos(1_999_999_999));
        assert_eq!(t, Tai64N::from_unix_nanos(2_000_000_000));
    }

    #[test]
    fn follows_monotonic_time_and_is_whitened() {
        let start = Instant::from_secs(0);
        let mut clock = TimestampClock::new(start, 1_000_000_000_000_000_000);
        let a = clock.stamp(start + Duration::from_secs(10));
        assert_eq!(
            a,
            Tai64N::from_unix_nanos(1_000_000_010_000_000_000 / WHITENING_NANOS * WHITENING_NANOS)
        );
        // A restarted node (a new clock, later wall time) stamps later.
        let mut restarted = TimestampClock::new(Instant::from_secs(0), 1_000_000_011_000_000_000);
        assert!(restarted.stamp(Instant::from_secs(0)) > a);
    }
}
