//! The control socket: `sdt status` connects to a Unix socket, sends one
//! request line and reads the answer until the node closes the connection.
//! The requests:
//!
//! - `status`, `status json`: the node's state ([`Status`]);
//! - `channels [json] [limit=N] [sort=idle|age|traffic]`: the open channels
//!   of each service ([`Channels`]), at most `N` per service (default
//!   [`DEFAULT_CHANNEL_LIMIT`](crate::status::DEFAULT_CHANNEL_LIMIT), at
//!   most [`MAX_CHANNEL_LIMIT`]) in that
//!   order (default `traffic`);
//! - `reload FILE` (`sdt reload -c FILE`, FILE an absolute path): the node
//!   re-reads and validates FILE as `sdt check` does, on this control
//!   client's thread, never on the event loop; an invalid file is answered
//!   `error: FILE:LINE: key ...` and nothing changes. A valid one goes to
//!   the loop as a [`Query::Reload`], which applies it whole or refuses it
//!   whole ([`super::Loop::reload`]) and answers a one-line summary.
//!
//! # The control plane never stalls the data path
//!
//! The event loop never touches a control client's socket and never waits
//! for the control plane. A thread of its own (`sdt-control`) accepts
//! clients; each admitted client is served on a short-lived thread
//! (`sdt-control-client`) with blocking reads and writes under a deadline:
//! [`REQUEST_TIMEOUT`] to send its request line, [`ANSWER_TIMEOUT`] for the
//! loop's snapshot, [`WRITE_TIMEOUT`] to take the answer. At most
//! [`MAX_CLIENTS`] are served at once; one more is refused with a one-line
//! `error: busy ...` answer and closed at once, and counted
//! (`control_refused` in `sdt status`), as are clients that time out
//! (`control_timeouts`).
//!
//! A client thread asks the loop for a [`Status`] (or [`Channels`]) by
//! putting a one-slot reply channel on a bounded request queue (`try_send`: a full queue is an
//! `error: busy` answer, never a wait) and waking the loop's mio `Waker`.
//! The loop drains the queue with `try_recv` when woken, takes one snapshot
//! for all the status requests waiting (a channel list for each channel
//! request, bounded by its limit), and hands it over with `try_send` into each
//! reply slot, which is empty by construction. So the loop's part is one
//! snapshot per wake-up and nothing that can block.
//!
//! Why threads and not per-client state in the loop: the loop stays exactly
//! the data path, the control code is plain blocking I/O with timeouts that
//! is easy to read, and the bound keeps the threads few. A client's whole
//! stay is bounded by the three timeouts (about 6 s at most).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::UnixListener;
use mio::Waker;
use tracing::debug;

pub use super::serve::Stats;
use super::serve::{AcceptThread, Config, Handler, ReadFailed, Refusal, Stream as _};

use crate::config::{Config as NodeConfig, DEFAULT_CONTROL_DIR};
use crate::status::{ChannelQuery, ChannelSort, Channels, Status, MAX_CHANNEL_LIMIT};

/// Control clients served at once; one more is refused with `error: busy`.
pub const MAX_CLIENTS: usize = 16;
/// How long a client may take to send its request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client thread waits for the loop's snapshot.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client may take to read the answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest request line read: `reload` and a path of up to `PATH_MAX`.
const MAX_REQUEST: usize = 4200;
/// Requests the loop may have waiting: one per control client and per
/// metrics scraper (the metrics server shares this queue), and a few for
/// [`super::Daemon::status`] callers.
pub const REQUEST_QUEUE: usize = MAX_CLIENTS + super::metrics::MAX_CLIENTS + 16;

/// What a request asks the loop for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The node's [`Status`].
    Status,
    /// The services' open channels.
    Channels(ChannelQuery),
    /// Apply this configuration, already loaded and validated off the
    /// loop (boxed: it is large, and most requests are not reloads).
    Reload(Box<NodeConfig>),
}

/// What the loop answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// For [`Query::Status`] (boxed: a status is much larger than a
    /// channel list's head, and answers move through channels).
    Status(Box<Status>),
    /// For [`Query::Channels`].
    Channels(Channels),
    /// For [`Query::Reload`]: the one-line summary, or why nothing changed.
    Reload(Result<String, String>),
}

/// A request for a snapshot: what it asks, and the one-slot channel to put
/// the answer in.
#[derive(Debug)]
pub struct Request {
    /// What it asks.
    pub query: Query,
    /// Where the answer goes.
    pub reply: SyncSender<Answer>,
}

/// Hands each queued status request the same snapshot, taken once and only
/// if one is waiting, and each channel request its list; reload requests
/// are handed to `reload` unanswered (the loop applies them once the
/// snapshots are out). Never blocks. Returns how many were answered.
pub fn answer_requests(
    requests: &Receiver<Request>,
    mut snapshot: impl FnMut() -> Status,
    mut channels: impl FnMut(ChannelQuery) -> Channels,
    mut reload: impl FnMut(Box<NodeConfig>, SyncSender<Answer>),
) -> usize {
    let mut status: Option<Status> = None;
    let mut answered = 0;
    while let Ok(request) = requests.try_recv() {
        let answer = match request.query {
            Query::Status => {
                Answer::Status(Box::new(status.get_or_insert_with(&mut snapshot).clone()))
            }
            Query::Channels(q) => Answer::Channels(channels(q)),
            Query::Reload(config) => {
                reload(config, request.reply);
                continue;
            }
        };
        // The slot is empty (each request gets one answer), and a client
        // that gave up has dropped its end: never a wait.
        if request.reply.try_send(answer).is_ok() {
            answered += 1;
        }
    }
    answered
}

/// Parses a request line into what to ask and whether to answer in JSON;
/// `Err` is the one-line `error: ...` answer.
fn parse_request(line: &str) -> Result<(Query, bool), String> {
    let mut words = line.split_ascii_whitespace();
    let unknown = || format!("error: unknown request `{}`\n", line.escape_debug());
    match words.next() {
        Some("status") => match (words.next(), words.next()) {
            (None, _) => Ok((Query::Status, false)),
            (Some("json"), None) => Ok((Query::Status, true)),
            _ => Err(unknown()),
        },
        Some("channels") => {
            let mut query = ChannelQuery::default();
            let mut json = false;
            for word in words {
                if word == "json" {
                    json = true;
                } else if let Some(n) = word.strip_prefix("limit=") {
                    query.limit = match n.parse::<usize>() {
                        Ok(n) if (1..=MAX_CHANNEL_LIMIT).contains(&n) => n,
                        _ => {
                            return Err(format!(
                                "error: limit must be a number from 1 to {MAX_CHANNEL_LIMIT}\n"
                            ))
                        }
                    };
                } else if let Some(name) = word.strip_prefix("sort=") {
                    query.sort = ChannelSort::parse(name).ok_or_else(|| {
                        format!(
                            "error: unknown sort `{}`; expected idle, age or traffic\n",
                            name.escape_debug()
                        )
                    })?;
                } else {
                    return Err(unknown());
                }
            }
            Ok((Query::Channels(query), json))
        }
        _ => Err(unknown()),
    }
}

/// The request line `sdt status --channels` sends.
pub fn channels_request(query: ChannelQuery, json: bool) -> String {
    format!(
        "channels{} limit={} sort={}\n",
        if json { " json" } else { "" },
        query.limit,
        query.sort.as_str()
    )
}

/// The node's side: the listening socket and the thread that serves it.
pub struct Server {
    path: PathBuf,
    stats: Arc<Stats>,
    accept: AcceptThread,
}

/// Why the control socket could not be served.
#[derive(Debug)]
pub enum BindError {
    /// A live node already answers on this path.
    InUse,
    /// The path exists and is not a socket (a file, a directory): never
    /// removed.
    NotASocket,
    /// The directory it would live in does not exist (only the default one
    /// is created).
    NoDirectory(PathBuf),
    /// Binding, or removing a stale socket, failed.
    Io(io::Error),
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::InUse => write!(f, "another node is serving this control socket"),
            BindError::NotASocket => write!(f, "the path exists and is not a socket"),
            BindError::NoDirectory(d) => write!(f, "directory {} does not exist", d.display()),
            BindError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BindError {}

impl Server {
    /// Binds `path`, replacing a stale socket file, gives it mode
    /// [`SOCKET_MODE`] and the group `group` (the node's own if `None`),
    /// and starts the control thread. `requests` and `loop_waker` reach the
    /// event loop.
    pub fn start(
        path: &Path,
        group: Option<u32>,
        requests: SyncSender<Request>,
        loop_waker: Arc<Waker>,
    ) -> Result<Server, BindError> {
        let listener = bind(path)?;
        if let Err(e) = restrict(path, group) {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        let stats = Arc::new(Stats::default());
        let service = Service {
            snapshots: Snapshots::new(stats.clone(), requests, loop_waker),
        };
        let config = Config {
            name: "control socket",
            thread: "sdt-control",
            client_thread: "sdt-control-client",
            max_clients: MAX_CLIENTS,
        };
        let accept =
            AcceptThread::start(listener, service, stats.clone(), config).map_err(|e| {
                let _ = std::fs::remove_file(path);
                BindError::Io(e)
            })?;
        Ok(Server {
            path: path.to_owned(),
            stats,
            accept,
        })
    }

    /// The counters, for the loop's snapshots.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The thread first: the path is removed once nobody accepts on it.
        self.accept.stop();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the listening socket at `path`. Its directory must exist, except
/// the default one, which is created; a stale socket (nobody answers on it)
/// is replaced; anything else at `path` is left alone and refused.
fn bind(path: &Path) -> Result<UnixListener, BindError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if dir == Path::new(DEFAULT_CONTROL_DIR) {
            // 0755: group members reach the socket inside (its own mode
            // decides who may connect).
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(BindError::Io)?;
        } else if !dir.exists() {
            return Err(BindError::NoDirectory(dir.to_owned()));
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(BindError::NotASocket);
        }
        if UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse);
        }
        std::fs::remove_file(path).map_err(BindError::Io)?;
    }
    UnixListener::bind(path).map_err(BindError::Io)
}

/// The control socket's mode: owner and group may connect (`connect`
/// needs write permission on a Unix socket), others not. The group is the
/// operators' (`control_group`), so they can read status without root.
pub const SOCKET_MODE: u32 = 0o660;

/// Gives the freshly bound socket at `path` its group and [`SOCKET_MODE`].
/// Until then it has the mode the umask left, which `bind` never makes
/// wider than the process allows; the group is set before the mode widens
/// to the group, so no other group can connect in between.
fn restrict(path: &Path, group: Option<u32>) -> Result<(), BindError> {
    use std::os::unix::fs::PermissionsExt;
    let failed =
        |what: &str, e: io::Error| BindError::Io(io::Error::new(e.kind(), format!("{what}: {e}")));
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(|e| failed(&format!("cannot give it group {gid}"), e))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| failed(&format!("cannot set its mode {SOCKET_MODE:o}"), e))
}

/// Why a client thread got no snapshot from the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SnapshotError {
    /// The request queue was full (counted as a refusal).
    Busy,
    /// The loop has gone: the node is stopping.
    Stopping,
    /// The loop's waker failed.
    NoWake,
    /// No snapshot within [`ANSWER_TIMEOUT`].
    NoAnswer,
}

/// A client thread's way to the loop's snapshots, shared by the control
/// socket and the metrics server: the request queue, the loop's waker, and
/// the server's counters (a full queue is a refusal).
pub(super) struct Snapshots {
    pub(super) stats: Arc<Stats>,
    requests: SyncSender<Request>,
    loop_waker: Arc<Waker>,
}

impl Snapshots {
    pub(super) fn new(
        stats: Arc<Stats>,
        requests: SyncSender<Request>,
        loop_waker: Arc<Waker>,
    ) -> Snapshots {
        Snapshots {
            stats,
            requests,
            loop_waker,
        }
    }

    /// Puts `query` with a one-slot reply channel on the queue (never
    /// waiting: a full queue is [`SnapshotError::Busy`]), wakes the loop and
    /// waits up to [`ANSWER_TIMEOUT`] for its answer.
    pub(super) fn take(&self, query: Query) -> Result<Answer, SnapshotError> {
        let (tx, rx) = mpsc::sync_channel(1);
        match self.requests.try_send(Request { query, reply: tx }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                return Err(SnapshotError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => return Err(SnapshotError::Stopping),
        }
        if self.loop_waker.wake().is_err() {
            return Err(SnapshotError::NoWake);
        }
        rx.recv_timeout(ANSWER_TIMEOUT)
            .map_err(|_| SnapshotError::NoAnswer)
    }

    /// The loop's [`Status`] snapshot.
    pub(super) fn status(&self) -> Result<Status, SnapshotError> {
        match self.take(Query::Status)? {
            Answer::Status(status) => Ok(*status),
            // Each request gets the answer to its own query.
            Answer::Channels(_) | Answer::Reload(_) => Err(SnapshotError::NoAnswer),
        }
    }
}

/// What every control client's thread shares.
struct Service {
    snapshots: Snapshots,
}

impl Handler<UnixStream> for Service {
    const MAX_REQUEST: usize = MAX_REQUEST;

    fn serve(&self, stream: &UnixStream) {
        let result = self.exchange(stream);
        if let Err(e) = result {
            if matches!(e, ClientError::RequestTimeout | ClientError::WriteTimeout) {
                self.snapshots
                    .stats
                    .timeouts
                    .fetch_add(1, Ordering::Relaxed);
            }
            debug!("control client: {e}");
        }
    }

    fn refusal(&self, why: Refusal) -> String {
        match why {
            Refusal::Busy => {
                format!("error: busy: {MAX_CLIENTS} control clients are being served; try again\n")
            }
            Refusal::NoThread => "error: busy: cannot serve another client now\n".into(),
        }
    }
}

/// How a client's exchange ended early.
#[derive(Debug)]
enum ClientError {
    /// It sent no full request line in time.
    RequestTimeout,
    /// It did not take the answer in time.
    WriteTimeout,
    /// It closed without sending anything.
    HungUp,
    /// Any other I/O failure (it hung up, ...).
    Io(io::Error),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::RequestTimeout => write!(f, "no request within {REQUEST_TIMEOUT:?}"),
            ClientError::WriteTimeout => write!(f, "answer not taken within {WRITE_TIMEOUT:?}"),
            ClientError::HungUp => write!(f, "closed without a request"),
            ClientError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl Service {
    fn exchange(&self, stream: &UnixStream) -> Result<(), ClientError> {
        stream.set_nonblocking(false).map_err(ClientError::Io)?;
        let line = read_request(stream, Instant::now() + REQUEST_TIMEOUT)?;
        let json_text = |r: serde_json::Result<String>| {
            r.map(|j| j + "\n").map_err(|e| format!("error: {e}\n"))
        };
        let body = match line.trim().strip_prefix("reload ") {
            Some(path) => self.reload(Path::new(path.trim())),
            None => parse_request(line.trim()).and_then(|(query, json)| {
                match (self.snapshot(query)?, json) {
                    (Answer::Status(s), false) => Ok(s.to_string()),
                    (Answer::Status(s), true) => json_text(serde_json::to_string_pretty(&s)),
                    (Answer::Channels(c), false) => Ok(c.to_string()),
                    (Answer::Channels(c), true) => json_text(serde_json::to_string_pretty(&c)),
                    (Answer::Reload(_), _) => Err("error: unexpected answer\n".to_owned()),
                }
            }),
        };
        let body = body.unwrap_or_else(|e| e);
        stream
            .set_write_timeout(Some(WRITE_TIMEOUT))
            .map_err(ClientError::Io)?;
        let mut w = stream;
        w.write_all(body.as_bytes()).map_err(|e| {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                ClientError::WriteTimeout
            } else {
                ClientError::Io(e)
            }
        })
    }

    /// A `reload FILE` request: FILE is loaded and validated here, on this
    /// client's thread (file reads and name resolution never hold the
    /// loop), exactly as `sdt check` does; a valid configuration goes to
    /// the loop, which applies it or refuses it whole.
    fn reload(&self, path: &Path) -> Result<String, String> {
        if !path.is_absolute() {
            return Err(format!(
                "error: reload: {} is not an absolute path\n",
                path.display()
            ));
        }
        let config = NodeConfig::load(path).map_err(|e| format!("error: {e}\n"))?;
        match self.snapshot(Query::Reload(Box::new(config)))? {
            Answer::Reload(Ok(summary)) => Ok(summary + "\n"),
            Answer::Reload(Err(why)) => Err(format!("error: {why}\n")),
            _ => Err("error: unexpected answer\n".to_owned()),
        }
    }

    /// The loop's answer to `query`, or the one-line answer saying why not.
    fn snapshot(&self, query: Query) -> Result<Answer, String> {
        self.snapshots.take(query).map_err(|e| {
            match e {
                SnapshotError::Busy => {
                    "error: busy: too many status requests waiting; try again
"
                }
                SnapshotError::Stopping => {
                    "error: the node is stopping
"
                }
                SnapshotError::NoWake => {
                    "error: cannot wake the node
"
                }
                SnapshotError::NoAnswer => {
                    "error: the node did not answer in time
"
                }
            }
            .to_owned()
        })
    }
}

/// Reads one request line (up to [`MAX_REQUEST`] bytes, or what came
/// before the client closed its side) by `deadline`.
fn read_request(stream: &UnixStream, deadline: Instant) -> Result<String, ClientError> {
    let mut buf = [0u8; MAX_REQUEST];
    let mut len = 0;
    while len < buf.len() && !buf[..len].contains(&b'\n') {
        match stream.read_by(&mut buf[len..], deadline) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(ReadFailed::Timeout) => return Err(ClientError::RequestTimeout),
            Err(ReadFailed::Io(e)) => return Err(ClientError::Io(e)),
        }
    }
    if len == 0 {
        return Err(ClientError::HungUp);
    }
    let end = buf[..len].iter().position(|&b| b == b'\n').unwrap_or(len);
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Why `sdt status` could not get an answer.
#[derive(Debug)]
pub enum ControlError {
    /// No node listens there.
    Connect(PathBuf, io::Error),
    /// The exchange failed.
    Io(io::Error),
    /// The node answered with an error line (busy, unknown request, ...).
    Refused(String),
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
            ControlError::Refused(why) => write!(f, "the node refused: {why}"),
        }
    }
}

impl std::error::Error for ControlError {}

/// How long `sdt status` waits for the whole answer: longer than a node
/// can take (its three timeouts).
const QUERY_TIMEOUT: Duration = Duration::from_secs(8);

/// The client's side: asks the node at `path` for its status, as text or
/// JSON. An `error: ...` answer is [`ControlError::Refused`].
pub fn query_status(path: &Path, json: bool) -> Result<String, ControlError> {
    let request = if json { "status json\n" } else { "status\n" };
    query(path, request)
}

/// The client's side of `sdt status --channels`: the open channels of the
/// node at `path`, as text or JSON.
pub fn query_channels(
    path: &Path,
    query_: ChannelQuery,
    json: bool,
) -> Result<String, ControlError> {
    query(path, &channels_request(query_, json))
}

/// The client's side of `sdt reload -c FILE`: asks the node at `path` to
/// apply the configuration `file` (made absolute here: the node has its
/// own working directory). `Ok` is the node's one-line summary;
/// [`ControlError::Refused`] carries its one-line reason (a `FILE:LINE:
/// key ...` error as `sdt check` prints it, or a key that needs a restart).
pub fn request_reload(path: &Path, file: &Path) -> Result<String, ControlError> {
    let file = std::path::absolute(file).map_err(ControlError::Io)?;
    let file = file.to_str().ok_or_else(|| {
        ControlError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the configuration path is not UTF-8",
        ))
    })?;
    if file.contains('\n') {
        return Err(ControlError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the configuration path contains a newline",
        )));
    }
    query(path, &format!("reload {file}\n"))
}

/// Sends one request line to the node at `path` and reads its answer.
fn query(path: &Path, request: &str) -> Result<String, ControlError> {
    let request = request.as_bytes();
    let mut stream =
        UnixStream::connect(path).map_err(|e| ControlError::Connect(path.to_owned(), e))?;
    stream
        .set_read_timeout(Some(QUERY_TIMEOUT))
        .map_err(ControlError::Io)?;
    // A node that refuses us (busy) answers and closes without waiting for
    // our request: writing it may then fail, and reading may end in a reset
    // after the answer. The answer is what counts.
    let written = stream.write_all(request);
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !answer.is_empty() => {}
        Err(e) => return Err(ControlError::Io(written.err().unwrap_or(e))),
    }
    if answer.is_empty() {
        written.map_err(ControlError::Io)?;
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    match answer.strip_prefix("error: ") {
        Some(why) => Err(ControlError::Refused(why.trim_end().to_owned())),
        None => Ok(answer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::DEFAULT_CHANNEL_LIMIT;

    fn status(uptime_secs: f64) -> Status {
        Status {
            uptime_secs,
            ..Status::default()
        }
    }

    /// The loop's side takes one snapshot for every waiting request, none
    /// when nothing waits, and does not wait for a client that gave up.
    #[test]
    fn waiting_requests_share_one_snapshot_and_never_block_the_loop() {
        let (requests, queue) = mpsc::sync_channel::<Request>(REQUEST_QUEUE);
        let mut taken = 0;
        assert_eq!(
            answer_requests(
                &queue,
                || {
                    taken += 1;
                    status(0.0)
                },
                |_| unreachable!("no channel request"),
                |_, _| unreachable!("no reload request"),
            ),
            0
        );
        assert_eq!(taken, 0);

        let ask = |query| {
            let (tx, rx) = mpsc::sync_channel(1);
            requests.try_send(Request { query, reply: tx }).unwrap();
            rx
        };
        let replies: Vec<_> = (0..3).map(|_| ask(Query::Status)).collect();
        let (gone, _) = mpsc::sync_channel(1);
        requests
            .try_send(Request {
                query: Query::Status,
                reply: gone,
            })
            .unwrap();
        let q = ChannelQuery {
            limit: 3,
            sort: ChannelSort::Idle,
        };
        let listed = ask(Query::Channels(q));
        let mut lists = 0;
        let answered = answer_requests(
            &queue,
            || {
                taken += 1;
                status(7.0)
            },
            |query| {
                lists += 1;
                Channels {
                    sort: query.sort,
                    limit: query.limit,
                    services: Vec::new(),
                }
            },
            |_, _| unreachable!("no reload request"),
        );
        assert_eq!((answered, taken, lists), (4, 1, 1));
        for rx in replies {
            match rx.try_recv().unwrap() {
                Answer::Status(s) => assert_eq!(s.uptime_secs, 7.0),
                other => panic!("{other:?}"),
            }
        }
        match listed.try_recv().unwrap() {
            Answer::Channels(c) => assert_eq!((c.limit, c.sort), (3, ChannelSort::Idle)),
            other => panic!("{other:?}"),
        }
    }

    /// A client thread that finds the request queue full answers `busy`
    /// at once and counts it, rather than waiting for the loop.
    #[test]
    fn a_full_request_queue_is_refused_at_once() {
        let (requests, _queue) = mpsc::sync_channel::<Request>(REQUEST_QUEUE);
        for _ in 0..REQUEST_QUEUE {
            let reply = mpsc::sync_channel(1).0;
            requests
                .try_send(Request {
                    query: Query::Status,
                    reply,
                })
                .unwrap();
        }
        let poll = mio::Poll::new().unwrap();
        let client = Service {
            snapshots: Snapshots::new(
                Arc::new(Stats::default()),
                requests,
                Arc::new(Waker::new(poll.registry(), mio::Token(1)).unwrap()),
            ),
        };
        // Waiting would end in "did not answer in time" instead.
        let answer = client.snapshot(Query::Status).unwrap_err();
        assert!(answer.starts_with("error: busy"), "{answer}");
        assert_eq!(client.snapshots.stats.refused.load(Ordering::Relaxed), 1);
        drop(client);
    }

    /// The request lines, with their defaults and bounds.
    #[test]
    fn request_lines_parse() {
        let channels = |limit, sort| Query::Channels(ChannelQuery { limit, sort });
        assert_eq!(parse_request("status"), Ok((Query::Status, false)));
        assert_eq!(parse_request("status json"), Ok((Query::Status, true)));
        assert_eq!(
            parse_request("channels"),
            Ok((channels(DEFAULT_CHANNEL_LIMIT, ChannelSort::Traffic), false))
        );
        assert_eq!(
            parse_request("channels json limit=7 sort=age"),
            Ok((channels(7, ChannelSort::Age), true))
        );
        let q = ChannelQuery {
            limit: 12,
            sort: ChannelSort::Idle,
        };
        let line = channels_request(q, true);
        assert_eq!(parse_request(line.trim()), Ok((Query::Channels(q), true)));
        for bad in [
            "channels limit=0",
            "channels limit=1001",
            "channels limit=x",
            "channels sort=size",
            "channels please",
            "status json extra",
            "reload",
        ] {
            let e = parse_request(bad).unwrap_err();
            assert!(e.starts_with("error: ") && e.ends_with('\n'), "{bad}: {e}");
        }
    }
}
