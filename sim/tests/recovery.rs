//! Recovery after faults end, measured in simulated time and held to
//! bounds derived from the link's timers (issue 13's timers).
//!
//! A bound is the time from the end of a fault until the first datagram a
//! customer sends after it has been delivered and, in modes with answers,
//! its answer is back. Each adds, once a handshake starts, three X–Y trips
//! (initiation, response, the initiator's first frame), a send gap, two
//! customer-to-customer trips and two ticks (`after` below). Before that:
//!
//! ```text
//! a restarted node is back (Setup::restart_bound):
//!   PROBE_AFTER + PROBE_TIMEOUT + gap   1 s + 1 s: its peer probes data left
//!                                       unanswered (or, keeping the link up,
//!                                       silence) and handshakes when the probe
//!                                       is unanswered; copies of an initiation
//!                                       sent while it was down come every
//!                                       1.067 s at most, which is less
//! a partition heals, X roams, the loss stops (Setup::recovery_bound):
//!   REKEY_TIMEOUT + MAX_JITTER          5.333 s: an initiation that reached the
//!                                       peer but whose response the fault lost;
//!                                       its copies are refused as replays, and a
//!                                       fresh initiation comes after this long
//! ```
//!
//! so about 2.1–2.8 s after a restart and 6 s after the other faults, with
//! these scenarios' latencies (at most 60 ms X–Y, 3 ms to customers, a gap
//! of at most 400 ms). They were 21 s when a silent peer was noticed after
//! `KEEPALIVE_TIMEOUT + REKEY_TIMEOUT` and retries came every
//! `REKEY_TIMEOUT`. Each run checks every recovery against its bound (see
//! `check::recoveries`); these tests also print what was measured (`cargo
//! test -p sim --test recovery -- --nocapture`). The start-order and
//! restart-phase sweeps of every mode are in `tests/bounds.rs`.
//!
//! A restart with the wall clock stepped ahead (`Setup::heal_bound`) keeps
//! the restart bound; so does one stepped back where the peer reaches the
//! node (since finding 6's fix, sim/README.md); stepped back by `S` when the
//! peer cannot reach the node (it moved to a new port): the peer refuses the stepped
//! node's initiations until its clock passes the last timestamp the peer
//! accepted, so the bound is `S` more. That case is a core limitation (as
//! in WireGuard), pinned below.

use std::ops::Range;
use std::time::Duration;

use sdt_core::link::{MAX_JITTER, PROBE_AFTER, PROBE_TIMEOUT, REKEY_TIMEOUT};
use sim::{find, run, sweep_seeds, Options};

/// Runs `name` for `seeds` (or `SDT_SWEEP_SEEDS`, see `sim::sweep_seeds`).
fn recover(name: &str, seeds: Range<u64>) {
    let seeds = sweep_seeds(seeds).unwrap_or_else(|e| panic!("{e}"));
    let scenario = find(name).expect("scenario");
    let mut failures = Vec::new();
    let mut worst = Duration::ZERO;
    for seed in seeds {
        let outcome = run(scenario, seed, Options::default());
        let setup = &outcome.setup;
        let after = 3 * setup.faults.latency.1
            + Duration::from_millis(setup.traffic.gap_ms.1)
            + 2 * (2 * setup.customer_latency.1 + setup.faults.latency.1)
            + 2 * Duration::from_millis(1);
        let general = REKEY_TIMEOUT + MAX_JITTER + after;
        let restarted =
            PROBE_AFTER + PROBE_TIMEOUT + Duration::from_millis(setup.traffic.gap_ms.1) + after;
        assert_eq!(setup.recovery_bound(), general, "the derived bound");
        assert_eq!(setup.restart_bound(), restarted, "the derived bound");
        let bound = restarted;
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
            let expected = if r.what.contains(" back at ") {
                restarted
            } else {
                general
            };
            // A roam takes the larger of its own bound and the restart's.
            let want = if roam && extra > Duration::ZERO {
                general.max(restarted + extra)
            } else {
                expected + extra
            };
            assert_eq!(
                r.bound,
                Some(want),
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
fn router_mirror_image_restart_of_the_exit() {
    // X holds the router exit and keeps the link up: it initiates at boot.
    recover("router-reverse-restart-x", 0..2);
}

#[test]
fn router_mirror_image_restart_of_the_entry() {
    // Y holds the TUN entry and knows no endpoint for X: X's answers to
    // the bobs go unanswered (or, idle, the kept-up link is silent), X
    // probes and handshakes.
    recover("router-reverse-restart-y", 0..2);
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
fn push_clock_step_back_of_the_only_initiator() {
    // Only X sends data; Y refuses its initiations as replays and reaches
    // out: the general bound, not the step plus it (finding 5, fixed).
    recover("push-clock-back-x", 0..1);
}

/// Regression (sim/README.md, finding 8, fixed): seed 127 of the
/// 10,000-seed sweep. Y reached out, and X's stale resend, sent before Y's
/// initiation arrived, renewed it; X's answer to the first then met no
/// pending handshake, and X's next run ignored the renewed one as a race:
/// 5.1 s against a bound of 2.8 s.
#[test]
fn clock_step_back_reach_out_is_not_renewed_by_a_crossing_resend() {
    recover("push-clock-back-x", 127..128);
}

#[test]
fn clock_step_back_on_a_new_port_within_the_step_plus_the_bound() {
    // Y initiates, but to X's old port: only X can bring the link up.
    recover("forward-clock-back-new-port", 0..1);
}

/// Recovery after `name`'s faults within the general bound
/// (`Setup::recovery_bound`, about 6 s), not the clock step plus a bound,
/// seeds 0..4 (or `SDT_SWEEP_SEEDS`). Each run also checks its own
/// bound, the restart bound here (`Setup::heal_bound`).
fn within_the_normal_bound(name: &str) {
    let mut failures = Vec::new();
    let scenario = find(name).expect("scenario");
    for seed in sweep_seeds(0..4).unwrap_or_else(|e| panic!("{e}")) {
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
/// to X's endpoint (`link::reach_out`): the general bound holds. It failed on
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
