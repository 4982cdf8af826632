//! How a source of frames (the file reader, or one live RX queue) meters them: on its own
//! thread (one hop: decoder and flow cache together, [`probe_core::meter::Meter`]), or as the first
//! stage of the fan-out, decoding each frame and handing its summary to the metering worker
//! that owns its flow ([`crate::pipeline::handoff`], [`crate::pipeline::worker`]).

use crate::pipeline::exporter::Gauges;
use crate::pipeline::handoff::{Fanout, HandoffDrops, Sent};
use crate::pipeline::worker::{MeteringOutcome, MeteringWorker, Shipper, Updates, WorkerProgress};
use anyhow::{anyhow, Context, Result};
use ipfix_export::{FlowRecord, TimePrecision};
use probe_core::app::AppFact;
use probe_core::app::AppSet;
use probe_core::flow::{CacheConfig, CacheStats, FragmentStats};
use probe_core::meter::{Decoder, DedupConfig, FlowMeter, FragmentConfig, FrameBooks, Meter};
use probe_core::wire::Decap;
use probe_core::wire::{FrameSummary, LinkType};
use std::sync::Arc;
use std::thread::JoinHandle;

/// How frames become flows, for every job: the core's settings, and how many metering workers
/// run where. Built by `cli` from the command line (or by a library user directly).
#[derive(Clone, Debug, Default)]
pub struct MeterConfig {
    /// The whole flow budget and the timeouts; each cache takes a share of `max_flows`.
    pub cache: CacheConfig,
    pub fragments: FragmentConfig,
    pub decap: Decap,
    pub dedup: Option<DedupConfig>,
    /// Application fields exported.
    pub app: AppSet,
    /// Parsers the PCAP selection needs (run, their fields not exported unless in `app`).
    pub select_app: AppSet,
    /// Metering workers (`None`: the job's default).
    pub workers: Option<usize>,
    /// Pin metering worker i to the i-th of these CPUs.
    pub worker_cpus: Option<Vec<u32>>,
}

impl MeterConfig {
    /// The first stage with every setting: what each RX thread (or the file reader) of the
    /// fan-out runs.
    pub fn decoder(&self) -> Decoder {
        let mut d = Decoder::new(self.fragments.clone());
        d.set_decap(self.decap);
        d.set_dedup(self.dedup);
        d.set_app(self.app, self.select_app);
        d
    }

    /// A meter with every setting, holding the whole flow budget.
    pub fn meter(&self) -> Meter {
        self.meter_sharing(1)
    }

    /// A meter holding one of `parts` shares of the flow budget (one-hop queues).
    pub fn meter_sharing(&self, parts: usize) -> Meter {
        Meter::from_stages(self.decoder(), FlowMeter::new(self.cache.share(parts)))
    }
}

/// Metering workers started for a set of decoders.
pub struct Workers {
    pub handles: Vec<JoinHandle<MeteringOutcome>>,
    pub progress: Vec<Arc<WorkerProgress>>,
    pub updates: Vec<Updates>,
}

/// What the workers did, merged, once they stopped.
#[derive(Default)]
pub struct WorkerBooks {
    pub flows: CacheStats,
    pub per_worker: Vec<crate::pipeline::books::WorkerReport>,
    pub records_dropped: u64,
    pub errors: Vec<String>,
}

/// How the metering workers run.
pub struct WorkerSpec<'a> {
    pub count: usize,
    /// Flow-cache settings of the whole probe: `max_flows` is shared out between the workers.
    pub cache: CacheConfig,
    pub cpus: Option<&'a [u32]>,
    pub live: bool,
    pub unprivileged: bool,
}

/// Starts the metering workers of `decoders` decoders; returns each decoder's fan-out.
pub fn start_workers(
    spec: &WorkerSpec<'_>,
    decoders: usize,
    records: &crossbeam_channel::Sender<Vec<FlowRecord>>,
    gauges: &Arc<Gauges>,
) -> Result<(Vec<Fanout>, Workers)> {
    let (fanouts, inboxes) =
        crate::pipeline::handoff::rings(decoders, spec.count, crate::pipeline::handoff::RING_SLOTS);
    let cache = spec.cache.share(spec.count);
    let mut w = Workers {
        handles: Vec::new(),
        progress: Vec::new(),
        updates: Vec::new(),
    };
    for (i, inbox) in inboxes.into_iter().enumerate() {
        let progress = Arc::new(WorkerProgress::default());
        let updates: Updates = Default::default();
        let worker = MeteringWorker {
            index: i,
            inbox,
            flows: probe_core::meter::FlowMeter::new(cache.clone()),
            shipper: Shipper::new(records.clone(), gauges.clone(), spec.live),
            cpu: spec.cpus.and_then(|c| c.get(i).copied()),
            live: spec.live,
            progress: progress.clone(),
            updates: updates.clone(),
            unprivileged: spec.unprivileged,
        };
        w.progress.push(progress);
        w.updates.push(updates);
        w.handles.push(
            std::thread::Builder::new()
                .name(format!("meter-{i}"))
                .spawn(move || worker.run())
                .context("cannot start a metering worker thread")?,
        );
    }
    Ok((fanouts, w))
}

impl Workers {
    /// Waits for every worker (their decoders must have finished) and merges their books.
    pub fn join(self) -> Result<WorkerBooks> {
        let mut books = WorkerBooks::default();
        for h in self.handles {
            let o = h
                .join()
                .map_err(|_| anyhow!("a metering worker thread panicked"))?;
            books.flows.merge(&o.flows.cache().stats());
            books.records_dropped += o.records_dropped;
            books.per_worker.push(crate::pipeline::books::WorkerReport {
                worker: o.index,
                summaries: o.flows.summaries(),
                flows: o.flows.cache().stats(),
                records_dropped: o.records_dropped,
            });
            if let Some(e) = o.error {
                books
                    .errors
                    .push(format!("metering worker {}: {e}", o.index));
            }
        }
        Ok(books)
    }
}

/// A decoder's side of the fan-out: decodes a frame, then hands its summary on.
pub struct FanoutDecoder {
    pub decoder: Decoder,
    pub fanout: Fanout,
    /// Live: drop a summary whose worker's ring is full. Files: wait for room.
    live: bool,
    summary: FrameSummary,
    precision: Option<TimePrecision>,
}

impl FanoutDecoder {
    pub fn new(decoder: Decoder, fanout: Fanout, live: bool) -> FanoutDecoder {
        FanoutDecoder {
            decoder,
            fanout,
            live,
            summary: FrameSummary::default(),
            precision: None,
        }
    }

    /// Decodes one frame and hands its summary to its worker; returns the summary when it was
    /// handed on (for the PCAP selection, which runs here, where the frame is).
    #[inline]
    pub fn process(
        &mut self,
        link: Option<LinkType>,
        frame: &[u8],
        ts_ns: u64,
    ) -> Option<&FrameSummary> {
        self.process_with_fact(link, frame, ts_ns).map(|(s, _)| s)
    }

    /// [`FanoutDecoder::process`], also giving the frame's application fact (exported or
    /// not) to the PCAP selection.
    #[inline]
    pub fn process_with_fact(
        &mut self,
        link: Option<LinkType>,
        frame: &[u8],
        ts_ns: u64,
    ) -> Option<(&FrameSummary, Option<&AppFact>)> {
        if !self.decoder.decode(link, frame, ts_ns, &mut self.summary) {
            return None;
        }
        let clock = self.decoder.clock_ns();
        let fact = self.decoder.fact();
        let sent = if self.live {
            self.fanout.send(&self.summary, ts_ns, clock, fact)
        } else {
            self.fanout.send_waiting(&self.summary, ts_ns, clock, fact)
        };
        match sent {
            Sent::Delivered => Some((&self.summary, self.decoder.any_fact())),
            Sent::RingFull | Sent::WorkerGone => {
                self.decoder.handoff_dropped(frame.len(), ts_ns);
                None
            }
        }
    }

    /// Tells every worker the decoder's clock (so their idle flows expire with packet time).
    pub fn tell_clock(&mut self) {
        self.fanout.tell_clock(self.decoder.clock_ns());
        self.book_lost();
    }

    /// Writes the summaries gathered for each worker into its ring: after each batch of frames
    /// a source read, so none waits for more traffic.
    #[inline]
    pub fn flush(&mut self) {
        self.fanout.flush();
        self.book_lost();
    }

    #[inline]
    fn book_lost(&mut self) {
        let lost = self.fanout.take_lost();
        if lost > 0 {
            self.decoder.handoff_lost(lost);
        }
    }

    /// Tells every worker a new timestamp resolution, when it changed.
    pub fn set_time_precision(&mut self, p: TimePrecision) {
        if self.precision != Some(p) {
            self.precision = Some(p);
            // Every worker first expires what the clock so far calls for, under the old
            // resolution, as one thread would before the first frame of the new one.
            self.tell_clock();
            self.fanout.tell_precision(p);
        }
    }

    pub fn drops(&self) -> HandoffDrops {
        self.fanout.drops
    }
}

/// The file reader's metering: one hop, or the fan-out to N workers.
pub enum FileMetering {
    OneHop(Box<Meter>),
    Fanout {
        stage: Box<FanoutDecoder>,
        workers: Workers,
    },
}

/// What a file run's metering did.
pub struct FileBooks {
    pub frames: FrameBooks,
    pub fragments: FragmentStats,
    pub flows: CacheStats,
    pub workers: Option<WorkerBooks>,
    pub handoff: HandoffDrops,
}

impl FileMetering {
    /// `--workers 1`: one hop on the reading thread; more: the reader decodes and N workers
    /// meter.
    pub fn start(
        meter: &MeterConfig,
        spec: &WorkerSpec<'_>,
        records: &crossbeam_channel::Sender<Vec<FlowRecord>>,
        gauges: &Arc<Gauges>,
    ) -> Result<FileMetering> {
        if spec.count <= 1 {
            return Ok(FileMetering::OneHop(Box::new(meter.meter())));
        }
        let decoder = meter.decoder();
        let (mut fanouts, workers) = start_workers(spec, 1, records, gauges)?;
        let fanout = fanouts.pop().expect("one fan-out per decoder");
        Ok(FileMetering::Fanout {
            stage: Box::new(FanoutDecoder::new(decoder, fanout, false)),
            workers,
        })
    }

    /// Meters one frame of the file; its summary and application fact when it was metered
    /// (for the PCAP selection).
    #[inline]
    pub fn process_with_fact(
        &mut self,
        link: Option<LinkType>,
        frame: &[u8],
        ts_ns: u64,
    ) -> Option<(&FrameSummary, Option<&AppFact>)> {
        match self {
            FileMetering::OneHop(m) => m.process_with_fact(link, frame, ts_ns),
            FileMetering::Fanout { stage, .. } => stage.process_with_fact(link, frame, ts_ns),
        }
    }

    pub fn books(&self) -> FrameBooks {
        match self {
            FileMetering::OneHop(m) => m.books(),
            FileMetering::Fanout { stage, .. } => stage.decoder.books(),
        }
    }

    /// Flows held now (the workers' last published counts).
    pub fn flows_active(&self) -> usize {
        match self {
            FileMetering::OneHop(m) => m.cache().len(),
            FileMetering::Fanout { workers, .. } => workers
                .progress
                .iter()
                .map(|p| p.flows_active.load(std::sync::atomic::Ordering::Relaxed) as usize)
                .sum(),
        }
    }

    pub fn set_time_precision(&mut self, p: TimePrecision) {
        match self {
            FileMetering::OneHop(m) => m.set_time_precision(p),
            FileMetering::Fanout { stage, .. } => stage.set_time_precision(p),
        }
    }

    /// Every few thousand frames: the workers learn the clock, so a worker whose flows see no
    /// packets still expires them with packet time (one hop needs nothing).
    pub fn tick(&mut self) {
        if let FileMetering::Fanout { stage, .. } = self {
            stage.tell_clock();
        }
    }

    /// Before a read that may wait: what the frames so far expired moves on (the one-hop
    /// meter applies its lookahead; the workers get what is gathered for them and the clock,
    /// and flush their own lookahead when idle).
    pub fn catch_up(&mut self) {
        match self {
            FileMetering::OneHop(m) => m.apply_waiting(),
            FileMetering::Fanout { stage, .. } => {
                stage.flush();
                stage.tell_clock();
            }
        }
    }

    /// Records the one-hop meter holds (the workers ship their own).
    pub fn pending(&self) -> usize {
        match self {
            FileMetering::OneHop(m) => m.pending(),
            FileMetering::Fanout { .. } => 0,
        }
    }

    pub fn take_records(&mut self) -> Vec<FlowRecord> {
        match self {
            FileMetering::OneHop(m) => m.take_records(),
            FileMetering::Fanout { .. } => Vec::new(),
        }
    }

    /// End of input: every flow is exported; returns the books and the one-hop meter's last
    /// records (the workers ship their own).
    pub fn finish(self) -> Result<(FileBooks, Vec<FlowRecord>)> {
        match self {
            FileMetering::OneHop(mut m) => {
                m.finish();
                let books = FileBooks {
                    frames: m.books(),
                    fragments: m.fragments().stats(),
                    flows: m.cache().stats(),
                    workers: None,
                    handoff: HandoffDrops::default(),
                };
                Ok((books, m.take_records()))
            }
            FileMetering::Fanout { mut stage, workers } => {
                stage.flush();
                stage.tell_clock();
                stage.decoder.finish();
                let FanoutDecoder {
                    decoder, fanout, ..
                } = *stage;
                let handoff = fanout.drops;
                // Dropping the fan-out tells the workers nothing more comes.
                drop(fanout);
                let wb = workers.join()?;
                let books = FileBooks {
                    frames: decoder.books(),
                    fragments: decoder.fragments().stats(),
                    flows: wb.flows,
                    handoff,
                    workers: Some(wb),
                };
                Ok((books, Vec::new()))
            }
        }
    }
}
