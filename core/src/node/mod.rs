//! A node: the link plus the services it carries, in all four modes.
//!
//! A [`Node`] owns one [`Link`] and a set of services. Customer datagrams
//! come in from the runtime tagged with the [`SocketId`] of the socket they
//! arrived on; frames come in from the link socket; IP packets come in from a
//! router entry's TUN device. Each input returns at most one [`Output`]: a
//! frame to send on the link socket, a payload to send from a customer
//! socket, or a packet to write to the TUN device. Every datagram that goes
//! nowhere is counted under a [`Dropped`] reason.
//!
//! Each mode lives in its own module: [`direct`](self#modes),
//! `forward`, `push` and `router`, with the channel table mechanics they
//! share in `channels`.
//!
//! # Buffer layout
//!
//! Sealing and forging happen in place, so the runtime hands every datagram
//! in at an offset inside a larger buffer: at least [`HEADROOM`] free bytes
//! before it (room for the link header and the service header, or for the
//! IP and UDP headers of a router reply) and [`TAILROOM`] free bytes after
//! it (room for the AEAD tag). The returned [`Output`] names a range of that
//! same buffer.
//!
//! # Sockets
//!
//! Core never sees a socket. It asks for them with [`Action`]s from
//! [`Node::poll_action`]: bind a service's listen socket, open a socket
//! connected to a target for an exit channel, close one. The runtime must
//! carry out every pending action before it acts on an [`Output`] (the output
//! may use a socket an action just asked for), and reports a socket it could
//! not open with [`Node::socket_failed`].
//!
//! # Modes
//!
//! - **direct**: one fixed customer at each end; anyone else is a
//!   [`ServiceDrop::Stranger`].
//! - **forward**: a channel per client at the entry, a connected socket per
//!   channel at the exit; replies go back to the client that opened the
//!   channel and no one else.
//! - **push**: one way, entry to exit, no channels, no replies.
//! - **router**: like forward, but the entry takes IP packets and the frames
//!   name the destination, which the exit checks against its allow-list.
//!   With an L3 exit ([`Role::RouterTunEntry`], [`Role::RouterTunExit`])
//!   the frames carry whole IP packets instead, which the exit writes to a
//!   TUN device of its own ([`Node::handle_exit_tun_packet`] reads back).
//!
//! # Channel numbers
//!
//! The entry numbers the channels of a service from 0 upwards and never
//! reuses a number within the life of its link incarnation. So a reply on
//! number `n` can only belong to the client that opened `n`; if the entry
//! forgot `n` (expiry, eviction) the reply is dropped as
//! [`ServiceDrop::UnknownChannel`]. When the peer's node restarts
//! ([`LinkEvent::PeerRestarted`]) every channel of that peer is dropped
//! before any frame of the new incarnation is read, and when a service runs
//! out of numbers the node renews its incarnation towards that peer, which
//! makes both sides drop their channels.

mod channels;
mod config;
mod direct;
mod forward;
mod io;
mod l3;
mod push;
mod reload;
mod router;
mod size;
mod stage;
mod stats;
#[cfg(test)]
mod tests;

use core::net::SocketAddr;
use core::ops::Range;

use heapless::Deque;
use rand_core::{CryptoRng, RngCore};

use crate::channel::{ChannelId, ChannelTable, ServiceIndex};
use crate::key::PrivateKey;
use crate::link::{
    ConfigError, DropReason, Link, LinkEvent, PeerConfig, PeerId, Received, SendError, Transmit,
};
use crate::outbox::Storage;
use crate::rate::TokenBucket;
use crate::time::Instant;
use crate::wire::{DataPacket, ServiceHeaderRepr};
use config::OwnSocket;

pub use crate::wire::ServiceId;
pub use config::{
    ChannelLimits, Half, Mode, Peers, Role, ServiceConfig, ServiceError, MAX_ALLOW_RULES,
    MAX_PEER_ADDRESSES,
};
pub use io::{Io, OpenFailed};
pub use push::{ACK_DELAY, ACK_EVERY, ACK_STALE, EPOCH_JUMP, WINDOW as PUSH_WINDOW};
pub use reload::{ReloadError, ReloadSummary};
pub use stage::{STAGE_BYTES, STAGE_SLOTS, TRANSMIT_BUFFER};
pub use stats::{ServiceDrop, ServiceDrops, ServiceStats, Traffic};

/// Free bytes the runtime leaves before every datagram it hands in: the
/// larger of link header plus longest service header (13 + 24) and an IPv6
/// plus UDP header (48) for forging router replies.
pub const HEADROOM: usize = 48;
/// Free bytes the runtime leaves after every datagram: the AEAD tag.
pub const TAILROOM: usize = DataPacket::<&[u8]>::TAG_LEN;

/// Whether this build carries push and router mode ([`Mode::is_built`]).
/// A node without one refuses its services, so the code of that mode is
/// never reached; these guard the calls into it, so that the compiler
/// drops it (the forward-only firmware's flash: README, "Embedded").
const PUSH: bool = Mode::Push.is_built();
const ROUTER: bool = Mode::Router.is_built();

/// Channel sockets waiting to be opened; one handle call opens at most one.
const OPEN_QUEUE: usize = 4;
/// Events kept for the runtime; older ones are kept, newer ones lost when
/// the runtime does not drain them.
const EVENT_QUEUE: usize = 32;

/// A customer socket, named by core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketId {
    /// A service's own socket: the listen socket of an entry or a direct
    /// service, or the one connected socket of a push exit.
    Service(ServiceId),
    /// The connected socket of one exit channel.
    Channel(ChannelId),
}

/// A request to the runtime about customer sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Open a UDP socket bound to `local`.
    Bind {
        /// The socket's name in later events.
        socket: SocketId,
        /// Address to bind.
        local: SocketAddr,
    },
    /// Open a UDP socket on an ephemeral port, connected to `remote`, so the
    /// kernel drops datagrams from anyone else.
    Connect {
        /// The socket's name in later events.
        socket: SocketId,
        /// The target or destination.
        remote: SocketAddr,
    },
    /// Open an ICMP echo socket (on Linux `SOCK_DGRAM`/`IPPROTO_ICMP` or
    /// `IPPROTO_ICMPV6`) connected to `remote`, for a router exit's echo
    /// channel: what is sent from it is an ICMP message, header first (the
    /// kernel sets the identifier and checksum), and what it reads is the
    /// ICMP message of a reply.
    ConnectEcho {
        /// The socket's name in later events.
        socket: SocketId,
        /// The pinged host.
        remote: core::net::IpAddr,
    },
    /// Close the socket.
    Close {
        /// The socket to close.
        socket: SocketId,
    },
}

/// What to do with the datagram a handle call was given.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// Send `buf[range]` on the link socket to `to`.
    Link {
        /// The peer's endpoint.
        to: SocketAddr,
        /// The sealed frame within the buffer.
        range: Range<usize>,
    },
    /// Send `buf[range]` from customer socket `socket`, to `to` if given,
    /// else to the address it is connected to.
    Customer {
        /// The socket to send from.
        socket: SocketId,
        /// Destination of an unconnected socket.
        to: Option<SocketAddr>,
        /// The payload within the buffer.
        range: Range<usize>,
    },
    /// Write `buf[range]`, a whole IP packet, to the TUN device of the
    /// router entry service `service`.
    Tun {
        /// The service id.
        service: ServiceId,
        /// The packet within the buffer.
        range: Range<usize>,
    },
    /// A handshake or keepalive, consumed by the link; call
    /// [`Node::poll_transmit`] for anything it calls for.
    Consumed,
    /// The datagram waits for the link's handshake and goes out through
    /// [`Node::poll_transmit`] once the session is up.
    Queued,
}

/// Why a datagram went nowhere. Every drop is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Dropped by the link (unauthenticated, replayed, ...).
    Link(DropReason),
    /// Dropped above the link.
    Service(ServiceDrop),
}

impl core::fmt::Display for Dropped {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Dropped::Link(r) => write!(f, "link: {}", r.as_str()),
            Dropped::Service(r) => write!(f, "service: {}", r.as_str()),
        }
    }
}

/// Something the runtime should know, and usually log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// From the link.
    Link(LinkEvent),
    /// The peer's configuration of `service` does not match ours: `problem`
    /// is [`ServiceDrop::HalfMismatch`], [`ServiceDrop::ModeMismatch`] or
    /// [`ServiceDrop::WrongPeer`]. Reported once per service.
    Mismatch {
        /// The service id.
        service: ServiceId,
        /// The peer whose frame showed it.
        peer: PeerId,
        /// What does not match.
        problem: ServiceDrop,
    },
    /// A peer sent a frame for a service id this node does not have.
    /// Reported once per id.
    UnknownService {
        /// The id in the frame.
        service: ServiceId,
        /// The sender.
        peer: PeerId,
    },
    /// The runtime could not open a service's own socket: the service
    /// carries nothing until it is added again.
    ServiceSocketFailed {
        /// The service id.
        service: ServiceId,
    },
    /// A datagram of `len` bytes was dropped as [`ServiceDrop::TooBig`]: one
    /// link frame to `peer` carries at most `max` bytes of this service's
    /// payload ([`crate::mtu`]). Reported once per service; the counter
    /// counts every one.
    TooBig {
        /// The service id.
        service: ServiceId,
        /// The peer the frame was for.
        peer: PeerId,
        /// The datagram's payload length.
        len: usize,
        /// The largest payload that fits.
        max: usize,
    },
}

/// Checks a service's own settings against a channel table of `capacity`
/// (its peers and id are checked against the node by the caller).
fn check_service(config: &ServiceConfig, capacity: usize) -> Result<(), ServiceError> {
    if !config.role.mode().is_built() {
        return Err(ServiceError::ModeNotBuilt);
    }
    if config.peers == Peers::Any && config.role.half() != Half::Exit {
        return Err(ServiceError::NeedsOnePeer);
    }
    if let Role::RouterTunExit { peer_addresses, .. } = &config.role {
        if peer_addresses.is_empty() || config.peers == Peers::Any {
            return Err(ServiceError::BadPeerAddresses);
        }
    }
    if config.role.has_channels() {
        let max = usize::from(config.limits.max_channels);
        if max == 0 || max > capacity {
            return Err(ServiceError::BadChannelLimit);
        }
        if config.limits.idle_timeout.is_zero() {
            return Err(ServiceError::BadIdleTimeout);
        }
    }
    Ok(())
}

/// Whether two services are L3 router exits whose peer addresses overlap.
fn addresses_overlap(a: &ServiceConfig, b: &ServiceConfig) -> bool {
    let (
        Role::RouterTunExit {
            peer_addresses: x, ..
        },
        Role::RouterTunExit {
            peer_addresses: y, ..
        },
    ) = (&a.role, &b.role)
    else {
        return false;
    };
    x.iter().any(|n| y.iter().any(|m| n.overlaps(m)))
}

/// One service's state on this node.
#[derive(Debug)]
struct Service<B> {
    config: ServiceConfig,
    /// Entry halves: the next channel number to give out.
    next_number: u32,
    /// The service's own socket still has to be requested.
    socket_pending: bool,
    /// A mismatch was reported already.
    warned: bool,
    /// A [`NodeEvent::TooBig`] was reported already.
    too_big_reported: bool,
    /// Entry halves: channel creation of the whole service.
    new_channels: TokenBucket,
    /// Push entries: the sequence and the outage buffer.
    push: push::PushTx<B>,
    stats: ServiceStats,
}

/// One node: the link to up to `P` peers, up to `S` services and a channel
/// table of `C` channels shared by the services (`C` a power of two). `B`
/// is the storage of push entries' outage buffers, given by the runtime
/// ([`Node::set_push_buffer`]); a node without any needs no storage type.
pub struct Node<R, const P: usize, const S: usize, const C: usize, B = &'static mut [u8]> {
    link: Link<R, P>,
    services: heapless::Vec<Service<B>, S>,
    /// Index into `services` plus one by service id, 0 for none: a frame
    /// finds its service in O(1) however many are configured.
    by_id: [u8; 256],
    /// Services whose own socket is still to be requested, so that
    /// `poll_action` looks for them only when there are some.
    sockets_pending: usize,
    channels: ChannelTable<C>,
    /// Sockets of removed channels, to close. At most one per channel, so
    /// `C` entries hold every close one call can cause.
    closes: Deque<SocketId, C>,
    /// Own sockets of services a reload removed, to close.
    service_closes: Deque<SocketId, S>,
    opens: Deque<Action, OPEN_QUEUE>,
    events: Deque<NodeEvent, EVENT_QUEUE>,
    /// Drops no service can be blamed for.
    drops: ServiceDrops,
    /// Events that found the event queue full.
    events_lost: u64,
    /// Service ids already reported as unknown, one bit each.
    unknown_reported: [u64; 4],
    /// Exit halves: channel creation per peer.
    peer_new_channels: [TokenBucket; P],
    /// Datagrams waiting for a session.
    stage: stage::Stage,
    /// Router entries: ICMP errors forged, at most
    /// [`router::ICMP_ERRORS_PER_SECOND`] a second, as kernels limit theirs.
    icmp_errors: TokenBucket,
    /// Drops no handle call returned (staged datagrams given up), for
    /// `flush` to report.
    unreported_drops: u32,
    /// Push datagrams dropped from a full outage buffer, for `flush` to
    /// report.
    unreported_buffer_drops: u32,
    /// Push exit halves: each peer's sequence.
    push_rx: [push::PushRx; P],
    /// Peers owed a push acknowledgement, and when the first is due.
    acks: Deque<PeerId, P>,
    ack_due: Option<Instant>,
    /// Push entries with an outage buffer.
    outboxes: usize,
}

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize, B: Storage>
    Node<R, P, S, C, B>
{
    /// `by_id` names a service by its index plus one in a byte.
    const SERVICES_FIT: () = assert!(S <= 255, "a node holds at most 255 services");

    /// A node with no peers and no services. `unix_nanos` is the wall-clock
    /// time at `now`, for handshake timestamps.
    pub fn new(secret: PrivateKey, rng: R, now: Instant, unix_nanos: u64) -> Self {
        let () = Self::SERVICES_FIT;
        Node {
            link: Link::new(secret, rng, now, unix_nanos),
            services: heapless::Vec::new(),
            by_id: [0; 256],
            sockets_pending: 0,
            channels: ChannelTable::new(),
            closes: Deque::new(),
            service_closes: Deque::new(),
            opens: Deque::new(),
            events: Deque::new(),
            drops: ServiceDrops::default(),
            events_lost: 0,
            unknown_reported: [0; 4],
            peer_new_channels: [TokenBucket::new(); P],
            stage: stage::Stage::new(),
            icmp_errors: TokenBucket::new(),
            unreported_drops: 0,
            unreported_buffer_drops: 0,
            push_rx: [push::PushRx::IDLE; P],
            acks: Deque::new(),
            ack_due: None,
            outboxes: 0,
        }
    }

    // ---- configuration ----

    /// Adds a peer; see [`Link::add_peer`]. A service for any peer that
    /// the peer may send first in keeps its link up ([`Node::add_service`]).
    pub fn add_peer(&mut self, config: PeerConfig, now: Instant) -> Result<PeerId, ConfigError> {
        let id = self.link.add_peer(config, now)?;
        if self.services.iter().any(|s| s.config.keeps_up(id)) {
            self.link.keep_up(id);
        }
        Ok(id)
    }

    /// Adds a service. Its own socket, if it has one, is requested through
    /// [`Node::poll_action`].
    ///
    /// The link liveness rule ([`ServiceConfig::keeps_up`]): when the peer
    /// may be the first to send in the service (this node holds its exit half, or it is a
    /// direct service), the node keeps the link to that peer (to every peer,
    /// for a service of any peer) up whenever it knows the peer's endpoint.
    /// The peer may know no endpoint for this node; without this its
    /// customers' first datagrams would wait until this side happened to
    /// send. A node holding only entry halves brings the link up on its
    /// customers' first datagram, unless its peer config says `keep_up`.
    pub fn add_service(&mut self, config: ServiceConfig) -> Result<(), ServiceError> {
        if self.service_index(config.id).is_some() {
            return Err(ServiceError::DuplicateId);
        }
        match config.peers {
            config::Peers::One(p) if usize::from(p.0) >= self.link.peer_count() => {
                return Err(ServiceError::UnknownPeer)
            }
            _ => {}
        }
        check_service(&config, C)?;
        if self
            .services
            .iter()
            .any(|s| addresses_overlap(&s.config, &config))
        {
            return Err(ServiceError::OverlappingPeerAddresses);
        }
        let socket_pending = config.role.own_socket().is_some();
        let id = config.id;
        self.services
            .push(Service {
                config,
                next_number: 0,
                socket_pending,
                warned: false,
                too_big_reported: false,
                new_channels: TokenBucket::new(),
                push: push::PushTx::new(),
                stats: ServiceStats::default(),
            })
            .map_err(|_| ServiceError::TooManyServices)?;
        // At most 255 services (SERVICES_FIT): the length fits a byte.
        self.by_id[id.slot()] = self.services.len() as u8;
        self.sockets_pending += usize::from(socket_pending);
        self.keep_up_for(self.services.len() - 1);
        Ok(())
    }

    /// Keeps the link up for the service at `si` if its peer may send
    /// first (the rule of [`Node::add_service`]).
    fn keep_up_for(&mut self, si: usize) {
        for i in 0..self.link.peer_count() {
            let peer = PeerId(i as u16);
            if self.services[si].config.keeps_up(peer) {
                self.link.keep_up(peer);
            }
        }
    }

    /// Where service `id` sits in `services`.
    fn service_index(&self, id: ServiceId) -> Option<usize> {
        usize::from(self.by_id[id.slot()]).checked_sub(1)
    }

    /// Sends to `peer` at `endpoint` from now on; see
    /// [`Link::set_endpoint`]. Returns whether it changed.
    pub fn set_endpoint(&mut self, peer: PeerId, endpoint: SocketAddr, now: Instant) -> bool {
        self.link.set_endpoint(peer, endpoint, now)
    }

    /// Starts a handshake with `peer` now rather than on first traffic.
    pub fn connect(&mut self, peer: PeerId, now: Instant) {
        self.link.connect(peer, now);
    }

    /// Sets the handshake messages per second above which the node asks
    /// senders for cookies; see [`Link::set_load_threshold`] (0: always).
    /// The default suits every deployment we know of; tests lower it to
    /// reach the cookie path, and the simulation's harness test sets it to
    /// 0 to show its attacker check catches cookie replies sent without load.
    pub fn set_load_threshold(&mut self, per_second: u32) {
        self.link.set_load_threshold(per_second);
    }

    // ---- getters ----

    /// The link, for peer status.
    pub fn link(&self) -> &Link<R, P> {
        &self.link
    }

    /// Moves the send counter of `peer`'s current session (see
    /// [`Link::force_send_counter`]): the simulation's way to rekey by
    /// message count without sending 2^60 frames.
    #[cfg(any(test, feature = "testing"))]
    pub fn force_send_counter(&mut self, peer: PeerId, counter: u64) {
        self.link.force_send_counter(peer, counter);
    }

    /// The configured services, with their counters.
    pub fn services(&self) -> impl Iterator<Item = (&ServiceConfig, ServiceStats)> + '_ {
        self.services.iter().enumerate().map(|(i, s)| {
            let mut stats = s.stats;
            stats.channels_open = self.channels.service_len(ServiceIndex::at(i)) as u64;
            stats.ports_held = self.channels.service_held(ServiceIndex::at(i)) as u64;
            if let Some(o) = &s.push.outbox {
                stats.buffered = u64::from(o.len());
                stats.buffered_bytes = o.used() as u64;
            }
            (&s.config, stats)
        })
    }

    /// Counters of the service `id`.
    pub fn service_stats(&self, id: ServiceId) -> Option<ServiceStats> {
        self.services()
            .find(|(c, _)| c.id == id)
            .map(|(_, stats)| stats)
    }

    /// Drops that belong to no service (malformed headers, unknown ids,
    /// datagrams on sockets already closed).
    pub fn node_drops(&self) -> &ServiceDrops {
        &self.drops
    }

    /// Events that did not fit the event queue because the runtime did not
    /// poll it in time: they were counted here instead of reported.
    pub fn events_lost(&self) -> u64 {
        self.events_lost
    }

    /// The channel table, for status output.
    pub fn channels(&self) -> &ChannelTable<C> {
        &self.channels
    }

    // ---- input ----

    /// Handles a datagram that arrived on the link socket from `from`, held
    /// in `buf[datagram]` with [`HEADROOM`] free bytes before it.
    pub fn handle_link_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
        datagram: Range<usize>,
    ) -> Result<Output, Dropped> {
        let Some(frame) = buf.get_mut(datagram.clone()) else {
            return Err(self.node_drop(ServiceDrop::BufferLayout));
        };
        let received = self.link.handle_datagram(now, from, frame);
        // A restarted peer's channels must be gone before its data is read.
        self.absorb_link_events(now);
        let (peer, plaintext) = match received {
            Ok(Received::Data { peer, payload }) => (
                peer,
                datagram.start + payload.start..datagram.start + payload.end,
            ),
            Ok(_) => return Ok(Output::Consumed),
            Err(reason) => return Err(Dropped::Link(reason)),
        };
        let Ok((header, header_len)) = ServiceHeaderRepr::parse(&buf[plaintext.clone()]) else {
            return Err(self.node_drop(ServiceDrop::MalformedHeader));
        };
        let payload = plaintext.start + header_len..plaintext.end;
        let Some(si) = self.service_index(header.service) else {
            self.report_unknown(header.service, peer);
            return Err(self.node_drop(ServiceDrop::UnknownService));
        };
        let result = self
            .check_frame(si, peer, &header)
            .and_then(|()| self.frame_from_peer(now, si, peer, &header, buf, payload.clone()));
        match result {
            // A push acknowledgement carries nothing for customers.
            Ok(Output::Consumed) => Ok(Output::Consumed),
            Ok(output) => {
                self.services[si].stats.from_peer.add(payload.len());
                Ok(output)
            }
            Err(reason) => Err(self.service_drop(si, reason)),
        }
    }

    /// Handles a datagram from `from` that arrived on customer socket
    /// `socket`, held in `buf[payload]` with [`HEADROOM`] free bytes before
    /// it and [`TAILROOM`] after.
    pub fn handle_customer_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Result<Output, Dropped> {
        let (si, result) = match socket {
            SocketId::Service(id) => {
                let Some(si) = self.service_index(id) else {
                    return Err(self.node_drop(ServiceDrop::StaleSocket));
                };
                let result = match self.services[si].config.role {
                    Role::Direct { customer, .. } => {
                        self.direct_from_customer(now, si, customer, from, buf, payload.clone())
                    }
                    Role::ForwardEntry { .. } => {
                        self.forward_from_client(now, si, from, buf, payload.clone())
                    }
                    Role::PushEntry { .. } if PUSH => {
                        self.push_from_sender(now, si, buf, payload.clone())
                    }
                    Role::PushExit { .. } => Err(ServiceDrop::WrongDirection),
                    Role::PushEntry { .. }
                    | Role::ForwardExit { .. }
                    | Role::RouterEntry
                    | Role::RouterExit { .. }
                    | Role::RouterTunEntry
                    | Role::RouterTunExit { .. } => Err(ServiceDrop::StaleSocket),
                };
                (si, result)
            }
            SocketId::Channel(id) => {
                let Some(channel) = self.channels.get(id) else {
                    if let Some(held) = self.channels.held(id) {
                        let si = held.service.get();
                        return Err(self.service_drop(si, ServiceDrop::LateReply));
                    }
                    return Err(self.node_drop(ServiceDrop::StaleSocket));
                };
                let si = channel.service.get();
                (si, self.reply_from_target(now, id, buf, payload.clone()))
            }
        };
        self.absorb_link_events(now);
        match result {
            Ok(Output::Queued) => Ok(Output::Queued),
            Ok(output) => {
                self.services[si].stats.to_peer.add(payload.len());
                Ok(output)
            }
            Err(reason) => Err(self.service_drop(si, reason)),
        }
    }

    /// Handles an IP packet in `buf[packet]`, read from the TUN device of the
    /// router entry service `service`, with [`HEADROOM`] free bytes before
    /// it and [`TAILROOM`] after.
    pub fn handle_tun_packet(
        &mut self,
        now: Instant,
        service: ServiceId,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Result<Output, Dropped> {
        let Some(si) = self.service_index(service).filter(|&si| {
            ROUTER
                && matches!(
                    self.services[si].config.role,
                    Role::RouterEntry | Role::RouterTunEntry
                )
        }) else {
            return Err(self.node_drop(ServiceDrop::StaleSocket));
        };
        let result = if self.services[si].config.role == Role::RouterTunEntry {
            self.l3_entry_from_tun(now, si, buf, packet)
        } else {
            self.router_from_tun(now, si, buf, packet)
        };
        self.absorb_link_events(now);
        match result {
            Ok((Output::Queued, _)) => Ok(Output::Queued),
            // An ICMP error back to the sender: nothing went to the peer.
            Ok((output @ Output::Tun { .. }, _)) => Ok(output),
            Ok((output, payload_len)) => {
                self.services[si].stats.to_peer.add(payload_len);
                Ok(output)
            }
            Err(reason) => Err(self.service_drop(si, reason)),
        }
    }

    /// Handles an IP packet in `buf[packet]`, read from an L3 router exit's
    /// TUN device (any of them: several services, one per peer, may share
    /// one device), with [`HEADROOM`] free bytes before it and
    /// [`TAILROOM`] after. It goes to the peer of the L3 exit service whose
    /// `peer_addresses` hold its destination (the longest prefix), sealed;
    /// a packet for no peer's address is dropped as
    /// [`ServiceDrop::NoPeerForAddress`] (a node drop), and one too big for
    /// a link frame is answered, rate allowing, with Fragmentation Needed /
    /// Packet Too Big for the TUN device ([`Output::Tun`]).
    pub fn handle_exit_tun_packet(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Result<Output, Dropped> {
        if !ROUTER {
            // No L3 exit, so no peer address holds the destination.
            return Err(self.node_drop(ServiceDrop::NoPeerForAddress));
        }
        let result = self.l3_exit_from_tun(now, buf, packet);
        self.absorb_link_events(now);
        match result {
            Ok((_, output @ (Output::Tun { .. } | Output::Queued), _)) => Ok(output),
            Ok((si, output, len)) => {
                self.services[si].stats.to_peer.add(len);
                Ok(output)
            }
            Err((Some(si), reason)) => Err(self.service_drop(si, reason)),
            Err((None, reason)) => Err(self.node_drop(reason)),
        }
    }

    /// The runtime's socket `socket` reported that its target refused a
    /// datagram (ECONNREFUSED, from an ICMP port unreachable). Counted as
    /// `target_unreachable` for its service; for an exit channel of a
    /// forward or router service the entry is told in a small frame on the
    /// channel (returned, sealed in `buf`, which needs [`HEADROOM`] +
    /// [`ServiceHeaderRepr::MAX_LEN`] + [`TAILROOM`] bytes), so its status
    /// shows it too and a router entry answers the sender with ICMP.
    pub fn handle_target_refused(
        &mut self,
        now: Instant,
        socket: SocketId,
        buf: &mut [u8],
    ) -> Result<Output, Dropped> {
        let id = match socket {
            SocketId::Service(id) => {
                let Some(si) = self.service_index(id) else {
                    return Err(self.node_drop(ServiceDrop::StaleSocket));
                };
                self.services[si].stats.target_unreachable += 1;
                return Ok(Output::Consumed);
            }
            SocketId::Channel(id) => id,
        };
        let Some(channel) = self.channels.get(id).filter(|c| c.client.is_none()) else {
            return Err(self.node_drop(ServiceDrop::StaleSocket));
        };
        let (si, peer, number) = (channel.service.get(), PeerId(channel.peer), channel.number);
        let destination = match (&self.services[si].config.role, channel.destination) {
            (_, Some(d)) => d,
            (Role::ForwardExit { target }, None) => *target,
            _ => return Err(self.service_drop(si, ServiceDrop::StaleSocket)),
        };
        self.services[si].stats.target_unreachable += 1;
        let header = ServiceHeaderRepr {
            service: self.services[si].config.id,
            from_entry: false,
            channel: Some(number),
            destination: Some(destination),
            sequence: None,
        };
        let result = self.seal(now, peer, &header, buf, HEADROOM..HEADROOM);
        self.absorb_link_events(now);
        result.map_err(|reason| self.service_drop(si, reason))
    }

    /// The runtime could not open `socket`: its channel is dropped, or its
    /// service stops carrying traffic.
    pub fn socket_failed(&mut self, socket: SocketId) {
        match socket {
            SocketId::Channel(id) => {
                if let Some(channel) = self.channels.remove(id) {
                    let stats = &mut self.services[channel.service.get()].stats;
                    stats.channels_closed += 1;
                    stats.drops.add(ServiceDrop::SocketFailed);
                } else {
                    // Held before the runtime got to open it: there is no
                    // socket whose port needs holding.
                    self.channels.release_held(id);
                }
            }
            SocketId::Service(id) => {
                if let Some(s) = self.service_index(id).map(|si| &mut self.services[si]) {
                    s.stats.drops.add(ServiceDrop::SocketFailed);
                    self.notify(NodeEvent::ServiceSocketFailed { service: id });
                }
            }
        }
    }

    /// Runs the timers due at `now`: the link's, and channel expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
        self.absorb_link_events(now);
        self.expire_channels(now);
    }

    // ---- output ----

    /// A handshake, keepalive or staged datagram to send on the link
    /// socket, written to the start of `buf`: at least
    /// [`crate::link::MIN_TRANSMIT_BUFFER`] bytes, and [`TRANSMIT_BUFFER`]
    /// for every staged datagram to fit.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, SendError> {
        let t = self.link.poll_transmit(now, buf);
        self.absorb_link_events(now);
        match t {
            Ok(None) if PUSH => Ok(self
                .poll_ack(now, buf)
                .or_else(|| self.poll_outbox(now, buf))
                .or_else(|| self.poll_staged(now, buf))),
            Ok(None) => Ok(self.poll_staged(now, buf)),
            other => other,
        }
    }

    /// The next socket request. Carry them all out before acting on an
    /// [`Output`].
    pub fn poll_action(&mut self) -> Option<Action> {
        if let Some(socket) = self.closes.pop_front() {
            return Some(Action::Close { socket });
        }
        if let Some(socket) = self.service_closes.pop_front() {
            return Some(Action::Close { socket });
        }
        let pending = (self.sockets_pending > 0)
            .then(|| self.services.iter_mut().find(|s| s.socket_pending))
            .flatten();
        if let Some(s) = pending {
            s.socket_pending = false;
            self.sockets_pending -= 1;
            let socket = SocketId::Service(s.config.id);
            return match s.config.role.own_socket()? {
                OwnSocket::Bind(local) => Some(Action::Bind { socket, local }),
                OwnSocket::Connect(remote) => Some(Action::Connect { socket, remote }),
            };
        }
        self.opens.pop_front()
    }

    /// When to call [`Node::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.services.iter().enumerate().filter_map(|(i, s)| {
            let (_, last) = self.channels.oldest(ServiceIndex::at(i))?;
            Some(last.saturating_add(s.config.limits.idle_timeout))
        });
        expiry
            .chain(self.ack_due().filter(|_| PUSH))
            .chain(self.push_timeout().filter(|_| PUSH))
            .chain(self.channels.next_release())
            .chain(self.link.poll_timeout())
            .min()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    // ---- shared internals ----

    /// Checks a frame's header against the service it names: the peer, the
    /// half and the mode's shape. Mismatches are reported once per service.
    fn check_frame(
        &mut self,
        si: usize,
        peer: PeerId,
        header: &ServiceHeaderRepr,
    ) -> Result<(), ServiceDrop> {
        let s = &mut self.services[si];
        let role = &s.config.role;
        let problem = if !s.config.peers.admits(peer) {
            Some(ServiceDrop::WrongPeer)
        } else if match role.half() {
            Half::Entry => header.from_entry,
            Half::Exit => !header.from_entry && role.mode() != Mode::Push,
            Half::Both => false,
        } {
            Some(ServiceDrop::HalfMismatch)
        } else if header.channel.is_some() != role.has_channels()
            || header.sequence.is_some() != role.has_sequences()
            || (header.destination.is_some()
                != matches!(role, Role::RouterExit { .. })
                // An exit's notice that the target refused names it.
                && !role.hears_refusals())
        {
            Some(ServiceDrop::ModeMismatch)
        } else {
            None
        };
        match problem {
            None => Ok(()),
            Some(problem) => {
                if !core::mem::replace(&mut s.warned, true) {
                    let service = s.config.id;
                    self.notify(NodeEvent::Mismatch {
                        service,
                        peer,
                        problem,
                    });
                }
                Err(problem)
            }
        }
    }

    /// Dispatches an authenticated frame of service `si` to its mode.
    fn frame_from_peer(
        &mut self,
        now: Instant,
        si: usize,
        peer: PeerId,
        header: &ServiceHeaderRepr,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        let s = &self.services[si];
        if let Some(seq) = header.sequence {
            return match s.config.role {
                Role::PushExit { .. } if PUSH && header.from_entry => {
                    self.push_to_target(now, si, peer, seq, payload)
                }
                Role::PushEntry { .. } if PUSH && !header.from_entry && payload.is_empty() => {
                    Ok(self.push_acknowledged(now, si, seq))
                }
                _ => Err(ServiceDrop::WrongDirection),
            };
        }
        if header.destination.is_some() && s.config.role.hears_refusals() {
            let (Some(number), Some(destination)) = (header.channel, header.destination) else {
                return Err(ServiceDrop::ModeMismatch);
            };
            if !payload.is_empty() {
                return Err(ServiceDrop::ModeMismatch);
            }
            return self.unreachable_notice(now, si, peer, number, destination, buf, payload);
        }
        match (&s.config.role, header.channel) {
            (Role::Direct { customer, .. }, _) => {
                Ok(direct::to_customer(s.config.id, *customer, payload))
            }
            (Role::PushExit { .. } | Role::PushEntry { .. }, _) => Err(ServiceDrop::ModeMismatch),
            (Role::ForwardEntry { .. }, Some(number)) => {
                self.forward_reply(now, si, peer, number, payload)
            }
            (Role::ForwardExit { target }, Some(number)) => {
                let target = *target;
                self.forward_to_target(now, si, peer, number, target, payload)
            }
            (Role::RouterEntry, Some(number)) if ROUTER => {
                self.router_reply(now, si, peer, number, buf, payload)
            }
            (Role::RouterExit { .. }, Some(number)) if ROUTER => {
                let destination = header.destination.ok_or(ServiceDrop::ModeMismatch)?;
                self.router_to_destination(now, si, peer, number, destination, buf, payload)
            }
            (Role::RouterTunEntry, None) if ROUTER => self.l3_to_entry_tun(si, buf, payload),
            (Role::RouterTunExit { .. }, None) if ROUTER => self.l3_to_exit_tun(si, buf, payload),
            (Role::RouterEntry | Role::RouterExit { .. }, Some(_))
            | (Role::RouterTunEntry | Role::RouterTunExit { .. }, _)
            | (_, None) => Err(ServiceDrop::ModeMismatch),
        }
    }

    /// Writes `header` just before `buf[payload]`, seals the frame for
    /// `peer` in place and returns where it lies.
    fn seal(
        &mut self,
        now: Instant,
        peer: PeerId,
        header: &ServiceHeaderRepr,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        self.check_size(peer, header, payload.len())?;
        let header_len = header.buffer_len();
        let layout = payload
            .start
            .checked_sub(header_len)
            .and_then(|p| Some((p, p.checked_sub(DataPacket::<&[u8]>::HEADER_LEN)?)))
            .filter(|_| payload.end.saturating_add(TAILROOM) <= buf.len());
        let Some((plaintext_start, frame_start)) = layout else {
            return Err(ServiceDrop::BufferLayout);
        };
        header
            .emit(&mut buf[plaintext_start..payload.start])
            .map_err(|_| ServiceDrop::BufferLayout)?;
        let plaintext_len = payload.end - plaintext_start;
        match self
            .link
            .seal(now, peer, &mut buf[frame_start..], plaintext_len)
        {
            Ok(t) => Ok(Output::Link {
                to: t.to,
                range: frame_start..frame_start + t.len,
            }),
            Err(SendError::NoSession) => {
                // A buffered push entry keeps the datagram itself.
                let buffered = self
                    .service_index(header.service)
                    .is_some_and(|si| self.services[si].push.outbox.is_some());
                if buffered {
                    return Err(ServiceDrop::NoSession);
                }
                let plaintext = &buf[plaintext_start..payload.end];
                if self.stage(now, peer, header.service, plaintext, payload.len()) {
                    Ok(Output::Queued)
                } else {
                    Err(ServiceDrop::NoSession)
                }
            }
            Err(_) => Err(ServiceDrop::BufferLayout),
        }
    }

    /// Acts on the link's events: a restarted peer loses its channels and
    /// staged datagrams at once, a peer whose handshake gave up its staged
    /// datagrams. Every event is passed on to the runtime.
    fn absorb_link_events(&mut self, now: Instant) {
        if !self.link.has_events() {
            return;
        }
        while let Some(event) = self.link.poll_event() {
            match event {
                LinkEvent::PeerRestarted(peer) => {
                    self.drop_peer_channels(now, peer);
                    self.drop_staged(peer);
                    if PUSH {
                        self.push_peer_restarted(peer);
                    }
                }
                LinkEvent::SessionUp(peer) if PUSH => self.push_session_up(now, peer),
                LinkEvent::HandshakeTimedOut(peer) => self.drop_staged(peer),
                _ => {}
            }
            self.notify(NodeEvent::Link(event));
        }
    }

    fn service_drop(&mut self, si: usize, reason: ServiceDrop) -> Dropped {
        self.services[si].stats.drops.add(reason);
        Dropped::Service(reason)
    }

    fn node_drop(&mut self, reason: ServiceDrop) -> Dropped {
        self.drops.add(reason);
        Dropped::Service(reason)
    }

    /// Queues `event` for [`Node::poll_event`]. The queue holds
    /// `EVENT_QUEUE` events between two polls; one that does not fit is
    /// counted ([`Node::events_lost`]), never silently lost.
    fn notify(&mut self, event: NodeEvent) {
        if self.events.push_back(event).is_err() {
            self.events_lost = self.events_lost.saturating_add(1);
        }
    }

    fn report_unknown(&mut self, service: ServiceId, peer: PeerId) {
        let (word, bit) = (service.slot() / 64, 1u64 << (service.slot() % 64));
        if self.unknown_reported[word] & bit == 0 {
            self.unknown_reported[word] |= bit;
            self.notify(NodeEvent::UnknownService { service, peer });
        }
    }
}
