//! The size limit of customer datagrams: what does not fit one link frame
//! of the peer's link MTU is dropped before sealing ([`crate::mtu`]).

use rand_core::{CryptoRng, RngCore};

use core::net::SocketAddr;

use super::{Half, Node, NodeEvent, Peers, Role, ServiceDrop, ServiceId};
use crate::link::PeerId;
use crate::outbox::Storage;
use crate::wire::ServiceHeaderRepr;

/// Any IPv4 and IPv6 destination: only the family counts for the size.
const V4_DESTINATION: SocketAddr = SocketAddr::V4(core::net::SocketAddrV4::new(
    core::net::Ipv4Addr::UNSPECIFIED,
    1,
));
const V6_DESTINATION: SocketAddr = SocketAddr::V6(core::net::SocketAddrV6::new(
    core::net::Ipv6Addr::UNSPECIFIED,
    1,
    0,
    0,
));

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize, B: Storage>
    Node<R, P, S, C, B>
{
    /// The largest customer payload service `id` carries to its peer now,
    /// over the peer's current endpoint: one byte more is dropped as
    /// [`ServiceDrop::TooBig`]. For a router entry `destination` says to
    /// which family of destination (IPv4 or IPv6; the address itself does
    /// not matter) and must be given.
    ///
    /// `None` for an unknown service, a push exit (it sends nothing across),
    /// a service of any peer (each peer may have its own MTU), or a router
    /// entry asked without a destination.
    pub fn max_payload(&self, id: ServiceId, destination: Option<SocketAddr>) -> Option<usize> {
        let s = self.services.iter().find(|s| s.config.id == id)?;
        let Peers::One(peer) = s.config.peers else {
            return None;
        };
        let destination = match s.config.role {
            Role::PushExit { .. } => return None,
            Role::RouterEntry => Some(destination?),
            _ => None,
        };
        let header = ServiceHeaderRepr {
            service: id,
            from_entry: s.config.role.half() == Half::Entry,
            channel: s.config.role.has_channels().then_some(u32::MAX),
            destination,
            sequence: None,
        };
        Some(self.max_payload_len(peer, &header))
    }

    /// The MTU of router service `id`'s TUN device (a router entry's, or an
    /// L3 exit's): the largest IP packet of either family one link frame to
    /// the peer carries now ([`crate::mtu::router_packet_mtu`]; an L3
    /// service's frames carry the packet whole, IP header and all, so its
    /// MTU is the largest payload). `None` for any other service.
    pub fn router_packet_mtu(&self, id: ServiceId) -> Option<u16> {
        let s = self.services.iter().find(|s| s.config.id == id)?;
        if !matches!(
            s.config.role,
            Role::RouterEntry | Role::RouterTunEntry | Role::RouterTunExit { .. }
        ) {
            return None;
        }
        if s.config.role.is_l3() {
            // The frame carries the whole packet, its IP header included.
            let max = self.max_payload(id, None)?;
            return Some(u16::try_from(max).unwrap_or(u16::MAX));
        }
        let v4 = self.max_payload(id, Some(V4_DESTINATION))?;
        let v6 = self.max_payload(id, Some(V6_DESTINATION))?;
        Some(crate::mtu::router_packet_mtu(v4, v6))
    }

    /// The largest payload a frame shaped like `header` carries to `peer`
    /// now (it depends on the peer endpoint's address family).
    pub(super) fn max_payload_len(&self, peer: PeerId, header: &ServiceHeaderRepr) -> usize {
        self.link
            .max_plaintext_len(peer)
            .unwrap_or(0)
            .saturating_sub(crate::mtu::longest_header_len(header))
    }

    /// `Err(TooBig)` if `len` bytes of payload under `header` do not fit one
    /// frame to `peer`; the first such drop of a service is reported as a
    /// [`NodeEvent::TooBig`].
    pub(super) fn check_size(
        &mut self,
        peer: PeerId,
        header: &ServiceHeaderRepr,
        len: usize,
    ) -> Result<(), ServiceDrop> {
        let max = self.max_payload_len(peer, header);
        if len <= max {
            return Ok(());
        }
        let service = header.service;
        if let Some(s) = self.services.iter_mut().find(|s| s.config.id == service) {
            if !core::mem::replace(&mut s.too_big_reported, true) {
                self.events
                    .push_back(NodeEvent::TooBig {
                        service,
                        peer,
                        len,
                        max,
                    })
                    .ok();
            }
        }
        Err(ServiceDrop::TooBig)
    }

    /// The size check of an entry that numbers channels, made before a
    /// channel is found or opened: a datagram that cannot be carried must
    /// not open a channel, let alone evict another client's.
    pub(super) fn check_entry_size(
        &mut self,
        si: usize,
        destination: Option<core::net::SocketAddr>,
        len: usize,
    ) -> Result<(), ServiceDrop> {
        let peer = self.sole_peer(si)?;
        let header = ServiceHeaderRepr {
            service: self.services[si].config.id,
            from_entry: true,
            channel: Some(u32::MAX),
            destination,
            sequence: None,
        };
        self.check_size(peer, &header, len)
    }

    /// Whether a staged plaintext of `len` bytes still fits one frame to
    /// `peer`: its endpoint may have moved to the other address family
    /// while the datagram waited.
    pub(super) fn staged_fits(&self, peer: PeerId, len: usize) -> bool {
        self.link
            .max_plaintext_len(peer)
            .is_some_and(|max| len <= max)
    }
}
