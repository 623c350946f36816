//! The runtime of an sdt node host: turmoil sockets around the real core.
//!
//! One link socket, plus the customer sockets the node asks for through
//! [`Io::bind`] and [`Io::connect`] (a connect binds `0.0.0.0:0` and then
//! connects). Each turn of the loop reads every socket that has data with
//! `try_recv_from`, hands each datagram to the node and lets
//! [`Node::carry_out`] act on the result; then it runs the node's timers
//! when due ([`Node::handle_timeout`], then [`Node::flush`]) and sleeps until
//! the next deadline or the next tick, whichever is sooner. Polling every
//! tick is what "readable" means in a simulation that advances in ticks.
//!
//! Sends happen inside the [`Io`] calls: turmoil's `try_send_to` is
//! synchronous and never blocks (its UDP has no backpressure), so nothing
//! is queued in the driver. Opening a socket is an `async fn` in turmoil
//! that completes without waiting; `ready` polls it once.
//!
//! The node lives in a [`NodeSlot`] the harness can read (counters, channel
//! tables); the sockets live in the host's future, so a turmoil `crash`
//! closes them all, and a `bounce` runs [`run`] again: a fresh node from
//! the same key, its old state gone.

use std::cell::RefCell;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rand_chacha::{ChaCha20Rng, ChaCha8Rng};
use rand_core::{RngCore, SeedableRng};
use sdt_core::ip::parse_udp;
use sdt_core::key::PrivateKey;
use sdt_core::link::{DropCounts, DropReason, PeerConfig, PeerId, PeerStats};
use sdt_core::node::{
    Dropped, Io, Node, NodeEvent, OpenFailed, Output, ServiceConfig, ServiceDrops, ServiceId,
    ServiceStats, SocketId, HEADROOM, TAILROOM,
};
use sdt_core::wire::{DataPacket, MessageType};
use sdt_core::Instant;
use turmoil::net::UdpSocket;

use crate::icmp;
use crate::payload::describe;
use crate::scenario::{
    ClockStep, Mode, ALICE_PORT, BOB_PORT, ICMP_PORT, NODE_CHANNELS, NODE_NAMES, TICK, X, Y,
};
use crate::trace::mix;
use crate::world::{router_allows, router_allows_echo, sim_now, SharedRef};
use crate::Sabotage;

/// The node type of the simulation: one peer used (room for two), four
/// services, a channel table of [`NODE_CHANNELS`].
pub type SimNode = Node<ChaCha20Rng, 2, 4, NODE_CHANNELS>;

/// The first port of the exit's port pool ([`crate::scenario::Setup::exit_port_pool`]).
const EXIT_PORT_POOL_BASE: u16 = 40_000;

/// Wall-clock time of the simulation's start, for handshake timestamps.
pub const START_UNIX_NANOS: u64 = 1_700_000_000_000_000_000;

/// Largest datagram the driver reads.
const MAX_DATAGRAM: usize = 2048;

/// Core's clock: one second plus the simulated time, so no `now` is zero.
pub fn core_now(sim: Duration) -> Instant {
    Instant::from_nanos(1_000_000_000 + sim.as_nanos() as u64)
}

/// Polls a future that completes without waiting (turmoil's socket set-up).
pub(crate) fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a turmoil socket call did not complete at once"),
    }
}

/// How a node is configured, the same at every boot.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// [`X`] or [`Y`].
    pub index: usize,
    /// The node's private key: kept across restarts.
    pub key: [u8; 32],
    /// Its one peer.
    pub peer: PeerConfig,
    /// Its services.
    pub services: Vec<ServiceConfig>,
    /// Whether to start the handshake at boot.
    pub connect: bool,
    /// Chance of sending each link datagram twice.
    pub duplicate: f64,
}

/// Counters of one incarnation of a node.
#[derive(Debug, Clone)]
pub struct NodeStats {
    /// Each service with its counters.
    pub services: Vec<(ServiceConfig, ServiceStats)>,
    /// Drops no service is blamed for.
    pub node_drops: ServiceDrops,
    /// The peer's counters.
    pub peer: PeerStats,
    /// Link drops not tied to a peer.
    pub unattributed: DropCounts,
}

impl NodeStats {
    /// The running node's counters, now.
    pub fn of(node: &SimNode) -> NodeStats {
        let now = core_now(sim_now());
        NodeStats {
            services: node.services().map(|(c, s)| (c.clone(), s)).collect(),
            node_drops: *node.node_drops(),
            peer: node
                .link()
                .peer(PeerId(0), now)
                .map(|p| p.stats)
                .unwrap_or_default(),
            unattributed: *node.link().unattributed_drops(),
        }
    }
}

/// Where the harness finds a node between steps.
#[derive(Default)]
pub struct NodeSlot {
    /// The running incarnation (`None` while crashed).
    pub node: Option<SimNode>,
    /// Boots so far.
    pub boots: u64,
    /// Counters of earlier incarnations.
    pub history: Vec<NodeStats>,
    /// Counters of the services reloads removed, as they were then.
    pub removed_services: Vec<(ServiceConfig, ServiceStats)>,
}

impl NodeSlot {
    /// Files the running node's counters away (the host was crashed).
    pub fn archive(&mut self) {
        if let Some(node) = self.node.take() {
            self.history.push(NodeStats::of(&node));
        }
    }

    /// Files away the counters of the services in `before` (the node's
    /// counters just before a reload) that `gone` says the reload removes:
    /// they leave the node with their service, and [`NodeSlot::all_stats`]
    /// still counts them.
    pub fn file_away(&mut self, before: NodeStats, gone: impl Fn(&ServiceConfig) -> bool) {
        self.removed_services
            .extend(before.services.into_iter().filter(|(c, _)| gone(c)));
    }

    /// Counters of every incarnation, the running one last.
    /// Services a reload removed count with the incarnation that ran
    /// them last.
    pub fn all_stats(&self) -> Vec<NodeStats> {
        let mut v = self.history.clone();
        v.extend(self.node.as_ref().map(NodeStats::of));
        if let Some(last) = v.last_mut() {
            last.services.extend(self.removed_services.iter().cloned());
        }
        v
    }
}

/// What the host of a node needs.
pub struct NodeCtx {
    /// Configuration.
    pub spec: NodeSpec,
    /// The node, for the harness.
    pub slot: Rc<RefCell<NodeSlot>>,
    /// Shared state.
    pub shared: SharedRef,
    /// The scenario seed.
    pub seed: u64,
}

/// A customer socket of the node.
struct Sock {
    id: SocketId,
    sock: UdpSocket,
    /// The address a connected socket sends to.
    remote: Option<SocketAddr>,
    /// An emulated ICMP echo socket ([`Io::connect_echo`]): `remote` is
    /// the pinged host's [`ICMP_PORT`], the identifier its local port.
    echo: bool,
}

/// The node host's software: boots a node and drives it forever.
pub async fn run(ctx: Rc<NodeCtx>) -> turmoil::Result {
    let i = ctx.spec.index;
    let name = NODE_NAMES[i];
    // A start order: the first boot waits for the node's start time.
    let start = ctx.shared.borrow().setup.start.map(|s| s[i]);
    if let Some(start) = start.filter(|_| ctx.slot.borrow().boots == 0) {
        let now = sim_now();
        if start > now {
            tokio::time::sleep(start - now).await;
        }
    }
    let t = sim_now();
    let now = core_now(t);
    let boot = {
        let mut slot = ctx.slot.borrow_mut();
        slot.archive();
        slot.boots += 1;
        slot.boots
    };
    let rng = ChaCha20Rng::seed_from_u64(mix(ctx.seed, name, boot));
    // The wall clock, read once at boot: the simulation's, plus the clock
    // steps the harness gave this node.
    let offset = ctx.shared.borrow().wall_offset[i];
    let unix = (i128::from(START_UNIX_NANOS) + t.as_nanos() as i128 + i128::from(offset)) as u64;
    let mut node = SimNode::new(PrivateKey::from_bytes(ctx.spec.key), rng, now, unix);
    ctx.shared.borrow_mut().stance.boot(i);
    if ctx.shared.borrow().sabotage == Some(Sabotage::CookiesAlways) {
        node.set_load_threshold(0);
    }
    let peer = node
        .add_peer(ctx.spec.peer.clone(), now)
        .map_err(|e| e.to_string())?;
    let no_port_hold = ctx.shared.borrow().sabotage == Some(Sabotage::NoPortHold);
    for s in &ctx.spec.services {
        let mut s = s.clone();
        if no_port_hold {
            s.limits.port_hold = Duration::ZERO;
        }
        node.add_service(s).map_err(|e| e.to_string())?;
    }
    // Core decides keep-up from the services (no `keep_up` in the peer
    // configs here): a node keeps the link up where it knows the peer's
    // endpoint and holds a half the peer may send first in, an exit or a
    // direct service. That is X in a mirror image (forward, push or
    // router: the entry on Y, which cannot reach X) and both nodes in
    // direct mode; never Y otherwise, which knows no endpoint.
    let keeps_up = node.link().peer(peer, now).is_some_and(|p| p.keep_up);
    let wants_up = {
        let setup = &ctx.shared.borrow().setup;
        setup.mode == Mode::Direct || (setup.reverse && i == X)
    };
    if keeps_up != wants_up {
        ctx.shared.borrow_mut().violate(format!(
            "{name}: keeps the link up: {keeps_up}; its services call for {wants_up}"
        ));
    }
    let link_port = ctx.shared.borrow().link_port[i];
    let any = ctx.shared.borrow().setup.unspecified();
    let link = UdpSocket::bind((any, link_port)).await?;
    // The router exit's emulated kernel reads the ICMP errors its
    // connected sockets' destinations send (crate::icmp).
    let kernel_icmp = {
        let setup = &ctx.shared.borrow().setup;
        setup.icmp && setup.mode == Mode::Router && setup.roles().exit == i
    };
    let kernel_icmp = match kernel_icmp {
        true => Some(UdpSocket::bind((any, ICMP_PORT)).await?),
        false => None,
    };
    let mut io = SimIo {
        kernel_icmp,
        tun_input: None,
        i,
        name,
        shared: ctx.shared.clone(),
        link,
        link_port,
        sockets: Vec::new(),
        free_ports: ctx.shared.borrow().setup.exit_port_pool.map(|n| {
            (EXIT_PORT_POOL_BASE..EXIT_PORT_POOL_BASE + n)
                .rev()
                .collect()
        }),
        rng: ChaCha8Rng::seed_from_u64(mix(ctx.seed, &format!("{name}-dup"), boot)),
        duplicate: ctx.spec.duplicate,
        mode: ctx.shared.borrow().setup.mode,
        tun: {
            let setup = &ctx.shared.borrow().setup;
            setup.mode == Mode::Router && setup.roles().entry == i
        },
        sabotage: ctx.shared.borrow().sabotage,
        outputs: 0,
        result_drop_pending: false,
    };
    io.shared.borrow_mut().boots[i] = boot;
    io.shared.borrow_mut().down[i] = false;
    if offset == 0 {
        io.log(&format!("boot #{boot} on port {link_port}"), &[]);
    } else {
        let step = ClockStep {
            forward: offset > 0,
            by: Duration::from_nanos(offset.unsigned_abs()),
        };
        io.log(
            &format!("boot #{boot} on port {link_port}, wall clock {step}"),
            &[],
        );
    }
    let mut scratch = vec![0u8; sdt_core::node::TRANSMIT_BUFFER];
    let mut buf = vec![0u8; HEADROOM + MAX_DATAGRAM + TAILROOM];
    if ctx.spec.connect {
        node.connect(peer, now);
    }
    node.flush(&mut io, now, &mut scratch);
    ctx.slot.borrow_mut().node = Some(node);
    loop {
        let wait = {
            let mut slot = ctx.slot.borrow_mut();
            let node = slot.node.as_mut().expect("the node runs");
            io.turn(node, &mut buf, &mut scratch)
        };
        tokio::time::sleep(wait).await;
    }
}

/// The runtime side of one node: its sockets.
struct SimIo {
    /// The router exit's emulated kernel's ICMP input, in ICMP scenarios.
    kernel_icmp: Option<UdpSocket>,
    /// While a TUN packet is carried out: the entry's TUN MTU then
    /// (`Node::router_packet_mtu`).
    tun_input: Option<u16>,
    i: usize,
    name: &'static str,
    shared: SharedRef,
    link: UdpSocket,
    link_port: u16,
    sockets: Vec<Sock>,
    /// With [`crate::scenario::Setup::exit_port_pool`]: the free ports of
    /// the pool, the next to hand out last.
    free_ports: Option<Vec<u16>>,
    rng: ChaCha8Rng,
    duplicate: f64,
    mode: Mode,
    /// Router mode's entry: the node with the TUN device the clients'
    /// packets come from (X, or Y in the mirror image).
    tun: bool,
    sabotage: Option<Sabotage>,
    outputs: u64,
    /// The next `Io::dropped` is the handle call's own result, counted
    /// already; any other is a drop only `flush` reports (a staged
    /// datagram given up).
    result_drop_pending: bool,
}

/// What a link datagram is, for the trace.
fn frame_kind(bytes: &[u8]) -> &'static str {
    match MessageType::of(bytes) {
        Ok(MessageType::Initiation) => "init",
        Ok(MessageType::Response) => "resp",
        Ok(MessageType::CookieReply) => "cookie",
        Ok(MessageType::Data) if bytes.len() == DataPacket::<&[u8]>::OVERHEAD => "keepalive",
        Ok(MessageType::Data) => "data",
        Ok(MessageType::Probe) => "probe",
        Err(_) => "junk",
    }
}

fn socket_name(id: SocketId) -> String {
    match id {
        SocketId::Service(s) => format!("svc{s}"),
        SocketId::Channel(c) => format!("ch{}.{}", c.slot(), c.generation()),
    }
}

fn result_name(r: &Result<Output, Dropped>) -> String {
    match r {
        Ok(Output::Link { .. }) => "ok -> link".into(),
        Ok(Output::Customer { socket, .. }) => format!("ok -> {}", socket_name(*socket)),
        Ok(Output::Tun { .. }) => "ok -> tun".into(),
        Ok(Output::Consumed) => "ok consumed".into(),
        Ok(Output::Queued) => "ok queued".into(),
        Err(d) => format!("dropped ({d})"),
    }
}

impl SimIo {
    fn log(&self, what: &str, bytes: &[u8]) {
        self.shared.borrow_mut().log(self.name, what, bytes);
    }

    /// A socket the node asked for could not be opened: logged, counted,
    /// reported back to the node.
    fn open_failed(&mut self, socket: SocketId, e: std::io::Error) -> Result<(), OpenFailed> {
        self.log(&format!("open {} failed: {e}", socket_name(socket)), &[]);
        self.shared
            .borrow_mut()
            .count(self.i, |c| c.open_failed += 1);
        Err(OpenFailed)
    }

    fn violate(&self, what: String) {
        let what = format!("{}: {what}", self.name);
        self.shared.borrow_mut().violate(what);
    }

    fn addr(&self, a: SocketAddr) -> String {
        self.shared.borrow().name_addr(a)
    }

    /// Where this node may send customer datagrams, by its configuration.
    fn may_send_to(&self, to: SocketAddr) -> bool {
        let shared = self.shared.borrow();
        let setup = &shared.setup;
        let Some(host) = shared.names.get(&to.ip()) else {
            return false;
        };
        let index = |prefix: &str| {
            host.strip_prefix(prefix)
                .and_then(|n| n.parse::<usize>().ok())
        };
        match self.mode {
            Mode::Forward | Mode::Push => {
                let roles = setup.roles();
                if self.i == roles.entry {
                    // Forward entries answer their clients; push never.
                    self.mode == Mode::Forward
                        && index(roles.clients).is_some()
                        && to.port() == roles.client_port
                } else {
                    let services = if self.mode == Mode::Push {
                        1
                    } else {
                        setup.services
                    };
                    index(roles.targets).is_some_and(|t| t < services)
                        && to.port() == roles.target_port
                }
            }
            Mode::Direct if self.i == X => index("alice-") == Some(0) && to.port() == ALICE_PORT,
            Mode::Direct => index("bob-") == Some(0) && to.port() == BOB_PORT,
            Mode::Router => self.i == setup.roles().exit && router_allows(setup, host, to.port()),
        }
    }

    /// Where this node may open echo sockets to, by its configuration.
    fn may_echo(&self, to: IpAddr) -> bool {
        let shared = self.shared.borrow();
        let setup = &shared.setup;
        self.mode == Mode::Router
            && self.i == setup.roles().exit
            && shared
                .names
                .get(&to)
                .is_some_and(|host| router_allows_echo(setup, host))
    }

    /// An output on echo socket `socket` (identifier `ident`, connected to
    /// `remote`): core's echo request, sent as the kernel sends it.
    fn send_echo(
        &mut self,
        socket: SocketId,
        to: Option<SocketAddr>,
        remote: Option<IpAddr>,
        ident: u16,
        message: &[u8],
    ) {
        let Some(remote) = remote else {
            return;
        };
        if to.is_some() {
            self.violate(format!(
                "output on echo socket {} with a destination of its own",
                socket_name(socket)
            ));
        }
        if !self.may_echo(remote) {
            self.violate(format!(
                "pinged {}, which its configuration does not allow",
                self.addr(SocketAddr::new(remote, 0))
            ));
        }
        let me = self.shared.borrow().ip(self.name);
        let filled = match icmp::fill_echo_request(message, ident, me, remote) {
            Ok(m) => m,
            Err(e) => {
                self.violate(format!(
                    "output on echo socket {}: {e}",
                    socket_name(socket)
                ));
                self.shared
                    .borrow_mut()
                    .count(self.i, |c| c.send_failed += 1);
                return;
            }
        };
        let seq = u16::from_be_bytes([filled[6], filled[7]]);
        self.log(
            &format!(
                "{} -> {} echo request id {ident} seq {seq} {}",
                socket_name(socket),
                self.addr(SocketAddr::new(remote, 0)),
                describe(&filled[8..])
            ),
            &filled,
        );
        self.outputs += 1;
        let Some(s) = self.sockets.iter().find(|s| s.id == socket) else {
            return;
        };
        if let Err(e) = s
            .sock
            .try_send_to(&filled, SocketAddr::new(remote, ICMP_PORT))
        {
            self.log(&format!("send failed: {e}"), &[]);
            self.shared
                .borrow_mut()
                .count(self.i, |c| c.send_failed += 1);
        }
    }

    /// One turn of the loop; returns how long to sleep.
    fn turn(&mut self, node: &mut SimNode, buf: &mut [u8], scratch: &mut [u8]) -> Duration {
        let t = sim_now();
        let now = core_now(t);
        self.follow_roam();
        let slot = HEADROOM..HEADROOM + MAX_DATAGRAM;
        // Each socket's waiting datagrams are one batch, flushed once, as
        // the daemon does.
        while let Ok((n, from)) = self.link.try_recv_from(&mut buf[slot.clone()]) {
            self.on_link(node, now, from, n, buf);
            if node.needs_flush() {
                node.flush(self, now, scratch);
            }
        }
        node.flush(self, now, scratch);
        let ids: Vec<SocketId> = self.sockets.iter().map(|s| s.id).collect();
        for id in ids {
            // The socket may close while its datagrams are handled.
            while let Some(s) = self.sockets.iter().find(|s| s.id == id) {
                let Ok((n, from)) = s.sock.try_recv_from(&mut buf[slot.clone()]) else {
                    break;
                };
                // A ping socket reads the pinged host's address, port 0.
                let from = if s.echo {
                    SocketAddr::new(from.ip(), 0)
                } else {
                    from
                };
                self.on_customer(node, now, id, from, n, buf);
            }
            node.flush(self, now, scratch);
        }
        if self.kernel_icmp.is_some() {
            self.on_kernel_icmp(node, now, buf);
            node.flush(self, now, scratch);
        }
        if self.tun {
            loop {
                let Some(packet) = self.shared.borrow_mut().tun_in.pop_front() else {
                    break;
                };
                self.on_tun(node, now, &packet, buf);
            }
            node.flush(self, now, scratch);
        }
        let timers = self.sabotage != Some(Sabotage::NoTimers);
        if timers && node.poll_timeout().is_some_and(|d| d <= now) {
            node.handle_timeout(now);
            node.flush(self, now, scratch);
            if let Some(d) = node.poll_timeout().filter(|&d| d <= now) {
                self.violate(format!(
                    "poll_timeout() is {:?}, not after now {:?}, right after handle_timeout",
                    d, now
                ));
            }
        }
        match node.poll_timeout() {
            Some(d) if d > now => (d - now).min(TICK),
            _ => TICK,
        }
    }

    /// The exit's emulated kernel: every ICMP error waiting is matched, by
    /// the datagram it quotes, to the connected socket that sent it (its
    /// local port and remote address), whose refusal the node is told of
    /// as the daemon tells it of `ECONNREFUSED` (`handle_target_refused`).
    /// Linux keeps one pending error per socket, so two errors before the
    /// daemon reads would be reported once; here each is reported.
    fn on_kernel_icmp(&mut self, node: &mut SimNode, now: Instant, buf: &mut [u8]) {
        let mut packet = [0u8; MAX_DATAGRAM];
        loop {
            let Some(k) = &self.kernel_icmp else {
                return;
            };
            let Ok((n, from)) = k.try_recv_from(&mut packet) else {
                return;
            };
            let (src, dst) = match icmp::parse_error(&packet[..n]) {
                Ok(q) => q,
                Err(e) => {
                    self.violate(format!(
                        "its kernel got an ICMP message from {} it cannot parse: {e}",
                        self.addr(from)
                    ));
                    continue;
                }
            };
            let socket = self.sockets.iter().find(|s| {
                !s.echo
                    && s.remote == Some(dst)
                    && s.sock.local_addr().map(|a| a.port()).ok() == Some(src.port())
            });
            let Some(id) = socket.map(|s| s.id) else {
                self.log(
                    &format!(
                        "kernel: port unreachable from {} for :{} -> {}: no such socket",
                        self.addr(from),
                        src.port(),
                        self.addr(dst)
                    ),
                    &[],
                );
                continue;
            };
            let r = node.handle_target_refused(now, id, buf);
            self.log(
                &format!(
                    "{} refused by {}: {}",
                    socket_name(id),
                    self.addr(dst),
                    result_name(&r)
                ),
                &[],
            );
            self.shared.borrow_mut().count(self.i, |c| {
                c.customer_in += 1;
                if matches!(r, Err(Dropped::Service(_))) {
                    c.service_dropped += 1;
                }
            });
            self.result_drop_pending = r.is_err();
            node.carry_out(self, buf, r);
        }
    }

    /// The harness moved this node's link port: rebind there.
    fn follow_roam(&mut self) {
        let port = self.shared.borrow().link_port[self.i];
        if port == self.link_port {
            return;
        }
        let any = self.shared.borrow().setup.unspecified();
        match ready(UdpSocket::bind((any, port))) {
            Ok(sock) => {
                // The old socket closes as it is replaced.
                self.link = sock;
                self.log(
                    &format!("roam: link socket moved {} -> {port}", self.link_port),
                    &[],
                );
                self.link_port = port;
            }
            Err(e) => self.violate(format!("harness: cannot bind link port {port}: {e}")),
        }
    }

    fn on_link(
        &mut self,
        node: &mut SimNode,
        now: Instant,
        from: SocketAddr,
        n: usize,
        buf: &mut [u8],
    ) {
        let range = HEADROOM..HEADROOM + n;
        let bytes = buf[range.clone()].to_vec();
        let (peer_ip, attacker_ip) = {
            let shared = self.shared.borrow();
            let peer = NODE_NAMES[crate::scenario::other(self.i)];
            (shared.ip(peer), shared.addrs.get("attacker").copied())
        };
        let kind = frame_kind(&bytes);
        self.shared.borrow_mut().stance.arrived(
            self.i,
            now,
            Some(from.ip()) == attacker_ip,
            &bytes,
        );
        let r = node.handle_link_datagram(now, from, buf, range);
        if from.ip() == peer_ip {
            let race_loser = r == Err(Dropped::Link(DropReason::HandshakeRace));
            self.shared.borrow_mut().capture(self.i, &bytes, race_loser);
        }
        self.log(
            &format!(
                "link <- {} {kind}({n}): {}",
                self.addr(from),
                result_name(&r)
            ),
            &bytes,
        );
        if Some(from.ip()) == attacker_ip && r.is_ok() {
            self.violate(format!(
                "accepted a {kind} datagram from the attacker: {}",
                result_name(&r)
            ));
        }
        let data_from_peer =
            from.ip() == peer_ip && kind == "data" && n > DataPacket::<&[u8]>::OVERHEAD;
        match &r {
            Err(Dropped::Link(_)) => self.shared.borrow_mut().count(self.i, |c| {
                c.link_dropped += 1;
                if data_from_peer {
                    c.peer_data_dropped += 1;
                }
            }),
            Err(Dropped::Service(_)) => self
                .shared
                .borrow_mut()
                .count(self.i, |c| c.service_dropped += 1),
            Ok(_) => {}
        }
        self.shared.borrow_mut().count(self.i, |c| c.link_in += 1);
        if self.sabotage == Some(Sabotage::EchoAttacker)
            && self.i == Y
            && Some(from.ip()) == attacker_ip
        {
            let _ = self.link.try_send_to(&bytes, from);
        }
        self.result_drop_pending = r.is_err();
        node.carry_out(self, buf, r);
    }

    fn on_customer(
        &mut self,
        node: &mut SimNode,
        now: Instant,
        id: SocketId,
        from: SocketAddr,
        n: usize,
        buf: &mut [u8],
    ) {
        let range = HEADROOM..HEADROOM + n;
        let echo = self.sockets.iter().any(|s| s.id == id && s.echo);
        let what = match icmp::parse_echo_message(&buf[range.clone()]).filter(|_| echo) {
            Some(m) => format!("echo reply seq {} {}", m.seq, describe(&m.data)),
            None => describe(&buf[range.clone()]),
        };
        let r = node.handle_customer_datagram(now, id, from, buf, range);
        self.log(
            &format!(
                "{} <- {} {what}: {}",
                socket_name(id),
                self.addr(from),
                result_name(&r)
            ),
            &[],
        );
        if self
            .shared
            .borrow()
            .names
            .get(&from.ip())
            .map(String::as_str)
            == Some("attacker")
            && r.is_ok()
        {
            self.violate("carried a datagram from the attacker".into());
        }
        let mut shared = self.shared.borrow_mut();
        shared.count(self.i, |c| {
            c.customer_in += 1;
            if matches!(r, Err(Dropped::Service(_))) {
                c.service_dropped += 1;
            }
        });
        drop(shared);
        self.result_drop_pending = r.is_err();
        node.carry_out(self, buf, r);
    }

    fn on_tun(&mut self, node: &mut SimNode, now: Instant, packet: &[u8], buf: &mut [u8]) {
        let range = HEADROOM..HEADROOM + packet.len();
        buf[range.clone()].copy_from_slice(packet);
        let what = match parse_udp(packet) {
            Ok(d) => format!(
                "{} -> {} {}",
                self.addr(d.source),
                self.addr(d.destination),
                describe(&packet[d.payload])
            ),
            Err(e) => match sdt_core::ip::icmp::parse_echo(packet) {
                Ok(echo) => format!(
                    "{} -> {} echo request id {} {}",
                    self.addr(SocketAddr::new(
                        echo.source,
                        self.shared.borrow().setup.roles().client_port
                    )),
                    self.addr(SocketAddr::new(echo.destination, 0)),
                    echo.ident,
                    describe(&packet[echo.payload.start + 2..echo.payload.end])
                ),
                Err(_) => format!("bad packet {e:?}"),
            },
        };
        let r = node.handle_tun_packet(now, ROUTER_SERVICE, buf, range);
        self.log(&format!("tun <- {what}: {}", result_name(&r)), &[]);
        self.shared.borrow_mut().count(self.i, |c| {
            c.customer_in += 1;
            if matches!(r, Err(Dropped::Service(_))) {
                c.service_dropped += 1;
            }
        });
        self.result_drop_pending = r.is_err();
        // A TUN write now answers this packet: an ICMP error core forged
        // here (it is too big for a frame).
        self.tun_input = Some(node.router_packet_mtu(ROUTER_SERVICE).unwrap_or(0));
        node.carry_out(self, buf, r);
        self.tun_input = None;
    }
}

impl SimIo {
    /// A packet core wrote to the entry's TUN device in answer to the TUN
    /// packet it was handed: Fragmentation Needed / Packet Too Big, which
    /// core counts as a `too_big` drop (so the driver does too; it is no
    /// output from the peer). It must announce the TUN MTU `mtu`, quote a
    /// packet larger than that, and reach the client that sent it.
    fn local_icmp_error(&mut self, packet: &[u8], mtu: u16) {
        self.shared
            .borrow_mut()
            .count(self.i, |c| c.service_dropped += 1);
        let parsed = icmp::parse_packet(packet);
        let Ok(icmp::IcmpPacket::TooBig {
            from,
            to,
            mtu: announced,
            quoted_src,
            quoted_dst,
            quoted_len,
            prefix,
        }) = parsed
        else {
            self.violate(format!(
                "answered a TUN packet with one that is no packet too big: {parsed:?}"
            ));
            return;
        };
        if announced != u32::from(mtu) || quoted_len <= usize::from(mtu) {
            self.violate(format!(
                "a packet too big announces MTU {announced} for a {quoted_len}-byte packet; the TUN MTU is {mtu}"
            ));
        }
        let client = self.icmp_receiver(to);
        let Some((own, receiver)) = client else {
            self.violate(format!(
                "wrote a packet too big to TUN for {to}, who is no client"
            ));
            return;
        };
        self.log(
            &format!(
                "tun -> {receiver} packet too big (mtu {announced}) from {} for {} -> {} {}",
                self.addr(SocketAddr::new(from, 0)),
                self.addr(quoted_src),
                self.addr(quoted_dst),
                describe(&prefix[..prefix.len().min(16)])
            ),
            packet,
        );
        self.shared.borrow_mut().deliver_too_big(
            &receiver,
            own,
            from,
            (quoted_src, quoted_dst),
            &prefix,
        );
    }

    /// The TUN-side client an ICMP packet for `to` reaches (a client has
    /// one address), its address and name: with [`Sabotage::Misroute`], the
    /// next client instead.
    fn icmp_receiver(&self, to: IpAddr) -> Option<(SocketAddr, String)> {
        let shared = self.shared.borrow();
        let clients: Vec<(&SocketAddr, &String)> = shared.tun_clients.iter().collect();
        clients.iter().position(|(a, _)| a.ip() == to).map(|k| {
            let k = if self.sabotage == Some(Sabotage::Misroute) {
                (k + 1) % clients.len()
            } else {
                k
            };
            (*clients[k].0, clients[k].1.clone())
        })
    }

    /// An ICMP packet core wrote to the entry's TUN device: an echo reply
    /// or a port unreachable, handed to the client it is addressed to (by
    /// IP address: a client has one), or, with [`Sabotage::Misroute`], the
    /// next one.
    fn write_tun_icmp(&mut self, service: ServiceId, packet: &[u8]) {
        let parsed = icmp::parse_packet(packet);
        let Ok(p) = parsed else {
            self.violate(format!(
                "wrote an ICMP packet to TUN of service {service} that does not parse: {parsed:?}"
            ));
            self.shared
                .borrow_mut()
                .count(self.i, |c| c.send_failed += 1);
            return;
        };
        let to = match &p {
            icmp::IcmpPacket::EchoReply { to, .. }
            | icmp::IcmpPacket::PortUnreachable { to, .. }
            | icmp::IcmpPacket::TooBig { to, .. } => *to,
        };
        let client = self.icmp_receiver(to);
        let Some((own, receiver)) = client else {
            self.violate(format!(
                "wrote an ICMP packet to TUN for {to}, who is no client"
            ));
            self.shared
                .borrow_mut()
                .count(self.i, |c| c.send_failed += 1);
            return;
        };
        match p {
            icmp::IcmpPacket::EchoReply { from, echo, .. } => {
                self.log(
                    &format!(
                        "tun -> {receiver} echo reply id {} seq {} from {} {}",
                        echo.ident,
                        echo.seq,
                        self.addr(SocketAddr::new(from, 0)),
                        describe(&echo.data)
                    ),
                    packet,
                );
                self.shared
                    .borrow_mut()
                    .deliver_echo_reply(&receiver, from, echo.ident, echo.seq, &echo.data);
            }
            icmp::IcmpPacket::TooBig { .. } => self.violate(format!(
                "wrote a packet too big to TUN for {receiver} that answers no packet from TUN"
            )),
            icmp::IcmpPacket::PortUnreachable {
                from,
                quoted_src,
                quoted_dst,
                ..
            } => {
                self.log(
                    &format!(
                        "tun -> {receiver} port unreachable from {} for {} -> {}",
                        self.addr(SocketAddr::new(from, 0)),
                        self.addr(quoted_src),
                        self.addr(quoted_dst)
                    ),
                    packet,
                );
                self.shared
                    .borrow_mut()
                    .deliver_port_unreachable(&receiver, own, from, quoted_src, quoted_dst);
            }
        }
    }
}

/// Service ids by mode.
pub const DIRECT_SERVICE: ServiceId = ServiceId::new(4);
/// Forward service `s` has id `FORWARD_SERVICE + s`.
pub const FORWARD_SERVICE: ServiceId = ServiceId::new(1);
/// The push service.
pub const PUSH_SERVICE: ServiceId = ServiceId::new(3);
/// The router service.
pub const ROUTER_SERVICE: ServiceId = ServiceId::new(5);

impl Io for SimIo {
    fn bind(&mut self, socket: SocketId, local: SocketAddr) -> Result<(), OpenFailed> {
        match ready(UdpSocket::bind(local)) {
            Ok(sock) => {
                self.log(
                    &format!("open {} bound to {local}", socket_name(socket)),
                    &[],
                );
                self.sockets.push(Sock {
                    id: socket,
                    sock,
                    remote: None,
                    echo: false,
                });
                Ok(())
            }
            Err(e) => self.open_failed(socket, e),
        }
    }

    fn connect(&mut self, socket: SocketId, remote: SocketAddr) -> Result<(), OpenFailed> {
        if !self.may_send_to(remote) {
            self.violate(format!(
                "asked for a socket connected to {}, which its configuration does not allow",
                self.addr(remote)
            ));
        }
        let any = self.shared.borrow().setup.unspecified();
        let port = match &mut self.free_ports {
            None => Some(0),
            Some(free) => free.pop(),
        };
        let opened = match port {
            Some(port) => ready(UdpSocket::bind((any, port))).and_then(|sock| {
                ready(sock.connect(remote))?;
                Ok(sock)
            }),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "the exit port pool is exhausted",
            )),
        };
        match opened {
            Ok(sock) => {
                let local = sock.local_addr().map(|a| a.port()).unwrap_or_default();
                self.log(
                    &format!(
                        "open {} :{local} connected to {}",
                        socket_name(socket),
                        self.addr(remote)
                    ),
                    &[],
                );
                self.sockets.push(Sock {
                    id: socket,
                    sock,
                    remote: Some(remote),
                    echo: false,
                });
                Ok(())
            }
            Err(e) => self.open_failed(socket, e),
        }
    }

    fn connect_echo(&mut self, socket: SocketId, remote: IpAddr) -> Result<(), OpenFailed> {
        if !self.may_echo(remote) {
            self.violate(format!(
                "asked for an ICMP echo socket to {}, which its configuration does not allow",
                self.addr(SocketAddr::new(remote, 0))
            ));
        }
        let any = self.shared.borrow().setup.unspecified();
        let to = SocketAddr::new(remote, ICMP_PORT);
        let opened = ready(UdpSocket::bind((any, 0))).and_then(|sock| {
            ready(sock.connect(to))?;
            Ok(sock)
        });
        match opened {
            Ok(sock) => {
                let local = sock.local_addr().map(|a| a.port()).unwrap_or_default();
                self.log(
                    &format!(
                        "open {} echo id {local} to {}",
                        socket_name(socket),
                        self.addr(SocketAddr::new(remote, 0))
                    ),
                    &[],
                );
                self.sockets.push(Sock {
                    id: socket,
                    sock,
                    remote: Some(to),
                    echo: true,
                });
                Ok(())
            }
            Err(e) => self.open_failed(socket, e),
        }
    }

    fn close(&mut self, socket: SocketId) {
        match self.sockets.iter().position(|s| s.id == socket) {
            Some(k) => {
                // Dropping a turmoil socket unbinds it; its pool port is
                // the next one handed out.
                let closed = self.sockets.swap_remove(k);
                if let (Some(free), Some(_)) = (&mut self.free_ports, closed.remote) {
                    if let Ok(local) = closed.sock.local_addr() {
                        free.push(local.port());
                    }
                }
                self.log(&format!("close {}", socket_name(socket)), &[]);
            }
            None => self.violate(format!(
                "asked to close {}, which is not open",
                socket_name(socket)
            )),
        }
    }

    fn send_link(&mut self, to: SocketAddr, datagram: &[u8]) {
        let padded;
        let datagram = match self.sabotage {
            Some(Sabotage::PaddedCookieReplies(n))
                if self.i == Y && frame_kind(datagram) == "cookie" =>
            {
                padded = [datagram, &vec![0; n]].concat();
                &padded[..]
            }
            _ => datagram,
        };
        let copies = if self.duplicate > 0.0
            && (self.rng.next_u64() as f64) < self.duplicate * u64::MAX as f64
        {
            2
        } else {
            1
        };
        for copy in 0..copies {
            let kind = frame_kind(datagram);
            let what = format!(
                "link -> {} {kind}({}){}",
                self.addr(to),
                datagram.len(),
                if copy > 0 { " again (duplicated)" } else { "" }
            );
            self.log(&what, datagram);
            if let Err(e) = self.link.try_send_to(datagram, to) {
                self.log(&format!("link send failed: {e}"), &[]);
            }
        }
    }

    fn send_customer(&mut self, socket: SocketId, to: Option<SocketAddr>, payload: &[u8]) {
        self.shared.borrow_mut().count(self.i, |c| c.outputs += 1);
        let Some(s) = self.sockets.iter().find(|s| s.id == socket) else {
            self.violate(format!(
                "output on {}, which is not open",
                socket_name(socket)
            ));
            self.shared
                .borrow_mut()
                .count(self.i, |c| c.send_failed += 1);
            return;
        };
        if s.echo {
            let remote = s.remote.map(|r| r.ip());
            let ident = s.sock.local_addr().map(|a| a.port()).unwrap_or_default();
            self.send_echo(socket, to, remote, ident, payload);
            return;
        }
        let dest = match (to, s.remote) {
            (Some(to), Some(remote)) if to != remote => {
                self.violate(format!(
                    "output to {} on a socket connected to {}",
                    self.addr(to),
                    self.addr(remote)
                ));
                to
            }
            (Some(to), _) => to,
            (None, Some(remote)) => remote,
            (None, None) => {
                self.violate(format!(
                    "output without a destination on unconnected {}",
                    socket_name(socket)
                ));
                self.shared
                    .borrow_mut()
                    .count(self.i, |c| c.send_failed += 1);
                return;
            }
        };
        if !self.may_send_to(dest) {
            self.violate(format!(
                "sent {} to {}, which its configuration does not allow",
                describe(payload),
                self.addr(dest)
            ));
        }
        self.log(
            &format!(
                "{} -> {} {}",
                socket_name(socket),
                self.addr(dest),
                describe(payload)
            ),
            payload,
        );
        self.outputs += 1;
        let mut dest = dest;
        let mut copies = 1;
        if self.i == X {
            match self.sabotage {
                Some(Sabotage::DeliverTwice) => copies = 2,
                Some(Sabotage::LoseOutputs) if self.outputs.is_multiple_of(10) => copies = 0,
                // Router mode misroutes through the entry's TUN device
                // instead (`write_tun`), so that requests reach the targets
                // and their answers come back to be misrouted.
                Some(Sabotage::Misroute) if self.mode != Mode::Router => {
                    let shared = self.shared.borrow();
                    let me = shared.names.get(&dest.ip()).cloned().unwrap_or_default();
                    let n: usize = me
                        .strip_prefix("alice-")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    let next = format!("alice-{}", (n + 1) % shared.setup.alices);
                    dest = SocketAddr::new(shared.ip(&next), dest.port());
                }
                _ => {}
            }
        }
        let mut sent = Ok(0);
        for _ in 0..copies {
            sent = s.sock.try_send_to(payload, dest);
        }
        if let Err(e) = sent {
            self.log(&format!("send failed: {e}"), &[]);
            self.shared
                .borrow_mut()
                .count(self.i, |c| c.send_failed += 1);
        }
    }

    fn write_tun(&mut self, service: ServiceId, packet: &[u8]) {
        if let Some(mtu) = self.tun_input {
            self.local_icmp_error(packet, mtu);
            return;
        }
        self.shared.borrow_mut().count(self.i, |c| c.outputs += 1);
        if !self.tun {
            self.violate(format!(
                "wrote a packet to TUN for service {service}, but it is not router mode's entry and has no TUN device"
            ));
        }
        let parsed = parse_udp(packet);
        if parsed == Err(sdt_core::ip::IpDrop::NotUdp) && self.tun {
            self.write_tun_icmp(service, packet);
            return;
        }
        let Ok(d) = parsed else {
            self.violate(format!(
                "wrote a packet to TUN of service {service} that does not parse: {parsed:?}"
            ));
            self.shared
                .borrow_mut()
                .count(self.i, |c| c.send_failed += 1);
            return;
        };
        let payload = &packet[d.payload.clone()];
        self.log(
            &format!(
                "tun -> {} from {} {}",
                self.addr(d.destination),
                self.addr(d.source),
                describe(payload)
            ),
            packet,
        );
        let mut receiver = self
            .shared
            .borrow()
            .tun_clients
            .get(&d.destination)
            .cloned();
        if self.sabotage == Some(Sabotage::Misroute) {
            // To the next client of the entry's TUN side instead.
            let shared = self.shared.borrow();
            let clients: Vec<&String> = shared.tun_clients.values().collect();
            receiver = receiver.map(|r| {
                let k = clients.iter().position(|c| **c == r).unwrap_or(0);
                clients[(k + 1) % clients.len()].clone()
            });
        }
        match receiver {
            Some(r) => self.shared.borrow_mut().deliver(&r, d.source, payload),
            None => {
                self.violate(format!(
                    "wrote a packet to TUN for {}, who is no client",
                    self.addr(d.destination)
                ));
                self.shared
                    .borrow_mut()
                    .count(self.i, |c| c.send_failed += 1);
            }
        }
    }

    fn event(&mut self, event: NodeEvent) {
        self.log(&format!("event {event:?}"), &[]);
    }

    fn dropped(&mut self, dropped: Dropped) {
        if core::mem::take(&mut self.result_drop_pending) {
            // Already counted and in the trace with the input that caused it.
            return;
        }
        self.log(&format!("dropped later ({dropped})"), &[]);
        self.shared
            .borrow_mut()
            .count(self.i, |c| c.service_dropped += 1);
    }
}

/// Index of a node's peer in its peer table.
pub const PEER: PeerId = PeerId(0);
