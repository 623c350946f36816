//! What a node logs (issue 12, finding 4), with real nodes on loopback.
//!
//! X runs `sdt -vv run --log-format json` and is flooded with forged link
//! datagrams (dropped as `malformed`) and with clients its full channel
//! table refuses (`table_full`): every stderr line is one JSON object; the
//! drop lines name the reason, the service and the source; they are rate
//! limited (a burst per window, then a `suppressed K` summary) while
//! `sdt status --json` counts every drop, and lines and summaries add up
//! to the count. Y runs at the default level, in text: it logs X's
//! session up, and when X restarts, the session down. The restarted X runs
//! at the default level too: session up, the first forged datagram from
//! Y's endpoint (by peer name), a reload, Y gone stale; no debug lines.
//!
//! Also: a refused start is one JSON line with `--log-format json`, and a
//! stderr nobody reads does not stall the node (the log's writer thread).

mod support;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sdt::loopback::{free_port, Echo};
use sdt::status::Status;
use serde_json::Value;
use support::node::{write_private, Keys};
use support::{run, wait_until, Proc, SDT};

/// Forged datagrams sent to X's link port.
const FORGED: usize = 3000;
/// Clients refused by X's full channel table.
const REFUSED: usize = 200;
/// The rate limit's burst and window (`runtime-mio/src/daemon/droplog.rs`).
const BURST: usize = 5;
const WINDOW: Duration = Duration::from_secs(10);

fn status_json(socket: &Path) -> Status {
    let out = run(
        Command::new(SDT)
            .args(["status", "--json", "--socket"])
            .arg(socket),
        Duration::from_secs(20),
    );
    assert!(out.ok(), "{out}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn spawn(dir: &Path, name: &str, args: &[&str], config: &Path, socket: &Path) -> Proc {
    let mut cmd = Command::new(SDT);
    cmd.args(args)
        .args(["run", "-c"])
        .arg(config)
        .env_remove("RUST_LOG");
    support::die_with_parent(&mut cmd);
    let mut proc = Proc::spawn(name, dir, &mut cmd, false);
    let up = wait_until(Duration::from_secs(10), || {
        proc.exited().is_none() && sdt::daemon::query_status(socket, false).is_ok()
    });
    assert!(up, "node {name} did not come up: {}", proc.describe());
    proc
}

/// Every stderr line of `proc`, each of which must be a JSON object with a
/// string `timestamp`, `level`, `target` and `message`.
fn json_lines(proc: &Proc) -> Vec<Value> {
    let text = proc.stderr_text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            for key in ["timestamp", "level", "target", "message"] {
                assert!(v[key].is_string(), "no {key}: {l}");
            }
            v
        })
        .collect();
    assert!(!lines.is_empty(), "no log lines");
    lines
}

fn message(v: &Value) -> &str {
    v["message"].as_str().unwrap_or_default()
}

/// No line shows a Rust Debug form of core's types.
fn no_debug_forms<'a>(messages: impl IntoIterator<Item = &'a str>) {
    for m in messages {
        for form in ["Service(", "PeerId(", "Link(", "Channel(", "Some("] {
            assert!(!m.contains(form), "a Debug form: {m}");
        }
    }
}

fn drop_count(drops: &[(String, u64)], reason: &str) -> u64 {
    drops
        .iter()
        .filter(|(r, _)| r == reason)
        .map(|(_, n)| n)
        .sum()
}

/// Malformed link datagrams `sdt status` counted, wherever it counted them.
fn malformed(s: &Status) -> u64 {
    drop_count(&s.unattributed_drops, "malformed")
        + s.peers
            .iter()
            .map(|p| drop_count(&p.drops, "malformed"))
            .sum::<u64>()
}

fn table_full(s: &Status) -> u64 {
    s.services
        .iter()
        .map(|x| drop_count(&x.drops, "table_full"))
        .sum()
}

/// Waits until `count` stops changing; its value then.
fn settled(socket: &Path, count: impl Fn(&Status) -> u64) -> u64 {
    let mut last = u64::MAX;
    let ok = wait_until(Duration::from_secs(20), || {
        std::thread::sleep(Duration::from_millis(300));
        let now = count(&status_json(socket));
        let same = now == last;
        last = now;
        same
    });
    assert!(ok, "drop count never settled at {last}");
    last
}

/// The drop lines of one reason: (lines for single drops, the drops the
/// summaries carry).
fn drop_lines<'a>(lines: &'a [Value], reason: &str) -> (Vec<&'a Value>, u64) {
    let of: Vec<&Value> = lines
        .iter()
        .filter(|v| v["target"] == "sdt::drop" && v["reason"] == reason)
        .collect();
    let single = of
        .iter()
        .copied()
        .filter(|v| v.get("suppressed").is_none())
        .collect();
    let summarised = of.iter().filter_map(|v| v["suppressed"].as_u64()).sum();
    (single, summarised)
}

/// Whether a datagram from `client` to X's `entry` comes back from the
/// echo server behind Y, trying for up to 15 s.
fn echoes_through(client: &UdpSocket, entry: std::net::SocketAddr) -> bool {
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    wait_until(Duration::from_secs(15), || {
        let _ = client.send_to(b"through", entry);
        client.recv(&mut [0; 64]).is_ok()
    })
}

/// The two nodes' files in `d`: Y holds the exit of forward service 1 to
/// an echo server, X its entry (keeping the link up), with `x_service`
/// keys added to X's service table.
struct Pair {
    echo: Echo,
    x_link: std::net::SocketAddr,
    y_link: std::net::SocketAddr,
    entry: std::net::SocketAddr,
    x_config: std::path::PathBuf,
    x_socket: std::path::PathBuf,
    y_config: std::path::PathBuf,
    y_socket: std::path::PathBuf,
}

impl Pair {
    fn write(d: &Path, x_service: &str) -> Pair {
        let echo = Echo::start().unwrap();
        let (kx, ky) = (Keys::new(), Keys::new());
        let (x_link, y_link, entry) = (
            free_port().unwrap(),
            free_port().unwrap(),
            free_port().unwrap(),
        );
        let (x_config, x_socket) = (d.join("x.toml"), d.join("x.sock"));
        let (y_config, y_socket) = (d.join("y.toml"), d.join("y.sock"));
        write_private(
            &y_config,
            &format!(
                "control_socket = \"{}\"\nprivate_key = \"{}\"\nlisten = \"{y_link}\"\n\n\
                 [[peer]]\nname = \"x\"\npublic_key = \"{}\"\n\n\
                 [[service]]\nid = 1\npeer = \"x\"\nmode = \"forward\"\ntarget = \"{}\"\n",
                y_socket.display(),
                ky.private,
                kx.public,
                echo.addr
            ),
        );
        write_private(
            &x_config,
            &format!(
                "control_socket = \"{}\"\nprivate_key = \"{}\"\nlisten = \"{x_link}\"\n\n\
                 [[peer]]\nname = \"y\"\npublic_key = \"{}\"\nendpoint = \"{y_link}\"\n\
                 keep_up = true\n\n\
                 [[service]]\nid = 1\npeer = \"y\"\nmode = \"forward\"\nlisten = \"{entry}\"\n\
                 {x_service}",
                x_socket.display(),
                kx.private,
                ky.public
            ),
        );
        Pair {
            echo,
            x_link,
            y_link,
            entry,
            x_config,
            x_socket,
            y_config,
            y_socket,
        }
    }
}

#[test]
fn drops_and_session_changes_are_logged_by_name_and_rate_limited() {
    let dir = support::temp_dir();
    let d = dir.path();
    // One channel at most, never evicted within the test: the second
    // client on is refused as table_full.
    let Pair {
        echo: _echo,
        x_link,
        y_link,
        entry,
        x_config,
        x_socket,
        y_config,
        y_socket,
    } = Pair::write(d, "max_channels = 1\nmin_idle_for_eviction = \"1h\"\n");
    let mut y = spawn(d, "y", &[], &y_config, &y_socket);
    let started = Instant::now();
    let mut x = spawn(
        d,
        "x",
        &["-vv", "--log-format", "json"],
        &x_config,
        &x_socket,
    );
    let up = wait_until(Duration::from_secs(15), || {
        status_json(&x_socket).peers[0].session_up
    });
    assert!(up, "no session: {}", x.describe());

    // The one channel X has room for, answered through Y.
    let first = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(echoes_through(&first, entry), "no echo through the tunnel");

    // The floods: forged link datagrams, and clients the table refuses.
    let forger = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..FORGED {
        let _ = forger.send_to(&[0xff, i as u8, 0, 0, 0, 0, 0, 0], x_link);
        if i % 100 == 99 {
            // Room for X to read, so that most are counted rather than
            // lost in the kernel's queue.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let clients: Vec<UdpSocket> = (0..REFUSED)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for c in &clients {
        let _ = c.send_to(b"refused", entry);
    }
    let forged = settled(&x_socket, malformed);
    let refused = settled(&x_socket, table_full);
    assert!(
        forged >= FORGED as u64 / 2,
        "only {forged} of {FORGED} counted"
    );
    assert!(
        refused >= REFUSED as u64 / 2,
        "only {refused} of {REFUSED} counted"
    );
    // The window ends: its summary is logged without waiting for more.
    let summary = wait_until(WINDOW * 3, || {
        x.stderr_text()
            .contains("(link malformed) in the last 10 s")
    });
    assert!(summary, "no summary at the window's end: {}", x.describe());
    x.terminate_ok();
    let elapsed = started.elapsed();

    let lines = json_lines(&x);
    no_debug_forms(lines.iter().map(message));
    let session_up = lines.iter().find(|v| {
        v["target"] == "sdt::session" && message(v) == "peer y: session up: handshake done"
    });
    assert!(session_up.is_some_and(|v| v["level"] == "INFO" && v["peer"] == "y"));
    assert!(lines.iter().any(|v| message(v).starts_with(&format!(
        "service 1 (forward entry, peer y, listening on {entry}): started"
    ))));
    // Each reason: a burst per window (the first line at info, the rest at
    // debug), and the summaries carry the rest, to the count status shows.
    let windows = (elapsed.as_secs() / WINDOW.as_secs()) as usize + 1;
    for (reason, counted, source) in [
        ("malformed", forged, forger.local_addr().unwrap()),
        ("table_full", refused, clients[0].local_addr().unwrap()),
    ] {
        let (single, summarised) = drop_lines(&lines, reason);
        println!(
            "{reason}: {counted} counted, {} lines, {summarised} in summaries, {} lines in all",
            single.len(),
            lines.len()
        );
        assert!(single.len() <= BURST * windows, "{reason}: {single:#?}");
        assert_eq!(single[0]["level"], "INFO", "{}", single[0]);
        assert!(single[1..].iter().all(|v| v["level"] == "DEBUG"));
        assert_eq!(
            single.len() as u64 + summarised,
            counted,
            "{reason}: every drop accounted for once"
        );
        assert!(
            summarised > 0 && single.len() * 20 < counted as usize,
            "not rate limited: {} lines for {counted} drops",
            single.len()
        );
        if reason == "malformed" {
            let line = single[0];
            assert_eq!(line["layer"], "link", "{line}");
            assert_eq!(line["from"], source.to_string(), "{line}");
            assert!(
                message(line).starts_with(&format!(
                    "dropped a datagram from {source} (no peer's endpoint): link malformed"
                )),
                "{line}"
            );
        } else {
            let line = single[0];
            assert_eq!(line["layer"], "service", "{line}");
            assert_eq!(line["service"], 1, "{line}");
            assert!(line["from"].is_string(), "{line}");
            assert!(
                message(line).starts_with("dropped a datagram of service 1 from client 127.0.0.1:"),
                "{line}"
            );
        }
    }
    // Far fewer lines in all than drops.
    assert!(lines.len() * 10 < (forged + refused) as usize);

    // X restarts at the default level: Y logs the session down and up.
    let mut x = spawn(d, "x2", &["--log-format", "json"], &x_config, &x_socket);
    let back = wait_until(Duration::from_secs(20), || {
        let text = y.stderr_text();
        text.contains("peer x: session down: its node restarted")
            && text.matches("peer x: session up: handshake done").count() >= 2
    });
    assert!(back, "Y at the default level: {}", y.describe());

    // A reload is logged at the default level.
    let reloaded = run(
        Command::new(SDT).args(["reload", "-c"]).arg(&x_config),
        Duration::from_secs(20),
    );
    assert!(reloaded.ok(), "{reloaded}");

    // Y goes; forged datagrams from its address are named by its peer,
    // and what X sends it goes unanswered: X logs it stale.
    y.terminate_ok();
    let y_text = y.stderr_text();
    no_debug_forms(y_text.lines());
    assert!(!y_text.contains("DEBUG"), "{y_text}");
    let impostor = UdpSocket::bind(y_link).unwrap();
    for i in 0..20u8 {
        let _ = impostor.send_to(&[0xff, i, 0, 0, 0, 0, 0, 0], x_link);
    }
    let stale = wait_until(Duration::from_secs(30), || {
        let _ = first.send_to(b"anyone there?", entry);
        std::thread::sleep(Duration::from_millis(200));
        x.stderr_text()
            .contains("peer y: stale: sent to and not answering")
    });
    assert!(stale, "no stale line: {}", x.describe());
    x.terminate_ok();

    let lines = json_lines(&x);
    no_debug_forms(lines.iter().map(message));
    assert!(
        lines.iter().all(|v| v["level"] != "DEBUG"),
        "debug lines at the default level: {lines:#?}"
    );
    let has = |target: &str, start: &str| {
        lines
            .iter()
            .any(|v| v["target"] == target && message(v).starts_with(start))
    };
    assert!(has("sdt::session", "peer y: session up: handshake done"));
    assert!(has(
        "sdt::session",
        "peer y: stale: sent to and not answering"
    ));
    assert!(has(
        "sdt::session",
        &format!("reloaded {}", x_config.display())
    ));
    let (single, summarised) = drop_lines(&lines, "malformed");
    assert_eq!(single.len(), 1, "the first drop only: {single:#?}");
    assert_eq!(summarised, 0);
    assert_eq!(single[0]["peer"], "y", "{}", single[0]);
    assert!(
        message(single[0]).starts_with(&format!(
            "dropped a datagram from {y_link} (peer y's endpoint): link malformed (the first"
        )),
        "{}",
        single[0]
    );
}

/// With `--log-format json`, a node that refuses to start says why in a
/// JSON line too, with the same words as in text.
#[test]
fn a_refused_start_is_one_json_line() {
    let dir = support::temp_dir();
    let config = dir.path().join("broken.toml");
    write_private(&config, "private_key = \"not a key\"\n");
    let text = run(
        Command::new(SDT)
            .args(["run", "-c"])
            .arg(&config)
            .env_remove("RUST_LOG"),
        Duration::from_secs(10),
    );
    let json = run(
        Command::new(SDT)
            .args(["--log-format", "json", "run", "-c"])
            .arg(&config)
            .env_remove("RUST_LOG"),
        Duration::from_secs(10),
    );
    assert_eq!(text.code(), Some(1), "{text}");
    assert_eq!(json.code(), Some(1), "{json}");
    let lines: Vec<&str> = json.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{json}");
    let v: Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(v["level"], "ERROR", "{v}");
    assert_eq!(v["target"], "sdt", "{v}");
    assert!(v["timestamp"].is_string(), "{v}");
    assert_eq!(
        format!("sdt: {}", v["message"].as_str().unwrap()),
        text.stderr.trim_end(),
        "the same words"
    );
}

/// A stderr nobody reads (a stalled journal) stops only the log's writer
/// thread: X is started with its stderr a pipe that is full before X
/// writes a byte, and still comes up, answers `sdt status`, forwards and
/// counts a flood of drops at -vv; once the pipe is read, its lines come
/// out and it stops cleanly.
#[test]
fn a_stderr_nobody_reads_does_not_stall_the_node() {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let dir = support::temp_dir();
    let d = dir.path();
    let Pair {
        echo: _echo,
        x_link,
        entry,
        x_config,
        x_socket,
        y_config,
        y_socket,
        ..
    } = Pair::write(d, "");
    let mut y = spawn(d, "y", &[], &y_config, &y_socket);

    // The pipe, at its smallest and full.
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, owned from here on.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors of ours, each owned once.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let w = write_end.as_raw_fd();
    // SAFETY: fcntl and write on a descriptor we own, with a valid buffer.
    let prefilled = unsafe {
        libc::fcntl(w, libc::F_SETPIPE_SZ, 4096);
        let flags = libc::fcntl(w, libc::F_GETFL);
        libc::fcntl(w, libc::F_SETFL, flags | libc::O_NONBLOCK);
        let mut n = 0usize;
        loop {
            let r = libc::write(w, b"#".as_ptr().cast(), 1);
            if r != 1 {
                break;
            }
            n += 1;
        }
        // The node's writes are to block, as on a stalled journal.
        libc::fcntl(w, libc::F_SETFL, flags);
        n
    };
    assert!(prefilled >= 4096, "pipe of {prefilled} bytes");
    let queued = |fd: &OwnedFd| {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD into an int, on a descriptor we own.
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
        n as usize
    };

    let mut cmd = Command::new(SDT);
    cmd.args(["-vv", "--log-format", "json", "run", "-c"])
        .arg(&x_config)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(write_end));
    support::die_with_parent(&mut cmd);
    let mut x = cmd.spawn().unwrap();
    // The test's copy of the write end goes with `cmd`: X holds the only one.
    drop(cmd);
    let up = wait_until(Duration::from_secs(15), || {
        sdt::daemon::query_status(&x_socket, false).is_ok()
            && status_json(&x_socket).peers[0].session_up
    });
    assert!(up, "X did not come up with its stderr stalled");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(
        echoes_through(&client, entry),
        "no echo through X with its stderr stalled"
    );
    let forger = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..1000 {
        let _ = forger.send_to(&[0xff, i as u8, 0, 0, 0, 0, 0, 0], x_link);
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let counted = settled(&x_socket, malformed);
    assert!(counted >= 500, "only {counted} of 1000 counted");
    assert_eq!(
        queued(&read_end),
        prefilled,
        "X got a byte into the full pipe"
    );

    // Read the pipe; X's lines come out, and it stops cleanly.
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = std::fs::File::from(read_end).read_to_end(&mut all);
        all
    });
    // SAFETY: kill(2) on our own child, not reaped yet.
    unsafe { libc::kill(x.id() as i32, libc::SIGTERM) };
    let exited = wait_until(Duration::from_secs(20), || {
        x.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = x.kill();
    }
    let status = x.wait().unwrap();
    assert!(exited && status.success(), "X: {status}");
    let all = reader.join().unwrap();
    let text = String::from_utf8_lossy(&all[prefilled..]).into_owned();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    println!("{} lines once the pipe was read", lines.len());
    assert!(lines
        .iter()
        .any(|v| message(v) == "peer y: session up: handshake done"));
    assert!(lines.iter().any(|v| v["reason"] == "malformed"));
    assert!(lines.iter().any(|v| message(v) == "stopping"));
    y.terminate_ok();
}
