//! "How far back can I look?": a ring directory's coverage, from its file names and its
//! journal, for a ring whose probe is running or stopped, or a copy taken elsewhere.

use crate::{holds, journal, recover, RingFile};
use std::path::Path;

/// A span of time the ring has no packets for, although packets were selected or expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    pub from_ns: u64,
    pub to_ns: u64,
    /// "writer behind", "disk", "probe stopped", "probe killed".
    pub reason: String,
    /// Selected frames lost in it, when known.
    pub frames: Option<u64>,
}

/// The ring as it is now.
#[derive(Debug)]
pub struct Status {
    /// Complete files, oldest first, each with the selection it was written under.
    pub files: Vec<(RingFile, String)>,
    pub bytes: u64,
    /// A file is being written (a writer is running, or was killed before completing it).
    pub writing: bool,
    pub gaps: Vec<Gap>,
    pub holds: Vec<holds::Hold>,
    /// Whether the directory has a journal (rings written before it existed do not).
    pub journal: bool,
}

impl Status {
    /// The span of packet times the ring covers.
    pub fn span(&self) -> Option<(u64, u64)> {
        Some((
            self.files.first()?.0.first_ts_ns,
            self.files.last()?.0.last_ts_ns,
        ))
    }
}

/// Reads a ring directory's status.
pub fn status(dir: &Path, prefix: &str) -> std::io::Result<Status> {
    let files = recover::complete_files(dir, prefix)?;
    let events = journal::read(dir, prefix);
    let mut selection_of = std::collections::HashMap::new();
    let mut gaps = vec![];
    // Runs of the writer: (first file time, last file time, ended cleanly).
    let mut runs: Vec<(u64, u64, bool)> = vec![];
    let mut open_run: Option<(u64, u64)> = None;
    let close = |runs: &mut Vec<(u64, u64, bool)>, run: Option<(u64, u64)>, clean: bool| {
        if let Some((a, b)) = run {
            if a <= b {
                runs.push((a, b, clean));
            }
        }
    };
    for e in &events {
        match e["event"].as_str() {
            Some("start") => {
                // A start with a run still open: the previous writer never said stop.
                close(&mut runs, open_run.take(), false);
                open_run = Some((u64::MAX, 0));
            }
            Some("stop") => close(&mut runs, open_run.take(), true),
            Some("file") => {
                if let Some(name) = e["name"].as_str() {
                    selection_of.insert(
                        name.to_string(),
                        e["selection"].as_str().unwrap_or("unknown").to_string(),
                    );
                }
                let (a, b) = (
                    e["first_ns"].as_u64().unwrap_or(0),
                    e["last_ns"].as_u64().unwrap_or(0),
                );
                let run = open_run.get_or_insert((u64::MAX, 0));
                run.0 = run.0.min(a);
                run.1 = run.1.max(b);
            }
            Some("lost") => gaps.push(Gap {
                from_ns: e["first_ns"].as_u64().unwrap_or(0),
                to_ns: e["last_ns"].as_u64().unwrap_or(0),
                reason: match e["reason"].as_str() {
                    Some("disk") => "disk full or unwritable".into(),
                    Some(r) => r.to_string(),
                    None => "unknown".into(),
                },
                frames: e["frames"].as_u64(),
            }),
            _ => {}
        }
    }
    let writing = std::fs::read_dir(dir)?
        .flatten()
        .any(|e| crate::is_partial_name(prefix, &e.file_name().to_string_lossy()));
    // The last run is still going if a file is being written; else it ended without a stop.
    if !writing {
        close(&mut runs, open_run.take(), false);
    }
    for w in runs.windows(2) {
        let ((_, end, clean), (start, _, _)) = (w[0], w[1]);
        if start > end {
            gaps.push(Gap {
                from_ns: end,
                to_ns: start,
                reason: if clean {
                    "probe stopped".into()
                } else {
                    "probe killed (no clean stop)".into()
                },
                frames: None,
            });
        }
    }
    let files: Vec<(RingFile, String)> = files
        .into_iter()
        .map(|f| {
            let s = f
                .path
                .file_name()
                .and_then(|n| selection_of.get(&*n.to_string_lossy()).cloned())
                .unwrap_or_else(|| "unknown (not in the journal)".into());
            (f, s)
        })
        .collect();
    // Gaps before the oldest file rolled away with it; the rest (after the newest file too)
    // say where the ring cannot look.
    let oldest = files.first().map(|f| f.0.first_ts_ns);
    gaps.retain(|g| oldest.is_some_and(|a| g.to_ns >= a));
    gaps.sort_by_key(|g| g.from_ns);
    Ok(Status {
        bytes: files.iter().map(|f| f.0.bytes).sum(),
        files,
        writing,
        gaps,
        holds: holds::list(dir),
        journal: !events.is_empty(),
    })
}
