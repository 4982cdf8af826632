//! Which flow directions the parsers have already read: the bound on how many messages are
//! parsed per flow, for the kinds a flow can repeat without end (HTTP requests and responses,
//! DNS over TCP; `Inspector::inspect_payload` says which).
//!
//! The parsers run in the decoder, which has no flow state, so without this every request of
//! a keep-alive connection and every DNS message of a TCP stream would be parsed for as long
//! as the flow lasts, for nothing, since a flow's fields are its first values. Every payload
//! still has its first bytes checked (that is what tells a message from the rest, and costs a
//! few nanoseconds); one that looks like such a message is parsed only if its direction (a
//! hash of its addresses, ports, protocol and VLAN) has not given a fact that ends what it can
//! say (a DNS message, a request other than CONNECT), nor had its first [`MAX_LOOKS`] such
//! messages give none. After [`LOOK_AGAIN_NS`] the direction is read afresh: a long-lived
//! 5-tuple starts new flow records, and they get their fields too.
//!
//! Bounded: [`SLOTS`] entries of 16 bytes (256 KiB per decoder), direct-mapped. A direction
//! whose slot another one took is simply read again (more work, never a lost field); two
//! directions with the same slot and the same 32-bit tag (one chance in 2^32 per new
//! direction) would share their state, so the second could lose its fields for up to
//! [`LOOK_AGAIN_NS`].

use crate::wire::FrameSummary;

/// Entries in the table (a power of two).
pub const SLOTS: usize = 1 << 14;
/// Messages of one direction parsed without a fact before it is left alone.
pub const MAX_LOOKS: u32 = 16;
/// A direction left alone is looked at again after this long.
pub const LOOK_AGAIN_NS: u64 = 1_000_000_000;

#[derive(Clone, Copy, Default)]
struct Entry {
    tag: u32,
    /// Messages parsed since `since_ns`.
    looks: u16,
    /// It gave a fact that ends what it can say.
    done: bool,
    since_ns: u64,
}

/// What to do with a payload packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Look {
    /// Parse it; then [`Looks::looked`] with the slot.
    Parse(usize),
    /// Its direction gave its fact already.
    Done,
    /// Its direction had its [`MAX_LOOKS`] packets without a fact.
    PastBound,
}

pub struct Looks {
    entries: Vec<Entry>,
    /// Messages left alone because their direction was past [`MAX_LOOKS`].
    pub past_bound: u64,
}

impl Default for Looks {
    fn default() -> Self {
        Looks {
            entries: vec![Entry::default(); SLOTS],
            past_bound: 0,
        }
    }
}

impl Looks {
    /// Whether the parsers should look at this packet of `s`'s direction, at `now_ns`.
    #[inline]
    pub fn look(&mut self, s: &FrameSummary, now_ns: u64) -> Look {
        let h = direction_hash(s);
        let slot = h as usize & (SLOTS - 1);
        let tag = (h >> 32) as u32;
        let e = &mut self.entries[slot];
        if e.tag != tag || now_ns.saturating_sub(e.since_ns) > LOOK_AGAIN_NS {
            *e = Entry {
                tag,
                looks: 0,
                done: false,
                since_ns: now_ns,
            };
        }
        if e.done {
            Look::Done
        } else if u32::from(e.looks) >= MAX_LOOKS {
            Look::PastBound
        } else {
            Look::Parse(slot)
        }
    }

    /// The packet [`Self::look`] let through was looked at; `ends`: it gave a fact that ends
    /// what its direction can say.
    #[inline]
    pub fn looked(&mut self, slot: usize, ends: bool) {
        let e = &mut self.entries[slot];
        e.looks = e.looks.saturating_add(1);
        e.done |= ends;
    }
}

/// A hash of a packet's direction: addresses, ports, protocol, VLAN (not symmetric: each
/// direction says its own things).
#[inline]
fn direction_hash(s: &FrameSummary) -> u64 {
    let word = |b: &[u8; 16], i: usize| {
        u64::from_le_bytes([
            b[i],
            b[i + 1],
            b[i + 2],
            b[i + 3],
            b[i + 4],
            b[i + 5],
            b[i + 6],
            b[i + 7],
        ])
    };
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (u64::from(s.src_port) << 48
        | u64::from(s.dst_port) << 32
        | u64::from(s.vlan_id) << 8
        | u64::from(s.protocol))
    .wrapping_mul(K);
    for w in [
        word(&s.src_addr, 0),
        word(&s.src_addr, 8),
        word(&s.dst_addr, 0),
        word(&s.dst_addr, 8),
    ] {
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    h ^ h >> 31
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(port: u16) -> FrameSummary {
        let mut s = FrameSummary::default();
        s.src_addr[15] = 1;
        s.dst_addr[15] = 2;
        s.src_port = port;
        s.dst_port = 443;
        s.protocol = 6;
        s
    }

    #[test]
    fn a_direction_is_left_alone_after_its_fact_or_its_bound_and_looked_at_again_later() {
        let mut l = Looks::default();
        let (a, b) = (summary(40000), summary(40001));
        // `a` gives its fact on the third packet.
        for i in 0..3 {
            let Look::Parse(slot) = l.look(&a, i) else {
                panic!("packet {i} of a")
            };
            l.looked(slot, i == 2);
        }
        assert_eq!(l.look(&a, 10), Look::Done);
        // `b` never gives one: MAX_LOOKS packets, then it is past its bound.
        for i in 0..MAX_LOOKS as u64 {
            let Look::Parse(slot) = l.look(&b, i) else {
                panic!("packet {i} of b")
            };
            l.looked(slot, false);
        }
        assert_eq!(l.look(&b, 100), Look::PastBound);
        // Both are looked at afresh once LOOK_AGAIN_NS has passed.
        assert!(matches!(l.look(&a, LOOK_AGAIN_NS + 10), Look::Parse(_)));
        assert!(matches!(l.look(&b, LOOK_AGAIN_NS + 10), Look::Parse(_)));
        // The reverse direction is another entry.
        let mut r = a;
        std::mem::swap(&mut r.src_addr, &mut r.dst_addr);
        std::mem::swap(&mut r.src_port, &mut r.dst_port);
        assert_ne!(direction_hash(&a), direction_hash(&r));
    }
}
