//! The three handshake messages: initiation, response and cookie reply.
//!
//! All three have a fixed length; a datagram of any other length is rejected
//! ([`WireError::Truncated`] if shorter, [`WireError::TooLong`] if longer).
//! The views' `check_len` looks at the length only; the message type byte is
//! checked by the reprs' `parse` (so that a view can be built over a fresh
//! buffer and filled in).
//!
//! The initiation and the response carry a standard Noise
//! `IKpsk2_25519_ChaChaPoly_BLAKE2s` message between a small header (type,
//! indices) and two MACs, laid out as in WireGuard. This module only says
//! where the MACs sit and which bytes each covers (`mac1_input`,
//! `mac2_input`); computing and checking them is the handshake layer's job.
//! `mac2` is keyed with a cookie from a [`CookieReplyPacket`] and is all
//! zeros when the sender holds no cookie.

use super::{
    check_type, field_array, field_array_mut, read_u32_le, write_u32_le, MessageType, WireError,
};

/// Length of an X25519 public key.
pub const KEY_LEN: usize = 32;
/// Length of a ChaCha20-Poly1305 / XChaCha20-Poly1305 authentication tag.
pub const AEAD_TAG_LEN: usize = 16;
/// Length of a handshake MAC (`mac1`, `mac2`).
pub const MAC_LEN: usize = 16;
/// Length of the plaintext timestamp in an initiation (TAI64N).
pub const TIMESTAMP_LEN: usize = 12;
/// Length of the sender's incarnation: a random number drawn when its node
/// starts, so a peer can tell a restart (drop all state of the old
/// incarnation) from a rekey (keep it).
pub const INCARNATION_LEN: usize = 8;
/// Plaintext payload of an initiation: timestamp, then incarnation.
pub const INITIATION_PAYLOAD_LEN: usize = TIMESTAMP_LEN + INCARNATION_LEN;
/// Plaintext payload of a response: the responder's incarnation.
pub const RESPONSE_PAYLOAD_LEN: usize = INCARNATION_LEN;
/// Length of a plaintext cookie.
pub const COOKIE_LEN: usize = 16;
/// Length of the XChaCha20-Poly1305 nonce of a cookie reply.
pub const COOKIE_NONCE_LEN: usize = 24;

mod field {
    pub(super) const MESSAGE_TYPE: usize = 0;

    pub(super) mod initiation {
        use crate::wire::Field;

        pub const SENDER_INDEX: Field = 1..5;
        pub const EPHEMERAL: Field = 5..37;
        pub const ENCRYPTED_STATIC: Field = 37..85;
        pub const ENCRYPTED_PAYLOAD: Field = 85..121;
        pub const MAC1: Field = 121..137;
        pub const MAC2: Field = 137..153;

        pub const NOISE_MESSAGE: Field = EPHEMERAL.start..ENCRYPTED_PAYLOAD.end;
        pub const MAC1_INPUT: Field = 0..MAC1.start;
        pub const MAC2_INPUT: Field = 0..MAC2.start;
        pub const LEN: usize = MAC2.end;
    }

    pub(super) mod response {
        use crate::wire::Field;

        pub const SENDER_INDEX: Field = 1..5;
        pub const RECEIVER_INDEX: Field = 5..9;
        pub const EPHEMERAL: Field = 9..41;
        pub const ENCRYPTED_PAYLOAD: Field = 41..65;
        pub const MAC1: Field = 65..81;
        pub const MAC2: Field = 81..97;

        pub const NOISE_MESSAGE: Field = EPHEMERAL.start..ENCRYPTED_PAYLOAD.end;
        pub const MAC1_INPUT: Field = 0..MAC1.start;
        pub const MAC2_INPUT: Field = 0..MAC2.start;
        pub const LEN: usize = MAC2.end;
    }

    pub(super) mod cookie_reply {
        use crate::wire::Field;

        pub const RECEIVER_INDEX: Field = 1..5;
        pub const NONCE: Field = 5..29;
        pub const ENCRYPTED_COOKIE: Field = 29..61;
        pub const LEN: usize = ENCRYPTED_COOKIE.end;
    }
}

/// `Ok` if `len` is exactly `expected`.
fn check_exact_len(len: usize, expected: usize) -> Result<(), WireError> {
    match len.cmp(&expected) {
        core::cmp::Ordering::Less => Err(WireError::Truncated),
        core::cmp::Ordering::Greater => Err(WireError::TooLong),
        core::cmp::Ordering::Equal => Ok(()),
    }
}

/// A zero-copy view of a handshake initiation (message type 1), exactly
/// [`InitiationPacket::LEN`] = 153 bytes.
///
/// | bytes      | length | field                                              |
/// |------------|-------:|----------------------------------------------------|
/// | `0`        |      1 | message type = 1                                   |
/// | `1..5`     |      4 | sender index, `u32` little-endian                  |
/// | `5..37`    |     32 | initiator's ephemeral public key                   |
/// | `37..85`   |     48 | initiator's static public key (32), encrypted + tag (16) |
/// | `85..121`  |     36 | payload, encrypted + tag (16): TAI64N timestamp (12), then incarnation (8, little-endian) |
/// | `121..137` |     16 | `mac1`, over bytes `0..121`                        |
/// | `137..153` |     16 | `mac2`, over bytes `0..137`                        |
///
/// ```text
///  0   1         5              37                 85                  121    137    153
/// +---+---------+--------------+------------------+-------------------+------+------+
/// |ty | sender  |  ephemeral   | encrypted static | encrypted payload | mac1 | mac2 |
/// +---+---------+--------------+------------------+-------------------+------+------+
///               \____________ Noise message 1 (116 bytes) ____________/
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiationPacket<T: AsRef<[u8]>> {
    buffer: T,
}

// The constants live on one concrete instance so that
// `InitiationPacket::LEN` needs no type annotation.
impl InitiationPacket<&[u8]> {
    /// Length of every initiation.
    pub const LEN: usize = field::initiation::LEN;
    /// Length of the Noise message 1 inside (see `noise_message`).
    pub const NOISE_MESSAGE_LEN: usize =
        field::initiation::NOISE_MESSAGE.end - field::initiation::NOISE_MESSAGE.start;
}

impl<T: AsRef<[u8]>> InitiationPacket<T> {
    /// Wraps `buffer` without checking its length.
    ///
    /// Accessors may panic until [`Self::check_len`] has succeeded.
    pub const fn new_unchecked(buffer: T) -> Self {
        InitiationPacket { buffer }
    }

    /// Wraps `buffer` and checks its length with [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer is exactly `LEN` bytes long:
    /// [`WireError::Truncated`] if shorter, [`WireError::TooLong`] if longer.
    /// The message type byte is not checked.
    pub fn check_len(&self) -> Result<(), WireError> {
        check_exact_len(self.buffer.as_ref().len(), field::initiation::LEN)
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Byte 0, the message type (1 in a valid initiation).
    pub fn message_type(&self) -> u8 {
        self.buffer.as_ref()[field::MESSAGE_TYPE]
    }

    /// The initiator's index for this session.
    pub fn sender_index(&self) -> u32 {
        read_u32_le(self.buffer.as_ref(), field::initiation::SENDER_INDEX)
    }

    /// The initiator's ephemeral public key.
    pub fn ephemeral(&self) -> &[u8; KEY_LEN] {
        field_array(self.buffer.as_ref(), field::initiation::EPHEMERAL)
    }

    /// The initiator's static public key, encrypted, followed by its tag.
    pub fn encrypted_static(&self) -> &[u8; KEY_LEN + AEAD_TAG_LEN] {
        field_array(self.buffer.as_ref(), field::initiation::ENCRYPTED_STATIC)
    }

    /// The payload (timestamp, incarnation), encrypted, followed by its tag.
    pub fn encrypted_payload(&self) -> &[u8; INITIATION_PAYLOAD_LEN + AEAD_TAG_LEN] {
        field_array(self.buffer.as_ref(), field::initiation::ENCRYPTED_PAYLOAD)
    }

    /// `mac1`, computed over [`Self::mac1_input`].
    pub fn mac1(&self) -> &[u8; MAC_LEN] {
        field_array(self.buffer.as_ref(), field::initiation::MAC1)
    }

    /// `mac2`, computed over [`Self::mac2_input`]; zeros without a cookie.
    pub fn mac2(&self) -> &[u8; MAC_LEN] {
        field_array(self.buffer.as_ref(), field::initiation::MAC2)
    }

    /// Bytes `5..121`: the standard Noise message 1 (ephemeral, encrypted
    /// static, encrypted payload), 116 bytes.
    pub fn noise_message(&self) -> &[u8] {
        &self.buffer.as_ref()[field::initiation::NOISE_MESSAGE]
    }

    /// Bytes `0..121`: everything `mac1` covers.
    pub fn mac1_input(&self) -> &[u8] {
        &self.buffer.as_ref()[field::initiation::MAC1_INPUT]
    }

    /// Bytes `0..137`: everything `mac2` covers (including `mac1`).
    pub fn mac2_input(&self) -> &[u8] {
        &self.buffer.as_ref()[field::initiation::MAC2_INPUT]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> InitiationPacket<T> {
    /// Sets byte 0, the message type.
    pub fn set_message_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::MESSAGE_TYPE] = value;
    }

    /// Sets the initiator's index.
    pub fn set_sender_index(&mut self, value: u32) {
        write_u32_le(self.buffer.as_mut(), field::initiation::SENDER_INDEX, value);
    }

    /// Sets the ephemeral public key.
    pub fn set_ephemeral(&mut self, value: &[u8; KEY_LEN]) {
        *field_array_mut(self.buffer.as_mut(), field::initiation::EPHEMERAL) = *value;
    }

    /// Sets the encrypted static key and its tag.
    pub fn set_encrypted_static(&mut self, value: &[u8; KEY_LEN + AEAD_TAG_LEN]) {
        *field_array_mut(self.buffer.as_mut(), field::initiation::ENCRYPTED_STATIC) = *value;
    }

    /// Sets the encrypted payload and its tag.
    pub fn set_encrypted_payload(&mut self, value: &[u8; INITIATION_PAYLOAD_LEN + AEAD_TAG_LEN]) {
        *field_array_mut(self.buffer.as_mut(), field::initiation::ENCRYPTED_PAYLOAD) = *value;
    }

    /// Sets `mac1`.
    pub fn set_mac1(&mut self, value: &[u8; MAC_LEN]) {
        *field_array_mut(self.buffer.as_mut(), field::initiation::MAC1) = *value;
    }

    /// Sets `mac2`.
    pub fn set_mac2(&mut self, value: &[u8; MAC_LEN]) {
        *field_array_mut(self.buffer.as_mut(), field::initiation::MAC2) = *value;
    }

    /// Bytes `5..121`, for a Noise implementation to write message 1 into.
    pub fn noise_message_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::initiation::NOISE_MESSAGE]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for InitiationPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The parsed fields of a handshake initiation; see [`InitiationPacket`]
/// for the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitiationRepr {
    /// The initiator's index for this session.
    pub sender_index: u32,
    /// The initiator's ephemeral public key.
    pub ephemeral: [u8; KEY_LEN],
    /// The initiator's static public key, encrypted, and its tag.
    pub encrypted_static: [u8; KEY_LEN + AEAD_TAG_LEN],
    /// The payload (timestamp, incarnation), encrypted, and its tag.
    pub encrypted_payload: [u8; INITIATION_PAYLOAD_LEN + AEAD_TAG_LEN],
    /// `mac1`.
    pub mac1: [u8; MAC_LEN],
    /// `mac2`.
    pub mac2: [u8; MAC_LEN],
}

impl InitiationRepr {
    /// Reads an initiation, checking its length and message type.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &InitiationPacket<&T>,
    ) -> Result<InitiationRepr, WireError> {
        packet.check_len()?;
        check_type(packet.as_ref(), MessageType::Initiation)?;
        Ok(InitiationRepr {
            sender_index: packet.sender_index(),
            ephemeral: *packet.ephemeral(),
            encrypted_static: *packet.encrypted_static(),
            encrypted_payload: *packet.encrypted_payload(),
            mac1: *packet.mac1(),
            mac2: *packet.mac2(),
        })
    }

    /// The length of the emitted message: always [`InitiationPacket::LEN`].
    pub const fn buffer_len(&self) -> usize {
        field::initiation::LEN
    }

    /// Writes the whole message, type byte included, into `packet`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut InitiationPacket<&mut T>,
    ) {
        packet.set_message_type(MessageType::Initiation.into());
        packet.set_sender_index(self.sender_index);
        packet.set_ephemeral(&self.ephemeral);
        packet.set_encrypted_static(&self.encrypted_static);
        packet.set_encrypted_payload(&self.encrypted_payload);
        packet.set_mac1(&self.mac1);
        packet.set_mac2(&self.mac2);
    }
}

/// A zero-copy view of a handshake response (message type 2), exactly
/// [`ResponsePacket::LEN`] = 97 bytes.
///
/// | bytes    | length | field                                          |
/// |----------|-------:|------------------------------------------------|
/// | `0`      |      1 | message type = 2                               |
/// | `1..5`   |      4 | sender index (the responder's), `u32` little-endian |
/// | `5..9`   |      4 | receiver index (the initiator's sender index), `u32` little-endian |
/// | `9..41`  |     32 | responder's ephemeral public key               |
/// | `41..65` |     24 | payload, encrypted + tag (16): incarnation (8, little-endian) |
/// | `65..81` |     16 | `mac1`, over bytes `0..65`                     |
/// | `81..97` |     16 | `mac2`, over bytes `0..81`                     |
///
/// ```text
///  0   1        5          9              41           65     81     97
/// +---+--------+----------+--------------+------------+------+------+
/// |ty | sender | receiver |  ephemeral   | enc. paylo.| mac1 | mac2 |
/// +---+--------+----------+--------------+------------+------+------+
///                         \__ Noise message 2 (56) __/
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl ResponsePacket<&[u8]> {
    /// Length of every response.
    pub const LEN: usize = field::response::LEN;
    /// Length of the Noise message 2 inside (see `noise_message`).
    pub const NOISE_MESSAGE_LEN: usize =
        field::response::NOISE_MESSAGE.end - field::response::NOISE_MESSAGE.start;
}

impl<T: AsRef<[u8]>> ResponsePacket<T> {
    /// Wraps `buffer` without checking its length.
    ///
    /// Accessors may panic until [`Self::check_len`] has succeeded.
    pub const fn new_unchecked(buffer: T) -> Self {
        ResponsePacket { buffer }
    }

    /// Wraps `buffer` and checks its length with [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer is exactly `LEN` bytes long:
    /// [`WireError::Truncated`] if shorter, [`WireError::TooLong`] if longer.
    /// The message type byte is not checked.
    pub fn check_len(&self) -> Result<(), WireError> {
        check_exact_len(self.buffer.as_ref().len(), field::response::LEN)
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Byte 0, the message type (2 in a valid response).
    pub fn message_type(&self) -> u8 {
        self.buffer.as_ref()[field::MESSAGE_TYPE]
    }

    /// The responder's index for this session.
    pub fn sender_index(&self) -> u32 {
        read_u32_le(self.buffer.as_ref(), field::response::SENDER_INDEX)
    }

    /// The initiator's index, copied from the initiation.
    pub fn receiver_index(&self) -> u32 {
        read_u32_le(self.buffer.as_ref(), field::response::RECEIVER_INDEX)
    }

    /// The responder's ephemeral public key.
    pub fn ephemeral(&self) -> &[u8; KEY_LEN] {
        field_array(self.buffer.as_ref(), field::response::EPHEMERAL)
    }

    /// The payload (incarnation), encrypted, followed by its tag.
    pub fn encrypted_payload(&self) -> &[u8; RESPONSE_PAYLOAD_LEN + AEAD_TAG_LEN] {
        field_array(self.buffer.as_ref(), field::response::ENCRYPTED_PAYLOAD)
    }

    /// `mac1`, computed over [`Self::mac1_input`].
    pub fn mac1(&self) -> &[u8; MAC_LEN] {
        field_array(self.buffer.as_ref(), field::response::MAC1)
    }

    /// `mac2`, computed over [`Self::mac2_input`]; zeros without a cookie.
    pub fn mac2(&self) -> &[u8; MAC_LEN] {
        field_array(self.buffer.as_ref(), field::response::MAC2)
    }

    /// Bytes `9..65`: the standard Noise message 2 (ephemeral, encrypted
    /// payload), 56 bytes.
    pub fn noise_message(&self) -> &[u8] {
        &self.buffer.as_ref()[field::response::NOISE_MESSAGE]
    }

    /// Bytes `0..65`: everything `mac1` covers.
    pub fn mac1_input(&self) -> &[u8] {
        &self.buffer.as_ref()[field::response::MAC1_INPUT]
    }

    /// Bytes `0..81`: everything `mac2` covers (including `mac1`).
    pub fn mac2_input(&self) -> &[u8] {
        &self.buffer.as_ref()[field::response::MAC2_INPUT]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ResponsePacket<T> {
    /// Sets byte 0, the message type.
    pub fn set_message_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::MESSAGE_TYPE] = value;
    }

    /// Sets the responder's index.
    pub fn set_sender_index(&mut self, value: u32) {
        write_u32_le(self.buffer.as_mut(), field::response::SENDER_INDEX, value);
    }

    /// Sets the initiator's index.
    pub fn set_receiver_index(&mut self, value: u32) {
        write_u32_le(self.buffer.as_mut(), field::response::RECEIVER_INDEX, value);
    }

    /// Sets the ephemeral public key.
    pub fn set_ephemeral(&mut self, value: &[u8; KEY_LEN]) {
        *field_array_mut(self.buffer.as_mut(), field::response::EPHEMERAL) = *value;
    }

    /// Sets the encrypted payload and its tag.
    pub fn set_encrypted_payload(&mut self, value: &[u8; RESPONSE_PAYLOAD_LEN + AEAD_TAG_LEN]) {
        *field_array_mut(self.buffer.as_mut(), field::response::ENCRYPTED_PAYLOAD) = *value;
    }

    /// Sets `mac1`.
    pub fn set_mac1(&mut self, value: &[u8; MAC_LEN]) {
        *field_array_mut(self.buffer.as_mut(), field::response::MAC1) = *value;
    }

    /// Sets `mac2`.
    pub fn set_mac2(&mut self, value: &[u8; MAC_LEN]) {
        *field_array_mut(self.buffer.as_mut(), field::response::MAC2) = *value;
    }

    /// Bytes `9..65`, for a Noise implementation to write message 2 into.
    pub fn noise_message_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::response::NOISE_MESSAGE]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for ResponsePacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The parsed fields of a handshake response; see [`ResponsePacket`] for
/// the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseRepr {
    /// The responder's index for this session.
    pub sender_index: u32,
    /// The initiator's index, copied from the initiation.
    pub receiver_index: u32,
    /// The responder's ephemeral public key.
    pub ephemeral: [u8; KEY_LEN],
    /// The payload (incarnation), encrypted, and its tag.
    pub encrypted_payload: [u8; RESPONSE_PAYLOAD_LEN + AEAD_TAG_LEN],
    /// `mac1`.
    pub mac1: [u8; MAC_LEN],
    /// `mac2`.
    pub mac2: [u8; MAC_LEN],
}

impl ResponseRepr {
    /// Reads a response, checking its length and message type.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &ResponsePacket<&T>,
    ) -> Result<ResponseRepr, WireError> {
        packet.check_len()?;
        check_type(packet.as_ref(), MessageType::Response)?;
        Ok(ResponseRepr {
            sender_index: packet.sender_index(),
            receiver_index: packet.receiver_index(),
            ephemeral: *packet.ephemeral(),
            encrypted_payload: *packet.encrypted_payload(),
            mac1: *packet.mac1(),
            mac2: *packet.mac2(),
        })
    }

    /// The length of the emitted message: always [`ResponsePacket::LEN`].
    pub const fn buffer_len(&self) -> usize {
        field::response::LEN
    }

    /// Writes the whole message, type byte included, into `packet`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut ResponsePacket<&mut T>) {
        packet.set_message_type(MessageType::Response.into());
        packet.set_sender_index(self.sender_index);
        packet.set_receiver_index(self.receiver_index);
        packet.set_ephemeral(&self.ephemeral);
        packet.set_encrypted_payload(&self.encrypted_payload);
        packet.set_mac1(&self.mac1);
        packet.set_mac2(&self.mac2);
    }
}

/// What the cookie mechanism reads from either handshake message: the
/// sender's index and both MACs with what they cover.
pub trait HandshakeMacs {
    /// The sender's index, which a cookie reply names.
    fn sender_index(&self) -> u32;
    /// The bytes `mac1` covers.
    fn mac1_input(&self) -> &[u8];
    /// `mac1`.
    fn mac1(&self) -> &[u8; MAC_LEN];
    /// The bytes `mac2` covers.
    fn mac2_input(&self) -> &[u8];
    /// `mac2`.
    fn mac2(&self) -> &[u8; MAC_LEN];
}

macro_rules! handshake_macs {
    ($packet:ident) => {
        impl<T: AsRef<[u8]>> HandshakeMacs for $packet<T> {
            fn sender_index(&self) -> u32 {
                $packet::sender_index(self)
            }
            fn mac1_input(&self) -> &[u8] {
                $packet::mac1_input(self)
            }
            fn mac1(&self) -> &[u8; MAC_LEN] {
                $packet::mac1(self)
            }
            fn mac2_input(&self) -> &[u8] {
                $packet::mac2_input(self)
            }
            fn mac2(&self) -> &[u8; MAC_LEN] {
                $packet::mac2(self)
            }
        }
    };
}

handshake_macs!(InitiationPacket);
handshake_macs!(ResponsePacket);

/// A zero-copy view of a cookie reply (message type 3), exactly
/// [`CookieReplyPacket::LEN`] = 61 bytes.
///
/// | bytes    | length | field                                                  |
/// |----------|-------:|--------------------------------------------------------|
/// | `0`      |      1 | message type = 3                                       |
/// | `1..5`   |      4 | receiver index (the handshake sender's index), `u32` little-endian |
/// | `5..29`  |     24 | XChaCha20-Poly1305 nonce                               |
/// | `29..61` |     32 | cookie (16), encrypted + tag (16)                      |
///
/// ```text
///  0   1          5                     29                    61
/// +---+----------+---------------------+---------------------+
/// |ty | receiver |     nonce (24)      | encrypted cookie(32)|
/// +---+----------+---------------------+---------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieReplyPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl CookieReplyPacket<&[u8]> {
    /// Length of every cookie reply.
    pub const LEN: usize = field::cookie_reply::LEN;
}

impl<T: AsRef<[u8]>> CookieReplyPacket<T> {
    /// Wraps `buffer` without checking its length.
    ///
    /// Accessors may panic until [`Self::check_len`] has succeeded.
    pub const fn new_unchecked(buffer: T) -> Self {
        CookieReplyPacket { buffer }
    }

    /// Wraps `buffer` and checks its length with [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer is exactly `LEN` bytes long:
    /// [`WireError::Truncated`] if shorter, [`WireError::TooLong`] if longer.
    /// The message type byte is not checked.
    pub fn check_len(&self) -> Result<(), WireError> {
        check_exact_len(self.buffer.as_ref().len(), field::cookie_reply::LEN)
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Byte 0, the message type (3 in a valid cookie reply).
    pub fn message_type(&self) -> u8 {
        self.buffer.as_ref()[field::MESSAGE_TYPE]
    }

    /// The sender index of the handshake message this replies to.
    pub fn receiver_index(&self) -> u32 {
        read_u32_le(self.buffer.as_ref(), field::cookie_reply::RECEIVER_INDEX)
    }

    /// The XChaCha20-Poly1305 nonce.
    pub fn nonce(&self) -> &[u8; COOKIE_NONCE_LEN] {
        field_array(self.buffer.as_ref(), field::cookie_reply::NONCE)
    }

    /// The cookie, encrypted, followed by its tag.
    pub fn encrypted_cookie(&self) -> &[u8; COOKIE_LEN + AEAD_TAG_LEN] {
        field_array(self.buffer.as_ref(), field::cookie_reply::ENCRYPTED_COOKIE)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> CookieReplyPacket<T> {
    /// Sets byte 0, the message type.
    pub fn set_message_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::MESSAGE_TYPE] = value;
    }

    /// Sets the receiver index.
    pub fn set_receiver_index(&mut self, value: u32) {
        write_u32_le(
            self.buffer.as_mut(),
            field::cookie_reply::RECEIVER_INDEX,
            value,
        );
    }

    /// Sets the nonce.
    pub fn set_nonce(&mut self, value: &[u8; COOKIE_NONCE_LEN]) {
        *field_array_mut(self.buffer.as_mut(), field::cookie_reply::NONCE) = *value;
    }

    /// Sets the encrypted cookie and its tag.
    pub fn set_encrypted_cookie(&mut self, value: &[u8; COOKIE_LEN + AEAD_TAG_LEN]) {
        *field_array_mut(self.buffer.as_mut(), field::cookie_reply::ENCRYPTED_COOKIE) = *value;
    }

    /// The encrypted cookie and its tag, for in-place encryption.
    pub fn encrypted_cookie_mut(&mut self) -> &mut [u8; COOKIE_LEN + AEAD_TAG_LEN] {
        field_array_mut(self.buffer.as_mut(), field::cookie_reply::ENCRYPTED_COOKIE)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for CookieReplyPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The parsed fields of a cookie reply; see [`CookieReplyPacket`] for the
/// layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieReplyRepr {
    /// The sender index of the handshake message this replies to.
    pub receiver_index: u32,
    /// The XChaCha20-Poly1305 nonce.
    pub nonce: [u8; COOKIE_NONCE_LEN],
    /// The cookie, encrypted, and its tag.
    pub encrypted_cookie: [u8; COOKIE_LEN + AEAD_TAG_LEN],
}

impl CookieReplyRepr {
    /// Reads a cookie reply, checking its length and message type.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &CookieReplyPacket<&T>,
    ) -> Result<CookieReplyRepr, WireError> {
        packet.check_len()?;
        check_type(packet.as_ref(), MessageType::CookieReply)?;
        Ok(CookieReplyRepr {
            receiver_index: packet.receiver_index(),
            nonce: *packet.nonce(),
            encrypted_cookie: *packet.encrypted_cookie(),
        })
    }

    /// The length of the emitted message: always [`CookieReplyPacket::LEN`].
    pub const fn buffer_len(&self) -> usize {
        field::cookie_reply::LEN
    }

    /// Writes the whole message, type byte included, into `packet`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut CookieReplyPacket<&mut T>,
    ) {
        packet.set_message_type(MessageType::CookieReply.into());
        packet.set_receiver_index(self.receiver_index);
        packet.set_nonce(&self.nonce);
        packet.set_encrypted_cookie(&self.encrypted_cookie);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[start, start + 1, ...]`: the distinct byte runs the sample frames
    /// below are made of.
    fn run<const N: usize>(start: u8) -> [u8; N] {
        core::array::from_fn(|i| start.wrapping_add(i as u8))
    }

    #[rustfmt::skip]
    static INITIATION_BYTES: [u8; 153] = [
        // message type
        0x01,
        // sender index 0x12345678, little-endian
        0x78, 0x56, 0x34, 0x12,
        // ephemeral public key
        0xe0, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xeb, 0xec, 0xed, 0xee, 0xef,
        0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
        // encrypted static key and tag
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
        0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f,
        0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
        // encrypted payload (timestamp, incarnation) and tag
        0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f,
        0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f,
        0x60, 0x61, 0x62, 0x63,
        // mac1
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
        // mac2
        0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,
    ];

    #[rustfmt::skip]
    static RESPONSE_BYTES: [u8; 97] = [
        // message type
        0x02,
        // sender index 0x9abcdef0, little-endian
        0xf0, 0xde, 0xbc, 0x9a,
        // receiver index 0x12345678, little-endian
        0x78, 0x56, 0x34, 0x12,
        // ephemeral public key
        0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf,
        0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf,
        // encrypted payload (incarnation) and tag
        0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f,
        0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77,
        // mac1
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
        // mac2 (no cookie)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[rustfmt::skip]
    static COOKIE_REPLY_BYTES: [u8; 61] = [
        // message type
        0x03,
        // receiver index 0x01020304, little-endian
        0x04, 0x03, 0x02, 0x01,
        // nonce
        0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x7b, 0x7c, 0x7d, 0x7e, 0x7f,
        0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
        // encrypted cookie and tag
        0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    ];

    fn initiation_repr() -> InitiationRepr {
        InitiationRepr {
            sender_index: 0x1234_5678,
            ephemeral: run(0xe0),
            encrypted_static: run(0x10),
            encrypted_payload: run(0x40),
            mac1: run(0xa0),
            mac2: run(0xb0),
        }
    }

    fn response_repr() -> ResponseRepr {
        ResponseRepr {
            sender_index: 0x9abc_def0,
            receiver_index: 0x1234_5678,
            ephemeral: run(0xc0),
            encrypted_payload: run(0x60),
            mac1: run(0xa0),
            mac2: [0; MAC_LEN],
        }
    }

    fn cookie_reply_repr() -> CookieReplyRepr {
        CookieReplyRepr {
            receiver_index: 0x0102_0304,
            nonce: run(0x70),
            encrypted_cookie: run(0x88),
        }
    }

    // ---- initiation ----

    #[test]
    fn initiation_deconstruct() {
        let packet = InitiationPacket::new_checked(&INITIATION_BYTES[..]).unwrap();
        assert_eq!(packet.message_type(), 1);
        assert_eq!(packet.sender_index(), 0x1234_5678);
        assert_eq!(packet.ephemeral(), &run::<32>(0xe0));
        assert_eq!(packet.encrypted_static(), &run::<48>(0x10));
        assert_eq!(packet.encrypted_payload(), &run::<36>(0x40));
        assert_eq!(packet.mac1(), &run::<16>(0xa0));
        assert_eq!(packet.mac2(), &run::<16>(0xb0));
        assert_eq!(packet.noise_message(), &INITIATION_BYTES[5..121]);
        assert_eq!(
            packet.noise_message().len(),
            InitiationPacket::NOISE_MESSAGE_LEN
        );
        assert_eq!(InitiationPacket::NOISE_MESSAGE_LEN, 116);
        assert_eq!(packet.mac1_input(), &INITIATION_BYTES[..121]);
        assert_eq!(packet.mac2_input(), &INITIATION_BYTES[..137]);
    }

    #[test]
    fn initiation_construct() {
        let mut bytes = [0xa5; 153];
        let mut packet = InitiationPacket::new_unchecked(&mut bytes[..]);
        packet.set_message_type(1);
        packet.set_sender_index(0x1234_5678);
        packet.set_ephemeral(&run(0xe0));
        packet.set_encrypted_static(&run(0x10));
        packet.set_encrypted_payload(&run(0x40));
        packet.set_mac1(&run(0xa0));
        packet.set_mac2(&run(0xb0));
        assert_eq!(packet.into_inner(), &INITIATION_BYTES[..]);
    }

    #[test]
    fn initiation_construct_noise_message_in_place() {
        let mut bytes = [0xa5; 153];
        let mut packet = InitiationPacket::new_checked(&mut bytes[..]).unwrap();
        packet.set_message_type(1);
        packet.set_sender_index(0x1234_5678);
        packet
            .noise_message_mut()
            .copy_from_slice(&INITIATION_BYTES[5..121]);
        packet.set_mac1(&run(0xa0));
        packet.set_mac2(&run(0xb0));
        assert_eq!(packet.into_inner(), &INITIATION_BYTES[..]);
    }

    #[test]
    fn initiation_parse() {
        let packet = InitiationPacket::new_checked(&INITIATION_BYTES[..]).unwrap();
        assert_eq!(InitiationRepr::parse(&packet), Ok(initiation_repr()));
    }

    #[test]
    fn initiation_emit() {
        let repr = initiation_repr();
        assert_eq!(repr.buffer_len(), InitiationPacket::LEN);
        let mut bytes = [0xa5; 153];
        let mut packet = InitiationPacket::new_checked(&mut bytes[..]).unwrap();
        repr.emit(&mut packet);
        assert_eq!(packet.into_inner(), &INITIATION_BYTES[..]);
    }

    #[test]
    fn initiation_wrong_length() {
        for len in 0..InitiationPacket::LEN {
            let bytes = &INITIATION_BYTES[..len];
            assert_eq!(
                InitiationPacket::new_checked(bytes),
                Err(WireError::Truncated)
            );
            let unchecked = InitiationPacket::new_unchecked(bytes);
            assert_eq!(InitiationRepr::parse(&unchecked), Err(WireError::Truncated));
        }
        let mut long = [0; 154];
        long[..153].copy_from_slice(&INITIATION_BYTES);
        assert_eq!(
            InitiationPacket::new_checked(&long[..]),
            Err(WireError::TooLong)
        );
        let unchecked = InitiationPacket::new_unchecked(&long[..]);
        assert_eq!(InitiationRepr::parse(&unchecked), Err(WireError::TooLong));
    }

    #[test]
    fn initiation_wrong_type() {
        for ty in (0..=255).filter(|&ty| ty != 1) {
            let mut bytes = INITIATION_BYTES;
            bytes[0] = ty;
            let packet = InitiationPacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(InitiationRepr::parse(&packet), Err(WireError::WrongType));
        }
    }

    // ---- response ----

    #[test]
    fn response_deconstruct() {
        let packet = ResponsePacket::new_checked(&RESPONSE_BYTES[..]).unwrap();
        assert_eq!(packet.message_type(), 2);
        assert_eq!(packet.sender_index(), 0x9abc_def0);
        assert_eq!(packet.receiver_index(), 0x1234_5678);
        assert_eq!(packet.ephemeral(), &run::<32>(0xc0));
        assert_eq!(packet.encrypted_payload(), &run::<24>(0x60));
        assert_eq!(packet.mac1(), &run::<16>(0xa0));
        assert_eq!(packet.mac2(), &[0; 16]);
        assert_eq!(packet.noise_message(), &RESPONSE_BYTES[9..65]);
        assert_eq!(
            packet.noise_message().len(),
            ResponsePacket::NOISE_MESSAGE_LEN
        );
        assert_eq!(ResponsePacket::NOISE_MESSAGE_LEN, 56);
        assert_eq!(packet.mac1_input(), &RESPONSE_BYTES[..65]);
        assert_eq!(packet.mac2_input(), &RESPONSE_BYTES[..81]);
    }

    #[test]
    fn response_construct() {
        let mut bytes = [0xa5; 97];
        let mut packet = ResponsePacket::new_unchecked(&mut bytes[..]);
        packet.set_message_type(2);
        packet.set_sender_index(0x9abc_def0);
        packet.set_receiver_index(0x1234_5678);
        packet.set_ephemeral(&run(0xc0));
        packet.set_encrypted_payload(&run(0x60));
        packet.set_mac1(&run(0xa0));
        packet.set_mac2(&[0; 16]);
        assert_eq!(packet.into_inner(), &RESPONSE_BYTES[..]);
    }

    #[test]
    fn response_construct_noise_message_in_place() {
        let mut bytes = [0xa5; 97];
        let mut packet = ResponsePacket::new_checked(&mut bytes[..]).unwrap();
        packet.set_message_type(2);
        packet.set_sender_index(0x9abc_def0);
        packet.set_receiver_index(0x1234_5678);
        packet
            .noise_message_mut()
            .copy_from_slice(&RESPONSE_BYTES[9..65]);
        packet.set_mac1(&run(0xa0));
        packet.set_mac2(&[0; 16]);
        assert_eq!(packet.into_inner(), &RESPONSE_BYTES[..]);
    }

    #[test]
    fn response_parse() {
        let packet = ResponsePacket::new_checked(&RESPONSE_BYTES[..]).unwrap();
        assert_eq!(ResponseRepr::parse(&packet), Ok(response_repr()));
    }

    #[test]
    fn response_emit() {
        let repr = response_repr();
        assert_eq!(repr.buffer_len(), ResponsePacket::LEN);
        let mut bytes = [0xa5; 97];
        let mut packet = ResponsePacket::new_checked(&mut bytes[..]).unwrap();
        repr.emit(&mut packet);
        assert_eq!(packet.into_inner(), &RESPONSE_BYTES[..]);
    }

    #[test]
    fn response_wrong_length() {
        for len in 0..ResponsePacket::LEN {
            let bytes = &RESPONSE_BYTES[..len];
            assert_eq!(
                ResponsePacket::new_checked(bytes),
                Err(WireError::Truncated)
            );
            let unchecked = ResponsePacket::new_unchecked(bytes);
            assert_eq!(ResponseRepr::parse(&unchecked), Err(WireError::Truncated));
        }
        let mut long = [0; 98];
        long[..97].copy_from_slice(&RESPONSE_BYTES);
        assert_eq!(
            ResponsePacket::new_checked(&long[..]),
            Err(WireError::TooLong)
        );
    }

    #[test]
    fn response_wrong_type() {
        for ty in (0..=255).filter(|&ty| ty != 2) {
            let mut bytes = RESPONSE_BYTES;
            bytes[0] = ty;
            let packet = ResponsePacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(ResponseRepr::parse(&packet), Err(WireError::WrongType));
        }
    }

    // ---- cookie reply ----

    #[test]
    fn cookie_reply_deconstruct() {
        let packet = CookieReplyPacket::new_checked(&COOKIE_REPLY_BYTES[..]).unwrap();
        assert_eq!(packet.message_type(), 3);
        assert_eq!(packet.receiver_index(), 0x0102_0304);
        assert_eq!(packet.nonce(), &run::<24>(0x70));
        assert_eq!(packet.encrypted_cookie(), &run::<32>(0x88));
    }

    #[test]
    fn cookie_reply_construct() {
        let mut bytes = [0xa5; 61];
        let mut packet = CookieReplyPacket::new_unchecked(&mut bytes[..]);
        packet.set_message_type(3);
        packet.set_receiver_index(0x0102_0304);
        packet.set_nonce(&run(0x70));
        packet.set_encrypted_cookie(&run(0x88));
        assert_eq!(packet.into_inner(), &COOKIE_REPLY_BYTES[..]);
    }

    #[test]
    fn cookie_reply_encrypt_in_place() {
        let mut bytes = COOKIE_REPLY_BYTES;
        let mut packet = CookieReplyPacket::new_checked(&mut bytes[..]).unwrap();
        packet.encrypted_cookie_mut()[31] = 0;
        assert_eq!(packet.encrypted_cookie()[..31], run::<31>(0x88));
        assert_eq!(packet.as_ref()[60], 0);
    }

    #[test]
    fn cookie_reply_parse() {
        let packet = CookieReplyPacket::new_checked(&COOKIE_REPLY_BYTES[..]).unwrap();
        assert_eq!(CookieReplyRepr::parse(&packet), Ok(cookie_reply_repr()));
    }

    #[test]
    fn cookie_reply_emit() {
        let repr = cookie_reply_repr();
        assert_eq!(repr.buffer_len(), CookieReplyPacket::LEN);
        let mut bytes = [0xa5; 61];
        let mut packet = CookieReplyPacket::new_checked(&mut bytes[..]).unwrap();
        repr.emit(&mut packet);
        assert_eq!(packet.into_inner(), &COOKIE_REPLY_BYTES[..]);
    }

    #[test]
    fn cookie_reply_wrong_length() {
        for len in 0..CookieReplyPacket::LEN {
            let bytes = &COOKIE_REPLY_BYTES[..len];
            assert_eq!(
                CookieReplyPacket::new_checked(bytes),
                Err(WireError::Truncated)
            );
            let unchecked = CookieReplyPacket::new_unchecked(bytes);
            assert_eq!(
                CookieReplyRepr::parse(&unchecked),
                Err(WireError::Truncated)
            );
        }
        let mut long = [0; 62];
        long[..61].copy_from_slice(&COOKIE_REPLY_BYTES);
        assert_eq!(
            CookieReplyPacket::new_checked(&long[..]),
            Err(WireError::TooLong)
        );
    }

    #[test]
    fn cookie_reply_wrong_type() {
        for ty in (0..=255).filter(|&ty| ty != 3) {
            let mut bytes = COOKIE_REPLY_BYTES;
            bytes[0] = ty;
            let packet = CookieReplyPacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(CookieReplyRepr::parse(&packet), Err(WireError::WrongType));
        }
    }

    proptest::proptest! {
        /// No input makes the checked views or the parsers panic, and
        /// whatever parses re-emits byte for byte.
        #[test]
        fn handshake_parsers_total(
            len in proptest::prop_oneof![
                proptest::strategy::Just(61_usize),
                proptest::strategy::Just(97),
                proptest::strategy::Just(153),
                0_usize..160,
            ],
            message_type in 0_u8..5,
            body in proptest::array::uniform::<_, 160>(proptest::num::u8::ANY),
        ) {
            // Biased towards the valid lengths and types, so that the
            // re-emit branches below run often.
            let mut bytes = body;
            bytes[0] = message_type;
            let bytes = &bytes[..len];
            if let Ok(packet) = InitiationPacket::new_checked(bytes) {
                if let Ok(repr) = InitiationRepr::parse(&packet) {
                    let mut out = [0; 153];
                    repr.emit(&mut InitiationPacket::new_unchecked(&mut out[..]));
                    proptest::prop_assert_eq!(&out[..], bytes);
                }
            }
            if let Ok(packet) = ResponsePacket::new_checked(bytes) {
                if let Ok(repr) = ResponseRepr::parse(&packet) {
                    let mut out = [0; 97];
                    repr.emit(&mut ResponsePacket::new_unchecked(&mut out[..]));
                    proptest::prop_assert_eq!(&out[..], bytes);
                }
            }
            if let Ok(packet) = CookieReplyPacket::new_checked(bytes) {
                if let Ok(repr) = CookieReplyRepr::parse(&packet) {
                    let mut out = [0; 61];
                    repr.emit(&mut CookieReplyPacket::new_unchecked(&mut out[..]));
                    proptest::prop_assert_eq!(&out[..], bytes);
                }
            }
        }
    }
}
