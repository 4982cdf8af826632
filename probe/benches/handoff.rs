//! The fan-out's hand-off: decoders pass summaries to metering workers through wait-free rings
//! (`probe::pipeline::handoff`), on the same 200,000 frames and 100,000 flows as the core's
//! `meter/100k_flows` (the core's `meter` bench has the stages without the hand-off):
//! - `meter/handoff_reader_side`: decoder, symmetric hash and push, with a consumer that only
//!   takes the summaries off the ring: what the RX thread pays per frame on the fan-out;
//! - `meter/fanout_N_workers`: decoder, symmetric hash and the push into the hand-off rings on
//!   this thread, with N metering workers on their own threads draining them: the pipeline's
//!   rate (the reader waits when a ring is full, so a slower stage shows).
//!
//! Run: `cargo bench -p probe --bench handoff` (or `cargo xtask bench`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use probe_core::flow::CacheConfig;
use probe_core::meter::{Decoder, FragmentConfig};
use probe_core::wire::LinkType;
use std::hint::black_box;

#[path = "../core/benches/frames.rs"]
mod frames;

fn fanout(c: &mut Criterion) {
    use probe::pipeline::topology::{start_workers, FanoutDecoder, WorkerSpec};
    let flows = 100_000;
    let fs = frames::frames(200_000, flows);
    let mut ts = 1_700_000_000_000_000_000u64;
    let mut g = c.benchmark_group("meter");
    g.throughput(Throughput::Elements(fs.len() as u64));
    // The reader's side alone: a consumer that only takes the summaries off the ring.
    {
        let (mut fanouts, mut inboxes) =
            probe::pipeline::handoff::rings(1, 1, probe::pipeline::handoff::RING_SLOTS);
        let mut inbox = inboxes.pop().unwrap();
        let consumer = std::thread::spawn(move || {
            let mut n = 0u64;
            while !inbox.finished() {
                if inbox.drain(256, |_, _| n += 1) == 0 {
                    std::hint::spin_loop();
                }
            }
            n
        });
        let mut stage = FanoutDecoder::new(
            Decoder::new(FragmentConfig::default()),
            fanouts.pop().unwrap(),
            false,
        );
        g.bench_function("handoff_reader_side", |b| {
            b.iter(|| {
                for f in &fs {
                    ts += 1000;
                    stage.process(Some(LinkType::Ethernet), f, ts);
                }
            })
        });
        drop(stage);
        black_box(consumer.join().unwrap());
    }
    for n in [1usize, 2] {
        let (tx, rx) = crossbeam_channel::unbounded();
        let sink = std::thread::spawn(move || rx.iter().map(|v: Vec<_>| v.len()).sum::<usize>());
        let gauges = std::sync::Arc::new(probe::pipeline::exporter::Gauges::default());
        let spec = WorkerSpec {
            count: n,
            cache: CacheConfig::default(),
            cpus: None,
            live: false,
            unprivileged: false,
        };
        let (mut fanouts, workers) = start_workers(&spec, 1, &tx, &gauges).unwrap();
        drop(tx);
        let mut stage = FanoutDecoder::new(
            Decoder::new(FragmentConfig::default()),
            fanouts.pop().unwrap(),
            false,
        );
        for f in &fs {
            ts += 1000;
            stage.process(Some(LinkType::Ethernet), f, ts);
        }
        g.bench_function(format!("fanout_{n}_workers"), |b| {
            b.iter(|| {
                for f in &fs {
                    ts += 1000;
                    stage.process(Some(LinkType::Ethernet), f, ts);
                }
            })
        });
        drop(stage);
        workers.join().unwrap();
        sink.join().unwrap();
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
