//! The layouts of aggregated records (RFC 7015): a flood's one-packet flows rolled up by the
//! side they share.
//!
//! An aggregate keeps one side's address (and port) and replaces the other side's with a prefix
//! of length 0, "any address", as RFC 7015 §5.1 describes aggregation by address prefix:
//! `sourceIPv4Prefix` 0.0.0.0 with `sourceIPv4PrefixLength` 0 when the destination is kept. The
//! kept side's address goes in the plain address element with its prefix length (32 or 128),
//! so collectors that know only the NetFlow v9 elements (nfdump 1.7, pmacct) still show the
//! victim; a table-full catch-all keeps neither and says so with a destination length of 0.
//!
//! The counts: `deltaFlowCount` (3, which nfdump shows as the record's flows) and
//! `originalFlowsPresent` (375) for the flows rolled in, equal because each was one packet in
//! one interval; `distinctCountOfSourceIPAddress` (378), or of the destination (379) when the
//! source is kept, for the sketch's estimate.
//!
//! Aggregate layouts are announced the first time one is used (like the application layouts):
//! a probe that never sees a flood sends the same templates as before.

use crate::ie::{self, FieldSpec};
use crate::record::{FlowRecord, Kept};

/// Fields of an aggregate that keeps the destination, with its port or (ICMP) type and code.
macro_rules! kept_destination {
    ($src_prefix:expr, $src_len:expr, $dst:expr, $dst_len:expr, $fourth:expr) => {
        [
            $src_prefix,
            $src_len,
            $dst,
            $dst_len,
            $fourth,
            ie::PROTOCOL_IDENTIFIER,
            ie::IP_VERSION,
            ie::TCP_CONTROL_BITS,
            ie::MINIMUM_TTL,
            ie::MAXIMUM_TTL,
            ie::PACKET_DELTA_COUNT,
            ie::OCTET_DELTA_COUNT,
            ie::FLOW_START_MILLISECONDS,
            ie::FLOW_END_MILLISECONDS,
            ie::DELTA_FLOW_COUNT,
            ie::ORIGINAL_FLOWS_PRESENT,
            ie::DISTINCT_COUNT_OF_SOURCE_IP_ADDRESS,
        ]
    };
}

/// Fields of an aggregate that keeps the source address and port (a server's answers).
macro_rules! kept_source {
    ($src:expr, $src_len:expr, $dst_prefix:expr, $dst_len:expr) => {
        [
            $src,
            $src_len,
            ie::SOURCE_TRANSPORT_PORT,
            $dst_prefix,
            $dst_len,
            ie::PROTOCOL_IDENTIFIER,
            ie::IP_VERSION,
            ie::TCP_CONTROL_BITS,
            ie::MINIMUM_TTL,
            ie::MAXIMUM_TTL,
            ie::PACKET_DELTA_COUNT,
            ie::OCTET_DELTA_COUNT,
            ie::FLOW_START_MILLISECONDS,
            ie::FLOW_END_MILLISECONDS,
            ie::DELTA_FLOW_COUNT,
            ie::ORIGINAL_FLOWS_PRESENT,
            ie::DISTINCT_COUNT_OF_DESTINATION_IP_ADDRESS,
        ]
    };
}

const FIELDS: usize = 17;

const DST_V4: [FieldSpec; FIELDS] = kept_destination!(
    ie::SOURCE_IPV4_PREFIX,
    ie::SOURCE_IPV4_PREFIX_LENGTH,
    ie::DESTINATION_IPV4_ADDRESS,
    ie::DESTINATION_IPV4_PREFIX_LENGTH,
    ie::DESTINATION_TRANSPORT_PORT
);
const DST_V4_ICMP: [FieldSpec; FIELDS] = kept_destination!(
    ie::SOURCE_IPV4_PREFIX,
    ie::SOURCE_IPV4_PREFIX_LENGTH,
    ie::DESTINATION_IPV4_ADDRESS,
    ie::DESTINATION_IPV4_PREFIX_LENGTH,
    ie::ICMP_TYPE_CODE_IPV4
);
const DST_V6: [FieldSpec; FIELDS] = kept_destination!(
    ie::SOURCE_IPV6_PREFIX,
    ie::SOURCE_IPV6_PREFIX_LENGTH,
    ie::DESTINATION_IPV6_ADDRESS,
    ie::DESTINATION_IPV6_PREFIX_LENGTH,
    ie::DESTINATION_TRANSPORT_PORT
);
const DST_V6_ICMP: [FieldSpec; FIELDS] = kept_destination!(
    ie::SOURCE_IPV6_PREFIX,
    ie::SOURCE_IPV6_PREFIX_LENGTH,
    ie::DESTINATION_IPV6_ADDRESS,
    ie::DESTINATION_IPV6_PREFIX_LENGTH,
    ie::ICMP_TYPE_CODE_IPV6
);
const SRC_V4: [FieldSpec; FIELDS] = kept_source!(
    ie::SOURCE_IPV4_ADDRESS,
    ie::SOURCE_IPV4_PREFIX_LENGTH,
    ie::DESTINATION_IPV4_PREFIX,
    ie::DESTINATION_IPV4_PREFIX_LENGTH
);
const SRC_V6: [FieldSpec; FIELDS] = kept_source!(
    ie::SOURCE_IPV6_ADDRESS,
    ie::SOURCE_IPV6_PREFIX_LENGTH,
    ie::DESTINATION_IPV6_PREFIX,
    ie::DESTINATION_IPV6_PREFIX_LENGTH
);

/// The aggregate layout code of a record: 0 for a flow, 1 when its destination (or neither
/// side) is kept, 2 when its source is.
pub(crate) fn code_of(rec: &FlowRecord) -> u8 {
    match rec.aggregate.as_deref().map(|a| a.kept) {
        None => 0,
        Some(Kept::Destination | Kept::Neither) => 1,
        Some(Kept::Source) => 2,
    }
}

/// The fields of aggregate layout `code` (1 or 2).
pub(crate) fn fields(code: u8, v6: bool, icmp: bool) -> &'static [FieldSpec] {
    match (code, v6, icmp) {
        (2, false, _) => &SRC_V4,
        (2, true, _) => &SRC_V6,
        (_, false, false) => &DST_V4,
        (_, false, true) => &DST_V4_ICMP,
        (_, true, false) => &DST_V6,
        (_, true, true) => &DST_V6_ICMP,
    }
}

/// Bytes of one aggregate record.
pub(crate) fn record_len(v6: bool) -> usize {
    let addr = if v6 { 16 } else { 4 };
    2 * addr + 1 + 1 + 2 + 1 + 1 + 2 + 1 + 1 + 8 * 7
}

/// Writes `rec`, an aggregate, in layout `code`; returns the bytes written.
pub(crate) fn encode(rec: &FlowRecord, code: u8, v6: bool, icmp: bool, out: &mut [u8]) -> usize {
    let a = rec
        .aggregate
        .as_deref()
        .expect("an aggregate layout is chosen only for an aggregate");
    let (src_len, dst_len) = a.prefix_lengths(v6);
    let len = record_len(v6);
    let out = &mut out[..len];
    let mut pos = 0;
    let mut put = |b: &[u8]| {
        out[pos..pos + b.len()].copy_from_slice(b);
        pos += b.len();
    };
    let addr = |ip: std::net::IpAddr| -> ([u8; 16], usize) {
        match ip {
            std::net::IpAddr::V4(a) if !v6 => {
                let mut o = [0; 16];
                o[..4].copy_from_slice(&a.octets());
                (o, 4)
            }
            std::net::IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), 16),
            std::net::IpAddr::V6(a) => (a.octets(), 16),
        }
    };
    let zero = [0u8; 16];
    let width = if v6 { 16 } else { 4 };
    if code == 2 {
        let (s, n) = addr(rec.src_addr);
        put(&s[..n]);
        put(&[src_len]);
        put(&rec.src_port.to_be_bytes());
        put(&zero[..width]);
        put(&[dst_len]);
    } else {
        put(&zero[..width]);
        put(&[src_len]);
        let (d, n) = if dst_len == 0 {
            (zero, width)
        } else {
            addr(rec.dst_addr)
        };
        put(&d[..n]);
        put(&[dst_len]);
        let fourth = if icmp {
            rec.icmp_type_code
        } else {
            rec.dst_port
        };
        put(&fourth.to_be_bytes());
    }
    put(&[rec.protocol, if v6 { 6 } else { 4 }]);
    put(&rec.tcp_flags.to_be_bytes());
    put(&[rec.min_ttl, rec.max_ttl]);
    put(&rec.packets.to_be_bytes());
    put(&rec.octets.to_be_bytes());
    put(&(rec.start_ns / 1_000_000).to_be_bytes());
    put(&(rec.end_ns / 1_000_000).to_be_bytes());
    put(&a.flows.to_be_bytes());
    put(&a.flows.to_be_bytes());
    put(&a.distinct.to_be_bytes());
    debug_assert_eq!(pos, len);
    len
}
