//! Start-up: complete what a killed writer left behind, and list the complete files.

use crate::{
    is_partial_name, parse_file_name, unique_path, RingFile, GLOBAL_HEADER_LEN, RECORD_HEADER_LEN,
};
use std::io::{self, Read};
use std::path::Path;

/// Completes every temporary file of this ring in `dir`; returns (completed, removed).
pub fn finish_partial_files(dir: &Path, prefix: &str) -> io::Result<(u64, u64)> {
    let (mut kept, mut removed) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_partial_name(prefix, &name) {
            continue;
        }
        match finish_one(&entry.path(), dir, prefix)?.map(|(f, _)| f) {
            Some(_) => kept += 1,
            None => removed += 1,
        }
    }
    Ok((kept, removed))
}

/// Cuts a temporary file back to its last whole record and renames it after the range of its
/// frames; removes it when it holds no whole record. Returns the file and its frame count.
pub fn finish_one(tmp: &Path, dir: &Path, prefix: &str) -> io::Result<Option<(RingFile, u64)>> {
    let Some((good, first, last, count)) = whole_records(tmp)? else {
        std::fs::remove_file(tmp)?;
        return Ok(None);
    };
    let f = std::fs::OpenOptions::new().write(true).open(tmp)?;
    f.set_len(good)?;
    f.sync_all()?;
    let path = unique_path(dir, prefix, first, last);
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

/// The length of the whole-record prefix of one of our pcap files (little-endian, ns) and the
/// range of its frames' times; `None` when it holds no whole record (or is not ours).
fn whole_records(path: &Path) -> io::Result<Option<(u64, u64, u64, u64)>> {
    let mut data = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut data)?;
    if data.len() < GLOBAL_HEADER_LEN as usize || data[0..4] != 0xa1b2_3c4du32.to_le_bytes() {
        return Ok(None);
    }
    let (mut first, mut last, mut count) = (u64::MAX, 0u64, 0u64);
    let mut pos = GLOBAL_HEADER_LEN as usize;
    let h = RECORD_HEADER_LEN as usize;
    while let Some(hdr) = data.get(pos..pos + h) {
        let word = |i: usize| u32::from_le_bytes(hdr[i..i + 4].try_into().expect("4 bytes"));
        let caplen = word(8) as usize;
        if pos + h + caplen > data.len() {
            break;
        }
        let ts = word(0) as u64 * 1_000_000_000 + word(4) as u64;
        first = first.min(ts);
        last = last.max(ts);
        count += 1;
        pos += h + caplen;
    }
    Ok((pos > GLOBAL_HEADER_LEN as usize).then_some((pos as u64, first, last, count)))
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
