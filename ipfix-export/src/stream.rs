//! TCP and SCTP collectors: a connection owned by a background thread, so a slow, absent or
//! restarting collector never blocks the exporter (RFC 7011 §10.2, §10.4).
//!
//! - The exporter hands finished messages to a bounded backlog and never waits; what does not
//!   fit is dropped and counted with the flows, packets and octets it carried.
//! - The thread connects in the background and reconnects with exponential backoff. Every new
//!   connection is a new transport session: it starts with the template prelude.
//! - A message counts as sent once the peer's TCP acknowledged it (the socket's unacknowledged
//!   byte count, `SIOCOUTQ`, says which messages are still in flight). Messages in flight when a
//!   connection dies are sent again on the next one, so a collector restart loses nothing the
//!   backlog can hold. (Bytes the old collector acknowledged but never read are beyond our reach.)
//! - SCTP uses the kernel's one-to-one socket: each IPFIX message is one SCTP message (one
//!   `send`, so one DATA chunk below the path MTU; the template prelude too, message by
//!   message), all on stream 0, ordered and fully reliable: templates always arrive before the
//!   data that uses them, and partial reliability for data (RFC 7011 §10.2.4) is not used, since
//!   a record the association gave up on would be a silent loss. `SIOCOUTQ` means nothing for
//!   SCTP, so a message counts as sent once `SCTP_STATUS` shows no more unacknowledged or pending
//!   DATA chunks than were written after it. Where the kernel has no SCTP, opening the exporter
//!   fails with a message naming the missing support.

use crate::encoder::{Message, TemplatePrelude};
use crate::options::FlowTotals;
use crate::spool::{AppendError, EntryKind, Pos, Spool, SpoolStats};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The stream protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamProtocol {
    Tcp,
    Sctp,
    /// TLS over TCP (RFC 7011 §11).
    Tls,
}

impl StreamProtocol {
    pub fn scheme(self) -> &'static str {
        match self {
            StreamProtocol::Tcp => "tcp",
            StreamProtocol::Sctp => "sctp",
            StreamProtocol::Tls => "tls",
        }
    }
}

/// The TLS side of a `tls://` collector: the shared client configuration and the host named in
/// its URL (what the certificate must carry, unless the settings name another).
#[derive(Clone, Debug)]
pub struct TlsTarget {
    pub client: Arc<crate::tls::TlsClient>,
    pub host: String,
}

/// How one stream collector is reached.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    pub addr: SocketAddr,
    pub protocol: StreamProtocol,
    /// Most messages held while the collector is slow or away.
    pub backlog_messages: usize,
    pub connect_timeout: Duration,
    /// Reconnect attempts start 100 ms apart and double up to this.
    pub max_backoff: Duration,
    /// For [`StreamProtocol::Tls`].
    pub tls: Option<TlsTarget>,
}

/// Where the exporter's messages to a stream collector went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Connections established (each began a transport session with the templates).
    pub sessions: u64,
    /// Data messages acknowledged by the collector's transport.
    pub messages_sent: u64,
    pub octets_sent: u64,
    /// Flow records in the messages acknowledged.
    pub records_sent: u64,
    /// Messages dropped: the backlog was full, or they were still unsent at shutdown.
    pub messages_lost: u64,
    pub not_sent: FlowTotals,
    pub connected: bool,
    /// With a spool: what it took, replayed and dropped (its drops are in `messages_lost` and
    /// `not_sent` too).
    pub spool: Option<SpoolStats>,
}

/// Messages dropped and what they held, shared between the exporter and the I/O thread.
#[derive(Default)]
struct Shared {
    sessions: AtomicU64,
    messages_sent: AtomicU64,
    octets_sent: AtomicU64,
    records_sent: AtomicU64,
    messages_lost: AtomicU64,
    lost: Mutex<FlowTotals>,
    connected: AtomicBool,
    /// The last attempt to reach the collector failed (or its connection was lost): messages
    /// spooled now are replayed when it is back.
    away: AtomicBool,
    /// Set by [`StreamSender::finish`]: send what is queued until this deadline, then stop.
    closing: Mutex<Option<Instant>>,
    /// The spool's counts, as the I/O thread last published them.
    spool: Mutex<Option<SpoolStats>>,
}

impl Shared {
    fn lose(&self, flows: FlowTotals, messages: u64) {
        self.messages_lost.fetch_add(messages, Ordering::Relaxed);
        *self.lost.lock().unwrap_or_else(|e| e.into_inner()) += flows;
    }

    fn deadline(&self) -> Option<Instant> {
        *self.closing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Item {
    bytes: Vec<u8>,
    flows: FlowTotals,
    /// A template message (see [`Message::templates`]).
    templates: bool,
}

/// A stream collector: the exporter's side of the backlog.
pub struct StreamSender {
    cfg: StreamConfig,
    tx: Option<Sender<Item>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Logs one line; the exporter passes its own.
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

impl StreamSender {
    /// Starts the I/O thread. Fails at once only when the kernel cannot make such a socket at
    /// all (no SCTP support); an absent collector is retried in the background. With a
    /// `spool`, every message goes through it (see [`crate::spool`]): what the previous runs
    /// left is delivered first, each run in a session of its own.
    pub fn start(
        cfg: StreamConfig,
        prelude: TemplatePrelude,
        spool: Option<Spool>,
        log: Log,
    ) -> io::Result<Self> {
        drop(new_socket(cfg.addr, cfg.protocol)?);
        let (tx, rx) = crossbeam_channel::bounded(cfg.backlog_messages.max(1));
        let shared = Arc::new(Shared::default());
        if let Some(sp) = &spool {
            *shared.spool.lock().unwrap_or_else(|e| e.into_inner()) = Some(sp.stats());
            let earlier = sp.stats().from_earlier_runs;
            if earlier.messages > 0 {
                log(&format!(
                    "{}://{}: spool {} holds {} messages ({} flow records) from earlier runs; they go first",
                    cfg.protocol.scheme(),
                    cfg.addr,
                    sp.dir().display(),
                    earlier.messages,
                    earlier.flows.flows
                ));
            }
        }
        let io = Io {
            run: spool.as_ref().map_or(0, |s| s.run()),
            cfg: cfg.clone(),
            rx,
            prelude,
            shared: shared.clone(),
            log,
            retry: VecDeque::new(),
            spool,
            disk_failing_since: None,
            mem_in_flight: 0,
            published: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("{}-export", cfg.protocol.scheme()))
            .spawn(move || io.run())?;
        Ok(StreamSender {
            cfg,
            tx: Some(tx),
            shared,
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.cfg.protocol.scheme(), self.cfg.addr)
    }

    /// Whether the message backlog has room for a few more messages (a message and the
    /// statistics or templates that may follow it): while it has none, the exporter keeps
    /// records in its priority backlog rather than losing the next message here.
    pub fn has_room(&self) -> bool {
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.len() < self.cfg.backlog_messages.saturating_sub(3).max(1))
    }

    /// Queues one message; never waits. A full backlog drops it and counts what it held.
    pub fn send(&mut self, msg: &Message<'_>) {
        let item = Item {
            bytes: msg.bytes.to_vec(),
            flows: msg.flows,
            templates: msg.templates,
        };
        match self.tx.as_ref().map(|tx| tx.try_send(item)) {
            Some(Ok(())) => {}
            Some(Err(TrySendError::Full(i) | TrySendError::Disconnected(i))) => {
                self.shared.lose(i.flows, 1)
            }
            None => self.shared.lose(msg.flows, 1),
        }
    }

    pub fn stats(&self) -> StreamStats {
        let s = &self.shared;
        let spool = s.spool.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut st = StreamStats {
            sessions: s.sessions.load(Ordering::Relaxed),
            messages_sent: s.messages_sent.load(Ordering::Relaxed),
            octets_sent: s.octets_sent.load(Ordering::Relaxed),
            records_sent: s.records_sent.load(Ordering::Relaxed),
            messages_lost: s.messages_lost.load(Ordering::Relaxed),
            not_sent: *s.lost.lock().unwrap_or_else(|e| e.into_inner()),
            connected: s.connected.load(Ordering::Relaxed),
            spool: None,
        };
        if let Some(sp) = spool {
            let d = sp.dropped();
            st.messages_lost += d.messages;
            st.not_sent += d.flows;
            st.spool = Some(sp);
        }
        st
    }

    /// Sends what is queued, waiting at most `drain` for the collector, then closes. What could
    /// not be delivered by then is counted as lost.
    pub fn finish(&mut self, drain: Duration) -> StreamStats {
        *self
            .shared
            .closing
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + drain);
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stats()
    }
}

impl Drop for StreamSender {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.finish(Duration::ZERO);
        }
    }
}

/// The I/O thread's state.
struct Io {
    cfg: StreamConfig,
    rx: Receiver<Item>,
    prelude: TemplatePrelude,
    shared: Arc<Shared>,
    log: Log,
    /// Messages to send before anything from the backlog: the ones in flight when the last
    /// connection died. With a spool: the messages the disk could not take, in order, sent
    /// after what the spool holds.
    retry: VecDeque<Item>,
    spool: Option<Spool>,
    /// This run's ID in the spool.
    run: u64,
    /// The disk refused a write: messages wait in memory (`retry`) until it is tried again.
    disk_failing_since: Option<Instant>,
    /// Messages from memory written on the connection and not yet acknowledged: while there
    /// are any, new messages also stay in memory, so the order holds (spool before memory).
    mem_in_flight: usize,
    published: Instant,
}

/// Where a message being sent came from: a connection that dies gives it back there.
enum Origin {
    Memory,
    Spool { start: Pos, end: Pos, held: bool },
}

struct Outgoing {
    item: Item,
    origin: Origin,
}

/// The transport session being served: which run's messages it carries and the templates it
/// has announced (a template message it already carries is not sent again, RFC 7011 §8.1).
struct Session {
    run: Option<u64>,
    /// For an earlier run's session: that run's templates, from its spool segment.
    prelude: Option<TemplatePrelude>,
    /// What the session announced (its prelude, then template messages).
    sent: Option<TemplatePrelude>,
}

/// How serving a connection ended.
enum Served {
    /// Everything was delivered and the exporter is done (or the deadline passed).
    Done,
    /// The next messages belong to another run: a new session for them.
    NextSession,
    Failed(io::Error),
}

/// What to do next on a connection.
enum Next {
    Send(Outgoing),
    EndSession,
    Wait,
}

/// Appends one of the exporter's messages to the spool. A template message joins `prelude`
/// first, so every later segment (and every later session) starts with it.
fn spool_item(
    sp: &mut Spool,
    prelude: &mut TemplatePrelude,
    item: &Item,
    held: bool,
) -> Result<(), AppendError> {
    if item.templates {
        prelude.learn(&item.bytes);
    }
    let kind = EntryKind::of_message(item.templates);
    sp.append(kind, &item.bytes, item.flows, held, prelude)
}

/// One live connection and the messages it has not yet had acknowledged.
struct Conn {
    fd: OwnedFd,
    protocol: StreamProtocol,
    /// The TLS session over `fd`, for `tls://`: plaintext goes in, records come out.
    tls: Option<rustls::ClientConnection>,
    /// Bytes (TCP) or messages (SCTP) written on this connection.
    written: u64,
    /// Messages written but not yet acknowledged, with the connection offset they end at (in
    /// the unit of `written`).
    in_flight: VecDeque<(u64, Outgoing)>,
}

impl Io {
    fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        let mut failing: Option<io::ErrorKind> = None;
        loop {
            if self.past_deadline() || (self.nothing_left() && self.closing()) {
                break;
            }
            match connect(&self.cfg).and_then(|fd| self.start_tls(fd)) {
                Ok((fd, tls)) => {
                    backoff = Duration::from_millis(100);
                    let n = self.shared.sessions.fetch_add(1, Ordering::Relaxed) + 1;
                    if n > 1 || failing.is_some() {
                        (self.log)(&format!(
                            "{}://{}: connected (session {n}); templates sent first",
                            self.cfg.protocol.scheme(),
                            self.cfg.addr
                        ));
                    }
                    self.shared.connected.store(true, Ordering::Relaxed);
                    self.shared.away.store(false, Ordering::Relaxed);
                    let mut conn = Conn {
                        fd,
                        protocol: self.cfg.protocol,
                        tls,
                        written: 0,
                        in_flight: VecDeque::new(),
                    };
                    let served = self.serve(&mut conn);
                    self.shared.connected.store(false, Ordering::Relaxed);
                    // Whatever the collector has not acknowledged goes again on the next session.
                    let unacked: Vec<Outgoing> = conn.in_flight.drain(..).map(|(_, o)| o).collect();
                    self.give_back(unacked);
                    match served {
                        Served::Done => break,
                        Served::NextSession => {
                            // The collector took every message of that run: the next run's
                            // session starts now, with its own templates.
                            drop(conn);
                            continue;
                        }
                        Served::Failed(e) => {
                            self.shared.away.store(true, Ordering::Relaxed);
                            (self.log)(&format!(
                                "{}://{}: connection lost: {e}; reconnecting, {} messages kept to resend",
                                self.cfg.protocol.scheme(),
                                self.cfg.addr,
                                self.retry.len()
                            ));
                            failing = Some(e.kind());
                        }
                    }
                }
                Err(e) => {
                    self.shared.away.store(true, Ordering::Relaxed);
                    if failing != Some(e.kind()) {
                        (self.log)(&format!(
                            "{}://{}: cannot connect: {e}; retrying in the background, backlog holds {} messages",
                            self.cfg.protocol.scheme(),
                            self.cfg.addr,
                            self.cfg.backlog_messages
                        ));
                        failing = Some(e.kind());
                    }
                    self.sleep(backoff);
                    backoff = (backoff * 2).min(self.cfg.max_backoff);
                }
            }
        }
        // Past the deadline (or nothing left): what remains is lost, or, with a spool, kept
        // there for the next run.
        let rest: Vec<Item> = self.retry.drain(..).chain(self.rx.try_iter()).collect();
        match self.spool.as_mut() {
            Some(sp) => {
                for item in rest {
                    if let Err(AppendError::Disk(_)) =
                        spool_item(sp, &mut self.prelude, &item, true)
                    {
                        if !item.templates {
                            sp.lost_to_disk(item.flows);
                        }
                    }
                }
                sp.tick(true);
                self.publish(true);
            }
            None => {
                for item in rest {
                    self.shared.lose(item.flows, 1);
                }
            }
        }
    }

    /// Publishes the spool's counts for [`StreamSender::stats`] (at most every 100 ms unless
    /// `now`).
    fn publish(&mut self, now: bool) {
        let Some(sp) = &self.spool else { return };
        if now || self.published.elapsed() >= Duration::from_millis(100) {
            self.published = Instant::now();
            *self.shared.spool.lock().unwrap_or_else(|e| e.into_inner()) = Some(sp.stats());
        }
    }

    /// Messages a dead connection never had acknowledged (in the order sent, the one that
    /// failed last): spool messages are read again from the first of them, memory ones go back
    /// to the front of `retry`. A spool message whose segment was dropped for room meanwhile
    /// is lost after all.
    fn give_back(&mut self, unacked: Vec<Outgoing>) {
        let mut first_spooled: Option<Pos> = None;
        let mut memory = Vec::new();
        for o in unacked {
            match o.origin {
                Origin::Memory => memory.push(o.item),
                Origin::Spool { start, .. } => {
                    let sp = self.spool.as_mut().expect("spool origin");
                    if !sp.holds(start.segment) && !o.item.templates {
                        sp.lost_in_flight(o.item.flows);
                    }
                    first_spooled = Some(first_spooled.map_or(start, |f| f.min(start)));
                }
            }
        }
        // Nothing from memory is on a connection any more.
        self.mem_in_flight = 0;
        for item in memory.into_iter().rev() {
            self.retry.push_front(item);
        }
        if let (Some(p), Some(sp)) = (first_spooled, self.spool.as_mut()) {
            sp.rewind(p);
        }
    }

    /// With a spool: moves what the exporter queued onto the disk (or, while the disk fails
    /// or memory messages are ahead of it, into memory), never waiting.
    fn intake(&mut self) {
        if self.spool.is_none() {
            return;
        }
        for _ in 0..4096 {
            match self.rx.try_recv() {
                Ok(item) => self.take_in(item),
                Err(_) => break,
            }
        }
        if let Some(sp) = self.spool.as_mut() {
            sp.tick(false);
        }
        self.publish(false);
    }

    fn take_in(&mut self, item: Item) {
        let Some(sp) = self.spool.as_mut() else {
            return;
        };
        let retry_disk = self
            .disk_failing_since
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if self.retry.is_empty() && self.mem_in_flight == 0 && retry_disk {
            let held = self.shared.away.load(Ordering::Relaxed);
            match spool_item(sp, &mut self.prelude, &item, held) {
                Ok(()) => {
                    if self.disk_failing_since.take().is_some() {
                        (self.log)(&format!("spool {}: writing again", sp.dir().display()));
                    }
                    return;
                }
                // Counted by the spool, by its policy.
                Err(AppendError::Full) => return,
                Err(AppendError::Disk(e)) => {
                    if self.disk_failing_since.is_none() {
                        (self.log)(&format!(
                            "spool {}: {e}; messages wait in memory (up to {}) until the disk recovers",
                            sp.dir().display(),
                            self.cfg.backlog_messages
                        ));
                    }
                    self.disk_failing_since = Some(Instant::now());
                }
            }
        }
        if item.templates {
            // Every later segment, and every later session, starts with it.
            self.prelude.learn(&item.bytes);
        }
        if self.retry.len() < self.cfg.backlog_messages {
            self.retry.push_back(item);
        } else if !item.templates {
            sp.lost_to_disk(item.flows);
        }
    }

    /// For `tls://`, the handshake on a fresh connection: a certificate the settings do not
    /// accept, a name mismatch or an alert from the collector fails here, with rustls's reason.
    fn start_tls(&self, fd: OwnedFd) -> io::Result<(OwnedFd, Option<rustls::ClientConnection>)> {
        let Some(t) = &self.cfg.tls else {
            return Ok((fd, None));
        };
        let mut tls = t
            .client
            .connect(&t.host)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let deadline = Instant::now() + self.cfg.connect_timeout;
        while tls.is_handshaking() {
            flush_tls(&fd, &mut tls, &|| Instant::now() >= deadline)?;
            if !tls.is_handshaking() {
                break;
            }
            if tls.wants_read() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "TLS handshake timed out",
                    ));
                }
                if !wait_readable(&fd, left.min(Duration::from_millis(100))) {
                    continue;
                }
                if read_tls(&fd, &mut tls)?.0 == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the collector closed the connection during the TLS handshake",
                    ));
                }
            }
        }
        flush_tls(&fd, &mut tls, &|| Instant::now() >= deadline)?;
        Ok((fd, Some(tls)))
    }

    fn closing(&self) -> bool {
        self.shared.deadline().is_some()
    }

    fn past_deadline(&self) -> bool {
        self.shared.deadline().is_some_and(|d| Instant::now() >= d)
    }

    fn nothing_left(&self) -> bool {
        self.retry.is_empty()
            && self.rx.is_empty()
            && self.spool.as_ref().is_none_or(|s| !s.has_unread())
    }

    fn sleep(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.past_deadline() {
            if self.closing() && self.nothing_left() {
                return;
            }
            self.intake();
            std::thread::sleep(Duration::from_millis(20).min(d));
        }
    }

    /// What to send next on this connection (see [`Next`]).
    fn next_out(&mut self, conn: &Conn, session: &mut Session) -> Next {
        let Some(sp) = self.spool.as_mut() else {
            // Without a spool: the retried messages, then the backlog.
            let item = match self.retry.pop_front() {
                Some(i) => i,
                None => match self.rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(i) => i,
                    Err(RecvTimeoutError::Timeout) => return Next::Wait,
                    Err(RecvTimeoutError::Disconnected) => {
                        // The exporter is done; wait for the last acknowledgements.
                        std::thread::sleep(Duration::from_millis(10));
                        return Next::Wait;
                    }
                },
            };
            return Next::Send(Outgoing {
                item,
                origin: Origin::Memory,
            });
        };
        // With a spool: what it holds, in order and run by run, then what memory holds.
        let mut run_ahead = sp.next_run();
        if run_ahead.is_none() && !self.retry.is_empty() {
            run_ahead = Some(self.run);
        }
        if let Some(run) = run_ahead {
            match session.run {
                None => {
                    session.run = Some(run);
                    if run != self.run {
                        session.prelude = sp.prelude_of_next();
                    }
                }
                Some(r) if r != run => {
                    return if conn.in_flight.is_empty() {
                        Next::EndSession
                    } else {
                        Next::Wait
                    };
                }
                Some(_) => {}
            }
        }
        while let Some(e) = sp.read_next() {
            if e.kind == EntryKind::Prelude {
                continue;
            }
            return Next::Send(Outgoing {
                item: Item {
                    templates: e.kind == EntryKind::Templates,
                    bytes: e.bytes,
                    flows: e.flows,
                },
                origin: Origin::Spool {
                    start: e.start,
                    end: e.end,
                    held: e.held,
                },
            });
        }
        if let Some(item) = self.retry.pop_front() {
            self.mem_in_flight += 1;
            return Next::Send(Outgoing {
                item,
                origin: Origin::Memory,
            });
        }
        match self.rx.recv_timeout(Duration::from_millis(50)) {
            Ok(i) => {
                self.take_in(i);
                self.intake();
            }
            Err(RecvTimeoutError::Timeout) => self.intake(),
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(10)),
        }
        Next::Wait
    }

    /// Sends on one connection until it fails, the next messages need a session of their own,
    /// or the exporter is done and everything was acknowledged.
    fn serve(&mut self, conn: &mut Conn) -> Served {
        let mut session = Session {
            run: None,
            prelude: None,
            sent: None,
        };
        loop {
            self.intake();
            let next = self.next_out(conn, &mut session);
            let out = match next {
                Next::Send(o) => Some(o),
                Next::EndSession => return Served::NextSession,
                Next::Wait => None,
            };
            if let Err(e) = conn_alive(conn) {
                self.give_back(out.into_iter().collect());
                return Served::Failed(e);
            }
            match out {
                Some(out) => {
                    if session.sent.is_none() {
                        // The session's templates first: this run's, or the earlier run's its
                        // spool segment kept.
                        let prelude = session.prelude.as_mut().unwrap_or(&mut self.prelude);
                        let p = prelude.stamp_for(&out.item.bytes).to_vec();
                        session.sent = Some(TemplatePrelude::from_bytes(p.clone()));
                        // Message by message: over SCTP each send is one SCTP message, and a
                        // collector reads one IPFIX message from each.
                        for m in crate::encoder::messages_in(&p) {
                            if let Err(e) = self.write(conn, m) {
                                self.give_back(vec![out]);
                                return Served::Failed(e);
                            }
                        }
                    }
                    // A template the session already announced must not come twice (RFC
                    // 7011 §8.1).
                    let sent = session.sent.as_mut().expect("set above");
                    if out.item.templates && sent.knows(&out.item.bytes) {
                        if let Origin::Memory = out.origin {
                            self.mem_in_flight = self.mem_in_flight.saturating_sub(1);
                        }
                        continue;
                    }
                    if let Err(e) = self.write(conn, &out.item.bytes) {
                        self.give_back(vec![out]);
                        return Served::Failed(e);
                    }
                    if out.item.templates {
                        sent.learn(&out.item.bytes);
                        // Every later session starts with it.
                        self.prelude.learn(&out.item.bytes);
                    }
                    conn.in_flight.push_back((conn.written, out));
                }
                None => {
                    if self.closing() && self.nothing_left() && conn.in_flight.is_empty() {
                        return Served::Done;
                    }
                    if self.past_deadline() {
                        return Served::Done;
                    }
                }
            }
            self.acknowledge(conn);
        }
    }

    /// Retires the messages the peer has acknowledged.
    fn acknowledge(&mut self, conn: &mut Conn) {
        // A reset connection empties its send queue: its count no longer means "acknowledged".
        if conn_alive(conn).is_err() {
            return;
        }
        let acked = conn.written.saturating_sub(unacknowledged(conn));
        while conn.in_flight.front().is_some_and(|(end, _)| *end <= acked) {
            let (_, out) = conn.in_flight.pop_front().expect("checked");
            match out.origin {
                Origin::Memory => self.mem_in_flight = self.mem_in_flight.saturating_sub(1),
                Origin::Spool { end, held, .. } => {
                    let data = (!out.item.templates).then_some(out.item.flows);
                    self.spool
                        .as_mut()
                        .expect("spool origin")
                        .acknowledge(end, data, held);
                }
            }
            let item = out.item;
            self.shared.messages_sent.fetch_add(1, Ordering::Relaxed);
            self.shared
                .octets_sent
                .fetch_add(item.bytes.len() as u64, Ordering::Relaxed);
            self.shared
                .records_sent
                .fetch_add(item.flows.flows, Ordering::Relaxed);
        }
    }

    /// Writes all of `buf`, waiting for socket space in short steps so shutdown is noticed.
    /// Over TLS, `buf` becomes records and `written` counts the ciphertext bytes on the socket,
    /// so the TCP acknowledgement of the last record carrying a message retires it.
    fn write(&mut self, conn: &mut Conn, buf: &[u8]) -> io::Result<()> {
        if let Some(tls) = conn.tls.as_mut() {
            use std::io::Write;
            // A session the collector ended with an alert fails here with rustls's reason.
            tls.writer()
                .write_all(buf)
                .map_err(|e| io::Error::new(e.kind(), format!("TLS: {e}")))?;
            conn.written += flush_tls(&conn.fd, tls, &|| self.past_deadline())?;
            return Ok(());
        }
        self.write_plain(conn, buf)
    }

    fn write_plain(&mut self, conn: &mut Conn, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            if self.past_deadline() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "shutdown deadline reached while the collector was not reading",
                ));
            }
            // SAFETY: `buf` is valid for `buf.len()` bytes; the fd is open.
            let n = unsafe {
                libc::send(
                    conn.fd.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                buf = &buf[n as usize..];
                conn.written += match conn.protocol {
                    StreamProtocol::Tcp | StreamProtocol::Tls => n as u64,
                    // A one-to-one SCTP socket sends a message whole or not at all.
                    StreamProtocol::Sctp => buf.is_empty() as u64,
                };
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {
                    // A slow collector: meanwhile the exporter's messages go to the spool.
                    self.intake();
                    wait_writable(&conn.fd, Duration::from_millis(100));
                }
                _ => return Err(e),
            }
        }
        Ok(())
    }
}

/// A non-blocking stream socket of the right family and protocol.
fn new_socket(addr: SocketAddr, protocol: StreamProtocol) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    let proto = match protocol {
        StreamProtocol::Tcp | StreamProtocol::Tls => libc::IPPROTO_TCP,
        StreamProtocol::Sctp => libc::IPPROTO_SCTP,
    };
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            proto,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if protocol == StreamProtocol::Sctp
            && matches!(
                e.raw_os_error(),
                Some(libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT | libc::EAFNOSUPPORT)
            )
        {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("this kernel has no SCTP support ({e}); load the sctp module (modprobe sctp) or use tcp:// or udp://"),
            ));
        }
        return Err(e);
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Connects within the configured timeout.
fn connect(cfg: &StreamConfig) -> io::Result<OwnedFd> {
    let fd = new_socket(cfg.addr, cfg.protocol)?;
    let (storage, len) = sockaddr(cfg.addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
        if !wait_writable(&fd, cfg.connect_timeout) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection attempt timed out",
            ));
        }
        let mut err: libc::c_int = 0;
        let mut l = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: SO_ERROR writes one int.
        unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut l,
            )
        };
        if err != 0 {
            return Err(io::Error::from_raw_os_error(err));
        }
    }
    Ok(fd)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Waits until the socket can take more bytes; `false` on timeout.
fn wait_writable(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
    n > 0
}

/// Waits until the socket has something to read (or an error or hang-up); `false` on timeout.
fn wait_readable(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
    n > 0
}

/// A collector never sends us data, so a readable socket means it closed or reset the
/// connection. Checked before each write, so messages are not written into a dead connection.
fn peer_alive(fd: &OwnedFd) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd; zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    if n <= 0 {
        return Ok(());
    }
    let mut err: libc::c_int = 0;
    let mut l = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_ERROR writes one int.
    unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut l,
        )
    };
    Err(if err != 0 {
        io::Error::from_raw_os_error(err)
    } else {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the collector closed the connection",
        )
    })
}

/// [`peer_alive`], and over TLS also what the collector sent: session tickets are taken in; an
/// alert (a rejected client certificate) or close_notify ends the connection with its reason.
fn conn_alive(conn: &mut Conn) -> io::Result<()> {
    let Some(tls) = conn.tls.as_mut() else {
        return peer_alive(&conn.fd);
    };
    while wait_readable(&conn.fd, Duration::ZERO) {
        let (n, closed) = read_tls(&conn.fd, tls)?;
        if n == usize::MAX {
            break; // nothing after all
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the collector closed the connection",
            ));
        }
        if closed {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the collector closed the TLS session",
            ));
        }
    }
    Ok(())
}

/// Reads what the socket has into the TLS session and processes it; returns the bytes read
/// (0: the peer closed; `usize::MAX`: nothing there after all) and whether the peer sent
/// close_notify. A TLS failure (bad certificate, an alert) is an `InvalidData` error whose
/// text is rustls's reason.
fn read_tls(fd: &OwnedFd, tls: &mut rustls::ClientConnection) -> io::Result<(usize, bool)> {
    let n = match tls.read_tls(&mut FdIo(fd)) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((usize::MAX, false)),
        Err(e) => return Err(e),
    };
    let state = tls
        .process_new_packets()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")))?;
    // Nothing of the collector's is application data we want; drop any.
    let mut sink = [0u8; 4096];
    while let Ok(k) = std::io::Read::read(&mut tls.reader(), &mut sink) {
        if k == 0 {
            break;
        }
    }
    Ok((n, state.peer_has_closed()))
}

/// Writes every pending TLS record to the socket, waiting for space in short steps until
/// `give_up` says so (a handshake's timeout, or the exporter's shutdown deadline, checked at
/// every step so a stalled collector cannot hold a shutdown); returns the bytes written.
fn flush_tls(
    fd: &OwnedFd,
    tls: &mut rustls::ClientConnection,
    give_up: &dyn Fn() -> bool,
) -> io::Result<u64> {
    let mut total = 0u64;
    while tls.wants_write() {
        match tls.write_tls(&mut FdIo(fd)) {
            Ok(n) => total += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                if give_up() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the collector was not reading before the deadline",
                    ));
                }
                wait_writable(fd, Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// The socket as `Read`/`Write` for rustls (non-blocking; no SIGPIPE).
struct FdIo<'a>(&'a OwnedFd);

impl io::Read for FdIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes; the fd is open.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl io::Write for FdIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes; the fd is open.
        let n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the peer has not acknowledged yet, in the unit of `Conn::written`.
fn unacknowledged(conn: &Conn) -> u64 {
    match conn.protocol {
        StreamProtocol::Tcp | StreamProtocol::Tls => unacked_bytes(&conn.fd),
        StreamProtocol::Sctp => unacked_sctp_chunks(&conn.fd),
    }
}

/// DATA chunks of the association not yet acknowledged or not yet sent (`SCTP_STATUS`:
/// `sstat_unackdata` + `sstat_penddata`); each message we write is at least one chunk, so this
/// never counts a message as acknowledged early. All of them while the socket cannot say.
fn unacked_sctp_chunks(fd: &OwnedFd) -> u64 {
    const SOL_SCTP: libc::c_int = 132;
    const SCTP_STATUS: libc::c_int = 14;
    // struct sctp_status: assoc_id, state, rwnd (4 bytes each), unackdata and penddata (u16),
    // then more; the kernel wants room for all of it (176 bytes), more is fine.
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `buf`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            SOL_SCTP,
            SCTP_STATUS,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 || len < 16 {
        return u64::MAX;
    }
    let unack = u16::from_ne_bytes([buf[12], buf[13]]) as u64;
    let pend = u16::from_ne_bytes([buf[14], buf[15]]) as u64;
    unack + pend
}

/// Bytes written but not yet acknowledged by the peer (0 where the socket cannot say).
fn unacked_bytes(fd: &OwnedFd) -> u64 {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if r < 0 {
        0
    } else {
        n.max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EncoderConfig, MessageEncoder};
    use std::io::Read;
    use std::net::TcpListener;

    fn config(addr: SocketAddr) -> StreamConfig {
        StreamConfig {
            addr,
            protocol: StreamProtocol::Tcp,
            backlog_messages: 1000,
            connect_timeout: Duration::from_secs(1),
            tls: None,
            max_backoff: Duration::from_millis(200),
        }
    }

    /// A local address nobody listens on (yet).
    fn absent_collector() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    /// A collector on `addr` that reads `sessions` connections to their end.
    fn collector(addr: SocketAddr, sessions: usize) -> JoinHandle<Vec<Vec<u8>>> {
        let l = TcpListener::bind(addr).unwrap();
        std::thread::spawn(move || {
            (0..sessions)
                .map(|_| {
                    let (mut c, _) = l.accept().unwrap();
                    let mut all = vec![];
                    c.read_to_end(&mut all).unwrap();
                    all
                })
                .collect()
        })
    }

    fn quiet() -> Log {
        Arc::new(|_| {})
    }

    /// Splits a byte stream into IPFIX messages.
    fn messages(mut stream: &[u8]) -> Vec<Vec<u8>> {
        let mut out = vec![];
        while stream.len() >= 16 {
            let len = u16::from_be_bytes([stream[2], stream[3]]) as usize;
            out.push(stream[..len].to_vec());
            stream = &stream[len..];
        }
        out
    }

    fn encoded(n: u32) -> (MessageEncoder, Vec<(Vec<u8>, FlowTotals)>) {
        let mut enc = MessageEncoder::new(EncoderConfig {
            inline_templates: false,
            ..Default::default()
        })
        .unwrap();
        let mut msgs = vec![];
        for i in 0..n {
            let r = crate::template::tests::sample(i % 2 == 0, crate::TimePrecision::Micros);
            enc.push(&r, 100, |m| msgs.push((m.bytes.to_vec(), m.flows)));
        }
        enc.flush(100, |m| msgs.push((m.bytes.to_vec(), m.flows)));
        (enc, msgs)
    }

    fn message(m: &(Vec<u8>, FlowTotals)) -> Message<'_> {
        Message {
            bytes: &m.0,
            data_records: m.1.flows as u32,
            flows: m.1,
            templates: false,
        }
    }

    #[test]
    fn a_late_collector_gets_templates_then_everything() {
        // Reserve a port, close it, queue messages while nobody listens, then listen.
        let addr = absent_collector();
        let (enc, msgs) = encoded(300);
        let mut s =
            StreamSender::start(config(addr), enc.template_prelude(), None, quiet()).unwrap();
        for m in &msgs {
            s.send(&message(m));
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(!s.stats().connected);
        let reader = collector(addr, 1);
        let st = s.finish(Duration::from_secs(10));
        let got = messages(&reader.join().unwrap()[0]);
        assert_eq!(got.len(), msgs.len() + 1, "prelude plus every message");
        assert_eq!(u16::from_be_bytes([got[0][16], got[0][17]]), 2);
        for (g, m) in got[1..].iter().zip(&msgs) {
            assert_eq!(g, &m.0);
        }
        assert_eq!(st.messages_sent, msgs.len() as u64);
        assert_eq!(st.messages_lost, 0);
        assert_eq!(st.sessions, 1);
    }

    #[test]
    fn a_full_backlog_drops_and_counts() {
        let addr = absent_collector();
        let (enc, msgs) = encoded(300);
        let mut cfg = config(addr);
        cfg.backlog_messages = 3;
        let mut s = StreamSender::start(cfg, enc.template_prelude(), None, quiet()).unwrap();
        for m in &msgs {
            s.send(&message(m));
        }
        let st = s.finish(Duration::from_millis(200));
        assert_eq!(st.messages_sent, 0);
        assert_eq!(st.messages_lost, msgs.len() as u64);
        assert_eq!(st.not_sent.flows, 300);
    }

    #[test]
    fn sctp_fails_clearly_or_works() {
        let (enc, _) = encoded(1);
        let mut cfg = config("127.0.0.1:4739".parse().unwrap());
        cfg.protocol = StreamProtocol::Sctp;
        match StreamSender::start(cfg, enc.template_prelude(), None, quiet()) {
            Ok(_) => eprintln!("this kernel has SCTP"),
            Err(e) => assert!(e.to_string().contains("no SCTP support"), "{e}"),
        }
    }

    fn spool_spec(dir: &std::path::Path) -> crate::spool::SpoolSpec {
        crate::spool::SpoolSpec {
            dir: dir.to_path_buf(),
            max_bytes: 64 << 20,
            max_age: None,
            policy: crate::spool::SpoolPolicy::DropOldest,
            sync_every: Duration::from_millis(100),
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn open_spool(dir: &std::path::Path) -> Spool {
        let spec = spool_spec(dir);
        Spool::open(spec.clone(), spec.dir_for("tcp://test"), false).unwrap()
    }

    #[test]
    fn with_a_spool_an_absent_collector_gets_everything_in_order_and_the_replay_is_counted() {
        let dir = temp_dir("absent");
        let addr = absent_collector();
        let (enc, msgs) = encoded(3000);
        let mut cfg = config(addr);
        // Far fewer than the messages: without the spool most would be lost.
        cfg.backlog_messages = 8;
        let mut s =
            StreamSender::start(cfg, enc.template_prelude(), Some(open_spool(&dir)), quiet())
                .unwrap();
        for m in &msgs {
            s.send(&message(m));
            if s.stats().messages_lost > 0 {
                break;
            }
            while !s.has_room() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let mid = s.stats();
        assert!(!mid.connected);
        assert_eq!(
            mid.spool.as_ref().unwrap().pending.flows.flows,
            3000,
            "{mid:?}"
        );
        let reader = collector(addr, 1);
        let st = s.finish(Duration::from_secs(10));
        let got = messages(&reader.join().unwrap()[0]);
        assert_eq!(
            got.len(),
            msgs.len() + 1,
            "prelude plus every message, once"
        );
        for (g, m) in got[1..].iter().zip(&msgs) {
            assert_eq!(g, &m.0);
        }
        let sp = st.spool.unwrap();
        assert_eq!(st.messages_sent, msgs.len() as u64);
        assert_eq!(st.messages_lost, 0);
        assert_eq!(sp.spooled.flows.flows, 3000);
        assert_eq!(sp.replayed.flows.flows, 3000);
        assert_eq!(sp.pending, crate::spool::Tally::default());
        // Everything acknowledged: the spool keeps no more than its open segment.
        assert!(sp.segments <= 1, "{sp:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_one_run_left_in_the_spool_the_next_delivers_first_in_a_session_of_its_own() {
        let dir = temp_dir("restart");
        let addr = absent_collector();
        let (enc, msgs) = encoded(400);
        // Run 1: nobody listens; it stops at once, everything stays in the spool.
        let mut s = StreamSender::start(
            config(addr),
            enc.template_prelude(),
            Some(open_spool(&dir)),
            quiet(),
        )
        .unwrap();
        for m in &msgs[..msgs.len() / 2] {
            s.send(&message(m));
        }
        let st1 = s.finish(Duration::ZERO);
        let sp1 = st1.spool.clone().unwrap();
        assert_eq!(st1.messages_sent, 0);
        assert_eq!(st1.messages_lost, 0, "kept, not lost: {st1:?}");
        assert_eq!(sp1.pending.messages, (msgs.len() / 2) as u64);
        // Run 2: the collector is there.
        let reader = collector(addr, 2);
        let sp = open_spool(&dir);
        assert_eq!(
            sp.stats().from_earlier_runs.messages,
            (msgs.len() / 2) as u64
        );
        let mut s =
            StreamSender::start(config(addr), enc.template_prelude(), Some(sp), quiet()).unwrap();
        for m in &msgs[msgs.len() / 2..] {
            s.send(&message(m));
        }
        let st2 = s.finish(Duration::from_secs(10));
        let sessions = reader.join().unwrap();
        let (a, b) = (messages(&sessions[0]), messages(&sessions[1]));
        // Each session: templates, then its run's messages.
        assert_eq!(u16::from_be_bytes([a[0][16], a[0][17]]), 2);
        assert_eq!(u16::from_be_bytes([b[0][16], b[0][17]]), 2);
        assert_eq!(a.len() - 1, msgs.len() / 2);
        assert_eq!(b.len() - 1, msgs.len() - msgs.len() / 2);
        for (g, m) in a[1..].iter().chain(&b[1..]).zip(&msgs) {
            assert_eq!(g, &m.0);
        }
        let sp2 = st2.spool.unwrap();
        assert_eq!(st2.sessions, 2);
        assert_eq!(st2.messages_sent, msgs.len() as u64);
        // Run 1's messages are replays; run 2's waited behind them but the collector was there.
        assert_eq!(sp2.replayed.messages, (msgs.len() / 2) as u64, "{sp2:?}");
        assert_eq!(
            sp2.spooled.messages,
            (msgs.len() - msgs.len() / 2) as u64,
            "{sp2:?}"
        );
        assert_eq!(sp2.pending.messages, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
