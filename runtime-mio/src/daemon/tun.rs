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

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

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
            flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(TunError::Other(
                format!("TUN device name `{name}`"),
                io::Error::from(io::ErrorKind::InvalidInput),
            ));
        }
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
        let mut tun = Tun {
            file,
            name: name.to_owned(),
            routes: Vec::new(),
            mtu: setup.mtu,
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

    /// Reads one packet; `WouldBlock` when there is none.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }

    /// Writes one packet.
    pub fn write(&mut self, packet: &[u8]) -> io::Result<usize> {
        self.file.write(packet)
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
