//! The runtime's half of the node contract over smoltcp: [`Io`] on the
//! node's UDP sockets and the router device.

use core::net::{IpAddr, SocketAddr};

use sdt_core::node::{Dropped, Io, NodeEvent, OpenFailed, ServiceId, SocketId, HEADROOM, TAILROOM};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, TxToken};
use smoltcp::socket::{udp, AnySocket};
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

use crate::{listen_endpoint, Net, EPHEMERAL_FIRST};

/// One carry-out's view of the runtime.
pub(crate) struct Glue<'s, 'a, 't, T: ?Sized> {
    net: &'s mut Net<'a>,
    iface: &'s Interface,
    now: smoltcp::time::Instant,
    tun: &'s mut Option<(ServiceId, &'t mut T)>,
}

impl<'s, 'a, 't, T: Device + ?Sized> Glue<'s, 'a, 't, T> {
    pub(crate) fn new(
        net: &'s mut Net<'a>,
        iface: &'s Interface,
        now: smoltcp::time::Instant,
        tun: &'s mut Option<(ServiceId, &'t mut T)>,
    ) -> Self {
        Glue {
            net,
            iface,
            now,
            tun,
        }
    }

    /// Binds a free pooled socket to `endpoint` for `socket`, remembering
    /// `remote` for a connected one.
    fn open(
        &mut self,
        socket: SocketId,
        endpoint: IpListenEndpoint,
        remote: Option<SocketAddr>,
    ) -> Result<(), OpenFailed> {
        let free = self
            .net
            .slots
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, s)| s.owner.is_none() && s.handle.is_some())
            .map(|(i, _)| i);
        let Some(i) = free else {
            self.net.stats.open_failed += 1;
            return Err(OpenFailed);
        };
        let Some(handle) = self.net.slots[i].handle else {
            return Err(OpenFailed);
        };
        if self
            .net
            .set
            .get_mut::<udp::Socket>(handle)
            .bind(endpoint)
            .is_err()
        {
            self.net.stats.open_failed += 1;
            return Err(OpenFailed);
        }
        let slot = &mut self.net.slots[i];
        slot.owner = Some(socket);
        slot.remote = remote;
        Ok(())
    }

    /// The first free port from the ephemeral range on, wrapping.
    fn ephemeral_port(&mut self) -> Option<u16> {
        let span = u16::MAX - EPHEMERAL_FIRST + 1;
        for _ in 0..span {
            let port = self.net.next_port;
            self.net.next_port = if port == u16::MAX {
                EPHEMERAL_FIRST
            } else {
                port + 1
            };
            if !port_in_use(&self.net.set, None, port) {
                return Some(port);
            }
        }
        None
    }

    fn slot_of(&self, socket: SocketId) -> Option<(SocketHandle, Option<SocketAddr>)> {
        let slot = self.net.slots.iter().find(|s| s.owner == Some(socket))?;
        Some((slot.handle?, slot.remote))
    }

    fn send(&mut self, handle: SocketHandle, to: SocketAddr, payload: &[u8]) {
        let result = self
            .net
            .set
            .get_mut::<udp::Socket>(handle)
            .send_slice(payload, IpEndpoint::from(to));
        match result {
            Ok(()) => {}
            Err(udp::SendError::BufferFull) => self.net.stats.send_full += 1,
            Err(_) => self.net.stats.send_failed += 1,
        }
    }
}

impl<T: Device + ?Sized> Io for Glue<'_, '_, '_, T> {
    fn bind(&mut self, socket: SocketId, local: SocketAddr) -> Result<(), OpenFailed> {
        if !local.ip().is_unspecified() && !self.iface.has_ip_addr(local.ip()) {
            self.net.stats.open_failed += 1;
            return Err(OpenFailed);
        }
        let mut endpoint = listen_endpoint(local);
        if endpoint.port == 0 {
            endpoint.port = self.ephemeral_port().ok_or(OpenFailed)?;
        } else if port_in_use(
            &self.net.set,
            endpoint.addr.map(IpAddr::from),
            endpoint.port,
        ) {
            self.net.stats.open_failed += 1;
            return Err(OpenFailed);
        }
        self.open(socket, endpoint, None)
    }

    fn connect(&mut self, socket: SocketId, remote: SocketAddr) -> Result<(), OpenFailed> {
        let Some(port) = self.ephemeral_port() else {
            self.net.stats.open_failed += 1;
            return Err(OpenFailed);
        };
        self.open(socket, IpListenEndpoint { addr: None, port }, Some(remote))
    }

    fn close(&mut self, socket: SocketId) {
        let Some(slot) = self.net.slots.iter_mut().find(|s| s.owner == Some(socket)) else {
            return;
        };
        slot.owner = None;
        slot.remote = None;
        if let Some(handle) = slot.handle {
            self.net.set.get_mut::<udp::Socket>(handle).close();
        }
    }

    fn send_link(&mut self, to: SocketAddr, datagram: &[u8]) {
        if let Some(handle) = self.net.slots[0].handle {
            self.send(handle, to, datagram);
        }
    }

    fn send_customer(&mut self, socket: SocketId, to: Option<SocketAddr>, payload: &[u8]) {
        match self.slot_of(socket) {
            Some((handle, remote)) => match to.or(remote) {
                Some(to) => self.send(handle, to, payload),
                None => self.net.stats.send_failed += 1,
            },
            None => self.net.stats.send_failed += 1,
        }
    }

    fn write_tun(&mut self, service: ServiceId, packet: &[u8]) {
        let now = self.now;
        let token = match self.tun.as_mut() {
            Some((s, dev))
                if *s == service && packet.len() <= dev.capabilities().max_transmission_unit =>
            {
                dev.transmit(now)
            }
            _ => None,
        };
        match token {
            Some(token) => token.consume(packet.len(), |buf| buf.copy_from_slice(packet)),
            None => self.net.stats.tun_failed += 1,
        }
    }

    fn event(&mut self, event: NodeEvent) {
        if self.net.events.push_back(event).is_err() {
            self.net.stats.events_lost += 1;
        }
    }

    fn dropped(&mut self, _dropped: Dropped) {
        self.net.stats.node_drops += 1;
    }
}

/// Whether a UDP socket of `set` is bound to `port` on an address that
/// overlaps `addr` (`None`: every address).
fn port_in_use(set: &SocketSet<'_>, addr: Option<IpAddr>, port: u16) -> bool {
    set.iter().any(|(_, s)| {
        udp::Socket::downcast(s).is_some_and(|s| {
            let e = s.endpoint();
            e.port == port
                && (addr.is_none() || e.addr.is_none() || e.addr.map(IpAddr::from) == addr)
        })
    })
}

/// Reads one datagram from socket `handle` into `packet` at [`HEADROOM`].
/// `None`: nothing to read; `Some(None)`: one was dropped as oversize.
pub(crate) fn recv(
    net: &mut Net<'_>,
    handle: SocketHandle,
    packet: &mut [u8],
) -> Option<Option<(SocketAddr, usize)>> {
    let socket = net.set.get_mut::<udp::Socket>(handle);
    let (bytes, meta) = socket.recv().ok()?;
    let room = packet.len() - HEADROOM - TAILROOM;
    if bytes.len() > room {
        net.stats.oversize += 1;
        return Some(None);
    }
    packet[HEADROOM..HEADROOM + bytes.len()].copy_from_slice(bytes);
    let from = SocketAddr::new(meta.endpoint.addr.into(), meta.endpoint.port);
    Some(Some((from, bytes.len())))
}
