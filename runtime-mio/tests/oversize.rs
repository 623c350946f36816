//! The size limit end to end: two `sdt run` nodes in two namespaces over a
//! veth (MTU 1500), a forward service, real UDP sockets as client and
//! target.
//!
//! The bug this pins (issue 10, finding 3): a customer datagram too large
//! for one link frame was counted as sent, added to `send_errors` and
//! vanished with no drop reason. Now the peer's link `mtu` (default 1500)
//! bounds every frame: a forward datagram of exactly the limit (1438 B over
//! an IPv4 link) crosses both ways, one byte more is dropped at the sending
//! node as `too_big`, counted in `sdt status --json`, logged, and nothing is
//! counted as a send error. With `mtu = 65535` (the opt-in to IP
//! fragmentation of link frames) the limit is 65,473 B and such a datagram
//! crosses the 1500-byte veth in IP fragments.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use sdt_core::node::ServiceId;
use support::net::in_netns;
use support::node::{drops, forward_services, Lab, Node};

const LISTEN: &str = "127.0.0.1:5400";
const TARGET: &str = "127.0.0.1:5401";

/// Starts B (the exit, no endpoint for A) then A (the entry), both with
/// `mtu` towards the other (none written: the default), and waits for the
/// session.
fn start(lab: &Lab, mtu: Option<u16>) -> (Node, Node) {
    let (a_services, b_services) = forward_services(LISTEN, TARGET);
    lab.start_nodes_edited(
        lab.b_link(),
        true,
        &a_services,
        &b_services,
        |text| match mtu {
            // The peer table is the only one before the services.
            Some(m) => text.replacen("\n[[service]]", &format!("mtu = {m}\n\n[[service]]"), 1),
            None => text,
        },
    )
}

/// A UDP socket bound to `addr` inside namespace `ns`, with a short read
/// timeout.
fn socket_in(ns: &str, addr: &'static str) -> UdpSocket {
    in_netns(ns, move || {
        let s = UdpSocket::bind(addr).expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        s
    })
}

/// A pattern of `len` bytes that differs with `seed`.
fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// The next datagram on `s`, or `None` after its read timeout.
fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 70_000];
    let (n, from) = s.recv_from(&mut buf).ok()?;
    buf.truncate(n);
    Some((buf, from))
}

/// Client to target at `max` (arrives whole) and `max + 1` (does not), then
/// the target's replies at `max` and `max + 1`; checks the counters and the
/// log of both nodes.
fn at_and_over(lab: &Lab, a: &Node, b: &Node, max: usize) {
    let client = socket_in(&lab.pair.a.name, "127.0.0.1:0");
    let target = socket_in(&lab.pair.b.name, TARGET);
    let listen: SocketAddr = LISTEN.parse().unwrap();

    let at = payload(max, 1);
    client.send_to(&at, listen).unwrap();
    let (got, exit_socket) = recv(&target).expect("the limit crosses to the target");
    assert_eq!(got.len(), max);
    assert!(got == at, "the payload changed on the way");
    client.send_to(&payload(max + 1, 2), listen).unwrap();
    let crossed = recv(&target).map(|(p, _)| p.len());
    assert_eq!(crossed, None, "one byte over the limit crossed");

    let reply = payload(max, 3);
    target.send_to(&reply, exit_socket).unwrap();
    let (got, from) = recv(&client).expect("a reply of the limit crosses back");
    assert_eq!((got.len(), from), (max, listen));
    assert!(got == reply, "the reply changed on the way");
    target.send_to(&payload(max + 1, 4), exit_socket).unwrap();
    let crossed = recv(&client).map(|(p, _)| p.len());
    assert_eq!(crossed, None, "a reply one byte over crossed");

    let (sa, sb) = (a.status(), b.status());
    let (ea, xb) = (
        sa.service(ServiceId::new(1)).unwrap(),
        sb.service(ServiceId::new(1)).unwrap(),
    );
    assert_eq!(ea.max_payload, Some(max as u64), "{ea:?}");
    assert_eq!(xb.max_payload, Some(max as u64), "{xb:?}");
    assert_eq!(drops(&ea.drops, "too_big"), 1, "{ea:?}");
    assert_eq!(drops(&xb.drops, "too_big"), 1, "{xb:?}");
    assert_eq!((ea.to_peer_datagrams, ea.from_peer_datagrams), (1, 1));
    assert_eq!((xb.to_peer_datagrams, xb.from_peer_datagrams), (1, 1));
    assert_eq!((sa.send_errors, sb.send_errors), (0, 0));
    // The text form says the same.
    let text = support::run(
        std::process::Command::new(support::SDT)
            .args(["status", "--socket"])
            .arg(&a.socket),
        Duration::from_secs(10),
    );
    assert!(text.ok(), "{text}");
    for want in [
        format!("largest datagram: {max} B"),
        "too_big=1".to_owned(),
        "mtu: ".to_owned(),
    ] {
        assert!(
            text.stdout.contains(&want),
            "no {want:?} in:\n{}",
            text.stdout
        );
    }
    for (node, len) in [(a, max + 1), (b, max + 1)] {
        let logs = node.logs();
        let line = format!("service 1: dropped a {len} B datagram");
        assert!(
            logs.contains(&line),
            "{}: no {line:?} in:\n{logs}",
            node.name
        );
        assert!(logs.contains(&format!("at most {max} B")), "{logs}");
    }
}

#[test]
fn forward_carries_the_limit_and_drops_one_byte_more_as_too_big() {
    let lab = Lab::new("size", 57);
    let (a, b) = start(&lab, None);
    let status = a.status();
    assert_eq!(status.peers[0].mtu, 1500);
    // 1500 - 20 (IPv4) - 8 (UDP) - 29 (data frame) - 5 (service header).
    at_and_over(&lab, &a, &b, 1438);

    // The size of the issue: too big, named, and no send error.
    let client = socket_in(&lab.pair.a.name, "127.0.0.1:0");
    client
        .send_to(&payload(65_477, 5), LISTEN.parse::<SocketAddr>().unwrap())
        .unwrap();
    let counted = support::wait_until(Duration::from_secs(5), || {
        drops(&a.service(1).drops, "too_big") == 2
    });
    assert!(counted, "{:?}", a.service(1));
    assert_eq!(a.status().send_errors, 0);
    a.stop();
    b.stop();
}

#[test]
fn mtu_65535_lets_the_kernel_fragment_link_frames() {
    let lab = Lab::new("size64k", 58);
    let (a, b) = start(&lab, Some(65_535));
    assert_eq!(a.status().peers[0].mtu, 65_535);
    // 65535 - 20 - 8 - 29 - 5: far over the veth's 1500, in IP fragments.
    at_and_over(&lab, &a, &b, 65_473);
    a.stop();
    b.stop();
}
