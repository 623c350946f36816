//! Who is in every run, and where: the two nodes and their indices, the
//! customers', targets' and attacker's ports, the nodes' table size and the
//! turmoil step. Every other module of the sim names hosts through these,
//! so they live apart from any one scenario.

use std::time::Duration;

/// Index of node X (customers `alice-N` in front of it) in per-node arrays.
pub const X: usize = 0;
/// Index of node Y (targets `bob-N` behind it).
pub const Y: usize = 1;
/// Host names of the two nodes.
pub const NODE_NAMES: [&str; 2] = ["x", "y"];
/// The nodes' link port (X's moves when it roams).
pub const LINK_PORT: u16 = 51820;
/// Where customers in front of X send from (and, as the targets of a
/// mirror image, listen).
pub const ALICE_PORT: u16 = 4000;
/// A port on the alices' hosts nobody listens on and no allow-list admits
/// (the targets' closed port in router mode's mirror image).
pub const ALICE_CLOSED_PORT: u16 = 4001;
/// Where targets behind Y listen.
pub const BOB_PORT: u16 = 9000;
/// A port on the targets' hosts nobody listens on and no allow-list admits.
pub const BOB_CLOSED_PORT: u16 = 9001;
/// A port on the alices' hosts nobody listens on that X's allow-list
/// admits in the ICMP scenarios of the mirror image: their kernels answer
/// it with ICMP Port Unreachable.
pub const ALICE_REFUSING_PORT: u16 = 4002;
/// A port on the bobs' hosts nobody listens on that Y's allow-list admits
/// in the ICMP scenarios (`Setup::icmp`): their emulated kernels answer a
/// datagram to it with ICMP Port Unreachable.
pub const BOB_REFUSING_PORT: u16 = 9002;
/// Where the emulated ICMP goes (turmoil carries only UDP and TCP): every
/// host of an ICMP scenario that has a kernel to emulate (the targets,
/// the router exit) reads ICMP messages from this UDP port
/// ([`crate::icmp`]).
pub const ICMP_PORT: u16 = 1;
/// Listen port of the first service on X (forward service `i` uses
/// `LISTEN_PORT + i`) and of the direct service on Y.
pub const LISTEN_PORT: u16 = 7000;
/// The attacker's socket.
pub const ATTACKER_PORT: u16 = 6666;
/// Simulated time per turmoil step.
pub const TICK: Duration = Duration::from_millis(1);

/// The four modes of a service, core's own. In the scenarios: direct is
/// alice-0 <-> bob-0 with alice-1 a stranger; forward is alice-N ->
/// x:7000+s -> bob-s with answers back; push is alice-N -> x:7000 -> bob-0,
/// one way; router is alice-N's IP packets to any bob through X's TUN, the
/// last bob not on Y's allow-list (in the mirror image, bob-N's packets to
/// any alice through Y's TUN, the last alice not on X's allow-list).
pub use sdt_core::node::Mode;

/// The capacity of each simulated node's channel table (live and held
/// channels together).
pub const NODE_CHANNELS: usize = 64;

/// Index of the other node.
pub fn other(i: usize) -> usize {
    if i == X {
        Y
    } else {
        X
    }
}
