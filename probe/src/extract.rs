//! `probe extract`: the packets of a flow (or of any selection and time window) back out of the
//! PCAP ring, in time order, into one pcap file.
//!
//! Files whose names say their frames lie wholly outside `--from`/`--to` are skipped without
//! being opened. The rest are read with the probe's own reader, each frame decoded and matched
//! against the expression; the matches are sorted by time (frames of several workers interleave
//! slightly within a file, and files of several writers overlap) and written with nanosecond
//! timestamps. Only complete files are read: the file being written is hidden until it is
//! complete.
//!
//! Memory stays bounded whatever the window: matches are held up to `--max-memory`; beyond it
//! each batch is sorted and spilled as a run file next to the output, and the runs are merged
//! (an external merge sort), one packet per run in memory. The order is the same either way:
//! by time, ties in the order the ring holds them.

use crate::capture_file::CaptureFile;
use crate::cli::parse_size;
use crate::select::Selection;
use crate::wire::{self, FrameSummary};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

/// `probe extract`.
#[derive(Args, Clone, Debug)]
pub struct ExtractArgs {
    /// Run even as root (reading a ring needs no privileges; better as a user in its group).
    #[arg(long)]
    pub allow_root: bool,
    /// The ring directory (the --pcap-dir of the run that wrote it).
    #[arg(long, value_name = "DIR")]
    pub pcap_dir: PathBuf,
    /// Only packets at or after this time: RFC 3339 UTC (2026-11-22T23:07:00.5Z) or seconds
    /// since the epoch (1795388820.5).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<u64>,
    /// Only packets at or before this time (same forms as --from).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<u64>,
    /// Write the packets here (pcap, nanosecond timestamps).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub out: PathBuf,
    /// Matching packets held in memory before they are sorted into run files next to the
    /// output and merged (a wide window then needs disk, not RAM).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub max_memory: u64,
    /// The ring's file-name prefix.
    #[arg(long, value_name = "PREFIX", default_value = "probe")]
    pub prefix: String,
    /// Which packets, in the --pcap-select language (default: all), e.g.
    /// 'src host 10.1.0.5 and src port 40000 and dst host 10.2.0.80 and dst port 443 and tcp'.
    #[arg(value_name = "EXPR", trailing_var_arg = true)]
    pub expr: Vec<String>,
    /// Tunnels removed before matching: the same as the writing run's, so the expression sees
    /// the inner packets it saw.
    #[command(flatten)]
    pub decap: crate::cli::DecapArgs,
}

/// What an extraction read and wrote.
#[derive(Debug, Default)]
pub struct ExtractReport {
    pub files_in_ring: usize,
    pub files_read: usize,
    pub frames_read: u64,
    pub frames_written: u64,
    /// Sorted runs spilled to disk because the matches outgrew --max-memory (0: none).
    pub runs_spilled: usize,
}

/// A matching frame: time, bytes, original length.
type Kept = (u64, Vec<u8>, u32);

/// Sorted runs of matches on disk, in a directory next to the output that goes when dropped.
struct Runs {
    dir: PathBuf,
    /// Whether `dir` was created (it is removed on drop even if the first run failed).
    created: bool,
    files: Vec<PathBuf>,
}

impl Runs {
    fn new(out: &Path) -> Runs {
        let mut name = out.file_name().unwrap_or_default().to_os_string();
        name.push(".runs");
        Runs {
            dir: out.with_file_name(name),
            created: false,
            files: Vec::new(),
        }
    }

    /// Sorts `batch` by time (stably) and writes it as the next run.
    fn spill(&mut self, batch: &mut Vec<Kept>) -> Result<()> {
        if !self.created {
            std::fs::create_dir_all(&self.dir)
                .with_context(|| format!("cannot create {}", self.dir.display()))?;
            self.created = true;
        }
        batch.sort_by_key(|k| k.0);
        let path = self.dir.join(format!("run-{:06}.pcap", self.files.len()));
        pcap_ring::write_pcap_file(&path, batch.iter().map(|(t, d, o)| (*t, d.as_slice(), *o)))
            .with_context(|| format!("cannot write {}", path.display()))?;
        self.files.push(path);
        batch.clear();
        Ok(())
    }

    /// Merges the runs into `out`: the earliest head of all runs goes next, ties to the run
    /// spilled first, so the order equals one stable sort of everything. Each run's head is
    /// copied into a buffer of its own, reused from packet to packet.
    fn merge(&self, out: &Path) -> Result<u64> {
        let mut readers = Vec::with_capacity(self.files.len());
        let mut heads: Vec<Kept> = vec![Kept::default(); self.files.len()];
        let mut heap = BinaryHeap::new();
        for (i, f) in self.files.iter().enumerate() {
            let mut cf =
                CaptureFile::open(f).with_context(|| format!("cannot read {}", f.display()))?;
            if next_head(&mut cf, f, &mut heads[i])? {
                heap.push(Reverse((heads[i].0, i)));
            }
            readers.push(cf);
        }
        let mut w = pcap_ring::PcapFileWriter::create(out)
            .with_context(|| format!("cannot write -w {}", out.display()))?;
        while let Some(Reverse((_, i))) = heap.pop() {
            let (ts, data, orig) = &heads[i];
            w.write(*ts, data, *orig)
                .with_context(|| format!("cannot write -w {}", out.display()))?;
            if next_head(&mut readers[i], &self.files[i], &mut heads[i])? {
                heap.push(Reverse((heads[i].0, i)));
            }
        }
        w.finish()
            .with_context(|| format!("cannot write -w {}", out.display()))
    }
}

impl Drop for Runs {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Reads a run's next packet into `head`; false at the end of the run.
fn next_head(cf: &mut CaptureFile, path: &Path, head: &mut Kept) -> Result<bool> {
    let Some(p) = cf
        .next_packet()
        .with_context(|| format!("cannot read {}", path.display()))?
    else {
        return Ok(false);
    };
    head.0 = p.ts_ns;
    head.1.clear();
    head.1.extend_from_slice(p.data);
    head.2 = p.orig_len;
    Ok(true)
}

/// Parses RFC 3339 UTC (`2026-11-22T23:07:00.123456789Z`) or epoch seconds (`1795388820.5`)
/// into nanoseconds since the epoch.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("'{s}' is not a time: write 2026-11-22T23:07:00.5Z (UTC) or epoch seconds such as 1795388820.5")
    };
    let s = s.trim();
    let frac_ns = |f: &str| -> Result<u64, String> {
        if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(f.parse::<u64>().map_err(|_| bad())? * 10u64.pow(9 - f.len() as u32))
    };
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
        let secs: u64 = secs.parse().map_err(|_| bad())?;
        let ns = if frac.is_empty() { 0 } else { frac_ns(frac)? };
        return secs
            .checked_mul(1_000_000_000)
            .and_then(|x| x.checked_add(ns))
            .ok_or_else(bad);
    }
    pcap_ring::parse_utc(s).ok_or_else(bad)
}

pub fn run(args: &ExtractArgs) -> Result<ExtractReport> {
    let select = if args.expr.is_empty() {
        Selection::parse("all").expect("`all` parses")
    } else {
        Selection::parse(&args.expr.join(" ")).map_err(|e| anyhow::anyhow!("expression: {e}"))?
    };
    let decap = args.decap.decap()?;
    let (from, to) = (args.from.unwrap_or(0), args.to.unwrap_or(u64::MAX));
    if from > to {
        bail!("--from is after --to");
    }
    if !args.pcap_dir.is_dir() {
        bail!("--pcap-dir {}: no such directory", args.pcap_dir.display());
    }
    let files = pcap_ring::list_files(&args.pcap_dir, &args.prefix)
        .with_context(|| format!("cannot list --pcap-dir {}", args.pcap_dir.display()))?;
    let mut report = ExtractReport {
        files_in_ring: files.len(),
        ..Default::default()
    };
    let mut kept: Vec<Kept> = Vec::new();
    let mut kept_bytes = 0u64;
    let mut runs = Runs::new(&args.out);
    let mut summary = FrameSummary::default();
    for f in files
        .iter()
        .filter(|f| f.last_ts_ns >= from && f.first_ts_ns <= to)
    {
        report.files_read += 1;
        let mut cf = CaptureFile::open(&f.path)
            .with_context(|| format!("cannot read {}", f.path.display()))?;
        while let Some(p) = cf
            .next_packet()
            .with_context(|| format!("cannot read {}", f.path.display()))?
        {
            report.frames_read += 1;
            if p.ts_ns < from || p.ts_ns > to {
                continue;
            }
            let matched = match p.link {
                Some(link) if wire::decode_frame(link, p.data, &decap, &mut summary).is_ok() => {
                    select.matches(&summary)
                }
                _ => select.is_all(),
            };
            if matched {
                // What a match costs: its bytes and the tuple that holds them.
                kept_bytes += (p.data.len() + std::mem::size_of::<Kept>()) as u64;
                kept.push((p.ts_ns, p.data.to_vec(), p.orig_len));
                if kept_bytes > args.max_memory {
                    runs.spill(&mut kept)?;
                    kept_bytes = 0;
                }
            }
        }
    }
    if runs.files.is_empty() {
        kept.sort_by_key(|k| k.0);
        report.frames_written = pcap_ring::write_pcap_file(
            &args.out,
            kept.iter().map(|(ts, d, o)| (*ts, d.as_slice(), *o)),
        )
        .with_context(|| format!("cannot write -w {}", args.out.display()))?;
    } else {
        if !kept.is_empty() {
            runs.spill(&mut kept)?;
        }
        report.runs_spilled = runs.files.len();
        report.frames_written = runs.merge(&args.out)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1795388820").unwrap(), 1_795_388_820_000_000_000);
        assert_eq!(
            parse_time("1795388820.5").unwrap(),
            1_795_388_820_500_000_000
        );
        assert_eq!(
            parse_time("2026-11-22T23:07:00.123456789Z").unwrap(),
            1_795_388_820_123_456_789
        );
        assert_eq!(
            parse_time("2026-11-22T23:07:00Z").unwrap(),
            1_795_388_820_000_000_000
        );
        assert!(parse_time("2026-11-22 23:07").unwrap_err().contains("UTC"));
        assert!(parse_time("1.1234567891").is_err());
    }
}
