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

/// The first fields of an aggregate that keeps the destination: the sources' prefix (any),
/// the destination address with its length, then its port or (ICMP) type and code.
const DST_V4: [FieldSpec; 5] = [
    ie::SOURCE_IPV4_PREFIX,
    ie::SOURCE_IPV4_PREFIX_LENGTH,
    ie::DESTINATION_IPV4_ADDRESS,
    ie::DESTINATION_IPV4_PREFIX_LENGTH,
    ie::DESTINATION_TRANSPORT_PORT,
];
const DST_V4_ICMP: [FieldSpec; 5] = [
    ie::SOURCE_IPV4_PREFIX,
    ie::SOURCE_IPV4_PREFIX_LENGTH,
    ie::DESTINATION_IPV4_ADDRESS,
    ie::DESTINATION_IPV4_PREFIX_LENGTH,
    ie::ICMP_TYPE_CODE_IPV4,
];
const DST_V6: [FieldSpec; 5] = [
    ie::SOURCE_IPV6_PREFIX,
    ie::SOURCE_IPV6_PREFIX_LENGTH,
    ie::DESTINATION_IPV6_ADDRESS,
    ie::DESTINATION_IPV6_PREFIX_LENGTH,
    ie::DESTINATION_TRANSPORT_PORT,
];
const DST_V6_ICMP: [FieldSpec; 5] = [
    ie::SOURCE_IPV6_PREFIX,
    ie::SOURCE_IPV6_PREFIX_LENGTH,
    ie::DESTINATION_IPV6_ADDRESS,
    ie::DESTINATION_IPV6_PREFIX_LENGTH,
    ie::ICMP_TYPE_CODE_IPV6,
];
/// The first fields of an aggregate that keeps the source (a server's answers): its address
/// with its length and its port, then the destinations' prefix (any).
const SRC_V4: [FieldSpec; 5] = [
    ie::SOURCE_IPV4_ADDRESS,
    ie::SOURCE_IPV4_PREFIX_LENGTH,
    ie::SOURCE_TRANSPORT_PORT,
    ie::DESTINATION_IPV4_PREFIX,
    ie::DESTINATION_IPV4_PREFIX_LENGTH,
];
const SRC_V6: [FieldSpec; 5] = [
    ie::SOURCE_IPV6_ADDRESS,
    ie::SOURCE_IPV6_PREFIX_LENGTH,
    ie::SOURCE_TRANSPORT_PORT,
    ie::DESTINATION_IPV6_PREFIX,
    ie::DESTINATION_IPV6_PREFIX_LENGTH,
];

/// What every aggregate carries after its addresses, before the distinct count.
const COUNTS: [FieldSpec; 11] = [
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
];

/// The aggregate layout code of a record: 0 for a flow, 1 when its destination (or neither
/// side) is kept, 2 when its source is.
pub(crate) fn code_of(rec: &FlowRecord) -> u8 {
    match rec.aggregate.as_deref().map(|a| a.kept) {
        None => 0,
        Some(Kept::Destination | Kept::Neither) => 1,
        Some(Kept::Source) => 2,
    }
}

/// The fields of aggregate layout `code` (1 or 2), in three runs: the addresses and port,
/// [`COUNTS`], and the distinct count of the side rolled away.
pub(crate) fn fields(code: u8, v6: bool, icmp: bool) -> [&'static [FieldSpec]; 3] {
    let head: &'static [FieldSpec] = match (code, v6, icmp) {
        (2, false, _) => &SRC_V4,
        (2, true, _) => &SRC_V6,
        (_, false, false) => &DST_V4,
        (_, false, true) => &DST_V4_ICMP,
        (_, true, false) => &DST_V6,
        (_, true, true) => &DST_V6_ICMP,
    };
    let distinct: &'static [FieldSpec] = if code == 2 {
        &[ie::DISTINCT_COUNT_OF_DESTINATION_IP_ADDRESS]
    } else {
        &[ie::DISTINCT_COUNT_OF_SOURCE_IP_ADDRESS]
    };
    [head, &COUNTS, distinct]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Aggregate;
    use crate::template::tests::sample;
    use crate::template::Layout;
    use crate::TimePrecision;

    fn aggregate(v6: bool, protocol: u8, kept: Kept) -> FlowRecord {
        FlowRecord {
            protocol,
            aggregate: Some(Box::new(Aggregate {
                flows: 7,
                distinct: 5,
                kept,
            })),
            ..sample(v6, TimePrecision::Nanos)
        }
    }

    #[test]
    fn every_aggregate_layout_writes_what_its_template_announces() {
        for v6 in [false, true] {
            for (protocol, kept) in [
                (6, Kept::Destination),
                (if v6 { 58 } else { 1 }, Kept::Destination),
                (6, Kept::Source),
                (17, Kept::Neither),
            ] {
                let rec = aggregate(v6, protocol, kept);
                let layout = Layout::of(&rec, true, true);
                assert!(layout.announced_on_first_use());
                let announced: usize = layout.fields().map(|f| f.length as usize).sum();
                assert_eq!(announced, layout.record_len(), "{v6} {protocol} {kept:?}");
                let mut out = [0u8; 256];
                let n = crate::template::encode_record(&rec, layout, &mut out);
                assert_eq!(n, announced);
                // The counts close the record: flows twice, then the distinct estimate.
                let tail = |i: usize| {
                    u64::from_be_bytes(out[n - 8 * i..n - 8 * (i - 1)].try_into().unwrap())
                };
                assert_eq!((tail(3), tail(2), tail(1)), (7, 7, 5));
            }
        }
    }

    #[test]
    fn the_side_rolled_away_reads_as_any_with_length_0() {
        let rec = aggregate(false, 6, Kept::Destination);
        let mut out = [0u8; 256];
        crate::template::encode_record(&rec, Layout::of(&rec, false, false), &mut out);
        // sourceIPv4Prefix 0.0.0.0/0, destinationIPv4Address 198.51.100.7/32, port 443.
        assert_eq!(&out[..12], &[0, 0, 0, 0, 0, 198, 51, 100, 7, 32, 1, 187]);
        let rec = aggregate(false, 6, Kept::Source);
        crate::template::encode_record(&rec, Layout::of(&rec, false, false), &mut out);
        // sourceIPv4Address 192.0.2.1/32 port 40000, destinationIPv4Prefix 0.0.0.0/0.
        assert_eq!(&out[..12], &[192, 0, 2, 1, 32, 0x9c, 0x40, 0, 0, 0, 0, 0]);
    }
}
