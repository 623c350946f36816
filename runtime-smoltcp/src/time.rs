//! Mapping smoltcp's clock onto core's.

use core::time::Duration;

/// Core's instant for smoltcp's `now`: the same origin, microseconds
/// widened to nanoseconds; times before the origin clamp to it.
pub fn core_instant(now: smoltcp::time::Instant) -> sdt_core::Instant {
    let micros = u64::try_from(now.total_micros()).unwrap_or(0);
    sdt_core::Instant::from_nanos(micros.saturating_mul(1000))
}

/// smoltcp's instant for core's `t`, rounded up to the next microsecond so
/// that a deadline is never reported as passed before it is.
pub fn smol_instant(t: sdt_core::Instant) -> smoltcp::time::Instant {
    let micros = t.as_nanos().div_ceil(1000);
    smoltcp::time::Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
}

/// smoltcp's duration for `d`, rounded up to the next microsecond.
pub fn smol_duration(d: Duration) -> smoltcp::time::Duration {
    let micros = d.as_nanos().div_ceil(1000);
    smoltcp::time::Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rounding() {
        let now = smoltcp::time::Instant::from_micros(1_234_567);
        assert_eq!(core_instant(now).as_nanos(), 1_234_567_000);
        assert_eq!(smol_instant(core_instant(now)), now);
        assert_eq!(
            smol_instant(sdt_core::Instant::from_nanos(1_001)),
            smoltcp::time::Instant::from_micros(2)
        );
        assert_eq!(
            core_instant(smoltcp::time::Instant::from_micros(-5)),
            sdt_core::Instant::ZERO
        );
        assert_eq!(
            smol_duration(Duration::from_nanos(1)),
            smoltcp::time::Duration::from_micros(1)
        );
        assert_eq!(smol_duration(Duration::ZERO), smoltcp::time::Duration::ZERO);
    }
}
