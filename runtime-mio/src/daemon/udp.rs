//! Batched UDP socket I/O on Linux: `recvmmsg` with UDP GRO, `sendmmsg`
//! with UDP GSO, socket buffers sized for bursts, and the kernel's count of
//! datagrams it dropped before the daemon could read them (`SO_RXQ_OVFL`).
//!
//! The cost of a userspace tunnel is per datagram, not per byte: one
//! `recv_from` and one `send_to` per datagram is what held sdt to the speed
//! of the slowest tunnels (issue 11). This module moves many datagrams per
//! system call:
//! - [`RecvBatch`] reads up to its slot count of messages with one
//!   `recvmmsg`; with GRO on, one message may hold a train of equal-sized
//!   segments the kernel coalesced, and the batch hands each segment out as
//!   its own datagram.
//! - [`SendBatch`] collects datagrams that live in the caller's buffer and
//!   sends them with as few calls as it can: a run of equal-sized datagrams
//!   to one destination goes as one message with a `UDP_SEGMENT` control
//!   message (GSO) and one iovec per datagram; messages for one socket go
//!   together in one `sendmmsg`.
//! - [`Offloads::probe`] finds out at start what the kernel offers,
//!   [`prepare`] turns it on for one socket and sizes its buffers.
//!
//! Nothing here allocates after construction, nothing blocks, and nothing
//! panics on what the kernel or the caller hands in: datagrams that cannot be
//! delivered or sent are counted with their reason.
//!
//! # Why raw `libc` and not `quinn-udp`
//! `quinn-udp` (quinn-rs/quinn, `quinn-udp/src/lib.rs` and `unix.rs`) is the
//! well-kept crate for this, and its receive side would fit. Its send side
//! and its reporting do not:
//! - A `Transmit` carries one contiguous `contents: &[u8]` (the segments laid
//!   end to end, cut every `segment_size` bytes) and `prepare_msg` sends it
//!   with a single iovec. sdt seals each datagram in place in its own receive
//!   slot, with headroom before it and tailroom after it, so the datagrams of
//!   one GSO run are not adjacent in memory: `quinn-udp` would need a copy of
//!   every datagram into one staging buffer. Here a GSO message has one iovec
//!   per segment and the kernel gathers them; nothing is copied.
//! - `UdpSocketState::send` sends one `Transmit` per `sendmsg`; there is no
//!   `sendmmsg` path, so datagrams that cannot share a GSO run (different
//!   destinations, the exit's many channels) would each cost a system call.
//! - `RecvMeta` has no field for `SO_RXQ_OVFL` (the crate never asks for
//!   it) and the `recvmmsg` path does not look at `MSG_TRUNC`, so a datagram
//!   larger than its buffer arrives cut short without a word. sdt counts
//!   both.
//!
//! The unsafe surface is the system calls (`sys`); addresses and control
//! messages are read and written as bytes in safe code.
//!
//! # Kernel limits
//! - A GSO message carries at most 64 segments (`UDP_MAX_SEGMENTS`, raised to
//!   128 in Linux 6.11 and some stable kernels; 64 works everywhere, see
//!   [`MAX_GSO_SEGMENTS`]), and at most one IPv4 datagram's worth of
//!   payload (`0xFFFF` less the IP and UDP headers, [`MAX_GSO_BYTES`]);
//!   each segment plus headers must fit the path MTU (else `EMSGSIZE`).
//! - GRO coalesces at most 64 segments (`UDP_GRO_CNT_MAX`) and at most 64 KiB
//!   into one message, so a receive slot of [`GRO_SLOT_PAYLOAD`] bytes never
//!   truncates a train.
//! - A device that cannot checksum in hardware fails a GSO send with `EIO`
//!   (and some older kernels with `EINVAL`); [`SendBatch`] then turns GSO off
//!   for good, logs it once, and sends those datagrams one by one.

mod recv;
mod send;
mod sys;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use tracing::debug;

// What the event loop uses once it is wired up (issue 11).
#[allow(unused_imports)]
pub(crate) use recv::{Datagram, KernelDrops, RecvBatch};
#[allow(unused_imports)]
pub(crate) use send::{FlushStats, SendBatch, SendFailed, SendFailure};

/// Datagrams moved per system call: the slots of a receive batch, the
/// messages of one `sendmmsg`, the segments of one GSO message.
pub(crate) const BATCH: usize = 64;

/// Segments in one GSO message: the kernel's `UDP_MAX_SEGMENTS` before Linux
/// 6.11 (128 since); more fails with `EINVAL`.
pub(crate) const MAX_GSO_SEGMENTS: usize = 64;

/// Payload bytes in one GSO message: the UDP length field and the IPv4
/// total length are 16 bits, less 20 bytes of IPv4 and 8 of UDP header.
/// (IPv6 allows 20 more; one limit for both keeps it simple.)
pub(crate) const MAX_GSO_BYTES: usize = 65_535 - 20 - 8;

/// Payload room a receive slot needs with GRO on: the kernel coalesces up to
/// 64 KiB, and a slot too small for the train truncates all of it.
pub(crate) const GRO_SLOT_PAYLOAD: usize = 65_535;

/// Socket buffer asked for on a busy socket: room for a burst of a few
/// thousand full-sized datagrams while the loop is busy elsewhere.
pub(crate) const BURST_SOCKET_BUFFER: usize = 4 << 20;

/// Why an offload is not in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// The kernel refused the socket option (the errno).
    Kernel(i32),
    /// Turned off by the caller (configuration, tests).
    Off,
    /// Worked at start, then a send failed with this errno (a device without
    /// checksum offload): turned off for the rest of the run.
    FailedAt(i32),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::Kernel(e) => write!(f, "{}", io::Error::from_raw_os_error(*e)),
            Unavailable::Off => f.write_str("turned off"),
            Unavailable::FailedAt(e) => {
                write!(f, "a send failed: {}", io::Error::from_raw_os_error(*e))
            }
        }
    }
}

/// What the kernel offers for batched UDP, found once at start.
///
/// `recvmmsg` and `sendmmsg` are always used (Linux 3.0); the three
/// offloads are optional. A `false` field comes with its reason for
/// [`Offloads::describe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offloads {
    /// UDP generic segmentation offload on send (`UDP_SEGMENT`, Linux 4.18).
    pub gso: bool,
    /// UDP generic receive offload (`UDP_GRO`, Linux 5.0).
    pub gro: bool,
    /// The kernel's receive-queue drop count on every datagram
    /// (`SO_RXQ_OVFL`, Linux 2.6.33).
    pub rxq_ovfl: bool,
    why_not: [Option<Unavailable>; 3],
}

impl Offloads {
    /// Tries each offload's socket option on a throwaway socket.
    pub(crate) fn probe() -> Offloads {
        let socket =
            match sys::probe_socket(libc::AF_INET6).or_else(|_| sys::probe_socket(libc::AF_INET)) {
                Ok(s) => s,
                Err(e) => {
                    let why = Some(Unavailable::Kernel(e.raw_os_error().unwrap_or(0)));
                    return Offloads {
                        gso: false,
                        gro: false,
                        rxq_ovfl: false,
                        why_not: [why; 3],
                    };
                }
            };
        let fd = socket.as_raw_fd();
        let try_on = |level, name, value| match sys::set_int(fd, level, name, value) {
            Ok(()) => None,
            Err(e) => Some(Unavailable::Kernel(e.raw_os_error().unwrap_or(0))),
        };
        let why_not = [
            try_on(libc::SOL_UDP, libc::UDP_SEGMENT, 1200),
            try_on(libc::SOL_UDP, libc::UDP_GRO, 1),
            try_on(libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1),
        ];
        Offloads {
            gso: why_not[0].is_none(),
            gro: why_not[1].is_none(),
            rxq_ovfl: why_not[2].is_none(),
            why_not,
        }
    }

    /// No offloads: plain `recvmmsg` and `sendmmsg`.
    pub(crate) fn none() -> Offloads {
        Offloads {
            gso: false,
            gro: false,
            rxq_ovfl: false,
            why_not: [Some(Unavailable::Off); 3],
        }
    }

    /// Why GSO is not in use, `None` when it is.
    pub(crate) fn why_no_gso(&self) -> Option<Unavailable> {
        (!self.gso).then(|| self.why_not[0].unwrap_or(Unavailable::Off))
    }

    /// Why GRO is not in use, `None` when it is.
    pub(crate) fn why_no_gro(&self) -> Option<Unavailable> {
        (!self.gro).then(|| self.why_not[1].unwrap_or(Unavailable::Off))
    }

    /// Why drop counts are not read, `None` when they are.
    pub(crate) fn why_no_rxq_ovfl(&self) -> Option<Unavailable> {
        (!self.rxq_ovfl).then(|| self.why_not[2].unwrap_or(Unavailable::Off))
    }

    /// The same, with GSO off because `errno` came back from a GSO send.
    pub(crate) fn gso_failed(mut self, errno: i32) -> Offloads {
        self.gso = false;
        self.why_not[0] = Some(Unavailable::FailedAt(errno));
        self
    }

    /// One line for the log and `sdt status`, for example
    /// `recvmmsg+gro, sendmmsg+gso, rxq_ovfl` or
    /// `recvmmsg, sendmmsg+gso (no gro: Protocol not available (os error 92);
    /// no rxq_ovfl: turned off)`.
    pub(crate) fn describe(&self) -> String {
        let mut line = String::from("recvmmsg");
        if self.gro {
            line.push_str("+gro");
        }
        line.push_str(", sendmmsg");
        if self.gso {
            line.push_str("+gso");
        }
        if self.rxq_ovfl {
            line.push_str(", rxq_ovfl");
        }
        let missing: Vec<String> = [
            ("gro", self.why_no_gro()),
            ("gso", self.why_no_gso()),
            ("rxq_ovfl", self.why_no_rxq_ovfl()),
        ]
        .into_iter()
        .filter_map(|(name, why)| why.map(|why| format!("no {name}: {why}")))
        .collect();
        if !missing.is_empty() {
            let _ = write!(line, " ({})", missing.join("; "));
        }
        line
    }
}

/// What [`prepare`] set up on one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SocketSetup {
    /// The receive buffer the kernel reports (`SO_RCVBUF`), in bytes. Linux
    /// reports twice what was asked for: half is bookkeeping overhead.
    pub recv_buffer: usize,
    /// The send buffer the kernel reports (`SO_SNDBUF`), in bytes.
    pub send_buffer: usize,
    /// Whether the buffers were forced past `net.core.{r,w}mem_max`
    /// (`SO_{RCV,SND}BUFFORCE`, which needs `CAP_NET_ADMIN`).
    pub forced: bool,
    /// Whether GRO is on for this socket: its receive batch needs slots of
    /// [`GRO_SLOT_PAYLOAD`].
    pub gro: bool,
    /// Whether the kernel reports its drop count on this socket.
    pub rxq_ovfl: bool,
}

/// Sets up one UDP socket for batched I/O: GRO if `gro` is asked for and the
/// kernel has it, the drop count if the kernel has it, and receive and send
/// buffers of `buffer` bytes (forced past the system limits where the
/// daemon may, else as much as the limits allow).
///
/// Fails only if the socket's buffer sizes cannot be read back (not a
/// socket); anything the kernel refuses is left off and reported in the
/// result.
pub(crate) fn prepare(
    fd: RawFd,
    offloads: &Offloads,
    gro: bool,
    buffer: usize,
) -> io::Result<SocketSetup> {
    let gro = gro
        && offloads.gro
        && match sys::set_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1) {
            Ok(()) => true,
            Err(e) => {
                debug!("UDP_GRO on fd {fd}: {e}");
                false
            }
        };
    let rxq_ovfl = offloads.rxq_ovfl
        && match sys::set_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1) {
            Ok(()) => true,
            Err(e) => {
                debug!("SO_RXQ_OVFL on fd {fd}: {e}");
                false
            }
        };
    let value = libc::c_int::try_from(buffer).unwrap_or(libc::c_int::MAX);
    let mut forced = true;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if sys::set_int(fd, libc::SOL_SOCKET, force, value).is_err() {
            forced = false;
            // The kernel caps this one at net.core.{r,w}mem_max.
            if let Err(e) = sys::set_int(fd, libc::SOL_SOCKET, plain, value) {
                debug!("socket buffer option {plain} on fd {fd}: {e}");
            }
        }
    }
    let size =
        |name| sys::get_int(fd, libc::SOL_SOCKET, name).map(|v| usize::try_from(v).unwrap_or(0));
    Ok(SocketSetup {
        recv_buffer: size(libc::SO_RCVBUF)?,
        send_buffer: size(libc::SO_SNDBUF)?,
        forced,
        gro,
        rxq_ovfl,
    })
}
