//! Router mode with an L3 exit: whole packets of any protocol both ways,
//! the source check, the allow-list on protocol and port, routing of the
//! exit TUN's packets by peer addresses, and a half configured for the
//! other exit seen as a mode mismatch.

use super::*;
use crate::ip::l3::IpNet;
use core::net::{IpAddr, Ipv6Addr};
use smoltcp::wire::Ipv4Packet;

/// An IPv4 packet of `protocol` from `src` to `dst`, whose upper-layer
/// header starts with source port 40000 and destination port `port`.
fn v4(protocol: u8, src: &str, dst: &str, port: u16) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = protocol;
    let (src, dst): (core::net::Ipv4Addr, core::net::Ipv4Addr) =
        (src.parse().unwrap(), dst.parse().unwrap());
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&port.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
    p
}

/// An IPv6 packet of `protocol` with 8 bytes of upper layer.
fn v6(protocol: u8, src: &str, dst: &str, port: u16) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&8u16.to_be_bytes());
    p[6] = protocol;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
    p[24..40].copy_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
    p[40..42].copy_from_slice(&40000u16.to_be_bytes());
    p[42..44].copy_from_slice(&port.to_be_bytes());
    p
}

fn l3_exit(id: u8, peer: PeerId, rules: &[&str], addresses: &[&str]) -> ServiceConfig {
    let mut allow = AllowList::new();
    for r in rules {
        allow.push(r.parse().unwrap()).unwrap();
    }
    let mut peer_addresses = heapless::Vec::new();
    for a in addresses {
        peer_addresses.push(a.parse::<IpNet>().unwrap()).unwrap();
    }
    service(
        id,
        Peers::One(peer),
        Role::RouterTunExit {
            allow,
            peer_addresses,
        },
    )
}

const RULES: [&str; 3] = [
    "tcp://10.9.0.0/16:80",
    "icmp://10.9.0.0/16",
    "ip://[fd00:9::]/64",
];

fn l3_net(seed: u64, entry: usize) -> Net {
    let mut net = Net::new(seed);
    let (pe, px) = (net.peer[entry], net.peer[1 - entry]);
    net.service(entry, service(5, Peers::One(pe), Role::RouterTunEntry));
    net.service(
        1 - entry,
        l3_exit(5, px, &RULES, &["10.8.0.2/32", "fd00:8::/64"]),
    );
    net.up();
    net
}

#[test]
fn whole_packets_both_ways_in_both_mirror_images() {
    for entry in [X, Y] {
        let exit = 1 - entry;
        let mut net = l3_net(40, entry);
        let sent = [
            v4(6, "10.8.0.2", "10.9.0.1", 80),
            v4(1, "10.8.0.2", "10.9.0.1", 0),
            v6(6, "fd00:8::2", "fd00:9::1", 22),
            v6(47, "fd00:8::7", "fd00:9::1", 0),
        ];
        for p in &sent {
            net.tun_send(entry, ServiceId::new(5), p);
        }
        let at_exit: Vec<_> = std::mem::take(&mut net.tun);
        assert_eq!(at_exit.len(), sent.len(), "{:?}", net.drops);
        for ((node, service, bytes), p) in at_exit.iter().zip(&sent) {
            assert_eq!((*node, *service), (exit, ServiceId::new(5)));
            assert_eq!(bytes, p, "carried whole, byte for byte");
        }
        // Replies from the kernel at the exit go back whole.
        let replies = [
            v4(6, "10.9.0.1", "10.8.0.2", 40000),
            v6(58, "fd00:9::1", "fd00:8::2", 0),
        ];
        for p in &replies {
            net.exit_tun_send(exit, p);
        }
        let at_entry: Vec<_> = std::mem::take(&mut net.tun);
        assert_eq!(at_entry.len(), 2, "{:?}", net.drops);
        for ((node, service, bytes), p) in at_entry.iter().zip(&replies) {
            assert_eq!((*node, *service), (entry, ServiceId::new(5)));
            assert_eq!(bytes, p);
        }
        let (se, sx) = (
            net.stats(entry, ServiceId::new(5)),
            net.stats(exit, ServiceId::new(5)),
        );
        assert_eq!((se.to_peer.datagrams, se.from_peer.datagrams), (4, 2));
        assert_eq!((sx.to_peer.datagrams, sx.from_peer.datagrams), (2, 4));
        assert_eq!(se.to_peer.bytes, sent.iter().map(|p| p.len() as u64).sum());
        assert_eq!(sx.channels_open, 0, "no channels, no sockets");
        assert_eq!(net.open_sockets(exit), 0);
    }
}

#[test]
fn exit_checks_the_source_and_the_allow_list() {
    let mut net = l3_net(41, X);
    let cases = [
        // Another entry's (or anyone's) source.
        (
            v4(6, "10.8.0.3", "10.9.0.1", 80),
            ServiceDrop::SourceNotAllowed,
        ),
        (
            v6(6, "fd00:7::2", "fd00:9::1", 80),
            ServiceDrop::SourceNotAllowed,
        ),
        // TCP to a port, a protocol or a network the rules do not name.
        (v4(6, "10.8.0.2", "10.9.0.1", 81), ServiceDrop::NotAllowed),
        (v4(17, "10.8.0.2", "10.9.0.1", 80), ServiceDrop::NotAllowed),
        (v4(6, "10.8.0.2", "10.10.0.1", 80), ServiceDrop::NotAllowed),
        (
            v6(6, "fd00:8::2", "fd00:10::1", 80),
            ServiceDrop::NotAllowed,
        ),
    ];
    for (p, reason) in &cases {
        // Sent from the entry's TUN device: the entry carries any sane packet.
        net.tun_send(X, ServiceId::new(5), p);
        assert!(net.tun.is_empty(), "{reason:?}");
        assert_eq!(net.drops[Y].pop(), Some(Dropped::Service(*reason)));
    }
    assert_eq!(
        net.drop_count(Y, ServiceId::new(5), ServiceDrop::SourceNotAllowed),
        2
    );
    assert_eq!(
        net.drop_count(Y, ServiceId::new(5), ServiceDrop::NotAllowed),
        4
    );
    assert_eq!(net.stats(X, ServiceId::new(5)).to_peer.datagrams, 6);
    // Malformed packets go nowhere, at either end.
    let mut bad = v4(6, "10.8.0.2", "10.9.0.1", 80);
    bad.pop();
    net.tun_send(X, ServiceId::new(5), &bad);
    assert_eq!(
        net.drop_count(X, ServiceId::new(5), ServiceDrop::MalformedIp),
        1
    );
    net.exit_tun_send(Y, &bad);
    assert_eq!(net.nodes[Y].node_drops().get(ServiceDrop::MalformedIp), 1);
    assert!(net.tun.is_empty());
}

/// Two L3 exit services, each with its own addresses: the exit TUN's
/// packets go to the service holding the destination, the longest prefix
/// first, and nowhere if none does.
#[test]
fn exit_tun_packets_go_to_the_peer_of_their_destination() {
    let mut net = Net::new(42);
    let (px, py) = (net.peer[X], net.peer[Y]);
    net.service(X, service(5, Peers::One(px), Role::RouterTunEntry));
    net.service(X, service(6, Peers::One(px), Role::RouterTunEntry));
    net.service(Y, l3_exit(5, py, &RULES, &["10.8.0.0/24"]));
    net.service(Y, l3_exit(6, py, &RULES, &["10.8.1.0/24", "fd00:8::/64"]));
    net.up();
    for (dst, service) in [("10.8.0.9", 5), ("10.8.1.9", 6), ("10.8.0.2", 5)] {
        net.exit_tun_send(Y, &v4(6, "10.9.0.1", dst, 40000));
        let (node, got, _) = net.tun.pop().expect("delivered");
        assert_eq!((node, got), (X, ServiceId::new(service)), "{dst}");
    }
    net.exit_tun_send(Y, &v6(6, "fd00:9::1", "fd00:8::5", 1));
    assert_eq!(
        net.tun.pop().map(|t| (t.0, t.1)),
        Some((X, ServiceId::new(6)))
    );
    net.exit_tun_send(Y, &v4(6, "10.9.0.1", "10.8.2.1", 40000));
    assert!(net.tun.is_empty());
    assert_eq!(
        net.nodes[Y].node_drops().get(ServiceDrop::NoPeerForAddress),
        1
    );
}

#[test]
fn overlapping_or_missing_peer_addresses_are_refused() {
    let mut net = Net::new(43);
    let py = net.peer[Y];
    net.service(Y, l3_exit(5, py, &RULES, &["10.8.0.0/16"]));
    assert_eq!(
        net.nodes[Y].add_service(l3_exit(6, py, &RULES, &["10.8.1.0/24"])),
        Err(ServiceError::OverlappingPeerAddresses)
    );
    assert_eq!(
        net.nodes[Y].add_service(l3_exit(7, py, &RULES, &[])),
        Err(ServiceError::BadPeerAddresses)
    );
    let mut any = l3_exit(8, py, &RULES, &["10.7.0.0/16"]);
    any.peers = Peers::Any;
    assert_eq!(
        net.nodes[Y].add_service(any),
        Err(ServiceError::BadPeerAddresses)
    );
}

/// An L3 entry against a socket exit (and the reverse): the frames have
/// the wrong shape, counted and reported as a mode mismatch.
#[test]
fn an_l3_half_with_a_socket_half_is_a_mode_mismatch() {
    let mut net = Net::new(44);
    let (px, py) = (net.peer[X], net.peer[Y]);
    net.service(X, service(5, Peers::One(px), Role::RouterTunEntry));
    net.service(Y, router_exit(5, py, &["ip://10.0.0.0/8"]));
    net.up();
    net.tun_send(X, ServiceId::new(5), &v4(17, "10.8.0.2", "10.9.0.1", 53));
    assert_eq!(
        net.drop_count(Y, ServiceId::new(5), ServiceDrop::ModeMismatch),
        1
    );
    assert!(net.events[Y].iter().any(|e| matches!(
        e,
        NodeEvent::Mismatch {
            problem: ServiceDrop::ModeMismatch,
            ..
        }
    )));

    let mut net = Net::new(45);
    let (px, py) = (net.peer[X], net.peer[Y]);
    net.service(X, service(5, Peers::One(px), Role::RouterEntry));
    net.service(Y, l3_exit(5, py, &["ip://10.0.0.0/8"], &["10.8.0.0/24"]));
    net.up();
    let udp = super::router::packet(a("10.8.0.2:4000"), a("10.9.0.1:53"), b"q");
    net.tun_send(X, ServiceId::new(5), &udp);
    assert_eq!(
        net.drop_count(Y, ServiceId::new(5), ServiceDrop::ModeMismatch),
        1
    );
    assert!(net.tun.is_empty() && net.delivered.is_empty());
}

/// A packet too big for one frame, either way, is answered with ICMP
/// Fragmentation Needed towards its sender, on the TUN it came from.
#[test]
fn too_big_packets_are_answered_at_both_ends() {
    let mut net = Net::with_link(46, ["192.0.2.1:4000", "192.0.2.2:4000"], 576);
    let (px, py) = (net.peer[X], net.peer[Y]);
    net.service(X, service(5, Peers::One(px), Role::RouterTunEntry));
    net.service(Y, l3_exit(5, py, &RULES, &["10.8.0.2/32"]));
    net.up();
    let mtu = net.nodes[X].router_packet_mtu(ServiceId::new(5)).unwrap();
    assert_eq!(net.nodes[Y].router_packet_mtu(ServiceId::new(5)), Some(mtu));
    // The whole packet rides in the frame: the MTU is the largest payload.
    assert_eq!(
        net.nodes[X].max_payload(ServiceId::new(5), None),
        Some(usize::from(mtu))
    );
    let sized = |src: &str, dst: &str, len: usize| {
        let mut p = v4(6, src, dst, 80);
        p.resize(len, 0);
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
        p
    };
    let big = |src: &str, dst: &str| sized(src, dst, usize::from(mtu) + 1);
    net.tun_send(
        X,
        ServiceId::new(5),
        &sized("10.8.0.2", "10.9.0.1", usize::from(mtu)),
    );
    net.exit_tun_send(Y, &sized("10.9.0.1", "10.8.0.2", usize::from(mtu)));
    assert_eq!(
        net.tun
            .drain(..)
            .map(|t| (t.0, t.2.len()))
            .collect::<Vec<_>>(),
        [(Y, usize::from(mtu)), (X, usize::from(mtu))],
        "a packet of the MTU fits"
    );
    for (node, p) in [
        (X, big("10.8.0.2", "10.9.0.1")),
        (Y, big("10.9.0.1", "10.8.0.2")),
    ] {
        if node == X {
            net.tun_send(X, ServiceId::new(5), &p);
        } else {
            net.exit_tun_send(Y, &p);
        }
        let (at, service, icmp) = net.tun.pop().expect("an ICMP error");
        assert_eq!((at, service), (node, ServiceId::new(5)));
        let info = crate::ip::l3::parse_packet(&icmp).unwrap();
        assert_eq!(info.protocol, 1);
        assert_eq!(
            info.destination,
            IpAddr::from(<[u8; 4]>::try_from(&p[12..16]).unwrap())
        );
        assert_eq!(&icmp[20..22], &[3, 4], "Fragmentation Needed");
        assert_eq!(&icmp[26..28], &mtu.to_be_bytes());
        assert_eq!(
            net.drop_count(node, ServiceId::new(5), ServiceDrop::TooBig),
            1
        );
    }
}
