//! The system calls and the byte layouts the batches share: socket options,
//! `recvmmsg`/`sendmmsg`, socket addresses and control messages.
//!
//! Addresses and control messages are read and written as bytes, following
//! the kernel's ABI (`struct sockaddr_in{,6}`, `struct cmsghdr` with a
//! `size_t` length), so that only the system calls themselves are `unsafe`.

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Room for one socket address: `struct sockaddr_in6`, the larger of the two.
pub const NAME_LEN: usize = size_of::<libc::sockaddr_in6>();

/// Bytes a control message header takes, aligned: `CMSG_ALIGN(sizeof(struct
/// cmsghdr))`.
const CMSG_HDR: usize = cmsg_align(size_of::<libc::cmsghdr>());

/// `CMSG_ALIGN`: control messages are aligned to the size of a `long`.
const fn cmsg_align(n: usize) -> usize {
    let a = size_of::<libc::c_long>();
    (n + a - 1) & !(a - 1)
}

/// `CMSG_SPACE(n)`: what a control message with `n` bytes of data takes in
/// the buffer, padding included.
pub const fn cmsg_space(n: usize) -> usize {
    CMSG_HDR + cmsg_align(n)
}

/// `CMSG_LEN(n)`: the length field of a control message with `n` bytes of
/// data.
pub const fn cmsg_len(n: usize) -> usize {
    CMSG_HDR + n
}

/// One control message found in a received message's control buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cmsg<'a> {
    pub level: libc::c_int,
    pub kind: libc::c_int,
    pub data: &'a [u8],
}

impl Cmsg<'_> {
    /// The data read as a native-endian 32-bit integer (what `UDP_GRO` and
    /// `SO_RXQ_OVFL` carry), if it is at least that long.
    pub fn u32(&self) -> Option<u32> {
        let bytes: [u8; 4] = self.data.get(..4)?.try_into().ok()?;
        Some(u32::from_ne_bytes(bytes))
    }
}

/// The control messages in `control` (the part the kernel filled in). A
/// malformed header ends the walk: nothing past it can be trusted.
pub fn cmsgs(control: &[u8]) -> impl Iterator<Item = Cmsg<'_>> {
    let mut offset = 0;
    std::iter::from_fn(move || {
        let rest = control.get(offset..)?;
        let len = usize::from_ne_bytes(rest.get(..size_of::<usize>())?.try_into().ok()?);
        let int = size_of::<libc::c_int>();
        let at = size_of::<usize>();
        let level = libc::c_int::from_ne_bytes(rest.get(at..at + int)?.try_into().ok()?);
        let kind = libc::c_int::from_ne_bytes(rest.get(at + int..at + 2 * int)?.try_into().ok()?);
        if len < CMSG_HDR || len > rest.len() {
            return None;
        }
        let data = &rest[CMSG_HDR..len];
        offset += cmsg_align(len);
        Some(Cmsg { level, kind, data })
    })
}

/// Writes one control message carrying `data` at the start of `out` and
/// returns the bytes it takes (`CMSG_SPACE`), or `None` if `out` is short.
pub fn put_cmsg(
    out: &mut [u8],
    level: libc::c_int,
    kind: libc::c_int,
    data: &[u8],
) -> Option<usize> {
    let space = cmsg_space(data.len());
    let out = out.get_mut(..space)?;
    out.fill(0);
    let int = size_of::<libc::c_int>();
    let at = size_of::<usize>();
    out[..at].copy_from_slice(&cmsg_len(data.len()).to_ne_bytes());
    out[at..at + int].copy_from_slice(&level.to_ne_bytes());
    out[at + int..at + 2 * int].copy_from_slice(&kind.to_ne_bytes());
    out[CMSG_HDR..CMSG_HDR + data.len()].copy_from_slice(data);
    Some(space)
}

/// Writes `addr` as a `struct sockaddr_in` or `sockaddr_in6` into `out` and
/// returns its length. The layout mirrors std's own conversion (port and
/// IPv4 address in network order, flow info and scope id as given).
pub fn encode_addr(addr: &SocketAddr, out: &mut [u8; NAME_LEN]) -> libc::socklen_t {
    out.fill(0);
    match addr {
        SocketAddr::V4(a) => {
            out[0..2].copy_from_slice(&(libc::AF_INET as libc::sa_family_t).to_ne_bytes());
            out[2..4].copy_from_slice(&a.port().to_be_bytes());
            out[4..8].copy_from_slice(&a.ip().octets());
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            out[0..2].copy_from_slice(&(libc::AF_INET6 as libc::sa_family_t).to_ne_bytes());
            out[2..4].copy_from_slice(&a.port().to_be_bytes());
            out[4..8].copy_from_slice(&a.flowinfo().to_ne_bytes());
            out[8..24].copy_from_slice(&a.ip().octets());
            out[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads the address the kernel wrote into `name` (`len` bytes of it), or
/// `None` for a family other than IPv4 and IPv6 or a short name.
pub fn decode_addr(name: &[u8; NAME_LEN], len: libc::socklen_t) -> Option<SocketAddr> {
    let len = usize::try_from(len).ok()?.min(NAME_LEN);
    let name = &name[..len];
    let family = libc::sa_family_t::from_ne_bytes(name.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(name.get(2..4)?.try_into().ok()?);
    match libc::c_int::from(family) {
        libc::AF_INET => {
            let ip: [u8; 4] = name.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let flow = u32::from_ne_bytes(name.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = name.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(name.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

/// An all-zero `mmsghdr`: null pointers and zero lengths, which the batches
/// then point at their own buffers.
pub fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is a plain C struct of integers and raw pointers, for
    // which all-zero bytes are a valid value (null pointers, zero lengths).
    #[allow(unsafe_code)]
    unsafe {
        std::mem::zeroed()
    }
}

/// An empty `iovec`.
pub fn zeroed_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

/// The `errno` of the last failed call.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A UDP socket of `family`, not bound, for probing what the kernel offers.
pub fn probe_socket(family: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    #[allow(unsafe_code)]
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt` with an `int` value.
pub fn set_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a pointer to a c_int that lives across the call, with its
    // exact size; the kernel validates the descriptor.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `getsockopt` of an `int` value.
pub fn get_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: pointers to a c_int and its length, both living across the
    // call; the kernel writes at most `len` bytes.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `recvmmsg(fd, hdrs, MSG_DONTWAIT)`, retried on `EINTR`: the number of
/// messages received.
///
/// # Safety
/// Every header in `hdrs` must point at names, iovecs, buffers and control
/// buffers that are valid for writes of the lengths the header gives, and
/// stay so for the call.
#[allow(unsafe_code)]
pub unsafe fn recvmmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    let vlen = libc::c_uint::try_from(hdrs.len()).unwrap_or(libc::c_uint::MAX);
    loop {
        // SAFETY: the caller vouches for the pointers inside `hdrs`; `hdrs`
        // itself holds `vlen` headers.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `sendmmsg(fd, hdrs, MSG_DONTWAIT)`, retried on `EINTR`: the number of
/// messages sent, or the error of the first one.
///
/// # Safety
/// Every header in `hdrs` must point at names, iovecs, buffers and control
/// buffers that are valid for reads of the lengths the header gives, and
/// stay so for the call.
#[allow(unsafe_code)]
pub unsafe fn sendmmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    let vlen = libc::c_uint::try_from(hdrs.len()).unwrap_or(libc::c_uint::MAX);
    loop {
        // SAFETY: as for recvmmsg; the kernel only reads the buffers.
        let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), vlen, libc::MSG_DONTWAIT as _) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn cmsg_sizes_match_libc() {
        for n in [0usize, 1, 2, 4, 8, 13, 16] {
            // SAFETY: CMSG_SPACE and CMSG_LEN only compute sizes.
            let (space, len) = unsafe { (libc::CMSG_SPACE(n as u32), libc::CMSG_LEN(n as u32)) };
            assert_eq!(cmsg_space(n), space as usize, "CMSG_SPACE({n})");
            assert_eq!(cmsg_len(n), len as usize, "CMSG_LEN({n})");
        }
    }

    #[test]
    fn cmsg_round_trip() {
        let mut buf = [0u8; 128];
        let a = put_cmsg(
            &mut buf,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            &1400u16.to_ne_bytes(),
        )
        .unwrap();
        let b = put_cmsg(
            &mut buf[a..],
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            &7u32.to_ne_bytes(),
        )
        .unwrap();
        let found: Vec<_> = cmsgs(&buf[..a + b]).collect();
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[0].level, found[0].kind),
            (libc::SOL_UDP, libc::UDP_SEGMENT)
        );
        assert_eq!(found[0].data, 1400u16.to_ne_bytes());
        assert_eq!(found[1].u32(), Some(7));
        assert_eq!(put_cmsg(&mut buf[..10], 0, 0, &[1, 2]), None);
    }

    #[test]
    fn malformed_cmsg_ends_the_walk() {
        let mut buf = [0u8; 64];
        // A length shorter than the header, then one longer than the buffer.
        buf[..8].copy_from_slice(&3usize.to_ne_bytes());
        assert_eq!(cmsgs(&buf).count(), 0);
        buf[..8].copy_from_slice(&1000usize.to_ne_bytes());
        assert_eq!(cmsgs(&buf).count(), 0);
        assert_eq!(cmsgs(&buf[..5]).count(), 0);
    }

    #[test]
    fn addresses_round_trip_like_std() {
        let addrs: [SocketAddr; 3] = [
            "192.0.2.7:5353".parse().unwrap(),
            "[2001:db8::1]:443".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9, 0x1234, 3)),
        ];
        for addr in addrs {
            let mut name = [0u8; NAME_LEN];
            let len = encode_addr(&addr, &mut name);
            assert_eq!(decode_addr(&name, len), Some(addr));
        }
        let name = [0u8; NAME_LEN];
        assert_eq!(decode_addr(&name, NAME_LEN as _), None, "AF_UNSPEC");
        assert_eq!(decode_addr(&name, 1), None, "short");
    }
}
