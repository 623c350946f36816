//! IP packets from a TUN device: `ip::parse_udp`, the forge round trip, and
//! a router entry node carrying them to a router exit.
//!
//! The input is one IP packet. It is taken as it is, and again with its
//! IPv4 header checksum and UDP checksum made right (where its lengths let
//! them be computed), so that the fuzzer gets past the checksums to the
//! rest of the parser. Asserts, besides no panic, for both:
//! - whatever `parse_udp` accepts, `forge_udp` of the same addresses and
//!   payload builds a packet that parses back to the same addresses and
//!   payload;
//! - a router entry node (X) seals every packet `parse_udp` or
//!   `icmp::parse_echo` accepts, and only those; the router exit (Y, which
//!   allows everything) delivers the exact payload to the exact destination
//!   (an echo request, from an echo socket, to the pinged host);
//! - an L3 router entry (service 4, `exit = "tun"`) seals every packet
//!   `ip::l3::parse_packet` accepts that fits one frame, and only those,
//!   and the L3 exit (allowing everything, any source) writes it to its TUN
//!   device byte for byte.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use sdt_core::ip::icmp::parse_echo;
use sdt_core::ip::l3::parse_packet;
use sdt_core::ip::{forge_udp, parse_udp, udp_header_len};
use sdt_core::link::{PeerConfig, MIN_TRANSMIT_BUFFER};
use sdt_core::node::{Action, Output, Peers, Role, ServiceId, SocketId, HEADROOM, TAILROOM};
use sdt_fuzz::{
    allow_all, check_output, node, small_service, FuzzNode, A_ADDR, B_ADDR, KEY_X, KEY_Y, START,
};

const ROUTER: ServiceId = ServiceId::new(3);
/// The L3 router service (`exit = "tun"`).
const L3: ServiceId = ServiceId::new(4);

fuzz_target!(|data: &[u8]| {
    let (mut x, mut y) = router_pair();
    let mut fixed = data.to_vec();
    fix_checksums(&mut fixed);
    if fixed != data {
        // The packet as it came (usually refused for its checksums).
        let parsed = parse_udp(data);
        if let Ok(d) = &parsed {
            round_trip(data, d.source, d.destination, d.payload.clone());
        }
        let out = tun_packet(&mut x, data);
        let echo = parse_echo(data);
        assert_eq!(
            parsed.is_ok() || echo.is_ok(),
            out.is_ok(),
            "parse_udp: {parsed:?}, parse_echo: {echo:?}, router entry: {out:?}"
        );
    }
    let data = &fixed[..];
    l3_carries(&mut x, &mut y, data);
    let parsed = parse_udp(data);
    if let Ok(d) = &parsed {
        round_trip(data, d.source, d.destination, d.payload.clone());
    }
    let out = tun_packet(&mut x, data);
    if let Ok(echo) = parse_echo(data) {
        let frame = out.unwrap_or_else(|e| panic!("echo {echo:?} not sealed: {e}"));
        echo_at_exit(&mut y, &frame, data, &echo);
        return;
    }
    let (d, frame) = match (parsed, out) {
        (Ok(d), Ok(frame)) => (d, frame),
        (Err(_), Err(_)) => return,
        (parsed, out) => panic!("parse_udp: {parsed:?}, but the router entry: {out:?}"),
    };
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

/// An L3 service carries exactly the packets `parse_packet` accepts (that
/// fit one frame), whole.
fn l3_carries(x: &mut FuzzNode, y: &mut FuzzNode, data: &[u8]) {
    let parsed = parse_packet(data);
    let mut buf = vec![0u8; HEADROOM + data.len() + TAILROOM];
    let range = HEADROOM..HEADROOM + data.len();
    buf[range.clone()].copy_from_slice(data);
    let out = x.handle_tun_packet(START, L3, &mut buf, range);
    if let Ok(o) = &out {
        check_output(o, buf.len());
    }
    let fits = x.max_payload(L3, None).is_some_and(|max| data.len() <= max);
    let frame = match (&parsed, out) {
        (Ok(_), Ok(Output::Link { range, .. })) if fits => buf[range].to_vec(),
        // Too big: an ICMP error for the TUN device, or a counted drop.
        (Ok(_), Ok(Output::Tun { .. }) | Err(_)) if !fits => return,
        (Err(_), Err(_)) => return,
        (parsed, out) => panic!("parse_packet: {parsed:?}, fits {fits}, but the L3 entry: {out:?}"),
    };
    let mut ybuf = vec![0u8; HEADROOM + frame.len() + TAILROOM];
    let range = HEADROOM..HEADROOM + frame.len();
    ybuf[range.clone()].copy_from_slice(&frame);
    match y.handle_link_datagram(START, A_ADDR, &mut ybuf, range) {
        Ok(Output::Tun { service: L3, range }) => {
            assert_eq!(&ybuf[range], data, "the L3 exit changed the packet")
        }
        other => panic!("L3 exit: {other:?} for {parsed:?}"),
    }
}

/// The exit's side of an echo request: sent from an echo socket to the
/// pinged host, as an echo request carrying the sequence number and data.
fn echo_at_exit(y: &mut FuzzNode, frame: &[u8], data: &[u8], echo: &sdt_core::ip::icmp::Echo) {
    let mut ybuf = vec![0u8; HEADROOM + frame.len() + TAILROOM];
    let range = HEADROOM..HEADROOM + frame.len();
    ybuf[range.clone()].copy_from_slice(frame);
    let out = y.handle_link_datagram(START, A_ADDR, &mut ybuf, range);
    let Ok(Output::Customer {
        socket: SocketId::Channel(channel),
        to: None,
        range,
    }) = out
    else {
        panic!("router exit: {out:?} for {echo:?}");
    };
    let message = &ybuf[range];
    assert_eq!(message[0], if echo.destination.is_ipv6() { 128 } else { 8 });
    assert_eq!(
        &message[6..],
        &data[echo.payload.clone()],
        "payload changed"
    );
    assert_eq!(
        y.poll_action(),
        Some(Action::ConnectEcho {
            socket: SocketId::Channel(channel),
            remote: echo.destination,
        })
    );
}

/// `packet` into router entry `x`, as read from its TUN device: the frame
/// it seals, or why not.
fn tun_packet(x: &mut FuzzNode, packet: &[u8]) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; HEADROOM + packet.len() + TAILROOM];
    let range = HEADROOM..HEADROOM + packet.len();
    buf[range.clone()].copy_from_slice(packet);
    match x.handle_tun_packet(START, ROUTER, &mut buf, range) {
        Ok(Output::Link { to, range }) => {
            check_output(
                &Output::Link {
                    to,
                    range: range.clone(),
                },
                buf.len(),
            );
            assert_eq!(to, B_ADDR);
            Ok(buf[range].to_vec())
        }
        other => Err(format!("{other:?}")),
    }
}

/// The ones' complement sum of `data` (an odd last byte padded with zero),
/// added to `sum`.
fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    for w in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

fn fold(sum: u32) -> u16 {
    let mut sum = sum;
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Makes the IPv4 header checksum and the UDP checksum of `p` right, where
/// the length fields allow; a zero IPv4 UDP checksum ("none") stays zero.
fn fix_checksums(p: &mut [u8]) {
    let be16 = |b: &[u8]| usize::from(u16::from_be_bytes([b[0], b[1]]));
    // Where UDP starts and the IP payload ends, the pseudo-header's
    // addresses and protocol summed, and whether it is IPv4.
    let (udp_start, ip_end, pseudo, v4) = match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 0xf) * 4;
            if ihl < 20 || ihl > p.len() {
                return;
            }
            p[10..12].fill(0);
            let sum = fold(sum16(0, &p[..ihl]));
            p[10..12].copy_from_slice(&sum.to_be_bytes());
            if p[9] != 17 {
                return;
            }
            let pseudo = sum16(sum16(0, &p[12..20]), &[0, 17]);
            (ihl, be16(&p[2..4]).min(p.len()), pseudo, true)
        }
        Some(6) if p.len() >= 40 => {
            if p[6] != 17 {
                return;
            }
            let pseudo = sum16(sum16(0, &p[8..40]), &[0, 17]);
            (40, (40 + be16(&p[4..6])).min(p.len()), pseudo, false)
        }
        _ => return,
    };
    if ip_end < udp_start + 8 {
        return;
    }
    let udp = &mut p[udp_start..ip_end];
    let len = be16(&udp[4..6]);
    if len < 8 || len > udp.len() || (v4 && udp[6..8] == [0, 0]) {
        return;
    }
    udp[6..8].fill(0);
    // The pseudo-header's length is the UDP length field.
    let sum = sum16(sum16(pseudo, &[udp[4], udp[5]]), &udp[..len]);
    let mut checksum = fold(sum);
    if checksum == 0 {
        checksum = 0xffff;
    }
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
}

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

/// X: a router entry and an L3 router entry; Y: a router exit and an L3
/// exit allowing everything; link up.
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
    x.add_service(small_service(L3, Peers::One(px), Role::RouterTunEntry))
        .expect("L3 entry");
    let mut allow = sdt_core::allow::AllowList::new();
    for net in ["0.0.0.0/0", "[::]/0"] {
        allow
            .push(format!("ip://{net}").parse().expect("rule"))
            .expect("room");
    }
    let mut exit = Role::RouterTunExit {
        allow,
        peer_addresses: Default::default(),
    };
    if let Role::RouterTunExit { peer_addresses, .. } = &mut exit {
        for net in ["0.0.0.0/0", "::/0"] {
            peer_addresses
                .push(net.parse().expect("range"))
                .expect("room");
        }
    }
    y.add_service(small_service(L3, Peers::One(py), exit))
        .expect("L3 exit");
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
