//! Transport data frames.

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
    pub const TAG_LEN: usize = 16;
    pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
}

/// A zero-copy view of a transport data frame (message type 4), at least
/// [`DataPacket::OVERHEAD`] = 29 bytes.
///
/// | bytes          | length  | field                                    |
/// |----------------|--------:|------------------------------------------|
/// | `0`            |       1 | message type = 4                         |
/// | `1..5`         |       4 | receiver index, `u32` little-endian      |
/// | `5..13`        |       8 | counter, `u64` little-endian             |
/// | `13..len-16`   | len-29  | ciphertext of the plaintext              |
/// | `len-16..len`  |      16 | ChaCha20-Poly1305 tag                    |
///
/// ```text
///  0   1          5         13                          len-16      len
/// +---+----------+---------+-----------------------------+----------+
/// |ty | receiver | counter |   ciphertext (0 or more)    | tag (16) |
/// +---+----------+---------+-----------------------------+----------+
/// \___ header (13): AEAD associated data ___/
/// ```
///
/// The receiver index names the session at the receiver. The counter is the
/// AEAD nonce (encoded little-endian, as Noise encodes its nonces) and the
/// input to the receiver's anti-replay window. The 13-byte header is
/// authenticated as associated data, so none of it can be altered in
/// flight.
///
/// An empty ciphertext (a 29-byte frame) is a keepalive. A non-empty
/// plaintext starts with a [`ServiceHeaderRepr`](super::ServiceHeaderRepr),
/// so a frame of a direct service costs 29 + 1 = 30 bytes around the
/// customer's payload.
///
/// The ciphertext and tag are written and read in place by the AEAD: see
/// [`DataPacket::split_mut`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPacket<T: AsRef<[u8]>> {
    buffer: T,
}

// The constants live on one concrete instance so that `DataPacket::OVERHEAD`
// needs no type annotation.
impl DataPacket<&[u8]> {
    /// Length of the header: type, receiver index and counter.
    pub const HEADER_LEN: usize = field::HEADER_LEN;
    /// Length of the AEAD tag at the end of every frame.
    pub const TAG_LEN: usize = field::TAG_LEN;
    /// Bytes a frame adds around its ciphertext, and the length of a
    /// keepalive: `HEADER_LEN + TAG_LEN` = 29.
    pub const OVERHEAD: usize = field::OVERHEAD;
}

impl<T: AsRef<[u8]>> DataPacket<T> {
    /// Wraps `buffer` without checking its length.
    ///
    /// Accessors may panic until [`Self::check_len`] has succeeded.
    pub const fn new_unchecked(buffer: T) -> Self {
        DataPacket { buffer }
    }

    /// Wraps `buffer` and checks its length with [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds at least `OVERHEAD` = 29 bytes, the
    /// header and the tag; [`WireError::Truncated`] if not. There is no
    /// upper limit here. The message type byte is not checked.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < field::OVERHEAD {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Byte 0, the message type (4 in a valid data frame).
    pub fn message_type(&self) -> u8 {
        self.buffer.as_ref()[field::MESSAGE_TYPE]
    }

    /// The receiver's index of the session this frame belongs to.
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

    /// The ciphertext between header and tag; empty in a keepalive.
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[field::HEADER_LEN..tag_start(data.len())]
    }

    /// The AEAD tag, the last 16 bytes.
    pub fn tag(&self) -> &[u8; field::TAG_LEN] {
        let data = self.buffer.as_ref();
        field_array(data, tag_start(data.len())..data.len())
    }
}

/// Where the tag starts in a frame of `len` bytes. Saturates rather than
/// underflows on a too-short, unchecked buffer (whose accessors then panic
/// on the slice bounds instead).
fn tag_start(len: usize) -> usize {
    len.saturating_sub(field::TAG_LEN)
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> DataPacket<T> {
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

    /// The ciphertext between header and tag, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let data = self.buffer.as_mut();
        let end = tag_start(data.len());
        &mut data[field::HEADER_LEN..end]
    }

    /// The AEAD tag, mutable.
    pub fn tag_mut(&mut self) -> &mut [u8; field::TAG_LEN] {
        let data = self.buffer.as_mut();
        let len = data.len();
        field_array_mut(data, tag_start(len)..len)
    }

    /// Splits the frame into its header (the associated data), its
    /// ciphertext and its tag, for sealing or opening in place.
    ///
    /// To seal: write the header (with [`DataRepr::emit`]) and the plaintext
    /// into the payload, encrypt the payload in place with the header as
    /// associated data, and store the detached tag. To open: decrypt the
    /// payload in place with the header as associated data and the tag.
    pub fn split_mut(
        &mut self,
    ) -> (
        &[u8; field::HEADER_LEN],
        &mut [u8],
        &mut [u8; field::TAG_LEN],
    ) {
        let data = self.buffer.as_mut();
        let payload_len = tag_start(data.len()).saturating_sub(field::HEADER_LEN);
        let (header, rest) = data.split_at_mut(field::HEADER_LEN);
        let (payload, tag) = rest.split_at_mut(payload_len);
        (
            field_array(header, field::HEADER),
            payload,
            field_array_mut(tag, 0..field::TAG_LEN),
        )
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for DataPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The parsed header of a transport data frame; see [`DataPacket`] for the
/// layout.
///
/// The ciphertext and the tag are not part of the repr: they are read and
/// written in place by the AEAD through [`DataPacket::split_mut`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataRepr {
    /// The receiver's index of the session.
    pub receiver_index: u32,
    /// The counter: the AEAD nonce and the anti-replay sequence number.
    pub counter: u64,
}

impl DataRepr {
    /// Reads the header of a data frame, checking the minimum length and the
    /// message type.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &DataPacket<&T>) -> Result<DataRepr, WireError> {
        packet.check_len()?;
        check_type(packet.as_ref(), MessageType::Data)?;
        Ok(DataRepr {
            receiver_index: packet.receiver_index(),
            counter: packet.counter(),
        })
    }

    /// The length of a frame carrying `payload_len` bytes of plaintext:
    /// `payload_len + 29` (saturating at `usize::MAX`).
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        payload_len.saturating_add(field::OVERHEAD)
    }

    /// Writes the header (type byte, receiver index, counter) into
    /// `packet`. The payload and the tag are left as they are, for the AEAD
    /// to fill in place.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut DataPacket<&mut T>) {
        packet.set_message_type(MessageType::Data.into());
        packet.set_receiver_index(self.receiver_index);
        packet.set_counter(self.counter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    static DATA_BYTES: [u8; 34] = [
        // message type
        0x04,
        // receiver index 0xdeadbeef, little-endian
        0xef, 0xbe, 0xad, 0xde,
        // counter 0x0102030405060708, little-endian
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        // ciphertext
        0x11, 0x22, 0x33, 0x44, 0x55,
        // tag
        0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7,
        0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
    ];

    #[rustfmt::skip]
    static KEEPALIVE_BYTES: [u8; 29] = [
        // message type
        0x04,
        // receiver index 1, little-endian
        0x01, 0x00, 0x00, 0x00,
        // counter 0xff00 (65280), little-endian
        0x00, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        // no ciphertext; tag
        0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77,
        0x78, 0x79, 0x7a, 0x7b, 0x7c, 0x7d, 0x7e, 0x7f,
    ];

    const CIPHERTEXT: [u8; 5] = [0x11, 0x22, 0x33, 0x44, 0x55];
    const TAG: [u8; 16] = [
        0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe,
        0xff,
    ];

    fn repr() -> DataRepr {
        DataRepr {
            receiver_index: 0xdead_beef,
            counter: 0x0102_0304_0506_0708,
        }
    }

    #[test]
    fn constants() {
        assert_eq!(DataPacket::HEADER_LEN, 13);
        assert_eq!(DataPacket::TAG_LEN, 16);
        assert_eq!(DataPacket::OVERHEAD, 29);
    }

    #[test]
    fn deconstruct() {
        let packet = DataPacket::new_checked(&DATA_BYTES[..]).unwrap();
        assert_eq!(packet.message_type(), 4);
        assert_eq!(packet.receiver_index(), 0xdead_beef);
        assert_eq!(packet.counter(), 0x0102_0304_0506_0708);
        assert_eq!(packet.header(), &DATA_BYTES[..13]);
        assert_eq!(packet.payload(), &CIPHERTEXT);
        assert_eq!(packet.tag(), &TAG);
    }

    #[test]
    fn deconstruct_keepalive() {
        let packet = DataPacket::new_checked(&KEEPALIVE_BYTES[..]).unwrap();
        assert_eq!(packet.message_type(), 4);
        assert_eq!(packet.receiver_index(), 1);
        assert_eq!(packet.counter(), 0xff00);
        assert_eq!(packet.header(), &KEEPALIVE_BYTES[..13]);
        assert!(packet.payload().is_empty());
        assert_eq!(packet.tag(), &KEEPALIVE_BYTES[13..]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5; 34];
        let mut packet = DataPacket::new_unchecked(&mut bytes[..]);
        packet.set_message_type(4);
        packet.set_receiver_index(0xdead_beef);
        packet.set_counter(0x0102_0304_0506_0708);
        packet.payload_mut().copy_from_slice(&CIPHERTEXT);
        *packet.tag_mut() = TAG;
        assert_eq!(packet.into_inner(), &DATA_BYTES[..]);
    }

    #[test]
    fn split_mut_covers_the_frame() {
        let mut bytes = DATA_BYTES;
        let mut packet = DataPacket::new_checked(&mut bytes[..]).unwrap();
        let (header, payload, tag) = packet.split_mut();
        assert_eq!(header, &DATA_BYTES[..13]);
        assert_eq!(payload, &CIPHERTEXT);
        assert_eq!(tag, &TAG);
        // What the AEAD writes through the split lands in the frame.
        payload.copy_from_slice(b"plain");
        *tag = [0; 16];
        assert_eq!(&bytes[13..18], b"plain");
        assert_eq!(bytes[18..], [0; 16]);
        assert_eq!(bytes[..13], DATA_BYTES[..13]);

        let mut keepalive = KEEPALIVE_BYTES;
        let mut packet = DataPacket::new_checked(&mut keepalive[..]).unwrap();
        let (header, payload, tag) = packet.split_mut();
        assert_eq!(header, &KEEPALIVE_BYTES[..13]);
        assert!(payload.is_empty());
        assert_eq!(tag, &KEEPALIVE_BYTES[13..]);
    }

    #[test]
    fn parse() {
        let packet = DataPacket::new_checked(&DATA_BYTES[..]).unwrap();
        assert_eq!(DataRepr::parse(&packet), Ok(repr()));
        let keepalive = DataPacket::new_checked(&KEEPALIVE_BYTES[..]).unwrap();
        assert_eq!(
            DataRepr::parse(&keepalive),
            Ok(DataRepr {
                receiver_index: 1,
                counter: 0xff00,
            })
        );
    }

    #[test]
    fn emit() {
        let repr = repr();
        assert_eq!(repr.buffer_len(CIPHERTEXT.len()), DATA_BYTES.len());
        assert_eq!(repr.buffer_len(0), 29);
        let mut bytes = [0xa5; 34];
        let mut packet = DataPacket::new_checked(&mut bytes[..]).unwrap();
        repr.emit(&mut packet);
        // The header only: ciphertext and tag are the AEAD's to write.
        assert_eq!(bytes[..13], DATA_BYTES[..13]);
        assert_eq!(bytes[13..], [0xa5; 21]);
    }

    #[test]
    fn truncated() {
        for len in 0..DataPacket::OVERHEAD {
            let bytes = &DATA_BYTES[..len];
            assert_eq!(DataPacket::new_checked(bytes), Err(WireError::Truncated));
            let unchecked = DataPacket::new_unchecked(bytes);
            assert_eq!(DataRepr::parse(&unchecked), Err(WireError::Truncated));
        }
        // A frame cut inside its ciphertext still has the shape of a data
        // frame; it is the AEAD tag check that rejects it.
        for len in DataPacket::OVERHEAD..=DATA_BYTES.len() {
            let packet = DataPacket::new_checked(&DATA_BYTES[..len]).unwrap();
            assert_eq!(packet.payload().len(), len - 29);
        }
    }

    #[test]
    fn wrong_type() {
        for ty in (0..=255).filter(|&ty| ty != 4) {
            let mut bytes = DATA_BYTES;
            bytes[0] = ty;
            let packet = DataPacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(DataRepr::parse(&packet), Err(WireError::WrongType));
        }
    }

    #[test]
    fn buffer_len_saturates() {
        assert_eq!(repr().buffer_len(usize::MAX - 3), usize::MAX);
    }

    proptest::proptest! {
        /// No input makes the checked view, its accessors or the parser
        /// panic; the accessors partition the frame; whatever parses
        /// re-emits its header byte for byte.
        #[test]
        fn parser_total(
            mut bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            data_type in proptest::bool::ANY,
        ) {
            // Half the inputs get the data type byte, so the parse branch runs.
            if let (true, Some(first)) = (data_type, bytes.first_mut()) {
                *first = 4;
            }
            let Ok(packet) = DataPacket::new_checked(&bytes[..]) else {
                proptest::prop_assert!(bytes.len() < 29);
                return Ok(());
            };
            let total = packet.header().len() + packet.payload().len() + packet.tag().len();
            proptest::prop_assert_eq!(total, bytes.len());
            if let Ok(repr) = DataRepr::parse(&packet) {
                let mut out = vec![0; repr.buffer_len(packet.payload().len())];
                repr.emit(&mut DataPacket::new_checked(&mut out[..]).unwrap());
                proptest::prop_assert_eq!(&out[..13], &bytes[..13]);
            }
        }
    }
}
