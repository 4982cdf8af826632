//! `cargo xtask bench --fanout-only` (issue #14): what the fan-out costs and buys, whole
//! process.
//!
//! - Files: `probe read` of the 2M-packet benchmark capture with `--workers 1` (one hop: the
//!   reader meters), 2 and 3 (the reader decodes, N workers meter), three alternating runs,
//!   writing an IPFIX file; wall and CPU seconds, and the records, which must be equal.
//! - Live: a one-queue veth flooded by trafgen from CPU 0 at the lab's highest rate; the probe
//!   on CPU 1 (taskset) with `--workers 1` (one hop) and `--workers 2` (one RX thread, two
//!   metering workers, all on CPU 1), then `--workers 2` on both CPUs; loss and CPU seconds
//!   per million packets, from the probe's own books.

use super::live::{run_tool, trafgen_conf, Stop};
use super::{measure, probe_read, Measured, RUNS};
use anyhow::{bail, Result};
use e2e::lab::Lab;
use std::path::Path;
use std::process::Command;

pub fn run(probe: &Path, tmp: &Path, packets: u64, flows: u32, live_seconds: u64) -> Result<()> {
    offline(probe, tmp, packets, flows)?;
    if live_seconds == 0 {
        return Ok(());
    }
    live(probe, tmp, live_seconds)
}

fn offline(probe: &Path, tmp: &Path, packets: u64, flows: u32) -> Result<()> {
    let pcap = tmp.join("fanout.pcap");
    super::generate(&pcap, packets, flows)?;
    let workers = [1usize, 2, 3];
    let mut runs: Vec<Vec<(Measured, u64)>> = workers.iter().map(|_| vec![]).collect();
    for i in 0..RUNS {
        for (n, w) in workers.iter().enumerate() {
            let out = tmp.join(format!("fanout-{i}-{w}.ipfix"));
            let stats = tmp.join(format!("fanout-{i}-{w}.json"));
            let mut cmd = probe_read(probe, &pcap, &format!("file://{}", out.display()));
            cmd.args(["--workers", &w.to_string(), "--stats-json"])
                .arg(&stats);
            let m = measure(&mut cmd)?;
            let books: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
            let records = books["flows"]["records"].as_u64().unwrap_or(0);
            eprintln!(
                "probe read --workers {w}, run {}: {:.2} s wall, {:.2} CPU-s, {records} records",
                i + 1,
                m.wall.as_secs_f64(),
                m.user + m.sys
            );
            std::fs::remove_file(&out)?;
            runs[n].push((m, records));
        }
    }
    std::fs::remove_file(&pcap)?;
    println!("\n| `probe read`, {packets} packets, {flows} flows | wall s (all runs) | CPU s (all runs) | packets/s (median wall) | CPU s per M packets (median) | records |");
    println!("|---|---|---|---|---|---|");
    let records = runs[0][0].1;
    for (n, w) in workers.iter().enumerate() {
        let r = &mut runs[n];
        if r.iter().any(|x| x.1 != records) {
            bail!("--workers {w} exported a different number of records than --workers 1");
        }
        let mut walls: Vec<f64> = r.iter().map(|x| x.0.wall.as_secs_f64()).collect();
        let mut cpus: Vec<f64> = r.iter().map(|x| x.0.user + x.0.sys).collect();
        walls.sort_by(f64::total_cmp);
        cpus.sort_by(f64::total_cmp);
        let show = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        println!(
            "| --workers {w}{} | {} | {} | {:.0} | {:.3} | {records} |",
            if *w == 1 { " (one hop)" } else { "" },
            show(&walls),
            show(&cpus),
            packets as f64 / walls[RUNS / 2],
            cpus[RUNS / 2] / (packets as f64 / 1e6),
        );
    }
    Ok(())
}

fn live(probe: &Path, tmp: &Path, seconds: u64) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the live part needs root (network namespaces, XDP)");
    }
    let lab = Lab::new(1);
    let conf = tmp.join("trafgen-fanout.cfg");
    std::fs::write(&conf, trafgen_conf())?;
    println!("\n| live, one-queue veth, trafgen on CPU 0 | offered pkt/s | metered pkt/s | loss % (hand-off drops) | CPU s | CPU s per M packets |");
    println!("|---|---|---|---|---|---|");
    for (name, cpus, workers) in [
        ("--workers 1 (one hop), CPU 1", "1", "1"),
        ("--workers 2 (RX thread + 2 workers), CPU 1", "1", "2"),
        ("--workers 2 (RX thread + 2 workers), CPUs 0-1", "0-1", "2"),
    ] {
        let stats = tmp.join(format!("fanout-live-{workers}-{cpus}.json"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &lab.ns_b, "taskset", "-c", cpus])
            .arg(probe)
            .args(["capture", "--interface", &lab.veth_b, "--workers", workers])
            .args(["--stats-json"])
            .arg(&stats);
        let (offered, m) = run_tool(&lab, &conf, seconds, &mut cmd, Stop::Signal(libc::SIGINT))?;
        let books: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
        let metered = books["frames"]["metered"].as_u64().unwrap_or(0);
        let handoff = books["frames"]["handoff_dropped"].as_u64().unwrap_or(0);
        let cpu = m.user + m.sys;
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} ({handoff}) | {cpu:.2} | {:.3} |",
            offered as f64 / seconds as f64,
            metered as f64 / seconds as f64,
            100.0 * offered.saturating_sub(metered) as f64 / offered.max(1) as f64,
            cpu / (metered.max(1) as f64 / 1e6),
        );
        eprintln!("books: {} / {}", books["live"], books["pipeline"]);
    }
    Ok(())
}
