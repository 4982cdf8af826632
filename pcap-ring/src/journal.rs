//! The ring's journal: `DIR/.PREFIX.journal` (hidden, like the file being written), JSON lines appended as the ring lives, so the
//! directory itself answers "how far back can I look, under which selection, with which
//! gaps", whether its probe is running, stopped, or the directory was copied elsewhere.
//!
//! Events, each one line, appended with `O_APPEND` (one `write` per line):
//! - `{"event":"start","wall_ns":…,"pid":…,"selection":"…"}` when a writer opens the ring;
//! - `{"event":"file","name":"…","first_ns":…,"last_ns":…,"bytes":…,"frames":…,"selection":"…"}`
//!   when a file is completed (`"recovered":true` for one a killed writer left);
//! - `{"event":"lost","reason":"disk"|"writer behind","frames":…,"first_ns":…,"last_ns":…}` for
//!   frames selected but not written, with the span of their times;
//! - `{"event":"selection","wall_ns":…,"selection":"…"}` when the selection changes;
//! - `{"event":"stop","wall_ns":…}` when the writer closes cleanly (a start without a stop
//!   before it means the previous writer was killed).
//!
//! The journal is evidence about evidence, so writing it never stops the ring: a failed append
//! is dropped (the files themselves are what matters, and their names carry their times).

use std::io::Write;
use std::path::{Path, PathBuf};

/// The journal's path for a ring.
pub fn path(dir: &Path, prefix: &str) -> PathBuf {
    dir.join(format!(".{prefix}.journal"))
}

/// Appends one JSON line (best effort).
pub fn append(dir: &Path, prefix: &str, line: &serde_json::Value) {
    let mut text = line.to_string();
    text.push('\n');
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path(dir, prefix))
    {
        let _ = f.write_all(text.as_bytes());
    }
}

/// Nanoseconds since the epoch, now.
pub fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Past this size the journal is compacted when a writer opens the ring.
const COMPACT_AT: u64 = 1 << 20;

/// Keeps the journal bounded: when it has grown past 1 MiB, it is rewritten with the `file`
/// events of files still in the ring (`exists`) and the last 2,000 other events (runs, losses,
/// selection changes), so months of rolling cost no more than the ring's own size says.
pub fn compact(dir: &Path, prefix: &str, exists: impl Fn(&str) -> bool) {
    let p = path(dir, prefix);
    if std::fs::metadata(&p).map_or(true, |m| m.len() < COMPACT_AT) {
        return;
    }
    let events = read(dir, prefix);
    let others: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] != "file")
        .map(|(i, _)| i)
        .collect();
    let keep_from = others.len().saturating_sub(2000);
    let kept_others: std::collections::HashSet<usize> =
        others[keep_from..].iter().copied().collect();
    let mut text = String::new();
    for (i, e) in events.iter().enumerate() {
        let keep = if e["event"] == "file" {
            e["name"].as_str().is_some_and(&exists)
        } else {
            kept_others.contains(&i)
        };
        if keep {
            text.push_str(&e.to_string());
            text.push('\n');
        }
    }
    let tmp = dir.join(format!(".{prefix}.journal.tmp"));
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, &p);
    }
}

/// Every event of a ring's journal, oldest first (lines that do not parse are skipped: a
/// journal cut by a crash mid-line still reads).
pub fn read(dir: &Path, prefix: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path(dir, prefix))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
