//! `probe ring status|hold|release`: the PCAP ring as an incident responder steers it, from any
//! shell on the machine (or on a copy of the directory), whether a probe writes to it or not.
//! They work on the directory alone (its files, journal and `held/`), so no control channel to
//! the running probe is needed: a hold is hard links the writer's retention cannot free, and a
//! hold that reaches the present is completed by the writer itself when its open file closes.

use anyhow::{bail, Context, Result};
use pcap_ring::{format_utc, holds, status};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A `probe ring` command (`cli` builds it from its options).
#[derive(Clone, Debug)]
pub enum RingCmd {
    /// How far back the ring reaches: time span, files, bytes, the selection each file was
    /// written under, gaps (writer behind, disk full, probe stopped) and holds.
    Status {
        /// The ring directory (the --pcap-dir of the run that writes or wrote it).
        pcap_dir: PathBuf,
        /// The ring's file-name prefix.
        prefix: String,
        /// Print it as one JSON object.
        json: bool,
    },
    /// Keep the ring files covering a window out of retention, as evidence: hard links into
    /// DIR/held/UTC-TIME-REASON/ with a manifest (span, selection, SHA-256 of every file).
    Hold {
        pcap_dir: PathBuf,
        prefix: String,
        /// Why (recorded in the manifest and the hold's name).
        reason: Option<String>,
        /// Only the last DURATION of the ring (ending at its newest packet, or now while a file
        /// is being written); default: everything it holds.
        last: Option<Duration>,
        /// Most bytes all holds together may keep; a hold beyond it is refused (nothing held is
        /// ever deleted but by `probe ring release`).
        pcap_held_size: u64,
    },
    /// Remove a hold (its links and manifest; files still in the ring stay until retention).
    Release {
        pcap_dir: PathBuf,
        /// The hold's name, as `probe ring status` lists it.
        name: Option<String>,
        /// Release every hold.
        all: bool,
    },
}

pub fn run(cmd: &RingCmd) -> Result<()> {
    match cmd {
        RingCmd::Status {
            pcap_dir,
            prefix,
            json,
        } => {
            let s = read_status(pcap_dir, prefix)?;
            if *json {
                println!("{}", status_json(&s));
            } else {
                print!("{}", status_text(pcap_dir, &s));
            }
        }
        RingCmd::Hold {
            pcap_dir,
            prefix,
            reason,
            last,
            pcap_held_size,
        } => {
            let s = read_status(pcap_dir, prefix)?;
            let window = last.map(|d| {
                let newest = s.span().map_or(0, |(_, b)| b);
                let end = if s.writing {
                    newest.max(pcap_ring::journal::wall_ns())
                } else {
                    newest
                };
                (end.saturating_sub(d.as_nanos() as u64), u64::MAX)
            });
            let r = holds::hold(
                pcap_dir,
                prefix,
                reason.as_deref().unwrap_or(""),
                window,
                *pcap_held_size,
            )
            .with_context(|| format!("--pcap-dir {}: cannot hold", pcap_dir.display()))?;
            println!(
                "held {}: {} files, {} bytes in {}{}",
                r.name,
                r.files,
                r.bytes,
                r.path.display(),
                if r.pending {
                    "; the file being written joins it when complete"
                } else {
                    ""
                }
            );
        }
        RingCmd::Release {
            pcap_dir,
            name,
            all,
        } => {
            let names: Vec<String> = if *all {
                holds::list(pcap_dir).into_iter().map(|h| h.name).collect()
            } else {
                name.iter().cloned().collect()
            };
            for n in names {
                let (files, bytes) = holds::release(pcap_dir, &n)
                    .with_context(|| format!("--pcap-dir {}", pcap_dir.display()))?;
                println!("released {n}: {files} files, {bytes} bytes no longer held");
            }
        }
    }
    Ok(())
}

fn read_status(dir: &Path, prefix: &str) -> Result<status::Status> {
    if !dir.is_dir() {
        bail!("--pcap-dir {}: no such directory", dir.display());
    }
    status::status(dir, prefix).with_context(|| format!("--pcap-dir {}", dir.display()))
}

/// A span as h:mm:ss, as the progress line shows times.
fn duration_text(ns: u64) -> String {
    crate::files::progress::clock(ns as f64 / 1e9)
}

/// Files grouped by consecutive selection: (selection, first index, last index, from, to).
fn by_selection(s: &status::Status) -> Vec<(String, usize, usize, u64, u64)> {
    let mut groups: Vec<(String, usize, usize, u64, u64)> = vec![];
    for (i, (f, sel)) in s.files.iter().enumerate() {
        match groups.last_mut() {
            Some(g) if g.0 == *sel => {
                g.2 = i;
                g.4 = f.last_ts_ns;
            }
            _ => groups.push((sel.clone(), i, i, f.first_ts_ns, f.last_ts_ns)),
        }
    }
    groups
}

fn status_text(dir: &Path, s: &status::Status) -> String {
    let mut out = String::new();
    match s.span() {
        Some((a, b)) => {
            out += &format!(
                "ring {}: {} files, {} bytes, {} .. {} ({}){}\n",
                dir.display(),
                s.files.len(),
                s.bytes,
                format_utc(a),
                format_utc(b),
                duration_text(b - a),
                if s.writing {
                    "; a file is being written"
                } else {
                    ""
                }
            )
        }
        None => out += &format!("ring {}: no complete file\n", dir.display()),
    }
    if !s.journal {
        out += "no journal: written by a probe before it kept one; selections and gaps unknown\n";
    }
    for (sel, i, j, a, b) in by_selection(s) {
        out += &format!(
            "selection '{sel}': files {}-{} ({} .. {})\n",
            i + 1,
            j + 1,
            format_utc(a),
            format_utc(b)
        );
    }
    out += &format!("gaps: {}\n", s.gaps.len());
    for g in &s.gaps {
        out += &format!(
            "  {} .. {} ({}): {}{}\n",
            format_utc(g.from_ns),
            format_utc(g.to_ns),
            duration_text(g.to_ns.saturating_sub(g.from_ns)),
            g.reason,
            g.frames
                .map(|n| format!(", {n} selected packets not kept"))
                .unwrap_or_default()
        );
    }
    out += &format!("holds: {}\n", s.holds.len());
    for h in &s.holds {
        out += &format!(
            "  {}: {} files, {} bytes, reason '{}'{}\n",
            h.name,
            h.files,
            h.bytes,
            h.manifest["reason"].as_str().unwrap_or(""),
            if h.pending {
                ", waiting for the file being written"
            } else {
                ""
            }
        );
    }
    out
}

fn status_json(s: &status::Status) -> serde_json::Value {
    serde_json::json!({
        "files": s.files.len(),
        "bytes": s.bytes,
        "from": s.span().map(|(a, _)| format_utc(a)),
        "to": s.span().map(|(_, b)| format_utc(b)),
        "writing": s.writing,
        "journal": s.journal,
        "selections": by_selection(s).into_iter().map(|(sel, i, j, a, b)| serde_json::json!({
            "selection": sel, "first_file": i + 1, "last_file": j + 1,
            "from": format_utc(a), "to": format_utc(b),
        })).collect::<Vec<_>>(),
        "gaps": s.gaps.iter().map(|g| serde_json::json!({
            "from": format_utc(g.from_ns), "to": format_utc(g.to_ns),
            "reason": g.reason, "packets": g.frames,
        })).collect::<Vec<_>>(),
        "holds": s.holds.iter().map(|h| serde_json::json!({
            "name": h.name, "files": h.files, "bytes": h.bytes,
            "reason": h.manifest["reason"], "pending": h.pending,
        })).collect::<Vec<_>>(),
    })
}
