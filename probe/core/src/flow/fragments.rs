//! Carries the ports of an IP datagram's first fragment to its later fragments, so every
//! fragment counts towards its flow without reassembly.
//!
//! The table is bounded: when it is full, expired entries are purged; if it is still full the
//! new datagram is not tracked and that is counted. Later fragments whose first fragment is
//! unknown (lost, late, or not tracked) are metered with ports 0 and counted as unmatched.

use crate::wire::{Fragment, FrameSummary};
use hashbrown::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FragKey {
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    protocol: u8,
}

#[derive(Clone, Copy, Debug)]
struct FragEntry {
    src_port: u16,
    dst_port: u16,
    icmp_type_code: u16,
    seen_ns: u64,
}

/// Counters of the fragment table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FragmentStats {
    /// Fragments metered (first and later ones).
    pub fragments: u64,
    /// Later fragments whose first fragment was not in the table: metered with ports 0.
    pub unmatched: u64,
    /// First fragments not tracked because the table was full of live entries.
    pub table_full: u64,
    /// Entries dropped because their last fragment did not arrive within the timeout.
    pub expired: u64,
}

impl FragmentStats {
    /// Adds another worker's counters.
    pub fn merge(&mut self, o: &FragmentStats) {
        self.fragments += o.fragments;
        self.unmatched += o.unmatched;
        self.table_full += o.table_full;
        self.expired += o.expired;
    }
}

pub struct FragmentTable {
    map: HashMap<FragKey, FragEntry, foldhash::fast::RandomState>,
    capacity: usize,
    timeout_ns: u64,
    next_purge_ns: u64,
    stats: FragmentStats,
}

impl FragmentTable {
    pub fn new(capacity: usize, timeout_ns: u64) -> Self {
        FragmentTable {
            map: HashMap::with_capacity_and_hasher(capacity.min(1 << 16), Default::default()),
            capacity,
            timeout_ns,
            next_purge_ns: 0,
            stats: FragmentStats::default(),
        }
    }

    pub fn stats(&self) -> FragmentStats {
        self.stats
    }

    /// Records or completes the transport fields of a fragment in `s`.
    #[inline]
    pub fn process(&mut self, frag: Fragment, s: &mut FrameSummary, now_ns: u64) {
        self.stats.fragments += 1;
        if now_ns >= self.next_purge_ns {
            self.purge(now_ns);
            self.next_purge_ns = now_ns.saturating_add(self.timeout_ns / 2);
        }
        let key = FragKey {
            src: s.src_addr,
            dst: s.dst_addr,
            id: frag.id,
            protocol: s.protocol,
        };
        if frag.first {
            if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
                self.purge(now_ns);
                if self.map.len() >= self.capacity {
                    self.stats.table_full += 1;
                    return;
                }
            }
            self.map.insert(
                key,
                FragEntry {
                    src_port: s.src_port,
                    dst_port: s.dst_port,
                    icmp_type_code: s.icmp_type_code,
                    seen_ns: now_ns,
                },
            );
            return;
        }
        let entry = if frag.more {
            self.map.get_mut(&key).map(|e| *e)
        } else {
            self.map.remove(&key)
        };
        match entry {
            Some(e) => {
                s.src_port = e.src_port;
                s.dst_port = e.dst_port;
                s.icmp_type_code = e.icmp_type_code;
                if frag.more {
                    if let Some(live) = self.map.get_mut(&key) {
                        live.seen_ns = now_ns;
                    }
                }
            }
            None => self.stats.unmatched += 1,
        }
    }

    fn purge(&mut self, now_ns: u64) {
        let timeout = self.timeout_ns;
        let before = self.map.len();
        self.map
            .retain(|_, e| e.seen_ns.saturating_add(timeout) > now_ns);
        self.stats.expired += (before - self.map.len()) as u64;
    }

    /// At the end of input every datagram still waiting for fragments is incomplete.
    pub fn finish(&mut self) {
        self.stats.expired += self.map.len() as u64;
        self.map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(id: u32, first: bool, more: bool) -> (Fragment, FrameSummary) {
        let mut s = FrameSummary {
            protocol: 17,
            ip_version: 4,
            ..Default::default()
        };
        s.src_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
        if first {
            s.src_port = 1000;
            s.dst_port = 53;
        }
        (Fragment { id, first, more }, s)
    }

    #[test]
    fn later_fragments_get_the_first_fragments_ports() {
        let mut t = FragmentTable::new(4, 30_000_000_000);
        let (f, mut s) = frag(1, true, true);
        t.process(f, &mut s, 0);
        let (f, mut mid) = frag(1, false, true);
        t.process(f, &mut mid, 1);
        let (f, mut last) = frag(1, false, false);
        t.process(f, &mut last, 2);
        assert_eq!((mid.src_port, mid.dst_port), (1000, 53));
        assert_eq!((last.src_port, last.dst_port), (1000, 53));
        // The last fragment removed the entry: a duplicate is unmatched.
        let (f, mut dup) = frag(1, false, false);
        t.process(f, &mut dup, 3);
        assert_eq!(dup.dst_port, 0);
        assert_eq!(
            t.stats(),
            FragmentStats {
                fragments: 4,
                unmatched: 1,
                table_full: 0,
                expired: 0
            }
        );
    }

    #[test]
    fn overflow_and_expiry_are_counted() {
        let mut t = FragmentTable::new(2, 1_000);
        for id in 0..3 {
            let (f, mut s) = frag(id, true, true);
            t.process(f, &mut s, 0);
        }
        assert_eq!(t.stats().table_full, 1);
        // After the timeout the old entries are purged and a new datagram fits.
        let (f, mut s) = frag(9, true, true);
        t.process(f, &mut s, 5_000);
        assert_eq!(t.stats().expired, 2);
        t.finish();
        assert_eq!(t.stats().expired, 3);
    }
}
