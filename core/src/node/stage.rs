//! Datagrams waiting for the link, as WireGuard keeps packets while its
//! handshake runs: a customer's first datagram should not be lost because
//! the link was down when it came.
//!
//! A datagram that finds no session is kept here, sealed-ready (service
//! header and payload), if it is small enough and the link is starting a
//! handshake with its peer; it goes out from [`Node::poll_transmit`] once
//! the session is up. The stage holds [`STAGE_SLOTS`] datagrams of up to
//! [`STAGE_BYTES`] for all peers together; when it is full the oldest is
//! dropped. Whatever is dropped from it (full, the handshake gave up, the
//! peer restarted) is counted as [`ServiceDrop::NoSession`] and reported to
//! the runtime's [`Io::dropped`](super::Io::dropped) by the next `flush`.

use heapless::Deque;
use rand_core::{CryptoRng, RngCore};

use super::{Node, ServiceDrop, ServiceId};
use crate::link::{PeerId, SendError, Transmit};
use crate::outbox::Storage;
use crate::time::Instant;
use crate::wire::DataPacket;

/// Datagrams the stage holds, for all peers.
pub const STAGE_SLOTS: usize = 4;
/// Largest plaintext (service header and payload) the stage holds: what one
/// link frame of the default MTU carries over IPv4, so that every datagram
/// a default link carries may wait for the handshake (see [`crate::mtu`]).
pub const STAGE_BYTES: usize = crate::mtu::DEFAULT_LINK_MTU as usize
    - crate::mtu::IPV4_HEADER_LEN
    - crate::mtu::UDP_HEADER_LEN
    - DataPacket::<&[u8]>::OVERHEAD;
/// A `poll_transmit` buffer of this size can take any staged datagram.
pub const TRANSMIT_BUFFER: usize = DataPacket::<&[u8]>::OVERHEAD + STAGE_BYTES;

/// One datagram waiting for its peer's session.
pub(super) struct Staged {
    peer: PeerId,
    /// The service's id, for its counters.
    service: ServiceId,
    payload_len: u16,
    len: u16,
    plaintext: [u8; STAGE_BYTES],
}

/// The waiting datagrams, oldest first.
pub(super) type Stage = Deque<Staged, STAGE_SLOTS>;

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize, B: Storage>
    Node<R, P, S, C, B>
{
    /// Keeps `plaintext` (of which `payload_len` bytes are the customer's)
    /// for `peer` if it fits and a handshake is coming; false if not.
    pub(super) fn stage(
        &mut self,
        now: Instant,
        peer: PeerId,
        service: ServiceId,
        plaintext: &[u8],
        payload_len: usize,
    ) -> bool {
        let handshaking = self
            .link
            .peer(peer, now)
            .is_some_and(|p| p.endpoint.is_some());
        if !handshaking || plaintext.len() > STAGE_BYTES {
            return false;
        }
        if self.stage.is_full() {
            if let Some(old) = self.stage.pop_front() {
                self.count_stage_drop(old.service);
            }
        }
        let mut entry = Staged {
            peer,
            service,
            payload_len: payload_len as u16,
            len: plaintext.len() as u16,
            plaintext: [0; STAGE_BYTES],
        };
        entry.plaintext[..plaintext.len()].copy_from_slice(plaintext);
        self.stage.push_back(entry).is_ok()
    }

    /// Seals the oldest staged datagram whose peer now has a session into
    /// `buf`. One that does not fit `buf` waits for a larger one.
    pub(super) fn poll_staged(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        for _ in 0..self.stage.len() {
            let entry = self.stage.pop_front()?;
            let len = usize::from(entry.len);
            let fits = buf.len() >= len + DataPacket::<&[u8]>::OVERHEAD;
            if !fits || !self.link.is_up(entry.peer, now) {
                self.stage.push_back(entry).ok();
                continue;
            }
            if !self.staged_fits(entry.peer, len) {
                // The peer's endpoint moved to IPv6 while it waited.
                if let Some(s) = self
                    .services
                    .iter_mut()
                    .find(|s| s.config.id == entry.service)
                {
                    s.stats.drops.add(ServiceDrop::TooBig);
                }
                continue;
            }
            let start = DataPacket::<&[u8]>::HEADER_LEN;
            buf[start..start + len].copy_from_slice(&entry.plaintext[..len]);
            match self.link.seal(now, entry.peer, buf, len) {
                Ok(t) => {
                    if let Some(si) = self.service_index(entry.service) {
                        let s = &mut self.services[si];
                        s.stats.to_peer.add(usize::from(entry.payload_len));
                    }
                    return Some(t);
                }
                Err(SendError::NoSession | SendError::UnknownPeer | SendError::BufferTooSmall) => {
                    self.count_stage_drop(entry.service);
                }
            }
        }
        None
    }

    /// Drops what waits for `peer`: its handshake gave up, or the state the
    /// datagrams were made for is gone.
    pub(super) fn drop_staged(&mut self, peer: PeerId) {
        for _ in 0..self.stage.len() {
            let Some(entry) = self.stage.pop_front() else {
                break;
            };
            if entry.peer == peer {
                self.count_stage_drop(entry.service);
            } else {
                self.stage.push_back(entry).ok();
            }
        }
    }

    fn count_stage_drop(&mut self, service: ServiceId) {
        if let Some(s) = self.service_index(service).map(|si| &mut self.services[si]) {
            s.stats.drops.add(ServiceDrop::NoSession);
        }
        // No handle call returns this drop: `flush` tells the runtime.
        self.unreported_drops = self.unreported_drops.saturating_add(1);
    }
}

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize, B: Storage>
    Node<R, P, S, C, B>
{
    /// Drops the staged datagrams of service `service` (a reload removed
    /// it), counted among the node's drops as [`ServiceDrop::NoSession`]:
    /// the service's own counters go with it.
    pub(super) fn drop_staged_service(&mut self, service: ServiceId) {
        for _ in 0..self.stage.len() {
            let Some(entry) = self.stage.pop_front() else {
                break;
            };
            if entry.service == service {
                self.drops.add(ServiceDrop::NoSession);
                self.unreported_drops = self.unreported_drops.saturating_add(1);
            } else {
                self.stage.push_back(entry).ok();
            }
        }
    }
}
