//! Endpoints by name end to end (issue 12): node A's peer endpoint is a
//! name, looked up in A's namespace (`ip netns exec` bind-mounts
//! `/etc/netns/NS/hosts` over `/etc/hosts`, and a `resolv.conf` pointing
//! at a port nobody serves makes every name not in it fail at once).
//!
//! 1. The name is not in the hosts file yet: `sdt check` passes with a
//!    warning, `sdt run` starts and keeps trying (counted failures).
//! 2. The name is added (→ B's first address): A resolves it, the link
//!    comes up and traffic flows through a forward service.
//! 3. B moves: stopped, its address replaced by a second one, started
//!    there; the hosts file says so. A's handshakes go unanswered, core
//!    reports the endpoint stale, A looks the name up again, and the link
//!    follows: traffic flows, `sdt status` shows the new address, the log
//!    says it changed.

mod support;

use sdt::loopback::Echo;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use support::net::{in_netns, Netns};
use support::node::{config_text, write_private, Lab, Node, PeerLink, LINK_PORT};
use support::{run, wait_until, SDT};

const NAME: &str = "y.sdt-e2e.test";
const ENTRY: &str = "127.0.0.1:47001";

/// `/etc/netns/NS/` with a `hosts` and a `resolv.conf`, removed on drop.
struct EtcNetns {
    dir: PathBuf,
}

impl EtcNetns {
    fn new(ns: &Netns) -> EtcNetns {
        let dir = PathBuf::from("/etc/netns").join(&ns.name);
        std::fs::create_dir_all(&dir).unwrap();
        let etc = EtcNetns { dir };
        // Nothing listens on the namespace's loopback port 53: DNS fails
        // at once, so only the hosts file answers.
        std::fs::write(etc.dir.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        etc.hosts(None);
        etc
    }

    /// Rewrites `hosts` in place (the same file: the bind mount of a
    /// running `ip netns exec` keeps pointing at it), `NAME` → `ip`.
    fn hosts(&self, ip: Option<std::net::Ipv4Addr>) {
        let mut text = "127.0.0.1 localhost\n".to_owned();
        if let Some(ip) = ip {
            text += &format!("{ip} {NAME}\n");
        }
        std::fs::write(self.dir.join("hosts"), text).unwrap();
    }
}

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `n` numbered datagrams through the entry at `ENTRY` from a client
/// in `ns`, one at a time; returns how many came back.
fn echoed(ns: &Netns, n: u32) -> u32 {
    let client = in_netns(&ns.name, || UdpSocket::bind("127.0.0.1:0").unwrap());
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut back = 0;
    let mut buf = [0u8; 64];
    for i in 0..n {
        let msg = format!("datagram {i}");
        client.send_to(msg.as_bytes(), ENTRY).unwrap();
        if let Ok(len) = client.recv(&mut buf) {
            back += u32::from(&buf[..len] == msg.as_bytes());
        }
    }
    back
}

#[test]
fn endpoint_name_is_resolved_late_and_followed_to_a_new_address() {
    let lab = Lab::new("dnsep", 72);
    let (a_ns, b_ns) = (&lab.pair.a, &lab.pair.b);
    let etc = EtcNetns::new(a_ns);
    let echo = Echo::on(in_netns(&b_ns.name, || {
        UdpSocket::bind("127.0.0.1:0").unwrap()
    }))
    .unwrap();
    let first = lab.pair.b_ip();
    let second = std::net::Ipv4Addr::new(10, 200, lab.pair.net, 3);

    let a_text = config_text(
        &lab.keys_a,
        Some(lab.a_link()),
        &lab.path("a.sock"),
        &PeerLink {
            name: "b",
            public: &lab.keys_b.public,
            endpoint: Some(lab.b_link()),
            keep_up: true,
        },
        &format!("[[service]]\nid = 1\npeer = \"b\"\nmode = \"forward\"\nlisten = \"{ENTRY}\"\n"),
    )
    .replace(
        &format!("endpoint = \"{}\"", lab.b_link()),
        &format!("endpoint = \"{NAME}:{LINK_PORT}\""),
    );
    let b_text = |listen: SocketAddr| {
        config_text(
            &lab.keys_b,
            Some(listen),
            &lab.path("b.sock"),
            &PeerLink {
                name: "a",
                public: &lab.keys_a.public,
                endpoint: None,
                keep_up: false,
            },
            &format!(
                "[[service]]\nid = 1\npeer = \"a\"\nmode = \"forward\"\ntarget = \"{}\"\n",
                echo.addr
            ),
        )
    };

    // 1. Not resolvable yet: check passes with a warning; run keeps trying.
    let a_file = lab.path("a.toml");
    write_private(&a_file, &a_text);
    let check = run(
        a_ns.cmd(SDT).args(["check", "-c"]).arg(&a_file),
        Duration::from_secs(30),
    );
    assert!(check.ok(), "{check}");
    assert!(
        check.stderr.contains("does not resolve now"),
        "a warning: {check}"
    );
    let b = Node::start("b", b_ns, lab.dir.path(), &b_text(lab.b_link()));
    let a = Node::start("a", a_ns, lab.dir.path(), &a_text);
    let tried = wait_until(Duration::from_secs(30), || {
        a.try_status()
            .is_ok_and(|s| s.peers[0].resolve_failures >= 1)
    });
    let st = a.status();
    assert!(tried, "a retries the lookup: {st:#?}\n{}", a.logs());
    let p = &st.peers[0];
    assert_eq!(p.endpoint, None, "{p:#?}");
    assert_eq!(
        p.endpoint_name.as_deref(),
        Some(&*format!("{NAME}:{LINK_PORT}"))
    );
    assert_eq!(p.resolved, None, "{p:#?}");
    assert!(a.logs().contains("does not resolve yet"), "{}", a.logs());

    // 2. The name appears: the link comes up, traffic flows.
    etc.hosts(Some(first));
    a.wait_session_up();
    assert_eq!(echoed(a_ns, 10), 10, "a: {:#?}", a.status());
    let p = a.status().peers[0].clone();
    assert_eq!(p.endpoint, Some(lab.b_link()), "{p:#?}");
    assert_eq!(p.resolved, Some(lab.b_link()), "{p:#?}");
    assert!(p.resolved_secs_ago.is_some(), "{p:#?}");
    assert_eq!(p.resolve_changes, 0, "{p:#?}");

    // 3. B moves to its second address behind the same name.
    b.stop();
    lab.pair
        .b
        .ip(&["addr", "del", &format!("{first}/24"), "dev", "vb"]);
    lab.pair
        .b
        .ip(&["addr", "add", &format!("{second}/24"), "dev", "vb"]);
    etc.hosts(Some(second));
    let moved: SocketAddr = (second, LINK_PORT).into();
    let b = Node::start("b", b_ns, lab.dir.path(), &b_text(moved));
    let since = std::time::Instant::now();
    let followed = wait_until(Duration::from_secs(90), || {
        a.try_status()
            .is_ok_and(|s| s.peers[0].endpoint == Some(moved) && s.peers[0].session_up)
    });
    assert!(
        followed,
        "a follows the name: {:#?}\n{}",
        a.status(),
        a.logs()
    );
    // A figure for the record, not an assertion (the machine is shared).
    eprintln!(
        "a followed the name to {moved} {:.1} s after b listened there",
        since.elapsed().as_secs_f64()
    );
    b.wait_session_up();
    assert_eq!(echoed(a_ns, 10), 10, "a: {:#?}", a.status());
    let p = a.status().peers[0].clone();
    assert_eq!(p.resolved, Some(moved), "{p:#?}");
    assert_eq!(p.resolve_changes, 1, "{p:#?}");
    let logs = a.logs();
    assert!(
        logs.contains(&format!(
            "endpoint {NAME}:{LINK_PORT} now resolves to {moved} (was {})",
            lab.b_link()
        )),
        "{logs}"
    );
    // The human view says it too.
    let human = run(
        std::process::Command::new(SDT)
            .args(["status", "--socket"])
            .arg(&a.socket),
        Duration::from_secs(10),
    );
    assert!(
        human.stdout.contains(&format!(
            "endpoint name: {NAME}:{LINK_PORT}, resolved to {moved}"
        )),
        "{human}"
    );
    a.stop();
    b.stop();
    drop(etc);
    assert!(!PathBuf::from("/etc/netns").join(&lab.pair.a.name).exists());
}
