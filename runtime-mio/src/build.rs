//! Turns a validated [`Config`] into core's node: peers, then services.

use std::fmt;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_core::OsRng;
use sdt_core::allow::AllowList;
use sdt_core::link::{PeerConfig, PeerId};
use sdt_core::node::{ChannelLimits, Node, Peers, Role, ServiceConfig, ServiceError};
use sdt_core::Instant;

use crate::config::{Config, Half, Mode, PeerRef, ServiceSpec, MAX_CHANNELS};

/// Peers one daemon can hold.
pub const MAX_PEERS: usize = 256;
/// Services one daemon can run.
pub const MAX_SERVICES: usize = 64;
/// Channels of all services together: the table capacity.
pub const CHANNELS: usize = MAX_CHANNELS as usize;

/// The daemon's node.
pub type DaemonNode = Node<ChaCha20Rng, MAX_PEERS, MAX_SERVICES, CHANNELS>;

/// Why a configuration that passed validation still could not become a node.
#[derive(Debug)]
pub enum BuildError {
    /// More peers than [`MAX_PEERS`].
    TooManyPeers,
    /// A service core refused.
    Service {
        /// Its id.
        id: u8,
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
        let mut peer = PeerConfig::new(spec.public_key);
        peer.endpoint = spec.endpoint;
        peer.preshared_key = spec.preshared_key.clone();
        peer.persistent_keepalive = spec.persistent_keepalive;
        peer.keep_up = spec.keep_up;
        node.add_peer(peer, now)
            .map_err(|_| BuildError::TooManyPeers)?;
    }
    for spec in &config.services {
        node.add_service(service_config(spec))
            .map_err(|error| BuildError::Service { id: spec.id, error })?;
    }
    Ok(node)
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
            Role::RouterExit { allow }
        }
        (Mode::Router, _) => Role::RouterEntry,
    };
    let mut config = ServiceConfig::new(spec.id, peers, role);
    config.limits = ChannelLimits {
        max_channels: spec.max_channels,
        idle_timeout: spec.idle_timeout,
        min_idle_for_eviction: spec.min_idle_for_eviction,
        new_channels_per_second: spec.new_channels_per_second,
    };
    config
}
