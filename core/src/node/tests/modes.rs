//! Each mode in both mirror images, with exact counts.

use super::*;

const LISTEN: &str = "127.0.0.1:5353";
const TARGET: &str = "127.0.0.9:53";

/// A forward service 1 with entry on `entry` and exit on the other node.
fn forward_net(seed: u64, entry: usize, limits: Option<(u16, u64, u64)>) -> Net {
    let mut net = Net::new(seed);
    let mut e = forward_entry(1, net.peer[entry], LISTEN);
    let mut x = forward_exit(1, Peers::One(net.peer[1 - entry]), TARGET);
    if let Some((max, idle, min_idle)) = limits {
        e = with_limits(e, max, idle, min_idle);
        x = with_limits(x, max, idle, min_idle);
    }
    net.service(entry, e);
    net.service(1 - entry, x);
    net.up();
    net
}

fn client(i: u16) -> SocketAddr {
    SocketAddr::new([198, 51, 100, 7].into(), 10000 + i)
}

/// The target answers every datagram it got, on the socket it came from,
/// with "re:" + the payload.
fn target_echoes(net: &mut Net, exit: usize) {
    let got = net.take_delivered_to(a(TARGET));
    for d in got {
        assert_eq!(d.node, exit);
        let socket = net.socket_at(exit, d.from);
        let mut reply = b"re:".to_vec();
        reply.extend_from_slice(&d.payload);
        net.send_on(exit, socket, a(TARGET), &reply);
    }
}

#[test]
fn forward_both_mirror_images_keep_clients_apart() {
    for entry in [X, Y] {
        let exit = 1 - entry;
        let mut net = forward_net(1, entry, None);
        for round in 0..3u8 {
            for c in 0..5u16 {
                let msg = [b'c', c as u8, round];
                net.send(entry, client(c), a(LISTEN), &msg);
            }
        }
        // The exit opened one connected socket per client.
        assert_eq!(net.connected_to(exit, a(TARGET)).len(), 5);
        target_echoes(&mut net, exit);
        for c in 0..5u16 {
            let got = net.take_delivered_to(client(c));
            assert_eq!(got.len(), 3, "entry {entry} client {c}");
            for d in got {
                assert_eq!(d.node, entry);
                assert_eq!(d.from, a(LISTEN), "replies come from the listen socket");
                assert_eq!(&d.payload[..5], &[b'r', b'e', b':', b'c', c as u8]);
            }
        }
        assert!(net.delivered.is_empty());
        let (se, sx) = (
            net.stats(entry, ServiceId::new(1)),
            net.stats(exit, ServiceId::new(1)),
        );
        assert_eq!((se.to_peer.datagrams, se.from_peer.datagrams), (15, 15));
        assert_eq!((sx.to_peer.datagrams, sx.from_peer.datagrams), (15, 15));
        assert_eq!((se.channels_open, sx.channels_open), (5, 5));
        assert_eq!((se.channels_created, sx.channels_created), (5, 5));
        assert_eq!(se.to_peer.bytes, 45);
        assert_eq!(se.drops.total() + sx.drops.total(), 0);
    }
}

/// Each channel counts its own datagrams each way, on both halves, and
/// keeps its creation time: what `sdt status --channels` shows.
#[test]
fn each_channel_counts_its_datagrams_each_way() {
    for entry in [X, Y] {
        let exit = 1 - entry;
        let mut net = forward_net(2, entry, None);
        // Client c sends c + 1 datagrams; the target answers each.
        for c in 0..3u16 {
            for _ in 0..=c {
                net.send(entry, client(c), a(LISTEN), b"q");
            }
        }
        target_echoes(&mut net, exit);
        assert_eq!(net.connected_to(exit, a(TARGET)).len(), 3);
        let counts = |net: &Net, i: usize| {
            let mut v: Vec<_> = net.nodes[i]
                .channels()
                .iter()
                .map(|(_, c)| (c.number, c.client, c.to_peer, c.from_peer, c.created))
                .collect();
            v.sort_by_key(|c| c.0);
            v
        };
        let e = counts(&net, entry);
        let x = counts(&net, exit);
        assert_eq!(e.len(), 3);
        for (c, (ec, xc)) in e.iter().zip(&x).enumerate() {
            let n = c as u64 + 1;
            assert_eq!(ec.0, xc.0, "the same number on both halves");
            assert_eq!(ec.1, Some(client(c as u16)));
            assert_eq!(xc.1, None);
            assert_eq!((ec.2, ec.3), (n, n), "entry channel {c}: to, from peer");
            assert_eq!((xc.2, xc.3), (n, n), "exit channel {c}: to, from peer");
            assert!(ec.4 <= net.now && xc.4 <= net.now);
        }
    }
}

#[test]
fn forward_table_full_drops_then_evicts_idle_lru() {
    let mut net = forward_net(2, X, Some((2, 60, 5)));
    net.send(X, client(1), a(LISTEN), b"one");
    net.run_for(Duration::from_secs(1));
    net.send(X, client(2), a(LISTEN), b"two");
    // Full, nobody idle for 5 s: the newcomer is dropped and counted.
    net.send(X, client(3), a(LISTEN), b"three");
    assert_eq!(
        net.drop_count(X, ServiceId::new(1), ServiceDrop::TableFull),
        1
    );
    let first = net.take_delivered_to(a(TARGET));
    assert_eq!(first.len(), 2);
    let client_1_port = first[0].from;
    // Client 1 goes quiet for 5 s; client 2 keeps talking.
    net.run_for(Duration::from_secs(3));
    net.send(X, client(2), a(LISTEN), b"two again");
    net.run_for(Duration::from_secs(2));
    net.send(X, client(3), a(LISTEN), b"three again");
    let s = net.stats(X, ServiceId::new(1));
    assert_eq!(
        (s.channels_evicted, s.channels_open, s.channels_created),
        (1, 2, 3)
    );
    // The exit had room for the new number only after evicting too; its LRU
    // (client 1's channel) was idle long enough.
    let sx = net.stats(Y, ServiceId::new(1));
    assert_eq!((sx.channels_evicted, sx.channels_open), (1, 2));
    // The evicted channel's socket is held, not closed: its port serves no
    // new channel while the target may still answer client 1.
    assert_eq!(sx.ports_held, 1);
    assert_eq!(net.connected_to(Y, a(TARGET)).len(), 3);
    let delivered = net.take_delivered_to(a(TARGET));
    assert_eq!(delivered.len(), 2);
    assert!(delivered.iter().all(|d| d.from != client_1_port));
    // A late reply to client 1's port reaches nobody and is counted.
    assert!(net.send_to_local(Y, client_1_port, a(TARGET), b"late for 1"));
    assert!(net.delivered.is_empty(), "{:?}", net.delivered);
    assert_eq!(
        net.drop_count(Y, ServiceId::new(1), ServiceDrop::LateReply),
        1
    );
}

/// The hazard the port rule exists for, shown with the rule switched off:
/// the fake runtime reuses a freed port at once, as a kernel short of
/// ephemeral ports does, and a late reply for the evicted client reaches
/// the new one. With the default hold the same reply is dropped.
#[test]
fn a_late_reply_reaches_the_next_client_only_without_a_port_hold() {
    for hold in [Duration::ZERO, ChannelLimits::DEFAULT_PORT_HOLD] {
        let mut net = Net::new(2);
        net.service(
            X,
            with_limits(forward_entry(1, net.peer[X], LISTEN), 1, 60, 5),
        );
        let mut exit = with_limits(forward_exit(1, Peers::One(net.peer[Y]), TARGET), 1, 60, 5);
        exit.limits.port_hold = hold;
        net.service(Y, exit);
        net.up();
        net.send(X, client(1), a(LISTEN), b"query of 1");
        let port = net.take_delivered_to(a(TARGET))[0].from;
        net.run_for(Duration::from_secs(6));
        net.send(X, client(2), a(LISTEN), b"query of 2");
        let second = net.take_delivered_to(a(TARGET));
        // The target answers client 1's query late, to the port it came from.
        let answered = net.send_to_local(Y, port, a(TARGET), b"answer for 1");
        let to_2 = net.take_delivered_to(client(2));
        if hold.is_zero() {
            assert_eq!(second[0].from, port, "the kernel reused the port");
            assert!(answered);
            assert_eq!(to_2.len(), 1, "misdelivered, as without the rule");
        } else {
            assert_ne!(second[0].from, port, "the held port is not reused");
            assert!(answered, "the held socket still takes the reply");
            assert!(to_2.is_empty());
            assert_eq!(
                net.drop_count(Y, ServiceId::new(1), ServiceDrop::LateReply),
                1
            );
        }
    }
}

#[test]
fn forward_idle_channels_expire_at_the_configured_time() {
    let mut net = forward_net(3, X, Some((8, 10, 1)));
    net.send(X, client(1), a(LISTEN), b"hello");
    let opened = net.now;
    assert_eq!(
        net.nodes[X]
            .poll_timeout()
            .map(|t| t <= opened + Duration::from_secs(10)),
        Some(true)
    );
    net.run_for(Duration::from_millis(9_999));
    assert_eq!(net.stats(X, ServiceId::new(1)).channels_open, 1);
    assert_eq!(net.stats(Y, ServiceId::new(1)).channels_open, 1);
    net.run_for(Duration::from_millis(1));
    assert_eq!(net.stats(X, ServiceId::new(1)).channels_open, 0);
    assert_eq!(net.stats(Y, ServiceId::new(1)).channels_open, 0);
    assert_eq!(net.stats(X, ServiceId::new(1)).channels_expired, 1);
    assert_eq!(net.stats(Y, ServiceId::new(1)).channels_expired, 1);
    // The exit's socket is held until port_hold after the channel's last
    // datagram, so its port serves no other channel before then.
    let hold = ChannelLimits::DEFAULT_PORT_HOLD;
    assert_eq!(net.stats(Y, ServiceId::new(1)).ports_held, 1);
    let (held, _) = net.connected_to(Y, a(TARGET))[0];
    net.send_on(Y, held, a(TARGET), b"late reply");
    assert_eq!(
        net.drop_count(Y, ServiceId::new(1), ServiceDrop::LateReply),
        1
    );
    assert!(net.take_delivered_to(client(1)).is_empty());
    net.run_for(hold - Duration::from_secs(10) - Duration::from_millis(1));
    assert_eq!(net.connected_to(Y, a(TARGET)).len(), 1, "released early");
    net.run_for(Duration::from_millis(1));
    assert!(
        net.connected_to(Y, a(TARGET)).is_empty(),
        "the exit socket was closed when its hold ended"
    );
    assert_eq!(net.stats(Y, ServiceId::new(1)).ports_held, 0);
}

/// With `port_hold` zero, an ended channel's socket closes at once.
#[test]
fn without_a_port_hold_the_exit_socket_closes_with_its_channel() {
    let mut net = Net::new(3);
    net.service(
        X,
        with_limits(forward_entry(1, net.peer[X], LISTEN), 8, 10, 1),
    );
    let mut exit = with_limits(forward_exit(1, Peers::One(net.peer[Y]), TARGET), 8, 10, 1);
    exit.limits.port_hold = Duration::ZERO;
    net.service(Y, exit);
    net.up();
    net.send(X, client(1), a(LISTEN), b"hello");
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.stats(Y, ServiceId::new(1)).channels_expired, 1);
    assert!(net.connected_to(Y, a(TARGET)).is_empty());
}

#[test]
fn traffic_in_either_direction_refreshes_a_channel() {
    let mut net = forward_net(4, X, Some((8, 10, 1)));
    net.send(X, client(1), a(LISTEN), b"q");
    for _ in 0..5 {
        net.run_for(Duration::from_secs(6));
        let (socket, _) = net.connected_to(Y, a(TARGET))[0];
        net.send_on(Y, socket, a(TARGET), b"unsolicited reply");
    }
    assert_eq!(net.take_delivered_to(client(1)).len(), 5);
    assert_eq!(net.stats(X, ServiceId::new(1)).channels_expired, 0);
}

#[test]
fn reply_after_entry_expiry_reaches_no_one() {
    // The exit keeps channels longer than the entry.
    let mut net = Net::new(5);
    net.service(
        X,
        with_limits(forward_entry(1, net.peer[X], LISTEN), 8, 5, 1),
    );
    net.service(
        Y,
        with_limits(forward_exit(1, Peers::One(net.peer[Y]), TARGET), 8, 60, 1),
    );
    net.up();
    net.send(X, client(1), a(LISTEN), b"first");
    let (socket, _) = net.connected_to(Y, a(TARGET))[0];
    net.run_for(Duration::from_secs(6));
    assert_eq!(net.stats(X, ServiceId::new(1)).channels_open, 0);
    // A new client now; then the target answers the old channel.
    net.send(X, client(2), a(LISTEN), b"second");
    net.send_on(Y, socket, a(TARGET), b"late answer for client 1");
    assert!(net.take_delivered_to(client(2)).is_empty());
    assert!(net.take_delivered_to(client(1)).is_empty());
    assert_eq!(
        net.drop_count(X, ServiceId::new(1), ServiceDrop::UnknownChannel),
        1
    );
}

#[test]
fn restart_of_either_node_drops_the_old_channels() {
    for restarted in [X, Y] {
        let mut net = forward_net(6, X, None);
        let services = [
            forward_entry(1, PeerId(0), LISTEN),
            forward_exit(1, Peers::One(PeerId(0)), TARGET),
        ];
        net.send(X, client(1), a(LISTEN), b"before");
        let old_exit_socket = net.connected_to(Y, a(TARGET))[0].0;
        net.take_delivered_to(a(TARGET));
        net.restart(
            restarted,
            600 + restarted as u64,
            &services[restarted..=restarted],
        );
        net.up();
        let survivor = 1 - restarted;
        assert!(
            net.events[survivor].contains(&NodeEvent::Link(LinkEvent::PeerRestarted(
                net.peer[survivor]
            ))),
            "{:?}",
            net.events[survivor]
        );
        assert_eq!(
            net.stats(survivor, ServiceId::new(1)).channels_open,
            0,
            "restarted {restarted}"
        );
        assert_eq!(net.stats(survivor, ServiceId::new(1)).channels_closed, 1);
        // A new client after the restart; a late reply on the old exit socket
        // (if the exit survived, the runtime may still deliver one) is stale.
        net.send(X, client(2), a(LISTEN), b"after");
        if survivor == Y {
            // Held under the port rule: dropped as late, counted on the
            // service.
            net.send_on(Y, old_exit_socket, a(TARGET), b"late");
            assert_eq!(
                net.drop_count(Y, ServiceId::new(1), ServiceDrop::LateReply),
                1
            );
            assert_eq!(net.stats(Y, ServiceId::new(1)).ports_held, 1);
        }
        target_echoes(&mut net, Y);
        let to_new = net.take_delivered_to(client(2));
        assert_eq!(to_new.len(), 1);
        assert_eq!(to_new[0].payload, b"re:after");
        assert!(net.take_delivered_to(client(1)).is_empty());
    }
}

#[test]
fn direct_carries_only_the_two_fixed_customers_both_ways() {
    let (ax, ay) = (a("127.0.0.1:7001"), a("127.0.0.1:7002"));
    let (cx, cy) = (a("127.0.0.1:9001"), a("127.0.0.1:9002"));
    let mut net = Net::new(7);
    let px = net.peer[X];
    let py = net.peer[Y];
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
    net.service(
        Y,
        ServiceConfig::new(
            ServiceId::new(3),
            Peers::One(py),
            Role::Direct {
                listen: ay,
                customer: cy,
            },
        ),
    );
    net.up();
    // Y's customer speaks first.
    net.send(Y, cy, ay, b"from y side");
    net.send(X, cx, ax, b"from x side");
    net.send(X, a("127.0.0.1:6666"), ax, b"stranger");
    let at_cx = net.take_delivered_to(cx);
    let at_cy = net.take_delivered_to(cy);
    assert_eq!(
        at_cx,
        vec![Delivery {
            node: X,
            from: ax,
            to: cx,
            payload: b"from y side".to_vec()
        }]
    );
    assert_eq!(
        at_cy,
        vec![Delivery {
            node: Y,
            from: ay,
            to: cy,
            payload: b"from x side".to_vec()
        }]
    );
    assert!(net.delivered.is_empty());
    assert_eq!(
        net.drop_count(X, ServiceId::new(3), ServiceDrop::Stranger),
        1
    );
    // Overhead of a direct frame: 30 bytes.
    let data: Vec<_> = net
        .wire
        .iter()
        .filter(|(_, b)| b[0] == 4 && b.len() > 29)
        .collect();
    assert!(
        data.iter().all(|(_, b)| b.len() == 30 + 11),
        "{:?}",
        data.iter().map(|(_, b)| b.len()).collect::<Vec<_>>()
    );
}

#[test]
fn push_is_one_way_in_both_mirror_images() {
    for entry in [X, Y] {
        let exit = 1 - entry;
        let mut net = Net::new(8);
        let pe = net.peer[entry];
        let px = net.peer[exit];
        let (listen, target) = (a("127.0.0.1:5514"), a("127.0.0.1:514"));
        net.service(
            entry,
            ServiceConfig::new(
                ServiceId::new(2),
                Peers::One(pe),
                Role::PushEntry { listen },
            ),
        );
        net.service(
            exit,
            ServiceConfig::new(ServiceId::new(2), Peers::One(px), Role::PushExit { target }),
        );
        net.up();
        for i in 0..20u16 {
            net.send(entry, client(i % 3), listen, format!("line {i}").as_bytes());
        }
        let got = net.take_delivered_to(target);
        assert_eq!(got.len(), 20);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, d)| d.payload == format!("line {i}").as_bytes()));
        // One socket for everything at the exit.
        assert_eq!(
            got.iter()
                .map(|d| d.from)
                .collect::<std::collections::HashSet<_>>()
                .len(),
            1
        );
        // Something answers the exit's socket: dropped.
        let sock = net.socket_at(exit, got[0].from);
        net.send_on(exit, sock, target, b"reply?");
        assert!(net.delivered.is_empty());
        assert_eq!(
            net.drop_count(exit, ServiceId::new(2), ServiceDrop::WrongDirection),
            1
        );
        assert_eq!(net.stats(exit, ServiceId::new(2)).from_peer.datagrams, 20);
        assert_eq!(net.stats(entry, ServiceId::new(2)).to_peer.datagrams, 20);
    }
}

#[test]
fn half_mismatch_is_dropped_counted_and_reported_once() {
    let mut net = Net::new(9);
    let (px, py) = (net.peer[X], net.peer[Y]);
    net.service(X, forward_entry(1, px, LISTEN));
    net.service(Y, forward_entry(1, py, "127.0.0.1:6000"));
    net.up();
    for i in 0..3 {
        net.send(X, client(i), a(LISTEN), b"both think they are the entry");
    }
    assert!(net.delivered.is_empty());
    assert_eq!(
        net.drop_count(Y, ServiceId::new(1), ServiceDrop::HalfMismatch),
        3
    );
    let reports: Vec<_> = net.events[Y]
        .iter()
        .filter(|e| matches!(e, NodeEvent::Mismatch { .. }))
        .collect();
    assert_eq!(
        reports,
        vec![&NodeEvent::Mismatch {
            service: ServiceId::new(1),
            peer: py,
            problem: ServiceDrop::HalfMismatch
        }]
    );
}

#[test]
fn mode_mismatch_and_unknown_service_are_dropped_and_reported_once() {
    let mut net = Net::new(10);
    let (px, py) = (net.peer[X], net.peer[Y]);
    net.service(X, forward_entry(1, px, LISTEN));
    net.service(
        X,
        ServiceConfig::new(
            ServiceId::new(4),
            Peers::One(px),
            Role::PushEntry {
                listen: a("127.0.0.1:5600"),
            },
        ),
    );
    net.service(
        Y,
        ServiceConfig::new(
            ServiceId::new(1),
            Peers::One(py),
            Role::PushExit { target: a(TARGET) },
        ),
    );
    net.up();
    net.send(X, client(1), a(LISTEN), b"forward frame to a push exit");
    net.send(X, client(1), a("127.0.0.1:5600"), b"service 4 unknown at y");
    net.send(X, client(1), a("127.0.0.1:5600"), b"again");
    assert!(net.delivered.is_empty());
    assert_eq!(
        net.drop_count(Y, ServiceId::new(1), ServiceDrop::ModeMismatch),
        1
    );
    assert_eq!(
        net.nodes[Y].node_drops().get(ServiceDrop::UnknownService),
        2
    );
    let unknown: Vec<_> = net.events[Y]
        .iter()
        .filter(|e| matches!(e, NodeEvent::UnknownService { .. }))
        .collect();
    assert_eq!(
        unknown,
        vec![&NodeEvent::UnknownService {
            service: ServiceId::new(4),
            peer: py
        }]
    );
}

#[test]
fn datagrams_before_the_link_is_up_wait_for_the_handshake() {
    let mut net = Net::new(11);
    let (px, py) = (net.peer[X], net.peer[Y]);
    net.service(X, forward_entry(1, px, LISTEN));
    net.service(Y, forward_exit(1, Peers::One(py), TARGET));
    net.link_up = false;
    net.send(X, client(1), a(LISTEN), b"first");
    net.send(X, client(2), a(LISTEN), b"second");
    assert!(net.take_delivered_to(a(TARGET)).is_empty());
    assert_eq!(
        net.stats(X, ServiceId::new(1)).to_peer.datagrams,
        0,
        "counted when sent, not when staged"
    );
    // The network comes back; the handshake's retry brings the session up
    // and the staged datagrams out, in order.
    net.link_up = true;
    net.run_for(REKEY_TIMEOUT + MAX_JITTER);
    let got = net.take_delivered_to(a(TARGET));
    let payloads: Vec<_> = got.iter().map(|d| d.payload.clone()).collect();
    assert_eq!(payloads, vec![b"first".to_vec(), b"second".to_vec()]);
    assert_eq!(net.stats(X, ServiceId::new(1)).to_peer.datagrams, 2);
    assert_eq!(net.stats(X, ServiceId::new(1)).drops.total(), 0);
}

#[test]
fn the_stage_is_bounded_and_gives_up_with_the_handshake() {
    // A link MTU above the default, so that a datagram can fit the link
    // and still be too large for the stage.
    let mut net = Net::with_link(17, ["192.0.2.1:51820", "192.0.2.2:51820"], 9000);
    let (px, py) = (net.peer[X], net.peer[Y]);
    net.service(X, forward_entry(1, px, LISTEN));
    net.service(Y, forward_exit(1, Peers::One(py), TARGET));
    net.link_up = false;
    for c in 0..(STAGE_SLOTS as u16 + 2) {
        net.send(X, client(c), a(LISTEN), b"waiting");
    }
    // Too large to stage: dropped at once.
    net.send(X, client(0), a(LISTEN), &[0u8; STAGE_BYTES]);
    assert_eq!(
        net.drop_count(X, ServiceId::new(1), ServiceDrop::NoSession),
        3
    );
    // The handshake gives up after REKEY_ATTEMPT_TIME: the rest go too.
    net.run_for(REKEY_ATTEMPT_TIME + REKEY_TIMEOUT + MAX_JITTER);
    assert_eq!(
        net.drop_count(X, ServiceId::new(1), ServiceDrop::NoSession),
        3 + STAGE_SLOTS as u64
    );
    assert!(net.events[X].contains(&NodeEvent::Link(LinkEvent::HandshakeTimedOut(px))));
    net.link_up = true;
    net.run_for(Duration::from_secs(1));
    assert!(
        net.take_delivered_to(a(TARGET)).is_empty(),
        "nothing stale goes out later"
    );
}

/// The largest datagram a default link carries waits for the handshake
/// like any other: the stage holds a whole 1500-byte IPv4 frame's plaintext.
#[test]
fn the_largest_datagram_of_a_default_link_is_staged() {
    let mut net = Net::new(18);
    let (px, py) = (net.peer[X], net.peer[Y]);
    net.service(X, forward_entry(1, px, LISTEN));
    net.service(Y, forward_exit(1, Peers::One(py), TARGET));
    let largest = net.nodes[X]
        .max_payload(ServiceId::new(1), None)
        .expect("a forward entry's limit");
    let payload = vec![0x5a; largest];
    // No session yet: the datagram starts the handshake and waits for it.
    net.send(X, client(0), a(LISTEN), &payload);
    let got = net.take_delivered_to(a(TARGET));
    assert_eq!(got.len(), 1, "{:?}", net.stats(X, ServiceId::new(1)).drops);
    assert_eq!(got[0].payload, payload);
    assert_eq!(
        net.drop_count(X, ServiceId::new(1), ServiceDrop::NoSession),
        0
    );
}

#[test]
fn bad_service_configs_are_refused() {
    let mut net = Net::new(12);
    let px = net.peer[X];
    let n = &mut net.nodes[X];
    n.add_service(forward_entry(1, px, LISTEN)).unwrap();
    assert_eq!(
        n.add_service(forward_entry(1, px, "127.0.0.1:1")),
        Err(ServiceError::DuplicateId)
    );
    assert_eq!(
        n.add_service(forward_entry(2, PeerId(3), LISTEN)),
        Err(ServiceError::UnknownPeer)
    );
    let any_entry = service(3, Peers::Any, Role::ForwardEntry { listen: a(LISTEN) });
    assert_eq!(n.add_service(any_entry), Err(ServiceError::NeedsOnePeer));
    assert_eq!(
        n.add_service(with_limits(forward_entry(4, px, LISTEN), 0, 60, 1)),
        Err(ServiceError::BadChannelLimit)
    );
    assert_eq!(
        n.add_service(with_limits(forward_entry(4, px, LISTEN), 17, 60, 1)),
        Err(ServiceError::BadChannelLimit)
    );
    assert_eq!(
        n.add_service(with_limits(forward_entry(4, px, LISTEN), 4, 0, 1)),
        Err(ServiceError::BadIdleTimeout)
    );
    for id in 10..17 {
        n.add_service(forward_entry(id, px, LISTEN)).unwrap();
    }
    assert_eq!(
        n.add_service(forward_entry(99, px, LISTEN)),
        Err(ServiceError::TooManyServices)
    );
}

#[test]
fn a_failed_exit_socket_drops_its_channel() {
    let mut net = forward_net(13, X, None);
    net.send(X, client(1), a(LISTEN), b"x");
    let (socket, _) = net.connected_to(Y, a(TARGET))[0];
    net.nodes[Y].socket_failed(socket);
    assert_eq!(net.stats(Y, ServiceId::new(1)).channels_open, 0);
    assert_eq!(
        net.drop_count(Y, ServiceId::new(1), ServiceDrop::SocketFailed),
        1
    );
}

#[test]
fn channel_number_exhaustion_renews_the_incarnation_and_keeps_clients_apart() {
    let mut net = forward_net(14, X, None);
    net.send(X, client(1), a(LISTEN), b"old client");
    net.nodes[X].services[0].next_number = u32::MAX;
    net.send(X, client(2), a(LISTEN), b"needs a number");
    assert_eq!(
        net.drop_count(X, ServiceId::new(1), ServiceDrop::NoSession),
        1
    );
    net.run_for(Duration::from_millis(10));
    assert!(net.events[Y].contains(&NodeEvent::Link(LinkEvent::PeerRestarted(net.peer[Y]))));
    assert_eq!(net.stats(Y, ServiceId::new(1)).channels_open, 0);
    assert_eq!(net.stats(X, ServiceId::new(1)).channels_open, 0);
    net.take_delivered_to(a(TARGET));
    // Numbering restarted at 0: client 2 gets number 0, which client 1 had.
    net.send(X, client(2), a(LISTEN), b"new client");
    target_echoes(&mut net, Y);
    assert_eq!(net.take_delivered_to(client(2)).len(), 1);
    assert!(net.take_delivered_to(client(1)).is_empty());
}

#[test]
fn channel_creation_is_rate_limited_at_the_entry_and_per_peer_at_the_exit() {
    // Entry: a flood of new clients.
    let mut net = Net::new(15);
    let mut entry = forward_entry(1, net.peer[X], LISTEN);
    entry.limits.new_channels_per_second = 3;
    net.service(X, entry);
    net.service(Y, forward_exit(1, Peers::One(net.peer[Y]), TARGET));
    net.up();
    for c in 0..6 {
        net.send(X, client(c), a(LISTEN), b"hi");
    }
    assert_eq!(net.stats(X, ServiceId::new(1)).channels_created, 3);
    assert_eq!(
        net.drop_count(X, ServiceId::new(1), ServiceDrop::ChannelRateLimited),
        3
    );
    // Known clients are not limited; new ones get through as time passes.
    net.send(X, client(0), a(LISTEN), b"again");
    net.run_for(Duration::from_millis(400));
    net.send(X, client(7), a(LISTEN), b"later");
    assert_eq!(net.stats(X, ServiceId::new(1)).channels_created, 4);
    assert_eq!(net.take_delivered_to(a(TARGET)).len(), 5);

    // Exit: the peer's channel creation, whatever the entry allows.
    let mut net = Net::new(16);
    net.service(X, forward_entry(1, net.peer[X], LISTEN));
    let mut exit = forward_exit(1, Peers::One(net.peer[Y]), TARGET);
    exit.limits.new_channels_per_second = 2;
    net.service(Y, exit);
    net.up();
    for c in 0..5 {
        net.send(X, client(c), a(LISTEN), b"hi");
    }
    assert_eq!(net.stats(Y, ServiceId::new(1)).channels_created, 2);
    assert_eq!(
        net.drop_count(Y, ServiceId::new(1), ServiceDrop::ChannelRateLimited),
        3
    );
    assert_eq!(net.connected_to(Y, a(TARGET)).len(), 2);
}

/// A DNS-like flood: every client a fresh source port, one query, one
/// answer, far more clients than the tables hold. Answered channels are
/// evicted first however recent and their exit ports held only
/// `answered_port_hold`, so no query is refused and every answer reaches
/// its own client; stuck queries at the head of the table are passed over.
/// With every port held for `port_hold` (the rule before answered
/// channels), the same flood is refused within a few clients.
#[test]
fn forward_turns_over_one_query_clients_at_any_rate() {
    for answered_hold in [Duration::from_millis(5), ChannelLimits::DEFAULT_PORT_HOLD] {
        let mut net = Net::new(11);
        // Tables of 4 channels per service (16 slots in the node), 5 s
        // before an unanswered channel may be evicted; a new client each
        // millisecond, so a 5 ms hold keeps about 5 ports held.
        net.service(
            X,
            with_limits(forward_entry(1, net.peer[X], LISTEN), 4, 60, 5),
        );
        let mut exit = with_limits(forward_exit(1, Peers::One(net.peer[Y]), TARGET), 4, 60, 5);
        exit.limits.answered_port_hold = answered_hold;
        net.service(Y, exit);
        net.up();
        // Queries the target never answers, first in both tables: all but
        // one of each table's places.
        for stuck in 3000..3003 {
            net.send(X, client(stuck), a(LISTEN), b"stuck");
        }
        net.take_delivered_to(a(TARGET));
        let mut answered = 0;
        for c in 1..=2000u16 {
            net.run_for(Duration::from_millis(1));
            let query = c.to_be_bytes();
            net.send(X, client(c), a(LISTEN), &query);
            for d in net.take_delivered_to(a(TARGET)) {
                let socket = net.socket_at(Y, d.from);
                net.send_on(
                    Y,
                    socket,
                    a(TARGET),
                    &[b"re:".as_slice(), &d.payload].concat(),
                );
            }
            for d in net.take_delivered_to(client(c)) {
                assert_eq!(
                    d.payload,
                    [b"re:".as_slice(), &query].concat(),
                    "client {c}"
                );
                answered += 1;
            }
            assert!(net.delivered.is_empty(), "an answer reached another client");
        }
        let refused = |i| {
            [ServiceDrop::TableFull, ServiceDrop::PortsHeld]
                .map(|r| net.drop_count(i, ServiceId::new(1), r))
                .iter()
                .sum::<u64>()
        };
        if answered_hold < ChannelLimits::DEFAULT_PORT_HOLD {
            assert_eq!(answered, 2000);
            assert_eq!((refused(X), refused(Y)), (0, 0));
            assert!(net.stats(X, ServiceId::new(1)).channels_evicted >= 1990);
            // The stuck queries' channels are still there on both sides.
            assert_eq!(net.stats(X, ServiceId::new(1)).channels_open, 4);
            assert!(net.stats(Y, ServiceId::new(1)).ports_held <= 6);
        } else {
            // 16 slots: 4 live and 12 held for 30 s, then the exit refuses
            // new channels, their queries stay unanswered and fill the
            // entry's table, which refuses every client after that.
            assert!(answered < 20, "{answered} answered");
            assert!(refused(Y) > 0);
            assert!(refused(X) + refused(Y) > 1900);
        }
    }
}
