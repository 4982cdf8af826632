//! The books of a run: what was read, metered, filtered, malformed and exported. Printed on
//! stderr at the end of a run and written as JSON with `--stats-json`.

use ipfix_export::DestinationReport;
use probe_core::flow::{CacheStats, FragmentStats};
use probe_core::meter::FrameBooks;
use probe_core::wire::{FilterReason, MalformedReason, TunnelKind};
use serde_json::{json, Value};

/// Socket statistics the kernel keeps for an AF_XDP socket (`XDP_STATISTICS`), as the books
/// report them (the live source reads them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames the kernel dropped for this socket for want of a fill-ring frame or because they
    /// did not fit a UMEM frame.
    pub rx_dropped: u64,
    /// Frames dropped because the RX ring was full (the RX thread fell behind).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty (a subset of the causes of `rx_dropped`).
    pub rx_fill_ring_empty_descs: u64,
    pub rx_invalid_descs: u64,
}

/// What the exporter produced.
#[derive(Clone, Debug, Default)]
pub struct ExportReport {
    /// Flow records the exporter received (each destination gets every one).
    pub records: u64,
    pub destinations: Vec<DestinationReport>,
    pub json_records: u64,
    /// Records not printed after stdout failed.
    pub json_records_lost: u64,
}

/// One input file's outcome.
#[derive(Clone, Debug)]
pub struct FileReport {
    pub path: String,
    pub frames: u64,
    pub error: Option<String>,
}

/// One RX queue of a live capture: what the XDP program saw and did with each frame, what the
/// socket dropped, and what its RX thread read and decoded.
#[derive(Clone, Debug)]
pub struct QueueReport {
    pub interface: String,
    pub queue: u32,
    pub captured: bool,
    pub xdp: bpf::QueueCounters,
    pub socket: Option<XskStats>,
    /// The RX thread's books; `frames.read` is what reached userspace.
    pub frames: FrameBooks,
    /// Summaries this queue's RX thread could not hand to their worker (fan-out).
    pub handoff: crate::pipeline::handoff::HandoffDrops,
    pub userspace_timestamps: u64,
}

impl QueueReport {
    /// Frames the socket dropped: RX ring full, or no fill-ring frame / too long for one.
    pub fn socket_dropped(&self) -> u64 {
        self.socket.map_or(0, |s| s.rx_dropped + s.rx_ring_full)
    }

    /// Frames the program redirected that neither reached the RX thread nor show in the socket's
    /// drop counters (the kernel failed the redirect after the program returned). Zero when
    /// every frame is accounted for.
    pub fn unaccounted(&self) -> i128 {
        self.xdp.redirected as i128 - (self.frames.read + self.socket_dropped()) as i128
    }

    pub fn balanced(&self) -> bool {
        self.xdp.balanced() && self.unaccounted() == 0 && self.frames.balanced()
    }

    fn to_json(&self) -> Value {
        let x = &self.xdp;
        json!({
            "interface": self.interface,
            "queue": self.queue,
            "captured": self.captured,
            "xdp": {
                "seen": x.seen,
                "redirected": x.redirected,
                "redirect_errors": x.redirect_errors,
                "no_socket": x.no_socket,
                "sampled_out": x.sampled_out,
                "ignored": x.ignored,
                "timestamp_failed": x.meta_failed,
                "ignore_inner_unparsed": x.inner_unparsed,
                "sample_deferred": x.sample_deferred,
            },
            "socket": self.socket.map(|s| json!({
                "rx_dropped": s.rx_dropped,
                "rx_ring_full": s.rx_ring_full,
                "rx_fill_ring_empty_descs": s.rx_fill_ring_empty_descs,
                "rx_invalid_descs": s.rx_invalid_descs,
            })),
            "read": self.frames.read,
            "metered": self.frames.metered,
            "duplicates_dropped": self.frames.duplicates_dropped,
            "handoff_dropped": {
                "ring_full": self.handoff.ring_full,
                "worker_gone": self.handoff.worker_gone,
            },
            "filtered": self.frames.filtered_total(),
            "malformed": self.frames.malformed_total(),
            "userspace_timestamps": self.userspace_timestamps,
            "unaccounted": self.unaccounted() as i64,
            "balanced": self.balanced(),
        })
    }
}

/// The live half of a `probe capture` run's books.
#[derive(Clone, Debug)]
pub struct LiveReport {
    pub interface: String,
    pub xdp_mode: String,
    pub zero_copy: bool,
    /// Where frame timestamps came from (`bpf::Stamp::name`, per interface, comma-separated)
    /// and, after a fallback, why the better sources were refused.
    pub timestamps: String,
    pub timestamps_fallback: Option<String>,
    /// Frames the interfaces' drivers counted received over the run (sysfs
    /// `statistics/rx_packets`, from just after attach to just before the program's counters
    /// were read, so the program's count can only be the larger without a loss); `None` where
    /// a driver keeps no such counter.
    pub interface_received: Option<u64>,
    /// The XDP programs' runs and total run time in ns (zero unless the kernel counts them:
    /// `sysctl kernel.bpf_stats_enabled=1`).
    pub xdp_runs: (u64, u64),
    pub sample_every: u32,
    /// `deterministic`, `random` or `flow`.
    pub sample_mode: &'static str,
    /// SIGHUP reloads applied (wholly or in part) and refused.
    pub reloads: u64,
    pub reloads_rejected: u64,
    pub queues: Vec<QueueReport>,
    pub worker_errors: Vec<String>,
    /// Flow records dropped because the exporter fell behind by more than a stage's backlog.
    pub records_dropped: u64,
}

impl LiveReport {
    /// Every queue's XDP counters summed.
    pub fn xdp_total(&self) -> bpf::QueueCounters {
        let mut t = bpf::QueueCounters::default();
        for q in &self.queues {
            t.seen += q.xdp.seen;
            t.redirected += q.xdp.redirected;
            t.redirect_errors += q.xdp.redirect_errors;
            t.no_socket += q.xdp.no_socket;
            t.sampled_out += q.xdp.sampled_out;
            t.ignored += q.xdp.ignored;
            t.meta_failed += q.xdp.meta_failed;
            t.inner_unparsed += q.xdp.inner_unparsed;
            t.sample_deferred += q.xdp.sample_deferred;
        }
        t
    }

    pub fn balanced(&self) -> bool {
        self.queues.iter().all(|q| q.balanced())
    }

    /// Frames the drivers counted that XDP never saw (negative: XDP saw frames the driver
    /// does not count, e.g. a driver that counts after XDP).
    pub fn missed_before_xdp(&self) -> Option<i128> {
        self.interface_received
            .map(|r| r as i128 - self.xdp_total().seen as i128)
    }
}

/// One metering worker of the fan-out: the summaries it took and the flows it held.
#[derive(Clone, Debug)]
pub struct WorkerReport {
    pub worker: usize,
    pub summaries: u64,
    pub flows: CacheStats,
    pub records_dropped: u64,
}

/// How the run was laid out: one hop (each source meters its own frames) or the fan-out
/// (decoders hand summaries to metering workers by a symmetric flow hash), and why.
#[derive(Clone, Debug, Default)]
pub struct PipelineReport {
    pub fanout: bool,
    pub why: String,
    pub workers: Vec<WorkerReport>,
    pub handoff: crate::pipeline::handoff::HandoffDrops,
}

impl PipelineReport {
    pub fn one_hop(why: &str) -> PipelineReport {
        PipelineReport {
            fanout: false,
            why: why.to_string(),
            ..Default::default()
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "mode": if self.fanout { "fan-out" } else { "one-hop" },
            "why": self.why,
            "workers": self.workers.iter().map(|w| json!({
                "worker": w.worker,
                "summaries": w.summaries,
                "flows_created": w.flows.flows_created,
                "peak_active": w.flows.peak_flows,
                "records": w.flows.records(),
                "records_dropped_exporter_behind": w.records_dropped,
            })).collect::<Vec<_>>(),
            "handoff_dropped": {
                "ring_full": self.handoff.ring_full,
                "worker_gone": self.handoff.worker_gone,
            },
            "app_facts_dropped": self.handoff.facts,
        })
    }

    fn summary(&self) -> String {
        if !self.fanout {
            return format!("pipeline: one hop ({})\n", self.why);
        }
        let mut s = format!(
            "pipeline: fan-out to {} metering workers ({})",
            self.workers.len(),
            self.why
        );
        for w in &self.workers {
            s += &format!(
                "; worker {}: {} summaries, {} flows",
                w.worker, w.summaries, w.flows.flows_created
            );
        }
        if self.handoff.total() > 0 {
            s += &format!(
                "; {} summaries dropped at the hand-off (ring full {}, worker gone {})",
                self.handoff.total(),
                self.handoff.ring_full,
                self.handoff.worker_gone
            );
        }
        s.push('\n');
        s
    }
}

#[derive(Clone, Debug)]
pub struct RunReport {
    /// One hop or fan-out, with the workers' books.
    pub pipeline: PipelineReport,
    pub files: Vec<FileReport>,
    pub frames: FrameBooks,
    pub fragments: FragmentStats,
    pub flows: CacheStats,
    pub export: ExportReport,
    /// Present for live capture.
    pub live: Option<LiveReport>,
    /// Present with --pcap-dir.
    pub ring: Option<crate::pipeline::ring_keeper::RingReport>,
}

impl RunReport {
    pub fn to_json(&self) -> Value {
        let f = &self.frames;
        let filtered: serde_json::Map<String, Value> = FilterReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), json!(f.filtered_by(*r))))
            .collect();
        let malformed: serde_json::Map<String, Value> = MalformedReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), json!(f.malformed_by(*r))))
            .collect();
        let encapsulated: serde_json::Map<String, Value> = TunnelKind::ALL
            .iter()
            .map(|k| (k.name().to_string(), json!(f.encapsulated_by(*k))))
            .collect();
        let e = &self.export;
        let live = self.live.as_ref().map(|l| {
            let t = l.xdp_total();
            let sock_dropped: u64 = l.queues.iter().map(|q| q.socket_dropped()).sum();
            let unaccounted: i128 = l.queues.iter().map(|q| q.unaccounted()).sum();
            json!({
                "interface": l.interface,
                "xdp_mode": l.xdp_mode,
                "zero_copy": l.zero_copy,
                "timestamps": l.timestamps,
                "timestamps_fallback": l.timestamps_fallback,
                "interface_received": l.interface_received,
                "xdp_program": {
                    "runs": l.xdp_runs.0,
                    "run_time_ns": l.xdp_runs.1,
                    "ns_per_run": (l.xdp_runs.0 > 0).then(|| l.xdp_runs.1 as f64 / l.xdp_runs.0 as f64),
                },
                "missed_before_xdp": l.missed_before_xdp().map(|m| m as i64),
                "sampling": {"every": l.sample_every, "mode": l.sample_mode},
                "seen": t.seen,
                "to_workers": f.read,
                "ignored": t.ignored,
                "sampled_out": t.sampled_out,
                "no_socket": t.no_socket,
                "dropped": t.redirect_errors + sock_dropped,
                "dropped_by_reason": {
                    "redirect_error": t.redirect_errors,
                    "socket_rx_dropped": l.queues.iter().filter_map(|q| q.socket).map(|s| s.rx_dropped).sum::<u64>(),
                    "socket_rx_ring_full": l.queues.iter().filter_map(|q| q.socket).map(|s| s.rx_ring_full).sum::<u64>(),
                },
                "unaccounted": unaccounted as i64,
                "balanced": l.balanced(),
                "queues": l.queues.iter().map(|q| q.to_json()).collect::<Vec<_>>(),
                "worker_errors": l.worker_errors,
                "records_dropped_exporter_behind": l.records_dropped,
                "reloads": {"applied": l.reloads, "refused": l.reloads_rejected},
            })
        });
        let ring = self.ring.as_ref().map(|r| {
            json!({
                "dir": r.dir,
                "selected": r.selected,
                "written": r.writer.frames_written,
                "unwritten_disk": r.writer.frames_unwritten,
                "dropped_queue_full": r.queue_full,
                "balanced": r.selected == r.writer.frames_written + r.writer.frames_unwritten + r.queue_full,
                "bytes_written": r.writer.bytes_written,
                "files_completed": r.writer.files_completed,
                "files_deleted": r.writer.files_deleted,
                "files_kept": r.files,
                "bytes_kept": r.bytes,
                "error_episodes": r.writer.error_episodes,
                "recovered_from_previous_run": r.writer.recovered,
                "flows_marked": r.flows_marked,
                "marks_lost": r.marks_lost,
                "lookback_released": r.lookback_released,
                "lookback_evicted": r.lookback_evicted,
                "past_flow_cutoff": r.past_flow_cutoff,
            })
        });
        json!({
            "pipeline": self.pipeline.to_json(),
            "live": live,
            "pcap_ring": ring,
            "files": self.files.iter().map(|x| json!({"path": x.path, "frames": x.frames, "error": x.error})).collect::<Vec<_>>(),
            "frames": {
                "read": f.read,
                "metered": f.metered,
                "filtered": f.filtered_total(),
                "filtered_by_reason": filtered,
                "malformed": f.malformed_total(),
                "malformed_by_reason": malformed,
                "duplicates_seen": f.duplicates_seen,
                "port_not_tunnel": f.port_not_tunnel,
                "duplicates_dropped": f.duplicates_dropped,
                "handoff_dropped": f.handoff_dropped,
                "hellos_joined": f.hellos_joined,
                "hellos_given_up": f.hellos_given_up,
                "app_past_bound": f.app_past_bound,
                "encapsulated_by_kind": encapsulated,
                "balanced": f.balanced(),
            },
            "fragments": self.fragments,
            "flows": {
                "created": self.flows.flows_created,
                "peak_active": self.flows.peak_flows,
                "exported": self.flows.records_exported(),
                "records": self.flows.records(),
                "paired_into_biflows": self.flows.paired_reverse,
                "by_end_reason": {
                    "idleTimeout": self.flows.idle_timeout,
                    "activeTimeout": self.flows.active_timeout,
                    "endOfFlowDetected": self.flows.end_of_flow,
                    "forcedEnd": self.flows.forced_end,
                    "lackOfResources": self.flows.lack_of_resources,
                },
                // Of lackOfResources: one-packet flows evicted from probation before any flow
                // with history (the segmented cache under a flood).
                "evicted_from_probation": self.flows.evicted_probation,
                // Under a flood: one-packet flows rolled into aggregate records (not in
                // "exported"), and when the pressure mode was on. created = exported +
                // rolled_up + active.
                "rolled_up": self.flows.rollup.rolled_up,
                "rolled_into_catch_all": self.flows.rollup.rolled_into_catch_all,
                "aggregate_records": self.flows.rollup.aggregate_records,
                "flood": {
                    "episodes": self.flows.rollup.episodes,
                    "first_began": iso_time(self.flows.rollup.first_began_ns),
                    "last_ended": iso_time(self.flows.rollup.last_ended_ns),
                    "workers_in_flood_at_end": self.flows.rollup.active,
                },
            },
            "export": {
                "records": e.records,
                "json_records": e.json_records,
                "json_records_lost": e.json_records_lost,
                "collectors": e.destinations.iter().map(destination_json).collect::<Vec<_>>(),
            },
        })
    }

    /// The human summary printed on stderr.
    pub fn summary(&self) -> String {
        let f = &self.frames;
        let mut s = String::new();
        if let Some(l) = &self.live {
            let t = l.xdp_total();
            let sock: u64 = l.queues.iter().map(|q| q.socket_dropped()).sum();
            let unaccounted: i128 = l.queues.iter().map(|q| q.unaccounted()).sum();
            s += &format!(
                "xdp: {} frames seen on {} ({} mode, {}, timestamps {}) = {} read + {} ignored + {} sampled out + {} without socket + {} dropped (socket {}, redirect errors {}){}\n",
                t.seen,
                l.interface,
                l.xdp_mode,
                if l.zero_copy { "zero-copy" } else { "copy" },
                l.timestamps,
                f.read,
                t.ignored,
                t.sampled_out,
                t.no_socket,
                sock + t.redirect_errors,
                sock,
                t.redirect_errors,
                if unaccounted != 0 {
                    format!("  ({unaccounted} redirected frames unaccounted: lost inside the kernel)")
                } else {
                    String::new()
                }
            );
            match (l.interface_received, l.missed_before_xdp()) {
                (Some(r), Some(m)) if m > 0 => {
                    s += &format!(
                        "  warning: the driver counted {r} frames received, {m} more than XDP saw: lost between the driver and XDP\n"
                    )
                }
                (Some(r), _) => {
                    s += &format!("  the driver counted {r} frames received: XDP saw all of them\n")
                }
                (None, _) => {}
            }
            if l.records_dropped > 0 {
                s += &format!(
                    "  {} flow records dropped: the exporter fell behind (raise --max-export-rate)\n",
                    l.records_dropped
                );
            }
            if l.reloads + l.reloads_rejected > 0 {
                s += &format!(
                    "  reloads: {} applied, {} refused\n",
                    l.reloads, l.reloads_rejected
                );
            }
            if l.queues.len() > 1 {
                for q in &l.queues {
                    s += &format!(
                        "  {} queue {}: {} seen, {} read, {} socket drops{}{}\n",
                        q.interface,
                        q.queue,
                        q.xdp.seen,
                        q.frames.read,
                        q.socket_dropped(),
                        if q.handoff.total() > 0 {
                            format!(", {} dropped at the hand-off", q.handoff.total())
                        } else {
                            String::new()
                        },
                        if q.captured { "" } else { " (not captured)" }
                    );
                }
            }
        }
        // Live runs always say how they were laid out; a file read only when it fanned out.
        if self.pipeline.fanout || self.live.is_some() {
            s += &self.pipeline.summary();
        }
        s += &format!(
            "frames: {} read = {} metered + {} filtered + {} malformed{}{}{}\n",
            f.read,
            f.metered,
            f.filtered_total(),
            f.malformed_total(),
            if f.duplicates_dropped > 0 {
                format!(" + {} duplicates dropped", f.duplicates_dropped)
            } else {
                String::new()
            },
            if f.handoff_dropped > 0 {
                format!(
                    " + {} dropped at the hand-off (metering workers behind)",
                    f.handoff_dropped
                )
            } else {
                String::new()
            },
            if f.balanced() {
                ""
            } else {
                "  (BOOKS DO NOT BALANCE: please report a bug)"
            }
        );
        let reasons: Vec<String> = FilterReason::ALL
            .iter()
            .filter(|r| f.filtered_by(**r) > 0)
            .map(|r| format!("{} {}", r.name(), f.filtered_by(*r)))
            .chain(
                MalformedReason::ALL
                    .iter()
                    .filter(|r| f.malformed_by(**r) > 0)
                    .map(|r| format!("{} {}", r.name(), f.malformed_by(*r))),
            )
            .collect();
        if !reasons.is_empty() {
            s += &format!("  not metered: {}\n", reasons.join(", "));
        }
        let kinds: Vec<String> = TunnelKind::ALL
            .iter()
            .filter(|k| f.encapsulated_by(**k) > 0)
            .map(|k| format!("{} {}", k.name(), f.encapsulated_by(*k)))
            .collect();
        if !kinds.is_empty() {
            s += &format!("  encapsulated: {}\n", kinds.join(", "));
        }
        if f.port_not_tunnel > 0 {
            s += &format!(
                "  {} frames to a tunnel's UDP port did not hold a tunnel (their inside did not decode): metered as UDP\n",
                f.port_not_tunnel
            );
        }
        if f.duplicates_seen > 0 {
            s += &format!(
                "  duplicates: {} frames repeated a packet within the --dedup window, {} dropped\n",
                f.duplicates_seen, f.duplicates_dropped
            );
        }
        if f.hellos_joined + f.hellos_given_up + f.app_past_bound > 0 {
            s += &format!(
                "  app: {} hellos put together from several packets, {} given up (table full or flow quiet); \
                 {} messages not parsed (their flow direction's first {} gave no field)\n",
                f.hellos_joined,
                f.hellos_given_up,
                f.app_past_bound,
                probe_core::app::looks::MAX_LOOKS
            );
        }
        let fr = &self.fragments;
        if fr.fragments > 0 {
            s += &format!(
                "fragments: {} metered, {} unmatched (ports unknown), {} table full, {} expired incomplete\n",
                fr.fragments, fr.unmatched, fr.table_full, fr.expired
            );
        }
        let fl = &self.flows;
        s += &format!(
            "flows: {} created, {} exported (idle {}, active {}, end {}, forced {}, lack of resources {}), peak {} active\n",
            fl.flows_created,
            fl.records_exported(),
            fl.idle_timeout,
            fl.active_timeout,
            fl.end_of_flow,
            fl.forced_end,
            fl.lack_of_resources,
            fl.peak_flows
        );
        if fl.lack_of_resources > 0 {
            s += &format!(
                "  cache full: {} of the {} evicted were one-packet flows in probation (a flood's \
                 or a scan's), the rest flows with history: raise --max-flows if those matter\n",
                fl.evicted_probation, fl.lack_of_resources
            );
        }
        let r = &fl.rollup;
        if r.episodes > 0 {
            s += &format!(
                "  flood: {} one-packet flows rolled up into {} aggregate records{}; pressure began {} times, first at {}, last ended {}\n",
                r.rolled_up,
                r.aggregate_records,
                if r.rolled_into_catch_all > 0 {
                    format!(
                        " ({} of them into catch-alls: the aggregate table was full)",
                        r.rolled_into_catch_all
                    )
                } else {
                    String::new()
                },
                r.episodes,
                iso_time(r.first_began_ns).unwrap_or_default(),
                if r.active > 0 {
                    "never (still on at the end)".to_string()
                } else {
                    iso_time(r.last_ended_ns).unwrap_or_default()
                }
            );
        }
        if fl.paired_reverse > 0 {
            s += &format!(
                "  biflows: {} reverse directions paired with their initiators: {} records\n",
                fl.paired_reverse,
                fl.records()
            );
        }
        if let Some(r) = &self.ring {
            s += &format!(
                "pcap ring {}: {} frames selected = {} written + {} not written (disk) + {} dropped (writer behind); {} files kept ({} bytes), {} deleted by retention\n",
                r.dir,
                r.selected,
                r.writer.frames_written,
                r.writer.frames_unwritten,
                r.queue_full,
                r.files,
                r.bytes,
                r.writer.files_deleted
            );
            if r.past_flow_cutoff > 0 {
                s += &format!(
                    "  {} selected frames left out: their flow had reached --pcap-flow-packets\n",
                    r.past_flow_cutoff
                );
            }
            if r.flows_marked + r.marks_lost + r.lookback_released + r.lookback_evicted > 0 {
                s += &format!(
                    "  flows marked by name: {} ({} marks found no room); lookback: {} frames kept from before the mark, {} evicted before one\n",
                    r.flows_marked, r.marks_lost, r.lookback_released, r.lookback_evicted
                );
            }
        }
        let e = &self.export;
        if e.destinations.is_empty() {
            s += "export: no --ipfix collector";
        } else {
            s += &format!("export: {} records", e.records);
        }
        for d in &e.destinations {
            s += &format!(
                "; {}: {} messages sent, {} lost ({} records not sent)",
                d.url, d.messages_sent, d.messages_lost, d.not_sent.flows
            );
            if d.encoder.app_fields_cut + d.encoder.app_fields_dropped > 0 {
                s += &format!(
                    ", {} records with application strings cut to fit --mtu, {} without their \
                     application fields (raise --mtu)",
                    d.encoder.app_fields_cut, d.encoder.app_fields_dropped
                );
            }
            let dropped: u64 = d.backlog_dropped.iter().map(|t| t.flows).sum();
            if dropped > 0 {
                s += &format!(
                    ", {} records dropped from its backlog ({} conversations, {} aggregates, {} one-packet flows; it held at most {})",
                    dropped,
                    d.backlog_dropped[0].flows,
                    d.backlog_dropped[1].flows,
                    d.backlog_dropped[2].flows,
                    d.backlog_peak
                );
            }
            if let Some(sp) = &d.spool {
                s += &format!(
                    ", spool {}: {} records spooled, {} replayed, {} from earlier runs, {} left in it",
                    sp.dir.display(),
                    sp.spooled.flows.flows,
                    sp.replayed.flows.flows,
                    sp.from_earlier_runs.flows.flows,
                    sp.pending.flows.flows
                );
                let lost = sp.dropped();
                if lost.messages > 0 || sp.torn_segments > 0 {
                    s += &format!(
                        " ({} records dropped: {} full, {} expired, {} disk; {} torn segments cut)",
                        lost.flows.flows,
                        sp.dropped_full.flows.flows,
                        sp.dropped_expired.flows.flows,
                        sp.dropped_disk.flows.flows,
                        sp.torn_segments
                    );
                }
            }
            if d.netflow.not_exportable.flows > 0 {
                s += &format!(
                    ", {} IPv6 flows not exportable in NetFlow v5",
                    d.netflow.not_exportable.flows
                );
            }
            if d.netflow.undatable > 0 {
                s += &format!(
                    ", {} records with times NetFlow cannot carry (over 49.7 days before their \
                     header)",
                    d.netflow.undatable
                );
            }
        }
        if e.json_records > 0 || e.json_records_lost > 0 {
            s += &format!("; {} JSON lines", e.json_records);
        }
        if e.json_records_lost > 0 {
            s += &format!(" ({} not printed: stdout failed)", e.json_records_lost);
        }
        s.push('\n');
        s
    }
}

fn destination_json(d: &DestinationReport) -> Value {
    let totals = |t: &ipfix_export::FlowTotals| json!({"flows": t.flows, "packets": t.packets, "octets": t.octets});
    json!({
        "url": d.url,
        "records": d.encoder.records,
        "options_records": d.encoder.options_records,
        "messages": d.encoder.messages,
        "octets": d.encoder.octets,
        "template_sets": d.encoder.template_sets,
        "app_fields_cut": d.encoder.app_fields_cut,
        "app_fields_dropped": d.encoder.app_fields_dropped,
        "messages_sent": d.messages_sent,
        "records_sent": d.records_sent,
        "octets_sent": d.octets_sent,
        "messages_lost": d.messages_lost,
        "not_sent": totals(&d.not_sent),
        "sessions": d.sessions,
        "netflow5_not_exportable": totals(&d.netflow.not_exportable),
        "netflow5_clamped": d.netflow.clamped,
        "netflow_undatable": d.netflow.undatable,
        // Live: records that waited for this collector (its pace spent or its stream backlog
        // full), the most at once, and those dropped for lack of room by priority (part of
        // not_sent).
        "backlog_peak": d.backlog_peak,
        "backlog_dropped": ipfix_export::Priority::ALL
            .iter()
            .map(|&p| (p.name().to_string(), totals(&d.backlog_dropped[p as usize])))
            .collect::<serde_json::Map<_, _>>(),
        "spool": d.spool.as_ref().map(spool_json),
    })
}

/// A destination's spool: counts of data messages and the records in them. Its drops are
/// part of the destination's `messages_lost` and `not_sent` (stream collectors; for UDP the
/// messages went out, and only the copy was not kept).
fn spool_json(sp: &ipfix_export::SpoolStats) -> Value {
    let tally = |t: &ipfix_export::spool::Tally| json!({"messages": t.messages, "flows": t.flows.flows, "packets": t.flows.packets, "octets": t.flows.octets});
    json!({
        "dir": sp.dir.display().to_string(),
        "spooled": tally(&sp.spooled),
        "replayed": tally(&sp.replayed),
        "from_earlier_runs": tally(&sp.from_earlier_runs),
        "pending": tally(&sp.pending),
        "dropped": {
            "full": tally(&sp.dropped_full),
            "expired": tally(&sp.dropped_expired),
            "disk": tally(&sp.dropped_disk),
        },
        "torn_segments": sp.torn_segments,
        "torn_bytes": sp.torn_bytes,
        "disk_errors": sp.disk_errors,
        "bytes": sp.bytes,
        "peak_bytes": sp.peak_bytes,
        "segments": sp.segments,
    })
}

/// A packet time as UTC text (`2023-11-14T22:13:20.000000000Z`), `None` for 0 (never).
fn iso_time(ns: u64) -> Option<String> {
    (ns != 0).then(|| pcap_ring::format_utc(ns))
}
