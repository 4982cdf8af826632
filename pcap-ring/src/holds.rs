//! Holds: ring files kept out of retention as evidence, while people decide what to keep.
//!
//! A hold is a directory `DIR/held/UTC-REASON/` of hard links to the ring files covering a
//! window (no copy: the same inode, so retention deleting the ring's name frees nothing while
//! the hold exists), with `manifest.json`: when, why, the window, and every file with its time
//! span, bytes, the selection it was written under and its SHA-256. When the window reaches the
//! present while a writer has a file open, the hold is marked pending (`.pending`): the writer
//! links that file in (and adds it to the manifest) as soon as it is complete.
//!
//! Held bytes are bounded separately from the ring (`held_limit`): a hold that would pass the
//! bound is refused with the fix, and held files are never deleted by anything but `release`.

use crate::{journal, recover, RingFile};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The directory of holds inside a ring directory.
pub fn held_dir(dir: &Path) -> PathBuf {
    dir.join("held")
}

/// Why a hold or release could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("{0}")]
    Io(String),
    #[error("no ring files cover that window (the ring holds {0})")]
    Nothing(String),
    #[error(
        "holding {files} more files ({bytes} bytes) would put held data at {total} bytes, over \
         --pcap-held-size {limit}: release an older hold (`probe ring release --pcap-dir DIR NAME`) \
         or raise --pcap-held-size"
    )]
    OverLimit {
        files: usize,
        bytes: u64,
        total: u64,
        limit: u64,
    },
    #[error("no hold named '{0}' (see `probe ring status`)")]
    NoSuchHold(String),
}

fn io(what: &str, p: &Path, e: std::io::Error) -> HoldError {
    HoldError::Io(format!("{what} {}: {e}", p.display()))
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The selection each file was written under, from the journal.
fn selections(dir: &Path, prefix: &str) -> std::collections::HashMap<String, String> {
    journal::read(dir, prefix)
        .into_iter()
        .filter(|e| e["event"] == "file")
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["selection"].as_str().unwrap_or("unknown").to_string(),
            ))
        })
        .collect()
}

fn entry(f: &RingFile, selection: &str) -> std::io::Result<serde_json::Value> {
    Ok(serde_json::json!({
        "name": f.path.file_name().unwrap_or_default().to_string_lossy(),
        "first": crate::format_utc(f.first_ts_ns),
        "last": crate::format_utc(f.last_ts_ns),
        "first_ns": f.first_ts_ns,
        "last_ns": f.last_ts_ns,
        "bytes": f.bytes,
        "selection": selection,
        "sha256": sha256_file(&f.path)?,
    }))
}

/// One hold as its manifest states it.
#[derive(Clone, Debug)]
pub struct Hold {
    pub name: String,
    pub path: PathBuf,
    pub manifest: serde_json::Value,
    pub files: usize,
    pub bytes: u64,
    pub pending: bool,
}

/// Every hold of a ring directory, by name.
pub fn list(dir: &Path) -> Vec<Hold> {
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(held_dir(dir)) else {
        return out;
    };
    for e in rd.flatten() {
        let path = e.path();
        let Ok(text) = std::fs::read_to_string(path.join("manifest.json")) else {
            continue;
        };
        let Ok(manifest) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let files = manifest["files"].as_array().map_or(0, |a| a.len());
        let bytes = manifest["files"]
            .as_array()
            .map_or(0, |a| a.iter().filter_map(|f| f["bytes"].as_u64()).sum());
        out.push(Hold {
            name: e.file_name().to_string_lossy().into_owned(),
            pending: path.join(".pending").exists(),
            path,
            manifest,
            files,
            bytes,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Bytes held, counting each file once however many holds link it (and nothing that is
/// still only in the ring).
pub fn held_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for h in list(dir) {
        if let Ok(rd) = std::fs::read_dir(&h.path) {
            for e in rd.flatten() {
                if let Ok(m) = e.metadata() {
                    if m.is_file() && e.file_name() != "manifest.json" && seen.insert(m.ino()) {
                        total += m.len();
                    }
                }
            }
        }
    }
    total
}

/// What [`hold`] made.
#[derive(Debug)]
pub struct HoldReport {
    pub name: String,
    pub path: PathBuf,
    pub files: usize,
    pub bytes: u64,
    /// A file was being written and will join the hold when complete.
    pub pending: bool,
}

/// Holds the complete files overlapping `window` (all of them when `None`).
pub fn hold(
    dir: &Path,
    prefix: &str,
    reason: &str,
    window: Option<(u64, u64)>,
    held_limit: u64,
) -> Result<HoldReport, HoldError> {
    let files = recover::complete_files(dir, prefix).map_err(|e| io("cannot list", dir, e))?;
    let (from, to) = window.unwrap_or((0, u64::MAX));
    let chosen: Vec<&RingFile> = files
        .iter()
        .filter(|f| f.last_ts_ns >= from && f.first_ts_ns <= to)
        .collect();
    // A file being written (a writer is running) that the window reaches.
    let writing = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| crate::is_partial_name(prefix, &e.file_name().to_string_lossy()))
        })
        .unwrap_or(false);
    let pending = writing && to >= files.last().map_or(0, |f| f.last_ts_ns);
    if chosen.is_empty() && !pending {
        let span = match (files.first(), files.last()) {
            (Some(a), Some(b)) => format!(
                "{} .. {}",
                crate::format_utc(a.first_ts_ns),
                crate::format_utc(b.last_ts_ns)
            ),
            _ => "no file".into(),
        };
        return Err(HoldError::Nothing(span));
    }
    let bytes: u64 = chosen.iter().map(|f| f.bytes).sum();
    let already = held_bytes(dir);
    if already + bytes > held_limit {
        return Err(HoldError::OverLimit {
            files: chosen.len(),
            bytes,
            total: already + bytes,
            limit: held_limit,
        });
    }
    let slug: String = reason
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    let stamp = crate::format_utc(journal::wall_ns());
    let stamp = stamp
        .split('.')
        .next()
        .unwrap_or(&stamp)
        .replace([':', '-'], "");
    let mut name = if slug.is_empty() {
        stamp.clone()
    } else {
        format!("{stamp}-{slug}")
    };
    let base = held_dir(dir);
    std::fs::create_dir_all(&base).map_err(|e| io("cannot create", &base, e))?;
    let mut n = 1;
    while base.join(&name).exists() {
        n += 1;
        name = format!("{stamp}-{slug}-{n}");
    }
    let path = base.join(&name);
    std::fs::create_dir(&path).map_err(|e| io("cannot create", &path, e))?;
    let sel = selections(dir, prefix);
    let mut entries = vec![];
    for f in &chosen {
        let file_name = f.path.file_name().unwrap_or_default();
        std::fs::hard_link(&f.path, path.join(file_name))
            .map_err(|e| io("cannot link", &f.path, e))?;
        let s = sel
            .get(&*file_name.to_string_lossy())
            .map_or("unknown", String::as_str);
        entries.push(entry(f, s).map_err(|e| io("cannot read", &f.path, e))?);
    }
    let manifest = serde_json::json!({
        "created": crate::format_utc(journal::wall_ns()),
        "reason": reason,
        "window": {
            "from": (from > 0).then(|| crate::format_utc(from)),
            "to": (to < u64::MAX).then(|| crate::format_utc(to)),
        },
        "files": entries,
    });
    write_manifest(&path, &manifest)?;
    if pending {
        std::fs::write(path.join(".pending"), b"").map_err(|e| io("cannot mark", &path, e))?;
    }
    Ok(HoldReport {
        name,
        path,
        files: chosen.len(),
        bytes,
        pending,
    })
}

fn write_manifest(hold: &Path, manifest: &serde_json::Value) -> Result<(), HoldError> {
    let tmp = hold.join(".manifest.json.tmp");
    let text = serde_json::to_string_pretty(manifest).expect("a JSON value");
    std::fs::write(&tmp, text + "\n").map_err(|e| io("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, hold.join("manifest.json"))
        .map_err(|e| io("cannot write", &hold.join("manifest.json"), e))
}

/// Called by the writer when `file` is complete: every pending hold takes it and stops
/// waiting (best effort: a failure leaves the hold as it was).
pub(crate) fn complete_pending(dir: &Path, file: &RingFile, selection: &str) {
    for h in list(dir).into_iter().filter(|h| h.pending) {
        let Some(name) = file.path.file_name() else {
            continue;
        };
        if std::fs::hard_link(&file.path, h.path.join(name)).is_err() {
            continue;
        }
        let mut manifest = h.manifest;
        if let (Some(files), Ok(e)) = (manifest["files"].as_array_mut(), entry(file, selection)) {
            files.push(e);
        }
        if write_manifest(&h.path, &manifest).is_ok() {
            let _ = std::fs::remove_file(h.path.join(".pending"));
        }
    }
}

/// Removes a hold: its links and manifest. Returns the files and bytes it held.
pub fn release(dir: &Path, name: &str) -> Result<(usize, u64), HoldError> {
    let h = list(dir)
        .into_iter()
        .find(|h| h.name == name)
        .ok_or_else(|| HoldError::NoSuchHold(name.to_string()))?;
    std::fs::remove_dir_all(&h.path).map_err(|e| io("cannot remove", &h.path, e))?;
    Ok((h.files, h.bytes))
}
