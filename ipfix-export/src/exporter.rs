//! The exporting process: every record goes to every destination, each with its own encoder
//! (its own sequence numbers and template schedule) and its own transport.
//!
//! A destination that fails never holds up the others: UDP and files report a loss per
//! message, stream transports queue in a bounded backlog owned by their I/O thread. Each
//! destination's losses are counted with the flows, packets and octets they carried, and told
//! to that collector in the exporting-process reliability record.

use crate::destination::Destination;
use crate::encoder::{
    ConfigError, EncoderConfig, EncoderStats, Message, MessageEncoder, Sent, Statistics,
};
use crate::file::{FileSender, Namer};
use crate::netflow::{NetflowLosses, V5Encoder, V9Encoder};
use crate::options::{FlowTotals, MeteringCounts};
use crate::record::FlowRecord;
use crate::stream::{Log, StreamConfig, StreamProtocol, StreamSender};
use crate::udp::{Pacer, UdpSender};
use std::time::Duration;

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
}

enum Encoder {
    Ipfix(MessageEncoder),
    V9(V9Encoder),
    V5(V5Encoder),
}

enum Output {
    Udp(UdpSender, Pacer),
    Stream(StreamSender),
    File(FileSender),
}

struct Sink {
    url: String,
    encoder: Encoder,
    output: Output,
}

/// Sends a destination's partly filled message (and due template refreshes); flushes a file.
fn flush_sink(s: &mut Sink, now_secs: u32, log: &Log) {
    let (url, out) = (&s.url, &mut s.output);
    let emit = |m: Message<'_>| out.send(url, m, now_secs, log);
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
        Output::Udp(..) => {}
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
    fn send(&mut self, url: &str, m: Message<'_>, now_secs: u32, log: &Log) {
        let err = match self {
            Output::Udp(s, pacer) => {
                pacer.wait();
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
        let pacer = || Pacer::new(cfg.max_udp_messages_per_sec);
        let e = &cfg.encoder;
        let session_cfg = EncoderConfig {
            inline_templates: false,
            ..cfg.encoder.clone()
        };
        let (encoder, output) = match d {
            Destination::Udp(a) => (
                Encoder::Ipfix(MessageEncoder::new(e.clone())?),
                Output::Udp(udp(*a)?, pacer()),
            ),
            Destination::NetflowV9(a) => (
                Encoder::V9(V9Encoder::new(
                    e.observation_domain,
                    e.mtu,
                    e.template_refresh_secs,
                    e.template_refresh_messages,
                    e.active_timeout_secs,
                )?),
                Output::Udp(udp(*a)?, pacer()),
            ),
            Destination::NetflowV5(a) => (
                Encoder::V5(V5Encoder::new(
                    u8::try_from(e.observation_domain).map_err(|_| {
                        ConfigError::EngineIdTooLarge {
                            domain: e.observation_domain,
                        }
                    })?,
                    e.sampling,
                    e.active_timeout_secs,
                )),
                Output::Udp(udp(*a)?, pacer()),
            ),
            Destination::Tcp(a) | Destination::Sctp(a) | Destination::Tls { addr: a, .. } => {
                let enc = MessageEncoder::new(session_cfg.clone())?;
                let (protocol, tls) = match d {
                    Destination::Tcp(_) => (StreamProtocol::Tcp, None),
                    Destination::Sctp(_) => (StreamProtocol::Sctp, None),
                    Destination::Tls { host, .. } => {
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
                let s = StreamSender::start(sc, enc.template_prelude(), self.log.clone())
                    .map_err(open)?;
                (Encoder::Ipfix(enc), Output::Stream(s))
            }
            Destination::File(spec) => {
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
        });
        Ok(())
    }

    /// Closes the destination `url` (a reload removed it): what it holds is sent (streams get
    /// `drain` to take it), and its report joins those [`Exporter::finish`] returns.
    pub fn remove(&mut self, url: &str, now_secs: u32, drain: Duration) -> bool {
        let Some(i) = self.sinks.iter().position(|s| s.url == url) else {
            return false;
        };
        flush_sink(&mut self.sinks[i], now_secs, &self.log);
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

    /// Encodes one record for every destination.
    pub fn push(&mut self, rec: &FlowRecord, now_secs: u32) {
        for s in &mut self.sinks {
            let (url, out, log) = (&s.url, &mut s.output, &self.log);
            let emit = |m: Message<'_>| out.send(url, m, now_secs, log);
            match &mut s.encoder {
                Encoder::Ipfix(e) => e.push(rec, now_secs, emit),
                Encoder::V9(e) => e.push(rec, now_secs, emit),
                Encoder::V5(e) => e.push(rec, now_secs, emit),
            }
        }
    }

    /// Sends partly filled messages (and due template refreshes); flushes files.
    pub fn flush(&mut self, now_secs: u32) {
        for s in &mut self.sinks {
            flush_sink(s, now_secs, &self.log);
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
                e.push_statistics(now_secs, &stats, |m| out.send(url, m, now_secs, log));
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
        match &s.output {
            Output::Udp(u, _) => {
                let st = u.stats();
                r.messages_sent = st.messages_sent;
                r.octets_sent = st.octets_sent;
                r.records_sent = st.records_sent;
                r.messages_lost = st.messages_lost;
                r.not_sent = st.not_sent;
            }
            Output::Stream(t) => {
                let st = t.stats();
                r.messages_sent = st.messages_sent;
                r.octets_sent = st.octets_sent;
                r.records_sent = st.records_sent;
                r.messages_lost = st.messages_lost;
                r.not_sent = st.not_sent;
                r.sessions = st.sessions;
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
        r
    }

    /// Every destination's report so far.
    pub fn reports(&self) -> Vec<DestinationReport> {
        (0..self.sinks.len()).map(|i| self.report_of(i)).collect()
    }

    /// Flushes everything, gives stream collectors up to `drain` to take what is queued, closes
    /// files, and returns the final reports.
    pub fn finish(mut self, now_secs: u32, drain: Duration) -> Vec<DestinationReport> {
        self.flush(now_secs);
        for s in &mut self.sinks {
            close_output(s, drain, &self.log);
        }
        let mut reports = std::mem::take(&mut self.retired);
        reports.extend(self.reports());
        reports
    }
}
