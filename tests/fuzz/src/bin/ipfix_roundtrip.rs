//! The IPFIX encoder: records built from any bytes go through our encoder and an independent
//! decoder (ipfixrw); every record must come back with its counters and times.

use ipfix_export::{EncoderConfig, EndReason, FlowRecord, MessageEncoder, Reverse, TimePrecision};
use ipfixrw::parser::{DataRecordKey, DataRecordValue};

fn take<const N: usize>(d: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = N.min(d.len());
    out[..n].copy_from_slice(&d[..n]);
    *d = &d[n..];
    out
}

fn record(d: &mut &[u8]) -> FlowRecord {
    let flags = take::<1>(d)[0];
    let s = take::<16>(d);
    let t = take::<16>(d);
    let (src, dst) = if flags & 1 != 0 {
        (
            std::net::Ipv6Addr::from(s).into(),
            std::net::Ipv6Addr::from(t).into(),
        )
    } else {
        (
            std::net::Ipv4Addr::new(s[0], s[1], s[2], s[3]).into(),
            std::net::Ipv4Addr::new(t[0], t[1], t[2], t[3]).into(),
        )
    };
    let ports = take::<4>(d);
    let start = u64::from_be_bytes(take::<8>(d)) >> 2;
    let dur = u64::from(u32::from_be_bytes(take::<4>(d)));
    FlowRecord {
        src_addr: src,
        dst_addr: dst,
        src_port: u16::from_be_bytes([ports[0], ports[1]]),
        dst_port: u16::from_be_bytes([ports[2], ports[3]]),
        protocol: take::<1>(d)[0],
        class_of_service: s[5],
        tcp_flags: u16::from(t[5]),
        min_ttl: s[6],
        max_ttl: t[6],
        icmp_type_code: u16::from_be_bytes([ports[2], ports[3]]),
        vlan_id: u16::from(s[7]),
        customer_vlan_id: u16::from(t[7]),
        mpls_top_label: [s[8], s[9], s[10]],
        src_mac: [s[0], s[1], s[2], s[3], s[4], s[5]],
        dst_mac: [t[0], t[1], t[2], t[3], t[4], t[5]],
        packets: u64::from_be_bytes(take::<8>(d)),
        octets: u64::from_be_bytes(take::<8>(d)),
        start_ns: start,
        end_ns: start + dur,
        end_reason: EndReason::ForcedEnd,
        time_precision: if flags & 2 != 0 {
            TimePrecision::Nanos
        } else {
            TimePrecision::Micros
        },
        reverse: (flags & 4 != 0).then(|| Reverse {
            packets: u64::from(s[11]),
            octets: u64::from(t[11]),
            ..Default::default()
        }),
        tunnel: (flags & 8 != 0).then(|| ipfix_export::Tunnel {
            kind: t[12] % 10,
            id: u32::from_be_bytes([s[12], s[13], s[14], s[15]]),
            layer2_segment_id: u64::from(t[13]),
            key_kind: t[14] % 10,
            key: u32::from(s[13]),
            outer_src: dst,
            outer_dst: src,
        }),
        ingress_interface: u32::from(s[14]),
        app: None,
        community_id: None,
        aggregate: None,
    }
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&cfg, mut d)) = data.split_first() else {
            return;
        };
        let mtu = 600 + usize::from(cfg) * 4;
        let biflow = cfg & 1 != 0;
        let mut recs = vec![];
        while !d.is_empty() && recs.len() < 64 {
            recs.push(record(&mut d));
        }
        let mut enc = MessageEncoder::new(EncoderConfig {
            mtu,
            biflow,
            tunnels: cfg & 2 != 0,
            ..Default::default()
        })
        .unwrap();
        let mut msgs: Vec<Vec<u8>> = vec![];
        for r in &recs {
            enc.push(r, 1_700_000_000, |m| msgs.push(m.to_vec()));
        }
        enc.flush(1_700_000_000, |m| msgs.push(m.to_vec()));
        let templates: ipfixrw::template_store::TemplateStore =
            std::rc::Rc::new(std::cell::RefCell::new(std::collections::HashMap::new()));
        let formatter = std::rc::Rc::new(ipfixrw::information_elements::get_default_formatter());
        let mut back = vec![];
        for m in &msgs {
            assert!(m.len() <= mtu);
            let msg = ipfixrw::parse_ipfix_message(m, templates.clone(), formatter.clone())
                .expect("ipfixrw decodes every message");
            for r in msg.iter_data_records() {
                let v = |k| match r.values.get(&DataRecordKey::Str(k)) {
                    Some(DataRecordValue::U64(x)) => Some(*x),
                    Some(DataRecordValue::DateTimeMilliseconds(x)) => Some(*x),
                    _ => None,
                };
                back.push((
                    v("packetDeltaCount"),
                    v("octetDeltaCount"),
                    v("flowEndMilliseconds"),
                ));
            }
        }
        assert_eq!(back.len(), recs.len());
        for (r, b) in recs.iter().zip(back) {
            assert_eq!(
                b,
                (Some(r.packets), Some(r.octets), Some(r.end_ns / 1_000_000))
            );
        }
    });
}
