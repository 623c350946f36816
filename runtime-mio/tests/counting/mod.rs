//! What the allocation tests (`alloc.rs`, `alloc_drops.rs`) share: a
//! global allocator that counts every allocation of the process, and two
//! in-process nodes carrying a forward service to an echo server. Each
//! test is a file of its own, since the count is the whole process's and
//! another test's traffic would show in it; this module is included only by
//! them (not by `support`, whose users keep the system allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rand_core::OsRng;
use sdt::config::{Config, Half, Mode, PeerRef, PeerSpec, ServiceSpec};
use sdt::daemon::{Daemon, Options};
pub use sdt::loopback::localhost;
use sdt_core::key::PrivateKey;
use sdt_core::node::ServiceId;

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

/// Allocations so far, by the whole process.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::SeqCst)
}

fn service(half: Half) -> ServiceSpec {
    let mut s = ServiceSpec::new(ServiceId::new(1), PeerRef::Named(0), Mode::Forward, half);
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
        resolve_interval: None,
        peers: vec![peer],
        services: vec![service],
    }
}

/// Node X holds the entry of forward service 1 (listening on `listen`),
/// node Y its exit, whose target echoes every datagram; `client` is a
/// customer of X.
pub struct Tunnel {
    pub x: Daemon,
    pub y: Daemon,
    pub listen: SocketAddr,
    pub client: UdpSocket,
    echo_addr: SocketAddr,
    echo: JoinHandle<()>,
}

impl Tunnel {
    /// Starts the echo server and both nodes, and waits for the session.
    pub fn start() -> Tunnel {
        let echo = UdpSocket::bind(localhost()).unwrap();
        let echo_addr = echo.local_addr().unwrap();
        echo.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let echo = std::thread::spawn(move || {
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
        Tunnel {
            x,
            y,
            listen,
            client,
            echo_addr,
            echo,
        }
    }

    /// Sends `n` datagrams through the tunnel one at a time, each echoed
    /// back.
    pub fn round_trips(&self, n: usize) {
        let payload = [0x42u8; 512];
        let mut buf = [0u8; 1024];
        for i in 0..n {
            self.client.send_to(&payload, self.listen).unwrap();
            let (len, _) = self
                .client
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {i} did not come back: {e}"));
            assert_eq!(len, payload.len());
        }
    }

    /// Stops the echo server and both nodes; X's last status.
    pub fn stop(self) -> sdt::status::Status {
        self.client.send_to(b"stop", self.echo_addr).unwrap();
        self.echo.join().unwrap();
        let sx = self.x.status().unwrap();
        self.x.stop().unwrap();
        self.y.stop().unwrap();
        sx
    }
}
