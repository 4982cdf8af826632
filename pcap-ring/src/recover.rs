//! Start-up: complete what a killed writer left behind, and list the complete files.

use crate::{parse_file_name, RingFile, GLOBAL_HEADER_LEN, RECORD_HEADER_LEN};
use std::io::{self, Read};
use std::path::Path;

/// Completes every temporary file of this ring in `dir`; returns (completed, removed).
pub fn finish_partial_files(dir: &Path, prefix: &str) -> io::Result<(u64, u64)> {
    let (mut kept, mut removed) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(final_name) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".part")) else {
            continue;
        };
        if parse_file_name(prefix, final_name).is_none() {
            continue;
        }
        if finish_one(&entry.path(), &dir.join(final_name))? {
            kept += 1;
        } else {
            removed += 1;
        }
    }
    Ok((kept, removed))
}

/// Cuts a temporary file back to its last whole record and renames it to `path`; removes it
/// when it holds no whole record. Returns whether a file was kept.
pub fn finish_one(tmp: &Path, path: &Path) -> io::Result<bool> {
    let good = whole_records_len(tmp)?;
    if good <= GLOBAL_HEADER_LEN {
        std::fs::remove_file(tmp)?;
        return Ok(false);
    }
    let f = std::fs::OpenOptions::new().write(true).open(tmp)?;
    f.set_len(good)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)?;
    Ok(true)
}

/// Length of the prefix of a pcap file (our format: little-endian, nanoseconds) that holds the
/// global header and whole records only; 0 if even the header is missing or foreign.
fn whole_records_len(path: &Path) -> io::Result<u64> {
    let mut data = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut data)?;
    if data.len() < GLOBAL_HEADER_LEN as usize || data[0..4] != 0xa1b2_3c4du32.to_le_bytes() {
        return Ok(0);
    }
    let mut pos = GLOBAL_HEADER_LEN as usize;
    loop {
        let h = RECORD_HEADER_LEN as usize;
        let Some(hdr) = data.get(pos..pos + h) else {
            break;
        };
        let caplen = u32::from_le_bytes(hdr[8..12].try_into().expect("4 bytes")) as usize;
        if pos + h + caplen > data.len() {
            break;
        }
        pos += h + caplen;
    }
    Ok(pos as u64)
}

/// The complete files of this ring in `dir`, oldest first.
pub fn complete_files(dir: &Path, prefix: &str) -> io::Result<Vec<RingFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(ts) = parse_file_name(prefix, &name) {
            files.push(RingFile {
                path: entry.path(),
                bytes: entry.metadata()?.len(),
                first_ts_ns: ts,
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}
