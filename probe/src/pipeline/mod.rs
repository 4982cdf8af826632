//! What every job runs frames through, from a source's frames to the exporter and the ring.
//!
//! - [`topology`]: one hop (decode and meter on the source's thread) or fan-out (decoders hand
//!   summaries to metering workers by the flow's symmetric hash), and the workers' start;
//! - [`handoff`]: the fan-out's wait-free rings from decoders to workers;
//! - [`worker`]: the metering worker thread (a core `FlowMeter` and its record shipping);
//! - [`exporter`]: the exporter thread (every destination, statistics, JSON lines), with
//!   [`anonymize`] (Crypto-PAn) applied to what it sends;
//! - [`ring_keeper`]: the PCAP selection's decisions, the bounded queue to the ring writer;
//! - [`books`]: the end-of-run report, printed and as JSON.
//!
//! May use: `sys` and the core. Knows no source (live queues or files feed it through
//! [`topology`]) and no command line: its settings are plain structs such as
//! [`topology::MeterConfig`] and [`exporter::ExportConfig`].

pub mod anonymize;
pub mod books;
pub mod exporter;
pub mod handoff;
pub mod ring_keeper;
pub mod topology;
pub mod worker;
