//! Encoder throughput: flow records packed into 1400-byte IPFIX messages on one core.
//! Run with `cargo bench -p ipfix-export` (or `cargo xtask bench`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipfix_export::{EncoderConfig, EndReason, FlowRecord, MessageEncoder, TimePrecision};
use std::hint::black_box;

fn records(n: u32) -> Vec<FlowRecord> {
    (0..n)
        .map(|i| FlowRecord {
            src_addr: if i % 4 == 0 {
                std::net::Ipv6Addr::from(0x2001_0db8u128 << 96 | i as u128).into()
            } else {
                std::net::Ipv4Addr::from(0x0a00_0000 | i).into()
            },
            dst_addr: if i % 4 == 0 {
                "2001:db8::1".parse().unwrap()
            } else {
                "192.0.2.1".parse().unwrap()
            },
            src_port: i as u16,
            dst_port: 443,
            protocol: 6,
            class_of_service: 0,
            tcp_flags: 0x18,
            min_ttl: 60,
            max_ttl: 64,
            icmp_type_code: 0,
            vlan_id: 0,
            customer_vlan_id: 0,
            mpls_top_label: [0; 3],
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            packets: 12,
            octets: 9000,
            start_ns: 1_700_000_000_000_000_000 + i as u64,
            end_ns: 1_700_000_010_000_000_000 + i as u64,
            end_reason: EndReason::IdleTimeout,
            time_precision: TimePrecision::Micros,
            reverse: None,
            tunnel: None,
            ingress_interface: 3,
            app: None,
            community_id: None,
            aggregate: None,
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let recs = records(4096);
    let mut enc = MessageEncoder::new(EncoderConfig::default()).unwrap();
    let mut g = c.benchmark_group("ipfix_encode");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.bench_function("4096_records_mixed_v4_v6", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            for r in &recs {
                enc.push(r, 1_700_000_000, |m| bytes += black_box(m).len());
            }
            enc.flush(1_700_000_000, |m| bytes += black_box(m).len());
            bytes
        })
    });
    let mut v9 = ipfix_export::netflow::V9Encoder::new(1, 1400, Some(60), None, 60).unwrap();
    g.bench_function("netflow9_4096_records_mixed_v4_v6", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            for r in &recs {
                v9.push(r, 1_700_000_000, |m| bytes += black_box(m).len());
            }
            v9.flush(1_700_000_000, |m| bytes += black_box(m).len());
            bytes
        })
    });
    // v5 carries IPv4 only: the IPv6 quarter is counted and skipped.
    let mut v5 = ipfix_export::netflow::V5Encoder::new(1, None, 60);
    g.bench_function("netflow5_4096_records_mixed_v4_v6", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            for r in &recs {
                v5.push(r, 1_700_000_000, |m| bytes += black_box(m).len());
            }
            v5.flush(1_700_000_000, |m| bytes += black_box(m).len());
            bytes
        })
    });
    g.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
