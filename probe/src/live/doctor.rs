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

/// Examines `iface` for capture with UMEM frames of `frame_size` bytes, `umem_frames` per
/// queue. Changes nothing.
pub fn examine(iface: &str, frame_size: u32, umem_frames: u32) -> Diagnosis {
    let mut f = Vec::new();
    let mut d = Diagnosis {
        interface: iface.to_string(),
        findings: Vec::new(),
        plan: None,
    };

    // The kernel.
    let release = uname_release();
    let btf = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
    f.push(if btf {
        Finding::new(Level::Ok, "kernel", format!("Linux {release}, BTF present"))
    } else {
        Finding::new(
            Level::Note,
            "kernel",
            format!(
                "Linux {release}, no BTF (/sys/kernel/btf/vmlinux): the probe's program needs none"
            ),
        )
    });

    // Privileges.
    let caps = effective_caps();
    let privileged = caps
        .map(|c| c & CAPS_NEEDED == CAPS_NEEDED)
        .unwrap_or(false);
    if privileged {
        f.push(Finding::new(
            Level::Ok,
            "privileges",
            "CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW present",
        ));
    } else {
        let missing: Vec<&str> = CAP_NAMES
            .iter()
            .filter(|(bit, _)| caps.map(|c| c & (1u64 << bit) == 0).unwrap_or(true))
            .map(|&(_, n)| n)
            .collect();
        f.push(
            Finding::new(
                Level::Fail,
                "privileges",
                format!("missing {}", missing.join(", ")),
            )
            .fix("run as root, or as a service with the capabilities of dist/probe.service"),
        );
    }

    // The interface.
    let ifindex = match bpf::ifindex(iface) {
        Ok(i) => i,
        Err(e) => {
            f.push(
                Finding::new(Level::Fail, "interface", e.to_string())
                    .fix("name one of `ip -br link show`"),
            );
            d.findings = f;
            return d;
        }
    };
    let eth = netdev::ethtool(iface).unwrap_or_default();
    let mtu = netdev::sysfs_u64(iface, "mtu").unwrap_or(1500);
    let up = std::fs::read_to_string(format!("/sys/class/net/{iface}/operstate"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let queues = super::rx_queue_count(iface).unwrap_or(1);
    let cpus = crate::cpus::allowed().len().max(1) as u32;
    f.push(Finding::new(
        if up == "down" { Level::Warn } else { Level::Ok },
        "interface",
        format!(
            "{iface} (index {ifindex}), driver {}, state {up}, MTU {mtu}",
            eth.driver.as_deref().unwrap_or("unknown (no ethtool)")
        ),
    ));
    if up == "down" {
        let last = f.pop().expect("just pushed");
        f.push(last.fix(format!(
            "ip link set {iface} up (a down interface receives nothing)"
        )));
    }
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

    // Who already has XDP here.
    let mut busy = false;
    match bpf::attached_xdp(ifindex) {
        Ok(None) => f.push(Finding::new(Level::Ok, "xdp", "no XDP program attached")),
        Ok(Some(a)) => {
            busy = true;
            f.push(
                Finding::new(
                    Level::Fail,
                    "xdp",
                    format!("an XDP program is already attached ({} mode, id {})", a.mode, a.prog_id),
                )
                .fix(format!(
                    "stop its owner (another probe?), see `bpftool net show dev {iface}` and `bpftool prog show id {}`",
                    a.prog_id
                )),
            )
        }
        Err(e) if privileged => f.push(Finding::new(
            Level::Warn,
            "xdp",
            format!("cannot tell whether an XDP program is attached: {e}"),
        )),
        Err(_) => {}
    }

    // What the driver offers.
    let features = netdev::xdp_features(ifindex);
    let (native, zero_copy, multi_buffer) = match &features {
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
            (
                Some(x.native()),
                Some(x.zero_copy()),
                Some(x.multi_buffer()),
            )
        }
        Ok(None) => {
            f.push(Finding::new(
                Level::Note,
                "driver",
                "this kernel does not report XDP features (before Linux 6.3): `probe capture` tries native mode and falls back to generic",
            ));
            (None, None, None)
        }
        Err(e) => {
            f.push(Finding::new(
                Level::Note,
                "driver",
                format!("cannot read the XDP features: {e}"),
            ));
            (None, None, None)
        }
    };
    let mode = match native {
        Some(true) => "native",
        Some(false) => {
            let last = Finding::new(
                Level::Note,
                "xdp mode",
                "the driver has no native XDP: generic mode (the kernel's hook, after the socket buffer is built; more CPU per frame)",
            );
            f.push(last);
            "generic"
        }
        None => "native if the driver takes it, else generic",
    };
    match zero_copy {
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

    // Frame sizes.
    let room = frame_size as u64 - XDP_HEADROOM;
    if mtu + L2_OVERHEAD > room {
        let fits_4k = mtu + L2_OVERHEAD <= 4096 - XDP_HEADROOM;
        f.push(
            Finding::new(
                Level::Warn,
                "mtu",
                format!(
                    "MTU {mtu}: frames up to {} bytes do not fit a {frame_size}-byte UMEM frame ({room} bytes after the headroom); longer frames are dropped and counted",
                    mtu + L2_OVERHEAD
                ),
            )
            .fix(if fits_4k {
                "--frame-size 4096".to_string()
            } else {
                format!(
                    "lower the MTU (ip link set {iface} mtu 3800) or accept the loss of jumbo frames"
                )
            }),
        );
        if mode == "native" && multi_buffer == Some(false) && mtu > 3498 {
            f.push(
                Finding::new(
                    Level::Warn,
                    "mtu",
                    format!("MTU {mtu} is above what single-buffer native XDP takes on most drivers, and this driver has no multi-buffer XDP (rx-sg): attach may fail in native mode"),
                )
                .fix("--xdp-mode generic, or a lower MTU"),
            );
        }
    } else {
        f.push(Finding::new(
            Level::Ok,
            "mtu",
            format!("MTU {mtu}: frames fit a {frame_size}-byte UMEM frame"),
        ));
    }

    // Offloads that change what the probe sees.
    for (on, name, what) in [
        (
            eth.lro,
            "lro",
            "the NIC merges TCP segments before XDP sees them: packet counts and sizes are of merged frames",
        ),
        (
            eth.gro,
            "gro",
            "merges TCP segments in the stack: generic-mode XDP sees merged frames (native mode sees them before GRO)",
        ),
        (
            eth.rxvlan,
            "rxvlan",
            "NICs that strip VLAN tags in hardware hand XDP the frame without its tag: records may lack vlanId (veth keeps them)",
        ),
    ] {
        if on == Some(true) {
            let level = if (name == "gro" && mode == "native") || name == "rxvlan" {
                Level::Note
            } else {
                Level::Warn
            };
            f.push(
                Finding::new(level, "offload", format!("{name} on: {what}"))
                    .fix(format!("ethtool -K {iface} {name} off")),
            );
        }
    }

    // Locked memory for the UMEM.
    let umem = frame_size as u64 * umem_frames as u64 * queues as u64;
    let ipc_lock = caps
        .map(|c| c & (1u64 << CAP_IPC_LOCK) != 0)
        .unwrap_or(false);
    let limit = memlock_limit();
    if !ipc_lock && limit.is_some_and(|l| l < umem) {
        f.push(
            Finding::new(
                Level::Fail,
                "memlock",
                format!(
                    "the UMEM needs {} MiB of locked memory ({queues} queue{} x {umem_frames} frames x {frame_size} bytes), the limit is {} MiB",
                    umem >> 20,
                    plural(queues),
                    limit.unwrap_or(0) >> 20
                ),
            )
            .fix("ulimit -l unlimited, LimitMEMLOCK=infinity in the unit, or fewer --umem-frames"),
        );
    } else {
        f.push(Finding::new(
            Level::Ok,
            "memlock",
            format!(
                "{} MiB of UMEM can be locked{}",
                umem >> 20,
                if ipc_lock { " (CAP_IPC_LOCK)" } else { "" }
            ),
        ));
    }

    // Does our program load here, and with which timestamps?
    let mut stamp = None;
    if privileged {
        match bpf::Steering::load(&bpf::SteerConfig::default(), None) {
            Ok(s) => {
                let why: Vec<String> = s
                    .stamp_fallbacks()
                    .iter()
                    .map(|(st, why)| format!("this kernel refuses {}: {why}", st.name()))
                    .collect();
                let level = match s.stamp() {
                    bpf::Stamp::UserSpace => Level::Warn,
                    bpf::Stamp::Prefix => Level::Note,
                    bpf::Stamp::Metadata => Level::Ok,
                };
                let mut text = format!("the XDP program loads; timestamps: {}", s.stamp());
                if !why.is_empty() {
                    text += &format!(" ({})", why.join("; "));
                }
                f.push(Finding::new(level, "program", text));
                stamp = Some(s.stamp());
            }
            Err(e) => f.push(Finding::new(Level::Fail, "program", format!("{e}")).fix(
                "see the verifier's message above; a kernel with XDP (4.18+) and BPF links (5.9+)",
            )),
        }
    }

    d.findings = f;
    if d.can_capture() && !busy {
        d.plan = Some(format!(
            "XDP in {mode} mode on {queues} queue{}, {} mode, timestamps {}",
            plural(queues),
            match zero_copy {
                Some(true) => "zero-copy",
                Some(false) => "copy",
                None => "zero-copy if the driver takes it, else copy",
            },
            stamp.map(|s| s.name()).unwrap_or("unknown")
        ));
    }
    d
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;
const CAP_NAMES: [(u32, &str); 3] = [
    (CAP_BPF, "CAP_BPF"),
    (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
    (CAP_NET_RAW, "CAP_NET_RAW"),
];
const CAPS_NEEDED: u64 = (1 << CAP_BPF) | (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW);

/// The process's effective capabilities (`CapEff` of /proc/self/status). CAP_SYS_ADMIN
/// stands in for CAP_BPF, as the kernel lets it.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    Some(if caps & (1 << CAP_SYS_ADMIN) != 0 {
        caps | (1 << CAP_BPF)
    } else {
        caps
    })
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
