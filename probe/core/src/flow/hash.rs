//! The symmetric flow hash: the same for both directions of a connection, so a fan-out can
//! give both to one metering worker and the PCAP selection can mark a flow once for both.

use super::FlowKey;
use crate::wire::FrameSummary;

/// One 64-bit word per direction's endpoint, mixed so that nearby addresses spread.
#[inline(always)]
fn endpoint(addr: &[u8; 16], port: u16) -> u64 {
    let a = u64::from_ne_bytes(addr[..8].try_into().unwrap());
    let b = u64::from_ne_bytes(addr[8..].try_into().unwrap());
    mix(a ^ mix(b ^ port as u64))
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
pub fn symmetric_hash(s: &FrameSummary) -> u64 {
    let k = FlowKey::of(s, false);
    let icmp = matches!(k.protocol, 1 | 58);
    let (sp, dp) = if icmp {
        (0, 0)
    } else {
        (k.src_port, k.dst_port)
    };
    let ends = endpoint(&k.src_addr, sp).wrapping_add(endpoint(&k.dst_addr, dp));
    mix(ends ^ (k.protocol as u64) << 56 ^ (k.segment_kind as u64) << 48 ^ k.segment as u64)
}
