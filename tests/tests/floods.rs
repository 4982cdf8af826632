//! Floods (issue #28): a random-source SYN flood against one server while real conversations go
//! on beside it. The flow cache must keep the conversations whole (one record per direction,
//! exact) however many one-packet flows the flood makes, and account for every packet.

use e2e::capture::{write_pcap, Frame, LINKTYPE_ETHERNET};
use e2e::craft::{ethernet, ACK, L4, PSH, SYN};
use e2e::tools::*;
use e2e::TempDir;
use std::net::IpAddr;
use std::path::PathBuf;

const BASE: u64 = 1_700_000_000_000_000_000;
const SECOND: u64 = 1_000_000_000;

/// The flood and the conversations, merged in time, and the conversations alone (for tshark's
/// truth). `conversations` clients each send one 100-byte segment to the server every second
/// and get one back, for `seconds`; `flood_pps` SYNs a second come from random sources.
fn flood_capture(
    dir: &std::path::Path,
    conversations: u16,
    seconds: u64,
    flood_pps: u64,
) -> (PathBuf, PathBuf, usize) {
    let server: IpAddr = "10.9.0.1".parse().unwrap();
    let mut talk = Vec::new();
    for s in 0..seconds {
        for c in 0..conversations {
            let client: IpAddr = format!("10.1.{}.{}", c / 250, 1 + c % 250).parse().unwrap();
            let t = BASE + s * SECOND + c as u64 * 1_000_000;
            let tcp = |sport, dport| L4::Tcp {
                sport,
                dport,
                flags: PSH | ACK,
            };
            talk.push(Frame {
                ts_ns: t,
                data: ethernet(client, server, tcp(40_000 + c, 443), 100, &[], 64),
            });
            talk.push(Frame {
                ts_ns: t + 200_000,
                data: ethernet(server, client, tcp(443, 40_000 + c), 100, &[], 64),
            });
        }
    }
    talk.sort_by_key(|f| f.ts_ns);
    // xorshift64: sources all over 172.16.0.0/12, random ports.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let n = flood_pps * seconds;
    let mut flood = Vec::with_capacity(n as usize);
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let src = IpAddr::from((0xac10_0000u32 | (x as u32 & 0x000f_ffff)).to_be_bytes());
        let syn = L4::Tcp {
            sport: 1024 + (x >> 32) as u16 % 60_000,
            dport: 80,
            flags: SYN,
        };
        flood.push(Frame {
            ts_ns: BASE + i * SECOND / flood_pps,
            data: ethernet(src, server, syn, 0, &[], 64),
        });
    }
    let only_talk = dir.join("conversations.pcap");
    write_pcap(&only_talk, LINKTYPE_ETHERNET, true, &talk);
    let mut all = talk;
    all.extend(flood);
    all.sort_by_key(|f| f.ts_ns);
    let path = dir.join("flood.pcap");
    write_pcap(&path, LINKTYPE_ETHERNET, true, &all);
    (path, only_talk, all.len())
}

#[test]
fn a_syn_flood_leaves_every_conversation_whole_and_every_packet_counted() {
    // 200,000 SYNs in 4 s against a cache of 2,000 flows: the cache turns over every 40 ms,
    // while each conversation sends once a second. Least-recently-seen eviction exported every
    // conversation packet as its own record (lackOfResources).
    let tmp = TempDir::new("flood");
    let (capture, talk, frames) = flood_capture(tmp.path(), 100, 4, 50_000);
    let truth = tshark_flows(&talk);
    assert_eq!(truth.len(), 200);

    let nf = Nfcapd::start(tmp.path());
    let stats = tmp.path().join("books.json");
    let out = run_probe(&[
        "read",
        capture.to_str().unwrap(),
        "--max-flows",
        "2000",
        "--ipfix",
        &nf.url(),
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = nf.finish();
    let books = read_books(&stats);
    assert_balanced(&books);
    assert_eq!(books["frames"]["read"], frames as u64);

    // Each conversation direction in exactly one record, equal to tshark's.
    let talk_records: Vec<_> = records
        .iter()
        .filter(|r| r["type"] == "FLOW" && (r["dst_port"] == 443 || r["src_port"] == 443))
        .cloned()
        .collect();
    assert_eq!(
        talk_records.len(),
        200,
        "one record per conversation direction"
    );
    assert_same_flows(&truth, &nfdump_flows(&talk_records), "nfdump");

    // Every packet is in exactly one record, and the collector has them all.
    let packets: u64 = nfdump_flows(&records).values().map(|t| t.packets).sum();
    assert_eq!(packets, frames as u64);
    let flows = &books["flows"];
    assert_eq!(
        flows["by_end_reason"]["lackOfResources"], flows["evicted_from_probation"],
        "only the flood's one-packet flows were evicted: {flows}"
    );
    assert!(
        flows["evicted_from_probation"].as_u64().unwrap() > 190_000,
        "{flows}"
    );
}
