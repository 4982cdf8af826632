//! Options templates and records (RFC 7011 §4, RFC 5477 §6.5): what the exporter tells a
//! collector about itself, so the collector can judge how complete the flow records are.
//!
//! - 260 **selector report** (RFC 5477): how packets were sampled, so sampled counts can be told
//!   from complete ones and scaled (nfdump multiplies by the interval it reads here);
//! - 261 **metering process statistics** (RFC 7011 §4.1): messages, flow records and octets
//!   exported in this session;
//! - 262 and 268 **metering process reliability statistics** (RFC 7011 §4.2, with the elements
//!   it names): packets observed (packetTotalCount), packets and octets the metering process did
//!   not meter (ignoredPacketTotalCount, ignoredOctetTotalCount: filtered, malformed, on the
//!   ignore list, duplicates, and dropped for lack of resources before metering), and, in 268,
//!   the times of the first and last packet not metered (flowStartMilliseconds,
//!   flowEndMilliseconds, as §4.2 asks). 262 is used while nothing was ignored, so no time is
//!   ever sent as a zero a collector would show as 1970. droppedPacketTotalCount (135) is not
//!   used: IANA defines it as packets dropped by packet treatment (forwarding), which a passive
//!   probe does not do;
//! - 263 **exporting process reliability statistics** (RFC 7011 §4.3): flow records, packets
//!   and octets that were metered but never reached this collector.
//!
//! The templates are fixed; a record is a list of u64 values written at each field's length.

use crate::ie::FieldSpec;
use crate::SET_HEADER_LEN;

/// Set ID of an options template set (RFC 7011 §3.3.2).
pub const OPTIONS_TEMPLATE_SET_ID: u16 = 3;

/// One options template: scope fields first, then the option fields.
#[derive(Debug)]
pub struct OptionsTemplate {
    pub id: u16,
    pub scope: &'static [FieldSpec],
    pub fields: &'static [FieldSpec],
}

use crate::ie::f;

const OBSERVATION_DOMAIN_ID: FieldSpec = f(149, 4);
const EXPORTING_PROCESS_ID: FieldSpec = f(144, 4);

/// RFC 5477 selector report.
pub const SELECTOR: OptionsTemplate = OptionsTemplate {
    id: 260,
    scope: &[OBSERVATION_DOMAIN_ID],
    fields: &[
        f(302, 8), // selectorId
        f(304, 2), // selectorAlgorithm
        f(305, 4), // samplingPacketInterval
        f(306, 4), // samplingPacketSpace
    ],
};

/// RFC 7014 flow selector report: how flows (here, address pairs) were sampled, for
/// `--sample-mode flow`: flowSelectorAlgorithm 3 (random n-out-of-N), 1 selected in N.
pub const FLOW_SELECTOR: OptionsTemplate = OptionsTemplate {
    id: 269,
    scope: &[OBSERVATION_DOMAIN_ID],
    fields: &[
        f(302, 8), // selectorId
        f(390, 2), // flowSelectorAlgorithm
        f(396, 8), // samplingFlowInterval
        f(397, 8), // samplingFlowSpacing
    ],
};

/// RFC 7011 §4.1.
pub const METERING_STATISTICS: OptionsTemplate = OptionsTemplate {
    id: 261,
    scope: &[OBSERVATION_DOMAIN_ID],
    fields: &[
        f(41, 8), // exportedMessageTotalCount
        f(42, 8), // exportedFlowRecordTotalCount
        f(40, 8), // exportedOctetTotalCount
    ],
};

/// RFC 7011 §4.2 while nothing was ignored, with the packets observed as the base.
pub const METERING_RELIABILITY: OptionsTemplate = OptionsTemplate {
    id: 262,
    scope: &[OBSERVATION_DOMAIN_ID],
    fields: &[
        f(86, 8),  // packetTotalCount: packets observed
        f(164, 8), // ignoredPacketTotalCount: observed but not metered
        f(165, 8), // ignoredOctetTotalCount: their octets
    ],
};

/// RFC 7011 §4.2 once a packet was ignored: also the times of the first and the last.
pub const METERING_RELIABILITY_TIMED: OptionsTemplate = OptionsTemplate {
    id: 268,
    scope: &[OBSERVATION_DOMAIN_ID],
    fields: &[
        f(86, 8),  // packetTotalCount
        f(164, 8), // ignoredPacketTotalCount
        f(165, 8), // ignoredOctetTotalCount
        f(152, 8), // flowStartMilliseconds: the first packet ignored
        f(153, 8), // flowEndMilliseconds: the last packet ignored
    ],
};

/// RFC 7011 §4.3.
pub const EXPORTING_RELIABILITY: OptionsTemplate = OptionsTemplate {
    id: 263,
    scope: &[EXPORTING_PROCESS_ID],
    fields: &[
        f(166, 8), // notSentFlowTotalCount
        f(167, 8), // notSentPacketTotalCount
        f(168, 8), // notSentOctetTotalCount
    ],
};

/// The statistics templates, always announced; [`SELECTOR`] only when sampling is on. A
/// statistics message carries one of the two metering reliability layouts.
pub const STATISTICS: [&OptionsTemplate; 4] = [
    &METERING_STATISTICS,
    &METERING_RELIABILITY,
    &METERING_RELIABILITY_TIMED,
    &EXPORTING_RELIABILITY,
];

impl OptionsTemplate {
    fn all_fields(&self) -> impl Iterator<Item = &FieldSpec> {
        self.scope.iter().chain(self.fields)
    }

    /// Bytes of this template's record in an options template set.
    pub fn template_record_len(&self) -> usize {
        6 + 4 * (self.scope.len() + self.fields.len())
    }

    /// Bytes of one data record.
    pub fn record_len(&self) -> usize {
        self.all_fields().map(|f| f.length as usize).sum()
    }

    /// Bytes of a data set holding one record.
    pub fn record_set_len(&self) -> usize {
        SET_HEADER_LEN + self.record_len()
    }

    /// Writes this template's record for an options template set; returns its length.
    pub fn write_template_record(&self, out: &mut [u8]) -> usize {
        let n = self.scope.len() + self.fields.len();
        out[0..2].copy_from_slice(&self.id.to_be_bytes());
        out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        out[4..6].copy_from_slice(&(self.scope.len() as u16).to_be_bytes());
        let mut pos = 6;
        for fs in self.all_fields() {
            out[pos..pos + 2].copy_from_slice(&fs.id.to_be_bytes());
            out[pos + 2..pos + 4].copy_from_slice(&fs.length.to_be_bytes());
            pos += 4;
        }
        pos
    }

    /// Writes a data set with one record; `values` holds the scope values, then the options, in
    /// template order, each written big-endian in its field's length. Returns the bytes written.
    pub fn write_record_set(&self, out: &mut [u8], values: &[u64]) -> usize {
        debug_assert_eq!(values.len(), self.scope.len() + self.fields.len());
        let len = self.record_set_len();
        out[0..2].copy_from_slice(&self.id.to_be_bytes());
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        let mut pos = SET_HEADER_LEN;
        for (fs, v) in self.all_fields().zip(values) {
            let l = fs.length as usize;
            out[pos..pos + l].copy_from_slice(&v.to_be_bytes()[8 - l..]);
            pos += l;
        }
        debug_assert_eq!(pos, len);
        len
    }
}

/// Bytes of the options template set for a configuration.
pub fn template_set_len(sampling: bool) -> usize {
    SET_HEADER_LEN
        + announced(sampling)
            .map(|t| t.template_record_len())
            .sum::<usize>()
}

/// The options templates an exporter announces.
pub fn announced(sampling: bool) -> impl Iterator<Item = &'static OptionsTemplate> {
    STATISTICS
        .into_iter()
        .chain(sampling.then_some(&SELECTOR))
        .chain(sampling.then_some(&FLOW_SELECTOR))
}

/// Writes the options template set; returns the bytes written.
pub fn write_template_set(out: &mut [u8], sampling: bool) -> usize {
    let len = template_set_len(sampling);
    out[0..2].copy_from_slice(&OPTIONS_TEMPLATE_SET_ID.to_be_bytes());
    out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    let mut pos = SET_HEADER_LEN;
    for t in announced(sampling) {
        pos += t.write_template_record(&mut out[pos..]);
    }
    debug_assert_eq!(pos, len);
    len
}

/// IANA selectorAlgorithm values (RFC 5477 §8.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorAlgorithm {
    /// Every Nth packet: 1 selected, then N-1 skipped.
    SystematicCountBased = 1,
    /// Each packet with probability 1/N (random n-out-of-N with n = 1 on average).
    RandomNOutOfN = 3,
    /// Every packet of 1 in N flows (address pairs), chosen at random by a keyed hash: RFC
    /// 7014's flowSelectorAlgorithm 3, random n-out-of-N, reported in [`FLOW_SELECTOR`].
    FlowRandomNOutOfN = 0x103,
}

impl SelectorAlgorithm {
    /// The options template that reports it, and the value of its algorithm element.
    pub fn report(self) -> (&'static OptionsTemplate, u64) {
        match self {
            SelectorAlgorithm::FlowRandomNOutOfN => (&FLOW_SELECTOR, 3),
            a => (&SELECTOR, a as u64),
        }
    }
}

/// 1-in-N packet sampling as configured in the metering process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampling {
    pub algorithm: SelectorAlgorithm,
    /// Keep 1 packet in `every` (≥ 2).
    pub every: u32,
}

/// What the metering process saw, as totals since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeteringCounts {
    /// Packets observed (frames seen by the capture, or read from files).
    pub observed: u64,
    /// Observed packets not metered: filtered, malformed, on the ignore list, duplicates, and
    /// dropped for lack of resources (full rings, queues).
    pub not_metered: u64,
    /// Octets of the packets not metered that the probe read (a frame the kernel dropped for a
    /// full ring never reached it, and has no length to add).
    pub not_metered_octets: u64,
    /// Unix ms of the first and the last packet not metered that the probe read, when any.
    pub not_metered_span_ms: Option<(u64, u64)>,
}

/// A count of flow records with the packets and octets they carry: what a message holds, or
/// what never reached a collector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowTotals {
    pub flows: u64,
    pub packets: u64,
    pub octets: u64,
}

impl FlowTotals {
    /// What one record stands for: one flow record, with the packets and octets of both its
    /// directions (a biflow's reverse side too).
    pub fn of(rec: &crate::record::FlowRecord) -> FlowTotals {
        let rev = rec.reverse.unwrap_or_default();
        FlowTotals {
            flows: 1,
            packets: rec.packets.saturating_add(rev.packets),
            octets: rec.octets.saturating_add(rev.octets),
        }
    }
}

impl std::ops::AddAssign for FlowTotals {
    fn add_assign(&mut self, o: FlowTotals) {
        // Saturating: counts from hostile or absurd input must not wrap into small numbers.
        self.flows = self.flows.saturating_add(o.flows);
        self.packets = self.packets.saturating_add(o.packets);
        self.octets = self.octets.saturating_add(o.octets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_at_their_lengths() {
        let mut buf = [0u8; 64];
        let n = SELECTOR.write_record_set(&mut buf, &[7, 1, 3, 1, 9]);
        assert_eq!(n, SELECTOR.record_set_len());
        assert_eq!(&buf[0..4], &[1, 4, 0, 26]);
        assert_eq!(&buf[4..8], &[0, 0, 0, 7]);
        assert_eq!(&buf[8..16], &1u64.to_be_bytes());
        assert_eq!(&buf[16..18], &[0, 3]);
        assert_eq!(&buf[18..22], &[0, 0, 0, 1]);
        assert_eq!(&buf[22..26], &[0, 0, 0, 9]);
    }

    #[test]
    fn template_set_lengths_add_up() {
        let mut buf = [0u8; 256];
        for sampling in [false, true] {
            let n = write_template_set(&mut buf, sampling);
            assert_eq!(n, template_set_len(sampling));
            assert_eq!(u16::from_be_bytes([buf[2], buf[3]]) as usize, n);
        }
    }
}
