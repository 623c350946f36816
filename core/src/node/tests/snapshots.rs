//! The first frame of each mode and a reply, pinned with insta: the frame's
//! length and link header, and the plaintext (service header | payload) the
//! receiver decrypted, so a change of the frame format shows up in review.

use super::*;
use std::fmt::Write;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The data frames after the handshake (`skip` frames), each with the
/// plaintext its receiver decrypted.
fn describe(out: &mut String, mode: &str, net: &Net, skip: usize) {
    writeln!(out, "== {mode}").unwrap();
    let frames = net
        .wire
        .iter()
        .skip(skip)
        .filter(|(_, b)| b[0] == 4 && b.len() > 29);
    for ((from, frame), (to, plaintext)) in frames.zip(&net.plaintexts) {
        assert_eq!(*to, 1 - from);
        let name = if *from == X { "x->y" } else { "y->x" };
        let (header, _) = ServiceHeaderRepr::parse(plaintext).unwrap();
        let header_len = header.buffer_len();
        writeln!(
            out,
            "{name} {} bytes, link header {}",
            frame.len(),
            hex(&frame[..13])
        )
        .unwrap();
        writeln!(
            out,
            "  service header {} = {header:?}",
            hex(&plaintext[..header_len])
        )
        .unwrap();
        let payload = &plaintext[header_len..];
        match core::str::from_utf8(payload) {
            Ok(text) => writeln!(out, "  payload {text:?}"),
            Err(_) => writeln!(out, "  payload {}", hex(payload)),
        }
        .unwrap();
    }
}

#[test]
fn first_frame_and_reply_of_each_mode() {
    let mut out = String::new();

    let mut net = Net::new(50);
    net.service(X, forward_entry(1, net.peer[X], "127.0.0.1:5353"));
    net.service(Y, forward_exit(1, Peers::One(net.peer[Y]), "127.0.0.9:53"));
    net.up();
    let skip = net.wire.len();
    net.send(X, a("198.51.100.7:10001"), a("127.0.0.1:5353"), b"query");
    let (socket, _) = net.connected_to(Y, a("127.0.0.9:53"))[0];
    net.send_on(Y, socket, a("127.0.0.9:53"), b"answer");
    assert_eq!(net.delivered.len(), 2);
    describe(&mut out, "forward", &net, skip);

    let mut net = Net::new(51);
    net.service(
        X,
        ServiceConfig::new(
            ServiceId::new(2),
            Peers::One(net.peer[X]),
            Role::PushEntry {
                listen: a("127.0.0.1:5514"),
            },
        ),
    );
    net.service(
        Y,
        ServiceConfig::new(
            ServiceId::new(2),
            Peers::Any,
            Role::PushExit {
                target: a("127.0.0.1:514"),
            },
        ),
    );
    net.up();
    let skip = net.wire.len();
    net.send(
        X,
        a("127.0.0.1:33333"),
        a("127.0.0.1:5514"),
        b"<13>log line",
    );
    assert_eq!(net.delivered.len(), 1);
    describe(&mut out, "push", &net, skip);

    let mut net = Net::new(52);
    let (ax, ay) = (a("127.0.0.1:7001"), a("127.0.0.1:7002"));
    let (cx, cy) = (a("127.0.0.1:9001"), a("127.0.0.1:9002"));
    net.service(
        X,
        ServiceConfig::new(
            ServiceId::new(3),
            Peers::One(net.peer[X]),
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
            Peers::One(net.peer[Y]),
            Role::Direct {
                listen: ay,
                customer: cy,
            },
        ),
    );
    net.up();
    let skip = net.wire.len();
    net.send(X, cx, ax, b"ping");
    net.send(Y, cy, ay, b"pong");
    assert_eq!(net.delivered.len(), 2);
    describe(&mut out, "direct", &net, skip);

    // Router: the entry's frame names the destination; the reply becomes an
    // IP packet at the entry (its frame is like a forward reply).
    let mut net = Net::new(53);
    net.service(X, service(5, Peers::One(net.peer[X]), Role::RouterEntry));
    net.service(Y, router_exit(5, net.peer[Y], &["10.0.0.0/8:53"]));
    net.up();
    let skip = net.wire.len();
    let (client, dest) = (a("10.99.0.2:40000"), a("10.1.1.1:53"));
    let mut packet = vec![0u8; 28 + 5];
    packet[28..].copy_from_slice(b"query");
    crate::ip::forge_udp(&mut packet, 28..33, client, dest).unwrap();
    net.tun_send(X, ServiceId::new(5), &packet);
    let (socket, _) = net.connected_to(Y, dest)[0];
    net.send_on(Y, socket, dest, b"answer");
    assert_eq!((net.delivered.len(), net.tun.len()), (1, 1));
    describe(&mut out, "router", &net, skip);

    // Router with an L3 exit: no channel, no destination; the service
    // header is followed by the whole IP packet, both ways.
    let mut net = Net::new(54);
    net.service(X, service(6, Peers::One(net.peer[X]), Role::RouterTunEntry));
    let mut allow = AllowList::new();
    allow.push("ip://10.1.0.0/16".parse().unwrap()).unwrap();
    let mut peer_addresses = heapless::Vec::new();
    peer_addresses
        .push("10.99.0.2/32".parse().unwrap())
        .unwrap();
    let exit = Role::RouterTunExit {
        allow,
        peer_addresses,
    };
    net.service(Y, service(6, Peers::One(net.peer[Y]), exit));
    net.up();
    let skip = net.wire.len();
    let (client, dest) = (a("10.99.0.2:40000"), a("10.1.1.1:53"));
    let mut packet = vec![0u8; 28 + 5];
    packet[28..].copy_from_slice(b"query");
    crate::ip::forge_udp(&mut packet, 28..33, client, dest).unwrap();
    net.tun_send(X, ServiceId::new(6), &packet);
    let mut reply = vec![0u8; 28 + 6];
    reply[28..].copy_from_slice(b"answer");
    crate::ip::forge_udp(&mut reply, 28..34, dest, client).unwrap();
    net.exit_tun_send(Y, &reply);
    assert_eq!(net.tun.len(), 2);
    describe(&mut out, "router, L3 exit", &net, skip);

    insta::assert_snapshot!(out);
}
