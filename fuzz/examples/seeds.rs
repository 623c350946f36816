//! Writes the seed corpora of the fuzz targets into `fuzz/corpus/<target>/`
//! (files named `seed-*`; other files there are left alone).
//!
//! ```sh
//! cd fuzz && cargo +nightly run --example seeds
//! ```
//!
//! The handshake messages and data frames are real: they come from the
//! same deterministic set-ups the targets build (see the `sdt_fuzz` crate),
//! so they are valid in the targets' states. The configurations are every
//! `examples/*/*.toml` of the repository.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sdt_core::wire::{DataPacket, ServiceHeaderRepr, ServiceId};
use sdt_fuzz::{service, udp_packet, Input, LinkPair, NodePair, Stage, TUN_DESTINATION};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    link_datagram(&root.join("corpus/link_datagram"));
    handshake_responder(&root.join("corpus/handshake_responder"));
    ip_packet(&root.join("corpus/ip_packet"));
    config(root, &root.join("corpus/config"));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("corpus directory");
    let path: PathBuf = dir.join(format!("seed-{name}"));
    fs::write(&path, bytes).expect("write seed");
    println!("{} ({} bytes)", path.display(), bytes.len());
}

/// A data frame the sender `link` seals around `plaintext` for `peer`.
fn seal(
    link: &mut sdt_fuzz::FuzzLink,
    peer: sdt_core::link::PeerId,
    now: sdt_core::Instant,
    plaintext: &[u8],
) -> Vec<u8> {
    let h = DataPacket::<&[u8]>::HEADER_LEN;
    let mut frame = vec![0u8; DataPacket::<&[u8]>::OVERHEAD + plaintext.len()];
    frame[h..h + plaintext.len()].copy_from_slice(plaintext);
    let t = link
        .seal(now, peer, &mut frame, plaintext.len())
        .expect("seal");
    frame.truncate(t.len);
    frame
}

/// The liveness probe `link` seals for `peer` next.
fn probe(
    link: &mut sdt_fuzz::FuzzLink,
    peer: sdt_core::link::PeerId,
    now: sdt_core::Instant,
) -> Vec<u8> {
    let mut frame = vec![0u8; sdt_core::wire::ProbePacket::<&[u8]>::LEN];
    let t = link.seal_probe(now, peer, &mut frame).expect("probe");
    frame.truncate(t.len);
    frame
}

/// The established pair takes each side's probe, once: the second copy is
/// a replay.
fn check_probes(a_probe: &[u8], b_probe: &[u8]) {
    use sdt_core::link::{DropReason, Received};
    use sdt_fuzz::{A_ADDR, B_ADDR};
    let mut p = LinkPair::new(Stage::Established, false);
    let now = p.now;
    for (link, from, probe) in [(&mut p.b, A_ADDR, a_probe), (&mut p.a, B_ADDR, b_probe)] {
        let first = link.handle_datagram(now, from, &mut probe.to_vec());
        assert!(matches!(first, Ok(Received::Control { .. })), "{first:?}");
        let again = link.handle_datagram(now, from, &mut probe.to_vec());
        assert_eq!(again, Err(DropReason::Replayed));
    }
}

/// A service header and payload.
fn plaintext(
    service: ServiceId,
    from_entry: bool,
    channel: Option<u32>,
    destination: Option<SocketAddr>,
    payload: &[u8],
) -> Vec<u8> {
    let header = ServiceHeaderRepr {
        service,
        from_entry,
        channel,
        destination,
        sequence: None,
    };
    let mut out = vec![0u8; header.buffer_len()];
    header.emit(&mut out).expect("header");
    out.extend_from_slice(payload);
    out
}

fn link_datagram(dir: &Path) {
    // Handshake messages and frames of the canonical A-B pair. Frames are
    // sealed after the handshake, at the counters the established pair
    // would use next.
    let mut pair = LinkPair::new(Stage::Established, false);
    let [initiation, response, keepalive] =
        <[Vec<u8>; 3]>::try_from(pair.handshake.clone()).expect("three handshake messages");
    let now = pair.now;
    let (a_peer, b_peer) = (pair.a_peer, pair.b_peer);
    let a_data = seal(&mut pair.a, a_peer, now, b"\x05hello from A");
    let b_data = seal(&mut pair.b, b_peer, now, b"\x05hello from B");
    let b_keepalive = seal(&mut pair.b, b_peer, now, b"");
    let a_probe = probe(&mut pair.a, a_peer, now);
    let b_probe = probe(&mut pair.b, b_peer, now);
    check_probes(&a_probe, &b_probe);

    check_seeds(
        &initiation,
        &response,
        &keepalive,
        &a_data,
        &b_data,
        &b_keepalive,
    );

    // 0: fresh B takes A's initiation, then A's first frames.
    write(dir, "0-initiation", &Input::encode(0, 0, &[&initiation]));
    write(
        dir,
        "0-handshake-then-data",
        &Input::encode(0, 0, &[&initiation, &keepalive, &a_data]),
    );
    write(
        dir,
        "0-initiation-under-load",
        &Input::encode(0, 2, &[&initiation]),
    );
    // 1: A waiting for the response.
    write(dir, "1-response", &Input::encode(1, 0, &[&response]));
    write(
        dir,
        "1-response-then-data",
        &Input::encode(1, 0, &[&response, &b_keepalive, &b_data]),
    );
    // 2: B answered; A's keepalive confirms, then data.
    write(
        dir,
        "2-keepalive-data",
        &Input::encode(2, 0, &[&keepalive, &a_data, &a_data]),
    );
    // 3, 4: established; data and a replayed handshake.
    write(dir, "3-data", &Input::encode(3, 0, &[&a_data, &a_data]));
    write(
        dir,
        "3-initiation-again",
        &Input::encode(3, 1, &[&initiation]),
    );
    write(
        dir,
        "4-data",
        &Input::encode(4, 4, &[&b_data, &b_keepalive]),
    );
    write(dir, "4-response-again", &Input::encode(4, 1, &[&response]));
    // 3, 4: established; a probe, then its replay.
    write(dir, "3-probe", &Input::encode(3, 0, &[&a_probe, &a_probe]));
    write(dir, "4-probe", &Input::encode(4, 0, &[&b_probe, &b_probe]));

    // 5, 6: the node pair. X's frames to every service of Y.
    let plaintexts = [
        plaintext(service::FORWARD_EXIT, true, Some(0), None, b"query"),
        plaintext(service::FORWARD_ENTRY, false, Some(0), None, b"reply"),
        plaintext(service::ROUTER_ENTRY, false, Some(0), None, b"pong"),
        plaintext(
            service::ROUTER_EXIT,
            true,
            Some(7),
            Some(TUN_DESTINATION),
            b"to a destination",
        ),
        plaintext(
            service::ROUTER_EXIT,
            true,
            Some(8),
            Some("[2001:db8::9]:53".parse().expect("v6")),
            b"v6",
        ),
        plaintext(service::DIRECT, false, None, None, b"direct"),
        plaintext(service::PUSH_EXIT, true, None, None, b"push"),
        plaintext(service::PUSH_ENTRY, false, None, None, b"wrong way"),
        plaintext(ServiceId::new(200), true, Some(1), None, b"unknown service"),
    ];
    let chunks: Vec<&[u8]> = plaintexts.iter().map(Vec::as_slice).collect();
    write(dir, "6-every-service", &Input::encode(6, 0, &chunks[..8]));
    write(dir, "6-replays", &Input::encode(6, 1, &chunks[3..5]));
    write(dir, "6-unknown-service", &Input::encode(6, 8, &chunks[8..]));
    let mut nodes = NodePair::new();
    let (now, peer) = (nodes.now, nodes.x_peer);
    let frames: Vec<Vec<u8>> = plaintexts[..4]
        .iter()
        .map(|p| seal(&mut nodes.x, peer, now, p))
        .collect();
    let chunks: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    write(dir, "5-real-frames", &Input::encode(5, 0, &chunks));
    // They reach the services of a fresh node pair.
    let mut fresh = NodePair::new();
    for f in &frames {
        let out = fresh.y_link_datagram(&mut f.clone());
        assert!(out.is_ok(), "{out:?}");
    }
}

/// The seeds do in the targets' states what their names say.
fn check_seeds(
    initiation: &[u8],
    response: &[u8],
    keepalive: &[u8],
    a_data: &[u8],
    b_data: &[u8],
    b_keepalive: &[u8],
) {
    use sdt_core::link::{DropReason, Received};
    use sdt_fuzz::{A_ADDR, B_ADDR};
    let data = |r: &Result<Received, DropReason>| matches!(r, Ok(Received::Data { .. }));
    let control = |r: &Result<Received, DropReason>| matches!(r, Ok(Received::Control { .. }));

    let mut p = LinkPair::new(Stage::Fresh, false);
    let now = p.now;
    assert!(control(&p.b.handle_datagram(
        now,
        A_ADDR,
        &mut initiation.to_vec()
    )));
    assert!(control(&p.b.handle_datagram(
        now,
        A_ADDR,
        &mut keepalive.to_vec()
    )));
    assert!(data(&p.b.handle_datagram(
        now,
        A_ADDR,
        &mut a_data.to_vec()
    )));

    let mut p = LinkPair::new(Stage::Initiated, false);
    assert!(control(&p.a.handle_datagram(
        now,
        B_ADDR,
        &mut response.to_vec()
    )));
    assert!(control(&p.a.handle_datagram(
        now,
        B_ADDR,
        &mut b_keepalive.to_vec()
    )));
    assert!(data(&p.a.handle_datagram(
        now,
        B_ADDR,
        &mut b_data.to_vec()
    )));

    let mut p = LinkPair::new(Stage::Answered, false);
    assert!(control(&p.b.handle_datagram(
        now,
        A_ADDR,
        &mut keepalive.to_vec()
    )));
    assert!(data(&p.b.handle_datagram(
        now,
        A_ADDR,
        &mut a_data.to_vec()
    )));

    let mut p = LinkPair::new(Stage::Established, false);
    assert!(data(&p.b.handle_datagram(
        now,
        A_ADDR,
        &mut a_data.to_vec()
    )));
    assert_eq!(
        p.b.handle_datagram(now, A_ADDR, &mut a_data.to_vec()),
        Err(DropReason::Replayed)
    );
    assert!(data(&p.a.handle_datagram(
        now,
        B_ADDR,
        &mut b_data.to_vec()
    )));
}

fn handshake_responder(dir: &Path) {
    let pair = LinkPair::new(Stage::Initiated, false);
    let initiation = &pair.handshake[0];
    // Mode 0: the bare Noise message; mode 1: sender index and message.
    let mut bare = vec![0];
    bare.extend_from_slice(&initiation[5..121]);
    write(dir, "0-noise-message", &bare);
    let mut wrapped = vec![1];
    wrapped.extend_from_slice(&initiation[1..121]);
    write(dir, "1-initiation", &wrapped);
    let mut load = wrapped.clone();
    load[0] = 0x11;
    write(dir, "1-initiation-under-load", &load);
    // Mode 3: A waiting for its response gets B's crossing initiation.
    let b_pair = {
        let mut p = LinkPair::new(Stage::Fresh, true);
        let now = p.now;
        let peer = p.b_peer;
        p.b.connect(peer, now);
        sdt_fuzz::drain_link(&mut p.b, now)
    };
    let mut crossing = vec![3];
    crossing.extend_from_slice(&b_pair[0][1..121]);
    write(dir, "3-crossing", &crossing);
    // Mode 2: A's initiations with a timestamp and an incarnation, then a
    // replay, then an older timestamp, then a stranger.
    let mut built = vec![2];
    let records: [(u8, u8, u64, u64); 5] = [
        (1, 9, 0x4000_0000_6553_f100, 7),
        (1, 10, 0x4000_0000_6553_f101, 7),
        (1, 11, 0x4000_0000_6553_f101, 7),
        (1, 12, 0x4000_0000_6553_f200, 8),
        (0, 13, 0x4000_0000_6553_f300, 9),
    ];
    for (flags, eph, seconds, incarnation) in records {
        built.push(flags);
        built.extend_from_slice(&[eph; 32]);
        built.extend_from_slice(&seconds.to_be_bytes());
        built.extend_from_slice(&[0, 0, 0, 1]);
        built.extend_from_slice(&incarnation.to_le_bytes());
        built.extend_from_slice(&u32::from(eph).to_le_bytes());
    }
    write(dir, "2-built", &built);
}

fn ip_packet(dir: &Path) {
    let v4 = |s: &str| -> SocketAddr { s.parse().expect("address") };
    write(
        dir,
        "v4-dns",
        &udp_packet(
            v4("10.0.0.2:40000"),
            TUN_DESTINATION,
            b"\x12\x34\x01\x00\x00\x01",
        ),
    );
    write(
        dir,
        "v4-empty",
        &udp_packet(v4("10.0.0.2:1"), v4("10.0.0.3:9"), b""),
    );
    write(
        dir,
        "v6",
        &udp_packet(v4("[fd00::2]:40000"), v4("[2001:db8::9]:53"), b"hello v6"),
    );
    write(
        dir,
        "v6-mapped",
        &udp_packet(v4("[fd00::2]:5"), v4("[::ffff:192.0.2.7]:123"), b"ntp"),
    );
    // Zero UDP checksum (allowed in IPv4), and IPv4 with options.
    let mut zero = udp_packet(v4("10.0.0.2:40000"), v4("10.0.0.3:7"), b"no checksum");
    zero[26] = 0;
    zero[27] = 0;
    write(dir, "v4-zero-checksum", &zero);
    let plain = udp_packet(v4("10.0.0.2:40000"), v4("10.0.0.3:7"), b"options");
    let mut opts = Vec::new();
    opts.extend_from_slice(&plain[..20]);
    opts.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    opts.extend_from_slice(&plain[20..]);
    opts[0] = 0x46;
    let total = u16::try_from(opts.len()).expect("short").to_be_bytes();
    opts[2..4].copy_from_slice(&total);
    opts[10] = 0;
    opts[11] = 0;
    let sum = ipv4_checksum(&opts[..24]);
    opts[10..12].copy_from_slice(&sum.to_be_bytes());
    write(dir, "v4-options", &opts);
    // Not UDP: the same packet as TCP (protocol 6).
    let mut tcp = plain.clone();
    tcp[9] = 6;
    tcp[10] = 0;
    tcp[11] = 0;
    let sum = ipv4_checksum(&tcp[..20]);
    tcp[10..12].copy_from_slice(&sum.to_be_bytes());
    write(dir, "v4-tcp", &tcp);
}

/// The IPv4 header checksum of `header` (checksum field zeroed).
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn config(root: &Path, dir: &Path) {
    let examples = root.join("../examples");
    let mut entries: Vec<_> = fs::read_dir(&examples)
        .expect("examples/")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let mut files: Vec<_> = fs::read_dir(e.path())
            .expect("example directory")
            .filter_map(Result::ok)
            .map(|f| f.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for f in files {
            let name = format!(
                "{}-{}",
                e.file_name().to_string_lossy(),
                f.file_name().unwrap_or_default().to_string_lossy()
            );
            write(dir, &name, &fs::read(&f).expect("example config"));
        }
    }
}
