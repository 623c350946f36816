//! Router mode in both mirror images, over IPv4 and IPv6: channels per
//! (client, destination), the allow-list, forged replies that smoltcp's own
//! parser accepts with checksums verified.

use super::*;
use crate::ip;
use core::net::IpAddr;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr,
};

/// An IP/UDP packet from `src` to `dst`, built with core's own forging (it
/// is checked against smoltcp below).
pub(super) fn packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let head = ip::udp_header_len(&src);
    let mut buf = vec![0u8; head + payload.len()];
    buf[head..].copy_from_slice(payload);
    let range = ip::forge_udp(&mut buf, head..head + payload.len(), src, dst).unwrap();
    assert_eq!(range, 0..buf.len());
    buf
}

/// Parses a packet written to the TUN device with smoltcp, checksums
/// verified: (source, destination, payload).
pub(super) fn parse_with_smoltcp(bytes: &[u8]) -> (SocketAddr, SocketAddr, Vec<u8>) {
    let caps = ChecksumCapabilities::default();
    match bytes[0] >> 4 {
        4 => {
            let p = Ipv4Packet::new_checked(bytes).unwrap();
            let repr = Ipv4Repr::parse(&p, &caps).unwrap();
            assert_eq!(repr.next_header, IpProtocol::Udp);
            let u = UdpPacket::new_checked(p.payload()).unwrap();
            let (src, dst) = (
                IpAddress::Ipv4(repr.src_addr),
                IpAddress::Ipv4(repr.dst_addr),
            );
            let urepr = UdpRepr::parse(&u, &src, &dst, &caps).unwrap();
            (
                SocketAddr::new(repr.src_addr.into(), urepr.src_port),
                SocketAddr::new(repr.dst_addr.into(), urepr.dst_port),
                u.payload().to_vec(),
            )
        }
        6 => {
            let p = Ipv6Packet::new_checked(bytes).unwrap();
            let repr = Ipv6Repr::parse(&p).unwrap();
            assert_eq!(repr.next_header, IpProtocol::Udp);
            let u = UdpPacket::new_checked(p.payload()).unwrap();
            let (src, dst) = (
                IpAddress::Ipv6(repr.src_addr),
                IpAddress::Ipv6(repr.dst_addr),
            );
            let urepr = UdpRepr::parse(&u, &src, &dst, &caps).unwrap();
            (
                SocketAddr::new(repr.src_addr.into(), urepr.src_port),
                SocketAddr::new(repr.dst_addr.into(), urepr.dst_port),
                u.payload().to_vec(),
            )
        }
        v => panic!("IP version {v}"),
    }
}

fn router_net(seed: u64, entry: usize, rules: &[&str]) -> Net {
    let mut net = Net::new(seed);
    let pe = net.peer[entry];
    let px = net.peer[1 - entry];
    net.service(entry, service(5, Peers::One(pe), Role::RouterEntry));
    net.service(1 - entry, router_exit(5, px, rules));
    net.up();
    net
}

/// Every destination answers each datagram with "re:" + payload.
fn destinations_echo(net: &mut Net, exit: usize) {
    for d in std::mem::take(&mut net.delivered) {
        assert_eq!(d.node, exit);
        let socket = net.socket_at(exit, d.from);
        let mut reply = b"re:".to_vec();
        reply.extend_from_slice(&d.payload);
        net.send_on(exit, socket, d.to, &reply);
    }
}

#[test]
fn router_carries_udp_both_mirror_images_v4_and_v6() {
    for entry in [X, Y] {
        let exit = 1 - entry;
        let mut net = router_net(20, entry, &["10.0.0.0/8:53", "[2001:db8::]/32:53"]);
        let cases = [
            (a("10.99.0.2:40000"), a("10.1.1.1:53")),
            (a("10.99.0.2:40001"), a("10.1.1.1:53")),
            (a("10.99.0.3:40000"), a("10.2.2.2:53")),
            (a("[fd00::2]:40000"), a("[2001:db8::53]:53")),
        ];
        for (i, (client, dest)) in cases.iter().enumerate() {
            net.tun_send(
                entry,
                ServiceId::new(5),
                &packet(*client, *dest, format!("q{i}").as_bytes()),
            );
        }
        // One connected socket per (client, destination) at the exit.
        let to_dest: Vec<_> = net
            .delivered
            .iter()
            .map(|d| (d.to, d.payload.clone()))
            .collect();
        assert_eq!(to_dest.len(), 4);
        for (i, (_, dest)) in cases.iter().enumerate() {
            assert_eq!(to_dest[i], (*dest, format!("q{i}").into_bytes()));
        }
        assert_eq!(net.open_sockets(exit), 4);
        destinations_echo(&mut net, exit);
        assert_eq!(net.tun.len(), 4);
        for (i, (node, service, bytes)) in net.tun.iter().enumerate() {
            assert_eq!((*node, *service), (entry, ServiceId::new(5)));
            let (src, dst, payload) = parse_with_smoltcp(bytes);
            assert_eq!(
                (src, dst),
                (cases[i].1, cases[i].0),
                "reply {i} from the destination to its client"
            );
            assert_eq!(payload, format!("re:q{i}").into_bytes());
            // Core's own parser agrees.
            let udp = ip::parse_udp(bytes).unwrap();
            assert_eq!((udp.source, udp.destination), (src, dst));
        }
        let (se, sx) = (
            net.stats(entry, ServiceId::new(5)),
            net.stats(exit, ServiceId::new(5)),
        );
        assert_eq!(
            (
                se.to_peer.datagrams,
                se.from_peer.datagrams,
                se.channels_open
            ),
            (4, 4, 4)
        );
        assert_eq!(
            (
                sx.to_peer.datagrams,
                sx.from_peer.datagrams,
                sx.channels_open
            ),
            (4, 4, 4)
        );
    }
}

#[test]
fn router_exit_enforces_the_allow_list() {
    let mut net = router_net(21, X, &["10.0.0.0/8:53"]);
    let client = a("10.99.0.2:40000");
    net.tun_send(
        X,
        ServiceId::new(5),
        &packet(client, a("10.1.1.1:53"), b"allowed"),
    );
    net.tun_send(
        X,
        ServiceId::new(5),
        &packet(client, a("10.1.1.1:54"), b"wrong port"),
    );
    net.tun_send(
        X,
        ServiceId::new(5),
        &packet(client, a("192.0.2.1:53"), b"wrong network"),
    );
    net.tun_send(
        X,
        ServiceId::new(5),
        &packet(a("[fd00::2]:1"), a("[2001:db8::1]:53"), b"v6 not allowed"),
    );
    assert_eq!(net.delivered.len(), 1);
    assert_eq!(net.delivered[0].to, a("10.1.1.1:53"));
    assert_eq!(
        net.drop_count(Y, ServiceId::new(5), ServiceDrop::NotAllowed),
        3
    );
    assert_eq!(net.open_sockets(Y), 1);
}

#[test]
fn empty_allow_list_allows_nothing() {
    let mut net = router_net(22, X, &[]);
    net.tun_send(
        X,
        ServiceId::new(5),
        &packet(a("10.99.0.2:40000"), a("10.1.1.1:53"), b"x"),
    );
    assert!(net.delivered.is_empty());
    assert_eq!(
        net.drop_count(Y, ServiceId::new(5), ServiceDrop::NotAllowed),
        1
    );
}

#[test]
fn router_entry_drops_what_is_not_udp() {
    let mut net = router_net(23, X, &["0.0.0.0/0"]);
    let mut tcp = packet(a("10.99.0.2:40000"), a("10.1.1.1:80"), b"x");
    // Turn it into TCP (protocol 6) with a valid header checksum.
    {
        let mut p = Ipv4Packet::new_unchecked(&mut tcp[..]);
        p.set_next_header(IpProtocol::Tcp);
        p.fill_checksum();
    }
    net.tun_send(X, ServiceId::new(5), &tcp);
    net.tun_send(X, ServiceId::new(5), &[0x45, 0, 0]);
    let mut corrupt = packet(a("10.99.0.2:40000"), a("10.1.1.1:53"), b"payload");
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    net.tun_send(X, ServiceId::new(5), &corrupt);
    assert!(net.delivered.is_empty());
    assert_eq!(net.drop_count(X, ServiceId::new(5), ServiceDrop::NotUdp), 1);
    assert_eq!(
        net.drop_count(X, ServiceId::new(5), ServiceDrop::MalformedIp),
        1
    );
    assert_eq!(
        net.drop_count(X, ServiceId::new(5), ServiceDrop::BadChecksum),
        1
    );
}

#[test]
fn replies_never_cross_between_router_clients() {
    let mut net = router_net(24, X, &["10.0.0.0/8"]);
    let dest = a("10.1.1.1:53");
    for c in 0..6u16 {
        let client = SocketAddr::new([10, 99, 0, 2].into(), 50000 + c);
        net.tun_send(
            X,
            ServiceId::new(5),
            &packet(client, dest, &c.to_be_bytes()),
        );
    }
    destinations_echo(&mut net, Y);
    assert_eq!(net.tun.len(), 6);
    for (_, _, bytes) in &net.tun {
        let (src, dst, payload) = parse_with_smoltcp(bytes);
        assert_eq!(src, dest);
        let c = u16::from_be_bytes([payload[3], payload[4]]);
        assert_eq!(dst.port(), 50000 + c);
    }
}

/// An ICMP echo request from `src` (identifier `ident`) to `dst`, built
/// with a checksum of its own (RFC 1071).
fn echo_request(src: IpAddr, dst: IpAddr, ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let v6 = src.is_ipv6();
    let mut icmp = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    icmp.extend_from_slice(&ident.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(data);
    // Forge a reply-shaped packet with core, then turn it into a request:
    // the checksums are recomputed by smoltcp below.
    let mut buf = vec![0u8; 48 + icmp.len()];
    buf[48..].copy_from_slice(&icmp);
    let range =
        ip::icmp::forge_echo_reply(&mut buf, 48 + 6..48 + icmp.len(), src, dst, ident).unwrap();
    let mut p = buf[range].to_vec();
    let at = if v6 { 40 } else { 20 };
    p[at] = icmp[0];
    p[at + 2] = 0;
    p[at + 3] = 0;
    match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            smoltcp::wire::Icmpv6Packet::new_unchecked(&mut p[at..]).fill_checksum(&s, &d)
        }
        _ => smoltcp::wire::Icmpv4Packet::new_unchecked(&mut p[at..]).fill_checksum(),
    }
    p
}

#[test]
fn ping_through_the_exit_reaches_only_its_pinger() {
    for entry in [X, Y] {
        let exit = 1 - entry;
        let mut net = router_net(25, entry, &["icmp://10.0.0.0/8", "icmp://[2001:db8::]/32"]);
        let cases = [
            (ip("10.99.0.2"), ip("10.1.1.1"), 0x0101u16),
            (ip("10.99.0.2"), ip("10.1.1.1"), 0x0202),
            (ip("10.99.0.3"), ip("10.1.1.1"), 0x0101),
            (ip("fd00::2"), ip("2001:db8::1"), 0x0303),
        ];
        for (k, (src, dst, ident)) in cases.iter().enumerate() {
            net.tun_send(
                entry,
                ServiceId::new(5),
                &echo_request(*src, *dst, *ident, k as u16, b"ping!"),
            );
        }
        // The exit sends each from an echo socket (port 0) as an echo
        // request the kernel completes; the pinged hosts answer.
        let sent = std::mem::take(&mut net.delivered);
        assert_eq!(sent.len(), 4);
        for (k, d) in sent.iter().enumerate() {
            assert_eq!(d.to, SocketAddr::new(cases[k].1, 0));
            let request = if cases[k].1.is_ipv6() { 128 } else { 8 };
            assert_eq!(d.payload[0], request);
            assert_eq!(
                &d.payload[6..],
                &[&(k as u16).to_be_bytes()[..], b"ping!"].concat()[..]
            );
            let mut reply = d.payload.clone();
            reply[0] = if cases[k].1.is_ipv6() { 129 } else { 0 };
            let socket = net.socket_at(exit, d.from);
            net.send_on(exit, socket, d.to, &reply);
        }
        assert_eq!(net.tun.len(), 4);
        for (k, (_, _, p)) in net.tun.iter().enumerate() {
            let (src, dst, ident) = cases[k];
            let at = if src.is_ipv6() { 40 } else { 20 };
            let ok = match (src, dst) {
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    smoltcp::wire::Icmpv6Packet::new_checked(&p[at..])
                        .unwrap()
                        .verify_checksum(&d, &s)
                }
                _ => smoltcp::wire::Icmpv4Packet::new_checked(&p[at..])
                    .unwrap()
                    .verify_checksum(),
            };
            assert!(ok, "reply {k} checksum");
            assert_eq!(p[at], if src.is_ipv6() { 129 } else { 0 }, "an echo reply");
            let (from, to) = if src.is_ipv6() {
                (&p[8..24], &p[24..40])
            } else {
                (&p[12..16], &p[16..20])
            };
            let addr = |b: &[u8]| -> IpAddr {
                match b.len() {
                    4 => <[u8; 4]>::try_from(b).unwrap().into(),
                    _ => <[u8; 16]>::try_from(b).unwrap().into(),
                }
            };
            let e = ip::icmp::Echo {
                source: addr(from),
                destination: addr(to),
                ident: u16::from_be_bytes([p[at + 4], p[at + 5]]),
                payload: at + 6..p.len(),
            };
            assert_eq!(
                &p[e.payload.clone()],
                &[&(k as u16).to_be_bytes()[..], b"ping!"].concat()[..]
            );
            assert_eq!(
                (e.source, e.destination, e.ident),
                (dst, src, ident),
                "reply {k}"
            );
        }
        assert_eq!(net.stats(exit, ServiceId::new(5)).drops.total(), 0);
    }
}

#[test]
fn udp_rules_allow_no_ping_and_icmp_rules_no_udp() {
    let mut net = router_net(26, X, &["10.0.0.0/8", "icmp://192.0.2.0/24"]);
    net.tun_send(
        X,
        ServiceId::new(5),
        &echo_request(ip("10.99.0.2"), ip("10.1.1.1"), 1, 1, b"x"),
    );
    net.tun_send(
        X,
        ServiceId::new(5),
        &packet(a("10.99.0.2:40000"), a("192.0.2.1:53"), b"x"),
    );
    assert!(net.delivered.is_empty());
    assert_eq!(
        net.drop_count(Y, ServiceId::new(5), ServiceDrop::NotAllowed),
        2
    );
    assert_eq!(net.open_sockets(Y), 0);
}

#[test]
fn a_refused_destination_is_answered_to_its_own_client_only() {
    let mut net = router_net(27, X, &["10.0.0.0/8"]);
    let dest = a("10.1.1.1:53");
    let (c1, c2) = (a("10.99.0.2:40000"), a("10.99.0.2:40001"));
    net.tun_send(X, ServiceId::new(5), &packet(c1, dest, b"one"));
    net.tun_send(X, ServiceId::new(5), &packet(c2, dest, b"two"));
    let sent = std::mem::take(&mut net.delivered);
    let second = net.socket_at(Y, sent[1].from);
    net.refused(Y, second);
    assert_eq!(net.stats(Y, ServiceId::new(5)).target_unreachable, 1);
    assert_eq!(net.stats(X, ServiceId::new(5)).target_unreachable, 1);
    assert_eq!(net.tun.len(), 1);
    let p = &net.tun[0].2;
    // ICMP port unreachable from the destination to the second client,
    // quoting its datagram.
    assert_eq!((p[9], p[20], p[21]), (1, 3, 3));
    assert_eq!(&p[12..16], &[10, 1, 1, 1]);
    assert_eq!(&p[16..20], &[10, 99, 0, 2]);
    assert_eq!(&p[48..50], &40001u16.to_be_bytes());
    assert_eq!(net.stats(X, ServiceId::new(5)).icmp_errors_sent, 1);
}

#[test]
fn forged_icmp_errors_are_rate_limited() {
    let mut net = router_net(28, X, &["10.0.0.0/8"]);
    let dest = a("10.1.1.1:53");
    for c in 0..10u16 {
        net.tun_send(
            X,
            ServiceId::new(5),
            &packet(SocketAddr::new(ip("10.99.0.2"), 40000 + c), dest, b"q"),
        );
    }
    // Three refusals on each channel, all at the same instant.
    for d in std::mem::take(&mut net.delivered) {
        let socket = net.socket_at(Y, d.from);
        for _ in 0..3 {
            net.refused(Y, socket);
        }
    }
    let s = net.stats(X, ServiceId::new(5));
    assert_eq!(s.target_unreachable, 30);
    let burst = u64::from(super::super::router::ICMP_ERRORS_BURST);
    assert_eq!(s.icmp_errors_sent, burst);
    assert_eq!(s.icmp_errors_rate_limited, 30 - burst);
    assert_eq!(net.tun.len() as u64, burst);
    // A second later the bucket has refilled by the rate.
    net.now += Duration::from_secs(1);
    let d = net.connected_to(Y, dest);
    net.refused(Y, d[0].0);
    assert_eq!(net.stats(X, ServiceId::new(5)).icmp_errors_sent, burst + 1);
}

#[test]
fn a_dead_forward_target_is_counted_on_both_nodes() {
    let mut net = Net::new(29);
    let (px, py) = (net.peer[X], net.peer[Y]);
    net.service(X, forward_entry(1, px, "127.0.0.1:5300"));
    net.service(Y, forward_exit(1, Peers::One(py), "127.0.0.1:5399"));
    net.up();
    net.send(X, a("127.0.0.1:40000"), a("127.0.0.1:5300"), b"log");
    let d = std::mem::take(&mut net.delivered);
    let socket = net.socket_at(Y, d[0].from);
    net.refused(Y, socket);
    assert_eq!(net.stats(Y, ServiceId::new(1)).target_unreachable, 1);
    assert_eq!(net.stats(X, ServiceId::new(1)).target_unreachable, 1);
    assert_eq!(net.stats(X, ServiceId::new(1)).drops.total(), 0);
    assert!(net.tun.is_empty());
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
