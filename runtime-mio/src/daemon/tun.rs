//! A Linux TUN device for a router entry: whole IP packets, no packet
//! information header, non-blocking, registered with mio.
//!
//! Opening one needs `CAP_NET_ADMIN`; without it the error says so. The
//! device is set up with `ip` (iproute2): its MTU, its address if
//! configured, no IPv6 link-local address (`addrgenmode none`), up, then the
//! configured routes, which are removed again when the device is closed;
//! its transmit queue is lengthened to [`TX_QUEUE_LEN`] too.
//!
//! Why `ip` and not netlink from Rust: the kernel's answers (a route that
//! exists, an address of the wrong family, a device in another state) come
//! back as `ip`'s own one-line messages, which the error shows as they are;
//! the operator can run the same commands by hand to see or undo what sdt
//! did; and the set-up runs once at start, far from the data path. The
//! netlink crates for Rust (`rtnetlink`) are async on tokio, which this
//! mio daemon does not carry. A missing `ip` is a clear start error.
//!
//! No IPv6 link-local address: a TUN device that has one sends router
//! solicitations and MLD reports of its own as soon as it is up, which the
//! entry would read and count as `not_udp` drops with no user traffic.
//! With `addrgenmode none` the device stays silent; IPv6 still works on it
//! (routes to IPv6 networks, and an IPv6 `address` if configured).
//!
//! Offloads (`tun_offload`, on unless switched off): the device is opened
//! with `IFF_VNET_HDR` and offered checksum, TCP and UDP segmentation
//! offloads (`TUNSETOFFLOAD` with `TUN_F_CSUM`, `TUN_F_TSO4`, `TUN_F_TSO6`,
//! and `TUN_F_USO4`, `TUN_F_USO6` where the kernel has them, Linux 6.2). The
//! kernel then hands over a local TCP sender's data as super-packets of up
//! to 64 KiB, each behind a `virtio_net_hdr`, and leaves TCP and UDP
//! checksums partial: [`Tun::read`] splits each super-packet into packets
//! of the device's MTU with `sdt_core::ip::gso` and completes the
//! checksums, so the node sees packets as without offloads, one system
//! call per super-packet instead of per packet. [`Tun::write`] holds TCP
//! segments that continue one another (`sdt_core::ip::gro`) and writes
//! each run as one super-packet, with a header asking the kernel to split
//! it where it must ([`Tun::flush`] at the end of each batch); every other
//! packet carries a zeroed header (no offload asked). A kernel that refuses `TUNSETOFFLOAD`
//! gets the device reopened without the header, and says why
//! ([`Tun::offload`]). What the header or the packet gets wrong is counted
//! by reason and dropped ([`Tun::offload_drops`]), never trusted.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use sdt_core::ip::gro::{Coalescer, Push};
use sdt_core::ip::gso::{self, Gso, Offload, OffloadError, Segments};

use crate::addr::{InterfaceAddress, Route};

/// How to set up a TUN device.
#[derive(Debug, Clone, Copy)]
pub struct TunSetup<'a> {
    /// The device name.
    pub name: &'a str,
    /// The address to give it, if any.
    pub address: Option<InterfaceAddress>,
    /// Routes to install into it.
    pub routes: &'a [Route],
    /// Its MTU.
    pub mtu: u16,
    /// Whether to ask for offloads (`tun_offload`).
    pub offload: bool,
}

/// Why a TUN device could not be set up.
#[derive(Debug)]
pub enum TunError {
    /// The process lacks `CAP_NET_ADMIN`.
    NotPermitted(String),
    /// Another network interface has the name: (name, what it is).
    NotTun(String, &'static str),
    /// The TUN device is open in another process already.
    Busy(String),
    /// Any other failure, with what was being done.
    Other(String, io::Error),
}

impl std::fmt::Display for TunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TunError::NotPermitted(name) => write!(
                f,
                "opening TUN device {name} is not permitted: router mode needs CAP_NET_ADMIN \
                 (run as root, or `setcap cap_net_admin+ep` the sdt binary)"
            ),
            TunError::NotTun(name, what) => write!(
                f,
                "network interface {name} {what}; name a free one in `tun` (sdt creates it) \
                 or a TUN device (`ip tuntap add {name} mode tun`)"
            ),
            TunError::Busy(name) => write!(
                f,
                "TUN device {name} is open in another process (another sdt?); a TUN device \
                 serves one process: stop it or name another device in `tun`"
            ),
            TunError::Other(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for TunError {}

/// An open TUN device.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
    /// Routes this process installed, removed when the device is dropped.
    routes: Vec<Route>,
    mtu: u16,
    /// With offloads: the super-packet being split, and counters.
    offload: Option<Box<Offloaded>>,
    /// With offloads: the TCP segments being coalesced for one write.
    coalescer: Option<Coalescer<Box<[u8]>>>,
    /// Super-packets written (more than one segment each).
    coalesced: u64,
    /// What [`Tun::offload`] says.
    offload_state: String,
}

/// The size of `struct virtio_net_hdr` (without `num_buffers`, the
/// kernel's default `TUNSETVNETHDRSZ`).
const VNET_HDR_LEN: usize = 10;
const VNET_HDR_F_NEEDS_CSUM: u8 = 1;
const VNET_HDR_GSO_NONE: u8 = 0;
const VNET_HDR_GSO_TCPV4: u8 = 1;
const VNET_HDR_GSO_TCPV6: u8 = 4;
const VNET_HDR_GSO_UDP_L4: u8 = 5;
const VNET_HDR_GSO_ECN: u8 = 0x80;
/// A zeroed header in front of every write: no checksum or segmentation
/// asked of the kernel.
const VNET_HDR_NONE: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

/// The read side of a device with offloads: one super-packet, its
/// description and how far it has been handed out.
#[derive(Debug)]
struct Offloaded {
    buf: Box<[u8]>,
    /// The length of the super-packet in `buf`.
    len: usize,
    /// The header of the packet in `buf`.
    offload: Offload,
    /// The next segment to hand out, and how many there are; `next ==
    /// count` when there is none.
    next: usize,
    count: usize,
    /// Super-packets split.
    super_packets: u64,
    /// Packets dropped, by reason (index: [`DROP_REASONS`]).
    drops: [u64; DROP_REASONS.len()],
    /// Reasons already logged (once each).
    logged: [bool; DROP_REASONS.len()],
}

/// Why [`Tun::read`] dropped a packet with offloads.
const DROP_REASONS: [&str; 4] = [
    "offload_malformed",
    "offload_unsupported",
    "offload_too_big",
    "offload_short_header",
];

fn drop_index(e: OffloadError) -> usize {
    match e {
        OffloadError::Unsupported => 1,
        OffloadError::BufferTooSmall => 2,
        _ => 0,
    }
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// The transmit queue the daemon gives its TUN device, in packets: what
/// the kernel holds for sdt to read while the node is not running. The
/// kernel's default for a TUN device is 500, about 5 ms of full-sized
/// packets at 1 Gbit/s: on a busy machine a burst from a local sender
/// overflowed it while the node waited for a CPU (`ip -s link` counted
/// the TUN's tx drops, docs/performance.md). At 5,000 the same bursts
/// wait instead; the queue only fills while sdt is not reading, so it
/// adds no delay when the node keeps up.
pub const TX_QUEUE_LEN: u32 = 5000;

impl Tun {
    /// Opens (creating if needed) the TUN device `setup.name` and sets it
    /// up as the [module docs](self) say. On an error nothing is left
    /// behind but a device that existed before.
    pub fn open(setup: TunSetup<'_>) -> Result<Tun, TunError> {
        let name = setup.name;
        if let Some(what) = not_a_tun(name) {
            return Err(TunError::NotTun(name.to_owned(), what));
        }
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(TunError::Other(
                format!("TUN device name `{name}`"),
                io::Error::from(io::ErrorKind::InvalidInput),
            ));
        }
        let (file, offload_state, offload) = if setup.offload {
            let file = attach(name, libc::IFF_VNET_HDR)?;
            match set_offload(file.as_raw_fd()) {
                Ok(features) => {
                    let read = Offloaded {
                        buf: vec![0u8; 65_535].into_boxed_slice(),
                        len: 0,
                        offload: Offload::NONE,
                        next: 0,
                        count: 0,
                        super_packets: 0,
                        drops: [0; DROP_REASONS.len()],
                        logged: [false; DROP_REASONS.len()],
                    };
                    (file, features.to_owned(), Some(Box::new(read)))
                }
                Err(e) => {
                    // The header cannot be switched off on an attached
                    // descriptor: attach again without it.
                    drop(file);
                    let why = format!("off (TUNSETOFFLOAD refused: {e})");
                    (attach(name, 0)?, why, None)
                }
            }
        } else {
            (
                attach(name, 0)?,
                "off (tun_offload = false)".to_owned(),
                None,
            )
        };
        let mut tun = Tun {
            file,
            name: name.to_owned(),
            routes: Vec::new(),
            mtu: setup.mtu,
            coalescer: offload
                .is_some()
                .then(|| Coalescer::new(vec![0u8; 65_535].into_boxed_slice())),
            offload,
            offload_state,
            coalesced: 0,
        };
        let mtu = setup.mtu.to_string();
        ip(&["link", "set", "dev", name, "mtu", &mtu])?;
        ip(&["link", "set", "dev", name, "addrgenmode", "none"])?;
        if let Some(a) = setup.address {
            ip(&["addr", "replace", &a.to_string(), "dev", name])?;
        }
        let qlen = TX_QUEUE_LEN.to_string();
        ip(&["link", "set", "dev", name, "txqueuelen", &qlen, "up"])?;
        for route in setup.routes {
            // `replace`, so that a route left behind by a killed daemon does
            // not stop the next start.
            ip(&[
                family(route),
                "route",
                "replace",
                &route.to_string(),
                "dev",
                name,
            ])?;
            tun.routes.push(*route);
        }
        Ok(tun)
    }

    /// The MTU set on the device.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// The routes installed into the device.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Registers the device for readability.
    pub fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut SourceFd(&self.file.as_raw_fd()),
            token,
            Interest::READABLE,
        )
    }

    /// What offloads the device uses, or why none (for `sdt status`):
    /// `csum+tso4+tso6+uso4+uso6`, `off (tun_offload = false)`, ...
    pub fn offload(&self) -> &str {
        &self.offload_state
    }

    /// Super-packets split into packets so far.
    pub fn super_packets(&self) -> u64 {
        self.offload.as_ref().map_or(0, |o| o.super_packets)
    }

    /// Packets from the device dropped for their offload header, by
    /// reason; reasons not seen are left out.
    pub fn offload_drops(&self) -> Vec<(&'static str, u64)> {
        let Some(o) = &self.offload else {
            return Vec::new();
        };
        DROP_REASONS
            .iter()
            .zip(o.drops)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (*r, n))
            .collect()
    }

    /// Reads one packet into `buf`; `WouldBlock` when there is none. With
    /// offloads, the next segment of the super-packet read last, or the
    /// next packet from the device, its checksum completed; a packet whose
    /// header or lengths are wrong is counted and dropped, and the next
    /// one read.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(o) = self.offload.as_deref_mut() else {
            return self.file.read(buf);
        };
        loop {
            if o.next < o.count {
                let index = o.next;
                o.next += 1;
                // Checked when it was read; Segments::new is cheap.
                let r =
                    Segments::new(&o.buf[..o.len], &o.offload).and_then(|s| s.write(index, buf));
                match r {
                    Ok(n) => return Ok(n),
                    Err(e) => {
                        o.next = o.count;
                        o.dropped(&self.name, drop_index(e));
                        continue;
                    }
                }
            }
            // The header apart, the packet straight into `buf`: only a
            // super-packet is copied (to be split from `o.buf`).
            let mut header = [0u8; VNET_HDR_LEN];
            let n = read_vnet(self.file.as_raw_fd(), &mut header, buf)?;
            let Some(len) = n.checked_sub(VNET_HDR_LEN) else {
                o.dropped(&self.name, 3);
                continue;
            };
            let (flags, gso_type) = (header[0], header[1]);
            let ne16 = |at: usize| u16::from_ne_bytes([header[at], header[at + 1]]);
            let partial_checksum = (flags & VNET_HDR_F_NEEDS_CSUM != 0).then(|| (ne16(6), ne16(8)));
            let gso = match gso_type & !VNET_HDR_GSO_ECN {
                VNET_HDR_GSO_NONE => Gso::None,
                VNET_HDR_GSO_TCPV4 => Gso::TcpV4,
                VNET_HDR_GSO_TCPV6 => Gso::TcpV6,
                VNET_HDR_GSO_UDP_L4 => Gso::Udp,
                _ => {
                    o.dropped(&self.name, drop_index(OffloadError::Unsupported));
                    continue;
                }
            };
            let offload = Offload {
                gso,
                segment_size: ne16(4),
                partial_checksum,
            };
            let len = len.min(buf.len());
            let packet = &mut buf[..len];
            if gso != Gso::None {
                match Segments::new(packet, &offload) {
                    Ok(s) => {
                        let Some(keep) = o.buf.get_mut(..len) else {
                            o.dropped(&self.name, drop_index(OffloadError::BufferTooSmall));
                            continue;
                        };
                        keep.copy_from_slice(packet);
                        o.count = s.count();
                        o.len = len;
                        o.offload = offload;
                        o.next = 0;
                        o.super_packets += 1;
                    }
                    Err(e) => o.dropped(&self.name, drop_index(e)),
                }
                continue;
            }
            if let Some((start, offset)) = partial_checksum {
                if let Err(e) = gso::complete_checksum(packet, start, offset) {
                    o.dropped(&self.name, drop_index(e));
                    continue;
                }
            }
            return Ok(packet.len());
        }
    }

    /// Super-packets written, coalesced from packets out of the tunnel.
    pub fn coalesced(&self) -> u64 {
        self.coalesced
    }

    /// Writes one packet. With offloads, a TCP segment that continues the
    /// one before is held to go with it as one super-packet (written by
    /// [`Tun::flush`], or by the first write it cannot join); every other
    /// packet goes at once, behind a zeroed header, after what is held. An
    /// error is that of the write that failed, which may be the held one's.
    pub fn write(&mut self, packet: &[u8]) -> io::Result<usize> {
        let fd = self.file.as_raw_fd();
        let Some(c) = self.coalescer.as_mut() else {
            return self.file.write(packet);
        };
        loop {
            match c.push(packet) {
                Push::Held => return Ok(packet.len()),
                Push::TakeFirst => {
                    if let Some((o, p)) = c.take() {
                        self.coalesced += u64::from(o.gso != Gso::None);
                        write_vnet(fd, &o, p)?;
                    }
                }
                Push::Alone => {
                    if let Some((o, p)) = c.take() {
                        self.coalesced += u64::from(o.gso != Gso::None);
                        write_vnet(fd, &o, p)?;
                    }
                    return write_vnet(fd, &Offload::NONE, packet);
                }
            }
        }
    }

    /// Writes what [`Tun::write`] holds, if anything: at the end of each
    /// batch, so that nothing waits longer.
    pub fn flush(&mut self) -> Option<io::Result<usize>> {
        let fd = self.file.as_raw_fd();
        let (o, p) = self.coalescer.as_mut()?.take()?;
        self.coalesced += u64::from(o.gso != Gso::None);
        Some(write_vnet(fd, &o, p))
    }
}

/// Reads one packet from the device `fd` (opened with `IFF_VNET_HDR`): its
/// `virtio_net_hdr` into `header`, the packet into `buf`. Returns the bytes
/// read, header included.
fn read_vnet(fd: RawFd, header: &mut [u8; VNET_HDR_LEN], buf: &mut [u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: header.as_mut_ptr().cast(),
            iov_len: VNET_HDR_LEN,
        },
        libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        },
    ];
    // SAFETY: both iovecs point at live, writable buffers of the lengths
    // given, borrowed mutably for the call; `fd` is an open TUN descriptor.
    #[allow(unsafe_code)]
    let n = unsafe { libc::readv(fd, iov.as_ptr(), 2) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Writes `packet` to the device `fd` (opened with `IFF_VNET_HDR`) behind
/// the `virtio_net_hdr` that asks the kernel for `offload`: segmentation
/// into `segment_size` pieces and the partial checksum completed.
fn write_vnet(fd: RawFd, offload: &Offload, packet: &[u8]) -> io::Result<usize> {
    let mut header = VNET_HDR_NONE;
    if let Some((start, offset)) = offload.partial_checksum {
        let gso_type = match offload.gso {
            Gso::TcpV4 => VNET_HDR_GSO_TCPV4,
            Gso::TcpV6 => VNET_HDR_GSO_TCPV6,
            Gso::Udp => VNET_HDR_GSO_UDP_L4,
            _ => VNET_HDR_GSO_NONE,
        };
        // hdr_len: the headers every segment repeats (a hint to the
        // kernel, which finds them itself).
        let l4_len = match offload.gso {
            Gso::Udp => 8,
            _ => packet
                .get(usize::from(start) + 12)
                .map_or(0, |b| usize::from(b >> 4) * 4),
        };
        let hdr_len = (usize::from(start) + l4_len) as u16;
        header[0] = VNET_HDR_F_NEEDS_CSUM;
        header[1] = gso_type;
        header[2..4].copy_from_slice(&hdr_len.to_ne_bytes());
        header[4..6].copy_from_slice(&offload.segment_size.to_ne_bytes());
        header[6..8].copy_from_slice(&start.to_ne_bytes());
        header[8..10].copy_from_slice(&offset.to_ne_bytes());
    }
    let iov = [
        libc::iovec {
            iov_base: header.as_ptr() as *mut libc::c_void,
            iov_len: VNET_HDR_LEN,
        },
        libc::iovec {
            iov_base: packet.as_ptr() as *mut libc::c_void,
            iov_len: packet.len(),
        },
    ];
    // SAFETY: both iovecs point at live buffers of the lengths given, which
    // the kernel only reads; `fd` is an open TUN descriptor.
    #[allow(unsafe_code)]
    let n = unsafe { libc::writev(fd, iov.as_ptr(), 2) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n as usize).saturating_sub(VNET_HDR_LEN))
}

impl Offloaded {
    /// Counts a drop for `reason` (an index into [`DROP_REASONS`]) and logs
    /// the first of each reason.
    fn dropped(&mut self, device: &str, reason: usize) {
        self.drops[reason] += 1;
        if !std::mem::replace(&mut self.logged[reason], true) {
            tracing::warn!(
                "TUN device {device}: dropped a packet the kernel handed over with offloads: \
                 {} (counted in sdt status; further ones are not logged)",
                DROP_REASONS[reason]
            );
        }
    }
}

impl Drop for Tun {
    /// Removes the routes this process installed. A device sdt created goes
    /// away with its descriptor, routes and all; a persistent one
    /// (`ip tuntap add`) would keep them.
    fn drop(&mut self) {
        for route in &self.routes {
            let r = ip(&[
                family(route),
                "route",
                "del",
                &route.to_string(),
                "dev",
                &self.name,
            ]);
            if let Err(e) = r {
                tracing::debug!("TUN device {}: removing route {route}: {e}", self.name);
            }
        }
    }
}

/// Opens /dev/net/tun and attaches it to the TUN device `name` (created
/// if needed) with `flags` beside `IFF_TUN | IFF_NO_PI`.
fn attach(name: &str, flags: libc::c_int) -> Result<File, TunError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => TunError::NotPermitted(name.to_owned()),
            _ => TunError::Other("opening /dev/net/tun".into(), e),
        })?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI | flags) as libc::c_short,
        _pad: [0; 22],
    };
    for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `file` is an open /dev/net/tun descriptor and `req` is a
    // properly sized, initialised `struct ifreq` that outlives the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => TunError::NotPermitted(name.to_owned()),
            Some(libc::EBUSY) => TunError::Busy(name.to_owned()),
            // The interface appeared since the look-up above, or the
            // kernel refuses it for a reason /sys does not show.
            Some(libc::EINVAL) => TunError::NotTun(
                name.to_owned(),
                not_a_tun(name).unwrap_or("cannot be attached to as a TUN device"),
            ),
            _ => TunError::Other(format!("creating TUN device {name}"), e),
        });
    }
    Ok(file)
}

/// Offers the kernel checksum and segmentation offloads: TCP over IPv4 and
/// IPv6, and UDP where it has it. Says which it took.
fn set_offload(fd: RawFd) -> io::Result<&'static str> {
    let tcp = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    let udp = libc::TUN_F_USO4 | libc::TUN_F_USO6;
    let offer = |flags: libc::c_uint| {
        // SAFETY: TUNSETOFFLOAD takes its argument by value; `fd` is an
        // open TUN descriptor.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD as _, flags as libc::c_ulong) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // Kernels before 6.2 refuse the UDP flags (EINVAL): TCP alone then.
    match offer(tcp | udp) {
        Ok(()) => Ok("csum+tso4+tso6+uso4+uso6"),
        Err(_) => offer(tcp).map(|()| "csum+tso4+tso6"),
    }
}

/// `ip`'s family flag for a route.
fn family(route: &Route) -> &'static str {
    if route.network().is_ipv4() {
        "-4"
    } else {
        "-6"
    }
}

/// What the interface `name` is, if it exists and is not a TUN device.
fn not_a_tun(name: &str) -> Option<&'static str> {
    crate::config::interface_kind(name).err()
}

fn ip(args: &[&str]) -> Result<(), TunError> {
    let what = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| TunError::Other(format!("running `{what}` (is iproute2 installed?)"), e))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Operation not permitted") {
        return Err(TunError::NotPermitted(
            args.last().copied().unwrap_or("").to_owned(),
        ));
    }
    Err(TunError::Other(
        format!("`{what}` failed: {}", stderr.trim()),
        io::Error::other("ip failed"),
    ))
}
