//! A minimal firmware: one node holding the entry half of a forward service,
//! on a board with a network device, no heap and no OS. It is the firmware
//! the flash and RAM budget is checked on (README, "Embedded"): one peer,
//! one forward service, 16 channels.
//!
//! Build it for a Cortex-M4F and measure it:
//!
//! ```sh
//! cargo build -p sdt-smoltcp --example firmware --profile firmware \
//!     --target thumbv7em-none-eabihf --no-default-features
//! arm-none-eabi-size -A target/thumbv7em-none-eabihf/firmware/examples/firmware
//! ```
//!
//! It boots on QEMU's `mps2-an386` (`tests/qemu.rs`): it builds its node,
//! runs ten simulated seconds of its main loop (handshake initiations to a
//! peer that is not there), reports its stack high-water mark over
//! semihosting and exits. On the host (`cargo run -p sdt-smoltcp --example
//! firmware`) the same code runs and prints what it did.
//!
//! Placeholders a real firmware replaces, each marked `PLACEHOLDER` below:
//! the network device (a MAC or radio driver), the clock (a hardware
//! timer), the RNG seed (a hardware TRNG), the wall-clock time at start (an
//! RTC, or a counter persisted across reboots) and the keys (from
//! provisioning, not from the source).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
#[path = "board/mod.rs"]
mod board;

use core::hint::black_box;
#[cfg(target_os = "none")]
use core::mem::MaybeUninit;
use core::net::SocketAddr;

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use rand_core::{CryptoRng, RngCore};
use sdt_core::key::{PrivateKey, PublicKey};
use sdt_core::link::PeerConfig;
use sdt_core::node::{ChannelLimits, Node, Peers, Role, ServiceConfig, ServiceId};
use sdt_smoltcp::{SmolNode, Storage};
use smoltcp::iface::{Config, Interface, SocketStorage};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};

/// Channels the forward entry holds (each a client address; an entry needs
/// no socket per channel, an exit would).
const CHANNELS: usize = 16;
/// One peer, one service, 16 channels.
type Fw = SmolNode<'static, CipherRng, 1, 1, CHANNELS>;
/// The link socket and the service's socket.
const SOCKETS: usize = 2;
/// Datagrams queued per socket and direction.
const PKTS: usize = 4;
/// Bytes queued per socket and direction: one full-size datagram and some.
const BYTES: usize = 2048;

// PLACEHOLDER: keys come from provisioning. These are the keys of
// examples/forward (X's private key, Y's public key), as raw bytes: parsing
// them from base64 text (`PrivateKey::from_str`) would link a base64
// decoder, about 2.4 KiB of flash (README, "Embedded").
/// `PK3Mg5mtzaZg01iHo6jetW2iRmGw8wcq3R62VpY3V18=`
const PRIVATE_KEY: [u8; 32] = [
    0x3c, 0xad, 0xcc, 0x83, 0x99, 0xad, 0xcd, 0xa6, 0x60, 0xd3, 0x58, 0x87, 0xa3, 0xa8, 0xde, 0xb5,
    0x6d, 0xa2, 0x46, 0x61, 0xb0, 0xf3, 0x07, 0x2a, 0xdd, 0x1e, 0xb6, 0x56, 0x96, 0x37, 0x57, 0x5f,
];
/// `ilBDt2h5t5o+gVqwZl1rAVIey7RR5X1XgsRZOIHSCFw=`
const PEER_KEY: [u8; 32] = [
    0x8a, 0x50, 0x43, 0xb7, 0x68, 0x79, 0xb7, 0x9a, 0x3e, 0x81, 0x5a, 0xb0, 0x66, 0x5d, 0x6b, 0x01,
    0x52, 0x1e, 0xcb, 0xb4, 0x51, 0xe5, 0x7d, 0x57, 0x82, 0xc4, 0x59, 0x38, 0x81, 0xd2, 0x08, 0x5c,
];
// PLACEHOLDER: a hardware TRNG seeds the RNG. A constant seed makes every
// boot's ephemeral keys the same: never ship it.
const RNG_SEED: [u8; 32] = [7; 32];
// PLACEHOLDER: an RTC. Handshake timestamps must grow across reboots or
// the peer ignores the node's handshakes until the clock passes the last.
const UNIX_NANOS_AT_BOOT: u64 = 1_700_000_000_000_000_000;

/// A CSPRNG on the ChaCha20 cipher that the session AEAD links already
/// (the `chacha20` crate): its keystream under the seed as key. A separate
/// ChaCha20 RNG (`rand_chacha`) would bring a second ChaCha20 of its own,
/// about 2.3 KiB of flash (README, "Embedded"). The cipher's 32-bit block
/// counter runs out after 256 GiB of keystream; the nonce then moves on,
/// so the stream never repeats.
struct CipherRng {
    key: [u8; 32],
    nonce: u64,
    cipher: ChaCha20,
}

impl CipherRng {
    fn new(seed: [u8; 32]) -> Self {
        CipherRng {
            cipher: Self::cipher(&seed, 0),
            key: seed,
            nonce: 0,
        }
    }

    fn cipher(key: &[u8; 32], nonce: u64) -> ChaCha20 {
        let mut n = [0; 12];
        n[4..].copy_from_slice(&nonce.to_le_bytes());
        ChaCha20::new(key.into(), &n.into())
    }
}

impl RngCore for CipherRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0);
        // An error leaves `dest` as it was: this nonce's keystream is used
        // up, and the next nonce's is fresh.
        while self.cipher.try_apply_keystream(dest).is_err() {
            self.nonce = self.nonce.wrapping_add(1);
            self.cipher = Self::cipher(&self.key, self.nonce);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for CipherRng {}

/// PLACEHOLDER for a MAC or radio driver (`examples/firmware_net.rs` has a
/// real one, `examples/board/lan9118.rs`): a device with one receive slot
/// and one transmit buffer that "hardware" fills and drains. `black_box`
/// keeps the optimizer from deciding that nothing is ever received.
struct BoardDevice {
    rx: [u8; 1536],
    rx_len: usize,
    tx: [u8; 1536],
    sent: u32,
}

impl BoardDevice {
    const fn new() -> Self {
        BoardDevice {
            rx: [0; 1536],
            rx_len: 0,
            tx: [0; 1536],
            sent: 0,
        }
    }
}

struct BoardRx<'a>(&'a [u8]);
struct BoardTx<'a>(&'a mut [u8], &'a mut u32);

impl phy::RxToken for BoardRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for BoardTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(self.0.len());
        let r = f(&mut self.0[..len]);
        // Here a driver would start the DMA transfer of self.0[..len].
        *self.1 = black_box(self.1.wrapping_add(1));
        r
    }
}

impl Device for BoardDevice {
    type RxToken<'a> = BoardRx<'a>;
    type TxToken<'a> = BoardTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(BoardRx<'_>, BoardTx<'_>)> {
        let len = black_box(self.rx_len).min(self.rx.len());
        if len == 0 {
            return None;
        }
        self.rx_len = 0;
        Some((
            BoardRx(&self.rx[..len]),
            BoardTx(&mut self.tx, &mut self.sent),
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<BoardTx<'_>> {
        Some(BoardTx(&mut self.tx, &mut self.sent))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// Stops the firmware over a setup step that failed. A panic with a
/// constant message: `expect` would format the error's `Debug`, which
/// links `core::fmt`'s machinery for it (README, "Embedded").
#[cold]
fn fail(what: &'static str) -> ! {
    panic!("{what} failed")
}

/// Builds the node: key, peer, one forward entry, the interface.
fn setup(
    storage: &'static mut Storage<SOCKETS, PKTS, BYTES>,
    sockets: &'static mut [SocketStorage<'static>],
    device: &mut BoardDevice,
) -> Fw {
    let start = Instant::from_micros(0);
    let t = sdt_smoltcp::core_instant(start);
    let key = PrivateKey::from_bytes(PRIVATE_KEY);
    let peer_key = PublicKey::from_bytes(PEER_KEY);
    let rng = CipherRng::new(RNG_SEED);
    let mut node = Node::new(key, rng, t, UNIX_NANOS_AT_BOOT);
    let mut peer = PeerConfig::new(peer_key);
    peer.endpoint = Some(SocketAddr::from(([192, 168, 1, 1], 51820)));
    let peer = node.add_peer(peer, t).unwrap_or_else(|_| fail("peer"));
    let mut service = ServiceConfig::new(
        ServiceId::new(1),
        Peers::One(peer),
        Role::ForwardEntry {
            listen: SocketAddr::from(([192, 168, 1, 10], 5000)),
        },
    );
    service.limits = ChannelLimits {
        max_channels: CHANNELS as u16,
        ..ChannelLimits::default()
    };
    if node.add_service(service).is_err() {
        fail("service");
    }
    node.connect(peer, t);

    let mut config = Config::new(HardwareAddress::Ip);
    config.random_seed = u64::from_le_bytes([RNG_SEED[0]; 8]);
    let mut iface = Interface::new(config, device, start);
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::new(
            IpAddress::Ipv4(Ipv4Address::new(192, 168, 1, 10)),
            24,
        ));
    });
    SmolNode::new(
        node,
        iface,
        SocketAddr::from(([0, 0, 0, 0], 51820)),
        sockets,
        storage,
    )
    .unwrap_or_else(|_| fail("storage"))
}

/// One turn of the main loop; returns how long the board may sleep.
fn step(node: &mut Fw, device: &mut BoardDevice, now: Instant) -> Option<smoltcp::time::Duration> {
    while node.poll(now, device) {}
    while let Some(_event) = node.poll_event() {
        // A firmware would log it.
    }
    node.poll_delay(now)
}

/// Builds the node into its static, in a function of its own: the
/// temporaries of building it (core's `Node::new` returns the node by value
/// and `SmolNode::new` moves it) live in this frame, and are gone from the
/// stack once the main loop runs.
#[cfg(target_os = "none")]
#[inline(never)]
fn build(
    node: &'static mut MaybeUninit<Fw>,
    storage: &'static mut MaybeUninit<Storage<SOCKETS, PKTS, BYTES>>,
    slots: &'static mut MaybeUninit<[SocketStorage<'static>; SOCKETS]>,
    device: &mut BoardDevice,
) -> &'static mut Fw {
    let storage = storage.write(Storage::new());
    let slots = slots.write([SocketStorage::EMPTY; SOCKETS]);
    node.write(setup(storage, &mut slots[..], device))
}

/// Simulated milliseconds the firmware runs before it reports.
const RUN_MILLIS: i64 = 10_000;

#[cfg(target_os = "none")]
#[cortex_m_rt::entry]
fn main() -> ! {
    // cortex-m-rt hands these to `main` as `&'static mut`, once. They are
    // `MaybeUninit` and written here, at boot, so that they land in .bss:
    // a `static` initialised with `Storage::new()` would go to .data and
    // cost its whole size in flash too (socket metadata is not all-zero).
    static mut STORAGE: MaybeUninit<Storage<SOCKETS, PKTS, BYTES>> = MaybeUninit::uninit();
    static mut SOCKET_SLOTS: MaybeUninit<[SocketStorage<'static>; SOCKETS]> = MaybeUninit::uninit();
    static mut DEVICE: BoardDevice = BoardDevice::new();
    static mut NODE: MaybeUninit<Fw> = MaybeUninit::uninit();
    // Paints the stack, for its high-water mark.
    let mut board = board::Board::take();
    let node = build(NODE, STORAGE, SOCKET_SLOTS, DEVICE);
    let setup_peak = board.stack_peak();
    board.repaint(16 * 1024);
    // PLACEHOLDER: a hardware timer; here every turn is one millisecond.
    for millis in 0..RUN_MILLIS {
        let now = Instant::from_millis(black_box(millis));
        let _sleep = step(node, DEVICE, now);
        // A firmware would sleep (WFI) until an interrupt or `_sleep`.
    }
    let run_peak = board.stack_peak();
    board::write("sent: ");
    board::write_number(DEVICE.sent.into());
    for (what, peak) in [
        ("\nstack peak, setup: ", setup_peak),
        ("\nstack peak, running: ", run_peak),
    ] {
        board::write(what);
        match peak {
            Some(peak) => board::write_number(peak as u64),
            None => board::write("unknown"),
        }
    }
    board::write("\nOK\n");
    board::exit(true)
}

#[cfg(not(target_os = "none"))]
fn main() {
    let storage = Box::leak(Box::new(Storage::new()));
    let slots = Box::leak(Box::new([SocketStorage::EMPTY; SOCKETS]));
    let mut device = BoardDevice::new();
    let mut node = setup(storage, &mut slots[..], &mut device);
    for millis in 0..RUN_MILLIS {
        step(&mut node, &mut device, Instant::from_millis(millis));
    }
    println!(
        "10 s: {} packets sent (handshake retries to a peer that is not there), {} sockets open",
        device.sent,
        node.open_sockets()
    );
}
