//! `cargo xtask demo`: the offline pipeline end to end on this machine.
//!
//! Crafts a realistic mix of traffic (TCP sessions over IPv4 and IPv6, DNS, ICMP, VLAN and QinQ
//! tagged flows, a large transfer) into a pcap, starts a local nfcapd, runs `probe read` towards
//! it, and shows what the collector received with nfdump. The live-lab demo (AF_XDP on a veth
//! pair) replaces the crafted file once live capture lands.

use anyhow::{Context, Result};
use e2e::capture::{write_pcap, LINKTYPE_ETHERNET};
use e2e::tools::Nfcapd;
use std::process::Command;

pub fn run() -> Result<()> {
    crate::deps::ensure()?;
    let probe = crate::build_probe()?;
    let tmp = e2e::TempDir::new("demo");
    let pcap = tmp.path().join("demo.pcap");
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let frames = e2e::craft::mixed_traffic(now_ns - 60_000_000_000);
    write_pcap(&pcap, LINKTYPE_ETHERNET, true, &frames);
    println!("== crafted {} frames into {}", frames.len(), pcap.display());

    let nf = Nfcapd::start(tmp.path());
    println!("== nfcapd listening on {}", nf.url());
    let stats = tmp.path().join("books.json");
    println!(
        "== probe read {} --ipfix {} --stats-json books.json",
        pcap.display(),
        nf.url()
    );
    let status = Command::new(&probe)
        .arg("read")
        .arg(&pcap)
        .args(["--ipfix", &nf.url(), "--stats-json"])
        .arg(&stats)
        .status()
        .context("run probe")?;
    anyhow::ensure!(status.success(), "probe read failed: {status}");
    let dir = nf.dir.clone();
    let records = nf.finish();
    println!(
        "\n== nfcapd received {} flow records; nfdump shows them:",
        records.len()
    );
    crate::run(
        Command::new("nfdump")
            .env("TZ", "UTC")
            .arg("-R")
            .arg(&dir)
            .args(["-o", "long", "-n", "30"]),
    )?;
    println!("\n== top talkers by bytes (nfdump -s ip/bytes):");
    crate::run(
        Command::new("nfdump")
            .env("TZ", "UTC")
            .arg("-R")
            .arg(&dir)
            .args(["-q", "-s", "ip/bytes", "-n", "5"]),
    )?;
    let books: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
    println!(
        "\n== the probe's books:\n{}",
        serde_json::to_string_pretty(&books["frames"])?
    );
    println!("\n== demo done; scratch files removed");
    Ok(())
}
