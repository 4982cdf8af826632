//! Start-up: complete what a killed writer left behind, and list the complete files.

use crate::naming::partial_ext;
use crate::{format, is_partial_name, parse_file_name, unique_path, RingFile};
use std::io::{self, Read};
use std::path::Path;

/// Completes every temporary file of this ring in `dir`; returns (completed, removed, whole
/// frames in the completed ones).
pub fn finish_partial_files(dir: &Path, prefix: &str) -> io::Result<(u64, u64, u64)> {
    let (mut kept, mut removed, mut frames) = (0, 0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_partial_name(prefix, &name) {
            continue;
        }
        match finish_one(&entry.path(), dir, prefix)? {
            Some((_, n)) => {
                kept += 1;
                frames += n;
            }
            None => removed += 1,
        }
    }
    Ok((kept, removed, frames))
}

/// Cuts a temporary file back to its last whole record and renames it after the range of its
/// frames; removes it when it holds no whole record. Returns the file and its frame count.
pub fn finish_one(tmp: &Path, dir: &Path, prefix: &str) -> io::Result<Option<(RingFile, u64)>> {
    let ext = tmp
        .file_name()
        .and_then(|n| partial_ext(prefix, &n.to_string_lossy()))
        .unwrap_or("pcap");
    let mut data = Vec::new();
    std::fs::File::open(tmp)?.read_to_end(&mut data)?;
    let Some((good, first, last, count)) = format::whole_records(&data) else {
        std::fs::remove_file(tmp)?;
        return Ok(None);
    };
    let f = std::fs::OpenOptions::new().write(true).open(tmp)?;
    f.set_len(good)?;
    f.sync_all()?;
    let path = unique_path(dir, prefix, first, last, ext);
    std::fs::rename(tmp, &path)?;
    let last = path
        .file_name()
        .and_then(|n| parse_file_name(prefix, &n.to_string_lossy()))
        .map_or(last, |r| r.1);
    Ok(Some((
        RingFile {
            path,
            bytes: good,
            first_ts_ns: first,
            last_ts_ns: last,
        },
        count,
    )))
}

/// The complete files of this ring in `dir`, oldest first.
pub fn complete_files(dir: &Path, prefix: &str) -> io::Result<Vec<RingFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((first, last)) = parse_file_name(prefix, &name) {
            files.push(RingFile {
                path: entry.path(),
                bytes: entry.metadata()?.len(),
                first_ts_ns: first,
                last_ts_ns: last,
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}
