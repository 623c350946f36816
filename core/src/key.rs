//! X25519 static keys and pre-shared keys, in WireGuard's text form.
//!
//! Every key is 32 bytes and is written as standard base64 with padding:
//! 44 characters ending in `=`. That is exactly what `wg genkey`, `wg pubkey`
//! and `wg genpsk` print, so keys move freely between WireGuard and sdt.
//!
//! Private keys are any 32 bytes: X25519 clamps the scalar when it is used
//! (RFC 7748 section 5), so an unclamped key such as one from a generic random
//! source is valid and means the same as its clamped form. Secret material
//! ([`PrivateKey`], [`PresharedKey`]) is zeroized on drop, compared in constant
//! time and never printed by `Debug`.

use core::fmt;
use core::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length in bytes of every key.
pub const KEY_LEN: usize = 32;
/// Length of a key's base64 text form.
pub const KEY_TEXT_LEN: usize = 44;

/// Why a key's text form was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// The text is not standard, padded base64.
    InvalidBase64,
    /// The text decodes to something other than 32 bytes.
    WrongLength,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::InvalidBase64 => "key is not valid base64",
            KeyError::WrongLength => "key must be 32 bytes (44 base64 characters)",
        })
    }
}

/// Decodes a key's text form; surrounding whitespace (a trailing newline in a
/// key file) is ignored.
fn decode(text: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let text = text.trim().as_bytes();
    if text.len() != KEY_TEXT_LEN {
        // Tell a plausible base64 string of the wrong size from garbage.
        let mut scratch = [0u8; 3 * KEY_TEXT_LEN];
        return match STANDARD.decode_slice(text, &mut scratch) {
            Ok(_) | Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
                scratch.zeroize();
                Err(KeyError::WrongLength)
            }
            Err(_) => Err(KeyError::InvalidBase64),
        };
    }
    let mut out = [0u8; 33];
    let result = match STANDARD.decode_slice(text, &mut out) {
        Ok(KEY_LEN) => {
            let mut key = [0u8; KEY_LEN];
            key.copy_from_slice(&out[..KEY_LEN]);
            Ok(key)
        }
        Ok(_) | Err(base64::DecodeSliceError::OutputSliceTooSmall) => Err(KeyError::WrongLength),
        Err(_) => Err(KeyError::InvalidBase64),
    };
    out.zeroize();
    result
}

/// Writes a key's text form.
fn encode(bytes: &[u8; KEY_LEN], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut text = [0u8; KEY_TEXT_LEN];
    let n = STANDARD
        .encode_slice(bytes, &mut text)
        .map_err(|_| fmt::Error)?;
    let result = f.write_str(core::str::from_utf8(&text[..n]).map_err(|_| fmt::Error)?);
    text.zeroize();
    result
}

/// A node's X25519 private key. Zeroized on drop; `Debug` hides it.
///
/// `Display` prints the base64 text form: do that only to write a key file.
#[derive(Clone, ZeroizeOnDrop)]
pub struct PrivateKey(StaticSecret);

impl PrivateKey {
    /// Draws a fresh key from a CSPRNG.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rng.fill_bytes(&mut bytes);
        let key = PrivateKey::from_bytes(bytes);
        bytes.zeroize();
        key
    }

    /// Wraps 32 raw bytes (clamped when used, not here).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PrivateKey(StaticSecret::from(bytes))
    }

    /// The raw bytes, as stored (not clamped).
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0.to_bytes()
    }

    /// The public key that peers configure for this node.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// The secret for the Diffie-Hellman operations of the handshake.
    pub fn as_secret(&self) -> &StaticSecret {
        &self.0
    }
}

impl PartialEq for PrivateKey {
    /// Constant time.
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}
impl Eq for PrivateKey {}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(public {})", self.public_key())
    }
}

impl fmt::Display for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        encode(self.0.as_bytes(), f)
    }
}

impl FromStr for PrivateKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        let mut bytes = decode(text)?;
        let key = PrivateKey::from_bytes(bytes);
        bytes.zeroize();
        Ok(key)
    }
}

/// A node's X25519 public key: what identifies a peer.
///
/// Not secret, so it is `Copy`, hashable and ordered (the ordering breaks
/// ties between simultaneous handshakes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// Wraps 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PublicKey(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        encode(&self.0, f)
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        decode(text).map(PublicKey)
    }
}

/// An optional symmetric key mixed into the handshake (Noise `psk2`), for a
/// layer of post-quantum resistance. Zeroized on drop; `Debug` hides it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PresharedKey([u8; KEY_LEN]);

impl PresharedKey {
    /// Draws a fresh key from a CSPRNG.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut key = PresharedKey([0; KEY_LEN]);
        rng.fill_bytes(&mut key.0);
        key
    }

    /// Wraps 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PresharedKey(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl PartialEq for PresharedKey {
    /// Constant time.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for PresharedKey {}

impl fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresharedKey(..)")
    }
}

impl fmt::Display for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        encode(&self.0, f)
    }
}

impl FromStr for PresharedKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        decode(text).map(PresharedKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// RFC 7748 section 6.1: Alice's and Bob's key pairs.
    #[test]
    fn rfc7748_public_keys() {
        let alice = PrivateKey::from_bytes(hex32(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let bob = PrivateKey::from_bytes(hex32(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        assert_eq!(
            alice.public_key().as_bytes(),
            &hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(
            bob.public_key().as_bytes(),
            &hex32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
        let shared = alice
            .as_secret()
            .diffie_hellman(&x25519_dalek::PublicKey::from(*bob.public_key().as_bytes()));
        assert_eq!(
            shared.as_bytes(),
            &hex32("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        );
    }

    /// The private key of wg(8)'s example configuration; its public key was
    /// derived independently with Python's `cryptography` package.
    #[test]
    fn wireguard_text_form() {
        let private: PrivateKey = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
            .parse()
            .unwrap();
        assert_eq!(
            private.public_key().to_string(),
            "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
        );
        assert_eq!(
            private.to_string(),
            "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
        );
        // A key file's trailing newline is fine.
        let again: PrivateKey = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n"
            .parse()
            .unwrap();
        assert_eq!(private, again);
    }

    #[test]
    fn round_trip_text() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for _ in 0..32 {
            let private = PrivateKey::generate(&mut rng);
            let text = private.to_string();
            assert_eq!(text.len(), KEY_TEXT_LEN);
            assert_eq!(text.parse::<PrivateKey>().unwrap(), private);
            let public = private.public_key();
            assert_eq!(public.to_string().parse::<PublicKey>().unwrap(), public);
            let psk = PresharedKey::generate(&mut rng);
            assert_eq!(psk.to_string().parse::<PresharedKey>().unwrap(), psk);
        }
    }

    #[test]
    fn bad_text_is_refused() {
        assert_eq!("".parse::<PublicKey>(), Err(KeyError::WrongLength));
        assert_eq!("AAAA".parse::<PublicKey>(), Err(KeyError::WrongLength));
        // 33 bytes.
        let long = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(long.parse::<PublicKey>(), Err(KeyError::WrongLength));
        // Right length, wrong alphabet / padding.
        let bad = "yAnz5TF*lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
        assert_eq!(bad.parse::<PublicKey>(), Err(KeyError::InvalidBase64));
        let url_safe = "yAnz5TF-lXXJte14tji3zlMNq_hd2rYUIgJBgB3fBmk=";
        assert_eq!(url_safe.parse::<PublicKey>(), Err(KeyError::InvalidBase64));
        assert_eq!("!!!!".parse::<PresharedKey>(), Err(KeyError::InvalidBase64));
    }

    #[test]
    fn debug_hides_secrets() {
        let private: PrivateKey = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
            .parse()
            .unwrap();
        let shown = format!("{private:?}");
        assert!(!shown.contains("yAnz5TF"), "{shown}");
        assert!(shown.contains("HIgo9xNz"), "{shown}");
        let psk = PresharedKey::from_bytes([9; 32]);
        assert_eq!(format!("{psk:?}"), "PresharedKey(..)");
    }
}
