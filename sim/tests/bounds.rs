//! The bounds of issue 13, shown for every mode and mirror image the
//! simulation runs: direct, forward, push, router, and the mirror images
//! of forward, push and router (direct is its own).
//!
//! - Start order (`MODE-start-order`): Y starts from 8 s before to 8 s after
//!   X, in steps of 0.1 s (seed `n` takes offset `n % 161`), with customers
//!   sending 100 datagrams a second from the start. The first datagram sent
//!   after the later start crosses (and, with answers, its answer is back)
//!   within `Setup::start_bound`: core's `MAX_RESEND_GAP` plus its resend
//!   jitter (1.067 s), three X–Y trips for the handshake, a send gap and
//!   two trips customer to customer; about 1.1 s.
//! - Restart (`MODE-restart-phase-x`, `-y`): each node in turn restarts
//!   (state lost, key kept) at one of 20 phases 0.1 s apart of its peer's
//!   timers while 100 datagrams a second flow, down for 50 ms to 3 s; an
//!   attacker sends garbage, mutations, replays and forged frames all
//!   along. Traffic is back within `Setup::restart_bound` of the node being
//!   back: `PROBE_AFTER + PROBE_TIMEOUT` and a send gap for the peer to
//!   notice, then the same handshake and trips; about 2.1 s. Every run also
//!   keeps the stance (the attacker receives nothing: no node is loaded, so
//!   not even a cookie reply) and the ledger's invariants.
//!
//! This file runs a stride of the offsets and phases (`DEBUG_STRIDE`);
//! with `SDT_SWEEP_SEEDS` set it runs the seeds that gives, every offset
//! and phase (sim/README.md, "Sweeps").
//!
//! Simulated time, so the runs are deterministic and the bounds are
//! asserted on simulated durations. `cargo test -p sim --test bounds --
//! --nocapture` prints the worst case of each scenario.

use std::time::Duration;

use sdt_core::link::{MAX_JITTER, MAX_RESEND_GAP, PROBE_AFTER, PROBE_TIMEOUT, REKEY_TIMEOUT};
use sim::scenario::{start_offset_ms, RESTART_PHASES, START_OFFSETS};
use sim::{find, run, sweep_seeds, Options, SWEEP_SEEDS_VAR};

/// Every eleventh start offset (1.1 s apart, so each tenth of a second of
/// the resend timers' phase comes up at least once) and every other
/// restart phase (0.2 s apart), so the file stays cheap in a debug build;
/// every offset and phase, and more seeds, in release: `cargo run
/// --release -p sim -- --scenario forward-start-order --seeds 0..161`
/// (sim/README.md, "Start order and restarts").
const DEBUG_STRIDE: (usize, usize) = (11, 2);

/// Every `stride`th of the seeds `0..count`, or with `SDT_SWEEP_SEEDS` set
/// the seeds it gives (`sim::sweep_seeds`), all of them.
fn seeds(count: u64, stride: usize) -> Vec<u64> {
    if std::env::var_os(SWEEP_SEEDS_VAR).is_some() {
        sweep_seeds(0..count)
            .unwrap_or_else(|e| panic!("{e}"))
            .collect()
    } else {
        (0..count).step_by(stride).collect()
    }
}

/// The configurations, as scenario-name prefixes.
const CONFIGS: [&str; 7] = [
    "direct",
    "forward",
    "push",
    "router",
    "forward-reverse",
    "push-reverse",
    "router-reverse",
];

/// Runs `name` for `seeds`; checks each run passed and that the heal whose
/// description starts with `heal` was measured against `bound(setup)`,
/// which must be below `about`. Returns the worst (time, seed).
fn hold(
    name: &str,
    seeds: Vec<u64>,
    heal: &str,
    bound: impl Fn(&sim::scenario::Setup) -> Duration,
    about: Duration,
) -> (Duration, u64) {
    let scenario = find(name).unwrap_or_else(|| panic!("no scenario {name}"));
    let mut failures = Vec::new();
    let mut worst = (Duration::ZERO, 0);
    for seed in seeds {
        let outcome = run(scenario, seed, Options::default());
        let setup = &outcome.setup;
        let b = bound(setup);
        assert!(
            b < about,
            "{name} seed {seed}: bound {b:?}, not about {about:?}"
        );
        let r = outcome
            .recoveries
            .iter()
            .find(|r| r.what.contains(heal))
            .unwrap_or_else(|| panic!("{name} seed {seed}: no heal {heal:?}"));
        assert_eq!(r.bound, Some(b), "{name} seed {seed}: {r}");
        match r.took(setup.answers()) {
            Some(t) => {
                if t > worst.0 {
                    worst = (t, seed);
                }
            }
            None => failures.push(format!(
                "{name} seed {seed}: nothing crossed after {}",
                r.what
            )),
        }
        if !outcome.passed() {
            failures.push(outcome.failure_report());
        }
        if name.contains("restart-phase") {
            assert!(outcome.attacker_sent > 0, "{name} seed {seed}: no attack");
        }
    }
    println!(
        "{name}: worst {:.3}s (seed {}), bound {:.3}s",
        worst.0.as_secs_f64(),
        worst.1,
        bound(&scenario.setup(worst.1)).as_secs_f64()
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    worst
}

/// The start bound, derived here from core's constants.
fn start_bound(s: &sim::scenario::Setup) -> Duration {
    let resend = MAX_RESEND_GAP
        + MAX_RESEND_GAP * MAX_JITTER.as_millis() as u32 / REKEY_TIMEOUT.as_millis() as u32;
    resend + after_handshake(s)
}

/// The restart bound, derived here from core's constants.
fn restart_bound(s: &sim::scenario::Setup) -> Duration {
    PROBE_AFTER + PROBE_TIMEOUT + Duration::from_millis(s.traffic.gap_ms.1) + after_handshake(s)
}

fn after_handshake(s: &sim::scenario::Setup) -> Duration {
    let xy = s.faults.latency.1;
    let trip = 2 * s.customer_latency.1 + xy;
    3 * xy + Duration::from_millis(s.traffic.gap_ms.1) + 2 * trip + 2 * Duration::from_millis(1)
}

fn start_order(config: &str) {
    let name = format!("{config}-start-order");
    let (worst, seed) = hold(
        &name,
        seeds(START_OFFSETS, DEBUG_STRIDE.0),
        "started at",
        |s| {
            assert_eq!(s.start_bound(), start_bound(s), "the derived bound");
            start_bound(s)
        },
        Duration::from_millis(1_250),
    );
    let offset = start_offset_ms(seed);
    let (late, early) = if offset >= 0 { ("Y", "X") } else { ("X", "Y") };
    println!(
        "  worst when {late} started {:.1} s after {early}",
        offset.unsigned_abs() as f64 / 1000.0
    );
    assert!(worst > Duration::ZERO);
}

fn restart(config: &str, node: &str) {
    let name = format!("{config}-restart-phase-{node}");
    hold(
        &name,
        seeds(RESTART_PHASES, DEBUG_STRIDE.1),
        "back at",
        |s| {
            assert_eq!(s.restart_bound(), restart_bound(s), "the derived bound");
            restart_bound(s)
        },
        Duration::from_millis(2_250),
    );
}

macro_rules! bounds {
    ($($start:ident $rx:ident $ry:ident: $config:literal;)*) => {
        $(
            #[test]
            fn $start() {
                start_order($config);
            }

            #[test]
            fn $rx() {
                restart($config, "x");
            }

            #[test]
            fn $ry() {
                restart($config, "y");
            }
        )*

        #[test]
        fn every_config_is_covered() {
            assert_eq!([$($config),*], CONFIGS);
        }
    };
}

bounds! {
    direct_start_order direct_restart_x direct_restart_y: "direct";
    forward_start_order forward_restart_x forward_restart_y: "forward";
    push_start_order push_restart_x push_restart_y: "push";
    router_start_order router_restart_x router_restart_y: "router";
    forward_reverse_start_order forward_reverse_restart_x forward_reverse_restart_y: "forward-reverse";
    push_reverse_start_order push_reverse_restart_x push_reverse_restart_y: "push-reverse";
    router_reverse_start_order router_reverse_restart_x router_reverse_restart_y: "router-reverse";
}
