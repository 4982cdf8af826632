//! The rolling PCAP ring for critical segments: bounded on disk, oldest deleted first.
//!
//! [`RingWriter`] appends frames to the current file and rolls it when it reaches
//! [`RingConfig::file_size`] bytes or when its first frame is [`RingConfig::file_duration_ns`]
//! old, whichever comes first. A file is written under a temporary name (`.NAME.part`, hidden
//! from `*.pcap` globs) and renamed when complete, so a reader never sees half a file. After each
//! rename the oldest complete files are deleted until the complete ones fit
//! [`RingConfig::max_total_bytes`] and [`RingConfig::max_files`]; with the open file on top, the
//! ring never exceeds its bound by more than one file.
//!
//! Names say the time range of their frames and sort by time:
//! `PREFIX-FIRST_LAST.pcap` with UTC times to the nanosecond (see [`file_name`]), so an
//! extractor skips files without opening them. Files are pcap with nanosecond timestamps
//! (magic `a1b23c4d`), mode 0640.
//!
//! A full disk or an unwritable directory never stops the caller: the frame is counted as
//! unwritten, one error per episode is reported through [`WriteOutcome`], and the writer tries
//! a new file at most once per [`RingConfig::retry_interval_ns`] until it succeeds.
//!
//! On start, [`RingWriter::open`] completes what a killed writer left: a temporary file is cut
//! back to its last whole record and renamed, or removed if it holds no frame.
//!
//! This crate knows nothing of flows, selection or AF_XDP: the caller decides which frames to
//! keep and runs the writer on its own thread.

mod format;
pub mod holds;
pub mod journal;
mod naming;
mod recover;
pub mod status;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use format::FileFormat;
use format::{MAX_RECORD_HEADER, MAX_RECORD_TRAILER};
pub use naming::{
    file_name, format_utc, is_partial_name, parse_file_name, parse_utc, partial_name,
};

/// Bytes of a pcap file header and of a pcap record header.
pub const GLOBAL_HEADER_LEN: u64 = 24;
pub const RECORD_HEADER_LEN: u64 = 16;

/// How the ring rolls and what it keeps.
#[derive(Clone, Debug)]
pub struct RingConfig {
    pub dir: PathBuf,
    /// File names start with this.
    pub prefix: String,
    /// Roll when the file reaches this many bytes.
    pub file_size: u64,
    /// Roll when the file's first frame is this old (by frame time).
    pub file_duration_ns: u64,
    /// Keep at most this many bytes of complete files.
    pub max_total_bytes: Option<u64>,
    /// Keep at most this many complete files.
    pub max_files: Option<usize>,
    /// Store at most this many bytes of each frame.
    pub snaplen: u32,
    /// After a failure, try a new file at most this often (by frame time).
    pub retry_interval_ns: u64,
    /// pcap (nanosecond) or pcapng with the interface's name.
    pub format: FileFormat,
    /// The selection the caller keeps frames by, as the user wrote it: recorded in the journal
    /// with every file (`probe ring status` shows it).
    pub selection: String,
}

impl RingConfig {
    pub fn new(dir: impl Into<PathBuf>) -> RingConfig {
        RingConfig {
            dir: dir.into(),
            prefix: "probe".into(),
            file_size: 128 << 20,
            file_duration_ns: 300_000_000_000,
            max_total_bytes: None,
            max_files: None,
            snaplen: 262_144,
            retry_interval_ns: 1_000_000_000,
            format: FileFormat::Pcap,
            selection: "unknown".into(),
        }
    }
}

/// Why the ring cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("PCAP directory {dir}: {source}")]
    Dir { dir: PathBuf, source: io::Error },
    #[error("PCAP ring: --pcap-file-size must be larger than {min} bytes")]
    FileSizeTooSmall { min: u64 },
}

/// The ring's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    pub frames_written: u64,
    pub bytes_written: u64,
    /// Frames not written: the disk was full or the directory unwritable.
    pub frames_unwritten: u64,
    pub files_completed: u64,
    pub files_deleted: u64,
    /// Error episodes (each reported once).
    pub error_episodes: u64,
    /// Temporary files found on start: completed, or removed when empty.
    pub recovered: u64,
    pub discarded: u64,
    /// Whole frames in the recovered files (a torn last record is cut off).
    pub recovered_frames: u64,
}

/// What happened to one frame.
#[derive(Debug)]
pub enum WriteOutcome {
    Written,
    /// Not written; `first_error` is set on the first failure of an episode, for the caller to
    /// report once.
    Unwritten {
        first_error: Option<String>,
    },
}

struct OpenFile {
    tmp: PathBuf,
    out: BufWriter<File>,
    bytes: u64,
    /// The time of its first frame (for rolling by age).
    opened_ts_ns: u64,
    /// The range of its frames' times (frames of several workers can interleave slightly).
    min_ts_ns: u64,
    max_ts_ns: u64,
    /// Frames handed to it (some may still sit in the buffer).
    frames: u64,
    /// Bytes of its file header (SHB and IDB for pcapng).
    header_len: u64,
}

/// A complete file the ring keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingFile {
    pub path: PathBuf,
    pub bytes: u64,
    /// Earliest and latest frame times, as the name states them.
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
}

pub struct RingWriter {
    cfg: RingConfig,
    current: Option<OpenFile>,
    /// Complete files, oldest first.
    files: VecDeque<RingFile>,
    stats: RingStats,
    /// Set while writing fails: no new file before this frame time.
    failing_until_ns: Option<u64>,
    /// Frames not written in the current error episode: count and span of their times.
    episode_lost: Option<(u64, u64, u64)>,
}

impl RingWriter {
    /// Opens the ring in `cfg.dir` (created if missing): completes or removes temporary files
    /// a killed writer left, and takes the complete files already there into the retention.
    pub fn open(cfg: RingConfig) -> Result<RingWriter, RingError> {
        let min = GLOBAL_HEADER_LEN + RECORD_HEADER_LEN + 64;
        if cfg.file_size <= min {
            return Err(RingError::FileSizeTooSmall { min });
        }
        let dir_err = |source| RingError::Dir {
            dir: cfg.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&cfg.dir).map_err(dir_err)?;
        // A directory that cannot take a file is a setup mistake: say so now, not as losses
        // later (a disk that fills up later is counted and survived instead).
        let probe = cfg
            .dir
            .join(format!(".{}-write-test-{}", cfg.prefix, std::process::id()));
        std::fs::File::create(&probe).map_err(dir_err)?;
        std::fs::remove_file(&probe).map_err(dir_err)?;
        let mut stats = RingStats::default();
        let (recovered, discarded, recovered_frames) =
            recover::finish_partial_files(&cfg.dir, &cfg.prefix).map_err(dir_err)?;
        stats.recovered = recovered;
        stats.discarded = discarded;
        stats.recovered_frames = recovered_frames;
        let files = recover::complete_files(&cfg.dir, &cfg.prefix).map_err(dir_err)?;
        let names: std::collections::HashSet<String> = files
            .iter()
            .filter_map(|f| Some(f.path.file_name()?.to_string_lossy().into_owned()))
            .collect();
        journal::compact(&cfg.dir, &cfg.prefix, |n| names.contains(n));
        journal::append(
            &cfg.dir,
            &cfg.prefix,
            &serde_json::json!({
                "event": "start",
                "wall_ns": journal::wall_ns(),
                "pid": std::process::id(),
                "selection": cfg.selection,
                "recovered": recovered,
            }),
        );
        let mut w = RingWriter {
            cfg,
            current: None,
            files: files.into(),
            stats,
            failing_until_ns: None,
            episode_lost: None,
        };
        w.enforce_retention();
        Ok(w)
    }

    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// The selection changed (a reload): later files are recorded under the new one.
    pub fn set_selection(&mut self, selection: &str) {
        self.cfg.selection = selection.to_string();
        journal::append(
            &self.cfg.dir,
            &self.cfg.prefix,
            &serde_json::json!({
                "event": "selection",
                "wall_ns": journal::wall_ns(),
                "selection": selection,
            }),
        );
    }

    /// Records frames the caller selected but could not hand over (its queue to the writer was
    /// full), with the span of their times, so the ring's gaps are known.
    pub fn note_lost(&self, reason: &str, frames: u64, first_ns: u64, last_ns: u64) {
        if frames > 0 {
            journal::append(
                &self.cfg.dir,
                &self.cfg.prefix,
                &serde_json::json!({
                    "event": "lost",
                    "reason": reason,
                    "frames": frames,
                    "first_ns": first_ns,
                    "last_ns": last_ns,
                }),
            );
        }
    }

    /// Journals the frames an error episode lost, once it ends.
    fn end_episode(&mut self) {
        if let Some((n, first, last)) = self.episode_lost.take() {
            self.note_lost("disk", n, first, last);
        }
    }

    fn lost_in_episode(&mut self, ts_ns: u64) {
        let e = self.episode_lost.get_or_insert((0, ts_ns, ts_ns));
        e.0 += 1;
        e.1 = e.1.min(ts_ns);
        e.2 = e.2.max(ts_ns);
    }

    /// The complete files, oldest first.
    pub fn files(&self) -> impl Iterator<Item = &RingFile> {
        self.files.iter()
    }

    /// Appends one frame (`orig_len` is its length on the wire).
    pub fn write(&mut self, ts_ns: u64, frame: &[u8], orig_len: u32) -> WriteOutcome {
        let caplen = frame.len().min(self.cfg.snaplen as usize);
        let mut hdr = [0u8; MAX_RECORD_HEADER];
        let mut trailer = [0u8; MAX_RECORD_TRAILER];
        let (hlen, tlen) =
            self.cfg
                .format
                .record(ts_ns, caplen as u32, orig_len, &mut hdr, &mut trailer);
        let rec_len = (hlen + caplen + tlen) as u64;
        if let Some(f) = &self.current {
            let too_old = ts_ns.saturating_sub(f.opened_ts_ns) >= self.cfg.file_duration_ns;
            let too_big = f.bytes + rec_len > self.cfg.file_size && f.bytes > f.header_len;
            if too_old || too_big {
                if let Err(e) = self.complete_current() {
                    return self.failed(ts_ns, e);
                }
            }
        }
        if self.current.is_none() {
            if self.failing_until_ns.is_some_and(|t| ts_ns < t) {
                self.stats.frames_unwritten += 1;
                self.lost_in_episode(ts_ns);
                return WriteOutcome::Unwritten { first_error: None };
            }
            if let Err(e) = self.start_file(ts_ns) {
                return self.failed(ts_ns, e);
            }
        }
        let f = self.current.as_mut().expect("a file is open");
        let res = f
            .out
            .write_all(&hdr[..hlen])
            .and_then(|_| f.out.write_all(&frame[..caplen]))
            .and_then(|_| f.out.write_all(&trailer[..tlen]));
        match res {
            Ok(()) => {
                f.bytes += rec_len;
                f.min_ts_ns = f.min_ts_ns.min(ts_ns);
                f.max_ts_ns = f.max_ts_ns.max(ts_ns);
                f.frames += 1;
                self.stats.frames_written += 1;
                self.stats.bytes_written += rec_len;
                WriteOutcome::Written
            }
            Err(e) => self.failed(ts_ns, e),
        }
    }

    /// Hands what the open file's buffer holds to the kernel (no fsync): once there, a killed
    /// process loses none of it, and the next start completes the file. The writer thread
    /// calls it about twice a second, so a SIGKILL costs at most that long of packets rather
    /// than a whole buffer (1 MiB). A failed flush ends the file and opens an error episode as
    /// a failed write does; the report of an episode's first failure is returned.
    pub fn flush(&mut self) -> Option<String> {
        let f = self.current.as_mut()?;
        let ts_ns = f.max_ts_ns;
        match f.out.flush() {
            Ok(()) => None,
            Err(e) => self.fail_file(ts_ns, e),
        }
    }

    /// Completes the open file (flush, rename) and applies retention. Call at the end of a run:
    /// the journal then says the writer stopped cleanly.
    pub fn close(&mut self) -> io::Result<()> {
        let r = self.complete_current();
        self.end_episode();
        journal::append(
            &self.cfg.dir,
            &self.cfg.prefix,
            &serde_json::json!({"event": "stop", "wall_ns": journal::wall_ns()}),
        );
        r
    }

    fn failed(&mut self, ts_ns: u64, e: io::Error) -> WriteOutcome {
        self.stats.frames_unwritten += 1;
        self.lost_in_episode(ts_ns);
        WriteOutcome::Unwritten {
            first_error: self.fail_file(ts_ns, e),
        }
    }

    /// A write or a flush failed: the open file is salvaged and an error episode starts (or
    /// goes on) until `ts_ns` plus the retry interval. Returns the report for the episode's
    /// first failure, `None` for the ones after it.
    fn fail_file(&mut self, ts_ns: u64, e: io::Error) -> Option<String> {
        // Keep what the file holds: cut it back to whole records and complete it if possible.
        if let Some(f) = self.current.take() {
            self.salvage(f);
        }
        let first = self.failing_until_ns.is_none();
        self.failing_until_ns = Some(ts_ns.saturating_add(self.cfg.retry_interval_ns));
        if first {
            self.stats.error_episodes += 1;
            let held = holds::held_bytes(&self.cfg.dir);
            let advice = if held > 0 {
                format!(
                    "; held evidence ({held} bytes in {}) is never deleted by retention: release \
                     holds you no longer need with `probe ring release --pcap-dir {} NAME`",
                    holds::held_dir(&self.cfg.dir).display(),
                    self.cfg.dir.display()
                )
            } else {
                String::new()
            };
            Some(format!(
                "PCAP ring {}: {e}; frames are counted as unwritten until writing works again{advice}",
                self.cfg.dir.display()
            ))
        } else {
            None
        }
    }

    fn start_file(&mut self, ts_ns: u64) -> io::Result<()> {
        let mut name_ts = ts_ns;
        let (file, tmp) = loop {
            let tmp = self.cfg.dir.join(partial_name(
                &self.cfg.prefix,
                name_ts,
                self.cfg.format.extension(),
            ));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o640)
                .open(&tmp)
            {
                Ok(f) => break (f, tmp),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => name_ts += 1,
                Err(e) => return Err(e),
            }
        };
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let header = self.cfg.format.file_header(self.cfg.snaplen);
        if let Err(e) = out.write_all(&header) {
            drop(out);
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.current = Some(OpenFile {
            tmp,
            out,
            bytes: header.len() as u64,
            header_len: header.len() as u64,
            opened_ts_ns: ts_ns,
            min_ts_ns: u64::MAX,
            max_ts_ns: 0,
            frames: 0,
        });
        Ok(())
    }

    fn complete_current(&mut self) -> io::Result<()> {
        let Some(mut f) = self.current.take() else {
            return Ok(());
        };
        let flushed = f.out.flush();
        if f.bytes == f.header_len && flushed.is_ok() {
            // Nothing was written into it: no file.
            let _ = std::fs::remove_file(&f.tmp);
            return Ok(());
        }
        if let Err(e) = flushed {
            self.salvage(f);
            return Err(e);
        }
        drop(f.out);
        let path = unique_path(
            &self.cfg.dir,
            &self.cfg.prefix,
            f.min_ts_ns,
            f.max_ts_ns,
            self.cfg.format.extension(),
        );
        std::fs::rename(&f.tmp, &path)?;
        // A file safely on disk ends an error episode.
        self.failing_until_ns = None;
        self.end_episode();
        let last = path
            .file_name()
            .and_then(|n| parse_file_name(&self.cfg.prefix, &n.to_string_lossy()))
            .map_or(f.max_ts_ns, |r| r.1);
        let done = RingFile {
            path,
            bytes: f.bytes,
            first_ts_ns: f.min_ts_ns,
            last_ts_ns: last,
        };
        self.journal_file(&done, f.frames);
        holds::complete_pending(&self.cfg.dir, &done, &self.cfg.selection);
        self.add_complete(done);
        Ok(())
    }

    /// After a write or flush failed: keeps what reached the disk (cut back to whole records)
    /// and moves the frames that did not from `written` to `unwritten`.
    fn salvage(&mut self, f: OpenFile) {
        drop(f.out);
        let kept = match recover::finish_one(&f.tmp, &self.cfg.dir, &self.cfg.prefix) {
            Ok(Some((done, count))) => {
                self.journal_file(&done, count);
                self.add_complete(done);
                count
            }
            Ok(None) => 0,
            Err(_) => {
                let _ = std::fs::remove_file(&f.tmp);
                0
            }
        };
        let lost = f.frames.saturating_sub(kept);
        self.stats.frames_written -= lost;
        self.stats.frames_unwritten += lost;
    }

    fn journal_file(&self, f: &RingFile, frames: u64) {
        journal::append(
            &self.cfg.dir,
            &self.cfg.prefix,
            &serde_json::json!({
                "event": "file",
                "name": f.path.file_name().unwrap_or_default().to_string_lossy(),
                "first_ns": f.first_ts_ns,
                "last_ns": f.last_ts_ns,
                "bytes": f.bytes,
                "frames": frames,
                "selection": self.cfg.selection,
            }),
        );
    }

    /// Whether writing is failing (an error episode is open).
    pub fn failing(&self) -> bool {
        self.failing_until_ns.is_some()
    }

    fn add_complete(&mut self, done: RingFile) {
        self.stats.files_completed += 1;
        self.files.push_back(done);
        self.enforce_retention();
    }

    /// Deletes the oldest complete files until the complete ones fit the bounds.
    fn enforce_retention(&mut self) {
        let mut total: u64 = self.files.iter().map(|f| f.bytes).sum();
        while let Some(oldest) = self.files.front() {
            let over_bytes = self.cfg.max_total_bytes.is_some_and(|m| total > m);
            let over_count = self.cfg.max_files.is_some_and(|m| self.files.len() > m);
            if !over_bytes && !over_count {
                break;
            }
            total -= oldest.bytes;
            let _ = std::fs::remove_file(&oldest.path);
            self.files.pop_front();
            self.stats.files_deleted += 1;
        }
    }
}

impl Drop for RingWriter {
    fn drop(&mut self) {
        let _ = self.complete_current();
    }
}

/// The complete files of the ring with `prefix` in `dir`, oldest first (names only: nothing is
/// opened).
pub fn list_files(dir: &Path, prefix: &str) -> io::Result<Vec<RingFile>> {
    recover::complete_files(dir, prefix)
}

/// Writes frames `(ts_ns, data, orig_len)` as one pcap file with nanosecond timestamps, under a
/// temporary name renamed when complete.
pub fn write_pcap_file<'a>(
    path: &Path,
    frames: impl IntoIterator<Item = (u64, &'a [u8], u32)>,
) -> io::Result<u64> {
    let mut w = PcapFileWriter::create(path)?;
    for (ts, data, orig_len) in frames {
        w.write(ts, data, orig_len)?;
    }
    w.finish()
}

/// One pcap file with nanosecond timestamps, written frame by frame under a temporary name
/// (`PATH.part`) and renamed to `PATH` by [`PcapFileWriter::finish`]; dropped unfinished, the
/// temporary file is removed.
pub struct PcapFileWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    frames: u64,
    hdr: [u8; MAX_RECORD_HEADER],
    trailer: [u8; MAX_RECORD_TRAILER],
}

impl PcapFileWriter {
    pub fn create(path: &Path) -> io::Result<PcapFileWriter> {
        let tmp = path.with_extension("pcap.part");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&FileFormat::Pcap.file_header(262_144))?;
        Ok(PcapFileWriter {
            path: path.to_path_buf(),
            tmp,
            out: Some(out),
            frames: 0,
            hdr: [0; MAX_RECORD_HEADER],
            trailer: [0; MAX_RECORD_TRAILER],
        })
    }

    pub fn write(&mut self, ts_ns: u64, data: &[u8], orig_len: u32) -> io::Result<()> {
        let out = self.out.as_mut().expect("not finished");
        let (h, _) = FileFormat::Pcap.record(
            ts_ns,
            data.len() as u32,
            orig_len,
            &mut self.hdr,
            &mut self.trailer,
        );
        out.write_all(&self.hdr[..h])?;
        out.write_all(data)?;
        self.frames += 1;
        Ok(())
    }

    /// Flushes, renames the file to its final name and returns the frames written.
    pub fn finish(mut self) -> io::Result<u64> {
        let mut out = self.out.take().expect("not finished");
        out.flush()?;
        drop(out);
        std::fs::rename(&self.tmp, &self.path)?;
        Ok(self.frames)
    }
}

impl Drop for PcapFileWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A free path for a file of `[first, last]`: on a clash (two files of the same range) the
/// stated end moves on by a nanosecond, which keeps the range a superset and names unique.
pub(crate) fn unique_path(
    dir: &Path,
    prefix: &str,
    first: u64,
    mut last: u64,
    ext: &str,
) -> PathBuf {
    loop {
        let p = dir.join(file_name(prefix, first, last, ext));
        if !p.exists() {
            return p;
        }
        last += 1;
    }
}

#[cfg(test)]
mod tests;
