//! Packing flow records into IPFIX messages (RFC 7011 §3), with no I/O.
//!
//! The encoder owns one MTU-sized buffer. Records are appended to the current data set; a record
//! of another layout opens a new set; a record that does not fit finishes the message, which is
//! handed to the caller's `emit` closure as a [`Message`]. Templates travel in messages of their
//! own, packed into as few as the MTU allows (the biflow templates do not fit one 1400-byte
//! message). With inline templates (UDP) they are emitted before the first data and again when
//! the refresh is due; without (TCP, SCTP, files), the transport sends
//! [`MessageEncoder::template_prelude`] at the start of every session. The caller supplies the
//! time, so tests drive the encoder deterministically.

use crate::options::{self, FlowTotals, MeteringCounts, Sampling};
use crate::record::FlowRecord;
use crate::template::{self, Layout};
use crate::{IPFIX_VERSION, MESSAGE_HEADER_LEN, SET_HEADER_LEN};

/// Configuration of one exporting process towards one observation domain.
#[derive(Clone, Debug)]
pub struct EncoderConfig {
    pub observation_domain: u32,
    /// Largest message in bytes (the whole IPFIX message, headers included).
    pub mtu: usize,
    /// Write templates into the message stream (UDP). `false`: the transport sends the
    /// [`MessageEncoder::template_prelude`] itself at the start of each session.
    pub inline_templates: bool,
    /// Re-send templates when this many seconds have passed since they were last sent
    /// (meant for UDP, where a collector may start after us). `None`: only at start.
    pub template_refresh_secs: Option<u32>,
    /// Also re-send templates every this many messages (UDP: a collector that restarts under a
    /// steady stream recovers within N messages). `None`: by time only.
    pub template_refresh_messages: Option<u32>,
    /// Packet sampling in the metering process, reported in every statistics message.
    pub sampling: Option<Sampling>,
    /// Biflow records (RFC 5103): every record carries the reverse direction's elements.
    pub biflow: bool,
    /// Announce the layouts of tunnelled flows too (the metering process decapsulates).
    pub tunnels: bool,
    /// The metering process's active timeout: how long after its first packet a flow's first
    /// record leaves at the latest. NetFlow places its boot time by it.
    pub active_timeout_secs: u32,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            observation_domain: 1,
            mtu: 1400,
            inline_templates: true,
            template_refresh_secs: Some(60),
            template_refresh_messages: None,
            sampling: None,
            biflow: false,
            tunnels: false,
            active_timeout_secs: 60,
        }
    }
}

/// Errors in an encoder configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "observation domain {domain} does not fit NetFlow v5's 8-bit engine id: use \
         --observation-domain 0-255 with a netflow5:// collector, or export NetFlow v9 or IPFIX \
         (32-bit ids)"
    )]
    EngineIdTooLarge { domain: u32 },
    #[error("MTU {mtu} is too small: a message with the templates needs at least {min} bytes")]
    MtuTooSmall { mtu: usize, min: usize },
    #[error("MTU {mtu} is too large: an IPFIX message is at most 65535 bytes")]
    MtuTooLarge { mtu: usize },
}

/// Running totals of what the encoder produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncoderStats {
    pub messages: u64,
    /// Flow records (data records of the flow templates).
    pub records: u64,
    /// Options data records (statistics and the selector report).
    pub options_records: u64,
    pub octets: u64,
    pub template_sets: u64,
    /// Records whose application strings were cut to fit the MTU.
    pub app_fields_cut: u64,
    /// Records sent without their application fields: they could not fit a message of this
    /// MTU even with every string empty.
    pub app_fields_dropped: u64,
}

/// One finished message and what it carries, so a transport that must drop it can count the
/// flows, packets and octets lost.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub bytes: &'a [u8],
    /// Data records of any kind (they advance the sequence number).
    pub data_records: u32,
    /// The flow records among them, with their packets and octets.
    pub flows: FlowTotals,
    /// The message holds template records only. A session transport remembers those it has
    /// sent (see [`TemplatePrelude::learn`]) so a later session starts with them too.
    pub templates: bool,
}

impl std::ops::Deref for Message<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

/// Statistics the metering side and the transport know and the encoder does not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    pub metering: MeteringCounts,
    /// What the transport delivered to this collector so far (sent on UDP, acknowledged on a
    /// stream, on disk for a file): RFC 7011 §4.1's exported totals count these, not what was
    /// encoded, so a message lost on the way is not reported as exported.
    pub sent: Sent,
    /// Flow records that never reached this collector (dropped on the way to the exporter, or
    /// by this transport).
    pub not_sent: FlowTotals,
}

/// Messages, flow records and octets a transport delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub messages: u64,
    pub records: u64,
    pub octets: u64,
}

/// The template records of a configuration, as (set ID, bytes): the data templates, then the
/// options templates.
fn template_records(cfg: &EncoderConfig) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    for l in Layout::announced(cfg.biflow, cfg.tunnels) {
        let n = l.write_template_record(&mut buf);
        out.push((crate::TEMPLATE_SET_ID, buf[..n].to_vec()));
    }
    // The selector report's template goes out whether sampling is on or not: a reload can
    // turn sampling on without a new template session.
    for t in options::announced(true) {
        let n = t.write_template_record(&mut buf);
        out.push((options::OPTIONS_TEMPLATE_SET_ID, buf[..n].to_vec()));
    }
    out
}

/// Packs the template records into as few messages as `mtu` allows. The headers' export time,
/// sequence number and domain are stamped when a message is sent.
fn template_messages(cfg: &EncoderConfig, records: &[(u16, Vec<u8>)]) -> Vec<Vec<u8>> {
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut open_set: Option<(u16, usize)> = None;
    let close = |cur: &mut Vec<u8>, open_set: &mut Option<(u16, usize)>| {
        if let Some((_, at)) = open_set.take() {
            let l = (cur.len() - at) as u16;
            cur[at + 2..at + 4].copy_from_slice(&l.to_be_bytes());
        }
    };
    for (set_id, rec) in records.iter().cloned() {
        let need = rec.len()
            + if matches!(open_set, Some((id, _)) if id == set_id) {
                0
            } else {
                SET_HEADER_LEN
            };
        if !cur.is_empty() && cur.len() + need > cfg.mtu {
            close(&mut cur, &mut open_set);
            msgs.push(std::mem::take(&mut cur));
        }
        if cur.is_empty() {
            cur.resize(MESSAGE_HEADER_LEN, 0);
        }
        if !matches!(open_set, Some((id, _)) if id == set_id) {
            close(&mut cur, &mut open_set);
            open_set = Some((set_id, cur.len()));
            cur.extend_from_slice(&set_id.to_be_bytes());
            cur.extend_from_slice(&[0, 0]);
        }
        cur.extend_from_slice(&rec);
    }
    close(&mut cur, &mut open_set);
    msgs.push(cur);
    for m in &mut msgs {
        let len = m.len() as u16;
        m[0..2].copy_from_slice(&IPFIX_VERSION.to_be_bytes());
        m[2..4].copy_from_slice(&len.to_be_bytes());
    }
    msgs
}

/// Bytes of the options data sets of one statistics message.
fn statistics_len() -> usize {
    [
        &options::METERING_STATISTICS,
        &options::METERING_RELIABILITY_TIMED,
        &options::EXPORTING_RELIABILITY,
    ]
    .iter()
    .map(|t| t.record_set_len())
    .sum::<usize>()
        + options::SELECTOR
            .record_set_len()
            .max(options::FLOW_SELECTOR.record_set_len())
}

/// The smallest MTU that holds the largest template record, one record of any layout, and a
/// statistics message.
pub fn min_mtu_for(cfg: &EncoderConfig) -> usize {
    let largest_record = Layout::announced(cfg.biflow, cfg.tunnels)
        .map(|l| l.record_len())
        .max()
        .unwrap_or(0);
    let largest_template = template_records(cfg)
        .iter()
        .map(|(_, r)| r.len())
        .max()
        .unwrap_or(0);
    MESSAGE_HEADER_LEN
        + (SET_HEADER_LEN + largest_record)
            .max(SET_HEADER_LEN + largest_template)
            .max(statistics_len())
}

/// Builds IPFIX messages from flow records.
pub struct MessageEncoder {
    cfg: EncoderConfig,
    buf: Vec<u8>,
    /// Bytes used in `buf`; 0 when no message is open.
    len: usize,
    /// The open data set: its layout and the offset of its header.
    open_set: Option<(Layout, usize)>,
    /// Flow records in the open message, with their packets and octets.
    flows_in_message: FlowTotals,
    options_in_message: u32,
    /// Data records sent before the open message, modulo 2^32 (RFC 7011 §3.1).
    sequence: u32,
    /// Export time of the newest call, seconds since the UNIX epoch.
    now_secs: u32,
    templates_sent_at: Option<u32>,
    /// Messages finished since the templates were last sent.
    messages_since_templates: u32,
    /// The template messages, headers to be stamped.
    templates: Vec<Vec<u8>>,
    /// Every template record announced: the fixed ones, then those of the layouts with
    /// application fields in the order they were first used.
    template_records: Vec<(u16, Vec<u8>)>,
    /// The layouts with application fields announced so far, with their template IDs, and
    /// the message that announced each.
    app_layouts: Vec<(Layout, u16)>,
    app_template_messages: Vec<Vec<u8>>,
    stats: EncoderStats,
}

impl MessageEncoder {
    pub fn new(cfg: EncoderConfig) -> Result<Self, ConfigError> {
        if cfg.mtu < min_mtu_for(&cfg) {
            return Err(ConfigError::MtuTooSmall {
                mtu: cfg.mtu,
                min: min_mtu_for(&cfg),
            });
        }
        if cfg.mtu > u16::MAX as usize {
            return Err(ConfigError::MtuTooLarge { mtu: cfg.mtu });
        }
        let template_records = template_records(&cfg);
        let templates = template_messages(&cfg, &template_records);
        Ok(MessageEncoder {
            buf: vec![0; cfg.mtu],
            cfg,
            len: 0,
            open_set: None,
            flows_in_message: FlowTotals::default(),
            options_in_message: 0,
            sequence: 0,
            now_secs: 0,
            templates_sent_at: None,
            messages_since_templates: 0,
            templates,
            template_records,
            app_layouts: Vec::new(),
            app_template_messages: Vec::new(),
            stats: EncoderStats::default(),
        })
    }

    /// The sampling the next selector reports state (a reload changed it).
    pub fn set_sampling(&mut self, sampling: Option<Sampling>) {
        self.cfg.sampling = sampling;
    }

    pub fn stats(&self) -> EncoderStats {
        self.stats
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.cfg
    }

    /// Makes the next message start with the templates (for a new collector session).
    pub fn resend_templates(&mut self) {
        self.templates_sent_at = None;
    }

    /// The messages holding every template and options template and no data: what a session
    /// transport (TCP, SCTP, a file) sends first. Their headers are placeholders; the transport
    /// stamps them with [`TemplatePrelude::stamp_for`].
    ///
    /// Templates of application layouts already announced follow, each in the message that
    /// announced it, so a transport that is sent that message again knows it
    /// ([`TemplatePrelude::knows`]).
    pub fn template_prelude(&self) -> TemplatePrelude {
        let fixed = self.template_records.len() - self.app_layouts.len();
        let mut bytes = template_messages(&self.cfg, &self.template_records[..fixed]).concat();
        for m in &self.app_template_messages {
            bytes.extend_from_slice(m);
        }
        TemplatePrelude { bytes }
    }

    /// Appends one record; `emit` receives every message this completes (and, the first time
    /// a layout with application fields is used, its template).
    #[inline]
    pub fn push(&mut self, rec: &FlowRecord, now_secs: u32, mut emit: impl FnMut(Message<'_>)) {
        self.now_secs = now_secs;
        let mut layout = Layout::of(rec, self.cfg.biflow, self.cfg.tunnels);
        let mut len = layout.record_len();
        let mut cap = 0;
        if layout.app_groups() != 0 {
            let budget = self.cfg.mtu - MESSAGE_HEADER_LEN - SET_HEADER_LEN - len;
            match crate::app::fit(rec, layout.app_groups(), budget) {
                Some((c, n)) => {
                    cap = c;
                    len += n;
                    self.stats.app_fields_cut += (c != usize::MAX) as u64;
                }
                None => {
                    self.stats.app_fields_dropped += 1;
                    layout = layout.without_app();
                }
            }
        }
        let need = len
            + match self.open_set {
                Some((l, _)) if l == layout => 0,
                _ => SET_HEADER_LEN,
            };
        // A due template refresh or a full message ends the open message.
        if self.len != 0 && (self.templates_due() || self.len + need > self.cfg.mtu) {
            self.finish(&mut emit);
        }
        if self.len == 0 && self.templates_due() {
            self.emit_templates(&mut emit);
        }
        let template_id = if layout.announced_on_first_use() {
            self.late_template_id(layout, &mut emit)
        } else {
            layout.template_id()
        };
        if self.len == 0 {
            self.open_message();
        }
        if !matches!(self.open_set, Some((l, _)) if l == layout) {
            self.close_set();
            let start = self.len;
            self.buf[start..start + 2].copy_from_slice(&template_id.to_be_bytes());
            self.len += SET_HEADER_LEN;
            self.open_set = Some((layout, start));
        }
        let start = self.len;
        self.len += template::encode_record(rec, layout, &mut self.buf[self.len..]);
        if layout.app_groups() != 0 {
            self.len +=
                crate::app::encode(rec, layout.app_groups(), cap, &mut self.buf[self.len..]);
        }
        debug_assert_eq!(self.len - start, len);
        self.flows_in_message += FlowTotals::of(rec);
    }

    /// The template ID of a layout announced on first use (application fields, aggregates).
    /// The first time it is used, the
    /// open message is finished and the template goes out in a message of its own (on every
    /// transport: a session's prelude was made before this layout existed); later template
    /// refreshes and preludes carry it too.
    fn late_template_id(&mut self, layout: Layout, emit: &mut impl FnMut(Message<'_>)) -> u16 {
        if let Some(&(_, id)) = self.app_layouts.iter().find(|(l, _)| *l == layout) {
            return id;
        }
        self.finish(emit);
        let id = template::FIRST_APP_TEMPLATE_ID + self.app_layouts.len() as u16;
        self.app_layouts.push((layout, id));
        let mut rec = [0u8; 1024];
        let n = layout.write_template_record_as(id, &mut rec);
        self.template_records
            .push((crate::TEMPLATE_SET_ID, rec[..n].to_vec()));
        self.templates = template_messages(&self.cfg, &self.template_records);
        let mut m = template_messages(
            &self.cfg,
            &self.template_records[self.template_records.len() - 1..],
        )
        .pop()
        .expect("one record makes one message");
        m[4..8].copy_from_slice(&self.now_secs.to_be_bytes());
        m[8..12].copy_from_slice(&self.sequence.to_be_bytes());
        m[12..16].copy_from_slice(&self.cfg.observation_domain.to_be_bytes());
        emit(Message {
            bytes: &m,
            data_records: 0,
            flows: FlowTotals::default(),
            templates: true,
        });
        self.stats.messages += 1;
        self.stats.octets += m.len() as u64;
        self.app_template_messages.push(m);
        id
    }

    /// Finishes the open message, if any, and hands it to `emit`. Also sends templates when
    /// they are due even though no records are waiting, so an idle exporter keeps a UDP
    /// collector's template cache fresh.
    pub fn flush(&mut self, now_secs: u32, mut emit: impl FnMut(Message<'_>)) {
        self.now_secs = now_secs;
        self.finish(&mut emit);
        if self.templates_due() {
            self.emit_templates(&mut emit);
        }
    }

    /// Sends the options records in a message of their own (after finishing the open one): the
    /// metering and exporting statistics, and the selector report when sampling is on.
    pub fn push_statistics(
        &mut self,
        now_secs: u32,
        s: &Statistics,
        mut emit: impl FnMut(Message<'_>),
    ) {
        self.now_secs = now_secs;
        self.finish(&mut emit);
        if self.templates_due() {
            self.emit_templates(&mut emit);
        }
        self.open_message();
        let domain = self.cfg.observation_domain as u64;
        let done = s.sent;
        let m = s.metering;
        let (reliability, first, last) = match m.not_metered_span_ms {
            Some((first, last)) => (&options::METERING_RELIABILITY_TIMED, first, last),
            None => (&options::METERING_RELIABILITY, 0, 0),
        };
        // Values in template order, scope first; each template takes the first ones it needs.
        let records: [(&options::OptionsTemplate, [u64; 6]); 3] = [
            (
                &options::METERING_STATISTICS,
                [domain, done.messages, done.records, done.octets, 0, 0],
            ),
            (
                reliability,
                [
                    domain,
                    m.observed,
                    m.not_metered,
                    m.not_metered_octets,
                    first,
                    last,
                ],
            ),
            (
                &options::EXPORTING_RELIABILITY,
                [
                    domain,
                    s.not_sent.flows,
                    s.not_sent.packets,
                    s.not_sent.octets,
                    0,
                    0,
                ],
            ),
        ];
        for (t, values) in &records {
            let n = t.scope.len() + t.fields.len();
            self.len += t.write_record_set(&mut self.buf[self.len..], &values[..n]);
            self.options_in_message += 1;
        }
        if let Some(sm) = self.cfg.sampling {
            // RFC 5477 §8.2.2/§8.2.3 (RFC 7014 §6.2 for flows): select `interval` packets (or
            // flows), then skip `space`.
            let (template, algorithm) = sm.algorithm.report();
            let values = [domain, 1, algorithm, 1, sm.every.saturating_sub(1) as u64];
            self.len += template.write_record_set(&mut self.buf[self.len..], &values);
            self.options_in_message += 1;
        }
        self.finish(&mut emit);
    }

    fn templates_due(&self) -> bool {
        if !self.cfg.inline_templates {
            return false;
        }
        let by_count = self
            .cfg
            .template_refresh_messages
            .is_some_and(|n| self.messages_since_templates >= n.max(1));
        match (self.templates_sent_at, self.cfg.template_refresh_secs) {
            (None, _) => true,
            (Some(at), Some(every)) => by_count || self.now_secs.wrapping_sub(at) >= every,
            (Some(_), None) => by_count,
        }
    }

    fn open_message(&mut self) {
        self.len = MESSAGE_HEADER_LEN;
        self.open_set = None;
        self.flows_in_message = FlowTotals::default();
        self.options_in_message = 0;
    }

    /// Sends the template messages (no message may be open).
    fn emit_templates(&mut self, emit: &mut impl FnMut(Message<'_>)) {
        debug_assert_eq!(self.len, 0);
        for m in &mut self.templates {
            m[4..8].copy_from_slice(&self.now_secs.to_be_bytes());
            m[8..12].copy_from_slice(&self.sequence.to_be_bytes());
            m[12..16].copy_from_slice(&self.cfg.observation_domain.to_be_bytes());
            emit(Message {
                bytes: m,
                data_records: 0,
                flows: FlowTotals::default(),
                templates: true,
            });
            self.stats.messages += 1;
            self.stats.octets += m.len() as u64;
        }
        self.templates_sent_at = Some(self.now_secs);
        self.messages_since_templates = 0;
        self.stats.template_sets += 1;
    }

    fn close_set(&mut self) {
        if let Some((_, start)) = self.open_set.take() {
            let set_len = (self.len - start) as u16;
            self.buf[start + 2..start + 4].copy_from_slice(&set_len.to_be_bytes());
        }
    }

    fn finish(&mut self, emit: &mut impl FnMut(Message<'_>)) {
        if self.len == 0 {
            return;
        }
        self.close_set();
        let len = self.len;
        let h = &mut self.buf[..MESSAGE_HEADER_LEN];
        h[0..2].copy_from_slice(&IPFIX_VERSION.to_be_bytes());
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        h[4..8].copy_from_slice(&self.now_secs.to_be_bytes());
        h[8..12].copy_from_slice(&self.sequence.to_be_bytes());
        h[12..16].copy_from_slice(&self.cfg.observation_domain.to_be_bytes());
        let flows = self.flows_in_message;
        let data_records = flows.flows as u32 + self.options_in_message;
        emit(Message {
            bytes: &self.buf[..len],
            data_records,
            flows,
            templates: false,
        });
        self.messages_since_templates += 1;
        self.sequence = self.sequence.wrapping_add(data_records);
        self.stats.messages += 1;
        self.stats.records += flows.flows;
        self.stats.options_records += self.options_in_message as u64;
        self.stats.octets += len as u64;
        self.len = 0;
        self.flows_in_message = FlowTotals::default();
        self.options_in_message = 0;
    }
}

/// The template message a session transport sends first (see
/// [`MessageEncoder::template_prelude`]).
#[derive(Clone, Debug)]
pub struct TemplatePrelude {
    bytes: Vec<u8>,
}

impl TemplatePrelude {
    /// A prelude from template messages kept elsewhere (a spool segment's first entry).
    pub fn from_bytes(bytes: Vec<u8>) -> TemplatePrelude {
        TemplatePrelude { bytes }
    }

    /// The template messages, concatenated.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the prelude already holds the template message `msg` (same records).
    pub fn knows(&self, msg: &[u8]) -> bool {
        messages_in(&self.bytes)
            .any(|m| m.len() == msg.len() && m[MESSAGE_HEADER_LEN..] == msg[MESSAGE_HEADER_LEN..])
    }

    /// Adds a template message sent during a session, so every later session (a reconnect,
    /// the next rotated file) starts with it. Returns false when it was already there.
    pub fn learn(&mut self, msg: &[u8]) -> bool {
        if self.knows(msg) {
            return false;
        }
        self.bytes.extend_from_slice(msg);
        true
    }

    /// The prelude stamped to go right before `next`: each message gets the same export time,
    /// sequence number and observation domain (messages without data records do not advance
    /// the sequence).
    pub fn stamp_for(&mut self, next: &[u8]) -> &[u8] {
        let mut pos = 0;
        while pos + MESSAGE_HEADER_LEN <= self.bytes.len() {
            let len = u16::from_be_bytes([self.bytes[pos + 2], self.bytes[pos + 3]]) as usize;
            self.bytes[pos + 4..pos + 16].copy_from_slice(&next[4..16]);
            pos += len;
        }
        &self.bytes
    }
}

/// The messages in a run of concatenated IPFIX messages (a prelude, a TCP stream, a file); a
/// cut last message comes out as what is there.
pub fn messages_in(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos + MESSAGE_HEADER_LEN > bytes.len() {
            return None;
        }
        let len =
            (u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]) as usize).max(MESSAGE_HEADER_LEN);
        let m = &bytes[pos..(pos + len).min(bytes.len())];
        pos += len;
        Some(m)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{EndReason, TimePrecision};

    fn rec(i: u32, v6: bool) -> FlowRecord {
        let (src, dst) = if v6 {
            (
                std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) | i as u128).into(),
                "2001:db8::ffff".parse().unwrap(),
            )
        } else {
            (
                std::net::Ipv4Addr::from(0x0a00_0000 | i).into(),
                "10.255.0.1".parse().unwrap(),
            )
        };
        FlowRecord {
            src_addr: src,
            dst_addr: dst,
            src_port: (i % 60000) as u16,
            dst_port: 53,
            protocol: 17,
            class_of_service: 0,
            tcp_flags: 0,
            min_ttl: 64,
            max_ttl: 64,
            icmp_type_code: 0,
            vlan_id: 0,
            customer_vlan_id: 0,
            mpls_top_label: [0; 3],
            src_mac: [0; 6],
            dst_mac: [0; 6],
            packets: 1,
            octets: 80,
            start_ns: 1_600_000_000_000_000_000,
            end_ns: 1_600_000_000_000_000_000,
            end_reason: EndReason::IdleTimeout,
            time_precision: TimePrecision::Micros,
            reverse: None,
            tunnel: None,
            ingress_interface: 3,
            app: None,
            community_id: None,
            aggregate: None,
        }
    }

    /// Parses one message the way a collector does; returns (seq, records per template id).
    fn parse(msg: &[u8]) -> (u32, Vec<(u16, usize)>) {
        assert_eq!(u16::from_be_bytes([msg[0], msg[1]]), 10);
        assert_eq!(u16::from_be_bytes([msg[2], msg[3]]) as usize, msg.len());
        let seq = u32::from_be_bytes(msg[8..12].try_into().unwrap());
        let mut pos = MESSAGE_HEADER_LEN;
        let mut sets = vec![];
        while pos < msg.len() {
            let id = u16::from_be_bytes([msg[pos], msg[pos + 1]]);
            let len = u16::from_be_bytes([msg[pos + 2], msg[pos + 3]]) as usize;
            assert!(len >= 4 && pos + len <= msg.len(), "set overruns message");
            if let Some(t) = [&options::SELECTOR, &options::FLOW_SELECTOR]
                .into_iter()
                .chain(options::STATISTICS)
                .find(|t| t.id == id)
            {
                assert_eq!(len, t.record_set_len());
                sets.push((id, 1));
            } else if id == options::OPTIONS_TEMPLATE_SET_ID || id == crate::TEMPLATE_SET_ID {
                sets.push((id, 0));
            } else if id >= 256 {
                let rl = Layout::from_template_id(id).unwrap().record_len();
                assert_eq!((len - 4) % rl, 0);
                sets.push((id, (len - 4) / rl));
            }
            pos += len;
        }
        assert_eq!(pos, msg.len());
        (seq, sets)
    }

    #[test]
    fn application_layouts_are_announced_once_when_first_used() {
        let cfg = EncoderConfig {
            inline_templates: false,
            ..EncoderConfig::default()
        };
        let mut enc = MessageEncoder::new(cfg).unwrap();
        let mut prelude = enc.template_prelude();
        let mut out: Vec<(bool, Vec<u8>)> = Vec::new();
        let with = |i: u32, name: &str| {
            let mut r = rec(i, false);
            let mut a = crate::AppRecord::default();
            a.dns_query_type = Some(1);
            a.dns_query_class = Some(1);
            a.set_text(crate::Text::DnsQueryName, name);
            r.app = Some(Box::new(a));
            r
        };
        for i in 0..3 {
            enc.push(&with(i, "example.com"), 100, |m| {
                out.push((m.templates, m.bytes.to_vec()))
            });
        }
        enc.push(&rec(9, false), 100, |m| {
            out.push((m.templates, m.bytes.to_vec()))
        });
        enc.flush(100, |m| out.push((m.templates, m.bytes.to_vec())));
        // The template message first, then one data message with a set of 1024 and a set of
        // a fixed layout.
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].0 && !out[1].0);
        let t = &out[0].1;
        assert_eq!(u16::from_be_bytes([t[16], t[17]]), crate::TEMPLATE_SET_ID);
        assert_eq!(u16::from_be_bytes([t[20], t[21]]), 1024);
        let d = &out[1].1;
        assert_eq!(u16::from_be_bytes([d[16], d[17]]), 1024);
        // A session transport learns it once; a later session starts with it.
        assert!(!prelude.knows(t));
        assert!(prelude.learn(t));
        assert!(!prelude.learn(t));
        assert!(enc.template_prelude().knows(t));
        // A record too long for the MTU has its strings cut, never the message overrun.
        let mut long = with(20, &"a".repeat(2000));
        let a = long.app.as_mut().unwrap();
        a.set_text(crate::Text::HttpMethod, "GET");
        a.set_text(crate::Text::HttpUserAgent, &"u".repeat(3000));
        let mut sizes = Vec::new();
        enc.push(&long, 101, |m| sizes.push(m.bytes.len()));
        enc.flush(101, |m| sizes.push(m.bytes.len()));
        assert!(sizes.iter().all(|&n| n <= 1400), "{sizes:?}");
        assert_eq!(enc.stats().app_fields_dropped, 0);
        assert_eq!(enc.stats().app_fields_cut, 1);
    }

    #[test]
    fn messages_respect_mtu_and_count_every_record() {
        let mut enc = MessageEncoder::new(EncoderConfig {
            mtu: 1000,
            ..Default::default()
        })
        .unwrap();
        let mut msgs: Vec<Vec<u8>> = vec![];
        for i in 0..1000 {
            enc.push(&rec(i, i % 3 == 0), 100, |m| msgs.push(m.to_vec()));
        }
        enc.flush(100, |m| msgs.push(m.to_vec()));
        let mut expected_seq = 0u32;
        let mut total = 0;
        for m in &msgs {
            assert!(m.len() <= 1000);
            let (seq, sets) = parse(m);
            assert_eq!(seq, expected_seq);
            let n: usize = sets.iter().map(|s| s.1).sum();
            expected_seq += n as u32;
            total += n;
        }
        assert_eq!(total, 1000);
        assert_eq!(enc.stats().records, 1000);
        assert_eq!(enc.stats().messages, msgs.len() as u64);
        // Only the first message carries templates when no refresh is due.
        assert_eq!(enc.stats().template_sets, 1);
        assert_eq!(parse(&msgs[0]).1[..2], [(2, 0), (3, 0)]);
    }

    #[test]
    fn templates_are_refreshed_on_the_interval_even_when_idle() {
        let cfg = EncoderConfig {
            template_refresh_secs: Some(10),
            ..Default::default()
        };
        let mut enc = MessageEncoder::new(cfg).unwrap();
        let mut n = 0;
        enc.push(&rec(1, false), 1000, |_| n += 1);
        enc.flush(1005, |_| n += 1);
        assert_eq!(enc.stats().template_sets, 1);
        enc.flush(1010, |_| n += 1);
        assert_eq!(enc.stats().template_sets, 2);
        // Templates, the record, templates again.
        assert_eq!(n, 3);
    }

    #[test]
    fn templates_are_refreshed_every_n_messages() {
        let cfg = EncoderConfig {
            mtu: 1000,
            template_refresh_messages: Some(5),
            ..Default::default()
        };
        let mut enc = MessageEncoder::new(cfg).unwrap();
        let mut msgs: Vec<Vec<u8>> = vec![];
        for i in 0..300 {
            enc.push(&rec(i, false), 100, |m| msgs.push(m.to_vec()));
        }
        enc.flush(100, |m| msgs.push(m.to_vec()));
        let with_templates: Vec<usize> = msgs
            .iter()
            .enumerate()
            .filter(|(_, m)| u16::from_be_bytes([m[16], m[17]]) == 2)
            .map(|(i, _)| i)
            .collect();
        assert!(msgs.len() > 20);
        // The template message, then five data messages.
        assert_eq!(with_templates[..4], [0, 6, 12, 18]);
    }

    #[test]
    fn too_small_mtu_is_refused() {
        let err = MessageEncoder::new(EncoderConfig {
            mtu: 100,
            ..Default::default()
        });
        assert!(matches!(err, Err(ConfigError::MtuTooSmall { .. })));
    }

    #[test]
    fn statistics_and_selector_report_are_options_records() {
        use ipfixrw::parser::{DataRecordKey, DataRecordValue};
        let cfg = EncoderConfig {
            sampling: Some(Sampling {
                algorithm: crate::SelectorAlgorithm::SystematicCountBased,
                every: 8,
            }),
            ..Default::default()
        };
        let mut enc = MessageEncoder::new(cfg).unwrap();
        let mut msgs: Vec<Vec<u8>> = vec![];
        let stats = Statistics {
            metering: MeteringCounts {
                observed: 1000,
                not_metered: 10,
                not_metered_octets: 640,
                not_metered_span_ms: Some((1_700_000_000_123, 1_700_000_009_456)),
            },
            sent: Sent {
                messages: 3,
                records: 3,
                octets: 900,
            },
            not_sent: FlowTotals {
                flows: 2,
                packets: 20,
                octets: 2000,
            },
        };
        enc.push_statistics(100, &stats, |m| msgs.push(m.to_vec()));
        for i in 0..3 {
            enc.push(&rec(i, false), 100, |m| msgs.push(m.to_vec()));
        }
        enc.push_statistics(100, &stats, |m| msgs.push(m.to_vec()));
        let ids = |m: &[u8]| parse(m).1.iter().map(|s| s.0).collect::<Vec<u16>>();
        assert_eq!(ids(&msgs[0]), vec![2, 3]);
        assert_eq!(parse(&msgs[1]).0, 0);
        assert_eq!(ids(&msgs[1]), vec![261, 268, 263, 260]);
        assert_eq!(msgs.len(), 4);
        let (seq, sets) = parse(&msgs[3]);
        // Four options records before, then three flow records.
        assert_eq!(seq, 7);
        assert_eq!(sets.len(), 4);
        assert_eq!(enc.stats().records, 3);
        assert_eq!(enc.stats().options_records, 8);
        let templates: ipfixrw::template_store::TemplateStore =
            std::rc::Rc::new(std::cell::RefCell::new(std::collections::HashMap::new()));
        let formatter = std::rc::Rc::new(ipfixrw::information_elements::get_default_formatter());
        let mut values = std::collections::HashMap::new();
        for m in &msgs {
            let msg = ipfixrw::parse_ipfix_message(m, templates.clone(), formatter.clone())
                .expect("ipfixrw decodes the options");
            for r in msg.iter_data_records() {
                for (k, v) in &r.values {
                    if let DataRecordKey::Str(k) = k {
                        values.insert(k.to_string(), v.clone());
                    }
                }
            }
        }
        let get = |k: &str| values.get(k).cloned();
        assert_eq!(get("samplingPacketSpace"), Some(DataRecordValue::U32(7)));
        assert_eq!(get("selectorAlgorithm"), Some(DataRecordValue::U16(1)));
        assert_eq!(
            get("exportedFlowRecordTotalCount"),
            Some(DataRecordValue::U64(3))
        );
        assert_eq!(
            get("exportedMessageTotalCount"),
            Some(DataRecordValue::U64(3))
        );
        assert_eq!(get("packetTotalCount"), Some(DataRecordValue::U64(1000)));
        assert_eq!(
            get("ignoredOctetTotalCount"),
            Some(DataRecordValue::U64(640))
        );
        assert!(get("droppedPacketTotalCount").is_none());
        assert!(get("flowStartMilliseconds").is_some() && get("flowEndMilliseconds").is_some());
        assert_eq!(
            get("ignoredPacketTotalCount"),
            Some(DataRecordValue::U64(10))
        );
        assert_eq!(get("notSentFlowTotalCount"), Some(DataRecordValue::U64(2)));
        assert_eq!(
            get("notSentOctetTotalCount"),
            Some(DataRecordValue::U64(2000))
        );
    }

    #[test]
    fn prelude_carries_every_template_and_no_data() {
        let cfg = EncoderConfig {
            inline_templates: false,
            ..Default::default()
        };
        let mut enc = MessageEncoder::new(cfg).unwrap();
        let mut msgs: Vec<Vec<u8>> = vec![];
        for i in 0..200 {
            enc.push(&rec(i, i % 2 == 0), 100, |m| msgs.push(m.to_vec()));
        }
        enc.flush(100, |m| msgs.push(m.to_vec()));
        assert_eq!(enc.stats().template_sets, 0);
        let mut prelude = enc.template_prelude();
        let p = prelude.stamp_for(&msgs[1]).to_vec();
        let (seq, sets) = parse(&p);
        assert_eq!(seq, parse(&msgs[1]).0);
        assert_eq!(sets, vec![(2, 0), (3, 0)]);
        // An independent decoder given the prelude decodes a later message.
        let templates: ipfixrw::template_store::TemplateStore =
            std::rc::Rc::new(std::cell::RefCell::new(std::collections::HashMap::new()));
        let formatter = std::rc::Rc::new(ipfixrw::information_elements::get_default_formatter());
        ipfixrw::parse_ipfix_message(&p, templates.clone(), formatter.clone()).unwrap();
        let m = ipfixrw::parse_ipfix_message(&msgs[1], templates, formatter).unwrap();
        assert!(m.iter_data_records().count() > 0);
    }

    #[test]
    fn independent_decoder_reads_our_messages() {
        use ipfixrw::parser::{DataRecordKey, DataRecordValue};
        let mut enc = MessageEncoder::new(EncoderConfig::default()).unwrap();
        let mut msgs: Vec<Vec<u8>> = vec![];
        for i in 0..50 {
            enc.push(&rec(i, i % 2 == 0), 100, |m| msgs.push(m.to_vec()));
        }
        enc.flush(100, |m| msgs.push(m.to_vec()));
        let templates: ipfixrw::template_store::TemplateStore =
            std::rc::Rc::new(std::cell::RefCell::new(std::collections::HashMap::new()));
        let formatter = std::rc::Rc::new(ipfixrw::information_elements::get_default_formatter());
        let mut decoded = 0;
        for m in &msgs {
            let msg = ipfixrw::parse_ipfix_message(m, templates.clone(), formatter.clone())
                .expect("ipfixrw decodes our message");
            for r in msg.iter_data_records() {
                assert_eq!(
                    r.values.get(&DataRecordKey::Str("packetDeltaCount")),
                    Some(&DataRecordValue::U64(1))
                );
                decoded += 1;
            }
        }
        assert_eq!(decoded, 50);
    }
}
