//! Hot reload end to end (issue 12): two real nodes on loopback, a flow of
//! about 200 datagrams/s through a forward service while `sdt reload` adds
//! a second service, changes the first one's limit and adds a peer on both
//! nodes, and then SIGHUP removes the second service again. No datagram of
//! the unchanged service may be lost across all of it (sent and received
//! are counted), its channel is kept, and the new service carries. A file
//! that does not validate is refused with the line `sdt check` prints and
//! the node keeps running; a key that needs a restart is refused naming
//! it; SIGHUP reloads the node's own file and the node does not exit.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use sdt::status::Status;
use sdt_core::node::ServiceId;
use support::node::{write_private, Keys};
use support::{run, wait_until, Proc, SDT};

/// A free UDP port on loopback (bound and released: the nodes bind it).
fn free_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
}

/// One node's configuration: its key and link socket, its peers (name,
/// public key, endpoint), and `services` as written by hand.
fn config_text(
    keys: &Keys,
    listen: SocketAddr,
    socket: &Path,
    peers: &[(&str, &str, Option<SocketAddr>)],
    services: &str,
) -> String {
    let mut t = format!(
        "private_key = \"{}\"\nlisten = \"{listen}\"\ncontrol_socket = \"{}\"\n",
        keys.private,
        socket.display()
    );
    for (name, public, endpoint) in peers {
        t += &format!("\n[[peer]]\nname = \"{name}\"\npublic_key = \"{public}\"\n");
        if let Some(e) = endpoint {
            t += &format!("endpoint = \"{e}\"\n");
        }
    }
    t + "\n" + services
}

fn entry(id: u8, peer: &str, listen: SocketAddr, extra: &str) -> String {
    format!(
        "[[service]]\nid = {id}\npeer = \"{peer}\"\nmode = \"forward\"\nlisten = \"{listen}\"\n{extra}\n"
    )
}

fn exit(id: u8, peer: &str, target: SocketAddr, extra: &str) -> String {
    format!(
        "[[service]]\nid = {id}\npeer = \"{peer}\"\nmode = \"forward\"\ntarget = \"{target}\"\n{extra}\n"
    )
}

/// `sdt -v run -c CONFIG` in the background, up once it answers status.
fn start(dir: &Path, name: &str, config: &Path, socket: &Path) -> Proc {
    let mut cmd = Command::new(SDT);
    cmd.args(["-v", "run", "-c"])
        .arg(config)
        .env_remove("RUST_LOG");
    support::die_with_parent(&mut cmd);
    let mut node = Proc::spawn(name, dir, &mut cmd, false);
    let up = wait_until(Duration::from_secs(10), || {
        node.exited().is_none() && sdt::daemon::query_status(socket, false).is_ok()
    });
    assert!(up, "node {name} did not come up: {}", node.describe());
    node
}

fn status(socket: &Path) -> Status {
    let text = sdt::daemon::query_status(socket, true).expect("status");
    serde_json::from_str(&text).expect("status json")
}

/// `sdt ARGS -c CONFIG` to completion.
fn sdt(args: &[&str], config: &Path) -> support::Ran {
    let ran = run(
        Command::new(SDT)
            .args(args)
            .arg("-c")
            .arg(config)
            .env_remove("RUST_LOG"),
        Duration::from_secs(20),
    );
    assert!(ran.status.is_some(), "sdt {args:?} did not exit: {ran}");
    assert!(!ran.stderr.contains("panicked"), "{ran}");
    ran
}

/// A target counting the distinct numbered datagrams it gets.
struct Target {
    addr: SocketAddr,
    seen: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<bool>>>,
}

impl Target {
    fn start(max: usize) -> Target {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("target");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut got = vec![false; max];
            let mut buf = [0u8; 64];
            while !st.load(Ordering::Relaxed) {
                let Ok(n) = sock.recv(&mut buf) else {
                    continue;
                };
                let Ok(b) = <[u8; 8]>::try_from(&buf[..n]) else {
                    continue;
                };
                let seq = u64::from_be_bytes(b) as usize;
                if seq < max && !got[seq] {
                    got[seq] = true;
                    s.fetch_add(1, Ordering::Relaxed);
                }
            }
            got
        });
        Target {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    fn finish(mut self) -> Vec<bool> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Sends datagram `seq` (8 bytes, big endian) from `sock` to `to` until the
/// target has seen `want`, one every 20 ms, at most 15 s; the last seq
/// sent plus one.
fn send_until_seen(
    sock: &UdpSocket,
    to: SocketAddr,
    target: &Target,
    want: u64,
    mut seq: u64,
) -> u64 {
    let ok = wait_until(Duration::from_secs(15), || {
        let _ = sock.send_to(&seq.to_be_bytes(), to);
        seq += 1;
        std::thread::sleep(Duration::from_millis(20));
        target.seen() >= want
    });
    assert!(ok, "nothing came through {to} in 15 s");
    seq
}

struct Lab {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    a_keys: Keys,
    b_keys: Keys,
    a_link: SocketAddr,
    b_link: SocketAddr,
    a_socket: PathBuf,
    b_socket: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let dir = support::temp_dir();
        let path = dir.path().to_owned();
        Lab {
            a_socket: path.join("a.sock"),
            b_socket: path.join("b.sock"),
            dir: path,
            _dir: dir,
            a_keys: Keys::new(),
            b_keys: Keys::new(),
            a_link: free_port(),
            b_link: free_port(),
        }
    }

    /// A's configuration file text: entries; `extra_peer` adds a peer.
    fn a(&self, services: &str, extra_peer: Option<&str>) -> String {
        let mut peers = vec![("b", self.b_keys.public.as_str(), Some(self.b_link))];
        if let Some(p) = extra_peer {
            peers.push(("c", p, None));
        }
        config_text(&self.a_keys, self.a_link, &self.a_socket, &peers, services)
    }

    fn b(&self, services: &str, extra_peer: Option<&str>) -> String {
        let mut peers = vec![("a", self.a_keys.public.as_str(), Some(self.a_link))];
        if let Some(p) = extra_peer {
            peers.push(("c", p, None));
        }
        config_text(&self.b_keys, self.b_link, &self.b_socket, &peers, services)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        write_private(&path, text);
        path
    }
}

/// The flow through service 1 loses nothing while both nodes reload (a
/// service added, a limit changed, a peer added), and the added service
/// carries.
#[test]
fn reload_keeps_an_unchanged_service_lossless_and_starts_the_new_one() {
    let lab = Lab::new();
    // At most 50 s at 200/s: the flow runs until every reload below is
    // done.
    const FLOW: usize = 10_000;
    let target1 = Target::start(FLOW + 10_000);
    let target2 = Target::start(10_000);
    let (listen1, listen2) = (free_port(), free_port());

    let a_file = lab.write("a.toml", &lab.a(&entry(1, "b", listen1, ""), None));
    let b_file = lab.write("b.toml", &lab.b(&exit(1, "a", target1.addr, ""), None));
    let mut a = start(&lab.dir, "a", &a_file, &lab.a_socket);
    let mut b = start(&lab.dir, "b", &b_file, &lab.b_socket);

    // Warm up: the session and service 1's channel, with numbers above the
    // counted flow's.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    send_until_seen(&client, listen1, &target1, 1, FLOW as u64);
    let warm = target1.seen();

    // The counted flow, 200 datagrams/s from the same client (the same
    // channel), on a thread of its own.
    let flow_client = client.try_clone().unwrap();
    let stop_flow = Arc::new(AtomicBool::new(false));
    let stop = stop_flow.clone();
    let flow_sent = Arc::new(AtomicU64::new(0));
    let counted = flow_sent.clone();
    let flow = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let mut sent = 0u64;
        for seq in 0..FLOW as u64 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let at = start + Duration::from_millis(5 * seq);
            std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
            if flow_client.send_to(&seq.to_be_bytes(), listen1).is_ok() {
                sent += 1;
                counted.store(sent, Ordering::Relaxed);
            }
        }
        sent
    });

    std::thread::sleep(Duration::from_millis(800));
    let c = Keys::new();
    // B first: an exit for service 2, service 1's limit changed, peer c.
    let b_new = lab.b(
        &(exit(1, "a", target1.addr, "max_channels = 100") + &exit(2, "a", target2.addr, "")),
        Some(&c.public),
    );
    write_private(&b_file, &b_new);
    let ran = sdt(&["reload"], &b_file);
    assert!(ran.ok(), "{ran}");
    let line = ran.stdout.trim();
    println!("B: {line}");
    assert!(
        line.starts_with("reloaded ")
            && line.contains("peers 1 added, 0 removed, 0 rekeyed")
            && line.contains("services 1 added, 0 removed, 1 changed"),
        "{line}"
    );
    // Then A: the entry of service 2, service 1's limit, peer c.
    let a_new = lab.a(
        &(entry(1, "b", listen1, "max_channels = 100") + &entry(2, "b", listen2, "")),
        Some(&c.public),
    );
    write_private(&a_file, &a_new);
    let ran = sdt(&["reload"], &a_file);
    assert!(ran.ok(), "{ran}");
    assert!(
        ran.stdout
            .contains("services 1 added, 0 removed, 1 changed"),
        "{ran}"
    );

    // The new service carries.
    let client2 = UdpSocket::bind("127.0.0.1:0").unwrap();
    send_until_seen(&client2, listen2, &target2, 3, 0);

    // A file that does not validate: refused with `sdt check`'s line, the
    // node keeps running its configuration.
    let broken = lab.write(
        "broken.toml",
        &lab.a(&(entry(1, "b", listen1, "max_channels = \"many\"")), None),
    );
    let checked = sdt(&["check"], &broken);
    let reloaded = sdt(&["reload"], &broken);
    assert!(!checked.ok() && !reloaded.ok(), "{checked}\n{reloaded}");
    assert_eq!(reloaded.code(), checked.code(), "{reloaded}");
    assert_eq!(reloaded.stderr.lines().count(), 1, "{reloaded}");
    assert_eq!(reloaded.stderr, checked.stderr);
    assert!(reloaded.stderr.contains("broken.toml:"), "{reloaded}");
    // A key that needs a restart: refused whole, naming it.
    let moved = lab.write(
        "moved.toml",
        &config_text(
            &lab.a_keys,
            free_port(),
            &lab.a_socket,
            &[("b", &lab.b_keys.public, Some(lab.b_link))],
            &entry(1, "b", listen1, ""),
        ),
    );
    let refused = sdt(&["reload"], &moved);
    assert_eq!(refused.code(), Some(1), "{refused}");
    assert!(
        refused.stderr.contains("key `listen`") && refused.stderr.contains("restart"),
        "{refused}"
    );
    let s = status(&lab.a_socket);
    assert_eq!(s.services.len(), 2, "the running configuration stays");
    assert_eq!(s.peers.len(), 2);

    // SIGHUP: A re-reads its own file, here without service 2.
    write_private(
        &a_file,
        &lab.a(
            &entry(1, "b", listen1, "max_channels = 100"),
            Some(&c.public),
        ),
    );
    // SAFETY: kill(2) on our own child, not reaped yet (so not reused).
    unsafe { libc::kill(a.pid(), libc::SIGHUP) };
    let reloaded = wait_until(Duration::from_secs(10), || {
        status(&lab.a_socket).service(ServiceId::new(2)).is_none()
    });
    assert!(reloaded, "SIGHUP did not reload: {}", a.describe());
    assert!(
        a.exited().is_none(),
        "SIGHUP stopped the node: {}",
        a.describe()
    );
    assert!(
        a.stderr_text().contains("services 0 added, 1 removed"),
        "the outcome is logged: {}",
        a.stderr_text()
    );
    // Its port is free again.
    assert!(
        UdpSocket::bind(listen2).is_ok(),
        "service 2's socket is still open"
    );
    // A broken file on SIGHUP: logged, the node keeps running.
    write_private(&a_file, "private_key = \"x\"\n");
    unsafe { libc::kill(a.pid(), libc::SIGHUP) };
    let logged = wait_until(Duration::from_secs(10), || {
        a.stderr_text().contains("SIGHUP: reload refused")
    });
    assert!(logged, "{}", a.describe());
    assert!(a.exited().is_none(), "{}", a.describe());
    assert_eq!(status(&lab.a_socket).services.len(), 1);

    // At least 1000 datagrams in all, some of them after the last reload.
    let after = flow_sent.load(Ordering::Relaxed) + 100;
    wait_until(Duration::from_secs(30), || {
        flow_sent.load(Ordering::Relaxed) >= after.max(1000)
    });
    stop_flow.store(true, Ordering::Relaxed);
    let sent = flow.join().unwrap();
    assert!(sent >= 1000, "the client sent only {sent}");
    let done = wait_until(Duration::from_secs(10), || target1.seen() >= warm + sent);
    let got = target1.finish();
    let lost: Vec<usize> = (0..sent as usize).filter(|&i| !got[i]).collect();
    assert!(
        done && lost.is_empty(),
        "service 1 lost {} of {sent} datagrams across the reloads: {lost:?}\nA:\n{}\nB:\n{}",
        lost.len(),
        a.stderr_text(),
        b.stderr_text()
    );
    println!(
        "service 1: {sent} sent, {} received across three reloads (a service added, \
         then removed) and three refusals",
        (0..sent as usize).filter(|&i| got[i]).count()
    );
    // Service 1 kept its channel: one client, one channel, on both nodes.
    for (socket, has_2) in [(&lab.a_socket, false), (&lab.b_socket, true)] {
        let s = status(socket);
        let one = s.service(ServiceId::new(1)).expect("service 1");
        assert_eq!(one.channels_created, 1, "{one:?}");
        assert_eq!(s.service(ServiceId::new(2)).is_some(), has_2);
        assert_eq!(s.peers.len(), 2);
    }
    assert!(target2.finish().iter().filter(|&&x| x).count() >= 3);

    a.terminate_ok();
    b.terminate_ok();
}

/// Removing a service closes its socket and its channels; its port can be
/// bound again by a new service in the same reload.
#[test]
fn reload_replaces_a_service_on_the_same_port() {
    let lab = Lab::new();
    let target = Target::start(10_000);
    let other = Target::start(10_000);
    let listen = free_port();
    let a_file = lab.write("a.toml", &lab.a(&entry(1, "b", listen, ""), None));
    let b_file = lab.write(
        "b.toml",
        &lab.b(
            &(exit(1, "a", target.addr, "") + &exit(3, "a", other.addr, "")),
            None,
        ),
    );
    let mut a = start(&lab.dir, "a", &a_file, &lab.a_socket);
    let mut b = start(&lab.dir, "b", &b_file, &lab.b_socket);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    send_until_seen(&client, listen, &target, 2, 0);
    // Service 1 goes; service 3 takes its port.
    write_private(&a_file, &lab.a(&entry(3, "b", listen, ""), None));
    let ran = sdt(&["reload"], &a_file);
    assert!(ran.ok(), "{ran}");
    assert!(
        ran.stdout
            .contains("services 1 added, 1 removed, 0 changed; 1 channels closed"),
        "{ran}"
    );
    send_until_seen(&client, listen, &other, 2, 100);
    let s = status(&lab.a_socket);
    assert_eq!(s.services.len(), 1);
    assert!(s.service(ServiceId::new(3)).is_some());
    a.terminate_ok();
    b.terminate_ok();
    target.finish();
    other.finish();
}
