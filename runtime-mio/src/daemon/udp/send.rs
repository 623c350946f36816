//! [`SendBatch`]: datagrams that live in the caller's buffer, sent with as
//! few system calls as the kernel allows.

use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::RawFd;

use tracing::warn;

use super::sys::{self, NAME_LEN};
use super::{Offloads, Unavailable, BATCH, MAX_GSO_BYTES, MAX_GSO_SEGMENTS};

/// Control buffer of one GSO message: one `UDP_SEGMENT` with a `u16`.
const GSO_CONTROL: usize = sys::cmsg_space(std::mem::size_of::<u16>());

/// Why a datagram was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendFailure {
    /// The socket's send queue or the device queue was full (`EAGAIN`,
    /// `ENOBUFS`): dropped rather than waited for. The rest of that
    /// socket's datagrams in the same call are dropped with it, since each
    /// try would cost a system call and fail the same way.
    QueueFull,
    /// The kernel refused this datagram (`ECONNREFUSED` from an earlier ICMP
    /// error on a connected socket, `EMSGSIZE`, `ENETUNREACH`, ...): the errno.
    Error(i32),
    /// The range pushed lies outside the buffer given to `flush`, or is
    /// reversed.
    BadRange,
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendFailure::QueueFull => f.write_str("send queue full"),
            SendFailure::Error(errno) => std::io::Error::from_raw_os_error(*errno).fmt(f),
            SendFailure::BadRange => f.write_str("datagram outside the send buffer"),
        }
    }
}

/// One datagram of the last flush that was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendFailed {
    /// Its place among the pushes since the flush before (0-based).
    pub index: usize,
    /// The socket it was for.
    pub fd: RawFd,
    /// Why.
    pub why: SendFailure,
}

/// What one [`SendBatch::flush`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlushStats {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams dropped on a full queue ([`SendFailure::QueueFull`]).
    pub queue_full: usize,
    /// Datagrams the kernel refused ([`SendFailure::Error`]).
    pub errors: usize,
    /// Datagrams with a bad range ([`SendFailure::BadRange`]).
    pub bad_range: usize,
    /// `sendmmsg` calls made.
    pub calls: usize,
    /// GSO messages the kernel took (each carrying 2 to 64 datagrams).
    pub gso_messages: usize,
    /// Whether this flush turned GSO off (a GSO send failed with `EIO` or
    /// `EINVAL`); the datagrams concerned were sent again without it.
    pub gso_turned_off: bool,
}

/// One pushed datagram.
#[derive(Debug, Clone)]
struct Entry {
    fd: RawFd,
    to: Option<SocketAddr>,
    range: Range<usize>,
    valid: bool,
}

impl Entry {
    /// Its length; 0 for a reversed range (which `flush` marks invalid).
    fn len(&self) -> usize {
        self.range.end.saturating_sub(self.range.start)
    }
}

/// One message of a `sendmmsg` call: entries `first..first + count`, a GSO
/// message if `count > 1`.
#[derive(Debug, Clone, Copy)]
struct Span {
    first: usize,
    count: usize,
}

/// The batch is full: flush it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchFull;

/// A send batch of up to `capacity` datagrams, possibly for many sockets.
///
/// [`push`](Self::push) records where a datagram lives in the caller's
/// buffer; [`flush`](Self::flush) sends them all, in push order per socket:
/// - consecutive datagrams for the same socket and destination, of equal
///   size (the last of them may be shorter), go as one GSO message with one
///   iovec per datagram (at most [`MAX_GSO_SEGMENTS`] and [`MAX_GSO_BYTES`]);
/// - consecutive messages for the same socket go in one `sendmmsg` (at most
///   [`BATCH`] messages).
///
/// Nothing blocks: a full queue drops datagrams and counts them. Errors are
/// reported per datagram ([`failures`](Self::failures)) so the caller can
/// count them per socket.
pub(crate) struct SendBatch {
    entries: Vec<Entry>,
    capacity: usize,
    gso: bool,
    why_no_gso: Option<Unavailable>,
    iovs: Vec<libc::iovec>,
    names: Vec<[u8; NAME_LEN]>,
    control: Vec<u8>,
    hdrs: Vec<libc::mmsghdr>,
    spans: Vec<Span>,
    failures: Vec<SendFailed>,
}

// SAFETY: the raw pointers inside `hdrs` and `iovs` are written during
// `flush` and point into the batch's own buffers or the buffer `flush`
// borrows; between calls they are never followed.
#[allow(unsafe_code)]
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// A batch for up to `capacity` datagrams (at least one), using GSO if
    /// `offloads` says the kernel has it.
    pub(crate) fn new(capacity: usize, offloads: &Offloads) -> SendBatch {
        let capacity = capacity.max(1);
        let per_call = capacity.min(BATCH);
        SendBatch {
            entries: Vec::with_capacity(capacity),
            capacity,
            gso: offloads.gso,
            why_no_gso: offloads.why_no_gso(),
            iovs: vec![sys::zeroed_iovec(); capacity],
            names: vec![[0; NAME_LEN]; capacity],
            control: vec![0; capacity * GSO_CONTROL],
            hdrs: (0..per_call).map(|_| sys::zeroed_mmsghdr()).collect(),
            spans: Vec::with_capacity(per_call),
            failures: Vec::with_capacity(capacity),
        }
    }

    /// Records a datagram, `buf[range]` of the buffer the next
    /// [`flush`](Self::flush) gets, for `fd`, to `to` (`None` on a connected
    /// socket).
    pub(crate) fn push(
        &mut self,
        fd: RawFd,
        to: Option<SocketAddr>,
        range: Range<usize>,
    ) -> Result<(), BatchFull> {
        if self.entries.len() >= self.capacity {
            return Err(BatchFull);
        }
        self.entries.push(Entry {
            fd,
            to,
            range,
            valid: true,
        });
        Ok(())
    }

    /// Datagrams pushed and not yet flushed.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing waits to be flushed.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the next push would fail.
    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity
    }

    /// Whether GSO is in use (it may be turned off by a failed send).
    pub(crate) fn gso(&self) -> bool {
        self.gso
    }

    /// Why GSO is not in use, `None` when it is.
    pub(crate) fn why_no_gso(&self) -> Option<Unavailable> {
        self.why_no_gso
    }

    /// The datagrams of the last flush that were not sent, in push order.
    pub(crate) fn failures(&self) -> &[SendFailed] {
        &self.failures
    }

    /// Sends every datagram pushed since the last flush; their ranges index
    /// `buf`. The batch is empty afterwards.
    pub(crate) fn flush(&mut self, buf: &[u8]) -> FlushStats {
        let mut stats = FlushStats::default();
        self.failures.clear();
        let base = buf.as_ptr();
        for (i, e) in self.entries.iter_mut().enumerate() {
            e.valid = e.range.start <= e.range.end && e.range.end <= buf.len();
            if e.valid {
                self.iovs[i] = libc::iovec {
                    iov_base: base.wrapping_add(e.range.start).cast_mut().cast(),
                    iov_len: e.len(),
                };
            } else {
                stats.bad_range += 1;
                self.failures.push(SendFailed {
                    index: i,
                    fd: e.fd,
                    why: SendFailure::BadRange,
                });
            }
        }
        // Entries below this index go one per message: their GSO message
        // failed and they are being sent again one by one.
        let mut single_until = 0;
        let mut pos = 0;
        while pos < self.entries.len() {
            if !self.entries[pos].valid {
                pos += 1;
                continue;
            }
            let fd = self.entries[pos].fd;
            let end = self.build_call(pos, fd, single_until);
            match self.send_call(fd, &mut stats) {
                None => pos = end,
                Some(failed_gso) => {
                    pos = failed_gso.first;
                    single_until = failed_gso.first + failed_gso.count;
                }
            }
        }
        self.entries.clear();
        self.failures.sort_unstable_by_key(|f| f.index);
        stats
    }

    /// Lays out one `sendmmsg` call for `fd` from entry `pos` on: up to
    /// [`BATCH`] messages of consecutive entries for `fd`. Returns the entry
    /// after the last one it took.
    fn build_call(&mut self, pos: usize, fd: RawFd, single_until: usize) -> usize {
        self.spans.clear();
        let iovs = self.iovs.as_mut_ptr();
        let control = self.control.as_mut_ptr();
        let mut p = pos;
        while p < self.entries.len() && self.spans.len() < self.hdrs.len() {
            let e = &self.entries[p];
            if e.fd != fd {
                break;
            }
            if !e.valid {
                p += 1;
                continue;
            }
            let count = if self.gso && p >= single_until {
                self.run(p)
            } else {
                1
            };
            let h = &mut self.hdrs[self.spans.len()].msg_hdr;
            match e.to {
                Some(to) => {
                    let len = sys::encode_addr(&to, &mut self.names[p]);
                    h.msg_name = self.names[p].as_mut_ptr().cast();
                    h.msg_namelen = len;
                }
                None => {
                    h.msg_name = std::ptr::null_mut();
                    h.msg_namelen = 0;
                }
            }
            h.msg_iov = iovs.wrapping_add(p);
            h.msg_iovlen = count as _;
            h.msg_flags = 0;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            if count > 1 {
                let segment = u16::try_from(e.len()).unwrap_or(u16::MAX);
                let out = &mut self.control[p * GSO_CONTROL..(p + 1) * GSO_CONTROL];
                if let Some(len) = sys::put_cmsg(
                    out,
                    libc::SOL_UDP,
                    libc::UDP_SEGMENT,
                    &segment.to_ne_bytes(),
                ) {
                    h.msg_control = control.wrapping_add(p * GSO_CONTROL).cast();
                    h.msg_controllen = len as _;
                }
            }
            self.spans.push(Span { first: p, count });
            p += count;
        }
        p
    }

    /// How many entries from `p` on can go as one GSO message.
    fn run(&self, p: usize) -> usize {
        let first = &self.entries[p];
        let segment = first.len();
        if segment == 0 || segment > usize::from(u16::MAX) {
            return 1;
        }
        let mut count = 1;
        let mut total = segment;
        while count < MAX_GSO_SEGMENTS {
            let Some(e) = self.entries.get(p + count) else {
                break;
            };
            let len = e.len();
            if !e.valid
                || e.fd != first.fd
                || e.to != first.to
                || len == 0
                || len > segment
                || total + len > MAX_GSO_BYTES
            {
                break;
            }
            count += 1;
            total += len;
            if len < segment {
                break;
            }
        }
        count
    }

    /// Sends the laid-out call, retrying past messages the kernel refuses.
    /// Returns the span of a GSO message that failed other than on a full
    /// queue: its datagrams are to be sent again one by one.
    fn send_call(&mut self, fd: RawFd, stats: &mut FlushStats) -> Option<Span> {
        let total = self.spans.len();
        let mut done = 0;
        while done < total {
            // SAFETY: headers `done..total` were laid out by `build_call`
            // just now: their names and control messages point into this
            // batch's buffers, their iovecs into `self.iovs`, which point
            // into the buffer `flush` borrows, all within bounds (checked
            // when the ranges were validated) and unchanged during the call.
            #[allow(unsafe_code)]
            let result = unsafe { sys::sendmmsg(fd, &mut self.hdrs[done..total]) };
            stats.calls += 1;
            match result {
                Ok(n) if n > 0 => {
                    for span in &self.spans[done..(done + n).min(total)] {
                        stats.sent += span.count;
                        if span.count > 1 {
                            stats.gso_messages += 1;
                        }
                    }
                    done += n;
                }
                result => {
                    // Ok(0) cannot happen for a non-empty call; read it as a
                    // full queue rather than loop on it.
                    let errno = match result {
                        Ok(_) => libc::EAGAIN,
                        Err(e) => e.raw_os_error().unwrap_or(libc::EIO),
                    };
                    let span = self.spans[done];
                    if errno == libc::EAGAIN || errno == libc::ENOBUFS {
                        for k in done..total {
                            let span = self.spans[k];
                            self.fail(span, SendFailure::QueueFull, stats);
                        }
                        return None;
                    }
                    if span.count > 1 {
                        if (errno == libc::EIO || errno == libc::EINVAL) && self.gso {
                            self.gso = false;
                            self.why_no_gso = Some(Unavailable::FailedAt(errno));
                            stats.gso_turned_off = true;
                            warn!(
                                "a UDP GSO send failed ({}): sending without segmentation offload from now on",
                                std::io::Error::from_raw_os_error(errno)
                            );
                        }
                        return Some(span);
                    }
                    self.fail(span, SendFailure::Error(errno), stats);
                    done += 1;
                }
            }
        }
        None
    }

    /// Records every datagram of `span` as not sent.
    fn fail(&mut self, span: Span, why: SendFailure, stats: &mut FlushStats) {
        for index in span.first..span.first + span.count {
            match why {
                SendFailure::QueueFull => stats.queue_full += 1,
                SendFailure::Error(_) => stats.errors += 1,
                SendFailure::BadRange => stats.bad_range += 1,
            }
            self.failures.push(SendFailed {
                index,
                fd: self.entries[index].fd,
                why,
            });
        }
    }
}
