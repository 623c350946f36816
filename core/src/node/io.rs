//! The runtime's half of the contract, as a trait: every runtime (the mio
//! daemon, the smoltcp runtime, the turmoil simulation) implements [`Io`]
//! and lets [`Node::carry_out`] and [`Node::flush`] drive it, so the order in
//! which actions, outputs, transmits and events are handled is decided here
//! once, not in each runtime.

use core::net::SocketAddr;

use rand_core::{CryptoRng, RngCore};

use super::{Action, Dropped, Node, NodeEvent, Output, ServiceDrop, ServiceId, SocketId};
use crate::link::MIN_TRANSMIT_BUFFER;
use crate::outbox::Storage;
use crate::time::Instant;

/// The runtime could not open a socket (address in use, out of file
/// descriptors, no permission); the runtime logs the cause itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFailed;

/// What a runtime does for a node: open and close customer sockets, send
/// datagrams, write TUN packets, and hear about events and drops.
///
/// Sends are best effort, as UDP is: a runtime that cannot send (a full
/// socket buffer) drops the datagram and may count it itself.
pub trait Io {
    /// Opens a UDP socket bound to `local`. An error is reported back to
    /// the node with [`Node::socket_failed`].
    fn bind(&mut self, socket: SocketId, local: SocketAddr) -> Result<(), OpenFailed>;
    /// Opens a UDP socket on an ephemeral port connected to `remote`.
    fn connect(&mut self, socket: SocketId, remote: SocketAddr) -> Result<(), OpenFailed>;
    /// Opens an ICMP echo socket connected to `remote` ([`Action::ConnectEcho`]).
    /// A runtime without them refuses, and the channel is dropped as
    /// `socket_failed`.
    fn connect_echo(
        &mut self,
        socket: SocketId,
        remote: core::net::IpAddr,
    ) -> Result<(), OpenFailed> {
        let _ = (socket, remote);
        Err(OpenFailed)
    }
    /// Closes a socket.
    fn close(&mut self, socket: SocketId);
    /// Sends a datagram on the link socket.
    fn send_link(&mut self, to: SocketAddr, datagram: &[u8]);
    /// Sends a payload from a customer socket; `to` is `None` for a
    /// connected socket.
    fn send_customer(&mut self, socket: SocketId, to: Option<SocketAddr>, payload: &[u8]);
    /// Writes an IP packet to the TUN device of router entry `service`.
    fn write_tun(&mut self, service: ServiceId, packet: &[u8]);
    /// Something to log.
    fn event(&mut self, event: NodeEvent) {
        let _ = event;
    }
    /// A datagram was dropped (already counted by the node); for logs.
    fn dropped(&mut self, dropped: Dropped) {
        let _ = dropped;
    }
}

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize, B: Storage>
    Node<R, P, S, C, B>
{
    /// Carries out every pending action, then `result` (the return of a
    /// `handle_*` call on `buf`). Only this datagram's work: call
    /// [`Node::flush`] once a batch, after the last `carry_out` of it, for
    /// the handshakes, keepalives and events the batch caused.
    pub fn carry_out<I: Io>(&mut self, io: &mut I, buf: &[u8], result: Result<Output, Dropped>) {
        self.apply_actions(io);
        match result {
            Ok(Output::Link { to, range }) => io.send_link(to, &buf[range]),
            Ok(Output::Customer { socket, to, range }) => io.send_customer(socket, to, &buf[range]),
            Ok(Output::Tun { service, range }) => io.write_tun(service, &buf[range]),
            Ok(Output::Consumed | Output::Queued) => {}
            Err(dropped) => io.dropped(dropped),
        }
    }

    /// Whether [`Node::flush`] should run before the next datagram of the
    /// batch: an output queue is full and would otherwise drop what the
    /// next datagram calls for (cookie replies under a handshake flood).
    /// Runtimes check it after each `handle_*` call of a batch.
    pub fn needs_flush(&self) -> bool {
        self.link.needs_transmit_now()
    }

    /// Sends what the link wants to send (handshakes, keepalives, staged
    /// datagrams), carries out pending actions and passes on events. Call it
    /// once after each batch of `handle_*` calls, after
    /// [`Node::handle_timeout`], and whenever nothing else drove the node.
    /// Its cost depends on what is pending, not on how many peers or
    /// services are configured.
    ///
    /// `scratch` is a buffer of at least [`MIN_TRANSMIT_BUFFER`] bytes for
    /// handshakes and keepalives ([`TRANSMIT_BUFFER`](super::TRANSMIT_BUFFER)
    /// for staged datagrams to fit).
    pub fn flush<I: Io>(&mut self, io: &mut I, now: Instant, scratch: &mut [u8]) {
        if scratch.len() >= MIN_TRANSMIT_BUFFER {
            while let Ok(Some(t)) = self.poll_transmit(now, scratch) {
                io.send_link(t.to, &scratch[..t.len]);
            }
        }
        self.apply_actions(io);
        while let Some(event) = self.poll_event() {
            io.event(event);
        }
        for _ in 0..core::mem::take(&mut self.unreported_drops) {
            io.dropped(Dropped::Service(ServiceDrop::NoSession));
        }
        for _ in 0..core::mem::take(&mut self.unreported_buffer_drops) {
            io.dropped(Dropped::Service(ServiceDrop::BufferFull));
        }
    }

    /// Carries out every pending socket request. A runtime that acts on an
    /// [`Output`] itself (to batch its sends) calls this first, as
    /// [`Node::carry_out`] does.
    pub fn apply_actions<I: Io>(&mut self, io: &mut I) {
        while let Some(action) = self.poll_action() {
            let opened = match action {
                Action::Bind { socket, local } => {
                    io.bind(socket, local).map_err(|OpenFailed| socket)
                }
                Action::Connect { socket, remote } => {
                    io.connect(socket, remote).map_err(|OpenFailed| socket)
                }
                Action::ConnectEcho { socket, remote } => {
                    io.connect_echo(socket, remote).map_err(|OpenFailed| socket)
                }
                Action::Close { socket } => {
                    io.close(socket);
                    Ok(())
                }
            };
            if let Err(socket) = opened {
                self.socket_failed(socket);
            }
        }
    }
}
