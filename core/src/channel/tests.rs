use super::*;
use proptest::prelude::*;
use std::vec::Vec;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], port))
}

fn at(secs: u64) -> Instant {
    Instant::from_secs(secs)
}

fn entry(service: u8, number: u32, client: u16, now: Instant) -> Channel {
    Channel {
        service: ServiceIndex(service),
        peer: 1,
        number,
        client: Some(addr(client)),
        destination: None,
        created: now,
        last_active: now,
        to_peer: 0,
        from_peer: 0,
    }
}

fn exit(service: u8, peer: u16, number: u32, now: Instant) -> Channel {
    Channel {
        service: ServiceIndex(service),
        peer,
        number,
        client: None,
        destination: None,
        created: now,
        last_active: now,
        to_peer: 0,
        from_peer: 0,
    }
}

/// Checks every invariant of the module docs, panicking on the first one
/// broken.
fn check_invariants<const C: usize>(t: &ChannelTable<C>) {
    let mut in_list = [false; C];
    let mut total = 0;
    for service in 0..SERVICES {
        let mut count = 0;
        for answered in [false, true] {
            let list = lru(ServiceIndex(service as u8), answered);
            let mut prev = NONE;
            let mut slot = t.head[list];
            let mut last: Option<Instant> = None;
            while slot != NONE {
                let s = &t.slots[usize::from(slot)];
                assert!(!in_list[usize::from(slot)], "slot {slot} in two lists");
                in_list[usize::from(slot)] = true;
                let ch = s.live().expect("free or held slot in an LRU list");
                assert_eq!(ch.service.get(), service, "slot in another service's list");
                assert_eq!(ch.answered(), answered, "slot {slot} in the wrong LRU list");
                assert_eq!(s.prev, prev, "broken back link");
                if let Some(last) = last {
                    assert!(ch.last_active >= last, "list out of last_active order");
                }
                last = Some(ch.last_active);
                count += 1;
                prev = slot;
                slot = s.next;
            }
            assert_eq!(t.tail[list], prev, "tail is not the list's end");
        }
        assert_eq!(usize::from(t.count[service]), count);
        assert_eq!(t.service_len(ServiceIndex(service as u8)), count);
        total += count;
    }
    let live = t.slots.iter().filter(|s| s.live().is_some()).count();
    assert_eq!(live, total, "a live slot is in no list");
    assert_eq!(t.len(), total);
    assert_eq!(t.is_empty(), total == 0);

    // The held lists hold exactly the held slots, each in the list its
    // channel's answered state names, with per-service counts.
    let mut held = 0;
    let mut held_per_service = [0usize; SERVICES];
    for list in [HELD, HELD_ANSWERED] {
        let mut prev = NONE;
        let mut slot = t.head[list];
        while slot != NONE {
            let s = &t.slots[usize::from(slot)];
            let Occupant::Held { channel, .. } = &s.occupant else {
                panic!("slot {slot} in a held list is not held");
            };
            assert_eq!(
                channel.answered(),
                list == HELD_ANSWERED,
                "held slot {slot} in the wrong held list"
            );
            assert!(!in_list[usize::from(slot)], "held slot {slot} in two lists");
            in_list[usize::from(slot)] = true;
            assert_eq!(s.prev, prev, "broken back link in a held list");
            held_per_service[channel.service.get()] += 1;
            held += 1;
            prev = slot;
            slot = s.next;
        }
        assert_eq!(t.tail[list], prev, "held tail is not the list's end");
    }
    assert_eq!(t.held_len(), held);
    let all_held = t
        .slots
        .iter()
        .filter(|s| matches!(s.occupant, Occupant::Held { .. }))
        .count();
    assert_eq!(all_held, held, "a held slot is not in the held list");
    for (service, &n) in held_per_service.iter().enumerate() {
        assert_eq!(t.service_held(ServiceIndex(service as u8)), n);
    }

    // The free list holds exactly the free slots.
    let mut free = 0;
    let mut slot = t.free;
    while slot != NONE {
        let s = &t.slots[usize::from(slot)];
        assert!(
            matches!(s.occupant, Occupant::Free),
            "live or held slot on the free list"
        );
        assert!(!in_list[usize::from(slot)]);
        in_list[usize::from(slot)] = true;
        free += 1;
        slot = s.next;
    }
    assert_eq!(free + live + held, C);
    assert_eq!(t.has_free_slot(), free > 0);

    // Indexes: every entry is right, and every live channel is indexed.
    for (key, &slot) in t.by_number.iter() {
        let ch = t.slots[usize::from(slot)]
            .live()
            .expect("stale number index");
        assert!(ch.number_key() == *key);
    }
    for (key, &slot) in t.by_client.iter() {
        let ch = t.slots[usize::from(slot)]
            .live()
            .expect("stale client index");
        assert!(ch.client_key() == Some(*key));
    }
    let with_client = t.iter().filter(|(_, c)| c.client.is_some()).count();
    assert_eq!(t.by_number.len(), live);
    assert_eq!(t.by_client.len(), with_client);
    for (id, ch) in t.iter() {
        assert_eq!(t.find_by_number(ch.service, ch.peer, ch.number), Some(id));
        if let Some(client) = ch.client {
            assert_eq!(
                t.find_by_client(ch.service, client, ch.destination),
                Some(id)
            );
        }
    }
}

/// The design's budget is at most 256 bytes of core state per channel; the
/// table's doc states its size per slot.
#[test]
fn table_stays_within_256_bytes_per_channel() {
    let per_slot = core::mem::size_of::<ChannelTable<1024>>() / 1024;
    std::println!(
        "size_of::<ChannelTable<1024>>() = {} bytes ({per_slot} per slot); Channel = {}, Slot = {}",
        core::mem::size_of::<ChannelTable<1024>>(),
        core::mem::size_of::<Channel>(),
        core::mem::size_of::<Slot>(),
    );
    assert!(per_slot <= 256, "{per_slot} bytes per channel");
}

#[test]
fn channel_id_packs_into_u32() {
    let id = ChannelId {
        slot: 0x1234,
        generation: 0xabcd,
    };
    assert_eq!(id.to_u32(), 0xabcd_1234);
    assert_eq!(ChannelId::from_u32(0xabcd_1234), id);
    assert_eq!(id.slot(), 0x1234);
    assert_eq!(id.generation(), 0xabcd);
}

#[test]
fn insert_find_get_remove() {
    let mut t = ChannelTable::<4>::new();
    assert!(t.is_empty());
    assert_eq!(t.capacity(), 4);
    let a = t.insert(entry(0, 7, 1000, at(1))).unwrap();
    let b = t.insert(exit(0, 2, 7, at(2))).unwrap();
    let c = t.insert(entry(1, 7, 1000, at(3))).unwrap();
    check_invariants(&t);
    assert_eq!(t.len(), 3);
    assert_eq!(t.service_len(ServiceIndex(0)), 2);
    assert_eq!(t.service_len(ServiceIndex(1)), 1);
    assert_eq!(t.service_len(ServiceIndex(2)), 0);

    assert_eq!(t.find_by_client(ServiceIndex(0), addr(1000), None), Some(a));
    assert_eq!(t.find_by_client(ServiceIndex(1), addr(1000), None), Some(c));
    assert_eq!(
        t.find_by_client(ServiceIndex(0), addr(1000), Some(addr(1))),
        None
    );
    assert_eq!(t.find_by_client(ServiceIndex(0), addr(1001), None), None);
    assert_eq!(t.find_by_number(ServiceIndex(0), 1, 7), Some(a));
    assert_eq!(t.find_by_number(ServiceIndex(0), 2, 7), Some(b));
    assert_eq!(t.find_by_number(ServiceIndex(1), 1, 7), Some(c));
    assert_eq!(t.find_by_number(ServiceIndex(1), 2, 7), None);
    assert_eq!(t.get(b), Some(&exit(0, 2, 7, at(2))));

    assert_eq!(t.remove(a), Some(entry(0, 7, 1000, at(1))));
    check_invariants(&t);
    assert_eq!(t.get(a), None);
    assert_eq!(t.remove(a), None);
    assert_eq!(t.find_by_client(ServiceIndex(0), addr(1000), None), None);
    assert_eq!(t.find_by_number(ServiceIndex(0), 1, 7), None);
    assert_eq!(t.service_len(ServiceIndex(0)), 1);

    // The freed slot is reused with a new generation.
    let d = t.insert(entry(0, 7, 1000, at(4))).unwrap();
    assert_eq!(d.slot(), a.slot());
    assert_ne!(d, a);
    assert_eq!(t.get(a), None);
    t.touch(a, at(9), Way::ToPeer);
    assert_eq!(t.get(d).unwrap().last_active, at(4));
    check_invariants(&t);
}

#[test]
fn router_mode_keys_by_destination() {
    let mut t = ChannelTable::<4>::new();
    let mut ch = entry(0, 1, 1000, at(1));
    ch.destination = Some(addr(53));
    let a = t.insert(ch.clone()).unwrap();
    ch.number = 2;
    ch.destination = Some(addr(54));
    let b = t.insert(ch.clone()).unwrap();
    ch.number = 3;
    ch.destination = None;
    let c = t.insert(ch.clone()).unwrap();
    assert_eq!(
        t.find_by_client(ServiceIndex(0), addr(1000), Some(addr(53))),
        Some(a)
    );
    assert_eq!(
        t.find_by_client(ServiceIndex(0), addr(1000), Some(addr(54))),
        Some(b)
    );
    assert_eq!(t.find_by_client(ServiceIndex(0), addr(1000), None), Some(c));
    ch.number = 4;
    assert_eq!(t.insert(ch), Err(InsertError::DuplicateClient));
    check_invariants(&t);
}

#[test]
fn duplicates_refused_and_full() {
    let mut t = ChannelTable::<2>::new();
    t.insert(entry(0, 1, 1000, at(1))).unwrap();
    assert_eq!(
        t.insert(entry(0, 1, 1001, at(1))),
        Err(InsertError::DuplicateNumber)
    );
    assert_eq!(
        t.insert(entry(0, 2, 1000, at(1))),
        Err(InsertError::DuplicateClient)
    );
    // Another peer may use the same number; exit channels have no client.
    t.insert(exit(0, 2, 1, at(1))).unwrap();
    check_invariants(&t);
    assert_eq!(t.insert(exit(3, 2, 1, at(1))), Err(InsertError::Full));
    // Duplicates are reported before fullness.
    assert_eq!(
        t.insert(exit(0, 2, 1, at(1))),
        Err(InsertError::DuplicateNumber)
    );
    assert_eq!(t.len(), 2);
    check_invariants(&t);
}

#[test]
fn touch_and_oldest_follow_lru_order() {
    let mut t = ChannelTable::<8>::new();
    assert_eq!(t.oldest(ServiceIndex(0)), None);
    let ids: Vec<_> = (0..4)
        .map(|i| {
            t.insert(entry(0, i, 1000 + i as u16, at(u64::from(i))))
                .unwrap()
        })
        .collect();
    let other = t.insert(exit(1, 1, 1, at(0))).unwrap();
    assert_eq!(t.oldest(ServiceIndex(0)), Some((ids[0], at(0))));
    assert_eq!(t.oldest(ServiceIndex(1)), Some((other, at(0))));

    t.touch(ids[0], at(10), Way::ToPeer);
    check_invariants(&t);
    assert_eq!(t.oldest(ServiceIndex(0)), Some((ids[1], at(1))));
    t.touch(ids[2], at(11), Way::ToPeer); // from the middle
    t.touch(ids[2], at(12), Way::ToPeer); // already the most recent
    check_invariants(&t);
    assert_eq!(t.oldest(ServiceIndex(0)), Some((ids[1], at(1))));
    t.remove(ids[1]);
    assert_eq!(t.oldest(ServiceIndex(0)), Some((ids[3], at(3))));
    t.touch(ids[3], at(13), Way::ToPeer);
    assert_eq!(t.oldest(ServiceIndex(0)), Some((ids[0], at(10))));
    assert_eq!(t.oldest(ServiceIndex(1)), Some((other, at(0))));
    check_invariants(&t);

    // Evicting the oldest while it has been idle long enough.
    let now = at(30);
    while let Some((id, last)) = t.oldest(ServiceIndex(0)) {
        if now - last < core::time::Duration::from_secs(18) {
            break;
        }
        t.remove(id);
    }
    assert_eq!(t.service_len(ServiceIndex(0)), 1);
    assert_eq!(t.oldest(ServiceIndex(0)), Some((ids[3], at(13))));
    check_invariants(&t);
}

#[test]
fn retain_reports_what_it_removes() {
    let mut t = ChannelTable::<8>::new();
    let ids: Vec<_> = (0..6)
        .map(|i| {
            t.insert(exit((i % 2) as u8, 1, i, at(u64::from(i))))
                .unwrap()
        })
        .collect();
    let mut gone = Vec::new();
    let fate = |c: &Channel| {
        if c.last_active >= at(3) {
            Fate::Keep
        } else {
            Fate::Remove
        }
    };
    t.retain(|_, c| fate(c), |id, c, f| gone.push((id, c.number, f)));
    let gone: Vec<_> = gone
        .into_iter()
        .map(|(id, n, f)| {
            assert_eq!(f, Fate::Remove);
            (id, n)
        })
        .collect();
    assert_eq!(gone, [(ids[0], 0), (ids[1], 1), (ids[2], 2)]);
    assert_eq!(t.len(), 3);
    assert!(ids[..3].iter().all(|&id| t.get(id).is_none()));
    check_invariants(&t);
    let mut seen = Vec::new();
    t.retain(
        |id, _| {
            seen.push(id);
            Fate::Keep
        },
        |_, _, _| panic!("nothing to remove"),
    );
    assert_eq!(seen, ids[3..]);
    let listed: Vec<_> = t.iter().map(|(id, _)| id).collect();
    assert_eq!(listed, ids[3..]);
}

#[test]
fn a_held_slot_keeps_its_id_but_frees_its_keys() {
    let mut t = ChannelTable::<4>::new();
    let a = t.insert(exit(0, 1, 7, at(0))).unwrap();
    let held = t.hold(a, at(30)).expect("live channel");
    assert_eq!(held.number, 7);
    check_invariants(&t);
    // Gone for live lookups, found as held, not counted live.
    assert_eq!(t.get(a), None);
    assert_eq!(t.held(a).map(|c| c.number), Some(7));
    assert_eq!(t.find_by_number(ServiceIndex(0), 1, 7), None);
    assert_eq!(
        (t.len(), t.held_len(), t.service_held(ServiceIndex(0))),
        (0, 1, 1)
    );
    assert_eq!(t.oldest(ServiceIndex(0)), None);
    // Its number serves a new channel at once, in another slot.
    let b = t.insert(exit(0, 1, 7, at(1))).unwrap();
    assert_ne!(a.slot(), b.slot());
    // Neither live-only command touches a held slot.
    assert_eq!(t.remove(a), None);
    assert_eq!(t.hold(a, at(40)), None);
    t.touch(a, at(2), Way::ToPeer);
    check_invariants(&t);
    // Not due yet; then due: released, its id stale for good.
    assert_eq!(t.next_release(), Some(at(30)));
    let mut released = Vec::new();
    t.release_due(at(29), |id, c| released.push((id, c.number)));
    assert!(released.is_empty());
    t.release_due(at(30), |id, c| released.push((id, c.number)));
    assert_eq!(released, [(a, 7)]);
    assert_eq!((t.held(a), t.held_len(), t.next_release()), (None, 0, None));
    check_invariants(&t);
}

#[test]
fn held_slots_count_against_capacity() {
    let mut t = ChannelTable::<2>::new();
    let a = t.insert(exit(0, 1, 0, at(0))).unwrap();
    t.insert(exit(0, 1, 1, at(0))).unwrap();
    t.hold(a, at(10)).unwrap();
    assert!(!t.has_free_slot());
    assert_eq!(t.insert(exit(0, 1, 2, at(1))), Err(InsertError::Full));
    t.release_due(at(10), |_, _| {});
    assert!(t.has_free_slot());
    t.insert(exit(0, 1, 2, at(10))).unwrap();
    check_invariants(&t);
}

/// The held list is released from its head only: a slot held later with
/// an earlier release time waits for the ones before it, and is never
/// released before its own time.
#[test]
fn release_follows_the_order_of_holding() {
    let mut t = ChannelTable::<8>::new();
    let ids: Vec<_> = (0..3)
        .map(|n| t.insert(exit(0, 1, n, at(0))).unwrap())
        .collect();
    t.hold(ids[0], at(20)).unwrap();
    t.hold(ids[1], at(5)).unwrap();
    t.hold(ids[2], at(25)).unwrap();
    let mut released = Vec::new();
    t.release_due(at(10), |id, _| released.push(id));
    assert!(released.is_empty(), "the head is not due");
    t.release_due(at(20), |id, _| released.push(id));
    assert_eq!(released, [ids[0], ids[1]]);
    t.release_due(at(25), |id, _| released.push(id));
    assert_eq!(released, ids);
    check_invariants(&t);
}

/// An answered exchange is held in a list of its own, so a long hold
/// before it does not delay its shorter one; `oldest_answered` finds it
/// at once behind any number of stuck exchanges.
#[test]
fn answered_channels_are_held_apart_and_found_for_eviction() {
    let mut t = ChannelTable::<8>::new();
    let stuck = t.insert(exit(0, 1, 0, at(0))).unwrap();
    let more: Vec<_> = (2..7)
        .map(|n| t.insert(exit(0, 1, n, at(0))).unwrap())
        .collect();
    let mut dns = exit(0, 1, 1, at(0));
    dns.from_peer = 1;
    let dns = t.insert(dns).unwrap();
    assert_eq!(t.oldest_answered(ServiceIndex(0)), None, "no reply yet");
    t.touch(dns, at(1), Way::ToPeer);
    assert!(t.get(dns).unwrap().answered());
    assert!(!t.get(stuck).unwrap().answered());
    assert_eq!(t.oldest(ServiceIndex(0)).map(|o| o.0), Some(stuck));
    assert_eq!(t.oldest_answered(ServiceIndex(0)), Some((dns, at(1))));
    check_invariants(&t);
    // A second request makes it unanswered again: back in the other list.
    t.touch(dns, at(2), Way::FromPeer);
    assert_eq!(t.oldest_answered(ServiceIndex(0)), None);
    t.touch(dns, at(3), Way::ToPeer);
    assert_eq!(t.oldest_answered(ServiceIndex(0)), Some((dns, at(3))));
    check_invariants(&t);
    for id in more {
        t.remove(id).unwrap();
    }
    t.hold(stuck, at(30)).unwrap();
    t.hold(dns, at(3)).unwrap();
    check_invariants(&t);
    assert_eq!(t.next_release(), Some(at(3)));
    let mut released = Vec::new();
    t.release_due(at(3), |id, _| released.push(id));
    assert_eq!(released, [dns], "not behind the longer hold");
    t.release_due(at(30), |id, _| released.push(id));
    assert_eq!(released, [dns, stuck]);
    check_invariants(&t);
}

#[test]
fn answered_means_a_short_exchange_with_every_request_answered() {
    let entry = |to_peer, from_peer| Channel {
        client: Some(addr(1)),
        to_peer,
        from_peer,
        ..exit(0, 1, 0, at(0))
    };
    assert!(entry(1, 1).answered());
    assert!(entry(3, 4).answered());
    assert!(!entry(2, 1).answered(), "a retry is unanswered");
    assert!(!entry(0, 1).answered(), "no request");
    let long = ANSWERED_MAX_REQUESTS + 1;
    assert!(!entry(long, long).answered(), "a flow, not an exchange");
    let exit = |to_peer, from_peer| Channel {
        to_peer,
        from_peer,
        ..exit(0, 1, 0, at(0))
    };
    assert!(exit(1, 1).answered());
    assert!(!exit(0, 1).answered(), "the target has not replied");
}

#[test]
fn release_service_and_release_held_free_at_once() {
    let mut t = ChannelTable::<8>::new();
    let a = t.insert(exit(0, 1, 0, at(0))).unwrap();
    let b = t.insert(exit(1, 1, 0, at(0))).unwrap();
    let c = t.insert(exit(0, 1, 1, at(0))).unwrap();
    for id in [a, b, c] {
        t.hold(id, at(100)).unwrap();
    }
    let mut released = Vec::new();
    t.release_service(ServiceIndex(0), |id, _| released.push(id));
    assert_eq!(released, [a, c]);
    assert_eq!(
        (
            t.held_len(),
            t.service_held(ServiceIndex(0)),
            t.service_held(ServiceIndex(1))
        ),
        (1, 0, 1)
    );
    check_invariants(&t);
    assert_eq!(t.release_held(a), None, "already released");
    assert_eq!(t.release_held(b).map(|c| c.service), Some(ServiceIndex(1)));
    assert_eq!(t.held_len(), 0);
    check_invariants(&t);
}

#[test]
fn retain_can_hold() {
    let mut t = ChannelTable::<8>::new();
    let ids: Vec<_> = (0..4)
        .map(|n| t.insert(exit(0, n as u16, n, at(0))).unwrap())
        .collect();
    let mut ended = Vec::new();
    t.retain(
        |_, c| match c.peer {
            0 => Fate::Hold(at(9)),
            1 => Fate::Remove,
            _ => Fate::Keep,
        },
        |id, _, f| ended.push((id, f)),
    );
    assert_eq!(ended, [(ids[0], Fate::Hold(at(9))), (ids[1], Fate::Remove)]);
    assert!(t.held(ids[0]).is_some());
    assert!(t.held(ids[1]).is_none() && t.get(ids[1]).is_none());
    assert_eq!((t.len(), t.held_len()), (2, 1));
    check_invariants(&t);
}

#[test]
fn stale_and_foreign_ids_are_ignored() {
    let mut t = ChannelTable::<4>::new();
    let a = t.insert(exit(0, 1, 1, at(1))).unwrap();
    for bogus in [
        ChannelId::from_u32(u32::MAX),
        ChannelId::from_u32(4),
        ChannelId::from_u32(0x0001_0000 | u32::from(a.slot())),
        ChannelId::from_u32(1),
    ] {
        assert_eq!(t.get(bogus), None);
        t.touch(bogus, at(5), Way::ToPeer);
        assert_eq!(t.remove(bogus), None);
    }
    assert_eq!(t.get(a).unwrap().last_active, at(1));
    check_invariants(&t);
}

#[test]
fn generation_wraps_after_65536_reuses() {
    let mut t = ChannelTable::<2>::new();
    let _keep = t.insert(exit(0, 0, 0, at(0))).unwrap();
    let mut ids = Vec::new();
    for i in 0..70_000u32 {
        let id = t.insert(exit(0, 1, i, at(0))).unwrap();
        ids.push(id);
        assert_eq!(t.remove(id).map(|c| c.number), Some(i));
    }
    let current = t.insert(exit(0, 2, 0, at(0))).unwrap();
    let n = ids.len();
    assert!(ids.iter().all(|id| id.slot() == current.slot()));
    // Ids of the last 65535 channels in the slot are distinct from the
    // current one and stale...
    for stale in &ids[n - 65535..] {
        assert_ne!(*stale, current);
        assert_eq!(t.get(*stale), None);
    }
    // ...but the one from 65536 reuses ago matches it again, as documented.
    assert_eq!(ids[n - 65536], current);
    assert!(t.get(ids[n - 65536]).is_some());
    check_invariants(&t);
}

/// One step of the property test.
#[derive(Clone, Debug)]
enum Op {
    Insert {
        service: u8,
        peer: u16,
        number: u32,
        client: Option<u16>,
        destination: Option<u16>,
    },
    /// Touches the `n`th live channel (modulo), or a stale id.
    Touch(usize),
    Remove(usize),
    /// Holds the `n`th live channel (or a stale or held id) for this many
    /// seconds.
    Hold(usize, u64),
    /// Releases the held slots due now.
    ReleaseDue,
    /// Keeps channels with `(number + peer + salt) % 3 != 0`, holds those
    /// with remainder 1 for `salt % 4` seconds and removes the rest.
    Retain(u32),
    /// Advances the clock by this many seconds.
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, 0..3u16, 0..6u32, proptest::option::of(0..4u16), proptest::option::of(0..2u16))
            .prop_map(|(service, peer, number, client, destination)| Op::Insert {
                service, peer, number, client, destination
            }),
        3 => any::<usize>().prop_map(Op::Touch),
        2 => any::<usize>().prop_map(Op::Remove),
        2 => (any::<usize>(), 0..5u64).prop_map(|(n, secs)| Op::Hold(n, secs)),
        1 => Just(Op::ReleaseDue),
        1 => any::<u32>().prop_map(Op::Retain),
        2 => (0..3u64).prop_map(Op::Wait),
    ]
}

/// The reference model: live channels with the order stamp of their last
/// insert or touch, held channels in the order they were held with their
/// release times, and every id that went stale.
#[derive(Default)]
struct Model {
    live: Vec<(ChannelId, Channel, u64)>,
    held: Vec<(ChannelId, Channel, Instant)>,
    stale: Vec<ChannelId>,
    stamp: u64,
}

impl Model {
    /// Picks a live id, or a stale or held one every few choices.
    fn pick(&self, n: usize) -> Option<ChannelId> {
        if !self.held.is_empty() && n % 7 == 1 {
            return Some(self.held[n / 7 % self.held.len()].0);
        }
        if !self.stale.is_empty() && (n.is_multiple_of(4) || self.live.is_empty()) {
            return Some(self.stale[n / 4 % self.stale.len()]);
        }
        self.live.get(n % self.live.len().max(1)).map(|e| e.0)
    }

    /// Moves the live `id` to the held list.
    fn hold(&mut self, id: ChannelId, release_at: Instant) -> Option<Channel> {
        let i = self.live.iter().position(|e| e.0 == id)?;
        let (_, ch, _) = self.live.remove(i);
        self.held.push((id, ch.clone(), release_at));
        Some(ch)
    }

    fn expect_insert(&self, ch: &Channel) -> Result<(), InsertError> {
        if self
            .live
            .iter()
            .any(|(_, c, _)| c.number_key() == ch.number_key())
        {
            return Err(InsertError::DuplicateNumber);
        }
        if ch.client.is_some()
            && self
                .live
                .iter()
                .any(|(_, c, _)| c.client_key() == ch.client_key())
        {
            return Err(InsertError::DuplicateClient);
        }
        if self.live.len() + self.held.len() == 16 {
            return Err(InsertError::Full);
        }
        Ok(())
    }
}

fn check_against_model(t: &ChannelTable<16>, m: &Model) {
    check_invariants(t);
    assert_eq!(t.len(), m.live.len());
    for (id, ch, _) in &m.live {
        assert_eq!(t.get(*id), Some(ch));
    }
    for id in &m.stale {
        assert_eq!(t.get(*id), None);
        assert_eq!(t.held(*id), None);
    }
    assert_eq!(t.held_len(), m.held.len());
    for (id, ch, _) in &m.held {
        assert_eq!(t.get(*id), None);
        assert_eq!(t.held(*id), Some(ch));
    }
    let head = |answered: bool| m.held.iter().find(|e| e.1.answered() == answered);
    let next = [head(false), head(true)]
        .into_iter()
        .flatten()
        .map(|e| e.2)
        .min();
    assert_eq!(t.next_release(), next);
    for service in (0..4u8).map(ServiceIndex) {
        // Per list, exact LRU order; across the two, the oldest by time
        // (ties between the lists may go either way).
        let oldest_where = |answered: Option<bool>| {
            m.live
                .iter()
                .filter(|(_, c, _)| c.service == service)
                .filter(|(_, c, _)| answered.is_none_or(|a| c.answered() == a))
                .min_by_key(|(_, _, stamp)| *stamp)
                .map(|(id, c, _)| (*id, c.last_active))
        };
        assert_eq!(t.oldest_answered(service), oldest_where(Some(true)));
        let oldest = t.oldest(service);
        assert_eq!(oldest.map(|o| o.1), oldest_where(None).map(|o| o.1));
        if let Some((id, _)) = oldest {
            let answered = t.get(id).unwrap().answered();
            assert_eq!(
                oldest.map(|o| o.0),
                oldest_where(Some(answered)).map(|o| o.0)
            );
        }
        for peer in 0..3 {
            for number in 0..6 {
                let expected = m
                    .live
                    .iter()
                    .find(|(_, c, _)| {
                        c.number_key()
                            == NumberKey {
                                service,
                                peer,
                                number,
                            }
                    })
                    .map(|e| e.0);
                assert_eq!(t.find_by_number(service, peer, number), expected);
            }
        }
        for client in 0..4 {
            for destination in [None, Some(0), Some(1)] {
                let key = ClientKey {
                    service,
                    client: addr(client),
                    destination: destination.map(addr),
                };
                let expected = m
                    .live
                    .iter()
                    .find(|(_, c, _)| c.client_key() == Some(key))
                    .map(|e| e.0);
                assert_eq!(
                    t.find_by_client(service, key.client, key.destination),
                    expected
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn table_matches_model(ops in proptest::collection::vec(op(), 1..200)) {
        let mut t = ChannelTable::<16>::new();
        let mut m = Model::default();
        let mut now = Instant::ZERO;
        for op in ops {
            m.stamp += 1;
            match op {
                Op::Insert { service, peer, number, client, destination } => {
                    let ch = Channel {
                        service: ServiceIndex(service),
                        peer,
                        number,
                        client: client.map(addr),
                        destination: destination.map(addr),
                        created: now,
                        last_active: now,
                        to_peer: 0,
                        from_peer: 0,
                    };
                    let expected = m.expect_insert(&ch);
                    let got = t.insert(ch.clone());
                    prop_assert_eq!(got.map(|_| ()), expected);
                    if let Ok(id) = got {
                        prop_assert!(m.live.iter().all(|e| e.0.slot() != id.slot()));
                        prop_assert!(m.held.iter().all(|e| e.0.slot() != id.slot()));
                        prop_assert!(!m.stale.contains(&id));
                        m.live.push((id, ch, m.stamp));
                    }
                }
                Op::Touch(n) => {
                    if let Some(id) = m.pick(n) {
                        // Both ways, so that some channels become answered
                        // and are held in the other list.
                        let way = if n % 3 == 0 { Way::FromPeer } else { Way::ToPeer };
                        t.touch(id, now, way);
                        if let Some(e) = m.live.iter_mut().find(|e| e.0 == id) {
                            e.1.last_active = now;
                            match way {
                                Way::ToPeer => e.1.to_peer += 1,
                                Way::FromPeer => e.1.from_peer += 1,
                            }
                            e.2 = m.stamp;
                        }
                    }
                }
                Op::Remove(n) => {
                    if let Some(id) = m.pick(n) {
                        let got = t.remove(id);
                        let pos = m.live.iter().position(|e| e.0 == id);
                        let expected = pos.map(|i| m.live.remove(i).1);
                        prop_assert_eq!(got, expected);
                        if pos.is_some() {
                            m.stale.push(id);
                        }
                    }
                }
                Op::Hold(n, secs) => {
                    if let Some(id) = m.pick(n) {
                        let release_at = now + core::time::Duration::from_secs(secs);
                        let got = t.hold(id, release_at);
                        prop_assert_eq!(got, m.hold(id, release_at));
                    }
                }
                Op::ReleaseDue => {
                    let mut released = Vec::new();
                    t.release_due(now, |id, c| released.push((id, c.clone())));
                    // Each held list from its head, the other list first.
                    let mut expected = Vec::new();
                    for answered in [false, true] {
                        let due: Vec<_> = m
                            .held
                            .iter()
                            .filter(|e| e.1.answered() == answered)
                            .take_while(|e| e.2 <= now)
                            .map(|e| (e.0, e.1.clone()))
                            .collect();
                        m.held.retain(|e| !due.iter().any(|d| d.0 == e.0));
                        expected.extend(due);
                    }
                    prop_assert_eq!(&released, &expected);
                    m.stale.extend(released.iter().map(|e| e.0));
                }
                Op::Retain(salt) => {
                    let fate = |c: &Channel| match (c.number + u32::from(c.peer)).wrapping_add(salt) % 3 {
                        0 => Fate::Remove,
                        1 => Fate::Hold(now + core::time::Duration::from_secs(u64::from(salt % 4))),
                        _ => Fate::Keep,
                    };
                    let mut ended = Vec::new();
                    t.retain(|_, c| fate(c), |id, c, f| ended.push((id, c, f)));
                    let mut expected: Vec<_> = m
                        .live
                        .iter()
                        .filter(|e| fate(&e.1) != Fate::Keep)
                        .map(|e| (e.0, e.1.clone(), fate(&e.1)))
                        .collect();
                    expected.sort_by_key(|e| e.0.slot());
                    prop_assert_eq!(&ended, &expected);
                    for (id, _, f) in &ended {
                        match f {
                            Fate::Hold(at) => { m.hold(*id, *at); }
                            _ => {
                                m.live.retain(|e| e.0 != *id);
                                m.stale.push(*id);
                            }
                        }
                    }
                }
                Op::Wait(secs) => now += core::time::Duration::from_secs(secs),
            }
            check_against_model(&t, &m);
        }
    }
}
