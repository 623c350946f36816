//! Scenarios: a mode, a cast of customers, traffic, and the faults to inject,
//! all drawn from the seed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use sdt_core::link::{
    MAX_JITTER, MAX_RESEND_GAP, PROBE_AFTER, PROBE_TIMEOUT, REKEY_ATTEMPT_TIME, REKEY_TIMEOUT,
};
use sdt_core::node::ChannelLimits;

use crate::trace::mix;

/// Index of node X (customers `alice-N` in front of it) in per-node arrays.
pub const X: usize = 0;
/// Index of node Y (targets `bob-N` behind it).
pub const Y: usize = 1;
/// Host names of the two nodes.
pub const NODE_NAMES: [&str; 2] = ["x", "y"];
/// The nodes' link port (X's moves when it roams).
pub const LINK_PORT: u16 = 51820;
/// Where customers in front of X send from.
pub const ALICE_PORT: u16 = 4000;
/// Where targets behind Y listen.
pub const BOB_PORT: u16 = 9000;
/// A port on the targets' hosts nobody listens on and no allow-list admits.
pub const BOB_CLOSED_PORT: u16 = 9001;
/// Listen port of the first service on X (forward service `i` uses
/// `LISTEN_PORT + i`) and of the direct service on Y.
pub const LISTEN_PORT: u16 = 7000;
/// The attacker's socket.
pub const ATTACKER_PORT: u16 = 6666;
/// Simulated time per turmoil step.
pub const TICK: Duration = Duration::from_millis(1);

/// The four modes of a service, core's own. In the scenarios: direct is
/// alice-0 <-> bob-0 with alice-1 a stranger; forward is alice-N ->
/// x:7000+s -> bob-s with answers back; push is alice-N -> x:7000 -> bob-0,
/// one way; router is alice-N's IP packets to any bob through X's TUN, the
/// last bob not on Y's allow-list.
pub use sdt_core::node::Mode;

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
    /// [`X`] or [`Y`].
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
    /// Which way, for each node ([`X`], [`Y`]).
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
    /// The attacker, if any.
    pub attack: Option<Attack>,
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
            attack: None,
        }
    }
}

/// The end of a fault, after which traffic must flow again within `bound`.
#[derive(Debug, Clone, PartialEq)]
pub struct Heal {
    /// When the fault ended.
    pub at: Duration,
    /// What ended, for reports.
    pub what: String,
    /// The bound on recovery after it: [`Setup::recovery_bound`], plus the
    /// step for a backward clock step that only the stepped node can get
    /// over (see [`Setup::heal_bound`]).
    pub bound: Duration,
    /// The clock step of a restart, as (node, step).
    pub clock_step: Option<(usize, ClockStep)>,
}

/// When customers send.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// First datagram no earlier than this.
    pub start: Duration,
    /// No datagram at or after this; the run goes on for a quiet spell so
    /// everything in flight lands.
    pub stop: Duration,
    /// Milliseconds between a customer's datagrams, drawn in this range.
    pub gap_ms: (u64, u64),
    /// Bursty customers: active for a time drawn from the first range (ms),
    /// then silent for one drawn from the second.
    pub bursts: Option<((u64, u64), (u64, u64))>,
    /// Most padding bytes after the id.
    pub pad_max: usize,
    /// Every customer sends its first datagram at `start` exactly (else at a
    /// random time within the first gap).
    pub in_step: bool,
    /// Targets answer each request after a delay drawn in this range (ms),
    /// like a slow DNS upstream; `(0, 0)` answers at once.
    pub answer_delay_ms: (u64, u64),
}

/// Everything one run needs, drawn from the scenario and the seed.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Scenario name.
    pub scenario: &'static str,
    /// The seed.
    pub seed: u64,
    /// The mode of the service(s).
    pub mode: Mode,
    /// Customers in front of X: `alice-0` ..
    pub alices: usize,
    /// Targets behind Y: `bob-0` ..
    pub bobs: usize,
    /// Forward mode: how many services (alice-N uses service N % services,
    /// whose target is bob-(N % services)).
    pub services: usize,
    /// Channel limits of forward and router services, on both nodes.
    pub limits: ChannelLimits,
    /// Customer traffic.
    pub traffic: Traffic,
    /// Length of the run.
    pub duration: Duration,
    /// Latency between customers and nodes (and the attacker), min and max.
    pub customer_latency: (Duration, Duration),
    /// Faults.
    pub faults: Faults,
    /// Whether the network loses and duplicates nothing, so counters must
    /// add up exactly (see `check`).
    pub exact_counters: bool,
    /// The mirror image (forward and push): the entry half is on Y, where
    /// the bobs are the clients, and the exit on X, whose targets are the
    /// alices. Y does not know X's endpoint; X keeps the link up
    /// (`keep_up`), as the design asks of a node whose peer holds the entry.
    pub reverse: bool,
    /// Run the network over IPv6 (turmoil's fe80::/64), the TUN side of
    /// router mode too.
    pub ipv6: bool,
    /// The exit's channel sockets take their local ports from a pool of
    /// this many, the most recently freed first, as a kernel short of
    /// ephemeral ports hands them out: a port released early serves the
    /// next channel at once. `None`: turmoil's own ephemeral ports.
    pub exit_port_pool: Option<u16>,
    /// When each node first boots ([`X`], [`Y`]); `None`: both at once, at
    /// the start of the run. Before its start a node has no socket, so
    /// whatever is sent to it is lost. With a start order, the later start
    /// is a heal held to [`Setup::start_bound`].
    pub start: Option<[Duration; 2]>,
}

impl Setup {
    /// The unspecified address of the run's IP version, to bind to.
    pub fn unspecified(&self) -> IpAddr {
        if self.ipv6 {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        }
    }
}

/// Who starts and who answers in a forward or push service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Host name prefix of the clients (`alice-` or `bob-`).
    pub clients: &'static str,
    /// The clients' port.
    pub client_port: u16,
    /// Host name prefix of the targets.
    pub targets: &'static str,
    /// The targets' port.
    pub target_port: u16,
    /// The node with the entry half ([`X`] or [`Y`]).
    pub entry: usize,
}

impl Setup {
    /// The roles of forward and push services.
    pub fn roles(&self) -> Roles {
        if self.reverse {
            Roles {
                clients: "bob-",
                client_port: BOB_PORT,
                targets: "alice-",
                target_port: ALICE_PORT,
                entry: Y,
            }
        } else {
            Roles {
                clients: "alice-",
                client_port: ALICE_PORT,
                targets: "bob-",
                target_port: BOB_PORT,
                entry: X,
            }
        }
    }
}

impl Setup {
    /// Times at which a fault ends and traffic must flow again within the
    /// recovery bound: partitions heal, restarted nodes come back, X roams,
    /// the loss stops.
    pub fn heals(&self) -> Vec<Heal> {
        let f = &self.faults;
        let normal = self.recovery_bound();
        let mut v: Vec<Heal> = Vec::new();
        if let Some(start) = self.start {
            let later = if start[X] >= start[Y] { X } else { Y };
            let other = crate::world::other(later);
            v.push(Heal {
                at: start[later],
                what: format!(
                    "{} started at {:.3}s, {:.3}s after {}",
                    NODE_NAMES[later],
                    secs(start[later]),
                    secs(start[later] - start[other]),
                    NODE_NAMES[other]
                ),
                bound: self.start_bound(),
                clock_step: None,
            });
        }
        let heal = |at: Duration, what: String| Heal {
            at,
            what,
            bound: normal,
            clock_step: None,
        };
        for p in &f.partitions {
            v.push(heal(
                p.end,
                format!("partition healed at {:.3}s", secs(p.end)),
            ));
        }
        for r in &f.restarts {
            let mut h = heal(
                r.down.end,
                format!("{} back at {:.3}s", NODE_NAMES[r.node], secs(r.down.end)),
            );
            h.bound = self.restart_bound();
            if let Some(c) = r.clock_step {
                h.what += &format!(", wall clock {c}");
                h.clock_step = Some((r.node, c));
                h.bound = self.heal_bound(r, c);
            }
            v.push(h);
        }
        for &t in &f.roams {
            let mut h = heal(t, format!("x roamed at {:.3}s", secs(t)));
            // A roam around a restart of X with its clock stepped is part of
            // that fault, and has its bound.
            for r in &f.restarts {
                if let Some(c) = r.clock_step {
                    if r.node == X && t >= r.down.start && t <= r.down.end + self.restart_bound() {
                        h.bound = h.bound.max(self.heal_bound(r, c));
                    }
                }
            }
            v.push(h);
        }
        if let Some(l) = f.loss {
            v.push(heal(
                l.until,
                format!("loss stopped at {:.3}s", secs(l.until)),
            ));
        }
        v.sort_by_key(|h| h.at);
        v
    }

    /// The bound on recovery after restart `r`, whose node came back with
    /// its wall clock stepped by `step`.
    ///
    /// A responder refuses an initiation whose TAI64N timestamp is not newer
    /// than the last it accepted from the initiator (`replayed_initiation`).
    /// With its wall clock `W` ahead of the true time `t`, a node stamps
    /// `t + W`. Its peer last accepted a stamp `t_a + W_old`, from an
    /// initiation sent at `t_a`, before the crash. Stepped by `s`, the node
    /// stamps `t + W_old + s`:
    /// - ahead (`s > 0`), every stamp is newer: [`Setup::restart_bound`];
    /// - back by `S`, the peer refuses the node's initiations until
    ///   `t > t_a + S`, which is before `t_boot + S` since `t_a < t_boot`.
    ///   The restarted node has no timestamps from before its restart to
    ///   hold against anyone, so where the peer reaches the node
    ///   ([`Setup::peer_reaches`]: it probes, or refuses the stale
    ///   initiation and reaches out, `link::reach_out`) the link comes up
    ///   without waiting for the clock, within the restart bound. (It
    ///   did not always before finding 6's fix: the peer's reach-out could
    ///   cross the node's next initiation, the node, whose key won the
    ///   race, ignored it and recorded its timestamp, and nothing crossed
    ///   until a fresh initiation of the peer's; now a stale initiation
    ///   that meets the peer's pending reach-out renews it at once,
    ///   `link::reach_out`.) Otherwise only the stepped
    ///   node's attempts can bring the link up, and they get through once
    ///   its clock passes `t_a`: at most `S` plus the restart bound.
    pub fn heal_bound(&self, r: &Restart, step: ClockStep) -> Duration {
        let normal = self.restart_bound();
        if step.forward || self.peer_reaches(r) {
            normal
        } else {
            normal + step.by
        }
    }

    /// Whether the peer of the node restarted in `r` starts a handshake to
    /// where the node is, soon enough for [`Setup::restart_bound`]. Every
    /// peer in these scenarios notices on its own once it has heard from
    /// the node: one that sends data probes after [`PROBE_AFTER`] of it
    /// unanswered, one that keeps the link up (it holds an exit half, or a
    /// direct service) after [`PROBE_AFTER`] of silence, and either starts a
    /// handshake when the probe is unanswered for [`PROBE_TIMEOUT`]. So:
    /// - its attempts have not given up: a peer that does not keep the
    ///   link up gives up [`REKEY_ATTEMPT_TIME`] after they started, about
    ///   two seconds after the crash, so the node must be down for less;
    /// - they go where the node is: X must not move to a new port from its
    ///   crash until the bound has passed (the peer's endpoint would be
    ///   stale, and a refused initiation rightly does not move it).
    pub fn peer_reaches(&self, r: &Restart) -> bool {
        let until = r.down.end + self.restart_bound();
        let moved = r.node == X
            && self
                .faults
                .roams
                .iter()
                .any(|&t| t >= r.down.start && t <= until);
        r.down.end - r.down.start < REKEY_ATTEMPT_TIME && !moved
    }
}

/// Upper bound on one trip of a datagram customer to customer: customer
/// link, X–Y link, customer link.
fn trip(setup: &Setup) -> Duration {
    2 * setup.customer_latency.1 + setup.faults.latency.1
}

/// The longest gap between two copies of an unanswered initiation: core
/// resends after [`MAX_RESEND_GAP`] at most, plus a jitter below
/// `gap × MAX_JITTER / REKEY_TIMEOUT` (core's `resend_jitter`), and a fresh
/// initiation replaces the copies within [`REKEY_TIMEOUT`] + [`MAX_JITTER`]
/// of the first, no later than the next copy would have come: 1.067 s.
pub fn resend_spacing() -> Duration {
    let jitter = MAX_RESEND_GAP.as_nanos() * MAX_JITTER.as_nanos() / REKEY_TIMEOUT.as_nanos();
    MAX_RESEND_GAP + Duration::from_nanos(jitter as u64)
}

impl Setup {
    /// What every bound adds once a handshake starts, to the first
    /// datagram sent after the heal being delivered (and its answer back):
    /// - three X–Y trips: the initiation (or the copy that gets through),
    ///   the response, and the initiator's first frame, which a responder
    ///   waits for before it sends on the session (the entry of a mirror
    ///   image is the responder);
    /// - the next datagram, up to one send gap later (a staged one is sent
    ///   at once);
    /// - its trip customer to customer, and its answer's trip back;
    /// - two ticks, since hosts see time in 1 ms steps.
    pub fn after_handshake(&self) -> Duration {
        3 * self.faults.latency.1
            + Duration::from_millis(self.traffic.gap_ms.1)
            + 2 * trip(self)
            + 2 * TICK
    }

    /// The bound on the first datagram crossing after the later of the two
    /// nodes started ([`Setup::start`]), measured from that start:
    /// - the earlier node, if it initiates, has been sending copies of its
    ///   initiation into nothing; the first that reaches the later node is
    ///   sent at most [`resend_spacing`] after the one before (1.067 s);
    /// - if the later node initiates, it does at its start (kept up) or on
    ///   its customers' first datagram, to a peer already up; a crossing
    ///   initiation is ignored once by the higher key, whose own copy the
    ///   other then answers;
    /// - then [`Setup::after_handshake`].
    ///
    /// So `MAX_RESEND_GAP × (1 + MAX_JITTER / REKEY_TIMEOUT) + 3 × X–Y
    /// latency + gap + 2 trips + 2 ticks`: about 1.14 s with the start-order
    /// scenarios' latencies (at most 15 ms X–Y, 3 ms to customers, a gap of
    /// 10 ms).
    pub fn start_bound(&self) -> Duration {
        resend_spacing() + self.after_handshake()
    }

    /// The bound on recovery after a restarted node is back (state lost,
    /// the key kept), from the moment it is back:
    /// - the restarted node drops its peer's frames under the session it
    ///   lost, and says nothing (they do not authenticate for it). Its peer
    ///   has sent it data (or, keeping the link up, heard nothing) since at
    ///   most one send gap after it is back; [`PROBE_AFTER`] later it
    ///   probes, and [`PROBE_TIMEOUT`] after that it starts a handshake;
    /// - if that handshake started while the node was still down, its
    ///   copies went nowhere, and the next comes within [`resend_spacing`];
    /// - a restarted node that initiates does so at once (kept up) or on
    ///   its customers' first datagram, and the peer accepts it (a newer
    ///   timestamp);
    /// - then [`Setup::after_handshake`].
    ///
    /// So `max(PROBE_AFTER + PROBE_TIMEOUT + gap, resend spacing) + 3 ×
    /// X–Y latency + gap + 2 trips + 2 ticks`: about 2.1 s with the
    /// restart-phase scenarios' latencies, 2.8 s with the general ones (at
    /// most 60 ms X–Y, 3 ms to customers, a gap of at most 400 ms).
    pub fn restart_bound(&self) -> Duration {
        let noticed = PROBE_AFTER + PROBE_TIMEOUT + Duration::from_millis(self.traffic.gap_ms.1);
        noticed.max(resend_spacing()) + self.after_handshake()
    }

    /// The bound on recovery after a partition heals, X roams or the loss
    /// stops: the time from the end of the fault until the first datagram
    /// sent after it is delivered (and, in modes with answers, until its
    /// answer is back).
    ///
    /// Derivation, from the link's timers:
    /// - a handshake under way whose initiation never reached the peer gets
    ///   through with the next copy, within [`resend_spacing`];
    /// - one whose initiation reached the peer, but whose response the
    ///   fault lost, cannot: the peer refuses every copy as a replay and
    ///   answers nothing. A fresh initiation replaces it [`REKEY_TIMEOUT`]
    ///   plus up to [`MAX_JITTER`] after the first copy, sent before the
    ///   heal: 5.333 s;
    /// - a session that outlived the fault carries at once; one whose peer
    ///   stopped answering is probed and replaced within [`PROBE_AFTER`] +
    ///   [`PROBE_TIMEOUT`];
    /// - then [`Setup::after_handshake`].
    ///
    /// So `REKEY_TIMEOUT + MAX_JITTER + 3 × X–Y latency + gap + 2 trips +
    /// 2 ticks`: about 6 s with the scenarios' latencies (at most 150 ms
    /// X–Y in the chaos scenarios, 3 ms to customers, a gap of at most
    /// 400 ms). The old bound, 21 s, had a node notice a silent peer only
    /// after `KEEPALIVE_TIMEOUT + REKEY_TIMEOUT` and retry only every
    /// `REKEY_TIMEOUT`.
    pub fn recovery_bound(&self) -> Duration {
        let lost_response = REKEY_TIMEOUT + MAX_JITTER;
        let probed = PROBE_AFTER + PROBE_TIMEOUT + Duration::from_millis(self.traffic.gap_ms.1);
        lost_response.max(probed).max(resend_spacing()) + self.after_handshake()
    }

    /// The command that runs this setup again.
    pub fn reproduce(&self) -> String {
        format!(
            "cargo run -p sim -- --scenario {} --seed {}",
            self.scenario, self.seed
        )
    }

    /// Whether answers come back in this mode.
    pub fn answers(&self) -> bool {
        self.mode != Mode::Push
    }
}

/// A named family of setups.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Name on the command line.
    pub name: &'static str,
    /// What it exercises.
    pub about: &'static str,
    build: fn(&mut Draw, &mut Setup),
}

impl Scenario {
    /// The setup for `seed`.
    pub fn setup(&self, seed: u64) -> Setup {
        let mut draw = Draw(ChaCha8Rng::seed_from_u64(mix(seed, self.name, 0)));
        let mut setup = base(self.name, seed, Mode::Forward, &mut draw);
        (self.build)(&mut draw, &mut setup);
        setup
    }
}

/// Draws scenario parameters.
pub struct Draw(ChaCha8Rng);

impl Draw {
    /// Uniform in `lo..=hi`.
    pub fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.0.next_u64() % (hi - lo + 1)
    }

    /// Uniform in `lo..=hi` milliseconds.
    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.int(lo, hi))
    }

    /// Uniform in `[lo, hi)`.
    pub fn real(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The capacity of each simulated node's channel table (live and held
/// channels together).
pub const NODE_CHANNELS: usize = 64;

/// Quiet time at the end of a run for everything in flight to land.
const QUIET: Duration = Duration::from_secs(2);

fn base(name: &'static str, seed: u64, mode: Mode, d: &mut Draw) -> Setup {
    let stop = d.ms(15_000, 20_000);
    Setup {
        scenario: name,
        seed,
        mode,
        alices: d.int(2, 4) as usize,
        bobs: 1,
        services: 1,
        limits: ChannelLimits {
            max_channels: 16,
            idle_timeout: Duration::from_secs(30),
            min_idle_for_eviction: Duration::from_secs(2),
            ..ChannelLimits::default()
        },
        traffic: Traffic {
            start: d.ms(0, 300),
            stop,
            gap_ms: (50, d.int(150, 400)),
            bursts: None,
            pad_max: d.int(0, 600) as usize,
            in_step: false,
            answer_delay_ms: (0, 0),
        },
        duration: stop + QUIET,
        customer_latency: (Duration::from_millis(1), Duration::from_millis(3)),
        faults: Faults {
            latency: (d.ms(2, 10), d.ms(20, 60)),
            ..Faults::none(Duration::ZERO)
        },
        exact_counters: true,
        reverse: false,
        ipv6: false,
        exit_port_pool: None,
        start: None,
    }
}

fn set_mode(s: &mut Setup, d: &mut Draw, mode: Mode) {
    s.mode = mode;
    match mode {
        Mode::Direct => {
            // alice-0 is the direct customer, alice-1 a stranger.
            s.alices = 2;
            s.bobs = 1;
        }
        Mode::Forward => {
            s.services = d.int(1, 2) as usize;
            s.bobs = s.services;
        }
        Mode::Push => s.bobs = 1,
        Mode::Router => {
            // bob-0 and bob-1 are allowed, bob-2 is not.
            s.bobs = 3;
            s.alices = d.int(2, 3) as usize;
        }
    }
}

fn clean(d: &mut Draw, s: &mut Setup, mode: Mode) {
    set_mode(s, d, mode);
}

/// The mirror image of `mode` (forward or push): clients behind Y.
fn reverse(d: &mut Draw, s: &mut Setup, mode: Mode) {
    set_mode(s, d, mode);
    s.reverse = true;
    // The clients are the bobs, the targets the alices.
    std::mem::swap(&mut s.alices, &mut s.bobs);
}

/// A short, fault-free, in-order run (fixed latencies), for the snapshot
/// of each mode's first trace lines.
fn canonical(d: &mut Draw, s: &mut Setup, mode: Mode) {
    set_mode(s, d, mode);
    s.alices = 2;
    s.services = 1;
    if mode == Mode::Forward {
        s.bobs = 1;
    }
    s.traffic = Traffic {
        start: Duration::from_millis(100),
        stop: Duration::from_secs(3),
        gap_ms: (300, 300),
        bursts: None,
        pad_max: 0,
        in_step: false,
        answer_delay_ms: (0, 0),
    };
    s.duration = s.traffic.stop + QUIET;
    s.customer_latency = (Duration::from_millis(2), Duration::from_millis(2));
    s.faults = Faults::none(Duration::from_millis(10));
}

fn chaos(d: &mut Draw, s: &mut Setup, mode: Mode) {
    set_mode(s, d, mode);
    s.exact_counters = false;
    s.faults.latency = (d.ms(1, 10), d.ms(40, 150));
    s.faults.loss = Some(Loss {
        fail_rate: d.real(0.01, 0.08),
        repair_rate: d.real(0.2, 0.6),
        until: d.ms(15_000, 25_000),
    });
    s.faults.duplicate = d.real(0.02, 0.2);
    extend_for_recovery(s);
}

/// Runs at least until every heal has had its recovery bound, plus slack.
fn extend_for_recovery(s: &mut Setup) {
    let need = s
        .heals()
        .iter()
        .map(|h| h.at + h.bound + Duration::from_secs(3))
        .max()
        .unwrap_or(Duration::ZERO);
    if s.traffic.stop < need {
        s.traffic.stop = need;
    }
    s.duration = s.traffic.stop + QUIET;
}

fn partition(d: &mut Draw, s: &mut Setup, mode: Mode) {
    set_mode(s, d, mode);
    s.exact_counters = false;
    let mut t = d.ms(3_000, 8_000);
    for _ in 0..d.int(1, 2) {
        let end = t + d.ms(1_000, 25_000);
        s.faults.partitions.push(Window { start: t, end });
        // The next fault only after this one's recovery bound.
        t = end + s.recovery_bound() + d.ms(1_000, 5_000);
    }
    extend_for_recovery(s);
}

fn restart(d: &mut Draw, s: &mut Setup, mode: Mode, node: Option<usize>) {
    set_mode(s, d, mode);
    s.exact_counters = false;
    let node = node.unwrap_or_else(|| d.int(0, 1) as usize);
    let start = d.ms(3_000, 10_000);
    // From a quick reboot to one longer than the peer's patience.
    let end = start + d.ms(100, 20_000);
    s.faults.restarts.push(Restart {
        node,
        down: Window { start, end },
        clock_step: None,
    });
    extend_for_recovery(s);
}

/// Steps: from a second to six hours, log-uniform.
const CLOCK_STEPS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(6 * 3600));

/// Steps of the scenarios that pin finding 5: longer than a restart comes
/// back after (so the delay shows on every seed), short enough for the runs
/// to reach recovery.
const PINNED_STEPS: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(120));

/// Draws a clock step for every restart, if the scenario switched clock
/// steps on. Called last, so every other draw is the one the scenario makes
/// without clock steps.
fn step_clocks(d: &mut Draw, s: &mut Setup) {
    let Some(c) = s.faults.clock_steps else {
        return;
    };
    let (lo, hi) = (c.sizes.0.as_secs_f64(), c.sizes.1.as_secs_f64());
    for r in &mut s.faults.restarts {
        let forward = match c.directions[r.node] {
            Direction::Forward => true,
            Direction::Backward => false,
            Direction::Both => d.int(0, 1) == 1,
        };
        let by = lo * (hi / lo).powf(d.real(0.0, 1.0));
        r.clock_step = Some(ClockStep {
            forward,
            by: Duration::from_millis((by * 1000.0) as u64),
        });
    }
    // A step may lengthen a bound.
    extend_for_recovery(s);
}

/// One restart of `node` (drawn if `None`), its wall clock stepped.
fn clock_step(d: &mut Draw, s: &mut Setup, mode: Mode, node: Option<usize>, steps: ClockSteps) {
    restart(d, s, mode, node);
    s.faults.clock_steps = Some(steps);
    step_clocks(d, s);
}

/// Both nodes restart, one after the other (the order drawn), each with its
/// wall clock stepped ahead.
fn clock_forward(d: &mut Draw, s: &mut Setup) {
    set_mode(s, d, Mode::Forward);
    s.exact_counters = false;
    let first = d.int(0, 1) as usize;
    let mut t = d.ms(3_000, 10_000);
    for node in [first, crate::world::other(first)] {
        let end = t + d.ms(100, 20_000);
        s.faults.restarts.push(Restart {
            node,
            down: Window { start: t, end },
            clock_step: None,
        });
        // The next fault only after this one's recovery bound.
        t = end + s.recovery_bound() + d.ms(1_000, 5_000);
    }
    s.faults.clock_steps = Some(ClockSteps {
        sizes: CLOCK_STEPS,
        directions: [Direction::Forward; 2],
    });
    step_clocks(d, s);
}

fn roam(d: &mut Draw, s: &mut Setup, mode: Mode) {
    set_mode(s, d, mode);
    s.exact_counters = false;
    let mut t = d.ms(2_000, 6_000);
    for _ in 0..d.int(1, 2) {
        s.faults.roams.push(t);
        t += s.recovery_bound() + d.ms(1_000, 5_000);
    }
    extend_for_recovery(s);
}

fn pressure(d: &mut Draw, s: &mut Setup, mode: Mode) {
    set_mode(s, d, mode);
    s.exact_counters = false;
    s.alices = d.int(6, 9) as usize;
    s.limits = ChannelLimits {
        max_channels: d.int(2, 5) as u16,
        idle_timeout: d.ms(3_000, 8_000),
        min_idle_for_eviction: d.ms(300, 2_000),
        ..ChannelLimits::default()
    };
    s.traffic.stop = d.ms(25_000, 35_000);
    s.duration = s.traffic.stop + QUIET;
    s.traffic.bursts = Some(((300, 3_000), (200, 6_000)));
}

/// Table pressure with targets that answer up to 8 s late, and an exit
/// whose ports are reused as soon as they are freed: a late reply for an
/// evicted channel arrives on its port, which must still be held (core's
/// exit port rule), never on a newer channel's.
fn late_replies(d: &mut Draw, s: &mut Setup, mode: Mode) {
    pressure(d, s, mode);
    s.traffic.answer_delay_ms = (0, 8_000);
    s.exit_port_pool = Some(NODE_CHANNELS as u16);
    // The last answers land before the run ends.
    s.duration = s.traffic.stop + Duration::from_secs(8) + QUIET;
}

fn attack(d: &mut Draw, s: &mut Setup, mode: Mode) {
    set_mode(s, d, mode);
    // The attacker's datagrams all end up as counted drops, so counters
    // still add up exactly.
    let start = d.ms(100, 2_000);
    let stop = s.traffic.stop;
    let floods = (0..d.int(1, 3))
        .map(|_| d.ms(start.as_millis() as u64, stop.as_millis() as u64))
        .collect();
    s.faults.attack = Some(Attack {
        active: Window { start, end: stop },
        gap_ms: (5, d.int(20, 80)),
        floods,
        flood_size: d.int(100, 300) as usize,
        moves: Vec::new(),
        replays: Replays::Safe,
    });
}

/// The smallest reproduction of the race-loser replay: direct mode, both
/// customers start at once so both nodes initiate and one initiation loses
/// the race; the attacker then replays that initiation, and nothing else.
fn race_replay(d: &mut Draw, s: &mut Setup) {
    set_mode(s, d, Mode::Direct);
    // Both customers send at once: both nodes initiate and the initiations
    // cross. Sessions are confirmed (3 one-way trips) before the next
    // datagram, so neither node initiates again and the initiation that
    // lost the race stays the newest the winner has seen from its peer.
    s.traffic.start = Duration::from_millis(100);
    s.traffic.in_step = true;
    s.traffic.gap_ms = (300, 300);
    s.traffic.stop = Duration::from_secs(5);
    s.duration = s.traffic.stop + QUIET;
    s.faults.latency = (Duration::from_millis(30), Duration::from_millis(30));
    s.faults.attack = Some(Attack {
        active: Window {
            start: Duration::from_secs(2),
            end: Duration::from_secs(4),
        },
        gap_ms: (500, 500),
        floods: Vec::new(),
        flood_size: 0,
        moves: vec![Move::ReplayHandshake],
        replays: Replays::RaceLosers,
    });
}

/// The stale-endpoint race: X restarts and comes back on a new link port
/// (a reboot behind NAT). Y, whose sends to X went unanswered, keeps
/// initiating to X's old port; X initiates from the new one and, when Y's key
/// is the higher, Y ignores each of X's initiations as a race, once per
/// attempt of its own, and starts a new attempt every REKEY_TIMEOUT.
fn restart_new_port(d: &mut Draw, s: &mut Setup) {
    set_mode(s, d, Mode::Forward);
    s.exact_counters = false;
    let start = d.ms(2_000, 4_000);
    // Down long enough for Y to notice (KEEPALIVE + REKEY_TIMEOUT) and
    // start initiating to the old port.
    let end = start + d.ms(16_000, 25_000);
    s.faults.restarts.push(Restart {
        node: X,
        down: Window { start, end },
        clock_step: None,
    });
    s.faults.roams.push(end - Duration::from_millis(1));
    extend_for_recovery(s);
}

/// The smallest reproduction of the replay across a restart: forward mode,
/// Y restarts, and the attacker then replays initiations X sent to Y's
/// previous incarnation, and nothing else.
fn restart_replay(d: &mut Draw, s: &mut Setup) {
    set_mode(s, d, Mode::Forward);
    s.traffic.stop = Duration::from_secs(10);
    s.duration = s.traffic.stop + QUIET;
    s.faults.latency = (Duration::from_millis(20), Duration::from_millis(20));
    s.faults.restarts.push(Restart {
        node: Y,
        down: Window {
            start: Duration::from_secs(3),
            end: Duration::from_secs(4),
        },
        clock_step: None,
    });
    s.faults.attack = Some(Attack {
        active: Window {
            start: Duration::from_secs(4),
            end: Duration::from_secs(5),
        },
        gap_ms: (300, 300),
        floods: Vec::new(),
        flood_size: 0,
        moves: vec![Move::ReplayHandshake],
        replays: Replays::FromBeforeRestart,
    });
    s.exact_counters = false;
    extend_for_recovery(s);
}

/// Start offsets of the start-order scenarios: Y starts this many steps of
/// [`START_STEP`] after X, from `-(START_OFFSETS / 2)` (X 8 s after Y) to
/// `START_OFFSETS / 2` (Y 8 s after X); seed `n` takes offset `n %
/// START_OFFSETS`, so every run of `START_OFFSETS` seeds covers them all.
pub const START_OFFSETS: u64 = 161;
/// The step between two start offsets.
pub const START_STEP: Duration = Duration::from_millis(100);

/// Y's start minus X's for `seed` in the start-order scenarios, in ms.
pub fn start_offset_ms(seed: u64) -> i64 {
    (seed % START_OFFSETS) as i64 * START_STEP.as_millis() as i64
        - (START_OFFSETS / 2) as i64 * START_STEP.as_millis() as i64
}

/// `mode` (its mirror image if `reverse`), with clients (the bobs in a
/// mirror image) sending 100 datagrams a second each and short X–Y
/// latencies.
fn steady_flow(d: &mut Draw, s: &mut Setup, mode: Mode, reverse: bool) {
    set_mode(s, d, mode);
    if reverse {
        s.reverse = true;
        std::mem::swap(&mut s.alices, &mut s.bobs);
    }
    s.exact_counters = false;
    s.traffic.start = Duration::ZERO;
    // 100 datagrams a second in all (direct: alice-0 and bob-0 both send).
    let clients = if reverse { s.bobs } else { s.alices } as u64;
    s.traffic.gap_ms = (10 * clients, 10 * clients);
    s.faults.latency = (d.ms(2, 5), d.ms(5, 15));
}

/// Ends the traffic half a second after every heal's bound, and the run
/// half a second later: enough with these latencies, and short, so that
/// hundreds of runs stay cheap.
fn end_soon_after_heals(s: &mut Setup) {
    let slack = Duration::from_millis(500);
    s.traffic.stop = s
        .heals()
        .iter()
        .map(|h| h.at + h.bound + slack)
        .max()
        .unwrap_or(slack);
    s.duration = s.traffic.stop + slack;
}

/// Start order: both nodes fault-free, one starting up to 8 s after the
/// other ([`start_offset_ms`]), customers sending from the start; the
/// first datagram must cross within [`Setup::start_bound`] of the later
/// start.
fn start_order(d: &mut Draw, s: &mut Setup, mode: Mode, reverse: bool) {
    steady_flow(d, s, mode, reverse);
    let offset = start_offset_ms(s.seed);
    let late = Duration::from_millis(offset.unsigned_abs());
    s.start = Some(if offset >= 0 {
        [Duration::ZERO, late]
    } else {
        [late, Duration::ZERO]
    });
    end_soon_after_heals(s);
}

/// Restart phases of the restart-phase scenarios: node restarts `2 s +
/// (seed % RESTART_PHASES) × RESTART_STEP` in, two periods of the peer's
/// probe timer in steps of 0.1 s, and stays down 50 ms to 3 s (drawn), so
/// the peer's probe, probe timeout and resend timers stand anywhere when
/// it is back.
pub const RESTART_PHASES: u64 = 20;
/// The step between two restart phases.
pub const RESTART_STEP: Duration = Duration::from_millis(100);

/// A restart of `node` while the flow runs, at the phase the seed picks,
/// with an attacker (no floods, so no node is under load) sending garbage,
/// mutations, replays and forgeries all along: recovery within
/// [`Setup::restart_bound`], and the stance holds throughout.
fn restart_phase(d: &mut Draw, s: &mut Setup, mode: Mode, reverse: bool, node: usize) {
    steady_flow(d, s, mode, reverse);
    let start = Duration::from_secs(2) + (s.seed % RESTART_PHASES) as u32 * RESTART_STEP;
    let end = start + d.ms(50, 3_000);
    s.faults.restarts.push(Restart {
        node,
        down: Window { start, end },
        clock_step: None,
    });
    end_soon_after_heals(s);
    s.faults.attack = Some(Attack {
        active: Window {
            start: Duration::from_millis(500),
            end: s.traffic.stop,
        },
        gap_ms: (20, 80),
        floods: Vec::new(),
        flood_size: 0,
        moves: Vec::new(),
        replays: Replays::Safe,
    });
}

fn mayhem(d: &mut Draw, s: &mut Setup) {
    chaos(d, s, Mode::Forward);
    attack(d, s, Mode::Forward);
    s.exact_counters = false;
    s.alices = d.int(4, 7) as usize;
    s.limits.max_channels = d.int(3, 6) as u16;
    s.limits.min_idle_for_eviction = d.ms(300, 2_000);
    s.traffic.bursts = Some(((300, 3_000), (200, 4_000)));
    let a = d.ms(3_000, 10_000);
    s.faults.partitions.push(Window {
        start: a,
        end: a + d.ms(1_000, 10_000),
    });
    let b = d.ms(12_000, 20_000);
    s.faults.restarts.push(Restart {
        node: d.int(0, 1) as usize,
        down: Window {
            start: b,
            end: b + d.ms(100, 8_000),
        },
        clock_step: None,
    });
    s.faults.roams.push(d.ms(22_000, 28_000));
    if let Some(l) = &mut s.faults.loss {
        l.until = d.ms(29_000, 32_000);
    }
    extend_for_recovery(s);
    // The restart steps the wall clock: Y's either way, X's ahead only. A
    // step back of X is finding 5 when the roam moves X out of Y's reach
    // before Y initiates, and fails mayhem whenever it comes up (13 of
    // seeds 0..100 with X's steps either way).
    s.faults.clock_steps = Some(ClockSteps {
        sizes: CLOCK_STEPS,
        directions: [Direction::Forward, Direction::Both],
    });
    step_clocks(d, s);
    if let Some(a) = &mut s.faults.attack {
        a.active.end = s.traffic.stop;
    }
}

macro_rules! scenario {
    ($name:literal, $about:literal, $f:expr) => {
        Scenario {
            name: $name,
            about: $about,
            build: $f,
        }
    };
}

/// Every scenario.
pub const SCENARIOS: &[Scenario] = &[
    scenario!(
        "canonical-direct",
        "direct, short, in order, no faults (snapshot)",
        |d, s| canonical(d, s, Mode::Direct)
    ),
    scenario!(
        "canonical-forward",
        "forward, short, in order, no faults (snapshot)",
        |d, s| canonical(d, s, Mode::Forward)
    ),
    scenario!(
        "canonical-push",
        "push, short, in order, no faults (snapshot)",
        |d, s| canonical(d, s, Mode::Push)
    ),
    scenario!(
        "canonical-router",
        "router, short, in order, no faults (snapshot)",
        |d, s| canonical(d, s, Mode::Router)
    ),
    scenario!(
        "direct",
        "direct mode, jitter only; counters exact",
        |d, s| { clean(d, s, Mode::Direct) }
    ),
    scenario!(
        "forward",
        "forward mode, jitter only; counters exact",
        |d, s| { clean(d, s, Mode::Forward) }
    ),
    scenario!("push", "push mode, jitter only; counters exact", |d, s| {
        clean(d, s, Mode::Push)
    }),
    scenario!(
        "router",
        "router mode, jitter only; counters exact",
        |d, s| { clean(d, s, Mode::Router) }
    ),
    scenario!(
        "forward-reverse",
        "forward, mirror image: entry on Y, clients behind it, X keeps the link up",
        |d, s| reverse(d, s, Mode::Forward)
    ),
    scenario!(
        "push-reverse",
        "push, mirror image: entry on Y, X keeps the link up",
        |d, s| reverse(d, s, Mode::Push)
    ),
    scenario!(
        "forward-reverse-chaos",
        "forward mirror image, bursty loss, jitter, duplication",
        |d, s| {
            chaos(d, s, Mode::Forward);
            s.reverse = true;
            std::mem::swap(&mut s.alices, &mut s.bobs);
        }
    ),
    scenario!(
        "forward-reverse-restart-x",
        "forward mirror image, X (exit, keeps the link up) restarts",
        |d, s| {
            restart(d, s, Mode::Forward, Some(X));
            s.reverse = true;
            std::mem::swap(&mut s.alices, &mut s.bobs);
        }
    ),
    scenario!(
        "forward-reverse-restart-y",
        "forward mirror image, Y (entry, cannot reach X) restarts",
        |d, s| {
            restart(d, s, Mode::Forward, Some(Y));
            s.reverse = true;
            std::mem::swap(&mut s.alices, &mut s.bobs);
        }
    ),
    scenario!(
        "push-reverse-restart-y",
        "push mirror image, Y (entry, cannot reach X) restarts; X never sends data",
        |d, s| {
            restart(d, s, Mode::Push, Some(Y));
            s.reverse = true;
            std::mem::swap(&mut s.alices, &mut s.bobs);
        }
    ),
    scenario!(
        "forward-reverse-attack",
        "forward mirror image, attacker",
        |d, s| {
            attack(d, s, Mode::Forward);
            s.reverse = true;
            std::mem::swap(&mut s.alices, &mut s.bobs);
        }
    ),
    scenario!(
        "direct-ipv6",
        "direct mode over IPv6, jitter only; counters exact",
        |d, s| {
            clean(d, s, Mode::Direct);
            s.ipv6 = true;
        }
    ),
    scenario!(
        "forward-ipv6",
        "forward mode over IPv6, jitter only; counters exact",
        |d, s| {
            clean(d, s, Mode::Forward);
            s.ipv6 = true;
        }
    ),
    scenario!(
        "router-ipv6",
        "router mode over IPv6 (IPv6 packets on the TUN side), jitter only; counters exact",
        |d, s| {
            clean(d, s, Mode::Router);
            s.ipv6 = true;
        }
    ),
    scenario!(
        "router-ipv6-chaos",
        "router over IPv6, bursty loss, jitter, duplication",
        |d, s| {
            chaos(d, s, Mode::Router);
            s.ipv6 = true;
        }
    ),
    scenario!(
        "direct-chaos",
        "direct, bursty loss, jitter, duplication",
        |d, s| chaos(d, s, Mode::Direct)
    ),
    scenario!(
        "forward-chaos",
        "forward, bursty loss, jitter, duplication",
        |d, s| chaos(d, s, Mode::Forward)
    ),
    scenario!(
        "push-chaos",
        "push, bursty loss, jitter, duplication",
        |d, s| chaos(d, s, Mode::Push)
    ),
    scenario!(
        "router-chaos",
        "router, bursty loss, jitter, duplication",
        |d, s| chaos(d, s, Mode::Router)
    ),
    scenario!(
        "direct-partition",
        "direct, 1-2 partitions that heal; recovery bounded",
        |d, s| partition(d, s, Mode::Direct)
    ),
    scenario!(
        "forward-partition",
        "forward, 1-2 partitions that heal; recovery bounded",
        |d, s| partition(d, s, Mode::Forward)
    ),
    scenario!(
        "forward-restart-x",
        "forward, X (the entry, initiator) restarts; recovery bounded",
        |d, s| restart(d, s, Mode::Forward, Some(X))
    ),
    scenario!(
        "forward-restart-y",
        "forward, Y (the exit, responder) restarts; recovery bounded",
        |d, s| restart(d, s, Mode::Forward, Some(Y))
    ),
    scenario!(
        "direct-restart",
        "direct, either node restarts; recovery bounded",
        |d, s| restart(d, s, Mode::Direct, None)
    ),
    scenario!(
        "router-restart",
        "router, either node restarts; recovery bounded",
        |d, s| restart(d, s, Mode::Router, None)
    ),
    scenario!(
        "forward-roam",
        "forward, X's link port changes 1-2 times; recovery bounded",
        |d, s| roam(d, s, Mode::Forward)
    ),
    scenario!(
        "forward-clock-forward",
        "forward, X and Y restart in turn, each with its wall clock stepped ahead 1 s-6 h",
        |d, s| clock_forward(d, s)
    ),
    scenario!(
        "forward-clock-back-x",
        "forward, X (initiator) restarts with its wall clock stepped back 1 s-6 h; Y initiates",
        |d, s| clock_step(
            d,
            s,
            Mode::Forward,
            Some(X),
            ClockSteps {
                sizes: CLOCK_STEPS,
                directions: [Direction::Backward; 2],
            }
        )
    ),
    scenario!(
        "forward-clock-back-y",
        "forward, Y (responder) restarts with its wall clock stepped back 1 s-6 h",
        |d, s| clock_step(
            d,
            s,
            Mode::Forward,
            Some(Y),
            ClockSteps {
                sizes: CLOCK_STEPS,
                directions: [Direction::Backward; 2],
            }
        )
    ),
    scenario!(
        "push-clock-back-x",
        "KNOWN CORE LIMITATION: push, X (the only initiator) restarts with its clock stepped back 60-120 s; Y refuses it until the clock catches up",
        |d, s| clock_step(
            d,
            s,
            Mode::Push,
            Some(X),
            ClockSteps {
                sizes: PINNED_STEPS,
                directions: [Direction::Backward; 2],
            }
        )
    ),
    scenario!(
        "forward-pressure",
        "forward, more bursty clients than max_channels",
        |d, s| pressure(d, s, Mode::Forward)
    ),
    scenario!(
        "router-pressure",
        "router, more (client, destination) pairs than max_channels",
        |d, s| pressure(d, s, Mode::Router)
    ),
    scenario!(
        "forward-late-replies",
        "forward, table pressure, targets answering 0-8 s late, exit ports reused at once",
        |d, s| late_replies(d, s, Mode::Forward)
    ),
    scenario!(
        "router-late-replies",
        "router, table pressure, destinations answering 0-8 s late, exit ports reused at once",
        |d, s| late_replies(d, s, Mode::Router)
    ),
    scenario!(
        "direct-attack",
        "direct, attacker: garbage, mutations, replays, unknown keys, floods",
        |d, s| attack(d, s, Mode::Direct)
    ),
    scenario!(
        "forward-attack",
        "forward, attacker: garbage, mutations, replays, unknown keys, floods",
        |d, s| attack(d, s, Mode::Forward)
    ),
    scenario!(
        "push-attack",
        "push, attacker: garbage, mutations, replays, unknown keys, floods",
        |d, s| attack(d, s, Mode::Push)
    ),
    scenario!(
        "router-attack",
        "router, attacker: garbage, mutations, replays, unknown keys, floods",
        |d, s| attack(d, s, Mode::Router)
    ),
    scenario!(
        "direct-race-replay",
        "KNOWN CORE BUG: a replayed initiation that lost a handshake race is accepted",
        |d, s| race_replay(d, s)
    ),
    scenario!(
        "forward-restart-replay",
        "KNOWN CORE LIMITATION: a restarted node accepts initiations replayed from before its restart",
        |d, s| restart_replay(d, s)
    ),
    scenario!(
        "forward-restart-new-port",
        "KNOWN CORE BUG: X restarts on a new port; Y's retries to the old one make it ignore X's initiations",
        |d, s| restart_new_port(d, s)
    ),
    scenario!(
        "forward-clock-back-new-port",
        "KNOWN CORE LIMITATION: X restarts on a new port with its clock stepped back 60-120 s; Y initiates to the old port and refuses X",
        |d, s| {
            restart_new_port(d, s);
            s.faults.clock_steps = Some(ClockSteps {
                sizes: PINNED_STEPS,
                directions: [Direction::Backward; 2],
            });
            step_clocks(d, s);
        }
    ),
    scenario!(
        "direct-start-order",
        "direct, Y starts -8 s to +8 s after X (seed % 161, steps of 0.1 s); first datagram within the start bound",
        |d, s| start_order(d, s, Mode::Direct, false)
    ),
    scenario!(
        "forward-start-order",
        "forward, Y starts -8 s to +8 s after X (seed % 161, steps of 0.1 s); first datagram within the start bound",
        |d, s| start_order(d, s, Mode::Forward, false)
    ),
    scenario!(
        "push-start-order",
        "push, Y starts -8 s to +8 s after X (seed % 161, steps of 0.1 s); first datagram within the start bound",
        |d, s| start_order(d, s, Mode::Push, false)
    ),
    scenario!(
        "router-start-order",
        "router, Y starts -8 s to +8 s after X (seed % 161, steps of 0.1 s); first datagram within the start bound",
        |d, s| start_order(d, s, Mode::Router, false)
    ),
    scenario!(
        "forward-reverse-start-order",
        "forward-reverse, Y starts -8 s to +8 s after X (seed % 161, steps of 0.1 s); first datagram within the start bound",
        |d, s| start_order(d, s, Mode::Forward, true)
    ),
    scenario!(
        "push-reverse-start-order",
        "push-reverse, Y starts -8 s to +8 s after X (seed % 161, steps of 0.1 s); first datagram within the start bound",
        |d, s| start_order(d, s, Mode::Push, true)
    ),
    scenario!(
        "direct-restart-phase-x",
        "direct, X restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Direct, false, X)
    ),
    scenario!(
        "direct-restart-phase-y",
        "direct, Y restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Direct, false, Y)
    ),
    scenario!(
        "forward-restart-phase-x",
        "forward, X restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Forward, false, X)
    ),
    scenario!(
        "forward-restart-phase-y",
        "forward, Y restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Forward, false, Y)
    ),
    scenario!(
        "push-restart-phase-x",
        "push, X restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Push, false, X)
    ),
    scenario!(
        "push-restart-phase-y",
        "push, Y restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Push, false, Y)
    ),
    scenario!(
        "router-restart-phase-x",
        "router, X restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Router, false, X)
    ),
    scenario!(
        "router-restart-phase-y",
        "router, Y restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Router, false, Y)
    ),
    scenario!(
        "forward-reverse-restart-phase-x",
        "forward-reverse, X restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Forward, true, X)
    ),
    scenario!(
        "forward-reverse-restart-phase-y",
        "forward-reverse, Y restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Forward, true, Y)
    ),
    scenario!(
        "push-reverse-restart-phase-x",
        "push-reverse, X restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Push, true, X)
    ),
    scenario!(
        "push-reverse-restart-phase-y",
        "push-reverse, Y restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Push, true, Y)
    ),
    scenario!(
        "mayhem",
        "forward with everything: loss, duplication, pressure, partition, restart with a clock step, roam, attacker",
        |d, s| mayhem(d, s)
    ),
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}
