//! How each family of setups is drawn from a seed: a common base, then a
//! mode and the faults the family exercises. The order of the draws is part
//! of every run's identity (a seed replays only if they stay in order), so
//! a new draw goes after the existing ones of its family.

use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use sdt_core::node::ChannelLimits;

use super::cast::{other, Mode, NODE_CHANNELS, X, Y};
use super::faults::{
    Attack, ClockStep, ClockSteps, Direction, Faults, Loss, Move, Reload, Replays, Restart, Window,
};
use super::setup::{Setup, Traffic};
use crate::trace::mix;

/// Draws scenario parameters.
pub struct Draw(ChaCha8Rng);

impl Draw {
    /// The draws of scenario `name` for `seed`.
    pub fn new(name: &str, seed: u64) -> Draw {
        Draw(ChaCha8Rng::seed_from_u64(mix(seed, name, 0)))
    }

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

/// Quiet time at the end of a run for everything in flight to land.
const QUIET: Duration = Duration::from_secs(2);

pub(super) fn base(name: &'static str, seed: u64, mode: Mode, d: &mut Draw) -> Setup {
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
        icmp: false,
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

pub(super) fn clean(d: &mut Draw, s: &mut Setup, mode: Mode) {
    set_mode(s, d, mode);
}

/// Router mode with ICMP ([`Setup::icmp`]). The echo flows (one channel
/// per client, identifier and host) and the refusing ports about triple
/// the (client, destination) pairs, up to 36 with three clients: the
/// table gets room for them all, so every ping and refusal is answered
/// (table pressure is `router-pressure`'s).
pub(super) fn icmp(s: &mut Setup) {
    s.icmp = true;
    s.limits.max_channels = 48;
}

/// The mirror image of `mode` (forward, push or router): clients behind
/// Y (in router mode, behind Y's TUN device), targets behind X.
pub(super) fn reverse(d: &mut Draw, s: &mut Setup, mode: Mode) {
    set_mode(s, d, mode);
    mirror(s);
}

/// Makes `s` its mirror image: the entry on Y, the clients the bobs, the
/// targets the alices (router: the last alice not on X's allow-list).
pub(super) fn mirror(s: &mut Setup) {
    s.reverse = true;
    std::mem::swap(&mut s.alices, &mut s.bobs);
}

/// A short, fault-free, in-order run (fixed latencies), for the snapshot
/// of each mode's first trace lines.
pub(super) fn canonical(d: &mut Draw, s: &mut Setup, mode: Mode) {
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

pub(super) fn chaos(d: &mut Draw, s: &mut Setup, mode: Mode) {
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

pub(super) fn partition(d: &mut Draw, s: &mut Setup, mode: Mode) {
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

pub(super) fn restart(d: &mut Draw, s: &mut Setup, mode: Mode, node: Option<usize>) {
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
pub(super) const CLOCK_STEPS: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(6 * 3600));

/// Steps of the scenarios that pin finding 5: longer than a restart comes
/// back after (so the delay shows on every seed), short enough for the runs
/// to reach recovery.
pub(super) const PINNED_STEPS: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(120));

/// Draws a clock step for every restart, if the scenario switched clock
/// steps on. Called last, so every other draw is the one the scenario makes
/// without clock steps.
pub(super) fn step_clocks(d: &mut Draw, s: &mut Setup) {
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
pub(super) fn clock_step(
    d: &mut Draw,
    s: &mut Setup,
    mode: Mode,
    node: Option<usize>,
    steps: ClockSteps,
) {
    restart(d, s, mode, node);
    s.faults.clock_steps = Some(steps);
    step_clocks(d, s);
}

/// Both nodes restart, one after the other (the order drawn), each with its
/// wall clock stepped ahead.
pub(super) fn clock_forward(d: &mut Draw, s: &mut Setup) {
    set_mode(s, d, Mode::Forward);
    s.exact_counters = false;
    let first = d.int(0, 1) as usize;
    let mut t = d.ms(3_000, 10_000);
    for node in [first, other(first)] {
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

pub(super) fn roam(d: &mut Draw, s: &mut Setup, mode: Mode) {
    set_mode(s, d, mode);
    s.exact_counters = false;
    let mut t = d.ms(2_000, 6_000);
    for _ in 0..d.int(1, 2) {
        s.faults.roams.push(t);
        t += s.recovery_bound() + d.ms(1_000, 5_000);
    }
    extend_for_recovery(s);
}

pub(super) fn pressure(d: &mut Draw, s: &mut Setup, mode: Mode) {
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
pub(super) fn late_replies(d: &mut Draw, s: &mut Setup, mode: Mode) {
    pressure(d, s, mode);
    s.traffic.answer_delay_ms = (0, 8_000);
    s.exit_port_pool = Some(NODE_CHANNELS as u16);
    // The last answers land before the run ends.
    s.duration = s.traffic.stop + Duration::from_secs(8) + QUIET;
}

pub(super) fn attack(d: &mut Draw, s: &mut Setup, mode: Mode) {
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
pub(super) fn race_replay(d: &mut Draw, s: &mut Setup) {
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
pub(super) fn restart_new_port(d: &mut Draw, s: &mut Setup) {
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
pub(super) fn restart_replay(d: &mut Draw, s: &mut Setup) {
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
pub(super) fn start_order(d: &mut Draw, s: &mut Setup, mode: Mode, reverse: bool) {
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
pub(super) fn restart_phase(d: &mut Draw, s: &mut Setup, mode: Mode, reverse: bool, node: usize) {
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

pub(super) fn mayhem(d: &mut Draw, s: &mut Setup) {
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

/// Traffic for this long in a long run: more than five rekey intervals
/// (`REKEY_AFTER_TIME`, 120 s), so each run sees at least five rekeys by
/// time.
pub const LONG_RUN: Duration = Duration::from_secs(660);

/// A run of [`LONG_RUN`] in `mode`, jitter only and counters exact, whose
/// sessions are renewed by time and, twice, by message count: each node's
/// send counter jumps to `REKEY_AFTER_MESSAGES` once, at a drawn time
/// (`check::rekeys`, the harness's rekey check). No datagram may be lost
/// across any of the changes of session.
pub(super) fn long_run(d: &mut Draw, s: &mut Setup, mode: Mode, reverse_image: bool) {
    if reverse_image {
        reverse(d, s, mode);
    } else {
        clean(d, s, mode);
    }
    // Fewer, slower customers than the short runs: the length is the point.
    s.traffic.gap_ms = (200, d.int(400, 900));
    s.traffic.stop = s.traffic.start + LONG_RUN;
    s.duration = s.traffic.stop + QUIET;
    for node in [X, Y] {
        let at = d.ms(20_000, LONG_RUN.as_millis() as u64 - 20_000);
        s.faults.counter_jumps.push((s.traffic.start + at, node));
    }
    s.faults.counter_jumps.sort();
}

/// Forward with three services, jitter only and counters exact, and a
/// [`Reload`] of both nodes during traffic: one service goes, one comes,
/// one is left alone and must lose nothing (`check::reload`); with
/// `rekey` the preshared key changes too. Y reloads 0-800 ms after X.
pub(super) fn reload(d: &mut Draw, s: &mut Setup, reverse_image: bool, rekey: bool) {
    if reverse_image {
        reverse(d, s, Mode::Forward);
    } else {
        clean(d, s, Mode::Forward);
    }
    s.services = 3;
    // A target per service, one client of each service at least.
    let clients = d.int(3, 5) as usize;
    if reverse_image {
        (s.alices, s.bobs) = (3, clients);
    } else {
        (s.alices, s.bobs) = (clients, 3);
    }
    let removed = d.int(0, 2) as usize;
    let added = (removed + d.int(1, 2) as usize) % 3;
    s.faults.reload = Some(Reload {
        at: s.traffic.start + d.ms(5_000, 9_000),
        y_after: d.ms(0, 800),
        removed,
        added,
        rekey,
    });
}
