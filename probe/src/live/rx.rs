//! The first stage of live capture: one RX thread per (interface, RX queue) takes frames from
//! its AF_XDP socket in batches, decodes them (tunnels removed), offers them to the PCAP
//! ring's selection, gives the frames straight back to the kernel and meters them:
//!
//! - **one hop**: into its own flow cache, shipping expired records itself (RSS declared
//!   symmetric and a worker per queue: no hand-off cost);
//! - **fan-out**: by handing each frame's summary to the metering worker that owns its flow
//!   ([`crate::pipeline::handoff`]); a full hand-off ring never stalls the queue, the summary is dropped
//!   and counted.
//!
//! No lock and no allocation per frame either way.

use super::xsk::{RxDesc, XskSocket, XskStats};
use crate::pipeline::handoff::HandoffDrops;
use crate::pipeline::topology::FanoutDecoder;
use crate::pipeline::worker::{Shipper, Updates};
use crate::sys::clock::wall_ns;
use bpf::{FrameMeta, Stamp, META_LEN};
use ipfix_export::TimePrecision;
use probe_core::meter::{FrameBooks, Meter};
use probe_core::wire::LinkType;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records handed to the exporter per channel message (one hop).
const RECORD_BATCH: usize = crate::pipeline::worker::RECORD_BATCH;
/// How often an RX thread looks at reload updates, flushes its PCAP keeper, publishes its
/// counters and (one hop) moves its flow clock by wall time.
const TICK: Duration = Duration::from_millis(100);
/// How many frames ahead the RX thread prefetches.
const PREFETCH_AHEAD: usize = 8;
/// A queue that had frames this recently is busy: its thread naps instead of polling.
const BUSY_WINDOW: Duration = Duration::from_millis(20);
/// Naps last long enough for about a quarter of the RX ring to fill at the recent rate,
/// within these bounds: long naps mean fewer wakeups, the ring bounds how long is safe.
const NAP_MIN: Duration = Duration::from_micros(50);
const NAP_MAX: Duration = Duration::from_millis(1);
/// Longest sleep in poll() when the queue is quiet.
const IDLE_WAIT_MS: i32 = 50;

/// Counters an RX thread publishes for the periodic stats line and the statistics options
/// records (relaxed stores every tick).
pub struct Progress {
    pub frames: AtomicU64,
    /// Frames filtered, malformed or dropped as duplicates; their octets, and the unix ms of
    /// the first and the last (first > last while there was none).
    pub not_metered: AtomicU64,
    pub not_metered_octets: AtomicU64,
    pub not_metered_first_ms: AtomicU64,
    pub not_metered_last_ms: AtomicU64,
    /// One hop: flows in the thread's own cache (fan-out: the workers publish theirs).
    pub flows_active: AtomicU64,
    /// Summaries dropped at the hand-off (fan-out).
    pub handoff_dropped: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            frames: AtomicU64::new(0),
            not_metered: AtomicU64::new(0),
            not_metered_octets: AtomicU64::new(0),
            not_metered_first_ms: AtomicU64::new(u64::MAX),
            not_metered_last_ms: AtomicU64::new(0),
            flows_active: AtomicU64::new(0),
            handoff_dropped: AtomicU64::new(0),
        }
    }
}

/// What an RX thread did, returned when it stops.
pub struct RxOutcome {
    pub iface: usize,
    pub queue: u32,
    pub books: FrameBooks,
    pub fragments: probe_core::flow::FragmentStats,
    /// One hop: the thread's own flow meter (for its flow books).
    pub meter: Option<Meter>,
    pub handoff: HandoffDrops,
    pub socket: Option<XskStats>,
    /// Frames stamped in userspace because the XDP metadata was missing.
    pub userspace_timestamps: u64,
    /// Flow records dropped because the exporter fell behind by more than the backlog.
    pub records_dropped: u64,
    /// Frames the PCAP selection kept, and those dropped because the ring writer was behind.
    pub ring: crate::pipeline::ring_keeper::KeeperCounts,
    pub error: Option<String>,
}

/// How an RX thread meters what it decodes.
pub enum RxStage {
    /// Decoder and flow cache on this thread; records shipped from here.
    OneHop { meter: Box<Meter>, shipper: Shipper },
    /// Decoder here, summaries to the metering workers.
    Fanout(Box<FanoutDecoder>),
}

pub struct RxThread {
    /// Index of the interface in the probe's list, and its name (for messages).
    pub iface: usize,
    pub iface_name: String,
    pub queue: u32,
    pub sock: XskSocket,
    pub stage: RxStage,
    pub batch: usize,
    pub cpu: Option<u32>,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in ns: turns the program's ktime into wall time.
    pub clock_offset_ns: i64,
    /// Where the program puts each frame's arrival time, and the cookie that marks it.
    pub stamp: Stamp,
    pub cookie: u32,
    pub progress: Arc<Progress>,
    /// The probe switched users: the thread keeps no capability (it inherits CAP_BPF).
    pub unprivileged: bool,
    /// The PCAP ring's selection, when --pcap-dir is given.
    pub keeper: Option<crate::pipeline::ring_keeper::Keeper>,
    /// A reload's new settings, taken on the next tick (a lock once per tick, never per frame).
    pub updates: Updates,
}

/// A frame with the program's prefix ([`Stamp::Prefix`]): the stamp and the frame behind it.
/// A frame the program could not prefix (no headroom: counted as `timestamp_failed` by the
/// program) does not carry the cookie and is returned whole.
#[inline]
fn strip_prefix(data: &[u8], cookie: u32) -> (Option<FrameMeta>, &[u8]) {
    match data.first_chunk::<META_LEN>() {
        Some(p) => match FrameMeta::parse(p, cookie) {
            Some(fm) => (Some(fm), &data[META_LEN..]),
            None => (None, data),
        },
        None => (None, data),
    }
}

impl RxThread {
    fn name(&self) -> String {
        format!("{} queue {}", self.iface_name, self.queue)
    }

    /// Runs until `stop` is set and the RX ring is empty. The caller unregisters the socket
    /// from the XDP program before setting `stop`, so the ring drains and nothing is left in it.
    /// On the fan-out, returning drops this thread's side of the hand-off: its workers finish
    /// once every RX thread has.
    pub fn run(mut self, stop: Arc<AtomicBool>) -> RxOutcome {
        let mut error = None;
        if self.unprivileged {
            if let Err(e) = crate::sys::privileges::clear_thread_caps() {
                error = Some(format!("cannot drop the RX thread's capabilities: {e}"));
            }
        }
        crate::sys::cpus::pin_or_warn(self.cpu, &format!("RX thread of {}", self.name()));
        match &mut self.stage {
            RxStage::OneHop { meter, .. } => meter.set_time_precision(TimePrecision::Nanos),
            RxStage::Fanout(f) => f.set_time_precision(TimePrecision::Nanos),
        }
        let mut descs = vec![RxDesc::default(); self.batch];
        let mut userspace_ts = 0u64;
        let mut last_userspace_ns = 0u64;
        let mut last_tick = Instant::now();
        let mut wait_failed = false;
        let mut last_frames = Instant::now() - BUSY_WINDOW;
        let quarter_ring = self.sock.rx_size() as f64 / 4.0;
        let mut window_start = Instant::now();
        let mut window_frames = 0u64;
        loop {
            let n = self.sock.receive(&mut descs);
            if n > 0 {
                last_frames = Instant::now();
                window_frames += n as u64;
                // Read the clock only if a frame arrives without the program's timestamp.
                let mut read_ts = None;
                for d in descs[..n.min(PREFETCH_AHEAD)].iter() {
                    self.sock.prefetch(d);
                }
                for (i, d) in descs[..n].iter().enumerate() {
                    if let Some(ahead) = descs[..n].get(i + PREFETCH_AHEAD) {
                        self.sock.prefetch(ahead);
                    }
                    let (meta, data) = self.sock.frame::<META_LEN>(d);
                    let (stamped, data) = match self.stamp {
                        Stamp::Metadata => (
                            meta.and_then(|m| {
                                let fm = FrameMeta::parse(m, self.cookie)?;
                                FrameMeta::clear(m);
                                Some(fm)
                            }),
                            data,
                        ),
                        Stamp::Prefix => strip_prefix(data, self.cookie),
                        Stamp::UserSpace => (None, data),
                    };
                    let ts = match stamped {
                        Some(fm) => {
                            (fm.ktime_ns as i64).saturating_add(self.clock_offset_ns) as u64
                        }
                        None => {
                            // One clock read per batch; the batch's frames get successive
                            // nanoseconds after it (never before the queue's last stamp), so
                            // a queue's frames keep their order in the ring and in extract.
                            userspace_ts += 1;
                            let base = *read_ts.get_or_insert_with(wall_ns);
                            last_userspace_ns = base.max(last_userspace_ns + 1);
                            last_userspace_ns
                        }
                    };
                    let summary = match &mut self.stage {
                        RxStage::OneHop { meter, .. } => {
                            meter.process_with_fact(Some(LinkType::Ethernet), data, ts)
                        }
                        RxStage::Fanout(f) => {
                            f.process_with_fact(Some(LinkType::Ethernet), data, ts)
                        }
                    };
                    if let Some(k) = self.keeper.as_mut() {
                        k.offer(summary, data, ts);
                    }
                }
                if let RxStage::Fanout(f) = &mut self.stage {
                    f.flush();
                }
                let back = self.sock.refill(&mut descs[..n].iter().map(|d| d.addr));
                debug_assert_eq!(back as usize, n, "the fill ring holds every frame");
                // need_wakeup: a zero-copy driver that ran out of fill-ring frames stopped and
                // waits for a syscall to look again.
                if self.sock.needs_wakeup() {
                    self.sock.kick();
                }
                if let RxStage::OneHop { meter, shipper } = &mut self.stage {
                    if meter.pending() >= RECORD_BATCH && !shipper.ship(meter.take_records()) {
                        error = Some("the exporter thread stopped".to_string());
                        break;
                    }
                }
            } else if let Some(shipper) = self.backlogged() {
                if !shipper.ship(Vec::new()) {
                    error = Some("the exporter thread stopped".to_string());
                    break;
                }
            } else {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                // Userspace interrupt coalescing: while traffic flows, nap as long as a quarter
                // of the RX ring takes to fill at the recent rate (NAP_MIN..NAP_MAX) and let a
                // batch gather instead of waking on every frame (a wakeup costs the kernel side
                // too). Flow metering does not care about latency: each frame
                // carries its own XDP timestamp. A quiet queue sleeps in poll() until a frame
                // arrives. With --busy-poll the thread drives the driver itself and never sleeps.
                if self.sock.busy_polling() {
                    if let Err(e) = self.sock.wait(0) {
                        if !wait_failed {
                            eprintln!("probe: {}: busy poll failed: {e}", self.name());
                            wait_failed = true;
                        }
                    }
                } else if last_frames.elapsed() < BUSY_WINDOW {
                    let secs = window_start.elapsed().as_secs_f64();
                    let rate = window_frames as f64 / secs.max(1e-6);
                    let nap = Duration::from_secs_f64(quarter_ring / rate.max(1.0))
                        .clamp(NAP_MIN, NAP_MAX);
                    std::thread::sleep(nap);
                    window_start = Instant::now();
                    window_frames = 0;
                } else if let Err(e) = self.sock.wait(IDLE_WAIT_MS) {
                    if !wait_failed {
                        eprintln!("probe: {}: poll failed: {e}", self.name());
                        wait_failed = true;
                    }
                    std::thread::sleep(Duration::from_millis(IDLE_WAIT_MS as u64));
                }
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                if !self.tick() {
                    error = Some("the exporter thread stopped".to_string());
                    break;
                }
            }
        }
        let socket = match self.sock.stats() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!(
                    "probe: {}: cannot read the socket statistics: {e}",
                    self.name()
                );
                None
            }
        };
        let ring = match self.keeper.take() {
            Some(mut k) => {
                k.flush();
                k.counts()
            }
            None => Default::default(),
        };
        self.publish();
        let mut out = RxOutcome {
            iface: self.iface,
            queue: self.queue,
            books: FrameBooks::default(),
            fragments: Default::default(),
            meter: None,
            handoff: HandoffDrops::default(),
            socket,
            userspace_timestamps: userspace_ts,
            records_dropped: 0,
            ring,
            error,
        };
        match self.stage {
            RxStage::OneHop {
                mut meter,
                mut shipper,
            } => {
                meter.finish();
                // The end of a run can wait for the exporter: hand over everything, blocking.
                if !shipper.finish(meter.take_records()) && out.error.is_none() {
                    out.error = Some("the exporter thread stopped".to_string());
                }
                out.books = meter.books();
                out.fragments = meter.fragments().stats();
                out.records_dropped = shipper.records_dropped;
                out.meter = Some(*meter);
            }
            RxStage::Fanout(mut f) => {
                f.flush();
                f.decoder.finish();
                out.books = f.decoder.books();
                out.fragments = f.decoder.fragments().stats();
                out.handoff = f.drops();
                // `f` (this thread's side of every hand-off ring) is dropped here.
            }
        }
        out
    }

    /// One hop: the shipper, when records wait for room in the exporter's channel.
    fn backlogged(&mut self) -> Option<&mut Shipper> {
        match &mut self.stage {
            RxStage::OneHop { shipper, .. } if shipper.has_backlog() => Some(shipper),
            _ => None,
        }
    }

    /// Once per [`TICK`]: a reload's settings, the PCAP keeper's flush, the published
    /// counters and, one hop, the wall-clock expiry. False when the exporter is gone.
    fn tick(&mut self) -> bool {
        let update = self.updates.lock().ok().and_then(|mut u| u.take());
        if let Some(u) = update {
            if let (Some(s), Some(k)) = (u.selection, self.keeper.as_mut()) {
                k.set_selection(s);
            }
            if let (Some((idle, active, grace)), RxStage::OneHop { meter, .. }) =
                (u.timeouts, &mut self.stage)
            {
                meter.set_timeouts(idle, active, grace);
            }
            if let Some(ignore) = u.ignore {
                match &mut self.stage {
                    RxStage::OneHop { meter, .. } => meter.set_ignore(&ignore),
                    RxStage::Fanout(f) => f.decoder.set_ignore(&ignore),
                }
            }
            if let Some(sampler) = u.pair_sampler {
                match &mut self.stage {
                    RxStage::OneHop { meter, .. } => meter.set_pair_sampler(sampler),
                    RxStage::Fanout(f) => f.decoder.set_pair_sampler(sampler),
                }
            }
        }
        if let Some(k) = self.keeper.as_mut() {
            k.flush();
        }
        self.publish();
        if let RxStage::OneHop { meter, shipper } = &mut self.stage {
            meter.advance(wall_ns());
            if meter.pending() > 0 && !shipper.ship(meter.take_records()) {
                return false;
            }
        }
        true
    }

    fn publish(&self) {
        let (books, flows, dropped) = match &self.stage {
            RxStage::OneHop { meter, .. } => (meter.books(), meter.cache().len() as u64, 0),
            RxStage::Fanout(f) => (f.decoder.books(), 0, f.drops().total()),
        };
        let p = &self.progress;
        p.frames.store(books.read, Ordering::Relaxed);
        p.not_metered.store(books.not_metered(), Ordering::Relaxed);
        p.not_metered_octets
            .store(books.not_metered_octets, Ordering::Relaxed);
        if let Some((first, last)) = books.not_metered_span_ms() {
            p.not_metered_first_ms.store(first, Ordering::Relaxed);
            p.not_metered_last_ms.store(last, Ordering::Relaxed);
        }
        p.flows_active.store(flows, Ordering::Relaxed);
        p.handoff_dropped.store(dropped, Ordering::Relaxed);
    }
}
