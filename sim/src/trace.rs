//! The run's trace: one line per event (time, host, what happened), hashed
//! as it is written so two runs can be compared, with the first lines kept
//! for snapshots and the last ones for failure reports.

use std::collections::VecDeque;
use std::time::Duration;

/// FNV-1a, 64 bits: a stable hash (unlike std's `DefaultHasher`, which may
/// change between Rust releases).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Mixes `bytes` in.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash so far.
    pub fn finish(self) -> u64 {
        self.0
    }
}

/// Hashes a few values into a seed: used to derive every RNG of a run from
/// the scenario seed.
pub fn mix(seed: u64, what: &str, n: u64) -> u64 {
    let mut h = Fnv::default();
    h.write(&seed.to_le_bytes());
    h.write(what.as_bytes());
    h.write(&n.to_le_bytes());
    h.finish()
}

/// Lines kept from the start of a run.
pub const HEAD: usize = 400;
/// Lines kept from the end of a run.
pub const TAIL: usize = 60;

/// The trace of one run.
#[derive(Debug, Default)]
pub struct Trace {
    hash: Fnv,
    count: u64,
    head: Vec<String>,
    tail: VecDeque<String>,
    /// Every line, when asked for (`--trace`).
    pub full: Option<Vec<String>>,
}

impl Trace {
    /// Records an event; `bytes` (a frame or payload, may be empty) goes
    /// into the hash but not into the line.
    pub fn record(&mut self, at: Duration, host: &str, what: &str, bytes: &[u8]) {
        let line = format!("{:>9.3} {:<9} {}", at.as_secs_f64(), host, what);
        self.hash.write(line.as_bytes());
        self.hash.write(&[0xff]);
        self.hash.write(bytes);
        self.count += 1;
        if self.head.len() < HEAD {
            self.head.push(line.clone());
        }
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        if let Some(full) = &mut self.full {
            full.push(line.clone());
        }
        self.tail.push_back(line);
    }

    /// The hash of every event so far.
    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// How many events were recorded.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The first lines.
    pub fn head(&self) -> &[String] {
        &self.head
    }

    /// The last lines.
    pub fn tail(&self) -> impl Iterator<Item = &String> {
        self.tail.iter()
    }
}
