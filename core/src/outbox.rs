//! The push entry's outage buffer: a ring of datagrams over storage the
//! runtime provides.
//!
//! Core allocates nothing, so the bytes come from the caller: a boxed slice
//! on a host, a `static` array (or nothing at all) on a microcontroller.
//! The ring holds every datagram of one push service from the moment it
//! arrives until the exit acknowledges it, so a datagram sent into an
//! outage (the exit down, the link cut) is still here when the link comes
//! back and is sent again, in order. When the ring is full the oldest
//! datagram is dropped to make room, and the caller counts it.
//!
//! Each datagram is stored as a 2-byte little-endian length and its bytes,
//! wrapping around the end of the storage. Datagrams carry consecutive
//! sequence numbers, so only the oldest one's number is kept.

/// Storage an outbox may live in: any byte buffer the runtime owns.
pub trait Storage: AsRef<[u8]> + AsMut<[u8]> {}
impl<T: AsRef<[u8]> + AsMut<[u8]>> Storage for T {}

/// Bytes of the length before each stored datagram.
const LEN_BYTES: usize = 2;

/// What [`Outbox::push`] had to drop to make room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Datagrams dropped, oldest first.
    pub datagrams: u32,
    /// Of those, how many had never been sent at all.
    pub unsent: u32,
}

/// Why [`Outbox::push`] refused a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The datagram is larger than the whole storage (or 64 KiB).
    TooLarge,
    /// Its sequence number does not follow the last stored one.
    OutOfSequence,
}

/// A ring of consecutive datagrams: sent and waiting for their
/// acknowledgement, then not sent yet. See the [module docs](self).
#[derive(Debug)]
pub struct Outbox<B> {
    storage: B,
    /// Offset of the oldest datagram's length.
    head: usize,
    /// Bytes in use from `head`, wrapping.
    used: usize,
    /// Datagrams held.
    count: u32,
    /// Sequence number of the oldest datagram held.
    first_seq: u32,
    /// Datagrams from the oldest that were sent since the last rewind.
    sent: u32,
    /// Bytes those take.
    sent_bytes: usize,
}

impl<B: Storage> Outbox<B> {
    /// An empty outbox over `storage`; its whole length is used.
    pub fn new(storage: B) -> Self {
        Outbox {
            storage,
            head: 0,
            used: 0,
            count: 0,
            first_seq: 0,
            sent: 0,
            sent_bytes: 0,
        }
    }

    // ---- getters ----

    /// Bytes of storage.
    pub fn capacity(&self) -> usize {
        self.storage.as_ref().len()
    }

    /// Bytes in use, lengths included.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Datagrams held (sent and unacknowledged, or not sent yet).
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Datagrams held that were not sent since the last rewind.
    pub fn unsent(&self) -> u32 {
        self.count - self.sent
    }

    /// The sequence number of the oldest unsent datagram.
    pub fn next_unsent_seq(&self) -> Option<u32> {
        (self.sent < self.count).then(|| self.first_seq.wrapping_add(self.sent))
    }

    /// The storage back, for the runtime to reuse or free.
    pub fn into_storage(self) -> B {
        self.storage
    }

    /// The sequence number the next pushed datagram must carry, if any is
    /// held; any number is accepted into an empty outbox.
    fn expected_seq(&self) -> Option<u32> {
        (self.count > 0).then(|| self.first_seq.wrapping_add(self.count))
    }

    /// The oldest unsent datagram: its sequence number and its bytes,
    /// copied to the start of `out`, or `None` if all were sent or `out` is
    /// too short (the caller's buffer holds any datagram it let in).
    pub fn peek_unsent(&self, out: &mut [u8]) -> Option<(u32, usize)> {
        if self.sent == self.count {
            return None;
        }
        let at = self.offset(self.sent_bytes);
        let len = usize::from(u16::from_le_bytes(self.read::<LEN_BYTES>(at)));
        let out = out.get_mut(..len)?;
        self.copy_out(self.wrap(at + LEN_BYTES), out);
        Some((self.first_seq.wrapping_add(self.sent), len))
    }

    // ---- commands ----

    /// Appends datagram `seq` (the one after the newest held), dropping
    /// the oldest ones until it fits.
    pub fn push(&mut self, seq: u32, payload: &[u8]) -> Result<Evicted, PushError> {
        let need = LEN_BYTES + payload.len();
        if need > self.capacity() || payload.len() > usize::from(u16::MAX) {
            return Err(PushError::TooLarge);
        }
        if self.expected_seq().is_some_and(|e| e != seq) {
            return Err(PushError::OutOfSequence);
        }
        let mut evicted = Evicted::default();
        while self.capacity() - self.used < need {
            if self.sent == 0 {
                evicted.unsent += 1;
            }
            self.pop_front();
            evicted.datagrams += 1;
        }
        if self.count == 0 {
            self.first_seq = seq;
        }
        let at = self.offset(self.used);
        self.copy_in(at, &(payload.len() as u16).to_le_bytes());
        self.copy_in(self.wrap(at + LEN_BYTES), payload);
        self.used += need;
        self.count += 1;
        Ok(evicted)
    }

    /// The datagram [`Outbox::peek_unsent`] returned went out.
    pub fn mark_sent(&mut self) {
        if self.sent < self.count {
            let at = self.offset(self.sent_bytes);
            let len = usize::from(u16::from_le_bytes(self.read::<LEN_BYTES>(at)));
            self.sent += 1;
            self.sent_bytes += LEN_BYTES + len;
        }
    }

    /// The exit holds every datagram before `next`: forget them. A number
    /// outside what was sent is ignored (a stale acknowledgement).
    pub fn acknowledge(&mut self, next: u32) {
        let acked = next.wrapping_sub(self.first_seq);
        if acked > self.count {
            return;
        }
        for _ in 0..acked {
            self.pop_front();
        }
    }

    /// Everything held goes out again, oldest first: the exit may not have
    /// received what was sent (it restarted, or the link was down).
    pub fn rewind(&mut self) {
        self.sent = 0;
        self.sent_bytes = 0;
    }

    /// Drops every datagram held; returns how many.
    pub fn clear(&mut self) -> u32 {
        let n = self.count;
        self.head = 0;
        self.used = 0;
        self.count = 0;
        self.sent = 0;
        self.sent_bytes = 0;
        n
    }

    // ---- internals ----

    fn pop_front(&mut self) {
        if self.count == 0 {
            return;
        }
        let len = usize::from(u16::from_le_bytes(self.read::<LEN_BYTES>(self.head)));
        let bytes = LEN_BYTES + len;
        self.head = self.wrap(self.head + bytes);
        self.used -= bytes;
        self.count -= 1;
        self.first_seq = self.first_seq.wrapping_add(1);
        if self.sent > 0 {
            self.sent -= 1;
            self.sent_bytes -= bytes;
        }
        if self.count == 0 {
            self.head = 0;
        }
    }

    fn wrap(&self, at: usize) -> usize {
        let cap = self.capacity();
        if at >= cap {
            at - cap
        } else {
            at
        }
    }

    /// The storage offset `from_head` bytes after the head.
    fn offset(&self, from_head: usize) -> usize {
        self.wrap(self.head + from_head)
    }

    fn read<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0; N];
        self.copy_out(at, &mut out);
        out
    }

    fn copy_out(&self, at: usize, out: &mut [u8]) {
        let storage = self.storage.as_ref();
        let first = out.len().min(storage.len() - at);
        let (a, b) = out.split_at_mut(first);
        a.copy_from_slice(&storage[at..at + first]);
        b.copy_from_slice(&storage[..b.len()]);
    }

    fn copy_in(&mut self, at: usize, bytes: &[u8]) {
        let storage = self.storage.as_mut();
        let first = bytes.len().min(storage.len() - at);
        let (a, b) = bytes.split_at(first);
        storage[at..at + first].copy_from_slice(a);
        storage[..b.len()].copy_from_slice(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsent(o: &mut Outbox<[u8; 32]>) -> Option<(u32, heapless::Vec<u8, 32>)> {
        let mut out = [0; 32];
        let (seq, len) = o.peek_unsent(&mut out)?;
        o.mark_sent();
        Some((seq, heapless::Vec::from_slice(&out[..len]).unwrap()))
    }

    #[test]
    fn sends_in_order_and_forgets_what_is_acknowledged() {
        let mut o = Outbox::new([0u8; 32]);
        for (seq, p) in [(7u32, &b"one"[..]), (8, b"two"), (9, b"three")] {
            assert_eq!(o.push(seq, p), Ok(Evicted::default()));
        }
        assert_eq!(o.push(11, b"gap"), Err(PushError::OutOfSequence));
        assert_eq!(
            unsent(&mut o).unwrap(),
            (7, heapless::Vec::from_slice(b"one").unwrap())
        );
        assert_eq!(unsent(&mut o).unwrap().0, 8);
        assert_eq!((o.len(), o.unsent()), (3, 1));
        o.acknowledge(9);
        assert_eq!((o.len(), o.unsent()), (1, 1));
        assert_eq!(
            unsent(&mut o).unwrap(),
            (9, heapless::Vec::from_slice(b"three").unwrap())
        );
        assert_eq!(unsent(&mut o), None);
        // A stale or bogus acknowledgement changes nothing.
        o.acknowledge(3);
        o.acknowledge(20);
        assert_eq!(o.len(), 1);
        o.acknowledge(10);
        assert!(o.is_empty());
        assert_eq!(o.used(), 0);
    }

    #[test]
    fn rewind_sends_everything_held_again() {
        let mut o = Outbox::new([0u8; 32]);
        o.push(0, b"a").unwrap();
        o.push(1, b"b").unwrap();
        assert_eq!(unsent(&mut o).unwrap().0, 0);
        assert_eq!(unsent(&mut o).unwrap().0, 1);
        o.rewind();
        assert_eq!(o.unsent(), 2);
        assert_eq!(unsent(&mut o).unwrap().0, 0);
    }

    #[test]
    fn full_drops_the_oldest_and_wraps_around() {
        // 32 bytes hold three 8-byte datagrams (2 + 8 = 10 bytes each).
        let mut o = Outbox::new([0u8; 32]);
        for seq in 0..3u32 {
            o.push(seq, &[seq as u8; 8]).unwrap();
        }
        assert_eq!(unsent(&mut o).unwrap().0, 0);
        // The fourth drops datagram 0 (sent) and wraps the storage end.
        assert_eq!(
            o.push(3, &[3; 8]),
            Ok(Evicted {
                datagrams: 1,
                unsent: 0
            })
        );
        // The fifth drops datagram 1, never sent.
        assert_eq!(
            o.push(4, &[4; 8]),
            Ok(Evicted {
                datagrams: 1,
                unsent: 1
            })
        );
        let mut seen = heapless::Vec::<u32, 8>::new();
        while let Some((seq, bytes)) = unsent(&mut o) {
            assert_eq!(&bytes[..], &[seq as u8; 8]);
            seen.push(seq).unwrap();
        }
        assert_eq!(&seen[..], &[2, 3, 4]);
        assert_eq!(o.push(5, &[0; 31]), Err(PushError::TooLarge));
        assert_eq!(o.clear(), 3);
        // After clearing any number starts the sequence again.
        assert_eq!(o.push(100, b"x"), Ok(Evicted::default()));
    }

    #[test]
    fn zero_storage_holds_nothing() {
        let mut o = Outbox::new([0u8; 0]);
        assert_eq!(o.push(0, b""), Err(PushError::TooLarge));
        assert_eq!(o.peek_unsent(&mut [0; 4]), None);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut o = Outbox::new([0u8; 32]);
        o.push(u32::MAX, b"a").unwrap();
        o.push(0, b"b").unwrap();
        o.acknowledge(0);
        assert_eq!(o.len(), 1);
        assert_eq!(unsent(&mut o).unwrap().0, 0);
    }
}
