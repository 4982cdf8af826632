//! Capture files in: `probe read` (the [`read`] job) and the readers it and the tools share.
//!
//! Owns: the pcap/pcapng reader ([`capture_file`], with gzip and zstd), memory-mapped input
//! ([`mapped`]) and the progress line ([`progress`]). May use: the pipeline, `sys`, the core.
//! Knows nothing of the command line: [`read::ReadConfig`] is built by `cli`.

pub mod capture_file;
pub mod mapped;
pub mod progress;
pub mod read;
