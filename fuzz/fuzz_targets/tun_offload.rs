//! What a TUN device with offloads hands over, and what sdt writes back:
//! `ip::gso::Segments` and `complete_checksum` on a packet under any
//! description, and `ip::gro::Coalescer` on the segments.
//!
//! The input is an 8-byte description, then the packet: byte 0 the
//! segmentation (mod 4: none, TCP over IPv4, TCP over IPv6, UDP), bytes 1-2
//! the segment size, 3-4 where the partial checksum starts, 5-6 the offset
//! of its field (all big-endian), byte 7 flags: bit 0 "no partial checksum",
//! bit 1 "fix the packet": the IP length fields, the IPv4 header checksum,
//! and the checksum position set to what the packet holds, so that the
//! fuzzer gets past the checks to the splitting. Asserts, besides no panic:
//! - every segment writes exactly `len(i)` bytes (and is refused a buffer
//!   one byte short), and the payloads put together are the
//!   super-packet's;
//! - a segment is a sane IP packet (`ip::l3::parse_packet`) whenever the
//!   super-packet with its IPv4 header checksum right is one;
//! - coalescing the segments and splitting what comes out again gives the
//!   same segments, byte for byte; a lone packet comes out as it went in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sdt_core::ip::gro::{Coalescer, Push};
use sdt_core::ip::gso::{complete_checksum, Gso, Offload, Segments};
use sdt_core::ip::l3::parse_packet;

fuzz_target!(|data: &[u8]| {
    let Some((head, packet)) = data.split_first_chunk::<8>() else {
        return;
    };
    let gso = [Gso::None, Gso::TcpV4, Gso::TcpV6, Gso::Udp][usize::from(head[0] % 4)];
    let be = |i: usize| u16::from_be_bytes([head[i], head[i + 1]]);
    let mut packet = packet.to_vec();
    let mut checksum = (head[7] & 1 == 0).then(|| (be(3), be(5)));
    if head[7] & 2 != 0 {
        checksum = fix(&mut packet).or(checksum);
    }
    let offload = Offload {
        gso,
        segment_size: be(1),
        partial_checksum: checksum,
    };
    lone_packet(&packet);
    if gso == Gso::None {
        if let Some((start, offset)) = checksum {
            let mut p = packet.clone();
            let r = complete_checksum(&mut p, start, offset);
            assert_eq!(p.len(), packet.len());
            if r.is_err() {
                assert_eq!(p, packet, "changed a packet it refused");
            }
        }
        return;
    }
    let Ok(s) = Segments::new(&packet, &offload) else {
        return;
    };
    let sane = {
        let mut p = packet.clone();
        fix_ipv4_checksum(&mut p);
        parse_packet(&p).is_ok()
    };
    let mut segments = Vec::new();
    for i in 0..s.count() {
        let len = s.len(i).expect("a segment below count");
        let mut out = vec![0u8; len];
        assert_eq!(s.write(i, &mut out), Ok(len));
        let mut short = vec![0u8; len - 1];
        assert!(s.write(i, &mut short).is_err());
        if sane {
            parse_packet(&out).unwrap_or_else(|e| panic!("segment {i} not sane: {e}"));
        }
        segments.push(out);
    }
    assert!(s.len(s.count()).is_none());
    let total: usize = segments.iter().map(Vec::len).sum();
    if segments.len() == 1 {
        assert_eq!(total, packet.len());
    } else {
        // Every segment repeats the same headers: what the segments hold
        // beyond the packet, per extra segment.
        let extra = total - packet.len();
        assert_eq!(extra % (segments.len() - 1), 0);
        let h = extra / (segments.len() - 1);
        let payload: Vec<u8> = segments.iter().flat_map(|seg| seg[h..].to_vec()).collect();
        assert_eq!(&payload[..], &packet[h..], "the payloads put together");
    }
    if matches!(gso, Gso::TcpV4 | Gso::TcpV6) {
        round_trip(&segments);
    }
});

/// Coalescing `segments` and splitting the result gives them back.
fn round_trip(segments: &[Vec<u8>]) {
    let mut c = Coalescer::new(vec![0u8; 65_535]);
    let mut out: Vec<Vec<u8>> = Vec::new();
    let emit = |o: Offload, p: &[u8], out: &mut Vec<Vec<u8>>| {
        if o.gso == Gso::None {
            out.push(p.to_vec());
            return;
        }
        let s = Segments::new(p, &o).expect("the coalesced packet splits");
        for i in 0..s.count() {
            let mut b = vec![0u8; s.len(i).unwrap()];
            s.write(i, &mut b).unwrap();
            out.push(b);
        }
    };
    for seg in segments {
        loop {
            match c.push(seg) {
                Push::Held => break,
                Push::TakeFirst => {
                    let (o, p) = c.take().expect("held");
                    emit(o, p, &mut out);
                }
                Push::Alone => {
                    if let Some((o, p)) = c.take() {
                        emit(o, p, &mut out);
                    }
                    out.push(seg.clone());
                    break;
                }
            }
        }
    }
    if let Some((o, p)) = c.take() {
        emit(o, p, &mut out);
    }
    assert_eq!(out, segments, "coalesced and split again");
}

/// A packet pushed alone comes out unchanged.
fn lone_packet(packet: &[u8]) {
    let mut c = Coalescer::new(vec![0u8; 65_535]);
    match c.push(packet) {
        Push::Held => {
            let (o, p) = c.take().expect("held");
            assert_eq!(o, Offload::NONE);
            assert_eq!(p, packet);
        }
        Push::Alone => assert!(c.take().is_none()),
        Push::TakeFirst => panic!("nothing was held"),
    }
}

/// Makes the IP length fields the bytes given and the IPv4 header checksum
/// right; returns the checksum position of the TCP or UDP header right
/// after the fixed IP header, if it is one.
fn fix(p: &mut [u8]) -> Option<(u16, u16)> {
    let len = p.len();
    match p.first()? >> 4 {
        4 if len >= 20 && len <= 65_535 => {
            p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            p[6..8].copy_from_slice(&[0x40, 0]);
            fix_ipv4_checksum(p);
            let ihl = u16::from(p[0] & 0xf) * 4;
            offset_of(p[9]).map(|o| (ihl, o))
        }
        6 if len >= 40 && len - 40 <= 65_535 => {
            p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
            offset_of(p[6]).map(|o| (40, o))
        }
        _ => None,
    }
}

fn offset_of(protocol: u8) -> Option<u16> {
    match protocol {
        6 => Some(16),
        17 => Some(6),
        _ => None,
    }
}

fn fix_ipv4_checksum(p: &mut [u8]) {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return;
    }
    let ihl = (usize::from(p[0] & 0xf) * 4).clamp(20, p.len());
    p[10..12].fill(0);
    let mut sum = 0u32;
    for w in p[..ihl].chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}
