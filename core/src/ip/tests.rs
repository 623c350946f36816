use super::*;

use core::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

/// An IPv4 UDP DNS query (id 0x1234, "example.com" A, RD) from
/// 192.0.2.1:53000 to 198.51.100.53:53, identification 0x1c46, DF, TTL 64.
/// Built and checksummed apart from smoltcp, in Python:
///
/// ```text
/// import struct, socket
/// def csum(b):
///     if len(b) % 2: b += b'\0'
///     s = sum(struct.unpack('!%dH' % (len(b)//2), b))
///     while s >> 16: s = (s & 0xffff) + (s >> 16)
///     return (~s) & 0xffff
/// src, dst = socket.inet_aton('192.0.2.1'), socket.inet_aton('198.51.100.53')
/// dns = struct.pack('!HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0) \
///     + b'\x07example\x03com\x00' + struct.pack('!HH', 1, 1)
/// ulen = 8 + len(dns)
/// udp0 = struct.pack('!HHHH', 53000, 53, ulen, 0) + dns
/// uc = csum(src + dst + struct.pack('!BBH', 0, 17, ulen) + udp0) or 0xffff  # 0x625a
/// udp = struct.pack('!HHHH', 53000, 53, ulen, uc) + dns
/// ip0 = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + ulen, 0x1c46, 0x4000, 64, 17, 0, src, dst)
/// ic = csum(ip0)  # 0x3204
/// ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + ulen, 0x1c46, 0x4000, 64, 17, ic, src, dst)
/// packet = ip + udp
/// ```
const DNS_QUERY_V4: [u8; 57] = [
    0x45, 0x00, 0x00, 0x39, 0x1c, 0x46, 0x40, 0x00, //
    0x40, 0x11, 0x32, 0x04, 0xc0, 0x00, 0x02, 0x01, //
    0xc6, 0x33, 0x64, 0x35, 0xcf, 0x08, 0x00, 0x35, //
    0x00, 0x25, 0x62, 0x5a, 0x12, 0x34, 0x01, 0x00, //
    0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, //
    0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00, //
    0x01,
];

/// An IPv6 UDP DNS query (id 0xabcd, "example.com" AAAA, RD) from
/// [2001:db8::1]:53000 to [2001:db8::53]:53, flow label 0x12345, hop limit
/// 57. Built like [`DNS_QUERY_V4`], with the IPv6 pseudo-header
/// `src + dst + struct.pack('!IxxxB', ulen, 17)`; UDP checksum 0x3e65.
const DNS_QUERY_V6: [u8; 77] = [
    0x60, 0x01, 0x23, 0x45, 0x00, 0x25, 0x11, 0x39, //
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, //
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, //
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x53, //
    0xcf, 0x08, 0x00, 0x35, 0x00, 0x25, 0x3e, 0x65, //
    0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, //
    0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, //
    0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, //
    0x00, 0x00, 0x1c, 0x00, 0x01,
];

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port))
}

fn v6(text: &str, port: u16) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(text.parse().unwrap(), port, 0, 0))
}

/// Forges a packet around `payload` with `headroom` spare bytes in front of
/// the headers and `tail` spare bytes after the payload; returns the buffer
/// and the packet's range.
fn forge(
    payload: &[u8],
    source: SocketAddr,
    destination: SocketAddr,
    headroom: usize,
    tail: usize,
) -> (Vec<u8>, Range<usize>) {
    let start = headroom + udp_header_len(&destination);
    let mut buf = vec![0xa5; start + payload.len() + tail];
    buf[start..start + payload.len()].copy_from_slice(payload);
    let range = forge_udp(&mut buf, start..start + payload.len(), source, destination).unwrap();
    assert_eq!(range, headroom..start + payload.len());
    assert!(buf[..headroom].iter().all(|&b| b == 0xa5));
    assert!(buf[range.end..].iter().all(|&b| b == 0xa5));
    assert_eq!(&buf[start..range.end], payload);
    (buf, range)
}

/// Checks `packet` with smoltcp's own parsers, checksums verified; returns
/// the UDP payload smoltcp finds.
fn smoltcp_parse(packet: &[u8]) -> (SocketAddr, SocketAddr, &[u8]) {
    let caps = ChecksumCapabilities::default();
    match packet[0] >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(packet).unwrap();
            let repr = Ipv4Repr::parse(&ip, &caps).unwrap();
            assert_eq!(repr.next_header, IpProtocol::Udp);
            assert_eq!(repr.hop_limit, HOP_LIMIT);
            assert!(ip.dont_frag());
            assert!(!ip.more_frags());
            assert_eq!(ip.frag_offset(), 0);
            assert_eq!(ip.ident(), 0);
            assert_eq!(ip.header_len(), 20);
            assert_eq!(usize::from(ip.total_len()), packet.len());
            let (src, dst) = (
                IpAddress::Ipv4(repr.src_addr),
                IpAddress::Ipv4(repr.dst_addr),
            );
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            let udp_repr = UdpRepr::parse(&udp, &src, &dst, &caps).unwrap();
            assert_ne!(udp.checksum(), 0);
            (
                v4(repr.src_addr.octets(), udp_repr.src_port),
                v4(repr.dst_addr.octets(), udp_repr.dst_port),
                udp.payload(),
            )
        }
        6 => {
            let ip = Ipv6Packet::new_checked(packet).unwrap();
            let repr = Ipv6Repr::parse(&ip).unwrap();
            assert_eq!(repr.next_header, IpProtocol::Udp);
            assert_eq!(repr.hop_limit, HOP_LIMIT);
            assert_eq!(ip.traffic_class(), 0);
            assert_eq!(ip.flow_label(), 0);
            assert_eq!(ip.total_len(), packet.len());
            let (src, dst) = (
                IpAddress::Ipv6(repr.src_addr),
                IpAddress::Ipv6(repr.dst_addr),
            );
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            let udp_repr = UdpRepr::parse(&udp, &src, &dst, &caps).unwrap();
            assert_ne!(udp.checksum(), 0);
            (
                SocketAddr::V6(SocketAddrV6::new(repr.src_addr, udp_repr.src_port, 0, 0)),
                SocketAddr::V6(SocketAddrV6::new(repr.dst_addr, udp_repr.dst_port, 0, 0)),
                udp.payload(),
            )
        }
        _ => panic!("not IP"),
    }
}

/// Forges, then parses back with smoltcp and with [`parse_udp`].
fn round_trip(payload: &[u8], source: SocketAddr, destination: SocketAddr) {
    let (buf, range) = forge(payload, source, destination, 3, 5);
    let packet = &buf[range.clone()];
    assert_eq!(
        packet.len(),
        udp_header_len(&destination) + payload.len(),
        "header length"
    );

    let (src, dst, smol_payload) = smoltcp_parse(packet);
    assert_eq!((src, dst), (source, destination));
    assert_eq!(smol_payload, payload);

    let datagram = parse_udp(packet).unwrap();
    assert_eq!(datagram.source, source);
    assert_eq!(datagram.destination, destination);
    assert_eq!(&packet[datagram.payload.clone()], payload);
    // Trailing bytes after the IP length are ignored.
    assert_eq!(parse_udp(&buf[range.start..]), Ok(datagram));
}

fn payload_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn header_lengths() {
    assert_eq!(IPV4_UDP_HEADER_LEN, 28);
    assert_eq!(IPV6_UDP_HEADER_LEN, 48);
    assert_eq!(udp_header_len(&v4([1, 2, 3, 4], 5)), 28);
    assert_eq!(udp_header_len(&v6("::1", 5)), 48);
    assert_eq!(IPV4_UDP_MAX_PAYLOAD, 65_507);
    assert_eq!(IPV6_UDP_MAX_PAYLOAD, 65_527);
}

#[test]
fn forged_ipv4_parses_back() {
    let (s, d) = (v4([10, 0, 0, 1], 40_000), v4([192, 0, 2, 77], 53));
    for len in [0, 1, 1400, IPV4_UDP_MAX_PAYLOAD] {
        round_trip(&payload_of(len), s, d);
    }
}

#[test]
fn forged_ipv6_parses_back() {
    let (s, d) = (v6("fd00::1", 40_000), v6("2001:db8::77", 443));
    for len in [0, 1, 1400, IPV6_UDP_MAX_PAYLOAD] {
        round_trip(&payload_of(len), s, d);
    }
}

#[test]
fn forge_ignores_flowinfo_and_scope() {
    let source = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 1000, 0xabcde, 7));
    let destination = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 2000, 0x12345, 3));
    let (buf, range) = forge(b"hi", source, destination, 0, 0);
    let datagram = parse_udp(&buf[range]).unwrap();
    assert_eq!(datagram.source, v6("::1", 1000));
    assert_eq!(datagram.destination, v6("::1", 2000));
}

#[test]
fn forge_matches_known_packet() {
    // The Python-built query, forged again: same bytes except the
    // identification (0 here) and so the header checksum.
    let payload = &DNS_QUERY_V4[28..];
    let (buf, range) = forge(
        payload,
        v4([192, 0, 2, 1], 53000),
        v4([198, 51, 100, 53], 53),
        0,
        0,
    );
    let forged = &buf[range];
    assert_eq!(forged[..4], DNS_QUERY_V4[..4]);
    assert_eq!(forged[4..6], [0, 0]);
    assert_eq!(forged[6..10], DNS_QUERY_V4[6..10]);
    assert_eq!(forged[12..], DNS_QUERY_V4[12..]);
    // 0x3204 + 0x1c46 (ones' complement): removing the identification
    // raises the checksum by it.
    assert_eq!(forged[10..12], [0x4e, 0x4a]);
}

#[test]
fn forge_zero_checksum_is_sent_as_ffff() {
    let (s, d) = (v4([10, 1, 2, 3], 1111), v4([10, 3, 2, 1], 2222));
    // With a zero payload word the checksum is c; a payload word of c then
    // brings the ones' complement sum to 0xffff, i.e. a computed checksum
    // of 0.
    let (buf, range) = forge(&[0, 0], s, d, 0, 0);
    let c = [buf[range.start + 26], buf[range.start + 27]];
    assert_ne!(c, [0, 0]);
    let (buf, range) = forge(&c, s, d, 0, 0);
    let packet = &buf[range];
    assert_eq!(packet[26..28], [0xff, 0xff]);
    smoltcp_parse(packet);
    assert_eq!(parse_udp(packet).unwrap().payload, 28..30);

    let (s, d) = (v6("fd00::1", 1111), v6("fd00::2", 2222));
    let (buf, range) = forge(&[0, 0], s, d, 0, 0);
    let c = [buf[range.start + 46], buf[range.start + 47]];
    let (buf, range) = forge(&c, s, d, 0, 0);
    let packet = &buf[range];
    assert_eq!(packet[46..48], [0xff, 0xff]);
    smoltcp_parse(packet);
    assert_eq!(parse_udp(packet).unwrap().payload, 48..50);
}

#[test]
fn forge_errors() {
    let mut buf = [0u8; 100];
    let (s4, d4) = (v4([1, 1, 1, 1], 1), v4([2, 2, 2, 2], 2));
    let (s6, d6) = (v6("::1", 1), v6("::2", 2));
    assert_eq!(
        forge_udp(&mut buf, 48..60, s4, d6),
        Err(ForgeError::FamilyMismatch)
    );
    assert_eq!(
        forge_udp(&mut buf, 48..60, s6, d4),
        Err(ForgeError::FamilyMismatch)
    );
    assert_eq!(
        forge_udp(&mut buf, 27..60, s4, d4),
        Err(ForgeError::NoHeadroom)
    );
    assert_eq!(forge_udp(&mut buf, 28..60, s4, d4), Ok(0..60));
    assert_eq!(
        forge_udp(&mut buf, 47..60, s6, d6),
        Err(ForgeError::NoHeadroom)
    );
    assert_eq!(forge_udp(&mut buf, 48..60, s6, d6), Ok(0..60));
    assert_eq!(
        forge_udp(&mut buf, 48..101, s4, d4),
        Err(ForgeError::BadRange)
    );
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 60..50;
    assert_eq!(
        forge_udp(&mut buf, backwards, s4, d4),
        Err(ForgeError::BadRange)
    );

    // Nothing is written on error.
    let mut big = vec![0x5a; IPV6_UDP_HEADER_LEN + IPV6_UDP_MAX_PAYLOAD + 1];
    assert_eq!(
        forge_udp(&mut big, 28..28 + IPV4_UDP_MAX_PAYLOAD + 1, s4, d4),
        Err(ForgeError::TooLong)
    );
    assert_eq!(
        forge_udp(&mut big, 48..48 + IPV6_UDP_MAX_PAYLOAD + 1, s6, d6),
        Err(ForgeError::TooLong)
    );
    assert!(big.iter().all(|&b| b == 0x5a));
    assert_eq!(
        forge_udp(&mut big, 28..28 + IPV4_UDP_MAX_PAYLOAD, s4, d4),
        Ok(0..u16::MAX as usize)
    );
    assert_eq!(
        forge_udp(&mut big, 48..48 + IPV6_UDP_MAX_PAYLOAD, s6, d6),
        Ok(0..u16::MAX as usize + 40)
    );
}

#[test]
fn known_ipv4_packet() {
    let datagram = parse_udp(&DNS_QUERY_V4).unwrap();
    assert_eq!(datagram.source, v4([192, 0, 2, 1], 53000));
    assert_eq!(datagram.destination, v4([198, 51, 100, 53], 53));
    assert_eq!(datagram.payload, 28..57);
    assert_eq!(DNS_QUERY_V4[datagram.payload][..2], [0x12, 0x34]);
    // smoltcp agrees (with its checksum checks).
    let (s, d, payload) = smoltcp_parse_lenient(&DNS_QUERY_V4);
    assert_eq!(
        (s, d, payload.len()),
        (datagram.source, datagram.destination, 29)
    );
}

#[test]
fn known_ipv6_packet() {
    let datagram = parse_udp(&DNS_QUERY_V6).unwrap();
    assert_eq!(datagram.source, v6("2001:db8::1", 53000));
    assert_eq!(datagram.destination, v6("2001:db8::53", 53));
    assert_eq!(datagram.payload, 48..77);
    assert_eq!(DNS_QUERY_V6[datagram.payload][..2], [0xab, 0xcd]);
    let (s, d, payload) = smoltcp_parse_lenient(&DNS_QUERY_V6);
    assert_eq!(
        (s, d, payload.len()),
        (datagram.source, datagram.destination, 29)
    );
}

/// Like [`smoltcp_parse`] without the checks on the fields that
/// [`forge_udp`] sets (TTL, identification, flow label).
fn smoltcp_parse_lenient(packet: &[u8]) -> (SocketAddr, SocketAddr, &[u8]) {
    let caps = ChecksumCapabilities::default();
    let (src, dst, payload) = if packet[0] >> 4 == 4 {
        let ip = Ipv4Packet::new_checked(packet).unwrap();
        let repr = Ipv4Repr::parse(&ip, &caps).unwrap();
        (
            IpAddress::Ipv4(repr.src_addr),
            IpAddress::Ipv4(repr.dst_addr),
            ip.payload(),
        )
    } else {
        let ip = Ipv6Packet::new_checked(packet).unwrap();
        let repr = Ipv6Repr::parse(&ip).unwrap();
        (
            IpAddress::Ipv6(repr.src_addr),
            IpAddress::Ipv6(repr.dst_addr),
            ip.payload(),
        )
    };
    let udp = UdpPacket::new_checked(payload).unwrap();
    let repr = UdpRepr::parse(&udp, &src, &dst, &caps).unwrap();
    (
        SocketAddr::new(src.into(), repr.src_port),
        SocketAddr::new(dst.into(), repr.dst_port),
        udp.payload(),
    )
}

/// Flips every bit of `packet` in turn. Nothing panics; a flip inside the
/// UDP payload is always refused as a bad checksum; a flip that is accepted
/// must lie in `uncovered` (bytes no checksum covers) and must not change
/// what is parsed. Returns how many flips were accepted.
fn flip_every_bit(packet: &[u8], uncovered: &[Range<usize>]) -> usize {
    let original = parse_udp(packet).unwrap();
    let mut copy = packet.to_vec();
    let mut accepted = 0;
    for bit in 0..packet.len() * 8 {
        let (byte, mask) = (bit / 8, 1u8 << (bit % 8));
        copy[byte] ^= mask;
        match parse_udp(&copy) {
            Ok(datagram) => {
                assert!(
                    uncovered.iter().any(|r| r.contains(&byte)),
                    "flip of bit {bit} (byte {byte}) accepted"
                );
                assert_eq!(datagram, original);
                accepted += 1;
            }
            Err(drop) => {
                if original.payload.contains(&byte) {
                    assert_eq!(drop, IpDrop::BadChecksum, "bit {bit}");
                }
            }
        }
        copy[byte] ^= mask;
    }
    accepted
}

#[test]
fn single_bit_flips_ipv4() {
    // The IPv4 header checksum covers the whole header, the UDP checksum
    // the addresses, protocol, UDP header and payload. No flip can make the
    // UDP checksum 0 (which would switch it off) here.
    assert_eq!(DNS_QUERY_V4[26..28], [0x62, 0x5a]);
    assert_eq!(flip_every_bit(&DNS_QUERY_V4, &[]), 0);
    let (buf, range) = forge(
        &payload_of(100),
        v4([10, 9, 8, 7], 1),
        v4([1, 2, 3, 4], 5),
        0,
        0,
    );
    let packet = &buf[range];
    assert_ne!(u16::from_be_bytes([packet[26], packet[27]]).count_ones(), 1);
    assert_eq!(flip_every_bit(packet, &[]), 0);
}

#[test]
fn single_bit_flips_ipv6() {
    // IPv6 has no header checksum: traffic class, flow label (bytes 0..4
    // bar the version nibble) and hop limit (byte 7) are covered by nothing.
    // 4 bits of the first byte, 24 of bytes 1..4, 8 of the hop limit.
    let uncovered = [0..4, 7..8];
    assert_eq!(flip_every_bit(&DNS_QUERY_V6, &uncovered), 36);
    let (buf, range) = forge(
        &payload_of(100),
        v6("fd00::7", 1),
        v6("2001:db8::99", 5),
        0,
        0,
    );
    assert_eq!(flip_every_bit(&buf[range], &uncovered), 36);
}

/// Rewrites the IPv4 header of `packet` with `edit` and fixes its checksum.
fn edit_ipv4(packet: &[u8], edit: impl FnOnce(&mut Ipv4Packet<&mut [u8]>)) -> Vec<u8> {
    let mut copy = packet.to_vec();
    let mut ip = Ipv4Packet::new_unchecked(&mut copy[..]);
    edit(&mut ip);
    ip.fill_checksum();
    copy
}

#[test]
fn not_udp() {
    for protocol in [IpProtocol::Tcp, IpProtocol::Icmp, IpProtocol::Unknown(200)] {
        let packet = edit_ipv4(&DNS_QUERY_V4, |ip| ip.set_next_header(protocol));
        assert_eq!(parse_udp(&packet), Err(IpDrop::NotUdp), "{protocol}");
    }
    for next in [
        IpProtocol::Tcp,
        IpProtocol::Icmpv6,
        IpProtocol::HopByHop,
        IpProtocol::Ipv6Route,
        IpProtocol::Ipv6Opts,
        IpProtocol::Ipv6NoNxt,
    ] {
        let mut packet = DNS_QUERY_V6.to_vec();
        Ipv6Packet::new_unchecked(&mut packet[..]).set_next_header(next);
        assert_eq!(parse_udp(&packet), Err(IpDrop::NotUdp), "{next}");
    }
}

#[test]
fn fragments() {
    let more = edit_ipv4(&DNS_QUERY_V4, |ip| ip.set_more_frags(true));
    assert_eq!(parse_udp(&more), Err(IpDrop::Fragment));
    let offset = edit_ipv4(&DNS_QUERY_V4, |ip| ip.set_frag_offset(1480));
    assert_eq!(parse_udp(&offset), Err(IpDrop::Fragment));
    let both = edit_ipv4(&DNS_QUERY_V4, |ip| {
        ip.set_frag_offset(8);
        ip.set_more_frags(true);
    });
    assert_eq!(parse_udp(&both), Err(IpDrop::Fragment));
    // Without DF the packet is still whole.
    let no_df = edit_ipv4(&DNS_QUERY_V4, |ip| ip.set_dont_frag(false));
    assert!(parse_udp(&no_df).is_ok());

    let mut packet = DNS_QUERY_V6.to_vec();
    Ipv6Packet::new_unchecked(&mut packet[..]).set_next_header(IpProtocol::Ipv6Frag);
    assert_eq!(parse_udp(&packet), Err(IpDrop::Fragment));
}

#[test]
fn truncated() {
    for packet in [&DNS_QUERY_V4[..], &DNS_QUERY_V6[..]] {
        for len in 0..packet.len() {
            assert_eq!(parse_udp(&packet[..len]), Err(IpDrop::Malformed), "{len}");
        }
    }
}

#[test]
fn malformed_lengths() {
    // IPv4 total length shorter than the header.
    let packet = edit_ipv4(&DNS_QUERY_V4, |ip| ip.set_total_len(19));
    assert_eq!(parse_udp(&packet), Err(IpDrop::Malformed));
    // IPv4 header length under 20 bytes.
    let packet = edit_ipv4(&DNS_QUERY_V4, |ip| ip.set_header_len(16));
    assert_eq!(parse_udp(&packet), Err(IpDrop::Malformed));
    // IP payload shorter than the UDP header.
    let packet = edit_ipv4(&DNS_QUERY_V4, |ip| ip.set_total_len(27));
    assert_eq!(parse_udp(&packet[..27]), Err(IpDrop::Malformed));
    // UDP length beyond the IP payload.
    let packet = edit_ipv4(&DNS_QUERY_V4, |ip| ip.set_total_len(56));
    assert_eq!(parse_udp(&packet), Err(IpDrop::Malformed));
    // UDP length under 8.
    let mut packet = DNS_QUERY_V4;
    UdpPacket::new_unchecked(&mut packet[20..]).set_len(7);
    assert_eq!(parse_udp(&packet), Err(IpDrop::Malformed));
    // IPv6 payload length beyond the slice.
    let mut packet = DNS_QUERY_V6;
    Ipv6Packet::new_unchecked(&mut packet[..]).set_payload_len(38);
    assert_eq!(parse_udp(&packet), Err(IpDrop::Malformed));
    // Empty.
    assert_eq!(parse_udp(&[]), Err(IpDrop::Malformed));
}

#[test]
fn ipv4_options_are_skipped() {
    // 4 bytes of options (NOP NOP NOP EOL) between header and UDP.
    let mut packet = DNS_QUERY_V4[..20].to_vec();
    packet.extend_from_slice(&[1, 1, 1, 0]);
    packet.extend_from_slice(&DNS_QUERY_V4[20..]);
    let packet = edit_ipv4(&packet, |ip| {
        ip.set_header_len(24);
        ip.set_total_len(61);
    });
    let datagram = parse_udp(&packet).unwrap();
    assert_eq!(datagram.payload, 32..61);
    assert_eq!(datagram.destination, v4([198, 51, 100, 53], 53));
}

#[test]
fn udp_shorter_than_ip_payload() {
    // Two bytes of padding after the UDP datagram, inside the IP length.
    let mut packet = DNS_QUERY_V4.to_vec();
    packet.extend_from_slice(&[0xee, 0xee]);
    let packet = edit_ipv4(&packet, |ip| ip.set_total_len(59));
    assert_eq!(parse_udp(&packet).unwrap().payload, 28..57);

    // Trailing bytes past the IP length are ignored as well.
    let mut packet = DNS_QUERY_V6.to_vec();
    packet.extend_from_slice(&[0xee; 9]);
    assert_eq!(parse_udp(&packet).unwrap().payload, 48..77);
}

#[test]
fn zero_udp_checksum() {
    let mut packet = DNS_QUERY_V4;
    UdpPacket::new_unchecked(&mut packet[20..]).set_checksum(0);
    assert_eq!(parse_udp(&packet).unwrap().payload, 28..57);

    let mut packet = DNS_QUERY_V6;
    UdpPacket::new_unchecked(&mut packet[40..]).set_checksum(0);
    assert_eq!(parse_udp(&packet), Err(IpDrop::BadChecksum));
}

#[test]
fn bad_checksums() {
    let mut packet = DNS_QUERY_V4;
    packet[11] ^= 1;
    assert_eq!(parse_udp(&packet), Err(IpDrop::BadChecksum));
    let mut packet = DNS_QUERY_V4;
    packet[27] ^= 1;
    assert_eq!(parse_udp(&packet), Err(IpDrop::BadChecksum));
    let mut packet = DNS_QUERY_V6;
    packet[47] ^= 1;
    assert_eq!(parse_udp(&packet), Err(IpDrop::BadChecksum));
    // A corrupted flags field is a bad checksum, not a fragment.
    let mut packet = DNS_QUERY_V4;
    packet[6] |= 0x20;
    assert_eq!(parse_udp(&packet), Err(IpDrop::BadChecksum));
}

#[test]
fn destination_port_zero_is_malformed() {
    let (buf, range) = forge(b"x", v4([1, 2, 3, 4], 0), v4([5, 6, 7, 8], 0), 0, 0);
    assert_eq!(parse_udp(&buf[range]), Err(IpDrop::Malformed));
    // Source port 0 is allowed by RFC 768.
    let (buf, range) = forge(b"x", v4([1, 2, 3, 4], 0), v4([5, 6, 7, 8], 9), 0, 0);
    assert_eq!(parse_udp(&buf[range]).unwrap().source, v4([1, 2, 3, 4], 0));
}

#[test]
fn other_versions_are_unsupported() {
    for version in [0u8, 1, 5, 7, 15] {
        let mut packet = DNS_QUERY_V4;
        packet[0] = (version << 4) | 5;
        assert_eq!(parse_udp(&packet), Err(IpDrop::Unsupported), "{version}");
    }
    // An IPv4 header with version 6 is read as IPv6 (and fails there).
    let mut packet = DNS_QUERY_V4;
    packet[0] = 0x65;
    assert!(parse_udp(&packet).is_err());
}

#[test]
fn drop_names() {
    let names: Vec<_> = IpDrop::ALL.iter().map(|d| d.as_str()).collect();
    assert_eq!(
        names,
        [
            "ip_malformed",
            "ip_fragment",
            "ip_not_udp",
            "ip_bad_checksum",
            "ip_unsupported"
        ]
    );
    assert_eq!(IpDrop::NotUdp.to_string(), "ip_not_udp");
}

fn any_socket_addr_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            1..=u16::MAX
        )
            .prop_map(|(s, sp, d, dp)| (v4(s, sp), v4(d, dp))),
        (any::<u128>(), any::<u16>(), any::<u128>(), 1..=u16::MAX).prop_map(|(s, sp, d, dp)| {
            (
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(s), sp, 0, 0)),
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(d), dp, 0, 0)),
            )
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(datagram) = parse_udp(&bytes) {
            prop_assert!(datagram.payload.start <= datagram.payload.end);
            prop_assert!(datagram.payload.end <= bytes.len());
        }
    }

    /// Bytes that start like an IPv4 or IPv6 header get past the version
    /// check and exercise the length and checksum paths.
    #[test]
    fn ip_like_bytes_never_panic(
        first in prop_oneof![Just(0x45u8), 0x40u8..0x50, Just(0x60u8)],
        rest in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut bytes = vec![first];
        bytes.extend_from_slice(&rest);
        if let Ok(datagram) = parse_udp(&bytes) {
            prop_assert!(datagram.payload.end <= bytes.len());
        }
    }

    #[test]
    fn damaged_packets_never_panic(
        pick_v6 in any::<bool>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mut bytes = if pick_v6 { DNS_QUERY_V6.to_vec() } else { DNS_QUERY_V4.to_vec() };
        for (at, value) in edits {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        if let Ok(datagram) = parse_udp(&bytes) {
            prop_assert!(datagram.payload.end <= bytes.len());
        }
    }

    #[test]
    fn forge_then_parse(
        (source, destination) in any_socket_addr_pair(),
        payload in proptest::collection::vec(any::<u8>(), 0..1500),
        headroom in 0usize..8,
        tail in 0usize..8,
    ) {
        let (buf, range) = forge(&payload, source, destination, headroom, tail);
        let packet = &buf[range.clone()];
        let datagram = parse_udp(packet).unwrap();
        prop_assert_eq!(datagram.source, source);
        prop_assert_eq!(datagram.destination, destination);
        prop_assert_eq!(&packet[datagram.payload.clone()], &payload[..]);
        let (s, d, p) = smoltcp_parse(packet);
        prop_assert_eq!((s, d, p), (source, destination, &payload[..]));
        // With the tail bytes after it, too.
        prop_assert_eq!(parse_udp(&buf[range.start..]), Ok(datagram));
    }
}
