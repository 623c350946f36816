//! Two sdt nodes on one Cortex-M4F, joined by an in-memory wire: the
//! smoltcp runtime running on the chip, measured.
//!
//! Node X holds the entry of a forward service, node Y its exit; a client
//! host C sends to X's service socket and an echo host E behind Y sends
//! everything back. All four are smoltcp interfaces on one wire that routes
//! IPv4 packets by destination. The firmware does the handshake, carries
//! 64 B and 1400 B datagrams both ways, checks every echo and that nothing
//! was dropped, then reports what each step cost and exits (QEMU's exit
//! status is the verdict). `tests/qemu.rs` runs it and checks the report.
//!
//! ```sh
//! cargo build --profile firmware -p sdt-smoltcp --example firmware_pair \
//!     --target thumbv7em-none-eabihf --no-default-features
//! qemu-system-arm -M mps2-an386 -nographic -icount shift=0 \
//!     -semihosting-config enable=on,target=native \
//!     -kernel target/thumbv7em-none-eabihf/firmware/examples/firmware_pair
//! ```
//!
//! Costs are counted only while a node polls (its smoltcp interface, its
//! sockets, the node), not while the wire or the hosts work. Under
//! `-icount shift=0` they are QEMU's instruction counts (see
//! `examples/board`), not cycles of a real chip. The clock is simulated:
//! when nothing moves, time jumps to the next deadline.
//!
//! On the host (`cargo run -p sdt-smoltcp --example firmware_pair`) the
//! same code runs and reports host nanoseconds.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[path = "board/mod.rs"]
mod board;

use core::net::SocketAddr;
use core::str::FromStr;

use board::{report, Board};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sdt_core::key::{PrivateKey, PublicKey};
use sdt_core::link::{PeerConfig, PeerId};
use sdt_core::node::{ChannelLimits, Node, Peers, Role, ServiceConfig, ServiceId};
use sdt_smoltcp::{RuntimeStats, SmolNode, Storage};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};

/// One peer, one service, four channels.
const CHANNELS: usize = 4;
type PairNode = SmolNode<'static, ChaCha20Rng, 1, 1, CHANNELS>;
/// The link socket, the service socket, two exit channels.
const SOCKETS: usize = 4;
const PKTS: usize = 4;
const BYTES: usize = 4096;
type NodeStorage = Storage<SOCKETS, PKTS, BYTES>;

// The keys of examples/forward: X and Y.
const X_KEY: &str = "PK3Mg5mtzaZg01iHo6jetW2iRmGw8wcq3R62VpY3V18=";
const Y_KEY: &str = "FyeisJWVl+ZQvB8+fKnJHgnYhqpLisfAXw/4aM5Yx1Y=";
const UNIX_NANOS_AT_BOOT: u64 = 1_700_000_000_000_000_000;
const LINK_PORT: u16 = 51820;
const SERVICE_PORT: u16 = 5000;
const ECHO_PORT: u16 = 7;
const CLIENT_PORT: u16 = 40000;

/// Ports of the wire: X, Y, C, E at 10.0.0.1 to 10.0.0.4.
const X: usize = 0;
const Y: usize = 1;
const C: usize = 2;
const E: usize = 3;
const PORTS: usize = 4;

fn ip(port: usize) -> Ipv4Address {
    Ipv4Address::new(10, 0, 0, port as u8 + 1)
}

fn addr(port: usize, udp: u16) -> SocketAddr {
    SocketAddr::new(ip(port).into(), udp)
}

/// Datagrams of each size carried (each there and back).
const ROUND_TRIPS: u32 = 20;
const SIZES: [usize; 2] = [64, 1400];

// ---- the wire ----

const FRAME: usize = 1500;
const RING: usize = 8;

/// A queue of packets in fixed buffers: what one interface sent, or what it
/// will receive.
struct Ring {
    buf: [[u8; FRAME]; RING],
    len: [usize; RING],
    head: usize,
    count: usize,
}

impl Ring {
    const fn new() -> Ring {
        Ring {
            buf: [[0; FRAME]; RING],
            len: [0; RING],
            head: 0,
            count: 0,
        }
    }

    fn front(&self) -> Option<&[u8]> {
        (self.count > 0).then(|| &self.buf[self.head][..self.len[self.head]])
    }

    fn pop(&mut self) {
        if self.count > 0 {
            self.head = (self.head + 1) % RING;
            self.count -= 1;
        }
    }

    fn is_full(&self) -> bool {
        self.count == RING
    }

    /// The next free buffer, `len` bytes long; counted in by `commit`.
    fn tail(&mut self, len: usize) -> &mut [u8] {
        let i = (self.head + self.count) % RING;
        self.len[i] = len.min(FRAME);
        &mut self.buf[i][..len.min(FRAME)]
    }

    fn commit(&mut self) {
        self.count = (self.count + 1).min(RING);
    }
}

/// Every port's queues. Interfaces transmit into their `tx` ring;
/// [`Wire::deliver`] moves packets to the `rx` ring of the port owning the
/// destination address, outside the measured polls.
struct Wire {
    rx: [Ring; PORTS],
    tx: [Ring; PORTS],
    unroutable: u32,
}

impl Wire {
    const fn new() -> Wire {
        Wire {
            rx: [const { Ring::new() }; PORTS],
            tx: [const { Ring::new() }; PORTS],
            unroutable: 0,
        }
    }

    fn port(&mut self, i: usize) -> Port<'_> {
        Port {
            rx: &mut self.rx[i],
            tx: &mut self.tx[i],
        }
    }

    /// Moves what can be moved; true if anything did. A full receive ring
    /// leaves the packet where it is (back-pressure, not loss).
    fn deliver(&mut self) -> bool {
        let mut moved = false;
        for tx in &mut self.tx {
            while let Some(packet) = tx.front() {
                let dst = packet.get(16..20).map(|d| [d[0], d[1], d[2], d[3]]);
                let port = match dst {
                    Some([10, 0, 0, n]) if (1..=PORTS as u8).contains(&n) => n as usize - 1,
                    _ => {
                        self.unroutable += 1;
                        tx.pop();
                        continue;
                    }
                };
                let rx = &mut self.rx[port];
                if rx.is_full() {
                    break;
                }
                rx.tail(packet.len()).copy_from_slice(packet);
                rx.commit();
                tx.pop();
                moved = true;
            }
        }
        moved
    }
}

/// One port of the wire as a smoltcp device (medium IP).
struct Port<'a> {
    rx: &'a mut Ring,
    tx: &'a mut Ring,
}

struct PortRx<'a>(&'a mut Ring);
struct PortTx<'a>(&'a mut Ring);

impl phy::RxToken for PortRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(self.0.front().unwrap_or(&[]));
        self.0.pop();
        r
    }
}

impl phy::TxToken for PortTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let r = f(self.0.tail(len));
        self.0.commit();
        r
    }
}

impl Device for Port<'_> {
    type RxToken<'a>
        = PortRx<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = PortTx<'a>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(PortRx<'_>, PortTx<'_>)> {
        if self.rx.front().is_none() || self.tx.is_full() {
            return None;
        }
        Some((PortRx(self.rx), PortTx(self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<PortTx<'_>> {
        (!self.tx.is_full()).then_some(PortTx(self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = FRAME;
        caps
    }
}

fn iface(port: usize, wire: &mut Wire, now: Instant) -> Interface {
    let mut config = Config::new(HardwareAddress::Ip);
    config.random_seed = port as u64 + 1;
    let mut iface = Interface::new(config, &mut wire.port(port), now);
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(ip(port)), 24));
    });
    iface
}

// ---- the hosts ----

/// A plain smoltcp host with one UDP socket.
struct Host {
    iface: Interface,
    sockets: SocketSet<'static>,
    socket: SocketHandle,
}

struct HostBuffers {
    slots: [SocketStorage<'static>; 1],
    meta: [[udp::PacketMetadata; 8]; 2],
    bytes: [[u8; 8192]; 2],
}

impl HostBuffers {
    const fn new() -> HostBuffers {
        HostBuffers {
            slots: [SocketStorage::EMPTY; 1],
            meta: [[udp::PacketMetadata::EMPTY; 8]; 2],
            bytes: [[0; 8192]; 2],
        }
    }
}

impl Host {
    fn new(
        port: usize,
        udp_port: u16,
        b: &'static mut HostBuffers,
        wire: &mut Wire,
        now: Instant,
    ) -> Host {
        let [rm, tm] = &mut b.meta;
        let [r, t] = &mut b.bytes;
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(&mut rm[..], &mut r[..]),
            udp::PacketBuffer::new(&mut tm[..], &mut t[..]),
        );
        socket.bind(udp_port).expect("bind a host socket");
        let mut sockets = SocketSet::new(&mut b.slots[..]);
        let socket = sockets.add(socket);
        Host {
            iface: iface(port, wire, now),
            sockets,
            socket,
        }
    }

    fn udp(&mut self) -> &mut udp::Socket<'static> {
        self.sockets.get_mut::<udp::Socket>(self.socket)
    }
}

// ---- the nodes ----

/// Where a node's statics go: built in place at boot, so they land in
/// .bss (see examples/firmware.rs).
struct NodeBuffers {
    storage: NodeStorage,
    slots: [SocketStorage<'static>; SOCKETS],
}

impl NodeBuffers {
    const fn new() -> NodeBuffers {
        NodeBuffers {
            storage: Storage::new(),
            slots: [SocketStorage::EMPTY; SOCKETS],
        }
    }
}

fn node(
    me: usize,
    key: &str,
    peer_key: PublicKey,
    role: Role,
    b: &'static mut NodeBuffers,
    wire: &mut Wire,
    now: Instant,
) -> (PairNode, PeerId) {
    let t = sdt_smoltcp::core_instant(now);
    let key = PrivateKey::from_str(key).expect("private key");
    let rng = ChaCha20Rng::from_seed([me as u8 + 1; 32]);
    let mut node = Node::new(key, rng, t, UNIX_NANOS_AT_BOOT);
    let mut peer = PeerConfig::new(peer_key);
    // Only the entry knows where its peer is, as a board behind NAT
    // would: the exit learns X's endpoint from the handshake and never
    // initiates one itself (no handshake race to count).
    if me == X {
        peer.endpoint = Some(addr(Y, LINK_PORT));
    }
    let peer = node.add_peer(peer, t).expect("peer");
    let mut service = ServiceConfig::new(ServiceId::new(1), Peers::One(peer), role);
    service.limits = ChannelLimits {
        max_channels: CHANNELS as u16,
        ..ChannelLimits::default()
    };
    node.add_service(service).expect("service");
    let iface = iface(me, wire, now);
    let NodeBuffers { storage, slots } = b;
    let smol = SmolNode::new(node, iface, addr(me, LINK_PORT), &mut slots[..], storage)
        .expect("node storage");
    (smol, peer)
}

// ---- the run ----

struct World {
    board: Board,
    now: Instant,
    wire: &'static mut Wire,
    nodes: [PairNode; 2],
    peers: [PeerId; 2],
    client: Host,
    echo: Host,
    /// Cost of each node's polls since the last `take_costs`, in ticks.
    ticks: [u64; 2],
    /// The most stack each node's poll used, below the caller's frame.
    depth: [usize; 2],
    /// Echoes the client received, and whether every one matched.
    echoes: u32,
    intact: bool,
    expected: [u8; FRAME],
    expected_len: usize,
}

impl World {
    /// Polls every interface once and moves the wire; true if anything
    /// moved.
    fn step(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for (i, node) in self.nodes.iter_mut().enumerate() {
            // Outside the measured time: paints 32 KiB of stack below here.
            self.board.repaint(8 * 1024);
            let start = self.board.now();
            while node.poll(now, &mut self.wire.port(i)) {
                moved = true;
            }
            while node.poll_event().is_some() {}
            self.ticks[i] += self.board.since(start);
            self.depth[i] = self.depth[i].max(self.board.depth().unwrap_or(usize::MAX));
        }
        // The echo host sends back everything it gets.
        let e = &mut self.echo;
        moved |= e.iface.poll(now, &mut self.wire.port(E), &mut e.sockets)
            == smoltcp::iface::PollResult::SocketStateChanged;
        let mut datagram = [0; FRAME];
        while let Ok((len, meta)) = e.udp().recv_slice(&mut datagram) {
            let _ = e.udp().send_slice(&datagram[..len], meta.endpoint);
            moved = true;
        }
        e.iface.poll(now, &mut self.wire.port(E), &mut e.sockets);
        let c = &mut self.client;
        moved |= c.iface.poll(now, &mut self.wire.port(C), &mut c.sockets)
            == smoltcp::iface::PollResult::SocketStateChanged;
        while let Ok((len, _)) = c.udp().recv_slice(&mut datagram) {
            self.echoes += 1;
            self.intact &= datagram[..len] == self.expected[..self.expected_len];
            moved = true;
        }
        moved | self.wire.deliver()
    }

    /// Runs until `done` holds or `limit` of simulated time passed; false
    /// on the limit.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&World) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            while self.step() {}
            if done(self) {
                return true;
            }
            let now = self.now;
            let mut next = now + Duration::from_millis(1000);
            for node in &mut self.nodes {
                if let Some(d) = node.poll_delay(now) {
                    next = next.min(now + d);
                }
            }
            for h in [&mut self.client, &mut self.echo] {
                if let Some(d) = h.iface.poll_delay(now, &h.sockets) {
                    next = next.min(now + d);
                }
            }
            // Never stand still: a zero delay with nothing to move would
            // loop forever.
            self.now = next.max(now + Duration::from_micros(1));
            if self.now > end {
                return false;
            }
        }
    }

    fn is_up(&self) -> bool {
        let t = sdt_smoltcp::core_instant(self.now);
        (0..2).all(|i| self.nodes[i].node().link().is_up(self.peers[i], t))
    }

    fn take_costs(&mut self) -> [u64; 2] {
        let ticks = core::mem::take(&mut self.ticks);
        ticks.map(|t| self.board.cost(t))
    }

    /// Sends `size`-byte datagrams from the client one at a time and waits
    /// for each echo; returns the round trips done.
    fn carry(&mut self, size: usize) -> u32 {
        for n in 0..ROUND_TRIPS {
            for (i, b) in self.expected[..size].iter_mut().enumerate() {
                *b = (i as u32 ^ n) as u8;
            }
            self.expected_len = size;
            let to = IpEndpoint::new(ip(X).into(), SERVICE_PORT);
            let payload = self.expected;
            if self.client.udp().send_slice(&payload[..size], to).is_err() {
                return n;
            }
            let want = self.echoes + 1;
            if !self.run_until(Duration::from_secs(1), |w| w.echoes >= want) {
                return n;
            }
        }
        ROUND_TRIPS
    }

    /// Every drop the two nodes and the wire counted, each reason
    /// reported.
    fn drops(&self) -> u64 {
        let mut drops = u64::from(self.wire.unroutable);
        if drops > 0 {
            report!("unroutable on the wire: {}", drops);
        }
        let t = sdt_smoltcp::core_instant(self.now);
        for (i, node) in self.nodes.iter().enumerate() {
            let name = ["X", "Y"][i];
            let n = node.node();
            let service = n
                .service_stats(ServiceId::new(1))
                .map(|s| s.drops)
                .unwrap_or_default();
            for (reason, count) in n.node_drops().iter().chain(service.iter()) {
                report!("{} dropped {} as {:?}", name, count, reason);
                drops += count;
            }
            let peer = n.link().peer(self.peers[i], t).map(|p| p.stats.drops);
            let link = n.link().unattributed_drops().iter();
            for (reason, count) in peer.unwrap_or_default().iter().chain(link) {
                report!("{} link dropped {} as {:?}", name, count, reason);
                drops += count;
            }
            let stats = node.stats();
            if *stats != RuntimeStats::default() {
                report!("{} runtime counted {:?}", name, stats);
                // `node_drops` repeats drops counted above.
                drops += stats.stray + stats.oversize + stats.send_full + stats.send_failed;
                drops += stats.open_failed + stats.tun_failed + stats.events_lost;
            }
        }
        drops
    }
}

fn run(
    board: Board,
    wire: &'static mut Wire,
    buffers: [&'static mut NodeBuffers; 2],
    hosts: [&'static mut HostBuffers; 2],
) -> bool {
    let now = Instant::from_secs(1);
    let x_public = PrivateKey::from_str(X_KEY).expect("key").public_key();
    let y_public = PrivateKey::from_str(Y_KEY).expect("key").public_key();
    let [bx, by] = buffers;
    let [bc, be] = hosts;
    let start = board.now();
    let entry = Role::ForwardEntry {
        listen: addr(X, SERVICE_PORT),
    };
    let (x, px) = node(X, X_KEY, y_public, entry, bx, wire, now);
    let exit = Role::ForwardExit {
        target: addr(E, ECHO_PORT),
    };
    let (y, py) = node(Y, Y_KEY, x_public, exit, by, wire, now);
    let setup = board.cost(board.since(start)) / 2;
    report!(
        "setup: one node (keys, peer, service, interface): {} {}",
        setup,
        Board::UNIT
    );
    let client = Host::new(C, CLIENT_PORT, bc, wire, now);
    let echo = Host::new(E, ECHO_PORT, be, wire, now);
    let mut w = World {
        board,
        now,
        wire,
        nodes: [x, y],
        peers: [px, py],
        client,
        echo,
        ticks: [0; 2],
        depth: [0; 2],
        echoes: 0,
        intact: true,
        expected: [0; FRAME],
        expected_len: 0,
    };
    #[cfg(target_os = "none")]
    report!(
        "calibration: {} instructions per SysTick tick",
        w.board.per_tick()
    );

    let t = sdt_smoltcp::core_instant(w.now);
    w.nodes[X].node_mut().connect(px, t);
    let begun = w.now;
    if !w.run_until(Duration::from_secs(30), World::is_up) {
        report!("FAIL: the link did not come up");
        return false;
    }
    let [init, resp] = w.take_costs();
    report!(
        "handshake: done in {} ms simulated; initiator {} {}, responder {} {}",
        (w.now - begun).total_millis(),
        init,
        Board::UNIT,
        resp,
        Board::UNIT
    );

    let mut ok = true;
    for size in SIZES {
        let done = w.carry(size);
        let [cx, cy] = w.take_costs();
        let trips = u64::from(done.max(1));
        // Each round trip is one datagram each way through each node: a
        // seal and an open on X, an open and a seal on Y.
        report!(
            "datagram {} B: {}/{} round trips; per datagram per node {} {} (entry X: {} per round trip, exit Y: {})",
            size,
            done,
            ROUND_TRIPS,
            (cx + cy) / (4 * trips),
            Board::UNIT,
            cx / trips,
            cy / trips
        );
        ok &= done == ROUND_TRIPS;
    }
    let to_peer = w.nodes[X]
        .node()
        .service_stats(ServiceId::new(1))
        .map(|s| s.to_peer.datagrams);
    let from_peer = w.nodes[X]
        .node()
        .service_stats(ServiceId::new(1))
        .map(|s| s.from_peer.datagrams);
    report!(
        "carried: {} datagrams to the peer, {} back, {} echoes, all intact: {}",
        to_peer.unwrap_or(0),
        from_peer.unwrap_or(0),
        w.echoes,
        w.intact
    );
    let drops = w.drops();
    report!("drops: {}", drops);
    #[cfg(target_os = "none")]
    report!(
        "stack per poll: entry X {} bytes, exit Y {} bytes",
        w.depth[X],
        w.depth[Y]
    );
    let want = u64::from(ROUND_TRIPS) * SIZES.len() as u64;
    ok &= w.intact && drops == 0 && to_peer == Some(want) && from_peer == Some(want);
    report!("{}", if ok { "OK" } else { "FAIL" });
    ok
}

#[cfg(target_os = "none")]
#[cortex_m_rt::entry]
fn main() -> ! {
    // cortex-m-rt hands these to `main` as `&'static mut`, once. Written in
    // place at boot so that they land in .bss, not .data.
    static mut WIRE: core::mem::MaybeUninit<Wire> = core::mem::MaybeUninit::uninit();
    static mut NODES: [core::mem::MaybeUninit<NodeBuffers>; 2] =
        [const { core::mem::MaybeUninit::uninit() }; 2];
    static mut HOSTS: [core::mem::MaybeUninit<HostBuffers>; 2] =
        [const { core::mem::MaybeUninit::uninit() }; 2];
    let board = Board::take();
    let wire = WIRE.write(Wire::new());
    let [nx, ny] = NODES;
    let [hc, he] = HOSTS;
    let nodes = [nx.write(NodeBuffers::new()), ny.write(NodeBuffers::new())];
    let hosts = [hc.write(HostBuffers::new()), he.write(HostBuffers::new())];
    board::exit(run(board, wire, nodes, hosts))
}

#[cfg(not(target_os = "none"))]
fn main() {
    let board = Board::take();
    let wire = Box::leak(Box::new(Wire::new()));
    let nodes = [(); 2].map(|_| Box::leak(Box::new(NodeBuffers::new())));
    let hosts = [(); 2].map(|_| Box::leak(Box::new(HostBuffers::new())));
    board::exit(run(board, wire, nodes, hosts))
}
