//! Faults a probe meets in months of running: a fragment table and a flow cache flooded by
//! hostile traffic, a PCAP directory that is or turns read-only, and SIGTERM while traffic
//! pours in. In each, nothing may panic, the books must close, and every loss must be counted.

use e2e::capture::{write_pcap, Frame, PcapWriter, LINKTYPE_ETHERNET};
use e2e::craft::{ethernet, L4};
use e2e::lab::{require_root, Lab};
use e2e::tools::*;
use e2e::TempDir;
use std::process::{Command, Stdio};
use std::time::Duration;

const BASE: u64 = 1_700_000_000_000_000_000;

/// An Ethernet/IPv4 fragment: `first` carries the UDP header (ports), later ones only data.
fn fragment(id: u16, first: bool, last: bool, offset_8: u16, payload: usize) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let l4 = if first { 8 } else { 0 };
    let total = (20 + l4 + payload) as u16;
    let flags_off: u16 = (if last { 0 } else { 0x2000 }) | offset_8;
    f.extend([0x45, 0]);
    f.extend(total.to_be_bytes());
    f.extend(id.to_be_bytes());
    f.extend(flags_off.to_be_bytes());
    f.extend([64, 17, 0, 0, 10, 7, (id >> 8) as u8, id as u8, 10, 8, 0, 1]);
    if first {
        f.extend(4000u16.to_be_bytes());
        f.extend(9000u16.to_be_bytes());
        f.extend(((8 + payload * 2) as u16).to_be_bytes());
        f.extend([0, 0]);
    }
    f.extend(std::iter::repeat_n(0x5a, payload));
    f
}

#[test]
fn fragment_table_exhaustion_is_counted_and_every_fragment_metered() {
    let tmp = TempDir::new("frag-flood");
    // 300 datagrams whose first fragments all arrive before any second one: a table of 16
    // must overflow; every fragment must still be metered, in some flow.
    let mut frames = Vec::new();
    let mut t = BASE;
    for id in 0..300u16 {
        frames.push(Frame {
            ts_ns: t,
            data: fragment(id, true, false, 0, 64),
        });
        t += 1000;
    }
    for id in 0..300u16 {
        frames.push(Frame {
            ts_ns: t,
            data: fragment(id, false, true, 9, 64),
        });
        t += 1000;
    }
    let pcap = tmp.path().join("frags.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &frames);
    let stats = tmp.path().join("books.json");
    let out = run_probe_ok(&[
        "read",
        pcap.to_str().unwrap(),
        "--fragment-table-size",
        "16",
        "--print",
        "json",
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    let books = read_books(&stats);
    assert_balanced(&books);
    let fr = &books["fragments"];
    assert_eq!(fr["fragments"], 600, "{fr}");
    assert!(fr["table_full"].as_u64().unwrap() >= 284, "{fr}");
    assert!(fr["unmatched"].as_u64().unwrap() > 0, "{fr}");
    assert_eq!(
        json_packets(&out.stdout),
        600,
        "every fragment is in a record"
    );
}

#[test]
fn a_flood_of_unique_flows_keeps_memory_bounded_and_counts_evictions() {
    let tmp = TempDir::new("flow-flood");
    let pcap = tmp.path().join("flood.pcap");
    // 300,000 one-packet flows (a scan or a spoofed flood) through a cache of 2,000.
    let small = tmp.path().join("small.pcap");
    let mut w = PcapWriter::create(&pcap, LINKTYPE_ETHERNET, false).unwrap();
    let mut w_small = PcapWriter::create(&small, LINKTYPE_ETHERNET, false).unwrap();
    for i in 0..300_000u32 {
        let f = ethernet(
            std::net::Ipv4Addr::from(0x0a00_0000 | i).into(),
            "10.255.0.1".parse().unwrap(),
            L4::Udp {
                sport: (i % 60_000) as u16 + 1024,
                dport: 53,
            },
            0,
            &[],
            64,
        );
        w.write(BASE + i as u64 * 1000, &f).unwrap();
        if i < 1000 {
            w_small.write(BASE + i as u64 * 1000, &f).unwrap();
        }
    }
    w.finish().unwrap();
    w_small.finish().unwrap();
    let stats = tmp.path().join("books.json");
    // The process's fixed part: the same probe on the flood's first 1,000 packets.
    let fixed_kib = peak_rss_kib(&["read", small.to_str().unwrap(), "--max-flows", "2000"]);
    let (held, held_books) = (2_000u64, tmp.path().join("books-held.json"));
    let bounded_kib = peak_rss_kib(&[
        "read",
        pcap.to_str().unwrap(),
        "--max-flows",
        &held.to_string(),
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    // The same probe with every flow held (a cache large enough for the flood): what a cache
    // that ignored its bound would cost. The bound is derived from the two.
    let unbounded_kib = peak_rss_kib(&[
        "read",
        pcap.to_str().unwrap(),
        "--max-flows",
        "400000",
        "--stats-json",
        held_books.to_str().unwrap(),
    ]);
    // Bounded: the process's fixed part plus twice the 2,000 flows' share of what holding
    // 300,000 cost, plus the capture's size (the reader maps the file, and the pages it has
    // read count in the resident set until the kernel takes them back), plus 8 MiB for noise (the
    // fixed part measured 5 to 12 MiB here). A cache that ignored --max-flows would cost about
    // `unbounded_kib`, which must lie above the bound (or the test could not tell).
    let per_flow_kib = unbounded_kib.saturating_sub(fixed_kib) as f64 / 300_000.0;
    eprintln!(
        "peak RSS: {fixed_kib} KiB on 1,000 packets, {bounded_kib} KiB holding {held} flows, {unbounded_kib} KiB holding 300,000 ({:.0} bytes per flow)",
        per_flow_kib * 1024.0
    );
    let capture_kib = std::fs::metadata(&pcap).unwrap().len() as f64 / 1024.0;
    let bound_kib =
        fixed_kib as f64 + per_flow_kib * held as f64 * 2.0 + capture_kib + 8.0 * 1024.0;
    assert!(
        (bounded_kib as f64) < bound_kib && bound_kib < unbounded_kib as f64,
        "peak RSS {bounded_kib} KiB with {held} flows held (bound {bound_kib:.0} KiB, all held {unbounded_kib} KiB)"
    );
    let all = read_books(&held_books);
    assert_eq!(all["flows"]["peak_active"], 300_000, "{}", all["flows"]);
    // And the books say why: evictions, counted; under the flood's pressure the one-packet
    // flows were rolled up into aggregates rather than exported one by one.
    let books = read_books(&stats);
    assert_balanced(&books);
    let fl = &books["flows"];
    let n = |k: &str| fl[k].as_u64().unwrap();
    assert_eq!(n("created"), 300_000);
    assert_eq!(n("exported") + n("rolled_up"), 300_000, "{fl}");
    assert!(n("peak_active") <= 2000, "{fl}");
    assert!(
        fl["by_end_reason"]["lackOfResources"].as_u64().unwrap() + n("rolled_up") >= 298_000,
        "{fl}"
    );
    assert!(n("aggregate_records") >= 1, "{fl}");
}

#[test]
fn a_read_only_pcap_directory_fails_at_start_or_costs_only_ring_packets() {
    if !require_root("a_read_only_pcap_directory_fails_at_start_or_costs_only_ring_packets") {
        return;
    }
    let tmp = TempDir::new("ring-ro");
    let disk = e2e::Tmpfs::mount(tmp.path().join("disk"), "4m").expect("mount a tmpfs as root");
    let ring = disk.0.join("ring");
    std::fs::create_dir(&ring).unwrap();
    let frames = e2e::craft::mixed_traffic(BASE);
    let pcap = tmp.path().join("mix.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &frames);

    // Read-only from the start: one line naming the directory.
    assert!(disk.set_read_only(true));
    let out = run_probe(&[
        "read",
        pcap.to_str().unwrap(),
        "--pcap-dir",
        ring.to_str().unwrap(),
        "--pcap-select",
        "all",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--pcap-dir") && err.contains("Read-only"),
        "{err}"
    );

    // Turning read-only mid-run: the flows stay exact, the ring books count what it lost.
    assert!(disk.set_read_only(false));
    let fifo = tmp.path().join("in.pcap");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let stats = tmp.path().join("books.json");
    let child = Command::new(e2e::probe_bin())
        .arg("read")
        .arg(&fifo)
        .args(["--pcap-dir", ring.to_str().unwrap(), "--pcap-select", "all"])
        .args([
            "--pcap-file-size",
            "4096",
            "--print",
            "json",
            "--stats-json",
        ])
        .arg(&stats)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = PcapWriter::create(&fifo, LINKTYPE_ETHERNET, false).unwrap();
    let half = frames.len() / 2;
    for f in &frames[..half] {
        w.write(f.ts_ns, &f.data).unwrap();
    }
    w.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(disk.set_read_only(true));
    for f in &frames[half..] {
        w.write(f.ts_ns, &f.data).unwrap();
    }
    w.finish().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        json_packets(&out.stdout),
        frames.len() as u64,
        "flows exact"
    );
    let books = read_books(&stats);
    let r = &books["pcap_ring"];
    assert_eq!(r["balanced"], true, "{r}");
    assert!(r["unwritten_disk"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["selected"], frames.len() as u64);
}

#[test]
fn sigterm_under_load_exports_every_active_flow_and_the_books_close() {
    if !require_root("sigterm_under_load_exports_every_active_flow_and_the_books_close") {
        return;
    }
    let lab = Lab::new(1);
    let tmp = TempDir::new("live-sigterm-load");
    // 40,000 frames in 4,000 flows, sent as fast as one core can while the signal comes.
    let frames: Vec<Vec<u8>> = (0..40_000u32)
        .map(|i| {
            ethernet(
                std::net::Ipv4Addr::from(0x0a01_0000 | (i % 4000)).into(),
                "10.2.0.1".parse().unwrap(),
                L4::Udp {
                    sport: 5000,
                    dport: 9000,
                },
                100,
                &[],
                64,
            )
        })
        .collect();
    let stats = tmp.path().join("books.json");
    let mut child = lab
        .probe_in_b()
        .args([
            "capture",
            "-i",
            &lab.veth_b,
            "--print",
            "json",
            "--stats-json",
        ])
        .arg(&stats)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Both pipes are drained while the probe runs (its JSON lines outgrow a pipe's buffer);
    // the sending starts only once the probe says it captures.
    let stdout = {
        let mut pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut pipe, &mut b).unwrap();
            b
        })
    };
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stderr_reader = {
        let pipe = child.stderr.take().unwrap();
        let acc = stderr.clone();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(pipe)).map_while(Result::ok)
            {
                let mut a = acc.lock().unwrap();
                a.push_str(&line);
                a.push('\n');
            }
        })
    };
    let t0 = std::time::Instant::now();
    while !stderr.lock().unwrap().contains("capturing on") {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the probe never said it captures:\n{}",
            stderr.lock().unwrap()
        );
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "probe exited ({st}) before capturing:\n{}",
                stderr.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::scope(|s| {
        let sender = s.spawn(|| lab.send(&frames, &[0, 1], usize::MAX));
        std::thread::sleep(Duration::from_millis(30));
        e2e::signal(child.id(), libc::SIGTERM);
        sender.join().unwrap();
    });
    let status = child.wait().unwrap();
    let stdout = stdout.join().unwrap();
    stderr_reader.join().unwrap();
    let err = stderr.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "{err}");
    let books = read_books(&stats);
    assert_balanced(&books);
    let live = &books["live"];
    // The signal came while frames flowed: some were seen and metered (a probe that captured
    // nothing would satisfy every equality below with zeros), none beyond what was sent.
    let seen = live["seen"].as_u64().unwrap();
    let metered = books["frames"]["metered"].as_u64().unwrap();
    assert!(seen > 0 && metered > 0, "nothing captured: {live}");
    assert!(seen <= frames.len() as u64, "{live}");
    assert!(
        books["flows"]["created"].as_u64().unwrap() > 0,
        "{}",
        books["flows"]
    );
    assert_eq!(live["unaccounted"], 0, "{live}");
    assert_eq!(live["balanced"], true, "{live}");
    let fl = &books["flows"];
    assert_eq!(
        fl["created"], fl["exported"],
        "every active flow exported: {fl}"
    );
    // What the workers metered is exactly what the records hold.
    assert_eq!(json_packets(&stdout), metered);
}
