//! Late replies on reused exit ports, end to end with the real daemon.
//!
//! The bug this pins: a forward service's exit gives each channel a socket
//! on a port the kernel picks. When a channel was evicted its socket closed,
//! the kernel soon gave the same port to a new channel's socket, and a slow
//! target's late reply for the old client arrived there and was delivered to
//! the new client. Core's exit port rule holds an ended channel's socket
//! (`port_hold`, 30 s by default) so that cannot happen.
//!
//! The set-up makes the kernel reuse ports quickly: the exit's namespace
//! gets a narrow ephemeral port range, many client ports go through a small
//! channel table (so channels are evicted all the time), and the target
//! answers every request 0-8 s late. Every client socket tags its request
//! with its own id and checks the id in each reply it gets.
//!
//! `SDT_LATE_REPLIES` reruns it at other sizes, e.g. the experiment that
//! found the bug (20,000 client ports, `max_channels = 1024`, the kernel's
//! own port range):
//!
//! ```sh
//! SDT_LATE_REPLIES="clients=20000 rate=400 max_channels=1024 min_idle=5s ports=default" \
//!   cargo test --release -p sdt --test late_replies -- --nocapture
//! ```

mod support;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use support::node::{drops, Lab};

/// Where the entry listens and the target answers, on each namespace's
/// loopback.
const LISTEN: &str = "127.0.0.1:5300";
const TARGET: &str = "127.0.0.1:5301";

/// The sizes of one run.
#[derive(Debug, Clone)]
struct Plan {
    /// Client sockets, each sending one tagged request.
    clients: usize,
    /// New clients per second.
    rate: u32,
    /// `max_channels` on both nodes.
    max_channels: u16,
    /// `min_idle_for_eviction` on both nodes.
    min_idle: String,
    /// The target answers each request this much later, at most (uniform
    /// from zero).
    max_delay: Duration,
    /// The exit namespace's `ip_local_port_range`, or `None` for the
    /// kernel's default.
    ports: Option<(u16, u16)>,
    /// The exit's `port_hold`, or `None` for the default.
    port_hold: Option<String>,
}

impl Plan {
    /// The run `./test.sh` makes: about 30 s.
    fn default_run() -> Plan {
        Plan {
            clients: 600,
            rate: 30,
            max_channels: 128,
            min_idle: "1s".into(),
            max_delay: Duration::from_secs(8),
            ports: Some((40000, 41023)),
            port_hold: None,
        }
    }

    /// [`Plan::default_run`] with what `SDT_LATE_REPLIES` changes
    /// (`key=value` words: clients, rate, max_channels, min_idle,
    /// max_delay_ms, ports=LO-HI or ports=default, port_hold; with
    /// `port_hold=0s` the exit closes sockets at once, as before the port
    /// rule, and the test shows the misdeliveries).
    fn from_env() -> Plan {
        let mut plan = Plan::default_run();
        let Ok(text) = std::env::var("SDT_LATE_REPLIES") else {
            return plan;
        };
        for word in text.split_whitespace() {
            let (key, value) = word
                .split_once('=')
                .unwrap_or_else(|| panic!("SDT_LATE_REPLIES: `{word}` is not key=value"));
            match key {
                "clients" => plan.clients = value.parse().unwrap_or_else(|_| bad(word)),
                "rate" => plan.rate = value.parse().unwrap_or_else(|_| bad(word)),
                "max_channels" => plan.max_channels = value.parse().unwrap_or_else(|_| bad(word)),
                "min_idle" => plan.min_idle = value.to_owned(),
                "port_hold" => plan.port_hold = Some(value.to_owned()),
                "max_delay_ms" => {
                    plan.max_delay =
                        Duration::from_millis(value.parse().unwrap_or_else(|_| bad(word)))
                }
                "ports" if value == "default" => plan.ports = None,
                "ports" => {
                    let (lo, hi) = value.split_once('-').unwrap_or_else(|| bad(word));
                    plan.ports = Some((
                        lo.parse().unwrap_or_else(|_| bad(word)),
                        hi.parse().unwrap_or_else(|_| bad(word)),
                    ));
                }
                _ => panic!("SDT_LATE_REPLIES: unknown key `{key}`"),
            }
        }
        plan
    }
}

fn bad<T>(word: &str) -> T {
    panic!("SDT_LATE_REPLIES: bad value in `{word}`")
}

/// Spawns `f` on a thread inside namespace `ns` (only that thread enters
/// it), running alongside the caller.
fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns(2) with an open namespace descriptor; it changes the
        // network namespace of this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
        f()
    })
}

/// An answer the slow target will send: when, a tie-breaking order, to
/// whom, what.
type Answer = (Instant, u64, SocketAddr, Vec<u8>);

/// The slow target: answers each datagram with `re:` and its payload, to
/// where it came from, after a delay drawn uniformly up to `max_delay`.
/// Returns how many requests it received and answered.
fn slow_target(sock: UdpSocket, max_delay: Duration, stop: Arc<AtomicBool>) -> (u64, u64) {
    let mut due: BinaryHeap<Reverse<Answer>> = BinaryHeap::new();
    let (mut received, mut answered, mut order) = (0u64, 0u64, 0u64);
    let mut buf = [0u8; 2048];
    let max_ms = max_delay.as_millis() as u64;
    while !stop.load(Ordering::Relaxed) || !due.is_empty() {
        let now = Instant::now();
        while due.peek().is_some_and(|Reverse((at, ..))| *at <= now) {
            let Some(Reverse((_, _, to, reply))) = due.pop() else {
                break;
            };
            if sock.send_to(&reply, to).is_ok() {
                answered += 1;
            }
        }
        let wait = due
            .peek()
            .map(|Reverse((at, ..))| at.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(50))
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
        sock.set_read_timeout(Some(wait)).expect("timeout");
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            received += 1;
            let mut reply = b"re:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let delay = Duration::from_millis(OsRng.next_u64() % (max_ms + 1));
            order += 1;
            due.push(Reverse((Instant::now() + delay, order, from, reply)));
        }
    }
    (received, answered)
}

/// What the clients saw.
#[derive(Debug, Default)]
struct Seen {
    sent: u64,
    /// Replies carrying the receiving client's own id.
    own: u64,
    /// Replies carrying another client's id: delivered to the wrong client.
    misdelivered: u64,
    /// Examples of misdeliveries: (receiving client, id in the reply).
    examples: Vec<(usize, usize)>,
}

/// Opens `plan.clients` client sockets at `plan.rate` a second, each
/// sending `q:<its id>` to the entry and reading replies for `drain`, then
/// closing (as a DNS client gives up), so that only `rate * drain` sockets
/// are open at once.
fn clients(plan: &Plan, entry: SocketAddr, drain: Duration) -> Seen {
    let mut poll = mio::Poll::new().expect("poll");
    let mut events = mio::Events::with_capacity(1024);
    let mut sockets: HashMap<usize, mio::net::UdpSocket> = HashMap::new();
    let mut closing: std::collections::VecDeque<(Instant, usize)> = Default::default();
    let mut seen = Seen::default();
    let started = Instant::now();
    let gap = Duration::from_secs(1) / plan.rate.max(1);
    let mut next = 0usize;
    let mut buf = [0u8; 2048];
    let end = started + gap * plan.clients as u32 + drain;
    while Instant::now() < end {
        while next < plan.clients && started + gap * next as u32 <= Instant::now() {
            let std = UdpSocket::bind("127.0.0.1:0").expect("client socket");
            std.set_nonblocking(true).expect("nonblocking");
            let mut sock = mio::net::UdpSocket::from_std(std);
            poll.registry()
                .register(&mut sock, mio::Token(next), mio::Interest::READABLE)
                .expect("register");
            if sock.send_to(format!("q:{next}").as_bytes(), entry).is_ok() {
                seen.sent += 1;
            }
            sockets.insert(next, sock);
            closing.push_back((Instant::now() + drain, next));
            next += 1;
        }
        while closing.front().is_some_and(|(at, _)| *at <= Instant::now()) {
            if let Some((_, client)) = closing.pop_front() {
                if let Some(mut sock) = sockets.remove(&client) {
                    let _ = poll.registry().deregister(&mut sock);
                }
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(5)))
            .expect("poll");
        for event in events.iter() {
            let client = event.token().0;
            let Some(sock) = sockets.get(&client) else {
                continue;
            };
            while let Ok(n) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                let id = text
                    .strip_prefix("re:q:")
                    .and_then(|id| id.parse::<usize>().ok());
                match id {
                    Some(id) if id == client => seen.own += 1,
                    Some(id) => {
                        seen.misdelivered += 1;
                        if seen.examples.len() < 10 {
                            seen.examples.push((client, id));
                        }
                    }
                    None => {
                        seen.misdelivered += 1;
                        if seen.examples.len() < 10 {
                            seen.examples.push((client, usize::MAX));
                        }
                    }
                }
            }
        }
    }
    seen
}

#[test]
fn late_replies_reach_only_their_own_client_while_exit_ports_are_reused() {
    let plan = Plan::from_env();
    let open_at_once = plan.rate as usize * (plan.max_delay.as_secs() as usize + 3);
    let wanted = open_at_once.min(plan.clients) as libc::rlim_t + 1024;
    sdt::daemon::raise_open_file_limit_to(wanted).expect("open file limit");
    let lab = Lab::new("late", 41);
    support::require_tool("sysctl");
    if let Some((lo, hi)) = plan.ports {
        let range = format!("{lo} {hi}");
        let out = lab.pair.b.run(
            "sysctl",
            &["-w", &format!("net.ipv4.ip_local_port_range={range}")],
            Duration::from_secs(5),
        );
        assert!(out.ok(), "sysctl in the exit's namespace: {}", out.stderr);
    }
    let limits = format!(
        "max_channels = {}\nmin_idle_for_eviction = \"{}\"",
        plan.max_channels, plan.min_idle
    );
    let entry_svc = format!(
        "[[service]]\nid = 1\npeer = \"b\"\nmode = \"forward\"\nlisten = \"{LISTEN}\"\n{limits}\n"
    );
    let hold = plan
        .port_hold
        .as_ref()
        .map(|h| format!("port_hold = \"{h}\"\n"))
        .unwrap_or_default();
    let exit_svc = format!(
        "[[service]]\nid = 1\npeer = \"a\"\nmode = \"forward\"\ntarget = \"{TARGET}\"\n{limits}\n{hold}"
    );

    // The target first, in the exit's namespace.
    let stop = Arc::new(AtomicBool::new(false));
    let target = {
        let (stop, max_delay) = (stop.clone(), plan.max_delay);
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = spawn_in_netns(&lab.pair.b.name, move || {
            let sock = UdpSocket::bind(TARGET).expect("target socket");
            tx.send(()).expect("ready");
            slow_target(sock, max_delay, stop)
        });
        rx.recv().expect("the target started");
        handle
    };
    let (a, b) = lab.start_nodes(&entry_svc, &exit_svc);

    let seen = {
        let plan = plan.clone();
        let drain = plan.max_delay + Duration::from_secs(2);
        spawn_in_netns(&lab.pair.a.name, move || {
            clients(&plan, LISTEN.parse().expect("listen"), drain)
        })
        .join()
        .expect("clients")
    };
    stop.store(true, Ordering::Relaxed);
    let (received, answered) = target.join().expect("target");

    let (es, xs) = (a.service(1), b.service(1));
    let report = format!(
        "plan {plan:?}\nclients: {seen:?}\ntarget: {received} requests received, {answered} \
         answered\nentry: {es:#?}\nexit: {xs:#?}"
    );
    println!("{report}");
    assert_eq!(
        seen.misdelivered, 0,
        "replies reached the wrong client\n{report}"
    );
    // The run did what it is for: channels were evicted, late replies came
    // back to ports still held, and answers within a channel's life got
    // through (with channels living about 4 s and answers taking 0-8 s,
    // about half).
    assert!(xs.channels_evicted > 0, "no eviction at the exit\n{report}");
    assert!(
        drops(&xs.drops, "late_reply") > 0,
        "no late reply reached a held port\n{report}"
    );
    assert!(
        seen.own * 4 >= seen.sent,
        "fewer than a quarter of the clients got their answer\n{report}"
    );
    a.stop();
    b.stop();
}
