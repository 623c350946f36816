use super::*;

use core::net::{Ipv4Addr, Ipv6Addr};

/// RFC 1071's checksum, written apart from smoltcp's.
fn csum(parts: &[&[u8]]) -> u16 {
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

/// Whether the IPv4 packet's header and ICMP checksums are right, by
/// [`csum`]: a right checksum sums to 0.
fn v4_checksums_ok(packet: &[u8]) -> bool {
    csum(&[&packet[..20]]) == 0 && csum(&[&packet[20..]]) == 0
}

fn v6_checksum_ok(packet: &[u8]) -> bool {
    let len = (packet.len() - 40) as u32;
    let pseudo_tail = [&len.to_be_bytes()[..], &[0, 0, 0, 58]].concat();
    csum(&[&packet[8..40], &pseudo_tail, &packet[40..]]) == 0
}

const PINGER4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const HOST4: Ipv4Addr = Ipv4Addr::new(10, 99, 9, 53);
const PINGER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 0x53);

/// An ICMPv4 echo request, ident 0x1234, seq 7, data "abcd", built by hand
/// with [`csum`].
fn echo_request_v4() -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 7, b'a', b'b', b'c', b'd'];
    let c = csum(&[&icmp]).to_be_bytes();
    icmp[2..4].copy_from_slice(&c);
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 1, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&PINGER4.octets());
    ip.extend_from_slice(&HOST4.octets());
    let c = csum(&[&ip]).to_be_bytes();
    ip[10..12].copy_from_slice(&c);
    ip.extend_from_slice(&icmp);
    ip
}

fn echo_request_v6() -> Vec<u8> {
    let mut icmp = vec![128, 0, 0, 0, 0xab, 0xcd, 0x01, 0x02, 1, 2, 3];
    let mut ip = vec![0x60, 0, 0, 0, 0, icmp.len() as u8, 58, 64];
    ip.extend_from_slice(&PINGER6.octets());
    ip.extend_from_slice(&HOST6.octets());
    let len = (icmp.len() as u32).to_be_bytes();
    let c = csum(&[&ip[8..40], &len, &[0, 0, 0, 58], &icmp]).to_be_bytes();
    icmp[2..4].copy_from_slice(&c);
    ip.extend_from_slice(&icmp);
    ip
}

#[test]
fn parses_echo_requests_of_both_families() {
    let p = echo_request_v4();
    let e = parse_echo(&p).unwrap();
    assert_eq!((e.source, e.destination), (PINGER4.into(), HOST4.into()));
    assert_eq!(e.ident, 0x1234);
    assert_eq!(&p[e.payload], &[0, 7, b'a', b'b', b'c', b'd']);

    let p = echo_request_v6();
    let e = parse_echo(&p).unwrap();
    assert_eq!((e.source, e.destination), (PINGER6.into(), HOST6.into()));
    assert_eq!(e.ident, 0xabcd);
    assert_eq!(&p[e.payload], &[1, 2, 1, 2, 3]);
}

#[test]
fn refuses_what_is_not_a_sound_echo_request() {
    let mut p = echo_request_v4();
    p[25] ^= 1; // the ICMP checksum
    assert_eq!(parse_echo(&p), Err(IpDrop::BadChecksum));
    let mut p = echo_request_v4();
    p[11] ^= 1; // the IPv4 header checksum
    assert_eq!(parse_echo(&p), Err(IpDrop::BadChecksum));
    let mut p = echo_request_v6();
    p[45] ^= 1;
    assert_eq!(parse_echo(&p), Err(IpDrop::BadChecksum));
    // An echo reply is not taken from the TUN device.
    let mut p = echo_request_v4();
    p[20] = 0;
    let c = csum(&[&p[20..22], &[0, 0], &p[24..]]);
    p[22..24].copy_from_slice(&c.to_be_bytes());
    assert_eq!(parse_echo(&p), Err(IpDrop::NotUdp));
    for cut in 0..28 {
        assert!(parse_echo(&echo_request_v4()[..cut]).is_err(), "{cut}");
    }
    assert!(parse_echo(&[0x70; 40]).is_err());
}

#[test]
fn exit_request_and_reply_payloads() {
    let mut buf = [0u8; 32];
    buf[16..20].copy_from_slice(&[0, 9, 0xee, 0xff]);
    let r = echo_request(&mut buf, 16..20, false).unwrap();
    assert_eq!(&buf[r.clone()], &[8, 0, 0, 0, 0, 0, 0, 9, 0xee, 0xff]);
    let r6 = echo_request(&mut buf, 16..20, true).unwrap();
    assert_eq!(buf[r6.start], 128);
    assert_eq!(
        echo_request(&mut buf, 2..6, false),
        Err(ForgeError::NoHeadroom)
    );
    let reply = [0u8, 0, 0x12, 0x34, 0x55, 0x66, 0, 9, 0xee];
    assert_eq!(echo_reply_payload(&reply), Some(6..9));
    let reply6 = [129u8, 0, 0, 0, 0, 0, 0, 9];
    assert_eq!(echo_reply_payload(&reply6), Some(6..8));
    assert_eq!(echo_reply_payload(&[3, 3, 0, 0, 0, 0, 0, 0]), None);
    assert_eq!(echo_reply_payload(&[0, 0, 0]), None);
}

#[test]
fn forged_echo_replies_have_right_checksums_and_fields() {
    let mut buf = [0u8; 128];
    let payload = 60..66;
    buf[payload.clone()].copy_from_slice(&[0, 7, b'a', b'b', b'c', b'd']);
    let r = forge_echo_reply(
        &mut buf,
        payload.clone(),
        HOST4.into(),
        PINGER4.into(),
        0x1234,
    )
    .unwrap();
    let p = &buf[r];
    assert_eq!(p.len(), 20 + 8 + 4);
    assert!(v4_checksums_ok(p));
    assert_eq!(&p[12..16], &HOST4.octets());
    assert_eq!(&p[16..20], &PINGER4.octets());
    assert_eq!(&p[20..22], &[0, 0]);
    assert_eq!(&p[24..28], &[0x12, 0x34, 0, 7]);

    let mut buf = [0u8; 128];
    buf[payload.clone()].copy_from_slice(&[0, 7, b'a', b'b', b'c', b'd']);
    let r = forge_echo_reply(&mut buf, payload, HOST6.into(), PINGER6.into(), 0xabcd).unwrap();
    let p = &buf[r];
    assert_eq!(p.len(), 40 + 8 + 4);
    assert!(v6_checksum_ok(p));
    assert_eq!((p[6], p[40], p[41]), (58, 129, 0));
    assert_eq!(&p[44..48], &[0xab, 0xcd, 0, 7]);
}

#[test]
fn forged_port_unreachable_quotes_the_datagram() {
    let client: SocketAddr = (PINGER4, 41000).into();
    let dest: SocketAddr = (HOST4, 53).into();
    let mut buf = [0u8; 128];
    let r = forge_port_unreachable(&mut buf, 4, client, dest).unwrap();
    let p = &buf[r.clone()];
    assert_eq!(r.start, 4);
    assert_eq!(p.len(), 20 + 8 + 20 + 8);
    assert!(v4_checksums_ok(p));
    assert_eq!(&p[12..16], &HOST4.octets());
    assert_eq!(&p[16..20], &PINGER4.octets());
    assert_eq!((p[9], p[20], p[21]), (1, 3, 3));
    let quote = &p[28..];
    assert_eq!(csum(&[&quote[..20]]), 0);
    assert_eq!(quote[9], 17);
    assert_eq!(&quote[12..16], &PINGER4.octets());
    assert_eq!(&quote[16..20], &HOST4.octets());
    assert_eq!(&quote[20..24], &[0xa0, 0x28, 0, 53]);

    let client: SocketAddr = (PINGER6, 41000).into();
    let dest: SocketAddr = (HOST6, 53).into();
    let r = forge_port_unreachable(&mut buf, 0, client, dest).unwrap();
    let p = &buf[r];
    assert_eq!(p.len(), 40 + 8 + 40 + 8);
    assert!(v6_checksum_ok(p));
    assert_eq!((p[40], p[41]), (1, 4));
    assert_eq!(&p[48 + 8..48 + 24], &PINGER6.octets());
    assert_eq!(
        forge_port_unreachable(&mut buf, 60, client, dest),
        Err(ForgeError::BadRange)
    );
    assert_eq!(
        forge_port_unreachable(&mut buf, 0, client, (HOST4, 53).into()),
        Err(ForgeError::FamilyMismatch)
    );
}

#[test]
fn too_big_announces_the_mtu_and_quotes_within_limits() {
    let mut buf = vec![0u8; 2000];
    let packet = 48..48 + 1500;
    for (i, b) in buf[packet.clone()].iter_mut().enumerate() {
        *b = i as u8;
    }
    let r = forge_too_big(&mut buf, packet.clone(), PINGER4.into(), HOST4.into(), 1458).unwrap();
    let p = &buf[r.clone()];
    assert_eq!(r.start, 48 - 28);
    assert_eq!(p.len(), MAX_ICMPV4_ERROR);
    assert!(v4_checksums_ok(p));
    assert_eq!(&p[20..22], &[3, 4]);
    assert_eq!(&p[26..28], &1458u16.to_be_bytes());
    assert_eq!(&p[12..16], &HOST4.octets());
    assert_eq!(&p[16..20], &PINGER4.octets());
    assert_eq!(p[28], 0, "the quote starts with the packet");

    let r = forge_too_big(&mut buf, packet, PINGER6.into(), HOST6.into(), 1438).unwrap();
    let p = &buf[r.clone()];
    assert_eq!(r.start, 0);
    assert_eq!(p.len(), MAX_ICMPV6_ERROR);
    assert!(v6_checksum_ok(p));
    assert_eq!(p[40], 2);
    assert_eq!(&p[44..48], &1438u32.to_be_bytes());
    // A short packet is quoted whole.
    let mut buf = [0u8; 100];
    let r = forge_too_big(&mut buf, 28..60, PINGER4.into(), HOST4.into(), 600).unwrap();
    assert_eq!(r, 0..60);
    assert_eq!(
        forge_too_big(&mut buf, 10..60, PINGER4.into(), HOST4.into(), 600),
        Err(ForgeError::NoHeadroom)
    );
}
