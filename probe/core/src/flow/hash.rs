//! The symmetric flow hash: the same for both directions of a connection, so a fan-out can
//! give both to one metering worker and the PCAP selection can mark a flow once for both.
//!
//! It is keyed ([`HashKey`], random per run, chosen by the caller): the finalizer is
//! invertible, so with a known key anyone who crafts addresses could choose which worker each
//! of their flows lands on and pile a flood onto one worker. The key enters each endpoint's
//! word before it is mixed, so no choice of addresses lines flows up without knowing it.

use super::FlowKey;
use crate::wire::FrameSummary;

/// The secret of [`symmetric_hash`]: 128 random bits per run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKey(pub [u64; 2]);

impl HashKey {
    /// A key known to all (tests and reproducible benchmarks only: anyone can steer it).
    pub const FIXED: HashKey = HashKey([0, 0]);
}

/// One 64-bit word per direction's endpoint, mixed so that nearby addresses spread.
#[inline(always)]
fn endpoint(addr: &[u8; 16], port: u16, key: &HashKey) -> u64 {
    let a = u64::from_ne_bytes(addr[..8].try_into().unwrap());
    let b = u64::from_ne_bytes(addr[8..].try_into().unwrap());
    mix(a ^ key.0[0] ^ mix(b ^ key.0[1] ^ port as u64))
}

/// A 64-bit finalizer (the one of SplitMix64): every input bit moves every output bit.
#[inline(always)]
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The hash that picks a summary's worker: the same for both directions of a flow. It covers
/// what both directions share: the two endpoints (added, so their order does not matter), the
/// protocol and the tunnel segment. VLAN ids are left out (a SPAN port may tag each direction
/// differently); ICMP's type and code too (a request and its reply differ).
#[inline]
pub fn symmetric_hash(s: &FrameSummary, key: &HashKey) -> u64 {
    let k = FlowKey::of(s, false);
    let icmp = matches!(k.protocol, 1 | 58);
    let (sp, dp) = if icmp {
        (0, 0)
    } else {
        (k.src_port, k.dst_port)
    };
    let ends = endpoint(&k.src_addr, sp, key).wrapping_add(endpoint(&k.dst_addr, dp, key));
    mix(ends ^ (k.protocol as u64) << 56 ^ (k.segment_kind as u64) << 48 ^ k.segment as u64)
}

/// The worker, of `workers`, that owns a summary with hash `hash` (the hash's high bits,
/// scaled: no division).
#[inline(always)]
pub fn worker_of(hash: u64, workers: usize) -> usize {
    ((hash as u128 * workers as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(src: u32, sport: u16) -> FrameSummary {
        let mut s = FrameSummary {
            ip_version: 4,
            protocol: 17,
            src_port: sport,
            dst_port: 53,
            ..Default::default()
        };
        s.src_addr[..4].copy_from_slice(&src.to_be_bytes());
        s.dst_addr[..4].copy_from_slice(&[192, 0, 2, 1]);
        s
    }

    #[test]
    fn flows_crafted_onto_one_worker_under_a_known_key_spread_under_a_secret_one() {
        // What an attacker who knows the key does: search sources until 2,000 flows all land
        // on worker 0 of 4.
        let crafted: Vec<FrameSummary> = (0..)
            .map(|i: u32| udp(0x0a00_0000 | i, 1024 + (i % 50_000) as u16))
            .filter(|s| worker_of(symmetric_hash(s, &HashKey::FIXED), 4) == 0)
            .take(2000)
            .collect();
        // Under keys it cannot know they spread like any flows: 500 a worker, give or take
        // (binomial sd 19; the bounds are 5 sd).
        for key in [
            HashKey([0x9e37_79b9_7f4a_7c15, 0xd1b5_4a32_d192_ed03]),
            HashKey([1, 0]),
            HashKey([0, 1 << 40]),
        ] {
            let mut per = [0u32; 4];
            for s in &crafted {
                per[worker_of(symmetric_hash(s, &key), 4)] += 1;
            }
            assert!(
                per.iter().all(|&n| (405..=595).contains(&n)),
                "{key:?}: {per:?}"
            );
        }
    }

    #[test]
    fn both_directions_hash_alike_under_any_key() {
        let key = HashKey([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);
        let fwd = udp(0x0a00_0001, 40_000);
        let mut rev = fwd;
        std::mem::swap(&mut rev.src_addr, &mut rev.dst_addr);
        std::mem::swap(&mut rev.src_port, &mut rev.dst_port);
        assert_eq!(symmetric_hash(&fwd, &key), symmetric_hash(&rev, &key));
        assert_ne!(
            symmetric_hash(&fwd, &key),
            symmetric_hash(&fwd, &HashKey::FIXED)
        );
    }
}
