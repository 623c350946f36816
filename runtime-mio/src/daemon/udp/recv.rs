//! [`RecvBatch`]: many datagrams per `recvmmsg`, each read into its own slot
//! with room before and after it for sealing in place.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::RawFd;

use super::sys::{self, NAME_LEN};
use super::GRO_SLOT_PAYLOAD;

/// Control buffer per message: `UDP_GRO` and `SO_RXQ_OVFL` take 24 bytes
/// each on 64-bit Linux; the rest is slack so that an option someone else
/// turned on does not truncate them.
const CONTROL_LEN: usize = 128;

/// The kernel's count of datagrams it dropped on one socket, kept across
/// reads.
///
/// Linux attaches the socket's cumulative drop counter (32 bits, wrapping)
/// to each datagram it queues once the counter is non-zero; this keeps the
/// total as a `u64`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KernelDrops {
    last: u32,
    total: u64,
}

impl KernelDrops {
    /// Takes in a counter value read from the socket. Values arrive in queue
    /// order, so a value behind the last one (by less than half the range)
    /// is stale and ignored.
    pub(crate) fn observe(&mut self, counter: u32) {
        let delta = counter.wrapping_sub(self.last);
        if delta < 1 << 31 {
            self.total += u64::from(delta);
            self.last = counter;
        }
    }

    /// Datagrams the kernel dropped on the socket so far.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }
}

/// One message as received: which slot, from where, how long, cut how.
#[derive(Debug, Clone, Copy)]
struct Message {
    slot: usize,
    from: SocketAddr,
    len: usize,
    /// Segment size from `UDP_GRO`, or `len` for a single datagram.
    segment: usize,
}

/// One received datagram, borrowed from the batch.
#[derive(Debug)]
pub(crate) struct Datagram<'a> {
    /// Where it came from.
    pub from: SocketAddr,
    /// The whole receive slot the datagram sits in.
    pub slot: &'a mut [u8],
    /// The datagram within `slot`.
    pub range: Range<usize>,
    /// The part of `slot` this datagram may use (it contains `range`):
    /// the whole slot for a datagram alone in its slot; for segments of a GRO
    /// train, the first keeps the headroom, the last the tailroom, and none
    /// may touch its neighbours.
    pub room: Range<usize>,
    /// Which slot of the batch (0-based).
    pub slot_index: usize,
}

/// A receive batch: one buffer of `slots` slots, each `headroom` bytes, then
/// room for the payload, then `tailroom` bytes; one `recvmmsg` fills up to
/// `slots` of them, each datagram read at its slot's headroom offset.
///
/// Use: [`recv`](Self::recv), then [`next_datagram`](Self::next_datagram)
/// until it returns `None`, then `recv` again. A `recv` discards what was not
/// taken from the previous one.
///
/// One batch may serve many sockets in turn (the counters below then sum over
/// them, except [`kernel_drops`](Self::kernel_drops), which only means
/// something for a batch that serves one socket; a shared batch passes
/// [`drop_counter`](Self::drop_counter) to a [`KernelDrops`] per socket).
pub(crate) struct RecvBatch {
    buf: Vec<u8>,
    slots: usize,
    stride: usize,
    headroom: usize,
    payload: usize,
    names: Vec<[u8; NAME_LEN]>,
    control: Vec<u8>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    messages: Vec<Message>,
    /// The next datagram to hand out: message index, segment within it.
    cursor: (usize, usize),
    received: usize,
    truncated: u64,
    unknown_source: u64,
    counter: Option<u32>,
    drops: KernelDrops,
}

// SAFETY: the raw pointers inside `hdrs` and `iovs` only ever point into the
// batch's own buffers (and are rewritten before every call), so moving the
// batch to another thread moves everything they point to with it.
#[allow(unsafe_code)]
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// A batch of `slots` slots (at least one). With `gro`, each slot's
    /// payload room is at least [`GRO_SLOT_PAYLOAD`], so that a coalesced
    /// train is never truncated; use it only on a socket [`super::prepare`]
    /// turned GRO on for, and only where datagrams are opened in place
    /// (segments of a train have no headroom of their own).
    pub(crate) fn new(
        slots: usize,
        headroom: usize,
        slot_payload: usize,
        tailroom: usize,
        gro: bool,
    ) -> RecvBatch {
        let slots = slots.max(1);
        let payload = if gro {
            slot_payload.max(GRO_SLOT_PAYLOAD)
        } else {
            slot_payload
        };
        let stride = headroom + payload + tailroom;
        RecvBatch {
            buf: vec![0; slots * stride],
            slots,
            stride,
            headroom,
            payload,
            names: vec![[0; NAME_LEN]; slots],
            control: vec![0; slots * CONTROL_LEN],
            hdrs: (0..slots).map(|_| sys::zeroed_mmsghdr()).collect(),
            iovs: (0..slots).map(|_| sys::zeroed_iovec()).collect(),
            messages: Vec::with_capacity(slots),
            cursor: (0, 0),
            received: 0,
            truncated: 0,
            unknown_source: 0,
            counter: None,
            drops: KernelDrops::default(),
        }
    }

    /// Reads what `fd` has queued, up to one message per slot, without
    /// waiting: the number of datagrams ready (a GRO message counts once per
    /// segment). `Ok(0)` means messages came but none could be delivered
    /// (all truncated): read again. `WouldBlock` means the queue is empty.
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.messages.clear();
        self.cursor = (0, 0);
        self.received = 0;
        self.counter = None;
        let base = self.buf.as_mut_ptr();
        let control = self.control.as_mut_ptr();
        let iovs = self.iovs.as_mut_ptr();
        for i in 0..self.slots {
            self.iovs[i] = libc::iovec {
                iov_base: base.wrapping_add(i * self.stride + self.headroom).cast(),
                iov_len: self.payload,
            };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = self.names[i].as_mut_ptr().cast();
            h.msg_hdr.msg_namelen = NAME_LEN as libc::socklen_t;
            h.msg_hdr.msg_iov = iovs.wrapping_add(i);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = control.wrapping_add(i * CONTROL_LEN).cast();
            h.msg_hdr.msg_controllen = CONTROL_LEN as _;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at this batch's own name, iovec and
        // control buffers, each iovec at its slot's payload room; all of
        // them are valid for writes of the lengths given and none is touched
        // during the call.
        #[allow(unsafe_code)]
        let n = unsafe { sys::recvmmsg(fd, &mut self.hdrs)? };
        let n = n.min(self.slots);
        self.received = n;
        let mut ready = 0;
        for i in 0..n {
            let h = &self.hdrs[i];
            let flags = h.msg_hdr.msg_flags;
            let len = (h.msg_len as usize).min(self.payload);
            // `size_t` with glibc, `socklen_t` with musl.
            #[allow(clippy::unnecessary_cast)]
            let control_len = (h.msg_hdr.msg_controllen as usize).min(CONTROL_LEN);
            let control = &self.control[i * CONTROL_LEN..i * CONTROL_LEN + control_len];
            let mut segment = len;
            for c in sys::cmsgs(control) {
                match (c.level, c.kind) {
                    (libc::SOL_UDP, libc::UDP_GRO) => {
                        if let Some(size) = c.u32() {
                            segment = size as usize;
                        }
                    }
                    (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                        if let Some(counter) = c.u32() {
                            self.counter = Some(counter);
                            self.drops.observe(counter);
                        }
                    }
                    _ => {}
                }
            }
            // A cut-off control buffer may have lost the GRO segment size:
            // the message cannot be split safely, so it goes with the
            // truncated ones.
            if flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
                self.truncated += 1;
                continue;
            }
            let Some(from) = sys::decode_addr(&self.names[i], h.msg_hdr.msg_namelen) else {
                self.unknown_source += 1;
                continue;
            };
            if segment == 0 || segment > len {
                segment = len;
            }
            ready += if len == 0 { 1 } else { len.div_ceil(segment) };
            self.messages.push(Message {
                slot: i,
                from,
                len,
                segment,
            });
        }
        Ok(ready)
    }

    /// The next datagram of the last [`recv`](Self::recv), or `None` when
    /// all have been handed out.
    pub(crate) fn next_datagram(&mut self) -> Option<Datagram<'_>> {
        let (m, seg) = self.cursor;
        let message = *self.messages.get(m)?;
        let segments = if message.len == 0 {
            1
        } else {
            message.len.div_ceil(message.segment)
        };
        self.cursor = if seg + 1 < segments {
            (m, seg + 1)
        } else {
            (m + 1, 0)
        };
        let start = self.headroom + seg * message.segment;
        let end = self.headroom + ((seg + 1) * message.segment).min(message.len);
        let room_start = if seg == 0 { 0 } else { start };
        let room_end = if seg + 1 == segments {
            self.stride
        } else {
            end
        };
        let base = message.slot * self.stride;
        Some(Datagram {
            from: message.from,
            slot: &mut self.buf[base..base + self.stride],
            range: start..end,
            room: room_start..room_end,
            slot_index: message.slot,
        })
    }

    /// The whole buffer, slot after slot: what a [`super::SendBatch`] of
    /// datagrams handled in place in this batch flushes from. A datagram
    /// of slot `i` lies at `i * stride()` plus its range.
    pub(crate) fn buffer(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes from one slot to the next.
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// Slot `i` whole, to fill by other means than `recv` (a TUN read).
    pub(crate) fn slot_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let base = i.checked_mul(self.stride)?;
        self.buf.get_mut(base..base + self.stride)
    }

    /// Where a slot's payload starts: its headroom.
    pub(crate) fn headroom(&self) -> usize {
        self.headroom
    }

    /// Slots in the batch: the most messages one `recv` reads.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// Payload room of each slot (at least [`GRO_SLOT_PAYLOAD`] with GRO).
    pub(crate) fn slot_payload(&self) -> usize {
        self.payload
    }

    /// Messages the last `recv` took from the kernel, truncated ones
    /// included (with GRO, fewer than the datagrams it yields).
    pub(crate) fn messages(&self) -> usize {
        self.received
    }

    /// Messages larger than their slot (or with a cut-off control buffer),
    /// dropped, since this batch was made.
    pub(crate) fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Messages from an address that is neither IPv4 nor IPv6, dropped.
    pub(crate) fn unknown_source(&self) -> u64 {
        self.unknown_source
    }

    /// The socket's cumulative drop counter as of the newest message of the
    /// last `recv`, if the kernel sent one (it does once the counter is
    /// non-zero and `SO_RXQ_OVFL` is on), for a per-socket [`KernelDrops`].
    pub(crate) fn drop_counter(&self) -> Option<u32> {
        self.counter
    }

    /// Datagrams the kernel dropped on the socket this batch reads (for a
    /// batch that serves one socket).
    pub(crate) fn kernel_drops(&self) -> u64 {
        self.drops.total()
    }
}
