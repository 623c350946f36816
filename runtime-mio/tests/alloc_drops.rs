//! No heap allocation per dropped datagram once the drop log's burst is
//! spent: with the drop log on at debug (JSON lines to a sink), 10,000
//! forged link datagrams are counted by two in-process nodes while the
//! allocation count barely moves: the suppressed ones are only counted
//! (docs/logging.md). A file of its own: the allocation count is the
//! process's, and another test's traffic would show in it.

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

/// Log lines written, to a sink.
static LINES: AtomicU64 = AtomicU64::new(0);

/// Counts the log lines it is given, and drops them.
struct Lines;

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = b.iter().filter(|&&c| c == b'\n').count();
        LINES.fetch_add(n as u64, Ordering::Relaxed);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Forged link datagrams of the measured flood.
const FORGED: u64 = 10_000;

#[test]
fn a_suppressed_drop_does_not_allocate() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("sdt::drop=debug"))
        .event_format(sdt::logfmt::Json)
        .with_writer(|| Lines)
        .try_init();
    assert!(tracing::enabled!(target: "sdt::drop", tracing::Level::DEBUG));

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
    let forger = UdpSocket::bind(localhost()).unwrap();
    let forged = [0xffu8, 0, 0, 0, 0, 0, 0, 0];
    // Warm up: the channel, every lazily grown buffer, and the drop log's
    // burst of lines for `malformed`.
    round_trips(&client, listen, 100);
    for _ in 0..100 {
        forger.send_to(&forged, x.link_addr()).unwrap();
    }
    round_trips(&client, listen, 1);

    // The drop log is on: the warm-up's forged datagrams were logged, a
    // burst of them.
    let logged = LINES.load(Ordering::SeqCst);
    assert!(logged >= 5, "{logged} log lines");
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for i in 0..FORGED {
        forger.send_to(&forged, x.link_addr()).unwrap();
        if i % 500 == 499 {
            // Paced, so that the kernel drops none: the echo comes back
            // through X's link socket, after the forged ones before it.
            round_trips(&client, listen, 1);
        }
    }
    round_trips(&client, listen, 1);
    let after = ALLOCATIONS.load(Ordering::SeqCst);

    client.send_to(b"stop", echo_addr).unwrap();
    echo_thread.join().unwrap();
    let sx = x.status().unwrap();
    x.stop().unwrap();
    y.stop().unwrap();
    let malformed: u64 = sx
        .unattributed_drops
        .iter()
        .filter(|(r, _)| r == "malformed")
        .map(|(_, n)| n)
        .sum();
    assert!(
        malformed >= FORGED * 9 / 10,
        "only {malformed} forged datagrams counted"
    );
    // Not one allocation per drop: the round trips and a window's end (5
    // lines and a summary, each formatted) may take a few hundred.
    let grown = after - before;
    println!(
        "{grown} allocations while {malformed} forged datagrams were dropped, {} log lines",
        LINES.load(Ordering::SeqCst)
    );
    assert!(
        grown < FORGED / 20,
        "{grown} allocations for {FORGED} drops"
    );
}
