//! Golden frames: hand-made sample datagrams and plaintexts kept as files in
//! `tests/golden/`, one per message type and service header shape. Each is
//! decoded with core's `wire` reprs, which must re-emit it byte for byte,
//! and the decoding is pinned with insta. (The frames two real links produce
//! are pinned in `link_messages.rs`.)
//!
//! The ciphertexts, keys and MACs in the samples are arbitrary bytes: this
//! layer does not look inside them.

use sdt_snapshots::{describe_frame, describe_plaintext};

macro_rules! golden {
    ($test:ident, $file:literal, $describe:ident) => {
        #[test]
        fn $test() {
            let bytes = include_bytes!(concat!("golden/", $file));
            insta::assert_snapshot!(stringify!($test), $describe(bytes));
        }
    };
}

golden!(golden_initiation, "initiation.bin", describe_frame);
golden!(golden_response, "response.bin", describe_frame);
golden!(golden_cookie_reply, "cookie_reply.bin", describe_frame);
golden!(golden_data_keepalive, "data_keepalive.bin", describe_frame);
golden!(golden_data, "data.bin", describe_frame);
golden!(golden_probe, "probe.bin", describe_frame);
golden!(
    golden_service_direct,
    "service_direct.bin",
    describe_plaintext
);
golden!(
    golden_service_channel_v4,
    "service_channel_v4.bin",
    describe_plaintext
);
golden!(golden_service_max, "service_max.bin", describe_plaintext);
