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
//! - [`addr`]: the small address grammars of the configuration: router
//!   allow-list rules and TUN interface addresses.
//! - [`cli`]: the `sdt` command line and its exit statuses.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod cli;
pub mod config;
pub mod keyfile;
