//! The probe's sans-IO core: what happens to a frame's bytes between the capture and the flow
//! record, as pure computation over bytes and time.
//!
//! - [`wire`]: zero-copy views from the link layer through tunnels to the transport header;
//! - [`app`]: the application parsers (DNS, HTTP, TLS, QUIC) and their per-flow reassembly;
//! - [`flow`]: the flow key and its symmetric hash, the flow cache, fragments and dedup;
//! - [`meter`]: a [`meter::Decoder`] (frames to summaries) and a [`meter::FlowMeter`]
//!   (summaries to records), or both in one [`meter::Meter`], with their books;
//! - [`select`]: the PCAP selection language;
//! - [`community_id`]: Community ID v1 of a record.
//!
//! The boundary, which the compiler keeps: no thread, channel, socket, file, BPF, command line
//! or `anyhow` here (`tests/tests/layout.rs` checks the dependency list); errors are typed.
//! What the core needs from the host it names and the caller brings: the QUIC Initial's
//! ciphers ([`app::quic::InitialCrypto`], the way rustls takes a `CryptoProvider`) and the
//! flow cache's memory advice ([`flow::CacheConfig::advise`]). The `probe` crate adds the
//! sources, the pipeline's threads and the exporter.

pub mod app;
pub mod community_id;
pub mod flow;
pub mod meter;
pub mod sample;
pub mod select;
pub mod wire;
