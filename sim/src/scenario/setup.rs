//! The data model of one run: the cast's sizes, the mode, the traffic, the
//! faults and the switches ([`Setup`]), drawn once from a scenario and a
//! seed and read by everything that plays or checks the run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use sdt_core::node::ChannelLimits;

use super::cast::{
    Mode, ALICE_CLOSED_PORT, ALICE_PORT, ALICE_REFUSING_PORT, BOB_CLOSED_PORT, BOB_PORT,
    BOB_REFUSING_PORT, X, Y,
};
use super::faults::Faults;

/// When customers send.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// First datagram no earlier than this.
    pub start: Duration,
    /// No datagram at or after this; the run goes on for a quiet spell so
    /// everything in flight lands.
    pub stop: Duration,
    /// Milliseconds between a customer's datagrams, drawn in this range.
    pub gap_ms: (u64, u64),
    /// Bursty customers: active for a time drawn from the first range (ms),
    /// then silent for one drawn from the second.
    pub bursts: Option<((u64, u64), (u64, u64))>,
    /// Most padding bytes after the id.
    pub pad_max: usize,
    /// Every customer sends its first datagram at `start` exactly (else at a
    /// random time within the first gap).
    pub in_step: bool,
    /// Targets answer each request after a delay drawn in this range (ms),
    /// like a slow DNS upstream; `(0, 0)` answers at once.
    pub answer_delay_ms: (u64, u64),
}

/// Everything one run needs, drawn from the scenario and the seed.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Scenario name.
    pub scenario: &'static str,
    /// The seed.
    pub seed: u64,
    /// The mode of the service(s).
    pub mode: Mode,
    /// Customers in front of X: `alice-0` ..
    pub alices: usize,
    /// Targets behind Y: `bob-0` ..
    pub bobs: usize,
    /// Forward mode: how many services (alice-N uses service N % services,
    /// whose target is bob-(N % services)).
    pub services: usize,
    /// Channel limits of forward and router services, on both nodes.
    pub limits: ChannelLimits,
    /// Customer traffic.
    pub traffic: Traffic,
    /// Length of the run.
    pub duration: Duration,
    /// Latency between customers and nodes (and the attacker), min and max.
    pub customer_latency: (Duration, Duration),
    /// Faults.
    pub faults: Faults,
    /// Whether the network loses and duplicates nothing, so counters must
    /// add up exactly (see `check`).
    pub exact_counters: bool,
    /// The mirror image (forward, push and router): the entry half is on Y,
    /// where the bobs are the clients (in router mode, behind Y's TUN
    /// device), and the exit on X, whose targets are the alices (in router
    /// mode, on X's allow-list). Y does not know X's endpoint; X keeps the
    /// link up (`keep_up`), as the design asks of a node whose peer holds
    /// the entry.
    pub reverse: bool,
    /// Run the network over IPv6 (turmoil's fe80::/64), the TUN side of
    /// router mode too.
    pub ipv6: bool,
    /// The exit's channel sockets take their local ports from a pool of
    /// this many, the most recently freed first, as a kernel short of
    /// ephemeral ports hands them out: a port released early serves the
    /// next channel at once. `None`: turmoil's own ephemeral ports.
    pub exit_port_pool: Option<u16>,
    /// When each node first boots ([`X`], [`Y`]); `None`: both at once, at
    /// the start of the run. Before its start a node has no socket, so
    /// whatever is sent to it is lost. With a start order, the later start
    /// is a heal held to [`Setup::start_bound`].
    pub start: Option<[Duration; 2]>,
    /// Router mode carries ICMP too: the clients also ping the targets and
    /// send to a port the allow-list admits but nobody listens on
    /// ([`Roles::target_refusing_port`]); the exit's echo sockets and the
    /// targets' kernels are emulated ([`crate::icmp`]). The exit's
    /// allow-list then admits echo to the first target only
    /// ([`crate::world::router_allows_echo`]).
    pub icmp: bool,
}

impl Setup {
    /// The unspecified address of the run's IP version, to bind to.
    pub fn unspecified(&self) -> IpAddr {
        if self.ipv6 {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        }
    }

    /// The command that runs this setup again.
    pub fn reproduce(&self) -> String {
        format!(
            "cargo run -p sim -- --scenario {} --seed {}",
            self.scenario, self.seed
        )
    }

    /// Whether answers come back in this mode.
    pub fn answers(&self) -> bool {
        self.mode != Mode::Push
    }

    /// When a client of forward service `s` sends: the run's traffic, but
    /// for the services a reload removes (they stop before it) or adds
    /// (they start after it); see [`Reload::quiet`](super::Reload::quiet).
    pub fn client_traffic(&self, s: usize) -> Traffic {
        let mut t = self.traffic.clone();
        if let Some(r) = self.faults.reload.filter(|r| !r.unchanged(s)) {
            let (from, until) = r.quiet();
            if s == r.removed {
                t.stop = t.stop.min(from);
            } else {
                t.start = t.start.max(until);
            }
        }
        t
    }
}

/// Who starts and who answers in a forward, push or router service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Host name prefix of the clients (`alice-` or `bob-`).
    pub clients: &'static str,
    /// The clients' port.
    pub client_port: u16,
    /// Host name prefix of the targets.
    pub targets: &'static str,
    /// The targets' port.
    pub target_port: u16,
    /// A port on the targets' hosts nobody listens on and no allow-list
    /// admits (router clients send to it now and then).
    pub target_closed_port: u16,
    /// A port on the targets' hosts nobody listens on that the allow-list
    /// admits where [`Setup::icmp`]: their kernels refuse it.
    pub target_refusing_port: u16,
    /// The node with the entry half ([`X`] or [`Y`]): in router mode, the
    /// node with the TUN device.
    pub entry: usize,
    /// The node with the exit half.
    pub exit: usize,
}

impl Setup {
    /// The roles of forward, push and router services (direct mode has
    /// the roles of the image it is not: alice-0 and bob-0 both send).
    pub fn roles(&self) -> Roles {
        if self.reverse {
            Roles {
                clients: "bob-",
                client_port: BOB_PORT,
                targets: "alice-",
                target_port: ALICE_PORT,
                target_closed_port: ALICE_CLOSED_PORT,
                target_refusing_port: ALICE_REFUSING_PORT,
                entry: Y,
                exit: X,
            }
        } else {
            Roles {
                clients: "alice-",
                client_port: ALICE_PORT,
                targets: "bob-",
                target_port: BOB_PORT,
                target_closed_port: BOB_CLOSED_PORT,
                target_refusing_port: BOB_REFUSING_PORT,
                entry: X,
                exit: Y,
            }
        }
    }

    /// How many clients there are: the alices, or the bobs in a mirror
    /// image.
    pub fn clients(&self) -> usize {
        if self.reverse {
            self.bobs
        } else {
            self.alices
        }
    }

    /// How many targets there are: the bobs, or the alices in a mirror
    /// image.
    pub fn targets(&self) -> usize {
        if self.reverse {
            self.alices
        } else {
            self.bobs
        }
    }
}
