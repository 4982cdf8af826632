//! IPFIX over SCTP on a real SCTP stack: the host kernel has none, so the probe and its
//! collector run inside a user-mode Linux instance (see `e2e::uml`). The collector is socat
//! (`SCTP4-LISTEN`, writing the byte stream to a file); dumpcap captures the instance's
//! loopback so tshark can read the SCTP chunks; ipfixrw and tshark decode. The truth is the
//! same capture's UDP export, received on the host.

use e2e::capture::{write_pcap, Frame, LINKTYPE_ETHERNET};
use e2e::collector::{ipfixrw_decode, split_messages, tshark_decode, Recorder};
use e2e::craft::{ethernet, mixed_traffic, L4};
use e2e::tools::*;
use e2e::TempDir;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const BASE: u64 = 1_700_000_000_000_000_000;
const SEC: u64 = 1_000_000_000;

/// The lab, or a printed reason to skip (only where it cannot start at all).
fn lab_or_skip(test: &str) -> bool {
    match e2e::uml::unavailable() {
        None => true,
        Some(why) => {
            eprintln!("SKIP {test}: {why}");
            false
        }
    }
}

/// `n` one-packet UDP flows from 10.9.`tag`.x, starting at `t_ns`.
fn udp_flows(n: u32, tag: u8, t_ns: u64) -> Vec<Frame> {
    (0..n)
        .map(|i| Frame {
            ts_ns: t_ns + i as u64 * 1000,
            data: ethernet(
                std::net::Ipv4Addr::new(10, 9, tag, (i % 250) as u8 + 1).into(),
                "10.8.0.1".parse().unwrap(),
                L4::Udp {
                    sport: 1024 + (i / 250) as u16,
                    dport: 9000,
                },
                60 + (i % 200) as usize,
                &[],
                64,
            ),
        })
        .collect()
}

/// Flow records as comparable rows (element name to value, sorted), with the multiset order
/// of their arrival removed.
fn rows(records: Vec<std::collections::HashMap<String, String>>) -> Vec<String> {
    let mut v: Vec<String> = records
        .into_iter()
        .map(|r| format!("{:?}", r.into_iter().collect::<BTreeMap<_, _>>()))
        .collect();
    v.sort();
    v
}

/// The records of the UDP export of `pcap`, received on the host.
fn udp_truth(pcap: &Path) -> Vec<String> {
    let rec = Recorder::start();
    let out = run_probe(&["read", pcap.to_str().unwrap(), "--ipfix", &rec.url()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rows(ipfixrw_decode(&rec.finish()))
}

#[test]
fn sctp_export_in_the_uml_lab_equals_the_udp_export() {
    if !lab_or_skip("sctp_export_in_the_uml_lab_equals_the_udp_export") {
        return;
    }
    let tmp = TempDir::new("sctplab");
    let dir = tmp.path();
    let mut frames = mixed_traffic(BASE);
    frames.extend(udp_flows(400, 1, BASE + SEC));
    frames.sort_by_key(|f| f.ts_ns);
    let pcap = dir.join("in.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &frames);
    let truth = udp_truth(&pcap);

    let run = e2e::uml::run(
        dir,
        "socat -u SCTP4-LISTEN:4739,reuseaddr OPEN:stream.bin,creat,trunc &
         S=$!
         dumpcap -q -i lo -f sctp -w sctp.pcapng 2>dumpcap.log &
         D=$!
         sleep 2
         $PROBE read in.pcap --ipfix sctp://127.0.0.1:4739 --stats-json books.json
         echo probe=$?
         wait $S
         sleep 1
         kill -INT $D
         wait $D",
        Duration::from_secs(120),
    );
    let (status, log) = run.script(dir);
    assert_eq!(status, 0, "{log}\n{}", run.console);
    assert!(log.contains("probe=0"), "{log}");
    let books = read_books(&dir.join("books.json"));
    let c = &books["export"]["collectors"][0];
    assert_eq!(c["sessions"], 1, "{c}\n{log}");
    assert_eq!(c["messages_lost"], 0, "{c}");
    assert_eq!(c["messages_sent"], c["messages"], "{c}");

    // ipfixrw reads the byte stream socat kept: the records of the UDP export, exactly.
    let stream = std::fs::read(dir.join("stream.bin")).unwrap();
    let got = rows(ipfixrw_decode(&split_messages(&stream)));
    assert_eq!(got.len(), truth.len());
    assert_eq!(got, truth);

    // tshark reads the SCTP association from the loopback capture: every record, no expert
    // warning; templates and data all on stream 0, ordered (RFC 7011 §10.2.4.3 allows it:
    // with one stream, a template always precedes the data that uses it).
    let capture = dir.join("sctp.pcapng");
    let verdict = tshark_decode(&capture);
    assert!(verdict.problems.is_empty(), "{:?}", verdict.problems);
    assert_eq!(verdict.data_records, truth.len());
    let streams = tshark_frames(&capture, "sctp.data_sid", &["sctp.data_sid"]);
    assert!(!streams.is_empty());
    assert!(
        streams
            .iter()
            .all(|l| l.split(',').all(|s| s == "0" || s == "0x0000")),
        "{streams:?}"
    );
    let unordered = tshark_frames(&capture, "sctp.data_u_bit == 1", &["frame.number"]);
    assert!(unordered.is_empty(), "{unordered:?}");
}
