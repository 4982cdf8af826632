//! The flow cache's index: flow hash to slab position, by open addressing.
//!
//! Why not `hashbrown::HashTable`: at 100,000 flows and more, a packet's flow lookup is two
//! cache misses (the index slot, then the flow's node), and they were half of `probe read`'s
//! time. Hiding them takes prefetching both a few packets ahead, which needs the address of a
//! key's slot before the lookup; hashbrown does not expose it. Here the slot of a hash is
//! `slots[hash & mask]`, computable from the hash alone.
//!
//! Layout: one `u64` per slot, the low 32 bits of the hash above the slab position, so a probe
//! rejects most non-matching slots without touching their nodes, and growing never has to hash
//! a key again. Linear probing keeps a probe sequence within one or two cache lines (eight
//! slots a line); the table doubles when three quarters full, and removal shifts later entries
//! back instead of leaving tombstones, so lookups stay short in a cache that churns for months.

use super::memory::{advise_reserved, Advise};

/// A free slot: no flow has position `u32::MAX` (it is the cache's list terminator).
const EMPTY: u64 = u64::MAX;
/// Smallest table, in slots.
const MIN_SLOTS: usize = 1024;

pub struct FlowIndex {
    slots: Vec<u64>,
    mask: usize,
    len: usize,
    advise: Option<Advise>,
}

#[inline(always)]
fn slot_of(hash: u64, pos: u32) -> u64 {
    (hash as u32 as u64) << 32 | pos as u64
}

#[inline(always)]
fn position(slot: u64) -> u32 {
    slot as u32
}

#[inline(always)]
fn tag(slot: u64) -> u32 {
    (slot >> 32) as u32
}

impl Default for FlowIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl FlowIndex {
    pub fn new() -> FlowIndex {
        Self::with_advice(None)
    }

    /// An index that tells `advise` of each table it reserves as it grows.
    pub fn with_advice(advise: Option<Advise>) -> FlowIndex {
        FlowIndex {
            slots: vec![EMPTY; MIN_SLOTS],
            mask: MIN_SLOTS - 1,
            len: 0,
            advise,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots allocated.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u64>()
    }

    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        hash as u32 as usize & self.mask
    }

    /// Asks the CPU to bring the first slot of `hash` into cache. A hint: never faults, never
    /// changes anything.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        prefetch(&self.slots[self.home(hash)] as *const u64 as *const u8);
    }

    /// The position stored under `hash` for which `is_it` holds.
    #[inline]
    pub fn find(&self, hash: u64, mut is_it: impl FnMut(u32) -> bool) -> Option<u32> {
        let want = hash as u32;
        let mut i = self.home(hash);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if tag(s) == want && is_it(position(s)) {
                return Some(position(s));
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Stores `pos` under `hash`; the caller knows no equal key is stored.
    pub fn insert(&mut self, hash: u64, pos: u32) {
        debug_assert_ne!(pos, u32::MAX);
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        self.place(slot_of(hash, pos));
        self.len += 1;
    }

    fn place(&mut self, slot: u64) {
        let mut i = tag(slot) as usize & self.mask;
        while self.slots[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = slot;
    }

    fn grow(&mut self) {
        let bigger = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, Vec::with_capacity(bigger));
        advise_reserved(self.advise, &self.slots);
        self.slots.resize(bigger, EMPTY);
        self.mask = bigger - 1;
        for s in old.into_iter().filter(|&s| s != EMPTY) {
            self.place(s);
        }
    }

    /// Removes position `pos`, stored under `hash`. Returns whether it was there.
    pub fn remove(&mut self, hash: u64, pos: u32) -> bool {
        let mut hole = self.home(hash);
        loop {
            let s = self.slots[hole];
            if s == EMPTY {
                return false;
            }
            if position(s) == pos {
                break;
            }
            hole = (hole + 1) & self.mask;
        }
        // Backward shift: an entry further along the run moves into the hole when the hole
        // lies between its home slot and where it sits, so every entry stays reachable from
        // its home without crossing an empty slot.
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let s = self.slots[j];
            if s == EMPTY {
                break;
            }
            let home = tag(s) as usize & self.mask;
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
        true
    }
}

/// Brings the cache line holding `p` towards the core. A hint only: any address is fine.
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: prefetching is a hint and never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A weak hash, so runs, wrap-around and tag collisions happen often.
    fn h(k: u32) -> u64 {
        (k as u64 % 1021).wrapping_mul(0x9e37_79b9) ^ ((k as u64) << 40)
    }

    #[test]
    fn agrees_with_a_hash_map_through_inserts_removes_and_growth() {
        let mut ix = FlowIndex::new();
        let mut truth: HashMap<u32, u32> = HashMap::new();
        let mut state = 0x1234_5678_u64;
        for step in 0..200_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let k = (state % 5_000) as u32;
            let found = ix.find(h(k), |p| truth.get(&k) == Some(&p));
            assert_eq!(found, truth.get(&k).copied(), "step {step} key {k}");
            match found {
                Some(p) if state & 1 == 0 => {
                    assert!(ix.remove(h(k), p));
                    truth.remove(&k);
                }
                None => {
                    ix.insert(h(k), k + 7);
                    truth.insert(k, k + 7);
                }
                _ => {}
            }
            assert_eq!(ix.len(), truth.len());
        }
        for (&k, &p) in &truth {
            assert_eq!(ix.find(h(k), |q| q == p), Some(p));
        }
        assert!(ix.capacity() * 3 >= ix.len() * 4);
    }

    #[test]
    fn removing_what_is_not_there_changes_nothing() {
        let mut ix = FlowIndex::new();
        ix.insert(5, 1);
        assert!(!ix.remove(5, 2));
        assert!(!ix.remove(6, 1));
        assert_eq!(ix.find(5, |p| p == 1), Some(1));
        assert_eq!(ix.len(), 1);
    }
}
