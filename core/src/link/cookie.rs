//! Handshakes under load: WireGuard's cookie mechanism and a per-source
//! rate limit.
//!
//! Every handshake message carries `mac1` (proof the sender knows our public
//! key) and `mac2`. Normally `mac2` is not checked. When more than a
//! threshold of handshake messages arrive per second, the node is *under
//! load*: a message must then also carry a valid `mac2`, keyed by a *cookie*
//! only the holder of the sender's address can know. A message without one
//! is answered with a 61-byte cookie reply (less than the 97 or 153 bytes
//! received, so the node never amplifies) and not processed further: no
//! Diffie-Hellman is spent on it. A sender at a spoofed address never sees
//! the reply, so it can never produce a valid `mac2`. Messages with a valid
//! `mac2` are further limited per source IP by a token bucket, so one real
//! address cannot monopolise the node either.
//!
//! The cookie is `MAC(secret, source address)`, with a secret that changes
//! every two minutes; the reply carries it encrypted (XChaCha20-Poly1305)
//! under a key derived from the replier's public key, bound to the `mac1` of
//! the message it answers, so only the real sender can use it.

use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use heapless::FnvIndexMap;
use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;

use crate::crypto::{self, HASH_LEN, MAC_LEN};
use crate::key::PublicKey;
use crate::rate::TokenBucket;
use crate::time::Instant;
use crate::wire::CookieReplyPacket;

/// Domain separation for the cookie reply key.
const LABEL_COOKIE: &[u8] = b"sdt v1 cookie";
/// The cookie secret changes this often; a cookie is used this long.
pub const COOKIE_LIFETIME: Duration = Duration::from_secs(120);
/// A sender stops using a cookie a little before the replier stops
/// accepting it.
const COOKIE_USE: Duration = Duration::from_secs(115);
/// Default: handshake messages per second above which a node asks for
/// cookies. A collector with a thousand peers rekeying every two minutes
/// sees about nine.
pub const DEFAULT_LOAD_THRESHOLD: u32 = 100;
/// Handshake messages per second one source IP may have processed under
/// load, and the burst it may save up (WireGuard's figures).
const RATE_PER_SECOND: u32 = 20;
const RATE_BURST: u32 = 5;
/// Source addresses the rate limiter tracks at once.
const RATE_SOURCES: usize = 256;

/// The key of cookie replies sent by the holder of `public`.
pub(crate) fn cookie_key(public: &PublicKey) -> [u8; HASH_LEN] {
    crypto::hash(&[LABEL_COOKIE, public.as_bytes()])
}

/// The address bytes a cookie is bound to: IP then port.
fn address_bytes(addr: &SocketAddr, out: &mut [u8; 18]) -> usize {
    let n = match addr.ip() {
        IpAddr::V4(ip) => {
            out[..4].copy_from_slice(&ip.octets());
            4
        }
        IpAddr::V6(ip) => {
            out[..16].copy_from_slice(&ip.octets());
            16
        }
    };
    out[n..n + 2].copy_from_slice(&addr.port().to_be_bytes());
    n + 2
}

/// The replier's side: its cookie secret, its load meter and the rate
/// limiter.
pub(crate) struct Gate {
    secret: [u8; HASH_LEN],
    secret_born: Option<Instant>,
    /// Key of the replies we send.
    reply_key: [u8; HASH_LEN],
    threshold: u32,
    window_start: Instant,
    in_window: u32,
    under_load_until: Option<Instant>,
    buckets: FnvIndexMap<IpAddr, TokenBucket, RATE_SOURCES>,
}

/// What the gate decided about a handshake message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Process it.
    Pass,
    /// Under load without a valid `mac2`: answer with a cookie reply.
    NeedCookie,
    /// Under load, over the source's rate.
    RateLimited,
}

impl Gate {
    pub fn new(our_public: &PublicKey, now: Instant) -> Self {
        Gate {
            secret: [0; HASH_LEN],
            secret_born: None,
            reply_key: cookie_key(our_public),
            threshold: DEFAULT_LOAD_THRESHOLD,
            window_start: now,
            in_window: 0,
            under_load_until: None,
            buckets: FnvIndexMap::new(),
        }
    }

    pub fn set_threshold(&mut self, per_second: u32) {
        self.threshold = per_second;
    }

    /// Whether the node is under load at `now`, counting this message.
    fn note_and_check_load(&mut self, now: Instant) -> bool {
        if now.saturating_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window = self.in_window.saturating_add(1);
        if self.in_window > self.threshold {
            self.under_load_until = Some(now.saturating_add(Duration::from_secs(1)));
        }
        self.under_load_until.is_some_and(|t| now < t)
    }

    /// The cookie for `from` now, rotating the secret when it is old.
    fn cookie<R: RngCore + CryptoRng>(
        &mut self,
        rng: &mut R,
        now: Instant,
        from: &SocketAddr,
    ) -> [u8; MAC_LEN] {
        if self
            .secret_born
            .is_none_or(|born| now.saturating_since(born) >= COOKIE_LIFETIME)
        {
            rng.fill_bytes(&mut self.secret);
            self.secret_born = Some(now);
        }
        let mut addr = [0u8; 18];
        let n = address_bytes(from, &mut addr);
        crypto::mac(&self.secret, &[&addr[..n]])
    }

    /// Decides about a handshake message from `from` whose `mac1` was
    /// valid: `covered` is the message up to `mac2`.
    pub fn check<R: RngCore + CryptoRng>(
        &mut self,
        rng: &mut R,
        now: Instant,
        from: &SocketAddr,
        covered: &[u8],
        mac2: &[u8; MAC_LEN],
    ) -> Verdict {
        if !self.note_and_check_load(now) {
            return Verdict::Pass;
        }
        let cookie = self.cookie(rng, now, from);
        let expected = crypto::mac(&cookie, &[covered]);
        if !bool::from(expected.ct_eq(mac2)) {
            return Verdict::NeedCookie;
        }
        if self.take_token(now, from.ip()) {
            Verdict::Pass
        } else {
            Verdict::RateLimited
        }
    }

    fn take_token(&mut self, now: Instant, ip: IpAddr) -> bool {
        if !self.buckets.contains_key(&ip) && self.buckets.len() == RATE_SOURCES {
            // Forget the sources whose buckets have refilled: they are idle.
            self.buckets
                .retain(|_, b| !b.is_full(now, RATE_PER_SECOND, RATE_BURST));
        }
        if !self.buckets.contains_key(&ip) && self.buckets.insert(ip, TokenBucket::new()).is_err() {
            return false;
        }
        self.buckets
            .get_mut(&ip)
            .is_some_and(|b| b.take(now, RATE_PER_SECOND, RATE_BURST))
    }

    /// Writes the cookie reply for a message from `from` with sender index
    /// `sender_index` and `mac1`.
    pub fn reply<R: RngCore + CryptoRng>(
        &mut self,
        rng: &mut R,
        now: Instant,
        from: &SocketAddr,
        sender_index: u32,
        mac1: &[u8; MAC_LEN],
        out: &mut [u8; CookieReplyPacket::<&[u8]>::LEN],
    ) {
        let cookie = self.cookie(rng, now, from);
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let mut packet = CookieReplyPacket::new_unchecked(&mut out[..]);
        packet.set_message_type(crate::wire::MessageType::CookieReply.into());
        packet.set_receiver_index(sender_index);
        packet.set_nonce(&nonce);
        let sealed = packet.encrypted_cookie_mut();
        sealed[..MAC_LEN].copy_from_slice(&cookie);
        let tag = crypto::xseal(&self.reply_key, &nonce, mac1, &mut sealed[..MAC_LEN]);
        sealed[MAC_LEN..].copy_from_slice(&tag);
    }
}

/// Whether `reply` is a cookie reply the holder of `replier` sealed for the
/// handshake message whose `mac1` is `mac1`: it names the message's sender
/// index and its seal opens under `replier`'s cookie-reply key with that
/// `mac1` as associated data. Like [`super::mac1_is_valid`] it needs only
/// public values, so an observer can tie each cookie reply a node sends to
/// the one message it answers (the simulation checks that nothing but
/// such replies, to messages that earned one, reaches its attacker).
pub fn cookie_reply_answers(
    replier: &PublicKey,
    reply: &CookieReplyPacket<&[u8]>,
    sender_index: u32,
    mac1: &[u8; MAC_LEN],
) -> bool {
    if reply.receiver_index() != sender_index {
        return false;
    }
    let sealed = reply.encrypted_cookie();
    let mut cookie = [0u8; MAC_LEN];
    cookie.copy_from_slice(&sealed[..MAC_LEN]);
    let mut tag = [0u8; MAC_LEN];
    tag.copy_from_slice(&sealed[MAC_LEN..]);
    crypto::xopen(&cookie_key(replier), reply.nonce(), mac1, &mut cookie, &tag).is_ok()
}

/// The sender's side, per peer: the cookie the peer gave us, and the `mac1`
/// of the last handshake message we sent it (a reply must be bound to it).
#[derive(Default)]
pub(crate) struct Jar {
    cookie: Option<([u8; MAC_LEN], Instant)>,
    last_mac1: Option<[u8; MAC_LEN]>,
}

impl Jar {
    /// `mac2` for a message to the peer: keyed by a fresh cookie, or zeros.
    pub fn mac2(&self, now: Instant, covered: &[u8]) -> [u8; MAC_LEN] {
        match self.cookie {
            Some((cookie, got)) if now.saturating_since(got) < COOKIE_USE => {
                crypto::mac(&cookie, &[covered])
            }
            _ => [0; MAC_LEN],
        }
    }

    pub fn sent_mac1(&mut self, mac1: [u8; MAC_LEN]) {
        self.last_mac1 = Some(mac1);
    }

    /// Takes the cookie out of a reply from the peer whose cookie replies
    /// are keyed by `key`; false if it does not authenticate. One reply per
    /// message sent: our resends of an initiation keep its `mac1`, so a
    /// replayed copy of the reply would authenticate again; it is refused.
    pub fn accept(
        &mut self,
        now: Instant,
        key: &[u8; HASH_LEN],
        packet: &CookieReplyPacket<&[u8]>,
    ) -> bool {
        let Some(mac1) = self.last_mac1 else {
            return false;
        };
        let sealed = packet.encrypted_cookie();
        let mut cookie = [0u8; MAC_LEN];
        cookie.copy_from_slice(&sealed[..MAC_LEN]);
        let mut tag = [0u8; MAC_LEN];
        tag.copy_from_slice(&sealed[MAC_LEN..]);
        if crypto::xopen(key, packet.nonce(), &mac1, &mut cookie, &tag).is_err() {
            return false;
        }
        self.cookie = Some((cookie, now));
        self.last_mac1 = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn gate(now: Instant) -> (Gate, ChaCha20Rng) {
        let mut g = Gate::new(&PublicKey::from_bytes([9; 32]), now);
        g.set_threshold(0);
        (g, ChaCha20Rng::seed_from_u64(1))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_cookie_is_bound_to_the_address_and_expires() {
        let t0 = Instant::from_secs(10);
        let (mut g, mut rng) = gate(t0);
        let from = addr("192.0.2.1:4000");
        let cookie = g.cookie(&mut rng, t0, &from);
        let msg = b"handshake message up to mac2";
        let mac2 = crypto::mac(&cookie, &[msg]);
        assert_eq!(g.check(&mut rng, t0, &from, msg, &mac2), Verdict::Pass);
        // Another port, another address: no.
        assert_eq!(
            g.check(&mut rng, t0, &addr("192.0.2.1:4001"), msg, &mac2),
            Verdict::NeedCookie
        );
        assert_eq!(
            g.check(&mut rng, t0, &addr("192.0.2.2:4000"), msg, &mac2),
            Verdict::NeedCookie
        );
        // After the secret rotates: no.
        let later = t0 + COOKIE_LIFETIME;
        assert_eq!(
            g.check(&mut rng, later, &from, msg, &mac2),
            Verdict::NeedCookie
        );
    }

    #[test]
    fn a_reply_answers_only_its_message_from_its_replier() {
        let t0 = Instant::from_secs(1);
        let replier = PublicKey::from_bytes([9; 32]);
        let (mut g, mut rng) = gate(t0);
        let from = addr("192.0.2.1:4000");
        let mac1 = [7u8; MAC_LEN];
        let mut out = [0u8; CookieReplyPacket::<&[u8]>::LEN];
        g.reply(&mut rng, t0, &from, 42, &mac1, &mut out);
        let reply = CookieReplyPacket::new_checked(&out[..]).unwrap();
        assert!(cookie_reply_answers(&replier, &reply, 42, &mac1));
        // Another message (index or mac1), another replier: no.
        assert!(!cookie_reply_answers(&replier, &reply, 43, &mac1));
        assert!(!cookie_reply_answers(&replier, &reply, 42, &[8; MAC_LEN]));
        let other = PublicKey::from_bytes([10; 32]);
        assert!(!cookie_reply_answers(&other, &reply, 42, &mac1));
    }

    #[test]
    fn not_under_load_everything_passes() {
        let t0 = Instant::from_secs(1);
        let (mut g, mut rng) = gate(t0);
        g.set_threshold(3);
        let from = addr("192.0.2.1:4000");
        for _ in 0..3 {
            assert_eq!(g.check(&mut rng, t0, &from, b"m", &[0; 16]), Verdict::Pass);
        }
        assert_eq!(
            g.check(&mut rng, t0, &from, b"m", &[0; 16]),
            Verdict::NeedCookie
        );
        // Load lasts a second after the last excess.
        let t1 = t0 + Duration::from_millis(999);
        assert_eq!(
            g.check(&mut rng, t1, &from, b"m", &[0; 16]),
            Verdict::NeedCookie
        );
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(g.check(&mut rng, t2, &from, b"m", &[0; 16]), Verdict::Pass);
    }

    #[test]
    fn a_source_with_a_cookie_is_rate_limited() {
        let t0 = Instant::from_secs(1);
        let (mut g, mut rng) = gate(t0);
        let from = addr("[2001:db8::1]:51820");
        let cookie = g.cookie(&mut rng, t0, &from);
        let mac2 = crypto::mac(&cookie, &[b"m"]);
        let passed = (0..20)
            .filter(|_| g.check(&mut rng, t0, &from, b"m", &mac2) == Verdict::Pass)
            .count();
        assert_eq!(passed as u32, RATE_BURST);
        // 20 per second afterwards.
        let mut passed = 0;
        for i in 1..=100u64 {
            let t = t0 + Duration::from_millis(10 * i);
            passed += usize::from(g.check(&mut rng, t, &from, b"m", &mac2) == Verdict::Pass);
        }
        assert!((19..=21).contains(&passed), "{passed} in one second");
        // Another source has its own bucket.
        let other = addr("[2001:db8::2]:51820");
        let cookie = g.cookie(&mut rng, t0, &other);
        let mac2 = crypto::mac(&cookie, &[b"m"]);
        assert_eq!(
            g.check(&mut rng, t0 + Duration::from_secs(1), &other, b"m", &mac2),
            Verdict::Pass
        );
    }

    #[test]
    fn reply_round_trip() {
        let t0 = Instant::from_secs(1);
        let replier = PublicKey::from_bytes([9; 32]);
        let (mut g, mut rng) = gate(t0);
        let from = addr("192.0.2.1:4000");
        let mac1 = [5u8; 16];
        let mut out = [0u8; 61];
        g.reply(&mut rng, t0, &from, 0xabcd, &mac1, &mut out);
        let packet = CookieReplyPacket::new_checked(&out[..]).unwrap();
        assert_eq!(packet.receiver_index(), 0xabcd);
        let mut jar = Jar::default();
        assert!(
            !jar.accept(t0, &cookie_key(&replier), &packet),
            "no message sent yet"
        );
        jar.sent_mac1([6; 16]);
        assert!(
            !jar.accept(t0, &cookie_key(&replier), &packet),
            "bound to another mac1"
        );
        jar.sent_mac1(mac1);
        assert!(jar.accept(t0, &cookie_key(&replier), &packet));
        let mac2 = jar.mac2(t0, b"m");
        assert_eq!(g.check(&mut rng, t0, &from, b"m", &mac2), Verdict::Pass);
        assert_eq!(
            jar.mac2(t0 + COOKIE_USE, b"m"),
            [0; 16],
            "stale cookies are not used"
        );
    }
}
