//! Set-ups shared by the fuzz targets and the seed generator
//! (`examples/seeds.rs`).
//!
//! Everything here is deterministic: fixed keys, RNGs seeded with constants
//! and a fixed clock. The same calls therefore build the same links, with
//! the same session keys and indices, in the fuzz targets and in the seed
//! generator, so the seeds' handshake messages and data frames are real
//! ones for the states the targets build.
//!
//! The input format of `link_datagram`, which the seeds follow, is
//! [`Input`]: a scenario byte, a flags byte, then length-prefixed chunks.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sdt_core::allow::{AllowList, AllowRule};
use sdt_core::crypto;
use sdt_core::key::{PrivateKey, PublicKey};
use sdt_core::link::{Link, PeerConfig, PeerId, MIN_TRANSMIT_BUFFER};
use sdt_core::node::{
    Action, Node, Output, Peers, Role, ServiceConfig, ServiceId, SocketId, HEADROOM, TAILROOM,
};
use sdt_core::wire::{DataPacket, InitiationPacket, ProbePacket, ResponsePacket};
use sdt_core::Instant;

/// The links of the targets: room for two peers.
pub type FuzzLink = Link<ChaCha20Rng, 2>;
/// The nodes of the targets: two peers, eight services, sixteen channels.
pub type FuzzNode = Node<ChaCha20Rng, 2, 8, 16>;

/// Where A (or X) sends from.
pub const A_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 51820));
/// Where B (or Y) sends from.
pub const B_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 51820));
/// The clock when every set-up starts.
pub const START: Instant = Instant::from_secs(1);
/// Wall-clock time at [`START`], for handshake timestamps.
pub const START_UNIX: u64 = 1_700_000_000_000_000_000;

/// Key bytes of A, B (the link pair), X and Y (the node pair).
pub const KEY_A: u8 = 1;
/// See [`KEY_A`].
pub const KEY_B: u8 = 2;
/// See [`KEY_A`].
pub const KEY_X: u8 = 3;
/// See [`KEY_A`].
pub const KEY_Y: u8 = 4;

/// The private key with every byte `n`.
pub fn secret(n: u8) -> PrivateKey {
    PrivateKey::from_bytes([n; 32])
}

/// A link with key `key` and an RNG seeded from it.
pub fn link(key: u8) -> FuzzLink {
    FuzzLink::new(
        secret(key),
        ChaCha20Rng::seed_from_u64(u64::from(key) * 1000),
        START,
        START_UNIX,
    )
}

/// A node with key `key` and an RNG seeded from it.
pub fn node(key: u8) -> FuzzNode {
    FuzzNode::new(
        secret(key),
        ChaCha20Rng::seed_from_u64(u64::from(key) * 1000),
        START,
        START_UNIX,
    )
}

/// The `mac1` key of messages sent to the holder of `public`:
/// `BLAKE2s("sdt v1 mac1" || public)`.
pub fn mac1_key(public: &PublicKey) -> [u8; 32] {
    crypto::hash(&[b"sdt v1 mac1", public.as_bytes()])
}

/// Rewrites the `mac1` of an initiation or response in `datagram` (of the
/// right length) for the receiver `to`, so that it gets past the `mac1`
/// check into Noise. Anything else is left alone.
pub fn fix_mac1(datagram: &mut [u8], to: &PublicKey) {
    let key = mac1_key(to);
    match datagram.first() {
        Some(1) => {
            if let Ok(mut p) = InitiationPacket::new_checked(&mut *datagram) {
                let mac = crypto::mac(&key, &[p.mac1_input()]);
                p.set_mac1(&mac);
            }
        }
        Some(2) => {
            if let Ok(mut p) = ResponsePacket::new_checked(&mut *datagram) {
                let mac = crypto::mac(&key, &[p.mac1_input()]);
                p.set_mac1(&mac);
            }
        }
        _ => {}
    }
}

/// Every datagram `link` wants to send now, in order.
pub fn drain_link(link: &mut FuzzLink, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; MIN_TRANSMIT_BUFFER];
    // Bounded: a link that never stops transmitting is a bug too.
    for _ in 0..64 {
        match link.poll_transmit(now, &mut buf) {
            Ok(Some(t)) => {
                assert!(t.len <= buf.len(), "transmit longer than the buffer");
                out.push(buf[..t.len].to_vec());
            }
            Ok(None) => return out,
            Err(e) => panic!("poll_transmit with a big enough buffer: {e}"),
        }
    }
    panic!("poll_transmit never returns None");
}

/// Runs `link`'s outputs as a runtime would: transmits, then timers due at
/// `now`, then events. Returns the datagrams sent.
pub fn service_link(link: &mut FuzzLink, now: Instant) -> Vec<Vec<u8>> {
    let mut sent = drain_link(link, now);
    if link.poll_timeout().is_some_and(|t| t <= now) {
        link.handle_timeout(now);
        sent.extend(drain_link(link, now));
    }
    for _ in 0..64 {
        if link.poll_event().is_none() {
            return sent;
        }
    }
    panic!("poll_event never returns None");
}

/// How far the harness has taken the handshake between A and B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Nothing happened yet.
    Fresh,
    /// A sent its initiation (A waits for the response).
    Initiated,
    /// B read it and answered (B holds the new session, unconfirmed).
    Answered,
    /// A read the response and confirmed with a keepalive, which B read:
    /// both sides hold a current session.
    Established,
}

/// Two links: A knows B's endpoint and key, B only A's key (it learns A's
/// endpoint from the handshake).
pub struct LinkPair {
    /// The initiator.
    pub a: FuzzLink,
    /// The responder.
    pub b: FuzzLink,
    /// B inside A.
    pub a_peer: PeerId,
    /// A inside B.
    pub b_peer: PeerId,
    /// The clock.
    pub now: Instant,
    /// The handshake datagrams so far: initiation, response, keepalive.
    pub handshake: Vec<Vec<u8>>,
}

impl LinkPair {
    /// Two links taken to `stage`, deterministically. With `b_knows_a`, B
    /// also knows A's endpoint (so B can initiate too).
    pub fn new(stage: Stage, b_knows_a: bool) -> LinkPair {
        let mut a = link(KEY_A);
        let mut b = link(KEY_B);
        let mut ca = PeerConfig::new(b.public_key().to_owned());
        ca.endpoint = Some(B_ADDR);
        let mut cb = PeerConfig::new(a.public_key().to_owned());
        if b_knows_a {
            cb.endpoint = Some(A_ADDR);
        }
        let a_peer = a.add_peer(ca, START).expect("peer B");
        let b_peer = b.add_peer(cb, START).expect("peer A");
        let mut pair = LinkPair {
            a,
            b,
            a_peer,
            b_peer,
            now: START,
            handshake: Vec::new(),
        };
        if stage == Stage::Fresh {
            return pair;
        }
        let now = pair.now;
        pair.a.connect(a_peer, now);
        let initiation = one(drain_link(&mut pair.a, now), 1);
        pair.handshake.push(initiation.clone());
        if stage == Stage::Initiated {
            return pair;
        }
        let mut d = initiation;
        pair.b
            .handle_datagram(now, A_ADDR, &mut d)
            .expect("initiation");
        let response = one(service_link(&mut pair.b, now), 2);
        pair.handshake.push(response.clone());
        if stage == Stage::Answered {
            return pair;
        }
        let mut d = response;
        pair.a
            .handle_datagram(now, B_ADDR, &mut d)
            .expect("response");
        let keepalive = one(service_link(&mut pair.a, now), 4);
        pair.handshake.push(keepalive.clone());
        let mut d = keepalive;
        pair.b
            .handle_datagram(now, A_ADDR, &mut d)
            .expect("keepalive");
        assert!(service_link(&mut pair.b, now).is_empty());
        assert!(pair.a.is_up(a_peer, now) && pair.b.is_up(b_peer, now));
        pair
    }
}

/// The one datagram of `sent`, of message type `ty`.
fn one(mut sent: Vec<Vec<u8>>, ty: u8) -> Vec<u8> {
    assert_eq!(sent.len(), 1, "expected one datagram");
    let d = sent.pop().unwrap_or_default();
    assert_eq!(d.first(), Some(&ty), "expected message type {ty}");
    d
}

/// Whether `datagram`, a data frame (type 4) someone accepted, is one that
/// `sender` could have sealed: same receiver index, counter, ciphertext and
/// tag as `sender` produces for the same plaintext at that counter.
///
/// The plaintext is recovered without the receiver's key: ChaCha20 is a
/// stream cipher, so sealing zeros at that counter yields the keystream.
/// A frame that was accepted but fails this test was forged, which a
/// fuzzer cannot do unless authentication is broken.
pub fn sealed_by(sender: &mut FuzzLink, peer: PeerId, now: Instant, datagram: &[u8]) -> bool {
    let Ok(packet) = DataPacket::new_checked(datagram) else {
        return false;
    };
    let counter = packet.counter();
    let n = datagram.len() - DataPacket::<&[u8]>::OVERHEAD;
    let h = DataPacket::<&[u8]>::HEADER_LEN;
    let mut frame = vec![0u8; datagram.len()];
    sender.force_send_counter(peer, counter);
    if sender.seal(now, peer, &mut frame, n).is_err() {
        return false;
    }
    let mut plaintext = frame[h..h + n].to_vec();
    for (p, c) in plaintext.iter_mut().zip(&datagram[h..h + n]) {
        *p ^= c;
    }
    let mut frame = vec![0u8; datagram.len()];
    frame[h..h + n].copy_from_slice(&plaintext);
    sender.force_send_counter(peer, counter);
    if sender.seal(now, peer, &mut frame, n).is_err() {
        return false;
    }
    frame == datagram
}

/// Whether `datagram`, a liveness probe (type 5) someone accepted, is the
/// probe `sender` seals at its counter: a probe has no plaintext, so the
/// sender's own probe at that counter must match it byte for byte.
pub fn probe_sealed_by(sender: &mut FuzzLink, peer: PeerId, now: Instant, datagram: &[u8]) -> bool {
    let Ok(packet) = ProbePacket::new_checked(datagram) else {
        return false;
    };
    sender.force_send_counter(peer, packet.counter());
    let mut probe = [0u8; ProbePacket::<&[u8]>::LEN];
    sender.seal_probe(now, peer, &mut probe).is_ok() && probe[..] == *datagram
}

/// Service ids of the node pair's Y, one per role.
pub mod service {
    use sdt_core::node::ServiceId;

    /// Forward exit: frames from X's entry go to [`super::TARGET`].
    pub const FORWARD_EXIT: ServiceId = ServiceId::new(1);
    /// Forward entry, with channel 0 open for [`super::CLIENT`].
    pub const FORWARD_ENTRY: ServiceId = ServiceId::new(2);
    /// Router entry, with channel 0 open for [`super::TUN_CLIENT`] to
    /// [`super::TUN_DESTINATION`].
    pub const ROUTER_ENTRY: ServiceId = ServiceId::new(3);
    /// Router exit that allows every destination.
    pub const ROUTER_EXIT: ServiceId = ServiceId::new(4);
    /// Direct, its customer [`super::CLIENT`].
    pub const DIRECT: ServiceId = ServiceId::new(5);
    /// Push exit to [`super::TARGET`].
    pub const PUSH_EXIT: ServiceId = ServiceId::new(6);
    /// Push entry (frames to it are refused: wrong direction).
    pub const PUSH_ENTRY: ServiceId = ServiceId::new(7);
}

/// Y's customer-side addresses.
pub const TARGET: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 53));
/// See [`TARGET`].
pub const CLIENT: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 40000));
/// See [`TARGET`].
pub const LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 5353));
/// See [`TARGET`].
pub const TUN_CLIENT: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 40000));
/// See [`TARGET`].
pub const TUN_DESTINATION: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 9), 53));

/// An allow-list of everything, IPv4 and IPv6.
pub fn allow_all() -> AllowList<{ sdt_core::node::MAX_ALLOW_RULES }> {
    let mut allow = AllowList::default();
    for rule in ["0.0.0.0/0", "[::]/0", "icmp://0.0.0.0/0", "icmp://[::]/0"] {
        let rule: AllowRule = rule.parse().expect("allow rule");
        allow.push(rule).expect("room for four rules");
    }
    allow
}

/// A service with room for 4 channels, so that a few frames fill its
/// table (the nodes' table has 16).
pub fn small_service(id: ServiceId, peers: Peers, role: Role) -> ServiceConfig {
    let mut config = ServiceConfig::new(id, peers, role);
    config.limits.max_channels = 4;
    config
}

/// A bare link X (the peer) and a node Y with a service of every role, X
/// initiating; Y's entry services each have channel 0 open.
pub struct NodePair {
    /// The peer, a bare link so it can seal any plaintext.
    pub x: FuzzLink,
    /// The node under test.
    pub y: FuzzNode,
    /// Y inside X.
    pub x_peer: PeerId,
    /// X inside Y.
    pub y_peer: PeerId,
    /// The clock.
    pub now: Instant,
}

impl NodePair {
    /// The pair with its link up and the channels open.
    pub fn new() -> NodePair {
        let mut x = link(KEY_X);
        let mut y = node(KEY_Y);
        let mut cx = PeerConfig::new(y.link().public_key().to_owned());
        cx.endpoint = Some(B_ADDR);
        let cy = PeerConfig::new(x.public_key().to_owned());
        let x_peer = x.add_peer(cx, START).expect("peer Y");
        let y_peer = y.add_peer(cy, START).expect("peer X");
        let one = Peers::One(y_peer);
        let roles = [
            (service::FORWARD_EXIT, Role::ForwardExit { target: TARGET }),
            (
                service::FORWARD_ENTRY,
                Role::ForwardEntry { listen: LISTEN },
            ),
            (service::ROUTER_ENTRY, Role::RouterEntry),
            (
                service::ROUTER_EXIT,
                Role::RouterExit { allow: allow_all() },
            ),
            (
                service::DIRECT,
                Role::Direct {
                    listen: LISTEN,
                    customer: CLIENT,
                },
            ),
            (service::PUSH_EXIT, Role::PushExit { target: TARGET }),
            (service::PUSH_ENTRY, Role::PushEntry { listen: LISTEN }),
        ];
        for (id, role) in roles {
            y.add_service(small_service(id, one, role))
                .expect("service");
        }
        let mut pair = NodePair {
            x,
            y,
            x_peer,
            y_peer,
            now: START,
        };
        pair.drain_y();
        let now = pair.now;
        pair.x.connect(x_peer, now);
        let mut initiation = one_of(drain_link(&mut pair.x, now));
        let out = pair.y_link_datagram(&mut initiation);
        assert_eq!(out, Ok(Output::Consumed), "Y takes the initiation");
        let mut response = one_of(pair.drain_y());
        pair.x
            .handle_datagram(now, B_ADDR, &mut response)
            .expect("X takes the response");
        let mut keepalive = one_of(service_link(&mut pair.x, now));
        let out = pair.y_link_datagram(&mut keepalive);
        assert_eq!(out, Ok(Output::Consumed), "Y takes the keepalive");
        pair.drain_y();
        // Channel 0 of the forward entry and of the router entry.
        let mut buf = vec![0u8; HEADROOM + 4 + TAILROOM];
        let payload = HEADROOM..HEADROOM + 4;
        let out = pair.y.handle_customer_datagram(
            now,
            SocketId::Service(service::FORWARD_ENTRY),
            CLIENT,
            &mut buf,
            payload,
        );
        assert!(matches!(out, Ok(Output::Link { .. })), "{out:?}");
        let packet = udp_packet(TUN_CLIENT, TUN_DESTINATION, b"ping");
        let mut buf = vec![0u8; HEADROOM + packet.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(&packet);
        let out = pair.y.handle_tun_packet(
            now,
            service::ROUTER_ENTRY,
            &mut buf,
            HEADROOM..HEADROOM + packet.len(),
        );
        assert!(matches!(out, Ok(Output::Link { .. })), "{out:?}");
        pair.drain_y();
        pair
    }

    /// Hands `datagram` to Y as the runtime would: from X's address, with
    /// [`HEADROOM`] before it and [`TAILROOM`] after; checks the output
    /// names bytes inside the buffer, and carries out Y's actions.
    pub fn y_link_datagram(
        &mut self,
        datagram: &mut [u8],
    ) -> Result<Output, sdt_core::node::Dropped> {
        let mut buf = vec![0u8; HEADROOM + datagram.len() + TAILROOM];
        let range = HEADROOM..HEADROOM + datagram.len();
        buf[range.clone()].copy_from_slice(datagram);
        let out = self
            .y
            .handle_link_datagram(self.now, A_ADDR, &mut buf, range.clone());
        if let Ok(o) = &out {
            check_output(o, buf.len());
        }
        datagram.copy_from_slice(&buf[range]);
        self.drain_actions();
        out
    }

    /// Carries out Y's pending socket requests.
    pub fn drain_actions(&mut self) {
        for _ in 0..1024 {
            match self.y.poll_action() {
                Some(
                    Action::Bind { .. }
                    | Action::Connect { .. }
                    | Action::ConnectEcho { .. }
                    | Action::Close { .. },
                ) => {}
                None => return,
            }
        }
        panic!("poll_action never returns None");
    }

    /// Runs Y's outputs: actions, transmits, timers due, events. Returns
    /// the datagrams sent.
    pub fn drain_y(&mut self) -> Vec<Vec<u8>> {
        let now = self.now;
        self.drain_actions();
        let mut sent = Vec::new();
        let mut buf = [0u8; MIN_TRANSMIT_BUFFER];
        for round in 0..2 {
            for _ in 0..64 {
                match self.y.poll_transmit(now, &mut buf) {
                    Ok(Some(t)) => sent.push(buf[..t.len].to_vec()),
                    Ok(None) => break,
                    Err(e) => panic!("poll_transmit: {e}"),
                }
            }
            if round == 0 && self.y.poll_timeout().is_some_and(|t| t <= now) {
                self.y.handle_timeout(now);
                self.drain_actions();
            }
        }
        for _ in 0..64 {
            if self.y.poll_event().is_none() {
                return sent;
            }
        }
        panic!("poll_event never returns None");
    }
}

impl Default for NodePair {
    fn default() -> Self {
        NodePair::new()
    }
}

fn one_of(mut sent: Vec<Vec<u8>>) -> Vec<u8> {
    assert_eq!(sent.len(), 1, "expected one datagram");
    sent.pop().unwrap_or_default()
}

/// Panics unless `output` names a range within a buffer of `len` bytes.
pub fn check_output(output: &Output, len: usize) {
    let range = match output {
        Output::Link { range, .. } | Output::Customer { range, .. } | Output::Tun { range, .. } => {
            range
        }
        Output::Consumed | Output::Queued => return,
    };
    assert!(
        range.start <= range.end && range.end <= len,
        "output {output:?} outside a buffer of {len} bytes"
    );
}

/// An IPv4 or IPv6 UDP packet from `src` to `dst`, forged by core.
pub fn udp_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let head = sdt_core::ip::udp_header_len(&src);
    let mut buf = vec![0u8; head + payload.len()];
    buf[head..].copy_from_slice(payload);
    let range = sdt_core::ip::forge_udp(&mut buf, head..head + payload.len(), src, dst)
        .expect("forge a seed packet");
    buf[range].to_vec()
}

/// A fuzz input cut into a scenario byte, a flags byte and chunks.
///
/// Layout: `scenario, flags, (len_lo, len_hi, bytes[len])*`. A chunk whose
/// length runs past the end takes what is left; at most [`Input::MAX_CHUNKS`].
pub struct Input<'a> {
    /// Picks the set-up.
    pub scenario: u8,
    /// Bits the target gives a meaning to.
    pub flags: u8,
    /// The chunks, in order.
    pub chunks: Vec<&'a [u8]>,
}

impl<'a> Input<'a> {
    /// Most chunks taken from one input.
    pub const MAX_CHUNKS: usize = 8;

    /// Cuts `data`; `None` if it is shorter than the two header bytes.
    pub fn parse(data: &'a [u8]) -> Option<Input<'a>> {
        let (&scenario, rest) = data.split_first()?;
        let (&flags, mut rest) = rest.split_first()?;
        let mut chunks = Vec::new();
        while rest.len() >= 2 && chunks.len() < Self::MAX_CHUNKS {
            let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
            let body = &rest[2..];
            let (chunk, tail) = body.split_at(len.min(body.len()));
            chunks.push(chunk);
            rest = tail;
        }
        Some(Input {
            scenario,
            flags,
            chunks,
        })
    }

    /// The bytes of an input with these parts.
    pub fn encode(scenario: u8, flags: u8, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![scenario, flags];
        for c in chunks {
            let len = u16::try_from(c.len()).expect("chunk under 64 KiB");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(c);
        }
        out
    }
}
