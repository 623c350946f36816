//! Forward mode: a UDP port forward, each client its own channel.
//!
//! The entry listens; every new client source address gets a channel
//! number, carried in each frame. The first frame of a new number makes the
//! exit open a fresh socket connected to its one target; the target's
//! replies on that socket come back with the number, and the entry sends
//! them from its listen socket to that client only. There is no set-up
//! exchange. The table limits, eviction and expiry are in `channels`.

use core::net::SocketAddr;
use core::ops::Range;

use rand_core::{CryptoRng, RngCore};

use super::{Node, Output, ServiceDrop, SocketId};
use crate::channel::{ChannelId, ServiceIndex, Way};
use crate::link::PeerId;
use crate::outbox::Storage;
use crate::time::Instant;
use crate::wire::ServiceHeaderRepr;

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize, B: Storage>
    Node<R, P, S, C, B>
{
    /// A client's datagram on the listen socket of forward entry `si`.
    pub(super) fn forward_from_client(
        &mut self,
        now: Instant,
        si: usize,
        client: SocketAddr,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        self.check_entry_size(si, None, payload.len())?;
        let (number, peer) = self.entry_channel(now, si, client, None)?;
        let header = ServiceHeaderRepr {
            service: self.services[si].config.id,
            from_entry: true,
            channel: Some(number),
            destination: None,
            sequence: None,
        };
        self.seal(now, peer, &header, buf, payload)
    }

    /// A reply frame at forward entry `si`: to the client of channel
    /// `number`, or nowhere.
    pub(super) fn forward_reply(
        &mut self,
        now: Instant,
        si: usize,
        peer: PeerId,
        number: u32,
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        let (client, _) = self.entry_reply_channel(now, si, peer, number)?;
        Ok(Output::Customer {
            socket: SocketId::Service(self.services[si].config.id),
            to: Some(client),
            range: payload,
        })
    }

    /// A frame at forward exit `si`: to the target, from the channel's
    /// socket, opened if the number is new.
    pub(super) fn forward_to_target(
        &mut self,
        now: Instant,
        si: usize,
        peer: PeerId,
        number: u32,
        target: SocketAddr,
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        let id = match self
            .channels
            .find_by_number(ServiceIndex::at(si), peer.0, number)
        {
            Some(id) => {
                self.channels.touch(id, now, Way::FromPeer);
                id
            }
            None => self.open_exit_channel(now, si, peer, number, None, target)?,
        };
        Ok(Output::Customer {
            socket: SocketId::Channel(id),
            to: None,
            range: payload,
        })
    }

    /// A datagram from the target (or router destination) on an exit
    /// channel's socket: back to the entry on the channel.
    pub(super) fn reply_from_target(
        &mut self,
        now: Instant,
        id: ChannelId,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        let channel = self.channels.get(id).ok_or(ServiceDrop::StaleSocket)?;
        if channel.client.is_some() {
            return Err(ServiceDrop::StaleSocket);
        }
        let (peer, number, si) = (PeerId(channel.peer), channel.number, channel.service.get());
        // A router exit's echo channel reads ICMP messages: only an echo
        // reply's sequence number and data travel back.
        let payload = if super::ROUTER && channel.destination.is_some_and(|d| d.port() == 0) {
            let message = buf.get(payload.clone()).ok_or(ServiceDrop::BufferLayout)?;
            let r = crate::ip::icmp::echo_reply_payload(message).ok_or(ServiceDrop::NotUdp)?;
            payload.start + r.start..payload.start + r.end
        } else {
            payload
        };
        self.channels.touch(id, now, Way::ToPeer);
        let header = ServiceHeaderRepr {
            service: self.services[si].config.id,
            from_entry: false,
            channel: Some(number),
            destination: None,
            sequence: None,
        };
        self.seal(now, peer, &header, buf, payload)
    }
}
