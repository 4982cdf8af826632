//! The Debian packages the tests, demo and benchmarks use, installed when missing.

use anyhow::{bail, Result};
use std::process::Command;

/// (command, or absolute path of a file, that must exist; Debian package that provides it)
const NEEDED: &[(&str, &str)] = &[
    // Building: the vendored libbpf (make, pkg-config, libelf, zlib) and the XDP program
    // (clang, kernel uapi headers).
    ("make", "make"),
    ("cc", "build-essential"),
    ("pkg-config", "pkg-config"),
    ("clang", "clang"),
    ("/usr/include/libelf.h", "libelf-dev"),
    ("/usr/include/zlib.h", "zlib1g-dev"),
    ("/usr/include/linux/bpf.h", "linux-libc-dev"),
    // Live tests: network namespaces and veth pairs; an unprivileged run; a small tmpfs.
    ("ip", "iproute2"),
    ("setpriv", "util-linux"),
    ("taskset", "util-linux"),
    ("mount", "mount"),
    // The shipped systemd unit is checked with systemd-analyze verify.
    ("systemd-analyze", "systemd"),
    // The .deb is installed and purged: its postinst creates the user with adduser.
    ("adduser", "adduser"),
    ("dpkg-deb", "dpkg"),
    // Collectors, decoders and benchmark peers.
    ("nfcapd", "nfdump"),
    ("nfdump", "nfdump"),
    ("nfpcapd", "nfdump"),
    ("tshark", "tshark"),
    ("capinfos", "wireshark-common"),
    ("softflowd", "softflowd"),
    ("nfacctd", "pmacct"),
    ("pmacct", "pmacct"),
    // The SCTP lab: a user-mode Linux kernel with sctp.ko (the host kernel has no SCTP), modprobe
    // inside it, socat as the SCTP collector, dumpcap (tshark's) on its loopback.
    ("/usr/bin/linux.uml", "user-mode-linux"),
    ("modprobe", "kmod"),
    ("socat", "socat"),
    // TLS export: certificates made by openssl; socat's OPENSSL-LISTEN is the collector.
    ("openssl", "openssl"),
    // Compressed captures are made by the real compressors.
    ("gzip", "gzip"),
    ("zstd", "zstd"),
    ("xz", "xz-utils"),
    // Live benchmark: the traffic generator.
    ("trafgen", "netsniff-ng"),
    // Reference implementations from PyPI (ja4plus for JA4, communityid), installed into a venv.
    ("python3", "python3"),
    ("/usr/share/doc/python3-venv", "python3-venv"),
    // The kernel matrix (tests/tests/kernels.rs): Debian 12's stock kernel booted in a QEMU
    // VM by virtme-ng (PyPI, in VNG_VENV) on the host's root filesystem; its initramfs needs
    // busybox. The unsigned image: the -cloud- one has no 9p and cannot mount the host root.
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("/bin/busybox", "busybox-static"),
    (
        "/boot/vmlinuz-6.1.0-47-amd64",
        "linux-image-6.1.0-47-amd64-unsigned",
    ),
];

/// Where virtme-ng lives (a venv, as for the PyPI references).
pub const VNG_VENV: &str = "/opt/probe-vng";
const VNG: &str = "virtme-ng==1.42";

/// Where the PyPI reference implementations live (a venv: Debian's Python refuses pip
/// installs into the system, PEP 668). The tests look here when `ja4plus` is not on PATH.
pub const PYREF: &str = "/opt/probe-pyref";

/// The PyPI packages the tests compare against, pinned.
/// scapy writes tunnel feeds with code that is not ours (tests/scapy/).
const PYPI: &[&str] = &["ja4plus==1.4.0", "communityid==1.5.0", "scapy==2.6.1"];

/// Whether `cmd` (a program name, or an absolute path) is on this machine.
pub fn have(cmd: &str) -> bool {
    if cmd.starts_with('/') {
        return std::path::Path::new(cmd).exists();
    }
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
        || std::path::Path::new("/usr/sbin").join(cmd).exists()
        || std::path::Path::new("/sbin").join(cmd).exists()
}

pub fn ensure() -> Result<()> {
    apt()?;
    pypi()?;
    vng()
}

/// virtme-ng for the kernel matrix, in [`VNG_VENV`].
fn vng() -> Result<()> {
    let bin = format!("{VNG_VENV}/bin/vng");
    if std::path::Path::new(&bin).exists() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "xtask: virtme-ng is missing (the kernel matrix skips): python3 -m venv {VNG_VENV} && {VNG_VENV}/bin/pip install {VNG}"
        );
        return Ok(());
    }
    eprintln!("xtask: installing {VNG} into {VNG_VENV}");
    crate::run(Command::new("python3").args(["-m", "venv", VNG_VENV]))?;
    crate::run(Command::new(format!("{VNG_VENV}/bin/pip")).args(["install", "-q", VNG]))
}

/// The PyPI reference implementations, in [`PYREF`], when neither PATH nor it has them.
fn pypi() -> Result<()> {
    let bin = format!("{PYREF}/bin/ja4plus");
    let has_scapy = Command::new(format!("{PYREF}/bin/python"))
        .args(["-c", "import scapy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if (have("ja4plus") || std::path::Path::new(&bin).exists()) && has_scapy {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "xtask: ja4plus is missing (the JA4 test skips): python3 -m venv {PYREF} && {PYREF}/bin/pip install {}",
            PYPI.join(" ")
        );
        return Ok(());
    }
    eprintln!("xtask: installing {} into {PYREF}", PYPI.join(" "));
    crate::run(Command::new("python3").args(["-m", "venv", PYREF]))?;
    crate::run(
        Command::new(format!("{PYREF}/bin/pip"))
            .args(["install", "-q"])
            .args(PYPI),
    )
}

fn apt() -> Result<()> {
    let mut missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(c, _)| !have(c))
        .map(|(_, p)| *p)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        bail!(
            "missing Debian packages: {}; install them with: sudo apt-get install -y {}",
            missing.join(" "),
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    crate::run(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(())
}
