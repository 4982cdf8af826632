//! One worker per RX queue: takes frames from its AF_XDP socket in batches, meters them into
//! its own flow cache (no locks, no allocation per frame), gives the frames straight back to
//! the kernel, and hands expired records to the exporter.

use super::xsk::{RxDesc, XskSocket, XskStats};
use crate::meter::Meter;
use crate::wire::LinkType;
use bpf::{FrameMeta, META_LEN};
use crossbeam_channel::Sender;
use ipfix_export::{FlowRecord, TimePrecision};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records handed to the exporter per channel message.
const RECORD_BATCH: usize = 512;
/// Records a worker holds while the exporter's channel is full (about 40 MB); beyond it the
/// oldest are dropped and counted. The worker never blocks on the exporter: a NIC cannot wait.
const MAX_BACKLOG: usize = 262_144;
/// How often a worker moves its flow clock by wall time and ships what expired.
const TICK: Duration = Duration::from_millis(100);
/// How many frames ahead the worker prefetches.
const PREFETCH_AHEAD: usize = 8;
/// A queue that had frames this recently is busy: its worker naps instead of polling.
const BUSY_WINDOW: Duration = Duration::from_millis(20);
/// Naps last long enough for about a quarter of the RX ring to fill at the recent rate,
/// within these bounds: long naps mean fewer wakeups, the ring bounds how long is safe.
const NAP_MIN: Duration = Duration::from_micros(50);
const NAP_MAX: Duration = Duration::from_millis(1);
/// Longest sleep in poll() when the queue is quiet.
const IDLE_WAIT_MS: i32 = 50;

/// Counters a worker publishes for the periodic stats line and the statistics options
/// records (relaxed stores every tick).
pub struct Progress {
    pub frames: AtomicU64,
    /// Frames filtered, malformed or dropped as duplicates; their octets, and the unix ms of
    /// the first and the last (first > last while there was none).
    pub not_metered: AtomicU64,
    pub not_metered_octets: AtomicU64,
    pub not_metered_first_ms: AtomicU64,
    pub not_metered_last_ms: AtomicU64,
    pub flows_active: AtomicU64,
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
        }
    }
}

/// What a worker did, returned when it stops.
pub struct WorkerOutcome {
    pub queue: u32,
    pub meter: Meter,
    pub socket: Option<XskStats>,
    /// Frames stamped in userspace because the XDP metadata was missing.
    pub userspace_timestamps: u64,
    /// Flow records dropped because the exporter fell behind by more than the backlog.
    pub records_dropped: u64,
    /// Frames the PCAP selection kept, and those dropped because the ring writer was behind.
    pub ring_selected: u64,
    pub ring_queue_full: u64,
    pub error: Option<String>,
}

pub struct Worker {
    pub queue: u32,
    pub sock: XskSocket,
    pub meter: Meter,
    pub records: Sender<Vec<FlowRecord>>,
    pub batch: usize,
    pub cpu: Option<u32>,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in ns: turns the program's ktime into wall time.
    pub clock_offset_ns: i64,
    /// Records waiting for room in the exporter's channel.
    pub backlog: Vec<FlowRecord>,
    pub progress: Arc<Progress>,
    /// Where records dropped here are reported to the exporter's statistics.
    pub gauges: Arc<crate::export::Gauges>,
    /// The probe switched users: the worker keeps no capability (it inherits CAP_BPF).
    pub unprivileged: bool,
    /// The PCAP ring's selection, when --pcap-dir is given.
    pub keeper: Option<crate::ring::Keeper>,
    pub records_dropped: u64,
    /// A reload's new settings, taken on the next tick (a lock once per tick, never per frame).
    pub updates: Arc<std::sync::Mutex<Option<WorkerUpdate>>>,
}

/// What a reload changes in a running worker.
#[derive(Clone, Debug, Default)]
pub struct WorkerUpdate {
    /// The PCAP ring's new selection.
    pub selection: Option<crate::select::Selection>,
    /// New idle, active and TCP-end timeouts, in nanoseconds.
    pub timeouts: Option<(u64, u64, u64)>,
}

/// Nanoseconds since the Unix epoch.
pub fn wall_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC, read with the tightest bracket of a few tries.
pub fn realtime_offset_ns() -> i64 {
    let mut best = (u64::MAX, 0i64);
    for _ in 0..5 {
        let m0 = clock_ns(libc::CLOCK_MONOTONIC);
        let r = clock_ns(libc::CLOCK_REALTIME);
        let m1 = clock_ns(libc::CLOCK_MONOTONIC);
        let width = m1 - m0;
        if width < best.0 {
            best = (width, r as i64 - (m0 + width / 2) as i64);
        }
    }
    best.1
}

fn pin_to_cpu(cpu: u32) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays in bounds for cpu < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu as usize >= libc::CPU_SETSIZE as usize {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Worker {
    /// Runs until `stop` is set and the RX ring is empty. The caller unregisters the socket
    /// from the XDP program before setting `stop`, so the ring drains and nothing is left in it.
    pub fn run(mut self, stop: Arc<AtomicBool>) -> WorkerOutcome {
        let mut error = None;
        if self.unprivileged {
            if let Err(e) = crate::privileges::clear_thread_caps() {
                error = Some(format!("cannot drop the worker's capabilities: {e}"));
            }
        }
        if let Some(cpu) = self.cpu {
            if let Err(e) = pin_to_cpu(cpu) {
                eprintln!(
                    "probe: queue {}: cannot pin the worker to CPU {cpu}: {e}; running unpinned",
                    self.queue
                );
            }
        }
        self.meter.set_time_precision(TimePrecision::Nanos);
        let mut descs = vec![RxDesc::default(); self.batch];
        let mut userspace_ts = 0u64;
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
                    let stamped = meta.and_then(|m| {
                        let fm = FrameMeta::parse(m)?;
                        FrameMeta::clear(m);
                        Some(fm)
                    });
                    let ts = match stamped {
                        Some(fm) => {
                            (fm.ktime_ns as i64).saturating_add(self.clock_offset_ns) as u64
                        }
                        None => {
                            userspace_ts += 1;
                            *read_ts.get_or_insert_with(wall_ns)
                        }
                    };
                    let summary = self.meter.process(Some(LinkType::Ethernet), data, ts);
                    if let Some(k) = self.keeper.as_mut() {
                        k.offer(summary, data, ts);
                    }
                }
                let back = self.sock.refill(&mut descs[..n].iter().map(|d| d.addr));
                debug_assert_eq!(back as usize, n, "the fill ring holds every frame");
                // need_wakeup: a zero-copy driver that ran out of fill-ring frames stopped and
                // waits for a syscall to look again.
                if self.sock.needs_wakeup() {
                    self.sock.kick();
                }
                if self.meter.pending() >= RECORD_BATCH && !self.ship() {
                    error = Some("the exporter thread stopped".to_string());
                    break;
                }
            } else if !self.backlog.is_empty() && !self.ship() {
                error = Some("the exporter thread stopped".to_string());
                break;
            } else {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                // Userspace interrupt coalescing: while traffic flows, nap as long as a quarter
                // of the RX ring takes to fill at the recent rate (NAP_MIN..NAP_MAX) and let a
                // batch gather instead of waking on every frame (a wakeup costs the kernel side
                // too). Flow metering does not care about latency: each frame
                // carries its own XDP timestamp. A quiet queue sleeps in poll() until a frame
                // arrives. With --busy-poll the worker drives the driver itself and never sleeps.
                if self.sock.busy_polling() {
                    if let Err(e) = self.sock.wait(0) {
                        if !wait_failed {
                            eprintln!("probe: queue {}: busy poll failed: {e}", self.queue);
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
                        eprintln!("probe: queue {}: poll failed: {e}", self.queue);
                        wait_failed = true;
                    }
                    std::thread::sleep(Duration::from_millis(IDLE_WAIT_MS as u64));
                }
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                let update = self.updates.lock().ok().and_then(|mut u| u.take());
                if let Some(u) = update {
                    if let (Some(s), Some(k)) = (u.selection, self.keeper.as_mut()) {
                        k.set_selection(s);
                    }
                    if let Some((idle, active, grace)) = u.timeouts {
                        self.meter.set_timeouts(idle, active, grace);
                    }
                }
                if let Some(k) = self.keeper.as_mut() {
                    k.flush();
                }
                self.progress
                    .frames
                    .store(self.meter.books().read, Ordering::Relaxed);
                let books = self.meter.books();
                self.progress
                    .not_metered
                    .store(books.not_metered(), Ordering::Relaxed);
                self.progress
                    .not_metered_octets
                    .store(books.not_metered_octets, Ordering::Relaxed);
                if let Some((first, last)) = books.not_metered_span_ms() {
                    self.progress
                        .not_metered_first_ms
                        .store(first, Ordering::Relaxed);
                    self.progress
                        .not_metered_last_ms
                        .store(last, Ordering::Relaxed);
                }
                self.progress
                    .flows_active
                    .store(self.meter.cache().len() as u64, Ordering::Relaxed);
                self.meter.advance(wall_ns());
                if self.meter.pending() > 0 && !self.ship() {
                    error = Some("the exporter thread stopped".to_string());
                    break;
                }
            }
        }
        let socket = match self.sock.stats() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!(
                    "probe: queue {}: cannot read the socket statistics: {e}",
                    self.queue
                );
                None
            }
        };
        let (ring_selected, ring_queue_full) = match self.keeper.take() {
            Some(mut k) => {
                k.flush();
                (k.selected, k.queue_full)
            }
            None => (0, 0),
        };
        self.meter.finish();
        // The end of a run can wait for the exporter: hand over everything, blocking.
        let mut rest = std::mem::take(&mut self.backlog);
        rest.extend(self.meter.take_records());
        if !rest.is_empty() && self.records.send(rest).is_err() && error.is_none() {
            error = Some("the exporter thread stopped".to_string());
        }
        WorkerOutcome {
            queue: self.queue,
            meter: self.meter,
            socket,
            userspace_timestamps: userspace_ts,
            records_dropped: self.records_dropped,
            ring_selected,
            ring_queue_full,
            error,
        }
    }

    /// Hands waiting records to the exporter without blocking; while its channel is full they
    /// wait in the backlog (bounded: the oldest beyond it are dropped and counted). False when
    /// the exporter is gone.
    fn ship(&mut self) -> bool {
        let batch = if self.backlog.is_empty() {
            if self.meter.pending() == 0 {
                return true;
            }
            self.meter.take_records()
        } else {
            let mut b = std::mem::take(&mut self.backlog);
            b.extend(self.meter.take_records());
            b
        };
        match self.records.try_send(batch) {
            Ok(()) => true,
            Err(crossbeam_channel::TrySendError::Full(mut b)) => {
                if b.len() > MAX_BACKLOG {
                    let over = b.len() - MAX_BACKLOG;
                    let mut lost = ipfix_export::FlowTotals::default();
                    for r in b.drain(..over) {
                        lost += ipfix_export::FlowTotals {
                            flows: 1,
                            packets: r.packets,
                            octets: r.octets,
                        };
                    }
                    self.gauges.add_lost(lost);
                    self.records_dropped += over as u64;
                }
                self.backlog = b;
                true
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => false,
        }
    }
}
