//! Two links driven against each other over a virtual network.

use super::*;
use crate::key::PresharedKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::collections::VecDeque;
use std::vec::Vec;

type TestLink = Link<ChaCha20Rng, 4>;
/// Decides the fate of each datagram put on the virtual network: (to b?, bytes).
type Hook = Box<dyn FnMut(bool, &[u8]) -> Fate>;

const A_ADDR: &str = "192.0.2.1:1000";
const B_ADDR: &str = "192.0.2.2:2000";
const START_UNIX: u64 = 1_700_000_000_000_000_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn key(seed: u64) -> PrivateKey {
    PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

/// What the network does with a datagram in flight.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fate {
    Deliver,
    Drop,
}

struct Datagram {
    at: Instant,
    to_b: bool,
    from: SocketAddr,
    bytes: Vec<u8>,
}

/// Two links, a clock and a network with latency between them.
struct Pair {
    a: TestLink,
    b: TestLink,
    /// Peer id of b inside a, and of a inside b.
    a_peer: PeerId,
    b_peer: PeerId,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    now: Instant,
    latency: Duration,
    in_flight: VecDeque<Datagram>,
    /// Decides every datagram's fate as it is sent; may also capture it.
    hook: Hook,
    /// Payloads delivered at a (from b) and at b (from a).
    at_a: Vec<Vec<u8>>,
    at_b: Vec<Vec<u8>>,
    events_a: Vec<LinkEvent>,
    events_b: Vec<LinkEvent>,
}

fn config(public: PublicKey, endpoint: Option<&str>) -> PeerConfig {
    let mut c = PeerConfig::new(public);
    c.endpoint = endpoint.map(addr);
    c
}

impl Pair {
    /// a knows b's endpoint; b only accepts a.
    fn new(seed: u64) -> Pair {
        Pair::with(seed, |_| {}, |_| {})
    }

    fn with(seed: u64, ca: impl FnOnce(&mut PeerConfig), cb: impl FnOnce(&mut PeerConfig)) -> Pair {
        let (ka, kb) = (key(seed * 2 + 1), key(seed * 2 + 2));
        let (pa, pb) = (ka.public_key(), kb.public_key());
        let now = Instant::from_secs(1);
        let mut a = TestLink::new(
            ka,
            ChaCha20Rng::seed_from_u64(seed * 2 + 3),
            now,
            START_UNIX,
        );
        let mut b = TestLink::new(
            kb,
            ChaCha20Rng::seed_from_u64(seed * 2 + 4),
            now,
            START_UNIX,
        );
        let mut cfg_a = config(pb, Some(B_ADDR));
        ca(&mut cfg_a);
        let mut cfg_b = config(pa, None);
        cb(&mut cfg_b);
        let a_peer = a.add_peer(cfg_a, now).unwrap();
        let b_peer = b.add_peer(cfg_b, now).unwrap();
        Pair {
            a,
            b,
            a_peer,
            b_peer,
            a_addr: addr(A_ADDR),
            b_addr: addr(B_ADDR),
            now,
            latency: Duration::from_millis(10),
            in_flight: VecDeque::new(),
            hook: Box::new(|_, _| Fate::Deliver),
            at_a: Vec::new(),
            at_b: Vec::new(),
            events_a: Vec::new(),
            events_b: Vec::new(),
        }
    }

    fn link(&mut self, b: bool) -> &mut TestLink {
        if b {
            &mut self.b
        } else {
            &mut self.a
        }
    }

    fn enqueue(&mut self, to_b: bool, bytes: Vec<u8>, to: SocketAddr) {
        let from = if to_b { self.a_addr } else { self.b_addr };
        let expected = if to_b { self.b_addr } else { self.a_addr };
        if to != expected {
            return; // sent to an address nobody is at
        }
        if (self.hook)(to_b, &bytes) == Fate::Deliver {
            let at = self.now + self.latency;
            self.in_flight.push_back(Datagram {
                at,
                to_b,
                from,
                bytes,
            });
        }
    }

    /// Collects every datagram and event both links want out now.
    fn flush(&mut self) {
        for side in [false, true] {
            let mut buf = [0u8; 256];
            let now = self.now;
            while let Some(t) = self.link(side).poll_transmit(now, &mut buf).unwrap() {
                self.enqueue(!side, buf[..t.len].to_vec(), t.to);
            }
            while let Some(e) = self.link(side).poll_event() {
                if side {
                    self.events_b.push(e)
                } else {
                    self.events_a.push(e)
                }
            }
        }
    }

    /// Delivers one datagram to its link.
    fn deliver(&mut self, d: Datagram) -> Result<Received, DropReason> {
        let mut bytes = d.bytes;
        let now = self.now;
        let r = self.link(d.to_b).handle_datagram(now, d.from, &mut bytes);
        if let Ok(Received::Data { payload, .. }) = &r {
            let p = bytes[payload.clone()].to_vec();
            if d.to_b {
                self.at_b.push(p)
            } else {
                self.at_a.push(p)
            }
        }
        r
    }

    /// Runs the network and both links until `until`, jumping the clock to
    /// the nearest delivery or deadline. Bounded, so a link that keeps
    /// asking for the same instant fails the test instead of hanging it.
    fn run_until(&mut self, until: Instant) {
        for _ in 0..1_000_000 {
            self.flush();
            let next_delivery = self.in_flight.iter().map(|d| d.at).min();
            let next = [next_delivery, self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|&t| t <= until) else {
                self.now = self.now.max(until);
                self.flush();
                return;
            };
            self.now = self.now.max(next);
            while let Some(i) = self.in_flight.iter().position(|d| d.at <= self.now) {
                let d = self.in_flight.remove(i).unwrap();
                let _ = self.deliver(d);
            }
            let now = self.now;
            if self.a.poll_timeout().is_some_and(|t| t <= now) {
                self.a.handle_timeout(now);
            }
            if self.b.poll_timeout().is_some_and(|t| t <= now) {
                self.b.handle_timeout(now);
            }
        }
        panic!("drive loop did not reach {until:?}: a timer keeps firing without effect");
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Seals `payload` at one side and puts the frame on the network.
    fn send(&mut self, from_b: bool, payload: &[u8]) -> Result<(), SendError> {
        let frame = self.seal(from_b, payload)?;
        let to = if from_b { self.a_addr } else { self.b_addr };
        self.enqueue(!from_b, frame, to);
        Ok(())
    }

    /// Seals `payload` at one side and returns the frame without sending it.
    fn seal(&mut self, from_b: bool, payload: &[u8]) -> Result<Vec<u8>, SendError> {
        let mut buf = vec![0u8; payload.len() + 64];
        buf[13..13 + payload.len()].copy_from_slice(payload);
        let peer = if from_b { self.b_peer } else { self.a_peer };
        let now = self.now;
        let t = self.link(from_b).seal(now, peer, &mut buf, payload.len())?;
        Ok(buf[..t.len].to_vec())
    }

    fn up(&mut self) {
        self.a.connect(self.a_peer, self.now);
        self.run_for(Duration::from_millis(100));
        assert!(self.a.is_up(self.a_peer, self.now), "a has a session");
        assert!(self.b.is_up(self.b_peer, self.now), "b has a session");
    }

    fn stats(&self, b: bool) -> PeerStats {
        let (l, p) = if b {
            (&self.b, self.b_peer)
        } else {
            (&self.a, self.a_peer)
        };
        l.peer(p, self.now).unwrap().stats
    }

    /// (local index, remote index) of a side's current session.
    fn current_indices(&self, b: bool) -> Option<(u32, u32)> {
        let (l, p) = if b {
            (&self.b, self.b_peer)
        } else {
            (&self.a, self.a_peer)
        };
        l.peers[p.0 as usize]
            .current
            .as_ref()
            .map(|s| (s.local_index, s.remote_index))
    }
}

#[test]
fn handshake_then_data_both_ways() {
    let mut p = Pair::new(1);
    p.up();
    assert_eq!(p.events_a, [LinkEvent::SessionUp(p.a_peer)]);
    // b's session is confirmed by a's keepalive right after the handshake.
    assert_eq!(p.events_b, [LinkEvent::SessionUp(p.b_peer)]);
    for i in 0..10u8 {
        p.send(false, &[i; 100]).unwrap();
        p.send(true, &[i + 100; 7]).unwrap();
    }
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.at_b, (0..10u8).map(|i| vec![i; 100]).collect::<Vec<_>>());
    assert_eq!(
        p.at_a,
        (0..10u8).map(|i| vec![i + 100; 7]).collect::<Vec<_>>()
    );
    for side in [false, true] {
        let s = p.stats(side);
        assert_eq!(s.drops.total(), 0, "no drops at side b={side}");
        assert_eq!(s.handshakes_completed, 1);
    }
    assert_eq!(
        p.a.unattributed_drops().total() + p.b.unattributed_drops().total(),
        0
    );
}

#[test]
fn data_frame_overhead_is_29_bytes_plus_service_header() {
    let mut p = Pair::new(2);
    p.up();
    // The link adds 29 bytes; a direct service's header is one more: 30.
    assert_eq!(p.seal(false, &[0; 100]).unwrap().len(), 129);
}

#[test]
fn sending_before_a_session_starts_a_handshake() {
    let mut p = Pair::new(3);
    assert_eq!(p.send(false, b"early"), Err(SendError::NoSession));
    p.run_for(Duration::from_millis(100));
    assert!(p.a.is_up(p.a_peer, p.now));
    p.send(false, b"now").unwrap();
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.at_b, [b"now".to_vec()]);
    // Not sending is the caller's to count; the link counts what it drops
    // of what it receives.
    assert_eq!(p.stats(false).drops.total(), 0);
}

#[test]
fn responder_without_endpoint_cannot_start() {
    let mut p = Pair::new(4);
    assert_eq!(p.send(true, b"x"), Err(SendError::NoSession));
    p.run_for(Duration::from_secs(30));
    assert!(!p.b.is_up(p.b_peer, p.now));
    assert_eq!(p.stats(true).handshakes_initiated, 0);
}

#[test]
fn wrong_static_key_is_unknown_peer_and_unanswered() {
    let mut p = Pair::new(5);
    // b expects some other key than a's.
    let other = key(999).public_key();
    p.b.peers[0].config.public_key = other;
    p.a.connect(p.a_peer, p.now);
    p.run_for(Duration::from_secs(1));
    assert!(!p.a.is_up(p.a_peer, p.now));
    // Every copy of a's initiation (it resends them) dropped, none answered.
    let sent = p.stats(false).tx_datagrams;
    assert!(sent >= 2, "a resent its initiation: {sent}");
    assert_eq!(p.b.unattributed_drops().get(DropReason::UnknownPeer), sent);
    assert_eq!(p.stats(true).tx_datagrams, 0, "b answered nothing");
}

#[test]
fn wrong_responder_key_fails_mac1() {
    let mut p = Pair::new(6);
    // a believes b has another key: its mac1 is keyed wrong.
    let other = key(998).public_key();
    p.a.peers[0].config.public_key = other;
    p.a.peers[0].mac1_key = mac::mac1_key(&other);
    p.a.connect(p.a_peer, p.now);
    p.run_for(Duration::from_secs(1));
    let sent = p.stats(false).tx_datagrams;
    assert!(sent >= 2, "a resent its initiation: {sent}");
    assert_eq!(p.b.unattributed_drops().get(DropReason::BadMac1), sent);
    assert_eq!(p.stats(true).tx_datagrams, 0);
}

#[test]
fn wrong_psk_fails_the_handshake() {
    let mut p = Pair::with(
        7,
        |c| c.preshared_key = Some(PresharedKey::from_bytes([1; 32])),
        |c| c.preshared_key = Some(PresharedKey::from_bytes([2; 32])),
    );
    p.a.connect(p.a_peer, p.now);
    p.run_for(Duration::from_secs(1));
    assert!(!p.a.is_up(p.a_peer, p.now));
    assert_eq!(p.stats(false).drops.get(DropReason::HandshakeFailed), 1);
    // b answered (it cannot know the PSK differs) but never gets a confirmed session.
    assert!(!p.b.is_up(p.b_peer, p.now));
}

#[test]
fn matching_psk_works() {
    let mut p = Pair::with(
        8,
        |c| c.preshared_key = Some(PresharedKey::from_bytes([3; 32])),
        |c| c.preshared_key = Some(PresharedKey::from_bytes([3; 32])),
    );
    p.up();
}

#[test]
fn replayed_initiation_is_refused_and_unanswered() {
    let captured = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut p = Pair::new(9);
    let c = captured.clone();
    p.hook = Box::new(move |to_b, bytes| {
        if to_b && bytes[0] == 1 {
            c.borrow_mut().push(bytes.to_vec());
        }
        Fate::Deliver
    });
    p.up();
    let tx_before = p.stats(true).tx_datagrams;
    let init = captured.borrow()[0].clone();
    let from = p.a_addr;
    let r = p.deliver(Datagram {
        at: p.now,
        to_b: true,
        from,
        bytes: init,
    });
    assert_eq!(r, Err(DropReason::ReplayedInitiation));
    p.flush();
    assert!(p.in_flight.is_empty(), "no response to a replay");
    assert_eq!(p.stats(true).tx_datagrams, tx_before);
    // The session still works.
    p.send(false, b"after").unwrap();
    p.run_for(Duration::from_millis(50));
    assert_eq!(p.at_b, [b"after".to_vec()]);
}

#[test]
fn replayed_data_frame_is_dropped() {
    let mut p = Pair::new(10);
    p.up();
    let frame = p.seal(false, b"once").unwrap();
    let from = p.a_addr;
    for expect in [Ok(()), Err(DropReason::Replayed), Err(DropReason::Replayed)] {
        let r = p.deliver(Datagram {
            at: p.now,
            to_b: true,
            from,
            bytes: frame.clone(),
        });
        assert_eq!(r.map(|_| ()), expect);
    }
    assert_eq!(p.at_b, [b"once".to_vec()]);
}

#[test]
fn reordered_frames_inside_the_window_arrive_once_each() {
    let mut p = Pair::new(11);
    p.up();
    let frames: Vec<_> = (0..2000u32)
        .map(|i| p.seal(false, &i.to_le_bytes()).unwrap())
        .collect();
    let from = p.a_addr;
    for f in frames.iter().rev() {
        p.deliver(Datagram {
            at: p.now,
            to_b: true,
            from,
            bytes: f.clone(),
        })
        .unwrap();
    }
    for f in frames.iter().step_by(7) {
        let r = p.deliver(Datagram {
            at: p.now,
            to_b: true,
            from,
            bytes: f.clone(),
        });
        assert_eq!(r, Err(DropReason::Replayed));
    }
    assert_eq!(p.at_b.len(), 2000);
    let mut got: Vec<u32> = p
        .at_b
        .iter()
        .map(|b| u32::from_le_bytes(b[..4].try_into().unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, (0..2000).collect::<Vec<_>>());
}

#[test]
fn frames_older_than_the_window_are_dropped() {
    let mut p = Pair::new(12);
    p.up();
    let frames: Vec<_> = (0..3000u32)
        .map(|i| p.seal(false, &i.to_le_bytes()).unwrap())
        .collect();
    let from = p.a_addr;
    p.deliver(Datagram {
        at: p.now,
        to_b: true,
        from,
        bytes: frames[2999].clone(),
    })
    .unwrap();
    // 2999 - 0 is beyond the window; 2999 - 500 is inside it.
    let old = p.deliver(Datagram {
        at: p.now,
        to_b: true,
        from,
        bytes: frames[0].clone(),
    });
    assert_eq!(old, Err(DropReason::Replayed));
    p.deliver(Datagram {
        at: p.now,
        to_b: true,
        from,
        bytes: frames[2499].clone(),
    })
    .unwrap();
    assert_eq!(p.at_b.len(), 2);
}

#[test]
fn tampered_data_frames_fail_authentication() {
    let mut p = Pair::new(13);
    p.up();
    let frame = p.seal(false, b"integrity").unwrap();
    let from = p.a_addr;
    // Flip each bit after the receiver index: counter, ciphertext, tag.
    for bit in 5 * 8..frame.len() * 8 {
        let mut f = frame.clone();
        f[bit / 8] ^= 1 << (bit % 8);
        let r = p.deliver(Datagram {
            at: p.now,
            to_b: true,
            from,
            bytes: f,
        });
        assert!(
            matches!(r, Err(DropReason::AuthFailed | DropReason::Replayed)),
            "bit {bit}: {r:?}"
        );
    }
    assert!(p.at_b.is_empty());
    // The genuine frame still opens: forgeries did not spoil the window.
    p.deliver(Datagram {
        at: p.now,
        to_b: true,
        from,
        bytes: frame,
    })
    .unwrap();
    assert_eq!(p.at_b, [b"integrity".to_vec()]);
}

#[test]
fn counter_exhaustion_forces_a_new_session() {
    let mut p = Pair::new(14);
    p.up();
    p.a.force_send_counter(p.a_peer, REJECT_AFTER_MESSAGES - 1);
    p.send(false, b"last").unwrap();
    assert_eq!(p.send(false, b"one too many"), Err(SendError::NoSession));
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.stats(false).handshakes_completed, 2);
    p.send(false, b"fresh").unwrap();
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.at_b, [b"last".to_vec(), b"fresh".to_vec()]);
}

#[test]
fn rekey_after_messages_starts_a_handshake_without_loss() {
    let mut p = Pair::new(15);
    p.up();
    p.a.force_send_counter(p.a_peer, REKEY_AFTER_MESSAGES);
    p.send(false, b"triggers rekey").unwrap();
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.stats(false).handshakes_completed, 2);
    assert_eq!(p.at_b, [b"triggers rekey".to_vec()]);
}

#[test]
fn rekey_by_time_keeps_traffic_flowing() {
    let mut p = Pair::new(16);
    p.up();
    // One datagram each way every second for 10 minutes.
    for i in 0..600u32 {
        p.send(false, &i.to_le_bytes()).unwrap();
        p.send(true, &i.to_le_bytes()).unwrap();
        p.run_for(Duration::from_secs(1));
    }
    assert_eq!(p.at_b.len(), 600, "no datagram lost across rekeys");
    assert_eq!(p.at_a.len(), 600);
    let hs = p.stats(false).handshakes_completed;
    // A rekey roughly every REKEY_AFTER_TIME: 600 s / 120 s.
    assert!((5..=7).contains(&hs), "handshakes: {hs}");
    assert_eq!(p.stats(true).drops.total(), 0);
}

#[test]
fn idle_session_expires_after_reject_time() {
    let mut p = Pair::new(17);
    p.up();
    p.run_for(REJECT_AFTER_TIME - Duration::from_secs(1));
    assert!(p.a.is_up(p.a_peer, p.now));
    p.run_for(Duration::from_secs(2));
    assert!(!p.a.is_up(p.a_peer, p.now));
    assert!(!p.b.is_up(p.b_peer, p.now));
    // A frame sealed on the old session before expiry is refused after it.
    assert_eq!(p.send(false, b"x"), Err(SendError::NoSession));
}

#[test]
fn frames_on_an_expired_session_are_refused() {
    let mut p = Pair::new(18);
    p.up();
    let frame = p.seal(false, b"late").unwrap();
    p.now += REJECT_AFTER_TIME;
    let from = p.a_addr;
    let r = p.deliver(Datagram {
        at: p.now,
        to_b: true,
        from,
        bytes: frame,
    });
    assert_eq!(r, Err(DropReason::Expired));
}

#[test]
fn simultaneous_initiation_converges_on_one_session() {
    for seed in 0..20 {
        let mut p = Pair::with(100 + seed, |_| {}, |c| c.endpoint = Some(addr(A_ADDR)));
        p.a.connect(p.a_peer, p.now);
        p.b.connect(p.b_peer, p.now);
        p.run_for(Duration::from_secs(1));
        let (a, b) = (
            p.current_indices(false).unwrap(),
            p.current_indices(true).unwrap(),
        );
        assert_eq!(
            (a.0, a.1),
            (b.1, b.0),
            "seed {seed}: both send on the same session"
        );
        assert_eq!(p.stats(false).handshakes_completed, 1, "seed {seed}");
        assert_eq!(p.stats(true).handshakes_completed, 1, "seed {seed}");
        p.send(false, b"a").unwrap();
        p.send(true, b"b").unwrap();
        p.run_for(Duration::from_secs(1));
        assert_eq!((p.at_a.len(), p.at_b.len()), (1, 1));
    }
}

/// An initiation is resent unchanged (FIRST_RESEND, doubling up to
/// MAX_RESEND_GAP) and replaced by a fresh one every REKEY_TIMEOUT plus
/// jitter; once the path works, the next copy completes the handshake.
#[test]
fn lost_initiations_are_resent_then_retried_fresh() {
    let mut p = Pair::new(19);
    let open = std::rc::Rc::new(std::cell::Cell::new(false));
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let (o, s) = (open.clone(), seen.clone());
    p.hook = Box::new(move |_, bytes| {
        if bytes[0] == 1 {
            s.borrow_mut().push(bytes.to_vec());
        }
        if o.get() || bytes[0] != 1 {
            Fate::Deliver
        } else {
            Fate::Drop
        }
    });
    p.a.connect(p.a_peer, p.now);
    let start = p.now;
    p.run_for(Duration::from_secs(12));
    open.set(true);
    p.run_for(MAX_RESEND_GAP + MAX_RESEND_GAP / 15 + Duration::from_millis(30));
    assert!(p.a.is_up(p.a_peer, p.now));
    // Fresh initiations at 0, 5-5.33 s and 10-10.67 s; copies in between.
    assert_eq!(p.stats(false).handshakes_initiated, 3);
    let seen = seen.borrow();
    let mut fresh: Vec<&Vec<u8>> = seen.iter().collect();
    fresh.dedup();
    assert_eq!(fresh.len(), 3, "three distinct initiations");
    assert!(seen.len() >= 3 * 6, "each resent: {} datagrams", seen.len());
    let up_at = p.a.peer(p.a_peer, p.now).unwrap().last_handshake.unwrap();
    assert!(
        up_at - start >= Duration::from_secs(12),
        "not before the path opened"
    );
}

#[test]
fn handshake_gives_up_after_attempt_time() {
    let mut p = Pair::new(20);
    p.hook = Box::new(|_, _| Fate::Drop);
    p.a.connect(p.a_peer, p.now);
    p.run_for(Duration::from_secs(200));
    assert!(p.events_a.contains(&LinkEvent::HandshakeTimedOut(p.a_peer)));
    let tries = p.stats(false).handshakes_initiated;
    // 90 s of tries every 5 to 5.33 s.
    assert!((17..=19).contains(&tries), "tries: {tries}");
    assert_eq!(p.a.poll_timeout(), None, "nothing left to do");
}

#[test]
fn keep_up_peer_connects_without_traffic_and_stays_up() {
    let mut p = Pair::with(21, |c| c.keep_up = true, |_| {});
    p.run_for(Duration::from_millis(100));
    assert!(p.a.is_up(p.a_peer, p.now));
    assert!(
        p.b.is_up(p.b_peer, p.now),
        "b can send first: the entry can reach us"
    );
    for _ in 0..60 {
        p.run_for(Duration::from_secs(10));
        assert!(p.b.is_up(p.b_peer, p.now), "b stays up at {:?}", p.now);
    }
}

#[test]
fn keep_up_peer_never_gives_up() {
    let mut p = Pair::with(22, |c| c.keep_up = true, |_| {});
    p.hook = Box::new(|_, _| Fate::Drop);
    p.run_for(Duration::from_secs(300));
    assert!(!p
        .events_a
        .iter()
        .any(|e| matches!(e, LinkEvent::HandshakeTimedOut(_))));
    p.hook = Box::new(|_, _| Fate::Deliver);
    p.run_for(Duration::from_secs(6));
    assert!(p.a.is_up(p.a_peer, p.now));
}

#[test]
fn keepalive_answers_one_sided_traffic() {
    let mut p = Pair::new(23);
    p.up();
    let b_tx = p.stats(true).tx_datagrams;
    p.send(false, b"one way").unwrap();
    // a probes PROBE_AFTER after its unanswered frame; b answers the probe
    // with a keepalive, which also stands for its passive keepalive.
    p.run_for(PROBE_AFTER - Duration::from_millis(100));
    assert_eq!(p.stats(true).tx_datagrams, b_tx);
    p.run_for(Duration::from_millis(200));
    assert_eq!(p.stats(true).tx_datagrams, b_tx + 1, "b sent one keepalive");
    p.run_for(Duration::from_secs(60));
    assert_eq!(p.stats(true).tx_datagrams, b_tx + 1, "and only one");
}

/// A probe is a link control message of its own type, sealed under the
/// session: it reaches no service, only its one true copy is answered (a
/// replay is refused like a replayed data frame, and answered with
/// nothing), and its type byte is authenticated: a probe retyped as a data
/// frame fails the tag, as does a keepalive retyped as a probe.
#[test]
fn a_probe_is_a_sealed_control_message_of_its_own_type() {
    use core::cell::RefCell;
    use std::rc::Rc;
    let mut p = Pair::new(27);
    p.up();
    // a's probes are captured, not delivered; b's keepalives too.
    let probes = Rc::new(RefCell::new(Vec::new()));
    let keepalives = Rc::new(RefCell::new(Vec::new()));
    let (pr, ka) = (probes.clone(), keepalives.clone());
    p.hook = Box::new(move |to_b, bytes| match MessageType::of(bytes) {
        Ok(MessageType::Probe) if to_b => {
            pr.borrow_mut().push(bytes.to_vec());
            Fate::Drop
        }
        Ok(MessageType::Data) if !to_b && bytes.len() == DataPacket::<&[u8]>::OVERHEAD => {
            ka.borrow_mut().push(bytes.to_vec());
            Fate::Drop
        }
        _ => Fate::Deliver,
    });
    p.send(false, b"one way").unwrap();
    p.run_for(PROBE_AFTER + Duration::from_millis(100));
    assert_eq!(p.at_b, [b"one way".to_vec()]);
    let probe = probes.borrow().first().cloned().expect("a probed");
    assert_eq!(probe.len(), ProbePacket::<&[u8]>::LEN);
    assert_eq!(probe[0], u8::from(MessageType::Probe));
    let (now, from) = (p.now, p.a_addr);
    let b_tx = p.stats(true).tx_datagrams;
    let deliver = |p: &mut Pair, mut bytes: Vec<u8>| {
        let r = p.b.handle_datagram(now, from, &mut bytes);
        p.flush();
        r
    };

    let mut retyped = probe.clone();
    retyped[0] = u8::from(MessageType::Data);
    assert_eq!(deliver(&mut p, retyped), Err(DropReason::AuthFailed));
    let mut longer = probe.clone();
    longer.push(0);
    assert_eq!(deliver(&mut p, longer), Err(DropReason::Malformed));
    assert_eq!(p.stats(true).tx_datagrams, b_tx, "b answered none of them");

    assert_eq!(
        deliver(&mut p, probe.clone()),
        Ok(Received::Control { peer: p.b_peer })
    );
    assert_eq!(p.stats(true).tx_datagrams, b_tx + 1, "b answered the probe");
    let keepalive = keepalives.borrow().last().cloned().expect("a keepalive");
    assert_eq!(deliver(&mut p, probe), Err(DropReason::Replayed));
    assert_eq!(p.stats(true).tx_datagrams, b_tx + 1, "not its replay");
    assert_eq!(p.at_b, [b"one way".to_vec()], "no probe reached a service");
    assert_eq!(p.stats(true).drops.get(DropReason::Replayed), 1);
    assert_eq!(p.stats(true).drops.get(DropReason::AuthFailed), 1);

    // b's keepalive, retyped as a probe, is no probe.
    let mut retyped = keepalive;
    retyped[0] = u8::from(MessageType::Probe);
    let r = p.a.handle_datagram(p.now, p.b_addr, &mut retyped);
    assert_eq!(r, Err(DropReason::AuthFailed));
}

/// A message type this link does not know, as a probe is to a link older
/// than probes, is dropped unread and counted.
#[test]
fn an_unknown_message_type_is_dropped_counted() {
    let mut p = Pair::new(28);
    p.up();
    let before = p.b.unattributed_drops().get(DropReason::Malformed);
    let mut datagram = [6u8; 29];
    let r = p.b.handle_datagram(p.now, p.a_addr, &mut datagram);
    assert_eq!(r, Err(DropReason::Malformed));
    assert_eq!(
        p.b.unattributed_drops().get(DropReason::Malformed),
        before + 1
    );
}

#[test]
fn unanswered_traffic_triggers_a_new_handshake() {
    let mut p = Pair::new(24);
    p.up();
    // b goes silent: everything to a is lost.
    p.hook = Box::new(|to_b, _| if to_b { Fate::Deliver } else { Fate::Drop });
    p.send(false, b"hello?").unwrap();
    let hs = p.stats(false).handshakes_initiated;
    p.run_for(PROBE_AFTER + PROBE_TIMEOUT + Duration::from_millis(100));
    assert!(p.stats(false).handshakes_initiated > hs);
}

/// A peer that stops answering is overdue while its session is still up
/// (status must not show a dead peer as healthy), and not before it owes
/// an answer; hearing from it again clears it.
#[test]
fn a_silent_peer_is_overdue_while_its_session_is_up() {
    let mut p = Pair::new(26);
    p.up();
    let status = |p: &Pair| p.a.peer(p.a_peer, p.now).unwrap();
    assert!(!status(&p).overdue);
    p.hook = Box::new(|to_b, _| if to_b { Fate::Deliver } else { Fate::Drop });
    p.send(false, b"hello?").unwrap();
    // a probes after PROBE_AFTER; b owes the answer PROBE_TIMEOUT later.
    p.run_for(PROBE_AFTER + PROBE_TIMEOUT - Duration::from_millis(100));
    assert!(
        !status(&p).overdue,
        "b's answer to the probe is not due yet"
    );
    p.run_for(Duration::from_millis(200));
    let s = status(&p);
    assert!(s.session_up && s.overdue, "{s:?}");
    assert!(p.now - s.last_received.unwrap() >= PROBE_AFTER + PROBE_TIMEOUT);
    // Still overdue once the new handshake goes unanswered.
    p.run_for(REKEY_TIMEOUT * 2);
    assert!(status(&p).overdue);
    p.hook = Box::new(|_, _| Fate::Deliver);
    p.run_for(REKEY_TIMEOUT + Duration::from_secs(1));
    let s = status(&p);
    assert!(s.session_up && !s.overdue, "{s:?}");
}

#[test]
fn persistent_keepalive_sends_on_schedule() {
    let mut p = Pair::with(
        25,
        |c| c.persistent_keepalive = Some(Duration::from_secs(25)),
        |_| {},
    );
    p.up();
    let tx = p.stats(false).tx_datagrams;
    p.run_for(Duration::from_secs(100));
    // Sessions last 180 s, so no rekey in these 100 s: just 4 keepalives.
    assert_eq!(p.stats(false).tx_datagrams - tx, 4);
}

#[test]
fn endpoint_follows_authenticated_frames() {
    let mut p = Pair::new(26);
    p.up();
    assert_eq!(p.b.peer(p.b_peer, p.now).unwrap().endpoint, Some(p.a_addr));
    // a moves (NAT rebinding).
    p.a_addr = addr("198.51.100.7:4444");
    p.send(false, b"from new address").unwrap();
    p.run_for(Duration::from_millis(50));
    assert_eq!(p.b.peer(p.b_peer, p.now).unwrap().endpoint, Some(p.a_addr));
    assert!(p.events_b.contains(&LinkEvent::Roamed(p.b_peer)));
    p.send(true, b"reply").unwrap();
    p.run_for(Duration::from_millis(50));
    assert_eq!(p.at_a, [b"reply".to_vec()]);
}

#[test]
fn unauthenticated_source_does_not_move_the_endpoint() {
    let mut p = Pair::new(27);
    p.up();
    let mut frame = p.seal(false, b"x").unwrap();
    frame[20] ^= 1;
    let r = p.deliver(Datagram {
        at: p.now,
        to_b: true,
        from: addr("203.0.113.66:6666"),
        bytes: frame,
    });
    assert_eq!(r, Err(DropReason::AuthFailed));
    assert_eq!(p.b.peer(p.b_peer, p.now).unwrap().endpoint, Some(p.a_addr));
}

#[test]
fn restarted_peer_is_detected_and_old_sessions_dropped() {
    let mut p = Pair::new(28);
    p.up();
    let old = p.seal(true, b"old session").unwrap();
    // a restarts: same key, new incarnation, state lost, clock moved on.
    let ka = key(28 * 2 + 1);
    let pb = p.b.public_key().to_owned();
    p.now += Duration::from_secs(5);
    p.a = TestLink::new(
        ka,
        ChaCha20Rng::seed_from_u64(777),
        p.now,
        START_UNIX + 5_000_000_000,
    );
    p.a_peer = p.a.add_peer(config(pb, Some(B_ADDR)), p.now).unwrap();
    p.events_b.clear();
    p.up();
    assert_eq!(p.events_b[0], LinkEvent::PeerRestarted(p.b_peer));
    // A frame of the old session means nothing to the new node.
    let from = p.b_addr;
    let r = p.deliver(Datagram {
        at: p.now,
        to_b: false,
        from,
        bytes: old,
    });
    assert_eq!(r, Err(DropReason::UnknownIndex));
}

#[test]
fn rekey_is_not_mistaken_for_a_restart() {
    let mut p = Pair::new(29);
    p.up();
    p.run_for(Duration::from_secs(1));
    // Age the session past REKEY_AFTER_TIME without waiting for it.
    p.now += REKEY_AFTER_TIME;
    let born = p
        .now
        .checked_sub(REKEY_AFTER_TIME + Duration::from_secs(1))
        .unwrap();
    for s in [&mut p.a.peers[0].current, &mut p.b.peers[0].current] {
        s.as_mut().unwrap().created = born;
    }
    p.send(false, b"x").unwrap();
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.stats(true).handshakes_completed, 2);
    assert!(!p
        .events_b
        .iter()
        .any(|e| matches!(e, LinkEvent::PeerRestarted(_))));
}

#[test]
fn one_node_serves_many_peers() {
    // A collector with three peers, each initiating.
    let now = Instant::from_secs(1);
    let kc = key(500);
    let mut collector: TestLink = Link::new(kc, ChaCha20Rng::seed_from_u64(1), now, START_UNIX);
    let mut senders = Vec::new();
    for i in 0..3u64 {
        let k = key(600 + i);
        collector
            .add_peer(config(k.public_key(), None), now)
            .unwrap();
        let mut l: TestLink = Link::new(k, ChaCha20Rng::seed_from_u64(10 + i), now, START_UNIX);
        let id = l
            .add_peer(config(*collector.public_key(), Some("192.0.2.100:1")), now)
            .unwrap();
        l.connect(id, now);
        senders.push((l, id, addr(&format!("192.0.2.{}:9", 10 + i))));
    }
    let mut buf = [0u8; 256];
    // Each sender's initiation, the collector's response, the confirmation.
    for (l, _, a) in senders.iter_mut() {
        let t = l.poll_transmit(now, &mut buf).unwrap().unwrap();
        collector
            .handle_datagram(now, *a, &mut buf[..t.len])
            .unwrap();
        let t = collector.poll_transmit(now, &mut buf).unwrap().unwrap();
        assert_eq!(t.to, *a);
        l.handle_datagram(now, addr("192.0.2.100:1"), &mut buf[..t.len])
            .unwrap();
        let t = l.poll_transmit(now, &mut buf).unwrap().unwrap();
        collector
            .handle_datagram(now, *a, &mut buf[..t.len])
            .unwrap();
    }
    for (i, (l, id, a)) in senders.iter_mut().enumerate() {
        let mut frame = [0u8; 64];
        frame[13] = i as u8;
        let t = l.seal(now, *id, &mut frame, 1).unwrap();
        match collector
            .handle_datagram(now, *a, &mut frame[..t.len])
            .unwrap()
        {
            Received::Data { peer, payload } => {
                assert_eq!(peer, PeerId(i as u16));
                assert_eq!(&frame[payload], &[i as u8]);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn add_peer_refuses_bad_configs() {
    let now = Instant::ZERO;
    let k = key(1);
    let own = k.public_key();
    let mut l: Link<ChaCha20Rng, 2> = Link::new(k, ChaCha20Rng::seed_from_u64(1), now, START_UNIX);
    assert_eq!(l.add_peer(config(own, None), now), Err(ConfigError::OwnKey));
    l.add_peer(config(key(2).public_key(), None), now).unwrap();
    assert_eq!(
        l.add_peer(config(key(2).public_key(), None), now),
        Err(ConfigError::DuplicatePeer)
    );
    l.add_peer(config(key(3).public_key(), None), now).unwrap();
    assert_eq!(
        l.add_peer(config(key(4).public_key(), None), now),
        Err(ConfigError::TooManyPeers)
    );
}

#[test]
fn small_buffers_are_errors_not_panics() {
    let mut p = Pair::new(30);
    p.a.connect(p.a_peer, p.now);
    let mut small = [0u8; MIN_TRANSMIT_BUFFER - 1];
    assert_eq!(
        p.a.poll_transmit(p.now, &mut small),
        Err(SendError::BufferTooSmall)
    );
    p.up();
    let mut tiny = [0u8; 40];
    assert_eq!(
        p.a.seal(p.now, p.a_peer, &mut tiny, 20),
        Err(SendError::BufferTooSmall)
    );
    assert_eq!(
        p.a.seal(p.now, PeerId(3), &mut tiny, 1),
        Err(SendError::UnknownPeer)
    );
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    /// Real frames of an established pair: an initiation, a response, data.
    fn corpus() -> (Pair, Vec<Vec<u8>>) {
        let captured = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut p = Pair::new(40);
        let c = captured.clone();
        p.hook = Box::new(move |_, bytes| {
            c.borrow_mut().push(bytes.to_vec());
            Fate::Deliver
        });
        p.up();
        p.send(false, b"payload one").unwrap();
        p.send(true, b"payload two").unwrap();
        p.run_for(Duration::from_millis(50));
        let frames = captured.borrow().clone();
        (p, frames)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Arbitrary bytes, or a real frame with bytes changed, truncated or
        /// extended, never panic and never deliver a payload: every frame
        /// the peer really sealed was already delivered once.
        #[test]
        fn forged_datagrams_never_deliver(
            base in 0usize..8,
            random in proptest::collection::vec(any::<u8>(), 0..200),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in proptest::option::of(any::<usize>()),
            use_random in any::<bool>(),
        ) {
            let (mut p, frames) = corpus();
            let mut bytes = if use_random || frames.is_empty() {
                random
            } else {
                let mut f = frames[base % frames.len()].clone();
                for (at, x) in edits {
                    if !f.is_empty() {
                        let i = at % f.len();
                        f[i] ^= x;
                    }
                }
                if let Some(c) = cut {
                    f.truncate(c % (f.len() + 1));
                }
                f.extend_from_slice(&random[..random.len().min(3)]);
                f
            };
            for to_b in [false, true] {
                let from = if to_b { p.a_addr } else { p.b_addr };
                let now = p.now;
                let r = p.link(to_b).handle_datagram(now, from, &mut bytes.clone());
                prop_assert!(!matches!(r, Ok(Received::Data { .. })), "delivered a forgery: {r:?}");
            }
            // And nothing the forgeries provoked is sent, except what the
            // genuine state machine would have sent anyway (nothing is due).
            let mut buf = [0u8; 256];
            prop_assert_eq!(p.a.poll_transmit(p.now, &mut buf).unwrap(), None);
            prop_assert_eq!(p.b.poll_transmit(p.now, &mut buf).unwrap(), None);
            let _ = &mut bytes;
        }
    }
}

#[test]
fn renewed_incarnation_looks_like_a_restart_to_the_peer() {
    let mut p = Pair::new(31);
    p.up();
    p.events_b.clear();
    let old = p.seal(false, b"before renewal").unwrap();
    let (a_peer, now) = (p.a_peer, p.now);
    p.a.renew_incarnation(a_peer, now);
    assert!(!p.a.is_up(a_peer, now), "sessions are dropped at once");
    p.run_for(Duration::from_millis(100));
    assert!(
        p.events_b.contains(&LinkEvent::PeerRestarted(p.b_peer)),
        "{:?}",
        p.events_b
    );
    // The old session is gone on both sides.
    let from = p.a_addr;
    let r = p.deliver(Datagram {
        at: p.now,
        to_b: true,
        from,
        bytes: old,
    });
    assert_eq!(r, Err(DropReason::UnknownIndex));
    p.send(false, b"after").unwrap();
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.at_b.last().map(Vec::as_slice), Some(&b"after"[..]));
}

// ---- handshakes under load: cookies and rate limits ----

#[test]
fn under_load_an_initiation_gets_a_small_cookie_reply_and_the_retry_succeeds() {
    let mut p = Pair::new(40);
    p.b.set_load_threshold(0); // always under load
    let sizes = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = sizes.clone();
    p.hook = Box::new(move |to_b, bytes| {
        seen.borrow_mut().push((to_b, bytes[0], bytes.len()));
        Fate::Deliver
    });
    p.a.connect(p.a_peer, p.now);
    p.run_for(Duration::from_millis(100));
    assert!(
        !p.a.is_up(p.a_peer, p.now),
        "the first initiation carried no cookie"
    );
    assert_eq!(p.b.unattributed_drops().get(DropReason::CookieRequired), 1);
    {
        let sizes = sizes.borrow();
        // a -> b initiation (153 B), b -> a cookie reply (61 B): never more
        // bytes back than came in from an unproven address.
        assert_eq!(sizes[..2], [(true, 1, 153), (false, 3, 61)]);
    }
    // The next resend of the same initiation carries mac2 from the cookie.
    p.run_for(FIRST_RESEND + Duration::from_millis(100));
    assert!(p.a.is_up(p.a_peer, p.now));
    assert!(p.b.is_up(p.b_peer, p.now));
    assert_eq!(p.b.unattributed_drops().get(DropReason::CookieRequired), 1);
}

/// `n` initiations to b with a valid mac1 (anyone who knows b's public key
/// can make them) by a node b does not know (key `seed`), each from its own
/// spoofed address.
fn stranger_initiations(p: &Pair, seed: u64, n: u32) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut stranger = TestLink::new(
        key(seed),
        ChaCha20Rng::seed_from_u64(seed),
        p.now,
        START_UNIX,
    );
    let pb = p.b.public_key().to_owned();
    let sp = stranger.add_peer(config(pb, Some(B_ADDR)), p.now).unwrap();
    (0..n)
        .map(|i| {
            stranger.connect(sp, p.now);
            let mut buf = [0u8; 256];
            let t = stranger.poll_transmit(p.now, &mut buf).unwrap().unwrap();
            // Forget the pending handshake so the next connect makes a new one.
            stranger.peers[0].pending = None;
            let from = SocketAddr::new([203, 0, 113, (i % 250) as u8].into(), 1000 + i as u16);
            (from, buf[..t.len].to_vec())
        })
        .collect()
}

#[test]
fn spoofed_initiation_flood_costs_no_handshakes_and_the_real_peer_gets_through() {
    let mut p = Pair::new(41);
    p.b.set_load_threshold(10);
    // A flood from many spoofed addresses.
    let (mut bytes_in, mut bytes_out) = (0usize, 0usize);
    for (from, mut message) in stranger_initiations(&p, 999, 500) {
        let now = p.now;
        let _ = p.b.handle_datagram(now, from, &mut message);
        bytes_in += message.len();
        let mut out = [0u8; 256];
        while let Some(t) = p.b.poll_transmit(now, &mut out).unwrap() {
            assert_eq!(t.to, from, "answers go only to the claimed source");
            bytes_out += t.len;
        }
        p.now += Duration::from_micros(100);
    }
    let drops = p.b.unattributed_drops();
    assert!(
        bytes_out < bytes_in,
        "amplification: {bytes_out} out for {bytes_in} in"
    );
    // Only the messages before the node noticed the load cost it a
    // Diffie-Hellman (they fail as an unknown peer).
    assert!(drops.get(DropReason::UnknownPeer) <= 11, "{drops:?}");
    assert!(drops.get(DropReason::CookieRequired) >= 489, "{drops:?}");
    // The real peer, at its real address, completes within two tries.
    p.a.connect(p.a_peer, p.now);
    p.run_for(REKEY_TIMEOUT + MAX_JITTER + Duration::from_millis(200));
    assert!(p.a.is_up(p.a_peer, p.now));
}

#[test]
fn forged_cookie_replies_are_refused() {
    let mut p = Pair::new(42);
    p.b.set_load_threshold(0);
    p.hook = Box::new(|to_b, bytes| {
        if !to_b && bytes[0] == 3 {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    p.a.connect(p.a_peer, p.now);
    p.run_for(Duration::from_millis(50));
    let index = p.a.peers[0].pending.as_ref().unwrap().local_index;
    let mut forged = [0x77u8; 61];
    forged[0] = 3;
    forged[1..5].copy_from_slice(&index.to_le_bytes());
    let from = p.b_addr;
    let r = p.deliver(Datagram {
        at: p.now,
        to_b: false,
        from,
        bytes: forged.to_vec(),
    });
    assert_eq!(r, Err(DropReason::BadCookieReply));
    forged[1..5].copy_from_slice(&(index ^ 0x0100_0000).to_le_bytes());
    let r = p.deliver(Datagram {
        at: p.now,
        to_b: false,
        from,
        bytes: forged.to_vec(),
    });
    assert_eq!(r, Err(DropReason::UnexpectedCookie));
    let r = p.deliver(Datagram {
        at: p.now,
        to_b: false,
        from,
        bytes: forged[..60].to_vec(),
    });
    assert_eq!(r, Err(DropReason::Malformed));
}

#[test]
fn crossing_initiations_converge_in_a_round_trip_when_the_first_was_lost() {
    for seed in 0..10 {
        let mut p = Pair::with(300 + seed, |_| {}, |c| c.endpoint = Some(addr(A_ADDR)));
        // The side with the higher key starts first, while the other is not
        // listening yet: its first initiation is lost.
        let a_higher = p.a.public_key().as_bytes() > p.b.public_key().as_bytes();
        let mut lost = false;
        p.hook = Box::new(move |to_b, bytes| {
            if bytes[0] == 1 && to_b != a_higher && !lost {
                lost = true;
                return Fate::Drop;
            }
            Fate::Deliver
        });
        if a_higher {
            p.a.connect(p.a_peer, p.now);
        } else {
            p.b.connect(p.b_peer, p.now);
        }
        p.run_for(Duration::from_millis(100));
        if a_higher {
            p.b.connect(p.b_peer, p.now);
        } else {
            p.a.connect(p.a_peer, p.now);
        }
        p.run_for(Duration::from_millis(200));
        assert!(
            p.a.is_up(p.a_peer, p.now),
            "seed {seed}: a up within a round trip or two"
        );
        assert!(p.b.is_up(p.b_peer, p.now), "seed {seed}: b up");
    }
}

#[test]
fn an_initiation_ignored_in_a_race_cannot_be_replayed_later() {
    // Found by the simulation (sim/README.md, finding 1).
    for seed in 0..6 {
        let mut p = Pair::with(320 + seed, |_| {}, |c| c.endpoint = Some(addr(A_ADDR)));
        let captured = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let log = captured.clone();
        p.hook = Box::new(move |to_b, bytes| {
            if bytes[0] == 1 {
                log.borrow_mut().push((to_b, bytes.to_vec()));
            }
            Fate::Deliver
        });
        p.a.connect(p.a_peer, p.now);
        p.b.connect(p.b_peer, p.now);
        p.run_for(Duration::from_secs(1));
        assert!(p.a.is_up(p.a_peer, p.now) && p.b.is_up(p.b_peer, p.now));
        let (a_end, b_end) = (
            p.a.peer(p.a_peer, p.now).unwrap().endpoint,
            p.b.peer(p.b_peer, p.now).unwrap().endpoint,
        );
        // Every initiation seen on the wire, replayed from elsewhere: refused.
        let attacker = addr("198.51.100.66:666");
        for (to_b, bytes) in captured.borrow().iter() {
            let d = Datagram {
                at: p.now,
                to_b: *to_b,
                from: attacker,
                bytes: bytes.clone(),
            };
            assert_eq!(
                p.deliver(d),
                Err(DropReason::ReplayedInitiation),
                "seed {seed}"
            );
        }
        assert_eq!(p.a.peer(p.a_peer, p.now).unwrap().endpoint, a_end);
        assert_eq!(p.b.peer(p.b_peer, p.now).unwrap().endpoint, b_end);
    }
}

#[test]
fn a_peer_that_cannot_hear_us_is_answered_at_once() {
    // Found by the simulation (sim/README.md, finding 3): our endpoint for
    // the peer is stale, so our initiations go nowhere, while the peer's
    // reach us from its new address.
    for seed in 0..10 {
        let mut p = Pair::with(
            340 + seed,
            |c| c.endpoint = Some(addr("192.0.2.99:9")),
            |c| c.endpoint = Some(addr(A_ADDR)),
        );
        p.a.connect(p.a_peer, p.now);
        p.run_for(Duration::from_millis(50));
        p.b.connect(p.b_peer, p.now);
        p.run_for(Duration::from_millis(100));
        assert!(p.a.is_up(p.a_peer, p.now), "seed {seed}: a up");
        assert!(p.b.is_up(p.b_peer, p.now), "seed {seed}: b up");
        assert_eq!(p.a.peer(p.a_peer, p.now).unwrap().endpoint, Some(p.b_addr));
        // Retries after the stale endpoint keep landing: still no livelock
        // when both keep trying for a while.
        p.run_for(Duration::from_secs(30));
        assert!(p.a.is_up(p.a_peer, p.now) && p.b.is_up(p.b_peer, p.now));
    }
}

#[test]
fn an_initiation_replayed_after_a_restart_does_not_move_the_endpoint() {
    // A restarted node has forgotten the timestamps it saw, as WireGuard
    // does (sim/README.md, finding 2): a captured initiation is answered,
    // but its sender cannot finish the handshake, and the peer's endpoint
    // stays where the peer really is.
    let mut p = Pair::with(360, |_| {}, |c| c.endpoint = Some(addr(A_ADDR)));
    let captured = std::rc::Rc::new(std::cell::RefCell::new(None));
    let log = captured.clone();
    p.hook = Box::new(move |to_b, bytes| {
        if to_b && bytes[0] == 1 && log.borrow().is_none() {
            *log.borrow_mut() = Some(bytes.to_vec());
        }
        Fate::Deliver
    });
    p.up();
    // b restarts: same key, state lost.
    let kb = key(360 * 2 + 2);
    let pa = p.a.public_key().to_owned();
    p.b = TestLink::new(
        kb,
        ChaCha20Rng::seed_from_u64(9),
        p.now,
        START_UNIX + 1_000_000_000,
    );
    p.b_peer = p.b.add_peer(config(pa, Some(A_ADDR)), p.now).unwrap();
    let old = captured.borrow().clone().unwrap();
    let attacker = addr("198.51.100.66:666");
    let r = p.deliver(Datagram {
        at: p.now,
        to_b: true,
        from: attacker,
        bytes: old,
    });
    assert!(matches!(r, Ok(Received::Control { .. })), "{r:?}");
    assert_eq!(p.b.peer(p.b_peer, p.now).unwrap().endpoint, Some(p.a_addr));
    // The response goes to the replayer, once; nothing else.
    let mut buf = [0u8; 256];
    let t = p.b.poll_transmit(p.now, &mut buf).unwrap().unwrap();
    assert_eq!((t.to, t.len), (attacker, 97));
    assert!(!p.b.is_up(p.b_peer, p.now), "no session from a replay");
    // The real peers meet again.
    p.b.connect(p.b_peer, p.now);
    p.run_for(Duration::from_millis(200));
    assert!(p.a.is_up(p.a_peer, p.now) && p.b.is_up(p.b_peer, p.now));
    p.send(true, b"to the real a").unwrap();
    p.run_for(Duration::from_millis(50));
    assert_eq!(
        p.at_a.last().map(Vec::as_slice),
        Some(&b"to the real a"[..])
    );
}

#[test]
fn a_kept_up_link_notices_a_silent_peer_restart_by_probing() {
    // Found by the simulation (sim/README.md, finding 4): b cannot reach a
    // (it knows no endpoint) and a sends nothing, so without probes a would
    // not notice b's restart until its rekey, 120 s on.
    let mut p = Pair::with(380, |c| c.keep_up = true, |_| {});
    p.run_for(Duration::from_millis(100));
    assert!(p.a.is_up(p.a_peer, p.now) && p.b.is_up(p.b_peer, p.now));
    // An idle, healthy link: probes are answered, no new handshake.
    p.run_for(Duration::from_secs(60));
    assert_eq!(p.stats(false).handshakes_completed, 1);
    let tx = p.stats(false).tx_datagrams;
    assert!((50..=62).contains(&tx), "a probes about every second: {tx}");
    // b restarts, forgets everything, and knows no endpoint for a.
    let kb = key(380 * 2 + 2);
    let pa = p.a.public_key().to_owned();
    p.b = TestLink::new(
        kb,
        ChaCha20Rng::seed_from_u64(11),
        p.now,
        START_UNIX + 100_000_000_000,
    );
    p.b_peer = p.b.add_peer(config(pa, None), p.now).unwrap();
    p.events_a.clear();
    p.run_for(PROBE_AFTER + PROBE_TIMEOUT + Duration::from_millis(50));
    assert!(p.b.is_up(p.b_peer, p.now), "b has a session again");
    assert!(p.events_a.contains(&LinkEvent::PeerRestarted(p.a_peer)));
}

/// The output side visits only peers with something pending: with 250
/// idle peers configured beside the busy one, a handshake and 100
/// datagrams each way cost a few visits, not 250 per `poll_transmit`,
/// `poll_event` or `handle_timeout` as a scan of every peer would.
#[test]
fn output_cost_does_not_grow_with_idle_peers() {
    type Big = Link<ChaCha20Rng, 256>;
    let (ka, kb) = (key(91), key(92));
    let (pa, pb) = (ka.public_key(), kb.public_key());
    let mut now = Instant::from_secs(1);
    let mut a = Big::new(ka, ChaCha20Rng::seed_from_u64(93), now, START_UNIX);
    let mut b = TestLink::new(kb, ChaCha20Rng::seed_from_u64(94), now, START_UNIX);
    for i in 0..250u64 {
        // Idle peers with endpoints, as a collector's pushing nodes are.
        let mut c = config(key(1000 + i).public_key(), Some(B_ADDR));
        c.endpoint = Some(SocketAddr::new(addr(B_ADDR).ip(), 3000 + i as u16));
        a.add_peer(c, now).unwrap();
    }
    let a_peer = a.add_peer(config(pb, Some(B_ADDR)), now).unwrap();
    let b_peer = b.add_peer(config(pa, None), now).unwrap();
    // Adding peers files each once: start counting after.
    let mut buf = [0u8; 256];
    while a.poll_transmit(now, &mut buf).unwrap().is_some() {}
    while a.poll_event().is_some() {}
    a.visits = 0;

    a.connect(a_peer, now);
    let mut to_b = Vec::new();
    while let Some(t) = a.poll_transmit(now, &mut buf).unwrap() {
        to_b.push(buf[..t.len].to_vec());
    }
    assert_eq!(to_b.len(), 1, "one initiation");
    now += Duration::from_millis(1);
    b.handle_datagram(now, addr(A_ADDR), &mut to_b[0]).unwrap();
    let t = b.poll_transmit(now, &mut buf).unwrap().expect("a response");
    let mut response = buf[..t.len].to_vec();
    now += Duration::from_millis(1);
    a.handle_datagram(now, addr(B_ADDR), &mut response).unwrap();
    while let Some(t) = a.poll_transmit(now, &mut buf).unwrap() {
        let mut m = buf[..t.len].to_vec();
        b.handle_datagram(now, addr(A_ADDR), &mut m).unwrap();
    }
    while a.poll_event().is_some() {}
    assert!(a.is_up(a_peer, now));

    for i in 0..100u8 {
        now += Duration::from_millis(1);
        let mut frame = [0u8; 64];
        frame[13] = i;
        let t = a.seal(now, a_peer, &mut frame, 1).unwrap();
        b.handle_datagram(now, addr(A_ADDR), &mut frame[..t.len])
            .unwrap();
        let mut back = [0u8; 64];
        back[13] = i;
        let t = b.seal(now, b_peer, &mut back, 1).unwrap();
        a.handle_datagram(now, addr(B_ADDR), &mut back[..t.len])
            .unwrap();
        while a.poll_transmit(now, &mut buf).unwrap().is_some() {}
        while a.poll_event().is_some() {}
        if a.poll_timeout().is_some_and(|t| t <= now) {
            a.handle_timeout(now);
        }
    }
    assert!(
        (1..=20).contains(&a.visits),
        "{} peer visits for a handshake and 200 datagrams",
        a.visits
    );
}

/// A runtime handling a batch drains the link when `needs_transmit_now`
/// says a bounded queue is full: in a batch of 500 flooded initiations,
/// the real peer's initiation, last, still gets its cookie reply. Without
/// the mid-batch drain the queue would have been full long before.
#[test]
fn a_flooded_batch_still_answers_the_real_peer() {
    let mut p = Pair::new(43);
    p.b.set_load_threshold(0);
    let mut batch = stranger_initiations(&p, 998, 500);
    p.a.connect(p.a_peer, p.now);
    let mut buf = [0u8; 256];
    let t = p.a.poll_transmit(p.now, &mut buf).unwrap().unwrap();
    batch.push((p.a_addr, buf[..t.len].to_vec()));

    let now = p.now;
    let mut replies_to_a = 0;
    let mut drained_mid_batch = 0;
    let mut out = [0u8; 256];
    for (from, mut bytes) in batch {
        let _ = p.b.handle_datagram(now, from, &mut bytes);
        if p.b.needs_transmit_now() {
            drained_mid_batch += 1;
            while let Some(t) = p.b.poll_transmit(now, &mut out).unwrap() {
                replies_to_a += usize::from(t.to == p.a_addr);
            }
        }
    }
    while let Some(t) = p.b.poll_transmit(now, &mut out).unwrap() {
        replies_to_a += usize::from(t.to == p.a_addr);
    }
    assert!(drained_mid_batch > 0, "the queue never filled");
    assert_eq!(replies_to_a, 1, "the real peer's cookie reply");
}

mod lifecycle;

/// A peer that moved: two unanswered initiations in a row report
/// `EndpointStale` (not before), and the new address given to
/// `set_endpoint` restarts the handshake there at once.
#[test]
fn unanswered_handshakes_report_a_stale_endpoint_and_set_endpoint_follows() {
    let mut p = Pair::with(40, |c| c.keep_up = true, |_| {});
    p.up();
    let stale = |p: &Pair| {
        p.events_a
            .iter()
            .filter(|e| **e == LinkEvent::EndpointStale(p.a_peer))
            .count()
    };
    p.b_addr = addr("192.0.2.3:2000");
    // The probe goes unanswered after 1 s, the first initiation is given
    // up at 5 s plus jitter: one unanswered attempt is no sign yet.
    p.run_for(Duration::from_secs(7));
    assert_eq!(stale(&p), 0, "one unanswered initiation");
    assert!(p.stats(false).handshakes_initiated >= 2);
    p.run_for(Duration::from_secs(6));
    assert_eq!(stale(&p), 1, "the second one: {:?}", p.events_a);
    let new = p.b_addr;
    assert!(p.a.set_endpoint(p.a_peer, new, p.now));
    assert!(!p.a.set_endpoint(p.a_peer, new, p.now), "unchanged");
    assert_eq!(p.a.peer_config(p.a_peer).unwrap().endpoint, Some(new));
    p.run_for(Duration::from_millis(100));
    assert!(p.a.is_up(p.a_peer, p.now), "handshake at the new address");
    assert_eq!(p.a.peer(p.a_peer, p.now).unwrap().endpoint, Some(new));
    p.send(false, b"moved").unwrap();
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.at_b.last().map(Vec::as_slice), Some(&b"moved"[..]));
    // Answered from now on: no more stale reports.
    p.run_for(Duration::from_secs(60));
    assert_eq!(stale(&p), 1);
}

/// A kept-up peer whose endpoint name did not resolve at start has no
/// endpoint; the first address `set_endpoint` gives starts its handshake.
#[test]
fn set_endpoint_starts_a_kept_up_peer_without_one() {
    let mut p = Pair::with(
        41,
        |c| {
            c.keep_up = true;
            c.endpoint = None;
        },
        |_| {},
    );
    p.run_for(Duration::from_secs(30));
    assert_eq!(p.stats(false).handshakes_initiated, 0, "nowhere to send");
    let b = p.b_addr;
    assert!(p.a.set_endpoint(p.a_peer, b, p.now));
    p.run_for(Duration::from_millis(100));
    assert!(p.a.is_up(p.a_peer, p.now));
    assert!(p.b.is_up(p.b_peer, p.now));
}

/// Gives one side a new preshared key, as a reload does.
fn change_psk(p: &mut Pair, b: bool, psk: [u8; 32]) {
    let now = p.now;
    let (link, peer) = if b {
        (&mut p.b, p.b_peer)
    } else {
        (&mut p.a, p.a_peer)
    };
    let mut c = link.peer_config(peer).unwrap().clone();
    c.preshared_key = Some(PresharedKey::from_bytes(psk));
    assert!(link.update_peer(peer, c, now), "a changed PSK rekeys");
}

/// A preshared key changed by a reload on one node, then on the other
/// (an operator reloads the two ends in turn): the first node's fresh
/// initiation reaches a peer that still holds the old key, which answers
/// it under that key, so the first node cannot complete it. Its resends are
/// the same initiation, which the peer had answered: once the peer holds
/// the new key too, it must answer that one again (once), or the link
/// waits for REKEY_TIMEOUT (found by the simulation's
/// forward-reload-rekey: 5 s without traffic).
#[test]
fn a_preshared_key_changed_on_both_nodes_in_turn_is_back_within_two_seconds() {
    for first_b in [false, true] {
        for gap_ms in [0, 30, 300, 800] {
            let mut p = Pair::new(31);
            p.up();
            change_psk(&mut p, first_b, [9; 32]);
            p.run_for(Duration::from_millis(gap_ms));
            change_psk(&mut p, !first_b, [9; 32]);
            let changed = p.now;
            let mut back = None;
            while p.now < changed + Duration::from_secs(2) {
                p.run_for(Duration::from_millis(20));
                if p.a.is_up(p.a_peer, p.now) && p.send(false, b"ping").is_ok() {
                    p.run_for(Duration::from_millis(30));
                    if p.at_b.last().map(Vec::as_slice) == Some(b"ping".as_slice()) {
                        back = Some(p.now - changed);
                        break;
                    }
                }
            }
            assert!(
                back.is_some(),
                "first {}, gap {gap_ms} ms: no data a -> b within 2 s of the second change",
                if first_b { "b" } else { "a" }
            );
            p.send(true, b"pong").unwrap();
            p.run_for(Duration::from_millis(30));
            assert_eq!(p.at_a.last().map(Vec::as_slice), Some(b"pong".as_slice()));
        }
    }
}

/// After a change of the preshared key the newest initiation is answered
/// once more (see the test above), and only once; older ones stay refused.
#[test]
fn after_a_psk_change_only_the_newest_initiation_is_answered_again_and_once() {
    let captured = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut p = Pair::new(32);
    let c = captured.clone();
    p.hook = Box::new(move |to_b, bytes| {
        if to_b && bytes[0] == 1 {
            c.borrow_mut().push(bytes.to_vec());
        }
        Fate::Deliver
    });
    p.up();
    // A second handshake, so there is an older initiation to replay.
    p.a.connect(p.a_peer, p.now);
    p.run_for(Duration::from_millis(100));
    p.hook = Box::new(|_, _| Fate::Deliver);
    let (older, newest) = {
        let c = captured.borrow();
        assert!(c.len() >= 2, "two initiations captured");
        (c[0].clone(), c[c.len() - 1].clone())
    };
    change_psk(&mut p, true, [5; 32]);
    p.run_for(Duration::from_millis(100));
    let from = p.a_addr;
    let replay = |p: &mut Pair, bytes: &[u8]| {
        let before = p.stats(true).tx_datagrams;
        let r = p.deliver(Datagram {
            at: p.now,
            to_b: true,
            from,
            bytes: bytes.to_vec(),
        });
        p.flush();
        p.in_flight.clear();
        (r, p.stats(true).tx_datagrams - before)
    };
    assert_eq!(
        replay(&mut p, &older),
        (Err(DropReason::ReplayedInitiation), 0)
    );
    let (r, sent) = replay(&mut p, &newest);
    assert!(r.is_ok(), "the newest is answered again: {r:?}");
    assert_eq!(sent, 1, "with one response");
    assert_eq!(
        replay(&mut p, &newest),
        (Err(DropReason::ReplayedInitiation), 0),
        "but only once"
    );
}
