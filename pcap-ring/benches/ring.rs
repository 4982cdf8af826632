//! How fast the ring writes to the page cache (target: at least 1 GB/s of packet data), with
//! the file system's own speed measured in the same run as the peer: plain `write(2)` calls of
//! 1 MiB into a file in the same directory.
//!
//! Each iteration writes 64 MiB of 1,500-byte frames through a `RingWriter` with 32 MiB files
//! and a 128 MiB retention, so rotation, renames and deletions are part of the figure. The
//! directory is `$PROBE_BENCH_DIR` or the system's temporary directory (tmpfs or page cache).
//!
//! Run: `cargo bench -p pcap-ring` (or `cargo xtask bench`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pcap_ring::{RingConfig, RingWriter};
use std::io::Write;

const TOTAL: usize = 64 << 20;
const FRAME: usize = 1500;

fn dir() -> std::path::PathBuf {
    let base = std::env::var_os("PROBE_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let d = base.join(format!("pcap-ring-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bench(c: &mut Criterion) {
    let d = dir();
    let frame = vec![0x5au8; FRAME];
    let frames = TOTAL / FRAME;
    let mut g = c.benchmark_group("ring_write");
    g.sample_size(10);
    g.throughput(Throughput::Bytes((frames * FRAME) as u64));
    let mut cfg = RingConfig::new(d.join("ring"));
    cfg.file_size = 32 << 20;
    cfg.max_total_bytes = Some(128 << 20);
    let mut w = RingWriter::open(cfg).unwrap();
    let mut ts = 1_795_388_820_000_000_000u64;
    g.bench_function("ring_writer_1500B_frames", |b| {
        b.iter(|| {
            for _ in 0..frames {
                ts += 1000;
                w.write(ts, &frame, FRAME as u32);
            }
        })
    });
    w.close().unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    g.throughput(Throughput::Bytes(TOTAL as u64));
    g.bench_function("peer_plain_write_1MiB", |b| {
        b.iter(|| {
            let mut f = std::fs::File::create(d.join("plain")).unwrap();
            for _ in 0..TOTAL / chunk.len() {
                f.write_all(&chunk).unwrap();
            }
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&d);
}

criterion_group!(benches, bench);
criterion_main!(benches);
