//! `probe capture`: live capture through XDP and AF_XDP.
//!
//! The XDP program (crate `bpf`) steers each frame to the AF_XDP socket of its RX queue; one
//! worker thread per queue meters the frames with its own [`Meter`] and ships expired records
//! to the one exporter thread. The meter, flow cache and exporter are the ones `probe read`
//! uses, unchanged: only the source of frames and timestamps differs.
//!
//! Stopping is ordered so the books close exactly: unregister every socket (frames go to the
//! kernel stack again and are counted as "no socket"), let in-flight redirects land, tell the
//! workers to drain their RX rings and export every flow (forcedEnd), then read the program's
//! counters and the sockets' statistics, and only then detach.

pub mod metrics;
pub mod promisc;
pub mod reload;
pub mod worker;
pub mod xsk;

use crate::cli::{CaptureArgs, QueueSelection, SampleMode, XdpModeArg};
use crate::export;
use crate::report::{LiveReport, QueueReport, RunReport};
use anyhow::{anyhow, bail, Context, Result};
use bpf::{SteerConfig, Steering, XdpMode};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use worker::{Worker, WorkerOutcome};
use xsk::{XskConfig, XskSocket};

/// How long after unregistering the sockets the workers keep draining: frames the program
/// redirected just before the update still land in the rings.
const SETTLE: Duration = Duration::from_millis(50);

/// The RX queues of `iface`, from sysfs (`/sys/class/net/IF/queues/rx-N`).
pub fn rx_queue_count(iface: &str) -> Result<u32> {
    let dir = format!("/sys/class/net/{iface}/queues");
    let n = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list the RX queues of '{iface}' in {dir}"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count() as u32;
    Ok(n.max(1))
}

/// The steering configuration `args` asks for.
fn steer_config(args: &CaptureArgs) -> SteerConfig {
    SteerConfig {
        sample_every: args.sample,
        sample_random: args.sample_mode == SampleMode::Random,
        ignore: args.ignore.iter().map(|c| (c.addr, c.len)).collect(),
    }
}

/// The selector report `args` asks for (1-in-N sampling in the kernel).
fn sampling_of(args: &CaptureArgs) -> Option<ipfix_export::Sampling> {
    (args.sample > 1).then_some(ipfix_export::Sampling {
        algorithm: match args.sample_mode {
            SampleMode::Deterministic => ipfix_export::SelectorAlgorithm::SystematicCountBased,
            SampleMode::Random => ipfix_export::SelectorAlgorithm::RandomNOutOfN,
        },
        every: args.sample,
    })
}

/// `reload`: the settings in force and how to read them again (SIGHUP); `None` when the probe
/// was started without `--config` (SIGHUP then says there is nothing to re-read).
pub fn run(
    args: &CaptureArgs,
    reload: Option<(reload::Settings, reload::Reloader)>,
) -> Result<RunReport> {
    // Options that can be wrong are checked before anything is attached.
    args.meter.meter()?;
    let iface = args.interface.as_str();
    let ifindex = bpf::ifindex(iface)?;
    let identity = match &args.user {
        Some(u) => {
            let id = crate::privileges::lookup(u, args.group.as_deref()).map_err(|e| anyhow!(e))?;
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                bail!("--user {u}: switching users needs root; run as root, or drop --user");
            }
            check_writable_for(&id, args)?;
            Some(id)
        }
        None => None,
    };
    let available = rx_queue_count(iface)?;
    let queues: Vec<u32> = match &args.queues {
        QueueSelection::All => (0..available).collect(),
        QueueSelection::List(l) => l.clone(),
    };
    if let Some(q) = queues.iter().find(|&&q| q >= available) {
        bail!(
            "--queues: '{iface}' has RX queues 0 to {} only, not {q}",
            available - 1
        );
    }
    if let Some(q) = queues.iter().find(|&&q| q >= bpf::MAX_QUEUES) {
        bail!(
            "--queues: queue {q} is beyond the {} the XDP program steers",
            bpf::MAX_QUEUES
        );
    }
    if let Some(cpus) = &args.cpus {
        if cpus.0.len() < queues.len() {
            bail!(
                "--cpus: {} CPUs given for {} queues: give one CPU per queue",
                cpus.0.len(),
                queues.len()
            );
        }
    }

    let mut steering = Steering::load(&steer_config(args))?;
    let want = match args.xdp_mode {
        XdpModeArg::Auto => None,
        XdpModeArg::Native => Some(XdpMode::Native),
        XdpModeArg::Generic => Some(XdpMode::Generic),
    };
    let (mode, native_failure) = steering.attach(iface, want)?;
    if let Some(why) = native_failure {
        eprintln!("probe: {why}; using generic mode (slower)");
    }

    let xsk_cfg = XskConfig {
        frame_size: args.frame_size,
        frames: args.umem_frames,
        rx_size: args.rx_ring,
        zero_copy: args.zero_copy,
        busy_poll: args.busy_poll.then_some(args.batch),
    };
    // Frames for other hosts (a SPAN or tap port) reach XDP only in promiscuous mode.
    let _promisc = if args.no_promisc {
        None
    } else {
        Some(promisc::Promiscuous::enable(ifindex).map_err(|e| {
            anyhow!("cannot put {iface} in promiscuous mode: {e} (or use --no-promisc)")
        })?)
    };
    let mut sockets = Vec::new();
    for &q in &queues {
        let sock = XskSocket::open(ifindex, q, &xsk_cfg)
            .map_err(|e| anyhow!("queue {q} of {iface}: {e}"))?;
        steering.register_socket(q, sock.fd())?;
        sockets.push((q, sock));
    }
    let zero_copy = sockets.iter().all(|(_, s)| s.zero_copy());
    eprintln!(
        "probe: capturing on {iface}: XDP in {mode} mode, {} AF_XDP socket{} in {} mode (queues {})",
        sockets.len(),
        if sockets.len() == 1 { "" } else { "s" },
        if zero_copy { "zero-copy" } else { "copy" },
        queues
            .iter()
            .map(|q| q.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    if args.meter.biflow && sockets.len() > 1 {
        eprintln!(
            "probe: --biflow with {} queues: directions pair only when the NIC steers both to the \
             same queue (symmetric RSS); otherwise each direction is a biflow of its own",
            sockets.len()
        );
    }
    if args.sample > 1 {
        eprintln!(
            "probe: sampling 1 in {} frames ({:?}); flow counts are of sampled frames",
            args.sample, args.sample_mode
        );
    }

    let (tx, rx) = crossbeam_channel::bounded(256);
    let mut export_cfg = args.export.export_config(&args.meter);
    export_cfg.exporter.encoder.sampling = sampling_of(args);
    let gauges = Arc::new(export::Gauges::default());
    let (export_ctl, export_ctl_rx) = crossbeam_channel::unbounded();
    let exporter = export::spawn_with_control(export_cfg, rx, gauges.clone(), export_ctl_rx)?;
    // The ring writer; each worker gets a keeper that never waits for it.
    let (ring_tx, ring_writer) = match args.pcap.ring(iface) {
        Some((cfg, select)) => {
            let (rtx, rrx) = crossbeam_channel::bounded(64);
            (
                Some((rtx, select)),
                Some(crate::ring::spawn_writer(cfg, rrx)?),
            )
        }
        None => (None, None),
    };
    let mut metrics = match args.metrics {
        Some(addr) => {
            let m = metrics::Metrics::bind(addr, iface)
                .with_context(|| format!("--metrics {addr}: cannot listen"))?;
            eprintln!("probe: metrics on http://{addr}/metrics");
            Some(m)
        }
        None => None,
    };
    // Everything privileged is done: the program is attached, the sockets, the collector
    // connections, files and listener are open.
    if let Some(id) = &identity {
        give_files_to(id, args)?;
        crate::privileges::drop_to(id, &[crate::privileges::CAP_BPF]).with_context(|| {
            format!(
                "--user {}: cannot switch to uid {} gid {}",
                id.user, id.uid, id.gid
            )
        })?;
        eprintln!(
            "probe: running as {} (uid {}, gid {}), keeping only CAP_BPF for the program's counters",
            id.user, id.uid, id.gid
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let offset = worker::realtime_offset_ns();
    let mut handles = Vec::new();
    let mut watch = Vec::new();
    let mut updates = Vec::new();
    for (i, (q, sock)) in sockets.into_iter().enumerate() {
        let progress = Arc::new(worker::Progress::default());
        let update = Arc::new(std::sync::Mutex::new(None));
        updates.push(update.clone());
        watch.push((q, sock.fd(), progress.clone()));
        let w = Worker {
            queue: q,
            sock,
            meter: args.meter.meter()?,
            records: tx.clone(),
            batch: args.batch as usize,
            cpu: args.cpus.as_ref().map(|c| c.0[i]),
            clock_offset_ns: offset,
            backlog: Vec::new(),
            progress,
            gauges: gauges.clone(),
            unprivileged: identity.is_some(),
            keeper: ring_tx.as_ref().map(|(rtx, select)| {
                crate::ring::Keeper::new(select.clone(), args.pcap.pcap_snaplen, rtx.clone(), false)
            }),
            records_dropped: 0,
            updates: update,
        };
        let stop = stop.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("worker-q{q}"))
                .spawn(move || w.run(stop))
                .context("cannot start a worker thread")?,
        );
    }
    // `tx` stays open until the last statistics are published, after the workers stop. The
    // main thread keeps a sender to the ring writer for reloads (a selection change).
    let ring_ctl = ring_tx.map(|(rtx, _)| rtx);

    let started = Instant::now();
    let mut ticker = StatsLine::new(args.stats_interval);
    let mut last_gauges = Instant::now();
    let mut current = args.clone();
    let mut duration = args.duration;
    let mut reloads = ReloadBooks::default();
    let mut reload = reload;
    let reason = loop {
        if crate::signals::take_reload() {
            let ctx = ReloadContext {
                steering: &mut steering,
                workers: &updates,
                export: &export_ctl,
                ring: ring_ctl.as_ref(),
                metrics: &mut metrics,
                ticker: &mut ticker,
                duration: &mut duration,
                iface,
            };
            apply_reload(&mut reload, &mut current, ctx, &mut reloads);
        }
        std::thread::sleep(Duration::from_millis(50));
        ticker.maybe_print(&steering, &watch, &gauges);
        if last_gauges.elapsed() >= Duration::from_secs(1) {
            last_gauges = Instant::now();
            gauges.set_metering(metering_counts(&steering, &watch, available));
        }
        if let Some(m) = &metrics {
            m.poll(&steering, &watch, (reloads.applied, reloads.rejected));
        }
        if crate::signals::stop_requested() {
            break "signal";
        }
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break "duration";
        }
        if handles.iter().any(|h| h.is_finished()) {
            break "a worker stopped";
        }
    };
    drop(ring_ctl);
    for &q in &queues {
        steering.unregister_socket(q);
    }
    std::thread::sleep(SETTLE);
    stop.store(true, Ordering::Release);
    let mut outcomes: Vec<WorkerOutcome> = Vec::new();
    for h in handles {
        outcomes.push(h.join().map_err(|_| anyhow!("a worker thread panicked"))?);
    }
    if reason == "signal" {
        eprintln!("probe: stopped by a signal: every active flow was exported (forcedEnd, or endOfFlowDetected if already closed)");
    }
    // Counters of every queue of the interface, captured or not, so the totals cover every
    // frame the program saw.
    let mut queue_reports = Vec::new();
    for q in 0..available.min(bpf::MAX_QUEUES) {
        let xdp = steering.counters(q)?;
        let outcome = outcomes.iter().find(|o| o.queue == q);
        if outcome.is_none() && xdp.seen == 0 {
            continue;
        }
        queue_reports.push(QueueReport {
            queue: q,
            xdp,
            captured: outcome.is_some(),
            socket: outcome.and_then(|o| o.socket),
            frames: outcome.map(|o| o.meter.books()).unwrap_or_default(),
            userspace_timestamps: outcome.map_or(0, |o| o.userspace_timestamps),
        });
    }
    // The exact totals, for the last statistics record; then the exporter may finish.
    let mut read = crate::meter::FrameBooks::default();
    let mut final_counts = ipfix_export::MeteringCounts::default();
    for q in &queue_reports {
        let dropped = q.xdp.redirect_errors + q.socket_dropped();
        final_counts.observed += q.xdp.seen;
        final_counts.not_metered +=
            q.xdp.ignored + q.xdp.no_socket + dropped + q.frames.not_metered();
        read.merge(&q.frames);
    }
    // Octets and times of what the workers read and did not meter; frames dropped in the
    // kernel (ignore list, full rings) reached no worker and have neither.
    final_counts.not_metered_octets = read.not_metered_octets;
    final_counts.not_metered_span_ms = read.not_metered_span_ms();
    gauges.set_metering(final_counts);
    drop(tx);
    steering.detach();
    let export = exporter
        .join()
        .map_err(|_| anyhow!("the exporter thread panicked"))?;
    if let Some(e) = outcomes.iter().find_map(|o| o.error.clone()) {
        eprintln!("probe: a worker stopped early: {e}");
    }

    let mut report = RunReport {
        files: Vec::new(),
        frames: Default::default(),
        fragments: Default::default(),
        flows: Default::default(),
        export,
        live: None,
        ring: None,
    };
    for o in &outcomes {
        report.frames.merge(&o.meter.books());
        report.fragments.merge(&o.meter.fragments().stats());
        report.flows.merge(&o.meter.cache().stats());
    }
    if let Some(w) = ring_writer {
        let mut r = w
            .join()
            .map_err(|_| anyhow!("the PCAP ring thread panicked"))?;
        r.selected = outcomes.iter().map(|o| o.ring_selected).sum();
        r.queue_full = outcomes.iter().map(|o| o.ring_queue_full).sum();
        report.ring = Some(r);
    }
    report.live = Some(LiveReport {
        interface: iface.to_string(),
        xdp_mode: mode.to_string(),
        zero_copy,
        sample_every: current.sample,
        sample_random: current.sample_mode == SampleMode::Random,
        reloads: reloads.applied,
        reloads_rejected: reloads.rejected,
        queues: queue_reports,
        worker_errors: outcomes.iter().filter_map(|o| o.error.clone()).collect(),
        records_dropped: outcomes.iter().map(|o| o.records_dropped).sum(),
    });
    Ok(report)
}

/// Before switching users: the directories the probe will write after the switch must be
/// writable by the new user (the PCAP ring's is given to it, see [`give_files_to`]).
fn check_writable_for(id: &crate::privileges::Identity, args: &CaptureArgs) -> Result<()> {
    for d in &args.export.ipfix {
        if let ipfix_export::Destination::File(f) = d {
            let dir = f.path.parent().unwrap_or(std::path::Path::new("."));
            if !crate::privileges::can_write(id, dir) {
                bail!(
                    "--ipfix {d}: user {} cannot write {} (chown {} {} or pick another directory)",
                    id.user,
                    dir.display(),
                    id.user,
                    dir.display()
                );
            }
        }
    }
    Ok(())
}

/// Hands the PCAP ring directory (created by root) and a single IPFIX file (created at start)
/// to the user the probe switches to.
fn give_files_to(id: &crate::privileges::Identity, args: &CaptureArgs) -> Result<()> {
    let chown = |p: &std::path::Path| -> Result<()> {
        std::os::unix::fs::chown(p, Some(id.uid), Some(id.gid))
            .with_context(|| format!("--user {}: cannot give {} to it", id.user, p.display()))
    };
    if let Some(dir) = &args.pcap.pcap_dir {
        chown(dir)?;
        for e in std::fs::read_dir(dir)?.flatten() {
            chown(&e.path())?;
        }
    }
    for d in &args.export.ipfix {
        if let ipfix_export::Destination::File(f) = d {
            if !f.rotates() && f.path.exists() {
                chown(&f.path)?;
            }
        }
    }
    Ok(())
}

/// Running totals for the statistics options records, from the XDP counters of every queue and
/// the workers' progress (an estimate while running; the exact books are published at the end).
fn metering_counts(
    steering: &Steering,
    watch: &[(u32, RawFd, Arc<worker::Progress>)],
    queues: u32,
) -> ipfix_export::MeteringCounts {
    let mut m = ipfix_export::MeteringCounts::default();
    for q in 0..queues.min(bpf::MAX_QUEUES) {
        if let Ok(c) = steering.counters(q) {
            m.observed += c.seen;
            m.not_metered += c.ignored + c.no_socket + c.redirect_errors;
        }
    }
    for (_, fd, p) in watch {
        let sock = xsk::stats_of(*fd).map_or(0, |s| s.rx_dropped + s.rx_ring_full);
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
/// Reloads applied and refused in this run.
#[derive(Default)]
struct ReloadBooks {
    applied: u64,
    rejected: u64,
}

/// What a reload may change in the running probe.
struct ReloadContext<'a> {
    steering: &'a mut Steering,
    workers: &'a [Arc<std::sync::Mutex<Option<worker::WorkerUpdate>>>],
    export: &'a crossbeam_channel::Sender<export::ExportControl>,
    ring: Option<&'a crossbeam_channel::Sender<crate::ring::Batch>>,
    metrics: &'a mut Option<metrics::Metrics>,
    ticker: &'a mut StatsLine,
    duration: &'a mut Option<Duration>,
    iface: &'a str,
}

/// SIGHUP: reads the settings again and applies what can change (see [`reload`]); logs one
/// line with what changed and what needs a restart.
fn apply_reload(
    reload: &mut Option<(reload::Settings, reload::Reloader)>,
    current: &mut CaptureArgs,
    ctx: ReloadContext<'_>,
    books: &mut ReloadBooks,
) {
    let n = books.applied + books.rejected + 1;
    let Some((in_force, reader)) = reload.as_mut() else {
        eprintln!("probe: reload {n}: nothing to re-read: the probe was started without --config");
        books.rejected += 1;
        return;
    };
    let (new, settings) = match reader() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("probe: reload {n} refused, the settings in force stay: {e}");
            books.rejected += 1;
            return;
        }
    };
    let (changes, restart) = reload::diff(in_force, &settings);
    let mut applied: Vec<String> = vec![];
    let mut not_applied = restart.clone();
    let mut refused: Vec<String> = vec![];
    let mut update = worker::WorkerUpdate::default();
    for c in &changes {
        match c.name.as_str() {
            "ignore" | "sample" | "sample-mode" => {}
            "pcap-select" => match (&new.pcap.pcap_select, ctx.ring) {
                (Some(sel), Some(ring)) => {
                    update.selection = Some(sel.clone());
                    let _ = ring.send(crate::ring::Batch::selection_changed(sel.text()));
                    current.pcap.pcap_select = Some(sel.clone());
                    applied.push(c.to_string());
                }
                _ => not_applied.push(c.clone()),
            },
            "ipfix" => {
                let old: Vec<String> = current.export.ipfix.iter().map(|d| d.to_string()).collect();
                let now: Vec<String> = new.export.ipfix.iter().map(|d| d.to_string()).collect();
                for (d, url) in new.export.ipfix.iter().zip(&now) {
                    if !old.contains(url) {
                        let _ = ctx.export.send(export::ExportControl::Add(d.clone()));
                    }
                }
                for url in old.iter().filter(|u| !now.contains(u)) {
                    let _ = ctx.export.send(export::ExportControl::Remove(url.clone()));
                }
                current.export.ipfix = new.export.ipfix.clone();
                applied.push(c.to_string());
            }
            "idle-timeout" | "active-timeout" | "tcp-end-grace" => {
                current.meter.idle_timeout = new.meter.idle_timeout;
                current.meter.active_timeout = new.meter.active_timeout;
                current.meter.tcp_end_grace = new.meter.tcp_end_grace;
                update.timeouts = Some((
                    new.meter.idle_timeout.as_nanos() as u64,
                    new.meter.active_timeout.as_nanos() as u64,
                    new.meter.tcp_end_grace.as_nanos() as u64,
                ));
                applied.push(c.to_string());
            }
            "stats-interval" => {
                *ctx.ticker = StatsLine::new(new.stats_interval);
                applied.push(c.to_string());
            }
            "duration" => {
                *ctx.duration = new.duration;
                applied.push(c.to_string());
            }
            "metrics" => match new.metrics {
                None => {
                    *ctx.metrics = None;
                    applied.push(c.to_string());
                }
                Some(addr) => match metrics::Metrics::bind(addr, ctx.iface) {
                    Ok(m) => {
                        *ctx.metrics = Some(m);
                        applied.push(c.to_string());
                    }
                    Err(e) => {
                        refused.push(format!("{c}: cannot listen: {e}"));
                        not_applied.push(c.clone());
                    }
                },
            },
            _ => not_applied.push(c.clone()),
        }
    }
    // The XDP program's settings change together, in one update.
    let kernel: Vec<&reload::Change> = changes
        .iter()
        .filter(|c| matches!(c.name.as_str(), "ignore" | "sample" | "sample-mode"))
        .collect();
    if !kernel.is_empty() {
        match ctx.steering.update(&steer_config(&new)) {
            Ok(()) => {
                let _ = ctx
                    .export
                    .send(export::ExportControl::Sampling(sampling_of(&new)));
                current.ignore = new.ignore.clone();
                current.sample = new.sample;
                current.sample_mode = new.sample_mode;
                applied.extend(kernel.iter().map(|c| c.to_string()));
            }
            Err(e) => {
                // Back to what was in force (the ignore-list may be half written).
                let _ = ctx.steering.update(&steer_config(current));
                refused.extend(kernel.iter().map(|c| format!("{c}: {e}")));
                not_applied.extend(kernel.into_iter().cloned());
            }
        }
    }

    if update.selection.is_some() || update.timeouts.is_some() {
        reload::to_workers(ctx.workers, &update);
    }
    let needs_restart: Vec<String> = restart.iter().map(|c| c.to_string()).collect();
    *in_force = reload::in_force(in_force, &settings, &not_applied);
    books.applied += 1;
    let mut line = format!("probe: reload {n}: ");
    line += &if applied.is_empty() {
        "nothing to apply".to_string()
    } else {
        format!("applied {}", applied.join("; "))
    };
    if !needs_restart.is_empty() {
        line += &format!(
            "; needs a restart, not applied: {}",
            needs_restart.join("; ")
        );
    }
    if !refused.is_empty() {
        line += &format!("; refused: {}", refused.join("; "));
    }
    eprintln!("{line}");
}

struct StatsLine {
    every: Option<Duration>,
    last: Instant,
    started: Instant,
    prev: (u64, u64, u64),
}

impl StatsLine {
    fn new(every: Duration) -> StatsLine {
        StatsLine {
            every: (!every.is_zero()).then_some(every),
            last: Instant::now(),
            started: Instant::now(),
            prev: (0, 0, 0),
        }
    }

    fn maybe_print(
        &mut self,
        steering: &Steering,
        watch: &[(u32, RawFd, Arc<worker::Progress>)],
        gauges: &export::Gauges,
    ) {
        let Some(every) = self.every else { return };
        let dt = self.last.elapsed();
        if dt < every {
            return;
        }
        self.last = Instant::now();
        let (mut seen, mut read, mut flows) = (0u64, 0u64, 0u64);
        let (mut ring_full, mut rx_dropped, mut redirect) = (0u64, 0u64, 0u64);
        for (q, fd, p) in watch {
            if let Ok(c) = steering.counters(*q) {
                seen += c.seen;
                redirect += c.redirect_errors;
            }
            read += p.frames.load(Ordering::Relaxed);
            flows += p.flows_active.load(Ordering::Relaxed);
            if let Ok(s) = xsk::stats_of(*fd) {
                ring_full += s.rx_ring_full;
                rx_dropped += s.rx_dropped;
            }
        }
        let (exported, records_lost) = gauges.export_progress();
        let dropped = ring_full + rx_dropped + redirect;
        let secs = dt.as_secs_f64();
        eprintln!(
            "probe: {:.1}s: {:.0} frames/s seen, {:.0}/s to workers, {} flows active, {} records exported; dropped {} (+{}: rx ring full {}, other socket drops {}, redirect errors {}), records lost {}",
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
            records_lost
        );
        self.prev = (seen, read, dropped);
    }
}
