//! The address of a router entry's TUN device, such as `10.99.0.1/24` or
//! `fd00:99::1/64`, and the routes sdt sends into it, such as
//! `10.202.0.0/24`. (Allow rules are core's [`sdt_core::allow::AllowRule`].)

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Why an interface address was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddrError {
    /// The text is empty.
    Empty,
    /// The address part is not an IPv4 or IPv6 address.
    BadAddress(String),
    /// A route's network has bits set past its prefix (`10.0.0.1/8`):
    /// refused as `ip route` refuses it, rather than silently widened.
    HostBitsSet(String),
    /// The prefix length is not a number up to 32 (IPv4) or 128 (IPv6).
    BadPrefix {
        /// The prefix text.
        text: String,
        /// The largest prefix for the address family.
        max: u8,
    },
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::Empty => f.write_str("empty address"),
            AddrError::BadAddress(text) => write!(f, "`{text}` is not an IP address"),
            AddrError::HostBitsSet(text) => write!(
                f,
                "`{text}` has bits set past its prefix length; a route names a network"
            ),
            AddrError::BadPrefix { text, max } => {
                write!(f, "`{text}` is not a prefix length from 0 to {max}")
            }
        }
    }
}

impl std::error::Error for AddrError {}

/// The address of a TUN device and the length of its network prefix, as in
/// `10.99.0.1/24`. Without `/prefix` it is a host address (`/32` or `/128`).
/// Bits past the prefix are expected: they are the host's own.
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
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| AddrError::BadAddress(addr_text.to_owned()))?;
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(AddrError::BadPrefix {
                        text: p.to_owned(),
                        max,
                    })
                }
            },
        };
        Ok(InterfaceAddress { addr, prefix })
    }
}

impl fmt::Display for InterfaceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A route into a router entry's TUN device: a network and its prefix
/// length, such as `10.202.0.0/24` or `2001:db8::/32` (without `/prefix`, one
/// host). The address has no bits set past the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route(InterfaceAddress);

impl Route {
    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.0.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.0.prefix
    }
}

impl FromStr for Route {
    type Err = AddrError;

    fn from_str(text: &str) -> Result<Self, AddrError> {
        let a: InterfaceAddress = text.parse()?;
        let masked = match a.addr {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let mask = u32::MAX.checked_shl(32 - u32::from(a.prefix)).unwrap_or(0);
                IpAddr::from((bits & mask).to_be_bytes())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(a.prefix))
                    .unwrap_or(0);
                IpAddr::from((bits & mask).to_be_bytes())
            }
        };
        if masked != a.addr {
            return Err(AddrError::HostBitsSet(text.trim().to_owned()));
        }
        Ok(Route(a))
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r: Route = "10.202.0.0/24".parse().unwrap();
        assert_eq!(
            (r.network(), r.prefix()),
            ("10.202.0.0".parse().unwrap(), 24)
        );
        assert_eq!(r.to_string(), "10.202.0.0/24");
        let r: Route = "2001:db8::/32".parse().unwrap();
        assert_eq!(r.prefix(), 32);
        assert_eq!("0.0.0.0/0".parse::<Route>().unwrap().prefix(), 0);
        assert_eq!("::/0".parse::<Route>().unwrap().prefix(), 0);
        assert_eq!("192.0.2.7".parse::<Route>().unwrap().prefix(), 32);
        assert!(matches!(
            "10.202.0.1/24".parse::<Route>(),
            Err(AddrError::HostBitsSet(_))
        ));
        assert!("2001:db8::1/32".parse::<Route>().is_err());
        assert!("10.0.0.0/33".parse::<Route>().is_err());
    }

    #[test]
    fn interface_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a: InterfaceAddress = "10.99.0.1/24".parse().unwrap();
        assert_eq!((a.addr, a.prefix), (ip("10.99.0.1"), 24));
        assert_eq!(a.to_string(), "10.99.0.1/24");
        let a: InterfaceAddress = "fd00:99::1/64".parse().unwrap();
        assert_eq!((a.addr, a.prefix), (ip("fd00:99::1"), 64));
        let a: InterfaceAddress = "10.99.0.1".parse().unwrap();
        assert_eq!(a.prefix, 32);
        assert!("10.99.0.1/33".parse::<InterfaceAddress>().is_err());
        assert!("10.99.0.1/+3".parse::<InterfaceAddress>().is_err());
        assert!("sdt0".parse::<InterfaceAddress>().is_err());
        assert!("".parse::<InterfaceAddress>().is_err());
        assert!("10.99.0.1/24:53".parse::<InterfaceAddress>().is_err());
    }
}
