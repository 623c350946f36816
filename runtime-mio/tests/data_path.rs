//! The daemon's socket layer seen from outside: `sdt status --json` names
//! the batching features in use and the link socket's buffers, and counts
//! the datagrams the kernel dropped because the node did not read them in
//! time, so a user can tell loss in the kernel from loss in the tunnel.
//!
//! A push service from A to B. Node A is stopped (SIGSTOP) while a client
//! sends far more datagrams than its service socket's receive buffer holds;
//! after SIGCONT every datagram is accounted for exactly: carried to the
//! peer, or counted as a kernel drop on the service socket.
//!
//! Needs root (namespaces); fails, not skips, without it.

mod support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use sdt_core::node::ServiceId;
use support::net::in_netns;
use support::node::Lab;
use support::wait_until;

const SERVICE: u8 = 2;
const LISTEN: u16 = 6514;
const TARGET: u16 = 6515;
/// Far more than a 4 MiB receive buffer holds (about 3,600 of them).
const SENT: u64 = 20_000;

fn kernel_drops_of_service(s: &sdt::status::Status) -> u64 {
    s.data_path
        .kernel_drops_services
        .iter()
        .filter(|(id, _)| *id == ServiceId::new(SERVICE))
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn status_shows_batching_and_counts_kernel_drops_exactly() {
    let lab = Lab::new("datapath", 60);
    let a_services = format!(
        "[[service]]\nid = {SERVICE}\npeer = \"b\"\nmode = \"push\"\nlisten = \"127.0.0.1:{LISTEN}\"\n"
    );
    let b_services = format!(
        "[[service]]\nid = {SERVICE}\npeer = \"a\"\nmode = \"push\"\ntarget = \"127.0.0.1:{TARGET}\"\n"
    );
    let (a, b) = lab.start_nodes(&a_services, &b_services);

    let d = a.status().data_path;
    assert!(
        d.offloads.contains("recvmmsg") && d.offloads.contains("sendmmsg"),
        "{d:#?}"
    );
    assert!(d.link_recv_buffer > 0 && d.link_send_buffer > 0, "{d:#?}");
    assert!(d.link_gro, "a push entry reads its link with GRO: {d:#?}");
    assert_eq!(
        d.kernel_drops_link + kernel_drops_of_service(&a.status()),
        0
    );

    // SAFETY: kill(2) on the node's own child process.
    let signal = |sig| assert_eq!(unsafe { libc::kill(a.pid(), sig) }, 0);
    signal(libc::SIGSTOP);
    let to: SocketAddr = (Ipv4Addr::LOCALHOST, LISTEN).into();
    let ns = lab.pair.a.name.clone();
    in_netns(&ns, move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let payload = [0x5a; 1000];
        for _ in 0..SENT {
            // A full receive queue drops on loopback; the send succeeds.
            s.send_to(&payload, to).unwrap();
        }
    });
    signal(libc::SIGCONT);

    // The kernel tells the drop count with the next datagram it queues:
    // once the backlog is read, one more.
    let carried = || a.service(SERVICE).to_peer_datagrams;
    let drained = wait_until(Duration::from_secs(20), || {
        let before = carried();
        std::thread::sleep(Duration::from_millis(200));
        carried() == before && before > 0
    });
    assert!(drained, "the backlog was not read: {:#?}", a.status());
    in_netns(&ns, move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(b"last", to).unwrap();
    });
    let all = wait_until(Duration::from_secs(10), || {
        let s = a.status();
        s.service(ServiceId::new(SERVICE))
            .map(|x| x.to_peer_datagrams)
            .unwrap_or(0)
            + kernel_drops_of_service(&s)
            == SENT + 1
    });
    let s = a.status();
    let kernel = kernel_drops_of_service(&s);
    let svc = s.service(ServiceId::new(SERVICE)).unwrap();
    assert!(
        all,
        "carried {} + kernel drops {kernel} != {}: {s:#?}",
        svc.to_peer_datagrams,
        SENT + 1
    );
    assert!(kernel > 0, "nothing dropped: {s:#?}");
    assert!(svc.drops.is_empty(), "{s:#?}");
    println!(
        "sent {} while stopped: carried {}, kernel drops {kernel}",
        SENT + 1,
        svc.to_peer_datagrams
    );
    a.stop();
    b.stop();
}
