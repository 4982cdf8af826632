//! The second stage of the fan-out: a metering worker owns one flow cache, takes the summaries
//! its inbox brings from every decoder (see [`crate::pipeline::handoff`]) and ships expired records to
//! the exporter. `probe read --workers N` and `probe capture` off the one-hop path run N of
//! these; no lock is taken per summary, and a reload's settings are looked at once per tick.

use crate::pipeline::exporter::Gauges;
use crate::pipeline::handoff::{Backoff, Inbox};
use crossbeam_channel::Sender;
use ipfix_export::{FlowRecord, FlowTotals, Priority};
use probe_core::meter::FlowMeter;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records handed to the exporter per channel message.
pub const RECORD_BATCH: usize = 512;
/// Records a live stage holds while the exporter's channel is full (about 50 MB); beyond it
/// records are dropped and counted, one-packet records first. A live stage never blocks on
/// the exporter: a NIC cannot wait.
const MAX_BACKLOG: usize = 262_144;
/// How often a worker looks at reload updates, publishes its counters and, live, moves its
/// flow clock by wall time.
const TICK: Duration = Duration::from_millis(100);
/// Messages taken from each decoder's ring per round.
const DRAIN: usize = 256;

/// A record of one packet in one direction: what a bounded backlog drops first (the
/// exporter's per-collector backlog ranks records the same way).
fn is_single(r: &FlowRecord) -> bool {
    Priority::of(r) == Priority::SinglePacket
}

/// How a stage hands records to the exporter.
///
/// Live, memory stays bounded whatever the exporter does: the channel holds at most its
/// capacity in batches of at most [`RECORD_BATCH`] records (a backlog is sent in such slices,
/// never as one batch, which once let a channel of 256 batches hold millions of records), and
/// the backlog behind it at most [`MAX_BACKLOG`]. When the backlog is over its bound the
/// records least worth keeping go first: those of one packet (a flood's, a scan's), oldest
/// first, and only then the oldest of the rest. Every drop is counted in the books and in the
/// collectors' statistics (`Gauges::add_lost`).
pub struct Shipper {
    tx: Sender<Vec<FlowRecord>>,
    /// Live: never wait for the exporter (hold a bounded backlog, then drop and count).
    /// Files: wait.
    live: bool,
    /// Batches waiting for room in the channel, oldest first, each at most `RECORD_BATCH`,
    /// with how many of their records have one packet (so that bounding the backlog skips
    /// batches without any instead of scanning them on every call).
    backlog: VecDeque<(Vec<FlowRecord>, usize)>,
    backlog_len: usize,
    gauges: Arc<Gauges>,
    pub records_dropped: u64,
}

impl Shipper {
    pub fn new(tx: Sender<Vec<FlowRecord>>, gauges: Arc<Gauges>, live: bool) -> Shipper {
        Shipper {
            tx,
            live,
            backlog: VecDeque::new(),
            backlog_len: 0,
            gauges,
            records_dropped: 0,
        }
    }

    pub fn has_backlog(&self) -> bool {
        self.backlog_len > 0
    }

    /// Hands `records` (and any backlog) to the exporter. Live, without blocking: while its
    /// channel is full they wait in the backlog, bounded (see the type's doc). False when the
    /// exporter is gone.
    pub fn ship(&mut self, mut records: Vec<FlowRecord>) -> bool {
        if !self.live {
            return records.is_empty() || self.tx.send(records).is_ok();
        }
        if self.backlog_len == 0 && records.len() <= RECORD_BATCH {
            if records.is_empty() {
                return true;
            }
            match self.tx.try_send(records) {
                Ok(()) => return true,
                Err(crossbeam_channel::TrySendError::Full(r)) => records = r,
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return false,
            }
        }
        while records.len() > RECORD_BATCH {
            let rest = records.split_off(RECORD_BATCH);
            self.queue(std::mem::replace(&mut records, rest));
        }
        self.queue(records);
        while let Some((batch, singles)) = self.backlog.pop_front() {
            let n = batch.len();
            match self.tx.try_send(batch) {
                Ok(()) => self.backlog_len -= n,
                Err(crossbeam_channel::TrySendError::Full(b)) => {
                    self.backlog.push_front((b, singles));
                    break;
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return false,
            }
        }
        self.bound();
        true
    }

    fn queue(&mut self, batch: Vec<FlowRecord>) {
        if !batch.is_empty() {
            self.backlog_len += batch.len();
            let singles = batch.iter().filter(|r| is_single(r)).count();
            self.backlog.push_back((batch, singles));
        }
    }

    /// Drops what is over [`MAX_BACKLOG`]: one-packet records first, oldest first, then the
    /// oldest of the rest.
    fn bound(&mut self) {
        if self.backlog_len <= MAX_BACKLOG {
            return;
        }
        let mut lost = FlowTotals::default();
        let mut over = self.backlog_len - MAX_BACKLOG;
        for (batch, singles) in self.backlog.iter_mut() {
            if over == 0 {
                break;
            }
            if *singles == 0 {
                continue;
            }
            batch.retain(|r| {
                if over > 0 && is_single(r) {
                    over -= 1;
                    *singles -= 1;
                    lost += FlowTotals::of(r);
                    false
                } else {
                    true
                }
            });
        }
        while over > 0 {
            let Some((batch, singles)) = self.backlog.front_mut() else {
                break;
            };
            let n = over.min(batch.len());
            for r in batch.drain(..n) {
                *singles -= is_single(&r) as usize;
                lost += FlowTotals::of(&r);
            }
            over -= n;
            if batch.is_empty() {
                self.backlog.pop_front();
            }
        }
        self.backlog.retain(|(b, _)| !b.is_empty());
        self.records_dropped += lost.flows;
        self.backlog_len -= lost.flows as usize;
        self.gauges.add_lost(lost);
    }

    /// The end of a run can wait for the exporter: everything is handed over, blocking.
    pub fn finish(&mut self, rest: Vec<FlowRecord>) -> bool {
        while let Some((batch, _)) = self.backlog.pop_front() {
            if self.tx.send(batch).is_err() {
                return false;
            }
        }
        self.backlog_len = 0;
        rest.is_empty() || self.tx.send(rest).is_ok()
    }
}

/// What a reload changes in a running worker.
#[derive(Clone, Debug, Default)]
pub struct WorkerUpdate {
    /// The PCAP ring's new selection (for stages that keep packets).
    pub selection: Option<probe_core::select::Selection>,
    /// New idle, active and TCP-end timeouts, in nanoseconds.
    pub timeouts: Option<(u64, u64, u64)>,
    /// A new ignore-list (for the decoders, which apply it where the kernel could not look).
    pub ignore: Option<Vec<(std::net::IpAddr, u8)>>,
    /// New pair sampling (`Some(None)`: off), for the decoders' share of it.
    pub pair_sampler: Option<Option<probe_core::sample::PairSampler>>,
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

#[cfg(test)]
mod shipper_tests {
    use super::*;

    fn record(packets: u64) -> FlowRecord {
        let a = std::net::IpAddr::from([10, 0, 0, 1]);
        FlowRecord {
            src_addr: a,
            dst_addr: a,
            src_port: 1,
            dst_port: 2,
            protocol: 17,
            class_of_service: 0,
            tcp_flags: 0,
            min_ttl: 64,
            max_ttl: 64,
            icmp_type_code: 0,
            vlan_id: 0,
            customer_vlan_id: 0,
            mpls_top_label: [0; 3],
            src_mac: [0; 6],
            dst_mac: [0; 6],
            packets,
            octets: 100 * packets,
            start_ns: 0,
            end_ns: 0,
            end_reason: ipfix_export::EndReason::LackOfResources,
            time_precision: ipfix_export::TimePrecision::Micros,
            reverse: None,
            tunnel: None,
            ingress_interface: 0,
            app: None,
            community_id: None,
            aggregate: None,
        }
    }

    #[test]
    fn a_stalled_exporter_costs_bounded_memory_and_one_packet_records_go_first() {
        // Nobody reads the channel (an exporter paced far below the flood): 2,000,000 records
        // of one packet, with 1,000 conversations' records among them.
        let (tx, rx) = crossbeam_channel::bounded(4);
        let gauges = Arc::new(Gauges::default());
        let mut shipper = Shipper::new(tx, gauges.clone(), true);
        let mut shipped = 0u64;
        for round in 0..4000u64 {
            let mut v: Vec<FlowRecord> = (0..500).map(|_| record(1)).collect();
            if round % 4 == 0 {
                v.push(record(7));
            }
            shipped += v.len() as u64;
            assert!(shipper.ship(v));
        }
        // Held: at most 4 batches of at most RECORD_BATCH in the channel, and the backlog.
        let in_channel: Vec<Vec<FlowRecord>> = rx.try_iter().collect();
        assert!(in_channel.len() <= 4 && in_channel.iter().all(|b| b.len() <= RECORD_BATCH));
        let held = in_channel.iter().map(Vec::len).sum::<usize>() + shipper.backlog_len;
        assert!(shipper.backlog_len <= MAX_BACKLOG);
        // Every record is held or counted as dropped, and the conversations all survive.
        assert_eq!(held as u64 + shipper.records_dropped, shipped);
        let conversations = in_channel
            .iter()
            .flatten()
            .chain(shipper.backlog.iter().flat_map(|(b, _)| b))
            .filter(|r| r.packets == 7)
            .count();
        assert_eq!(conversations, 1000);
        let (_, lost) = gauges.export_progress();
        assert_eq!(lost, shipper.records_dropped);
    }
}
