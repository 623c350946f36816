//! How large a customer datagram one link frame carries.
//!
//! Every data frame leaves in one UDP datagram of the link, and by default
//! that datagram must fit the link's path MTU without IP fragmentation, as
//! WireGuard's frames do: a fragmented frame is lost whole when any fragment
//! is, fragments are dropped by many firewalls and NATs, and reassembly
//! costs both hosts. So each peer has a link MTU ([`DEFAULT_LINK_MTU`]
//! unless configured) and the node drops, before sealing, any datagram whose
//! frame would exceed it, counted as
//! [`ServiceDrop::TooBig`](crate::node::ServiceDrop::TooBig).
//!
//! The largest customer payload a frame carries is
//!
//! ```text
//! max payload = mtu − IP header − UDP header − data frame − service header
//!             = mtu − (20 IPv4 | 40 IPv6) − 8 − 29 − H
//! ```
//!
//! where the IP header is that of the link's address family (of the peer's
//! current endpoint; an IPv4-mapped IPv6 endpoint travels as IPv4), 29 is
//! [`DataPacket::OVERHEAD`] (13 bytes of header, 16 of AEAD tag) and `H` is
//! the longest service header the frame's service and direction can use:
//! 1 byte of flags, 1 more for a service id of 7 or more, 4 for the channel
//! number of forward and router frames or the sequence number of push
//! frames (the number is counted at its
//! longest, so the limit does not change as channel numbers grow), and the
//! destination of router frames from entry to exit (6 bytes for an IPv4
//! destination, 18 for IPv6). For a link MTU of 1500 and service ids 0..=6:
//!
//! | mode, direction                   | `H` | IPv4 link | IPv6 link |
//! |-----------------------------------|-----|-----------|-----------|
//! | direct (both ways)                |   1 |  1442     |  1422     |
//! | forward (both ways), push         |   5 |  1438     |  1418     |
//! | router, to an IPv4 destination    |  11 |  1432     |  1412     |
//! | router, to an IPv6 destination    |  23 |  1420     |  1400     |
//! | router, replies                   |   5 |  1438     |  1418     |
//!
//! In router mode the payload is the UDP payload of the IP packet read from
//! the TUN device (or forged for a reply): the IP and UDP headers of the
//! customer's packet do not travel.
//!
//! A link MTU larger than the path's is the explicit opt-in to IP
//! fragmentation of link frames: the kernel then fragments the larger
//! frames. [`MAX_LINK_MTU`] (65535) lets every frame up to the largest IP
//! datagram through.

use core::net::SocketAddr;

use crate::wire::{DataPacket, ServiceHeaderRepr};

/// The link MTU of a peer unless configured: Ethernet's 1500.
pub const DEFAULT_LINK_MTU: u16 = 1500;
/// The smallest link MTU accepted: 576, the datagram every IPv4 host must
/// accept (RFC 791). It leaves 467 bytes for a router frame to an IPv6
/// destination over an IPv6 link (IPv6 paths carry at least 1280, RFC 8200).
pub const MIN_LINK_MTU: u16 = 576;
/// The largest link MTU, the largest IP datagram: with it the kernel
/// fragments every frame the path cannot carry whole.
pub const MAX_LINK_MTU: u16 = u16::MAX;
/// The IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// The IPv6 header without extension headers.
pub const IPV6_HEADER_LEN: usize = 40;
/// The UDP header.
pub const UDP_HEADER_LEN: usize = 8;

/// What an IPv4 packet read from a router entry's TUN device has beyond the
/// frame payload it becomes, at the least: the 20-byte IPv4 header and the 6
/// bytes of an ICMP echo header that do not travel (its type, code, checksum
/// and identifier; the 2-byte sequence number does). A UDP packet has 8
/// (its UDP header), so an echo request is the packet that fills a frame
/// first, and it sets the MTU.
pub const ROUTER_V4_PACKET_OVERHEAD: usize = IPV4_HEADER_LEN + 6;
/// [`ROUTER_V4_PACKET_OVERHEAD`] for IPv6: the 40-byte IPv6 header and 6.
pub const ROUTER_V6_PACKET_OVERHEAD: usize = IPV6_HEADER_LEN + 6;

/// The largest IP packet of either family a router entry carries in one link
/// frame, given the largest frame payload to an IPv4 and to an IPv6
/// destination ([`max_payload_len`]): the TUN device's default MTU, and the
/// MTU that ICMP Fragmentation Needed / Packet Too Big announce. At most
/// 65535.
///
/// For a link MTU of 1500 over IPv4 this is 1432 + 26 = 1458 (IPv4) and
/// 1420 + 46 = 1466 (IPv6), so 1458; over an IPv6 link 1438.
pub fn router_packet_mtu(max_payload_v4: usize, max_payload_v6: usize) -> u16 {
    let v4 = max_payload_v4.saturating_add(ROUTER_V4_PACKET_OVERHEAD);
    let v6 = max_payload_v6.saturating_add(ROUTER_V6_PACKET_OVERHEAD);
    u16::try_from(v4.min(v6)).unwrap_or(u16::MAX)
}

/// Whether `mtu` is an accepted link MTU, [`MIN_LINK_MTU`]..=[`MAX_LINK_MTU`].
pub const fn valid_link_mtu(mtu: u16) -> bool {
    mtu >= MIN_LINK_MTU
}

/// The IP header length of link datagrams to `endpoint`: IPv4 for an IPv4
/// address or an IPv4-mapped IPv6 address (a dual-stack socket sends those
/// as IPv4), IPv6 otherwise.
pub fn ip_header_len(endpoint: SocketAddr) -> usize {
    match endpoint.ip().to_canonical() {
        core::net::IpAddr::V4(_) => IPV4_HEADER_LEN,
        core::net::IpAddr::V6(_) => IPV6_HEADER_LEN,
    }
}

/// The longest data frame plaintext (service header and payload) one link
/// datagram of `mtu` to `endpoint` carries without fragmentation.
///
/// With no endpoint known the IPv4 header is assumed: the frame cannot leave
/// anyway, and only what is too big for either family is called too big.
pub fn max_plaintext_len(mtu: u16, endpoint: Option<SocketAddr>) -> usize {
    let ip = endpoint.map_or(IPV4_HEADER_LEN, ip_header_len);
    usize::from(mtu).saturating_sub(ip + UDP_HEADER_LEN + DataPacket::<&[u8]>::OVERHEAD)
}

/// The longest service header a frame shaped like `header` can have: the
/// channel or push sequence number, if any, counted at its longest (4 bytes), so that a
/// service's limit does not depend on how many channels it has numbered.
pub fn longest_header_len(header: &ServiceHeaderRepr) -> usize {
    ServiceHeaderRepr {
        channel: header.channel.map(|_| u32::MAX),
        sequence: header.sequence.map(|_| u32::MAX),
        ..*header
    }
    .buffer_len()
}

/// The largest customer payload a frame shaped like `header` carries in one
/// link datagram of `mtu` to `endpoint`; see the [module docs](self).
pub fn max_payload_len(
    mtu: u16,
    endpoint: Option<SocketAddr>,
    header: &ServiceHeaderRepr,
) -> usize {
    max_plaintext_len(mtu, endpoint).saturating_sub(longest_header_len(header))
}

#[cfg(test)]
mod tests {
    use core::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

    use crate::wire::ServiceId;

    use super::*;

    fn v4() -> Option<SocketAddr> {
        Some("192.0.2.1:51820".parse().unwrap())
    }

    fn v6() -> Option<SocketAddr> {
        Some("[2001:db8::1]:51820".parse().unwrap())
    }

    fn header(
        service: ServiceId,
        channel: bool,
        destination: Option<SocketAddr>,
    ) -> ServiceHeaderRepr {
        ServiceHeaderRepr {
            service,
            from_entry: true,
            channel: channel.then_some(0),
            destination,
            sequence: None,
        }
    }

    #[test]
    fn figures_of_the_docs_for_1500() {
        let dst4 = Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 53)));
        let dst6 = Some(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 53));
        let rows = [
            (header(ServiceId::new(0), false, None), 1442, 1422),
            (header(ServiceId::new(0), true, None), 1438, 1418),
            (header(ServiceId::new(0), true, dst4), 1432, 1412),
            (header(ServiceId::new(0), true, dst6), 1420, 1400),
        ];
        for (h, on_v4, on_v6) in rows {
            assert_eq!(max_payload_len(DEFAULT_LINK_MTU, v4(), &h), on_v4, "{h:?}");
            assert_eq!(max_payload_len(DEFAULT_LINK_MTU, v6(), &h), on_v6, "{h:?}");
        }
        // A service id of 7 or more takes one more byte.
        assert_eq!(
            max_payload_len(1500, v4(), &header(ServiceId::new(7), false, None)),
            1441
        );
    }

    #[test]
    fn the_limit_fills_the_mtu_exactly() {
        for mtu in [MIN_LINK_MTU, 1280, 1420, 1500, 9000, MAX_LINK_MTU] {
            for endpoint in [v4(), v6()] {
                let h = header(ServiceId::new(9), true, v6());
                let ip = ip_header_len(endpoint.unwrap());
                let frame = DataPacket::<&[u8]>::OVERHEAD
                    + longest_header_len(&h)
                    + max_payload_len(mtu, endpoint, &h);
                assert_eq!(ip + UDP_HEADER_LEN + frame, usize::from(mtu));
            }
        }
    }

    #[test]
    fn channel_numbers_do_not_move_the_limit() {
        let mut h = header(ServiceId::new(0), true, None);
        let first = max_payload_len(1500, v4(), &h);
        for number in [1, 255, 256, 65_535, 65_536, u32::MAX] {
            h.channel = Some(number);
            assert_eq!(max_payload_len(1500, v4(), &h), first);
        }
    }

    #[test]
    fn mapped_v4_endpoints_are_ipv4_and_no_endpoint_assumes_ipv4() {
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:51820".parse().unwrap();
        assert_eq!(ip_header_len(mapped), IPV4_HEADER_LEN);
        assert_eq!(max_plaintext_len(1500, None), max_plaintext_len(1500, v4()));
    }

    #[test]
    fn router_packet_mtu_of_the_docs() {
        let dst4 = Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 53)));
        let dst6 = Some(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 53));
        let mtu = |link| {
            router_packet_mtu(
                max_payload_len(1500, link, &header(ServiceId::new(1), true, dst4)),
                max_payload_len(1500, link, &header(ServiceId::new(1), true, dst6)),
            )
        };
        assert_eq!(mtu(v4()), 1458);
        assert_eq!(mtu(v6()), 1438);
        // A UDP packet of that size fits: its header is 2 bytes longer than
        // what an echo request leaves behind.
        let udp_payload = usize::from(mtu(v4())) - IPV4_HEADER_LEN - UDP_HEADER_LEN;
        assert!(udp_payload <= max_payload_len(1500, v4(), &header(ServiceId::new(1), true, dst4)));
        assert_eq!(router_packet_mtu(usize::MAX, 70_000), u16::MAX);
    }

    #[test]
    fn mtu_range() {
        assert!(!valid_link_mtu(0));
        assert!(!valid_link_mtu(MIN_LINK_MTU - 1));
        assert!(valid_link_mtu(MIN_LINK_MTU));
        assert!(valid_link_mtu(DEFAULT_LINK_MTU));
        assert!(valid_link_mtu(MAX_LINK_MTU));
        // Even the smallest MTU leaves room for the longest frame header.
        let h = header(ServiceId::new(255), true, v6());
        assert!(max_payload_len(MIN_LINK_MTU, v6(), &h) > 400);
    }
}
