//! What the PCAP selection costs a worker per packet it does not keep (target: at most 20 ns).
//!
//! Two expressions over decoded frames of which none is selected: a one-prefix filter and a
//! typical critical-segment filter with a port, both directions and an alternative. In the
//! worker the selection runs on the summary the decoder has just written, so it is in L1: the
//! benchmark cycles over 64 summaries. The peer in the same run is decoding the same 64 frames
//! (what the worker pays for every frame anyway).
//!
//! Run: `cargo bench -p probe --bench select` (or `cargo xtask bench`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use probe_core::select::Selection;
use probe_core::wire::{decode_frame, Decap, FrameSummary, LinkType};
use std::hint::black_box;

fn summaries() -> (Vec<Vec<u8>>, Vec<FrameSummary>) {
    let mut frames = Vec::new();
    for i in 0..64u32 {
        let mut v = vec![];
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4((0x0a00_0000 | i).to_be_bytes(), [172, 16, 0, 1], 64)
            .tcp(1024 + i as u16, 443, 1, 1000)
            .write(&mut v, &[0u8; 100])
            .unwrap();
        frames.push(v);
    }
    let sums = frames
        .iter()
        .map(|f| {
            let mut s = FrameSummary::default();
            decode_frame(LinkType::Ethernet, f, &Decap::all(), &mut s).unwrap();
            s
        })
        .collect();
    (frames, sums)
}

fn bench(c: &mut Criterion) {
    let (frames, sums) = summaries();
    let mut g = c.benchmark_group("select_unselected");
    g.throughput(Throughput::Elements(sums.len() as u64));
    for (name, expr) in [
        ("one_prefix", "net 192.168.0.0/16"),
        (
            "segment_port_or_host",
            "(net 192.168.10.0/24 and tcp port 445) or host 2001:db8::5 or vlan 300",
        ),
    ] {
        let sel = Selection::parse(expr).unwrap();
        assert!(sums.iter().all(|s| !sel.matches(s)));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0u32;
                for s in &sums {
                    n += black_box(&sel).matches(black_box(s)) as u32;
                }
                n
            })
        });
    }
    g.bench_function("peer_decode_same_frames", |b| {
        let mut s = FrameSummary::default();
        b.iter(|| {
            for f in &frames {
                let _ = decode_frame(LinkType::Ethernet, black_box(f), &Decap::all(), &mut s);
            }
            s.src_port
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
