//! The exporter thread: receives batches of flow records from workers over a bounded channel
//! and hands them to the exporting process (every collector and file gets every record);
//! optionally prints the same records as JSON lines or a table.
//!
//! Failures never stop the exporter: each lost message is counted per destination with the
//! flows it carried, the first failure of an episode is logged once, and every IPFIX collector
//! is told, in options records at start, on an interval and at the end, how much was metered
//! and how much never reached it.

use crate::pipeline::books::ExportReport;
use anyhow::{Context, Result};
use crossbeam_channel::Receiver;
use ipfix_export::{
    Destination, Exporter, ExporterConfig, FlowRecord, FlowTotals, MeteringCounts, TimePrecision,
};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest a record waits in a partly filled message: sent when no records arrive for this
/// long, and at least this often while records trickle in.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Output formats for people without a collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrintFormat {
    Json,
    Table,
}

impl PrintFormat {
    /// `--print`'s names, each with what it prints.
    pub const CHOICES: [(&'static str, PrintFormat, &'static str); 2] = [
        (
            "json",
            PrintFormat::Json,
            "One JSON object per flow record, keyed by IANA element names.",
        ),
        (
            "table",
            PrintFormat::Table,
            "One aligned line per flow record, for people reading a terminal.",
        ),
    ];
}

/// What the exporter does with records.
#[derive(Clone)]
pub struct ExportConfig {
    pub exporter: ExporterConfig,
    pub destinations: Vec<Destination>,
    /// Also print records on stdout in this format.
    pub print: Option<PrintFormat>,
    /// Send the statistics options records this often (and at start and end).
    pub options_interval: Duration,
    /// At the end, how long TCP/SCTP collectors get to take what is still queued.
    pub drain: Duration,
    /// Crypto-PAn key file: anonymize every exported address.
    pub anonymize: Option<PathBuf>,
    /// `--community-id`: give every record its Community ID (v1) under this seed, in IPFIX
    /// and on --print.
    pub community_id: Option<u16>,
}

/// Totals the metering side publishes for the statistics options records: the exporter thread
/// cannot see the workers' books or the XDP counters, so the owner of those copies them here.
pub struct Gauges {
    observed: AtomicU64,
    not_metered: AtomicU64,
    not_metered_octets: AtomicU64,
    /// Unix ms of the first and last packet not metered; first > last while there was none.
    not_metered_first_ms: AtomicU64,
    not_metered_last_ms: AtomicU64,
    lost_flows: AtomicU64,
    lost_packets: AtomicU64,
    lost_octets: AtomicU64,
    /// Records the exporter has taken (for the periodic line).
    exported: AtomicU64,
    /// Each destination's report as of the last second (for `--metrics`).
    collectors: std::sync::Mutex<Vec<ipfix_export::DestinationReport>>,
}

impl Default for Gauges {
    fn default() -> Self {
        Gauges {
            observed: AtomicU64::new(0),
            not_metered: AtomicU64::new(0),
            not_metered_octets: AtomicU64::new(0),
            not_metered_first_ms: AtomicU64::new(u64::MAX),
            not_metered_last_ms: AtomicU64::new(0),
            lost_flows: AtomicU64::new(0),
            lost_packets: AtomicU64::new(0),
            lost_octets: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            collectors: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl Gauges {
    pub fn set_metering(&self, m: MeteringCounts) {
        self.observed.store(m.observed, Ordering::Relaxed);
        self.not_metered.store(m.not_metered, Ordering::Relaxed);
        self.not_metered_octets
            .store(m.not_metered_octets, Ordering::Relaxed);
        let (first, last) = m.not_metered_span_ms.unwrap_or((u64::MAX, 0));
        self.not_metered_first_ms.store(first, Ordering::Relaxed);
        self.not_metered_last_ms.store(last, Ordering::Relaxed);
    }

    /// Records dropped before the exporter (a worker's backlog overflowed).
    pub fn add_lost(&self, t: FlowTotals) {
        self.lost_flows.fetch_add(t.flows, Ordering::Relaxed);
        self.lost_packets.fetch_add(t.packets, Ordering::Relaxed);
        self.lost_octets.fetch_add(t.octets, Ordering::Relaxed);
    }

    /// The exporter publishes its destinations' reports (once a second).
    pub fn set_collectors(&self, reports: Vec<ipfix_export::DestinationReport>) {
        *self.collectors.lock().unwrap_or_else(|e| e.into_inner()) = reports;
    }

    /// The destinations' reports as last published.
    pub fn collectors(&self) -> Vec<ipfix_export::DestinationReport> {
        self.collectors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the exporter has taken so far, and records lost before it.
    pub fn export_progress(&self) -> (u64, u64) {
        (
            self.exported.load(Ordering::Relaxed),
            self.lost_flows.load(Ordering::Relaxed),
        )
    }

    fn snapshot(&self) -> (MeteringCounts, FlowTotals) {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            MeteringCounts {
                observed: l(&self.observed),
                not_metered: l(&self.not_metered),
                not_metered_octets: l(&self.not_metered_octets),
                not_metered_span_ms: Some((
                    l(&self.not_metered_first_ms),
                    l(&self.not_metered_last_ms),
                ))
                .filter(|(first, last)| first <= last),
            },
            FlowTotals {
                flows: l(&self.lost_flows),
                packets: l(&self.lost_packets),
                octets: l(&self.lost_octets),
            },
        )
    }
}

/// Names a rotated IPFIX file by its creation time:
/// `flows.ipfix` becomes `flows-20261123T011500.123456789Z.ipfix`, so names sort by time.
fn rotated_name(path: &Path, unix_ns: u64) -> PathBuf {
    let stamp: String = pcap_ring::format_utc(unix_ns)
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let stem = path
        .file_stem()
        .map_or("flows".into(), |s| s.to_string_lossy());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{stamp}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{stamp}"),
    };
    path.with_file_name(name)
}

/// What a reload asks of the running exporter.
#[derive(Debug)]
pub enum ExportControl {
    /// A collector added: opened now, gets every record from now on.
    Add(Destination),
    /// A collector removed (by URL): what it holds is sent, then it closes.
    Remove(String),
    /// The kernel's sampling changed: the selector reports say so from now on.
    Sampling(Option<ipfix_export::Sampling>),
}

/// Starts the exporter thread. It runs until every sender of `rx` is dropped, then flushes,
/// sends the last statistics, and returns its report.
pub fn spawn(
    cfg: ExportConfig,
    rx: Receiver<Vec<FlowRecord>>,
    gauges: Arc<Gauges>,
) -> Result<std::thread::JoinHandle<ExportReport>> {
    spawn_with_control(cfg, rx, gauges, crossbeam_channel::never())
}

/// [`spawn`], also taking [`ExportControl`]s (a live probe's reloads) between records.
pub fn spawn_with_control(
    cfg: ExportConfig,
    rx: Receiver<Vec<FlowRecord>>,
    gauges: Arc<Gauges>,
    mut control: Receiver<ExportControl>,
) -> Result<std::thread::JoinHandle<ExportReport>> {
    let log: ipfix_export::stream::Log = Arc::new(|m: &str| eprintln!("probe: export to {m}"));
    let mut exporter = Exporter::new(
        &cfg.exporter,
        &cfg.destinations,
        || Box::new(rotated_name),
        log,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
    .context("cannot start exporting")?;
    let anonymizer = match &cfg.anonymize {
        Some(path) => Some(crate::pipeline::anonymize::CryptoPan::from_file(path)?),
        None => None,
    };
    let print = cfg.print;
    std::thread::Builder::new()
        .name("exporter".into())
        .spawn(move || {
            let mut json = JsonOut::new(print);
            let statistics = |exporter: &mut Exporter| {
                let (m, lost) = gauges.snapshot();
                exporter.push_statistics(unix_secs(), m, lost);
            };
            statistics(&mut exporter);
            let mut last_statistics = Instant::now();
            let mut records = 0u64;
            let mut last_flush = Instant::now();
            let apply = |exporter: &mut Exporter, c: ExportControl| match c {
                ExportControl::Add(d) => match exporter.add(&d) {
                    Ok(()) => eprintln!("probe: reload: exporting to {d} too"),
                    Err(e) => eprintln!("probe: reload: cannot export to {d}: {e}"),
                },
                ExportControl::Remove(url) => {
                    if exporter.remove(&url, unix_secs(), cfg.drain) {
                        eprintln!("probe: reload: no longer exporting to {url}");
                    }
                }
                ExportControl::Sampling(s) => exporter.set_sampling(s),
            };
            loop {
                // A reload's changes first: records that come after it are its records.
                while let Ok(c) = control.try_recv() {
                    apply(&mut exporter, c);
                }
                if last_flush.elapsed() >= FLUSH_EVERY {
                    exporter.flush(unix_secs());
                    gauges.set_collectors(exporter.reports());
                    last_flush = Instant::now();
                }
                // Records waiting for a destination's pace leave as it allows.
                let backlog_due = exporter.service(unix_secs());
                let wait = FLUSH_EVERY
                    .saturating_sub(last_flush.elapsed())
                    .min(backlog_due.unwrap_or(Duration::MAX))
                    .max(Duration::from_micros(200));
                crossbeam_channel::select! {
                    recv(control) -> c => {
                        match c {
                            Ok(c) => apply(&mut exporter, c),
                            // Nobody reloads any more: stop listening.
                            Err(_) => control = crossbeam_channel::never(),
                        }
                        continue;
                    }
                    recv(rx) -> got => match got {
                        Ok(mut batch) => {
                            if let Some(a) = &anonymizer {
                                batch.iter_mut().for_each(|r| a.record(r));
                            }
                            // Over the addresses exported: anonymized ones under --anonymize.
                            if let Some(seed) = cfg.community_id {
                                // An aggregate is no conversation: it has no Community ID.
                                batch.iter_mut().filter(|r| r.aggregate.is_none()).for_each(|r| {
                                    r.community_id =
                                        Some(probe_core::community_id::of_record(seed, r));
                                });
                            }
                            let now = unix_secs();
                            records += batch.len() as u64;
                            gauges
                                .exported
                                .fetch_add(batch.len() as u64, Ordering::Relaxed);
                            for rec in &batch {
                                exporter.push(rec, now);
                                json.record(rec);
                            }
                            json.flush();
                        }
                        Err(_) => break,
                    },
                    // The loop's top flushes when a second has passed; a shorter wait was
                    // for a backlog's pace.
                    default(wait) => {}
                }
                if last_statistics.elapsed() >= cfg.options_interval {
                    last_statistics = Instant::now();
                    statistics(&mut exporter);
                }
            }
            exporter.flush(unix_secs());
            statistics(&mut exporter);
            json.flush();
            let destinations = exporter.finish(unix_secs(), cfg.drain);
            ExportReport {
                records,
                destinations,
                json_records: json.printed,
                json_records_lost: json.lost,
            }
        })
        .context("cannot start the exporter thread")
}

/// JSON lines on stdout. A line counts as printed only once a flush of it succeeded; after the
/// first failure (a closed pipe, a full disk) JSON output stops, export goes on, and every
/// record not printed is counted as lost.
struct JsonOut {
    enabled: bool,
    table: bool,
    header_done: bool,
    /// `None` once stdout has failed.
    out: Option<std::io::BufWriter<std::io::StdoutLock<'static>>>,
    /// Lines written to the buffer since the last successful flush.
    pending: u64,
    printed: u64,
    lost: u64,
}

impl JsonOut {
    fn new(print: Option<PrintFormat>) -> JsonOut {
        let enabled = print.is_some();
        let out = enabled.then(|| std::io::BufWriter::new(std::io::stdout().lock()));
        JsonOut {
            enabled,
            table: print == Some(PrintFormat::Table),
            header_done: false,
            out,
            pending: 0,
            printed: 0,
            lost: 0,
        }
    }

    fn record(&mut self, rec: &FlowRecord) {
        if !self.enabled {
            return;
        }
        let (table, header) = (self.table, !self.header_done);
        self.header_done = true;
        let written = self.out.as_mut().map(|w| {
            if table {
                if header {
                    write_table_header(w)?;
                }
                write_table_row(w, rec)
            } else {
                write_json(w, rec)
            }
        });
        match written {
            Some(Ok(())) => self.pending += 1,
            Some(Err(e)) => self.fail(e, 1),
            None => self.lost += 1,
        }
    }

    fn flush(&mut self) {
        match self.out.as_mut().map(|w| w.flush()) {
            Some(Ok(())) => self.printed += std::mem::take(&mut self.pending),
            Some(Err(e)) => self.fail(e, 0),
            None => {}
        }
    }

    fn fail(&mut self, e: std::io::Error, this_one: u64) {
        eprintln!(
            "probe: cannot write JSON records to stdout: {e}; JSON output stops, export goes on"
        );
        self.lost += std::mem::take(&mut self.pending) + this_one;
        // Dropping a BufWriter flushes it; forget its buffer instead of retrying a dead stdout.
        if let Some(w) = self.out.take() {
            let _ = w.into_parts();
        }
    }
}

fn unix_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// The header of `--print table`.
pub fn write_table_header(w: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        w,
        "{:<23} {:>9} {:<5} {:>39} {:>5}    {:<39} {:>5} {:>8} {:>10} {:<8} end          tunnel  app",
        "start (UTC)",
        "duration",
        "proto",
        "source",
        "port",
        "destination",
        "port",
        "packets",
        "bytes",
        "flags",
    )
}

/// One record as an aligned line: what nfdump's `-o long` shows, in the probe's words.
pub fn write_table_row(w: &mut impl Write, r: &FlowRecord) -> std::io::Result<()> {
    let start = pcap_ring::format_utc(r.start_ns);
    let proto = match r.protocol {
        1 => "ICMP".to_string(),
        6 => "TCP".to_string(),
        17 => "UDP".to_string(),
        58 => "ICMP6".to_string(),
        132 => "SCTP".to_string(),
        p => p.to_string(),
    };
    // "vxlan 42 192.0.2.1->192.0.2.2": kind, identity and endpoints of the outermost tunnel.
    let end = match r.tunnel {
        None => r.end_reason.name().to_string(),
        Some(t) => format!(
            "{:<12} {} {} {}->{}",
            r.end_reason.name(),
            probe_core::wire::TunnelKind::from_code(t.kind).name(),
            t.id,
            t.outer_src,
            t.outer_dst
        ),
    };
    let mut flags = String::new();
    for (bit, c) in [
        (0x20, 'U'),
        (0x10, 'A'),
        (0x08, 'P'),
        (0x04, 'R'),
        (0x02, 'S'),
        (0x01, 'F'),
    ] {
        flags.push(if r.tcp_flags & bit != 0 { c } else { '.' });
    }
    write!(
        w,
        "{} {:>9.3} {:<5} {:>39} {:>5} -> {:<39} {:>5} {:>8} {:>10} {:<8} {}",
        &start[..23].replace('T', " "),
        r.end_ns.saturating_sub(r.start_ns) as f64 / 1e9,
        proto,
        r.src_addr,
        r.src_port,
        r.dst_addr,
        r.dst_port,
        r.packets,
        r.octets,
        if r.protocol == 6 { flags.as_str() } else { "" },
        end
    )?;
    if r.app.is_some() || r.community_id.is_some() {
        write!(w, "  {}", app_summary(r))?;
    }
    if let Some(a) = &r.aggregate {
        // The side rolled away reads as "any" in the address column already (0.0.0.0).
        let away = if a.kept == ipfix_export::Kept::Source {
            "destinations"
        } else {
            "sources"
        };
        write!(w, "  aggregate: {} flows, ~{} {away}", a.flows, a.distinct)?;
    }
    writeln!(w)?;
    // A biflow's responder gets the next line (its application fields are on the first).
    match r.reverse_record() {
        Some(rev) => write_table_row(w, &FlowRecord { app: None, ..rev }),
        None => Ok(()),
    }
}

/// A record's application fields as `name=value` pairs, with the JSON names' short forms:
/// `cid=… dns=example.com qtype=1 rcode=0 answers=2 sni=… alpn=h2 ja4=… http=GET host=…
/// target=/ ua="…" status=200`.
pub fn app_summary(r: &FlowRecord) -> String {
    use std::fmt::Write as _;
    let none = ipfix_export::AppRecord::default();
    let a = r.app.as_deref().unwrap_or(&none);
    let mut s = String::new();
    let mut put = |k: &str, v: &dyn std::fmt::Display| {
        let _ = write!(s, "{}{k}={v}", if s.is_empty() { "" } else { " " });
    };
    let text = |v: &str| {
        if v.contains(' ') || v.is_empty() {
            format!("{v:?}")
        } else {
            v.to_string()
        }
    };
    if let Some(v) = &r.community_id {
        put("cid", &v.as_str());
    }
    if let Some(v) = a.dns_query_name() {
        put("dns", &text(v));
    }
    if let Some(v) = a.dns_query_type {
        put("qtype", &v);
    }
    if let Some(v) = a.dns_rcode {
        put("rcode", &v);
    }
    if let Some(v) = a.dns_answers {
        put("answers", &v);
    }
    if let Some(v) = a.tls_server_name() {
        put("sni", &text(v));
    }
    if let Some(v) = a.tls_alpn() {
        put("alpn", &text(v));
    }
    if let Some(v) = a.tls_ja4() {
        put("ja4", &v);
    }
    if let Some(v) = a.tls_server_version.or(a.tls_client_version) {
        put("tls", &format!("0x{v:04x}"));
    }
    if let Some(v) = a.tls_cipher_suite {
        put("cipher", &format!("0x{v:04x}"));
    }
    if let Some(v) = a.http_method() {
        put("http", &text(v));
    }
    if let Some(v) = a.http_host() {
        put("host", &text(v));
    }
    if let Some(v) = a.http_target() {
        put("target", &text(v));
    }
    if let Some(v) = a.http_user_agent() {
        put("ua", &format!("{v:?}"));
    }
    if let Some(v) = a.http_status {
        put("status", &v);
    }
    s
}

/// One record as a JSON line, keyed by IANA element names; application fields (and the
/// Community ID as `communityId`) by the names README lists.
pub fn write_json(w: &mut impl Write, r: &FlowRecord) -> std::io::Result<()> {
    let mut obj = serde_json::Map::new();
    let (src_name, dst_name) = match r.src_addr {
        IpAddr::V4(_) => ("sourceIPv4Address", "destinationIPv4Address"),
        IpAddr::V6(_) => ("sourceIPv6Address", "destinationIPv6Address"),
    };
    use serde_json::Value;
    obj.insert(
        "flowStartMilliseconds".into(),
        Value::from(r.start_ns / 1_000_000),
    );
    obj.insert(
        "flowEndMilliseconds".into(),
        Value::from(r.end_ns / 1_000_000),
    );
    if r.time_precision == TimePrecision::Nanos {
        obj.insert("flowStartNanoseconds".into(), Value::from(r.start_ns));
        obj.insert("flowEndNanoseconds".into(), Value::from(r.end_ns));
    }
    obj.insert(src_name.into(), Value::from(r.src_addr.to_string()));
    obj.insert(dst_name.into(), Value::from(r.dst_addr.to_string()));
    obj.insert("sourceTransportPort".into(), Value::from(r.src_port));
    obj.insert("destinationTransportPort".into(), Value::from(r.dst_port));
    obj.insert("protocolIdentifier".into(), Value::from(r.protocol));
    obj.insert(
        "ipVersion".into(),
        Value::from(if r.src_addr.is_ipv6() { 6 } else { 4 }),
    );
    obj.insert("packetDeltaCount".into(), Value::from(r.packets));
    obj.insert("octetDeltaCount".into(), Value::from(r.octets));
    obj.insert("tcpControlBits".into(), Value::from(r.tcp_flags));
    obj.insert("ipClassOfService".into(), Value::from(r.class_of_service));
    obj.insert("minimumTTL".into(), Value::from(r.min_ttl));
    obj.insert("maximumTTL".into(), Value::from(r.max_ttl));
    if r.protocol == 1 {
        obj.insert("icmpTypeCodeIPv4".into(), Value::from(r.icmp_type_code));
    } else if r.protocol == 58 {
        obj.insert("icmpTypeCodeIPv6".into(), Value::from(r.icmp_type_code));
    }
    if r.vlan_id != 0 {
        obj.insert("vlanId".into(), Value::from(r.vlan_id));
        obj.insert("dot1qVlanId".into(), Value::from(r.vlan_id));
    }
    if r.customer_vlan_id != 0 {
        obj.insert(
            "dot1qCustomerVlanId".into(),
            Value::from(r.customer_vlan_id),
        );
    }
    if r.mpls_top_label != [0; 3] {
        let m = r.mpls_top_label;
        obj.insert(
            "mplsTopLabelStackSection".into(),
            Value::from(format!("{:02x}{:02x}{:02x}", m[0], m[1], m[2])),
        );
    }
    let mac = |m: [u8; 6]| {
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    };
    obj.insert("sourceMacAddress".into(), Value::from(mac(r.src_mac)));
    obj.insert("destinationMacAddress".into(), Value::from(mac(r.dst_mac)));
    obj.insert("ingressInterface".into(), Value::from(r.ingress_interface));
    obj.insert("flowEndReason".into(), Value::from(r.end_reason.name()));
    if let Some(t) = r.tunnel {
        let kind = probe_core::wire::TunnelKind::from_code(t.kind);
        obj.insert("tunnelTechnology".into(), Value::from(kind.name()));
        obj.insert("tunnelType".into(), Value::from(t.kind));
        obj.insert("tunnelId".into(), Value::from(t.id));
        if t.layer2_segment_id != 0 {
            obj.insert("layer2SegmentId".into(), Value::from(t.layer2_segment_id));
        }
        if t.key_kind != 0 {
            let key_kind = probe_core::wire::TunnelKind::from_code(t.key_kind);
            obj.insert("tunnelKeyType".into(), Value::from(key_kind.name()));
            obj.insert("tunnelKey".into(), Value::from(t.key));
        }
        let (s, d) = if t.outer_src.is_ipv4() {
            ("tunnelSourceIPv4Address", "tunnelDestinationIPv4Address")
        } else {
            ("tunnelSourceIPv6Address", "tunnelDestinationIPv6Address")
        };
        obj.insert(s.into(), Value::from(t.outer_src.to_string()));
        obj.insert(d.into(), Value::from(t.outer_dst.to_string()));
    }
    if let Some(rev) = r.reverse {
        obj.insert("reversePacketDeltaCount".into(), Value::from(rev.packets));
        obj.insert("reverseOctetDeltaCount".into(), Value::from(rev.octets));
        obj.insert("reverseTcpControlBits".into(), Value::from(rev.tcp_flags));
        obj.insert(
            "reverseIpClassOfService".into(),
            Value::from(rev.class_of_service),
        );
        obj.insert("reverseMinimumTTL".into(), Value::from(rev.min_ttl));
        obj.insert("reverseMaximumTTL".into(), Value::from(rev.max_ttl));
        obj.insert(
            "reverseFlowStartMilliseconds".into(),
            Value::from(rev.start_ns / 1_000_000),
        );
        obj.insert(
            "reverseFlowEndMilliseconds".into(),
            Value::from(rev.end_ns / 1_000_000),
        );
        obj.insert(
            "reverseIngressInterface".into(),
            Value::from(rev.ingress_interface),
        );
    }
    if let Some(c) = &r.community_id {
        obj.insert("communityId".into(), Value::from(c.as_str()));
    }
    if let Some(a) = &r.app {
        app_json(a, &mut obj);
    }
    if let Some(a) = &r.aggregate {
        // RFC 7015's elements, as the IPFIX record carries them.
        let v6 = r.is_ipv6();
        let (src_len, dst_len) = a.prefix_lengths(v6);
        let (s, d) = if v6 {
            ("sourceIPv6PrefixLength", "destinationIPv6PrefixLength")
        } else {
            ("sourceIPv4PrefixLength", "destinationIPv4PrefixLength")
        };
        obj.insert(s.into(), Value::from(src_len));
        obj.insert(d.into(), Value::from(dst_len));
        obj.insert("deltaFlowCount".into(), Value::from(a.flows));
        obj.insert("originalFlowsPresent".into(), Value::from(a.flows));
        let distinct = if a.kept == ipfix_export::Kept::Source {
            "distinctCountOfDestinationIPAddress"
        } else {
            "distinctCountOfSourceIPAddress"
        };
        obj.insert(distinct.into(), Value::from(a.distinct));
    }
    serde_json::to_writer(&mut *w, &Value::Object(obj))?;
    w.write_all(b"\n")
}

/// A record's application fields, by the names collectors use (IANA's http* elements where
/// they exist).
fn app_json(a: &ipfix_export::AppRecord, obj: &mut serde_json::Map<String, serde_json::Value>) {
    use serde_json::Value;
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            obj.insert(k.into(), v);
        }
    };
    let hex = |v: Option<u16>| v.map(|v| Value::from(format!("0x{v:04x}")));
    put("dnsQueryName", a.dns_query_name().map(Value::from));
    put("dnsQueryType", a.dns_query_type.map(Value::from));
    put("dnsQueryClass", a.dns_query_class.map(Value::from));
    put("dnsResponseCode", a.dns_rcode.map(Value::from));
    put("dnsAnswerCount", a.dns_answers.map(Value::from));
    put("tlsServerName", a.tls_server_name().map(Value::from));
    put("tlsAlpn", a.tls_alpn().map(Value::from));
    put("tlsClientVersion", hex(a.tls_client_version));
    put("tlsJa4", a.tls_ja4().map(Value::from));
    put("tlsServerVersion", hex(a.tls_server_version));
    put("tlsCipherSuite", hex(a.tls_cipher_suite));
    put("httpRequestMethod", a.http_method().map(Value::from));
    put("httpRequestHost", a.http_host().map(Value::from));
    put("httpRequestTarget", a.http_target().map(Value::from));
    put("httpUserAgent", a.http_user_agent().map(Value::from));
    put("httpStatusCode", a.http_status.map(Value::from));
}
