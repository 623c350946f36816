//! sdt's protocol core driven over a [smoltcp] interface: the runtime for
//! embedded targets and userspace IP stacks.
//!
//! A [`SmolNode`] owns an [`sdt_core::node::Node`], a smoltcp [`Interface`]
//! and a [`SocketSet`], and plays the runtime's part of the node contract
//! over them: one smoltcp UDP socket for the link, one per customer socket
//! the node asks for, and (for a router entry) a second `phy::Device` that
//! stands for the TUN device. Everything that decides stays in core; this
//! crate only moves bytes and time, through core's own glue
//! ([`Node::carry_out`] and [`Node::flush`] over the [`Io`](sdt_core::node::Io)
//! trait).
//!
//! The crate is `#![no_std]` and uses no heap: every socket buffer lives in a
//! caller-provided [`Storage`] (which can be a `static`), and the socket
//! slots of the [`SocketSet`] are a caller-provided slice. The `std` feature
//! (on by default) adds [`host`]: a TUN/TAP device and a wall clock.
//!
//! # Driving a node
//!
//! ```text
//! loop {
//!     let now = clock();                       // smoltcp::time::Instant
//!     node.poll(now, &mut device);             // or poll_with_tun(..)
//!     sleep_or_wait_for_irq(node.poll_delay(now));
//! }
//! ```
//!
//! [`SmolNode::poll`] reads every packet the device has (up to
//! [`POLL_BUDGET`]), hands every datagram the sockets received to the node
//! (copied into a scratch buffer at [`HEADROOM`]), runs the node's timers and
//! sends what came out. [`SmolNode::poll_delay`] is the earlier of smoltcp's
//! and the node's next deadline.
//!
//! # Sockets
//!
//! - `Io::bind(local)` binds a pooled UDP socket to `local`; an unspecified
//!   address binds every address of the interface, a specified one must be
//!   one of the interface's, and port 0 picks an ephemeral port.
//! - `Io::connect(remote)` binds a pooled socket to an ephemeral port
//!   (49152..=65535, skipping every UDP port in use on the set) and remembers
//!   `remote`. smoltcp UDP sockets are not connected, so datagrams from
//!   anyone but `remote` are dropped here and counted as
//!   [`RuntimeStats::stray`].
//! - `Io::close` closes the smoltcp socket (unbinds it, empties its buffers)
//!   and returns it to the pool. The sockets themselves stay in the set for
//!   the node's life: their buffers are borrowed from [`Storage`], and a
//!   socket removed from a `SocketSet` cannot give them back.
//!
//! # Router mode
//!
//! A router entry takes IP packets **directly from a device of its own**
//! (the `tun` argument of [`SmolNode::poll_with_tun`], any `phy::Device` of
//! medium IP), not from a smoltcp raw socket on the interface, and writes
//! the forged replies back to that device. Why not a raw socket: the entry
//! must take packets addressed to *any* destination, and smoltcp's interface
//! drops packets that are not for one of its own addresses before a raw
//! socket sees them (`any_ip` only helps with routes pointing back at the
//! interface); UDP to the interface's own ports would also be consumed by
//! its UDP sockets; and a raw socket needs a second set of socket buffers
//! where the device already is a queue. The device is the exact counterpart
//! of the mio daemon's TUN device: on Linux, [`host::open_tun`]; on a board,
//! whatever network the routed clients sit on.
//!
//! # Time
//!
//! smoltcp counts microseconds in an `i64` since an origin the application
//! chooses; core counts nanoseconds in a `u64`. [`core_instant`] maps one to
//! the other (negative times clamp to zero), so the application passes one
//! clock, smoltcp's, and must never let it go backwards.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod glue;
#[cfg(feature = "std")]
pub mod host;
mod notun;
mod time;

use core::net::SocketAddr;

use heapless::Deque;
use rand_core::{CryptoRng, RngCore};
use sdt_core::node::TRANSMIT_BUFFER;
use sdt_core::node::{Node, NodeEvent, ServiceId, SocketId, HEADROOM, TAILROOM};
use smoltcp::iface::{Interface, PollIngressSingleResult, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{Device, Medium, RxToken};
use smoltcp::socket::udp;
use smoltcp::wire::IpListenEndpoint;

pub use notun::{Never, NoTun};
pub use time::{core_instant, smol_duration, smol_instant};

use glue::Glue;

/// The largest IP packet this runtime handles: datagrams that arrive on a
/// socket, and packets read from a router device, must fit in it (larger
/// ones are dropped and counted as [`RuntimeStats::oversize`]). The node
/// itself keeps every link frame within its peer's link MTU
/// ([`sdt_core::mtu`], [`sdt_core::mtu::DEFAULT_LINK_MTU`] = 1500 unless
/// set) and drops larger customer datagrams as `too_big`: keep peers' `mtu`
/// at most this.
pub const MTU: usize = 1500;

/// Bytes of the buffer every datagram is copied into before the node sees
/// it: [`HEADROOM`] + [`MTU`] + [`TAILROOM`].
pub const PACKET_BUF: usize = HEADROOM + MTU + TAILROOM;

/// Packets one [`SmolNode::poll`] reads from each device before it returns
/// `true` ("call again").
pub const POLL_BUDGET: usize = 64;

/// Node events kept for [`SmolNode::poll_event`]; newer ones are lost (and
/// counted) when the application does not drain them.
pub const EVENT_QUEUE: usize = 16;

/// First port of the ephemeral range for connected sockets.
pub const EPHEMERAL_FIRST: u16 = 49152;

/// One socket of the pool: the smoltcp handle and who uses it.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    handle: Option<SocketHandle>,
    owner: Option<SocketId>,
    remote: Option<SocketAddr>,
}

impl Slot {
    const EMPTY: Slot = Slot {
        handle: None,
        owner: None,
        remote: None,
    };
}

/// Every buffer a [`SmolNode`] uses, sized by const generics so that it can
/// be a `static` on a board without heap.
///
/// - `N`: UDP sockets, the link socket included (so `N - 1` customer
///   sockets: service sockets plus exit channels); at least 2.
/// - `PKTS`: datagrams each socket queues per direction.
/// - `BYTES`: payload bytes each socket queues per direction (at least the
///   largest datagram, [`MTU`] − 28 for IPv4).
///
/// Memory: about `N * (2 * BYTES + 2 * PKTS * 48)` bytes for the sockets,
/// plus [`PACKET_BUF`] and a handshake buffer.
pub struct Storage<const N: usize, const PKTS: usize, const BYTES: usize> {
    slots: [Slot; N],
    rx_meta: [[udp::PacketMetadata; PKTS]; N],
    tx_meta: [[udp::PacketMetadata; PKTS]; N],
    rx: [[u8; BYTES]; N],
    tx: [[u8; BYTES]; N],
    packet: [u8; PACKET_BUF],
    scratch: [u8; TRANSMIT_BUFFER],
}

impl<const N: usize, const PKTS: usize, const BYTES: usize> Storage<N, PKTS, BYTES> {
    /// Zeroed storage; `const`, so it can initialise a `static`.
    pub const fn new() -> Self {
        Storage {
            slots: [Slot::EMPTY; N],
            rx_meta: [const { [udp::PacketMetadata::EMPTY; PKTS] }; N],
            tx_meta: [const { [udp::PacketMetadata::EMPTY; PKTS] }; N],
            rx: [[0; BYTES]; N],
            tx: [[0; BYTES]; N],
            packet: [0; PACKET_BUF],
            scratch: [0; TRANSMIT_BUFFER],
        }
    }
}

impl<const N: usize, const PKTS: usize, const BYTES: usize> Default for Storage<N, PKTS, BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

/// What the runtime itself counted: everything the node did not see or
/// could not be told about. The node counts its own drops
/// ([`Node::service_stats`], [`Node::node_drops`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Datagrams from someone other than the remote of a connected socket.
    pub stray: u64,
    /// Datagrams or router packets larger than [`MTU`], dropped unread.
    pub oversize: u64,
    /// Sends refused because a socket's transmit buffer was full.
    pub send_full: u64,
    /// Sends refused for another reason (unaddressable destination, a
    /// datagram larger than the socket's buffer, a closed socket).
    pub send_failed: u64,
    /// Socket opens refused: the pool was empty, the address is not the
    /// interface's, the port is in use.
    pub open_failed: u64,
    /// Router packets for a service with no device in this poll, or that
    /// the device had no room for.
    pub tun_failed: u64,
    /// Drops the node reported (each also counted by the node, by reason).
    pub node_drops: u64,
    /// Events lost because the application did not drain them.
    pub events_lost: u64,
}

/// Why [`SmolNode::new`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetupError {
    /// The socket slot slice is shorter than the storage's `N`, or `N < 2`.
    TooFewSockets,
    /// The link socket could not be bound (port 0).
    LinkBind,
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SetupError::TooFewSockets => "need at least N >= 2 socket slots",
            SetupError::LinkBind => "cannot bind the link socket",
        })
    }
}

/// The sockets and counters the glue works on: everything but the node,
/// the interface and the buffers, so they can be borrowed apart.
pub(crate) struct Net<'a> {
    pub(crate) set: SocketSet<'a>,
    pub(crate) slots: &'a mut [Slot],
    pub(crate) next_port: u16,
    pub(crate) stats: RuntimeStats,
    pub(crate) events: Deque<NodeEvent, EVENT_QUEUE>,
}

/// A node driven over a smoltcp interface.
///
/// Getters: [`node`](Self::node), [`iface`](Self::iface),
/// [`sockets`](Self::sockets), [`stats`](Self::stats),
/// [`local_endpoint`](Self::local_endpoint). Commands go to the node
/// itself through [`node_mut`](Self::node_mut) (add a peer or a service,
/// connect) and take effect on the next poll. Input and output:
/// [`poll`](Self::poll) / [`poll_with_tun`](Self::poll_with_tun), then
/// [`poll_delay`](Self::poll_delay) for when to poll next, and
/// [`poll_event`](Self::poll_event) for what happened. `now` must never go
/// backwards.
///
/// The application may add sockets of its own to the set
/// ([`sockets_mut`](Self::sockets_mut)) in the slots past the first `N`;
/// they are polled with the node's and it reads them after each poll.
pub struct SmolNode<'a, R, const P: usize, const S: usize, const C: usize> {
    node: Node<R, P, S, C>,
    iface: Interface,
    net: Net<'a>,
    packet: &'a mut [u8; PACKET_BUF],
    scratch: &'a mut [u8; TRANSMIT_BUFFER],
}

impl<'a, R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize>
    SmolNode<'a, R, P, S, C>
{
    /// Takes over `node` and `iface` (configured by the application:
    /// addresses, routes, peers, services), adds `N` UDP sockets built on
    /// `storage` to a set on `sockets` (at least `N` slots; the rest are the
    /// application's), and binds the first to `link` for the link.
    pub fn new<const N: usize, const PKTS: usize, const BYTES: usize>(
        node: Node<R, P, S, C>,
        iface: Interface,
        link: SocketAddr,
        sockets: &'a mut [SocketStorage<'a>],
        storage: &'a mut Storage<N, PKTS, BYTES>,
    ) -> Result<Self, SetupError> {
        if N < 2 || sockets.len() < N {
            return Err(SetupError::TooFewSockets);
        }
        let Storage {
            slots,
            rx_meta,
            tx_meta,
            rx,
            tx,
            packet,
            scratch,
        } = storage;
        let mut set = SocketSet::new(&mut sockets[..]);
        let buffers = rx_meta
            .iter_mut()
            .zip(rx.iter_mut())
            .zip(tx_meta.iter_mut().zip(tx.iter_mut()));
        for (slot, ((rm, r), (tm, t))) in slots.iter_mut().zip(buffers) {
            let socket = udp::Socket::new(
                udp::PacketBuffer::new(&mut rm[..], &mut r[..]),
                udp::PacketBuffer::new(&mut tm[..], &mut t[..]),
            );
            *slot = Slot {
                handle: Some(set.add(socket)),
                owner: None,
                remote: None,
            };
        }
        let link_handle = slots[0].handle.ok_or(SetupError::TooFewSockets)?;
        set.get_mut::<udp::Socket>(link_handle)
            .bind(listen_endpoint(link))
            .map_err(|_| SetupError::LinkBind)?;
        Ok(SmolNode {
            node,
            iface,
            net: Net {
                set,
                slots: &mut slots[..],
                next_port: EPHEMERAL_FIRST,
                stats: RuntimeStats::default(),
                events: Deque::new(),
            },
            packet,
            scratch,
        })
    }

    // ---- getters ----

    /// The node, for its counters and link status.
    pub fn node(&self) -> &Node<R, P, S, C> {
        &self.node
    }

    /// The node, for commands (`add_peer`, `add_service`, `connect`); their
    /// socket requests and handshakes go out on the next poll. Do not call
    /// its `handle_*` methods: [`SmolNode::poll`] does.
    pub fn node_mut(&mut self) -> &mut Node<R, P, S, C> {
        &mut self.node
    }

    /// The interface.
    pub fn iface(&self) -> &Interface {
        &self.iface
    }

    /// The interface, to change addresses or routes.
    pub fn iface_mut(&mut self) -> &mut Interface {
        &mut self.iface
    }

    /// The socket set: the node's `N` UDP sockets and the application's.
    pub fn sockets(&self) -> &SocketSet<'a> {
        &self.net.set
    }

    /// The socket set, to add, read and write the application's own
    /// sockets. Leave the node's sockets alone.
    pub fn sockets_mut(&mut self) -> &mut SocketSet<'a> {
        &mut self.net.set
    }

    /// What the runtime counted.
    pub fn stats(&self) -> &RuntimeStats {
        &self.net.stats
    }

    /// Where customer socket `socket` is bound (the ephemeral port of a
    /// connected socket, for example), or `None` if it is not open.
    pub fn local_endpoint(&self, socket: SocketId) -> Option<IpListenEndpoint> {
        let slot = self.net.slots.iter().find(|s| s.owner == Some(socket))?;
        Some(self.net.set.get::<udp::Socket>(slot.handle?).endpoint())
    }

    /// The link socket's endpoint.
    pub fn link_endpoint(&self) -> IpListenEndpoint {
        let handle = self.net.slots[0].handle.expect("link socket");
        self.net.set.get::<udp::Socket>(handle).endpoint()
    }

    /// The node's open customer sockets: who asked for each, where it is
    /// bound and, for a connected one, its remote.
    pub fn customer_sockets(
        &self,
    ) -> impl Iterator<Item = (SocketId, IpListenEndpoint, Option<SocketAddr>)> + use<'_, 'a, R, P, S, C>
    {
        self.net.slots.iter().filter_map(|s| {
            let endpoint = self.net.set.get::<udp::Socket>(s.handle?).endpoint();
            Some((s.owner?, endpoint, s.remote))
        })
    }

    /// Customer sockets open now (the link socket not counted).
    pub fn open_sockets(&self) -> usize {
        self.net.slots.iter().filter(|s| s.owner.is_some()).count()
    }

    // ---- input and output ----

    /// Polls without a router device; see [`SmolNode::poll_with_tun`].
    pub fn poll<D: Device + ?Sized>(
        &mut self,
        now: smoltcp::time::Instant,
        device: &mut D,
    ) -> bool {
        self.poll_inner::<D, NoTun>(now, device, None)
    }

    /// Does everything due at `now`: carries out commands given since the
    /// last poll, reads up to [`POLL_BUDGET`] packets from `device` and from
    /// `tun` (the IP device of router entry `service`), hands every
    /// datagram the node's sockets hold to the node, runs the node's timers
    /// and transmits what came out.
    ///
    /// Returns `true` if a budget ran out with packets left: call again
    /// without waiting.
    pub fn poll_with_tun<D: Device + ?Sized, T: Device + ?Sized>(
        &mut self,
        now: smoltcp::time::Instant,
        device: &mut D,
        service: ServiceId,
        tun: &mut T,
    ) -> bool {
        self.poll_inner(now, device, Some((service, tun)))
    }

    /// How long until the next poll is due: the earlier of smoltcp's and
    /// the node's deadlines. `None`: nothing is due until a packet comes.
    pub fn poll_delay(&mut self, now: smoltcp::time::Instant) -> Option<smoltcp::time::Duration> {
        let iface = self.iface.poll_delay(now, &self.net.set);
        let node = self
            .node
            .poll_timeout()
            .map(|t| smol_duration(t.saturating_since(core_instant(now))));
        match (iface, node) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next node event (handshakes, restarts, mismatches), oldest first.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.net.events.pop_front()
    }

    // ---- internals ----

    fn poll_inner<D: Device + ?Sized, T: Device + ?Sized>(
        &mut self,
        now: smoltcp::time::Instant,
        device: &mut D,
        tun: Option<(ServiceId, &mut T)>,
    ) -> bool {
        let t = core_instant(now);
        // A router device carries IP packets: one of another medium is
        // neither read nor written (writes count as `tun_failed`).
        let mut tun = tun.filter(|(_, dev)| dev.capabilities().medium == Medium::Ip);
        let mut more = false;
        // Commands since the last poll (a service's socket, a handshake).
        self.flush(now, &mut tun);
        self.run_timers(now, &mut tun);
        // Whatever the sockets already hold (an earlier poll ran out of budget).
        self.drain_sockets(now, device, &mut tun);
        let mut budget = POLL_BUDGET;
        loop {
            let r = self
                .iface
                .poll_ingress_single(now, device, &mut self.net.set);
            match r {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => {
                    self.drain_sockets(now, device, &mut tun);
                }
            }
            budget -= 1;
            if budget == 0 {
                more = true;
                break;
            }
        }
        if let Some(service) = tun.as_ref().map(|(service, _)| *service) {
            more |= self.read_tun(now, t, service, device, &mut tun);
        }
        self.run_timers(now, &mut tun);
        self.iface.poll_egress(now, device, &mut self.net.set);
        more
    }

    /// Reads up to [`POLL_BUDGET`] packets from the router device, as one
    /// batch.
    fn read_tun<D: Device + ?Sized, T: Device + ?Sized>(
        &mut self,
        now: smoltcp::time::Instant,
        t: sdt_core::Instant,
        service: ServiceId,
        device: &mut D,
        tun: &mut Option<(ServiceId, &mut T)>,
    ) -> bool {
        let mut more = true;
        for _ in 0..POLL_BUDGET {
            let Some((_, dev)) = tun.as_mut() else {
                more = false;
                break;
            };
            let Some((rx, _)) = dev.receive(now) else {
                more = false;
                break;
            };
            let packet = &mut self.packet;
            let len = rx.consume(|bytes| {
                let room = packet.len() - HEADROOM - TAILROOM;
                (bytes.len() <= room).then(|| {
                    packet[HEADROOM..HEADROOM + bytes.len()].copy_from_slice(bytes);
                    bytes.len()
                })
            });
            let Some(len) = len else {
                self.net.stats.oversize += 1;
                continue;
            };
            let result = self.node.handle_tun_packet(
                t,
                service,
                &mut self.packet[..],
                HEADROOM..HEADROOM + len,
            );
            let mut io = Glue::new(&mut self.net, &self.iface, now, tun);
            self.node.carry_out(&mut io, &self.packet[..], result);
            self.iface.poll_egress(now, device, &mut self.net.set);
        }
        // The packets read are one batch: what they caused beyond their own
        // output (handshakes, events) goes out once.
        self.flush(now, tun);
        more
    }

    /// Hands every datagram the node's sockets hold to the node,
    /// transmitting what each one causes before the next is read, so that
    /// no socket's transmit queue overflows; then flushes the node once for
    /// the whole batch.
    fn drain_sockets<D: Device + ?Sized, T: Device + ?Sized>(
        &mut self,
        now: smoltcp::time::Instant,
        device: &mut D,
        tun: &mut Option<(ServiceId, &mut T)>,
    ) {
        let t = core_instant(now);
        for i in 0..self.net.slots.len() {
            loop {
                let slot = self.net.slots[i];
                let Some(handle) = slot.handle else { break };
                if i > 0 && slot.owner.is_none() {
                    break;
                }
                let Some(received) = glue::recv(&mut self.net, handle, &mut self.packet[..]) else {
                    break;
                };
                let Some((from, len)) = received else {
                    continue;
                };
                let range = HEADROOM..HEADROOM + len;
                let result = match slot.owner {
                    None => self
                        .node
                        .handle_link_datagram(t, from, &mut self.packet[..], range),
                    Some(socket) => {
                        if slot.remote.is_some_and(|r| r != from) {
                            self.net.stats.stray += 1;
                            continue;
                        }
                        self.node.handle_customer_datagram(
                            t,
                            socket,
                            from,
                            &mut self.packet[..],
                            range,
                        )
                    }
                };
                let mut io = Glue::new(&mut self.net, &self.iface, now, tun);
                self.node.carry_out(&mut io, &self.packet[..], result);
                if self.node.needs_flush() {
                    self.node.flush(&mut io, t, &mut self.scratch[..]);
                }
                self.iface.poll_egress(now, device, &mut self.net.set);
            }
        }
        // Everything the sockets held is one batch, flushed once.
        self.flush(now, tun);
        self.iface.poll_egress(now, device, &mut self.net.set);
    }

    /// Runs the node's timers if one is due.
    fn run_timers<T: Device + ?Sized>(
        &mut self,
        now: smoltcp::time::Instant,
        tun: &mut Option<(ServiceId, &mut T)>,
    ) {
        let t = core_instant(now);
        if self.node.poll_timeout().is_some_and(|d| d <= t) {
            self.node.handle_timeout(t);
            self.flush(now, tun);
        }
    }

    fn flush<T: Device + ?Sized>(
        &mut self,
        now: smoltcp::time::Instant,
        tun: &mut Option<(ServiceId, &mut T)>,
    ) {
        let t = core_instant(now);
        let mut io = Glue::new(&mut self.net, &self.iface, now, tun);
        self.node.flush(&mut io, t, &mut self.scratch[..]);
    }
}

/// The smoltcp endpoint to bind for `addr`: an unspecified address binds
/// every address of the interface.
pub(crate) fn listen_endpoint(addr: SocketAddr) -> IpListenEndpoint {
    IpListenEndpoint {
        addr: (!addr.ip().is_unspecified()).then(|| addr.ip().into()),
        port: addr.port(),
    }
}
