//! `cargo xtask deb`: a Debian package of the probe, built with cargo-deb, and its check.
//!
//! The package holds `/usr/bin/probe`, the hardened unit (`dist/probe.service` with the binary
//! at `/usr/bin`), the example config as a conffile (`/etc/probe/probe.toml`, 0640, group
//! `probe`) and the docs; its maintainer scripts (`dist/debian/`) create the system user
//! `probe` and leave the service disabled until the interface is configured.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cargo, root, run};

/// Builds the package from the release build and returns its path.
pub fn build() -> Result<PathBuf> {
    if !cargo()
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("xtask: installing cargo-deb");
        run(cargo().args(["install", "--locked", "cargo-deb@^3.8"]))?;
    }
    crate::build_probe()?;
    let unit = std::fs::read_to_string(root().join("dist/probe.service"))?;
    let body = &unit[unit
        .find("[Unit]")
        .context("dist/probe.service has no [Unit]")?..];
    // Next to the binary: cargo-deb resolves `target/release/` assets to the real target dir.
    std::fs::write(
        root().join("target/release/probe.service"),
        format!(
            "# systemd unit of the probe .deb. Set the interface in /etc/probe/probe.toml, then\n\
             #   probe check-config /etc/probe/probe.toml && systemctl enable --now probe\n\
             # Runs as the system user `probe` with only the capabilities XDP and AF_XDP need;\n\
             # writes only /var/lib/probe (IPFIX files, the PCAP ring).\n\n{}",
            body.replace("/usr/local/bin/probe", "/usr/bin/probe")
                .replace("/usr/local/share/doc/", "/usr/share/doc/")
        ),
    )?;
    let out_dir = root().join("target/debian");
    let _ = std::fs::remove_dir_all(&out_dir);
    run(cargo()
        .args(["deb", "-p", "probe", "--no-build", "--output"])
        .arg(&out_dir))?;
    let deb = std::fs::read_dir(&out_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("cargo deb wrote no .deb")?;
    eprintln!("xtask: built {}", deb.display());
    Ok(deb)
}

fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks the package's contents and, as root on a machine where no other `probe` package is
/// installed, installs it, checks what it set up, and purges it again.
pub fn check(deb: &Path) -> Result<()> {
    let contents = output(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    for want in [
        "./usr/bin/probe",
        "./lib/systemd/system/probe.service",
        "./etc/probe/probe.toml",
        "./usr/share/doc/probe/README.md",
    ] {
        if !contents.lines().any(|l| l.ends_with(want)) {
            bail!("{} lacks {want}:\n{contents}", deb.display());
        }
    }
    let conffiles = output(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(deb)
            .arg("conffiles"),
    )?;
    if conffiles.trim() != "/etc/probe/probe.toml" {
        bail!("conffiles should be /etc/probe/probe.toml, not {conffiles:?}");
    }
    // SAFETY: geteuid has no preconditions.
    let root_user = unsafe { libc::geteuid() } == 0;
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", "probe"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("installed"));
    if !root_user || installed {
        eprintln!(
            "xtask: SKIPPED installing the .deb ({})",
            if installed {
                "a probe package is already installed"
            } else {
                "needs root"
            }
        );
        return Ok(());
    }
    run(Command::new("dpkg").arg("--install").arg(deb))?;
    let checked = (|| -> Result<()> {
        output(Command::new("/usr/bin/probe").arg("--version"))?;
        output(Command::new("getent").args(["passwd", "probe"]))
            .context("the package should create the user probe")?;
        let conf = output(Command::new("stat").args(["-c", "%a %G", "/etc/probe/probe.toml"]))?;
        if conf.trim() != "640 probe" {
            bail!("/etc/probe/probe.toml should be 640, group probe; it is {conf:?}");
        }
        if crate::deps::have("systemd-analyze") {
            let out = Command::new("systemd-analyze")
                .args(["verify", "/lib/systemd/system/probe.service"])
                .output()?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() || !stderr.trim().is_empty() {
                bail!("systemd-analyze verify of the installed unit: {stderr}");
            }
        }
        Ok(())
    })();
    run(Command::new("dpkg").args(["--purge", "probe"]))?;
    checked?;
    if Path::new("/usr/bin/probe").exists() || Path::new("/etc/probe/probe.toml").exists() {
        bail!("dpkg --purge probe left files behind");
    }
    eprintln!("xtask: the .deb installs (user, conffile 0640, unit verified) and purges cleanly");
    Ok(())
}
