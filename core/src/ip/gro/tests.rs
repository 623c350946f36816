use super::*;
use crate::ip::gso::Segments;
use proptest::prelude::*;
use smoltcp::wire::Ipv4Packet;
use std::vec;
use std::vec::Vec;

/// A TCP super-packet (ACK, or ACK and PSH with `psh`) from 10.8.0.2 to
/// 10.9.0.1 (IPv4, identification 0xfffe) or fd00:8::2 to fd00:9::1, with a
/// timestamp option, and its segments of `size` as Segments writes them.
fn segments(v4: bool, seq: u32, psh: bool, size: u16, payload: &[u8]) -> (Offload, Vec<Vec<u8>>) {
    let flags = if psh { 0x18 } else { 0x10 };
    let mut tcp = vec![0x9c, 0x40, 0, 80];
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 1, 0x80, flags, 0x01, 0xf5, 0, 0, 0, 0]);
    tcp.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
    let mut p = Vec::new();
    let l4 = if v4 { 20 } else { 40 };
    if v4 {
        let total = (20 + tcp.len() + payload.len()) as u16;
        p.extend_from_slice(&[0x45, 0, 0, 0, 0xff, 0xfe, 0x40, 0, 64, 6, 0, 0]);
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[10, 8, 0, 2, 10, 9, 0, 1]);
        Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
    } else {
        let len = (tcp.len() + payload.len()) as u16;
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&[6, 64]);
        p.extend_from_slice(&[0xfd, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&[0xfd, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    }
    p.extend_from_slice(&tcp);
    p.extend_from_slice(payload);
    let o = Offload {
        gso: if v4 { Gso::TcpV4 } else { Gso::TcpV6 },
        segment_size: size,
        partial_checksum: Some((l4 as u16, 16)),
    };
    let s = Segments::new(&p, &o).unwrap();
    let segs = (0..s.count())
        .map(|i| {
            let mut out = vec![0u8; s.len(i).unwrap()];
            s.write(i, &mut out).unwrap();
            out
        })
        .collect();
    (o, segs)
}

/// Pushes every segment, taking and keeping what comes out as it must.
fn coalesce(segs: &[Vec<u8>]) -> Vec<(Offload, Vec<u8>)> {
    let mut c = Coalescer::new(vec![0u8; 65_535]);
    let mut out = Vec::new();
    for seg in segs {
        loop {
            match c.push(seg) {
                Push::Held => break,
                Push::TakeFirst => {
                    let (o, p) = c.take().expect("something held");
                    out.push((o, p.to_vec()));
                }
                Push::Alone => {
                    if let Some((o, p)) = c.take() {
                        out.push((o, p.to_vec()));
                    }
                    out.push((Offload::NONE, seg.clone()));
                    break;
                }
            }
        }
    }
    if let Some((o, p)) = c.take() {
        out.push((o, p.to_vec()));
    }
    assert!(c.is_empty());
    out
}

/// What the device makes of a coalesced packet: its segments again.
fn split(o: &Offload, p: &[u8]) -> Vec<Vec<u8>> {
    if o.gso == Gso::None {
        return vec![p.to_vec()];
    }
    let s = Segments::new(p, o).expect("a valid super-packet");
    (0..s.count())
        .map(|i| {
            let mut out = vec![0u8; s.len(i).unwrap()];
            s.write(i, &mut out).unwrap();
            out
        })
        .collect()
}

#[test]
fn one_flow_becomes_one_super_packet() {
    for v4 in [true, false] {
        let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let (_, segs) = segments(v4, 0xffff_f000, true, 1400, &payload);
        assert_eq!(segs.len(), 4);
        let out = coalesce(&segs);
        assert_eq!(out.len(), 1, "v4 {v4}");
        let (o, p) = &out[0];
        assert_eq!(o.segment_size, 1400);
        assert_eq!(o.partial_checksum, Some((if v4 { 20 } else { 40 }, 16)));
        assert_eq!(split(o, p), segs);
    }
}

#[test]
fn a_lone_segment_is_handed_over_as_it_came() {
    let (_, segs) = segments(true, 1, false, 1400, &[7u8; 100]);
    let out = coalesce(&segs);
    assert_eq!(out, vec![(Offload::NONE, segs[0].clone())]);
}

#[test]
fn what_breaks_the_run() {
    let payload = [3u8; 4200];
    let (_, segs) = segments(true, 100, false, 1400, &payload);
    // A gap in the sequence numbers: two super-packets.
    let out = coalesce(&[segs[0].clone(), segs[2].clone()]);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|(o, _)| o.gso == Gso::None));
    // Another TTL.
    let mut other = segs[1].clone();
    other[8] = 63;
    Ipv4Packet::new_unchecked(&mut other[..]).fill_checksum();
    assert_eq!(coalesce(&[segs[0].clone(), other]).len(), 2);
    // A wrong TCP checksum: never coalesced, written as it is.
    let mut bad = segs[1].clone();
    bad[36] ^= 1;
    let out = coalesce(&[segs[0].clone(), bad.clone(), segs[2].clone()]);
    assert_eq!(out.len(), 3);
    assert_eq!(out[1], (Offload::NONE, bad));
    // A short segment ends it: what follows starts anew.
    let (_, short) = segments(true, 100, false, 1000, &payload[..1000]);
    let mut after = segs[0].clone();
    after[24..28].copy_from_slice(&1100u32.to_be_bytes());
    assert_eq!(coalesce(&[short[0].clone(), after]).len(), 2);
    // SYN, FIN, no payload, UDP: alone.
    for (at, value) in [(33, 0x12), (33, 0x11)] {
        let mut p = segs[0].clone();
        p[at] = value;
        assert_eq!(Coalescer::new(vec![0u8; 65_535]).push(&p), Push::Alone);
    }
    let ack = &segs[0][..52];
    assert_eq!(Coalescer::new(vec![0u8; 65_535]).push(ack), Push::Alone);
    // Too small a buffer for the first, or for more.
    assert_eq!(Coalescer::new(vec![0u8; 100]).push(&segs[0]), Push::Alone);
    let mut c = Coalescer::new(vec![0u8; 2000]);
    assert_eq!(c.push(&segs[0]), Push::Held);
    assert_eq!(c.push(&segs[1]), Push::TakeFirst);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Coalescing the segments of a super-packet and splitting what comes
    /// out gives the same segments, byte for byte.
    #[test]
    fn coalesce_then_split_gives_the_segments_back(
        v4 in any::<bool>(),
        seq in any::<u32>(),
        psh in any::<bool>(),
        size in 1u16..1500,
        payload in proptest::collection::vec(any::<u8>(), 1..70_000),
    ) {
        let max = if v4 { 65_535 - 52 } else { 65_535 - 32 };
        let payload = &payload[..payload.len().min(max)];
        let (_, segs) = segments(v4, seq, psh, size, payload);
        let out = coalesce(&segs);
        let again: Vec<Vec<u8>> = out.iter().flat_map(|(o, p)| split(o, p)).collect();
        prop_assert_eq!(again, segs);
    }

    /// Any bytes: no panic, and whatever is held comes out.
    #[test]
    fn arbitrary_packets_never_panic(
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..6),
    ) {
        let mut c = Coalescer::new(vec![0u8; 300]);
        for p in &packets {
            if c.push(p) != Push::Held {
                let _ = c.take();
                let _ = c.push(p);
            }
        }
        let _ = c.take();
        prop_assert!(c.is_empty());
    }
}

#[test]
fn wrong_checksums_are_left_alone() {
    let (_, segs) = segments(true, 5, false, 100, &[1u8; 300]);
    let mut ip = segs[1].clone();
    ip[10] ^= 0x40;
    let mut ffff = segs[1].clone();
    ffff[36..38].copy_from_slice(&[0xff, 0xff]);
    for p in [ip, ffff] {
        let mut c = Coalescer::new(vec![0u8; 65_535]);
        assert_eq!(c.push(&segs[0]), Push::Held);
        assert_eq!(c.push(&p), Push::Alone);
    }
}
