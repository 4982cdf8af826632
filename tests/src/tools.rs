//! Running the probe and the independent tools, and reading their output as flows.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A unidirectional flow key as collectors show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// Totals of one flow (summed over records when timeouts split it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
    pub first_ms: u64,
    pub last_ms: u64,
    pub records: u64,
}

impl Totals {
    pub fn add(&mut self, packets: u64, bytes: u64, first_ms: u64, last_ms: u64) {
        self.packets += packets;
        self.bytes += bytes;
        self.first_ms = self.first_ms.min(first_ms);
        self.last_ms = self.last_ms.max(last_ms);
        self.records += 1;
    }
}

pub type Flows = BTreeMap<Key, Totals>;

pub fn add_flow(flows: &mut Flows, k: Key, packets: u64, bytes: u64, first_ms: u64, last_ms: u64) {
    flows
        .entry(k)
        .or_insert(Totals {
            packets: 0,
            bytes: 0,
            first_ms: u64::MAX,
            last_ms: 0,
            records: 0,
        })
        .add(packets, bytes, first_ms, last_ms);
}

/// Runs the probe with `args`; panics with its stderr if it panicked.
pub fn run_probe(args: &[&str]) -> Output {
    let out = Command::new(crate::probe_bin())
        .args(args)
        .output()
        .expect("run probe");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "probe panicked:\n{stderr}");
    assert_ne!(out.status.code(), Some(101), "probe panicked:\n{stderr}");
    out
}

/// [`run_probe`], which must succeed: panics with the probe's stderr otherwise.
pub fn run_probe_ok(args: &[&str]) -> Output {
    let out = run_probe(args);
    assert!(
        out.status.success(),
        "probe {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the probe with `args` and returns its own peak resident set in KiB: the VmHWM of its
/// process read every 5 ms while it runs (a high-water mark, so the last reading holds the
/// peak until then). wait4's ru_maxrss only for a run too short to be read twice: the child starts
/// as a copy of this process until `exec`, and ru_maxrss keeps that copy's mark, which is this
/// test's own peak when the test built a large capture.
// The child is reaped by wait4, which clippy cannot see.
#[allow(clippy::zombie_processes)]
pub fn peak_rss_kib(args: &[&str]) -> i64 {
    let child = Command::new(crate::probe_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // VmHWM once the process is the probe (after exec).
    let hwm = || -> Option<i64> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)).map(str::trim);
        (field("Name:")? == "probe").then_some(())?;
        field("VmHWM:")?.trim_end_matches("kB").trim().parse().ok()
    };
    let (mut peak, mut readings) = (0, 0);
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 on our own child's pid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        assert!(got >= 0, "wait4: {}", std::io::Error::last_os_error());
        if got == pid {
            break;
        }
        if let Some(kib) = hwm() {
            peak = peak.max(kib);
            readings += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "probe {args:?} failed: status {status}"
    );
    if readings >= 2 {
        peak
    } else {
        ru.ru_maxrss
    }
}

/// Reads `--stats-json` output.
pub fn read_books(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("stats json written")).unwrap()
}

/// Asserts the frame books balance: read = metered + filtered + malformed.
pub fn assert_balanced(books: &serde_json::Value) {
    let f = &books["frames"];
    let n = |k: &str| f[k].as_u64().unwrap();
    assert_eq!(
        n("read"),
        n("metered") + n("filtered") + n("malformed") + n("duplicates_dropped"),
        "books: {f}"
    );
    let by = |k: &str| {
        f[k].as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(by("filtered_by_reason"), n("filtered"));
    assert_eq!(by("malformed_by_reason"), n("malformed"));
    assert_eq!(f["balanced"], true);
}

/// A free UDP port on loopback (bound and released; the race is harmless in tests).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `port` is bound in the network namespace of process `pid`.
fn udp_port_is_bound(pid: u32, port: u16) -> bool {
    let hex = format!(":{port:04X} ");
    std::fs::read_to_string(format!("/proc/{pid}/net/udp"))
        .map(|s| s.contains(&hex))
        .unwrap_or(false)
}

/// A real nfcapd on a loopback port, writing into its own directory.
pub struct Nfcapd {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl Nfcapd {
    pub fn start(dir: &Path) -> Nfcapd {
        Self::start_in(dir, None)
    }

    /// Starts nfcapd on 127.0.0.1 inside network namespace `ns` (or this process's own).
    pub fn start_in(dir: &Path, ns: Option<&str>) -> Nfcapd {
        let port = free_udp_port();
        let flows = dir.join("nfcapd");
        std::fs::create_dir_all(&flows).unwrap();
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nfcapd"]);
                c
            }
            None => Command::new("nfcapd"),
        };
        let child = cmd
            .args([
                "-b",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-B",
                "16000000",
                "-t",
                "3600",
                "-w",
            ])
            .arg(&flows)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nfcapd is installed (cargo xtask deps)");
        let deadline = Instant::now() + Duration::from_secs(10);
        // `ip netns exec` execs nfcapd in place, so the child's pid is nfcapd's.
        while !udp_port_is_bound(child.id(), port) {
            assert!(Instant::now() < deadline, "nfcapd did not bind port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nfcapd {
            child: Some(child),
            port,
            dir: flows,
        }
    }

    pub fn url(&self) -> String {
        format!("udp://127.0.0.1:{}", self.port)
    }

    /// Lets nfcapd drain its socket, stops it (it writes its file on SIGTERM) and returns what
    /// nfdump reads from the directory.
    pub fn finish(mut self) -> Vec<serde_json::Value> {
        std::thread::sleep(Duration::from_millis(700));
        let mut child = self.child.take().unwrap();
        crate::signal(child.id(), libc::SIGTERM);
        child.wait().unwrap();
        nfdump_records(&self.dir)
    }
}

impl Drop for Nfcapd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a tool to completion and returns its stdout; panics with its stderr when it fails.
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The given tshark `fields` of every frame of a pcap, one tab-separated line per frame, for
/// frames matching `filter` (a display filter; empty for all). `frame.md5_hash` is available.
pub fn tshark_frames(pcap: &Path, filter: &str, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-o", "frame.generate_md5_hash:TRUE", "-n", "-r"])
        .arg(pcap)
        .args(["-T", "fields"]);
    if !filter.is_empty() {
        cmd.args(["-Y", filter]);
    }
    for f in fields {
        cmd.args(["-e", f]);
    }
    stdout_of(&mut cmd).lines().map(String::from).collect()
}

/// The packets in `--print json` output: the sum of every line's packetDeltaCount.
pub fn json_packets(stdout: &[u8]) -> u64 {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["packetDeltaCount"]
                .as_u64()
                .unwrap()
        })
        .sum()
}

/// Every record nfdump reads from a directory of nfcapd files, as JSON objects.
pub fn nfdump_records(dir: &Path) -> Vec<serde_json::Value> {
    let text = stdout_of(
        Command::new("nfdump")
            .env("TZ", "UTC")
            .arg("-R")
            .arg(dir)
            .args(["-q", "-o", "json"]),
    );
    let text = text.trim().trim_end_matches(',');
    if text.is_empty() || text.contains("No matching flows") {
        return vec![];
    }
    let text = if text.starts_with('[') {
        text.to_string()
    } else {
        format!("[{text}]")
    };
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("nfdump json: {e}\n{text}"))
}

/// Parses nfdump's `2009-03-19T05:21:35.585` (UTC) into milliseconds since the epoch.
pub fn parse_nfdump_time(s: &str) -> u64 {
    let (date, time) = s.split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<u64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    let days = days_from_civil(d[0], d[1] as u32, d[2] as u32);
    (days as u64 * 86400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1000 + ms.parse::<u64>().unwrap()
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// nfdump records as flows. ICMP keeps type * 256 + code in the destination port.
pub fn nfdump_flows(records: &[serde_json::Value]) -> Flows {
    let mut flows = Flows::new();
    for r in records.iter().filter(|r| r["type"] == "FLOW") {
        let addr = |k4: &str, k6: &str| -> IpAddr {
            r.get(k4)
                .or_else(|| r.get(k6))
                .and_then(|v| v.as_str())
                .unwrap()
                .parse()
                .unwrap()
        };
        let proto = r["proto"].as_u64().unwrap() as u8;
        let mut dport = r["dst_port"].as_u64().unwrap_or(0) as u16;
        if proto == 1 || proto == 58 {
            if let (Some(t), Some(c)) = (r.get("icmp_type"), r.get("icmp_code")) {
                dport = (t.as_u64().unwrap() * 256 + c.as_u64().unwrap()) as u16;
            }
        }
        let k = Key {
            src: addr("src4_addr", "src6_addr"),
            dst: addr("dst4_addr", "dst6_addr"),
            sport: r["src_port"].as_u64().unwrap_or(0) as u16,
            dport,
            proto,
        };
        add_flow(
            &mut flows,
            k,
            r["in_packets"].as_u64().unwrap(),
            r["in_bytes"].as_u64().unwrap(),
            parse_nfdump_time(r["first"].as_str().unwrap()),
            parse_nfdump_time(r["last"].as_str().unwrap()),
        );
    }
    flows
}

/// Ground truth from tshark: one line per frame with the outer IP header's fields, turned into
/// flows the way the probe defines them (IP-layer bytes, ICMP type/code as destination port).
/// Frames without IP are left out.
pub fn tshark_flows(pcap: &Path) -> Flows {
    tshark_flows_at(pcap, "f", &[])
}

/// The flows of the innermost headers, as tshark decodes every tunnel (its last occurrence of
/// each field); `extra` adds tshark options such as `-d udp.port==8472,vxlan`. Not for
/// captures with ICMP errors, whose quoted header would be the last occurrence.
pub fn tshark_inner_flows(pcap: &Path, extra: &[&str]) -> Flows {
    tshark_flows_at(pcap, "l", extra)
}

fn tshark_flows_at(pcap: &Path, occurrence: &str, extra: &[&str]) -> Flows {
    let fields = [
        "frame.time_epoch",
        "ip.src",
        "ip.dst",
        "ipv6.src",
        "ipv6.dst",
        "ip.proto",
        "ip.len",
        "ipv6.plen",
        "tcp.srcport",
        "tcp.dstport",
        "udp.srcport",
        "udp.dstport",
        "icmp.type",
        "icmp.code",
        "icmpv6.type",
        "icmpv6.code",
        "frame.protocols",
    ];
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(pcap)
        .args(["-n", "-T", "fields", "-E", "separator=|", "-E"]);
    cmd.arg(format!("occurrence={occurrence}"));
    cmd.args(extra);
    cmd.args(["-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("tshark is installed (cargo xtask deps)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A capture cut short is still read up to the cut, which is what the tests compare.
    assert!(
        out.status.success() || stderr.contains("cut short"),
        "tshark failed: {stderr}"
    );
    let mut flows = Flows::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let c: Vec<&str> = line.split('|').collect();
        let num = |i: usize| c[i].parse::<u64>().ok();
        let (secs, frac) = c[0].split_once('.').unwrap_or((c[0], "0"));
        let frac = format!("{frac:0<9}");
        let ts_ms = secs.parse::<u64>().unwrap() * 1000 + frac[..3].parse::<u64>().unwrap();
        // With last occurrences both families can be present (IPv6 in an IPv4 tunnel): the
        // innermost IP layer of the frame decides.
        // A tunnel around something that is not IP (ARP in VXLAN) has no inner flow.
        if occurrence == "l" {
            let layers: Vec<&str> = c[16].split(':').collect();
            let last_ip = layers.iter().rposition(|l| *l == "ip" || *l == "ipv6");
            let last_eth = layers.iter().rposition(|l| *l == "eth");
            if last_eth > last_ip {
                continue;
            }
        }
        let v6_inside = occurrence == "l"
            && c[16].split(':').rfind(|l| *l == "ip" || *l == "ipv6") == Some("ipv6");
        let (src, dst, bytes) = if !c[1].is_empty() && !v6_inside {
            (
                c[1].parse().unwrap(),
                c[2].parse().unwrap(),
                num(6).unwrap(),
            )
        } else if !c[3].is_empty() {
            (
                c[3].parse().unwrap(),
                c[4].parse().unwrap(),
                num(7).unwrap() + 40,
            )
        } else {
            continue;
        };
        // The innermost packet: with the last occurrences, the fields of a transport that
        // only the outer packet has (the UDP of a tunnel around an ICMP packet) would show,
        // so the transport is the protocol after the last IP layer of the frame.
        let innermost_l4 = (occurrence == "l").then(|| {
            let layers: Vec<&str> = c[16].split(':').collect();
            let last_ip = layers.iter().rposition(|l| *l == "ip" || *l == "ipv6");
            last_ip
                .and_then(|i| layers[i + 1..].iter().find(|l| !l.starts_with("ipv6.")))
                .copied()
                .unwrap_or("")
        });
        let (proto, sport, dport) = if let Some(l4) = innermost_l4
            .filter(|l| matches!(*l, "icmp" | "icmpv6") || (*l == "tcp" && num(8).is_none()))
        {
            match l4 {
                "icmp" => (1, 0, num(12).unwrap_or(0) * 256 + num(13).unwrap_or(0)),
                "icmpv6" => (58, 0, num(14).unwrap_or(0) * 256 + num(15).unwrap_or(0)),
                _ => (6, 0, 0),
            }
        } else if let (Some(s), Some(d)) = (num(8), num(9)) {
            (6, s, d)
        } else if let (Some(s), Some(d)) = (num(10), num(11)) {
            (17, s, d)
        } else if let (Some(t), Some(code)) = (num(12), num(13)) {
            (1, 0, t * 256 + code)
        } else if let (Some(t), Some(code)) = (num(14), num(15)) {
            (58, 0, t * 256 + code)
        } else {
            (num(5).unwrap_or(0), 0, 0)
        };
        let k = Key {
            src,
            dst,
            sport: sport as u16,
            dport: dport as u16,
            proto: proto as u8,
        };
        add_flow(&mut flows, k, 1, bytes, ts_ms, ts_ms);
    }
    flows
}

/// Compares flows field by field and explains every difference.
pub fn assert_same_flows(truth: &Flows, got: &Flows, what: &str) {
    let mut problems = vec![];
    for (k, t) in truth {
        match got.get(k) {
            None => problems.push(format!("missing {k:?} {t:?}")),
            Some(g)
                if (g.packets, g.bytes, g.first_ms, g.last_ms)
                    != (t.packets, t.bytes, t.first_ms, t.last_ms) =>
            {
                problems.push(format!("{k:?}: truth {t:?}, {what} {g:?}"))
            }
            _ => {}
        }
    }
    for k in got.keys().filter(|k| !truth.contains_key(k)) {
        problems.push(format!("unexpected {k:?} {:?}", got[k]));
    }
    assert!(
        problems.is_empty(),
        "{what} differs from ground truth ({} flows):\n{}",
        truth.len(),
        problems.join("\n")
    );
}

/// `probe spool replay --spool SPOOL -w OUT` and any `extra` options (a time window): the
/// spool's messages as an IPFIX file.
pub fn spool_replay_to_file(spool: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "spool",
        "replay",
        "--spool",
        spool.to_str().unwrap(),
        "-w",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_probe_ok(&args)
}

/// `probe read` from a FIFO the test writes to, so the test decides when time moves on.
pub struct PipedProbe {
    child: Child,
    writer: crate::capture::PcapWriter,
}

impl PipedProbe {
    pub fn start(tmp: &crate::TempDir, args: &[&str]) -> PipedProbe {
        let fifo = tmp.path().join("in.pcap");
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let child = Command::new(crate::probe_bin())
            .arg("read")
            .arg(&fifo)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let writer =
            crate::capture::PcapWriter::create(&fifo, crate::capture::LINKTYPE_ETHERNET, false)
                .unwrap();
        PipedProbe { child, writer }
    }

    pub fn send(&mut self, frames: &[crate::capture::Frame]) {
        for f in frames {
            self.writer.write(f.ts_ns, &f.data).unwrap();
        }
        self.writer.flush().unwrap();
    }

    /// Stops the probe with SIGTERM (as systemd does) and waits; returns whether it exited
    /// with status 0, and its stderr.
    pub fn terminate(self) -> (bool, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let out = self.child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Kills the probe with SIGKILL (no chance to write anything more); returns its stderr.
    pub fn kill9(mut self) -> String {
        self.child.kill().unwrap();
        let out = self.child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Closes the input (end of capture) and waits for the probe; returns its stderr.
    pub fn finish(self) -> String {
        drop(self.writer);
        let out = self.child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }
}
