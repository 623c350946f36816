//! The attacker host: sends the nodes garbage, mutated and replayed copies
//! of their frames, and handshakes from keys they do not know, now and then
//! in floods; judges every datagram it receives by the stance
//! ([`crate::stance`]): nothing, except a cookie reply smaller than the
//! message it answers, to a message with a valid `mac1`, while the node is
//! under load.
//!
//! It learns frames from the harness: every frame that arrived at a node
//! from its peer is in [`Shared::captured`](crate::world::Shared). Replays
//! therefore always come after the original arrived, as a sniffer's
//! replays would; a replay that won the race against its original would
//! be the original as far as the receiver can tell.

use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::{ChaCha20Rng, ChaCha8Rng};
use rand_core::{RngCore, SeedableRng};
use sdt_core::key::{PrivateKey, PublicKey};
use sdt_core::link::{Link, PeerConfig, PeerId, MIN_TRANSMIT_BUFFER};
use sdt_core::wire::{DataPacket, InitiationPacket, ResponsePacket};
use turmoil::net::UdpSocket;

use crate::driver::{core_now, START_UNIX_NANOS};
use crate::scenario::{Attack, Mode, Move, ATTACKER_PORT, LISTEN_PORT, NODE_NAMES};
use crate::trace::mix;
use crate::world::{sim_now, Captured, SharedRef};

struct Attacker {
    shared: SharedRef,
    sock: UdpSocket,
    rng: ChaCha8Rng,
    keys: [PublicKey; 2],
    mode: Mode,
    seed: u64,
    unknown_keys: u64,
    attack: Attack,
}

/// The attacker's software.
pub async fn run(shared: SharedRef, keys: [PublicKey; 2]) -> turmoil::Result {
    let (attack, seed, mode) = {
        let s = shared.borrow();
        let a = s
            .setup
            .faults
            .attack
            .clone()
            .ok_or("no attack configured")?;
        (a, s.setup.seed, s.setup.mode)
    };
    let any = shared.borrow().setup.unspecified();
    let sock = UdpSocket::bind((any, ATTACKER_PORT)).await?;
    let mut me = Attacker {
        shared,
        sock,
        rng: ChaCha8Rng::seed_from_u64(mix(seed, "attacker", 0)),
        keys,
        mode,
        seed,
        unknown_keys: 0,
        attack: attack.clone(),
    };
    let mut floods = attack.floods.clone();
    floods.sort();
    floods.reverse();
    let mut next = attack.active.start;
    let mut buf = vec![0u8; 4096];
    loop {
        let sleep = tokio::time::sleep(next.saturating_sub(sim_now()));
        tokio::select! {
            biased;
            _ = me.sock.readable() => {}
            _ = sleep => {}
        }
        while let Ok((n, from)) = me.sock.try_recv_from(&mut buf) {
            let mut s = me.shared.borrow_mut();
            let node = NODE_NAMES.iter().position(|name| s.ip(name) == from.ip());
            let verdict = s.stance.judge(node, &buf[..n]);
            let from = s.name_addr(from);
            match verdict {
                Ok(()) => {
                    s.attacker_cookie_replies += 1;
                    let what = format!("received a cookie reply ({n} bytes) from {from}: allowed");
                    s.log("attacker", &what, &buf[..n]);
                }
                Err(why) => {
                    s.attacker_received += 1;
                    s.violate(format!(
                        "the attacker received {n} bytes from {from}: {why}"
                    ));
                }
            }
        }
        let now = sim_now();
        if now < next {
            continue;
        }
        if now >= attack.active.end {
            next = Duration::from_secs(100_000);
            continue;
        }
        me.one();
        if floods.last().is_some_and(|&f| f <= now) {
            floods.pop();
            me.shared
                .borrow_mut()
                .log("attacker", &format!("flood of {}", attack.flood_size), &[]);
            for _ in 0..attack.flood_size {
                me.one();
            }
        }
        let (lo, hi) = attack.gap_ms;
        next = now + Duration::from_millis(lo + me.rng.next_u64() % (hi - lo + 1));
    }
}

impl Attacker {
    fn below(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n.max(1) as u64) as usize
    }

    /// Sends one datagram.
    fn one(&mut self) {
        let target_node = self.below(2);
        let mut to = self.shared.borrow().link_addr(target_node);
        let moves: Vec<Move> = if self.attack.moves.is_empty() {
            Move::ALL.to_vec()
        } else {
            self.attack.moves.clone()
        };
        let mv = moves[self.below(moves.len())];
        let captured = {
            let s = self.shared.borrow();
            let replays = self.attack.replays;
            let pool = if mv == Move::ReplayHandshake {
                &s.captured_handshakes
            } else {
                &s.captured
            };
            let from: Vec<&Captured> = pool
                .iter()
                .filter(|c| c.replayable(replays, s.boots, s.down))
                .collect();
            if from.is_empty() {
                None
            } else {
                let k = (self.rng.next_u64() % from.len() as u64) as usize;
                Some(from[k].clone())
            }
        };
        if captured.is_none() && !self.attack.moves.is_empty() && mv != Move::UnknownKey {
            // A restricted attack sends only what it was told to.
            return;
        }
        let bytes = match (mv, captured) {
            // Nothing captured to replay yet: garbage instead.
            (Move::Garbage, _) | (_, None) if mv != Move::UnknownKey => self.garbage(),
            (Move::Truncated, Some(c)) => {
                to = self.shared.borrow().link_addr(c.node);
                let cut = self.below(c.bytes.len());
                c.bytes[..cut].to_vec()
            }
            (Move::BitFlipped, Some(c)) => {
                to = self.shared.borrow().link_addr(c.node);
                let mut b = c.bytes;
                for _ in 0..1 + self.below(3) {
                    let bit = self.below(b.len() * 8);
                    b[bit / 8] ^= 1 << (bit % 8);
                }
                b
            }
            (Move::Replay | Move::ReplayHandshake, Some(c)) => {
                to = self.shared.borrow().link_addr(c.node);
                c.bytes
            }
            (Move::ForgedData, Some(c)) => {
                to = self.shared.borrow().link_addr(c.node);
                let mut b = c.bytes;
                // Keep type and receiver index, forge counter and body.
                for byte in b.iter_mut().skip(5) {
                    *byte = self.rng.next_u64() as u8;
                }
                b
            }
            _ => self.unknown_key_initiation(target_node),
        };
        // Direct services listen for one customer: try them too.
        if self.mode == Mode::Direct && self.attack.moves.is_empty() && self.below(5) == 0 {
            let node = self.below(2);
            let ip = self.shared.borrow().ip(NODE_NAMES[node]);
            to = SocketAddr::new(ip, LISTEN_PORT);
            self.shared.borrow_mut().attacker_customer_sent += 1;
        }
        let mut s = self.shared.borrow_mut();
        s.attacker_sent += 1;
        let what = format!("{mv:?} -> {} ({} bytes)", s.name_addr(to), bytes.len());
        s.log("attacker", &what, &bytes);
        drop(s);
        if let Err(e) = self.sock.try_send_to(&bytes, to) {
            let what = format!("send failed: {e}");
            self.shared.borrow_mut().log("attacker", &what, &[]);
        }
    }

    fn garbage(&mut self) -> Vec<u8> {
        // Half the time shaped like a real message: right type, right length.
        let len = match self.below(8) {
            0 => InitiationPacket::<&[u8]>::LEN,
            1 => ResponsePacket::<&[u8]>::LEN,
            2 => DataPacket::<&[u8]>::OVERHEAD,
            3 => DataPacket::<&[u8]>::OVERHEAD + 1 + self.below(300),
            _ => self.below(300),
        };
        let mut b: Vec<u8> = (0..len).map(|_| self.rng.next_u64() as u8).collect();
        if let Some(first) = b.first_mut() {
            if self.below(2) == 0 {
                *first = 1 + self.below(5) as u8;
            }
        }
        b
    }

    /// A real initiation to `node`, from a fresh key it does not know: mac1
    /// is right (the node's public key is public), Noise succeeds, and only
    /// the unknown key gives it away.
    fn unknown_key_initiation(&mut self, node: usize) -> Vec<u8> {
        self.unknown_keys += 1;
        let mut rng = ChaCha20Rng::seed_from_u64(mix(self.seed, "attacker-key", self.unknown_keys));
        let secret = PrivateKey::generate(&mut rng);
        let t = sim_now();
        let now = core_now(t);
        let mut link: Link<ChaCha20Rng, 1> =
            Link::new(secret, rng, now, START_UNIX_NANOS + t.as_nanos() as u64);
        let to = self.shared.borrow().link_addr(node);
        let mut peer = PeerConfig::new(self.keys[node]);
        peer.endpoint = Some(to);
        if link.add_peer(peer, now).is_err() {
            return self.garbage();
        }
        link.connect(PeerId(0), now);
        let mut buf = vec![0u8; MIN_TRANSMIT_BUFFER];
        match link.poll_transmit(now, &mut buf) {
            Ok(Some(t)) => buf[..t.len].to_vec(),
            _ => self.garbage(),
        }
    }
}
