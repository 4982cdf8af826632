//! `cargo xtask fuzz [--seconds N] [--targets a,b]`: AFL++ (afl.rs, stable Rust) on every fuzz
//! target in `tests/fuzz`, seeded from `../shared/pcaps` and crafted inputs, then a report of
//! executions, coverage, crashes and hangs (`target/fuzz/report.md`). Fails when any target
//! crashed or hung, naming the inputs to replay.

use crate::{cargo, root, run};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

const TARGETS: [&str; 4] = ["decode", "capture_file", "ipfix_roundtrip", "selection"];

/// One target's outcome, from AFL++'s `fuzzer_stats`.
struct Outcome {
    target: String,
    seconds: u64,
    execs: u64,
    corpus: u64,
    edges: u64,
    total_edges: u64,
    coverage: String,
    crashes: u64,
    hangs: u64,
    seeds: usize,
}

pub fn run_fuzz(args: &[&str]) -> Result<()> {
    let mut seconds = 60u64;
    let mut targets: Vec<String> = TARGETS.iter().map(|s| s.to_string()).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .context("--seconds takes a number, e.g. --seconds 60")?
            }
            "--targets" => {
                targets = it
                    .next()
                    .context("--targets takes a list, e.g. --targets decode,selection")?
                    .split(',')
                    .map(String::from)
                    .collect();
                if let Some(t) = targets.iter().find(|t| !TARGETS.contains(&t.as_str())) {
                    bail!(
                        "unknown fuzz target '{t}'; the targets are {}",
                        TARGETS.join(", ")
                    );
                }
            }
            other => {
                bail!("unknown option '{other}': cargo xtask fuzz [--seconds N] [--targets a,b]")
            }
        }
    }
    ensure_cargo_afl()?;
    let manifest = root().join("tests/fuzz/Cargo.toml");
    run(cargo()
        .args(["afl", "build", "--release", "--manifest-path"])
        .arg(&manifest))?;
    let work = root().join("target/fuzz");
    let mut outcomes = Vec::new();
    for t in &targets {
        let seeds = work.join("seeds").join(t);
        let _ = std::fs::remove_dir_all(&seeds);
        std::fs::create_dir_all(&seeds)?;
        let n = write_seeds(t, &seeds)?;
        let out = work.join("out").join(t);
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(work.join("out"))?;
        eprintln!("xtask: fuzzing {t} for {seconds} s from {n} seeds");
        let status = cargo()
            .args(["afl", "fuzz", "-i"])
            .arg(&seeds)
            .arg("-o")
            .arg(&out)
            .args(["-V", &seconds.to_string(), "-t", "1000", "--"])
            .arg(root().join("tests/fuzz/target/release").join(t))
            .env("AFL_SKIP_CPUFREQ", "1")
            .env("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1")
            .env("AFL_NO_UI", "1")
            .env("AFL_NO_AFFINITY", "1")
            .stdout(std::process::Stdio::null())
            .status()
            .context("cannot start afl-fuzz")?;
        if !status.success() {
            bail!("afl-fuzz on {t} failed with {status}");
        }
        outcomes.push(read_stats(t, &out.join("default/fuzzer_stats"), n)?);
    }
    let report = render(&outcomes);
    print!("{report}");
    std::fs::write(work.join("report.md"), &report)?;
    let bad: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.crashes > 0 || o.hangs > 0)
        .collect();
    if !bad.is_empty() {
        for o in &bad {
            eprintln!(
                "xtask: {} found {} crashes and {} hangs: replay the inputs in {}",
                o.target,
                o.crashes,
                o.hangs,
                work.join("out").join(&o.target).join("default").display()
            );
        }
        bail!("fuzzing found crashes or hangs");
    }
    Ok(())
}

fn ensure_cargo_afl() -> Result<()> {
    let ok = cargo()
        .args(["afl", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("xtask: installing cargo-afl (afl.rs, builds AFL++ once)");
        run(cargo().args(["install", "--locked", "cargo-afl"]))?;
    }
    Ok(())
}

fn read_stats(target: &str, path: &Path, seeds: usize) -> Result<Outcome> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let get = |k: &str| -> String {
        text.lines()
            .find_map(|l| {
                let (key, v) = l.split_once(':')?;
                (key.trim() == k).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let num = |k: &str| get(k).parse::<u64>().unwrap_or(0);
    Ok(Outcome {
        target: target.to_string(),
        seconds: num("run_time"),
        execs: num("execs_done"),
        corpus: num("corpus_count"),
        edges: num("edges_found"),
        total_edges: num("total_edges"),
        coverage: get("bitmap_cvg"),
        crashes: num("saved_crashes"),
        hangs: num("saved_hangs"),
        seeds,
    })
}

fn render(outcomes: &[Outcome]) -> String {
    let mut s = String::from(
        "| target | seconds | executions | execs/s | seeds | corpus | edges found / instrumented | crashes | hangs |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} / {} ({}) | {} | {} |\n",
            o.target,
            o.seconds,
            o.execs,
            o.execs / o.seconds.max(1),
            o.seeds,
            o.corpus,
            o.edges,
            o.total_edges,
            o.coverage,
            o.crashes,
            o.hangs
        );
    }
    s
}

/// Writes the target's seeds; returns how many.
fn write_seeds(target: &str, dir: &Path) -> Result<usize> {
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    let shared = shared_captures();
    match target {
        "capture_file" => {
            for p in &shared {
                if let Ok(b) = std::fs::read(p) {
                    if b.len() <= 16 << 10 {
                        seeds.push(b);
                    }
                }
            }
            seeds.push(crafted_pcap());
        }
        "decode" => {
            for p in &shared {
                for (link, frame) in pcap_frames(p, 4) {
                    let mut s = vec![link];
                    s.extend(frame);
                    seeds.push(s);
                }
            }
            for f in e2e::craft::mixed_traffic(0) {
                let mut s = vec![0];
                s.extend(f.data);
                seeds.push(s);
            }
        }
        "selection" => {
            for e in [
                "net 10.1.0.0/16 and port 445",
                "host 2001:db8::1 or (tcp dst port 22 and not src net 192.0.2.0/24)",
                "vlan 100 and udp",
                "proto 132 or icmp6",
                "all",
            ] {
                seeds.push(e.as_bytes().to_vec());
            }
        }
        "ipfix_roundtrip" => {
            for i in 0..8u8 {
                seeds.push(
                    (0..120)
                        .map(|j: u8| j.wrapping_mul(31).wrapping_add(i))
                        .collect(),
                );
            }
        }
        _ => unreachable!("targets are checked"),
    }
    // AFL++ wants small, distinct seeds.
    seeds.sort();
    seeds.dedup();
    seeds.truncate(400);
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:04}")), s)?;
    }
    Ok(seeds.len())
}

fn shared_captures() -> Vec<PathBuf> {
    let Some(dir) = e2e::shared_pcaps() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|x| x == "pcap" || x == "pcapng" || x == "cap")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The first `n` frames of a classic pcap file with the decode target's link selector byte
/// (pcapng and unsupported link types give none).
fn pcap_frames(path: &Path, n: usize) -> Vec<(u8, Vec<u8>)> {
    let Ok(b) = std::fs::read(path) else {
        return Vec::new();
    };
    if b.len() < 24 {
        return Vec::new();
    }
    let le = match &b[0..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Vec::new(),
    };
    let u32_at = |i: usize| {
        let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let link = match u32_at(20) {
        1 => 0,
        113 => 1,
        276 => 2,
        101 | 12 | 14 => 3,
        228 => 4,
        229 => 5,
        0 => 6,
        108 => 7,
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    let mut pos = 24;
    while out.len() < n && pos + 16 <= b.len() {
        let caplen = u32_at(pos + 8) as usize;
        let start = pos + 16;
        if caplen > 65535 || start + caplen > b.len() {
            break;
        }
        out.push((link, b[start..start + caplen].to_vec()));
        pos = start + caplen;
    }
    out
}

fn crafted_pcap() -> Vec<u8> {
    let path = std::env::temp_dir().join(format!("xtask-fuzz-seed-{}.pcap", std::process::id()));
    let frames: Vec<e2e::capture::Frame> = e2e::craft::mixed_traffic(1_700_000_000_000_000_000)
        .into_iter()
        .take(12)
        .collect();
    e2e::capture::write_pcap(&path, e2e::capture::LINKTYPE_ETHERNET, true, &frames);
    let b = std::fs::read(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    b
}
