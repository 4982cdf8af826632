//! Property test: any flow record the metering process can produce survives our encoder and an
//! independent decoder (ipfixrw) with its values intact, in every layout (IPv4/IPv6, ICMP,
//! nanoseconds, biflow) and at any MTU.

use ipfix_export::{EncoderConfig, EndReason, FlowRecord, MessageEncoder, Reverse, TimePrecision};
use ipfixrw::parser::{DataRecordKey, DataRecordValue};
use proptest::prelude::*;

fn record() -> impl Strategy<Value = FlowRecord> {
    (
        any::<bool>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<u16>(),
        prop_oneof![
            Just(1u8),
            Just(6),
            Just(17),
            Just(58),
            Just(132),
            any::<u8>()
        ],
        (any::<u64>(), any::<u64>()),
        (0u64..1u64 << 62, 0u64..1u64 << 40),
        any::<bool>(),
        proptest::option::of((any::<u64>(), any::<u64>())),
    )
        .prop_map(
            |(v6, s, d, sp, dp, proto, (pk, oc), (start, dur), ns, rev)| {
                let (src, dst) = if v6 {
                    (
                        std::net::Ipv6Addr::from(s).into(),
                        std::net::Ipv6Addr::from(d).into(),
                    )
                } else {
                    (
                        std::net::Ipv4Addr::new(s[0], s[1], s[2], s[3]).into(),
                        std::net::Ipv4Addr::new(d[0], d[1], d[2], d[3]).into(),
                    )
                };
                FlowRecord {
                    src_addr: src,
                    dst_addr: dst,
                    src_port: sp,
                    dst_port: dp,
                    protocol: proto,
                    class_of_service: s[4],
                    tcp_flags: u16::from(s[5]),
                    min_ttl: s[6],
                    max_ttl: s[7],
                    icmp_type_code: dp,
                    vlan_id: sp & 0xfff,
                    customer_vlan_id: dp & 0xfff,
                    mpls_top_label: [s[8], s[9], s[10]],
                    src_mac: [s[0], s[1], s[2], s[3], s[4], s[5]],
                    dst_mac: [d[0], d[1], d[2], d[3], d[4], d[5]],
                    packets: pk,
                    octets: oc,
                    start_ns: start,
                    end_ns: start + dur,
                    end_reason: EndReason::IdleTimeout,
                    time_precision: if ns {
                        TimePrecision::Nanos
                    } else {
                        TimePrecision::Micros
                    },
                    reverse: rev.map(|(p, o)| Reverse {
                        packets: p,
                        octets: o,
                        ..Default::default()
                    }),
                    tunnel: None,
                    ingress_interface: u32::from_be_bytes([d[6], d[7], d[8], d[9]]),
                    app: None,
                    community_id: None,
                    aggregate: None,
                }
            },
        )
}

fn u64_of(v: Option<&DataRecordValue>) -> Option<u64> {
    match v? {
        DataRecordValue::U64(x) => Some(*x),
        DataRecordValue::U32(x) => Some(*x as u64),
        DataRecordValue::U16(x) => Some(*x as u64),
        DataRecordValue::U8(x) => Some(*x as u64),
        DataRecordValue::DateTimeMilliseconds(x) => Some(*x),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn records_survive_an_independent_decoder(
        recs in proptest::collection::vec(record(), 1..40),
        mtu in 600usize..2000,
        biflow in any::<bool>(),
    ) {
        let cfg = EncoderConfig { mtu, biflow, ..Default::default() };
        let mut enc = MessageEncoder::new(cfg).unwrap();
        let mut msgs: Vec<Vec<u8>> = vec![];
        for r in &recs {
            enc.push(r, 1_700_000_000, |m| msgs.push(m.to_vec()));
        }
        enc.flush(1_700_000_000, |m| msgs.push(m.to_vec()));
        let templates: ipfixrw::template_store::TemplateStore =
            std::rc::Rc::new(std::cell::RefCell::new(std::collections::HashMap::new()));
        let formatter = std::rc::Rc::new(ipfixrw::information_elements::get_default_formatter());
        let mut decoded = vec![];
        for m in &msgs {
            prop_assert!(m.len() <= mtu);
            let msg = ipfixrw::parse_ipfix_message(m, templates.clone(), formatter.clone())
                .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            for r in msg.iter_data_records() {
                decoded.push((
                    u64_of(r.values.get(&DataRecordKey::Str("packetDeltaCount"))),
                    u64_of(r.values.get(&DataRecordKey::Str("octetDeltaCount"))),
                    u64_of(r.values.get(&DataRecordKey::Str("sourceTransportPort"))),
                    u64_of(r.values.get(&DataRecordKey::Str("flowStartMilliseconds"))),
                ));
            }
        }
        prop_assert_eq!(decoded.len(), recs.len());
        for (r, d) in recs.iter().zip(&decoded) {
            prop_assert_eq!(d.0, Some(r.packets));
            prop_assert_eq!(d.1, Some(r.octets));
            prop_assert_eq!(d.2, Some(r.src_port as u64));
            prop_assert_eq!(d.3, Some(r.start_ns / 1_000_000));
        }
    }
}
