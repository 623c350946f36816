//! The same seed gives the same run; another seed another run.

use sim::{find, run, Options};

#[test]
fn same_seed_same_trace() {
    // Mayhem has every fault: loss, duplication, partition, restart,
    // roaming, table pressure and the attacker.
    let s = find("mayhem").expect("scenario");
    let a = run(s, 7, Options::default());
    let b = run(s, 7, Options::default());
    assert_eq!(a.events, b.events);
    assert_eq!(a.head, b.head);
    assert_eq!(
        a.hash,
        b.hash,
        "same seed, different runs:\n{}\n{}",
        a.summary(),
        b.summary()
    );
    assert_eq!(a.summary(), b.summary());
}

#[test]
fn another_seed_another_trace() {
    let s = find("forward").expect("scenario");
    let a = run(s, 1, Options::default());
    let b = run(s, 2, Options::default());
    assert_ne!(a.hash, b.hash);
}
