//! The control socket: `sdt status` connects to a Unix socket, sends one
//! request line (`status` or `status json`) and reads the answer until the
//! node closes the connection.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mio::net::UnixListener;
use mio::{Interest, Registry, Token};
use tracing::debug;

use crate::status::Status;

/// How long a client may take to send its request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The node's side.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
}

impl Server {
    /// Binds `path`, replacing a stale socket file, and registers it.
    pub fn bind(path: &Path, registry: &Registry, token: Token) -> io::Result<Server> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another node is serving this control socket",
                ));
            }
            std::fs::remove_file(path)?;
        }
        let mut listener = UnixListener::bind(path)?;
        registry.register(&mut listener, token, Interest::READABLE)?;
        Ok(Server {
            listener,
            path: path.to_owned(),
        })
    }

    /// Answers every waiting client.
    pub fn serve(&mut self, status: &Status) {
        while let Ok((stream, _)) = self.listener.accept() {
            if let Err(e) = answer(stream, status) {
                debug!("control client: {e}");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn answer(stream: mio::net::UnixStream, status: &Status) -> io::Result<()> {
    // Talk to the client with blocking calls and a timeout: answers are
    // small and clients are local.
    let fd = std::os::fd::OwnedFd::from(stream);
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(&stream).take(256).read_line(&mut line)?;
    let body = match line.trim() {
        "status" => status.to_string(),
        "status json" => serde_json::to_string_pretty(status).map_err(io::Error::other)? + "\n",
        other => format!("error: unknown request `{other}`\n"),
    };
    (&stream).write_all(body.as_bytes())
}

/// Why `sdt status` could not get an answer.
#[derive(Debug)]
pub enum ControlError {
    /// No node listens there.
    Connect(PathBuf, io::Error),
    /// The exchange failed.
    Io(io::Error),
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::Connect(p, e) => {
                write!(
                    f,
                    "no node answers on {}: {e} (is `sdt run` running?)",
                    p.display()
                )
            }
            ControlError::Io(e) => write!(f, "control socket: {e}"),
        }
    }
}

impl std::error::Error for ControlError {}

/// The client's side: asks the node at `path` for its status, as text or
/// JSON.
pub fn query_status(path: &Path, json: bool) -> Result<String, ControlError> {
    let mut stream =
        UnixStream::connect(path).map_err(|e| ControlError::Connect(path.to_owned(), e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(ControlError::Io)?;
    let request: &[u8] = if json { b"status json\n" } else { b"status\n" };
    stream.write_all(request).map_err(ControlError::Io)?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(ControlError::Io)?;
    Ok(answer)
}
