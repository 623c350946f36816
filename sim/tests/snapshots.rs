//! The first trace lines of one canonical run per mode (fault-free, fixed
//! latencies, so in order): behaviour changes show in review.

use sim::{find, run, Options};

/// Trace lines kept per snapshot.
const LINES: usize = 40;

fn first_lines(scenario: &str) -> Vec<String> {
    let outcome = run(find(scenario).expect("scenario"), 0, Options::default());
    assert!(outcome.passed(), "{}", outcome.failure_report());
    outcome.head.iter().take(LINES).cloned().collect()
}

#[test]
fn direct() {
    insta::assert_yaml_snapshot!(first_lines("canonical-direct"));
}

#[test]
fn forward() {
    insta::assert_yaml_snapshot!(first_lines("canonical-forward"));
}

#[test]
fn push() {
    insta::assert_yaml_snapshot!(first_lines("canonical-push"));
}

#[test]
fn router() {
    insta::assert_yaml_snapshot!(first_lines("canonical-router"));
}
