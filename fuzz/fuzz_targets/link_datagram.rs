//! Any datagram from the network into a `Link`, and into a `Node`.
//!
//! Input: see [`sdt_fuzz::Input`]. The scenario byte (mod 7) picks the
//! state and who receives the chunks, each chunk being one datagram:
//!
//! | scenario | state of the A-B pair | receiver |
//! |---|---|---|
//! | 0 | fresh | B (responder) |
//! | 1 | A sent its initiation | A |
//! | 2 | B answered it (B's session unconfirmed) | B |
//! | 3 | established | B |
//! | 4 | established | A |
//! | 5 | node pair, established, channels open | node Y, raw datagrams |
//! | 6 | node pair, established, channels open | node Y, each chunk a plaintext sealed by X |
//!
//! Flags: bit 0 rewrites `mac1` of initiations and responses for the
//! receiver, so they reach Noise (scenario 6: delivers every frame twice);
//! bit 1 puts the links under load (every handshake needs a cookie); bits
//! 2-3 step the clock between chunks (0, 1 ms, 5 s, 3 min); bit 4 lets B
//! know A's endpoint.
//!
//! Asserts, besides no panic: a data frame (keepalives included) or a
//! liveness probe is accepted only if it is byte for byte one the sender's
//! real session seals (the fuzzer cannot forge a tag; real frames come from the seeds);
//! a frame X really sealed is never refused by Y's link, and its replay is;
//! outputs name bytes inside the caller's buffer.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sdt_core::link::{DropReason, Received};
use sdt_core::node::Dropped;
use sdt_core::wire::DataPacket;
use sdt_fuzz::{
    fix_mac1, probe_sealed_by, sealed_by, service_link, Input, LinkPair, NodePair, Stage, A_ADDR,
    B_ADDR,
};

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    match input.scenario % 7 {
        0 => link_case(&input, Stage::Fresh, true),
        1 => link_case(&input, Stage::Initiated, false),
        2 => link_case(&input, Stage::Answered, true),
        3 => link_case(&input, Stage::Established, true),
        4 => link_case(&input, Stage::Established, false),
        5 => node_raw(&input),
        _ => node_sealed(&input),
    }
});

fn step(flags: u8) -> Duration {
    match (flags >> 2) & 3 {
        0 => Duration::ZERO,
        1 => Duration::from_millis(1),
        2 => Duration::from_secs(5),
        _ => Duration::from_secs(180),
    }
}

fn link_case(input: &Input, stage: Stage, to_b: bool) {
    let mut pair = LinkPair::new(stage, input.flags & 0x10 != 0);
    if input.flags & 2 != 0 {
        pair.a.set_load_threshold(0);
        pair.b.set_load_threshold(0);
    }
    let mut now = pair.now;
    for chunk in &input.chunks {
        let (receiver, from) = if to_b {
            (&mut pair.b, A_ADDR)
        } else {
            (&mut pair.a, B_ADDR)
        };
        let mut d = chunk.to_vec();
        if input.flags & 1 != 0 {
            let public = receiver.public_key().to_owned();
            fix_mac1(&mut d, &public);
        }
        let original = d.clone();
        let result = receiver.handle_datagram(now, from, &mut d);
        if let Ok(Received::Data { payload, .. }) = &result {
            assert!(!payload.is_empty() && payload.end <= d.len(), "{payload:?}");
        }
        if result.is_ok() && original.first() == Some(&4) {
            // Authenticated: it must be a frame the sender really seals.
            let mut reference = LinkPair::new(Stage::Established, false);
            let now0 = reference.now;
            let genuine = if to_b {
                sealed_by(&mut reference.a, reference.a_peer, now0, &original)
            } else {
                sealed_by(&mut reference.b, reference.b_peer, now0, &original)
            };
            assert!(
                genuine,
                "forged data frame accepted: {result:?} {original:02x?}"
            );
        }
        if result.is_ok() && original.first() == Some(&5) {
            let mut reference = LinkPair::new(Stage::Established, false);
            let now0 = reference.now;
            let genuine = if to_b {
                probe_sealed_by(&mut reference.a, reference.a_peer, now0, &original)
            } else {
                probe_sealed_by(&mut reference.b, reference.b_peer, now0, &original)
            };
            assert!(genuine, "forged probe accepted: {result:?} {original:02x?}");
        }
        service_link(receiver, now);
        now += step(input.flags);
    }
}

fn node_raw(input: &Input) {
    let mut pair = NodePair::new();
    let public = pair.y.link().public_key().to_owned();
    for chunk in &input.chunks {
        let mut d = chunk.to_vec();
        if input.flags & 1 != 0 {
            fix_mac1(&mut d, &public);
        }
        let original = d.clone();
        let result = pair.y_link_datagram(&mut d);
        let authenticated = !matches!(result, Err(Dropped::Link(_)));
        if authenticated && original.first() == Some(&4) {
            let mut reference = NodePair::new();
            let now0 = reference.now;
            assert!(
                sealed_by(&mut reference.x, reference.x_peer, now0, &original),
                "forged data frame accepted: {result:?} {original:02x?}"
            );
        }
        if authenticated && original.first() == Some(&5) {
            let mut reference = NodePair::new();
            let now0 = reference.now;
            assert!(
                probe_sealed_by(&mut reference.x, reference.x_peer, now0, &original),
                "forged probe accepted: {result:?} {original:02x?}"
            );
        }
        pair.drain_y();
        pair.now += step(input.flags);
    }
}

fn node_sealed(input: &Input) {
    let mut pair = NodePair::new();
    for chunk in &input.chunks {
        let h = DataPacket::<&[u8]>::HEADER_LEN;
        let mut frame = vec![0u8; DataPacket::<&[u8]>::OVERHEAD + chunk.len()];
        frame[h..h + chunk.len()].copy_from_slice(chunk);
        let (now, peer) = (pair.now, pair.x_peer);
        if pair.x.seal(now, peer, &mut frame, chunk.len()).is_err() {
            // X's session expired as the clock moved on.
            continue;
        }
        service_link(&mut pair.x, now);
        let sealed = frame.clone();
        let result = pair.y_link_datagram(&mut frame);
        assert!(
            !matches!(result, Err(Dropped::Link(_))),
            "a real frame refused by the link: {result:?}"
        );
        if input.flags & 1 != 0 {
            let mut again = sealed;
            let replay = pair.y_link_datagram(&mut again);
            assert_eq!(replay, Err(Dropped::Link(DropReason::Replayed)));
        }
        pair.drain_y();
        pair.now += step(input.flags);
    }
}
