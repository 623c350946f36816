//! Push mode: one way, entry to exit, with every datagram accounted for.
//!
//! The entry ships every datagram sent to its listen socket, from anyone;
//! the exit sends them all from one socket connected to its target. There
//! are no channels and no replies to customers: state is per service (and
//! per peer at the exit), not per client. A datagram coming back to the
//! exit's socket is dropped as [`ServiceDrop::WrongDirection`]. A push exit
//! may admit any peer ([`Peers::Any`](super::Peers::Any)), so one collector
//! takes pushes from many machines.
//!
//! # Sequence numbers and acknowledgements
//!
//! Every push datagram carries a sequence number in the channel-number
//! field of its service header ([`crate::wire::ServiceHeaderRepr`]): 0 for
//! the first datagram of the entry's incarnation, then one more for each
//! datagram the entry numbers, wrapping at 2^32. A datagram the entry drops
//! before numbering it (too big, no session and nothing to stage it in) is
//! counted at the entry only.
//!
//! The exit tracks the numbers of each peer ([`PushRx`]): a jump forward
//! counts the numbers skipped as [`ServiceStats::lost_in_transit`]; one of
//! those arriving later (within a window of [`WINDOW`]) is taken off that
//! count and counted [`ServiceStats::reordered`]; a number seen already is
//! dropped as [`ServiceDrop::Duplicate`], never delivered twice. The
//! tracker starts over, without counting anything, when the peer restarts
//! ([`LinkEvent::PeerRestarted`](crate::link::LinkEvent::PeerRestarted):
//! the new incarnation numbers from 0 again) and when this node starts, so
//! a restart of either side is never a huge loss. A jump of more than
//! [`EPOCH_JUMP`] either way also starts over.
//!
//! The exit acknowledges: at most [`ACK_DELAY`] after a datagram, or at
//! once after [`ACK_EVERY`], it sends a frame of the service with no
//! payload whose number is the lowest it is still missing (all earlier
//! ones it has, or gave up on as out of the window). The entry learns from
//! it what reached the exit.
//!
//! # The outage buffer
//!
//! With storage from [`Node::set_push_buffer`], a push entry keeps each
//! datagram in an [`Outbox`] until the exit acknowledges it. While the link
//! is down datagrams wait there, and the link is brought up; when the exit
//! restarted, or a new session comes up after acknowledgements stopped for
//! [`ACK_STALE`], everything unacknowledged goes out again in order, and
//! the exit's tracker drops what it had already.
//!
//! A link can also go silent with its session still up (a cut between two
//! running nodes): once the entry has been acknowledged at all, sent
//! datagrams that go [`ACK_STALE`] without an acknowledgement that moves
//! stop it sending into the silence. It holds every new datagram and
//! probes with its oldest unacknowledged one, once every [`ACK_STALE`];
//! the first acknowledgement that moves (or a new session) ends the probe,
//! and everything held goes out in order. A gap the exit still has in its
//! window when the probe comes is filled late (counted reordered); one it
//! gave up on (more than [`WINDOW`] later datagrams came first) stays
//! counted as lost in transit.
//!
//! When the buffer is full the oldest datagram goes: counted
//! [`ServiceDrop::BufferFull`] if it was never sent,
//! [`ServiceStats::unconfirmed`] if it was sent but not acknowledged.
//! Without a buffer, what the exit had not acknowledged when it restarted
//! is counted [`ServiceStats::unconfirmed`].
//!
//! The buffer survives an outage of the exit or of the link, not a restart
//! of the entry. A datagram the exit delivered but could not acknowledge
//! before it died is delivered again by its next incarnation.
//!
//! The exit keeps one tracker per peer: a second push service from the
//! same peer is delivered but not tracked nor acknowledged (a buffer on
//! it, never acknowledged, never holds datagrams back to probe: it sends
//! each at once, and drops the oldest when full, counted unconfirmed).

use core::ops::Range;

use rand_core::{CryptoRng, RngCore};

use super::{Node, Output, Peers, ServiceDrop, ServiceError, ServiceId, SocketId};
use crate::link::{PeerId, Transmit};
use crate::outbox::{Outbox, PushError, Storage};
use core::time::Duration;

use crate::time::Instant;
use crate::wire::{DataPacket, ServiceHeaderRepr};

/// The exit acknowledges at most this long after a push datagram arrives.
pub const ACK_DELAY: Duration = Duration::from_millis(20);
/// ... or at once after this many unacknowledged datagrams of one peer.
pub const ACK_EVERY: u16 = 32;
/// Sequence numbers behind the newest that the exit still tells apart as
/// late (delivered) or duplicate (dropped).
pub const WINDOW: u32 = 64;
/// A sequence number further than this from the expected one, either way,
/// starts a new sequence instead of counting loss.
pub const EPOCH_JUMP: u32 = 1 << 24;
/// A buffered entry whose acknowledgements stopped this long ago sends its
/// whole buffer again when a new session comes up; one whose sent
/// datagrams wait this long for an acknowledgement holds what comes and
/// probes, once every `ACK_STALE`, with its oldest unacknowledged datagram.
pub const ACK_STALE: Duration = Duration::from_secs(1);

/// The exit's view of one peer's push sequence.
#[derive(Debug, Clone, Copy)]
pub(super) struct PushRx {
    active: bool,
    service: ServiceId,
    /// One more than the newest number received.
    next: u32,
    /// Bit `i` set: number `next - 1 - i` was received (or predates the
    /// tracker).
    seen: u64,
    /// Datagrams delivered since the last acknowledgement.
    unacked: u16,
    /// The peer waits in the node's acknowledgement queue.
    ack_queued: bool,
}

/// What the tracker made of a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Newer than any before; `lost` numbers were skipped.
    New { lost: u32 },
    /// A number skipped before, filling its gap.
    Late,
    /// Received already, or too old to tell.
    Duplicate,
}

impl PushRx {
    pub(super) const IDLE: PushRx = PushRx {
        active: false,
        service: ServiceId::new(0),
        next: 0,
        seen: 0,
        unacked: 0,
        ack_queued: false,
    };

    /// Forgets the sequence (the peer restarted); a queued acknowledgement
    /// is skipped.
    pub(super) fn reset(&mut self) {
        self.active = false;
        self.unacked = 0;
    }

    fn start(&mut self, service: ServiceId, seq: u32) {
        self.active = true;
        self.service = service;
        self.next = seq.wrapping_add(1);
        self.seen = u64::MAX;
    }

    fn receive(&mut self, service: ServiceId, seq: u32) -> Seen {
        if !self.active {
            self.start(service, seq);
            return Seen::New { lost: 0 };
        }
        let ahead = seq.wrapping_sub(self.next);
        if ahead < EPOCH_JUMP {
            self.seen = if ahead + 1 >= 64 {
                0
            } else {
                self.seen << (ahead + 1)
            } | 1;
            self.next = seq.wrapping_add(1);
            return Seen::New { lost: ahead };
        }
        let back = self.next.wrapping_sub(1).wrapping_sub(seq);
        if back < WINDOW {
            let bit = 1u64 << back;
            if self.seen & bit != 0 {
                return Seen::Duplicate;
            }
            self.seen |= bit;
            return Seen::Late;
        }
        if back < EPOCH_JUMP {
            return Seen::Duplicate;
        }
        self.start(service, seq);
        Seen::New { lost: 0 }
    }

    /// The lowest number still missing: every earlier one was received or
    /// is out of the window.
    fn ack(&self) -> u32 {
        let missing = !self.seen;
        if missing == 0 {
            self.next
        } else {
            self.next.wrapping_sub(1 + (63 - missing.leading_zeros()))
        }
    }
}

/// A push entry's side of the sequence.
#[derive(Debug)]
pub(super) struct PushTx<B> {
    /// The number of the next datagram.
    next: u32,
    /// The exit has (or gave up on) every number before this.
    acked: u32,
    /// When an acknowledgement last moved `acked`.
    last_ack: Instant,
    /// A buffered entry: since when datagrams it sent wait for an
    /// acknowledgement that moves `acked`; `None` while none wait.
    unanswered_since: Option<Instant>,
    /// A buffered entry whose acknowledgements stopped ([`ACK_STALE`]):
    /// when it sends its oldest unacknowledged datagram again, holding
    /// everything else until an acknowledgement moves.
    probe_due: Option<Instant>,
    /// An acknowledgement ever moved `acked`: the exit tracks this service
    /// (one push service per peer is tracked), so silence means loss.
    answered: bool,
    pub(super) outbox: Option<Outbox<B>>,
}

impl<B> PushTx<B> {
    pub(super) fn new() -> Self {
        PushTx {
            next: 0,
            acked: 0,
            last_ack: Instant::ZERO,
            unanswered_since: None,
            probe_due: None,
            answered: false,
            outbox: None,
        }
    }
}

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize, B: Storage>
    Node<R, P, S, C, B>
{
    /// Bytes of push entry `service`'s outage buffer, `None` without one
    /// (or no such push entry): a runtime reloading its configuration
    /// tells from it which services need their buffer again (a replaced
    /// service's went with it).
    pub fn push_buffer_capacity(&self, service: ServiceId) -> Option<usize> {
        let si = self.service_index(service)?;
        self.services[si].push.outbox.as_ref().map(Outbox::capacity)
    }

    /// Gives push entry `service` an outage buffer over `storage`
    /// (see the `node::push` module docs); what it held before is dropped and
    /// returned. Zero-length storage works and holds nothing.
    pub fn set_push_buffer(
        &mut self,
        service: ServiceId,
        storage: B,
    ) -> Result<Option<B>, ServiceError> {
        let si = self
            .service_index(service)
            .filter(|&si| matches!(self.services[si].config.role, super::Role::PushEntry { .. }))
            .ok_or(ServiceError::NotPushEntry)?;
        let old = self.services[si].push.outbox.replace(Outbox::new(storage));
        if old.is_none() {
            self.outboxes += 1;
        }
        Ok(old.map(Outbox::into_storage))
    }

    /// A datagram on the listen socket of push entry `si`.
    pub(super) fn push_from_sender(
        &mut self,
        now: Instant,
        si: usize,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        let peer = self.sole_peer(si)?;
        let seq = self.services[si].push.next;
        let header = self.push_header(si, seq);
        // Too big is refused before a number is spent on it.
        self.check_size(peer, &header, payload.len())?;
        if self.services[si].push.outbox.is_none() {
            let result = self.seal(now, peer, &header, buf, payload);
            if result.is_ok() {
                self.services[si].push.next = seq.wrapping_add(1);
            }
            return result;
        }
        let up = self.link.is_up(peer, now);
        self.push_check_stalled(now, si);
        let s = &mut self.services[si];
        let probing = s.push.probe_due.is_some();
        let Some(outbox) = s.push.outbox.as_mut() else {
            return Err(ServiceDrop::BufferLayout);
        };
        let bytes = buf.get(payload.clone()).ok_or(ServiceDrop::BufferLayout)?;
        let evicted = match outbox.push(seq, bytes) {
            Ok(evicted) => evicted,
            // Larger than the whole buffer, or the buffer lost track: drop
            // it rather than send it out of order.
            Err(PushError::TooLarge | PushError::OutOfSequence) => {
                return Err(ServiceDrop::BufferFull)
            }
        };
        let waiting = outbox.unsent() > 1 || probing;
        s.push.next = seq.wrapping_add(1);
        for _ in 0..evicted.unsent {
            s.stats.drops.add(ServiceDrop::BufferFull);
        }
        s.stats.unconfirmed += u64::from(evicted.datagrams - evicted.unsent);
        self.unreported_buffer_drops = self.unreported_buffer_drops.saturating_add(evicted.unsent);
        if waiting || !up {
            self.link.connect(peer, now);
            return Ok(Output::Queued);
        }
        match self.seal(now, peer, &header, buf, payload) {
            Ok(output) => {
                let push = &mut self.services[si].push;
                if let Some(o) = push.outbox.as_mut() {
                    o.mark_sent();
                }
                push.unanswered_since.get_or_insert(now);
                Ok(output)
            }
            // It waits in the buffer.
            Err(ServiceDrop::NoSession) => Ok(Output::Queued),
            Err(reason) => Err(reason),
        }
    }

    fn push_header(&self, si: usize, seq: u32) -> ServiceHeaderRepr {
        ServiceHeaderRepr {
            service: self.services[si].config.id,
            from_entry: true,
            channel: None,
            destination: None,
            sequence: Some(seq),
        }
    }

    /// Datagram `seq` of push exit `si` from `peer`: tracked, acknowledged
    /// and sent to the target unless it is a duplicate.
    pub(super) fn push_to_target(
        &mut self,
        now: Instant,
        si: usize,
        peer: PeerId,
        seq: u32,
        payload: Range<usize>,
    ) -> Result<Output, ServiceDrop> {
        let service = self.services[si].config.id;
        let Some(rx) = self.push_rx.get_mut(usize::from(peer.0)) else {
            return Ok(to_target(service, payload));
        };
        if rx.active && rx.service != service {
            // One tracker per peer: this service goes untracked.
            return Ok(to_target(service, payload));
        }
        let seen = rx.receive(service, seq);
        self.queue_ack(now, peer);
        let stats = &mut self.services[si].stats;
        match seen {
            Seen::New { lost } => stats.lost_in_transit += u64::from(lost),
            Seen::Late => {
                stats.lost_in_transit = stats.lost_in_transit.saturating_sub(1);
                stats.reordered += 1;
            }
            Seen::Duplicate => return Err(ServiceDrop::Duplicate),
        }
        Ok(to_target(service, payload))
    }

    /// An acknowledgement for push entry `si`: the exit has every number
    /// before `next`.
    pub(super) fn push_acknowledged(&mut self, now: Instant, si: usize, next: u32) -> Output {
        let push = &mut self.services[si].push;
        let outstanding = push.next.wrapping_sub(push.acked);
        let advance = next.wrapping_sub(push.acked);
        if advance <= outstanding {
            if advance > 0 {
                push.last_ack = now;
                push.answered = true;
                push.probe_due = None;
            }
            push.acked = next;
            if let Some(o) = push.outbox.as_mut() {
                o.acknowledge(next);
                if advance > 0 {
                    // Sent datagrams still waiting wait from now.
                    push.unanswered_since = (o.unsent() < o.len()).then_some(now);
                }
            }
        }
        Output::Consumed
    }

    fn queue_ack(&mut self, now: Instant, peer: PeerId) {
        let Some(rx) = self.push_rx.get_mut(usize::from(peer.0)) else {
            return;
        };
        rx.unacked = rx.unacked.saturating_add(1);
        if !rx.ack_queued && self.acks.push_back(peer).is_ok() {
            rx.ack_queued = true;
        }
        let due = if rx.unacked >= ACK_EVERY {
            now
        } else {
            now + ACK_DELAY
        };
        self.ack_due = Some(self.ack_due.map_or(due, |d| d.min(due)));
    }

    /// When the next acknowledgement is due.
    pub(super) fn ack_due(&self) -> Option<Instant> {
        self.ack_due
    }

    /// An acknowledgement sealed into `buf`, when they are due: all queued
    /// ones go out together.
    pub(super) fn poll_ack(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if self.ack_due.is_none_or(|due| now < due) {
            return None;
        }
        while let Some(peer) = self.acks.pop_front() {
            let Some(rx) = self.push_rx.get_mut(usize::from(peer.0)) else {
                continue;
            };
            rx.ack_queued = false;
            rx.unacked = 0;
            if !rx.active {
                continue;
            }
            let header = ServiceHeaderRepr {
                service: rx.service,
                from_entry: false,
                channel: None,
                destination: None,
                sequence: Some(rx.ack()),
            };
            let start = DataPacket::<&[u8]>::HEADER_LEN;
            let Some(Ok(len)) = buf.get_mut(start..).map(|b| header.emit(b)) else {
                continue;
            };
            if let Ok(t) = self.link.seal(now, peer, buf, len) {
                return Some(t);
            }
        }
        self.ack_due = None;
        None
    }

    /// The oldest unsent datagram of a buffered push entry whose link is
    /// up, sealed into `buf`. A link that is down is brought up.
    pub(super) fn poll_outbox(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if self.outboxes == 0 {
            return None;
        }
        for si in 0..self.services.len() {
            self.push_check_stalled(now, si);
            let s = &mut self.services[si];
            let (Some(o), Peers::One(peer)) = (s.push.outbox.as_mut(), s.config.peers) else {
                continue;
            };
            let probe = s.push.probe_due;
            if probe.is_some_and(|due| now < due) {
                continue;
            }
            if probe.is_some() {
                // The probe: the oldest unacknowledged datagram again (if
                // it cannot go now, at the next one).
                o.rewind();
                s.push.probe_due = Some(now + ACK_STALE);
            }
            if o.unsent() == 0 {
                continue;
            }
            if !self.link.is_up(peer, now) {
                self.link.connect(peer, now);
                continue;
            }
            let Some(seq) = o.next_unsent_seq() else {
                continue;
            };
            let header = self.push_header(si, seq);
            let start = DataPacket::<&[u8]>::HEADER_LEN;
            let header_len = header.buffer_len();
            let room = buf
                .len()
                .saturating_sub(start + header_len + DataPacket::<&[u8]>::TAG_LEN);
            let Some(o) = self.services[si].push.outbox.as_mut() else {
                continue;
            };
            let body = start + header_len;
            let Some((_, len)) = o.peek_unsent(&mut buf[body..body + room.min(u16::MAX as usize)])
            else {
                // Not for this buffer: give it up rather than stall.
                o.mark_sent();
                self.services[si].stats.drops.add(ServiceDrop::TooBig);
                continue;
            };
            if header.emit(&mut buf[start..body]).is_err() {
                continue;
            }
            match self.link.seal(now, peer, buf, header_len + len) {
                Ok(t) => {
                    let s = &mut self.services[si];
                    if let Some(o) = s.push.outbox.as_mut() {
                        o.mark_sent();
                    }
                    s.push.unanswered_since.get_or_insert(now);
                    s.stats.to_peer.add(len);
                    return Some(t);
                }
                Err(_) => continue,
            }
        }
        None
    }

    /// `peer` restarted: the exit's trackers for it start over; an entry's
    /// unacknowledged datagrams go out again, or are counted unconfirmed.
    pub(super) fn push_peer_restarted(&mut self, peer: PeerId) {
        if let Some(rx) = self.push_rx.get_mut(usize::from(peer.0)) {
            rx.reset();
        }
        for s in self.services.iter_mut() {
            if s.config.peers != Peers::One(peer)
                || !matches!(s.config.role, super::Role::PushEntry { .. })
            {
                continue;
            }
            s.push.unanswered_since = None;
            s.push.probe_due = None;
            match s.push.outbox.as_mut() {
                Some(o) => o.rewind(),
                None => {
                    s.stats.unconfirmed += u64::from(s.push.next.wrapping_sub(s.push.acked));
                }
            }
            s.push.acked = s.push.next;
        }
    }

    /// A new session with `peer`: a buffered entry whose acknowledgements
    /// stopped sends everything unacknowledged again.
    pub(super) fn push_session_up(&mut self, now: Instant, peer: PeerId) {
        if self.outboxes == 0 {
            return;
        }
        for s in self.services.iter_mut() {
            if s.config.peers != Peers::One(peer) {
                continue;
            }
            let stale = now.saturating_since(s.push.last_ack) >= ACK_STALE;
            let probing = s.push.probe_due.is_some();
            if let Some(o) = s.push.outbox.as_mut() {
                if (stale || probing) && o.unsent() < o.len() {
                    o.rewind();
                    s.push.unanswered_since = None;
                }
            }
            // A new session: everything held goes out, not just a probe.
            s.push.probe_due = None;
        }
    }
}

impl<R: RngCore + CryptoRng, const P: usize, const S: usize, const C: usize, B: Storage>
    Node<R, P, S, C, B>
{
    /// A buffered push entry whose sent datagrams went unacknowledged for
    /// [`ACK_STALE`] stops sending into what looks like a cut link: it
    /// rewinds and probes with its oldest unacknowledged datagram (see
    /// the module docs).
    fn push_check_stalled(&mut self, now: Instant, si: usize) {
        let push = &mut self.services[si].push;
        if push.outbox.as_ref().is_some_and(Outbox::is_empty) {
            // Nothing waits (a full buffer may have dropped it).
            push.unanswered_since = None;
            push.probe_due = None;
            return;
        }
        let stalled = push.answered
            && push.probe_due.is_none()
            && push
                .unanswered_since
                .is_some_and(|since| now.saturating_since(since) >= ACK_STALE);
        if let (true, Some(o)) = (stalled, push.outbox.as_mut()) {
            o.rewind();
            push.probe_due = Some(now);
        }
    }

    /// When a buffered push entry next needs the clock: to notice that its
    /// acknowledgements stopped, or to probe again.
    pub(super) fn push_timeout(&self) -> Option<Instant> {
        if self.outboxes == 0 {
            return None;
        }
        self.services
            .iter()
            .filter(|s| s.push.outbox.is_some())
            .filter_map(|s| match (s.push.probe_due, s.push.unanswered_since) {
                (Some(due), _) => Some(due),
                (None, Some(since)) if s.push.answered => Some(since + ACK_STALE),
                _ => None,
            })
            .min()
    }
}

/// A frame of push service `service` goes to the target, from the exit's
/// one connected socket.
fn to_target(service: ServiceId, payload: Range<usize>) -> Output {
    Output::Customer {
        socket: SocketId::Service(service),
        to: None,
        range: payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u32]) -> (PushRx, [u32; 3]) {
        let mut rx = PushRx::IDLE;
        let mut counts = [0u32; 3];
        for &seq in seqs {
            match rx.receive(ServiceId::new(1), seq) {
                Seen::New { lost } => counts[0] += lost,
                Seen::Late => {
                    counts[0] -= 1;
                    counts[1] += 1
                }
                Seen::Duplicate => counts[2] += 1,
            }
        }
        (rx, counts)
    }

    #[test]
    fn in_order_counts_nothing_and_acknowledges_all() {
        let (rx, counts) = run(&[5, 6, 7, 8]);
        assert_eq!(counts, [0, 0, 0]);
        assert_eq!(rx.ack(), 9);
    }

    #[test]
    fn gaps_reordering_and_duplicates_are_counted_exactly() {
        // 2 and 4 skipped; 4 comes late; 3 and 6 twice.
        let (rx, [lost, late, dup]) = run(&[0, 1, 3, 5, 4, 6, 3, 6]);
        assert_eq!((lost, late, dup), (1, 1, 2));
        // 2 is still missing.
        assert_eq!(rx.ack(), 2);
    }

    #[test]
    fn a_gap_older_than_the_window_is_given_up() {
        let mut seqs = heapless::Vec::<u32, 80>::new();
        seqs.push(0).unwrap();
        for s in 2..70 {
            seqs.push(s).unwrap();
        }
        seqs.push(1).unwrap();
        let (rx, [lost, late, dup]) = run(&seqs);
        // 1 fell out of the window: lost, and its late copy is refused.
        assert_eq!((lost, late, dup), (1, 0, 1));
        assert_eq!(rx.ack(), 70);
    }

    #[test]
    fn a_sequence_starting_over_is_not_a_huge_loss() {
        let (_, counts) = run(&[1_000_000_000, 1_000_000_001, 0, 1, 2]);
        assert_eq!(counts, [0, 0, 0]);
        let (_, counts) = run(&[u32::MAX - 1, u32::MAX, 0, 1]);
        assert_eq!(counts, [0, 0, 0], "wrapping is not a restart either");
    }

    #[test]
    fn reset_starts_over_at_any_number() {
        let mut rx = PushRx::IDLE;
        assert_eq!(rx.receive(ServiceId::new(1), 40), Seen::New { lost: 0 });
        rx.reset();
        assert_eq!(rx.receive(ServiceId::new(1), 0), Seen::New { lost: 0 });
        assert_eq!(rx.receive(ServiceId::new(1), 3), Seen::New { lost: 2 });
    }
}
