//! The service header at the start of every non-empty data frame plaintext.
//!
//! ```text
//! byte 0:  C C A A E S S S   (bit 7 .. bit 0)
//!
//! then, in order, each present only if its bits say so:
//! +------------+----------------+---------------------------+------------------+
//! | service id | channel number | destination address, port | customer payload |
//! | 1 if SSS=7 | CC: 0/1/2/4    | AA: 0, 4+2 or 16+2        | ...              |
//! +------------+----------------+---------------------------+------------------+
//! ```
//!
//! | bits | name | meaning |
//! |------|------|---------|
//! | 7..6 | `CC` | channel number length: `00` none, `01` 1 byte, `10` 2 bytes, `11` 4 bytes |
//! | 5..4 | `AA` | destination: `00` none, `01` IPv4 address + port (6 bytes), `10` IPv6 address + port (18 bytes), `11` none, and the `CC` number is a push sequence number (see below) |
//! | 3    | `E`  | 1 if the sender holds the entry half of the service, 0 if the exit half |
//! | 2..0 | `SSS`| service id 0..=6; 7 means the id is in the next byte (7..=255) |
//!
//! The channel number, the address and the port are big-endian (network
//! order).
//!
//! # Push frames
//!
//! A push service has no channels: its frames set `AA` = `11` and carry a
//! sequence number ([`ServiceHeaderRepr::sequence`]) where a channel number
//! would be, in 1, 2 or 4 bytes as `CC` says. So a push frame can never be
//! taken for a forward one: a frame of the wrong mode is a mode mismatch.
//!
//! - entry to exit (`E` = 1): the datagram's sequence number, 0 for the
//!   entry's first datagram after it starts, +1 per datagram, wrapping at
//!   2^32; the customer payload follows;
//! - exit to entry (`E` = 0), no payload: an acknowledgement, the lowest
//!   sequence number the exit is still missing (it holds every earlier
//!   one).
//!
//! ```text
//! push datagram 300 of service 2:   0xba 0x01 0x2c <payload>
//!                                   CC=10 AA=11 E=1 SSS=2, number 300
//! acknowledgement up to 300:        0xb2 0x01 0x2c
//! ```
//!
//! See `node::push` for how the numbers are tracked.
//!
//! # L3 router frames
//!
//! A router service with an L3 exit (`exit = "tun"` on both halves) sends
//! whole IP packets: its frames have no channel number and no destination
//! (`CC` = `00`, `AA` = `00`), the layout of a direct service's frame, and
//! the customer payload is one IP packet, IPv4 or IPv6, as read from the
//! TUN device. Which of the two a router frame is follows from the
//! service's configuration, which both halves must share: a socket router
//! frame always has a channel number, so a half configured for the other
//! exit counts every frame as a mode mismatch.
//!
//! ```text
//! L3 packet of service 6, entry to exit:   0x0e <IPv4 or IPv6 packet>
//!                                          CC=00 AA=00 E=1 SSS=6
//! and back, exit to entry:                 0x06 <IPv4 or IPv6 packet>
//! ```
//!
//! # Canonical encoding
//!
//! Every header has exactly one encoding, and [`ServiceHeaderRepr::parse`]
//! rejects any other as [`WireError::Malformed`]:
//!
//! - a service id 0..=6 is inline in `SSS`; an escaped id byte must be ≥ 7;
//! - a channel number takes the shortest of 1, 2 or 4 bytes that holds it
//!   (0..=255 in 1 byte, 256..=65535 in 2, larger in 4);
//! - `AA` = `11` needs `CC` ≠ `00` (a push frame always has its number).
//!
//! So parsing and emitting are inverse bijections between headers and the
//! byte strings accepted.
//!
//! # Cost
//!
//! A direct service (id 0..=6, no channel, no destination) costs 1 byte.
//! With the data frame's 29 bytes ([`DataPacket::OVERHEAD`]) a frame of a
//! direct service adds 30 bytes to its customer payload. The longest header
//! is [`ServiceHeaderRepr::MAX_LEN`] = 24 bytes: escaped id, 4-byte channel,
//! IPv6 destination.
//!
//! [`DataPacket::OVERHEAD`]: super::DataPacket::OVERHEAD

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::WireError;

/// A service's id on the wire, 0..=255: what both halves of the service
/// configure alike and what every frame of the service carries in its
/// header. It never changes while the service runs.
///
/// Not the service's position in the node's list
/// ([`ServiceIndex`](crate::channel::ServiceIndex)), which a reload may
/// shift: the two are distinct types so that one is never passed for the
/// other. A `ServiceId` is made from a number only where the number is an
/// id: a parsed configuration ([`ServiceId::new`]) or a frame's header
/// ([`ServiceHeaderRepr::parse`]).
///
/// It prints, with `Display` and `Debug` alike, as the plain number (`3`),
/// so logs, status output and snapshots show the id as configured.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(u8);

impl ServiceId {
    /// The service configured with id `id`.
    pub const fn new(id: u8) -> ServiceId {
        ServiceId(id)
    }

    /// The id as a number, as configured and as on the wire.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The id as a position in a table with an entry for each of the 256
    /// ids (the node's id-to-index map and its reported-unknown bits).
    pub(crate) const fn slot(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Bits of the flags byte, byte 0.
mod flags {
    pub const CHANNEL_SHIFT: u32 = 6;
    pub const CHANNEL_MASK: u8 = 0b1100_0000;
    pub const DESTINATION_SHIFT: u32 = 4;
    pub const DESTINATION_MASK: u8 = 0b0011_0000;
    pub const FROM_ENTRY: u8 = 0b0000_1000;
    pub const SERVICE_MASK: u8 = 0b0000_0111;
    /// `SSS` value meaning "the service id is in the next byte".
    pub const SERVICE_ESCAPE: u8 = 7;

    pub const CHANNEL_NONE: u8 = 0b00;
    pub const CHANNEL_1: u8 = 0b01;
    pub const CHANNEL_2: u8 = 0b10;
    pub const CHANNEL_4: u8 = 0b11;

    pub const DESTINATION_NONE: u8 = 0b00;
    pub const DESTINATION_V4: u8 = 0b01;
    pub const DESTINATION_V6: u8 = 0b10;
    /// No destination: the number in `CC` is a push sequence number.
    pub const DESTINATION_PUSH: u8 = 0b11;
}

/// Length of an IPv4 destination: address and port.
const V4_DESTINATION_LEN: usize = 4 + 2;
/// Length of an IPv6 destination: address and port.
const V6_DESTINATION_LEN: usize = 16 + 2;

/// The parsed service header of a data frame plaintext; see the
/// [module docs](self) for the layout.
///
/// An empty plaintext is a keepalive and has no service header: callers
/// check for that before calling [`ServiceHeaderRepr::parse`], which rejects
/// an empty buffer as [`WireError::Truncated`].
///
/// For an IPv6 destination only the address and the port travel: the
/// `flowinfo` and `scope_id` of a [`SocketAddrV6`] are not encoded, and
/// parse as 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceHeaderRepr {
    /// The service id.
    pub service: ServiceId,
    /// `true` if the sender holds the entry half of the service, `false` if
    /// it holds the exit half.
    pub from_entry: bool,
    /// The channel number, if the service multiplexes channels.
    pub channel: Option<u32>,
    /// The destination address and port, if the frame names one.
    pub destination: Option<SocketAddr>,
    /// A push frame's sequence number (entry to exit) or acknowledgement
    /// (exit to entry). A header has at most one of `channel`,
    /// `sequence`; a sequence excludes a destination.
    pub sequence: Option<u32>,
}

impl ServiceHeaderRepr {
    /// The shortest header: a direct service, 1 byte.
    pub const MIN_LEN: usize = 1;
    /// The longest header: flags, escaped service id, 4-byte channel number
    /// and IPv6 destination, 1 + 1 + 4 + 18 = 24 bytes.
    pub const MAX_LEN: usize = 1 + 1 + 4 + V6_DESTINATION_LEN;
    /// The largest service id held inline in the flags byte.
    pub const MAX_INLINE_SERVICE: u8 = flags::SERVICE_ESCAPE - 1;

    /// Reads the service header at the start of `plaintext`.
    ///
    /// Returns the header and its length; the customer payload is
    /// `&plaintext[len..]`. Errors: [`WireError::Truncated`] if `plaintext`
    /// ends inside the header (or is empty), [`WireError::Malformed`] for
    /// `AA` = `11` and for non-canonical encodings.
    pub fn parse(plaintext: &[u8]) -> Result<(ServiceHeaderRepr, usize), WireError> {
        let mut reader = Reader {
            data: plaintext,
            pos: 0,
        };
        let [flag_byte] = reader.take::<1>()?;
        let channel_code = (flag_byte & flags::CHANNEL_MASK) >> flags::CHANNEL_SHIFT;
        let destination_code = (flag_byte & flags::DESTINATION_MASK) >> flags::DESTINATION_SHIFT;
        let is_push = destination_code == flags::DESTINATION_PUSH;
        if is_push && channel_code == flags::CHANNEL_NONE {
            return Err(WireError::Malformed);
        }
        let from_entry = flag_byte & flags::FROM_ENTRY != 0;

        let service = match flag_byte & flags::SERVICE_MASK {
            flags::SERVICE_ESCAPE => {
                let [id] = reader.take::<1>()?;
                if id < flags::SERVICE_ESCAPE {
                    return Err(WireError::Malformed);
                }
                ServiceId(id)
            }
            inline => ServiceId(inline),
        };

        let channel = match channel_code {
            flags::CHANNEL_NONE => None,
            flags::CHANNEL_1 => Some(u32::from(u8::from_be_bytes(reader.take()?))),
            _ => {
                let value = if channel_code == flags::CHANNEL_2 {
                    u32::from(u16::from_be_bytes(reader.take()?))
                } else {
                    u32::from_be_bytes(reader.take()?)
                };
                if channel_code_for(value) != channel_code {
                    return Err(WireError::Malformed);
                }
                Some(value)
            }
        };

        let (channel, sequence) = if is_push {
            (None, channel)
        } else {
            (channel, None)
        };
        let destination = match destination_code {
            flags::DESTINATION_NONE | flags::DESTINATION_PUSH => None,
            flags::DESTINATION_V4 => {
                let ip = Ipv4Addr::from(reader.take::<4>()?);
                let port = u16::from_be_bytes(reader.take()?);
                Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
            }
            _ => {
                let ip = Ipv6Addr::from(reader.take::<16>()?);
                let port = u16::from_be_bytes(reader.take()?);
                Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)))
            }
        };

        let repr = ServiceHeaderRepr {
            service,
            from_entry,
            channel,
            destination,
            sequence,
        };
        Ok((repr, reader.pos))
    }

    /// The length of the emitted header, 1..=[`Self::MAX_LEN`] bytes.
    pub const fn buffer_len(&self) -> usize {
        let service_len = if self.service.0 > Self::MAX_INLINE_SERVICE {
            1
        } else {
            0
        };
        let channel_len = match (self.channel, self.sequence) {
            (Some(value), _) | (None, Some(value)) => channel_len(channel_code_for(value)),
            (None, None) => 0,
        };
        let destination_len = match self.destination {
            None => 0,
            Some(SocketAddr::V4(_)) => V4_DESTINATION_LEN,
            Some(SocketAddr::V6(_)) => V6_DESTINATION_LEN,
        };
        1 + service_len + channel_len + destination_len
    }

    /// Writes the header at the start of `buf` and returns its length,
    /// [`Self::buffer_len`]. The customer payload goes right after.
    ///
    /// If `buf` is shorter than [`Self::buffer_len`] this writes nothing and
    /// returns [`WireError::BufferTooSmall`].
    /// A `sequence` with a `channel` or a `destination` has no encoding:
    /// [`WireError::Malformed`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let len = self.buffer_len();
        if self.sequence.is_some() && (self.channel.is_some() || self.destination.is_some()) {
            return Err(WireError::Malformed);
        }
        let out = buf.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
        let mut writer = Writer { data: out, pos: 0 };

        let number = self.channel.or(self.sequence);
        let channel_code = match number {
            None => flags::CHANNEL_NONE,
            Some(value) => channel_code_for(value),
        };
        let destination_code = match (self.destination, self.sequence) {
            (_, Some(_)) => flags::DESTINATION_PUSH,
            (None, None) => flags::DESTINATION_NONE,
            (Some(SocketAddr::V4(_)), None) => flags::DESTINATION_V4,
            (Some(SocketAddr::V6(_)), None) => flags::DESTINATION_V6,
        };
        let inline_service = if self.service.0 > Self::MAX_INLINE_SERVICE {
            flags::SERVICE_ESCAPE
        } else {
            self.service.0
        };
        let mut flag_byte = (channel_code << flags::CHANNEL_SHIFT)
            | (destination_code << flags::DESTINATION_SHIFT)
            | inline_service;
        if self.from_entry {
            flag_byte |= flags::FROM_ENTRY;
        }
        writer.put(&[flag_byte])?;

        if inline_service == flags::SERVICE_ESCAPE {
            writer.put(&[self.service.0])?;
        }

        if let Some(value) = number {
            let bytes = value.to_be_bytes();
            // The low `channel_len` bytes of the big-endian value; the
            // canonical code guarantees the dropped high bytes are zero.
            let skip = bytes.len() - channel_len(channel_code);
            writer.put(bytes.get(skip..).ok_or(WireError::BufferTooSmall)?)?;
        }

        match self.destination {
            None => {}
            Some(SocketAddr::V4(addr)) => {
                writer.put(&addr.ip().octets())?;
                writer.put(&addr.port().to_be_bytes())?;
            }
            Some(SocketAddr::V6(addr)) => {
                writer.put(&addr.ip().octets())?;
                writer.put(&addr.port().to_be_bytes())?;
            }
        }

        Ok(writer.pos)
    }
}

/// The canonical `CC` code for channel number `value`.
const fn channel_code_for(value: u32) -> u8 {
    if value <= 0xff {
        flags::CHANNEL_1
    } else if value <= 0xffff {
        flags::CHANNEL_2
    } else {
        flags::CHANNEL_4
    }
}

/// The number of channel bytes `CC` code `code` stands for.
const fn channel_len(code: u8) -> usize {
    match code {
        flags::CHANNEL_NONE => 0,
        flags::CHANNEL_1 => 1,
        flags::CHANNEL_2 => 2,
        _ => 4,
    }
}

/// A cursor over the bytes being parsed; never reads out of bounds.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    /// The next `N` bytes, or [`WireError::Truncated`].
    fn take<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self
            .data
            .get(self.pos..)
            .and_then(<[u8]>::first_chunk::<N>)
            .ok_or(WireError::Truncated)?;
        self.pos += N;
        Ok(*bytes)
    }
}

/// A cursor over the bytes being emitted; never writes out of bounds.
struct Writer<'a> {
    data: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    /// Appends `bytes`, or fails with [`WireError::BufferTooSmall`].
    fn put(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let end = self.pos + bytes.len();
        self.data
            .get_mut(self.pos..end)
            .ok_or(WireError::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }
}

#[cfg(test)]
// Flag bytes are written grouped as their fields: 0bCC_AA_E_SSS.
#[allow(clippy::unusual_byte_groupings)]
mod tests {
    use super::*;
    use crate::wire::{DataPacket, DataRepr};
    use proptest::prelude::*;

    const DOC_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DOC_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

    fn v4(ip: Ipv4Addr, port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
    }

    fn v6(ip: Ipv6Addr, port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)))
    }

    /// Direct service 3, entry half: the one-byte header.
    static DIRECT_BYTES: [u8; 1] = [0b00_00_1_011];

    /// Escaped service 200, exit half.
    static ESCAPED_BYTES: [u8; 2] = [0b00_00_0_111, 200];

    /// Service 1, entry half, channel 42 in one byte.
    static CHANNEL_1_BYTES: [u8; 2] = [0b01_00_1_001, 0x2a];

    /// Service 2, exit half, channel 0x1234 in two bytes, 192.0.2.1:443.
    #[rustfmt::skip]
    static CHANNEL_2_V4_BYTES: [u8; 9] = [
        0b10_01_0_010,
        // channel 0x1234, big-endian
        0x12, 0x34,
        // 192.0.2.1
        0xc0, 0x00, 0x02, 0x01,
        // port 443, big-endian
        0x01, 0xbb,
    ];

    /// The longest header: escaped service 255, entry half, channel
    /// 0x12345678 in four bytes, [2001:db8::1]:53.
    #[rustfmt::skip]
    static MAX_BYTES: [u8; 24] = [
        0b11_10_1_111,
        // service id 255
        0xff,
        // channel 0x12345678, big-endian
        0x12, 0x34, 0x56, 0x78,
        // 2001:db8::1
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        // port 53, big-endian
        0x00, 0x35,
    ];

    fn samples() -> [(&'static [u8], ServiceHeaderRepr); 5] {
        [
            (
                &DIRECT_BYTES,
                ServiceHeaderRepr {
                    service: ServiceId::new(3),
                    from_entry: true,
                    channel: None,
                    destination: None,
                    sequence: None,
                },
            ),
            (
                &ESCAPED_BYTES,
                ServiceHeaderRepr {
                    service: ServiceId::new(200),
                    from_entry: false,
                    channel: None,
                    destination: None,
                    sequence: None,
                },
            ),
            (
                &CHANNEL_1_BYTES,
                ServiceHeaderRepr {
                    service: ServiceId::new(1),
                    from_entry: true,
                    channel: Some(42),
                    destination: None,
                    sequence: None,
                },
            ),
            (
                &CHANNEL_2_V4_BYTES,
                ServiceHeaderRepr {
                    service: ServiceId::new(2),
                    from_entry: false,
                    channel: Some(0x1234),
                    destination: v4(DOC_V4, 443),
                    sequence: None,
                },
            ),
            (
                &MAX_BYTES,
                ServiceHeaderRepr {
                    service: ServiceId::new(255),
                    from_entry: true,
                    channel: Some(0x1234_5678),
                    destination: v6(DOC_V6, 53),
                    sequence: None,
                },
            ),
        ]
    }

    #[test]
    fn parse() {
        for (bytes, repr) in samples() {
            assert_eq!(ServiceHeaderRepr::parse(bytes), Ok((repr, bytes.len())));
        }
    }

    #[test]
    fn parse_leaves_the_payload() {
        for (bytes, repr) in samples() {
            let mut plaintext = bytes.to_vec();
            plaintext.extend_from_slice(b"customer payload");
            let (parsed, len) = ServiceHeaderRepr::parse(&plaintext).unwrap();
            assert_eq!(parsed, repr);
            assert_eq!(&plaintext[len..], b"customer payload");
        }
    }

    #[test]
    fn emit() {
        for (bytes, repr) in samples() {
            assert_eq!(repr.buffer_len(), bytes.len());
            let mut buf = [0xa5; ServiceHeaderRepr::MAX_LEN + 4];
            assert_eq!(repr.emit(&mut buf), Ok(bytes.len()));
            assert_eq!(&buf[..bytes.len()], bytes);
            assert!(buf[bytes.len()..].iter().all(|&b| b == 0xa5));
        }
    }

    #[test]
    fn lengths() {
        assert_eq!(ServiceHeaderRepr::MIN_LEN, 1);
        assert_eq!(ServiceHeaderRepr::MAX_LEN, 24);
        assert_eq!(ServiceHeaderRepr::MAX_INLINE_SERVICE, 6);
        assert_eq!(samples()[0].1.buffer_len(), ServiceHeaderRepr::MIN_LEN);
        assert_eq!(samples()[4].1.buffer_len(), ServiceHeaderRepr::MAX_LEN);
    }

    /// A direct service frame costs 29 bytes of data frame and 1 byte of
    /// service header: 30 bytes around the customer's payload.
    #[test]
    fn direct_service_frame_overhead_is_30_bytes() {
        let header = ServiceHeaderRepr {
            service: ServiceId::new(6),
            from_entry: false,
            channel: None,
            destination: None,
            sequence: None,
        };
        assert_eq!(header.buffer_len(), 1);
        assert_eq!(DataPacket::OVERHEAD + header.buffer_len(), 30);

        let customer = b"ping";
        let data = DataRepr {
            receiver_index: 7,
            counter: 0,
        };
        let plaintext_len = header.buffer_len() + customer.len();
        let mut frame = vec![0; data.buffer_len(plaintext_len)];
        let mut packet = DataPacket::new_checked(&mut frame[..]).unwrap();
        data.emit(&mut packet);
        let (_, plaintext, _) = packet.split_mut();
        let n = header.emit(plaintext).unwrap();
        plaintext[n..].copy_from_slice(customer);
        assert_eq!(frame.len() - customer.len(), 30);
        assert_eq!(&frame[13..18], &[0b00_00_0_110, b'p', b'i', b'n', b'g']);
    }

    /// Every combination of `CC`, `AA`, `E` and `SSS` emits the flag bits
    /// it stands for and parses back to itself.
    #[test]
    fn round_trip_every_combination() {
        let channels = [None, Some(0xab), Some(0xabcd), Some(0xabcd_ef01)];
        let destinations = [None, v4(DOC_V4, 8080), v6(DOC_V6, 65535)];
        let services = [0, 1, 2, 3, 4, 5, 6, 7, 8, 100, 254, 255];
        let mut count = 0;
        for (cc, &channel) in channels.iter().enumerate() {
            for (aa, &destination) in destinations.iter().enumerate() {
                for from_entry in [false, true] {
                    for service in services {
                        let repr = ServiceHeaderRepr {
                            service: ServiceId::new(service),
                            from_entry,
                            channel,
                            destination,
                            sequence: None,
                        };
                        let mut buf = [0; ServiceHeaderRepr::MAX_LEN + 3];
                        let len = repr.emit(&mut buf).unwrap();
                        assert_eq!(len, repr.buffer_len());
                        let flag_byte = buf[0];
                        assert_eq!(usize::from(flag_byte >> 6), cc);
                        assert_eq!(usize::from((flag_byte >> 4) & 0b11), aa);
                        assert_eq!(flag_byte & 0b1000 != 0, from_entry);
                        assert_eq!(flag_byte & 0b111, service.min(7));
                        let expected_len =
                            1 + usize::from(service >= 7) + [0, 1, 2, 4][cc] + [0, 6, 18][aa];
                        assert_eq!(len, expected_len);
                        buf[len..len + 3].copy_from_slice(b"abc");
                        let plaintext = &buf[..len + 3];
                        assert_eq!(ServiceHeaderRepr::parse(plaintext), Ok((repr, len)));
                        count += 1;
                    }
                }
            }
        }
        assert_eq!(count, 4 * 3 * 2 * services.len());
    }

    #[test]
    fn channel_length_boundaries() {
        let cases: [(u32, &[u8]); 6] = [
            (0, &[0b01_00_0_000, 0x00]),
            (255, &[0b01_00_0_000, 0xff]),
            (256, &[0b10_00_0_000, 0x01, 0x00]),
            (65535, &[0b10_00_0_000, 0xff, 0xff]),
            (65536, &[0b11_00_0_000, 0x00, 0x01, 0x00, 0x00]),
            (u32::MAX, &[0b11_00_0_000, 0xff, 0xff, 0xff, 0xff]),
        ];
        for (channel, bytes) in cases {
            let repr = ServiceHeaderRepr {
                service: ServiceId::new(0),
                from_entry: false,
                channel: Some(channel),
                destination: None,
                sequence: None,
            };
            let mut buf = [0; 8];
            let len = repr.emit(&mut buf).unwrap();
            assert_eq!(&buf[..len], bytes);
            assert_eq!(ServiceHeaderRepr::parse(bytes), Ok((repr, bytes.len())));
        }
    }

    #[test]
    fn non_canonical_channel_rejected() {
        let cases: [&[u8]; 6] = [
            // 0, 42 and 255 in two bytes
            &[0b10_00_0_000, 0x00, 0x00],
            &[0b10_00_0_000, 0x00, 0x2a],
            &[0b10_00_0_000, 0x00, 0xff],
            // 0, 255 and 65535 in four bytes
            &[0b11_00_0_000, 0x00, 0x00, 0x00, 0x00],
            &[0b11_00_0_000, 0x00, 0x00, 0x00, 0xff],
            &[0b11_00_0_000, 0x00, 0x00, 0xff, 0xff],
        ];
        for bytes in cases {
            assert_eq!(ServiceHeaderRepr::parse(bytes), Err(WireError::Malformed));
        }
    }

    #[test]
    fn non_canonical_service_id_rejected() {
        for id in 0..7 {
            for from_entry in [0, 0b1000] {
                let bytes = [0b0000_0111 | from_entry, id];
                assert_eq!(ServiceHeaderRepr::parse(&bytes), Err(WireError::Malformed));
            }
        }
        // 7 is the smallest id that must be escaped.
        let (repr, len) = ServiceHeaderRepr::parse(&[0b0000_0111, 7]).unwrap();
        assert_eq!((repr.service, len), (ServiceId::new(7), 2));
    }

    #[test]
    fn destination_code_11_without_a_number_rejected() {
        // Enough bytes for any header, so only the flag byte can be at fault.
        let mut bytes = [0x77; ServiceHeaderRepr::MAX_LEN];
        for flag_byte in (0..=255).filter(|b| b & 0b1111_0000 == 0b0011_0000) {
            bytes[0] = flag_byte;
            assert_eq!(ServiceHeaderRepr::parse(&bytes), Err(WireError::Malformed));
        }
        // So is the lone byte 0x30, the liveness probe's plaintext before
        // probes had a message type of their own: a frame of it from an
        // older peer is dropped, never delivered.
        assert_eq!(ServiceHeaderRepr::parse(&[0x30]), Err(WireError::Malformed));
    }

    fn push(service: ServiceId, from_entry: bool, sequence: u32) -> ServiceHeaderRepr {
        ServiceHeaderRepr {
            service,
            from_entry,
            channel: None,
            destination: None,
            sequence: Some(sequence),
        }
    }

    /// The push examples of the module docs, parsed and emitted.
    #[test]
    fn push_sequence_and_acknowledgement() {
        let cases: [(&[u8], ServiceHeaderRepr); 4] = [
            (&[0xba, 0x01, 0x2c], push(ServiceId::new(2), true, 300)),
            (&[0xb2, 0x01, 0x2c], push(ServiceId::new(2), false, 300)),
            (&[0x79, 0x00], push(ServiceId::new(1), true, 0)),
            (
                &[0xff, 200, 0x01, 0x00, 0x00, 0x00],
                push(ServiceId::new(200), true, 1 << 24),
            ),
        ];
        for (bytes, repr) in cases {
            assert_eq!(ServiceHeaderRepr::parse(bytes), Ok((repr, bytes.len())));
            assert_eq!(repr.buffer_len(), bytes.len());
            let mut out = [0; ServiceHeaderRepr::MAX_LEN];
            assert_eq!(repr.emit(&mut out), Ok(bytes.len()));
            assert_eq!(&out[..bytes.len()], bytes);
        }
        // A sequence number is encoded canonically, as a channel number is.
        assert_eq!(
            ServiceHeaderRepr::parse(&[0xb9, 0x00, 0x05]),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn a_sequence_with_a_channel_or_destination_has_no_encoding() {
        let mut out = [0; ServiceHeaderRepr::MAX_LEN];
        let both = ServiceHeaderRepr {
            channel: Some(1),
            ..push(ServiceId::new(1), true, 1)
        };
        assert_eq!(both.emit(&mut out), Err(WireError::Malformed));
        let routed = ServiceHeaderRepr {
            destination: Some("127.0.0.1:53".parse().unwrap()),
            ..push(ServiceId::new(1), true, 1)
        };
        assert_eq!(routed.emit(&mut out), Err(WireError::Malformed));
    }

    #[test]
    fn every_truncation_rejected() {
        assert_eq!(ServiceHeaderRepr::parse(&[]), Err(WireError::Truncated));
        for (bytes, _) in samples() {
            for len in 0..bytes.len() {
                assert_eq!(
                    ServiceHeaderRepr::parse(&bytes[..len]),
                    Err(WireError::Truncated),
                    "{bytes:02x?} cut to {len}"
                );
            }
        }
    }

    #[test]
    fn emit_into_short_buffer_writes_nothing() {
        for (bytes, repr) in samples() {
            for len in 0..bytes.len() {
                let mut buf = vec![0x5a; len];
                assert_eq!(repr.emit(&mut buf), Err(WireError::BufferTooSmall));
                assert!(buf.iter().all(|&b| b == 0x5a));
            }
        }
    }

    /// Only address and port travel: `flowinfo` and `scope_id` come back 0.
    #[test]
    fn ipv6_flowinfo_and_scope_id_are_not_sent() {
        let repr = ServiceHeaderRepr {
            service: ServiceId::new(0),
            from_entry: true,
            channel: None,
            destination: Some(SocketAddr::V6(SocketAddrV6::new(DOC_V6, 53, 0x12345, 7))),
            sequence: None,
        };
        let mut buf = [0; 19];
        assert_eq!(repr.emit(&mut buf), Ok(19));
        let (parsed, _) = ServiceHeaderRepr::parse(&buf).unwrap();
        assert_eq!(parsed.destination, v6(DOC_V6, 53));
    }

    fn any_channel() -> impl Strategy<Value = Option<u32>> {
        prop_oneof![
            Just(None),
            (0_u32..=0xff).prop_map(Some),
            (0x100_u32..=0xffff).prop_map(Some),
            any::<u32>().prop_map(Some),
        ]
    }

    fn any_destination() -> impl Strategy<Value = Option<SocketAddr>> {
        prop_oneof![
            Just(None),
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| v4(ip.into(), port)),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| v6(ip.into(), port)),
        ]
    }

    fn any_repr() -> impl Strategy<Value = ServiceHeaderRepr> {
        (any::<u8>(), any::<bool>(), any_channel(), any_destination()).prop_map(
            |(service, from_entry, channel, destination)| ServiceHeaderRepr {
                service: ServiceId::new(service),
                from_entry,
                channel,
                destination,
                sequence: None,
            },
        )
    }

    proptest! {
        /// `parse` never panics, and because every header has exactly one
        /// encoding, whatever it accepts re-emits byte for byte.
        #[test]
        fn parse_is_total_and_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok((repr, len)) = ServiceHeaderRepr::parse(&bytes) {
                prop_assert!(len <= bytes.len());
                prop_assert!(len <= ServiceHeaderRepr::MAX_LEN);
                prop_assert_eq!(len, repr.buffer_len());
                let mut out = [0; ServiceHeaderRepr::MAX_LEN];
                prop_assert_eq!(repr.emit(&mut out), Ok(len));
                prop_assert_eq!(&out[..len], &bytes[..len]);
            }
        }

        /// `emit` writes exactly `buffer_len()` bytes and `parse` gives the
        /// header back, whatever payload follows.
        #[test]
        fn repr_round_trips(
            repr in any_repr(),
            payload in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut buf = [0x5a; ServiceHeaderRepr::MAX_LEN + 8];
            let len = repr.emit(&mut buf).unwrap();
            prop_assert_eq!(len, repr.buffer_len());
            prop_assert!((ServiceHeaderRepr::MIN_LEN..=ServiceHeaderRepr::MAX_LEN).contains(&len));
            prop_assert!(buf[len..].iter().all(|&b| b == 0x5a));
            buf[len..len + payload.len()].copy_from_slice(&payload);
            let plaintext = &buf[..len + payload.len()];
            prop_assert_eq!(ServiceHeaderRepr::parse(plaintext), Ok((repr, len)));
        }
    }
}
