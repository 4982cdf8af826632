//! `probe capture`: live capture through XDP and AF_XDP, read as its stages.
//!
//! Each capture interface runs its own copy of the XDP program, which steers each frame to the
//! AF_XDP socket of its RX queue. One RX thread per (interface, queue) decodes the frames
//! ([`rx`]); they are metered either on that thread (**one hop**: RSS declared symmetric and no
//! more workers than queues) or by N metering workers fed through the hand-off by a symmetric
//! flow hash (**fan-out**, [`crate::pipeline::handoff`], [`crate::pipeline::worker`]): both directions of a
//! connection meet in one cache whatever queue or interface each came in on. Expired records go
//! to the one exporter thread. The decoder, flow cache and exporter are the ones `probe read`
//! uses, unchanged: only the source of frames and timestamps differs.
//!
//! [`run`] is a short sequence of phases: [`attach`] (programs, sockets), [`plan`] (one hop or
//! fan-out), outputs (exporter, ring, metrics), [`start`] (RX threads and workers), [`watch`]
//! (until a signal, the duration or a stage stopping), [`stop`] and [`books`].
//!
//! Stopping is ordered so the books close exactly: unregister every socket (frames go to the
//! kernel stack again and are counted as "no socket"), let in-flight redirects land, tell the
//! RX threads to drain their rings (the workers finish when every RX thread has), export every
//! flow (forcedEnd), then read the programs' counters and the sockets' statistics, and only
//! then detach.

pub mod config;
pub mod doctor;
mod handover;
mod phase_books;
use handover::{give_files_to, identity_of};
use phase_books::books;
pub mod metrics;
pub mod netdev;
pub mod promisc;
pub mod reload;
pub mod rx;
pub mod watch;
pub mod xsk;

use crate::pipeline::books::{LiveReport, PipelineReport, QueueReport, RunReport};
use crate::pipeline::exporter;
use crate::pipeline::topology::{FanoutDecoder, WorkerSpec, Workers};
use crate::pipeline::worker::{Shipper, Updates};
use anyhow::{anyhow, bail, Context, Result};
use bpf::{SteerConfig, Steering, XdpMode};
pub use config::CaptureConfig;
use config::{QueueSelection, RssMode, SampleMode};
use ipfix_export::FlowRecord;
use rx::{RxOutcome, RxStage, RxThread};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xsk::{XskConfig, XskSocket};

/// How long after unregistering the sockets the RX threads keep draining: frames the program
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
fn steer_config(args: &CaptureConfig) -> SteerConfig {
    // The tunnels the decoder removes are the ones the ignore-list looks inside (a bad
    // --vxlan-port list fails earlier, when the meter is built).
    let decap = args.meter.decap;
    fn ports(it: impl Iterator<Item = u16>) -> [u16; 4] {
        let mut p = [0u16; 4];
        for (slot, port) in p.iter_mut().zip(it) {
            *slot = port;
        }
        p
    }
    SteerConfig {
        sample_every: args.sample,
        sample_random: args.sample_mode == SampleMode::Random,
        sample_by_pair: args.sample_mode == SampleMode::Flow,
        sample_key: args.sample_key,
        ignore: ignore_prefixes(args),
        decap_kinds: probe_core::wire::TunnelKind::ALL
            .iter()
            .filter(|k| decap.is_enabled(**k))
            .fold(0, |bits, k| bits | 1 << *k as u32),
        vxlan_ports: ports(decap.vxlan_ports()),
        geneve_ports: ports(decap.geneve_ports()),
    }
}

/// The ignore-list as (address, prefix length) pairs: the XDP program applies it to the outer
/// addresses and one tunnel layer deep, the decoders to the innermost addresses.
fn ignore_prefixes(args: &CaptureConfig) -> Vec<(std::net::IpAddr, u8)> {
    args.ignore.iter().map(|c| (c.addr, c.len)).collect()
}

/// The selector report `args` asks for (1-in-N sampling in the kernel).
fn sampling_of(args: &CaptureConfig) -> Option<ipfix_export::Sampling> {
    (args.sample > 1).then_some(ipfix_export::Sampling {
        algorithm: match args.sample_mode {
            SampleMode::Deterministic => ipfix_export::SelectorAlgorithm::SystematicCountBased,
            SampleMode::Random => ipfix_export::SelectorAlgorithm::RandomNOutOfN,
            SampleMode::Flow => ipfix_export::SelectorAlgorithm::FlowRandomNOutOfN,
        },
        every: args.sample,
    })
}

/// One capture interface: its XDP program and the queues captured.
pub struct Capture {
    pub name: String,
    pub ifindex: u32,
    /// RX queues the interface has (the program's counters cover every one).
    pub available: u32,
    pub queues: Vec<u32>,
    pub steering: Steering,
    pub mode: XdpMode,
    /// The interface's own receive counters just after the program was attached: at the end
    /// the driver's count over the run is set against the frames XDP saw, so a loss between
    /// the driver and XDP is a line in the books and not only visible from outside.
    pub rx_before: Option<self::netdev::RxCounters>,
    /// Every socket of the interface runs in zero-copy mode.
    pub zero_copy: bool,
    _promisc: Option<promisc::Promiscuous>,
}

/// An AF_XDP socket opened for one queue of one interface (by its index in the list).
pub struct QueueSocket {
    pub iface: usize,
    pub queue: u32,
    pub sock: XskSocket,
}

/// An RX thread as the main thread watches it.
pub struct RxWatch {
    pub iface: usize,
    pub queue: u32,
    pub fd: RawFd,
    pub progress: Arc<rx::Progress>,
}

/// How the run is laid out, and why (printed at start and in the books).
pub struct Plan {
    pub fanout: bool,
    pub workers: usize,
    pub why: String,
}

/// `reload`: the settings in force and how to read them again (SIGHUP); `None` when the probe
/// was started without `--config` (SIGHUP then says there is nothing to re-read).
pub fn run(
    args: &CaptureConfig,
    reload: Option<(reload::Settings, reload::Reloader)>,
) -> Result<RunReport> {
    // Options that can be wrong are checked before anything is attached (the meter's when
    // `cli` built the configuration).
    let identity = identity_of(args)?;
    let rx_threads = check_queues(args)?;
    let plan = plan(args, rx_threads)?;
    let (mut captures, sockets) = attach(args)?;
    announce(args, &captures, &sockets, &plan);
    let mut outputs = Outputs::start(args)?;
    // Everything privileged is done: the programs are attached, the sockets, the collector
    // connections, files and listener are open.
    if let Some(id) = &identity {
        give_files_to(id, args)?;
        crate::sys::privileges::drop_to(id, &[crate::sys::privileges::CAP_BPF]).with_context(
            || {
                format!(
                    "--user {}: cannot switch to uid {} gid {}",
                    id.user, id.uid, id.gid
                )
            },
        )?;
        eprintln!(
            "probe: running as {} (uid {}, gid {}), keeping only CAP_BPF for the program's counters",
            id.user, id.uid, id.gid
        );
    }
    let running = start(
        args,
        &captures,
        sockets,
        &plan,
        &outputs,
        identity.is_some(),
    )?;
    let watched = watch(args, &mut captures, &running, &mut outputs, reload);
    let stopped = stop(&captures, running)?;
    if watched.reason == "signal" {
        eprintln!("probe: stopped by a signal: every active flow was exported (forcedEnd, or endOfFlowDetected if already closed)");
    }
    books(captures, stopped, outputs, &plan, watched)
}

/// The queues asked for exist on every interface; returns how many RX threads there will be.
fn check_queues(args: &CaptureConfig) -> Result<usize> {
    if args.interface.is_empty() {
        bail!("--interface: give the capture interface, e.g. -i eth1 (repeat it for each port of a tap)");
    }
    let mut seen = std::collections::HashSet::new();
    let mut threads = 0;
    for iface in &args.interface {
        if !seen.insert(iface) {
            bail!("--interface {iface} is given twice: give each interface once");
        }
        bpf::ifindex(iface)?;
        threads += queues_of(args, iface)?.len();
    }
    if let Some(cpus) = &args.rx_cpus {
        if cpus.len() < threads {
            bail!(
                "--rx-cpus: {} CPUs given for {threads} RX queues: give one CPU per queue",
                cpus.len()
            );
        }
    }
    Ok(threads)
}

/// The queues of `iface` to capture.
fn queues_of(args: &CaptureConfig, iface: &str) -> Result<Vec<u32>> {
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
    Ok(queues)
}

/// One hop or fan-out. One hop needs every connection's two directions on one queue: one
/// interface, RSS declared symmetric (or a single queue), and no more workers than queues.
pub fn plan(args: &CaptureConfig, rx_threads: usize) -> Result<Plan> {
    let allowed = crate::sys::cpus::allowed().len();
    let workers = args.meter.workers.unwrap_or(allowed).max(1);
    let one_queue = rx_threads == 1 && workers == 1;
    let symmetric = args.rss == RssMode::Symmetric && args.interface.len() == 1;
    let plan = if one_queue {
        Plan {
            fanout: false,
            workers: 1,
            why: "one queue, one worker".into(),
        }
    } else if symmetric && rx_threads >= workers {
        Plan {
            fanout: false,
            workers: rx_threads,
            why: format!(
                "--rss symmetric and {rx_threads} queues for {workers} workers: each queue meters its own frames"
            ),
        }
    } else {
        let why = if args.interface.len() > 1 {
            format!(
                "{} interfaces share one set of caches",
                args.interface.len()
            )
        } else if args.rss != RssMode::Symmetric {
            "RSS not declared symmetric, see --rss".to_string()
        } else {
            format!("{workers} workers for {rx_threads} queues")
        };
        Plan {
            fanout: true,
            workers,
            why,
        }
    };
    if plan.fanout {
        if let Some(cpus) = &args.meter.worker_cpus {
            if cpus.len() < plan.workers {
                bail!(
                    "--worker-cpus: {} CPUs given for {} metering workers: give one CPU per worker (or set --workers)",
                    cpus.len(),
                    plan.workers
                );
            }
        }
    }
    Ok(plan)
}

/// Phase 1: every interface gets its XDP program and, for each captured queue, an AF_XDP
/// socket registered with it.
fn attach(args: &CaptureConfig) -> Result<(Vec<Capture>, Vec<QueueSocket>)> {
    let want = args.xdp_mode;
    let xsk_cfg = XskConfig {
        frame_size: args.frame_size,
        frames: args.umem_frames,
        rx_size: args.rx_ring,
        zero_copy: args.zero_copy,
        busy_poll: args.busy_poll.then_some(args.batch),
    };
    let mut captures = Vec::new();
    let mut sockets = Vec::new();
    for (i, iface) in args.interface.iter().enumerate() {
        let ifindex = bpf::ifindex(iface)?;
        let queues = queues_of(args, iface)?;
        let mut steering = Steering::load(&steer_config(args), args.timestamps).map_err(|e| {
            match args.timestamps {
                Some(s) => anyhow!("--timestamps {}: {e} (use --timestamps auto)", s.name()),
                None => e.into(),
            }
        })?;
        let (mode, native_failure) = steering.attach(iface, want)?;
        // Read once the program runs: a frame in between is in the program's count only, so
        // a busy link never makes a loss appear where there is none.
        let rx_before = self::netdev::rx_counters(iface);
        if let Some(why) = native_failure {
            eprintln!("probe: {iface}: {why}; using generic mode (slower)");
        }
        // Frames for other hosts (a SPAN or tap port) reach XDP only in promiscuous mode.
        let promisc = if args.no_promisc {
            None
        } else {
            Some(promisc::Promiscuous::enable(ifindex).map_err(|e| {
                anyhow!("cannot put {iface} in promiscuous mode: {e} (or use --no-promisc)")
            })?)
        };
        let mut zero_copy = true;
        for &q in &queues {
            let sock = XskSocket::open(ifindex, q, &xsk_cfg)
                .map_err(|e| anyhow!("queue {q} of {iface}: {e}"))?;
            steering.register_socket(q, sock.fd())?;
            zero_copy &= sock.zero_copy();
            sockets.push(QueueSocket {
                iface: i,
                queue: q,
                sock,
            });
        }
        captures.push(Capture {
            zero_copy,
            name: iface.to_string(),
            ifindex,
            available: rx_queue_count(iface)?,
            queues,
            steering,
            mode,
            rx_before,
            _promisc: promisc,
        });
    }
    Ok((captures, sockets))
}

/// Says at start what was attached and how the run is laid out.
fn announce(args: &CaptureConfig, captures: &[Capture], sockets: &[QueueSocket], plan: &Plan) {
    for (i, c) in captures.iter().enumerate() {
        let socks = sockets.iter().filter(|s| s.iface == i).count();
        eprintln!(
            "probe: capturing on {}: XDP in {} mode, {} AF_XDP socket{} in {} mode (queues {})",
            c.name,
            c.mode,
            socks,
            if socks == 1 { "" } else { "s" },
            if c.zero_copy { "zero-copy" } else { "copy" },
            c.queues
                .iter()
                .map(|q| q.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let stamp = c.steering.stamp();
        match c.steering.stamp_fallback_reason() {
            Some(why) => eprintln!("probe: {}: timestamps: {stamp} ({why})", c.name),
            None => eprintln!("probe: {}: timestamps: {stamp}", c.name),
        }
    }
    if plan.fanout {
        eprintln!(
            "probe: fan-out: {} RX thread{} decode{}, {} metering worker{} own the flows by a symmetric hash ({})",
            sockets.len(),
            if sockets.len() == 1 { "" } else { "s" },
            if sockets.len() == 1 { "s" } else { "" },
            plan.workers,
            if plan.workers == 1 { "" } else { "s" },
            plan.why
        );
    } else {
        eprintln!(
            "probe: one hop: each RX thread meters its own frames ({})",
            plan.why
        );
    }
    if args.sample > 1 {
        eprintln!(
            "probe: sampling 1 in {} {} ({}); flow counts are of sampled frames",
            args.sample,
            if args.sample_mode == SampleMode::Flow {
                "address pairs"
            } else {
                "frames"
            },
            args.sample_mode.name()
        );
    }
}

/// The exporter, the PCAP ring's writer and the metrics listener.
struct Outputs {
    records: crossbeam_channel::Sender<Vec<FlowRecord>>,
    gauges: Arc<exporter::Gauges>,
    exporter: JoinHandle<crate::pipeline::books::ExportReport>,
    export_ctl: crossbeam_channel::Sender<exporter::ExportControl>,
    ring: Option<(
        crossbeam_channel::Sender<crate::pipeline::ring_keeper::Batch>,
        probe_core::select::Selection,
    )>,
    ring_writer: Option<JoinHandle<crate::pipeline::ring_keeper::RingReport>>,
    /// The flows the selection's name primitives marked, shared by every RX thread's keeper.
    marks: Arc<crate::pipeline::ring_keeper::flows::Marks>,
    metrics: Option<metrics::Metrics>,
}

impl Outputs {
    fn start(args: &CaptureConfig) -> Result<Outputs> {
        let label = args.interface.join(",");
        let (tx, rx) = crossbeam_channel::bounded(256);
        let mut export_cfg = args.export.clone();
        export_cfg.exporter.encoder.sampling = sampling_of(args);
        let gauges = Arc::new(exporter::Gauges::default());
        let (export_ctl, export_ctl_rx) = crossbeam_channel::unbounded();
        let exporter = exporter::spawn_with_control(export_cfg, rx, gauges.clone(), export_ctl_rx)?;
        // The ring writer; each RX thread gets a keeper that never waits for it.
        let (ring, ring_writer) = match args.pcap.ring(&label) {
            Some((cfg, select)) => {
                let (rtx, rrx) = crossbeam_channel::bounded(64);
                (
                    Some((rtx, select)),
                    Some(crate::pipeline::ring_keeper::spawn_writer(cfg, rrx)?),
                )
            }
            None => (None, None),
        };
        let metrics = match args.metrics {
            Some(addr) => {
                let m = metrics::Metrics::bind(addr, &label)
                    .with_context(|| format!("--metrics {addr}: cannot listen"))?;
                eprintln!("probe: metrics on http://{addr}/metrics");
                Some(m)
            }
            None => None,
        };
        Ok(Outputs {
            records: tx,
            gauges,
            exporter,
            export_ctl,
            ring,
            ring_writer,
            marks: Default::default(),
            metrics,
        })
    }
}

/// The stages while they run.
struct Running {
    stop: Arc<AtomicBool>,
    rx: Vec<JoinHandle<RxOutcome>>,
    watch: Vec<RxWatch>,
    workers: Option<Workers>,
    /// Every stage's reload slot: RX threads first, then metering workers.
    updates: Vec<Updates>,
}

/// Phase 2: the metering workers (fan-out), then one RX thread per socket.
fn start(
    args: &CaptureConfig,
    captures: &[Capture],
    sockets: Vec<QueueSocket>,
    plan: &Plan,
    outputs: &Outputs,
    unprivileged: bool,
) -> Result<Running> {
    let (mut fanouts, workers) = if plan.fanout {
        let spec = WorkerSpec {
            count: plan.workers,
            cache: args.meter.cache.clone(),
            cpus: args.meter.worker_cpus.as_deref(),
            live: true,
            unprivileged,
        };
        let (f, w) = crate::pipeline::topology::start_workers(
            &spec,
            sockets.len(),
            &outputs.records,
            &outputs.gauges,
        )?;
        (f.into_iter().map(Some).collect(), Some(w))
    } else {
        (Vec::new(), None)
    };
    let queues = sockets.len();
    let stop = Arc::new(AtomicBool::new(false));
    let offset = crate::sys::clock::realtime_offset_ns();
    let mut running = Running {
        stop: stop.clone(),
        rx: Vec::new(),
        watch: Vec::new(),
        workers: None,
        updates: Vec::new(),
    };
    for (
        i,
        QueueSocket {
            iface,
            queue: q,
            sock,
        },
    ) in sockets.into_iter().enumerate()
    {
        let ifindex = captures[iface].ifindex;
        let stage = match fanouts.get_mut(i).and_then(Option::take) {
            Some(fanout) => {
                let mut decoder = args.meter.decoder();
                decoder.set_ingress(ifindex);
                decoder.set_ignore(&ignore_prefixes(args));
                decoder.set_pair_sampler(args.pair_sampler());
                RxStage::Fanout(Box::new(FanoutDecoder::new(decoder, fanout, true)))
            }
            None => {
                // One hop: the probe's flow budget is shared out between the queues' caches.
                let mut m = args.meter.meter_sharing(queues);
                m.set_ingress(ifindex);
                m.set_ignore(&ignore_prefixes(args));
                m.set_pair_sampler(args.pair_sampler());
                RxStage::OneHop {
                    meter: Box::new(m),
                    shipper: Shipper::new(outputs.records.clone(), outputs.gauges.clone(), true),
                }
            }
        };
        let progress = Arc::new(rx::Progress::default());
        let updates: Updates = Default::default();
        running.updates.push(updates.clone());
        running.watch.push(RxWatch {
            iface,
            queue: q,
            fd: sock.fd(),
            progress: progress.clone(),
        });
        let t = RxThread {
            iface,
            iface_name: captures[iface].name.clone(),
            queue: q,
            sock,
            stage,
            batch: args.batch as usize,
            cpu: args.rx_cpus.as_ref().map(|c| c[i]),
            clock_offset_ns: offset,
            stamp: captures[iface].steering.stamp(),
            cookie: captures[iface].steering.cookie(),
            progress,
            unprivileged,
            keeper: outputs.ring.as_ref().map(|(rtx, select)| {
                args.pcap
                    .keeper(select.clone(), rtx.clone(), false, outputs.marks.clone())
            }),
            updates,
        };
        let stop = stop.clone();
        running.rx.push(
            std::thread::Builder::new()
                .name(format!("rx-{}-q{q}", captures[iface].name))
                .spawn(move || t.run(stop))
                .context("cannot start an RX thread")?,
        );
    }
    if let Some(w) = &workers {
        running.updates.extend(w.updates.iter().cloned());
    }
    running.workers = workers;
    Ok(running)
}

/// What the watch phase ends with.
struct Watched {
    reason: &'static str,
    current: CaptureConfig,
    reloads: reload::ReloadBooks,
}

/// Phase 3: the main thread prints, serves metrics, publishes the statistics and applies
/// reloads until a signal, the duration, or a stage stopping.
fn watch(
    args: &CaptureConfig,
    captures: &mut [Capture],
    running: &Running,
    outputs: &mut Outputs,
    reload: Option<(reload::Settings, reload::Reloader)>,
) -> Watched {
    let label = args.interface.join(",");
    let started = Instant::now();
    let mut ticker = watch::StatsLine::new(args.stats_interval);
    let mut last_gauges = Instant::now();
    let mut current = args.clone();
    let mut duration = args.duration;
    let mut reloads = reload::ReloadBooks::default();
    let mut reload = reload;
    let mut metrics = outputs.metrics.take();
    let no_workers = Vec::new();
    let worker_progress = running
        .workers
        .as_ref()
        .map_or(&no_workers, |w| &w.progress);
    let reason = loop {
        if crate::sys::signals::take_reload() {
            let ctx = reload::ReloadContext {
                captures,
                stages: &running.updates,
                export: &outputs.export_ctl,
                ring: outputs.ring.as_ref().map(|(r, _)| r),
                metrics: &mut metrics,
                ticker: &mut ticker,
                duration: &mut duration,
                iface: &label,
            };
            reload::apply(&mut reload, &mut current, ctx, &mut reloads);
        }
        std::thread::sleep(Duration::from_millis(50));
        ticker.maybe_print(captures, &running.watch, worker_progress, &outputs.gauges);
        if last_gauges.elapsed() >= Duration::from_secs(1) {
            last_gauges = Instant::now();
            outputs
                .gauges
                .set_metering(watch::metering_counts(captures, &running.watch));
        }
        if let Some(m) = &metrics {
            m.poll(
                captures,
                &running.watch,
                worker_progress,
                (reloads.applied, reloads.rejected),
                &outputs.gauges,
            );
        }
        if crate::sys::signals::stop_requested() {
            break "signal";
        }
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break "duration";
        }
        if running.rx.iter().any(|h| h.is_finished())
            || running
                .workers
                .as_ref()
                .is_some_and(|w| w.handles.iter().any(|h| h.is_finished()))
        {
            break "a stage stopped";
        }
    };
    Watched {
        reason,
        current,
        reloads,
    }
}

/// What the stages did.
struct Stopped {
    rx: Vec<RxOutcome>,
    workers: Option<crate::pipeline::topology::WorkerBooks>,
}

/// Phase 4: in order: sockets out of the programs, in-flight frames drained, RX threads
/// stopped (which ends the workers), every flow exported.
fn stop(captures: &[Capture], running: Running) -> Result<Stopped> {
    for c in captures {
        for &q in &c.queues {
            c.steering.unregister_socket(q);
        }
    }
    std::thread::sleep(SETTLE);
    running.stop.store(true, Ordering::Release);
    let mut rx = Vec::new();
    for h in running.rx {
        rx.push(h.join().map_err(|_| anyhow!("an RX thread panicked"))?);
    }
    let workers = match running.workers {
        Some(w) => Some(w.join()?),
        None => None,
    };
    Ok(Stopped { rx, workers })
}
