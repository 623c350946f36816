//! The daemon's half of the node contract: [`sdt_core::node::Io`] over mio
//! UDP sockets and TUN devices.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use sdt_core::link::LinkEvent;
use sdt_core::node::{Dropped, Io, NodeEvent, OpenFailed, ServiceDrop, ServiceId, SocketId};
use tracing::{debug, error, info, warn};

use super::droplog::{self, DropLog, Limiter, WINDOW};
use super::tun::Tun;
use super::udp::{self, KernelDrops, Offloads};

/// Tokens from here on name customer sockets; below are the daemon's own.
pub const FIRST_CUSTOMER_TOKEN: usize = 1024;

/// Socket buffer asked for on an exit channel's socket: one client's
/// traffic, and there may be thousands of them.
const CHANNEL_SOCKET_BUFFER: usize = 256 << 10;

/// The log target of session changes: logged at info by `sdt run` by
/// default (docs/logging.md).
pub const SESSION: &str = "sdt::session";
/// The log target of rekeys: at info, but not by default (one every two
/// minutes per peer).
pub const REKEY: &str = "sdt::session::rekey";
/// The log target of drops: the first of each reason at info (by
/// default), the rest at debug, rate limited ([`droplog`]).
pub const DROP: &str = "sdt::drop";

/// Where the datagram being handled came from, as far as drop lines are
/// concerned: set by the loop before each one is handled (a copy, no
/// allocation).
#[derive(Debug, Clone, Copy, Default)]
pub enum Origin {
    /// No datagram (timers, reloads).
    #[default]
    None,
    /// From the link socket, from this address.
    Link(SocketAddr),
    /// From a customer socket, from this address if known.
    Customer(SocketId, Option<SocketAddr>),
    /// From a router entry's TUN device, of this service.
    Tun(ServiceId),
}

/// What the log last said of a peer's session, by peer id.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerLog {
    /// Its session is up.
    pub up: bool,
    /// It was sent to and does not answer, its session up.
    pub stale: bool,
}

/// A customer socket as log lines name it: `service 1 socket`, `exit
/// channel socket (slot 3)`.
pub struct SocketName(pub SocketId);

impl std::fmt::Display for SocketName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            SocketId::Service(id) => write!(f, "service {id} socket"),
            SocketId::Channel(c) => write!(f, "exit channel socket (slot {})", c.slot()),
        }
    }
}

/// A customer socket.
#[derive(Debug)]
pub struct Customer {
    pub token: Token,
    pub socket: UdpSocket,
    pub connected: bool,
    /// Datagrams the kernel dropped on this socket (its receive queue was
    /// full), from `SO_RXQ_OVFL`.
    pub kernel_drops: KernelDrops,
}

/// The daemon's sockets and devices, as the node sees them.
pub struct MioIo {
    registry: Registry,
    pub link: UdpSocket,
    pub customers: HashMap<SocketId, Customer>,
    pub tokens: HashMap<Token, SocketId>,
    next_token: usize,
    /// Router entries' and L3 exits' TUN devices, by the id of the service
    /// that opened them, with their tokens.
    pub tuns: HashMap<ServiceId, (Token, Tun)>,
    /// L3 exits sharing another service's TUN device: the id of the
    /// service in `tuns` that holds it.
    pub tun_owner: HashMap<ServiceId, ServiceId>,
    /// Services in `tuns` that are L3 exits (their packets go to
    /// `Node::handle_exit_tun_packet`).
    pub exit_tuns: std::collections::HashSet<ServiceId>,
    /// Names of the peers, by peer id, for logs.
    pub peer_names: Vec<String>,
    /// Datagrams that could not be sent.
    pub send_errors: u64,
    /// What the kernel offers for batched I/O, found at start.
    pub offloads: Offloads,
    /// Kernel drops on exit channel sockets already closed.
    pub closed_channel_drops: u64,
    /// Service sockets that could not be opened: (service, why).
    pub service_open_errors: Vec<(ServiceId, String)>,
    /// While the daemon starts, a service socket that cannot be opened is
    /// only recorded: the start fails and reports it in one line.
    pub starting: bool,
    /// The drop log's rate limit, and the clock it reads.
    drop_log: DropLog,
    log_clock: std::time::Instant,
    /// The rate limits of the failed-send and failed-channel-socket lines.
    send_log: Limiter,
    open_log: Limiter,
    /// The rate limit of receive errors (a refusing target fails a read
    /// per datagram sent to it).
    recv_log: Limiter,
    /// Where the datagram being handled came from, for drop lines.
    pub origin: Origin,
    /// What the log last said of each peer's session, by peer id.
    pub peer_log: Vec<PeerLog>,
    /// Sockets the node closed during the current turn, kept open until the
    /// turn's sends are out ([`MioIo::bury`]): a batched send still names
    /// their file descriptors, and a descriptor closed early could be
    /// reused by a new socket within the turn, so a datagram would leave
    /// from another customer's socket.
    graveyard: Vec<Customer>,
    /// Close sockets at once instead of at the turn's end: only while a
    /// reload is applied, when no send is queued.
    pub close_at_once: bool,
    /// Peers whose endpoint core reported stale since the loop last
    /// looked ([`LinkEvent::EndpointStale`]): their names are looked up
    /// again.
    pub stale_endpoints: Vec<sdt_core::link::PeerId>,
}

impl MioIo {
    pub fn new(
        registry: Registry,
        link: UdpSocket,
        peer_names: Vec<String>,
        offloads: Offloads,
    ) -> Self {
        MioIo {
            offloads,
            closed_channel_drops: 0,
            registry,
            link,
            customers: HashMap::new(),
            tokens: HashMap::new(),
            next_token: FIRST_CUSTOMER_TOKEN,
            tuns: HashMap::new(),
            tun_owner: HashMap::new(),
            exit_tuns: std::collections::HashSet::new(),
            peer_names,
            send_errors: 0,
            service_open_errors: Vec::new(),
            starting: true,
            graveyard: Vec::new(),
            close_at_once: false,
            drop_log: DropLog::default(),
            send_log: Limiter::default(),
            open_log: Limiter::default(),
            recv_log: Limiter::default(),
            log_clock: std::time::Instant::now(),
            origin: Origin::None,
            peer_log: Vec::new(),
            stale_endpoints: Vec::new(),
        }
    }

    /// A drop of `dropped`, from [`MioIo::origin`], to the log: the
    /// first of its reason at info, later ones at debug under the
    /// [`droplog`] rule. `peer_at` names the peer whose endpoint an
    /// address is (called only for a line that is logged). A suppressed
    /// drop costs a few comparisons and no allocation; below debug, none is
    /// even timed.
    pub fn log_drop(
        &mut self,
        dropped: Dropped,
        peer_at: impl FnOnce(SocketAddr) -> Option<usize>,
    ) {
        if !tracing::enabled!(target: DROP, tracing::Level::DEBUG) {
            if tracing::enabled!(target: DROP, tracing::Level::INFO) && self.drop_log.first(dropped)
            {
                self.drop_line(dropped, true, peer_at);
            }
            return;
        }
        let hit = self.drop_log.hit(dropped, self.log_clock.elapsed());
        if let Some(n) = hit.summary {
            summary_line(dropped, n, false);
        }
        if hit.log {
            let first = self.drop_log.first(dropped);
            self.drop_line(dropped, first, peer_at);
        }
    }

    /// The line of one drop.
    fn drop_line(
        &self,
        dropped: Dropped,
        first: bool,
        peer_at: impl FnOnce(SocketAddr) -> Option<usize>,
    ) {
        let (layer, reason) = droplog::parts(dropped);
        let (mut peer, mut service, mut from) = (None, None, None);
        let source = match self.origin {
            Origin::Link(a) => {
                from = Some(a);
                peer = peer_at(a).map(|i| self.peer(sdt_core::link::PeerId(i as u16)));
                match peer {
                    Some(name) => format!("from {a} (peer {name}'s endpoint)"),
                    None => format!("from {a} (no peer's endpoint)"),
                }
            }
            Origin::Customer(SocketId::Service(id), a) => {
                service = Some(id);
                from = a;
                match a {
                    Some(a) => format!("of service {id} from client {a}"),
                    None => format!("of service {id}"),
                }
            }
            Origin::Customer(SocketId::Channel(c), a) => {
                from = a;
                match a {
                    Some(a) => format!("from {a} on exit channel socket (slot {})", c.slot()),
                    None => format!("on exit channel socket (slot {})", c.slot()),
                }
            }
            Origin::Tun(id) => {
                service = Some(id);
                format!("from the TUN device of service {id}")
            }
            Origin::None => String::new(),
        };
        let from = from.as_ref().map(tracing::field::display);
        // The id as a number field, as it always was in the log.
        let service = service.map(ServiceId::get);
        if first {
            info!(
                target: DROP,
                layer,
                reason,
                peer,
                service,
                from,
                "dropped a datagram {source}: {layer} {reason} (the first drop of this reason; \
                 every one is counted in sdt status, and logged at debug level, -vv, at most {} \
                 a reason in {} s)",
                droplog::BURST,
                WINDOW.as_secs()
            );
        } else {
            debug!(
                target: DROP,
                layer,
                reason,
                peer,
                service,
                from,
                "dropped a datagram {source}: {layer} {reason}"
            );
        }
    }

    /// Logs the summaries of drop log windows that are over.
    pub fn expire_drop_log(&mut self) {
        let now = self.log_clock.elapsed();
        self.drop_log.expire(now, |d, n| summary_line(d, n, false));
        if let Some(n) = self.open_log.expire(now) {
            warn!(target: DROP, suppressed = n, "suppressed {n} similar exit channel socket failures in the last {} s", WINDOW.as_secs());
        }
        if let Some(n) = self.recv_log.expire(now) {
            debug!(target: DROP, suppressed = n, "suppressed {n} similar read errors in the last {} s", WINDOW.as_secs());
        }
        if let Some(n) = self.send_log.expire(now) {
            debug!(target: DROP, suppressed = n, "suppressed {n} similar failed sends in the last {} s", WINDOW.as_secs());
        }
    }

    /// How long until [`MioIo::expire_drop_log`] has a summary to log.
    pub fn log_timeout(&self) -> Option<std::time::Duration> {
        let now = self.log_clock.elapsed();
        [
            self.drop_log.deadline(),
            self.send_log.deadline(),
            self.recv_log.deadline(),
            self.open_log.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|d| d.saturating_sub(now))
    }

    /// Logs, for each reason, the drops the rate limit kept out of the log
    /// since its last line: at stop, so that the lines account for every
    /// drop `sdt status` counted.
    pub fn flush_drop_log(&mut self) {
        self.drop_log.flush(|d, n| summary_line(d, n, true));
        for (log, what) in [
            (&mut self.send_log, "failed sends"),
            (&mut self.recv_log, "read errors"),
            (&mut self.open_log, "exit channel socket failures"),
        ] {
            let n = log.take();
            if n > 0 {
                debug!(target: DROP, suppressed = n, "suppressed {n} similar {what} before stopping");
            }
        }
    }

    /// A socket (or TUN device) `what` failed a read with `e`: a line at
    /// `level` (target `sdt::drop`), rate limited as drops are.
    pub fn log_socket_error(
        &mut self,
        level: tracing::Level,
        what: impl std::fmt::Display,
        e: &io::Error,
    ) {
        let hit = self.recv_log.hit(self.log_clock.elapsed());
        let summary = hit.summary.unwrap_or(0);
        if level == tracing::Level::WARN {
            if summary > 0 {
                warn!(target: DROP, suppressed = summary, "suppressed {summary} similar read errors in the last {} s", WINDOW.as_secs());
            }
            if hit.log {
                warn!(target: DROP, "read from {what}: {e}");
            }
        } else {
            if summary > 0 {
                debug!(target: DROP, suppressed = summary, "suppressed {summary} similar read errors in the last {} s", WINDOW.as_secs());
            }
            if hit.log {
                debug!(target: DROP, "read from {what}: {e}");
            }
        }
    }

    /// `n` sends of one turn failed, the first on `fd` for `why`: a line,
    /// rate limited as drops are (a full queue fails thousands).
    pub fn log_send_failures(&mut self, n: usize, fd: i32, why: &udp::SendFailure) {
        if !tracing::enabled!(target: DROP, tracing::Level::DEBUG) {
            return;
        }
        let hit = self.send_log.hit(self.log_clock.elapsed());
        if let Some(s) = hit.summary {
            debug!(target: DROP, suppressed = s, "suppressed {s} similar failed sends in the last {} s", WINDOW.as_secs());
        }
        if hit.log {
            let socket = if fd == std::os::fd::AsRawFd::as_raw_fd(&self.link) {
                "the link socket".to_owned()
            } else {
                self.customer_of_fd(fd)
                    .map_or_else(|| format!("fd {fd}"), |s| SocketName(s).to_string())
            };
            debug!(target: DROP, failed = n as u64, "{n} sends failed in one turn, the first on {socket}: {why}");
        }
    }

    /// Kernel drops on the socket of service `id`, and on every exit
    /// channel socket (open and closed) together.
    pub fn kernel_drops(&self) -> (Vec<(ServiceId, u64)>, u64) {
        let mut services = Vec::new();
        let mut channels = self.closed_channel_drops;
        for (id, c) in &self.customers {
            match id {
                SocketId::Service(s) => services.push((*s, c.kernel_drops.total())),
                SocketId::Channel(_) => channels += c.kernel_drops.total(),
            }
        }
        services.sort_unstable();
        (services, channels)
    }

    /// Closes the sockets the node closed since the last call. Call it once
    /// a turn, after the turn's batched sends.
    pub fn bury(&mut self) {
        self.graveyard.clear();
    }

    /// The customer socket `socket`'s descriptor, and whether it is
    /// connected (its sends name no destination).
    pub fn customer_fd(&self, socket: SocketId) -> Option<(std::os::fd::RawFd, bool)> {
        use std::os::fd::AsRawFd;
        self.customers
            .get(&socket)
            .map(|c| (c.socket.as_raw_fd(), c.connected))
    }

    /// The customer socket whose descriptor is `fd` (a scan: only for the
    /// rare send that failed).
    pub fn customer_of_fd(&self, fd: std::os::fd::RawFd) -> Option<SocketId> {
        use std::os::fd::AsRawFd;
        self.customers
            .iter()
            .find(|(_, c)| c.socket.as_raw_fd() == fd)
            .map(|(id, _)| *id)
    }

    /// The local address of exit channel `id`'s socket (one `getsockname`;
    /// only for the channels a listing shows).
    pub fn channel_local_addr(&self, id: sdt_core::channel::ChannelId) -> Option<SocketAddr> {
        self.customers
            .get(&SocketId::Channel(id))
            .and_then(|c| c.socket.local_addr().ok())
    }

    fn peer(&self, id: sdt_core::link::PeerId) -> &str {
        peer_name(&self.peer_names, id)
    }

    fn add(
        &mut self,
        id: SocketId,
        std_socket: std::net::UdpSocket,
        connected: bool,
    ) -> io::Result<()> {
        std_socket.set_nonblocking(true)?;
        // Service sockets take every client's bursts; channel sockets one
        // client's. No GRO: customer datagrams are sealed in place and need
        // headroom of their own. The kernel's drop count is read on both.
        let buffer = match id {
            SocketId::Service(_) => udp::BURST_SOCKET_BUFFER,
            SocketId::Channel(_) => CHANNEL_SOCKET_BUFFER,
        };
        {
            use std::os::fd::AsRawFd;
            udp::prepare(std_socket.as_raw_fd(), &self.offloads, false, buffer)?;
        }
        let mut socket = UdpSocket::from_std(std_socket);
        let token = Token(self.next_token);
        self.next_token += 1;
        self.registry
            .register(&mut socket, token, Interest::READABLE)?;
        self.tokens.insert(token, id);
        self.customers.insert(
            id,
            Customer {
                token,
                socket,
                connected,
                kernel_drops: KernelDrops::default(),
            },
        );
        Ok(())
    }

    fn open_failed(&mut self, socket: SocketId, what: String, e: io::Error) -> OpenFailed {
        match socket {
            SocketId::Service(id) => {
                if self.starting {
                    debug!("service {id}: {what}: {e}");
                } else {
                    error!("service {id}: {what}: {e}");
                }
                self.service_open_errors.push((id, format!("{what}: {e}")));
            }
            SocketId::Channel(_) => {
                // Out of descriptors, every new channel fails: rate
                // limited as drops are.
                let hit = self.open_log.hit(self.log_clock.elapsed());
                if let Some(n) = hit.summary {
                    warn!(
                        suppressed = n,
                        "suppressed {n} similar exit channel socket failures in the last {} s",
                        WINDOW.as_secs()
                    );
                }
                if hit.log {
                    warn!("exit channel socket: {what}: {e}; the channel is dropped");
                }
            }
        }
        OpenFailed
    }

    /// Writes what the TUN devices hold for coalescing ([`Tun::flush`]):
    /// once a batch has been handled, so that nothing waits past it.
    pub fn flush_tuns(&mut self) {
        // Out of the map while flushing, so that `sent` may borrow self
        // (an empty map does not allocate).
        let mut tuns = std::mem::take(&mut self.tuns);
        for (_, tun) in tuns.values_mut() {
            if let Some(r) = tun.flush() {
                self.sent("to the TUN device", r);
            }
        }
        self.tuns = tuns;
    }

    fn sent(&mut self, what: &str, r: io::Result<usize>) {
        if let Err(e) = r {
            self.send_errors += 1;
            if e.kind() != io::ErrorKind::WouldBlock
                && tracing::enabled!(target: DROP, tracing::Level::DEBUG)
            {
                let hit = self.send_log.hit(self.log_clock.elapsed());
                if let Some(n) = hit.summary {
                    debug!(
                        target: DROP,
                        suppressed = n,
                        "suppressed {n} similar failed sends in the last {} s",
                        WINDOW.as_secs()
                    );
                }
                if hit.log {
                    debug!(target: DROP, "send {what}: {e}");
                }
            }
        }
    }
}

/// The name of peer `id` in `names` (by peer id), `?` if none.
fn peer_name(names: &[String], id: sdt_core::link::PeerId) -> &str {
    names.get(usize::from(id.0)).map_or("?", String::as_str)
}

/// The summary of a drop log window: `n` drops of `dropped` not logged
/// in it, or (`stopping`) not logged since the window began.
fn summary_line(dropped: Dropped, n: u64, stopping: bool) {
    let (layer, reason) = droplog::parts(dropped);
    if stopping {
        debug!(
            target: DROP,
            layer,
            reason,
            suppressed = n,
            "suppressed {n} similar drops ({layer} {reason}) before stopping"
        );
    } else {
        debug!(
            target: DROP,
            layer,
            reason,
            suppressed = n,
            "suppressed {n} similar drops ({layer} {reason}) in the last {} s",
            WINDOW.as_secs()
        );
    }
}

impl Io for MioIo {
    fn bind(&mut self, socket: SocketId, local: SocketAddr) -> Result<(), OpenFailed> {
        let s = std::net::UdpSocket::bind(local)
            .map_err(|e| self.open_failed(socket, format!("cannot bind {local}"), e))?;
        self.add(socket, s, false)
            .map_err(|e| self.open_failed(socket, format!("cannot register {local}"), e))?;
        debug!("{}: bound {local}", SocketName(socket));
        Ok(())
    }

    fn connect(&mut self, socket: SocketId, remote: SocketAddr) -> Result<(), OpenFailed> {
        let any: SocketAddr = match remote {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let s = std::net::UdpSocket::bind(any)
            .and_then(|s| s.connect(remote).map(|()| s))
            .map_err(|e| {
                self.open_failed(socket, format!("cannot open a socket to {remote}"), e)
            })?;
        self.add(socket, s, true).map_err(|e| {
            self.open_failed(socket, format!("cannot register a socket to {remote}"), e)
        })?;
        Ok(())
    }

    fn connect_echo(
        &mut self,
        socket: SocketId,
        remote: std::net::IpAddr,
    ) -> Result<(), OpenFailed> {
        let s = open_echo_socket(remote).map_err(|e| {
            self.open_failed(
                socket,
                format!("cannot open an ICMP echo socket to {remote}"),
                e,
            )
        })?;
        self.add(socket, s, true).map_err(|e| {
            self.open_failed(
                socket,
                format!("cannot register an ICMP echo socket to {remote}"),
                e,
            )
        })?;
        Ok(())
    }

    fn close(&mut self, socket: SocketId) {
        if let Some(mut c) = self.customers.remove(&socket) {
            let _ = self.registry.deregister(&mut c.socket);
            self.tokens.remove(&c.token);
            if matches!(socket, SocketId::Channel(_)) {
                self.closed_channel_drops += c.kernel_drops.total();
            }
            if !self.close_at_once {
                self.graveyard.push(c);
            }
        }
    }

    fn send_link(&mut self, to: SocketAddr, datagram: &[u8]) {
        let r = self.link.send_to(datagram, to);
        self.sent("on the link", r);
    }

    fn send_customer(&mut self, socket: SocketId, to: Option<SocketAddr>, payload: &[u8]) {
        let r = match (self.customers.get(&socket), to) {
            (Some(c), Some(to)) if !c.connected => c.socket.send_to(payload, to),
            (Some(c), _) => c.socket.send(payload),
            (None, _) => Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        self.sent("to a customer", r);
    }

    fn write_tun(&mut self, service: ServiceId, packet: &[u8]) {
        let owner = *self.tun_owner.get(&service).unwrap_or(&service);
        let r = match self.tuns.get_mut(&owner) {
            Some((_, tun)) => tun.write(packet),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        self.sent("to the TUN device", r);
    }

    fn event(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::Link(LinkEvent::SessionUp(p)) => {
                let name = peer_name(&self.peer_names, p);
                let i = usize::from(p.0);
                if self.peer_log.len() <= i {
                    self.peer_log.resize(i + 1, PeerLog::default());
                }
                let was = std::mem::replace(
                    &mut self.peer_log[i],
                    PeerLog {
                        up: true,
                        stale: false,
                    },
                );
                if was.up {
                    info!(target: REKEY, peer = name, "peer {name}: rekeyed: a new session replaces the old");
                } else {
                    info!(target: SESSION, peer = name, "peer {name}: session up: handshake done");
                }
            }
            NodeEvent::Link(LinkEvent::PeerRestarted(p)) => {
                let name = peer_name(&self.peer_names, p);
                if let Some(l) = self.peer_log.get_mut(usize::from(p.0)) {
                    *l = PeerLog::default();
                }
                info!(
                    target: SESSION,
                    peer = name,
                    "peer {name}: session down: its node restarted; its channels are dropped"
                )
            }
            NodeEvent::Link(LinkEvent::Roamed(p)) => {
                let name = peer_name(&self.peer_names, p);
                info!(target: SESSION, peer = name, "peer {name}: endpoint moved")
            }
            NodeEvent::Link(LinkEvent::EndpointStale(p)) => {
                let name = peer_name(&self.peer_names, p);
                debug!(target: SESSION, peer = name, "peer {name}: handshakes unanswered; its endpoint may be stale");
                if !self.stale_endpoints.contains(&p) {
                    self.stale_endpoints.push(p);
                }
            }
            NodeEvent::Link(LinkEvent::HandshakeTimedOut(p)) => {
                let name = peer_name(&self.peer_names, p);
                warn!(
                    target: SESSION,
                    peer = name,
                    "peer {name}: no handshake answer for 90 s (unreachable?)"
                )
            }
            NodeEvent::Mismatch {
                service,
                peer,
                problem,
            } => {
                let what = match problem {
                    ServiceDrop::HalfMismatch => {
                        "both nodes hold the same half (both entry or both exit)"
                    }
                    ServiceDrop::ModeMismatch => "the two nodes configure different modes",
                    ServiceDrop::WrongPeer => "this peer is not the service's peer",
                    _ => problem.as_str(),
                };
                warn!(
                    "service {service}: frames from peer {} do not match: {what}; dropping them",
                    self.peer(peer)
                )
            }
            NodeEvent::UnknownService { service, peer } => {
                warn!(
                    "peer {} sends frames for service {service}, which this node does not have",
                    self.peer(peer)
                )
            }
            NodeEvent::ServiceSocketFailed { service } if self.starting => {
                debug!("service {service}: its socket could not be opened")
            }
            NodeEvent::ServiceSocketFailed { service } => {
                error!("service {service}: its socket could not be opened")
            }
            NodeEvent::TooBig {
                service,
                peer,
                len,
                max,
            } => {
                warn!(
                    "service {service}: dropped a {len} B datagram for peer {}: one link frame \
                     carries at most {max} B (the peer's `mtu`); this and later ones are \
                     counted as too_big in `sdt status`",
                    self.peer(peer)
                )
            }
            // A kind of event this daemon does not know yet (core may add
            // some): its Debug form is all there is.
            other => info!("node event: {other:?}"),
        }
    }

    fn dropped(&mut self, dropped: Dropped) {
        // From core's own carry_out and flush: the origin, if any, names
        // a socket, not a peer's endpoint.
        self.log_drop(dropped, |_| None);
    }
}

/// An ICMP echo ("ping") socket connected to `remote`: `SOCK_DGRAM` with
/// `IPPROTO_ICMP` or `IPPROTO_ICMPV6`, which Linux allows to the groups in
/// `net.ipv4.ping_group_range` (for both families), root included. It sends
/// and reads whole ICMP messages, so the daemon handles it as it handles a
/// connected UDP socket (the type only carries the descriptor).
pub fn open_echo_socket(remote: std::net::IpAddr) -> io::Result<std::net::UdpSocket> {
    use std::os::fd::FromRawFd;
    let (family, protocol) = match remote {
        std::net::IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP),
        std::net::IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6),
    };
    // SAFETY: plain socket(2); the descriptor is checked and owned below.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => io::Error::new(
                e.kind(),
                "ICMP echo sockets are not permitted to this process's group: \
                 net.ipv4.ping_group_range must include it (sysctl -w \
                 net.ipv4.ping_group_range=\"0 2147483647\" allows every group)",
            ),
            _ => e,
        });
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    #[allow(unsafe_code)]
    let socket = unsafe { std::net::UdpSocket::from_raw_fd(fd) };
    socket.connect(SocketAddr::new(remote, 0))?;
    Ok(socket)
}
