//! Router mode's ICMP: echo requests taken from the TUN device, echo replies
//! and errors forged back into it.
//!
//! - **Echo.** [`parse_echo`] takes an ICMPv4 Echo Request (type 8) or
//!   ICMPv6 Echo Request (type 128) from the entry's TUN device. What
//!   travels in the frame is its sequence number and data; the identifier
//!   names the flow (the channel), and the type, code and checksum are
//!   rebuilt at each end. The exit sends the request from an ICMP datagram
//!   socket ([`echo_request`] writes the header the kernel wants: it sets
//!   the identifier and checksum itself), takes the reply the socket reads
//!   ([`echo_reply_payload`]), and the entry forges the Echo Reply back to
//!   the pinger with its own identifier ([`forge_echo_reply`]).
//! - **Errors.** [`forge_port_unreachable`] builds the ICMP Destination
//!   (Port) Unreachable a host would send for a UDP datagram from `client`
//!   to `destination`, quoting a reconstructed IP and UDP header (what the
//!   sender's kernel matches the error to its socket by).
//!   [`forge_too_big`] answers a packet the entry cannot carry in one link
//!   frame with ICMPv4 Fragmentation Needed (type 3 code 4, next-hop MTU) or
//!   ICMPv6 Packet Too Big (type 2), quoting as much of it as RFC 1812 and
//!   RFC 4443 allow.
//!
//! Checksums are smoltcp's; the 8-byte ICMP headers are written here.

use core::net::{IpAddr, SocketAddr};
use core::ops::Range;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4Packet, Icmpv6Packet, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    IPV4_HEADER_LEN, IPV6_HEADER_LEN, UDP_HEADER_LEN,
};

use super::{ForgeError, IpDrop, HOP_LIMIT};

/// The ICMP header: type, code, checksum and 4 bytes that depend on the
/// type (identifier and sequence; unused and next-hop MTU; the MTU).
pub const ICMP_HEADER_LEN: usize = 8;
/// The bytes of an echo header that do not travel in a frame: type, code,
/// checksum and identifier. The sequence number (2 bytes) does.
pub const ECHO_HEADER_REBUILT: usize = 6;
/// The longest ICMPv4 error: RFC 1812 section 4.3.2.3, no more than 576
/// bytes in all.
pub const MAX_ICMPV4_ERROR: usize = 576;
/// The longest ICMPv6 error: RFC 4443 section 2.4 (c), the IPv6 minimum MTU.
pub const MAX_ICMPV6_ERROR: usize = 1280;

mod kind {
    pub const V4_ECHO_REPLY: u8 = 0;
    pub const V4_UNREACHABLE: u8 = 3;
    pub const V4_ECHO_REQUEST: u8 = 8;
    pub const V4_PORT_UNREACHABLE: u8 = 3;
    pub const V4_FRAG_NEEDED: u8 = 4;
    pub const V6_UNREACHABLE: u8 = 1;
    pub const V6_PORT_UNREACHABLE: u8 = 4;
    pub const V6_TOO_BIG: u8 = 2;
    pub const V6_ECHO_REQUEST: u8 = 128;
    pub const V6_ECHO_REPLY: u8 = 129;
}

/// An echo request found in an IP packet read from a TUN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo {
    /// The pinger.
    pub source: IpAddr,
    /// The pinged host.
    pub destination: IpAddr,
    /// The identifier the pinger chose (its ping socket's port).
    pub ident: u16,
    /// Where the sequence number and the data lie within the packet: what
    /// travels in the frame.
    pub payload: Range<usize>,
}

/// Parses an ICMPv4 or ICMPv6 Echo Request (version from the first
/// nibble), verifying the IPv4 header checksum and the ICMP checksum.
///
/// Anything else is refused: other ICMP types and other protocols as
/// [`IpDrop::NotUdp`] (not carried), fragments as [`IpDrop::Fragment`],
/// a wrong checksum as [`IpDrop::BadChecksum`]. Never panics.
pub fn parse_echo(packet: &[u8]) -> Result<Echo, IpDrop> {
    match packet.first().map(|byte| byte >> 4) {
        None => Err(IpDrop::Malformed),
        Some(4) => parse_echo_v4(packet),
        Some(6) => parse_echo_v6(packet),
        Some(_) => Err(IpDrop::Unsupported),
    }
}

fn parse_echo_v4(packet: &[u8]) -> Result<Echo, IpDrop> {
    let (ip, repr) = super::checked_ipv4(packet, IpProtocol::Icmp)?;
    let offset = usize::from(ip.header_len());
    let icmp = Icmpv4Packet::new_checked(ip.payload()).map_err(|_| IpDrop::Malformed)?;
    if !icmp.verify_checksum() {
        return Err(IpDrop::BadChecksum);
    }
    let bytes = ip.payload();
    if bytes[0] != kind::V4_ECHO_REQUEST || bytes[1] != 0 {
        return Err(IpDrop::NotUdp);
    }
    Ok(Echo {
        source: IpAddr::V4(repr.src_addr),
        destination: IpAddr::V4(repr.dst_addr),
        ident: icmp.echo_ident(),
        payload: offset + ECHO_HEADER_REBUILT..offset + bytes.len(),
    })
}

fn parse_echo_v6(packet: &[u8]) -> Result<Echo, IpDrop> {
    let (ip, repr) = super::checked_ipv6(packet, IpProtocol::Icmpv6)?;
    let icmp = Icmpv6Packet::new_checked(ip.payload()).map_err(|_| IpDrop::Malformed)?;
    if icmp.header_len() > ip.payload().len() || ip.payload().len() < ICMP_HEADER_LEN {
        return Err(IpDrop::Malformed);
    }
    if !icmp.verify_checksum(&repr.src_addr, &repr.dst_addr) {
        return Err(IpDrop::BadChecksum);
    }
    let bytes = ip.payload();
    if bytes[0] != kind::V6_ECHO_REQUEST || bytes[1] != 0 {
        return Err(IpDrop::NotUdp);
    }
    Ok(Echo {
        source: IpAddr::V6(repr.src_addr),
        destination: IpAddr::V6(repr.dst_addr),
        ident: u16::from_be_bytes([bytes[4], bytes[5]]),
        payload: IPV6_HEADER_LEN + ECHO_HEADER_REBUILT..IPV6_HEADER_LEN + bytes.len(),
    })
}

/// Exit: writes, in the [`ECHO_HEADER_REBUILT`] bytes before
/// `buf[payload]` (sequence number and data from the frame), the start of an
/// echo request to an address of family `v6`, for an ICMP datagram socket:
/// the kernel fills in the identifier and the checksum. Returns the whole
/// message's range.
pub fn echo_request(
    buf: &mut [u8],
    payload: Range<usize>,
    v6: bool,
) -> Result<Range<usize>, ForgeError> {
    if payload.start > payload.end || payload.end > buf.len() || payload.len() < 2 {
        return Err(ForgeError::BadRange);
    }
    let start = payload
        .start
        .checked_sub(ECHO_HEADER_REBUILT)
        .ok_or(ForgeError::NoHeadroom)?;
    let kind = if v6 {
        kind::V6_ECHO_REQUEST
    } else {
        kind::V4_ECHO_REQUEST
    };
    buf[start..payload.start].copy_from_slice(&[kind, 0, 0, 0, 0, 0]);
    Ok(start..payload.end)
}

/// Exit: the sequence number and data of an echo reply read from an ICMP
/// datagram socket (`message` is the ICMP message, header first), as a
/// range of `message`; `None` if it is not an echo reply.
pub fn echo_reply_payload(message: &[u8]) -> Option<Range<usize>> {
    let kind = *message.first()?;
    let reply = kind == kind::V4_ECHO_REPLY || kind == kind::V6_ECHO_REPLY;
    (reply && message.len() >= ICMP_HEADER_LEN && message[1] == 0)
        .then_some(ECHO_HEADER_REBUILT..message.len())
}

/// Entry: forges, in place, the echo reply from `from` to `to` with
/// identifier `ident` around the sequence number and data at
/// `buf[payload]`: the IP header and [`ECHO_HEADER_REBUILT`] bytes go just
/// before it. Returns the packet's range.
pub fn forge_echo_reply(
    buf: &mut [u8],
    payload: Range<usize>,
    from: IpAddr,
    to: IpAddr,
    ident: u16,
) -> Result<Range<usize>, ForgeError> {
    if payload.start > payload.end || payload.end > buf.len() || payload.len() < 2 {
        return Err(ForgeError::BadRange);
    }
    let icmp_start = payload
        .start
        .checked_sub(ECHO_HEADER_REBUILT)
        .ok_or(ForgeError::NoHeadroom)?;
    let kind = match from {
        IpAddr::V4(_) => kind::V4_ECHO_REPLY,
        IpAddr::V6(_) => kind::V6_ECHO_REPLY,
    };
    let [i0, i1] = ident.to_be_bytes();
    let start = emit_ip(buf, icmp_start, payload.end, from, to)?;
    buf[icmp_start..payload.start].copy_from_slice(&[kind, 0, 0, 0, i0, i1]);
    fill_icmp_checksum(&mut buf[icmp_start..payload.end], from, to);
    Ok(start..payload.end)
}

/// Entry: forges, at `buf[at..]`, the ICMP Port Unreachable that
/// `destination` would send to `client` for a UDP datagram from `client`:
/// ICMPv4 type 3 code 3 or ICMPv6 type 1 code 4, quoting an IP header and
/// a UDP header from `client` to `destination` (length 8, checksum 0: the
/// datagram itself is gone). Returns the packet's range.
pub fn forge_port_unreachable(
    buf: &mut [u8],
    at: usize,
    client: SocketAddr,
    destination: SocketAddr,
) -> Result<Range<usize>, ForgeError> {
    let (ip_len, kind, code) = match (client, destination) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => (
            IPV4_HEADER_LEN,
            kind::V4_UNREACHABLE,
            kind::V4_PORT_UNREACHABLE,
        ),
        (SocketAddr::V6(_), SocketAddr::V6(_)) => (
            IPV6_HEADER_LEN,
            kind::V6_UNREACHABLE,
            kind::V6_PORT_UNREACHABLE,
        ),
        _ => return Err(ForgeError::FamilyMismatch),
    };
    let icmp_start = at.checked_add(ip_len).ok_or(ForgeError::BadRange)?;
    let quote = icmp_start + ICMP_HEADER_LEN;
    let end = quote + ip_len + UDP_HEADER_LEN;
    if end > buf.len() {
        return Err(ForgeError::BadRange);
    }
    // The quoted datagram: client to destination, as it left the client.
    emit_ip_header(
        &mut buf[quote..],
        client.ip(),
        destination.ip(),
        UDP_HEADER_LEN,
        IpProtocol::Udp,
    )?;
    let udp = quote + ip_len;
    buf[udp..udp + 2].copy_from_slice(&client.port().to_be_bytes());
    buf[udp + 2..udp + 4].copy_from_slice(&destination.port().to_be_bytes());
    buf[udp + 4..udp + 6].copy_from_slice(&(UDP_HEADER_LEN as u16).to_be_bytes());
    buf[udp + 6..udp + 8].copy_from_slice(&[0, 0]);
    buf[icmp_start..quote].copy_from_slice(&[kind, code, 0, 0, 0, 0, 0, 0]);
    let start = emit_ip(buf, icmp_start, end, destination.ip(), client.ip())?;
    fill_icmp_checksum(&mut buf[icmp_start..end], destination.ip(), client.ip());
    Ok(start..end)
}

/// Entry: answers the IP packet at `buf[packet]`, too large for one link
/// frame, with ICMPv4 Fragmentation Needed (type 3 code 4, next-hop MTU
/// `mtu`) or ICMPv6 Packet Too Big (type 2, MTU `mtu`), from the packet's
/// destination to its source. The headers go in the bytes just before the
/// packet (28 for IPv4, 48 for IPv6); the packet is quoted, cut to keep the
/// error within [`MAX_ICMPV4_ERROR`] / [`MAX_ICMPV6_ERROR`]. The caller has
/// parsed the packet's addresses already (`source`, `destination`).
pub fn forge_too_big(
    buf: &mut [u8],
    packet: Range<usize>,
    source: IpAddr,
    destination: IpAddr,
    mtu: u16,
) -> Result<Range<usize>, ForgeError> {
    if packet.start > packet.end || packet.end > buf.len() {
        return Err(ForgeError::BadRange);
    }
    let (ip_len, max, header) = match (source, destination) {
        (IpAddr::V4(_), IpAddr::V4(_)) => {
            let [m0, m1] = mtu.to_be_bytes();
            (
                IPV4_HEADER_LEN,
                MAX_ICMPV4_ERROR,
                [
                    kind::V4_UNREACHABLE,
                    kind::V4_FRAG_NEEDED,
                    0,
                    0,
                    0,
                    0,
                    m0,
                    m1,
                ],
            )
        }
        (IpAddr::V6(_), IpAddr::V6(_)) => {
            let [m0, m1, m2, m3] = u32::from(mtu).to_be_bytes();
            (
                IPV6_HEADER_LEN,
                MAX_ICMPV6_ERROR,
                [kind::V6_TOO_BIG, 0, 0, 0, m0, m1, m2, m3],
            )
        }
        _ => return Err(ForgeError::FamilyMismatch),
    };
    let icmp_start = packet
        .start
        .checked_sub(ICMP_HEADER_LEN)
        .ok_or(ForgeError::NoHeadroom)?;
    let end = packet
        .end
        .min(packet.start + (max - ip_len - ICMP_HEADER_LEN));
    let start = emit_ip(buf, icmp_start, end, destination, source)?;
    buf[icmp_start..packet.start].copy_from_slice(&header);
    fill_icmp_checksum(&mut buf[icmp_start..end], destination, source);
    Ok(start..end)
}

/// Emits an IP header from `from` to `to` just before `buf[icmp_start..end]`
/// (an ICMP message), returning where it starts.
fn emit_ip(
    buf: &mut [u8],
    icmp_start: usize,
    end: usize,
    from: IpAddr,
    to: IpAddr,
) -> Result<usize, ForgeError> {
    let ip_len = match from {
        IpAddr::V4(_) => IPV4_HEADER_LEN,
        IpAddr::V6(_) => IPV6_HEADER_LEN,
    };
    let start = icmp_start
        .checked_sub(ip_len)
        .ok_or(ForgeError::NoHeadroom)?;
    let protocol = match from {
        IpAddr::V4(_) => IpProtocol::Icmp,
        IpAddr::V6(_) => IpProtocol::Icmpv6,
    };
    if end > buf.len() || end < icmp_start {
        return Err(ForgeError::BadRange);
    }
    emit_ip_header(&mut buf[start..], from, to, end - icmp_start, protocol)?;
    Ok(start)
}

/// Writes an IP header for `payload_len` bytes of `protocol` at the start
/// of `buf`.
fn emit_ip_header(
    buf: &mut [u8],
    from: IpAddr,
    to: IpAddr,
    payload_len: usize,
    protocol: IpProtocol,
) -> Result<(), ForgeError> {
    match (from, to) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            if buf.len() < IPV4_HEADER_LEN || payload_len > usize::from(u16::MAX) - IPV4_HEADER_LEN
            {
                return Err(ForgeError::TooLong);
            }
            let repr = Ipv4Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: protocol,
                payload_len,
                hop_limit: HOP_LIMIT,
            };
            repr.emit(
                &mut Ipv4Packet::new_unchecked(&mut buf[..IPV4_HEADER_LEN]),
                &ChecksumCapabilities::default(),
            );
            Ok(())
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            if buf.len() < IPV6_HEADER_LEN || payload_len > usize::from(u16::MAX) {
                return Err(ForgeError::TooLong);
            }
            let repr = Ipv6Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: protocol,
                payload_len,
                hop_limit: HOP_LIMIT,
            };
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..IPV6_HEADER_LEN]));
            Ok(())
        }
        _ => Err(ForgeError::FamilyMismatch),
    }
}

/// Fills the checksum of the ICMP message `message` sent from `from` to
/// `to` (ICMPv6 covers a pseudo-header of the addresses; ICMPv4 does not).
fn fill_icmp_checksum(message: &mut [u8], from: IpAddr, to: IpAddr) {
    message[2] = 0;
    message[3] = 0;
    match (from, to) {
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            Icmpv6Packet::new_unchecked(message).fill_checksum(&src, &dst)
        }
        _ => Icmpv4Packet::new_unchecked(message).fill_checksum(),
    }
}

#[cfg(test)]
mod tests;
