//! Compiles `src/bpf/steer.bpf.c` with clang and generates its Rust skeleton.
//!
//! Needs clang (Debian: clang) and the kernel uapi headers (Debian: linux-libc-dev, part of
//! build-essential). The libbpf headers (`bpf/bpf_helpers.h`) come from libbpf-cargo itself.

use libbpf_cargo::SkeletonBuilder;
use std::path::PathBuf;

const SRC: &str = "src/bpf/steer.bpf.c";

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // <linux/bpf.h> pulls in <asm/types.h>, which Debian keeps under the multiarch directory;
    // clang's BPF target does not search it on its own.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => other,
    };
    SkeletonBuilder::new()
        .source(SRC)
        .clang_args([
            "-O2".to_string(),
            "-g".to_string(),
            format!("-I/usr/include/{multiarch}"),
        ])
        .build_and_generate(out.join("steer.skel.rs"))
        .unwrap_or_else(|e| {
            panic!("cannot build {SRC} (is clang installed? apt-get install clang): {e:#}")
        });
    println!("cargo:rerun-if-changed={SRC}");
}
