//! Who may use a node's control socket, and nodes without one (issue 12,
//! "Control socket"), with the real daemon on loopback:
//!
//! - the socket is mode 0660 and belongs to `control_group`, so a non-root
//!   member of that group reads status and a non-member is refused;
//! - `control_socket = false` runs without one and still forwards;
//! - `sdt status` without a node lists every node in a directory, one line
//!   each, and says which did not answer.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sdt::loopback::{free_port, Echo};
use support::node::{write_private, Keys};
use support::{require_root, require_tool, run, wait_until, Proc, SDT};

/// A node on loopback: link socket `listen`, one peer `peer` (reached at
/// `endpoint` if given), `top` (more top-level keys) and `services`.
fn config(
    dir: &Path,
    name: &str,
    keys: &Keys,
    listen: SocketAddr,
    top: &str,
    peer: (&str, &Keys, Option<SocketAddr>),
    services: &str,
) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let endpoint = peer
        .2
        .map(|e| format!("endpoint = \"{e}\"\nkeep_up = true\n"))
        .unwrap_or_default();
    write_private(
        &path,
        &format!(
            "private_key = \"{}\"\nlisten = \"{listen}\"\n{top}\n[[peer]]\nname = \"{}\"\n\
             public_key = \"{}\"\n{endpoint}\n{services}",
            keys.private, peer.0, peer.1.public
        ),
    );
    path
}

/// `sdt run -c CONFIG` in the background.
fn start(dir: &Path, name: &str, config: &Path) -> Proc {
    let mut cmd = Command::new(SDT);
    cmd.args(["run", "-c"]).arg(config).env_remove("RUST_LOG");
    support::die_with_parent(&mut cmd);
    Proc::spawn(name, dir, &mut cmd, false)
}

/// Starts a node and waits until it answers on `socket`.
fn start_answering(dir: &Path, name: &str, config: &Path, socket: &Path) -> Proc {
    let mut node = start(dir, name, config);
    let up = wait_until(Duration::from_secs(10), || {
        node.exited().is_none() && sdt::daemon::query_status(socket, false).is_ok()
    });
    assert!(up, "node {name} did not come up: {}", node.describe());
    node
}

/// A group made for one test (`groupadd`), removed on drop.
struct TempGroup {
    name: String,
    gid: u32,
}

impl TempGroup {
    fn new() -> TempGroup {
        require_tool("groupadd");
        require_tool("groupdel");
        let name = format!("sdte{}", std::process::id());
        let _ = run(Command::new("groupdel").arg(&name), Duration::from_secs(10));
        let added = run(
            Command::new("groupadd").args(["--system", &name]),
            Duration::from_secs(10),
        );
        assert!(added.ok(), "groupadd {name}: {added}");
        let gid = nix::unistd::Group::from_name(&name)
            .unwrap()
            .expect("the new group")
            .gid
            .as_raw();
        TempGroup { name, gid }
    }
}

impl Drop for TempGroup {
    fn drop(&mut self) {
        let _ = run(
            Command::new("groupdel").arg(&self.name),
            Duration::from_secs(10),
        );
    }
}

/// `sdt status --socket SOCKET` as user `nobody` (65534), in group 65534
/// and, if given, supplementary group `gid`; `sdt` is the copy at `sdt`
/// (the build directory need not be reachable for `nobody`).
fn status_as_nobody(sdt: &Path, socket: &Path, gid: Option<u32>) -> support::Ran {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534"]);
    match gid {
        Some(g) => cmd.arg(format!("--groups={g}")),
        None => cmd.arg("--clear-groups"),
    };
    cmd.arg(sdt).args(["status", "--socket"]).arg(socket);
    run(&mut cmd, Duration::from_secs(10))
}

#[test]
fn the_control_socket_is_mode_0660_in_its_group_and_a_member_reads_status() {
    require_root();
    require_tool("setpriv");
    let group = TempGroup::new();
    let dir = support::temp_dir();
    // `nobody` must reach the socket and the binary.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sdt = dir.path().join("sdt");
    std::fs::copy(SDT, &sdt).unwrap();
    std::fs::set_permissions(&sdt, std::fs::Permissions::from_mode(0o755)).unwrap();

    let socket = dir.path().join("g.sock");
    let (keys, peer) = (Keys::new(), Keys::new());
    let top = format!(
        "control_socket = \"{}\"\ncontrol_group = \"{}\"\n",
        socket.display(),
        group.name
    );
    let listen = free_port().unwrap();
    let cfg = config(dir.path(), "g", &keys, listen, &top, ("y", &peer, None), "");
    let check = run(
        Command::new(SDT).args(["check", "-c"]).arg(&cfg),
        Duration::from_secs(10),
    );
    assert!(check.ok(), "{check}");
    let mut node = start_answering(dir.path(), "g", &cfg, &socket);

    let meta = std::fs::metadata(&socket).unwrap();
    println!(
        "socket mode {:o}, uid {}, gid {} (group {} is {})",
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid(),
        group.name,
        group.gid
    );
    assert_eq!(meta.mode() & 0o7777, 0o660);
    assert_eq!(meta.gid(), group.gid);

    let member = status_as_nobody(&sdt, &socket, Some(group.gid));
    assert!(
        member.ok() && member.stdout.starts_with("node: "),
        "a member of {}: {member}",
        group.name
    );
    assert!(member.stdout.contains(&keys.public), "{member}");
    let other = status_as_nobody(&sdt, &socket, None);
    assert_eq!(other.code(), Some(2), "a non-member: {other}");
    assert!(
        other.stderr.contains("Permission denied") && other.stdout.is_empty(),
        "a non-member: {other}"
    );
    node.terminate_ok();
    assert!(!socket.exists(), "the socket is removed on exit");
}

#[test]
fn a_node_with_control_socket_false_runs_and_forwards() {
    let dir = support::temp_dir();
    let echo = Echo::start().unwrap();
    let (kx, ky) = (Keys::new(), Keys::new());
    let (x_link, y_link, entry) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let y_socket = dir.path().join("y.sock");
    let y = config(
        dir.path(),
        "y",
        &ky,
        y_link,
        &format!("control_socket = \"{}\"\n", y_socket.display()),
        ("x", &kx, None),
        &format!(
            "[[service]]\nid = 1\npeer = \"x\"\nmode = \"forward\"\ntarget = \"{}\"\n",
            echo.addr
        ),
    );
    // Named uniquely: its default socket would be /run/sdt/<stem>.sock.
    let x_name = format!("nocontrol-{}", std::process::id());
    let x = config(
        dir.path(),
        &x_name,
        &kx,
        x_link,
        "control_socket = false\n",
        ("y", &ky, Some(y_link)),
        &format!("[[service]]\nid = 1\npeer = \"y\"\nmode = \"forward\"\nlisten = \"{entry}\"\n"),
    );
    let check = run(
        Command::new(SDT).args(["check", "-c"]).arg(&x),
        Duration::from_secs(10),
    );
    assert!(check.ok(), "{check}");
    let mut y_node = start_answering(dir.path(), "y", &y, &y_socket);
    let mut x_node = start(dir.path(), "x", &x);

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    let echoed = wait_until(Duration::from_secs(10), || {
        let _ = client.send_to(b"through x", entry);
        matches!(client.recv_from(&mut buf), Ok((9, _))) && &buf[..9] == b"through x"
    });
    assert!(echoed, "no echo through x: {}", x_node.describe());
    assert!(x_node.exited().is_none(), "{}", x_node.describe());
    assert!(
        !Path::new(&format!("/run/sdt/{x_name}.sock")).exists(),
        "x made a control socket"
    );
    // `status -c` says there is none to ask, as a configuration error.
    let status = run(
        Command::new(SDT).args(["status", "-c"]).arg(&x),
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(
        status
            .stderr
            .contains("key `control_socket`: control_socket = false"),
        "{status}"
    );
    x_node.terminate_ok();
    y_node.terminate_ok();
}

#[test]
fn status_without_a_node_lists_every_node_in_the_directory() {
    let dir = support::temp_dir();
    let nodes = dir.path().join("nodes");
    std::fs::create_dir(&nodes).unwrap();
    let (ka, kb) = (Keys::new(), Keys::new());
    let mut procs = Vec::new();
    for (name, keys, other) in [("a", &ka, &kb), ("b", &kb, &ka)] {
        let socket = nodes.join(format!("{name}.sock"));
        let top = format!("control_socket = \"{}\"\n", socket.display());
        let peer = if name == "a" { "b" } else { "a" };
        let cfg = config(
            dir.path(),
            name,
            keys,
            free_port().unwrap(),
            &top,
            (peer, other, None),
            "",
        );
        procs.push(start_answering(dir.path(), name, &cfg, &socket));
    }
    let list = |extra: &[&str]| {
        run(
            Command::new(SDT)
                .args(["status", "--dir"])
                .arg(&nodes)
                .args(extra),
            Duration::from_secs(20),
        )
    };
    let text = list(&[]);
    println!("{text}");
    assert!(text.ok(), "{text}");
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, (name, peer)) in lines.iter().zip([("a", "b"), ("b", "a")]) {
        let want = format!("{}: up ", nodes.join(format!("{name}.sock")).display());
        assert!(line.starts_with(&want), "{line}");
        assert!(line.contains(&format!("peers: {peer} down")), "{line}");
    }
    let json = list(&["--json"]);
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).expect(&json.stdout);
    let keys: Vec<&str> = parsed
        .as_array()
        .expect("a list")
        .iter()
        .map(|n| n["status"]["public_key"].as_str().expect("a status"))
        .collect();
    assert_eq!(keys, [ka.public.as_str(), kb.public.as_str()]);

    // A socket nobody serves is listed with the reason, and the exit
    // status says a node did not answer.
    drop(std::os::unix::net::UnixListener::bind(nodes.join("stale.sock")).unwrap());
    let with_stale = list(&[]);
    assert_eq!(with_stale.code(), Some(2), "{with_stale}");
    assert_eq!(with_stale.stdout.lines().count(), 3, "{with_stale}");
    assert!(
        with_stale.stdout.contains("stale.sock: no node answers"),
        "{with_stale}"
    );
    assert_eq!(
        with_stale.stderr.trim(),
        "sdt: 1 of 3 nodes did not answer",
        "{with_stale}"
    );
    for mut p in procs {
        p.terminate_ok();
    }
}
