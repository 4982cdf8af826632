//! The exporting process: every record goes to every destination, each with its own encoder
//! (its own sequence numbers and template schedule) and its own transport.
//!
//! A destination that fails never holds up the others: UDP and files report a loss per
//! message, stream transports queue in a bounded backlog owned by their I/O thread. Each
//! destination's losses are counted with the flows, packets and octets they carried, and told
//! to that collector in the exporting-process reliability record.
//!
//! Live, the exporter never waits on a destination (issue #28): a record that a destination
//! cannot take now (its UDP pace is spent, its stream backlog is full) waits in that
//! destination's own [`Backlog`], which sends conversations before aggregates before
//! one-packet flows and, when full, drops the least worth keeping first. Reading a file, the
//! exporter waits for the pace instead ([`ExporterConfig::wait_for_pace`]): a file can be read
//! faster than any collector, and nothing needs to be lost for it.

use crate::backlog::Backlog;
use crate::destination::{Destination, Target};
use crate::encoder::{
    ConfigError, EncoderConfig, EncoderStats, Message, MessageEncoder, Sent, Statistics,
};
use crate::file::{FileSender, Namer};
use crate::netflow::{NetflowLosses, V5Encoder, V9Encoder};
use crate::options::{FlowTotals, MeteringCounts};
use crate::record::FlowRecord;
use crate::spool::{ArchiveWriter, Spool, SpoolStats};
use crate::stream::{Log, StreamConfig, StreamProtocol, StreamSender};
use crate::udp::{Pacer, UdpSender};
use std::time::{Duration, Instant};

/// How the exporting process runs.
#[derive(Clone)]
pub struct ExporterConfig {
    /// The IPFIX encoder settings; UDP uses them as given, session transports without inline
    /// templates.
    pub encoder: EncoderConfig,
    /// Most messages per second towards each UDP collector (`None`: unlimited).
    pub max_udp_messages_per_sec: Option<u32>,
    /// Messages held for each TCP/SCTP collector while it is slow or away.
    pub stream_backlog_messages: usize,
    pub stream_connect_timeout: Duration,
    pub stream_max_backoff: Duration,
    /// CA, server name and client certificate for `tls://` collectors.
    pub tls: crate::tls::TlsSettings,
    /// Records held for each destination while it cannot take them (live only).
    pub backlog_records: usize,
    /// Wait for a UDP destination's pace instead of queueing (reading files: lossless, the
    /// reader slows down). Live capture queues and never waits.
    pub wait_for_pace: bool,
}

impl Default for ExporterConfig {
    fn default() -> Self {
        ExporterConfig {
            encoder: EncoderConfig::default(),
            max_udp_messages_per_sec: None,
            stream_backlog_messages: 65_536,
            stream_connect_timeout: Duration::from_secs(3),
            stream_max_backoff: Duration::from_secs(30),
            tls: crate::tls::TlsSettings::default(),
            backlog_records: 262_144,
            wait_for_pace: true,
        }
    }
}

/// Why an exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error("{0}")]
    Config(#[from] crate::encoder::ConfigError),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{url}: {source}")]
    Open {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

/// What one destination received and lost.
#[derive(Clone, Debug, Default)]
pub struct DestinationReport {
    pub url: String,
    pub encoder: EncoderStats,
    pub messages_sent: u64,
    pub octets_sent: u64,
    /// Flow records in the messages sent.
    pub records_sent: u64,
    pub messages_lost: u64,
    /// Flows (with packets and octets) that did not reach this destination.
    pub not_sent: FlowTotals,
    /// TCP/SCTP connections made; IPFIX files written.
    pub sessions: u64,
    /// NetFlow v5: IPv6 flows it cannot carry, and clamped counters.
    pub netflow: NetflowLosses,
    /// Records the destination's backlog dropped for lack of room (or left at the end), by
    /// [`Priority`] (index = priority); part of `not_sent`.
    pub backlog_dropped: [FlowTotals; 3],
    /// The most records its backlog held at once.
    pub backlog_peak: usize,
    /// Its spool, when its URL named one.
    pub spool: Option<SpoolStats>,
}

enum Encoder {
    Ipfix(MessageEncoder),
    V9(V9Encoder),
    V5(V5Encoder),
}

enum Output {
    /// With the spool that keeps a copy of every message, if the URL named one.
    Udp(UdpSender, Pacer, Option<ArchiveWriter>),
    Stream(StreamSender),
    File(FileSender),
}

struct Sink {
    url: String,
    encoder: Encoder,
    output: Output,
    backlog: Backlog,
}

/// Encodes one record for one destination and sends what it completes. `wait`: the UDP pace
/// may sleep (files); otherwise it only counts.
fn encode(s: &mut Sink, rec: &FlowRecord, now_secs: u32, log: &Log, wait: bool) {
    let (url, out) = (&s.url, &mut s.output);
    let emit = |m: Message<'_>| out.send(url, m, now_secs, log, wait);
    match &mut s.encoder {
        Encoder::Ipfix(e) => e.push(rec, now_secs, emit),
        Encoder::V9(e) => e.push(rec, now_secs, emit),
        Encoder::V5(e) => e.push(rec, now_secs, emit),
    }
}

/// Sends a destination's partly filled message (and due template refreshes); flushes a file.
fn flush_sink(s: &mut Sink, now_secs: u32, log: &Log, wait: bool) {
    let (url, out) = (&s.url, &mut s.output);
    let emit = |m: Message<'_>| out.send(url, m, now_secs, log, wait);
    match &mut s.encoder {
        Encoder::Ipfix(e) => e.flush(now_secs, emit),
        Encoder::V9(e) => e.flush(now_secs, emit),
        Encoder::V5(e) => e.flush(now_secs, emit),
    }
    if let Output::File(f) = &mut s.output {
        if let Some(e) = f.flush(now_secs as u64) {
            log(&format!(
                "{url}: {e}; messages are counted as lost until it recovers"
            ));
        }
    }
}

/// Ends a destination's transport: streams get `drain` to take what is queued, files close.
fn close_output(s: &mut Sink, drain: Duration, log: &Log) {
    match &mut s.output {
        Output::Stream(t) => {
            t.finish(drain);
        }
        Output::File(f) => {
            if let Some(e) = f.close() {
                log(&format!("{}: {e}", s.url));
            }
        }
        Output::Udp(_, _, archive) => {
            if let Some(a) = archive {
                a.finish();
            }
        }
    }
}

/// Sends every flow record to every destination.
pub struct Exporter {
    sinks: Vec<Sink>,
    log: Log,
    /// For destinations added later.
    cfg: ExporterConfig,
    namer: Box<dyn Fn() -> Namer + Send>,
    tls_client: Option<std::sync::Arc<crate::tls::TlsClient>>,
    /// Reports of destinations removed while running.
    retired: Vec<DestinationReport>,
}

impl Output {
    fn send(&mut self, url: &str, m: Message<'_>, now_secs: u32, log: &Log, wait: bool) {
        let err = match self {
            Output::Udp(s, pacer, archive) => {
                if wait {
                    pacer.wait();
                } else {
                    pacer.spend(Instant::now());
                }
                if let Some(a) = archive {
                    a.keep(m.bytes, m.flows, m.templates);
                }
                s.send(&m)
            }
            Output::Stream(s) => {
                s.send(&m);
                None
            }
            Output::File(f) => f.send(&m, now_secs as u64),
        };
        if let Some(e) = err {
            log(&format!(
                "{url}: {e}; messages are counted as lost until it recovers"
            ));
        }
    }

    /// Whether a record may be encoded for this output now without waiting or losing it.
    fn ready(&self, now: Instant) -> bool {
        match self {
            Output::Udp(_, pacer, _) => pacer.ready(now),
            Output::Stream(s) => s.has_room(),
            Output::File(_) => true,
        }
    }

    /// How long until [`Self::ready`], at most a guess for a stream (its I/O thread decides).
    fn until_ready(&self, now: Instant) -> Duration {
        match self {
            Output::Udp(_, pacer, _) => pacer.until_ready(now),
            Output::Stream(_) => Duration::from_millis(10),
            Output::File(_) => Duration::ZERO,
        }
    }
}

impl Exporter {
    /// Opens every destination. `namer` names rotated IPFIX files.
    pub fn new(
        cfg: &ExporterConfig,
        destinations: &[Destination],
        namer: impl Fn() -> Namer + Send + 'static,
        log: Log,
    ) -> Result<Exporter, ExporterError> {
        let mut e = Exporter {
            sinks: Vec::new(),
            log,
            cfg: cfg.clone(),
            namer: Box::new(namer),
            tls_client: None,
            retired: Vec::new(),
        };
        for d in destinations {
            e.add(d)?;
        }
        Ok(e)
    }

    /// Opens one more destination (a reload added it): it starts with its own templates and
    /// sequence numbers, and gets every record from now on.
    pub fn add(&mut self, d: &Destination) -> Result<(), ExporterError> {
        let cfg = &self.cfg;
        let url = d.to_string();
        let open = |source| ExporterError::Open {
            url: url.clone(),
            source,
        };
        let udp = |a| UdpSender::connect(a).map_err(open);
        let pacer = || Pacer::new(d.rate.or(cfg.max_udp_messages_per_sec));
        // The destination's spool, opened now so a directory that cannot be used fails at
        // start, naming it.
        let spool = |archive: bool| -> Result<Option<Spool>, ExporterError> {
            d.spool
                .as_ref()
                .map(|spec| Spool::open(spec.clone(), spec.dir_for(&url), archive))
                .transpose()
                .map_err(open)
        };
        let archive = |prelude: crate::encoder::TemplatePrelude| -> Result<Option<ArchiveWriter>, ExporterError> {
            spool(true)?
                .map(|sp| ArchiveWriter::start(sp, prelude, self.log.clone()))
                .transpose()
                .map_err(open)
        };
        let e = &cfg.encoder;
        let session_cfg = EncoderConfig {
            inline_templates: false,
            ..cfg.encoder.clone()
        };
        let (encoder, output) = match &d.target {
            Target::Udp(a) => {
                let enc = MessageEncoder::new(e.clone())?;
                let kept = archive(enc.template_prelude())?;
                (Encoder::Ipfix(enc), Output::Udp(udp(*a)?, pacer(), kept))
            }
            Target::NetflowV9(a) => (
                Encoder::V9(V9Encoder::new(
                    e.observation_domain,
                    e.mtu,
                    e.template_refresh_secs,
                    e.template_refresh_messages,
                    e.active_timeout_secs,
                )?),
                Output::Udp(udp(*a)?, pacer(), None),
            ),
            Target::NetflowV5(a) => (
                Encoder::V5(V5Encoder::new(
                    u8::try_from(e.observation_domain).map_err(|_| {
                        ConfigError::EngineIdTooLarge {
                            domain: e.observation_domain,
                        }
                    })?,
                    e.sampling,
                    e.active_timeout_secs,
                )),
                Output::Udp(udp(*a)?, pacer(), None),
            ),
            Target::Tcp(a) | Target::Sctp(a) | Target::Tls { addr: a, .. } => {
                let enc = MessageEncoder::new(session_cfg.clone())?;
                let (protocol, tls) = match &d.target {
                    Target::Tcp(_) => (StreamProtocol::Tcp, None),
                    Target::Sctp(_) => (StreamProtocol::Sctp, None),
                    Target::Tls { host, .. } => {
                        // Certificates and keys are read once, for every tls:// collector.
                        if self.tls_client.is_none() {
                            self.tls_client =
                                Some(std::sync::Arc::new(crate::tls::TlsClient::new(&cfg.tls)?));
                        }
                        (
                            StreamProtocol::Tls,
                            Some(crate::stream::TlsTarget {
                                client: self.tls_client.clone().expect("built above"),
                                host: host.clone(),
                            }),
                        )
                    }
                    _ => unreachable!(),
                };
                let sc = StreamConfig {
                    addr: *a,
                    protocol,
                    backlog_messages: cfg.stream_backlog_messages,
                    connect_timeout: cfg.stream_connect_timeout,
                    max_backoff: cfg.stream_max_backoff,
                    tls,
                };
                let s = StreamSender::start(
                    sc,
                    enc.template_prelude(),
                    spool(false)?,
                    self.log.clone(),
                )
                .map_err(open)?;
                (Encoder::Ipfix(enc), Output::Stream(s))
            }
            Target::File(spec) => {
                let enc = MessageEncoder::new(session_cfg.clone())?;
                let f = FileSender::new(spec.clone(), enc.template_prelude(), (self.namer)())
                    .map_err(open)?;
                (Encoder::Ipfix(enc), Output::File(f))
            }
        };
        self.sinks.push(Sink {
            url,
            encoder,
            output,
            backlog: Backlog::new(cfg.backlog_records),
        });
        Ok(())
    }

    /// Closes the destination `url` (a reload removed it): what it holds is sent (streams get
    /// `drain` to take it), and its report joins those [`Exporter::finish`] returns.
    pub fn remove(&mut self, url: &str, now_secs: u32, drain: Duration) -> bool {
        let Some(i) = self.sinks.iter().position(|s| s.url == url) else {
            return false;
        };
        self.drain_backlog(i, now_secs, drain);
        flush_sink(
            &mut self.sinks[i],
            now_secs,
            &self.log,
            self.cfg.wait_for_pace,
        );
        close_output(&mut self.sinks[i], drain, &self.log);
        let report = self.report_of(i);
        self.sinks.remove(i);
        self.retired.push(report);
        true
    }

    /// Changes the sampling the IPFIX encoders report (a reload changed it in the kernel).
    pub fn set_sampling(&mut self, sampling: Option<crate::options::Sampling>) {
        self.cfg.encoder.sampling = sampling;
        for s in &mut self.sinks {
            match &mut s.encoder {
                Encoder::Ipfix(e) => e.set_sampling(sampling),
                Encoder::V5(e) => e.set_sampling(sampling),
                Encoder::V9(_) => {}
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Encodes one record for every destination; live, a destination that cannot take it
    /// now gets it in its backlog (see the module doc).
    pub fn push(&mut self, rec: &FlowRecord, now_secs: u32) {
        let wait = self.cfg.wait_for_pace;
        // Only a live exporter asks whether a destination is ready (a clock read per record).
        let now = (!wait).then(Instant::now);
        for s in &mut self.sinks {
            let waits = now.is_some_and(|n| !s.backlog.is_empty() || !s.output.ready(n));
            if waits {
                s.backlog.push(rec.clone());
                continue;
            }
            encode(s, rec, now_secs, &self.log, wait);
        }
    }

    /// Sends from each destination's backlog what its pace allows now. Returns how long until
    /// a destination with records waiting can take the next one (`None`: nothing waits).
    pub fn service(&mut self, now_secs: u32) -> Option<Duration> {
        let now = Instant::now();
        let mut next: Option<Duration> = None;
        for s in &mut self.sinks {
            while !s.backlog.is_empty() && s.output.ready(now) {
                let rec = s.backlog.pop().expect("not empty");
                encode(s, &rec, now_secs, &self.log, false);
            }
            if !s.backlog.is_empty() {
                let d = s.output.until_ready(now);
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        next
    }

    /// Records waiting in the destinations' backlogs.
    pub fn backlog_len(&self) -> usize {
        self.sinks.iter().map(|s| s.backlog.len()).sum()
    }

    /// Sends destination `i`'s backlog, waiting for its pace for at most `drain`; what is left
    /// then is dropped and counted.
    fn drain_backlog(&mut self, i: usize, now_secs: u32, drain: Duration) {
        let until = Instant::now() + drain;
        let s = &mut self.sinks[i];
        while !s.backlog.is_empty() && Instant::now() < until {
            let now = Instant::now();
            if s.output.ready(now) {
                let rec = s.backlog.pop().expect("not empty");
                encode(s, &rec, now_secs, &self.log, false);
            } else {
                std::thread::sleep(s.output.until_ready(now).clamp(
                    Duration::from_micros(100),
                    until.saturating_duration_since(now),
                ));
            }
        }
        s.backlog.abandon();
    }

    /// Sends partly filled messages (and due template refreshes); flushes files.
    pub fn flush(&mut self, now_secs: u32) {
        for s in &mut self.sinks {
            flush_sink(s, now_secs, &self.log, self.cfg.wait_for_pace);
        }
    }

    /// Sends the statistics options records to every IPFIX destination. `upstream` counts the
    /// records lost before the exporter (they never reached any destination).
    pub fn push_statistics(
        &mut self,
        now_secs: u32,
        metering: MeteringCounts,
        upstream: FlowTotals,
    ) {
        for i in 0..self.sinks.len() {
            let report = self.report_of(i);
            let mut not_sent = upstream;
            not_sent += report.not_sent;
            let sent = Sent {
                messages: report.messages_sent,
                records: report.records_sent,
                octets: report.octets_sent,
            };
            let s = &mut self.sinks[i];
            let (url, out, log) = (&s.url, &mut s.output, &self.log);
            if let Encoder::Ipfix(e) = &mut s.encoder {
                let stats = Statistics {
                    metering,
                    sent,
                    not_sent,
                };
                e.push_statistics(now_secs, &stats, |m| out.send(url, m, now_secs, log, false));
            }
        }
    }

    fn report_of(&self, i: usize) -> DestinationReport {
        let s = &self.sinks[i];
        let mut r = DestinationReport {
            url: s.url.clone(),
            encoder: match &s.encoder {
                Encoder::Ipfix(e) => e.stats(),
                Encoder::V9(e) => e.stats(),
                Encoder::V5(e) => e.stats(),
            },
            ..Default::default()
        };
        match &s.encoder {
            Encoder::V5(e) => r.netflow = e.losses(),
            Encoder::V9(e) => r.netflow = e.losses(),
            Encoder::Ipfix(_) => {}
        }
        r.backlog_dropped = s.backlog.dropped();
        r.backlog_peak = s.backlog.peak();
        match &s.output {
            Output::Udp(u, _, archive) => {
                let st = u.stats();
                r.messages_sent = st.messages_sent;
                r.octets_sent = st.octets_sent;
                r.records_sent = st.records_sent;
                r.messages_lost = st.messages_lost;
                r.not_sent = st.not_sent;
                // The archive's drops are not delivery losses: the messages went out.
                r.spool = archive.as_ref().map(|a| a.stats());
            }
            Output::Stream(t) => {
                let st = t.stats();
                r.messages_sent = st.messages_sent;
                r.octets_sent = st.octets_sent;
                r.records_sent = st.records_sent;
                r.messages_lost = st.messages_lost;
                r.not_sent = st.not_sent;
                r.sessions = st.sessions;
                r.spool = st.spool;
            }
            Output::File(f) => {
                let st = f.stats();
                r.messages_sent = st.messages_written;
                r.octets_sent = st.octets_written;
                r.records_sent = st.records_written;
                r.messages_lost = st.messages_lost;
                r.not_sent = st.not_sent;
                r.sessions = st.files;
            }
        }
        for d in r.backlog_dropped {
            r.not_sent += d;
        }
        r
    }

    /// Every destination's report so far.
    pub fn reports(&self) -> Vec<DestinationReport> {
        (0..self.sinks.len()).map(|i| self.report_of(i)).collect()
    }

    /// Flushes everything, gives stream collectors up to `drain` to take what is queued, closes
    /// files, and returns the final reports.
    pub fn finish(mut self, now_secs: u32, drain: Duration) -> Vec<DestinationReport> {
        for i in 0..self.sinks.len() {
            self.drain_backlog(i, now_secs, drain);
        }
        self.flush(now_secs);
        for s in &mut self.sinks {
            close_output(s, drain, &self.log);
        }
        let mut reports = std::mem::take(&mut self.retired);
        reports.extend(self.reports());
        reports
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::tests::sample;
    use crate::TimePrecision;

    /// Data records per template ID in the datagrams `rx` received.
    fn records_by_template(rx: &std::net::UdpSocket) -> std::collections::BTreeMap<u16, usize> {
        let mut by = std::collections::BTreeMap::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = rx.recv(&mut buf) {
            let mut pos = crate::MESSAGE_HEADER_LEN;
            while pos + 4 <= n {
                let id = u16::from_be_bytes([buf[pos], buf[pos + 1]]);
                let len = u16::from_be_bytes([buf[pos + 2], buf[pos + 3]]) as usize;
                let per = match id {
                    256 => Some(77),
                    257 => Some(101),
                    _ => None,
                };
                if let Some(per) = per {
                    *by.entry(id).or_default() += (len - 4) / per;
                }
                pos += len;
            }
        }
        by
    }

    #[test]
    fn live_a_paced_collector_gets_conversations_first_and_the_exporter_never_waits() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let cfg = ExporterConfig {
            // 200 messages a second, 100 records of room.
            max_udp_messages_per_sec: Some(200),
            backlog_records: 100,
            wait_for_pace: false,
            ..ExporterConfig::default()
        };
        let log: Log = std::sync::Arc::new(|_: &str| {});
        let mut e = Exporter::new(
            &cfg,
            &[Target::Udp(rx.local_addr().unwrap()).into()],
            || Box::new(|p: &std::path::Path, _| p.to_path_buf()),
            log,
        )
        .unwrap();
        // A flood's one-packet flows (IPv4) with 50 conversations (IPv6) among them, far
        // faster than 200 messages a second carry.
        let single = FlowRecord {
            packets: 1,
            ..sample(false, TimePrecision::Micros)
        };
        let conversation = sample(true, TimePrecision::Micros);
        let t = Instant::now();
        for i in 0..5000 {
            e.push(&single, 1);
            if i % 100 == 0 {
                e.push(&conversation, 1);
            }
        }
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        assert!(e.backlog_len() <= 100);
        while let Some(d) = e.service(1) {
            std::thread::sleep(d.max(Duration::from_micros(100)));
        }
        let reports = e.finish(1, Duration::from_secs(1));
        let got = records_by_template(&rx);
        let r = &reports[0];
        assert_eq!(
            got.get(&257),
            Some(&50),
            "every conversation arrived: {got:?} {r:?}"
        );
        let singles_sent = *got.get(&256).unwrap_or(&0) as u64;
        assert_eq!(r.backlog_dropped[0].flows, 0);
        assert_eq!(r.backlog_dropped[2].flows, 5000 - singles_sent, "{r:?}");
        assert_eq!(r.not_sent.flows, 5000 - singles_sent);
        assert_eq!(r.records_sent, 50 + singles_sent);
        assert_eq!(r.backlog_peak, 100);
    }
}
