//! `probe doctor -i IFACE`: a preflight that changes nothing and says what `probe capture`
//! would use on this host and interface, and what stands in its way, each with its fix.
//!
//! It asks the kernel rather than guessing: the driver's XDP features (netlink), the
//! interface's offloads (ethtool), the XDP program already attached (if any), and whether the
//! probe's own XDP program loads here and with which timestamp source (loading a program
//! touches no interface; it is unloaded when the doctor exits). Nothing is attached.
//!
//! Each finding is `ok`, `note` (works, with a cost), `warn` (capture starts but will see less
//! or differently than the operator may think) or `fail` (capture cannot start). The exit
//! status is 0 when capture can start, 1 when it cannot.

use super::netdev;
use crate::sys::privileges::{CAP_BPF, CAP_IPC_LOCK, CAP_NET_ADMIN, CAP_NET_RAW};
use std::fmt;

/// How a finding bears on capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Note,
    Warn,
    Fail,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Ok => "ok  ",
            Level::Note => "note",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        })
    }
}

/// One thing the doctor found: what, and the fix when there is one.
#[derive(Clone, Debug)]
pub struct Finding {
    pub level: Level,
    pub subject: &'static str,
    pub text: String,
    pub fix: Option<String>,
}

impl Finding {
    fn new(level: Level, subject: &'static str, text: impl Into<String>) -> Finding {
        Finding {
            level,
            subject,
            text: text.into(),
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
}

/// What the doctor found, and what capture would use.
#[derive(Clone, Debug)]
pub struct Diagnosis {
    pub interface: String,
    pub findings: Vec<Finding>,
    /// The one-line plan `probe capture -i IFACE` would start with, when it can.
    pub plan: Option<String>,
}

impl Diagnosis {
    pub fn can_capture(&self) -> bool {
        self.findings.iter().all(|f| f.level != Level::Fail)
    }

    /// The findings as lines for a terminal.
    pub fn render(&self) -> String {
        let mut s = format!("probe doctor: {}\n", self.interface);
        for f in &self.findings {
            s += &format!("  {}  {}: {}\n", f.level, f.subject, f.text);
            if let Some(fix) = &f.fix {
                s += &format!("        fix: {fix}\n");
            }
        }
        match &self.plan {
            Some(p) if self.can_capture() => s += &format!("capture can start: {p}\n"),
            _ => s += "capture cannot start: fix the FAIL lines above\n",
        }
        s
    }
}

/// Bytes of headroom the kernel keeps in front of each UMEM frame (XDP_PACKET_HEADROOM).
const XDP_HEADROOM: u64 = 256;
/// Ethernet header and two VLAN tags: what a frame adds to the MTU.
const L2_OVERHEAD: u64 = 14 + 8;

const CAP_NAMES: [(u32, &str); 3] = [
    (CAP_BPF, "CAP_BPF"),
    (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
    (CAP_NET_RAW, "CAP_NET_RAW"),
];

/// What the driver declares (`None` where the kernel does not say: before Linux 6.3).
#[derive(Clone, Copy, Default)]
struct Driver {
    native: Option<bool>,
    zero_copy: Option<bool>,
    multi_buffer: Option<bool>,
}

impl Driver {
    fn mode(&self) -> &'static str {
        match self.native {
            Some(true) => "native",
            Some(false) => "generic",
            None => "native if the driver takes it, else generic",
        }
    }
}

/// Examines `iface` for capture with UMEM frames of `frame_size` bytes, `umem_frames` per
/// queue. Changes nothing.
pub fn examine(iface: &str, frame_size: u32, umem_frames: u32) -> Diagnosis {
    let mut f = Vec::new();
    kernel(&mut f);
    let caps = crate::sys::privileges::effective_caps();
    let privileged = privileges(&mut f, caps);
    let ifindex = match bpf::ifindex(iface) {
        Ok(i) => i,
        Err(e) => {
            f.push(
                Finding::new(Level::Fail, "interface", e.to_string())
                    .fix("name one of `ip -br link show`"),
            );
            return Diagnosis {
                interface: iface.to_string(),
                findings: f,
                plan: None,
            };
        }
    };
    let eth = netdev::ethtool(iface).unwrap_or_default();
    let mtu = netdev::sysfs_u64(iface, "mtu").unwrap_or(1500);
    let queues = interface(&mut f, iface, ifindex, &eth, mtu);
    attached(&mut f, iface, ifindex, privileged);
    let driver = driver(&mut f, ifindex);
    // Loaded now (the prefix stamp takes room in each UMEM frame), reported last.
    let (stamp, program) = if privileged {
        let (s, p) = program();
        (s, Some(p))
    } else {
        (None, None)
    };
    frames(&mut f, iface, mtu, frame_size, stamp, &driver);
    offloads(&mut f, iface, &eth, &driver);
    memlock(&mut f, caps, frame_size, umem_frames, queues);
    f.extend(program);
    let mut d = Diagnosis {
        interface: iface.to_string(),
        findings: f,
        plan: None,
    };
    if d.can_capture() {
        d.plan = Some(format!(
            "XDP in {} mode on {queues} queue{}, {} mode, timestamps {}",
            driver.mode(),
            plural(queues),
            match driver.zero_copy {
                Some(true) => "zero-copy",
                Some(false) => "copy",
                None => "zero-copy if the driver takes it, else copy",
            },
            stamp.map(|s| s.name()).unwrap_or("unknown")
        ));
    }
    d
}

fn kernel(f: &mut Vec<Finding>) {
    let release = uname_release();
    f.push(
        if std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            Finding::new(Level::Ok, "kernel", format!("Linux {release}, BTF present"))
        } else {
            Finding::new(
                Level::Note,
                "kernel",
                format!(
                    "Linux {release}, no BTF (/sys/kernel/btf/vmlinux): the probe's program needs none"
                ),
            )
        },
    );
}

/// Whether the process has what loading and attaching XDP takes.
fn privileges(f: &mut Vec<Finding>, caps: Option<u64>) -> bool {
    let has = |bit: u32| caps.is_some_and(|c| c & (1u64 << bit) != 0);
    let missing: Vec<&str> = CAP_NAMES
        .iter()
        .filter(|(bit, _)| !has(*bit))
        .map(|&(_, n)| n)
        .collect();
    if missing.is_empty() {
        f.push(Finding::new(
            Level::Ok,
            "privileges",
            "CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW present",
        ));
        return true;
    }
    f.push(
        Finding::new(
            Level::Fail,
            "privileges",
            format!("missing {}", missing.join(", ")),
        )
        .fix("run as root, or as a service with the capabilities of dist/probe.service"),
    );
    false
}

/// The interface itself and its queues against the CPUs; returns the RX queue count.
fn interface(
    f: &mut Vec<Finding>,
    iface: &str,
    ifindex: u32,
    eth: &netdev::Ethtool,
    mtu: u64,
) -> u32 {
    let state = std::fs::read_to_string(format!("/sys/class/net/{iface}/operstate"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let text = format!(
        "{iface} (index {ifindex}), driver {}, state {state}, MTU {mtu}",
        eth.driver.as_deref().unwrap_or("unknown (no ethtool)")
    );
    f.push(if state == "down" {
        Finding::new(Level::Warn, "interface", text).fix(format!(
            "ip link set {iface} up (a down interface receives nothing)"
        ))
    } else {
        Finding::new(Level::Ok, "interface", text)
    });
    let queues = super::rx_queue_count(iface).unwrap_or(1);
    let cpus = crate::sys::cpus::allowed().len().max(1) as u32;
    f.push(if queues > cpus {
        Finding::new(
            Level::Note,
            "queues",
            format!("{queues} RX queues, {cpus} CPUs: several RX threads share a CPU"),
        )
        .fix(format!(
            "fewer queues (ethtool -L {iface} combined {cpus}) or --queues"
        ))
    } else {
        Finding::new(
            Level::Ok,
            "queues",
            format!(
                "{queues} RX queue{} on {cpus} CPU{}{}",
                plural(queues),
                plural(cpus),
                if queues < cpus {
                    ": the fan-out meters them on every CPU"
                } else {
                    ""
                }
            ),
        )
    });
    queues
}

/// An XDP program someone else already attached (capture would be refused).
fn attached(f: &mut Vec<Finding>, iface: &str, ifindex: u32, privileged: bool) {
    match bpf::attached_xdp(ifindex) {
        Ok(None) => f.push(Finding::new(Level::Ok, "xdp", "no XDP program attached")),
        Ok(Some(a)) => f.push(
            Finding::new(
                Level::Fail,
                "xdp",
                format!(
                    "an XDP program is already attached ({} mode, id {})",
                    a.mode, a.prog_id
                ),
            )
            .fix(format!(
                "stop its owner (another probe?), see `bpftool net show dev {iface}` and `bpftool prog show id {}`",
                a.prog_id
            )),
        ),
        Err(e) if privileged => f.push(Finding::new(
            Level::Warn,
            "xdp",
            format!("cannot tell whether an XDP program is attached: {e}"),
        )),
        Err(_) => {}
    }
}

/// The driver's XDP features, by netlink.
fn driver(f: &mut Vec<Finding>, ifindex: u32) -> Driver {
    let d = match netdev::xdp_features(ifindex) {
        Ok(Some(x)) => {
            let names = x.names();
            f.push(Finding::new(
                if x.native() { Level::Ok } else { Level::Note },
                "driver",
                format!(
                    "xdp-features: {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
            Driver {
                native: Some(x.native()),
                zero_copy: Some(x.zero_copy()),
                multi_buffer: Some(x.multi_buffer()),
            }
        }
        Ok(None) => {
            f.push(Finding::new(
                Level::Note,
                "driver",
                "this kernel does not report XDP features (before Linux 6.3): `probe capture` tries native mode and falls back to generic",
            ));
            Driver::default()
        }
        Err(e) => {
            f.push(Finding::new(
                Level::Note,
                "driver",
                format!("cannot read the XDP features: {e}"),
            ));
            Driver::default()
        }
    };
    if d.native == Some(false) {
        f.push(Finding::new(
            Level::Note,
            "xdp mode",
            "the driver has no native XDP: generic mode (the kernel's hook, after the socket buffer is built; more CPU per frame)",
        ));
    }
    match d.zero_copy {
        Some(true) => f.push(Finding::new(
            Level::Ok,
            "zero-copy",
            "the driver offers AF_XDP zero-copy",
        )),
        Some(false) => f.push(Finding::new(
            Level::Note,
            "zero-copy",
            "not offered by the driver: copy mode (one copy per frame into the UMEM)",
        )),
        None => {}
    }
    d
}

/// Whether the probe's program loads here, and with which timestamps.
fn program() -> (Option<bpf::Stamp>, Finding) {
    match bpf::Steering::load(&bpf::SteerConfig::default(), None) {
        Ok(s) => {
            let level = match s.stamp() {
                bpf::Stamp::UserSpace => Level::Warn,
                bpf::Stamp::Prefix => Level::Note,
                bpf::Stamp::Metadata => Level::Ok,
            };
            let mut text = format!("the XDP program loads; timestamps: {}", s.stamp());
            if let Some(why) = s.stamp_fallback_reason() {
                text += &format!(" ({why})");
            }
            (Some(s.stamp()), Finding::new(level, "program", text))
        }
        Err(e) => (
            None,
            Finding::new(Level::Fail, "program", format!("{e}")).fix(
                "see the verifier's message above; a kernel with XDP (4.18+) and BPF links (5.9+)",
            ),
        ),
    }
}

/// The MTU against what a UMEM frame holds (less the timestamp prefix where it is used) and
/// against single-buffer native XDP.
fn frames(
    f: &mut Vec<Finding>,
    iface: &str,
    mtu: u64,
    frame_size: u32,
    stamp: Option<bpf::Stamp>,
    driver: &Driver,
) {
    let prefix = if stamp == Some(bpf::Stamp::Prefix) {
        bpf::META_LEN as u64
    } else {
        0
    };
    let room = frame_size as u64 - XDP_HEADROOM - prefix;
    let longest = mtu + L2_OVERHEAD;
    if longest <= room {
        f.push(Finding::new(
            Level::Ok,
            "mtu",
            format!("MTU {mtu}: frames fit a {frame_size}-byte UMEM frame"),
        ));
        return;
    }
    let after = if prefix > 0 {
        "after the headroom and the 16-byte timestamp prefix"
    } else {
        "after the headroom"
    };
    f.push(
        Finding::new(
            Level::Warn,
            "mtu",
            format!(
                "MTU {mtu}: frames up to {longest} bytes do not fit a {frame_size}-byte UMEM frame ({room} bytes {after}); longer frames are dropped and counted"
            ),
        )
        .fix(if longest <= 4096 - XDP_HEADROOM - prefix {
            "--frame-size 4096".to_string()
        } else {
            format!("lower the MTU (ip link set {iface} mtu 3800) or accept the loss of jumbo frames")
        }),
    );
    if driver.native == Some(true) && driver.multi_buffer == Some(false) && mtu > 3498 {
        f.push(
            Finding::new(
                Level::Warn,
                "mtu",
                format!("MTU {mtu} is above what single-buffer native XDP takes on most drivers, and this driver has no multi-buffer XDP (rx-sg): attach may fail in native mode"),
            )
            .fix("--xdp-mode generic, or a lower MTU"),
        );
    }
}

/// Offloads that change what the probe sees.
fn offloads(f: &mut Vec<Finding>, iface: &str, eth: &netdev::Ethtool, driver: &Driver) {
    let native = driver.native == Some(true);
    for (on, name, what, level) in [
        (
            eth.lro,
            "lro",
            "the NIC merges TCP segments before XDP sees them: packet counts and sizes are of merged frames",
            Level::Warn,
        ),
        (
            eth.gro,
            "gro",
            "merges TCP segments in the stack: generic-mode XDP sees merged frames (native mode sees them before GRO)",
            if native { Level::Note } else { Level::Warn },
        ),
        (
            eth.rxvlan,
            "rxvlan",
            "NICs that strip VLAN tags in hardware hand XDP the frame without its tag: records may lack vlanId (veth keeps them)",
            Level::Note,
        ),
    ] {
        if on == Some(true) {
            f.push(
                Finding::new(level, "offload", format!("{name} on: {what}"))
                    .fix(format!("ethtool -K {iface} {name} off")),
            );
        }
    }
}

/// Locked memory for the UMEM against RLIMIT_MEMLOCK (CAP_IPC_LOCK lifts the limit).
fn memlock(
    f: &mut Vec<Finding>,
    caps: Option<u64>,
    frame_size: u32,
    umem_frames: u32,
    queues: u32,
) {
    let umem = frame_size as u64 * umem_frames as u64 * queues as u64;
    let ipc_lock = caps.is_some_and(|c| c & (1u64 << CAP_IPC_LOCK) != 0);
    match memlock_limit() {
        Some(limit) if !ipc_lock && limit < umem => f.push(
            Finding::new(
                Level::Fail,
                "memlock",
                format!(
                    "the UMEM needs {} MiB of locked memory ({queues} queue{} x {umem_frames} frames x {frame_size} bytes), the limit is {} MiB",
                    umem >> 20,
                    plural(queues),
                    limit >> 20
                ),
            )
            .fix("ulimit -l unlimited, LimitMEMLOCK=infinity in the unit, or fewer --umem-frames"),
        ),
        _ => f.push(Finding::new(
            Level::Ok,
            "memlock",
            format!(
                "{} MiB of UMEM can be locked{}",
                umem >> 20,
                if ipc_lock { " (CAP_IPC_LOCK)" } else { "" }
            ),
        )),
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// RLIMIT_MEMLOCK's soft limit in bytes; `None` when unlimited.
fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0
        || r.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(r.rlim_cur)
}

fn uname_release() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let r = &u.release;
    let end = r.iter().position(|&c| c == 0).unwrap_or(r.len());
    String::from_utf8_lossy(&r[..end].iter().map(|&c| c as u8).collect::<Vec<_>>()).into_owned()
}
