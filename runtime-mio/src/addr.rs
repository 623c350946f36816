//! The small address grammars of the configuration.
//!
//! - [`AllowRule`]: one entry of a router exit's allow-list, such as
//!   `10.0.0.0/8:53`, `0.0.0.0/0:443`, `192.0.2.1:1000-2000` or
//!   `[2001:db8::]/32:53`.
//! - [`InterfaceAddress`]: the address of a router entry's TUN device, such
//!   as `10.99.0.1/24` or `fd00:99::1/64`.
//!
//! Both are plain typed values with `FromStr` and `Display`; the runtime
//! converts them to core's types when it builds the node.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::str::FromStr;

/// Every usable destination port (port 0 is never a destination).
pub const ALL_PORTS: RangeInclusive<u16> = 1..=u16::MAX;

/// Why an allow rule or an interface address was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddrError {
    /// The text is empty.
    Empty,
    /// The address part is not an IPv4 or IPv6 address.
    BadAddress(String),
    /// A `[` without its `]`, or text between `]` and the prefix or port.
    BadBrackets,
    /// An IPv6 address without brackets.
    Ipv6NeedsBrackets,
    /// The prefix length is not a number, or too long for the family.
    BadPrefix {
        /// The prefix text as written.
        text: String,
        /// The longest prefix of the address family (32 or 128).
        max: u8,
    },
    /// The address has bits set past the prefix: `10.0.0.1/8`.
    HostBitsSet {
        /// The network the rule probably meant, e.g. `10.0.0.0/8`.
        network: IpAddr,
        /// The prefix length as written.
        prefix: u8,
    },
    /// The port part is not a port number or a `lo-hi` range.
    BadPort(String),
    /// Port 0 is never a destination.
    PortZero,
    /// A range whose low end is above its high end.
    EmptyRange {
        /// Low end as written.
        lo: u16,
        /// High end as written.
        hi: u16,
    },
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::Empty => f.write_str("empty address"),
            AddrError::BadAddress(text) => write!(f, "`{text}` is not an IP address"),
            AddrError::BadBrackets => {
                f.write_str("an IPv6 address in brackets is written `[2001:db8::]/32:53`")
            }
            AddrError::Ipv6NeedsBrackets => {
                f.write_str("an IPv6 address must be in brackets, e.g. `[2001:db8::]/32:53`")
            }
            AddrError::BadPrefix { text, max } => {
                write!(f, "prefix length `{text}` is not a number from 0 to {max}")
            }
            AddrError::HostBitsSet { network, prefix } => {
                let shown = fmt_ip_bracketed(*network);
                write!(
                    f,
                    "address has bits set past the /{prefix} prefix; the network is {shown}/{prefix}"
                )
            }
            AddrError::BadPort(text) => {
                write!(
                    f,
                    "`{text}` is not a port (1-65535) or a port range `lo-hi`"
                )
            }
            AddrError::PortZero => f.write_str("port 0 is not a destination port"),
            AddrError::EmptyRange { lo, hi } => {
                write!(f, "port range {lo}-{hi} is empty (low end above high end)")
            }
        }
    }
}

impl std::error::Error for AddrError {}

/// One entry of a router exit's allow-list: datagrams may go to addresses in
/// `network/prefix` on ports in `ports`.
///
/// Text form, as in the configuration:
/// - `CIDR:port` (`10.0.0.0/8:53`), `CIDR:lo-hi` (`192.0.2.0/24:1000-2000`),
///   or `CIDR` alone, meaning every port ([`ALL_PORTS`]);
/// - a host without `/prefix` is `/32` (IPv4) or `/128` (IPv6);
/// - IPv6 addresses always go in brackets, `[2001:db8::]/32:53` or
///   `[2001:db8::]/32`, so that `2001:db8::1:53` cannot be misread.
///
/// The network must have no bits set past the prefix (`10.0.0.1/8` is
/// refused, naming `10.0.0.0/8`), so that what is written is what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AllowRule {
    /// The network address, with every bit past `prefix` clear.
    pub network: IpAddr,
    /// Prefix length: 0 to 32 for IPv4, 0 to 128 for IPv6.
    pub prefix: u8,
    /// Allowed destination ports, never including 0.
    pub ports: RangeInclusive<u16>,
}

impl AllowRule {
    /// Whether the rule allows sending to `dest`. An IPv4 rule never matches
    /// an IPv6 destination, nor the other way round (not even IPv4-mapped
    /// IPv6 addresses).
    pub fn allows(&self, dest: SocketAddr) -> bool {
        self.ports.contains(&dest.port()) && in_network(self.network, self.prefix, dest.ip())
    }
}

impl FromStr for AllowRule {
    type Err = AddrError;

    fn from_str(text: &str) -> Result<Self, AddrError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AddrError::Empty);
        }
        let (addr_text, prefix_text, port_text) = split_rule(text)?;
        let network = parse_ip(addr_text)?;
        let prefix = match prefix_text {
            Some(p) => parse_prefix(p, network)?,
            None => max_prefix(network),
        };
        if mask(network, prefix) != network {
            return Err(AddrError::HostBitsSet {
                network: mask(network, prefix),
                prefix,
            });
        }
        let ports = match port_text {
            Some(p) => parse_ports(p)?,
            None => ALL_PORTS,
        };
        Ok(AllowRule {
            network,
            prefix,
            ports,
        })
    }
}

impl fmt::Display for AllowRule {
    /// The canonical text form: always with the prefix, ports left out when
    /// the rule allows all of them. It parses back to the same rule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = self.ports == ALL_PORTS;
        write!(f, "{}/{}", fmt_ip_bracketed(self.network), self.prefix)?;
        if all {
            Ok(())
        } else if self.ports.start() == self.ports.end() {
            write!(f, ":{}", self.ports.start())
        } else {
            write!(f, ":{}-{}", self.ports.start(), self.ports.end())
        }
    }
}

/// The address of a TUN device and the length of its network prefix, as in
/// `10.99.0.1/24`. Without `/prefix` it is a host address (`/32` or `/128`).
/// Unlike an [`AllowRule`], bits past the prefix are expected: they are the
/// host's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InterfaceAddress {
    /// The device's own address.
    pub addr: IpAddr,
    /// Prefix length of the device's network.
    pub prefix: u8,
}

impl FromStr for InterfaceAddress {
    type Err = AddrError;

    fn from_str(text: &str) -> Result<Self, AddrError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AddrError::Empty);
        }
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr = parse_ip(addr_text)?;
        let prefix = match prefix_text {
            Some(p) => parse_prefix(p, addr)?,
            None => max_prefix(addr),
        };
        Ok(InterfaceAddress { addr, prefix })
    }
}

impl fmt::Display for InterfaceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Splits a rule into address, optional prefix and optional port text.
fn split_rule(text: &str) -> Result<(&str, Option<&str>, Option<&str>), AddrError> {
    if let Some(rest) = text.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or(AddrError::BadBrackets)?;
        // After the bracket: nothing, `/prefix`, `:ports` or `/prefix:ports`.
        let (prefix_part, port) = match after.split_once(':') {
            Some((p, port)) => (p, Some(port)),
            None => (after, None),
        };
        let prefix = match prefix_part {
            "" => None,
            p => Some(p.strip_prefix('/').ok_or(AddrError::BadBrackets)?),
        };
        return Ok((addr, prefix, port));
    }
    if text.matches(':').count() > 1 {
        return Err(AddrError::Ipv6NeedsBrackets);
    }
    let (host, port) = match text.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (text, None),
    };
    Ok(match host.split_once('/') {
        Some((a, p)) => (a, Some(p), port),
        None => (host, None, port),
    })
}

fn parse_ip(text: &str) -> Result<IpAddr, AddrError> {
    text.parse()
        .map_err(|_| AddrError::BadAddress(text.to_owned()))
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn parse_prefix(text: &str, addr: IpAddr) -> Result<u8, AddrError> {
    let max = max_prefix(addr);
    let bad = || AddrError::BadPrefix {
        text: text.to_owned(),
        max,
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u8>() {
        Ok(p) if p <= max => Ok(p),
        _ => Err(bad()),
    }
}

fn parse_port(text: &str) -> Result<u16, AddrError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddrError::BadPort(text.to_owned()));
    }
    match text.parse::<u16>() {
        Ok(0) => Err(AddrError::PortZero),
        Ok(p) => Ok(p),
        Err(_) => Err(AddrError::BadPort(text.to_owned())),
    }
}

fn parse_ports(text: &str) -> Result<RangeInclusive<u16>, AddrError> {
    match text.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (parse_port(lo)?, parse_port(hi)?);
            if lo > hi {
                return Err(AddrError::EmptyRange { lo, hi });
            }
            Ok(lo..=hi)
        }
        None => {
            let p = parse_port(text)?;
            Ok(p..=p)
        }
    }
}

/// `addr` with every bit past `prefix` cleared.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

fn in_network(network: IpAddr, prefix: u8, addr: IpAddr) -> bool {
    network.is_ipv4() == addr.is_ipv4() && mask(addr, prefix) == network
}

fn fmt_ip_bracketed(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> AllowRule {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} refused: {e}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_the_documented_forms() {
        let r = rule("10.0.0.0/8:53");
        assert_eq!((r.network, r.prefix, r.ports), (ip("10.0.0.0"), 8, 53..=53));
        let r = rule("0.0.0.0/0:443");
        assert_eq!(
            (r.network, r.prefix, r.ports),
            (ip("0.0.0.0"), 0, 443..=443)
        );
        let r = rule("192.0.2.1:1000-2000");
        assert_eq!(
            (r.network, r.prefix, r.ports),
            (ip("192.0.2.1"), 32, 1000..=2000)
        );
        let r = rule("[2001:db8::]/32:53");
        assert_eq!(
            (r.network, r.prefix, r.ports),
            (ip("2001:db8::"), 32, 53..=53)
        );
    }

    #[test]
    fn port_part_is_optional() {
        assert_eq!(rule("10.0.0.0/8").ports, ALL_PORTS);
        assert_eq!(rule("192.0.2.7").prefix, 32);
        let r = rule("[2001:db8::1]");
        assert_eq!((r.prefix, r.ports), (128, ALL_PORTS));
        let r = rule("[2001:db8::]/32");
        assert_eq!(
            (r.network, r.prefix, r.ports),
            (ip("2001:db8::"), 32, ALL_PORTS)
        );
        let r = rule("[::1]:53");
        assert_eq!((r.network, r.prefix, r.ports), (ip("::1"), 128, 53..=53));
    }

    #[test]
    fn refuses_bad_rules() {
        let cases: &[(&str, AddrError)] = &[
            ("", AddrError::Empty),
            ("  ", AddrError::Empty),
            ("10.0.0/8:53", AddrError::BadAddress("10.0.0".into())),
            (
                "example.com:53",
                AddrError::BadAddress("example.com".into()),
            ),
            (
                "10.0.0.0/33",
                AddrError::BadPrefix {
                    text: "33".into(),
                    max: 32,
                },
            ),
            (
                "10.0.0.0/:53",
                AddrError::BadPrefix {
                    text: "".into(),
                    max: 32,
                },
            ),
            (
                "10.0.0.0/+8",
                AddrError::BadPrefix {
                    text: "+8".into(),
                    max: 32,
                },
            ),
            (
                "[2001:db8::]/129",
                AddrError::BadPrefix {
                    text: "129".into(),
                    max: 128,
                },
            ),
            (
                "10.0.0.1/8:53",
                AddrError::HostBitsSet {
                    network: ip("10.0.0.0"),
                    prefix: 8,
                },
            ),
            ("10.0.0.0/8:0", AddrError::PortZero),
            ("10.0.0.0/8:0-10", AddrError::PortZero),
            ("10.0.0.0/8:65536", AddrError::BadPort("65536".into())),
            ("10.0.0.0/8:", AddrError::BadPort("".into())),
            ("10.0.0.0/8:http", AddrError::BadPort("http".into())),
            ("10.0.0.0/8:-5", AddrError::BadPort("".into())),
            (
                "10.0.0.0/8:2000-1000",
                AddrError::EmptyRange { lo: 2000, hi: 1000 },
            ),
            ("2001:db8::/32:53", AddrError::Ipv6NeedsBrackets),
            ("2001:db8::/32", AddrError::Ipv6NeedsBrackets),
            ("2001:db8::1:53", AddrError::Ipv6NeedsBrackets),
            ("::1", AddrError::Ipv6NeedsBrackets),
            ("[2001:db8::/32:53", AddrError::BadBrackets),
            ("[2001:db8::]x:53", AddrError::BadBrackets),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<AllowRule>().as_ref(), Err(want), "{text:?}");
        }
    }

    #[test]
    fn host_bits_error_names_the_network() {
        let e = "[2001:db8::1]/32:53".parse::<AllowRule>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "address has bits set past the /32 prefix; the network is [2001:db8::]/32"
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "10.0.0.0/8:53",
            "0.0.0.0/0:443",
            "192.0.2.1/32:1000-2000",
            "[2001:db8::]/32:53",
            "10.0.0.0/8",
            "[2001:db8::]/32",
            "0.0.0.0/0:1-65534",
        ] {
            let r = rule(text);
            assert_eq!(r.to_string(), text);
            assert_eq!(rule(&r.to_string()), r);
        }
        assert_eq!(rule("192.0.2.1:53").to_string(), "192.0.2.1/32:53");
        assert_eq!(rule("[::1]").to_string(), "[::1]/128");
    }

    #[test]
    fn allows_matches_network_and_ports() {
        let r = rule("10.0.0.0/8:53");
        assert!(r.allows("10.1.2.3:53".parse().unwrap()));
        assert!(!r.allows("10.1.2.3:54".parse().unwrap()));
        assert!(!r.allows("11.0.0.1:53".parse().unwrap()));
        assert!(!r.allows("[::ffff:10.1.2.3]:53".parse().unwrap()));

        let any = rule("0.0.0.0/0");
        assert!(any.allows("203.0.113.9:1".parse().unwrap()));
        assert!(any.allows("203.0.113.9:65535".parse().unwrap()));
        assert!(!any.allows("[2001:db8::1]:443".parse().unwrap()));

        let v6 = rule("[2001:db8::]/32:1000-2000");
        assert!(v6.allows("[2001:db8:ffff::1]:1500".parse().unwrap()));
        assert!(!v6.allows("[2001:db9::1]:1500".parse().unwrap()));
        assert!(!v6.allows("[2001:db8::1]:999".parse().unwrap()));

        let all6 = rule("[::]/0:443");
        assert!(all6.allows("[2001:db8::1]:443".parse().unwrap()));
        assert!(!all6.allows("192.0.2.1:443".parse().unwrap()));

        let host = rule("192.0.2.1:1000-2000");
        assert!(host.allows("192.0.2.1:1000".parse().unwrap()));
        assert!(host.allows("192.0.2.1:2000".parse().unwrap()));
        assert!(!host.allows("192.0.2.2:1500".parse().unwrap()));
    }

    #[test]
    fn interface_addresses() {
        let a: InterfaceAddress = "10.99.0.1/24".parse().unwrap();
        assert_eq!((a.addr, a.prefix), (ip("10.99.0.1"), 24));
        assert_eq!(a.to_string(), "10.99.0.1/24");
        let a: InterfaceAddress = "fd00:99::1/64".parse().unwrap();
        assert_eq!((a.addr, a.prefix), (ip("fd00:99::1"), 64));
        let a: InterfaceAddress = "10.99.0.1".parse().unwrap();
        assert_eq!(a.prefix, 32);
        assert!("10.99.0.1/33".parse::<InterfaceAddress>().is_err());
        assert!("sdt0".parse::<InterfaceAddress>().is_err());
        assert!("".parse::<InterfaceAddress>().is_err());
        assert!("10.99.0.1/24:53".parse::<InterfaceAddress>().is_err());
    }
}
