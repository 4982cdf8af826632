//! What the probe asks of the operating system, below everything else in this crate: CPU
//! affinity and pinning ([`cpus`]), giving up root ([`privileges`]), SIGINT/SIGTERM/SIGHUP
//! ([`signals`]), huge-page advice for the core's flow tables ([`memory`]), the clocks
//! ([`clock`]) and random seeds ([`random`]).
//!
//! May use: the core's types only. Nothing here knows a job or the pipeline.

pub mod clock;
pub mod cpus;
pub mod memory;
pub mod privileges;
pub mod random;
pub mod signals;
