//! Router mode: datagrams to any destination, captured as IP packets.
//!
//! The entry takes whole IP packets from the runtime's TUN device. UDP
//! packets become channels keyed by (client address, destination address);
//! their frames carry the destination. The exit opens a socket per channel
//! connected to the destination, but only where its allow-list permits
//! (empty by default: nothing). Replies come back on the channel and the
//! entry forges an IPv4/IPv6 UDP packet from the destination to the client,
//! with correct checksums, for the runtime to write to the TUN device.
//!
//! Only UDP is carried: TCP, ICMP, IPv4 fragments and IPv6 packets with
//! extension headers before UDP are dropped and counted.

use core::net::SocketAddr;
use core::ops::Range;

use rand_core::{CryptoRng, RngCore};

use super::{Node, Output, Role, ServiceDrop, SocketId};
use crate::channel::Way;
use crate::ip::{self, IpDrop};
use crate::link::PeerId;
use crate::time::Instant;
use crate::wire::ServiceHeaderRepr;

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize> Node<R, P, S, C> {
    /// An IP packet from router entry `si`'s TUN device. Returns the frame
    /// and the length of the UDP payload it carries.
    pub(super) fn router_from_tun(
        &mut self,
        now: Instant,
        si: usize,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Result<(Output, usize), ServiceDrop> {
        let bytes = buf.get(packet.clone()).ok_or(ServiceDrop::BufferLayout)?;
        let udp = ip::parse_udp(bytes).map_err(ip_drop)?;
        let payload = packet.start + udp.payload.start..packet.start + udp.payload.end;
        self.check_entry_size(si, Some(udp.destination), payload.len())?;
        let (number, peer) = self.entry_channel(now, si, udp.source, Some(udp.destination))?;
        let header = ServiceHeaderRepr {
            service: self.services[si].config.id,
            from_entry: true,
            channel: Some(number),
            destination: Some(udp.destination),
        };
        let len = payload.len();
        Ok((self.seal(now, peer, &header, buf, payload)?, len))
    }

    /// A reply frame at router entry `si`: forged into a UDP packet from the
    /// channel's destination to its client.
    pub(super) fn router_reply(
        &mut self,
        now: Instant,
        si: usize,
        peer: PeerId,
        number: u32,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        let (client, destination) = self.entry_reply_channel(now, si, peer, number)?;
        let destination = destination.ok_or(ServiceDrop::UnknownChannel)?;
        let range = ip::forge_udp(buf, payload, destination, client)
            .map_err(|_| ServiceDrop::BufferLayout)?;
        Ok(Output::Tun {
            service: self.services[si].config.id,
            range,
        })
    }

    /// A frame at router exit `si`: to its destination, from the channel's
    /// socket, opened if the number is new and the allow-list permits.
    pub(super) fn router_to_destination(
        &mut self,
        now: Instant,
        si: usize,
        peer: PeerId,
        number: u32,
        destination: SocketAddr,
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        let id = match self.channels.find_by_number(si as u8, peer.0, number) {
            Some(id) => {
                if self.channels.get(id).and_then(|c| c.destination) != Some(destination) {
                    return Err(ServiceDrop::DestinationMismatch);
                }
                self.channels.touch(id, now, Way::FromPeer);
                id
            }
            None => {
                let Role::RouterExit { allow } = &self.services[si].config.role else {
                    return Err(ServiceDrop::ModeMismatch);
                };
                if !allow.allows(&destination) {
                    return Err(ServiceDrop::NotAllowed);
                }
                self.open_exit_channel(now, si, peer, number, Some(destination), destination)?
            }
        };
        Ok(Output::Customer {
            socket: SocketId::Channel(id),
            to: None,
            range: payload,
        })
    }
}

/// The counted reason for an IP packet router mode does not carry.
fn ip_drop(drop: IpDrop) -> ServiceDrop {
    match drop {
        IpDrop::NotUdp => ServiceDrop::NotUdp,
        IpDrop::Fragment => ServiceDrop::Fragment,
        IpDrop::BadChecksum => ServiceDrop::BadChecksum,
        IpDrop::Malformed | IpDrop::Unsupported => ServiceDrop::MalformedIp,
    }
}
