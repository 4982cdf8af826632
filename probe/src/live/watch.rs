//! What the main thread watches while capture runs: running totals for the statistics
//! options records, and the periodic one-line summary on stderr (`--stats-interval`).

use super::{xsk, Capture, RxWatch};
use crate::pipeline::exporter;
use crate::pipeline::worker::WorkerProgress;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Running totals for the statistics options records, from the XDP counters of every queue of
/// every interface and the RX threads' progress (an estimate while running; the exact books
/// are published at the end).
pub fn metering_counts(captures: &[Capture], watch: &[RxWatch]) -> ipfix_export::MeteringCounts {
    let mut m = ipfix_export::MeteringCounts::default();
    for c in captures {
        for q in 0..c.available.min(bpf::MAX_QUEUES) {
            if let Ok(x) = c.steering.counters(q) {
                m.observed += x.seen;
                m.not_metered += x.ignored + x.no_socket + x.redirect_errors;
            }
        }
    }
    for w in watch {
        let p = &w.progress;
        let sock = xsk::stats_of(w.fd).map_or(0, |s| s.rx_dropped + s.rx_ring_full);
        m.not_metered += sock + p.not_metered.load(Ordering::Relaxed);
        m.not_metered_octets += p.not_metered_octets.load(Ordering::Relaxed);
        let (first, last) = (
            p.not_metered_first_ms.load(Ordering::Relaxed),
            p.not_metered_last_ms.load(Ordering::Relaxed),
        );
        if first <= last {
            let (f, l) = m.not_metered_span_ms.unwrap_or((first, last));
            m.not_metered_span_ms = Some((f.min(first), l.max(last)));
        }
    }
    m
}

/// The periodic one-line summary on stderr (`--stats-interval`).
pub struct StatsLine {
    every: Option<Duration>,
    last: Instant,
    started: Instant,
    prev: (u64, u64, u64),
}

impl StatsLine {
    pub fn new(every: Duration) -> StatsLine {
        StatsLine {
            every: (!every.is_zero()).then_some(every),
            last: Instant::now(),
            started: Instant::now(),
            prev: (0, 0, 0),
        }
    }

    pub fn maybe_print(
        &mut self,
        captures: &[Capture],
        watch: &[RxWatch],
        workers: &[Arc<WorkerProgress>],
        gauges: &exporter::Gauges,
    ) {
        let Some(every) = self.every else { return };
        let dt = self.last.elapsed();
        if dt < every {
            return;
        }
        self.last = Instant::now();
        let (mut seen, mut read, mut flows) = (0u64, 0u64, 0u64);
        let (mut ring_full, mut rx_dropped, mut redirect, mut handoff) = (0u64, 0u64, 0u64, 0u64);
        for w in watch {
            if let Ok(c) = captures[w.iface].steering.counters(w.queue) {
                seen += c.seen;
                redirect += c.redirect_errors;
            }
            let p = &w.progress;
            read += p.frames.load(Ordering::Relaxed);
            flows += p.flows_active.load(Ordering::Relaxed);
            handoff += p.handoff_dropped.load(Ordering::Relaxed);
            if let Ok(s) = xsk::stats_of(w.fd) {
                ring_full += s.rx_ring_full;
                rx_dropped += s.rx_dropped;
            }
        }
        flows += workers
            .iter()
            .map(|w| w.flows_active.load(Ordering::Relaxed))
            .sum::<u64>();
        let (exported, records_lost) = gauges.export_progress();
        let dropped = ring_full + rx_dropped + redirect + handoff;
        let secs = dt.as_secs_f64();
        eprintln!(
            "probe: {:.1}s: {:.0} frames/s seen, {:.0}/s read, {} flows active, {} records exported; dropped {} (+{}: rx ring full {}, other socket drops {}, redirect errors {}, hand-off {}), records lost {}",
            self.started.elapsed().as_secs_f64(),
            (seen - self.prev.0) as f64 / secs,
            (read - self.prev.1) as f64 / secs,
            flows,
            exported,
            dropped,
            dropped - self.prev.2,
            ring_full,
            rx_dropped,
            redirect,
            handoff,
            records_lost
        );
        self.prev = (seen, read, dropped);
    }
}
