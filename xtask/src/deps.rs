//! The Debian packages the tests, demo and benchmarks use, installed when missing.

use anyhow::{bail, Result};
use std::process::Command;

/// (command that must exist, Debian package that provides it)
const NEEDED: &[(&str, &str)] = &[
    ("nfcapd", "nfdump"),
    ("nfdump", "nfdump"),
    ("nfpcapd", "nfdump"),
    ("tshark", "tshark"),
    ("softflowd", "softflowd"),
];

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
        || std::path::Path::new("/usr/sbin").join(cmd).exists()
}

pub fn ensure() -> Result<()> {
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
