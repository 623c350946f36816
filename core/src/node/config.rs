//! What a service is: its id, its mode and which half of it this node holds.

use core::net::SocketAddr;
use core::time::Duration;

use crate::allow::AllowList;
use crate::ip::l3::IpNet;
use crate::link::PeerId;
use crate::wire::ServiceId;

/// Most rules a router exit's allow-list holds.
pub const MAX_ALLOW_RULES: usize = 32;

/// Most address ranges an L3 exit service gives its peer
/// ([`Role::RouterTunExit`]).
pub const MAX_PEER_ADDRESSES: usize = 16;

/// The four modes of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One fixed customer at each end.
    Direct,
    /// A UDP port forward: a channel per client.
    Forward,
    /// One way, entry to exit, no replies.
    Push,
    /// Whole IP packets from a TUN device at the entry, a channel per
    /// (client, destination).
    Router,
}

impl Mode {
    /// The name used in configs and status output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Forward => "forward",
            Mode::Push => "push",
            Mode::Router => "router",
        }
    }

    /// Whether this build of sdt-core carries the mode: push and router
    /// are cargo features (`push`, `router`, both on by default), so that a
    /// firmware that uses neither links none of their code. A node refuses
    /// a service of a mode it was built without
    /// ([`ServiceError::ModeNotBuilt`]).
    pub const fn is_built(self) -> bool {
        match self {
            Mode::Direct | Mode::Forward => true,
            Mode::Push => cfg!(feature = "push"),
            Mode::Router => cfg!(feature = "router"),
        }
    }
}

impl core::fmt::Display for Mode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which half of a service this node holds. The mirror image of a mode is
/// the same two halves on the other two nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Half {
    /// Customers send here first: it listens.
    Entry,
    /// It has the target.
    Exit,
    /// Direct mode: both ends are alike.
    Both,
}

impl Half {
    /// The name used in status output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Half::Entry => "entry",
            Half::Exit => "exit",
            Half::Both => "both",
        }
    }

    /// Whether `self` on one node and `other` on its peer make a whole
    /// service: an entry with an exit, or both sides of a direct service.
    pub const fn complements(self, other: Half) -> bool {
        matches!(
            (self, other),
            (Half::Entry, Half::Exit) | (Half::Exit, Half::Entry) | (Half::Both, Half::Both)
        )
    }
}

impl core::fmt::Display for Half {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A service's mode and half, with what that half needs. Invalid
/// combinations (an exit without a target, ...) cannot be written.
///
/// The router exit's inline allow-list makes this enum large; core has no
/// heap to box it in, and a node holds only a few services, once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Role {
    /// Direct mode: this node's `listen` socket and the one `customer`
    /// allowed to use it, who also receives everything from the peer.
    Direct {
        /// Bound socket for the customer.
        listen: SocketAddr,
        /// The fixed customer's address.
        customer: SocketAddr,
    },
    /// Forward entry: clients send to `listen`.
    ForwardEntry {
        /// Bound socket for clients.
        listen: SocketAddr,
    },
    /// Forward exit: each channel gets a socket connected to `target`.
    ForwardExit {
        /// Where datagrams go.
        target: SocketAddr,
    },
    /// Push entry: anyone sending to `listen` is shipped across.
    PushEntry {
        /// Bound socket for senders.
        listen: SocketAddr,
    },
    /// Push exit: one socket connected to `target` sends everything.
    PushExit {
        /// Where datagrams go.
        target: SocketAddr,
    },
    /// Router entry: IP packets come from the runtime's TUN device.
    RouterEntry,
    /// Router exit: a socket per channel, connected to the destination the
    /// frame names, if the allow-list permits it (empty allows nothing).
    RouterExit {
        /// Destinations this exit may send to.
        allow: AllowList<MAX_ALLOW_RULES>,
    },
    /// Router entry of an L3 service (`exit = "tun"`): every IP packet from
    /// the TUN device goes whole to the peer, and the peer's packets are
    /// written whole to it.
    RouterTunEntry,
    /// Router exit of an L3 service: the peer's IP packets, if their source
    /// is in `peer_addresses` and the allow-list permits their destination,
    /// are written to the exit's TUN device for the kernel to route; what
    /// the exit's TUN device gives back goes to the service whose
    /// `peer_addresses` hold its destination. Needs exactly one peer.
    RouterTunExit {
        /// Destinations (and protocols, ports) this exit may send to.
        allow: AllowList<MAX_ALLOW_RULES>,
        /// The peer's addresses, as WireGuard's AllowedIPs: its packets
        /// must come from them, and packets to them go to it.
        peer_addresses: heapless::Vec<IpNet, MAX_PEER_ADDRESSES>,
    },
}

impl Role {
    /// The role's mode.
    pub const fn mode(&self) -> Mode {
        match self {
            Role::Direct { .. } => Mode::Direct,
            Role::ForwardEntry { .. } | Role::ForwardExit { .. } => Mode::Forward,
            Role::PushEntry { .. } | Role::PushExit { .. } => Mode::Push,
            Role::RouterEntry
            | Role::RouterExit { .. }
            | Role::RouterTunEntry
            | Role::RouterTunExit { .. } => Mode::Router,
        }
    }

    /// The role's half.
    pub const fn half(&self) -> Half {
        match self {
            Role::Direct { .. } => Half::Both,
            Role::ForwardEntry { .. }
            | Role::PushEntry { .. }
            | Role::RouterEntry
            | Role::RouterTunEntry => Half::Entry,
            Role::ForwardExit { .. }
            | Role::PushExit { .. }
            | Role::RouterExit { .. }
            | Role::RouterTunExit { .. } => Half::Exit,
        }
    }

    /// Whether the peer may be the first to send in a service of this
    /// role: this node holds the exit half (the peer the entry), or it is a
    /// direct service, where either side's customer may start. Such a
    /// service keeps the link up (see `Node::add_service`).
    pub const fn peer_may_send_first(&self) -> bool {
        !matches!(self.half(), Half::Entry)
    }

    /// Whether frames of this mode carry a channel number (an L3 router
    /// service's frames carry whole IP packets, without one).
    pub const fn has_channels(&self) -> bool {
        matches!(self.mode(), Mode::Forward | Mode::Router) && !self.is_l3()
    }

    /// Whether this is a half of an L3 router service (`exit = "tun"`).
    pub const fn is_l3(&self) -> bool {
        matches!(self, Role::RouterTunEntry | Role::RouterTunExit { .. })
    }

    /// Whether frames of this mode carry a per-service sequence number
    /// (push: the exit counts what was lost in transit and acknowledges).
    pub const fn has_sequences(&self) -> bool {
        matches!(self.mode(), Mode::Push)
    }

    /// Whether the peer's exit may tell this half that a target refused a
    /// datagram: a notice frame, empty, naming the channel and the
    /// destination. Entries of services whose exit sends from a socket per
    /// channel (forward, socket router) hear them; an L3 exit's kernel
    /// answers with ICMP itself.
    pub const fn hears_refusals(&self) -> bool {
        matches!(self, Role::ForwardEntry { .. } | Role::RouterEntry)
    }

    /// The socket a service of this role has of its own, which the node
    /// asks the runtime for when the service starts (`Action::Bind` or
    /// `Action::Connect`) and closes when it is removed. Exits of forward
    /// and router open a socket per channel instead, and router entries
    /// read a TUN device the runtime owns.
    pub(crate) const fn own_socket(&self) -> Option<OwnSocket> {
        match *self {
            Role::Direct { listen, .. }
            | Role::ForwardEntry { listen }
            | Role::PushEntry { listen } => Some(OwnSocket::Bind(listen)),
            Role::PushExit { target } => Some(OwnSocket::Connect(target)),
            Role::ForwardExit { .. }
            | Role::RouterEntry
            | Role::RouterExit { .. }
            | Role::RouterTunEntry
            | Role::RouterTunExit { .. } => None,
        }
    }
}

/// A service's own socket ([`Role::own_socket`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnSocket {
    /// Bound to this local address, for the service's customers.
    Bind(SocketAddr),
    /// Connected to the service's one target.
    Connect(SocketAddr),
}

/// Which peers a service talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peers {
    /// Exactly this peer.
    One(PeerId),
    /// Any configured peer (exit halves only: a collector taking pushes from
    /// many machines). Channels are kept apart per peer.
    Any,
}

impl Peers {
    /// Whether `peer` may use the service.
    pub fn admits(self, peer: PeerId) -> bool {
        match self {
            Peers::One(p) => p == peer,
            Peers::Any => true,
        }
    }
}

/// Channel table limits of a forward or router service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelLimits {
    /// Most channels open at once on this node.
    pub max_channels: u16,
    /// A channel with no traffic in either direction for this long closes.
    pub idle_timeout: Duration,
    /// When the table is full, the least recently used channel is evicted
    /// for a new client only if it has been idle at least this long;
    /// otherwise the least recently used
    /// [answered](crate::channel::Channel::answered) exchange is evicted,
    /// however recent; failing
    /// both, the new client's datagram is dropped. So a flood of
    /// one-query clients (DNS) turns the table over at any rate, while a
    /// conversation is protected for this long.
    pub min_idle_for_eviction: Duration,
    /// New channels per second, with bursts of as many: on the entry for
    /// the whole service (a flood of new clients), on the exit per peer (a
    /// peer opening channels as fast as it can). Over it, the datagram that
    /// would open a channel is dropped as
    /// [`ServiceDrop::ChannelRateLimited`](super::ServiceDrop::ChannelRateLimited).
    pub new_channels_per_second: u32,
    /// Exit halves: how long after a channel's last datagram its socket,
    /// and so its local port, is held when the channel ends, before the
    /// port may serve another channel. A target's late reply to the old
    /// client then reaches the held socket and is dropped as
    /// [`ServiceDrop::LateReply`](super::ServiceDrop::LateReply), instead
    /// of reaching whichever new channel the OS gave the port to. Zero
    /// closes sockets at once, which is safe only if targets never answer
    /// after the channel ends.
    pub port_hold: Duration,
    /// Exit halves: the port hold, instead of `port_hold` (if shorter), of
    /// a channel that ends [answered](crate::channel::Channel::answered):
    /// each of its few requests got its reply, so a later datagram from the
    /// target would be unsolicited. This is what lets an exit serve a DNS
    /// server at thousands of new clients a second: every ended channel
    /// holds a port and a socket for its hold, and ports are at most 64 K
    /// per address (28 K in Linux's default ephemeral range), so 30 s holds
    /// cap the rate near 1,000 a second. Set it to `port_hold` to hold
    /// every port alike.
    pub answered_port_hold: Duration,
}

impl ChannelLimits {
    /// [`ChannelLimits::port_hold`] by default: Linux conntrack's timeout
    /// for a UDP flow without replies, so late replies sdt still drops are
    /// ones a Linux NAT in its place would not have forwarded either.
    pub const DEFAULT_PORT_HOLD: Duration = Duration::from_secs(30);

    /// [`ChannelLimits::answered_port_hold`] by default: well past a
    /// reply's retransmissions on one network path, and short enough that
    /// 5,000 new clients a second hold about 10,000 sockets, inside the
    /// daemon's table of 16,384.
    pub const DEFAULT_ANSWERED_PORT_HOLD: Duration = Duration::from_secs(2);

    /// The port hold of an exit channel of this service that ends now.
    pub fn hold_of(&self, channel: &crate::channel::Channel) -> Duration {
        if channel.answered() {
            self.answered_port_hold.min(self.port_hold)
        } else {
            self.port_hold
        }
    }
}

impl ChannelLimits {
    /// The defaults, in a `const` so that runtimes can name each field's
    /// default (the daemon's config defaults are these) without writing the
    /// numbers again.
    pub const DEFAULT: ChannelLimits = ChannelLimits {
        max_channels: 1024,
        idle_timeout: Duration::from_secs(60),
        min_idle_for_eviction: Duration::from_secs(5),
        new_channels_per_second: 10_000,
        port_hold: Self::DEFAULT_PORT_HOLD,
        answered_port_hold: Self::DEFAULT_ANSWERED_PORT_HOLD,
    };
}

impl Default for ChannelLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One service as configured on this node. The `id` and the mode must be
/// configured alike on both nodes, with complementary halves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The service id on the wire.
    pub id: ServiceId,
    /// Which peers may use it.
    pub peers: Peers,
    /// Mode and half.
    pub role: Role,
    /// Channel limits (forward and router modes).
    pub limits: ChannelLimits,
}

impl ServiceConfig {
    /// A service with default limits.
    pub fn new(id: ServiceId, peers: Peers, role: Role) -> Self {
        ServiceConfig {
            id,
            peers,
            role,
            limits: ChannelLimits::default(),
        }
    }

    /// The link liveness rule, in one place: the service keeps the link to
    /// `peer` up when `peer` may use it and may be the first to send in it
    /// ([`Role::peer_may_send_first`]). See `Node::add_service` for why.
    pub fn keeps_up(&self, peer: PeerId) -> bool {
        self.role.peer_may_send_first() && self.peers.admits(peer)
    }
}

/// Why [`Node::add_service`](super::Node::add_service) refused a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceError {
    /// Another service has this id.
    DuplicateId,
    /// An L3 router exit with no peer addresses, or for any peer: its
    /// addresses belong to one peer.
    BadPeerAddresses,
    /// Two L3 router exits give their peers overlapping address ranges: an
    /// address belongs to one peer.
    OverlappingPeerAddresses,
    /// The node holds its maximum number of services.
    TooManyServices,
    /// The service names a peer the node does not have.
    UnknownPeer,
    /// An entry half or a direct service must name exactly one peer: the one
    /// it sends to.
    NeedsOnePeer,
    /// `max_channels` is 0 or more than the node's channel table holds.
    BadChannelLimit,
    /// `idle_timeout` is zero.
    BadIdleTimeout,
    /// An outage buffer was given to a service that is not a push entry.
    NotPushEntry,
    /// The service's mode is a cargo feature of sdt-core (`push`,
    /// `router`) this build leaves out ([`Mode::is_built`]).
    ModeNotBuilt,
}

impl core::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ServiceError::DuplicateId => "two services with the same id",
            ServiceError::TooManyServices => "too many services",
            ServiceError::OverlappingPeerAddresses => {
                "two L3 router exits give their peers overlapping peer_addresses"
            }
            ServiceError::BadPeerAddresses => {
                "an L3 router exit names one peer and at least one of its addresses"
            }
            ServiceError::UnknownPeer => "the service names an unknown peer",
            ServiceError::NeedsOnePeer => "an entry half or a direct service must name one peer",
            ServiceError::BadChannelLimit => {
                "max_channels must be between 1 and the node's channel capacity"
            }
            ServiceError::BadIdleTimeout => "idle_timeout must not be zero",
            ServiceError::NotPushEntry => "only a push entry has an outage buffer",
            ServiceError::ModeNotBuilt => {
                "this build of sdt-core leaves out the service's mode (cargo features push, router)"
            }
        })
    }
}
