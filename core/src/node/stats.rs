//! Counters of services: traffic in each direction, channels, and every
//! drop by its reason.

/// Why the node dropped a datagram above the link. Every drop is counted
/// under one reason, per service where the service is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ServiceDrop {
    /// A frame's service header is malformed.
    MalformedHeader,
    /// A frame names a service id this node does not have.
    UnknownService,
    /// A frame came from a peer the service does not admit.
    WrongPeer,
    /// Both nodes hold the same half of the service (both entry, or both
    /// exit): a configuration mismatch.
    HalfMismatch,
    /// The frame's shape belongs to another mode (a channel number where
    /// none is used, or none where one is needed): a configuration mismatch.
    ModeMismatch,
    /// Direct mode: a datagram from someone other than the fixed customer.
    Stranger,
    /// Push mode: a datagram came back to the exit's socket, or a frame
    /// travelled exit to entry. Push is one way.
    WrongDirection,
    /// No session with the peer yet: a handshake was started, the datagram
    /// was dropped.
    NoSession,
    /// The channel table is full and no channel was idle long enough to be
    /// evicted.
    TableFull,
    /// A new channel over the service's (entry) or the peer's (exit) rate
    /// of channel creation.
    ChannelRateLimited,
    /// A reply for a channel this entry does not have (expired, evicted, or
    /// from before a restart).
    UnknownChannel,
    /// A datagram on a socket that was closed (its channel is gone).
    StaleSocket,
    /// Exit: a datagram on the socket of a channel that ended, while its
    /// port is held for late replies (`port_hold`); it belongs to no
    /// client any more.
    LateReply,
    /// A new channel found no free slot because ended channels' ports are
    /// held for late replies (`port_hold`) and no channel could be evicted
    /// without holding another.
    PortsHeld,
    /// The runtime could not open a socket the service needs.
    SocketFailed,
    /// Router exit: the destination is not in the allow-list.
    NotAllowed,
    /// Router exit: a frame names another destination than its channel's.
    DestinationMismatch,
    /// Router entry: an IP packet that is not UDP (TCP, ICMP, IPv6
    /// extension headers). Router mode carries UDP only.
    NotUdp,
    /// Router entry: an IPv4 fragment; fragments are not reassembled.
    Fragment,
    /// Router entry: a bad IP or UDP checksum.
    BadChecksum,
    /// Router entry: a malformed or unsupported IP packet.
    MalformedIp,
    /// The caller's buffer lacks the headroom or tailroom the node needs.
    BufferLayout,
    /// The datagram is larger than one link frame of the peer's link MTU
    /// carries ([`crate::mtu`]): sending it would need IP fragmentation of
    /// the frame, or could not be sent at all.
    TooBig,
    /// Push exit: a datagram whose sequence number was delivered already
    /// (sent again after an outage), or is too old to tell; not delivered
    /// twice.
    Duplicate,
    /// Push entry: the outage buffer was full and its oldest datagram was
    /// dropped to make room for a new one.
    BufferFull,
    /// L3 router exit: an IP packet from the peer whose source address is
    /// not in the service's `peer_addresses` (WireGuard's AllowedIPs check).
    SourceNotAllowed,
    /// L3 router exit: an IP packet from the exit's TUN device whose
    /// destination is in no L3 service's `peer_addresses` (a node drop).
    NoPeerForAddress,
}

impl ServiceDrop {
    /// Every reason, in the order of [`ServiceDrops`].
    pub const ALL: [ServiceDrop; 27] = [
        ServiceDrop::MalformedHeader,
        ServiceDrop::UnknownService,
        ServiceDrop::WrongPeer,
        ServiceDrop::HalfMismatch,
        ServiceDrop::ModeMismatch,
        ServiceDrop::Stranger,
        ServiceDrop::WrongDirection,
        ServiceDrop::NoSession,
        ServiceDrop::TableFull,
        ServiceDrop::ChannelRateLimited,
        ServiceDrop::UnknownChannel,
        ServiceDrop::StaleSocket,
        ServiceDrop::LateReply,
        ServiceDrop::PortsHeld,
        ServiceDrop::SocketFailed,
        ServiceDrop::NotAllowed,
        ServiceDrop::DestinationMismatch,
        ServiceDrop::NotUdp,
        ServiceDrop::Fragment,
        ServiceDrop::BadChecksum,
        ServiceDrop::MalformedIp,
        ServiceDrop::BufferLayout,
        ServiceDrop::TooBig,
        ServiceDrop::Duplicate,
        ServiceDrop::BufferFull,
        ServiceDrop::SourceNotAllowed,
        ServiceDrop::NoPeerForAddress,
    ];

    /// A short stable name, for status output and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            ServiceDrop::MalformedHeader => "malformed_header",
            ServiceDrop::UnknownService => "unknown_service",
            ServiceDrop::WrongPeer => "wrong_peer",
            ServiceDrop::HalfMismatch => "half_mismatch",
            ServiceDrop::ModeMismatch => "mode_mismatch",
            ServiceDrop::Stranger => "stranger",
            ServiceDrop::WrongDirection => "wrong_direction",
            ServiceDrop::NoSession => "no_session",
            ServiceDrop::TableFull => "table_full",
            ServiceDrop::ChannelRateLimited => "channel_rate_limited",
            ServiceDrop::UnknownChannel => "unknown_channel",
            ServiceDrop::StaleSocket => "stale_socket",
            ServiceDrop::LateReply => "late_reply",
            ServiceDrop::PortsHeld => "ports_held",
            ServiceDrop::SocketFailed => "socket_failed",
            ServiceDrop::NotAllowed => "not_allowed",
            ServiceDrop::DestinationMismatch => "destination_mismatch",
            ServiceDrop::NotUdp => "not_udp",
            ServiceDrop::Fragment => "fragment",
            ServiceDrop::BadChecksum => "bad_checksum",
            ServiceDrop::MalformedIp => "malformed_ip",
            ServiceDrop::BufferLayout => "buffer_layout",
            ServiceDrop::TooBig => "too_big",
            ServiceDrop::Duplicate => "duplicate",
            ServiceDrop::BufferFull => "buffer_full",
            ServiceDrop::SourceNotAllowed => "source_not_allowed",
            ServiceDrop::NoPeerForAddress => "no_peer_for_address",
        }
    }

    fn index(self) -> usize {
        // ALL lists the variants in declaration order.
        self as usize
    }
}

impl core::fmt::Display for ServiceDrop {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A count per [`ServiceDrop`] reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceDrops([u64; ServiceDrop::ALL.len()]);

impl ServiceDrops {
    /// Counts one drop.
    pub fn add(&mut self, reason: ServiceDrop) {
        self.0[reason.index()] += 1;
    }

    /// Drops counted under `reason`.
    pub fn get(&self, reason: ServiceDrop) -> u64 {
        self.0[reason.index()]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Non-zero counts, by reason.
    pub fn iter(&self) -> impl Iterator<Item = (ServiceDrop, u64)> + '_ {
        ServiceDrop::ALL
            .iter()
            .map(|&r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
    }
}

/// Datagrams and bytes in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams.
    pub datagrams: u64,
    /// Customer payload bytes (without any header).
    pub bytes: u64,
}

impl Traffic {
    pub(crate) fn add(&mut self, bytes: usize) {
        self.datagrams += 1;
        self.bytes += bytes as u64;
    }
}

/// The counters of one service on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Customer datagrams sent across the link.
    pub to_peer: Traffic,
    /// Datagrams from the link delivered to customers.
    pub from_peer: Traffic,
    /// Channels open now.
    pub channels_open: u64,
    /// Exit: sockets of ended channels held now, so their ports serve no
    /// other channel while late replies may still arrive (`port_hold`).
    pub ports_held: u64,
    /// Channels created since start.
    pub channels_created: u64,
    /// Channels closed because they were idle for `idle_timeout`.
    pub channels_expired: u64,
    /// Channels evicted to make room for a new one.
    pub channels_evicted: u64,
    /// Channels closed because their peer restarted or the runtime could
    /// not give them a socket.
    pub channels_closed: u64,
    /// Exit: the target or destination refused a datagram (the channel
    /// socket got ECONNREFUSED, from ICMP port unreachable); entry: the
    /// exit's notices of that. Counted, not a drop: the datagram left.
    pub target_unreachable: u64,
    /// Router entry: ICMP errors forged back to senders (port unreachable,
    /// fragmentation needed / packet too big).
    pub icmp_errors_sent: u64,
    /// Router entry: ICMP errors not sent, over the node's rate of them.
    pub icmp_errors_rate_limited: u64,
    /// Push exit: datagrams missing from the sequence the entry sent (a
    /// gap in the sequence numbers not filled within the reorder window of
    /// 64), lost between the two nodes.
    pub lost_in_transit: u64,
    /// Push exit: datagrams that arrived after a later one (counted lost
    /// until they came, then not).
    pub reordered: u64,
    /// Push entry: datagrams sent that the exit never acknowledged before it
    /// restarted, without an outage buffer to send them again: most likely
    /// lost with the exit.
    pub unconfirmed: u64,
    /// Push entry: datagrams in the outage buffer now, sent and waiting for
    /// the exit's acknowledgement or not sent yet.
    pub buffered: u64,
    /// Push entry: bytes of the outage buffer in use now.
    pub buffered_bytes: u64,
    /// Drops by reason.
    pub drops: ServiceDrops,
}
