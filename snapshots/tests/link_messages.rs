//! Snapshots of every link message type, as two real links produce it in
//! the scripted exchange of [`Exchange::run`] (fixed keys, RNG seeds and
//! clock: the bytes are the same on every run).
//!
//! A change to any of these snapshots is a change to the bytes on the wire:
//! review it as one (see `snapshots/README.md`).

use sdt_core::wire::{
    handshake::{AEAD_TAG_LEN, COOKIE_LEN, COOKIE_NONCE_LEN},
    CookieReplyPacket, CookieReplyRepr, MessageType,
};
use sdt_snapshots::{
    describe_frame, describe_plaintext, Exchange, Frame, Side, A_PLAINTEXT, B_PLAINTEXT,
};

/// How a captured frame is snapshotted: who sent it when, then the
/// decoding of its bytes.
fn describe(frame: &Frame) -> String {
    format!(
        "sent by {} to {} at +{}ms\n{}",
        frame.sender.name(),
        frame.sender.other().name(),
        frame.sent_at.as_millis(),
        describe_frame(&frame.bytes)
    )
}

#[test]
fn initiation() {
    let x = Exchange::run();
    insta::assert_snapshot!(describe(x.frame(Side::A, MessageType::Initiation)));
}

#[test]
fn response() {
    let x = Exchange::run();
    insta::assert_snapshot!(describe(x.frame(Side::B, MessageType::Response)));
}

/// The empty data frame the initiator sends as soon as it reads the
/// response, which confirms the session to the responder.
#[test]
fn keepalive() {
    let x = Exchange::run();
    insta::assert_snapshot!(describe(x.data_frame(Side::A, 0)));
}

/// A data frame with a 1-byte service header and a short payload, and its
/// plaintext as the receiver opened it.
#[test]
fn data() {
    let x = Exchange::run();
    let frame = x.data_frame(Side::A, A_PLAINTEXT.len());
    let opened = frame.opened.as_deref().expect("b opened the frame");
    assert_eq!(opened, A_PLAINTEXT);
    let text = format!(
        "{}opened by b:\n{}",
        describe(frame),
        describe_plaintext(opened)
    );
    insta::assert_snapshot!(text);
}

/// The cookie reply. sdt-core does not send cookie replies yet (it drops
/// any it receives as unexpected), so no link can produce one: this frame is
/// emitted by `CookieReplyRepr` from fixed field values, and pins the
/// layout only, not any cookie computation.
#[test]
fn cookie_reply() {
    let mut nonce = [0u8; COOKIE_NONCE_LEN];
    for (i, byte) in nonce.iter_mut().enumerate() {
        *byte = 0xa0 + i as u8;
    }
    let mut encrypted_cookie = [0u8; COOKIE_LEN + AEAD_TAG_LEN];
    for (i, byte) in encrypted_cookie.iter_mut().enumerate() {
        *byte = 0x10 + i as u8;
    }
    let repr = CookieReplyRepr {
        receiver_index: 0x1234_0000,
        nonce,
        encrypted_cookie,
    };
    let mut bytes = vec![0u8; repr.buffer_len()];
    repr.emit(&mut CookieReplyPacket::new_checked(&mut bytes[..]).unwrap());
    let text = format!(
        "built by CookieReplyRepr::emit from fixed fields (no link sends one yet)\n{}",
        describe_frame(&bytes)
    );
    insta::assert_snapshot!(text);
}

/// The whole exchange: which side sent what, what each receiver made of it
/// and every LinkEvent, from `connect` to one data frame each way.
#[test]
fn transcript() {
    let x = Exchange::run();
    let back = x.data_frame(Side::B, B_PLAINTEXT.len());
    assert_eq!(back.opened.as_deref(), Some(B_PLAINTEXT));
    insta::assert_snapshot!(x.transcript());
}

/// Two runs produce the same bytes: nothing in the exchange depends on
/// anything but its fixed inputs.
#[test]
fn exchange_is_deterministic() {
    let (x, y) = (Exchange::run(), Exchange::run());
    assert_eq!(x.frames, y.frames);
    assert_eq!(x.transcript(), y.transcript());
}
