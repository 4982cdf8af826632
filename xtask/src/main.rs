//! `cargo xtask <chore>`: the project's build, test, demo and benchmark chores, in Rust rather
//! than shell scripts.
//!
//! xtask is thin on purpose: it depends on std, anyhow and libc only (no `probe`, `bpf` or
//! `e2e`, nothing that needs pkg-config, libelf or clang), so it builds on a bare machine and
//! can install the Debian packages the rest of the workspace needs before building it. The
//! chores that need the probe's crates (demo, bench, fuzz) are the `chores` binary of the
//! tests crate, which xtask runs with `cargo run` once the packages are in. A test
//! (`tests/tests/layout.rs`) builds xtask with pkg-config's library path hidden.
//!
//! - `deps`: installs the Debian packages the tests and demo need (as root, with apt-get);
//! - `test`: deps, a release build of the probe, then every test in the workspace;
//! - `demo`: a live lab (namespaces, veth, nfcapd, a PCAP ring) with a traffic mix and a scan,
//!   then what nfdump received and one flow's packets pulled from the ring;
//! - `bench`: whole-process comparison with nfpcapd and softflowd, plus criterion benches;
//! - `fuzz`: AFL++ (afl.rs) on the fuzz targets in `tests/fuzz`, with a report;
//! - `deb`: a Debian package (cargo-deb) in `target/debian`, checked (installed and purged as
//!   root).

mod deb;
mod deps;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest: Vec<&str> = args.iter().skip(1).map(|s| s.as_str()).collect();
    match args.first().map(|s| s.as_str()) {
        Some("deps") => deps::ensure(),
        Some("test") => test(&rest),
        Some("demo") => deps::ensure().and_then(|_| chore("demo", &rest)),
        Some("bench") => {
            // Writing a capture needs no system package; everything else does.
            if !rest.iter().any(|a| a.starts_with("--write-")) {
                deps::ensure()?;
            }
            chore("bench", &rest)
        }
        Some("fuzz") => deps::ensure().and_then(|_| chore("fuzz", &rest)),
        Some("deb") => deb::build().and_then(|d| deb::check(&d)),
        _ => {
            eprintln!(
                "usage: cargo xtask <deps|test|demo|bench|fuzz|deb>\n  \
                 deps   install the Debian packages tests and demo need (root)\n  \
                 test   deps, build, and run every test\n  \
                 demo   a live lab: capture, nfcapd, the PCAP ring and an extract\n  \
                 bench  compare with nfpcapd and softflowd; run criterion benches (--no-criterion to skip)\n  \
                 fuzz   AFL++ on every fuzz target (--seconds N per target, --targets a,b)\n  \
                 deb    build target/debian/probe_*.deb and check it (installs and purges it as root)"
            );
            bail!("unknown or missing chore")
        }
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs a command in the workspace root, failing with the command line on error.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Runs a chore of the tests crate's `chores` binary (built in release, as the benchmarks need).
fn chore(name: &str, args: &[&str]) -> Result<()> {
    run(cargo()
        .args([
            "run",
            "--release",
            "-q",
            "-p",
            "e2e",
            "--bin",
            "chores",
            "--",
            name,
        ])
        .args(args))
}

/// The shared real-world captures, when this machine has them (`$PROBE_SHARED_PCAPS` or
/// `../shared/pcaps` beside the workspace), as the tests look for them.
fn shared_pcaps() -> Option<PathBuf> {
    let p = std::env::var("PROBE_SHARED_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("../shared/pcaps"));
    p.join("INDEX.md").exists().then_some(p)
}

/// Builds the release probe and returns its path.
pub fn build_probe() -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "-p", "probe"]))?;
    Ok(root().join("target/release/probe"))
}

fn test(extra: &[&str]) -> Result<()> {
    deps::ensure()?;
    match shared_pcaps() {
        Some(p) => eprintln!("xtask: shared captures found at {}: the corpus tests run", p.display()),
        None => eprintln!(
            "xtask: no shared captures (../shared/pcaps or $PROBE_SHARED_PCAPS): the corpus tests SKIP; \
             the crafted-capture tests still run"
        ),
    }
    // The decoders, reader, flow cache and encoders once in debug too, with the property tests:
    // overflow checks catch arithmetic on hostile input that a release build would wrap.
    run(cargo()
        .args([
            "test",
            "-p",
            "probe",
            "-p",
            "ipfix-export",
            "--lib",
            "--test",
            "properties",
        ])
        .args(extra))?;
    run(cargo()
        .args(["test", "-p", "probe-core", "--features", "ring", "--lib"])
        .args(extra))?;
    let probe = build_probe()?;
    run(cargo()
        .args(["test", "--release", "--workspace"])
        .args(extra)
        .env("PROBE_BIN", &probe))?;
    // README's install step, with the build above reused: `cargo install --path probe` works.
    let root = root().join("target/install-check");
    run(cargo()
        .args([
            "install",
            "--locked",
            "--path",
            "probe",
            "--target-dir",
            "target",
            "--root",
        ])
        .arg(&root))?;
    run(Command::new(root.join("bin/probe")).arg("--version"))?;
    // The .deb: built with cargo-deb, its contents checked, installed and purged (as root).
    deb::check(&deb::build()?)?;
    eprintln!("xtask: all tests passed");
    Ok(())
}
