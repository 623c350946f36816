//! The live state of a node, as `sdt status` prints it: peers (endpoint,
//! latest handshake, traffic, drops) and services (counters, channels,
//! drops by reason), in text like `wg show` or in JSON.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;

use sdt_core::node::ServiceId;
use sdt_core::Instant;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::build::DaemonNode;
use crate::config::Config;

/// A service id in the JSON status: the plain number, as configured (core
/// defines [`ServiceId`] without serde).
mod service_id {
    use super::{Deserialize, Deserializer, Serialize, Serializer, ServiceId};

    pub fn serialize<S: Serializer>(id: &ServiceId, s: S) -> Result<S::Ok, S::Error> {
        id.get().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ServiceId, D::Error> {
        u8::deserialize(d).map(ServiceId::new)
    }
}

/// Counts by service id in the JSON status: `[id, count]` pairs, the id a
/// plain number.
mod service_counts {
    use super::{Deserialize, Deserializer, Serializer, ServiceId};

    pub fn serialize<S: Serializer>(counts: &[(ServiceId, u64)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(counts.iter().map(|&(id, n)| (id.get(), n)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(ServiceId, u64)>, D::Error> {
        let counts = Vec::<(u8, u64)>::deserialize(d)?;
        Ok(counts
            .into_iter()
            .map(|(id, n)| (ServiceId::new(id), n))
            .collect())
    }
}

/// A snapshot of a node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// This node's public key.
    pub public_key: String,
    /// The link socket's address.
    pub listen: Option<SocketAddr>,
    /// Where Prometheus metrics are served (`metrics_listen`), if anywhere.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds since the node started.
    pub uptime_secs: f64,
    /// The peers, in config order.
    pub peers: Vec<PeerState>,
    /// The services, in config order.
    pub services: Vec<ServiceState>,
    /// Link drops no peer can be blamed for, by reason.
    pub unattributed_drops: Vec<(String, u64)>,
    /// Service-level drops no service can be blamed for, by reason.
    pub node_drops: Vec<(String, u64)>,
    /// Datagrams the runtime could not send (socket buffers full, ...).
    pub send_errors: u64,
    /// Control clients refused because the most the node serves at once
    /// were connected (they got a one-line `error: busy` answer).
    #[serde(default)]
    pub control_refused: u64,
    /// Control clients closed because they did not send their request, or
    /// take their answer, in time.
    #[serde(default)]
    pub control_timeouts: u64,
    /// Metrics scrapers refused because the most the node serves at once
    /// were connected, or the snapshot queue was full (`503`).
    #[serde(default)]
    pub metrics_refused: u64,
    /// Metrics scrapers closed because they did not send their request, or
    /// take their answer, in time.
    #[serde(default)]
    pub metrics_timeouts: u64,
    /// Node events (session up, peer restarted, ...) that found the event
    /// queue full and went unreported in the log.
    #[serde(default)]
    pub events_lost: u64,
    /// With `sdt status --rate`: the seconds between the two snapshots the
    /// `*_rate` fields are computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_interval_secs: Option<f64>,
    /// How the daemon moves datagrams: batching features and socket
    /// buffers, and what the kernel dropped before the daemon could read it.
    #[serde(default)]
    pub data_path: DataPath,
}

/// The daemon's socket layer, so that a user can tell loss in the tunnel
/// (drops by reason) from loss in the kernel (its receive queues were full).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DataPath {
    /// The batching features in use: `recvmmsg`, `sendmmsg`, and the
    /// offloads the kernel has (GSO, GRO, the drop count), with the reason
    /// for any that is missing.
    pub offloads: String,
    /// Whether GRO is on for the link socket (off on a node with a router
    /// entry: its replies are forged in place and need headroom).
    pub link_gro: bool,
    /// Whether sends use GSO now (turned off for good if a send fails with
    /// it).
    pub gso: bool,
    /// The link socket's receive and send buffers in bytes, as the kernel
    /// reports them.
    pub link_recv_buffer: usize,
    /// See `link_recv_buffer`.
    pub link_send_buffer: usize,
    /// Whether the buffers were forced past the system's limits.
    pub buffers_forced: bool,
    /// Datagrams the kernel dropped on the link socket (`SO_RXQ_OVFL`).
    pub kernel_drops_link: u64,
    /// Kernel drops on each service's own socket, by service id.
    #[serde(with = "service_counts")]
    pub kernel_drops_services: Vec<(ServiceId, u64)>,
    /// Kernel drops on exit channel sockets, all together.
    pub kernel_drops_channels: u64,
    /// Received datagrams larger than the receive buffer, dropped.
    pub truncated: u64,
}

/// Traffic per second between two snapshots.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Rate {
    /// Datagrams per second.
    pub datagrams_per_sec: f64,
    /// Bytes per second.
    pub bytes_per_sec: f64,
}

impl Rate {
    /// The rate of `(datagrams, bytes)` counters going from `then` to
    /// `now` in `secs` seconds (a counter that went back, after a restart,
    /// counts from zero).
    fn between(then: (u64, u64), now: (u64, u64), secs: f64) -> Rate {
        let per = |a: u64, b: u64| b.checked_sub(a).unwrap_or(b) as f64 / secs;
        Rate {
            datagrams_per_sec: per(then.0, now.0),
            bytes_per_sec: per(then.1, now.1),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.1} datagrams/s, {:.0} B/s",
            self.datagrams_per_sec, self.bytes_per_sec
        )
    }
}

/// One peer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PeerState {
    /// Its name in the config.
    pub name: String,
    /// Its public key.
    pub public_key: String,
    /// Where datagrams to it go now.
    pub endpoint: Option<SocketAddr>,
    /// The endpoint as configured when it is a `host:port` name, which
    /// the node looks up again while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_name: Option<String>,
    /// What the name resolved to at the latest successful lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<SocketAddr>,
    /// Seconds since that lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_secs_ago: Option<f64>,
    /// Lookups of the name that failed (the peer kept its address).
    #[serde(default)]
    pub resolve_failures: u64,
    /// Lookups of the name that gave a new address.
    #[serde(default)]
    pub resolve_changes: u64,
    /// Seconds since the latest handshake completed.
    pub latest_handshake_secs_ago: Option<f64>,
    /// Whether a session is up.
    pub session_up: bool,
    /// Seconds since anything authenticated last came from it.
    #[serde(default)]
    pub last_received_secs_ago: Option<f64>,
    /// It owes an answer it has not given in time (core's
    /// `PeerStatus::overdue`): a session may be up while the peer is gone,
    /// and this says so.
    #[serde(default)]
    pub stale: bool,
    /// Whether the link is kept up without traffic.
    #[serde(default)]
    pub keep_up: bool,
    /// The persistent keepalive interval in seconds, if configured.
    #[serde(default)]
    pub persistent_keepalive_secs: Option<f64>,
    /// Datagrams received from it (authenticated).
    pub rx_datagrams: u64,
    /// Bytes received from it.
    pub rx_bytes: u64,
    /// Datagrams sent to it.
    pub tx_datagrams: u64,
    /// Bytes sent to it.
    pub tx_bytes: u64,
    /// Handshakes completed.
    pub handshakes: u64,
    /// Received per second over the last interval (`sdt status --rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_rate: Option<Rate>,
    /// Sent per second over the last interval (`sdt status --rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_rate: Option<Rate>,
    /// The link MTU towards it (config `mtu`): no frame sent to it is
    /// larger than one IP datagram of this size.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Link drops by reason.
    pub drops: Vec<(String, u64)>,
}

/// One service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceState {
    /// Its id.
    #[serde(with = "service_id")]
    pub id: ServiceId,
    /// Its mode.
    pub mode: String,
    /// This node's half.
    pub half: String,
    /// The peer it runs with: a `[[peer]]` name, or `*` (any).
    #[serde(default)]
    pub peer: String,
    /// Entry and direct: the socket customers send to.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Exit: where datagrams go; direct: the one customer.
    #[serde(default)]
    pub target: Option<SocketAddr>,
    /// Router entry: the address sdt gives its TUN device (config
    /// `address`), if any.
    #[serde(default)]
    pub tun_address: Option<String>,
    /// Router exit: the allow-list rules, in their text form.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Router services: `"tun"` for an L3 exit (config `exit`), `None`
    /// for the socket exit and other modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    /// L3 router exit: the peer's address ranges (`peer_addresses`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_addresses: Vec<String>,
    /// Customer datagrams sent across.
    pub to_peer_datagrams: u64,
    /// Their bytes.
    pub to_peer_bytes: u64,
    /// Datagrams delivered to customers.
    pub from_peer_datagrams: u64,
    /// Their bytes.
    pub from_peer_bytes: u64,
    /// Customer datagrams sent across per second over the last interval
    /// (`sdt status --rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_peer_rate: Option<Rate>,
    /// Delivered to customers per second over the last interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_peer_rate: Option<Rate>,
    /// Channels open now.
    pub channels_open: u64,
    /// Channels created since start.
    pub channels_created: u64,
    /// Channels closed idle.
    pub channels_expired: u64,
    /// Channels evicted for new ones.
    pub channels_evicted: u64,
    /// Channels closed for other reasons (peer restart, socket failure).
    pub channels_closed: u64,
    /// Exit: sockets of ended channels held now so their ports serve no
    /// other channel while late replies may arrive (`port_hold`).
    #[serde(default)]
    pub ports_held: u64,
    /// Datagrams the target or destination refused (ECONNREFUSED at the
    /// exit; the exit's notices at the entry).
    #[serde(default)]
    pub target_unreachable: u64,
    /// Router entries: ICMP errors forged back to senders.
    #[serde(default)]
    pub icmp_errors_sent: u64,
    /// Router entries: ICMP errors not sent, over the node's rate.
    #[serde(default)]
    pub icmp_errors_rate_limited: u64,
    /// Push exits: datagrams missing from the entry's sequence, lost
    /// between the nodes.
    #[serde(default)]
    pub lost_in_transit: u64,
    /// Push exits: datagrams that arrived after a later one.
    #[serde(default)]
    pub reordered: u64,
    /// Push entries: datagrams sent that the exit never acknowledged
    /// before it restarted, or that a full buffer dropped after sending.
    #[serde(default)]
    pub unconfirmed: u64,
    /// Push entries: bytes of the outage buffer (config `buffer`), `None`
    /// without one.
    #[serde(default)]
    pub buffer: Option<u64>,
    /// Push entries: datagrams in the buffer now (sent and waiting for the
    /// exit's acknowledgement, or not sent yet).
    #[serde(default)]
    pub buffered_datagrams: u64,
    /// Push entries: bytes of the buffer in use now (2 bytes of length
    /// each datagram included).
    #[serde(default)]
    pub buffered_bytes: u64,
    /// The largest customer payload this node carries across for the
    /// service now (router entries: to IPv4 destinations); one byte more is
    /// dropped as `too_big`. `None` where it depends on the peer (`peer =
    /// "*"`) or nothing is sent across (push exits).
    #[serde(default)]
    pub max_payload: Option<u64>,
    /// Router entries: the largest payload to IPv6 destinations.
    #[serde(default)]
    pub max_payload_v6_destination: Option<u64>,
    /// Router entries: the TUN device, its MTU and the routes sdt installed.
    #[serde(default)]
    pub tun: Option<TunState>,
    /// Drops by reason.
    pub drops: Vec<(String, u64)>,
}

/// A router entry's TUN device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TunState {
    /// The device name.
    pub name: String,
    /// The MTU set on it.
    pub mtu: u16,
    /// The routes sdt installed into it.
    pub routes: Vec<String>,
    /// The kernel offloads it uses (`csum+tso4+tso6+uso4+uso6`), or `off`
    /// and why.
    #[serde(default)]
    pub offload: String,
    /// Super-packets the device handed over and sdt split into packets.
    #[serde(default)]
    pub super_packets: u64,
    /// Super-packets sdt wrote to the device, coalesced from TCP segments
    /// out of the tunnel.
    #[serde(default)]
    pub coalesced: u64,
    /// Packets dropped for their offload header or lengths, by reason.
    #[serde(default)]
    pub offload_drops: Vec<(String, u64)>,
}

impl Status {
    /// Collects the state of `node` at `now`.
    pub fn collect(
        node: &DaemonNode,
        config: &Config,
        listen: Option<SocketAddr>,
        started: Instant,
        now: Instant,
        send_errors: u64,
    ) -> Status {
        let link = node.link();
        let peers = config
            .peers
            .iter()
            .enumerate()
            .filter_map(|(i, spec)| {
                // By key: a reload may have put the peer in another slot
                // than its position in the file.
                let p = link.peer(slot_of(node, i, spec)?, now)?;
                Some(PeerState {
                    name: spec.name.clone(),
                    public_key: p.public_key.to_string(),
                    endpoint: p.endpoint,
                    latest_handshake_secs_ago: p
                        .last_handshake
                        .map(|t| now.saturating_since(t).as_secs_f64()),
                    session_up: p.session_up,
                    last_received_secs_ago: p
                        .last_received
                        .map(|t| now.saturating_since(t).as_secs_f64()),
                    stale: p.overdue,
                    keep_up: p.keep_up,
                    persistent_keepalive_secs: p.persistent_keepalive.map(|d| d.as_secs_f64()),
                    rx_datagrams: p.stats.rx_datagrams,
                    rx_bytes: p.stats.rx_bytes,
                    tx_datagrams: p.stats.tx_datagrams,
                    tx_bytes: p.stats.tx_bytes,
                    handshakes: p.stats.handshakes_completed,
                    rx_rate: None,
                    tx_rate: None,
                    mtu: spec.mtu,
                    drops: p
                        .stats
                        .drops
                        .iter()
                        .map(|(r, n)| (r.as_str().to_owned(), n))
                        .collect(),
                    // The daemon fills these in from its resolver.
                    endpoint_name: spec.endpoint_name.clone(),
                    ..PeerState::default()
                })
            })
            .collect();
        let services = node
            .services()
            .map(|(c, s)| {
                let spec = config.services.iter().find(|x| x.id == c.id);
                let peer = match spec.map(|x| x.peer) {
                    Some(crate::config::PeerRef::Named(i)) => config
                        .peers
                        .get(i)
                        .map_or_else(String::new, |p| p.name.clone()),
                    Some(crate::config::PeerRef::Any) => "*".to_owned(),
                    None => String::new(),
                };
                ServiceState {
                    id: c.id,
                    mode: c.role.mode().as_str().to_owned(),
                    half: c.role.half().as_str().to_owned(),
                    peer,
                    listen: spec.and_then(|x| x.listen),
                    target: spec.and_then(|x| x.target),
                    tun_address: spec
                        .and_then(|x| x.tun.as_ref())
                        .and_then(|t| t.address.as_ref())
                        .map(ToString::to_string),
                    allow: spec
                        .map(|x| x.allow.iter().map(ToString::to_string).collect())
                        .unwrap_or_default(),
                    exit: c.role.is_l3().then(|| "tun".to_owned()),
                    peer_addresses: spec
                        .map(|x| x.peer_addresses.iter().map(ToString::to_string).collect())
                        .unwrap_or_default(),
                    to_peer_datagrams: s.to_peer.datagrams,
                    to_peer_bytes: s.to_peer.bytes,
                    from_peer_datagrams: s.from_peer.datagrams,
                    from_peer_bytes: s.from_peer.bytes,
                    to_peer_rate: None,
                    from_peer_rate: None,
                    channels_open: s.channels_open,
                    channels_created: s.channels_created,
                    channels_expired: s.channels_expired,
                    channels_evicted: s.channels_evicted,
                    channels_closed: s.channels_closed,
                    ports_held: s.ports_held,
                    target_unreachable: s.target_unreachable,
                    icmp_errors_sent: s.icmp_errors_sent,
                    icmp_errors_rate_limited: s.icmp_errors_rate_limited,
                    lost_in_transit: s.lost_in_transit,
                    reordered: s.reordered,
                    unconfirmed: s.unconfirmed,
                    buffer: spec.and_then(|x| x.buffer).map(|b| b as u64),
                    buffered_datagrams: s.buffered,
                    buffered_bytes: s.buffered_bytes,
                    max_payload: node
                        .max_payload(c.id, Some(V4_DESTINATION))
                        .map(|n| n as u64),
                    max_payload_v6_destination: (c.role == sdt_core::node::Role::RouterEntry)
                        .then(|| node.max_payload(c.id, Some(V6_DESTINATION)))
                        .flatten()
                        .map(|n| n as u64),
                    tun: None,
                    drops: s
                        .drops
                        .iter()
                        .map(|(r, n)| (r.as_str().to_owned(), n))
                        .collect(),
                }
            })
            .collect();
        Status {
            public_key: link.public_key().to_string(),
            listen,
            metrics_listen: None,
            uptime_secs: now.saturating_since(started).as_secs_f64(),
            peers,
            services,
            unattributed_drops: link
                .unattributed_drops()
                .iter()
                .map(|(r, n)| (r.as_str().to_owned(), n))
                .collect(),
            node_drops: node
                .node_drops()
                .iter()
                .map(|(r, n)| (r.as_str().to_owned(), n))
                .collect(),
            send_errors,
            control_refused: 0,
            control_timeouts: 0,
            metrics_refused: 0,
            metrics_timeouts: 0,
            events_lost: node.events_lost(),
            rate_interval_secs: None,
            data_path: DataPath::default(),
        }
    }

    /// The service with id `id`.
    pub fn service(&self, id: ServiceId) -> Option<&ServiceState> {
        self.services.iter().find(|s| s.id == id)
    }

    /// Fills in the `*_rate` fields from the counters' change since
    /// `earlier`, a snapshot of the same node (peers matched by name,
    /// services by id). Nothing is filled in if no time passed between
    /// them (by the node's uptime).
    pub fn add_rates(&mut self, earlier: &Status) {
        let secs = self.uptime_secs - earlier.uptime_secs;
        if secs <= 0.0 {
            return;
        }
        self.rate_interval_secs = Some(secs);
        for p in &mut self.peers {
            if let Some(e) = earlier.peers.iter().find(|e| e.name == p.name) {
                p.rx_rate = Some(Rate::between(
                    (e.rx_datagrams, e.rx_bytes),
                    (p.rx_datagrams, p.rx_bytes),
                    secs,
                ));
                p.tx_rate = Some(Rate::between(
                    (e.tx_datagrams, e.tx_bytes),
                    (p.tx_datagrams, p.tx_bytes),
                    secs,
                ));
            }
        }
        for s in &mut self.services {
            if let Some(e) = earlier.service(s.id) {
                s.to_peer_rate = Some(Rate::between(
                    (e.to_peer_datagrams, e.to_peer_bytes),
                    (s.to_peer_datagrams, s.to_peer_bytes),
                    secs,
                ));
                s.from_peer_rate = Some(Rate::between(
                    (e.from_peer_datagrams, e.from_peer_bytes),
                    (s.from_peer_datagrams, s.from_peer_bytes),
                    secs,
                ));
            }
        }
    }

    /// One line for `sdt status` listing every node: uptime, link socket,
    /// each peer's session, each service, open channels and drops in all.
    pub fn summary(&self) -> String {
        let mut out = format!("up {:.0} s", self.uptime_secs);
        if let Some(l) = self.listen {
            let _ = write!(out, ", link {l}");
        }
        out.push_str("; peers:");
        if self.peers.is_empty() {
            out.push_str(" none");
        }
        for (i, p) in self.peers.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            let _ = write!(out, "{sep}{} {}", p.name, p.health());
        }
        out.push_str("; services:");
        if self.services.is_empty() {
            out.push_str(" none");
        }
        for (i, s) in self.services.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            let _ = write!(out, "{sep}{} {} {}", s.id, s.mode, s.half);
        }
        let channels: u64 = self.services.iter().map(|s| s.channels_open).sum();
        let drops: u64 = [&self.unattributed_drops, &self.node_drops]
            .into_iter()
            .chain(self.peers.iter().map(|p| &p.drops))
            .chain(self.services.iter().map(|s| &s.drops))
            .flat_map(|d| d.iter().map(|(_, n)| n))
            .sum();
        let _ = write!(out, "; {channels} channels open, {drops} drops");
        out
    }
}

impl PeerState {
    /// `up`, `stale` (a session is up and the peer is late answering) or
    /// `down` (no session).
    pub fn health(&self) -> &'static str {
        match (self.session_up, self.stale) {
            (true, false) => "up",
            (true, true) => "stale",
            (false, _) => "down",
        }
    }
}

/// A destination of each family, for router entries' limits (only the
/// family matters).
const V4_DESTINATION: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
const V6_DESTINATION: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0);

fn default_mtu() -> u16 {
    sdt_core::mtu::DEFAULT_LINK_MTU
}

fn drops(out: &mut String, drops: &[(String, u64)]) {
    if drops.is_empty() {
        return;
    }
    out.push_str("  drops:");
    for (reason, n) in drops {
        let _ = write!(out, " {reason}={n}");
    }
    out.push('\n');
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let _ = writeln!(out, "node: {}", self.public_key);
        if let Some(l) = self.listen {
            let _ = writeln!(out, "  listening on {l}");
        }
        if let Some(m) = self.metrics_listen {
            let _ = writeln!(out, "  metrics on http://{m}/metrics");
        }
        let _ = writeln!(out, "  up {:.0} s", self.uptime_secs);
        if self.send_errors > 0 {
            let _ = writeln!(out, "  send errors: {}", self.send_errors);
        }
        if self.events_lost > 0 {
            let _ = writeln!(out, "  events lost (queue full): {}", self.events_lost);
        }
        if self.control_refused > 0 || self.control_timeouts > 0 {
            let _ = writeln!(
                out,
                "  control clients: {} refused (busy), {} timed out",
                self.control_refused, self.control_timeouts
            );
        }
        if self.metrics_refused > 0 || self.metrics_timeouts > 0 {
            let _ = writeln!(
                out,
                "  metrics scrapers: {} refused (busy), {} timed out",
                self.metrics_refused, self.metrics_timeouts
            );
        }
        let d = &self.data_path;
        if !d.offloads.is_empty() {
            let _ = writeln!(
                out,
                "  data path: {}; link GRO {}, GSO {}",
                d.offloads,
                if d.link_gro { "on" } else { "off" },
                if d.gso { "on" } else { "off" }
            );
            let _ = writeln!(
                out,
                "  link socket buffers: {} KiB receive, {} KiB send{}",
                d.link_recv_buffer >> 10,
                d.link_send_buffer >> 10,
                if d.buffers_forced { " (forced)" } else { "" }
            );
            let mut kernel = format!("link {}", d.kernel_drops_link);
            for (id, n) in &d.kernel_drops_services {
                let _ = write!(kernel, ", service {id} {n}");
            }
            let _ = write!(kernel, ", exit channels {}", d.kernel_drops_channels);
            if d.truncated > 0 {
                let _ = write!(kernel, "; {} truncated", d.truncated);
            }
            let _ = writeln!(out, "  kernel drops (receive queue full): {kernel}");
        }
        drops(&mut out, &self.unattributed_drops);
        let over = self
            .rate_interval_secs
            .map_or_else(String::new, |s| format!(" (over the last {s:.1} s)"));
        for p in &self.peers {
            let _ = writeln!(out, "\npeer {}: {}", p.name, p.public_key);
            match p.endpoint {
                Some(e) => {
                    let _ = writeln!(out, "  endpoint: {e}");
                }
                None => out.push_str("  endpoint: (none yet)\n"),
            }
            if let Some(name) = &p.endpoint_name {
                let resolved = match (p.resolved, p.resolved_secs_ago) {
                    (Some(a), Some(s)) => format!("resolved to {a} {s:.0} s ago"),
                    _ => "not resolved yet".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "  endpoint name: {name}, {resolved} ({} changes, {} failed lookups)",
                    p.resolve_changes, p.resolve_failures
                );
            }
            match p.latest_handshake_secs_ago {
                Some(s) => {
                    let _ = writeln!(
                        out,
                        "  latest handshake: {s:.0} s ago ({} in all)",
                        p.handshakes
                    );
                }
                None => out.push_str("  latest handshake: never\n"),
            }
            let stale = match (p.stale, p.session_up) {
                (false, _) => "",
                (true, true) => " (STALE: the peer is late answering; it may be gone)",
                (true, false) => " (the peer does not answer)",
            };
            let _ = writeln!(
                out,
                "  session: {}{stale}",
                if p.session_up { "up" } else { "down" }
            );
            match p.last_received_secs_ago {
                Some(s) => {
                    let _ = writeln!(out, "  last received: {s:.0} s ago");
                }
                None => out.push_str("  last received: never\n"),
            }
            let keepalive = p
                .persistent_keepalive_secs
                .map_or_else(|| "off".to_owned(), |k| format!("every {k} s"));
            let _ = writeln!(
                out,
                "  keep up: {}; persistent keepalive: {keepalive}",
                if p.keep_up { "yes" } else { "no" }
            );
            let _ = writeln!(out, "  mtu: {}", p.mtu);
            let _ = writeln!(
                out,
                "  transfer: {} B in {} datagrams received, {} B in {} datagrams sent",
                p.rx_bytes, p.rx_datagrams, p.tx_bytes, p.tx_datagrams
            );
            if let (Some(rx), Some(tx)) = (p.rx_rate, p.tx_rate) {
                let _ = writeln!(out, "  rate: {rx} received, {tx} sent{over}");
            }
            drops(&mut out, &p.drops);
        }
        for s in &self.services {
            let _ = writeln!(out, "\nservice {} ({}, {}):", s.id, s.mode, s.half);
            if !s.peer.is_empty() {
                let _ = writeln!(out, "  peer: {}", s.peer);
            }
            if let Some(l) = s.listen {
                let _ = writeln!(out, "  listen: {l}");
            }
            if let Some(t) = s.target {
                let _ = writeln!(out, "  target: {t}");
            }
            if let Some(a) = &s.tun_address {
                let _ = writeln!(out, "  tun address: {a}");
            }
            if let Some(e) = &s.exit {
                let _ = writeln!(out, "  exit: {e}");
            }
            if !s.peer_addresses.is_empty() {
                let _ = writeln!(out, "  peer addresses: {}", s.peer_addresses.join(", "));
            }
            if s.mode == "router" && s.half == "exit" {
                if s.allow.is_empty() {
                    out.push_str("  allow: nothing (empty list)\n");
                } else {
                    let _ = writeln!(out, "  allow: {}", s.allow.join(", "));
                }
            }
            let _ = writeln!(
                out,
                "  to peer: {} datagrams, {} B; from peer: {} datagrams, {} B",
                s.to_peer_datagrams, s.to_peer_bytes, s.from_peer_datagrams, s.from_peer_bytes
            );
            if let (Some(to), Some(from)) = (s.to_peer_rate, s.from_peer_rate) {
                let _ = writeln!(out, "  rate: to peer {to}; from peer {from}{over}");
            }
            match (s.max_payload, s.max_payload_v6_destination) {
                (Some(v4), Some(v6)) => {
                    let _ = writeln!(
                        out,
                        "  largest datagram: {v4} B to IPv4, {v6} B to IPv6 destinations"
                    );
                }
                (Some(max), None) => {
                    let _ = writeln!(out, "  largest datagram: {max} B");
                }
                _ => {}
            }
            if let Some(t) = &s.tun {
                let _ = write!(out, "  TUN device {}: MTU {}", t.name, t.mtu);
                if !t.routes.is_empty() {
                    let _ = write!(out, ", routes {}", t.routes.join(" "));
                }
                let _ = writeln!(out);
                if !t.offload.is_empty() {
                    let _ = write!(
                        out,
                        "  TUN offloads: {}, {} super-packets read and split, {} coalesced \
                         and written",
                        t.offload, t.super_packets, t.coalesced
                    );
                    for (reason, n) in &t.offload_drops {
                        let _ = write!(out, ", {n} {reason}");
                    }
                    let _ = writeln!(out);
                }
            }
            if s.mode == "forward" || s.mode == "router" {
                let _ = writeln!(
                    out,
                    "  channels: {} open, {} created, {} expired, {} evicted, {} closed",
                    s.channels_open,
                    s.channels_created,
                    s.channels_expired,
                    s.channels_evicted,
                    s.channels_closed
                );
                if s.half == "exit" {
                    let _ = writeln!(out, "  ports held for late replies: {}", s.ports_held);
                }
            }
            if s.target_unreachable > 0 {
                let _ = writeln!(
                    out,
                    "  target unreachable (refused): {}",
                    s.target_unreachable
                );
            }
            if s.icmp_errors_sent + s.icmp_errors_rate_limited > 0 {
                let _ = writeln!(
                    out,
                    "  ICMP errors sent back: {} ({} rate limited)",
                    s.icmp_errors_sent, s.icmp_errors_rate_limited
                );
            }
            if s.mode == "push" && s.half == "exit" {
                let _ = writeln!(
                    out,
                    "  sequence: {} lost in transit, {} reordered",
                    s.lost_in_transit, s.reordered
                );
            }
            if s.mode == "push" && s.half == "entry" {
                match s.buffer {
                    Some(capacity) => {
                        let _ = writeln!(
                            out,
                            "  buffer: {} datagrams, {} B of {} held",
                            s.buffered_datagrams,
                            s.buffered_bytes,
                            crate::config::show_size(capacity as usize)
                        );
                    }
                    None => out.push_str("  buffer: none\n"),
                }
                let _ = writeln!(out, "  unconfirmed by the exit: {}", s.unconfirmed);
            }
            drops(&mut out, &s.drops);
        }
        if !self.node_drops.is_empty() {
            out.push_str("\nnot attributable to a service:\n");
            drops(&mut out, &self.node_drops);
        }
        f.write_str(&out)
    }
}

/// The most channels one `sdt status --channels` answer lists per
/// service: the answer is built on the event loop's thread, so its size
/// (and the loop's time on it) stays bounded whatever the table holds.
pub const MAX_CHANNEL_LIMIT: usize = 1000;
/// Channels listed per service when `--limit` is not given.
pub const DEFAULT_CHANNEL_LIMIT: usize = 50;

/// How `sdt status --channels` orders each service's channels before the
/// limit cuts the list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ChannelSort {
    /// Longest idle first: the next to expire.
    Idle,
    /// Oldest first.
    Age,
    /// Most datagrams (both ways together) first: the busiest clients.
    #[default]
    Traffic,
}

impl ChannelSort {
    /// Its name on the command line and in the control protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelSort::Idle => "idle",
            ChannelSort::Age => "age",
            ChannelSort::Traffic => "traffic",
        }
    }

    /// The sort named `name`.
    pub fn parse(name: &str) -> Option<ChannelSort> {
        [ChannelSort::Idle, ChannelSort::Age, ChannelSort::Traffic]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// What to list: at most `limit` channels of each service (capped at
/// [`MAX_CHANNEL_LIMIT`]), in `sort` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelQuery {
    /// Channels per service.
    pub limit: usize,
    /// Their order.
    pub sort: ChannelSort,
}

impl Default for ChannelQuery {
    fn default() -> Self {
        ChannelQuery {
            limit: DEFAULT_CHANNEL_LIMIT,
            sort: ChannelSort::default(),
        }
    }
}

/// The open channels of a node's services, as `sdt status --channels`
/// shows them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Channels {
    /// The order of each list.
    pub sort: ChannelSort,
    /// The most listed per service.
    pub limit: usize,
    /// The services that have channels (forward and router), in config
    /// order.
    pub services: Vec<ServiceChannels>,
}

/// One service's channels.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceChannels {
    /// The service id.
    #[serde(with = "service_id")]
    pub id: ServiceId,
    /// Its mode.
    pub mode: String,
    /// This node's half.
    pub half: String,
    /// Channels open now; more than `channels` holds when the limit cut
    /// the list.
    pub open: usize,
    /// The first `limit` of them in the sort order.
    pub channels: Vec<ChannelState>,
}

/// One open channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChannelState {
    /// Its number on the wire (the same on both nodes).
    pub number: u32,
    /// The peer at the other end.
    pub peer: String,
    /// Entry: the client's address.
    pub client: Option<SocketAddr>,
    /// Exit: the local address of the channel's own socket (its port is
    /// what the target sees).
    pub local: Option<SocketAddr>,
    /// Exit: where the channel's socket sends (the forward target or the
    /// router destination); router entry: the destination the client
    /// addressed.
    pub target: Option<SocketAddr>,
    /// Seconds since the channel was opened.
    pub age_secs: f64,
    /// Seconds since it last carried a datagram.
    pub idle_secs: f64,
    /// Datagrams it took towards the peer (from the client on an entry,
    /// from the target on an exit).
    pub to_peer_datagrams: u64,
    /// Datagrams it took from the peer.
    pub from_peer_datagrams: u64,
}

/// The peers' names by peer id (slot): a reload keeps each kept peer's
/// slot and puts new ones in freed slots, so a slot is not the peer's
/// position in the file. Retired and unknown slots are `?`.
pub fn peer_names(node: &DaemonNode, config: &Config) -> Vec<String> {
    let link = node.link();
    let mut names = vec!["?".to_owned(); link.peer_count()];
    for (i, spec) in config.peers.iter().enumerate() {
        if let Some(id) = slot_of(node, i, spec) {
            if let Some(n) = names.get_mut(usize::from(id.0)) {
                n.clone_from(&spec.name);
            }
        }
    }
    names
}

/// The slot of the peer `spec`, `i`th in the file: `i` itself unless a
/// reload moved it (a scan of the peers then).
fn slot_of(
    node: &DaemonNode,
    i: usize,
    spec: &crate::config::PeerSpec,
) -> Option<sdt_core::link::PeerId> {
    let link = node.link();
    let id = sdt_core::link::PeerId(u16::try_from(i).ok()?);
    match link.peer_config(id) {
        Some(c) if c.public_key == spec.public_key => Some(id),
        _ => link.peer_by_key(&spec.public_key),
    }
}

impl Channels {
    /// Lists the channels of `node` at `now` under `query`; `local` gives
    /// an exit channel's socket address (the runtime owns the sockets).
    /// O(table size) plus the sort of each service's channels: run only on
    /// request.
    pub fn collect(
        node: &DaemonNode,
        config: &Config,
        now: Instant,
        query: ChannelQuery,
        local: impl Fn(sdt_core::channel::ChannelId) -> Option<SocketAddr>,
    ) -> Channels {
        use sdt_core::node::{Half, Role};
        let names = peer_names(node, config);
        let limit = query.limit.min(MAX_CHANNEL_LIMIT);
        let table = node.channels();
        let mut services = Vec::new();
        for (si, (c, _)) in node.services().enumerate() {
            if !c.role.has_channels() {
                continue;
            }
            let mut all: Vec<_> = table
                .iter()
                .filter(|(_, ch)| ch.service.get() == si)
                .collect();
            let open = all.len();
            let traffic = |ch: &sdt_core::channel::Channel| ch.to_peer.saturating_add(ch.from_peer);
            match query.sort {
                ChannelSort::Idle => all.sort_by_key(|(_, ch)| (ch.last_active, ch.number)),
                ChannelSort::Age => all.sort_by_key(|(_, ch)| (ch.created, ch.number)),
                ChannelSort::Traffic => {
                    all.sort_by_key(|(_, ch)| (std::cmp::Reverse(traffic(ch)), ch.number))
                }
            }
            all.truncate(limit);
            let exit = c.role.half() == Half::Exit;
            let channels = all
                .into_iter()
                .map(|(id, ch)| ChannelState {
                    number: ch.number,
                    peer: names
                        .get(usize::from(ch.peer))
                        .map_or_else(|| "?".to_owned(), Clone::clone),
                    client: ch.client,
                    local: if exit { local(id) } else { None },
                    target: match &c.role {
                        Role::ForwardExit { target } => Some(*target),
                        _ => ch.destination,
                    },
                    age_secs: now.saturating_since(ch.created).as_secs_f64(),
                    idle_secs: now.saturating_since(ch.last_active).as_secs_f64(),
                    to_peer_datagrams: ch.to_peer,
                    from_peer_datagrams: ch.from_peer,
                })
                .collect();
            services.push(ServiceChannels {
                id: c.id,
                mode: c.role.mode().as_str().to_owned(),
                half: c.role.half().as_str().to_owned(),
                open,
                channels,
            });
        }
        Channels {
            sort: query.sort,
            limit,
            services,
        }
    }
}

impl fmt::Display for Channels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        if self.services.is_empty() {
            out.push_str("no forward or router service: no channels\n");
        }
        for (i, s) in self.services.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = write!(
                out,
                "service {} ({}, {}): {} open",
                s.id, s.mode, s.half, s.open
            );
            if s.open > s.channels.len() {
                let _ = write!(
                    out,
                    ", the first {} by {} shown",
                    s.channels.len(),
                    self.sort.as_str()
                );
            }
            out.push('\n');
            if s.channels.is_empty() {
                continue;
            }
            let exit = s.half == "exit";
            let addr = |a: Option<SocketAddr>| a.map_or_else(|| "-".to_owned(), |a| a.to_string());
            let rows: Vec<[String; 7]> = s
                .channels
                .iter()
                .map(|c| {
                    let at = if exit {
                        format!("{} -> {}", addr(c.local), addr(c.target))
                    } else if c.target.is_some() {
                        format!("{} -> {}", addr(c.client), addr(c.target))
                    } else {
                        addr(c.client)
                    };
                    [
                        c.number.to_string(),
                        c.peer.clone(),
                        at,
                        format!("{:.0} s", c.age_secs),
                        format!("{:.0} s", c.idle_secs),
                        c.to_peer_datagrams.to_string(),
                        c.from_peer_datagrams.to_string(),
                    ]
                })
                .collect();
            let head = [
                "channel".to_owned(),
                "peer".to_owned(),
                if exit {
                    "socket -> target".to_owned()
                } else {
                    "client".to_owned()
                },
                "age".to_owned(),
                "idle".to_owned(),
                "to peer".to_owned(),
                "from peer".to_owned(),
            ];
            let mut width = [0usize; 7];
            for row in std::iter::once(&head).chain(&rows) {
                for (w, cell) in width.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            for row in std::iter::once(&head).chain(&rows) {
                let mut line = String::from(" ");
                for (i, (cell, w)) in row.iter().zip(width).enumerate() {
                    // Numbers right-aligned, text left-aligned.
                    if i == 0 || i >= 3 {
                        let _ = write!(line, " {cell:>w$}");
                    } else {
                        let _ = write!(line, " {cell:<w$}");
                    }
                }
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        f.write_str(&out)
    }
}
