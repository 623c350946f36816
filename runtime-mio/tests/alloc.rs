//! No heap allocation per datagram in the steady state: 10,000 datagrams
//! through two in-process nodes (forward service, round trip through an
//! echo server) leave the allocation count where 100 left it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand_core::OsRng;
use sdt::config::{Config, Half, Mode, PeerRef, PeerSpec, ServiceSpec};
use sdt::daemon::{Daemon, Options};
use sdt_core::key::PrivateKey;

/// Counts every allocation of the process, on every thread.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn service(half: Half) -> ServiceSpec {
    let mut s = ServiceSpec::new(1, PeerRef::Named(0), Mode::Forward, half);
    s.max_channels = 64;
    s
}

fn config(key: PrivateKey, peer: PeerSpec, service: ServiceSpec) -> Config {
    Config {
        path: PathBuf::from("alloc-test"),
        private_key: key,
        listen: Some(localhost()),
        control_socket: None,
        control_group: None,
        metrics_listen: None,
        peers: vec![peer],
        services: vec![service],
    }
}

/// Sends `n` datagrams through the tunnel one at a time, each echoed back.
fn round_trips(client: &UdpSocket, to: SocketAddr, n: usize) {
    let payload = [0x42u8; 512];
    let mut buf = [0u8; 1024];
    for i in 0..n {
        client.send_to(&payload, to).unwrap();
        let (len, _) = client
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {i} did not come back: {e}"));
        assert_eq!(len, payload.len());
    }
}

#[test]
fn steady_state_forwarding_does_not_allocate() {
    let echo = UdpSocket::bind(localhost()).unwrap();
    let echo_addr = echo.local_addr().unwrap();
    echo.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let echo_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            if &buf[..n] == b"stop" {
                break;
            }
            echo.send_to(&buf[..n], from).unwrap();
        }
    });

    let (kx, ky) = (
        PrivateKey::generate(&mut OsRng),
        PrivateKey::generate(&mut OsRng),
    );
    let (px, py) = (kx.public_key(), ky.public_key());
    let listen = UdpSocket::bind(localhost()).unwrap().local_addr().unwrap();
    let mut exit = service(Half::Exit);
    exit.target = Some(echo_addr);
    let peer = PeerSpec::new;
    let y = Daemon::start(config(ky, peer("x", px, None), exit), Options::default()).unwrap();
    let mut entry = service(Half::Entry);
    entry.listen = Some(listen);
    let mut peer_y = peer("y", py, Some(y.link_addr()));
    peer_y.keep_up = true;
    let x = Daemon::start(config(kx, peer_y, entry), Options::default()).unwrap();
    for _ in 0..500 {
        if x.status().is_some_and(|s| s.peers[0].session_up) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }

    let client = UdpSocket::bind(localhost()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // Warm up: the channel, its exit socket and every lazily grown buffer.
    round_trips(&client, listen, 100);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    round_trips(&client, listen, 10_000);
    let after = ALLOCATIONS.load(Ordering::SeqCst);

    client.send_to(b"stop", echo_addr).unwrap();
    echo_thread.join().unwrap();
    let sx = x.status().unwrap();
    x.stop().unwrap();
    y.stop().unwrap();
    assert_eq!(sx.service(1).unwrap().to_peer_datagrams, 10_100);
    // Not one allocation per datagram; a handful from the runtime (thread
    // parking, a timer wheel) is allowed, ten thousand are not.
    let grown = after - before;
    assert!(
        grown < 100,
        "{grown} allocations while forwarding 10,000 datagrams"
    );
}
