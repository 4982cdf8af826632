//! `cargo xtask bench --flood-only` (and part of the full run): issue #28's flood, offline.
//!
//! The capture: 2,000,000 SYNs from random sources at 200,000 a second of capture time against
//! one server, beside 1,000 conversations that send one segment each way every second, for
//! 10 s (`e2e::craft::syn_flood_with_conversations`). Each tool meters it with a cache of a
//! tenth of the flood's flows (the probe's `--max-flows 100000`, softflowd's `-m 100000`;
//! nfpcapd has no such bound): CPU, peak RSS, records, and how many of the 2,000 conversation
//! directions came out whole (one record, packets and bytes equal to tshark's). The probe also
//! reads as many packets of the conversations without the flood, for its CPU per packet
//! without it, and sends the flood's records to a TCP sink (socat), for records per second
//! over a stream.
//!
//! Live (as root): trafgen floods the veth lab from one core at its highest rate, once with the
//! live benchmark's 10,100 UDP flows and once with TCP SYNs from random sources (a new flow per
//! frame); `probe capture` with default settings meters each on the other core and exports to
//! nfcapd. The table compares loss, handoff drops, records and resident memory (sampled every
//! half second of the flood) between the two.

use super::{measure, median_of_runs, nfpcapd_read, probe_read, Measured, RUNS};
use anyhow::{bail, Context, Result};
use e2e::capture::{write_pcap, LINKTYPE_ETHERNET};
use e2e::tools::{nfdump_flows, nfdump_records, tshark_flows, Flows, Nfcapd};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BASE_NS: u64 = 1_700_000_000_000_000_000;

/// Conversation directions that came out in one record with tshark's packets and bytes.
fn whole(truth: &Flows, got: &Flows) -> usize {
    truth
        .iter()
        .filter(|(k, t)| {
            got.get(k)
                .is_some_and(|g| g.records == 1 && (g.packets, g.bytes) == (t.packets, t.bytes))
        })
        .count()
}

pub fn run(probe: &Path, tmp: &Path) -> Result<()> {
    let (all, talk) =
        e2e::craft::syn_flood_with_conversations(BASE_NS, 1000, 10, 200_000, 1_000_000_000);
    let packets = all.len() as u64;
    let flood = tmp.join("flood.pcap");
    let talk_pcap = tmp.join("talk.pcap");
    write_pcap(&flood, LINKTYPE_ETHERNET, true, &all);
    write_pcap(&talk_pcap, LINKTYPE_ETHERNET, true, &talk);
    drop(all);
    let truth = tshark_flows(&talk_pcap);
    if truth.len() != 2000 {
        bail!(
            "the conversations capture holds {} flows, not 2,000",
            truth.len()
        );
    }
    eprintln!(
        "flood capture: {packets} packets, of which {} conversation packets",
        talk.len()
    );

    // `probe read --max-flows 100000 EXTRA` of `pcap` into nfcapd, median of the runs.
    let probe_row = |name, pcap: &Path, extra: &'static [&'static str]| {
        median_of_runs(name, tmp, |dir| {
            let nf = Nfcapd::start(dir);
            let mut cmd = probe_read(probe, pcap, &nf.url());
            cmd.args(["--max-flows", "100000"]).args(extra);
            let m = measure(&mut cmd)?;
            Ok((m, nfdump_flows(&nf.finish())))
        })
    };
    let mut rows: Vec<(&str, Measured, Vec<Flows>)> = vec![];
    rows.push(probe_row(
        "probe read --max-flows 100000 → nfcapd (UDP)",
        &flood,
        &[],
    )?);
    rows.push(probe_row(
        "probe read --max-flows 100000 --no-aggregate → nfcapd (UDP)",
        &flood,
        &["--no-aggregate"],
    )?);
    rows.push(median_of_runs("nfpcapd -r", tmp, |dir| {
        let m = measure(&mut nfpcapd_read(&flood, dir))?;
        Ok((m, nfdump_flows(&nfdump_records(dir))))
    })?);
    rows.push(median_of_runs(
        "softflowd -r -m 100000 → nfcapd",
        tmp,
        |dir| {
            let nf = Nfcapd::start(dir);
            let dest = format!("127.0.0.1:{}", nf.port);
            let m = measure(Command::new("softflowd").arg("-r").arg(&flood).args([
                "-n", &dest, "-v", "10", "-6", "-A", "milli", "-d", "-m", "100000",
            ]))?;
            Ok((m, nfdump_flows(&nf.finish())))
        },
    )?);

    println!("\n| the flood capture ({packets} packets), median CPU of {RUNS} runs | wall s | CPU s | CPU ns per packet | peak RSS MB | records | records/s (wall) | conversation directions whole (worst run) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, m, flows) in &rows {
        let cpu = m.user + m.sys;
        let records: u64 = flows[0].values().map(|t| t.records).sum();
        let worst = flows.iter().map(|f| whole(&truth, f)).min().unwrap_or(0);
        println!(
            "| {name} | {:.2} | {:.2} | {:.0} | {:.1} | {records} | {:.0} | {worst} / 2000 |",
            m.wall.as_secs_f64(),
            cpu,
            cpu * 1e9 / packets as f64,
            m.max_rss_kb as f64 / 1024.0,
            records as f64 / m.wall.as_secs_f64(),
        );
    }

    // Without the flood: as many packets, all of the 1,000 conversations (1,010 rounds).
    let (calm, _) = e2e::craft::syn_flood_with_conversations(BASE_NS, 1000, 1010, 0, 10_000_000);
    let calm_pcap = tmp.join("calm.pcap");
    write_pcap(&calm_pcap, LINKTYPE_ETHERNET, true, &calm);
    let calm_packets = calm.len() as u64;
    drop(calm);
    let (_, m, _) = probe_row(
        "probe read, the conversations without the flood",
        &calm_pcap,
        &[],
    )?;
    let flood_cpu = rows[0].1.user + rows[0].1.sys;
    let calm_cpu = m.user + m.sys;
    println!(
        "probe without the flood ({calm_packets} packets in 2,000 flows): {:.0} CPU ns per packet; with it: {:.0} ({:.1}x)",
        calm_cpu * 1e9 / calm_packets as f64,
        flood_cpu * 1e9 / packets as f64,
        (flood_cpu / packets as f64) / (calm_cpu / calm_packets as f64)
    );
    std::fs::remove_file(&calm_pcap)?;

    // The flood's records over a stream: a socat sink on loopback.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut sink = Command::new("socat")
        .args([
            "-u",
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"),
            "OPEN:/dev/null",
        ])
        .spawn()
        .context("socat (cargo xtask deps installs it)")?;
    std::thread::sleep(Duration::from_millis(300));
    let books = tmp.join("flood-tcp-books.json");
    // Without the roll-up, so that every flood flow is a record to send.
    let mut cmd = probe_read(probe, &flood, &format!("tcp://127.0.0.1:{port}"));
    cmd.args(["--max-flows", "100000", "--no-aggregate", "--stats-json"])
        .arg(&books);
    let m = measure(&mut cmd)?;
    let _ = sink.kill();
    let _ = sink.wait();
    let b: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&books)?)?;
    let sent = b["export"]["collectors"][0]["records_sent"]
        .as_u64()
        .unwrap_or(0);
    println!(
        "probe read → tcp:// sink: {sent} records in {:.2} s wall, {:.0} records/s",
        m.wall.as_secs_f64(),
        sent as f64 / m.wall.as_secs_f64()
    );
    std::fs::remove_file(&flood)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        live(probe, tmp, 8)?;
    } else {
        eprintln!("not root: the live flood is skipped");
    }
    Ok(())
}

/// trafgen's random-source SYN flood: 54-byte frames (IPv4, TCP without options) from random
/// addresses and ports to 10.9.0.1:80, so every frame is a new flow.
const SYN_FLOOD_CONF: &str = "{
  0x02, 0x00, 0x00, 0x00, 0x00, 0x0b,
  0x02, 0x00, 0x00, 0x00, 0x00, 0x0a,
  0x08, 0x00,
  0x45, 0x00, c16(40), c16(0), 0x40, 0x00, 64, 6, csumip(14, 33),
  drnd(4),
  10, 9, 0, 1,
  drnd(2), c16(80),
  drnd(4), c32(0),
  0x50, 0x02, c16(64240), csumtcp(14, 34), c16(0),
}
";

/// The live flood: see the module doc.
fn live(probe: &Path, tmp: &Path, seconds: u64) -> Result<()> {
    let lab = e2e::lab::Lab::new(1);
    println!("\n| live, {seconds} s from trafgen at its top rate, probe capture with default settings → nfcapd | offered pkt/s | metered (books) | loss % | handoff drops | records at nfcapd | packets at nfcapd | flows rolled up | RSS after 1 s → end MB | peak RSS MB | CPU s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, conf) in [
        ("10,100 UDP flows (no flood)", super::live::trafgen_conf()),
        ("random-source SYN flood", SYN_FLOOD_CONF),
    ] {
        let dir = tmp.join(format!("live-flood-{}", name.len()));
        std::fs::create_dir_all(&dir)?;
        let conf_path = dir.join("trafgen.cfg");
        std::fs::write(&conf_path, conf)?;
        let nf = Nfcapd::start_in(&dir, Some(&lab.ns_b));
        let stats = dir.join("books.json");
        let mut cmd = super::live::in_lab_on_cpu1(&lab, probe);
        cmd.args(["capture", "--interface", &lab.veth_b, "--cpus", "1"])
            .args(["--ipfix", &nf.url(), "--stats-json"])
            .arg(&stats);
        let (offered, m, rss) = super::live::run_tool_sampled(
            &lab,
            &conf_path,
            seconds,
            &mut cmd,
            super::live::Stop::Signal(libc::SIGINT),
        )?;
        let records = nf.finish();
        let at_collector: u64 = nfdump_flows(&records).values().map(|t| t.packets).sum();
        let b: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        let metered = n(&b["frames"]["metered"]);
        let rss_mb = |kb: Option<&i64>| kb.copied().unwrap_or(0) as f64 / 1024.0;
        println!(
            "| {name} | {:.0} | {metered} | {:.2} | {} | {} | {at_collector} | {} | {:.1} → {:.1} | {:.1} | {:.2} |",
            offered as f64 / seconds as f64,
            100.0 * offered.saturating_sub(metered) as f64 / offered.max(1) as f64,
            n(&b["frames"]["handoff_dropped"]),
            records.len(),
            n(&b["flows"]["rolled_up"]),
            rss_mb(rss.get(2)),
            rss_mb(rss.last()),
            m.max_rss_kb as f64 / 1024.0,
            m.user + m.sys,
        );
        eprintln!(
            "{name}: books {} / {}; RSS samples (KiB, every 0.5 s): {rss:?}",
            b["flows"], b["export"]["collectors"]
        );
    }
    Ok(())
}
