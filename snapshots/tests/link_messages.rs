//! Snapshots of every link message type, as two real links produce it in
//! the scripted exchanges of [`Exchange::run`], for the cookie reply
//! [`Exchange::run_under_load`] and for the liveness probe
//! [`Exchange::run_probed`] (fixed keys, RNG seeds and clock: the bytes
//! are the same on every run).
//!
//! A change to any of these snapshots is a change to the bytes on the wire:
//! review it as one (see `snapshots/README.md`).

use sdt_core::wire::MessageType;
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

/// The cookie reply b sends under load, in place of a response, in the
/// scripted exchange of [`Exchange::run_under_load`].
#[test]
fn cookie_reply() {
    let x = Exchange::run_under_load();
    insta::assert_snapshot!(describe(x.frame(Side::B, MessageType::CookieReply)));
}

/// The initiation a resends after b's cookie reply: the same message with
/// `mac2` set from the cookie.
#[test]
fn initiation_with_mac2() {
    let x = Exchange::run_under_load();
    let resent = x
        .frames
        .iter()
        .filter(|f| f.sender == Side::A && f.kind() == MessageType::Initiation)
        .nth(1)
        .expect("a resent its initiation");
    insta::assert_snapshot!(describe(resent));
}

/// The liveness probe a sends when b leaves its data unanswered for
/// `PROBE_AFTER`, in the scripted exchange of [`Exchange::run_probed`].
#[test]
fn probe() {
    let x = Exchange::run_probed();
    insta::assert_snapshot!(describe(x.frame(Side::A, MessageType::Probe)));
}

/// The probed exchange: the scripted one, then a's unanswered frame, its
/// probe, and b's keepalive in answer.
#[test]
fn transcript_probed() {
    let x = Exchange::run_probed();
    insta::assert_snapshot!(x.transcript());
}

/// The exchange under load, from `connect` to one data frame each way.
#[test]
fn transcript_under_load() {
    let x = Exchange::run_under_load();
    let back = x.data_frame(Side::B, B_PLAINTEXT.len());
    assert_eq!(back.opened.as_deref(), Some(B_PLAINTEXT));
    insta::assert_snapshot!(x.transcript());
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
    for run in [
        Exchange::run,
        Exchange::run_under_load,
        Exchange::run_probed,
    ] {
        let (x, y) = (run(), run());
        assert_eq!(x.frames, y.frames);
        assert_eq!(x.transcript(), y.transcript());
    }
}
