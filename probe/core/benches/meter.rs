//! Per-packet cost of the sans-IO core, with a peer measured in the same run.
//!
//! - `decode/probe` vs `decode/etherparse`: our frame decoder against etherparse's sliced
//!   parser (the established Rust decoder) over the same 4096 frames;
//! - `meter/100k_flows`: decode + fragment check + flow-cache update with 100,000 flows live;
//!   `meter/syn_flood_10k_cache`: a random-source SYN flood, one new flow per frame, through a
//!   cache of 10,000 (each frame evicts one);
//!   `meter/decode_only` and `meter/two_stages_one_thread`: the fan-out's stages on the same
//!   frames (see [`stages`]; the hand-off between them is `probe`'s `handoff` bench).
//! - `decap/*`: the same 4096 frames bare (with decapsulation on, and off as `plain_no_decap`)
//!   and wrapped in VXLAN, ERSPAN III (with its platform sub-header) and GTP-U: what a tunnel
//!   costs per frame on top of a plain one.
//!
//! Run: `cargo bench -p probe-core --bench meter` (or `cargo xtask bench`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::{PacketBuilder, SlicedPacket};
use probe_core::flow::CacheConfig;
use probe_core::meter::{FragmentConfig, Meter};
use probe_core::wire::{decode_frame, Decap, FrameSummary, LinkType};
use std::hint::black_box;

mod frames;
use frames::frames;

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
    // A random-source SYN flood (every frame a new one-packet flow) through a cache of 10,000
    // flows: every frame evicts the oldest flow in probation. Against `100k_flows`, what a
    // flood costs per frame.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let flood: Vec<Vec<u8>> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut v = vec![];
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4(
                    (0xac10_0000 | (x as u32 & 0x000f_ffff)).to_be_bytes(),
                    [10, 9, 0, 1],
                    64,
                )
                .tcp(1024 + (x >> 40) as u16 % 60_000, 80, x as u32, 1000)
                .syn()
                .write(&mut v, &[])
                .unwrap();
            v
        })
        .collect();
    let mut m = Meter::new(
        CacheConfig {
            max_flows: 10_000,
            ..CacheConfig::default()
        },
        FragmentConfig::default(),
    );
    g.bench_function("syn_flood_10k_cache", |b| {
        b.iter(|| {
            for f in &flood {
                ts += 1000;
                m.process(Some(LinkType::Ethernet), f, ts);
            }
            black_box(m.take_records().len())
        })
    });
    g.finish();
}

/// The fan-out's two stages on the same 200,000 frames and 100,000 flows as `meter/100k_flows`,
/// without the hand-off between them (that is `probe`'s `handoff` bench):
/// - `decode_only`: the first stage alone (decoder, fragment check);
/// - `two_stages_one_thread`: decoder then flow meter, the summary copied between them, on
///   one thread: what splitting the stages costs without any queue.
fn stages(c: &mut Criterion) {
    use probe_core::meter::Decoder;
    let flows = 100_000;
    let fs = frames(200_000, flows);
    let mut ts = 1_700_000_000_000_000_000u64;
    let mut g = c.benchmark_group("meter");
    g.throughput(Throughput::Elements(fs.len() as u64));
    let mut d = Decoder::new(FragmentConfig::default());
    let mut s = FrameSummary::default();
    g.bench_function("decode_only", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for f in &fs {
                ts += 1000;
                n += d.decode(Some(LinkType::Ethernet), f, ts, &mut s) as u32;
            }
            black_box(n)
        })
    });
    let (mut dec, mut fm) = (
        Decoder::new(FragmentConfig::default()),
        probe_core::meter::FlowMeter::new(CacheConfig::default()),
    );
    g.bench_function("two_stages_one_thread", |b| {
        b.iter(|| {
            for f in &fs {
                ts += 1000;
                if dec.decode(Some(LinkType::Ethernet), f, ts, &mut s) {
                    fm.push(&s, ts, dec.clock_ns());
                }
            }
            black_box(fm.take_records().len())
        })
    });
    g.finish();
}

criterion_group!(benches, decode, decap, meter, stages);
criterion_main!(benches);
