//! Router mode with an L3 exit (`exit = "tun"`): whole IP packets of any
//! protocol, like `ssh -w`.
//!
//! Both halves are configured so ([`Role::RouterTunEntry`],
//! [`Role::RouterTunExit`]); their frames carry no channel number and no
//! destination, just the service header and the packet (see
//! [`crate::wire::service`]), so a half configured for the socket exit
//! sees them as a [`ServiceDrop::ModeMismatch`] and reports it.
//!
//! - **Entry**: every IP packet from its TUN device that passes the header
//!   checks of [`ip::l3::parse_packet`] goes whole to the peer; one too big
//!   for a link frame is answered with Fragmentation Needed / Packet Too
//!   Big, as a socket entry does. A packet from the peer is checked the
//!   same way and written whole to the TUN device.
//! - **Exit**: a packet from the peer is written to the exit's TUN device
//!   only if its source is one of the service's `peer_addresses` (else
//!   [`ServiceDrop::SourceNotAllowed`]: an entry cannot send as another
//!   entry or as anyone else) and the allow-list permits its destination,
//!   protocol and port ([`AllowList::allows_packet`], else
//!   [`ServiceDrop::NotAllowed`]). The kernel then routes it (or NATs it)
//!   as the operator set up. A packet read from the exit's TUN device goes
//!   to the peer of the L3 exit service whose `peer_addresses` hold its
//!   destination, longest prefix first (ranges of different services never
//!   overlap: [`ServiceError::OverlappingPeerAddresses`]), so several
//!   entries share one exit and none receives another's packets.
//!
//! [`AllowList::allows_packet`]: crate::allow::AllowList::allows_packet
//! [`ServiceError::OverlappingPeerAddresses`]: super::ServiceError::OverlappingPeerAddresses

use core::ops::Range;

use rand_core::{CryptoRng, RngCore};

use super::{Node, Output, Role, ServiceDrop};
use crate::ip::{self, IpDrop};
use crate::outbox::Storage;
use crate::time::Instant;
use crate::wire::ServiceHeaderRepr;

/// A failed packet from the exit's TUN device: the service it was for, if
/// one was found, and why.
type ExitDrop = (Option<usize>, ServiceDrop);

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize, B: Storage>
    Node<R, P, S, C, B>
{
    /// An IP packet from L3 entry `si`'s TUN device: sealed whole for the
    /// peer, with the length carried; or an ICMP error for the TUN device.
    pub(super) fn l3_entry_from_tun(
        &mut self,
        now: Instant,
        si: usize,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Result<(Output, usize), ServiceDrop> {
        let bytes = buf.get(packet.clone()).ok_or(ServiceDrop::BufferLayout)?;
        let info = ip::l3::parse_packet(bytes).map_err(l3_drop)?;
        let peer = self.sole_peer(si)?;
        let header = self.l3_header(si, true);
        if let Err(reason) = self.check_size(peer, &header, packet.len()) {
            if reason != ServiceDrop::TooBig {
                return Err(reason);
            }
            let answer = self.too_big(now, si, buf, packet, info.source, info.destination)?;
            return Ok((answer, 0));
        }
        let len = packet.len();
        Ok((self.seal(now, peer, &header, buf, packet)?, len))
    }

    /// A packet from the peer at L3 entry `si`: written whole to its TUN
    /// device if its header is sane.
    pub(super) fn l3_to_entry_tun(
        &mut self,
        si: usize,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        let bytes = buf.get(payload.clone()).ok_or(ServiceDrop::BufferLayout)?;
        ip::l3::parse_packet(bytes).map_err(l3_drop)?;
        Ok(Output::Tun {
            service: self.services[si].config.id,
            range: payload,
        })
    }

    /// A packet from the peer at L3 exit `si`: written to the exit's TUN
    /// device if its source is the peer's and its destination allowed.
    pub(super) fn l3_to_exit_tun(
        &mut self,
        si: usize,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        let bytes = buf.get(payload.clone()).ok_or(ServiceDrop::BufferLayout)?;
        let info = ip::l3::parse_packet(bytes).map_err(l3_drop)?;
        let s = &self.services[si];
        let Role::RouterTunExit {
            allow,
            peer_addresses,
        } = &s.config.role
        else {
            return Err(ServiceDrop::ModeMismatch);
        };
        if !peer_addresses.iter().any(|n| n.contains(info.source)) {
            return Err(ServiceDrop::SourceNotAllowed);
        }
        if !allow.allows_packet(info.destination, info.protocol, info.port) {
            return Err(ServiceDrop::NotAllowed);
        }
        Ok(Output::Tun {
            service: s.config.id,
            range: payload,
        })
    }

    /// A packet from an L3 exit's TUN device: to the peer whose addresses
    /// hold its destination. Returns the service, the output and the
    /// length carried to the peer.
    pub(super) fn l3_exit_from_tun(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Result<(usize, Output, usize), ExitDrop> {
        let bytes = buf
            .get(packet.clone())
            .ok_or((None, ServiceDrop::BufferLayout))?;
        let info = ip::l3::parse_packet(bytes).map_err(|e| (None, l3_drop(e)))?;
        let si = self
            .l3_service_for(info.destination)
            .ok_or((None, ServiceDrop::NoPeerForAddress))?;
        let fail = |reason| (Some(si), reason);
        let peer = self.sole_peer(si).map_err(fail)?;
        let header = self.l3_header(si, false);
        if let Err(reason) = self.check_size(peer, &header, packet.len()) {
            if reason != ServiceDrop::TooBig {
                return Err(fail(reason));
            }
            let answer = self
                .too_big(now, si, buf, packet, info.source, info.destination)
                .map_err(fail)?;
            return Ok((si, answer, 0));
        }
        let len = packet.len();
        let output = self.seal(now, peer, &header, buf, packet).map_err(fail)?;
        Ok((si, output, len))
    }

    /// The L3 exit service whose peer addresses hold `destination`, the
    /// longest prefix winning.
    fn l3_service_for(&self, destination: core::net::IpAddr) -> Option<usize> {
        let mut best: Option<(usize, u8)> = None;
        for (si, s) in self.services.iter().enumerate() {
            let Role::RouterTunExit { peer_addresses, .. } = &s.config.role else {
                continue;
            };
            for net in peer_addresses.iter().filter(|n| n.contains(destination)) {
                if best.is_none_or(|(_, prefix)| net.prefix() > prefix) {
                    best = Some((si, net.prefix()));
                }
            }
        }
        best.map(|(si, _)| si)
    }

    /// The header of an L3 service's frames: no channel, no destination.
    fn l3_header(&self, si: usize, from_entry: bool) -> ServiceHeaderRepr {
        ServiceHeaderRepr {
            service: self.services[si].config.id,
            from_entry,
            channel: None,
            destination: None,
            sequence: None,
        }
    }
}

/// The counted reason for an IP packet an L3 service does not carry.
fn l3_drop(drop: IpDrop) -> ServiceDrop {
    match drop {
        IpDrop::BadChecksum => ServiceDrop::BadChecksum,
        _ => ServiceDrop::MalformedIp,
    }
}
