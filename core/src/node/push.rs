//! Push mode: one way, entry to exit.
//!
//! The entry ships every datagram sent to its listen socket, from anyone;
//! the exit sends them all from one socket connected to its target. There
//! are no channels and no replies: state is per service, not per client. A
//! datagram coming back to the exit's socket is dropped as
//! [`ServiceDrop::WrongDirection`], and so is a frame travelling exit to
//! entry. A push exit may admit any peer ([`Peers::Any`](super::Peers::Any)),
//! so one collector takes pushes from many machines.

use core::ops::Range;

use rand_core::{CryptoRng, RngCore};

use super::{Node, Output, ServiceDrop, SocketId};
use crate::time::Instant;
use crate::wire::ServiceHeaderRepr;

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize> Node<R, P, S, C> {
    /// A datagram on the listen socket of push entry `si`.
    pub(super) fn push_from_sender(
        &mut self,
        now: Instant,
        si: usize,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        let peer = self.sole_peer(si)?;
        let header = ServiceHeaderRepr {
            service: self.services[si].config.id,
            from_entry: true,
            channel: None,
            destination: None,
        };
        self.seal(now, peer, &header, buf, payload)
    }
}

/// A frame of push service `service` goes to the target, from the exit's
/// one connected socket.
pub(super) fn to_target(service: u8, payload: Range<usize>) -> Output {
    Output::Customer {
        socket: SocketId::Service(service),
        to: None,
        range: payload,
    }
}
