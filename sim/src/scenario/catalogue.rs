//! The named scenarios: each one a family of [`super::families`] with its
//! mode and switches, the list `--list` prints, `--all` runs and the tests
//! sweep.

use super::cast::{Mode, X, Y};
use super::families::*;
use super::faults::{ClockSteps, Direction};
use super::setup::Setup;

/// A named family of setups.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Name on the command line.
    pub name: &'static str,
    /// What it exercises.
    pub about: &'static str,
    build: fn(&mut Draw, &mut Setup),
}

impl Scenario {
    /// The setup for `seed`.
    pub fn setup(&self, seed: u64) -> Setup {
        let mut draw = Draw::new(self.name, seed);
        let mut setup = base(self.name, seed, Mode::Forward, &mut draw);
        (self.build)(&mut draw, &mut setup);
        setup
    }
}

macro_rules! scenario {
    ($name:literal, $about:literal, $f:expr) => {
        Scenario {
            name: $name,
            about: $about,
            build: $f,
        }
    };
}

/// Every scenario.
pub const SCENARIOS: &[Scenario] = &[
    scenario!(
        "canonical-direct",
        "direct, short, in order, no faults (snapshot)",
        |d, s| canonical(d, s, Mode::Direct)
    ),
    scenario!(
        "canonical-forward",
        "forward, short, in order, no faults (snapshot)",
        |d, s| canonical(d, s, Mode::Forward)
    ),
    scenario!(
        "canonical-push",
        "push, short, in order, no faults (snapshot)",
        |d, s| canonical(d, s, Mode::Push)
    ),
    scenario!(
        "canonical-router",
        "router, short, in order, no faults (snapshot)",
        |d, s| canonical(d, s, Mode::Router)
    ),
    scenario!(
        "direct",
        "direct mode, jitter only; counters exact",
        |d, s| { clean(d, s, Mode::Direct) }
    ),
    scenario!(
        "forward",
        "forward mode, jitter only; counters exact",
        |d, s| { clean(d, s, Mode::Forward) }
    ),
    scenario!("push", "push mode, jitter only; counters exact", |d, s| {
        clean(d, s, Mode::Push)
    }),
    scenario!(
        "router",
        "router mode, jitter only; counters exact",
        |d, s| { clean(d, s, Mode::Router) }
    ),
    scenario!(
        "forward-reverse",
        "forward, mirror image: entry on Y, clients behind it, X keeps the link up",
        |d, s| reverse(d, s, Mode::Forward)
    ),
    scenario!(
        "push-reverse",
        "push, mirror image: entry on Y, X keeps the link up",
        |d, s| reverse(d, s, Mode::Push)
    ),
    scenario!(
        "forward-reverse-chaos",
        "forward mirror image, bursty loss, jitter, duplication",
        |d, s| {
            chaos(d, s, Mode::Forward);
            s.reverse = true;
            std::mem::swap(&mut s.alices, &mut s.bobs);
        }
    ),
    scenario!(
        "forward-reverse-restart-x",
        "forward mirror image, X (exit, keeps the link up) restarts",
        |d, s| {
            restart(d, s, Mode::Forward, Some(X));
            s.reverse = true;
            std::mem::swap(&mut s.alices, &mut s.bobs);
        }
    ),
    scenario!(
        "forward-reverse-restart-y",
        "forward mirror image, Y (entry, cannot reach X) restarts",
        |d, s| {
            restart(d, s, Mode::Forward, Some(Y));
            s.reverse = true;
            std::mem::swap(&mut s.alices, &mut s.bobs);
        }
    ),
    scenario!(
        "push-reverse-restart-y",
        "push mirror image, Y (entry, cannot reach X) restarts; X never sends data",
        |d, s| {
            restart(d, s, Mode::Push, Some(Y));
            s.reverse = true;
            std::mem::swap(&mut s.alices, &mut s.bobs);
        }
    ),
    scenario!(
        "forward-reverse-attack",
        "forward mirror image, attacker",
        |d, s| {
            attack(d, s, Mode::Forward);
            s.reverse = true;
            std::mem::swap(&mut s.alices, &mut s.bobs);
        }
    ),
    scenario!(
        "router-reverse",
        "router, mirror image: TUN entry on Y (bobs' packets), exit on X to the alices, X keeps the link up; counters exact",
        |d, s| reverse(d, s, Mode::Router)
    ),
    scenario!(
        "router-reverse-restart-x",
        "router mirror image, X (exit, keeps the link up) restarts; recovery bounded",
        |d, s| {
            restart(d, s, Mode::Router, Some(X));
            mirror(s);
        }
    ),
    scenario!(
        "router-reverse-restart-y",
        "router mirror image, Y (TUN entry, cannot reach X) restarts; recovery bounded",
        |d, s| {
            restart(d, s, Mode::Router, Some(Y));
            mirror(s);
        }
    ),
    scenario!(
        "router-reverse-attack",
        "router mirror image, attacker; counters exact",
        |d, s| {
            attack(d, s, Mode::Router);
            mirror(s);
        }
    ),
    scenario!(
        "router-reverse-ipv6",
        "router mirror image over IPv6 (IPv6 packets on Y's TUN side), jitter only; counters exact",
        |d, s| {
            reverse(d, s, Mode::Router);
            s.ipv6 = true;
        }
    ),
    scenario!(
        "direct-ipv6",
        "direct mode over IPv6, jitter only; counters exact",
        |d, s| {
            clean(d, s, Mode::Direct);
            s.ipv6 = true;
        }
    ),
    scenario!(
        "forward-ipv6",
        "forward mode over IPv6, jitter only; counters exact",
        |d, s| {
            clean(d, s, Mode::Forward);
            s.ipv6 = true;
        }
    ),
    scenario!(
        "router-ipv6",
        "router mode over IPv6 (IPv6 packets on the TUN side), jitter only; counters exact",
        |d, s| {
            clean(d, s, Mode::Router);
            s.ipv6 = true;
        }
    ),
    scenario!(
        "router-ipv6-chaos",
        "router over IPv6, bursty loss, jitter, duplication",
        |d, s| {
            chaos(d, s, Mode::Router);
            s.ipv6 = true;
        }
    ),
    scenario!(
        "router-icmp",
        "router with ICMP: clients also ping the targets and send to a refusing port; every echo answered, every refused datagram answered with port unreachable; counters exact",
        |d, s| {
            clean(d, s, Mode::Router);
            icmp(s);
        }
    ),
    scenario!(
        "router-icmp-ipv6",
        "router-icmp over IPv6 (ICMPv6 echo and port unreachable); counters exact",
        |d, s| {
            clean(d, s, Mode::Router);
            s.ipv6 = true;
            icmp(s);
        }
    ),
    scenario!(
        "router-icmp-chaos",
        "router-icmp with bursty loss, jitter, duplication: no echo reply or port unreachable to the wrong client, none unsolicited",
        |d, s| {
            chaos(d, s, Mode::Router);
            icmp(s);
        }
    ),
    scenario!(
        "router-icmp-attack",
        "router-icmp with the attacker; counters exact, every echo and refusal answered",
        |d, s| {
            attack(d, s, Mode::Router);
            icmp(s);
        }
    ),
    scenario!(
        "router-reverse-icmp",
        "router-icmp, mirror image: the bobs ping and refuse through Y's TUN, X's exit pings the alices; counters exact",
        |d, s| {
            reverse(d, s, Mode::Router);
            icmp(s);
        }
    ),
    scenario!(
        "router-icmp-late-replies",
        "router-late-replies with ICMP (table pressure, late answers, exit ports reused at once): no echo reply or port unreachable to the wrong client, none unsolicited",
        |d, s| {
            late_replies(d, s, Mode::Router);
            s.icmp = true;
        }
    ),
    scenario!(
        "direct-chaos",
        "direct, bursty loss, jitter, duplication",
        |d, s| chaos(d, s, Mode::Direct)
    ),
    scenario!(
        "forward-chaos",
        "forward, bursty loss, jitter, duplication",
        |d, s| chaos(d, s, Mode::Forward)
    ),
    scenario!(
        "push-chaos",
        "push, bursty loss, jitter, duplication",
        |d, s| chaos(d, s, Mode::Push)
    ),
    scenario!(
        "router-chaos",
        "router, bursty loss, jitter, duplication",
        |d, s| chaos(d, s, Mode::Router)
    ),
    scenario!(
        "direct-partition",
        "direct, 1-2 partitions that heal; recovery bounded",
        |d, s| partition(d, s, Mode::Direct)
    ),
    scenario!(
        "forward-partition",
        "forward, 1-2 partitions that heal; recovery bounded",
        |d, s| partition(d, s, Mode::Forward)
    ),
    scenario!(
        "forward-restart-x",
        "forward, X (the entry, initiator) restarts; recovery bounded",
        |d, s| restart(d, s, Mode::Forward, Some(X))
    ),
    scenario!(
        "forward-restart-y",
        "forward, Y (the exit, responder) restarts; recovery bounded",
        |d, s| restart(d, s, Mode::Forward, Some(Y))
    ),
    scenario!(
        "direct-restart",
        "direct, either node restarts; recovery bounded",
        |d, s| restart(d, s, Mode::Direct, None)
    ),
    scenario!(
        "router-restart",
        "router, either node restarts; recovery bounded",
        |d, s| restart(d, s, Mode::Router, None)
    ),
    scenario!(
        "forward-roam",
        "forward, X's link port changes 1-2 times; recovery bounded",
        |d, s| roam(d, s, Mode::Forward)
    ),
    scenario!(
        "forward-clock-forward",
        "forward, X and Y restart in turn, each with its wall clock stepped ahead 1 s-6 h",
        |d, s| clock_forward(d, s)
    ),
    scenario!(
        "forward-clock-back-x",
        "forward, X (initiator) restarts with its wall clock stepped back 1 s-6 h; Y initiates",
        |d, s| clock_step(
            d,
            s,
            Mode::Forward,
            Some(X),
            ClockSteps {
                sizes: CLOCK_STEPS,
                directions: [Direction::Backward; 2],
            }
        )
    ),
    scenario!(
        "forward-clock-back-y",
        "forward, Y (responder) restarts with its wall clock stepped back 1 s-6 h",
        |d, s| clock_step(
            d,
            s,
            Mode::Forward,
            Some(Y),
            ClockSteps {
                sizes: CLOCK_STEPS,
                directions: [Direction::Backward; 2],
            }
        )
    ),
    scenario!(
        "push-clock-back-x",
        "KNOWN CORE LIMITATION: push, X (the only initiator) restarts with its clock stepped back 60-120 s; Y refuses it until the clock catches up",
        |d, s| clock_step(
            d,
            s,
            Mode::Push,
            Some(X),
            ClockSteps {
                sizes: PINNED_STEPS,
                directions: [Direction::Backward; 2],
            }
        )
    ),
    scenario!(
        "forward-pressure",
        "forward, more bursty clients than max_channels",
        |d, s| pressure(d, s, Mode::Forward)
    ),
    scenario!(
        "router-pressure",
        "router, more (client, destination) pairs than max_channels",
        |d, s| pressure(d, s, Mode::Router)
    ),
    scenario!(
        "forward-late-replies",
        "forward, table pressure, targets answering 0-8 s late, exit ports reused at once",
        |d, s| late_replies(d, s, Mode::Forward)
    ),
    scenario!(
        "router-late-replies",
        "router, table pressure, destinations answering 0-8 s late, exit ports reused at once",
        |d, s| late_replies(d, s, Mode::Router)
    ),
    scenario!(
        "direct-attack",
        "direct, attacker: garbage, mutations, replays, unknown keys, floods",
        |d, s| attack(d, s, Mode::Direct)
    ),
    scenario!(
        "forward-attack",
        "forward, attacker: garbage, mutations, replays, unknown keys, floods",
        |d, s| attack(d, s, Mode::Forward)
    ),
    scenario!(
        "push-attack",
        "push, attacker: garbage, mutations, replays, unknown keys, floods",
        |d, s| attack(d, s, Mode::Push)
    ),
    scenario!(
        "router-attack",
        "router, attacker: garbage, mutations, replays, unknown keys, floods",
        |d, s| attack(d, s, Mode::Router)
    ),
    scenario!(
        "direct-race-replay",
        "KNOWN CORE BUG: a replayed initiation that lost a handshake race is accepted",
        |d, s| race_replay(d, s)
    ),
    scenario!(
        "forward-restart-replay",
        "KNOWN CORE LIMITATION: a restarted node accepts initiations replayed from before its restart",
        |d, s| restart_replay(d, s)
    ),
    scenario!(
        "forward-restart-new-port",
        "KNOWN CORE BUG: X restarts on a new port; Y's retries to the old one make it ignore X's initiations",
        |d, s| restart_new_port(d, s)
    ),
    scenario!(
        "forward-clock-back-new-port",
        "KNOWN CORE LIMITATION: X restarts on a new port with its clock stepped back 60-120 s; Y initiates to the old port and refuses X",
        |d, s| {
            restart_new_port(d, s);
            s.faults.clock_steps = Some(ClockSteps {
                sizes: PINNED_STEPS,
                directions: [Direction::Backward; 2],
            });
            step_clocks(d, s);
        }
    ),
    scenario!(
        "direct-start-order",
        "direct, Y starts -8 s to +8 s after X (seed % 161, steps of 0.1 s); first datagram within the start bound",
        |d, s| start_order(d, s, Mode::Direct, false)
    ),
    scenario!(
        "forward-start-order",
        "forward, Y starts -8 s to +8 s after X (seed % 161, steps of 0.1 s); first datagram within the start bound",
        |d, s| start_order(d, s, Mode::Forward, false)
    ),
    scenario!(
        "push-start-order",
        "push, Y starts -8 s to +8 s after X (seed % 161, steps of 0.1 s); first datagram within the start bound",
        |d, s| start_order(d, s, Mode::Push, false)
    ),
    scenario!(
        "router-start-order",
        "router, Y starts -8 s to +8 s after X (seed % 161, steps of 0.1 s); first datagram within the start bound",
        |d, s| start_order(d, s, Mode::Router, false)
    ),
    scenario!(
        "forward-reverse-start-order",
        "forward-reverse, Y starts -8 s to +8 s after X (seed % 161, steps of 0.1 s); first datagram within the start bound",
        |d, s| start_order(d, s, Mode::Forward, true)
    ),
    scenario!(
        "push-reverse-start-order",
        "push-reverse, Y starts -8 s to +8 s after X (seed % 161, steps of 0.1 s); first datagram within the start bound",
        |d, s| start_order(d, s, Mode::Push, true)
    ),
    scenario!(
        "router-reverse-start-order",
        "router-reverse, Y starts -8 s to +8 s after X (seed % 161, steps of 0.1 s); first datagram within the start bound",
        |d, s| start_order(d, s, Mode::Router, true)
    ),
    scenario!(
        "direct-restart-phase-x",
        "direct, X restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Direct, false, X)
    ),
    scenario!(
        "direct-restart-phase-y",
        "direct, Y restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Direct, false, Y)
    ),
    scenario!(
        "forward-restart-phase-x",
        "forward, X restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Forward, false, X)
    ),
    scenario!(
        "forward-restart-phase-y",
        "forward, Y restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Forward, false, Y)
    ),
    scenario!(
        "push-restart-phase-x",
        "push, X restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Push, false, X)
    ),
    scenario!(
        "push-restart-phase-y",
        "push, Y restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Push, false, Y)
    ),
    scenario!(
        "router-restart-phase-x",
        "router, X restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Router, false, X)
    ),
    scenario!(
        "router-restart-phase-y",
        "router, Y restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Router, false, Y)
    ),
    scenario!(
        "forward-reverse-restart-phase-x",
        "forward-reverse, X restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Forward, true, X)
    ),
    scenario!(
        "forward-reverse-restart-phase-y",
        "forward-reverse, Y restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Forward, true, Y)
    ),
    scenario!(
        "push-reverse-restart-phase-x",
        "push-reverse, X restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Push, true, X)
    ),
    scenario!(
        "push-reverse-restart-phase-y",
        "push-reverse, Y restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Push, true, Y)
    ),
    scenario!(
        "router-reverse-restart-phase-x",
        "router-reverse, X restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Router, true, X)
    ),
    scenario!(
        "router-reverse-restart-phase-y",
        "router-reverse, Y restarts at one of 20 phases (seed % 20) while 100 datagrams/s flow, attacker on; recovery within the restart bound",
        |d, s| restart_phase(d, s, Mode::Router, true, Y)
    ),
    scenario!(
        "forward-long",
        "forward for 11 minutes, jitter only: rekeys by time and, once per node, by message count; counters exact",
        |d, s| long_run(d, s, Mode::Forward, false)
    ),
    scenario!(
        "push-long",
        "push for 11 minutes, jitter only: rekeys by time and, once per node, by message count; counters exact",
        |d, s| long_run(d, s, Mode::Push, false)
    ),
    scenario!(
        "forward-reverse-long",
        "forward-reverse for 11 minutes, jitter only: rekeys by time and, once per node, by message count; counters exact",
        |d, s| long_run(d, s, Mode::Forward, true)
    ),
    scenario!(
        "forward-reload",
        "forward with 3 services, both nodes reload during traffic (one service removed, one added); the unchanged one loses nothing",
        |d, s| reload(d, s, false, false)
    ),
    scenario!(
        "forward-reverse-reload",
        "forward-reverse with 3 services, both nodes reload during traffic (one service removed, one added); the unchanged one loses nothing",
        |d, s| reload(d, s, true, false)
    ),
    scenario!(
        "forward-reload-rekey",
        "forward-reload, and the peer's preshared key changes on both nodes: they handshake again; losses counted, bounded",
        |d, s| reload(d, s, false, true)
    ),
    scenario!(
        "forward-reverse-reload-rekey",
        "forward-reverse-reload, and the peer's preshared key changes on both nodes: they handshake again; losses counted, bounded",
        |d, s| reload(d, s, true, true)
    ),
    scenario!(
        "mayhem",
        "forward with everything: loss, duplication, pressure, partition, restart with a clock step, roam, attacker",
        |d, s| mayhem(d, s)
    ),
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}
