//! The per-worker flow cache.
//!
//! Layout, chosen for memory and O(1) expiry:
//! - flows live in a slab (`Vec<Node>`), reused through a free list, so a flow never moves;
//! - a [`FlowIndex`] maps key hashes to slab positions (8 bytes a slot, open addressing, so a
//!   slot's address follows from the hash and the meter can prefetch it packets ahead);
//! - each node sits on two intrusive doubly linked lists threaded through the slab:
//!   *recency* (probation, idle or ending, below), with the most recently seen flow at the
//!   head, and *age* (creation order) for the active timeout.
//!
//! The recency lists are a segmented LRU, so that a flood cannot push conversations out: a new
//! flow waits in *probation* until its second packet, or a packet of its reverse direction
//! past any TCP handshake, promotes it to *idle* (the protected segment); a TCP connection that
//! has ended moves to *ending*. When the cache is full the
//! victim is an ended connection, else the oldest flow in probation (one packet, no sign of a
//! conversation: a random-source SYN flood's flows are all there), and a flow with history only
//! when probation is down to its floor (see [`FlowCache::victim`]).
//!
//! Under a flood the one-packet flows that leave probation are rolled up into a few aggregate
//! records instead of one record each ([`super::rollup`]); `--no-aggregate` turns that off.
//!
//! Expiry therefore only ever looks at list tails: quiet flows at the probation and idle tails,
//! ended TCP connections at the ending tail, long-lived flows at the age tail. Nothing scans
//! the table, and the flow evicted when the cache is full is a tail too.

use super::index::{prefetch, FlowIndex};
use super::key::FlowKey;
use super::memory::{advise_reserved, Advise};
use super::rollup::{Original, Rollup, RollupConfig, RollupStats};
use crate::wire::transport::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP};
use crate::wire::{FrameSummary, TunnelKind};
use ipfix_export::{EndReason, FlowRecord, Reverse, TimePrecision, Tunnel};
use std::hash::BuildHasher;

/// Tunables of a flow cache. Times are in nanoseconds.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// A flow with no packet for this long is exported (idleTimeout).
    pub idle_timeout_ns: u64,
    /// A flow older than this is exported and restarted (activeTimeout); records are deltas.
    pub active_timeout_ns: u64,
    /// After RST, or FIN in both directions, the flow is exported once it has been quiet this
    /// long (endOfFlowDetected); the grace keeps the last ACK in the same record.
    pub tcp_end_grace_ns: u64,
    /// Most flows held; beyond it one is exported early (lackOfResources), one-packet flows
    /// first (see [`FlowCache`]'s module doc).
    pub max_flows: usize,
    /// Whether VLAN ids are part of the flow key.
    pub vlan_in_key: bool,
    /// Pair each flow with its reverse direction into one biflow record (RFC 5103) when
    /// either ends. Needs both directions on the same worker (symmetric steering).
    pub biflow: bool,
    /// Told of each region the cache's slab and index reserve (see [`super::memory`]).
    pub advise: Option<Advise>,
    /// The key of the flow table's hash, drawn from the OS by the caller at start, so that
    /// nobody can craft flows that pile into one bucket of the index. `None`: foldhash's own
    /// per-process seed (address-space layout and time, which it does not claim resists
    /// HashDoS).
    pub hash_seed: Option<u64>,
    /// Roll a flood's one-packet flows up into aggregate records (RFC 7015) while the cache is
    /// under pressure; `None` (`--no-aggregate`): evict them one record each.
    pub rollup: Option<RollupConfig>,
}

impl CacheConfig {
    /// One of `parts` caches that share this one's flow budget (`--max-flows` is the probe's
    /// total, shared out between its metering workers or one-hop queues).
    pub fn share(&self, parts: usize) -> CacheConfig {
        CacheConfig {
            max_flows: self.max_flows.div_ceil(parts.max(1)),
            ..self.clone()
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            idle_timeout_ns: 15_000_000_000,
            active_timeout_ns: 60_000_000_000,
            tcp_end_grace_ns: 2_000_000_000,
            max_flows: 1_000_000,
            vlan_in_key: true,
            biflow: false,
            advise: None,
            hash_seed: None,
            rollup: Some(RollupConfig::default()),
        }
    }
}

/// Counters of a flow cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub flows_created: u64,
    pub active_flows: u64,
    pub peak_flows: u64,
    pub idle_timeout: u64,
    pub active_timeout: u64,
    pub end_of_flow: u64,
    pub forced_end: u64,
    /// Flows evicted because the cache was full.
    pub lack_of_resources: u64,
    /// Of those, flows evicted from probation: one packet in one direction, no sign yet of a
    /// conversation (a flood's flows go this way, before any flow with history).
    pub evicted_probation: u64,
    /// Flows exported as the reverse half of a biflow (each pair is one record).
    pub paired_reverse: u64,
    /// The flood roll-up: flows rolled into aggregates (not in `records_exported`), aggregate
    /// records, and the pressure mode's episodes.
    pub rollup: RollupStats,
}

impl CacheStats {
    /// Adds another worker's counters (peaks add up: an upper bound of the joint peak).
    pub fn merge(&mut self, o: &CacheStats) {
        self.flows_created += o.flows_created;
        self.active_flows += o.active_flows;
        self.peak_flows += o.peak_flows;
        self.idle_timeout += o.idle_timeout;
        self.active_timeout += o.active_timeout;
        self.end_of_flow += o.end_of_flow;
        self.forced_end += o.forced_end;
        self.lack_of_resources += o.lack_of_resources;
        self.evicted_probation += o.evicted_probation;
        self.paired_reverse += o.paired_reverse;
        self.rollup.merge(&o.rollup);
    }

    /// Records handed to the exporter: flows, less the reverse halves folded into biflows,
    /// and the aggregates of rolled-up flows.
    pub fn records(&self) -> u64 {
        self.records_exported() - self.paired_reverse + self.rollup.aggregate_records
    }

    /// Flows exported (each direction of a biflow counts).
    pub fn records_exported(&self) -> u64 {
        self.idle_timeout
            + self.active_timeout
            + self.end_of_flow
            + self.forced_end
            + self.lack_of_resources
    }
}

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
};

#[derive(Clone, Copy, Debug)]
struct List {
    /// Most recent.
    head: u32,
    /// Oldest.
    tail: u32,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

/// The recency list a node is on. `Probation` and `Idle` are the two segments of a
/// segmented LRU: a flow starts in probation and is promoted to `Idle` (the protected segment)
/// by its second packet or an answer from its reverse direction; `Ending` holds TCP
/// connections that have ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Queue {
    Probation,
    Idle,
    Ending,
    Free,
}

#[derive(Clone, Debug)]
struct Node {
    key: FlowKey,
    first_ns: u64,
    last_ns: u64,
    /// When the node was (re)queued on its recency list. The list is ordered by this time, not
    /// by `last_ns`: packets do not move nodes (that would touch three other nodes, about
    /// 150 ns a packet at 100k flows); the expiry scan requeues nodes seen since.
    queued_ns: u64,
    packets: u64,
    octets: u64,
    recency: Link,
    age: Link,
    tcp_flags: u16,
    mpls_top: [u8; 3],
    class_of_service: u8,
    min_ttl: u8,
    max_ttl: u8,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    queue: Queue,
    /// [`FIN_SEEN`] and [`OPENED`], in one byte so the node stays within 128 bytes.
    marks: u8,
    /// The interface of the flow's first packet, as an index into [`FlowCache::interfaces`]
    /// (one byte, not a 4-byte ifindex: the node stays within 128 bytes).
    ingress: u8,
}

/// This direction has sent a FIN.
const FIN_SEEN: u8 = 1;
/// The flow's first packet was a SYN without ACK: this direction opened the connection.
const OPENED: u8 = 2;

/// Whether a flow's first packet, met by its reverse direction in the cache, shows a
/// conversation: any datagram, and a TCP segment past the handshake (ACK without SYN or RST).
/// A SYN-ACK or a RST answering a flood's SYN is not one, so a flooded server that answers
/// does not lift the flood out of probation; nor does the check cost a lookup per SYN.
#[inline(always)]
fn answers(protocol: u8, tcp_flags: u16) -> bool {
    protocol != PROTO_TCP || tcp_flags & (TCP_ACK | TCP_SYN | TCP_RST) == TCP_ACK
}

const TCP_FIN: u16 = 0x01;
const TCP_SYN: u16 = 0x02;
const TCP_RST: u16 = 0x04;
const TCP_ACK: u16 = 0x10;

/// The tunnel a flow's first packet came through: kept beside the slab, not in it, so plain
/// traffic pays nothing (the vector stays empty until the first tunnelled flow).
#[derive(Clone, Copy, Debug, Default)]
struct TunnelOrigin {
    kind: u8,
    outer_version: u8,
    id: u32,
    outer_src: [u8; 16],
    outer_dst: [u8; 16],
}

pub struct FlowCache {
    cfg: CacheConfig,
    nodes: Vec<Node>,
    /// Indexed like `nodes`; empty while no flow has come through a tunnel.
    tunnels: Vec<TunnelOrigin>,
    free: u32,
    index: FlowIndex,
    hasher: foldhash::fast::SeedableRandomState,
    /// Flows with one packet so far, oldest at the tail (they never move: a second packet
    /// promotes them to `idle`).
    probation: List,
    probation_len: usize,
    idle: List,
    ending: List,
    age: List,
    precision: TimePrecision,
    stats: CacheStats,
    /// The ifindexes flows came in on, by their one-byte slot in a node.
    interfaces: Vec<u32>,
    /// Application-layer fields (`--app`), indexed like `nodes`; empty until the first flow
    /// with a fact, then 16 bytes a flow plus a box for each flow with one.
    apps: Vec<Option<Box<ipfix_export::AppRecord>>>,
    /// The flood roll-up, unless `--no-aggregate`.
    rollup: Option<Rollup>,
}

/// The flow table's hasher: keyed with `seed` when the caller gives one (the shared part of
/// foldhash's key is derived from the first seed of the process, the per-table part is the
/// seed itself), else foldhash's own random state.
fn table_hasher(seed: Option<u64>) -> foldhash::fast::SeedableRandomState {
    static SHARED: std::sync::OnceLock<foldhash::SharedSeed> = std::sync::OnceLock::new();
    match seed {
        Some(s) => foldhash::fast::SeedableRandomState::with_seed(
            s,
            SHARED.get_or_init(|| foldhash::SharedSeed::from_u64(s.rotate_left(32))),
        ),
        None => foldhash::fast::SeedableRandomState::random(),
    }
}

/// Why a flow on `queue` that has been quiet past its timeout ends: an ended TCP connection's
/// grace ran out (endOfFlowDetected), any other flow went idle (idleTimeout).
fn quiet_end(queue: Queue) -> EndReason {
    match queue {
        Queue::Ending => EndReason::EndOfFlowDetected,
        _ => EndReason::IdleTimeout,
    }
}

/// Which of a node's two links a list uses.
#[derive(Clone, Copy)]
enum Thread {
    Recency,
    Age,
}

impl FlowCache {
    /// New timeouts (a reload): flows already cached are judged by them from the next expiry
    /// scan on; none is cut by the change itself.
    pub fn set_timeouts(&mut self, idle_ns: u64, active_ns: u64, tcp_end_grace_ns: u64) {
        self.cfg.idle_timeout_ns = idle_ns;
        self.cfg.active_timeout_ns = active_ns;
        self.cfg.tcp_end_grace_ns = tcp_end_grace_ns;
    }

    pub fn new(cfg: CacheConfig) -> Self {
        let hasher = table_hasher(cfg.hash_seed);
        FlowCache {
            index: FlowIndex::with_advice(cfg.advise),
            rollup: cfg
                .rollup
                .map(|r| Rollup::new(r, cfg.max_flows, hasher.clone())),
            hasher,
            cfg,
            nodes: Vec::new(),
            tunnels: Vec::new(),
            interfaces: Vec::new(),
            apps: Vec::new(),
            free: NIL,
            probation: EMPTY,
            probation_len: 0,
            idle: EMPTY,
            ending: EMPTY,
            age: EMPTY,
            precision: TimePrecision::Micros,
            stats: CacheStats::default(),
        }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.cfg
    }

    pub fn stats(&self) -> CacheStats {
        let mut s = self.stats;
        s.active_flows = self.index.len() as u64;
        if let Some(r) = &self.rollup {
            s.rollup = r.stats();
        }
        s
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Resolution of the clock that times the packets now arriving; carried into the records.
    pub fn time_precision(&self) -> TimePrecision {
        self.precision
    }

    /// See [`Self::time_precision`].
    pub fn set_time_precision(&mut self, p: TimePrecision) {
        self.precision = p;
    }

    /// Bytes held by the cache's own structures (slab and index), for memory benchmarks.
    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.tunnels.capacity() * std::mem::size_of::<TunnelOrigin>()
            + self.index.heap_bytes()
    }

    /// Accounts one decoded packet seen at `now_ns`. Flows this displaces (cache full) are
    /// appended to `out`.
    #[inline]
    pub fn update(&mut self, s: &FrameSummary, now_ns: u64, out: &mut Vec<FlowRecord>) {
        let (key, hash) = self.key_of(s);
        self.update_keyed(s, key, hash, now_ns, out);
    }

    /// The flow key of a packet and its hash, for [`Self::update_keyed`] and the prefetches.
    #[inline]
    pub fn key_of(&self, s: &FrameSummary) -> (FlowKey, u64) {
        let key = FlowKey::of(s, self.cfg.vlan_in_key);
        (key, self.hasher.hash_one(key))
    }

    /// First of the two prefetches that hide a lookup's cache misses: the key's index slot.
    #[inline(always)]
    pub fn prefetch_slot(&self, hash: u64) {
        self.index.prefetch(hash);
    }

    /// Second prefetch, once the slot has arrived: the node of the first slot whose hash bits
    /// match (almost always the flow's own), both cache lines of it. No key is compared: that
    /// would wait for the very miss this hides.
    #[inline]
    pub fn prefetch_node(&self, hash: u64) {
        if let Some(i) = self.index.find(hash, |_| true) {
            if let Some(n) = self.nodes.get(i as usize) {
                let p = n as *const Node as *const u8;
                prefetch(p);
                prefetch(p.wrapping_add(std::mem::size_of::<Node>() - 1));
            }
        }
    }

    /// [`Self::update`] with the key and hash already computed by [`Self::key_of`].
    /// Returns the flow's slab index (for [`Self::add_app`]), valid until the next call.
    #[inline]
    pub fn update_keyed(
        &mut self,
        s: &FrameSummary,
        key: FlowKey,
        hash: u64,
        now_ns: u64,
        out: &mut Vec<FlowRecord>,
    ) -> u32 {
        let found = self.lookup_hashed(&key, hash);
        let idx = match found {
            Some(i) if self.quiet_too_long(i, now_ns) => {
                // The flow went quiet past its timeout before this packet: the record ends
                // here and this packet starts a new one, whenever the scan would have noticed.
                self.export(i, quiet_end(self.nodes[i as usize].queue), out);
                self.insert(key, hash, s, now_ns, out)
            }
            Some(i) => {
                let n = &mut self.nodes[i as usize];
                n.packets += 1;
                n.octets += s.ip_octets as u64;
                n.first_ns = n.first_ns.min(now_ns);
                n.last_ns = n.last_ns.max(now_ns);
                n.tcp_flags |= s.tcp_flags;
                n.min_ttl = n.min_ttl.min(s.ttl);
                n.max_ttl = n.max_ttl.max(s.ttl);
                match n.queue {
                    Queue::Ending => self.requeue(i, Queue::Ending, now_ns),
                    Queue::Probation => self.promote(i, now_ns),
                    _ => {}
                }
                i
            }
            None => self.insert(key, hash, s, now_ns, out),
        };
        if key.protocol == PROTO_TCP && s.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
            self.tcp_end(idx, s.tcp_flags, now_ns);
        }
        idx
    }

    /// What a packet of flow `idx` (as [`Self::update_keyed`] returned) said at the
    /// application layer. The flow keeps it until its record leaves.
    ///
    /// With biflows, a fact joins the reverse direction's fields when that direction has some
    /// already (a DNS answer joins its question, a ServerHello its ClientHello): one record
    /// and one string per conversation, not one per direction merged at export. The first
    /// value of each field in time wins, as within one direction.
    pub fn add_app(&mut self, idx: u32, fact: &crate::app::AppFact) {
        let mut i = idx as usize;
        if self.apps.len() < self.nodes.len() {
            self.apps.resize_with(self.nodes.len(), || None);
        }
        if self.apps[i].is_none() && self.cfg.biflow {
            let rev = self.nodes[i].key.reversed();
            if let Some(p) = self.lookup(&rev).1 {
                if p != idx && self.apps[p as usize].is_some() {
                    i = p as usize;
                }
            }
        }
        crate::app::add_fact(self.apps[i].get_or_insert_with(Box::default), fact);
    }

    /// The key's hash and, when the flow is cached, its slab index.
    #[inline]
    fn lookup(&self, key: &FlowKey) -> (u64, Option<u32>) {
        let hash = self.hasher.hash_one(key);
        (hash, self.lookup_hashed(key, hash))
    }

    #[inline]
    fn lookup_hashed(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        let nodes = &self.nodes;
        self.index.find(hash, |i| nodes[i as usize].key == *key)
    }

    /// Exports every flow whose idle, TCP-end or active timeout has passed at `now_ns`.
    #[inline]
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<FlowRecord>) {
        // The common case, nothing due, costs five comparisons and no call.
        if let Some(r) = self.rollup.as_mut().filter(|r| r.poll_due(now_ns)) {
            r.poll(now_ns, self.precision, out);
        }
        if self.tail_due(Queue::Probation, now_ns) {
            self.expire_queue(Queue::Probation, now_ns, out);
        }
        if self.tail_due(Queue::Idle, now_ns) {
            self.expire_queue(Queue::Idle, now_ns, out);
        }
        if self.tail_due(Queue::Ending, now_ns) {
            self.expire_queue(Queue::Ending, now_ns, out);
        }
        while self.age.tail != NIL
            && self.nodes[self.age.tail as usize]
                .first_ns
                .saturating_add(self.cfg.active_timeout_ns)
                <= now_ns
        {
            // A flow that has also been quiet past its timeout ended that way (the lazy scan
            // may not have reached it yet): its record says so.
            let tail = self.age.tail;
            let reason = if self.quiet_too_long(tail, now_ns) {
                quiet_end(self.nodes[tail as usize].queue)
            } else {
                EndReason::ActiveTimeout
            };
            self.export(tail, reason, out);
        }
    }

    fn timeout_of(&self, queue: Queue) -> u64 {
        match queue {
            Queue::Ending => self.cfg.tcp_end_grace_ns,
            _ => self.cfg.idle_timeout_ns,
        }
    }

    /// Whether a flow has been quiet past its timeout. An ended TCP connection's grace runs
    /// from its last packet or from the moment it ended, whichever is later; the ending list is
    /// small, so its nodes move on every packet and `queued_ns` is exactly that moment.
    fn quiet_too_long(&self, idx: u32, now_ns: u64) -> bool {
        let n = &self.nodes[idx as usize];
        let since = match n.queue {
            Queue::Ending => n.last_ns.max(n.queued_ns),
            _ => n.last_ns,
        };
        since.saturating_add(self.timeout_of(n.queue)) <= now_ns
    }

    /// Scans a recency list from its tail. The list is ordered by queue time and every node was
    /// last seen at or after it was queued, so once the tail was queued less than a timeout ago
    /// no flow on the list can be due. A tail that has been seen since it was queued goes back
    /// to the head, so each flow moves at most once per timeout instead of once per packet.
    fn expire_queue(&mut self, queue: Queue, now_ns: u64, out: &mut Vec<FlowRecord>) {
        let timeout = self.timeout_of(queue);
        loop {
            let tail = self.list(Thread::Recency, queue).tail;
            if tail == NIL || self.nodes[tail as usize].queued_ns.saturating_add(timeout) > now_ns {
                return;
            }
            if self.quiet_too_long(tail, now_ns) {
                if !(queue == Queue::Probation && self.roll_up(tail, now_ns)) {
                    self.export(tail, quiet_end(queue), out);
                }
            } else {
                self.requeue(tail, queue, now_ns);
            }
        }
    }

    /// Whether the tail of a recency list was queued at least a timeout ago.
    #[inline(always)]
    fn tail_due(&self, queue: Queue, now_ns: u64) -> bool {
        let (tail, timeout) = match queue {
            Queue::Ending => (self.ending.tail, self.cfg.tcp_end_grace_ns),
            Queue::Probation => (self.probation.tail, self.cfg.idle_timeout_ns),
            _ => (self.idle.tail, self.cfg.idle_timeout_ns),
        };
        tail != NIL && self.nodes[tail as usize].queued_ns.saturating_add(timeout) <= now_ns
    }

    /// Moves a node to the head of its recency list. Its queue time is never before its last
    /// packet: with out-of-order timestamps `now_ns` can be older than `last_ns`, and a node
    /// that still looked "seen since queued" after a requeue would keep the CLOCK hand (and
    /// the expiry scan) going round forever.
    fn requeue(&mut self, idx: u32, queue: Queue, now_ns: u64) {
        let at = now_ns.max(self.nodes[idx as usize].last_ns);
        self.relist(idx, queue, at);
    }

    /// A flow in probation has shown history (a second packet, or an answer from the other
    /// side): it joins the protected segment, where only flows with history compete for room.
    /// Once per flow.
    fn promote(&mut self, idx: u32, now_ns: u64) {
        let at = now_ns.max(self.nodes[idx as usize].last_ns);
        self.relist(idx, Queue::Idle, at);
    }

    /// Moves a node from its recency list to the head of `to`, queued at `queued_ns`.
    fn relist(&mut self, idx: u32, to: Queue, queued_ns: u64) {
        let from = self.nodes[idx as usize].queue;
        self.unlink(Thread::Recency, from, idx);
        self.push_front(Thread::Recency, to, idx);
        let n = &mut self.nodes[idx as usize];
        n.queue = to;
        n.queued_ns = queued_ns;
    }

    /// Exports every flow: end of input, or shutdown. A TCP connection that already ended
    /// (RST, or FIN from both ends) and was only waiting out its grace says so
    /// (endOfFlowDetected); every other flow was cut short (forcedEnd).
    /// Under a flood, the one-packet flows still in probation are rolled up like those evicted
    /// before them, and the aggregates leave last.
    pub fn finish(&mut self, out: &mut Vec<FlowRecord>) {
        while self.age.tail != NIL {
            let tail = self.age.tail;
            let n = &self.nodes[tail as usize];
            let (queue, last_ns) = (n.queue, n.last_ns);
            if queue == Queue::Probation && self.roll_up(tail, last_ns) {
                continue;
            }
            let reason = match queue {
                Queue::Ending => EndReason::EndOfFlowDetected,
                _ => EndReason::ForcedEnd,
            };
            self.export(tail, reason, out);
        }
        if let Some(r) = &mut self.rollup {
            r.flush(EndReason::ForcedEnd, self.precision, out);
        }
    }

    /// Rolls a one-packet flow leaving probation into its aggregate when the cache is under
    /// pressure; says whether it did (if not, the caller exports it). A flow whose reverse
    /// direction is cached leaves with it as a biflow instead.
    fn roll_up(&mut self, idx: u32, now_ns: u64) -> bool {
        if !self.rollup.as_ref().is_some_and(Rollup::is_on) {
            return false;
        }
        let n = &self.nodes[idx as usize];
        if self.cfg.biflow && self.lookup(&n.key.reversed()).1.is_some() {
            return false;
        }
        let f = Original {
            key: &n.key,
            tcp_flags: n.tcp_flags,
            packets: n.packets,
            octets: n.octets,
            first_ns: n.first_ns,
            last_ns: n.last_ns,
            min_ttl: n.min_ttl,
            max_ttl: n.max_ttl,
        };
        if let Some(r) = self.rollup.as_mut() {
            r.roll(f, now_ns);
        }
        if let Some(a) = self.apps.get_mut(idx as usize) {
            *a = None;
        }
        self.remove(idx);
        true
    }

    fn insert(
        &mut self,
        key: FlowKey,
        hash: u64,
        s: &FrameSummary,
        now_ns: u64,
        out: &mut Vec<FlowRecord>,
    ) -> u32 {
        if self.index.len() >= self.cfg.max_flows {
            let victim = self.victim(now_ns);
            if victim != NIL {
                let from_probation = self.nodes[victim as usize].queue == Queue::Probation;
                let rolled = from_probation
                    && self.rollup.as_mut().is_some_and(|r| r.evicting(now_ns))
                    && self.roll_up(victim, now_ns);
                if !rolled {
                    self.stats.evicted_probation += from_probation as u64;
                    self.export(victim, EndReason::LackOfResources, out);
                }
            }
        }
        let node = Node {
            key,
            first_ns: now_ns,
            last_ns: now_ns,
            queued_ns: now_ns,
            packets: 1,
            octets: s.ip_octets as u64,
            recency: UNLINKED,
            age: UNLINKED,
            tcp_flags: s.tcp_flags,
            mpls_top: s.mpls_top,
            class_of_service: s.class_of_service,
            min_ttl: s.ttl,
            max_ttl: s.ttl,
            src_mac: s.src_mac,
            dst_mac: s.dst_mac,
            queue: Queue::Probation,
            marks: if key.protocol == PROTO_TCP && s.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
                OPENED
            } else {
                0
            },
            ingress: self.interface_slot(s.ingress_if),
        };
        let idx = if self.free != NIL {
            let i = self.free;
            self.free = self.nodes[i as usize].recency.next;
            self.nodes[i as usize] = node;
            i
        } else {
            if self.nodes.len() == self.nodes.capacity() {
                // Doubling through `realloc`: for a large slab glibc moves the pages with
                // mremap instead of copying them, so growth never holds the old and the new
                // slab at once (a copy did: 189 MB at 524,288 flows). The advice covers the
                // new half before its pages are first touched; the moved half keeps its own.
                self.nodes.reserve_exact(self.nodes.capacity().max(1024));
                advise_reserved(self.cfg.advise, &self.nodes);
            }
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        };
        if s.tunnel.depth != 0 || !self.tunnels.is_empty() {
            self.note_tunnel(idx, s);
        }
        self.push_front(Thread::Recency, Queue::Probation, idx);
        self.push_front(Thread::Age, Queue::Probation, idx);
        self.index.insert(hash, idx);
        self.stats.flows_created += 1;
        self.stats.peak_flows = self.stats.peak_flows.max(self.index.len() as u64);
        if answers(key.protocol, s.tcp_flags) {
            // The other direction is cached: a conversation, whichever packet count either has.
            if let Some(r) = self.lookup(&key.reversed()).1.filter(|&r| r != idx) {
                if self.nodes[r as usize].queue == Queue::Probation {
                    self.promote(r, now_ns);
                }
                self.promote(idx, now_ns);
            }
        }
        idx
    }

    #[cold]
    fn note_tunnel(&mut self, idx: u32, s: &FrameSummary) {
        if self.tunnels.len() < self.nodes.len() {
            self.tunnels
                .resize(self.nodes.len(), TunnelOrigin::default());
        }
        let t = &s.tunnel;
        self.tunnels[idx as usize] = TunnelOrigin {
            kind: if t.depth == 0 { 0 } else { t.kind as u8 },
            outer_version: t.outer_version,
            id: t.id,
            outer_src: t.outer_src,
            outer_dst: t.outer_dst,
        };
    }

    /// The exported form of a flow's tunnel.
    fn tunnel_of(&self, idx: u32, key: &FlowKey) -> Option<Tunnel> {
        let t = self.tunnels.get(idx as usize).filter(|t| t.kind != 0)?;
        let segment_type = match TunnelKind::from_code(key.segment_kind) {
            TunnelKind::Vxlan => 0x01,
            TunnelKind::Nvgre => 0x02,
            _ => 0,
        };
        Some(Tunnel {
            kind: t.kind,
            id: t.id,
            layer2_segment_id: if segment_type == 0 {
                0
            } else {
                segment_type << 56 | (key.segment & 0x00ff_ffff) as u64
            },
            key_kind: key.segment_kind,
            key: key.segment,
            outer_src: super::key::ip(t.outer_version, &t.outer_src),
            outer_dst: super::key::ip(t.outer_version, &t.outer_dst),
        })
    }

    /// The flow to evict when the cache is full. Ended TCP connections go first, then the
    /// oldest flow in probation (one packet, no history) while probation holds more than its
    /// floor, and only then the least recently seen flow with history. The floor (an eighth of
    /// the cache) keeps room for new flows to earn their second packet when flows with history
    /// fill the cache; without it each new flow would evict the one before it.
    fn victim(&mut self, now_ns: u64) -> u32 {
        if self.ending.tail != NIL {
            return self.least_recently_seen(&[Queue::Ending], now_ns);
        }
        let floor = (self.cfg.max_flows / 8).max(1);
        if self.probation.tail != NIL && (self.probation_len > floor || self.idle.tail == NIL) {
            return self.probation.tail;
        }
        self.least_recently_seen(&[Queue::Idle, Queue::Probation], now_ns)
    }

    /// The least recently seen flow of `queues`, in order, found the way CLOCK finds it. Tails
    /// seen since they were queued get a second chance at the head; the first tail not seen
    /// since is evicted.
    fn least_recently_seen(&mut self, queues: &[Queue], now_ns: u64) -> u32 {
        for &queue in queues {
            loop {
                let tail = self.list(Thread::Recency, queue).tail;
                if tail == NIL {
                    break;
                }
                let n = &self.nodes[tail as usize];
                if n.last_ns <= n.queued_ns {
                    return tail;
                }
                self.requeue(tail, queue, now_ns);
            }
        }
        NIL
    }

    /// RST ends both directions; FIN ends the connection once both directions have sent one.
    fn tcp_end(&mut self, idx: u32, flags: u16, now_ns: u64) {
        let rev = self.nodes[idx as usize].key.reversed();
        let (_, rev_idx) = self.lookup(&rev);
        if flags & TCP_RST != 0 {
            self.move_to_ending(idx, now_ns);
            if let Some(r) = rev_idx {
                self.move_to_ending(r, now_ns);
            }
            return;
        }
        self.nodes[idx as usize].marks |= FIN_SEEN;
        if let Some(r) = rev_idx {
            if self.nodes[r as usize].marks & FIN_SEEN != 0 {
                self.move_to_ending(idx, now_ns);
                self.move_to_ending(r, now_ns);
            }
        }
    }

    fn move_to_ending(&mut self, idx: u32, now_ns: u64) {
        if matches!(
            self.nodes[idx as usize].queue,
            Queue::Idle | Queue::Probation
        ) {
            self.relist(idx, Queue::Ending, now_ns);
        }
    }

    /// Exports a flow; with biflows, its reverse direction (if cached) leaves with it.
    fn export(&mut self, idx: u32, reason: EndReason, out: &mut Vec<FlowRecord>) {
        let partner = if self.cfg.biflow {
            let rev = self.nodes[idx as usize].key.reversed();
            self.lookup(&rev).1.filter(|&p| p != idx)
        } else {
            None
        };
        let mut rec = self.release(idx, reason);
        if let Some(p) = partner {
            let other = self.release(p, reason);
            self.stats.paired_reverse += 1;
            // The initiator: the side whose first packet was a bare SYN, else the side seen
            // first (RFC 5103 §6.2).
            let (a_opened, b_opened) = (rec.1, other.1);
            let a_first = if a_opened != b_opened {
                a_opened
            } else {
                rec.0.start_ns <= other.0.start_ns
            };
            let (mut fwd, mut rev) = if a_first {
                (rec.0, other.0)
            } else {
                (other.0, rec.0)
            };
            let app = match (fwd.app.take(), rev.app.take()) {
                (Some(mut f), Some(r)) => {
                    f.fill_from(&r);
                    Some(f)
                }
                (f, r) => f.or(r),
            };
            rec.0 = FlowRecord {
                app,
                reverse: Some(Reverse {
                    packets: rev.packets,
                    octets: rev.octets,
                    tcp_flags: rev.tcp_flags,
                    class_of_service: rev.class_of_service,
                    min_ttl: rev.min_ttl,
                    max_ttl: rev.max_ttl,
                    start_ns: rev.start_ns,
                    end_ns: rev.end_ns,
                    ingress_interface: rev.ingress_interface,
                }),
                ..fwd
            };
        }
        // Unpaired (the reverse direction never appeared): no reverse side at all, so the
        // record leaves in the uniflow layout instead of with reverse times of zero.
        out.push(rec.0);
    }

    /// The node's one-byte slot for interface `ifindex` (a capture has a handful; past 255
    /// distinct ones, further interfaces read as 0, unknown).
    #[inline]
    fn interface_slot(&mut self, ifindex: u32) -> u8 {
        if let Some(i) = self.interfaces.iter().position(|&x| x == ifindex) {
            return i as u8;
        }
        if self.interfaces.len() < 255 {
            self.interfaces.push(ifindex);
            return (self.interfaces.len() - 1) as u8;
        }
        u8::MAX
    }

    /// Takes a flow out of the cache and returns its record and whether it opened a TCP
    /// connection.
    fn release(&mut self, idx: u32, reason: EndReason) -> (FlowRecord, bool) {
        let n = &self.nodes[idx as usize];
        let icmp = n.key.protocol == PROTO_ICMP || n.key.protocol == PROTO_ICMPV6;
        let rec = FlowRecord {
            src_addr: n.key.src_ip(),
            dst_addr: n.key.dst_ip(),
            src_port: n.key.src_port,
            dst_port: n.key.dst_port,
            protocol: n.key.protocol,
            class_of_service: n.class_of_service,
            tcp_flags: n.tcp_flags,
            min_ttl: n.min_ttl,
            max_ttl: n.max_ttl,
            icmp_type_code: if icmp { n.key.dst_port } else { 0 },
            vlan_id: n.key.vlan_id,
            customer_vlan_id: n.key.customer_vlan_id,
            mpls_top_label: n.mpls_top,
            src_mac: n.src_mac,
            dst_mac: n.dst_mac,
            packets: n.packets,
            octets: n.octets,
            start_ns: n.first_ns,
            end_ns: n.last_ns,
            end_reason: reason,
            time_precision: self.precision,
            reverse: None,
            tunnel: self.tunnel_of(idx, &n.key),
            ingress_interface: self
                .interfaces
                .get(n.ingress as usize)
                .copied()
                .unwrap_or(0),
            app: self.apps.get_mut(idx as usize).and_then(Option::take),
            community_id: None,
            aggregate: None,
        };
        let opened = n.marks & OPENED != 0;
        match reason {
            EndReason::IdleTimeout => self.stats.idle_timeout += 1,
            EndReason::ActiveTimeout => self.stats.active_timeout += 1,
            EndReason::EndOfFlowDetected => self.stats.end_of_flow += 1,
            EndReason::ForcedEnd => self.stats.forced_end += 1,
            EndReason::LackOfResources => self.stats.lack_of_resources += 1,
        }
        self.remove(idx);
        (rec, opened)
    }

    /// Takes a flow out of the index and its lists and frees its slot.
    fn remove(&mut self, idx: u32) {
        let n = &self.nodes[idx as usize];
        let key = n.key;
        let queue = n.queue;
        let hash = self.hasher.hash_one(key);
        let indexed = self.index.remove(hash, idx);
        debug_assert!(indexed, "a linked flow is always indexed");
        self.unlink(Thread::Recency, queue, idx);
        self.unlink(Thread::Age, queue, idx);
        let n = &mut self.nodes[idx as usize];
        n.queue = Queue::Free;
        n.recency = Link {
            prev: NIL,
            next: self.free,
        };
        self.free = idx;
    }

    fn list(&mut self, thread: Thread, queue: Queue) -> &mut List {
        match (thread, queue) {
            (Thread::Age, _) => &mut self.age,
            (Thread::Recency, Queue::Probation) => &mut self.probation,
            (Thread::Recency, Queue::Idle) => &mut self.idle,
            (Thread::Recency, Queue::Ending) => &mut self.ending,
            (Thread::Recency, Queue::Free) => unreachable!("free nodes are on no list"),
        }
    }

    fn link(&mut self, thread: Thread, idx: u32) -> &mut Link {
        let n = &mut self.nodes[idx as usize];
        match thread {
            Thread::Recency => &mut n.recency,
            Thread::Age => &mut n.age,
        }
    }

    fn push_front(&mut self, thread: Thread, queue: Queue, idx: u32) {
        if let (Thread::Recency, Queue::Probation) = (thread, queue) {
            self.probation_len += 1;
        }
        let old_head = self.list(thread, queue).head;
        *self.link(thread, idx) = Link {
            prev: NIL,
            next: old_head,
        };
        if old_head != NIL {
            self.link(thread, old_head).prev = idx;
        }
        let list = self.list(thread, queue);
        list.head = idx;
        if list.tail == NIL {
            list.tail = idx;
        }
    }

    fn unlink(&mut self, thread: Thread, queue: Queue, idx: u32) {
        if let (Thread::Recency, Queue::Probation) = (thread, queue) {
            self.probation_len -= 1;
        }
        let Link { prev, next } = *self.link(thread, idx);
        if prev != NIL {
            self.link(thread, prev).next = next;
        } else {
            self.list(thread, queue).head = next;
        }
        if next != NIL {
            self.link(thread, next).prev = prev;
        } else {
            self.list(thread, queue).tail = prev;
        }
        *self.link(thread, idx) = UNLINKED;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn pkt(src: u8, sport: u16, dst: u8, dport: u16, flags: u16, len: u32) -> FrameSummary {
        let mut s = FrameSummary {
            ip_version: 4,
            protocol: PROTO_TCP,
            src_port: sport,
            dst_port: dport,
            tcp_flags: flags,
            ip_octets: len,
            ttl: 64,
            ..Default::default()
        };
        s.src_addr[..4].copy_from_slice(&[10, 0, 0, src]);
        s.dst_addr[..4].copy_from_slice(&[10, 0, 0, dst]);
        s
    }

    fn cache() -> FlowCache {
        FlowCache::new(CacheConfig {
            max_flows: 3,
            ..Default::default()
        })
    }

    #[test]
    fn counts_packets_bytes_times_and_flags() {
        let mut c = cache();
        let mut out = vec![];
        c.update(&pkt(1, 1000, 2, 80, 0x02, 60), 10 * S, &mut out);
        let mut p = pkt(1, 1000, 2, 80, 0x10, 1500);
        p.ttl = 50;
        c.update(&p, 11 * S, &mut out);
        c.update(&pkt(2, 80, 1, 1000, 0x12, 60), 10 * S + 5, &mut out);
        c.finish(&mut out);
        assert_eq!(out.len(), 2);
        let f = out.iter().find(|r| r.dst_port == 80).unwrap();
        assert_eq!((f.packets, f.octets, f.tcp_flags), (2, 1560, 0x12));
        assert_eq!((f.start_ns, f.end_ns), (10 * S, 11 * S));
        assert_eq!((f.min_ttl, f.max_ttl), (50, 64));
        assert_eq!(f.end_reason, EndReason::ForcedEnd);
        assert!(c.is_empty());
    }

    #[test]
    fn idle_and_active_timeouts() {
        let mut c = cache();
        let mut out = vec![];
        c.update(&pkt(1, 1, 2, 2, 0, 100), 0, &mut out);
        // A long-lived flow: a packet every 10 s for 70 s.
        for t in (0..=70).step_by(10) {
            c.expire(t * S, &mut out);
            c.update(&pkt(3, 3, 4, 4, 0, 100), t * S, &mut out);
        }
        let idle: Vec<_> = out
            .iter()
            .filter(|r| r.end_reason == EndReason::IdleTimeout)
            .collect();
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].src_port, 1);
        let active: Vec<_> = out
            .iter()
            .filter(|r| r.end_reason == EndReason::ActiveTimeout)
            .collect();
        assert_eq!(active.len(), 1);
        // The first delta covers 0..50 s (six packets); the packet at 60 s starts the next one.
        assert_eq!(
            (active[0].packets, active[0].start_ns, active[0].end_ns),
            (6, 0, 50 * S)
        );
        c.finish(&mut out);
        let rest = out.last().unwrap();
        assert_eq!(
            (rest.packets, rest.start_ns, rest.end_reason),
            (2, 60 * S, EndReason::ForcedEnd)
        );
    }

    #[test]
    fn idle_split_is_exact_although_the_scan_is_lazy() {
        let mut c = cache();
        let mut out = vec![];
        c.update(&pkt(1, 1, 2, 2, 0, 100), 0, &mut out);
        c.update(&pkt(1, 1, 2, 2, 0, 100), 5 * S, &mut out);
        // The scan at 15 s finds the flow seen since it was queued and requeues it.
        c.expire(15 * S, &mut out);
        assert!(out.is_empty());
        // 16 s after its last packet: the next packet must start a new record.
        c.update(&pkt(1, 1, 2, 2, 0, 100), 21 * S, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].packets, out[0].end_ns, out[0].end_reason),
            (2, 5 * S, EndReason::IdleTimeout)
        );
        // A quiet flow leaves by the scan within twice the idle timeout of its last packet.
        c.expire(21 * S + 2 * 15 * S, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((out[1].packets, out[1].start_ns), (1, 21 * S));
    }

    #[test]
    fn tcp_fin_both_ways_and_rst_end_flows_after_grace() {
        let mut c = cache();
        let mut out = vec![];
        c.update(&pkt(1, 1000, 2, 80, 0x11, 52), 0, &mut out); // FIN from client
        c.expire(5 * S, &mut out);
        assert!(out.is_empty(), "one FIN does not end a connection");
        c.update(&pkt(2, 80, 1, 1000, 0x11, 52), 5 * S, &mut out); // FIN from server
        c.update(&pkt(1, 1000, 2, 80, 0x10, 52), 5 * S + 1, &mut out); // last ACK joins
        c.expire(6 * S, &mut out);
        assert!(out.is_empty(), "grace not over yet");
        c.expire(8 * S, &mut out);
        assert_eq!(out.len(), 2);
        assert!(out
            .iter()
            .all(|r| r.end_reason == EndReason::EndOfFlowDetected));
        assert_eq!(out.iter().find(|r| r.dst_port == 80).unwrap().packets, 2);

        out.clear();
        c.update(&pkt(1, 2000, 2, 80, 0x02, 52), 10 * S, &mut out);
        c.update(&pkt(2, 80, 1, 2000, 0x04, 40), 10 * S, &mut out); // RST from server
        c.expire(12 * S, &mut out);
        assert_eq!(out.len(), 2);
        assert!(out
            .iter()
            .all(|r| r.end_reason == EndReason::EndOfFlowDetected));
    }

    #[test]
    fn the_end_of_input_keeps_a_clean_close_as_end_of_flow() {
        let mut c = cache();
        let mut out = vec![];
        // Closed both ways, grace not over when the input ends; and a connection still open.
        c.update(&pkt(1, 1000, 2, 80, 0x11, 52), 0, &mut out);
        c.update(&pkt(2, 80, 1, 1000, 0x11, 52), S, &mut out);
        c.update(&pkt(3, 3000, 2, 80, 0x10, 52), S, &mut out);
        c.finish(&mut out);
        let reason = |port| out.iter().find(|r| r.src_port == port).unwrap().end_reason;
        assert_eq!(reason(1000), EndReason::EndOfFlowDetected);
        assert_eq!(reason(80), EndReason::EndOfFlowDetected);
        assert_eq!(reason(3000), EndReason::ForcedEnd);
        assert_eq!((c.stats().end_of_flow, c.stats().forced_end), (2, 1));
    }

    #[test]
    fn full_cache_evicts_least_recently_seen() {
        let mut c = cache();
        let mut out = vec![];
        for (i, t) in [(1u8, 1u64), (2, 2), (3, 3), (1, 4)] {
            c.update(&pkt(i, 1, 9, 9, 0, 10), t, &mut out);
        }
        c.update(&pkt(4, 1, 9, 9, 0, 10), 5, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end_reason, EndReason::LackOfResources);
        // Flow 1 was created first but seen again at t=4: flow 2 is the least recently seen.
        assert_eq!(
            out[0].src_addr,
            "10.0.0.2".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(c.len(), 3);
        assert_eq!(c.stats().lack_of_resources, 1);
    }

    /// 1,000 flows of room; 50 conversations (one segment each way every 100 ms) under a flood
    /// of 20,000 new one-packet SYNs per second to 10.0.0.2:80, for 5 s: least recently seen
    /// eviction would cut every conversation into one-packet records. Returns the records,
    /// the cache's counters and the flood's packets.
    fn flood(rollup: Option<RollupConfig>) -> (Vec<FlowRecord>, CacheStats, u64) {
        let mut c = FlowCache::new(CacheConfig {
            max_flows: 1000,
            rollup,
            ..Default::default()
        });
        let mut out = vec![];
        let conv = |i: u16, back: bool| {
            let mut p = pkt(1, 10_000 + i, 2, 443, 0x18, 100);
            if back {
                std::mem::swap(&mut p.src_addr, &mut p.dst_addr);
                std::mem::swap(&mut p.src_port, &mut p.dst_port);
            }
            p
        };
        let mut flood = 0u32;
        let mut t = S;
        for tick in 0..50u64 {
            for i in 0..50 {
                c.update(&conv(i, false), t, &mut out);
                c.update(&conv(i, true), t, &mut out);
            }
            for _ in 0..2000 {
                flood += 1;
                let mut p = pkt(0, (flood & 0xffff) as u16, 2, 80, TCP_SYN, 40);
                p.src_addr[..4].copy_from_slice(&(0x0b00_0000 | flood).to_be_bytes());
                p.ttl = 40 + (flood % 20) as u8;
                t += 50_000;
                c.update(&p, t, &mut out);
            }
            t = S + (tick + 1) * 100_000_000;
            c.expire(t, &mut out);
        }
        c.finish(&mut out);
        (out, c.stats(), flood as u64)
    }

    /// The conversations of [`flood`]: each direction in one record of 50 packets.
    fn assert_conversations_whole(out: &[FlowRecord]) {
        let conversations: Vec<_> = out
            .iter()
            .filter(|r| r.aggregate.is_none() && (r.packets > 1 || r.dst_port != 80))
            .collect();
        assert_eq!(conversations.len(), 100, "each direction in one record");
        assert!(conversations
            .iter()
            .all(|r| r.packets == 50 && r.end_reason == EndReason::ForcedEnd));
    }

    #[test]
    fn a_flood_of_one_packet_flows_leaves_the_conversations_whole() {
        let (out, st, flood) = flood(None);
        assert_conversations_whole(&out);
        assert_eq!(st.flows_created, 100 + flood);
        assert_eq!(st.evicted_probation, st.lack_of_resources);
        assert!(st.lack_of_resources >= flood - 1000, "{st:?}");
        assert_eq!(st.rollup, RollupStats::default());
        let packets: u64 = out.iter().map(|r| r.packets).sum();
        assert_eq!(packets, 50 * 100 + flood);
    }

    #[test]
    fn a_flood_rolls_up_into_a_few_aggregates_and_every_packet_is_in_one_record() {
        let (out, st, flood) = flood(Some(RollupConfig {
            interval_ns: S,
            on_per_sec: None,
        }));
        assert_conversations_whole(&out);
        let aggregates: Vec<_> = out.iter().filter(|r| r.aggregate.is_some()).collect();
        let singles = out.len() - aggregates.len() - 100;
        // The pressure starts once 64 flows were evicted in a second (the floor for a cache
        // of 1,000): those leave as records of their own; every later one is rolled up, also
        // those still in the cache at the end.
        assert!(singles <= 64, "{singles} one-packet records; {st:?}");
        assert_eq!(st.evicted_probation as usize, singles);
        assert_eq!(st.lack_of_resources as usize, singles);
        assert_eq!(st.rollup.rolled_up as usize + singles, flood as usize);
        // One aggregate a second (the interval) to 10.0.0.2:80, SYN, from many sources.
        assert!((5..=7).contains(&aggregates.len()), "{}", aggregates.len());
        for a in &aggregates {
            let g = a.aggregate.as_deref().unwrap();
            assert_eq!(g.kept, ipfix_export::Kept::Destination);
            assert_eq!(a.dst_addr, "10.0.0.2".parse::<std::net::IpAddr>().unwrap());
            assert!(a.src_addr.is_unspecified());
            assert_eq!((a.dst_port, a.protocol, a.tcp_flags), (80, 6, TCP_SYN));
            assert_eq!(g.flows, a.packets, "one packet a flow");
            assert_eq!(a.octets, 40 * a.packets);
            assert_eq!((a.min_ttl, a.max_ttl), (40, 59));
            let err = (g.distinct as f64 - g.flows as f64).abs() / g.flows as f64;
            assert!(
                err < 0.1,
                "{} sources estimated for {}",
                g.distinct,
                g.flows
            );
        }
        assert_eq!(st.rollup.aggregate_records as usize, aggregates.len());
        // The books: every flow created is in a record or an aggregate, and so is every packet.
        assert_eq!(
            st.flows_created,
            st.records_exported() + st.rollup.rolled_up
        );
        assert_eq!(st.records() as usize, out.len());
        let packets: u64 = out.iter().map(|r| r.packets).sum();
        assert_eq!(packets, 50 * 100 + flood);
        assert_eq!(st.rollup.episodes, 1);
        assert_eq!(st.rollup.active, 1, "the flood was still on at the end");
    }

    #[test]
    fn the_pressure_mode_ends_after_calm_seconds_and_does_not_flap() {
        let mut c = FlowCache::new(CacheConfig {
            max_flows: 1000,
            idle_timeout_ns: 3600 * S,
            ..Default::default()
        });
        let mut out = vec![];
        let mut n = 0u32;
        let mut syn = |c: &mut FlowCache, t: u64, out: &mut Vec<FlowRecord>| {
            n += 1;
            let mut p = pkt(0, 1, 2, 80, TCP_SYN, 40);
            p.src_addr[..4].copy_from_slice(&(0x0b00_0000 | n).to_be_bytes());
            c.update(&p, t, out);
        };
        // Fill the cache, then 3 s of 1,000 SYNs a second: pressure.
        for i in 0..1000 {
            syn(&mut c, S + i, &mut out);
        }
        for sec in 1..4u64 {
            for i in 0..1000 {
                syn(&mut c, sec * S + i * 1_000_000, &mut out);
            }
        }
        assert_eq!(c.stats().rollup.active, 1);
        // Then 30 SYNs a second (above a quarter of the 64 that start it: still a flood) for
        // 10 s: the mode stays on.
        for sec in 4..14u64 {
            for i in 0..30 {
                syn(&mut c, sec * S + i * 10_000_000, &mut out);
            }
            c.expire(sec * S + 999_000_000, &mut out);
        }
        assert_eq!(c.stats().rollup.active, 1, "{:?}", c.stats().rollup);
        // Then 5 SYNs a second: after five calm seconds the mode ends and the aggregates leave.
        for sec in 14..22u64 {
            for i in 0..5 {
                syn(&mut c, sec * S + i * 100_000_000, &mut out);
            }
            c.expire(sec * S + 999_000_000, &mut out);
        }
        let st = c.stats();
        assert_eq!(st.rollup.active, 0, "{:?}", st.rollup);
        assert_eq!(st.rollup.episodes, 1);
        assert!(
            (19 * S..=20 * S).contains(&st.rollup.last_ended_ns),
            "{:?}",
            st.rollup
        );
        // After it ended, evicted flows leave one record each again.
        let before = st.lack_of_resources;
        syn(&mut c, 22 * S, &mut out);
        assert_eq!(c.stats().lack_of_resources, before + 1);
        c.finish(&mut out);
        let st = c.stats();
        assert_eq!(
            st.flows_created,
            st.records_exported() + st.rollup.rolled_up
        );
        let packets: u64 = out.iter().map(|r| r.packets).sum();
        assert_eq!(packets, n as u64);
    }

    #[test]
    fn a_flooded_servers_answers_roll_up_by_source_and_a_full_table_into_a_catch_all() {
        let mut c = FlowCache::new(CacheConfig {
            max_flows: 1000,
            ..Default::default()
        });
        let mut out = vec![];
        let mut t = S;
        // SYNs to 10.0.0.2:80 from random sources, each answered by a SYN-ACK; and UDP to
        // 5,000 different destinations (more than the 64 keyed aggregates of a small cache).
        for i in 0..5000u32 {
            let mut p = pkt(0, 1000, 2, 80, TCP_SYN, 40);
            p.src_addr[..4].copy_from_slice(&(0x0b00_0000 | i).to_be_bytes());
            let mut a = p;
            std::mem::swap(&mut a.src_addr, &mut a.dst_addr);
            std::mem::swap(&mut a.src_port, &mut a.dst_port);
            a.tcp_flags = TCP_SYN | TCP_ACK;
            let mut u = pkt(3, 53, 0, 9999, 0, 60);
            u.protocol = crate::wire::transport::PROTO_UDP;
            u.dst_addr[..4].copy_from_slice(&(0x0c00_0000 | i).to_be_bytes());
            for f in [p, a, u] {
                t += 10_000;
                c.update(&f, t, &mut out);
            }
        }
        c.finish(&mut out);
        let agg = |kept| {
            out.iter()
                .filter(|r| r.aggregate.as_ref().is_some_and(|a| a.kept == kept))
                .collect::<Vec<_>>()
        };
        let by_src = agg(ipfix_export::Kept::Source);
        assert_eq!(by_src.len(), 1);
        let a = by_src[0];
        assert_eq!(a.src_addr, "10.0.0.2".parse::<std::net::IpAddr>().unwrap());
        assert_eq!((a.src_port, a.tcp_flags), (80, TCP_SYN | TCP_ACK));
        assert!(a.dst_addr.is_unspecified());
        let g = a.aggregate.as_deref().unwrap();
        assert!(g.flows > 4000, "{g:?}");
        assert!(
            (g.distinct as f64 / g.flows as f64 - 1.0).abs() < 0.1,
            "{g:?}"
        );
        let catch_all = agg(ipfix_export::Kept::Neither);
        assert_eq!(
            catch_all.len(),
            1,
            "UDP past the table's 64 keys: one catch-all"
        );
        assert_eq!(catch_all[0].protocol, crate::wire::transport::PROTO_UDP);
        let st = c.stats();
        assert!(st.rollup.rolled_into_catch_all > 4000, "{:?}", st.rollup);
        assert!(agg(ipfix_export::Kept::Destination).len() <= 64 + 1);
        let packets: u64 = out.iter().map(|r| r.packets).sum();
        assert_eq!(packets, 15_000);
        assert_eq!(
            st.flows_created,
            st.records_exported() + st.rollup.rolled_up
        );
    }

    #[test]
    fn keys_crafted_into_one_bucket_under_a_known_seed_spread_under_a_secret_one() {
        // What someone who knows the table's seed does: search flows until 100 of them hash
        // to the same 4,096th of the table (one probe sequence of the index).
        let with_seed = |seed| {
            FlowCache::new(CacheConfig {
                hash_seed: Some(seed),
                ..Default::default()
            })
        };
        let (known, secret) = (with_seed(1), with_seed(0x5eed_1234_abcd_9876));
        let crafted: Vec<FlowKey> = (0u32..)
            .map(|i| {
                let mut s = pkt(0, (i % 50_000) as u16, 9, 443, TCP_SYN, 40);
                s.src_addr[..4].copy_from_slice(&(0x0b00_0000 | i).to_be_bytes());
                FlowKey::of(&s, true)
            })
            .filter(|k| known.hasher.hash_one(k) & 4095 == 0)
            .take(100)
            .collect();
        let buckets: std::collections::BTreeSet<u64> = crafted
            .iter()
            .map(|k| secret.hasher.hash_one(k) & 4095)
            .collect();
        // 100 keys thrown at random into 4,096 buckets share one only now and then.
        assert!(buckets.len() >= 95, "{} buckets", buckets.len());
    }

    #[test]
    fn flows_with_history_still_make_room_when_they_fill_the_cache() {
        // Every flow has history: the cache must still take new flows (evicting the least
        // recently seen of them), and a new flow must get the chance to earn its second packet.
        let mut c = FlowCache::new(CacheConfig {
            max_flows: 16,
            ..Default::default()
        });
        let mut out = vec![];
        for i in 0..16u8 {
            c.update(&pkt(i, 1, 9, 9, 0, 10), i as u64, &mut out);
            c.update(&pkt(i, 1, 9, 9, 0, 10), i as u64, &mut out);
        }
        assert!(out.is_empty());
        // A new conversation's two packets arrive with a new flow between them.
        c.update(&pkt(100, 1, 9, 9, 0, 10), 100, &mut out);
        c.update(&pkt(101, 1, 9, 9, 0, 10), 101, &mut out);
        c.update(&pkt(100, 1, 9, 9, 0, 10), 102, &mut out);
        assert_eq!(out.len(), 2, "two flows with history made room");
        assert!(out.iter().all(|r| r.packets == 2));
        c.finish(&mut out);
        let new = out
            .iter()
            .find(|r| r.src_addr.to_string() == "10.0.0.100")
            .unwrap();
        assert_eq!(new.packets, 2);
        assert_eq!(c.stats().evicted_probation, 0);
    }

    #[test]
    fn full_cache_with_out_of_order_timestamps_still_evicts() {
        // Every cached flow was seen after the arriving packet's timestamp.
        let mut c = cache();
        let mut out = vec![];
        for i in 1..=3u8 {
            c.update(&pkt(i, 1, 9, 9, 0, 10), 100 * S, &mut out);
            c.update(&pkt(i, 1, 9, 9, 0, 10), 101 * S, &mut out);
        }
        c.update(&pkt(4, 1, 9, 9, 0, 10), 50 * S, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end_reason, EndReason::LackOfResources);
        c.expire(200 * S, &mut out);
        assert_eq!(out.iter().map(|r| r.packets).sum::<u64>(), 7);
    }

    #[test]
    fn slots_are_reused_and_lists_stay_consistent_under_churn() {
        let mut c = FlowCache::new(CacheConfig {
            max_flows: 64,
            idle_timeout_ns: 50,
            ..Default::default()
        });
        let mut out = vec![];
        let mut x: u32 = 12345;
        let mut sent = 0u64;
        for t in 0..100_000u64 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let p = pkt(
                (x >> 8) as u8,
                (x >> 16) as u16 % 200,
                1,
                80,
                [0, 0x01, 0x04, 0x10][(x & 3) as usize],
                40,
            );
            c.expire(t, &mut out);
            c.update(&p, t, &mut out);
            sent += 1;
        }
        c.finish(&mut out);
        assert_eq!(out.iter().map(|r| r.packets).sum::<u64>(), sent);
        assert!(c.nodes.len() <= 64);
        assert_eq!(c.stats().records_exported(), out.len() as u64);
    }

    #[test]
    fn timestamps_at_the_end_of_time_do_not_overflow() {
        // A hostile pcapng (if_tsoffset) can put packets near u64::MAX nanoseconds.
        let mut c = cache();
        let mut out = vec![];
        for t in [u64::MAX - 5, u64::MAX - 1, u64::MAX] {
            c.expire(t, &mut out);
            c.update(&pkt(1, 1, 2, 2, 0x11, 40), t, &mut out);
            c.update(&pkt(2, 2, 1, 1, 0x11, 40), t, &mut out);
        }
        c.finish(&mut out);
        assert_eq!(out.iter().map(|r| r.packets).sum::<u64>(), 6);
    }

    #[test]
    fn biflows_pair_directions_with_the_syn_sender_forward() {
        let mut c = FlowCache::new(CacheConfig {
            biflow: true,
            ..Default::default()
        });
        let mut out = vec![];
        // The capture starts with the server's SYN-ACK; the client's bare SYN comes second
        // (out of order), and still makes the client the initiator.
        c.update(&pkt(2, 80, 1, 1000, 0x12, 60), 10 * S, &mut out);
        c.update(&pkt(1, 1000, 2, 80, 0x02, 60), 10 * S + 1, &mut out);
        c.update(&pkt(1, 1000, 2, 80, 0x10, 1500), 11 * S, &mut out);
        // A flow without its reverse.
        c.update(&pkt(3, 5, 4, 6, 0x10, 100), 11 * S, &mut out);
        c.finish(&mut out);
        assert_eq!(out.len(), 2);
        let bi = out
            .iter()
            .find(|r| r.dst_port == 80)
            .expect("client forward");
        assert_eq!((bi.packets, bi.octets), (2, 1560));
        let rev = bi.reverse.unwrap();
        assert_eq!((rev.packets, rev.octets, rev.tcp_flags), (1, 60, 0x12));
        assert_eq!(rev.start_ns, 10 * S);
        let lone = out.iter().find(|r| r.dst_port == 6).unwrap();
        assert_eq!(lone.reverse, None, "unpaired: no reverse side");
        let st = c.stats();
        assert_eq!(
            (st.records_exported(), st.paired_reverse, st.records()),
            (3, 1, 2)
        );
    }

    #[test]
    fn node_stays_small() {
        // The memory target is 200 bytes per flow, index included. The overlay segment in the
        // key (VNI/GRE key, 5 bytes) took the node from 120 to exactly two cache lines.
        assert!(
            std::mem::size_of::<Node>() <= 128,
            "{}",
            std::mem::size_of::<Node>()
        );
    }
}
