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
use crate::wire::HandshakeMacs;

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

/// Whether `message` carries the `mac1` a handshake message to the holder
/// of `receiver` must carry: the first check a node makes, and the one
/// that decides whether it may answer at all (a cookie reply goes only to
/// a message that passed it). It needs only the receiver's public key, so
/// an observer outside the node (the simulation's check of what the
/// attacker receives) can tell which messages a node may answer, with the
/// same code the node runs.
pub fn mac1_is_valid(receiver: &PublicKey, message: &impl HandshakeMacs) -> bool {
    verify_mac1(&mac1_key(receiver), message.mac1_input(), message.mac1())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{InitiationPacket, MessageType};

    #[test]
    fn mac1_is_valid_only_for_its_receiver_and_its_bytes() {
        let receiver = PublicKey::from_bytes([3; 32]);
        let mut buf = [0x5au8; InitiationPacket::<&[u8]>::LEN];
        let mut p = InitiationPacket::new_unchecked(&mut buf[..]);
        p.set_message_type(MessageType::Initiation.into());
        let mac = mac1(&mac1_key(&receiver), p.mac1_input());
        p.set_mac1(&mac);
        let p = InitiationPacket::new_checked(&buf[..]).unwrap();
        assert!(mac1_is_valid(&receiver, &p));
        assert!(!mac1_is_valid(&PublicKey::from_bytes([4; 32]), &p));
        let mut flipped = buf;
        flipped[20] ^= 1;
        let p = InitiationPacket::new_checked(&flipped[..]).unwrap();
        assert!(!mac1_is_valid(&receiver, &p));
    }
}
