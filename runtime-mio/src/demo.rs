//! `sdt demo`: a real tunnel on loopback, self-contained.
//!
//! Two nodes with fresh keys run in this process on their own event loops
//! and real UDP sockets: X (the entry side) and Y. Behind Y are a UDP echo
//! server and a push receiver; in front of X are clients. Three services run
//! at once: forward (clients -> X -> Y -> echo server and back), push (lines
//! -> X -> Y -> receiver) and direct (one fixed customer on each side). The
//! demo prints what crossed, round-trip percentiles against a plain loopback
//! echo, throughput, and the nodes' own counters. No root, no config.

use std::io::{self, Write};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::OsRng;
use sdt_core::key::PrivateKey;
use sdt_core::node::ServiceId;

use crate::config::{Half, Mode, PeerSpec};
use crate::daemon::{Daemon, Options, RunError};
use crate::loopback::{
    free_port, localhost, micros, node_config, percentile, ping, service, throughput, Echo,
};
use crate::status::Status;

const FORWARD: ServiceId = ServiceId::new(1);
const PUSH: ServiceId = ServiceId::new(2);
const DIRECT: ServiceId = ServiceId::new(3);
const PUSH_LINES: usize = 1000;
const DIRECT_DATAGRAMS: usize = 100;
const PINGS: usize = 1000;

/// Why the demo failed.
#[derive(Debug)]
pub enum DemoError {
    /// A node would not start.
    Start(RunError),
    /// A local socket failed.
    Io(io::Error),
    /// Something did not cross the tunnel as it should have.
    Failed(String),
}

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DemoError::Start(e) => write!(f, "demo: a node did not start: {e}"),
            DemoError::Io(e) => write!(f, "demo: {e}"),
            DemoError::Failed(what) => write!(f, "demo failed: {what}"),
        }
    }
}

impl std::error::Error for DemoError {}

impl From<io::Error> for DemoError {
    fn from(e: io::Error) -> Self {
        DemoError::Io(e)
    }
}

fn wait_for(
    what: &str,
    limit: Duration,
    done: impl FnMut() -> bool,
) -> Result<Duration, DemoError> {
    crate::loopback::wait_for(what, limit, done).map_err(DemoError::Failed)
}

/// Runs the demo, printing to `out`; `seconds` is the length of each
/// throughput run.
pub fn run(seconds: f64, out: &mut impl Write) -> Result<(), DemoError> {
    let key_x = PrivateKey::generate(&mut OsRng);
    let key_y = PrivateKey::generate(&mut OsRng);
    let (pub_x, pub_y) = (key_x.public_key(), key_y.public_key());

    let echo = Echo::start()?;
    let receiver = UdpSocket::bind(localhost())?;
    receiver.set_read_timeout(Some(Duration::from_millis(100)))?;
    let customer_a = UdpSocket::bind(localhost())?;
    let customer_b = UdpSocket::bind(localhost())?;
    for c in [&customer_a, &customer_b] {
        c.set_read_timeout(Some(Duration::from_millis(200)))?;
    }
    let (forward_listen, push_listen) = (free_port()?, free_port()?);
    let (direct_x, direct_y) = (free_port()?, free_port()?);

    // Y: the exit of forward and push, one side of direct. It only accepts X.
    let mut y_services = vec![
        service(FORWARD, Mode::Forward, Half::Exit),
        service(PUSH, Mode::Push, Half::Exit),
        service(DIRECT, Mode::Direct, Half::Both),
    ];
    y_services[0].target = Some(echo.addr);
    y_services[1].target = Some(receiver.local_addr()?);
    y_services[2].listen = Some(direct_y);
    y_services[2].target = Some(customer_b.local_addr()?);
    let peer_x = PeerSpec::new("x", pub_x, None);
    let y = Daemon::start(
        node_config("demo-y", key_y, peer_x, y_services),
        Options::default(),
    )
    .map_err(DemoError::Start)?;

    // X: the entry side; it knows Y's endpoint and keeps the link up.
    let mut x_services = vec![
        service(FORWARD, Mode::Forward, Half::Entry),
        service(PUSH, Mode::Push, Half::Entry),
        service(DIRECT, Mode::Direct, Half::Both),
    ];
    x_services[0].listen = Some(forward_listen);
    x_services[1].listen = Some(push_listen);
    x_services[2].listen = Some(direct_x);
    x_services[2].target = Some(customer_a.local_addr()?);
    let mut peer_y = PeerSpec::new("y", pub_y, Some(y.link_addr()));
    peer_y.keep_up = true;
    let x = Daemon::start(
        node_config("demo-x", key_x, peer_y, x_services),
        Options::default(),
    )
    .map_err(DemoError::Start)?;

    writeln!(out, "sdt demo: two nodes on loopback with fresh keys")?;
    writeln!(out, "  node x  link {}  public key {pub_x}", x.link_addr())?;
    writeln!(out, "  node y  link {}  public key {pub_y}", y.link_addr())?;
    let up = wait_for("the handshake to complete", Duration::from_secs(5), || {
        x.status().is_some_and(|s| s.peers[0].session_up)
    })?;
    writeln!(out, "  handshake completed after {}", micros(up))?;

    // Forward: latency against a plain loopback echo, then throughput.
    writeln!(
        out,
        "\nforward (service {FORWARD}): client -> x {forward_listen} => y -> echo server {}",
        echo.addr
    )?;
    let mut base = ping(echo.addr, PINGS)?;
    let mut tunnel = ping(forward_listen, PINGS)?;
    base.sort();
    tunnel.sort();
    if tunnel.len() < PINGS * 9 / 10 {
        return Err(DemoError::Failed(format!(
            "only {} of {PINGS} pings came back through the tunnel",
            tunnel.len()
        )));
    }
    writeln!(
        out,
        "  round trip through the tunnel: p50 {}, p90 {}, p99 {} ({} of {PINGS} pings answered)",
        micros(percentile(&tunnel, 0.5)),
        micros(percentile(&tunnel, 0.9)),
        micros(percentile(&tunnel, 0.99)),
        tunnel.len()
    )?;
    writeln!(
        out,
        "  plain loopback echo:           p50 {}, p90 {}, p99 {}; the tunnel adds {} at p50",
        micros(percentile(&base, 0.5)),
        micros(percentile(&base, 0.9)),
        micros(percentile(&base, 0.99)),
        micros(percentile(&tunnel, 0.5).saturating_sub(percentile(&base, 0.5)))
    )?;
    let run_for = Duration::from_secs_f64(seconds.max(0.1));
    for size in [1400usize, 64] {
        let t = throughput(
            forward_listen,
            size,
            64,
            run_for,
            Duration::from_millis(100),
        )?;
        let (sent, echoed, secs, rate) = (t.sent, t.echoed, t.secs, t.rate());
        writeln!(
            out,
            "  {size:>4} B datagrams: {rate:.0} echoed per second, {:.1} Mbit/s of payload each way ({sent} sent, {echoed} echoed in {secs:.1} s)",
            rate * size as f64 * 8.0 / 1e6
        )?;
    }

    // Push: lines one way into a counting receiver.
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = stop.clone();
    let receiving = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop_flag.load(Ordering::Relaxed) {
            if let Ok((n, _)) = receiver.recv_from(&mut buf) {
                if buf[..n].starts_with(b"<13>sdt demo line ") {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    let sender = UdpSocket::bind(localhost())?;
    for i in 0..PUSH_LINES {
        // Paced to at most 64 lines in flight, as a syslog sender on a
        // busy host would be by its own rate; a burst beyond the socket
        // buffers would be lost, as UDP is.
        let paced = Instant::now();
        while (i as u64).saturating_sub(received.load(Ordering::Relaxed)) >= 64
            && paced.elapsed() < Duration::from_millis(200)
        {
            std::thread::sleep(Duration::from_micros(50));
        }
        sender.send_to(format!("<13>sdt demo line {i}").as_bytes(), push_listen)?;
    }
    let pushed = wait_for("all pushed lines to arrive", Duration::from_secs(3), || {
        received.load(Ordering::Relaxed) >= PUSH_LINES as u64
    });
    stop.store(true, Ordering::Relaxed);
    let _ = receiving.join();
    writeln!(
        out,
        "\npush (service {PUSH}): {PUSH_LINES} syslog lines -> x {push_listen} => y -> receiver: {} received",
        received.load(Ordering::Relaxed)
    )?;
    pushed?;

    // Direct: each fixed customer talks to the other; a stranger is refused.
    let mut buf = [0u8; 256];
    let (mut a_to_b, mut b_to_a) = (0, 0);
    for i in 0..DIRECT_DATAGRAMS {
        customer_a.send_to(format!("a{i}").as_bytes(), direct_x)?;
        if let Ok((n, from)) = customer_b.recv_from(&mut buf) {
            a_to_b += usize::from(from == direct_y && buf[..n] == *format!("a{i}").as_bytes());
        }
        customer_b.send_to(format!("b{i}").as_bytes(), direct_y)?;
        if let Ok((n, from)) = customer_a.recv_from(&mut buf) {
            b_to_a += usize::from(from == direct_x && buf[..n] == *format!("b{i}").as_bytes());
        }
    }
    let stranger = UdpSocket::bind(localhost())?;
    stranger.send_to(b"let me in", direct_x)?;
    std::thread::sleep(Duration::from_millis(50));
    writeln!(
        out,
        "\ndirect (service {DIRECT}): customer {} <-> x {direct_x} => y {direct_y} <-> customer {}: {a_to_b}/{DIRECT_DATAGRAMS} one way, {b_to_a}/{DIRECT_DATAGRAMS} back",
        customer_a.local_addr()?,
        customer_b.local_addr()?
    )?;

    let (sx, sy) = (x.status(), y.status());
    writeln!(out, "\nwhat the nodes counted:")?;
    for (name, status) in [("x", &sx), ("y", &sy)] {
        let Some(status) = status else { continue };
        print_counters(out, name, status)?;
    }
    let stranger_dropped = sx
        .as_ref()
        .and_then(|s| s.service(DIRECT))
        .and_then(|s| s.drops.iter().find(|(r, _)| r == "stranger"))
        .map_or(0, |(_, n)| *n);
    writeln!(
        out,
        "  x dropped {stranger_dropped} datagram(s) from a stranger to the direct service"
    )?;

    x.stop().map_err(DemoError::Start)?;
    y.stop().map_err(DemoError::Start)?;
    drop(echo);
    if a_to_b < DIRECT_DATAGRAMS || b_to_a < DIRECT_DATAGRAMS {
        return Err(DemoError::Failed(format!(
            "direct mode carried {a_to_b} and {b_to_a} of {DIRECT_DATAGRAMS} datagrams"
        )));
    }
    if stranger_dropped != 1 {
        return Err(DemoError::Failed(
            "the stranger's datagram was not dropped".into(),
        ));
    }
    writeln!(out, "\nok: every service carried its traffic")?;
    Ok(())
}

fn print_counters(out: &mut impl Write, name: &str, status: &Status) -> io::Result<()> {
    for s in &status.services {
        write!(
            out,
            "  {name}: service {} ({} {}): {} datagrams to the peer, {} from it",
            s.id, s.mode, s.half, s.to_peer_datagrams, s.from_peer_datagrams
        )?;
        if s.mode == "forward" {
            write!(out, ", {} channels", s.channels_created)?;
        }
        if !s.drops.is_empty() {
            write!(out, ", drops:")?;
            for (reason, n) in &s.drops {
                write!(out, " {reason}={n}")?;
            }
        }
        writeln!(out)?;
    }
    Ok(())
}
