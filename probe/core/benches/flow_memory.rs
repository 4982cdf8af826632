//! Memory per active flow with one million flows in the cache.
//!
//! A counting global allocator measures every byte the cache allocates while it takes in one
//! million distinct flows (IPv4 and IPv6); the figure is bytes held / flows held. The target is
//! at most 200 bytes per flow. Run: `cargo bench -p probe --bench flow_memory`.

use probe_core::flow::{CacheConfig, FlowCache};
use probe_core::wire::FrameSummary;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let n = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(n, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > l.size() {
            let n = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
            PEAK.fetch_max(n, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
        }
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    const FLOWS: u32 = 1_000_000;
    let before = LIVE.load(Ordering::Relaxed);
    let mut cache = FlowCache::new(CacheConfig {
        max_flows: FLOWS as usize,
        ..Default::default()
    });
    let mut out = Vec::new();
    let mut s = FrameSummary {
        protocol: 6,
        ttl: 64,
        ip_octets: 100,
        dst_port: 443,
        ..Default::default()
    };
    for i in 0..FLOWS {
        if i % 4 == 0 {
            s.ip_version = 6;
            s.src_addr = [0xfd; 16];
            s.src_addr[12..].copy_from_slice(&i.to_be_bytes());
            s.dst_addr = [0xfe; 16];
        } else {
            s.ip_version = 4;
            s.src_addr = [0; 16];
            s.dst_addr = [0; 16];
            s.src_addr[..4].copy_from_slice(&(0x0a00_0000 | i).to_be_bytes());
            s.dst_addr[..4].copy_from_slice(&[172, 16, 0, 1]);
        }
        s.src_port = (i % 60000) as u16;
        cache.update(&s, 1_700_000_000_000_000_000 + i as u64, &mut out);
    }
    assert_eq!(cache.len(), FLOWS as usize);
    assert!(out.is_empty());
    let held = LIVE.load(Ordering::Relaxed) - before;
    let peak = PEAK.load(Ordering::Relaxed) - before;
    println!("flow_memory: {FLOWS} flows held, {held} bytes allocated: {:.1} bytes/flow (peak during growth {:.1} bytes/flow; cache's own estimate {:.1})",
        held as f64 / FLOWS as f64, peak as f64 / FLOWS as f64, cache.heap_bytes() as f64 / FLOWS as f64);
    if held as f64 / FLOWS as f64 > 200.0 {
        eprintln!("flow_memory: ABOVE the 200 bytes/flow target");
        std::process::exit(1);
    }
}
