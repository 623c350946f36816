use super::*;
use crate::status::{DataPath, PeerState, ServiceState};
use mio::{Events, Poll, Token};
use sdt_core::node::ServiceId;
use std::io::Read;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Service `id` with every counter at zero and nothing optional set.
fn service_state(id: u8) -> ServiceState {
    ServiceState {
        id: ServiceId::new(id),
        mode: String::new(),
        half: String::new(),
        peer: String::new(),
        listen: None,
        target: None,
        tun_address: None,
        allow: Vec::new(),
        exit: None,
        peer_addresses: Vec::new(),
        to_peer_datagrams: 0,
        to_peer_bytes: 0,
        from_peer_datagrams: 0,
        from_peer_bytes: 0,
        to_peer_rate: None,
        from_peer_rate: None,
        channels_open: 0,
        channels_created: 0,
        channels_expired: 0,
        channels_evicted: 0,
        channels_closed: 0,
        ports_held: 0,
        target_unreachable: 0,
        icmp_errors_sent: 0,
        icmp_errors_rate_limited: 0,
        lost_in_transit: 0,
        reordered: 0,
        unconfirmed: 0,
        buffer: None,
        buffered_datagrams: 0,
        buffered_bytes: 0,
        max_payload: None,
        max_payload_v6_destination: None,
        tun: None,
        drops: Vec::new(),
    }
}

fn status() -> Status {
    Status {
        public_key: "pub\"key".into(),
        listen: None,
        metrics_listen: None,
        uptime_secs: 12.5,
        peers: vec![
            PeerState {
                name: "b".into(),
                public_key: "k".into(),
                endpoint: None,
                latest_handshake_secs_ago: Some(3.25),
                session_up: true,
                rx_datagrams: 10,
                rx_bytes: 1000,
                tx_datagrams: 11,
                tx_bytes: 1100,
                handshakes: 2,
                mtu: 1500,
                drops: vec![("replayed".into(), 4)],
                endpoint_name: Some("y.example:51820".into()),
                resolved_secs_ago: Some(7.5),
                resolve_failures: 5,
                resolve_changes: 1,
                ..PeerState::default()
            },
            PeerState {
                name: "odd\\name\n".into(),
                public_key: "k2".into(),
                endpoint: None,
                latest_handshake_secs_ago: None,
                session_up: false,
                rx_datagrams: 0,
                rx_bytes: 0,
                tx_datagrams: 0,
                tx_bytes: 0,
                handshakes: 0,
                mtu: 1400,
                drops: vec![],
                ..PeerState::default()
            },
        ],
        services: vec![ServiceState {
            mode: "forward".into(),
            half: "entry".into(),
            to_peer_datagrams: 5,
            to_peer_bytes: 500,
            from_peer_datagrams: 6,
            from_peer_bytes: 600,
            channels_open: 1,
            channels_created: 3,
            channels_expired: 1,
            channels_evicted: 1,
            channels_closed: 0,
            ports_held: 0,
            target_unreachable: 2,
            icmp_errors_sent: 0,
            icmp_errors_rate_limited: 0,
            max_payload: Some(1438),
            max_payload_v6_destination: None,
            tun: None,
            drops: vec![("too_big".into(), 2), ("channel_rate_limited".into(), 9)],
            ..service_state(7)
        }],
        unattributed_drops: vec![("unknown_peer".into(), 8)],
        node_drops: vec![],
        send_errors: 1,
        control_refused: 0,
        control_timeouts: 0,
        metrics_refused: 2,
        metrics_timeouts: 3,
        events_lost: 0,
        rate_interval_secs: None,
        data_path: DataPath {
            offloads: "x".into(),
            link_gro: true,
            gso: false,
            link_recv_buffer: 4096,
            link_send_buffer: 8192,
            buffers_forced: false,
            kernel_drops_link: 13,
            kernel_drops_services: vec![(ServiceId::new(7), 14)],
            kernel_drops_channels: 15,
            truncated: 0,
        },
    }
}

/// Each sample's value in `text`, by its whole series (`name{labels}`).
fn samples(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample line has a value");
            (series.to_owned(), value.to_owned())
        })
        .collect()
}

fn value(text: &str, series: &str) -> Option<String> {
    samples(text)
        .into_iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| v)
}

/// The status JSON (`sdt status --json`, and what the CLI reads back)
/// writes a service id as the plain number it is in the configuration.
#[test]
fn status_json_writes_service_ids_as_numbers() {
    let st = status();
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["services"][0]["id"], serde_json::json!(7));
    assert_eq!(
        json["data_path"]["kernel_drops_services"],
        serde_json::json!([[7, 14]])
    );
    let back: Status = serde_json::from_value(json).unwrap();
    assert_eq!(back, st);
}

#[test]
fn every_status_counter_is_rendered_under_its_stable_name() {
    let text = render(&status());
    let expect = [
        ("sdt_uptime_seconds", "12.5"),
        ("sdt_node_info{public_key=\"pub\\\"key\"}", "1"),
        ("sdt_unattributed_drops_total{reason=\"unknown_peer\"}", "8"),
        ("sdt_send_errors_total", "1"),
        ("sdt_events_lost_total", "0"),
        ("sdt_metrics_refused_total", "2"),
        ("sdt_metrics_timeouts_total", "3"),
        ("sdt_kernel_link_drops_total", "13"),
        ("sdt_kernel_service_drops_total{service=\"7\"}", "14"),
        ("sdt_kernel_exit_channel_drops_total", "15"),
        ("sdt_link_receive_buffer_bytes", "4096"),
        ("sdt_link_gro", "1"),
        ("sdt_gso", "0"),
        ("sdt_peer_rx_datagrams_total{peer=\"b\"}", "10"),
        ("sdt_peer_rx_bytes_total{peer=\"b\"}", "1000"),
        ("sdt_peer_tx_datagrams_total{peer=\"b\"}", "11"),
        ("sdt_peer_tx_bytes_total{peer=\"b\"}", "1100"),
        ("sdt_peer_handshakes_total{peer=\"b\"}", "2"),
        ("sdt_peer_last_handshake_age_seconds{peer=\"b\"}", "3.25"),
        ("sdt_peer_session_up{peer=\"b\"}", "1"),
        ("sdt_peer_session_up{peer=\"odd\\\\name\\n\"}", "0"),
        ("sdt_peer_mtu_bytes{peer=\"odd\\\\name\\n\"}", "1400"),
        ("sdt_peer_drops_total{peer=\"b\",reason=\"replayed\"}", "4"),
        ("sdt_peer_endpoint_resolve_failures_total{peer=\"b\"}", "5"),
        ("sdt_peer_endpoint_resolve_changes_total{peer=\"b\"}", "1"),
        ("sdt_peer_endpoint_resolved_age_seconds{peer=\"b\"}", "7.5"),
    ];
    for (series, v) in expect {
        assert_eq!(
            value(&text, series).as_deref(),
            Some(v),
            "{series} in\n{text}"
        );
    }
    let svc = "service=\"7\",mode=\"forward\",half=\"entry\"";
    for (name, v) in [
        ("sdt_service_to_peer_datagrams_total", "5"),
        ("sdt_service_to_peer_bytes_total", "500"),
        ("sdt_service_from_peer_datagrams_total", "6"),
        ("sdt_service_from_peer_bytes_total", "600"),
        ("sdt_service_channels_open", "1"),
        ("sdt_service_channels_created_total", "3"),
        ("sdt_service_channels_expired_total", "1"),
        ("sdt_service_channels_evicted_total", "1"),
        ("sdt_service_channels_closed_total", "0"),
        ("sdt_service_ports_held", "0"),
        ("sdt_service_target_unreachable_total", "2"),
        ("sdt_service_max_payload_bytes", "1438"),
    ] {
        let series = format!("{name}{{{svc}}}");
        assert_eq!(
            value(&text, &series).as_deref(),
            Some(v),
            "{series} in\n{text}"
        );
    }
    for (reason, v) in [("too_big", "2"), ("channel_rate_limited", "9")] {
        let series = format!("sdt_service_drops_total{{{svc},reason=\"{reason}\"}}");
        assert_eq!(value(&text, &series).as_deref(), Some(v), "{series}");
    }
    // A peer that never completed a handshake has no age, and no drops
    // means no sample, not a zero per reason.
    assert_eq!(
        value(
            &text,
            "sdt_peer_last_handshake_age_seconds{peer=\"odd\\\\name\\n\"}"
        ),
        None
    );
    // A peer whose endpoint is no name has no lookup series.
    assert!(
        !text.contains("sdt_peer_endpoint_resolve_failures_total{peer=\"odd"),
        "{text}"
    );
    assert!(!text.contains("sdt_node_drops_total"), "{text}");
    assert!(!text.contains("max_payload_ipv6"), "{text}");
}

#[test]
fn push_services_render_their_sequence_and_buffer() {
    let mut st = status();
    st.services = vec![
        ServiceState {
            mode: "push".into(),
            half: "entry".into(),
            unconfirmed: 4,
            buffer: Some(4 << 20),
            buffered_datagrams: 10,
            buffered_bytes: 1020,
            ..service_state(3)
        },
        ServiceState {
            mode: "push".into(),
            half: "exit".into(),
            lost_in_transit: 6,
            reordered: 2,
            ..service_state(4)
        },
        ServiceState {
            mode: "push".into(),
            half: "entry".into(),
            ..service_state(5)
        },
    ];
    let text = render(&st);
    let entry = "service=\"3\",mode=\"push\",half=\"entry\"";
    let exit = "service=\"4\",mode=\"push\",half=\"exit\"";
    let unbuffered = "service=\"5\",mode=\"push\",half=\"entry\"";
    for (series, v) in [
        (
            format!("sdt_service_unconfirmed_total{{{entry}}}"),
            Some("4"),
        ),
        (
            format!("sdt_service_buffer_capacity_bytes{{{entry}}}"),
            Some("4194304"),
        ),
        (
            format!("sdt_service_buffered_datagrams{{{entry}}}"),
            Some("10"),
        ),
        (
            format!("sdt_service_buffered_bytes{{{entry}}}"),
            Some("1020"),
        ),
        (
            format!("sdt_service_lost_in_transit_total{{{exit}}}"),
            Some("6"),
        ),
        (format!("sdt_service_reordered_total{{{exit}}}"), Some("2")),
        (
            format!("sdt_service_unconfirmed_total{{{unbuffered}}}"),
            Some("0"),
        ),
        // Each counter only where it means something.
        (
            format!("sdt_service_lost_in_transit_total{{{entry}}}"),
            None,
        ),
        (format!("sdt_service_unconfirmed_total{{{exit}}}"), None),
        (
            format!("sdt_service_buffered_datagrams{{{unbuffered}}}"),
            None,
        ),
        (format!("sdt_service_buffer_capacity_bytes{{{exit}}}"), None),
    ] {
        assert_eq!(value(&text, &series).as_deref(), v, "{series} in\n{text}");
    }
}

/// The format's structure: every family's `# HELP` then `# TYPE` come once,
/// before its samples, which are contiguous; counters end in `_total` and
/// nothing else does; names carry the `sdt_` prefix.
#[test]
fn families_are_well_formed() {
    let text = render(&status());
    assert!(text.ends_with('\n'));
    let mut seen = std::collections::HashSet::new();
    let mut current: Option<(String, String)> = None;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(name.starts_with("sdt_"), "{name}");
            assert!(seen.insert(name.clone()), "{name} twice");
            let ty = lines.next().unwrap();
            let kind = ty
                .strip_prefix(&format!("# TYPE {name} "))
                .unwrap_or_else(|| panic!("no TYPE after HELP of {name}: {ty}"));
            assert_eq!(
                name.ends_with("_total"),
                kind == "counter",
                "{name}: {kind}"
            );
            current = Some((name, kind.to_owned()));
            assert!(
                lines.peek().is_some_and(|l| !l.starts_with('#')),
                "an empty family"
            );
            continue;
        }
        let (name, _) = current.as_ref().expect("a sample before any HELP");
        let series = line.rsplit_once(' ').unwrap().0;
        let sample_name = series.split('{').next().unwrap();
        assert_eq!(sample_name, name, "sample outside its family: {line}");
    }
    assert!(seen.len() > 30, "{} families", seen.len());
}

#[test]
fn an_empty_status_renders_the_node_wide_families() {
    let text = render(&Status::default());
    assert_eq!(value(&text, "sdt_send_errors_total").as_deref(), Some("0"));
    assert!(!text.contains("sdt_peer_"), "{text}");
    assert!(!text.contains("sdt_service_"), "{text}");
}

#[test]
fn routes_only_get_metrics() {
    assert_eq!(
        route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        Route::Metrics { head: false }
    );
    assert_eq!(
        route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
        Route::Metrics { head: false }
    );
    assert_eq!(
        route(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
        Route::Metrics { head: true }
    );
    assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
    assert_eq!(route(b"GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
    assert_eq!(
        route(b"POST /metrics HTTP/1.1\r\n\r\n"),
        Route::MethodNotAllowed
    );
    assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::BadRequest);
    assert_eq!(route(b"GET /metrics SPDY/3\r\n\r\n"), Route::BadRequest);
    assert_eq!(route(b"\xff\xfe\r\n\r\n"), Route::BadRequest);
}

/// A stand-in for the event loop: answers snapshot requests when woken.
struct FakeLoop {
    requests: SyncSender<Request>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeLoop {
    fn start() -> FakeLoop {
        let (requests, queue) = mpsc::sync_channel::<Request>(8);
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut events = Events::with_capacity(4);
            while !flag.load(Ordering::SeqCst) {
                let _ = poll.poll(&mut events, None);
                super::super::control::answer_requests(
                    &queue,
                    status,
                    |_| crate::status::Channels::default(),
                    |_, _| unreachable!("no reload request"),
                );
            }
        });
        FakeLoop {
            requests,
            waker,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        let _ = self.thread.take().unwrap().join();
    }
}

/// Sends `request` and reads the whole answer. A refused client may be
/// closed before its request is read: writing it may then fail, and the
/// answer be followed by a reset; the answer is what counts.
fn ask(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    match s.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !answer.is_empty() => {}
        Err(e) => panic!("reading the answer: {e}"),
    }
    String::from_utf8(answer).unwrap()
}

#[test]
fn the_server_answers_scrapes_and_refuses_the_rest() {
    let fake = FakeLoop::start();
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        fake.requests.clone(),
        fake.waker.clone(),
    )
    .unwrap();
    let addr = server.addr();

    let ok = ask(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = ok.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Type: {CONTENT_TYPE}")),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    assert_eq!(body, render(&status()));

    let headed = ask(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(headed.starts_with("HTTP/1.1 200 OK") && headed.ends_with("\r\n\r\n"));
    assert!(ask(addr, b"GET /x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
    let post = ask(addr, b"POST /metrics HTTP/1.1\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET"));
    assert!(ask(addr, b"nonsense\n\n").starts_with("HTTP/1.1 400 "));
    let answer = ask(addr, &[b'a'; MAX_REQUEST + 10]);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:?}");

    // Scrapers that send nothing hold every slot: the next one is answered
    // 503 at once, and once they hang up, scrapes are served again.
    let silent: Vec<TcpStream> = (0..MAX_CLIENTS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let served = |answer: &str| answer.starts_with("HTTP/1.1 200 ");
    let mut refused = false;
    for _ in 0..200 {
        let a = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        if a.starts_with("HTTP/1.1 503 ") {
            refused = true;
            break;
        }
        // The silent ones may not all be admitted yet.
        assert!(served(&a), "{a}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        refused,
        "a fifth scraper was served while four held the slots"
    );
    drop(silent);
    let mut back = false;
    for _ in 0..500 {
        if served(&ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n")) {
            back = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(back, "scrapes not served after the silent clients left");
    assert!(server.stats().refused.load(Ordering::Relaxed) >= 1);
    drop(server);
}
