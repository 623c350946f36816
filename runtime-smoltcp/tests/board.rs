//! The firmware on a network: `examples/firmware_net.rs` boots on QEMU's
//! `mps2-an386` with its LAN9118 joined to a TAP device in a network
//! namespace of the test's own, and talks to the host there. Needs root,
//! `ip` (iproute2) and `qemu-system-arm`; fails without them.
//!
//! ```text
//!  namespace sdt-board-*
//!  board 10.79.0.2 (QEMU, firmware_net)  ──  tap "sdtb0" 10.79.0.1
//!                                            (and `sdt run`, echoes, see the tests)
//! ```
//!
//! QEMU runs without `-icount`: the board's clock is real time, as the
//! daemon's is.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

mod firmware;

const TAP: &str = "sdtb0";
const HOST: &str = "10.79.0.1";
const BOARD: &str = "10.79.0.2";
/// Far above what any wait takes on an idle machine (well under a second):
/// only a broken run gets there.
const PATIENCE: Duration = Duration::from_secs(60);

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

    /// How many lines of the board's report start with `prefix`.
    fn reported(&self, prefix: &str) -> usize {
        let lines = self.board.lock().unwrap();
        lines.iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// Waits until the board reported `count` lines starting with `prefix`.
    fn wait_reported(&mut self, prefix: &str, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.reported(prefix) < count {
            if let Some(status) = self.qemu_exited() {
                panic!("QEMU exited ({status}) before the board reported `{prefix}`");
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
        for child in [&mut self.qemu].into_iter().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
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
