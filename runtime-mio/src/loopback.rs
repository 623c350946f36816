//! Tunnels on loopback inside one process, and what to measure them with:
//! the shared half of `sdt demo` and the `sdt-bench` binary.
//!
//! Nodes are started from in-memory configurations ([`service`],
//! [`node_config`]); customers are plain UDP sockets on 127.0.0.1: an
//! [`Echo`] server, plain [`Relay`]s, sequential [`ping`]s and pipelined
//! [`throughput`] runs.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sdt_core::key::PrivateKey;
use sdt_core::node::ServiceId;

use crate::config::{Config, Half, Mode, PeerRef, PeerSpec, ServiceSpec};

/// 127.0.0.1, any port.
pub fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A free loopback port, for a service's listen address.
pub fn free_port() -> io::Result<SocketAddr> {
    UdpSocket::bind(localhost())?.local_addr()
}

/// A service `id` with the node's first peer, config defaults, and neither
/// listen address nor target yet.
pub fn service(id: ServiceId, mode: Mode, half: Half) -> ServiceSpec {
    ServiceSpec::new(id, PeerRef::Named(0), mode, half)
}

/// A node on loopback with one peer, no control socket and no file behind
/// it (`name` only labels it).
pub fn node_config(
    name: &str,
    key: PrivateKey,
    peer: PeerSpec,
    services: Vec<ServiceSpec>,
) -> Config {
    Config {
        path: PathBuf::from(name),
        private_key: key,
        listen: Some(localhost()),
        control_socket: None,
        control_group: None,
        metrics_listen: None,
        resolve_interval: None,
        peers: vec![peer],
        services,
    }
}

/// A UDP echo server on its own thread, stopped on drop.
pub struct Echo {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    /// Starts an echo server on a free loopback port.
    pub fn start() -> io::Result<Echo> {
        Echo::on(UdpSocket::bind(localhost())?)
    }

    /// Starts an echo server on `socket`, bound already (in a network
    /// namespace, say).
    pub fn on(socket: UdpSocket) -> io::Result<Echo> {
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        Ok(Echo {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A plain UDP relay on its own threads, stopped on drop: what it reads
/// on `addr` it sends on to its target from a socket of its own, and what
/// comes back it sends to whoever sent last. No crypto, no framing, no
/// table: two chained relays are the floor a two-node tunnel's latency is
/// measured against, the same hand-overs between threads with nothing done
/// at each.
///
/// Each direction has a thread blocked in `recv`, so a hop costs two system
/// calls (`recv`, `send`): the least any userspace relay can do, and one
/// fewer than an event loop serving several sockets (`epoll_wait` first).
/// Only one client at a time: the last sender is where replies go.
pub struct Relay {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay on a free loopback port to `target`.
    pub fn start(target: SocketAddr) -> io::Result<Relay> {
        let listen = UdpSocket::bind(localhost())?;
        let upstream = UdpSocket::bind(localhost())?;
        upstream.connect(target)?;
        for s in [&listen, &upstream] {
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
        }
        let addr = listen.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let client = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
        let down = {
            let (listen, upstream) = (listen.try_clone()?, upstream.try_clone()?);
            let (stop, client) = (stop.clone(), client.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = listen.recv_from(&mut buf) {
                        if let Ok(mut c) = client.lock() {
                            *c = Some(from);
                        }
                        let _ = upstream.send(&buf[..n]);
                    }
                }
            })
        };
        let up = {
            let (stop, client) = (stop.clone(), client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = upstream.recv(&mut buf) {
                        let to = client.lock().ok().and_then(|c| *c);
                        if let Some(to) = to {
                            let _ = listen.send_to(&buf[..n], to);
                        }
                    }
                }
            })
        };
        Ok(Relay {
            addr,
            stop,
            threads: vec![down, up],
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Round-trip times of `count` sequential pings to `to`; lost ones are
/// left out.
pub fn ping(to: SocketAddr, count: usize) -> io::Result<Vec<Duration>> {
    let socket = UdpSocket::bind(localhost())?;
    ping_from(&socket, to, count)
}

/// [`ping`] from a given socket, so that rounds of pings can keep one
/// source port (a relay that serves one client, one tunnel channel).
pub fn ping_from(socket: &UdpSocket, to: SocketAddr, count: usize) -> io::Result<Vec<Duration>> {
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut rtts = Vec::with_capacity(count);
    let mut buf = [0u8; 64];
    for i in 0..count as u64 {
        let sent = Instant::now();
        socket.send_to(&i.to_be_bytes(), to)?;
        loop {
            match socket.recv_from(&mut buf) {
                Ok((8, _)) if buf[..8] == i.to_be_bytes() => {
                    rtts.push(sent.elapsed());
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    Ok(rtts)
}

/// The `p` quantile (0.0..=1.0) of `sorted`, zero if it is empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// What one [`throughput`] run counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Throughput {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams echoed within the run.
    pub echoed: u64,
    /// Datagrams echoed after the run ended (the last window).
    pub late: u64,
    /// Datagrams written off: no echo within the loss timeout.
    pub lost: u64,
    /// Seconds the run took.
    pub secs: f64,
}

impl Throughput {
    /// Echoed datagrams per second.
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.echoed as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// Sends `size`-byte datagrams to the echo behind `to` from one socket for
/// `duration`, keeping up to `window` in flight. When no echo comes for
/// `loss_timeout`, what is in flight is written off as lost.
pub fn throughput(
    to: SocketAddr,
    size: usize,
    window: usize,
    duration: Duration,
    loss_timeout: Duration,
) -> io::Result<Throughput> {
    let socket = UdpSocket::bind(localhost())?;
    socket.set_read_timeout(Some(loss_timeout))?;
    let payload = vec![0x5a; size];
    let mut buf = vec![0u8; 65536];
    let mut t = Throughput::default();
    let start = Instant::now();
    while start.elapsed() < duration {
        while t.sent - t.echoed - t.lost < window as u64 {
            socket.send_to(&payload, to)?;
            t.sent += 1;
        }
        match socket.recv_from(&mut buf) {
            Ok(_) => t.echoed += 1,
            // Lost in a full socket buffer: give up on the window's rest.
            Err(_) => t.lost = t.sent - t.echoed,
        }
    }
    t.secs = start.elapsed().as_secs_f64();
    // Collect stragglers so the counters settle.
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    while t.sent - t.echoed - t.lost - t.late > 0 && socket.recv_from(&mut buf).is_ok() {
        t.late += 1;
    }
    t.lost = t.sent - t.echoed - t.late;
    Ok(t)
}

/// [`throughput`] from `sockets` client sockets at once, each on its own
/// thread with its own window: the counts summed, and the sum of the
/// sockets' rates.
pub fn throughput_parallel(
    to: SocketAddr,
    size: usize,
    sockets: usize,
    window: usize,
    duration: Duration,
    loss_timeout: Duration,
) -> io::Result<(Throughput, f64)> {
    let threads: Vec<_> = (0..sockets)
        .map(|_| std::thread::spawn(move || throughput(to, size, window, duration, loss_timeout)))
        .collect();
    let mut total = Throughput::default();
    let mut rate = 0.0;
    for t in threads {
        let r = t
            .join()
            .map_err(|_| io::Error::other("a client thread panicked"))??;
        total.sent += r.sent;
        total.echoed += r.echoed;
        total.late += r.late;
        total.lost += r.lost;
        total.secs = total.secs.max(r.secs);
        rate += r.rate();
    }
    Ok((total, rate))
}

/// Waits until `done` holds, checking every millisecond; how long it took,
/// or `"{what} within {limit:?}"` if it did not happen in time.
pub fn wait_for(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return Err(format!("{what} within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(start.elapsed())
}

/// `d` in whole microseconds, with the unit.
pub fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}
