//! A device that is never there, for [`SmolNode::poll`](crate::SmolNode::poll).

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// A router device that receives nothing and refuses every packet: what
/// [`SmolNode::poll`](crate::SmolNode::poll) uses when there is no router
/// entry.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTun;

/// The token a [`NoTun`] never hands out.
#[derive(Debug)]
pub enum Never {}

impl phy::RxToken for Never {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, _f: F) -> R {
        match self {}
    }
}

impl phy::TxToken for Never {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, _len: usize, _f: F) -> R {
        match self {}
    }
}

impl Device for NoTun {
    type RxToken<'a> = Never;
    type TxToken<'a> = Never;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Never, Never)> {
        None
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Never> {
        None
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = crate::MTU;
        caps
    }
}
