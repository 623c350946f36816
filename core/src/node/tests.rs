//! Two nodes driven against each other in memory, with a fake clock, fake
//! customer sockets and a virtual link network: the harness plays the
//! runtime's part exactly as the contract in the module docs says.

use super::*;
use crate::allow::AllowList;
use crate::key::PrivateKey;
use crate::link::{PeerConfig, MAX_JITTER, REKEY_ATTEMPT_TIME, REKEY_TIMEOUT};
use core::time::Duration;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::collections::{HashMap, VecDeque};
use std::vec::Vec;

mod l3;
mod modes;
mod props;
mod push;
mod reload;
mod roles;
mod router;
mod size;
mod snapshots;

type TestNode = Node<ChaCha20Rng, 4, 8, 16, Vec<u8>>;

const START_UNIX: u64 = 1_700_000_000_000_000_000;
pub(super) const X: usize = 0;
pub(super) const Y: usize = 1;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A customer socket as the fake runtime holds it.
#[derive(Debug, Clone, Copy)]
struct FakeSocket {
    local: SocketAddr,
    connected: Option<SocketAddr>,
}

/// A datagram some customer received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Delivery {
    pub node: usize,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

/// Two nodes, X (index 0) and Y (index 1), one link between them.
pub(super) struct Net {
    pub now: Instant,
    pub nodes: [TestNode; 2],
    pub link_addr: [SocketAddr; 2],
    /// Each node's peer id for the other.
    pub peer: [PeerId; 2],
    sockets: [HashMap<SocketId, FakeSocket>; 2],
    next_port: u16,
    /// Ports of closed connected sockets, per node: a connect takes the
    /// most recently freed one first, as a kernel short of ephemeral ports
    /// would, so a port that is released early is reused at once.
    free_ports: [Vec<u16>; 2],
    in_flight: VecDeque<(usize, SocketAddr, Vec<u8>)>,
    pub delivered: Vec<Delivery>,
    pub tun: Vec<(usize, ServiceId, Vec<u8>)>,
    pub events: [Vec<NodeEvent>; 2],
    pub drops: [Vec<Dropped>; 2],
    /// Link frames as they went out, for snapshots: (from node, bytes).
    pub wire: Vec<(usize, Vec<u8>)>,
    /// Decrypted plaintexts of data frames that reached a customer:
    /// (receiving node, service header + payload).
    pub plaintexts: Vec<(usize, Vec<u8>)>,
    /// When false, link datagrams are lost.
    pub link_up: bool,
    seed: u64,
    /// The link MTU of both nodes towards each other.
    mtu: u16,
}

fn node_key(seed: u64, i: usize) -> PrivateKey {
    PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(seed * 2 + i as u64))
}

impl Net {
    /// Two nodes that know each other; X knows Y's endpoint, Y learns X's.
    pub fn new(seed: u64) -> Net {
        Net::with_link(
            seed,
            ["192.0.2.1:51820", "192.0.2.2:51820"],
            crate::mtu::DEFAULT_LINK_MTU,
        )
    }

    /// Two nodes whose link sockets are at `link_addr` (IPv4 or IPv6), each
    /// with link MTU `mtu` towards the other.
    pub fn with_link(seed: u64, link_addr: [&str; 2], mtu: u16) -> Net {
        let now = Instant::from_secs(1);
        let link_addr = link_addr.map(addr);
        let keys = [node_key(seed, 0), node_key(seed, 1)];
        let publics = [keys[0].public_key(), keys[1].public_key()];
        let [kx, ky] = keys;
        let mut nodes = [
            TestNode::new(
                kx,
                ChaCha20Rng::seed_from_u64(seed * 7 + 1),
                now,
                START_UNIX,
            ),
            TestNode::new(
                ky,
                ChaCha20Rng::seed_from_u64(seed * 7 + 2),
                now,
                START_UNIX,
            ),
        ];
        let mut cx = PeerConfig::new(publics[1]);
        cx.endpoint = Some(link_addr[1]);
        cx.mtu = mtu;
        let mut cy = PeerConfig::new(publics[0]);
        cy.mtu = mtu;
        let peer = [
            nodes[0].add_peer(cx, now).unwrap(),
            nodes[1].add_peer(cy, now).unwrap(),
        ];
        Net {
            now,
            nodes,
            link_addr,
            peer,
            sockets: [HashMap::new(), HashMap::new()],
            next_port: 40000,
            free_ports: [Vec::new(), Vec::new()],
            in_flight: VecDeque::new(),
            delivered: Vec::new(),
            tun: Vec::new(),
            events: [Vec::new(), Vec::new()],
            drops: [Vec::new(), Vec::new()],
            wire: Vec::new(),
            plaintexts: Vec::new(),
            link_up: true,
            seed,
            mtu,
        }
    }

    /// Adds a service to one node and opens its sockets.
    pub fn service(&mut self, node: usize, config: ServiceConfig) {
        self.nodes[node].add_service(config).unwrap();
        self.settle();
    }

    /// Brings the link up: X initiates.
    pub fn up(&mut self) {
        let (now, peer) = (self.now, self.peer[X]);
        self.nodes[X].connect(peer, now);
        self.settle();
        assert!(self.nodes[X].link().is_up(self.peer[X], self.now));
        assert!(self.nodes[Y].link().is_up(self.peer[Y], self.now));
    }

    /// Replaces node `i` with a fresh one with the same key (and a new RNG
    /// seeded from `seed`): a restart.
    pub fn restart(&mut self, i: usize, seed: u64, services: &[ServiceConfig]) {
        let key = node_key(self.seed, i);
        let other = self.nodes[1 - i].link().public_key().to_owned();
        self.nodes[i] = TestNode::new(
            key,
            ChaCha20Rng::seed_from_u64(seed * 99 + i as u64),
            self.now,
            START_UNIX + 1_000_000_000_000,
        );
        let mut c = PeerConfig::new(other);
        c.mtu = self.mtu;
        if i == X {
            c.endpoint = Some(self.link_addr[Y]);
        }
        self.peer[i] = self.nodes[i].add_peer(c, self.now).unwrap();
        self.sockets[i].clear();
        for s in services {
            self.nodes[i].add_service(s.clone()).unwrap();
        }
        self.settle();
    }

    fn apply_actions(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].poll_action() {
            // An echo socket is a fake socket connected to port 0.
            let action = match action {
                Action::ConnectEcho { socket, remote } => Action::Connect {
                    socket,
                    remote: SocketAddr::new(remote, 0),
                },
                other => other,
            };
            match action {
                Action::Bind { socket, local } => {
                    let old = self.sockets[i].insert(
                        socket,
                        FakeSocket {
                            local,
                            connected: None,
                        },
                    );
                    assert!(old.is_none(), "socket {socket:?} opened twice");
                }
                Action::Connect { socket, remote } => {
                    let port = self.free_ports[i].pop().unwrap_or_else(|| {
                        self.next_port += 1;
                        self.next_port
                    });
                    let local = SocketAddr::new([10, 0, 0, 1 + i as u8].into(), port);
                    let old = self.sockets[i].insert(
                        socket,
                        FakeSocket {
                            local,
                            connected: Some(remote),
                        },
                    );
                    assert!(old.is_none(), "socket {socket:?} opened twice");
                }
                Action::ConnectEcho { .. } => unreachable!("mapped to Connect above"),
                Action::Close { socket } => {
                    let closed = self.sockets[i].remove(&socket);
                    let Some(closed) = closed else {
                        panic!("closing unknown {socket:?}");
                    };
                    if closed.connected.is_some() {
                        self.free_ports[i].push(closed.local.port());
                    }
                }
            }
        }
    }

    /// Carries out what a handle call returned, as a runtime would.
    fn carry_out(&mut self, i: usize, buf: &[u8], result: Result<Output, Dropped>) {
        self.apply_actions(i);
        match result {
            Ok(Output::Link { to, range }) => {
                assert_eq!(to, self.link_addr[1 - i]);
                self.wire.push((i, buf[range.clone()].to_vec()));
                if self.link_up {
                    self.in_flight
                        .push_back((1 - i, self.link_addr[i], buf[range].to_vec()));
                }
            }
            Ok(Output::Customer { socket, to, range }) => {
                let s = self.sockets[i]
                    .get(&socket)
                    .unwrap_or_else(|| panic!("output on unopened socket {socket:?}"));
                let to = to
                    .or(s.connected)
                    .expect("unconnected socket without destination");
                if let Some(c) = s.connected {
                    assert_eq!(to, c, "connected socket sending elsewhere");
                }
                self.delivered.push(Delivery {
                    node: i,
                    from: s.local,
                    to,
                    payload: buf[range].to_vec(),
                });
            }
            Ok(Output::Tun { service, range }) => self.tun.push((i, service, buf[range].to_vec())),
            Ok(Output::Consumed | Output::Queued) => {}
            Err(d) => self.drops[i].push(d),
        }
    }

    /// Moves every pending datagram, transmit, action and event, without
    /// advancing time.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            for i in [X, Y] {
                self.apply_actions(i);
                let mut buf = [0u8; TRANSMIT_BUFFER];
                let now = self.now;
                while let Some(t) = self.nodes[i].poll_transmit(now, &mut buf).unwrap() {
                    self.wire.push((i, buf[..t.len].to_vec()));
                    if self.link_up {
                        self.in_flight
                            .push_back((1 - i, self.link_addr[i], buf[..t.len].to_vec()));
                    }
                }
                while let Some(e) = self.nodes[i].poll_event() {
                    self.events[i].push(e);
                }
            }
            let Some((to, from, bytes)) = self.in_flight.pop_front() else {
                return;
            };
            let mut buf = vec![0u8; HEADROOM + bytes.len() + TAILROOM];
            buf[HEADROOM..HEADROOM + bytes.len()].copy_from_slice(&bytes);
            let r = self.nodes[to].handle_link_datagram(
                self.now,
                from,
                &mut buf,
                HEADROOM..HEADROOM + bytes.len(),
            );
            let plaintext =
                HEADROOM + DataPacket::<&[u8]>::HEADER_LEN..HEADROOM + bytes.len() - TAILROOM;
            // An L3 packet is written from where it lies in the plaintext,
            // which is still whole; a forged router reply is not.
            let whole = match &r {
                Ok(Output::Customer { .. }) => true,
                Ok(Output::Tun { range, .. }) => range.start > plaintext.start,
                _ => false,
            };
            if whole {
                self.plaintexts.push((to, buf[plaintext].to_vec()));
            }
            self.carry_out(to, &buf, r);
        }
        panic!("network did not settle");
    }

    /// Advances the clock by `d`, firing timers on the way.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.settle();
            let next = [X, Y]
                .iter()
                .filter_map(|&i| self.nodes[i].poll_timeout())
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for i in [X, Y] {
                        if self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                            let now = self.now;
                            self.nodes[i].handle_timeout(now);
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = end;
        self.settle();
    }

    /// The socket of node `i` whose local address is `local`.
    pub fn socket_at(&self, i: usize, local: SocketAddr) -> SocketId {
        *self.sockets[i]
            .iter()
            .find(|(_, s)| s.local == local)
            .unwrap_or_else(|| panic!("no socket at {local} on node {i}"))
            .0
    }

    /// Customer `from` sends `payload` to node `i`'s socket at `to`.
    pub fn send(&mut self, i: usize, from: SocketAddr, to: SocketAddr, payload: &[u8]) {
        let socket = self.socket_at(i, to);
        self.send_on(i, socket, from, payload);
    }

    /// A datagram from `from` arrives on node `i`'s socket `socket`.
    pub fn send_on(&mut self, i: usize, socket: SocketId, from: SocketAddr, payload: &[u8]) {
        let mut buf = vec![0u8; HEADROOM + payload.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + payload.len()].copy_from_slice(payload);
        let now = self.now;
        let r = self.nodes[i].handle_customer_datagram(
            now,
            socket,
            from,
            &mut buf,
            HEADROOM..HEADROOM + payload.len(),
        );
        self.carry_out(i, &buf, r);
        self.settle();
    }

    /// A target at `from` sends `payload` to node `i`'s local address
    /// `local`, as a real target answers the address a request came from:
    /// whichever socket holds that address now gets it. False if none does
    /// (the kernel would answer ICMP port unreachable).
    pub fn send_to_local(
        &mut self,
        i: usize,
        local: SocketAddr,
        from: SocketAddr,
        payload: &[u8],
    ) -> bool {
        let socket = self.sockets[i]
            .iter()
            .find(|(_, s)| s.local == local && s.connected.is_none_or(|c| c == from))
            .map(|(id, _)| *id);
        match socket {
            Some(socket) => {
                self.send_on(i, socket, from, payload);
                true
            }
            None => false,
        }
    }

    /// Node `i`'s socket `socket` reports ECONNREFUSED (its target sent an
    /// ICMP port unreachable).
    pub fn refused(&mut self, i: usize, socket: SocketId) {
        let mut buf = [0u8; HEADROOM + crate::wire::ServiceHeaderRepr::MAX_LEN + TAILROOM];
        let now = self.now;
        let r = self.nodes[i].handle_target_refused(now, socket, &mut buf);
        self.carry_out(i, &buf, r);
        self.settle();
    }

    /// An IP packet from node `i`'s TUN device of router service `service`.
    pub fn tun_send(&mut self, i: usize, service: ServiceId, packet: &[u8]) {
        let mut buf = vec![0u8; HEADROOM + packet.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(packet);
        let now = self.now;
        let r = self.nodes[i].handle_tun_packet(
            now,
            service,
            &mut buf,
            HEADROOM..HEADROOM + packet.len(),
        );
        self.carry_out(i, &buf, r);
        self.settle();
    }

    /// An IP packet from node `i`'s L3 exit TUN device.
    pub fn exit_tun_send(&mut self, i: usize, packet: &[u8]) {
        let mut buf = vec![0u8; HEADROOM + packet.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(packet);
        let now = self.now;
        let r =
            self.nodes[i].handle_exit_tun_packet(now, &mut buf, HEADROOM..HEADROOM + packet.len());
        self.carry_out(i, &buf, r);
        self.settle();
    }

    /// The open sockets of node `i` connected to `remote`, by local address.
    pub fn connected_to(&self, i: usize, remote: SocketAddr) -> Vec<(SocketId, SocketAddr)> {
        let mut v: Vec<_> = self.sockets[i]
            .iter()
            .filter(|(_, s)| s.connected == Some(remote))
            .map(|(id, s)| (*id, s.local))
            .collect();
        v.sort_by_key(|(_, local)| *local);
        v
    }

    /// How many sockets node `i` has open.
    pub fn open_sockets(&self, i: usize) -> usize {
        self.sockets[i].len()
    }

    /// Deliveries made to `to`, removed from the log.
    /// The payloads of [`Net::take_delivered_to`].
    pub fn take_payloads_to(&mut self, to: SocketAddr) -> Vec<Vec<u8>> {
        self.take_delivered_to(to)
            .into_iter()
            .map(|d| d.payload)
            .collect()
    }

    pub fn take_delivered_to(&mut self, to: SocketAddr) -> Vec<Delivery> {
        let (hit, rest) = self.delivered.drain(..).partition(|d| d.to == to);
        self.delivered = rest;
        hit
    }

    pub fn stats(&self, i: usize, service: ServiceId) -> ServiceStats {
        self.nodes[i].service_stats(service).unwrap()
    }

    pub fn drop_count(&self, i: usize, service: ServiceId, reason: ServiceDrop) -> u64 {
        self.stats(i, service).drops.get(reason)
    }
}

// ---- service configs used across the tests ----

/// A service with room for the test node's whole table.
pub(super) fn service(id: u8, peers: Peers, role: Role) -> ServiceConfig {
    with_limits(
        ServiceConfig::new(ServiceId::new(id), peers, role),
        16,
        60,
        5,
    )
}

pub(super) fn forward_entry(id: u8, peer: PeerId, listen: &str) -> ServiceConfig {
    service(
        id,
        Peers::One(peer),
        Role::ForwardEntry {
            listen: addr(listen),
        },
    )
}

pub(super) fn forward_exit(id: u8, peers: Peers, target: &str) -> ServiceConfig {
    service(
        id,
        peers,
        Role::ForwardExit {
            target: addr(target),
        },
    )
}

pub(super) fn with_limits(
    mut c: ServiceConfig,
    max: u16,
    idle: u64,
    min_idle: u64,
) -> ServiceConfig {
    c.limits = ChannelLimits {
        max_channels: max,
        idle_timeout: Duration::from_secs(idle),
        min_idle_for_eviction: Duration::from_secs(min_idle),
        ..ChannelLimits::default()
    };
    c
}

pub(super) fn router_exit(id: u8, peer: PeerId, rules: &[&str]) -> ServiceConfig {
    let mut allow = AllowList::new();
    for r in rules {
        allow.push(r.parse().unwrap()).unwrap();
    }
    service(id, Peers::One(peer), Role::RouterExit { allow })
}

pub(super) fn a(s: &str) -> SocketAddr {
    addr(s)
}

/// Events the runtime does not poll in time are counted, not lost without
/// a trace: the queue holds 32, the rest show in `events_lost`.
/// A frame in the liveness probe's old format (a data frame whose
/// plaintext is the lone byte 0x30, as nodes sent before probes had a
/// message type of their own) is no probe: it is data whose service header
/// is malformed, dropped and counted, and answered with nothing.
#[test]
fn an_old_format_probe_is_dropped_counted() {
    let mut net = Net::new(61);
    net.up();
    let (now, peer) = (net.now, net.peer[X]);
    let mut frame = [0u8; DataPacket::<&[u8]>::OVERHEAD + 1];
    frame[DataPacket::<&[u8]>::HEADER_LEN] = 0x30;
    let t = net.nodes[X].link.seal(now, peer, &mut frame, 1).unwrap();
    assert_eq!(t.len, frame.len());
    let mut buf = vec![0u8; HEADROOM + frame.len() + TAILROOM];
    buf[HEADROOM..HEADROOM + frame.len()].copy_from_slice(&frame);
    let from = net.link_addr[X];
    let r = net.nodes[Y].handle_link_datagram(now, from, &mut buf, HEADROOM..HEADROOM + t.len);
    assert_eq!(r, Err(Dropped::Service(ServiceDrop::MalformedHeader)));
    assert_eq!(
        net.nodes[Y].node_drops().get(ServiceDrop::MalformedHeader),
        1
    );
    let mut out = [0u8; 256];
    assert_eq!(net.nodes[Y].link.poll_transmit(now, &mut out), Ok(None));
}

#[test]
fn events_beyond_the_queue_are_counted() {
    let mut net = Net::new(60);
    let mut config = ServiceConfig::new(
        ServiceId::new(5),
        Peers::One(net.peer[X]),
        Role::PushEntry {
            listen: addr("127.0.0.1:5514"),
        },
    );
    config.limits = ChannelLimits::default();
    net.service(X, config);
    let node = &mut net.nodes[X];
    for _ in 0..40 {
        node.socket_failed(SocketId::Service(ServiceId::new(5)));
    }
    assert_eq!(node.events_lost(), 8);
    let mut polled = 0;
    while node.poll_event().is_some() {
        polled += 1;
    }
    assert_eq!(polled, 32);
}

/// A mode this build leaves out (cargo features `push`, `router`) is
/// refused when a service asks for it, and a mode it has is taken. test.sh
/// runs this test with the default features and without them.
#[test]
fn modes_left_out_of_the_build_are_refused() {
    let mut net = Net::new(61);
    let peer = Peers::One(net.peer[X]);
    let roles = [
        Role::ForwardEntry {
            listen: addr("127.0.0.1:7001"),
        },
        Role::PushEntry {
            listen: addr("127.0.0.1:7002"),
        },
        Role::PushExit {
            target: addr("127.0.0.1:7003"),
        },
        Role::RouterEntry,
        Role::RouterExit {
            allow: AllowList::new(),
        },
        Role::RouterTunEntry,
    ];
    for (id, role) in (1..).zip(roles) {
        let built = role.mode().is_built();
        let result = net.nodes[X].add_service(service(id, peer, role.clone()));
        if built {
            assert_eq!(result, Ok(()), "{role:?}");
        } else {
            assert_eq!(result, Err(ServiceError::ModeNotBuilt), "{role:?}");
        }
    }
    assert!(Mode::Forward.is_built() && Mode::Direct.is_built());
    assert_eq!(Mode::Push.is_built(), cfg!(feature = "push"));
    assert_eq!(Mode::Router.is_built(), cfg!(feature = "router"));
}
