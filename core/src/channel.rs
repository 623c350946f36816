//! The node's fixed-capacity channel table.
//!
//! A *service* (a [`ServiceIndex`]) multiplexes *channels*. On the entry
//! half a channel is created per customer source address (in router mode per
//! client and destination address) and gets a channel number chosen by the
//! entry; on the exit half a channel is created when a frame with an unknown
//! (service, peer, number) arrives. The table finds a channel by
//! (service, client, destination) on the entry side, by
//! (service, peer, number) on both sides, and by [`ChannelId`] for the
//! sockets a channel owns.
//!
//! The table is bounded and does no eviction itself: idle channels expire
//! through [`ChannelTable::retain`], and when the table is full the caller
//! may evict [`ChannelTable::oldest`] of the service if it has been idle long
//! enough. For that each service keeps an intrusive doubly-linked LRU list
//! through the slots, least recently active first, so touching, inserting,
//! removing and finding the oldest channel are all O(1).
//!
//! Invariants (checked by the tests after every operation):
//! - every live slot is in exactly one LRU list, its channel's service's;
//!   every free slot is on the free list and in no LRU list;
//! - each list is in order of the last [`insert`](ChannelTable::insert) or
//!   [`touch`](ChannelTable::touch), so it is in non-decreasing
//!   `last_active` order as long as callers never pass an earlier `now`;
//! - every index entry points to a live slot whose channel has that key, and
//!   every live channel is indexed by its number and, if it has a client, by
//!   its client and destination;
//! - `len` is the number of live slots and the sum of all `service_len`.

use core::fmt;
use core::net::SocketAddr;

use heapless::FnvIndexMap;

use crate::time::Instant;

/// A service of the node: its position in the node's service list.
pub type ServiceIndex = u8;

/// Number of possible services, the size of the per-service arrays.
const SERVICES: usize = ServiceIndex::MAX as usize + 1;

/// "No slot": the end of a list. Never a valid slot, since `C <= 32768`.
const NONE: u16 = u16::MAX;

/// A channel's slot in the table and the slot's generation: stale ids of
/// removed channels never match a newer channel in the same slot.
///
/// The generation is a `u16` bumped each time the slot's channel is removed,
/// so an id goes stale for good only until the same slot has been reused
/// 65536 times; then it matches the slot's channel again. Callers (sockets
/// owned by a channel, timers) must therefore not keep ids across spans in
/// which one slot could be reused that often: drop an id when its channel is
/// removed, which the [`ChannelTable::retain`] callback reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChannelId {
    slot: u16,
    generation: u16,
}

impl ChannelId {
    /// The slot in the table, below the table's capacity for a valid id.
    pub const fn slot(self) -> u16 {
        self.slot
    }

    /// The slot's generation when the channel was inserted.
    pub const fn generation(self) -> u16 {
        self.generation
    }

    /// The id packed in a `u32` (`generation << 16 | slot`), for example as
    /// a token for an event loop. [`from_u32`](Self::from_u32) reverses it.
    pub const fn to_u32(self) -> u32 {
        (self.generation as u32) << 16 | self.slot as u32
    }

    /// Unpacks [`to_u32`](Self::to_u32). Any `u32` is accepted: an id that
    /// names no live channel is simply not found by the table.
    pub const fn from_u32(v: u32) -> Self {
        ChannelId {
            slot: v as u16,
            generation: (v >> 16) as u16,
        }
    }
}

/// One channel of a service: what the table stores, and what the caller
/// reads back.
///
/// `service`, `peer`, `number`, `client` and `destination` are the keys the
/// table indexes the channel by; they cannot change while it is in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// The service the channel belongs to.
    pub service: ServiceIndex,
    /// The peer at the other end of the tunnel: the index of its
    /// [`PeerId`](crate::link::PeerId).
    pub peer: u16,
    /// The channel number on the wire, chosen by the entry half and unique
    /// per service and peer.
    pub number: u32,
    /// Entry half: the customer's source address. `None` on the exit half,
    /// where channels are found only by number.
    pub client: Option<SocketAddr>,
    /// Router mode: the destination the client addressed. `None` otherwise.
    pub destination: Option<SocketAddr>,
    /// When the channel was created.
    pub created: Instant,
    /// When the channel last carried traffic, set by
    /// [`ChannelTable::touch`]. The channel expires when idle for too long.
    pub last_active: Instant,
}

/// Why [`ChannelTable::insert`] refused a channel. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InsertError {
    /// All `C` slots hold channels. The caller may evict
    /// [`ChannelTable::oldest`] of the service and try again, or drop the
    /// datagram that wanted the channel.
    Full,
    /// A channel of the service has this client and destination already:
    /// the caller should have found and used it.
    DuplicateClient,
    /// A channel of the service with this peer has this number already. An
    /// entry half must choose another number.
    DuplicateNumber,
}

/// Index key on the entry side.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct ClientKey {
    service: ServiceIndex,
    client: SocketAddr,
    destination: Option<SocketAddr>,
}

/// Index key on both sides.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct NumberKey {
    service: ServiceIndex,
    peer: u16,
    number: u32,
}

impl Channel {
    fn client_key(&self) -> Option<ClientKey> {
        self.client.map(|client| ClientKey {
            service: self.service,
            client,
            destination: self.destination,
        })
    }

    fn number_key(&self) -> NumberKey {
        NumberKey {
            service: self.service,
            peer: self.peer,
            number: self.number,
        }
    }
}

/// One place for a channel.
#[derive(Clone, Debug)]
struct Slot {
    channel: Option<Channel>,
    /// Bumped (wrapping) whenever the slot's channel is removed.
    generation: u16,
    /// Live: the previous (less recently active) slot of the service's LRU
    /// list. Free: unused.
    prev: u16,
    /// Live: the next (more recently active) slot of the service's LRU list.
    /// Free: the next slot of the free list.
    next: u16,
}

impl Slot {
    const EMPTY: Slot = Slot {
        channel: None,
        generation: 0,
        prev: NONE,
        next: NONE,
    };
}

/// The channels of all services, at most `C` of them.
///
/// `C` is a power of two with `2 <= C <= 32768`, checked when the table is
/// created (a compile-time error for any other `C`):
///
/// ```compile_fail
/// let t = sdt_core::channel::ChannelTable::<65536>::new();
/// ```
///
/// The table is large (about 190 bytes per slot with its indexes: 194080
/// bytes for `C = 1024` on x86-64), so keep it inside a long-lived owner
/// rather than on a small stack.
///
/// Getters: [`len`](Self::len), [`service_len`](Self::service_len),
/// [`get`](Self::get), [`find_by_client`](Self::find_by_client),
/// [`find_by_number`](Self::find_by_number), [`oldest`](Self::oldest),
/// [`iter`](Self::iter). Commands: [`insert`](Self::insert),
/// [`touch`](Self::touch), [`remove`](Self::remove),
/// [`retain`](Self::retain). The table never evicts on its own and reads no
/// clock: activity times come from the caller, which must never pass an
/// earlier `now` than before (otherwise [`oldest`](Self::oldest) is still the
/// least recently *touched* channel, but its `last_active` may not be the
/// smallest).
pub struct ChannelTable<const C: usize> {
    slots: [Slot; C],
    /// First slot of the free list, or `NONE` when the table is full.
    free: u16,
    len: usize,
    /// Per service: least recently active slot, or `NONE`.
    head: [u16; SERVICES],
    /// Per service: most recently active slot, or `NONE`.
    tail: [u16; SERVICES],
    /// Per service: number of live channels.
    count: [u16; SERVICES],
    by_client: FnvIndexMap<ClientKey, u16, C>,
    by_number: FnvIndexMap<NumberKey, u16, C>,
}

impl<const C: usize> Default for ChannelTable<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const C: usize> fmt::Debug for ChannelTable<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelTable")
            .field("capacity", &C)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<const C: usize> ChannelTable<C> {
    /// Fails to compile for a capacity the slot indices (`u16`, with
    /// [`NONE`] reserved) or heapless' index maps cannot handle.
    const CAPACITY_OK: () = assert!(
        C.is_power_of_two() && C >= 2 && C <= 32768,
        "ChannelTable capacity must be a power of two in 2..=32768"
    );

    /// An empty table; every slot is on the free list.
    pub fn new() -> Self {
        let () = Self::CAPACITY_OK;
        let mut slots = [const { Slot::EMPTY }; C];
        for (i, slot) in slots.iter_mut().enumerate() {
            // `C <= 32768`, so every `i + 1` fits; the last slot ends the list.
            slot.next = if i + 1 < C { (i + 1) as u16 } else { NONE };
        }
        ChannelTable {
            slots,
            free: 0,
            len: 0,
            head: [NONE; SERVICES],
            tail: [NONE; SERVICES],
            count: [0; SERVICES],
            by_client: FnvIndexMap::new(),
            by_number: FnvIndexMap::new(),
        }
    }

    /// The most channels the table holds, `C`.
    pub const fn capacity(&self) -> usize {
        C
    }

    /// Live channels, of all services.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no channel is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Live channels of `service`, for per-service limits and status output.
    pub fn service_len(&self, service: ServiceIndex) -> usize {
        usize::from(self.count[usize::from(service)])
    }

    /// The channel `id` names, or `None` if it was removed (the id is stale)
    /// or the id is not from this table.
    pub fn get(&self, id: ChannelId) -> Option<&Channel> {
        let slot = self.slots.get(usize::from(id.slot))?;
        if slot.generation != id.generation {
            return None;
        }
        slot.channel.as_ref()
    }

    /// The entry-side channel of `service` for this client (and, in router
    /// mode, destination). Exit-side channels have no client and are never
    /// found here.
    pub fn find_by_client(
        &self,
        service: ServiceIndex,
        client: SocketAddr,
        destination: Option<SocketAddr>,
    ) -> Option<ChannelId> {
        let key = ClientKey {
            service,
            client,
            destination,
        };
        self.by_client.get(&key).map(|&slot| self.id_of(slot))
    }

    /// The channel of `service` with `peer` that carries `number` on the
    /// wire.
    pub fn find_by_number(
        &self,
        service: ServiceIndex,
        peer: u16,
        number: u32,
    ) -> Option<ChannelId> {
        let key = NumberKey {
            service,
            peer,
            number,
        };
        self.by_number.get(&key).map(|&slot| self.id_of(slot))
    }

    /// Marks the channel active at `now` (moves it to the most recent end of
    /// its service's LRU list). No-op for a stale id.
    pub fn touch(&mut self, id: ChannelId, now: Instant) {
        let Some(service) = self.get(id).map(|c| c.service) else {
            return;
        };
        let slot = id.slot;
        if let Some(channel) = self.slots[usize::from(slot)].channel.as_mut() {
            channel.last_active = now;
        }
        if self.tail[usize::from(service)] != slot {
            self.unlink(slot, service);
            self.link_tail(slot, service);
        }
    }

    /// Inserts at the most-recent end; indexes by number always and by
    /// client when `client` is Some. Does not evict: callers decide (see
    /// [`oldest`](Self::oldest)).
    ///
    /// Duplicates are checked before capacity, so a full table still reports
    /// a duplicate key. `created` and `last_active` are taken as given.
    pub fn insert(&mut self, channel: Channel) -> Result<ChannelId, InsertError> {
        let number_key = channel.number_key();
        let client_key = channel.client_key();
        if self.by_number.contains_key(&number_key) {
            return Err(InsertError::DuplicateNumber);
        }
        if client_key.is_some_and(|k| self.by_client.contains_key(&k)) {
            return Err(InsertError::DuplicateClient);
        }
        if self.free == NONE {
            return Err(InsertError::Full);
        }
        let slot = self.free;
        // Each index holds at most one entry per live channel, and a slot
        // is free, so neither index is full.
        if self.by_number.insert(number_key, slot).is_err() {
            debug_assert!(false, "number index full with a free slot");
            return Err(InsertError::Full);
        }
        if let Some(key) = client_key {
            if self.by_client.insert(key, slot).is_err() {
                debug_assert!(false, "client index full with a free slot");
                self.by_number.remove(&number_key);
                return Err(InsertError::Full);
            }
        }
        let service = channel.service;
        let s = &mut self.slots[usize::from(slot)];
        self.free = s.next;
        s.channel = Some(channel);
        let id = ChannelId {
            slot,
            generation: s.generation,
        };
        self.link_tail(slot, service);
        self.len += 1;
        self.count[usize::from(service)] += 1;
        Ok(id)
    }

    /// Removes the channel `id` names and returns it; `None` for a stale
    /// id. Bumps the slot's generation, so `id` goes stale.
    pub fn remove(&mut self, id: ChannelId) -> Option<Channel> {
        let slot = id.slot;
        let s = self.slots.get_mut(usize::from(slot))?;
        if s.generation != id.generation {
            return None;
        }
        let channel = s.channel.take()?;
        s.generation = s.generation.wrapping_add(1);
        self.by_number.remove(&channel.number_key());
        if let Some(key) = channel.client_key() {
            self.by_client.remove(&key);
        }
        self.unlink(slot, channel.service);
        self.slots[usize::from(slot)].next = self.free;
        self.free = slot;
        self.len -= 1;
        self.count[usize::from(channel.service)] -= 1;
        Some(channel)
    }

    /// The least recently active channel of `service`, with its last
    /// activity.
    pub fn oldest(&self, service: ServiceIndex) -> Option<(ChannelId, Instant)> {
        let slot = self.head[usize::from(service)];
        let channel = self.slots.get(usize::from(slot))?.channel.as_ref()?;
        Some((self.id_of(slot), channel.last_active))
    }

    /// Removes every channel for which `keep` returns false, passing each
    /// removed one to `removed` (e.g. to close its socket). O(C).
    ///
    /// Use it to expire idle channels, or to drop all channels of a peer
    /// that restarted or of a service that was reconfigured.
    pub fn retain(
        &mut self,
        mut keep: impl FnMut(ChannelId, &Channel) -> bool,
        mut removed: impl FnMut(ChannelId, Channel),
    ) {
        for slot in 0..C {
            // `C <= 32768`, so every slot index fits in a `u16`.
            let id = self.id_of(slot as u16);
            let Some(channel) = self.slots[slot].channel.as_ref() else {
                continue;
            };
            if !keep(id, channel) {
                if let Some(channel) = self.remove(id) {
                    removed(id, channel);
                }
            }
        }
    }

    /// Iterates over live channels (for status output), in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (ChannelId, &Channel)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let id = ChannelId {
                slot: i as u16,
                generation: s.generation,
            };
            s.channel.as_ref().map(|c| (id, c))
        })
    }

    /// The id of whatever channel is in `slot` now.
    fn id_of(&self, slot: u16) -> ChannelId {
        ChannelId {
            slot,
            generation: self.slots[usize::from(slot)].generation,
        }
    }

    /// Takes the live `slot` out of `service`'s LRU list.
    fn unlink(&mut self, slot: u16, service: ServiceIndex) {
        let s = &mut self.slots[usize::from(slot)];
        let (prev, next) = (s.prev, s.next);
        s.prev = NONE;
        s.next = NONE;
        match prev {
            NONE => self.head[usize::from(service)] = next,
            p => self.slots[usize::from(p)].next = next,
        }
        match next {
            NONE => self.tail[usize::from(service)] = prev,
            n => self.slots[usize::from(n)].prev = prev,
        }
    }

    /// Appends `slot`, in no list, at the most recent end of `service`'s
    /// LRU list.
    fn link_tail(&mut self, slot: u16, service: ServiceIndex) {
        let tail = self.tail[usize::from(service)];
        let s = &mut self.slots[usize::from(slot)];
        s.prev = tail;
        s.next = NONE;
        match tail {
            NONE => self.head[usize::from(service)] = slot,
            t => self.slots[usize::from(t)].next = slot,
        }
        self.tail[usize::from(service)] = slot;
    }
}

#[cfg(test)]
mod tests;
