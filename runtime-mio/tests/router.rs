//! End-to-end tests of router mode as a VPN user meets it: two `sdt run`
//! nodes in two network namespaces, the entry's TUN device set up by sdt
//! from its config (routes, MTU), and real programs (dig, ping, Python
//! sockets) as the customers.
//!
//! - set-up: `routes` are installed into the TUN device at start and gone at
//!   stop, its MTU is the largest packet one link frame carries (shown in
//!   `sdt status`), the device sends no traffic of its own (no IPv6
//!   link-local noise counted as drops), and a `tun` name taken by a veth
//!   is refused with a message that says so.
//! - ICMP echo through the socket exit: `ping` to an allowed address is
//!   answered (IPv4 and IPv6), to a disallowed one it is not and the exit
//!   counts it as not_allowed.
//! - ICMP errors: a UDP send to a closed port gets ECONNREFUSED at a Python
//!   sender (the entry forges Port Unreachable), counted target_unreachable
//!   on both nodes; a DF packet larger than one link frame carries gets
//!   Fragmentation Needed with sdt's MTU (`ping -M do`), and a retry at that
//!   size gets through; a forward service's dead target is counted.
//! - an exit whose kernel grants no ICMP echo sockets says so at start and
//!   counts each ping as socket_failed.
//!
//! They need root and fail, not skip, without it or without a tool.
//! Each test has its own namespaces and its own 10.200.N.0/24 (N from 110).

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::customers::{answers, dig, dnsmasq, records};
use support::net::Netns;
use support::node::{config_text, drops, Keys, Lab, PeerLink};
use support::{require_tool, run, wait_until, Ran, SDT};

/// The router services of a lab: the entry on A with TUN device `tun`,
/// address `10.201.N.1/24` and `extra` keys; the exit on B allowing `allow`.
fn router_services(net: u8, tun: &str, extra: &str, allow: &[&str]) -> (String, String) {
    let allow: Vec<String> = allow.iter().map(|a| format!("\"{a}\"")).collect();
    (
        format!(
            "[[service]]\nid = 5\npeer = \"b\"\nmode = \"router\"\ntun = \"{tun}\"\n\
             address = \"10.201.{net}.1/24\"\n{extra}\n"
        ),
        format!(
            "[[service]]\nid = 5\npeer = \"a\"\nmode = \"router\"\nallow = [{}]\n",
            allow.join(", ")
        ),
    )
}

/// `routes` go into the device at start, with no `ip route` by hand; the
/// MTU is sdt's (1458 for a 1500-byte IPv4 link) and shown in status; dig
/// is answered through it; the device sends nothing of its own (no
/// `not_udp` drops after it has been up a while); the route is gone at stop.
#[test]
fn routes_and_mtu_from_the_config_and_a_quiet_device() {
    const NET: u8 = 110;
    let lab = Lab::new("rt-routes", NET);
    let server: IpAddr = Ipv4Addr::new(10, 203, NET, 53).into();
    lab.pair
        .b
        .ip(&["addr", "add", &format!("{server}/32"), "dev", "vb"]);
    let recs = records(2);
    let _dns = dnsmasq(&lab.pair.b, lab.dir.path(), "dnsmasq", &[server], 53, &recs);
    let tun = format!("sdt{NET}");
    let (a_svc, b_svc) = router_services(
        NET,
        &tun,
        &format!("routes = [\"10.203.{NET}.0/24\", \"2001:db8:{NET}::/48\"]"),
        &[&format!("{server}:53")],
    );
    let (a, b) = lab.start_nodes(&a_svc, &b_svc);

    let routes4 = lab.pair.a.ip(&["-4", "route", "show", "dev", &tun]).stdout;
    assert!(routes4.contains(&format!("10.203.{NET}.0/24")), "{routes4}");
    let routes6 = lab.pair.a.ip(&["-6", "route", "show", "dev", &tun]).stdout;
    assert!(
        routes6.contains(&format!("2001:db8:{NET}::/48")),
        "{routes6}"
    );
    let link = lab.pair.a.ip(&["link", "show", "dev", &tun]).stdout;
    assert!(link.contains("mtu 1458"), "{link}");
    let status = a.service(5);
    let t = status
        .tun
        .as_ref()
        .expect("router entry shows its TUN device");
    assert_eq!(
        (t.name.as_str(), t.mtu),
        (tun.as_str(), 1458),
        "{status:#?}"
    );
    assert_eq!(t.routes.len(), 2, "{status:#?}");
    let text = run(
        support::in_ns(&lab.pair.a.name, SDT)
            .args(["status", "-c"])
            .arg(&a.config),
        Duration::from_secs(5),
    );
    assert!(
        text.stdout.contains(&format!("TUN device {tun}: MTU 1458")),
        "{text}"
    );

    let ran = dig(
        &lab.pair.a,
        SocketAddr::new(server, 53),
        &recs[1].name,
        None,
        2,
        2,
    );
    assert_eq!(answers(&ran), [recs[1].addr.to_string()], "{ran}");

    // Linux sends router solicitations up to 4 s after a device with a
    // link-local address comes up, and MLD reports at once; none of that
    // may reach the service.
    std::thread::sleep(Duration::from_secs(5));
    let es = a.service(5);
    assert!(es.drops.is_empty(), "{es:#?}");
    assert_eq!(drops(&es.drops, "not_udp"), 0, "{es:#?}");
    let addrs = lab.pair.a.ip(&["-6", "addr", "show", "dev", &tun]).stdout;
    assert!(!addrs.contains("fe80"), "{addrs}");

    a.stop();
    let gone = wait_until(Duration::from_secs(5), || {
        let r = lab.pair.a.ip(&["-4", "route", "show"]).stdout;
        !r.contains(&format!("10.203.{NET}.0/24"))
    });
    assert!(gone, "the route outlived the node");
    b.stop();
}

/// A `tun` name that another interface has (here the namespace's veth) is
/// refused before anything is set up, naming the interface and why.
#[test]
fn a_tun_name_taken_by_a_veth_is_refused_clearly() {
    const NET: u8 = 111;
    let lab = Lab::new("rt-taken", NET);
    let (a_svc, _) = router_services(NET, "va", "", &[]);
    let text = config_text(
        &lab.keys_a,
        Some(lab.a_link()),
        &lab.path("a.sock"),
        &PeerLink {
            name: "b",
            public: &Keys::new().public,
            endpoint: Some(lab.b_link()),
            keep_up: false,
        },
        &a_svc,
    );
    let path = lab.path("a.toml");
    support::node::write_private(&path, &text);
    for verb in ["check", "run"] {
        let ran = run(
            support::in_ns(&lab.pair.a.name, SDT)
                .args([verb, "-c"])
                .arg(&path)
                .env_remove("RUST_LOG"),
            Duration::from_secs(10),
        );
        assert!(!ran.ok(), "{verb}: {ran}");
        assert!(
            ran.stderr
                .contains("network interface va exists and is not a TUN device"),
            "{verb}: {ran}"
        );
        assert!(!ran.stderr.contains("os error 22"), "{verb}: {ran}");
    }
}

/// Lets every group open ICMP echo sockets in `ns` (the exit's namespace):
/// Linux allows them only to the groups in `net.ipv4.ping_group_range`.
fn allow_ping_sockets(ns: &Netns) {
    let ran = ns.run(
        "sysctl",
        &["-w", "net.ipv4.ping_group_range=0 2147483647"],
        Duration::from_secs(5),
    );
    assert!(ran.ok(), "{ran}");
}

fn ping(ns: &Netns, args: &[&str]) -> Ran {
    require_tool("ping");
    ns.run("ping", args, Duration::from_secs(15))
}

/// A lab for the ICMP tests: server addresses 10.203.N.53 and .54 and
/// 2001:db8:N::53 on B's loopback, an IPv6 source address on A, ping
/// sockets allowed on B, and a router service whose exit allows `allow`.
/// `edit` adds keys to the nodes' configs.
fn icmp_lab(
    tag: &str,
    net: u8,
    extra: &str,
    allow: &[&str],
    edit: impl Fn(String) -> String,
) -> (Lab, support::node::Node, support::node::Node) {
    icmp_lab_with(tag, net, extra, allow, true, edit)
}

/// [`icmp_lab`], saying whether B allows ping sockets.
fn icmp_lab_with(
    tag: &str,
    net: u8,
    extra: &str,
    allow: &[&str],
    ping_sockets: bool,
    edit: impl Fn(String) -> String,
) -> (Lab, support::node::Node, support::node::Node) {
    let lab = Lab::new(tag, net);
    for a in [format!("10.203.{net}.53/32"), format!("10.203.{net}.54/32")] {
        lab.pair.b.ip(&["addr", "add", &a, "dev", "lo"]);
    }
    lab.pair.b.ip(&[
        "addr",
        "add",
        &format!("2001:db8:{net}::53/128"),
        "dev",
        "lo",
    ]);
    lab.pair.a.ip(&[
        "addr",
        "add",
        &format!("2001:db8:f0:{net}::1/64"),
        "dev",
        "va",
        "nodad",
    ]);
    if ping_sockets {
        allow_ping_sockets(&lab.pair.b);
    } else {
        let ran = lab.pair.b.run(
            "sysctl",
            &["-w", "net.ipv4.ping_group_range=1 0"],
            Duration::from_secs(5),
        );
        assert!(ran.ok(), "{ran}");
    }
    let tun = format!("sdt{net}");
    let (a_svc, b_svc) = router_services(
        net,
        &tun,
        &format!("routes = [\"10.203.{net}.0/24\", \"2001:db8:{net}::/48\"]\n{extra}"),
        allow,
    );
    let (a, b) = lab.start_nodes_edited(lab.b_link(), true, &a_svc, &b_svc, edit);
    (lab, a, b)
}

/// ping through the socket exit: answered where an `icmp://` rule allows
/// it, IPv4 and IPv6; not answered (and counted not_allowed) elsewhere,
/// including a host that UDP rules allow.
#[test]
fn ping_through_the_socket_exit_inside_the_allow_list() {
    const NET: u8 = 112;
    let (lab, a, b) = icmp_lab(
        "rt-ping",
        NET,
        "",
        &[
            &format!("icmp://10.203.{NET}.53"),
            &format!("icmp://[2001:db8:{NET}::]/48"),
            &format!("10.203.{NET}.54:53"),
        ],
        |t| t,
    );
    let ran = ping(
        &lab.pair.a,
        &[
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &format!("10.203.{NET}.53"),
        ],
    );
    assert!(
        ran.ok() && ran.stdout.contains("3 received"),
        "{ran}\n{}",
        b.logs()
    );
    let ran = ping(
        &lab.pair.a,
        &[
            "-6",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            &format!("2001:db8:{NET}::53"),
        ],
    );
    assert!(ran.ok() && ran.stdout.contains("2 received"), "{ran}");
    // A big ping: 1,400 bytes of data cross in one frame and come back whole.
    let ran = ping(
        &lab.pair.a,
        &[
            "-c",
            "1",
            "-s",
            "1400",
            "-W",
            "2",
            &format!("10.203.{NET}.53"),
        ],
    );
    assert!(ran.ok() && ran.stdout.contains("1408 bytes from"), "{ran}");
    let xs = b.service(5);
    assert!(xs.drops.is_empty(), "{xs:#?}");
    assert_eq!(
        xs.channels_created, 3,
        "one echo flow per ping run: {xs:#?}"
    );

    // 10.203.N.54 answers pings in B (checked there), but only UDP to it
    // is allowed.
    let direct = ping(
        &lab.pair.b,
        &["-c", "1", "-W", "1", &format!("10.203.{NET}.54")],
    );
    assert!(direct.ok(), "{direct}");
    let ran = ping(
        &lab.pair.a,
        &[
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "1",
            &format!("10.203.{NET}.54"),
        ],
    );
    assert!(!ran.ok() && ran.stdout.contains("0 received"), "{ran}");
    let counted = wait_until(Duration::from_secs(5), || {
        drops(&b.service(5).drops, "not_allowed") == 2
    });
    assert!(counted, "{:#?}", b.service(5));
    assert_eq!(b.service(5).channels_created, 3);
    a.stop();
    b.stop();
}

/// A UDP datagram to a closed port behind the exit: the exit's socket gets
/// ECONNREFUSED, counts target_unreachable and tells the entry, which
/// forges the Port Unreachable: the Python sender's connected socket sees
/// ECONNREFUSED, as it would without the tunnel.
#[test]
fn udp_to_a_closed_port_is_refused_at_the_sender() {
    const NET: u8 = 113;
    let (lab, a, b) = icmp_lab(
        "rt-refused",
        NET,
        "",
        &[&format!("10.203.{NET}.53:9000-9100")],
        |t| t,
    );
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.connect(('10.203.{NET}.53', 9001))\n\
         s.settimeout(3)\n\
         s.send(b'anyone?')\n\
         try:\n    s.recv(100)\n    print('answered')\n\
         except ConnectionRefusedError:\n    print('refused')\n\
         except socket.timeout:\n    print('timeout')\n"
    );
    let ran = lab
        .pair
        .a
        .run("python3", &["-c", &script], Duration::from_secs(10));
    assert_eq!(ran.stdout.trim(), "refused", "{ran}\n{}", b.logs());
    let (es, xs) = (a.service(5), b.service(5));
    assert_eq!(xs.target_unreachable, 1, "{xs:#?}");
    assert_eq!(es.target_unreachable, 1, "{es:#?}");
    assert_eq!(es.icmp_errors_sent, 1, "{es:#?}");
    a.stop();
    b.stop();
}

/// The link to B has `mtu = 1400`, so one frame carries IPv4 packets of at
/// most 1400 - 20 - 8 - 29 - 11 + 26 = 1358 bytes; the TUN device is set
/// larger (`tun_mtu = 1500`), as an operator might. A 1,500-byte ping with
/// DF set gets Fragmentation Needed with MTU 1358 from sdt, counted as
/// too_big and as an ICMP error sent; a ping of 1358 bytes then gets through.
#[test]
fn too_big_for_a_frame_gets_fragmentation_needed_with_sdts_mtu() {
    const NET: u8 = 114;
    let (lab, a, b) = icmp_lab(
        "rt-pmtu",
        NET,
        "tun_mtu = 1500",
        &[&format!("icmp://10.203.{NET}.53")],
        |t| t.replace("keep_up = true", "keep_up = true\nmtu = 1400"),
    );
    let host = format!("10.203.{NET}.53");
    let ran = ping(
        &lab.pair.a,
        &["-c", "1", "-M", "do", "-s", "1472", "-W", "2", &host],
    );
    assert!(ran.stdout.contains("mtu = 1358"), "{ran}");
    let es = a.service(5);
    assert_eq!(drops(&es.drops, "too_big"), 1, "{es:#?}");
    assert_eq!(es.icmp_errors_sent, 1, "{es:#?}");
    // The kernel learnt the path MTU: a ping that fills it gets through.
    let ran = ping(
        &lab.pair.a,
        &["-c", "1", "-M", "do", "-s", "1330", "-W", "2", &host],
    );
    assert!(ran.ok() && ran.stdout.contains("1 received"), "{ran}");
    a.stop();
    b.stop();
}

/// A forward service whose target has nothing listening: the exit counts
/// every refused datagram as target_unreachable and the entry hears of it.
#[test]
fn a_dead_forward_target_is_counted() {
    const NET: u8 = 115;
    let lab = Lab::new("rt-dead", NET);
    let (a_svc, b_svc) = support::node::forward_services("127.0.0.1:5300", "127.0.0.1:5399");
    let (a, b) = lab.start_nodes(&a_svc, &b_svc);
    let script = "import socket, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for i in range(3):\n    s.sendto(b'log line', ('127.0.0.1', 5300))\n    time.sleep(0.3)\n";
    let ran = lab
        .pair
        .a
        .run("python3", &["-c", script], Duration::from_secs(10));
    assert!(ran.ok(), "{ran}");
    let counted = wait_until(Duration::from_secs(5), || {
        b.service(1).target_unreachable == 3 && a.service(1).target_unreachable == 3
    });
    assert!(
        counted,
        "exit: {:#?}\nentry: {:#?}",
        b.service(1),
        a.service(1)
    );
    a.stop();
    b.stop();
}

/// Where the kernel grants ICMP echo sockets to no group
/// (`net.ipv4.ping_group_range = 1 0`, some distributions' default), the
/// exit says so at start, and each echo flow is dropped as socket_failed.
#[test]
fn an_exit_without_ping_sockets_says_so_and_counts_the_pings() {
    const NET: u8 = 116;
    let (lab, a, b) = icmp_lab_with(
        "rt-noping",
        NET,
        "",
        &[&format!("icmp://10.203.{NET}.53")],
        false,
        |t| t,
    );
    assert!(b.logs().contains("ping_group_range"), "{}", b.logs());
    let ran = ping(
        &lab.pair.a,
        &["-c", "1", "-W", "1", &format!("10.203.{NET}.53")],
    );
    assert!(!ran.ok(), "{ran}");
    let counted = wait_until(Duration::from_secs(5), || {
        drops(&b.service(5).drops, "socket_failed") == 1
    });
    assert!(counted, "{:#?}", b.service(5));
    a.stop();
    b.stop();
}
