//! The accept loop the control socket and the metrics server share: a
//! thread of its own polls a listener, admits at most a fixed number of
//! clients at once and serves each on a short-lived thread of its own; one
//! more is refused at once with a one-line answer, and counted.
//!
//! Why one module: the two servers differ only in the socket (Unix or TCP)
//! and in what they say to a client; the parts that keep the data path and
//! the node safe from slow or hostile clients (the bound, the slot released
//! before the socket closes, the retry after a failed accept, the stop flag
//! and waker) are the same and are written once here, so that a fix to them
//! reaches both.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, warn};

/// Stack of a client thread: it formats one answer, nothing more.
const CLIENT_STACK: usize = 256 << 10;
/// The most a refusal reads of what the client already sent.
const MAX_DRAIN: usize = 4096;

const LISTENER: Token = Token(0);
const STOP: Token = Token(1);

/// What a served socket counts, read by the loop into its status.
#[derive(Debug, Default)]
pub struct Stats {
    /// Clients refused because the most clients were being served, or the
    /// request queue was full.
    pub refused: AtomicU64,
    /// Clients that did not send their request, or take their answer, in
    /// time.
    pub timeouts: AtomicU64,
}

/// How one server's accept loop is set up.
pub(super) struct Config {
    /// Its name in log lines (`control socket`, `metrics server`).
    pub name: &'static str,
    /// The accepting thread's name.
    pub thread: &'static str,
    /// Each client thread's name.
    pub client_thread: &'static str,
    /// Clients served at once; one more is refused.
    pub max_clients: usize,
}

/// Why a client is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// [`Config::max_clients`] are being served.
    Busy,
    /// No thread could be started for it.
    NoThread,
}

/// What a server does with its clients.
pub(super) trait Handler<S>: Send + Sync + 'static {
    /// The longest request a client sends: a refusal reads up to this much
    /// (at most [`MAX_DRAIN`]) before it answers and closes.
    const MAX_REQUEST: usize;
    /// Serves one admitted client on its own thread, with blocking I/O
    /// under deadlines.
    fn serve(&self, stream: &S);
    /// The answer a refused client gets before it is closed.
    fn refusal(&self, why: Refusal) -> String;
}

/// A listening socket the accepting thread polls, and the blocking stream
/// each accepted client is served on.
pub(super) trait Listener: mio::event::Source + Send + 'static {
    /// The blocking stream a client is served on.
    type Stream: Send + 'static;
    /// Accepts one waiting client, if any (`WouldBlock` when none).
    fn accept_stream(&self) -> io::Result<Self::Stream>;
    /// Answers `line` on `stream` and closes it, without waiting: what the
    /// client already sent is read first into `sink` (closing a socket with
    /// unread data resets the connection, and the client might lose the
    /// answer), then a non-blocking write into the fresh socket's empty
    /// buffer.
    fn refuse(stream: Self::Stream, sink: &mut [u8], line: &[u8]);
}

/// How a read under a deadline failed.
#[derive(Debug)]
pub(super) enum ReadFailed {
    /// Nothing came by the deadline.
    Timeout,
    /// The socket failed.
    Io(io::Error),
}

/// A client's blocking stream, as the handlers read it.
pub(super) trait Stream {
    /// Reads what comes into `buf` by `deadline` (0: the client closed its
    /// side), retrying when interrupted: the one read both servers' request
    /// readers loop on.
    fn read_by(&self, buf: &mut [u8], deadline: Instant) -> Result<usize, ReadFailed>;
}

/// Implements [`Listener`] for a mio listener whose accepted stream is
/// served as the std stream `$stream`, and [`Stream`] for that stream.
macro_rules! listener {
    ($listener:ty, $stream:ty) => {
        impl Listener for $listener {
            type Stream = $stream;

            fn accept_stream(&self) -> io::Result<$stream> {
                let (stream, _) = self.accept()?;
                Ok(<$stream>::from(OwnedFd::from(stream)))
            }

            fn refuse(stream: $stream, sink: &mut [u8], line: &[u8]) {
                if stream.set_nonblocking(true).is_ok() {
                    let _ = (&stream).read(sink);
                    let _ = (&stream).write(line);
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                }
            }
        }

        impl Stream for $stream {
            fn read_by(&self, buf: &mut [u8], deadline: Instant) -> Result<usize, ReadFailed> {
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ReadFailed::Timeout);
                    }
                    self.set_read_timeout(Some(left)).map_err(ReadFailed::Io)?;
                    match (&*self).read(buf) {
                        Ok(n) => return Ok(n),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            return Err(ReadFailed::Timeout)
                        }
                        Err(e) => return Err(ReadFailed::Io(e)),
                    }
                }
            }
        }
    };
}

listener!(mio::net::UnixListener, UnixStream);
listener!(mio::net::TcpListener, TcpStream);

/// The accepting thread, from the server's side: stops and joins it on
/// [`AcceptThread::stop`] or drop.
pub(super) struct AcceptThread {
    stop: Arc<AtomicBool>,
    waker: Waker,
    thread: Option<JoinHandle<()>>,
}

impl AcceptThread {
    /// Polls `listener` on a thread of its own named [`Config::thread`],
    /// serving each client with `handler` and counting refusals in
    /// `stats`.
    pub(super) fn start<L, H>(
        mut listener: L,
        handler: H,
        stats: Arc<Stats>,
        config: Config,
    ) -> io::Result<AcceptThread>
    where
        L: Listener,
        H: Handler<L::Stream>,
    {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), STOP)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = config.thread;
        let acceptor = Acceptor {
            listener,
            poll,
            stop: stop.clone(),
            stats,
            active: Arc::new(AtomicUsize::new(0)),
            handler: Arc::new(handler),
            config,
        };
        let thread = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || acceptor.run())?;
        Ok(AcceptThread {
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// Stops the accepting thread and waits for it; client threads being
    /// served finish on their own, within their deadlines.
    pub(super) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AcceptThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The accepting thread's state.
struct Acceptor<L, H> {
    listener: L,
    poll: Poll,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    /// Clients being served now.
    active: Arc<AtomicUsize>,
    handler: Arc<H>,
    config: Config,
}

impl<L: Listener, H: Handler<L::Stream>> Acceptor<L, H> {
    fn run(mut self) {
        let name = self.config.name;
        let mut events = Events::with_capacity(8);
        // After an accept error other than "nothing waiting" (out of file
        // descriptors, say), retry soon: the waiting client raises no new
        // event.
        let mut retry = false;
        loop {
            let timeout = retry.then_some(Duration::from_millis(100));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("{name}: poll failed: {e}; no longer serving it");
                    return;
                }
            }
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            retry = false;
            loop {
                match self.listener.accept_stream() {
                    Ok(stream) => self.admit(stream),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        debug!("{name}: accept: {e}");
                        retry = true;
                        break;
                    }
                }
            }
        }
    }

    /// Serves `stream` on a thread of its own, or refuses it if
    /// [`Config::max_clients`] are being served.
    fn admit(&self, stream: L::Stream) {
        if self.active.fetch_add(1, Ordering::SeqCst) >= self.config.max_clients {
            self.active.fetch_sub(1, Ordering::SeqCst);
            self.refuse(stream, Refusal::Busy);
            return;
        }
        let slot = Slot(self.active.clone());
        let handler = self.handler.clone();
        // The stream is moved in only if the thread starts.
        let (tx, rx) = mpsc::sync_channel::<L::Stream>(1);
        let spawned = std::thread::Builder::new()
            .name(self.config.client_thread.into())
            .stack_size(CLIENT_STACK)
            .spawn(move || {
                if let Ok(stream) = rx.recv() {
                    handler.serve(&stream);
                    // Free the slot before closing, so that once a client
                    // has its whole answer the slot is free again.
                    drop(slot);
                    drop(stream);
                }
            });
        match spawned {
            Ok(_) => {
                // The thread waits on the one-slot channel: never full.
                let _ = tx.try_send(stream);
            }
            Err(e) => {
                // `slot` went with the closure: its drop released it.
                debug!("{}: cannot start a client thread: {e}", self.config.name);
                self.refuse(stream, Refusal::NoThread);
            }
        }
    }

    /// Counts the refusal, answers it and closes.
    fn refuse(&self, stream: L::Stream, why: Refusal) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        let mut sink = [0u8; MAX_DRAIN];
        let drain = H::MAX_REQUEST.min(MAX_DRAIN);
        L::refuse(
            stream,
            &mut sink[..drain],
            self.handler.refusal(why).as_bytes(),
        );
    }
}

/// A client's place among [`Config::max_clients`], released on drop.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
