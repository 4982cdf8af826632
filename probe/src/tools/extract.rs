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

use crate::files::capture_file::CaptureFile;
use anyhow::{bail, Context, Result};
use probe_core::select::Selection;
use probe_core::wire::{self, FrameSummary};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

/// What `probe extract` is asked for (`cli` builds it from its options).
#[derive(Clone, Debug)]
pub struct ExtractConfig {
    /// The ring directory (the --pcap-dir of the run that wrote it).
    pub pcap_dir: PathBuf,
    /// Only packets at or after this time (nanoseconds since the epoch).
    pub from: Option<u64>,
    /// Only packets at or before this time.
    pub to: Option<u64>,
    /// Where the packets go (pcap, nanosecond timestamps).
    pub out: PathBuf,
    /// Matching packets held in memory before they spill to sorted run files.
    pub max_memory: u64,
    /// The ring's file-name prefix.
    pub prefix: String,
    /// The selection, in words (default: all).
    pub expr: Vec<String>,
    /// Tunnels removed before matching.
    pub decap: wire::Decap,
    /// Flow records whose packets are wanted, instead of an expression ('-': standard input).
    pub flows: Option<PathBuf>,
    pub both_directions: bool,
    /// Slack around each flow's start and end.
    pub margin: std::time::Duration,
}

/// What `--flows` found for one flow record.
#[derive(Debug, Clone)]
pub struct FlowFound {
    pub flow: crate::tools::flowlist::WantedFlow,
    pub packets: u64,
    /// Part of the flow's window lies before the oldest packet the ring still holds (or after
    /// its newest): those packets are gone, or were never kept.
    pub not_covered: bool,
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
    /// With --flows: each flow's packets, in the order given.
    pub flows: Vec<FlowFound>,
    /// With name primitives (sni, dns name, http host, ja4): the flows a packet in the ring
    /// marked, and how many frames the ring had cut at its snap length (a cut hello or query
    /// may hold no name).
    pub flows_marked: Option<u64>,
    pub frames_cut: u64,
}

/// The flows of `--flows`, indexed by their (protocol, lower address, higher address) so a
/// frame is compared only with the flows between its two hosts.
struct FlowMatcher {
    found: Vec<FlowFound>,
    by_hosts: std::collections::HashMap<(u8, [u8; 16], [u8; 16]), Vec<usize>>,
    margin_ns: u64,
    both: bool,
}

impl FlowMatcher {
    fn new(
        flows: Vec<crate::tools::flowlist::WantedFlow>,
        margin_ns: u64,
        both: bool,
    ) -> FlowMatcher {
        let mut by_hosts: std::collections::HashMap<_, Vec<usize>> = Default::default();
        let octets = crate::tools::flowlist::octets;
        for (i, f) in flows.iter().enumerate() {
            let (a, b) = (octets(f.src), octets(f.dst));
            by_hosts
                .entry((f.protocol, a.min(b), a.max(b)))
                .or_default()
                .push(i);
        }
        FlowMatcher {
            found: flows
                .into_iter()
                .map(|flow| FlowFound {
                    flow,
                    packets: 0,
                    not_covered: false,
                })
                .collect(),
            by_hosts,
            margin_ns,
            both,
        }
    }

    /// The time span all flows need, margins included.
    fn window(&self) -> (u64, u64) {
        let from = self
            .found
            .iter()
            .map(|f| f.flow.start_ns)
            .min()
            .unwrap_or(0);
        let to = self.found.iter().map(|f| f.flow.end_ns).max().unwrap_or(0);
        (
            from.saturating_sub(self.margin_ns),
            to.saturating_add(self.margin_ns),
        )
    }

    /// Whether a decoded frame at `ts` belongs to any of the flows (each that it does counts it).
    fn matches(&mut self, s: &FrameSummary, ts: u64) -> bool {
        let (a, b) = (s.src_addr, s.dst_addr);
        let Some(ids) = self.by_hosts.get(&(s.protocol, a.min(b), a.max(b))) else {
            return false;
        };
        let mut any = false;
        for &i in ids {
            let f = &mut self.found[i];
            let w = &f.flow;
            if ts + self.margin_ns >= w.start_ns
                && ts <= w.end_ns.saturating_add(self.margin_ns)
                && w.matches(s.protocol, &a, &b, s.src_port, s.dst_port, self.both)
            {
                f.packets += 1;
                any = true;
            }
        }
        any
    }
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

pub fn run(args: &ExtractConfig) -> Result<ExtractReport> {
    let mut flows = match &args.flows {
        None => None,
        Some(path) => {
            let text = if path.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("--flows -: cannot read stdin")?
            } else {
                std::fs::read_to_string(path)
                    .with_context(|| format!("--flows {}: cannot read", path.display()))?
            };
            let list = crate::tools::flowlist::parse(&text)
                .map_err(|e| anyhow::anyhow!("--flows {}: {e}", path.display()))?;
            if list.is_empty() {
                bail!("--flows {}: no flow records in it", path.display());
            }
            Some(FlowMatcher::new(
                list,
                args.margin.as_nanos() as u64,
                args.both_directions,
            ))
        }
    };
    let select = if args.expr.is_empty() {
        Selection::parse("all").expect("`all` parses")
    } else {
        Selection::parse(&args.expr.join(" ")).map_err(|e| anyhow::anyhow!("expression: {e}"))?
    };
    let decap = args.decap;
    let (mut from, mut to) = (args.from.unwrap_or(0), args.to.unwrap_or(u64::MAX));
    if let Some(m) = &flows {
        let (a, b) = m.window();
        (from, to) = (from.max(a), to.min(b));
    }
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
    let in_window: Vec<&pcap_ring::RingFile> = files
        .iter()
        .filter(|f| f.last_ts_ns >= from && f.first_ts_ns <= to)
        .collect();
    // Name primitives: a first pass finds the flows whose packets carry a matching name; the
    // second keeps every packet of those flows (both directions, from their first packet the
    // ring holds), as the live selection would have from the marking packet on.
    let marked = if flows.is_none() && select.is_flow_aware() {
        let (marked, cut) = marked_flows(&in_window, &select, &decap, from, to)?;
        report.flows_marked = Some(marked.len() as u64);
        report.frames_cut = cut;
        marked
    } else {
        Default::default()
    };
    let mut kept: Vec<Kept> = Vec::new();
    let mut kept_bytes = 0u64;
    let mut runs = Runs::new(&args.out);
    let mut summary = FrameSummary::default();
    for f in in_window {
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
            let decoded = matches!(p.link, Some(link) if wire::decode_frame(link, p.data, &decap, &mut summary).is_ok());
            let matched = match (&mut flows, decoded) {
                (Some(m), true) => m.matches(&summary, p.ts_ns),
                (Some(_), false) => false,
                (None, true) if marked.is_empty() => select.matches(&summary),
                (None, true) => {
                    select.matches(&summary)
                        || marked.contains(&probe_core::flow::symmetric_hash(
                            &summary,
                            &crate::pipeline::handoff::hash_key(),
                        ))
                }
                (None, false) => select.is_all(),
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
    if let Some(m) = flows {
        // What the ring holds now: from its oldest file's first packet to its newest's last.
        let oldest = files.iter().map(|f| f.first_ts_ns).min();
        let newest = files.iter().map(|f| f.last_ts_ns).max();
        report.flows = m
            .found
            .into_iter()
            .map(|mut f| {
                f.not_covered = match (oldest, newest) {
                    (Some(o), Some(n)) => f.flow.start_ns < o || f.flow.end_ns > n,
                    _ => true,
                };
                f
            })
            .collect();
    }
    Ok(report)
}

/// The flows (symmetric hashes) with a packet in the window that marks them under
/// `select`, and the frames the ring had cut at its snap length.
fn marked_flows(
    files: &[&pcap_ring::RingFile],
    select: &Selection,
    decap: &probe_core::wire::Decap,
    from: u64,
    to: u64,
) -> Result<(std::collections::HashSet<u64>, u64)> {
    let mut inspector = probe_core::app::Inspector::new(select.app_needs());
    let mut summary = FrameSummary::default();
    let mut marked = std::collections::HashSet::new();
    let mut cut = 0;
    for f in files {
        let mut cf = CaptureFile::open(&f.path)
            .with_context(|| format!("cannot read {}", f.path.display()))?;
        while let Some(p) = cf
            .next_packet()
            .with_context(|| format!("cannot read {}", f.path.display()))?
        {
            if p.ts_ns < from || p.ts_ns > to {
                continue;
            }
            cut += (p.data.len() < p.orig_len as usize) as u64;
            let Some(link) = p.link else { continue };
            if wire::decode_frame(link, p.data, decap, &mut summary).is_err() {
                continue;
            }
            let fact = inspector.inspect(p.data, &summary, p.ts_ns);
            if select.verdict(&summary, fact.as_ref()).marks_flow {
                marked.insert(probe_core::flow::symmetric_hash(
                    &summary,
                    &crate::pipeline::handoff::hash_key(),
                ));
            }
        }
    }
    Ok((marked, cut))
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
