//! Issue #29: a collector that goes away, a probe that is killed, a spool that fills up or
//! sits on a full disk, and a spool replayed by hand; checked against real collectors and
//! readers (a TCP collector's byte streams decoded by ipfixrw and tshark, nfcapd/nfdump,
//! tshark on the replayed file).

use e2e::capture::{write_pcap, LINKTYPE_ETHERNET};
use e2e::collector::{
    ipfixrw_decode, split_messages, tshark_decode, whole_messages, write_tcp_streams_pcap,
    TcpSessions,
};
use e2e::craft::udp_flows;
use e2e::tools::*;
use e2e::TempDir;
use std::collections::BTreeMap;
use std::time::Duration;

const BASE: u64 = 1_700_000_000_000_000_000;
const SEC: u64 = 1_000_000_000;
/// Flows per batch; batch k is sent at BASE + 10k s, so it expires batch k-1 (idle 2 s).
const N: u32 = 300;

/// The flow records of IPFIX messages, in order, as (source address, source port).
fn records(messages: &[Vec<u8>]) -> Vec<(String, String)> {
    ipfixrw_decode(messages)
        .into_iter()
        .filter(|r| r.contains_key("sourceIPv4Address"))
        .map(|r| {
            (
                r["sourceIPv4Address"].clone(),
                r["sourceTransportPort"].clone(),
            )
        })
        .collect()
}

/// The batch a record's source address names (10.9.K.x; ipfixrw writes `Ipv4Addr(10.9.K.x)`).
fn batch_of(addr: &str) -> u8 {
    let a = addr.trim_start_matches("Ipv4Addr(").trim_end_matches(')');
    let parts: Vec<&str> = a.split('.').collect();
    assert_eq!(&parts[..2], ["10", "9"], "{addr}");
    parts[2].parse().unwrap()
}

fn records_of_sessions(sessions: &[Vec<u8>]) -> Vec<(String, String)> {
    sessions
        .iter()
        .flat_map(|s| records(&split_messages(s)))
        .collect()
}

/// Template set IDs at the start of a session: every session begins with templates.
fn starts_with_templates(session: &[u8]) -> bool {
    let m = split_messages(session);
    !m.is_empty() && u16::from_be_bytes([m[0][16], m[0][17]]) == 2
}

fn batch(k: u8) -> Vec<e2e::capture::Frame> {
    udp_flows(N, k, BASE + k as u64 * 10 * SEC)
}

fn spool_info(dir: &std::path::Path) -> serde_json::Value {
    let out = run_probe_ok(&["spool", "info", "--spool", dir.to_str().unwrap(), "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Feeds batches 1..=10 (100 s of capture) to `probe read` exporting to a TCP collector;
/// `outage` runs between batches 3 and 10 (60 s of capture time) and may take the collector
/// away. Returns the sessions the collector saw, the books and stderr.
fn run_with_collector(
    tmp: &TempDir,
    url_options: &str,
    outage: bool,
) -> (Vec<Vec<u8>>, serde_json::Value, String) {
    let (c, addr) = TcpSessions::start("127.0.0.1:0");
    let stats = tmp.path().join("books.json");
    let url = format!("tcp://{addr}{url_options}");
    let mut probe = piped(tmp, &url, &stats, &[]);
    let got = |s: &[Vec<u8>]| -> usize {
        s.iter()
            .filter(|b| whole_messages(b))
            .map(|b| records(&split_messages(b)).len())
            .sum()
    };
    for k in 1..=3 {
        probe.send(&batch(k));
    }
    c.wait_for(Duration::from_secs(10), |s| got(s) == 2 * N as usize);
    let mut before = vec![];
    let c = if outage {
        // The collector goes away for batches 4..9: 60 s of the capture, and long enough on
        // the wall clock for reconnects to fail.
        before = c.stop();
        for k in 4..=9 {
            probe.send(&batch(k));
            std::thread::sleep(Duration::from_millis(400));
        }
        let (c, _) = TcpSessions::start(&addr.to_string());
        c
    } else {
        for k in 4..=9 {
            probe.send(&batch(k));
            std::thread::sleep(Duration::from_millis(400));
        }
        c
    };
    probe.send(&batch(10));
    let stderr = probe.finish();
    c.wait_for(Duration::from_secs(20), |s| {
        got(s)
            == 10 * N as usize
                - before
                    .iter()
                    .map(|b| records(&split_messages(b)).len())
                    .sum::<usize>()
    });
    before.extend(c.stop());
    (before, read_books(&stats), stderr)
}

#[test]
fn a_tcp_collector_away_for_60s_of_capture_gets_every_record_once_and_in_order() {
    // The reference: the same capture, the collector there all along.
    let tmp_ref = TempDir::new("spool-ref");
    let (ref_sessions, ref_books, _) = run_with_collector(&tmp_ref, "", false);
    let reference = records_of_sessions(&ref_sessions);
    assert_eq!(reference.len(), 10 * N as usize);
    assert_eq!(ref_books["export"]["collectors"][0]["sessions"], 1);

    let tmp = TempDir::new("spool-outage");
    let spool = tmp.path().join("spool");
    let opts = format!("?spool={}", spool.display());
    let (sessions, books, stderr) = run_with_collector(&tmp, &opts, true);
    let got = records_of_sessions(&sessions);
    // Exactly once, and in the order of the run without an outage.
    assert_eq!(got.len(), reference.len(), "{stderr}");
    assert_eq!(got, reference, "the same records in the same order");
    let mut seen = BTreeMap::new();
    for r in &got {
        *seen.entry(r).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "no record twice");
    assert!(sessions.len() >= 2, "{}", sessions.len());
    assert!(sessions.iter().all(|s| starts_with_templates(s)));

    let c = &books["export"]["collectors"][0];
    let sp = &c["spool"];
    assert_eq!(c["messages_lost"], 0, "{c}");
    assert_eq!(c["not_sent"]["flows"], 0, "{c}");
    assert_eq!(c["records_sent"], c["records"], "{c}");
    assert_eq!(
        sp["spooled"]["flows"], c["records"],
        "every record went through the spool: {sp}"
    );
    // Batches 3..8 expired while the collector was away (batch k expires when k+1 arrives).
    let replayed = sp["replayed"]["flows"].as_u64().unwrap();
    // (and what expired after it came back, until the probe's next reconnect attempt).
    assert!(replayed >= 5 * N as u64 && replayed <= 8 * N as u64, "{sp}");
    assert_eq!(sp["pending"]["flows"], 0, "{sp}");
    assert_eq!(sp["dropped"]["full"]["flows"], 0, "{sp}");
    assert!(
        stderr.contains("connection lost") || stderr.contains("cannot connect"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{replayed} replayed")), "{stderr}");

    // tshark reads every session cleanly.
    let p = tmp.path().join("tcp.pcap");
    write_tcp_streams_pcap(&sessions, &p);
    let verdict = tshark_decode(&p);
    assert!(verdict.problems.is_empty(), "{:?}", verdict.problems);
    assert_eq!(verdict.data_records, 10 * N as usize);
}

#[test]
fn a_probe_killed_with_sigkill_delivers_what_it_had_spooled_after_its_restart() {
    let tmp = TempDir::new("spool-kill");
    let spool = tmp.path().join("spool");
    let addr = free_tcp_addr();
    let url = format!("tcp://{addr}?spool={}&spool-sync=200ms", spool.display());
    let mut run1 = PipedProbe::start(&tmp, &["--ipfix", &url, "--idle-timeout", "2s"]);
    for k in 1..=5 {
        run1.send(&batch(k));
    }
    // Batches 1..4 expired and went to the spool; batch 5 is still in the flow cache.
    let dest = spool.join(format!("tcp_127.0.0.1_{}", addr.port()));
    wait_for_pending(&dest, 4 * N as u64);
    let stderr1 = run1.kill9();
    assert!(!stderr1.contains("panicked"), "{stderr1}");

    // Run 2 on the same spool, the collector there.
    let (c, _) = TcpSessions::start(&addr.to_string());
    let tmp2 = TempDir::new("spool-kill-2");
    let stats = tmp2.path().join("books.json");
    let mut run2 = piped(&tmp2, &url, &stats, &[]);
    run2.send(&batch(6));
    let stderr2 = run2.finish();
    c.wait_for(Duration::from_secs(20), |s| {
        s.len() == 2
            && s.iter().all(|b| whole_messages(b))
            && records(&split_messages(&s[1])).len() == N as usize
    });
    let sessions = c.stop();
    // Session 1: run 1's spooled records, with run 1's templates; session 2: run 2's own.
    let first = records(&split_messages(&sessions[0]));
    let second = records(&split_messages(&sessions[1]));
    assert_eq!(first.len(), 4 * N as usize, "{stderr2}");
    assert_eq!(second.len(), N as usize);
    assert!(sessions.iter().all(|s| starts_with_templates(s)));
    for (i, k) in (1..=4u8).enumerate() {
        let slice = &first[i * N as usize..(i + 1) * N as usize];
        assert!(
            slice.iter().all(|(a, _)| batch_of(a) == k),
            "batch {k} in order"
        );
    }
    // tshark reads both sessions cleanly: run 1's with its own templates and sequence.
    let p = tmp2.path().join("sessions.pcap");
    write_tcp_streams_pcap(&sessions, &p);
    let verdict = tshark_decode(&p);
    assert!(verdict.problems.is_empty(), "{:?}", verdict.problems);
    assert_eq!(verdict.data_records, 5 * N as usize);
    let books = read_books(&stats);
    let sp = &books["export"]["collectors"][0]["spool"];
    assert_eq!(sp["from_earlier_runs"]["flows"], 4 * N as u64, "{sp}");
    assert_eq!(sp["replayed"]["flows"], 4 * N as u64, "{sp}");
    assert_eq!(sp["pending"]["flows"], 0, "{sp}");
    assert!(stderr2.contains("from earlier runs"), "{stderr2}");
    // The books of both runs: 6 batches captured = 4 delivered from run 1's spool + 1 of run 2
    // + batch 5, which was still in run 1's flow cache when it was killed (a cache is memory;
    // the spool holds what left it).
    assert_eq!(books["export"]["records"], N as u64);
}

#[test]
fn a_probe_killed_while_delivering_sends_nothing_twice_that_was_acknowledged_before_its_last_sync()
{
    let tmp = TempDir::new("spool-kill-acked");
    let (c, addr) = TcpSessions::start("127.0.0.1:0");
    let spool = tmp.path().join("spool");
    let url = format!("tcp://{addr}?spool={}&spool-sync=100ms", spool.display());
    let stats = tmp.path().join("books.json");
    let mut run1 = piped(&tmp, &url, &stats, &[]);
    for k in 1..=5 {
        run1.send(&batch(k));
    }
    let delivered = |s: &[Vec<u8>]| {
        records_of_sessions(
            &s.iter()
                .filter(|b| whole_messages(b))
                .cloned()
                .collect::<Vec<_>>(),
        )
        .len()
    };
    c.wait_for(Duration::from_secs(10), |s| delivered(s) == 4 * N as usize);
    // Past a sync: the spool's acknowledged position on disk covers batches 1-4 (batch 5 is
    // still in the flow cache), as `probe spool info` reads it.
    wait_for_pending(&spool.join(format!("tcp_127.0.0.1_{}", addr.port())), 0);
    run1.kill9();
    let tmp2 = TempDir::new("spool-kill-acked-2");
    let stats2 = tmp2.path().join("books.json");
    let mut run2 = piped(&tmp2, &url, &stats2, &[]);
    run2.send(&batch(6));
    run2.finish();
    c.wait_for(Duration::from_secs(10), |s| delivered(s) == 5 * N as usize);
    std::thread::sleep(Duration::from_millis(300));
    let got = records_of_sessions(&c.stop());
    let mut seen = BTreeMap::new();
    for r in &got {
        *seen.entry(r.clone()).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "nothing delivered twice");
    assert_eq!(
        got.len(),
        5 * N as usize,
        "batches 1-4 and 6 (5 died in the cache)"
    );
    let books = read_books(&stats2);
    let sp = &books["export"]["collectors"][0]["spool"];
    assert_eq!(sp["from_earlier_runs"]["messages"], 0, "{sp}");
}

#[test]
fn a_sigterm_leaves_what_the_collector_did_not_take_in_the_spool_for_the_next_run() {
    let tmp = TempDir::new("spool-term");
    let spool = tmp.path().join("spool");
    let addr = free_tcp_addr();
    let url = format!("tcp://{addr}?spool={}", spool.display());
    let stats = tmp.path().join("books.json");
    let mut run1 = piped(&tmp, &url, &stats, &["--export-drain", "1s"]);
    for k in 1..=3 {
        run1.send(&batch(k));
    }
    let dest = spool.join(format!("tcp_127.0.0.1_{}", addr.port()));
    wait_for_pending(&dest, 2 * N as u64);
    // SIGTERM: batch 3, still active, is exported (forcedEnd); nobody takes it within the
    // drain time, so it stays in the spool with batches 1 and 2: kept, not lost.
    let (ok, stderr1) = run1.terminate();
    assert!(!stderr1.contains("panicked"), "{stderr1}");
    assert!(ok || stderr1.contains("interrupted"), "{stderr1}");
    let books = read_books(&stats);
    let c = &books["export"]["collectors"][0];
    assert_eq!(c["records"], 3 * N as u64, "{c}");
    assert_eq!(c["spool"]["pending"]["flows"], 3 * N as u64, "{c}");
    assert_eq!(c["messages_lost"], 0, "{c}");
    assert_eq!(c["not_sent"]["flows"], 0, "{c}");
    assert!(stderr1.contains("left in it"), "{stderr1}");

    // The next run delivers them first, in a session of their own.
    let (c, _) = TcpSessions::start(&addr.to_string());
    let tmp2 = TempDir::new("spool-term-2");
    let run2 = PipedProbe::start(&tmp2, &["--ipfix", &url]);
    let stderr2 = run2.finish();
    c.wait_for(Duration::from_secs(20), |s| {
        !s.is_empty()
            && whole_messages(&s[0])
            && records(&split_messages(&s[0])).len() == 3 * N as usize
    });
    let sessions = c.stop();
    let first = records(&split_messages(&sessions[0]));
    let batches: Vec<u8> = first.iter().map(|(a, _)| batch_of(a)).collect();
    assert!(batches.windows(2).all(|w| w[0] <= w[1]), "in order");
    assert_eq!(
        batches.iter().filter(|&&b| b == 3).count(),
        N as usize,
        "{stderr2}"
    );
}

/// `probe read` from a pipe, exporting to `url` with a 2 s idle timeout, its books to `stats`.
fn piped(tmp: &TempDir, url: &str, stats: &std::path::Path, extra: &[&str]) -> PipedProbe {
    let mut args = vec![
        "--ipfix",
        url,
        "--idle-timeout",
        "2s",
        "--stats-json",
        stats.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    PipedProbe::start(tmp, &args)
}

/// A local TCP address nobody listens on (yet).
fn free_tcp_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Waits until a destination's spool holds `flows` unacknowledged records.
fn wait_for_pending(dest: &std::path::Path, flows: u64) {
    let t = std::time::Instant::now();
    while !(dest.exists() && spool_info(dest)["pending_flows"] == flows) {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the spool did not reach {flows} pending records"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_full_spool_drops_by_its_policy_and_counts_each_record() {
    let tmp = TempDir::new("spool-full");
    let pcap = tmp.path().join("in.pcap");
    let mut frames = vec![];
    for k in 1..=40u8 {
        frames.extend(udp_flows(1000, k, BASE + k as u64 * SEC));
    }
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &frames);
    let addr = free_tcp_addr();
    for policy in ["drop-oldest", "drop-newest"] {
        let spool = tmp.path().join(policy);
        let stats = tmp.path().join(format!("{policy}.json"));
        run_probe_ok(&[
            "read",
            pcap.to_str().unwrap(),
            "--ipfix",
            &format!(
                "tcp://{addr}?spool={}&spool-size=1MiB&spool-policy={policy}",
                spool.display()
            ),
            "--export-drain",
            "0s",
            "--stats-json",
            stats.to_str().unwrap(),
        ]);
        let books = read_books(&stats);
        let c = &books["export"]["collectors"][0];
        let sp = &c["spool"];
        let exported = c["records"].as_u64().unwrap();
        assert_eq!(exported, 40_000);
        let kept = sp["pending"]["flows"].as_u64().unwrap();
        let dropped = sp["dropped"]["full"]["flows"].as_u64().unwrap();
        assert!(dropped > 0 && kept > 0, "{policy}: {sp}");
        assert_eq!(
            kept + dropped,
            exported,
            "{policy}: every record kept or counted: {sp}"
        );
        assert_eq!(
            c["not_sent"]["flows"].as_u64().unwrap(),
            dropped,
            "{policy}: {c}"
        );
        assert!(sp["peak_bytes"].as_u64().unwrap() <= 1 << 20, "{sp}");
        // What it kept is what `probe spool replay` writes; tshark reads it whole.
        let dir = spool.join(format!("tcp_127.0.0.1_{}", addr.port()));
        let info = spool_info(&dir);
        assert_eq!(info["pending_flows"], kept, "{info}");
        let out = tmp.path().join(format!("{policy}.ipfix"));
        spool_replay_to_file(&spool, &out, &[]);
        let msgs = split_messages(&std::fs::read(&out).unwrap());
        let got = records(&msgs);
        assert_eq!(got.len() as u64, kept);
        let verdict = tshark_decode(&out);
        // What the policy dropped is a gap in the sequence numbers, which tshark points out
        // (once: the drops are one run of messages); nothing else may be wrong.
        let (gaps, other): (Vec<_>, Vec<_>) = verdict
            .problems
            .iter()
            .partition(|p| p.contains("Unexpected flow sequence"));
        assert!(
            other.is_empty() && gaps.len() <= 1,
            "{:?}",
            verdict.problems
        );
        assert_eq!(verdict.data_records as u64, kept);
        // Oldest-first keeps the end of the capture, newest-first its start.
        let (first, last) = (batch_of(&got[0].0), batch_of(&got[got.len() - 1].0));
        match policy {
            "drop-oldest" => assert!(last == 40 && first > 1, "{first} {last}"),
            _ => assert!(first == 1 && last < 40, "{first} {last}"),
        }
    }
}

#[test]
fn a_spool_on_a_full_disk_costs_no_record_while_the_collector_is_there() {
    if !e2e::lab::require_root(
        "a_spool_on_a_full_disk_costs_no_record_while_the_collector_is_there",
    ) {
        return;
    }
    let tmp = TempDir::new("spool-disk");
    let Some(disk) = e2e::Tmpfs::mount(tmp.path().join("small"), "256k") else {
        panic!("cannot mount a tmpfs as root");
    };
    let pcap = tmp.path().join("in.pcap");
    let mut frames = vec![];
    for k in 1..=20u8 {
        frames.extend(udp_flows(1000, k, BASE + k as u64 * SEC));
    }
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &frames);
    // The spool's limit is far above what the filesystem has; the books are returned.
    let read = |addr: std::net::SocketAddr, extra: &[&str]| {
        let _ = std::fs::remove_dir_all(disk.0.join("spool"));
        let stats = tmp.path().join("books.json");
        let url = format!(
            "tcp://{addr}?spool={}/spool&spool-size=64MiB",
            disk.0.display()
        );
        let mut args = vec![
            "read",
            pcap.to_str().unwrap(),
            "--ipfix",
            &url,
            "--stats-json",
            stats.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = run_probe_ok(&args);
        (
            read_books(&stats),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (c, addr) = TcpSessions::start("127.0.0.1:0");
    let (books, stderr) = read(addr, &[]);
    c.wait_for(Duration::from_secs(20), |s| {
        s.iter()
            .filter(|b| whole_messages(b))
            .map(|b| records(&split_messages(b)).len())
            .sum::<usize>()
            == 20_000
    });
    let sessions = c.stop();
    assert_eq!(records_of_sessions(&sessions).len(), 20_000);
    assert_eq!(books["frames"]["metered"], 20_000);
    let col = &books["export"]["collectors"][0];
    let sp = &col["spool"];
    assert!(sp["disk_errors"].as_u64().unwrap() > 0, "{sp}");
    assert_eq!(col["not_sent"]["flows"], 0, "{col}");
    assert_eq!(sp["dropped"]["disk"]["flows"], 0, "{sp}");
    assert_eq!(
        stderr.matches("until the disk recovers").count(),
        1,
        "one line per episode: {stderr}"
    );
    // And with the collector away too: the disk fills, the rest waits in memory, and at the end
    // (no drain time) what the disk cannot take is lost, counted; the capture is untouched.
    let (books, _) = read(free_tcp_addr(), &["--export-drain", "0s"]);
    assert_eq!(books["frames"]["metered"], 20_000);
    let col = &books["export"]["collectors"][0];
    let sp = &col["spool"];
    let kept = sp["pending"]["flows"].as_u64().unwrap();
    let lost = col["not_sent"]["flows"].as_u64().unwrap();
    assert!(sp["dropped"]["disk"]["flows"].as_u64().unwrap() > 0, "{sp}");
    assert_eq!(kept + lost, 20_000, "every record kept or counted: {col}");
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_udp_collectors_spool_replays_a_time_window_into_a_file_and_into_nfcapd() {
    // A live-like run: batch k goes in at wall time t[k], 4 s apart, and expires batch k-1,
    // whose records leave within a second or two. The window is of export times (the wall
    // clock, as a collector saw the messages arrive): batches 3 and 4 left in [t4, t6).
    let tmp = TempDir::new("spool-udp");
    let live = Nfcapd::start(&tmp.path().join("live"));
    let spool = tmp.path().join("spool");
    let stats = tmp.path().join("books.json");
    let url = format!("{}?spool={}", live.url(), spool.display());
    let mut probe = piped(&tmp, &url, &stats, &[]);
    let mut t = vec![0.0; 8];
    for k in 1..=7u8 {
        t[k as usize] = unix_now();
        probe.send(&udp_flows(200, k, BASE + k as u64 * 10 * SEC));
        std::thread::sleep(Duration::from_secs(4));
    }
    probe.finish();
    let live_records = live.finish();
    assert_eq!(live_records.len(), 1400);
    let books = read_books(&stats);
    let sp = &books["export"]["collectors"][0]["spool"];
    assert_eq!(sp["spooled"]["flows"], 1400, "{sp}");
    let info = spool_info(&spool);
    assert_eq!(info["flows"], 1400, "{info}");

    let (from, to) = (t[4].floor() as u64, t[6].floor() as u64 - 1);
    let out = tmp.path().join("window.ipfix");
    let replay = |to_args: &[&str]| {
        let mut args = vec![
            "spool".to_string(),
            "replay".into(),
            "--spool".into(),
            spool.to_str().unwrap().into(),
            "--from".into(),
            from.to_string(),
            "--to".into(),
            to.to_string(),
        ];
        args.extend(to_args.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
        run_probe_ok(&args)
    };
    replay(&["-w", out.to_str().unwrap()]);
    let got = records(&split_messages(&std::fs::read(&out).unwrap()));
    let mut by_batch = BTreeMap::new();
    for (a, _) in &got {
        *by_batch.entry(batch_of(a)).or_insert(0) += 1;
    }
    assert_eq!(
        by_batch,
        BTreeMap::from([(3, 200), (4, 200)]),
        "{from}..{to} {t:?}"
    );
    let verdict = tshark_decode(&out);
    assert!(verdict.problems.is_empty(), "{:?}", verdict.problems);
    assert_eq!(verdict.data_records, 400);

    // The same window sent to another nfcapd: nfdump reads the records the live one got.
    let again = Nfcapd::start(&tmp.path().join("again"));
    replay(&["--ipfix", &again.url()]);
    let replayed = again.finish();
    assert_eq!(replayed.len(), 400);
    let key = |r: &serde_json::Value| {
        (
            r["src4_addr"].to_string(),
            r["src_port"].to_string(),
            r["in_packets"].to_string(),
            r["in_bytes"].to_string(),
            r["first"].to_string(),
            r["last"].to_string(),
        )
    };
    let mut a: Vec<_> = live_records
        .iter()
        .filter(|r| {
            let b = batch_of(r["src4_addr"].as_str().unwrap());
            b == 3 || b == 4
        })
        .map(key)
        .collect();
    let mut b: Vec<_> = replayed.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a.len(), 400);
    assert_eq!(
        a, b,
        "nfdump reads the replayed window as the live collector got it"
    );
}

#[test]
fn spool_options_are_checked_and_errors_name_the_fix() {
    let out = run_probe(&[
        "read",
        "/dev/null",
        "--ipfix",
        "tcp://127.0.0.1:4739?spool=relative",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("absolute directory"), "{err}");
    let out = run_probe(&["spool", "info", "--spool", "/nonexistent/spool"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("--spool /nonexistent/spool"), "{err}");
}
