//! The probe: frames in, IPFIX flow records out.
//!
//! - [`wire`]: zero-copy decoders from link layer to transport header;
//! - [`flow`]: the flow cache (one per metering worker) and fragment table;
//! - [`meter`]: the sans-IO core that ties them together and keeps the books: a [`meter::Decoder`]
//!   (frames to summaries) and a [`meter::FlowMeter`] (summaries to records), or both in one;
//! - [`handoff`]: the fan-out's queues from decoders to metering workers, by a symmetric flow
//!   hash; [`metering`], the metering worker; [`stages`], one hop or fan-out for a source;
//! - [`cpus`]: the affinity mask (default worker count) and pinning;
//! - [`capture_file`]: the pcap/pcapng reader;
//! - [`config`]: `--config FILE` (TOML whose keys are the long option names) and its checks;
//! - [`collector_url`]: `--ipfix` URLs (UDP, TCP, SCTP, files, NetFlow v9/v5);
//! - [`anonymize`]: Crypto-PAn prefix-preserving anonymization of exported addresses;
//! - [`export`]: the exporter thread (every destination, statistics, JSON lines);
//! - [`live`]: `probe capture`, XDP steering, one AF_XDP RX thread per queue;
//! - [`offline`]: `probe read`, the capture-file pipeline, and [`progress`], its progress line;
//! - [`privileges`]: `--user`/`--group`, giving up root once capture is set up;
//! - [`report`]: the end-of-run books, printed and as JSON;
//! - [`signals`]: SIGINT/SIGTERM end a run cleanly.

pub mod anonymize;
pub mod app;
pub mod capture_file;
pub mod cli;
pub mod collector_url;
pub mod community_id;
pub mod config;
pub mod cpus;
pub mod export;
pub mod extract;
pub mod flow;
pub mod flowlist;
pub mod handoff;
pub mod live;
pub mod mapped;
pub mod meter;
pub mod metering;
pub mod offline;
pub mod privileges;
pub mod progress;
pub mod report;
pub mod ring;
pub mod ringctl;
pub mod select;
pub mod signals;
pub mod stages;
pub mod wire;
