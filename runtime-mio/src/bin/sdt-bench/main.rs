//! `sdt-bench`: the project's own benchmark, on loopback, in one run.
//!
//! Two nodes run in this process on real UDP sockets, as in `sdt demo`: x
//! is the entry of a forward service, y its exit, with a UDP echo server
//! behind y. It measures, and prints as tables:
//! - throughput: echoed datagrams per second and payload Mbit/s at 64 B and
//!   1400 B, from several client sockets each keeping a window of datagrams
//!   in flight, through the tunnel and straight to the echo server (the
//!   baseline), with their ratio;
//! - latency: round-trip p50/p99 of sequential pings straight to the echo
//!   server, through two plain relays chained (the floor of the same
//!   hand-overs with nothing done at each), through two `socat` relays
//!   chained (socat must be on the PATH) and through the tunnel, and what
//!   each adds;
//! - memory: RSS before the nodes, with both nodes idle and with 10,000
//!   channels open (10,000 client sockets each sending one datagram through
//!   the forward service, `max_channels = 16384`), checked against both
//!   nodes' own channel counts, and the process's peak RSS (VmHWM).
//!
//! - handshake flood: initiations from a key y does not know, with a valid
//!   `mac1` (anyone who knows y's public key can make them), sent as fast as
//!   two threads can from 128 source ports; what y does with them (cookie
//!   replies, Diffie-Hellmans spent), how real traffic fares meanwhile, and
//!   how long x, restarted in the middle of the flood, takes to get its
//!   session back.
//!
//! Run: `cargo run --release -p sdt --features bench --bin sdt-bench` (the
//! `bench` feature builds this binary, so that `cargo install` of the
//! package installs `sdt` alone). It exits non-zero if
//! a node did not start, the channels did not all open, or x could not
//! handshake during the flood.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use rand_core::OsRng;
use sdt::build::{DaemonNode, CHANNELS};
use sdt::config::{Half, Mode, PeerSpec};
use sdt::daemon::{raise_open_file_limit_to, Daemon, Options};
use sdt::loopback::{
    free_port, localhost, micros, node_config, percentile, ping_from, service, throughput_parallel,
    wait_for, Echo, Relay, Throughput,
};
use sdt_core::key::PrivateKey;
use sdt_core::node::ServiceId;

mod flood;

const FORWARD: ServiceId = ServiceId::new(1);
const SIZES: [usize; 2] = [64, 1400];
/// Client sockets that send their one datagram before the child waits for
/// their echoes: few enough for the service socket's receive buffer.
const CHANNEL_BATCH: usize = 128;
/// File descriptors beside the channels' sockets (link sockets, polls,
/// the echo server, stdio, ...).
const SPARE_FILES: usize = 256;

/// The project's benchmark: a forward service through two nodes on
/// loopback against a plain loopback echo.
#[derive(Parser)]
#[command(name = "sdt-bench", version)]
struct Args {
    /// Seconds of each throughput run (four runs).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Client sockets in each throughput run, each on its own thread.
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// Datagrams each client socket keeps in flight.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Pings through the tunnel, and as many straight to the echo server.
    #[arg(long, default_value_t = 5000)]
    pings: usize,
    /// Channels to open for the memory measurement.
    #[arg(long, default_value_t = 10_000)]
    channels: usize,
    /// Seconds of the handshake flood.
    #[arg(long, default_value_t = 8.0)]
    flood_seconds: f64,
    /// Run only these parts, comma-separated (default: all of them).
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Vec<Part>,
    /// Internal: be the child process that holds the channels' client
    /// sockets, sending through the service at this address.
    #[arg(long, hide = true)]
    clients_for: Option<SocketAddr>,
}

/// The parts of the benchmark, for `--only`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// Memory with 10,000 channels open.
    Channels,
    /// Round trips against direct, plain relays and socat.
    Latency,
    /// Datagrams a second at 64 B and 1400 B.
    Throughput,
    /// The handshake flood.
    Flood,
}

/// Two nodes on loopback with a forward service to an echo server.
struct Pair {
    x: Daemon,
    y: Daemon,
    listen: SocketAddr,
    echo: Echo,
}

impl Pair {
    fn start(max_channels: u16, idle_timeout: Duration) -> Result<Pair, String> {
        let key_x = PrivateKey::generate(&mut OsRng);
        let key_y = PrivateKey::generate(&mut OsRng);
        let (pub_x, pub_y) = (key_x.public_key(), key_y.public_key());
        let echo = Echo::start().map_err(|e| format!("echo server: {e}"))?;
        let listen = free_port().map_err(|e| format!("no free port: {e}"))?;

        let mut exit = service(FORWARD, Mode::Forward, Half::Exit);
        exit.target = Some(echo.addr);
        let mut entry = service(FORWARD, Mode::Forward, Half::Entry);
        entry.listen = Some(listen);
        for s in [&mut exit, &mut entry] {
            s.max_channels = max_channels;
            s.idle_timeout = idle_timeout;
        }
        let y = Daemon::start(
            node_config(
                "bench-y",
                key_y,
                PeerSpec::new("x", pub_x, None),
                vec![exit],
            ),
            Options::default(),
        )
        .map_err(|e| format!("node y: {e}"))?;
        let mut peer_y = PeerSpec::new("y", pub_y, Some(y.link_addr()));
        // The session is up before anything is measured.
        peer_y.keep_up = true;
        let x = Daemon::start(
            node_config("bench-x", key_x, peer_y, vec![entry]),
            Options::default(),
        )
        .map_err(|e| format!("node x: {e}"))?;
        wait_for("the handshake", Duration::from_secs(5), || {
            x.status().is_some_and(|s| s.peers[0].session_up)
        })?;
        Ok(Pair { x, y, listen, echo })
    }

    /// Channels open on (x, y) for the forward service.
    fn channels_open(&self) -> (Option<u64>, Option<u64>) {
        let open = |d: &Daemon| {
            d.status()
                .and_then(|s| s.service(FORWARD).map(|s| s.channels_open))
        };
        (open(&self.x), open(&self.y))
    }

    fn stop(self) {
        let _ = self.x.stop();
        let _ = self.y.stop();
        drop(self.echo);
    }
}

/// A `VmRSS`/`VmHWM`-style line of /proc/self/status, in bytes.
fn proc_status_bytes(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn rss() -> u64 {
    proc_status_bytes("VmRSS:").unwrap_or(0)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Raises this process's open file limit for `wanted` descriptors; says so
/// and returns how many there are if the hard limit is too low.
fn open_files(wanted: usize, what: &str) -> Result<usize, String> {
    let (soft, hard) = raise_open_file_limit_to(wanted as libc::rlim_t)
        .map_err(|e| format!("open file limit: {e}"))?;
    if (soft as usize) < wanted {
        println!(
            "  THE OPEN FILE LIMIT IS TOO LOW: {what} need {wanted} open files, the hard limit is \
             {hard} and only root (with CAP_SYS_RESOURCE) may raise it: `ulimit -Hn {wanted}`"
        );
    }
    Ok(soft as usize)
}

/// The child process's part of [`channels`]: `n` client sockets, each
/// sending one datagram to `to` (again if its echo does not come) until
/// every one has its echo. Prints `ok <resent> <seconds>` and holds the
/// sockets until its stdin closes.
fn clients(to: SocketAddr, n: usize) -> Result<(), String> {
    open_files(n + SPARE_FILES, "the client sockets")?;
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let c = UdpSocket::bind(localhost()).map_err(|e| {
            format!(
                "client socket {} of {n}: {e} (open file limit or ephemeral ports)",
                sockets.len() + 1
            )
        })?;
        c.set_nonblocking(true)
            .map_err(|e| format!("client socket: {e}"))?;
        sockets.push(c);
    }
    let mut resent = 0usize;
    let mut buf = [0u8; 64];
    for batch in sockets.chunks(CHANNEL_BATCH) {
        let mut answered = vec![false; batch.len()];
        for attempt in 0..5 {
            for (i, c) in batch.iter().enumerate().filter(|(i, _)| !answered[*i]) {
                let _ = c.send_to(&(i as u64).to_be_bytes(), to);
                resent += usize::from(attempt > 0);
            }
            let deadline = Instant::now() + Duration::from_millis(200);
            while answered.contains(&false) && Instant::now() < deadline {
                for (i, c) in batch.iter().enumerate() {
                    if !answered[i] && c.recv_from(&mut buf).is_ok() {
                        answered[i] = true;
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            if !answered.contains(&false) {
                break;
            }
        }
    }
    println!("ok {resent} {:.3}", started.elapsed().as_secs_f64());
    // Hold the sockets (and so the channels' clients) until told.
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut rest);
    drop(sockets);
    Ok(())
}

/// The memory measurement: `n` channels, one per client socket. The client
/// sockets live in a child process, so that this one holds only the nodes'
/// sockets (the exit's `n` among them).
fn channels(n: usize) -> Result<bool, String> {
    println!("\nmemory with {n} open channels (forward service, max_channels {CHANNELS})");
    open_files(n + SPARE_FILES, "the exit's channel sockets")?;
    let before = rss();
    let pair = Pair::start(CHANNELS as u16, Duration::from_secs(600))?;
    let idle = rss();

    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let mut child = Command::new(exe)
        .arg("--channels")
        .arg(n.to_string())
        .arg("--clients-for")
        .arg(pair.listen.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("client process: {e}"))?;
    // The child's report, after anything it has to say first.
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let mut out = BufReader::new(out);
        while matches!(out.read_line(&mut line), Ok(n) if n > 0) && !line.starts_with("ok ") {
            print!("{line}");
            line.clear();
        }
    }
    let mut words = line.split_whitespace();
    let (resent, secs) = match (words.next(), words.next(), words.next()) {
        (Some("ok"), Some(r), Some(s)) => (r.to_owned(), s.to_owned()),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the client process failed (see above)".into());
        }
    };
    let (x_open, y_open) = pair.channels_open();
    let with = rss();
    let hwm = proc_status_bytes("VmHWM:").unwrap_or(0);
    drop(child.stdin.take());
    let _ = child.wait();

    let show = |c: Option<u64>| c.map_or("?".to_string(), |c| c.to_string());
    println!(
        "  channels open (Daemon::status(), what `sdt status` prints): x (entry) {}, y (exit) {}",
        show(x_open),
        show(y_open),
    );
    println!(
        "  {n} client sockets (in a child process) each sent one datagram and got its echo \
         in {secs} s ({resent} resent)"
    );
    let grown = with.saturating_sub(idle);
    println!(
        "  VmRSS {} before the nodes, {} with both nodes idle (+{}), {} with {n} channels \
         (+{}: {:.0} B per channel, both nodes)",
        mb(before),
        mb(idle),
        mb(idle.saturating_sub(before)),
        mb(with),
        mb(grown),
        grown as f64 / n.max(1) as f64
    );
    let node = std::mem::size_of::<DaemonNode>();
    println!(
        "  VmHWM (peak RSS of this process: both nodes and the echo server) {}; each node's core \
         is {} preallocated for {CHANNELS} channels ({} B per channel, all its state included)",
        mb(hwm),
        mb(node as u64),
        node / CHANNELS
    );
    let ok = x_open == Some(n as u64) && y_open == Some(n as u64);
    if !ok {
        println!("  FAILED: expected {n} channels open on both nodes");
    }
    pair.stop();
    Ok(ok)
}

/// A chain of two socat processes, each a plain UDP relay like
/// [`Relay`] but an ordinary program's (a `select` loop, three system calls
/// a hop as in sdt's event loop): client -> first -> second -> `target`.
struct SocatPair {
    children: Vec<std::process::Child>,
    addr: SocketAddr,
}

impl SocatPair {
    fn start(target: SocketAddr) -> Result<SocatPair, String> {
        // Two distinct free ports: both probe sockets are held at once.
        let probe = || UdpSocket::bind(localhost()).and_then(|s| Ok((s.local_addr()?, s)));
        let ((second, a), (first, b)) = probe()
            .and_then(|x| Ok((x, probe()?)))
            .map_err(|e| format!("no free port: {e}"))?;
        drop((a, b));
        // Built first, so that its drop ends a socat already started if
        // the next one cannot start.
        let mut pair = SocatPair {
            children: Vec::new(),
            addr: first,
        };
        for (listen, to) in [(second, target), (first, second)] {
            let child = Command::new("socat")
                .args([
                    "-b65536".to_owned(),
                    format!("UDP4-LISTEN:{},bind=127.0.0.1,reuseaddr", listen.port()),
                    format!("UDP4:{to}"),
                ])
                .stdin(Stdio::null())
                .spawn()
                .map_err(|e| {
                    format!(
                        "socat (the relay the latency is compared with; Debian's package \
                         socat, which scripts/install-deps.sh installs): {e}"
                    )
                })?;
            pair.children.push(child);
        }
        // Each socat takes the first datagram's sender as its one peer:
        // the ping socket must be the first to reach it.
        Ok(pair)
    }
}

impl Drop for SocatPair {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Round trips: straight to the echo server, through two plain relays
/// (in-process threads, then two socat processes: the same hand-overs
/// between processes as the tunnel, with nothing done at each hop), and
/// through the tunnel, interleaved in rounds so all see the same machine.
/// Each path keeps one client socket for all its rounds.
fn latency(pair: &Pair, pings: usize) -> Result<(), String> {
    const ROUNDS: usize = 10;
    let per_round = pings.div_ceil(ROUNDS);
    let relays_far = Relay::start(pair.echo.addr).map_err(|e| format!("relay: {e}"))?;
    let relays = Relay::start(relays_far.addr).map_err(|e| format!("relay: {e}"))?;
    let socat = SocatPair::start(pair.echo.addr)?;
    let paths = [
        ("direct", pair.echo.addr),
        ("relays", relays.addr),
        ("socat", socat.addr),
        ("tunnel", pair.listen),
    ];
    let sockets = paths
        .iter()
        .map(|_| UdpSocket::bind(localhost()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ping socket: {e}"))?;
    // socat listens once it has started; the first pings may find no one.
    wait_for("socat to relay", Duration::from_secs(5), || {
        ping_from(&sockets[2], socat.addr, 1).is_ok_and(|r| r.len() == 1)
    })?;
    let mut rtts = vec![Vec::new(); paths.len()];
    for _ in 0..ROUNDS {
        for ((_, to), (socket, v)) in paths.iter().zip(sockets.iter().zip(&mut rtts)) {
            v.extend(ping_from(socket, *to, per_round).map_err(|e| format!("ping: {e}"))?);
        }
    }
    for ((name, _), v) in paths.iter().zip(&mut rtts) {
        if v.is_empty() {
            return Err(format!("latency: no ping through {name} was answered"));
        }
        v.sort();
    }
    println!(
        "\nround trip: {} sequential 8-byte pings each way, interleaved; relays: two plain \
         UDP relays chained (threads blocked in recv), socat: two socat relays chained",
        ROUNDS * per_round
    );
    println!(
        "  {:<8} {:>9} {:>9} {:>9} {:>11} {:>11}",
        "path", "p50", "p99", "answered", "added p50", "added p99"
    );
    let added = |v: &[Duration], p| percentile(v, p).saturating_sub(percentile(&rtts[0], p));
    for ((name, _), v) in paths.iter().zip(&rtts) {
        println!(
            "  {name:<8} {:>9} {:>9} {:>9} {:>11} {:>11}",
            micros(percentile(v, 0.5)),
            micros(percentile(v, 0.99)),
            v.len(),
            micros(added(v, 0.5)),
            micros(added(v, 0.99))
        );
    }
    let over = |i: usize| {
        percentile(&rtts[3], 0.5).as_secs_f64() / percentile(&rtts[i], 0.5).as_secs_f64().max(1e-9)
    };
    println!(
        "  tunnel p50 / relays p50 {:.2}, / socat p50 {:.2}; the tunnel's own work over the \
         relays' floor: {} p50",
        over(1),
        over(2),
        micros(percentile(&rtts[3], 0.5).saturating_sub(percentile(&rtts[1], 0.5)))
    );
    Ok(())
}

fn throughputs(pair: &Pair, args: &Args) -> Result<(), String> {
    let run_for = Duration::from_secs_f64(args.seconds.max(0.1));
    let loss_timeout = Duration::from_millis(20);
    println!(
        "\nthroughput: {} client sockets x {} datagrams in flight, {:.1} s per run; \
         datagrams echoed per second, payload Mbit/s each way",
        args.sockets, args.window, args.seconds
    );
    println!(
        "  {:>6} {:<8} {:>13} {:>9} {:>8} {:>14}",
        "size", "path", "datagrams/s", "Mbit/s", "lost", "tunnel/direct"
    );
    for size in SIZES {
        let mut direct_rate = 0.0;
        for (name, to) in [("direct", pair.echo.addr), ("tunnel", pair.listen)] {
            let (t, rate): (Throughput, f64) =
                throughput_parallel(to, size, args.sockets, args.window, run_for, loss_timeout)
                    .map_err(|e| format!("throughput: {e}"))?;
            let ratio = if name == "direct" {
                direct_rate = rate;
                String::new()
            } else {
                format!("{:.2}", rate / direct_rate.max(f64::MIN_POSITIVE))
            };
            println!(
                "  {:>4} B {name:<8} {rate:>13.0} {:>9.1} {:>8} {ratio:>14}",
                size,
                rate * size as f64 * 8.0 / 1e6,
                t.lost
            );
        }
    }
    Ok(())
}

fn chacha20_backend() -> &'static str {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if cfg!(target_feature = "avx2") || std::arch::is_x86_feature_detected!("avx2") {
            return "AVX2";
        }
        if cfg!(target_feature = "sse2") || std::arch::is_x86_feature_detected!("sse2") {
            return "SSE2";
        }
    }
    "portable"
}

fn run(args: &Args) -> Result<bool, String> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("sdt-bench: two nodes on loopback in one process; {cpus} CPUs");
    println!(
        "  crypto: ChaCha20 {} (run-time detection), Poly1305 {}",
        chacha20_backend(),
        sdt_core::crypto::POLY1305_BACKEND
    );

    let runs = |part| args.only.is_empty() || args.only.contains(&part);
    let channels_ok = !runs(Part::Channels) || channels(args.channels)?;

    if runs(Part::Latency) || runs(Part::Throughput) {
        let pair = Pair::start(1024, Duration::from_secs(60))?;
        if runs(Part::Latency) {
            latency(&pair, args.pings)?;
        }
        if runs(Part::Throughput) {
            throughputs(&pair, args)?;
        }
        pair.stop();
    }
    let flood_ok =
        !runs(Part::Flood) || flood::run(Duration::from_secs_f64(args.flood_seconds.max(7.0)))?;
    Ok(channels_ok && flood_ok)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(to) = args.clients_for {
        return match clients(to, args.channels) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sdt-bench clients: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let started = Instant::now();
    let result = run(&args);
    println!("\nsdt-bench took {:.1} s", started.elapsed().as_secs_f64());
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sdt-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
