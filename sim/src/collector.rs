//! A collector: many machines push into one exit (issue 13, "a collector:
//! at least 100 peers pushing into one exit, with restarts and roaming
//! among them").
//!
//! The cast: `entries` nodes (`e-0` ..), each with one peer, the collector
//! `c`, whose endpoint it knows, and the entry half of push service 1, fed
//! by a logger that hands the node a numbered datagram every 100-300 ms as
//! if it came to the service's socket (in the entry's host: a logger host
//! per entry doubled turmoil's cost, which grows faster than the number of
//! hosts, for no other path through core); the collector `c` with one peer
//! per entry and the exit half of service 1 for any of them
//! (`Peers::Any`), connected to one `sink`. Each node's configuration goes
//! through the daemon's path (`daemon_config`): the collector's file has
//! all its peers. The two-node harness (`crate::run`) is not used: its
//! world has two nodes; this one has its own, smaller, host loop, the same
//! core calls in the same order (`handle_*`, `carry_out`, one `flush` per
//! socket's batch, timers).
//!
//! Invariants, on every run:
//! - the sink receives only datagrams a logger sent, none twice;
//! - with jitter only ([`CollectorSetup::exact`]), every datagram sent is
//!   delivered, and the counters agree: what the entries counted to their
//!   peer, what the collector counted from its peers, what the sink got;
//! - after each fault (an entry or the collector back from a restart, an
//!   entry moved to a new link port), each entry concerned has a datagram
//!   sent after it delivered within [`CollectorSetup::bound`].
//!
//! Node host loops wait on their sockets (`readable`) or the node's next
//! deadline, not every tick, so 200 hosts cost little more than the
//! datagrams they carry.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sdt_core::key::PrivateKey;
use sdt_core::link::{PeerConfig, PeerId, MAX_JITTER, PROBE_AFTER, PROBE_TIMEOUT};
use sdt_core::node::{
    Io, Node, OpenFailed, Peers, Role, ServiceConfig, ServiceId, SocketId, HEADROOM, TAILROOM,
};
use turmoil::net::UdpSocket;

use crate::daemon_config::{through_the_daemon, Intended};
use crate::driver::{core_now, START_UNIX_NANOS};
use crate::scenario::{resend_spacing, LINK_PORT, LISTEN_PORT};
use crate::trace::mix;

/// The push service every entry ships into the collector.
const SERVICE: ServiceId = ServiceId::new(1);
/// Where the sink listens.
const SINK_PORT: u16 = 5140;
/// Where the loggers send from.
const LOGGER_PORT: u16 = 4140;
/// Most peers a collector holds (the scenarios use 100).
const MAX_ENTRIES: usize = 128;
/// Largest datagram a host reads.
const MAX_DATAGRAM: usize = 2048;
/// First bytes of every logger datagram, then its logger (2 bytes, big
/// endian) and number (4 bytes), then padding.
const MAGIC: &[u8; 4] = b"log:";
/// The turmoil tick of a collector run. turmoil's step costs grow with
/// the number of hosts; 5 ms (the two-node runs tick every millisecond)
/// keeps a 100-entry run at seconds, and every bound here is seconds.
const TICK: Duration = Duration::from_millis(5);
/// The latency range between every two hosts (whole ticks).
const LATENCY: (Duration, Duration) = (Duration::from_millis(5), Duration::from_millis(25));
/// Gap between two datagrams of one logger, in milliseconds.
const GAP_MS: (u64, u64) = (100, 300);

/// An entry node: one peer, one service; a small channel table (push
/// opens none).
type EntryNode = Node<ChaCha20Rng, 1, 1, 16>;
/// The collector: a peer per entry.
type CollectorNode = Node<ChaCha20Rng, MAX_ENTRIES, 1, 16>;

/// Which node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// The collector.
    Collector,
    /// Entry `n`.
    Entry(usize),
}

impl Who {
    fn host(self) -> String {
        match self {
            Who::Collector => "c".into(),
            Who::Entry(n) => format!("e-{n}"),
        }
    }
}

/// One collector run, drawn from a seed.
#[derive(Debug, Clone)]
pub struct CollectorSetup {
    /// Scenario name.
    pub scenario: &'static str,
    /// The seed.
    pub seed: u64,
    /// How many entries push into the collector.
    pub entries: usize,
    /// Length of the run; loggers stop 3 s before its end.
    pub duration: Duration,
    /// Run over IPv6.
    pub ipv6: bool,
    /// Restarts: who, down from, back at.
    pub restarts: Vec<(Who, Duration, Duration)>,
    /// Entries moved to a new link port: when, which.
    pub roams: Vec<(Duration, usize)>,
    /// A broken run, to show the checks catch it: entry `n` boots with a
    /// key the collector does not know.
    pub stranger: Option<usize>,
}

impl CollectorSetup {
    /// When the loggers start and stop sending.
    fn traffic(&self) -> (Duration, Duration) {
        (
            Duration::from_secs(1),
            self.duration - Duration::from_secs(3),
        )
    }

    /// Whether the counters must add up exactly: no fault.
    pub fn exact(&self) -> bool {
        self.restarts.is_empty() && self.roams.is_empty()
    }

    /// Entry `n`'s private key: the collector knows the public key of
    /// each but a [`CollectorSetup::stranger`]'s.
    fn key(&self, i: usize, known: bool) -> [u8; 32] {
        let what = if known {
            "collector-key"
        } else {
            "stranger-key"
        };
        PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(mix(
            self.seed, what, i as u64,
        )))
        .to_bytes()
    }

    /// The bound on recovery after a fault: from the end of the fault to
    /// the delivery of the first datagram an affected entry's logger sent
    /// after it. A restarted entry starts a handshake with its first
    /// datagram; an entry whose collector restarted has a session the
    /// collector no longer knows, which it probes after [`PROBE_AFTER`]
    /// without an answer and replaces after [`PROBE_TIMEOUT`] more; a
    /// roamed entry's next datagram moves its endpoint at the collector.
    /// Then the handshake: up to [`resend_spacing`] if the first copy was
    /// lost or answered with a cookie (a hundred entries handshaking at once
    /// puts the collector under load), three trips and the next datagram,
    /// up to a gap later; and the probe's jitter.
    pub fn bound(&self) -> Duration {
        let trips = 4 * LATENCY.1 + 2 * TICK;
        PROBE_AFTER
            + PROBE_TIMEOUT
            + MAX_JITTER
            + resend_spacing()
            + Duration::from_millis(GAP_MS.1)
            + trips
    }

    /// The command that runs this setup again.
    pub fn reproduce(&self) -> String {
        format!(
            "cargo run --release -p sim -- --scenario {} --seed {}",
            self.scenario, self.seed
        )
    }
}

/// A collector scenario: a name, what it does, how a seed draws it.
pub struct CollectorScenario {
    /// Name, for `--scenario`.
    pub name: &'static str,
    /// One line.
    pub about: &'static str,
    draw: fn(&mut ChaCha20Rng, &mut CollectorSetup),
}

impl CollectorScenario {
    /// The setup for `seed`.
    pub fn setup(&self, seed: u64) -> CollectorSetup {
        let mut rng = ChaCha20Rng::seed_from_u64(mix(seed, self.name, 0));
        let mut s = CollectorSetup {
            scenario: self.name,
            seed,
            entries: 100,
            duration: Duration::from_secs(20),
            ipv6: false,
            restarts: Vec::new(),
            roams: Vec::new(),
            stranger: None,
        };
        (self.draw)(&mut rng, &mut s);
        s
    }
}

fn between(rng: &mut ChaCha20Rng, lo: Duration, hi: Duration) -> Duration {
    let span = (hi - lo).as_millis() as u64;
    lo + Duration::from_millis(rng.next_u64() % (span + 1))
}

/// The collector scenarios.
pub const COLLECTORS: &[CollectorScenario] = &[
    CollectorScenario {
        name: "collector",
        about: "100 push entries into one collector exit (Peers::Any), jitter only; counters exact",
        draw: |_, _| {},
    },
    CollectorScenario {
        name: "collector-ipv6",
        about: "collector over IPv6, jitter only; counters exact",
        draw: |_, s| s.ipv6 = true,
    },
    CollectorScenario {
        name: "collector-restarts",
        about: "collector, up to 10 entries restart (0.5-3 s down) and the collector once (1-2 s); recovery bounded",
        draw: |rng, s| {
            for _ in 0..10 {
                let n = (rng.next_u64() % s.entries as u64) as usize;
                let down = between(rng, Duration::from_secs(3), Duration::from_secs(12));
                let back = down + between(rng, Duration::from_millis(500), Duration::from_secs(3));
                if !s.restarts.iter().any(|&(w, _, _)| w == Who::Entry(n)) {
                    s.restarts.push((Who::Entry(n), down, back));
                }
            }
            let down = between(rng, Duration::from_secs(6), Duration::from_secs(10));
            let back = down + between(rng, Duration::from_secs(1), Duration::from_secs(2));
            s.restarts.push((Who::Collector, down, back));
        },
    },
    CollectorScenario {
        name: "collector-roam",
        about: "collector, 20 entries move to a new link port during traffic; recovery bounded",
        draw: |rng, s| {
            for _ in 0..20 {
                let n = (rng.next_u64() % s.entries as u64) as usize;
                let at = between(rng, Duration::from_secs(3), Duration::from_secs(14));
                s.roams.push((at, n));
            }
        },
    },
];

/// A collector scenario by name.
pub fn find_collector(name: &str) -> Option<&'static CollectorScenario> {
    COLLECTORS.iter().find(|s| s.name == name)
}

/// What a run found.
#[derive(Debug)]
pub struct CollectorOutcome {
    /// The setup it ran.
    pub setup: CollectorSetup,
    /// Invariants broken.
    pub violations: Vec<String>,
    /// Datagrams the loggers sent.
    pub sent: usize,
    /// Datagrams the sink got.
    pub delivered: usize,
    /// The slowest recovery after a fault.
    pub worst_recovery: Option<Duration>,
}

impl CollectorOutcome {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// A few lines: what ran, what it carried, what broke.
    pub fn summary(&self) -> String {
        let s = &self.setup;
        let mut out = format!(
            "{} seed {}: {} entries, {} restarts, {} roams; sent {} delivered {}{}\n",
            s.scenario,
            s.seed,
            s.entries,
            s.restarts.len(),
            s.roams.len(),
            self.sent,
            self.delivered,
            self.worst_recovery.map_or(String::new(), |w| format!(
                "; worst recovery {:.3}s (bound {:.3}s)",
                w.as_secs_f64(),
                s.bound().as_secs_f64()
            ))
        );
        for v in &self.violations {
            out += &format!("  VIOLATION {v}\n");
        }
        if !self.passed() {
            out += &format!("  reproduce with: {}\n", s.reproduce());
        }
        out
    }
}

/// The state every host of a run shares.
struct World {
    setup: CollectorSetup,
    addrs: HashMap<String, IpAddr>,
    keys: Vec<[u8; 32]>,
    /// Per logger: the time each of its datagrams was sent.
    sent: Vec<Vec<Duration>>,
    /// Per logger: the time each of its datagrams reached the sink.
    delivered: Vec<HashMap<u32, Duration>>,
    /// Link port of each entry (moved by a roam).
    link_port: Vec<u16>,
    /// Boots of each node (collector last).
    boots: Vec<u64>,
    /// What each entry counted to its peer, summed over its boots.
    entry_to_peer: u64,
    /// The collector's datagrams from its peers, summed over its boots.
    collector_from_peer: u64,
    /// Live counters of the running incarnations, folded in at a crash.
    live: Vec<u64>,
    violations: Vec<String>,
}

type WorldRef = Rc<RefCell<World>>;

impl World {
    fn ip(&self, host: &str) -> IpAddr {
        self.addrs[host]
    }

    fn any(&self) -> IpAddr {
        if self.setup.ipv6 {
            IpAddr::from([0u16; 8])
        } else {
            IpAddr::from([0u8; 4])
        }
    }

    fn violate(&mut self, v: String) {
        if self.violations.len() < 20 {
            self.violations.push(v);
        }
    }

    /// Node `who`'s configuration, through the daemon's path.
    fn spec(&self, who: Who) -> (Vec<PeerConfig>, Vec<ServiceConfig>) {
        let key = &self.keys[index(who, self.setup.entries)];
        let link = SocketAddr::new(self.any(), LINK_PORT);
        let public = |i: usize| PrivateKey::from_bytes(self.keys[i]).public_key();
        let (peers, services) = match who {
            Who::Collector => (
                (0..self.setup.entries)
                    .map(|n| PeerConfig::new(public(n)))
                    .collect::<Vec<_>>(),
                vec![ServiceConfig::new(
                    SERVICE,
                    Peers::Any,
                    Role::PushExit {
                        target: SocketAddr::new(self.ip("sink"), SINK_PORT),
                    },
                )],
            ),
            Who::Entry(_) => {
                let mut c = PeerConfig::new(public(self.setup.entries));
                c.endpoint = Some(SocketAddr::new(self.ip("c"), LINK_PORT));
                let listen = SocketAddr::new(self.any(), LISTEN_PORT);
                (
                    vec![c],
                    vec![ServiceConfig::new(
                        SERVICE,
                        Peers::One(PeerId(0)),
                        Role::PushEntry { listen },
                    )],
                )
            }
        };
        let intended = Intended {
            key,
            link,
            peers: &peers,
            services: &services,
        };
        through_the_daemon(&intended, &who.host())
    }
}

fn index(who: Who, entries: usize) -> usize {
    match who {
        Who::Entry(n) => n,
        Who::Collector => entries,
    }
}

/// Plays `setup`.
pub fn run_collector(setup: CollectorSetup) -> CollectorOutcome {
    assert!(
        setup.entries <= MAX_ENTRIES,
        "at most {MAX_ENTRIES} entries"
    );
    let mut sim = turmoil::Builder::new()
        .rng_seed(setup.seed)
        .epoch(UNIX_EPOCH + Duration::from_nanos(START_UNIX_NANOS))
        .simulation_duration(setup.duration + Duration::from_secs(60))
        .tick_duration(TICK)
        .min_message_latency(LATENCY.0)
        .max_message_latency(LATENCY.1)
        .udp_capacity(1 << 14)
        .ip_version(if setup.ipv6 {
            turmoil::IpVersion::V6
        } else {
            turmoil::IpVersion::V4
        })
        .build();
    let n = setup.entries;
    let mut hosts = vec!["c".to_string(), "sink".to_string()];
    for e in 0..n {
        hosts.push(format!("e-{e}"));
    }
    let keys = (0..=n).map(|i| setup.key(i, true)).collect();
    let world: WorldRef = Rc::new(RefCell::new(World {
        setup: setup.clone(),
        addrs: HashMap::new(),
        keys,
        sent: vec![Vec::new(); n],
        delivered: vec![HashMap::new(); n],
        link_port: vec![LINK_PORT; n],
        boots: vec![0; n + 1],
        entry_to_peer: 0,
        collector_from_peer: 0,
        live: vec![0; n + 1],
        violations: Vec::new(),
    }));
    for h in &hosts {
        let ip = sim.lookup(h.as_str());
        world.borrow_mut().addrs.insert(h.clone(), ip);
    }
    let w = world.clone();
    sim.host("sink", move || sink(w.clone()));
    let w = world.clone();
    sim.host("c", move || collector_host(w.clone()));
    for e in 0..n {
        let w = world.clone();
        sim.host(format!("e-{e}"), move || entry_host(w.clone(), e));
    }
    // Faults, in time order: (at, what).
    enum Fault {
        Crash(Who),
        Bounce(Who),
        Roam(usize),
    }
    let mut faults: Vec<(Duration, Fault)> = Vec::new();
    for &(who, down, back) in &setup.restarts {
        faults.push((down, Fault::Crash(who)));
        faults.push((back, Fault::Bounce(who)));
    }
    for &(at, e) in &setup.roams {
        faults.push((at, Fault::Roam(e)));
    }
    faults.sort_by_key(|(t, _)| *t);
    let mut faults = faults.into_iter().peekable();
    while sim.elapsed() < setup.duration {
        let now = sim.elapsed();
        while let Some((_, fault)) = faults.next_if(|(t, _)| *t <= now) {
            match fault {
                Fault::Crash(who) => {
                    sim.crash(who.host());
                    let mut w = world.borrow_mut();
                    let i = index(who, n);
                    let live = std::mem::take(&mut w.live[i]);
                    match who {
                        Who::Collector => w.collector_from_peer += live,
                        Who::Entry(_) => w.entry_to_peer += live,
                    }
                }
                Fault::Bounce(who) => sim.bounce(who.host()),
                Fault::Roam(e) => world.borrow_mut().link_port[e] += 1,
            }
        }
        if let Err(e) = sim.step() {
            world.borrow_mut().violate(format!("a host failed: {e}"));
            break;
        }
    }
    drop(sim);
    let mut w = world.borrow_mut();
    let worst_recovery = check(&mut w);
    CollectorOutcome {
        setup,
        violations: w.violations.clone(),
        sent: w.sent.iter().map(Vec::len).sum(),
        delivered: w.delivered.iter().map(HashMap::len).sum(),
        worst_recovery,
    }
}

/// The end-of-run checks; the worst recovery.
fn check(w: &mut World) -> Option<Duration> {
    let setup = w.setup.clone();
    let sent: u64 = w.sent.iter().map(|s| s.len() as u64).sum();
    let delivered: u64 = w.delivered.iter().map(|d| d.len() as u64).sum();
    let entry_to_peer = w.entry_to_peer + w.live[..setup.entries].iter().sum::<u64>();
    let from_peer = w.collector_from_peer + w.live[setup.entries];
    if setup.exact() {
        for (e, s) in w.sent.clone().iter().enumerate() {
            let got = w.delivered[e].len();
            if got != s.len() {
                w.violate(format!(
                    "log-{e} sent {} datagrams, the sink got {got} of them",
                    s.len()
                ));
            }
        }
        if entry_to_peer != sent || from_peer != sent {
            w.violate(format!(
                "counters disagree: loggers sent {sent}, entries counted {entry_to_peer} to their peer, the collector {from_peer} from its peers, the sink got {delivered}"
            ));
        }
    } else if from_peer != delivered {
        w.violate(format!(
            "the collector counted {from_peer} datagrams from its peers, the sink got {delivered}"
        ));
    }
    // Recovery after each fault, for each entry it concerns.
    let mut healed: Vec<(Duration, Vec<usize>, String)> = Vec::new();
    for &(who, _, back) in &setup.restarts {
        let entries = match who {
            Who::Collector => (0..setup.entries).collect(),
            Who::Entry(e) => vec![e],
        };
        healed.push((back, entries, format!("{} back", who.host())));
    }
    for &(at, e) in &setup.roams {
        healed.push((at, vec![e], format!("e-{e} roamed")));
    }
    let (_, stop) = setup.traffic();
    let mut worst: Option<Duration> = None;
    for (at, entries, what) in healed {
        // Too late in the run to tell.
        if at + setup.bound() >= stop {
            continue;
        }
        for e in entries {
            // An entry down at the time recovers at its own restart.
            let down = setup
                .restarts
                .iter()
                .any(|&(who, d, b)| who == Who::Entry(e) && d <= at + setup.bound() && b >= at);
            if down && !what.starts_with(&format!("e-{e} ")) {
                continue;
            }
            let first = w.sent[e]
                .iter()
                .enumerate()
                .filter(|(_, &t)| t >= at)
                .filter_map(|(seq, _)| w.delivered[e].get(&(seq as u32)).copied())
                .min();
            match first {
                Some(t) if t - at <= setup.bound() => {
                    worst = Some(worst.map_or(t - at, |w| w.max(t - at)));
                }
                Some(t) => w.violate(format!(
                    "after {what} at {:.3}s, e-{e}'s first datagram was delivered {:.3}s later, more than the bound {:.3}s",
                    at.as_secs_f64(),
                    (t - at).as_secs_f64(),
                    setup.bound().as_secs_f64()
                )),
                None => w.violate(format!(
                    "after {what} at {:.3}s, nothing e-{e}'s logger sent was delivered",
                    at.as_secs_f64()
                )),
            }
        }
    }
    worst
}

/// The sink: records what arrives, and from whom it claims to be.
async fn sink(world: WorldRef) -> turmoil::Result {
    let any = world.borrow().any();
    let sock = UdpSocket::bind((any, SINK_PORT)).await?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, _) = sock.recv_from(&mut buf).await?;
        let now = sim_now();
        let mut w = world.borrow_mut();
        let d = &buf[..n];
        let parsed = (n >= 10 && &d[..4] == MAGIC).then(|| {
            (
                usize::from(u16::from_be_bytes([d[4], d[5]])),
                u32::from_be_bytes([d[6], d[7], d[8], d[9]]),
            )
        });
        match parsed {
            Some((e, seq)) if e < w.sent.len() && (seq as usize) < w.sent[e].len() => {
                if w.delivered[e].insert(seq, now).is_some() {
                    w.violate(format!("the sink got log-{e}'s datagram {seq} twice"));
                }
            }
            _ => w.violate(format!(
                "the sink got a datagram no logger sent ({n} bytes)"
            )),
        }
    }
}

async fn collector_host(world: WorldRef) -> turmoil::Result {
    let node: Box<CollectorNode> = boot(&world, Who::Collector)?;
    host(world, Who::Collector, node).await
}

async fn entry_host(world: WorldRef, e: usize) -> turmoil::Result {
    let node: Box<EntryNode> = boot(&world, Who::Entry(e))?;
    host(world, Who::Entry(e), node).await
}

/// A fresh node for `who`, from its configuration, at its next boot.
fn boot<const P: usize>(
    world: &WorldRef,
    who: Who,
) -> Result<Box<Node<ChaCha20Rng, P, 1, 16>>, String> {
    let t = sim_now();
    let now = core_now(t);
    let mut w = world.borrow_mut();
    let i = index(who, w.setup.entries);
    w.boots[i] += 1;
    let rng = ChaCha20Rng::seed_from_u64(mix(w.setup.seed, &who.host(), w.boots[i]));
    let unix = START_UNIX_NANOS + t.as_nanos() as u64;
    let (peers, services) = w.spec(who);
    let key = match who {
        Who::Entry(e) if w.setup.stranger == Some(e) => w.setup.key(e, false),
        _ => w.keys[i],
    };
    let mut node = Box::new(Node::new(PrivateKey::from_bytes(key), rng, now, unix));
    for p in peers {
        node.add_peer(p, now).map_err(|e| format!("{e:?}"))?;
    }
    for s in services {
        node.add_service(s).map_err(|e| format!("{e:?}"))?;
    }
    Ok(node)
}

/// A node host's loop: read every socket, hand each datagram to the node,
/// flush once a socket's batch, run the timers; then wait for a socket or
/// the next deadline.
async fn host<const P: usize>(
    world: WorldRef,
    who: Who,
    mut node: Box<Node<ChaCha20Rng, P, 1, 16>>,
) -> turmoil::Result {
    let (any, entries) = {
        let w = world.borrow();
        (w.any(), w.setup.entries)
    };
    let port = |w: &World| match who {
        Who::Entry(e) => w.link_port[e],
        Who::Collector => LINK_PORT,
    };
    let mut link_port = port(&world.borrow());
    let mut io = HostIo {
        world: world.clone(),
        who,
        any,
        link: UdpSocket::bind((any, link_port)).await?,
        sockets: Vec::new(),
    };
    let mut buf = vec![0u8; HEADROOM + MAX_DATAGRAM + TAILROOM];
    let mut scratch = vec![0u8; sdt_core::node::TRANSMIT_BUFFER];
    let slot = HEADROOM..HEADROOM + MAX_DATAGRAM;
    let mut logger = match who {
        Who::Entry(e) => Some(Logger::new(&world.borrow(), e)),
        Who::Collector => None,
    };
    let t0 = core_now(sim_now());
    node.flush(&mut io, t0, &mut scratch);
    loop {
        let now = core_now(sim_now());
        let moved = port(&world.borrow());
        if moved != link_port {
            io.link = UdpSocket::bind((any, moved)).await?;
            link_port = moved;
        }
        while let Ok((n, from)) = io.link.try_recv_from(&mut buf[slot.clone()]) {
            let r = node.handle_link_datagram(now, from, &mut buf, HEADROOM..HEADROOM + n);
            node.carry_out(&mut io, &buf, r);
            if node.needs_flush() {
                node.flush(&mut io, now, &mut scratch);
            }
        }
        node.flush(&mut io, now, &mut scratch);
        for k in 0..io.sockets.len() {
            let id = io.sockets[k].0;
            while let Some(Ok((n, from))) = io
                .sockets
                .iter()
                .find(|s| s.0 == id)
                .map(|s| s.1.try_recv_from(&mut buf[slot.clone()]))
            {
                let r =
                    node.handle_customer_datagram(now, id, from, &mut buf, HEADROOM..HEADROOM + n);
                node.carry_out(&mut io, &buf, r);
            }
            node.flush(&mut io, now, &mut scratch);
        }
        if let Some(l) = &mut logger {
            while let Some(range) = l.due(&world, &mut buf) {
                let service = SocketId::Service(SERVICE);
                let r = node.handle_customer_datagram(now, service, l.from, &mut buf, range);
                node.carry_out(&mut io, &buf, r);
            }
            node.flush(&mut io, now, &mut scratch);
        }
        if node.poll_timeout().is_some_and(|d| d <= now) {
            node.handle_timeout(now);
            node.flush(&mut io, now, &mut scratch);
        }
        // What this incarnation counted: to the peer at an entry, from the
        // peers at the collector.
        if let Some(stats) = node.service_stats(SERVICE) {
            let mut w = world.borrow_mut();
            w.live[index(who, entries)] = match who {
                Who::Collector => stats.from_peer.datagrams,
                Who::Entry(_) => stats.to_peer.datagrams,
            };
        }
        let wait = match node.poll_timeout() {
            Some(d) if d > now => d - now,
            Some(_) => TICK,
            None => Duration::from_secs(1),
        };
        let wait = logger
            .as_ref()
            .map_or(wait, |l| wait.min(l.next.saturating_sub(sim_now())));
        let customer = io.sockets.first().map(|s| &s.1);
        tokio::select! {
            _ = io.link.readable() => {}
            _ = async {
                match customer {
                    Some(s) => s.readable().await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = tokio::time::sleep(wait.max(TICK)) => {}
        }
    }
}

fn sim_now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// An entry's logger: a numbered datagram every 100-300 ms between the
/// traffic's start and stop, the first at a random offset.
struct Logger {
    e: usize,
    rng: ChaCha20Rng,
    next: Duration,
    stop: Duration,
    from: SocketAddr,
}

impl Logger {
    fn new(w: &World, e: usize) -> Logger {
        let (start, stop) = w.setup.traffic();
        let boot = w.boots[e];
        let mut rng = ChaCha20Rng::seed_from_u64(mix(w.setup.seed, &format!("log-{e}"), boot));
        let first = start.max(sim_now()) + Duration::from_millis(rng.next_u64() % GAP_MS.1);
        let local = if w.setup.ipv6 {
            IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1u16])
        } else {
            IpAddr::from([127, 0, 0, 1])
        };
        Logger {
            e,
            rng,
            next: first,
            stop,
            from: SocketAddr::new(local, LOGGER_PORT),
        }
    }

    /// The next datagram into `buf` if it is due: its range there.
    fn due(&mut self, world: &WorldRef, buf: &mut [u8]) -> Option<std::ops::Range<usize>> {
        let now = sim_now();
        if now < self.next || now >= self.stop {
            return None;
        }
        let mut w = world.borrow_mut();
        let seq = w.sent[self.e].len() as u32;
        w.sent[self.e].push(now);
        let len = 10 + (self.rng.next_u64() % 200) as usize;
        let d = &mut buf[HEADROOM..HEADROOM + len];
        d[..4].copy_from_slice(MAGIC);
        d[4..6].copy_from_slice(&(self.e as u16).to_be_bytes());
        d[6..10].copy_from_slice(&seq.to_be_bytes());
        d[10..].fill(b'.');
        let gap = GAP_MS.0 + self.rng.next_u64() % (GAP_MS.1 - GAP_MS.0 + 1);
        self.next = now + Duration::from_millis(gap);
        Some(HEADROOM..HEADROOM + len)
    }
}

/// A node host's sockets.
struct HostIo {
    world: WorldRef,
    who: Who,
    any: IpAddr,
    link: UdpSocket,
    /// The service's own socket, with where it is connected.
    sockets: Vec<(SocketId, UdpSocket, Option<SocketAddr>)>,
}

impl HostIo {
    fn violate(&self, what: String) {
        let who = self.who.host();
        self.world.borrow_mut().violate(format!("{who}: {what}"));
    }
}

impl Io for HostIo {
    fn bind(&mut self, socket: SocketId, local: SocketAddr) -> Result<(), OpenFailed> {
        let sock = crate::driver::ready(UdpSocket::bind(local)).map_err(|_| OpenFailed)?;
        self.sockets.push((socket, sock, None));
        Ok(())
    }

    fn connect(&mut self, socket: SocketId, remote: SocketAddr) -> Result<(), OpenFailed> {
        let sink = SocketAddr::new(self.world.borrow().ip("sink"), SINK_PORT);
        if remote != sink {
            self.violate(format!(
                "asked for a socket connected to {remote}, not the sink"
            ));
        }
        let sock = crate::driver::ready(UdpSocket::bind((self.any, 0))).map_err(|_| OpenFailed)?;
        crate::driver::ready(sock.connect(remote)).map_err(|_| OpenFailed)?;
        self.sockets.push((socket, sock, Some(remote)));
        Ok(())
    }

    fn close(&mut self, socket: SocketId) {
        self.sockets.retain(|s| s.0 != socket);
    }

    fn send_link(&mut self, to: SocketAddr, datagram: &[u8]) {
        // turmoil's UDP never blocks; a full queue is a lost datagram.
        let _ = self.link.try_send_to(datagram, to);
    }

    fn send_customer(&mut self, socket: SocketId, to: Option<SocketAddr>, payload: &[u8]) {
        let Some((_, sock, remote)) = self.sockets.iter().find(|s| s.0 == socket) else {
            self.violate(format!("output on {socket:?}, which is not open"));
            return;
        };
        match (self.who, to.or(*remote)) {
            (Who::Collector, Some(dest)) => {
                let _ = sock.try_send_to(payload, dest);
            }
            (who, dest) => self.violate(format!(
                "{} sent a customer datagram to {dest:?}: only the collector's exit sends, to the sink",
                who.host()
            )),
        }
    }

    fn write_tun(&mut self, service: ServiceId, _packet: &[u8]) {
        self.violate(format!("wrote to a TUN device of service {service:?}"));
    }
}
