//! Liveness probes: a link control message sealed under the session keys.

use super::{
    check_type, field_array, field_array_mut, read_u32_le, write_u32_le, MessageType, WireError,
};

mod field {
    use crate::wire::Field;

    pub const MESSAGE_TYPE: usize = 0;
    pub const RECEIVER_INDEX: Field = 1..5;
    pub const COUNTER: Field = 5..13;
    pub const HEADER: Field = 0..COUNTER.end;
    pub const HEADER_LEN: usize = HEADER.end;
    pub const TAG: Field = HEADER_LEN..HEADER_LEN + 16;
    pub const TAG_LEN: usize = TAG.end - TAG.start;
    pub const LEN: usize = TAG.end;
}

/// A zero-copy view of a liveness probe (message type 5), exactly
/// [`ProbePacket::LEN`] = 29 bytes.
///
/// | bytes    | length | field                                    |
/// |----------|-------:|------------------------------------------|
/// | `0`      |      1 | message type = 5                         |
/// | `1..5`   |      4 | receiver index, `u32` little-endian      |
/// | `5..13`  |      8 | counter, `u64` little-endian             |
/// | `13..29` |     16 | ChaCha20-Poly1305 tag                    |
///
/// ```text
///  0   1          5         13         29
/// +---+----------+---------+----------+
/// |ty | receiver | counter | tag (16) |
/// +---+----------+---------+----------+
/// \___ header (13): AEAD associated data ___/
/// ```
///
/// A probe asks the peer whether it still holds the session: a node sends
/// one after a spell of silence from its peer, and the peer answers at once
/// with a keepalive (an empty [`DataPacket`](super::DataPacket)); no answer
/// in time means the peer lost the session and a new handshake follows.
///
/// It is sealed like a data frame with an empty plaintext: the counter
/// comes from the session's send counter (the same sequence as its data
/// frames), the receiver checks it against the same anti-replay window,
/// and the whole header, type byte included, is the tag's associated data.
/// So a probe cannot be forged, replayed, or turned into a keepalive or a
/// data frame in flight (or back). It carries nothing: a probe with any
/// plaintext is not a probe, and [`ProbePacket::check_len`] refuses any
/// other length. A node that knows no message type 5 drops it unread,
/// counted as malformed (an unknown message type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbePacket<T: AsRef<[u8]>> {
    buffer: T,
}

// The constants live on one concrete instance so that `ProbePacket::LEN`
// needs no type annotation.
impl ProbePacket<&[u8]> {
    /// Length of the header: type, receiver index and counter.
    pub const HEADER_LEN: usize = field::HEADER_LEN;
    /// Length of the AEAD tag.
    pub const TAG_LEN: usize = field::TAG_LEN;
    /// Length of every probe: `HEADER_LEN + TAG_LEN` = 29.
    pub const LEN: usize = field::LEN;
}

impl<T: AsRef<[u8]>> ProbePacket<T> {
    /// Wraps `buffer` without checking its length.
    ///
    /// Accessors may panic until [`Self::check_len`] has succeeded.
    pub const fn new_unchecked(buffer: T) -> Self {
        ProbePacket { buffer }
    }

    /// Wraps `buffer` and checks its length with [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds exactly `LEN` = 29 bytes:
    /// [`WireError::Truncated`] if fewer, [`WireError::TooLong`] if more.
    /// The message type byte is not checked.
    pub fn check_len(&self) -> Result<(), WireError> {
        match self.buffer.as_ref().len() {
            n if n < field::LEN => Err(WireError::Truncated),
            n if n > field::LEN => Err(WireError::TooLong),
            _ => Ok(()),
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Byte 0, the message type (5 in a valid probe).
    pub fn message_type(&self) -> u8 {
        self.buffer.as_ref()[field::MESSAGE_TYPE]
    }

    /// The receiver's index of the session this probe belongs to.
    pub fn receiver_index(&self) -> u32 {
        read_u32_le(self.buffer.as_ref(), field::RECEIVER_INDEX)
    }

    /// The counter: the AEAD nonce and the anti-replay sequence number.
    pub fn counter(&self) -> u64 {
        u64::from_le_bytes(*field_array(self.buffer.as_ref(), field::COUNTER))
    }

    /// Bytes `0..13`: the header, authenticated as AEAD associated data.
    pub fn header(&self) -> &[u8; field::HEADER_LEN] {
        field_array(self.buffer.as_ref(), field::HEADER)
    }

    /// The AEAD tag, bytes `13..29`.
    pub fn tag(&self) -> &[u8; field::TAG_LEN] {
        field_array(self.buffer.as_ref(), field::TAG)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ProbePacket<T> {
    /// Sets byte 0, the message type.
    pub fn set_message_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::MESSAGE_TYPE] = value;
    }

    /// Sets the receiver index.
    pub fn set_receiver_index(&mut self, value: u32) {
        write_u32_le(self.buffer.as_mut(), field::RECEIVER_INDEX, value);
    }

    /// Sets the counter.
    pub fn set_counter(&mut self, value: u64) {
        *field_array_mut(self.buffer.as_mut(), field::COUNTER) = value.to_le_bytes();
    }

    /// The AEAD tag, mutable.
    pub fn tag_mut(&mut self) -> &mut [u8; field::TAG_LEN] {
        field_array_mut(self.buffer.as_mut(), field::TAG)
    }

    /// Splits the probe into its header (the associated data) and its tag,
    /// for sealing or opening an empty plaintext.
    pub fn split_mut(&mut self) -> (&[u8; field::HEADER_LEN], &mut [u8; field::TAG_LEN]) {
        let (header, tag) = self.buffer.as_mut().split_at_mut(field::HEADER_LEN);
        (
            field_array(header, field::HEADER),
            field_array_mut(tag, 0..field::TAG_LEN),
        )
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for ProbePacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The parsed header of a liveness probe; see [`ProbePacket`] for the
/// layout. The tag is not part of the repr: the AEAD writes and checks it
/// in place through [`ProbePacket::split_mut`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeRepr {
    /// The receiver's index of the session.
    pub receiver_index: u32,
    /// The counter: the AEAD nonce and the anti-replay sequence number.
    pub counter: u64,
}

impl ProbeRepr {
    /// Reads the header of a probe, checking the length and the message
    /// type.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &ProbePacket<&T>,
    ) -> Result<ProbeRepr, WireError> {
        packet.check_len()?;
        check_type(packet.as_ref(), MessageType::Probe)?;
        Ok(ProbeRepr {
            receiver_index: packet.receiver_index(),
            counter: packet.counter(),
        })
    }

    /// The length of a probe: 29.
    pub const fn buffer_len(&self) -> usize {
        field::LEN
    }

    /// Writes the header (type byte, receiver index, counter) into
    /// `packet`. The tag is left as it is, for the AEAD to fill in place.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut ProbePacket<&mut T>) {
        packet.set_message_type(MessageType::Probe.into());
        packet.set_receiver_index(self.receiver_index);
        packet.set_counter(self.counter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    static PROBE_BYTES: [u8; 29] = [
        // message type
        0x05,
        // receiver index 0xdeadbeef, little-endian
        0xef, 0xbe, 0xad, 0xde,
        // counter 0x0102030405060708, little-endian
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        // tag
        0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7,
        0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
    ];

    fn repr() -> ProbeRepr {
        ProbeRepr {
            receiver_index: 0xdead_beef,
            counter: 0x0102_0304_0506_0708,
        }
    }

    #[test]
    fn constants() {
        assert_eq!(ProbePacket::HEADER_LEN, 13);
        assert_eq!(ProbePacket::TAG_LEN, 16);
        assert_eq!(ProbePacket::LEN, 29);
        // As long as a keepalive: the type byte alone tells them apart.
        assert_eq!(ProbePacket::LEN, super::super::DataPacket::OVERHEAD);
    }

    #[test]
    fn deconstruct() {
        let packet = ProbePacket::new_checked(&PROBE_BYTES[..]).unwrap();
        assert_eq!(packet.message_type(), 5);
        assert_eq!(packet.receiver_index(), 0xdead_beef);
        assert_eq!(packet.counter(), 0x0102_0304_0506_0708);
        assert_eq!(packet.header(), &PROBE_BYTES[..13]);
        assert_eq!(packet.tag(), &PROBE_BYTES[13..]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5; 29];
        let mut packet = ProbePacket::new_unchecked(&mut bytes[..]);
        packet.set_message_type(5);
        packet.set_receiver_index(0xdead_beef);
        packet.set_counter(0x0102_0304_0506_0708);
        packet.tag_mut().copy_from_slice(&PROBE_BYTES[13..]);
        assert_eq!(packet.into_inner(), &PROBE_BYTES[..]);
    }

    #[test]
    fn split_mut_covers_the_probe() {
        let mut bytes = PROBE_BYTES;
        let mut packet = ProbePacket::new_checked(&mut bytes[..]).unwrap();
        let (header, tag) = packet.split_mut();
        assert_eq!(header, &PROBE_BYTES[..13]);
        assert_eq!(tag, &PROBE_BYTES[13..]);
        *tag = [0; 16];
        assert_eq!(bytes[13..], [0; 16]);
        assert_eq!(bytes[..13], PROBE_BYTES[..13]);
    }

    #[test]
    fn parse_and_emit() {
        let packet = ProbePacket::new_checked(&PROBE_BYTES[..]).unwrap();
        assert_eq!(ProbeRepr::parse(&packet), Ok(repr()));
        assert_eq!(repr().buffer_len(), 29);
        let mut bytes = [0xa5; 29];
        repr().emit(&mut ProbePacket::new_checked(&mut bytes[..]).unwrap());
        // The header only: the tag is the AEAD's to write.
        assert_eq!(bytes[..13], PROBE_BYTES[..13]);
        assert_eq!(bytes[13..], [0xa5; 16]);
    }

    #[test]
    fn only_29_bytes_are_a_probe() {
        for len in 0..29 {
            let bytes = &PROBE_BYTES[..len];
            assert_eq!(ProbePacket::new_checked(bytes), Err(WireError::Truncated));
            let unchecked = ProbePacket::new_unchecked(bytes);
            assert_eq!(ProbeRepr::parse(&unchecked), Err(WireError::Truncated));
        }
        let mut long = [0u8; 30];
        long[..29].copy_from_slice(&PROBE_BYTES);
        assert_eq!(ProbePacket::new_checked(&long[..]), Err(WireError::TooLong));
        let unchecked = ProbePacket::new_unchecked(&long[..]);
        assert_eq!(ProbeRepr::parse(&unchecked), Err(WireError::TooLong));
    }

    #[test]
    fn wrong_type() {
        for ty in (0..=255).filter(|&ty| ty != 5) {
            let mut bytes = PROBE_BYTES;
            bytes[0] = ty;
            let packet = ProbePacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(ProbeRepr::parse(&packet), Err(WireError::WrongType));
        }
    }

    proptest::proptest! {
        /// No input makes the checked view, its accessors or the parser
        /// panic; whatever parses re-emits its header byte for byte.
        #[test]
        fn parser_total(
            mut bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            probe_type in proptest::bool::ANY,
        ) {
            if let (true, Some(first)) = (probe_type, bytes.first_mut()) {
                *first = 5;
            }
            let Ok(packet) = ProbePacket::new_checked(&bytes[..]) else {
                proptest::prop_assert!(bytes.len() != 29);
                return Ok(());
            };
            proptest::prop_assert_eq!(packet.header().len() + packet.tag().len(), bytes.len());
            if let Ok(repr) = ProbeRepr::parse(&packet) {
                let mut out = [0; 29];
                repr.emit(&mut ProbePacket::new_checked(&mut out[..]).unwrap());
                proptest::prop_assert_eq!(&out[..13], &bytes[..13]);
            }
        }
    }
}
