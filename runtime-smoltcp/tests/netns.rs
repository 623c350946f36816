//! A node on smoltcp over a real TUN device, in a network namespace of its
//! own, talking to kernel peers in another namespace. Needs root.
//!
//! ```text
//!  ns A                                   ns B
//!  smoltcp X 10.77.0.2                    kernel 10.77.9.2: UDP echo (:9000),
//!    | tun "sdt0"                                 and the mio daemon (:51820)
//!  kernel 10.77.0.1 ── veth 10.77.9.1 ─── 10.77.9.2
//!  kernel UDP client, echo (:9001)        (smoltcp Y 10.77.1.2 on tun "sdt1")
//! ```
//!
//! - `smoltcp_nodes_over_tun_carry_kernel_traffic` runs now: X on its TUN in
//!   A, Y on a second TUN in B, kernel customers on both sides.
//! - `smoltcp_node_talks_to_the_mio_daemon` replaces Y with `sdt run -c
//!   FILE`, the mio daemon (`SDT_BIN`, or the `sdt` built beside this test):
//!   proof that the two runtimes interoperate over a real kernel network.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sdt_core::key::{PrivateKey, PublicKey};
use sdt_core::link::PeerConfig;
use sdt_core::node::{ChannelLimits, Node, Peers, Role, ServiceConfig, ServiceId};
use sdt_smoltcp::host::{open_tun, wait, Clock};
use sdt_smoltcp::{core_instant, SmolNode, Storage};
use smoltcp::iface::{Config, Interface, SocketStorage};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};

mod daemon;
use daemon::sdt_binary;

// The keys of examples/forward: X and Y.
const X_PRIVATE: &str = "PK3Mg5mtzaZg01iHo6jetW2iRmGw8wcq3R62VpY3V18=";
const X_PUBLIC: &str = "CQtNZTyKtCot8Yjc/yr4tWSs6GaEKTGrlLQB3UVVeQg=";
const Y_PRIVATE: &str = "FyeisJWVl+ZQvB8+fKnJHgnYhqpLisfAXw/4aM5Yx1Y=";
const Y_PUBLIC: &str = "ilBDt2h5t5o+gVqwZl1rAVIey7RR5X1XgsRZOIHSCFw=";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Runs `ip ARGS`, panicking with its stderr if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair, with the threads and processes
/// that run inside them. Dropping it stops them and deletes the namespaces,
/// also when the test fails.
struct Lab {
    a: String,
    b: String,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (a, b) = (format!("sdt-smol-a-{id}"), format!("sdt-smol-b-{id}"));
        let dir = std::env::temp_dir().join(format!("sdt-smol-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        ip(&["netns", "add", &a]);
        // From here on, Drop cleans up whatever was made.
        let lab = Lab {
            a: a.clone(),
            b: b.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            children: Vec::new(),
            dir,
        };
        ip(&["netns", "add", &b]);
        ip(&[
            "-n", &a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b,
        ]);
        ip(&["-n", &a, "addr", "add", "10.77.9.1/30", "dev", "va"]);
        ip(&["-n", &b, "addr", "add", "10.77.9.2/30", "dev", "vb"]);
        for (ns, dev) in [(&a, "va"), (&b, "vb")] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            sysctl(ns, "net.ipv4.ip_forward=1");
        }
        ip(&["-n", &a, "route", "add", "10.77.1.0/24", "via", "10.77.9.2"]);
        ip(&["-n", &b, "route", "add", "10.77.0.0/24", "via", "10.77.9.1"]);
        lab
    }

    /// Spawns `f` on a thread inside namespace `ns`.
    fn spawn(&mut self, ns: &str, f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let (path, stop) = (netns_path(ns), self.stop.clone());
        self.threads.push(std::thread::spawn(move || {
            enter(&path);
            f(stop)
        }));
    }

    /// A kernel UDP echo at `addr` inside `ns`.
    fn echo(&mut self, ns: &str, addr: SocketAddr) {
        let (ready, wait_ready) = mpsc::channel();
        self.spawn(ns, move |stop| {
            let socket = UdpSocket::bind(addr).expect("bind the echo socket");
            socket
                .set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            ready.send(()).unwrap();
            let mut buf = [0; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    socket.send_to(&buf[..n], from).unwrap();
                }
            }
        });
        wait_ready
            .recv_timeout(Duration::from_secs(5))
            .expect("echo did not start");
    }

    /// A smoltcp node on a new TUN device `tun` inside `ns`: the kernel
    /// side gets `gateway`/24, smoltcp `address`/24 with a default route to
    /// the gateway.
    fn smol_node(&mut self, ns: &str, tun: &str, gateway: &str, spec: NodeSpec) {
        let (opened, wait_opened) = mpsc::channel();
        let (configured, wait_configured) = mpsc::channel::<()>();
        let name = tun.to_string();
        self.spawn(ns, move |stop| {
            let device = open_tun(&name).expect("open the TUN device");
            opened.send(()).unwrap();
            wait_configured.recv().unwrap();
            run_smol_node(device, spec, &stop);
        });
        wait_opened
            .recv_timeout(Duration::from_secs(5))
            .expect("TUN device not opened");
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{gateway}/24"),
            "dev",
            tun,
        ]);
        ip(&["-n", ns, "link", "set", tun, "up"]);
        configured.send(()).unwrap();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn netns_path(ns: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(ns)
}

/// Moves the calling thread into the namespace at `path`.
fn enter(path: &Path) {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    setns(&file, CloneFlags::CLONE_NEWNET).expect("setns (needs root)");
}

fn sysctl(ns: &str, setting: &str) {
    let ok = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-qw", setting])
        .status()
        .expect("run sysctl")
        .success();
    assert!(ok, "sysctl {setting} in {ns}");
}

/// What a smoltcp node in the lab runs.
struct NodeSpec {
    private: &'static str,
    peer_public: &'static str,
    peer_endpoint: Option<SocketAddr>,
    address: Ipv4Address,
    gateway: Ipv4Address,
    services: Vec<(u8, Role)>,
}

/// Drives one node over `device` until `stop`.
fn run_smol_node(mut device: smoltcp::phy::TunTapInterface, spec: NodeSpec, stop: &AtomicBool) {
    let clock = Clock::new();
    let t = core_instant(clock.now());
    let key = PrivateKey::from_str(spec.private).unwrap();
    let rng = ChaCha20Rng::from_seed(key.to_bytes());
    let mut node: Node<ChaCha20Rng, 1, 4, 8> = Node::new(key, rng, t, clock.unix_nanos());
    let mut peer = PeerConfig::new(PublicKey::from_str(spec.peer_public).unwrap());
    peer.endpoint = spec.peer_endpoint;
    let peer = node.add_peer(peer, t).unwrap();
    for (id, role) in spec.services {
        let mut service = ServiceConfig::new(ServiceId::new(id), Peers::One(peer), role);
        service.limits = ChannelLimits {
            max_channels: 4,
            ..ChannelLimits::default()
        };
        node.add_service(service).unwrap();
    }
    if spec.peer_endpoint.is_some() {
        node.connect(peer, t);
    }
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, clock.now());
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::Ipv4(spec.address), 24))
            .unwrap();
    });
    iface
        .routes_mut()
        .add_default_ipv4_route(spec.gateway)
        .unwrap();
    let storage: &'static mut Storage<8, 16, 8192> = Box::leak(Box::new(Storage::new()));
    let slots: &'static mut [SocketStorage<'static>] =
        Box::leak((0..8).map(|_| SocketStorage::EMPTY).collect());
    let link = SocketAddr::new(spec.address.into(), 51820);
    let mut smol = SmolNode::new(node, iface, link, slots, storage).unwrap();
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now();
        if smol.poll(now, &mut device) {
            continue;
        }
        while let Some(event) = smol.poll_event() {
            eprintln!("node {}: {event:?}", spec.address);
        }
        let delay = smol
            .poll_delay(clock.now())
            .map_or(smoltcp::time::Duration::from_millis(20), |d| {
                d.min(smoltcp::time::Duration::from_millis(20))
            });
        wait(&device, Some(delay)).unwrap();
    }
}

/// Sends `count` datagrams from a kernel socket in `ns` to `to`, each
/// retried until its echo comes back (the first ones may race the
/// handshake); returns how many came back, each checked to be its own.
fn round_trips(lab: &mut Lab, ns: &str, to: SocketAddr, count: usize) -> usize {
    let (done, result) = mpsc::channel();
    lab.spawn(ns, move |stop| {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut echoed = 0;
        let mut buf = [0; 2048];
        'next: for i in 0..count {
            let payload = format!("datagram {i} to {to}");
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                socket.send_to(payload.as_bytes(), to).unwrap();
                let until = Instant::now() + Duration::from_millis(500);
                while Instant::now() < until {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        assert_eq!(from, to, "reply from elsewhere");
                        if &buf[..n] == payload.as_bytes() {
                            echoed += 1;
                            continue 'next;
                        }
                    }
                }
            }
            break;
        }
        done.send(echoed).unwrap();
    });
    result
        .recv_timeout(Duration::from_secs(60))
        .expect("client hung")
}

#[test]
fn smoltcp_nodes_over_tun_carry_kernel_traffic() {
    let mut lab = Lab::new();
    let (a, b) = (lab.a.clone(), lab.b.clone());
    lab.echo(&b, sa("10.77.9.2:9000"));
    lab.echo(&a, sa("10.77.9.1:9001"));
    // X: entry of service 1 (to B's echo), exit of service 2 (to A's echo).
    lab.smol_node(
        &a,
        "sdt0",
        "10.77.0.1",
        NodeSpec {
            private: X_PRIVATE,
            peer_public: Y_PUBLIC,
            peer_endpoint: Some(sa("10.77.1.2:51820")),
            address: Ipv4Address::new(10, 77, 0, 2),
            gateway: Ipv4Address::new(10, 77, 0, 1),
            services: vec![
                (
                    1,
                    Role::ForwardEntry {
                        listen: sa("10.77.0.2:5000"),
                    },
                ),
                (
                    2,
                    Role::ForwardExit {
                        target: sa("10.77.9.1:9001"),
                    },
                ),
            ],
        },
    );
    // Y: the mirror halves, on a TUN in B.
    lab.smol_node(
        &b,
        "sdt1",
        "10.77.1.1",
        NodeSpec {
            private: Y_PRIVATE,
            peer_public: X_PUBLIC,
            peer_endpoint: None,
            address: Ipv4Address::new(10, 77, 1, 2),
            gateway: Ipv4Address::new(10, 77, 1, 1),
            services: vec![
                (
                    1,
                    Role::ForwardExit {
                        target: sa("10.77.9.2:9000"),
                    },
                ),
                (
                    2,
                    Role::ForwardEntry {
                        listen: sa("10.77.1.2:5001"),
                    },
                ),
            ],
        },
    );
    assert_eq!(round_trips(&mut lab, &a, sa("10.77.0.2:5000"), 20), 20);
    assert_eq!(round_trips(&mut lab, &b, sa("10.77.1.2:5001"), 20), 20);
}

#[test]
fn smoltcp_node_talks_to_the_mio_daemon() {
    let sdt = sdt_binary();
    let mut lab = Lab::new();
    let (a, b) = (lab.a.clone(), lab.b.clone());
    lab.echo(&b, sa("10.77.9.2:9000"));
    lab.echo(&a, sa("10.77.9.1:9001"));
    // Y: the mio daemon in B, on the veth address.
    let config = lab.dir.join("y.toml");
    std::fs::write(
        &config,
        format!(
            r#"private_key = "{Y_PRIVATE}"
listen = "10.77.9.2:51820"
control_socket = "{}"

[[peer]]
name = "x"
public_key = "{X_PUBLIC}"

[[service]]
id = 1
peer = "x"
mode = "forward"
target = "10.77.9.2:9000"

[[service]]
id = 2
peer = "x"
mode = "forward"
listen = "10.77.9.2:5001"
"#,
            lab.dir.join("y.sock").display()
        ),
    )
    .unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &b])
        .arg(&sdt)
        .arg("run")
        .arg("-c")
        .arg(&config)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", PathBuf::from(&sdt).display()));
    lab.children.push(child);
    // X: smoltcp on a TUN in A, as before.
    lab.smol_node(
        &a,
        "sdt0",
        "10.77.0.1",
        NodeSpec {
            private: X_PRIVATE,
            peer_public: Y_PUBLIC,
            peer_endpoint: Some(sa("10.77.9.2:51820")),
            address: Ipv4Address::new(10, 77, 0, 2),
            gateway: Ipv4Address::new(10, 77, 0, 1),
            services: vec![
                (
                    1,
                    Role::ForwardEntry {
                        listen: sa("10.77.0.2:5000"),
                    },
                ),
                (
                    2,
                    Role::ForwardExit {
                        target: sa("10.77.9.1:9001"),
                    },
                ),
            ],
        },
    );
    assert_eq!(round_trips(&mut lab, &a, sa("10.77.0.2:5000"), 20), 20);
    assert_eq!(round_trips(&mut lab, &b, sa("10.77.9.2:5001"), 20), 20);
    let status = lab.children[0].try_wait().unwrap();
    assert!(status.is_none(), "the daemon exited: {status:?}");
}
