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
//! ICMP echo (ping) is carried too: an echo flow is a channel keyed by
//! (pinger address and echo identifier, destination address and port 0);
//! its frames carry the sequence number and data ([`crate::ip::icmp`]), the
//! exit sends from an ICMP echo socket ([`Action::ConnectEcho`]) where an
//! `icmp://` allow rule permits, and the entry forges the Echo Reply.
//!
//! ICMP errors back to the sender, forged at the entry at most
//! [`ICMP_ERRORS_PER_SECOND`] a second: Port Unreachable when the exit says
//! the destination refused (a notice frame, see
//! [`Node::handle_target_refused`]), and Fragmentation Needed / Packet Too
//! Big, announcing [`Node::router_packet_mtu`], for a packet too large for
//! one link frame (still counted as `too_big`), so path MTU discovery works
//! through sdt.
//!
//! Everything else (TCP, other ICMP, IPv4 fragments, IPv6 packets with
//! extension headers) is dropped and counted by this socket exit; a router
//! service with an L3 exit (`exit = "tun"`, the `l3` module) carries whole
//! packets of any protocol instead.
//!
//! [`Action::ConnectEcho`]: super::Action::ConnectEcho

use core::net::{IpAddr, SocketAddr};
use core::ops::Range;

use rand_core::{CryptoRng, RngCore};

use super::{Node, Output, Role, ServiceDrop, SocketId};
use crate::channel::{ServiceIndex, Way};
use crate::ip::{self, icmp, IpDrop};
use crate::link::PeerId;
use crate::outbox::Storage;
use crate::time::Instant;
use crate::wire::ServiceHeaderRepr;

/// ICMP errors a node forges a second, all router entries together; Linux
/// sends at most 1,000 a second with bursts of 50 (`icmp_msgs_per_sec`).
pub const ICMP_ERRORS_PER_SECOND: u32 = 100;
/// The burst of [`ICMP_ERRORS_PER_SECOND`].
pub const ICMP_ERRORS_BURST: u32 = 20;

/// What router mode carries out of an IP packet from the TUN device.
struct Flow {
    /// The sender: UDP source, or the pinger's address and echo identifier.
    client: SocketAddr,
    /// UDP destination, or the pinged address with port 0.
    destination: SocketAddr,
    /// What travels in the frame.
    payload: Range<usize>,
}

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize, B: Storage>
    Node<R, P, S, C, B>
{
    /// An IP packet from router entry `si`'s TUN device. Returns the frame
    /// and the length of the payload it carries, or an ICMP error for the
    /// TUN device (a packet too big for one frame).
    pub(super) fn router_from_tun(
        &mut self,
        now: Instant,
        si: usize,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Result<(Output, usize), ServiceDrop> {
        let bytes = buf.get(packet.clone()).ok_or(ServiceDrop::BufferLayout)?;
        let flow = match ip::parse_udp(bytes) {
            Ok(udp) => Flow {
                client: udp.source,
                destination: udp.destination,
                payload: udp.payload,
            },
            Err(IpDrop::NotUdp) => {
                let echo = icmp::parse_echo(bytes).map_err(ip_drop)?;
                Flow {
                    client: SocketAddr::new(echo.source, echo.ident),
                    destination: SocketAddr::new(echo.destination, 0),
                    payload: echo.payload,
                }
            }
            Err(e) => return Err(ip_drop(e)),
        };
        let payload = packet.start + flow.payload.start..packet.start + flow.payload.end;
        if let Err(reason) = self.check_entry_size(si, Some(flow.destination), payload.len()) {
            if reason != ServiceDrop::TooBig {
                return Err(reason);
            }
            let (source, destination) = (flow.client.ip(), flow.destination.ip());
            let answer = self.too_big(now, si, buf, packet, source, destination)?;
            return Ok((answer, 0));
        }
        let (number, peer) = self.entry_channel(now, si, flow.client, Some(flow.destination))?;
        let header = ServiceHeaderRepr {
            service: self.services[si].config.id,
            from_entry: true,
            channel: Some(number),
            destination: Some(flow.destination),
            sequence: None,
        };
        let len = payload.len();
        Ok((self.seal(now, peer, &header, buf, payload)?, len))
    }

    /// A packet too big for one frame: counted as `too_big`, and answered
    /// with Fragmentation Needed / Packet Too Big if the rate allows.
    /// `source` and `destination` are the packet's addresses: the error
    /// goes from the destination to the source.
    pub(super) fn too_big(
        &mut self,
        now: Instant,
        si: usize,
        buf: &mut [u8],
        packet: Range<usize>,
        source: IpAddr,
        destination: IpAddr,
    ) -> Result<Output, ServiceDrop> {
        let id = self.services[si].config.id;
        let mtu = self.router_packet_mtu(id).ok_or(ServiceDrop::TooBig)?;
        if !self.take_icmp_error(now, si) {
            return Err(ServiceDrop::TooBig);
        }
        self.services[si].stats.drops.add(ServiceDrop::TooBig);
        let range = icmp::forge_too_big(buf, packet, source, destination, mtu)
            .map_err(|_| ServiceDrop::BufferLayout)?;
        Ok(Output::Tun { service: id, range })
    }

    /// Takes a token for one forged ICMP error of service `si`, counting
    /// it as sent or as rate limited.
    fn take_icmp_error(&mut self, now: Instant, si: usize) -> bool {
        let ok = self
            .icmp_errors
            .take(now, ICMP_ERRORS_PER_SECOND, ICMP_ERRORS_BURST);
        let stats = &mut self.services[si].stats;
        if ok {
            stats.icmp_errors_sent += 1;
        } else {
            stats.icmp_errors_rate_limited += 1;
        }
        ok
    }

    /// A reply frame at router entry `si`: forged into a UDP packet (or an
    /// echo reply) from the channel's destination to its client.
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
        let range = if destination.port() == 0 {
            icmp::forge_echo_reply(buf, payload, destination.ip(), client.ip(), client.port())
        } else {
            ip::forge_udp(buf, payload, destination, client)
        }
        .map_err(|_| ServiceDrop::BufferLayout)?;
        Ok(Output::Tun {
            service: self.services[si].config.id,
            range,
        })
    }

    /// An exit's notice on channel `number` that its target refused: counted
    /// as `target_unreachable`; a router entry forges the ICMP Port
    /// Unreachable the destination would have sent, to the channel's client
    /// and no one else. The notice must name the channel's own destination.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn unreachable_notice(
        &mut self,
        now: Instant,
        si: usize,
        peer: PeerId,
        number: u32,
        named: SocketAddr,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        let (client, destination) = self.entry_reply_channel(now, si, peer, number)?;
        self.services[si].stats.target_unreachable += 1;
        // Forward (and every entry of a build without router mode, whose
        // channels have no destination): the entry only counts it.
        let Some(destination) = destination.filter(|_| super::ROUTER) else {
            return Ok(Output::Consumed);
        };
        if destination != named {
            return Err(ServiceDrop::DestinationMismatch);
        }
        if destination.port() == 0 || !self.take_icmp_error(now, si) {
            return Ok(Output::Consumed);
        }
        // The frame is consumed: the error is written from the start of the
        // buffer, whose headroom, frame and tailroom hold it (at most 96
        // bytes for IPv6, as short as a notice frame's 113).
        let _ = payload;
        let range = icmp::forge_port_unreachable(buf, 0, client, destination)
            .map_err(|_| ServiceDrop::BufferLayout)?;
        Ok(Output::Tun {
            service: self.services[si].config.id,
            range,
        })
    }

    /// A frame at router exit `si`: to its destination, from the channel's
    /// socket, opened if the number is new and the allow-list permits. An
    /// echo flow's frame becomes an echo request for its ICMP socket.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn router_to_destination(
        &mut self,
        now: Instant,
        si: usize,
        peer: PeerId,
        number: u32,
        destination: SocketAddr,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        let id = match self
            .channels
            .find_by_number(ServiceIndex::at(si), peer.0, number)
        {
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
        let range = if destination.port() == 0 {
            let v6 = matches!(destination.ip(), IpAddr::V6(_));
            icmp::echo_request(buf, payload, v6).map_err(|_| ServiceDrop::MalformedIp)?
        } else {
            payload
        };
        Ok(Output::Customer {
            socket: SocketId::Channel(id),
            to: None,
            range,
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
