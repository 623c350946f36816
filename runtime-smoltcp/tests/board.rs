//! The firmware on a network: `examples/firmware_net.rs` boots on QEMU's
//! `mps2-an386` with its LAN9118 joined to a TAP device in a network
//! namespace of the test's own, and talks to the host there. Needs root,
//! `ip` (iproute2) and `qemu-system-arm`; fails without them.
//!
//! ```text
//!  namespace sdt-board-*
//!  board 10.79.0.2 (QEMU, firmware_net)  ──  tap "sdtb0" 10.79.0.1
//!                                            `sdt run` :51820, echoes :9000 :9001
//! ```
//!
//! QEMU runs without `-icount`: the board's clock is real time, as the
//! daemon's is.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

mod daemon;
mod firmware;

const TAP: &str = "sdtb0";
const HOST: &str = "10.79.0.1";
const BOARD: &str = "10.79.0.2";
/// The daemon's keys: Y of examples/forward. TEST ONLY, as the board's.
const DAEMON_PRIVATE: &str = "FyeisJWVl+ZQvB8+fKnJHgnYhqpLisfAXw/4aM5Yx1Y=";
const BOARD_PUBLIC: &str = "CQtNZTyKtCot8Yjc/yr4tWSs6GaEKTGrlLQB3UVVeQg=";
/// Far above what any wait takes on an idle machine (well under a second):
/// only a broken run gets there.
const PATIENCE: Duration = Duration::from_secs(60);

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
        "ip {} (needs root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace with a TAP device for the board, the processes and threads
/// running in it, and what the board printed. Dropping it stops them and
/// deletes the namespace (and the TAP device with it), also when the test
/// fails.
struct Lab {
    ns: String,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    daemon: Option<Child>,
    qemu: Option<Child>,
    /// The board's report, line by line.
    board: Arc<Mutex<Vec<String>>>,
}

impl Lab {
    fn new() -> Lab {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let ns = format!("sdt-board-{id}");
        let dir = std::env::temp_dir().join(format!("sdt-board-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        ip(&["netns", "add", &ns]);
        // From here on, Drop cleans up whatever was made.
        let lab = Lab {
            ns: ns.clone(),
            dir,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            daemon: None,
            qemu: None,
            board: Arc::new(Mutex::new(Vec::new())),
        };
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        // A persistent TAP device: QEMU attaches to it (and again after a
        // restart), its address stays.
        ip(&["-n", &ns, "tuntap", "add", "dev", TAP, "mode", "tap"]);
        ip(&["-n", &ns, "addr", "add", &format!("{HOST}/24"), "dev", TAP]);
        ip(&["-n", &ns, "link", "set", TAP, "up"]);
        lab
    }

    /// Spawns `f` on a thread inside the namespace.
    fn spawn(&mut self, f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let (path, stop) = (
            PathBuf::from("/run/netns").join(&self.ns),
            self.stop.clone(),
        );
        self.threads.push(std::thread::spawn(move || {
            enter(&path);
            f(stop)
        }));
    }

    /// A kernel UDP echo at `addr`.
    fn echo(&mut self, addr: SocketAddr) {
        let (ready, wait_ready) = mpsc::channel();
        self.spawn(move |stop| {
            let socket = UdpSocket::bind(addr).expect("bind the echo socket");
            socket
                .set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            ready.send(()).unwrap();
            let mut buf = [0; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        wait_ready
            .recv_timeout(Duration::from_secs(5))
            .expect("echo did not start");
    }

    /// `sdt run` on the TAP device's address: the exit of service 1 (to the
    /// echo on :9000) and the entry of service 2 (listening on :5001).
    fn daemon(&mut self) {
        let config = self.dir.join("daemon.toml");
        std::fs::write(
            &config,
            format!(
                r#"private_key = "{DAEMON_PRIVATE}"
listen = "{HOST}:51820"
control_socket = "{}"

[[peer]]
name = "board"
public_key = "{BOARD_PUBLIC}"

[[service]]
id = 1
peer = "board"
mode = "forward"
target = "{HOST}:9000"

[[service]]
id = 2
peer = "board"
mode = "forward"
listen = "{HOST}:5001"
"#,
                self.dir.join("daemon.sock").display()
            ),
        )
        .unwrap();
        let log = File::create(self.dir.join("daemon.log")).unwrap();
        let sdt = daemon::sdt_binary();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(&sdt)
            .args(["run", "-c"])
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", sdt.display()));
        self.daemon = Some(child);
    }

    /// The daemon's log so far.
    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Boots `elf` on the board, its LAN9118 on the TAP device, its monitor
    /// on a socket for [`Lab::reset`].
    fn boot(&mut self, elf: &Path) {
        let monitor = format!("unix:{},server=on,wait=off", self.monitor().display());
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "qemu-system-arm"])
            .args(["-M", "mps2-an386", "-nographic", "-monitor", &monitor])
            .args(["-semihosting-config", "enable=on,target=native"])
            .args(["-nic", &format!("tap,ifname={TAP},script=no,downscript=no")])
            .arg("-kernel")
            .arg(elf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ip netns exec qemu-system-arm: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        self.qemu = Some(child);
        let board = self.board.clone();
        self.threads.push(std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                println!("board: {line}");
                board.lock().unwrap().push(line);
            }
        }));
    }

    fn monitor(&self) -> PathBuf {
        self.dir.join("monitor.sock")
    }

    /// Resets the board, as its reset button would: QEMU's `system_reset`
    /// (the core, the LAN9118 and the timers start over; RAM is not
    /// cleared, the firmware's start-up code initialises its statics).
    fn reset(&self) {
        let mut monitor = UnixStream::connect(self.monitor()).expect("QEMU's monitor socket");
        monitor.write_all(b"system_reset\n").unwrap();
        monitor.flush().unwrap();
        // The monitor prints a prompt when it starts and another once it
        // ran the command; closing the socket before that may drop it.
        monitor.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut said = Vec::new();
        let mut buf = [0; 256];
        while String::from_utf8_lossy(&said).matches("(qemu)").count() < 2 {
            match std::io::Read::read(&mut monitor, &mut buf) {
                Ok(0) | Err(_) => panic!(
                    "QEMU's monitor did not take system_reset: {}",
                    String::from_utf8_lossy(&said)
                ),
                Ok(n) => said.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// How many lines of the board's report start with `prefix`.
    fn reported(&self, prefix: &str) -> usize {
        let lines = self.board.lock().unwrap();
        lines.iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// The last line of the board's report starting with `prefix`.
    fn last(&self, prefix: &str) -> String {
        let lines = self.board.lock().unwrap();
        let line = lines.iter().rev().find(|l| l.starts_with(prefix));
        line.cloned()
            .unwrap_or_else(|| panic!("the board never reported `{prefix}`"))
    }

    /// Waits until the board reported `count` lines starting with `prefix`.
    fn wait_reported(&mut self, prefix: &str, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.reported(prefix) < count {
            if let Some(status) = self.qemu_exited() {
                panic!(
                    "QEMU exited ({status}) before the board reported `{prefix}`: is \
                     qemu-system-arm installed? (scripts/install-deps.sh installs it)"
                );
            }
            assert!(
                Instant::now() < deadline,
                "the board did not report `{prefix}` {count} times"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// QEMU's exit status, if it exited.
    fn qemu_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.qemu.as_mut()?.try_wait().ok().flatten()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for child in [&mut self.qemu, &mut self.daemon].into_iter().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if std::thread::panicking() {
            eprintln!("the daemon's log:\n{}", self.daemon_log());
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Moves the calling thread into the namespace at `path`.
fn enter(path: &Path) {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    setns(&file, CloneFlags::CLONE_NEWNET).expect("setns (needs root)");
}

#[test]
fn board_answers_on_its_lan9118() {
    let elf = firmware::build("firmware_net", &["ethernet"]);
    let mut lab = Lab::new();
    lab.boot(&elf);
    lab.wait_reported("boot: lan9118 up, phy link true", 1);
    // A datagram to a port nothing listens on: the board must resolve the
    // host's address (ARP both ways), take the frame and answer with ICMP
    // port unreachable, which the kernel reports on a connected socket.
    let (done, result) = mpsc::channel();
    lab.spawn(move |stop| {
        let socket = UdpSocket::bind(format!("{HOST}:0")).unwrap();
        socket.connect(format!("{BOARD}:9")).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        let mut buf = [0; 64];
        let refused = loop {
            if Instant::now() > deadline || stop.load(Ordering::Relaxed) {
                break false;
            }
            let _ = socket.send(b"anyone there?");
            match socket.recv(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break true,
                _ => continue,
            }
        };
        done.send(refused).unwrap();
    });
    let refused = result
        .recv_timeout(PATIENCE + Duration::from_secs(10))
        .expect("the probe hung");
    assert!(refused, "the board never answered the host");
}

/// The `i`-th datagram a client sends: 64 B and 1400 B in turn, its bytes
/// telling it from every other.
fn payload(i: usize) -> Vec<u8> {
    let len = if i.is_multiple_of(2) { 64 } else { 1400 };
    (0..len).map(|b| (b ^ i ^ (i >> 8)) as u8).collect()
}

/// Sends `count` datagrams from a kernel socket to `to`, each retried until
/// its echo comes back; returns how many came back, each checked to be its
/// own.
fn round_trips(lab: &mut Lab, to: SocketAddr, count: usize) -> usize {
    let (done, result) = mpsc::channel();
    lab.spawn(move |stop| {
        let socket = UdpSocket::bind(format!("{HOST}:0")).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        let mut echoed = 0;
        let mut buf = [0; 2048];
        'next: for i in 0..count {
            let payload = payload(i);
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                socket.send_to(&payload, to).unwrap();
                let until = Instant::now() + Duration::from_millis(500);
                while Instant::now() < until {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        assert_eq!(from, to, "reply from elsewhere");
                        if buf[..n] == payload[..] {
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
        .recv_timeout(PATIENCE + Duration::from_secs(10))
        .expect("client hung")
}

#[test]
fn board_carries_datagrams_through_the_daemon() {
    let elf = firmware::build("firmware_net", &["ethernet"]);
    let mut lab = Lab::new();
    lab.echo(sa(&format!("{HOST}:9000")));
    lab.echo(sa(&format!("{HOST}:9001")));
    lab.daemon();
    lab.boot(&elf);
    lab.wait_reported("link: up", 1);
    // Service 1: the board's entry, the daemon's exit to the echo on :9000.
    let board_entry = sa(&format!("{BOARD}:5000"));
    assert_eq!(round_trips(&mut lab, board_entry, 20), 20);
    // Service 2: the daemon's entry, the board's exit to the echo on :9001.
    let daemon_entry = sa(&format!("{HOST}:5001"));
    assert_eq!(round_trips(&mut lab, daemon_entry, 20), 20);
    let log = lab.daemon_log();
    assert_eq!(log.matches("session up").count(), 1, "{log}");
    let status = lab.daemon.as_mut().unwrap().try_wait().unwrap();
    assert!(status.is_none(), "the daemon exited: {status:?}");
    // The board's next status line, from after the traffic: nothing
    // dropped by the node or the driver, and the stack's high-water mark.
    let seen = lab.reported("status: ");
    lab.wait_reported("status: ", seen + 1);
    let status = lab.last("status: ");
    assert!(status.contains("node drops 0;"), "{status}");
    assert!(
        status.contains("rx_bad: 0, rx_size: 0, tx_dropped: 0"),
        "{status}"
    );
    report_size(&elf, &lab);
}

/// Prints the networked firmware's flash and RAM (not budgeted: it holds
/// two services and larger socket buffers than the budgeted firmware).
fn report_size(elf: &Path, lab: &Lab) {
    let sections = firmware::sections(elf);
    let size = |names: &[&str]| -> u64 {
        sections
            .iter()
            .filter(|(n, _)| names.contains(&n.as_str()))
            .map(|(_, s)| s)
            .sum()
    };
    let flash = size(&[".vector_table", ".text", ".rodata", ".data"]);
    let statics = size(&[".data", ".bss", ".uninit"]);
    let number = |prefix: &str| -> u64 {
        let line = lab.last(prefix);
        line[prefix.len()..]
            .parse()
            .unwrap_or_else(|_| panic!("no number in `{line}`"))
    };
    let setup = number("stack peak, setup: ");
    let running = number("stack peak, running: ");
    println!("firmware_net sections: {sections:?}");
    println!(
        "firmware_net: flash {flash} B; RAM running {} B (.data + .bss {statics}, \
         main loop's stack {running}); RAM at setup {} B (stack {setup})",
        statics + running,
        statics + setup
    );
}

/// A client that sends datagram after datagram to `to`, each once, and
/// waits up to a second for its echo before it sends the next: what it
/// records is, for each datagram in order, whether its echo came back.
struct Stream {
    echoed: Arc<Mutex<Vec<bool>>>,
}

impl Stream {
    fn start(lab: &mut Lab, to: SocketAddr) -> Stream {
        let echoed = Arc::new(Mutex::new(Vec::new()));
        let record = echoed.clone();
        lab.spawn(move |stop| {
            let socket = UdpSocket::bind(format!("{HOST}:0")).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut buf = [0; 2048];
            // Far from the other clients' payloads: a datagram of this
            // stream cannot pass for one of theirs.
            for i in 1000.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let payload = payload(i);
                let _ = socket.send_to(&payload, to);
                let until = Instant::now() + Duration::from_secs(1);
                let mut back = false;
                while !back && Instant::now() < until {
                    // An older datagram's late echo is skipped.
                    if let Ok((n, _)) = socket.recv_from(&mut buf) {
                        back = buf[..n] == payload[..];
                    }
                }
                record.lock().unwrap().push(back);
                // Some 50 a second: enough to see the gap, little load.
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Stream { echoed }
    }

    /// Datagrams sent so far.
    fn sent(&self) -> usize {
        self.echoed.lock().unwrap().len()
    }

    /// Datagrams whose echo never came.
    fn lost(&self) -> usize {
        self.echoed.lock().unwrap().iter().filter(|e| !**e).count()
    }

    /// The longest run of echoed datagrams from datagram `from` on.
    fn run_since(&self, from: usize) -> usize {
        let echoed = self.echoed.lock().unwrap();
        let mut run = 0;
        let mut longest = 0;
        for &e in echoed.iter().skip(from) {
            run = if e { run + 1 } else { 0 };
            longest = longest.max(run);
        }
        longest
    }

    /// Waits until 20 datagrams in a row from datagram `from` on came back.
    fn wait_run_since(&self, from: usize, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.run_since(from) < 20 {
            assert!(
                Instant::now() < deadline,
                "{what}: no 20 echoes in a row after datagram {from} ({} sent, {} lost)",
                self.sent(),
                self.lost()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn the_daemons_session_recovers_from_a_reset_of_the_board() {
    let elf = firmware::build("firmware_net", &["ethernet"]);
    let mut lab = Lab::new();
    lab.echo(sa(&format!("{HOST}:9000")));
    lab.echo(sa(&format!("{HOST}:9001")));
    lab.daemon();
    lab.boot(&elf);
    lab.wait_reported("link: up", 1);
    let streams = [
        (
            "service 1 (board entry)",
            Stream::start(&mut lab, sa(&format!("{BOARD}:5000"))),
        ),
        (
            "service 2 (board exit)",
            Stream::start(&mut lab, sa(&format!("{HOST}:5001"))),
        ),
    ];
    for (what, stream) in &streams {
        stream.wait_run_since(0, what);
    }
    lab.reset();
    lab.wait_reported("boot: ", 2);
    lab.wait_reported("link: up", 2);
    // Counted from the board's second link-up on: everything sent from
    // there must come back (after a datagram or two still on their way).
    let since = streams.each_ref().map(|(_, s)| s.sent());
    for ((what, stream), from) in streams.iter().zip(since) {
        stream.wait_run_since(from, what);
    }
    lab.stop.store(true, Ordering::Relaxed);
    for (what, stream) in &streams {
        println!(
            "{what}: {} datagrams sent, one at a time, across the reset: {} lost",
            stream.sent(),
            stream.lost()
        );
    }
    // The daemon took the rebooted board's handshake: a second session.
    let log = lab.daemon_log();
    println!("the daemon's log:\n{log}");
    assert_eq!(log.matches("session up").count(), 2, "{log}");
    assert_eq!(log.matches("its node restarted").count(), 1, "{log}");
    let status = lab.daemon.as_mut().unwrap().try_wait().unwrap();
    assert!(status.is_none(), "the daemon exited: {status:?}");
}
