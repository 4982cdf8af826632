//! The fan-out (issue #14) on capture files: `probe read --workers N` decodes on the reading
//! thread and meters on N workers chosen by a symmetric flow hash; its records must be the ones
//! `--workers 1` exports, record for record (order aside), through idle and active timeouts,
//! TCP ends, biflows, tunnels, fragments and timestamps that go back (file boundaries).

use e2e::capture::{write_pcap, Frame, LINKTYPE_ETHERNET};
use e2e::tools::{assert_balanced, read_books, run_probe};
use e2e::TempDir;
use std::path::{Path, PathBuf};

/// Every capture of the shared corpus (sorted by name), or none on a machine without it.
fn corpus() -> Vec<PathBuf> {
    let Some(root) = e2e::shared_pcaps_or_skip("the fan-out corpus test") else {
        return vec![];
    };
    let mut files = vec![];
    for dir in ["tcpdump", "zeek"] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            for e in rd.flatten() {
                let p = e.path();
                let name = p.to_string_lossy();
                if name.ends_with(".pcap") || name.ends_with(".pcapng") {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    files
}

/// A crafted capture whose times jitter back and forth by up to 300 ms: the mixed traffic
/// (TCP sessions with FIN/RST, DNS, ICMP, VLANs, IPv6) repeated at intervals that let idle
/// timeouts fire between repeats, plus 3,000 one-packet UDP flows.
fn jittered(path: &Path) {
    let s = 1_000_000_000u64;
    let mut frames: Vec<Frame> = vec![];
    for round in 0..6u64 {
        frames.extend(e2e::craft::mixed_traffic(1_700_000_000 * s + round * 4 * s));
    }
    frames.extend(e2e::craft::udp_flows(3000, 7, 1_700_000_000 * s + 2 * s));
    frames.sort_by_key(|f| f.ts_ns);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for f in frames.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if state.is_multiple_of(10) {
            f.ts_ns -= state % 300_000_000;
        }
    }
    write_pcap(path, LINKTYPE_ETHERNET, true, &frames);
}

/// `probe read` with `--workers N` and `args`: the JSON lines, sorted, and the books.
fn read_with(
    files: &[PathBuf],
    workers: usize,
    args: &[&str],
    tmp: &TempDir,
) -> (Vec<String>, serde_json::Value) {
    let stats = tmp.path().join(format!("books-{workers}.json"));
    let n = workers.to_string();
    let mut argv: Vec<&str> = vec!["read", "--print", "json", "--workers", &n, "--stats-json"];
    let stats_s = stats.to_string_lossy().to_string();
    argv.push(&stats_s);
    argv.extend_from_slice(args);
    let names: Vec<String> = files.iter().map(|f| f.to_string_lossy().into()).collect();
    argv.extend(names.iter().map(|s| s.as_str()));
    let out = run_probe(&argv);
    assert!(
        out.status.success() || out.status.code() == Some(2),
        "probe read --workers {workers}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    (lines, read_books(&stats))
}

fn assert_same_records(files: &[PathBuf], args: &[&str], what: &str) {
    let tmp = TempDir::new("fanout-read");
    let (one, books_one) = read_with(files, 1, args, &tmp);
    assert!(one.len() > 100, "{what}: only {} records", one.len());
    assert_eq!(books_one["pipeline"]["mode"], "one-hop");
    for workers in [2, 3] {
        let (many, books) = read_with(files, workers, args, &tmp);
        assert_eq!(books["pipeline"]["mode"], "fan-out", "{what}");
        assert_balanced(&books);
        assert_eq!(books["frames"], books_one["frames"], "{what}: frame books");
        let per_worker = books["pipeline"]["workers"].as_array().unwrap();
        assert_eq!(per_worker.len(), workers);
        let summaries: u64 = per_worker
            .iter()
            .map(|w| w["summaries"].as_u64().unwrap())
            .sum();
        assert_eq!(
            summaries,
            books["frames"]["metered"].as_u64().unwrap(),
            "{what}: every metered frame reached a worker"
        );
        assert!(
            per_worker
                .iter()
                .all(|w| w["summaries"].as_u64().unwrap() > 0),
            "{what}: every worker had flows: {per_worker:?}"
        );
        // The same flow books, but for the peak: the workers' peaks add up to an upper bound
        // of the joint one, and which flows share a worker depends on the run's random hash
        // key (#28), so the bound can be a few flows above the one-thread peak.
        let without_peak = |b: &serde_json::Value| {
            let mut f = b["flows"].clone();
            f.as_object_mut().unwrap().remove("peak_active");
            f
        };
        assert_eq!(
            without_peak(&books),
            without_peak(&books_one),
            "{what}: flow books"
        );
        assert!(
            books["flows"]["peak_active"].as_u64() >= books_one["flows"]["peak_active"].as_u64(),
            "{what}: the workers' peaks bound the joint one"
        );
        assert_eq!(
            many.len(),
            one.len(),
            "{what}: --workers {workers} record count"
        );
        for (i, (a, b)) in one.iter().zip(&many).enumerate() {
            assert_eq!(
                a, b,
                "{what}: --workers {workers}, record {i} of the sorted lines"
            );
        }
    }
}

#[test]
fn n_workers_export_the_records_of_one_on_a_jittered_capture() {
    let tmp = TempDir::new("fanout-jitter");
    let pcap = tmp.path().join("jitter.pcap");
    jittered(&pcap);
    let files = [pcap];
    let timeouts = [
        "--idle-timeout",
        "1s",
        "--active-timeout",
        "3s",
        "--tcp-end-grace",
        "300ms",
    ];
    assert_same_records(&files, &timeouts, "jittered uniflows");
    let mut bi = timeouts.to_vec();
    bi.push("--biflow");
    assert_same_records(&files, &bi, "jittered biflows");
}

#[test]
fn n_workers_export_the_records_of_one_on_the_whole_shared_corpus() {
    let files = corpus();
    if files.is_empty() {
        eprintln!("SKIP: no shared captures on this machine");
        return;
    }
    // Every capture as one continuous input: time jumps back at each file boundary, and the
    // corpus brings tunnels, fragments, VLANs, IPv6 and link types the probe does not meter.
    let args = [
        "--biflow",
        "--idle-timeout",
        "2s",
        "--active-timeout",
        "10s",
        "--tcp-end-grace",
        "500ms",
    ];
    assert_same_records(&files, &args, "shared corpus, biflows");
}
