//! IPFIX (RFC 7011) export for the probe.
//!
//! The crate has a sans-IO core and thin transports:
//! - [`FlowRecord`] is the data model of one exported flow, independent of the wire;
//! - [`template`] fixes the record layouts (IPv4/IPv6, millisecond/nanosecond times) once, so
//!   encoding a record is a run of fixed-offset stores with no allocation;
//! - [`MessageEncoder`] packs records into messages no larger than the MTU, with template sets,
//!   export time and per-observation-domain sequence numbers; time is a parameter, output is bytes;
//! - [`options`] tells collectors how complete the data is: statistics and the sampling selector
//!   as options records (RFC 7011 §4, RFC 5477);
//! - [`netflow`] encodes the same records as NetFlow v9 and v5 for older collectors;
//! - the transports: [`udp`], [`stream`] (TCP and SCTP, from a background thread with a bounded
//!   backlog) and [`file`] (RFC 5655 files, rotated);
//! - [`spool`]: a bounded on-disk queue per destination, so records survive an absent collector
//!   and a restart of the probe;
//! - [`exporter`] sends every record to every [`Destination`], each with its own encoder.
//!
//! The crate knows nothing about packets, AF_XDP or pcap files.
//!
//! The transports (`udp`, `stream`, `tls`, `file`, `destination`, `exporter`) are the default
//! feature `io`. Without it the crate is the data model and the encoders alone, with no
//! thread, channel, socket or file and no dependency but `thiserror`: what a sans-IO core
//! that produces [`FlowRecord`]s may depend on (`tests/tests/layout.rs` checks the tree).

pub mod aggregate;
pub mod app;
pub mod backlog;
#[cfg(feature = "io")]
pub mod destination;
pub mod encoder;
#[cfg(feature = "io")]
pub mod exporter;
#[cfg(feature = "io")]
pub mod file;
pub mod ie;
pub mod netflow;
pub mod options;
pub mod record;
#[cfg(feature = "io")]
pub mod spool;
#[cfg(feature = "io")]
pub mod stream;
pub mod template;
#[cfg(feature = "io")]
pub mod tls;
#[cfg(feature = "io")]
pub mod udp;

pub use backlog::{Backlog, Priority};
#[cfg(feature = "io")]
pub use destination::{Destination, FileSpec, Target};
pub use encoder::{
    EncoderConfig, EncoderStats, Message, MessageEncoder, Statistics, TemplatePrelude,
};
#[cfg(feature = "io")]
pub use exporter::{DestinationReport, Exporter, ExporterConfig, ExporterError};
pub use options::{FlowTotals, MeteringCounts, Sampling, SelectorAlgorithm};
pub use record::{
    Aggregate, AppRecord, CommunityId, EndReason, FlowRecord, Kept, Reverse, Text, TimePrecision,
    Tunnel,
};
#[cfg(feature = "io")]
pub use spool::{SpoolPolicy, SpoolSpec, SpoolStats};
#[cfg(feature = "io")]
pub use tls::{TlsClient, TlsError, TlsSettings};
#[cfg(feature = "io")]
pub use udp::{Pacer, UdpSender};

/// IPFIX protocol version number carried in every message header.
pub const IPFIX_VERSION: u16 = 10;
/// Length of the IPFIX message header (RFC 7011 §3.1).
pub const MESSAGE_HEADER_LEN: usize = 16;
/// Length of a set header (RFC 7011 §3.3.2).
pub const SET_HEADER_LEN: usize = 4;
/// Set ID of a template set.
pub const TEMPLATE_SET_ID: u16 = 2;
