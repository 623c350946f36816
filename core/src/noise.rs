//! The Noise `IKpsk2_25519_ChaChaPoly_BLAKE2s` handshake, without heap.
//!
//! This is the handshake WireGuard uses: the initiator knows the responder's
//! static key in advance (`IK`), both static keys are authenticated, every
//! session key depends on fresh ephemeral keys (forward secrecy) and a
//! pre-shared key is mixed in after the second message (`psk2`; all zeros
//! when none is configured, as in WireGuard). Messages here are plain Noise
//! messages with arbitrary payloads, so this module interoperates with any
//! Noise library (the tests run it against `snow`); the link's own framing,
//! indices and MACs wrap them in [`crate::link`].
//!
//! ```text
//! IKpsk2:
//!   <- s
//!   ...
//!   -> e, es, s, ss          message 1: 32 + 48 + (payload + 16) bytes
//!   <- e, ee, se, psk        message 2: 32 + (payload + 16) bytes
//! ```
//!
//! Secrets live in types that zeroize on drop. A failed read leaves the
//! handshake state as it was, so a forged message cannot wedge a handshake
//! in progress.

use core::ops::Range;

use x25519_dalek::{PublicKey as DalekPublic, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::crypto::{self, Aead, HASH_LEN, TAG_LEN};

/// The Noise protocol name; its hash is the initial chaining key.
pub const PROTOCOL_NAME: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// The prologue both sides mix in: it binds every handshake to sdt's
/// protocol version, so a handshake of another Noise protocol using the same
/// pattern and keys can never be confused with ours.
pub const PROLOGUE: &[u8] = b"sdt v1 secure datagram tunnel";
/// Length of an X25519 public key.
pub const KEY_LEN: usize = 32;
/// Bytes message 1 adds to its payload: e, encrypted s, payload tag.
pub const MSG1_OVERHEAD: usize = KEY_LEN + KEY_LEN + TAG_LEN + TAG_LEN;
/// Bytes message 2 adds to its payload: e, payload tag.
pub const MSG2_OVERHEAD: usize = KEY_LEN + TAG_LEN;

/// Why a handshake message could not be written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoiseError {
    /// The output buffer cannot hold the message.
    BufferTooSmall,
    /// The message is shorter than its fixed part.
    Truncated,
    /// An encrypted part did not authenticate: wrong keys, wrong PSK, or a
    /// forged or corrupted message.
    Decrypt,
    /// A Diffie-Hellman result was all zeros: the peer sent a low-order point.
    LowOrderPoint,
}

impl core::fmt::Display for NoiseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            NoiseError::BufferTooSmall => "output buffer too small for handshake message",
            NoiseError::Truncated => "handshake message truncated",
            NoiseError::Decrypt => "handshake message failed authentication",
            NoiseError::LowOrderPoint => "peer sent a low-order public key",
        })
    }
}

/// X25519 of `secret` and `public`, refusing an all-zero (non-contributory) result.
fn dh(secret: &StaticSecret, public: &[u8; KEY_LEN]) -> Result<[u8; KEY_LEN], NoiseError> {
    let shared = secret.diffie_hellman(&DalekPublic::from(*public));
    if !shared.was_contributory() {
        return Err(NoiseError::LowOrderPoint);
    }
    Ok(shared.to_bytes())
}

/// Noise's SymmetricState: chaining key, handshake hash and cipher state.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct SymmetricState {
    ck: [u8; HASH_LEN],
    h: [u8; HASH_LEN],
    /// `None` until the first MixKey: EncryptAndHash is then the identity.
    k: Option<[u8; HASH_LEN]>,
    n: u64,
}

impl SymmetricState {
    /// Initialize, mix the prologue and the responder's static key
    /// (the pre-message `<- s`).
    fn new(responder_static: &[u8; KEY_LEN]) -> Self {
        // The protocol name is longer than HASHLEN, so h = HASH(name).
        let h = crypto::hash(&[PROTOCOL_NAME]);
        let mut s = SymmetricState {
            ck: h,
            h,
            k: None,
            n: 0,
        };
        s.mix_hash(PROLOGUE);
        s.mix_hash(responder_static);
        s
    }

    fn mix_hash(&mut self, data: &[u8]) {
        self.h = crypto::hash(&[&self.h, data]);
    }

    fn mix_key(&mut self, ikm: &[u8]) {
        let [ck, k] = crypto::hkdf::<2>(&self.ck, ikm);
        self.ck = ck;
        self.k = Some(k);
        self.n = 0;
    }

    fn mix_key_and_hash(&mut self, ikm: &[u8]) {
        let [ck, mut h, k] = crypto::hkdf::<3>(&self.ck, ikm);
        self.ck = ck;
        self.mix_hash(&h);
        h.zeroize();
        self.k = Some(k);
        self.n = 0;
    }

    /// Encrypts `buf[..len - TAG_LEN]` in place and writes the tag after it.
    /// `buf` is exactly ciphertext plus tag. Every call site has mixed a key
    /// first, so `k` is set.
    fn encrypt_and_hash(&mut self, buf: &mut [u8]) {
        let (pt, tag) = buf.split_at_mut(buf.len() - TAG_LEN);
        if let Some(k) = &self.k {
            tag.copy_from_slice(&Aead::new(k).seal(self.n, &self.h, pt));
            self.n += 1;
        }
        self.mix_hash(buf);
    }

    /// Reverses [`Self::encrypt_and_hash`]: on success `buf[..len - TAG_LEN]`
    /// holds the plaintext. On failure the state is unchanged.
    fn decrypt_and_hash(&mut self, buf: &mut [u8]) -> Result<(), NoiseError> {
        let h_next = crypto::hash(&[&self.h, buf]);
        let (ct, tag) = buf.split_at_mut(buf.len() - TAG_LEN);
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| NoiseError::Truncated)?;
        if let Some(k) = &self.k {
            Aead::new(k)
                .open(self.n, &self.h, ct, &tag)
                .map_err(|_| NoiseError::Decrypt)?;
            self.n += 1;
        }
        self.h = h_next;
        Ok(())
    }

    /// Noise's Split: the initiator's sending key first.
    fn split(&self) -> TransportKeys {
        let [a, b] = crypto::hkdf::<2>(&self.ck, &[]);
        TransportKeys {
            initiator_to_responder: a,
            responder_to_initiator: b,
        }
    }
}

/// The two keys a completed handshake yields; each side picks its own
/// sending and receiving key with [`TransportKeys::for_initiator`] or
/// [`TransportKeys::for_responder`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct TransportKeys {
    initiator_to_responder: [u8; HASH_LEN],
    responder_to_initiator: [u8; HASH_LEN],
}

/// One side's (sending, receiving) key pair.
pub type KeyPair<'a> = (&'a [u8; HASH_LEN], &'a [u8; HASH_LEN]);

impl TransportKeys {
    /// (sending, receiving) keys for the initiator.
    pub fn for_initiator(&self) -> KeyPair<'_> {
        (&self.initiator_to_responder, &self.responder_to_initiator)
    }

    /// (sending, receiving) keys for the responder.
    pub fn for_responder(&self) -> KeyPair<'_> {
        (&self.responder_to_initiator, &self.initiator_to_responder)
    }
}

impl core::fmt::Debug for TransportKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TransportKeys(..)")
    }
}

/// The initiator between sending message 1 and reading message 2.
#[derive(Clone)]
pub struct Initiator {
    sym: SymmetricState,
    ephemeral: StaticSecret,
}

impl Initiator {
    /// Writes message 1 (`e, es, s, ss` and `payload`) into `out` and returns
    /// the state awaiting message 2 with the message's length.
    ///
    /// `ephemeral` must be fresh from a CSPRNG for every call.
    pub fn write_message(
        local: &StaticSecret,
        remote: &[u8; KEY_LEN],
        ephemeral: StaticSecret,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<(Initiator, usize), NoiseError> {
        let len = MSG1_OVERHEAD + payload.len();
        let out = out.get_mut(..len).ok_or(NoiseError::BufferTooSmall)?;
        let mut sym = SymmetricState::new(remote);
        // e (psk mode also mixes e into the key)
        let e_pub = DalekPublic::from(&ephemeral).to_bytes();
        out[..KEY_LEN].copy_from_slice(&e_pub);
        sym.mix_hash(&e_pub);
        sym.mix_key(&e_pub);
        // es
        let mut shared = dh(&ephemeral, remote)?;
        sym.mix_key(&shared);
        // s
        let s_pub = DalekPublic::from(local).to_bytes();
        let s_field = &mut out[KEY_LEN..2 * KEY_LEN + TAG_LEN];
        s_field[..KEY_LEN].copy_from_slice(&s_pub);
        sym.encrypt_and_hash(s_field);
        // ss
        shared = dh(local, remote)?;
        sym.mix_key(&shared);
        shared.zeroize();
        // payload
        let p_field = &mut out[2 * KEY_LEN + TAG_LEN..];
        p_field[..payload.len()].copy_from_slice(payload);
        sym.encrypt_and_hash(p_field);
        Ok((Initiator { sym, ephemeral }, len))
    }

    /// Reads message 2 (`e, ee, se, psk` and a payload) in place. On success
    /// returns the transport keys and where the decrypted payload lies in
    /// `msg`. On failure `self` is untouched, so a forged reply does not
    /// spoil the handshake: the genuine one can still be read.
    pub fn read_message(
        &self,
        local: &StaticSecret,
        psk: &[u8; HASH_LEN],
        msg: &mut [u8],
    ) -> Result<(TransportKeys, Range<usize>), NoiseError> {
        if msg.len() < MSG2_OVERHEAD {
            return Err(NoiseError::Truncated);
        }
        let mut sym = self.sym.clone();
        // e
        let mut re = [0u8; KEY_LEN];
        re.copy_from_slice(&msg[..KEY_LEN]);
        sym.mix_hash(&re);
        sym.mix_key(&re);
        // ee
        let mut shared = dh(&self.ephemeral, &re)?;
        sym.mix_key(&shared);
        // se
        shared = dh(local, &re)?;
        sym.mix_key(&shared);
        shared.zeroize();
        // psk
        sym.mix_key_and_hash(psk);
        // payload
        sym.decrypt_and_hash(&mut msg[KEY_LEN..])?;
        Ok((sym.split(), KEY_LEN..msg.len() - TAG_LEN))
    }
}

/// The responder between reading message 1 and writing message 2.
#[derive(Clone)]
pub struct Responder {
    sym: SymmetricState,
    remote_ephemeral: [u8; KEY_LEN],
    remote_static: [u8; KEY_LEN],
}

impl Responder {
    /// Reads message 1 in place. On success returns the state ready to
    /// answer and where the decrypted payload lies in `msg`.
    ///
    /// The initiator's static key, [`Responder::remote_static`], is
    /// authenticated only in the sense that the initiator holds its private
    /// key; the caller decides whether that key belongs to a known peer and
    /// whether the payload (a timestamp, in sdt) is fresh before answering.
    pub fn read_message(
        local: &StaticSecret,
        msg: &mut [u8],
    ) -> Result<(Responder, Range<usize>), NoiseError> {
        if msg.len() < MSG1_OVERHEAD {
            return Err(NoiseError::Truncated);
        }
        let local_pub = DalekPublic::from(local).to_bytes();
        let mut sym = SymmetricState::new(&local_pub);
        // e
        let mut re = [0u8; KEY_LEN];
        re.copy_from_slice(&msg[..KEY_LEN]);
        sym.mix_hash(&re);
        sym.mix_key(&re);
        // es
        let mut shared = dh(local, &re)?;
        sym.mix_key(&shared);
        // s
        sym.decrypt_and_hash(&mut msg[KEY_LEN..2 * KEY_LEN + TAG_LEN])?;
        let mut rs = [0u8; KEY_LEN];
        rs.copy_from_slice(&msg[KEY_LEN..2 * KEY_LEN]);
        // ss
        shared = dh(local, &rs)?;
        sym.mix_key(&shared);
        shared.zeroize();
        // payload
        let start = 2 * KEY_LEN + TAG_LEN;
        sym.decrypt_and_hash(&mut msg[start..])?;
        let payload = start..msg.len() - TAG_LEN;
        Ok((
            Responder {
                sym,
                remote_ephemeral: re,
                remote_static: rs,
            },
            payload,
        ))
    }

    /// The initiator's static public key, as it claimed and proved in message 1.
    pub fn remote_static(&self) -> &[u8; KEY_LEN] {
        &self.remote_static
    }

    /// Writes message 2 into `out` and returns the transport keys and the
    /// message's length. `ephemeral` must be fresh from a CSPRNG.
    pub fn write_message(
        self,
        ephemeral: StaticSecret,
        psk: &[u8; HASH_LEN],
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<(TransportKeys, usize), NoiseError> {
        let len = MSG2_OVERHEAD + payload.len();
        let out = out.get_mut(..len).ok_or(NoiseError::BufferTooSmall)?;
        let mut sym = self.sym.clone();
        // e
        let e_pub = DalekPublic::from(&ephemeral).to_bytes();
        out[..KEY_LEN].copy_from_slice(&e_pub);
        sym.mix_hash(&e_pub);
        sym.mix_key(&e_pub);
        // ee
        let mut shared = dh(&ephemeral, &self.remote_ephemeral)?;
        sym.mix_key(&shared);
        // se
        shared = dh(&ephemeral, &self.remote_static)?;
        sym.mix_key(&shared);
        shared.zeroize();
        // psk
        sym.mix_key_and_hash(psk);
        // payload
        let p_field = &mut out[KEY_LEN..];
        p_field[..payload.len()].copy_from_slice(payload);
        sym.encrypt_and_hash(p_field);
        Ok((sym.split(), len))
    }
}

impl core::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Initiator(..)")
    }
}

impl core::fmt::Debug for Responder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Responder(..)")
    }
}

#[cfg(test)]
mod tests;
