//! A Linux TUN device for a router entry: whole IP packets, no packet
//! information header, non-blocking, registered with mio.
//!
//! Opening one needs `CAP_NET_ADMIN`; without it the error says so. The
//! address is set and the device brought up with `ip` (iproute2), which the
//! operator can also do by hand when `address` is left out; its transmit
//! queue is lengthened to [`TX_QUEUE_LEN`] at the same time.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::addr::InterfaceAddress;

/// Why a TUN device could not be set up.
#[derive(Debug)]
pub enum TunError {
    /// The process lacks `CAP_NET_ADMIN`.
    NotPermitted(String),
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
    /// Opens (creating if needed) the TUN device `name`, sets `address` on
    /// it if given, and brings it up.
    pub fn open(name: &str, address: Option<InterfaceAddress>) -> Result<Tun, TunError> {
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
                _ => TunError::Other(format!("creating TUN device {name}"), e),
            });
        }
        if let Some(a) = address {
            ip(&["addr", "replace", &a.to_string(), "dev", name])?;
        }
        let qlen = TX_QUEUE_LEN.to_string();
        ip(&["link", "set", name, "txqueuelen", &qlen, "up"])?;
        Ok(Tun {
            file,
            name: name.to_owned(),
        })
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
