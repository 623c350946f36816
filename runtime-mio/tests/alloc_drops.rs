//! No heap allocation per dropped datagram once the drop log's burst is
//! spent: with the drop log on at debug (JSON lines to a sink), 10,000
//! forged link datagrams are counted by two in-process nodes while the
//! allocation count barely moves: the suppressed ones are only counted
//! (docs/logging.md). A file of its own: the allocation count is the
//! process's, and another test's traffic would show in it.

mod counting;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};

use counting::{allocations, localhost, Tunnel};

/// Log lines written, to a sink.
static LINES: AtomicU64 = AtomicU64::new(0);

/// Counts the log lines it is given, and drops them.
struct Lines;

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = b.iter().filter(|&&c| c == b'\n').count();
        LINES.fetch_add(n as u64, Ordering::Relaxed);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Forged link datagrams of the measured flood.
const FORGED: u64 = 10_000;

#[test]
fn a_suppressed_drop_does_not_allocate() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("sdt::drop=debug"))
        .event_format(sdt::logfmt::Json)
        .with_writer(|| Lines)
        .try_init();
    assert!(tracing::enabled!(target: "sdt::drop", tracing::Level::DEBUG));

    let t = Tunnel::start();
    let forger = UdpSocket::bind(localhost()).unwrap();
    let forged = [0xffu8, 0, 0, 0, 0, 0, 0, 0];
    // Warm up: the channel, every lazily grown buffer, and the drop log's
    // burst of lines for `malformed`.
    t.round_trips(100);
    for _ in 0..100 {
        forger.send_to(&forged, t.x.link_addr()).unwrap();
    }
    t.round_trips(1);

    // The drop log is on: the warm-up's forged datagrams were logged, a
    // burst of them.
    let logged = LINES.load(Ordering::SeqCst);
    assert!(logged >= 5, "{logged} log lines");
    let before = allocations();
    for i in 0..FORGED {
        forger.send_to(&forged, t.x.link_addr()).unwrap();
        if i % 500 == 499 {
            // Paced, so that the kernel drops none: the echo comes back
            // through X's link socket, after the forged ones before it.
            t.round_trips(1);
        }
    }
    t.round_trips(1);
    let after = allocations();

    let sx = t.stop();
    let malformed: u64 = sx
        .unattributed_drops
        .iter()
        .filter(|(r, _)| r == "malformed")
        .map(|(_, n)| n)
        .sum();
    assert!(
        malformed >= FORGED * 9 / 10,
        "only {malformed} forged datagrams counted"
    );
    // Not one allocation per drop: the round trips and a window's end (5
    // lines and a summary, each formatted) may take a few hundred.
    let grown = after - before;
    println!(
        "{grown} allocations while {malformed} forged datagrams were dropped, {} log lines",
        LINES.load(Ordering::SeqCst)
    );
    assert!(
        grown < FORGED / 20,
        "{grown} allocations for {FORGED} drops"
    );
}
