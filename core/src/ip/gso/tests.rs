use super::*;
use proptest::prelude::*;
use smoltcp::wire::{IpAddress, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};
use std::vec;
use std::vec::Vec;

const V4_SRC: [u8; 4] = [10, 8, 0, 2];
const V4_DST: [u8; 4] = [10, 9, 0, 1];
const V6_SRC: [u8; 16] = [0xfd, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const V6_DST: [u8; 16] = [0xfd, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// An upper-layer header: TCP (source port 40000, destination 80, `seq`,
/// ack 1, `flags`, window 0xffff, a made-up partial checksum) or UDP
/// (ports 40000 and 53, its length, a made-up partial checksum).
fn l4_header(tcp: bool, seq: u32, flags: u8, len: usize) -> Vec<u8> {
    if tcp {
        let mut h = vec![0x9c, 0x40, 0, 80];
        h.extend_from_slice(&seq.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0x12, 0x34, 0, 0]);
        h
    } else {
        let mut h = vec![0x9c, 0x40, 0, 53];
        h.extend_from_slice(&(len as u16).to_be_bytes());
        h.extend_from_slice(&[0x12, 0x34]);
        h
    }
}

/// An IP super-packet: `ext` (IPv6 extension header bytes, whose first
/// byte is the upper layer's protocol) between the IP header and `l4`.
fn packet(v4: bool, tcp: bool, ext: &[u8], seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let l4_len = if tcp { 20 } else { 8 } + payload.len();
    let mut p = Vec::new();
    let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
    if v4 {
        let total = (20 + l4_len) as u16;
        p.extend_from_slice(&[0x45, 0, 0, 0, 0xff, 0xff, 0x40, 0, 64, proto, 0, 0]);
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&V4_SRC);
        p.extend_from_slice(&V4_DST);
        Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
    } else {
        let payload_len = (ext.len() + l4_len) as u16;
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&payload_len.to_be_bytes());
        p.extend_from_slice(&[if ext.is_empty() { proto } else { 60 }, 64]);
        p.extend_from_slice(&V6_SRC);
        p.extend_from_slice(&V6_DST);
        p.extend_from_slice(ext);
    }
    p.extend_from_slice(&l4_header(tcp, seq, flags, l4_len));
    p.extend_from_slice(payload);
    p
}

fn offload(gso: Gso, size: u16, l4: usize, tcp: bool) -> Offload {
    Offload {
        gso,
        segment_size: size,
        partial_checksum: Some((l4 as u16, if tcp { 16 } else { 6 })),
    }
}

/// Each segment, written into a buffer of exactly its length.
fn all_segments(s: &Segments<'_>) -> Vec<Vec<u8>> {
    (0..s.count())
        .map(|i| {
            let mut out = vec![0u8; s.len(i).unwrap()];
            assert_eq!(s.write(i, &mut out), Ok(out.len()));
            out
        })
        .collect()
}

/// Checks every header field and checksum of `seg` with smoltcp (an
/// implementation apart from this module's) and returns (TCP sequence
/// number or 0, flags or 0, payload).
fn check_segment(seg: &[u8], v4: bool, tcp: bool, l4: usize) -> (u32, u8, Vec<u8>) {
    let (src, dst) = if v4 {
        let ip = Ipv4Packet::new_checked(seg).expect("IPv4 header");
        assert!(ip.verify_checksum(), "IPv4 header checksum");
        assert_eq!(usize::from(ip.total_len()), seg.len());
        (
            IpAddress::Ipv4(ip.src_addr()),
            IpAddress::Ipv4(ip.dst_addr()),
        )
    } else {
        let ip = Ipv6Packet::new_checked(seg).expect("IPv6 header");
        assert_eq!(usize::from(ip.payload_len()) + 40, seg.len());
        (
            IpAddress::Ipv6(ip.src_addr()),
            IpAddress::Ipv6(ip.dst_addr()),
        )
    };
    if tcp {
        let t = TcpPacket::new_checked(&seg[l4..]).expect("TCP header");
        assert!(t.verify_checksum(&src, &dst), "TCP checksum");
        (t.seq_number().0 as u32, seg[l4 + 13], t.payload().to_vec())
    } else {
        let u = UdpPacket::new_checked(&seg[l4..]).expect("UDP header");
        assert_eq!(usize::from(u.len()), seg.len() - l4);
        assert_ne!(u.checksum(), 0);
        assert!(u.verify_checksum(&src, &dst), "UDP checksum");
        (0, 0, u.payload().to_vec())
    }
}

/// Segments computed by hand (an independent script): IPv4, TCP, 10 bytes
/// in segments of 4, the sequence number wrapping past 2^32, the IPv4
/// identification past 0xffff, FIN and PSH only on the last.
#[test]
fn golden_ipv4_tcp_segments() {
    let super_packet = packet(true, true, &[], 0xffff_fffe, 0x19, b"abcdefghij");
    let s = Segments::new(&super_packet, &offload(Gso::TcpV4, 4, 20, true)).unwrap();
    assert_eq!(s.count(), 3);
    let golden: [&[u8]; 3] = [
        &[
            0x45, 0x00, 0x00, 0x2c, 0xff, 0xff, 0x40, 0x00, 0x40, 0x06, 0x26, 0xb9, 0x0a, 0x08,
            0x00, 0x02, 0x0a, 0x09, 0x00, 0x01, 0x9c, 0x40, 0x00, 0x50, 0xff, 0xff, 0xff, 0xfe,
            0x00, 0x00, 0x00, 0x01, 0x50, 0x10, 0xff, 0xff, 0x3a, 0x66, 0x00, 0x00, 0x61, 0x62,
            0x63, 0x64,
        ],
        &[
            0x45, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x26, 0xb9, 0x0a, 0x08,
            0x00, 0x02, 0x0a, 0x09, 0x00, 0x01, 0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x02,
            0x00, 0x00, 0x00, 0x01, 0x50, 0x10, 0xff, 0xff, 0x32, 0x5b, 0x00, 0x00, 0x65, 0x66,
            0x67, 0x68,
        ],
        &[
            0x45, 0x00, 0x00, 0x2a, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0x26, 0xba, 0x0a, 0x08,
            0x00, 0x02, 0x0a, 0x09, 0x00, 0x01, 0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x06,
            0x00, 0x00, 0x00, 0x01, 0x50, 0x19, 0xff, 0xff, 0x95, 0xb4, 0x00, 0x00, 0x69, 0x6a,
        ],
    ];
    for (i, seg) in all_segments(&s).iter().enumerate() {
        assert_eq!(&seg[..], golden[i], "segment {i}");
        check_segment(seg, true, true, 20);
    }
}

#[test]
fn ipv6_tcp_segments_odd_last_and_cwr_only_first() {
    let payload: Vec<u8> = (0..3001u32).map(|i| i as u8).collect();
    // CWR, PSH, ACK.
    let p = packet(false, true, &[], 1000, 0x98, &payload);
    let s = Segments::new(&p, &offload(Gso::TcpV6, 1000, 40, true)).unwrap();
    assert_eq!(s.count(), 4);
    assert_eq!(s.len(3), Some(40 + 20 + 1));
    assert_eq!(s.len(4), None);
    let segs = all_segments(&s);
    let mut got = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        let (seq, flags, data) = check_segment(seg, false, true, 40);
        assert_eq!(seq, 1000 + 1000 * i as u32);
        let want = match i {
            0 => 0x90,
            3 => 0x18,
            _ => 0x10,
        };
        assert_eq!(flags, want, "segment {i}");
        got.extend_from_slice(&data);
    }
    assert_eq!(got, payload);
}

#[test]
fn ipv6_extension_headers_are_carried() {
    // A Destination Options header of 8 bytes (PadN), next header TCP.
    let ext = [PROTO_TCP, 0, 1, 4, 0, 0, 0, 0];
    let p = packet(false, true, &ext, 7, 0x10, &[5u8; 25]);
    let s = Segments::new(&p, &offload(Gso::TcpV6, 10, 48, true)).unwrap();
    let segs = all_segments(&s);
    assert_eq!(segs.len(), 3);
    for seg in &segs {
        assert_eq!(&seg[40..48], &ext);
        check_segment(seg, false, true, 48);
    }
    // The checksum position must be where the extension headers end.
    assert_eq!(
        Segments::new(&p, &offload(Gso::TcpV6, 10, 40, true)).err(),
        Some(OffloadError::Malformed)
    );
}

#[test]
fn udp_segments_both_versions() {
    for v4 in [true, false] {
        let l4 = if v4 { 20 } else { 40 };
        let payload: Vec<u8> = (0..250u32).map(|i| (i * 7) as u8).collect();
        let p = packet(v4, false, &[], 0, 0, &payload);
        let s = Segments::new(&p, &offload(Gso::Udp, 100, l4, false)).unwrap();
        let segs = all_segments(&s);
        assert_eq!(segs.len(), 3);
        let mut got = Vec::new();
        for seg in &segs {
            got.extend(check_segment(seg, v4, false, l4).2);
        }
        assert_eq!(got, payload);
        if v4 {
            let ids: Vec<_> = segs.iter().map(|s| [s[4], s[5]]).collect();
            assert_eq!(ids, [[0xff, 0xff], [0, 0], [0, 1]]);
        }
    }
}

#[test]
fn complete_checksum_of_unsegmented_packets() {
    for (v4, tcp) in [(true, true), (true, false), (false, true), (false, false)] {
        let l4 = if v4 { 20 } else { 40 };
        let mut p = packet(v4, tcp, &[], 99, 0x18, b"hello, partial checksum");
        let at = l4 + if tcp { 16 } else { 6 };
        // What Linux leaves in the field: the pseudo-header sum, folded,
        // not complemented.
        let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
        let partial = fold(pseudo_header(&p, v4, proto, p.len() - l4));
        p[at..at + 2].copy_from_slice(&partial.to_be_bytes());
        let (start, offset) = (l4 as u16, (at - l4) as u16);
        assert_eq!(complete_checksum(&mut p, start, offset), Ok(()));
        check_segment(&p, v4, tcp, l4);
    }
}

#[test]
fn refuses_what_does_not_fit() {
    let p = packet(true, true, &[], 1, 0x10, &[0u8; 100]);
    let tcp4 = offload(Gso::TcpV4, 40, 20, true);
    let cases: [(&[u8], Offload, OffloadError); 8] = [
        (
            &p,
            Offload {
                segment_size: 0,
                ..tcp4
            },
            OffloadError::Malformed,
        ),
        (
            &p,
            Offload {
                gso: Gso::TcpV6,
                ..tcp4
            },
            OffloadError::Malformed,
        ),
        (
            &p,
            Offload {
                gso: Gso::Udp,
                ..tcp4
            },
            OffloadError::Malformed,
        ),
        (
            &p,
            Offload {
                gso: Gso::None,
                ..tcp4
            },
            OffloadError::Unsupported,
        ),
        (
            &p,
            Offload {
                partial_checksum: None,
                ..tcp4
            },
            OffloadError::Malformed,
        ),
        (
            &p,
            Offload {
                partial_checksum: Some((20, 6)),
                ..tcp4
            },
            OffloadError::Malformed,
        ),
        (
            &p,
            Offload {
                partial_checksum: Some((24, 16)),
                ..tcp4
            },
            OffloadError::Malformed,
        ),
        // Cut short: the total length says more.
        (&p[..p.len() - 1], tcp4, OffloadError::Malformed),
    ];
    for (i, (packet, o, want)) in cases.iter().enumerate() {
        assert_eq!(Segments::new(packet, o).err(), Some(*want), "case {i}");
    }
    // A fragment.
    let mut frag = p.clone();
    frag[6] = 0x20;
    Ipv4Packet::new_unchecked(&mut frag[..]).fill_checksum();
    assert_eq!(
        Segments::new(&frag, &tcp4).err(),
        Some(OffloadError::Malformed)
    );
    // A TCP data offset past the end.
    let mut doff = packet(true, true, &[], 1, 0x10, &[]);
    doff[32] = 0xf0;
    assert_eq!(
        Segments::new(&doff, &tcp4).err(),
        Some(OffloadError::Malformed)
    );
    // Too small a buffer, and an index past the last.
    let s = Segments::new(&p, &tcp4).unwrap();
    let mut small = [0u8; 50];
    assert_eq!(s.write(0, &mut small), Err(OffloadError::BufferTooSmall));
    let mut big = [0u8; 2000];
    assert_eq!(s.write(3, &mut big), Err(OffloadError::Malformed));
    assert_eq!(
        complete_checksum(&mut frag.clone(), 20, 16),
        Err(OffloadError::Malformed)
    );
    assert_eq!(
        complete_checksum(&mut p.clone(), 20, 10),
        Err(OffloadError::Malformed)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Segmenting and putting the segments back together in sequence
    /// order gives the payload back; every segment's headers and checksums
    /// are right, and FIN/PSH are on the last segment only.
    #[test]
    fn segments_reassemble_to_the_payload(
        v4 in any::<bool>(),
        tcp in any::<bool>(),
        seq in any::<u32>(),
        flags in any::<u8>(),
        size in 1u16..1500,
        payload in proptest::collection::vec(any::<u8>(), 0..9000),
    ) {
        let l4 = if v4 { 20 } else { 40 };
        let p = packet(v4, tcp, &[], seq, flags, &payload);
        let gso = match (tcp, v4) {
            (true, true) => Gso::TcpV4,
            (true, false) => Gso::TcpV6,
            _ => Gso::Udp,
        };
        let s = Segments::new(&p, &offload(gso, size, l4, tcp)).unwrap();
        let segs = all_segments(&s);
        prop_assert_eq!(segs.len(), payload.len().div_ceil(usize::from(size)).max(1));
        let mut got = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            let (sq, fl, data) = check_segment(seg, v4, tcp, l4);
            prop_assert!(data.len() <= usize::from(size));
            if tcp {
                prop_assert_eq!(sq, seq.wrapping_add(got.len() as u32));
                let last = i + 1 == segs.len();
                let mut want = flags;
                if !last { want &= !(TCP_FIN | TCP_PSH); }
                if i > 0 { want &= !TCP_CWR; }
                prop_assert_eq!(fl, want);
            }
            got.extend_from_slice(&data);
        }
        prop_assert_eq!(got, payload);
    }

    /// Any bytes under any description: an error or segments that fit
    /// their lengths, never a panic.
    #[test]
    fn arbitrary_input_never_panics(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        kind in 0u8..4,
        size in any::<u16>(),
        start in any::<u16>(),
        offset in any::<u16>(),
    ) {
        let gso = [Gso::None, Gso::TcpV4, Gso::TcpV6, Gso::Udp][usize::from(kind)];
        let o = Offload { gso, segment_size: size, partial_checksum: Some((start, offset)) };
        if let Ok(s) = Segments::new(&data, &o) {
            let mut out = vec![0u8; 400];
            for i in 0..s.count() {
                prop_assert_eq!(s.write(i, &mut out), Ok(s.len(i).unwrap()));
            }
        }
        let mut d = data.clone();
        let _ = complete_checksum(&mut d, start, offset);
    }
}
