//! IPFIX over SCTP on a real SCTP stack: the host kernel has none, so the probe and its
//! collector run inside a user-mode Linux instance (see `e2e::uml`). The collector is socat
//! (`SCTP4-LISTEN`, writing the byte stream to a file); dumpcap captures the instance's
//! loopback so tshark can read the SCTP chunks; ipfixrw and tshark decode. The truth is the
//! same capture's UDP export, received on the host.

use e2e::capture::{write_pcap, Frame, LINKTYPE_ETHERNET};
use e2e::collector::{
    ipfixrw_decode, record_rows as rows, split_messages, tshark_decode, Recorder,
};
use e2e::craft::{mixed_traffic, udp_flows};
use e2e::tools::*;
use e2e::TempDir;
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

/// The records of the UDP export of `pcap`, received on the host.
fn udp_truth(pcap: &Path) -> Vec<String> {
    let rec = Recorder::start();
    run_probe_ok(&["read", pcap.to_str().unwrap(), "--ipfix", &rec.url()]);
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

/// Writes the stages of a piped capture: `stages[0]` as a pcap file `p0.pcap`, each later one
/// as its records only (`p1.bin`, ...), so that a shell can `cat` them with pauses between.
fn stages(dir: &Path, stages: &[Vec<Frame>]) {
    for (i, frames) in stages.iter().enumerate() {
        let p = dir.join(format!("p{i}.pcap"));
        write_pcap(&p, LINKTYPE_ETHERNET, false, frames);
        if i > 0 {
            let bytes = std::fs::read(&p).unwrap();
            std::fs::write(dir.join(format!("p{i}.bin")), &bytes[24..]).unwrap();
        }
    }
}

/// Source addresses of the flow records in a collector's byte stream.
fn sources(stream: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = ipfixrw_decode(&split_messages(stream))
        .into_iter()
        .map(|r| r["sourceIPv4Address"].clone() + ":" + &r["sourceTransportPort"])
        .collect();
    v.sort();
    v
}

#[test]
fn an_sctp_collector_late_at_start_and_restarting_mid_run_loses_nothing() {
    if !lab_or_skip("an_sctp_collector_late_at_start_and_restarting_mid_run_loses_nothing") {
        return;
    }
    let tmp = TempDir::new("sctprestart");
    let dir = tmp.path();
    // Four batches of 50 flows, 10 s apart in capture time: each batch expires the one before.
    let batches: Vec<Vec<Frame>> = (0..4u8)
        .map(|b| udp_flows(50, b + 1, BASE + b as u64 * 10 * SEC))
        .collect();
    stages(dir, &batches);
    // The collector comes 1.5 s after the probe; batches 1 and 2 reach it; it goes away; a new
    // one comes a second later and gets batches 3 and 4.
    let run = e2e::uml::run(
        dir,
        "( sleep 1.5; exec timeout 30 socat -u SCTP4-LISTEN:4739,reuseaddr OPEN:s1.bin,creat,trunc ) &
         S1=$!
         ( cat p0.pcap; sleep 3; cat p1.bin; sleep 2; cat p2.bin; sleep 3; cat p3.bin; sleep 1 ) |
           $PROBE read /proc/self/fd/0 --ipfix sctp://127.0.0.1:4739 --idle-timeout 2s \
             --stats-json books.json 2>probe.err &
         P=$!
         sleep 6
         kill $S1; wait $S1
         sleep 1
         timeout 30 socat -u SCTP4-LISTEN:4739,reuseaddr OPEN:s2.bin,creat,trunc &
         S2=$!
         wait $P
         echo probe=$?
         wait $S2",
        Duration::from_secs(120),
    );
    let (status, log) = run.script(dir);
    let err = std::fs::read_to_string(dir.join("probe.err")).unwrap_or_default();
    assert_eq!(status, 0, "{log}\n{err}");
    assert!(log.contains("probe=0"), "{log}\n{err}");
    let books = read_books(&dir.join("books.json"));
    let c = &books["export"]["collectors"][0];
    assert_eq!(c["sessions"], 2, "{c}\n{err}");
    assert_eq!(c["messages_lost"], 0, "{c}\n{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(err.contains("connected (session 2)"), "{err}");
    let s1 = sources(&std::fs::read(dir.join("s1.bin")).unwrap());
    let s2 = sources(&std::fs::read(dir.join("s2.bin")).unwrap());
    // Batch 1 left 3 s before the restart; batch 2's last messages may still have been on
    // their way when the collector went away (a loaded machine, a slow UML), and then they
    // came again on the second association: every flow arrives, none is lost. A message the
    // first collector had and acknowledged just before it died may arrive twice (at least
    // once, as with TCP); nothing more.
    let batch1 = s1.iter().filter(|k| k.contains("(10.9.1.")).count();
    assert_eq!(batch1, 50, "batch 1 before the restart: {s1:?}");
    assert!(!s2.is_empty(), "records after the restart");
    let mut all: Vec<String> = s1.iter().chain(&s2).cloned().collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 200, "every flow arrives");
    assert!(
        total - all.len() <= 30,
        "{} records twice",
        total - all.len()
    );
}

#[test]
fn an_aborted_sctp_association_costs_counted_records_and_reading_goes_on() {
    if !lab_or_skip("an_aborted_sctp_association_costs_counted_records_and_reading_goes_on") {
        return;
    }
    let tmp = TempDir::new("sctpabort");
    let dir = tmp.path();
    let batches: Vec<Vec<Frame>> = (0..3u8)
        .map(|b| udp_flows(50, b + 1, BASE + b as u64 * 10 * SEC))
        .collect();
    stages(dir, &batches);
    // SO_LINGER 0 and SIGKILL: the collector's end sends ABORT; nobody comes back. Batch 1
    // leaves when batch 2 arrives (2 s in), 2.5 s before the abort; batch 2 leaves when batch
    // 3 arrives, 1.5 s after it.
    let run = e2e::uml::run(
        dir,
        "socat -u SCTP4-LISTEN:4739,reuseaddr,linger=0 OPEN:s1.bin,creat,trunc &
         S=$!
         sleep 1
         ( cat p0.pcap; sleep 2; cat p1.bin; sleep 4; cat p2.bin; sleep 1 ) |
           $PROBE read /proc/self/fd/0 --ipfix sctp://127.0.0.1:4739 --idle-timeout 2s \
             --export-drain 1s --stats-json books.json 2>probe.err &
         P=$!
         sleep 4.5
         kill -9 $S
         wait $P
         echo probe=$?",
        Duration::from_secs(120),
    );
    let (status, log) = run.script(dir);
    let err = std::fs::read_to_string(dir.join("probe.err")).unwrap_or_default();
    assert_eq!(status, 0, "{log}\n{err}");
    assert!(
        log.contains("probe=0"),
        "reading goes on to the end: {log}\n{err}"
    );
    let books = read_books(&dir.join("books.json"));
    assert_balanced(&books);
    assert_eq!(books["frames"]["read"], 150, "{books}");
    let c = &books["export"]["collectors"][0];
    let s1 = sources(&std::fs::read(dir.join("s1.bin")).unwrap());
    assert_eq!(s1.len(), 50, "batch 1 before the abort");
    // Batches 2 and 3 had nowhere to go: lost, and counted with what they carried.
    assert_eq!(c["not_sent"]["flows"], 100, "{c}\n{err}");
    assert_eq!(c["not_sent"]["packets"], 100, "{c}");
    assert!(c["messages_lost"].as_u64().unwrap() > 0, "{c}");
    assert!(err.contains("connection lost"), "{err}");
}
