//! `probe spool info|replay`: what a destination's spool holds, and its messages sent again
//! by hand: the minutes a UDP collector missed, or what a stream collector never got, into an
//! IPFIX file (nfdump, pmacct, Wireshark) or to any collector.
//!
//! Both work on the directory alone and only read it, so they can run beside the probe that
//! writes it, or on a copy. Each run in the spool keeps its own templates (their late IDs and
//! sequence numbers are that run's): every run replayed starts with its templates, and over a
//! stream transport each run is a session of its own, as the probe itself replays them.

use anyhow::{bail, Context, Result};
use ipfix_export::encoder::{messages_in, TemplatePrelude};
use ipfix_export::spool::{self, EntryKind, Replayed, Tally};
use ipfix_export::{Message, Target};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A `probe spool` command (`cli` builds it from its options).
#[derive(Clone, Debug)]
pub enum SpoolCmd {
    Info {
        spool: PathBuf,
        json: bool,
    },
    Replay {
        spool: PathBuf,
        /// Messages exported at or after this time (nanoseconds since the epoch).
        from: Option<u64>,
        /// ... and at or before this one.
        to: Option<u64>,
        to_file: Option<PathBuf>,
        to_collector: Option<Target>,
        /// Messages per second to a UDP collector.
        rate: u32,
        /// Also what the collector already acknowledged (a stream destination's spool keeps
        /// delivered messages until their segment is full; a UDP one keeps everything).
        all: bool,
        /// For a `tls://` collector.
        tls: Box<ipfix_export::TlsSettings>,
    },
}

pub fn run(cmd: &SpoolCmd) -> Result<()> {
    match cmd {
        SpoolCmd::Info { spool, json } => {
            let dir = resolve(spool)?;
            let info = info(&dir)?;
            if *json {
                println!("{}", info_json(&dir, &info));
            } else {
                print!("{}", info_text(&dir, &info));
            }
            Ok(())
        }
        SpoolCmd::Replay {
            spool,
            from,
            to,
            to_file,
            to_collector,
            rate,
            all,
            tls,
        } => {
            let dir = resolve(spool)?;
            let window = Window {
                from: from.map_or(0, |t| t / 1_000_000_000),
                to: to.map_or(u64::MAX, |t| t.div_ceil(1_000_000_000)),
            };
            let mut out: Box<dyn Out> = match (to_file, to_collector) {
                (Some(f), None) => Box::new(FileOut::create(f)?),
                (None, Some(t)) => collector_out(t, *rate, tls)?,
                _ => bail!("name where the messages go: -w FILE or --ipfix URL"),
            };
            let r = replay(&dir, window, !*all, out.as_mut())?;
            out.finish()?;
            eprintln!(
                "probe: {} data messages with {} flow records replayed from {} ({} runs){}",
                r.data.messages,
                r.data.flows.flows,
                dir.display(),
                r.runs,
                if r.skipped_delivered > 0 {
                    format!(
                        "; {} messages the collector had acknowledged were left out (--all includes them)",
                        r.skipped_delivered
                    )
                } else {
                    String::new()
                }
            );
            Ok(())
        }
    }
}

/// The destination's spool directory: `dir` itself, or the one destination's spool in it.
pub fn resolve(dir: &Path) -> Result<PathBuf> {
    let is_spool = |d: &Path| d.join("ack").exists() || d.join("lock").exists();
    if is_spool(dir) {
        return Ok(dir.to_path_buf());
    }
    let subs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("--spool {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_spool(p))
        .collect();
    match subs.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "--spool {}: no spool here (the spool= directory of a collector URL, or the destination's directory in it)",
            dir.display()
        ),
        many => bail!(
            "--spool {} holds the spools of several destinations: name one of {}",
            dir.display(),
            many.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// What a spool holds.
#[derive(Debug, Default)]
pub struct Info {
    pub segments: usize,
    pub bytes: u64,
    pub runs: Vec<u64>,
    pub data: Tally,
    /// Not yet acknowledged by a stream collector (after the saved position).
    pub pending: Tally,
    /// Export times of the first and last data message (UNIX seconds).
    pub first: Option<u32>,
    pub last: Option<u32>,
}

pub fn info(dir: &Path) -> Result<Info> {
    let ack = spool::saved_ack(dir);
    let mut i = Info::default();
    i.segments = spool::read_all(dir, |e| {
        if i.runs.last() != Some(&e.run) {
            i.runs.push(e.run);
        }
        if e.kind != EntryKind::Data {
            return;
        }
        i.data.add(e.flows);
        if ack.is_none_or(|a| e.start >= a) {
            i.pending.add(e.flows);
        }
        let t = export_time(&e.bytes);
        i.first = Some(i.first.map_or(t, |f| f.min(t)));
        i.last = Some(i.last.map_or(t, |l| l.max(t)));
    })
    .with_context(|| format!("--spool {}", dir.display()))?;
    i.bytes = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    Ok(i)
}

fn export_time(msg: &[u8]) -> u32 {
    msg.get(4..8)
        .map_or(0, |b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
}

fn utc(secs: Option<u32>) -> String {
    secs.map_or("-".into(), |s| {
        pcap_ring::format_utc(s as u64 * 1_000_000_000)
    })
}

fn info_text(dir: &Path, i: &Info) -> String {
    format!(
        "spool {}: {} segments, {} bytes, {} runs\n  {} data messages, {} flow records, exported {} .. {}\n  not yet acknowledged by the collector: {} messages, {} flow records\n",
        dir.display(),
        i.segments,
        i.bytes,
        i.runs.len(),
        i.data.messages,
        i.data.flows.flows,
        utc(i.first),
        utc(i.last),
        i.pending.messages,
        i.pending.flows.flows
    )
}

fn info_json(dir: &Path, i: &Info) -> serde_json::Value {
    serde_json::json!({
        "dir": dir.display().to_string(),
        "segments": i.segments,
        "bytes": i.bytes,
        "runs": i.runs.len(),
        "messages": i.data.messages,
        "flows": i.data.flows.flows,
        "packets": i.data.flows.packets,
        "octets": i.data.flows.octets,
        "pending_messages": i.pending.messages,
        "pending_flows": i.pending.flows.flows,
        "first_export": i.first,
        "last_export": i.last,
    })
}

/// Export times (UNIX seconds, inclusive) of the messages to replay.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub from: u64,
    pub to: u64,
}

/// Where replayed messages go: a run begins with its templates, then its messages.
trait Out {
    fn begin_run(&mut self, templates: &mut TemplatePrelude, first: &[u8]) -> Result<()>;
    fn message(
        &mut self,
        bytes: &[u8],
        flows: ipfix_export::FlowTotals,
        templates: bool,
    ) -> Result<()>;
    fn finish(&mut self) -> Result<()>;
}

/// What a replay sent.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub data: Tally,
    pub runs: usize,
    pub skipped_delivered: u64,
}

fn replay(
    dir: &Path,
    w: Window,
    undelivered_only: bool,
    out: &mut dyn Out,
) -> Result<ReplayReport> {
    let ack = spool::saved_ack(dir).filter(|_| undelivered_only);
    let mut r = ReplayReport::default();
    // The run being read, its templates so far, and whether its messages are being written.
    let mut run: Option<u64> = None;
    let mut templates = TemplatePrelude::from_bytes(Vec::new());
    let mut writing = false;
    let mut failed: Option<anyhow::Error> = None;
    spool::read_all(dir, |e: Replayed| {
        if failed.is_some() {
            return;
        }
        if run != Some(e.run) {
            run = Some(e.run);
            templates = TemplatePrelude::from_bytes(Vec::new());
            writing = false;
        }
        let res = match e.kind {
            EntryKind::Prelude => {
                for m in messages_in(&e.bytes) {
                    templates.learn(m);
                }
                Ok(())
            }
            EntryKind::Templates => {
                let new = templates.learn(&e.bytes);
                if writing && new {
                    out.message(&e.bytes, e.flows, true)
                } else {
                    Ok(())
                }
            }
            EntryKind::Data => {
                let t = export_time(&e.bytes) as u64;
                if t < w.from || t > w.to {
                    Ok(())
                } else if ack.is_some_and(|a| e.start < a) {
                    r.skipped_delivered += 1;
                    Ok(())
                } else {
                    let begin = if writing {
                        Ok(())
                    } else {
                        writing = true;
                        r.runs += 1;
                        out.begin_run(&mut templates, &e.bytes)
                    };
                    r.data.add(e.flows);
                    begin.and_then(|_| out.message(&e.bytes, e.flows, false))
                }
            }
        };
        if let Err(err) = res {
            failed = Some(err);
        }
    })
    .with_context(|| format!("--spool {}", dir.display()))?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(r)
}

/// An IPFIX file (RFC 5655): each run's templates, then its messages.
struct FileOut {
    path: PathBuf,
    w: std::io::BufWriter<std::fs::File>,
}

impl FileOut {
    fn create(path: &Path) -> Result<FileOut> {
        let f = std::fs::File::create(path).with_context(|| format!("-w {}", path.display()))?;
        Ok(FileOut {
            path: path.to_path_buf(),
            w: std::io::BufWriter::new(f),
        })
    }
}

impl Out for FileOut {
    fn begin_run(&mut self, templates: &mut TemplatePrelude, first: &[u8]) -> Result<()> {
        let p = templates.stamp_for(first).to_vec();
        self.w
            .write_all(&p)
            .with_context(|| format!("-w {}", self.path.display()))
    }
    fn message(&mut self, bytes: &[u8], _: ipfix_export::FlowTotals, _: bool) -> Result<()> {
        self.w
            .write_all(bytes)
            .with_context(|| format!("-w {}", self.path.display()))
    }
    fn finish(&mut self) -> Result<()> {
        self.w
            .flush()
            .with_context(|| format!("-w {}", self.path.display()))
    }
}

fn collector_out(t: &Target, rate: u32, tls: &ipfix_export::TlsSettings) -> Result<Box<dyn Out>> {
    use ipfix_export::stream::{StreamConfig, StreamProtocol, TlsTarget};
    let stream = |addr, protocol, tls: Option<TlsTarget>| -> Result<Box<dyn Out>> {
        Ok(Box::new(StreamOut {
            cfg: StreamConfig {
                addr,
                protocol,
                backlog_messages: 1 << 20,
                connect_timeout: Duration::from_secs(3),
                max_backoff: Duration::from_secs(2),
                tls,
            },
            sender: None,
            url: t.to_string(),
        }))
    };
    match t {
        Target::Udp(a) => Ok(Box::new(UdpOut {
            url: t.to_string(),
            udp: ipfix_export::UdpSender::connect(*a).with_context(|| format!("--ipfix {t}"))?,
            pacer: ipfix_export::Pacer::new(Some(rate)),
            templates: Vec::new(),
            since_templates: 0,
        })),
        Target::Tcp(a) => stream(*a, StreamProtocol::Tcp, None),
        Target::Sctp(a) => stream(*a, StreamProtocol::Sctp, None),
        Target::Tls { addr, host } => {
            let client = ipfix_export::TlsClient::new(tls).with_context(|| format!("--ipfix {t}"))?;
            stream(
                *addr,
                StreamProtocol::Tls,
                Some(TlsTarget {
                    client: std::sync::Arc::new(client),
                    host: host.clone(),
                }),
            )
        }
        _ => bail!("--ipfix {t}: replay goes to udp://, tcp://, tls:// or sctp:// collectors, or to a file with -w"),
    }
}

/// A UDP collector: the templates before each run and again every 100 messages (RFC 7011
/// §8.4), at the given pace.
struct UdpOut {
    url: String,
    udp: ipfix_export::UdpSender,
    pacer: ipfix_export::Pacer,
    templates: Vec<u8>,
    since_templates: u32,
}

impl UdpOut {
    /// Sends one message at the pace; a refused one is counted by the sender ([`Out::finish`]
    /// reports it).
    fn send(&mut self, bytes: &[u8], flows: ipfix_export::FlowTotals, templates: bool) {
        self.pacer.wait();
        self.udp.send(&Message {
            bytes,
            data_records: flows.flows as u32,
            flows,
            templates,
        });
    }
}

impl Out for UdpOut {
    fn begin_run(&mut self, templates: &mut TemplatePrelude, first: &[u8]) -> Result<()> {
        self.templates = templates.stamp_for(first).to_vec();
        self.since_templates = u32::MAX;
        Ok(())
    }
    fn message(&mut self, bytes: &[u8], flows: ipfix_export::FlowTotals, t: bool) -> Result<()> {
        if t {
            self.templates.extend_from_slice(bytes);
        }
        if self.since_templates >= 100 {
            let all = std::mem::take(&mut self.templates);
            for m in messages_in(&all) {
                self.send(m, ipfix_export::FlowTotals::default(), true);
            }
            self.templates = all;
            self.since_templates = 0;
        }
        self.since_templates += 1;
        self.send(bytes, flows, t);
        Ok(())
    }
    fn finish(&mut self) -> Result<()> {
        let st = self.udp.stats();
        if st.messages_lost > 0 {
            bail!(
                "--ipfix {}: {} messages ({} flow records) could not be sent",
                self.url,
                st.messages_lost,
                st.not_sent.flows
            );
        }
        Ok(())
    }
}

/// A TCP or SCTP collector: one session per run, each delivered before the next starts.
struct StreamOut {
    cfg: ipfix_export::stream::StreamConfig,
    sender: Option<ipfix_export::stream::StreamSender>,
    url: String,
}

impl StreamOut {
    fn end_session(&mut self) -> Result<()> {
        if let Some(mut s) = self.sender.take() {
            let st = s.finish(Duration::from_secs(30));
            if st.messages_lost > 0 {
                bail!(
                    "--ipfix {}: {} messages ({} flow records) were not delivered",
                    self.url,
                    st.messages_lost,
                    st.not_sent.flows
                );
            }
        }
        Ok(())
    }
}

impl Out for StreamOut {
    fn begin_run(&mut self, templates: &mut TemplatePrelude, _: &[u8]) -> Result<()> {
        self.end_session()?;
        let log: ipfix_export::stream::Log = std::sync::Arc::new(|l: &str| eprintln!("probe: {l}"));
        self.sender = Some(
            ipfix_export::stream::StreamSender::start(
                self.cfg.clone(),
                templates.clone(),
                None,
                log,
            )
            .with_context(|| format!("--ipfix {}", self.url))?,
        );
        Ok(())
    }
    fn message(&mut self, bytes: &[u8], flows: ipfix_export::FlowTotals, t: bool) -> Result<()> {
        let s = self.sender.as_mut().expect("a run began");
        // The backlog fills only while the collector does not take messages: give it as long
        // as a session's end does, then say so rather than wait for ever.
        let since = std::time::Instant::now();
        while !s.has_room() {
            if since.elapsed() > Duration::from_secs(30) {
                bail!(
                    "--ipfix {}: the collector took no message for 30 s; {} were delivered",
                    self.url,
                    s.stats().messages_sent
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        s.send(&Message {
            bytes,
            data_records: flows.flows as u32,
            flows,
            templates: t,
        });
        Ok(())
    }
    fn finish(&mut self) -> Result<()> {
        self.end_session()
    }
}
