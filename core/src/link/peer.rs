//! One peer: its keys, sessions, handshake in progress and timers.

use core::net::SocketAddr;
use core::time::Duration;

use zeroize::Zeroizing;

use super::cookie::{cookie_key, Jar};
use super::session::{Session, REJECT_AFTER_TIME, REKEY_AFTER_TIME};
use super::stats::PeerStats;
use crate::key::{PresharedKey, PublicKey};
use crate::noise::Initiator;
use crate::tai64::Tai64N;
use crate::time::Instant;

/// Retry an initiation that got no response after this long (plus jitter).
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Give up a handshake after trying for this long, unless the peer is
/// configured to be kept up.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// Send a keepalive when the peer sent data and we sent nothing for this long.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first resend of an unanswered initiation comes this long after it;
/// each next one after twice the gap before, up to [`MAX_RESEND_GAP`],
/// until a fresh initiation replaces it after [`REKEY_TIMEOUT`].
///
/// Why: a node often starts a little before its peer (systemd, containers),
/// and its first initiation is then lost. Waiting [`REKEY_TIMEOUT`] for the
/// next one cost 5 s of a link both sides could already carry. A resend is
/// the same bytes again (the same ephemeral key, timestamp and sender index),
/// so it costs the sender no new handshake state, a late response to any copy
/// completes the handshake however long the round trip is, and a responder
/// that got an earlier copy refuses it as a replay (its timestamp is not newer)
/// and answers nothing: a peer answers each initiation at most once. The rate
/// stays bounded: at most one initiation datagram per [`MAX_RESEND_GAP`] per
/// peer after the first two, and one new handshake state per
/// [`REKEY_TIMEOUT`], as before.
pub const FIRST_RESEND: Duration = Duration::from_millis(250);
/// The longest gap between two copies of an initiation; see [`FIRST_RESEND`].
/// It bounds how long after a silent peer comes up the next copy reaches it.
pub const MAX_RESEND_GAP: Duration = Duration::from_secs(1);
/// Probe the peer (send it a [`ProbePacket`](crate::wire::ProbePacket),
/// which it answers with a keepalive) when it has said nothing
/// authenticated for this long although we sent it data, or, on a kept-up
/// link, at all.
///
/// Why this short: a peer that restarted without knowing our endpoint (the
/// entry of a mirror-image service) cannot tell us; it drops our frames under
/// a session it no longer has, and it must not answer them, since they do not
/// authenticate for it. Only our side can notice, and only by asking. With
/// WireGuard's rule (a handshake after `KEEPALIVE_TIMEOUT + REKEY_TIMEOUT` of
/// unanswered data) traffic stayed blacked out for up to 15 s after such a
/// peer was back, depending on where our timers stood. A probe after
/// `PROBE_AFTER` and a handshake when it goes unanswered for [`PROBE_TIMEOUT`]
/// bound that by about 2 s from the peer being back, whatever the phase. The
/// cost: a kept-up link that is idle exchanges one probe and one keepalive
/// (29 bytes each on the link) per second; one that carries traffic both ways sends no
/// probes at all; one-way traffic gets one probe and its answer per second.
pub const PROBE_AFTER: Duration = Duration::from_secs(1);
/// A probe not answered within this long starts a new handshake. A link whose
/// round trip is longer still works, at the cost of a handshake per unanswered
/// probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Every this many initiations in a row that got no response (each given up
/// after [`REKEY_TIMEOUT`]), the link reports
/// [`super::LinkEvent::EndpointStale`]: the peer may have moved, and a
/// runtime that has its endpoint from a name should resolve it again. With
/// 2, a peer that moved is looked up again about 10 s after it stopped
/// answering, and then every 10 s while it stays silent.
pub const STALE_AFTER_ATTEMPTS: u32 = 2;
/// Upper bound of the random jitter added to every initiation retry, so two
/// nodes that started together do not stay in lockstep.
pub const MAX_JITTER: Duration = Duration::from_millis(333);

/// How a node knows and treats one peer.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// The peer's static public key: its identity.
    pub public_key: PublicKey,
    /// Mixed into every handshake when set; both peers must set the same.
    pub preshared_key: Option<PresharedKey>,
    /// Where to send first. `None` to only accept the peer: its endpoint is
    /// then learned from its first authenticated handshake.
    pub endpoint: Option<SocketAddr>,
    /// Send a keepalive after this long without sending anything, to hold
    /// NAT mappings open.
    pub persistent_keepalive: Option<Duration>,
    /// Bring the link up at start and keep a session at all times, retrying
    /// handshakes without giving up. Needed where the peer holds the entry
    /// half of a service (`ssh -R` style) and must be able to reach us first.
    pub keep_up: bool,
    /// The link MTU towards this peer: no frame we send it is larger than
    /// one IP datagram of this size ([`crate::mtu`]), so the IP layer never
    /// fragments a frame unless this is set above the path's MTU.
    /// [`crate::mtu::MIN_LINK_MTU`] or more.
    pub mtu: u16,
}

impl PeerConfig {
    /// A peer known by its public key only, with every option off.
    pub fn new(public_key: PublicKey) -> Self {
        PeerConfig {
            public_key,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: None,
            keep_up: false,
            mtu: crate::mtu::DEFAULT_LINK_MTU,
        }
    }
}

/// Our initiation waiting for its response.
pub(crate) struct Pending {
    pub noise: Initiator,
    pub local_index: u32,
    /// When the initiation was first sent.
    pub sent_at: Instant,
    /// When the next retry (a fresh initiation) is due.
    pub retry_at: Instant,
    /// When the next resend of `message` is due, and the gap before it.
    pub resend_at: Instant,
    pub resend_gap: Duration,
    /// Randomness for the resends' jitter, drawn with the initiation.
    pub jitter: u64,
    /// Where the initiation went.
    pub sent_to: SocketAddr,
    /// The initiation as sent, to send again unchanged.
    pub message: [u8; crate::wire::InitiationPacket::<&[u8]>::LEN],
}

/// Events waiting for `poll_event`, as flags so none is ever lost.
#[derive(Default, Clone, Copy)]
pub(crate) struct PendingEvents {
    pub session_up: bool,
    pub restarted: bool,
    pub roamed: bool,
    pub handshake_timeout: bool,
    pub endpoint_stale: bool,
}

impl PendingEvents {
    /// Whether any event waits.
    pub fn any(&self) -> bool {
        self.session_up
            || self.restarted
            || self.roamed
            || self.handshake_timeout
            || self.endpoint_stale
    }
}

pub(crate) struct Peer {
    pub config: PeerConfig,
    pub psk: Zeroizing<[u8; 32]>,
    /// Key of `mac1` on messages we send to this peer.
    pub mac1_key: [u8; 32],
    /// Key of the cookie replies this peer sends us.
    pub cookie_key: [u8; 32],
    /// The cookie this peer gave us, for `mac2` while it is under load.
    pub jar: Jar,
    pub endpoint: Option<SocketAddr>,
    /// The session we send on; always confirmed.
    pub current: Option<Session>,
    /// The session before `current`, kept to receive frames still in flight.
    pub previous: Option<Session>,
    /// A session we answered a handshake for, awaiting the initiator's first
    /// frame on it before we send on it.
    pub next: Option<Session>,
    pub pending: Option<Pending>,
    /// When the current run of handshake attempts began.
    pub attempts_since: Option<Instant>,
    /// Initiations in a row that got no response (reset by a completed
    /// handshake and by a new endpoint); see [`STALE_AFTER_ATTEMPTS`].
    pub unanswered_initiations: u32,
    /// An initiation should be sent at the next `poll_transmit`.
    pub want_initiation: bool,
    /// The pending initiation should be sent again, unchanged.
    pub want_resend: bool,
    /// We ignored a crossing initiation of the peer in this run of
    /// attempts (see the race rule in `Link::handle_initiation`); the next
    /// one is answered. Cleared when a handshake completes or the run ends.
    pub race_ignored: bool,
    /// A response waiting to be sent.
    pub response: Option<([u8; crate::wire::ResponsePacket::<&[u8]>::LEN], SocketAddr)>,
    pub want_keepalive: bool,
    /// A liveness probe should be sent (kept-up peers only).
    pub want_probe: bool,
    /// When our unanswered probe went out.
    pub probe_sent: Option<Instant>,
    /// The newest initiation timestamp accepted from the peer, from any of
    /// its incarnations: an initiation of an incarnation other than the
    /// current one must be newer.
    pub last_timestamp: Option<Tai64N>,
    /// The newest initiation timestamp seen from the peer's current
    /// incarnation ([`Peer::incarnation`]): its initiations must be newer
    /// than this only. The two differ after the peer restarted with its
    /// wall clock stepped back (see `Link::handle_initiation`).
    pub incarnation_timestamp: Option<Tai64N>,
    /// The newest initiation accepted from the peer (the one whose
    /// timestamp is the floor) may be answered once more: we answered it
    /// under a preshared key that has changed since (`Link::update_peer`).
    /// A peer that changed its key first sent it fresh, could not complete
    /// our answer under the old key, and resends the same initiation; a
    /// replay of anything older is still refused.
    pub reanswer: bool,
    /// The newest refused (stale) initiation from an incarnation not yet
    /// confirmed: (incarnation, timestamp). Becomes the floor of
    /// `incarnation_timestamp` if a handshake confirms that incarnation.
    pub stale: Option<(u64, Tai64N)>,
    /// When we last started a handshake because of a stale initiation.
    pub reached_out: Option<Instant>,
    /// That handshake was renewed once already (see `link::reach_out`).
    pub reach_out_renewed: bool,
    /// The peer's incarnation (boot id) from its latest handshake.
    pub incarnation: Option<u64>,
    /// Our incarnation towards this peer, sent in every handshake message.
    /// Drawn at random when the peer is added; renewed to make the peer drop
    /// all state of the old one.
    pub local_incarnation: u64,
    pub last_handshake: Option<Instant>,
    pub last_sent: Option<Instant>,
    pub last_received: Option<Instant>,
    pub last_data_received: Option<Instant>,
    /// The first data frame we sent since we last heard from the peer.
    pub unanswered_since: Option<Instant>,
    pub events: PendingEvents,
    pub stats: PeerStats,
    /// In the link's queue of peers with something to transmit.
    pub queued_transmit: bool,
    /// In the link's queue of peers with events.
    pub queued_events: bool,
    /// Removed by a reload: its slot stays (peer ids are indexes) but it
    /// has no session, is found by no key and can be reused.
    pub retired: bool,
}

impl Peer {
    pub fn new(
        config: PeerConfig,
        mac1_key: [u8; 32],
        local_incarnation: u64,
        now: Instant,
    ) -> Self {
        let psk = Zeroizing::new(
            config
                .preshared_key
                .as_ref()
                .map(|k| *k.as_bytes())
                .unwrap_or([0; 32]),
        );
        let keep_up = config.keep_up && config.endpoint.is_some();
        Peer {
            cookie_key: cookie_key(&config.public_key),
            endpoint: config.endpoint,
            config,
            psk,
            mac1_key,
            jar: Jar::default(),
            current: None,
            previous: None,
            next: None,
            pending: None,
            attempts_since: keep_up.then_some(now),
            unanswered_initiations: 0,
            want_initiation: keep_up,
            want_resend: false,
            race_ignored: false,
            response: None,
            want_keepalive: false,
            want_probe: false,
            probe_sent: None,
            last_timestamp: None,
            incarnation_timestamp: None,
            reanswer: false,
            stale: None,
            reached_out: None,
            reach_out_renewed: false,
            incarnation: None,
            local_incarnation,
            last_handshake: None,
            last_sent: None,
            last_received: None,
            last_data_received: None,
            unanswered_since: None,
            events: PendingEvents::default(),
            queued_transmit: false,
            queued_events: false,
            stats: PeerStats::default(),
            retired: false,
        }
    }

    /// Whether `index` is in use by any session or the pending handshake.
    pub fn uses_index(&self, index: u32) -> bool {
        [&self.current, &self.previous, &self.next]
            .iter()
            .any(|s| s.as_ref().is_some_and(|s| s.local_index == index))
            || self
                .pending
                .as_ref()
                .is_some_and(|p| p.local_index == index)
    }

    /// The session with local index `index`.
    pub fn session_mut(&mut self, index: u32) -> Option<(&mut Session, Slot)> {
        if self
            .current
            .as_ref()
            .is_some_and(|s| s.local_index == index)
        {
            return self.current.as_mut().map(|s| (s, Slot::Current));
        }
        if self.next.as_ref().is_some_and(|s| s.local_index == index) {
            return self.next.as_mut().map(|s| (s, Slot::Next));
        }
        if self
            .previous
            .as_ref()
            .is_some_and(|s| s.local_index == index)
        {
            return self.previous.as_mut().map(|s| (s, Slot::Previous));
        }
        None
    }

    /// Installs a completed session: as initiator it becomes current at
    /// once; as responder it waits in `next` for the initiator's first frame.
    pub fn install(&mut self, session: Session, now: Instant) {
        if session.initiator {
            self.previous = self.current.take();
            self.current = Some(session);
            self.events.session_up = true;
        } else {
            self.next = Some(session);
        }
        self.last_handshake = Some(now);
        self.race_ignored = false;
        self.unanswered_initiations = 0;
        self.stats.handshakes_completed += 1;
    }

    /// The initiator sent on `next`: it has the keys, so promote it.
    pub fn confirm_next(&mut self) {
        if let Some(mut s) = self.next.take() {
            s.confirmed = true;
            self.previous = self.current.take();
            self.current = Some(s);
            self.events.session_up = true;
        }
    }

    /// Forgets everything tied to the peer's old incarnation.
    pub fn drop_sessions(&mut self) {
        self.current = None;
        self.previous = None;
        self.next = None;
    }

    /// Whether a session we can send on exists at `now`.
    pub fn can_send(&self, now: Instant) -> bool {
        self.current.as_ref().is_some_and(|s| s.is_alive(now))
    }

    /// Asks for a handshake unless one is under way or due.
    pub fn start_handshake(&mut self, now: Instant) {
        if self.endpoint.is_none() || self.pending.is_some() || self.want_initiation {
            return;
        }
        self.want_initiation = true;
        self.attempts_since.get_or_insert(now);
    }

    /// Records that we sent `len` bytes.
    pub fn sent(&mut self, now: Instant, len: usize) {
        self.last_sent = Some(now);
        self.stats.tx_datagrams += 1;
        self.stats.tx_bytes += len as u64;
    }

    /// Records that we received `len` authenticated bytes from `from`.
    pub fn received(&mut self, now: Instant, from: SocketAddr, len: usize) {
        self.heard(now, len);
        if self.endpoint != Some(from) {
            // Roaming: follow the source of the latest authenticated frame.
            self.events.roamed = self.endpoint.is_some();
            self.endpoint = Some(from);
        }
    }

    /// Records an authenticated datagram that does not prove the sender is
    /// the peer *now*: an initiation could be a replay (after our restart
    /// forgot its timestamp), so it does not move the endpoint; the
    /// initiator's first frame on the new session does.
    pub fn heard(&mut self, now: Instant, len: usize) {
        self.last_received = Some(now);
        self.unanswered_since = None;
        self.probe_sent = None;
        self.stats.rx_datagrams += 1;
        self.stats.rx_bytes += len as u64;
    }

    /// Whether the peer is late with an answer at `now`
    /// ([`super::PeerStatus::overdue`]).
    pub fn overdue(&self, now: Instant) -> bool {
        let late = |since: Option<Instant>, after| since.is_some_and(|t| now - t >= after);
        // The peer owes an answer to a probe within PROBE_TIMEOUT; one to
        // unanswered data, through the probe, within PROBE_AFTER more; one to
        // an initiation, through its copies, within PROBE_TIMEOUT too.
        late(self.unanswered_since, PROBE_AFTER + PROBE_TIMEOUT)
            || late(self.probe_sent, PROBE_TIMEOUT)
            || (self.pending.is_some() && late(self.attempts_since, PROBE_TIMEOUT))
    }

    /// Runs the peer's timers at `now`.
    pub fn on_timeout(&mut self, now: Instant) {
        // An initiation unanswered for a while: send it again, unchanged.
        if let Some(p) = &mut self.pending {
            if now >= p.resend_at && now < p.retry_at {
                self.want_resend = true;
                p.resend_gap = (p.resend_gap * 2).min(MAX_RESEND_GAP);
                p.jitter = p.jitter.rotate_left(17);
                p.resend_at = now + p.resend_gap + resend_jitter(p.resend_gap, p.jitter);
            }
        }
        // Expired sessions are neither sent nor received on: forget them.
        for s in [&mut self.current, &mut self.previous, &mut self.next] {
            if s.as_ref().is_some_and(|s| !s.is_alive(now)) {
                *s = None;
            }
        }
        // A pending initiation got no response in time: retry, or give up.
        if let Some(p) = &self.pending {
            if now >= p.retry_at {
                let started = self.attempts_since.unwrap_or(now);
                self.pending = None;
                self.unanswered_initiations = self.unanswered_initiations.saturating_add(1);
                if self
                    .unanswered_initiations
                    .is_multiple_of(STALE_AFTER_ATTEMPTS)
                {
                    self.events.endpoint_stale = true;
                }
                if self.config.keep_up || now - started < REKEY_ATTEMPT_TIME {
                    self.want_initiation = true;
                } else {
                    self.attempts_since = None;
                    self.race_ignored = false;
                    self.events.handshake_timeout = true;
                }
            }
        }
        // The peer talks, we do not: tell it we are alive.
        if let Some(t) = self.keepalive_due() {
            if now >= t {
                self.want_keepalive = true;
            }
        }
        if let Some(t) = self.persistent_keepalive_due() {
            if now >= t {
                if self.current.is_some() {
                    self.want_keepalive = true;
                } else {
                    self.start_handshake(now);
                }
            }
        }
        if let Some(sent) = self.probe_sent {
            if now >= sent + PROBE_TIMEOUT {
                // The peer no longer holds our session: handshake again.
                // Data sent from now on starts the watch afresh, so a run of
                // attempts that gave up is tried again when there is
                // something to send.
                // The attempts count from the probe: the peer has been
                // late since then (`overdue`).
                self.probe_sent = None;
                self.unanswered_since = None;
                if self.endpoint.is_some() && self.pending.is_none() {
                    self.attempts_since.get_or_insert(sent);
                }
                self.start_handshake(now);
            }
        }
        if let Some(t) = self.probe_due() {
            if now >= t {
                self.want_probe = true;
            }
        }
        if self.config.keep_up {
            let due = match &self.current {
                None => true,
                Some(s) => s.age(now) >= self.keep_up_rekey_age(s.initiator),
            };
            if due {
                self.start_handshake(now);
            }
        }
    }

    /// Age at which a kept-up link rekeys on its own, without traffic. The
    /// responder waits longer, so the initiator's rekey normally wins and
    /// both sides do not race.
    fn keep_up_rekey_age(&self, initiator: bool) -> Duration {
        if initiator {
            REKEY_AFTER_TIME
        } else {
            REKEY_AFTER_TIME + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT
        }
    }

    /// When a persistent keepalive is due: with a session, a keepalive; without
    /// one, a handshake, unless one is already under way.
    fn persistent_keepalive_due(&self) -> Option<Instant> {
        let interval = self.config.persistent_keepalive?;
        if self.endpoint.is_none() || self.want_keepalive {
            return None;
        }
        if self.current.is_none() && (self.pending.is_some() || self.want_initiation) {
            return None;
        }
        Some(self.last_sent.map_or(Instant::ZERO, |s| s + interval))
    }

    /// When to probe the peer: [`PROBE_AFTER`] after the first data frame
    /// it left unanswered, or, on a kept-up link, after we last heard from
    /// it; with a session, and no probe or handshake under way.
    fn probe_due(&self) -> Option<Instant> {
        let busy = self.want_probe
            || self.probe_sent.is_some()
            || self.pending.is_some()
            || self.want_initiation;
        if busy || self.endpoint.is_none() {
            return None;
        }
        self.current.as_ref()?;
        let unanswered = self.unanswered_since;
        let silent = self.last_received.filter(|_| self.config.keep_up);
        let since = match (unanswered, silent) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(since + PROBE_AFTER)
    }

    /// When a keepalive becomes due: the peer sent data after our last send.
    /// Only with a session to send it on, so the deadline always has an effect.
    fn keepalive_due(&self) -> Option<Instant> {
        self.current.as_ref()?;
        if self.want_keepalive {
            return None;
        }
        let r = self.last_data_received?;
        if self.last_sent.is_some_and(|s| s >= r) {
            return None;
        }
        Some(r + KEEPALIVE_TIMEOUT)
    }

    /// Whether `transmit_for` has something to try.
    pub fn wants_transmit(&self) -> bool {
        self.response.is_some()
            || self.want_resend
            || self.want_initiation
            || self.want_probe
            || self.want_keepalive
    }

    /// The earliest instant at which `on_timeout` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        for s in [&self.current, &self.previous, &self.next]
            .into_iter()
            .flatten()
        {
            at(s.created + REJECT_AFTER_TIME);
        }
        if let Some(p) = &self.pending {
            at(p.retry_at);
            if p.resend_at < p.retry_at {
                at(p.resend_at);
            }
        }
        if let Some(k) = self.keepalive_due() {
            at(k);
        }
        if let Some(p) = self.probe_due() {
            at(p);
        }
        if let Some(sent) = self.probe_sent {
            at(sent + PROBE_TIMEOUT);
        }
        if let Some(k) = self.persistent_keepalive_due() {
            at(k);
        }
        if self.config.keep_up
            && self.endpoint.is_some()
            && self.pending.is_none()
            && !self.want_initiation
        {
            match &self.current {
                Some(s) => at(s.created + self.keep_up_rekey_age(s.initiator)),
                None => at(self.attempts_since.unwrap_or(Instant::ZERO)),
            }
        }
        t
    }
}

/// The jitter of a resend after `gap`: below `gap × MAX_JITTER /
/// REKEY_TIMEOUT` (a fifteenth), the share a retry after [`REKEY_TIMEOUT`]
/// gets, so two nodes resending at once drift apart.
pub(crate) fn resend_jitter(gap: Duration, random: u64) -> Duration {
    let span =
        gap.as_nanos() as u64 * MAX_JITTER.as_nanos() as u64 / REKEY_TIMEOUT.as_nanos() as u64;
    Duration::from_nanos(random % span.max(1))
}

/// Which of a peer's sessions a frame arrived on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Slot {
    Current,
    Previous,
    Next,
}
