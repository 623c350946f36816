//! The `sdt` command line.
//!
//! ```text
//! sdt genkey              print a new private key
//! sdt pubkey < x.key      print the public key of the private key on stdin
//! sdt genpsk              print a new pre-shared key
//! sdt check -c x.toml     validate a configuration file
//! sdt run -c x.toml       run a node
//! sdt status -c x.toml    print a running node's state (--json for machines;
//!                         --channels [--limit N] [--sort idle|age|traffic]
//!                         lists each service's open channels)
//! sdt reload -c x.toml    apply a changed configuration to the running node
//!                         (as SIGHUP does): kept peers keep their sessions,
//!                         unchanged services their channels
//! sdt status              one summary line for every node under /run/sdt
//!                         (--dir DIR: another directory)
//! sdt demo                a self-contained tunnel on loopback
//! sdt completions SHELL   print a bash, zsh, fish, elvish or powershell completion script
//! sdt man                 print the manual page sdt(1) (roff)
//! ```
//!
//! Keys are printed in WireGuard's text form (base64) followed by a newline,
//! so `sdt genkey | sdt pubkey` and `wg genkey | sdt pubkey` both work.
//!
//! Logs go to stderr through `tracing`: warnings by default, `-v` for info,
//! `-vv` for debug, `-vvv` for trace; `RUST_LOG` (env-filter syntax, e.g.
//! `RUST_LOG=sdt=debug`) adds per-module directives.
//!
//! # Exit status
//!
//! - 0 ([`EXIT_OK`]): success.
//! - 1 ([`EXIT_CONFIG`]): configuration or usage error: a bad configuration
//!   file or key file, a bad key on stdin, bad arguments. One line
//!   `sdt: FILE:LINE: key `KEY`: message` (or shorter) goes to stderr.
//! - 2 ([`EXIT_RUNTIME`]): runtime error: the system failed us (no OS
//!   randomness, stdin or stdout unusable, ...).
//!
//! Bad input never panics.

use std::fmt;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, CommandFactory, Parser, Subcommand};
use rand_core::{OsRng, RngCore};
use sdt_core::key::{KeyError, PresharedKey, PrivateKey, KEY_LEN};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use zeroize::{Zeroize, Zeroizing};

use crate::config::{Config, ConfigError};
use crate::daemon::{
    query_channels, query_status, request_reload, ControlError, Daemon, Options, RunError,
};
use crate::demo::{self, DemoError};
use crate::status::{ChannelQuery, ChannelSort};

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: configuration or usage error.
pub const EXIT_CONFIG: u8 = 1;
/// Exit status: runtime error.
pub const EXIT_RUNTIME: u8 = 2;

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  configuration or usage error (bad config or key file, bad key on stdin, bad arguments,
     a reload the node refused)
  2  runtime error (the system failed: a port in use, no TUN permission, a control socket
     that cannot be served, no node answering `sdt status` or a busy one, a failed demo,
     no OS randomness, stdin or stdout unusable, ...)";

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "sdt",
    version,
    about = "sdt, the secure datagram tunnel",
    long_about = "sdt, the secure datagram tunnel: two nodes hold one encrypted, \
                  authenticated UDP link and carry ordinary programs' datagrams across it. \
                  Keys use WireGuard's base64 text form.",
    after_help = EXIT_STATUS_HELP
)]
pub struct Cli {
    /// More log output on stderr: -v info (services, addresses, rekeys),
    /// -vv debug (every drop, rate limited), -vvv trace. By default:
    /// warnings, and for `sdt run` session changes and the first drop of
    /// each reason too. RUST_LOG adds env-filter directives.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// How log lines on stderr are written: `text` for people, `json` for
    /// log shippers (one object per line with timestamp, level, target,
    /// message and the event's fields; a command's error line too).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The format of log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event (ANSI colours on a terminal).
    Text,
    /// One JSON object per line ([`crate::logfmt`]).
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a new private key (base64, from OS randomness).
    Genkey,
    /// Read a private key on stdin and print its public key.
    Pubkey,
    /// Print a new pre-shared key (base64, from OS randomness).
    Genpsk,
    /// Load and validate a configuration file, key files included.
    ///
    /// Prints "FILE: ok, N peers, M services" on success; on failure prints
    /// one line "sdt: FILE:LINE: key `KEY`: message" to stderr and exits 1.
    /// An endpoint name that does not resolve now is no failure (`run`
    /// keeps trying it): a warning on stderr says so.
    Check {
        /// The configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run a node from a configuration file until SIGINT or SIGTERM
    /// (SIGHUP reloads the file, as `sdt reload` does).
    ///
    /// Once every socket is bound it sends READY=1 to $NOTIFY_SOCKET, if
    /// set (systemd's Type=notify; see contrib/systemd/sdt@.service).
    ///
    /// Logs go to stderr: by default warnings, session changes (session
    /// up and down, peer stale or restarted, reloads) and the first drop of
    /// each reason; -v adds services started and stopped and rekeys; -vv
    /// every dropped datagram with its reason, peer and service, at most 5
    /// lines per reason in 10 s and then one "suppressed K similar" line.
    /// --log-format json writes one JSON object per line
    /// (docs/logging.md).
    Run {
        /// The configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Apply a changed configuration file to the running node, like `wg
    /// syncconf`: kept peers keep their sessions, unchanged services their
    /// channels; added ones start, removed ones stop.
    ///
    /// The node re-reads and validates FILE as `sdt check` does. On success
    /// prints one summary line; a file that does not validate, or that
    /// changes a key needing a restart (private_key, listen,
    /// control_socket, control_group, metrics_listen, a router entry's
    /// TUN device), is refused whole with one line "sdt: FILE...", the
    /// running configuration stays, and the exit status is 1. SIGHUP does
    /// the same with the node's own file.
    Reload {
        /// The configuration file to apply (its `control_socket` names the
        /// node).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print the live state of a running node: peers, services, channels,
    /// drops by reason.
    ///
    /// Without -c or --socket: one summary line for every node whose
    /// control socket is in /run/sdt (or --dir DIR); exits 2 if one of
    /// them did not answer.
    #[command(group = clap::ArgGroup::new("node").args(["config", "socket"]))]
    Status {
        /// The running node's configuration file (only its
        /// `control_socket` is read).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The control socket, instead of a configuration file.
        #[arg(long, value_name = "PATH", conflicts_with = "config")]
        socket: Option<PathBuf>,
        /// Without -c or --socket: list the nodes whose control sockets
        /// (`*.sock`) are in DIR.
        #[arg(long, value_name = "DIR", conflicts_with = "node", default_value = crate::config::DEFAULT_CONTROL_DIR)]
        dir: PathBuf,
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Also show rates (datagrams/s and bytes/s per peer and service),
        /// from two snapshots one second apart.
        #[arg(long, requires = "node", conflicts_with = "channels")]
        rate: bool,
        /// List the open channels of each service instead: client (entry)
        /// or the exit socket and its target, channel number, peer, age,
        /// idle time, datagrams each way.
        #[arg(long, requires = "node")]
        channels: bool,
        /// With --channels: list at most N channels per service (1 to
        /// 1000).
        #[arg(
            long,
            value_name = "N",
            requires = "channels",
            default_value_t = crate::status::DEFAULT_CHANNEL_LIMIT as u16,
            value_parser = clap::value_parser!(u16).range(1..=crate::status::MAX_CHANNEL_LIMIT as i64)
        )]
        limit: u16,
        /// With --channels: the order, before the limit cuts the list
        /// (idle: longest idle first; age: oldest first; traffic: most
        /// datagrams first).
        #[arg(long, value_enum, requires = "channels", default_value_t = ChannelSort::Traffic)]
        sort: ChannelSort,
    },
    /// Print a shell completion script.
    ///
    /// bash: `sdt completions bash > /usr/share/bash-completion/completions/sdt`;
    /// zsh: `sdt completions zsh > _sdt` in a directory on $fpath;
    /// fish: `sdt completions fish > ~/.config/fish/completions/sdt.fish`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page sdt(1) in roff, generated from this command
    /// line, or with --dir write it and one page per subcommand
    /// (sdt-run(1), ...): `sdt man --dir /usr/local/share/man/man1`.
    Man {
        /// Write sdt.1 and sdt-SUBCOMMAND.1 into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run a self-contained tunnel on loopback: two nodes with fresh keys, a
    /// forward, a push and a direct service; print what crossed, latency and
    /// throughput. Needs no root and no config.
    Demo {
        /// Seconds of each throughput run.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
}

/// Why a command failed; [`CliError::exit_code`] maps it to the exit status.
#[derive(Debug)]
#[non_exhaustive]
pub enum CliError {
    /// The configuration was refused.
    Config(ConfigError),
    /// The key on stdin was refused.
    StdinKey(KeyError),
    /// Reading stdin failed.
    Stdin(io::Error),
    /// Writing stdout failed.
    Stdout(io::Error),
    /// The OS could not give randomness.
    Random(rand_core::Error),
    /// The node could not start or failed.
    Run(RunError),
    /// No answer from a node's control socket.
    Control(ControlError),
    /// The demo failed.
    Demo(DemoError),
    /// Writing a file (a manual page) failed.
    Write(PathBuf, io::Error),
    /// The node refused a reload: its one-line reason (a `FILE:LINE: key
    /// ...` error as `sdt check` prints it, or a key needing a restart).
    Reload(String),
    /// `sdt status` listing nodes: this many of them did not answer (each
    /// is named in the listing).
    NodesFailed(usize, usize),
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::StdinKey(_) | CliError::Reload(_) => EXIT_CONFIG,
            CliError::Stdin(_)
            | CliError::Stdout(_)
            | CliError::Random(_)
            | CliError::Run(_)
            | CliError::Control(_)
            | CliError::Demo(_)
            | CliError::Write(..)
            | CliError::NodesFailed(..) => EXIT_RUNTIME,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Config(e) => write!(f, "{e}"),
            CliError::StdinKey(e) => write!(f, "stdin: {e}"),
            CliError::Stdin(e) => write!(f, "stdin: {e}"),
            CliError::Stdout(e) => write!(f, "stdout: {e}"),
            CliError::Random(e) => write!(f, "cannot get OS randomness: {e}"),
            CliError::Run(e) => write!(f, "{e}"),
            CliError::Control(e) => write!(f, "{e}"),
            CliError::Reload(why) => write!(f, "{why}"),
            CliError::Demo(e) => write!(f, "{e}"),
            CliError::Write(p, e) => write!(f, "{}: {e}", p.display()),
            CliError::NodesFailed(n, of) => write!(f, "{n} of {of} nodes did not answer"),
        }
    }
}

impl std::error::Error for CliError {}

/// Parses the process's arguments, runs the command and returns its exit
/// status. Errors are printed as one line on stderr, prefixed `sdt: `.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors; everything else clap
            // refuses is a usage error (clap's own default would be 2).
            return ExitCode::from(if e.use_stderr() { EXIT_CONFIG } else { EXIT_OK });
        }
    };
    let daemon = matches!(cli.command, Command::Run { .. });
    let log = init_logging(cli.verbose, cli.log_format, daemon);
    let result = run(&cli.command);
    if let Err(e) = &result {
        tracing::debug!(error = ?e, "command failed");
    }
    // Every log line is out before the error line, and before exit.
    if let Some(log) = log {
        log.finish();
    }
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            let line = match cli.log_format {
                LogFormat::Text => format!("sdt: {e}"),
                LogFormat::Json => crate::logfmt::json_line("ERROR", "sdt", &e.to_string()),
            };
            let _ = writeln!(io::stderr(), "{line}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// What `sdt run` logs by default beyond warnings: session changes
/// (`sdt::session`, rekeys aside) and the first drop of each reason
/// (`sdt::drop`), docs/logging.md.
const DAEMON_DEFAULTS: [&str; 3] = [
    "sdt::session=info",
    "sdt::session::rekey=warn",
    "sdt::drop=info",
];

/// Sets up `tracing` to stderr, written by a thread of its own
/// ([`crate::logfmt::Background`], to be finished before exit) so that no
/// caller waits for stderr; `daemon` (`sdt run`) adds the daemon's default
/// targets. Quietly does nothing if a subscriber is already set (as in
/// tests).
pub fn init_logging(
    verbose: u8,
    format: LogFormat,
    daemon: bool,
) -> Option<crate::logfmt::Background> {
    let level = match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let mut filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    if verbose > 0 {
        filter = filter.add_directive(level.into());
    } else if daemon && std::env::var_os(EnvFilter::DEFAULT_ENV).is_none() {
        for d in DAEMON_DEFAULTS {
            if let Ok(d) = d.parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    let json = format == LogFormat::Json;
    let background = crate::logfmt::Background::start(json);
    let writer = match &background {
        Some(b) => BoxMakeWriter::new(b.writer()),
        None => BoxMakeWriter::new(io::stderr),
    };
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let set = match format {
        LogFormat::Text => fmt.with_ansi(io::stderr().is_terminal()).try_init(),
        LogFormat::Json => fmt
            .with_ansi(false)
            .event_format(crate::logfmt::Json)
            .try_init(),
    };
    // Without a subscriber of ours, the thread has nothing to write.
    set.ok().and(background)
}

/// Runs one command, writing its output to stdout.
pub fn run(command: &Command) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    match command {
        Command::Genkey => {
            let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
            OsRng
                .try_fill_bytes(&mut *bytes)
                .map_err(CliError::Random)?;
            let key = PrivateKey::from_bytes(*bytes);
            print_secret(&mut out, &key)
        }
        Command::Genpsk => {
            let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
            OsRng
                .try_fill_bytes(&mut *bytes)
                .map_err(CliError::Random)?;
            let key = PresharedKey::from_bytes(*bytes);
            print_secret(&mut out, &key)
        }
        Command::Pubkey => {
            let key = read_private_key_from(io::stdin().lock())?;
            writeln!(out, "{}", key.public_key())
                .and_then(|()| out.flush())
                .map_err(CliError::Stdout)
        }
        Command::Check { config } => {
            let cfg = Config::load(config).map_err(CliError::Config)?;
            for p in cfg.peers.iter().filter(|p| p.endpoint.is_none()) {
                if let Some(name) = &p.endpoint_name {
                    eprintln!(
                        "sdt: warning: peer {}: endpoint {name} does not resolve now; \
                         sdt run keeps trying it",
                        p.name
                    );
                }
            }
            writeln!(
                out,
                "{}: ok, {}, {}",
                config.display(),
                plural(cfg.peers.len(), "peer"),
                plural(cfg.services.len(), "service")
            )
            .and_then(|()| out.flush())
            .map_err(CliError::Stdout)
        }
        Command::Run { config } => {
            let cfg = Config::load(config).map_err(CliError::Config)?;
            let options = Options {
                control_socket: true,
                handle_signals: true,
            };
            let daemon = Daemon::start(cfg, options).map_err(CliError::Run)?;
            notify_ready(daemon.link_addr());
            daemon.wait().map_err(CliError::Run)
        }
        Command::Reload { config } => {
            let path = Config::control_socket_of(config).map_err(CliError::Config)?;
            let summary = request_reload(&path, config).map_err(|e| match e {
                // Busy, stopping, no answer: the node's trouble, not the
                // file's.
                ControlError::Refused(why)
                    if why.starts_with("busy")
                        || why.starts_with("the node")
                        || why.starts_with("cannot wake") =>
                {
                    CliError::Control(ControlError::Refused(why))
                }
                ControlError::Refused(why) => CliError::Reload(why),
                other => CliError::Control(other),
            })?;
            out.write_all(summary.as_bytes())
                .and_then(|()| out.flush())
                .map_err(CliError::Stdout)
        }
        Command::Status {
            config: None,
            socket: None,
            dir,
            json,
            ..
        } => {
            let (text, failed) = list_nodes(dir, *json);
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(CliError::Stdout)?;
            match failed {
                (0, _) => Ok(()),
                (n, of) => Err(CliError::NodesFailed(n, of)),
            }
        }
        Command::Status {
            config,
            socket,
            json,
            rate,
            channels,
            limit,
            sort,
            ..
        } => {
            let path = match (socket, config) {
                (Some(p), _) => p.clone(),
                (None, Some(c)) => Config::control_socket_of(c).map_err(CliError::Config)?,
                // Matched by the listing above.
                (None, None) => return Ok(()),
            };
            let text = if *channels {
                let query = ChannelQuery {
                    limit: usize::from(*limit),
                    sort: *sort,
                };
                query_channels(&path, query, *json)
            } else if *rate {
                status_with_rates(&path, *json)
            } else {
                query_status(&path, *json)
            }
            .map_err(CliError::Control)?;
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(CliError::Stdout)
        }
        Command::Completions { shell } => {
            // Generated into memory first: clap_complete panics when its
            // writer fails (stdout closed), and bad output never panics.
            let mut text = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "sdt", &mut text);
            out.write_all(&text)
                .and_then(|()| out.flush())
                .map_err(CliError::Stdout)
        }
        Command::Man { dir: None } => {
            let (_, text) = man_pages().swap_remove(0);
            out.write_all(&text)
                .and_then(|()| out.flush())
                .map_err(CliError::Stdout)
        }
        Command::Man { dir: Some(dir) } => {
            for (name, text) in man_pages() {
                let path = dir.join(name);
                std::fs::write(&path, text).map_err(|e| CliError::Write(path.clone(), e))?;
                writeln!(out, "{}", path.display()).map_err(CliError::Stdout)?;
            }
            out.flush().map_err(CliError::Stdout)
        }
        Command::Demo { seconds } => demo::run(*seconds, &mut out).map_err(CliError::Demo),
    }
}

/// The time between the two snapshots of `sdt status --rate`.
const RATE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// `sdt status --rate`: two snapshots [`RATE_INTERVAL`] apart, the second
/// shown with the rates of change since the first.
fn status_with_rates(path: &std::path::Path, json: bool) -> Result<String, ControlError> {
    let snapshot = || {
        query_status(path, true).and_then(|j| {
            serde_json::from_str::<crate::status::Status>(&j)
                .map_err(|e| ControlError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))
        })
    };
    let first = snapshot()?;
    std::thread::sleep(RATE_INTERVAL);
    let mut second = snapshot()?;
    second.add_rates(&first);
    Ok(if json {
        serde_json::to_string_pretty(&second).unwrap_or_default() + "\n"
    } else {
        second.to_string()
    })
}

/// `sdt status` without a node: every control socket (`*.sock`, a socket)
/// in `dir`, in name order, each asked for its status and summed up in one
/// line (text), or `[{"socket": PATH, "status": {...}}, ...]` (JSON; a node
/// that did not answer has `"error"` instead of `"status"`). Returns the
/// output and (how many did not answer, how many were asked).
fn list_nodes(dir: &std::path::Path, json: bool) -> (String, (usize, usize)) {
    use std::os::unix::fs::FileTypeExt;
    let mut sockets: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .collect();
    sockets.sort();
    let mut failed = 0;
    let mut text = String::new();
    let mut list = Vec::new();
    for path in &sockets {
        let answer = query_status(path, true).and_then(|j| {
            serde_json::from_str::<crate::status::Status>(&j)
                .map_err(|e| ControlError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))
        });
        let shown = path.display().to_string();
        match answer {
            Ok(status) => {
                text += &format!("{shown}: {}\n", status.summary());
                list.push(serde_json::json!({ "socket": shown, "status": status }));
            }
            Err(e) => {
                failed += 1;
                text += &format!("{shown}: {e}\n");
                list.push(serde_json::json!({ "socket": shown, "error": e.to_string() }));
            }
        }
    }
    if json {
        text = serde_json::to_string_pretty(&list).unwrap_or_default() + "\n";
    } else if sockets.is_empty() {
        text = format!("no node: no control socket in {}\n", dir.display());
    }
    (text, (failed, sockets.len()))
}

/// Tells a service manager (systemd's `Type=notify`) that the node is up:
/// `READY=1` and a status line on `$NOTIFY_SOCKET` ([`crate::notify`]).
/// [`Daemon::start`] returns only once every socket is bound (link,
/// services, control socket; TUN devices open) and registered with the loop
/// thread, which then runs, so whatever is ordered after this unit finds
/// the ports served. Without `$NOTIFY_SOCKET` it does nothing. A failed
/// send is logged, not fatal: the node works, and systemd reports the start
/// as timed out.
fn notify_ready(link_addr: std::net::SocketAddr) {
    let state = format!("READY=1\nSTATUS=listening on {link_addr}\n");
    if let Err(e) = crate::notify::notify(&state) {
        tracing::error!("cannot tell the service manager the node is ready: {e}");
    }
}

/// The manual pages, file name and roff text: sdt(1) first, then one per
/// subcommand, which sdt(1)'s SUBCOMMANDS section names. clap_mangen's
/// section for `after_help` (the exit statuses) is titled EXTRA; it is
/// renamed to the usual EXIT STATUS.
fn man_pages() -> Vec<(String, Vec<u8>)> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let render = |c: &clap::Command| {
        let man = clap_mangen::Man::new(c.clone());
        let mut text = Vec::new();
        // Rendering into memory cannot fail.
        let _ = man.render(&mut text);
        let text =
            String::from_utf8_lossy(&text).replace("\n.SH EXTRA\n", "\n.SH \"EXIT STATUS\"\n");
        (man.get_filename(), text.into_bytes())
    };
    let mut pages = vec![render(&cmd)];
    pages.extend(
        cmd.get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(render),
    );
    pages
}

/// Reads one private key (WireGuard text form, surrounding whitespace
/// ignored) from `input`, reading at most a few KiB.
pub fn read_private_key_from(input: impl Read) -> Result<PrivateKey, CliError> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(64));
    input
        .take(4096)
        .read_to_end(&mut bytes)
        .map_err(CliError::Stdin)?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| CliError::StdinKey(KeyError::InvalidBase64))?;
    text.parse().map_err(CliError::StdinKey)
}

/// Writes a secret's text form and a newline without leaving a copy behind.
fn print_secret(out: &mut impl Write, key: &impl fmt::Display) -> Result<(), CliError> {
    let mut text = Zeroizing::new(String::with_capacity(64));
    // Writing to a String cannot fail.
    let _ = fmt::write(&mut *text, format_args!("{key}\n"));
    let result = out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CliError::Stdout);
    text.zeroize();
    result
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_documents_exit_statuses() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit status:"), "{help}");
        assert!(help.contains("1  configuration or usage error"), "{help}");
        assert!(help.contains("2  runtime error"), "{help}");
    }

    #[test]
    fn private_key_from_text() {
        let key = PrivateKey::from_bytes([7; 32]);
        let read = read_private_key_from(format!("{key}\n").as_bytes()).unwrap();
        assert_eq!(read, key);
        assert!(matches!(
            read_private_key_from(&b"nope\n"[..]),
            Err(CliError::StdinKey(KeyError::WrongLength))
        ));
        assert!(matches!(
            read_private_key_from(&[0xffu8, 0xfe][..]),
            Err(CliError::StdinKey(KeyError::InvalidBase64))
        ));
        assert!(matches!(
            read_private_key_from(&b""[..]),
            Err(CliError::StdinKey(_))
        ));
    }

    #[test]
    fn plural_words() {
        assert_eq!(plural(0, "peer"), "0 peers");
        assert_eq!(plural(1, "peer"), "1 peer");
        assert_eq!(plural(2, "service"), "2 services");
    }
}
