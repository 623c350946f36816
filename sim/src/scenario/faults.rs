//! What can go wrong in a run: latency and loss on the X–Y link,
//! duplication, partitions, restarts (with wall-clock steps), roaming and
//! the attacker's moves. Each is data only; the harness (`crate::run`)
//! injects them and [`super::bounds`] says how fast the link must recover
//! from each.

use std::time::Duration;

/// A window of simulated time, from `start` to `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start, since the beginning of the run.
    pub start: Duration,
    /// End.
    pub end: Duration,
}

/// A node crashed at `down.start` (its state lost) and started again, with
/// the same key, at `down.end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restart {
    /// [`X`](super::X) or [`Y`](super::Y).
    pub node: usize,
    /// When it is down.
    pub down: Window,
    /// The node's wall clock stepped while it was down (drawn when the
    /// scenario switches [`Faults::clock_steps`] on).
    pub clock_step: Option<ClockStep>,
}

/// Which way clock steps go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Ahead.
    Forward,
    /// Back.
    Backward,
    /// Either, drawn per step.
    Both,
}

/// Clock steps switched on: every restart of the scenario comes back with
/// the node's wall clock stepped by a size drawn log-uniformly in `sizes`
/// (so seconds, minutes and hours all come up).
///
/// Core reads the wall clock once, at start (`Node::new`'s `unix_nanos`,
/// the base of its TAI64N initiation timestamps), and measures everything
/// else with the monotonic clock, which here is turmoil's elapsed time and
/// cannot step. A step of a running node is therefore invisible until it
/// restarts: a clock step is a restart whose wall clock jumped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSteps {
    /// Smallest and largest step.
    pub sizes: (Duration, Duration),
    /// Which way, for each node ([`X`](super::X), [`Y`](super::Y)).
    pub directions: [Direction; 2],
}

/// One step of a node's wall clock, seen by the node at its next boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockStep {
    /// Ahead (else back).
    pub forward: bool,
    /// By how much.
    pub by: Duration,
}

impl ClockStep {
    /// The step in signed nanoseconds.
    pub fn nanos(&self) -> i64 {
        let n = self.by.as_nanos() as i64;
        if self.forward {
            n
        } else {
            -n
        }
    }
}

impl std::fmt::Display for ClockStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            hms(self.by),
            if self.forward { "ahead" } else { "back" }
        )
    }
}

/// `1h02m03.456s`, `2m03.456s` or `3.456s`.
pub fn hms(d: Duration) -> String {
    let ms = d.as_millis();
    let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}.{ms:03}s")
    } else if m > 0 {
        format!("{m}m{s:02}.{ms:03}s")
    } else {
        format!("{s}.{ms:03}s")
    }
}

/// Link loss as turmoil models it: at each send the link breaks with
/// `fail_rate` and a broken link heals with `repair_rate`, so losses come in
/// bursts (and a break drops what is in flight). A broken link heals only
/// when something is sent on it, so with sparse traffic (a node retrying a
/// handshake every 5 s) an outage can last as long as the run: the loss
/// therefore stops at `until`, when the harness repairs the link, and
/// recovery is measured from there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loss {
    /// Chance per send that the link breaks.
    pub fail_rate: f64,
    /// Chance per send that a broken link heals.
    pub repair_rate: f64,
    /// When the loss stops.
    pub until: Duration,
}

/// What the attacker does and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Attack {
    /// When it is active.
    pub active: Window,
    /// Milliseconds between its datagrams, drawn in this range.
    pub gap_ms: (u64, u64),
    /// Times at which it floods.
    pub floods: Vec<Duration>,
    /// Datagrams per flood.
    pub flood_size: usize,
    /// The moves it makes (all of them if empty).
    pub moves: Vec<Move>,
    /// Which captured initiations it may replay.
    pub replays: Replays,
}

/// Which captured initiations the attacker replays. Core accepts two kinds
/// of replayed initiation (see the crate README, "Findings"); the general
/// attack scenarios leave those two out so that everything else stays
/// covered, and a scenario of its own pins each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replays {
    /// Any, except the two kinds below.
    Safe,
    /// Only initiations a node ignored because they crossed its own
    /// (`handshake_race`): core bug, `direct-race-replay`.
    RaceLosers,
    /// Only initiations captured before the receiving node's latest
    /// restart: the responder forgot their timestamps (as WireGuard's
    /// does), `forward-restart-replay`.
    FromBeforeRestart,
}

/// What the attacker sends, one datagram at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// Random bytes, sometimes with a valid message type and length.
    Garbage,
    /// A captured frame cut short.
    Truncated,
    /// A captured frame with a few bits flipped.
    BitFlipped,
    /// A captured frame, verbatim.
    Replay,
    /// A captured handshake message (initiation or response), verbatim.
    ReplayHandshake,
    /// A data frame with a real receiver index but forged counter and body.
    ForgedData,
    /// A real initiation, from a key the target does not know.
    UnknownKey,
}

impl Move {
    /// Every move.
    pub const ALL: [Move; 7] = [
        Move::Garbage,
        Move::Truncated,
        Move::BitFlipped,
        Move::Replay,
        Move::ReplayHandshake,
        Move::ForgedData,
        Move::UnknownKey,
    ];
}

/// Faults of a scenario; each can be switched on alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// X–Y message latency, min and max: jitter reorders unless equal.
    pub latency: (Duration, Duration),
    /// Bursty loss on the X–Y link.
    pub loss: Option<Loss>,
    /// Chance that a node sends a link datagram twice (the driver sends the
    /// copy; turmoil's jitter may deliver it first).
    pub duplicate: f64,
    /// X–Y partitions (turmoil `partition`, then `repair`).
    pub partitions: Vec<Window>,
    /// Node restarts (turmoil `crash`, then `bounce`).
    pub restarts: Vec<Restart>,
    /// Whether restarts step the node's wall clock, and how far (each
    /// restart's step is in [`Restart::clock_step`]).
    pub clock_steps: Option<ClockSteps>,
    /// Times at which X's link socket moves to a new port (roaming).
    pub roams: Vec<Duration>,
    /// Times at which a node's current session jumps its send counter to
    /// `REKEY_AFTER_MESSAGES`, as (time, node): its next datagram starts a
    /// rekey by message count, as 2^60 datagrams would.
    pub counter_jumps: Vec<(Duration, usize)>,
    /// A reload of both nodes' configurations during traffic, if any.
    pub reload: Option<Reload>,
    /// The attacker, if any.
    pub attack: Option<Attack>,
}

/// A reload of both nodes during traffic (forward mode), as an operator
/// changes both ends: X applies the new configuration at [`Reload::at`], Y
/// `y_after` later, through `Node::reload`. One service goes, one comes,
/// the others are unchanged and must lose nothing; with `rekey` the peer's
/// preshared key changes too, so the nodes handshake again.
///
/// The customers of the two changing services are quiet from a second
/// before X's reload until a second after Y's ([`Reload::quiet`]): a
/// datagram sent to a listen socket that a reload closed is lost before any
/// node sees it, which no counter can hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reload {
    /// When X reloads.
    pub at: Duration,
    /// How much later Y reloads.
    pub y_after: Duration,
    /// The service (its position, `0..Setup::services`) the reload removes.
    pub removed: usize,
    /// The service the reload adds: configured on neither node before it.
    pub added: usize,
    /// Whether the peer's preshared key changes on both nodes.
    pub rekey: bool,
}

impl Reload {
    /// Whether service `s` runs before the reload (`after == false`) or
    /// after it.
    pub fn runs(&self, s: usize, after: bool) -> bool {
        if after {
            s != self.removed
        } else {
            s != self.added
        }
    }

    /// Whether service `s` is configured alike before and after.
    pub fn unchanged(&self, s: usize) -> bool {
        s != self.removed && s != self.added
    }

    /// When Y reloads.
    pub fn y_at(&self) -> Duration {
        self.at + self.y_after
    }

    /// The span the changing services' customers are quiet in.
    pub fn quiet(&self) -> (Duration, Duration) {
        let margin = Duration::from_secs(1);
        (self.at.saturating_sub(margin), self.y_at() + margin)
    }
}

impl Faults {
    /// No faults; in-order delivery after `latency`.
    pub fn none(latency: Duration) -> Faults {
        Faults {
            latency: (latency, latency),
            loss: None,
            duplicate: 0.0,
            partitions: Vec::new(),
            restarts: Vec::new(),
            clock_steps: None,
            roams: Vec::new(),
            counter_jumps: Vec::new(),
            reload: None,
            attack: None,
        }
    }
}
