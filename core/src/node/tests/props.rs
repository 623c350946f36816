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
    /// The target answers the `k`-th request it received (modulo how many)
    /// within the port hold, however late in it, at the address the
    /// request came from.
    Reply(usize),
    /// Time passes.
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0u8..10).prop_map(Step::Send),
        3 => any::<usize>().prop_map(Step::Reply),
        2 => (0u64..2500).prop_map(Step::Wait),
    ]
}

fn client(c: u8) -> SocketAddr {
    SocketAddr::new([203, 0, 113, c].into(), 20000 + u16::from(c))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    /// The fake runtime reuses a closed socket's port at once (the most
    /// recently freed first), and the target answers requests it got
    /// within the port hold, at the port they came from: a reply reaches
    /// its own client or is a counted drop, whatever the timing. (Replies
    /// later than the hold are beyond the rule: the port may serve another
    /// channel by then, as it would behind a NAT.)
    ///
    /// Two targets: one that answers each request at most once (a DNS
    /// server), against the default limits, where answered channels'
    /// ports are held only `answered_port_hold`; and one that answers any
    /// request any number of times, which only the full `port_hold` on
    /// every port keeps apart (`answered_port_hold = port_hold`), since a
    /// second answer to an answered exchange is unsolicited.
    #[test]
    fn replies_reach_only_their_client(
        steps in prop::collection::vec(step(), 1..150),
        entry in 0usize..2,
        answers_once in any::<bool>(),
    ) {
        let exit = 1 - entry;
        let mut net = Net::new(40);
        let mut x = with_limits(forward_exit(1, Peers::One(net.peer[exit]), TARGET), 4, 2, 1);
        if !answers_once {
            x.limits.answered_port_hold = x.limits.port_hold;
        }
        net.service(entry, with_limits(forward_entry(1, net.peer[entry], LISTEN), 4, 2, 1));
        net.service(exit, x);
        net.up();
        let mut sent = 0u64;
        let mut seq = 0u16;
        // Every request the target received, with the address it came from.
        let mut requests: Vec<(Instant, SocketAddr, Vec<u8>)> = Vec::new();
        let mut replies_arrived = 0u64;
        for s in steps {
            match s {
                Step::Send(c) => {
                    seq += 1;
                    let payload = [c, (seq >> 8) as u8, seq as u8];
                    net.send(entry, client(c), a(LISTEN), &payload);
                    sent += 1;
                }
                Step::Reply(k) => {
                    let hold = ChannelLimits::DEFAULT_PORT_HOLD;
                    requests.retain(|(at, _, _)| net.now.saturating_since(*at) < hold);
                    let k = k % requests.len().max(1);
                    if let Some((_, local, p)) = requests.get(k).cloned() {
                        if answers_once {
                            requests.remove(k);
                        }
                        let mut reply = b"re:".to_vec();
                        reply.extend_from_slice(&p);
                        if net.send_to_local(exit, local, a(TARGET), &reply) {
                            replies_arrived += 1;
                        }
                    }
                }
                Step::Wait(ms) => net.run_for(Duration::from_millis(ms)),
            }
            for d in net.take_delivered_to(a(TARGET)) {
                requests.push((net.now, d.from, d.payload));
            }
            for d in std::mem::take(&mut net.delivered) {
                prop_assert_eq!(&d.payload[..3], b"re:");
                prop_assert_eq!(d.to, client(d.payload[3]), "reply reached the wrong client");
                prop_assert_eq!(d.from, a(LISTEN));
            }
            for i in [X, Y] {
                prop_assert!(net.stats(i, ServiceId::new(1)).channels_open <= 4);
                prop_assert!(net.nodes[i].channels().len() <= 4);
            }
        }
        // Conservation, direction by direction: every datagram reached its
        // customer or was dropped with a counted reason (nothing is lost on
        // this network). Client to target:
        let (se, sx) = (net.stats(entry, ServiceId::new(1)), net.stats(exit, ServiceId::new(1)));
        let unknown = se.drops.get(ServiceDrop::UnknownChannel);
        prop_assert_eq!(se.to_peer.datagrams + se.drops.total() - unknown, sent);
        let no_room = sx.drops.get(ServiceDrop::TableFull) + sx.drops.get(ServiceDrop::PortsHeld);
        prop_assert_eq!(se.to_peer.datagrams, sx.from_peer.datagrams + no_room);
        // Target to client: every reply that reached an exit socket was
        // sent back or counted (late on a held socket, stale on a closed
        // one), and every reply that crossed was delivered or counted.
        prop_assert_eq!(sx.to_peer.datagrams + sx.drops.total() - no_room
            + net.nodes[exit].node_drops().get(ServiceDrop::StaleSocket), replies_arrived);
        prop_assert_eq!(sx.to_peer.datagrams, se.from_peer.datagrams + unknown);
    }
}
