//! The channel mechanics forward and router modes share: numbering at the
//! entry, opening at the exit, the table limit with LRU eviction, idle
//! expiry, dropping a peer's channels when its node restarts, and the exit
//! port rule.
//!
//! # The exit port rule
//!
//! An exit channel's socket is a NAT mapping: its local port is what the
//! target's replies find it by. When the channel ends (idle expiry,
//! eviction, its peer's restart), the port must not serve another channel
//! until replies to the old one can no longer be expected, or a slow
//! target's late reply reaches a new client. Core decides: an ended exit
//! channel whose last datagram is more recent than its service's
//! [`port_hold`](super::ChannelLimits::port_hold) keeps its socket open,
//! held in the channel table (see [`crate::channel`]), until `last_active +
//! port_hold`; only then does [`Node::poll_action`] ask the runtime to close
//! it. Whatever arrives on a held socket is dropped as
//! [`ServiceDrop::LateReply`]. Held sockets take table slots, so live and
//! held sockets together never exceed the table's capacity; when every slot
//! is live or held, a new channel is refused as [`ServiceDrop::PortsHeld`]
//! rather than a port released early.

use core::net::SocketAddr;

use rand_core::{CryptoRng, RngCore};

use super::{Action, ChannelLimits, Node, Peers, ServiceDrop, SocketId};
use crate::channel::{Channel, ChannelId, Fate, ServiceIndex, Way};
use crate::link::PeerId;
use crate::outbox::Storage;
use crate::time::Instant;

/// Until when the socket of `channel`, ending at `now`, must be held under
/// its service's `limits` ([`ChannelLimits::hold_of`]); `None` if it may
/// close at once (an entry channel has no socket; an exit channel idle for
/// its hold expects no more replies).
fn port_release(channel: &Channel, limits: &ChannelLimits, now: Instant) -> Option<Instant> {
    if channel.client.is_some() {
        return None;
    }
    let at = channel.last_active.saturating_add(limits.hold_of(channel));
    (at > now).then_some(at)
}

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize, B: Storage>
    Node<R, P, S, C, B>
{
    /// The one peer of an entry or direct service (`add_service` makes sure
    /// there is one).
    pub(super) fn sole_peer(&self, si: usize) -> Result<PeerId, ServiceDrop> {
        match self.services[si].config.peers {
            Peers::One(peer) => Ok(peer),
            Peers::Any => Err(ServiceDrop::WrongPeer),
        }
    }

    /// The entry's channel for `client` (and, in router mode, `destination`),
    /// opened if new. Returns its number and the peer it goes to.
    pub(super) fn entry_channel(
        &mut self,
        now: Instant,
        si: usize,
        client: SocketAddr,
        destination: Option<SocketAddr>,
    ) -> Result<(u32, PeerId), ServiceDrop> {
        let peer = self.sole_peer(si)?;
        let service = ServiceIndex::at(si);
        if let Some(id) = self.channels.find_by_client(service, client, destination) {
            self.channels.touch(id, now, Way::ToPeer);
            let number = self.channels.get(id).map(|c| c.number);
            return number.map(|n| (n, peer)).ok_or(ServiceDrop::UnknownChannel);
        }
        let rate = self.services[si].config.limits.new_channels_per_second;
        if !self.services[si].new_channels.take(now, rate, rate) {
            return Err(ServiceDrop::ChannelRateLimited);
        }
        let number = self.next_number(now, si, peer)?;
        self.open_channel(
            now,
            si,
            Channel {
                service,
                peer: peer.0,
                number,
                client: Some(client),
                destination,
                created: now,
                last_active: now,
                to_peer: 1,
                from_peer: 0,
            },
        )?;
        Ok((number, peer))
    }

    /// The entry channel a reply on `number` from `peer` belongs to, marked
    /// active: its (client, destination).
    pub(super) fn entry_reply_channel(
        &mut self,
        now: Instant,
        si: usize,
        peer: PeerId,
        number: u32,
    ) -> Result<(SocketAddr, Option<SocketAddr>), ServiceDrop> {
        let id = self
            .channels
            .find_by_number(ServiceIndex::at(si), peer.0, number)
            .ok_or(ServiceDrop::UnknownChannel)?;
        self.channels.touch(id, now, Way::FromPeer);
        let channel = self.channels.get(id).ok_or(ServiceDrop::UnknownChannel)?;
        let client = channel.client.ok_or(ServiceDrop::UnknownChannel)?;
        Ok((client, channel.destination))
    }

    /// A channel number never given out before in this link incarnation.
    /// When a service has used all 2^32, the node renews its incarnation
    /// towards the peer: both sides drop every channel, numbering restarts,
    /// and this datagram is dropped while the new handshake runs.
    fn next_number(&mut self, now: Instant, si: usize, peer: PeerId) -> Result<u32, ServiceDrop> {
        let s = &mut self.services[si];
        if s.next_number == u32::MAX {
            self.link.renew_incarnation(peer, now);
            self.drop_peer_channels(now, peer);
            self.drop_staged(peer);
            for s in self.services.iter_mut() {
                if s.config.peers == Peers::One(peer) {
                    s.next_number = 0;
                }
            }
            return Err(ServiceDrop::NoSession);
        }
        s.next_number += 1;
        Ok(s.next_number - 1)
    }

    /// Opens an exit channel for a frame with a new number, and asks the
    /// runtime for its socket connected to `remote`.
    pub(super) fn open_exit_channel(
        &mut self,
        now: Instant,
        si: usize,
        peer: PeerId,
        number: u32,
        destination: Option<SocketAddr>,
        remote: SocketAddr,
    ) -> Result<ChannelId, ServiceDrop> {
        if self.opens.is_full() {
            // The runtime did not carry out earlier actions.
            return Err(ServiceDrop::SocketFailed);
        }
        let rate = self.services[si].config.limits.new_channels_per_second;
        let bucket = self.peer_new_channels.get_mut(usize::from(peer.0));
        if !bucket.is_some_and(|b| b.take(now, rate, rate)) {
            return Err(ServiceDrop::ChannelRateLimited);
        }
        let channel = Channel {
            service: ServiceIndex::at(si),
            peer: peer.0,
            number,
            client: None,
            destination,
            created: now,
            last_active: now,
            to_peer: 0,
            from_peer: 1,
        };
        let id = self.open_channel(now, si, channel)?;
        let socket = SocketId::Channel(id);
        // Port 0 names an echo flow's destination (no UDP datagram has it).
        let action = if remote.port() == 0 {
            Action::ConnectEcho {
                socket,
                remote: remote.ip(),
            }
        } else {
            Action::Connect { socket, remote }
        };
        self.opens.push_back(action).ok();
        Ok(id)
    }

    /// Inserts a channel, first evicting one if the service or the table
    /// is full: the service's least recently used one if it has been idle
    /// long enough, else its least recently used answered one (see
    /// [`ChannelLimits::min_idle_for_eviction`]). A full table is never
    /// relieved by evicting a channel whose socket would only be held (that
    /// frees no slot).
    fn open_channel(
        &mut self,
        now: Instant,
        si: usize,
        channel: Channel,
    ) -> Result<ChannelId, ServiceDrop> {
        self.release_ports(now);
        let limits = self.services[si].config.limits;
        let service = ServiceIndex::at(si);
        let service_full = self.channels.service_len(service) >= usize::from(limits.max_channels);
        let table_full = !self.channels.has_free_slot();
        let no_room = if table_full && self.channels.held_len() > 0 {
            ServiceDrop::PortsHeld
        } else {
            ServiceDrop::TableFull
        };
        if service_full || table_full {
            let (oldest, last) = self.channels.oldest(service).ok_or(no_room)?;
            let old = if now.saturating_since(last) >= limits.min_idle_for_eviction {
                oldest
            } else {
                self.channels.oldest_answered(service).ok_or(no_room)?.0
            };
            let frees_slot = self
                .channels
                .get(old)
                .is_some_and(|c| port_release(c, &limits, now).is_none());
            if table_full && !frees_slot {
                return Err(no_room);
            }
            self.close_channel(now, old);
            self.services[si].stats.channels_evicted += 1;
        }
        let id = self.channels.insert(channel).map_err(|_| no_room)?;
        self.services[si].stats.channels_created += 1;
        Ok(id)
    }

    /// Ends a channel at `now`: an exit channel's socket is held under the
    /// port rule, or closed.
    fn close_channel(&mut self, now: Instant, id: ChannelId) {
        let Some(channel) = self.channels.get(id) else {
            return;
        };
        let limits = &self.services[channel.service.get()].config.limits;
        if let Some(release_at) = port_release(channel, limits, now) {
            self.channels.hold(id, release_at);
        } else if let Some(channel) = self.channels.remove(id) {
            if channel.client.is_none() {
                // Holds C entries, one per slot: full only if the runtime
                // stopped draining actions.
                self.closes.push_back(SocketId::Channel(id)).ok();
            }
        }
    }

    /// Closes the sockets whose port hold is over.
    pub(super) fn release_ports(&mut self, now: Instant) {
        let closes = &mut self.closes;
        self.channels.release_due(now, |id, _| {
            closes.push_back(SocketId::Channel(id)).ok();
        });
    }

    /// Closes the channels idle for their service's `idle_timeout`, and the
    /// sockets whose port hold is over.
    pub(super) fn expire_channels(&mut self, now: Instant) {
        self.release_ports(now);
        for si in 0..self.services.len() {
            let idle_timeout = self.services[si].config.limits.idle_timeout;
            while let Some((id, last)) = self.channels.oldest(ServiceIndex::at(si)) {
                if now.saturating_since(last) < idle_timeout || self.closes.is_full() {
                    break;
                }
                self.close_channel(now, id);
                self.services[si].stats.channels_expired += 1;
            }
        }
    }

    /// Drops every channel of `peer`, of every service: its node restarted
    /// (or ours renewed its incarnation), so no number it used means the
    /// same any more. Exit sockets fall under the port rule like any other.
    pub(super) fn drop_peer_channels(&mut self, now: Instant, peer: PeerId) {
        let limits: heapless::Vec<ChannelLimits, S> =
            self.services.iter().map(|s| s.config.limits).collect();
        let services = &mut self.services;
        let closes = &mut self.closes;
        self.channels.retain(
            |_, channel| {
                if channel.peer != peer.0 {
                    return Fate::Keep;
                }
                let release = limits
                    .get(channel.service.get())
                    .and_then(|l| port_release(channel, l, now));
                match release {
                    Some(at) => Fate::Hold(at),
                    None => Fate::Remove,
                }
            },
            |id, channel, fate| {
                if let Some(s) = services.get_mut(channel.service.get()) {
                    s.stats.channels_closed += 1;
                }
                if fate == Fate::Remove && channel.client.is_none() {
                    closes.push_back(SocketId::Channel(id)).ok();
                }
            },
        );
    }
}
