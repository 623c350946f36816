//! Start order, restarts and clock steps: how soon a link carries again
//! after its peer comes (back) up (issue 13, findings 2 to 4).

use super::*;

/// The time `up` needs to be true, checked every millisecond from `from`.
fn time_until(p: &mut Pair, limit: Duration, up: impl Fn(&Pair) -> bool) -> Option<Duration> {
    let from = p.now;
    while p.now - from <= limit {
        if up(p) {
            return Some(p.now - from);
        }
        p.run_for(Duration::from_millis(1));
    }
    None
}

fn both_up(p: &Pair) -> bool {
    p.a.is_up(p.a_peer, p.now) && p.b.is_up(p.b_peer, p.now)
}

impl Pair {
    /// Replaces one side with a fresh link of the same key (a restart):
    /// its wall clock `clock` nanoseconds from the original start's, and
    /// its peer configured as before.
    fn restart(&mut self, b: bool, seed: u64, clock: i64) {
        let (k, peer_key, endpoint) = if b {
            (key(seed * 2 + 2), self.a.public_key().to_owned(), None)
        } else {
            (
                key(seed * 2 + 1),
                self.b.public_key().to_owned(),
                Some(B_ADDR),
            )
        };
        let old = if b { &self.b } else { &self.a };
        let keep_up = old.peers[0].config.keep_up;
        let unix = START_UNIX.saturating_add_signed(clock);
        let mut link = TestLink::new(k, ChaCha20Rng::seed_from_u64(seed + 77), self.now, unix);
        let mut c = config(peer_key, endpoint);
        c.keep_up = keep_up;
        let id = link.add_peer(c, self.now).unwrap();
        if b {
            self.b = link;
            self.b_peer = id;
        } else {
            self.a = link;
            self.a_peer = id;
        }
    }
}

/// Finding 2: a starts first, b up to 8 s later (before b starts, a's
/// datagrams go nowhere). Whatever the offset, the link is up within
/// MAX_RESEND_GAP, its jitter and a round trip of b starting: a resends its
/// initiation at 0.25 s, 0.75 s, 1.75 s and then every second. It took up to
/// REKEY_TIMEOUT (5 s) when the only retry was a new initiation.
#[test]
fn a_peer_that_starts_later_is_reached_within_a_second_of_starting() {
    let mut worst = Duration::ZERO;
    for (i, offset_ms) in (0..8_000u64).step_by(130).enumerate() {
        let mut p = Pair::with(400 + i as u64, |c| c.keep_up = true, |_| {});
        p.hook = Box::new(|_, _| Fate::Drop);
        p.run_for(Duration::from_millis(offset_ms));
        p.hook = Box::new(|_, _| Fate::Deliver);
        let took = time_until(&mut p, Duration::from_secs(6), both_up)
            .unwrap_or_else(|| panic!("offset {offset_ms} ms: never up"));
        worst = worst.max(took);
        let bound = MAX_RESEND_GAP + MAX_RESEND_GAP / 15 + 3 * p.latency + Duration::from_millis(2);
        assert!(
            took <= bound,
            "offset {offset_ms} ms: up {took:?} after b started, bound {bound:?}"
        );
    }
    std::println!("worst: {worst:?}");
    assert!(
        worst > Duration::from_millis(500),
        "the sweep hits late phases"
    );
}

/// A resend of an initiation the responder already answered is refused as a
/// replay and answered with nothing; the response to the first copy still
/// completes the handshake, however long the round trip.
#[test]
fn resends_of_an_answered_initiation_are_not_answered_and_a_slow_response_completes() {
    let mut p = Pair::new(430);
    p.latency = Duration::from_millis(700);
    p.a.connect(p.a_peer, p.now);
    p.run_for(Duration::from_secs(3));
    assert!(both_up(&p));
    let (a, b) = (p.stats(false), p.stats(true));
    assert_eq!(a.handshakes_initiated, 1, "one initiation, resent");
    assert!(a.tx_datagrams >= 3, "a resent it: {}", a.tx_datagrams);
    assert_eq!(b.handshakes_completed, 1);
    assert!(b.drops.get(DropReason::ReplayedInitiation) >= 1);
    // b answered once: its response, and nothing more until the session
    // carries a's data.
    assert_eq!(b.tx_datagrams, 1);
}

/// Finding 3: b (no endpoint for a) restarts; a keeps the link up. At any
/// phase of a's timers, the link is up again within PROBE_AFTER +
/// PROBE_TIMEOUT and a round trip of b being back, whether a is idle or
/// sends data b drops. It took up to KEEPALIVE_TIMEOUT + REKEY_TIMEOUT.
#[test]
fn a_kept_up_link_notices_a_restart_of_its_peer_within_two_seconds() {
    for sending in [false, true] {
        for (i, phase_ms) in (0..3_000u64).step_by(97).enumerate() {
            let seed = 440 + i as u64;
            let mut p = Pair::with(seed, |c| c.keep_up = true, |_| {});
            p.run_for(Duration::from_millis(100));
            assert!(both_up(&p));
            p.run_for(Duration::from_secs(20) + Duration::from_millis(phase_ms));
            p.restart(true, seed, 0);
            p.events_a.clear();
            if sending {
                let _ = p.send(false, b"to the old b");
            }
            let took = time_until(&mut p, Duration::from_secs(20), |p| {
                both_up(p) && p.events_a.contains(&LinkEvent::PeerRestarted(p.a_peer))
            })
            .unwrap_or_else(|| panic!("phase {phase_ms} ms: never up again"));
            let bound = PROBE_AFTER + PROBE_TIMEOUT + 3 * p.latency + Duration::from_millis(2);
            assert!(
                took <= bound,
                "sending {sending}, phase {phase_ms} ms: {took:?} > {bound:?}"
            );
        }
    }
}

/// Finding 3 without keep-up: a sends data, b restarted and drops it; a
/// probes PROBE_AFTER after its first unanswered frame.
#[test]
fn unanswered_data_is_probed_after_a_second() {
    let seed = 470;
    let mut p = Pair::new(seed);
    p.up();
    p.restart(true, seed, 0);
    p.send(false, b"hello?").unwrap();
    let took = time_until(&mut p, Duration::from_secs(20), both_up).expect("up again");
    assert!(
        took <= PROBE_AFTER + PROBE_TIMEOUT + 3 * p.latency + Duration::from_millis(2),
        "{took:?}"
    );
}

/// One-way traffic is answered: the sender probes, the receiver answers
/// each probe with a keepalive, and no handshake follows.
#[test]
fn one_way_traffic_is_probed_and_answered_without_handshakes() {
    let mut p = Pair::new(471);
    p.up();
    for _ in 0..100 {
        p.send(false, b"one way").unwrap();
        p.run_for(Duration::from_millis(100));
    }
    let (a, b) = (p.stats(false), p.stats(true));
    assert_eq!(a.handshakes_initiated, 1);
    // About one probe answered per second of the 10 s.
    assert!(
        (8..=11).contains(&b.tx_datagrams),
        "b sent {}",
        b.tx_datagrams
    );
}

/// Finding 4: a, the only side that knows an endpoint, restarts with its
/// wall clock 100 s behind. b refuses its initiations as replays (older
/// than the last it accepted from a), and starts a handshake of its own to
/// a's endpoint, which the restarted a accepts. a's later initiations, of
/// the incarnation b has now confirmed, are accepted.
#[test]
fn a_peer_back_with_its_clock_behind_is_reached_by_its_peer() {
    let seed = 480;
    let mut p = Pair::new(seed);
    p.up();
    p.run_for(Duration::from_secs(3));
    p.restart(false, seed, -100_000_000_000);
    p.a.connect(p.a_peer, p.now);
    let took = time_until(&mut p, Duration::from_secs(20), both_up).expect("up again");
    assert!(took <= Duration::from_secs(1), "{took:?}");
    assert!(p.stats(true).drops.get(DropReason::ReplayedInitiation) >= 1);
    // a's own handshakes, with its clock still behind, are accepted now.
    let done = p.stats(true).handshakes_completed;
    p.a.connect(p.a_peer, p.now);
    p.run_for(Duration::from_millis(100));
    assert!(both_up(&p));
    assert_eq!(p.stats(true).handshakes_completed, done + 1);
}

/// Replays of an old incarnation's initiations leave the live session
/// alone; b reaches out to the real a at most once per REKEY_TIMEOUT, and
/// never for a replay of the current incarnation's initiation.
#[test]
fn replays_of_stale_initiations_reach_out_at_most_once_per_rekey_timeout() {
    let seed = 482;
    let captured = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut p = Pair::new(seed);
    let c = captured.clone();
    p.hook = Box::new(move |to_b, bytes| {
        if to_b && bytes[0] == 1 {
            c.borrow_mut().push(bytes.to_vec());
        }
        Fate::Deliver
    });
    p.up();
    let old = captured.borrow()[0].clone();
    // a restarts normally (clock ahead): a new incarnation, accepted.
    p.restart(false, seed, 1_000_000_000);
    p.a.connect(p.a_peer, p.now);
    p.run_for(Duration::from_millis(100));
    assert!(both_up(&p));
    let current = captured.borrow().last().unwrap().clone();
    let b_tx = p.stats(true).tx_datagrams;
    p.events_b.clear();
    let initiated = p.stats(true).handshakes_initiated;
    for i in 0..20 {
        let now = p.now;
        let from = addr("198.51.100.9:666");
        let bytes = if i % 2 == 0 { &old } else { &current };
        let r = p.b.handle_datagram(now, from, &mut bytes.clone());
        assert_eq!(r, Err(DropReason::ReplayedInitiation));
        p.run_for(Duration::from_millis(500));
    }
    assert!(both_up(&p), "the live session stays");
    assert!(
        !p.events_b.contains(&LinkEvent::PeerRestarted(p.b_peer)),
        "no replay passes for a restart"
    );
    let reached = p.stats(true).handshakes_initiated - initiated;
    assert!(
        (1..=2).contains(&reached),
        "10 s of replays: {reached} handshakes"
    );
    // Each: an initiation to a and the keepalive that confirms the session
    // to a. Nothing answers the replays.
    assert_eq!(p.stats(true).tx_datagrams - b_tx, 2 * reached);
}

/// Finding 6: as above, but whichever key is higher. Where the restarted
/// a's key is, a ignores b's reach-out as the race winner (a's own
/// initiation to b is pending) and records its timestamp, so b's resent
/// copies are refused as replays, while a's own initiations stay refused by
/// b as stale: nothing crossed until b's retry, 5 s on. Now a stale
/// initiation that arrives while b's reach-out is pending renews it once
/// (`link::reach_out`): a, which has ignored one crossing initiation in
/// this run of attempts, answers the next.
#[test]
fn a_peer_back_with_its_clock_behind_is_reached_whichever_key_is_higher() {
    let (mut higher, mut lower) = (0, 0);
    for seed in 480..496 {
        let mut p = Pair::new(seed);
        p.up();
        p.run_for(Duration::from_secs(3));
        p.restart(false, seed, -100_000_000_000);
        if p.a.public_key().as_bytes() > p.b.public_key().as_bytes() {
            higher += 1;
        } else {
            lower += 1;
        }
        p.a.connect(p.a_peer, p.now);
        let took = time_until(&mut p, Duration::from_secs(20), both_up).expect("up again");
        assert!(took <= Duration::from_secs(1), "seed {seed}: {took:?}");
    }
    assert!(
        higher > 0 && lower > 0,
        "both orders of keys: {higher} / {lower}"
    );
}
