//! Forward at DNS rates, end to end: a forward service with the default
//! limits in front of a real DNS server (dnsmasq), and clients that each
//! use a fresh source port for one query, as stub resolvers do, arriving at
//! thousands a second. Issue 15 found ~200 new clients a second refused
//! (`table_full`) with the old defaults; the exit port rule's 30 s hold
//! alone would cap any rate near 1,000 a second.
//!
//! Each client asks for its own name (`c<index>.test`; dnsmasq answers
//! every name under `test`) with its own query id, and checks both in the
//! answer, so an answer delivered to the wrong client is seen.
//!
//! `SDT_DNS_RATE` changes the run (`key=value` words: rate, seconds), and
//! is the benchmark of the new-client rate: the test prints the rate the
//! clients kept up and what sdt refused, e.g.
//!
//! ```sh
//! SDT_DNS_RATE="rate=20000 seconds=5" cargo test --release -p sdt --test dns_rate -- --nocapture
//! ```
//!
//! Needs root, dnsmasq and the namespaces; fails, not skips, without them.

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use support::customers::{dnsmasq, Record};
use support::net::in_netns;
use support::node::{drops, Lab};

const NET: u8 = 83;
const LISTEN: &str = "127.0.0.1:5400";
const TARGET_PORT: u16 = 5401;
/// A client gives up on its query after this long (a stub resolver's
/// first timeout).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// New clients a second offered.
    rate: u32,
    /// For how long.
    seconds: u32,
}

impl Plan {
    fn from_env() -> Plan {
        // The suite's run: a debug build on a CI machine that may be slow
        // and loaded. At 5,000 a second there (3 December CI) the round trip
        // grew past 1,024 / 5,000 s, so the entry's 1,024 places filled with
        // queries in flight (`table_full`) and dnsmasq's socket overflowed.
        // The benchmark (`scripts/bench-netns.sh --only dns`, release) offers
        // 2,000 to 15,000.
        let mut plan = Plan {
            rate: 2000,
            seconds: 3,
        };
        if let Ok(text) = std::env::var("SDT_DNS_RATE") {
            for word in text.split_whitespace() {
                let (key, value) = word
                    .split_once('=')
                    .unwrap_or_else(|| panic!("SDT_DNS_RATE: `{word}` is not key=value"));
                let n = value
                    .parse()
                    .unwrap_or_else(|_| panic!("SDT_DNS_RATE: bad value in `{word}`"));
                match key {
                    "rate" => plan.rate = n,
                    "seconds" => plan.seconds = n,
                    _ => panic!("SDT_DNS_RATE: unknown key `{key}`"),
                }
            }
        }
        plan
    }
}

/// A DNS query for the A record of `name`, with id `id`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Whether `reply` answers `query`: its id, a response with no error and
/// an answer record, for the same question.
fn answers(reply: &[u8], query: &[u8]) -> bool {
    reply.len() >= query.len()
        && reply[..2] == query[..2]
        && reply[2] & 0x80 != 0
        && reply[3] & 0x0f == 0
        && u16::from_be_bytes([reply[6], reply[7]]) >= 1
        && reply[12..query.len()] == query[12..]
}

/// What the clients saw.
#[derive(Debug, Default)]
struct Seen {
    sent: u64,
    answered: u64,
    /// Answers to another client's query.
    misdelivered: u64,
    /// Queries given up after [`CLIENT_TIMEOUT`].
    timed_out: u64,
    /// Queries not sent: the client's namespace had no free port (at very
    /// high rates with many queries unanswered).
    no_port: u64,
    /// From the first query to the last.
    sending: Duration,
}

impl Seen {
    /// New clients a second the clients kept up.
    fn rate(&self) -> f64 {
        self.sent as f64 / self.sending.as_secs_f64().max(1e-3)
    }
}

/// Sends `plan.rate` queries a second for `plan.seconds`, each from a new
/// socket that is closed once answered or after [`CLIENT_TIMEOUT`].
fn clients(plan: Plan, entry: SocketAddr) -> Seen {
    let mut poll = mio::Poll::new().expect("poll");
    let mut events = mio::Events::with_capacity(1024);
    let mut open: HashMap<usize, (mio::net::UdpSocket, Vec<u8>, Instant)> = HashMap::new();
    let mut seen = Seen::default();
    let total = (plan.rate * plan.seconds) as usize;
    let gap = Duration::from_secs(1) / plan.rate.max(1);
    let started = Instant::now();
    let mut next = 0usize;
    let mut buf = [0u8; 1500];
    while next < total || !open.is_empty() {
        while next < total && started + gap * next as u32 <= Instant::now() {
            let Ok(std) = UdpSocket::bind("127.0.0.1:0") else {
                seen.no_port += 1;
                next += 1;
                continue;
            };
            std.set_nonblocking(true).expect("nonblocking");
            let mut sock = mio::net::UdpSocket::from_std(std);
            poll.registry()
                .register(&mut sock, mio::Token(next), mio::Interest::READABLE)
                .expect("register");
            let q = query(next as u16 ^ 0x5a5a, &format!("c{next}.test"));
            if sock.send_to(&q, entry).is_ok() {
                seen.sent += 1;
            }
            open.insert(next, (sock, q, Instant::now() + CLIENT_TIMEOUT));
            next += 1;
        }
        if next == total && seen.sending.is_zero() {
            seen.sending = started.elapsed();
        }
        poll.poll(&mut events, Some(Duration::from_millis(1)))
            .expect("poll");
        for event in events.iter() {
            let client = event.token().0;
            let Some((sock, q, _)) = open.get(&client) else {
                continue;
            };
            let mut done = false;
            while let Ok(n) = sock.recv(&mut buf) {
                if answers(&buf[..n], q) {
                    seen.answered += 1;
                    done = true;
                } else {
                    seen.misdelivered += 1;
                }
            }
            if done {
                if let Some((mut sock, ..)) = open.remove(&client) {
                    let _ = poll.registry().deregister(&mut sock);
                }
            }
        }
        let now = Instant::now();
        let before = open.len();
        open.retain(|_, (_, _, give_up)| *give_up > now);
        seen.timed_out += (before - open.len()) as u64;
    }
    seen
}

/// One run against dnsmasq behind the exit, the forward service's halves
/// with the default limits plus `entry_limits` and `exit_limits`.
fn run(
    tag: &str,
    net: u8,
    plan: Plan,
    entry_limits: &str,
    exit_limits: &str,
) -> (Seen, String, [u64; 2]) {
    let lab = Lab::new(tag, net);
    let server: IpAddr = Ipv4Addr::LOCALHOST.into();
    let _dns = dnsmasq(
        &lab.pair.b,
        lab.dir.path(),
        "dnsmasq",
        &[server],
        TARGET_PORT,
        &[Record {
            name: "test".into(),
            addr: Ipv4Addr::new(192, 0, 2, 7),
        }],
    );
    let entry = format!(
        "[[service]]\nid = 1\npeer = \"b\"\nmode = \"forward\"\nlisten = \"{LISTEN}\"\n{entry_limits}\n"
    );
    let exit = format!(
        "[[service]]\nid = 1\npeer = \"a\"\nmode = \"forward\"\ntarget = \"{server}:{TARGET_PORT}\"\n{exit_limits}\n"
    );
    let (a, b) = lab.start_nodes(&entry, &exit);
    let entry_addr: SocketAddr = LISTEN.parse().expect("listen");
    let seen = in_netns(&lab.pair.a.name, move || clients(plan, entry_addr));
    let (es, xs) = (a.service(1), b.service(1));
    let refused = |s: &sdt::status::ServiceState| {
        ["table_full", "channel_rate_limited", "ports_held"]
            .iter()
            .map(|r| drops(&s.drops, r))
            .sum::<u64>()
    };
    let refusals = [refused(&es), refused(&xs)];
    let report = format!(
        "{tag}: plan {plan:?}, limits {entry_limits:?} / {exit_limits:?}\nclients: {seen:?}, {:.0} new clients/s kept up\n\
         refused: entry {}, exit {}\nentry: {es:#?}\nexit: {xs:#?}",
        seen.rate(),
        refusals[0],
        refusals[1]
    );
    a.stop();
    b.stop();
    (seen, report, refusals)
}

/// With the defaults, thousands of one-query clients a second: none is
/// refused, every answer reaches its own client. With the old defaults
/// (every exit port held 30 s, 1,000 new channels a second), the same load
/// is refused.
#[test]
fn forward_serves_a_dns_server_at_thousands_of_new_clients_a_second() {
    let plan = Plan::from_env();
    let (seen, report, refused) = run("dnsrate", NET, plan, "", "");
    println!("{report}");
    assert_eq!(
        seen.misdelivered, 0,
        "answers reached other clients\n{report}"
    );
    assert_eq!(refused, [0, 0], "sdt refused clients\n{report}");
    // Counts, not timing: on a loaded machine the kernel may drop a few
    // datagrams between processes (dnsmasq's socket first), but sdt
    // refused none.
    assert!(
        seen.answered * 100 >= seen.sent * 98,
        "fewer than 98% answered\n{report}"
    );

    let (old, report, refused) = run(
        "dnsold",
        NET + 1,
        plan,
        "new_channels_per_second = 1000",
        "answered_port_hold = \"30s\"\nnew_channels_per_second = 1000",
    );
    println!("{report}");
    assert_eq!(
        old.misdelivered, 0,
        "answers reached other clients\n{report}"
    );
    assert!(
        refused.iter().sum::<u64>() > 0 && old.answered < old.sent,
        "the old limits refused nothing at {:.0} clients/s\n{report}",
        old.rate()
    );
}
