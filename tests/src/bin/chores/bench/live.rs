//! `cargo xtask bench` (live part): trafgen floods a veth pair at its highest rate from one
//! core; the probe (XDP + AF_XDP), softflowd and nfpcapd (both libpcap on AF_PACKET) take turns
//! capturing the same traffic on the other end, pinned to the other core.
//!
//! The traffic: 60-byte IPv4/UDP frames to 10,100 destinations (two trafgen counters of period
//! 100 and 101 walk the last two address bytes), so at least 10,000 flows are active for the
//! whole run. Port 9000, not 53: nfpcapd exports every DNS packet as a flow of its own. The
//! offered count is what trafgen says it sent; the metered count is what the
//! collector received, summed from nfdump, for every tool alike. CPU seconds are the tool's own
//! (wait4); the kernel's receive path runs on the sender's core for every tool (veth delivers
//! on the sending CPU), so it is charged to none of them.

use super::{vm_hwm_kb, Measured};
use anyhow::{bail, Context, Result};
use e2e::lab::Lab;
use e2e::tools::{nfdump_flows, nfdump_records, Flows, Nfcapd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The frame trafgen sends; see the module doc.
const TRAFGEN_CONF: &str = "{
  0x02, 0x00, 0x00, 0x00, 0x00, 0x0b,
  0x02, 0x00, 0x00, 0x00, 0x00, 0x0a,
  0x08, 0x00,
  0x45, 0x00, c16(46), c16(0), 0x40, 0x00, 64, 17, csumip(14, 33),
  10, 1, 0, 1,
  10, 2, dinc(0, 99), dinc(0, 100),
  c16(4000), c16(9000), c16(26), c16(0),
  fill(0x5a, 18),
}
";
const FLOWS: u64 = 100 * 101;

/// One tool's live run.
pub struct LiveRow {
    pub name: &'static str,
    pub offered: u64,
    pub metered: u64,
    pub seconds: f64,
    pub measured: Measured,
    pub flows: usize,
}

/// The trafgen configuration of the live benchmarks.
pub fn trafgen_conf() -> &'static str {
    TRAFGEN_CONF
}

/// How a tool is told to stop and export what it holds.
pub enum Stop {
    Signal(libc::c_int),
    /// `softflowctl -c PATH shutdown`: softflowd exits on a signal without exporting.
    Softflowctl(std::path::PathBuf),
}

impl LiveRow {
    /// A tool's row: what it was offered and what reached its collector.
    fn new(
        name: &'static str,
        offered: u64,
        measured: Measured,
        flows: &Flows,
        seconds: u64,
    ) -> LiveRow {
        LiveRow {
            name,
            offered,
            metered: flows.values().map(|t| t.packets).sum(),
            seconds: seconds as f64,
            measured,
            flows: flows.len(),
        }
    }
}

/// Starts `cmd` (already pointed into the lab), waits two seconds, floods for `seconds`, lets
/// the tool drain, stops it and measures it.
pub fn run_tool(
    lab: &Lab,
    conf: &Path,
    seconds: u64,
    cmd: &mut Command,
    stop: Stop,
) -> Result<(u64, Measured)> {
    run_tool_sampled(lab, conf, seconds, cmd, stop).map(|(o, m, _)| (o, m))
}

/// [`run_tool`], also sampling the tool's resident memory (VmRSS, KiB) every half second
/// from the start of the flood to its end.
pub fn run_tool_sampled(
    lab: &Lab,
    conf: &Path,
    seconds: u64,
    cmd: &mut Command,
    stop: Stop,
) -> Result<(u64, Measured, Vec<i64>)> {
    let shown = format!("{cmd:?}");
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {shown}"))?;
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.id();
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let flooding = flooding.clone();
        std::thread::spawn(move || {
            let mut samples = vec![];
            while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                samples.push(super::vm_rss_kb(pid));
                std::thread::sleep(Duration::from_millis(500));
            }
            samples
        })
    };
    let offered = trafgen(lab, conf, seconds);
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let samples = sampler.join().unwrap_or_default();
    let offered = offered?;
    // Let the tool catch up with what is still queued before stopping it.
    std::thread::sleep(Duration::from_secs(1));
    match &stop {
        Stop::Signal(sig) => e2e::signal(child.id(), *sig),
        Stop::Softflowctl(ctl) => {
            let st = Command::new("softflowctl")
                .arg("-c")
                .arg(ctl)
                .arg("shutdown")
                .stdout(Stdio::null())
                .status()
                .context("run softflowctl")?;
            if !st.success() {
                bail!("softflowctl shutdown failed ({st})");
            }
        }
    }
    // softflowd exits with status 1 after a requested shutdown.
    let m = wait_measured(child, start, &shown, matches!(stop, Stop::Softflowctl(_)))?;
    Ok((offered, m, samples))
}

/// Waits for a signalled child, sampling its peak RSS, and returns its own CPU time.
fn wait_measured(
    mut child: Child,
    start: Instant,
    shown: &str,
    any_exit_status: bool,
) -> Result<Measured> {
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; wait4 on our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut hwm_kb = 0i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        let pid = unsafe { libc::wait4(child.id() as i32, &mut status, libc::WNOHANG, &mut ru) };
        if pid != 0 {
            break pid;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("{shown} did not stop within 60 s of SIGINT");
        }
        hwm_kb = hwm_kb.max(vm_hwm_kb(child.id()));
        std::thread::sleep(Duration::from_millis(5));
    };
    if pid < 0 {
        bail!("wait4 for {shown}: {}", std::io::Error::last_os_error());
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) != 0 && !any_exit_status {
        bail!(
            "{shown} failed (exit {}):\n{err}",
            libc::WEXITSTATUS(status)
        );
    }
    if err.contains("panicked") {
        bail!("{shown} panicked:\n{err}");
    }
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    Ok(Measured {
        wall: start.elapsed(),
        user: secs(ru.ru_utime),
        sys: secs(ru.ru_stime),
        max_rss_kb: hwm_kb,
    })
}

/// Floods from namespace A on CPU 0 for `seconds`; returns the frames trafgen sent.
pub(crate) fn trafgen(lab: &Lab, conf: &Path, seconds: u64) -> Result<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns_a, "taskset", "-c", "0"])
        .args(["timeout", "-s", "INT", &seconds.to_string()])
        .args(["trafgen", "--dev", &lab.veth_a, "--conf"])
        .arg(conf)
        .args(["-P", "1", "-q"])
        .output()
        .context("run trafgen (Debian: netsniff-ng)")?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| l.trim().strip_suffix("packets outgoing"))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no packet count in trafgen's output:\n{text}"))
}

pub(crate) fn in_lab_on_cpu1(lab: &Lab, program: &Path) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.ns_b, "taskset", "-c", "1"])
        .arg(program);
    c
}

/// Runs the three tools on the same lab, one after the other.
pub fn run(probe: &Path, seconds: u64, tmp: &Path) -> Result<Vec<LiveRow>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the live benchmark needs root (network namespaces, XDP); skip it with --no-live");
    }
    let lab = Lab::new(1);
    let conf = tmp.join("trafgen.cfg");
    std::fs::write(&conf, TRAFGEN_CONF)?;
    let mut rows = Vec::new();

    // The probe, exporting to nfcapd inside the lab.
    {
        let dir = tmp.join("live-probe");
        std::fs::create_dir_all(&dir)?;
        let nf = Nfcapd::start_in(&dir, Some(&lab.ns_b));
        let stats = dir.join("books.json");
        let mut cmd = in_lab_on_cpu1(&lab, probe);
        cmd.args(["capture", "--interface", &lab.veth_b, "--cpus", "1"])
            .args(["--ipfix", &nf.url(), "--stats-json"])
            .arg(&stats);
        let (offered, m) = run_tool(&lab, &conf, seconds, &mut cmd, Stop::Signal(libc::SIGINT))?;
        let flows = nfdump_flows(&nf.finish());
        let books: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
        eprintln!("probe books: {}", books["live"]);
        rows.push(LiveRow::new(
            "probe capture (XDP native, AF_XDP copy)",
            offered,
            m,
            &flows,
            seconds,
        ));
    }
    // softflowd on libpcap, exporting IPFIX to nfcapd inside the lab.
    {
        let dir = tmp.join("live-softflowd");
        std::fs::create_dir_all(&dir)?;
        let nf = Nfcapd::start_in(&dir, Some(&lab.ns_b));
        let dest = format!("127.0.0.1:{}", nf.port);
        let ctl = dir.join("softflowd.ctl");
        let mut cmd = in_lab_on_cpu1(&lab, Path::new("softflowd"));
        cmd.args([
            "-i",
            &lab.veth_b,
            "-n",
            &dest,
            "-v",
            "10",
            "-d",
            "-m",
            "200000",
            "-c",
        ])
        .arg(&ctl);
        let (offered, m) = run_tool(&lab, &conf, seconds, &mut cmd, Stop::Softflowctl(ctl))?;
        let flows = nfdump_flows(&nf.finish());
        rows.push(LiveRow::new(
            "softflowd -i (libpcap)",
            offered,
            m,
            &flows,
            seconds,
        ));
    }
    // nfpcapd on libpcap, writing nfcapd files itself.
    {
        let dir = tmp.join("live-nfpcapd");
        std::fs::create_dir_all(&dir)?;
        let mut cmd = in_lab_on_cpu1(&lab, Path::new("nfpcapd"));
        cmd.args(["-i", &lab.veth_b, "-w"])
            .arg(&dir)
            .args(["-e", "300,60"]);
        let (offered, m) = run_tool(&lab, &conf, seconds, &mut cmd, Stop::Signal(libc::SIGTERM))?;
        let flows = nfdump_flows(&nfdump_records(&dir));
        rows.push(LiveRow::new(
            "nfpcapd -i (libpcap)",
            offered,
            m,
            &flows,
            seconds,
        ));
    }
    Ok(rows)
}

/// Prints the live table.
pub fn print(rows: &[LiveRow]) {
    println!(
        "\n| live tool (trafgen 1 core → veth → tool on the other core, {} flows) | offered pkt/s | metered pkt/s | loss % | CPU s | CPU s per M packets | peak RSS MB | flows seen |",
        FLOWS
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        let cpu = r.measured.user + r.measured.sys;
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.3} | {:.1} | {} |",
            r.name,
            r.offered as f64 / r.seconds,
            r.metered as f64 / r.seconds,
            100.0 * r.offered.saturating_sub(r.metered) as f64 / r.offered.max(1) as f64,
            cpu,
            cpu / (r.metered.max(1) as f64 / 1e6),
            r.measured.max_rss_kb as f64 / 1024.0,
            r.flows
        );
    }
}
