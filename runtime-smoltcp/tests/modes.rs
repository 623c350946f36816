//! Every mode end to end over smoltcp: two nodes and their customers on
//! smoltcp interfaces joined by an in-memory hub, with a fake clock. Exact
//! counts without loss; at-least and at-most checks with seeded loss and
//! reordering.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration as StdDuration;

use common::*;
use sdt_core::allow::AllowList;
use sdt_core::ip::{forge_udp, parse_udp};
use sdt_core::link::PeerId;
use sdt_core::node::{
    ChannelLimits, Peers, Role, ServiceConfig, ServiceDrop, ServiceId, SocketId, HEADROOM,
};
use smoltcp::iface::SocketHandle;
use smoltcp::time::Duration;
use smoltcp::wire::Ipv4Address;

const ALICE: Ipv4Address = Ipv4Address::new(10, 0, 0, 10);
const BOB: Ipv4Address = Ipv4Address::new(10, 0, 0, 20);
const CAROL: Ipv4Address = Ipv4Address::new(10, 0, 0, 30);

fn service(id: u8, peer: PeerId, role: Role) -> ServiceConfig {
    let mut c = ServiceConfig::new(ServiceId::new(id), Peers::One(peer), role);
    c.limits = ChannelLimits {
        max_channels: 4,
        idle_timeout: StdDuration::from_secs(60),
        min_idle_for_eviction: StdDuration::from_secs(5),
        ..ChannelLimits::default()
    };
    c
}

fn peer(w: &World, n: usize) -> PeerId {
    w.nodes[n].peer
}

/// Payloads received on `socket`, with the sender.
fn got(
    inbox: &[(SocketHandle, SocketAddr, Vec<u8>)],
    socket: SocketHandle,
) -> Vec<(SocketAddr, String)> {
    inbox
        .iter()
        .filter(|(s, _, _)| *s == socket)
        .map(|(_, from, p)| (*from, String::from_utf8(p.clone()).unwrap()))
        .collect()
}

fn msgs(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

#[test]
fn direct_carries_both_ways_and_drops_strangers() {
    let mut w = World::new(1, Impairment::default());
    let (alice, bob, carol) = (w.host(ALICE), w.host(BOB), w.host(CAROL));
    let a = w.socket(alice, 7001, false);
    let b = w.socket(bob, 9001, false);
    let c = w.socket(carol, 7001, false);
    let (px, py) = (peer(&w, X), peer(&w, Y));
    w.service(
        X,
        service(
            1,
            px,
            Role::Direct {
                listen: sa("10.0.0.1:6001"),
                customer: sa("10.0.0.10:7001"),
            },
        ),
    );
    w.service(
        Y,
        service(
            1,
            py,
            Role::Direct {
                listen: sa("10.0.0.2:6001"),
                customer: sa("10.0.0.20:9001"),
            },
        ),
    );
    w.up();
    for m in msgs("ab", 20) {
        w.send(alice, a, sa("10.0.0.1:6001"), m.as_bytes());
    }
    for m in msgs("ba", 15) {
        w.send(bob, b, sa("10.0.0.2:6001"), m.as_bytes());
    }
    w.send(carol, c, sa("10.0.0.1:6001"), b"stranger");
    w.run_for(Duration::from_secs(1));

    let to_bob = got(&w.inbox(bob), b);
    assert_eq!(
        to_bob.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
        msgs("ab", 20)
    );
    assert!(to_bob.iter().all(|(from, _)| *from == sa("10.0.0.2:6001")));
    let to_alice = got(&w.inbox(alice), a);
    assert_eq!(
        to_alice.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
        msgs("ba", 15)
    );
    assert!(to_alice
        .iter()
        .all(|(from, _)| *from == sa("10.0.0.1:6001")));
    assert!(w.inbox(carol).is_empty());

    let (sx, sy) = (w.stats(X, 1), w.stats(Y, 1));
    assert_eq!((sx.to_peer.datagrams, sx.from_peer.datagrams), (20, 15));
    assert_eq!((sy.to_peer.datagrams, sy.from_peer.datagrams), (15, 20));
    assert_eq!(sx.drops.get(ServiceDrop::Stranger), 1);
    for n in [X, Y] {
        assert_eq!(
            *w.nodes[n].smol.stats(),
            sdt_smoltcp::RuntimeStats {
                node_drops: w.nodes[n].smol.stats().node_drops,
                ..Default::default()
            }
        );
    }
    assert_eq!(w.nodes[X].smol.stats().node_drops, 1);
    assert_eq!(w.hub.unroutable, 0);
}

#[test]
fn forward_keeps_clients_apart_and_connected_sockets_drop_strays() {
    let mut w = World::new(2, Impairment::default());
    let (alice, bob, carol) = (w.host(ALICE), w.host(BOB), w.host(CAROL));
    let c1 = w.socket(alice, 7001, false);
    let c2 = w.socket(alice, 7002, false);
    w.socket(bob, 9002, true);
    let stranger = w.socket(carol, 7003, false);
    let (px, py) = (peer(&w, X), peer(&w, Y));
    w.service(
        X,
        service(
            2,
            px,
            Role::ForwardEntry {
                listen: sa("10.0.0.1:6002"),
            },
        ),
    );
    w.service(
        Y,
        service(
            2,
            py,
            Role::ForwardExit {
                target: sa("10.0.0.20:9002"),
            },
        ),
    );
    w.up();
    for (m1, m2) in msgs("c1", 10).into_iter().zip(msgs("c2", 10)) {
        w.send(alice, c1, sa("10.0.0.1:6002"), m1.as_bytes());
        w.send(alice, c2, sa("10.0.0.1:6002"), m2.as_bytes());
    }
    w.run_for(Duration::from_secs(1));

    let inbox = w.inbox(alice);
    for (socket, tag) in [(c1, "c1"), (c2, "c2")] {
        let replies = got(&inbox, socket);
        assert_eq!(
            replies.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
            msgs(tag, 10)
        );
        assert!(replies.iter().all(|(from, _)| *from == sa("10.0.0.1:6002")));
    }
    let (sx, sy) = (w.stats(X, 2), w.stats(Y, 2));
    assert_eq!((sx.to_peer.datagrams, sx.from_peer.datagrams), (20, 20));
    assert_eq!((sy.to_peer.datagrams, sy.from_peer.datagrams), (20, 20));
    assert_eq!((sx.channels_open, sy.channels_open), (2, 2));

    // Y holds one connected socket per channel, each towards the target.
    let exits: Vec<_> = w.nodes[Y].smol.customer_sockets().collect();
    assert_eq!(exits.len(), 2);
    assert!(exits
        .iter()
        .all(|(id, _, remote)| matches!(id, SocketId::Channel(_))
            && *remote == Some(sa("10.0.0.20:9002"))));
    let ports: BTreeSet<u16> = exits.iter().map(|(_, e, _)| e.port).collect();
    assert_eq!(ports.len(), 2);

    // Carol writes to an exit socket: dropped, counted, nothing crosses.
    let port = *ports.iter().next().unwrap();
    w.send(
        carol,
        stranger,
        SocketAddr::new(NODE_IPS[Y].into(), port),
        b"hi",
    );
    w.run_for(Duration::from_secs(1));
    assert_eq!(w.nodes[Y].smol.stats().stray, 1);
    assert_eq!(w.stats(Y, 2).to_peer.datagrams, 20);
    assert!(w.inbox(carol).is_empty() && w.inbox(alice).is_empty());

    // Idle channels expire and their sockets return to the pool.
    w.run_for(Duration::from_secs(120));
    assert_eq!(w.stats(Y, 2).channels_open, 0);
    assert_eq!(w.nodes[Y].smol.open_sockets(), 0);
    assert_eq!(w.nodes[X].smol.open_sockets(), 1);
}

#[test]
fn forward_mirror_image_entry_on_the_other_node() {
    let mut w = World::new(3, Impairment::default());
    let (alice, bob) = (w.host(ALICE), w.host(BOB));
    let c = w.socket(alice, 7001, false);
    w.socket(bob, 9005, true);
    let (px, py) = (peer(&w, X), peer(&w, Y));
    w.service(
        X,
        service(
            5,
            px,
            Role::ForwardExit {
                target: sa("10.0.0.20:9005"),
            },
        ),
    );
    w.service(
        Y,
        service(
            5,
            py,
            Role::ForwardEntry {
                listen: sa("10.0.0.2:6005"),
            },
        ),
    );
    w.up();
    for m in msgs("r", 12) {
        w.send(alice, c, sa("10.0.0.2:6005"), m.as_bytes());
    }
    w.run_for(Duration::from_secs(1));
    let replies = got(&w.inbox(alice), c);
    assert_eq!(
        replies.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
        msgs("r", 12)
    );
    assert_eq!(w.stats(Y, 5).from_peer.datagrams, 12);
}

#[test]
fn push_goes_one_way_only() {
    let mut w = World::new(4, Impairment::default());
    let (alice, bob) = (w.host(ALICE), w.host(BOB));
    let a = w.socket(alice, 7001, false);
    let b = w.socket(bob, 9003, false);
    let (px, py) = (peer(&w, X), peer(&w, Y));
    w.service(
        X,
        service(
            3,
            px,
            Role::PushEntry {
                listen: sa("10.0.0.1:6003"),
            },
        ),
    );
    w.service(
        Y,
        service(
            3,
            py,
            Role::PushExit {
                target: sa("10.0.0.20:9003"),
            },
        ),
    );
    w.up();
    for m in msgs("log", 25) {
        w.send(alice, a, sa("10.0.0.1:6003"), m.as_bytes());
    }
    w.run_for(Duration::from_secs(1));
    let logs = got(&w.inbox(bob), b);
    assert_eq!(
        logs.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
        msgs("log", 25)
    );
    let from = logs[0].0;
    assert!(logs.iter().all(|(f, _)| *f == from));
    assert_eq!(from.ip(), std::net::IpAddr::from(NODE_IPS[Y]));

    // Bob answers the push socket: nothing goes back.
    w.send(bob, b, from, b"no replies");
    w.run_for(Duration::from_secs(1));
    assert!(w.inbox(alice).is_empty());
    assert_eq!(w.stats(Y, 3).drops.get(ServiceDrop::WrongDirection), 1);
    assert_eq!(
        (
            w.stats(X, 3).to_peer.datagrams,
            w.stats(Y, 3).from_peer.datagrams
        ),
        (25, 25)
    );
}

/// An IPv4 UDP packet from `from` to `to`, as a router entry's device
/// would hand it over.
fn ip_packet(from: &str, to: &str, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0; HEADROOM + payload.len()];
    buf[HEADROOM..].copy_from_slice(payload);
    let range = forge_udp(
        &mut buf,
        HEADROOM..HEADROOM + payload.len(),
        sa(from),
        sa(to),
    )
    .unwrap();
    buf[range].to_vec()
}

fn router_exit(id: u8, peer: PeerId, rules: &[&str]) -> ServiceConfig {
    let mut allow = AllowList::new();
    for r in rules {
        allow.push(r.parse().unwrap()).unwrap();
    }
    service(id, peer, Role::RouterExit { allow })
}

#[test]
fn router_forges_replies_from_the_destination() {
    let mut w = World::new(5, Impairment::default());
    let (bob, carol) = (w.host(BOB), w.host(CAROL));
    w.socket(bob, 9004, true);
    let c = w.socket(carol, 9004, false);
    let (px, py) = (peer(&w, X), peer(&w, Y));
    w.tun(X, 4);
    w.service(X, service(4, px, Role::RouterEntry));
    w.service(Y, router_exit(4, py, &["10.0.0.20/32:9004"]));
    w.up();
    let clients = ["172.16.0.5:4000", "172.16.0.6:4000"];
    for i in 0..8 {
        for client in clients {
            let packet = ip_packet(client, "10.0.0.20:9004", format!("{client}/{i}").as_bytes());
            w.nodes[X].tun.as_mut().unwrap().1.rx.push_back(packet);
        }
    }
    // Not allowed at the exit.
    let packet = ip_packet(clients[0], "10.0.0.30:9004", b"to carol");
    w.nodes[X].tun.as_mut().unwrap().1.rx.push_back(packet);
    w.run_for(Duration::from_secs(1));

    let replies: Vec<Vec<u8>> = w.nodes[X].tun.as_mut().unwrap().1.tx.drain(..).collect();
    assert_eq!(replies.len(), 16);
    for client in clients {
        let mine: Vec<String> = replies
            .iter()
            .filter_map(|p| {
                let udp = parse_udp(p).unwrap();
                assert_eq!(udp.source, sa("10.0.0.20:9004"));
                (udp.destination == sa(client))
                    .then(|| String::from_utf8(p[udp.payload].to_vec()).unwrap())
            })
            .collect();
        assert_eq!(
            mine,
            (0..8).map(|i| format!("{client}/{i}")).collect::<Vec<_>>()
        );
    }
    assert!(got(&w.inbox(carol), c).is_empty());
    assert_eq!(w.stats(Y, 4).drops.get(ServiceDrop::NotAllowed), 1);
    assert_eq!(w.stats(X, 4).to_peer.datagrams, 17);
    assert_eq!(w.stats(X, 4).from_peer.datagrams, 16);
    assert_eq!(
        (w.stats(X, 4).channels_open, w.stats(Y, 4).channels_open),
        (3, 2)
    );
}

#[test]
fn full_pool_refuses_channels_and_counts_it() {
    let mut w = World::new(6, Impairment::default());
    let (alice, bob) = (w.host(ALICE), w.host(BOB));
    w.socket(bob, 9002, true);
    let (px, py) = (peer(&w, X), peer(&w, Y));
    let mut entry = service(
        2,
        px,
        Role::ForwardEntry {
            listen: sa("10.0.0.1:6002"),
        },
    );
    entry.limits.max_channels = 16;
    w.service(X, entry);
    let mut exit = service(
        2,
        py,
        Role::ForwardExit {
            target: sa("10.0.0.20:9002"),
        },
    );
    exit.limits.max_channels = 16;
    w.service(Y, exit);
    w.up();
    // Y has SOCKETS - 1 = 7 customer sockets; the 8th client finds none.
    let mut clients = Vec::new();
    for port in 0..8 {
        let s = w.socket(alice, 7100 + port, false);
        w.send(alice, s, sa("10.0.0.1:6002"), b"x");
        clients.push(s);
    }
    w.run_for(Duration::from_secs(1));
    let inbox = w.inbox(alice);
    let answered = clients
        .iter()
        .filter(|s| !got(&inbox, **s).is_empty())
        .count();
    assert_eq!(answered, 7);
    assert_eq!(w.nodes[Y].smol.stats().open_failed, 1);
    assert_eq!(w.stats(Y, 2).drops.get(ServiceDrop::SocketFailed), 1);
    assert_eq!(w.nodes[Y].smol.open_sockets(), 7);
}

/// All four modes at once over a lossy, reordering hub: nothing arrives
/// twice or at the wrong customer, nothing arrives that was not sent, and
/// most of it arrives.
#[test]
fn every_mode_under_loss_and_reordering() {
    let mut reordered = 0;
    for seed in [11, 12, 13] {
        reordered += lossy_run(seed);
    }
    assert!(reordered > 0, "the hub reordered nothing");
}

/// Runs one seed; returns how many datagrams arrived after a later one.
fn lossy_run(seed: u64) -> usize {
    let impairment = Impairment {
        loss: 100,
        latency: Duration::from_millis(2),
        jitter: Duration::from_millis(20),
    };
    let mut w = World::new(seed, impairment);
    let (alice, bob) = (w.host(ALICE), w.host(BOB));
    let a_direct = w.socket(alice, 7001, false);
    let b_direct = w.socket(bob, 9001, false);
    let c1 = w.socket(alice, 7011, false);
    let c2 = w.socket(alice, 7012, false);
    w.socket(bob, 9002, true);
    let a_push = w.socket(alice, 7021, false);
    let b_push = w.socket(bob, 9003, false);
    w.socket(bob, 9004, true);
    let (px, py) = (peer(&w, X), peer(&w, Y));
    w.tun(X, 4);
    w.service(
        X,
        service(
            1,
            px,
            Role::Direct {
                listen: sa("10.0.0.1:6001"),
                customer: sa("10.0.0.10:7001"),
            },
        ),
    );
    w.service(
        Y,
        service(
            1,
            py,
            Role::Direct {
                listen: sa("10.0.0.2:6001"),
                customer: sa("10.0.0.20:9001"),
            },
        ),
    );
    w.service(
        X,
        service(
            2,
            px,
            Role::ForwardEntry {
                listen: sa("10.0.0.1:6002"),
            },
        ),
    );
    w.service(
        Y,
        service(
            2,
            py,
            Role::ForwardExit {
                target: sa("10.0.0.20:9002"),
            },
        ),
    );
    w.service(
        X,
        service(
            3,
            px,
            Role::PushEntry {
                listen: sa("10.0.0.1:6003"),
            },
        ),
    );
    w.service(
        Y,
        service(
            3,
            py,
            Role::PushExit {
                target: sa("10.0.0.20:9003"),
            },
        ),
    );
    w.service(X, service(4, px, Role::RouterEntry));
    w.service(Y, router_exit(4, py, &["10.0.0.20/32:9004"]));
    w.up();

    const N: usize = 60;
    for i in 0..N {
        w.send(
            alice,
            a_direct,
            sa("10.0.0.1:6001"),
            format!("d-{i}").as_bytes(),
        );
        w.send(alice, c1, sa("10.0.0.1:6002"), format!("c1-{i}").as_bytes());
        w.send(alice, c2, sa("10.0.0.1:6002"), format!("c2-{i}").as_bytes());
        w.send(
            alice,
            a_push,
            sa("10.0.0.1:6003"),
            format!("p-{i}").as_bytes(),
        );
        let packet = ip_packet(
            "172.16.0.5:4000",
            "10.0.0.20:9004",
            format!("r-{i}").as_bytes(),
        );
        w.nodes[X].tun.as_mut().unwrap().1.rx.push_back(packet);
        w.run_for(Duration::from_millis(10));
    }
    w.run_for(Duration::from_secs(2));

    let check = |what: &str, got: Vec<String>, tag: &str, min: usize| {
        let sent: BTreeSet<String> = msgs(tag, N).into_iter().collect();
        let unique: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(unique.len(), got.len(), "seed {seed}: {what}: duplicates");
        assert!(
            unique.is_subset(&sent),
            "seed {seed}: {what}: not sent: {unique:?}"
        );
        assert!(
            got.len() >= min,
            "seed {seed}: {what}: only {} of {N}",
            got.len()
        );
        assert!(got.len() <= N);
        eprintln!("seed {seed}: {what}: {} of {N}", got.len());
    };
    let to_bob = w.inbox(bob);
    let to_alice = w.inbox(alice);
    let texts = |v: Vec<(SocketAddr, String)>| v.into_iter().map(|(_, m)| m).collect::<Vec<_>>();
    // One way: three lossy hops (0.9^3 = 0.73 expected).
    let direct = texts(got(&to_bob, b_direct));
    let index = |m: &String| m[2..].parse::<usize>().unwrap();
    let reordered = direct
        .windows(2)
        .filter(|w| index(&w[0]) > index(&w[1]))
        .count();
    check("direct", direct, "d", N / 2);
    check("push", texts(got(&to_bob, b_push)), "p", N / 2);
    // Round trips: six lossy hops (0.9^6 = 0.53 expected), five for router.
    check("forward c1", texts(got(&to_alice, c1)), "c1", N / 4);
    check("forward c2", texts(got(&to_alice, c2)), "c2", N / 4);
    let router: Vec<String> = w.nodes[X]
        .tun
        .as_mut()
        .unwrap()
        .1
        .tx
        .drain(..)
        .map(|p| {
            let udp = parse_udp(&p).unwrap();
            assert_eq!(udp.destination, sa("172.16.0.5:4000"));
            String::from_utf8(p[udp.payload].to_vec()).unwrap()
        })
        .collect();
    check("router", router, "r", N / 4);
    assert!(w.hub.lost > 0, "seed {seed}: the hub lost nothing");
    assert_eq!(w.hub.unroutable, 0);
    reordered
}

#[test]
fn a_listen_address_not_on_the_interface_fails_the_service() {
    let mut w = World::new(7, Impairment::default());
    let px = peer(&w, X);
    w.service(
        X,
        service(
            2,
            px,
            Role::ForwardEntry {
                listen: sa("10.0.0.99:6002"),
            },
        ),
    );
    w.service(
        X,
        service(
            3,
            px,
            Role::PushEntry {
                listen: sa("0.0.0.0:6003"),
            },
        ),
    );
    let smol = &mut w.nodes[X].smol;
    assert_eq!(smol.stats().open_failed, 1);
    let events: Vec<_> = std::iter::from_fn(|| smol.poll_event()).collect();
    assert!(
        events.contains(&sdt_core::node::NodeEvent::ServiceSocketFailed {
            service: ServiceId::new(2)
        })
    );
    assert_eq!(w.stats(X, 2).drops.get(ServiceDrop::SocketFailed), 1);
    // The unspecified address binds every address of the interface.
    let sockets: Vec<_> = w.nodes[X].smol.customer_sockets().collect();
    assert_eq!(sockets.len(), 1);
    assert_eq!(sockets[0].0, SocketId::Service(ServiceId::new(3)));
    assert_eq!((sockets[0].1.addr, sockets[0].1.port), (None, 6003));
}

#[test]
fn bursts_larger_than_the_poll_budget_all_get_through() {
    let mut w = World::new(8, Impairment::default());
    let bob = w.host(BOB);
    w.socket(bob, 9004, true);
    let (px, py) = (peer(&w, X), peer(&w, Y));
    w.tun(X, 4);
    w.service(X, service(4, px, Role::RouterEntry));
    w.service(Y, router_exit(4, py, &["10.0.0.20/32:9004"]));
    w.up();
    let burst = 3 * sdt_smoltcp::POLL_BUDGET + 1;
    for i in 0..burst {
        let packet = ip_packet(
            "172.16.0.5:4000",
            "10.0.0.20:9004",
            format!("b-{i}").as_bytes(),
        );
        w.nodes[X].tun.as_mut().unwrap().1.rx.push_back(packet);
    }
    let now = w.now;
    let n = &mut w.nodes[X];
    let (service, tun) = n.tun.as_mut().unwrap();
    assert!(
        n.smol.poll_with_tun(now, &mut n.device, *service, tun),
        "budget not reported"
    );
    w.run_for(Duration::from_secs(1));
    let replies = w.nodes[X].tun.as_mut().unwrap().1.tx.len();
    assert_eq!(replies, burst);
    for n in [X, Y] {
        assert_eq!(w.nodes[n].smol.stats().send_full, 0);
    }
}
