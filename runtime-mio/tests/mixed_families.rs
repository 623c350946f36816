//! IPv4 and IPv6 peers on one node (issue 13), with three real `sdt run`
//! nodes on loopback: the hub C listens on `[::]` (one dual-stack link
//! socket) and holds the exit of forward service 1 for any peer
//! (`peer = "*"`), and the exit of service 2 for B alone; A reaches it over
//! IPv4 (`127.0.0.1`), B over IPv6 (`[::1]`). Clients behind A and B send
//! through service 1 at once and each gets only its own echoes back; B's
//! service 2 goes to an IPv6 target. C's status shows both peers up, A at
//! its IPv4 address (as the kernel gives a dual-stack socket's IPv4
//! sources: `::ffff:127.0.0.1`), B at `[::1]`. The simulation cannot run
//! this: turmoil gives every host of a run addresses of one family.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use sdt::loopback::{free_port, Echo};
use sdt::status::Status;
use support::node::{start_local, Keys, LocalNode};
use support::SDT;

fn status(node: &LocalNode) -> Status {
    let out = support::run(
        Command::new(SDT)
            .args(["status", "--json", "--socket"])
            .arg(&node.socket),
        Duration::from_secs(20),
    );
    assert!(out.ok(), "{out}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// A free port on `[::]`, for a dual-stack listen address.
fn free_v6_port() -> u16 {
    UdpSocket::bind("[::]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client bound to `local`; each of its `count` datagrams names it and
/// comes back from `to` (an echo behind the tunnel) unchanged.
fn exchange(local: &str, to: SocketAddr, tag: &str, count: usize) -> Result<(), String> {
    let client = UdpSocket::bind(local).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 256];
    let mut got = 0;
    for i in 0..count {
        let msg = format!("{tag} {i}");
        client.send_to(msg.as_bytes(), to).unwrap();
        match client.recv_from(&mut buf) {
            Ok((n, _)) if &buf[..n] == msg.as_bytes() => got += 1,
            Ok((n, _)) => {
                return Err(format!(
                    "{tag}: got {:?}, not its own echo {msg:?}",
                    String::from_utf8_lossy(&buf[..n])
                ))
            }
            // The first datagram waits for the handshake: one retry.
            Err(_) => {
                client.send_to(msg.as_bytes(), to).unwrap();
                if let Ok((n, _)) = client.recv_from(&mut buf) {
                    if &buf[..n] == msg.as_bytes() {
                        got += 1;
                    }
                }
            }
        }
    }
    if got + 1 >= count {
        Ok(())
    } else {
        Err(format!("{tag}: {got} of {count} echoes came back"))
    }
}

#[test]
fn one_node_serves_an_ipv4_and_an_ipv6_peer_on_one_link_socket() {
    let dir = support::temp_dir();
    let echo4 = Echo::start().unwrap();
    let echo6 = Echo::on(UdpSocket::bind("[::1]:0").unwrap()).unwrap();
    let (kc, ka, kb) = (Keys::new(), Keys::new(), Keys::new());
    let hub = free_v6_port();
    let a_entry = free_port().unwrap();
    let b_entry_1 = free_port().unwrap();
    let b_entry_2 = UdpSocket::bind("[::1]:0").unwrap().local_addr().unwrap();
    let c = start_local(
        dir.path(),
        "c",
        &format!(
            "private_key = \"{}\"\nlisten = \"[::]:{hub}\"\n\n\
             [[peer]]\nname = \"a\"\npublic_key = \"{}\"\n\n\
             [[peer]]\nname = \"b\"\npublic_key = \"{}\"\n\n\
             [[service]]\nid = 1\npeer = \"*\"\nmode = \"forward\"\ntarget = \"{}\"\n\n\
             [[service]]\nid = 2\npeer = \"b\"\nmode = \"forward\"\ntarget = \"{}\"\n",
            kc.private, ka.public, kb.public, echo4.addr, echo6.addr
        ),
    );
    let a = start_local(
        dir.path(),
        "a",
        &format!(
            "private_key = \"{}\"\nlisten = \"127.0.0.1:0\"\n\n\
             [[peer]]\nname = \"c\"\npublic_key = \"{}\"\nendpoint = \"127.0.0.1:{hub}\"\n\n\
             [[service]]\nid = 1\npeer = \"c\"\nmode = \"forward\"\nlisten = \"{a_entry}\"\n",
            ka.private, kc.public
        ),
    );
    let b = start_local(
        dir.path(),
        "b",
        &format!(
            "private_key = \"{}\"\nlisten = \"[::1]:0\"\n\n\
             [[peer]]\nname = \"c\"\npublic_key = \"{}\"\nendpoint = \"[::1]:{hub}\"\n\n\
             [[service]]\nid = 1\npeer = \"c\"\nmode = \"forward\"\nlisten = \"{b_entry_1}\"\n\n\
             [[service]]\nid = 2\npeer = \"c\"\nmode = \"forward\"\nlisten = \"{b_entry_2}\"\n",
            kb.private, kc.public
        ),
    );

    // Both peers through service 1 at once, and B through service 2.
    let via_a = std::thread::spawn(move || exchange("127.0.0.1:0", a_entry, "via-a", 50));
    let via_b = std::thread::spawn(move || exchange("127.0.0.1:0", b_entry_1, "via-b", 50));
    let via_b6 = std::thread::spawn(move || exchange("[::1]:0", b_entry_2, "via-b-v6", 50));
    for (what, t) in [("a", via_a), ("b", via_b), ("b, service 2", via_b6)] {
        t.join()
            .unwrap_or_else(|_| panic!("{what}: the client panicked"))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    let s = status(&c);
    let peer = |name: &str| {
        s.peers
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no peer {name} in {s:?}"))
    };
    let (pa, pb) = (peer("a"), peer("b"));
    assert!(pa.session_up && pb.session_up, "{s:?}");
    let ea = pa
        .endpoint
        .expect("a's endpoint, learned from its handshake");
    let a_ip = match ea.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        v4 => Some(v4),
    };
    assert_eq!(
        a_ip,
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "a over IPv4: {ea}"
    );
    let eb = pb.endpoint.expect("b's endpoint");
    println!("c sees a at {ea}, b at {eb}");
    assert!(
        eb.ip().is_ipv6() && eb.ip().is_loopback(),
        "b over IPv6: {eb}"
    );
    let service = |id: u8| {
        s.services
            .iter()
            .find(|x| x.id.get() == id)
            .unwrap_or_else(|| panic!("no service {id} in {s:?}"))
    };
    // Service 1 carried both peers' datagrams, service 2 B's alone.
    let (one, two) = (service(1), service(2));
    assert!(one.channels_created >= 2, "a channel per client: {one:?}");
    assert!(one.from_peer_datagrams >= 98, "{one:?}");
    assert!(two.from_peer_datagrams >= 49, "{two:?}");
    assert_eq!(s.send_errors, 0, "{s:?}");
    for mut n in [a, b, c] {
        n.proc.terminate_ok();
    }
}
