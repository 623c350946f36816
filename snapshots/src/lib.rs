//! Test helpers for the snapshot tests in `tests/`: no code of the tunnel
//! lives here.
//!
//! [`Exchange`] drives two real [`Link`]s against each other in memory, from
//! fixed private keys, fixed RNG seeds and a fixed clock, so every byte they
//! produce is the same on every run. [`describe_frame`] and
//! [`describe_plaintext`] turn the bytes into text for insta, one field per
//! line, in the style of `core/src/wire/golden.rs`.

use std::collections::VecDeque;
use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sdt_core::key::PrivateKey;
use sdt_core::link::{Link, PeerConfig, PeerId, Received, MIN_TRANSMIT_BUFFER};
use sdt_core::wire::{
    CookieReplyPacket, CookieReplyRepr, DataPacket, DataRepr, InitiationPacket, InitiationRepr,
    MessageType, ProbePacket, ProbeRepr, ResponsePacket, ResponseRepr, ServiceHeaderRepr,
};
use sdt_core::Instant;

/// The link type under test: ChaCha20 randomness, room for 4 peers.
pub type TestLink = Link<ChaCha20Rng, 4>;

/// Private key of node a, the initiator.
pub const A_SECRET: [u8; 32] = [
    0x08, 0x11, 0x1a, 0x23, 0x2c, 0x35, 0x3e, 0x47, 0x50, 0x59, 0x62, 0x6b, 0x74, 0x7d, 0x86, 0x8f,
    0x98, 0xa1, 0xaa, 0xb3, 0xbc, 0xc5, 0xce, 0xd7, 0xe0, 0xe9, 0xf2, 0xfb, 0x04, 0x0d, 0x16, 0x5f,
];
/// Private key of node b, the responder.
pub const B_SECRET: [u8; 32] = [
    0x70, 0x65, 0x5a, 0x4f, 0x44, 0x39, 0x2e, 0x23, 0x18, 0x0d, 0x02, 0xf7, 0xec, 0xe1, 0xd6, 0xcb,
    0xc0, 0xb5, 0xaa, 0x9f, 0x94, 0x89, 0x7e, 0x73, 0x68, 0x5d, 0x52, 0x47, 0x3c, 0x31, 0x26, 0x5b,
];
/// Seed of a's RNG (incarnation, ephemeral keys, indices, jitter).
pub const A_SEED: u64 = 0x5d7a;
/// Seed of b's RNG.
pub const B_SEED: u64 = 0x5d7b;
/// Where a is.
pub const A_ADDR: &str = "192.0.2.1:51820";
/// Where b is.
pub const B_ADDR: &str = "198.51.100.2:51821";
/// The monotonic time both links start at.
pub const START: Instant = Instant::from_secs(1);
/// The wall-clock time at [`START`]: 2023-11-14T22:13:20Z, in nanoseconds.
pub const START_UNIX: u64 = 1_700_000_000_000_000_000;
/// One-way latency of the in-memory network; the clock moves by this much
/// before each delivery.
pub const LATENCY: Duration = Duration::from_millis(10);
/// What a sends to b: a 1-byte service header (service 1, direct), then
/// the customer payload.
pub const A_PLAINTEXT: &[u8] = b"\x01hello sdt";
/// What b sends back to a.
pub const B_PLAINTEXT: &[u8] = b"\x01hello back";

/// One of the two nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The initiator.
    A,
    /// The responder.
    B,
}

impl Side {
    /// The other node.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// `a` or `b`.
    pub fn name(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }
}

/// A datagram one node put on the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Who sent it.
    pub sender: Side,
    /// When, as an offset from [`START`].
    pub sent_at: Duration,
    /// The datagram as sent.
    pub bytes: Vec<u8>,
    /// For a data frame with a payload: the plaintext as the receiver
    /// opened it.
    pub opened: Option<Vec<u8>>,
}

impl Frame {
    /// The message type in byte 0.
    pub fn kind(&self) -> MessageType {
        MessageType::of(&self.bytes).expect("the link sent a datagram of unknown type")
    }
}

struct Node {
    link: TestLink,
    /// The other node, as a peer of this one.
    peer: PeerId,
    addr: SocketAddr,
}

/// Two links on an in-memory network, and a log of everything they did.
pub struct Exchange {
    a: Node,
    b: Node,
    now: Instant,
    /// Every datagram sent, in order.
    pub frames: Vec<Frame>,
    /// Indices into `frames` of the datagrams not yet delivered.
    in_flight: VecDeque<usize>,
    log: Vec<String>,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("fixed address parses")
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange::new()
    }
}

impl Exchange {
    /// Both links at [`START`], each knowing the other as its only peer.
    /// a knows b's endpoint; b learns a's from its initiation.
    pub fn new() -> Exchange {
        let (ka, kb) = (
            PrivateKey::from_bytes(A_SECRET),
            PrivateKey::from_bytes(B_SECRET),
        );
        let (pa, pb) = (ka.public_key(), kb.public_key());
        let mut a = TestLink::new(ka, ChaCha20Rng::seed_from_u64(A_SEED), START, START_UNIX);
        let mut b = TestLink::new(kb, ChaCha20Rng::seed_from_u64(B_SEED), START, START_UNIX);
        let mut to_b = PeerConfig::new(pb);
        to_b.endpoint = Some(addr(B_ADDR));
        let a_peer = a.add_peer(to_b, START).expect("a accepts b");
        let b_peer = b.add_peer(PeerConfig::new(pa), START).expect("b accepts a");
        Exchange {
            a: Node {
                link: a,
                peer: a_peer,
                addr: addr(A_ADDR),
            },
            b: Node {
                link: b,
                peer: b_peer,
                addr: addr(B_ADDR),
            },
            now: START,
            frames: Vec::new(),
            in_flight: VecDeque::new(),
            log: Vec::new(),
        }
    }

    /// The scripted exchange: a connects, the handshake completes (the
    /// initiation, the response, the keepalive that confirms the session),
    /// then one data frame goes each way.
    pub fn run() -> Exchange {
        let mut x = Exchange::new();
        x.note("a", "connect(b)");
        x.a.link.connect(x.a.peer, x.now);
        x.pump();
        x.complete()
    }

    /// The scripted exchange under load: b asks every sender for a cookie
    /// (load threshold 0). a's initiation gets a cookie reply instead of a
    /// response; a takes the cookie, and its resent initiation, now with a
    /// `mac2` from it, is answered; then one data frame goes each way.
    pub fn run_under_load() -> Exchange {
        let mut x = Exchange::new();
        x.b.link.set_load_threshold(0);
        x.note("b", "set_load_threshold(0)");
        x.note("a", "connect(b)");
        x.a.link.connect(x.a.peer, x.now);
        x.pump();
        x.deliver_any(); // initiation at b: no mac2, a cookie reply
        x.deliver(); // cookie reply at a
        x.wait_for_timer(); // a resends its initiation, with mac2
        x.complete()
    }

    /// The scripted exchange, then a liveness probe: a sends b one more
    /// data frame and b, with nothing to send, stays silent; after
    /// `PROBE_AFTER` of that a probes, and b answers the probe with a
    /// keepalive.
    pub fn run_probed() -> Exchange {
        let mut x = Exchange::run();
        x.send_data(Side::A, A_PLAINTEXT);
        x.deliver(); // the frame at b, which owes no answer yet
        for _ in 0..8 {
            if !x.in_flight.is_empty() {
                break;
            }
            x.wait_for_timer();
        }
        x.deliver(); // a's probe at b; b answers with a keepalive
        x.deliver(); // the keepalive at a
        assert!(x.in_flight.is_empty(), "a datagram was left undelivered");
        x
    }

    /// The rest of both scripted exchanges, from a's initiation in flight
    /// to b: b answers, a confirms with a keepalive, one data frame goes
    /// each way, and both links say whether they are up.
    fn complete(mut self) -> Exchange {
        self.deliver(); // initiation at b; b answers
        self.deliver(); // response at a; a confirms with a keepalive
        self.deliver(); // keepalive at b
        self.send_data(Side::A, A_PLAINTEXT);
        self.deliver();
        self.send_data(Side::B, B_PLAINTEXT);
        self.deliver();
        assert!(self.in_flight.is_empty(), "a datagram was left undelivered");
        for side in [Side::A, Side::B] {
            let up = self.node(side).link.is_up(self.node(side).peer, self.now);
            self.note(
                side.name(),
                &format!("is_up({}) = {up}", side.other().name()),
            );
        }
        self
    }

    /// Moves the clock to the earlier link's next timer and fires it.
    fn wait_for_timer(&mut self) {
        let next = [self.a.link.poll_timeout(), self.b.link.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .expect("a timer is pending");
        self.now = self.now.max(next);
        let now = self.now;
        for side in [Side::A, Side::B] {
            let node = self.node_mut(side);
            if node.link.poll_timeout().is_some_and(|t| t <= now) {
                node.link.handle_timeout(now);
            }
        }
        self.note("", "timers");
        self.pump();
    }

    fn node(&self, side: Side) -> &Node {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    fn node_mut(&mut self, side: Side) -> &mut Node {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    fn elapsed(&self) -> Duration {
        self.now.saturating_since(START)
    }

    fn note(&mut self, who: &str, what: &str) {
        let at = format!("+{}ms", self.elapsed().as_millis());
        let line = format!("{at:<6}  {who:<6}  {what}");
        self.log.push(line);
    }

    /// Puts a datagram `side` sent on the network, and logs it.
    fn sent(&mut self, side: Side, to: SocketAddr, bytes: Vec<u8>) {
        assert_eq!(
            to,
            self.node(side.other()).addr,
            "sent to the wrong address"
        );
        let frame = Frame {
            sender: side,
            sent_at: self.elapsed(),
            bytes,
            opened: None,
        };
        let who = format!("{} -> {}", side.name(), side.other().name());
        self.note(
            &who,
            &format!("{}, {} bytes", label(&frame.bytes), frame.bytes.len()),
        );
        self.in_flight.push_back(self.frames.len());
        self.frames.push(frame);
    }

    /// Takes every datagram and event both links want out now.
    fn pump(&mut self) {
        for side in [Side::A, Side::B] {
            let mut buf = [0u8; MIN_TRANSMIT_BUFFER];
            let now = self.now;
            while let Some(t) = self
                .node_mut(side)
                .link
                .poll_transmit(now, &mut buf)
                .expect("the buffer is large enough")
            {
                self.sent(side, t.to, buf[..t.len].to_vec());
            }
            while let Some(event) = self.node_mut(side).link.poll_event() {
                self.note(side.name(), &format!("event {event:?}"));
            }
        }
    }

    /// Moves the clock by [`LATENCY`], hands the oldest datagram in flight
    /// to its receiver, logs what came of it, then pumps both links. Every
    /// datagram of a scripted exchange must be taken.
    fn deliver(&mut self) {
        self.deliver_checked(true);
    }

    /// [`deliver`](Self::deliver), where the receiver may drop the
    /// datagram (logged with its reason).
    fn deliver_any(&mut self) {
        self.deliver_checked(false);
    }

    fn deliver_checked(&mut self, must_take: bool) {
        let i = self.in_flight.pop_front().expect("a datagram in flight");
        self.now += LATENCY;
        let sender = self.frames[i].sender;
        let from = self.node(sender).addr;
        let mut bytes = self.frames[i].bytes.clone();
        let now = self.now;
        let result = self
            .node_mut(sender.other())
            .link
            .handle_datagram(now, from, &mut bytes);
        let outcome = match result {
            Ok(Received::Data { peer, payload }) => {
                let plaintext = bytes[payload].to_vec();
                let text = format!(
                    "Data from {peer:?}, {} bytes: {}",
                    plaintext.len(),
                    hex(&plaintext)
                );
                self.frames[i].opened = Some(plaintext);
                text
            }
            Ok(other) => format!("{other:?}"),
            Err(reason) if must_take => {
                panic!("{reason:?}: a datagram of the scripted exchange was dropped")
            }
            Err(reason) => format!("dropped: {reason:?}"),
        };
        let frame = &self.frames[i];
        let who = format!("{} <- {}", sender.other().name(), sender.name());
        let what = format!(
            "{}, {} bytes: {outcome}",
            label(&frame.bytes),
            frame.bytes.len()
        );
        self.note(&who, &what);
        self.pump();
    }

    /// Seals `plaintext` at `side` into a data frame for the other node
    /// and puts it on the network.
    fn send_data(&mut self, side: Side, plaintext: &[u8]) {
        let header = DataPacket::<&[u8]>::HEADER_LEN;
        let mut buf = vec![0u8; DataPacket::<&[u8]>::OVERHEAD + plaintext.len()];
        buf[header..header + plaintext.len()].copy_from_slice(plaintext);
        let now = self.now;
        let node = self.node_mut(side);
        let t = node
            .link
            .seal(now, node.peer, &mut buf, plaintext.len())
            .expect("the session is up");
        buf.truncate(t.len);
        self.note(
            side.name(),
            &format!("seal {} bytes: {}", plaintext.len(), hex(plaintext)),
        );
        self.sent(side, t.to, buf);
        self.pump();
    }

    /// The first frame of type `kind` that `sender` sent.
    pub fn frame(&self, sender: Side, kind: MessageType) -> &Frame {
        self.frames
            .iter()
            .find(|f| f.sender == sender && f.kind() == kind)
            .unwrap_or_else(|| panic!("{} sent no {}", sender.name(), name(kind)))
    }

    /// The first data frame with the plaintext length `len` that `sender`
    /// sent (0: a keepalive).
    pub fn data_frame(&self, sender: Side, plaintext_len: usize) -> &Frame {
        self.frames
            .iter()
            .find(|f| {
                f.sender == sender
                    && f.kind() == MessageType::Data
                    && f.bytes.len() == DataPacket::<&[u8]>::OVERHEAD + plaintext_len
            })
            .unwrap_or_else(|| panic!("{} sent no data frame of {plaintext_len}", sender.name()))
    }

    /// The log of the exchange, one line per datagram sent or received,
    /// event seen and command given.
    pub fn transcript(&self) -> String {
        let mut text = String::new();
        for line in &self.log {
            writeln!(text, "{}", line.trim_end()).unwrap();
        }
        text
    }
}

/// The name of a message type, as the snapshots print it.
pub fn name(kind: MessageType) -> &'static str {
    match kind {
        MessageType::Initiation => "initiation",
        MessageType::Response => "response",
        MessageType::CookieReply => "cookie reply",
        MessageType::Data => "data",
        MessageType::Probe => "probe",
    }
}

/// The name of the datagram `bytes`: its message type's, and for an empty
/// data frame `data (keepalive)`.
pub fn label(bytes: &[u8]) -> &'static str {
    match MessageType::of(bytes) {
        Ok(MessageType::Data) if bytes.len() == DataPacket::<&[u8]>::OVERHEAD => "data (keepalive)",
        Ok(kind) => name(kind),
        Err(_) => "unknown",
    }
}

/// `bytes` as lowercase hex, no separators; `(empty)` for no bytes.
pub fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return String::from("(empty)");
    }
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// A classic hex dump: offset, then 16 bytes a line.
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut text = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        write!(text, "{:04x}:", i * 16).unwrap();
        for byte in line {
            write!(text, " {byte:02x}").unwrap();
        }
        text.push('\n');
    }
    text
}

/// Decodes the link datagram `bytes` with the `wire` reprs, checks that
/// the repr re-emits it byte for byte, and describes it: type, length, one
/// field per line, then a hex dump of the whole datagram.
pub fn describe_frame(bytes: &[u8]) -> String {
    let mut text = String::new();
    let kind = MessageType::of(bytes).expect("known message type");
    writeln!(text, "{}, length {}", label(bytes), bytes.len()).unwrap();
    let mut field = |label: &str, value: &[u8]| {
        writeln!(text, "{label}: {}", hex(value)).unwrap();
    };
    match kind {
        MessageType::Initiation => {
            let packet = InitiationPacket::new_checked(bytes).unwrap();
            let repr = InitiationRepr::parse(&packet).unwrap();
            let mut out = vec![0; repr.buffer_len()];
            repr.emit(&mut InitiationPacket::new_checked(&mut out[..]).unwrap());
            assert_eq!(out, bytes, "initiation does not re-emit byte for byte");
            field("message_type", &bytes[..1]);
            field("sender_index (le)", &repr.sender_index.to_le_bytes());
            field("ephemeral", &repr.ephemeral);
            field("encrypted_static", &repr.encrypted_static);
            field("encrypted_payload", &repr.encrypted_payload);
            field("mac1", &repr.mac1);
            field("mac2", &repr.mac2);
            writeln!(text, "sender_index = {:#010x}", repr.sender_index).unwrap();
        }
        MessageType::Response => {
            let packet = ResponsePacket::new_checked(bytes).unwrap();
            let repr = ResponseRepr::parse(&packet).unwrap();
            let mut out = vec![0; repr.buffer_len()];
            repr.emit(&mut ResponsePacket::new_checked(&mut out[..]).unwrap());
            assert_eq!(out, bytes, "response does not re-emit byte for byte");
            field("message_type", &bytes[..1]);
            field("sender_index (le)", &repr.sender_index.to_le_bytes());
            field("receiver_index (le)", &repr.receiver_index.to_le_bytes());
            field("ephemeral", &repr.ephemeral);
            field("encrypted_payload", &repr.encrypted_payload);
            field("mac1", &repr.mac1);
            field("mac2", &repr.mac2);
            writeln!(text, "sender_index = {:#010x}", repr.sender_index).unwrap();
            writeln!(text, "receiver_index = {:#010x}", repr.receiver_index).unwrap();
        }
        MessageType::CookieReply => {
            let packet = CookieReplyPacket::new_checked(bytes).unwrap();
            let repr = CookieReplyRepr::parse(&packet).unwrap();
            let mut out = vec![0; repr.buffer_len()];
            repr.emit(&mut CookieReplyPacket::new_checked(&mut out[..]).unwrap());
            assert_eq!(out, bytes, "cookie reply does not re-emit byte for byte");
            field("message_type", &bytes[..1]);
            field("receiver_index (le)", &repr.receiver_index.to_le_bytes());
            field("nonce", &repr.nonce);
            field("encrypted_cookie", &repr.encrypted_cookie);
            writeln!(text, "receiver_index = {:#010x}", repr.receiver_index).unwrap();
        }
        MessageType::Data => {
            let packet = DataPacket::new_checked(bytes).unwrap();
            let repr = DataRepr::parse(&packet).unwrap();
            // The repr covers the header; the AEAD writes the rest in place.
            let mut out = vec![0; repr.buffer_len(packet.payload().len())];
            let mut copy = DataPacket::new_checked(&mut out[..]).unwrap();
            repr.emit(&mut copy);
            copy.payload_mut().copy_from_slice(packet.payload());
            copy.tag_mut().copy_from_slice(packet.tag());
            assert_eq!(out, bytes, "data frame does not re-emit byte for byte");
            field("message_type", &bytes[..1]);
            field("receiver_index (le)", &repr.receiver_index.to_le_bytes());
            field("counter (le)", &repr.counter.to_le_bytes());
            field("ciphertext", packet.payload());
            field("tag", packet.tag());
            writeln!(text, "receiver_index = {:#010x}", repr.receiver_index).unwrap();
            writeln!(text, "counter = {}", repr.counter).unwrap();
            writeln!(text, "ciphertext length = {}", packet.payload().len()).unwrap();
        }
        MessageType::Probe => {
            let packet = ProbePacket::new_checked(bytes).unwrap();
            let repr = ProbeRepr::parse(&packet).unwrap();
            // The repr covers the header; the AEAD writes the tag in place.
            let mut out = vec![0; repr.buffer_len()];
            let mut copy = ProbePacket::new_checked(&mut out[..]).unwrap();
            repr.emit(&mut copy);
            copy.tag_mut().copy_from_slice(packet.tag());
            assert_eq!(out, bytes, "probe does not re-emit byte for byte");
            field("message_type", &bytes[..1]);
            field("receiver_index (le)", &repr.receiver_index.to_le_bytes());
            field("counter (le)", &repr.counter.to_le_bytes());
            field("tag", packet.tag());
            writeln!(text, "receiver_index = {:#010x}", repr.receiver_index).unwrap();
            writeln!(text, "counter = {}", repr.counter).unwrap();
        }
    }
    writeln!(text, "hex dump:").unwrap();
    text.push_str(&hex_dump(bytes));
    text
}

/// Describes the plaintext of a data frame: its service header, field by
/// field, and the customer payload.
pub fn describe_plaintext(bytes: &[u8]) -> String {
    let (repr, len) = ServiceHeaderRepr::parse(bytes).expect("a valid service header");
    let mut text = String::new();
    writeln!(text, "plaintext, length {}: {}", bytes.len(), hex(bytes)).unwrap();
    writeln!(text, "service header, length {len}: {}", hex(&bytes[..len])).unwrap();
    writeln!(text, "service: {}", repr.service).unwrap();
    writeln!(text, "from_entry: {}", repr.from_entry).unwrap();
    writeln!(text, "channel: {:?}", repr.channel).unwrap();
    writeln!(text, "destination: {:?}", repr.destination).unwrap();
    let payload = &bytes[len..];
    writeln!(
        text,
        "customer payload, length {}: {} {:?}",
        payload.len(),
        hex(payload),
        String::from_utf8_lossy(payload)
    )
    .unwrap();
    text
}
