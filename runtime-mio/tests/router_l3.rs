//! End to end through an L3 exit (`exit = "tun"`): two entries, each a
//! real `sdt run` in its own network namespace, share one exit in a third;
//! a server in a fourth is reached through the exit's kernel, which
//! routes (ip_forward = 1, no NAT: the server's route to the entries'
//! tunnel addresses goes via the exit).
//!
//! ```text
//! e1 (sdt, tun 10.208.N.2) ──veth 10.200.N──┐
//!                                            x (sdt, tun sdtx 10.208.N.1) ──veth 10.207.N── s (http.server, iperf3)
//! e2 (sdt, tun 10.208.N.3) ──veth 10.206.N──┘
//! ```
//!
//! Real programs: curl fetches a page from Python's http.server from each
//! entry, iperf3 runs TCP from one, ping gets its echo replies; 4 MiB go
//! each way between one entry and the server (curl down, socat up) and
//! arrive byte for byte, through TUN devices with offloads: super-packets
//! split where sdt reads and coalesced where it writes, both counted; the exit
//! drops TCP to a port its allow-list does not name (not_allowed) and a
//! packet forged by one entry with the other's source (source_not_allowed);
//! the counters show each entry received what the exit sent it and nothing
//! else. No assertion is timed.
//!
//! They need root and fail, not skip, without it or without a tool.

mod support;

use std::fmt::Write as _;
use std::time::Duration;

use support::net::{Netns, Pair};
use support::node::{drops, Keys, Node, LINK_PORT};
use support::{require_root, require_tool, temp_dir, wait_until, Proc};

const NET: u8 = 117;

/// The page the server serves.
const PAGE: &str = "hello through the L3 exit\n";

fn allow() -> String {
    format!(
        "allow = [\"tcp://10.207.{NET}.0/24:8000\", \"tcp://10.207.{NET}.0/24:5201\", \
         \"tcp://10.207.{NET}.0/24:8002\", \"icmp://10.207.{NET}.0/24\"]"
    )
}

/// An entry's configuration: its link on `link`, the exit at `exit`, and
/// router service `id` with TUN address 10.208.N.`host`.
fn entry_text(
    keys: &Keys,
    exit: &Keys,
    sock: &str,
    link: &str,
    to: &str,
    id: u8,
    host: u8,
) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "private_key = \"{}\"", keys.private);
    let _ = writeln!(t, "listen = \"{link}:{LINK_PORT}\"");
    let _ = writeln!(t, "control_socket = \"{sock}\"");
    let _ = writeln!(
        t,
        "\n[[peer]]\nname = \"x\"\npublic_key = \"{}\"\nendpoint = \"{to}:{LINK_PORT}\"\nkeep_up = true",
        exit.public
    );
    let _ = writeln!(
        t,
        "\n[[service]]\nid = {id}\npeer = \"x\"\nmode = \"router\"\nexit = \"tun\"\n\
         tun = \"sdte{id}\"\naddress = \"10.208.{NET}.{host}/24\"\nroutes = [\"10.207.{NET}.0/24\"]"
    );
    t
}

/// The exit's configuration: both entries as peers, an L3 exit service for
/// each, sharing TUN device sdtx.
fn exit_text(keys: &Keys, e1: &Keys, e2: &Keys, sock: &str) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "private_key = \"{}\"", keys.private);
    let _ = writeln!(t, "listen = \"0.0.0.0:{LINK_PORT}\"");
    let _ = writeln!(t, "control_socket = \"{sock}\"");
    for (name, k) in [("e1", e1), ("e2", e2)] {
        let _ = writeln!(
            t,
            "\n[[peer]]\nname = \"{name}\"\npublic_key = \"{}\"",
            k.public
        );
    }
    let _ = writeln!(
        t,
        "\n[[service]]\nid = 5\npeer = \"e1\"\nmode = \"router\"\nexit = \"tun\"\ntun = \"sdtx\"\n\
         address = \"10.208.{NET}.1/24\"\n{}\npeer_addresses = [\"10.208.{NET}.2/32\"]",
        allow()
    );
    let _ = writeln!(
        t,
        "\n[[service]]\nid = 6\npeer = \"e2\"\nmode = \"router\"\nexit = \"tun\"\ntun = \"sdtx\"\n\
         {}\npeer_addresses = [\"10.208.{NET}.3/32\"]",
        allow()
    );
    t
}

/// A veth pair from `a` (`a_dev`, `a_ip`/24) to `b` (`b_dev`, `b_ip`/24).
fn veth(a: &Netns, a_dev: &str, a_ip: &str, b: &Netns, b_dev: &str, b_ip: &str) {
    a.ip(&[
        "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b.name,
    ]);
    a.ip(&["addr", "add", &format!("{a_ip}/24"), "dev", a_dev]);
    b.ip(&["addr", "add", &format!("{b_ip}/24"), "dev", b_dev]);
    a.ip(&["link", "set", a_dev, "up"]);
    b.ip(&["link", "set", b_dev, "up"]);
}

fn curl(ns: &Netns, url: &str) -> support::Ran {
    ns.run(
        "curl",
        &["-sS", "--max-time", "20", url],
        Duration::from_secs(30),
    )
}

/// One raw IPv4 ICMP echo request from `src` (any address: IP_HDRINCL) to
/// `dst`, sent with Python in `ns`: the kernel routes it by destination.
fn send_spoofed_echo(ns: &Netns, src: &str, dst: &str) -> support::Ran {
    let script = format!(
        r#"
import socket, struct
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
icmp = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + b"spoof"
icmp = icmp[:2] + struct.pack("!H", csum(icmp + b"\0")) + icmp[4:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0,
                 socket.inet_aton("{src}"), socket.inet_aton("{dst}"))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(ip + icmp, ("{dst}", 0))
"#
    );
    ns.run("python3", &["-c", &script], Duration::from_secs(10))
}

/// `n` bytes no compressor or pattern hides (xorshift64).
fn bytes_of(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The bytes an iperf3 JSON report says the receiver got.
fn iperf_received(json: &str) -> Option<(u64, f64)> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let sum = &v["end"]["sum_received"];
    Some((sum["bytes"].as_u64()?, sum["bits_per_second"].as_f64()?))
}

#[test]
fn two_entries_share_one_l3_exit_for_tcp_and_ping() {
    require_root();
    for tool in [
        "ip", "ss", "curl", "iperf3", "ping", "python3", "sysctl", "socat",
    ] {
        require_tool(tool);
    }
    let dir = temp_dir();
    // e1 = pair.a, x = pair.b.
    let pair = Pair::new("l3", NET);
    let (e1, x) = (&pair.a, &pair.b);
    let e2 = Netns::new("l3-e2");
    let s = Netns::new("l3-s");
    veth(
        &e2,
        "ve2",
        &format!("10.206.{NET}.1"),
        x,
        "vx2",
        &format!("10.206.{NET}.2"),
    );
    veth(
        x,
        "vxs",
        &format!("10.207.{NET}.1"),
        &s,
        "vs",
        &format!("10.207.{NET}.2"),
    );
    // The server answers the tunnel addresses through the exit, which routes.
    s.ip(&[
        "route",
        "add",
        &format!("10.208.{NET}.0/24"),
        "via",
        &format!("10.207.{NET}.1"),
    ]);
    let fwd = x.run(
        "sysctl",
        &["-w", "net.ipv4.ip_forward=1"],
        Duration::from_secs(5),
    );
    assert!(fwd.ok(), "{fwd}");

    let server = format!("10.207.{NET}.2");
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("page.txt"), PAGE).unwrap();
    let blob = bytes_of(4 << 20);
    std::fs::write(www.join("blob"), &blob).unwrap();
    let mut http_cmd = s.cmd("python3");
    http_cmd
        .args([
            "-m",
            "http.server",
            "8000",
            "--bind",
            &server,
            "--directory",
        ])
        .arg(&www);
    let _http = Proc::spawn("http", dir.path(), &mut http_cmd, false);
    let mut iperf_cmd = s.cmd("iperf3");
    iperf_cmd.args(["-s", "-B", &server, "-p", "5201"]);
    let _iperf = Proc::spawn("iperf3-server", dir.path(), &mut iperf_cmd, false);
    let listening = wait_until(Duration::from_secs(10), || {
        let out = s.run("ss", &["-Htln"], Duration::from_secs(5)).stdout;
        out.contains(&format!("{server}:8000")) && out.contains(&format!("{server}:5201"))
    });
    assert!(listening, "http.server and iperf3 did not listen");

    let (kx, k1, k2) = (Keys::new(), Keys::new(), Keys::new());
    let sock = |n: &str| dir.path().join(format!("{n}.sock")).display().to_string();
    let xn = Node::start("x", x, dir.path(), &exit_text(&kx, &k1, &k2, &sock("x")));
    let n1 = Node::start(
        "e1",
        e1,
        dir.path(),
        &entry_text(
            &k1,
            &kx,
            &sock("e1"),
            &format!("10.200.{NET}.1"),
            &format!("10.200.{NET}.2"),
            5,
            2,
        ),
    );
    let n2 = Node::start(
        "e2",
        &e2,
        dir.path(),
        &entry_text(
            &k2,
            &kx,
            &sock("e2"),
            &format!("10.206.{NET}.1"),
            &format!("10.206.{NET}.2"),
            6,
            3,
        ),
    );
    n1.wait_session_up();
    n2.wait_session_up();
    let xs = xn.service(5);
    assert_eq!(xs.exit.as_deref(), Some("tun"), "{xs:#?}");
    assert_eq!(xs.peer_addresses, [format!("10.208.{NET}.2/32")], "{xs:#?}");
    let shared = xn.service(6).tun.expect("the shared device in status");
    assert_eq!(shared.name, "sdtx");

    // curl from each entry: a real HTTP exchange over TCP.
    for ns in [e1, &e2] {
        let got = curl(ns, &format!("http://{server}:8000/page.txt"));
        assert!(got.ok(), "curl from {}: {got}\n{}", ns.name, xn.logs());
        assert_eq!(got.stdout, PAGE);
    }

    // ping from each entry.
    for ns in [e1, &e2] {
        let ping = ns.run(
            "ping",
            &["-c", "3", "-i", "0.2", "-W", "5", &server],
            Duration::from_secs(30),
        );
        assert!(ping.ok(), "ping from {}: {ping}", ns.name);
        assert!(ping.stdout.contains("3 received"), "{ping}");
    }

    // An iperf3 TCP run of a fixed size, the server sending to e1 (-R):
    // it completes and e1 received every byte.
    let bytes = 8u64 << 20;
    let run = e1.run(
        "iperf3",
        &["-c", &server, "-p", "5201", "-n", "8M", "-R", "-J"],
        Duration::from_secs(60),
    );
    assert!(
        run.ok(),
        "iperf3: {run}\nexit: {:#?}\nentry: {:#?}\nexit node drops {:?}\n{}",
        xn.service(5),
        n1.service(5),
        xn.status().node_drops,
        x.ip(&["-s", "link", "show", "sdtx"]).stdout,
    );
    let (received, bps) = iperf_received(&run.stdout).expect("an iperf3 JSON report");
    assert!(
        received >= bytes,
        "iperf3 received {received} of {bytes}: {run}"
    );
    println!(
        "iperf3 TCP through the L3 exit (debug build): {:.0} Mbit/s",
        bps / 1e6
    );

    // 4 MiB down (curl) and up (socat), byte for byte: TCP's checksums do
    // not tell a segment split or coalesced wrong (the kernel trusts the
    // offloaded ones), the bytes do.
    let down = dir.path().join("down");
    let got = e1.run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "30",
            "-o",
            &down.display().to_string(),
            &format!("http://{server}:8000/blob"),
        ],
        Duration::from_secs(40),
    );
    assert!(got.ok(), "curl the blob: {got}");
    assert!(
        std::fs::read(&down).unwrap() == blob,
        "the blob changed on the way down"
    );
    let up = dir.path().join("up");
    let mut sink_cmd = s.cmd("socat");
    sink_cmd.args([
        "-u",
        &format!("TCP-LISTEN:8002,bind={server}"),
        &format!("CREATE:{}", up.display()),
    ]);
    let mut sink = Proc::spawn("socat-sink", dir.path(), &mut sink_cmd, false);
    let listening = wait_until(Duration::from_secs(10), || {
        let out = s.run("ss", &["-Htln"], Duration::from_secs(5)).stdout;
        out.contains(&format!("{server}:8002"))
    });
    assert!(listening, "socat did not listen");
    let sent = e1.run(
        "socat",
        &[
            "-u",
            &format!("OPEN:{}", www.join("blob").display()),
            &format!("TCP:{server}:8002"),
        ],
        Duration::from_secs(40),
    );
    assert!(sent.ok(), "socat the blob up: {sent}");
    assert!(
        wait_until(Duration::from_secs(20), || sink.exited().is_some()),
        "socat sink still running"
    );
    assert!(
        std::fs::read(&up).unwrap() == blob,
        "the blob changed on the way up"
    );
    // Both directions went through the offloads: each end read
    // super-packets from its device and wrote coalesced ones to it.
    for (who, t) in [("entry", n1.service(5).tun), ("exit", xn.service(5).tun)] {
        let t = t.expect("a TUN device");
        assert!(t.offload.starts_with("csum+tso4+tso6"), "{who}: {t:#?}");
        assert!(t.super_packets > 0 && t.coalesced > 0, "{who}: {t:#?}");
        assert!(t.offload_drops.is_empty(), "{who}: {t:#?}");
    }

    // The exit sends nowhere its allow-list forbids: TCP port 8001.
    let before = drops(&xn.service(5).drops, "not_allowed");
    let refused = e1.run(
        "curl",
        &["-sS", "--max-time", "2", &format!("http://{server}:8001/")],
        Duration::from_secs(10),
    );
    assert!(!refused.ok(), "{refused}");
    assert!(drops(&xn.service(5).drops, "not_allowed") > before);

    // e2 cannot send as e1: the exit checks the source against e2's
    // peer_addresses and counts the forged packet.
    let spoof = send_spoofed_echo(&e2, &format!("10.208.{NET}.2"), &server);
    assert!(spoof.ok(), "{spoof}");
    let counted = wait_until(Duration::from_secs(10), || {
        drops(&xn.service(6).drops, "source_not_allowed") == 1
    });
    assert!(counted, "{:#?}", xn.service(6));
    assert_eq!(drops(&xn.service(5).drops, "source_not_allowed"), 0);

    // Each entry received only what the exit sent it, and the server's
    // 8 MiB went to e1 alone: e2 got its page and pings, a few KiB. No
    // packet from the exit's TUN was for an address no peer has.
    let (x5, x6, s1, s2) = (xn.service(5), xn.service(6), n1.service(5), n2.service(6));
    assert!(x5.to_peer_datagrams > 0 && x6.to_peer_datagrams > 0);
    assert!(
        s1.from_peer_datagrams <= x5.to_peer_datagrams,
        "{s1:#?}\n{x5:#?}"
    );
    assert!(
        s2.from_peer_datagrams <= x6.to_peer_datagrams,
        "{s2:#?}\n{x6:#?}"
    );
    assert!(s1.from_peer_bytes >= bytes, "{s1:#?}");
    assert!(x6.to_peer_bytes < 64 << 10, "{x6:#?}");
    assert!(s2.from_peer_bytes < 64 << 10, "{s2:#?}");
    assert!(s1.drops.is_empty(), "{s1:#?}");
    assert!(s2.drops.is_empty(), "{s2:#?}");
    let status = xn.status();
    assert_eq!(
        drops(&status.node_drops, "no_peer_for_address"),
        0,
        "{status:#?}"
    );

    n1.stop();
    n2.stop();
    xn.stop();
}
