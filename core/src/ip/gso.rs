//! Splitting the super-packets a TUN device with offloads hands over into
//! packets of one frame each, and completing the checksums it leaves
//! partial.
//!
//! A Linux TUN device opened with `IFF_VNET_HDR`, whose reader has offered
//! checksum and segmentation offloads (`TUNSETOFFLOAD`), gives a local TCP
//! sender's data as one IP packet of up to 64 KiB (TSO), or a UDP sender's
//! `UDP_SEGMENT` train as one datagram (USO), and leaves the upper-layer
//! checksum for the reader to complete. Each super-packet comes with a
//! description ([`Offload`], read by the runtime from the device's
//! `virtio_net_hdr`): the kind of segmentation and the segment size. What
//! the kernel would have sent, had it segmented itself, is what
//! [`Segments`] writes, one segment at a time, into the caller's buffer:
//!
//! - every segment carries the super-packet's IP and TCP (or UDP) headers
//!   followed by the next `segment_size` bytes of its payload (the last
//!   segment what is left);
//! - IPv4: total length, an identification one more than the previous
//!   segment's (the first keeps the super-packet's), the header checksum;
//!   IPv6: payload length (extension headers between the fixed header and
//!   TCP or UDP are carried as they are);
//! - TCP: the sequence number advanced by the bytes before the segment,
//!   FIN and PSH only on the last segment, CWR only on the first (as
//!   Linux's own `tcp_gso_segment`), the checksum computed afresh;
//! - UDP: the length and the checksum (0 computed is sent as 0xffff).
//!
//! A packet without segmentation whose checksum is left partial is
//! completed in place by [`complete_checksum`].
//!
//! Nothing the kernel says is trusted: a description that does not match
//! the packet (another IP version or protocol, a checksum position that is
//! not the TCP or UDP header, lengths that disagree with the bytes, an IPv4
//! fragment) is an [`OffloadError`], never a panic. The checksums are the
//! ones' complement sums of RFC 1071, summed 32 bits at a time.

use core::fmt;

/// How a packet from the device is to be segmented (`gso_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Gso {
    /// Not segmented: one packet as it is.
    None,
    /// TCP over IPv4 (`VIRTIO_NET_HDR_GSO_TCPV4`).
    TcpV4,
    /// TCP over IPv6 (`VIRTIO_NET_HDR_GSO_TCPV6`).
    TcpV6,
    /// UDP over either IP version (`VIRTIO_NET_HDR_GSO_UDP_L4`).
    Udp,
}

/// What the device says of one packet it hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offload {
    /// The segmentation asked for.
    pub gso: Gso,
    /// The payload bytes in each segment but the last (`gso_size`).
    pub segment_size: u16,
    /// Where the checksum left partial starts, and where in that header the
    /// checksum field is (`csum_start`, `csum_offset`, when the flag
    /// `NEEDS_CSUM` is set).
    pub partial_checksum: Option<(u16, u16)>,
}

impl Offload {
    /// A packet that needs nothing done: no segmentation, checksums whole.
    pub const NONE: Offload = Offload {
        gso: Gso::None,
        segment_size: 0,
        partial_checksum: None,
    };
}

/// Why a packet from the device was refused. What the caller must do:
/// count it under [`OffloadError::as_str`] and drop the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum OffloadError {
    /// The description does not fit the packet: a truncated or
    /// inconsistent IP, TCP or UDP header, an IP length that is not the
    /// bytes given, a checksum position outside the packet or not that of
    /// the TCP or UDP checksum, a segment size of 0, an IPv4 fragment.
    Malformed,
    /// A segmentation this module does not do (`gso_type` unknown, or the
    /// ECN flag on UDP).
    Unsupported,
    /// The output buffer is shorter than the segment.
    BufferTooSmall,
}

impl OffloadError {
    /// A short stable name, for status output and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            OffloadError::Malformed => "offload_malformed",
            OffloadError::Unsupported => "offload_unsupported",
            OffloadError::BufferTooSmall => "offload_buffer_too_small",
        }
    }
}

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for OffloadError {}

pub(super) const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
pub(super) const TCP_CHECKSUM: usize = 16;
const UDP_CHECKSUM: usize = 6;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// A super-packet checked against its description, ready to be written
/// out one segment at a time ([`Segments::write`]), in any order.
#[derive(Debug, Clone, Copy)]
pub struct Segments<'a> {
    packet: &'a [u8],
    /// Where the TCP or UDP header starts.
    l4: usize,
    /// Where the payload starts: the headers every segment repeats.
    headers: usize,
    segment_size: usize,
    count: usize,
    v4: bool,
    tcp: bool,
}

impl<'a> Segments<'a> {
    /// Checks `packet` against `offload` (whose `gso` is not
    /// [`Gso::None`]: that is [`complete_checksum`]'s). The partial
    /// checksum must be present and be the TCP (or UDP) checksum; the TCP
    /// or UDP header starts where it says.
    pub fn new(packet: &'a [u8], offload: &Offload) -> Result<Segments<'a>, OffloadError> {
        let tcp = match offload.gso {
            Gso::TcpV4 | Gso::TcpV6 => true,
            Gso::Udp => false,
            Gso::None => return Err(OffloadError::Unsupported),
        };
        let Some((start, offset)) = offload.partial_checksum else {
            return Err(OffloadError::Malformed);
        };
        let l4 = usize::from(start);
        let v4 = ip_version(packet, l4)?;
        match offload.gso {
            Gso::TcpV4 if !v4 => return Err(OffloadError::Malformed),
            Gso::TcpV6 if v4 => return Err(OffloadError::Malformed),
            _ => {}
        }
        let protocol = if v4 {
            packet[9]
        } else {
            last_next_header(packet, l4)?
        };
        let (want_proto, want_offset) = if tcp {
            (PROTO_TCP, TCP_CHECKSUM)
        } else {
            (PROTO_UDP, UDP_CHECKSUM)
        };
        if protocol != want_proto || usize::from(offset) != want_offset {
            return Err(OffloadError::Malformed);
        }
        let l4_len = if tcp {
            let Some(&off) = packet.get(l4 + 12) else {
                return Err(OffloadError::Malformed);
            };
            usize::from(off >> 4) * 4
        } else {
            8
        };
        let headers = l4 + l4_len;
        if l4_len < 8 || (tcp && l4_len < 20) || headers > packet.len() {
            return Err(OffloadError::Malformed);
        }
        if !tcp && be16(packet, l4 + 4) != packet.len() - l4 {
            return Err(OffloadError::Malformed);
        }
        let segment_size = usize::from(offload.segment_size);
        if segment_size == 0 {
            return Err(OffloadError::Malformed);
        }
        let payload = packet.len() - headers;
        let count = payload.div_ceil(segment_size).max(1);
        // Every segment's lengths must fit their 16-bit fields; the
        // super-packet's do (checked above), so its segments' do too.
        Ok(Segments {
            packet,
            l4,
            headers,
            segment_size,
            count,
            v4,
            tcp,
        })
    }

    /// How many segments there are (at least one).
    pub fn count(&self) -> usize {
        self.count
    }

    /// The length of segment `index`, or `None` past the last.
    pub fn len(&self, index: usize) -> Option<usize> {
        self.payload(index).map(|p| self.headers + p.len())
    }

    /// Where segment `index`'s payload lies in the super-packet.
    fn payload(&self, index: usize) -> Option<core::ops::Range<usize>> {
        if index >= self.count {
            return None;
        }
        let start = self.headers + index * self.segment_size;
        let end = (start + self.segment_size).min(self.packet.len());
        Some(start..end)
    }

    /// Writes segment `index` at the start of `out` and returns its length.
    /// `index` past the last is [`OffloadError::Malformed`]; an `out`
    /// shorter than the segment is [`OffloadError::BufferTooSmall`] and
    /// leaves `out` as it may have been partly written.
    pub fn write(&self, index: usize, out: &mut [u8]) -> Result<usize, OffloadError> {
        let payload = self.payload(index).ok_or(OffloadError::Malformed)?;
        let len = self.headers + payload.len();
        let Some(out) = out.get_mut(..len) else {
            return Err(OffloadError::BufferTooSmall);
        };
        let (l4, headers) = (self.l4, self.headers);
        out[..headers].copy_from_slice(&self.packet[..headers]);
        out[headers..].copy_from_slice(&self.packet[payload]);
        let last = index + 1 == self.count;
        if self.v4 {
            put16(out, 2, len as u16);
            let id = (be16(out, 4) as u16).wrapping_add(index as u16);
            put16(out, 4, id);
            put16(out, 10, 0);
            let ihl = l4;
            let sum = !fold(sum32(0, &out[..ihl]));
            put16(out, 10, sum);
        } else {
            put16(out, 4, (len - 40) as u16);
        }
        let l4_len = len - l4;
        let checksum_at = if self.tcp {
            let seq = be32(out, l4 + 4).wrapping_add((index * self.segment_size) as u32);
            out[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            if !last {
                out[l4 + 13] &= !(TCP_FIN | TCP_PSH);
            }
            if index > 0 {
                out[l4 + 13] &= !TCP_CWR;
            }
            l4 + TCP_CHECKSUM
        } else {
            put16(out, l4 + 4, l4_len as u16);
            l4 + UDP_CHECKSUM
        };
        put16(out, checksum_at, 0);
        let proto = if self.tcp { PROTO_TCP } else { PROTO_UDP };
        let sum = sum32(pseudo_header(out, self.v4, proto, l4_len), &out[l4..]);
        let mut checksum = !fold(sum);
        if !self.tcp && checksum == 0 {
            checksum = 0xffff;
        }
        put16(out, checksum_at, checksum);
        Ok(len)
    }
}

/// Completes, in place, the checksum the device left partial in a packet it
/// did not segment: the ones' complement of the sum from `start` to the end
/// of the packet (which includes the pseudo-header sum the kernel left in
/// the field), written at `start + offset`. Only the TCP and UDP
/// checksums are completed (the only ones Linux leaves partial on a TUN
/// device); a UDP checksum that computes to 0 is written as 0xffff.
pub fn complete_checksum(packet: &mut [u8], start: u16, offset: u16) -> Result<(), OffloadError> {
    let (start, offset) = (usize::from(start), usize::from(offset));
    let v4 = ip_version(packet, start)?;
    let protocol = if v4 {
        packet[9]
    } else {
        last_next_header(packet, start)?
    };
    let udp = match (protocol, offset) {
        (PROTO_TCP, TCP_CHECKSUM) => false,
        (PROTO_UDP, UDP_CHECKSUM) => true,
        _ => return Err(OffloadError::Malformed),
    };
    let at = start + offset;
    if at + 2 > packet.len() {
        return Err(OffloadError::Malformed);
    }
    let mut checksum = !fold(sum32(0, &packet[start..]));
    if udp && checksum == 0 {
        checksum = 0xffff;
    }
    put16(packet, at, checksum);
    Ok(())
}

/// The IP version of `packet` (true for IPv4), checked to have a whole
/// header that ends at or before `l4`, and lengths that are the bytes
/// given: for IPv4 exactly `l4` header bytes, a total length equal to the
/// packet's, and no fragment; for IPv6 a payload length that is the rest.
fn ip_version(packet: &[u8], l4: usize) -> Result<bool, OffloadError> {
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= 20 => {
            let ihl = usize::from(packet[0] & 0xf) * 4;
            let fragment = be16(packet, 6) & 0x3fff != 0;
            if ihl < 20 || ihl != l4 || be16(packet, 2) != packet.len() || fragment {
                return Err(OffloadError::Malformed);
            }
            Ok(true)
        }
        Some(6) if packet.len() >= 40 => {
            if l4 < 40 || be16(packet, 4) + 40 != packet.len() || l4 > packet.len() {
                return Err(OffloadError::Malformed);
            }
            Ok(false)
        }
        _ => Err(OffloadError::Malformed),
    }
}

/// The upper-layer protocol of an IPv6 packet whose upper-layer header
/// starts at `l4`: the next header field of the last header before it,
/// found by walking the extension headers, which must end exactly there.
fn last_next_header(packet: &[u8], l4: usize) -> Result<u8, OffloadError> {
    let mut next = packet[6];
    let mut at = 40;
    while at < l4 {
        // Hop-by-Hop, Routing, Destination Options: 8 * (1 + length) bytes.
        // A Fragment header never comes with segmentation.
        if !matches!(next, 0 | 43 | 60) || at + 2 > packet.len() {
            return Err(OffloadError::Malformed);
        }
        next = packet[at];
        at += 8 * (1 + usize::from(packet[at + 1]));
    }
    if at != l4 {
        return Err(OffloadError::Malformed);
    }
    Ok(next)
}

/// The pseudo-header sum of a TCP or UDP checksum (RFC 793, RFC 8200
/// section 8.1): the addresses, the protocol and the upper-layer length.
pub(super) fn pseudo_header(packet: &[u8], v4: bool, protocol: u8, l4_len: usize) -> u32 {
    let addresses = if v4 { &packet[12..20] } else { &packet[8..40] };
    let sum = sum32(0, addresses) + u32::from(protocol);
    sum + (l4_len as u32 >> 16) + (l4_len as u32 & 0xffff)
}

/// `sum` plus the ones' complement sum of `data` as big-endian 16-bit words
/// (an odd last byte padded with zero), folded to 16 bits, not complemented.
/// Summed as 32-bit words into 64 bits, then folded (RFC 1071, section 2).
pub(super) fn sum32(sum: u32, data: &[u8]) -> u32 {
    let mut acc = u64::from(sum);
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u64::from(u32::from_be_bytes(tail));
    // 64 -> 32 -> 16 bits (the sum of any slice stays far below 2^64), so
    // that the caller may add a few more words without overflow.
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    u32::from(fold(acc as u32))
}

/// Folds a 32-bit sum to 16 bits, end-around carries included.
pub(super) fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

pub(super) fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

pub(super) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(super) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests;
