//! The node's configuration file (TOML), loaded into typed, validated structs.
//! The reference for every key is `docs/config.md`.
//!
//! ```toml
//! private_key_file = "x.key"        # or private_key = "..."; exactly one of them
//! listen = "0.0.0.0:51820"          # the link socket; optional (ephemeral port)
//! control_socket = "/run/sdt/x.sock" # optional; default /run/sdt/<config file stem>.sock;
//!                                     # its directory must exist (only /run/sdt is created);
//!                                     # false: run without one
//! control_group = "sdt"             # optional: the control socket's group (mode 0660)
//! metrics_listen = "127.0.0.1:9920" # optional: serve Prometheus metrics (GET /metrics)
//!                                     # over HTTP on this TCP address; see docs/metrics.md
//! resolve_interval = "2m"           # optional: resolve endpoint names again this often
//!                                     # (default 2m; "off": only at start and when
//!                                     # handshakes go unanswered)
//!
//! [[peer]]
//! name = "y"                        # unique, not "*"
//! public_key = "..."                # unique
//! endpoint = "203.0.113.5:51820"    # optional; a "host:port" name is resolved at
//!                                   # start (to its first address the link socket
//!                                   # can reach: an IPv4 listen reaches only IPv4),
//!                                   # again after unanswered handshakes and every
//!                                   # resolve_interval; one that does not resolve
//!                                   # yet is tried again, not refused
//! preshared_key_file = "psk"        # optional (or preshared_key = "...")
//! persistent_keepalive = "25s"      # optional
//! keep_up = false                   # optional; implied with an endpoint when
//!                                   # this node holds an exit (or direct) half
//! mtu = 1500                        # optional; link MTU towards this peer, 576..=65535:
//!                                   # no frame is larger than one IP datagram of it;
//!                                   # 65535 lets the kernel fragment large frames
//!
//! [[service]]
//! id = 1                            # 0..=255, unique per node
//! peer = "y"                        # a [[peer]] name; "*" (any peer) on an exit half
//! mode = "forward"                  # direct | forward | push | router
//! listen = "127.0.0.1:5353"         # entry half: customers send here
//! target = "127.0.0.1:53"           # exit half: where datagrams go
//! idle_timeout = "60s"              # default 60s
//! max_channels = 1024               # default 1024, 1..=16384
//! min_idle_for_eviction = "5s"      # default 5s
//! new_channels_per_second = 10000   # default 10000: entry per service, exit per peer
//! port_hold = "30s"                 # exit half of forward/router: default 30s, "0s" allowed
//! buffer = "4MiB"                   # entry half of push: outage buffer, off by default,
//!                                   # 64KiB..=1GiB (bytes, or "KiB", "MiB", "GiB")
//! answered_port_hold = "2s"         # the same for answered exchanges (DNS): default 2s
//! ```
//!
//! Which half of a service this node holds follows from its keys:
//!
//! | mode | entry half | exit half |
//! |---|---|---|
//! | forward, push | `listen` | `target` |
//! | direct | both `listen` (this node's customer-facing socket) and `target` (the one fixed customer) on each node: [`Half::Both`] | |
//! | router | `tun` (and optionally `address`, `routes`, `tun_mtu`, `tun_offload`) | `allow` (an empty list allows nothing; `10.0.0.0/8:53` for UDP, `icmp://10.0.0.0/8` for ping) |
//! | router, `exit = "tun"` on both halves (an L3 exit) | `tun` (and optionally `address`, `routes`, `tun_mtu`, `tun_offload`) | `tun` (the same keys), `allow` (also `tcp://10.0.0.0/8:443`, `ip://10.0.0.0/8`) and `peer_addresses` (the entry's ranges) |
//!
//! Durations are written like `"25s"`, `"500ms"`, `"2m"` or `"1h 30m"` and
//! must not be zero. Relative paths (key files, the control socket) are
//! relative to the directory of the configuration file. Unknown keys are
//! refused, so a misspelt key is an error rather than a silent default.
//!
//! Every error is a [`ConfigError`] whose `Display` is one line of the form
//! `FILE:LINE: key `KEY`: message` (the line and key left out when there are
//! none to name, control characters in quoted values escaped as `\n`, ...),
//! which `sdt check` prints after `sdt: `.

use std::fmt::{self, Write as _};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sdt_core::key::{PresharedKey, PrivateKey, PublicKey};

use crate::build::{MAX_PEERS, MAX_SERVICES};
use serde::Deserialize;
use toml::Spanned;
use zeroize::{Zeroize, Zeroizing};

use crate::addr::{InterfaceAddress, Route};
use crate::keyfile::{self, KeyFileError};
use sdt_core::allow::AllowRule;
pub use sdt_core::ip::l3::IpNet;
use sdt_core::node::{ChannelLimits, ServiceId};

mod service;

/// Default [`ServiceSpec::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = ChannelLimits::DEFAULT.idle_timeout;
/// The largest `max_channels`: the capacity of the daemon's channel table
/// ([`crate::build::CHANNELS`], defined with the daemon's node type), which
/// all services share.
pub const MAX_CHANNELS: u16 = crate::build::CHANNELS as u16;

/// Default [`ServiceSpec::max_channels`].
pub const DEFAULT_MAX_CHANNELS: u16 = ChannelLimits::DEFAULT.max_channels;
/// Default [`ServiceSpec::new_channels_per_second`].
pub const DEFAULT_NEW_CHANNELS_PER_SECOND: u32 = ChannelLimits::DEFAULT.new_channels_per_second;

/// Default [`ServiceSpec::min_idle_for_eviction`].
pub const DEFAULT_MIN_IDLE_FOR_EVICTION: Duration = ChannelLimits::DEFAULT.min_idle_for_eviction;
/// The smallest push `buffer`: any datagram the link carries fits (a
/// datagram larger than the buffer could never be kept).
pub const MIN_PUSH_BUFFER: usize = 64 << 10;
/// The largest push `buffer`, per service: the daemon allocates it at
/// start.
pub const MAX_PUSH_BUFFER: usize = 1 << 30;
/// Directory of the default control socket, `/run/sdt/<config stem>.sock`.
pub const DEFAULT_CONTROL_DIR: &str = "/run/sdt";
/// `IFF_TUN` in `/sys/class/net/NAME/tun_flags` (`linux/if_tun.h`).
const IFF_TUN: u32 = 0x0001;
/// The smallest `tun_mtu`: the IPv4 minimum every host must accept
/// (RFC 791). Below 1280 the kernel turns IPv6 off on the device.
pub const MIN_TUN_MTU: u16 = 576;
/// Longest TUN device name Linux accepts (`IFNAMSIZ` less the NUL).
pub const MAX_TUN_NAME_LEN: usize = 15;

/// `Ok` if no network interface is named `name` in this network namespace,
/// or it is a TUN device; else what it is instead, for an error message.
/// Looked up in `/sys/class/net`.
pub fn interface_kind(name: &str) -> std::result::Result<(), &'static str> {
    let dir = Path::new("/sys/class/net").join(name);
    if std::fs::symlink_metadata(&dir).is_err() {
        return Ok(());
    }
    let flags = std::fs::read_to_string(dir.join("tun_flags"))
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok());
    match flags {
        Some(f) if f & IFF_TUN != 0 => Ok(()),
        Some(_) => Err("is a TAP device; sdt needs a TUN device"),
        None => Err("exists and is not a TUN device"),
    }
}

/// A node's whole, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The configuration file it was loaded from, as given.
    pub path: PathBuf,
    /// This node's static private key.
    pub private_key: PrivateKey,
    /// The link socket's address; `None` for an ephemeral port on all
    /// addresses.
    pub listen: Option<SocketAddr>,
    /// Where `sdt status` finds the running node; `None` with
    /// `control_socket = false` (the node serves none).
    pub control_socket: Option<PathBuf>,
    /// The group the control socket belongs to (`control_group`), so its
    /// members may use it (mode 0660); `None`: the node's own group.
    pub control_group: Option<ControlGroup>,
    /// Where to serve Prometheus metrics (`GET /metrics`, TCP); `None`
    /// serves none.
    pub metrics_listen: Option<SocketAddr>,
    /// How often endpoint names are resolved again (`resolve_interval`);
    /// `None`: only at start and when handshakes go unanswered.
    pub resolve_interval: Option<Duration>,
    /// The peers, in file order; [`PeerRef::Named`] indexes this.
    pub peers: Vec<PeerSpec>,
    /// The services, in file order.
    pub services: Vec<ServiceSpec>,
}

/// `control_group`: a group name, resolved when the file is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlGroup {
    /// The name as written.
    pub name: String,
    /// Its group id.
    pub gid: u32,
}

/// One `[[peer]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// Unique name, used by services and in logs.
    pub name: String,
    /// The peer's static public key, unique among the peers.
    pub public_key: PublicKey,
    /// Where to reach the peer (a name resolved at load time); `None` to
    /// only accept it, or while its [`PeerSpec::endpoint_name`] does not
    /// resolve.
    pub endpoint: Option<SocketAddr>,
    /// The `endpoint` as written when it is a `host:port` name, which the
    /// node resolves again while it runs; `None` for an address.
    pub endpoint_name: Option<String>,
    /// Optional pre-shared key mixed into the handshake.
    pub preshared_key: Option<PresharedKey>,
    /// Send a keepalive after this long without sending.
    pub persistent_keepalive: Option<Duration>,
    /// Bring the link up at start and keep it up even without traffic.
    /// The node also does so without being told where the peer may send
    /// first in a shared service (core's rule,
    /// [`sdt_core::node::Node::add_service`]).
    pub keep_up: bool,
    /// The link MTU towards the peer: every frame sent to it fits one IP
    /// datagram of this size, so the IP layer does not fragment it, and
    /// larger customer datagrams are dropped as `too_big`
    /// ([`sdt_core::mtu`]). Default [`sdt_core::mtu::DEFAULT_LINK_MTU`].
    pub mtu: u16,
}

/// Which peer a service runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerRef {
    /// The peer at this index of [`Config::peers`].
    Named(usize),
    /// Any configured peer (`peer = "*"`), only on an exit half.
    Any,
}

pub use sdt_core::node::{Half, Mode};

/// Which exit a router service has (`exit`): both halves must say the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RouterExit {
    /// UDP and ICMP echo, from a socket per channel at the exit (the
    /// default).
    #[default]
    Socket,
    /// Whole IP packets, written to a TUN device at the exit for its kernel
    /// to route (`exit = "tun"`).
    Tun,
}

impl RouterExit {
    /// The value of the `exit` key.
    pub const fn as_str(self) -> &'static str {
        match self {
            RouterExit::Socket => "socket",
            RouterExit::Tun => "tun",
        }
    }
}

/// A router entry's TUN device, or an L3 router exit's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunSpec {
    /// Device name, e.g. `sdt0` (at most 15 bytes).
    pub name: String,
    /// Address to give the device, if sdt should set one.
    pub address: Option<InterfaceAddress>,
    /// Routes sdt installs into the device at start (and removes at stop):
    /// traffic to these networks is captured by the service.
    pub routes: Vec<Route>,
    /// The device's MTU (`tun_mtu`); `None` for the default, the largest IP
    /// packet one link frame carries ([`sdt_core::mtu::router_packet_mtu`]).
    pub mtu: Option<u16>,
    /// Whether to use the kernel's offloads on the device (`tun_offload`);
    /// `None` for the default, [`DEFAULT_TUN_OFFLOAD`].
    pub offload: Option<bool>,
}

/// Whether a TUN device uses offloads when `tun_offload` is not given:
/// checksum and segmentation offloads, so the kernel hands over TCP
/// super-packets that the daemon splits (`runtime-mio/src/daemon/tun.rs`,
/// docs/performance.md).
pub const DEFAULT_TUN_OFFLOAD: bool = true;

/// One `[[service]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Service number, unique on this node and the same on the peer.
    pub id: ServiceId,
    /// The peer it runs with.
    pub peer: PeerRef,
    /// What it does.
    pub mode: Mode,
    /// Which half this node holds.
    pub half: Half,
    /// Entry (and direct): the socket customers send to.
    pub listen: Option<SocketAddr>,
    /// Exit: where datagrams go; direct: the one fixed customer.
    pub target: Option<SocketAddr>,
    /// Router entry: the TUN device.
    pub tun: Option<TunSpec>,
    /// Router exit: where datagrams may go. Empty allows nothing.
    pub allow: Vec<AllowRule>,
    /// Router services: which exit carries the traffic (`exit`), the same
    /// on both halves.
    pub exit: RouterExit,
    /// L3 router exit: the peer's address ranges (`peer_addresses`), as
    /// WireGuard's AllowedIPs.
    pub peer_addresses: Vec<IpNet>,
    /// Close a channel idle this long.
    pub idle_timeout: Duration,
    /// Most channels open at once.
    pub max_channels: u16,
    /// A full table evicts its least recently used channel only if it has
    /// been idle at least this long.
    pub min_idle_for_eviction: Duration,
    /// New channels per second: for the whole service on an entry, per
    /// peer on an exit.
    pub new_channels_per_second: u32,
    /// Exit halves of forward and router services: how long after a
    /// channel's last datagram its socket's port is held when the channel
    /// ends, so a late reply cannot reach a newer channel on the same port
    /// ([`sdt_core::node::ChannelLimits::port_hold`]). Zero is allowed.
    pub port_hold: Duration,
    /// Entry halves of push services: bytes of the outage buffer
    /// (`buffer`), `None` for none.
    pub buffer: Option<usize>,
    /// The same for a channel that ends answered, each of its few requests
    /// replied to ([`sdt_core::node::ChannelLimits::answered_port_hold`]).
    pub answered_port_hold: Duration,
}

impl PeerSpec {
    /// A peer for configs built in code: no pre-shared key, no persistent
    /// keepalive, no `keep_up` (core still keeps the link up where the
    /// services call for it).
    pub fn new(name: &str, public_key: PublicKey, endpoint: Option<SocketAddr>) -> PeerSpec {
        PeerSpec {
            name: name.to_owned(),
            public_key,
            endpoint,
            endpoint_name: None,
            preshared_key: None,
            persistent_keepalive: None,
            keep_up: false,
            mtu: sdt_core::mtu::DEFAULT_LINK_MTU,
        }
    }
}

impl ServiceSpec {
    /// A service with every optional key at its default, for configs built
    /// in code (the demo, tests, embedding programs).
    pub fn new(id: ServiceId, peer: PeerRef, mode: Mode, half: Half) -> ServiceSpec {
        ServiceSpec {
            id,
            peer,
            mode,
            half,
            listen: None,
            target: None,
            tun: None,
            allow: Vec::new(),
            exit: RouterExit::Socket,
            peer_addresses: Vec::new(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_channels: DEFAULT_MAX_CHANNELS,
            min_idle_for_eviction: DEFAULT_MIN_IDLE_FOR_EVICTION,
            new_channels_per_second: DEFAULT_NEW_CHANNELS_PER_SECOND,
            port_hold: ChannelLimits::DEFAULT_PORT_HOLD,
            buffer: None,
            answered_port_hold: ChannelLimits::DEFAULT_ANSWERED_PORT_HOLD,
        }
    }
}

/// Why a configuration was refused. `Display` is the one-line form
/// `FILE:LINE: key `KEY`: message`.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    Io {
        /// The configuration file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The file is not valid TOML, or a value has the wrong type or an
    /// unknown key (as reported by the TOML parser).
    Parse {
        /// The configuration file.
        path: PathBuf,
        /// 1-based line of the problem, when the parser knows it.
        line: Option<usize>,
        /// The key involved, when it can be told from the text.
        key: Option<String>,
        /// The parser's message.
        message: String,
    },
    /// The file parses, but a value is wrong or missing, or values
    /// contradict each other.
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// 1-based line of the offending key, when there is one.
        line: Option<usize>,
        /// The offending key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A key file named by the configuration was refused.
    KeyFile {
        /// The configuration file.
        path: PathBuf,
        /// 1-based line of the key naming the file.
        line: Option<usize>,
        /// `private_key_file` or `preshared_key_file`.
        key: String,
        /// Why the key file was refused.
        source: KeyFileError,
    },
}

impl ConfigError {
    /// The configuration file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::Io { path, .. }
            | ConfigError::Parse { path, .. }
            | ConfigError::Invalid { path, .. }
            | ConfigError::KeyFile { path, .. } => path,
        }
    }

    /// The 1-based line of the problem, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Parse { line, .. }
            | ConfigError::Invalid { line, .. }
            | ConfigError::KeyFile { line, .. } => *line,
        }
    }

    /// The key involved, if known.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Parse { key, .. } => key.as_deref(),
            ConfigError::Invalid { key, .. } | ConfigError::KeyFile { key, .. } => Some(key),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths and values quoted from the file may hold line breaks (a
        // TOML string can say "\n") and other control characters: escape
        // them, so the error stays on one line and cannot drive a terminal.
        let f = &mut OneLine(f);
        write!(f, "{}", self.path().display())?;
        if let Some(line) = self.line() {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = self.key() {
            write!(f, "key `{key}`: ")?;
        }
        match self {
            ConfigError::Io { source, .. } => write!(f, "cannot read: {source}"),
            ConfigError::Parse { message, .. } | ConfigError::Invalid { message, .. } => {
                f.write_str(message)
            }
            ConfigError::KeyFile { source, .. } => write!(f, "{source}"),
        }
    }
}

/// Writes through to a formatter with every control character escaped as
/// Rust writes it in a string literal (`\n`, `\r`, `\u{1b}`, ...).
struct OneLine<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for OneLine<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(char::is_control) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(self.0, "{}", c.escape_debug())?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io { source, .. } => Some(source),
            ConfigError::KeyFile { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Config {
    /// Reads and validates the configuration file at `path`. Key files are
    /// read too, relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let text = Zeroizing::new(text);
        let (config, inline_key) = Config::parse_inner(&text, path)?;
        if inline_key {
            warn_if_others_can_read(path);
        }
        Ok(config)
    }

    /// Where the node run from the configuration file at `path` serves its
    /// control socket, reading `control_socket` and nothing else: `sdt
    /// status` must work for a user who may not read the key files, and
    /// when an endpoint's name no longer resolves. Other keys, even unknown
    /// or malformed ones, are not looked at; the file must still be TOML.
    pub fn control_socket_of(path: &Path) -> Result<PathBuf, ConfigError> {
        #[derive(Deserialize)]
        struct ControlOnly {
            control_socket: Option<Spanned<RawControlSocket>>,
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let text = Zeroizing::new(text);
        let ctx = Ctx { path, text: &text };
        let raw: ControlOnly = toml::from_str(&text).map_err(|e| ctx.parse_error(&e))?;
        match raw.control_socket.as_ref().map(|c| (c, c.get_ref())) {
            Some((c, RawControlSocket::Path(p))) if p.is_empty() => {
                Err(ctx.at(c, "control_socket", "must not be empty"))
            }
            Some((_, RawControlSocket::Path(p))) => Ok(ctx.relative(p)),
            Some((c, RawControlSocket::Enabled(false))) => Err(ctx.at(
                c,
                "control_socket",
                "control_socket = false: this node runs without a control socket",
            )),
            Some((_, RawControlSocket::Enabled(true))) | None => Ok(default_control_socket(path)),
        }
    }

    /// Validates configuration `text` as if read from `path`: `path` names
    /// the file in errors, its directory is where relative paths start, and
    /// its stem names the default control socket.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::parse_inner(text, path).map(|(config, _)| config)
    }

    /// [`Config::parse`], also saying whether the private key was inline.
    fn parse_inner(text: &str, path: &Path) -> Result<(Config, bool), ConfigError> {
        let ctx = Ctx { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| ctx.parse_error(&e))?;
        let inline_key = raw.private_key.is_some();
        Ok((ctx.validate(raw)?, inline_key))
    }

    /// The peer a [`PeerRef::Named`] points at; `None` for [`PeerRef::Any`].
    pub fn peer(&self, peer: PeerRef) -> Option<&PeerSpec> {
        match peer {
            PeerRef::Named(i) => self.peers.get(i),
            PeerRef::Any => None,
        }
    }

    /// The peer called `name`, with its index.
    pub fn peer_by_name(&self, name: &str) -> Option<(usize, &PeerSpec)> {
        self.peers.iter().enumerate().find(|(_, p)| p.name == name)
    }
}

// The file as TOML describes it: everything optional and spanned, so that
// every check below can name the line and the key itself.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    private_key_file: Option<Spanned<String>>,
    private_key: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    control_socket: Option<Spanned<RawControlSocket>>,
    control_group: Option<Spanned<String>>,
    metrics_listen: Option<Spanned<String>>,
    resolve_interval: Option<Spanned<String>>,
    #[serde(default)]
    peer: Vec<Spanned<RawPeer>>,
    #[serde(default)]
    service: Vec<Spanned<RawService>>,
}

/// `control_socket`: a path, or `false` for none (`true`: the default
/// path). Deserialized by hand so that a wrong type is one plain message
/// rather than serde's "did not match any variant".
enum RawControlSocket {
    Path(String),
    Enabled(bool),
}

impl<'de> Deserialize<'de> for RawControlSocket {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawControlSocket;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path, or false to run without a control socket")
            }
            fn visit_str<E: serde::de::Error>(
                self,
                v: &str,
            ) -> std::result::Result<Self::Value, E> {
                Ok(RawControlSocket::Path(v.to_owned()))
            }
            fn visit_bool<E: serde::de::Error>(
                self,
                v: bool,
            ) -> std::result::Result<Self::Value, E> {
                Ok(RawControlSocket::Enabled(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: Option<Spanned<String>>,
    public_key: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    preshared_key_file: Option<Spanned<String>>,
    preshared_key: Option<Spanned<String>>,
    persistent_keepalive: Option<Spanned<String>>,
    keep_up: Option<bool>,
    mtu: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    id: Option<Spanned<i64>>,
    peer: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
    tun: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    routes: Option<Spanned<Vec<Spanned<String>>>>,
    tun_mtu: Option<Spanned<i64>>,
    tun_offload: Option<Spanned<bool>>,
    allow: Option<Spanned<Vec<Spanned<String>>>>,
    exit: Option<Spanned<String>>,
    peer_addresses: Option<Spanned<Vec<Spanned<String>>>>,
    idle_timeout: Option<Spanned<String>>,
    max_channels: Option<Spanned<i64>>,
    min_idle_for_eviction: Option<Spanned<String>>,
    new_channels_per_second: Option<Spanned<i64>>,
    port_hold: Option<Spanned<String>>,
    answered_port_hold: Option<Spanned<String>>,
    buffer: Option<Spanned<RawByteSize>>,
}

/// A byte size: an integer (bytes) or a string such as `"4MiB"`.
/// Deserialized by hand so that a wrong type is one plain message.
enum RawByteSize {
    Bytes(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"4MiB\", or a number of bytes")
            }
            fn visit_str<E: serde::de::Error>(
                self,
                v: &str,
            ) -> std::result::Result<Self::Value, E> {
                Ok(RawByteSize::Text(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
                Ok(RawByteSize::Bytes(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The bytes of a size written `"64KiB"`, `"4MiB"`, `"1GiB"`, `"512B"` or
/// `"65536"` (a space before the unit is allowed).
pub fn parse_byte_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let not_a_size = || format!("`{text}` is not a size such as \"64KiB\" or \"4MiB\"");
    if number.is_empty() {
        return Err(not_a_size());
    }
    let shift = match unit.trim_start() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        other => {
            return Err(format!(
                "unknown unit `{other}`; write bytes, or KiB, MiB or GiB (\"4MiB\")"
            ))
        }
    };
    // Only digits: too many of them is the one way to fail.
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is too large"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// The file being validated, for error positions.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

impl Ctx<'_> {
    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn invalid(
        &self,
        span: Option<Range<usize>>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: span.map(|s| self.line(s.start)),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn at<T>(&self, value: &Spanned<T>, key: &str, message: impl Into<String>) -> ConfigError {
        self.invalid(Some(value.span()), key, message)
    }

    fn parse_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span();
        ConfigError::Parse {
            path: self.path.to_owned(),
            line: span.as_ref().map(|s| self.line(s.start)),
            key: span.and_then(|s| self.key_at(s)),
            message: e.message().to_owned(),
        }
    }

    /// The key a parser error's span points at or into, when the text makes
    /// it plain: the span is a bare key followed by `=` (or ending a table
    /// header such as `[service.x]`), or the value right after `key =` on its
    /// line.
    fn key_at(&self, span: Range<usize>) -> Option<String> {
        let is_key = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        let here = self.text.get(span.clone())?;
        let after = self.text.get(span.end..)?.trim_start_matches([' ', '\t']);
        let before = self.text.get(..span.start)?;
        let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
        let in_header = line.trim_start().starts_with('[') && !line.contains('=');
        if is_key(here) && (after.starts_with('=') || (in_header && after.starts_with(']'))) {
            return Some(here.to_owned());
        }
        let key = line.trim_end().strip_suffix('=')?.trim();
        is_key(key).then(|| key.to_owned())
    }

    fn validate(&self, mut raw: RawConfig) -> Result<Config> {
        let private_key = self.private_key(&raw);
        if let Some(k) = raw.private_key.as_mut() {
            k.get_mut().zeroize();
        }
        let private_key = private_key?;

        let listen = match &raw.listen {
            Some(l) => Some(self.socket_addr(l, "listen")?),
            None => None,
        };
        let control_socket = match raw.control_socket.as_ref().map(|c| (c, c.get_ref())) {
            Some((c, RawControlSocket::Path(p))) if p.is_empty() => {
                return Err(self.at(c, "control_socket", "must not be empty"))
            }
            Some((c, RawControlSocket::Path(p))) => {
                let path = self.relative(p);
                self.control_socket_dir(c, &path)?;
                self.control_socket_free(Some(c.span()), &path)?;
                Some(path)
            }
            Some((_, RawControlSocket::Enabled(false))) => None,
            Some((c, RawControlSocket::Enabled(true))) => {
                let path = default_control_socket(self.path);
                self.control_socket_free(Some(c.span()), &path)?;
                Some(path)
            }
            None => {
                let path = default_control_socket(self.path);
                self.control_socket_free(None, &path)?;
                Some(path)
            }
        };
        let control_group = match &raw.control_group {
            Some(g) if control_socket.is_none() => {
                return Err(self.at(
                    g,
                    "control_group",
                    "control_socket = false: there is no control socket to give a group",
                ))
            }
            Some(g) => Some(self.control_group(g)?),
            None => None,
        };
        let metrics_listen = match &raw.metrics_listen {
            Some(m) => {
                let addr = self.socket_addr(m, "metrics_listen")?;
                if addr.port() == 0 {
                    return Err(self.at(
                        m,
                        "metrics_listen",
                        "port 0 is not allowed: a scraper needs a fixed port",
                    ));
                }
                Some(addr)
            }
            None => None,
        };
        let resolve_interval = match &raw.resolve_interval {
            Some(r) if r.get_ref() == "off" => None,
            Some(r) => Some(self.duration(r, "resolve_interval")?),
            None => Some(DEFAULT_RESOLVE_INTERVAL),
        };

        let mut peers = Vec::with_capacity(raw.peer.len());
        for peer in &mut raw.peer {
            if peers.len() == MAX_PEERS {
                return Err(self.at(
                    peer,
                    "[[peer]]",
                    format!("too many peers: a node holds at most {MAX_PEERS}"),
                ));
            }
            let spec = self.peer(peer, &peers, &private_key, listen);
            if let Some(k) = peer.get_mut().preshared_key.as_mut() {
                k.get_mut().zeroize();
            }
            peers.push((peer.span(), spec?));
        }
        let peers: Vec<PeerSpec> = peers.into_iter().map(|(_, p)| p).collect();

        let mut services: Vec<(Range<usize>, ServiceSpec)> = Vec::new();
        for service in &raw.service {
            if services.len() == MAX_SERVICES {
                return Err(self.at(
                    service,
                    "[[service]]",
                    format!("too many services: a node runs at most {MAX_SERVICES}"),
                ));
            }
            let spec = self.service(service, &peers)?;
            self.unique_service(service.get_ref(), &spec, listen, &services)?;
            services.push((service.span(), spec));
        }

        Ok(Config {
            path: self.path.to_owned(),
            private_key,
            listen,
            control_socket,
            control_group,
            metrics_listen,
            resolve_interval,
            peers,
            services: services.into_iter().map(|(_, s)| s).collect(),
        })
    }

    fn private_key(&self, raw: &RawConfig) -> Result<PrivateKey> {
        match (&raw.private_key_file, &raw.private_key) {
            (Some(_), Some(inline)) => Err(self.at(
                inline,
                "private_key",
                "give either private_key or private_key_file, not both",
            )),
            (None, None) => Err(self.invalid(
                None,
                "private_key_file",
                "missing: give private_key_file (or private_key)",
            )),
            (Some(file), None) => keyfile::read_private_key(&self.relative(file.get_ref()))
                .map_err(|source| self.key_file(file, "private_key_file", source)),
            (None, Some(inline)) => inline
                .get_ref()
                .parse()
                .map_err(|e| self.at(inline, "private_key", format!("{e}"))),
        }
    }

    fn key_file(&self, file: &Spanned<String>, key: &str, source: KeyFileError) -> ConfigError {
        ConfigError::KeyFile {
            path: self.path.to_owned(),
            line: Some(self.line(file.span().start)),
            key: key.to_owned(),
            source,
        }
    }

    /// `path` relative to the configuration file's directory.
    /// The directory of a configured control socket must exist: `sdt run`
    /// creates only the default one ([`DEFAULT_CONTROL_DIR`]), so that a
    /// typo neither creates directories nor leaves the node without a
    /// control socket (it refuses to start without one).
    fn control_socket_dir<T>(&self, value: &Spanned<T>, path: &Path) -> Result<()> {
        let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
            return Ok(());
        };
        if dir == Path::new(DEFAULT_CONTROL_DIR) {
            return Ok(());
        }
        let key = "control_socket";
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(self.at(value, key, format!("{} is not a directory", dir.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.at(
                value,
                key,
                format!("directory {} does not exist", dir.display()),
            )),
            Err(e) => Err(self.at(value, key, format!("directory {}: {e}", dir.display()))),
        }
    }

    /// Something other than a socket at the control socket's path (a
    /// regular file, a directory) is never removed, so `sdt run` could not
    /// serve its control socket there: refused here too. A socket there is
    /// fine: a stale one is replaced, and whether a live node serves it is
    /// for `run` to find out (`check` runs on the config of a live node).
    fn control_socket_free(&self, span: Option<Range<usize>>, path: &Path) -> Result<()> {
        use std::os::unix::fs::FileTypeExt;
        match std::fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_socket() => Err(self.invalid(
                span,
                "control_socket",
                format!(
                    "{} exists and is not a socket (it is never removed)",
                    path.display()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// `control_group`: the group must exist, and `sdt run` must be able
    /// to give its control socket to it: root may give it any group, any
    /// other user only one of its own groups (the kernel's rule for
    /// `chown`). Checked for the user `sdt check` runs as, which is the
    /// user `sdt run` runs as when the two agree.
    fn control_group(&self, value: &Spanned<String>) -> Result<ControlGroup> {
        let name = value.get_ref();
        let key = "control_group";
        let group = match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => g,
            Ok(None) => return Err(self.at(value, key, format!("there is no group `{name}`"))),
            Err(e) => {
                return Err(self.at(value, key, format!("cannot look up group `{name}`: {e}")))
            }
        };
        let gid = group.gid;
        let may = nix::unistd::geteuid().is_root()
            || nix::unistd::getegid() == gid
            || nix::unistd::getgroups().is_ok_and(|gs| gs.contains(&gid));
        if !may {
            return Err(self.at(
                value,
                key,
                format!(
                    "this user is not in group `{name}`: only root may give the control socket \
                     to a group it is not a member of"
                ),
            ));
        }
        Ok(ControlGroup {
            name: name.clone(),
            gid: gid.as_raw(),
        })
    }

    fn relative(&self, path: &str) -> PathBuf {
        match self.path.parent() {
            Some(dir) => dir.join(path),
            None => PathBuf::from(path),
        }
    }

    fn peer(
        &self,
        raw: &Spanned<RawPeer>,
        earlier: &[(Range<usize>, PeerSpec)],
        own_key: &PrivateKey,
        link: Option<SocketAddr>,
    ) -> Result<PeerSpec> {
        let p = raw.get_ref();
        let missing = |key: &str| self.at(raw, key, "missing in this [[peer]]");

        let name = p.name.as_ref().ok_or_else(|| missing("name"))?;
        let name_str = name.get_ref();
        if name_str.is_empty() || name_str == "*" || name_str.chars().any(char::is_control) {
            return Err(self.at(
                name,
                "name",
                "a peer name must be non-empty, printable and not `*`",
            ));
        }
        if let Some((span, _)) = earlier.iter().find(|(_, e)| &e.name == name_str) {
            return Err(self.at(
                name,
                "name",
                format!(
                    "peer name `{name_str}` is already used by the [[peer]] on line {}",
                    self.line(span.start)
                ),
            ));
        }

        let key = p.public_key.as_ref().ok_or_else(|| missing("public_key"))?;
        let public_key: PublicKey = key
            .get_ref()
            .parse()
            .map_err(|e| self.at(key, "public_key", format!("{e}")))?;
        if let Some((_, e)) = earlier.iter().find(|(_, e)| e.public_key == public_key) {
            return Err(self.at(
                key,
                "public_key",
                format!("peer `{}` already has this public key", e.name),
            ));
        }
        if public_key == own_key.public_key() {
            return Err(self.at(
                key,
                "public_key",
                "this is this node's own public key, not a peer's",
            ));
        }

        let (endpoint, endpoint_name) = match &p.endpoint {
            // The link socket sends every frame to this peer: an endpoint
            // of a family it cannot reach would leave the link down for
            // good (`send_errors`, nothing logged), so it is refused here.
            // A name that does not resolve now is no error: the node tries
            // again while it runs (DNS may come up after it).
            Some(e)
                if e.get_ref().parse::<SocketAddr>().is_err()
                    && self.host_port(e, "endpoint")? =>
            {
                let name = Some(e.get_ref().clone());
                match resolve_name(e.get_ref(), link) {
                    Ok(addr) => (Some(addr), name),
                    Err(ResolveError::Lookup(_) | ResolveError::NoAddress) => (None, name),
                    Err(ResolveError::Unreachable(first)) => {
                        let local = link.unwrap_or(first);
                        return Err(self.unreachable(
                            e,
                            "endpoint",
                            first,
                            local,
                            "the link's listen",
                        ));
                    }
                }
            }
            Some(e) => (
                Some(self.resolve(e, "endpoint", link.map(|l| (l, "the link's listen")))?),
                None,
            ),
            None => (None, None),
        };

        let preshared_key = match (&p.preshared_key_file, &p.preshared_key) {
            (Some(_), Some(inline)) => {
                return Err(self.at(
                    inline,
                    "preshared_key",
                    "give either preshared_key or preshared_key_file, not both",
                ))
            }
            (Some(file), None) => Some(
                keyfile::read_preshared_key(&self.relative(file.get_ref()))
                    .map_err(|source| self.key_file(file, "preshared_key_file", source))?,
            ),
            (None, Some(inline)) => Some(
                inline
                    .get_ref()
                    .parse()
                    .map_err(|e| self.at(inline, "preshared_key", format!("{e}")))?,
            ),
            (None, None) => None,
        };

        let persistent_keepalive = match &p.persistent_keepalive {
            Some(d) => Some(self.duration(d, "persistent_keepalive")?),
            None => None,
        };

        let mtu = match &p.mtu {
            Some(m) => match u16::try_from(*m.get_ref()) {
                Ok(n) if sdt_core::mtu::valid_link_mtu(n) => n,
                _ => {
                    return Err(self.at(
                        m,
                        "mtu",
                        format!(
                            "must be a number from {} to {} (the link MTU towards the peer)",
                            sdt_core::mtu::MIN_LINK_MTU,
                            sdt_core::mtu::MAX_LINK_MTU
                        ),
                    ))
                }
            },
            None => sdt_core::mtu::DEFAULT_LINK_MTU,
        };

        Ok(PeerSpec {
            name: name_str.clone(),
            public_key,
            endpoint,
            endpoint_name,
            preshared_key,
            persistent_keepalive,
            keep_up: p.keep_up.unwrap_or(false),
            mtu,
        })
    }

    /// A literal `IP:port`.
    fn socket_addr(&self, value: &Spanned<String>, key: &str) -> Result<SocketAddr> {
        value.get_ref().parse().map_err(|_| {
            self.at(
                value,
                key,
                format!(
                    "`{}` is not an IP address and port such as 127.0.0.1:5353 or [::1]:5353",
                    value.get_ref()
                ),
            )
        })
    }

    /// An `IP:port`, or a `host:port` resolved now (the first address the
    /// resolver gives). Port 0 is refused. With `from`, the address is sent
    /// to from a socket bound there (named in errors by the `&str`): a name
    /// resolves to its first address that socket can reach, and an address
    /// it can never reach is refused ([`can_send`]).
    fn resolve(
        &self,
        value: &Spanned<String>,
        key: &str,
        from: Option<(SocketAddr, &str)>,
    ) -> Result<SocketAddr> {
        let text = value.get_ref();
        let addr = match text.parse::<SocketAddr>() {
            Ok(addr) => {
                if let Some((local, what)) = from.filter(|(local, _)| !can_send(*local, addr)) {
                    return Err(self.unreachable(value, key, addr, local, what));
                }
                addr
            }
            Err(_) => {
                if !self.host_port(value, key)? {
                    return Err(self.at(
                        value,
                        key,
                        format!("`{text}` is not an address and port such as 192.0.2.1:51820 or host.example:51820"),
                    ));
                }
                resolve_name(text, from.map(|(local, _)| local)).map_err(|e| match (e, from) {
                    (ResolveError::Unreachable(first), Some((local, what))) => {
                        self.unreachable(value, key, first, local, what)
                    }
                    (ResolveError::NoAddress, _) => {
                        self.at(value, key, format!("`{text}` resolves to no address"))
                    }
                    (e, _) => self.at(value, key, format!("cannot resolve `{text}`: {e}")),
                })?
            }
        };
        if addr.port() == 0 {
            return Err(self.at(value, key, "port 0 is not a destination port"));
        }
        Ok(addr)
    }

    /// `addr` is of a family a socket bound at `local` (`what`) can never
    /// send to ([`can_send`]).
    fn unreachable(
        &self,
        value: &Spanned<String>,
        key: &str,
        addr: SocketAddr,
        local: SocketAddr,
        what: &str,
    ) -> ConfigError {
        self.at(
            value,
            key,
            format!(
                "{addr} is {} and {what} {local} is {}: a socket bound there can never \
                 send to it; use an {} address or listen on {}",
                family(addr),
                family(local),
                family(local),
                if local.is_ipv4() {
                    "[::] (both families)"
                } else {
                    "[::]"
                },
            ),
        )
    }

    /// Whether `value` has the form `host:port` (the name not checked
    /// further). Port 0 is refused.
    fn host_port(&self, value: &Spanned<String>, key: &str) -> Result<bool> {
        match value.get_ref().rsplit_once(':') {
            Some((h, p)) if !h.is_empty() => match p.parse::<u16>() {
                Ok(0) => Err(self.at(value, key, "port 0 is not a destination port")),
                Ok(_) => Ok(true),
                Err(_) => Ok(false),
            },
            _ => Ok(false),
        }
    }

    /// A byte size from `min` to `max`.
    fn byte_size(
        &self,
        value: &Spanned<RawByteSize>,
        key: &str,
        min: usize,
        max: usize,
    ) -> Result<usize> {
        let bytes = match value.get_ref() {
            RawByteSize::Bytes(n) => u64::try_from(*n).map_err(|_| format!("{n} is negative")),
            RawByteSize::Text(t) => parse_byte_size(t),
        }
        .map_err(|e| self.at(value, key, e))?;
        match usize::try_from(bytes) {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.at(
                value,
                key,
                format!(
                    "{bytes} bytes is out of range: from {} to {}",
                    show_size(min),
                    show_size(max)
                ),
            )),
        }
    }

    fn duration(&self, value: &Spanned<String>, key: &str) -> Result<Duration> {
        let text = value.get_ref();
        let d = humantime::parse_duration(text).map_err(|e| {
            self.at(
                value,
                key,
                format!("`{text}` is not a duration such as \"25s\", \"500ms\" or \"2m\": {e}"),
            )
        })?;
        if d.is_zero() {
            return Err(self.at(value, key, "must not be zero"));
        }
        Ok(d)
    }
}

/// `bytes` in the largest binary unit that divides it: `"4MiB"`, `"1000B"`.
pub fn show_size(bytes: usize) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// Default [`Config::resolve_interval`]: as often as WireGuard's
/// `reresolve-dns` script is commonly run from a timer.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(120);

/// Why [`resolve_name`] found no address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// The resolver failed (no such name, DNS unreachable, ...).
    Lookup(String),
    /// The name has no address.
    NoAddress,
    /// Every address is of a family a socket bound at the given local
    /// address cannot send to ([`can_send`]); the first one.
    Unreachable(SocketAddr),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Lookup(e) => f.write_str(e),
            ResolveError::NoAddress => f.write_str("no address"),
            ResolveError::Unreachable(a) => write!(
                f,
                "only addresses the link socket cannot send to ({a} is {})",
                family(*a)
            ),
        }
    }
}

/// Resolves `host:port` now (blocking), to the first address the resolver
/// gives that a socket bound at `local` can send to ([`can_send`]): the one
/// rule for endpoint names, at load time and in the daemon's resolver.
pub fn resolve_name(
    text: &str,
    local: Option<SocketAddr>,
) -> std::result::Result<SocketAddr, ResolveError> {
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| ResolveError::Lookup(e.to_string()))?
        .collect();
    let first = *addrs.first().ok_or(ResolveError::NoAddress)?;
    match local {
        Some(local) => addrs
            .iter()
            .copied()
            .find(|a| can_send(local, *a))
            .ok_or(ResolveError::Unreachable(first)),
        None => Ok(first),
    }
}

/// `IPv4` or `IPv6`, for errors.
fn family(addr: SocketAddr) -> &'static str {
    if addr.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// Whether a UDP socket bound to `local` can ever send to `remote`. An IPv4
/// socket cannot send to an IPv6 address at all; an IPv6 socket reaches
/// IPv4 addresses only when bound to `[::]` (dual-stack, Linux's default
/// `net.ipv6.bindv6only = 0`, which the daemon's own default link socket
/// relies on too) or to an IPv4-mapped address. Routing (a loopback socket
/// towards another host) is left to the kernel: it may change at run time.
pub fn can_send(local: SocketAddr, remote: SocketAddr) -> bool {
    match (local, remote) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => true,
        (SocketAddr::V4(_), SocketAddr::V6(_)) => false,
        (SocketAddr::V6(l), SocketAddr::V4(_)) => {
            l.ip().is_unspecified() || l.ip().to_ipv4_mapped().is_some()
        }
        (SocketAddr::V6(l), SocketAddr::V6(r)) => {
            l.ip().is_unspecified()
                || l.ip().to_ipv4_mapped().is_some() == r.ip().to_ipv4_mapped().is_some()
        }
    }
}

/// Whether binding `a` and `b` side by side would fail: the same port on
/// the same address, or on a wildcard that covers the other (`0.0.0.0`
/// covers IPv4 addresses, a dual-stack `[::]` every address).
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    let covers =
        |w: SocketAddr, x: SocketAddr| w.ip().is_unspecified() && (w.is_ipv6() || x.is_ipv4());
    a.port() == b.port() && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

/// `/run/sdt/<stem>.sock` for a configuration file `<dir>/<stem>.toml`.
pub fn default_control_socket(config_path: &Path) -> PathBuf {
    let stem = config_path
        .file_stem()
        .filter(|s| !s.is_empty())
        .unwrap_or("sdt".as_ref());
    let mut name = stem.to_owned();
    name.push(".sock");
    Path::new(DEFAULT_CONTROL_DIR).join(name)
}

/// An inline private key is as secret as a key file: warn, once the file is
/// known to be valid, when others can read it (not refused: the example
/// configurations are mode 0644 in a fresh clone).
fn warn_if_others_can_read(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "{} holds an inline private_key and is accessible by group or others \
                     (mode {mode:04o}); use private_key_file in real deployments",
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests;
