//! No heap allocation per datagram in the steady state: 10,000 datagrams
//! through two in-process nodes (forward service, round trip through an
//! echo server) leave the allocation count where 100 left it.

mod counting;

use counting::{allocations, Tunnel};
use sdt_core::node::ServiceId;

#[test]
fn steady_state_forwarding_does_not_allocate() {
    let t = Tunnel::start();
    // Warm up: the channel, its exit socket and every lazily grown buffer.
    t.round_trips(100);
    let before = allocations();
    t.round_trips(10_000);
    let after = allocations();
    let sx = t.stop();
    assert_eq!(
        sx.service(ServiceId::new(1)).unwrap().to_peer_datagrams,
        10_100
    );
    // Not one allocation per datagram; a handful from the runtime (thread
    // parking, a timer wheel) is allowed, ten thousand are not.
    let grown = after - before;
    assert!(
        grown < 100,
        "{grown} allocations while forwarding 10,000 datagrams"
    );
}
