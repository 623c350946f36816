//! Random interleavings of many clients against a small forward table, with
//! expiry and eviction: replies only ever reach the client that opened the
//! channel, and every datagram is delivered or counted.

use super::*;
use proptest::prelude::*;

const LISTEN: &str = "127.0.0.1:5353";
const TARGET: &str = "127.0.0.9:53";

#[derive(Debug, Clone)]
enum Step {
    /// Client `c` sends a datagram.
    Send(u8),
    /// The target answers the `k`-th exit socket (modulo how many there are).
    Reply(usize),
    /// Time passes.
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0u8..10).prop_map(Step::Send),
        3 => (0usize..16).prop_map(Step::Reply),
        2 => (0u64..2500).prop_map(Step::Wait),
    ]
}

fn client(c: u8) -> SocketAddr {
    SocketAddr::new([203, 0, 113, c].into(), 20000 + u16::from(c))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn replies_reach_only_their_client(steps in prop::collection::vec(step(), 1..150), entry in 0usize..2) {
        let exit = 1 - entry;
        let mut net = Net::new(40);
        net.service(entry, with_limits(forward_entry(1, net.peer[entry], LISTEN), 4, 2, 1));
        net.service(exit, with_limits(forward_exit(1, Peers::One(net.peer[exit]), TARGET), 4, 2, 1));
        net.up();
        let mut sent = 0u64;
        let mut seq = 0u16;
        // What each exit socket last carried: its payloads all come from one
        // client, for the socket's whole life.
        let mut owner: HashMap<SocketAddr, u8> = HashMap::new();
        let mut last: HashMap<SocketAddr, Vec<u8>> = HashMap::new();
        let mut replies_sent = 0u64;
        for s in steps {
            match s {
                Step::Send(c) => {
                    seq += 1;
                    let payload = [c, (seq >> 8) as u8, seq as u8];
                    net.send(entry, client(c), a(LISTEN), &payload);
                    sent += 1;
                }
                Step::Reply(k) => {
                    let sockets = net.connected_to(exit, a(TARGET));
                    if let Some(&(socket, local)) = sockets.get(k % sockets.len().max(1)) {
                        if let Some(p) = last.get(&local) {
                            let mut reply = b"re:".to_vec();
                            reply.extend_from_slice(p);
                            net.send_on(exit, socket, a(TARGET), &reply);
                            replies_sent += 1;
                        }
                    }
                }
                Step::Wait(ms) => net.run_for(Duration::from_millis(ms)),
            }
            for d in net.take_delivered_to(a(TARGET)) {
                let c = d.payload[0];
                prop_assert_eq!(*owner.entry(d.from).or_insert(c), c, "socket {} carried two clients", d.from);
                last.insert(d.from, d.payload);
            }
            for d in std::mem::take(&mut net.delivered) {
                prop_assert_eq!(&d.payload[..3], b"re:");
                prop_assert_eq!(d.to, client(d.payload[3]), "reply reached the wrong client");
                prop_assert_eq!(d.from, a(LISTEN));
            }
            for i in [X, Y] {
                prop_assert!(net.stats(i, 1).channels_open <= 4);
                prop_assert!(net.nodes[i].channels().len() <= 4);
            }
        }
        // Conservation: every client datagram reached the target or was
        // dropped with a counted reason (nothing is lost on this network).
        let (se, sx) = (net.stats(entry, 1), net.stats(exit, 1));
        prop_assert_eq!(se.to_peer.datagrams + se.drops.total(), sent);
        prop_assert_eq!(se.to_peer.datagrams, sx.from_peer.datagrams + sx.drops.get(ServiceDrop::TableFull));
        // Every reply the target sent was sent back or is a counted drop,
        // and every reply that arrived was delivered or counted.
        prop_assert_eq!(sx.to_peer.datagrams + sx.drops.total() - sx.drops.get(ServiceDrop::TableFull)
            + net.nodes[exit].node_drops().get(ServiceDrop::StaleSocket), replies_sent);
        prop_assert_eq!(sx.to_peer.datagrams, se.from_peer.datagrams + se.drops.get(ServiceDrop::UnknownChannel));
    }
}
