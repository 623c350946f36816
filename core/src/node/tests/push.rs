//! Push accounting: sequence numbers, acknowledgements, the outage buffer,
//! with exact counts through outages and restarts.

use super::*;

const LISTEN: &str = "127.0.0.1:5514";
const TARGET: &str = "127.0.0.9:514";
const SENDER: &str = "127.0.0.1:40000";

fn services(net: &Net) -> [ServiceConfig; 2] {
    [
        ServiceConfig::new(
            ServiceId::new(2),
            Peers::One(net.peer[X]),
            Role::PushEntry { listen: a(LISTEN) },
        ),
        ServiceConfig::new(
            ServiceId::new(2),
            Peers::Any,
            Role::PushExit { target: a(TARGET) },
        ),
    ]
}

/// A push service 2 from X (entry) to Y, with an outage buffer of
/// `buffer` bytes at X if given, and the link up.
fn push_net(seed: u64, buffer: Option<usize>) -> Net {
    let mut net = Net::new(seed);
    let [entry, exit] = services(&net);
    net.service(X, entry);
    net.service(Y, exit);
    if let Some(bytes) = buffer {
        net.nodes[X]
            .set_push_buffer(ServiceId::new(2), vec![0; bytes])
            .unwrap();
    }
    net.up();
    net
}

fn send_lines(net: &mut Net, lines: core::ops::Range<u32>) {
    for i in lines {
        net.send(X, a(SENDER), a(LISTEN), format!("line {i}").as_bytes());
    }
}

fn lines(range: core::ops::Range<u32>) -> Vec<Vec<u8>> {
    range.map(|i| format!("line {i}").into_bytes()).collect()
}

/// Y restarts while the link is cut; X finds out when its next handshake
/// reaches the new Y.
fn restart_exit_during_outage(net: &mut Net, during: core::ops::Range<u32>) {
    net.link_up = false;
    send_lines(net, during);
    let [_, exit] = services(net);
    net.restart(Y, 77, &[exit]);
    net.link_up = true;
    net.run_for(Duration::from_secs(40));
}

#[test]
fn acknowledgements_free_the_buffer_and_count_nothing_when_all_arrives() {
    let mut net = push_net(1, Some(4096));
    send_lines(&mut net, 0..100);
    // Every ACK_EVERY datagrams the exit acknowledges at once; the rest
    // wait for ACK_DELAY.
    assert_eq!(
        net.stats(X, ServiceId::new(2)).buffered,
        100 % u64::from(ACK_EVERY)
    );
    net.run_for(ACK_DELAY);
    let (sx, sy) = (
        net.stats(X, ServiceId::new(2)),
        net.stats(Y, ServiceId::new(2)),
    );
    assert_eq!((sx.buffered, sx.buffered_bytes), (0, 0));
    assert_eq!(net.take_payloads_to(a(TARGET)), lines(0..100));
    assert_eq!(
        (sy.lost_in_transit, sy.reordered, sy.drops.total()),
        (0, 0, 0)
    );
    assert_eq!((sx.unconfirmed, sx.drops.total()), (0, 0));
    // Acknowledgements are not customer traffic.
    assert_eq!(sx.from_peer.datagrams, 0);
}

#[test]
fn datagrams_lost_on_the_link_are_counted_exactly_at_the_exit() {
    let mut net = push_net(2, None);
    send_lines(&mut net, 0..10);
    net.link_up = false;
    send_lines(&mut net, 10..17);
    net.link_up = true;
    send_lines(&mut net, 17..20);
    let mut expected = lines(0..10);
    expected.extend(lines(17..20));
    assert_eq!(net.take_payloads_to(a(TARGET)), expected);
    let sy = net.stats(Y, ServiceId::new(2));
    assert_eq!((sy.lost_in_transit, sy.reordered), (7, 0));
    // The entry sent them all: it cannot know, the exit does.
    assert_eq!(net.stats(X, ServiceId::new(2)).to_peer.datagrams, 20);
}

#[test]
fn without_a_buffer_what_the_restarted_exit_never_acknowledged_is_counted() {
    let mut net = push_net(3, None);
    send_lines(&mut net, 0..10);
    net.run_for(ACK_DELAY);
    restart_exit_during_outage(&mut net, 10..25);
    send_lines(&mut net, 25..30);
    let mut expected = lines(0..10);
    expected.extend(lines(25..30));
    assert_eq!(net.take_payloads_to(a(TARGET)), expected);
    let (sx, sy) = (
        net.stats(X, ServiceId::new(2)),
        net.stats(Y, ServiceId::new(2)),
    );
    assert_eq!(sx.unconfirmed, 15, "exactly the lines sent into the outage");
    // The new exit starts its count where it first hears: no huge loss.
    assert_eq!((sy.lost_in_transit, sy.reordered), (0, 0));
}

#[test]
fn with_a_buffer_an_exit_restart_loses_nothing_and_keeps_the_order() {
    let mut net = push_net(4, Some(64 * 1024));
    send_lines(&mut net, 0..10);
    net.run_for(ACK_DELAY);
    restart_exit_during_outage(&mut net, 10..25);
    send_lines(&mut net, 25..30);
    net.run_for(ACK_DELAY);
    assert_eq!(net.take_payloads_to(a(TARGET)), lines(0..30));
    let (sx, sy) = (
        net.stats(X, ServiceId::new(2)),
        net.stats(Y, ServiceId::new(2)),
    );
    assert_eq!((sx.unconfirmed, sx.drops.total(), sx.buffered), (0, 0, 0));
    assert_eq!((sy.lost_in_transit, sy.drops.total()), (0, 0));
}

#[test]
fn before_the_first_handshake_the_buffer_holds_more_than_the_stage() {
    let mut net = Net::new(5);
    let [entry, exit] = services(&net);
    net.service(X, entry);
    net.service(Y, exit);
    net.nodes[X]
        .set_push_buffer(ServiceId::new(2), vec![0; 4096])
        .unwrap();
    // X has never talked to Y: ten lines, more than the stage's four.
    send_lines(&mut net, 0..10);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.take_payloads_to(a(TARGET)), lines(0..10));
    assert_eq!(net.stats(X, ServiceId::new(2)).drops.total(), 0);
}

#[test]
fn a_full_buffer_drops_the_oldest_and_counts_it() {
    // "line N" is 6 bytes, 8 with its length: 40 bytes hold 5.
    let mut net = Net::new(6);
    let [entry, exit] = services(&net);
    net.service(X, entry);
    net.service(Y, exit);
    net.nodes[X]
        .set_push_buffer(ServiceId::new(2), vec![0; 40])
        .unwrap();
    net.link_up = false;
    send_lines(&mut net, 0..10);
    assert_eq!(
        net.drop_count(X, ServiceId::new(2), ServiceDrop::BufferFull),
        5
    );
    assert!(net.drops[X]
        .iter()
        .all(|d| *d == Dropped::Service(ServiceDrop::BufferFull)));
    net.link_up = true;
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.take_payloads_to(a(TARGET)), lines(5..10));
    assert_eq!(net.stats(X, ServiceId::new(2)).buffered, 0);
}

#[test]
fn an_entry_restart_starts_the_sequence_over_without_loss() {
    let mut net = push_net(7, None);
    send_lines(&mut net, 0..50);
    let [entry, _] = services(&net);
    net.restart(X, 9, &[entry]);
    net.up();
    send_lines(&mut net, 0..5);
    let mut expected = lines(0..50);
    expected.extend(lines(0..5));
    assert_eq!(net.take_payloads_to(a(TARGET)), expected);
    let sy = net.stats(Y, ServiceId::new(2));
    assert_eq!(
        (sy.lost_in_transit, sy.reordered, sy.drops.total()),
        (0, 0, 0)
    );
}

#[test]
fn a_buffer_only_goes_to_a_push_entry() {
    let mut net = push_net(8, None);
    assert_eq!(
        net.nodes[Y].set_push_buffer(ServiceId::new(2), vec![0; 64]),
        Err(ServiceError::NotPushEntry)
    );
    assert_eq!(net.nodes[X].push_buffer_capacity(ServiceId::new(2)), None);
    assert!(net.nodes[X]
        .set_push_buffer(ServiceId::new(2), vec![])
        .unwrap()
        .is_none());
    assert_eq!(
        net.nodes[X].push_buffer_capacity(ServiceId::new(2)),
        Some(0)
    );
    assert_eq!(net.nodes[Y].push_buffer_capacity(ServiceId::new(2)), None);
    // Zero bytes hold nothing: each datagram is dropped as buffer full.
    send_lines(&mut net, 0..1);
    assert_eq!(
        net.drop_count(X, ServiceId::new(2), ServiceDrop::BufferFull),
        1
    );
}

/// Sends lines `range`, one every 10 ms.
fn send_paced(net: &mut Net, range: core::ops::Range<u32>) {
    for i in range {
        send_lines(net, i..i + 1);
        net.run_for(Duration::from_millis(10));
    }
}

#[test]
fn with_a_buffer_a_cut_of_the_link_loses_nothing_and_keeps_the_order() {
    let mut net = push_net(8, Some(64 * 1024));
    send_paced(&mut net, 0..100);
    net.link_up = false;
    // Three seconds of cut link: the entry sends into it until its
    // acknowledgements are ACK_STALE late, then holds everything and
    // probes with the oldest unacknowledged line once every ACK_STALE.
    let sent_before = net.stats(X, ServiceId::new(2)).to_peer.datagrams;
    send_paced(&mut net, 100..400);
    let sx = net.stats(X, ServiceId::new(2));
    assert_eq!(sx.buffered, 300, "all the lines of the cut are held");
    let into_the_cut = sx.to_peer.datagrams - sent_before;
    assert!(
        into_the_cut < 300 / 2,
        "{into_the_cut} sent into the cut link"
    );
    net.link_up = true;
    send_paced(&mut net, 400..500);
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.take_payloads_to(a(TARGET)), lines(0..500));
    let (sx, sy) = (
        net.stats(X, ServiceId::new(2)),
        net.stats(Y, ServiceId::new(2)),
    );
    assert_eq!((sx.unconfirmed, sx.drops.total(), sx.buffered), (0, 0, 0));
    assert_eq!((sy.lost_in_transit, sy.reordered), (0, 0));
}

#[test]
fn with_a_buffer_a_short_cut_is_sent_again_late_when_traffic_is_slow() {
    // Slow traffic: the gap is still within the exit's window when the
    // entry probes, so the lost lines arrive late rather than never.
    let mut net = push_net(9, Some(64 * 1024));
    send_paced(&mut net, 0..5);
    net.link_up = false;
    send_paced(&mut net, 5..8);
    net.link_up = true;
    for i in 8..12 {
        send_lines(&mut net, i..i + 1);
        net.run_for(Duration::from_millis(500));
    }
    net.run_for(Duration::from_secs(5));
    let got = net.take_payloads_to(a(TARGET));
    let mut sorted = got.clone();
    sorted.sort_by_key(|l| {
        String::from_utf8_lossy(&l[5..])
            .parse::<u32>()
            .unwrap_or(u32::MAX)
    });
    assert_eq!(sorted, lines(0..12), "every line once: {got:?}");
    let (sx, sy) = (
        net.stats(X, ServiceId::new(2)),
        net.stats(Y, ServiceId::new(2)),
    );
    assert_eq!(sy.lost_in_transit, 0);
    assert_eq!(sy.reordered, 3, "the cut's lines came after line 8");
    assert_eq!((sx.unconfirmed, sx.drops.total(), sx.buffered), (0, 0, 0));
}
