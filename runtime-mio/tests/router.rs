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
//!
//! They need root and fail, not skip, without it or without a tool.
//! Each test has its own namespaces and its own 10.200.N.0/24 (N from 110).

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::customers::{answers, dig, dnsmasq, records};
use support::node::{config_text, drops, Keys, Lab, PeerLink};
use support::{run, wait_until, SDT};

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
