//! The selector report (RFC 5477 §6.5, carried as RFC 7011 §4 options): how the metering
//! process sampled packets, so a collector can tell sampled counts from complete ones and scale
//! them (nfdump multiplies by the interval it reads here).
//!
//! One options template (ID 260), scoped to the observation domain, and one options data
//! record, both sent with every template refresh while sampling is on.

use crate::ie::FieldSpec;
use crate::SET_HEADER_LEN;

/// Set ID of an options template set (RFC 7011 §3.3.2).
pub const OPTIONS_TEMPLATE_SET_ID: u16 = 3;
/// Template ID of the selector report.
pub const SELECTOR_TEMPLATE_ID: u16 = 260;

const OBSERVATION_DOMAIN_ID: FieldSpec = FieldSpec { id: 149, length: 4 };
const SELECTOR_ID: FieldSpec = FieldSpec { id: 302, length: 8 };
const SELECTOR_ALGORITHM: FieldSpec = FieldSpec { id: 304, length: 2 };
const SAMPLING_PACKET_INTERVAL: FieldSpec = FieldSpec { id: 305, length: 4 };
const SAMPLING_PACKET_SPACE: FieldSpec = FieldSpec { id: 306, length: 4 };

/// Scope first, then the options.
const FIELDS: [FieldSpec; 5] = [
    OBSERVATION_DOMAIN_ID,
    SELECTOR_ID,
    SELECTOR_ALGORITHM,
    SAMPLING_PACKET_INTERVAL,
    SAMPLING_PACKET_SPACE,
];
const SCOPE_FIELDS: u16 = 1;

/// IANA selectorAlgorithm values (RFC 5477 §8.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorAlgorithm {
    /// Every Nth packet: 1 selected, then N-1 skipped.
    SystematicCountBased = 1,
    /// Each packet with probability 1/N (random n-out-of-N with n = 1 on average).
    RandomNOutOfN = 3,
}

/// 1-in-N packet sampling as configured in the metering process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampling {
    pub algorithm: SelectorAlgorithm,
    /// Keep 1 packet in `every` (≥ 2).
    pub every: u32,
}

/// Bytes of the options template set.
pub fn template_set_len() -> usize {
    SET_HEADER_LEN + 6 + 4 * FIELDS.len()
}

/// Bytes of the data set holding the one selector record.
pub fn record_set_len() -> usize {
    SET_HEADER_LEN + FIELDS.iter().map(|f| f.length as usize).sum::<usize>()
}

/// Writes the options template set, then the data set with the selector record; returns the
/// bytes written. `out` must hold `template_set_len() + record_set_len()` bytes.
pub fn write(out: &mut [u8], observation_domain: u32, s: &Sampling) -> usize {
    let t = template_set_len();
    out[0..2].copy_from_slice(&OPTIONS_TEMPLATE_SET_ID.to_be_bytes());
    out[2..4].copy_from_slice(&(t as u16).to_be_bytes());
    out[4..6].copy_from_slice(&SELECTOR_TEMPLATE_ID.to_be_bytes());
    out[6..8].copy_from_slice(&(FIELDS.len() as u16).to_be_bytes());
    out[8..10].copy_from_slice(&SCOPE_FIELDS.to_be_bytes());
    let mut pos = 10;
    for f in FIELDS {
        out[pos..pos + 2].copy_from_slice(&f.id.to_be_bytes());
        out[pos + 2..pos + 4].copy_from_slice(&f.length.to_be_bytes());
        pos += 4;
    }
    debug_assert_eq!(pos, t);
    let r = record_set_len();
    let d = &mut out[t..t + r];
    d[0..2].copy_from_slice(&SELECTOR_TEMPLATE_ID.to_be_bytes());
    d[2..4].copy_from_slice(&(r as u16).to_be_bytes());
    d[4..8].copy_from_slice(&observation_domain.to_be_bytes());
    d[8..16].copy_from_slice(&1u64.to_be_bytes());
    d[16..18].copy_from_slice(&(s.algorithm as u16).to_be_bytes());
    // RFC 5477 §8.2.2/§8.2.3: select `interval` packets, then skip `space`.
    d[18..22].copy_from_slice(&1u32.to_be_bytes());
    d[22..26].copy_from_slice(&s.every.saturating_sub(1).to_be_bytes());
    t + r
}
