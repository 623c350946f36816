//! Endpoint names (`endpoint = "host.example:51820"`), resolved again while
//! the node runs, never on the event loop.
//!
//! [`Config::load`] resolves each name once (for `sdt run`, before the loop
//! starts; a name that does not resolve then is no error). From then on
//! the loop asks again:
//! - when core reports [`LinkEvent::EndpointStale`](sdt_core::link::LinkEvent)
//!   (handshakes to the peer went unanswered: core's rule, in one place);
//! - every `resolve_interval` (default 2 minutes, `"off"` for never);
//! - every [`RETRY_UNRESOLVED`] while a name has never resolved, so a node
//!   started before DNS is up reaches its peer once it is.
//!
//! Lookups run on one thread of their own (`getaddrinfo` blocks), one at a
//! time; each result comes back through a channel and the loop's waker.
//! The address is picked by [`resolve_name`], the rule `sdt check` applies
//! too: the first the link socket can send to. A new address goes to core
//! ([`Node::set_endpoint`](sdt_core::node::Node::set_endpoint)) and is
//! logged; a failed lookup keeps the address the peer had, and is logged
//! and counted. `sdt status` shows each name, what it resolved to and when.

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use mio::Waker;
use sdt_core::Instant;

use crate::config::{resolve_name, Config, ResolveError};

/// How often a name that never resolved is tried again.
pub const RETRY_UNRESOLVED: Duration = Duration::from_secs(5);

/// One peer's endpoint name and what became of it.
#[derive(Debug, Clone)]
pub struct Name {
    /// The peer's name in the config.
    pub peer: String,
    /// The endpoint as written, `host:port`.
    pub text: String,
    /// The address of the latest successful lookup.
    pub resolved: Option<SocketAddr>,
    /// When that lookup finished.
    pub resolved_at: Option<Instant>,
    /// Lookups that failed (no such name, no usable address, ...).
    pub failures: u64,
    /// Lookups that gave a different address than the one before.
    pub changes: u64,
    /// When the next lookup is due; `None`: only when core asks.
    due: Option<Instant>,
    in_flight: bool,
    /// Core reported the endpoint stale since the last lookup started.
    stale: bool,
}

struct Job {
    peer: String,
    text: String,
    stale: bool,
}

/// A finished lookup.
pub struct Done {
    /// The peer's name in the config.
    pub peer: String,
    text: String,
    stale: bool,
    result: Result<SocketAddr, ResolveError>,
}

/// What the loop should do with a finished lookup.
pub enum Outcome {
    /// The name gave `address`; `was` is the address of the lookup before
    /// (`None` if it never resolved). Give it to core if `apply`.
    Resolved {
        /// The peer's name in the config.
        peer: String,
        /// The endpoint name.
        text: String,
        /// What it resolves to now.
        address: SocketAddr,
        /// What it resolved to before.
        was: Option<SocketAddr>,
        /// Whether core should send there (a new address, or the old one
        /// looked up again because core found it stale).
        apply: bool,
    },
    /// The lookup failed; the peer keeps its address.
    Failed {
        /// The peer's name in the config.
        peer: String,
        /// The endpoint name.
        text: String,
        /// Why.
        why: ResolveError,
        /// Failures of this name so far.
        failures: u64,
    },
}

/// The names of one node and its lookup thread.
pub struct Resolver {
    names: Vec<Name>,
    interval: Option<Duration>,
    /// The link socket's address: names resolve to what it can send to.
    local: SocketAddr,
    waker: Arc<Waker>,
    /// To the lookup thread, started with the first lookup.
    jobs: Option<mpsc::Sender<Job>>,
    done_tx: mpsc::Sender<Done>,
    done: mpsc::Receiver<Done>,
}

impl Resolver {
    /// The names of `config`'s peers, as [`Config::load`] resolved them at
    /// `now`, sending from the link socket at `local`.
    pub fn new(config: &Config, local: SocketAddr, waker: Arc<Waker>, now: Instant) -> Resolver {
        let (done_tx, done) = mpsc::channel();
        let mut r = Resolver {
            names: Vec::new(),
            interval: config.resolve_interval,
            local,
            waker,
            jobs: None,
            done_tx,
            done,
        };
        r.sync(config, now);
        r
    }

    /// Follows a new configuration (a reload, already applied to core with
    /// the addresses its load resolved): a name kept by the same peer keeps
    /// its counters; the rest start afresh.
    pub fn sync(&mut self, config: &Config, now: Instant) {
        self.interval = config.resolve_interval;
        let old = std::mem::take(&mut self.names);
        for spec in &config.peers {
            let Some(text) = &spec.endpoint_name else {
                continue;
            };
            let mut name = old
                .iter()
                .find(|n| n.peer == spec.name && &n.text == text)
                .cloned()
                .unwrap_or_else(|| Name {
                    peer: spec.name.clone(),
                    text: text.clone(),
                    resolved: None,
                    resolved_at: None,
                    failures: 0,
                    changes: 0,
                    due: None,
                    in_flight: false,
                    stale: false,
                });
            if let Some(addr) = spec.endpoint {
                if name.resolved.is_some_and(|r| r != addr) {
                    name.changes += 1;
                }
                name.resolved = Some(addr);
                name.resolved_at = Some(now);
            }
            name.due = self.next_due(&name, now);
            self.names.push(name);
        }
    }

    /// Every name, for `sdt status`.
    pub fn names(&self) -> &[Name] {
        &self.names
    }

    /// The name of the peer called `peer`.
    pub fn name_of(&self, peer: &str) -> Option<&Name> {
        self.names.iter().find(|n| n.peer == peer)
    }

    fn next_due(&self, name: &Name, now: Instant) -> Option<Instant> {
        if name.resolved.is_none() {
            Some(now + RETRY_UNRESOLVED)
        } else {
            self.interval.map(|i| now + i)
        }
    }

    /// When [`Resolver::start_due`] has a lookup to start.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.names
            .iter()
            .filter(|n| !n.in_flight)
            .filter_map(|n| n.due)
            .min()
    }

    /// Starts the lookups due at `now`.
    pub fn start_due(&mut self, now: Instant) {
        for i in 0..self.names.len() {
            let n = &self.names[i];
            if !n.in_flight && n.due.is_some_and(|d| d <= now) {
                self.start(i);
            }
        }
    }

    /// Core found the endpoint of the peer called `peer` stale: looks its
    /// name up now (if it has one and no lookup is under way).
    pub fn stale(&mut self, peer: &str) {
        if let Some(i) = self.names.iter().position(|n| n.peer == peer) {
            self.names[i].stale = true;
            if !self.names[i].in_flight {
                self.start(i);
            }
        }
    }

    fn start(&mut self, i: usize) {
        let n = &mut self.names[i];
        let job = Job {
            peer: n.peer.clone(),
            text: n.text.clone(),
            stale: std::mem::take(&mut n.stale),
        };
        n.in_flight = true;
        n.due = None;
        let sent = match &self.jobs {
            Some(jobs) => jobs.send(job).map_err(|e| e.0),
            None => Err(job),
        };
        if let Err(job) = sent {
            // No thread yet (or it died): start one.
            let (tx, rx) = mpsc::channel::<Job>();
            let (done, waker, local) = (self.done_tx.clone(), self.waker.clone(), self.local);
            let spawned = std::thread::Builder::new()
                .name("sdt-resolve".into())
                .spawn(move || {
                    for job in rx {
                        let result = resolve_name(&job.text, Some(local));
                        let out = Done {
                            peer: job.peer,
                            text: job.text,
                            stale: job.stale,
                            result,
                        };
                        if done.send(out).is_err() {
                            return;
                        }
                        let _ = waker.wake();
                    }
                });
            let lost = match spawned {
                Ok(_) => tx.send(job).err().map(|e| e.0),
                Err(_) => Some(job),
            };
            self.jobs = Some(tx);
            if let Some(job) = lost {
                // No thread to run it: a failure, tried again later.
                let _ = self.done_tx.send(Done {
                    peer: job.peer,
                    text: job.text,
                    stale: job.stale,
                    result: Err(ResolveError::Lookup(
                        "cannot start the resolver thread".into(),
                    )),
                });
                let _ = self.waker.wake();
            }
        }
    }

    /// The lookups finished since the last call, at `now`, with what to do
    /// about each.
    pub fn finished(&mut self, now: Instant) -> Vec<Outcome> {
        let mut out = Vec::new();
        while let Ok(done) = self.done.try_recv() {
            let Some(i) = self
                .names
                .iter()
                .position(|n| n.peer == done.peer && n.text == done.text)
            else {
                continue; // a reload removed or renamed it meanwhile
            };
            self.names[i].in_flight = false;
            match done.result {
                Ok(address) => {
                    let n = &mut self.names[i];
                    let was = n.resolved.replace(address);
                    n.resolved_at = Some(now);
                    if was.is_some_and(|w| w != address) {
                        n.changes += 1;
                    }
                    out.push(Outcome::Resolved {
                        peer: n.peer.clone(),
                        text: n.text.clone(),
                        address,
                        was,
                        apply: was != Some(address) || done.stale,
                    });
                }
                Err(why) => {
                    let n = &mut self.names[i];
                    n.failures += 1;
                    out.push(Outcome::Failed {
                        peer: n.peer.clone(),
                        text: n.text.clone(),
                        why,
                        failures: n.failures,
                    });
                }
            }
            let due = self.next_due(&self.names[i], now);
            let n = &mut self.names[i];
            n.due = due;
            if n.stale {
                // Core asked again while this lookup ran.
                self.start(i);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdt_core::key::PrivateKey;
    use std::path::Path;

    fn config(endpoint: &str, interval: &str) -> Config {
        let text = format!(
            "private_key = \"{}\"\ncontrol_socket = false\nresolve_interval = \"{interval}\"\n\
             [[peer]]\nname = \"y\"\npublic_key = \"{}\"\nendpoint = \"{endpoint}\"\n",
            PrivateKey::from_bytes([1; 32]),
            PrivateKey::from_bytes([2; 32]).public_key(),
        );
        Config::parse(&text, Path::new("t.toml")).unwrap()
    }

    fn resolver(config: &Config) -> (Resolver, mio::Poll) {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let local = "127.0.0.1:51820".parse().unwrap();
        (Resolver::new(config, local, waker, Instant::ZERO), poll)
    }

    /// The outcomes of the lookups under way, waiting (generously) until
    /// `n` have come back.
    fn wait(r: &mut Resolver, poll: &mut mio::Poll, now: Instant, n: usize) -> Vec<Outcome> {
        let mut out = Vec::new();
        let mut events = mio::Events::with_capacity(4);
        for _ in 0..600 {
            out.extend(r.finished(now));
            if out.len() >= n {
                return out;
            }
            let _ = poll.poll(&mut events, Some(Duration::from_millis(100)));
        }
        panic!("{} of {n} lookups came back", out.len());
    }

    const LOCAL9: &str = "127.0.0.1:9";

    #[test]
    fn a_stale_report_looks_up_again_and_sends_there_even_if_unchanged() {
        let cfg = config("localhost:9", "2m");
        let (mut r, mut poll) = resolver(&cfg);
        let n = &r.names()[0];
        assert_eq!(n.resolved, Some(LOCAL9.parse().unwrap()), "from the load");
        assert_eq!(
            r.poll_timeout(),
            Some(Instant::ZERO + Duration::from_secs(120))
        );
        r.stale("y");
        assert_eq!(r.poll_timeout(), None, "nothing due while it runs");
        let out = wait(&mut r, &mut poll, Instant::from_secs(1), 1);
        let [Outcome::Resolved {
            address,
            was,
            apply,
            ..
        }] = &out[..]
        else {
            panic!("one resolved lookup");
        };
        assert_eq!(
            (*address, *was),
            (LOCAL9.parse().unwrap(), Some(LOCAL9.parse().unwrap()))
        );
        assert!(*apply, "core asked: send there again");
        assert_eq!(r.names()[0].changes, 0);
        assert_eq!(r.names()[0].resolved_at, Some(Instant::from_secs(1)));
        // The interval's lookup of the same address changes nothing.
        let due = Instant::from_secs(121);
        assert_eq!(r.poll_timeout(), Some(due));
        r.start_due(due);
        let out = wait(&mut r, &mut poll, due, 1);
        assert!(matches!(out[..], [Outcome::Resolved { apply: false, .. }]));
        // A report while a lookup runs is not lost: one more follows.
        r.stale("y");
        r.stale("y");
        let out = wait(&mut r, &mut poll, due, 2);
        assert!(matches!(
            out[..],
            [
                Outcome::Resolved { apply: true, .. },
                Outcome::Resolved { apply: true, .. }
            ]
        ));
        // An unknown peer name is no lookup.
        r.stale("nobody");
        assert_eq!(r.poll_timeout(), Some(due + Duration::from_secs(120)));
    }

    #[test]
    fn a_name_that_never_resolved_is_retried_and_failures_are_counted() {
        let cfg = config("nonexistent.invalid:9", "off");
        let (mut r, mut poll) = resolver(&cfg);
        assert_eq!(r.names()[0].resolved, None);
        let first = Instant::ZERO + RETRY_UNRESOLVED;
        assert_eq!(r.poll_timeout(), Some(first));
        r.start_due(first);
        let out = wait(&mut r, &mut poll, first, 1);
        assert!(
            matches!(&out[..], [Outcome::Failed { failures: 1, .. }]),
            "one failure"
        );
        assert_eq!(r.poll_timeout(), Some(first + RETRY_UNRESOLVED));
        // A reload keeping the name keeps its count; a new name starts
        // afresh (and with an address and "off", nothing is due).
        r.sync(&cfg, first);
        assert_eq!(r.names()[0].failures, 1);
        r.sync(&config("localhost:9", "off"), first);
        assert_eq!(r.names()[0].failures, 0);
        assert_eq!(r.poll_timeout(), None);
        // An address is no name.
        r.sync(&config(LOCAL9, "off"), first);
        assert!(r.names().is_empty());
    }
}
