//! The daemon: one node, one mio event loop, no async runtime.
//!
//! [`Daemon::start`] does everything that can fail at start in the caller's
//! thread (bind the link socket, open TUN devices, bind every service's
//! socket, open the control socket) so that `sdt run` can report a bad start
//! with one line and a non-zero exit; then the loop runs on its own thread.
//!
//! The loop reads each ready socket a batch at a time (`recvmmsg`, GRO on
//! the link socket) into one reused receive batch whose slots have
//! [`HEADROOM`] and [`TAILROOM`], hands each datagram to the node, queues
//! what it sends and sends the turn's datagrams at its end (`sendmmsg`,
//! GSO); nothing is allocated per datagram (see the `udp` module and
//! docs/performance.md). A turn is one batch of at most `udp::BATCH`
//! messages, so a flood on one socket cannot starve the others, and a
//! lone datagram goes through at once: nothing waits for a batch to fill.

mod control;
mod droplog;
pub mod metrics;
mod reload;
mod resolve;
mod serve;
mod sockets;
mod sys;
pub mod tun;
// Batched socket I/O, not yet wired into the event loop (issue 11).
#[allow(dead_code)]
pub(crate) mod udp;

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use sdt_core::node::{ServiceId, HEADROOM, TAILROOM, TRANSMIT_BUFFER};
use sdt_core::Instant;
use tracing::{debug, info, warn};

use crate::build::{build_node, BuildError, DaemonNode};
use crate::config::Config;
use crate::status::{ChannelQuery, Channels, Status};
use sdt_core::node::{Dropped, Io, Output};
use sockets::{MioIo, Origin, PeerLog, SESSION};
use tun::{Tun, TunError, TunSetup};
use udp::{KernelDrops, Offloads, RecvBatch, SendBatch, SocketSetup};

pub use control::{
    query_channels, query_status, request_reload, BindError, ControlError, ANSWER_TIMEOUT,
    MAX_CLIENTS as MAX_CONTROL_CLIENTS, REQUEST_TIMEOUT, WRITE_TIMEOUT,
};
pub use sys::{open_file_limits, raise_open_file_limit_to};

const LINK: Token = Token(0);
const WAKER: Token = Token(1);
const SIGNALS: Token = Token(3);
const FIRST_TUN: usize = 16;

/// Messages one turn reads from the link socket with GRO on: each may carry
/// up to 64 datagrams, and 8 of them (up to 512 datagrams) are enough for
/// a full-speed burst while a flood on the link cannot hold the other
/// sockets off for long.
const LINK_GRO_MESSAGES: usize = 8;
/// The largest datagram read.
const MAX_DATAGRAM: usize = 65_535;

/// How often the loop looks at the peers for changes no event reports
/// (a session expired, a peer stale or answering again), to log them.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Stack of the loop thread: the node lives on the heap, but building and
/// moving it in a debug build goes through the stack.
pub(crate) const LOOP_STACK: usize = 64 << 20;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug)]
pub enum RunError {
    /// The link socket could not be bound.
    LinkSocket(SocketAddr, io::Error),
    /// A service's socket could not be opened (port in use, ...).
    ServiceSocket(ServiceId, String),
    /// A TUN device could not be opened.
    Tun(ServiceId, TunError),
    /// The control socket could not be served: the node refuses to run
    /// without it (`sdt status` could not reach it).
    ControlSocket(PathBuf, control::BindError),
    /// The metrics address (`metrics_listen`) could not be bound.
    Metrics(SocketAddr, io::Error),
    /// The node could not be built.
    Build(BuildError),
    /// The event loop failed.
    Poll(io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::LinkSocket(a, e) => write!(f, "cannot bind the link socket {a}: {e}"),
            RunError::ServiceSocket(id, why) => write!(f, "service {id}: {why}"),
            RunError::Tun(id, e) => write!(f, "service {id}: {e}"),
            RunError::ControlSocket(p, e) => {
                write!(f, "cannot serve the control socket {}: {e}", p.display())
            }
            RunError::Metrics(a, e) => {
                write!(f, "cannot serve metrics on {a} (metrics_listen): {e}")
            }
            RunError::Build(e) => write!(f, "{e}"),
            RunError::Poll(e) => write!(f, "event loop: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

/// How to run: what the command line or an embedding program decides.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Serve `sdt status` on the config's control socket; the start fails
    /// if it cannot be served.
    pub control_socket: bool,
    /// Stop on SIGINT and SIGTERM; reload the configuration file on SIGHUP
    /// (as `sdt reload` does, the outcome logged).
    pub handle_signals: bool,
}

/// A running node.
pub struct Daemon {
    thread: Option<JoinHandle<Result<(), RunError>>>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    requests: mpsc::SyncSender<control::Request>,
    link_addr: SocketAddr,
}

/// The loop's state.
struct Loop {
    node: Box<DaemonNode>,
    io: MioIo,
    poll: Poll,
    config: Config,
    clock: std::time::Instant,
    started: Instant,
    link_addr: SocketAddr,
    control: Option<control::Server>,
    /// The Prometheus metrics server, if `metrics_listen` is set (dropping
    /// it stops its thread).
    metrics: Option<metrics::Server>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    /// The way into the request queue and the loop's waker, for SIGHUP's
    /// reload thread.
    reload_requests: mpsc::SyncSender<control::Request>,
    waker: Arc<Waker>,
    /// The file the node was started with: what SIGHUP reloads (`sdt
    /// reload -c OTHER` does not change it).
    started_from: PathBuf,
    stop: Arc<AtomicBool>,
    /// Snapshot requests from the control thread and [`Daemon::status`].
    requests: mpsc::Receiver<control::Request>,
    /// Where every socket's datagrams are read, a batch at a time, and
    /// handled in place.
    rx: RecvBatch,
    /// What a turn sends, flushed once at its end: the datagrams it points
    /// at lie in `rx`. Room for every datagram of a full `rx` (GRO trains
    /// of up to 64 segments in each slot).
    tx: SendBatch,
    /// What the link socket got at start (buffers, GRO).
    link_setup: SocketSetup,
    /// Kernel drops on the link socket.
    link_drops: KernelDrops,
    scratch: Vec<u8>,
    /// Sockets still readable after their turn.
    pending: VecDeque<Token>,
    /// When to look at the peers next ([`Loop::watch_peers`]), on `clock`.
    next_watch: Duration,
    /// Endpoint names, looked up again off the loop.
    resolver: resolve::Resolver,
}

impl Daemon {
    /// Starts a node from `config`: everything that can fail at start fails
    /// here, with the reason. The node is built on the loop's own thread,
    /// whose stack is large enough for it in any build.
    pub fn start(config: Config, options: Options) -> Result<Daemon, RunError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (requests, rx) = mpsc::sync_channel(control::REQUEST_QUEUE);
        let (ready_tx, ready_rx) = mpsc::channel();
        let flag = stop.clone();
        let control_requests = requests.clone();
        let thread = std::thread::Builder::new()
            .name("sdt-node".into())
            .stack_size(LOOP_STACK)
            .spawn(
                move || match Loop::setup(config, options, flag, rx, control_requests) {
                    Ok((mut state, waker)) => {
                        let _ = ready_tx.send(Ok((waker, state.link_addr)));
                        state.run()
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(()));
                        Err(e)
                    }
                },
            )
            .map_err(RunError::Poll)?;
        match ready_rx.recv() {
            Ok(Ok((waker, link_addr))) => Ok(Daemon {
                thread: Some(thread),
                waker,
                stop,
                requests,
                link_addr,
            }),
            _ => Err(match thread.join() {
                Ok(Err(e)) => e,
                _ => RunError::Poll(io::Error::other("the node thread failed to start")),
            }),
        }
    }

    /// The link socket's address.
    pub fn link_addr(&self) -> SocketAddr {
        self.link_addr
    }

    /// The node's state now, or `None` if it stopped (or, never in
    /// practice, if the loop's bounded request queue is full: this never
    /// waits for room).
    pub fn status(&self) -> Option<Status> {
        match self.ask(control::Query::Status)? {
            control::Answer::Status(s) => Some(*s),
            _ => None,
        }
    }

    /// The services' open channels now, as `sdt status --channels` lists
    /// them; `None` as for [`Daemon::status`].
    pub fn channels(&self, query: ChannelQuery) -> Option<Channels> {
        match self.ask(control::Query::Channels(query))? {
            control::Answer::Channels(c) => Some(c),
            _ => None,
        }
    }

    /// Applies `config` as `sdt reload` does (the event loop's `Loop::reload`): the
    /// one-line summary, or why nothing changed. `None` as for
    /// [`Daemon::status`].
    pub fn reload(&self, config: Config) -> Option<Result<String, String>> {
        match self.ask(control::Query::Reload(Box::new(config)))? {
            control::Answer::Reload(r) => Some(r),
            _ => None,
        }
    }

    fn ask(&self, query: control::Query) -> Option<control::Answer> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.requests
            .try_send(control::Request { query, reply: tx })
            .ok()?;
        self.waker.wake().ok()?;
        rx.recv_timeout(Duration::from_secs(5)).ok()
    }

    /// Asks the loop to stop and waits for it.
    pub fn stop(mut self) -> Result<(), RunError> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        self.join()
    }

    /// Waits until the loop stops (on a signal, with `handle_signals`).
    pub fn wait(mut self) -> Result<(), RunError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), RunError> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(RunError::Poll(io::Error::other("the node thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop.store(true, Ordering::SeqCst);
            let _ = self.waker.wake();
            let _ = self.join();
        }
    }
}

impl Loop {
    /// Everything that can fail at start: sockets, TUN devices, the node.
    fn setup(
        config: Config,
        options: Options,
        stop: Arc<AtomicBool>,
        requests: mpsc::Receiver<control::Request>,
        control_requests: mpsc::SyncSender<control::Request>,
    ) -> Result<(Loop, Arc<Waker>), RunError> {
        let clock = std::time::Instant::now();
        let unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let started = Instant::from_nanos(0);
        let mut node = build_node(&config, started, unix_nanos).map_err(RunError::Build)?;
        let poll = Poll::new().map_err(RunError::Poll)?;
        let registry = poll.registry().try_clone().map_err(RunError::Poll)?;

        let listen = config.listen.unwrap_or_else(|| {
            let v6 = config
                .peers
                .iter()
                .any(|p| p.endpoint.is_some_and(|e| e.is_ipv6()));
            if v6 {
                SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
            } else {
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
            }
        });
        let std_link =
            std::net::UdpSocket::bind(listen).map_err(|e| RunError::LinkSocket(listen, e))?;
        std_link
            .set_nonblocking(true)
            .map_err(|e| RunError::LinkSocket(listen, e))?;
        let offloads = Offloads::probe();
        // GRO hands out a train of segments without headroom between them;
        // a router entry forges reply headers in front of the payload, which
        // needs headroom, so its node reads the link without GRO.
        let gro = !config
            .services
            .iter()
            .any(|s| s.mode == crate::config::Mode::Router && s.half != crate::config::Half::Exit);
        let link_setup = {
            use std::os::fd::AsRawFd;
            udp::prepare(
                std_link.as_raw_fd(),
                &offloads,
                gro,
                udp::BURST_SOCKET_BUFFER,
            )
            .map_err(|e| RunError::LinkSocket(listen, e))?
        };
        info!(
            "batched I/O: {}; link socket GRO {}, buffers {} KiB receive, {} KiB send{}",
            offloads.describe(),
            if link_setup.gro {
                "on"
            } else if gro {
                "unavailable"
            } else {
                "off (router entry)"
            },
            link_setup.recv_buffer >> 10,
            link_setup.send_buffer >> 10,
            if link_setup.forced { " (forced)" } else { "" },
        );
        let link_addr = std_link
            .local_addr()
            .map_err(|e| RunError::LinkSocket(listen, e))?;
        let mut link = UdpSocket::from_std(std_link);
        registry
            .register(&mut link, LINK, Interest::READABLE)
            .map_err(RunError::Poll)?;
        let names = config.peers.iter().map(|p| p.name.clone()).collect();
        let mut io = MioIo::new(registry, link, names, offloads);

        for (i, spec) in config.services.iter().enumerate() {
            if let Some(t) = &spec.tun {
                let l3_exit = spec.half == crate::config::Half::Exit;
                // L3 exits may share one device: it is opened for the first.
                let owner = io
                    .tuns
                    .iter()
                    .find(|(_, (_, tun))| tun.name() == t.name)
                    .map(|(id, _)| *id);
                if let Some(owner) = owner {
                    io.tun_owner.insert(spec.id, owner);
                    info!(
                        "service {}: shares TUN device {} with service {owner}",
                        spec.id, t.name
                    );
                    continue;
                }
                if l3_exit {
                    io.exit_tuns.insert(spec.id);
                    warn_unless_forwarding(spec);
                }
                let mtu = t
                    .mtu
                    .or_else(|| node.router_packet_mtu(spec.id))
                    .unwrap_or(sdt_core::mtu::DEFAULT_LINK_MTU);
                let tun = Tun::open(TunSetup {
                    name: &t.name,
                    address: t.address,
                    routes: &t.routes,
                    mtu,
                    offload: t.offload.unwrap_or(crate::config::DEFAULT_TUN_OFFLOAD),
                })
                .map_err(|e| RunError::Tun(spec.id, e))?;
                let token = Token(FIRST_TUN + i);
                tun.register(poll.registry(), token)
                    .map_err(RunError::Poll)?;
                info!(
                    "service {}: TUN device {} up, MTU {mtu}, offloads {}{}",
                    spec.id,
                    tun.name(),
                    tun.offload(),
                    if tun.routes().is_empty() {
                        String::new()
                    } else {
                        let routes: Vec<String> =
                            tun.routes().iter().map(ToString::to_string).collect();
                        format!(", routes {}", routes.join(" "))
                    }
                );
                io.tuns.insert(spec.id, (token, tun));
            }
        }

        // Bind every service socket now, so a port in use stops the start.
        let mut scratch = vec![0u8; TRANSMIT_BUFFER];
        node.flush(&mut io, started, &mut scratch);
        if let Some((id, why)) = io.service_open_errors.first() {
            return Err(RunError::ServiceSocket(*id, why.clone()));
        }
        io.starting = false;
        // Links the node keeps up (core's liveness rule) start now.
        node.flush(&mut io, started, &mut scratch);

        // Each exit channel owns a socket, and an ended one keeps it while
        // its port is held (core's exit port rule), up to the channel
        // table's capacity of live and held channels together.
        let exit_sockets: usize = config
            .services
            .iter()
            .filter(|s| s.half == crate::config::Half::Exit)
            .map(|s| {
                if s.port_hold.is_zero() {
                    usize::from(s.max_channels)
                } else {
                    crate::build::CHANNELS
                }
            })
            .sum::<usize>()
            .min(crate::build::CHANNELS);
        // Echo flows need ICMP datagram sockets, which the kernel grants by
        // group: say so at start rather than at the first ping.
        for spec in config.services.iter().filter(|s| {
            s.exit == crate::config::RouterExit::Socket && s.allow.iter().any(|r| r.is_icmp())
        }) {
            let probe = spec
                .allow
                .iter()
                .find(|r| r.is_icmp())
                .map(|r| r.network())
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
            if let Err(e) = sockets::open_echo_socket(probe) {
                warn!(
                    "service {}: its icmp:// allow rules cannot be served: {e}; each ping \
                     through it will be dropped as socket_failed",
                    spec.id
                );
            }
        }
        if exit_sockets > 0 {
            let files = sys::raise_open_file_limit();
            let effective = exit_sockets.min(files.saturating_sub(64));
            info!(
                "open file limit {files}: exit sockets (live channels and held ports) \
                 limited to {effective} (up to {exit_sockets} wanted)"
            );
            if effective < exit_sockets {
                warn!(
                    "exit channels beyond {effective} sockets will be dropped (socket_failed) \
                     for lack of file descriptors"
                );
            }
        }

        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(RunError::Poll)?);
        let control = match config
            .control_socket
            .as_ref()
            .filter(|_| options.control_socket)
        {
            Some(path) => {
                let group = config.control_group.as_ref().map(|g| g.gid);
                let server =
                    control::Server::start(path, group, control_requests.clone(), waker.clone())
                        .map_err(|e| RunError::ControlSocket(path.clone(), e))?;
                Some(server)
            }
            None => None,
        };
        let metrics = match config.metrics_listen {
            Some(addr) => Some(
                metrics::Server::start(addr, control_requests.clone(), waker.clone())
                    .map_err(|e| RunError::Metrics(addr, e))?,
            ),
            None => None,
        };
        let signals = if options.handle_signals {
            let mut s =
                signal_hook_mio::v1_0::Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
                    .map_err(RunError::Poll)?;
            poll.registry()
                .register(&mut s, SIGNALS, Interest::READABLE)
                .map_err(RunError::Poll)?;
            Some(s)
        } else {
            None
        };

        info!(
            "listening on {link_addr}, public key {}",
            config.private_key.public_key()
        );
        let started_from = config.path.clone();
        for spec in &config.services {
            info!(
                service = spec.id.get(),
                "{}: started",
                service_label(&config, spec)
            );
        }
        let resolver = resolve::Resolver::new(&config, link_addr, waker.clone(), started);
        for n in resolver.names() {
            match n.resolved {
                Some(a) => {
                    info!(target: SESSION, peer = n.peer, "peer {}: endpoint {} resolves to {a}", n.peer, n.text)
                }
                None => warn!(
                    target: SESSION,
                    peer = n.peer,
                    "peer {}: endpoint {} does not resolve yet; trying again every {} s",
                    n.peer,
                    n.text,
                    resolve::RETRY_UNRESOLVED.as_secs()
                ),
            }
        }
        let state = Loop {
            node,
            io,
            poll,
            config,
            clock,
            started,
            link_addr,
            control,
            metrics,
            signals,
            reload_requests: control_requests,
            waker: waker.clone(),
            started_from,
            stop,
            requests,
            rx: RecvBatch::new(udp::BATCH, HEADROOM, MAX_DATAGRAM, TAILROOM, link_setup.gro),
            tx: SendBatch::new(udp::BATCH * udp::MAX_GSO_SEGMENTS, &offloads),
            link_setup,
            link_drops: KernelDrops::default(),
            scratch,
            pending: VecDeque::new(),
            next_watch: Duration::ZERO,
            resolver,
        };
        Ok((state, waker))
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.clock.elapsed().as_nanos() as u64)
    }

    fn run(&mut self) -> Result<(), RunError> {
        let mut events = Events::with_capacity(256);
        loop {
            if self.stop.load(Ordering::SeqCst) {
                info!("stopping");
                self.io.flush_drop_log();
                for spec in &self.config.services {
                    info!(service = spec.id.get(), "service {}: stopped", spec.id);
                }
                return Ok(());
            }
            let now = self.now();
            let timeout = if self.pending.is_empty() {
                // The node's timers, the next look at the peers, the end of
                // a drop log window holding a summary, and the next lookup
                // of an endpoint name.
                let watch = self.next_watch.saturating_sub(self.clock.elapsed());
                let node = self.node.poll_timeout().map(|t| t.saturating_since(now));
                let log = self.io.log_timeout();
                let resolve = self
                    .resolver
                    .poll_timeout()
                    .map(|t| t.saturating_since(now));
                Some(
                    [node, log, resolve]
                        .into_iter()
                        .flatten()
                        .fold(watch, Duration::min),
                )
            } else {
                Some(Duration::ZERO)
            };
            // Nothing waits for coalescing while the loop sleeps.
            self.io.flush_tuns();
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(RunError::Poll(e)),
            }
            for event in events.iter() {
                if !self.pending.contains(&event.token()) {
                    self.pending.push_back(event.token());
                }
            }
            for _ in 0..self.pending.len() {
                let Some(token) = self.pending.pop_front() else {
                    break;
                };
                if self.serve(token) {
                    self.pending.push_back(token);
                }
            }
            let now = self.now();
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
                self.node.flush(&mut self.io, now, &mut self.scratch);
                self.io.bury();
            }
            if self.clock.elapsed() >= self.next_watch {
                self.next_watch = self.clock.elapsed() + WATCH_INTERVAL;
                self.watch_peers(self.now());
            }
            self.io.expire_drop_log();
            self.resolve_due(now);
        }
    }

    /// Starts the lookups of endpoint names that are due: by the
    /// resolver's clock, and those core found stale this iteration.
    fn resolve_due(&mut self, now: Instant) {
        for peer in std::mem::take(&mut self.io.stale_endpoints) {
            if let Some(name) = self.io.peer_names.get(usize::from(peer.0)) {
                self.resolver.stale(name);
            }
        }
        if self.resolver.poll_timeout().is_some_and(|t| t <= now) {
            self.resolver.start_due(now);
        }
    }

    /// Gives core the addresses of the lookups that finished, and logs
    /// what changed or failed.
    fn apply_resolved(&mut self) {
        let now = self.now();
        let outcomes = self.resolver.finished(now);
        if outcomes.is_empty() {
            return;
        }
        for outcome in outcomes {
            match outcome {
                resolve::Outcome::Resolved {
                    peer,
                    text,
                    address,
                    was,
                    apply,
                } => {
                    let id = self.io.peer_names.iter().position(|n| *n == peer);
                    let moved = match id {
                        Some(i) if apply => {
                            self.node
                                .set_endpoint(sdt_core::link::PeerId(i as u16), address, now)
                        }
                        _ => false,
                    };
                    match was {
                        Some(w) if w != address => {
                            info!(target: SESSION, peer, "peer {peer}: endpoint {text} now resolves to {address} (was {w})")
                        }
                        None => {
                            info!(target: SESSION, peer, "peer {peer}: endpoint {text} resolves to {address}")
                        }
                        Some(_) if moved => info!(
                            target: SESSION,
                            peer,
                            "peer {peer}: endpoint {text} still resolves to {address}; sending there again"
                        ),
                        Some(_) => {
                            debug!(target: SESSION, peer, "peer {peer}: endpoint {text} still resolves to {address}")
                        }
                    }
                }
                resolve::Outcome::Failed {
                    peer,
                    text,
                    why,
                    failures,
                } => {
                    let keep = self
                        .resolver
                        .name_of(&peer)
                        .and_then(|n| n.resolved)
                        .map_or_else(|| "no address yet".to_owned(), |a| format!("keeping {a}"));
                    warn!(target: SESSION, peer, "peer {peer}: cannot resolve endpoint {text}: {why}; {keep} ({failures} failed lookups)");
                }
            }
        }
        self.node.flush(&mut self.io, now, &mut self.scratch);
        self.io.bury();
    }

    /// Serves one ready token for one turn; true if it may have more.
    fn serve(&mut self, token: Token) -> bool {
        match token {
            LINK => self.batch(Self::read_link),
            WAKER => {
                let mut reloads = Vec::new();
                control::answer_requests(
                    &self.requests,
                    || self.status(),
                    |q| self.channels(q),
                    |config, reply| reloads.push((config, reply)),
                );
                for (config, reply) in reloads {
                    let answer = self.reload(*config);
                    // The slot is empty; a client that gave up has gone.
                    let _ = reply.try_send(control::Answer::Reload(answer));
                }
                self.apply_resolved();
                false
            }
            SIGNALS => {
                let mut hup = false;
                if let Some(s) = &mut self.signals {
                    for signal in s.pending() {
                        if signal == libc::SIGHUP {
                            hup = true;
                        } else {
                            info!("signal {signal} received: stopping");
                            self.stop.store(true, Ordering::SeqCst);
                        }
                    }
                }
                if hup {
                    self.reload_on_hangup();
                }
                false
            }
            t if t.0 >= sockets::FIRST_CUSTOMER_TOKEN => self.batch(|l| l.read_customer(t)),
            t => self.batch(|l| l.read_tun(t)),
        }
    }

    /// Runs one socket's turn, a batch of up to [`udp::BATCH`] messages
    /// each handled on its own, then flushes the node once for the batch
    /// (handshakes, keepalives, events the batch caused).
    fn batch(&mut self, turn: impl FnOnce(&mut Self) -> bool) -> bool {
        let more = turn(self);
        self.send_batch();
        let now = self.now();
        self.node.flush(&mut self.io, now, &mut self.scratch);
        self.io.flush_tuns();
        self.io.bury();
        self.io.origin = Origin::None;
        more
    }

    /// Logs each peer whose session expired, that went stale (sent to and
    /// not answering, though its session's keys are valid) or that answers
    /// again: the changes no event reports, looked for every
    /// [`WATCH_INTERVAL`].
    fn watch_peers(&mut self, now: Instant) {
        let link = self.node.link();
        self.io
            .peer_log
            .resize(link.peer_count(), PeerLog::default());
        for (i, was) in self.io.peer_log.iter_mut().enumerate() {
            let id = sdt_core::link::PeerId(i as u16);
            let Some(p) = link.peer(id, now).filter(|_| !link.is_retired(id)) else {
                *was = PeerLog::default();
                continue;
            };
            let name = self.io.peer_names.get(i).map_or("?", String::as_str);
            let heard = || match p.last_received {
                Some(t) => format!(
                    "last heard {:.1} s ago",
                    now.saturating_since(t).as_secs_f64()
                ),
                None => "never heard".to_owned(),
            };
            if was.up && !p.session_up {
                info!(
                    target: SESSION,
                    peer = name,
                    "peer {name}: session down: its keys expired with no new handshake ({})",
                    heard()
                );
            }
            if p.session_up && p.overdue && !was.stale {
                info!(
                    target: SESSION,
                    peer = name,
                    "peer {name}: stale: sent to and not answering ({}); the session is kept \
                     until its keys expire",
                    heard()
                );
            } else if was.stale && p.session_up && !p.overdue {
                info!(target: SESSION, peer = name, "peer {name}: answers again");
            }
            was.up = p.session_up;
            was.stale = p.session_up && p.overdue;
        }
    }

    /// Sends what the turn queued, from the buffer it was handled in.
    fn send_batch(&mut self) {
        if self.tx.is_empty() {
            return;
        }
        let stats = self.tx.flush(self.rx.buffer());
        let failed = stats.queue_full + stats.errors + stats.bad_range;
        self.io.send_errors += failed as u64;
        if let Some(f) = self.tx.failures().first() {
            self.io
                .log_send_failures(self.tx.failures().len(), f.fd, &f.why);
        }
        // A send that picked up an earlier ICMP port unreachable of its
        // connected socket: the target refused (and this datagram is lost,
        // counted above as a send error).
        let refused: Vec<std::os::fd::RawFd> = self
            .tx
            .failures()
            .iter()
            .filter(|f| f.why == udp::SendFailure::Error(libc::ECONNREFUSED))
            .map(|f| f.fd)
            .collect();
        if !refused.is_empty() {
            let now = self.now();
            for fd in refused {
                if let Some(socket) = self.io.customer_of_fd(fd) {
                    let buf = &mut self.scratch;
                    self.io.origin = Origin::Customer(socket, None);
                    let r = self.node.handle_target_refused(now, socket, buf);
                    self.node.carry_out(&mut self.io, buf, r);
                }
            }
        }
    }

    fn channels(&self, query: ChannelQuery) -> Channels {
        Channels::collect(&self.node, &self.config, self.now(), query, |id| {
            self.io.channel_local_addr(id)
        })
    }

    fn status(&self) -> Status {
        let mut s = Status::collect(
            &self.node,
            &self.config,
            Some(self.link_addr),
            self.started,
            self.now(),
            self.io.send_errors,
        );
        if let Some(c) = &self.control {
            s.control_refused = c.stats().refused.load(Ordering::Relaxed);
            s.control_timeouts = c.stats().timeouts.load(Ordering::Relaxed);
        }
        if let Some(m) = &self.metrics {
            s.metrics_listen = Some(m.addr());
            s.metrics_refused = m.stats().refused.load(Ordering::Relaxed);
            s.metrics_timeouts = m.stats().timeouts.load(Ordering::Relaxed);
        }
        let now = self.now();
        for peer in &mut s.peers {
            if let Some(n) = self.resolver.name_of(&peer.name) {
                peer.endpoint_name = Some(n.text.clone());
                peer.resolved = n.resolved;
                peer.resolved_secs_ago =
                    n.resolved_at.map(|t| now.saturating_since(t).as_secs_f64());
                peer.resolve_failures = n.failures;
                peer.resolve_changes = n.changes;
            }
        }
        for service in &mut s.services {
            let owner = self.io.tun_owner.get(&service.id).unwrap_or(&service.id);
            if let Some((_, tun)) = self.io.tuns.get(owner) {
                service.tun = Some(crate::status::TunState {
                    name: tun.name().to_owned(),
                    mtu: tun.mtu(),
                    routes: tun.routes().iter().map(ToString::to_string).collect(),
                    offload: tun.offload().to_owned(),
                    super_packets: tun.super_packets(),
                    coalesced: tun.coalesced(),
                    offload_drops: tun
                        .offload_drops()
                        .into_iter()
                        .map(|(r, n)| (r.to_owned(), n))
                        .collect(),
                });
            }
        }
        let (services, channels) = self.io.kernel_drops();
        s.data_path = crate::status::DataPath {
            offloads: self.io.offloads.describe(),
            link_gro: self.link_setup.gro,
            gso: self.tx.gso(),
            link_recv_buffer: self.link_setup.recv_buffer,
            link_send_buffer: self.link_setup.send_buffer,
            buffers_forced: self.link_setup.forced,
            kernel_drops_link: self.link_drops.total(),
            kernel_drops_services: services,
            kernel_drops_channels: channels,
            truncated: self.rx.truncated(),
        };
        s
    }

    /// Reads the link socket: one batch of up to [`udp::BATCH`] messages (GRO trains split into their datagrams),
    /// each datagram opened in place.
    fn read_link(&mut self) -> bool {
        let fd = {
            use std::os::fd::AsRawFd;
            self.io.link.as_raw_fd()
        };
        let limit = if self.link_setup.gro {
            LINK_GRO_MESSAGES
        } else {
            udp::BATCH
        };
        match self.rx.recv_at_most(fd, limit) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) => {
                self.io
                    .log_socket_error(tracing::Level::DEBUG, "the link socket", &e);
                return false;
            }
        }
        if let Some(counter) = self.rx.drop_counter() {
            self.link_drops.observe(counter);
        }
        let now = self.now();
        let stride = self.rx.stride();
        // A short read emptied the queue: the socket is drained, and mio's
        // edge-triggered readiness reports the next datagram when it comes.
        // A full one may have left more: the socket goes back in line (a
        // turn each, so a flood on one socket cannot starve the others).
        let more = self.rx.messages() == limit;
        while let Some(d) = self.rx.next_datagram() {
            // The node sees only the room this datagram may use: a segment
            // of a GRO train cannot touch its neighbours.
            let base = d.slot_index * stride + d.room.start;
            let room = &mut d.slot[d.room.clone()];
            let range = d.range.start - d.room.start..d.range.end - d.room.start;
            self.io.origin = Origin::Link(d.from);
            let r = self.node.handle_link_datagram(now, d.from, room, range);
            emit(
                now,
                &mut self.node,
                &mut self.io,
                &mut self.tx,
                room,
                base,
                r,
            );
            if self.node.needs_flush() {
                // Handshake messages and cookie replies go from `scratch`,
                // not from the batch: the queued sends are untouched.
                self.node.flush(&mut self.io, now, &mut self.scratch);
            }
            if self.tx.len() >= udp::BATCH {
                // A GRO turn holds up to 512 datagrams: send them in
                // bursts of one batch, so that a customer socket's receive
                // queue (212 KB by default, about 90 full-sized datagrams)
                // is not handed them all at once.
                self.send_batch();
            }
        }
        more
    }

    /// Reads a customer socket: one batch of up to [`udp::BATCH`]
    /// datagrams, each sealed in place in its slot.
    fn read_customer(&mut self, token: Token) -> bool {
        let Some(&socket) = self.io.tokens.get(&token) else {
            return false;
        };
        let Some((fd, _)) = self.io.customer_fd(socket) else {
            return false;
        };
        match self.rx.recv(fd) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) => {
                // ICMP port unreachable from a connected socket's target:
                // the error is consumed; datagrams may follow. Counted as
                // target_unreachable, and the entry is told.
                self.io
                    .log_socket_error(tracing::Level::DEBUG, sockets::SocketName(socket), &e);
                if e.raw_os_error() == Some(libc::ECONNREFUSED) {
                    let now = self.now();
                    let buf = &mut self.scratch;
                    self.io.origin = Origin::Customer(socket, None);
                    let r = self.node.handle_target_refused(now, socket, buf);
                    self.node.carry_out(&mut self.io, buf, r);
                }
                return true;
            }
        }
        if let Some(counter) = self.rx.drop_counter() {
            if let Some(c) = self.io.customers.get_mut(&socket) {
                c.kernel_drops.observe(counter);
            }
        }
        let now = self.now();
        let stride = self.rx.stride();
        // A short read emptied the queue: the socket is drained, and mio's
        // edge-triggered readiness reports the next datagram when it comes.
        // A full one may have left more: the socket goes back in line (a
        // turn each, so a flood on one socket cannot starve the others).
        let more = self.rx.messages() == self.rx.slots();
        while let Some(d) = self.rx.next_datagram() {
            let base = d.slot_index * stride;
            self.io.origin = Origin::Customer(socket, Some(d.from));
            let r = self
                .node
                .handle_customer_datagram(now, socket, d.from, d.slot, d.range);
            emit(
                now,
                &mut self.node,
                &mut self.io,
                &mut self.tx,
                d.slot,
                base,
                r,
            );
        }
        more
    }

    /// Reads a router entry's TUN device: up to [`udp::BATCH`] packets into
    /// the slots of the receive batch, each sealed in place.
    fn read_tun(&mut self, token: Token) -> bool {
        let Some(service) = self
            .io
            .tuns
            .iter()
            .find(|(_, (t, _))| *t == token)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        let stride = self.rx.stride();
        let headroom = self.rx.headroom();
        for i in 0..self.rx.slots() {
            let now = self.now();
            let (Some((_, tun)), Some(slot)) =
                (self.io.tuns.get_mut(&service), self.rx.slot_mut(i))
            else {
                return false;
            };
            let len = match tun.read(&mut slot[headroom..headroom + MAX_DATAGRAM]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    let what = format_args!("the TUN device of service {service}");
                    self.io.log_socket_error(tracing::Level::WARN, what, &e);
                    return false;
                }
            };
            self.io.origin = Origin::Tun(service);
            let packet = headroom..headroom + len;
            let r = if self.io.exit_tuns.contains(&service) {
                self.node.handle_exit_tun_packet(now, slot, packet)
            } else {
                self.node.handle_tun_packet(now, service, slot, packet)
            };
            emit(
                now,
                &mut self.node,
                &mut self.io,
                &mut self.tx,
                slot,
                i * stride,
                r,
            );
        }
        true
    }
}

/// An L3 exit hands its packets to the kernel to route: say so at start if
/// this namespace does not forward them.
fn warn_unless_forwarding(spec: &crate::config::ServiceSpec) {
    for (family, path) in [
        ("IPv4", "/proc/sys/net/ipv4/ip_forward"),
        ("IPv6", "/proc/sys/net/ipv6/conf/all/forwarding"),
    ] {
        let on = std::fs::read_to_string(path).is_ok_and(|v| v.trim() != "0");
        if !on {
            warn!(
                "service {}: {family} forwarding is off ({path} is 0): the L3 exit's {family} \
                 packets reach only this host; set it to 1 to route them on",
                spec.id
            );
        }
    }
}

/// Acts on what the node made of one datagram held in `slot`, which lies
/// at `base` in the receive batch's buffer: socket requests at once, then
/// sends queued in `tx` for the end of the turn, TUN writes at once, drops
/// to the log. As [`sdt_core::node::Node::carry_out`] does, but batched.
fn emit(
    now: Instant,
    node: &mut DaemonNode,
    io: &mut MioIo,
    tx: &mut SendBatch,
    slot: &[u8],
    base: usize,
    result: Result<Output, Dropped>,
) {
    use std::os::fd::AsRawFd;
    node.apply_actions(io);
    let queued = match result {
        Ok(Output::Link { to, range }) => tx.push(
            io.link.as_raw_fd(),
            Some(to),
            base + range.start..base + range.end,
        ),
        Ok(Output::Customer { socket, to, range }) => match io.customer_fd(socket) {
            Some((fd, connected)) => tx.push(
                fd,
                if connected { None } else { to },
                base + range.start..base + range.end,
            ),
            None => {
                io.send_errors += 1;
                Ok(())
            }
        },
        Ok(Output::Tun { service, range }) => {
            io.write_tun(service, &slot[range]);
            Ok(())
        }
        Ok(Output::Consumed | Output::Queued) => Ok(()),
        Err(dropped) => {
            io.log_drop(dropped, |from| peer_at(node, from, now));
            Ok(())
        }
    };
    if queued.is_err() {
        // Cannot happen: the batch has room for every datagram of a full
        // receive batch. Counted rather than trusted.
        io.send_errors += 1;
    }
}

/// The peer whose endpoint is `from`, for a drop line.
fn peer_at(node: &DaemonNode, from: SocketAddr, now: Instant) -> Option<usize> {
    let link = node.link();
    (0..link.peer_count()).find(|&i| {
        let id = sdt_core::link::PeerId(i as u16);
        !link.is_retired(id) && link.peer(id, now).and_then(|p| p.endpoint) == Some(from)
    })
}

/// A service as its start line names it: `service 1 (forward entry, peer
/// y, listening on 127.0.0.1:5353)`.
fn service_label(config: &Config, spec: &crate::config::ServiceSpec) -> String {
    use std::fmt::Write as _;
    let peer = match spec.peer {
        crate::config::PeerRef::Named(i) => config.peers.get(i).map_or("?", |p| p.name.as_str()),
        crate::config::PeerRef::Any => "any peer",
    };
    let mut t = format!(
        "service {} ({} {}, peer {peer}",
        spec.id,
        spec.mode.as_str(),
        spec.half.as_str()
    );
    if let Some(l) = spec.listen {
        let _ = write!(t, ", listening on {l}");
    }
    if let Some(a) = spec.target {
        let _ = write!(t, ", target {a}");
    }
    if let Some(tun) = &spec.tun {
        let _ = write!(t, ", TUN device {}", tun.name);
    }
    if !spec.allow.is_empty() {
        let _ = write!(t, ", {} allow rules", spec.allow.len());
    }
    t.push(')');
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A node with a service of each kind that binds nothing at start.
    fn config() -> Config {
        let text = "\
            private_key = \"PK3Mg5mtzaZg01iHo6jetW2iRmGw8wcq3R62VpY3V18=\"
            listen = \"127.0.0.1:0\"
            [[peer]]
            name = \"y\"
            public_key = \"ilBDt2h5t5o+gVqwZl1rAVIey7RR5X1XgsRZOIHSCFw=\"
            [[service]]
            id = 1
            peer = \"y\"
            mode = \"forward\"
            target = \"127.0.0.1:9\"
        ";
        Config::parse(text, Path::new("/nonexistent/x.toml")).unwrap()
    }

    /// `sdt run` starts the daemon on the main thread: starting must not
    /// need the node's size in stack (it overflowed in debug builds).
    #[test]
    fn starts_from_a_thread_with_a_small_stack() {
        let started = std::thread::Builder::new()
            .stack_size(512 << 10)
            .spawn(|| {
                let daemon = Daemon::start(config(), Options::default()).unwrap();
                let status = daemon.status().expect("a running node answers");
                assert_eq!(status.services.len(), 1);
                daemon.stop().unwrap();
            })
            .unwrap()
            .join();
        assert!(started.is_ok());
    }
}
