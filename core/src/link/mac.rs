//! The MACs on handshake messages, in the manner of WireGuard's `mac1`.
//!
//! `mac1` is a keyed BLAKE2s over the message, keyed by a hash of the
//! *receiver's* public key. A node checks it before any Diffie-Hellman, and
//! answers nothing that fails it: a scanner that does not know the node's
//! public key learns nothing, and cannot make it spend a scalar
//! multiplication. `mac2` (the 16 bytes after `mac1`) carries the cookie
//! mechanism against floods, in [`super::cookie`]: zeros unless the peer
//! gave us a cookie, checked only while the receiver is under load.

use subtle::ConstantTimeEq;

use crate::crypto::{self, HASH_LEN, MAC_LEN};
use crate::key::PublicKey;

/// Domain separation for the `mac1` key.
const LABEL_MAC1: &[u8] = b"sdt v1 mac1";

/// The key for `mac1` on messages sent to the holder of `public`.
pub(crate) fn mac1_key(public: &PublicKey) -> [u8; HASH_LEN] {
    crypto::hash(&[LABEL_MAC1, public.as_bytes()])
}

/// `mac1` of `covered` (the message up to the `mac1` field).
pub(crate) fn mac1(key: &[u8; HASH_LEN], covered: &[u8]) -> [u8; MAC_LEN] {
    crypto::mac(key, &[covered])
}

/// Whether `mac` is the right `mac1` for `covered`, in constant time.
pub(crate) fn verify_mac1(key: &[u8; HASH_LEN], covered: &[u8], mac: &[u8]) -> bool {
    mac1(key, covered).ct_eq(mac).into()
}
