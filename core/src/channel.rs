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
//! The table is bounded and does no eviction itself: the caller expires
//! idle channels and, when the table is full, may evict
//! [`ChannelTable::oldest`] of the service if it has been idle long enough,
//! or else [`ChannelTable::oldest_answered`]. For that each service keeps
//! two intrusive doubly-linked LRU lists through the slots, least recently
//! active first: one of its [answered](Channel::answered) channels and one
//! of the rest. So touching, inserting, removing and finding the oldest
//! channel or the oldest answered one are all O(1), however many stuck
//! exchanges sit at the head of the table.
//!
//! Invariants (checked by the tests after every operation):
//! - every live slot is in exactly one LRU list: its channel's service's
//!   answered list if the channel is answered, its other list if not;
//!   every free slot is on the free list and in no LRU list;
//! - each list is in order of the last [`insert`](ChannelTable::insert) or
//!   [`touch`](ChannelTable::touch), so it is in non-decreasing
//!   `last_active` order as long as callers never pass an earlier `now`;
//! - every index entry points to a live slot whose channel has that key, and
//!   every live channel is indexed by its number and, if it has a client, by
//!   its client and destination;
//! - `len` is the number of live slots and the sum of all `service_len`.
//! - every held slot is in one of the two held lists (the answered one iff
//!   its channel is [`answered`](Channel::answered)), in the order it was
//!   held, and in no index; `held_len` is their number and the sum of all
//!   `service_held`.
//!
//! # Held slots: the exit port rule
//!
//! An exit channel owns a socket connected to its target, on a local port
//! the OS chose. When the channel ends, that port must not serve another
//! channel while replies to the old one may still arrive: a target that
//! answers late would otherwise hand the old client's reply to the new
//! channel's client (the NAT port-reuse problem; RFC 4787 and RFC 6888
//! REQ-8 ask NATs to hold a port after its mapping ends). So a channel can
//! be [`hold`](ChannelTable::hold)ed instead of removed: it leaves every
//! index and its service's LRU list at once (its number and client are free
//! for a new channel), but its slot, its [`ChannelId`] and therefore its
//! socket stay, until [`release_due`](ChannelTable::release_due) frees them
//! after the release time the caller chose. Datagrams that still arrive on
//! the socket find the id [`held`](ChannelTable::held) and are dropped as
//! late. Because a held slot is still a slot, the table's capacity bounds
//! live and held sockets together: the runtime never holds more than `C`
//! channel sockets.

use core::fmt;
use core::net::SocketAddr;

use heapless::FnvIndexMap;

use crate::time::Instant;

/// A service of the node: its position in the node's service list, which
/// changes when a reload removes a service before it. Not the service's id
/// on the wire ([`ServiceId`](crate::wire::ServiceId)), which never
/// changes: the two are distinct types so that one is never passed for the
/// other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceIndex(pub u8);

impl ServiceIndex {
    /// The index as a `usize`, for the per-service arrays.
    pub const fn get(self) -> usize {
        self.0 as usize
    }

    /// The index of the service at `position` in the node's list, which
    /// holds at most 255 services (so every position fits).
    pub(crate) const fn at(position: usize) -> ServiceIndex {
        ServiceIndex(position as u8)
    }
}

/// Number of possible services, the size of the per-service arrays.
const SERVICES: usize = u8::MAX as usize + 1;

/// The services' LRU lists in `head`/`tail`: service `s`'s unanswered
/// channels at `s`, its answered ones at `ANSWERED + s`.
const ANSWERED: usize = SERVICES;

/// The LRU list of `service`'s channels that are `answered` or not.
const fn lru(service: ServiceIndex, answered: bool) -> usize {
    service.get() + if answered { ANSWERED } else { 0 }
}

/// The held slots' lists, after the services' LRU lists in `head`/`tail`:
/// answered channels ([`Channel::answered`]) in one, the rest in the other.
/// The node holds the two for different times (an answered exchange for
/// much less), and each list releases from its head only: kept apart, a
/// long hold never delays the release of a short one held after it.
const HELD: usize = 2 * SERVICES;
const HELD_ANSWERED: usize = 2 * SERVICES + 1;
const LISTS: usize = 2 * SERVICES + 2;

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
    /// Datagrams the channel took towards the peer (from the customer on an
    /// entry, from the target or destination on an exit), counted by
    /// [`ChannelTable::touch`], plus the one that opened it on an entry.
    /// For `sdt status --channels`: one misbehaving client shows here.
    pub to_peer: u64,
    /// Datagrams the channel took from the peer (replies towards the
    /// client on an entry, datagrams towards the target on an exit),
    /// counted by [`ChannelTable::touch`], plus the one that opened it on
    /// an exit.
    pub from_peer: u64,
}

/// Most requests a channel may have carried and still count as
/// [answered](Channel::answered): a DNS query and its retries, a STUN or
/// NTP exchange. A longer conversation is a flow, not an exchange.
pub const ANSWERED_MAX_REQUESTS: u64 = 4;

/// Which way a datagram a channel carries goes, for its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// From the customer side towards the peer.
    ToPeer,
    /// From the peer towards the customer side.
    FromPeer,
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

/// What [`ChannelTable::retain`] does with a live channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It stays live.
    Keep,
    /// It is removed and its slot freed.
    Remove,
    /// It ends, and its slot is held until the given time (see
    /// [`ChannelTable::hold`]).
    Hold(Instant),
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
    /// Whether the channel is a finished request-reply exchange: it
    /// carried at most [`ANSWERED_MAX_REQUESTS`] requests (datagrams from
    /// the client on an entry, towards the target on an exit) and at least
    /// as many replies. A DNS lookup through a forward service is one
    /// request and one reply. The node evicts such channels first when its
    /// table is full and holds their exit ports for a shorter time
    /// ([`ChannelLimits::answered_port_hold`](crate::node::ChannelLimits::answered_port_hold)):
    /// nothing more is expected on them.
    pub fn answered(&self) -> bool {
        let (requests, replies) = match self.client {
            Some(_) => (self.to_peer, self.from_peer),
            None => (self.from_peer, self.to_peer),
        };
        (1..=ANSWERED_MAX_REQUESTS).contains(&requests) && replies >= requests
    }

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

/// What a slot holds.
#[derive(Clone, Debug)]
enum Occupant {
    /// Nothing: the slot is on the free list.
    Free,
    /// A live channel, indexed and in its service's LRU list.
    Live(Channel),
    /// A channel that ended but whose socket is held until `release_at`: in
    /// no index, in the held list.
    Held {
        channel: Channel,
        release_at: Instant,
    },
}

/// One place for a channel.
#[derive(Clone, Debug)]
struct Slot {
    occupant: Occupant,
    /// Bumped (wrapping) whenever the slot is freed.
    generation: u16,
    /// Live: the previous (less recently active) slot of the service's LRU
    /// list. Held: the previous (earlier held) slot of the held list. Free:
    /// unused.
    prev: u16,
    /// Live: the next (more recently active) slot of the service's LRU list.
    /// Held: the next slot of the held list. Free: the next slot of the free
    /// list.
    next: u16,
}

impl Slot {
    const EMPTY: Slot = Slot {
        occupant: Occupant::Free,
        generation: 0,
        prev: NONE,
        next: NONE,
    };

    fn live(&self) -> Option<&Channel> {
        match &self.occupant {
            Occupant::Live(channel) => Some(channel),
            _ => None,
        }
    }
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
/// The table is large (about 214 bytes per slot with its indexes: 219176
/// bytes for `C = 1024` on x86-64), so keep it inside a long-lived owner
/// rather than on a small stack.
///
/// Getters: [`len`](Self::len), [`service_len`](Self::service_len),
/// [`get`](Self::get), [`find_by_client`](Self::find_by_client),
/// [`find_by_number`](Self::find_by_number), [`oldest`](Self::oldest),
/// [`iter`](Self::iter), [`held`](Self::held),
/// [`held_len`](Self::held_len), [`service_held`](Self::service_held),
/// [`next_release`](Self::next_release). Commands:
/// [`insert`](Self::insert), [`touch`](Self::touch),
/// [`remove`](Self::remove), [`hold`](Self::hold),
/// [`release_due`](Self::release_due), [`retain`](Self::retain). The table never evicts on its own and reads no
/// clock: activity times come from the caller, which must never pass an
/// earlier `now` than before (otherwise [`oldest`](Self::oldest) is still the
/// least recently *touched* channel, but its `last_active` may not be the
/// smallest).
pub struct ChannelTable<const C: usize> {
    slots: [Slot; C],
    /// First slot of the free list, or `NONE` when the table is full.
    free: u16,
    len: usize,
    /// Per LRU list ([`lru`]): least recently active slot, or `NONE`; at
    /// [`HELD`] and [`HELD_ANSWERED`] the earliest held slot of that list.
    head: [u16; LISTS],
    /// Per LRU list: most recently active slot, or `NONE`; at [`HELD`] and
    /// [`HELD_ANSWERED`] the latest held slot of that list.
    tail: [u16; LISTS],
    /// Per service: number of live channels.
    count: [u16; SERVICES],
    /// Per service: number of held slots.
    held: [u16; SERVICES],
    held_len: usize,
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
            head: [NONE; LISTS],
            tail: [NONE; LISTS],
            count: [0; SERVICES],
            held: [0; SERVICES],
            held_len: 0,
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
        usize::from(self.count[service.get()])
    }

    /// Held slots, of all services.
    pub fn held_len(&self) -> usize {
        self.held_len
    }

    /// Held slots of `service`.
    pub fn service_held(&self, service: ServiceIndex) -> usize {
        usize::from(self.held[service.get()])
    }

    /// Whether a slot is free for [`insert`](Self::insert).
    pub fn has_free_slot(&self) -> bool {
        self.free != NONE
    }

    /// The live channel `id` names, or `None` if it was removed or held
    /// (the id is stale for live lookups) or the id is not from this table.
    pub fn get(&self, id: ChannelId) -> Option<&Channel> {
        self.slot_of(id)?.live()
    }

    /// The held channel `id` names, or `None` if it is live, was released
    /// or never existed.
    pub fn held(&self, id: ChannelId) -> Option<&Channel> {
        match &self.slot_of(id)?.occupant {
            Occupant::Held { channel, .. } => Some(channel),
            _ => None,
        }
    }

    /// The earliest release time at the heads of the held lists: when
    /// [`release_due`](Self::release_due) next has something to do.
    ///
    /// Each held list is in the order channels were held, and only its head
    /// is looked at, so a slot held later with an earlier release time
    /// waits for the slots before it in its list. A slot is therefore never
    /// released before its own release time, and at the latest when every
    /// slot held before it in its list is due; when callers choose release
    /// times of at most "now plus a fixed hold" per list, that is at most
    /// that hold after it was held.
    pub fn next_release(&self) -> Option<Instant> {
        [HELD, HELD_ANSWERED]
            .into_iter()
            .filter_map(|list| self.head_release(list))
            .min()
    }

    /// The release time at the head of held list `list`.
    fn head_release(&self, list: usize) -> Option<Instant> {
        match &self.slots.get(usize::from(self.head[list]))?.occupant {
            Occupant::Held { release_at, .. } => Some(*release_at),
            _ => None,
        }
    }

    /// The held list a held `channel` goes in.
    fn held_list(channel: &Channel) -> usize {
        if channel.answered() {
            HELD_ANSWERED
        } else {
            HELD
        }
    }

    fn slot_of(&self, id: ChannelId) -> Option<&Slot> {
        let slot = self.slots.get(usize::from(id.slot))?;
        (slot.generation == id.generation).then_some(slot)
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
    /// its service's LRU list) and counts one datagram going `way`. No-op
    /// for a stale id. The count is one wrapping add on the slot already
    /// in hand: the per-datagram cost stays what it was.
    pub fn touch(&mut self, id: ChannelId, now: Instant, way: Way) {
        let Some((service, was)) = self.get(id).map(|c| (c.service, c.answered())) else {
            return;
        };
        let slot = id.slot;
        let mut answered = was;
        if let Occupant::Live(channel) = &mut self.slots[usize::from(slot)].occupant {
            channel.last_active = now;
            let count = match way {
                Way::ToPeer => &mut channel.to_peer,
                Way::FromPeer => &mut channel.from_peer,
            };
            *count = count.wrapping_add(1);
            answered = channel.answered();
        }
        let (from, to) = (lru(service, was), lru(service, answered));
        if from != to || self.tail[to] != slot {
            self.unlink(slot, from);
            self.link_tail(slot, to);
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
        let (service, list) = (channel.service, lru(channel.service, channel.answered()));
        let s = &mut self.slots[usize::from(slot)];
        self.free = s.next;
        s.occupant = Occupant::Live(channel);
        let id = ChannelId {
            slot,
            generation: s.generation,
        };
        self.link_tail(slot, list);
        self.len += 1;
        self.count[service.get()] += 1;
        Ok(id)
    }

    /// Removes the live channel `id` names and returns it; `None` for a
    /// stale or held id. Bumps the slot's generation, so `id` goes stale.
    pub fn remove(&mut self, id: ChannelId) -> Option<Channel> {
        self.get(id)?;
        let channel = self.unindex(id.slot)?;
        self.free_slot(id.slot);
        Some(channel)
    }

    /// Ends the live channel `id` names but holds its slot, and so its id,
    /// until `release_at`; returns a copy of the channel, or `None` for a
    /// stale or held id. Its number and client are free for new channels at
    /// once; [`get`](Self::get) no longer finds it, [`held`](Self::held)
    /// does, and [`release_due`](Self::release_due) frees it.
    pub fn hold(&mut self, id: ChannelId, release_at: Instant) -> Option<Channel> {
        self.get(id)?;
        let channel = self.unindex(id.slot)?;
        self.held[channel.service.get()] += 1;
        self.held_len += 1;
        self.link_tail(id.slot, Self::held_list(&channel));
        self.slots[usize::from(id.slot)].occupant = Occupant::Held {
            channel: channel.clone(),
            release_at,
        };
        Some(channel)
    }

    /// Frees the held slots due at `now`, from the heads of the held lists
    /// (see [`next_release`](Self::next_release)), passing each one's id
    /// and channel to `released` (to close its socket).
    pub fn release_due(&mut self, now: Instant, mut released: impl FnMut(ChannelId, &Channel)) {
        for list in [HELD, HELD_ANSWERED] {
            while self.head_release(list).is_some_and(|at| at <= now) {
                let slot = self.head[list];
                self.release(slot, &mut released);
            }
        }
    }

    /// Frees every held slot of `service` now, whatever its release time
    /// (the service is going away), passing each to `released`. O(held).
    pub fn release_service(
        &mut self,
        service: ServiceIndex,
        mut released: impl FnMut(ChannelId, &Channel),
    ) {
        for list in [HELD, HELD_ANSWERED] {
            let mut slot = self.head[list];
            while slot != NONE {
                let next = self.slots[usize::from(slot)].next;
                if matches!(&self.slots[usize::from(slot)].occupant,
                    Occupant::Held { channel, .. } if channel.service == service)
                {
                    self.release(slot, &mut released);
                }
                slot = next;
            }
        }
    }

    /// Frees the held slot `id` names now, whatever its release time (the
    /// runtime never opened its socket); returns its channel, or `None` if
    /// `id` is not held.
    pub fn release_held(&mut self, id: ChannelId) -> Option<Channel> {
        let channel = self.held(id)?.clone();
        self.release(id.slot, &mut |_, _| {});
        Some(channel)
    }

    /// Frees the held `slot`.
    fn release(&mut self, slot: u16, released: &mut impl FnMut(ChannelId, &Channel)) {
        let id = self.id_of(slot);
        let occupant =
            core::mem::replace(&mut self.slots[usize::from(slot)].occupant, Occupant::Free);
        if let Occupant::Held { channel, .. } = occupant {
            self.unlink(slot, Self::held_list(&channel));
            self.held[channel.service.get()] -= 1;
            self.held_len -= 1;
            released(id, &channel);
        }
        self.free_slot(slot);
    }

    /// Takes the live `slot`'s channel out of the indexes, its LRU list and
    /// the live counts; the slot is left to the caller (free or held).
    /// `None`, with nothing changed, if the slot is not live.
    fn unindex(&mut self, slot: u16) -> Option<Channel> {
        let s = &mut self.slots[usize::from(slot)];
        if !matches!(s.occupant, Occupant::Live(_)) {
            return None;
        }
        let Occupant::Live(channel) = core::mem::replace(&mut s.occupant, Occupant::Free) else {
            return None;
        };
        self.by_number.remove(&channel.number_key());
        if let Some(key) = channel.client_key() {
            self.by_client.remove(&key);
        }
        self.unlink(slot, lru(channel.service, channel.answered()));
        self.len -= 1;
        self.count[channel.service.get()] -= 1;
        Some(channel)
    }

    /// Puts `slot`, in no list and `Free`, on the free list, bumping its
    /// generation so ids of what it held go stale.
    fn free_slot(&mut self, slot: u16) {
        let s = &mut self.slots[usize::from(slot)];
        s.generation = s.generation.wrapping_add(1);
        s.next = self.free;
        self.free = slot;
    }

    /// The least recently active channel of `service`, with its last
    /// activity (of two equally old, the unanswered one).
    pub fn oldest(&self, service: ServiceIndex) -> Option<(ChannelId, Instant)> {
        let head = |answered| {
            let slot = self.head[lru(service, answered)];
            let channel = self.slots.get(usize::from(slot))?.live()?;
            Some((self.id_of(slot), channel.last_active))
        };
        match (head(false), head(true)) {
            (Some(a), Some(b)) => Some(if b.1 < a.1 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// The least recently active [answered](Channel::answered) channel of
    /// `service`, with its last activity: what a full table gives up first.
    pub fn oldest_answered(&self, service: ServiceIndex) -> Option<(ChannelId, Instant)> {
        let slot = self.head[lru(service, true)];
        let channel = self.slots.get(usize::from(slot))?.live()?;
        Some((self.id_of(slot), channel.last_active))
    }

    /// Decides with `fate` what becomes of every live channel, and passes
    /// each one that ended to `ended` with its fate (e.g. to close its
    /// socket, or count it held). O(C).
    ///
    /// Use it to drop all channels of a peer that restarted or of a service
    /// that was reconfigured.
    pub fn retain(
        &mut self,
        mut fate: impl FnMut(ChannelId, &Channel) -> Fate,
        mut ended: impl FnMut(ChannelId, Channel, Fate),
    ) {
        for slot in 0..C {
            // `C <= 32768`, so every slot index fits in a `u16`.
            let id = self.id_of(slot as u16);
            let Some(channel) = self.slots[slot].live() else {
                continue;
            };
            let f = fate(id, channel);
            let gone = match f {
                Fate::Keep => None,
                Fate::Remove => self.remove(id),
                Fate::Hold(release_at) => self.hold(id, release_at),
            };
            if let Some(channel) = gone {
                ended(id, channel, f);
            }
        }
    }

    /// Renames service `from` to `to` in every live and held channel, its
    /// LRU list and its counts, keeping ids, order and activity: the node
    /// moves a service to another position in its list when a reload
    /// removes one before it. `to` must have no channels, live or held;
    /// returns `false`, with nothing changed, when it has. O(C).
    pub fn move_service(&mut self, from: ServiceIndex, to: ServiceIndex) -> bool {
        let (f, t) = (from.get(), to.get());
        if from == to {
            return true;
        }
        let lists = [
            (lru(from, false), lru(to, false)),
            (lru(from, true), lru(to, true)),
        ];
        if self.count[t] != 0
            || self.held[t] != 0
            || lists.iter().any(|&(_, t)| self.head[t] != NONE)
        {
            return false;
        }
        for slot in 0..C {
            let occupant = &mut self.slots[slot].occupant;
            let channel = match occupant {
                Occupant::Live(c) if c.service == from => c,
                Occupant::Held { channel, .. } if channel.service == from => {
                    channel.service = to;
                    continue;
                }
                _ => continue,
            };
            let (old_number, old_client) = (channel.number_key(), channel.client_key());
            channel.service = to;
            let (number, client) = (channel.number_key(), channel.client_key());
            // One entry out, one in: the indexes never grow.
            self.by_number.remove(&old_number);
            let _ = self.by_number.insert(number, slot as u16);
            if let (Some(old), Some(new)) = (old_client, client) {
                self.by_client.remove(&old);
                let _ = self.by_client.insert(new, slot as u16);
            }
        }
        for (f, t) in lists {
            self.head[t] = core::mem::replace(&mut self.head[f], NONE);
            self.tail[t] = core::mem::replace(&mut self.tail[f], NONE);
        }
        self.count[t] = core::mem::take(&mut self.count[f]);
        self.held[t] = core::mem::take(&mut self.held[f]);
        true
    }

    /// Iterates over live channels (for status output), in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (ChannelId, &Channel)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let id = ChannelId {
                slot: i as u16,
                generation: s.generation,
            };
            s.live().map(|c| (id, c))
        })
    }

    /// The id of whatever channel is in `slot` now.
    fn id_of(&self, slot: u16) -> ChannelId {
        ChannelId {
            slot,
            generation: self.slots[usize::from(slot)].generation,
        }
    }

    /// Takes `slot` out of `list`: a service's LRU list ([`lru`]) or a held
    /// list ([`HELD`], [`HELD_ANSWERED`]).
    fn unlink(&mut self, slot: u16, list: usize) {
        let s = &mut self.slots[usize::from(slot)];
        let (prev, next) = (s.prev, s.next);
        s.prev = NONE;
        s.next = NONE;
        match prev {
            NONE => self.head[list] = next,
            p => self.slots[usize::from(p)].next = next,
        }
        match next {
            NONE => self.tail[list] = prev,
            n => self.slots[usize::from(n)].prev = prev,
        }
    }

    /// Appends `slot`, in no list, at the most recent end of `list`.
    fn link_tail(&mut self, slot: u16, list: usize) {
        let tail = self.tail[list];
        let s = &mut self.slots[usize::from(slot)];
        s.prev = tail;
        s.next = NONE;
        match tail {
            NONE => self.head[list] = slot,
            t => self.slots[usize::from(t)].next = slot,
        }
        self.tail[list] = slot;
    }
}

#[cfg(test)]
mod tests;
