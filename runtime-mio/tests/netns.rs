//! End-to-end tests: two `sdt run` nodes in two network namespaces joined by
//! a veth pair, with real programs from Debian packages as customers
//! (dnsmasq and dig, logger and socat, socat and nc), and the outcome checked
//! exactly, in what the customers saw and in `sdt status --json`.
//!
//! - forward, both mirror images: dig through the entry to dnsmasq behind
//!   the exit; every query answered with its own address, one channel per
//!   client port, no drops.
//! - link liveness: the same with the entry on B and no `keep_up` anywhere;
//!   A, the exit, knows B's endpoint and brings the link up by itself.
//! - forward under loss, reordering and delay (`tc netem`, or where the
//!   kernel has no netem a userspace relay that does the same): every query
//!   eventually answered, never with another query's answer.
//! - push, both mirror images: `logger` lines through the tunnel into a
//!   socat receiver, each exactly once.
//! - direct: socat and nc as the two fixed customers, data both ways
//!   exactly; strangers dropped and counted.
//! - router: a TUN device on the entry, an allow-list on the exit: an allowed
//!   destination answers, a disallowed host or port does not and is counted.
//! - a router entry without CAP_NET_ADMIN (unprivileged user, or root with
//!   the capability dropped) exits 2 with one line saying so.
//! - bad starts on loopback (no namespace): a service port or the link port
//!   in use exits 2 naming the service and address, a missing key file exits
//!   1 naming the file.
//!
//! Node A knows B's endpoint (and keeps the link up), B learns A's from the
//! handshake; B starts first, and every test waits for the session on both
//! before any customer sends (a datagram sent earlier would be dropped).
//!
//! They need root (namespaces, veth, TUN) and fail, not skip, without it or
//! without a tool (the message names the Debian package;
//! `scripts/install-deps.sh` installs them all). Tests run in parallel: each
//! has its own namespaces (`sdte2e-<pid>-<test>-a/b`), its own 10.200.N.0/24
//! and its own temp directory, and every process, namespace and file it makes
//! is owned by a guard that removes it on drop, also when the test fails.

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use support::customers::{answers, dig, dnsmasq, octet_counted_frames, records, Record};
use support::net::{netem, Impairment, Netns, Relay};
use support::node::{drops, write_private, Keys, Lab, Node};
use support::{require_root, require_tool, run, run_input, wait_until, Proc, Ran, SDT};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn local(port: u16) -> SocketAddr {
    SocketAddr::new(LOCALHOST, port)
}

/// Which node holds the entry half: the plain image (A) or the mirror (B).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Entry {
    OnA,
    OnB,
}

/// `[[service]]` tables for a forward or push service: the entry listens
/// on `listen` in its namespace, the exit sends to `target` in its own.
fn entry_exit_services(
    entry: Entry,
    mode: &str,
    id: u8,
    listen: SocketAddr,
    target: SocketAddr,
) -> (String, String) {
    let svc = |peer: &str, key: &str, addr: SocketAddr| {
        format!(
            "[[service]]\nid = {id}\npeer = \"{peer}\"\nmode = \"{mode}\"\n{key} = \"{addr}\"\n"
        )
    };
    match entry {
        Entry::OnA => (svc("b", "listen", listen), svc("a", "target", target)),
        Entry::OnB => (svc("b", "target", target), svc("a", "listen", listen)),
    }
}

/// Picks (entry, exit) out of (a, b).
fn by_entry<T>(entry: Entry, a: T, b: T) -> (T, T) {
    match entry {
        Entry::OnA => (a, b),
        Entry::OnB => (b, a),
    }
}

const DNS_PORT: u16 = 5353;
const FORWARD_LISTEN: u16 = 5300;

/// Which dig queries to run: `per_port` from each of `ports` on
/// `bind_ip` (ports in parallel, the queries of one port one after the
/// other) at `server`, each with `tries` attempts of `time` seconds.
struct DigPlan<'a> {
    ns: &'a Netns,
    bind_ip: IpAddr,
    server: SocketAddr,
    ports: &'a [u16],
    per_port: usize,
    tries: u32,
    time: u32,
}

/// Runs `plan`, query k asking for `recs[k]`; returns (record, dig's
/// result) for each.
fn dig_from_ports<'r>(plan: &DigPlan<'_>, recs: &'r [Record]) -> Vec<(&'r Record, Ran)> {
    let per_port = plan.per_port;
    assert!(recs.len() >= plan.ports.len() * per_port);
    std::thread::scope(|s| {
        let handles: Vec<_> = plan
            .ports
            .iter()
            .enumerate()
            .map(|(i, &port)| {
                let recs = &recs[i * per_port..(i + 1) * per_port];
                s.spawn(move || {
                    recs.iter()
                        .map(|r| {
                            let bind = SocketAddr::new(plan.bind_ip, port);
                            let ran = dig(
                                plan.ns,
                                plan.server,
                                &r.name,
                                Some(bind),
                                plan.tries,
                                plan.time,
                            );
                            (r, ran)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("dig thread"))
            .collect()
    })
}

/// Every query got exactly its own record's address.
fn assert_all_answered(results: &[(&Record, Ran)], nodes: &[&Node]) {
    for (rec, ran) in results {
        assert_eq!(
            answers(ran),
            [rec.addr.to_string()],
            "{}: wrong or no answer:\n{ran}\nstatus: {:#?}",
            rec.name,
            nodes.iter().map(|n| n.try_status()).collect::<Vec<_>>()
        );
    }
}

fn forward(tag: &str, net: u8, entry: Entry) {
    forward_with(tag, net, entry, true);
}

/// [`forward`], saying whether A (which knows B's endpoint) has `keep_up`.
fn forward_with(tag: &str, net: u8, entry: Entry, keep_up: bool) {
    let lab = Lab::new(tag, net);
    let (entry_ns, exit_ns) = by_entry(entry, &lab.pair.a, &lab.pair.b);
    let recs = records(12);
    let _dns = dnsmasq(
        exit_ns,
        lab.dir.path(),
        "dnsmasq",
        &[LOCALHOST],
        DNS_PORT,
        &recs,
    );
    let (a_svc, b_svc) =
        entry_exit_services(entry, "forward", 1, local(FORWARD_LISTEN), local(DNS_PORT));
    let (a, b) = lab.start_nodes_with(lab.b_link(), keep_up, &a_svc, &b_svc);
    let (entry_node, exit_node) = by_entry(entry, &a, &b);

    // 4 client ports, 3 queries each, one try each: no loss here, so every
    // count below is exact.
    let ports = [40001, 40002, 40003, 40004];
    let plan = DigPlan {
        ns: entry_ns,
        bind_ip: LOCALHOST,
        server: local(FORWARD_LISTEN),
        ports: &ports,
        per_port: 3,
        tries: 1,
        time: 3,
    };
    let results = dig_from_ports(&plan, &recs);
    assert_all_answered(&results, &[&a, &b]);

    let n = recs.len() as u64;
    let es = entry_node.service(1);
    let xs = exit_node.service(1);
    let ctx = format!("entry: {es:#?}\nexit: {xs:#?}");
    assert_eq!(es.half, "entry", "{ctx}");
    assert_eq!(xs.half, "exit", "{ctx}");
    assert_eq!(es.channels_created, ports.len() as u64, "{ctx}");
    assert_eq!(es.channels_open, ports.len() as u64, "{ctx}");
    assert_eq!(xs.channels_created, ports.len() as u64, "{ctx}");
    assert_eq!(xs.channels_open, ports.len() as u64, "{ctx}");
    assert_eq!(
        (es.to_peer_datagrams, es.from_peer_datagrams),
        (n, n),
        "{ctx}"
    );
    assert_eq!(
        (xs.from_peer_datagrams, xs.to_peer_datagrams),
        (n, n),
        "{ctx}"
    );
    assert!(es.drops.is_empty() && xs.drops.is_empty(), "{ctx}");
    for node in [&a, &b] {
        let st = node.status();
        assert!(st.node_drops.is_empty(), "{}: {st:#?}", node.name);
        assert!(st.peers[0].drops.is_empty(), "{}: {st:#?}", node.name);
        assert_eq!(st.send_errors, 0, "{}: {st:#?}", node.name);
    }
    a.stop();
    b.stop();
}

#[test]
fn forward_dns_entry_on_a() {
    forward("fwd-a", 1, Entry::OnA);
}

#[test]
fn forward_dns_entry_on_b() {
    forward("fwd-b", 2, Entry::OnB);
}

/// Link liveness (design brief): A holds the exit and knows B's endpoint,
/// B holds the entry and knows none for A (`ssh -R` style). Without any
/// `keep_up` in A's config, A brings the link up at start, so B's customers
/// are served from the first datagram.
#[test]
fn forward_dns_entry_on_b_link_up_without_keep_up() {
    forward_with("fwd-live", 8, Entry::OnB, false);
}

/// Forward under `loss 10% reorder 25% delay 5ms` both ways on the link,
/// turned on once the session is up (so the start does not wait on
/// handshake retries): dig retries, and every query is answered, each with
/// its own address.
#[test]
fn forward_dns_under_loss_and_reordering() {
    const SPEC: &str = "loss 10% reorder 25% delay 5ms";
    let lab = Lab::new("loss", 3);
    let recs = records(20);
    let _dns = dnsmasq(
        &lab.pair.b,
        lab.dir.path(),
        "dnsmasq",
        &[LOCALHOST],
        DNS_PORT,
        &recs,
    );
    let (a_svc, b_svc) = entry_exit_services(
        Entry::OnA,
        "forward",
        1,
        local(FORWARD_LISTEN),
        local(DNS_PORT),
    );

    // tc netem where the kernel has it (probed with a no-op netem);
    // otherwise a relay in namespace A that does the same in userspace.
    let mut relay = None;
    let (a, b) = match netem(&lab.pair.a, "va", "delay 0ms") {
        Ok(()) => {
            netem(&lab.pair.b, "vb", "delay 0ms").unwrap();
            lab.start_nodes(&a_svc, &b_svc)
        }
        Err(why) => {
            eprintln!("no netem ({why}); using the userspace relay");
            let a_facing = SocketAddr::new(lab.pair.a_ip().into(), 6000);
            let b_facing = SocketAddr::new(lab.pair.a_ip().into(), 6001);
            let r = relay.insert(Relay::start(
                &lab.pair.a,
                (a_facing, lab.a_link()),
                (b_facing, lab.b_link()),
                Impairment {
                    loss: 0.10,
                    reorder: 0.25,
                    delay: Duration::from_millis(5),
                },
                0x5d7_e2e,
            ));
            let nodes = lab.start_nodes_via(a_facing, &a_svc, &b_svc);
            r.set_impaired(true);
            nodes
        }
    };
    if relay.is_none() {
        for (ns, dev) in [(&lab.pair.a, "va"), (&lab.pair.b, "vb")] {
            let mut args = vec!["qdisc", "change", "dev", dev, "root", "netem"];
            args.extend(SPEC.split_whitespace());
            let out = ns.run("tc", &args, Duration::from_secs(10));
            assert!(out.ok(), "tc {args:?}: {out}");
        }
    }

    // 5 client ports, 4 queries each, up to 8 tries of 1 s each.
    let ports = [40001, 40002, 40003, 40004, 40005];
    let plan = DigPlan {
        ns: &lab.pair.a,
        bind_ip: LOCALHOST,
        server: local(FORWARD_LISTEN),
        ports: &ports,
        per_port: 4,
        tries: 8,
        time: 1,
    };
    let results = dig_from_ports(&plan, &recs);
    assert_all_answered(&results, &[&a, &b]);

    let es = a.service(1);
    let xs = b.service(1);
    let ctx = format!("entry: {es:#?}\nexit: {xs:#?}");
    assert_eq!(es.channels_created, ports.len() as u64, "{ctx}");
    assert_eq!(xs.channels_created, ports.len() as u64, "{ctx}");
    assert!(es.to_peer_datagrams >= recs.len() as u64, "{ctx}");
    assert!(es.from_peer_datagrams >= recs.len() as u64, "{ctx}");
    if let Some(mut r) = relay {
        let stats = r.finish();
        let lost: u64 = stats.iter().map(|s| s.lost).sum();
        let early: u64 = stats.iter().map(|s| s.sent_early).sum();
        eprintln!("relay A->B, B->A: {stats:?}");
        assert!(lost > 0 && early > 0, "the relay did not impair: {stats:?}");
    }
    a.stop();
    b.stop();
}

const SYSLOG_LISTEN: u16 = 5514;
const SYSLOG_TARGET: u16 = 5515;

/// Push: `logger` sends N numbered syslog lines over UDP to the entry; a
/// socat behind the exit appends every datagram to a file. The file holds
/// each line exactly once.
fn push(tag: &str, net: u8, entry: Entry) {
    require_tool("logger");
    require_tool("socat");
    const N: usize = 100;
    let lab = Lab::new(tag, net);
    let (entry_ns, exit_ns) = by_entry(entry, &lab.pair.a, &lab.pair.b);
    let received = lab.path("received.log");
    let mut recv_cmd = exit_ns.cmd("socat");
    recv_cmd.args([
        "-u".to_owned(),
        format!("UDP-RECV:{SYSLOG_TARGET},bind=127.0.0.1"),
        format!("OPEN:{},creat,append", received.display()),
    ]);
    let mut receiver = Proc::spawn("socat-recv", lab.dir.path(), &mut recv_cmd, false);
    assert!(
        exit_ns.wait_udp_bound(local(SYSLOG_TARGET), Duration::from_secs(10)),
        "{}",
        receiver.describe()
    );
    let (a_svc, b_svc) =
        entry_exit_services(entry, "push", 2, local(SYSLOG_LISTEN), local(SYSLOG_TARGET));
    let (a, b) = lab.start_nodes(&a_svc, &b_svc);
    let (entry_node, exit_node) = by_entry(entry, &a, &b);

    let lines: String = (0..N).map(|i| format!("e2e-line-{i:04}\n")).collect();
    let sent = run_input(
        entry_ns.cmd("logger").args([
            "-n",
            "127.0.0.1",
            "-P",
            &SYSLOG_LISTEN.to_string(),
            "-d",
            "--octet-count",
            "-t",
            "sdt-e2e",
        ]),
        Some(lines.as_bytes()),
        Duration::from_secs(10),
    );
    assert!(sent.ok(), "logger: {sent}");

    let frames = || octet_counted_frames(&std::fs::read(&received).unwrap_or_default());
    let all_in = wait_until(Duration::from_secs(10), || {
        frames().is_ok_and(|f| f.len() >= N)
    });
    // Anything extra (a duplicate) would arrive right behind.
    std::thread::sleep(Duration::from_millis(300));
    let frames = frames().unwrap_or_else(|e| panic!("receiver file: {e}"));
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for f in &frames {
        let n: usize = f
            .rsplit_once("e2e-line-")
            .and_then(|(_, n)| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("not one of ours: {f:?}"));
        *seen.entry(n).or_default() += 1;
    }
    let es = entry_node.service(2);
    let xs = exit_node.service(2);
    let ctx = format!("entry: {es:#?}\nexit: {xs:#?}");
    assert!(all_in, "{} of {N} lines arrived\n{ctx}", frames.len());
    assert_eq!(frames.len(), N, "{ctx}");
    assert_eq!(
        seen,
        (0..N).map(|i| (i, 1)).collect::<BTreeMap<_, _>>(),
        "{ctx}"
    );
    assert_eq!(es.to_peer_datagrams, N as u64, "{ctx}");
    assert_eq!(xs.from_peer_datagrams, N as u64, "{ctx}");
    assert_eq!(es.from_peer_datagrams + xs.to_peer_datagrams, 0, "{ctx}");
    assert!(es.drops.is_empty() && xs.drops.is_empty(), "{ctx}");
    a.stop();
    b.stop();
    drop(receiver);
}

#[test]
fn push_syslog_entry_on_a() {
    push("push-a", 4, Entry::OnA);
}

#[test]
fn push_syslog_entry_on_b() {
    push("push-b", 5, Entry::OnB);
}

const DIRECT_LISTEN: u16 = 7001;
const DIRECT_CUSTOMER: u16 = 7002;

/// Direct: socat is the one customer on A's side, nc on B's; each line
/// one of them writes comes out of the other exactly, both ways. Datagrams
/// from any other address or port are dropped as strangers and counted.
#[test]
fn direct_socat_and_nc_both_ways_strangers_dropped() {
    require_tool("socat");
    require_tool("nc");
    let lab = Lab::new("direct", 6);
    let svc = |peer: &str| {
        format!(
            "[[service]]\nid = 3\npeer = \"{peer}\"\nmode = \"direct\"\n\
             listen = \"127.0.0.1:{DIRECT_LISTEN}\"\ntarget = \"127.0.0.1:{DIRECT_CUSTOMER}\"\n"
        )
    };
    let (a, b) = lab.start_nodes(&svc("b"), &svc("a"));

    let mut socat_cmd = lab.pair.a.cmd("socat");
    socat_cmd.args([
        format!("UDP:127.0.0.1:{DIRECT_LISTEN},bind=127.0.0.1:{DIRECT_CUSTOMER}"),
        "STDIO".to_owned(),
    ]);
    let mut alice = Proc::spawn("socat-a", lab.dir.path(), &mut socat_cmd, true);
    let mut nc_cmd = lab.pair.b.cmd("nc");
    nc_cmd.args([
        "-u",
        "-s",
        "127.0.0.1",
        "-p",
        &DIRECT_CUSTOMER.to_string(),
        "127.0.0.1",
        &DIRECT_LISTEN.to_string(),
    ]);
    let mut bob = Proc::spawn("nc-b", lab.dir.path(), &mut nc_cmd, true);
    for (ns, p) in [(&lab.pair.a, &mut alice), (&lab.pair.b, &mut bob)] {
        assert!(
            ns.wait_udp_bound(local(DIRECT_CUSTOMER), Duration::from_secs(10)),
            "{}",
            p.describe()
        );
    }

    // One line at a time, each waited for, so each is one datagram.
    const M: usize = 5;
    let mut expect_at_bob = String::new();
    let mut expect_at_alice = String::new();
    for i in 0..M {
        let nodes = [&a, &b];
        deliver(
            &mut alice,
            &bob,
            &mut expect_at_bob,
            &format!("a-to-b {i}\n"),
            &nodes,
        );
        deliver(
            &mut bob,
            &alice,
            &mut expect_at_alice,
            &format!("b-to-a {i}\n"),
            &nodes,
        );
    }
    for node in [&a, &b] {
        let s = node.service(3);
        assert_eq!(s.half, "both", "{s:#?}");
        assert_eq!(
            (s.to_peer_datagrams, s.from_peer_datagrams),
            (M as u64, M as u64),
            "{}: {s:#?}",
            node.name
        );
        assert!(s.drops.is_empty(), "{}: {s:#?}", node.name);
    }

    // Strangers: another port on A's side (socat), another address with the
    // customer's own port on A's side, another port on B's side (nc).
    let stranger = |ns: &Netns, prog: &str, args: &[String]| {
        let out = run_input(
            ns.cmd(prog).args(args),
            Some(b"stranger\n"),
            Duration::from_secs(10),
        );
        assert!(out.ok(), "{prog} {args:?}: {out}");
    };
    let to_listen = format!("UDP-SENDTO:127.0.0.1:{DIRECT_LISTEN}");
    stranger(
        &lab.pair.a,
        "socat",
        &[
            "-u".into(),
            "STDIN".into(),
            format!("{to_listen},bind=127.0.0.1:7003"),
        ],
    );
    stranger(
        &lab.pair.a,
        "socat",
        &[
            "-u".into(),
            "STDIN".into(),
            format!("{to_listen},bind={}:{DIRECT_CUSTOMER}", lab.pair.a_ip()),
        ],
    );
    stranger(
        &lab.pair.b,
        "nc",
        &[
            "-u".into(),
            "-w1".into(),
            "-s".into(),
            "127.0.0.1".into(),
            "-p".into(),
            "7004".into(),
            "127.0.0.1".into(),
            DIRECT_LISTEN.to_string(),
        ],
    );
    let counted = wait_until(Duration::from_secs(5), || {
        drops(&a.service(3).drops, "stranger") == 2 && drops(&b.service(3).drops, "stranger") == 1
    });
    std::thread::sleep(Duration::from_millis(200));
    let (sa, sb) = (a.service(3), b.service(3));
    assert!(counted, "a: {sa:#?}\nb: {sb:#?}");
    assert_eq!(sa.drops, [("stranger".to_owned(), 2)], "{sa:#?}");
    assert_eq!(sb.drops, [("stranger".to_owned(), 1)], "{sb:#?}");
    for s in [&sa, &sb] {
        assert_eq!(
            (s.to_peer_datagrams, s.from_peer_datagrams),
            (M as u64, M as u64),
            "{s:#?}"
        );
    }
    assert_eq!(bob.stdout_text(), expect_at_bob);
    assert_eq!(alice.stdout_text(), expect_at_alice);
    a.stop();
    b.stop();
    drop((alice, bob));
}

/// Writes `line` to customer `from` and waits until `to` has printed it
/// after what it printed before (`expect`).
fn deliver(from: &mut Proc, to: &Proc, expect: &mut String, line: &str, nodes: &[&Node]) {
    use std::io::Write;
    let stdin = from.stdin.as_mut().expect("customer stdin");
    stdin.write_all(line.as_bytes()).unwrap();
    stdin.flush().unwrap();
    expect.push_str(line);
    let arrived = wait_until(Duration::from_secs(5), || to.stdout_text() == *expect);
    assert!(
        arrived,
        "{} got {:?}, expected {expect:?}\n{}\nstatus: {:#?}",
        to.name,
        to.stdout_text(),
        from.describe(),
        nodes.iter().map(|n| n.try_status()).collect::<Vec<_>>()
    );
}

/// Router: A's TUN device takes the route to 10.202.0.0/24; B, the exit,
/// allows only 10.202.0.53:53. dnsmasq answers on 10.202.0.53:53,
/// 10.202.0.54:53 and 10.202.0.53:5353 in B's namespace (checked there
/// directly); through the tunnel only the first answers, and the exit counts
/// the others as not_allowed. The TUN's transmit queue is the daemon's
/// length, not the kernel's default.
#[test]
fn router_tun_entry_allow_list_on_exit() {
    const NET: u8 = 7;
    let lab = Lab::new("router", NET);
    let allowed: IpAddr = Ipv4Addr::new(10, 202, 0, 53).into();
    let other_host: IpAddr = Ipv4Addr::new(10, 202, 0, 54).into();
    for ip in [allowed, other_host] {
        lab.pair
            .b
            .ip(&["addr", "add", &format!("{ip}/32"), "dev", "vb"]);
    }
    let recs = records(4);
    let _dns53 = dnsmasq(
        &lab.pair.b,
        lab.dir.path(),
        "dnsmasq-53",
        &[allowed, other_host],
        53,
        &recs,
    );
    let _dns5353 = dnsmasq(
        &lab.pair.b,
        lab.dir.path(),
        "dnsmasq-5353",
        &[allowed],
        5353,
        &recs,
    );
    for server in [
        SocketAddr::new(allowed, 53),
        SocketAddr::new(other_host, 53),
        SocketAddr::new(allowed, 5353),
    ] {
        let ran = dig(&lab.pair.b, server, &recs[3].name, None, 2, 2);
        assert_eq!(answers(&ran), [recs[3].addr.to_string()], "{server}: {ran}");
    }

    let tun = format!("sdt{NET}");
    let tun_ip = Ipv4Addr::new(10, 201, NET, 1);
    let a_svc = format!(
        "[[service]]\nid = 5\npeer = \"b\"\nmode = \"router\"\ntun = \"{tun}\"\n\
         address = \"{tun_ip}/24\"\n"
    );
    let b_svc =
        "[[service]]\nid = 5\npeer = \"a\"\nmode = \"router\"\nallow = [\"10.202.0.53:53\"]\n";
    let (a, b) = lab.start_nodes(&a_svc, b_svc);
    // The daemon lengthens the TUN's transmit queue from the kernel's 500.
    let link = lab.pair.a.ip(&["link", "show", &tun]).stdout;
    let words: Vec<&str> = link.split_whitespace().collect();
    let qlen = words.windows(2).find(|w| w[0] == "qlen").map(|w| w[1]);
    let want = sdt::daemon::tun::TX_QUEUE_LEN.to_string();
    assert_eq!(qlen, Some(want.as_str()), "{tun}: {link}");
    lab.pair
        .a
        .ip(&["route", "add", "10.202.0.0/24", "dev", &tun]);

    // Allowed: two client ports, one query each.
    let plan = DigPlan {
        ns: &lab.pair.a,
        bind_ip: tun_ip.into(),
        server: SocketAddr::new(allowed, 53),
        ports: &[41001, 41002],
        per_port: 1,
        tries: 1,
        time: 3,
    };
    let results = dig_from_ports(&plan, &recs);
    assert_all_answered(&results, &[&a, &b]);
    let (es, xs) = (a.service(5), b.service(5));
    let ctx = format!("entry: {es:#?}\nexit: {xs:#?}");
    assert_eq!(es.channels_created, 2, "{ctx}");
    assert_eq!(xs.channels_created, 2, "{ctx}");
    assert_eq!(
        (xs.from_peer_datagrams, xs.to_peer_datagrams),
        (2, 2),
        "{ctx}"
    );
    assert!(xs.drops.is_empty(), "{ctx}");

    // Not allowed: another port on the allowed host, the allowed port on
    // another host. One try each, so one datagram each.
    for (k, server) in [
        SocketAddr::new(allowed, 5353),
        SocketAddr::new(other_host, 53),
    ]
    .into_iter()
    .enumerate()
    {
        let ran = dig(&lab.pair.a, server, &recs[2].name, None, 1, 1);
        assert_eq!(ran.code(), Some(9), "{server} must time out: {ran}");
        assert!(answers(&ran).is_empty(), "{server}: {ran}");
        let counted = wait_until(Duration::from_secs(5), || {
            drops(&b.service(5).drops, "not_allowed") == k as u64 + 1
        });
        assert!(counted, "{server}: {:#?}", b.service(5));
    }
    let xs = b.service(5);
    assert_eq!(xs.drops, [("not_allowed".to_owned(), 2)], "{xs:#?}");
    assert_eq!(xs.channels_created, 2, "{xs:#?}");
    assert_eq!(xs.from_peer_datagrams, 2, "{xs:#?}");
    a.stop();
    b.stop();
}

/// A router entry needs CAP_NET_ADMIN for its TUN device. Without it,
/// whether as an unprivileged user (setpriv) or as root with the capability
/// dropped (capsh), `sdt run` exits 2 with one line that says so.
#[test]
fn router_entry_without_cap_net_admin_exits_2_with_one_line() {
    require_root();
    require_tool("ip");
    require_tool("setpriv");
    require_tool("capsh");
    let ns = Netns::new("nocap");
    let dir = support::temp_dir();
    // The unprivileged user must reach the config and own the key file.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let keys = Keys::new();
    let key_file = dir.path().join("a.key");
    write_private(&key_file, &format!("{}\n", keys.private));
    std::os::unix::fs::chown(&key_file, Some(65534), Some(65534)).unwrap();
    let peer = Keys::new();
    let config = dir.path().join("a.toml");
    std::fs::write(
        &config,
        format!(
            "private_key_file = \"a.key\"\nlisten = \"127.0.0.1:0\"\n\
             control_socket = \"{}\"\n\n[[peer]]\nname = \"b\"\npublic_key = \"{}\"\n\n\
             [[service]]\nid = 9\npeer = \"b\"\nmode = \"router\"\ntun = \"sdtcap0\"\n\
             address = \"10.201.250.1/24\"\n",
            dir.path().join("a.sock").display(),
            peer.public
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let mut as_nobody = ns.cmd("setpriv");
    as_nobody.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        SDT,
        "run",
        "-c",
        config,
    ]);
    let mut without_cap = ns.cmd("capsh");
    without_cap.args([
        "--drop=cap_net_admin",
        "--",
        "-c",
        "exec \"$0\" run -c \"$1\"",
        SDT,
        config,
    ]);
    for (how, cmd) in [("setpriv", &mut as_nobody), ("capsh", &mut without_cap)] {
        let ran = run(cmd.env_remove("RUST_LOG"), Duration::from_secs(10));
        assert_eq!(ran.code(), Some(2), "{how}: {ran}");
        let lines: Vec<&str> = ran.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{how}: one line expected: {ran}");
        assert!(lines[0].contains("CAP_NET_ADMIN"), "{how}: {ran}");
        assert!(lines[0].contains("service 9"), "{how}: {ran}");
        assert!(lines[0].contains("sdtcap0"), "{how}: {ran}");
        assert!(!ran.stderr.contains("panicked"), "{how}: {ran}");
    }
    let links = ns.ip(&["-o", "link", "show"]);
    assert!(!links.stdout.contains("sdtcap0"), "{}", links.stdout);
}

/// Writes a loopback config for a node with one forward entry service (id 7)
/// and runs `sdt run` on it: no namespace, no root.
fn bad_start(dir: &Path, link_listen: SocketAddr, key: &str, service_listen: SocketAddr) -> Ran {
    let config = dir.join("bad.toml");
    let peer = Keys::new();
    let text = format!(
        "{key}\nlisten = \"{link_listen}\"\ncontrol_socket = \"{}\"\n\n\
         [[peer]]\nname = \"y\"\npublic_key = \"{}\"\n\n\
         [[service]]\nid = 7\npeer = \"y\"\nmode = \"forward\"\nlisten = \"{service_listen}\"\n",
        dir.join("bad.sock").display(),
        peer.public
    );
    write_private(&config, &text);
    let ran = run(
        std::process::Command::new(SDT)
            .args(["run", "-c"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .env("RUST_BACKTRACE", "1"),
        Duration::from_secs(10),
    );
    assert!(ran.status.is_some(), "sdt run did not exit: {ran}");
    assert!(!ran.stderr.contains("panicked"), "{ran}");
    assert_eq!(ran.stderr.lines().count(), 1, "one line expected: {ran}");
    ran
}

#[test]
fn bad_start_service_port_in_use_exits_2_naming_service_and_address() {
    let dir = support::temp_dir();
    let held = UdpSocket::bind(local(0)).unwrap();
    let addr = held.local_addr().unwrap();
    let keys = Keys::new();
    let ran = bad_start(
        dir.path(),
        local(0),
        &format!("private_key = \"{}\"", keys.private),
        addr,
    );
    assert_eq!(ran.code(), Some(2), "{ran}");
    assert!(ran.stderr.contains("service 7"), "{ran}");
    assert!(ran.stderr.contains(&addr.to_string()), "{ran}");
}

#[test]
fn bad_start_link_port_in_use_exits_2_naming_the_address() {
    let dir = support::temp_dir();
    let held = UdpSocket::bind(local(0)).unwrap();
    let addr = held.local_addr().unwrap();
    let keys = Keys::new();
    let ran = bad_start(
        dir.path(),
        addr,
        &format!("private_key = \"{}\"", keys.private),
        local(1),
    );
    assert_eq!(ran.code(), Some(2), "{ran}");
    assert!(ran.stderr.contains("link"), "{ran}");
    assert!(ran.stderr.contains(&addr.to_string()), "{ran}");
}

#[test]
fn bad_start_missing_key_file_exits_1_naming_the_file() {
    let dir = support::temp_dir();
    let ran = bad_start(
        dir.path(),
        local(0),
        "private_key_file = \"missing.key\"",
        local(1),
    );
    assert_eq!(ran.code(), Some(1), "{ran}");
    let path = dir.path().join("missing.key");
    assert!(ran.stderr.contains(&path.display().to_string()), "{ran}");
}
