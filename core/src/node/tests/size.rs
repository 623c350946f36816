//! The size limit: in every mode and direction, over IPv4 and IPv6 links, a
//! payload of exactly the limit crosses in one frame that fills the link MTU,
//! and one byte more is dropped at the sender as `too_big`, counted,
//! reported once, and opens no channel.

use super::router::{packet, parse_with_smoltcp};
use super::*;

const V4_LINK: [&str; 2] = ["192.0.2.1:51820", "192.0.2.2:51820"];
const V6_LINK: [&str; 2] = ["[2001:db8::1]:51820", "[2001:db8::2]:51820"];

/// IP and UDP header of a link datagram.
fn link_headers(link: [&str; 2]) -> usize {
    if link == V6_LINK {
        48
    } else {
        28
    }
}

/// The last data frame node `i` sent.
fn last_frame(net: &Net, i: usize) -> usize {
    net.wire
        .iter()
        .rev()
        .find(|(from, b)| *from == i && b[0] == 4)
        .map(|(_, b)| b.len())
        .unwrap()
}

fn too_big_events(net: &Net, i: usize) -> Vec<NodeEvent> {
    net.events[i]
        .iter()
        .filter(|e| matches!(e, NodeEvent::TooBig { .. }))
        .copied()
        .collect()
}

/// Sends `max` and `max + 1` bytes with `send(net, payload)` from node
/// `from` and checks: the first arrives whole (`received` returns what
/// arrived), the second is dropped as too big and reported once.
fn at_and_over(
    net: &mut Net,
    from: usize,
    service: ServiceId,
    max: usize,
    mut send: impl FnMut(&mut Net, &[u8]),
    mut received: impl FnMut(&mut Net) -> Vec<Vec<u8>>,
) -> usize {
    let before = net.stats(from, service).to_peer.datagrams;
    let at: Vec<u8> = (0..max).map(|i| i as u8).collect();
    send(net, &at);
    assert_eq!(received(net), vec![at], "the limit, {max} B, crosses");
    let frame = last_frame(net, from);
    let over = vec![0xab; max + 1];
    send(net, &over);
    assert!(received(net).is_empty(), "{} B does not cross", max + 1);
    assert_eq!(net.drop_count(from, service, ServiceDrop::TooBig), 1);
    assert_eq!(
        net.drops[from].last(),
        Some(&Dropped::Service(ServiceDrop::TooBig))
    );
    assert_eq!(net.stats(from, service).to_peer.datagrams, before + 1);
    let peer = net.peer[from];
    assert_eq!(
        too_big_events(net, from),
        vec![NodeEvent::TooBig {
            service,
            peer,
            len: max + 1,
            max
        }]
    );
    // Reported once, counted every time.
    send(net, &over);
    assert_eq!(too_big_events(net, from).len(), 1);
    assert_eq!(net.drop_count(from, service, ServiceDrop::TooBig), 2);
    frame
}

#[test]
fn direct_both_ways_v4_and_v6() {
    for (link, max) in [(V4_LINK, 1442), (V6_LINK, 1422)] {
        let (ax, ay) = (a("127.0.0.1:7001"), a("127.0.0.1:7002"));
        let (cx, cy) = (a("127.0.0.1:9001"), a("127.0.0.1:9002"));
        let mut net = Net::with_link(40, link, 1500);
        let (px, py) = (net.peer[X], net.peer[Y]);
        let direct = |peer, listen, customer| {
            ServiceConfig::new(
                ServiceId::new(3),
                Peers::One(peer),
                Role::Direct { listen, customer },
            )
        };
        net.service(X, direct(px, ax, cx));
        net.service(Y, direct(py, ay, cy));
        net.up();
        for (from, (customer, listen), to) in [(X, (cx, ax), cy), (Y, (cy, ay), cx)] {
            let frame = at_and_over(
                &mut net,
                from,
                ServiceId::new(3),
                max,
                |net, p| net.send(from, customer, listen, p),
                |net| net.take_payloads_to(to),
            );
            // The frame at the limit fills the MTU exactly.
            assert_eq!(link_headers(link) + frame, 1500);
        }
    }
}

#[test]
fn push_v4_and_v6() {
    for (link, max) in [(V4_LINK, 1438), (V6_LINK, 1418)] {
        let (listen, target) = (a("127.0.0.1:5514"), a("127.0.0.1:514"));
        let mut net = Net::with_link(41, link, 1500);
        let (px, py) = (net.peer[X], net.peer[Y]);
        net.service(
            X,
            ServiceConfig::new(
                ServiceId::new(2),
                Peers::One(px),
                Role::PushEntry { listen },
            ),
        );
        net.service(
            Y,
            ServiceConfig::new(ServiceId::new(2), Peers::One(py), Role::PushExit { target }),
        );
        net.up();
        let frame = at_and_over(
            &mut net,
            X,
            ServiceId::new(2),
            max,
            |net, p| net.send(X, a("127.0.0.1:40000"), listen, p),
            |net| net.take_payloads_to(target),
        );
        // The limit counts the sequence number at 4 bytes; number 0 takes 1.
        assert_eq!(link_headers(link) + frame + 3, 1500);
    }
}

#[test]
fn forward_both_ways_v4_and_v6_and_no_channel_for_what_is_too_big() {
    for (link, max) in [(V4_LINK, 1438), (V6_LINK, 1418)] {
        let (listen, target) = (a("127.0.0.1:5353"), a("127.0.0.9:53"));
        let client = a("198.51.100.7:10000");
        let mut net = Net::with_link(42, link, 1500);
        let (px, py) = (net.peer[X], net.peer[Y]);
        net.service(X, forward_entry(1, px, "127.0.0.1:5353"));
        net.service(Y, forward_exit(1, Peers::One(py), "127.0.0.9:53"));
        net.up();
        let frame = at_and_over(
            &mut net,
            X,
            ServiceId::new(1),
            max,
            |net, p| net.send(X, client, listen, p),
            |net| net.take_payloads_to(target),
        );
        // Channel number 0 takes 1 byte, not the 4 the limit keeps for it.
        assert_eq!(link_headers(link) + frame + 3, 1500);
        assert_eq!(net.stats(X, ServiceId::new(1)).channels_created, 1);
        // A new client whose first datagram is too big opens no channel.
        net.send(X, a("198.51.100.8:10000"), listen, &vec![1; max + 1]);
        assert_eq!(net.stats(X, ServiceId::new(1)).channels_created, 1);
        assert_eq!(net.stats(X, ServiceId::new(1)).channels_open, 1);

        // Replies: the exit's limit is the same.
        let (socket, _) = net.connected_to(Y, target)[0];
        at_and_over(
            &mut net,
            Y,
            ServiceId::new(1),
            max,
            |net, p| net.send_on(Y, socket, target, p),
            |net| net.take_payloads_to(client),
        );
    }
}

#[test]
fn router_both_destination_families_and_replies_v4_and_v6_links() {
    // (link, to an IPv4 destination, to an IPv6 one, replies)
    for (link, max4, max6, max_reply) in [(V4_LINK, 1432, 1420, 1438), (V6_LINK, 1412, 1400, 1418)]
    {
        let mut net = Net::with_link(43, link, 1500);
        let (px, py) = (net.peer[X], net.peer[Y]);
        net.service(X, service(5, Peers::One(px), Role::RouterEntry));
        net.service(
            Y,
            router_exit(5, py, &["10.0.0.0/8:53", "[2001:db8::]/32:53"]),
        );
        net.up();
        let cases = [
            (a("10.99.0.2:40000"), a("10.1.1.1:53"), max4),
            (a("[fd00::2]:40000"), a("[2001:db8::53]:53"), max6),
        ];
        for (client, dest, max) in cases {
            let before = net.drop_count(X, ServiceId::new(5), ServiceDrop::TooBig);
            let at: Vec<u8> = (0..max).map(|i| i as u8).collect();
            net.tun_send(X, ServiceId::new(5), &packet(client, dest, &at));
            let got = std::mem::take(&mut net.delivered);
            assert_eq!(got.len(), 1);
            assert_eq!((got[0].to, &got[0].payload), (dest, &at));
            // The frame's service header: 1 + 1 (channel 0) + destination.
            assert_eq!(link_headers(link) + last_frame(&net, X) + 3, 1500);
            let created = net.stats(X, ServiceId::new(5)).channels_created;
            let other_client = SocketAddr::new(client.ip(), 40001);
            let answered = net.tun.len();
            for c in [client, other_client] {
                net.tun_send(X, ServiceId::new(5), &packet(c, dest, &vec![0xab; max + 1]));
            }
            assert!(net.delivered.is_empty());
            // Each is answered with Fragmentation Needed / Packet Too Big,
            // to its own sender.
            let answers: Vec<_> = net.tun.drain(answered..).collect();
            assert_eq!(answers.len(), 2);
            for ((_, _, p), c) in answers.iter().zip([client, other_client]) {
                let (icmp, to) = if p[0] >> 4 == 4 {
                    (
                        &p[20..],
                        SocketAddr::new(<[u8; 4]>::try_from(&p[16..20]).unwrap().into(), 0),
                    )
                } else {
                    (
                        &p[40..],
                        SocketAddr::new(<[u8; 16]>::try_from(&p[24..40]).unwrap().into(), 0),
                    )
                };
                assert!(matches!((icmp[0], icmp[1]), (3, 4) | (2, 0)), "{icmp:?}");
                assert_eq!(to.ip(), c.ip());
            }
            assert_eq!(
                net.drop_count(X, ServiceId::new(5), ServiceDrop::TooBig),
                before + 2
            );
            assert_eq!(net.stats(X, ServiceId::new(5)).channels_created, created);
        }
        // Reported once, for the first: the IPv4 destination.
        let peer = net.peer[X];
        assert_eq!(
            too_big_events(&net, X),
            vec![NodeEvent::TooBig {
                service: ServiceId::new(5),
                peer,
                len: max4 + 1,
                max: max4
            }]
        );

        // Replies from a destination, forged at the entry.
        let (client, dest, _) = cases[0];
        let (socket, _) = net.connected_to(Y, dest)[0];
        at_and_over(
            &mut net,
            Y,
            ServiceId::new(5),
            max_reply,
            |net, p| net.send_on(Y, socket, dest, p),
            |net| {
                std::mem::take(&mut net.tun)
                    .into_iter()
                    .map(|(_, _, bytes)| {
                        let (src, dst, payload) = parse_with_smoltcp(&bytes);
                        assert_eq!((src, dst), (dest, client));
                        payload
                    })
                    .collect()
            },
        );
    }
}

#[test]
fn a_configured_mtu_sets_the_limit_and_the_range_is_checked() {
    let (ax, ay) = (a("127.0.0.1:7001"), a("127.0.0.1:7002"));
    let (cx, cy) = (a("127.0.0.1:9001"), a("127.0.0.1:9002"));
    // 1280 - 28 - 29 - 1 = 1222; 65535 - 28 - 29 - 1 = 65477.
    for (mtu, max) in [(1280, 1222), (crate::mtu::MAX_LINK_MTU, 65_477)] {
        let mut net = Net::with_link(44, V4_LINK, mtu);
        let (px, py) = (net.peer[X], net.peer[Y]);
        let direct = |peer, listen, customer| {
            ServiceConfig::new(
                ServiceId::new(3),
                Peers::One(peer),
                Role::Direct { listen, customer },
            )
        };
        net.service(X, direct(px, ax, cx));
        net.service(Y, direct(py, ay, cy));
        net.up();
        let frame = at_and_over(
            &mut net,
            X,
            ServiceId::new(3),
            max,
            |net, p| net.send(X, cx, ax, p),
            |net| net.take_payloads_to(cy),
        );
        assert_eq!(28 + frame, usize::from(mtu));
    }

    let mut node = TestNode::new(
        node_key(45, 0),
        ChaCha20Rng::seed_from_u64(45),
        Instant::from_secs(1),
        START_UNIX,
    );
    let mut c = PeerConfig::new(node_key(45, 1).public_key());
    c.mtu = crate::mtu::MIN_LINK_MTU - 1;
    assert_eq!(
        node.add_peer(c.clone(), Instant::from_secs(1)),
        Err(crate::link::ConfigError::BadMtu)
    );
    c.mtu = crate::mtu::MIN_LINK_MTU;
    assert!(node.add_peer(c, Instant::from_secs(1)).is_ok());
}

#[test]
fn too_big_is_dropped_at_once_before_the_link_is_up() {
    let (listen, target) = (a("127.0.0.1:5514"), a("127.0.0.1:514"));
    let mut net = Net::new(46);
    let (px, py) = (net.peer[X], net.peer[Y]);
    net.service(
        X,
        ServiceConfig::new(
            ServiceId::new(2),
            Peers::One(px),
            Role::PushEntry { listen },
        ),
    );
    net.service(
        Y,
        ServiceConfig::new(ServiceId::new(2), Peers::One(py), Role::PushExit { target }),
    );
    // No session yet: too big is too big, not staged and not no_session.
    net.send(X, a("127.0.0.1:40000"), listen, &[0; 1439]);
    assert_eq!(net.drop_count(X, ServiceId::new(2), ServiceDrop::TooBig), 1);
    assert_eq!(
        net.drop_count(X, ServiceId::new(2), ServiceDrop::NoSession),
        0
    );
    // The limit itself is not too big, and it waits for the session as
    // any datagram does (the stage holds a whole default frame).
    net.send(X, a("127.0.0.1:40000"), listen, &[0; 1438]);
    assert_eq!(net.drop_count(X, ServiceId::new(2), ServiceDrop::TooBig), 1);
    assert_eq!(
        net.drop_count(X, ServiceId::new(2), ServiceDrop::NoSession),
        0
    );
    net.up();
    net.send(X, a("127.0.0.1:40000"), listen, &[0; 1438]);
    assert_eq!(net.take_delivered_to(target).len(), 2);
}

#[test]
fn max_payload_names_each_services_limit() {
    let dst4 = Some(a("10.1.1.1:53"));
    let dst6 = Some(a("[2001:db8::53]:53"));
    for (link, direct, forward, router4, router6) in [
        (V4_LINK, 1442, 1438, 1432, 1420),
        (V6_LINK, 1422, 1418, 1412, 1400),
    ] {
        let mut net = Net::with_link(47, link, 1500);
        let (px, py) = (net.peer[X], net.peer[Y]);
        let (ax, cx) = (a("127.0.0.1:7001"), a("127.0.0.1:9001"));
        net.service(
            X,
            ServiceConfig::new(
                ServiceId::new(3),
                Peers::One(px),
                Role::Direct {
                    listen: ax,
                    customer: cx,
                },
            ),
        );
        net.service(X, forward_entry(1, px, "127.0.0.1:5353"));
        net.service(Y, forward_exit(1, Peers::One(py), "127.0.0.9:53"));
        net.service(Y, forward_exit(2, Peers::Any, "127.0.0.9:54"));
        net.service(X, service(5, Peers::One(px), Role::RouterEntry));
        net.service(Y, router_exit(5, py, &[]));
        net.service(
            Y,
            ServiceConfig::new(
                ServiceId::new(9),
                Peers::One(py),
                Role::PushExit {
                    target: a("127.0.0.1:514"),
                },
            ),
        );
        // Y learns X's endpoint from its handshake.
        net.up();
        let (x, y) = (&net.nodes[X], &net.nodes[Y]);
        assert_eq!(x.max_payload(ServiceId::new(3), None), Some(direct));
        assert_eq!(x.max_payload(ServiceId::new(1), None), Some(forward));
        assert_eq!(y.max_payload(ServiceId::new(1), None), Some(forward));
        assert_eq!(x.max_payload(ServiceId::new(5), dst4), Some(router4));
        assert_eq!(x.max_payload(ServiceId::new(5), dst6), Some(router6));
        assert_eq!(x.max_payload(ServiceId::new(5), None), None);
        assert_eq!(
            y.max_payload(ServiceId::new(5), None),
            Some(forward),
            "router replies"
        );
        assert_eq!(y.max_payload(ServiceId::new(2), None), None, "any peer");
        assert_eq!(y.max_payload(ServiceId::new(9), None), None, "push exit");
        assert_eq!(
            y.max_payload(ServiceId::new(77), None),
            None,
            "no such service"
        );
    }
}
