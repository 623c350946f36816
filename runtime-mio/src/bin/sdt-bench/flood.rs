//! The handshake flood: can a node under a flood of initiations keep
//! carrying traffic, and still complete a handshake with its real peer?

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_core::OsRng;
use sdt::config::{Half, Mode, PeerSpec};
use sdt::daemon::{Daemon, Options};
use sdt::loopback::{free_port, localhost, micros, node_config, percentile, service, Echo};
use sdt::status::Status;
use sdt_core::key::PrivateKey;
use sdt_core::link::{Link, PeerConfig, MIN_TRANSMIT_BUFFER};
use sdt_core::node::ServiceId;

const FORWARD: ServiceId = ServiceId::new(1);
/// Flooding threads and the source ports each sends from.
const THREADS: usize = 2;
const PORTS_PER_THREAD: usize = 64;
/// Distinct initiations the flood cycles through.
const DISTINCT: usize = 256;

/// Initiations from a key `target_public`'s node does not know: valid
/// `mac1`, valid Noise, unknown static key.
fn stranger_initiations(target_public: sdt_core::key::PublicKey, to: SocketAddr) -> Vec<Vec<u8>> {
    let key = PrivateKey::generate(&mut OsRng);
    let now = sdt_core::Instant::from_secs(1);
    let mut link: Link<ChaCha20Rng, 1> = Link::new(key, ChaCha20Rng::seed_from_u64(7), now, 0);
    let mut config = PeerConfig::new(target_public);
    config.endpoint = Some(to);
    let Ok(peer) = link.add_peer(config, now) else {
        return Vec::new();
    };
    let mut buf = [0u8; MIN_TRANSMIT_BUFFER];
    (0..DISTINCT)
        .filter_map(|_| {
            link.renew_incarnation(peer, now);
            let t = link.poll_transmit(now, &mut buf).ok().flatten()?;
            Some(buf[..t.len].to_vec())
        })
        .collect()
}

fn drops(status: &Option<Status>, reason: &str) -> u64 {
    status
        .as_ref()
        .and_then(|s| s.unattributed_drops.iter().find(|(r, _)| r == reason))
        .map_or(0, |(_, n)| *n)
}

/// Flood rates tried, initiations per second; 0 is as fast as the
/// flooding threads can.
const RATES: [u64; 4] = [20_000, 100_000, 200_000, 0];

/// Runs one flood of `length` at each of [`RATES`]; true if x got its
/// session back under every rate the node kept traffic flowing at.
pub fn run(length: Duration) -> Result<bool, String> {
    println!(
        "\nhandshake flood: initiations from an unknown key with a valid mac1 (153 B each), \
         {THREADS} threads x {PORTS_PER_THREAD} source ports, {:.0} s per rate; x restarts 1 s \
         in and must handshake through the flood",
        length.as_secs_f64()
    );
    println!(
        "  {:>9} {:>9} {:>10} {:>9} {:>10} {:>11} {:>9} {:>9} {:>10}",
        "asked/s",
        "sent/s",
        "processed",
        "DH spent",
        "cookie rpl",
        "out/in B",
        "pings ok",
        "ping p50",
        "x back"
    );
    let mut all_ok = true;
    for rate in RATES {
        let (ok, traffic_flowed) = flood_at(rate, length)?;
        if traffic_flowed && !ok {
            all_ok = false;
        }
    }
    println!(
        "  (processed: initiations y read, the rest the kernel dropped from y's full receive \
         queue; DH spent: handshakes y computed before it noticed the load)"
    );
    Ok(all_ok)
}

/// One flood at `rate` initiations per second (0: unpaced). Returns whether
/// x got its session back, and whether real traffic flowed (half the pings
/// answered).
fn flood_at(rate: u64, length: Duration) -> Result<(bool, bool), String> {
    let key_x = PrivateKey::generate(&mut OsRng);
    let key_y = PrivateKey::generate(&mut OsRng);
    let (pub_x, pub_y) = (key_x.public_key(), key_y.public_key());
    let echo = Echo::start().map_err(|e| format!("echo server: {e}"))?;
    let listen = free_port().map_err(|e| format!("no free port: {e}"))?;
    let mut exit = service(FORWARD, Mode::Forward, Half::Exit);
    exit.target = Some(echo.addr);
    let mut entry = service(FORWARD, Mode::Forward, Half::Entry);
    entry.listen = Some(listen);
    let peer = PeerSpec::new;
    let start_x = |endpoint| {
        let mut peer_y = peer("y", pub_y, Some(endpoint));
        // x's handshake through the flood is what is measured.
        peer_y.keep_up = true;
        Daemon::start(
            node_config("flood-x", key_x.clone(), peer_y, vec![entry.clone()]),
            Options::default(),
        )
        .map_err(|e| format!("node x: {e}"))
    };
    let y = Daemon::start(
        node_config("flood-y", key_y, peer("x", pub_x, None), vec![exit]),
        Options::default(),
    )
    .map_err(|e| format!("node y: {e}"))?;
    let target = y.link_addr();
    let mut x = start_x(target)?;
    let up = |x: &Daemon| x.status().is_some_and(|s| s.peers[0].session_up);
    let waited = Instant::now();
    while !up(&x) {
        if waited.elapsed() > Duration::from_secs(5) {
            return Err("no session before the flood".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }

    let initiations = Arc::new(stranger_initiations(pub_y, target));
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, replies, reply_bytes) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let before = y.status();
    let started = Instant::now();
    let flooders: Vec<_> = (0..THREADS)
        .map(|t| {
            let (initiations, stop) = (initiations.clone(), stop.clone());
            let (sent, replies, reply_bytes) = (sent.clone(), replies.clone(), reply_bytes.clone());
            std::thread::spawn(move || {
                let sockets: Vec<UdpSocket> = (0..PORTS_PER_THREAD)
                    .filter_map(|_| UdpSocket::bind(localhost()).ok())
                    .collect();
                for s in &sockets {
                    let _ = s.set_nonblocking(true);
                }
                let mut buf = [0u8; 256];
                let mut i = t;
                let mut mine = 0usize;
                let begun = Instant::now();
                let per_thread = rate / THREADS as u64;
                while !stop.load(Ordering::Relaxed) {
                    if per_thread > 0 {
                        // Paced: no further ahead than the rate allows.
                        let allowed = (begun.elapsed().as_secs_f64() * per_thread as f64) as usize;
                        if mine >= allowed {
                            std::thread::sleep(Duration::from_micros(200));
                            continue;
                        }
                    }
                    for s in &sockets {
                        let m = &initiations[i % initiations.len().max(1)];
                        i += 1;
                        mine += 1;
                        if s.send_to(m, target).is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        while let Ok((n, _)) = s.recv_from(&mut buf) {
                            replies.fetch_add(1, Ordering::Relaxed);
                            reply_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    // Real traffic through the flooded node, and x restarted midway.
    let client = UdpSocket::bind(localhost()).map_err(|e| e.to_string())?;
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let (mut rtts, mut pings) = (Vec::new(), 0u64);
    let mut restart: Option<Instant> = None;
    let mut recovered: Option<Duration> = None;
    let mut buf = [0u8; 64];
    while started.elapsed() < length {
        if restart.is_none() && started.elapsed() >= Duration::from_secs(1) {
            let _ = x.stop();
            x = start_x(target)?;
            restart = Some(Instant::now());
        }
        if let (Some(at), None) = (restart, recovered) {
            if up(&x) {
                recovered = Some(at.elapsed());
            }
        }
        pings += 1;
        let t0 = Instant::now();
        if client.send_to(&pings.to_be_bytes(), listen).is_err() {
            continue;
        }
        while let Ok((n, _)) = client.recv_from(&mut buf) {
            if n == 8 && buf[..8] == pings.to_be_bytes() {
                rtts.push(t0.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        let _ = f.join();
    }
    let secs = started.elapsed().as_secs_f64();
    let after = y.status();
    let delta = |r: &str| drops(&after, r).saturating_sub(drops(&before, r));
    let sent = sent.load(Ordering::Relaxed);
    let (replies, reply_bytes) = (
        replies.load(Ordering::Relaxed),
        reply_bytes.load(Ordering::Relaxed),
    );
    rtts.sort();
    let received = sent * 153;
    let processed = delta("unknown_peer") + delta("cookie_required") + delta("rate_limited");
    let asked = if rate == 0 {
        "max".to_string()
    } else {
        rate.to_string()
    };
    let pings_ok = rtts.len() as u64;
    println!(
        "  {asked:>9} {:>9.0} {:>10} {:>9} {:>10} {:>11.2} {:>9} {:>9} {:>10}",
        sent as f64 / secs,
        processed,
        delta("unknown_peer"),
        replies,
        reply_bytes as f64 / received.max(1) as f64,
        format!("{pings_ok}/{pings}"),
        micros(percentile(&rtts, 0.5)),
        recovered.map_or("no".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
    );
    let _ = x.stop();
    let _ = y.stop();
    drop(echo);
    Ok((recovered.is_some(), pings_ok * 2 >= pings))
}
