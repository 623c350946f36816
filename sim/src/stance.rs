//! What a node may send the attacker, as `docs/security.md` states it:
//! nothing, except a cookie reply smaller than the message it answers, to a
//! handshake message with a valid `mac1`, while the node is under load.
//!
//! The drivers show [`Stance`] every datagram a node's link socket hands
//! the node ([`Stance::arrived`]), before the node sees it. From those it
//! keeps, per node, an independent model of the load meter and the
//! handshake messages the attacker sent, each with whether its `mac1` was
//! valid and whether the node was under load when it arrived. The attacker
//! asks [`Stance::judge`] about each datagram it receives; anything the
//! stance does not allow is a violation.
//!
//! Which message a cookie reply answers is not guessed: the reply names
//! the message's sender index and is sealed with the message's `mac1` as
//! associated data, which [`cookie_reply_answers`] checks with the
//! replier's public key. `mac1` is checked with [`mac1_is_valid`], the
//! node's own check; it needs only public values too.
//!
//! The load model follows the stance ("more than
//! [`DEFAULT_LOAD_THRESHOLD`] handshake messages a second"), not core's
//! code: a node is under load for one second after a handshake message
//! with a valid `mac1` that was more than the threshold within one
//! second, counting itself. Core's meter (fixed windows opened by the first
//! message after the last one closed) is under load only when this model
//! is, so a node that keeps to its design never fails the check, and one
//! that asks for cookies without that load does (`Sabotage::CookiesAlways`
//! shows it). The model is reset when the node boots, as core's meter is.

use std::collections::VecDeque;
use std::time::Duration;

use sdt_core::key::PublicKey;
use sdt_core::link::{cookie_reply_answers, mac1_is_valid, DEFAULT_LOAD_THRESHOLD};
use sdt_core::wire::{
    CookieReplyPacket, HandshakeMacs, InitiationPacket, MessageType, ResponsePacket,
};
use sdt_core::Instant;

/// How long a handshake message counts towards the load, and how long the
/// load lasts after the last message in excess.
const LOAD_WINDOW: Duration = Duration::from_secs(1);

/// The model of one node's load meter.
#[derive(Debug, Default)]
struct LoadMeter {
    /// Arrival times of handshake messages with a valid `mac1` in the last
    /// [`LOAD_WINDOW`], oldest first.
    recent: VecDeque<Instant>,
    /// Under load before this time.
    loaded_until: Option<Instant>,
}

impl LoadMeter {
    /// Counts a message with a valid `mac1` at `now`.
    fn note(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|&t| now.saturating_since(t) >= LOAD_WINDOW)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        if self.recent.len() > DEFAULT_LOAD_THRESHOLD as usize {
            self.loaded_until = Some(now.saturating_add(LOAD_WINDOW));
        }
    }

    fn under_load(&self, now: Instant) -> bool {
        self.loaded_until.is_some_and(|t| now < t)
    }
}

/// A handshake message the attacker sent a node, as it arrived.
#[derive(Debug, Clone)]
struct Asked {
    sender_index: u32,
    mac1: [u8; 16],
    len: usize,
    mac1_valid: bool,
    /// Whether the node was under load when it arrived, and the messages
    /// with a valid `mac1` in the second up to it.
    under_load: bool,
    recent: usize,
}

/// The stance's bookkeeping for both nodes.
#[derive(Debug)]
pub struct Stance {
    keys: [PublicKey; 2],
    meters: [LoadMeter; 2],
    asked: [Vec<Asked>; 2],
}

/// The sender index, `mac1` and `mac1`'s validity for `receiver` of a
/// handshake message (an initiation or a response of the right length:
/// what core takes to its `mac1` check), or `None`.
fn handshake(receiver: &PublicKey, datagram: &[u8]) -> Option<(u32, [u8; 16], bool)> {
    fn parts(p: &impl HandshakeMacs, receiver: &PublicKey) -> (u32, [u8; 16], bool) {
        (p.sender_index(), *p.mac1(), mac1_is_valid(receiver, p))
    }
    match MessageType::of(datagram) {
        Ok(MessageType::Initiation) => InitiationPacket::new_checked(datagram)
            .ok()
            .map(|p| parts(&p, receiver)),
        Ok(MessageType::Response) => ResponsePacket::new_checked(datagram)
            .ok()
            .map(|p| parts(&p, receiver)),
        _ => None,
    }
}

impl Stance {
    /// Fresh bookkeeping for nodes with public keys `keys`.
    pub fn new(keys: [PublicKey; 2]) -> Stance {
        Stance {
            keys,
            meters: Default::default(),
            asked: Default::default(),
        }
    }

    /// Node `node` booted: its load meter starts empty.
    pub fn boot(&mut self, node: usize) {
        self.meters[node] = LoadMeter::default();
    }

    /// `datagram` arrived at node `node`'s link socket at `now` (core's
    /// clock, as the node is told), from the attacker if `from_attacker`.
    pub fn arrived(&mut self, node: usize, now: Instant, from_attacker: bool, datagram: &[u8]) {
        let Some((sender_index, mac1, mac1_valid)) = handshake(&self.keys[node], datagram) else {
            return;
        };
        let meter = &mut self.meters[node];
        if mac1_valid {
            meter.note(now);
        }
        if from_attacker {
            self.asked[node].push(Asked {
                sender_index,
                mac1,
                len: datagram.len(),
                mac1_valid,
                under_load: meter.under_load(now),
                recent: meter.recent.len(),
            });
        }
    }

    /// Whether the stance allows the attacker to receive `datagram` from
    /// node `node` (`None`: from a host that is no node); if not, why not.
    pub fn judge(&self, node: Option<usize>, datagram: &[u8]) -> Result<(), String> {
        const LEN: usize = CookieReplyPacket::<&[u8]>::LEN;
        let Some(node) = node else {
            return Err("not from a node".into());
        };
        let packet = match datagram.get(..LEN) {
            Some(head) if MessageType::of(head) == Ok(MessageType::CookieReply) => {
                CookieReplyPacket::new_checked(head).map_err(|e| format!("{e:?}"))?
            }
            _ => return Err("no cookie reply".into()),
        };
        let key = &self.keys[node];
        let mut verdict = Err("a cookie reply to no handshake message the attacker sent".into());
        // The same message may have arrived more than once (replays):
        // any copy that earned the reply justifies it.
        for a in self.asked[node]
            .iter()
            .filter(|a| cookie_reply_answers(key, &packet, a.sender_index, &a.mac1))
        {
            verdict = Self::allowed(a, datagram.len());
            if verdict.is_ok() {
                break;
            }
        }
        verdict
    }

    /// Whether a reply of `len` bytes that answers `a` is allowed.
    fn allowed(a: &Asked, len: usize) -> Result<(), String> {
        const LEN: usize = CookieReplyPacket::<&[u8]>::LEN;
        if !a.mac1_valid {
            return Err(format!(
                "a cookie reply to a {}-byte message with an invalid mac1",
                a.len
            ));
        }
        if len >= a.len {
            return Err(format!(
                "a {len}-byte cookie reply to a {}-byte message: not smaller",
                a.len
            ));
        }
        if len != LEN {
            return Err(format!(
                "a {len}-byte cookie reply, not the {LEN} bytes of one"
            ));
        }
        if !a.under_load {
            return Err(format!(
                "a cookie reply while not under load ({} handshake messages with a valid mac1 \
                 in the second before, the load threshold {DEFAULT_LOAD_THRESHOLD})",
                a.recent
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rand_chacha::{ChaCha20Rng, ChaCha8Rng};
    use rand_core::{RngCore, SeedableRng};
    use sdt_core::key::PrivateKey;
    use sdt_core::link::{DropReason, Link, PeerConfig, MIN_TRANSMIT_BUFFER};

    use super::*;

    type L = Link<ChaCha20Rng, 1>;

    fn key(n: u64) -> PrivateKey {
        PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(n))
    }

    fn at(ms: u64) -> Instant {
        Instant::from_millis(1_000 + ms)
    }

    const ATTACKER: &str = "192.0.2.66:6666";

    /// A node (`key(1)`, taking handshakes from nobody) and a real
    /// initiation to it from a key it does not know.
    fn node_and_initiation() -> (L, Vec<u8>) {
        let node = L::new(key(1), ChaCha20Rng::seed_from_u64(11), at(0), 0);
        let mut stranger = L::new(key(2), ChaCha20Rng::seed_from_u64(12), at(0), 0);
        let mut peer = PeerConfig::new(key(1).public_key());
        peer.endpoint = Some("192.0.2.1:51820".parse().unwrap());
        let id = stranger.add_peer(peer, at(0)).unwrap();
        stranger.connect(id, at(0));
        let mut buf = vec![0u8; MIN_TRANSMIT_BUFFER];
        let t = stranger.poll_transmit(at(0), &mut buf).unwrap().unwrap();
        (node, buf[..t.len].to_vec())
    }

    /// `message` into `node` at `now`: the cookie reply it sends for it,
    /// if it asks for one.
    fn answer(node: &mut L, now: Instant, message: &[u8]) -> Option<Vec<u8>> {
        let from: SocketAddr = ATTACKER.parse().unwrap();
        let r = node.handle_datagram(now, from, &mut message.to_vec());
        if r != Err(DropReason::CookieRequired) {
            return None;
        }
        let mut buf = vec![0u8; MIN_TRANSMIT_BUFFER];
        let t = node.poll_transmit(now, &mut buf).unwrap().unwrap();
        assert_eq!(t.to, from);
        Some(buf[..t.len].to_vec())
    }

    fn stance() -> Stance {
        Stance::new([key(1).public_key(), key(3).public_key()])
    }

    /// A loaded node's real cookie reply to a message with a valid mac1
    /// is allowed; the same reply without the load, or tied to a message
    /// whose mac1 was not valid, or from the other node, or to nothing
    /// the attacker sent, is not; nor is anything that is no cookie reply.
    #[test]
    fn the_stance_allows_only_a_loaded_nodes_cookie_reply() {
        let (mut node, init) = node_and_initiation();
        node.set_load_threshold(0);
        let reply = answer(&mut node, at(0), &init).expect("a cookie reply");
        assert_eq!(reply.len(), CookieReplyPacket::<&[u8]>::LEN);

        let empty = stance();
        let e = empty.judge(Some(0), &reply).unwrap_err();
        assert!(e.contains("no handshake message the attacker sent"), "{e}");

        let mut s = stance();
        s.arrived(0, at(0), true, &init);
        let e = s.judge(Some(0), &reply).unwrap_err();
        assert!(
            e.contains("while not under load (1 handshake messages"),
            "{e}"
        );
        for _ in 0..DEFAULT_LOAD_THRESHOLD {
            s.arrived(0, at(1), true, &init);
        }
        // Any copy that earned the reply justifies it.
        assert_eq!(s.judge(Some(0), &reply), Ok(()));
        let e = s.judge(Some(1), &reply).unwrap_err();
        assert!(e.contains("no handshake message the attacker sent"), "{e}");
        assert!(s.judge(None, &reply).is_err());
        assert!(s
            .judge(Some(0), &init)
            .unwrap_err()
            .contains("no cookie reply"));

        // The same message, recorded as having an invalid mac1.
        let mut bad = stance();
        bad.arrived(0, at(0), true, &init);
        for a in &mut bad.asked[0] {
            a.mac1_valid = false;
            a.under_load = true;
        }
        let e = bad.judge(Some(0), &reply).unwrap_err();
        assert!(e.contains("with an invalid mac1"), "{e}");
    }

    /// Messages whose mac1 is not valid for the node do not load it, and
    /// messages the attacker did not send are not recorded.
    #[test]
    fn only_valid_mac1_loads_and_only_the_attackers_messages_count() {
        let (_, init) = node_and_initiation();
        let mut s = stance();
        for _ in 0..2 * DEFAULT_LOAD_THRESHOLD {
            s.arrived(1, at(0), true, &init); // mac1 is for node 0
        }
        assert!(!s.meters[1].under_load(at(0)));
        assert!(s.asked[1].iter().all(|a| !a.mac1_valid));
        for _ in 0..2 * DEFAULT_LOAD_THRESHOLD {
            s.arrived(0, at(0), false, &init);
        }
        assert!(s.meters[0].under_load(at(0)));
        assert!(s.asked[0].is_empty());
    }

    /// More than the threshold within a second loads the node for one
    /// second after the last message in excess.
    #[test]
    fn the_load_model_follows_the_stance() {
        let mut m = LoadMeter::default();
        for i in 0..DEFAULT_LOAD_THRESHOLD {
            m.note(at(u64::from(i) * 9)); // 100 messages within 0.9 s
        }
        assert!(!m.under_load(at(900)));
        m.note(at(999));
        assert!(m.under_load(at(999)));
        assert!(m.under_load(at(1998)));
        assert!(!m.under_load(at(1999)));
        // The window slides: one more at 1.5 s sees only the 46 in
        // (0.5 s, 1.5 s], itself included.
        m.note(at(1500));
        assert_eq!(m.recent.len(), 46);
        assert!(!m.under_load(at(2000)));
    }

    /// Core's own meter never asks for a cookie where the model says the
    /// node is not under load: random bursts of one stranger's initiation
    /// around the threshold, into a real node and into the model.
    #[test]
    fn core_asks_for_cookies_only_where_the_model_sees_load() {
        let (mut node, init) = node_and_initiation();
        let mut s = stance();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (mut t, mut cookies, mut passed) = (0u64, 0, 0);
        // Bursts of 50 to 250 messages, 0 to 12 ms apart, 0 to 3 s between
        // bursts: some cross the threshold, some stay below it.
        for _ in 0..6 {
            let spacing = rng.next_u64() % 13;
            for _ in 0..50 + rng.next_u64() % 200 {
                t += rng.next_u64() % (spacing + 1);
                s.arrived(0, at(t), true, &init);
                let modelled = s.asked[0].last().unwrap().under_load;
                match answer(&mut node, at(t), &init) {
                    Some(reply) => {
                        assert!(
                            modelled,
                            "core asked for a cookie at {t} ms, the model saw no load"
                        );
                        assert_eq!(s.judge(Some(0), &reply), Ok(()));
                        cookies += 1;
                    }
                    None => passed += 1,
                }
            }
            t += rng.next_u64() % 3000;
        }
        assert!(
            cookies > 100 && passed > 100,
            "{cookies} cookies, {passed} passed"
        );
    }
}
