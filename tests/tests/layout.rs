//! The workspace's shape, as the compiler and cargo see it: what a crate may depend on.
//!
//! `xtask` must build on a bare machine (Rust only), because it is what installs the Debian
//! packages the rest of the workspace needs (libelf, zlib, clang, pkg-config for libbpf-sys).

use e2e::TempDir;
use std::process::Command;

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// The packages `crate` depends on in normal builds (not dev or build dependencies); `extra`
/// adds cargo tree options (features).
fn normal_dependencies(krate: &str, extra: &[&str]) -> Vec<String> {
    let out = cargo()
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            krate,
        ])
        .args(extra)
        .current_dir(e2e::workspace_root())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {krate}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut deps: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    deps.sort();
    deps.dedup();
    deps
}

/// Builds `package` alone in a fresh target directory with `args` and `env`; the output.
fn build_alone(
    package: &str,
    args: &[&str],
    env: &[(&str, &str)],
    tmp: &TempDir,
) -> std::process::Output {
    let mut cmd = cargo();
    cmd.args(["build", "--offline", "--locked", "-p", package])
        .args(args)
        .arg("--target-dir")
        .arg(tmp.path())
        .current_dir(e2e::workspace_root())
        .env_remove("PKG_CONFIG_PATH")
        .env_remove("RUSTC_WRAPPER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("cargo build runs")
}

#[test]
fn xtask_depends_on_nothing_that_needs_a_system_library() {
    // Not probe, bpf, e2e, libbpf-rs/-sys or pcap-ring: anyhow and libc only.
    assert_eq!(
        normal_dependencies("xtask", &[]),
        ["anyhow", "libc", "xtask"],
        "xtask's dependencies grew"
    );
}

#[test]
fn xtask_builds_without_pkg_config_libraries_in_a_fresh_target_dir() {
    let tmp = TempDir::new("xtask-bare");
    // What a bare machine looks like to a build script: pkg-config finds no library, and no C
    // compiler runs (a build script that compiles C, libbpf-sys or the XDP program, fails).
    let bare = [
        ("PKG_CONFIG_LIBDIR", "/nonexistent"),
        ("CC", "/bin/false"),
        ("CLANG", "/bin/false"),
    ];
    let out = build_alone("xtask", &[], &bare, &tmp);
    assert!(
        out.status.success(),
        "xtask does not build with pkg-config's library path hidden:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tmp.path().join("debug/xtask").exists());
    // The control: with that environment pkg-config finds no library at all, so the build
    // above really had none (a test that could not fail would prove nothing).
    if let Ok(control) = Command::new("pkg-config")
        .args(["--exists", "libelf"])
        .env("PKG_CONFIG_LIBDIR", "/nonexistent")
        .env_remove("PKG_CONFIG_PATH")
        .status()
    {
        assert!(
            !control.success(),
            "pkg-config still finds libelf with its library path hidden: the test hides nothing"
        );
    }
}

#[test]
fn ipfix_export_without_its_io_feature_is_the_model_and_the_encoders_alone() {
    // What a sans-IO core producing FlowRecords may depend on (issue #26): no channel, libc,
    // TLS or socket crate comes with the record model and the encoders.
    let deps = normal_dependencies("ipfix-export", &["--no-default-features"]);
    let proc_macro = [
        "proc-macro2",
        "quote",
        "syn",
        "unicode-ident",
        "thiserror-impl",
    ];
    let ours: Vec<&String> = deps
        .iter()
        .filter(|d| !proc_macro.contains(&d.as_str()))
        .collect();
    assert_eq!(ours, ["ipfix-export", "thiserror"], "{deps:?}");
    // And it builds that way (a module of the model reaching a transport would not).
    let tmp = TempDir::new("ipfix-no-io");
    let out = build_alone("ipfix-export", &["--no-default-features"], &[], &tmp);
    assert!(
        out.status.success(),
        "ipfix-export does not build without io:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_core_depends_on_no_thread_channel_socket_file_bpf_cli_or_anyhow_crate() {
    // Issue #26: the sans-IO core is its own crate and the compiler keeps it so. Its normal
    // dependencies (without the `ring` feature, which brings ring's ciphers and with them
    // getrandom and libc, and which the probe turns on) are hashing, digests, serde's derive,
    // thiserror and the IPFIX record model without its transports.
    let deps = normal_dependencies("probe-core", &[]);
    for forbidden in [
        "crossbeam-channel",
        "rtrb",
        "libc",
        "libbpf-rs",
        "libbpf-sys",
        "bpf",
        "pcap-ring",
        "clap",
        "anyhow",
        "ring",
        "getrandom",
        "rustls",
        "flate2",
        "zstd",
        "toml",
    ] {
        assert!(
            !deps.iter().any(|d| d == forbidden),
            "probe-core depends on {forbidden}: {deps:?}"
        );
    }
    let expected = [
        "allocator-api2",
        "base64",
        "block-buffer",
        "cfg-if",
        "cpufeatures",
        "crypto-common",
        "digest",
        "equivalent",
        "foldhash",
        "generic-array",
        "hashbrown",
        "ipfix-export",
        "memchr",
        "probe-core",
        "proc-macro2",
        "quote",
        "serde",
        "serde_core",
        "serde_derive",
        "sha1",
        "sha2",
        "syn",
        "thiserror",
        "thiserror-impl",
        "typenum",
        "unicode-ident",
    ];
    assert_eq!(
        deps, expected,
        "probe-core's dependencies changed: a new one must be pure computation (no I/O, no \
         thread, no C library); update this list and ARCHITECTURE.md's crate table"
    );
}
