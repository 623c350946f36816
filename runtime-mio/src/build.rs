//! Turns a validated [`Config`] into core's node: peers, then services.

use std::fmt;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_core::OsRng;
use sdt_core::allow::AllowList;
use sdt_core::link::{PeerConfig, PeerId};
use sdt_core::node::{ChannelLimits, Node, Peers, Role, ServiceConfig, ServiceError, ServiceId};
use sdt_core::Instant;

use crate::config::{Config, Half, Mode, PeerRef, PeerSpec, RouterExit, ServiceSpec};

/// Peers one daemon can hold: a collector serving thousands of pushing
/// nodes is a real use. Each peer costs about 2.3 KB of the node, allocated
/// at start whether configured or not (see the size test below); the
/// per-datagram cost does not depend on the count (core visits only peers
/// with something pending).
pub const MAX_PEERS: usize = 4096;
/// Services one daemon can run.
pub const MAX_SERVICES: usize = 64;
/// Channels of all services together: the table capacity, live and held
/// exit sockets included (a power of two, at most 32,768: core's
/// `ChannelTable`). The config's `max_channels` is checked against it.
pub const CHANNELS: usize = 16384;

/// The daemon's node; push outage buffers (`buffer`) live on the heap.
pub type DaemonNode = Node<ChaCha20Rng, MAX_PEERS, MAX_SERVICES, CHANNELS, Box<[u8]>>;

/// Why a configuration that passed validation still could not become a node.
#[derive(Debug)]
pub enum BuildError {
    /// More peers than [`MAX_PEERS`].
    TooManyPeers,
    /// A service core refused.
    Service {
        /// Its id.
        id: ServiceId,
        /// Why.
        error: ServiceError,
    },
    /// The OS could not seed the random generator.
    Random(rand_core::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::TooManyPeers => write!(f, "more than {MAX_PEERS} peers"),
            BuildError::Service { id, error } => write!(f, "service {id}: {error}"),
            BuildError::Random(e) => write!(f, "no OS randomness: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Builds the node of `config` at `now`, on the heap (it is a few MB: the
/// channel table is sized for [`CHANNELS`]).
pub fn build_node(
    config: &Config,
    now: Instant,
    unix_nanos: u64,
) -> Result<Box<DaemonNode>, BuildError> {
    let rng = ChaCha20Rng::from_rng(OsRng).map_err(BuildError::Random)?;
    let mut node = Box::new(DaemonNode::new(
        config.private_key.clone(),
        rng,
        now,
        unix_nanos,
    ));
    for spec in &config.peers {
        node.add_peer(peer_config(spec), now)
            .map_err(|_| BuildError::TooManyPeers)?;
    }
    for spec in &config.services {
        node.add_service(service_config(spec))
            .map_err(|error| BuildError::Service { id: spec.id, error })?;
    }
    give_push_buffers(&mut node, config)?;
    Ok(node)
}

/// Gives each push entry with `buffer` that has none yet its outage
/// buffer: all of them at start, the added and replaced ones after a
/// reload (a kept service keeps its buffer and what it holds; a changed
/// `buffer` needs a restart).
pub fn give_push_buffers(node: &mut DaemonNode, config: &Config) -> Result<(), BuildError> {
    for spec in &config.services {
        let Some(bytes) = spec.buffer else {
            continue;
        };
        if node.push_buffer_capacity(spec.id).is_some() {
            continue;
        }
        // Zeroed pages come from the OS untouched: the buffer costs memory
        // as it fills, up to `bytes`.
        node.set_push_buffer(spec.id, vec![0u8; bytes].into_boxed_slice())
            .map_err(|error| BuildError::Service { id: spec.id, error })?;
    }
    Ok(())
}

/// Core's view of one `[[peer]]`.
pub fn peer_config(spec: &PeerSpec) -> PeerConfig {
    let mut peer = PeerConfig::new(spec.public_key);
    peer.endpoint = spec.endpoint;
    peer.preshared_key = spec.preshared_key.clone();
    peer.persistent_keepalive = spec.persistent_keepalive;
    // Only what the config says: core adds the links the services call for
    // (its liveness rule, `Node::add_service`).
    peer.keep_up = spec.keep_up;
    peer.mtu = spec.mtu;
    peer
}

/// Core's view of one `[[service]]`. Validation guarantees the keys each
/// mode and half needs are present; a missing one yields an unusable
/// address that core then fails to bind, never a panic.
pub fn service_config(spec: &ServiceSpec) -> ServiceConfig {
    let peers = match spec.peer {
        PeerRef::Named(i) => Peers::One(PeerId(i as u16)),
        PeerRef::Any => Peers::Any,
    };
    let unspecified = || std::net::SocketAddr::from(([0, 0, 0, 0], 0));
    let listen = spec.listen.unwrap_or_else(unspecified);
    let target = spec.target.unwrap_or_else(unspecified);
    let role = match (spec.mode, spec.half) {
        (Mode::Direct, _) => Role::Direct {
            listen,
            customer: target,
        },
        (Mode::Forward, Half::Exit) => Role::ForwardExit { target },
        (Mode::Forward, _) => Role::ForwardEntry { listen },
        (Mode::Push, Half::Exit) => Role::PushExit { target },
        (Mode::Push, _) => Role::PushEntry { listen },
        (Mode::Router, Half::Exit) => {
            let mut allow = AllowList::new();
            for rule in &spec.allow {
                // Validation caps the list at what core holds.
                if allow.push(*rule).is_err() {
                    break;
                }
            }
            match spec.exit {
                RouterExit::Socket => Role::RouterExit { allow },
                RouterExit::Tun => {
                    let mut peer_addresses = heapless::Vec::new();
                    for net in &spec.peer_addresses {
                        // Validation caps this list too.
                        if peer_addresses.push(*net).is_err() {
                            break;
                        }
                    }
                    Role::RouterTunExit {
                        allow,
                        peer_addresses,
                    }
                }
            }
        }
        (Mode::Router, _) if spec.exit == RouterExit::Tun => Role::RouterTunEntry,
        (Mode::Router, _) => Role::RouterEntry,
    };
    let mut config = ServiceConfig::new(spec.id, peers, role);
    config.limits = ChannelLimits {
        max_channels: spec.max_channels,
        idle_timeout: spec.idle_timeout,
        min_idle_for_eviction: spec.min_idle_for_eviction,
        new_channels_per_second: spec.new_channels_per_second,
        port_hold: spec.port_hold,
        answered_port_hold: spec.answered_port_hold,
    };
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const HEAD: &str = "\
        private_key = \"PK3Mg5mtzaZg01iHo6jetW2iRmGw8wcq3R62VpY3V18=\"
        [[peer]]
        name = \"y\"
        public_key = \"ilBDt2h5t5o+gVqwZl1rAVIey7RR5X1XgsRZOIHSCFw=\"
    ";

    fn keeps_y_up(peer_extra: &str, service: &str) -> bool {
        let text = format!("{HEAD}{peer_extra}\n[[service]]\nid = 1\npeer = \"y\"\n{service}");
        let config = Config::parse(&text, Path::new("/nonexistent/x.toml")).unwrap();
        // Kept up: the built node has an initiation to send at once. The
        // node is built on a thread with the daemon loop's stack: a debug
        // build moves it through the stack.
        std::thread::Builder::new()
            .stack_size(crate::daemon::LOOP_STACK)
            .spawn(move || {
                build_node(&config, Instant::ZERO, 0)
                    .unwrap()
                    .link()
                    .wants_transmit()
            })
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn a_push_entry_gets_the_buffer_it_was_given() {
        let text = format!(
            "{HEAD}\n[[service]]\nid = 1\npeer = \"y\"\nmode = \"push\"\n\
             listen = \"127.0.0.1:514\"\nbuffer = \"256KiB\"\n\
             [[service]]\nid = 2\npeer = \"y\"\nmode = \"push\"\nlisten = \"127.0.0.1:515\"\n"
        );
        let config = Config::parse(&text, Path::new("/nonexistent/x.toml")).unwrap();
        let (one, two) = std::thread::Builder::new()
            .stack_size(crate::daemon::LOOP_STACK)
            .spawn(move || {
                let node = build_node(&config, Instant::ZERO, 0).unwrap();
                (
                    node.push_buffer_capacity(ServiceId::new(1)),
                    node.push_buffer_capacity(ServiceId::new(2)),
                )
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(one, Some(256 << 10));
        assert_eq!(two, None);
    }

    #[test]
    fn after_a_reload_added_and_replaced_push_entries_get_their_buffer() {
        let push = |id: u8, port: u16, buffer: &str| {
            format!(
                "\n[[service]]\nid = {id}\npeer = \"y\"\nmode = \"push\"\n\
                 listen = \"127.0.0.1:{port}\"\n{buffer}\n"
            )
        };
        let parse = |services: &str| {
            Config::parse(
                &format!("{HEAD}{services}"),
                Path::new("/nonexistent/x.toml"),
            )
            .unwrap()
        };
        let kb64 = "buffer = \"64KiB\"";
        let old = parse(&format!("{}{}", push(1, 514, kb64), push(3, 516, kb64)));
        // 1 replaced (a new listen), 2 added, 3 kept.
        let new = parse(&format!(
            "{}{}{}",
            push(1, 600, kb64),
            push(2, 515, "buffer = \"128KiB\""),
            push(3, 516, kb64)
        ));
        let capacities = std::thread::Builder::new()
            .stack_size(crate::daemon::LOOP_STACK)
            .spawn(move || {
                let mut node = build_node(&old, Instant::ZERO, 0).unwrap();
                let peers: Vec<PeerConfig> = new.peers.iter().map(peer_config).collect();
                let services: Vec<ServiceConfig> =
                    new.services.iter().map(service_config).collect();
                let key = new.private_key.public_key();
                node.reload(Instant::ZERO, &key, &peers, &services).unwrap();
                let before = [1, 2, 3].map(|id| node.push_buffer_capacity(ServiceId::new(id)));
                give_push_buffers(&mut node, &new).unwrap();
                let after = [1, 2, 3].map(|id| node.push_buffer_capacity(ServiceId::new(id)));
                (before, after)
            })
            .unwrap()
            .join()
            .unwrap();
        let k = 1024;
        assert_eq!(capacities.0, [None, None, Some(64 * k)]);
        assert_eq!(capacities.1, [Some(64 * k), Some(128 * k), Some(64 * k)]);
    }

    #[test]
    fn reverse_services_keep_the_link_up_without_being_told() {
        let endpoint = "endpoint = \"127.0.0.1:9\"";
        let forward_exit = "mode = \"forward\"\ntarget = \"127.0.0.1:53\"";
        let push_exit = "mode = \"push\"\ntarget = \"127.0.0.1:514\"";
        let router_exit = "mode = \"router\"\nallow = [\"10.0.0.0/8:53\"]";
        let direct = "mode = \"direct\"\nlisten = \"127.0.0.1:7\"\ntarget = \"127.0.0.1:8\"";
        let forward_entry = "mode = \"forward\"\nlisten = \"127.0.0.1:53\"";
        // The peer holds the entry (or can send first): keep up.
        for service in [forward_exit, push_exit, router_exit, direct] {
            assert!(keeps_y_up(endpoint, service), "{service}");
        }
        // This node holds the entry: its own customers bring the link up.
        assert!(!keeps_y_up(endpoint, forward_entry));
        assert!(keeps_y_up(
            &format!("{endpoint}\nkeep_up = true"),
            forward_entry
        ));
        // No endpoint: nothing to bring up; the peer has to come to us.
        assert!(!keeps_y_up("", forward_exit));
    }

    /// The node is allocated whole at start: its size is the daemon's
    /// fixed memory. Printed for the docs; bounded so a change that makes
    /// peers much dearer is noticed.
    #[test]
    fn node_size_per_peer() {
        type OnePeer = Node<ChaCha20Rng, 1, MAX_SERVICES, CHANNELS, Box<[u8]>>;
        let full = std::mem::size_of::<DaemonNode>();
        let base = std::mem::size_of::<OnePeer>();
        let per_peer = (full - base) / (MAX_PEERS - 1);
        println!(
            "node: {full} B with room for {MAX_PEERS} peers, {base} B for one; {per_peer} B per peer"
        );
        assert!(per_peer <= 2560, "{per_peer} B per peer");
    }
}
