//! The real sdt core in a simulated network.
//!
//! [turmoil] runs every host on one thread in simulated time: customers
//! `alice-N` in front of node `x`, node `y`, targets `bob-N` behind it, and
//! an `attacker`. The nodes are [`sdt_core::node::Node`]s driven through
//! the same [`sdt_core::node::Io`] glue every runtime uses (see
//! [`driver`]). Each [`scenario`] picks a mode, a cast, traffic and faults
//! from its seed; [`run`] plays it and checks the invariants listed in the
//! crate's README, returning an [`Outcome`] with the violations found, the
//! measured recovery times and a hash of the trace. Every node's
//! configuration is first read and built by the daemon's own code
//! ([`daemon_config`]). A collector, a hundred push entries into one exit,
//! has a harness of its own ([`collector`]).
//!
//! The same seed gives the same run: turmoil's RNG, every node's
//! `ChaCha20Rng`, every customer's and the attacker's RNG are all derived
//! from it, no host draws on the OS, and nothing iterates a `HashMap`.

pub mod attacker;
pub mod check;
pub mod collector;
pub mod customer;
pub mod daemon_config;
pub mod driver;
pub mod icmp;
pub mod payload;
pub mod scenario;
pub mod stance;
pub mod trace;
pub mod world;

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sdt_core::allow::AllowList;
use sdt_core::key::{PresharedKey, PrivateKey, PublicKey};
use sdt_core::link::{PeerConfig, PeerId, REKEY_AFTER_MESSAGES};
use sdt_core::node::{Peers, Role, ServiceConfig, ServiceId};

use crate::check::{Recovery, Totals};
use crate::driver::{
    NodeCtx, NodeSlot, NodeSpec, NodeStats, DIRECT_SERVICE, FORWARD_SERVICE, PEER, PUSH_SERVICE,
    ROUTER_SERVICE, START_UNIX_NANOS,
};
use crate::scenario::{
    ClockStep, Mode, Scenario, Setup, ALICE_PORT, BOB_PORT, LINK_PORT, LISTEN_PORT, NODE_NAMES, X,
    Y,
};
use crate::trace::mix;
use crate::world::{Shared, SharedRef};

pub use scenario::{find, SCENARIOS};

/// The environment variable that sets how many seeds the test sweeps run.
pub const SWEEP_SEEDS_VAR: &str = "SDT_SWEEP_SEEDS";

/// The seeds a test sweep runs: `default`, or with [`SWEEP_SEEDS_VAR`] set
/// to `N`, seeds `0..N` (`A..B` gives those). `SDT_SWEEP_SEEDS=10000 cargo
/// test --release -p sim` sweeps every scenario that many seeds (see
/// sim/README.md, "Sweeps"). A value that is not a count or a range is an
/// error, not a silent fallback to the default.
pub fn sweep_seeds(default: Range<u64>) -> Result<Range<u64>, String> {
    match std::env::var(SWEEP_SEEDS_VAR) {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(e) => Err(format!("{SWEEP_SEEDS_VAR}: {e}")),
        Ok(v) => parse_seeds(v.trim()).map_err(|e| format!("{SWEEP_SEEDS_VAR}={v:?}: {e}")),
    }
}

/// `N` (seeds `0..N`) or `A..B` (B excluded), not empty.
pub fn parse_seeds(s: &str) -> Result<Range<u64>, String> {
    let num = |t: &str| {
        t.parse::<u64>()
            .map_err(|e| format!("{t:?} is not a seed count: {e}"))
    };
    let r = match s.split_once("..") {
        Some((a, b)) => num(a)?..num(b)?,
        None => 0..num(s)?,
    };
    if r.is_empty() {
        return Err("no seeds in that range".into());
    }
    Ok(r)
}

thread_local! {
    /// The harness's idea of now, between steps (hosts ask turmoil).
    static HARNESS_NOW: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Simulated time outside any host: the harness's clock.
pub(crate) fn harness_now() -> Duration {
    HARNESS_NOW.with(Cell::get)
}

/// How often the harness samples the channel tables.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Run options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Keep every trace line, not just the first and last.
    pub full_trace: bool,
    /// Break the runtime on purpose, to show the checks catch it.
    pub sabotage: Option<Sabotage>,
}

/// Ways to break the runtime on purpose: the harness's own tests use them
/// to show that each family of invariants actually fails a broken run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sabotage {
    /// X's runtime sends every customer output twice.
    DeliverTwice,
    /// X's runtime sends customer outputs to the next client instead; in
    /// router mode, the entry's runtime (X's, or Y's in the mirror image)
    /// hands what it writes to TUN to the next client, and customer
    /// outputs go where core says.
    Misroute,
    /// The runtimes never run the node's timers.
    NoTimers,
    /// Y's runtime echoes whatever the attacker sends it.
    EchoAttacker,
    /// X's runtime loses every tenth customer output without a trace.
    LoseOutputs,
    /// Both nodes run with `port_hold` zero: an ended exit channel's socket
    /// closes at once, and its port may serve the next channel while late
    /// replies to the old one are still on their way.
    NoPortHold,
    /// Both nodes run with a load threshold of 0: they answer every
    /// handshake message with a valid `mac1` and no valid `mac2` with a
    /// cookie reply, under load or not.
    CookiesAlways,
    /// Y's runtime sends every cookie reply with this many zero bytes
    /// after it (as if it sent the whole buffer slot).
    PaddedCookieReplies(usize),
    /// The router exit's allow-list admits echo to every host
    /// (`icmp://0.0.0.0/0`, `icmp://[::]/0`), wider than the harness's
    /// model of it: its echo sockets to other hosts must be caught.
    WideEchoRule,
}

/// What a run found.
#[derive(Debug)]
pub struct Outcome {
    /// The setup that ran.
    pub setup: Setup,
    /// Broken invariants; empty if the run passed.
    pub violations: Vec<String>,
    /// Hash of the whole trace.
    pub hash: u64,
    /// Trace events.
    pub events: u64,
    /// The first trace lines.
    pub head: Vec<String>,
    /// The last trace lines.
    pub tail: Vec<String>,
    /// Every trace line, with [`Options::full_trace`].
    pub full: Option<Vec<String>>,
    /// Recovery after each fault.
    pub recoveries: Vec<Recovery>,
    /// Customer datagrams sent, and delivered.
    pub sent: usize,
    /// Customer datagrams delivered.
    pub delivered: usize,
    /// Each node's counters.
    pub totals: [Totals; 2],
    /// Datagrams the attacker sent.
    pub attacker_sent: u64,
    /// Cookie replies the attacker received, each allowed by the stance
    /// (see [`stance`]).
    pub attacker_cookie_replies: u64,
    /// ICMP scenarios: what the clients' pings and refused datagrams got.
    pub icmp: Option<check::IcmpTally>,
}

impl Outcome {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// One line: scenario, seed, result, traffic.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} seed {}: {} — sent {} delivered {}, {} events, trace {:016x}",
            self.setup.scenario,
            self.setup.seed,
            if self.passed() { "ok" } else { "FAILED" },
            self.sent,
            self.delivered,
            self.events,
            self.hash
        );
        if self.attacker_sent > 0 {
            s += &format!(", attacker sent {}", self.attacker_sent);
        }
        if self.attacker_cookie_replies > 0 {
            s += &format!(
                ", got {} cookie replies (allowed)",
                self.attacker_cookie_replies
            );
        }
        s
    }

    /// A full summary: setup, counters, recoveries, violations.
    pub fn summary(&self) -> String {
        let mut s = self.line();
        s += "\n";
        let f = &self.setup.faults;
        s += &format!(
            "  mode {}, {} alices, {} bobs, max_channels {}, traffic until {:.3}s, run {:.3}s\n",
            self.setup.mode.as_str(),
            self.setup.alices,
            self.setup.bobs,
            self.setup.limits.max_channels,
            self.setup.traffic.stop.as_secs_f64(),
            self.setup.duration.as_secs_f64()
        );
        s += &format!(
            "  faults: latency {:?}..{:?}, loss {:?}, duplicate {:.3}, partitions {}, restarts {}, roams {}, attacker {}\n",
            f.latency.0,
            f.latency.1,
            f.loss.map(|l| (l.fail_rate, l.repair_rate)),
            f.duplicate,
            f.partitions.len(),
            f.restarts.len(),
            f.roams.len(),
            f.attack.is_some()
        );
        if let Some(start) = self.setup.start {
            s += &format!(
                "  start: x at {:.3}s, y at {:.3}s\n",
                start[X].as_secs_f64(),
                start[Y].as_secs_f64()
            );
        }
        let steps: Vec<String> = f
            .restarts
            .iter()
            .filter_map(|r| {
                r.clock_step.map(|c| {
                    format!(
                        "{} at {:.3}s: {c}",
                        NODE_NAMES[r.node],
                        r.down.end.as_secs_f64()
                    )
                })
            })
            .collect();
        if !steps.is_empty() {
            s += &format!("  clock steps: {}\n", steps.join(", "));
        }
        for i in [X, Y] {
            s += &format!("  {}: {}\n", NODE_NAMES[i], self.totals[i].line());
        }
        if let Some(t) = self.icmp {
            s += &format!(
                "  icmp: {} of {} pings that reached their host answered, {} of {} refused datagrams answered with port unreachable, {} of {} oversize with packet too big\n",
                t.replies, t.pings, t.unreachables, t.refused, t.too_big, t.oversize
            );
        }
        for r in &self.recoveries {
            s += &format!("  recovery: {r}\n");
        }
        for v in &self.violations {
            s += &format!("  VIOLATION {v}\n");
        }
        s
    }

    /// What a failing test prints: the violations, the end of the trace,
    /// and how to run it again.
    pub fn failure_report(&self) -> String {
        let mut s = self.summary();
        s += "  last trace lines:\n";
        for l in &self.tail {
            s += &format!("    {l}\n");
        }
        s += &format!(
            "  seed {}; reproduce with:\n    {}\n",
            self.setup.seed,
            self.setup.reproduce()
        );
        s
    }
}

/// Plays `scenario` with `seed`.
pub fn run(scenario: &Scenario, seed: u64, options: Options) -> Outcome {
    run_setup(scenario.setup(seed), options)
}

/// The key of node `i` for `seed`; the same at every boot.
fn node_key(seed: u64, i: usize) -> PrivateKey {
    PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(mix(seed, "key", i as u64)))
}

/// The nodes' configurations: as they boot, or (`reloaded`) as a
/// [`Reload`](scenario::Reload) makes them.
fn node_specs(
    setup: &Setup,
    shared: &Shared,
    keys: &[PublicKey; 2],
    reloaded: bool,
) -> [NodeSpec; 2] {
    let x = shared.ip("x");
    let y = shared.ip("y");
    let bob = |b: usize| SocketAddr::new(shared.ip(&format!("bob-{b}")), BOB_PORT);
    let roles = setup.roles();
    let target = |t: usize| {
        SocketAddr::new(
            shared.ip(&format!("{}{t}", roles.targets)),
            roles.target_port,
        )
    };
    let any = |port: u16| SocketAddr::new(setup.unspecified(), port);
    let one = Peers::One(PEER);
    let with_limits = |mut c: ServiceConfig| {
        c.limits = setup.limits;
        c
    };
    // (entry half, exit half) for forward, push and router; (X, Y) for
    // direct.
    let (first, second): (Vec<ServiceConfig>, Vec<ServiceConfig>) = match setup.mode {
        Mode::Direct => (
            vec![ServiceConfig::new(
                DIRECT_SERVICE,
                one,
                Role::Direct {
                    listen: any(LISTEN_PORT),
                    customer: SocketAddr::new(shared.ip("alice-0"), ALICE_PORT),
                },
            )],
            vec![ServiceConfig::new(
                DIRECT_SERVICE,
                one,
                Role::Direct {
                    listen: any(LISTEN_PORT),
                    customer: bob(0),
                },
            )],
        ),
        Mode::Forward => (0..setup.services)
            .filter(|&s| setup.faults.reload.is_none_or(|r| r.runs(s, reloaded)))
            .map(|s| {
                let id = ServiceId::new(FORWARD_SERVICE.get() + s as u8);
                let listen = any(LISTEN_PORT + s as u16);
                (
                    with_limits(ServiceConfig::new(id, one, Role::ForwardEntry { listen })),
                    with_limits(ServiceConfig::new(
                        id,
                        one,
                        Role::ForwardExit { target: target(s) },
                    )),
                )
            })
            .unzip(),
        Mode::Push => (
            vec![ServiceConfig::new(
                PUSH_SERVICE,
                one,
                Role::PushEntry {
                    listen: any(LISTEN_PORT),
                },
            )],
            vec![ServiceConfig::new(
                PUSH_SERVICE,
                one,
                Role::PushExit { target: target(0) },
            )],
        ),
        Mode::Router => {
            // The exit's allow-list: every target but the last, on the
            // targets' port (the bobs, or the alices in the mirror image).
            let mut allow = AllowList::new();
            let host = |t: usize| match target(t).ip() {
                IpAddr::V4(ip) => format!("{ip}/32"),
                IpAddr::V6(ip) => format!("[{ip}]/128"),
            };
            let mut rules = Vec::new();
            for t in 0..setup.targets() - 1 {
                rules.push(format!("{}:{}", host(t), roles.target_port));
            }
            // ICMP scenarios: the refusing port too, and echo to the first
            // target (world::router_allows and router_allows_echo).
            if setup.icmp {
                for t in 0..setup.targets() - 1 {
                    rules.push(format!("{}:{}", host(t), roles.target_refusing_port));
                }
                rules.push(format!("icmp://{}", host(0)));
                if shared.sabotage == Some(Sabotage::WideEchoRule) {
                    let any = if setup.ipv6 { "[::]/0" } else { "0.0.0.0/0" };
                    rules.push(format!("icmp://{any}"));
                }
            }
            for rule in rules {
                allow
                    .push(rule.parse().expect("allow rule"))
                    .expect("room for the rule");
            }
            (
                vec![with_limits(ServiceConfig::new(
                    ROUTER_SERVICE,
                    one,
                    Role::RouterEntry,
                ))],
                vec![with_limits(ServiceConfig::new(
                    ROUTER_SERVICE,
                    one,
                    Role::RouterExit { allow },
                ))],
            )
        }
    };
    let (sx, sy) = if setup.reverse {
        (second, first)
    } else {
        (first, second)
    };
    let mut px = PeerConfig::new(keys[Y]);
    px.endpoint = Some(SocketAddr::new(y, LINK_PORT));
    // No keep_up: core keeps the link up where the services call for it
    // (X holds the exit of the mirror image, or a direct service), as the
    // daemon does.
    let mut py = PeerConfig::new(keys[X]);
    // Direct mode: either side may start, so Y knows X's endpoint too.
    if setup.mode == Mode::Direct {
        py.endpoint = Some(SocketAddr::new(x, LINK_PORT));
    }
    if reloaded && setup.faults.reload.is_some_and(|r| r.rekey) {
        let psk =
            PresharedKey::generate(&mut ChaCha20Rng::seed_from_u64(mix(setup.seed, "psk", 0)));
        px.preshared_key = Some(psk.clone());
        py.preshared_key = Some(psk);
    }
    let key = |i| node_key(setup.seed, i).to_bytes();
    let link = SocketAddr::new(setup.unspecified(), LINK_PORT);
    // What the daemon would build from each node's file (daemon_config).
    let spec = |index: usize, peer: PeerConfig, services: Vec<ServiceConfig>| {
        let key = key(index);
        let intended = daemon_config::Intended {
            key: &key,
            link,
            peers: std::slice::from_ref(&peer),
            services: &services,
        };
        let (mut peers, services) = daemon_config::through_the_daemon(&intended, NODE_NAMES[index]);
        NodeSpec {
            index,
            key,
            peer: peers.remove(0),
            services,
            connect: false,
            duplicate: setup.faults.duplicate,
        }
    };
    [spec(X, px, sx), spec(Y, py, sy)]
}

/// A fault the harness applies at a time.
#[derive(Debug, Clone, Copy)]
enum Action {
    Partition,
    Repair,
    Crash(usize),
    Bounce(usize, Option<ClockStep>),
    Roam,
    LossStop,
    CounterJump(usize),
    Reload(usize),
}

fn schedule(setup: &Setup) -> Vec<(Duration, Action)> {
    let f = &setup.faults;
    let mut v = Vec::new();
    for p in &f.partitions {
        v.push((p.start, Action::Partition));
        v.push((p.end, Action::Repair));
    }
    for r in &f.restarts {
        v.push((r.down.start, Action::Crash(r.node)));
        v.push((r.down.end, Action::Bounce(r.node, r.clock_step)));
    }
    for &t in &f.roams {
        v.push((t, Action::Roam));
    }
    for &(t, node) in &f.counter_jumps {
        v.push((t, Action::CounterJump(node)));
    }
    if let Some(r) = f.reload {
        v.push((r.at, Action::Reload(X)));
        v.push((r.y_at(), Action::Reload(Y)));
    }
    if let Some(l) = f.loss {
        v.push((l.until, Action::LossStop));
    }
    v.sort_by_key(|(t, _)| *t);
    v
}

/// Plays `setup`.
pub fn run_setup(setup: Setup, options: Options) -> Outcome {
    HARNESS_NOW.with(|n| n.set(Duration::ZERO));
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(setup.seed)
        .epoch(UNIX_EPOCH + Duration::from_nanos(START_UNIX_NANOS))
        .simulation_duration(setup.duration + Duration::from_secs(60))
        .tick_duration(scenario::TICK)
        .min_message_latency(setup.customer_latency.0)
        .max_message_latency(setup.customer_latency.1)
        .udp_capacity(1 << 14)
        .ip_version(if setup.ipv6 {
            turmoil::IpVersion::V6
        } else {
            turmoil::IpVersion::V4
        })
        .repair_rate(setup.faults.loss.map_or(1.0, |l| l.repair_rate));
    let mut sim = builder.build();

    let shared: SharedRef = Rc::new(RefCell::new(Shared::new(setup.clone())));
    if options.full_trace {
        shared.borrow_mut().trace.full = Some(Vec::new());
    }
    shared.borrow_mut().sabotage = options.sabotage;
    let mut hosts: Vec<String> = vec!["x".into(), "y".into()];
    hosts.extend((0..setup.bobs).map(|b| format!("bob-{b}")));
    hosts.extend((0..setup.alices).map(|a| format!("alice-{a}")));
    if setup.faults.attack.is_some() {
        hosts.push("attacker".into());
    }
    {
        let mut s = shared.borrow_mut();
        for h in &hosts {
            let ip = sim.lookup(h.as_str());
            s.names.insert(ip, h.clone());
            s.addrs.insert(h.clone(), ip);
        }
        if setup.mode == Mode::Router {
            let roles = setup.roles();
            for c in 0..setup.clients() {
                s.tun_clients.insert(
                    customer::tun_client_addr(c, setup.ipv6, roles.entry),
                    format!("{}{c}", roles.clients),
                );
            }
        }
    }
    let keys = [
        node_key(setup.seed, X).public_key(),
        node_key(setup.seed, Y).public_key(),
    ];
    let specs = node_specs(&setup, &shared.borrow(), &keys, false);
    let slots: [Rc<RefCell<NodeSlot>>; 2] = Default::default();
    for (i, spec) in specs.into_iter().enumerate() {
        let ctx = Rc::new(NodeCtx {
            spec,
            slot: slots[i].clone(),
            shared: shared.clone(),
            seed: setup.seed,
        });
        sim.host(NODE_NAMES[i], move || driver::run(ctx.clone()));
    }
    // Router clients (the alices, or the bobs in the mirror image) live
    // behind the entry's TUN device; every other customer has a socket.
    let router_clients = (setup.mode == Mode::Router).then(|| setup.roles().clients);
    for b in 0..setup.bobs {
        let s = shared.clone();
        if router_clients == Some("bob-") {
            sim.host(format!("bob-{b}"), move || {
                customer::router_client(s.clone(), b)
            });
        } else {
            sim.host(format!("bob-{b}"), move || customer::bob(s.clone(), b));
        }
    }
    for a in 0..setup.alices {
        let s = shared.clone();
        if router_clients == Some("alice-") {
            sim.host(format!("alice-{a}"), move || {
                customer::router_client(s.clone(), a)
            });
        } else {
            sim.host(format!("alice-{a}"), move || customer::alice(s.clone(), a));
        }
    }
    if setup.faults.attack.is_some() {
        let s = shared.clone();
        sim.host("attacker", move || attacker::run(s.clone(), keys));
    }
    let (lo, hi) = setup.faults.latency;
    sim.set_link_latency("x", "y", lo);
    sim.set_link_max_message_latency("x", "y", hi);
    if let Some(loss) = setup.faults.loss {
        sim.set_link_fail_rate("x", "y", loss.fail_rate);
    }

    let mut actions = schedule(&setup).into_iter().peekable();
    let mut partitioned = false;
    let mut next_sample = Duration::ZERO;
    let mut jumps = Vec::new();
    while sim.elapsed() < setup.duration {
        let now = sim.elapsed();
        HARNESS_NOW.with(|n| n.set(now));
        while let Some(&(_, action)) = actions.peek().filter(|(t, _)| *t <= now) {
            actions.next();
            if let Action::CounterJump(i) = action {
                jumps.push(RekeyCheck::at(now, i, &slots[i].borrow()));
            }
            apply(&mut sim, &shared, &slots, action, &mut partitioned);
        }
        jumps.retain(|j| !j.due(now, &slots[j.node].borrow(), &shared));
        if let Err(e) = sim.step() {
            shared.borrow_mut().violate(format!("a host failed: {e}"));
            break;
        }
        if sim.elapsed() >= next_sample {
            HARNESS_NOW.with(|n| n.set(sim.elapsed()));
            sample(&shared, &slots);
            next_sample += SAMPLE_EVERY;
        }
    }
    HARNESS_NOW.with(|n| n.set(sim.elapsed()));
    let stats = [slots[X].borrow().all_stats(), slots[Y].borrow().all_stats()];
    let mut s = shared.borrow_mut();
    let totals = check::counters(&mut s, &stats);
    let recoveries = check::recoveries(&mut s);
    check::rekeys(&mut s, &totals);
    check::reload(&mut s);
    let icmp = check::icmp(&mut s, &totals);
    let outcome = Outcome {
        setup,
        violations: s.violations.clone(),
        hash: s.trace.hash(),
        events: s.trace.len(),
        head: s.trace.head().to_vec(),
        tail: s.trace.tail().cloned().collect(),
        full: s.trace.full.take(),
        recoveries,
        sent: s.ledger.sent.len(),
        delivered: s.ledger.delivered.len(),
        totals,
        attacker_sent: s.attacker_sent,
        attacker_cookie_replies: s.attacker_cookie_replies,
        icmp,
    };
    drop(s);
    drop(sim);
    outcome
}

/// Within this of a send counter's jump to `REKEY_AFTER_MESSAGES` the
/// node has completed a new handshake: its next datagram starts one (the
/// customers send at least every few hundred milliseconds), and the
/// handshake takes a round trip, or a retry after `REKEY_TIMEOUT`.
const REKEY_BY_MESSAGES_BOUND: Duration = Duration::from_secs(6);

/// A rekey by message count that must happen: the node's completed
/// handshakes when its counter jumped.
struct RekeyCheck {
    node: usize,
    jumped_at: Duration,
    completed: u64,
}

impl RekeyCheck {
    fn at(now: Duration, node: usize, slot: &NodeSlot) -> RekeyCheck {
        RekeyCheck {
            node,
            jumped_at: now,
            completed: completed_handshakes(slot),
        }
    }

    /// Whether the check is over at `now`: passed, or failed and reported.
    fn due(&self, now: Duration, slot: &NodeSlot, shared: &SharedRef) -> bool {
        if completed_handshakes(slot) > self.completed {
            return true;
        }
        if now < self.jumped_at + REKEY_BY_MESSAGES_BOUND {
            return false;
        }
        shared.borrow_mut().violate(format!(
            "{}: no new handshake within {:?} of its send counter's jump at {:.3}s to REKEY_AFTER_MESSAGES",
            NODE_NAMES[self.node],
            REKEY_BY_MESSAGES_BOUND,
            self.jumped_at.as_secs_f64()
        ));
        true
    }
}

/// Handshakes the node's incarnations completed, with either role.
fn completed_handshakes(slot: &NodeSlot) -> u64 {
    slot.all_stats()
        .iter()
        .map(|s| s.peer.handshakes_completed)
        .sum()
}

fn apply(
    sim: &mut turmoil::Sim<'_>,
    shared: &SharedRef,
    slots: &[Rc<RefCell<NodeSlot>>; 2],
    action: Action,
    partitioned: &mut bool,
) {
    let what = match action {
        Action::Partition => {
            sim.partition("x", "y");
            *partitioned = true;
            "partition x | y".to_string()
        }
        Action::Repair => {
            sim.repair("x", "y");
            *partitioned = false;
            "repair x - y".to_string()
        }
        Action::LossStop => {
            sim.set_link_fail_rate("x", "y", 0.0);
            // Heal a link the loss left broken (not one a partition holds).
            if !*partitioned {
                sim.repair("x", "y");
            }
            "loss stops; link x - y repaired".to_string()
        }
        Action::Crash(i) => {
            sim.crash(NODE_NAMES[i]);
            shared.borrow_mut().down[i] = true;
            slots[i].borrow_mut().archive();
            format!("crash {}", NODE_NAMES[i])
        }
        Action::Bounce(i, step) => {
            // The node reads its wall clock when it boots, in the next step.
            if let Some(step) = step {
                shared.borrow_mut().wall_offset[i] += step.nanos();
            }
            sim.bounce(NODE_NAMES[i]);
            match step {
                None => format!("bounce {}", NODE_NAMES[i]),
                Some(step) => format!("bounce {}, its wall clock stepped {step}", NODE_NAMES[i]),
            }
        }
        Action::Roam => {
            let mut s = shared.borrow_mut();
            s.link_port[X] += 1;
            format!("x roams to link port {}", s.link_port[X])
        }
        Action::CounterJump(i) => match slots[i].borrow_mut().node.as_mut() {
            Some(node) => {
                node.force_send_counter(PeerId(0), REKEY_AFTER_MESSAGES);
                format!(
                    "{}: send counter jumps to REKEY_AFTER_MESSAGES",
                    NODE_NAMES[i]
                )
            }
            None => format!("{}: down, no counter to jump", NODE_NAMES[i]),
        },
        Action::Reload(i) => reload(shared, &mut slots[i].borrow_mut(), i),
    };
    shared.borrow_mut().log("harness", &what, &[]);
}

/// Checks that every channel table is within its limits.
/// Node `i` applies its configuration after the scenario's reload, as
/// `sdt reload` makes the daemon do; the counters of the services it
/// removes are filed away first, so the end checks still see them.
fn reload(shared: &SharedRef, slot: &mut NodeSlot, i: usize) -> String {
    let name = NODE_NAMES[i];
    let specs = {
        let s = shared.borrow();
        let keys = [
            node_key(s.setup.seed, X).public_key(),
            node_key(s.setup.seed, Y).public_key(),
        ];
        node_specs(&s.setup, &s, &keys, true)
    };
    let spec = &specs[i];
    let Some(node) = slot.node.as_mut() else {
        return format!("{name}: down, nothing to reload");
    };
    let before = NodeStats::of(node);
    let now = driver::core_now(world::sim_now());
    match node.reload(
        now,
        &keys_of(i, shared),
        std::slice::from_ref(&spec.peer),
        &spec.services,
    ) {
        Ok(summary) => {
            slot.file_away(before, |c| spec.services.iter().all(|n| n.id != c.id));
            format!("{name}: reload: {summary:?}")
        }
        Err(e) => {
            shared
                .borrow_mut()
                .violate(format!("{name}: reload refused: {e}"));
            format!("{name}: reload refused")
        }
    }
}

/// Node `i`'s own public key.
fn keys_of(i: usize, shared: &SharedRef) -> PublicKey {
    node_key(shared.borrow().setup.seed, i).public_key()
}

fn sample(shared: &SharedRef, slots: &[Rc<RefCell<NodeSlot>>; 2]) {
    for i in [X, Y] {
        let slot = slots[i].borrow();
        let Some(node) = slot.node.as_ref() else {
            continue;
        };
        let mut over = Vec::new();
        for (config, stats) in node.services() {
            if config.role.has_channels()
                && stats.channels_open > u64::from(config.limits.max_channels)
            {
                over.push(format!(
                    "{}: service {} has {} channels open, max_channels is {}",
                    NODE_NAMES[i], config.id, stats.channels_open, config.limits.max_channels
                ));
            }
        }
        if node.channels().len() > node.channels().capacity() {
            over.push(format!("{}: channel table over capacity", NODE_NAMES[i]));
        }
        drop(slot);
        for o in over {
            shared.borrow_mut().violate(o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_seeds;

    #[test]
    fn seed_counts_and_ranges() {
        assert_eq!(parse_seeds("10000"), Ok(0..10_000));
        assert_eq!(parse_seeds("5..9"), Ok(5..9));
        assert!(parse_seeds("0").is_err());
        assert!(parse_seeds("9..5").is_err());
        assert!(parse_seeds("ten").is_err());
        assert!(parse_seeds("1..").is_err());
    }
}
