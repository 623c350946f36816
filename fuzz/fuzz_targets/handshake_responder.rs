//! The responder's side of the handshake: Noise message 1, alone and inside
//! initiation packets that get past `mac1`.
//!
//! Byte 0 picks the mode (low two bits) and flags; the rest is the body.
//!
//! - mode 0: the body is a Noise message 1 of any length, read by
//!   `noise::Responder::read_message` with B's key.
//! - mode 1: the body is cut into records of 4 + 116 bytes (sender index,
//!   Noise message; a short last record is padded with zeros), each wrapped
//!   into an initiation packet with a valid `mac1` for B and handed to link
//!   B, which knows A as its peer.
//! - mode 2: the body is cut into records of 1 + 32 + 20 + 4 bytes (flags,
//!   ephemeral secret, payload, sender index), each turned into a real
//!   initiation by the harness: from A (B's peer) if the record's bit 0 is
//!   set, else from a stranger whose key is the ephemeral bytes reversed;
//!   the payload (timestamp and incarnation) is the fuzzer's. If B accepts
//!   it, B's response must complete the handshake for the initiator.
//! - mode 3: like mode 1, on link A while A waits for the response to its
//!   own initiation (crossing handshakes).
//!
//! Flags in byte 0: bit 4 puts B under load (cookies needed), bit 5 lets B
//! know A's endpoint.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sdt_core::crypto::HASH_LEN;
use sdt_core::link::Received;
use sdt_core::noise::{Initiator, Responder};
use sdt_core::wire::{InitiationPacket, MessageType, ResponsePacket};
use sdt_fuzz::{
    drain_link, fix_mac1, secret, service_link, LinkPair, Stage, A_ADDR, B_ADDR, KEY_A, KEY_B,
};

const NOISE_LEN: usize = InitiationPacket::<&[u8]>::NOISE_MESSAGE_LEN;
const INITIATION_LEN: usize = InitiationPacket::<&[u8]>::LEN;

fuzz_target!(|data: &[u8]| {
    let Some((&head, body)) = data.split_first() else {
        return;
    };
    match head & 3 {
        0 => {
            let mut msg = body.to_vec();
            if let Ok((responder, payload)) =
                Responder::read_message(secret(KEY_B).as_secret(), &mut msg)
            {
                // Only a holder of a private key gets here (seeds).
                assert!(payload.end <= msg.len());
                let _ = responder.remote_static();
            }
        }
        1 => wrapped(head, body, false),
        2 => built(head, body),
        _ => wrapped(head, body, true),
    }
});

/// The pair for modes 1 to 3.
fn pair(head: u8, stage: Stage) -> LinkPair {
    let mut pair = LinkPair::new(stage, head & 0x20 != 0);
    if head & 0x10 != 0 {
        pair.b.set_load_threshold(0);
        pair.a.set_load_threshold(0);
    }
    pair
}

fn wrapped(head: u8, body: &[u8], to_a: bool) {
    let stage = if to_a { Stage::Initiated } else { Stage::Fresh };
    let mut pair = pair(head, stage);
    let mut now = pair.now;
    for record in body.chunks(4 + NOISE_LEN).take(8) {
        let mut d = [0u8; INITIATION_LEN];
        let mut packet = InitiationPacket::new_unchecked(&mut d[..]);
        packet.set_message_type(MessageType::Initiation.into());
        let mut index = [0u8; 4];
        let n = record.len().min(4);
        index[..n].copy_from_slice(&record[..n]);
        packet.set_sender_index(u32::from_le_bytes(index));
        let noise = record.get(4..).unwrap_or_default();
        packet.noise_message_mut()[..noise.len()].copy_from_slice(noise);
        let (receiver, from) = if to_a {
            (&mut pair.a, B_ADDR)
        } else {
            (&mut pair.b, A_ADDR)
        };
        let public = receiver.public_key().to_owned();
        fix_mac1(&mut d, &public);
        let _ = receiver.handle_datagram(now, from, &mut d);
        service_link(receiver, now);
        now += Duration::from_millis(1);
    }
}

fn built(head: u8, body: &[u8]) {
    let mut pair = pair(head, Stage::Fresh);
    let mut now = pair.now;
    let b_public = *pair.b.public_key().as_bytes();
    for record in body.chunks_exact(1 + 32 + 20 + 4).take(8) {
        let flags = record[0];
        let ephemeral: [u8; 32] = record[1..33].try_into().unwrap_or_default();
        let payload = &record[33..53];
        let index = u32::from_le_bytes(record[53..57].try_into().unwrap_or_default());
        let from_a = flags & 1 != 0;
        let initiator = if from_a {
            secret(KEY_A)
        } else {
            let mut k = ephemeral;
            k.reverse();
            sdt_core::key::PrivateKey::from_bytes(k)
        };
        let mut d = [0u8; INITIATION_LEN];
        let mut packet = InitiationPacket::new_unchecked(&mut d[..]);
        packet.set_message_type(MessageType::Initiation.into());
        packet.set_sender_index(index);
        let ephemeral = sdt_core::key::PrivateKey::from_bytes(ephemeral);
        let Ok((noise, len)) = Initiator::write_message(
            initiator.as_secret(),
            &b_public,
            ephemeral.as_secret().clone(),
            payload,
            packet.noise_message_mut(),
        ) else {
            // A low-order result cannot come from a clamped secret and B's
            // real key; nothing else fails.
            panic!("writing message 1");
        };
        assert_eq!(len, NOISE_LEN);
        fix_mac1(&mut d, pair.b.public_key());
        let result = pair.b.handle_datagram(now, A_ADDR, &mut d);
        let sent = drain_link(&mut pair.b, now);
        if let Ok(Received::Control { .. }) = result {
            let known = initiator.public_key() == secret(KEY_A).public_key();
            assert!(known, "a stranger's initiation accepted");
            // B answers at once; its response completes the handshake.
            let response = sent
                .iter()
                .find(|m| m.first() == Some(&2))
                .expect("an accepted initiation is answered");
            assert_eq!(response.len(), ResponsePacket::<&[u8]>::LEN);
            let mut r = response.clone();
            let mut packet = ResponsePacket::new_checked(&mut r[..]).expect("response length");
            assert_eq!(packet.receiver_index(), index);
            let (_, range) = noise
                .read_message(
                    initiator.as_secret(),
                    &[0u8; HASH_LEN],
                    packet.noise_message_mut(),
                )
                .expect("the initiator reads B's response");
            assert_eq!(range.len(), 8, "the response carries the incarnation");
        } else {
            assert!(
                !sent.iter().any(|m| m.first() == Some(&2)),
                "a refused initiation answered"
            );
        }
        service_link(&mut pair.b, now);
        now += Duration::from_millis(1);
    }
}
