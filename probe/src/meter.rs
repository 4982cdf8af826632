//! The worker's sans-IO core: frames and timestamps in, flow records out, every frame booked.
//!
//! The same `Meter` serves capture files (where packet timestamps are the clock) and, next,
//! AF_XDP queues. It owns its flow cache and fragment table, takes no locks and allocates
//! nothing per packet: expired records accumulate in a vector the caller drains in batches.

use crate::flow::{CacheConfig, FlowCache, FragmentTable};
use crate::wire::{self, FilterReason, FrameSummary, LinkType, MalformedReason, NotMetered};
use ipfix_export::{FlowRecord, TimePrecision};

/// How every frame handed to the meter was accounted for.
/// `read == metered + filtered + malformed` always holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameBooks {
    pub read: u64,
    pub metered: u64,
    pub filtered: [u64; FilterReason::ALL.len()],
    pub malformed: [u64; MalformedReason::ALL.len()],
}

impl FrameBooks {
    /// Adds another worker's books.
    pub fn merge(&mut self, o: &FrameBooks) {
        self.read += o.read;
        self.metered += o.metered;
        for (a, b) in self.filtered.iter_mut().zip(o.filtered) {
            *a += b;
        }
        for (a, b) in self.malformed.iter_mut().zip(o.malformed) {
            *a += b;
        }
    }
    pub fn filtered_total(&self) -> u64 {
        self.filtered.iter().sum()
    }
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }
    pub fn balanced(&self) -> bool {
        self.read == self.metered + self.filtered_total() + self.malformed_total()
    }
    pub fn filtered_by(&self, r: FilterReason) -> u64 {
        self.filtered[r as usize]
    }
    pub fn malformed_by(&self, r: MalformedReason) -> u64 {
        self.malformed[r as usize]
    }
}

/// Fragment-table tunables.
#[derive(Clone, Debug)]
pub struct FragmentConfig {
    pub capacity: usize,
    pub timeout_ns: u64,
}

impl Default for FragmentConfig {
    fn default() -> Self {
        FragmentConfig {
            capacity: 4096,
            timeout_ns: 30_000_000_000,
        }
    }
}

pub struct Meter {
    cache: FlowCache,
    fragments: FragmentTable,
    summary: FrameSummary,
    /// The newest timestamp seen: the clock that drives expiry.
    clock_ns: u64,
    books: FrameBooks,
    records: Vec<FlowRecord>,
}

impl Meter {
    pub fn new(cache: CacheConfig, fragments: FragmentConfig) -> Meter {
        Meter {
            cache: FlowCache::new(cache),
            fragments: FragmentTable::new(fragments.capacity, fragments.timeout_ns),
            summary: FrameSummary::default(),
            clock_ns: 0,
            books: FrameBooks::default(),
            records: Vec::with_capacity(1024),
        }
    }

    pub fn books(&self) -> FrameBooks {
        self.books
    }

    pub fn cache(&self) -> &FlowCache {
        &self.cache
    }

    pub fn fragments(&self) -> &FragmentTable {
        &self.fragments
    }

    pub fn set_time_precision(&mut self, p: TimePrecision) {
        self.cache.set_time_precision(p);
    }

    /// Meters one frame. `link` is `None` when the source cannot say how to decode it.
    /// Returns the frame's summary when it was metered (for the PCAP selection).
    #[inline]
    pub fn process(
        &mut self,
        link: Option<LinkType>,
        frame: &[u8],
        ts_ns: u64,
    ) -> Option<&FrameSummary> {
        self.books.read += 1;
        if ts_ns > self.clock_ns {
            self.clock_ns = ts_ns;
            self.cache.expire(ts_ns, &mut self.records);
        }
        let Some(link) = link else {
            self.books.filtered[FilterReason::UnsupportedLinkType as usize] += 1;
            return None;
        };
        match wire::decode_frame(link, frame, &mut self.summary) {
            Ok(()) => {
                if let Some(frag) = self.summary.fragment {
                    self.fragments
                        .process(frag, &mut self.summary, self.clock_ns);
                }
                self.cache.update(&self.summary, ts_ns, &mut self.records);
                self.books.metered += 1;
                Some(&self.summary)
            }
            Err(NotMetered::Filtered(r)) => {
                self.books.filtered[r as usize] += 1;
                None
            }
            Err(NotMetered::Malformed(r)) => {
                self.books.malformed[r as usize] += 1;
                None
            }
        }
    }

    /// Moves the clock to `now_ns` without a packet, expiring what is due: a live source calls
    /// this when its queue is quiet, so idle flows leave on time. Earlier times are ignored.
    pub fn advance(&mut self, now_ns: u64) {
        if now_ns > self.clock_ns {
            self.clock_ns = now_ns;
            self.cache.expire(now_ns, &mut self.records);
        }
    }

    /// Records waiting to be drained.
    pub fn pending(&self) -> usize {
        self.records.len()
    }

    /// Takes the waiting records, leaving an empty vector of the same capacity behind.
    pub fn take_records(&mut self) -> Vec<FlowRecord> {
        let cap = self.records.capacity();
        std::mem::replace(&mut self.records, Vec::with_capacity(cap))
    }

    /// End of input: every flow is exported with forcedEnd.
    pub fn finish(&mut self) {
        self.cache.finish(&mut self.records);
        self.fragments.finish();
    }
}
