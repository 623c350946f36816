//! The service manager's readiness protocol (`sd_notify(3)`): one datagram
//! of `KEY=VALUE` lines to the Unix socket `$NOTIFY_SOCKET` names. systemd
//! waits for `READY=1` before it counts a `Type=notify` unit as started.
//!
//! Hand-written, with the standard library only, because the `sd-notify`
//! crate (0.5) connects to `$NOTIFY_SOCKET` as a path and so fails on an
//! abstract socket (`@name`), which `sd_notify(3)` allows and containers
//! and test harnesses hand out; the send itself is the few lines below.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable the service manager sets.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Why a notification could not be sent.
#[derive(Debug)]
#[non_exhaustive]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` is not a usable Unix socket address (empty, too
    /// long, or a kind this sender does not speak, such as `vsock:`).
    BadAddress(String),
    /// Creating the socket or sending failed.
    Io(io::Error),
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::BadAddress(a) => write!(f, "{NOTIFY_SOCKET}={a:?} is not usable"),
            NotifyError::Io(e) => write!(f, "{NOTIFY_SOCKET}: {e}"),
        }
    }
}

impl std::error::Error for NotifyError {}

/// Sends `state` (newline-separated `KEY=VALUE` lines, e.g. `"READY=1"`)
/// to the socket in `$NOTIFY_SOCKET`. Returns `Ok(false)` when the variable
/// is unset: no service manager is listening.
pub fn notify(state: &str) -> Result<bool, NotifyError> {
    match std::env::var_os(NOTIFY_SOCKET) {
        None => Ok(false),
        Some(name) => notify_to(&name, state).map(|()| true),
    }
}

/// Sends `state` to the notify socket `name`: a path, or `@name` for a
/// socket in the abstract namespace.
pub fn notify_to(name: &OsStr, state: &str) -> Result<(), NotifyError> {
    let addr = address(name)?;
    let sock = UnixDatagram::unbound().map_err(NotifyError::Io)?;
    let sent = sock
        .send_to_addr(state.as_bytes(), &addr)
        .map_err(NotifyError::Io)?;
    if sent == state.len() {
        Ok(())
    } else {
        Err(NotifyError::Io(io::Error::new(
            io::ErrorKind::WriteZero,
            "the notification was cut short",
        )))
    }
}

fn address(name: &OsStr) -> Result<SocketAddr, NotifyError> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    let bad = || NotifyError::BadAddress(name.to_string_lossy().into_owned());
    match name.as_bytes() {
        [] => Err(bad()),
        [b'@', rest @ ..] => SocketAddr::from_abstract_name(rest).map_err(|_| bad()),
        [b'/', ..] => SocketAddr::from_pathname(name).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_to_an_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("sdt-notify-unit-{}", std::process::id());
        let sock =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        notify_to(OsStr::new(&format!("@{name}")), "STOPPING=1\n").unwrap();
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
    }

    #[test]
    fn refuses_what_is_not_a_unix_address() {
        for name in ["", "relative/notify", "vsock:2:1234"] {
            assert!(
                matches!(
                    notify_to(OsStr::new(name), "READY=1"),
                    Err(NotifyError::BadAddress(_))
                ),
                "{name:?}"
            );
        }
        let long = format!("/{}", "x".repeat(200));
        assert!(matches!(
            notify_to(OsStr::new(&long), "READY=1"),
            Err(NotifyError::BadAddress(_))
        ));
        assert!(matches!(
            notify_to(OsStr::new("/nonexistent/notify"), "READY=1"),
            Err(NotifyError::Io(_))
        ));
    }
}
