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
            assert!(
                r.bound.is_some(),
                "fault-free after {}: bound applies",
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
