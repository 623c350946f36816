//! Prometheus metrics: `metrics_listen = "127.0.0.1:9920"` serves
//! `GET /metrics` in the Prometheus text exposition format (version 0.0.4),
//! rendered by [`render`] from the same [`Status`] snapshot `sdt status`
//! shows. The names are listed in docs/metrics.md.
//!
//! # A scraper never stalls the data path
//!
//! The server is the control socket's design over TCP (see
//! `runtime-mio/src/daemon/control.rs`): a thread of its own (`sdt-metrics`) accepts; each
//! admitted client is served on a short-lived thread with blocking I/O
//! under deadlines ([`READ_TIMEOUT`] for the whole request head, at most
//! [`MAX_REQUEST`] bytes of it, [`WRITE_TIMEOUT`] to take the answer); at
//! most [`MAX_CLIENTS`] are served at once and one more gets a `503` and is
//! closed at once. The snapshot comes through the control plane's bounded
//! request queue and the loop's `Waker` (a full queue is a `503`, never a
//! wait), so the loop's share is the one snapshot per wake-up it already
//! takes for `sdt status`. A client that connects and sends nothing holds
//! one slot and a few KiB for [`READ_TIMEOUT`], then is closed; memory is
//! bounded by the slots times (request cap + one rendered answer).
//!
//! Why hand-written and not `tiny_http`: what is needed is one route and
//! `Connection: close`, a few hundred lines here with the bounds; tiny_http grows its
//! worker pool with the clients waiting and has no deadline for reading a
//! request head, the two things a slow or hostile scraper exploits, and
//! bounding them would take as much code around it as this.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Waker;
use tracing::{debug, info};

use super::control::{Request, SnapshotError, Snapshots};
use super::serve::{AcceptThread, Config, Handler, ReadFailed, Refusal, Stats, Stream as _};
use crate::status::Status;

/// Scrapers served at once; one more is answered `503` and closed.
pub const MAX_CLIENTS: usize = 4;
/// How long a client may take to send its whole request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client may take to read the answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest request head read; a longer one is answered `431`.
pub const MAX_REQUEST: usize = 4096;
/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics server: the listening socket and the thread that serves it.
pub struct Server {
    stats: Arc<Stats>,
    /// Stopped and joined on drop.
    _accept: AcceptThread,
    addr: SocketAddr,
}

impl Server {
    /// Binds `addr` (a failure is the caller's start error) and serves it
    /// on a thread, asking the loop for snapshots through `requests` and
    /// `loop_waker`.
    pub fn start(
        addr: SocketAddr,
        requests: SyncSender<Request>,
        loop_waker: Arc<Waker>,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = mio::net::TcpListener::from_std(listener);
        let stats = Arc::new(Stats::default());
        let service = Service {
            snapshots: Snapshots::new(stats.clone(), requests, loop_waker),
        };
        let config = Config {
            name: "metrics server",
            thread: "sdt-metrics",
            client_thread: "sdt-metrics-client",
            max_clients: MAX_CLIENTS,
        };
        let accept = AcceptThread::start(listener, service, stats.clone(), config)?;
        info!("serving Prometheus metrics on http://{addr}/metrics");
        Ok(Server {
            stats,
            _accept: accept,
            addr,
        })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Scrapers refused and timed out, for the loop's snapshots.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

/// A whole HTTP/1.1 response that closes the connection.
fn response(status: &str, content_type: &str, body: &str) -> String {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        r.push_str("Allow: GET, HEAD\r\n");
    }
    r.push_str("\r\n");
    r.push_str(body);
    r
}

/// What every scraper's thread shares.
struct Service {
    snapshots: Snapshots,
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `GET /metrics` (with `head`: `HEAD /metrics`, no body).
    Metrics { head: bool },
    /// Another path.
    NotFound,
    /// Another method.
    MethodNotAllowed,
    /// Not an HTTP request line.
    BadRequest,
}

/// Routes a request head's first line.
fn route(head: &[u8]) -> Route {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Route::BadRequest;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or("");
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    if path == "/metrics" {
        Route::Metrics { head }
    } else {
        Route::NotFound
    }
}

/// How reading a request head ended early.
#[derive(Debug)]
enum ReadError {
    /// Not all of it within [`READ_TIMEOUT`].
    Timeout,
    /// Longer than [`MAX_REQUEST`].
    TooLarge,
    /// The client closed first, or the socket failed.
    Closed,
}

/// Reads a request head (up to the empty line) into `buf` by `deadline`;
/// returns its length.
fn read_head(stream: &TcpStream, buf: &mut [u8], deadline: Instant) -> Result<usize, ReadError> {
    let mut len = 0;
    loop {
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n")
            || buf[..len].windows(2).any(|w| w == b"\n\n")
        {
            return Ok(len);
        }
        if len == buf.len() {
            return Err(ReadError::TooLarge);
        }
        match stream.read_by(&mut buf[len..], deadline) {
            Ok(0) | Err(ReadFailed::Io(_)) => return Err(ReadError::Closed),
            Ok(n) => len += n,
            Err(ReadFailed::Timeout) => return Err(ReadError::Timeout),
        }
    }
}

impl Handler<TcpStream> for Service {
    const MAX_REQUEST: usize = MAX_REQUEST;

    fn serve(&self, stream: &TcpStream) {
        if stream.set_nonblocking(false).is_err() {
            return;
        }
        let mut buf = [0u8; MAX_REQUEST];
        let answer = match read_head(stream, &mut buf, Instant::now() + READ_TIMEOUT) {
            Ok(len) => match route(&buf[..len]) {
                Route::Metrics { head } => match self.snapshot() {
                    Ok(status) => {
                        let body = render(&status);
                        let mut r = response("200 OK", CONTENT_TYPE, &body);
                        if head {
                            r.truncate(r.len() - body.len());
                        }
                        r
                    }
                    Err(why) => response("503 Service Unavailable", "text/plain", why),
                },
                Route::NotFound => response("404 Not Found", "text/plain", "only /metrics\n"),
                Route::MethodNotAllowed => {
                    response("405 Method Not Allowed", "text/plain", "only GET\n")
                }
                Route::BadRequest => response("400 Bad Request", "text/plain", "bad request\n"),
            },
            Err(ReadError::TooLarge) => response(
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n",
            ),
            Err(ReadError::Timeout) => {
                self.snapshots
                    .stats
                    .timeouts
                    .fetch_add(1, Ordering::Relaxed);
                debug!("metrics client: no request within {READ_TIMEOUT:?}");
                return;
            }
            Err(ReadError::Closed) => return,
        };
        if stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err() {
            return;
        }
        let mut w = stream;
        if let Err(e) = w.write_all(answer.as_bytes()) {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                self.snapshots
                    .stats
                    .timeouts
                    .fetch_add(1, Ordering::Relaxed);
            }
            debug!("metrics client: answer not taken: {e}");
        }
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }

    fn refusal(&self, why: Refusal) -> String {
        let body = match why {
            Refusal::Busy => "too many scrapers at once\n",
            Refusal::NoThread => "cannot serve now\n",
        };
        response("503 Service Unavailable", "text/plain; charset=utf-8", body)
    }
}

impl Service {
    /// The loop's snapshot, or why not.
    fn snapshot(&self) -> Result<Status, &'static str> {
        self.snapshots.status().map_err(|e| match e {
            SnapshotError::Busy => "busy: too many requests waiting\n",
            SnapshotError::Stopping => "the node is stopping\n",
            SnapshotError::NoWake => "cannot wake the node\n",
            SnapshotError::NoAnswer => "the node did not answer in time\n",
        })
    }
}

/// Renders `status` in the Prometheus text exposition format: every
/// counter and gauge `sdt status --json` has, each family with its `# HELP`
/// and `# TYPE` lines. Families with no sample (no peers, no drops of any
/// reason yet) are left out: Prometheus treats a missing series as absent,
/// and drop reasons appear when first counted.
pub fn render(status: &Status) -> String {
    let mut out = String::with_capacity(4096);
    let mut f = Families::new(&mut out);

    f.gauge(
        "sdt_uptime_seconds",
        "Seconds since the node started.",
        [(Labels::none(), status.uptime_secs)],
    );
    f.gauge(
        "sdt_node_info",
        "Always 1; the node's public key as a label.",
        [(Labels::new().with("public_key", &status.public_key), 1.0)],
    );
    f.counter(
        "sdt_unattributed_drops_total",
        "Link datagrams dropped that no peer can be blamed for, by reason.",
        reasons(Labels::new(), &status.unattributed_drops),
    );
    f.counter(
        "sdt_node_drops_total",
        "Service-level drops no service can be blamed for, by reason.",
        reasons(Labels::new(), &status.node_drops),
    );
    f.counter(
        "sdt_send_errors_total",
        "Datagrams the runtime could not send (socket buffers full, ...).",
        [(Labels::none(), status.send_errors as f64)],
    );
    f.counter(
        "sdt_events_lost_total",
        "Node events that found the event queue full and went unlogged.",
        [(Labels::none(), status.events_lost as f64)],
    );
    f.counter(
        "sdt_control_refused_total",
        "Control socket clients refused as busy.",
        [(Labels::none(), status.control_refused as f64)],
    );
    f.counter(
        "sdt_control_timeouts_total",
        "Control clients closed for not sending or taking in time.",
        [(Labels::none(), status.control_timeouts as f64)],
    );
    f.counter(
        "sdt_metrics_refused_total",
        "Metrics scrapers refused as busy (503).",
        [(Labels::none(), status.metrics_refused as f64)],
    );
    f.counter(
        "sdt_metrics_timeouts_total",
        "Metrics scrapers closed for not sending or taking in time.",
        [(Labels::none(), status.metrics_timeouts as f64)],
    );

    let d = &status.data_path;
    f.counter(
        "sdt_kernel_link_drops_total",
        "Datagrams the kernel dropped on the link socket (receive queue full).",
        [(Labels::none(), d.kernel_drops_link as f64)],
    );
    f.counter(
        "sdt_kernel_service_drops_total",
        "Datagrams the kernel dropped on a service's own socket (receive queue full).",
        d.kernel_drops_services
            .iter()
            .map(|(id, n)| (Labels::new().with("service", &id.to_string()), *n as f64)),
    );
    f.counter(
        "sdt_kernel_exit_channel_drops_total",
        "Datagrams the kernel dropped on exit channel sockets, all together.",
        [(Labels::none(), d.kernel_drops_channels as f64)],
    );
    f.counter(
        "sdt_truncated_total",
        "Received datagrams larger than the receive buffer, dropped.",
        [(Labels::none(), d.truncated as f64)],
    );
    f.gauge(
        "sdt_link_receive_buffer_bytes",
        "The link socket's receive buffer as the kernel reports it.",
        [(Labels::none(), d.link_recv_buffer as f64)],
    );
    f.gauge(
        "sdt_link_send_buffer_bytes",
        "The link socket's send buffer as the kernel reports it.",
        [(Labels::none(), d.link_send_buffer as f64)],
    );
    f.gauge(
        "sdt_link_gro",
        "1 if GRO is on for the link socket.",
        [(Labels::none(), flag(d.link_gro))],
    );
    f.gauge(
        "sdt_gso",
        "1 if sends use GSO now.",
        [(Labels::none(), flag(d.gso))],
    );

    let peer = |p: &crate::status::PeerState| Labels::new().with("peer", &p.name);
    let peers = &status.peers;
    let each = |v: fn(&crate::status::PeerState) -> f64| {
        peers
            .iter()
            .map(move |p| (peer(p), v(p)))
            .collect::<Vec<_>>()
    };
    f.counter(
        "sdt_peer_rx_datagrams_total",
        "Datagrams received from the peer (authenticated).",
        each(|p| p.rx_datagrams as f64),
    );
    f.counter(
        "sdt_peer_rx_bytes_total",
        "Bytes received from the peer.",
        each(|p| p.rx_bytes as f64),
    );
    f.counter(
        "sdt_peer_tx_datagrams_total",
        "Datagrams sent to the peer.",
        each(|p| p.tx_datagrams as f64),
    );
    f.counter(
        "sdt_peer_tx_bytes_total",
        "Bytes sent to the peer.",
        each(|p| p.tx_bytes as f64),
    );
    f.counter(
        "sdt_peer_handshakes_total",
        "Handshakes completed with the peer.",
        each(|p| p.handshakes as f64),
    );
    f.gauge(
        "sdt_peer_last_handshake_age_seconds",
        "Seconds since the latest handshake with the peer completed (absent: never).",
        peers
            .iter()
            .filter_map(|p| p.latest_handshake_secs_ago.map(|s| (peer(p), s))),
    );
    f.gauge(
        "sdt_peer_session_up",
        "1 if a session with the peer is up.",
        each(|p| flag(p.session_up)),
    );
    f.gauge(
        "sdt_peer_last_received_age_seconds",
        "Seconds since anything authenticated came from the peer (absent: never).",
        peers
            .iter()
            .filter_map(|p| p.last_received_secs_ago.map(|s| (peer(p), s))),
    );
    let named = || peers.iter().filter(|p| p.endpoint_name.is_some());
    f.counter(
        "sdt_peer_endpoint_resolve_failures_total",
        "Lookups of the peer's endpoint name that failed (only peers whose endpoint is a name).",
        named().map(|p| (peer(p), p.resolve_failures as f64)),
    );
    f.counter(
        "sdt_peer_endpoint_resolve_changes_total",
        "Lookups of the peer's endpoint name that gave a new address.",
        named().map(|p| (peer(p), p.resolve_changes as f64)),
    );
    f.gauge(
        "sdt_peer_endpoint_resolved_age_seconds",
        "Seconds since the peer's endpoint name last resolved (absent: never, or no name).",
        named().filter_map(|p| p.resolved_secs_ago.map(|s| (peer(p), s))),
    );
    f.gauge(
        "sdt_peer_stale",
        "1 if the peer is late answering (it may be gone, even with a session up).",
        each(|p| flag(p.stale)),
    );
    f.gauge(
        "sdt_peer_mtu_bytes",
        "The link MTU towards the peer (config mtu).",
        each(|p| f64::from(p.mtu)),
    );
    f.counter(
        "sdt_peer_drops_total",
        "Link datagrams from the peer dropped, by reason.",
        peers
            .iter()
            .flat_map(|p| reasons(peer(p), &p.drops))
            .collect::<Vec<_>>(),
    );

    let service = |s: &crate::status::ServiceState| {
        Labels::new()
            .with("service", &s.id.to_string())
            .with("mode", &s.mode)
            .with("half", &s.half)
    };
    let services = &status.services;
    let each = |v: fn(&crate::status::ServiceState) -> f64| {
        services
            .iter()
            .map(move |s| (service(s), v(s)))
            .collect::<Vec<_>>()
    };
    // Push services of one half only: the others have no such counter.
    let push = |services: &[crate::status::ServiceState],
                half: &str,
                v: fn(&crate::status::ServiceState) -> f64| {
        services
            .iter()
            .filter(|s| s.mode == "push" && s.half == half)
            .map(|s| (service(s), v(s)))
            .collect::<Vec<_>>()
    };
    f.counter(
        "sdt_service_to_peer_datagrams_total",
        "Customer datagrams sent across to the peer.",
        each(|s| s.to_peer_datagrams as f64),
    );
    f.counter(
        "sdt_service_to_peer_bytes_total",
        "Bytes of customer datagrams sent across to the peer.",
        each(|s| s.to_peer_bytes as f64),
    );
    f.counter(
        "sdt_service_from_peer_datagrams_total",
        "Datagrams from the peer delivered to customers.",
        each(|s| s.from_peer_datagrams as f64),
    );
    f.counter(
        "sdt_service_from_peer_bytes_total",
        "Bytes of datagrams from the peer delivered to customers.",
        each(|s| s.from_peer_bytes as f64),
    );
    f.gauge(
        "sdt_service_channels_open",
        "Channels open now.",
        each(|s| s.channels_open as f64),
    );
    f.counter(
        "sdt_service_channels_created_total",
        "Channels created.",
        each(|s| s.channels_created as f64),
    );
    f.counter(
        "sdt_service_channels_expired_total",
        "Channels closed idle.",
        each(|s| s.channels_expired as f64),
    );
    f.counter(
        "sdt_service_channels_evicted_total",
        "Channels evicted for new ones.",
        each(|s| s.channels_evicted as f64),
    );
    f.counter(
        "sdt_service_channels_closed_total",
        "Channels closed for other reasons (peer restart, socket failure).",
        each(|s| s.channels_closed as f64),
    );
    f.counter(
        "sdt_service_target_unreachable_total",
        "Datagrams the target or destination refused (ECONNREFUSED at the exit; the exit's notices at the entry).",
        each(|s| s.target_unreachable as f64),
    );
    f.counter(
        "sdt_service_icmp_errors_sent_total",
        "Router entries: ICMP errors forged back to senders (port unreachable, fragmentation needed / packet too big).",
        each(|s| s.icmp_errors_sent as f64),
    );
    f.counter(
        "sdt_service_icmp_errors_rate_limited_total",
        "Router entries: ICMP errors not sent, over the node's rate.",
        each(|s| s.icmp_errors_rate_limited as f64),
    );
    f.counter(
        "sdt_service_lost_in_transit_total",
        "Push exits: datagrams missing from the entry's sequence, lost between the nodes.",
        push(services, "exit", |s| s.lost_in_transit as f64),
    );
    f.counter(
        "sdt_service_reordered_total",
        "Push exits: datagrams that arrived after a later one.",
        push(services, "exit", |s| s.reordered as f64),
    );
    f.counter(
        "sdt_service_unconfirmed_total",
        "Push entries: datagrams sent that the exit never acknowledged before it restarted (or a full buffer dropped after sending).",
        push(services, "entry", |s| s.unconfirmed as f64),
    );
    f.gauge(
        "sdt_service_buffer_capacity_bytes",
        "Push entries with an outage buffer: its size (config buffer).",
        services
            .iter()
            .filter_map(|s| s.buffer.map(|b| (service(s), b as f64))),
    );
    f.gauge(
        "sdt_service_buffered_datagrams",
        "Push entries with an outage buffer: datagrams held, unacknowledged or not sent yet.",
        services
            .iter()
            .filter(|s| s.buffer.is_some())
            .map(|s| (service(s), s.buffered_datagrams as f64)),
    );
    f.gauge(
        "sdt_service_buffered_bytes",
        "Push entries with an outage buffer: bytes of it in use.",
        services
            .iter()
            .filter(|s| s.buffer.is_some())
            .map(|s| (service(s), s.buffered_bytes as f64)),
    );
    f.gauge(
        "sdt_service_ports_held",
        "Exit sockets of ended channels held for late replies (port_hold).",
        each(|s| s.ports_held as f64),
    );
    f.gauge(
        "sdt_service_max_payload_bytes",
        "The largest customer payload carried across (router entries: to IPv4 destinations).",
        services
            .iter()
            .filter_map(|s| s.max_payload.map(|m| (service(s), m as f64))),
    );
    f.gauge(
        "sdt_service_max_payload_ipv6_destination_bytes",
        "Router entries: the largest payload to IPv6 destinations.",
        services
            .iter()
            .filter_map(|s| s.max_payload_v6_destination.map(|m| (service(s), m as f64))),
    );
    f.counter(
        "sdt_service_drops_total",
        "Service datagrams dropped, by reason (too_big, table_full, channel_rate_limited, ...).",
        services
            .iter()
            .flat_map(|s| reasons(service(s), &s.drops))
            .collect::<Vec<_>>(),
    );
    out
}

fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

/// One sample per drop reason, with `base`'s labels and `reason`.
fn reasons(base: Labels, drops: &[(String, u64)]) -> Vec<(Labels, f64)> {
    drops
        .iter()
        .map(|(r, n)| (base.clone().with("reason", r), *n as f64))
        .collect()
}

/// A sample's labels, already rendered: `{a="x",b="y"}` or nothing.
#[derive(Clone, Default)]
struct Labels(String);

impl Labels {
    fn none() -> Labels {
        Labels::default()
    }

    fn new() -> Labels {
        Labels::default()
    }

    /// Adds `name="value"`, the value escaped as the format asks
    /// (backslash, double quote, line feed).
    fn with(mut self, name: &str, value: &str) -> Labels {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(name);
        self.0.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => self.0.push_str("\\\\"),
                '"' => self.0.push_str("\\\""),
                '\n' => self.0.push_str("\\n"),
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }
}

/// Writes metric families into a string.
struct Families<'a> {
    out: &'a mut String,
}

impl<'a> Families<'a> {
    fn new(out: &'a mut String) -> Self {
        Families { out }
    }

    fn counter(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, f64)>,
    ) {
        self.family(name, help, "counter", samples);
    }

    fn gauge(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels, f64)>) {
        self.family(name, help, "gauge", samples);
    }

    fn family(
        &mut self,
        name: &str,
        help: &str,
        kind: &str,
        samples: impl IntoIterator<Item = (Labels, f64)>,
    ) {
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            return;
        }
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.out.push_str(name);
            if !labels.0.is_empty() {
                let _ = write!(self.out, "{{{}}}", labels.0);
            }
            let _ = writeln!(self.out, " {value}");
        }
    }
}

#[cfg(test)]
mod tests;
