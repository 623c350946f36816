//! The L3 exit's view of an IP packet: its addresses, its upper-layer
//! protocol and destination port, and the header sanity checks every packet
//! passes before it is carried whole ([`parse_packet`]); and the address
//! ranges that say which peer an address belongs to ([`IpNet`]).
//!
//! An L3 router service (`exit = "tun"`) carries whole IP packets of any
//! protocol, so the checks here are those of the IP layer only: the
//! version, the lengths (an IPv4 total length or IPv6 payload length that
//! is exactly the bytes given), the IPv4 header checksum. Two things are
//! refused as [`IpDrop::Malformed`] because they would let a packet go
//! somewhere other than its destination address says, past the exit's
//! allow-list: IPv4 source-route options (loose or strict, RFC 791) and
//! IPv6 Routing headers (RFC 8200 section 4.4). Linux drops both by
//! default (`accept_source_route`), but the exit does not rely on it.
//!
//! The destination port (TCP, UDP, UDP-Lite, SCTP, DCCP) is read from the
//! first four bytes of the upper-layer header, where all of them keep it;
//! it is `None` for other protocols, for IPv4 and IPv6 fragments after the
//! first, and for a first fragment too short to hold it.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

use smoltcp::wire::{Ipv4Packet, IPV4_HEADER_LEN, IPV6_HEADER_LEN};

use super::IpDrop;

/// What [`parse_packet`] found in a sane IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// The IP source address.
    pub source: IpAddr,
    /// The IP destination address.
    pub destination: IpAddr,
    /// The upper-layer protocol number (IPv4 protocol, or IPv6 next header
    /// after the extension headers), as in [`crate::allow::proto`].
    pub protocol: u8,
    /// The destination port, where the protocol has one and this packet
    /// holds it.
    pub port: Option<u16>,
}

/// Protocols whose destination port is the second 16-bit word of their
/// header: TCP, UDP, DCCP, SCTP, UDP-Lite.
const PORTED: [u8; 5] = [6, 17, 33, 132, 136];

/// IPv6 extension headers walked over to find the upper layer: Hop-by-Hop
/// Options, Destination Options. (Routing is refused, Fragment handled on
/// its own.)
const V6_OPTIONS: [u8; 2] = [0, 60];
const V6_ROUTING: u8 = 43;
const V6_FRAGMENT: u8 = 44;
/// At most this many extension headers are walked; a packet with more is
/// refused (no legitimate packet chains that many).
const MAX_EXTENSION_HEADERS: usize = 8;

/// IPv4 options: end of list, no-op, loose and strict source route.
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_LSRR: u8 = 131;
const OPT_SSRR: u8 = 137;

/// Checks the IP header of `packet` (exactly one whole IPv4 or IPv6 packet)
/// and reads what the L3 exit decides on; see the [module docs](self).
///
/// Errors: [`IpDrop::Unsupported`] for a version other than 4 or 6,
/// [`IpDrop::BadChecksum`] for a wrong IPv4 header checksum,
/// [`IpDrop::Malformed`] for anything else refused.
pub fn parse_packet(packet: &[u8]) -> Result<PacketInfo, IpDrop> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => parse_v4(packet),
        Some(6) => parse_v6(packet),
        Some(_) => Err(IpDrop::Unsupported),
        None => Err(IpDrop::Malformed),
    }
}

fn parse_v4(packet: &[u8]) -> Result<PacketInfo, IpDrop> {
    if packet.len() < IPV4_HEADER_LEN {
        return Err(IpDrop::Malformed);
    }
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if header_len < IPV4_HEADER_LEN || header_len > total_len || total_len != packet.len() {
        return Err(IpDrop::Malformed);
    }
    if !Ipv4Packet::new_unchecked(packet).verify_checksum() {
        return Err(IpDrop::BadChecksum);
    }
    check_v4_options(&packet[IPV4_HEADER_LEN..header_len])?;
    let fragment_offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
    let protocol = packet[9];
    let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let destination = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let port = (fragment_offset == 0)
        .then(|| port_of(protocol, &packet[header_len..]))
        .flatten();
    Ok(PacketInfo {
        source: IpAddr::V4(source),
        destination: IpAddr::V4(destination),
        protocol,
        port,
    })
}

/// Refuses IPv4 options that are cut short or route the packet by source.
fn check_v4_options(mut options: &[u8]) -> Result<(), IpDrop> {
    while let Some(&kind) = options.first() {
        match kind {
            OPT_END => return Ok(()),
            OPT_NOP => options = &options[1..],
            OPT_LSRR | OPT_SSRR => return Err(IpDrop::Malformed),
            _ => {
                let len = usize::from(*options.get(1).ok_or(IpDrop::Malformed)?);
                if len < 2 || len > options.len() {
                    return Err(IpDrop::Malformed);
                }
                options = &options[len..];
            }
        }
    }
    Ok(())
}

fn parse_v6(packet: &[u8]) -> Result<PacketInfo, IpDrop> {
    if packet.len() < IPV6_HEADER_LEN {
        return Err(IpDrop::Malformed);
    }
    let payload_len = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    if IPV6_HEADER_LEN + payload_len != packet.len() {
        // Also a jumbogram (payload length 0): not carried.
        return Err(IpDrop::Malformed);
    }
    let address = |at: usize| {
        let mut octets = [0; 16];
        octets.copy_from_slice(&packet[at..at + 16]);
        Ipv6Addr::from(octets)
    };
    let (source, destination) = (address(8), address(24));
    let mut next = packet[6];
    let mut rest = &packet[IPV6_HEADER_LEN..];
    let mut later_fragment = false;
    for _ in 0..MAX_EXTENSION_HEADERS {
        let len = match next {
            V6_ROUTING => return Err(IpDrop::Malformed),
            V6_FRAGMENT => {
                let header = rest.get(..8).ok_or(IpDrop::Malformed)?;
                later_fragment |= u16::from_be_bytes([header[2], header[3]]) >> 3 != 0;
                8
            }
            n if V6_OPTIONS.contains(&n) => {
                let units = usize::from(*rest.get(1).ok_or(IpDrop::Malformed)?);
                (units + 1) * 8
            }
            protocol => {
                let port = (!later_fragment).then(|| port_of(protocol, rest)).flatten();
                return Ok(PacketInfo {
                    source: IpAddr::V6(source),
                    destination: IpAddr::V6(destination),
                    protocol,
                    port,
                });
            }
        };
        if rest.len() < len {
            return Err(IpDrop::Malformed);
        }
        next = rest[0];
        rest = &rest[len..];
    }
    Err(IpDrop::Malformed)
}

/// The destination port of an upper-layer header, if the protocol keeps
/// one where TCP and UDP do and `header` holds it.
fn port_of(protocol: u8, header: &[u8]) -> Option<u16> {
    if !PORTED.contains(&protocol) {
        return None;
    }
    let bytes = header.get(2..4)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// An address range: a network address and a prefix length, as in
/// `10.8.0.2/32` or `fd00:8::/64` (IPv6 without brackets). Always valid:
/// the prefix fits the family and no bit is set past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

/// Why an [`IpNet`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpNetError {
    /// Not `ADDRESS/PREFIX`.
    Syntax,
    /// The address is not an IPv4 or IPv6 address.
    BadAddress,
    /// The prefix is not a number up to 32 (IPv4) or 128 (IPv6).
    BadPrefix,
    /// The address has bits set past the prefix (`10.8.0.1/24`).
    HostBitsSet,
}

impl fmt::Display for IpNetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpNetError::Syntax => "expected ADDRESS/PREFIX, such as 10.8.0.2/32 or fd00:8::/64",
            IpNetError::BadAddress => "not an IPv4 or IPv6 address",
            IpNetError::BadPrefix => "prefix length is not a number up to 32 (IPv4) or 128 (IPv6)",
            IpNetError::HostBitsSet => "address has bits set past the prefix length",
        })
    }
}

impl core::error::Error for IpNetError {}

impl IpNet {
    /// The range `network`/`prefix`; refuses a prefix longer than the
    /// family's and an address with bits set past it.
    pub fn new(network: IpAddr, prefix: u8) -> Result<IpNet, IpNetError> {
        let bits = if network.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(IpNetError::BadPrefix);
        }
        let net = IpNet { network, prefix };
        if net.masked(network) != network {
            return Err(IpNetError::HostBitsSet);
        }
        Ok(net)
    }

    /// The network address.
    pub const fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub const fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `address` is in the range (of the same family: an
    /// IPv4-mapped IPv6 address is not in an IPv4 range).
    pub fn contains(&self, address: IpAddr) -> bool {
        address.is_ipv4() == self.network.is_ipv4() && self.masked(address) == self.network
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &IpNet) -> bool {
        let shorter = IpNet {
            network: self.network,
            prefix: self.prefix.min(other.prefix),
        };
        shorter.contains(other.network)
            && shorter.masked(self.network) == shorter.masked(other.network)
    }

    fn masked(&self, address: IpAddr) -> IpAddr {
        match address {
            IpAddr::V4(v4) => {
                let keep = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix.min(32)))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & keep))
            }
            IpAddr::V6(v6) => {
                let keep = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix.min(128)))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & keep))
            }
        }
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    /// `ADDRESS/PREFIX`; a lone address is one host (/32 or /128).
    fn from_str(text: &str) -> Result<IpNet, IpNetError> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        if address.is_empty() {
            return Err(IpNetError::Syntax);
        }
        let address: IpAddr = address.parse().map_err(|_| IpNetError::BadAddress)?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| IpNetError::BadPrefix)?
            }
            Some(_) => return Err(IpNetError::BadPrefix),
        };
        IpNet::new(address, prefix)
    }
}

impl fmt::Display for IpNet {
    /// `ADDRESS/PREFIX`, which parses back to the same range.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests;
