//! `contrib/systemd/sdt@.service` and `sdt run`'s side of `Type=notify`.
//!
//! The unit is checked the way systemd itself would load it: `systemd-analyze
//! verify` (every key known, every value valid, the executables present) and
//! `systemd-analyze security` (its exposure score). Both run offline against
//! a throwaway root directory holding the unit, the `sdt` under test at
//! `/usr/local/bin/sdt` and a copy of this machine's system units, so they
//! need no systemd as PID 1 (there is none in a container) and touch
//! nothing outside the test's directory. `--man=no`: the unit names
//! `man:sdt(1)`, which `cargo install` does not install.
//!
//! READY=1 is checked end to end: `sdt run` with `NOTIFY_SOCKET` naming a
//! Unix datagram socket the test binds, as systemd does; when READY=1
//! arrives, the service's port and the control socket must already be
//! served. A node that fails to start must send nothing. And router mode,
//! the one that needs a privilege, runs with only what the unit grants
//! (root, a network namespace and setpriv, as the tests in netns.rs).

mod support;

use std::net::UdpSocket;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::node::{write_private, Keys};
use support::{require_tool, run, Proc, SDT};

/// The unit under test, in the repository.
fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd/sdt@.service")
}

/// A root directory for `systemd-analyze --root`: `/etc/systemd/system`
/// holds `unit_text` as `sdt@.service`, `/usr/local/bin/sdt` is the binary
/// under test, and `/usr/lib/systemd/system` is a copy of this machine's
/// (the targets the unit is ordered after must exist).
fn analyze_root(dir: &Path, unit_text: &str) -> PathBuf {
    let root = dir.join("root");
    let units = root.join("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("sdt@.service"), unit_text).unwrap();
    let bin = root.join("usr/local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    if std::fs::hard_link(SDT, bin.join("sdt")).is_err() {
        std::fs::copy(SDT, bin.join("sdt")).unwrap();
    }
    let lib = root.join("usr/lib/systemd");
    std::fs::create_dir_all(&lib).unwrap();
    // cp -a keeps the relative symlinks between system units as they are.
    let copied = run(
        Command::new("cp")
            .arg("-a")
            .arg("/usr/lib/systemd/system")
            .arg(&lib),
        Duration::from_secs(30),
    );
    assert!(copied.ok(), "cannot copy the system units: {copied}");
    root
}

/// `systemd-analyze ARGS --root=ROOT sdt@office.service`.
fn analyze(root: &Path, args: &[&str]) -> support::Ran {
    let ran = run(
        Command::new("systemd-analyze")
            .args(args)
            .arg(format!("--root={}", root.display()))
            .arg("sdt@office.service"),
        Duration::from_secs(60),
    );
    assert!(ran.status.is_some(), "systemd-analyze hung: {ran}");
    ran
}

/// `systemd-analyze verify` accepts the unit with not one warning, and does
/// notice a bad key in it (so a clean run means the file was read).
#[test]
fn the_unit_verifies_without_a_warning() {
    require_tool("systemd-analyze");
    let text = std::fs::read_to_string(unit_path()).unwrap();
    let dir = support::temp_dir();
    let root = analyze_root(dir.path(), &text);
    let ran = analyze(&root, &["verify", "--man=no"]);
    assert!(
        ran.ok() && ran.stdout.trim().is_empty() && ran.stderr.trim().is_empty(),
        "systemd-analyze verify: {ran}"
    );

    let broken = text.replace("NoNewPrivileges=yes", "NoNewPrivileges=yes\nNoSuchKey=yes");
    let dir = support::temp_dir();
    let root = analyze_root(dir.path(), &broken);
    let ran = analyze(&root, &["verify", "--man=no"]);
    assert!(
        ran.stderr.contains("Unknown key") && ran.stderr.contains("NoSuchKey"),
        "verify did not notice a bad key: {ran}"
    );

    // Without the binary at ExecStart's path, verify fails.
    std::fs::remove_file(root.join("usr/local/bin/sdt")).unwrap();
    let ran = analyze(&root, &["verify", "--man=no"]);
    assert!(!ran.ok(), "verify passed without /usr/local/bin/sdt: {ran}");
}

/// The unit's hardening, as `systemd-analyze security` scores it (0 is the
/// most locked down, 10 the least): at most 2.5 ("OK"). It was 1.8 when
/// written; the rest is what a tunnel needs (network access, CAP_NET_ADMIN
/// for router mode, /dev/net/tun).
#[test]
fn the_unit_exposure_is_low() {
    require_tool("systemd-analyze");
    let text = std::fs::read_to_string(unit_path()).unwrap();
    let dir = support::temp_dir();
    let root = analyze_root(dir.path(), &text);
    let ran = analyze(&root, &["security", "--offline=yes", "--threshold=25"]);
    let score = ran
        .stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("")
        .to_owned();
    println!("{score}");
    assert!(ran.ok() && !score.is_empty(), "exposure above 2.5: {ran}");
}

/// What the unit says matches what sdt does: ExecStart runs the instance's
/// config under /etc/sdt, whose default control socket lies in the unit's
/// RuntimeDirectory; Type=notify; and ExecReload runs `sdt reload` on the
/// same file, a command `sdt --help` lists.
#[test]
fn the_unit_matches_the_cli() {
    let text = std::fs::read_to_string(unit_path()).unwrap();
    let keys: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let value = |k: &str| keys.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    assert_eq!(
        value("ExecStart"),
        Some("/usr/local/bin/sdt run -c /etc/sdt/%i.toml")
    );
    assert_eq!(value("Type"), Some("notify"));
    assert_eq!(value("RuntimeDirectory"), Some("sdt"));
    assert_eq!(
        sdt::config::default_control_socket(Path::new("/etc/sdt/office.toml")),
        Path::new("/run/sdt/office.sock")
    );
    assert_eq!(value("CapabilityBoundingSet"), Some("CAP_NET_ADMIN"));
    assert_eq!(value("AmbientCapabilities"), Some("CAP_NET_ADMIN"));
    // What a_router_entry_runs_with_only_the_units_capability sets up.
    assert_eq!(value("NoNewPrivileges"), Some("yes"));
    assert_eq!(value("User"), Some("sdt"));

    let help = run(
        Command::new(SDT).arg("--help").env_remove("RUST_LOG"),
        Duration::from_secs(10),
    );
    assert!(help.ok(), "{help}");
    let has_reload = help
        .stdout
        .lines()
        .any(|l| l.trim_start().starts_with("reload "));
    assert!(has_reload, "`sdt --help` lists no reload: {help}");
    assert_eq!(
        value("ExecReload"),
        Some("/usr/local/bin/sdt reload -c /etc/sdt/%i.toml")
    );
}

/// A config on loopback: the link on an ephemeral port, one forward entry
/// service listening on `service`, the control socket in `dir`.
fn config(dir: &Path, service: std::net::SocketAddr) -> PathBuf {
    let keys = Keys::new();
    let peer = Keys::new();
    let path = dir.join("ready.toml");
    write_private(
        &path,
        &format!(
            "private_key = \"{}\"\nlisten = \"127.0.0.1:0\"\ncontrol_socket = \"ready.sock\"\n\n\
             [[peer]]\nname = \"y\"\npublic_key = \"{}\"\n\n\
             [[service]]\nid = 1\npeer = \"y\"\nmode = \"forward\"\nlisten = \"{service}\"\n",
            keys.private, peer.public
        ),
    );
    path
}

/// A loopback UDP port nobody holds now.
fn free_port() -> std::net::SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `sdt run` with `NOTIFY_SOCKET=notify_name`.
fn run_notified(dir: &Path, config: &Path, notify_name: &str) -> Proc {
    let mut cmd = Command::new(SDT);
    cmd.args(["run", "-c"])
        .arg(config)
        .env_remove("RUST_LOG")
        .env("NOTIFY_SOCKET", notify_name);
    support::die_with_parent(&mut cmd);
    Proc::spawn("ready", dir, &mut cmd, false)
}

/// Waits up to 10 s for one notification on `sock`.
fn receive(sock: &UnixDatagram) -> Option<String> {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Checks a notification is READY=1 sent once the node serves everything.
fn assert_ready_after_bound(
    message: Option<String>,
    node: &mut Proc,
    service: std::net::SocketAddr,
    control: &Path,
) {
    let message = message.unwrap_or_else(|| panic!("no notification: {}", node.describe()));
    // Checked at once, before anything else can happen: the ports are
    // already held.
    let service_bound = UdpSocket::bind(service).is_err();
    let control_served = sdt::daemon::query_status(control, false).is_ok();
    assert!(
        message.lines().any(|l| l == "READY=1"),
        "not READY=1: {message:?}"
    );
    assert!(
        message
            .lines()
            .any(|l| l.starts_with("STATUS=listening on 127.0.0.1:")),
        "{message:?}"
    );
    assert!(
        service_bound,
        "READY=1 came before {service} was bound: {}",
        node.describe()
    );
    assert!(
        control_served,
        "READY=1 came before the control socket was served: {}",
        node.describe()
    );
    node.terminate_ok();
}

/// READY=1 on a notify socket in the file system, as systemd's
/// `/run/systemd/notify`, once the service port and control socket are up.
#[test]
fn ready_is_sent_once_the_sockets_are_bound() {
    let dir = support::temp_dir();
    let notify = dir.path().join("notify");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let service = free_port();
    let config = config(dir.path(), service);
    let mut node = run_notified(dir.path(), &config, notify.to_str().unwrap());
    let message = receive(&sock);
    assert_ready_after_bound(message, &mut node, service, &dir.path().join("ready.sock"));
}

/// The same on an abstract socket (`NOTIFY_SOCKET=@name`, which systemd
/// may also hand out).
#[test]
fn ready_is_sent_on_an_abstract_notify_socket() {
    use std::os::linux::net::SocketAddrExt;
    let dir = support::temp_dir();
    let name = format!("sdt-notify-test-{}", std::process::id());
    let sock = UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(&name).unwrap()).unwrap();
    let service = free_port();
    let config = config(dir.path(), service);
    let mut node = run_notified(dir.path(), &config, &format!("@{name}"));
    let message = receive(&sock);
    assert_ready_after_bound(message, &mut node, service, &dir.path().join("ready.sock"));
}

/// A node that cannot bind its service port exits 2 and never says READY.
#[test]
fn a_failed_start_sends_no_ready() {
    let dir = support::temp_dir();
    let notify = dir.path().join("notify");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = config(dir.path(), holder.local_addr().unwrap());
    let mut node = run_notified(dir.path(), &config, notify.to_str().unwrap());
    let exited = support::wait_until(Duration::from_secs(10), || node.exited().is_some());
    assert!(exited, "the node started anyway: {}", node.describe());
    assert_eq!(
        node.exited().and_then(|s| s.code()),
        Some(2),
        "{}",
        node.describe()
    );
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    assert!(
        sock.recv(&mut buf).is_err(),
        "a failed start sent {:?}",
        String::from_utf8_lossy(&buf)
    );
}

/// Router mode works with exactly the privileges the unit grants: an
/// unprivileged user whose only capability is CAP_NET_ADMIN (bounding,
/// ambient, so the `ip` child that sets the address has it too) under
/// no_new_privs, as setpriv sets them up; the node opens its TUN device,
/// sets its address and says READY=1.
#[test]
fn a_router_entry_runs_with_only_the_units_capability() {
    use std::os::unix::fs::PermissionsExt;
    support::require_root();
    require_tool("ip");
    require_tool("setpriv");
    const NOBODY: u32 = 65534;
    let ns = support::net::Netns::new("unitcap");
    let dir = support::temp_dir();
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, PermissionsExt::from_mode(m));
    let _tun = WorldWritableTun::ensure();
    mode(dir.path(), 0o755).unwrap();
    // The RuntimeDirectory: the node's user creates its control socket here.
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    std::os::unix::fs::chown(&run_dir, Some(NOBODY), Some(NOBODY)).unwrap();
    let keys = Keys::new();
    let key_file = dir.path().join("r.key");
    write_private(&key_file, &format!("{}\n", keys.private));
    std::os::unix::fs::chown(&key_file, Some(NOBODY), Some(NOBODY)).unwrap();
    let peer = Keys::new();
    let config = dir.path().join("r.toml");
    let control = run_dir.join("r.sock");
    std::fs::write(
        &config,
        format!(
            "private_key_file = \"r.key\"\nlisten = \"127.0.0.1:0\"\n\
             control_socket = \"{}\"\n\n[[peer]]\nname = \"b\"\npublic_key = \"{}\"\n\n\
             [[service]]\nid = 9\npeer = \"b\"\nmode = \"router\"\ntun = \"sdtunit0\"\n\
             address = \"10.201.251.1/24\"\n",
            control.display(),
            peer.public
        ),
    )
    .unwrap();
    let notify = run_dir.join("notify");
    let sock = UnixDatagram::bind(&notify).unwrap();
    mode(&notify, 0o666).unwrap();

    let mut cmd = ns.cmd("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all,+net_admin",
        "--ambient-caps=-all,+net_admin",
        "--bounding-set=-all,+net_admin",
        "--no-new-privs",
        SDT,
        "run",
        "-c",
    ])
    .arg(&config)
    .env_remove("RUST_LOG")
    .env("NOTIFY_SOCKET", &notify);
    let mut node = Proc::spawn("router", dir.path(), &mut cmd, false);
    let message = receive(&sock).unwrap_or_else(|| panic!("no READY: {}", node.describe()));
    assert!(message.lines().any(|l| l == "READY=1"), "{message:?}");
    let addr = ns.ip(&["-o", "addr", "show", "dev", "sdtunit0"]);
    assert!(
        addr.stdout.contains("10.201.251.1/24"),
        "the address was not set: {addr}\n{}",
        node.describe()
    );
    let link = ns.ip(&["-o", "link", "show", "dev", "sdtunit0"]);
    assert!(link.stdout.contains(",UP"), "not up: {link}");
    assert!(
        sdt::daemon::query_status(&control, false).is_ok(),
        "{}",
        node.describe()
    );
    node.terminate_ok();
}

/// `/dev/net/tun` opened by any user, for as long as it lives: the mode
/// every distribution's udev gives the device (`crw-rw-rw-`), which the
/// unit's `User=sdt` relies on; the kernel still asks for CAP_NET_ADMIN to
/// create an interface. Some container images ship it 0600: the test then
/// widens it and puts the old mode back when done.
struct WorldWritableTun {
    restore: Option<u32>,
}

impl WorldWritableTun {
    const PATH: &'static str = "/dev/net/tun";

    fn ensure() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(Self::PATH)
            .unwrap_or_else(|e| panic!("{}: {e} (router mode needs it)", Self::PATH));
        let old = meta.permissions().mode() & 0o7777;
        if old & 0o666 == 0o666 {
            return WorldWritableTun { restore: None };
        }
        std::fs::set_permissions(Self::PATH, PermissionsExt::from_mode(old | 0o666))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", Self::PATH));
        WorldWritableTun { restore: Some(old) }
    }
}

impl Drop for WorldWritableTun {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if let Some(old) = self.restore {
            let _ = std::fs::set_permissions(Self::PATH, PermissionsExt::from_mode(old));
        }
    }
}
