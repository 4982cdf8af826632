//! Encoding allocates nothing per record: a counting allocator watches the encoders while they
//! pack thousands of records into messages.

use ipfix_export::netflow::{V5Encoder, V9Encoder};
use ipfix_export::{EncoderConfig, EndReason, FlowRecord, MessageEncoder, TimePrecision};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Only the test's own thread is counted: the harness's threads allocate when they like
    /// (a run once counted 4 allocations that were not the encoders').
    static WATCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if WATCHED.with(|w| w.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn records() -> Vec<FlowRecord> {
    (0..10_000u32)
        .map(|i| FlowRecord {
            src_addr: if i % 3 == 0 {
                std::net::Ipv6Addr::from(0x2001_0db8u128 << 96 | i as u128).into()
            } else {
                std::net::Ipv4Addr::from(0x0a00_0000 | i).into()
            },
            dst_addr: if i % 3 == 0 {
                "2001:db8::1".parse().unwrap()
            } else {
                "192.0.2.1".parse().unwrap()
            },
            src_port: i as u16,
            dst_port: 443,
            protocol: if i % 7 == 0 { 1 } else { 6 },
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
            time_precision: if i % 2 == 0 {
                TimePrecision::Nanos
            } else {
                TimePrecision::Micros
            },
            reverse: None,
            tunnel: None,
            ingress_interface: 3,
            app: None,
            community_id: None,
            aggregate: None,
        })
        .collect()
}

#[test]
fn encoders_do_not_allocate_per_record() {
    let recs = records();
    let mut ipfix = MessageEncoder::new(EncoderConfig::default()).unwrap();
    let mut v9 = V9Encoder::new(1, 1400, Some(60), None, 60).unwrap();
    let mut v5 = V5Encoder::new(1, None, 60);
    let mut bytes = 0usize;
    WATCHED.with(|w| w.set(true));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for r in &recs {
        ipfix.push(r, 1_700_000_100, |m| bytes += m.len());
        v9.push(r, 1_700_000_100, |m| bytes += m.len());
        v5.push(r, 1_700_000_100, |m| bytes += m.len());
    }
    ipfix.flush(1_700_000_100, |m| bytes += m.len());
    v9.flush(1_700_000_100, |m| bytes += m.len());
    v5.flush(1_700_000_100, |m| bytes += m.len());
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    WATCHED.with(|w| w.set(false));
    assert!(bytes > 1_000_000);
    assert_eq!(allocations, 0, "allocations while encoding 10,000 records");
}
