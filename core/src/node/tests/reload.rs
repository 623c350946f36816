//! `Node::reload`: unchanged services keep their channels and lose nothing,
//! removed ones close and count theirs, changed peers handshake again, and
//! an invalid configuration changes nothing.

use super::*;
use crate::key::PresharedKey;

const TARGET: &str = "127.0.0.9:53";

fn client(i: u16) -> SocketAddr {
    SocketAddr::new([198, 51, 100, 7].into(), 10000 + i)
}

/// X holds the entries of forward services 1 and 2, Y their exits.
fn two_services(seed: u64) -> (Net, [ServiceConfig; 2]) {
    let mut net = Net::new(seed);
    let entries = [
        forward_entry(1, net.peer[X], "127.0.0.1:5001"),
        forward_entry(2, net.peer[X], "127.0.0.1:5002"),
    ];
    for e in &entries {
        net.service(X, e.clone());
    }
    net.service(Y, forward_exit(1, Peers::One(net.peer[Y]), TARGET));
    net.service(Y, forward_exit(2, Peers::One(net.peer[Y]), "127.0.0.9:54"));
    net.up();
    (net, entries)
}

fn peer_configs(net: &Net, i: usize) -> Vec<PeerConfig> {
    vec![net.nodes[i]
        .link()
        .peer_config(net.peer[i])
        .unwrap()
        .clone()]
}

fn reload(
    net: &mut Net,
    i: usize,
    peers: &[PeerConfig],
    services: &[ServiceConfig],
) -> Result<ReloadSummary, ReloadError> {
    let key = *net.nodes[i].link().public_key();
    let now = net.now;
    let r = net.nodes[i].reload(now, &key, peers, services);
    net.settle();
    r
}

#[test]
fn removing_a_service_keeps_the_others_channels_and_traffic() {
    let (mut net, _) = two_services(1);
    for c in 0..3 {
        net.send(X, client(c), a("127.0.0.1:5001"), b"one");
        net.send(X, client(c), a("127.0.0.1:5002"), b"two");
    }
    assert_eq!(net.stats(Y, ServiceId::new(2)).channels_open, 3);
    assert_eq!(net.take_payloads_to(a("127.0.0.9:54")).len(), 3);
    // Y drops service 1 (first in its list, so service 2 moves into its
    // place) and adds a push exit 3; services are named by position in the
    // new peer list (0).
    let peers = peer_configs(&net, Y);
    let new = [
        forward_exit(2, Peers::One(PeerId(0)), "127.0.0.9:54"),
        service(
            3,
            Peers::One(PeerId(0)),
            Role::PushExit {
                target: a("127.0.0.9:55"),
            },
        ),
    ];
    let sockets_before = net.open_sockets(Y);
    let summary = reload(&mut net, Y, &peers, &new).unwrap();
    assert_eq!(summary.services_removed, 1);
    assert_eq!(summary.services_added, 1);
    assert_eq!(summary.channels_closed, 3);
    assert_eq!(
        summary.peers_added + summary.peers_removed + summary.peers_rekeyed,
        0
    );
    // Service 1's three channel sockets closed, service 3's socket opened.
    assert_eq!(net.open_sockets(Y), sockets_before - 3 + 1);
    assert!(net.nodes[Y].service_stats(ServiceId::new(1)).is_none());
    // Service 2 kept its channels and carries on both ways, nothing lost.
    assert_eq!(net.stats(Y, ServiceId::new(2)).channels_open, 3);
    for c in 0..3 {
        net.send(X, client(c), a("127.0.0.1:5002"), b"again");
    }
    let got = net.take_delivered_to(a("127.0.0.9:54"));
    assert_eq!(got.len(), 3);
    assert_eq!(
        net.stats(Y, ServiceId::new(2)).channels_created,
        3,
        "no channel opened anew"
    );
    for d in got {
        let socket = net.socket_at(Y, d.from);
        net.send_on(Y, socket, a("127.0.0.9:54"), b"reply");
    }
    for c in 0..3 {
        assert_eq!(net.take_delivered_to(client(c)).len(), 1);
    }
    assert_eq!(
        net.stats(X, ServiceId::new(2)).drops.total()
            + net.stats(Y, ServiceId::new(2)).drops.total(),
        0
    );
    // The removed service's frames are now unknown on Y.
    net.send(X, client(0), a("127.0.0.1:5001"), b"gone");
    assert_eq!(
        net.nodes[Y].node_drops().get(ServiceDrop::UnknownService),
        1
    );
}

#[test]
fn an_invalid_configuration_changes_nothing() {
    let (mut net, entries) = two_services(2);
    net.send(X, client(0), a("127.0.0.1:5001"), b"one");
    let peers = peer_configs(&net, X);
    let dup = [entries[1].clone(), entries[1].clone()];
    assert_eq!(
        reload(&mut net, X, &peers, &dup),
        Err(ReloadError::Service {
            index: 1,
            error: ServiceError::DuplicateId
        })
    );
    let unknown = [forward_entry(1, PeerId(1), "127.0.0.1:5001")];
    assert_eq!(
        reload(&mut net, X, &peers, &unknown),
        Err(ReloadError::Service {
            index: 0,
            error: ServiceError::UnknownPeer
        })
    );
    let own = PeerConfig::new(*net.nodes[X].link().public_key());
    assert_eq!(
        reload(&mut net, X, &[own], &[]),
        Err(ReloadError::Peer {
            index: 0,
            error: ConfigError::OwnKey
        })
    );
    let other_key = node_key(99, 0).public_key();
    let now = net.now;
    assert_eq!(
        net.nodes[X].reload(now, &other_key, &peers, &[]),
        Err(ReloadError::OwnKeyChanged)
    );
    assert_eq!(net.stats(X, ServiceId::new(1)).channels_open, 1);
    assert_eq!(net.nodes[X].services().count(), 2);
    // The same configuration again changes nothing at all.
    let summary = reload(&mut net, X, &peers, &entries).unwrap();
    assert_eq!(summary, ReloadSummary::default());
    net.send(X, client(0), a("127.0.0.1:5001"), b"still");
    assert_eq!(net.take_payloads_to(a(TARGET)).len(), 2);
}

#[test]
fn a_new_preshared_key_handshakes_again_and_keeps_channels() {
    let (mut net, entries) = two_services(3);
    net.send(X, client(0), a("127.0.0.1:5001"), b"one");
    let handshakes = net.nodes[X]
        .link()
        .peer(net.peer[X], net.now)
        .unwrap()
        .stats;
    let psk = PresharedKey::from_bytes([7; 32]);
    let exits = [
        forward_exit(1, Peers::One(PeerId(0)), TARGET),
        forward_exit(2, Peers::One(PeerId(0)), "127.0.0.9:54"),
    ];
    for (i, services) in [(Y, &exits[..]), (X, &entries[..])] {
        let mut peers = peer_configs(&net, i);
        peers[0].preshared_key = Some(psk.clone());
        let summary = reload(&mut net, i, &peers, services).unwrap();
        assert_eq!(summary.peers_rekeyed, 1);
        assert_eq!(summary.channels_closed, 0);
    }
    net.send(X, client(0), a("127.0.0.1:5001"), b"two");
    net.settle();
    let after = net.nodes[X]
        .link()
        .peer(net.peer[X], net.now)
        .unwrap()
        .stats;
    assert!(after.handshakes_completed > handshakes.handshakes_completed);
    assert_eq!(net.take_payloads_to(a(TARGET)).len(), 2);
    assert_eq!(
        net.stats(Y, ServiceId::new(1)).channels_created,
        1,
        "the channel was kept"
    );
}

#[test]
fn a_removed_peer_is_forgotten_and_its_slot_reused() {
    let (mut net, _) = two_services(4);
    net.send(X, client(0), a("127.0.0.1:5001"), b"one");
    assert_eq!(net.take_payloads_to(a(TARGET)).len(), 1);
    let old = *net.nodes[Y]
        .link()
        .peer(net.peer[Y], net.now)
        .unwrap()
        .public_key
        .as_bytes();
    let summary = reload(&mut net, Y, &[], &[]).unwrap();
    assert_eq!(summary.peers_removed, 1);
    assert_eq!(summary.services_removed, 2);
    assert_eq!(summary.channels_closed, 1);
    assert!(net.nodes[Y].link().peer(net.peer[Y], net.now).is_none());
    assert_eq!(net.open_sockets(Y), 0);
    // X's frames no longer find a session on Y.
    net.send(X, client(0), a("127.0.0.1:5001"), b"two");
    assert!(net.take_payloads_to(a(TARGET)).is_empty());
    // A new peer takes the retired slot.
    let new_key = node_key(77, 1).public_key();
    let summary = reload(&mut net, Y, &[PeerConfig::new(new_key)], &[]).unwrap();
    assert_eq!(summary.peers_added, 1);
    assert_eq!(net.nodes[Y].link().peer_count(), 1);
    let status = net.nodes[Y].link().peer(PeerId(0), net.now).unwrap();
    assert_ne!(status.public_key.as_bytes(), &old);
}

#[test]
fn reloading_an_exit_unchanged_keeps_its_link_kept_up() {
    let (mut net, _) = two_services(5);
    let exits = [
        forward_exit(1, Peers::One(PeerId(0)), TARGET),
        forward_exit(2, Peers::One(PeerId(0)), "127.0.0.9:54"),
    ];
    // The file's peer, as the daemon reads it: `keep_up` is what the file
    // says (off); the running peer's is on because Y holds exits for it.
    let mut file_peer = peer_configs(&net, Y).remove(0);
    assert!(file_peer.keep_up);
    file_peer.keep_up = false;
    let summary = reload(&mut net, Y, &[file_peer.clone()], &exits).unwrap();
    assert_eq!(summary, ReloadSummary::default());
    assert!(
        net.nodes[Y]
            .link()
            .peer_config(net.peer[Y])
            .unwrap()
            .keep_up
    );
    // Without its exits, nothing implies it any more.
    let summary = reload(&mut net, Y, &[file_peer], &[]).unwrap();
    assert_eq!(summary.services_removed, 2);
    assert_eq!(summary.peers_updated, 1);
    assert!(
        !net.nodes[Y]
            .link()
            .peer_config(net.peer[Y])
            .unwrap()
            .keep_up
    );
}
