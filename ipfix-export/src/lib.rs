//! IPFIX (RFC 7011) export for the probe.
//!
//! The crate has a sans-IO core and thin transports:
//! - [`FlowRecord`] is the data model of one exported flow, independent of the wire;
//! - [`template`] fixes the record layouts (IPv4/IPv6, millisecond/nanosecond times) once, so
//!   encoding a record is a run of fixed-offset stores with no allocation;
//! - [`MessageEncoder`] packs records into messages no larger than the MTU, with template sets,
//!   export time and per-observation-domain sequence numbers; time is a parameter, output is bytes;
//! - [`sampling`] states packet sampling to collectors in an options record (RFC 5477);
//! - [`transport`] parses collector URLs and sends finished messages over UDP.
//!
//! The crate knows nothing about packets, AF_XDP or pcap files.

pub mod encoder;
pub mod ie;
pub mod record;
pub mod sampling;
pub mod template;
pub mod transport;

pub use encoder::{EncoderConfig, EncoderStats, MessageEncoder};
pub use record::{EndReason, FlowRecord, TimePrecision};
pub use sampling::{Sampling, SelectorAlgorithm};
pub use transport::{Destination, Pacer, UdpSender};

/// IPFIX protocol version number carried in every message header.
pub const IPFIX_VERSION: u16 = 10;
/// Length of the IPFIX message header (RFC 7011 §3.1).
pub const MESSAGE_HEADER_LEN: usize = 16;
/// Length of a set header (RFC 7011 §3.3.2).
pub const SET_HEADER_LEN: usize = 4;
/// Set ID of a template set.
pub const TEMPLATE_SET_ID: u16 = 2;
