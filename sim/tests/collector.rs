//! The collector scenarios (sim::collector): a hundred push entries into
//! one exit, with restarts and roams among them. A few seeds each here;
//! `cargo run --release -p sim -- --scenario collector-restarts --seeds
//! 0..100` for more. `SDT_SWEEP_SEEDS` applies as in tests/sweep.rs.

use std::ops::Range;

use sim::collector::{find_collector, run_collector};
use sim::sweep_seeds;

fn sweep(name: &str, seeds: Range<u64>) {
    let scenario = find_collector(name).expect("a collector scenario");
    let mut failures = Vec::new();
    for seed in sweep_seeds(seeds).unwrap_or_else(|e| panic!("{e}")) {
        let outcome = run_collector(scenario.setup(seed));
        print!("{}", outcome.summary());
        assert!(
            outcome.sent > 5_000,
            "a hundred loggers sent {}",
            outcome.sent
        );
        if !outcome.passed() {
            failures.push(outcome.summary());
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_hundred_entries_push_into_one_collector() {
    sweep("collector", 0..1);
}

#[test]
fn a_hundred_entries_push_into_one_collector_over_ipv6() {
    sweep("collector-ipv6", 0..1);
}

#[test]
fn entries_and_the_collector_restart() {
    sweep("collector-restarts", 0..2);
}

#[test]
fn entries_roam() {
    sweep("collector-roam", 0..1);
}

/// The checks catch a broken run: an entry whose key the collector does
/// not know gets nothing through, and the exact check says whose.
#[test]
fn an_entry_the_collector_does_not_know_is_caught() {
    let mut setup = find_collector("collector").unwrap().setup(0);
    setup.stranger = Some(7);
    let outcome = run_collector(setup);
    assert!(!outcome.passed());
    assert!(
        outcome
            .violations
            .iter()
            .any(|v| v.starts_with("log-7 sent ") && v.ends_with(", the sink got 0 of them")),
        "{:?}",
        outcome.violations
    );
    assert!(
        outcome.violations.iter().all(|v| !v.starts_with("log-6 ")),
        "only log-7 is short: {:?}",
        outcome.violations
    );
}
