//! Router mode's IP/UDP glue: reading UDP datagrams out of the IP packets a
//! TUN device hands over, and forging IP packets around UDP payloads that
//! come out of the tunnel.
//!
//! Router mode carries UDP only. [`parse_udp`] takes an IPv4 or IPv6 packet
//! and finds the UDP datagram in it, refusing everything else with a counted
//! [`IpDrop`] reason; [`forge_udp`] builds, in place in the caller's buffer,
//! the IP and UDP headers in front of a payload. Every header layout and
//! checksum is smoltcp's (`smoltcp::wire`); this module only decides what is
//! taken and what is refused.
//!
//! IPv6 socket addresses carry no flow information or scope here: parsed
//! addresses have both set to 0, and [`forge_udp`] ignores them.

pub mod gro;
pub mod gso;
pub mod icmp;
pub mod l3;

use core::fmt;
use core::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use core::ops::Range;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr,
    IPV4_HEADER_LEN, IPV6_HEADER_LEN, UDP_HEADER_LEN,
};

/// The TTL (IPv4) or hop limit (IPv6) of forged packets.
pub const HOP_LIMIT: u8 = 64;

/// Header bytes [`forge_udp`] writes in front of an IPv4 payload: a 20-byte
/// IPv4 header without options and the 8-byte UDP header, 28 in all.
pub const IPV4_UDP_HEADER_LEN: usize = IPV4_HEADER_LEN + UDP_HEADER_LEN;

/// Header bytes [`forge_udp`] writes in front of an IPv6 payload: the
/// 40-byte IPv6 header and the 8-byte UDP header, 48 in all.
pub const IPV6_UDP_HEADER_LEN: usize = IPV6_HEADER_LEN + UDP_HEADER_LEN;

/// The longest UDP payload that fits in an IPv4 packet: its total length
/// field counts the IPv4 and UDP headers too.
pub const IPV4_UDP_MAX_PAYLOAD: usize = u16::MAX as usize - IPV4_UDP_HEADER_LEN;

/// The longest UDP payload that fits in an IPv6 packet without a jumbogram:
/// its payload length field (and the UDP length field) counts the UDP header.
pub const IPV6_UDP_MAX_PAYLOAD: usize = u16::MAX as usize - UDP_HEADER_LEN;

/// A UDP datagram found in an IP packet read from a TUN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram {
    /// The sender: IP source address and UDP source port (which may be 0).
    pub source: SocketAddr,
    /// The receiver: IP destination address and UDP destination port (never 0).
    pub destination: SocketAddr,
    /// Where the UDP payload lies within the packet slice.
    pub payload: Range<usize>,
}

/// Why an IP packet was not taken (each is a counted drop reason in the node).
///
/// What the caller must do: count the drop under [`IpDrop::as_str`] and
/// discard the packet. None is answered (no ICMP error is sent back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum IpDrop {
    /// Truncated, or a length field is inconsistent with the bytes: shorter
    /// than its headers, an IP length past the end of the slice, a UDP
    /// length past the IP payload, an IPv4 header length under 20 bytes, or
    /// a UDP destination port of 0. An empty slice is malformed too.
    Malformed,
    /// IPv4 fragments (MF set or offset != 0) are not reassembled; neither
    /// are IPv6 packets with a Fragment header.
    Fragment,
    /// Not UDP: TCP, ICMP, IPv6 extension headers before UDP, ... — router
    /// mode carries UDP only.
    NotUdp,
    /// The IPv4 header checksum or the UDP checksum is wrong, or an IPv6 UDP
    /// datagram has a zero checksum (which RFC 8200 forbids).
    BadChecksum,
    /// The IP version (the first nibble) is neither 4 nor 6.
    Unsupported,
}

impl IpDrop {
    /// Every reason, in declaration order.
    pub const ALL: [IpDrop; 5] = [
        IpDrop::Malformed,
        IpDrop::Fragment,
        IpDrop::NotUdp,
        IpDrop::BadChecksum,
        IpDrop::Unsupported,
    ];

    /// A short stable name, for status output and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            IpDrop::Malformed => "ip_malformed",
            IpDrop::Fragment => "ip_fragment",
            IpDrop::NotUdp => "ip_not_udp",
            IpDrop::BadChecksum => "ip_bad_checksum",
            IpDrop::Unsupported => "ip_unsupported",
        }
    }
}

impl fmt::Display for IpDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for IpDrop {}

/// Parses an IPv4 or IPv6 packet (version from the first nibble) carrying
/// UDP.
///
/// Verifies the IPv4 header checksum and the UDP checksum; a zero UDP
/// checksum ("none computed") is accepted for IPv4 and refused for IPv6. The
/// IP total length (IPv4) or payload length (IPv6) must fit in `packet`;
/// bytes after it are ignored. The UDP length must fit in the IP payload,
/// and the returned payload range ends where the UDP length says (bytes
/// between the end of the UDP datagram and the end of the IP payload are
/// ignored, as Linux does).
///
/// IPv4 options are accepted and skipped. An IPv6 packet is taken only if
/// its next header is UDP itself: any extension header is refused, a
/// Fragment header as [`IpDrop::Fragment`] and the others as
/// [`IpDrop::NotUdp`].
///
/// The checksums are checked before anything else is believed, so a
/// corrupted header is counted as [`IpDrop::BadChecksum`] rather than, say,
/// as a fragment. Never panics, whatever the bytes.
pub fn parse_udp(packet: &[u8]) -> Result<UdpDatagram, IpDrop> {
    match packet.first().map(|byte| byte >> 4) {
        None => Err(IpDrop::Malformed),
        Some(4) => parse_ipv4(packet),
        Some(6) => parse_ipv6(packet),
        Some(_) => Err(IpDrop::Unsupported),
    }
}

fn parse_ipv4(packet: &[u8]) -> Result<UdpDatagram, IpDrop> {
    let (ip, repr) = checked_ipv4(packet, IpProtocol::Udp)?;
    let offset = usize::from(ip.header_len());
    let (source_port, destination_port, payload) = parse_udp_header(
        ip.payload(),
        &IpAddress::Ipv4(repr.src_addr),
        &IpAddress::Ipv4(repr.dst_addr),
    )?;
    Ok(UdpDatagram {
        source: SocketAddr::V4(SocketAddrV4::new(repr.src_addr, source_port)),
        destination: SocketAddr::V4(SocketAddrV4::new(repr.dst_addr, destination_port)),
        payload: offset + payload.start..offset + payload.end,
    })
}

fn parse_ipv6(packet: &[u8]) -> Result<UdpDatagram, IpDrop> {
    let (ip, repr) = checked_ipv6(packet, IpProtocol::Udp)?;
    let (source_port, destination_port, payload) = parse_udp_header(
        ip.payload(),
        &IpAddress::Ipv6(repr.src_addr),
        &IpAddress::Ipv6(repr.dst_addr),
    )?;
    let offset = IPV6_HEADER_LEN;
    Ok(UdpDatagram {
        source: SocketAddr::V6(SocketAddrV6::new(repr.src_addr, source_port, 0, 0)),
        destination: SocketAddr::V6(SocketAddrV6::new(repr.dst_addr, destination_port, 0, 0)),
        payload: offset + payload.start..offset + payload.end,
    })
}

/// The IPv4 header of `packet`, checked before anything in it is believed
/// (length, IHL, header checksum, no fragment) and carrying `protocol`
/// (anything else is [`IpDrop::NotUdp`]: not carried). Shared by the UDP
/// and the ICMP parsers so that both refuse the same headers.
pub(crate) fn checked_ipv4(
    packet: &[u8],
    protocol: IpProtocol,
) -> Result<(Ipv4Packet<&[u8]>, Ipv4Repr), IpDrop> {
    let ip = Ipv4Packet::new_checked(packet).map_err(|_| IpDrop::Malformed)?;
    // smoltcp's check_len lets an IHL under 5 through; such a header would
    // overlap its own addresses.
    if usize::from(ip.header_len()) < IPV4_HEADER_LEN {
        return Err(IpDrop::Malformed);
    }
    if !ip.verify_checksum() {
        return Err(IpDrop::BadChecksum);
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(IpDrop::Fragment);
    }
    // Version, lengths and the header checksum are already checked, so this
    // cannot fail; it is kept so that smoltcp has the last word.
    let repr =
        Ipv4Repr::parse(&ip, &ChecksumCapabilities::default()).map_err(|_| IpDrop::Malformed)?;
    if repr.next_header != protocol {
        return Err(IpDrop::NotUdp);
    }
    Ok((ip, repr))
}

/// The IPv6 header of `packet`, checked, with `protocol` as its next
/// header (a Fragment header is [`IpDrop::Fragment`], anything else
/// [`IpDrop::NotUdp`]).
pub(crate) fn checked_ipv6(
    packet: &[u8],
    protocol: IpProtocol,
) -> Result<(Ipv6Packet<&[u8]>, Ipv6Repr), IpDrop> {
    let ip = Ipv6Packet::new_checked(packet).map_err(|_| IpDrop::Malformed)?;
    let repr = Ipv6Repr::parse(&ip).map_err(|_| IpDrop::Malformed)?;
    match repr.next_header {
        next if next == protocol => Ok((ip, repr)),
        IpProtocol::Ipv6Frag => Err(IpDrop::Fragment),
        _ => Err(IpDrop::NotUdp),
    }
}

/// Checks the UDP datagram that is the IP payload `bytes`; returns its ports
/// and where its payload lies within `bytes`.
fn parse_udp_header(
    bytes: &[u8],
    source: &IpAddress,
    destination: &IpAddress,
) -> Result<(u16, u16, Range<usize>), IpDrop> {
    let udp = UdpPacket::new_checked(bytes).map_err(|_| IpDrop::Malformed)?;
    // smoltcp's verify_checksum (and so UdpRepr::parse) takes a zero
    // checksum as "none computed" whatever the IP version; only IPv4 allows
    // that (RFC 768 vs RFC 8200 section 8.1).
    if udp.checksum() == 0 && matches!(source, IpAddress::Ipv6(_)) {
        return Err(IpDrop::BadChecksum);
    }
    if !udp.verify_checksum(source, destination) {
        return Err(IpDrop::BadChecksum);
    }
    // The checksum is verified just above (so that a failure is told apart
    // from the one other refusal of UdpRepr::parse, a destination port of 0).
    let repr = UdpRepr::parse(&udp, source, destination, &ChecksumCapabilities::ignored())
        .map_err(|_| IpDrop::Malformed)?;
    let payload = UDP_HEADER_LEN..usize::from(udp.len());
    Ok((repr.src_port, repr.dst_port, payload))
}

/// Why [`forge_udp`] could not build a packet.
///
/// What the caller must do: these are all the caller's own mistakes (a
/// buffer laid out without enough headroom, a payload too long for IP, or
/// addresses of two families); drop the payload and count it. Nothing was
/// written to the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForgeError {
    /// The source is IPv4 and the destination IPv6, or the other way round.
    FamilyMismatch,
    /// Fewer than [`udp_header_len`] bytes in front of the payload.
    NoHeadroom,
    /// The payload is longer than [`IPV4_UDP_MAX_PAYLOAD`] or
    /// [`IPV6_UDP_MAX_PAYLOAD`]: its length would not fit the IP length field.
    TooLong,
    /// The payload range is not within the buffer, or ends before it starts.
    BadRange,
}

impl fmt::Display for ForgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForgeError::FamilyMismatch => "source and destination are of different IP versions",
            ForgeError::NoHeadroom => "no room for the IP and UDP headers before the payload",
            ForgeError::TooLong => "payload too long for an IP packet",
            ForgeError::BadRange => "payload range not within the buffer",
        })
    }
}

impl core::error::Error for ForgeError {}

/// Header bytes [`forge_udp`] writes in front of a payload sent to `addr`:
/// [`IPV4_UDP_HEADER_LEN`] (28) for IPv4, [`IPV6_UDP_HEADER_LEN`] (48) for
/// IPv6.
pub const fn udp_header_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => IPV4_UDP_HEADER_LEN,
        SocketAddr::V6(_) => IPV6_UDP_HEADER_LEN,
    }
}

/// Builds, in place, a complete IP+UDP packet from `source` to `destination`
/// around the payload already at `buf[payload]`, and returns the range of the
/// whole packet within `buf`.
///
/// The headers go into the [`udp_header_len`] bytes just before
/// `payload.start`; the payload bytes are not touched, nor is anything
/// outside the returned range. The packet has TTL/hop limit [`HOP_LIMIT`];
/// IPv4 gets no options, identification 0, Don't Fragment set and a correct
/// header checksum; IPv6 gets traffic class and flow label 0. The UDP
/// checksum is always computed (mandatory for IPv6); one that computes to 0
/// is sent as 0xffff, as RFC 768 asks.
///
/// Errors, and nothing written, if the families differ, if there is not
/// enough headroom, if the payload is too long for the IP length field, or
/// if `payload` is not a range within `buf`.
pub fn forge_udp(
    buf: &mut [u8],
    payload: Range<usize>,
    source: SocketAddr,
    destination: SocketAddr,
) -> Result<Range<usize>, ForgeError> {
    if payload.start > payload.end || payload.end > buf.len() {
        return Err(ForgeError::BadRange);
    }
    let payload_len = payload.end - payload.start;
    let (max_payload, header_len) = match (source, destination) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => (IPV4_UDP_MAX_PAYLOAD, IPV4_UDP_HEADER_LEN),
        (SocketAddr::V6(_), SocketAddr::V6(_)) => (IPV6_UDP_MAX_PAYLOAD, IPV6_UDP_HEADER_LEN),
        _ => return Err(ForgeError::FamilyMismatch),
    };
    if payload_len > max_payload {
        return Err(ForgeError::TooLong);
    }
    let start = payload
        .start
        .checked_sub(header_len)
        .ok_or(ForgeError::NoHeadroom)?;
    let packet = &mut buf[start..payload.end];
    let checksums = ChecksumCapabilities::default();
    let udp_repr = UdpRepr {
        src_port: source.port(),
        dst_port: destination.port(),
    };
    let src_addr = IpAddress::from(source.ip());
    let dst_addr = IpAddress::from(destination.ip());
    let ip_header_len = match (source.ip(), destination.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let repr = Ipv4Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: IpProtocol::Udp,
                payload_len: UDP_HEADER_LEN + payload_len,
                hop_limit: HOP_LIMIT,
            };
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut *packet), &checksums);
            repr.buffer_len()
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let repr = Ipv6Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: IpProtocol::Udp,
                payload_len: UDP_HEADER_LEN + payload_len,
                hop_limit: HOP_LIMIT,
            };
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut *packet));
            repr.buffer_len()
        }
        // Families were matched above.
        _ => return Err(ForgeError::FamilyMismatch),
    };
    let mut udp = UdpPacket::new_unchecked(&mut packet[ip_header_len..]);
    // The payload is already in place: the closure that would copy it in
    // does nothing. emit sets the length, then fills the checksum over the
    // pseudo-header, header and payload, turning a computed 0 into 0xffff.
    udp_repr.emit(
        &mut udp,
        &src_addr,
        &dst_addr,
        payload_len,
        |_| {},
        &checksums,
    );
    Ok(start..payload.end)
}

#[cfg(test)]
mod tests;
