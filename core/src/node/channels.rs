//! The channel mechanics forward and router modes share: numbering at the
//! entry, opening at the exit, the table limit with LRU eviction, idle
//! expiry, and dropping a peer's channels when its node restarts.

use core::net::SocketAddr;

use rand_core::{CryptoRng, RngCore};

use super::{Action, Node, Peers, ServiceDrop, SocketId};
use crate::channel::{Channel, ChannelId};
use crate::link::PeerId;
use crate::time::Instant;

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize> Node<R, P, S, C> {
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
        let service = si as u8;
        if let Some(id) = self.channels.find_by_client(service, client, destination) {
            self.channels.touch(id, now);
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
            .find_by_number(si as u8, peer.0, number)
            .ok_or(ServiceDrop::UnknownChannel)?;
        self.channels.touch(id, now);
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
            self.drop_peer_channels(peer);
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
            service: si as u8,
            peer: peer.0,
            number,
            client: None,
            destination,
            created: now,
            last_active: now,
        };
        let id = self.open_channel(now, si, channel)?;
        let socket = SocketId::Channel(id);
        self.opens
            .push_back(Action::Connect { socket, remote })
            .ok();
        Ok(id)
    }

    /// Inserts a channel, first evicting the service's least recently used
    /// one if the table is full and that one has been idle long enough.
    fn open_channel(
        &mut self,
        now: Instant,
        si: usize,
        channel: Channel,
    ) -> Result<ChannelId, ServiceDrop> {
        let limits = self.services[si].config.limits;
        let service = si as u8;
        let full = self.channels.service_len(service) >= usize::from(limits.max_channels)
            || self.channels.len() >= self.channels.capacity();
        if full {
            match self.channels.oldest(service) {
                Some((old, last)) if now.saturating_since(last) >= limits.min_idle_for_eviction => {
                    self.close_channel(old);
                    self.services[si].stats.channels_evicted += 1;
                }
                _ => return Err(ServiceDrop::TableFull),
            }
        }
        let id = self
            .channels
            .insert(channel)
            .map_err(|_| ServiceDrop::TableFull)?;
        self.services[si].stats.channels_created += 1;
        Ok(id)
    }

    /// Removes a channel; an exit channel's socket is closed.
    fn close_channel(&mut self, id: ChannelId) {
        if let Some(channel) = self.channels.remove(id) {
            if channel.client.is_none() {
                // Holds C entries, one per channel: full only if the runtime
                // stopped draining actions.
                self.closes.push_back(SocketId::Channel(id)).ok();
            }
        }
    }

    /// Closes the channels idle for their service's `idle_timeout`.
    pub(super) fn expire_channels(&mut self, now: Instant) {
        for si in 0..self.services.len() {
            let idle_timeout = self.services[si].config.limits.idle_timeout;
            while let Some((id, last)) = self.channels.oldest(si as u8) {
                if now.saturating_since(last) < idle_timeout || self.closes.is_full() {
                    break;
                }
                self.close_channel(id);
                self.services[si].stats.channels_expired += 1;
            }
        }
    }

    /// Drops every channel of `peer`, of every service: its node restarted
    /// (or ours renewed its incarnation), so no number it used means the
    /// same any more.
    pub(super) fn drop_peer_channels(&mut self, peer: PeerId) {
        let services = &mut self.services;
        let closes = &mut self.closes;
        self.channels.retain(
            |_, channel| channel.peer != peer.0,
            |id, channel| {
                if let Some(s) = services.get_mut(usize::from(channel.service)) {
                    s.stats.channels_closed += 1;
                }
                if channel.client.is_none() {
                    closes.push_back(SocketId::Channel(id)).ok();
                }
            },
        );
    }
}
