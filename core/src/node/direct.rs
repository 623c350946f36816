//! Direct mode: one fixed customer at each end.
//!
//! Both nodes hold the same half ([`Half::Both`](super::Half::Both)): a
//! listen socket and the address of the one customer allowed to use it. A
//! datagram from that customer goes across; from anyone else it is dropped
//! as [`ServiceDrop::Stranger`]. Frames from the peer go to the customer from
//! the listen socket. Either side may start. Frames carry no channel number:
//! a direct frame costs 30 bytes around the payload.

use core::net::SocketAddr;
use core::ops::Range;

use rand_core::{CryptoRng, RngCore};

use super::{Node, Output, ServiceDrop, ServiceId, SocketId};
use crate::outbox::Storage;
use crate::time::Instant;
use crate::wire::ServiceHeaderRepr;

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize, B: Storage>
    Node<R, P, S, C, B>
{
    /// A datagram on the listen socket of direct service `si`.
    pub(super) fn direct_from_customer(
        &mut self,
        now: Instant,
        si: usize,
        customer: SocketAddr,
        from: SocketAddr,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        if from != customer {
            return Err(ServiceDrop::Stranger);
        }
        let peer = self.sole_peer(si)?;
        let header = ServiceHeaderRepr {
            service: self.services[si].config.id,
            from_entry: false,
            channel: None,
            destination: None,
            sequence: None,
        };
        self.seal(now, peer, &header, buf, payload)
    }
}

/// A frame of direct service `service` goes to its customer.
pub(super) fn to_customer(
    service: ServiceId,
    customer: SocketAddr,
    payload: Range<usize>,
) -> Output {
    Output::Customer {
        socket: SocketId::Service(service),
        to: Some(customer),
        range: payload,
    }
}
