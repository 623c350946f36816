//! The daemon's half of the node contract: [`sdt_core::node::Io`] over mio
//! UDP sockets and TUN devices.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use sdt_core::link::LinkEvent;
use sdt_core::node::{Dropped, Io, NodeEvent, OpenFailed, ServiceDrop, SocketId};
use tracing::{debug, error, info, warn};

use super::tun::Tun;
use super::udp::{self, KernelDrops, Offloads};

/// Tokens from here on name customer sockets; below are the daemon's own.
pub const FIRST_CUSTOMER_TOKEN: usize = 1024;

/// Socket buffer asked for on an exit channel's socket: one client's
/// traffic, and there may be thousands of them.
const CHANNEL_SOCKET_BUFFER: usize = 256 << 10;

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
    /// Router entries' TUN devices, by service id, with their tokens.
    pub tuns: HashMap<u8, (Token, Tun)>,
    /// Names of the peers, by peer id, for logs.
    pub peer_names: Vec<String>,
    /// Datagrams that could not be sent.
    pub send_errors: u64,
    /// What the kernel offers for batched I/O, found at start.
    pub offloads: Offloads,
    /// Kernel drops on exit channel sockets already closed.
    pub closed_channel_drops: u64,
    /// Service sockets that could not be opened: (service, why).
    pub service_open_errors: Vec<(u8, String)>,
    /// While the daemon starts, a service socket that cannot be opened is
    /// only recorded: the start fails and reports it in one line.
    pub starting: bool,
    /// Sockets the node closed during the current turn, kept open until the
    /// turn's sends are out ([`MioIo::bury`]): a batched send still names
    /// their file descriptors, and a descriptor closed early could be
    /// reused by a new socket within the turn, so a datagram would leave
    /// from another customer's socket.
    graveyard: Vec<Customer>,
    /// Close sockets at once instead of at the turn's end: only while a
    /// reload is applied, when no send is queued.
    pub close_at_once: bool,
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
            peer_names,
            send_errors: 0,
            service_open_errors: Vec::new(),
            starting: true,
            graveyard: Vec::new(),
            close_at_once: false,
        }
    }

    /// Kernel drops on the socket of service `id`, and on every exit
    /// channel socket (open and closed) together.
    pub fn kernel_drops(&self) -> (Vec<(u8, u64)>, u64) {
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
        self.peer_names
            .get(usize::from(id.0))
            .map_or("?", String::as_str)
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
                warn!("exit channel socket: {what}: {e}; the channel is dropped")
            }
        }
        OpenFailed
    }

    fn sent(&mut self, what: &str, r: io::Result<usize>) {
        if let Err(e) = r {
            self.send_errors += 1;
            if e.kind() != io::ErrorKind::WouldBlock {
                debug!("send {what}: {e}");
            }
        }
    }
}

impl Io for MioIo {
    fn bind(&mut self, socket: SocketId, local: SocketAddr) -> Result<(), OpenFailed> {
        let s = std::net::UdpSocket::bind(local)
            .map_err(|e| self.open_failed(socket, format!("cannot bind {local}"), e))?;
        self.add(socket, s, false)
            .map_err(|e| self.open_failed(socket, format!("cannot register {local}"), e))?;
        debug!("{socket:?}: bound {local}");
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

    fn write_tun(&mut self, service: u8, packet: &[u8]) {
        let r = match self.tuns.get_mut(&service) {
            Some((_, tun)) => tun.write(packet),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        self.sent("to the TUN device", r);
    }

    fn event(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::Link(LinkEvent::SessionUp(p)) => info!("peer {}: session up", self.peer(p)),
            NodeEvent::Link(LinkEvent::PeerRestarted(p)) => {
                info!(
                    "peer {}: its node restarted; its channels are dropped",
                    self.peer(p)
                )
            }
            NodeEvent::Link(LinkEvent::Roamed(p)) => info!("peer {}: endpoint moved", self.peer(p)),
            NodeEvent::Link(LinkEvent::HandshakeTimedOut(p)) => {
                warn!(
                    "peer {}: no handshake answer for 90 s (unreachable?)",
                    self.peer(p)
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
            other => info!("{other:?}"),
        }
    }

    fn dropped(&mut self, dropped: Dropped) {
        debug!("dropped: {dropped}");
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
