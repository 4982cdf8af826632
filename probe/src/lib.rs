//! The probe: AF_XDP queues or capture files in, IPFIX flow records and a PCAP ring out.
//!
//! The sans-IO core (frame decoding, application parsers, flow cache and meter, selection) is
//! its own crate, `probe_core`; this crate adds everything that touches the machine, in rooms
//! that import only downward (ARCHITECTURE.md has the order; `tests/tests/architecture.rs`
//! holds the code to it):
//!
//! - [`cli`]: the command line, the config file, collector URLs and units; it builds each
//!   job's configuration and is the only room that knows clap;
//! - the jobs: [`live`] (`probe capture`, `probe doctor`), [`files`] (`probe read` and the
//!   capture-file readers), [`tools`] (`probe extract`, `probe ring`);
//! - [`pipeline`]: what every job runs frames through: the decoding and metering stages and
//!   their hand-off, the exporter thread, the ring keeper, the books;
//! - [`sys`]: what the pipeline asks of the operating system: CPUs, privileges, signals,
//!   memory advice for the core's flow tables, the clocks.

pub mod cli;
pub mod files;
pub mod live;
pub mod pipeline;
pub mod sys;
pub mod tools;
