//! `sdt run` nodes inside namespaces, their configuration files, and their
//! live state through `sdt status --json`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use sdt::status::{ServiceState, Status};
use sdt_core::key::PrivateKey;
use sdt_core::node::ServiceId;

use super::net::{Netns, Pair};
use super::{require_root, require_tool, run, temp_dir, wait_until, Proc, SDT};

/// A node's key pair in WireGuard text form.
#[derive(Clone)]
pub struct Keys {
    pub private: String,
    pub public: String,
}

impl Keys {
    pub fn new() -> Keys {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let key = PrivateKey::from_bytes(bytes);
        Keys {
            private: key.to_string(),
            public: key.public_key().to_string(),
        }
    }
}

/// How a node's one peer is reached.
pub struct PeerLink<'a> {
    pub name: &'a str,
    pub public: &'a str,
    /// `None`: only accept the peer.
    pub endpoint: Option<SocketAddr>,
    /// Write `keep_up = true` (with an endpoint).
    pub keep_up: bool,
}

/// The text of a node's configuration file: its key and link socket, its
/// one peer, and `services`, TOML
/// `[[service]]` tables as they would be written by hand.
pub fn config_text(
    keys: &Keys,
    listen: Option<SocketAddr>,
    control_socket: &Path,
    peer: &PeerLink<'_>,
    services: &str,
) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "private_key = \"{}\"", keys.private);
    if let Some(l) = listen {
        let _ = writeln!(t, "listen = \"{l}\"");
    }
    let _ = writeln!(t, "control_socket = \"{}\"", control_socket.display());
    let _ = writeln!(t, "\n[[peer]]\nname = \"{}\"", peer.name);
    let _ = writeln!(t, "public_key = \"{}\"", peer.public);
    if let Some(e) = peer.endpoint {
        let _ = writeln!(t, "endpoint = \"{e}\"");
        if peer.keep_up {
            let _ = writeln!(t, "keep_up = true");
        }
    }
    let _ = writeln!(t, "\n{services}");
    t
}

/// Writes `text` to `path` with mode 0600 (the file holds a private key).
pub fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A node run on the host's own loopback (no namespace): `sdt run` on a
/// file of `text` with a control socket in `dir`, up once its status
/// answers.
pub struct LocalNode {
    pub proc: Proc,
    pub socket: PathBuf,
}

/// Starts [`LocalNode`] `name`.
pub fn start_local(dir: &Path, name: &str, text: &str) -> LocalNode {
    let config = dir.join(format!("{name}.toml"));
    let socket = dir.join(format!("{name}.sock"));
    write_private(
        &config,
        &format!("control_socket = \"{}\"\n{text}", socket.display()),
    );
    let mut cmd = Command::new(SDT);
    cmd.args(["run", "-c"]).arg(&config).env_remove("RUST_LOG");
    super::die_with_parent(&mut cmd);
    let mut proc = Proc::spawn(name, dir, &mut cmd, false);
    let up = wait_until(Duration::from_secs(10), || {
        proc.exited().is_none() && sdt::daemon::query_status(&socket, false).is_ok()
    });
    assert!(up, "node {name} did not come up: {}", proc.describe());
    LocalNode { proc, socket }
}

/// A running `sdt run`, stopped when dropped.
pub struct Node {
    pub name: String,
    pub config: PathBuf,
    pub socket: PathBuf,
    proc: Proc,
}

impl Node {
    /// Writes `text` to `DIR/NAME.toml` and runs `sdt -v run` on it in
    /// `ns`; returns once the node answers `sdt status`. The config's
    /// control socket must be `DIR/NAME.sock`.
    pub fn start(name: &str, ns: &Netns, dir: &Path, text: &str) -> Node {
        let config = dir.join(format!("{name}.toml"));
        let socket = dir.join(format!("{name}.sock"));
        write_private(&config, text);
        let mut cmd = ns.cmd(SDT);
        cmd.args(["-v", "run", "-c"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .env("RUST_BACKTRACE", "1");
        let proc = Proc::spawn(name, dir, &mut cmd, false);
        let mut node = Node {
            name: name.to_owned(),
            config,
            socket,
            proc,
        };
        let up = wait_until(Duration::from_secs(10), || {
            node.proc.exited().is_none() && node.try_status().is_ok()
        });
        assert!(
            up,
            "node {name} did not come up ({:?}):\n{}",
            node.proc.exited(),
            node.logs()
        );
        node
    }

    /// The node's process id.
    #[allow(dead_code)]
    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// The node's log (stderr of `sdt -v run`).
    pub fn logs(&self) -> String {
        self.proc.stderr_text()
    }

    /// Asks the node with `sdt status --socket ... --json`.
    pub fn try_status(&self) -> Result<Status, String> {
        let out = run(
            Command::new(SDT)
                .args(["status", "--json", "--socket"])
                .arg(&self.socket),
            Duration::from_secs(10),
        );
        if !out.ok() {
            return Err(out.to_string());
        }
        serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stdout))
    }

    pub fn status(&self) -> Status {
        self.try_status().unwrap_or_else(|e| {
            panic!(
                "sdt status of {} failed: {e}\nlog:\n{}",
                self.name,
                self.logs()
            )
        })
    }

    /// Service `id` as `sdt status --json` shows it.
    pub fn service(&self, id: u8) -> ServiceState {
        self.status()
            .service(ServiceId::new(id))
            .cloned()
            .unwrap_or_else(|| panic!("{} has no service {id}", self.name))
    }

    /// Waits until the session with the node's one peer is up.
    pub fn wait_session_up(&self) {
        let up = wait_until(Duration::from_secs(15), || {
            self.try_status()
                .is_ok_and(|s| s.peers.first().is_some_and(|p| p.session_up))
        });
        assert!(
            up,
            "{}: no session after 15 s: {:#?}\nlog:\n{}",
            self.name,
            self.try_status(),
            self.logs()
        );
    }

    /// Stops the node with SIGTERM: it must exit 0 promptly, without a
    /// panic.
    pub fn stop(mut self) {
        let status = self.proc.terminate(Duration::from_secs(5));
        let logs = self.logs();
        assert!(
            status.is_some_and(|s| s.success()),
            "{} on SIGTERM: {status:?}\nlog:\n{logs}",
            self.name
        );
        assert!(!logs.contains("panicked"), "{}:\n{logs}", self.name);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- log of node {}:\n{}", self.name, self.logs());
        }
    }
}

/// A drop count by reason from `sdt status --json` (0 if absent).
pub fn drops(drops: &[(String, u64)], reason: &str) -> u64 {
    drops
        .iter()
        .filter(|(r, _)| r == reason)
        .map(|(_, n)| n)
        .sum()
}

/// A two-namespace test bed: the veth pair, a temp directory (removed on
/// drop) and a key pair per node. Node A lives in `pair.a` with link socket
/// 10.200.NET.1:51820, node B in `pair.b` with 10.200.NET.2:51820.
pub struct Lab {
    pub pair: Pair,
    pub dir: tempfile::TempDir,
    pub keys_a: Keys,
    pub keys_b: Keys,
}

/// The link port of both nodes.
pub const LINK_PORT: u16 = 51820;

impl Lab {
    pub fn new(tag: &str, net: u8) -> Lab {
        require_root();
        require_tool("ip");
        require_tool("ss");
        let pair = Pair::new(tag, net);
        let dir = temp_dir();
        Lab {
            pair,
            dir,
            keys_a: Keys::new(),
            keys_b: Keys::new(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn a_link(&self) -> SocketAddr {
        (self.pair.a_ip(), LINK_PORT).into()
    }

    pub fn b_link(&self) -> SocketAddr {
        (self.pair.b_ip(), LINK_PORT).into()
    }

    /// Starts node `b` in namespace B, then node `a` in A, and waits for
    /// the session on both. A knows B's endpoint (`b_as_seen_by_a`: B's
    /// link socket, or a relay's) and keeps the link up; B has no endpoint
    /// for A and learns it from A's handshake. B starts first so that A's
    /// first initiation finds it: two nodes that both initiate, or an
    /// initiation sent before the peer listens, cost a 5 s handshake retry.
    pub fn start_nodes_via(
        &self,
        b_as_seen_by_a: SocketAddr,
        a_services: &str,
        b_services: &str,
    ) -> (Node, Node) {
        self.start_nodes_with(b_as_seen_by_a, true, a_services, b_services)
    }

    /// [`Lab::start_nodes_via`], saying whether A's peer entry has
    /// `keep_up = true`.
    pub fn start_nodes_with(
        &self,
        b_as_seen_by_a: SocketAddr,
        keep_up: bool,
        a_services: &str,
        b_services: &str,
    ) -> (Node, Node) {
        self.start_nodes_edited(b_as_seen_by_a, keep_up, a_services, b_services, |t| t)
    }

    /// [`Lab::start_nodes_with`], passing each node's whole configuration
    /// text through `edit` before it is written: for the settings one test
    /// adds to both nodes (`metrics_listen`, a peer's `mtu`).
    pub fn start_nodes_edited(
        &self,
        b_as_seen_by_a: SocketAddr,
        keep_up: bool,
        a_services: &str,
        b_services: &str,
        edit: impl Fn(String) -> String,
    ) -> (Node, Node) {
        let a_text = config_text(
            &self.keys_a,
            Some(self.a_link()),
            &self.path("a.sock"),
            &PeerLink {
                name: "b",
                public: &self.keys_b.public,
                endpoint: Some(b_as_seen_by_a),
                keep_up,
            },
            a_services,
        );
        let a_text = edit(a_text);
        let b_text = config_text(
            &self.keys_b,
            Some(self.b_link()),
            &self.path("b.sock"),
            &PeerLink {
                name: "a",
                public: &self.keys_a.public,
                endpoint: None,
                keep_up: false,
            },
            b_services,
        );
        let b_text = edit(b_text);
        let b = Node::start("b", &self.pair.b, self.dir.path(), &b_text);
        let a = Node::start("a", &self.pair.a, self.dir.path(), &a_text);
        a.wait_session_up();
        b.wait_session_up();
        (a, b)
    }

    /// [`Lab::start_nodes_via`] with the nodes reaching each other directly
    /// over the veth.
    pub fn start_nodes(&self, a_services: &str, b_services: &str) -> (Node, Node) {
        self.start_nodes_via(self.b_link(), a_services, b_services)
    }
}

/// A forward service 1 between the nodes: its entry on A listens on
/// `listen`, its exit on B sends to `target`. Returns A's and B's
/// `[[service]]` tables.
pub fn forward_services(listen: &str, target: &str) -> (String, String) {
    (
        format!("[[service]]\nid = 1\npeer = \"b\"\nmode = \"forward\"\nlisten = \"{listen}\"\n"),
        format!("[[service]]\nid = 1\npeer = \"a\"\nmode = \"forward\"\ntarget = \"{target}\"\n"),
    )
}
