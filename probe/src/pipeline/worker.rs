//! The second stage of the fan-out: a metering worker owns one flow cache, takes the summaries
//! its inbox brings from every decoder (see [`crate::pipeline::handoff`]) and ships expired records to
//! the exporter. `probe read --workers N` and `probe capture` off the one-hop path run N of
//! these; no lock is taken per summary, and a reload's settings are looked at once per tick.

use crate::pipeline::exporter::Gauges;
use crate::pipeline::handoff::{Backoff, Inbox};
use crossbeam_channel::Sender;
use ipfix_export::FlowRecord;
use probe_core::meter::FlowMeter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records handed to the exporter per channel message.
pub const RECORD_BATCH: usize = 512;
/// Records a live worker holds while the exporter's channel is full (about 40 MB); beyond it
/// the oldest are dropped and counted. A live worker never blocks on the exporter: a NIC
/// cannot wait.
const MAX_BACKLOG: usize = 262_144;
/// How often a worker looks at reload updates, publishes its counters and, live, moves its
/// flow clock by wall time.
const TICK: Duration = Duration::from_millis(100);
/// Messages taken from each decoder's ring per round.
const DRAIN: usize = 256;

/// How a stage hands records to the exporter.
pub struct Shipper {
    tx: Sender<Vec<FlowRecord>>,
    /// Live: never wait for the exporter (hold a bounded backlog, then drop and count).
    /// Files: wait.
    live: bool,
    backlog: Vec<FlowRecord>,
    gauges: Arc<Gauges>,
    pub records_dropped: u64,
}

impl Shipper {
    pub fn new(tx: Sender<Vec<FlowRecord>>, gauges: Arc<Gauges>, live: bool) -> Shipper {
        Shipper {
            tx,
            live,
            backlog: Vec::new(),
            gauges,
            records_dropped: 0,
        }
    }

    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Hands `records` (and any backlog) to the exporter. Live, without blocking: while its
    /// channel is full they wait in the backlog, bounded, the oldest beyond it dropped and
    /// counted. False when the exporter is gone.
    pub fn ship(&mut self, records: Vec<FlowRecord>) -> bool {
        let batch = if self.backlog.is_empty() {
            if records.is_empty() {
                return true;
            }
            records
        } else {
            let mut b = std::mem::take(&mut self.backlog);
            b.extend(records);
            b
        };
        if !self.live {
            return self.tx.send(batch).is_ok();
        }
        match self.tx.try_send(batch) {
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

    /// The end of a run can wait for the exporter: everything is handed over, blocking.
    pub fn finish(&mut self, rest: Vec<FlowRecord>) -> bool {
        let mut all = std::mem::take(&mut self.backlog);
        all.extend(rest);
        all.is_empty() || self.tx.send(all).is_ok()
    }
}

/// What a reload changes in a running worker.
#[derive(Clone, Debug, Default)]
pub struct WorkerUpdate {
    /// The PCAP ring's new selection (for stages that keep packets).
    pub selection: Option<probe_core::select::Selection>,
    /// New idle, active and TCP-end timeouts, in nanoseconds.
    pub timeouts: Option<(u64, u64, u64)>,
}

/// Where a reload leaves a stage's new settings; taken once per tick.
pub type Updates = Arc<Mutex<Option<WorkerUpdate>>>;

/// A metering worker's counters, for the stats line, metrics and progress (relaxed stores
/// every tick).
#[derive(Default)]
pub struct WorkerProgress {
    pub summaries: AtomicU64,
    pub flows_active: AtomicU64,
}

pub struct MeteringWorker {
    pub index: usize,
    pub inbox: Inbox,
    pub flows: FlowMeter,
    pub shipper: Shipper,
    pub cpu: Option<u32>,
    /// Live capture: the flow clock also moves by wall time, so idle flows leave on time on a
    /// quiet link. Files: only packet time moves it.
    pub live: bool,
    pub progress: Arc<WorkerProgress>,
    pub updates: Updates,
    /// The probe switched users: the thread keeps no capability.
    pub unprivileged: bool,
}

/// What a metering worker did, returned when it stops.
pub struct MeteringOutcome {
    pub index: usize,
    pub flows: FlowMeter,
    pub records_dropped: u64,
    pub error: Option<String>,
}

impl MeteringWorker {
    /// Runs until every decoder has finished and the inbox is empty, then exports every flow.
    pub fn run(mut self) -> MeteringOutcome {
        let mut error = None;
        if self.unprivileged {
            if let Err(e) = crate::sys::privileges::clear_thread_caps() {
                error = Some(format!("cannot drop the worker's capabilities: {e}"));
            }
        }
        crate::sys::cpus::pin_or_warn(self.cpu, &format!("metering worker {}", self.index));
        // The resolution of the times comes from the decoders (a Precision message).
        let mut backoff = Backoff::default();
        let mut last_tick = Instant::now();
        let mut idle_flushed = true;
        loop {
            let d = self.inbox.drain_into(&mut self.flows, DRAIN);
            if d.messages > 0 {
                backoff.reset();
                idle_flushed = false;
                if self.flows.pending() >= RECORD_BATCH
                    && !self.shipper.ship(self.flows.take_records())
                {
                    error = Some("the exporter thread stopped".to_string());
                    break;
                }
            } else if self.inbox.finished() {
                break;
            } else {
                // Nothing to do: what the lookahead holds goes to the cache and what expired to
                // the exporter, so records never wait for summaries that have not come.
                if !idle_flushed {
                    idle_flushed = true;
                    self.flows.apply_waiting();
                    if !self.shipper.ship(self.flows.take_records()) {
                        error = Some("the exporter thread stopped".to_string());
                        break;
                    }
                } else if self.shipper.has_backlog() && !self.shipper.ship(Vec::new()) {
                    error = Some("the exporter thread stopped".to_string());
                    break;
                }
                backoff.wait();
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.tick();
                if self.flows.pending() > 0 && !self.shipper.ship(self.flows.take_records()) {
                    error = Some("the exporter thread stopped".to_string());
                    break;
                }
            }
        }
        self.flows.finish();
        if !self.shipper.finish(self.flows.take_records()) && error.is_none() {
            error = Some("the exporter thread stopped".to_string());
        }
        self.publish();
        MeteringOutcome {
            index: self.index,
            flows: self.flows,
            records_dropped: self.shipper.records_dropped,
            error,
        }
    }

    fn tick(&mut self) {
        let update = self.updates.lock().ok().and_then(|mut u| u.take());
        if let Some((idle, active, grace)) = update.and_then(|u| u.timeouts) {
            self.flows.set_timeouts(idle, active, grace);
        }
        if self.live {
            self.flows.advance(crate::sys::clock::wall_ns());
        }
        self.publish();
    }

    fn publish(&self) {
        self.progress
            .summaries
            .store(self.flows.summaries(), Ordering::Relaxed);
        self.progress
            .flows_active
            .store(self.flows.cache().len() as u64, Ordering::Relaxed);
    }
}
