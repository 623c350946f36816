//! Golden frames: sample datagrams and plaintexts kept as files in
//! `test_samples/`. Each is decoded, the decoding is snapshotted (in
//! `snapshots/`), and the repr is re-encoded and compared byte for byte
//! with the file.
//!
//! The ciphertexts, keys and MACs in the samples are arbitrary bytes: this
//! layer does not look inside them.

use std::fmt::Write;
use std::string::String;
use std::vec;

use super::*;

/// `bytes` as lowercase hex, no separators; `(empty)` for no bytes.
fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return String::from("(empty)");
    }
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// Decodes the link datagram `bytes`, checks that its repr re-emits it byte
/// for byte, and describes it field by field.
fn decode_datagram(bytes: &[u8]) -> String {
    let mut text = String::new();
    match MessageType::of(bytes).unwrap() {
        MessageType::Initiation => {
            let packet = InitiationPacket::new_checked(bytes).unwrap();
            let repr = InitiationRepr::parse(&packet).unwrap();
            let mut out = vec![0; repr.buffer_len()];
            repr.emit(&mut InitiationPacket::new_checked(&mut out[..]).unwrap());
            assert_eq!(out, bytes, "initiation does not re-emit byte for byte");
            writeln!(text, "initiation, length {}", bytes.len()).unwrap();
            writeln!(text, "sender_index: {:#010x}", repr.sender_index).unwrap();
            writeln!(text, "ephemeral: {}", hex(&repr.ephemeral)).unwrap();
            writeln!(text, "encrypted_static: {}", hex(&repr.encrypted_static)).unwrap();
            writeln!(text, "encrypted_payload: {}", hex(&repr.encrypted_payload)).unwrap();
            writeln!(text, "mac1: {}", hex(&repr.mac1)).unwrap();
            writeln!(text, "mac2: {}", hex(&repr.mac2)).unwrap();
        }
        MessageType::Response => {
            let packet = ResponsePacket::new_checked(bytes).unwrap();
            let repr = ResponseRepr::parse(&packet).unwrap();
            let mut out = vec![0; repr.buffer_len()];
            repr.emit(&mut ResponsePacket::new_checked(&mut out[..]).unwrap());
            assert_eq!(out, bytes, "response does not re-emit byte for byte");
            writeln!(text, "response, length {}", bytes.len()).unwrap();
            writeln!(text, "sender_index: {:#010x}", repr.sender_index).unwrap();
            writeln!(text, "receiver_index: {:#010x}", repr.receiver_index).unwrap();
            writeln!(text, "ephemeral: {}", hex(&repr.ephemeral)).unwrap();
            writeln!(text, "encrypted_payload: {}", hex(&repr.encrypted_payload)).unwrap();
            writeln!(text, "mac1: {}", hex(&repr.mac1)).unwrap();
            writeln!(text, "mac2: {}", hex(&repr.mac2)).unwrap();
        }
        MessageType::CookieReply => {
            let packet = CookieReplyPacket::new_checked(bytes).unwrap();
            let repr = CookieReplyRepr::parse(&packet).unwrap();
            let mut out = vec![0; repr.buffer_len()];
            repr.emit(&mut CookieReplyPacket::new_checked(&mut out[..]).unwrap());
            assert_eq!(out, bytes, "cookie reply does not re-emit byte for byte");
            writeln!(text, "cookie reply, length {}", bytes.len()).unwrap();
            writeln!(text, "receiver_index: {:#010x}", repr.receiver_index).unwrap();
            writeln!(text, "nonce: {}", hex(&repr.nonce)).unwrap();
            writeln!(text, "encrypted_cookie: {}", hex(&repr.encrypted_cookie)).unwrap();
        }
        MessageType::Data => {
            let packet = DataPacket::new_checked(bytes).unwrap();
            let repr = DataRepr::parse(&packet).unwrap();
            // The repr covers the header; the AEAD writes the rest in place.
            let mut out = vec![0; repr.buffer_len(packet.payload().len())];
            let mut copy = DataPacket::new_checked(&mut out[..]).unwrap();
            repr.emit(&mut copy);
            copy.payload_mut().copy_from_slice(packet.payload());
            copy.tag_mut().copy_from_slice(packet.tag());
            assert_eq!(out, bytes, "data frame does not re-emit byte for byte");
            writeln!(text, "data, length {}", bytes.len()).unwrap();
            writeln!(text, "receiver_index: {:#010x}", repr.receiver_index).unwrap();
            writeln!(text, "counter: {}", repr.counter).unwrap();
            writeln!(text, "header (associated data): {}", hex(packet.header())).unwrap();
            let payload = packet.payload();
            writeln!(
                text,
                "ciphertext, length {}: {}",
                payload.len(),
                hex(payload)
            )
            .unwrap();
            writeln!(text, "tag: {}", hex(packet.tag())).unwrap();
        }
    }
    text
}

/// Decodes the data frame plaintext `bytes` (service header, then customer
/// payload), checks that the header re-emits byte for byte, and describes
/// it.
fn decode_plaintext(bytes: &[u8]) -> String {
    let (repr, len) = ServiceHeaderRepr::parse(bytes).unwrap();
    let mut out = vec![0; repr.buffer_len()];
    assert_eq!(repr.emit(&mut out), Ok(len));
    assert_eq!(
        out,
        bytes[..len],
        "service header does not re-emit byte for byte"
    );
    let mut text = String::new();
    writeln!(text, "service header, length {len}: {}", hex(&bytes[..len])).unwrap();
    writeln!(text, "service: {}", repr.service).unwrap();
    writeln!(text, "from_entry: {}", repr.from_entry).unwrap();
    writeln!(text, "channel: {:?}", repr.channel).unwrap();
    writeln!(text, "destination: {:?}", repr.destination).unwrap();
    let payload = &bytes[len..];
    writeln!(
        text,
        "customer payload, length {}: {}",
        payload.len(),
        hex(payload)
    )
    .unwrap();
    text
}

macro_rules! golden {
    ($test:ident, $file:literal, $decode:ident) => {
        #[test]
        fn $test() {
            let bytes = include_bytes!(concat!("test_samples/", $file));
            insta::assert_snapshot!(stringify!($test), $decode(bytes));
        }
    };
}

golden!(initiation, "initiation.bin", decode_datagram);
golden!(response, "response.bin", decode_datagram);
golden!(cookie_reply, "cookie_reply.bin", decode_datagram);
golden!(data_keepalive, "data_keepalive.bin", decode_datagram);
golden!(data, "data.bin", decode_datagram);
golden!(service_direct, "service_direct.bin", decode_plaintext);
golden!(
    service_channel_v4,
    "service_channel_v4.bin",
    decode_plaintext
);
golden!(service_max, "service_max.bin", decode_plaintext);
