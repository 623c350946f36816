//! Zero-copy views and parsed representations of every frame on the link.
//!
//! Each message kind comes as a pair, in the style of smoltcp's `wire` module:
//!
//! - a *packet*, such as [`DataPacket<T>`], is a zero-copy view over a buffer
//!   `T: AsRef<[u8]>`. `new_unchecked` wraps any buffer; `new_checked` (or
//!   `check_len` on an unchecked view) verifies the length. **Once
//!   `check_len()` has returned `Ok`, no accessor panics.** On a view made
//!   with `new_unchecked` over a buffer that is too short, accessors may
//!   panic; never do that with bytes from the network. Setters exist when
//!   `T: AsMut<[u8]>`.
//! - a *repr*, such as [`DataRepr`], holds the parsed fields. `parse` reads
//!   one from a packet and validates it, `buffer_len` says how many bytes it
//!   needs and `emit` writes it into a packet.
//!
//! The plaintext inside a data frame starts with a [`ServiceHeaderRepr`],
//! which has no packet view: it is parsed from and emitted into plain slices.
//!
//! # Byte order
//!
//! Protocol integers (the sender and receiver indices and the data frame
//! counter) are **little-endian**, matching the nonce encoding of Noise's
//! ChaChaPoly, as in WireGuard. Channel numbers, IP addresses and ports are
//! **big-endian** (network order).
//!
//! # Message types
//!
//! Byte 0 of every link datagram is the [`MessageType`]:
//!
//! | byte 0 | message                | length    | view                    |
//! |--------|------------------------|-----------|-------------------------|
//! | 1      | handshake initiation   | 153       | [`InitiationPacket`]    |
//! | 2      | handshake response     | 97        | [`ResponsePacket`]      |
//! | 3      | cookie reply           | 61        | [`CookieReplyPacket`]   |
//! | 4      | transport data         | 29 or more| [`DataPacket`]          |
//! | 5      | liveness probe         | 29        | [`ProbePacket`]         |
//!
//! Data frames and probes are sealed under the session keys (their header,
//! type byte included, is the AEAD's associated data) and share the
//! session's counter and anti-replay window. A probe is a link control
//! message: it asks the peer to answer with a keepalive (an empty data
//! frame), and carries nothing up to the services.
//!
//! A data frame costs [`DataPacket::OVERHEAD`] = 29 bytes around its
//! plaintext, and the service header adds 1 byte for a direct service
//! (service id 0..=6, no channel, no destination): 30 bytes in all.

use core::fmt;

pub mod data;
pub mod handshake;
pub mod probe;
pub mod service;

pub use data::{DataPacket, DataRepr};
pub use handshake::{
    CookieReplyPacket, CookieReplyRepr, HandshakeMacs, InitiationPacket, InitiationRepr,
    ResponsePacket, ResponseRepr, INCARNATION_LEN, INITIATION_PAYLOAD_LEN, RESPONSE_PAYLOAD_LEN,
};
pub use probe::{ProbePacket, ProbeRepr};
pub use service::{ServiceHeaderRepr, ServiceId};

/// A range of byte offsets inside a frame.
type Field = core::ops::Range<usize>;

/// Why a frame could not be read or written.
///
/// What the caller must do: on any error from a parser, drop the datagram
/// silently (never answer it: an answer would let anyone probe the tunnel)
/// and carry on; none of these is fatal to a session.
/// [`WireError::BufferTooSmall`] comes only from emitting, and means the
/// caller passed a buffer shorter than the repr's `buffer_len()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes end before the message or field they must hold.
    Truncated,
    /// The datagram is longer than its fixed-size message type allows.
    TooLong,
    /// Byte 0 is not a known [`MessageType`].
    UnknownType,
    /// Byte 0 is a known message type, but not the one being parsed.
    WrongType,
    /// A field holds a value the format forbids, or a non-canonical encoding
    /// of a value that has a canonical one.
    Malformed,
    /// The output buffer is too small for what was to be written into it.
    BufferTooSmall,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated",
            WireError::TooLong => "too long",
            WireError::UnknownType => "unknown message type",
            WireError::WrongType => "wrong message type",
            WireError::Malformed => "malformed",
            WireError::BufferTooSmall => "buffer too small",
        })
    }
}

impl core::error::Error for WireError {}

/// The kind of a link datagram, held in its byte 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// Handshake initiation, Noise message 1: [`InitiationPacket`].
    Initiation = 1,
    /// Handshake response, Noise message 2: [`ResponsePacket`].
    Response = 2,
    /// Cookie reply to a handshake sent under load: [`CookieReplyPacket`].
    CookieReply = 3,
    /// Transport data, encrypted under the session keys: [`DataPacket`].
    Data = 4,
    /// Liveness probe, sealed under the session keys: [`ProbePacket`].
    Probe = 5,
}

impl MessageType {
    /// The type of the datagram `datagram`, read from its byte 0.
    ///
    /// Only byte 0 is looked at: the length is checked by the view of the
    /// type found. An empty datagram is [`WireError::Truncated`], an unknown
    /// byte [`WireError::UnknownType`].
    pub fn of(datagram: &[u8]) -> Result<MessageType, WireError> {
        let byte = *datagram.first().ok_or(WireError::Truncated)?;
        MessageType::try_from(byte)
    }
}

impl TryFrom<u8> for MessageType {
    type Error = WireError;

    fn try_from(value: u8) -> Result<Self, WireError> {
        match value {
            1 => Ok(MessageType::Initiation),
            2 => Ok(MessageType::Response),
            3 => Ok(MessageType::CookieReply),
            4 => Ok(MessageType::Data),
            5 => Ok(MessageType::Probe),
            _ => Err(WireError::UnknownType),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(value: MessageType) -> u8 {
        value as u8
    }
}

/// `Ok` if byte 0 of `data` is `expected`: [`WireError::WrongType`] if it is
/// another byte, [`WireError::Truncated`] if there is no byte 0.
fn check_type(data: &[u8], expected: MessageType) -> Result<(), WireError> {
    match data.first() {
        Some(&byte) if byte == u8::from(expected) => Ok(()),
        Some(_) => Err(WireError::WrongType),
        None => Err(WireError::Truncated),
    }
}

/// `data[field]` as an array reference.
///
/// Panics only if `data` is shorter than `field.end` (ruled out by the
/// views' `check_len`) or `field` is not `N` long (ruled out by the field
/// tables, which the tests read through every accessor).
fn field_array<const N: usize>(data: &[u8], field: Field) -> &[u8; N] {
    match <&[u8; N]>::try_from(&data[field]) {
        Ok(array) => array,
        Err(_) => panic!("wire field length does not match its array"),
    }
}

/// `&mut data[field]` as an array reference; panics like [`field_array`].
fn field_array_mut<const N: usize>(data: &mut [u8], field: Field) -> &mut [u8; N] {
    match <&mut [u8; N]>::try_from(&mut data[field]) {
        Ok(array) => array,
        Err(_) => panic!("wire field length does not match its array"),
    }
}

/// The little-endian `u32` at `field` (4 bytes).
fn read_u32_le(data: &[u8], field: Field) -> u32 {
    u32::from_le_bytes(*field_array(data, field))
}

/// Writes `value` little-endian at `field` (4 bytes).
fn write_u32_le(data: &mut [u8], field: Field, value: u32) {
    *field_array_mut(data, field) = value.to_le_bytes();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_of() {
        assert_eq!(MessageType::of(&[1]), Ok(MessageType::Initiation));
        assert_eq!(MessageType::of(&[2, 0xff]), Ok(MessageType::Response));
        assert_eq!(MessageType::of(&[3, 0, 0]), Ok(MessageType::CookieReply));
        assert_eq!(MessageType::of(&[4; 29]), Ok(MessageType::Data));
        assert_eq!(MessageType::of(&[5; 29]), Ok(MessageType::Probe));
        assert_eq!(MessageType::of(&[]), Err(WireError::Truncated));
        for byte in [0, 6, 0x30, 0x7f, 0x80, 0xff] {
            assert_eq!(MessageType::of(&[byte, 0]), Err(WireError::UnknownType));
        }
    }

    #[test]
    fn message_type_byte_round_trips() {
        for byte in 0..=255_u8 {
            match MessageType::try_from(byte) {
                Ok(ty) => assert_eq!(u8::from(ty), byte),
                Err(err) => {
                    assert_eq!(err, WireError::UnknownType);
                    assert!(!(1..=5).contains(&byte));
                }
            }
        }
    }

    #[test]
    fn error_messages() {
        use std::string::ToString;
        let cases = [
            (WireError::Truncated, "truncated"),
            (WireError::TooLong, "too long"),
            (WireError::UnknownType, "unknown message type"),
            (WireError::WrongType, "wrong message type"),
            (WireError::Malformed, "malformed"),
            (WireError::BufferTooSmall, "buffer too small"),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
    }
}
