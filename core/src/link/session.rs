//! One set of transport keys with its counters and replay window.

use core::time::Duration;

use crate::crypto::{Aead, AuthFailed, TAG_LEN};
use crate::noise::TransportKeys;
use crate::replay::{ReplayError, ReplayWindow};
use crate::time::Instant;
use crate::wire::{DataPacket, DataRepr, ProbePacket, ProbeRepr};

/// Start a new handshake once this many messages were sent on a session.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// Never use a counter at or past this on a session: the last 2^13 values
/// stay unused so the replay window can never wrap.
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// The initiator of a session starts a new handshake when sending on a
/// session this old.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// A session this old is neither sent nor received on.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);

/// A session's transport keys, counters and replay window.
///
/// Invariants: `next_send` only grows and never reaches
/// [`REJECT_AFTER_MESSAGES`]; the receive side accepts each counter at most
/// once (the replay window is updated only after authentication).
pub(crate) struct Session {
    /// Our index: the peer puts it in every frame it sends on this session.
    pub local_index: u32,
    /// The peer's index: we put it in every frame we send.
    pub remote_index: u32,
    /// When the handshake that made this session completed.
    pub created: Instant,
    /// Whether we sent the initiation of this session's handshake. Only the
    /// initiator rekeys by time, so both sides do not rekey at once.
    pub initiator: bool,
    /// A responder may not send on a session until the initiator has shown it
    /// holds the keys by sending on it (WireGuard's key confirmation).
    pub confirmed: bool,
    send: Aead,
    recv: Aead,
    next_send: u64,
    window: ReplayWindow,
}

/// Why a session refused to seal or open a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionError {
    /// Older than [`REJECT_AFTER_TIME`].
    Expired,
    /// The send counter reached [`REJECT_AFTER_MESSAGES`].
    CounterExhausted,
    /// The counter was already received or is too old for the window.
    Replay(ReplayError),
    /// The frame failed authentication.
    Auth,
}

impl Session {
    pub fn new(
        keys: &TransportKeys,
        initiator: bool,
        local_index: u32,
        remote_index: u32,
        now: Instant,
    ) -> Self {
        let (send, recv) = if initiator {
            keys.for_initiator()
        } else {
            keys.for_responder()
        };
        Session {
            local_index,
            remote_index,
            created: now,
            initiator,
            confirmed: initiator,
            send: Aead::new(send),
            recv: Aead::new(recv),
            next_send: 0,
            window: ReplayWindow::new(),
        }
    }

    /// Age of the session at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        now - self.created
    }

    /// Whether the session may still carry frames at `now`.
    pub fn is_alive(&self, now: Instant) -> bool {
        self.age(now) < REJECT_AFTER_TIME
    }

    /// Whether this session should be replaced: old, or many messages sent.
    pub fn wants_rekey(&self, now: Instant) -> bool {
        self.next_send >= REKEY_AFTER_MESSAGES
            || (self.initiator && self.age(now) >= REKEY_AFTER_TIME)
    }

    /// Takes the next send counter, writes the header of a data frame and
    /// encrypts the plaintext in place. `frame` is the whole frame: header
    /// room, plaintext, tag room (at least [`DataPacket::OVERHEAD`] bytes).
    pub fn seal(&mut self, now: Instant, frame: &mut [u8]) -> Result<(), SessionError> {
        self.may_send(now)?;
        let mut packet = DataPacket::new_checked(frame).map_err(|_| SessionError::Auth)?;
        let counter = self.take_counter();
        DataRepr {
            receiver_index: self.remote_index,
            counter,
        }
        .emit(&mut packet);
        let (header, plaintext, tag) = packet.split_mut();
        *tag = self.send.seal(counter, header, plaintext);
        Ok(())
    }

    /// Takes the next send counter and seals a liveness probe into `frame`,
    /// which must be exactly [`ProbePacket::LEN`] bytes.
    pub fn seal_probe(&mut self, now: Instant, frame: &mut [u8]) -> Result<(), SessionError> {
        self.may_send(now)?;
        let mut packet = ProbePacket::new_checked(frame).map_err(|_| SessionError::Auth)?;
        let counter = self.take_counter();
        ProbeRepr {
            receiver_index: self.remote_index,
            counter,
        }
        .emit(&mut packet);
        let (header, tag) = packet.split_mut();
        *tag = self.send.seal(counter, header, &mut []);
        Ok(())
    }

    /// Whether a frame may be sealed at `now`: the session is alive and its
    /// counter not exhausted.
    fn may_send(&self, now: Instant) -> Result<(), SessionError> {
        if !self.is_alive(now) {
            return Err(SessionError::Expired);
        }
        if self.next_send >= REJECT_AFTER_MESSAGES {
            return Err(SessionError::CounterExhausted);
        }
        Ok(())
    }

    /// The next send counter, taken: data frames and probes share it.
    fn take_counter(&mut self) -> u64 {
        let counter = self.next_send;
        self.next_send += 1;
        counter
    }

    /// Authenticates and decrypts a data frame in place. The counter is
    /// checked against the window before the (costly) decryption and marked
    /// seen only after it succeeded, so forged frames cannot poison the window.
    pub fn open(&mut self, now: Instant, frame: &mut [u8]) -> Result<(), SessionError> {
        if !self.is_alive(now) {
            return Err(SessionError::Expired);
        }
        let mut packet = DataPacket::new_checked(frame).map_err(|_| SessionError::Auth)?;
        let counter = packet.counter();
        let (header, ciphertext, tag) = packet.split_mut();
        self.open_sealed(counter, header, ciphertext, tag)
    }

    /// Authenticates a liveness probe, [`ProbePacket::LEN`] bytes, against
    /// the same window as the data frames: a replayed probe is refused like
    /// a replayed frame.
    pub fn open_probe(&mut self, now: Instant, frame: &mut [u8]) -> Result<(), SessionError> {
        if !self.is_alive(now) {
            return Err(SessionError::Expired);
        }
        let mut packet = ProbePacket::new_checked(frame).map_err(|_| SessionError::Auth)?;
        let counter = packet.counter();
        let (header, tag) = packet.split_mut();
        self.open_sealed(counter, header, &mut [], tag)
    }

    /// Checks `counter` against the window, opens `ciphertext` in place
    /// under `header` and `tag`, then marks the counter seen.
    fn open_sealed(
        &mut self,
        counter: u64,
        header: &[u8],
        ciphertext: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), SessionError> {
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(SessionError::Replay(ReplayError::TooOld));
        }
        self.window.check(counter).map_err(SessionError::Replay)?;
        self.recv
            .open(counter, header, ciphertext, tag)
            .map_err(|AuthFailed| SessionError::Auth)?;
        self.window.update(counter).map_err(SessionError::Replay)
    }

    /// Moves the send counter forward, for tests of counter exhaustion.
    #[cfg(any(test, feature = "testing"))]
    pub fn set_next_send(&mut self, counter: u64) {
        self.next_send = counter;
    }
}
