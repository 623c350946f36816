//! The nodes' configurations go through the daemon's configuration path.
//!
//! A scenario says what each node runs as core's types (its peer, its
//! services). Before a node boots, that is written out as the TOML file an
//! operator would write for `sdt run`, read back with the daemon's own
//! parser and validation ([`sdt::config::Config::parse`]) and turned into
//! core's types with the daemon's own [`sdt::build::peer_config`] and
//! [`sdt::build::service_config`]. The node is built from what comes back.
//! So a scenario cannot run a configuration the daemon would refuse, and a
//! default or a rule the daemon applies on the way (keep-up, limits,
//! defaults of keys left out) applies in the simulation too: the policy the
//! simulation tests is the one that ships (issue 13).
//!
//! What the daemon gives back must be what the scenario asked for: a
//! difference means the two paths disagree, and the run stops there with
//! both forms and the file, rather than test something other than it says.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sdt::build::{peer_config, service_config};
use sdt::config::Config;
use sdt_core::key::PrivateKey;
use sdt_core::link::PeerConfig;
use sdt_core::node::{Peers, Role, ServiceConfig};

/// The name peer `i` has in the node's file.
fn peer_name(i: usize) -> String {
    format!("peer-{i}")
}

/// What a node runs, in core's types.
#[derive(Debug, Clone)]
pub struct Intended<'a> {
    /// The node's private key.
    pub key: &'a [u8; 32],
    /// The link socket's address (`listen` at the top level).
    pub link: SocketAddr,
    /// Its peers, in the order core numbers them ([`PeerId`](sdt_core::link::PeerId) 0, 1, ..).
    pub peers: &'a [PeerConfig],
    /// Its services.
    pub services: &'a [ServiceConfig],
}

/// A node's configuration file as an operator would write it.
pub fn config_text(node: &Intended) -> String {
    let mut t = String::new();
    let key = PrivateKey::from_bytes(*node.key);
    let _ = writeln!(t, "private_key = \"{key}\"");
    let _ = writeln!(t, "listen = \"{}\"", node.link);
    let _ = writeln!(t, "control_socket = false");
    for (i, p) in node.peers.iter().enumerate() {
        let _ = writeln!(t, "\n[[peer]]\nname = \"{}\"", peer_name(i));
        let _ = writeln!(t, "public_key = \"{}\"", p.public_key);
        if let Some(e) = p.endpoint {
            let _ = writeln!(t, "endpoint = \"{e}\"");
        }
        if let Some(psk) = &p.preshared_key {
            let _ = writeln!(t, "preshared_key = \"{psk}\"");
        }
        if let Some(k) = p.persistent_keepalive {
            let _ = writeln!(t, "persistent_keepalive = \"{}\"", duration(k));
        }
        if p.keep_up {
            let _ = writeln!(t, "keep_up = true");
        }
        let _ = writeln!(t, "mtu = {}", p.mtu);
    }
    for s in node.services {
        service_text(&mut t, s);
    }
    t
}

fn service_text(t: &mut String, s: &ServiceConfig) {
    let peer = match s.peers {
        Peers::One(p) => peer_name(usize::from(p.0)),
        Peers::Any => "*".into(),
    };
    let _ = writeln!(t, "\n[[service]]\nid = {}\npeer = \"{peer}\"", s.id.get());
    let mode = match s.role.mode() {
        sdt_core::node::Mode::Direct => "direct",
        sdt_core::node::Mode::Forward => "forward",
        sdt_core::node::Mode::Push => "push",
        sdt_core::node::Mode::Router => "router",
    };
    let _ = writeln!(t, "mode = \"{mode}\"");
    match &s.role {
        Role::Direct { listen, customer } => {
            let _ = writeln!(t, "listen = \"{listen}\"\ntarget = \"{customer}\"");
        }
        Role::ForwardEntry { listen } | Role::PushEntry { listen } => {
            let _ = writeln!(t, "listen = \"{listen}\"");
        }
        Role::ForwardExit { target } | Role::PushExit { target } => {
            let _ = writeln!(t, "target = \"{target}\"");
        }
        // The simulation has no TUN device; the name is only checked.
        Role::RouterEntry => {
            let _ = writeln!(t, "tun = \"sim0\"");
        }
        Role::RouterTunEntry => {
            let _ = writeln!(t, "exit = \"tun\"\ntun = \"sim0\"");
        }
        Role::RouterExit { allow } => {
            let _ = writeln!(t, "allow = [{}]", list(allow.rules().iter()));
        }
        Role::RouterTunExit {
            allow,
            peer_addresses,
        } => {
            let _ = writeln!(
                t,
                "exit = \"tun\"\ntun = \"sim1\"\nallow = [{}]\npeer_addresses = [{}]",
                list(allow.rules().iter()),
                list(peer_addresses.iter())
            );
        }
    }
    if s.role.has_channels() {
        let l = &s.limits;
        let _ = writeln!(t, "max_channels = {}", l.max_channels);
        let _ = writeln!(t, "idle_timeout = \"{}\"", duration(l.idle_timeout));
        let _ = writeln!(
            t,
            "min_idle_for_eviction = \"{}\"",
            duration(l.min_idle_for_eviction)
        );
        let _ = writeln!(t, "new_channels_per_second = {}", l.new_channels_per_second);
        if s.role.half() == sdt_core::node::Half::Exit {
            let _ = writeln!(t, "port_hold = \"{}\"", duration(l.port_hold));
            let _ = writeln!(
                t,
                "answered_port_hold = \"{}\"",
                duration(l.answered_port_hold)
            );
        }
    }
}

/// `"a", "b"` for a TOML array.
fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A duration as the daemon reads it: whole milliseconds where it is
/// one, else nanoseconds.
fn duration(d: Duration) -> String {
    if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

/// `node`'s peers and services as the daemon builds them from its file.
///
/// # Panics
/// When the daemon refuses the file, or gives back other than `node`
/// asked for (the two paths disagree; see the module's doc).
pub fn through_the_daemon(node: &Intended, name: &str) -> (Vec<PeerConfig>, Vec<ServiceConfig>) {
    let text = config_text(node);
    let config = Config::parse(&text, Path::new(&format!("{name}.toml")))
        .unwrap_or_else(|e| panic!("the daemon refuses {name}'s configuration: {e}\n{text}"));
    let peers: Vec<PeerConfig> = config.peers.iter().map(peer_config).collect();
    let services: Vec<ServiceConfig> = config.services.iter().map(service_config).collect();
    let same = |a: &PeerConfig, b: &PeerConfig| {
        a.public_key == b.public_key
            && a.endpoint == b.endpoint
            && a.preshared_key == b.preshared_key
            && a.persistent_keepalive == b.persistent_keepalive
            && a.keep_up == b.keep_up
            && a.mtu == b.mtu
    };
    assert!(
        peers.len() == node.peers.len() && peers.iter().zip(node.peers).all(|(a, b)| same(a, b)),
        "{name}: the daemon builds other peers than the scenario's:\n{:?}\nagainst\n{:?}\nfrom\n{text}",
        peers, node.peers
    );
    assert_eq!(
        services, node.services,
        "{name}: the daemon builds other services than the scenario's, from\n{text}"
    );
    (peers, services)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdt_core::link::PeerId;
    use sdt_core::node::{ChannelLimits, ServiceId};

    fn key(i: u8) -> [u8; 32] {
        [i; 32]
    }

    #[test]
    fn a_forward_exit_with_a_psk_goes_through_the_daemon_unchanged() {
        let mut peer = PeerConfig::new(PrivateKey::from_bytes(key(2)).public_key());
        peer.endpoint = Some("192.168.0.2:7000".parse().unwrap());
        peer.preshared_key = Some(sdt_core::key::PresharedKey::from_bytes([9; 32]));
        let mut service = ServiceConfig::new(
            ServiceId::new(3),
            Peers::One(PeerId(0)),
            Role::ForwardExit {
                target: "192.168.0.9:53".parse().unwrap(),
            },
        );
        service.limits = ChannelLimits {
            max_channels: 3,
            idle_timeout: Duration::from_millis(1500),
            ..ChannelLimits::DEFAULT
        };
        let node = Intended {
            key: &key(1),
            link: "0.0.0.0:7000".parse().unwrap(),
            peers: std::slice::from_ref(&peer),
            services: std::slice::from_ref(&service),
        };
        let (p, s) = through_the_daemon(&node, "x");
        assert_eq!(p[0].endpoint, peer.endpoint);
        assert!(config_text(&node).contains("idle_timeout = \"1500ms\""));
        assert_eq!(s, vec![service]);
    }

    #[test]
    #[should_panic(expected = "the daemon refuses")]
    fn a_configuration_the_daemon_refuses_stops_the_run() {
        let peer = PeerConfig::new(PrivateKey::from_bytes(key(2)).public_key());
        let mut service = ServiceConfig::new(
            ServiceId::new(1),
            Peers::One(PeerId(0)),
            Role::ForwardEntry {
                listen: "0.0.0.0:6000".parse().unwrap(),
            },
        );
        // The daemon refuses a zero idle timeout.
        service.limits.idle_timeout = Duration::ZERO;
        let node = Intended {
            key: &key(1),
            link: "0.0.0.0:7000".parse().unwrap(),
            peers: std::slice::from_ref(&peer),
            services: &[service],
        };
        through_the_daemon(&node, "x");
    }
}
