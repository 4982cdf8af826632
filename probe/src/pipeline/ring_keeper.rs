//! The PCAP ring in the probe: each worker's [`Keeper`] copies the frames the selection keeps
//! into batches; one writer thread owns the [`pcap_ring::RingWriter`].
//!
//! A live worker never waits for the disk: when the writer's channel is full, the batch is
//! dropped and its frames are counted (`queue_full`). Reading a file can wait, so `probe read`
//! blocks instead. Either way, for every frame selected:
//! `selected = written + unwritten (disk errors) + queue_full`.

pub mod flows;

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use flows::{Lookback, Marks};
use pcap_ring::{RingConfig, RingStats, RingWriter, WriteOutcome};
use probe_core::app::AppFact;
use probe_core::select::Selection;
use probe_core::wire::FrameSummary;
use std::sync::Arc;

/// The ring's file format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PcapFormat {
    #[default]
    Pcap,
    Pcapng,
}

impl PcapFormat {
    pub const CHOICES: [(&'static str, PcapFormat, &'static str); 2] = [
        ("pcap", PcapFormat::Pcap, "pcap with nanosecond timestamps."),
        (
            "pcapng",
            PcapFormat::Pcapng,
            "pcapng carrying the interface's name.",
        ),
    ];
}

/// The rolling PCAP ring of selected packets, as a job asks for it (`cli` builds it from the
/// `--pcap-*` options).
#[derive(Clone, Debug, Default)]
pub struct PcapConfig {
    /// The ring's directory; no ring without it.
    pub pcap_dir: Option<std::path::PathBuf>,
    /// Which packets are kept; no ring without it.
    pub pcap_select: Option<Selection>,
    pub pcap_file_size: u64,
    pub pcap_file_duration: std::time::Duration,
    pub pcap_ring_size: Option<u64>,
    pub pcap_max_files: Option<usize>,
    pub pcap_format: PcapFormat,
    pub pcap_snaplen: u32,
    /// Frames of a flow kept from before the flow was selected.
    pub pcap_lookback: u16,
    /// Selected frames kept per flow (0: all).
    pub pcap_flow_packets: u32,
}

impl PcapConfig {
    /// The parsers the selection's name primitives need.
    pub fn app_needs(&self) -> probe_core::app::AppSet {
        self.pcap_select
            .as_ref()
            .map_or(probe_core::app::AppSet::default(), |s| s.app_needs())
    }

    /// The ring's configuration and selection, when a ring was asked for; `interface` names the
    /// source in pcapng files.
    pub fn ring(&self, interface: &str) -> Option<(RingConfig, Selection)> {
        let dir = self.pcap_dir.as_ref()?;
        let select = self.pcap_select.clone()?;
        let mut cfg = RingConfig::new(dir);
        cfg.file_size = self.pcap_file_size;
        cfg.file_duration_ns = self.pcap_file_duration.as_nanos() as u64;
        cfg.max_total_bytes = self.pcap_ring_size;
        cfg.max_files = self.pcap_max_files;
        cfg.snaplen = self.pcap_snaplen;
        cfg.selection = select.text().to_string();
        if self.pcap_format == PcapFormat::Pcapng {
            cfg.format = pcap_ring::FileFormat::Pcapng {
                interface: interface.to_string(),
            };
        }
        Some((cfg, select))
    }

    /// A keeper for one source (an RX thread, the file reader) with this configuration's snap
    /// length, lookback and per-flow cut-off; `blocking` waits for the writer (files), and
    /// `marks` are the flow marks every keeper of the run shares.
    pub fn keeper(
        &self,
        select: Selection,
        tx: Sender<Batch>,
        blocking: bool,
        marks: Arc<Marks>,
    ) -> Keeper {
        Keeper::new(select, self.pcap_snaplen, tx, blocking)
            .with_flows(marks, self.pcap_lookback)
            .with_flow_cutoff(self.pcap_flow_packets)
    }
}

/// Frames per batch, and bytes per batch, before it is handed to the writer.
const BATCH_FRAMES: usize = 256;
const BATCH_BYTES: usize = 1 << 20;

/// One kept frame inside a [`Batch`].
#[derive(Clone, Copy, Debug)]
struct Kept {
    ts_ns: u64,
    offset: u32,
    len: u32,
    orig_len: u32,
}

/// Selected frames on their way to the writer: one arena, no allocation per frame.
#[derive(Default)]
pub struct Batch {
    data: Vec<u8>,
    frames: Vec<Kept>,
    /// Frames of earlier batches dropped because the writer was behind: count and the span of
    /// their times, for the ring's journal.
    lost: Option<(u64, u64, u64)>,
    /// A reload changed the selection (sent by the main thread, no frames): the journal
    /// records it.
    pub selection: Option<String>,
}

/// The worker's half: selection and batching.
pub struct Keeper {
    select: Selection,
    /// The run's symmetric hash key (flows are marked by it, shared with the other keepers).
    key: probe_core::flow::HashKey,
    snaplen: usize,
    batch: Batch,
    tx: Sender<Batch>,
    /// Block when the writer is behind (capture files) instead of dropping (live).
    blocking: bool,
    pub selected: u64,
    pub queue_full: u64,
    /// Dropped frames not yet reported to the writer (see [`Batch::lost`]).
    unreported: Option<(u64, u64, u64)>,
    /// The flows name primitives marked, shared with every keeper of the run.
    marks: Arc<Marks>,
    /// `--pcap-lookback`: each flow's first packets, held until it is marked.
    lookback: Option<Lookback>,
    /// The newest packet time offered (for sweeping the lookback buffer against the marks).
    newest_ns: u64,
    /// `--pcap-flow-packets`: frames kept per flow before the rest of it is only counted.
    cutoff: Option<FlowCutoff>,
}

/// The per-flow cut-off of the ring (Time Machine's per-connection cut-off, Kornexl et al.
/// 2005; Arkime's `maxPacketsToSave`): each flow's first `limit` selected frames are kept,
/// the rest only counted, so one heavy flow matching the selection cannot push the minutes
/// before it out of the window. The counts live in a direct-mapped table by symmetric flow
/// hash (65,536 slots, 1 MiB, allocated only with a cut-off): a flow that takes another's
/// slot starts that one's count again, so a collision can keep more than `limit` frames of
/// a flow, never fewer.
struct FlowCutoff {
    limit: u32,
    slots: Vec<(u64, u32)>,
    /// Frames selected but not kept because their flow had reached the limit.
    past: u64,
}

const CUTOFF_SLOTS: usize = 1 << 16;

impl FlowCutoff {
    fn new(limit: u32) -> FlowCutoff {
        FlowCutoff {
            limit,
            slots: vec![(0, 0); CUTOFF_SLOTS],
            past: 0,
        }
    }

    /// Counts a selected frame of flow `h`; whether it is within the flow's first `limit`.
    #[inline]
    fn admit(&mut self, h: u64) -> bool {
        let slot = &mut self.slots[h as usize & (CUTOFF_SLOTS - 1)];
        if slot.0 != h {
            *slot = (h, 0);
        }
        slot.1 = slot.1.saturating_add(1);
        if slot.1 > self.limit {
            self.past += 1;
            return false;
        }
        true
    }
}

/// What a keeper did, for the run's books.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeeperCounts {
    pub selected: u64,
    pub queue_full: u64,
    /// Frames kept from the lookback buffer when their flow was marked later.
    pub lookback_released: u64,
    /// Frames pushed out of the lookback buffer before their flow was marked (or while it
    /// never was).
    pub lookback_evicted: u64,
    /// Frames selected but left out because their flow had reached `--pcap-flow-packets`.
    pub past_flow_cutoff: u64,
}

impl Batch {
    /// No frames: tells the writer the selection changed (its journal records it).
    pub fn selection_changed(text: &str) -> Batch {
        Batch {
            selection: Some(text.to_string()),
            ..Default::default()
        }
    }
}

impl Keeper {
    pub fn new(select: Selection, snaplen: u32, tx: Sender<Batch>, blocking: bool) -> Keeper {
        Keeper {
            key: crate::pipeline::handoff::hash_key(),
            select,
            snaplen: snaplen as usize,
            batch: Batch::default(),
            tx,
            blocking,
            selected: 0,
            queue_full: 0,
            unreported: None,
            marks: Arc::new(Marks::default()),
            lookback: None,
            newest_ns: 0,
            cutoff: None,
        }
    }

    /// Keeps at most `limit` selected frames of each flow (0: every frame).
    pub fn with_flow_cutoff(mut self, limit: u32) -> Keeper {
        self.cutoff = (limit > 0).then(|| FlowCutoff::new(limit));
        self
    }

    /// Whether the selected frame of flow `h` is within its flow's cut-off.
    #[inline]
    fn admit(&mut self, h: u64) -> bool {
        self.cutoff.as_mut().is_none_or(|c| c.admit(h))
    }

    /// Flow-aware selection: this keeper marks flows in (and looks them up from) `marks`,
    /// which every keeper of the run shares, and holds the first `lookback` packets of each
    /// flow.
    pub fn with_flows(mut self, marks: Arc<Marks>, lookback: u16) -> Keeper {
        self.marks = marks;
        self.lookback = (lookback > 0).then(|| Lookback::new(lookback));
        self
    }

    pub fn counts(&self) -> KeeperCounts {
        KeeperCounts {
            selected: self.selected,
            queue_full: self.queue_full,
            lookback_released: self.lookback.as_ref().map_or(0, |l| l.released),
            lookback_evicted: self.lookback.as_ref().map_or(0, |l| l.evicted),
            past_flow_cutoff: self.cutoff.as_ref().map_or(0, |c| c.past),
        }
    }

    /// A new selection (a reload): frames from now on are kept by it.
    pub fn set_selection(&mut self, select: Selection) {
        self.flush();
        self.select = select;
    }

    /// Keeps the frame if the selection says so. `metered` is the frame's summary and
    /// application fact, `None` for frames the meter could not decode, which only `all` keeps.
    #[inline]
    pub fn offer(
        &mut self,
        metered: Option<(&FrameSummary, Option<&AppFact>)>,
        frame: &[u8],
        ts_ns: u64,
    ) {
        let Some((s, fact)) = metered else {
            if self.select.is_all() {
                self.keep(frame, ts_ns, frame.len() as u32);
            }
            return;
        };
        if !self.select.is_flow_aware() {
            if self.select.matches(s)
                && (self.cutoff.is_none()
                    || self.admit(probe_core::flow::symmetric_hash(s, &self.key)))
            {
                self.keep(frame, ts_ns, frame.len() as u32);
            }
            return;
        }
        self.newest_ns = self.newest_ns.max(ts_ns);
        let v = self.select.verdict(s, fact);
        let h = probe_core::flow::symmetric_hash(s, &self.key);
        if v.marks_flow {
            self.marks.mark(h, ts_ns);
        }
        if v.keep || self.marks.contains(h, ts_ns) {
            self.release(h);
            if self.admit(h) {
                self.keep(frame, ts_ns, frame.len() as u32);
            }
        } else if let Some(l) = self.lookback.as_mut() {
            l.hold(
                h,
                &frame[..frame.len().min(self.snaplen)],
                ts_ns,
                frame.len() as u32,
            );
        }
    }

    /// Keeps the frames of flow `h` the lookback buffer holds.
    fn release(&mut self, h: u64) {
        let Some(mut l) = self.lookback.take() else {
            return;
        };
        l.release(h, |ts, bytes, orig| self.keep(bytes, ts, orig));
        self.lookback = Some(l);
    }

    /// Keeps the held frames of flows another keeper marked (the other direction of a flow
    /// can come in on another queue): on every flush.
    fn sweep(&mut self) {
        let Some(l) = self.lookback.as_ref() else {
            return;
        };
        let marked: Vec<u64> = l
            .flows()
            .into_iter()
            .filter(|&h| self.marks.contains(h, self.newest_ns))
            .collect();
        for h in marked {
            self.release(h);
        }
    }

    /// `frame` is already cut to the snap length when it comes from the lookback buffer;
    /// `orig_len` is the length on the wire.
    fn keep(&mut self, frame: &[u8], ts_ns: u64, orig_len: u32) {
        self.selected += 1;
        let stored = &frame[..frame.len().min(self.snaplen)];
        let b = &mut self.batch;
        if b.data.capacity() == 0 {
            b.data.reserve(BATCH_BYTES);
            b.frames.reserve(BATCH_FRAMES);
        }
        b.frames.push(Kept {
            ts_ns,
            offset: b.data.len() as u32,
            len: stored.len() as u32,
            orig_len,
        });
        b.data.extend_from_slice(stored);
        if b.frames.len() >= BATCH_FRAMES || b.data.len() >= BATCH_BYTES {
            self.send_batch();
        }
    }

    /// Hands the batch to the writer (call on every tick and at the end), after keeping the
    /// held frames of flows marked since.
    pub fn flush(&mut self) {
        self.sweep();
        self.send_batch();
    }

    fn send_batch(&mut self) {
        if self.batch.frames.is_empty() {
            return;
        }
        let mut b = std::mem::take(&mut self.batch);
        let n = b.frames.len() as u64;
        b.lost = self.unreported.take();
        if self.blocking {
            if self.tx.send(b).is_err() {
                self.queue_full += n;
            }
            return;
        }
        match self.tx.try_send(b) {
            Ok(()) => {}
            Err(TrySendError::Full(mut b)) | Err(TrySendError::Disconnected(mut b)) => {
                self.queue_full += n;
                let (first, last) = (
                    b.frames.iter().map(|k| k.ts_ns).min().unwrap_or(0),
                    b.frames.iter().map(|k| k.ts_ns).max().unwrap_or(0),
                );
                let u = b.lost.take().unwrap_or((0, first, last));
                self.unreported = Some((u.0 + n, u.1.min(first), u.2.max(last)));
                // Keep the allocation for the next batch.
                b.data.clear();
                b.frames.clear();
                self.batch = b;
            }
        }
    }
}

/// What the ring did in a run.
#[derive(Clone, Debug, Default)]
pub struct RingReport {
    pub dir: String,
    pub selected: u64,
    /// Frames dropped because the writer's queue was full (live capture only).
    pub queue_full: u64,
    /// Flow-aware selection: flows marked by a name primitive, marks that found no room,
    /// frames kept from the lookback buffer, frames evicted from it.
    pub flows_marked: u64,
    pub marks_lost: u64,
    pub lookback_released: u64,
    pub lookback_evicted: u64,
    pub past_flow_cutoff: u64,
    pub writer: RingStats,
    /// Complete files in the ring at the end, and their bytes.
    pub files: u64,
    pub bytes: u64,
}

impl RingReport {
    /// The keepers' books and the shared marks' counts.
    pub fn add_keepers(&mut self, keepers: &[KeeperCounts], marks: &Marks) {
        use std::sync::atomic::Ordering;
        for k in keepers {
            self.selected += k.selected;
            self.queue_full += k.queue_full;
            self.lookback_released += k.lookback_released;
            self.lookback_evicted += k.lookback_evicted;
            self.past_flow_cutoff += k.past_flow_cutoff;
        }
        self.flows_marked = marks.marked.load(Ordering::Relaxed);
        self.marks_lost = marks.lost.load(Ordering::Relaxed);
    }
}

/// How often the writer hands its buffered frames to the kernel (see `RingWriter::flush`).
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Opens the ring (so a bad directory fails the start) and starts the writer thread, which
/// runs until every sender is dropped.
pub fn spawn_writer(
    cfg: RingConfig,
    rx: Receiver<Batch>,
) -> Result<std::thread::JoinHandle<RingReport>> {
    let dir = cfg.dir.display().to_string();
    let mut w = RingWriter::open(cfg).with_context(|| format!("--pcap-dir {dir}"))?;
    let st = w.stats();
    if st.recovered + st.discarded > 0 {
        eprintln!(
            "probe: PCAP ring {dir}: completed {} file(s) a previous run left unfinished ({} whole frames kept), removed {} empty one(s)",
            st.recovered, st.recovered_frames, st.discarded
        );
    }
    std::thread::Builder::new()
        .name("pcap-ring".into())
        .spawn(move || {
            // An episode ends when a file is safely on disk again (a buffered write proves
            // nothing), and the losses of the episode are said then.
            let mut unwritten_before = 0u64;
            let mut last_flush = std::time::Instant::now();
            let mut dirty = false;
            loop {
                match rx.recv_timeout(FLUSH_EVERY) {
                    Ok(batch) => {
                        dirty |= !batch.frames.is_empty();
                        write_batch(&mut w, &batch, &dir, &mut unwritten_before);
                    }
                    // A quiet channel still wakes the thread for the flush below.
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                }
                // Buffered frames reach the kernel at least every FLUSH_EVERY, so a killed
                // probe loses at most that long of the ring's packets.
                if dirty && last_flush.elapsed() >= FLUSH_EVERY {
                    if let Some(e) = w.flush() {
                        eprintln!("probe: {e}");
                    }
                    dirty = false;
                    last_flush = std::time::Instant::now();
                }
            }
            if let Err(e) = w.close() {
                eprintln!("probe: PCAP ring {dir}: cannot complete the last file: {e}");
            }
            RingReport {
                dir,
                writer: w.stats(),
                files: w.files().count() as u64,
                bytes: w.files().map(|f| f.bytes).sum(),
                ..Default::default()
            }
        })
        .context("cannot start the PCAP ring thread")
}

/// Writes one batch of kept frames, saying when writing fails and when it works again.
fn write_batch(w: &mut RingWriter, batch: &Batch, dir: &str, unwritten_before: &mut u64) {
    if let Some((n, first, last)) = batch.lost {
        w.note_lost("writer behind", n, first, last);
    }
    if let Some(s) = &batch.selection {
        w.set_selection(s);
    }
    for k in &batch.frames {
        let data = &batch.data[k.offset as usize..(k.offset + k.len) as usize];
        let was_failing = w.failing();
        if let WriteOutcome::Unwritten {
            first_error: Some(e),
        } = w.write(k.ts_ns, data, k.orig_len)
        {
            eprintln!("probe: {e}");
        }
        if was_failing && !w.failing() {
            let unwritten = w.stats().frames_unwritten;
            eprintln!(
                "probe: PCAP ring {dir}: writing again ({} frames were not written)",
                unwritten - *unwritten_before
            );
            *unwritten_before = unwritten;
        }
    }
}

/// Ends the ring for a run: the keeper's last batch, then the writer's report.
pub fn finish(
    keeper: Option<Keeper>,
    writer: Option<std::thread::JoinHandle<RingReport>>,
) -> Result<Option<RingReport>> {
    let (Some(mut k), Some(w)) = (keeper, writer) else {
        return Ok(None);
    };
    k.flush();
    let counts = k.counts();
    let marks = k.marks.clone();
    drop(k);
    let mut r = w
        .join()
        .map_err(|_| anyhow::anyhow!("the PCAP ring thread panicked"))?;
    r.add_keepers(&[counts], &marks);
    Ok(Some(r))
}
