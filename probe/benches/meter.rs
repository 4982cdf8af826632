//! Per-packet cost of the sans-IO core, with a peer measured in the same run.
//!
//! - `decode/probe` vs `decode/etherparse`: our frame decoder against etherparse's sliced
//!   parser (the established Rust decoder) over the same 4096 frames;
//! - `meter/100k_flows`: decode + fragment check + flow-cache update with 100,000 flows live.
//!
//! Run: `cargo bench -p probe --bench meter` (or `cargo xtask bench`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::{PacketBuilder, SlicedPacket};
use probe::flow::CacheConfig;
use probe::meter::{FragmentConfig, Meter};
use probe::wire::{decode_frame, Decap, FrameSummary, LinkType};
use std::hint::black_box;

fn frames(n: u32, flows: u32) -> Vec<Vec<u8>> {
    let payload = [0u8; 1400];
    (0..n)
        .map(|i| {
            let f = i % flows;
            let mut v = vec![];
            let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
            let len = (i as usize * 37) % 1400;
            if f.is_multiple_of(4) {
                let mut s = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                s[12..].copy_from_slice(&f.to_be_bytes());
                b.ipv6(s, [0xfd; 16], 64)
                    .udp(1000 + (f % 5000) as u16, 53)
                    .write(&mut v, &payload[..len])
                    .unwrap();
            } else {
                b.ipv4((0x0a00_0000 | f).to_be_bytes(), [172, 16, 0, 1], 64)
                    .tcp(1024 + (f % 60000) as u16, 443, 1, 1000)
                    .ack(1)
                    .write(&mut v, &payload[..len])
                    .unwrap();
            }
            v
        })
        .collect()
}

fn decode(c: &mut Criterion) {
    let fs = frames(4096, 4096);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(fs.len() as u64));
    g.bench_function("probe", |b| {
        let mut s = FrameSummary::default();
        b.iter(|| {
            let mut ports = 0u32;
            for f in &fs {
                if decode_frame(LinkType::Ethernet, f, &Decap::all(), &mut s).is_ok() {
                    ports += s.dst_port as u32;
                }
            }
            black_box(ports)
        })
    });
    g.bench_function("etherparse", |b| {
        b.iter(|| {
            let mut ok = 0u32;
            for f in &fs {
                if let Ok(p) = SlicedPacket::from_ethernet(f) {
                    ok += p.transport.is_some() as u32;
                }
            }
            black_box(ok)
        })
    });
    g.finish();
}

fn meter(c: &mut Criterion) {
    let flows = 100_000;
    let fs = frames(200_000, flows);
    let mut m = Meter::new(CacheConfig::default(), FragmentConfig::default());
    let mut ts = 1_700_000_000_000_000_000u64;
    for f in &fs {
        m.process(Some(LinkType::Ethernet), f, ts);
    }
    let mut g = c.benchmark_group("meter");
    g.throughput(Throughput::Elements(fs.len() as u64));
    g.bench_function("100k_flows", |b| {
        b.iter(|| {
            for f in &fs {
                ts += 1000;
                m.process(Some(LinkType::Ethernet), f, ts);
            }
            black_box(m.take_records().len())
        })
    });
    g.finish();
}

criterion_group!(benches, decode, meter);
criterion_main!(benches);
