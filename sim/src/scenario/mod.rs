//! Scenarios: a mode, a cast of customers, traffic, and the faults to inject,
//! all drawn from the seed.
//!
//! - [`cast`]: the hosts of every run and their ports;
//! - [`setup`]: the data model of one run ([`Setup`]);
//! - [`faults`]: what can go wrong in it;
//! - [`bounds`]: how fast it must recover, derived from core's timers;
//! - [`families`]: how setups are drawn from a seed;
//! - [`catalogue`]: the named scenarios ([`SCENARIOS`]).
//!
//! Everything is re-exported here, so `crate::scenario::Setup` and the like
//! name it wherever it lives.

pub mod bounds;
pub mod cast;
pub mod catalogue;
pub mod families;
pub mod faults;
pub mod setup;

pub use bounds::{resend_spacing, Heal};
pub use cast::*;
pub use catalogue::{find, Scenario, SCENARIOS};
pub use families::{
    start_offset_ms, Draw, RESTART_PHASES, RESTART_STEP, START_OFFSETS, START_STEP,
};
pub use faults::*;
pub use setup::{Roles, Setup, Traffic};
