//! How fast traffic must flow again after each fault, derived from core's
//! link timers (the constants it exports), not measured: a heal that takes
//! longer than its bound is a violation. The derivations are written next
//! to each bound so that a change of core's timers shows here as a change
//! of theory, and `tests/bounds.rs` checks them against runs.

use std::time::Duration;

use sdt_core::link::{
    MAX_JITTER, MAX_RESEND_GAP, PROBE_AFTER, PROBE_TIMEOUT, REKEY_ATTEMPT_TIME, REKEY_TIMEOUT,
};

use super::cast::{other, NODE_NAMES, TICK, X, Y};
use super::faults::{ClockStep, Restart};
use super::setup::Setup;

/// The end of a fault, after which traffic must flow again within `bound`.
#[derive(Debug, Clone, PartialEq)]
pub struct Heal {
    /// When the fault ended.
    pub at: Duration,
    /// What ended, for reports.
    pub what: String,
    /// The bound on recovery after it: [`Setup::recovery_bound`], plus the
    /// step for a backward clock step that only the stepped node can get
    /// over (see [`Setup::heal_bound`]).
    pub bound: Duration,
    /// The clock step of a restart, as (node, step).
    pub clock_step: Option<(usize, ClockStep)>,
}

impl Setup {
    /// Times at which a fault ends and traffic must flow again within the
    /// recovery bound: partitions heal, restarted nodes come back, X roams,
    /// the loss stops.
    pub fn heals(&self) -> Vec<Heal> {
        let f = &self.faults;
        let normal = self.recovery_bound();
        let mut v: Vec<Heal> = Vec::new();
        if let Some(start) = self.start {
            let later = if start[X] >= start[Y] { X } else { Y };
            let other = other(later);
            v.push(Heal {
                at: start[later],
                what: format!(
                    "{} started at {:.3}s, {:.3}s after {}",
                    NODE_NAMES[later],
                    secs(start[later]),
                    secs(start[later] - start[other]),
                    NODE_NAMES[other]
                ),
                bound: self.start_bound(),
                clock_step: None,
            });
        }
        let heal = |at: Duration, what: String| Heal {
            at,
            what,
            bound: normal,
            clock_step: None,
        };
        for p in &f.partitions {
            v.push(heal(
                p.end,
                format!("partition healed at {:.3}s", secs(p.end)),
            ));
        }
        for r in &f.restarts {
            let mut h = heal(
                r.down.end,
                format!("{} back at {:.3}s", NODE_NAMES[r.node], secs(r.down.end)),
            );
            h.bound = self.restart_bound();
            if let Some(c) = r.clock_step {
                h.what += &format!(", wall clock {c}");
                h.clock_step = Some((r.node, c));
                h.bound = self.heal_bound(r, c);
            }
            v.push(h);
        }
        for &t in &f.roams {
            let mut h = heal(t, format!("x roamed at {:.3}s", secs(t)));
            // A roam around a restart of X with its clock stepped is part of
            // that fault, and has its bound.
            for r in &f.restarts {
                if let Some(c) = r.clock_step {
                    if r.node == X && t >= r.down.start && t <= r.down.end + self.restart_bound() {
                        h.bound = h.bound.max(self.heal_bound(r, c));
                    }
                }
            }
            v.push(h);
        }
        if let Some(l) = f.loss {
            v.push(heal(
                l.until,
                format!("loss stopped at {:.3}s", secs(l.until)),
            ));
        }
        v.sort_by_key(|h| h.at);
        v
    }

    /// The bound on recovery after restart `r`, whose node came back with
    /// its wall clock stepped by `step`.
    ///
    /// A responder refuses an initiation whose TAI64N timestamp is not newer
    /// than the last it accepted from the initiator (`replayed_initiation`).
    /// With its wall clock `W` ahead of the true time `t`, a node stamps
    /// `t + W`. Its peer last accepted a stamp `t_a + W_old`, from an
    /// initiation sent at `t_a`, before the crash. Stepped by `s`, the node
    /// stamps `t + W_old + s`:
    /// - ahead (`s > 0`), every stamp is newer: [`Setup::restart_bound`];
    /// - back by `S`, the peer refuses the node's initiations until
    ///   `t > t_a + S`, which is before `t_boot + S` since `t_a < t_boot`.
    ///   The restarted node has no timestamps from before its restart to
    ///   hold against anyone, so where the peer reaches the node
    ///   ([`Setup::peer_reaches`]: it probes, or refuses the stale
    ///   initiation and reaches out, `link::reach_out`) the link comes up
    ///   without waiting for the clock, within the restart bound. (It
    ///   did not always before finding 6's fix: the peer's reach-out could
    ///   cross the node's next initiation, the node, whose key won the
    ///   race, ignored it and recorded its timestamp, and nothing crossed
    ///   until a fresh initiation of the peer's; now a stale initiation
    ///   that meets the peer's pending reach-out renews it at once,
    ///   `link::reach_out`.) Otherwise only the stepped
    ///   node's attempts can bring the link up, and they get through once
    ///   its clock passes `t_a`: at most `S` plus the restart bound.
    pub fn heal_bound(&self, r: &Restart, step: ClockStep) -> Duration {
        let normal = self.restart_bound();
        if step.forward || self.peer_reaches(r) {
            normal
        } else {
            normal + step.by
        }
    }

    /// Whether the peer of the node restarted in `r` starts a handshake to
    /// where the node is, soon enough for [`Setup::restart_bound`]. Every
    /// peer in these scenarios notices on its own once it has heard from
    /// the node: one that sends data probes after [`PROBE_AFTER`] of it
    /// unanswered, one that keeps the link up (it holds an exit half, or a
    /// direct service) after [`PROBE_AFTER`] of silence, and either starts a
    /// handshake when the probe is unanswered for [`PROBE_TIMEOUT`]. So:
    /// - its attempts have not given up: a peer that does not keep the
    ///   link up gives up [`REKEY_ATTEMPT_TIME`] after they started, about
    ///   two seconds after the crash, so the node must be down for less;
    /// - they go where the node is: X must not move to a new port from its
    ///   crash until the bound has passed (the peer's endpoint would be
    ///   stale, and a refused initiation rightly does not move it).
    pub fn peer_reaches(&self, r: &Restart) -> bool {
        let until = r.down.end + self.restart_bound();
        let moved = r.node == X
            && self
                .faults
                .roams
                .iter()
                .any(|&t| t >= r.down.start && t <= until);
        r.down.end - r.down.start < REKEY_ATTEMPT_TIME && !moved
    }
}

/// Upper bound on one trip of a datagram customer to customer: customer
/// link, X–Y link, customer link.
fn trip(setup: &Setup) -> Duration {
    2 * setup.customer_latency.1 + setup.faults.latency.1
}

/// The longest gap between two copies of an unanswered initiation: core
/// resends after [`MAX_RESEND_GAP`] at most, plus a jitter below
/// `gap × MAX_JITTER / REKEY_TIMEOUT` (core's `resend_jitter`), and a fresh
/// initiation replaces the copies within [`REKEY_TIMEOUT`] + [`MAX_JITTER`]
/// of the first, no later than the next copy would have come: 1.067 s.
pub fn resend_spacing() -> Duration {
    let jitter = MAX_RESEND_GAP.as_nanos() * MAX_JITTER.as_nanos() / REKEY_TIMEOUT.as_nanos();
    MAX_RESEND_GAP + Duration::from_nanos(jitter as u64)
}

impl Setup {
    /// What every bound adds once a handshake starts, to the first
    /// datagram sent after the heal being delivered (and its answer back):
    /// - three X–Y trips: the initiation (or the copy that gets through),
    ///   the response, and the initiator's first frame, which a responder
    ///   waits for before it sends on the session (the entry of a mirror
    ///   image is the responder);
    /// - the next datagram, up to one send gap later (a staged one is sent
    ///   at once);
    /// - its trip customer to customer, and its answer's trip back;
    /// - two ticks, since hosts see time in 1 ms steps.
    pub fn after_handshake(&self) -> Duration {
        3 * self.faults.latency.1
            + Duration::from_millis(self.traffic.gap_ms.1)
            + 2 * trip(self)
            + 2 * TICK
    }

    /// The bound on the first datagram crossing after the later of the two
    /// nodes started ([`Setup::start`]), measured from that start:
    /// - the earlier node, if it initiates, has been sending copies of its
    ///   initiation into nothing; the first that reaches the later node is
    ///   sent at most [`resend_spacing`] after the one before (1.067 s);
    /// - if the later node initiates, it does at its start (kept up) or on
    ///   its customers' first datagram, to a peer already up; a crossing
    ///   initiation is ignored once by the higher key, whose own copy the
    ///   other then answers;
    /// - then [`Setup::after_handshake`].
    ///
    /// So `MAX_RESEND_GAP × (1 + MAX_JITTER / REKEY_TIMEOUT) + 3 × X–Y
    /// latency + gap + 2 trips + 2 ticks`: about 1.14 s with the start-order
    /// scenarios' latencies (at most 15 ms X–Y, 3 ms to customers, a gap of
    /// 10 ms).
    pub fn start_bound(&self) -> Duration {
        resend_spacing() + self.after_handshake()
    }

    /// The bound on recovery after a restarted node is back (state lost,
    /// the key kept), from the moment it is back:
    /// - the restarted node drops its peer's frames under the session it
    ///   lost, and says nothing (they do not authenticate for it). Its peer
    ///   has sent it data (or, keeping the link up, heard nothing) since at
    ///   most one send gap after it is back; [`PROBE_AFTER`] later it
    ///   probes, and [`PROBE_TIMEOUT`] after that it starts a handshake;
    /// - if that handshake started while the node was still down, its
    ///   copies went nowhere, and the next comes within [`resend_spacing`];
    /// - a restarted node that initiates does so at once (kept up) or on
    ///   its customers' first datagram, and the peer accepts it (a newer
    ///   timestamp);
    /// - then [`Setup::after_handshake`].
    ///
    /// So `max(PROBE_AFTER + PROBE_TIMEOUT + gap, resend spacing) + 3 ×
    /// X–Y latency + gap + 2 trips + 2 ticks`: about 2.1 s with the
    /// restart-phase scenarios' latencies, 2.8 s with the general ones (at
    /// most 60 ms X–Y, 3 ms to customers, a gap of at most 400 ms).
    pub fn restart_bound(&self) -> Duration {
        let noticed = PROBE_AFTER + PROBE_TIMEOUT + Duration::from_millis(self.traffic.gap_ms.1);
        noticed.max(resend_spacing()) + self.after_handshake()
    }

    /// The bound on recovery after a partition heals, X roams or the loss
    /// stops: the time from the end of the fault until the first datagram
    /// sent after it is delivered (and, in modes with answers, until its
    /// answer is back).
    ///
    /// Derivation, from the link's timers:
    /// - a handshake under way whose initiation never reached the peer gets
    ///   through with the next copy, within [`resend_spacing`];
    /// - one whose initiation reached the peer, but whose response the
    ///   fault lost, cannot: the peer refuses every copy as a replay and
    ///   answers nothing. A fresh initiation replaces it [`REKEY_TIMEOUT`]
    ///   plus up to [`MAX_JITTER`] after the first copy, sent before the
    ///   heal: 5.333 s;
    /// - a session that outlived the fault carries at once; one whose peer
    ///   stopped answering is probed and replaced within [`PROBE_AFTER`] +
    ///   [`PROBE_TIMEOUT`];
    /// - then [`Setup::after_handshake`].
    ///
    /// So `REKEY_TIMEOUT + MAX_JITTER + 3 × X–Y latency + gap + 2 trips +
    /// 2 ticks`: about 6 s with the scenarios' latencies (at most 150 ms
    /// X–Y in the chaos scenarios, 3 ms to customers, a gap of at most
    /// 400 ms). The old bound, 21 s, had a node notice a silent peer only
    /// after `KEEPALIVE_TIMEOUT + REKEY_TIMEOUT` and retry only every
    /// `REKEY_TIMEOUT`.
    pub fn recovery_bound(&self) -> Duration {
        let lost_response = REKEY_TIMEOUT + MAX_JITTER;
        let probed = PROBE_AFTER + PROBE_TIMEOUT + Duration::from_millis(self.traffic.gap_ms.1);
        lost_response.max(probed).max(resend_spacing()) + self.after_handshake()
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
