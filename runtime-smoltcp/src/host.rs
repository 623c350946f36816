//! The std-only pieces: a TUN/TAP device and a wall clock.

use std::io;
use std::os::fd::AsRawFd;

use smoltcp::phy::{Medium, TunTapInterface};

/// Opens (or creates) the TUN device `name`: medium IP, for a node's
/// interface or a router entry's device. Needs `CAP_NET_ADMIN`.
pub fn open_tun(name: &str) -> io::Result<TunTapInterface> {
    TunTapInterface::new(name, Medium::Ip)
}

/// Opens (or creates) the TAP device `name`: medium Ethernet, for a node's
/// interface (needs the `ethernet` feature on the interface side).
pub fn open_tap(name: &str) -> io::Result<TunTapInterface> {
    TunTapInterface::new(name, Medium::Ethernet)
}

/// Waits until `device` is readable or `delay` passed (`None`: forever);
/// the delay is [`SmolNode::poll_delay`](crate::SmolNode::poll_delay).
pub fn wait(device: &TunTapInterface, delay: Option<smoltcp::time::Duration>) -> io::Result<()> {
    smoltcp::phy::wait(device.as_raw_fd(), delay)
}

/// A monotonic clock for smoltcp, from the moment it was made, with the
/// wall-clock time of that moment for the node's handshake timestamps.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: std::time::Instant,
    unix_nanos: u64,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        let unix_nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Clock {
            start: std::time::Instant::now(),
            unix_nanos,
        }
    }

    /// Time since the clock was made, as smoltcp counts it.
    pub fn now(&self) -> smoltcp::time::Instant {
        let micros = self.start.elapsed().as_micros();
        smoltcp::time::Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    /// Wall-clock nanoseconds since the Unix epoch when the clock was made:
    /// the `unix_nanos` for `Node::new` at [`crate::core_instant`] of
    /// `Instant::ZERO`.
    pub fn unix_nanos(&self) -> u64 {
        self.unix_nanos
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
