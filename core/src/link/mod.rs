//! The encrypted link: handshakes, sessions and timers with every peer.
//!
//! A [`Link`] is one node's side of its links to up to `P` peers, each known
//! by its static public key. It turns datagrams from the network into
//! authenticated payloads, seals payloads into data frames, and produces the
//! handshakes and keepalives the timers call for.
//!
//! # Driving a link
//!
//! Methods come in four kinds:
//! - getters: [`Link::public_key`], [`Link::peer`], [`Link::unattributed_drops`], ...;
//! - input: [`Link::handle_datagram`] (a datagram from the network) and
//!   [`Link::handle_timeout`] (the time given by `poll_timeout` has come);
//! - commands: [`Link::add_peer`], [`Link::connect`], [`Link::seal`];
//! - output: [`Link::poll_transmit`], [`Link::poll_timeout`],
//!   [`Link::poll_event`].
//!
//! After any input or command, call `poll_transmit` until it returns `None`,
//! then `poll_timeout` to learn when to call `handle_timeout` next, then
//! `poll_event` until `None`. `now` must never go backwards between calls;
//! when a timer fires pass the current time, not the deadline.
//!
//! # What the link answers
//!
//! Nothing that did not authenticate: a handshake message must carry a valid
//! `mac1` (proof the sender knows our public key) and pass Noise, a data frame
//! must open under a live session. Everything else is dropped and counted
//! under a [`DropReason`], never answered.

mod cookie;
mod mac;
mod peer;
mod session;
mod stats;
mod timers;

use core::net::SocketAddr;
use core::ops::Range;
use core::time::Duration;

use heapless::Deque;
use rand_core::{CryptoRng, RngCore};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use crate::key::{PrivateKey, PublicKey};
use crate::noise::{Initiator, Responder};
use crate::tai64::{Tai64N, TimestampClock, TAI64N_LEN};
use crate::time::Instant;
use crate::wire::{
    CookieReplyPacket, DataPacket, HandshakeMacs, InitiationPacket, MessageType, ProbePacket,
    ResponsePacket, INITIATION_PAYLOAD_LEN,
};
use cookie::{Gate, Verdict};
use peer::{Peer, Pending, Slot};
use session::{Session, SessionError};
use timers::Timers;

pub use cookie::{cookie_reply_answers, COOKIE_LIFETIME, DEFAULT_LOAD_THRESHOLD};
pub use mac::mac1_is_valid;
pub use peer::{
    PeerConfig, FIRST_RESEND, KEEPALIVE_TIMEOUT, MAX_JITTER, MAX_RESEND_GAP, PROBE_AFTER,
    PROBE_TIMEOUT, REKEY_ATTEMPT_TIME, REKEY_TIMEOUT, STALE_AFTER_ATTEMPTS,
};
pub use session::{
    REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME,
};
pub use stats::{DropCounts, DropReason, PeerStats};

/// Cookie replies queued at most; see [`Link`]'s `cookie_replies`.
const COOKIE_REPLY_QUEUE: usize = 16;

/// Smallest buffer [`Link::poll_transmit`] accepts: room for the largest
/// handshake message.
pub const MIN_TRANSMIT_BUFFER: usize = InitiationPacket::<&[u8]>::LEN;

/// A peer of this node: its position in the node's peer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u16);

/// A datagram to send: the first `len` bytes of the caller's buffer, to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// Destination: the peer's current endpoint.
    pub to: SocketAddr,
    /// Bytes at the start of the buffer to send.
    pub len: usize,
}

/// What an accepted datagram turned out to be.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// An authenticated, non-empty payload from `peer`, decrypted in place at
    /// `payload` within the datagram buffer.
    Data {
        /// The sender.
        peer: PeerId,
        /// Where the plaintext lies in the buffer given to `handle_datagram`.
        payload: Range<usize>,
    },
    /// A keepalive or a handshake message: consumed by the link. Anything
    /// it calls for comes out of `poll_transmit` and `poll_event`.
    Control {
        /// The sender.
        peer: PeerId,
    },
}

/// Something the runtime or the layers above should know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// A new session with the peer carries data now.
    SessionUp(PeerId),
    /// The peer's node restarted: its sessions are gone, and so must be any
    /// state above the link that belonged to its previous incarnation.
    PeerRestarted(PeerId),
    /// The peer's endpoint changed to the source of its latest authenticated
    /// datagram.
    Roamed(PeerId),
    /// No handshake succeeded within [`REKEY_ATTEMPT_TIME`]; the link will
    /// try again when there is something to send.
    HandshakeTimedOut(PeerId),
    /// [`STALE_AFTER_ATTEMPTS`] more initiations in a row to the peer's
    /// endpoint got no response: the peer may have moved. A runtime that
    /// has the endpoint from a name resolves it again and gives the
    /// address it gets to [`Link::set_endpoint`]; others ignore it.
    EndpointStale(PeerId),
}

/// Errors of [`Link::add_peer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The peer table holds `P` peers already.
    TooManyPeers,
    /// Another peer has this public key.
    DuplicatePeer,
    /// The peer's public key is our own.
    OwnKey,
    /// The peer's link MTU is below [`crate::mtu::MIN_LINK_MTU`].
    BadMtu,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConfigError::TooManyPeers => "peer table full",
            ConfigError::DuplicatePeer => "two peers with the same public key",
            ConfigError::OwnKey => "a peer's public key is this node's own",
            ConfigError::BadMtu => "a peer's link MTU is below the minimum",
        })
    }
}

/// Why [`Link::seal`] or [`Link::poll_transmit`] produced nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No such peer.
    UnknownPeer,
    /// No session to send on. A handshake has been started if the peer's
    /// endpoint is known; retry after [`LinkEvent::SessionUp`].
    NoSession,
    /// The buffer cannot hold the frame.
    BufferTooSmall,
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SendError::UnknownPeer => "unknown peer",
            SendError::NoSession => "no session with the peer yet",
            SendError::BufferTooSmall => "buffer too small",
        })
    }
}

/// A node's links to its peers. See the [module documentation](self).
pub struct Link<R, const P: usize> {
    secret: PrivateKey,
    public: PublicKey,
    /// Key of `mac1` on messages sent to us.
    mac1_key: [u8; 32],
    rng: R,
    clock: TimestampClock,
    peers: heapless::Vec<Peer, P>,
    /// Drops not attributable to a peer.
    drops: DropCounts,
    /// Cookie secret, load meter and rate limiter for handshakes under load.
    gate: Gate,
    /// Cookie replies waiting to be sent: (to, message). Bounded; when full,
    /// a sender is simply not answered and retries.
    cookie_replies: Deque<(SocketAddr, [u8; CookieReplyPacket::<&[u8]>::LEN]), COOKIE_REPLY_QUEUE>,
    /// Peers with something for `poll_transmit`, each at most once, in the
    /// order they asked: `poll_transmit` visits only these, so its cost
    /// does not grow with the number of peers.
    transmits: Deque<u16, P>,
    /// Peers with events for `poll_event`, each at most once.
    noticed: Deque<u16, P>,
    /// Each peer's next deadline, for `handle_timeout` and `poll_timeout`.
    timers: Timers<P>,
    /// Peers visited by the output side (`transmit_for`, `on_timeout`,
    /// `poll_event`), for tests that its cost follows what is pending.
    #[cfg(test)]
    visits: usize,
}

impl<R: RngCore + CryptoRng, const P: usize> Link<R, P> {
    /// A link with no peers yet. `unix_nanos` is the wall-clock time at
    /// `now` (nanoseconds since 1970): it seeds the initiation timestamps,
    /// which must grow across restarts of the node for peers to accept them.
    pub fn new(secret: PrivateKey, rng: R, now: Instant, unix_nanos: u64) -> Self {
        let public = secret.public_key();
        Link {
            mac1_key: mac::mac1_key(&public),
            public,
            secret,
            rng,
            clock: TimestampClock::new(now, unix_nanos),
            peers: heapless::Vec::new(),
            drops: DropCounts::default(),
            gate: Gate::new(&public, now),
            cookie_replies: Deque::new(),
            transmits: Deque::new(),
            noticed: Deque::new(),
            timers: Timers::new(),
            #[cfg(test)]
            visits: 0,
        }
    }

    // ---- getters ----

    /// This node's public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The peer with public key `key`.
    pub fn peer_by_key(&self, key: &PublicKey) -> Option<PeerId> {
        self.peers
            .iter()
            .position(|p| !p.retired && &p.config.public_key == key)
            .map(|i| PeerId(i as u16))
    }

    /// Number of peer slots, retired ones included: peer ids run below it.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether `id` names a slot a reload retired ([`Link::retire_peer`]).
    pub fn is_retired(&self, id: PeerId) -> bool {
        self.peers.get(usize::from(id.0)).is_some_and(|p| p.retired)
    }

    /// The configuration `id` runs with (`None` for a retired slot).
    pub fn peer_config(&self, id: PeerId) -> Option<&PeerConfig> {
        self.peers
            .get(usize::from(id.0))
            .filter(|p| !p.retired)
            .map(|p| &p.config)
    }

    /// A snapshot of one peer's state (`None` for a retired slot).
    pub fn peer(&self, id: PeerId, now: Instant) -> Option<PeerStatus> {
        let p = self.peers.get(id.0 as usize).filter(|p| !p.retired)?;
        Some(PeerStatus {
            public_key: p.config.public_key,
            endpoint: p.endpoint,
            last_handshake: p.last_handshake,
            last_received: p.last_received,
            session_up: p.can_send(now),
            overdue: p.overdue(now),
            keep_up: p.config.keep_up && p.endpoint.is_some(),
            persistent_keepalive: p.config.persistent_keepalive,
            stats: p.stats,
        })
    }

    /// Drops of datagrams that could not be tied to a peer.
    pub fn unattributed_drops(&self) -> &DropCounts {
        &self.drops
    }

    /// Whether `peer` has a session to send on at `now`.
    pub fn is_up(&self, peer: PeerId, now: Instant) -> bool {
        self.peers
            .get(peer.0 as usize)
            .is_some_and(|p| p.can_send(now))
    }

    /// The longest plaintext one data frame to `peer` may carry: what fits
    /// one link datagram of the peer's MTU to its current endpoint
    /// ([`crate::mtu::max_plaintext_len`]).
    pub fn max_plaintext_len(&self, peer: PeerId) -> Option<usize> {
        let p = self.peers.get(usize::from(peer.0))?;
        Some(crate::mtu::max_plaintext_len(p.config.mtu, p.endpoint))
    }

    // ---- commands ----

    /// Adds a peer. With `keep_up` and an endpoint, its handshake starts at
    /// the next `poll_transmit`.
    pub fn add_peer(&mut self, config: PeerConfig, now: Instant) -> Result<PeerId, ConfigError> {
        if config.public_key == self.public {
            return Err(ConfigError::OwnKey);
        }
        if !crate::mtu::valid_link_mtu(config.mtu) {
            return Err(ConfigError::BadMtu);
        }
        if self.peer_by_key(&config.public_key).is_some() {
            return Err(ConfigError::DuplicatePeer);
        }
        if self.peers.len() >= P.min(1 << 16) {
            return Err(ConfigError::TooManyPeers);
        }
        let mac1_key = mac::mac1_key(&config.public_key);
        let id = PeerId(self.peers.len() as u16);
        self.peers
            .push(Peer::new(config, mac1_key, self.rng.next_u64(), now))
            .map_err(|_| ConfigError::TooManyPeers)?;
        self.attend(id.0 as usize);
        Ok(id)
    }

    /// Checks a peer's configuration as [`Link::add_peer`] does, short of
    /// the table's room and duplicates: for a reload to validate first.
    pub fn check_peer(&self, config: &PeerConfig) -> Result<(), ConfigError> {
        if config.public_key == self.public {
            return Err(ConfigError::OwnKey);
        }
        if !crate::mtu::valid_link_mtu(config.mtu) {
            return Err(ConfigError::BadMtu);
        }
        Ok(())
    }

    /// Removes `peer` (a reload): its sessions and handshake are dropped,
    /// its key is no longer recognised, and its slot may be reused by
    /// [`Link::replace_peer`]. Ids of other peers do not move.
    pub fn retire_peer(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get_mut(usize::from(peer.0)) else {
            return;
        };
        p.retired = true;
        p.drop_sessions();
        p.pending = None;
        p.response = None;
        p.want_initiation = false;
        p.want_resend = false;
        p.want_keepalive = false;
        p.want_probe = false;
        p.attempts_since = None;
        p.config.keep_up = false;
        self.attend(usize::from(peer.0));
    }

    /// Puts a new peer in the retired slot `peer` (a reload adding a peer
    /// where one was removed), with fresh state.
    pub fn replace_peer(&mut self, peer: PeerId, config: PeerConfig, now: Instant) {
        let incarnation = self.rng.next_u64();
        let mac1_key = mac::mac1_key(&config.public_key);
        if let Some(p) = self.peers.get_mut(usize::from(peer.0)) {
            *p = Peer::new(config, mac1_key, incarnation, now);
            self.attend(usize::from(peer.0));
        }
    }

    /// Applies a reloaded configuration with the same public key to
    /// `peer`. A changed preshared key ends the sessions (they were keyed
    /// with the old one) and starts a handshake if the endpoint is known,
    /// and the peer's newest initiation may be answered once more (the
    /// peer's `reanswer` flag): the two ends of a link are
    /// reloaded in turn, and the one that changed first resends what the
    /// other answered under the old key;
    /// otherwise sessions are kept and the new endpoint, keepalive, keep-up
    /// and MTU take effect. Returns whether the peer handshakes again.
    pub fn update_peer(&mut self, peer: PeerId, config: PeerConfig, now: Instant) -> bool {
        let Some(p) = self.peers.get_mut(usize::from(peer.0)) else {
            return false;
        };
        let rekey = p.config.preshared_key != config.preshared_key;
        if config.endpoint.is_some() && config.endpoint != p.config.endpoint {
            p.endpoint = config.endpoint;
        }
        if rekey {
            p.psk = Zeroizing::new(
                config
                    .preshared_key
                    .as_ref()
                    .map(|k| *k.as_bytes())
                    .unwrap_or([0; 32]),
            );
            p.drop_sessions();
            p.pending = None;
            p.response = None;
            p.want_initiation = false;
            // Our answer to its newest initiation was under the old key.
            p.reanswer = true;
        }
        // A service that keeps the link up asks again (`Link::keep_up`).
        p.config = config;
        if rekey || (p.config.keep_up && p.current.is_none()) {
            p.start_handshake(now);
        }
        self.attend(usize::from(peer.0));
        rekey
    }

    /// Starts a new incarnation of this node towards `peer`: its sessions
    /// are dropped, and the next handshake (started now if the peer's
    /// endpoint is known) tells the peer, which drops every state of the old
    /// incarnation ([`LinkEvent::PeerRestarted`] on its side), as if this node
    /// had restarted. The node uses it when a service runs out of channel
    /// numbers.
    pub fn renew_incarnation(&mut self, peer: PeerId, now: Instant) {
        let Some(p) = self.peers.get_mut(peer.0 as usize) else {
            return;
        };
        p.local_incarnation = self.rng.next_u64();
        p.drop_sessions();
        p.pending = None;
        p.response = None;
        p.want_initiation = false;
        p.start_handshake(now);
        self.attend(peer.0 as usize);
    }

    /// Keeps the link to `peer` up from now on, as if its config said
    /// `keep_up`: its handshake starts at the next `poll_transmit` if its
    /// endpoint is known. The node calls it for a peer that may be the
    /// first to send in a service (see [`crate::node::Node::add_service`]).
    pub fn keep_up(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get_mut(peer.0 as usize) else {
            return;
        };
        if !p.config.keep_up {
            p.config.keep_up = true;
            if p.endpoint.is_some() && p.pending.is_none() && p.current.is_none() {
                p.want_initiation = true;
            }
            self.attend(peer.0 as usize);
        }
    }

    /// Sends to `peer` at `endpoint` from now on (a runtime's fresh
    /// resolution of the peer's endpoint name), as the configured endpoint
    /// too. Returns whether it changed. A changed endpoint restarts an
    /// unanswered handshake at once towards it (the old address had no
    /// answer), and a peer kept up without a session starts one; a session
    /// stays (its keys do not depend on the address). The peer's roaming
    /// still follows authenticated datagrams from elsewhere.
    pub fn set_endpoint(&mut self, peer: PeerId, endpoint: SocketAddr, now: Instant) -> bool {
        let Some(p) = self
            .peers
            .get_mut(usize::from(peer.0))
            .filter(|p| !p.retired)
        else {
            return false;
        };
        p.config.endpoint = Some(endpoint);
        if p.endpoint == Some(endpoint) {
            return false;
        }
        p.endpoint = Some(endpoint);
        p.unanswered_initiations = 0;
        if p.pending.take().is_some() {
            p.want_resend = false;
            p.want_initiation = true;
            p.attempts_since.get_or_insert(now);
        } else if p.config.keep_up && p.current.is_none() {
            p.start_handshake(now);
        }
        self.attend(usize::from(peer.0));
        true
    }

    /// Starts a handshake with `peer` now, unless one is under way.
    pub fn connect(&mut self, peer: PeerId, now: Instant) {
        if let Some(p) = self.peers.get_mut(peer.0 as usize) {
            p.start_handshake(now);
            self.attend(peer.0 as usize);
        }
    }

    /// Seals a data frame for `peer` in place and returns what to send.
    ///
    /// `frame` holds the frame being built: [`DataPacket::HEADER_LEN`] bytes
    /// of room, then `plaintext_len` bytes of plaintext, then room for the
    /// [`DataPacket::TAG_LEN`]-byte tag. An empty plaintext is a keepalive.
    /// The frame is `frame[..Transmit::len]`.
    pub fn seal(
        &mut self,
        now: Instant,
        peer: PeerId,
        frame: &mut [u8],
        plaintext_len: usize,
    ) -> Result<Transmit, SendError> {
        let result = self.seal_for(now, peer, frame, plaintext_len);
        self.attend(peer.0 as usize);
        result
    }

    fn seal_for(
        &mut self,
        now: Instant,
        peer: PeerId,
        frame: &mut [u8],
        plaintext_len: usize,
    ) -> Result<Transmit, SendError> {
        let p = self
            .peers
            .get_mut(peer.0 as usize)
            .ok_or(SendError::UnknownPeer)?;
        let len = DataPacket::<&[u8]>::OVERHEAD + plaintext_len;
        let frame = frame.get_mut(..len).ok_or(SendError::BufferTooSmall)?;
        let Some(to) = p.endpoint else {
            return Err(SendError::NoSession);
        };
        let result = match p.current.as_mut() {
            Some(s) => s.seal(now, frame),
            None => Err(SessionError::Expired),
        };
        match result {
            Ok(()) => {
                let rekey = p.current.as_ref().is_some_and(|s| s.wants_rekey(now));
                if rekey {
                    p.start_handshake(now);
                }
                p.sent(now, len);
                if plaintext_len > 0 {
                    p.unanswered_since.get_or_insert(now);
                }
                Ok(Transmit { to, len })
            }
            Err(_) => {
                // Expired or used up: it is of no use any more.
                p.current = None;
                p.start_handshake(now);
                Err(SendError::NoSession)
            }
        }
    }

    // ---- input ----

    /// Handles a datagram that arrived from `from` on the link socket.
    ///
    /// On `Ok`, the datagram was authenticated; data payloads are decrypted
    /// in place in `datagram`. On `Err`, it was dropped and counted; the
    /// caller may log the reason but must not answer.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
    ) -> Result<Received, DropReason> {
        let kind = MessageType::of(datagram);
        let result = match kind {
            Ok(MessageType::Data) => self.handle_sealed(now, from, datagram, false),
            Ok(MessageType::Probe) => self.handle_sealed(now, from, datagram, true),
            Ok(MessageType::Initiation) => self.handle_initiation(now, from, datagram),
            Ok(MessageType::Response) => self.handle_response(now, from, datagram),
            Ok(MessageType::CookieReply) => self.handle_cookie_reply(now, datagram),
            Err(_) => Err((None, DropReason::Malformed)),
        };
        match &result {
            Ok(Received::Data { peer, .. } | Received::Control { peer }) => {
                self.attend(peer.0 as usize)
            }
            Err((Some(slot), _)) => self.attend(*slot),
            Err((None, _)) => {}
        }
        result.map_err(|(peer, reason)| {
            match peer.and_then(|i| self.peers.get_mut(i)) {
                Some(p) => p.stats.drops.add(reason),
                None => self.drops.add(reason),
            }
            reason
        })
    }

    /// A data frame, or with `probe` a liveness probe ([`ProbePacket`]):
    /// both are sealed under a session and opened against its window, and
    /// both tell that the peer holds the session.
    fn handle_sealed(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
        probe: bool,
    ) -> Result<Received, (Option<usize>, DropReason)> {
        let len = datagram.len();
        let index = if probe {
            ProbePacket::new_checked(&*datagram).map(|p| p.receiver_index())
        } else {
            DataPacket::new_checked(&*datagram).map(|p| p.receiver_index())
        }
        .map_err(|_| (None, DropReason::Malformed))?;
        let slot = (index & 0xffff) as usize;
        let p = self
            .peers
            .get_mut(slot)
            .ok_or((None, DropReason::UnknownIndex))?;
        let (session, which) = p
            .session_mut(index)
            .ok_or((None, DropReason::UnknownIndex))?;
        let opened = if probe {
            session.open_probe(now, datagram)
        } else {
            session.open(now, datagram)
        };
        if let Err(e) = opened {
            let reason = match e {
                SessionError::Expired | SessionError::CounterExhausted => DropReason::Expired,
                SessionError::Replay(_) => DropReason::Replayed,
                SessionError::Auth => DropReason::AuthFailed,
            };
            return Err((Some(slot), reason));
        }
        let rekey_on_receive = which == Slot::Current
            && session.initiator
            && session.age(now) >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT;
        if which == Slot::Next {
            p.confirm_next();
        }
        if rekey_on_receive {
            p.start_handshake(now);
        }
        p.received(now, from, len);
        if probe {
            // The peer asks whether we still hold this session.
            p.want_keepalive = true;
            return Ok(Received::Control {
                peer: PeerId(slot as u16),
            });
        }
        let payload = DataPacket::<&[u8]>::HEADER_LEN..len - DataPacket::<&[u8]>::TAG_LEN;
        if payload.is_empty() {
            return Ok(Received::Control {
                peer: PeerId(slot as u16),
            });
        }
        p.last_data_received = Some(now);
        Ok(Received::Data {
            peer: PeerId(slot as u16),
            payload,
        })
    }

    fn handle_initiation(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
    ) -> Result<Received, (Option<usize>, DropReason)> {
        let mut packet = InitiationPacket::new_checked(&mut *datagram)
            .map_err(|_| (None, DropReason::Malformed))?;
        self.admit(now, from, &packet)?;
        let sender_index = packet.sender_index();
        let (responder, payload) =
            Responder::read_message(self.secret.as_secret(), packet.noise_message_mut())
                .map_err(|_| (None, DropReason::HandshakeFailed))?;
        let initiator_key = PublicKey::from_bytes(*responder.remote_static());
        let slot = self
            .peer_by_key(&initiator_key)
            .ok_or((None, DropReason::UnknownPeer))?
            .0 as usize;
        let payload = &packet.noise_message()[payload];
        let (timestamp, incarnation) =
            parse_initiation_payload(payload).ok_or((Some(slot), DropReason::HandshakeFailed))?;
        let ours_higher = self.public.as_bytes() > initiator_key.as_bytes();
        let p = &mut self.peers[slot];
        // Replays: an initiation of the peer's current incarnation must be
        // newer than the newest seen from that incarnation; one of any other
        // incarnation newer than the newest accepted from any.
        let floor = if p.incarnation == Some(incarnation) && p.incarnation_timestamp.is_some() {
            p.incarnation_timestamp
        } else {
            p.last_timestamp
        };
        // The newest one again is answered once after a change of the
        // preshared key (`Peer::reanswer`).
        let again = p.reanswer && floor == Some(timestamp);
        if floor.is_some_and(|t| timestamp <= t) && !again {
            if floor.is_some_and(|t| timestamp < t) && p.incarnation != Some(incarnation) {
                reach_out(p, now, incarnation, timestamp);
            }
            return Err((Some(slot), DropReason::ReplayedInitiation));
        }
        // Recorded before the race decision: an initiation we ignore must
        // not be accepted later as a replay either.
        p.last_timestamp = p.last_timestamp.max(Some(timestamp));
        if p.incarnation == Some(incarnation) {
            p.incarnation_timestamp = Some(timestamp);
        }
        // Crossing initiations: the side with the higher public key keeps
        // its own handshake and ignores the peer's; the other side abandons
        // its own and answers. The peer initiating means it may not have
        // seen our initiation (it was not listening yet), so ours goes again
        // at once, unchanged: the link comes up in one round trip. We ignore
        // only an initiation from where ours went, and only once per run of
        // attempts: a peer that cannot hear us (it moved, or our endpoint
        // for it is stale) is answered, and its initiation moves the
        // endpoint to where it really is.
        let crossing = p.pending.as_ref().is_some_and(|h| h.sent_to == from);
        if crossing && ours_higher && !p.race_ignored {
            p.race_ignored = true;
            p.want_resend = true;
            return Err((Some(slot), DropReason::HandshakeRace));
        }
        if p.pending.is_some() {
            p.pending = None;
            p.want_initiation = false;
            p.want_resend = false;
            p.attempts_since = None;
        }
        let local_index = new_index(&mut self.rng, p, slot);
        let ephemeral = StaticSecret::random_from_rng(&mut self.rng);
        let mut response = [0u8; ResponsePacket::<&[u8]>::LEN];
        let mut out = ResponsePacket::new_unchecked(&mut response[..]);
        out.set_message_type(MessageType::Response.into());
        out.set_sender_index(local_index);
        out.set_receiver_index(sender_index);
        let keys = responder
            .write_message(
                ephemeral,
                &p.psk,
                &p.local_incarnation.to_le_bytes(),
                out.noise_message_mut(),
            )
            .map_err(|_| (Some(slot), DropReason::HandshakeFailed))?
            .0;
        let mac = mac::mac1(&p.mac1_key, out.mac1_input());
        out.set_mac1(&mac);
        out.set_mac2(&p.jar.mac2(now, out.mac2_input()));
        p.jar.sent_mac1(mac);
        let session = Session::new(&keys, false, local_index, sender_index, now);
        note_incarnation(p, incarnation);
        p.incarnation_timestamp = Some(timestamp);
        p.reanswer = false;
        p.install(session, now);
        p.heard(now, datagram.len());
        p.response = Some((response, from));
        Ok(Received::Control {
            peer: PeerId(slot as u16),
        })
    }

    fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
    ) -> Result<Received, (Option<usize>, DropReason)> {
        let mut packet = ResponsePacket::new_checked(&mut *datagram)
            .map_err(|_| (None, DropReason::Malformed))?;
        self.admit(now, from, &packet)?;
        let index = packet.receiver_index();
        let sender_index = packet.sender_index();
        let slot = (index & 0xffff) as usize;
        let p = self
            .peers
            .get_mut(slot)
            .filter(|p| p.pending.as_ref().is_some_and(|h| h.local_index == index))
            .ok_or((None, DropReason::UnexpectedResponse))?;
        let Some(pending) = p.pending.as_ref() else {
            return Err((Some(slot), DropReason::UnexpectedResponse));
        };
        let (keys, payload) = pending
            .noise
            .read_message(self.secret.as_secret(), &p.psk, packet.noise_message_mut())
            .map_err(|_| (Some(slot), DropReason::HandshakeFailed))?;
        let incarnation = packet.noise_message()[payload]
            .try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| (Some(slot), DropReason::HandshakeFailed))?;
        let session = Session::new(&keys, true, index, sender_index, now);
        p.pending = None;
        p.attempts_since = None;
        note_incarnation(p, incarnation);
        p.install(session, now);
        p.received(now, from, datagram.len());
        // Confirm the session to the responder at once, so it may send on it.
        p.want_keepalive = true;
        Ok(Received::Control {
            peer: PeerId(slot as u16),
        })
    }

    /// Lets a handshake message through if its `mac1` is valid and, under
    /// load, its `mac2` too; otherwise drops it, asking its sender for a
    /// cookie where that helps. Runs before any Diffie-Hellman.
    fn admit(
        &mut self,
        now: Instant,
        from: SocketAddr,
        packet: &impl HandshakeMacs,
    ) -> Result<(), (Option<usize>, DropReason)> {
        if !mac::verify_mac1(&self.mac1_key, packet.mac1_input(), packet.mac1()) {
            return Err((None, DropReason::BadMac1));
        }
        let (covered, mac2) = (packet.mac2_input(), packet.mac2());
        match self.gate.check(&mut self.rng, now, &from, covered, mac2) {
            Verdict::Pass => Ok(()),
            Verdict::RateLimited => Err((None, DropReason::RateLimited)),
            Verdict::NeedCookie => {
                if !self.cookie_replies.is_full() {
                    let mut reply = [0u8; CookieReplyPacket::<&[u8]>::LEN];
                    self.gate.reply(
                        &mut self.rng,
                        now,
                        &from,
                        packet.sender_index(),
                        packet.mac1(),
                        &mut reply,
                    );
                    self.cookie_replies.push_back((from, reply)).ok();
                }
                Err((None, DropReason::CookieRequired))
            }
        }
    }

    /// A cookie reply to our initiation (or response): keep the cookie for
    /// the next try, which the retry timer sends.
    fn handle_cookie_reply(
        &mut self,
        now: Instant,
        datagram: &mut [u8],
    ) -> Result<Received, (Option<usize>, DropReason)> {
        let packet = CookieReplyPacket::new_checked(&*datagram)
            .map_err(|_| (None, DropReason::Malformed))?;
        let index = packet.receiver_index();
        let slot = (index & 0xffff) as usize;
        let p = self
            .peers
            .get_mut(slot)
            .filter(|p| {
                p.pending.as_ref().is_some_and(|h| h.local_index == index)
                    || p.next.as_ref().is_some_and(|s| s.local_index == index)
            })
            .ok_or((None, DropReason::UnexpectedCookie))?;
        if !p.jar.accept(now, &p.cookie_key, &packet) {
            return Err((Some(slot), DropReason::BadCookieReply));
        }
        // The next resend of our initiation carries the cookie: mac2 covers
        // only what comes before it, so the same initiation gets through.
        if let Some(h) = p.pending.as_mut().filter(|h| h.local_index == index) {
            let mut out = InitiationPacket::new_unchecked(&mut h.message[..]);
            let mac2 = p.jar.mac2(now, out.mac2_input());
            out.set_mac2(&mac2);
        }
        Ok(Received::Control {
            peer: PeerId(slot as u16),
        })
    }

    /// Sets how many handshake messages per second the node takes before it
    /// asks senders for cookies ([`DEFAULT_LOAD_THRESHOLD`] by default; 0
    /// means always).
    pub fn set_load_threshold(&mut self, per_second: u32) {
        self.gate.set_threshold(per_second);
    }

    /// Runs every timer due at `now`. Visits only the peers whose deadline
    /// has come, each at most once a call.
    pub fn handle_timeout(&mut self, now: Instant) {
        for _ in 0..self.peers.len() {
            let Some(slot) = self.timers.due(now) else {
                break;
            };
            self.peers[slot].on_timeout(now);
            self.attend(slot);
            #[cfg(test)]
            {
                self.visits += 1;
            }
        }
    }

    /// Whether `poll_transmit` has something to send.
    pub fn wants_transmit(&self) -> bool {
        !self.cookie_replies.is_empty() || !self.transmits.is_empty()
    }

    /// Whether a bounded output queue is full, so that what comes next
    /// would go unanswered until `poll_transmit` drains it: a runtime
    /// handling a batch drains it at once. Cookie replies under load are
    /// the case: a batch of thousands of flooded initiations must not
    /// crowd out the reply to the one real peer among them.
    pub fn needs_transmit_now(&self) -> bool {
        self.cookie_replies.is_full()
    }

    /// Whether `poll_event` has an event.
    pub fn has_events(&self) -> bool {
        !self.noticed.is_empty()
    }

    /// Files `slot` where the output side will look for it: in the queue of
    /// peers with something to send, in the queue of peers with events, and
    /// in the timers at its next deadline. Called after anything that may
    /// change a peer, so that output visits only the peers that need it.
    fn attend(&mut self, slot: usize) {
        let Some(p) = self.peers.get_mut(slot) else {
            return;
        };
        // A peer is in each queue at most once, and the queues hold every
        // peer: these pushes cannot fail.
        if !p.queued_transmit && p.wants_transmit() {
            p.queued_transmit = self.transmits.push_back(slot as u16).is_ok();
        }
        if !p.queued_events && p.events.any() {
            p.queued_events = self.noticed.push_back(slot as u16).is_ok();
        }
        self.timers.set(slot, p.next_deadline());
    }

    // ---- output ----

    /// The next handshake message or keepalive to send, written at the start
    /// of `buf` (at least [`MIN_TRANSMIT_BUFFER`] bytes).
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, SendError> {
        if buf.len() < MIN_TRANSMIT_BUFFER {
            return Err(SendError::BufferTooSmall);
        }
        if let Some((to, reply)) = self.cookie_replies.pop_front() {
            buf[..reply.len()].copy_from_slice(&reply);
            return Ok(Some(Transmit {
                to,
                len: reply.len(),
            }));
        }
        // Each peer sends one message a turn, then goes to the back of the
        // queue if it has more: fair, and a peer that turns out to have
        // nothing left (no endpoint, no session) clears a wish each visit,
        // so the loop ends.
        while let Some(slot) = self.transmits.pop_front() {
            let slot = slot as usize;
            self.peers[slot].queued_transmit = false;
            #[cfg(test)]
            {
                self.visits += 1;
            }
            let t = self.transmit_for(now, slot, buf);
            self.attend(slot);
            if t.is_some() {
                return Ok(t);
            }
        }
        Ok(None)
    }

    fn transmit_for(&mut self, now: Instant, slot: usize, buf: &mut [u8]) -> Option<Transmit> {
        let p = &mut self.peers[slot];
        if let Some((response, to)) = p.response.take() {
            buf[..response.len()].copy_from_slice(&response);
            p.sent(now, response.len());
            return Some(Transmit {
                to,
                len: response.len(),
            });
        }
        if core::mem::take(&mut p.want_resend) {
            // The same bytes again: if the first copy did arrive, the peer
            // drops this one as a replay and answers only once.
            if let (Some(h), Some(to)) = (&p.pending, p.endpoint) {
                let len = h.message.len();
                buf[..len].copy_from_slice(&h.message);
                p.sent(now, len);
                return Some(Transmit { to, len });
            }
        }
        if p.want_initiation {
            p.want_initiation = false;
            let to = p.endpoint?;
            let local_index = new_index(&mut self.rng, p, slot);
            let len = InitiationPacket::<&[u8]>::LEN;
            let mut out = InitiationPacket::new_unchecked(&mut buf[..len]);
            out.set_message_type(MessageType::Initiation.into());
            out.set_sender_index(local_index);
            let mut payload = [0u8; INITIATION_PAYLOAD_LEN];
            payload[..TAI64N_LEN].copy_from_slice(self.clock.stamp(now).as_bytes());
            payload[TAI64N_LEN..].copy_from_slice(&p.local_incarnation.to_le_bytes());
            let ephemeral = StaticSecret::random_from_rng(&mut self.rng);
            let remote = p.config.public_key.as_bytes();
            let noise = Initiator::write_message(
                self.secret.as_secret(),
                remote,
                ephemeral,
                &payload,
                out.noise_message_mut(),
            )
            .ok()?
            .0;
            let mac = mac::mac1(&p.mac1_key, out.mac1_input());
            out.set_mac1(&mac);
            out.set_mac2(&p.jar.mac2(now, out.mac2_input()));
            p.jar.sent_mac1(mac);
            let random = self.rng.next_u64();
            let jitter = Duration::from_nanos(random % MAX_JITTER.as_nanos() as u64);
            let mut message = [0u8; InitiationPacket::<&[u8]>::LEN];
            message.copy_from_slice(&buf[..len]);
            // The resends' jitter comes from the same draw, turned, so the
            // link's draws (and its transcripts) are what they were.
            let random = random.rotate_left(29);
            p.pending = Some(Pending {
                noise,
                local_index,
                sent_at: now,
                retry_at: now + REKEY_TIMEOUT + jitter,
                resend_at: now + FIRST_RESEND + peer::resend_jitter(FIRST_RESEND, random),
                resend_gap: FIRST_RESEND,
                jitter: random,
                sent_to: to,
                message,
            });
            p.attempts_since.get_or_insert(now);
            p.stats.handshakes_initiated += 1;
            p.sent(now, len);
            return Some(Transmit { to, len });
        }
        if core::mem::take(&mut p.want_probe) {
            let to = p.endpoint?;
            let s = p.current.as_mut()?;
            let len = ProbePacket::<&[u8]>::LEN;
            s.seal_probe(now, &mut buf[..len]).ok()?;
            p.probe_sent = Some(now);
            p.sent(now, len);
            return Some(Transmit { to, len });
        }
        if p.want_keepalive {
            p.want_keepalive = false;
            let to = p.endpoint?;
            let s = p.current.as_mut()?;
            let len = DataPacket::<&[u8]>::OVERHEAD;
            s.seal(now, &mut buf[..len]).ok()?;
            p.sent(now, len);
            return Some(Transmit { to, len });
        }
        None
    }

    /// When [`Link::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next().map(|(_, at)| at)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        let slot = *self.noticed.front()? as usize;
        #[cfg(test)]
        {
            self.visits += 1;
        }
        let id = PeerId(slot as u16);
        let p = &mut self.peers[slot];
        let e = &mut p.events;
        // Restart first: the layers above must drop old state before they
        // hear the new session is up.
        let event = if core::mem::take(&mut e.restarted) {
            LinkEvent::PeerRestarted(id)
        } else if core::mem::take(&mut e.session_up) {
            LinkEvent::SessionUp(id)
        } else if core::mem::take(&mut e.roamed) {
            LinkEvent::Roamed(id)
        } else if core::mem::take(&mut e.endpoint_stale) {
            LinkEvent::EndpointStale(id)
        } else {
            e.handshake_timeout = false;
            LinkEvent::HandshakeTimedOut(id)
        };
        // The peer stays at the front until its last event is out, so its
        // events come in the order above.
        if !p.events.any() {
            p.queued_events = false;
            self.noticed.pop_front();
        }
        Some(event)
    }

    /// Seals a liveness probe to `peer` into `buf` (at least
    /// [`ProbePacket::LEN`] bytes) under its current session at the next
    /// send counter, exactly as the link seals the probes it sends, and
    /// changes nothing else: for tests and fuzzing that need a real probe
    /// (with [`Link::force_send_counter`], at a chosen counter).
    #[cfg(any(test, feature = "testing"))]
    pub fn seal_probe(
        &mut self,
        now: Instant,
        peer: PeerId,
        buf: &mut [u8],
    ) -> Result<Transmit, SendError> {
        let p = self
            .peers
            .get_mut(peer.0 as usize)
            .ok_or(SendError::UnknownPeer)?;
        let len = ProbePacket::<&[u8]>::LEN;
        let frame = buf.get_mut(..len).ok_or(SendError::BufferTooSmall)?;
        let to = p.endpoint.ok_or(SendError::NoSession)?;
        let s = p.current.as_mut().ok_or(SendError::NoSession)?;
        s.seal_probe(now, frame).map_err(|_| SendError::NoSession)?;
        Ok(Transmit { to, len })
    }

    /// Moves the send counter of `peer`'s current session, to test counter
    /// exhaustion without sending 2^64 frames.
    #[cfg(any(test, feature = "testing"))]
    pub fn force_send_counter(&mut self, peer: PeerId, counter: u64) {
        if let Some(s) = self
            .peers
            .get_mut(peer.0 as usize)
            .and_then(|p| p.current.as_mut())
        {
            s.set_next_send(counter);
        }
        self.attend(peer.0 as usize);
    }
}

/// A snapshot of a peer, for status output.
#[derive(Debug, Clone, Copy)]
pub struct PeerStatus {
    /// The peer's identity.
    pub public_key: PublicKey,
    /// Where datagrams to the peer go.
    pub endpoint: Option<SocketAddr>,
    /// When the latest handshake completed.
    pub last_handshake: Option<Instant>,
    /// When the latest authenticated datagram (data, keepalive or
    /// handshake) came from the peer.
    pub last_received: Option<Instant>,
    /// Whether a session to send on exists.
    pub session_up: bool,
    /// The peer owes an answer it has not given in time: data sent to it
    /// got no reply (not even a keepalive) within [`PROBE_AFTER`] +
    /// [`PROBE_TIMEOUT`], a liveness probe none within [`PROBE_TIMEOUT`], or
    /// a handshake under way none for [`PROBE_TIMEOUT`] (counted from the
    /// probe that started it, if one did). A session can be up (its keys are
    /// still valid) while the peer is gone: this tells the two apart.
    pub overdue: bool,
    /// Whether the link is kept up without traffic (configured, or made so
    /// by a service in which the peer holds the entry half).
    pub keep_up: bool,
    /// The configured persistent keepalive interval.
    pub persistent_keepalive: Option<core::time::Duration>,
    /// Traffic and drops.
    pub stats: PeerStats,
}

/// Records the peer's incarnation; a change means its node restarted, and
/// every session of the old incarnation must go. A new incarnation's
/// initiations are held against the newest of them we saw (refused as stale
/// before this handshake confirmed the incarnation), or, if none, against
/// the newest of any incarnation until one is accepted.
fn note_incarnation(p: &mut Peer, incarnation: u64) {
    if p.incarnation != Some(incarnation) {
        if p.incarnation.is_some() {
            p.drop_sessions();
            p.events.restarted = true;
        }
        p.incarnation_timestamp = p.stale.filter(|&(i, _)| i == incarnation).map(|(_, t)| t);
        p.stale = None;
    }
    p.incarnation = Some(incarnation);
}

/// An authenticated initiation older than the newest we accepted from the
/// peer, from an incarnation we have not confirmed: either a replay of an
/// initiation captured before the peer's last restart, or the peer itself,
/// restarted with its wall clock stepped back (its timestamps are then
/// older than those of its previous incarnation until its clock catches up,
/// sim/README.md, finding 5). We cannot tell which, so we refuse it, and
/// start a handshake of our own to the endpoint we know, at most once per
/// [`REKEY_TIMEOUT`]. A restarted peer accepts it (it has no timestamps of
/// ours to hold it against), and the handshake confirms its new
/// incarnation, whose initiations from then on are held against its own
/// newest timestamp only.
///
/// The stance holds: nothing goes to the initiation's source, only to the
/// endpoint we already had, so a replayer can aim nothing anywhere; what it
/// gains at most two handshakes with the real peer per [`REKEY_TIMEOUT`]
/// (below). Replays
/// of the current incarnation's initiations (every capture since the
/// peer's last restart) start nothing. Not covered: a peer that came back
/// with its clock behind *and* at a new address (a reboot behind a NAT) is
/// refused until its clock catches up, as before; reaching it would mean
/// sending to the source of an unconfirmed initiation.
///
/// Reaching out replaces an initiation of ours that is pending with a fresh
/// one, and a stale initiation that arrives while the reach-out's own is
/// pending renews that once more (sim/README.md, finding 6): the peer is
/// still initiating, so it has not answered ours. Where the peer's key is
/// the higher, it ignores the first crossing initiation of ours in its run
/// of attempts as the winner of a race (its own to us is pending) and
/// records its timestamp, so copies of ours would be refused as replays
/// until our next attempt, while its copies stay refused by us; it answers
/// the next fresh one. If the stale initiation only crossed ours in flight,
/// the peer may have answered ours already: that response is then
/// unexpected and the fresh initiation is answered instead, one round trip
/// later. So the renewal waits until ours has been pending for
/// [`FIRST_RESEND`], the least gap between two of the peer's copies
/// (finding 8): a stale copy that comes sooner was sent before ours
/// arrived, says nothing of whether the peer answered it, and renewing on it
/// turned the peer's answer into an unexpected response and our fresh
/// initiation into the race its next run ignores (5.1 s to come back).
fn reach_out(p: &mut Peer, now: Instant, incarnation: u64, timestamp: Tai64N) {
    if p.stale
        .is_none_or(|(i, t)| i != incarnation || t < timestamp)
    {
        p.stale = Some((incarnation, timestamp));
    }
    match p.reached_out {
        Some(t) if now - t < REKEY_TIMEOUT => {
            let ours = p
                .pending
                .as_ref()
                .is_some_and(|h| h.sent_at >= t && now - h.sent_at >= FIRST_RESEND);
            if !ours || p.reach_out_renewed {
                return;
            }
            p.reach_out_renewed = true;
        }
        _ => {
            p.reached_out = Some(now);
            p.reach_out_renewed = false;
        }
    }
    p.pending = None;
    p.want_resend = false;
    p.start_handshake(now);
}

fn parse_initiation_payload(payload: &[u8]) -> Option<(Tai64N, u64)> {
    if payload.len() != INITIATION_PAYLOAD_LEN {
        return None;
    }
    let ts = Tai64N::from_bytes(payload[..TAI64N_LEN].try_into().ok()?);
    let inc = u64::from_le_bytes(payload[TAI64N_LEN..].try_into().ok()?);
    Some((ts, inc))
}

/// A fresh local index for a session of the peer in `slot`: the low 16 bits
/// name the slot (so lookups are direct), the high 16 are random so indices
/// of successive sessions differ and are not predictable.
fn new_index<R: RngCore>(rng: &mut R, p: &Peer, slot: usize) -> u32 {
    loop {
        let index = (rng.next_u32() & 0xffff_0000) | slot as u32;
        if !p.uses_index(index) {
            return index;
        }
    }
}

#[cfg(test)]
mod tests;
