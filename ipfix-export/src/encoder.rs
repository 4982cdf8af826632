//! Packing flow records into IPFIX messages (RFC 7011 §3), with no I/O.
//!
//! The encoder owns one MTU-sized buffer. Records are appended to the current data set; a record
//! of another layout opens a new set; a record that does not fit finishes the message, which is
//! handed to the caller's `emit` closure as a byte slice. Templates lead the first message and are
//! repeated when the refresh interval has elapsed. The caller supplies the time, so tests drive
//! the encoder deterministically.

use crate::record::FlowRecord;
use crate::sampling::{self, Sampling};
use crate::template::{self, Layout};
use crate::{IPFIX_VERSION, MESSAGE_HEADER_LEN, SET_HEADER_LEN};

/// Configuration of one exporting process towards one observation domain.
#[derive(Clone, Debug)]
pub struct EncoderConfig {
    pub observation_domain: u32,
    /// Largest message in bytes (the whole IPFIX message, headers included).
    pub mtu: usize,
    /// Re-send templates when this many seconds have passed since they were last sent
    /// (meant for UDP, where a collector may start after us). `None`: only at start.
    pub template_refresh_secs: Option<u32>,
    /// Also re-send templates every this many messages (UDP: a collector that restarts under a
    /// steady stream recovers within N messages). `None`: by time only.
    pub template_refresh_messages: Option<u32>,
    /// Packet sampling in the metering process, reported with every template refresh.
    pub sampling: Option<Sampling>,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            observation_domain: 1,
            mtu: 1400,
            template_refresh_secs: Some(60),
            template_refresh_messages: None,
            sampling: None,
        }
    }
}

/// Errors in an encoder configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
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
    /// Options data records (the selector report).
    pub options_records: u64,
    pub octets: u64,
    pub template_sets: u64,
}

/// The smallest MTU that holds a message with the template set and one record of any layout.
pub fn min_mtu() -> usize {
    let largest_record = Layout::ALL
        .iter()
        .map(|l| l.record_len())
        .max()
        .unwrap_or(0);
    MESSAGE_HEADER_LEN + template::template_set_len() + SET_HEADER_LEN + largest_record
}

/// [`min_mtu`] for a configuration: the selector report adds its sets when sampling is on.
pub fn min_mtu_for(cfg: &EncoderConfig) -> usize {
    min_mtu()
        + if cfg.sampling.is_some() {
            sampling::template_set_len() + sampling::record_set_len()
        } else {
            0
        }
}

/// Builds IPFIX messages from flow records.
pub struct MessageEncoder {
    cfg: EncoderConfig,
    buf: Vec<u8>,
    /// Bytes used in `buf`; 0 when no message is open.
    len: usize,
    /// The open data set: its layout and the offset of its header.
    open_set: Option<(Layout, usize)>,
    records_in_message: u32,
    options_in_message: u32,
    /// Data records sent before the open message, modulo 2^32 (RFC 7011 §3.1).
    sequence: u32,
    /// Export time of the newest call, seconds since the UNIX epoch.
    now_secs: u32,
    templates_sent_at: Option<u32>,
    /// Messages finished since the last one that carried templates.
    messages_since_templates: u32,
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
        Ok(MessageEncoder {
            buf: vec![0; cfg.mtu],
            cfg,
            len: 0,
            open_set: None,
            records_in_message: 0,
            options_in_message: 0,
            sequence: 0,
            now_secs: 0,
            templates_sent_at: None,
            messages_since_templates: 0,
            stats: EncoderStats::default(),
        })
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

    /// Appends one record; `emit` receives every message this completes.
    #[inline]
    pub fn push(&mut self, rec: &FlowRecord, now_secs: u32, mut emit: impl FnMut(&[u8])) {
        self.now_secs = now_secs;
        let layout = Layout::of(rec);
        let need = layout.record_len()
            + match self.open_set {
                Some((l, _)) if l == layout => 0,
                _ => SET_HEADER_LEN,
            };
        // A due template refresh or a full message ends the open message.
        if self.len != 0 && (self.templates_due() || self.len + need > self.cfg.mtu) {
            self.finish(&mut emit);
        }
        if self.len == 0 {
            // Every new message decides whether it leads with the templates; `min_mtu`
            // guarantees that templates and one record of any layout fit together.
            if self.templates_due() {
                self.open_message_with_templates();
            } else {
                self.open_message();
            }
        }
        if !matches!(self.open_set, Some((l, _)) if l == layout) {
            self.close_set();
            let start = self.len;
            self.buf[start..start + 2].copy_from_slice(&layout.template_id().to_be_bytes());
            self.len += SET_HEADER_LEN;
            self.open_set = Some((layout, start));
        }
        self.len += template::encode_record(rec, layout, &mut self.buf[self.len..]);
        self.records_in_message += 1;
    }

    /// Finishes the open message, if any, and hands it to `emit`. Also sends templates when
    /// they are due even though no records are waiting, so an idle exporter keeps a UDP
    /// collector's template cache fresh.
    pub fn flush(&mut self, now_secs: u32, mut emit: impl FnMut(&[u8])) {
        self.now_secs = now_secs;
        if self.templates_due() {
            self.finish(&mut emit);
            self.open_message_with_templates();
        }
        self.finish(&mut emit);
    }

    fn templates_due(&self) -> bool {
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
        self.records_in_message = 0;
        self.options_in_message = 0;
    }

    fn open_message_with_templates(&mut self) {
        self.open_message();
        self.len += template::write_template_set(&mut self.buf[self.len..]);
        if let Some(s) = self.cfg.sampling {
            let domain = self.cfg.observation_domain;
            self.len += sampling::write(&mut self.buf[self.len..], domain, &s);
            // An options data record is a data record: it counts in the sequence number.
            self.options_in_message += 1;
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

    fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
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
        emit(&self.buf[..len]);
        self.messages_since_templates += 1;
        self.sequence = self
            .sequence
            .wrapping_add(self.records_in_message + self.options_in_message);
        self.stats.messages += 1;
        self.stats.records += self.records_in_message as u64;
        self.stats.options_records += self.options_in_message as u64;
        self.stats.octets += len as u64;
        self.len = 0;
        self.records_in_message = 0;
        self.options_in_message = 0;
    }
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
            if id == sampling::SELECTOR_TEMPLATE_ID {
                assert_eq!(len, sampling::record_set_len());
                sets.push((id, 1));
            } else if id == sampling::OPTIONS_TEMPLATE_SET_ID {
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
    fn messages_respect_mtu_and_count_every_record() {
        let mut enc = MessageEncoder::new(EncoderConfig {
            mtu: 512,
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
            assert!(m.len() <= 512);
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
        assert_eq!(u16::from_be_bytes([msgs[0][16], msgs[0][17]]), 2);
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
        assert_eq!(n, 2);
    }

    #[test]
    fn templates_are_refreshed_every_n_messages() {
        let cfg = EncoderConfig {
            mtu: 512,
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
        assert_eq!(with_templates[..4], [0, 5, 10, 15]);
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
    fn sampling_is_reported_in_an_options_record_with_the_templates() {
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
        for i in 0..3 {
            enc.push(&rec(i, false), 100, |m| msgs.push(m.to_vec()));
        }
        enc.flush(100, |m| msgs.push(m.to_vec()));
        let (seq, sets) = parse(&msgs[0]);
        assert_eq!(seq, 0);
        let ids: Vec<u16> = sets.iter().map(|s| s.0).collect();
        assert_eq!(ids, vec![3, 260, 256]);
        assert_eq!(enc.stats().records, 3);
        assert_eq!(enc.stats().options_records, 1);
        let templates: ipfixrw::template_store::TemplateStore =
            std::rc::Rc::new(std::cell::RefCell::new(std::collections::HashMap::new()));
        let formatter = std::rc::Rc::new(ipfixrw::information_elements::get_default_formatter());
        let msg = ipfixrw::parse_ipfix_message(&msgs[0], templates, formatter)
            .expect("ipfixrw decodes the options");
        let selector = msg
            .iter_data_records()
            .find(|r| {
                r.values
                    .contains_key(&DataRecordKey::Str("samplingPacketSpace"))
            })
            .expect("a selector record");
        assert_eq!(
            selector
                .values
                .get(&DataRecordKey::Str("samplingPacketSpace")),
            Some(&DataRecordValue::U32(7))
        );
        assert_eq!(
            selector
                .values
                .get(&DataRecordKey::Str("selectorAlgorithm")),
            Some(&DataRecordValue::U16(1))
        );
        // The next message's sequence number counts the options record too.
        enc.push(&rec(9, false), 100, |m| msgs.push(m.to_vec()));
        enc.flush(100, |m| msgs.push(m.to_vec()));
        assert_eq!(parse(msgs.last().unwrap()).0, 4);
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
