//! `sdt status --channels`, end to end with two real nodes: the per-channel
//! view names each client (entry) and each exit socket with its target,
//! and counts every channel's datagrams each way exactly.
//!
//! A forward service from A (entry, `127.0.0.1:5710` in A's namespace) to
//! an echo target on B (`127.0.0.1:5711` in B's). Three clients send 1, 2
//! and 3 datagrams, one after the other, each waiting for its echo.
//!
//! Needs root (namespaces); fails, not skips, without it.

mod support;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sdt::status::{ChannelState, Channels, ServiceChannels};
use sdt_core::node::ServiceId;
use support::net::in_netns;
use support::node::{Lab, Node};
use support::{run, SDT};

const LISTEN: &str = "127.0.0.1:5710";
const TARGET: &str = "127.0.0.1:5711";
const CLIENTS: usize = 3;

/// `sdt status --channels ARGS... --socket` of `node`: its stdout.
fn channels_text(node: &Node, args: &[&str]) -> String {
    let out = run(
        Command::new(SDT)
            .args(["status", "--channels"])
            .args(args)
            .arg("--socket")
            .arg(&node.socket),
        Duration::from_secs(10),
    );
    assert!(out.ok(), "sdt status --channels {args:?}: {out}");
    out.stdout
}

/// The same with `--json`, parsed.
fn channels(node: &Node, args: &[&str]) -> Channels {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let text = channels_text(node, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn service_1(c: &Channels) -> &ServiceChannels {
    assert_eq!(c.services.len(), 1, "{c:#?}");
    let s = &c.services[0];
    assert_eq!(
        (s.id, s.mode.as_str()),
        (ServiceId::new(1), "forward"),
        "{c:#?}"
    );
    s
}

#[test]
fn status_lists_each_channel_with_its_addresses_and_counts() {
    let lab = Lab::new("chans", 71);

    // The echo target: answers each datagram, and says where they came from.
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let echo = {
        let ns = lab.pair.b.name.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            in_netns(&ns, move || {
                let sock = UdpSocket::bind(TARGET).expect("echo socket");
                sock.set_read_timeout(Some(Duration::from_millis(50)))
                    .expect("timeout");
                ready_tx.send(()).expect("ready");
                let mut sources = BTreeSet::new();
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        sources.insert(from);
                        let _ = sock.send_to(&buf[..n], from);
                    }
                }
                sources
            })
        })
    };
    ready_rx.recv().expect("the echo target started");

    let (a, b) = lab.start_nodes(
        &format!("[[service]]\nid = 1\npeer = \"b\"\nmode = \"forward\"\nlisten = \"{LISTEN}\"\n"),
        &format!("[[service]]\nid = 1\npeer = \"a\"\nmode = \"forward\"\ntarget = \"{TARGET}\"\n"),
    );
    assert!(service_1(&channels(&a, &[])).channels.is_empty());

    // Client i sends i + 1 datagrams, each answered before the next.
    let clients: Vec<SocketAddr> = in_netns(&lab.pair.a.name.clone(), || {
        let to: SocketAddr = LISTEN.parse().unwrap();
        let mut addrs = Vec::new();
        let mut sockets = Vec::new();
        for i in 0..CLIENTS {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            for k in 0..=i {
                let msg = [b'c', i as u8, k as u8];
                s.send_to(&msg, to).unwrap();
                let mut buf = [0u8; 16];
                let (n, from) = s.recv_from(&mut buf).expect("echo through the tunnel");
                assert_eq!((&buf[..n], from), (&msg[..], to));
            }
            addrs.push(s.local_addr().unwrap());
            // Kept open: a closed client port could be reused by the next.
            sockets.push(s);
        }
        addrs
    });

    // The entry: one channel per client, with its address and its counts.
    let entry = channels(&a, &["--sort", "age"]);
    let se = service_1(&entry);
    assert_eq!(
        (se.half.as_str(), se.open),
        ("entry", CLIENTS),
        "{entry:#?}"
    );
    let oldest_first: Vec<_> = se.channels.iter().map(|c| c.client).collect();
    let want: Vec<_> = clients.iter().copied().map(Some).collect();
    assert_eq!(oldest_first, want, "sorted by age: {entry:#?}");
    for (i, c) in se.channels.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(
            (c.to_peer_datagrams, c.from_peer_datagrams),
            (n, n),
            "client {i}: {c:#?}"
        );
        assert_eq!(c.peer, "b");
        assert_eq!((c.local, c.target), (None, None), "{c:#?}");
        assert!(c.idle_secs <= c.age_secs, "{c:#?}");
    }
    // Longest idle first is the order the clients finished in.
    let idle = channels(&a, &["--sort", "idle"]);
    let by_idle: Vec<_> = service_1(&idle).channels.iter().map(|c| c.client).collect();
    assert_eq!(by_idle, want);

    // The limit cuts the list after the sort: the two busiest clients.
    let top = channels(&a, &["--limit", "2", "--sort", "traffic"]);
    let st = service_1(&top);
    assert_eq!((st.open, top.limit), (CLIENTS, 2));
    let busiest: Vec<_> = st
        .channels
        .iter()
        .map(|c| (c.client, c.to_peer_datagrams))
        .collect();
    assert_eq!(busiest, vec![(Some(clients[2]), 3), (Some(clients[1]), 2)]);

    // The exit: the same numbers, each on its own socket, which is the
    // source the target saw, sending to the target.
    let exit = channels(&b, &["--sort", "age"]);
    let sx = service_1(&exit);
    assert_eq!((sx.half.as_str(), sx.open), ("exit", CLIENTS), "{exit:#?}");
    let numbers =
        |s: &ServiceChannels| -> Vec<u32> { s.channels.iter().map(|c| c.number).collect() };
    assert_eq!(numbers(sx), numbers(se));
    let target: SocketAddr = TARGET.parse().unwrap();
    for (i, c) in sx.channels.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(
            (c.to_peer_datagrams, c.from_peer_datagrams),
            (n, n),
            "exit channel {i}: {c:#?}"
        );
        assert_eq!((c.client, c.target), (None, Some(target)), "{c:#?}");
        assert_eq!(c.peer, "a");
    }
    let locals: BTreeSet<SocketAddr> = sx.channels.iter().filter_map(|c| c.local).collect();

    // The text form: a header line per service and a row per channel.
    let text = channels_text(&a, &["--limit", "2"]);
    assert!(
        text.starts_with("service 1 (forward, entry): 3 open, the first 2 by traffic shown\n"),
        "{text}"
    );
    assert!(text.contains(&clients[2].to_string()), "{text}");
    assert!(!text.contains(&clients[0].to_string()), "{text}");
    let rows: Vec<&str> = text.lines().skip(2).collect();
    assert_eq!(rows.len(), 2, "{text}");
    let text = channels_text(&b, &[]);
    let row_of = |c: &ChannelState| format!("{} -> {target}", c.local.unwrap());
    for c in &sx.channels {
        assert!(text.contains(&row_of(c)), "{text}");
    }
    println!("{}\n{text}", channels_text(&a, &[]));

    // A bad request is refused with the node's one-line reason.
    let out = run(
        Command::new(SDT)
            .args(["status", "--channels", "--limit", "5000", "--socket"])
            .arg(&a.socket),
        Duration::from_secs(10),
    );
    assert_eq!(out.code(), Some(1), "{out}");

    stop.store(true, Ordering::Relaxed);
    let sources = echo.join().expect("echo thread");
    assert_eq!(locals, sources, "the exit sockets are what the target saw");
    a.stop();
    b.stop();
}
