//! The PCAP ring's files read by tools someone else wrote: capinfos and tshark must open every
//! file with no error, count every frame, and show each timestamp to the nanosecond.

use e2e::craft::mixed_traffic;
use e2e::TempDir;
use pcap_ring::{RingConfig, RingWriter, WriteOutcome};
use std::process::Command;

#[test]
fn capinfos_and_tshark_read_every_ring_file_to_the_nanosecond() {
    let tmp = TempDir::new("ring");
    let dir = tmp.path().join("ring");
    let mut cfg = RingConfig::new(&dir);
    cfg.file_size = 16_000;
    cfg.max_files = Some(1000);
    let mut w = RingWriter::open(cfg).unwrap();
    // The crafted mix, with odd nanoseconds so truncation to µs would show.
    let frames: Vec<_> = mixed_traffic(1_795_388_820_000_000_000)
        .into_iter()
        .enumerate()
        .map(|(i, mut f)| {
            f.ts_ns += i as u64 * 7 + 1;
            f
        })
        .collect();
    for f in &frames {
        assert!(matches!(
            w.write(f.ts_ns, &f.data, f.data.len() as u32),
            WriteOutcome::Written
        ));
    }
    w.close().unwrap();
    let files: Vec<_> = w.files().map(|f| f.path.clone()).collect();
    assert!(files.len() > 3, "{} files", files.len());

    let mut seen = Vec::new();
    for path in &files {
        let out = Command::new("capinfos")
            .args(["-M", "-c", "-T"])
            .arg(path)
            .output()
            .expect("capinfos is installed (wireshark-common, with tshark)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "capinfos {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("tshark")
            .arg("-r")
            .arg(path)
            .args([
                "-n",
                "-T",
                "fields",
                "-e",
                "frame.time_epoch",
                "-e",
                "frame.len",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tshark {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let warnings: Vec<_> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("Running as user"))
            .map(String::from)
            .collect();
        assert!(warnings.is_empty(), "tshark warns: {warnings:?}");
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        // capinfos' table row: file name, then the packet count.
        let count: usize = text
            .lines()
            .nth(1)
            .and_then(|l| l.split('\t').nth(1))
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or_else(|| panic!("capinfos count in {text}"));
        assert_eq!(count, lines.len(), "{}", path.display());
        seen.extend(lines);
    }
    assert_eq!(seen.len(), frames.len());
    for (line, f) in seen.iter().zip(&frames) {
        let (ts, len) = line.split_once('\t').unwrap();
        let (secs, frac) = ts.split_once('.').unwrap();
        let ns = secs.parse::<u64>().unwrap() * 1_000_000_000 + frac.parse::<u64>().unwrap();
        assert_eq!(frac.len(), 9, "nanosecond resolution: {ts}");
        assert_eq!(ns, f.ts_ns);
        assert_eq!(len.parse::<usize>().unwrap(), f.data.len());
    }
}

/// Every frame of a pcap as tshark sees it: epoch time to the ns, length, md5 of the bytes,
/// for frames matching `filter` (a display filter; empty for all).
fn tshark_frames(pcap: &std::path::Path, filter: &str) -> Vec<String> {
    e2e::tools::tshark_frames(
        pcap,
        filter,
        &["frame.time_epoch", "frame.len", "frame.md5_hash"],
    )
}

/// Writes a capture of 3,000 UDP frames of 400 payload bytes, 1 ms apart, over `flows`
/// source ports from `first_sport`.
fn udp_capture(path: &std::path::Path, src: &str, dst: &str, first_sport: u16, flows: u64) {
    use e2e::capture::{write_pcap, Frame, LINKTYPE_ETHERNET};
    use e2e::craft::{ethernet, L4};
    let frames: Vec<Frame> = (0..3000u64)
        .map(|i| Frame {
            ts_ns: 1_795_388_820_000_000_000 + i * 1_000_000,
            data: ethernet(
                src.parse().unwrap(),
                dst.parse().unwrap(),
                L4::Udp {
                    sport: first_sport + (i % flows) as u16,
                    dport: 9,
                },
                400,
                &[],
                64,
            ),
        })
        .collect();
    write_pcap(path, LINKTYPE_ETHERNET, true, &frames);
}

#[test]
fn probe_read_keeps_the_selection_and_extract_returns_one_flow_exactly() {
    use e2e::capture::{write_pcap, LINKTYPE_ETHERNET};
    let tmp = TempDir::new("ring-read");
    let frames = mixed_traffic(1_795_388_820_000_000_000);
    let pcap = tmp.path().join("mix.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, true, &frames);
    let ring = tmp.path().join("ring");
    let stats = tmp.path().join("books.json");
    e2e::tools::run_probe_ok(&[
        "read",
        pcap.to_str().unwrap(),
        "--pcap-dir",
        ring.to_str().unwrap(),
        "--pcap-select",
        "net 10.1.0.0/16 or net fd00::/16",
        "--pcap-file-size",
        "8KiB",
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    let books = e2e::tools::read_books(&stats);
    let r = &books["pcap_ring"];
    assert_eq!(r["balanced"], true, "{r}");
    let files = e2e::sorted_dir(&ring);
    assert!(files.len() > 3, "{files:?}");
    assert_eq!(r["files_kept"], files.len());

    // Every file opens in tshark; together they hold exactly the selected frames, in order.
    let mut got = Vec::new();
    for f in &files {
        got.extend(tshark_frames(f, ""));
    }
    let want = tshark_frames(&pcap, "ip.addr == 10.1.0.0/16 || ipv6.addr == fd00::/16");
    assert_eq!(got, want, "the ring holds exactly the selected frames");
    assert_eq!(r["selected"], want.len());

    // One TCP flow back out of the ring equals tshark's filter of the original, packet for packet.
    let out_pcap = tmp.path().join("flow.pcap");
    e2e::tools::run_probe_ok(&[
        "extract",
        "--pcap-dir",
        ring.to_str().unwrap(),
        "--from",
        "1795388820",
        "--to",
        "1795388830",
        "-w",
        out_pcap.to_str().unwrap(),
        "src host 10.1.0.5 and src port 40002 and dst host 10.2.0.80 and dst port 443 and tcp",
    ]);
    let flow = tshark_frames(&out_pcap, "");
    let truth = tshark_frames(
        &pcap,
        "ip.src == 10.1.0.5 && tcp.srcport == 40002 && ip.dst == 10.2.0.80 && tcp.dstport == 443",
    );
    assert!(truth.len() >= 4);
    assert_eq!(flow, truth);

    // Everything in the ring with almost no memory: sorted runs on disk, merged into the same
    // file, byte for byte, as the in-memory sort gives; the runs are gone afterwards.
    let all_mem = tmp.path().join("all-mem.pcap");
    let all_disk = tmp.path().join("all-disk.pcap");
    for (out, extra) in [(&all_mem, None), (&all_disk, Some("4KiB"))] {
        let mut args = vec!["extract", "--pcap-dir", ring.to_str().unwrap()];
        if let Some(m) = extra {
            args.extend(["--max-memory", m]);
        }
        args.extend(["-w", out.to_str().unwrap()]);
        let run = e2e::tools::run_probe(&args);
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{err}");
        assert_eq!(
            err.contains("runs on disk and merged"),
            extra.is_some(),
            "{err}"
        );
    }
    assert_eq!(
        std::fs::read(&all_mem).unwrap(),
        std::fs::read(&all_disk).unwrap()
    );
    assert_eq!(tshark_frames(&all_disk, "").len(), want.len());
    assert!(!tmp.path().join("all-disk.pcap.runs").exists());

    // The same run in pcapng: the same frames, and the interface name in every file.
    let ring_ng = tmp.path().join("ring-ng");
    e2e::tools::run_probe_ok(&[
        "read",
        pcap.to_str().unwrap(),
        "--pcap-dir",
        ring_ng.to_str().unwrap(),
        "--pcap-select",
        "net 10.1.0.0/16 or net fd00::/16",
        "--pcap-file-size",
        "8KiB",
        "--pcap-format",
        "pcapng",
    ]);
    let ng_files = e2e::sorted_dir(&ring_ng);
    assert!(ng_files
        .iter()
        .all(|f| f.extension().is_some_and(|e| e == "pcapng")));
    let mut got_ng = Vec::new();
    for f in &ng_files {
        got_ng.extend(tshark_frames(f, ""));
        let names = Command::new("tshark")
            .arg("-r")
            .arg(f)
            .args(["-T", "fields", "-e", "frame.interface_name"])
            .output()
            .unwrap();
        let names = String::from_utf8_lossy(&names.stdout);
        assert!(names.lines().all(|l| l == "mix.pcap"), "{names}");
    }
    assert_eq!(got_ng, want);

    // A window that ends before the capture starts reads no file at all.
    let out = e2e::tools::run_probe(&[
        "extract",
        "--pcap-dir",
        ring.to_str().unwrap(),
        "--to",
        "1795388000",
        "-w",
        tmp.path().join("none.pcap").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0 packets written")
            && err.contains(&format!("0 of {} ring files read", files.len())),
        "{err}"
    );
}

#[test]
fn retention_holds_across_a_run_that_writes_many_files() {
    let tmp = TempDir::new("ring-keep");
    let pcap = tmp.path().join("many.pcap");
    udp_capture(&pcap, "10.5.0.1", "10.5.0.2", 1000, 50);
    let ring = tmp.path().join("ring");
    let stats = tmp.path().join("books.json");
    let out = e2e::tools::run_probe(&[
        "read",
        pcap.to_str().unwrap(),
        "--pcap-dir",
        ring.to_str().unwrap(),
        "--pcap-select",
        "all",
        "--pcap-file-size",
        "50KB",
        "--pcap-ring-size",
        "300KB",
        "--pcap-max-files",
        "5",
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = e2e::sorted_dir(&ring);
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(
        files.len() <= 5 && total <= 300_000,
        "{} files, {total} bytes",
        files.len()
    );
    let books = e2e::tools::read_books(&stats);
    assert!(
        books["pcap_ring"]["files_deleted"].as_u64().unwrap() >= 20,
        "{}",
        books["pcap_ring"]
    );
    // What is left are the newest frames, ending with the last one.
    let last = tshark_frames(files.last().unwrap(), "");
    let want_last = tshark_frames(&pcap, "");
    assert_eq!(last.last(), want_last.last());
}

#[test]
fn bad_selection_names_the_column() {
    let out = e2e::tools::run_probe(&[
        "read",
        "/dev/null",
        "--pcap-dir",
        "/tmp",
        "--pcap-select",
        "net 10.0.0.0/8 and prot 6",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("column 20") && err.contains("unknown primitive 'prot'"),
        "{err}"
    );
}

#[test]
fn a_full_disk_costs_packets_in_the_ring_and_nothing_in_the_flows() {
    if !e2e::lab::require_root("a_full_disk_costs_packets_in_the_ring_and_nothing_in_the_flows") {
        return;
    }
    let tmp = TempDir::new("ring-full");
    let Some(disk) = e2e::Tmpfs::mount(tmp.path().join("small"), "256k") else {
        panic!("cannot mount a tmpfs as root");
    };
    let pcap = tmp.path().join("big.pcap");
    udp_capture(&pcap, "10.6.0.1", "10.6.0.2", 2000, 40);
    let stats = tmp.path().join("books.json");
    let out = e2e::tools::run_probe(&[
        "read",
        pcap.to_str().unwrap(),
        "--print",
        "json",
        "--pcap-dir",
        disk.0.join("ring").to_str().unwrap(),
        "--pcap-select",
        "all",
        "--pcap-file-size",
        "64KB",
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        err.matches("counted as unwritten").count(),
        1,
        "one report per episode: {err}"
    );
    let books = e2e::tools::read_books(&stats);
    let r = &books["pcap_ring"];
    assert_eq!(r["balanced"], true, "{r}");
    assert_eq!(r["selected"], 3000);
    assert!(r["written"].as_u64().unwrap() > 0, "{r}");
    assert!(r["unwritten_disk"].as_u64().unwrap() > 1000, "{r}");
    // Metering did not notice: every frame metered, every flow exported with every packet.
    assert_eq!(books["frames"]["metered"], 3000);
    assert_eq!(e2e::tools::json_packets(&out.stdout), 3000);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 40);
    // What was written is whole: every file opens, no temporary file is left, and the frames
    // in the files are exactly those the books call written.
    let mut on_disk = 0;
    for f in e2e::sorted_dir(&disk.0.join("ring")) {
        assert!(f.extension().is_some_and(|e| e == "pcap"), "{f:?}");
        on_disk += tshark_frames(&f, "").len();
    }
    assert_eq!(r["written"], on_disk, "{r}");
    // The ring's status reads a directory whose disk is full (the journal's own lines may be
    // what the full disk refused: the books above are the record of those losses).
    let (ok, status, err) = ring_cmd(&[
        "ring",
        "status",
        "--pcap-dir",
        disk.0.join("ring").to_str().unwrap(),
    ]);
    assert!(ok && status.contains("selection 'all'"), "{status}{err}");
}

#[test]
fn extract_takes_flow_records_from_the_probe_and_from_nfdump() {
    use e2e::capture::{write_pcap, LINKTYPE_ETHERNET};
    let tmp = TempDir::new("ring-flows");
    let frames = mixed_traffic(1_795_388_820_000_000_000);
    let pcap = tmp.path().join("mix.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, true, &frames);
    let ring = tmp.path().join("ring");
    let nfdir = tmp.path().join("nf");
    std::fs::create_dir(&nfdir).unwrap();
    let nfcapd = e2e::tools::Nfcapd::start(&nfdir);
    let out = e2e::tools::run_probe(&[
        "read",
        pcap.to_str().unwrap(),
        "--pcap-dir",
        ring.to_str().unwrap(),
        "--pcap-select",
        "all",
        "--pcap-file-size",
        "8KiB",
        "--print",
        "json",
        "--ipfix",
        &nfcapd.url(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    nfcapd.finish();
    // The analyst's path, first with the probe's own records: grep the flow, extract it.
    let records = String::from_utf8(out.stdout).unwrap();
    let one: String = records
        .lines()
        .filter(|l| {
            l.contains("\"sourceIPv4Address\":\"10.1.0.5\"")
                && l.contains("\"sourceTransportPort\":40002,")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(one.lines().count(), 1, "{records}");
    let flows = tmp.path().join("flows.json");
    std::fs::write(&flows, &one).unwrap();
    let fwd =
        "ip.src == 10.1.0.5 && tcp.srcport == 40002 && ip.dst == 10.2.0.80 && tcp.dstport == 443";
    let both =
        "ip.addr == 10.1.0.5 && tcp.port == 40002 && ip.addr == 10.2.0.80 && tcp.port == 443";
    for (extra, filter) in [(None, fwd), (Some("--both-directions"), both)] {
        let w = tmp.path().join("one.pcap");
        let mut args = vec![
            "extract",
            "--pcap-dir",
            ring.to_str().unwrap(),
            "--flows",
            flows.to_str().unwrap(),
            "-w",
            w.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = e2e::tools::run_probe(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let truth = tshark_frames(&pcap, filter);
        assert!(truth.len() >= 4);
        assert_eq!(tshark_frames(&w, ""), truth, "{extra:?}");
        assert!(
            err.contains(&format!(
                "flow 1: 10.1.0.5:40002 -> 10.2.0.80:443 tcp: {} packets",
                truth.len()
            )) && err.contains("0 not wholly covered"),
            "{err}"
        );
    }
    // Then with nfdump's: `nfdump -o json ... | probe extract --flows -`.
    let nf = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "TZ=UTC nfdump -R {} -o json 'src ip 10.1.0.5 and src port 40002' | {} extract --pcap-dir {} --flows - --both-directions -w {}",
            nfdir.display(),
            e2e::probe_bin().display(),
            ring.display(),
            tmp.path().join("nf.pcap").display()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&nf.stderr);
    assert!(nf.status.success(), "{err}");
    assert_eq!(
        tshark_frames(&tmp.path().join("nf.pcap"), ""),
        tshark_frames(&pcap, both)
    );
    // A flow from before the ring's oldest packet is reported as not covered.
    let old = one
        .replace(
            "\"flowStartMilliseconds\":1795388820",
            "\"flowStartMilliseconds\":1795388000",
        )
        .replace(
            "\"flowStartNanoseconds\":1795388820",
            "\"flowStartNanoseconds\":1795388000",
        );
    std::fs::write(&flows, &old).unwrap();
    let out = e2e::tools::run_probe(&[
        "extract",
        "--pcap-dir",
        ring.to_str().unwrap(),
        "--flows",
        flows.to_str().unwrap(),
        "-w",
        tmp.path().join("old.pcap").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && err.contains("does not cover")
            && err.contains("1 not wholly covered"),
        "{old}\n{err}"
    );
}

/// `probe read` of `frames` into the ring `ring` under `select`, with small files.
fn read_into_ring(
    tmp: &std::path::Path,
    name: &str,
    frames: &[e2e::capture::Frame],
    ring: &std::path::Path,
    select: &str,
    extra: &[&str],
) {
    use e2e::capture::{write_pcap, LINKTYPE_ETHERNET};
    let pcap = tmp.join(name);
    write_pcap(&pcap, LINKTYPE_ETHERNET, true, frames);
    let mut args = vec![
        "read",
        pcap.to_str().unwrap(),
        "--pcap-dir",
        ring.to_str().unwrap(),
        "--pcap-select",
        select,
        "--pcap-file-size",
        "8KiB",
    ];
    args.extend(extra);
    let out = e2e::tools::run_probe(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ring_cmd(args: &[&str]) -> (bool, String, String) {
    let out = e2e::tools::run_probe(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ring_status_tells_coverage_selections_gaps_and_holds_even_on_a_copy() {
    let tmp = TempDir::new("ring-status");
    let ring = tmp.path().join("ring");
    const T0: u64 = 1_795_388_820_000_000_000;
    // Two runs an hour apart (by packet time), under two selections: a gap while the probe
    // was stopped, and each file's selection on record.
    read_into_ring(tmp.path(), "a.pcap", &mixed_traffic(T0), &ring, "all", &[]);
    read_into_ring(
        tmp.path(),
        "b.pcap",
        &mixed_traffic(T0 + 3_600_000_000_000),
        &ring,
        "tcp or udp",
        &[],
    );
    let (ok, text, err) = ring_cmd(&["ring", "status", "--pcap-dir", ring.to_str().unwrap()]);
    assert!(ok, "{err}");
    let files = e2e::sorted_dir(&ring)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .count();
    assert!(text.contains(&format!("{files} files")), "{text}");
    assert!(
        text.contains("2026-11-22T23:07:00.000000000Z .. 2026-11-23T00:07:02."),
        "{text}"
    );
    assert!(text.contains("selection 'all': files 1-"), "{text}");
    assert!(text.contains("selection 'tcp or udp': files"), "{text}");
    assert!(
        text.contains("gaps: 1") && text.contains("probe stopped"),
        "{text}"
    );
    // The same answer from a copy of the directory taken elsewhere.
    let copy = tmp.path().join("copy");
    assert!(Command::new("cp")
        .args(["-a", ring.to_str().unwrap(), copy.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let (_, copied, _) = ring_cmd(&["ring", "status", "--pcap-dir", copy.to_str().unwrap()]);
    assert_eq!(
        copied.replace(copy.to_str().unwrap(), "DIR"),
        text.replace(ring.to_str().unwrap(), "DIR")
    );
    let (_, json, _) = ring_cmd(&[
        "ring",
        "status",
        "--pcap-dir",
        ring.to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["files"], files);
    assert_eq!(v["selections"].as_array().unwrap().len(), 2);
    assert_eq!(v["gaps"][0]["reason"], "probe stopped");
}

#[test]
fn a_hold_outlives_retention_is_bounded_and_release_frees_it() {
    let tmp = TempDir::new("ring-hold");
    let ring = tmp.path().join("ring");
    const T0: u64 = 1_795_388_820_000_000_000;
    read_into_ring(
        tmp.path(),
        "a.pcap",
        &mixed_traffic(T0),
        &ring,
        "all",
        &["--pcap-max-files", "4"],
    );
    let before: Vec<std::path::PathBuf> = e2e::sorted_dir(&ring)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    assert_eq!(before.len(), 4);
    // Too small a bound for held data: refused, with the fix, and nothing held.
    let (ok, _, err) = ring_cmd(&[
        "ring",
        "hold",
        "--pcap-dir",
        ring.to_str().unwrap(),
        "--reason",
        "too big",
        "--pcap-held-size",
        "1KiB",
    ]);
    assert!(
        !ok && err.contains("--pcap-held-size") && err.contains("probe ring release"),
        "{err}"
    );
    assert!(!ring.join("held").exists() || e2e::sorted_dir(&ring.join("held")).is_empty());
    let (ok, out, err) = ring_cmd(&[
        "ring",
        "hold",
        "--pcap-dir",
        ring.to_str().unwrap(),
        "--reason",
        "case 7",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("4 files"), "{out}");
    let hold = e2e::sorted_dir(&ring.join("held")).remove(0);
    assert!(hold
        .file_name()
        .unwrap()
        .to_string_lossy()
        .ends_with("-case-7"));
    // Retention under pressure: a later run deletes every one of those ring files...
    read_into_ring(
        tmp.path(),
        "b.pcap",
        &mixed_traffic(T0 + 3_600_000_000_000),
        &ring,
        "all",
        &["--pcap-max-files", "4"],
    );
    assert!(
        before.iter().all(|p| !p.exists()),
        "retention deleted the ring's names"
    );
    // ...and the hold still has them, byte for byte: sha256sum agrees with the manifest.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hold.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["reason"], "case 7");
    for f in manifest["files"].as_array().unwrap() {
        let path = hold.join(f["name"].as_str().unwrap());
        let sum = Command::new("sha256sum").arg(&path).output().unwrap();
        let sum = String::from_utf8_lossy(&sum.stdout);
        assert_eq!(
            sum.split_whitespace().next().unwrap(),
            f["sha256"],
            "{}",
            path.display()
        );
        assert_eq!(f["selection"], "all");
        assert!(!tshark_frames(&path, "").is_empty());
    }
    let (_, status, _) = ring_cmd(&["ring", "status", "--pcap-dir", ring.to_str().unwrap()]);
    assert!(
        status.contains("holds: 1") && status.contains("reason 'case 7'"),
        "{status}"
    );
    let name = hold.file_name().unwrap().to_string_lossy().into_owned();
    let (ok, out, err) = ring_cmd(&[
        "ring",
        "release",
        "--pcap-dir",
        ring.to_str().unwrap(),
        &name,
    ]);
    assert!(
        ok && out.contains("released") && out.contains("4 files"),
        "{out}{err}"
    );
    assert!(!hold.exists());
    let (ok, _, err) = ring_cmd(&[
        "ring",
        "release",
        "--pcap-dir",
        ring.to_str().unwrap(),
        "nope",
    ]);
    assert!(!ok && err.contains("no hold named 'nope'"), "{err}");
}

#[test]
fn a_hold_while_a_file_is_written_takes_that_file_once_complete() {
    let tmp = TempDir::new("ring-pending");
    let ring = tmp.path().join("ring");
    let mut probe = e2e::tools::PipedProbe::start(
        &tmp,
        &["--pcap-dir", ring.to_str().unwrap(), "--pcap-select", "all"],
    );
    // More than a batch (256 frames) so the writer has started a file.
    let mut frames = mixed_traffic(1_795_388_820_000_000_000);
    let one = frames[0].clone();
    for i in 0..400u64 {
        frames.push(e2e::capture::Frame {
            ts_ns: 1_795_388_830_000_000_000 + i * 1000,
            data: one.data.clone(),
        });
    }
    probe.send(&frames);
    // The probe is writing its first file (still a .part): the hold waits for it.
    let t = std::time::Instant::now();
    while !e2e::sorted_dir(&ring)
        .iter()
        .any(|p| p.to_string_lossy().ends_with(".part"))
    {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "no file being written"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (ok, out, err) = ring_cmd(&[
        "ring",
        "hold",
        "--pcap-dir",
        ring.to_str().unwrap(),
        "--reason",
        "now",
    ]);
    assert!(ok && out.contains("joins it when complete"), "{out}{err}");
    probe.finish();
    let hold = e2e::sorted_dir(&ring.join("held")).remove(0);
    assert!(!hold.join(".pending").exists());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hold.join("manifest.json")).unwrap())
            .unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{manifest}");
    let held = hold.join(files[0]["name"].as_str().unwrap());
    assert_eq!(tshark_frames(&held, "").len(), frames.len());
}

#[test]
fn the_ring_keeps_each_flows_first_packets_and_counts_the_rest() {
    // Three UDP flows of 1,000 packets each, interleaved: with --pcap-flow-packets 100 the ring
    // holds each flow's first 100 (the capture's first 300 frames) and the books count the
    // 2,700 it left out; the flow records still carry every packet.
    let tmp = TempDir::new("ring-cutoff");
    let pcap = tmp.path().join("udp.pcap");
    udp_capture(&pcap, "10.7.0.1", "10.7.0.2", 2000, 3);
    for (limit, kept) in [("100", 300usize), ("0", 3000)] {
        let ring = tmp.path().join(format!("ring-{limit}"));
        let stats = tmp.path().join(format!("books-{limit}.json"));
        let out = e2e::tools::run_probe_ok(&[
            "read",
            pcap.to_str().unwrap(),
            "--pcap-dir",
            ring.to_str().unwrap(),
            "--pcap-select",
            "udp",
            "--pcap-flow-packets",
            limit,
            "--print",
            "json",
            "--stats-json",
            stats.to_str().unwrap(),
        ]);
        assert_eq!(e2e::tools::json_packets(&out.stdout), 3000);
        let books = e2e::tools::read_books(&stats);
        let r = &books["pcap_ring"];
        assert_eq!(r["balanced"], true, "{r}");
        assert_eq!(r["selected"], kept, "{r}");
        assert_eq!(r["past_flow_cutoff"], 3000 - kept, "{r}");
        let mut got = Vec::new();
        for f in e2e::sorted_dir(&ring) {
            got.extend(tshark_frames(&f, ""));
        }
        let want = tshark_frames(&pcap, &format!("frame.number <= {kept}"));
        assert_eq!(
            got, want,
            "--pcap-flow-packets {limit}: each flow's first frames"
        );
    }
}
