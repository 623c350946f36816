//! State the hosts share with each other and with the harness: the trace,
//! the ledger of every customer datagram sent and delivered, the frames the
//! attacker has seen, counters, and the violations found so far.
//!
//! Everything runs on one thread; hosts hold an `Rc<RefCell<Shared>>` and
//! borrow it only between awaits.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use sdt_core::wire::MessageType;

use crate::payload::{describe, MsgId, Payload};
use crate::scenario::{Mode, Replays, Setup, LISTEN_PORT, NODE_NAMES, X, Y};
use crate::stance::Stance;
use crate::trace::Trace;

/// Shared state, behind one `Rc<RefCell<..>>`.
pub type SharedRef = Rc<RefCell<Shared>>;

/// Simulated time, as the harness and the hosts see it.
pub fn sim_now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_else(crate::harness_now)
}

/// What a ledger entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentKind {
    /// A UDP datagram (a request, or a target's answer).
    Datagram,
    /// A router client's ICMP echo request, with its identifier and
    /// sequence number (its data is the request's payload).
    Echo {
        /// The identifier the client chose.
        ident: u16,
        /// The sequence number.
        seq: u16,
    },
    /// A target's kernel's echo reply to the request it answers.
    EchoReply,
    /// A target's kernel's port unreachable for the request it answers.
    PortUnreachable,
    /// A router client's UDP datagram too big for one link frame (the
    /// entry answers it with Fragmentation Needed / Packet Too Big).
    Oversize,
    /// The entry's Fragmentation Needed / Packet Too Big, the answer to an
    /// [`SentKind::Oversize`] request (only ever delivered: the entry
    /// forges it, no customer sends it).
    TooBig,
}

/// One customer datagram as sent.
#[derive(Debug, Clone)]
pub struct SentRec {
    /// When.
    pub at: Duration,
    /// Where the customer sent it (for router mode: the IP destination).
    pub to: SocketAddr,
    /// The request it answers, for answers.
    pub answers: Option<MsgId>,
    /// What it is.
    pub kind: SentKind,
}

/// The ledger's id of the ICMP answer `kind` ([`SentKind::EchoReply`] or
/// [`SentKind::PortUnreachable`]) to `request`: the echo reply carries the
/// request's own data, and the port unreachable quotes only its headers, so
/// the answer is known by its request.
pub fn icmp_answer_id(kind: SentKind, request: &MsgId) -> MsgId {
    let what = match kind {
        SentKind::EchoReply => "echo",
        SentKind::TooBig => "toobig",
        _ => "unreach",
    };
    MsgId {
        sender: format!("{}~{what}", request.sender),
        seq: request.seq,
    }
}

/// One delivery to a customer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// When it arrived.
    pub at: Duration,
    /// Who got it.
    pub receiver: String,
    /// When it was sent.
    pub sent_at: Duration,
    /// For an answer, when the request was sent.
    pub request_sent_at: Option<Duration>,
    /// Whether it is an answer.
    pub answer: bool,
}

/// Every customer datagram sent, and every one delivered.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Sent, by id.
    pub sent: BTreeMap<MsgId, SentRec>,
    /// Ids delivered (each at most once).
    pub delivered: BTreeMap<MsgId, Duration>,
    /// Deliveries in order.
    pub deliveries: Vec<Delivery>,
    /// Datagrams each customer host received, parsable or not.
    pub received: BTreeMap<String, u64>,
}

/// What the drivers saw, per node, summed over the node's restarts.
#[derive(Debug, Default, Clone, Copy)]
pub struct DriverCounts {
    /// Datagrams handed in from customer sockets and the TUN device.
    pub customer_in: u64,
    /// Datagrams handed in from the link socket.
    pub link_in: u64,
    /// Link datagrams the node returned `Err(Dropped::Link)` for.
    pub link_dropped: u64,
    /// Of those, data frames with a payload from the peer's host.
    pub peer_data_dropped: u64,
    /// Results `Err(Dropped::Service)`, from any input.
    pub service_dropped: u64,
    /// Payloads sent on customer sockets and packets written to TUN.
    pub outputs: u64,
    /// Sends that failed in the runtime (no socket, no route).
    pub send_failed: u64,
    /// Sockets the runtime could not open.
    pub open_failed: u64,
}

/// A frame that arrived at a node from its peer, as the attacker learns
/// it.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The node it arrived at.
    pub node: usize,
    /// The frame.
    pub bytes: Vec<u8>,
    /// An initiation the node ignored because it crossed its own
    /// (`DropReason::HandshakeRace`).
    pub race_loser: bool,
    /// The receiving node's boot count then.
    pub boot: u64,
}

impl Captured {
    /// Whether the attacker may replay this frame under `replays`, with the
    /// nodes' boot counts now `boots` and `down` those that are down.
    ///
    /// An initiation to a node that is down counts as captured before its
    /// restart: sent now, it may arrive just after the node is back, with
    /// its timestamps forgotten (finding 2; found by the 10,000-seed sweep,
    /// `router-restart-phase-y` seed 115, where a `Safe` replay chosen 4 ms
    /// before Y's boot was accepted 1 ms after it).
    pub fn replayable(&self, replays: Replays, boots: [u64; 2], down: [bool; 2]) -> bool {
        let init = MessageType::of(&self.bytes) == Ok(MessageType::Initiation);
        let stale = init && (self.boot != boots[self.node] || down[self.node]);
        match replays {
            Replays::Safe => !self.race_loser && !stale,
            Replays::RaceLosers => self.race_loser,
            Replays::FromBeforeRestart => stale,
        }
    }
}

/// Frames the attacker remembers.
pub const CAPTURE_CAP: usize = 512;
/// Handshake messages the attacker remembers.
pub const HANDSHAKE_CAP: usize = 64;

/// The shared state of a run.
#[derive(Debug)]
pub struct Shared {
    /// The run's setup.
    pub setup: Setup,
    /// The trace.
    pub trace: Trace,
    /// The ledger.
    pub ledger: Ledger,
    /// Violations of invariants, with the time found.
    pub violations: Vec<String>,
    /// Host names by address.
    pub names: BTreeMap<IpAddr, String>,
    /// Addresses by host name.
    pub addrs: BTreeMap<String, IpAddr>,
    /// Current link port of each node.
    pub link_port: [u16; 2],
    /// How often each node has booted.
    pub boots: [u64; 2],
    /// Whether each node is down: crashed and not booted again yet.
    pub down: [bool; 2],
    /// How far each node's wall clock is ahead of the simulation's (behind
    /// if negative), in nanoseconds: the sum of its clock steps so far. A
    /// node reads it when it boots.
    pub wall_offset: [i64; 2],
    /// Frames that arrived at the nodes from each other, newest last.
    pub captured: VecDeque<Captured>,
    /// Handshake messages that arrived at the nodes from each other (the
    /// most interesting to replay), newest last.
    pub captured_handshakes: VecDeque<Captured>,
    /// Router mode: IP packets from the clients to the entry's TUN device
    /// (X's, or Y's in the mirror image).
    pub tun_in: VecDeque<Vec<u8>>,
    /// Router mode: the clients' addresses on the entry's TUN side.
    pub tun_clients: BTreeMap<SocketAddr, String>,
    /// Per node driver counts.
    pub counts: [DriverCounts; 2],
    /// Datagrams the attacker sent.
    pub attacker_sent: u64,
    /// Datagrams that reached the attacker and the stance forbids (must
    /// stay 0).
    pub attacker_received: u64,
    /// Cookie replies that reached the attacker, each allowed by the
    /// stance.
    pub attacker_cookie_replies: u64,
    /// What the nodes may send the attacker, and what it takes to judge.
    pub stance: Stance,
    /// Of the attacker's datagrams, those sent to customer sockets.
    pub attacker_customer_sent: u64,
    /// Deliberate breakage, for the harness's own tests.
    pub sabotage: Option<crate::Sabotage>,
}

impl Shared {
    /// Fresh state for `setup`.
    pub fn new(setup: Setup) -> Shared {
        let keys = [X, Y].map(|i| crate::node_key(setup.seed, i).public_key());
        Shared {
            setup,
            trace: Trace::default(),
            ledger: Ledger::default(),
            violations: Vec::new(),
            names: BTreeMap::new(),
            addrs: BTreeMap::new(),
            link_port: [crate::scenario::LINK_PORT; 2],
            boots: [0; 2],
            down: [false; 2],
            wall_offset: [0; 2],
            captured: VecDeque::new(),
            captured_handshakes: VecDeque::new(),
            tun_in: VecDeque::new(),
            tun_clients: BTreeMap::new(),
            counts: Default::default(),
            attacker_sent: 0,
            attacker_received: 0,
            attacker_cookie_replies: 0,
            stance: Stance::new(keys),
            attacker_customer_sent: 0,
            sabotage: None,
        }
    }

    /// The address of host `name`.
    pub fn ip(&self, name: &str) -> IpAddr {
        self.addrs[name]
    }

    /// The link address of node `i` now.
    pub fn link_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.ip(NODE_NAMES[i]), self.link_port[i])
    }

    /// `addr` with the host's name for its IP.
    pub fn name_addr(&self, addr: SocketAddr) -> String {
        match self.names.get(&addr.ip()) {
            Some(n) => format!("{n}:{}", addr.port()),
            None => match self.tun_clients.get(&addr) {
                Some(n) => format!("{n}@{addr}"),
                None => addr.to_string(),
            },
        }
    }

    /// Records an event in the trace.
    pub fn log(&mut self, host: &str, what: &str, bytes: &[u8]) {
        let now = sim_now();
        self.trace.record(now, host, what, bytes);
    }

    /// Records a violation (and traces it).
    pub fn violate(&mut self, what: String) {
        let now = sim_now();
        self.trace
            .record(now, "!", &format!("VIOLATION {what}"), &[]);
        self.violations
            .push(format!("at {:.3}s: {what}", now.as_secs_f64()));
    }

    /// A customer sends a datagram: it goes into the ledger.
    pub fn sent(&mut self, payload: &Payload, to: SocketAddr) {
        self.sent_as(payload, to, SentKind::Datagram);
    }

    /// A customer sends something of `kind`: it goes into the ledger.
    pub fn sent_as(&mut self, payload: &Payload, to: SocketAddr, kind: SentKind) {
        let rec = SentRec {
            at: sim_now(),
            to,
            answers: payload.answers.clone(),
            kind,
        };
        if self.ledger.sent.insert(payload.id.clone(), rec).is_some() {
            self.violate(format!("harness: id {} sent twice", payload.id));
        }
    }

    /// A target's kernel sends ICMP answer `kind` to `request`, to `to`.
    pub fn sent_icmp_answer(&mut self, kind: SentKind, request: &MsgId, to: SocketAddr) {
        let id = icmp_answer_id(kind, request);
        let rec = SentRec {
            at: sim_now(),
            to,
            answers: Some(request.clone()),
            kind,
        };
        if self.ledger.sent.insert(id.clone(), rec).is_some() {
            self.violate(format!("{id}: a target's kernel answered a request twice"));
        }
    }

    /// Records a delivery of ledger id `id` (an ICMP answer to `request`);
    /// a repeat is a violation.
    fn delivered_answer(&mut self, receiver: &str, id: &MsgId, sent: &SentRec, request: &SentRec) {
        let now = sim_now();
        if let Some(first) = self.ledger.delivered.insert(id.clone(), now) {
            self.violate(format!(
                "{receiver} received {id} again (first at {:.3}s)",
                first.as_secs_f64()
            ));
            return;
        }
        self.ledger.deliveries.push(Delivery {
            at: now,
            receiver: receiver.to_string(),
            sent_at: sent.at,
            request_sent_at: Some(request.at),
            answer: true,
        });
    }

    fn count_received(&mut self, receiver: &str) {
        *self
            .ledger
            .received
            .entry(receiver.to_string())
            .or_default() += 1;
    }

    /// Target `receiver`'s kernel got an echo request with sequence `seq`
    /// and `data` from `from`: it must be a client's request, sent to this
    /// host, which the exit's allow-list admits echo to, from the exit,
    /// with the client's sequence number, delivered once. Returns the
    /// request's id, for the reply.
    pub fn deliver_echo_request(
        &mut self,
        receiver: &str,
        from: SocketAddr,
        seq: u16,
        data: &[u8],
    ) -> Option<MsgId> {
        self.count_received(receiver);
        let roles = self.setup.roles();
        let exit = NODE_NAMES[roles.exit];
        let Some(p) = Payload::parse(data).filter(|p| p.answers.is_none()) else {
            self.violate(format!(
                "{receiver}'s kernel received an echo request with {}: no client sent it",
                describe(data)
            ));
            return None;
        };
        let Some(sent) = self.ledger.sent.get(&p.id).cloned() else {
            self.violate(format!(
                "{receiver}'s kernel received an echo request {p}, never sent"
            ));
            return None;
        };
        let why = match sent.kind {
            SentKind::Echo { seq: s, .. } if s != seq => {
                Some(format!("sequence {seq}, but the client sent {s}"))
            }
            SentKind::Echo { .. } => None,
            _ => Some("it was not sent as an echo request".to_string()),
        }
        .or_else(|| {
            (sent.to != SocketAddr::new(self.ip(receiver), 0)
                || !p.id.sender.starts_with(roles.clients))
            .then(|| format!("it was a ping to {}", self.name_addr(sent.to)))
        })
        .or_else(|| {
            (!router_allows_echo(&self.setup, receiver))
                .then(|| format!("{exit}'s allow-list admits no echo to {receiver}"))
        })
        .or_else(|| (from.ip() != self.ip(exit)).then(|| format!("must come from {exit}")));
        if let Some(why) = why {
            self.violate(format!(
                "{receiver}'s kernel received echo request {p} from {}: {why}",
                self.name_addr(from)
            ));
        }
        let now = sim_now();
        if let Some(first) = self.ledger.delivered.insert(p.id.clone(), now) {
            self.violate(format!(
                "{receiver}'s kernel received echo request {p} again (first at {:.3}s)",
                first.as_secs_f64()
            ));
            return None;
        }
        self.ledger.deliveries.push(Delivery {
            at: now,
            receiver: receiver.to_string(),
            sent_at: sent.at,
            request_sent_at: None,
            answer: false,
        });
        Some(p.id)
    }

    /// Router client `receiver` got an echo reply from `from` with
    /// identifier `ident`, sequence `seq` and `data` on the entry's TUN
    /// device: it must answer a ping of this client's (identifier,
    /// sequence and data its request's), forged from the pinged host,
    /// which that host's kernel answered, delivered once.
    pub fn deliver_echo_reply(
        &mut self,
        receiver: &str,
        from: IpAddr,
        ident: u16,
        seq: u16,
        data: &[u8],
    ) {
        self.count_received(receiver);
        let Some(p) = Payload::parse(data).filter(|p| p.answers.is_none()) else {
            self.violate(format!(
                "{receiver} received an echo reply with {}: no client pinged with it",
                describe(data)
            ));
            return;
        };
        let id = icmp_answer_id(SentKind::EchoReply, &p.id);
        let (Some(request), Some(sent)) = (
            self.ledger.sent.get(&p.id).cloned(),
            self.ledger.sent.get(&id).cloned(),
        ) else {
            self.violate(format!(
                "{receiver} received an echo reply for {p}, which no kernel sent"
            ));
            return;
        };
        let why = if receiver != p.id.sender {
            Some(format!("the echo reply belongs to {}", p.id.sender))
        } else if request.kind != (SentKind::Echo { ident, seq }) {
            Some(format!(
                "identifier {ident} sequence {seq}, the request was {:?}",
                request.kind
            ))
        } else if from != request.to.ip() {
            Some(format!("it must come from {}", self.name_addr(request.to)))
        } else {
            None
        };
        if let Some(why) = why {
            self.violate(format!(
                "{receiver} received an echo reply to {p} from {from}: {why}"
            ));
        }
        self.delivered_answer(receiver, &id, &sent, &request);
    }

    /// Router client `receiver` (whose address on the TUN side is `own`)
    /// got a Fragmentation Needed / Packet Too Big from `from` on the
    /// entry's TUN device, quoting a packet from `quoted_src` to
    /// `quoted_dst` whose payload starts with `prefix`: it must quote an
    /// oversize datagram of this client's own (its id is at the start of
    /// the payload), come from that datagram's destination, and come once.
    /// Not a datagram from the peer: it is not counted as received.
    pub fn deliver_too_big(
        &mut self,
        receiver: &str,
        own: SocketAddr,
        from: IpAddr,
        quoted: (SocketAddr, SocketAddr),
        prefix: &[u8],
    ) {
        let (quoted_src, quoted_dst) = quoted;
        // The id is the payload's first three fields: `Q|sender|seq|`.
        let end = prefix
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'|')
            .nth(2)
            .map(|(k, _)| k + 1);
        let p = end.and_then(|end| Payload::parse(&prefix[..end]));
        let Some(p) = p.filter(|p| p.answers.is_none()) else {
            self.violate(format!(
                "{receiver} received a packet too big quoting {}: no client sent it",
                describe(prefix)
            ));
            return;
        };
        let why = match self.ledger.sent.get(&p.id) {
            None => Some("it was never sent".to_string()),
            Some(r) if r.kind != SentKind::Oversize => {
                Some("it was not too big for a frame".to_string())
            }
            Some(r) if r.to != quoted_dst => Some(format!(
                "it was sent to {}, not {}",
                self.name_addr(r.to),
                self.name_addr(quoted_dst)
            )),
            Some(_) if quoted_src != own || p.id.sender != receiver => {
                Some(format!("it quotes {}'s datagram", p.id.sender))
            }
            Some(_) if from != quoted_dst.ip() => {
                Some(format!("it must come from {}", self.name_addr(quoted_dst)))
            }
            Some(_) => None,
        };
        if let Some(why) = why {
            self.violate(format!(
                "{receiver} received a packet too big for {p}: {why}"
            ));
        }
        let id = icmp_answer_id(SentKind::TooBig, &p.id);
        if let Some(first) = self.ledger.delivered.insert(id.clone(), sim_now()) {
            self.violate(format!(
                "{receiver} received {id} again (first at {:.3}s)",
                first.as_secs_f64()
            ));
        }
    }

    /// Router client `receiver` (whose address on the TUN side is `own`)
    /// got a port unreachable from `from`, quoting a UDP datagram from
    /// `quoted_src` to `quoted_dst`: it must be about a datagram of its own
    /// (the quote names its address) that the destination's kernel
    /// refused and whose refusal has not been delivered yet (the oldest
    /// such is taken), forged from the destination.
    pub fn deliver_port_unreachable(
        &mut self,
        receiver: &str,
        own: SocketAddr,
        from: IpAddr,
        quoted_src: SocketAddr,
        quoted_dst: SocketAddr,
    ) {
        self.count_received(receiver);
        if quoted_src != own {
            let whose = self
                .tun_clients
                .get(&quoted_src)
                .cloned()
                .unwrap_or_else(|| quoted_src.to_string());
            self.violate(format!(
                "{receiver} received a port unreachable for {whose}'s datagram to {}",
                self.name_addr(quoted_dst)
            ));
            return;
        }
        if from != quoted_dst.ip() {
            self.violate(format!(
                "{receiver} received a port unreachable about {} from {from}",
                self.name_addr(quoted_dst)
            ));
        }
        let key = format!("{receiver}~unreach");
        let lo = MsgId {
            sender: key.clone(),
            seq: 0,
        };
        let hi = MsgId {
            sender: key,
            seq: u32::MAX,
        };
        let found = self
            .ledger
            .sent
            .range(lo..=hi)
            .filter(|(id, _)| !self.ledger.delivered.contains_key(*id))
            .find_map(|(id, rec)| {
                let request = self.ledger.sent.get(rec.answers.as_ref()?)?;
                (request.to == quoted_dst).then(|| (id.clone(), rec.clone(), request.clone()))
            });
        match found {
            Some((id, sent, request)) => self.delivered_answer(receiver, &id, &sent, &request),
            None => self.violate(format!(
                "{receiver} received a port unreachable about {}, which no kernel sent it",
                self.name_addr(quoted_dst)
            )),
        }
    }

    /// Customer `receiver` got `bytes` from `from`: checks that it is a
    /// datagram some customer sent, delivered at most once, to where the
    /// mode allows.
    pub fn deliver(&mut self, receiver: &str, from: SocketAddr, bytes: &[u8]) {
        *self
            .ledger
            .received
            .entry(receiver.to_string())
            .or_default() += 1;
        let now = sim_now();
        let Some(p) = Payload::parse(bytes) else {
            let what = format!(
                "{receiver} received {} from {}: no customer sent it",
                describe(bytes),
                self.name_addr(from)
            );
            self.violate(what);
            return;
        };
        let Some(sent) = self.ledger.sent.get(&p.id).cloned() else {
            self.violate(format!("{receiver} received {p}, which was never sent"));
            return;
        };
        if let Some(first) = self.ledger.delivered.insert(p.id.clone(), now) {
            self.violate(format!(
                "{receiver} received {p} again (first at {:.3}s)",
                first.as_secs_f64()
            ));
            return;
        }
        let request = match &p.answers {
            None => None,
            Some(orig) => match self.ledger.sent.get(orig).cloned() {
                Some(r) => Some(r),
                None => {
                    self.violate(format!(
                        "{receiver} received {p}: its request was never sent"
                    ));
                    return;
                }
            },
        };
        if let Err(why) = self.check_route(receiver, from, &p, &sent, request.as_ref()) {
            let what = format!(
                "{receiver} received {p} from {}: {why}",
                self.name_addr(from)
            );
            self.violate(what);
        }
        self.ledger.deliveries.push(Delivery {
            at: now,
            receiver: receiver.to_string(),
            sent_at: sent.at,
            request_sent_at: request.map(|r| r.at),
            answer: p.answers.is_some(),
        });
    }

    /// The mode's rules about who may receive what, from where.
    fn check_route(
        &self,
        receiver: &str,
        from: SocketAddr,
        p: &Payload,
        sent: &SentRec,
        request: Option<&SentRec>,
    ) -> Result<(), String> {
        let setup = &self.setup;
        let sender = p.id.sender.as_str();
        let x = self.ip("x");
        let y = self.ip("y");
        if let Some(orig) = &p.answers {
            // An answer goes to the one client whose request opened the
            // channel, and no one else.
            if setup.mode == Mode::Push {
                return Err("push carried an answer back, exit to entry".into());
            }
            if receiver != orig.sender {
                return Err(format!("the answer belongs to {}", orig.sender));
            }
            let request = request.ok_or("no request")?;
            let expected_from = match setup.mode {
                // From the listen socket the request went to.
                Mode::Forward => request.to,
                // Forged as if from the destination.
                Mode::Router => request.to,
                Mode::Direct => SocketAddr::new(
                    if receiver.starts_with("alice") { x } else { y },
                    LISTEN_PORT,
                ),
                Mode::Push => unreachable!(),
            };
            if from != expected_from {
                return Err(format!(
                    "answers must come from {}",
                    self.name_addr(expected_from)
                ));
            }
            return Ok(());
        }
        match setup.mode {
            Mode::Direct => {
                let ok = (sender == "alice-0" && receiver == "bob-0")
                    || (sender == "bob-0" && receiver == "alice-0");
                if !ok {
                    return Err("direct carries only between alice-0 and bob-0".into());
                }
                let expected_from =
                    SocketAddr::new(if receiver == "bob-0" { y } else { x }, LISTEN_PORT);
                if from != expected_from {
                    return Err(format!("must come from {}", self.name_addr(expected_from)));
                }
            }
            Mode::Forward | Mode::Push => {
                let roles = setup.roles();
                let (entry, exit) = if roles.entry == X { (x, y) } else { (y, x) };
                let service = usize::from(sent.to.port().wrapping_sub(LISTEN_PORT));
                if !sender.starts_with(roles.clients)
                    || sent.to.ip() != entry
                    || service >= setup.services.max(1)
                {
                    return Err("was not sent by a client to a listen socket".into());
                }
                let service = if setup.mode == Mode::Push { 0 } else { service };
                let target = format!("{}{service}", roles.targets);
                if receiver != target {
                    return Err(format!("service {service}'s target is {target}"));
                }
                if from.ip() != exit {
                    return Err("must come from the exit node".into());
                }
            }
            Mode::Router => {
                let roles = setup.roles();
                let exit = NODE_NAMES[roles.exit];
                if !sender.starts_with(roles.clients) {
                    return Err("was not sent by a client through the entry's TUN device".into());
                }
                let target = self.names.get(&sent.to.ip());
                let port_ok = sent.to.port() == roles.target_port
                    || (setup.icmp && sent.to.port() == roles.target_refusing_port);
                if target.map(String::as_str) != Some(receiver) || !port_ok {
                    return Err(format!("it was addressed to {}", self.name_addr(sent.to)));
                }
                if !router_allows(setup, receiver, sent.to.port()) {
                    return Err(format!("the destination is not on {exit}'s allow-list"));
                }
                if from.ip() != self.ip(exit) {
                    return Err(format!("must come from {exit}"));
                }
            }
        }
        Ok(())
    }

    /// The driver of node `i` counts something.
    pub fn count(&mut self, i: usize, f: impl FnOnce(&mut DriverCounts)) {
        f(&mut self.counts[i]);
    }

    /// A frame arrived at node `node` from its peer.
    pub fn capture(&mut self, node: usize, bytes: &[u8], race_loser: bool) {
        let c = Captured {
            node,
            bytes: bytes.to_vec(),
            race_loser,
            boot: self.boots[node],
        };
        let handshake = matches!(
            MessageType::of(bytes),
            Ok(MessageType::Initiation | MessageType::Response)
        );
        if handshake {
            if self.captured_handshakes.len() == HANDSHAKE_CAP {
                self.captured_handshakes.pop_front();
            }
            self.captured_handshakes.push_back(c.clone());
        }
        if self.captured.len() == CAPTURE_CAP {
            self.captured.pop_front();
        }
        self.captured.push_back(c);
    }
}

/// Whether router mode's allow-list on the exit admits `host:port`: Y's
/// admits bob-0 and bob-1 on [`BOB_PORT`](crate::scenario::BOB_PORT); in the mirror image X's admits
/// alice-0 and alice-1 on [`ALICE_PORT`](crate::scenario::ALICE_PORT). The
/// last target is never allowed.
///
/// With [`Setup::icmp`] the list also admits the targets' refusing port
/// on the same hosts.
pub fn router_allows(setup: &Setup, host: &str, port: u16) -> bool {
    let roles = setup.roles();
    let allowed = setup.targets().saturating_sub(1);
    (port == roles.target_port || (setup.icmp && port == roles.target_refusing_port))
        && host
            .strip_prefix(roles.targets)
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n < allowed)
}

/// Whether router mode's allow-list on the exit admits echo (`icmp://`)
/// to `host`: with [`Setup::icmp`], the first target only (the second is
/// admitted for UDP only, the last for nothing).
pub fn router_allows_echo(setup: &Setup, host: &str) -> bool {
    setup.icmp && host == format!("{}0", setup.roles().targets)
}
