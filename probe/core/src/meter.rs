//! The worker's sans-IO core: frames and timestamps in, flow records out, every frame booked.
//!
//! The same `Meter` serves capture files (where packet timestamps are the clock) and, next,
//! AF_XDP queues. It owns its flow cache and fragment table, takes no locks and allocates
//! nothing per packet: expired records accumulate in a vector the caller drains in batches.
//!
//! Decoded frames reach the flow cache [`LOOKAHEAD`] frames late. With 100,000 flows and
//! more, a flow lookup is two cache misses (the index slot, then the flow's node), about half
//! of all the time a packet took; the wait lets the meter prefetch a frame's slot as it is
//! decoded and its node a few frames later, so both have arrived when the frame is applied. The
//! cache sees exactly the sequence of expiries and updates it would see without the wait: a
//! frame that only moves the clock waits in line too. The frame books are kept at decode
//! time, so they always balance; the cache's own counters lag by at most [`LOOKAHEAD`] frames
//! until [`Meter::advance`] or [`Meter::finish`].

use crate::app::AppFact;
use crate::flow::{CacheConfig, Dedup, FlowCache, FlowKey, FragmentTable};
use crate::wire::{
    self, Decap, FilterReason, FrameSummary, LinkType, MalformedReason, NotMetered, TunnelKind,
};
use ipfix_export::{FlowRecord, TimePrecision};

/// How every frame handed to the meter was accounted for.
/// `read == metered + filtered + malformed + duplicates_dropped + handoff_dropped` always holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameBooks {
    pub read: u64,
    pub metered: u64,
    pub filtered: [u64; FilterReason::ALL.len()],
    pub malformed: [u64; MalformedReason::ALL.len()],
    /// Frames that came through each encapsulation, by [`TunnelKind`] code (a frame in
    /// VXLAN in ERSPAN counts under both), whatever became of them.
    pub encapsulated: [u64; TunnelKind::ALL.len() + 1],
    /// Frames to a tunnel's UDP port whose inside did not decode, metered as the UDP
    /// datagrams they are (`wire::decode_frame`): a port is not proof.
    pub port_not_tunnel: u64,
    /// Frames that repeated a packet seen within the `--dedup` window.
    pub duplicates_seen: u64,
    /// Of those, the ones dropped before metering.
    pub duplicates_dropped: u64,
    /// Frames decoded for metering whose summary was dropped because the hand-off queue to
    /// their metering worker was full (the fan-out; always 0 on the one-hop path).
    pub handoff_dropped: u64,
    /// Bytes of the frames not metered (captured length), and the timestamps of the first
    /// and the last of them (`first > last` while there was none): IPFIX's
    /// ignoredOctetTotalCount and the times RFC 7011 §4.2 reports with it.
    pub not_metered_octets: u64,
    pub not_metered_first_ns: u64,
    pub not_metered_last_ns: u64,
    /// `--app`: hellos that one packet did not hold, put together from several, and those
    /// given up (the reassembly table was full, or the flow went quiet). Not frames: every
    /// frame is booked above either way.
    pub hellos_joined: u64,
    pub hellos_given_up: u64,
    /// `--app`: payloads that looked like a message but were not parsed, because their flow
    /// direction had its first messages parsed without a fact (`app::looks`, the bound per
    /// flow). Not frames lost: they were metered.
    pub app_past_bound: u64,
}

impl Default for FrameBooks {
    fn default() -> Self {
        FrameBooks {
            read: 0,
            metered: 0,
            filtered: Default::default(),
            malformed: Default::default(),
            encapsulated: Default::default(),
            port_not_tunnel: 0,
            duplicates_seen: 0,
            duplicates_dropped: 0,
            handoff_dropped: 0,
            not_metered_octets: 0,
            not_metered_first_ns: u64::MAX,
            not_metered_last_ns: 0,
            hellos_joined: 0,
            hellos_given_up: 0,
            app_past_bound: 0,
        }
    }
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
        for (a, b) in self.encapsulated.iter_mut().zip(o.encapsulated) {
            *a += b;
        }
        self.port_not_tunnel += o.port_not_tunnel;
        self.duplicates_seen += o.duplicates_seen;
        self.duplicates_dropped += o.duplicates_dropped;
        self.handoff_dropped += o.handoff_dropped;
        self.not_metered_octets += o.not_metered_octets;
        self.not_metered_first_ns = self.not_metered_first_ns.min(o.not_metered_first_ns);
        self.not_metered_last_ns = self.not_metered_last_ns.max(o.not_metered_last_ns);
        self.hellos_joined += o.hellos_joined;
        self.hellos_given_up += o.hellos_given_up;
        self.app_past_bound += o.app_past_bound;
    }
    /// The statistics options records' view of these books.
    pub fn metering_counts(&self) -> ipfix_export::MeteringCounts {
        ipfix_export::MeteringCounts {
            observed: self.read,
            not_metered: self.not_metered(),
            not_metered_octets: self.not_metered_octets,
            not_metered_span_ms: self.not_metered_span_ms(),
        }
    }
    /// Unix ms of the first and the last frame not metered, when there was one.
    pub fn not_metered_span_ms(&self) -> Option<(u64, u64)> {
        (self.not_metered_first_ns <= self.not_metered_last_ns).then_some((
            self.not_metered_first_ns / 1_000_000,
            self.not_metered_last_ns / 1_000_000,
        ))
    }
    #[inline]
    fn not_metered_frame(&mut self, len: usize, ts_ns: u64) {
        self.not_metered_octets += len as u64;
        self.not_metered_first_ns = self.not_metered_first_ns.min(ts_ns);
        self.not_metered_last_ns = self.not_metered_last_ns.max(ts_ns);
    }
    pub fn filtered_total(&self) -> u64 {
        self.filtered.iter().sum()
    }
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }
    pub fn balanced(&self) -> bool {
        self.read
            == self.metered
                + self.filtered_total()
                + self.malformed_total()
                + self.duplicates_dropped
                + self.handoff_dropped
    }
    /// Frames read but not metered: filtered, malformed, dropped as duplicates or at the
    /// hand-off.
    pub fn not_metered(&self) -> u64 {
        self.filtered_total()
            + self.malformed_total()
            + self.duplicates_dropped
            + self.handoff_dropped
    }
    pub fn encapsulated_by(&self, k: TunnelKind) -> u64 {
        self.encapsulated[k as usize]
    }
    /// Counts the encapsulations of one frame (a bit per kind).
    #[inline]
    fn count_kinds(&mut self, mut kinds: u16) {
        while kinds != 0 {
            let k = kinds.trailing_zeros() as usize;
            if let Some(c) = self.encapsulated.get_mut(k) {
                *c += 1;
            }
            kinds &= kinds - 1;
        }
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

/// Frames decoded but not yet applied to the flow cache (a power of two). Measured on the
/// benchmark capture (BENCHMARKS.md): 16 hides the misses that 8 did not, longer is no better.
pub const LOOKAHEAD: usize = 16;

/// Records handed on per batch (the exporter's channel takes them in vectors this long); the
/// meter keeps room for a few batches between takes.
pub const RECORD_BATCH: usize = 512;

/// How far behind the newest frame the node prefetch runs: late enough for the frame's index
/// slot to have arrived, early enough to leave the node most of the wait (4 measured a little
/// better than 8).
const NODE_PREFETCH_AT: usize = LOOKAHEAD / 4;

/// Duplicate handling (`--dedup`): detect within a window, and drop or only count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupConfig {
    pub window_ns: u64,
    /// Drop duplicates before metering (else they are metered and only counted).
    pub drop: bool,
}

/// With `--dedup`: counts a frame whose inner IP packet (at `ip_offset`) repeats one seen
/// within the window, and says whether to drop it.
#[inline]
fn drop_duplicate(
    dedup: &mut Option<(Dedup, bool)>,
    books: &mut FrameBooks,
    frame: &[u8],
    ip_offset: usize,
    ts_ns: u64,
) -> bool {
    let Some((dedup, drop)) = dedup else {
        return false;
    };
    let ip = frame.get(ip_offset..).unwrap_or_default();
    if !dedup.is_duplicate(ip, ts_ns) {
        return false;
    }
    books.duplicates_seen += 1;
    *drop
}

/// The first stage: frames in, summaries out, every frame booked. It owns the decoder's
/// settings, the fragment table and the duplicate window, so the packet bytes are looked at
/// once, where they are (an RX thread, or the file reader); the flow cache gets only the
/// summary. Its clock is the newest timestamp seen, metered or not.
pub struct Decoder {
    decap: Decap,
    dedup: Option<(Dedup, bool)>,
    fragments: FragmentTable,
    books: FrameBooks,
    clock_ns: u64,
    ingress_if: u32,
    /// `--app`: the application parsers that run on each metered frame's payload (`None`:
    /// none asked for).
    app: Option<Box<crate::app::Inspector>>,
    /// What the last frame's payload said (see [`Decoder::fact`]).
    fact: Option<AppFact>,
    /// The parsers whose facts reach the flow records (`--app`); the others ran only for
    /// the PCAP selection's name primitives.
    export_app: crate::app::AppSet,
    /// `--ignore` in user space: frames whose innermost addresses match are filtered
    /// (`ignore_list`). The XDP program applies the list first, to the outer addresses and one
    /// tunnel layer deep; this catches what it could not read.
    ignore: Option<crate::select::Selection>,
    /// `--sample-mode flow`: the pair sampler, applied to every frame's innermost addresses
    /// (see [`crate::sample`]: where the kernel chose already, this agrees).
    pair_sampler: Option<crate::sample::PairSampler>,
}

impl Decoder {
    pub fn new(fragments: FragmentConfig) -> Decoder {
        Decoder {
            decap: Decap::all(),
            dedup: None,
            fragments: FragmentTable::new(fragments.capacity, fragments.timeout_ns),
            books: FrameBooks::default(),
            clock_ns: 0,
            ingress_if: 0,
            app: None,
            fact: None,
            export_app: crate::app::AppSet::default(),
            ignore: None,
            pair_sampler: None,
        }
    }

    /// Sampling by address pair (`None`: off, or sampling by frame, which the kernel does
    /// alone).
    pub fn set_pair_sampler(&mut self, sampler: Option<crate::sample::PairSampler>) {
        self.pair_sampler = sampler.filter(|p| p.every > 1);
    }

    /// Frames from or to these prefixes (address, length) are filtered, not metered (an empty
    /// list turns it off).
    pub fn set_ignore(&mut self, prefixes: &[(std::net::IpAddr, u8)]) {
        let text = prefixes
            .iter()
            .map(|(a, l)| format!("net {a}/{l}"))
            .collect::<Vec<_>>()
            .join(" or ");
        self.ignore = (!prefixes.is_empty())
            .then(|| crate::select::Selection::parse(&text).expect("prefixes make a selection"));
    }

    /// Which application parsers run: `export` for the records (`--app`; none by default),
    /// `select` too for the PCAP selection's name primitives (their facts stay out of the
    /// records).
    pub fn set_app(&mut self, export: crate::app::AppSet, select: crate::app::AppSet) {
        let set = export.with(select);
        self.export_app = export;
        self.app = (!set.is_empty()).then(|| Box::new(crate::app::Inspector::new(set)));
    }

    /// What the last frame passed for metering said at the application layer, if anything,
    /// and `--app` exports it.
    #[inline]
    pub fn fact(&self) -> Option<&AppFact> {
        self.fact.as_ref().filter(|f| self.export_app.has(f.kind()))
    }

    /// What the last frame passed for metering said, whether exported or not (for the PCAP
    /// selection).
    #[inline]
    pub fn any_fact(&self) -> Option<&AppFact> {
        self.fact.as_ref()
    }

    /// The ifindex of the interface this decoder's frames come in on (ingressInterface).
    pub fn set_ingress(&mut self, ifindex: u32) {
        self.ingress_if = ifindex;
    }

    /// Which encapsulations are removed (default: all).
    pub fn set_decap(&mut self, decap: Decap) {
        self.decap = decap;
    }

    /// Detect (and perhaps drop) duplicate packets; `None` turns detection off (the default).
    pub fn set_dedup(&mut self, cfg: Option<DedupConfig>) {
        self.dedup = cfg.map(|c| (Dedup::new(c.window_ns), c.drop));
    }

    pub fn books(&self) -> FrameBooks {
        let mut b = self.books;
        if let Some(app) = &self.app {
            let (joined, evicted, expired) = app.reassembly_counts();
            b.hellos_joined = joined;
            b.hellos_given_up = evicted + expired;
            b.app_past_bound = app.past_bound();
        }
        b
    }

    pub fn fragments(&self) -> &FragmentTable {
        &self.fragments
    }

    /// The newest timestamp seen.
    pub fn clock_ns(&self) -> u64 {
        self.clock_ns
    }

    /// Decodes one frame into `s` and books it; true when it is to be metered. `link` is
    /// `None` when the source cannot say how to decode the frame. `s` is written only as far
    /// as the decoder got: read it only when this returns true.
    #[inline]
    pub fn decode(
        &mut self,
        link: Option<LinkType>,
        frame: &[u8],
        ts_ns: u64,
        s: &mut FrameSummary,
    ) -> bool {
        self.books.read += 1;
        if ts_ns > self.clock_ns {
            self.clock_ns = ts_ns;
        }
        let decoded = match link {
            Some(link) => {
                let d = wire::decode_frame(link, frame, &self.decap, s);
                // The summary is fresh only when a decoder ran (a slot is reused).
                if s.tunnel.kinds != 0 {
                    self.books.count_kinds(s.tunnel.kinds);
                }
                d
            }
            None => Err(NotMetered::Filtered(FilterReason::UnsupportedLinkType)),
        };
        let decoded = match decoded {
            Ok(()) if self.ignore.as_ref().is_some_and(|i| i.matches(s)) => {
                Err(NotMetered::Filtered(FilterReason::IgnoreList))
            }
            Ok(()) if self.pair_sampler.is_some_and(|p| !p.keeps(s)) => {
                Err(NotMetered::Filtered(FilterReason::SampledOut))
            }
            d => d,
        };
        match decoded {
            Ok(())
                if drop_duplicate(
                    &mut self.dedup,
                    &mut self.books,
                    frame,
                    s.ip_offset as usize,
                    ts_ns,
                ) =>
            {
                self.books.duplicates_dropped += 1;
            }
            Ok(()) => {
                if let Some(frag) = s.fragment {
                    self.fragments.process(frag, s, self.clock_ns);
                }
                s.ingress_if = self.ingress_if;
                self.books.metered += 1;
                self.books.port_not_tunnel += s.tunnel.port_not_tunnel as u64;
                if let Some(app) = self.app.as_deref_mut() {
                    // Most packets say nothing: then only the tag is written, not a whole
                    // fact (assigning the returned Option copies all 800 bytes, even a None).
                    match app.inspect(frame, s, ts_ns) {
                        Some(f) => self.fact = Some(f),
                        None => self.fact = None,
                    }
                }
                return true;
            }
            Err(NotMetered::Filtered(r)) => self.books.filtered[r as usize] += 1,
            Err(NotMetered::Malformed(r)) => self.books.malformed[r as usize] += 1,
        }
        self.books.not_metered_frame(frame.len(), ts_ns);
        false
    }

    /// A frame this decoder passed for metering never reached a flow cache: the hand-off to
    /// its metering worker was full. It moves from metered to `handoff_dropped`.
    #[inline]
    pub fn handoff_dropped(&mut self, len: usize, ts_ns: u64) {
        self.books.metered -= 1;
        self.books.handoff_dropped += 1;
        self.books.not_metered_frame(len, ts_ns);
    }

    /// `n` frames passed for metering earlier never reached a flow cache (their worker
    /// stopped before taking them; their lengths and times are no longer known).
    pub fn handoff_lost(&mut self, n: u64) {
        self.books.metered -= n;
        self.books.handoff_dropped += n;
    }

    /// End of input.
    pub fn finish(&mut self) {
        self.fragments.finish();
    }
}

/// A decoded frame waiting for the flow cache.
struct Waiting {
    summary: FrameSummary,
    key: FlowKey,
    hash: u64,
    ts_ns: u64,
    /// False for a frame that was not metered and only moves the clock.
    metered: bool,
    /// Its application fact waits in the flow meter's `facts`, at the same slot.
    has_fact: bool,
}

/// The second stage: summaries in, flow records out. It owns the flow cache and applies each
/// summary [`LOOKAHEAD`] summaries late, prefetching meanwhile (see the module doc). A
/// metering worker of the fan-out is one of these; [`Meter`] is one with a [`Decoder`] in
/// front, on one thread.
pub struct FlowMeter {
    cache: FlowCache,
    /// A ring of [`LOOKAHEAD`] frames: `queued` of them, the oldest at `head`.
    waiting: Box<[Waiting]>,
    head: usize,
    queued: usize,
    /// The newest timestamp applied to the flow cache.
    cache_clock_ns: u64,
    /// The newest timestamp queued or applied.
    newest_ns: u64,
    /// Summaries taken (the cache counts flows, not packets).
    summaries: u64,
    records: Vec<FlowRecord>,
    /// Application facts of waiting summaries, by slot (allocated with the first fact).
    facts: Vec<Option<AppFact>>,
}

impl FlowMeter {
    pub fn new(cache: CacheConfig) -> FlowMeter {
        FlowMeter {
            cache: FlowCache::new(cache),
            waiting: (0..LOOKAHEAD)
                .map(|_| Waiting {
                    summary: FrameSummary::default(),
                    key: FlowKey::of(&FrameSummary::default(), true),
                    hash: 0,
                    ts_ns: 0,
                    metered: false,
                    has_fact: false,
                })
                .collect(),
            head: 0,
            queued: 0,
            cache_clock_ns: 0,
            newest_ns: 0,
            summaries: 0,
            records: Vec::with_capacity(1024),
            facts: Vec::new(),
        }
    }

    /// New flow timeouts (a reload).
    pub fn set_timeouts(&mut self, idle_ns: u64, active_ns: u64, tcp_end_grace_ns: u64) {
        self.cache
            .set_timeouts(idle_ns, active_ns, tcp_end_grace_ns);
    }

    /// The flow cache; it has not yet seen the last [`LOOKAHEAD`] summaries.
    pub fn cache(&self) -> &FlowCache {
        &self.cache
    }

    /// Summaries this meter took.
    pub fn summaries(&self) -> u64 {
        self.summaries
    }

    /// Resolution of the timestamps of the summaries that come next; the waiting ones are
    /// applied first, under the resolution they came with.
    pub fn set_time_precision(&mut self, p: TimePrecision) {
        if p != self.cache.time_precision() {
            self.flush();
            self.cache.set_time_precision(p);
        }
    }

    /// The slot the next summary is written into (room is made first).
    #[inline]
    fn next_slot(&mut self) -> usize {
        if self.queued == LOOKAHEAD {
            self.apply_oldest();
        }
        (self.head + self.queued) % LOOKAHEAD
    }

    /// Queues the summary written into `slot`: its key and hash now, its index slot
    /// prefetched, and the node of an earlier one.
    #[inline]
    fn queue_metered(&mut self, slot: usize, ts_ns: u64) {
        let w = &mut self.waiting[slot];
        w.ts_ns = ts_ns;
        self.newest_ns = self.newest_ns.max(ts_ns);
        (w.key, w.hash) = self.cache.key_of(&w.summary);
        w.metered = true;
        w.has_fact = false;
        self.cache.prefetch_slot(w.hash);
        self.queued += 1;
        self.summaries += 1;
        if self.queued > NODE_PREFETCH_AT {
            let mid = (slot + LOOKAHEAD - NODE_PREFETCH_AT) % LOOKAHEAD;
            self.cache.prefetch_node(self.waiting[mid].hash);
        }
    }

    /// Queues a clock move without a packet: the cache expires what is due at `ts_ns`, in turn.
    #[inline]
    fn queue_clock(&mut self, slot: usize, ts_ns: u64) {
        let w = &mut self.waiting[slot];
        w.ts_ns = ts_ns;
        w.metered = false;
        w.has_fact = false;
        self.newest_ns = self.newest_ns.max(ts_ns);
        self.queued += 1;
    }

    /// Takes one summary seen at `ts_ns`, after moving the clock to `clock_ns` (the newest
    /// time its decoder had seen, which expiry must reach before the summary is applied, as
    /// one thread doing both stages would).
    #[inline]
    pub fn push(&mut self, s: &FrameSummary, ts_ns: u64, clock_ns: u64) {
        if clock_ns > ts_ns && clock_ns > self.newest_ns {
            let slot = self.next_slot();
            self.queue_clock(slot, clock_ns);
        }
        let slot = self.next_slot();
        self.waiting[slot].summary = *s;
        self.queue_metered(slot, ts_ns);
    }

    /// [`Self::push`] of a summary whose payload said `fact`.
    #[inline]
    pub fn push_with_fact(&mut self, s: &FrameSummary, ts_ns: u64, clock_ns: u64, fact: &AppFact) {
        self.push(s, ts_ns, clock_ns);
        let slot = (self.head + self.queued - 1) % LOOKAHEAD;
        self.attach_fact(slot, fact);
    }

    /// Gives the summary queued in `slot` its application fact.
    #[inline]
    fn attach_fact(&mut self, slot: usize, fact: &AppFact) {
        if self.facts.is_empty() {
            self.facts = vec![None; LOOKAHEAD];
        }
        self.facts[slot] = Some(*fact);
        self.waiting[slot].has_fact = true;
    }

    /// Moves the clock to `clock_ns` in turn (a decoder's newest time, sent to every worker
    /// now and then so idle flows leave on time whichever worker holds them).
    #[inline]
    pub fn clock(&mut self, clock_ns: u64) {
        if clock_ns > self.newest_ns {
            let slot = self.next_slot();
            self.queue_clock(slot, clock_ns);
        }
    }

    /// Hands the oldest waiting frame to the flow cache: the expiry its time calls for, then
    /// its update.
    #[inline]
    fn apply_oldest(&mut self) {
        let w = &self.waiting[self.head];
        if w.ts_ns > self.cache_clock_ns {
            self.cache_clock_ns = w.ts_ns;
            self.cache.expire(w.ts_ns, &mut self.records);
        }
        if w.metered {
            let idx =
                self.cache
                    .update_keyed(&w.summary, w.key, w.hash, w.ts_ns, &mut self.records);
            if w.has_fact {
                // Read in place (a fact is up to 800 bytes), then cleared.
                if let Some(f) = self.facts[self.head].as_ref() {
                    self.cache.add_app(idx, f);
                }
                self.facts[self.head] = None;
            }
        }
        self.head = (self.head + 1) % LOOKAHEAD;
        self.queued -= 1;
    }

    /// Applies every waiting frame.
    fn flush(&mut self) {
        while self.queued > 0 {
            self.apply_oldest();
        }
    }

    /// Applies the summaries still waiting in the lookahead, with the expiry their times call
    /// for: a reader that is about to wait for input (a pipe) calls this, so records of what it
    /// already read do not wait for frames that have not come.
    pub fn apply_waiting(&mut self) {
        self.flush();
    }

    /// Moves the clock to `now_ns` without a packet, expiring what is due: a live source calls
    /// this when its queue is quiet, so idle flows leave on time. Earlier times are ignored.
    pub fn advance(&mut self, now_ns: u64) {
        self.flush();
        self.newest_ns = self.newest_ns.max(now_ns);
        if now_ns > self.cache_clock_ns {
            self.cache_clock_ns = now_ns;
            self.cache.expire(now_ns, &mut self.records);
        }
    }

    /// Records waiting to be drained.
    pub fn pending(&self) -> usize {
        self.records.len()
    }

    /// Takes the waiting records, leaving an empty vector of the same capacity behind (at
    /// most a few batches': the final flush's records can be the whole cache, whose capacity
    /// is not needed again).
    pub fn take_records(&mut self) -> Vec<FlowRecord> {
        let cap = self.records.capacity().min(4 * RECORD_BATCH);
        std::mem::replace(&mut self.records, Vec::with_capacity(cap))
    }

    /// End of input: every flow is exported with forcedEnd (or endOfFlowDetected).
    pub fn finish(&mut self) {
        self.flush();
        self.cache.finish(&mut self.records);
    }
}

/// Both stages on one thread: what `probe read` with one worker and a live RX queue on the
/// one-hop path run. The decoder writes straight into the flow meter's lookahead slot, so a
/// summary is never copied.
pub struct Meter {
    decoder: Decoder,
    flows: FlowMeter,
}

impl Meter {
    pub fn new(cache: CacheConfig, fragments: FragmentConfig) -> Meter {
        Meter {
            decoder: Decoder::new(fragments),
            flows: FlowMeter::new(cache),
        }
    }

    /// The two stages, set up apart, on one thread.
    pub fn from_stages(decoder: Decoder, flows: FlowMeter) -> Meter {
        Meter { decoder, flows }
    }

    /// See [`Decoder::set_pair_sampler`].
    pub fn set_pair_sampler(&mut self, sampler: Option<crate::sample::PairSampler>) {
        self.decoder.set_pair_sampler(sampler);
    }

    /// See [`Decoder::set_ignore`].
    pub fn set_ignore(&mut self, prefixes: &[(std::net::IpAddr, u8)]) {
        self.decoder.set_ignore(prefixes);
    }

    /// See [`Decoder::set_ingress`].
    pub fn set_ingress(&mut self, ifindex: u32) {
        self.decoder.set_ingress(ifindex);
    }

    /// See [`Decoder::set_app`].
    pub fn set_app(&mut self, export: crate::app::AppSet, select: crate::app::AppSet) {
        self.decoder.set_app(export, select);
    }

    /// New flow timeouts (a reload).
    pub fn set_timeouts(&mut self, idle_ns: u64, active_ns: u64, tcp_end_grace_ns: u64) {
        self.flows
            .set_timeouts(idle_ns, active_ns, tcp_end_grace_ns);
    }

    pub fn books(&self) -> FrameBooks {
        self.decoder.books()
    }

    /// The flow cache; it has not yet seen the last [`LOOKAHEAD`] frames.
    pub fn cache(&self) -> &FlowCache {
        self.flows.cache()
    }

    pub fn fragments(&self) -> &FragmentTable {
        self.decoder.fragments()
    }

    /// Resolution of the timestamps of the frames that come next; the waiting frames are
    /// applied first, under the resolution they came with.
    pub fn set_time_precision(&mut self, p: TimePrecision) {
        self.flows.set_time_precision(p);
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
        let slot = self.meter_frame(link, frame, ts_ns)?;
        Some(&self.flows.waiting[slot].summary)
    }

    /// [`Meter::process`], also giving the frame's application fact (exported or not) to
    /// the PCAP selection.
    #[inline]
    pub fn process_with_fact(
        &mut self,
        link: Option<LinkType>,
        frame: &[u8],
        ts_ns: u64,
    ) -> Option<(&FrameSummary, Option<&AppFact>)> {
        let slot = self.meter_frame(link, frame, ts_ns)?;
        Some((&self.flows.waiting[slot].summary, self.decoder.any_fact()))
    }

    /// Decodes a frame into the lookahead; its slot when it was metered.
    #[inline]
    fn meter_frame(&mut self, link: Option<LinkType>, frame: &[u8], ts_ns: u64) -> Option<usize> {
        let tick = ts_ns > self.decoder.clock_ns();
        let slot = self.flows.next_slot();
        let s = &mut self.flows.waiting[slot].summary;
        if self.decoder.decode(link, frame, ts_ns, s) {
            self.flows.queue_metered(slot, ts_ns);
            if let Some(f) = self.decoder.fact() {
                self.flows.attach_fact(slot, f);
            }
            return Some(slot);
        }
        // Not metered, but a newer timestamp still moves the clock, in turn.
        if tick {
            self.flows.queue_clock(slot, ts_ns);
        }
        None
    }

    /// See [`FlowMeter::apply_waiting`].
    pub fn apply_waiting(&mut self) {
        self.flows.apply_waiting();
    }

    /// See [`FlowMeter::advance`].
    pub fn advance(&mut self, now_ns: u64) {
        self.decoder.clock_ns = self.decoder.clock_ns.max(now_ns);
        self.flows.advance(now_ns);
    }

    /// Records waiting to be drained.
    pub fn pending(&self) -> usize {
        self.flows.pending()
    }

    /// Takes the waiting records, leaving an empty vector of the same capacity behind.
    pub fn take_records(&mut self) -> Vec<FlowRecord> {
        self.flows.take_records()
    }

    /// End of input: every flow is exported with forcedEnd.
    pub fn finish(&mut self) {
        self.flows.finish();
        self.decoder.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use ipfix_export::EndReason;

    const S: u64 = 1_000_000_000;

    #[test]
    fn the_ignore_list_filters_frames_by_their_innermost_addresses() {
        // Hosts 10.0.0.a send to 10.0.1.b; ignoring 10.0.1.3/32 and 10.0.0.0/30 (a = 0..3).
        let mut d = Decoder::new(FragmentConfig::default());
        d.set_ignore(&[
            ("10.0.1.3".parse().unwrap(), 32),
            ("10.0.0.0".parse().unwrap(), 30),
        ]);
        let mut s = FrameSummary::default();
        let mut want_ignored = 0;
        for f in 0..2000u64 {
            let fr = frame(f, 0);
            let decodes =
                wire::decode_frame(LinkType::Ethernet, &fr, &Decap::all(), &mut s).is_ok();
            let (a, b) = ((f % 8) as u8, (f / 8 % 8) as u8);
            if decodes && (a < 4 || b == 3) {
                want_ignored += 1;
            }
            let metered = d.decode(Some(LinkType::Ethernet), &fr, f * 1000, &mut s);
            assert!(!(metered && (a < 4 || b == 3)), "frame {f} metered");
        }
        let b = d.books();
        assert!(want_ignored > 500);
        assert_eq!(b.filtered[FilterReason::IgnoreList as usize], want_ignored);
        assert!(b.balanced());
        // An empty list turns it off.
        d.set_ignore(&[]);
        assert!(d.decode(Some(LinkType::Ethernet), &frame(2, 0), 1, &mut s));
    }

    /// A frame of flow `f` (of 64 hosts and a few ports), TCP with `flags` or UDP, or, for a
    /// few `f`, something that is not metered.
    fn frame(f: u64, flags: u8) -> Vec<u8> {
        let mut v = vec![];
        let (a, b) = ((f % 8) as u8, (f / 8 % 8) as u8);
        let b4 = PacketBuilder::ethernet2([2, 0, 0, 0, 0, a], [2, 0, 0, 0, 0, b]).ipv4(
            [10, 0, 0, a],
            [10, 0, 1, b],
            64 - (f % 5) as u8,
        );
        match f % 23 {
            0 => return vec![0xff; 14], // unsupported ethertype
            1 => {
                let mut t = vec![];
                b4.udp(1, 2).write(&mut t, &[0; 20]).unwrap();
                t.truncate(20); // truncated IPv4
                return t;
            }
            _ => {}
        }
        let port = 1000 + (f / 64 % 4) as u16;
        if f.is_multiple_of(3) {
            b4.udp(port, 53).write(&mut v, &[0; 30]).unwrap();
        } else {
            // Both directions of a connection: the reverse of flow f is a flow too.
            let (sp, dp) = if f.is_multiple_of(2) {
                (port, 80)
            } else {
                (80, port)
            };
            let mut t = b4.tcp(sp, dp, 1, 100);
            if flags & 1 != 0 {
                t = t.fin();
            }
            if flags & 2 != 0 {
                t = t.syn();
            }
            if flags & 4 != 0 {
                t = t.rst();
            }
            t.ack(1).write(&mut v, &[0; 10]).unwrap();
        }
        v
    }

    /// The meter's answer and, for the same frames, what the cache gives when each frame's
    /// expiry and update are applied at once (the meter before it waited).
    fn both(frames: &[(Vec<u8>, u64)], cache: CacheConfig) -> [(Vec<FlowRecord>, String); 2] {
        let mut m = Meter::new(cache.clone(), FragmentConfig::default());
        let mut got = vec![];
        for (i, (f, ts)) in frames.iter().enumerate() {
            let link = (i % 97 != 5).then_some(LinkType::Ethernet);
            m.process(link, f, *ts);
            if i % 1000 == 999 {
                m.advance(ts + 1);
            }
            got.append(&mut m.take_records());
        }
        m.finish();
        got.append(&mut m.take_records());

        let mut c = FlowCache::new(cache);
        let (mut want, mut clock) = (vec![], 0);
        for (i, (f, ts)) in frames.iter().enumerate() {
            if *ts > clock {
                clock = *ts;
                c.expire(*ts, &mut want);
            }
            let mut s = FrameSummary::default();
            if i % 97 != 5
                && wire::decode_frame(LinkType::Ethernet, f, &Decap::all(), &mut s).is_ok()
            {
                c.update(&s, *ts, &mut want);
            }
            if i % 1000 == 999 && ts + 1 > clock {
                clock = ts + 1;
                c.expire(clock, &mut want);
            }
        }
        c.finish(&mut want);
        [
            (got, format!("{:?}", m.cache().stats())),
            (want, format!("{:?}", c.stats())),
        ]
    }

    #[test]
    fn waiting_frames_change_nothing_the_cache_does() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut ts = 1_000_000_000_u64;
        let frames: Vec<(Vec<u8>, u64)> = (0..30_000)
            .map(|_| {
                let r = next();
                // Mostly forward in small steps, now and then a long gap or a step back.
                ts = match r % 100 {
                    0 => ts + 3_000_000_000,
                    1..=8 => ts.saturating_sub(700_000_000),
                    _ => ts + (r >> 8) % 2_000_000,
                };
                let flags = if r % 50 == 7 { (r >> 20) as u8 % 8 } else { 0 };
                (frame((r >> 32) % 600, flags), ts)
            })
            .collect();
        for biflow in [false, true] {
            let cache = CacheConfig {
                idle_timeout_ns: 2_000_000_000,
                active_timeout_ns: 5_000_000_000,
                tcp_end_grace_ns: 100_000_000,
                max_flows: 150,
                biflow,
                // One key for both caches: a flood aggregate's source estimate hashes with it.
                hash_seed: Some(7),
                ..Default::default()
            };
            let [(got, got_stats), (want, want_stats)] = both(&frames, cache);
            assert!(want.len() > 1000, "{}", want.len());
            assert_eq!(got_stats, want_stats);
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g, w, "record {i} (biflow {biflow})");
            }
        }
    }

    #[test]
    fn a_frame_that_is_not_metered_still_moves_the_clock_in_turn() {
        // Flow 2 at 1 s; a frame that is not metered at 20 s (flow 2 is idle by then); flow 3
        // at 10 s, out of order. Flow 2 left at 20 s, before flow 3 arrived.
        let frames = [
            (frame(2, 0), S),
            (frame(0, 0), 20 * S),
            (frame(3, 0), 10 * S),
        ];
        let [(got, _), (want, _)] = both(&frames, CacheConfig::default());
        let reasons = |r: &[FlowRecord]| r.iter().map(|r| r.end_reason).collect::<Vec<_>>();
        assert_eq!(
            reasons(&want),
            [EndReason::IdleTimeout, EndReason::ForcedEnd]
        );
        assert_eq!(got, want);
    }

    #[test]
    fn books_balance_while_frames_wait() {
        let mut m = Meter::new(CacheConfig::default(), FragmentConfig::default());
        for i in 0..5u64 {
            m.process(Some(LinkType::Ethernet), &frame(i + 2, 0), 1_000 + i);
            let b = m.books();
            assert!(b.balanced());
            assert_eq!(b.read, i + 1);
        }
        m.finish();
        assert_eq!(m.cache().stats().flows_created, 5);
    }

    #[test]
    fn encapsulations_are_counted_once_per_decoded_frame() {
        // A VXLAN frame, then more frames without a decoder than the ring has slots: the
        // reused slot's old summary must not be counted again.
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 7, 0];
        vx.extend_from_slice(&frame(2, 0));
        let mut f = vec![];
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .udp(50000, 4789)
            .write(&mut f, &vx)
            .unwrap();
        let mut m = Meter::new(CacheConfig::default(), FragmentConfig::default());
        m.process(Some(LinkType::Ethernet), &f, S);
        for i in 0..2 * LOOKAHEAD as u64 {
            m.process(None, &f, S + i + 1);
        }
        let b = m.books();
        assert_eq!(b.encapsulated_by(TunnelKind::Vxlan), 1);
        assert_eq!(b.metered, 1);
        assert!(b.balanced());
    }
}
