//! A firmware on a real network: one node on QEMU's `mps2-an386` (a
//! Cortex-M4F) talking through the board's LAN9118 Ethernet to the `sdt`
//! daemon on the host. `tests/board.rs` runs it against `sdt run` in a
//! network namespace and carries datagrams both ways, across a reset of
//! the board.
//!
//! ```text
//!  board 10.79.0.2 (this firmware)          host 10.79.0.1 (tap "sdtb0")
//!  service 1: forward entry, listen :5000 -> the daemon's exit -> echo :9000
//!  service 2: forward exit -> echo :9001  <- the daemon's entry, listen :5001
//!  link :51820                          <-> the daemon, :51820
//! ```
//!
//! ```sh
//! cargo build --profile firmware -p sdt-smoltcp --example firmware_net \
//!     --target thumbv7em-none-eabihf --no-default-features --features ethernet
//! qemu-system-arm -M mps2-an386 -nographic \
//!     -semihosting-config enable=on,target=native \
//!     -nic tap,ifname=sdtb0,script=no,downscript=no \
//!     -kernel target/thumbv7em-none-eabihf/firmware/examples/firmware_net
//! ```
//!
//! It runs in real time (no `-icount`): the clock is the CMSDK timer 0 and
//! the core sleeps in `WFI` between SysTick interrupts every millisecond
//! (`examples/board/clock.rs`). It reports over semihosting: a boot line,
//! the node's events, and a status line every five seconds (with the
//! stack's high-water marks); it never exits.
//!
//! TEST ONLY, each marked `TEST ONLY` below: the keys are those of
//! examples/forward, compiled in; the RNG is seeded from the boot time
//! (a real board uses its TRNG); the wall clock is the host's, over
//! semihosting (a real board has an RTC).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
#[path = "board/mod.rs"]
mod board;

#[cfg(target_os = "none")]
#[path = "board/clock.rs"]
mod clock;

#[cfg(target_os = "none")]
#[path = "board/lan9118.rs"]
mod lan9118;

#[cfg(target_os = "none")]
mod firmware {
    use core::mem::MaybeUninit;
    use core::net::SocketAddr;
    use core::str::FromStr;

    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use sdt_core::key::{PrivateKey, PublicKey};
    use sdt_core::link::{PeerConfig, PeerId};
    use sdt_core::node::{ChannelLimits, Node, Peers, Role, ServiceConfig, ServiceId};
    use sdt_smoltcp::{core_instant, SmolNode, Storage};
    use smoltcp::iface::{Config, Interface, SocketStorage};
    use smoltcp::time::{Duration, Instant};
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

    use crate::board::{report, Board};
    use crate::clock::{self, Clock};
    use crate::lan9118::{Lan9118, MPS2_BASE};

    const CHANNELS: usize = 4;
    /// One peer, two services, four channels.
    pub type NetNode = SmolNode<'static, ChaCha20Rng, 1, 2, CHANNELS>;
    /// The link socket, service 1's socket, service 2's exit channels.
    pub const SOCKETS: usize = 2 + CHANNELS;
    const PKTS: usize = 8;
    const BYTES: usize = 4096;
    pub type NetStorage = Storage<SOCKETS, PKTS, BYTES>;

    // TEST ONLY: the keys of examples/forward (X's private key, Y's public
    // key), compiled in; tests/board.rs gives the daemon Y's.
    const PRIVATE_KEY: &str = "PK3Mg5mtzaZg01iHo6jetW2iRmGw8wcq3R62VpY3V18=";
    const PEER_KEY: &str = "ilBDt2h5t5o+gVqwZl1rAVIey7RR5X1XgsRZOIHSCFw=";
    /// A locally administered address.
    const MAC: [u8; 6] = [0x02, 0x00, 0x5d, 0x79, 0x00, 0x02];
    const IP: Ipv4Address = Ipv4Address::new(10, 79, 0, 2);
    const HOST: [u8; 4] = [10, 79, 0, 1];
    const LINK_PORT: u16 = 51820;
    const STATUS_EVERY: Duration = Duration::from_secs(5);

    /// Builds the node: key, peer, both services, the interface.
    fn setup(
        storage: &'static mut NetStorage,
        slots: &'static mut [SocketStorage<'static>],
        device: &mut Lan9118,
        now: Instant,
        unix_nanos: u64,
    ) -> (NetNode, PeerId) {
        let t = core_instant(now);
        // TEST ONLY: a TRNG seeds the RNG; the boot time at least differs
        // from boot to boot.
        let mut seed = [0x5d; 32];
        seed[..8].copy_from_slice(&unix_nanos.to_le_bytes());
        let rng = ChaCha20Rng::from_seed(seed);
        let key = PrivateKey::from_str(PRIVATE_KEY).expect("private key");
        let mut node = Node::new(key, rng, t, unix_nanos);
        let mut peer = PeerConfig::new(PublicKey::from_str(PEER_KEY).expect("peer key"));
        peer.endpoint = Some(SocketAddr::from((HOST, LINK_PORT)));
        let peer = node.add_peer(peer, t).expect("peer");
        let limits = ChannelLimits {
            max_channels: CHANNELS as u16,
            ..ChannelLimits::default()
        };
        let entry = Role::ForwardEntry {
            listen: SocketAddr::from((IP.octets(), 5000)),
        };
        let exit = Role::ForwardExit {
            target: SocketAddr::from((HOST, 9001)),
        };
        for (id, role) in [(ServiceId::new(1), entry), (ServiceId::new(2), exit)] {
            let mut service = ServiceConfig::new(id, Peers::One(peer), role);
            service.limits = limits;
            node.add_service(service).expect("service");
        }
        node.connect(peer, t);

        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(MAC)));
        config.random_seed = u64::from_le_bytes([seed[0], seed[1], seed[2], seed[3], 1, 2, 3, 4]);
        let mut iface = Interface::new(config, device, now);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(IP), 24));
        });
        let link = SocketAddr::from((IP.octets(), LINK_PORT));
        let smol = SmolNode::new(node, iface, link, slots, storage).expect("node storage");
        (smol, peer)
    }

    /// Builds the node into its static (the temporaries of building it
    /// stay in this frame, off the main loop's stack).
    #[inline(never)]
    fn build(
        node: &'static mut MaybeUninit<NetNode>,
        storage: &'static mut MaybeUninit<NetStorage>,
        slots: &'static mut MaybeUninit<[SocketStorage<'static>; SOCKETS]>,
        device: &mut Lan9118,
        now: Instant,
        unix_nanos: u64,
    ) -> (&'static mut NetNode, PeerId) {
        let storage = storage.write(Storage::new());
        let slots = slots.write([SocketStorage::EMPTY; SOCKETS]);
        let (smol, peer) = setup(storage, &mut slots[..], device, now, unix_nanos);
        (node.write(smol), peer)
    }

    fn status(node: &NetNode, peer: PeerId, device: &Lan9118, now: Instant, board: &Board) {
        let t = core_instant(now);
        let n = node.node();
        let up = n.link().is_up(peer, t);
        let carried = |id| {
            n.service_stats(id)
                .map(|s| (s.to_peer.datagrams, s.from_peer.datagrams))
                .unwrap_or_default()
        };
        let (s1_to, s1_from) = carried(ServiceId::new(1));
        let (s2_to, s2_from) = carried(ServiceId::new(2));
        let drops: u64 = n.node_drops().iter().map(|(_, c)| c).sum();
        if let Some(peak) = board.stack_peak() {
            report!("stack peak, running: {}", peak);
        }
        report!(
            "status: at {} ms link up {}; service 1 {} to the peer, {} back; service 2 {} to the peer, {} back; node drops {}; {:?}",
            now.total_millis(),
            up,
            s1_to,
            s1_from,
            s2_to,
            s2_from,
            drops,
            device.stats()
        );
    }

    pub fn run(
        mut board: Board,
        mut clock: Clock,
        device: &'static mut MaybeUninit<Lan9118>,
        node: &'static mut MaybeUninit<NetNode>,
        storage: &'static mut MaybeUninit<NetStorage>,
        slots: &'static mut MaybeUninit<[SocketStorage<'static>; SOCKETS]>,
    ) -> ! {
        // SAFETY: the MPS2 boards' LAN9118, used by this driver alone.
        let device = match unsafe { Lan9118::new(MPS2_BASE, MAC) } {
            Ok(chip) => device.write(chip),
            Err(e) => {
                report!("FAIL: no LAN9118: {:?}", e);
                crate::board::exit(false)
            }
        };
        // TEST ONLY: an RTC; here the host's clock over semihosting.
        let (now, unix_nanos) = clock::wall_clock(&mut clock);
        let (node, peer) = build(node, storage, slots, device, now, unix_nanos);
        match board.stack_peak() {
            Some(peak) => report!("stack peak, setup: {}", peak),
            None => report!("stack peak, setup: past the painted window"),
        }
        // From here on, the main loop's.
        board.repaint(16 * 1024);
        report!(
            "boot: lan9118 up, phy link {}, mac {}, ip {}, peer {}.{}.{}.{}:{}",
            device.link_up(),
            EthernetAddress(MAC),
            IP,
            HOST[0],
            HOST[1],
            HOST[2],
            HOST[3],
            LINK_PORT
        );
        let mut was_up = false;
        let mut next_status = now + STATUS_EVERY;
        loop {
            let now = clock.now();
            while node.poll(now, device) {}
            while let Some(event) = node.poll_event() {
                report!("event: {:?}", event);
            }
            let up = node.node().link().is_up(peer, core_instant(now));
            if up != was_up {
                report!("link: {}", if up { "up" } else { "down" });
                was_up = up;
            }
            if now >= next_status {
                status(node, peer, device, now, &board);
                next_status = now + STATUS_EVERY;
            }
            // The next SysTick (1 ms) ends the sleep: poll_delay's deadline
            // is never missed by more than that.
            if node.poll_delay(now) != Some(Duration::ZERO) {
                clock::sleep();
            }
        }
    }
}

#[cfg(target_os = "none")]
#[cortex_m_rt::entry]
fn main() -> ! {
    // cortex-m-rt hands these to `main` as `&'static mut`, once; written at
    // boot so that they land in .bss, not .data.
    static mut DEVICE: core::mem::MaybeUninit<lan9118::Lan9118> = core::mem::MaybeUninit::uninit();
    static mut NODE: core::mem::MaybeUninit<firmware::NetNode> = core::mem::MaybeUninit::uninit();
    static mut STORAGE: core::mem::MaybeUninit<firmware::NetStorage> =
        core::mem::MaybeUninit::uninit();
    static mut SLOTS: core::mem::MaybeUninit<
        [smoltcp::iface::SocketStorage<'static>; firmware::SOCKETS],
    > = core::mem::MaybeUninit::uninit();
    // Paints the stack, for its high-water marks.
    let board = board::Board::stack_only();
    let mut p = cortex_m::Peripherals::take().expect("peripherals taken twice");
    let clock = clock::Clock::start(&mut p.SYST);
    firmware::run(board, clock, DEVICE, NODE, STORAGE, SLOTS)
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "firmware_net drives the LAN9118 of QEMU's mps2-an386: build it for \
         thumbv7em-none-eabihf (see its header) and run it under qemu-system-arm"
    );
    std::process::exit(2);
}
