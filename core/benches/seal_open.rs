//! Throughput of the data path and cost of a handshake, with two links
//! driven against each other in memory (no sockets, no clock: `now` stays
//! put, which the links allow).
//!
//! - `seal_open/<size>`: `seal` of a `<size>`-byte plaintext at a, then
//!   `handle_datagram` of the frame at b, per iteration. Each iteration is
//!   a fresh, valid frame: a's send counter and b's replay window just move
//!   forward. One buffer is reused; nothing allocates (checked before the
//!   measurement by a counting allocator).
//! - `handshake`: initiation, response and the confirming keepalive, each
//!   produced and consumed, between two links made fresh (outside the
//!   measurement) for every iteration.
//!
//! Run: `cargo bench -p sdt-core --bench seal_open`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sdt_core::key::PrivateKey;
use sdt_core::link::{Link, PeerConfig, PeerId, Received, MIN_TRANSMIT_BUFFER};
use sdt_core::wire::DataPacket;
use sdt_core::Instant;

/// The system allocator, counting allocations, so the bench can check that
/// the data path makes none.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

type BenchLink = Link<ChaCha20Rng, 1>;

const START_UNIX: u64 = 1_700_000_000_000_000_000;
const HEADER: usize = DataPacket::<&[u8]>::HEADER_LEN;
const OVERHEAD: usize = DataPacket::<&[u8]>::OVERHEAD;
/// Plaintext sizes measured: a small datagram and a full-MTU one.
const SIZES: [usize; 2] = [64, 1400];

/// Two links that know each other; a knows b's endpoint.
struct Pair {
    a: BenchLink,
    b: BenchLink,
    a_peer: PeerId,
    b_peer: PeerId,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    now: Instant,
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::from_secs(1);
        let (ka, kb) = (
            PrivateKey::from_bytes([0x11; 32]),
            PrivateKey::from_bytes([0x22; 32]),
        );
        let (pa, pb) = (ka.public_key(), kb.public_key());
        let mut a = BenchLink::new(ka, ChaCha20Rng::seed_from_u64(1), now, START_UNIX);
        let mut b = BenchLink::new(kb, ChaCha20Rng::seed_from_u64(2), now, START_UNIX);
        let b_addr: SocketAddr = "192.0.2.2:2000".parse().unwrap();
        let mut to_b = PeerConfig::new(pb);
        to_b.endpoint = Some(b_addr);
        let a_peer = a.add_peer(to_b, now).unwrap();
        let b_peer = b.add_peer(PeerConfig::new(pa), now).unwrap();
        Pair {
            a,
            b,
            a_peer,
            b_peer,
            a_addr: "192.0.2.1:1000".parse().unwrap(),
            b_addr,
            now,
        }
    }

    /// The full handshake: a's initiation to b, b's response to a, a's
    /// keepalive to b, each delivered as soon as it is sent.
    fn handshake(&mut self) {
        let now = self.now;
        let mut buf = [0u8; MIN_TRANSMIT_BUFFER];
        self.a.connect(self.a_peer, now);
        let t = self.a.poll_transmit(now, &mut buf).unwrap().unwrap();
        let r = self.b.handle_datagram(now, self.a_addr, &mut buf[..t.len]);
        assert!(
            matches!(r, Ok(Received::Control { .. })),
            "initiation: {r:?}"
        );
        let t = self.b.poll_transmit(now, &mut buf).unwrap().unwrap();
        let r = self.a.handle_datagram(now, self.b_addr, &mut buf[..t.len]);
        assert!(matches!(r, Ok(Received::Control { .. })), "response: {r:?}");
        let t = self.a.poll_transmit(now, &mut buf).unwrap().unwrap();
        let r = self.b.handle_datagram(now, self.a_addr, &mut buf[..t.len]);
        assert!(
            matches!(r, Ok(Received::Control { .. })),
            "keepalive: {r:?}"
        );
        while self.a.poll_event().is_some() {}
        while self.b.poll_event().is_some() {}
    }

    /// Seals `plaintext` at a into `buf` and opens it at b: one data frame.
    /// Returns the length of the plaintext b got.
    fn seal_open(&mut self, buf: &mut [u8], plaintext: &[u8]) -> usize {
        buf[HEADER..HEADER + plaintext.len()].copy_from_slice(plaintext);
        let t = self
            .a
            .seal(self.now, self.a_peer, buf, plaintext.len())
            .unwrap();
        match self
            .b
            .handle_datagram(self.now, self.a_addr, &mut buf[..t.len])
        {
            Ok(Received::Data { payload, .. }) => payload.len(),
            other => panic!("data frame not accepted: {other:?}"),
        }
    }
}

fn bench_seal_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal_open");
    for size in SIZES {
        let mut pair = Pair::new();
        pair.handshake();
        assert!(pair.a.is_up(pair.a_peer, pair.now));
        assert!(pair.b.is_up(pair.b_peer, pair.now));
        let plaintext: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let mut buf = vec![0u8; size + OVERHEAD];

        // The frame opens to what was sealed, and the data path allocates
        // nothing.
        assert_eq!(pair.seal_open(&mut buf, &plaintext), size);
        assert_eq!(&buf[HEADER..HEADER + size], &plaintext[..]);
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..1000 {
            pair.seal_open(&mut buf, &plaintext);
        }
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(allocations, 0, "the data path allocated");

        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &plaintext, |bench, p| {
            bench.iter(|| black_box(pair.seal_open(black_box(&mut buf), black_box(p))))
        });
    }
    group.finish();
}

fn bench_handshake(c: &mut Criterion) {
    c.bench_function("handshake", |bench| {
        bench.iter_batched_ref(Pair::new, |pair| pair.handshake(), BatchSize::SmallInput)
    });
}

criterion_group!(benches, bench_seal_open, bench_handshake);
criterion_main!(benches);
