//! Customers: `alice-N` in front of X send requests, `bob-N` behind Y
//! receive them and answer. Every payload carries its id (see
//! [`crate::payload`]), recorded in the ledger when sent and checked when
//! delivered.
//!
//! In router mode the clients have no sockets: they forge IP packets from
//! their addresses on the entry's TUN side (X's `10.1.0.N+1:4000` for the
//! alices; in the mirror image Y's `10.2.0.N+1:9000` for the bobs) to a
//! target and put them in the entry's TUN queue; what the entry writes to
//! its TUN device is parsed back and delivered to the client it is
//! addressed to, by the entry's driver. The targets are ordinary customers
//! with a socket, as in forward mode.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use sdt_core::ip::{forge_udp, udp_header_len};
use turmoil::net::UdpSocket;

use crate::icmp;
use crate::payload::{MsgId, Payload};
use crate::scenario::{Mode, Traffic, ALICE_PORT, BOB_PORT, LISTEN_PORT, X};
use crate::scenario::{Roles, ICMP_PORT};
use crate::trace::mix;
use crate::world::{sim_now, SentKind, SharedRef};

/// Client `index`'s address on the TUN side of `entry` in router mode:
/// X's are `10.1.0.N+1:4000` (`fd00::1:N+1` over IPv6), Y's, in the mirror
/// image, `10.2.0.N+1:9000` (`fd00::2:N+1`).
pub fn tun_client_addr(index: usize, ipv6: bool, entry: usize) -> SocketAddr {
    let (net, port) = if entry == X {
        (1, ALICE_PORT)
    } else {
        (2, BOB_PORT)
    };
    let ip = if ipv6 {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, net, index as u16 + 1))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, net as u8, 0, index as u8 + 1))
    };
    SocketAddr::new(ip, port)
}

/// A time far beyond any run.
const NEVER: Duration = Duration::from_secs(100_000);

/// When one customer sends.
struct Schedule {
    traffic: Traffic,
    next: Duration,
    /// Bursty traffic: whether active now, and until when.
    on: bool,
    switch_at: Duration,
}

fn between(rng: &mut ChaCha8Rng, (lo, hi): (u64, u64)) -> Duration {
    Duration::from_millis(lo + rng.next_u64() % (hi - lo + 1))
}

impl Schedule {
    fn new(traffic: &Traffic, rng: &mut ChaCha8Rng) -> Schedule {
        let first = if traffic.in_step {
            traffic.start
        } else {
            traffic.start + between(rng, (0, traffic.gap_ms.1))
        };
        let (on, switch_at) = match traffic.bursts {
            None => (true, NEVER),
            Some((on, _)) => {
                let starts_on = rng.next_u64().is_multiple_of(2);
                (starts_on, first + between(rng, on))
            }
        };
        Schedule {
            traffic: traffic.clone(),
            next: first,
            on,
            switch_at,
        }
    }

    /// The time of the next send.
    fn next(&self) -> Duration {
        if self.next >= self.traffic.stop {
            NEVER
        } else {
            self.next
        }
    }

    /// Whether to send now; moves the schedule on either way.
    fn due(&mut self, now: Duration, rng: &mut ChaCha8Rng) -> bool {
        if now < self.next || self.next >= self.traffic.stop {
            return false;
        }
        while let Some((on, off)) = self.traffic.bursts.filter(|_| now >= self.switch_at) {
            self.on = !self.on;
            self.switch_at += between(rng, if self.on { on } else { off });
        }
        self.next = now + between(rng, self.traffic.gap_ms);
        if !self.on {
            self.next = self.next.max(self.switch_at);
        }
        self.on
    }
}

/// Sleeps until simulated time `at` (or wakes when `sock` is readable).
async fn wait(sock: Option<&UdpSocket>, at: Duration) {
    let now = sim_now();
    let sleep = tokio::time::sleep(at.saturating_sub(now).min(NEVER));
    match sock {
        Some(sock) => {
            tokio::select! {
                biased;
                _ = sock.readable() => {}
                _ = sleep => {}
            }
        }
        None => sleep.await,
    }
}

/// [`wait`] for a host with an emulated kernel: its sockets wake it too.
async fn wait_kernel(sock: &UdpSocket, kernel: &Kernel, at: Duration) {
    let now = sim_now();
    let sleep = tokio::time::sleep(at.saturating_sub(now).min(NEVER));
    tokio::select! {
        biased;
        _ = sock.readable() => {}
        _ = kernel.icmp.readable() => {}
        _ = kernel.refusing.readable() => {}
        _ = sleep => {}
    }
}

struct Customer {
    name: String,
    shared: SharedRef,
    rng: ChaCha8Rng,
    seq: u32,
    pad_max: usize,
    /// ICMP sequence numbers used so far (router clients' pings).
    pings: u16,
}

impl Customer {
    fn new(shared: &SharedRef, name: String) -> Customer {
        let (seed, pad_max) = {
            let s = shared.borrow();
            (s.setup.seed, s.setup.traffic.pad_max)
        };
        Customer {
            rng: ChaCha8Rng::seed_from_u64(mix(seed, &name, 0)),
            name,
            shared: shared.clone(),
            seq: 0,
            pad_max,
            pings: 0,
        }
    }

    /// The next payload from this customer: a request, or an answer to
    /// `answers`. Recorded as sent to `to`.
    fn payload(&mut self, answers: Option<MsgId>, to: SocketAddr) -> Vec<u8> {
        self.payload_with(answers, to, SentKind::Datagram)
    }

    /// A request sent as `kind` (an echo request's data), to `to`.
    fn payload_as(&mut self, to: SocketAddr, kind: SentKind) -> Vec<u8> {
        self.payload_with(None, to, kind)
    }

    fn payload_with(&mut self, answers: Option<MsgId>, to: SocketAddr, kind: SentKind) -> Vec<u8> {
        self.seq += 1;
        let p = Payload {
            id: MsgId {
                sender: self.name.clone(),
                seq: self.seq,
            },
            answers,
        };
        let pad = (self.rng.next_u64() % (self.pad_max as u64 + 1)) as usize;
        let pad = if kind == SentKind::Oversize {
            OVERSIZE
        } else {
            pad
        };
        let bytes = p.encode(pad);
        let mut shared = self.shared.borrow_mut();
        let what = match kind {
            SentKind::Echo { ident, seq } => format!(
                "-> {} echo request id {ident} seq {seq} {p}",
                shared.name_addr(to)
            ),
            _ => format!("-> {} {p}", shared.name_addr(to)),
        };
        shared.log(&self.name, &what, &bytes);
        shared.sent_as(&p, to, kind);
        bytes
    }

    fn send(&mut self, sock: &UdpSocket, answers: Option<MsgId>, to: SocketAddr) {
        let bytes = self.payload(answers, to);
        if let Err(e) = sock.try_send_to(&bytes, to) {
            let what = format!("send failed: {e}");
            self.shared.borrow_mut().log(&self.name, &what, &[]);
        }
    }

    /// Reads everything waiting on `sock` and answers every request, at
    /// once or, with a [`Traffic::answer_delay_ms`], into `later` with the
    /// time it is due.
    fn receive(
        &mut self,
        sock: &UdpSocket,
        buf: &mut [u8],
        delay_ms: (u64, u64),
        later: &mut Vec<(Duration, MsgId, SocketAddr)>,
    ) {
        while let Ok((n, from)) = sock.try_recv_from(buf) {
            let bytes = &buf[..n];
            {
                let mut shared = self.shared.borrow_mut();
                let what = format!(
                    "<- {} {}",
                    shared.name_addr(from),
                    crate::payload::describe(bytes)
                );
                shared.log(&self.name, &what, &[]);
                shared.deliver(&self.name, from, bytes);
            }
            if let Some(p) = Payload::parse(bytes).filter(|p| p.answers.is_none()) {
                if delay_ms == (0, 0) {
                    self.send(sock, Some(p.id), from);
                } else {
                    let due = sim_now() + between(&mut self.rng, delay_ms);
                    later.push((due, p.id, from));
                }
            }
        }
    }
}

/// `alice-N` in direct, forward and push modes: a client of X (sends
/// requests to X's listen socket), or in the mirror image (router's too) a
/// target behind X; answers every request it receives.
pub async fn alice(shared: SharedRef, index: usize) -> turmoil::Result {
    let (setup, x) = {
        let s = shared.borrow();
        (s.setup.clone(), s.ip("x"))
    };
    let service = index % setup.services;
    let port = match setup.mode {
        Mode::Forward => LISTEN_PORT + service as u16,
        _ => LISTEN_PORT,
    };
    let sends_to = (!setup.reverse).then_some(SocketAddr::new(x, port));
    let traffic = setup.client_traffic(service);
    customer(
        shared,
        format!("alice-{index}"),
        ALICE_PORT,
        sends_to,
        traffic,
    )
    .await
}

/// `bob-N`: a target behind Y, or in the mirror image a client of Y (of
/// forward or push; router's clients are [`router_client`]s); in direct
/// mode bob-0 is the fixed customer and sends too. Answers every
/// request it receives, to where it came from (in push mode too: push must
/// not carry the answer back).
pub async fn bob(shared: SharedRef, index: usize) -> turmoil::Result {
    let (setup, y) = {
        let s = shared.borrow();
        (s.setup.clone(), s.ip("y"))
    };
    let service = index % setup.services;
    let port = match setup.mode {
        Mode::Forward => LISTEN_PORT + service as u16,
        _ => LISTEN_PORT,
    };
    let sends = setup.reverse || (setup.mode == Mode::Direct && index == 0);
    let sends_to = sends.then_some(SocketAddr::new(y, port));
    let traffic = setup.client_traffic(service);
    customer(shared, format!("bob-{index}"), BOB_PORT, sends_to, traffic).await
}

/// A customer with one socket on `port`: sends requests to `sends_to` on
/// the schedule of `traffic`, answers every request it receives.
async fn customer(
    shared: SharedRef,
    name: String,
    port: u16,
    sends_to: Option<SocketAddr>,
    traffic: Traffic,
) -> turmoil::Result {
    let mut me = Customer::new(&shared, name);
    let any = shared.borrow().setup.unspecified();
    let sock = UdpSocket::bind((any, port)).await?;
    let kernel = {
        let setup = &shared.borrow().setup;
        setup.icmp && setup.mode == Mode::Router && me.name.starts_with(setup.roles().targets)
    };
    let mut kernel = match kernel {
        true => Some(Kernel::new(&shared, &me.name).await?),
        false => None,
    };
    let mut schedule = Schedule::new(&traffic, &mut me.rng);
    let mut buf = vec![0u8; 4096];
    // Answers held back by `answer_delay_ms`: (due, request, to).
    let mut later: Vec<(Duration, MsgId, SocketAddr)> = Vec::new();
    loop {
        let next = if sends_to.is_some() {
            schedule.next()
        } else {
            NEVER
        };
        let next = later.iter().map(|l| l.0).fold(next, Duration::min);
        match &mut kernel {
            None => wait(Some(&sock), next).await,
            Some(k) => {
                wait_kernel(&sock, k, next).await;
                k.receive(&mut buf);
            }
        }
        me.receive(&sock, &mut buf, traffic.answer_delay_ms, &mut later);
        let now = sim_now();
        while let Some(k) = later.iter().position(|l| l.0 <= now) {
            let (_, id, to) = later.remove(k);
            me.send(&sock, Some(id), to);
        }
        if let Some(to) = sends_to {
            if schedule.due(sim_now(), &mut me.rng) {
                me.send(&sock, None, to);
            }
        }
    }
}

/// A client in router mode (`alice-N`, or `bob-N` in the mirror image):
/// forges IP packets to the targets (now and then to one the allow-list
/// refuses, or to a port it does not admit) into the entry's TUN queue.
pub async fn router_client(shared: SharedRef, index: usize) -> turmoil::Result {
    let (setup, roles) = {
        let s = shared.borrow();
        (s.setup.clone(), s.setup.roles())
    };
    let mut me = Customer::new(&shared, format!("{}{index}", roles.clients));
    let targets: Vec<IpAddr> = {
        let s = shared.borrow();
        (0..setup.targets())
            .map(|t| s.ip(&format!("{}{t}", roles.targets)))
            .collect()
    };
    let src = tun_client_addr(index, setup.ipv6, roles.entry);
    let mut schedule = Schedule::new(&setup.traffic, &mut me.rng);
    loop {
        wait(None, schedule.next()).await;
        if !schedule.due(sim_now(), &mut me.rng) {
            continue;
        }
        let roll = me.rng.next_u64() % 20;
        let allowed = targets.len() - 1;
        if setup.icmp {
            if let Some(packet) = icmp_scenario_packet(&mut me, roll, &targets, src, &roles) {
                shared.borrow_mut().tun_in.push_back(packet);
                continue;
            }
        }
        let dst = match roll {
            // Not on the allow-list: the last target.
            0 => SocketAddr::new(targets[allowed], roles.target_port),
            // An allowed host, but a port the list does not admit.
            1 => SocketAddr::new(targets[0], roles.target_closed_port),
            _ => SocketAddr::new(targets[(roll as usize) % allowed], roles.target_port),
        };
        let payload = me.payload(None, dst);
        let head = udp_header_len(&dst);
        let mut packet = vec![0u8; head + payload.len()];
        packet[head..].copy_from_slice(&payload);
        let range = forge_udp(&mut packet, head..head + payload.len(), src, dst)
            .map_err(|e| e.to_string())?;
        shared.borrow_mut().tun_in.push_back(packet[range].to_vec());
    }
}

/// The identifiers router clients ping with: two ping processes, the same
/// two on every client, so echo flows of different clients share an
/// identifier (core keys them by the pinger's address and identifier).
pub const PING_IDENTS: [u16; 2] = [0x5d5d, 0x5d5e];

/// The padding of an oversize datagram: too big for one link frame
/// (about 1,400 bytes), small enough for the driver's 2,048-byte reads.
const OVERSIZE: usize = 1_700;

/// In an ICMP scenario, what a router client sends on `roll` besides the
/// UDP of the other scenarios: echo requests (4 in 20: to the first
/// target, which the allow-list admits echo to, three times as often as to
/// one it does not), datagrams to an admitted target's refusing port (2
/// in 20), and a datagram too big for a link frame to the first target
/// (1 in 20), which the entry answers with Fragmentation Needed / Packet
/// Too Big. `None`: the UDP of [`router_client`].
fn icmp_scenario_packet(
    me: &mut Customer,
    roll: u64,
    targets: &[IpAddr],
    src: SocketAddr,
    roles: &Roles,
) -> Option<Vec<u8>> {
    let allowed = targets.len() - 1;
    match roll {
        2 | 3 => {
            let dst = SocketAddr::new(targets[roll as usize % allowed], roles.target_refusing_port);
            let payload = me.payload(None, dst);
            let head = udp_header_len(&dst);
            let mut packet = vec![0u8; head + payload.len()];
            packet[head..].copy_from_slice(&payload);
            let range = forge_udp(&mut packet, head..head + payload.len(), src, dst).ok()?;
            Some(packet[range].to_vec())
        }
        8 => {
            let dst = SocketAddr::new(targets[0], roles.target_port);
            let payload = me.payload_with(None, dst, SentKind::Oversize);
            let head = udp_header_len(&dst);
            let mut packet = vec![0u8; head + payload.len()];
            packet[head..].copy_from_slice(&payload);
            let range = forge_udp(&mut packet, head..head + payload.len(), src, dst).ok()?;
            Some(packet[range].to_vec())
        }
        4..=7 => {
            let target = if roll == 7 {
                targets[1 + (me.rng.next_u64() as usize) % (targets.len() - 1)]
            } else {
                targets[0]
            };
            let ident = PING_IDENTS[(me.rng.next_u64() % 2) as usize];
            me.pings = me.pings.wrapping_add(1);
            let seq = me.pings;
            let to = SocketAddr::new(target, 0);
            let data = me.payload_as(to, SentKind::Echo { ident, seq });
            Some(icmp::echo_request_packet(
                src.ip(),
                target,
                ident,
                seq,
                &data,
            ))
        }
        _ => None,
    }
}

/// A target host's emulated kernel in an ICMP scenario: answers echo
/// requests on [`ICMP_PORT`] and refuses datagrams to its refusing port
/// (nobody listens there) with ICMP Port Unreachable to the sender's
/// `ICMP_PORT`, as a Linux host does.
struct Kernel {
    name: String,
    me: IpAddr,
    icmp: UdpSocket,
    refusing: UdpSocket,
    shared: SharedRef,
}

impl Kernel {
    async fn new(shared: &SharedRef, name: &str) -> std::io::Result<Kernel> {
        let (any, me, port) = {
            let s = shared.borrow();
            (
                s.setup.unspecified(),
                s.ip(name),
                s.setup.roles().target_refusing_port,
            )
        };
        Ok(Kernel {
            name: name.to_string(),
            me,
            icmp: UdpSocket::bind((any, ICMP_PORT)).await?,
            refusing: UdpSocket::bind((any, port)).await?,
            shared: shared.clone(),
        })
    }

    fn log(&self, what: &str) {
        self.shared
            .borrow_mut()
            .log(&self.name, &format!("kernel: {what}"), &[]);
    }

    /// Handles everything waiting on the kernel's sockets.
    fn receive(&mut self, buf: &mut [u8]) {
        while let Ok((n, from)) = self.icmp.try_recv_from(buf) {
            let message = &buf[..n];
            let req = icmp::parse_echo_message(message);
            let want = if self.me.is_ipv6() {
                icmp::V6_ECHO_REQUEST
            } else {
                icmp::V4_ECHO_REQUEST
            };
            let Some(req) = req.filter(|r| r.kind == want) else {
                let what = format!(
                    "{}: received {n} bytes on the ICMP port that are no echo request",
                    self.name
                );
                self.shared.borrow_mut().violate(what);
                continue;
            };
            if !icmp::checksum_ok(message, from.ip(), self.me) {
                let what = format!(
                    "{}: received an echo request with a bad checksum",
                    self.name
                );
                self.shared.borrow_mut().violate(what);
                continue;
            }
            let what = format!(
                "echo request id {} seq {} {} from {}",
                req.ident,
                req.seq,
                crate::payload::describe(&req.data),
                self.shared.borrow().name_addr(from)
            );
            self.log(&what);
            let id = self
                .shared
                .borrow_mut()
                .deliver_echo_request(&self.name, from, req.seq, &req.data);
            if let Some(id) = id {
                let reply = icmp::echo_reply_message(&req, self.me, from.ip());
                self.shared
                    .borrow_mut()
                    .sent_icmp_answer(SentKind::EchoReply, &id, from);
                self.log(&format!(
                    "echo reply to {}",
                    self.shared.borrow().name_addr(from)
                ));
                let _ = self.icmp.try_send_to(&reply, from);
            }
        }
        let port = self
            .refusing
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default();
        while let Ok((n, from)) = self.refusing.try_recv_from(buf) {
            let bytes = &buf[..n];
            let p = Payload::parse(bytes);
            {
                let mut shared = self.shared.borrow_mut();
                let what = format!(
                    "kernel: {} to closed port {port} from {}: port unreachable",
                    crate::payload::describe(bytes),
                    shared.name_addr(from)
                );
                shared.log(&self.name, &what, &[]);
                shared.deliver(&self.name, from, bytes);
            }
            // Answered whatever it is, as a kernel does; the ledger knows
            // the refusal by the request it answers.
            let error = icmp::port_unreachable_packet(from, SocketAddr::new(self.me, port));
            if let Some(p) = p.filter(|p| p.answers.is_none()) {
                let refused_to = self.shared.borrow().ledger.sent.get(&p.id).map(|r| r.to);
                if refused_to != Some(SocketAddr::new(self.me, port)) {
                    let what = format!(
                        "{}: {p} reached its refusing port, sent to {refused_to:?}",
                        self.name
                    );
                    self.shared.borrow_mut().violate(what);
                }
                self.shared
                    .borrow_mut()
                    .sent_icmp_answer(SentKind::PortUnreachable, &p.id, from);
            }
            let _ = self
                .icmp
                .try_send_to(&error, SocketAddr::new(from.ip(), ICMP_PORT));
        }
    }
}
