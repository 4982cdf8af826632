//! Duplicate detection: the same packet delivered twice by overlapping mirror sessions.
//!
//! A switch that mirrors the ingress of one port and the egress of another, or two switches
//! that mirror the same link, hand the probe each packet twice, a few microseconds apart,
//! usually with a TTL one lower and so a different header checksum, sometimes inside
//! different tunnels. Every count of such a flow doubles. A packet is a duplicate when its
//! innermost IP packet equals one seen within the window, TTL/hop limit and IPv4 header
//! checksum aside.
//!
//! The table is direct-mapped (8,192 slots of a hash and a time, 128 KiB, so it stays in L2):
//! a newer packet with the same slot evicts an older one, so under heavy load a duplicate can
//! go unseen (an undercount, never a false drop: a hit needs all 64 bits of the hash). What
//! is hashed is the IP total length and the first [`HASHED_BYTES`] of the packet: headers,
//! IP id, TCP sequence and acknowledgement numbers and the start of the payload, which tell
//! two different packets apart.

use std::hash::{BuildHasher, Hasher};

/// Bytes of the IP packet hashed.
pub const HASHED_BYTES: usize = 96;
const SLOTS: usize = 8192;

pub struct Dedup {
    window_ns: u64,
    /// (hash, time) per slot; a zero hash is an empty slot.
    slots: Box<[(u64, u64)]>,
    hasher: foldhash::fast::FixedState,
}

impl Dedup {
    pub fn new(window_ns: u64) -> Dedup {
        Dedup {
            window_ns,
            slots: vec![(0, 0); SLOTS].into_boxed_slice(),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed_d00d),
        }
    }

    /// Whether `ip` (an IPv4 or IPv6 packet, as captured) repeats one seen within the window
    /// before or after `ts_ns`; if not, it is remembered.
    #[inline]
    pub fn is_duplicate(&mut self, ip: &[u8], ts_ns: u64) -> bool {
        let mut head = [0u8; HASHED_BYTES];
        let n = ip.len().min(HASHED_BYTES);
        head[..n].copy_from_slice(&ip[..n]);
        match head[0] >> 4 {
            4 => {
                head[8] = 0; // TTL
                head[10] = 0; // header checksum
                head[11] = 0;
            }
            6 => head[7] = 0, // hop limit
            _ => {}
        }
        let mut h = self.hasher.build_hasher();
        h.write(&head);
        h.write_usize(ip.len());
        let hash = h.finish() | 1;
        let slot = &mut self.slots[hash as usize & (SLOTS - 1)];
        if slot.0 == hash && slot.1.abs_diff(ts_ns) <= self.window_ns {
            return true;
        }
        *slot = (hash, ts_ns);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_with_another_ttl_is_a_duplicate_within_the_window_only() {
        let mut ip = vec![0x45, 0, 0, 40, 0x12, 0x34, 0, 0, 64, 6, 0xab, 0xcd];
        ip.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        ip.extend_from_slice(&[0; 20]);
        let mut d = Dedup::new(1_000_000);
        assert!(!d.is_duplicate(&ip, 10_000_000));
        let mut copy = ip.clone();
        copy[8] = 63;
        copy[10] = 0xac;
        assert!(d.is_duplicate(&copy, 10_000_500));
        // Another IP id: another packet.
        copy[5] = 0x35;
        assert!(!d.is_duplicate(&copy, 10_000_600));
        // The same packet again much later: a retransmission, not a mirror copy.
        assert!(!d.is_duplicate(&ip, 20_000_000));
    }
}
