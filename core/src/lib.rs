//! The protocol core of sdt, the secure datagram tunnel.
//!
//! This crate decides everything and does no I/O. It is `#![no_std]`, uses no
//! heap, reads no clock and draws no OS randomness: time comes in as an
//! [`Instant`] argument and randomness from a caller-supplied `rand_core`
//! CSPRNG. Runtimes (the mio daemon, the smoltcp runtime, the turmoil
//! simulation) feed it datagrams and timeouts and carry out what it returns.
//!
//! Layers, bottom up:
//! - [`wire`]: zero-copy views ([`wire::DataPacket`], ...) and parsed
//!   representations of every frame on the link; the byte layouts are
//!   documented there.
//! - [`key`]: X25519 keys and pre-shared keys in WireGuard's base64 text form.
//! - [`noise`]: the Noise `IKpsk2_25519_ChaChaPoly_BLAKE2s` handshake.
//! - [`replay`]: the sliding anti-replay window for data frame counters.
//! - [`rate`]: token buckets that bound handshakes and channel creation.
//! - [`tai64`]: handshake timestamps that make replayed initiations useless.
//! - [`link`]: the encrypted link to many peers: handshakes, sessions,
//!   timers, roaming and the counted reasons for every dropped datagram.
//! - [`channel`]: the fixed-capacity table of each service's channels, found
//!   by client address, by channel number or by id, with per-service LRU
//!   order for eviction.
//! - [`mtu`]: the largest customer datagram one link frame carries, from
//!   the peer's link MTU (no IP fragmentation of link frames by default).
//! - [`node`]: the services a node carries over its link, in all four
//!   modes (direct, forward, push, router), with their counters.
//!
//! Router mode, beside the link:
//! - [`ip`]: UDP datagrams read out of the IP packets of a TUN device, and
//!   IP/UDP packets forged around payloads coming out of the tunnel (header
//!   layouts and checksums are smoltcp's).
//! - [`allow`]: the allow-list of networks and ports a router exit may send
//!   to.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod allow;
pub mod channel;
pub mod crypto;
pub mod ip;
pub mod key;
pub mod link;
pub mod mtu;
pub mod node;
pub mod noise;
pub mod outbox;
pub mod rate;
pub mod replay;
pub mod tai64;
pub mod time;
pub mod wire;

pub use time::Instant;
