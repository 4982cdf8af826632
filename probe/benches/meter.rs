//! Per-packet cost of the sans-IO core, with a peer measured in the same run.
//!
//! - `decode/probe` vs `decode/etherparse`: our frame decoder against etherparse's sliced
//!   parser (the established Rust decoder) over the same 4096 frames;
//! - `meter/100k_flows`: decode + fragment check + flow-cache update with 100,000 flows live.
//! - `decap/*`: the same 4096 frames bare (with decapsulation on, and off as `plain_no_decap`)
//!   and wrapped in VXLAN, ERSPAN III (with its platform sub-header) and GTP-U: what a tunnel
//!   costs per frame on top of a plain one.
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

/// Outer Ethernet + IPv4 (+ UDP to `udp_port`, when given) around `payload`.
fn outer(proto_or_udp: Result<u8, u16>, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![];
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0xe, 1], [2, 0, 0, 0, 0xe, 2]).ipv4(
        [192, 0, 2, 1],
        [192, 0, 2, 2],
        64,
    );
    match proto_or_udp {
        Err(port) => b.udp(50000, port).write(&mut v, payload).unwrap(),
        Ok(proto) => {
            // No transport: write an IPv4 header by hand around the payload.
            let total = (20 + payload.len()) as u16;
            v.extend_from_slice(&[2, 0, 0, 0, 0xe, 2, 2, 0, 0, 0, 0xe, 1, 0x08, 0x00]);
            v.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0, 0, 64]);
            v.extend_from_slice(&[proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
            v.extend_from_slice(payload);
        }
    }
    v
}

fn decap(c: &mut Criterion) {
    let fs = frames(4096, 4096);
    let vxlan: Vec<Vec<u8>> = fs
        .iter()
        .map(|f| {
            let mut h = vec![0x08, 0, 0, 0, 0, 0x13, 0x89, 0];
            h.extend_from_slice(f);
            outer(Err(4789), &h)
        })
        .collect();
    let erspan3: Vec<Vec<u8>> = fs
        .iter()
        .map(|f| {
            let mut h = vec![0x10, 0, 0x22, 0xeb, 0, 0, 0, 1]; // GRE with sequence number
            h.extend_from_slice(&[0x20, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1]);
            h.extend_from_slice(&[0x0c, 0, 0, 0, 0, 0, 0, 0]);
            h.extend_from_slice(f);
            outer(Ok(47), &h)
        })
        .collect();
    let gtpu: Vec<Vec<u8>> = fs
        .iter()
        .map(|f| {
            let ip = &f[14..];
            let mut h = vec![0x30, 0xff];
            h.extend_from_slice(&(ip.len() as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 9]);
            h.extend_from_slice(ip);
            outer(Err(2152), &h)
        })
        .collect();
    // Every wrapped frame decodes to its inner packet, one tunnel deep.
    for set in [&vxlan, &erspan3, &gtpu] {
        let mut s = FrameSummary::default();
        for f in set.iter() {
            decode_frame(LinkType::Ethernet, f, &Decap::all(), &mut s).unwrap();
            assert_eq!(s.tunnel.depth, 1);
        }
    }
    let mut g = c.benchmark_group("decap");
    g.throughput(Throughput::Elements(fs.len() as u64));
    for (name, set, d) in [
        ("plain_no_decap", &fs, Decap::none()),
        ("plain", &fs, Decap::all()),
        ("vxlan", &vxlan, Decap::all()),
        ("erspan3", &erspan3, Decap::all()),
        ("gtpu", &gtpu, Decap::all()),
    ] {
        g.bench_function(name, |b| {
            let mut s = FrameSummary::default();
            b.iter(|| {
                let mut ports = 0u32;
                for f in set {
                    if decode_frame(LinkType::Ethernet, f, &d, &mut s).is_ok() {
                        ports += s.dst_port as u32 + s.tunnel.depth as u32;
                    }
                }
                black_box(ports)
            })
        });
    }
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

criterion_group!(benches, decode, decap, meter);
criterion_main!(benches);
