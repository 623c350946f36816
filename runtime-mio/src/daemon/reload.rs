//! Hot reload: `sdt reload -c FILE` and SIGHUP apply a new configuration to
//! the running node, like `wg syncconf`.
//!
//! The file is read and validated off the loop, by the code `sdt check`
//! runs ([`Config::load`]): on a control client's thread for `sdt reload`,
//! on a thread of its own for SIGHUP. The loop then gets the validated
//! [`Config`] through the request queue and [`Loop::reload`] applies it:
//!
//! 1. keys that cannot change live are compared first and refused whole,
//!    naming the key ([`restart_only`]): the node's `private_key`, the link
//!    socket's `listen`, `control_socket`, `control_group`,
//!    `metrics_listen`, router entries (their TUN device, and whether
//!    the link socket reads with GRO, are set at start), and a kept push
//!    entry's `buffer` (resizing it would drop what it holds);
//! 2. each listening address the new configuration adds (one no running
//!    service holds) is test-bound, so a port in use refuses the reload
//!    before anything changed;
//! 3. core's [`Node::reload`](sdt_core::node::Node::reload) applies the
//!    difference (peers by key, services by id; all or nothing), and
//!    added and replaced push entries with `buffer` get a new, empty one;
//! 4. the sockets core asks for are opened and those it closes are closed.
//!    Between turns no send is queued (each turn sends its batch before it
//!    ends), so a closed socket is closed at once rather than kept until
//!    the turn's sends are out, and a service replaced on the same address
//!    can bind it again;
//! 5. the peer id → name table follows core's slots.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use sdt_core::link::PeerConfig;
use sdt_core::node::{ReloadSummary, ServiceConfig};
use tracing::{info, warn};

use super::sockets::{PeerLog, SESSION};
use super::{control, Loop};
use crate::build::{peer_config, service_config};
use crate::config::{Config, Half, Mode, ServiceSpec};

/// How long SIGHUP's reload thread waits for the loop's answer.
const HANGUP_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Set while SIGHUP's reload thread runs: more SIGHUPs meanwhile are
/// ignored (with a log line), so a burst of them cannot pile up threads.
static HANGUP_RELOADING: AtomicBool = AtomicBool::new(false);

impl Loop {
    /// Applies `new`, validated by [`Config::load`], to the running node:
    /// the one-line summary, or why nothing changed (see the module docs).
    pub(super) fn reload(&mut self, new: Config) -> Result<String, String> {
        let file = new.path.display().to_string();
        let result = self.apply(new, &file);
        match &result {
            Ok(line) => info!(target: SESSION, "{line}"),
            Err(why) => warn!("reload refused: {why}"),
        }
        result
    }

    fn apply(&mut self, new: Config, file: &str) -> Result<String, String> {
        let refuse = |why: String| format!("{file}: {why}; the running configuration stays");
        restart_only(&self.config, &new).map_err(refuse)?;
        for spec in &new.services {
            let Some(listen) = own_listen(spec) else {
                continue;
            };
            // Held by a running service: the new file has it once (check
            // refuses duplicates), so either that service is kept with it,
            // or core closes it before the new one binds it.
            let held = self
                .config
                .services
                .iter()
                .any(|s| own_listen(s) == Some(listen));
            if !held {
                // Dropped at once: core binds it again below.
                std::net::UdpSocket::bind(listen).map_err(|e| {
                    refuse(format!(
                        "service {}: key `listen`: cannot bind {listen}: {e}",
                        spec.id
                    ))
                })?;
            }
        }
        if new.services.iter().any(|s| s.half == Half::Exit) {
            // As at start: an exit holds a socket per channel (idempotent).
            super::sys::raise_open_file_limit();
        }
        let peers: Vec<PeerConfig> = new.peers.iter().map(peer_config).collect();
        let services: Vec<ServiceConfig> = new.services.iter().map(service_config).collect();
        // Nothing is queued between turns; should it be, it goes first.
        self.send_batch();
        self.io.bury();
        let now = self.now();
        let summary = self
            .node
            .reload(now, &new.private_key.public_key(), &peers, &services)
            .map_err(|e| refuse(e.to_string()))?;
        // Added and replaced push entries get their buffer (kept ones keep
        // theirs); validation made sure each is a push entry.
        let buffers = crate::build::give_push_buffers(&mut self.node, &new).err();
        let errors_before = self.io.service_open_errors.len();
        self.io.close_at_once = true;
        self.node.flush(&mut self.io, now, &mut self.scratch);
        self.io.close_at_once = false;
        self.config = new;
        self.io.peer_names = crate::status::peer_names(&self.node, &self.config);
        // What the log says of each peer follows core's slots too: a kept
        // peer keeps its state, a new one starts from what it is now.
        let link = self.node.link();
        self.io.peer_log = (0..link.peer_count())
            .map(|i| {
                let id = sdt_core::link::PeerId(i as u16);
                link.peer(id, now).filter(|_| !link.is_retired(id)).map_or(
                    PeerLog::default(),
                    |p| PeerLog {
                        up: p.session_up,
                        stale: p.session_up && p.overdue,
                    },
                )
            })
            .collect();
        self.resolver.sync(&self.config, now);
        let line = summary_line(file, &summary);
        let failed: Vec<String> = self.io.service_open_errors[errors_before..]
            .iter()
            .map(|(id, why)| format!("service {id}: {why}"))
            .chain(buffers.map(|e| format!("{e} (its outage buffer)")))
            .collect();
        if failed.is_empty() {
            Ok(line)
        } else {
            Err(format!("{line}, but {}", failed.join("; ")))
        }
    }

    /// SIGHUP: reloads the file the node was started with, read and
    /// validated on a thread of its own (never on the loop), and logs the
    /// outcome.
    pub(super) fn reload_on_hangup(&mut self) {
        if HANGUP_RELOADING.swap(true, Ordering::SeqCst) {
            warn!("SIGHUP received while a reload is under way: ignored");
            return;
        }
        let path = self.started_from.clone();
        let requests = self.reload_requests.clone();
        let waker = self.waker.clone();
        info!("SIGHUP received: reloading {}", path.display());
        let spawned = std::thread::Builder::new()
            .name("sdt-reload".into())
            .spawn(move || {
                let outcome = (|| {
                    let config = Config::load(&path).map_err(|e| e.to_string())?;
                    let (reply, answer) = mpsc::sync_channel(1);
                    requests
                        .try_send(control::Request {
                            query: control::Query::Reload(Box::new(config)),
                            reply,
                        })
                        .map_err(|_| "the node is busy; try again".to_owned())?;
                    waker
                        .wake()
                        .map_err(|e| format!("cannot wake the node: {e}"))?;
                    match answer.recv_timeout(HANGUP_ANSWER_TIMEOUT) {
                        // The loop logged it.
                        Ok(control::Answer::Reload(_)) => Ok(()),
                        _ => Err("the node did not answer".to_owned()),
                    }
                })();
                if let Err(why) = outcome {
                    warn!("SIGHUP: reload refused: {why}; the running configuration stays");
                }
                HANGUP_RELOADING.store(false, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            HANGUP_RELOADING.store(false, Ordering::SeqCst);
            warn!("SIGHUP: cannot start the reload thread: {e}");
        }
    }
}

/// The address a service listens on with a socket of its own: entries and
/// direct services.
fn own_listen(s: &ServiceSpec) -> Option<SocketAddr> {
    match (s.mode, s.half) {
        (Mode::Direct, _) => s.listen,
        (Mode::Forward | Mode::Push, h) if h != Half::Exit => s.listen,
        _ => None,
    }
}

/// Whether a service is a router entry (it owns a TUN device).
/// A router entry, or an L3 exit: a service with a TUN device.
fn router_entry(s: &ServiceSpec) -> bool {
    s.tun.is_some()
}

/// `Err` naming the first key whose change needs a restart.
fn restart_only(old: &Config, new: &Config) -> Result<(), String> {
    let restart = |key: &str, what: &str| {
        Err(format!(
            "key `{key}` changed: {what} cannot change live; restart the node"
        ))
    };
    if old.private_key.public_key() != new.private_key.public_key() {
        return restart("private_key", "the node's own key");
    }
    if old.listen != new.listen {
        return restart("listen", "the link socket's address");
    }
    if old.control_socket != new.control_socket {
        return restart("control_socket", "the control socket");
    }
    if old.control_group != new.control_group {
        return restart("control_group", "the control socket's group");
    }
    if old.metrics_listen != new.metrics_listen {
        return restart("metrics_listen", "the metrics address");
    }
    let ids = old.services.iter().chain(&new.services).map(|s| s.id);
    for id in ids {
        let (a, b) = (
            old.services.iter().find(|s| s.id == id),
            new.services.iter().find(|s| s.id == id),
        );
        if let (Some(a), Some(b)) = (a, b) {
            if a.buffer != b.buffer {
                return Err(format!(
                    "service {id}: key `buffer` changed: a push entry's outage buffer (and \
                     what it holds) cannot change live; restart the node"
                ));
            }
        }
        let involved = a.is_some_and(router_entry) || b.is_some_and(router_entry);
        if involved && a != b {
            return Err(format!(
                "service {id}: key `tun`: a router entry or L3 exit (its TUN device) cannot \
                 be added, removed or changed live; restart the node"
            ));
        }
    }
    Ok(())
}

/// The one line `sdt reload` prints.
fn summary_line(file: &str, s: &ReloadSummary) -> String {
    format!(
        "reloaded {file}: peers {} added, {} removed, {} rekeyed, {} updated; \
         services {} added, {} removed, {} changed; {} channels closed",
        s.peers_added,
        s.peers_removed,
        s.peers_rekeyed,
        s.peers_updated,
        s.services_added,
        s.services_removed,
        s.services_updated + s.services_replaced,
        s.channels_closed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(services: &str) -> Config {
        let text = format!(
            "private_key = \"PK3Mg5mtzaZg01iHo6jetW2iRmGw8wcq3R62VpY3V18=\"\n\
             [[peer]]\nname = \"y\"\n\
             public_key = \"ilBDt2h5t5o+gVqwZl1rAVIey7RR5X1XgsRZOIHSCFw=\"\n{services}"
        );
        Config::parse(&text, Path::new("/nonexistent/x.toml")).unwrap()
    }

    fn push(id: u8, buffer: &str) -> String {
        format!(
            "[[service]]\nid = {id}\npeer = \"y\"\nmode = \"push\"\n\
             listen = \"127.0.0.1:{}\"\n{buffer}\n",
            500 + u16::from(id)
        )
    }

    #[test]
    fn a_kept_push_entry_keeps_its_buffer() {
        let with = |size: &str| push(1, &format!("buffer = \"{size}\""));
        let running = config(&with("4MiB"));
        assert_eq!(restart_only(&running, &config(&with("4MiB"))), Ok(()));
        for changed in [with("8MiB"), push(1, "")] {
            let why = restart_only(&running, &config(&changed)).unwrap_err();
            assert!(why.contains("service 1: key `buffer` changed"), "{why}");
        }
        let why = restart_only(&config(&push(1, "")), &running).unwrap_err();
        assert!(why.contains("key `buffer`"), "{why}");
        // Added or removed with its service: live.
        let added = format!("{}{}", with("4MiB"), push(2, "buffer = \"1MiB\""));
        assert_eq!(restart_only(&running, &config(&added)), Ok(()));
        assert_eq!(restart_only(&config(&added), &running), Ok(()));
    }
}
