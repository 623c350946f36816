//! The batches against real loopback sockets. Waits are bounded polls, never
//! timed assertions.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use super::*;

/// Counts the allocations of the calling thread, so that a test can show the
/// batches allocate nothing after construction while other tests run.
struct PerThread;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: defers to the system allocator; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for PerThread {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: PerThread = PerThread;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const WAIT: Duration = Duration::from_secs(5);

fn socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().unwrap()
}

/// A send batch of `capacity` holding `ranges`, each from `tx` to `rx`.
fn batch_to(
    capacity: usize,
    offloads: &Offloads,
    tx: &UdpSocket,
    rx: &UdpSocket,
    ranges: &[Range<usize>],
) -> SendBatch {
    let mut batch = SendBatch::new(capacity, offloads);
    for r in ranges {
        batch
            .push(tx.as_raw_fd(), Some(addr(rx)), r.clone())
            .unwrap();
    }
    batch
}

/// Waits (at most [`WAIT`]) until `fd` has something to read.
fn readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the length of the call.
    #[allow(unsafe_code)]
    let n = unsafe { libc::poll(&mut p, 1, WAIT.as_millis() as libc::c_int) };
    n > 0
}

/// Reads `n` datagrams from a plain socket: (source, bytes).
fn plain_recv(s: &UdpSocket, n: usize) -> Received {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = vec![0; 70_000];
    (0..n)
        .map(|_| {
            let (len, from) = s.recv_from(&mut buf).expect("a datagram within the wait");
            (from, buf[..len].to_vec())
        })
        .collect()
}

/// Reads with `batch` until `n` datagrams have come: (source, bytes), and
/// the number of messages they came in.
fn batch_recv(batch: &mut RecvBatch, fd: RawFd, n: usize) -> (Received, usize) {
    let mut got = Vec::new();
    let mut messages = 0;
    let deadline = Instant::now() + WAIT;
    while got.len() < n && Instant::now() < deadline {
        match batch.recv(fd) {
            Ok(_) => {
                messages += batch.messages();
                while let Some(d) = batch.next_datagram() {
                    got.push((d.from, d.slot[d.range].to_vec()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                readable(fd);
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
    (got, messages)
}

/// A caller's buffer with datagrams in slots of `stride` bytes, a gap before
/// each: datagram `i` is `len` bytes of value `seed + i` at `i * stride + 16`.
fn slotted(lens: &[usize], stride: usize, seed: u8) -> (Vec<u8>, Vec<Range<usize>>) {
    let mut buf = vec![0xEE; lens.len() * stride];
    let ranges = lens
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let start = i * stride + 16;
            let value = seed.wrapping_add(i as u8);
            buf[start..start + len].fill(value);
            // Mark the first bytes with the index so a swap would show.
            if len >= 2 {
                buf[start..start + 2].copy_from_slice(&(i as u16).to_be_bytes());
            }
            start..start + len
        })
        .collect();
    (buf, ranges)
}

use std::ops::Range;

#[test]
fn probe_finds_the_offloads_of_this_kernel() {
    let offloads = Offloads::probe();
    assert!(offloads.gso, "{}", offloads.describe());
    assert!(offloads.gro, "{}", offloads.describe());
    assert!(offloads.rxq_ovfl, "{}", offloads.describe());
    assert_eq!(offloads.describe(), "recvmmsg+gro, sendmmsg+gso, rxq_ovfl");
    let failed = offloads.gso_failed(libc::EIO);
    assert!(!failed.gso);
    assert!(failed
        .describe()
        .starts_with("recvmmsg+gro, sendmmsg, rxq_ovfl (no gso: a send failed: "));
    assert_eq!(
        Offloads::none().describe(),
        "recvmmsg, sendmmsg (no gro: turned off; no gso: turned off; no rxq_ovfl: turned off)"
    );
}

#[test]
fn prepare_reports_the_buffers_obtained() {
    let s = socket();
    let setup = prepare(s.as_raw_fd(), &Offloads::probe(), true, BURST_SOCKET_BUFFER).unwrap();
    assert!(setup.gro && setup.rxq_ovfl, "{setup:?}");
    assert_eq!(
        setup.recv_buffer,
        sys::get_int(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap() as usize
    );
    // SAFETY: geteuid takes nothing and cannot fail.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        assert!(setup.forced, "{setup:?}");
        assert!(setup.recv_buffer >= BURST_SOCKET_BUFFER, "{setup:?}");
        assert!(setup.send_buffer >= BURST_SOCKET_BUFFER, "{setup:?}");
    }
    let off = prepare(s.as_raw_fd(), &Offloads::none(), true, 1 << 16).unwrap();
    assert!(!off.gro && !off.rxq_ovfl, "{off:?}");
    assert!(prepare(-1, &Offloads::none(), false, 1 << 16).is_err());
}

#[test]
fn gso_run_arrives_as_separate_datagrams_at_a_plain_receiver() {
    let rx = socket();
    let tx = socket();
    let mut lens = vec![1000; 10];
    lens.push(300);
    let (buf, ranges) = slotted(&lens, 1100, 1);
    let mut batch = batch_to(BATCH, &Offloads::probe(), &tx, &rx, &ranges);
    let stats = batch.flush(&buf);
    assert_eq!(
        stats,
        FlushStats {
            sent: 11,
            calls: 1,
            gso_messages: 1,
            ..FlushStats::default()
        }
    );
    assert!(batch.is_empty() && batch.failures().is_empty());
    let got = plain_recv(&rx, 11);
    for (i, (from, bytes)) in got.iter().enumerate() {
        assert_eq!(*from, addr(&tx));
        assert_eq!(bytes[..], buf[ranges[i].clone()], "datagram {i}");
    }
}

#[test]
fn gro_receive_yields_each_segment_with_its_source() {
    let offloads = Offloads::probe();
    let rx = socket();
    let setup = prepare(rx.as_raw_fd(), &offloads, true, BURST_SOCKET_BUFFER).unwrap();
    assert!(setup.gro);
    let tx = socket();
    let mut lens = vec![1200; 8];
    lens.push(500);
    let (buf, ranges) = slotted(&lens, 1300, 40);
    let mut send = batch_to(BATCH, &offloads, &tx, &rx, &ranges);
    assert_eq!(send.flush(&buf).gso_messages, 1);

    let mut recv = RecvBatch::new(4, 48, 1500, 16, true);
    assert_eq!(recv.slot_payload(), GRO_SLOT_PAYLOAD);
    assert!(readable(rx.as_raw_fd()));
    let ready = recv.recv(rx.as_raw_fd()).unwrap();
    assert_eq!(ready, 9);
    assert_eq!(
        recv.messages(),
        1,
        "loopback hands the GSO train over whole"
    );
    let stride = 48 + GRO_SLOT_PAYLOAD + 16;
    let mut offset = 48;
    for i in 0..9 {
        let d = recv.next_datagram().expect("nine segments");
        assert_eq!(d.from, addr(&tx));
        assert_eq!(d.slot_index, 0);
        assert_eq!(d.slot.len(), stride);
        assert_eq!(d.range, offset..offset + lens[i]);
        assert_eq!(
            d.slot[d.range.clone()],
            buf[ranges[i].clone()],
            "segment {i}"
        );
        let room_start = if i == 0 { 0 } else { offset };
        let room_end = if i == 8 { stride } else { offset + lens[i] };
        assert_eq!(d.room, room_start..room_end, "segment {i}");
        offset += lens[i];
    }
    assert!(recv.next_datagram().is_none());
    assert_eq!(
        recv.recv(rx.as_raw_fd()).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
}

/// Datagrams as received: (source, bytes).
type Received = Vec<(SocketAddr, Vec<u8>)>;

/// What [`mixed`] sent and received.
struct Mixed {
    /// What each of the two receivers got, in order.
    got: [Received; 2],
    stats: FlushStats,
    /// The two sending sockets.
    s1: SocketAddr,
    s2: SocketAddr,
}

/// Sends a mix: runs to two receivers from one socket, a connected socket,
/// a lone datagram.
fn mixed(offloads: &Offloads) -> Mixed {
    let r1 = socket();
    let r2 = socket();
    let s1 = socket();
    let s2 = socket();
    s2.connect(addr(&r2)).unwrap();
    let lens = [700, 700, 700, 400, 400, 900, 650, 650, 100, 1];
    let (buf, ranges) = slotted(&lens, 1000, 100);
    let plan: [(RawFd, Option<SocketAddr>); 10] = [
        (s1.as_raw_fd(), Some(addr(&r1))),
        (s1.as_raw_fd(), Some(addr(&r1))),
        (s1.as_raw_fd(), Some(addr(&r1))),
        (s1.as_raw_fd(), Some(addr(&r2))),
        (s1.as_raw_fd(), Some(addr(&r2))),
        (s1.as_raw_fd(), Some(addr(&r1))),
        (s2.as_raw_fd(), None),
        (s2.as_raw_fd(), None),
        (s2.as_raw_fd(), None),
        (s1.as_raw_fd(), Some(addr(&r2))),
    ];
    let mut batch = SendBatch::new(16, offloads);
    for ((fd, to), r) in plan.iter().zip(&ranges) {
        batch.push(*fd, *to, r.clone()).unwrap();
    }
    let stats = batch.flush(&buf);
    let mut rb = RecvBatch::new(8, 0, 2048, 0, false);
    let (got1, _) = batch_recv(&mut rb, r1.as_raw_fd(), 4);
    let (got2, _) = batch_recv(&mut rb, r2.as_raw_fd(), 6);
    for (i, r) in ranges.iter().enumerate() {
        let at_r1 = plan[i].1 == Some(addr(&r1));
        let got = if at_r1 { &got1 } else { &got2 };
        assert!(
            got.iter().any(|(_, b)| b[..] == buf[r.clone()]),
            "datagram {i}"
        );
    }
    Mixed {
        got: [got1, got2],
        stats,
        s1: addr(&s1),
        s2: addr(&s2),
    }
}

#[test]
fn mixed_destinations_and_sockets_arrive_in_order() {
    let Mixed { got, stats, s1, s2 } = mixed(&Offloads::probe());
    // Three calls: s1 [3 to r1 (GSO), 2 to r2 (GSO), 1 to r1]; s2 [650,
    // 650, 100 (GSO, the last shorter)]; s1 [1 to r2].
    assert_eq!(
        stats,
        FlushStats {
            sent: 10,
            calls: 3,
            gso_messages: 3,
            ..FlushStats::default()
        }
    );
    let sources = |g: &Received| g.iter().map(|(a, _)| *a).collect::<Vec<_>>();
    assert_eq!(sources(&got[0]), vec![s1; 4]);
    assert_eq!(sources(&got[1]), vec![s1, s1, s2, s2, s2, s1]);
    let sizes = |g: &Received| g.iter().map(|(_, b)| b.len()).collect::<Vec<_>>();
    assert_eq!(sizes(&got[0]), vec![700, 700, 700, 900]);
    assert_eq!(sizes(&got[1]), vec![400, 400, 650, 650, 100, 1]);
}

#[test]
fn sendmmsg_without_offloads_gives_the_same_datagrams() {
    let with = mixed(&Offloads::probe());
    let without = mixed(&Offloads::none());
    let stats = without.stats;
    assert_eq!(
        stats,
        FlushStats {
            sent: 10,
            calls: 3,
            ..FlushStats::default()
        }
    );
    // The senders' ports differ between the runs: compare which sender.
    let strip = |m: &Mixed| {
        let (a, b) = (m.s1, m.s2);
        m.got
            .iter()
            .map(|r| {
                r.iter()
                    .map(|(from, bytes)| (*from == a, *from == b, bytes.clone()))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&with), strip(&without));
}

#[test]
fn gso_failing_with_einval_is_turned_off_and_the_datagrams_resent() {
    let rx = socket();
    let tx = socket();
    // A socket without UDP checksums cannot use GSO: the kernel refuses a
    // GSO send with EINVAL, as a device without checksum offload does with
    // EIO.
    sys::set_int(tx.as_raw_fd(), libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
    let (buf, ranges) = slotted(&[800, 800, 800, 800, 200], 900, 7);
    let mut batch = SendBatch::new(BATCH, &Offloads::probe());
    assert!(batch.gso());
    for r in &ranges {
        batch
            .push(tx.as_raw_fd(), Some(addr(&rx)), r.clone())
            .unwrap();
    }
    let stats = batch.flush(&buf);
    assert!(stats.gso_turned_off, "{stats:?}");
    assert_eq!((stats.sent, stats.errors, stats.gso_messages), (5, 0, 0));
    assert!(batch.failures().is_empty());
    assert!(!batch.gso());
    assert_eq!(
        batch.why_no_gso(),
        Some(Unavailable::FailedAt(libc::EINVAL))
    );
    let got = plain_recv(&rx, 5);
    for (i, (_, bytes)) in got.iter().enumerate() {
        assert_eq!(bytes[..], buf[ranges[i].clone()]);
    }
    // Later flushes do not try GSO again.
    for r in &ranges {
        batch
            .push(tx.as_raw_fd(), Some(addr(&rx)), r.clone())
            .unwrap();
    }
    let stats = batch.flush(&buf);
    assert_eq!(
        (stats.sent, stats.calls, stats.gso_turned_off),
        (5, 1, false)
    );
}

#[test]
fn a_refused_datagram_is_reported_and_the_rest_go_out() {
    let rx = socket();
    let tx = socket();
    let (buf, ranges) = slotted(&[100, 70_000, 300], 70_100, 3);
    let mut batch = batch_to(8, &Offloads::probe(), &tx, &rx, &ranges);
    let stats = batch.flush(&buf);
    assert_eq!((stats.sent, stats.errors), (2, 1), "{stats:?}");
    assert_eq!(
        batch.failures(),
        &[SendFailed {
            index: 1,
            fd: tx.as_raw_fd(),
            why: SendFailure::Error(libc::EMSGSIZE)
        }]
    );
    let sizes: Vec<usize> = plain_recv(&rx, 2).iter().map(|(_, b)| b.len()).collect();
    assert_eq!(sizes, vec![100, 300]);
}

#[test]
fn connection_refused_on_a_connected_socket_is_reported_per_datagram() {
    let gone = socket();
    let target = addr(&gone);
    drop(gone);
    let tx = socket();
    tx.connect(target).unwrap();
    let buf = [9u8; 64];
    let mut batch = SendBatch::new(4, &Offloads::probe());
    // The first datagram draws an ICMP port unreachable; a later send on the
    // connected socket reports it.
    let mut refused = None;
    for _ in 0..100 {
        batch.push(tx.as_raw_fd(), None, 0..64).unwrap();
        batch.flush(&buf);
        if let Some(f) = batch.failures().first() {
            refused = Some(*f);
            break;
        }
        readable(tx.as_raw_fd());
    }
    assert_eq!(
        refused,
        Some(SendFailed {
            index: 0,
            fd: tx.as_raw_fd(),
            why: SendFailure::Error(libc::ECONNREFUSED)
        })
    );
}

#[test]
fn ipv6_gso_and_gro_carry_the_right_sources() {
    let offloads = Offloads::probe();
    let rx = UdpSocket::bind("[::1]:0").unwrap();
    prepare(rx.as_raw_fd(), &offloads, true, BURST_SOCKET_BUFFER).unwrap();
    let tx = UdpSocket::bind("[::1]:0").unwrap();
    let (buf, ranges) = slotted(&[1300, 1300, 1300, 20], 1400, 60);
    let mut send = batch_to(8, &offloads, &tx, &rx, &ranges);
    assert_eq!(send.flush(&buf).gso_messages, 1);
    let mut recv = RecvBatch::new(8, 48, 1500, 16, true);
    let (got, messages) = batch_recv(&mut recv, rx.as_raw_fd(), 4);
    assert_eq!(messages, 1);
    for (i, (from, bytes)) in got.iter().enumerate() {
        assert_eq!(*from, addr(&tx));
        assert_eq!(bytes[..], buf[ranges[i].clone()]);
    }
}

#[test]
fn bad_ranges_are_counted_not_sent() {
    let rx = socket();
    let tx = socket();
    let buf = [5u8; 100];
    let mut batch = SendBatch::new(5, &Offloads::probe());
    let to = Some(addr(&rx));
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = || 50..10;
    batch.push(tx.as_raw_fd(), to, reversed()).unwrap();
    batch.push(tx.as_raw_fd(), to, 0..40).unwrap();
    batch.push(tx.as_raw_fd(), to, 90..101).unwrap();
    batch.push(tx.as_raw_fd(), to, 40..80).unwrap();
    batch.push(tx.as_raw_fd(), to, reversed()).unwrap();
    assert_eq!(batch.push(tx.as_raw_fd(), to, 0..1), Err(send::BatchFull));
    let stats = batch.flush(&buf);
    assert_eq!((stats.sent, stats.bad_range), (2, 3), "{stats:?}");
    let bad: Vec<(usize, SendFailure)> =
        batch.failures().iter().map(|f| (f.index, f.why)).collect();
    assert_eq!(
        bad,
        vec![
            (0, SendFailure::BadRange),
            (2, SendFailure::BadRange),
            (4, SendFailure::BadRange)
        ]
    );
    // The bad entry between them keeps the two good ones out of one GSO run.
    assert_eq!(stats.gso_messages, 0);
    assert_eq!(plain_recv(&rx, 2).len(), 2);
}

/// A network namespace for one test, deleted when dropped. Named like the
/// end-to-end tests' (`sdte2e-<pid>-<tag>`) so that their sweep removes one
/// a killed run left behind.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("sdte2e-{}-{tag}", std::process::id());
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .status();
        let ns = Netns(name);
        ns.run("ip", &["netns", "add", &ns.0]);
        ns.run("ip", &["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    fn run(&self, program: &str, args: &[&str]) {
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(status.success(), "{program} {args:?}: {status}");
    }

    /// Runs `f` on a thread of its own inside the namespace (`setns` moves
    /// only the calling thread).
    fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            // SAFETY: setns on a namespace file descriptor that lives
            // across the call; it affects only this thread.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

#[test]
fn a_full_send_queue_drops_and_counts_without_blocking() {
    let ns = Netns::new("udpfull");
    // A slow qdisc holds datagrams, and the sender's buffer with them, so a
    // small send buffer fills and the kernel answers EAGAIN.
    ns.run(
        "tc",
        &[
            "-n", &ns.0, "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "8kbit", "burst",
            "1600", "limit", "1000000",
        ],
    );
    let (stats, failures) = ns.enter(|| {
        let rx = socket();
        let tx = socket();
        sys::set_int(tx.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, 1).unwrap();
        let (buf, ranges) = slotted(&[1000; 40], 1100, 0);
        let mut batch = batch_to(BATCH, &Offloads::none(), &tx, &rx, &ranges);
        let stats = batch.flush(&buf);
        (stats, batch.failures().to_vec())
    });
    assert!(stats.sent > 0 && stats.queue_full > 0, "{stats:?}");
    assert_eq!(stats.sent + stats.queue_full, 40, "{stats:?}");
    // The first refusal drops the rest of the call without trying them.
    let indices: Vec<usize> = failures.iter().map(|f| f.index).collect();
    assert_eq!(indices, (stats.sent..40).collect::<Vec<_>>());
    assert!(failures.iter().all(|f| f.why == SendFailure::QueueFull));
    assert_eq!(stats.calls, 2, "{stats:?}");
}

#[test]
fn a_gso_run_over_the_mtu_goes_one_by_one_and_gso_stays_on() {
    let ns = Netns::new("udpmtu");
    ns.run("ip", &["-n", &ns.0, "link", "set", "lo", "mtu", "1200"]);
    let (stats, gso, got) = ns.enter(|| {
        let rx = socket();
        let tx = socket();
        // Segments larger than the MTU: GSO refuses them (EMSGSIZE), one by
        // one the kernel fragments them.
        let (buf, ranges) = slotted(&[1300, 1300, 1300], 1400, 20);
        let mut batch = batch_to(8, &Offloads::probe(), &tx, &rx, &ranges);
        let stats = batch.flush(&buf);
        let got: Vec<bool> = plain_recv(&rx, 3)
            .iter()
            .zip(&ranges)
            .map(|((_, b), r)| b[..] == buf[r.clone()])
            .collect();
        (stats, batch.gso(), got)
    });
    assert_eq!(
        (stats.sent, stats.errors, stats.gso_messages),
        (3, 0, 0),
        "{stats:?}"
    );
    assert!(!stats.gso_turned_off && gso, "{stats:?}");
    // One refused GSO message, then one call with the three alone.
    assert_eq!(stats.calls, 2, "{stats:?}");
    assert_eq!(got, vec![true; 3]);
}

#[test]
fn truncated_datagrams_are_counted_not_delivered() {
    let rx = socket();
    let tx = socket();
    tx.send_to(&[1; 200], addr(&rx)).unwrap();
    tx.send_to(&[2; 50], addr(&rx)).unwrap();
    tx.send_to(&[], addr(&rx)).unwrap();
    let mut batch = RecvBatch::new(8, 8, 100, 8, false);
    let (got, _) = batch_recv(&mut batch, rx.as_raw_fd(), 2);
    assert_eq!(got, vec![(addr(&tx), vec![2; 50]), (addr(&tx), vec![])]);
    assert_eq!(batch.truncated(), 1);
}

#[test]
fn kernel_drops_are_counted_when_the_receive_buffer_overflows() {
    let offloads = Offloads::probe();
    let rx = socket();
    // The smallest buffer the kernel allows: a few datagrams' worth.
    let setup = prepare(rx.as_raw_fd(), &offloads, false, 1).unwrap();
    assert!(setup.rxq_ovfl);
    let tx = socket();
    let sent = 200u64;
    for _ in 0..sent {
        tx.send_to(&[0; 1000], addr(&rx)).unwrap();
    }
    let mut batch = RecvBatch::new(BATCH, 0, 2048, 0, false);
    let mut delivered = 0u64;
    let mut markers = 0u64;
    // The drop count rides on datagrams queued after the drops: send one
    // marker at a time and read until the count and the deliveries add up.
    for _ in 0..50 {
        loop {
            match batch.recv(rx.as_raw_fd()) {
                Ok(n) => delivered += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        if batch.kernel_drops() + delivered == sent + markers && markers > 0 {
            break;
        }
        tx.send_to(&[1; 10], addr(&rx)).unwrap();
        markers += 1;
        readable(rx.as_raw_fd());
    }
    assert!(batch.kernel_drops() > 0);
    assert_eq!(batch.kernel_drops() + delivered, sent + markers);
    let mut per_socket = KernelDrops::default();
    per_socket.observe(batch.drop_counter().unwrap_or(0));
    assert!(per_socket.total() <= batch.kernel_drops());
}

#[test]
fn kernel_drop_counter_wraps() {
    let mut d = KernelDrops::default();
    d.observe(10);
    d.observe(10);
    d.observe(4); // stale
    assert_eq!(d.total(), 10);
    // Forward in steps under half the range, past the wrap.
    d.observe(0x8000_0000);
    d.observe(u32::MAX);
    d.observe(5);
    assert_eq!(d.total(), (1u64 << 32) + 5);
}

#[test]
fn nothing_is_allocated_after_construction() {
    let offloads = Offloads::probe();
    let rx = socket();
    prepare(rx.as_raw_fd(), &offloads, true, BURST_SOCKET_BUFFER).unwrap();
    let tx = socket();
    let (buf, ranges) = slotted(&[1000, 1000, 1000, 500, 64, 64], 1100, 9);
    let to = Some(addr(&rx));
    let (txfd, rxfd) = (tx.as_raw_fd(), rx.as_raw_fd());
    let mut send = SendBatch::new(BATCH, &offloads);
    let mut recv = RecvBatch::new(BATCH, 48, 1500, 16, true);
    let mut total = 0;
    let before = allocations();
    for _ in 0..20 {
        for r in &ranges {
            send.push(txfd, to, r.clone()).unwrap();
        }
        let stats = send.flush(&buf);
        assert_eq!(stats.sent, 6);
        let mut got = 0;
        while got < 6 {
            match recv.recv(rxfd) {
                Ok(_) => {
                    while let Some(d) = recv.next_datagram() {
                        got += 1;
                        total += d.range.len();
                    }
                }
                Err(_) => {
                    readable(rxfd);
                }
            }
        }
    }
    assert_eq!(allocations(), before);
    assert_eq!(total, 20 * (3000 + 500 + 128));
}

/// How a benchmark run sends and reads.
#[derive(Clone, Copy)]
enum Mode {
    /// `send_to` per datagram, `recv_from` per datagram.
    Plain,
    /// [`SendBatch`] and [`RecvBatch`] without offloads.
    Batched,
    /// The same with GSO and GRO.
    Offloaded,
}

/// Datagrams per second on loopback, sent and read, one system call per
/// datagram against the batches: `cargo test -p sdt --release --lib --
/// --ignored --nocapture udp_rate`. Sender and reader share the machine's
/// cores with everything else: the figures move between runs, the ratios
/// less.
#[test]
#[ignore = "a benchmark: prints figures"]
fn udp_rate() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let probed = Offloads::probe();
    println!("offloads: {}", probed.describe());
    for size in [64usize, 1400] {
        let mut rates = Vec::new();
        for (name, mode) in [
            ("send_to/recv_from", Mode::Plain),
            ("sendmmsg/recvmmsg", Mode::Batched),
            ("+gso/+gro", Mode::Offloaded),
        ] {
            let offloads = match mode {
                Mode::Offloaded => probed,
                _ => Offloads::none(),
            };
            let rx = socket();
            prepare(rx.as_raw_fd(), &offloads, true, BURST_SOCKET_BUFFER).unwrap();
            rx.set_nonblocking(true).unwrap();
            let to = addr(&rx);
            let stop = Arc::new(AtomicBool::new(false));
            let reader = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let gro = matches!(mode, Mode::Offloaded);
                    let mut batch = RecvBatch::new(BATCH, 48, 2048, 16, gro);
                    let mut plain = vec![0u8; 2048];
                    let mut got = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let r = match mode {
                            Mode::Plain => rx.recv_from(&mut plain).map(|_| 1),
                            _ => batch.recv(rx.as_raw_fd()),
                        };
                        match r {
                            Ok(k) => got += k as u64,
                            Err(_) => std::thread::yield_now(),
                        }
                    }
                    got
                })
            };
            let tx = socket();
            let (buf, ranges) = slotted(&vec![size; BATCH], size + 64, 0);
            let mut batch = SendBatch::new(BATCH, &offloads);
            let n = 300_000;
            let start = Instant::now();
            let mut sent = 0;
            while sent < n {
                match mode {
                    Mode::Plain => {
                        for r in &ranges {
                            let _ = tx.send_to(&buf[r.clone()], to);
                        }
                    }
                    _ => {
                        for r in &ranges {
                            let _ = batch.push(tx.as_raw_fd(), Some(to), r.clone());
                        }
                        batch.flush(&buf);
                    }
                }
                sent += BATCH;
            }
            let elapsed = start.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            let got = reader.join().unwrap();
            let (sent_rate, read_rate) = (sent as f64 / elapsed, got as f64 / elapsed);
            println!("{size:>5} B {name:<18} {sent_rate:>10.0} sent/s {read_rate:>10.0} read/s");
            rates.push(read_rate);
        }
        println!(
            "{size:>5} B read/s against send_to/recv_from: batched {:.2}x, offloaded {:.2}x",
            rates[1] / rates[0],
            rates[2] / rates[0]
        );
    }
}
