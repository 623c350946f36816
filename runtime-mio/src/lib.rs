//! `sdt`, the secure datagram tunnel on real hosts: configuration, key files
//! and the command-line interface around [`sdt_core`].
//!
//! The binary (`src/main.rs`) is a thin shell over [`cli::main`]; everything
//! that can be tested lives here:
//! - [`config`]: the node's TOML configuration, loaded into typed, validated
//!   structs ([`config::Config`]), with errors that name the file, the line
//!   and the key.
//! - [`keyfile`]: private key and pre-shared key files, refused when other
//!   users could read them.
//! - [`addr`]: TUN interface addresses.
//! - [`build`]: the configuration turned into core's node.
//! - [`daemon`]: the node on one mio event loop: sockets, TUN devices, the
//!   control socket, signals.
//! - [`status`]: the live state `sdt status` prints.
//! - `demo` (private to the crate): `sdt demo`, a self-contained tunnel on
//!   loopback, run through [`cli`].
//! - [`loopback`]: what `sdt demo`, `sdt-bench` and the integration tests
//!   share: nodes on loopback in one process, an echo server, pings and
//!   throughput runs. Public only because those other targets use it; it
//!   is no interface for embedding programs.
//! - [`notify`]: `READY=1` to systemd (`Type=notify`) once a node runs.
//! - [`logfmt`]: `--log-format json`, one JSON object per log line.
//! - [`cli`]: the `sdt` command line and its exit statuses.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod build;
pub mod cli;
pub mod config;
pub mod daemon;
pub(crate) mod demo;
pub mod keyfile;
pub mod logfmt;
pub mod loopback;
pub mod notify;
pub mod status;
