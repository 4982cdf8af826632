//! The rolling PCAP ring for critical segments.
//!
//! Not built yet: issue #4 fills this crate with the writer thread, rotation by size and age,
//! retention by total bytes or file count (oldest first), crash-safe naming and extraction by
//! flow and time. It exports nothing today, so no caller can mistake it for a working ring.
