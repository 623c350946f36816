//! The harness's own tests: every family of invariants fails a run whose
//! runtime is broken on purpose, so a passing sweep means something.

use sim::{find, run, Options, Sabotage};

fn sabotaged(scenario: &str, seed: u64, sabotage: Sabotage) -> Vec<String> {
    let s = find(scenario).expect("scenario");
    let clean = run(s, seed, Options::default());
    assert!(clean.passed(), "{}", clean.failure_report());
    let broken = run(
        s,
        seed,
        Options {
            sabotage: Some(sabotage),
            ..Options::default()
        },
    );
    assert!(!broken.passed(), "{sabotage:?} went unnoticed");
    broken.violations
}

fn any(violations: &[String], needle: &str) -> bool {
    violations.iter().any(|v| v.contains(needle))
}

#[test]
fn duplicate_deliveries_are_caught() {
    let v = sabotaged("forward", 1, Sabotage::DeliverTwice);
    assert!(any(&v, "again (first at"), "{v:#?}");
}

#[test]
fn misrouted_answers_are_caught() {
    let v = sabotaged("forward", 1, Sabotage::Misroute);
    assert!(any(&v, "the answer belongs to alice-"), "{v:#?}");
}

/// The same through a TUN device, in both images: the router entry's
/// runtime hands what core writes to TUN to the next client. In the mirror
/// image that is Y's TUN and the bobs.
#[test]
fn misrouted_tun_answers_are_caught() {
    for (scenario, client) in [("router", "alice-"), ("router-reverse", "bob-")] {
        let v = sabotaged(scenario, 1, Sabotage::Misroute);
        let needle = format!("the answer belongs to {client}");
        assert!(any(&v, &needle), "{scenario}: {v:#?}");
    }
}

/// ICMP through the TUN device: the entry's runtime hands the echo
/// replies and port unreachables core forges to the next client, over
/// IPv4 and IPv6, and in the mirror image. The echo reply then reaches a client that did not ping
/// with it, and the port unreachable and the packet too big one whose
/// datagram they do not quote.
#[test]
fn misrouted_icmp_is_caught() {
    for (scenario, client) in [
        ("router-icmp", "alice-"),
        ("router-icmp-ipv6", "alice-"),
        ("router-reverse-icmp", "bob-"),
    ] {
        let v = sabotaged(scenario, 1, Sabotage::Misroute);
        let echo = format!(": the echo reply belongs to {client}");
        assert!(any(&v, &echo), "{scenario}: {v:#?}");
        let unreachable = format!("received a port unreachable for {client}");
        assert!(any(&v, &unreachable), "{scenario}: {v:#?}");
        let too_big = format!("it quotes {client}");
        assert!(any(&v, &too_big), "{scenario}: {v:#?}");
    }
}

/// An exit whose allow-list admits echo to more hosts than the harness's
/// model: its echo sockets to them, and the pings it sends there, are
/// flagged (the allow-list invariant of echo sockets), and so are the
/// requests the targets' kernels receive.
#[test]
fn echo_sockets_beyond_the_allow_list_are_caught() {
    let v = sabotaged("router-icmp", 1, Sabotage::WideEchoRule);
    assert!(
        any(&v, "y: asked for an ICMP echo socket to bob-"),
        "{v:#?}"
    );
    assert!(any(&v, "y: pinged bob-"), "{v:#?}");
    assert!(any(&v, "admits no echo to bob-"), "{v:#?}");
}

#[test]
fn answering_the_attacker_is_caught() {
    let v = sabotaged("forward-attack", 1, Sabotage::EchoAttacker);
    assert!(any(&v, "the attacker received"), "{v:#?}");
}

#[test]
fn lost_outputs_break_the_counters() {
    let v = sabotaged("forward", 1, Sabotage::LoseOutputs);
    assert!(any(&v, "counters: x: from_peer counts"), "{v:#?}");
}

#[test]
fn a_stuck_restart_breaks_the_recovery_bound() {
    // Without timers nobody notices y lost its sessions.
    let v = sabotaged("forward-restart-y", 1, Sabotage::NoTimers);
    assert!(
        any(&v, "no traffic flowed again") || any(&v, "more than the bound"),
        "{v:#?}"
    );
}

/// The exit port rule (core's port hold): with it switched off, an exit
/// whose ports are reused at once hands a late answer for an evicted
/// channel to a newer channel's client.
#[test]
fn late_replies_on_reused_ports_are_caught_without_the_port_hold() {
    for scenario in ["forward-late-replies", "router-late-replies"] {
        let v = sabotaged(scenario, 1, Sabotage::NoPortHold);
        assert!(any(&v, "the answer belongs to"), "{scenario}: {v:#?}");
    }
}

/// The attacker may receive a cookie reply only while the node is under
/// load: a node that asks for cookies at any load is caught, on a seed
/// whose attacker never loads either node.
#[test]
fn cookie_replies_without_load_are_caught() {
    let v = sabotaged("forward-attack", 1, Sabotage::CookiesAlways);
    assert!(any(&v, "a cookie reply while not under load"), "{v:#?}");
}

/// A cookie reply must be smaller than the message it answers, and the
/// 61 bytes of one: padded replies are caught, on a seed whose attacker
/// loads y (it receives 45 cookie replies there, all allowed).
#[test]
fn padded_cookie_replies_are_caught() {
    let v = sabotaged("forward-attack", 5072, Sabotage::PaddedCookieReplies(100));
    assert!(any(&v, "-byte cookie reply to a"), "{v:#?}");
    assert!(any(&v, "not smaller"), "{v:#?}");
    let v = sabotaged("forward-attack", 5072, Sabotage::PaddedCookieReplies(1));
    assert!(
        any(&v, "a 62-byte cookie reply, not the 61 bytes"),
        "{v:#?}"
    );
}
