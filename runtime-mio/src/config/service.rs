//! Validation of one `[[service]]`, in the steps the domain has: which
//! peer and mode, which half this node holds (from the keys given), the
//! customer-facing addresses, the router's keys (TUN device, allow list,
//! an L3 exit's peer addresses), the channel limits and the push buffer;
//! then what must be unique across services. Every step names the line
//! and key of what it refuses.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use sdt_core::allow::AllowRule;
use sdt_core::node::{ChannelLimits, ServiceId, MAX_ALLOW_RULES, MAX_PEER_ADDRESSES};
use toml::Spanned;

use super::{
    interface_kind, same_port, ConfigError, Ctx, Half, InterfaceAddress, IpNet, Mode, PeerRef,
    PeerSpec, RawService, Result, Route, RouterExit, ServiceSpec, TunSpec, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CHANNELS, DEFAULT_MIN_IDLE_FOR_EVICTION, DEFAULT_NEW_CHANNELS_PER_SECOND,
    MAX_CHANNELS, MAX_PUSH_BUFFER, MAX_TUN_NAME_LEN, MIN_PUSH_BUFFER, MIN_TUN_MTU,
};

/// The keys that tell modes and halves apart, in the order they are
/// checked: a key given to a mode that does not use it is refused as the
/// first of these, so a service is told about them in a stable order.
const MODE_KEYS: [&str; 10] = [
    "listen",
    "target",
    "tun",
    "address",
    "routes",
    "tun_mtu",
    "tun_offload",
    "allow",
    "exit",
    "peer_addresses",
];

/// Which of [`MODE_KEYS`] a kind of service uses, and how the error for
/// any other one says what it uses instead. Which half needs which of
/// them is checked by the mode's own step ([`Ctx::forward_half`],
/// [`Ctx::router_half`], ...), which words what is missing.
fn keys_used(mode: Mode, exit: RouterExit) -> (&'static [&'static str], &'static str) {
    const ROUTER: &[&str] = &[
        "tun",
        "address",
        "routes",
        "tun_mtu",
        "tun_offload",
        "allow",
        "exit",
        "peer_addresses",
    ];
    match mode {
        Mode::Forward | Mode::Push => (
            &["listen", "target"],
            "it uses listen on the entry or target on the exit",
        ),
        Mode::Direct => (
            &["listen", "target"],
            "it uses listen and target on both nodes",
        ),
        Mode::Router if exit == RouterExit::Tun => (
            ROUTER,
            "it uses tun, and allow and peer_addresses on the exit",
        ),
        Mode::Router => (ROUTER, "it uses tun on the entry or allow on the exit"),
    }
}

impl RawService {
    /// Where `key` (one of [`MODE_KEYS`]) was given; `None` if it was not.
    fn span_of(&self, key: &str) -> Option<Range<usize>> {
        let text = |v: &Option<Spanned<String>>| v.as_ref().map(Spanned::span);
        let list = |v: &Option<Spanned<Vec<Spanned<String>>>>| v.as_ref().map(Spanned::span);
        match key {
            "listen" => text(&self.listen),
            "target" => text(&self.target),
            "tun" => text(&self.tun),
            "address" => text(&self.address),
            "routes" => list(&self.routes),
            "tun_mtu" => self.tun_mtu.as_ref().map(Spanned::span),
            "tun_offload" => self.tun_offload.as_ref().map(Spanned::span),
            "allow" => list(&self.allow),
            "exit" => text(&self.exit),
            "peer_addresses" => list(&self.peer_addresses),
            _ => None,
        }
    }
}

/// Whether `spec` is the exit half of an L3 router service.
fn is_l3_exit(spec: &ServiceSpec) -> bool {
    spec.mode == Mode::Router && spec.half == Half::Exit && spec.exit == RouterExit::Tun
}

impl Ctx<'_> {
    /// One `[[service]]`, validated step by step; the first key found wrong
    /// is the error. `peers` are the node's validated peers, which `peer`
    /// names.
    pub(super) fn service(
        &self,
        raw: &Spanned<RawService>,
        peers: &[PeerSpec],
    ) -> Result<ServiceSpec> {
        let s = raw.get_ref();
        let id = self.service_id(raw)?;
        let (peer, peer_name) = self.service_peer(raw, peers)?;
        let mode = self.service_mode(raw)?;
        let exit = self.router_exit(s)?;
        self.keys_of_mode(s, mode, exit)?;
        let half = match mode {
            Mode::Forward | Mode::Push => self.forward_half(raw, mode)?,
            Mode::Direct => self.direct_half(raw)?,
            Mode::Router if exit == RouterExit::Tun => self.l3_router_half(raw)?,
            Mode::Router => self.router_half(raw)?,
        };
        self.any_peer_on_an_exit(peer, peer_name, half)?;

        let listen = self.service_listen(s)?;
        let target = self.service_target(s, mode, listen)?;
        let tun = self.tun(s)?;
        let allow = self.allow(s)?;
        let peer_addresses = self.peer_addresses(s)?;
        if half == Half::Exit && exit == RouterExit::Tun && peer == PeerRef::Any {
            return Err(self.at(
                peer_name,
                "peer",
                "an L3 exit's peer_addresses belong to one peer: name it, not `*` (several \
                 entries share an exit with a [[service]] each)",
            ));
        }
        if half == Half::Exit && mode == Mode::Router && allow.is_empty() {
            tracing::warn!(
                "{}: router service {id} has an empty allow list: it will send nothing",
                self.path.display()
            );
        }

        let limits = self.channel_limits(s)?;
        let buffer = self.push_buffer(s, mode, half)?;
        let (port_hold, answered_port_hold) = self.port_holds(s, mode, half)?;

        Ok(ServiceSpec {
            id,
            peer,
            mode,
            half,
            listen,
            target,
            tun,
            allow,
            exit,
            peer_addresses,
            idle_timeout: limits.idle_timeout,
            max_channels: limits.max_channels,
            min_idle_for_eviction: limits.min_idle_for_eviction,
            new_channels_per_second: limits.new_channels_per_second,
            port_hold,
            buffer,
            answered_port_hold,
        })
    }

    /// A key this `[[service]]` needs and lacks; `what` completes the
    /// message (how to supply it).
    fn missing(&self, raw: &Spanned<RawService>, key: &str, what: &str) -> ConfigError {
        self.at(raw, key, format!("missing in this [[service]]{what}"))
    }

    /// `id`: required, 0..=255 (one byte on the wire). Uniqueness is
    /// checked against the earlier services ([`Ctx::unique_service`]).
    fn service_id(&self, raw: &Spanned<RawService>) -> Result<ServiceId> {
        let id = raw
            .get_ref()
            .id
            .as_ref()
            .ok_or_else(|| self.missing(raw, "id", ""))?;
        u8::try_from(*id.get_ref())
            .map(ServiceId::new)
            .map_err(|_| self.at(id, "id", "a service id is a number from 0 to 255"))
    }

    /// `peer`: required, a `[[peer]]` name, or `*` for any configured
    /// peer (which needs at least one). Returned with the key as written,
    /// for the later checks that only some halves may use `*`.
    fn service_peer<'r>(
        &self,
        raw: &'r Spanned<RawService>,
        peers: &[PeerSpec],
    ) -> Result<(PeerRef, &'r Spanned<String>)> {
        let peer_name = raw
            .get_ref()
            .peer
            .as_ref()
            .ok_or_else(|| self.missing(raw, "peer", ""))?;
        if peer_name.get_ref() == "*" {
            if peers.is_empty() {
                return Err(self.at(
                    peer_name,
                    "peer",
                    "`*` means any configured peer, and there is no [[peer]]",
                ));
            }
            return Ok((PeerRef::Any, peer_name));
        }
        match peers.iter().position(|p| &p.name == peer_name.get_ref()) {
            Some(i) => Ok((PeerRef::Named(i), peer_name)),
            None => Err(self.at(
                peer_name,
                "peer",
                format!("there is no [[peer]] named `{}`", peer_name.get_ref()),
            )),
        }
    }

    /// `mode`: required, one of the four.
    fn service_mode(&self, raw: &Spanned<RawService>) -> Result<Mode> {
        let mode = raw
            .get_ref()
            .mode
            .as_ref()
            .ok_or_else(|| self.missing(raw, "mode", ""))?;
        match mode.get_ref().as_str() {
            "direct" => Ok(Mode::Direct),
            "forward" => Ok(Mode::Forward),
            "push" => Ok(Mode::Push),
            "router" => Ok(Mode::Router),
            other => Err(self.at(
                mode,
                "mode",
                format!("unknown mode `{other}`; expected direct, forward, push or router"),
            )),
        }
    }

    /// `exit`: `socket` (the default) or `tun`. Read before the mode's
    /// keys are checked, since a router's exit decides which it uses; a
    /// mode other than router refuses the key itself ([`keys_used`]).
    fn router_exit(&self, s: &RawService) -> Result<RouterExit> {
        match s.exit.as_ref().map(|e| (e, e.get_ref().as_str())) {
            None | Some((_, "socket")) => Ok(RouterExit::Socket),
            Some((_, "tun")) => Ok(RouterExit::Tun),
            Some((e, other)) => Err(self.at(
                e,
                "exit",
                format!("unknown exit `{other}`; expected socket (the default) or tun"),
            )),
        }
    }

    /// Refuses each of [`MODE_KEYS`] given to a mode that never uses it
    /// ([`keys_used`]): a `tun` on a forward service is a mistake, not a
    /// key to ignore.
    fn keys_of_mode(&self, s: &RawService, mode: Mode, exit: RouterExit) -> Result<()> {
        let (used, uses) = keys_used(mode, exit);
        for key in MODE_KEYS.into_iter().filter(|k| !used.contains(k)) {
            if let Some(span) = s.span_of(key) {
                return Err(self.invalid(
                    Some(span),
                    key,
                    format!("a {mode} service does not use {key} ({uses})"),
                ));
            }
        }
        Ok(())
    }

    /// The half of a forward or push service: `listen` makes this node
    /// the entry, `target` the exit; exactly one of them.
    fn forward_half(&self, raw: &Spanned<RawService>, mode: Mode) -> Result<Half> {
        let s = raw.get_ref();
        match (&s.listen, &s.target) {
            (Some(_), None) => Ok(Half::Entry),
            (None, Some(_)) => Ok(Half::Exit),
            (Some(_), Some(target)) => Err(self.at(
                target,
                "target",
                format!(
                    "a {mode} service has listen on its entry half or target on \
                     its exit half, not both (mode = \"direct\" has both)"
                ),
            )),
            (None, None) => Err(self.missing(
                raw,
                "listen",
                ": give listen (this node is the entry) or target (this node is the exit)",
            )),
        }
    }

    /// A direct service is the same on both nodes: each has its own
    /// customer-facing `listen` and the one fixed customer `target`.
    fn direct_half(&self, raw: &Spanned<RawService>) -> Result<Half> {
        let s = raw.get_ref();
        for (key, given) in [
            ("listen", s.listen.is_some()),
            ("target", s.target.is_some()),
        ] {
            if !given {
                return Err(self.missing(
                    raw,
                    key,
                    ": a direct service needs both listen and target",
                ));
            }
        }
        Ok(Half::Both)
    }

    /// The half of an L3 router service (`exit = "tun"`): both halves have
    /// a TUN device; the exit also has `allow` and a non-empty
    /// `peer_addresses` (the entry's addresses, which its packets come
    /// from and replies go to), which the entry must not have.
    fn l3_router_half(&self, raw: &Spanned<RawService>) -> Result<Half> {
        let s = raw.get_ref();
        if s.tun.is_none() {
            return Err(self.missing(
                raw,
                "tun",
                ": a router service with exit = \"tun\" has a TUN device on both halves",
            ));
        }
        match (s.span_of("allow"), &s.peer_addresses) {
            (Some(_), Some(p)) if !p.get_ref().is_empty() => Ok(Half::Exit),
            (Some(span), _) => Err(self.invalid(
                Some(span),
                "peer_addresses",
                "an L3 exit (exit = \"tun\" with allow) needs peer_addresses: the \
                 entry's addresses, which its packets come from and replies go to",
            )),
            (None, Some(p)) => Err(self.invalid(
                Some(p.span()),
                "peer_addresses",
                "peer_addresses belongs to the exit half, with allow",
            )),
            (None, None) => Ok(Half::Entry),
        }
    }

    /// The half of a router service with socket exits: `tun` (with its
    /// `address`, `routes` and `tun_mtu`) makes this node the entry,
    /// `allow` the exit; exactly one of them. `peer_addresses` is only for
    /// an L3 exit.
    fn router_half(&self, raw: &Spanned<RawService>) -> Result<Half> {
        let s = raw.get_ref();
        if let Some(span) = s.span_of("peer_addresses") {
            return Err(self.invalid(
                Some(span),
                "peer_addresses",
                "peer_addresses is for an L3 exit: set exit = \"tun\" on both halves",
            ));
        }
        match (&s.tun, s.span_of("allow")) {
            (Some(_), None) => Ok(Half::Entry),
            (None, Some(_)) => {
                for key in ["address", "routes", "tun_mtu", "tun_offload"] {
                    if let Some(span) = s.span_of(key) {
                        return Err(self.invalid(
                            Some(span),
                            key,
                            format!("{key} belongs to the entry half, with tun"),
                        ));
                    }
                }
                Ok(Half::Exit)
            }
            (Some(_), Some(span)) => Err(self.invalid(
                Some(span),
                "allow",
                "a router service has tun on its entry half or allow on its exit \
                 half, not both",
            )),
            (None, None) => Err(self.missing(
                raw,
                "tun",
                ": give tun (this node is the entry) or allow (this node is the exit)",
            )),
        }
    }

    /// `peer = "*"` only on an exit half: an entry (and a direct service)
    /// sends first, and so must know to which peer.
    fn any_peer_on_an_exit(
        &self,
        peer: PeerRef,
        peer_name: &Spanned<String>,
        half: Half,
    ) -> Result<()> {
        if peer != PeerRef::Any || half == Half::Exit {
            return Ok(());
        }
        let which = if half == Half::Both {
            "a direct service"
        } else {
            "an entry half"
        };
        Err(self.at(
            peer_name,
            "peer",
            format!("`*` (any peer) is only for an exit half, not {which}; name a [[peer]]"),
        ))
    }

    /// `listen`: a literal `IP:port` with a fixed port, the socket
    /// customers send to. Clashes with other sockets are checked across
    /// services ([`Ctx::unique_service`]).
    fn service_listen(&self, s: &RawService) -> Result<Option<SocketAddr>> {
        let Some(l) = &s.listen else {
            return Ok(None);
        };
        let addr = self.socket_addr(l, "listen")?;
        if addr.port() == 0 {
            return Err(self.at(
                l,
                "listen",
                "port 0 would pick a random port that no customer knows; give a port",
            ));
        }
        Ok(Some(addr))
    }

    /// `target`: where an exit sends, or a direct service's one customer;
    /// an address or a name resolved now, never a wildcard. A direct
    /// service sends to its customer from its `listen` socket, which must
    /// be able to reach it.
    fn service_target(
        &self,
        s: &RawService,
        mode: Mode,
        listen: Option<SocketAddr>,
    ) -> Result<Option<SocketAddr>> {
        let Some(t) = &s.target else {
            return Ok(None);
        };
        let from = match (mode, listen) {
            (Mode::Direct, Some(l)) => Some((l, "this service's listen")),
            _ => None,
        };
        let addr = self.resolve(t, "target", from)?;
        if addr.ip().is_unspecified() {
            return Err(self.at(
                t,
                "target",
                "target must be a specific address, not 0.0.0.0 or ::",
            ));
        }
        Ok(Some(addr))
    }

    /// `tun` with `address`, `routes`, `tun_mtu` and `tun_offload`: a device name Linux
    /// accepts, free or already a TUN device ([`Ctx::tun_device_free`]);
    /// duplicate routes are kept once. Which halves may share a device is
    /// checked across services ([`Ctx::unique_service`]).
    fn tun(&self, s: &RawService) -> Result<Option<TunSpec>> {
        let Some(name) = &s.tun else {
            return Ok(None);
        };
        let n = name.get_ref();
        let ok = !n.is_empty()
            && n.len() <= MAX_TUN_NAME_LEN
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(self.at(
                name,
                "tun",
                format!(
                    "a TUN device name is 1 to {MAX_TUN_NAME_LEN} letters, digits, \
                     `-`, `_` or `.`"
                ),
            ));
        }
        let address = match &s.address {
            Some(a) => Some(
                a.get_ref()
                    .parse::<InterfaceAddress>()
                    .map_err(|e| self.at(a, "address", format!("`{}`: {e}", a.get_ref())))?,
            ),
            None => None,
        };
        let mut routes = Vec::new();
        for r in s.routes.iter().flat_map(|r| r.get_ref()) {
            let route = r
                .get_ref()
                .parse::<Route>()
                .map_err(|e| self.at(r, "routes", e.to_string()))?;
            if !routes.contains(&route) {
                routes.push(route);
            }
        }
        let mtu = match &s.tun_mtu {
            Some(m) => match u16::try_from(*m.get_ref()) {
                Ok(n) if n >= MIN_TUN_MTU => Some(n),
                _ => {
                    return Err(self.at(
                        m,
                        "tun_mtu",
                        format!("a TUN MTU is a number from {MIN_TUN_MTU} to 65535"),
                    ))
                }
            },
            None => None,
        };
        self.tun_device_free(name)?;
        Ok(Some(TunSpec {
            name: n.clone(),
            address,
            routes,
            mtu,
            offload: s.tun_offload.as_ref().map(|o| *o.get_ref()),
        }))
    }

    /// `sdt run` creates the TUN device, or attaches to a persistent one
    /// (`ip tuntap add ... mode tun`); another interface of that name (a
    /// veth, `lo`, a TAP device) makes the kernel refuse it. Looked up in
    /// `/sys/class/net` of the network namespace `sdt check` runs in.
    fn tun_device_free(&self, name: &Spanned<String>) -> Result<()> {
        interface_kind(name.get_ref()).map_err(|why| {
            self.at(
                name,
                "tun",
                format!(
                    "network interface {} {why}; name a free one (sdt creates it) or a TUN device",
                    name.get_ref()
                ),
            )
        })
    }

    /// `allow`: a router exit's rules, each parsed by core, at most as
    /// many as core's list holds. An empty list is valid (it allows
    /// nothing, which [`Ctx::service`] warns about).
    fn allow(&self, s: &RawService) -> Result<Vec<AllowRule>> {
        let mut allow = Vec::new();
        for rule in s.allow.iter().flat_map(|a| a.get_ref()) {
            allow.push(
                rule.get_ref()
                    .parse::<AllowRule>()
                    .map_err(|e| self.at(rule, "allow", format!("`{}`: {e}", rule.get_ref())))?,
            );
        }
        if let Some(span) = s.allow.as_ref().filter(|_| allow.len() > MAX_ALLOW_RULES) {
            return Err(self.at(span, "allow", format!("at most {MAX_ALLOW_RULES} rules")));
        }
        Ok(allow)
    }

    /// `peer_addresses`: an L3 exit's ranges of the entry's addresses
    /// (WireGuard's AllowedIPs), at most as many as core holds. Ranges
    /// must not overlap, here or in other services
    /// ([`Ctx::unique_service`]): an address belongs to one peer.
    fn peer_addresses(&self, s: &RawService) -> Result<Vec<IpNet>> {
        let mut peer_addresses: Vec<IpNet> = Vec::new();
        for a in s.peer_addresses.iter().flat_map(|a| a.get_ref()) {
            let net = a
                .get_ref()
                .parse::<IpNet>()
                .map_err(|e| self.at(a, "peer_addresses", format!("`{}`: {e}", a.get_ref())))?;
            if let Some(other) = peer_addresses.iter().find(|n| n.overlaps(&net)) {
                return Err(self.at(
                    a,
                    "peer_addresses",
                    format!("{net} overlaps {other} of the same list"),
                ));
            }
            peer_addresses.push(net);
        }
        if let Some(span) = s
            .peer_addresses
            .as_ref()
            .filter(|_| peer_addresses.len() > MAX_PEER_ADDRESSES)
        {
            return Err(self.at(
                span,
                "peer_addresses",
                format!("at most {MAX_PEER_ADDRESSES} ranges"),
            ));
        }
        Ok(peer_addresses)
    }

    /// The channel limits every mode and half has: `idle_timeout`,
    /// `min_idle_for_eviction` (durations, not zero), `max_channels`
    /// (1..=[`MAX_CHANNELS`], the table all services share) and
    /// `new_channels_per_second` (at least 1); each defaults to core's
    /// [`ChannelLimits::DEFAULT`]. The port holds, which only some halves
    /// have, are [`Ctx::port_holds`]; they are left at their defaults here.
    fn channel_limits(&self, s: &RawService) -> Result<ChannelLimits> {
        let idle_timeout = match &s.idle_timeout {
            Some(d) => self.duration(d, "idle_timeout")?,
            None => DEFAULT_IDLE_TIMEOUT,
        };
        let min_idle_for_eviction = match &s.min_idle_for_eviction {
            Some(d) => self.duration(d, "min_idle_for_eviction")?,
            None => DEFAULT_MIN_IDLE_FOR_EVICTION,
        };
        let max_channels = match &s.max_channels {
            Some(m) => match u16::try_from(*m.get_ref()) {
                Ok(n) if n > 0 && n <= MAX_CHANNELS => n,
                _ => {
                    return Err(self.at(
                        m,
                        "max_channels",
                        format!("must be a number from 1 to {MAX_CHANNELS}"),
                    ))
                }
            },
            None => DEFAULT_MAX_CHANNELS,
        };
        let new_channels_per_second = match &s.new_channels_per_second {
            Some(m) => match u32::try_from(*m.get_ref()) {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(self.at(
                        m,
                        "new_channels_per_second",
                        "must be a number from 1 to 4294967295",
                    ))
                }
            },
            None => DEFAULT_NEW_CHANNELS_PER_SECOND,
        };
        Ok(ChannelLimits {
            idle_timeout,
            min_idle_for_eviction,
            max_channels,
            new_channels_per_second,
            ..ChannelLimits::DEFAULT
        })
    }

    /// `buffer`: the outage buffer, only on the entry half of a push
    /// service (the one half that keeps datagrams while the link is
    /// down), [`MIN_PUSH_BUFFER`]..=[`MAX_PUSH_BUFFER`]; `None` for none.
    fn push_buffer(&self, s: &RawService, mode: Mode, half: Half) -> Result<Option<usize>> {
        match &s.buffer {
            Some(b) if mode != Mode::Push || half != Half::Entry => Err(self.at(
                b,
                "buffer",
                "only the entry half of a push service (mode = \"push\" with listen) keeps \
                 datagrams through an outage; buffer applies there",
            )),
            Some(b) => Ok(Some(self.byte_size(
                b,
                "buffer",
                MIN_PUSH_BUFFER,
                MAX_PUSH_BUFFER,
            )?)),
            None => Ok(None),
        }
    }

    /// `port_hold` and `answered_port_hold`, only on the halves that open
    /// a socket per channel (the exit of a forward or router service);
    /// each defaults to core's.
    fn port_holds(&self, s: &RawService, mode: Mode, half: Half) -> Result<(Duration, Duration)> {
        let exit_sockets = half == Half::Exit && matches!(mode, Mode::Forward | Mode::Router);
        let port_hold = self.port_hold(
            &s.port_hold,
            "port_hold",
            exit_sockets,
            ChannelLimits::DEFAULT_PORT_HOLD,
        )?;
        let answered_port_hold = self.port_hold(
            &s.answered_port_hold,
            "answered_port_hold",
            exit_sockets,
            ChannelLimits::DEFAULT_ANSWERED_PORT_HOLD,
        )?;
        Ok((port_hold, answered_port_hold))
    }

    /// A port hold key (`port_hold`, `answered_port_hold`): a duration,
    /// zero allowed, only where the service has `exit_sockets` (the exit
    /// half of a forward or router service, which opens one per channel).
    fn port_hold(
        &self,
        value: &Option<Spanned<String>>,
        key: &str,
        exit_sockets: bool,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            Some(d) if !exit_sockets => Err(self.at(
                d,
                key,
                format!(
                    "only the exit half of a forward or router service opens a socket per \
                     channel; {key} applies there"
                ),
            )),
            Some(d) if humantime::parse_duration(d.get_ref()).is_ok_and(|d| d.is_zero()) => {
                Ok(Duration::ZERO)
            }
            Some(d) => self.duration(d, key),
            None => Ok(default),
        }
    }

    /// Checks what must be unique across services: ids, listen sockets (also
    /// against the link socket) and TUN devices.
    pub(super) fn unique_service(
        &self,
        raw: &RawService,
        spec: &ServiceSpec,
        link: Option<SocketAddr>,
        earlier: &[(Range<usize>, ServiceSpec)],
    ) -> Result<()> {
        let line_of = |span: &Range<usize>| self.line(span.start);
        if let (Some(id), Some((span, _))) =
            (&raw.id, earlier.iter().find(|(_, e)| e.id == spec.id))
        {
            return Err(self.at(
                id,
                "id",
                format!(
                    "service id {} is already used by the [[service]] on line {}",
                    spec.id,
                    line_of(span)
                ),
            ));
        }
        if let (Some(l), Some(addr)) = (&raw.listen, spec.listen) {
            // Wildcards too: the kernel refuses to bind 127.0.0.1:53 next
            // to 0.0.0.0:53 (or [::]:53) just as it refuses the same address.
            match link.filter(|link| same_port(*link, addr)) {
                Some(link) if link == addr => {
                    return Err(self.at(
                        l,
                        "listen",
                        format!("{addr} is the link's own listen address"),
                    ))
                }
                Some(link) => {
                    return Err(self.at(
                        l,
                        "listen",
                        format!(
                            "{addr} takes the same port as the link's listen address {link} \
                             (a wildcard address holds the port on every address)"
                        ),
                    ))
                }
                None => {}
            }
            let clash = earlier.iter().find_map(|(span, e)| {
                e.listen
                    .filter(|other| same_port(*other, addr))
                    .map(|other| (span, other))
            });
            match clash {
                Some((span, other)) if other == addr => {
                    return Err(self.at(
                        l,
                        "listen",
                        format!(
                            "{addr} is already used by the [[service]] on line {}",
                            line_of(span)
                        ),
                    ))
                }
                Some((span, other)) => {
                    return Err(self.at(
                        l,
                        "listen",
                        format!(
                            "{addr} takes the same port as {other} of the [[service]] on line {} \
                             (a wildcard address holds the port on every address)",
                            line_of(span)
                        ),
                    ))
                }
                None => {}
            }
        }
        if let (Some(t), Some(tun)) = (&raw.tun, &spec.tun) {
            let same = |e: &ServiceSpec| e.tun.as_ref().is_some_and(|x| x.name == tun.name);
            if let Some((span, first)) = earlier.iter().find(|(_, e)| same(e)) {
                if !(is_l3_exit(first) && is_l3_exit(spec)) {
                    return Err(self.at(
                        t,
                        "tun",
                        format!(
                            "TUN device {} is already used by the [[service]] on line {} (only \
                             L3 exits, exit = \"tun\" with allow, share one)",
                            tun.name,
                            line_of(span)
                        ),
                    ));
                }
                // The device is set up once: a sharing service repeats
                // the first one's address, routes and MTU, or leaves them out.
                let theirs = first.tun.as_ref().unwrap_or(tun);
                let differs = tun.address.is_some_and(|a| Some(a) != theirs.address)
                    || !tun.routes.is_empty() && tun.routes != theirs.routes
                    || tun.mtu.is_some_and(|m| Some(m) != theirs.mtu)
                    || tun.offload.is_some_and(|o| Some(o) != theirs.offload);
                if differs {
                    return Err(self.at(
                        t,
                        "tun",
                        format!(
                            "TUN device {} is set up by the [[service]] on line {}: give its \
                             address, routes, tun_mtu and tun_offload there, and here the same \
                             or none",
                            tun.name,
                            line_of(span)
                        ),
                    ));
                }
            }
        }
        for (span, other) in earlier {
            let overlap = spec.peer_addresses.iter().find_map(|n| {
                other
                    .peer_addresses
                    .iter()
                    .find(|m| n.overlaps(m))
                    .map(|m| (n, m))
            });
            if let (Some((n, m)), Some(raw_list)) = (overlap, &raw.peer_addresses) {
                return Err(self.at(
                    raw_list,
                    "peer_addresses",
                    format!(
                        "{n} overlaps {m} of the [[service]] on line {}: an address belongs to \
                         one peer",
                        line_of(span)
                    ),
                ));
            }
        }
        Ok(())
    }
}
