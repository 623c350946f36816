//! What `sdt status` shows (issue 12, finding 4), with two real nodes on
//! loopback: each service's settings, each peer's keep-up and keepalive
//! settings, rates with `--rate`, and a dead peer marked stale with the
//! time since it was last heard from, rather than looking healthy because
//! its session's keys are still valid.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sdt::loopback::{free_port, Echo};
use sdt::status::Status;
use sdt_core::node::ServiceId;
use support::node::{start_local, Keys};
use support::{run, wait_until, SDT};

/// `sdt status --socket SOCKET ARGS...`, which must succeed.
fn status(socket: &Path, args: &[&str]) -> String {
    let out = run(
        Command::new(SDT)
            .args(["status", "--socket"])
            .arg(socket)
            .args(args),
        Duration::from_secs(20),
    );
    assert!(out.ok(), "{out}");
    out.stdout
}

fn status_json(socket: &Path, args: &[&str]) -> Status {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let text = status(socket, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Sends a datagram to `to` every 5 ms until `stop`.
fn sender(to: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        while !stop.load(Ordering::Relaxed) {
            let _ = socket.send_to(b"0123456789", to);
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

#[test]
fn status_shows_settings_rates_and_a_dead_peer_as_stale() {
    let dir = support::temp_dir();
    let echo = Echo::start().unwrap();
    let (kx, ky) = (Keys::new(), Keys::new());
    let (x_link, y_link, entry) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let mut y = start_local(
        dir.path(),
        "y",
        &format!(
            "private_key = \"{}\"\nlisten = \"{y_link}\"\n\n[[peer]]\nname = \"x\"\n\
             public_key = \"{}\"\n\n[[service]]\nid = 1\npeer = \"x\"\nmode = \"forward\"\n\
             target = \"{}\"\n",
            ky.private, kx.public, echo.addr
        ),
    );
    let mut x = start_local(
        dir.path(),
        "x",
        &format!(
            "private_key = \"{}\"\nlisten = \"{x_link}\"\n\n[[peer]]\nname = \"y\"\n\
             public_key = \"{}\"\nendpoint = \"{y_link}\"\nkeep_up = true\n\
             persistent_keepalive = \"25s\"\n\n[[service]]\nid = 1\npeer = \"y\"\n\
             mode = \"forward\"\nlisten = \"{entry}\"\n",
            kx.private, ky.public
        ),
    );
    let up = wait_until(Duration::from_secs(15), || {
        status_json(&x.socket, &[]).peers[0].session_up
    });
    assert!(up, "no session: {}", x.proc.describe());

    // Settings, by name, not by Rust's Debug form.
    let text = status(&x.socket, &[]);
    println!("{text}");
    for want in [
        "service 1 (forward, entry):",
        "  peer: y",
        &format!("  listen: {entry}"),
        "  keep up: yes; persistent keepalive: every 25 s",
        "  last received: ",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    assert!(!text.contains("Service("), "{text}");
    let y_text = status(&y.socket, &[]);
    assert!(
        y_text.contains(&format!("  target: {}", echo.addr)) && y_text.contains("  peer: x"),
        "{y_text}"
    );
    // Y keeps the link up too, though not told to: X holds the entry half
    // of a service they share (core's rule), and Y has learned X's address.
    assert!(
        y_text.contains("keep up: yes; persistent keepalive: off"),
        "{y_text}"
    );

    // Rates over the last second while a customer sends.
    let stop = Arc::new(AtomicBool::new(false));
    let sending = sender(entry, stop.clone());
    let flowing = wait_until(Duration::from_secs(10), || {
        status_json(&x.socket, &[])
            .service(ServiceId::new(1))
            .is_some_and(|s| s.to_peer_datagrams > 0)
    });
    assert!(flowing, "nothing crossed: {}", x.proc.describe());
    let rated = status_json(&x.socket, &["--rate"]);
    let rated_text = status(&x.socket, &["--rate"]);
    stop.store(true, Ordering::Relaxed);
    sending.join().unwrap();
    println!("{rated_text}");
    let interval = rated.rate_interval_secs.expect("an interval");
    assert!(interval > 0.5, "{interval}");
    let service = rated.service(ServiceId::new(1)).unwrap();
    let to_peer = service.to_peer_rate.expect("a service rate");
    assert!(
        to_peer.datagrams_per_sec > 0.0
            // 10 B each (to within float rounding of the two divisions).
            && to_peer.bytes_per_sec >= 9.9 * to_peer.datagrams_per_sec,
        "{to_peer:?}"
    );
    assert!(
        rated.peers[0]
            .tx_rate
            .expect("a peer rate")
            .datagrams_per_sec
            > 0.0
    );
    assert!(
        rated_text.contains("  rate: to peer ") && rated_text.contains(" datagrams/s, "),
        "{rated_text}"
    );
    let plain = status_json(&x.socket, &[]);
    assert!(plain.rate_interval_secs.is_none() && plain.peers[0].rx_rate.is_none());
    assert!(!plain.peers[0].stale, "{plain:#?}");

    // Y dies without a word. X's session keys stay valid for minutes, but
    // what X sends goes unanswered: X marks Y stale and says how long ago
    // it last heard from it.
    y.proc.terminate_ok();
    let stop = Arc::new(AtomicBool::new(false));
    let sending = sender(entry, stop.clone());
    let stale = wait_until(Duration::from_secs(30), || {
        status_json(&x.socket, &[]).peers[0].stale
    });
    stop.store(true, Ordering::Relaxed);
    sending.join().unwrap();
    let s = status_json(&x.socket, &[]);
    let text = status(&x.socket, &[]);
    println!("{text}");
    assert!(stale, "Y never marked stale: {s:#?}");
    let heard = s.peers[0].last_received_secs_ago.expect("heard once");
    // Stale once data went unanswered for core's PROBE_AFTER +
    // PROBE_TIMEOUT (2 s), so Y was last heard at least that long ago.
    assert!(heard >= 2.0, "last received {heard} s ago");
    assert!(
        text.contains("STALE") || text.contains("the peer does not answer"),
        "{text}"
    );
    let listed = run(
        Command::new(SDT).args(["status", "--dir"]).arg(dir.path()),
        Duration::from_secs(20),
    );
    assert!(
        listed.stdout.contains("peers: y stale") || listed.stdout.contains("peers: y down"),
        "{listed}"
    );
    x.proc.terminate_ok();
}
