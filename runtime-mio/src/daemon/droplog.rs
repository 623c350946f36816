//! The rule that keeps drop logging from flooding the log: per reason, at
//! most [`BURST`] lines in a [`WINDOW`]; what comes after them within the
//! window is only counted, and once the window is over one summary line
//! says how many (`suppressed K similar`). A flood of garbage thus writes
//! at most `BURST + 1` lines per window per reason, however fast it comes,
//! and the lines and summaries together still account for every drop
//! `sdt status` counts (with [`DropLog::flush`] at stop).
//!
//! The state is one fixed array, one slot per reason (plus a few for the
//! daemon's own socket errors, [`Limiter`]): deciding that a drop is only
//! counted costs a lookup, a comparison and an addition, and never
//! allocates.

use std::time::Duration;

use sdt_core::link::DropReason;
use sdt_core::node::{Dropped, ServiceDrop};

/// The window of the rule.
pub const WINDOW: Duration = Duration::from_secs(10);
/// At most this many lines of one reason in a [`WINDOW`].
pub const BURST: u32 = 5;

const LINK_REASONS: usize = DropReason::ALL.len();
/// Every reason a drop can have: the link's, then the services'.
const REASONS: usize = LINK_REASONS + ServiceDrop::ALL.len();

/// What the rule says about one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Log a line for this occurrence.
    pub log: bool,
    /// Occurrences suppressed in the window that just ended, to be logged
    /// first as a summary line (never 0).
    pub summary: Option<u64>,
}

/// The rule for one kind of line (one drop reason, or failed sends).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limiter {
    /// When the current window started.
    start: Option<Duration>,
    /// Lines logged in it.
    logged: u32,
    /// Occurrences in it that were not logged.
    suppressed: u64,
}

impl Limiter {
    /// An occurrence at `now` (time on any monotonic clock).
    pub fn hit(&mut self, now: Duration) -> Hit {
        let summary = self.expire(now);
        if self.start.is_none() {
            self.start = Some(now);
        }
        let log = self.logged < BURST;
        if log {
            self.logged += 1;
        } else {
            self.suppressed += 1;
        }
        Hit { log, summary }
    }

    /// Ends the window if it is over at `now`: the occurrences it
    /// suppressed, if any.
    pub fn expire(&mut self, now: Duration) -> Option<u64> {
        let start = self.start?;
        if now.saturating_sub(start) < WINDOW {
            return None;
        }
        self.start = None;
        self.logged = 0;
        Some(std::mem::take(&mut self.suppressed)).filter(|&n| n > 0)
    }

    /// When [`Limiter::expire`] will have a summary to give.
    pub fn deadline(&self) -> Option<Duration> {
        match self.start {
            Some(start) if self.suppressed > 0 => Some(start + WINDOW),
            _ => None,
        }
    }

    /// The occurrences suppressed so far, forgotten (at stop).
    pub fn take(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

/// The rule for every drop reason, each on its own, and which reasons have
/// been seen at all.
#[derive(Debug)]
pub struct DropLog {
    slots: [Limiter; REASONS],
    seen: [bool; REASONS],
    /// The earliest deadline of a slot holding suppressed drops.
    next: Option<Duration>,
}

impl Default for DropLog {
    fn default() -> Self {
        DropLog {
            slots: [Limiter::default(); REASONS],
            seen: [false; REASONS],
            next: None,
        }
    }
}

impl DropLog {
    /// A drop of `dropped` at `now` (time on any monotonic clock).
    pub fn hit(&mut self, dropped: Dropped, now: Duration) -> Hit {
        let slot = &mut self.slots[index(dropped)];
        let hit = slot.hit(now);
        if let Some(d) = slot.deadline() {
            self.next = Some(self.next.map_or(d, |n| n.min(d)));
        }
        hit
    }

    /// Whether this is the first drop of its reason since the node
    /// started (such a line is logged at info; it is seen from now on).
    pub fn first(&mut self, dropped: Dropped) -> bool {
        !std::mem::replace(&mut self.seen[index(dropped)], true)
    }

    /// When [`DropLog::expire`] will have a summary to give.
    pub fn deadline(&self) -> Option<Duration> {
        self.next
    }

    /// Calls `summary` with each reason whose window is over at `now` and
    /// suppressed drops, and how many; without allocating.
    pub fn expire(&mut self, now: Duration, mut summary: impl FnMut(Dropped, u64)) {
        if self.next.is_none_or(|n| n > now) {
            return;
        }
        self.next = None;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(n) = slot.expire(now) {
                summary(reason(i), n);
            }
            if let Some(d) = slot.deadline() {
                self.next = Some(self.next.map_or(d, |n| n.min(d)));
            }
        }
    }

    /// Calls `summary` with each reason holding suppressed drops, and how
    /// many, and forgets them: at stop, so that the lines account for
    /// every drop counted.
    pub fn flush(&mut self, mut summary: impl FnMut(Dropped, u64)) {
        self.next = None;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let n = slot.take();
            if n > 0 {
                summary(reason(i), n);
            }
        }
    }
}

/// The slot of a reason.
fn index(dropped: Dropped) -> usize {
    match dropped {
        Dropped::Link(r) => DropReason::ALL.iter().position(|&x| x == r).unwrap_or(0),
        Dropped::Service(r) => {
            LINK_REASONS + ServiceDrop::ALL.iter().position(|&x| x == r).unwrap_or(0)
        }
    }
}

/// The reason of a slot.
fn reason(index: usize) -> Dropped {
    match index.checked_sub(LINK_REASONS) {
        None => Dropped::Link(DropReason::ALL[index]),
        Some(i) => Dropped::Service(ServiceDrop::ALL[i]),
    }
}

/// The two parts of a drop's reason for a log line: where it was dropped
/// (`link` or `service`) and the reason's stable name, as `sdt status`
/// shows it.
pub fn parts(dropped: Dropped) -> (&'static str, &'static str) {
    match dropped {
        Dropped::Link(r) => ("link", r.as_str()),
        Dropped::Service(r) => ("service", r.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MALFORMED: Dropped = Dropped::Link(DropReason::Malformed);
    const TABLE_FULL: Dropped = Dropped::Service(ServiceDrop::TableFull);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const LOG: Hit = Hit {
        log: true,
        summary: None,
    };
    const QUIET: Hit = Hit {
        log: false,
        summary: None,
    };

    #[test]
    fn a_burst_per_window_then_one_summary() {
        let mut log = DropLog::default();
        // The first BURST drops of a reason are logged at once.
        for t in 0..u64::from(BURST) {
            assert_eq!(log.hit(MALFORMED, ms(t)), LOG, "at {t} ms");
        }
        // The rest of the window's flood: counted, not logged.
        for t in u64::from(BURST)..1000 {
            assert_eq!(log.hit(MALFORMED, ms(t)), QUIET, "at {t} ms");
        }
        assert_eq!(log.deadline(), Some(WINDOW));
        // Another reason has its own budget.
        assert_eq!(log.hit(TABLE_FULL, ms(500)), LOG);
        // Nothing to summarise before the window ends.
        let mut summaries = Vec::new();
        log.expire(ms(9_999), |d, n| summaries.push((d, n)));
        assert!(summaries.is_empty());
        // Once it has: one summary with the count, and a new window.
        log.expire(WINDOW, |d, n| summaries.push((d, n)));
        assert_eq!(summaries, vec![(MALFORMED, 1000 - u64::from(BURST))]);
        assert_eq!(log.deadline(), None);
        assert_eq!(log.hit(MALFORMED, ms(10_001)), LOG);
    }

    #[test]
    fn a_hit_after_the_window_carries_its_summary() {
        let mut l = Limiter::default();
        for t in 0..10 {
            l.hit(ms(t));
        }
        assert_eq!(
            l.hit(ms(20_000)),
            Hit {
                log: true,
                summary: Some(10 - u64::from(BURST))
            }
        );
        // A quiet window ends with no summary.
        assert_eq!(l.hit(ms(40_000)), LOG);
    }

    #[test]
    fn every_drop_is_accounted_for_once() {
        let mut log = DropLog::default();
        let (mut logged, mut summarised) = (0u64, 0u64);
        // 50,000 drops of one reason 1 ms apart: 50 s of flood.
        for t in 0..50_000 {
            log.expire(ms(t), |_, n| summarised += n);
            let hit = log.hit(MALFORMED, ms(t));
            summarised += hit.summary.unwrap_or(0);
            logged += u64::from(hit.log);
        }
        log.flush(|_, n| summarised += n);
        assert_eq!(logged, 5 * u64::from(BURST), "a burst per window");
        assert_eq!(logged + summarised, 50_000);
        log.flush(|_, _| panic!("flushed twice"));
    }

    #[test]
    fn the_first_drop_of_each_reason_is_told_once() {
        let mut log = DropLog::default();
        assert!(log.first(MALFORMED));
        assert!(!log.first(MALFORMED));
        assert!(log.first(TABLE_FULL));
    }

    #[test]
    fn every_reason_has_its_own_slot() {
        let all = DropReason::ALL
            .iter()
            .map(|&r| Dropped::Link(r))
            .chain(ServiceDrop::ALL.iter().map(|&r| Dropped::Service(r)));
        for (i, d) in all.enumerate() {
            assert_eq!(index(d), i);
            assert_eq!(reason(i), d);
        }
    }
}
