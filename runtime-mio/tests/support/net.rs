//! Network namespaces, veth pairs, and network impairment (loss, reordering,
//! delay) for the end-to-end tests.
//!
//! Namespaces are named `sdte2e-<pid>-<tag>` so that tests (and test runs)
//! never collide; tests run in parallel. A namespace left behind by a run
//! that was killed before its guards ran is deleted by the next run once its
//! pid is gone.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{in_ns, run, run_ok, wait_until, Ran};

use super::PREFIX;

/// A network namespace, deleted when dropped. Drop the processes running in
/// it first (declare them after it).
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `sdte2e-<pid>-<tag>` with its loopback up.
    pub fn new(tag: &str) -> Netns {
        super::sweep_stale_once();
        let name = format!("{PREFIX}{}-{tag}", std::process::id());
        let _ = run(
            Command::new("ip").args(["netns", "del", &name]),
            Duration::from_secs(5),
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip -n NAME ARGS...`, failing the test if it fails.
    pub fn ip(&self, args: &[&str]) -> Ran {
        run_ok(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command running `program` in this namespace.
    pub fn cmd(&self, program: &str) -> Command {
        in_ns(&self.name, program)
    }

    /// Runs `program ARGS...` here to completion or `timeout`.
    pub fn run(&self, program: &str, args: &[&str], timeout: Duration) -> Ran {
        run(self.cmd(program).args(args), timeout)
    }

    /// Waits until some socket here is bound to UDP `addr` (as `ss` shows).
    pub fn wait_udp_bound(&self, addr: SocketAddr, timeout: Duration) -> bool {
        let ip = addr.ip().to_string();
        let port = format!(":{}", addr.port());
        wait_until(timeout, || {
            let out = self.run("ss", &["-Huan"], Duration::from_secs(5));
            out.stdout.lines().any(|l| {
                l.split_whitespace()
                    .nth(3)
                    .is_some_and(|local| local.starts_with(&ip) && local.ends_with(&port))
            })
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(
            Command::new("ip").args(["netns", "del", &self.name]),
            Duration::from_secs(5),
        );
    }
}

/// Deletes namespaces of earlier runs whose process is gone.
pub(super) fn sweep_stale_namespaces() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if super::left_by_a_dead_run(&name) {
            let _ = run(
                Command::new("ip").args(["netns", "del", &name]),
                Duration::from_secs(5),
            );
        }
    }
}

/// Two namespaces joined by a veth pair: `va` with 10.200.NET.1/24 in `a`,
/// `vb` with 10.200.NET.2/24 in `b`. The veth is created inside the
/// namespaces, never in the host's, and disappears with them.
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
    pub net: u8,
}

impl Pair {
    pub fn new(tag: &str, net: u8) -> Pair {
        let a = Netns::new(&format!("{tag}-a"));
        let b = Netns::new(&format!("{tag}-b"));
        a.ip(&[
            "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.name,
        ]);
        let pair = Pair { a, b, net };
        pair.a
            .ip(&["addr", "add", &format!("{}/24", pair.a_ip()), "dev", "va"]);
        pair.b
            .ip(&["addr", "add", &format!("{}/24", pair.b_ip()), "dev", "vb"]);
        pair.a.ip(&["link", "set", "va", "up"]);
        pair.b.ip(&["link", "set", "vb", "up"]);
        pair
    }

    pub fn a_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, self.net, 1)
    }

    pub fn b_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, self.net, 2)
    }
}

/// Adds a `tc netem` qdisc with `spec` (e.g. `loss 10% reorder 25% delay
/// 5ms`) on `dev` in `ns`. `Err` with tc's message if the kernel has no
/// netem (CONFIG_NET_SCH_NETEM).
pub fn netem(ns: &Netns, dev: &str, spec: &str) -> Result<(), String> {
    let mut args = vec!["qdisc", "add", "dev", dev, "root", "netem"];
    args.extend(spec.split_whitespace());
    let out = ns.run("tc", &args, Duration::from_secs(10));
    if out.ok() {
        Ok(())
    } else {
        Err(format!("tc {}: {}", args.join(" "), out.stderr.trim()))
    }
}

/// Runs `f` on a thread that has entered namespace `ns` (only that thread
/// enters it), and returns its result. Sockets made there stay in `ns`.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns(2) with an open namespace descriptor; it changes
        // the network namespace of this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
        f()
    })
    .join()
    .expect("thread in namespace panicked")
}

/// Sets `sock`'s receive buffer to `bytes` (`SO_RCVBUFFORCE`: root may
/// exceed `net.core.rmem_max`), so that a burst is not dropped by the
/// kernel before the test reads it.
pub fn force_rcvbuf(sock: &UdpSocket, bytes: libc::c_int) {
    // SAFETY: setsockopt(2) on a socket the caller owns, with a c_int
    // option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::from_ref(&bytes).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", io::Error::last_os_error());
}

/// What a [`Relay`] does to datagrams while impaired, as netem would:
/// drop with probability `loss`; of the rest, send a `reorder` share at once
/// and delay the others by `delay` (so the prompt ones overtake them).
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    pub loss: f64,
    pub reorder: f64,
    pub delay: Duration,
}

/// Counts of one direction of a [`Relay`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayStats {
    pub forwarded: u64,
    pub lost: u64,
    pub sent_early: u64,
}

/// A userspace UDP relay between two nodes' link sockets that loses,
/// reorders and delays like `tc netem`, for kernels without netem. It runs
/// in a namespace: node A talks to `a_facing` (its peer endpoint for B),
/// node B to `b_facing`; the relay forwards each way with a seeded random
/// generator, so a run's loss pattern is reproducible. It passes everything
/// through untouched until [`Relay::set_impaired`].
pub struct Relay {
    stop: Arc<AtomicBool>,
    impaired: Arc<AtomicBool>,
    threads: Vec<JoinHandle<RelayStats>>,
}

impl Relay {
    pub fn start(
        ns: &Netns,
        (a_facing, a_link): (SocketAddr, SocketAddr),
        (b_facing, b_link): (SocketAddr, SocketAddr),
        impairment: Impairment,
        seed: u64,
    ) -> Relay {
        let (sa, sb) = in_netns(&ns.name, move || {
            let sa = UdpSocket::bind(a_facing).unwrap_or_else(|e| panic!("{a_facing}: {e}"));
            let sb = UdpSocket::bind(b_facing).unwrap_or_else(|e| panic!("{b_facing}: {e}"));
            (sa, sb)
        });
        // Room for a burst: the relay is a thread of a debug build.
        force_rcvbuf(&sa, 8 << 20);
        force_rcvbuf(&sb, 8 << 20);
        let stop = Arc::new(AtomicBool::new(false));
        let impaired = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (inp, out, dest, seed) in [
            (
                sa.try_clone().unwrap(),
                sb.try_clone().unwrap(),
                b_link,
                seed,
            ),
            (sb, sa, a_link, seed ^ 0x9e37_79b9_7f4a_7c15),
        ] {
            let stop = stop.clone();
            let impaired = impaired.clone();
            threads.push(std::thread::spawn(move || {
                relay_one_way(&inp, &out, dest, impairment, seed, &stop, &impaired)
            }));
        }
        Relay {
            stop,
            impaired,
            threads,
        }
    }

    pub fn set_impaired(&self, on: bool) {
        self.impaired.store(on, Ordering::SeqCst);
    }

    /// Stops the relay; the counts of the A→B and B→A directions.
    pub fn finish(&mut self) -> Vec<RelayStats> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads
            .drain(..)
            .map(|t| t.join().unwrap_or_default())
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.finish();
    }
}

fn relay_one_way(
    inp: &UdpSocket,
    out: &UdpSocket,
    dest: SocketAddr,
    imp: Impairment,
    seed: u64,
    stop: &AtomicBool,
    impaired: &AtomicBool,
) -> RelayStats {
    let mut rng = seed | 1;
    let mut random = move || {
        // xorshift64
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut stats = RelayStats::default();
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        while queue.peek().is_some_and(|Reverse((t, _, _))| *t <= now) {
            let Some(Reverse((_, _, d))) = queue.pop() else {
                break;
            };
            let _ = out.send_to(&d, dest);
            stats.forwarded += 1;
        }
        let wait = queue
            .peek()
            .map_or(Duration::from_millis(20), |Reverse((t, _, _))| {
                t.saturating_duration_since(now)
            })
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        let _ = inp.set_read_timeout(Some(wait));
        let Ok((n, _)) = inp.recv_from(&mut buf) else {
            continue;
        };
        if !impaired.load(Ordering::SeqCst) {
            let _ = out.send_to(&buf[..n], dest);
            stats.forwarded += 1;
        } else if random() < imp.loss {
            stats.lost += 1;
        } else if random() < imp.reorder {
            let _ = out.send_to(&buf[..n], dest);
            stats.forwarded += 1;
            stats.sent_early += 1;
        } else {
            queue.push(Reverse((
                Instant::now() + imp.delay,
                seq,
                buf[..n].to_vec(),
            )));
            seq += 1;
        }
    }
    stats
}
