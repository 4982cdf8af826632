//! `cargo xtask demo`: live capture end to end in a private lab on this machine.
//!
//! Builds a lab (two network namespaces joined by a two-queue veth pair), starts nfcapd and
//! `probe capture` in the probe's namespace, plays a realistic mix from the other namespace
//! (TCP sessions over IPv4 and IPv6, DNS, ICMP, VLAN and QinQ tagged flows, a large transfer,
//! and a SYN scan of 200 ports), stops the probe with SIGINT, and shows what the collector
//! received with nfdump: the flows, the top talkers and the scan. The probe also keeps a PCAP
//! ring of one critical segment (10.1.0.0/16); the demo lists the ring's files and pulls the
//! packets of one TCP session back out with `probe extract`, shown by tshark. The lab is removed
//! at the end, also on failure; nothing touches the machine's own interfaces.

use anyhow::{bail, Context, Result};
use e2e::craft::{ethernet, L4, SYN};
use e2e::lab::Lab;
use e2e::tools::Nfcapd;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCANNER: &str = "10.66.0.13";
/// The critical segment whose packets the ring keeps.
const SEGMENT: &str = "net 10.1.0.0/16";

pub fn run() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo builds a network lab (namespaces, XDP): run it as root");
    }
    let probe = crate::build_probe()?;
    let tmp = e2e::TempDir::new("demo");
    let lab = Lab::new(2);
    println!(
        "== lab: namespace {} ({}) → veth → namespace {} ({}, 2 RX queues)",
        lab.ns_a, lab.veth_a, lab.ns_b, lab.veth_b
    );
    let nf = Nfcapd::start_in(tmp.path(), Some(&lab.ns_b));
    println!("== nfcapd in {} listening on {}", lab.ns_b, nf.url());

    let stats = tmp.path().join("books.json");
    let ring = tmp.path().join("ring");
    println!(
        "== probe capture -i {} --ipfix {} --stats-interval 1s --pcap-dir {} --pcap-select '{SEGMENT}'",
        lab.veth_b,
        nf.url(),
        ring.display()
    );
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns_b])
        .arg(&probe)
        .args(["capture", "-i", &lab.veth_b, "--ipfix", &nf.url()])
        .args(["--stats-interval", "1s", "--stats-json"])
        .arg(&stats)
        .arg("--pcap-dir")
        .arg(&ring)
        .args(["--pcap-select", SEGMENT, "--pcap-file-size", "16KiB"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("start probe capture")?;
    // Echo the probe's stderr as it comes, and notice when it is capturing.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("piped");
    let echo = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("capturing on") {
                let _ = ready_tx.send(());
            }
            eprintln!("   {line}");
        }
    });
    if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        bail!("probe capture did not start (see its messages above)");
    }

    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let mut frames: Vec<Vec<u8>> = e2e::craft::mixed_traffic(now_ns)
        .into_iter()
        .map(|f| f.data)
        .collect();
    let scanner = SCANNER.parse()?;
    let target = "10.2.0.80".parse()?;
    for port in 1..=200u16 {
        frames.push(ethernet(
            scanner,
            target,
            L4::Tcp {
                sport: 45000,
                dport: port,
                flags: SYN,
            },
            0,
            &[],
            64,
        ));
    }
    let t = Instant::now();
    lab.send(&frames, &[0, 1], 16);
    println!(
        "== sent {} frames from {} in {:.2}s",
        frames.len(),
        lab.ns_a,
        t.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_millis(1500));
    e2e::signal(child.id(), libc::SIGINT);
    let status = child.wait()?;
    let _ = echo.join();
    if !status.success() {
        bail!("probe capture failed: {status}");
    }

    let dir = nf.dir.clone();
    let records = nf.finish();
    println!(
        "\n== nfcapd received {} flow records; the first 25 by start time:",
        records.len()
    );
    let nfdump = |args: &[&str]| {
        crate::run(
            Command::new("nfdump")
                .env("TZ", "UTC")
                .arg("-R")
                .arg(&dir)
                .args(args),
        )
    };
    nfdump(&["-O", "tstart", "-o", "long", "-c", "25"])?;
    println!("\n== top talkers by bytes (nfdump -s ip/bytes):");
    nfdump(&["-q", "-s", "ip/bytes", "-n", "5"])?;
    println!("\n== the scan stands out: top sources by flows (nfdump -s srcip/flows):");
    nfdump(&["-q", "-s", "srcip/flows", "-n", "3"])?;
    println!("\n== what {SCANNER} touched: flows by destination port, first 5:");
    nfdump(&[
        "-q",
        "-s",
        "dstport/flows",
        "-n",
        "5",
        &format!("src ip {SCANNER}"),
    ])?;
    println!("\n== the PCAP ring of {SEGMENT} ({}):", ring.display());
    let mut files: Vec<_> = std::fs::read_dir(&ring)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    files.sort();
    for f in &files {
        println!("   {f}");
    }
    println!("\n== probe ring status --pcap-dir {}", ring.display());
    crate::run(
        Command::new(&probe)
            .args(["ring", "status", "--pcap-dir"])
            .arg(&ring),
    )?;
    let flow =
        "src host 10.1.0.5 and src port 40002 and dst host 10.2.0.80 and dst port 443 and tcp";
    let out = tmp.path().join("flow.pcap");
    println!(
        "\n== probe extract --pcap-dir {} -w flow.pcap '{flow}'",
        ring.display()
    );
    crate::run(
        Command::new(&probe)
            .args(["extract", "--allow-root", "--pcap-dir"])
            .arg(&ring)
            .arg("-w")
            .arg(&out)
            .arg(flow),
    )?;
    println!("\n== tshark -r flow.pcap:");
    crate::run(Command::new("tshark").arg("-r").arg(&out).arg("-n"))?;
    let books: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
    println!(
        "\n== the probe's books: {} frames seen by XDP, {} metered, balanced: {}",
        books["live"]["seen"], books["frames"]["metered"], books["live"]["balanced"]
    );
    drop(lab);
    println!("== demo done; lab and scratch files removed");
    Ok(())
}
