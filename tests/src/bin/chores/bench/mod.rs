//! `cargo xtask bench`: whole-process figures on a generated capture, against peers measured in
//! the same run, then the criterion micro-benchmarks.
//!
//! The capture: `--packets` frames (default 2,000,000) over `--flows` flows (default 100,000),
//! a quarter IPv6, half TCP and half UDP, frame sizes uniform over 64..=1514 bytes, spread
//! evenly over 20 seconds so every flow is active for the whole capture. The generator keeps
//! per-flow ground truth (packets, IP bytes, first and last millisecond).
//!
//! Each tool meters the same file: the probe (`probe read`, exporting IPFIX to nfcapd),
//! `nfpcapd -r` (writing nfcapd files itself) and `softflowd -r` (exporting IPFIX to nfcapd).
//! For each, CPU seconds and peak RSS come from `wait4(2)`; flows are read back with nfdump
//! and compared with the ground truth.

mod app;
mod fanout;
mod flood;
mod live;

use anyhow::{bail, Context, Result};
use e2e::capture::{PcapWriter, LINKTYPE_ETHERNET};
use e2e::encap::{wrap, Encap, OUTER_V4};
use e2e::tools::{add_flow, nfdump_flows, nfdump_records, Flows, Key, Nfcapd};
use etherparse::PacketBuilder;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BASE_NS: u64 = 1_700_000_000_000_000_000;
const SPAN_NS: u64 = 20_000_000_000;

struct Opts {
    packets: u64,
    flows: u32,
    criterion: bool,
    offline: bool,
    live: bool,
    live_seconds: u64,
    /// Only write the benchmark capture here and stop (for profiling by hand).
    write_capture: Option<String>,
    /// Only the tunnel comparison: the capture plain and wrapped in VXLAN, `probe read` of each.
    tunnels_only: bool,
    /// Only the transport comparison: the same records through tcp:// and tls://.
    transports_only: bool,
    /// Only the flood comparison (issue #28).
    flood_only: bool,
    /// Only the fan-out comparison: `probe read --workers 1/2/3`, live with 1 and 2 workers.
    fanout_only: bool,
    /// Only the application parsers' cost: `probe read` with `--app all` against without.
    app_only: bool,
}

fn parse(args: &[&str]) -> Result<Opts> {
    let mut o = Opts {
        packets: 2_000_000,
        flows: 100_000,
        criterion: true,
        offline: true,
        live: true,
        live_seconds: 12,
        write_capture: None,
        tunnels_only: false,
        transports_only: false,
        flood_only: false,
        fanout_only: false,
        app_only: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--packets" => o.packets = it.next().context("--packets N")?.parse()?,
            "--flows" => o.flows = it.next().context("--flows N")?.parse()?,
            "--no-criterion" => o.criterion = false,
            "--no-live" => o.live = false,
            "--write-capture" => {
                o.write_capture = Some(it.next().context("--write-capture PATH")?.to_string())
            }
            "--live-only" => {
                o.offline = false;
                o.criterion = false;
            }
            "--live-seconds" => o.live_seconds = it.next().context("--live-seconds N")?.parse()?,
            "--tunnels-only" => o.tunnels_only = true,
            "--flood-only" => o.flood_only = true,
            "--transports-only" => o.transports_only = true,
            "--fanout-only" => o.fanout_only = true,
            "--app-only" => o.app_only = true,
            "--write-app-capture" | "--write-app-long-capture" => {
                let path = it.next().with_context(|| format!("{a} PATH"))?;
                let n = if *a == "--write-app-capture" {
                    app::generate_rich(Path::new(path), app::RICH_ROUNDS, 0)?
                } else {
                    app::generate_rich(Path::new(path), app::LONG_ROUNDS, 40)?
                };
                println!("wrote {path}: {n} packets");
                std::process::exit(0);
            }
            other => {
                bail!(
                    "unknown bench option {other}; use --packets N, --flows N, --no-criterion, \
                     --no-live, --live-only, --live-seconds N, --tunnels-only, \
                     --transports-only, --flood-only, --fanout-only, --app-only, --write-capture PATH, --write-app-capture PATH, --write-app-long-capture PATH"
                )
            }
        }
    }
    Ok(o)
}

pub fn run(args: &[&str]) -> Result<()> {
    let opts = parse(args)?;
    if let Some(path) = &opts.write_capture {
        let truth = generate(Path::new(path), opts.packets, opts.flows)?;
        println!(
            "wrote {path}: {} packets, {} flows",
            opts.packets,
            truth.len()
        );
        return Ok(());
    }
    let probe = crate::build_probe()?;
    let tmp = e2e::TempDir::new("bench");
    if opts.tunnels_only {
        return tunnel_cost(&probe, tmp.path(), opts.packets, opts.flows);
    }
    if opts.transports_only {
        return transport_cost(&probe, tmp.path());
    }
    if opts.flood_only {
        return flood::run(&probe, tmp.path());
    }
    if opts.app_only {
        return app::run(&probe, tmp.path(), opts.packets, opts.flows);
    }
    if opts.fanout_only {
        return fanout::run(
            &probe,
            tmp.path(),
            opts.packets,
            opts.flows,
            opts.live_seconds,
        );
    }
    if opts.live {
        let rows = live::run(&probe, opts.live_seconds, tmp.path())?;
        live::print(&rows);
    }
    if !opts.offline {
        return Ok(());
    }
    let pcap = tmp.path().join("bench.pcap");
    let t = Instant::now();
    let truth = generate(&pcap, opts.packets, opts.flows)?;
    let size = std::fs::metadata(&pcap)?.len();
    println!(
        "generated {} packets, {} flows, {:.0} MB in {:.1}s: {}",
        opts.packets,
        truth.len(),
        size as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        pcap.display()
    );

    // Each tool meters the file `RUNS` times; the table shows the median CPU run and, for
    // accuracy, the worst run.
    let mut rows = vec![];
    rows.push(median_of_runs("probe read → nfcapd", tmp.path(), |dir| {
        let nf = Nfcapd::start(dir);
        let m = measure(&mut probe_read(&probe, &pcap, &nf.url()))?;
        Ok((m, nfdump_flows(&nf.finish())))
    })?);
    rows.push(median_of_runs("nfpcapd -r", tmp.path(), |dir| {
        let m = measure(&mut nfpcapd_read(&pcap, dir))?;
        Ok((m, nfdump_flows(&nfdump_records(dir))))
    })?);
    let max_flows = (opts.flows * 2).to_string();
    rows.push(median_of_runs(
        "softflowd -r → nfcapd",
        tmp.path(),
        |dir| {
            let nf = Nfcapd::start(dir);
            let dest = format!("127.0.0.1:{}", nf.port);
            // No -c: softflowd 1.1.0 blocks in accept() on its control socket when one is named
            // explicitly, and never reads past the first 4 KiB of the file.
            let m = measure(Command::new("softflowd").arg("-r").arg(&pcap).args([
                "-n", &dest, "-v", "10", "-6", "-A", "milli", "-d", "-m", &max_flows,
            ]))?;
            Ok((m, nfdump_flows(&nf.finish())))
        },
    )?);
    let rows: Vec<(&str, Measured, usize)> = rows
        .into_iter()
        .map(|(name, m, all)| {
            let worst = all
                .iter()
                .map(|f| exact_matches(&truth, f))
                .min()
                .unwrap_or(0);
            (name, m, worst)
        })
        .collect();

    println!("\n| tool (median CPU of {RUNS} runs) | wall s | CPU s | packets/s (wall) | packets/s per CPU-s | peak RSS MB | flows exact / truth (worst run) |");
    println!("|---|---|---|---|---|---|---|");
    let mut probe_cpu = 0.0;
    for (name, m, exact) in &rows {
        let cpu = m.user + m.sys;
        if name.starts_with("probe") {
            probe_cpu = cpu;
        }
        println!(
            "| {name} | {:.2} | {:.2} | {:.0} | {:.0} | {:.1} | {} / {} |",
            m.wall.as_secs_f64(),
            cpu,
            opts.packets as f64 / m.wall.as_secs_f64(),
            opts.packets as f64 / cpu,
            m.max_rss_kb as f64 / 1024.0,
            exact,
            truth.len()
        );
    }
    for (name, m, _) in rows.iter().skip(1) {
        println!(
            "probe CPU advantage over {name}: {:.1}x",
            (m.user + m.sys) / probe_cpu
        );
    }

    one_core(&probe, &pcap, tmp.path(), opts.packets)?;
    std::fs::remove_file(&pcap)?;
    tunnel_cost(&probe, tmp.path(), opts.packets, opts.flows)?;
    transport_cost(&probe, tmp.path())?;
    app::run(&probe, tmp.path(), opts.packets, opts.flows)?;
    flood::run(&probe, tmp.path())?;
    fanout::run(
        &probe,
        tmp.path(),
        opts.packets,
        opts.flows,
        if opts.live { opts.live_seconds } else { 0 },
    )?;

    if opts.criterion {
        crate::run(crate::cargo().args([
            "bench",
            "-p",
            "probe-core",
            "-p",
            "probe",
            "-p",
            "ipfix-export",
            "-p",
            "pcap-ring",
        ]))?;
        // The application parsers against other people's (their test helpers live in e2e).
        crate::run(crate::cargo().args(["bench", "-p", "e2e", "--bench", "app"]))?;
    }
    Ok(())
}

/// Runs per tool.
pub(crate) const RUNS: usize = 3;

/// `probe read` of `pcap` exporting to `dest`. The benchmark runs as root (it needs the live
/// lab); reading needs no privileges.
pub(crate) fn probe_read(probe: &Path, pcap: &Path, dest: &str) -> Command {
    let mut c = Command::new(probe);
    c.args(["read", "--allow-root"])
        .arg(pcap)
        .args(["--ipfix", dest]);
    c
}

/// `nfpcapd -r` of `pcap`, writing its nfcapd files into `dir`.
fn nfpcapd_read(pcap: &Path, dir: &Path) -> Command {
    let mut c = Command::new("nfpcapd");
    c.arg("-r")
        .arg(pcap)
        .arg("-w")
        .arg(dir)
        .args(["-e", "300,60"]);
    c
}

/// `cmd` run by `taskset -c CPU`: the same process, pinned to one CPU.
fn pinned(cmd: &Command, cpu: &str) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", cpu])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    c
}

/// The issue's measure taken literally: each tool pinned to one CPU, packets per second of
/// wall time, both writing flow files to disk (nfpcapd its nfcapd files, the probe an IPFIX
/// file), so no collector and no export pacing is in the way. Accuracy is the table above's.
fn one_core(probe: &Path, pcap: &Path, tmp: &Path, packets: u64) -> Result<()> {
    let cpu = (std::thread::available_parallelism().map_or(1, |n| n.get()) - 1).to_string();
    let mut rows = vec![];
    for tool in ["probe read → IPFIX file", "nfpcapd -r → nfcapd files"] {
        let mut runs = vec![];
        for i in 0..RUNS {
            let dir = tmp.join(format!("one-core-{i}"));
            std::fs::create_dir_all(&dir)?;
            let cmd = if tool.starts_with("probe") {
                probe_read(
                    probe,
                    pcap,
                    &format!("file://{}/flows.ipfix", dir.display()),
                )
            } else {
                nfpcapd_read(pcap, &dir)
            };
            let m = measure(&mut pinned(&cmd, &cpu))?;
            eprintln!(
                "{tool} on CPU {cpu}, run {}: {:.2} s wall",
                i + 1,
                m.wall.as_secs_f64()
            );
            runs.push(m.wall.as_secs_f64());
            std::fs::remove_dir_all(&dir)?;
        }
        runs.sort_by(f64::total_cmp);
        rows.push((tool, runs));
    }
    println!("\n| one core (taskset -c {cpu}), median of {RUNS} | wall s (all runs) | packets/s |");
    println!("|---|---|---|");
    for (tool, runs) in &rows {
        let all: Vec<String> = runs.iter().map(|w| format!("{w:.2}")).collect();
        println!(
            "| {tool} | {} | {:.0} |",
            all.join(" / "),
            packets as f64 / runs[RUNS / 2]
        );
    }
    println!(
        "probe packets/s on one core over nfpcapd -r: {:.1}x",
        rows[1].1[RUNS / 2] / rows[0].1[RUNS / 2]
    );
    Ok(())
}

/// Runs one tool `RUNS` times, each in a fresh directory; returns the run with the median CPU
/// time and the flows of every run.
fn median_of_runs<'a>(
    name: &'a str,
    tmp: &Path,
    mut run: impl FnMut(&Path) -> Result<(Measured, Flows)>,
) -> Result<(&'a str, Measured, Vec<Flows>)> {
    let mut measured = vec![];
    let mut flows = vec![];
    for i in 0..RUNS {
        let dir = tmp.join(format!(
            "{}-{i}",
            name.split_whitespace().next().unwrap_or("tool")
        ));
        std::fs::create_dir_all(&dir)?;
        let (m, f) = run(&dir)?;
        eprintln!(
            "{name}, run {}: {:.2} CPU-s, {:.2} s wall",
            i + 1,
            m.user + m.sys,
            m.wall.as_secs_f64()
        );
        measured.push(m);
        flows.push(f);
        std::fs::remove_dir_all(&dir)?;
    }
    measured.sort_by(|a, b| (a.user + a.sys).total_cmp(&(b.user + b.sys)));
    Ok((name, measured.swap_remove(RUNS / 2), flows))
}

/// Flows whose packets, bytes, first and last millisecond all equal the ground truth.
fn exact_matches(truth: &Flows, got: &Flows) -> usize {
    truth
        .iter()
        .filter(|(k, t)| {
            got.get(k).is_some_and(|g| {
                (g.packets, g.bytes, g.first_ms, g.last_ms)
                    == (t.packets, t.bytes, t.first_ms, t.last_ms)
            })
        })
        .count()
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Measured {
    pub wall: Duration,
    pub user: f64,
    pub sys: f64,
    /// Peak RSS sampled every 5 ms from /proc (see `measure`).
    pub max_rss_kb: i64,
}

/// Runs a command to completion and reads its own CPU time and peak RSS with wait4(2).
pub(crate) fn measure(cmd: &mut Command) -> Result<Measured> {
    let shown = format!("{cmd:?}");
    let start = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("start {shown}"))?;
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // Peak RSS is sampled from the child's own /proc/PID/status (VmHWM, per address space)
    // every 5 ms: ru_maxrss survives exec on Linux, so a child spawned from this process would
    // report this process's size whenever that is larger than its own.
    let mut hwm_kb = 0i64;
    let pid = loop {
        let pid = unsafe { libc::wait4(child.id() as i32, &mut status, libc::WNOHANG, &mut ru) };
        if pid != 0 {
            break pid;
        }
        hwm_kb = hwm_kb.max(vm_hwm_kb(child.id()));
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = start.elapsed();
    if pid < 0 {
        bail!("wait4 for {shown}: {}", std::io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("{shown} failed (wait status {status})");
    }
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    Ok(Measured {
        wall,
        user: secs(ru.ru_utime),
        sys: secs(ru.ru_stime),
        max_rss_kb: hwm_kb,
    })
}

/// VmHWM of a live process, in KiB (0 once it has exited).
pub(crate) fn vm_hwm_kb(pid: u32) -> i64 {
    status_kb(pid, "VmHWM:")
}

/// A process's resident memory now (VmRSS, KiB; 0 once it is gone).
pub(crate) fn vm_rss_kb(pid: u32) -> i64 {
    status_kb(pid, "VmRSS:")
}

/// A KiB field of /proc/PID/status (0 when the process or the field is gone).
fn status_kb(pid: u32, field: &str) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn flow_of(i: u32) -> (IpAddr, IpAddr, bool, u16, u16) {
    let v6 = i.is_multiple_of(4);
    let tcp = i % 2 == 1;
    let (src, dst): (IpAddr, IpAddr) = if v6 {
        (
            Ipv6Addr::from(0xfd00_0000_0000_0000_0000_0000_0000_0000u128 | i as u128).into(),
            Ipv6Addr::from(0xfd00_0000_0000_0000_0000_0000_0001_0000u128 | (i % 251) as u128)
                .into(),
        )
    } else {
        (
            Ipv4Addr::from(0x0a00_0000 | i).into(),
            Ipv4Addr::from(0xac10_0000 | (i % 4093)).into(),
        )
    };
    (
        src,
        dst,
        tcp,
        1024 + (i % 60000) as u16,
        if tcp { 443 } else { 53 },
    )
}

/// The whole-process cost of decapsulation (issue #13): the benchmark capture bare and with
/// every frame wrapped in VXLAN (one outer IPv4/UDP path, VNI 5001, 50 bytes more per frame),
/// `probe read` of each pinned to one CPU, writing an IPFIX file, alternating runs. One more
/// run of the wrapped capture exports to nfcapd, and nfdump's inner flows are checked against
/// the ground truth.
fn tunnel_cost(probe: &Path, tmp: &Path, packets: u64, flows: u32) -> Result<()> {
    let cpu = (std::thread::available_parallelism().map_or(1, |n| n.get()) - 1).to_string();
    let plain = tmp.join("tunnels-plain.pcap");
    let vxlan = tmp.join("tunnels-vxlan.pcap");
    let truth = generate(&plain, packets, flows)?;
    let wrapped = generate_wrapped(&vxlan, packets, flows, Some(Encap::Vxlan { vni: 5001 }))?;
    if wrapped != truth {
        bail!("the VXLAN capture's inner ground truth differs from the plain capture's");
    }
    let mut walls: [Vec<Measured>; 2] = [vec![], vec![]];
    for i in 0..RUNS {
        for (n, pcap) in [&plain, &vxlan].into_iter().enumerate() {
            let out = tmp.join(format!("tunnels-{i}-{n}.ipfix"));
            let cmd = probe_read(probe, pcap, &format!("file://{}", out.display()));
            let m = measure(&mut pinned(&cmd, &cpu))?;
            eprintln!(
                "{} on CPU {cpu}, run {}: {:.2} s wall, {:.2} CPU-s",
                pcap.display(),
                i + 1,
                m.wall.as_secs_f64(),
                m.user + m.sys
            );
            std::fs::remove_file(&out)?;
            walls[n].push(m);
        }
    }
    let dir = tmp.join("tunnels-nfcapd");
    std::fs::create_dir_all(&dir)?;
    let nf = Nfcapd::start(&dir);
    measure(&mut probe_read(probe, &vxlan, &nf.url()))?;
    let exact = exact_matches(&truth, &nfdump_flows(&nf.finish()));
    println!("\n| `probe read`, one core (taskset -c {cpu}) | wall s (all runs) | CPU s (all runs) | packets/s (median wall) |");
    println!("|---|---|---|---|");
    let mut medians = [0.0; 2];
    for (n, name) in ["plain", "VXLAN (VNI 5001)"].into_iter().enumerate() {
        let runs = &mut walls[n];
        runs.sort_by_key(|m| m.wall);
        let wall: Vec<String> = runs
            .iter()
            .map(|m| format!("{:.2}", m.wall.as_secs_f64()))
            .collect();
        let cpu_s: Vec<String> = runs
            .iter()
            .map(|m| format!("{:.2}", m.user + m.sys))
            .collect();
        medians[n] = runs[RUNS / 2].wall.as_secs_f64();
        println!(
            "| {name} | {} | {} | {:.0} |",
            wall.join(" / "),
            cpu_s.join(" / "),
            packets as f64 / medians[n]
        );
    }
    println!(
        "VXLAN over plain, median wall: {:.2}x ({:+.1} ns per packet); VXLAN inner flows exact: {exact} / {}",
        medians[1] / medians[0],
        (medians[1] - medians[0]) * 1e9 / packets as f64,
        truth.len()
    );
    std::fs::remove_file(&plain)?;
    std::fs::remove_file(&vxlan)?;
    if exact != truth.len() {
        bail!("the VXLAN capture's inner flows differ from the ground truth");
    }
    Ok(())
}

/// The cost of TLS (issue #16): 500,000 one-packet flows, so 500,000 records, exported by
/// `probe read` to a local socat sink over tcp:// and over tls:// (TLS 1.3, ECDSA P-256
/// certificate made by openssl), three alternating runs each, pinned to one CPU; socat's own
/// CPU is not counted. Every run must deliver every record (the books say so).
fn transport_cost(probe: &Path, tmp: &Path) -> Result<()> {
    let (packets, flows) = (500_000u64, 500_000u32);
    let pcap = tmp.join("transports.pcap");
    generate(&pcap, packets, flows)?;
    e2e::certs::issue(
        tmp,
        "bench-ca",
        &[e2e::certs::Cert {
            name: "s",
            cn: "sink",
            ext: "subjectAltName=IP:127.0.0.1",
            days: 2,
        }],
    )
    .map_err(anyhow::Error::msg)?;
    let cpu = (std::thread::available_parallelism().map_or(1, |n| n.get()) - 1).to_string();
    // The third: tcp:// with a spool (issue #29), every message written to disk, read back and
    // acknowledged there.
    let spool = tmp.join("spool");
    let mut results: Vec<(&str, Vec<Measured>)> = vec![
        ("tcp://", vec![]),
        ("tls://", vec![]),
        ("tcp:// + spool", vec![]),
    ];
    let mut spool_bytes = 0u64;
    for run in 0..RUNS {
        for (label, runs) in results.iter_mut() {
            let (scheme, opts) = match label.split_once(" + ") {
                Some((s, _)) => {
                    let _ = std::fs::remove_dir_all(&spool);
                    (s, format!("?spool={}", spool.display()))
                }
                None => (*label, String::new()),
            };
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let listen = if scheme.starts_with("tls") {
                format!(
                    "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,cert=s.pem,key=s.key,verify=0"
                )
            } else {
                format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr")
            };
            let mut sink = Command::new("socat")
                .current_dir(tmp)
                .args(["-u", &listen, "OPEN:/dev/null"])
                .spawn()
                .context("socat (cargo xtask deps installs it)")?;
            std::thread::sleep(Duration::from_millis(300));
            let books = tmp.join("transport-books.json");
            let mut cmd = probe_read(probe, &pcap, &format!("{scheme}127.0.0.1:{port}{opts}"));
            cmd.arg("--stats-json").arg(&books);
            if scheme.starts_with("tls") {
                cmd.arg("--tls-ca").arg(tmp.join("ca.pem"));
            }
            let m = measure(&mut pinned(&cmd, &cpu))?;
            let _ = sink.kill();
            let _ = sink.wait();
            let b: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&books)?)?;
            let c = &b["export"]["collectors"][0];
            if c["records_sent"].as_u64() != Some(flows as u64) || c["messages_lost"] != 0 {
                bail!("{label} run {}: not every record delivered: {c}", run + 1);
            }
            if let Some(b) = c["spool"]["peak_bytes"].as_u64() {
                spool_bytes = b;
                if c["spool"]["spooled"]["flows"].as_u64() != Some(flows as u64) {
                    bail!(
                        "{label} run {}: not every record went through the spool: {c}",
                        run + 1
                    );
                }
            }
            eprintln!(
                "{label} run {}: {:.2} s wall, {:.2} CPU-s",
                run + 1,
                m.wall.as_secs_f64(),
                m.user + m.sys
            );
            runs.push(m);
        }
    }
    println!("\n| `probe read` → local socat sink, one core, 500,000 records | wall s (3 runs) | CPU s (3 runs) | records/s (median wall) | CPU µs per record (median) |");
    println!("|---|---|---|---|---|");
    let mut med_cpu = vec![];
    for (label, runs) in &mut results {
        runs.sort_by_key(|m| m.wall);
        let walls: Vec<String> = runs
            .iter()
            .map(|m| format!("{:.2}", m.wall.as_secs_f64()))
            .collect();
        let mut cpus: Vec<f64> = runs.iter().map(|m| m.user + m.sys).collect();
        cpus.sort_by(f64::total_cmp);
        let cpu_s: Vec<String> = cpus.iter().map(|c| format!("{c:.2}")).collect();
        med_cpu.push(cpus[RUNS / 2]);
        println!(
            "| {label} | {} | {} | {:.0} | {:.2} |",
            walls.join(" / "),
            cpu_s.join(" / "),
            flows as f64 / runs[RUNS / 2].wall.as_secs_f64(),
            cpus[RUNS / 2] * 1e6 / flows as f64
        );
    }
    println!(
        "TLS over TCP, median CPU: {:.2}x ({:+.2} µs per record)",
        med_cpu[1] / med_cpu[0],
        (med_cpu[1] - med_cpu[0]) * 1e6 / flows as f64
    );
    println!(
        "TCP with a spool, median CPU: {:.2}x ({:+.2} µs per record); the spool peaked at {} bytes, {:.1} bytes per record",
        med_cpu[2] / med_cpu[0],
        (med_cpu[2] - med_cpu[0]) * 1e6 / flows as f64,
        spool_bytes,
        spool_bytes as f64 / flows as f64
    );
    std::fs::remove_file(&pcap)?;
    Ok(())
}

/// Writes the benchmark capture and returns its ground truth.
pub fn generate(path: &Path, packets: u64, flows: u32) -> Result<Flows> {
    generate_wrapped(path, packets, flows, None)
}

/// [`generate`], each frame wrapped in `encap` when given (the truth stays the inner flows').
fn generate_wrapped(path: &Path, packets: u64, flows: u32, encap: Option<Encap>) -> Result<Flows> {
    let mut w = PcapWriter::create(path, LINKTYPE_ETHERNET, false)?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let payload = vec![0u8; 1500];
    let mut frame = Vec::with_capacity(1600);
    let mut truth = Flows::new();
    let step = SPAN_NS / packets.max(1);
    let mut seen = vec![false; flows as usize];
    let outer = (OUTER_V4.0.into(), OUTER_V4.1.into());
    for p in 0..packets {
        // Every flow gets its first packet early; afterwards flows are picked at random.
        let i = if p < flows as u64 {
            p as u32
        } else {
            (rng.next() % flows as u64) as u32
        };
        seen[i as usize] = true;
        let (src, dst, tcp, sport, dport) = flow_of(i);
        let frame_len = 64 + (rng.next() % (1514 - 64 + 1)) as usize;
        let headers = 14 + if src.is_ipv6() { 40 } else { 20 } + if tcp { 20 } else { 8 };
        let pay = frame_len.saturating_sub(headers);
        let ts = BASE_NS + p * step;
        frame.clear();
        let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        match (src, dst, tcp) {
            (IpAddr::V4(s), IpAddr::V4(d), true) => eth
                .ipv4(s.octets(), d.octets(), 64)
                .tcp(sport, dport, 1, 65535)
                .ack(1)
                .write(&mut frame, &payload[..pay])?,
            (IpAddr::V4(s), IpAddr::V4(d), false) => eth
                .ipv4(s.octets(), d.octets(), 64)
                .udp(sport, dport)
                .write(&mut frame, &payload[..pay])?,
            (IpAddr::V6(s), IpAddr::V6(d), true) => eth
                .ipv6(s.octets(), d.octets(), 64)
                .tcp(sport, dport, 1, 65535)
                .ack(1)
                .write(&mut frame, &payload[..pay])?,
            (IpAddr::V6(s), IpAddr::V6(d), false) => eth
                .ipv6(s.octets(), d.octets(), 64)
                .udp(sport, dport)
                .write(&mut frame, &payload[..pay])?,
            _ => unreachable!(),
        }
        match encap {
            Some(e) => w.write(ts, &wrap(e, &frame, outer))?,
            None => w.write(ts, &frame)?,
        }
        let ip_bytes = (frame.len() - 14) as u64;
        let k = Key {
            src,
            dst,
            sport,
            dport,
            proto: if tcp { 6 } else { 17 },
        };
        add_flow(&mut truth, k, 1, ip_bytes, ts / 1_000_000, ts / 1_000_000);
    }
    w.finish()?;
    Ok(truth)
}
