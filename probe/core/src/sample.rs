//! Sampling by address pair (`--sample N --sample-mode flow`, issue #27): every frame of 1 in N
//! pairs of addresses, both directions, chosen by a keyed hash of the innermost packet's
//! addresses.
//!
//! The XDP program makes the choice in the kernel for frames whose innermost packet it can
//! read (the outer packet, or the packet one tunnel layer inside the tunnels `--decap`
//! enables); it passes every other frame up and counts it (`sample_deferred`). The decoder
//! makes the same choice on every frame's innermost addresses with this same function: where
//! the kernel chose already it agrees (the pair is the same), so only the deferred frames are
//! decided here. The two must hash alike bit for bit: `pair_keeps` in `bpf/src/bpf/steer.bpf.c`
//! is this function in C, and both read the address words in the host's byte order.
//!
//! Ports are left out on purpose: a fragment after the first has none, and the pair keeps a
//! datagram's fragments with it. The key is drawn at start, so nobody can craft addresses that
//! are always or never sampled.

use crate::wire::FrameSummary;

/// The choice of 1 in `every` address pairs under `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairSampler {
    pub every: u32,
    pub key: u32,
}

/// The finaliser of MurmurHash3 (as the XDP program computes it).
#[inline]
fn mix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// An address as one 32-bit word: IPv4 as loaded from the packet, IPv6 its four words XORed.
#[inline]
fn word(version: u8, a: &[u8; 16]) -> u32 {
    let w = |i: usize| u32::from_ne_bytes(a[i..i + 4].try_into().unwrap());
    if version == 6 {
        w(0) ^ w(4) ^ w(8) ^ w(12)
    } else {
        w(0)
    }
}

impl PairSampler {
    /// Whether the pair of addresses `(src, dst)` (either order) is sampled in.
    pub fn keeps_pair(&self, a: u32, b: u32) -> bool {
        if self.every <= 1 {
            return true;
        }
        let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
        let h = mix64((lo << 32 | hi) ^ (self.key as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        h.is_multiple_of(self.every as u64)
    }

    /// Whether a decoded frame's innermost packet is sampled in.
    #[inline]
    pub fn keeps(&self, s: &FrameSummary) -> bool {
        self.keeps_pair(
            word(s.ip_version, &s.src_addr),
            word(s.ip_version, &s.dst_addr),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(src: [u8; 4], dst: [u8; 4]) -> FrameSummary {
        let mut s = FrameSummary {
            ip_version: 4,
            ..FrameSummary::default()
        };
        s.src_addr[..4].copy_from_slice(&src);
        s.dst_addr[..4].copy_from_slice(&dst);
        s
    }

    #[test]
    fn both_directions_of_a_pair_share_the_choice_and_about_1_in_n_pairs_are_kept() {
        let p = PairSampler {
            every: 8,
            key: 0x1234_5678,
        };
        let mut kept = 0;
        for i in 0..20_000u32 {
            let a = [10, 0, (i >> 8) as u8, i as u8];
            let b = [10, 1, 0, 1];
            assert_eq!(p.keeps(&summary(a, b)), p.keeps(&summary(b, a)));
            kept += p.keeps(&summary(a, b)) as u32;
        }
        // 20,000 pairs at 1/8: 2,500 expected, standard deviation about 47.
        assert!((2300..2700).contains(&kept), "{kept}");
    }

    #[test]
    fn another_key_chooses_other_pairs() {
        let (p, q) = (
            PairSampler { every: 4, key: 1 },
            PairSampler { every: 4, key: 2 },
        );
        let differ = (0..1000u32)
            .filter(|&i| p.keeps_pair(i, 77) != q.keeps_pair(i, 77))
            .count();
        assert!(differ > 200, "{differ}");
        assert!(PairSampler { every: 1, key: 9 }.keeps_pair(1, 2));
    }
}
