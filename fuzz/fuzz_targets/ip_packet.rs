//! IP packets from a TUN device: `ip::parse_udp`, the forge round trip, and
//! a router entry node carrying them to a router exit.
//!
//! The input is one IP packet. Asserts, besides no panic:
//! - whatever `parse_udp` accepts, `forge_udp` of the same addresses and
//!   payload builds a packet that parses back to the same addresses and
//!   payload;
//! - a router entry node (X) seals every packet `parse_udp` accepts, and
//!   only those; the router exit (Y, which allows everything) delivers the
//!   exact payload to the exact destination.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use sdt_core::ip::{forge_udp, parse_udp, udp_header_len};
use sdt_core::link::{PeerConfig, MIN_TRANSMIT_BUFFER};
use sdt_core::node::{Action, Output, Peers, Role, SocketId, HEADROOM, TAILROOM};
use sdt_fuzz::{
    allow_all, check_output, node, small_service, FuzzNode, A_ADDR, B_ADDR, KEY_X, KEY_Y, START,
};

const ROUTER: u8 = 3;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_udp(data);
    if let Ok(d) = &parsed {
        round_trip(data, d.source, d.destination, d.payload.clone());
    }

    let (mut x, mut y) = router_pair();
    let mut buf = vec![0u8; HEADROOM + data.len() + TAILROOM];
    let packet = HEADROOM..HEADROOM + data.len();
    buf[packet.clone()].copy_from_slice(data);
    let out = x.handle_tun_packet(START, ROUTER, &mut buf, packet);
    if let Ok(o) = &out {
        check_output(o, buf.len());
    }
    let d = match (parsed, out) {
        (Ok(d), Ok(Output::Link { to, range })) => {
            assert_eq!(to, B_ADDR);
            let frame = buf[range].to_vec();
            (d, frame)
        }
        (Err(_), Err(_)) => return,
        (parsed, out) => panic!("parse_udp: {parsed:?}, but the router entry: {out:?}"),
    };
    let (d, frame) = d;
    let mut ybuf = vec![0u8; HEADROOM + frame.len() + TAILROOM];
    let range = HEADROOM..HEADROOM + frame.len();
    ybuf[range.clone()].copy_from_slice(&frame);
    let out = y.handle_link_datagram(START, A_ADDR, &mut ybuf, range);
    let Ok(Output::Customer {
        socket: SocketId::Channel(channel),
        to: None,
        range,
    }) = out
    else {
        panic!("router exit: {out:?} for {d:?}");
    };
    assert_eq!(&ybuf[range], &data[d.payload.clone()], "payload changed");
    let action = y.poll_action();
    assert_eq!(
        action,
        Some(Action::Connect {
            socket: SocketId::Channel(channel),
            remote: d.destination,
        })
    );
});

/// Forges a packet around `data[payload]` and parses it back.
fn round_trip(
    data: &[u8],
    source: SocketAddr,
    destination: SocketAddr,
    payload: std::ops::Range<usize>,
) {
    assert!(payload.start <= payload.end && payload.end <= data.len());
    assert_eq!(source.is_ipv4(), destination.is_ipv4());
    assert_ne!(destination.port(), 0);
    let bytes = &data[payload];
    let head = udp_header_len(&source);
    let mut buf = vec![0u8; head + bytes.len()];
    buf[head..].copy_from_slice(bytes);
    let range = forge_udp(&mut buf, head..head + bytes.len(), source, destination)
        .expect("forge what parse_udp accepted");
    assert_eq!(range, 0..buf.len());
    let again = parse_udp(&buf).expect("parse what forge_udp built");
    assert_eq!(again.source, source);
    assert_eq!(again.destination, destination);
    assert_eq!(&buf[again.payload], bytes);
}

/// X: a router entry; Y: a router exit allowing everything; link up.
fn router_pair() -> (FuzzNode, FuzzNode) {
    let mut x = node(KEY_X);
    let mut y = node(KEY_Y);
    let mut cx = PeerConfig::new(y.link().public_key().to_owned());
    cx.endpoint = Some(B_ADDR);
    let cy = PeerConfig::new(x.link().public_key().to_owned());
    let px = x.add_peer(cx, START).expect("peer Y");
    let py = y.add_peer(cy, START).expect("peer X");
    x.add_service(small_service(ROUTER, Peers::One(px), Role::RouterEntry))
        .expect("router entry");
    y.add_service(small_service(
        ROUTER,
        Peers::One(py),
        Role::RouterExit { allow: allow_all() },
    ))
    .expect("router exit");
    x.connect(px, START);
    // Initiation, response, keepalive.
    let initiation = transmit(&mut x);
    deliver(&mut y, A_ADDR, &initiation);
    let response = transmit(&mut y);
    deliver(&mut x, B_ADDR, &response);
    let keepalive = transmit(&mut x);
    deliver(&mut y, A_ADDR, &keepalive);
    assert!(x.link().is_up(px, START) && y.link().is_up(py, START));
    while x.poll_event().is_some() {}
    while y.poll_event().is_some() {}
    (x, y)
}

fn transmit(n: &mut FuzzNode) -> Vec<u8> {
    let mut buf = [0u8; MIN_TRANSMIT_BUFFER];
    let t = n
        .poll_transmit(START, &mut buf)
        .expect("buffer")
        .expect("a handshake message");
    buf[..t.len].to_vec()
}

fn deliver(n: &mut FuzzNode, from: SocketAddr, datagram: &[u8]) {
    let mut buf = vec![0u8; HEADROOM + datagram.len() + TAILROOM];
    let range = HEADROOM..HEADROOM + datagram.len();
    buf[range.clone()].copy_from_slice(datagram);
    let out = n.handle_link_datagram(START, from, &mut buf, range);
    assert_eq!(out, Ok(Output::Consumed));
}
