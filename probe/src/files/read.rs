//! `probe read`: capture files through the same meter and exporter as live capture.
//!
//! Files are metered in the order given, as one capture whose packet timestamps are the clock.
//! Unlike a live source, a file can wait: when the exporter falls behind, reading blocks on the
//! channel instead of dropping records.

use crate::files::capture_file::CaptureFile;
use crate::pipeline::books::{FileReport, PipelineReport, RunReport};
use crate::pipeline::exporter;
use crate::pipeline::exporter::ExportConfig;
use crate::pipeline::ring_keeper::PcapConfig;
use crate::pipeline::topology::MeterConfig;
use crate::pipeline::topology::{FileMetering, WorkerSpec};
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::path::PathBuf;

/// `probe read`'s settings: the files, in order, and what to make of them. `cli` builds it
/// from the command line; a library user or a test can build one directly.
#[derive(Clone)]
pub struct ReadConfig {
    pub files: Vec<PathBuf>,
    pub export: ExportConfig,
    pub meter: MeterConfig,
    pub pcap: PcapConfig,
}

/// Runs `probe read`: every file of `args` through the pipeline; returns the books. Per-file
/// errors are reported on stderr and in the books, and the other files go on. SIGINT/SIGTERM
/// stop the reading; every flow so far is still exported (forcedEnd) and the books still
/// balance.
pub fn run(args: &ReadConfig) -> Result<RunReport> {
    let (tx, rx) = crossbeam_channel::bounded(64);
    let gauges = std::sync::Arc::new(exporter::Gauges::default());
    let exporter = exporter::spawn(args.export.clone(), rx, gauges.clone())?;
    // The ring can wait for the disk when the input is a file: the keeper blocks.
    // In pcapng ring files, the "interface" is the first input file's name.
    let source = args
        .files
        .first()
        .and_then(|f| f.file_name())
        .map_or("capture file".into(), |n| n.to_string_lossy().into_owned());
    let (mut keeper, ring_writer) = match args.pcap.ring(&source) {
        Some((cfg, select)) => {
            let (rtx, rrx) = crossbeam_channel::bounded(16);
            let writer = crate::pipeline::ring_keeper::spawn_writer(cfg, rrx)?;
            let k = args.pcap.keeper(select, rtx, true, Default::default());
            (Some(k), Some(writer))
        }
        None => (None, None),
    };
    let workers = args.meter.workers.unwrap_or(1);
    let spec = WorkerSpec {
        count: workers,
        cache: args.meter.cache.clone(),
        cpus: args.meter.worker_cpus.as_deref(),
        live: false,
        unprivileged: false,
    };
    let mut meter = FileMetering::start(&args.meter, &spec, &tx, &gauges)?;
    let mut files = Vec::new();
    let sizes: Vec<Option<u64>> = args
        .files
        .iter()
        .map(|f| {
            // A compressed file's size says nothing of how many bytes it decompresses to.
            std::fs::metadata(f)
                .ok()
                .filter(|m| m.is_file())
                .filter(|_| {
                    crate::files::capture_file::Compression::of_file(f)
                        == crate::files::capture_file::Compression::None
                })
                .map(|m| m.len())
        })
        .collect();
    let mut progress = crate::files::progress::ProgressLine::new(&sizes);

    let mut interrupted = false;
    for (index, path) in args.files.iter().enumerate() {
        if interrupted {
            break;
        }
        let shown = path.display().to_string();
        let mut cf = match CaptureFile::open(path) {
            Ok(cf) => cf,
            Err(e) => {
                eprintln!("probe: {shown}: {e}; skipping this file");
                files.push(FileReport {
                    path: shown,
                    frames: 0,
                    error: Some(e.to_string()),
                });
                continue;
            }
        };
        let mut frames = 0u64;
        let mut warned_links = HashSet::new();
        let error = loop {
            // Before a read that may wait (a pipe, `tcpdump -w - | probe read -`), what the
            // packets so far expired goes to the exporter: records never wait for input.
            if !cf.next_is_buffered() {
                meter.catch_up();
                if meter.pending() > 0 {
                    ship(&mut meter, &tx, &gauges)?;
                }
            }
            match cf.next_packet() {
                Ok(Some(p)) => {
                    frames += 1;
                    if p.link.is_none() && warned_links.insert(p.linktype) {
                        progress.finish();
                        eprintln!(
                            "probe: {shown}: interface with unsupported link type {}; its frames are counted as filtered",
                            p.linktype
                        );
                    }
                    let (link, ts) = (p.link, p.ts_ns);
                    // Before the frame: what its time expires leaves under its resolution.
                    meter.set_time_precision(p.precision);
                    let metered = meter.process_with_fact(link, p.data, ts);
                    if let Some(k) = keeper.as_mut() {
                        k.offer(metered, p.data, ts);
                    }
                }
                Ok(None) => break None,
                Err(_) if crate::sys::signals::stop_requested() => {
                    interrupted = true;
                    break Some("interrupted by a signal".to_string());
                }
                Err(e) => {
                    progress.finish();
                    eprintln!("probe: {shown}: {e}; the {frames} frames before it are metered");
                    break Some(e.to_string());
                }
            }
            if crate::sys::signals::stop_requested() {
                interrupted = true;
                break Some("interrupted by a signal".to_string());
            }
            if frames.is_multiple_of(4096) {
                meter.tick();
                gauges.set_metering(meter.books().metering_counts());
                let (read, flows) = (meter.books().read, meter.flows_active());
                progress.update(
                    &shown,
                    index,
                    args.files.len(),
                    cf.bytes_read(),
                    read,
                    flows,
                );
            }
            if meter.pending() >= probe_core::meter::RECORD_BATCH {
                ship(&mut meter, &tx, &gauges)?;
            }
        };
        progress.file_done(cf.bytes_read());
        files.push(FileReport {
            path: shown,
            frames,
            error,
        });
    }
    progress.finish();
    if interrupted {
        eprintln!(
            "probe: interrupted: exporting the {} active flows, then stopping",
            meter.flows_active()
        );
    }
    let (books, last) = meter.finish()?;
    gauges.set_metering(books.frames.metering_counts());
    if !last.is_empty() {
        tx.send(last).context("the exporter thread stopped")?;
    }
    drop(tx);
    let ring = crate::pipeline::ring_keeper::finish(keeper.take(), ring_writer)?;
    let export = exporter
        .join()
        .map_err(|_| anyhow::anyhow!("the exporter thread panicked"))?;
    let pipeline = match books.workers {
        None => PipelineReport::one_hop("--workers 1: the reader meters"),
        Some(w) => {
            for e in &w.errors {
                eprintln!("probe: {e}");
            }
            PipelineReport {
                fanout: true,
                why: format!("--workers {workers}: the reader decodes, {workers} workers meter"),
                workers: w.per_worker,
                handoff: books.handoff,
            }
        }
    };
    Ok(RunReport {
        pipeline,
        files,
        frames: books.frames,
        fragments: books.fragments,
        flows: books.flows,
        export,
        live: None,
        ring,
    })
}

/// Hands the records waiting in the meter to the exporter, with the books they go with. A
/// file loses nothing before metering: what is not metered was filtered, malformed or a
/// duplicate.
fn ship(
    meter: &mut FileMetering,
    tx: &crossbeam_channel::Sender<Vec<ipfix_export::FlowRecord>>,
    gauges: &exporter::Gauges,
) -> Result<()> {
    gauges.set_metering(meter.books().metering_counts());
    let records = meter.take_records();
    if records.is_empty() {
        return Ok(());
    }
    tx.send(records).context("the exporter thread stopped")
}
