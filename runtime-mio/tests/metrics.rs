//! Prometheus metrics end to end: two `sdt run` nodes in two namespaces
//! over a veth (test net 70), a forward service from A (entry) to B (exit),
//! real UDP sockets as client and target, and `GET /metrics` scraped from
//! both nodes' `metrics_listen`.
//!
//! What this pins: the scraped values match the traffic sent (N datagrams
//! each way, their bytes, one channel, one `too_big` drop) and `sdt status
//! --json`; the text
//! passes `promtool check metrics`; scrapers that connect and send nothing
//! hold every slot without stalling forwarding, one more is answered 503,
//! and the silent ones are closed at their read deadline and counted; a `metrics_listen` that cannot be bound stops `sdt run` with one
//! line and exit 2.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use sdt::daemon::metrics::{CONTENT_TYPE, MAX_CLIENTS};
use support::net::{in_netns, Netns};
use support::node::{drops, forward_services, write_private, Keys, Lab, Node};
use support::{require_tool, run_input, temp_dir, wait_until, SDT};

const LISTEN: &str = "127.0.0.1:5700";
const TARGET: &str = "127.0.0.1:5701";
const METRICS: &str = "127.0.0.1:9920";
/// Datagrams sent each way.
const N: usize = 40;
/// Their payload size.
const LEN: usize = 300;

/// Starts B (the exit) then A (the entry), each serving metrics on
/// [`METRICS`] in its namespace, and waits for the session.
fn start(lab: &Lab) -> (Node, Node) {
    let (a_services, b_services) = forward_services(LISTEN, TARGET);
    lab.start_nodes_edited(lab.b_link(), true, &a_services, &b_services, |text| {
        format!("metrics_listen = \"{METRICS}\"\n{text}")
    })
}

fn udp_in(ns: &str, addr: &'static str) -> UdpSocket {
    in_netns(ns, move || {
        let s = UdpSocket::bind(addr).expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    })
}

/// A TCP connection to [`METRICS`] made inside `ns`.
fn connect_in(ns: &Netns) -> TcpStream {
    in_netns(&ns.name, || {
        let s = TcpStream::connect(METRICS).expect("connect to metrics_listen");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    })
}

/// One HTTP answer: status line, headers, body.
struct Answer {
    status: String,
    headers: String,
    body: String,
}

/// Sends `request` from `ns` and reads the answer. A refused client may be
/// closed before its request is read: writing it may then fail, and the
/// answer be followed by a reset; the answer is what counts.
fn get(ns: &Netns, request: &str) -> Answer {
    let mut s = connect_in(ns);
    let _ = s.write_all(request.as_bytes());
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !raw.is_empty() => {}
        Err(e) => panic!("reading the answer: {e}"),
    }
    let text = String::from_utf8(raw).expect("a UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    Answer {
        status: status.to_owned(),
        headers: headers.to_owned(),
        body: body.to_owned(),
    }
}

/// Scrapes `GET /metrics` in `ns`: the body of a 200 answer.
fn scrape(ns: &Netns) -> String {
    let a = get(ns, "GET /metrics HTTP/1.1\r\nHost: sdt\r\n\r\n");
    assert_eq!(a.status, "HTTP/1.1 200 OK", "{}\n{}", a.headers, a.body);
    assert!(
        a.headers.contains(&format!("Content-Type: {CONTENT_TYPE}")),
        "{}",
        a.headers
    );
    a.body
}

/// Each sample of a scrape by its whole series (`name{labels}`).
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

#[track_caller]
fn sample(m: &HashMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no {series} in the scrape: {m:#?}"))
}

/// `promtool check metrics` on `text`: its lint finds nothing.
fn promtool(text: &str) {
    let ran = run_input(
        Command::new("promtool").args(["check", "metrics"]),
        Some(text.as_bytes()),
        Duration::from_secs(20),
    );
    assert!(
        ran.ok() && ran.stdout.trim().is_empty() && ran.stderr.trim().is_empty(),
        "promtool check metrics: {ran}\n{text}"
    );
}

/// Client to target and back, `count` datagrams of [`LEN`] bytes each way,
/// one at a time; returns how many round trips completed.
fn round_trips(client: &UdpSocket, target: &UdpSocket, count: usize, seed: u8) -> usize {
    let listen: SocketAddr = LISTEN.parse().unwrap();
    let mut buf = vec![0u8; 2048];
    let mut done = 0;
    for i in 0..count {
        let payload = vec![seed ^ i as u8; LEN];
        client.send_to(&payload, listen).unwrap();
        let Ok((n, from)) = target.recv_from(&mut buf) else {
            continue;
        };
        assert_eq!(&buf[..n], &payload[..]);
        target.send_to(&buf[..n], from).unwrap();
        if matches!(client.recv_from(&mut buf), Ok((n, _)) if n == LEN) {
            done += 1;
        }
    }
    done
}

#[test]
fn scraped_metrics_match_the_traffic_and_pass_promtool() {
    require_tool("promtool");
    let lab = Lab::new("metrics", 70);
    let (a, b) = start(&lab);
    let client = udp_in(&lab.pair.a.name, "127.0.0.1:0");
    let target = udp_in(&lab.pair.b.name, TARGET);
    assert_eq!(
        round_trips(&client, &target, N, 1),
        N,
        "loss on a clean veth"
    );
    // One datagram a byte over the limit (1438 B over an IPv4 link with the
    // default mtu): dropped at A as `too_big`.
    client
        .send_to(&[0u8; 1439], LISTEN.parse::<SocketAddr>().unwrap())
        .unwrap();
    let counted = wait_until(Duration::from_secs(10), || {
        drops(&a.service(1).drops, "too_big") == 1
    });
    assert!(counted, "too_big not counted: {:?}", a.service(1));

    let before_a = a.status();
    let scraped_a = scrape(&lab.pair.a);
    let after_a = a.status();
    let scraped_b = scrape(&lab.pair.b);
    promtool(&scraped_a);
    promtool(&scraped_b);
    let (ma, mb) = (samples(&scraped_a), samples(&scraped_b));

    let bytes = (N * LEN) as f64;
    let entry = "service=\"1\",mode=\"forward\",half=\"entry\"";
    let exit = "service=\"1\",mode=\"forward\",half=\"exit\"";
    for (m, labels) in [(&ma, entry), (&mb, exit)] {
        let s = |name: &str| sample(m, &format!("{name}{{{labels}}}"));
        let (to, from) = if labels == entry {
            ("to_peer", "from_peer")
        } else {
            ("from_peer", "to_peer")
        };
        assert_eq!(s(&format!("sdt_service_{to}_datagrams_total")), N as f64);
        assert_eq!(s(&format!("sdt_service_{to}_bytes_total")), bytes);
        assert_eq!(s(&format!("sdt_service_{from}_datagrams_total")), N as f64);
        assert_eq!(s(&format!("sdt_service_{from}_bytes_total")), bytes);
        assert_eq!(s("sdt_service_channels_open"), 1.0);
        assert_eq!(s("sdt_service_channels_created_total"), 1.0);
        assert_eq!(s("sdt_service_channels_expired_total"), 0.0);
        assert_eq!(s("sdt_service_channels_evicted_total"), 0.0);
    }
    assert_eq!(
        sample(
            &ma,
            &format!("sdt_service_drops_total{{{entry},reason=\"too_big\"}}")
        ),
        1.0
    );
    // The entry's limit is the one `sdt status` shows (1438 B over IPv4).
    assert_eq!(
        sample(&ma, &format!("sdt_service_max_payload_bytes{{{entry}}}")),
        1438.0
    );

    // Peer counters carry keepalives and handshakes as well: the scrape
    // lies between the status snapshots taken around it, and covers at
    // least the service's datagrams.
    let peer_b = &before_a.peers[0];
    let later = &after_a.peers[0];
    for (name, lo, hi, least) in [
        ("rx_datagrams", peer_b.rx_datagrams, later.rx_datagrams, N),
        ("tx_datagrams", peer_b.tx_datagrams, later.tx_datagrams, N),
        ("rx_bytes", peer_b.rx_bytes, later.rx_bytes, N * LEN),
        ("tx_bytes", peer_b.tx_bytes, later.tx_bytes, N * LEN),
        ("handshakes", peer_b.handshakes, later.handshakes, 1),
    ] {
        let v = sample(&ma, &format!("sdt_peer_{name}_total{{peer=\"b\"}}"));
        assert!(
            lo as f64 <= v && v <= hi as f64 && v >= least as f64,
            "sdt_peer_{name}_total {v} not within {lo}..={hi} or below {least}"
        );
    }
    assert_eq!(after_a.metrics_listen, Some(METRICS.parse().unwrap()));
    let text = support::run(
        Command::new(SDT)
            .args(["status", "--socket"])
            .arg(&a.socket),
        Duration::from_secs(10),
    );
    assert!(
        text.ok()
            && text
                .stdout
                .contains(&format!("metrics on http://{METRICS}/metrics")),
        "{text}"
    );
    assert_eq!(sample(&ma, "sdt_peer_session_up{peer=\"b\"}"), 1.0);
    assert_eq!(sample(&mb, "sdt_peer_session_up{peer=\"a\"}"), 1.0);
    let age = sample(&ma, "sdt_peer_last_handshake_age_seconds{peer=\"b\"}");
    assert!(age >= 0.0 && age <= after_a.uptime_secs, "{age}");
    assert_eq!(sample(&ma, "sdt_send_errors_total"), 0.0);
    assert_eq!(sample(&ma, "sdt_kernel_link_drops_total"), 0.0);
    assert!(ma.contains_key("sdt_kernel_exit_channel_drops_total"));
    assert!(mb.contains_key("sdt_kernel_exit_channel_drops_total"));
    assert_eq!(
        sample(
            &ma,
            &format!("sdt_node_info{{public_key=\"{}\"}}", lab.keys_a.public)
        ),
        1.0
    );

    // Only GET /metrics.
    let other = get(&lab.pair.a, "GET / HTTP/1.1\r\n\r\n");
    assert!(other.status.starts_with("HTTP/1.1 404"), "{}", other.status);
    let post = get(&lab.pair.a, "POST /metrics HTTP/1.1\r\n\r\n");
    assert!(post.status.starts_with("HTTP/1.1 405"), "{}", post.status);

    a.stop();
    b.stop();
}

#[test]
fn silent_scrapers_do_not_stall_forwarding() {
    let lab = Lab::new("metrics-slow", 71);
    let (a, b) = start(&lab);
    let client = udp_in(&lab.pair.a.name, "127.0.0.1:0");
    let target = udp_in(&lab.pair.b.name, TARGET);

    // Every slot held by a client that connects and sends nothing.
    let silent: Vec<TcpStream> = (0..MAX_CLIENTS).map(|_| connect_in(&lab.pair.a)).collect();
    // One more is refused at once rather than queued.
    let refused = get(&lab.pair.a, "GET /metrics HTTP/1.1\r\n\r\n");
    assert!(
        refused.status.starts_with("HTTP/1.1 503"),
        "{}",
        refused.status
    );
    // Forwarding goes on meanwhile, and so does `sdt status`.
    assert_eq!(
        round_trips(&client, &target, N, 2),
        N,
        "loss with silent scrapers"
    );
    let s = a.service(1);
    assert_eq!(s.to_peer_datagrams, N as u64, "{s:?}");
    // Each is closed when its read deadline passes, counted as a timeout,
    // and its slot serves scrapes again.
    let timed_out = wait_until(Duration::from_secs(20), || {
        a.status().metrics_timeouts >= MAX_CLIENTS as u64
    });
    assert!(timed_out, "silent scrapers not timed out: {:?}", a.status());
    for mut s in silent {
        let mut rest = Vec::new();
        let closed = s.read_to_end(&mut rest);
        assert!(
            matches!(closed, Ok(0)),
            "a silent scraper got {closed:?} {rest:?}"
        );
    }
    let body = scrape(&lab.pair.a);
    let m = samples(&body);
    let status = a.status();
    assert!(sample(&m, "sdt_metrics_refused_total") >= 1.0, "{body}");
    assert_eq!(
        sample(&m, "sdt_metrics_timeouts_total"),
        MAX_CLIENTS as f64,
        "{body}"
    );
    assert_eq!(
        status.metrics_refused as f64,
        sample(&m, "sdt_metrics_refused_total")
    );
    a.stop();
    b.stop();
}

/// A `metrics_listen` already in use stops `sdt run` at start: one line
/// naming the address and the key, exit 2. No namespace needed.
#[test]
fn an_unbindable_metrics_listen_stops_the_start() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = temp_dir();
    let config = dir.path().join("m.toml");
    let keys = Keys::new();
    write_private(
        &config,
        &format!(
            "private_key = \"{}\"\nlisten = \"127.0.0.1:0\"\ncontrol_socket = \"{}\"\n\
             metrics_listen = \"{addr}\"\n",
            keys.private,
            dir.path().join("m.sock").display()
        ),
    );
    let check = support::run(
        Command::new(SDT).args(["check", "-c"]).arg(&config),
        Duration::from_secs(10),
    );
    assert!(check.ok(), "{check}");
    let ran = support::run(
        Command::new(SDT)
            .args(["run", "-c"])
            .arg(&config)
            .env_remove("RUST_LOG"),
        Duration::from_secs(10),
    );
    assert_eq!(ran.code(), Some(2), "{ran}");
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{ran}");
    assert!(
        lines[0].contains(&format!("cannot serve metrics on {addr} (metrics_listen)")),
        "{ran}"
    );
    drop(taken);
}

/// A malformed `metrics_listen` is refused by `check` and `run` alike, with
/// the same one line naming file, line and key, exit 1.
#[test]
fn check_and_run_refuse_a_bad_metrics_listen_alike() {
    let dir = temp_dir();
    let config = dir.path().join("bad.toml");
    let keys = Keys::new();
    write_private(
        &config,
        &format!(
            "private_key = \"{}\"\nlisten = \"127.0.0.1:0\"\ncontrol_socket = \"{}\"\n\
             metrics_listen = \"localhost:9920\"\n",
            keys.private,
            dir.path().join("bad.sock").display()
        ),
    );
    let expected = format!(
        "sdt: {}:4: key `metrics_listen`: `localhost:9920` is not an IP address and port",
        config.display()
    );
    for command in ["check", "run"] {
        let ran = support::run(
            Command::new(SDT)
                .args([command, "-c"])
                .arg(&config)
                .env_remove("RUST_LOG"),
            Duration::from_secs(10),
        );
        assert_eq!(ran.code(), Some(1), "{command}: {ran}");
        let lines: Vec<&str> = ran.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{command}: {ran}");
        assert!(lines[0].starts_with(&expected), "{command}: {ran}");
    }
}
