//! Recovery after faults end, measured in simulated time and held to a
//! bound derived from the link's timers.
//!
//! The bound (`Setup::recovery_bound`) is the time from the end of a fault
//! (a partition heals, a restarted node is back, X's link port moved) until
//! the first datagram a customer sends after it has been delivered and, in
//! modes with answers, its answer is back:
//!
//! ```text
//!   KEEPALIVE_TIMEOUT + REKEY_TIMEOUT   10 s + 5 s: a sender that hears nothing
//!                                       back starts a handshake this long after
//!                                       its first unanswered datagram, which may
//!                                       be sent right at the heal (a restarted
//!                                       responder lost the session and says
//!                                       nothing)
//! + REKEY_TIMEOUT + MAX_JITTER          5.333 s: one more attempt, if the one in
//!                                       flight at the heal was lost to the fault
//! + MAX_JITTER                          0.333 s: a crossing initiation (direct)
//! + 2 × X–Y latency                     the handshake's round trip
//! + send gap                            the next datagram
//! + 2 × trip                            customer → X → Y → customer and back
//! + 2 ticks                             hosts see time in 1 ms steps
//! ```
//!
//! that is `2 × REKEY_TIMEOUT + KEEPALIVE_TIMEOUT + 2 × MAX_JITTER + RTT +
//! gap + trips`, about 21.5 s with these scenarios' latencies (at most 60 ms
//! X–Y, 3 ms to customers, a gap of at most 400 ms). Each run checks every
//! recovery against it (see `check::recoveries`); these tests also print
//! what was measured (`cargo test -p sim --test recovery -- --nocapture`).
//!
//! A restart with the wall clock stepped (`Setup::heal_bound`) keeps this
//! bound, except after a step back of `S` when the peer never initiates:
//! the peer refuses the stepped node's initiations until its clock passes
//! the last timestamp the peer accepted, so the bound is `S` more. That
//! case is a core limitation (as in WireGuard), pinned below.

use std::ops::Range;
use std::time::Duration;

use sdt_core::link::{KEEPALIVE_TIMEOUT, MAX_JITTER, REKEY_TIMEOUT};
use sim::{find, run, Options};

fn recover(name: &str, seeds: Range<u64>) {
    let scenario = find(name).expect("scenario");
    let mut failures = Vec::new();
    let mut worst = Duration::ZERO;
    for seed in seeds {
        let outcome = run(scenario, seed, Options::default());
        let setup = &outcome.setup;
        let bound = setup.recovery_bound();
        let expected = 2 * REKEY_TIMEOUT
            + KEEPALIVE_TIMEOUT
            + 2 * MAX_JITTER
            + 2 * setup.faults.latency.1
            + Duration::from_millis(setup.traffic.gap_ms.1)
            + 2 * (2 * setup.customer_latency.1 + setup.faults.latency.1)
            + 2 * Duration::from_millis(1);
        assert_eq!(bound, expected, "the bound is the derived one");
        assert!(
            !outcome.recoveries.is_empty(),
            "{name} has a fault that ends"
        );
        for r in &outcome.recoveries {
            let took = r.took(setup.answers());
            println!(
                "{name} seed {}: {r} -> {}",
                setup.seed,
                took.map_or("never".into(), |t| format!("{:.3}s", t.as_secs_f64()))
            );
            // A step back that the peer cannot help with adds the step, to
            // the restart and to a roam of X around it.
            let roam = r.what.starts_with("x roamed");
            let extra = setup
                .faults
                .restarts
                .iter()
                .filter(|x| match r.clock_step {
                    Some((node, _)) => x.node == node && x.down.end == r.at,
                    None => {
                        roam && x.node == 0 && r.at >= x.down.start && r.at <= x.down.end + bound
                    }
                })
                .filter_map(|x| x.clock_step.filter(|c| !c.forward).map(|c| (x, c)))
                .filter(|(x, _)| !setup.peer_reaches(x))
                .map(|(_, c)| c.by)
                .max()
                .unwrap_or(Duration::ZERO);
            assert_eq!(
                r.bound,
                Some(expected + extra),
                "fault-free after {}: the derived bound applies",
                r.what
            );
            if let Some(t) = took {
                worst = worst.max(t);
            }
        }
        if !outcome.passed() {
            failures.push(outcome.failure_report());
        }
    }
    println!("{name}: worst recovery {:.3}s", worst.as_secs_f64());
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn forward_partition() {
    recover("forward-partition", 0..2);
}

#[test]
fn direct_partition() {
    recover("direct-partition", 0..2);
}

#[test]
fn forward_restart_of_the_initiator() {
    recover("forward-restart-x", 0..2);
}

#[test]
fn forward_restart_of_the_responder() {
    recover("forward-restart-y", 0..2);
}

#[test]
fn direct_restart() {
    recover("direct-restart", 0..2);
}

#[test]
fn router_restart() {
    recover("router-restart", 0..2);
}

#[test]
fn forward_roam() {
    recover("forward-roam", 0..2);
}

#[test]
fn forward_mirror_image_restart_of_the_exit() {
    recover("forward-reverse-restart-x", 0..2);
}

#[test]
fn forward_mirror_image_restart_of_the_entry() {
    // Recovers only because the targets answer: X's answers go unanswered
    // and start its handshake. Without answers see push-reverse-restart-y
    // (Findings 4 in the README).
    recover("forward-reverse-restart-y", 0..2);
}

#[test]
fn forward_clock_steps_ahead_at_restarts() {
    // Both nodes, in turn: a clock ahead only makes timestamps newer.
    recover("forward-clock-forward", 0..2);
}

#[test]
fn forward_clock_step_back_of_the_initiator() {
    // Y refuses X's initiations, but Y's answers go unanswered and Y
    // initiates; X, restarted, has no timestamps to hold against it.
    recover("forward-clock-back-x", 0..2);
}

#[test]
fn forward_clock_step_back_of_the_responder() {
    // Y's timestamps do not matter: X initiates.
    recover("forward-clock-back-y", 0..2);
}

#[test]
fn push_clock_step_back_of_the_only_initiator_within_the_step_plus_the_bound() {
    // Only X initiates: it gets through once its clock has caught up, within
    // the step plus the normal bound.
    recover("push-clock-back-x", 0..1);
}

#[test]
fn clock_step_back_on_a_new_port_within_the_step_plus_the_bound() {
    // Y initiates, but to X's old port: only X can bring the link up.
    recover("forward-clock-back-new-port", 0..1);
}

/// Recovery after `name`'s faults within the bound without clock steps,
/// seeds 0..4.
fn within_the_normal_bound(name: &str) {
    let mut failures = Vec::new();
    let scenario = find(name).expect("scenario");
    for seed in 0..4 {
        let outcome = run(scenario, seed, Options::default());
        let setup = &outcome.setup;
        let normal = setup.recovery_bound();
        for r in &outcome.recoveries {
            match r.took(setup.answers()) {
                Some(t) if t <= normal => {}
                took => failures.push(format!(
                    "{name} seed {seed}: recovery after {} took {}, more than the bound without clock steps {:.3}s; reproduce with:\n    {}",
                    r.what,
                    took.map_or("never".into(), |t| format!("{:.3}s", t.as_secs_f64())),
                    normal.as_secs_f64(),
                    setup.reproduce()
                )),
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Finding 5, fixed in core for a node that stays where it was: after a
/// step back of its wall clock, X (push: Y never sends data, so only X
/// initiates) is refused as a replayer, and Y, refusing an authenticated
/// initiation of an incarnation it does not know, starts its own handshake
/// to X's endpoint (`link::reach_out`): the normal bound holds. It failed on
/// every seed before (46-98 s).
#[test]
fn clock_step_back_of_the_only_initiator_within_the_normal_bound() {
    within_the_normal_bound("push-clock-back-x");
}

/// The part of finding 5 still open: X back with its clock behind *and* on
/// a new port. Y's own handshakes go to the old port, and reaching X would
/// mean sending to the source of an unconfirmed initiation (see
/// `link::reach_out`).
#[test]
#[ignore = "core limitation: a node back with its clock stepped back and on a new port is refused until its clock catches up (sim/README.md, Findings 5)"]
fn core_limitation_clock_step_back_on_a_new_port() {
    within_the_normal_bound("forward-clock-back-new-port");
}
