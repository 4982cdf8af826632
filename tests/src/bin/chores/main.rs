//! The chores `cargo xtask` runs once the system packages are in: the live demo, the
//! whole-process benchmarks and the fuzzing campaign.
//!
//! They live here, beside the end-to-end tests, because they use the same lab, crafted
//! traffic and collectors (the `e2e` library) and the probe's own crates; `xtask` stays a
//! thin binary with no dependency on them, so it builds on a bare machine and can install
//! what the rest needs first (`cargo xtask deps`). Run them through xtask:
//! `cargo xtask demo | bench [...] | fuzz [...]`, which is
//! `cargo run --release -p e2e --bin chores -- <chore> [...]` after `cargo xtask deps`.

mod bench;
mod demo;
mod fuzz;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest: Vec<&str> = args.iter().skip(1).map(|s| s.as_str()).collect();
    match args.first().map(|s| s.as_str()) {
        Some("demo") => demo::run(),
        Some("bench") => bench::run(&rest),
        Some("fuzz") => fuzz::run_fuzz(&rest),
        _ => bail!("usage: chores <demo|bench|fuzz> [options] (run through `cargo xtask`)"),
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
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

/// Builds the release probe and returns its path.
pub fn build_probe() -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "-p", "probe"]))?;
    Ok(root().join("target/release/probe"))
}
