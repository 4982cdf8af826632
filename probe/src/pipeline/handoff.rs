//! The hand-off between the two stages of the fan-out: decoders (one per RX queue, or the
//! file reader) pass each frame's summary, not the frame, to the metering worker that owns
//! its flow.
//!
//! The owner is chosen by a **symmetric** hash of the inner flow key ([`symmetric_hash`], the
//! core's):
//! both directions of a connection reach the same worker, whatever queue, interface or VLAN
//! each direction came in on, so biflows pair and TCP ends are seen whole.
//!
//! Each (decoder, worker) pair has its own bounded single-producer single-consumer ring
//! (`rtrb`, wait-free: no lock, no allocation, no syscall per summary). A live decoder never
//! waits for a worker: when the ring is full the summary is dropped and counted
//! ([`Fanout::send`]); a file reader can wait ([`Fanout::send_waiting`]).
//!
//! Besides summaries, a decoder sends its clock (the newest timestamp it has seen) with every
//! summary and, now and then, to every worker: a worker's flows expire when the capture's
//! time says so, not only when one of its own flows sees a packet. With one decoder, N
//! workers therefore export exactly the records one thread would (order aside).

use ipfix_export::TimePrecision;
use probe_core::app::AppFact;
use probe_core::flow::{symmetric_hash, worker_of, HashKey};
use probe_core::meter::FlowMeter;
use probe_core::wire::FrameSummary;

/// Summaries a (decoder, worker) ring holds: at 200 bytes each, 800 KiB per pair, about 2 ms
/// of a 2 Mpps queue for a worker that stalls.
pub const RING_SLOTS: usize = 4096;
/// Application facts a pair's side ring holds (`--app`): a fact is up to 800 bytes and comes
/// with a flow's first packets only, so it travels beside the summaries, not in them (which
/// would make every summary as large). A full side ring drops the fact, counted, not the frame.
pub const FACT_SLOTS: usize = 256;

/// What goes from a decoder to a metering worker.
#[derive(Clone, Copy, Debug)]
pub enum Handoff {
    /// A frame to meter, seen at `ts_ns`, when its decoder's clock was `clock_ns`; `fact`: its
    /// application fact waits, in order, in the pair's fact ring.
    Frame {
        summary: FrameSummary,
        ts_ns: u64,
        clock_ns: u64,
        fact: bool,
    },
    /// The decoder's clock moved on.
    Clock(u64),
    /// Timestamps of the summaries that follow have this resolution (a new capture file).
    Precision(TimePrecision),
}

/// Why a summary never reached its worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HandoffDrops {
    /// The worker's ring was full: the worker fell behind.
    pub ring_full: u64,
    /// The worker had stopped (an error it reported).
    pub worker_gone: u64,
    /// Not frames: application facts dropped because a worker's fact ring was full (the
    /// frame was metered, its flow lacks that fact).
    pub facts: u64,
}

impl HandoffDrops {
    pub fn total(&self) -> u64 {
        self.ring_full + self.worker_gone
    }
    pub fn merge(&mut self, o: &HandoffDrops) {
        self.ring_full += o.ring_full;
        self.worker_gone += o.worker_gone;
        self.facts += o.facts;
    }
}

/// This run's key of the symmetric hash: random, drawn once, shared by every fan-out and
/// every ring keeper of the process (both directions of a flow must hash alike wherever they
/// arrive). Nobody outside can steer flows onto one worker without it.
pub fn hash_key() -> HashKey {
    static KEY: std::sync::OnceLock<HashKey> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| HashKey([crate::sys::random::seed(), crate::sys::random::seed()]))
}

/// Summaries a decoder gathers per worker before writing them into the ring in one go: one
/// update of the ring's shared index per batch instead of per summary (that index's cache
/// line would otherwise travel between the two cores with every frame).
pub const BATCH: usize = 32;

/// A decoder's side: one ring to each worker, and a small batch gathering for each.
pub struct Fanout {
    /// [`hash_key`], kept here so a frame does not read the `OnceLock`.
    key: HashKey,
    rings: Vec<rtrb::Producer<Handoff>>,
    facts: Vec<rtrb::Producer<AppFact>>,
    /// Summaries gathered for each worker, not yet in its ring.
    pending: Vec<Vec<Handoff>>,
    /// Free slots of each ring known without asking it (its consumer only frees more),
    /// less what is pending.
    room: Vec<usize>,
    /// Summaries delivered to each worker.
    pub sent: Vec<u64>,
    pub drops: HandoffDrops,
    /// Of `drops`, summaries already accepted by [`Fanout::send`] that a worker which stopped
    /// never took: their decoder books them once it learns ([`Fanout::take_lost`]).
    lost_after_accept: u64,
    /// The last clock every worker was told.
    told_ns: u64,
}

/// A worker's side: one ring from each decoder.
pub struct Inbox {
    rings: Vec<rtrb::Consumer<Handoff>>,
    facts: Vec<rtrb::Consumer<AppFact>>,
    /// Where the round-robin over decoders resumes.
    next: usize,
}

/// Rings for `decoders` decoders and `workers` workers, `slots` summaries each: a [`Fanout`]
/// per decoder and an [`Inbox`] per worker.
pub fn rings(decoders: usize, workers: usize, slots: usize) -> (Vec<Fanout>, Vec<Inbox>) {
    let mut inboxes: Vec<Inbox> = (0..workers)
        .map(|_| Inbox {
            rings: Vec::with_capacity(decoders),
            facts: Vec::with_capacity(decoders),
            next: 0,
        })
        .collect();
    let fanouts = (0..decoders)
        .map(|_| {
            let mut facts = Vec::with_capacity(workers);
            let rings = inboxes
                .iter_mut()
                .map(|inbox| {
                    let (p, c) = rtrb::RingBuffer::new(slots);
                    inbox.rings.push(c);
                    let (fp, fc) = rtrb::RingBuffer::new(FACT_SLOTS);
                    inbox.facts.push(fc);
                    facts.push(fp);
                    p
                })
                .collect();
            Fanout {
                key: hash_key(),
                rings,
                facts,
                pending: (0..workers).map(|_| Vec::with_capacity(BATCH)).collect(),
                room: vec![0; workers],
                sent: vec![0; workers],
                drops: HandoffDrops::default(),
                lost_after_accept: 0,
                told_ns: 0,
            }
        })
        .collect();
    (fanouts, inboxes)
}

/// What became of a summary offered to [`Fanout::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// Dropped: the worker's ring was full.
    RingFull,
    /// Dropped: the worker is gone.
    WorkerGone,
}

impl Fanout {
    pub fn workers(&self) -> usize {
        self.rings.len()
    }

    /// Hands a summary to its worker without waiting (it leaves in the worker's next batch);
    /// a full ring or a stopped worker drops it (counted here; the caller books the frame as
    /// not metered).
    #[inline]
    pub fn send(
        &mut self,
        s: &FrameSummary,
        ts_ns: u64,
        clock_ns: u64,
        fact: Option<&AppFact>,
    ) -> Sent {
        let w = worker_of(symmetric_hash(s, &self.key), self.rings.len());
        if self.room[w] == 0 {
            let ring = &self.rings[w];
            if ring.is_abandoned() {
                self.drops.worker_gone += 1;
                return Sent::WorkerGone;
            }
            self.room[w] = ring.slots().saturating_sub(self.pending[w].len());
            if self.room[w] == 0 {
                self.drops.ring_full += 1;
                return Sent::RingFull;
            }
        }
        self.accept(w, s, ts_ns, clock_ns, fact)
    }

    /// Hands a summary to its worker, waiting while its ring is full (a capture file can
    /// wait). Fails only when the worker is gone.
    pub fn send_waiting(
        &mut self,
        s: &FrameSummary,
        ts_ns: u64,
        clock_ns: u64,
        fact: Option<&AppFact>,
    ) -> Sent {
        let w = worker_of(symmetric_hash(s, &self.key), self.rings.len());
        if self.room[w] == 0 {
            self.write(w);
            let mut backoff = Backoff::default();
            loop {
                if self.rings[w].is_abandoned() {
                    self.drops.worker_gone += 1;
                    return Sent::WorkerGone;
                }
                self.room[w] = self.rings[w].slots();
                if self.room[w] > 0 {
                    break;
                }
                backoff.wait();
            }
        }
        self.accept(w, s, ts_ns, clock_ns, fact)
    }

    /// Gathers a summary for worker `w`, whose ring has room for it; a full batch is written.
    #[inline]
    fn accept(
        &mut self,
        w: usize,
        s: &FrameSummary,
        ts_ns: u64,
        clock_ns: u64,
        fact: Option<&AppFact>,
    ) -> Sent {
        self.room[w] -= 1;
        // The fact goes first: the worker finds it when it reaches the frame.
        let fact = match fact {
            Some(f) => {
                let sent = self.facts[w].push(*f).is_ok();
                self.drops.facts += !sent as u64;
                sent
            }
            None => false,
        };
        self.pending[w].push(Handoff::Frame {
            summary: *s,
            ts_ns,
            clock_ns,
            fact,
        });
        if self.pending[w].len() == BATCH {
            self.write(w);
        }
        Sent::Delivered
    }

    /// Writes worker `w`'s gathered summaries into its ring (they fit: `room` said so).
    #[inline]
    fn write(&mut self, w: usize) {
        let n = self.pending[w].len();
        if n == 0 {
            return;
        }
        let written = match self.rings[w].write_chunk_uninit(n) {
            Ok(chunk) => chunk.fill_from_iter(self.pending[w].drain(..)),
            Err(_) => 0,
        };
        self.sent[w] += written as u64;
        // Only a worker that is gone leaves them unwritten.
        let lost = n - written;
        self.pending[w].clear();
        self.drops.worker_gone += lost as u64;
        self.lost_after_accept += lost as u64;
    }

    /// Summaries accepted earlier and lost since because their worker had stopped.
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost_after_accept)
    }

    /// Writes every worker's gathered summaries: at the end of each batch of frames a source
    /// read, so nothing waits for more traffic.
    pub fn flush(&mut self) {
        for w in 0..self.rings.len() {
            self.write(w);
        }
    }

    /// Tells every worker the clock, when it moved since they were last told (waits for room:
    /// a clock is small and rare).
    pub fn tell_clock(&mut self, clock_ns: u64) {
        if clock_ns > self.told_ns {
            self.told_ns = clock_ns;
            self.broadcast(Handoff::Clock(clock_ns));
        }
    }

    /// Tells every worker the resolution of the timestamps that follow.
    pub fn tell_precision(&mut self, p: TimePrecision) {
        self.broadcast(Handoff::Precision(p));
    }

    /// After what is pending, in order.
    fn broadcast(&mut self, msg: Handoff) {
        self.flush();
        for (w, ring) in self.rings.iter_mut().enumerate() {
            push_waiting(ring, msg);
            self.room[w] = 0;
        }
    }
}

impl Drop for Fanout {
    /// What is gathered still goes (a clean stop leaves nothing behind).
    fn drop(&mut self) {
        self.flush();
    }
}

/// Pushes, backing off while the ring is full; false when the consumer is gone.
fn push_waiting(ring: &mut rtrb::Producer<Handoff>, msg: Handoff) -> bool {
    let mut backoff = Backoff::default();
    loop {
        match ring.push(msg) {
            Ok(()) => return true,
            Err(_) if ring.is_abandoned() => return false,
            Err(_) => backoff.wait(),
        }
    }
}

/// Spins a little, then yields, then sleeps: a stage that waits on another must leave it the
/// CPU (these machines may have fewer cores than threads).
#[derive(Default)]
pub struct Backoff {
    tries: u32,
}

impl Backoff {
    pub fn wait(&mut self) {
        self.tries += 1;
        if self.tries < 16 {
            std::hint::spin_loop();
        } else if self.tries < 32 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }

    pub fn reset(&mut self) {
        self.tries = 0;
    }
}

/// What a worker took from its inbox in one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    pub summaries: usize,
    /// Messages of any kind.
    pub messages: usize,
}

impl Inbox {
    /// Feeds up to `max` messages from each decoder's ring to `meter`, round-robin.
    #[inline]
    pub fn drain_into(&mut self, meter: &mut FlowMeter, max: usize) -> Drained {
        let mut summaries = 0;
        let messages = self.drain(max, |msg, fact| match msg {
            Handoff::Frame {
                summary,
                ts_ns,
                clock_ns,
                ..
            } => {
                summaries += 1;
                match fact {
                    Some(f) => meter.push_with_fact(summary, *ts_ns, *clock_ns, &f),
                    None => meter.push(summary, *ts_ns, *clock_ns),
                }
            }
            Handoff::Clock(c) => meter.clock(*c),
            Handoff::Precision(p) => meter.set_time_precision(*p),
        });
        Drained {
            summaries,
            messages,
        }
    }

    /// Hands up to `max` messages from each decoder's ring to `take`, round-robin; returns
    /// how many.
    #[inline]
    pub fn drain(&mut self, max: usize, mut take: impl FnMut(&Handoff, Option<AppFact>)) -> usize {
        let mut messages = 0;
        let n = self.rings.len();
        for i in 0..n {
            let k = (self.next + i) % n;
            let (ring, facts) = (&mut self.rings[k], &mut self.facts[k]);
            let want = ring.slots().min(max);
            if want == 0 {
                continue;
            }
            let Ok(chunk) = ring.read_chunk(want) else {
                continue;
            };
            let (a, b) = chunk.as_slices();
            for msg in a.iter().chain(b) {
                let fact = match msg {
                    Handoff::Frame { fact: true, .. } => facts.pop().ok(),
                    _ => None,
                };
                take(msg, fact);
            }
            messages += want;
            chunk.commit_all();
        }
        self.next = (self.next + 1) % n.max(1);
        messages
    }

    /// Every decoder has finished (dropped its side) and nothing is left to read.
    pub fn finished(&self) -> bool {
        self.rings.iter().all(|r| r.is_abandoned() && r.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe_core::flow::CacheConfig;

    fn summary(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, proto: u8) -> FrameSummary {
        let mut s = FrameSummary {
            ip_version: 4,
            protocol: proto,
            src_port: sp,
            dst_port: dp,
            ip_octets: 100,
            ..Default::default()
        };
        s.src_addr[..4].copy_from_slice(&src);
        s.dst_addr[..4].copy_from_slice(&dst);
        s
    }

    #[test]
    fn both_directions_hash_alike_and_flows_spread() {
        let mut per_worker = [0u32; 4];
        for i in 0..4000u32 {
            let a = [10, 0, (i >> 8) as u8, i as u8];
            let b = [192, 0, 2, (i % 7) as u8];
            let fwd = summary(a, b, 40000 + (i % 1000) as u16, 443, 6);
            let mut rev = summary(b, a, 443, 40000 + (i % 1000) as u16, 6);
            rev.vlan_id = 7; // a SPAN port may tag each direction differently
            assert_eq!(
                symmetric_hash(&fwd, &hash_key()),
                symmetric_hash(&rev, &hash_key()),
                "flow {i}"
            );
            per_worker[worker_of(symmetric_hash(&fwd, &hash_key()), 4)] += 1;
        }
        // 4000 flows over 4 workers: each within 15 % of 1000.
        for n in per_worker {
            assert!((850..1150).contains(&n), "{per_worker:?}");
        }
        // An echo request and its reply (type/code in the port fields) meet too.
        let req = summary([10, 0, 0, 1], [10, 0, 0, 2], 0, 8 << 8, 1);
        let rep = summary([10, 0, 0, 2], [10, 0, 0, 1], 0, 0, 1);
        assert_eq!(
            symmetric_hash(&req, &hash_key()),
            symmetric_hash(&rep, &hash_key())
        );
    }

    /// Two decoders, three workers, rings far smaller than the traffic: every summary sent is
    /// metered once by the worker its hash names, in the order its decoder sent it, and what a
    /// full ring refused is counted, never lost silently.
    #[test]
    fn stress_every_summary_lands_once_or_is_counted() {
        const PER_DECODER: u64 = 200_000;
        let (fanouts, inboxes) = rings(2, 3, 64);
        let cache = CacheConfig {
            max_flows: 1 << 20,
            idle_timeout_ns: u64::MAX / 4,
            active_timeout_ns: u64::MAX / 4,
            ..Default::default()
        };
        let workers: Vec<_> = inboxes
            .into_iter()
            .enumerate()
            .map(|(w, mut inbox)| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    let mut m = FlowMeter::new(cache);
                    let mut backoff = Backoff::default();
                    loop {
                        let d = inbox.drain_into(&mut m, 32);
                        if d.messages == 0 {
                            if inbox.finished() {
                                break;
                            }
                            backoff.wait();
                        } else {
                            backoff.reset();
                        }
                    }
                    m.finish();
                    let recs = m.take_records();
                    (w, m.summaries(), recs)
                })
            })
            .collect();
        let decoders: Vec<_> = fanouts
            .into_iter()
            .enumerate()
            .map(|(d, mut f)| {
                std::thread::spawn(move || {
                    let mut refused = 0u64;
                    for i in 0..PER_DECODER {
                        // 5,000 flows per decoder, the source address says which decoder.
                        let flow = (i % 5000) as u16;
                        let s = summary([10, d as u8, 0, 1], [10, 9, 0, 2], flow, 80, 17);
                        let ts = 1_000 + i;
                        // The first decoder drops when full, the second waits.
                        let sent = if d == 0 {
                            f.send(&s, ts, ts, None)
                        } else {
                            f.send_waiting(&s, ts, ts, None)
                        };
                        if sent != Sent::Delivered {
                            refused += 1;
                        }
                    }
                    f.tell_clock(1_000 + PER_DECODER);
                    (d, f.sent.clone(), f.drops, refused)
                })
            })
            .collect();
        let mut delivered = 0u64;
        for h in decoders {
            let (d, sent, drops, refused) = h.join().unwrap();
            assert_eq!(sent.iter().sum::<u64>() + drops.total(), PER_DECODER);
            assert_eq!(drops.total(), refused);
            assert_eq!(drops.worker_gone, 0);
            if d == 1 {
                assert_eq!(drops.total(), 0, "a waiting sender never drops");
            }
            delivered += sent.iter().sum::<u64>();
        }
        let mut metered = 0u64;
        let mut packets = 0u64;
        for h in workers {
            let (w, summaries, recs) = h.join().unwrap();
            metered += summaries;
            for r in &recs {
                packets += r.packets;
                let s = summary(
                    [10, 0, 0, 1],
                    [10, 9, 0, 2],
                    r.src_port,
                    r.dst_port,
                    r.protocol,
                );
                let mut s = s;
                if let std::net::IpAddr::V4(a) = r.src_addr {
                    s.src_addr[..4].copy_from_slice(&a.octets());
                }
                assert_eq!(
                    worker_of(symmetric_hash(&s, &hash_key()), 3),
                    w,
                    "flow in the wrong worker"
                );
            }
        }
        assert_eq!(metered, delivered);
        assert_eq!(packets, delivered);
    }
}
