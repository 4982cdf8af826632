//! `probe read` end to end: crafted and real captures, checked by nfcapd/nfdump, tshark and
//! ipfixrw against ground truth that tshark computes from the same capture.

use e2e::capture::{write_pcap, write_pcapng_be_nanos, Frame, LINKTYPE_ETHERNET};
use e2e::collector::{ipfixrw_decode, tshark_decode, write_datagrams_pcap, Recorder};
use e2e::craft::{ethernet, mixed_traffic, L4};
use e2e::tools::*;
use e2e::TempDir;
use std::path::Path;

const BASE: u64 = 1_700_000_000_000_000_000;

fn probe_read(files: &[&Path], extra: &[&str], stats: &Path) -> std::process::Output {
    let mut args: Vec<String> = vec!["read".into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("--stats-json".into());
    args.push(stats.display().to_string());
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    run_probe(&refs)
}

/// What one `probe read` into a fresh nfcapd produced.
struct Metered {
    out: std::process::Output,
    /// Every record nfdump read from the nfcapd files.
    records: Vec<serde_json::Value>,
    /// The run's `--stats-json` books.
    books: serde_json::Value,
}

/// Meters `files` into a real nfcapd of its own (plus `extra` flags) and reads back what the
/// collector stored and what the probe booked.
fn read_into_nfcapd(tmp: &TempDir, files: &[&Path], extra: &[&str]) -> Metered {
    let nf = Nfcapd::start(tmp.path());
    let stats = tmp.path().join("books.json");
    let url = nf.url();
    let mut args = vec!["--ipfix", url.as_str()];
    args.extend_from_slice(extra);
    let out = probe_read(files, &args, &stats);
    let records = nf.finish();
    let books = read_books(&stats);
    Metered {
        out,
        records,
        books,
    }
}

#[test]
fn crafted_mix_through_nfcapd_matches_tshark() {
    let tmp = TempDir::new("mix");
    let frames = mixed_traffic(BASE);
    let pcap = tmp.path().join("mix.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &frames);
    let truth = tshark_flows(&pcap);
    assert!(truth.len() > 30, "the mix has {} flows", truth.len());

    let Metered {
        out,
        records,
        books,
    } = read_into_nfcapd(&tmp, &[&pcap], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_flows(&truth, &nfdump_flows(&records), "nfdump");

    assert_balanced(&books);
    assert_eq!(books["frames"]["read"], frames.len() as u64);
    assert_eq!(books["frames"]["metered"], frames.len() as u64);
    assert_eq!(
        books["export"]["records"].as_u64().unwrap(),
        records.len() as u64
    );
    assert_eq!(books["export"]["collectors"][0]["messages_lost"], 0);

    // VLAN ids reach the collector: the 802.1Q flow and the QinQ flow's outer tag.
    let vlan_of = |dport: u64| {
        records
            .iter()
            .find(|r| r["dst_port"] == dport)
            .map(|r| r["src_vlan"].as_u64().unwrap())
            .unwrap()
    };
    assert_eq!(vlan_of(22), 100);
    assert_eq!(vlan_of(25), 200);
}

#[test]
fn pcapng_big_endian_nanoseconds_gives_the_same_flows() {
    let tmp = TempDir::new("ng");
    let frames = mixed_traffic(BASE + 123_456_789);
    let pcapng = tmp.path().join("mix.pcapng");
    write_pcapng_be_nanos(&pcapng, 1, &frames);
    let truth = tshark_flows(&pcapng);
    let Metered {
        out,
        records,
        books,
    } = read_into_nfcapd(&tmp, &[&pcapng], &["--print", "json"]);
    assert!(out.status.success());
    assert_same_flows(&truth, &nfdump_flows(&records), "nfdump");

    // The JSON lines carry nanosecond times from a nanosecond source.
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len() as u64,
        books["export"]["records"].as_u64().unwrap()
    );
    let first_ns = lines
        .iter()
        .map(|l| l["flowStartNanoseconds"].as_u64().unwrap())
        .min()
        .unwrap();
    assert_eq!(first_ns, frames[0].ts_ns);
}

#[test]
fn exported_messages_decode_cleanly_in_tshark_and_ipfixrw() {
    let tmp = TempDir::new("tshark");
    let frames = mixed_traffic(BASE);
    let pcap = tmp.path().join("mix.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, true, &frames);
    let rec = Recorder::start();
    let stats = tmp.path().join("books.json");
    // A small MTU forces many messages, several sets per message and both templates.
    let out = probe_read(
        &[&pcap],
        &[
            "--ipfix",
            &rec.url(),
            "--mtu",
            "1000",
            "--observation-domain",
            "77",
        ],
        &stats,
    );
    assert!(out.status.success());
    let datagrams = rec.finish();
    let books = read_books(&stats);
    let records = books["export"]["records"].as_u64().unwrap() as usize;
    assert_eq!(
        datagrams.len() as u64,
        books["export"]["collectors"][0]["messages"]
            .as_u64()
            .unwrap()
    );
    assert!(datagrams.len() > 5);
    for d in &datagrams {
        assert!(d.len() <= 1000);
        assert_eq!(u16::from_be_bytes([d[2], d[3]]) as usize, d.len());
        assert_eq!(u32::from_be_bytes(d[12..16].try_into().unwrap()), 77);
    }

    let msgs = tmp.path().join("ipfix.pcap");
    write_datagrams_pcap(&datagrams, &msgs);
    let verdict = tshark_decode(&msgs);
    assert!(
        verdict.problems.is_empty(),
        "tshark expert problems: {:#?}",
        verdict.problems
    );
    assert_eq!(verdict.messages, datagrams.len());
    // tshark counts flow records (they carry packets); the options templates are announced too.
    assert_eq!(verdict.data_records, records);
    for id in [256, 257, 258, 259, 261, 262, 263, 264, 265, 266, 267, 268] {
        assert!(
            verdict.template_ids.contains(&id),
            "template {id} missing: {:?}",
            verdict.template_ids
        );
    }

    let decoded = ipfixrw_decode(&datagrams);
    assert_eq!(decoded.len(), records);
    let packets: u64 = decoded
        .iter()
        .map(|r| {
            r["packetDeltaCount"]
                .trim_start_matches("U64(")
                .trim_end_matches(')')
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(packets, frames.len() as u64);
    // Sequence numbers count data records before each message.
    let mut expected = 0u32;
    for (d, n) in datagrams.iter().zip(records_per_message(&datagrams)) {
        assert_eq!(u32::from_be_bytes(d[8..12].try_into().unwrap()), expected);
        expected += n as u32;
    }
}

/// Data records per message (flow and options), counted from set lengths and our fixed record
/// sizes.
fn records_per_message(datagrams: &[Vec<u8>]) -> Vec<usize> {
    datagrams
        .iter()
        .map(|d| {
            let mut pos = 16;
            let mut n = 0;
            while pos + 4 <= d.len() {
                let id = u16::from_be_bytes([d[pos], d[pos + 1]]);
                let len = u16::from_be_bytes([d[pos + 2], d[pos + 3]]) as usize;
                // Ports (256-259) and ICMP (264-267) layouts have the same lengths.
                let rec_len = match id {
                    256 | 264 => 71,
                    257 | 265 => 95,
                    258 | 266 => 87,
                    259 | 267 => 111,
                    _ => 0,
                };
                // Options data sets (statistics 261-263, selector 260) hold one record each.
                n += match id {
                    260..=263 => 1,
                    _ => (len - 4).checked_div(rec_len).unwrap_or(0),
                };
                pos += len;
            }
            n
        })
        .collect()
}

#[test]
fn every_collector_gets_every_record_over_ipv4_and_ipv6() {
    let tmp = TempDir::new("fanout");
    let frames = mixed_traffic(BASE);
    let pcap = tmp.path().join("mix.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &frames);
    let v4 = Recorder::start();
    let v6 = Recorder::start_on("[::1]:0");
    let stats = tmp.path().join("books.json");
    let out = probe_read(
        &[&pcap],
        &["--ipfix", &v4.url(), "--ipfix", &v6.url()],
        &stats,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let books = read_books(&stats);
    let records = books["export"]["records"].as_u64().unwrap() as usize;
    let (a, b) = (v4.finish(), v6.finish());
    assert_eq!(a, b, "both collectors receive the same messages");
    assert_eq!(ipfixrw_decode(&a).len(), records);
    for c in books["export"]["collectors"].as_array().unwrap() {
        assert_eq!(c["messages_sent"].as_u64().unwrap(), a.len() as u64);
        assert_eq!(c["messages_lost"], 0);
    }
}

#[test]
fn a_full_cache_evicts_counts_and_loses_nothing() {
    let tmp = TempDir::new("full");
    let pcap = tmp.path().join("mix.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &mixed_traffic(BASE));
    let Metered {
        out,
        records,
        books,
    } = read_into_nfcapd(&tmp, &[&pcap], &["--max-flows", "5"]);
    assert!(out.status.success());
    // Evicted flows are exported early and continue in new records: the sums stay exact.
    assert_same_flows(&tshark_flows(&pcap), &nfdump_flows(&records), "nfdump");
    assert!(
        books["flows"]["by_end_reason"]["lackOfResources"]
            .as_u64()
            .unwrap()
            > 10
    );
    assert!(books["flows"]["peak_active"].as_u64().unwrap() <= 5);
}

#[test]
fn timeouts_split_flows_into_deltas_that_sum_to_the_truth() {
    let tmp = TempDir::new("timeouts");
    let ip = |s: &str| s.parse().unwrap();
    let mut frames = vec![];
    // Flow A: a packet a second for 5 s, 20 s of silence, 5 more: an idle-timeout record and
    // a forcedEnd record at the end of the file.
    for t in (0..5).chain(25..30) {
        frames.push(Frame {
            ts_ns: BASE + t * 1_000_000_000,
            data: ethernet(
                ip("10.0.0.1"),
                ip("10.0.0.2"),
                L4::Udp { sport: 1, dport: 2 },
                100,
                &[],
                64,
            ),
        });
    }
    // Flow B: a packet every 500 ms for 25 s: active timeout 10 s gives three records (two
    // activeTimeout deltas and the forcedEnd rest).
    for i in 0..50 {
        frames.push(Frame {
            ts_ns: BASE + i * 500_000_000 + 7,
            data: ethernet(
                ip("10.0.0.3"),
                ip("10.0.0.4"),
                L4::Udp { sport: 3, dport: 4 },
                200,
                &[],
                64,
            ),
        });
    }
    frames.sort_by_key(|f| f.ts_ns);
    let pcap = tmp.path().join("t.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &frames);
    let Metered {
        out,
        records,
        books,
    } = read_into_nfcapd(
        &tmp,
        &[&pcap],
        &["--idle-timeout", "5s", "--active-timeout", "10s"],
    );
    assert!(out.status.success());
    let got = nfdump_flows(&records);
    assert_same_flows(&tshark_flows(&pcap), &got, "nfdump");
    let records_of = |sport: u16| {
        got.iter()
            .find(|(k, _)| k.sport == sport)
            .unwrap()
            .1
            .records
    };
    assert_eq!(records_of(1), 2);
    assert_eq!(records_of(3), 3);
    assert_eq!(books["flows"]["by_end_reason"]["idleTimeout"], 1);
    assert_eq!(books["flows"]["by_end_reason"]["activeTimeout"], 2);
}

/// `tool args... < input > output`, for the real compressors.
fn compress(tool: &str, args: &[&str], input: &Path, output: &Path) {
    let status = std::process::Command::new(tool)
        .args(args)
        .stdin(std::fs::File::open(input).unwrap())
        .stdout(std::fs::File::create(output).unwrap())
        .status()
        .unwrap_or_else(|e| panic!("{tool}: {e} (installed by .ci/run and `cargo xtask deps`)"));
    assert!(status.success(), "{tool}");
}

#[test]
fn compressed_captures_are_read_like_the_plain_one() {
    let tmp = TempDir::new("compressed");
    let pcap = tmp.path().join("mix.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &mixed_traffic(BASE));
    // A real pcapng capture too, when this machine has the shared ones.
    let ng = e2e::shared_pcaps_or_skip("compressed pcapng input")
        .map(|p| p.join("tcpdump/of13_ericsson.pcapng"))
        .unwrap_or_default();
    let json = |args: &[&str], stdin: Option<&Path>| {
        let mut cmd = std::process::Command::new(e2e::probe_bin());
        cmd.arg("read").args(args).args(["--print", "json"]);
        if let Some(f) = stdin {
            cmd.stdin(std::fs::File::open(f).unwrap());
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {stderr}");
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        lines.sort();
        lines
    };
    for plain in [pcap.as_path(), ng.as_path()] {
        if !plain.is_file() {
            // Only the corpus's pcapng can be absent, and only outside CI (see above).
            assert!(
                plain == ng.as_path() && std::env::var_os("CI").is_none(),
                "{} is missing",
                plain.display()
            );
            eprintln!("SKIP the pcapng half: {} is missing", plain.display());
            continue;
        }
        let truth = json(&[plain.to_str().unwrap()], None);
        assert!(!truth.is_empty());
        let gz = tmp.path().join("c.pcap.gz");
        let zst = tmp.path().join("c.pcap.zst");
        compress("gzip", &["-c"], plain, &gz);
        compress("zstd", &["-q", "-c"], plain, &zst);
        // Files, and the same bytes from a pipe.
        for c in [&gz, &zst] {
            assert_eq!(json(&[c.to_str().unwrap()], None), truth, "{}", c.display());
            assert_eq!(
                json(&["/dev/stdin"], Some(c)),
                truth,
                "{} piped",
                c.display()
            );
        }
        // Concatenated gzip members (`cat a.gz b.gz`) are one stream, as gzip -d reads them:
        // here, a capture's header and records split over two members.
        let bytes = std::fs::read(plain).unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::write(&a, &bytes[..bytes.len() / 2]).unwrap();
        std::fs::write(&b, &bytes[bytes.len() / 2..]).unwrap();
        let (agz, bgz) = (tmp.path().join("a.gz"), tmp.path().join("b.gz"));
        compress("gzip", &["-c"], &a, &agz);
        compress("gzip", &["-c"], &b, &bgz);
        let mut both = std::fs::read(&agz).unwrap();
        both.extend(std::fs::read(&bgz).unwrap());
        std::fs::write(&gz, both).unwrap();
        assert_eq!(
            json(&[gz.to_str().unwrap()], None),
            truth,
            "two gzip members"
        );
    }
    // A compression we do not read is named, with what to do.
    let xz = tmp.path().join("c.pcap.xz");
    compress("xz", &["-c"], &pcap, &xz);
    let out = run_probe(&["read", xz.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("compressed with xz") && stderr.contains("xz -dc FILE | probe read"),
        "{stderr}"
    );
    // A gzip stream cut short: every frame before the cut is metered, and the error says gzip.
    let gz = tmp.path().join("cut.pcap.gz");
    compress("gzip", &["-c"], &pcap, &gz);
    let bytes = std::fs::read(&gz).unwrap();
    std::fs::write(&gz, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let stats = tmp.path().join("books.json");
    let out = run_probe(&[
        "read",
        gz.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("gzip"), "{stderr}");
    let books = read_books(&stats);
    assert_balanced(&books);
    assert!(books["frames"]["read"].as_u64().unwrap() > 0, "{books}");
}

#[test]
fn truncated_file_exports_everything_before_the_cut() {
    let tmp = TempDir::new("trunc");
    let frames = mixed_traffic(BASE);
    let pcap = tmp.path().join("cut.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &frames);
    let len = std::fs::metadata(&pcap).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&pcap).unwrap();
    f.set_len(len - 100).unwrap(); // inside the last record
    let truth = tshark_flows(&pcap);
    let Metered {
        out,
        records,
        books,
    } = read_into_nfcapd(&tmp, &[&pcap], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cut.pcap") && stderr.contains("truncated"),
        "{stderr}"
    );
    assert_same_flows(&truth, &nfdump_flows(&records), "nfdump");
    assert_eq!(books["frames"]["read"], frames.len() as u64 - 1);
    assert!(books["files"][0]["error"]
        .as_str()
        .unwrap()
        .contains("truncated"));
}

#[test]
fn unreadable_and_unsupported_files_are_named_and_the_rest_go_on() {
    let tmp = TempDir::new("bad");
    let good = tmp.path().join("good.pcap");
    write_pcap(&good, LINKTYPE_ETHERNET, false, &mixed_traffic(BASE));
    let wpan = tmp.path().join("wpan.pcap");
    write_pcap(
        &wpan,
        195,
        false,
        &[Frame {
            ts_ns: BASE,
            data: vec![1, 2, 3],
        }],
    );
    let junk = tmp.path().join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture file").unwrap();
    let missing = tmp.path().join("missing.pcap");
    let stats = tmp.path().join("books.json");
    let out = probe_read(
        &[&missing, &wpan, &junk, &good],
        &["--print", "json"],
        &stats,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (name, why) in [
        ("missing.pcap", "No such file"),
        ("wpan.pcap", "unsupported link type 195"),
        ("junk.pcap", "not a pcap"),
    ] {
        assert!(
            stderr.lines().any(|l| l.contains(name) && l.contains(why)),
            "no line about {name}:\n{stderr}"
        );
    }
    let books = read_books(&stats);
    assert_balanced(&books);
    assert_eq!(
        books["files"][3]["frames"],
        mixed_traffic(BASE).len() as u64
    );
    assert!(!out.stdout.is_empty());
}

#[test]
fn gnu_timeout_stops_the_probe_in_order_every_time() {
    // GNU timeout sends SIGTERM to the probe, then to its whole process group: two signals
    // microseconds apart. Both are one request: every run exports its flows and prints its
    // books (exit 2, interrupted), none exits 130 with the flows unsaid.
    let tmp = TempDir::new("timeout");
    let pcap = tmp.path().join("mix.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &mixed_traffic(BASE));
    let header_and_records = std::fs::read(&pcap).unwrap();
    let keep_open = tmp.path().join("in.pcap");
    std::fs::write(&keep_open, &header_and_records).unwrap();
    let script = format!(
        "(cat {f}; sleep 1) | exec timeout --preserve-status 0.3 {probe} read /proc/self/fd/0 --print json",
        f = keep_open.display(),
        probe = e2e::probe_bin().display()
    );
    for run in 0..20 {
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "run {run}: {stderr}");
        assert!(stderr.contains("frames:"), "run {run}: no books: {stderr}");
        // Every packet metered before the signal is in a record (on a loaded machine the
        // signal may come before the whole capture was read; the books say how much was).
        let metered: u64 = stderr
            .split(" metered")
            .next()
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("run {run}: no metered count: {stderr}"));
        assert!(metered > 0, "run {run}: {stderr}");
        assert_eq!(
            json_packets(&out.stdout),
            metered,
            "run {run}: every packet metered is in a record"
        );
    }
}

#[test]
fn sigint_while_reading_a_pipe_exports_every_flow_seen() {
    let tmp = TempDir::new("sigint");
    let fifo = tmp.path().join("live.pcap");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let stats = tmp.path().join("books.json");
    let child = std::process::Command::new(e2e::probe_bin())
        .arg("read")
        .arg(&fifo)
        .args(["--print", "json", "--stats-json"])
        .arg(&stats)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The writer keeps the pipe open: the probe is blocked reading when the signal comes.
    let frames = mixed_traffic(BASE);
    let mut w = e2e::capture::PcapWriter::create(&fifo, LINKTYPE_ETHERNET, false).unwrap();
    for f in &frames {
        w.write(f.ts_ns, &f.data).unwrap();
    }
    w.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    e2e::signal(child.id(), libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    drop(w);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    let packets = json_packets(&out.stdout);
    assert_eq!(
        packets,
        frames.len() as u64,
        "every packet before the signal is in a record"
    );
    let books = read_books(&stats);
    assert_balanced(&books);
    assert_eq!(books["frames"]["read"], frames.len() as u64);
    // Connections closed both ways before the signal ended (endOfFlowDetected); every other
    // flow was cut short (forcedEnd).
    let by = &books["flows"]["by_end_reason"];
    assert_eq!(
        by["forcedEnd"].as_u64().unwrap() + by["endOfFlowDetected"].as_u64().unwrap(),
        books["flows"]["exported"].as_u64().unwrap(),
        "{by}"
    );
    assert!(by["forcedEnd"].as_u64().unwrap() > 0, "{by}");
}

#[test]
fn json_lines_that_cannot_be_written_are_counted_as_lost() {
    let tmp = TempDir::new("devfull");
    let pcap = tmp.path().join("mix.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &mixed_traffic(BASE));
    let stats = tmp.path().join("books.json");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = std::process::Command::new(e2e::probe_bin())
        .arg("read")
        .arg(&pcap)
        .args(["--print", "json", "--stats-json"])
        .arg(&stats)
        .stdout(full)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("cannot write JSON records").count(),
        1,
        "{stderr}"
    );
    let books = read_books(&stats);
    let exported = books["flows"]["exported"].as_u64().unwrap();
    assert!(exported > 30);
    assert_eq!(books["export"]["json_records"], 0);
    assert_eq!(
        books["export"]["json_records_lost"].as_u64().unwrap(),
        exported
    );
}

#[test]
fn bad_flags_name_the_flag_and_the_fix() {
    for (args, expect) in [
        (
            vec!["read", "x.pcap", "--ipfix", "ftp://127.0.0.1:4739"],
            "unknown scheme 'ftp'",
        ),
        (
            vec!["read", "x.pcap", "--ipfix", "127.0.0.1:4739"],
            "udp://HOST:PORT",
        ),
        (
            vec!["read", "x.pcap", "--idle-timeout", "15x"],
            "--idle-timeout",
        ),
        (vec!["read", "x.pcap", "--max-flows", "0"], "--max-flows"),
        (
            vec![
                "read",
                "x.pcap",
                "--mtu",
                "100",
                "--ipfix",
                "udp://127.0.0.1:9",
            ],
            "MTU 100 is too small",
        ),
    ] {
        let out = run_probe(&args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
}

/// Packet counts per file from the shared captures' INDEX.md (what capinfos read).
fn index_counts(root: &Path) -> Vec<(String, Option<u64>)> {
    std::fs::read_to_string(root.join("INDEX.md"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.split('|').map(str::trim).collect();
            if c.len() < 5 || !c[1].contains('/') {
                return None;
            }
            Some((c[1].to_string(), c[3].parse().ok()))
        })
        .collect()
}

#[test]
fn every_shared_capture_reads_without_panic_and_the_books_balance() {
    let Some(root) = e2e::shared_pcaps_or_skip("an offline corpus test") else {
        return;
    };
    let tmp = TempDir::new("shared");
    let index = index_counts(&root);
    assert!(index.len() > 500, "INDEX.md lists {} files", index.len());
    let paths: Vec<std::path::PathBuf> = index.iter().map(|(p, _)| root.join(p)).collect();
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let stats = tmp.path().join("books.json");
    let rec = Recorder::start();
    let out = probe_read(&refs, &["--ipfix", &rec.url()], &stats);
    assert!(
        matches!(out.status.code(), Some(0) | Some(2)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let datagrams = rec.finish();
    let books = read_books(&stats);
    assert_balanced(&books);
    assert_eq!(
        ipfixrw_decode(&datagrams).len() as u64,
        books["export"]["records"].as_u64().unwrap()
    );

    // Every file capinfos reads completely gives the same frame count here.
    let files = books["files"].as_array().unwrap();
    let mut mismatches = vec![];
    for ((name, want), got) in index.iter().zip(files) {
        if let (Some(want), None) = (want, got["error"].as_str()) {
            if got["frames"].as_u64().unwrap() != *want {
                mismatches.push(format!("{name}: capinfos {want}, probe {}", got["frames"]));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "frame counts differ:\n{}",
        mismatches.join("\n")
    );
    let read = books["frames"]["read"].as_u64().unwrap();
    let metered = books["frames"]["metered"].as_u64().unwrap();
    eprintln!(
        "{} files, {read} frames, {metered} metered, {} records",
        files.len(),
        books["export"]["records"]
    );
}

/// Real captures whose flows we compare with tshark's, record for record, through nfcapd.
const SHARED_FLOW_CHECKS: &[&str] = &[
    "zeek/http-vlan-0.pcap",
    "zeek/http-qinq-0.pcap",
    "zeek/dns53.pcap",
    "zeek/linux_dlt_sll2.pcap",
    "zeek/icmp_dot1q.pcap",
    "tcpdump/RADIUS-RFC4675.pcap",
];

#[test]
fn real_captures_through_nfcapd_match_tshark() {
    let Some(root) = e2e::shared_pcaps_or_skip("an offline corpus test") else {
        return;
    };
    for name in SHARED_FLOW_CHECKS {
        let pcap = root.join(name);
        let tmp = TempDir::new("real");
        // VLAN ids are keyed by the probe but not by tshark's ground truth: leave them out here.
        let Metered {
            out,
            records,
            books,
        } = read_into_nfcapd(&tmp, &[&pcap], &["--no-vlan-key"]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_flows(
            &tshark_flows(&pcap),
            &nfdump_flows(&records),
            &format!("nfdump for {name}"),
        );
        assert_balanced(&books);
    }
}

#[test]
fn print_table_shows_one_line_per_record_under_a_header() {
    let tmp = TempDir::new("table");
    let pcap = tmp.path().join("mix.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &mixed_traffic(BASE));
    let json = run_probe(&["read", pcap.to_str().unwrap(), "--print", "json"]);
    let table = run_probe(&["read", pcap.to_str().unwrap(), "--print", "table"]);
    assert!(table.status.success());
    let records = String::from_utf8_lossy(&json.stdout).lines().count();
    let text = String::from_utf8_lossy(&table.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("start (UTC)"), "{text}");
    assert_eq!(lines.len() - 1, records);
    // A TCP session's client side: its flags, and the time of the crafted capture.
    let row = lines
        .iter()
        .find(|l| l.contains("10.1.0.5 40000 ->"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.starts_with("2023-11-14 22:13:20.000"), "{row}");
    assert!(
        // Closed both ways, its grace not over when the file ended: it ended, not cut short.
        row.contains("TCP") && row.contains(".AP.SF") && row.ends_with("endOfFlowDetected"),
        "{row}"
    );
}

#[test]
fn a_large_file_on_a_terminal_shows_progress_and_a_pipe_does_not() {
    let tmp = TempDir::new("progress");
    let pcap = tmp.path().join("big.pcap");
    // 40,000 frames of 1,000 bytes: above the 32 MiB that counts as large.
    let mut w = e2e::capture::PcapWriter::create(&pcap, LINKTYPE_ETHERNET, false).unwrap();
    for i in 0..40_000u32 {
        let f = ethernet(
            std::net::Ipv4Addr::from(0x0a01_0000 | (i % 4000)).into(),
            "10.2.0.1".parse().unwrap(),
            L4::Udp {
                sport: 1024 + (i % 7) as u16,
                dport: 9000,
            },
            958,
            &[],
            64,
        );
        w.write(BASE + i as u64 * 1_000_000, &f).unwrap();
    }
    w.finish().unwrap();
    // `script` gives the probe a terminal.
    let out = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} read {}",
            e2e::probe_bin().display(),
            pcap.display()
        ))
        .arg("/dev/null")
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("reading ")
            && tty.contains("%)")
            && tty.contains("ETA")
            && tty.contains("packets/s"),
        "{tty}"
    );
    // Erased before the books.
    assert!(tty.contains("\r\x1b[Kframes: 40000 read"), "{tty}");
    let out = run_probe(&["read", pcap.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("reading "));
}

#[test]
fn anonymized_export_carries_crypto_pan_addresses_and_no_macs() {
    let tmp = TempDir::new("anon");
    // The Crypto-PAn reference key, and flows between addresses of its sample trace.
    let key: [u8; 32] = [
        21, 34, 23, 141, 51, 164, 207, 128, 19, 10, 91, 22, 73, 144, 125, 16, 216, 152, 143, 131,
        121, 121, 101, 39, 98, 87, 76, 45, 42, 132, 34, 2,
    ];
    let keyfile = tmp.path().join("key");
    std::fs::write(&keyfile, key).unwrap();
    let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
    let udp = L4::Udp {
        sport: 5000,
        dport: 53,
    };
    let frames = vec![
        e2e::capture::Frame {
            ts_ns: BASE,
            data: ethernet(ip("128.11.68.132"), ip("129.118.74.4"), udp, 20, &[], 64),
        },
        e2e::capture::Frame {
            ts_ns: BASE + 1000,
            data: ethernet(ip("2001:db8::1"), ip("2001:db8::2"), udp, 20, &[], 64),
        },
    ];
    let pcap = tmp.path().join("anon.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &frames);
    let Metered { out, records, .. } = read_into_nfcapd(
        &tmp,
        &[&pcap],
        &["--anonymize", keyfile.to_str().unwrap(), "--print", "json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // nfdump sees the reference's anonymized addresses (and those of Yawning Angel's Go
    // implementation for IPv6).
    let mut pairs: Vec<(String, String)> = records
        .iter()
        .filter(|r| r["type"] == "FLOW")
        .map(|r| {
            let a = |k4: &str, k6: &str| {
                r.get(k4)
                    .or(r.get(k6))
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            };
            (a("src4_addr", "src6_addr"), a("dst4_addr", "dst6_addr"))
        })
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        vec![
            ("135.242.180.132".to_string(), "134.136.186.123".to_string()),
            (
                "4401:2bc:603f:d91d:27f:ff8e:e6f1:dc1e".to_string(),
                "4401:2bc:603f:d91d:27f:ff8e:e6f1:dc1c".to_string()
            ),
        ]
    );
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(!json.contains("128.11.68.132") && !json.contains("2001:db8"));
    assert!(json
        .lines()
        .all(|l| l.contains("\"sourceMacAddress\":\"00:00:00:00:00:00\"")));
    // A missing key file says how to make one.
    let out = run_probe(&[
        "read",
        pcap.to_str().unwrap(),
        "--anonymize",
        "/nonexistent/key",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("head -c 32 /dev/urandom"));
}

#[test]
fn reading_as_root_needs_to_be_asked_for() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED reading_as_root_needs_to_be_asked_for: not running as root");
        return;
    }
    let tmp = TempDir::new("asroot");
    let pcap = tmp.path().join("mix.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &mixed_traffic(BASE));
    let run = |extra: &[&str]| {
        std::process::Command::new(e2e::probe_bin())
            .arg("read")
            .arg(&pcap)
            .args(extra)
            .env_remove("PROBE_ALLOW_ROOT")
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("will not run as root") && err.contains("--allow-root"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(run(&["--allow-root"]).status.success());
}

#[test]
fn every_record_carries_the_community_id_tshark_computes() {
    // tshark's Community ID postdissector (Wireshark's own implementation of the spec) gives
    // each frame its conversation's ID; every record's ID must be the one of its frames, with
    // the default seed and with another.
    let tmp = TempDir::new("communityid");
    let pcap = tmp.path().join("mix.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &mixed_traffic(BASE));
    for seed in ["0", "7"] {
        let out = run_probe(&[
            "read",
            pcap.to_str().unwrap(),
            "--print",
            "json",
            "--community-id",
            "--community-id-seed",
            seed,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let frames = std::process::Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&pcap)
            .args([
                "--enable-protocol",
                "communityid",
                "-o",
                &format!("communityid.seed:{seed}"),
                "-T",
                "fields",
                "-e",
                "ip.src",
                "-e",
                "ipv6.src",
                "-e",
                "ip.dst",
                "-e",
                "ipv6.dst",
                "-e",
                "tcp.srcport",
                "-e",
                "tcp.dstport",
                "-e",
                "udp.srcport",
                "-e",
                "udp.dstport",
                "-e",
                "communityid",
            ])
            .output()
            .unwrap();
        let frames = String::from_utf8_lossy(&frames.stdout);
        // Community IDs of the frames of each direction's 5-tuple (addresses, ports, TCP, UDP
        // or other): a record carrying a sibling flow's ID fails.
        type Tuple = (String, String, u16, u16, &'static str);
        let mut by_tuple: std::collections::BTreeMap<Tuple, std::collections::BTreeSet<String>> =
            Default::default();
        // The outer value where a field repeats (ICMP errors quote the offending header).
        let first = |v: &str| v.split(',').next().unwrap_or("").to_string();
        let port = |v: &str| first(v).parse::<u16>().unwrap_or(0);
        for l in frames.lines() {
            let c: Vec<&str> = l.split('\t').collect();
            if c.len() < 9 || c[8].is_empty() {
                continue;
            }
            let src = first(if c[0].is_empty() { c[1] } else { c[0] });
            let dst = first(if c[2].is_empty() { c[3] } else { c[2] });
            let (sport, dport, proto) = if !c[4].is_empty() {
                (port(c[4]), port(c[5]), "tcp")
            } else if !c[6].is_empty() {
                (port(c[6]), port(c[7]), "udp")
            } else {
                (0, 0, "other")
            };
            by_tuple
                .entry((src, dst, sport, dport, proto))
                .or_default()
                .insert(c[8].to_string());
        }
        let mut checked = 0;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = r["communityId"].as_str().expect("every record has one");
            let addr = |v4: &str, v6: &str| {
                r.get(v4)
                    .or(r.get(v6))
                    .and_then(|v| v.as_str())
                    .unwrap()
                    .to_string()
            };
            let proto = match r["protocolIdentifier"].as_u64() {
                Some(6) => "tcp",
                Some(17) => "udp",
                _ => "other",
            };
            let (sport, dport) = if proto == "other" {
                (0, 0)
            } else {
                (
                    r["sourceTransportPort"].as_u64().unwrap() as u16,
                    r["destinationTransportPort"].as_u64().unwrap() as u16,
                )
            };
            let key = (
                addr("sourceIPv4Address", "sourceIPv6Address"),
                addr("destinationIPv4Address", "destinationIPv6Address"),
                sport,
                dport,
                proto,
            );
            let ids = by_tuple.get(&key);
            assert!(
                ids.is_some_and(|ids| ids.contains(id)),
                "seed {seed}: {line}\ntshark's IDs for {key:?}: {ids:?}"
            );
            // One TCP or UDP conversation, one ID (ICMP's ID takes its type and code too).
            if proto != "other" {
                assert_eq!(ids.map(|i| i.len()), Some(1), "{key:?}: {ids:?}");
            }
            checked += 1;
        }
        assert!(checked > 20, "{checked}");
    }
}
