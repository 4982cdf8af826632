//! Rolling a flood up into a few records (issue #28, RFC 7015).
//!
//! A random-source flood makes one flow per packet. The segmented cache already keeps the
//! conversations whole by evicting those one-packet flows first (see [`super::cache`]); this
//! module decides what happens to them:
//!
//! - **Pressure** is the cache evicting one-packet flows from probation faster than
//!   [`RollupConfig::on_per_sec`] in one second of packet time. It ends after
//!   [`CALM_SECONDS`] seconds in a row with fewer than a quarter of that, so a flood that
//!   pulses does not flap the mode (Suricata's emergency mode has the same two-threshold
//!   shape). Below the threshold an evicted flow leaves as its own record (lackOfResources).
//! - **Under pressure** each one-packet flow that leaves probation (evicted, idle, or at the
//!   end) is rolled into an aggregate instead: one per (destination address, destination port,
//!   protocol, TCP flags) for a flood's requests, or per (source address, source port,
//!   protocol, flags) for a flooded server's SYN-ACKs and RSTs to spoofed sources (by
//!   destination those would be one aggregate per spoofed address). Each aggregate counts
//!   packets, octets, flows, first/last time, TTL range, and the distinct addresses of the side
//!   rolled away in a HyperLogLog sketch ([`super::distinct`], about 3% error).
//! - **The table is bounded**: at most `capacity` keyed aggregates (a sixty-fourth of the
//!   cache, 64 to 4,096); past that, flows go to one catch-all per protocol and family that
//!   keeps neither address (prefix lengths 0), so a flood to random destinations costs no more
//!   memory than one to a single victim. Memory is reserved when the first flood starts and
//!   reused after: nothing is allocated per flow.
//! - **Every interval** ([`RollupConfig::interval_ns`], from the first flow rolled in), when
//!   the pressure ends, and at the end of input, the aggregates leave as records and the table
//!   starts again. Every packet is in exactly one record: a flow's or an aggregate's.

use super::distinct;
use super::key::FlowKey;
use crate::wire::transport::PROTO_TCP;
use ipfix_export::{Aggregate, EndReason, FlowRecord, Kept, TimePrecision};
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Tunables of the roll-up.
#[derive(Clone, Copy, Debug)]
pub struct RollupConfig {
    /// How long an aggregate collects flows before it is exported (from its first flow).
    pub interval_ns: u64,
    /// Evictions from probation in one second that start the pressure mode. `None`: a
    /// hundredth of the cache's flows, at least 64 (1% of the cache turning over each second).
    pub on_per_sec: Option<u64>,
}

impl Default for RollupConfig {
    fn default() -> Self {
        RollupConfig {
            interval_ns: 10_000_000_000,
            on_per_sec: None,
        }
    }
}

/// Seconds in a row below a quarter of the threshold that end the pressure mode.
pub const CALM_SECONDS: u32 = 5;
const SECOND_NS: u64 = 1_000_000_000;
/// Catch-all aggregates beyond the keyed ones: one per protocol and family at most.
const CATCH_ALL: usize = 2 * 256;

/// What the roll-up counted; merged into [`super::CacheStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RollupStats {
    /// One-packet flows rolled into aggregates instead of leaving as records of their own.
    pub rolled_up: u64,
    /// Of those, flows that went to a catch-all because the aggregate table was full.
    pub rolled_into_catch_all: u64,
    /// Aggregate records exported.
    pub aggregate_records: u64,
    /// Times the pressure mode began.
    pub episodes: u64,
    /// When it first began and last ended (ns since the epoch, packet time; 0: never).
    pub first_began_ns: u64,
    pub last_ended_ns: u64,
    /// Caches in the pressure mode now (0 or 1 for one cache; merged, the workers in it).
    pub active: u64,
}

impl RollupStats {
    pub fn merge(&mut self, o: &RollupStats) {
        self.rolled_up += o.rolled_up;
        self.rolled_into_catch_all += o.rolled_into_catch_all;
        self.aggregate_records += o.aggregate_records;
        self.episodes += o.episodes;
        self.first_began_ns = match (self.first_began_ns, o.first_began_ns) {
            (0, b) | (b, 0) => b,
            (a, b) => a.min(b),
        };
        self.last_ended_ns = self.last_ended_ns.max(o.last_ended_ns);
        self.active += o.active;
    }
}

/// The key of an aggregate. Catch-alls have `kept` = Neither, no address, port or flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct AggKey {
    kept: Kept,
    v6: bool,
    addr: [u8; 16],
    port: u16,
    protocol: u8,
    tcp_flags: u16,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    key: AggKey,
    packets: u64,
    octets: u64,
    flows: u64,
    first_ns: u64,
    last_ns: u64,
    tcp_flags: u16,
    min_ttl: u8,
    max_ttl: u8,
}

/// One flow leaving probation, as the roll-up needs it.
pub(super) struct Original<'a> {
    pub key: &'a FlowKey,
    pub tcp_flags: u16,
    pub packets: u64,
    pub octets: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub min_ttl: u8,
    pub max_ttl: u8,
}

/// The pressure detector and the aggregate table of one flow cache.
pub(super) struct Rollup {
    cfg: RollupConfig,
    on_per_sec: u64,
    on: bool,
    /// Start of the current one-second tick (packet time) and its evictions so far.
    tick_start_ns: u64,
    in_tick: u64,
    calm: u32,
    /// When the open aggregates are due (0: none open).
    window_end_ns: u64,
    capacity: usize,
    table: hashbrown::HashMap<AggKey, u32, foldhash::fast::SeedableRandomState>,
    slots: Vec<Slot>,
    /// The sketches, [`distinct::REGISTERS`] bytes per slot, in slot order.
    registers: Vec<u8>,
    hasher: foldhash::fast::SeedableRandomState,
    stats: RollupStats,
}

/// TCP SYN-ACK or RST: a server's answer, rolled up by its source.
fn is_answer(protocol: u8, tcp_flags: u16) -> bool {
    const SYN_ACK: u16 = 0x12;
    protocol == PROTO_TCP && (tcp_flags & SYN_ACK == SYN_ACK || tcp_flags & 0x04 != 0)
}

impl Rollup {
    pub fn new(
        cfg: RollupConfig,
        max_flows: usize,
        hasher: foldhash::fast::SeedableRandomState,
    ) -> Rollup {
        let capacity = (max_flows / 64).clamp(64, 4096);
        Rollup {
            on_per_sec: cfg.on_per_sec.unwrap_or((max_flows as u64 / 100).max(64)),
            cfg,
            on: false,
            tick_start_ns: 0,
            in_tick: 0,
            calm: 0,
            window_end_ns: 0,
            capacity,
            table: hashbrown::HashMap::with_hasher(hasher.clone()),
            slots: Vec::new(),
            registers: Vec::new(),
            hasher,
            stats: RollupStats::default(),
        }
    }

    pub fn stats(&self) -> RollupStats {
        RollupStats {
            active: self.on as u64,
            ..self.stats
        }
    }

    /// Whether flows leaving probation are rolled up now.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// A one-packet flow is being evicted from probation at `now_ns`: counts it toward the
    /// pressure, and says whether it is to be rolled up.
    pub fn evicting(&mut self, now_ns: u64) -> bool {
        self.tick(now_ns);
        self.in_tick += 1;
        if !self.on && self.in_tick >= self.on_per_sec {
            self.on = true;
            self.calm = 0;
            self.stats.episodes += 1;
            if self.stats.first_began_ns == 0 {
                self.stats.first_began_ns = now_ns;
            }
        }
        self.on
    }

    /// Whether [`Self::poll`] has anything to do at `now_ns`: a tick to close or aggregates due.
    #[inline(always)]
    pub fn poll_due(&self, now_ns: u64) -> bool {
        now_ns >= self.tick_start_ns.saturating_add(SECOND_NS)
            || (self.window_end_ns != 0 && now_ns >= self.window_end_ns)
    }

    /// Closes the ticks that have passed (which may end the mode) and exports the aggregates
    /// when their interval is over or the mode has ended.
    pub fn poll(&mut self, now_ns: u64, precision: TimePrecision, out: &mut Vec<FlowRecord>) {
        self.tick(now_ns);
        if self.window_end_ns != 0 && (now_ns >= self.window_end_ns || !self.on) {
            self.flush(EndReason::ActiveTimeout, precision, out);
        }
    }

    /// Closes the ticks that ended before `now_ns`.
    fn tick(&mut self, now_ns: u64) {
        if now_ns < self.tick_start_ns.saturating_add(SECOND_NS) {
            return;
        }
        let passed = (now_ns - self.tick_start_ns) / SECOND_NS;
        if self.on {
            // The tick that just ended, then `passed - 1` empty ones after it.
            let empty = (passed - 1).min(u32::MAX as u64) as u32;
            self.calm = if self.in_tick < self.on_per_sec.div_ceil(4) {
                self.calm.saturating_add(1).saturating_add(empty)
            } else {
                empty
            };
            if self.calm >= CALM_SECONDS {
                self.on = false;
                self.stats.last_ended_ns = now_ns;
            }
        }
        self.in_tick = 0;
        self.tick_start_ns += passed * SECOND_NS;
    }

    /// Rolls one flow into its aggregate.
    pub fn roll(&mut self, f: Original<'_>, now_ns: u64) {
        if self.slots.capacity() == 0 {
            // The first flood: the table's memory, once. Untouched pages cost nothing.
            self.slots.reserve_exact(self.capacity + CATCH_ALL);
            self.registers
                .reserve_exact((self.capacity + CATCH_ALL) * distinct::REGISTERS);
            self.table.reserve(self.capacity + CATCH_ALL);
        }
        let k = f.key;
        let v6 = k.ip_version == 6;
        let (kept, addr, port, away) = if is_answer(k.protocol, f.tcp_flags) {
            (Kept::Source, k.src_addr, k.src_port, &k.dst_addr)
        } else {
            (Kept::Destination, k.dst_addr, k.dst_port, &k.src_addr)
        };
        let mut key = AggKey {
            kept,
            v6,
            addr,
            port,
            protocol: k.protocol,
            tcp_flags: f.tcp_flags,
        };
        if self.table.len() >= self.capacity && !self.table.contains_key(&key) {
            key = AggKey {
                kept: Kept::Neither,
                v6,
                addr: [0; 16],
                port: 0,
                protocol: k.protocol,
                tcp_flags: 0,
            };
            self.stats.rolled_into_catch_all += 1;
        }
        let slot = match self.table.get(&key) {
            Some(&s) => s as usize,
            None => {
                let s = self.slots.len();
                self.slots.push(Slot {
                    key,
                    packets: 0,
                    octets: 0,
                    flows: 0,
                    first_ns: f.first_ns,
                    last_ns: f.last_ns,
                    tcp_flags: 0,
                    min_ttl: f.min_ttl,
                    max_ttl: f.max_ttl,
                });
                self.registers
                    .resize(self.registers.len() + distinct::REGISTERS, 0);
                self.table.insert(key, s as u32);
                if self.window_end_ns == 0 {
                    self.window_end_ns = now_ns.saturating_add(self.cfg.interval_ns).max(1);
                }
                s
            }
        };
        let a = &mut self.slots[slot];
        a.packets += f.packets;
        a.octets += f.octets;
        a.flows += 1;
        a.first_ns = a.first_ns.min(f.first_ns);
        a.last_ns = a.last_ns.max(f.last_ns);
        a.tcp_flags |= f.tcp_flags;
        a.min_ttl = a.min_ttl.min(f.min_ttl);
        a.max_ttl = a.max_ttl.max(f.max_ttl);
        let h = distinct::mix(self.hasher.hash_one(away));
        let r = slot * distinct::REGISTERS;
        distinct::add(&mut self.registers[r..r + distinct::REGISTERS], h);
        self.stats.rolled_up += 1;
    }

    /// Exports every open aggregate and empties the table (its memory stays).
    pub fn flush(
        &mut self,
        reason: EndReason,
        precision: TimePrecision,
        out: &mut Vec<FlowRecord>,
    ) {
        for (i, a) in self.slots.iter().enumerate() {
            let r = i * distinct::REGISTERS;
            let distinct = distinct::estimate(&self.registers[r..r + distinct::REGISTERS]);
            out.push(record(a, distinct, reason, precision));
        }
        self.stats.aggregate_records += self.slots.len() as u64;
        self.slots.clear();
        self.registers.clear();
        self.table.clear();
        self.window_end_ns = 0;
    }
}

fn any(v6: bool) -> IpAddr {
    if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    }
}

fn address(v6: bool, a: &[u8; 16]) -> IpAddr {
    super::key::ip(if v6 { 6 } else { 4 }, a)
}

/// The record of one aggregate: the kept side's address and port, the other side's zero.
fn record(a: &Slot, distinct: u64, reason: EndReason, precision: TimePrecision) -> FlowRecord {
    let k = &a.key;
    let icmp = matches!(k.protocol, 1 | 58);
    let (src_addr, src_port, dst_addr, dst_port) = match k.kept {
        Kept::Destination => (any(k.v6), 0, address(k.v6, &k.addr), k.port),
        Kept::Source => (address(k.v6, &k.addr), k.port, any(k.v6), 0),
        Kept::Neither => (any(k.v6), 0, any(k.v6), 0),
    };
    FlowRecord {
        src_addr,
        dst_addr,
        src_port,
        dst_port,
        protocol: k.protocol,
        class_of_service: 0,
        tcp_flags: a.tcp_flags,
        min_ttl: a.min_ttl,
        max_ttl: a.max_ttl,
        icmp_type_code: if icmp { dst_port } else { 0 },
        vlan_id: 0,
        customer_vlan_id: 0,
        mpls_top_label: [0; 3],
        src_mac: [0; 6],
        dst_mac: [0; 6],
        packets: a.packets,
        octets: a.octets,
        start_ns: a.first_ns,
        end_ns: a.last_ns,
        end_reason: reason,
        time_precision: precision,
        reverse: None,
        tunnel: None,
        ingress_interface: 0,
        app: None,
        community_id: None,
        aggregate: Some(Box::new(Aggregate {
            flows: a.flows,
            distinct,
            kept: k.kept,
        })),
    }
}
