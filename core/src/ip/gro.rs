//! Coalescing consecutive TCP segments of one flow into one super-packet,
//! for a TUN device with offloads to take in a single write: the reverse of
//! [`super::gso`], as the kernel's own GRO does for a network card.
//!
//! The tunnel hands the runtime one packet at a time; [`Coalescer::push`]
//! holds a TCP segment in the caller's buffer and appends the payloads of
//! the segments that follow it in the same flow, while they continue it
//! exactly: every IP and TCP header field the same (TTL, traffic class,
//! addresses, ports, acknowledgement number, window, options) except the
//! lengths, the checksums, the sequence number (the previous one plus its
//! payload) and the IPv4 identification (the previous one plus one); flags
//! ACK, the last one PSH too; each payload no longer than the first, a
//! shorter one or PSH ending the super-packet. [`Coalescer::take`] then
//! hands over what it holds with the [`Offload`] the device needs to split
//! it back into those same segments ([`super::gso::Segments`] gives them
//! back byte for byte, which the tests check): the IP length and IPv4
//! header checksum of the whole, the TCP checksum left partial (the
//! pseudo-header sum, as Linux expects with `NEEDS_CSUM`). A held segment
//! that nothing joined is handed over as it came, with [`Offload::NONE`].
//!
//! Only segments whose TCP and IPv4 header checksums are right are
//! coalesced (a wrong one would be hidden by the checksums of the whole):
//! any other packet
//! is [`Push::Alone`], for the caller to write as it is. IPv6 packets with
//! extension headers and IPv4 fragments are left alone too.

use super::gso::{
    be16, be32, fold, pseudo_header, put16, sum32, Gso, Offload, PROTO_TCP, TCP_CHECKSUM,
};

/// What [`Coalescer::push`] did with a packet, and what the caller must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Push {
    /// The coalescer holds it (alone or appended): nothing to do now.
    Held,
    /// It does not continue the held super-packet: [`Coalescer::take`] and
    /// write that first, then push this packet again.
    TakeFirst,
    /// It can never be coalesced (not a TCP data segment, a wrong checksum,
    /// too big for the buffer): take and write the held super-packet if
    /// any, then write this packet as it is.
    Alone,
}

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// The super-packet being built in the buffer.
#[derive(Debug, Clone, Copy)]
struct Held {
    v4: bool,
    /// Where TCP starts, and where the payload starts.
    l4: usize,
    headers: usize,
    /// The first segment's payload length.
    segment_size: usize,
    segments: usize,
    next_seq: u32,
    next_id: u16,
    /// A short segment or PSH came: nothing more joins.
    closed: bool,
}

/// A TCP data segment's layout, as [`Coalescer::push`] read it.
#[derive(Debug, Clone, Copy)]
struct Segment {
    v4: bool,
    l4: usize,
    headers: usize,
    seq: u32,
    id: u16,
    flags: u8,
}

/// Coalesces TCP segments into the buffer `B` (65,535 bytes hold the
/// largest super-packet); see the [module docs](self). Methods: commands
/// [`push`](Coalescer::push) and [`take`](Coalescer::take), getter
/// [`is_empty`](Coalescer::is_empty).
#[derive(Debug)]
pub struct Coalescer<B> {
    buf: B,
    len: usize,
    held: Option<Held>,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Coalescer<B> {
    /// An empty coalescer over `buf`.
    pub const fn new(buf: B) -> Coalescer<B> {
        Coalescer {
            buf,
            len: 0,
            held: None,
        }
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_none()
    }

    /// Offers `packet`, an IP packet to be written to the device; see
    /// [`Push`] for what the caller must do next.
    pub fn push(&mut self, packet: &[u8]) -> Push {
        let Some(seg) = tcp_segment(packet) else {
            return Push::Alone;
        };
        let payload = packet.len() - seg.headers;
        let room = self.buf.as_ref().len().min(usize::from(u16::MAX));
        let Some(held) = self.held else {
            if packet.len() > room {
                return Push::Alone;
            }
            self.buf.as_mut()[..packet.len()].copy_from_slice(packet);
            self.len = packet.len();
            self.held = Some(Held {
                v4: seg.v4,
                l4: seg.l4,
                headers: seg.headers,
                segment_size: payload,
                segments: 1,
                next_seq: seg.seq.wrapping_add(payload as u32),
                next_id: seg.id.wrapping_add(1),
                closed: seg.flags & TCP_PSH != 0,
            });
            return Push::Held;
        };
        // The IPv6 payload length counts everything after the fixed header.
        let limit = if held.v4 { room } else { room + 40 };
        let first = &self.buf.as_ref()[..held.headers];
        let joins = !held.closed
            && seg.v4 == held.v4
            && seg.headers == held.headers
            && seg.seq == held.next_seq
            && (!seg.v4 || seg.id == held.next_id)
            && payload <= held.segment_size
            && self.len + payload <= limit.min(self.buf.as_ref().len())
            && same_headers(first, &packet[..seg.headers], seg.v4, seg.l4);
        if !joins {
            return Push::TakeFirst;
        }
        let end = self.len + payload;
        self.buf.as_mut()[self.len..end].copy_from_slice(&packet[seg.headers..]);
        self.len = end;
        if seg.flags & TCP_PSH != 0 {
            self.buf.as_mut()[held.l4 + 13] |= TCP_PSH;
        }
        self.held = Some(Held {
            segments: held.segments + 1,
            next_seq: held.next_seq.wrapping_add(payload as u32),
            next_id: held.next_id.wrapping_add(1),
            closed: payload < held.segment_size || seg.flags & TCP_PSH != 0,
            ..held
        });
        Push::Held
    }

    /// Hands over the held super-packet and how the device is to split it
    /// ([`Offload::NONE`] for a segment nothing joined, as it came); `None`
    /// if nothing is held. The coalescer is empty afterwards.
    pub fn take(&mut self) -> Option<(Offload, &[u8])> {
        let held = self.held.take()?;
        let len = self.len;
        let buf = &mut self.buf.as_mut()[..len];
        if held.segments == 1 {
            return Some((Offload::NONE, &self.buf.as_ref()[..len]));
        }
        if held.v4 {
            put16(buf, 2, len as u16);
            put16(buf, 10, 0);
            let sum = !fold(sum32(0, &buf[..held.l4]));
            put16(buf, 10, sum);
        } else {
            put16(buf, 4, (len - 40) as u16);
        }
        let partial = fold(pseudo_header(buf, held.v4, PROTO_TCP, len - held.l4));
        put16(buf, held.l4 + TCP_CHECKSUM, partial);
        let offload = Offload {
            gso: if held.v4 { Gso::TcpV4 } else { Gso::TcpV6 },
            segment_size: held.segment_size as u16,
            partial_checksum: Some((held.l4 as u16, TCP_CHECKSUM as u16)),
        };
        Some((offload, &self.buf.as_ref()[..len]))
    }
}

/// Reads `packet` as a TCP data segment that may be coalesced: IPv4 (not a
/// fragment, total length the bytes given) or IPv6 without extension
/// headers (payload length the rest), TCP flags ACK or ACK and PSH, some
/// payload, a right TCP checksum.
fn tcp_segment(packet: &[u8]) -> Option<Segment> {
    let (v4, l4, id) = match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let ihl = usize::from(packet[0] & 0xf) * 4;
            let fragment = be16(packet, 6) & 0x3fff != 0;
            if ihl < 20 || be16(packet, 2) != packet.len() || fragment || packet[9] != PROTO_TCP {
                return None;
            }
            (true, ihl, be16(packet, 4) as u16)
        }
        6 if packet.len() >= 40 => {
            if be16(packet, 4) + 40 != packet.len() || packet[6] != PROTO_TCP {
                return None;
            }
            (false, 40, 0)
        }
        _ => return None,
    };
    let off = usize::from(*packet.get(l4 + 12)? >> 4) * 4;
    let headers = l4 + off;
    if off < 20 || headers >= packet.len() {
        return None;
    }
    let flags = packet[l4 + 13];
    // 0xffff is a zero checksum no sender computes (RFC 1624 section 3):
    // split again, the segment would carry 0 instead.
    if flags & !TCP_PSH != TCP_ACK || be16(packet, l4 + TCP_CHECKSUM) == 0xffff {
        return None;
    }
    // The IPv4 header checksum, which the whole's replaces.
    if v4 && fold(sum32(0, &packet[..l4])) != 0xffff {
        return None;
    }
    let sum = sum32(
        pseudo_header(packet, v4, PROTO_TCP, packet.len() - l4),
        &packet[l4..],
    );
    if fold(sum) != 0xffff {
        return None;
    }
    Some(Segment {
        v4,
        l4,
        headers,
        seq: be32(packet, l4 + 4),
        id,
        flags,
    })
}

/// Whether the headers `a` and `b` (of equal length) are the same but for
/// the fields each segment has its own: IP lengths, identification and
/// header checksum, TCP sequence number, PSH and checksum.
fn same_headers(a: &[u8], b: &[u8], v4: bool, l4: usize) -> bool {
    let ip_same = if v4 {
        a[..2] == b[..2] && a[6..10] == b[6..10] && a[12..l4] == b[12..l4]
    } else {
        a[..4] == b[..4] && a[6..40] == b[6..40]
    };
    let (ta, tb) = (&a[l4..], &b[l4..]);
    ip_same
        && ta[..4] == tb[..4]
        && ta[8..13] == tb[8..13]
        && (ta[13] | TCP_PSH) == (tb[13] | TCP_PSH)
        && ta[14..16] == tb[14..16]
        && ta[18..] == tb[18..]
}

#[cfg(test)]
mod tests;
