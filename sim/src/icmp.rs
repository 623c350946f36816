//! The ICMP the simulation emulates, since turmoil carries only UDP and TCP.
//!
//! - Router clients forge echo requests with core's helpers
//!   ([`echo_request_packet`]).
//! - The router exit's ICMP echo sockets (Linux `SOCK_DGRAM` /
//!   `IPPROTO_ICMP`, a "ping socket") are turmoil UDP sockets: the message
//!   core hands one goes, with the identifier (the socket's local port) and
//!   the checksum filled in as the kernel does ([`fill_echo_request`]), to
//!   the destination's [`ICMP_PORT`](crate::scenario::ICMP_PORT), whose
//!   emulated kernel answers with the echo reply ([`echo_reply_message`])
//!   to the socket that sent it.
//! - A target host's emulated kernel answers a datagram to its refusing
//!   port (a port no application listens on) with the ICMP Port
//!   Unreachable a host sends, an IP packet forged with core's
//!   [`forge_port_unreachable`] and sent to the exit's `ICMP_PORT`, where
//!   the exit's emulated kernel matches it to the connected socket by the
//!   quoted header ([`parse_error`]) and reports the refusal, as Linux
//!   does with `ECONNREFUSED`.
//!
//! Checksums are RFC 1071's, written here apart from core's (smoltcp's), so
//! a wrong checksum in what core forges is caught.

use std::net::{IpAddr, SocketAddr};

use sdt_core::ip::icmp::{forge_echo_reply, forge_port_unreachable, ECHO_HEADER_REBUILT};

/// ICMPv4 Echo Reply.
pub const V4_ECHO_REPLY: u8 = 0;
/// ICMPv4 Echo Request.
pub const V4_ECHO_REQUEST: u8 = 8;
/// ICMPv6 Echo Request.
pub const V6_ECHO_REQUEST: u8 = 128;
/// ICMPv6 Echo Reply.
pub const V6_ECHO_REPLY: u8 = 129;

/// RFC 1071's checksum over the concatenation of `parts`. Written here,
/// apart from core's (as core's ICMP tests have their own), because the
/// emulated kernels check what core forges: the same code on both sides
/// would agree with itself however wrong it were.
pub fn csum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The checksum of ICMP message `message` from `src` to `dst`: ICMPv6
/// covers a pseudo-header of the addresses, ICMPv4 does not.
fn icmp_checksum(message: &[u8], src: IpAddr, dst: IpAddr) -> u16 {
    match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let len = (message.len() as u32).to_be_bytes();
            csum(&[&s.octets(), &d.octets(), &len, &[0, 0, 0, 58], message])
        }
        _ => csum(&[message]),
    }
}

/// Writes the checksum of `message` (from `src` to `dst`) into it.
fn set_checksum(message: &mut [u8], src: IpAddr, dst: IpAddr) {
    message[2] = 0;
    message[3] = 0;
    let c = icmp_checksum(message, src, dst);
    message[2..4].copy_from_slice(&c.to_be_bytes());
}

/// Whether the checksum of `message` from `src` to `dst` is right.
pub fn checksum_ok(message: &[u8], src: IpAddr, dst: IpAddr) -> bool {
    icmp_checksum(message, src, dst) == 0
}

/// A client's echo request from `src` to `dst` with identifier `ident`,
/// sequence number `seq` and `data`, as an IP packet: core forges the echo
/// reply of that shape ([`forge_echo_reply`], IP header and all), and the
/// type and checksum are turned into a request's (as core's own tests do).
pub fn echo_request_packet(src: IpAddr, dst: IpAddr, ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let head = 48;
    let mut buf = vec![0u8; head + 2 + data.len()];
    buf[head..head + 2].copy_from_slice(&seq.to_be_bytes());
    buf[head + 2..].copy_from_slice(data);
    let end = buf.len();
    let range =
        forge_echo_reply(&mut buf, head..end, src, dst, ident).expect("room for an echo request");
    let mut packet = buf[range].to_vec();
    let at = ip_header_len(&packet);
    packet[at] = if src.is_ipv6() {
        V6_ECHO_REQUEST
    } else {
        V4_ECHO_REQUEST
    };
    set_checksum(&mut packet[at..], src, dst);
    packet
}

fn ip_header_len(packet: &[u8]) -> usize {
    if packet[0] >> 4 == 6 {
        40
    } else {
        usize::from(packet[0] & 0x0f) * 4
    }
}

/// An echo message (request or reply): type, identifier, sequence, data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoMsg {
    /// The ICMP type.
    pub kind: u8,
    /// The identifier.
    pub ident: u16,
    /// The sequence number.
    pub seq: u16,
    /// What follows the header.
    pub data: Vec<u8>,
}

/// Parses an ICMP echo message (header first, no IP header), any type;
/// `None` if it is shorter than the header or its code is not 0.
pub fn parse_echo_message(message: &[u8]) -> Option<EchoMsg> {
    (message.len() >= 8 && message[1] == 0).then(|| EchoMsg {
        kind: message[0],
        ident: u16::from_be_bytes([message[4], message[5]]),
        seq: u16::from_be_bytes([message[6], message[7]]),
        data: message[8..].to_vec(),
    })
}

/// The exit's ping socket, as Linux's: core wrote the type, a zero code,
/// checksum and identifier ([`ECHO_HEADER_REBUILT`] bytes), then the
/// sequence and data; the kernel sets the identifier (the socket's port)
/// and the checksum (from `src` to `dst`). `Err` says what core got wrong.
pub fn fill_echo_request(
    message: &[u8],
    ident: u16,
    src: IpAddr,
    dst: IpAddr,
) -> Result<Vec<u8>, String> {
    let want = if dst.is_ipv6() {
        V6_ECHO_REQUEST
    } else {
        V4_ECHO_REQUEST
    };
    if message.len() < ECHO_HEADER_REBUILT + 2 {
        return Err(format!(
            "{} bytes, shorter than an echo header",
            message.len()
        ));
    }
    if message[0] != want || message[1] != 0 {
        return Err(format!(
            "type {} code {}, not an echo request to {dst}",
            message[0], message[1]
        ));
    }
    let mut m = message.to_vec();
    m[4..6].copy_from_slice(&ident.to_be_bytes());
    set_checksum(&mut m, src, dst);
    Ok(m)
}

/// A host's emulated kernel answers echo request `req` (from `src`, to
/// its own `me`): the reply with the same identifier, sequence and data.
pub fn echo_reply_message(req: &EchoMsg, me: IpAddr, src: IpAddr) -> Vec<u8> {
    let kind = if me.is_ipv6() {
        V6_ECHO_REPLY
    } else {
        V4_ECHO_REPLY
    };
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(&req.ident.to_be_bytes());
    m.extend_from_slice(&req.seq.to_be_bytes());
    m.extend_from_slice(&req.data);
    set_checksum(&mut m, me, src);
    m
}

/// A host's emulated kernel answers a UDP datagram from `client` to its
/// port `destination`, which nobody listens on: the ICMP Port Unreachable
/// IP packet, forged with core's [`forge_port_unreachable`].
pub fn port_unreachable_packet(client: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut buf = vec![0u8; 128];
    let range =
        forge_port_unreachable(&mut buf, 0, client, destination).expect("a port unreachable");
    buf[range].to_vec()
}

/// An ICMP packet written to the entry's TUN device or sent by a host's
/// kernel, parsed and its checksums checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IcmpPacket {
    /// An echo reply from `from` to `to`.
    EchoReply {
        /// Source address.
        from: IpAddr,
        /// Destination address.
        to: IpAddr,
        /// The reply.
        echo: EchoMsg,
    },
    /// A Port Unreachable from `from` to `to` about the UDP datagram it
    /// quotes, from `quoted_src` to `quoted_dst`.
    PortUnreachable {
        /// Source address.
        from: IpAddr,
        /// Destination address.
        to: IpAddr,
        /// The quoted datagram's source.
        quoted_src: SocketAddr,
        /// The quoted datagram's destination.
        quoted_dst: SocketAddr,
    },
    /// A Fragmentation Needed (ICMPv4 type 3 code 4) or Packet Too Big
    /// (ICMPv6 type 2) from `from` to `to` announcing `mtu`, quoting a UDP
    /// packet from `quoted_src` to `quoted_dst` of `quoted_len` bytes whose
    /// payload starts with `prefix`.
    TooBig {
        /// Source address.
        from: IpAddr,
        /// Destination address.
        to: IpAddr,
        /// The MTU it announces.
        mtu: u32,
        /// The quoted packet's source.
        quoted_src: SocketAddr,
        /// The quoted packet's destination.
        quoted_dst: SocketAddr,
        /// The quoted packet's length, by its IP header.
        quoted_len: usize,
        /// The start of the quoted packet's UDP payload.
        prefix: Vec<u8>,
    },
}

/// Parses an IPv4 or IPv6 packet carrying an ICMP echo reply or port
/// unreachable, checking the IPv4 header checksum, the ICMP checksum and
/// the lengths; `Err` says what is wrong.
pub fn parse_packet(p: &[u8]) -> Result<IcmpPacket, String> {
    let v = p.first().map(|b| b >> 4);
    let (from, to, icmp) = match v {
        Some(4) => {
            let hl = usize::from(p[0] & 0x0f) * 4;
            if p.len() < 20 || hl < 20 || p.len() < hl + 8 {
                return Err(format!("{} bytes: a short IPv4 packet", p.len()));
            }
            if usize::from(u16::from_be_bytes([p[2], p[3]])) != p.len() {
                return Err("IPv4 total length is not the packet's".into());
            }
            if p[9] != 1 {
                return Err(format!("IPv4 protocol {}, not ICMP", p[9]));
            }
            if csum(&[&p[..hl]]) != 0 {
                return Err("bad IPv4 header checksum".into());
            }
            let src: [u8; 4] = p[12..16].try_into().expect("4 bytes");
            let dst: [u8; 4] = p[16..20].try_into().expect("4 bytes");
            (IpAddr::from(src), IpAddr::from(dst), &p[hl..])
        }
        Some(6) => {
            if p.len() < 48 {
                return Err(format!("{} bytes: a short IPv6 packet", p.len()));
            }
            if usize::from(u16::from_be_bytes([p[4], p[5]])) != p.len() - 40 {
                return Err("IPv6 payload length is not the packet's".into());
            }
            if p[6] != 58 {
                return Err(format!("IPv6 next header {}, not ICMPv6", p[6]));
            }
            let src: [u8; 16] = p[8..24].try_into().expect("16 bytes");
            let dst: [u8; 16] = p[24..40].try_into().expect("16 bytes");
            (IpAddr::from(src), IpAddr::from(dst), &p[40..])
        }
        _ => return Err("not an IP packet".into()),
    };
    if !checksum_ok(icmp, from, to) {
        return Err("bad ICMP checksum".into());
    }
    let v6 = from.is_ipv6();
    match (icmp[0], icmp[1], v6) {
        (V4_ECHO_REPLY, 0, false) | (V6_ECHO_REPLY, 0, true) => Ok(IcmpPacket::EchoReply {
            from,
            to,
            echo: parse_echo_message(icmp).expect("8 bytes"),
        }),
        (3, 3, false) | (1, 4, true) => {
            let (quoted_src, quoted_dst) = parse_quote(&icmp[8..], v6)?;
            Ok(IcmpPacket::PortUnreachable {
                from,
                to,
                quoted_src,
                quoted_dst,
            })
        }
        (3, 4, false) | (2, 0, true) => {
            let q = &icmp[8..];
            let (quoted_src, quoted_dst) = parse_quote(q, v6)?;
            let (mtu, quoted_len, hl) = if v6 {
                let mtu = u32::from_be_bytes(icmp[4..8].try_into().expect("4 bytes"));
                (mtu, usize::from(u16::from_be_bytes([q[4], q[5]])) + 40, 40)
            } else {
                let mtu = u32::from(u16::from_be_bytes([icmp[6], icmp[7]]));
                let hl = usize::from(q[0] & 0x0f) * 4;
                (mtu, usize::from(u16::from_be_bytes([q[2], q[3]])), hl)
            };
            Ok(IcmpPacket::TooBig {
                from,
                to,
                mtu,
                quoted_src,
                quoted_dst,
                quoted_len,
                prefix: q[hl + 8..].to_vec(),
            })
        }
        (t, c, _) => Err(format!("ICMP type {t} code {c}")),
    }
}

/// The UDP datagram an ICMP error quotes: its addresses and ports.
fn parse_quote(q: &[u8], v6: bool) -> Result<(SocketAddr, SocketAddr), String> {
    let (src, dst, udp) = if v6 {
        if q.len() < 48 || q[0] >> 4 != 6 || q[6] != 17 {
            return Err("the quote is not an IPv6 UDP header".into());
        }
        let src: [u8; 16] = q[8..24].try_into().expect("16 bytes");
        let dst: [u8; 16] = q[24..40].try_into().expect("16 bytes");
        (IpAddr::from(src), IpAddr::from(dst), &q[40..])
    } else {
        let hl = usize::from(q.first().map_or(0, |b| b & 0x0f)) * 4;
        if q.len() < hl + 8 || hl < 20 || q[0] >> 4 != 4 || q[9] != 17 {
            return Err("the quote is not an IPv4 UDP header".into());
        }
        let src: [u8; 4] = q[12..16].try_into().expect("4 bytes");
        let dst: [u8; 4] = q[16..20].try_into().expect("4 bytes");
        (IpAddr::from(src), IpAddr::from(dst), &q[hl..])
    };
    let port = |at: usize| u16::from_be_bytes([udp[at], udp[at + 1]]);
    Ok((SocketAddr::new(src, port(0)), SocketAddr::new(dst, port(2))))
}

/// Parses the emulated ICMP error a host's kernel sent to the exit's
/// kernel: the UDP datagram it quotes (source, destination).
pub fn parse_error(packet: &[u8]) -> Result<(SocketAddr, SocketAddr), String> {
    match parse_packet(packet)? {
        IcmpPacket::PortUnreachable {
            quoted_src,
            quoted_dst,
            ..
        } => Ok((quoted_src, quoted_dst)),
        other => Err(format!("not an ICMP error: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn echo_request_parses_with_core() {
        for (src, dst) in [
            (
                IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)),
                IpAddr::V4(Ipv4Addr::new(192, 168, 0, 3)),
            ),
            (
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, 1)),
                IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 3)),
            ),
        ] {
            let p = echo_request_packet(src, dst, 0x5d5d, 7, b"Q|alice-0|1|");
            let e = sdt_core::ip::icmp::parse_echo(&p).expect("core parses it");
            assert_eq!((e.source, e.destination, e.ident), (src, dst, 0x5d5d));
            assert_eq!(&p[e.payload], b"\x00\x07Q|alice-0|1|");
            let u = port_unreachable_packet(SocketAddr::new(src, 4000), SocketAddr::new(dst, 9002));
            assert_eq!(
                parse_error(&u),
                Ok((SocketAddr::new(src, 4000), SocketAddr::new(dst, 9002)))
            );
            let mut bad = u.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert!(parse_packet(&bad).is_err());
        }
    }

    #[test]
    fn ping_socket_fills_ident_and_checksum() {
        let (me, dst) = (
            IpAddr::V4(Ipv4Addr::new(192, 168, 0, 2)),
            IpAddr::V4(Ipv4Addr::new(192, 168, 0, 3)),
        );
        let core_wrote = [8, 0, 0, 0, 0, 0, 0, 9, b'x'];
        let m = fill_echo_request(&core_wrote, 40_001, me, dst).unwrap();
        assert!(checksum_ok(&m, me, dst));
        let req = parse_echo_message(&m).unwrap();
        assert_eq!((req.ident, req.seq, &req.data[..]), (40_001, 9, &b"x"[..]));
        let reply = echo_reply_message(&req, dst, me);
        assert!(checksum_ok(&reply, dst, me));
        assert_eq!(sdt_core::ip::icmp::echo_reply_payload(&reply), Some(6..9));
        assert!(fill_echo_request(&[0, 0, 0, 0, 0, 0, 0, 9], 1, me, dst).is_err());
    }
}
