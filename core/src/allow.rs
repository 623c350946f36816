//! The allow-list of a router exit: which destinations the exit will send
//! the tunnel's UDP datagrams, ICMP echo requests and (through an L3 exit)
//! IP packets to.
//!
//! A list is a set of [`AllowRule`]s, each a network (address and prefix
//! length) and a [`Protocol`]: UDP or TCP with an inclusive range of
//! destination ports, ICMP, or any IP protocol. A destination is allowed if
//! any rule matches it; an empty list allows nothing. A UDP rule never
//! allows ICMP and an ICMP rule never allows UDP. Inside core an echo
//! flow's destination is its address with port 0 (no UDP datagram has
//! destination port 0), so one check, [`AllowList::allows`], covers the
//! socket exit; an L3 exit checks whole packets with
//! [`AllowList::allows_packet`].
//!
//! What each rule lets through each exit:
//!
//! | rule | socket exit | L3 exit (`exit = "tun"`) |
//! | --- | --- | --- |
//! | UDP (`10.0.0.0/8:53`) | UDP datagrams to those ports | UDP packets to those ports |
//! | `tcp://` | nothing (the socket exit carries no TCP) | TCP packets to those ports |
//! | `icmp://` | ICMP echo (ping) | every ICMP (ICMPv6) message |
//! | `ip://` | UDP to any port and ICMP echo | every IP packet, any protocol |
//!
//! An L3 exit's packet whose ports cannot be read (an IPv4 fragment after
//! the first, an IPv6 one after the first) matches only a rule of every
//! port of its protocol, or an `ip://` rule: a port range is never assumed.
//!
//! Families: IPv4 rules match only IPv4 destinations and IPv6 rules only
//! IPv6 ones. An IPv4-mapped IPv6 destination (`::ffff:a.b.c.d`) reaches
//! the IPv4 host `a.b.c.d` through a dual-stack socket, so it is matched as
//! that IPv4 address against the IPv4 rules, and never against IPv6 rules
//! (otherwise `[::]/0` would open all of IPv4). For the same reason a rule
//! cannot be written for a network inside `::ffff:0:0/96`: it would never
//! match; write it in IPv4 form instead.
//!
//! Rules have a text form, parsed by [`AllowRule::from_str`] and written by
//! its [`Display`](fmt::Display):
//!
//! | text | meaning |
//! | --- | --- |
//! | `10.0.0.0/8:53` | port 53 anywhere in 10.0.0.0/8 |
//! | `0.0.0.0/0:443` | port 443 on any IPv4 host |
//! | `192.0.2.1:1000-2000` | ports 1000 to 2000 (inclusive) on one host |
//! | `[2001:db8::]/32:53` | port 53 in 2001:db8::/32 |
//! | `[::1]:53` | port 53 on one IPv6 host |
//! | `10.0.0.0/8` | every port, 1 to 65535, in 10.0.0.0/8 |
//! | `icmp://10.0.0.0/8` | ICMP echo (ping) to any host in 10.0.0.0/8 |
//! | `icmp://[2001:db8::]/32` | ICMPv6 echo to 2001:db8::/32 |
//! | `tcp://10.0.0.0/8:80` | TCP port 80 in 10.0.0.0/8 (L3 exit only) |
//! | `tcp://192.0.2.1` | every TCP port on one host (L3 exit only) |
//! | `ip://10.0.0.0/8` | every protocol and port in 10.0.0.0/8 |
//!
//! IPv6 addresses are always in brackets, so that a port is never mistaken
//! for the last group of an address. A network whose address has bits set
//! past the prefix (`10.0.0.1/8`) is refused, as `ip route` does, rather
//! than silently widened. Port 0 is not a destination port and is refused.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::ops::RangeInclusive;
use core::str::FromStr;

/// The ports of a rule written without any: all of them, 1 to 65535.
pub const ALL_PORTS: RangeInclusive<u16> = 1..=u16::MAX;

/// Why a rule was refused, or could not be added to a list.
///
/// What the caller must do: refuse the configuration that held the rule,
/// showing the text and this error; an exit never runs with a partly read
/// allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllowError {
    /// Not of the form `ADDRESS[/PREFIX][:PORT[-PORT]]`, with an IPv6
    /// address in brackets.
    Syntax,
    /// The address is not a valid IPv4 address (unbracketed) or IPv6
    /// address (in brackets).
    BadAddress,
    /// The prefix length is not a decimal number up to 32 (IPv4) or 128
    /// (IPv6).
    BadPrefix,
    /// A port is not a decimal number from 1 to 65535.
    BadPort,
    /// The first port of the range is above the last.
    EmptyPortRange,
    /// The address has bits set past the prefix length (`10.0.0.1/8`).
    HostBitsSet,
    /// An IPv6 network inside `::ffff:0:0/96`: IPv4-mapped destinations are
    /// matched by IPv4 rules, so write the rule in IPv4 form.
    Ipv4Mapped,
    /// The allow-list is full.
    TooManyRules,
    /// An `icmp://` rule with a port: ICMP has none.
    IcmpPort,
    /// An `ip://` rule with a port: it allows every protocol and port.
    AnyPort,
}

impl fmt::Display for AllowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AllowError::Syntax => {
                "expected ADDRESS[/PREFIX][:PORT[-PORT]], with an IPv6 address in brackets"
            }
            AllowError::BadAddress => "not an IPv4 address, or an IPv6 address in brackets",
            AllowError::BadPrefix => "prefix length is not a number up to 32 (IPv4) or 128 (IPv6)",
            AllowError::BadPort => "port is not a number from 1 to 65535",
            AllowError::EmptyPortRange => "port range is empty: first port above the last",
            AllowError::HostBitsSet => "address has bits set past the prefix length",
            AllowError::Ipv4Mapped => {
                "IPv4-mapped IPv6 network: write the rule with the IPv4 address"
            }
            AllowError::TooManyRules => "too many allow rules",
            AllowError::IcmpPort => "an icmp:// rule names a network, not a port",
            AllowError::AnyPort => {
                "an ip:// rule allows every protocol and port; it names a network only"
            }
        })
    }
}

impl core::error::Error for AllowError {}

/// What a rule allows besides its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// UDP, to the rule's ports (written without a scheme).
    Udp,
    /// TCP, to the rule's ports (`tcp://`); only an L3 exit carries it.
    Tcp,
    /// ICMP (`icmp://`): echo at a socket exit, every message at an L3 exit.
    Icmp,
    /// Every IP protocol and port (`ip://`).
    Any,
}

impl Protocol {
    /// The scheme written before the network, `""` for UDP.
    const fn scheme(self) -> &'static str {
        match self {
            Protocol::Udp => "",
            Protocol::Tcp => "tcp://",
            Protocol::Icmp => "icmp://",
            Protocol::Any => "ip://",
        }
    }
}

/// IP protocol numbers ([IANA](https://www.iana.org/assignments/protocol-numbers)).
pub mod proto {
    /// ICMP (IPv4).
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// One rule: a network (address + prefix length), a [`Protocol`] and, for
/// UDP and TCP, an inclusive port range.
///
/// Always valid: the address has no bits set past the prefix, the prefix
/// fits the family, the port range is non-empty and excludes port 0, and an
/// IPv6 network is not IPv4-mapped. See the [module docs](self) for the text
/// form and how families are matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllowRule {
    network: IpAddr,
    prefix: u8,
    protocol: Protocol,
    /// UDP or TCP ports; (0, 0) for an ICMP rule, all for an `ip://` one.
    ports: (u16, u16),
}

impl AllowRule {
    /// A rule for destinations in `network`/`prefix` with a port in `ports`.
    ///
    /// Refuses a prefix longer than the address ([`AllowError::BadPrefix`]),
    /// an address with bits set past the prefix
    /// ([`AllowError::HostBitsSet`]), an IPv4-mapped IPv6 network
    /// ([`AllowError::Ipv4Mapped`]), port 0 ([`AllowError::BadPort`]) and an
    /// empty range ([`AllowError::EmptyPortRange`]).
    pub fn new(
        network: IpAddr,
        prefix: u8,
        ports: RangeInclusive<u16>,
    ) -> Result<Self, AllowError> {
        if prefix > max_prefix(&network) {
            return Err(AllowError::BadPrefix);
        }
        if mask(network, prefix) != network {
            return Err(AllowError::HostBitsSet);
        }
        if let IpAddr::V6(address) = network {
            if prefix >= 96 && address.to_ipv4_mapped().is_some() {
                return Err(AllowError::Ipv4Mapped);
            }
        }
        let (first, last) = (*ports.start(), *ports.end());
        if first == 0 {
            return Err(AllowError::BadPort);
        }
        if first > last {
            return Err(AllowError::EmptyPortRange);
        }
        Ok(Self {
            network,
            prefix,
            protocol: Protocol::Udp,
            ports: (first, last),
        })
    }

    /// A rule for ICMP echo to hosts in `network`/`prefix`; refused as
    /// [`AllowRule::new`] refuses a network.
    pub fn icmp(network: IpAddr, prefix: u8) -> Result<Self, AllowError> {
        let mut rule = Self::new(network, prefix, ALL_PORTS)?;
        rule.protocol = Protocol::Icmp;
        rule.ports = (0, 0);
        Ok(rule)
    }

    /// A rule for TCP to `ports` in `network`/`prefix`; refused as
    /// [`AllowRule::new`] refuses its arguments.
    pub fn tcp(
        network: IpAddr,
        prefix: u8,
        ports: RangeInclusive<u16>,
    ) -> Result<Self, AllowError> {
        let mut rule = Self::new(network, prefix, ports)?;
        rule.protocol = Protocol::Tcp;
        Ok(rule)
    }

    /// A rule for every IP protocol and port in `network`/`prefix`.
    pub fn any(network: IpAddr, prefix: u8) -> Result<Self, AllowError> {
        let mut rule = Self::new(network, prefix, ALL_PORTS)?;
        rule.protocol = Protocol::Any;
        Ok(rule)
    }

    /// Whether this rule allows ICMP (and no UDP port).
    pub const fn is_icmp(&self) -> bool {
        matches!(self.protocol, Protocol::Icmp)
    }

    /// What the rule allows besides its network.
    pub const fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The network's address, with no bits set past the prefix.
    pub const fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length: up to 32 for IPv4, up to 128 for IPv6.
    pub const fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The destination ports matched, inclusive; `0..=0` for an ICMP rule
    /// (port 0 is how core names an echo flow's destination).
    pub const fn ports(&self) -> RangeInclusive<u16> {
        RangeInclusive::new(self.ports.0, self.ports.1)
    }

    /// Socket exit: whether `dest` (a UDP destination, or an echo
    /// destination with port 0) is in the network and allowed by the
    /// protocol: a UDP rule's port range, an ICMP rule's port 0, any port
    /// for an `ip://` rule, never for a TCP rule. An IPv4-mapped IPv6
    /// destination is taken as its IPv4 address; IPv6 flow information and
    /// scope are ignored.
    pub fn matches(&self, dest: &SocketAddr) -> bool {
        let port = dest.port();
        let protocol_ok = match self.protocol {
            Protocol::Udp | Protocol::Icmp => port >= self.ports.0 && port <= self.ports.1,
            Protocol::Tcp => false,
            Protocol::Any => true,
        };
        protocol_ok && self.contains(dest.ip())
    }

    /// L3 exit: whether an IP packet to `destination` of IP protocol
    /// `protocol` (the upper-layer header's number, [`proto`]) with
    /// destination port `port` (`None` where it cannot be read) is allowed.
    /// A UDP or TCP rule needs its protocol and the port in its range, or
    /// the range to be every port when the port is unknown; an ICMP rule
    /// takes any ICMP message of the destination's family; `ip://` takes
    /// all.
    pub fn matches_packet(&self, destination: IpAddr, protocol: u8, port: Option<u16>) -> bool {
        let ports_ok = |wanted: u8| {
            protocol == wanted
                && match port {
                    Some(p) => p >= self.ports.0 && p <= self.ports.1,
                    None => self.ports() == ALL_PORTS,
                }
        };
        let protocol_ok = match self.protocol {
            Protocol::Udp => ports_ok(proto::UDP),
            Protocol::Tcp => ports_ok(proto::TCP),
            Protocol::Icmp => {
                protocol
                    == if destination.is_ipv4() {
                        proto::ICMP
                    } else {
                        proto::ICMPV6
                    }
            }
            Protocol::Any => true,
        };
        protocol_ok && self.contains(destination)
    }

    /// Whether `address` is in the rule's network (an IPv4-mapped IPv6
    /// address as its IPv4 address).
    fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        address.is_ipv4() == self.network.is_ipv4() && mask(address, self.prefix) == self.network
    }
}

/// The longest prefix for the family of `address`.
const fn max_prefix(address: &IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `address` with every bit past the first `prefix` cleared. `prefix` is at
/// most the family's length.
fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & keep))
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & keep))
        }
    }
}

/// A decimal number of ASCII digits only (no sign, no spaces).
fn parse_decimal<T: FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Whether a rule's text (without its scheme) writes a port: a `:` after
/// the IPv6 brackets, or anywhere in an IPv4 rule.
fn names_port(text: &str) -> bool {
    let after = text.find(']').map_or(text, |i| &text[i + 1..]);
    after.contains(':')
}

fn parse_port(text: &str) -> Result<u16, AllowError> {
    match parse_decimal::<u16>(text) {
        Some(port) if port != 0 => Ok(port),
        _ => Err(AllowError::BadPort),
    }
}

impl FromStr for AllowRule {
    type Err = AllowError;

    /// Parses `[tcp://]ADDRESS[/PREFIX][:PORT[-PORT]]`, `icmp://ADDRESS[/PREFIX]`
    /// or `ip://ADDRESS[/PREFIX]`:
    /// see the [module docs](self). No prefix means a single host (/32 or
    /// /128); no port means [`ALL_PORTS`]. No spaces are allowed anywhere.
    fn from_str(text: &str) -> Result<Self, AllowError> {
        if let Some((scheme, rest)) = text.split_once("://") {
            // One scheme only: the rest is a plain rule's text.
            if rest.contains("://") || !matches!(scheme, "icmp" | "ip" | "tcp") {
                return Err(AllowError::Syntax);
            }
        }
        if let Some(network) = text.strip_prefix("icmp://") {
            let udp: AllowRule = network.parse()?;
            if udp.ports() != ALL_PORTS {
                return Err(AllowError::IcmpPort);
            }
            return Self::icmp(udp.network, udp.prefix);
        }
        if let Some(network) = text.strip_prefix("ip://") {
            let udp: AllowRule = network.parse()?;
            if names_port(network) {
                return Err(AllowError::AnyPort);
            }
            return Self::any(udp.network, udp.prefix);
        }
        if let Some(rest) = text.strip_prefix("tcp://") {
            let udp: AllowRule = rest.parse()?;
            return Self::tcp(udp.network, udp.prefix, udp.ports());
        }
        if text.is_empty() {
            return Err(AllowError::Syntax);
        }
        let (network, rest) = if let Some(bracketed) = text.strip_prefix('[') {
            let close = bracketed.find(']').ok_or(AllowError::Syntax)?;
            let address =
                Ipv6Addr::from_str(&bracketed[..close]).map_err(|_| AllowError::BadAddress)?;
            (IpAddr::V6(address), &bracketed[close + 1..])
        } else {
            // An IPv6 address outside brackets (or a second port separator).
            if text.matches(':').count() > 1 {
                return Err(AllowError::Syntax);
            }
            let end = text.find(['/', ':']).unwrap_or(text.len());
            let address = Ipv4Addr::from_str(&text[..end]).map_err(|_| AllowError::BadAddress)?;
            (IpAddr::V4(address), &text[end..])
        };
        let (prefix, rest) = match rest.strip_prefix('/') {
            Some(after) => {
                let end = after.find(':').unwrap_or(after.len());
                let prefix = parse_decimal::<u8>(&after[..end])
                    .filter(|&p| p <= max_prefix(&network))
                    .ok_or(AllowError::BadPrefix)?;
                (prefix, &after[end..])
            }
            None => (max_prefix(&network), rest),
        };
        let ports = if rest.is_empty() {
            ALL_PORTS
        } else {
            let ports = rest.strip_prefix(':').ok_or(AllowError::Syntax)?;
            match ports.split_once('-') {
                Some((first, last)) => parse_port(first)?..=parse_port(last)?,
                None => {
                    let port = parse_port(ports)?;
                    port..=port
                }
            }
        };
        Self::new(network, prefix, ports)
    }
}

impl fmt::Display for AllowRule {
    /// The canonical text: the prefix always written, IPv6 in brackets, the
    /// port part left out for all ports and a single port written once, as
    /// in `10.0.0.0/8`, `192.0.2.1/32:1000-2000`, `[2001:db8::]/32:53`.
    /// It parses back to the same rule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.protocol.scheme())?;
        match self.network {
            IpAddr::V4(v4) => write!(f, "{v4}/{}", self.prefix)?,
            IpAddr::V6(v6) => write!(f, "[{v6}]/{}", self.prefix)?,
        }
        if matches!(self.protocol, Protocol::Icmp | Protocol::Any) {
            return Ok(());
        }
        match self.ports {
            (0, _) | (1, u16::MAX) => Ok(()),
            (first, last) if first == last => write!(f, ":{first}"),
            (first, last) => write!(f, ":{first}-{last}"),
        }
    }
}

/// The allow-list of a router exit: empty allows nothing.
///
/// Holds at most `N` rules, in the order they were pushed (order does not
/// change what is allowed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList<const N: usize> {
    rules: heapless::Vec<AllowRule, N>,
}

impl<const N: usize> AllowList<N> {
    /// An empty list, which allows nothing.
    pub const fn new() -> Self {
        Self {
            rules: heapless::Vec::new(),
        }
    }

    /// Adds a rule; [`AllowError::TooManyRules`] if `N` rules are there
    /// already.
    pub fn push(&mut self, rule: AllowRule) -> Result<(), AllowError> {
        self.rules.push(rule).map_err(|_| AllowError::TooManyRules)
    }

    /// Whether any rule matches `dest` (see [`AllowRule::matches`]).
    pub fn allows(&self, dest: &SocketAddr) -> bool {
        self.rules.iter().any(|rule| rule.matches(dest))
    }

    /// Whether any rule matches an IP packet (see
    /// [`AllowRule::matches_packet`]).
    pub fn allows_packet(&self, destination: IpAddr, protocol: u8, port: Option<u16>) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.matches_packet(destination, protocol, port))
    }

    /// The rules, in the order they were pushed.
    pub fn rules(&self) -> &[AllowRule] {
        &self.rules
    }
}

#[cfg(test)]
mod tests;
