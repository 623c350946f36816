//! A little network in memory: smoltcp interfaces joined by a hub (medium
//! IP) that routes each packet to the interface owning its destination
//! address, with seeded loss and reordering, and a fake clock that jumps to
//! the next deadline.
//!
//! Two of the interfaces carry sdt nodes ([`SmolNode`]s, X and Y); the
//! others are customers: plain smoltcp interfaces with UDP sockets.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sdt_core::key::PrivateKey;
use sdt_core::link::{PeerConfig, PeerId};
use sdt_core::node::{Node, ServiceConfig, ServiceId, SocketId};
use sdt_smoltcp::{SmolNode, Storage};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};

pub type TestNode = Node<ChaCha20Rng, 2, 8, 16>;
pub type TestSmol = SmolNode<'static, ChaCha20Rng, 2, 8, 16>;

/// Sockets per node: the link and 7 customer sockets.
pub const SOCKETS: usize = 8;

pub const X: usize = 0;
pub const Y: usize = 1;

/// The nodes' addresses; link sockets on port 51820.
pub const NODE_IPS: [Ipv4Address; 2] =
    [Ipv4Address::new(10, 0, 0, 1), Ipv4Address::new(10, 0, 0, 2)];
pub const LINK_PORT: u16 = 51820;

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A device that is two queues: what the interface sent, what it will
/// receive.
#[derive(Default)]
pub struct QueueDevice {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: VecDeque<Vec<u8>>,
}

pub struct Rx(Vec<u8>);
pub struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((Rx(packet), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// A seeded xorshift64*, for loss and jitter.
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}

/// How the hub treats packets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Impairment {
    /// Packets lost, per mille.
    pub loss: u64,
    /// Fixed one-way latency.
    pub latency: Duration,
    /// Extra random latency, up to this much: reorders packets.
    pub jitter: Duration,
}

struct InFlight {
    at: Instant,
    seq: u64,
    bytes: Vec<u8>,
}

/// The medium: routes by IPv4 destination between ports.
pub struct Hub {
    pub impairment: Impairment,
    dice: Dice,
    in_flight: Vec<InFlight>,
    seq: u64,
    pub carried: u64,
    pub lost: u64,
    pub unroutable: u64,
}

/// A customer: an interface with UDP sockets.
pub struct Host {
    pub iface: Interface,
    pub device: QueueDevice,
    pub sockets: SocketSet<'static>,
    /// Sockets that send back whatever they receive.
    pub echo: Vec<SocketHandle>,
    /// Everything received on sockets not echoing: (socket, from, payload).
    pub inbox: Vec<(SocketHandle, SocketAddr, Vec<u8>)>,
    pub ip: Ipv4Address,
}

/// A node: its SmolNode, its device, and a router device if it has one.
pub struct NodeHost {
    pub smol: TestSmol,
    pub device: QueueDevice,
    pub tun: Option<(ServiceId, QueueDevice)>,
    pub peer: PeerId,
}

pub struct World {
    pub now: Instant,
    pub hub: Hub,
    pub nodes: Vec<NodeHost>,
    pub hosts: Vec<Host>,
}

fn iface_for(ip: Ipv4Address, device: &mut QueueDevice, now: Instant, seed: u64) -> Interface {
    let mut config = Config::new(HardwareAddress::Ip);
    config.random_seed = seed;
    let mut iface = Interface::new(config, device, now);
    iface.update_ip_addrs(|addrs| {
        addrs.push(IpCidr::new(IpAddress::Ipv4(ip), 24)).unwrap();
    });
    iface
}

pub fn node_key(seed: u64, i: usize) -> PrivateKey {
    PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(seed * 2 + i as u64))
}

impl World {
    /// X and Y, each knowing the other's endpoint, with no services yet.
    pub fn new(seed: u64, impairment: Impairment) -> World {
        let now = Instant::from_secs(1);
        let keys = [node_key(seed, 0), node_key(seed, 1)];
        let publics = [keys[0].public_key(), keys[1].public_key()];
        let mut nodes = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let t = sdt_smoltcp::core_instant(now);
            let rng = ChaCha20Rng::seed_from_u64(seed * 7 + i as u64);
            let mut node = TestNode::new(key, rng, t, 1_700_000_000_000_000_000);
            let mut peer = PeerConfig::new(publics[1 - i]);
            peer.endpoint = Some(SocketAddr::new(NODE_IPS[1 - i].into(), LINK_PORT));
            let peer = node.add_peer(peer, t).unwrap();
            let mut device = QueueDevice::default();
            let iface = iface_for(NODE_IPS[i], &mut device, now, seed + i as u64);
            let storage: &'static mut Storage<SOCKETS, 8, 4096> =
                Box::leak(Box::new(Storage::new()));
            let slots: &'static mut [SocketStorage<'static>] =
                Box::leak((0..SOCKETS).map(|_| SocketStorage::EMPTY).collect());
            let smol = SmolNode::new(
                node,
                iface,
                SocketAddr::new(NODE_IPS[i].into(), LINK_PORT),
                slots,
                storage,
            )
            .unwrap();
            nodes.push(NodeHost {
                smol,
                device,
                tun: None,
                peer,
            });
        }
        World {
            now,
            hub: Hub {
                impairment,
                dice: Dice::new(seed),
                in_flight: Vec::new(),
                seq: 0,
                carried: 0,
                lost: 0,
                unroutable: 0,
            },
            nodes,
            hosts: Vec::new(),
        }
    }

    /// Adds a customer host at `ip`; returns its index.
    pub fn host(&mut self, ip: Ipv4Address) -> usize {
        let mut device = QueueDevice::default();
        let iface = iface_for(ip, &mut device, self.now, 99 + self.hosts.len() as u64);
        self.hosts.push(Host {
            iface,
            device,
            sockets: SocketSet::new(vec![]),
            echo: Vec::new(),
            inbox: Vec::new(),
            ip,
        });
        self.hosts.len() - 1
    }

    /// A UDP socket on host `h` bound to `port`.
    pub fn socket(&mut self, h: usize, port: u16, echo: bool) -> SocketHandle {
        let mut s = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 256], vec![0; 65536]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 256], vec![0; 65536]),
        );
        s.bind(port).unwrap();
        let host = &mut self.hosts[h];
        let handle = host.sockets.add(s);
        if echo {
            host.echo.push(handle);
        }
        handle
    }

    /// Host `h` sends `payload` from `socket` to `to`.
    pub fn send(&mut self, h: usize, socket: SocketHandle, to: SocketAddr, payload: &[u8]) {
        self.hosts[h]
            .sockets
            .get_mut::<udp::Socket>(socket)
            .send_slice(payload, to)
            .unwrap();
        self.settle();
    }

    /// Adds a service to node `n`.
    pub fn service(&mut self, n: usize, config: ServiceConfig) {
        self.nodes[n].smol.node_mut().add_service(config).unwrap();
        self.settle();
    }

    /// Gives node `n` a router device for router entry `service`.
    pub fn tun(&mut self, n: usize, service: u8) {
        self.nodes[n].tun = Some((ServiceId::new(service), QueueDevice::default()));
    }

    /// Brings the link up, X initiating, and checks it is.
    pub fn up(&mut self) {
        let (peer, t) = (self.nodes[X].peer, sdt_smoltcp::core_instant(self.now));
        self.nodes[X].smol.node_mut().connect(peer, t);
        self.run_for(Duration::from_secs(30));
        assert!(self.is_up(), "link did not come up");
    }

    pub fn is_up(&self) -> bool {
        let t = sdt_smoltcp::core_instant(self.now);
        (0..2).all(|i| {
            self.nodes[i]
                .smol
                .node()
                .link()
                .is_up(self.nodes[i].peer, t)
        })
    }

    /// Polls everything once and moves packets due now. True if anything
    /// moved.
    fn step(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for n in &mut self.nodes {
            match &mut n.tun {
                Some((service, tun)) => {
                    moved |= n.smol.poll_with_tun(now, &mut n.device, *service, tun);
                }
                None => {
                    moved |= n.smol.poll(now, &mut n.device);
                }
            }
        }
        for h in &mut self.hosts {
            h.iface.poll(now, &mut h.device, &mut h.sockets);
            let handles: Vec<SocketHandle> = h.sockets.iter().map(|(handle, _)| handle).collect();
            for handle in handles {
                let s = h.sockets.get_mut::<udp::Socket>(handle);
                while let Ok((data, meta)) = s.recv() {
                    let data = data.to_vec();
                    let from = SocketAddr::new(meta.endpoint.addr.into(), meta.endpoint.port);
                    if h.echo.contains(&handle) {
                        s.send_slice(&data, meta.endpoint).unwrap();
                    } else {
                        h.inbox.push((handle, from, data));
                    }
                    moved = true;
                }
            }
            h.iface.poll(now, &mut h.device, &mut h.sockets);
        }
        // Collect what every interface sent.
        let mut sent = Vec::new();
        for n in &mut self.nodes {
            sent.extend(n.device.tx.drain(..));
        }
        for h in &mut self.hosts {
            sent.extend(h.device.tx.drain(..));
        }
        for bytes in sent {
            moved = true;
            self.hub.accept(now, bytes);
        }
        // Deliver what is due.
        while let Some(p) = self.hub.next_due(now) {
            moved = true;
            let dst = destination(&p.bytes);
            let device = self
                .nodes
                .iter_mut()
                .enumerate()
                .find(|(i, _)| Some(NODE_IPS[*i]) == dst)
                .map(|(_, n)| &mut n.device)
                .or_else(|| {
                    self.hosts
                        .iter_mut()
                        .find(|h| Some(h.ip) == dst)
                        .map(|h| &mut h.device)
                });
            match device {
                Some(d) => d.rx.push_back(p.bytes),
                None => self.hub.unroutable += 1,
            }
        }
        moved
    }

    /// Moves everything due now, without advancing time.
    pub fn settle(&mut self) {
        for _ in 0..100_000 {
            if !self.step() {
                return;
            }
        }
        panic!("network did not settle");
    }

    /// Advances the fake clock by `d`, jumping from deadline to deadline.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.settle();
            let mut next: Option<Instant> = self.hub.in_flight.iter().map(|p| p.at).min();
            let now = self.now;
            for n in &mut self.nodes {
                if let Some(delay) = n.smol.poll_delay(now) {
                    next = Some(next.map_or(now + delay, |t| t.min(now + delay)));
                }
            }
            for h in &mut self.hosts {
                if let Some(delay) = h.iface.poll_delay(now, &h.sockets) {
                    next = Some(next.map_or(now + delay, |t| t.min(now + delay)));
                }
            }
            match next {
                Some(t) if t <= end => {
                    // Never stand still: a zero delay with nothing to move
                    // would loop forever.
                    self.now = t.max(self.now + Duration::from_micros(1));
                }
                _ => break,
            }
        }
        self.now = end;
        self.settle();
    }

    /// Takes what host `h` received.
    pub fn inbox(&mut self, h: usize) -> Vec<(SocketHandle, SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.hosts[h].inbox)
    }

    /// The service stats of node `n`.
    pub fn stats(&self, n: usize, service: u8) -> sdt_core::node::ServiceStats {
        self.nodes[n]
            .smol
            .node()
            .service_stats(ServiceId::new(service))
            .unwrap()
    }

    /// Where node `n`'s customer socket `socket` is bound.
    pub fn local(&self, n: usize, socket: SocketId) -> smoltcp::wire::IpListenEndpoint {
        self.nodes[n].smol.local_endpoint(socket).unwrap()
    }
}

impl Hub {
    fn accept(&mut self, now: Instant, bytes: Vec<u8>) {
        let imp = self.impairment;
        if self.dice.chance(imp.loss) {
            self.lost += 1;
            return;
        }
        let jitter = if imp.jitter.total_micros() > 0 {
            Duration::from_micros(self.dice.next() % imp.jitter.total_micros())
        } else {
            Duration::ZERO
        };
        self.seq += 1;
        self.carried += 1;
        self.in_flight.push(InFlight {
            at: now + imp.latency + jitter,
            seq: self.seq,
            bytes,
        });
    }

    fn next_due(&mut self, now: Instant) -> Option<InFlight> {
        let i = self
            .in_flight
            .iter()
            .enumerate()
            .filter(|(_, p)| p.at <= now)
            .min_by_key(|(_, p)| (p.at, p.seq))
            .map(|(i, _)| i)?;
        Some(self.in_flight.remove(i))
    }
}

/// The IPv4 destination of a packet.
fn destination(bytes: &[u8]) -> Option<Ipv4Address> {
    let p = smoltcp::wire::Ipv4Packet::new_checked(bytes).ok()?;
    Some(p.dst_addr())
}
