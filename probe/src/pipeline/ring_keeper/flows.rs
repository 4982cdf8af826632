//! Flow-aware PCAP selection (issue #15): which flows a name primitive marked, shared by
//! every capture thread, and the lookback buffer that holds each flow's first packets until
//! it is known whether the flow will be marked.
//!
//! Why here and not in the metering workers: the application parsers run in the decoders,
//! on the capture (RX) threads, where the frames are; the workers get summaries and facts,
//! never frames. So the thread that reads a ClientHello marks its flow itself. The other
//! direction of that flow may arrive on another RX queue (asymmetric RSS), read by another
//! thread: the marks are therefore one table all capture threads share, lock-free (a slot is
//! an atomic 64-bit flow hash and an atomic time), looked up once per frame by the flow's
//! symmetric hash, the same hash that picks its metering worker.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Flows marked at once (a power of two); a mark that finds no slot is counted as lost.
pub const MARK_SLOTS: usize = 1 << 16;
/// Slots tried from a flow's hash before giving up.
const PROBES: usize = 16;
/// A marked flow without a packet for this long is forgotten (packet time, seconds).
pub const MARK_IDLE_SECS: u32 = 300;

struct MarkSlot {
    hash: AtomicU64,
    /// Packet time of the flow's last kept packet, in seconds.
    last: AtomicU32,
}

/// The flows name primitives marked, shared by every keeper of a run.
pub struct Marks {
    slots: Box<[MarkSlot]>,
    /// Flows marked, and marks that found no free slot.
    pub marked: AtomicU64,
    pub lost: AtomicU64,
}

impl Default for Marks {
    fn default() -> Self {
        Marks {
            slots: (0..MARK_SLOTS)
                .map(|_| MarkSlot {
                    hash: AtomicU64::new(0),
                    last: AtomicU32::new(0),
                })
                .collect(),
            marked: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        }
    }
}

fn secs(ts_ns: u64) -> u32 {
    (ts_ns / 1_000_000_000) as u32
}

/// 0 means an empty slot.
fn nonzero(h: u64) -> u64 {
    h.max(1)
}

impl Marks {
    /// Marks the flow of symmetric hash `h` at packet time `ts_ns`.
    pub fn mark(&self, h: u64, ts_ns: u64) {
        let (h, now) = (nonzero(h), secs(ts_ns));
        for i in 0..PROBES {
            let slot = &self.slots[(h as usize).wrapping_add(i) & (MARK_SLOTS - 1)];
            let cur = slot.hash.load(Ordering::Acquire);
            if cur == h {
                slot.last.store(now, Ordering::Relaxed);
                return;
            }
            let free =
                cur == 0 || now.saturating_sub(slot.last.load(Ordering::Relaxed)) > MARK_IDLE_SECS;
            if free
                && slot
                    .hash
                    .compare_exchange(cur, h, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                slot.last.store(now, Ordering::Relaxed);
                self.marked.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.lost.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the flow of hash `h` is marked (and not idle); refreshes its time.
    #[inline]
    pub fn contains(&self, h: u64, ts_ns: u64) -> bool {
        let (h, now) = (nonzero(h), secs(ts_ns));
        for i in 0..PROBES {
            let slot = &self.slots[(h as usize).wrapping_add(i) & (MARK_SLOTS - 1)];
            match slot.hash.load(Ordering::Acquire) {
                0 => return false,
                x if x == h => {
                    let last = slot.last.load(Ordering::Relaxed);
                    if now.saturating_sub(last) > MARK_IDLE_SECS {
                        return false;
                    }
                    if now > last {
                        slot.last.store(now, Ordering::Relaxed);
                    }
                    return true;
                }
                _ => {}
            }
        }
        false
    }
}

/// Bytes of frames one keeper's lookback buffer holds; when full, the oldest held frames
/// are evicted (counted).
pub const LOOKBACK_BYTES: usize = 16 << 20;

/// One frame held back.
#[derive(Clone, Copy, Debug)]
pub struct Held {
    /// The flow's symmetric hash; 0 once the frame left (kept or evicted).
    hash: u64,
    pub ts_ns: u64,
    offset: usize,
    len: usize,
    pub orig_len: u32,
}

/// The first packets of every flow, waiting to be kept if the flow gets marked: one byte
/// arena used as a ring (no allocation per frame), frames in arrival order.
pub struct Lookback {
    /// Packets held per flow at most.
    per_flow: u16,
    arena: Vec<u8>,
    /// Where the next frame goes.
    head: usize,
    held: std::collections::VecDeque<Held>,
    /// Frames held per flow (flows whose frames all left are removed).
    counts: hashbrown::HashMap<u64, u16>,
    /// Frames pushed out by newer ones before their flow was marked.
    pub evicted: u64,
    /// Frames kept from the buffer because their flow was marked later.
    pub released: u64,
}

impl Lookback {
    pub fn new(per_flow: u16) -> Lookback {
        Lookback {
            per_flow,
            arena: Vec::new(),
            head: 0,
            held: std::collections::VecDeque::new(),
            counts: hashbrown::HashMap::new(),
            evicted: 0,
            released: 0,
        }
    }

    /// Holds `frame` (already cut to the snap length) if its flow has fewer than N held.
    pub fn hold(&mut self, h: u64, frame: &[u8], ts_ns: u64, orig_len: u32) {
        let h = nonzero(h);
        if frame.len() > LOOKBACK_BYTES / 4 {
            return;
        }
        let n = self.counts.get(&h).copied().unwrap_or(0);
        if n >= self.per_flow {
            return;
        }
        if self.arena.is_empty() {
            self.arena = vec![0; LOOKBACK_BYTES];
        }
        let offset = self.reserve(frame.len());
        self.arena[offset..offset + frame.len()].copy_from_slice(frame);
        self.head = offset + frame.len();
        self.held.push_back(Held {
            hash: h,
            ts_ns,
            offset,
            len: frame.len(),
            orig_len,
        });
        *self.counts.entry(h).or_insert(0) += 1;
    }

    /// Room for `len` bytes: after the newest frame, or at the start when the end is too
    /// close, evicting the oldest frames in the way.
    fn reserve(&mut self, len: usize) -> usize {
        loop {
            let Some(oldest) = self.held.front() else {
                self.head = 0;
                return 0;
            };
            let tail = oldest.offset;
            if self.head > tail {
                // Free: [head, end) and [0, tail).
                if self.arena.len() - self.head >= len {
                    return self.head;
                }
                if tail >= len {
                    return 0;
                }
            } else if tail - self.head >= len {
                return self.head;
            }
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(f) = self.held.pop_front() {
            if f.hash != 0 {
                self.evicted += 1;
                self.forget(f.hash);
            }
        }
    }

    fn forget(&mut self, h: u64) {
        if let Some(c) = self.counts.get_mut(&h) {
            *c -= 1;
            if *c == 0 {
                self.counts.remove(&h);
            }
        }
    }

    /// Whether any frame of flow `h` is held.
    pub fn holds(&self, h: u64) -> bool {
        self.counts.contains_key(&nonzero(h))
    }

    /// Hands every held frame of flow `h`, oldest first, to `keep(ts, bytes, orig_len)`.
    pub fn release(&mut self, h: u64, mut keep: impl FnMut(u64, &[u8], u32)) {
        let h = nonzero(h);
        if !self.counts.contains_key(&h) {
            return;
        }
        for f in self.held.iter_mut().filter(|f| f.hash == h) {
            keep(f.ts_ns, &self.arena[f.offset..f.offset + f.len], f.orig_len);
            f.hash = 0;
            self.released += 1;
        }
        self.counts.remove(&h);
    }

    /// The flows with frames held now (for a sweep against the marks).
    pub fn flows(&self) -> Vec<u64> {
        self.counts.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_found_until_idle_and_a_full_neighbourhood_is_counted() {
        let m = Marks::default();
        let s = 1_000_000_000u64;
        m.mark(42, 10 * s);
        assert!(m.contains(42, 11 * s));
        assert!(!m.contains(43, 11 * s));
        assert!(m.contains(42, (11 + MARK_IDLE_SECS as u64) * s));
        assert!(!m.contains(42, (13 + 2 * MARK_IDLE_SECS as u64) * s));
        // Hashes that all start at the same slot: PROBES fit, the next is lost.
        for i in 0..PROBES as u64 + 1 {
            m.mark(7 + i * MARK_SLOTS as u64, 20 * s);
        }
        assert_eq!(m.lost.load(Ordering::Relaxed), 1);
        // An idle mark's slot is taken again.
        m.mark(7 + 99 * MARK_SLOTS as u64, (21 + MARK_IDLE_SECS as u64) * s);
        assert_eq!(m.lost.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn lookback_holds_n_per_flow_releases_in_order_and_counts_evictions() {
        let mut l = Lookback::new(3);
        for i in 0..5u8 {
            l.hold(1, &[i; 100], i as u64, 100);
            l.hold(2, &[100 + i; 50], 10 + i as u64, 50);
        }
        let mut got = vec![];
        l.release(1, |ts, b, _| got.push((ts, b[0])));
        assert_eq!(got, vec![(0, 0), (1, 1), (2, 2)]);
        assert!(!l.holds(1) && l.holds(2));
        // Fill the arena with other flows' frames: flow 2's go first, counted.
        let big = vec![9u8; LOOKBACK_BYTES / 8];
        for f in 0..20u64 {
            l.hold(100 + f, &big, 100 + f, big.len() as u32);
        }
        let big_held = l.held.iter().filter(|f| f.hash >= 100).count() as u64;
        assert!(big_held >= 7, "{big_held}");
        assert_eq!(
            l.evicted,
            3 + 20 - big_held,
            "flow 2's three frames, then big ones"
        );
        assert!(!l.holds(2));
        let mut n = 0;
        l.release(119, |_, b, _| {
            assert_eq!(b.len(), big.len());
            n += 1
        });
        assert_eq!(n, 1);
        assert_eq!(l.released, 4);
    }
}
