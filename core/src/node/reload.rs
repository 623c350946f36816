//! Reload: the difference between the running configuration and a new one,
//! applied in place, like `wg syncconf`.
//!
//! The new configuration is checked whole first; nothing changes unless all
//! of it is valid ([`ReloadError`]). Then:
//!
//! - a peer is matched by its public key. One in both keeps its slot, its
//!   sessions and its channels; a changed preshared key makes it handshake
//!   again ([`Link::update_peer`](crate::link::Link::update_peer)); other
//!   changes (endpoint, keepalive, MTU) apply at once. A peer only in the
//!   old configuration is retired: its sessions end, its channels close and
//!   its key is no longer accepted. A new one takes a retired slot or a new
//!   one. Peer ids of kept peers never move.
//! - a service is matched by its id. One configured alike keeps its
//!   channels and its socket; one whose channel limits alone changed takes
//!   the new limits in place; any other change removes and adds it again.
//!   A removed service's channels close at once (counted in
//!   [`ReloadSummary::channels_closed`]), its sockets are closed through
//!   [`Node::poll_action`] and its staged datagrams are dropped. An added
//!   service asks for its socket through [`Node::poll_action`].
//!
//! No heap: peers are slots of the link's fixed table (retired ones are
//! reused), services stay in the node's fixed list, and a service moved to
//! fill a removed one's place has its channels renamed in place
//! ([`ChannelTable::move_service`](crate::channel::ChannelTable::move_service)).

use rand_core::{CryptoRng, RngCore};

use super::{Node, Peers, ServiceConfig, ServiceError, SocketId};
use crate::channel::{Fate, ServiceIndex};
use crate::key::PublicKey;
use crate::link::{ConfigError, PeerConfig, PeerId};
use crate::outbox::Storage;
use crate::time::Instant;

/// Why a reload was refused. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadError {
    /// The node's own key differs: only a restart changes it.
    OwnKeyChanged,
    /// The new peer at this position is invalid.
    Peer {
        /// Position in the new peer list.
        index: usize,
        /// What is wrong with it.
        error: ConfigError,
    },
    /// The new service at this position is invalid.
    Service {
        /// Position in the new service list.
        index: usize,
        /// What is wrong with it.
        error: ServiceError,
    },
}

impl core::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReloadError::OwnKeyChanged => {
                f.write_str("the node's private key changed: a restart is needed")
            }
            ReloadError::Peer { index, error } => write!(f, "peer {}: {error:?}", index + 1),
            ReloadError::Service { index, error } => write!(f, "service {}: {error}", index + 1),
        }
    }
}

/// What a reload changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Peers new in the configuration.
    pub peers_added: usize,
    /// Peers gone from it: sessions ended.
    pub peers_removed: usize,
    /// Peers whose preshared key changed: they handshake again.
    pub peers_rekeyed: usize,
    /// Peers whose other settings changed, sessions kept.
    pub peers_updated: usize,
    /// Services new in the configuration.
    pub services_added: usize,
    /// Services gone from it.
    pub services_removed: usize,
    /// Services removed and added again with a new configuration.
    pub services_replaced: usize,
    /// Services whose channel limits alone changed, channels kept.
    pub services_updated: usize,
    /// Channels closed because their service or peer went away.
    pub channels_closed: usize,
}

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize, B: Storage>
    Node<R, P, S, C, B>
{
    /// Applies a new configuration: `public_key` is the node's own (it
    /// cannot change live), `peers` the new peer list and `services` the
    /// new services, whose [`Peers::One`] name a position in `peers` (not a
    /// running peer id). All or nothing: see the `node::reload` module docs.
    pub fn reload(
        &mut self,
        now: Instant,
        public_key: &PublicKey,
        peers: &[PeerConfig],
        services: &[ServiceConfig],
    ) -> Result<ReloadSummary, ReloadError> {
        let slots = self.plan_peers(public_key, peers)?;
        self.check_services(&slots, services)?;
        let mut summary = ReloadSummary::default();

        // Services that go, or change beyond their limits, leave first.
        let mut si = 0;
        while si < self.services.len() {
            let running = &self.services[si].config;
            let new = services.iter().find(|s| s.id == running.id);
            // Its peer must be the same peer, not a new one in its slot.
            let same_peer_kept = new.is_some_and(|s| match s.peers {
                Peers::One(p) => self
                    .link
                    .peer_config(PeerId(slots[usize::from(p.0)]))
                    .is_some_and(|c| c.public_key == peers[usize::from(p.0)].public_key),
                Peers::Any => true,
            });
            let new = new.map(|s| translated(s, &slots));
            match new {
                Some(new) if same_peer_kept && same_but_limits(&new, running) => {
                    if new.limits != running.limits {
                        self.services[si].config.limits = new.limits;
                        summary.services_updated += 1;
                    }
                    si += 1;
                }
                replaced => {
                    summary.channels_closed += self.remove_service_at(si);
                    if replaced.is_some() {
                        summary.services_replaced += 1;
                    } else {
                        summary.services_removed += 1;
                    }
                }
            }
        }

        // Peers: retire the gone, update the kept, place the new.
        for old in 0..self.link.peer_count() {
            let id = PeerId(old as u16);
            if self.link.is_retired(id) || slots.contains(&id.0) {
                continue;
            }
            summary.channels_closed += self.count_peer_channels(id);
            self.drop_peer_channels(now, id);
            self.drop_staged(id);
            self.link.retire_peer(id);
            summary.peers_removed += 1;
        }
        for (index, (config, &slot)) in peers.iter().zip(slots.iter()).enumerate() {
            let id = PeerId(slot);
            match self.link.peer_config(id) {
                Some(running) if running.public_key == config.public_key => {
                    // A running peer's `keep_up` includes what its services
                    // imply, and unchanged services are not added again:
                    // the new configuration is compared, and applied, with
                    // the same implication (`services` name peers by index).
                    let mut want = config.clone();
                    want.keep_up |= services.iter().any(|s| s.keeps_up(PeerId(index as u16)));
                    if !same_peer(running, &want) {
                        if self.link.update_peer(id, want, now) {
                            summary.peers_rekeyed += 1;
                        } else {
                            summary.peers_updated += 1;
                        }
                    }
                }
                _ if usize::from(slot) < self.link.peer_count() => {
                    self.link.replace_peer(id, config.clone(), now);
                    self.peer_new_channels[usize::from(slot)] = crate::rate::TokenBucket::new();
                    summary.peers_added += 1;
                }
                _ => {
                    // `plan_peers` gave it the next new slot: it fits.
                    if self.add_peer(config.clone(), now).is_ok() {
                        summary.peers_added += 1;
                    }
                }
            }
        }

        // New services, and replaced ones again.
        for s in services {
            if self.service_index(s.id).is_none() {
                let (word, bit) = (s.id.slot() / 64, 1u64 << (s.id.slot() % 64));
                self.unknown_reported[word] &= !bit;
                // Checked above: it fits.
                if self.add_service(translated(s, &slots)).is_ok() {
                    summary.services_added += 1;
                }
            }
        }
        summary.services_added -= summary.services_replaced.min(summary.services_added);
        // Updated peers took their configured keep-up; services that need
        // the link up ask again.
        for si in 0..self.services.len() {
            self.keep_up_for(si);
        }
        Ok(summary)
    }

    /// The slot each new peer takes: its running slot if its key is known,
    /// else a retired slot, a slot freed by this reload, or a new one.
    fn plan_peers(
        &self,
        public_key: &PublicKey,
        peers: &[PeerConfig],
    ) -> Result<heapless::Vec<u16, P>, ReloadError> {
        if public_key != self.link.public_key() {
            return Err(ReloadError::OwnKeyChanged);
        }
        let mut slots: heapless::Vec<u16, P> = heapless::Vec::new();
        let too_many = |index| ReloadError::Peer {
            index,
            error: ConfigError::TooManyPeers,
        };
        for (index, config) in peers.iter().enumerate() {
            self.link
                .check_peer(config)
                .map_err(|error| ReloadError::Peer { index, error })?;
            if peers[..index]
                .iter()
                .any(|p| p.public_key == config.public_key)
            {
                return Err(ReloadError::Peer {
                    index,
                    error: ConfigError::DuplicatePeer,
                });
            }
            let slot = self.link.peer_by_key(&config.public_key).map(|p| p.0);
            slots
                .push(slot.unwrap_or(u16::MAX))
                .map_err(|_| too_many(index))?;
        }
        // Free: retired slots and running peers not kept, then new slots.
        let count = self.link.peer_count() as u32;
        let kept = slots.clone();
        let mut free = (0..count)
            .chain(count..P.min(u16::MAX as usize) as u32)
            .map(|s| s as u16)
            .filter(|s| !kept.contains(s));
        for (index, slot) in slots.iter_mut().enumerate() {
            if *slot == u16::MAX {
                *slot = free.next().ok_or_else(|| too_many(index))?;
            }
        }
        Ok(slots)
    }

    /// Checks the new services as `add_service` would, against the new
    /// peers.
    fn check_services(&self, slots: &[u16], services: &[ServiceConfig]) -> Result<(), ReloadError> {
        for (index, s) in services.iter().enumerate() {
            let fail = |error| ReloadError::Service { index, error };
            if index >= S {
                return Err(fail(ServiceError::TooManyServices));
            }
            if services[..index].iter().any(|o| o.id == s.id) {
                return Err(fail(ServiceError::DuplicateId));
            }
            if let Peers::One(p) = s.peers {
                if usize::from(p.0) >= slots.len() {
                    return Err(fail(ServiceError::UnknownPeer));
                }
            }
            super::check_service(s, C).map_err(fail)?;
            if services[..index]
                .iter()
                .any(|o| super::addresses_overlap(o, s))
            {
                return Err(fail(ServiceError::OverlappingPeerAddresses));
            }
        }
        Ok(())
    }

    /// Removes the service at `si`: its channels and sockets close at once,
    /// its staged datagrams are dropped, and the last service takes its
    /// place. Returns the channels closed.
    fn remove_service_at(&mut self, si: usize) -> usize {
        let index = ServiceIndex::at(si);
        let mut closed = 0;
        let closes = &mut self.closes;
        self.channels.retain(
            |_, c| {
                if c.service == index {
                    Fate::Remove
                } else {
                    Fate::Keep
                }
            },
            |id, channel, _| {
                closed += 1;
                if channel.client.is_none() {
                    closes.push_back(SocketId::Channel(id)).ok();
                }
            },
        );
        self.channels.release_service(index, |id, _| {
            closes.push_back(SocketId::Channel(id)).ok();
        });
        // A socket not opened yet must not be: its channel is gone.
        let channels = &self.channels;
        for _ in 0..self.opens.len() {
            if let Some(action) = self.opens.pop_front() {
                let live = match action {
                    super::Action::Connect {
                        socket: SocketId::Channel(id),
                        ..
                    }
                    | super::Action::ConnectEcho {
                        socket: SocketId::Channel(id),
                        ..
                    } => channels.get(id).is_some() || channels.held(id).is_some(),
                    _ => true,
                };
                if live {
                    self.opens.push_back(action).ok();
                }
            }
        }
        let service = &self.services[si];
        let id = service.config.id;
        if service.socket_pending {
            self.sockets_pending -= 1;
        } else if service.config.role.own_socket().is_some() {
            self.service_closes.push_back(SocketId::Service(id)).ok();
        }
        // The outbox's storage goes with the service (datagrams still in it
        // were for a service that no longer exists).
        let had_outbox = service.push.outbox.is_some();
        self.drop_staged_service(id);
        if had_outbox {
            self.outboxes -= 1;
        }
        self.services.swap_remove(si);
        self.by_id[id.slot()] = 0;
        if si < self.services.len() {
            let last = ServiceIndex::at(self.services.len());
            self.channels.move_service(last, index);
            let moved = self.services[si].config.id;
            // At most 255 services (SERVICES_FIT): the position fits a byte.
            self.by_id[moved.slot()] = (si + 1) as u8;
        }
        closed
    }

    fn count_peer_channels(&self, peer: PeerId) -> usize {
        self.channels
            .iter()
            .filter(|(_, c)| c.peer == peer.0)
            .count()
    }
}

/// `s` with its peer named by running slot instead of new position.
fn translated(s: &ServiceConfig, slots: &[u16]) -> ServiceConfig {
    let mut s = s.clone();
    if let Peers::One(p) = s.peers {
        if let Some(&slot) = slots.get(usize::from(p.0)) {
            s.peers = Peers::One(PeerId(slot));
        }
    }
    s
}

/// Whether two service configurations differ at most in their limits.
fn same_but_limits(a: &ServiceConfig, b: &ServiceConfig) -> bool {
    a.id == b.id && a.peers == b.peers && a.role == b.role
}

/// Whether a peer's configuration is unchanged (same key assumed).
fn same_peer(a: &PeerConfig, b: &PeerConfig) -> bool {
    a.preshared_key == b.preshared_key
        && a.endpoint == b.endpoint
        && a.persistent_keepalive == b.persistent_keepalive
        && a.keep_up == b.keep_up
        && a.mtu == b.mtu
}
