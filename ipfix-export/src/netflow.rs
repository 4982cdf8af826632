//! NetFlow version 5 and version 9 (RFC 3954) for collectors that predate IPFIX.
//!
//! Both carry flow times as milliseconds of the exporter's "system uptime", relative to a
//! header that gives the uptime and the wall time of export: a collector computes
//! `absolute = header wall time - sysUptime + First`. RFC 3954 §5.1 makes sysUptime the time
//! since one fixed boot, so an encoder (one destination session) chooses its boot time once,
//! with its first flows, and every header after that implies the same boot: sysUptime only
//! grows, apart from its 2^32 ms wrap (49.7 days).
//!
//! **Which clock the headers follow**, also chosen once, with the first flows: the wall clock
//! when those flows are recent (live capture, a pipe, a capture of the last 24.8 days); else
//! the capture's own clock, the newest flow end seen (an old capture file read today), so that
//! flows from years ago are still within 2^32 ms of their header. Headers never go back.
//!
//! **The boot time** is put the metering process's active timeout (plus a minute of expiry
//! lag) before the oldest flow of the first message: no later record can have started before
//! the first packet, and the first record leaves at the latest one active timeout after it, so
//! every First is positive. Were one older (an active timeout beyond `u32` seconds), its time is
//! carried modulo 2^32 like any wrapped uptime, and RFC 3954 collectors that handle the wrap
//! (nfdump: "First > Last" and "Last > sysUptime") still date it exactly.
//!
//! **Flows that no header can date**: a flow that ended more than 2^32 ms before the newest
//! header already sent (a second capture file older than the first by over 49 days) cannot be
//! carried exactly by any NetFlow collector. It is exported anyway and counted as
//! `undatable`. The flow times are patched in when the message is finished, once its header
//! time is known.
//!
//! v5 is IPv4 only, with 32-bit counters: IPv6 flows are counted as not exportable, and counts
//! beyond 2^32-1 are clamped (and counted). v9 uses templates like IPFIX, re-sent inline; the
//! first templates go out with the first flows, never alone, since no boot time exists before.

use crate::encoder::{ConfigError, EncoderStats, Message};
use crate::options::{FlowTotals, Sampling};
use crate::record::FlowRecord;
use std::net::IpAddr;

/// Most records in a v5 packet (Cisco's limit; collectors reject more).
pub const V5_MAX_RECORDS: usize = 30;
const V5_HEADER_LEN: usize = 24;
const V5_RECORD_LEN: usize = 48;
const V9_HEADER_LEN: usize = 20;
/// Offsets of First and Last in a v5 record.
const V5_FIRST: usize = 24;

/// The widest window of flow times one message may hold, and how recent the first flows must
/// be for the headers to follow the wall clock.
const WINDOW_MS: u64 = 1 << 31;
/// The range of sysUptime and of First/Last: a flow further back than this from its header
/// cannot be dated.
const WRAP_MS: u64 = 1 << 32;
/// Added to the active timeout when placing the boot time: the expiry scan's lag and batching.
const EXPIRY_LAG_MS: u64 = 60_000;

/// The session's clock, fixed by its first message with flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Clock {
    boot_ms: u64,
    /// Headers follow the wall clock (else the newest flow end).
    wall: bool,
}

/// Flow times of the open message, resolved against the session's clock when it is finished.
struct Uptime {
    /// (offset of First in the message; Last follows), start ms, end ms.
    entries: Vec<(usize, u64, u64)>,
    min_start: u64,
    max_end: u64,
    /// How far before the first message's oldest flow the boot time goes.
    lead_ms: u64,
    clock: Option<Clock>,
    /// The newest header time sent, in unix ms: headers never go back.
    last_header_ms: u64,
    /// Flows exported with times no header could carry (see the module's documentation).
    undatable: u64,
}

impl Uptime {
    fn new(cap: usize, active_timeout_secs: u32) -> Uptime {
        Uptime {
            entries: Vec::with_capacity(cap),
            min_start: u64::MAX,
            max_end: 0,
            lead_ms: active_timeout_secs as u64 * 1000 + EXPIRY_LAG_MS,
            clock: None,
            last_header_ms: 0,
            undatable: 0,
        }
    }

    /// Whether a flow with these times can join the open message.
    fn fits(&self, start: u64, end: u64) -> bool {
        self.entries.is_empty() || (end.max(self.max_end) - start.min(self.min_start) < WINDOW_MS)
    }

    fn add(&mut self, first_offset: usize, start: u64, end: u64) {
        self.entries.push((first_offset, start, end));
        self.min_start = self.min_start.min(start);
        self.max_end = self.max_end.max(end);
    }

    /// Chooses the header's wall time and uptime, writes First/Last into `buf`, and resets.
    /// Returns (unix ms of the header, sysUptime ms).
    fn resolve(&mut self, now_ms: u64, buf: &mut [u8]) -> (u64, u32) {
        // Whole seconds: v9's header has no sub-second field, and the boot time a collector
        // derives must come out the same in every message.
        let round_up = |t: u64| t.div_ceil(1000) * 1000;
        let clock = match self.clock {
            Some(c) => c,
            None if self.entries.is_empty() => {
                // Nothing dated yet (cannot happen: the first message carries flows). Sent
                // without fixing the clock.
                return (round_up(now_ms), self.lead_ms as u32);
            }
            None => {
                let wall = now_ms.saturating_sub(self.min_start) < WINDOW_MS;
                let oldest = if wall {
                    self.min_start.min(now_ms)
                } else {
                    self.min_start
                };
                // Collectors read a First of 0 as "no time": the lead is at least a minute.
                let boot_ms = (oldest.saturating_sub(self.lead_ms) / 1000) * 1000;
                *self.clock.insert(Clock { boot_ms, wall })
            }
        };
        let newest = if clock.wall {
            now_ms.max(self.max_end)
        } else {
            self.max_end
        };
        let header_ms = round_up(newest).max(self.last_header_ms);
        self.last_header_ms = header_ms;
        for &(off, s, e) in &self.entries {
            if header_ms - e.min(header_ms) >= WRAP_MS || e - s >= WRAP_MS {
                self.undatable += 1;
            }
            // Modulo 2^32, as RFC 3954's uptime itself (see the module's documentation).
            let first = s.wrapping_sub(clock.boot_ms) as u32;
            let last = e.wrapping_sub(clock.boot_ms) as u32;
            buf[off..off + 4].copy_from_slice(&first.to_be_bytes());
            buf[off + 4..off + 8].copy_from_slice(&last.to_be_bytes());
        }
        self.entries.clear();
        self.min_start = u64::MAX;
        self.max_end = 0;
        (header_ms, header_ms.wrapping_sub(clock.boot_ms) as u32)
    }
}

fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

fn clamp32(v: u64, clamped: &mut u64) -> u32 {
    if v > u32::MAX as u64 {
        *clamped += 1;
        u32::MAX
    } else {
        v as u32
    }
}

/// What a NetFlow encoder could not carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetflowLosses {
    /// Flows v5 cannot carry (IPv6), with their packets and octets.
    pub not_exportable: FlowTotals,
    /// Records whose packet or octet count exceeded 32 bits and was clamped (v5).
    pub clamped: u64,
    /// Records exported with times no NetFlow header could carry exactly: ended more than
    /// 2^32 ms (49.7 days) before their message's header, or lasting longer than that.
    pub undatable: u64,
}

/// NetFlow v5 packets of at most 30 records.
pub struct V5Encoder {
    buf: Vec<u8>,
    records: usize,
    flows: FlowTotals,
    uptime: Uptime,
    /// Flows exported before the open packet (the header's flow_sequence).
    sequence: u32,
    sampling: u16,
    engine_id: u8,
    stats: EncoderStats,
    losses: NetflowLosses,
}

impl V5Encoder {
    /// `active_timeout_secs`: the metering process's active timeout, which places the boot
    /// time (see the module's documentation).
    pub fn new(engine_id: u8, sampling: Option<Sampling>, active_timeout_secs: u32) -> V5Encoder {
        let mut e = V5Encoder {
            buf: vec![0; V5_HEADER_LEN + V5_MAX_RECORDS * V5_RECORD_LEN],
            records: 0,
            flows: FlowTotals::default(),
            uptime: Uptime::new(V5_MAX_RECORDS, active_timeout_secs),
            sequence: 0,
            sampling: 0,
            engine_id,
            stats: EncoderStats::default(),
            losses: NetflowLosses::default(),
        };
        e.set_sampling(sampling);
        e
    }

    /// The sampling the headers state (a reload changed it in the kernel).
    pub fn set_sampling(&mut self, sampling: Option<Sampling>) {
        // Top two bits 01: packet-interval sampling; low 14 bits: the interval.
        self.sampling = sampling.map_or(0, |s| 0x4000 | (s.every.min(0x3fff) as u16));
    }

    pub fn stats(&self) -> EncoderStats {
        self.stats
    }

    pub fn losses(&self) -> NetflowLosses {
        NetflowLosses {
            undatable: self.uptime.undatable,
            ..self.losses
        }
    }

    /// Appends one record; a biflow's reverse direction follows as a record of its own.
    pub fn push(&mut self, r: &FlowRecord, now_secs: u32, mut emit: impl FnMut(Message<'_>)) {
        self.push_one(r, now_secs, &mut emit);
        if let Some(rev) = r.reverse_record() {
            self.push_one(&rev, now_secs, &mut emit);
        }
    }

    fn push_one(&mut self, r: &FlowRecord, now_secs: u32, mut emit: impl FnMut(Message<'_>)) {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (r.src_addr, r.dst_addr) else {
            self.losses.not_exportable += FlowTotals::of(r);
            return;
        };
        let (start, end) = (ms(r.start_ns), ms(r.end_ns));
        if self.records == V5_MAX_RECORDS || !self.uptime.fits(start, end) {
            self.finish(now_secs, &mut emit);
        }
        let off = V5_HEADER_LEN + self.records * V5_RECORD_LEN;
        let d = &mut self.buf[off..off + V5_RECORD_LEN];
        d.fill(0);
        d[0..4].copy_from_slice(&src.octets());
        d[4..8].copy_from_slice(&dst.octets());
        // nexthop and output interface: unknown to a passive probe, left 0. The input
        // interface is the capture interface's ifindex (16 bits in v5; 0 beyond).
        let input = u16::try_from(r.ingress_interface).unwrap_or(0);
        d[12..14].copy_from_slice(&input.to_be_bytes());
        d[16..20].copy_from_slice(&clamp32(r.packets, &mut self.losses.clamped).to_be_bytes());
        d[20..24].copy_from_slice(&clamp32(r.octets, &mut self.losses.clamped).to_be_bytes());
        d[32..34].copy_from_slice(&r.src_port.to_be_bytes());
        d[34..36].copy_from_slice(&r.dst_port.to_be_bytes());
        d[37] = r.tcp_flags as u8;
        d[38] = r.protocol;
        d[39] = r.class_of_service;
        self.uptime.add(off + V5_FIRST, start, end);
        self.records += 1;
        self.flows += FlowTotals::of(r);
    }

    pub fn flush(&mut self, now_secs: u32, mut emit: impl FnMut(Message<'_>)) {
        self.finish(now_secs, &mut emit);
    }

    fn finish(&mut self, now_secs: u32, emit: &mut impl FnMut(Message<'_>)) {
        if self.records == 0 {
            return;
        }
        let (header_ms, uptime) = self.uptime.resolve(now_secs as u64 * 1000, &mut self.buf);
        let len = V5_HEADER_LEN + self.records * V5_RECORD_LEN;
        let h = &mut self.buf[..V5_HEADER_LEN];
        h[0..2].copy_from_slice(&5u16.to_be_bytes());
        h[2..4].copy_from_slice(&(self.records as u16).to_be_bytes());
        h[4..8].copy_from_slice(&uptime.to_be_bytes());
        h[8..12].copy_from_slice(&((header_ms / 1000) as u32).to_be_bytes());
        h[12..16].copy_from_slice(&(((header_ms % 1000) * 1_000_000) as u32).to_be_bytes());
        h[16..20].copy_from_slice(&self.sequence.to_be_bytes());
        h[20] = 0; // engine type
        h[21] = self.engine_id;
        h[22..24].copy_from_slice(&self.sampling.to_be_bytes());
        emit(Message {
            bytes: &self.buf[..len],
            data_records: self.records as u32,
            flows: self.flows,
            templates: false,
        });
        self.sequence = self.sequence.wrapping_add(self.records as u32);
        self.stats.messages += 1;
        self.stats.records += self.records as u64;
        self.stats.octets += len as u64;
        self.records = 0;
        self.flows = FlowTotals::default();
    }
}

/// A NetFlow v9 field: type and length.
type Field = (u16, u16);

const V9_IPV4: &[Field] = &[
    (8, 4),  // IPV4_SRC_ADDR
    (12, 4), // IPV4_DST_ADDR
    (7, 2),  // L4_SRC_PORT
    (11, 2), // L4_DST_PORT
    (4, 1),  // PROTOCOL
    (5, 1),  // SRC_TOS
    (6, 1),  // TCP_FLAGS
    (60, 1), // IP_PROTOCOL_VERSION
    (2, 8),  // IN_PKTS
    (1, 8),  // IN_BYTES
    (22, 4), // FIRST_SWITCHED
    (21, 4), // LAST_SWITCHED
    (52, 1), // MIN_TTL
    (53, 1), // MAX_TTL
    (58, 2), // SRC_VLAN
    (32, 2), // ICMP_TYPE
    (56, 6), // IN_SRC_MAC
    (80, 6), // IN_DST_MAC
    (70, 3), // MPLS_LABEL_1
    (10, 4), // INPUT_SNMP: the capture interface's ifindex
];

const V9_IPV6: &[Field] = &[
    (27, 16), // IPV6_SRC_ADDR
    (28, 16), // IPV6_DST_ADDR
    (7, 2),
    (11, 2),
    (4, 1),
    (5, 1),
    (6, 1),
    (60, 1),
    (2, 8),
    (1, 8),
    (22, 4),
    (21, 4),
    (52, 1),
    (53, 1),
    (58, 2),
    (32, 2),
    (56, 6),
    (80, 6),
    (70, 3),
    (10, 4),
];

const V9_TEMPLATES: [(u16, &[Field]); 2] = [(256, V9_IPV4), (257, V9_IPV6)];

fn v9_record_len(fields: &[Field]) -> usize {
    fields.iter().map(|f| f.1 as usize).sum()
}

fn v9_template_flowset_len() -> usize {
    4 + V9_TEMPLATES
        .iter()
        .map(|(_, f)| 4 + 4 * f.len())
        .sum::<usize>()
}

/// NetFlow v9 packets with inline templates.
pub struct V9Encoder {
    buf: Vec<u8>,
    mtu: usize,
    source_id: u32,
    refresh_secs: Option<u32>,
    refresh_messages: Option<u32>,
    len: usize,
    /// The open data flowset: template id and the offset of its header.
    open_set: Option<(u16, usize)>,
    /// Records in the open packet (template records included: v9's count covers both).
    count: u16,
    flows: FlowTotals,
    uptime: Uptime,
    /// Packets sent before the open one (v9 counts packets, not records).
    sequence: u32,
    templates_sent_at: Option<u32>,
    messages_since_templates: u32,
    now_secs: u32,
    stats: EncoderStats,
}

impl V9Encoder {
    pub fn new(
        source_id: u32,
        mtu: usize,
        refresh_secs: Option<u32>,
        refresh_messages: Option<u32>,
        active_timeout_secs: u32,
    ) -> Result<V9Encoder, ConfigError> {
        let min = V9_HEADER_LEN + v9_template_flowset_len() + 4 + v9_record_len(V9_IPV6) + 3;
        if mtu < min {
            return Err(ConfigError::MtuTooSmall { mtu, min });
        }
        if mtu > u16::MAX as usize {
            return Err(ConfigError::MtuTooLarge { mtu });
        }
        Ok(V9Encoder {
            buf: vec![0; mtu],
            mtu,
            source_id,
            refresh_secs,
            refresh_messages,
            len: 0,
            open_set: None,
            count: 0,
            flows: FlowTotals::default(),
            uptime: Uptime::new(mtu / v9_record_len(V9_IPV4) + 1, active_timeout_secs),
            sequence: 0,
            templates_sent_at: None,
            messages_since_templates: 0,
            now_secs: 0,
            stats: EncoderStats::default(),
        })
    }

    pub fn stats(&self) -> EncoderStats {
        self.stats
    }

    /// What could not be carried: v9 carries every flow, but maybe not its times.
    pub fn losses(&self) -> NetflowLosses {
        NetflowLosses {
            undatable: self.uptime.undatable,
            ..Default::default()
        }
    }

    fn templates_due(&self) -> bool {
        let by_count = self
            .refresh_messages
            .is_some_and(|n| self.messages_since_templates >= n.max(1));
        match (self.templates_sent_at, self.refresh_secs) {
            (None, _) => true,
            (Some(at), Some(every)) => by_count || self.now_secs.wrapping_sub(at) >= every,
            (Some(_), None) => by_count,
        }
    }

    /// Appends one record; a biflow's reverse direction follows as a record of its own.
    pub fn push(&mut self, r: &FlowRecord, now_secs: u32, mut emit: impl FnMut(Message<'_>)) {
        self.push_one(r, now_secs, &mut emit);
        if let Some(rev) = r.reverse_record() {
            self.push_one(&rev, now_secs, &mut emit);
        }
    }

    fn push_one(&mut self, r: &FlowRecord, now_secs: u32, mut emit: impl FnMut(Message<'_>)) {
        self.now_secs = now_secs;
        let (id, fields) = if r.is_ipv6() {
            V9_TEMPLATES[1]
        } else {
            V9_TEMPLATES[0]
        };
        let rl = v9_record_len(fields);
        let (start, end) = (ms(r.start_ns), ms(r.end_ns));
        let need = rl
            + 3
            + if matches!(self.open_set, Some((i, _)) if i == id) {
                0
            } else {
                4
            };
        if self.len != 0
            && (self.templates_due() || self.len + need > self.mtu || !self.uptime.fits(start, end))
        {
            self.finish(&mut emit);
        }
        if self.len == 0 {
            self.open();
        }
        if !matches!(self.open_set, Some((i, _)) if i == id) {
            self.close_set();
            let at = self.len;
            self.buf[at..at + 2].copy_from_slice(&id.to_be_bytes());
            self.len += 4;
            self.open_set = Some((id, at));
        }
        let mut w = Put {
            d: &mut self.buf[self.len..self.len + rl],
            p: 0,
        };
        match (r.src_addr, r.dst_addr) {
            (IpAddr::V4(s), IpAddr::V4(t)) => {
                w.put(&s.octets());
                w.put(&t.octets());
            }
            (s, t) => {
                w.put(&v6(s));
                w.put(&v6(t));
            }
        }
        w.put(&r.src_port.to_be_bytes());
        w.put(&r.dst_port.to_be_bytes());
        w.put(&[
            r.protocol,
            r.class_of_service,
            r.tcp_flags as u8,
            if r.is_ipv6() { 6 } else { 4 },
        ]);
        w.put(&r.packets.to_be_bytes());
        w.put(&r.octets.to_be_bytes());
        let first_at = w.p;
        w.put(&[0; 8]); // FIRST/LAST_SWITCHED, patched in `finish`
        w.put(&[r.min_ttl, r.max_ttl]);
        w.put(&r.vlan_id.to_be_bytes());
        w.put(&r.icmp_type_code.to_be_bytes());
        w.put(&r.src_mac);
        w.put(&r.dst_mac);
        w.put(&r.mpls_top_label);
        w.put(&r.ingress_interface.to_be_bytes());
        debug_assert_eq!(w.p, rl);
        self.uptime.add(self.len + first_at, start, end);
        self.len += rl;
        self.count += 1;
        self.flows += FlowTotals::of(r);
    }

    pub fn flush(&mut self, now_secs: u32, mut emit: impl FnMut(Message<'_>)) {
        self.now_secs = now_secs;
        // A refresh alone once the session's clock exists; the first templates wait for the
        // first flows, which fix the boot time every header implies.
        if self.templates_due() && self.templates_sent_at.is_some() {
            self.finish(&mut emit);
            self.open();
        }
        self.finish(&mut emit);
    }

    fn open(&mut self) {
        self.len = V9_HEADER_LEN;
        self.count = 0;
        self.open_set = None;
        if self.templates_due() {
            let at = self.len;
            let total = v9_template_flowset_len();
            self.buf[at..at + 2].copy_from_slice(&0u16.to_be_bytes());
            self.buf[at + 2..at + 4].copy_from_slice(&(total as u16).to_be_bytes());
            let mut p = at + 4;
            for (id, fields) in V9_TEMPLATES {
                self.buf[p..p + 2].copy_from_slice(&id.to_be_bytes());
                self.buf[p + 2..p + 4].copy_from_slice(&(fields.len() as u16).to_be_bytes());
                p += 4;
                for (t, l) in fields {
                    self.buf[p..p + 2].copy_from_slice(&t.to_be_bytes());
                    self.buf[p + 2..p + 4].copy_from_slice(&l.to_be_bytes());
                    p += 4;
                }
                self.count += 1;
            }
            self.len = p;
            self.templates_sent_at = Some(self.now_secs);
            self.messages_since_templates = 0;
            self.stats.template_sets += 1;
        }
    }

    /// Closes the open data flowset, padding it to a 4-byte boundary (RFC 3954 §5.3).
    fn close_set(&mut self) {
        if let Some((_, at)) = self.open_set.take() {
            while !(self.len - at).is_multiple_of(4) {
                self.buf[self.len] = 0;
                self.len += 1;
            }
            let l = (self.len - at) as u16;
            self.buf[at + 2..at + 4].copy_from_slice(&l.to_be_bytes());
        }
    }

    fn finish(&mut self, emit: &mut impl FnMut(Message<'_>)) {
        if self.len == 0 {
            return;
        }
        self.close_set();
        let (header_ms, uptime) = self
            .uptime
            .resolve(self.now_secs as u64 * 1000, &mut self.buf);
        let h = &mut self.buf[..V9_HEADER_LEN];
        h[0..2].copy_from_slice(&9u16.to_be_bytes());
        h[2..4].copy_from_slice(&self.count.to_be_bytes());
        h[4..8].copy_from_slice(&uptime.to_be_bytes());
        h[8..12].copy_from_slice(&((header_ms / 1000) as u32).to_be_bytes());
        h[12..16].copy_from_slice(&self.sequence.to_be_bytes());
        h[16..20].copy_from_slice(&self.source_id.to_be_bytes());
        let flows = self.flows;
        emit(Message {
            bytes: &self.buf[..self.len],
            data_records: flows.flows as u32,
            flows,
            templates: false,
        });
        self.sequence = self.sequence.wrapping_add(1);
        self.messages_since_templates += 1;
        self.stats.messages += 1;
        self.stats.records += flows.flows;
        self.stats.octets += self.len as u64;
        self.len = 0;
        self.count = 0;
        self.flows = FlowTotals::default();
    }
}

/// A cursor over one record's bytes.
struct Put<'a> {
    d: &'a mut [u8],
    p: usize,
}

impl Put<'_> {
    fn put(&mut self, b: &[u8]) {
        self.d[self.p..self.p + b.len()].copy_from_slice(b);
        self.p += b.len();
    }
}

fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TimePrecision;

    fn rec(v6: bool, start_ms: u64, dur_ms: u64) -> FlowRecord {
        let mut r = crate::template::tests::sample(v6, TimePrecision::Micros);
        r.start_ns = start_ms * 1_000_000;
        r.end_ns = (start_ms + dur_ms) * 1_000_000;
        r
    }

    /// A v5 packet's header: (unix ms, sysUptime).
    fn v5_header(pkt: &[u8]) -> (u64, u32) {
        let up = u32::from_be_bytes(pkt[4..8].try_into().unwrap());
        let secs = u32::from_be_bytes(pkt[8..12].try_into().unwrap()) as u64;
        let nsecs = u32::from_be_bytes(pkt[12..16].try_into().unwrap()) as u64;
        (secs * 1000 + nsecs / 1_000_000, up)
    }

    /// nfdump's reading of a v5 record's absolute start and end in ms (its Process_v5, with
    /// RFC 3954's uptime wrap), written from its documented behaviour.
    fn v5_times(pkt: &[u8], i: usize) -> (u64, u64) {
        let (header, up) = v5_header(pkt);
        let boot = header - up as u64;
        let r = &pkt[24 + i * 48..];
        let first = u32::from_be_bytes(r[24..28].try_into().unwrap()) as u64;
        let last = u32::from_be_bytes(r[28..32].try_into().unwrap()) as u64;
        let mut start = if first > last {
            boot + first - WRAP_MS
        } else {
            boot + first
        };
        let mut end = boot + last;
        if last > up as u64 && last - up as u64 > 100_000 {
            start -= WRAP_MS;
            end -= WRAP_MS;
        }
        (start, end)
    }

    /// Every header of a session implies one boot time (modulo the 2^32 ms wrap), and header
    /// times never go back: sysUptime grows with them, wrapping at 2^32.
    fn assert_one_clock(headers: &[(u64, u32)]) {
        let boot = |(h, up): (u64, u32)| (h - up as u64) % WRAP_MS;
        for w in headers.windows(2) {
            assert_eq!(boot(w[0]), boot(w[1]), "{headers:?}");
            assert!(w[1].0 >= w[0].0, "header time went back: {w:?}");
        }
    }

    #[test]
    fn v5_times_survive_the_uptime_round_trip() {
        let mut enc = V5Encoder::new(0, None, 60);
        let mut pkts: Vec<Vec<u8>> = vec![];
        // Flows from 2010 (an old capture) and, later in the session, flows from "now".
        let old = 1_262_304_000_123;
        let now_s = 1_790_000_000u32;
        let flows = [
            rec(false, old, 5_000),
            rec(false, old + 40, 1),
            rec(true, old, 1),
            rec(false, now_s as u64 * 1000 - 3_000, 2_500),
        ];
        for r in &flows {
            enc.push(r, now_s, |m| pkts.push(m.to_vec()));
        }
        enc.flush(now_s, |m| pkts.push(m.to_vec()));
        // The old and the new flows cannot share a message's 2^31 ms window.
        assert_eq!(pkts.len(), 2);
        assert_eq!(v5_times(&pkts[0], 0), (old, old + 5_000));
        assert_eq!(v5_times(&pkts[0], 1), (old + 40, old + 41));
        assert_eq!(
            v5_times(&pkts[1], 0),
            (now_s as u64 * 1000 - 3_000, now_s as u64 * 1000 - 500)
        );
        // The session follows the capture's clock: the first header is dated at its newest
        // flow, not 16 years later.
        assert_eq!(v5_header(&pkts[0]).0, (old + 5_000).div_ceil(1000) * 1000);
        assert_one_clock(&pkts.iter().map(|p| v5_header(p)).collect::<Vec<_>>());
        assert_eq!(enc.losses().not_exportable.flows, 1);
        assert_eq!(enc.losses().undatable, 0);
        assert_eq!(u32::from_be_bytes(pkts[1][16..20].try_into().unwrap()), 2);
        // A flow from 2010 again, after the session's clock reached today: no header can
        // carry it exactly; it is sent and counted.
        enc.push(&rec(false, old, 1), now_s, |m| pkts.push(m.to_vec()));
        enc.flush(now_s, |m| pkts.push(m.to_vec()));
        assert_eq!(pkts.len(), 3);
        assert_eq!(enc.losses().undatable, 1);
        assert_one_clock(&pkts.iter().map(|p| v5_header(p)).collect::<Vec<_>>());
    }

    #[test]
    fn a_live_session_keeps_one_boot_time_and_a_growing_uptime() {
        let mut enc = V5Encoder::new(0, None, 60);
        let mut pkts: Vec<Vec<u8>> = vec![];
        let t0 = 1_790_000_000_000u64; // the first packet, ms
        let mut truth = vec![];
        // Exports every 100 ms of wall time for 5 minutes; the oldest flow (from t0) leaves
        // last, at its active timeout, after younger ones fixed the clock.
        for step in 0..3000u64 {
            let now_ms = t0 + 15_000 + step * 100;
            let r = if step == 600 {
                rec(false, t0, 60_000)
            } else {
                rec(false, now_ms - 15_000 + 7, 3)
            };
            truth.push((ms(r.start_ns), ms(r.end_ns)));
            enc.push(&r, (now_ms / 1000) as u32, |m| pkts.push(m.to_vec()));
            if step % 7 == 0 {
                enc.flush((now_ms / 1000) as u32, |m| pkts.push(m.to_vec()));
            }
        }
        enc.flush(((t0 + 400_000) / 1000) as u32, |m| pkts.push(m.to_vec()));
        let headers: Vec<(u64, u32)> = pkts.iter().map(|p| v5_header(p)).collect();
        assert!(headers.len() > 400);
        assert_one_clock(&headers);
        assert!(headers.windows(2).all(|w| w[1].1 >= w[0].1), "no wrap here");
        let mut got = vec![];
        for p in &pkts {
            let n = u16::from_be_bytes([p[2], p[3]]) as usize;
            for i in 0..n {
                let first = u32::from_be_bytes(p[24 + i * 48 + 24..][..4].try_into().unwrap());
                assert!(
                    first > 0 && first <= v5_header(p).1,
                    "First within the uptime"
                );
                got.push(v5_times(p, i));
            }
        }
        assert_eq!(got, truth);
        assert_eq!(enc.losses().undatable, 0);
    }

    #[test]
    fn the_uptime_wraps_after_49_days_and_times_stay_exact() {
        // A capture that spans 60 days: one short flow every 6 hours, plus flows that straddle
        // the wrap of the 32-bit millisecond uptime.
        let mut enc = V9Encoder::new(1, 1400, Some(600), None, 60).unwrap();
        let mut v5 = V5Encoder::new(0, None, 60);
        let (mut p9, mut p5): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (vec![], vec![]);
        let t0 = 1_262_304_000_000u64;
        let now_s = 1_790_000_000u32;
        let mut truth = vec![];
        for i in 0..240u64 {
            let r = rec(false, t0 + i * 6 * 3_600_000, 90_000 + i);
            truth.push((ms(r.start_ns), ms(r.end_ns)));
            enc.push(&r, now_s, |m| p9.push(m.to_vec()));
            enc.flush(now_s, |m| p9.push(m.to_vec()));
            v5.push(&r, now_s, |m| p5.push(m.to_vec()));
            v5.flush(now_s, |m| p5.push(m.to_vec()));
        }
        let got5: Vec<(u64, u64)> = p5.iter().map(|p| v5_times(p, 0)).collect();
        assert_eq!(got5, truth);
        let headers5: Vec<(u64, u32)> = p5.iter().map(|p| v5_header(p)).collect();
        // The uptime wrapped within the session.
        assert!(headers5.windows(2).any(|w| w[1].1 < w[0].1));
        assert_one_clock(&headers5);
        // v9, read as nfdump's Process_v9 does: export time minus (uptime - First) mod 2^32.
        let mut got9 = vec![];
        let mut headers9 = vec![];
        for p in &p9 {
            let up = u32::from_be_bytes(p[4..8].try_into().unwrap());
            let secs = u32::from_be_bytes(p[8..12].try_into().unwrap()) as u64 * 1000;
            headers9.push((secs, up));
            let mut pos = 20;
            while pos < p.len() {
                let id = u16::from_be_bytes([p[pos], p[pos + 1]]);
                let len = u16::from_be_bytes([p[pos + 2], p[pos + 3]]) as usize;
                if id == 256 {
                    let r = &p[pos + 4..];
                    let first = u32::from_be_bytes(r[32..36].try_into().unwrap());
                    let last = u32::from_be_bytes(r[36..40].try_into().unwrap());
                    got9.push((
                        secs - up.wrapping_sub(first) as u64,
                        secs - up.wrapping_sub(last) as u64,
                    ));
                }
                pos += len;
            }
        }
        assert_eq!(got9, truth);
        assert_one_clock(&headers9);
        assert_eq!((enc.losses().undatable, v5.losses().undatable), (0, 0));
    }

    #[test]
    fn v5_clamps_counters_and_limits_records() {
        let mut enc = V5Encoder::new(0, None, 60);
        let mut pkts: Vec<Vec<u8>> = vec![];
        for i in 0..65 {
            let mut r = rec(false, 1_000_000 + i, 1);
            r.octets = 5_000_000_000;
            enc.push(&r, 2000, |m| pkts.push(m.to_vec()));
        }
        enc.flush(2000, |m| pkts.push(m.to_vec()));
        assert_eq!(pkts.len(), 3);
        assert_eq!(pkts[0].len(), 24 + 30 * 48);
        assert_eq!(u16::from_be_bytes([pkts[2][2], pkts[2][3]]), 5);
        assert_eq!(&pkts[0][24 + 20..24 + 24], &u32::MAX.to_be_bytes());
        assert_eq!(enc.losses().clamped, 65);
    }

    #[test]
    fn v9_packets_are_well_formed() {
        let mut enc = V9Encoder::new(7, 1400, Some(60), None, 60).unwrap();
        let mut pkts: Vec<Vec<u8>> = vec![];
        for i in 0..200 {
            enc.push(
                &rec(i % 3 == 0, 1_700_000_000_000 + i, 10),
                1_700_000_100,
                |m| pkts.push(m.to_vec()),
            );
        }
        enc.flush(1_700_000_100, |m| pkts.push(m.to_vec()));
        let mut records = 0;
        for (n, p) in pkts.iter().enumerate() {
            assert!(p.len() <= 1400);
            assert_eq!(u16::from_be_bytes([p[0], p[1]]), 9);
            assert_eq!(u32::from_be_bytes(p[12..16].try_into().unwrap()), n as u32);
            let count = u16::from_be_bytes([p[2], p[3]]) as usize;
            let mut pos = 20;
            let mut in_packet = 0;
            while pos < p.len() {
                let id = u16::from_be_bytes([p[pos], p[pos + 1]]);
                let len = u16::from_be_bytes([p[pos + 2], p[pos + 3]]) as usize;
                assert_eq!(len % 4, 0);
                if id == 0 {
                    in_packet += 2;
                } else {
                    let rl = v9_record_len(if id == 256 { V9_IPV4 } else { V9_IPV6 });
                    in_packet += (len - 4) / rl;
                    records += (len - 4) / rl;
                }
                pos += len;
            }
            assert_eq!(pos, p.len());
            assert_eq!(in_packet, count);
        }
        assert_eq!(records, 200);
    }
}
