//! Phase 5 of `probe capture` (see the parent module): the books, per interface and queue,
//! per worker and in total.

use super::*;

/// Phase 5: the books, per interface and queue, per worker and in total; the last statistics
/// record; the exporter and the ring finish.
pub(super) fn books(
    mut captures: Vec<Capture>,
    stopped: Stopped,
    outputs: Outputs,
    plan: &Plan,
    watched: Watched,
) -> Result<RunReport> {
    let Stopped { rx, workers } = stopped;
    // Counters of every queue of every interface, captured or not, so the totals cover every
    // frame the programs saw.
    let mut queue_reports = Vec::new();
    let mut interface_received = Some(0u64);
    let mut xdp_runs = (0u64, 0u64);
    for (i, c) in captures.iter().enumerate() {
        let (runs, ns) = c.steering.run_stats();
        xdp_runs = (xdp_runs.0 + runs, xdp_runs.1 + ns);
        // The driver's count first, then the program's: a frame arriving in between is in
        // the program's count only, never the other way round.
        let received = match (c.rx_before, self::netdev::rx_counters(&c.name)) {
            (Some(b), Some(a)) => Some(a.packets.wrapping_sub(b.packets)),
            _ => None,
        };
        interface_received = interface_received.zip(received).map(|(t, r)| t + r);
        for q in 0..c.available.min(bpf::MAX_QUEUES) {
            let xdp = c.steering.counters(q)?;
            let outcome = rx.iter().find(|o| o.iface == i && o.queue == q);
            if outcome.is_none() && xdp.seen == 0 {
                continue;
            }
            queue_reports.push(QueueReport {
                interface: c.name.clone(),
                queue: q,
                xdp,
                captured: outcome.is_some(),
                socket: outcome.and_then(|o| o.socket),
                frames: outcome.map(|o| o.books).unwrap_or_default(),
                handoff: outcome.map(|o| o.handoff).unwrap_or_default(),
                userspace_timestamps: outcome.map_or(0, |o| o.userspace_timestamps),
            });
        }
    }
    // The exact totals, for the last statistics record; then the exporter may finish.
    let mut read = probe_core::meter::FrameBooks::default();
    let mut final_counts = ipfix_export::MeteringCounts::default();
    for q in &queue_reports {
        let dropped = q.xdp.redirect_errors + q.socket_dropped();
        final_counts.observed += q.xdp.seen;
        final_counts.not_metered +=
            q.xdp.ignored + q.xdp.no_socket + dropped + q.frames.not_metered();
        read.merge(&q.frames);
    }
    // Octets and times of what the RX threads read and did not meter; frames dropped in the
    // kernel (ignore list, full rings) reached no thread and have neither.
    final_counts.not_metered_octets = read.not_metered_octets;
    final_counts.not_metered_span_ms = read.not_metered_span_ms();
    outputs.gauges.set_metering(final_counts);
    drop(outputs.records);
    // The main thread's sender to the ring writer (kept for reloads): the writer finishes
    // once every RX thread's keeper and this one are gone.
    drop(outputs.ring);
    for c in &mut captures {
        c.steering.detach();
    }
    let export = outputs
        .exporter
        .join()
        .map_err(|_| anyhow!("the exporter thread panicked"))?;
    let mut errors: Vec<String> = rx.iter().filter_map(|o| o.error.clone()).collect();
    if let Some(w) = &workers {
        errors.extend(w.errors.iter().cloned());
    }
    if let Some(e) = errors.first() {
        eprintln!("probe: a stage stopped early: {e}");
    }
    let mut report = RunReport {
        pipeline: PipelineReport::one_hop(&plan.why),
        files: Vec::new(),
        frames: Default::default(),
        fragments: Default::default(),
        flows: Default::default(),
        export,
        live: None,
        ring: None,
    };
    for o in &rx {
        report.frames.merge(&o.books);
        report.fragments.merge(&o.fragments);
        if let Some(m) = &o.meter {
            report.flows.merge(&m.cache().stats());
        }
    }
    let mut records_dropped: u64 = rx.iter().map(|o| o.records_dropped).sum();
    if let Some(w) = workers {
        report.flows.merge(&w.flows);
        records_dropped += w.records_dropped;
        let mut handoff = crate::pipeline::handoff::HandoffDrops::default();
        for o in &rx {
            handoff.merge(&o.handoff);
        }
        report.pipeline = PipelineReport {
            fanout: true,
            why: plan.why.clone(),
            workers: w.per_worker,
            handoff,
        };
    }
    if let Some(w) = outputs.ring_writer {
        let mut r = w
            .join()
            .map_err(|_| anyhow!("the PCAP ring thread panicked"))?;
        let keepers: Vec<_> = rx.iter().map(|o| o.ring).collect();
        r.add_keepers(&keepers, &outputs.marks);
        report.ring = Some(r);
    }
    let current = &watched.current;
    report.live = Some(LiveReport {
        interface: current.interface.join(","),
        xdp_mode: captures
            .iter()
            .map(|c| c.mode.to_string())
            .collect::<Vec<_>>()
            .join(","),
        zero_copy: captures.iter().all(|c| c.zero_copy),
        interface_received,
        xdp_runs,
        timestamps: captures
            .iter()
            .map(|c| c.steering.stamp().name())
            .collect::<Vec<_>>()
            .join(","),
        timestamps_fallback: captures
            .iter()
            .filter_map(|c| {
                let why = c.steering.stamp_fallback_reason()?;
                Some(format!("{}: {why}", c.name))
            })
            .reduce(|a, b| format!("{a}; {b}")),
        sample_every: current.sample,
        sample_mode: current.sample_mode.name(),
        reloads: watched.reloads.applied,
        reloads_rejected: watched.reloads.rejected,
        queues: queue_reports,
        worker_errors: errors,
        records_dropped,
    });
    Ok(report)
}
