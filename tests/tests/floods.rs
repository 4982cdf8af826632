//! Floods (issue #28): a random-source SYN flood against one server while real conversations go
//! on beside it. The flow cache must keep the conversations whole (one record per direction,
//! exact) however many one-packet flows the flood makes, and account for every packet.

use e2e::capture::{write_pcap, LINKTYPE_ETHERNET};
use e2e::craft::syn_flood_with_conversations;
use e2e::tools::*;
use e2e::TempDir;
use std::path::PathBuf;

const BASE: u64 = 1_700_000_000_000_000_000;

/// The flood and the conversations (`e2e::craft::syn_flood_with_conversations`, one round a
/// second) written as a capture, and the conversations alone (for tshark's truth).
fn flood_capture(
    dir: &std::path::Path,
    conversations: u16,
    seconds: u64,
    flood_pps: u64,
) -> (PathBuf, PathBuf, usize) {
    let (all, talk) =
        syn_flood_with_conversations(BASE, conversations, seconds, flood_pps, 1_000_000_000);
    let only_talk = dir.join("conversations.pcap");
    write_pcap(&only_talk, LINKTYPE_ETHERNET, true, &talk);
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
    let talk_records = e2e::craft::conversation_records(&records);
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
