//! Counters of the link: traffic per peer and every drop by its reason.

/// Why the link dropped a datagram. Every drop is counted under one reason;
/// none is ever answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DropReason {
    /// Not a well-formed link message: unknown type or wrong length.
    Malformed,
    /// A handshake message whose `mac1` is wrong: the sender does not know
    /// this node's public key.
    BadMac1,
    /// A handshake message that failed Noise authentication (wrong keys,
    /// wrong PSK, forged), or carried a low-order key.
    HandshakeFailed,
    /// A valid initiation from a static key that is not a configured peer.
    UnknownPeer,
    /// An initiation whose timestamp is not newer than the last one accepted
    /// from that peer: a replay.
    ReplayedInitiation,
    /// An initiation that crossed ours; the side with the higher public key
    /// keeps its own handshake so that both converge on one session.
    HandshakeRace,
    /// A response to no handshake of ours in progress.
    UnexpectedResponse,
    /// A cookie reply for no handshake message of ours.
    UnexpectedCookie,
    /// A cookie reply that did not authenticate.
    BadCookieReply,
    /// A handshake message while under load without a valid `mac2`: it was
    /// answered with a cookie reply and not processed.
    CookieRequired,
    /// A handshake message with a valid cookie from a source over its rate
    /// while under load.
    RateLimited,
    /// A data frame for a receiver index no live session has.
    UnknownIndex,
    /// A data frame on a session older than the reject-after time.
    Expired,
    /// A data frame whose counter was seen before or is behind the window.
    Replayed,
    /// A data frame that failed authentication.
    AuthFailed,
}

impl DropReason {
    /// Every reason, in the order of [`DropCounts`].
    pub const ALL: [DropReason; 15] = [
        DropReason::Malformed,
        DropReason::BadMac1,
        DropReason::HandshakeFailed,
        DropReason::UnknownPeer,
        DropReason::ReplayedInitiation,
        DropReason::HandshakeRace,
        DropReason::UnexpectedResponse,
        DropReason::UnexpectedCookie,
        DropReason::BadCookieReply,
        DropReason::CookieRequired,
        DropReason::RateLimited,
        DropReason::UnknownIndex,
        DropReason::Expired,
        DropReason::Replayed,
        DropReason::AuthFailed,
    ];

    /// A short stable name, for status output and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadMac1 => "bad_mac1",
            DropReason::HandshakeFailed => "handshake_failed",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::ReplayedInitiation => "replayed_initiation",
            DropReason::HandshakeRace => "handshake_race",
            DropReason::UnexpectedResponse => "unexpected_response",
            DropReason::UnexpectedCookie => "unexpected_cookie",
            DropReason::BadCookieReply => "bad_cookie_reply",
            DropReason::CookieRequired => "cookie_required",
            DropReason::RateLimited => "rate_limited",
            DropReason::UnknownIndex => "unknown_index",
            DropReason::Expired => "expired",
            DropReason::Replayed => "replayed",
            DropReason::AuthFailed => "auth_failed",
        }
    }

    const fn slot(self) -> usize {
        self as usize
    }
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A counter per [`DropReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts([u64; DropReason::ALL.len()]);

impl DropCounts {
    /// Counts one drop.
    pub fn add(&mut self, reason: DropReason) {
        self.0[reason.slot()] += 1;
    }

    /// Drops counted for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.slot()]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// (reason, count) for every reason with a non-zero count.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|&r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
    }
}

/// Traffic and handshakes of one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Authenticated datagrams received (data, keepalives and handshakes).
    pub rx_datagrams: u64,
    /// Bytes of those datagrams, as on the wire.
    pub rx_bytes: u64,
    /// Datagrams sent to the peer.
    pub tx_datagrams: u64,
    /// Bytes of those datagrams, as on the wire.
    pub tx_bytes: u64,
    /// Initiations sent (first tries and retries).
    pub handshakes_initiated: u64,
    /// Handshakes completed, as initiator or responder.
    pub handshakes_completed: u64,
    /// Drops attributed to this peer.
    pub drops: DropCounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_all() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.slot(), i);
        }
        let mut d = DropCounts::default();
        d.add(DropReason::Replayed);
        d.add(DropReason::Replayed);
        d.add(DropReason::BadMac1);
        assert_eq!(d.get(DropReason::Replayed), 2);
        assert_eq!(d.total(), 3);
        assert_eq!(d.iter().count(), 2);
    }
}
