//! What a flow is (issue #15): parsers of the first application bytes of a flow, in the
//! sans-IO core. Each takes a payload slice and returns a fixed-size value: no allocation, a
//! bounded number of bytes looked at, and no panic on any input (`tests` and the `decode` fuzz
//! target, with its application bit set, feed them garbage).
//!
//! - [`dns`]: the first question's name, type and class; a response's rcode and answer count;
//! - [`tls`]: a ClientHello's server name, ALPN list, highest offered version and JA4 (the TLS
//!   client fingerprint only: JA4 is BSD-3 licensed, the other JA4+ methods are not); a
//!   ServerHello's selected version and cipher suite; a handshake message split over records
//!   and segments is gathered within a stated bound ([`tls::MAX_HELLO`]);
//! - [`quic`]: a QUIC v1/v2 client Initial, decrypted with the keys every observer can derive,
//!   for its ClientHello (read by [`tls`], JA4 with `q`);
//! - [`http`]: an HTTP/1.x request's method, target, Host and User-Agent; a response's status;
//! - [`reassembly`]: the bounded table where a hello that one packet does not hold is put
//!   together;
//! - [`looks`]: which flow directions gave their fact or had their first messages parsed,
//!   the bound on the HTTP and DNS-over-TCP messages parsed per flow (with `reassembly` and
//!   [`Inspector`]'s buffers, the only state kept between packets).
//!
//! Names, paths and User-Agents are personal data: nothing here runs unless `--app` asks for it.

pub mod dns;
pub mod http;
pub mod looks;
pub mod quic;
pub mod reassembly;
pub mod tls;

use crate::wire::FrameSummary;

/// Which parsers run (`--app`): a bit per protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppSet(u8);

impl AppSet {
    pub const DNS: AppSet = AppSet(1);
    pub const TLS: AppSet = AppSet(2);
    pub const HTTP: AppSet = AppSet(4);
    pub const QUIC: AppSet = AppSet(8);
    pub const ALL: AppSet = AppSet(15);

    pub fn has(self, o: AppSet) -> bool {
        self.0 & o.0 == o.0
    }
    /// Both sets' parsers.
    pub fn with(self, o: AppSet) -> AppSet {
        AppSet(self.0 | o.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// `all`, `none`, or a comma-separated list of dns, tls, quic, http.
    pub fn parse(s: &str) -> Result<AppSet, String> {
        let mut set = AppSet(0);
        for part in s.split(',').map(str::trim) {
            set.0 |= match part {
                "all" => AppSet::ALL.0,
                "none" => 0,
                "dns" => AppSet::DNS.0,
                "tls" => AppSet::TLS.0,
                "http" => AppSet::HTTP.0,
                "quic" => AppSet::QUIC.0,
                other => {
                    return Err(format!(
                        "'{other}' is not an application protocol: write all, none, or a list of dns, tls, quic, http"
                    ))
                }
            };
        }
        Ok(set)
    }
}

/// What one packet's payload said. Held inline, not boxed: a fact is made per packet, and
/// the hot path allocates nothing per packet (the decoder and the flow meter each keep one
/// slot per waiting frame).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppFact {
    Dns(dns::DnsMessage),
    TlsClient(tls::ClientHello),
    TlsServer(tls::ServerHello),
    HttpRequest(http::Request),
    HttpResponse(u16),
}

impl AppFact {
    /// The parser (`--app` name) that made this fact.
    pub fn kind(&self) -> AppSet {
        match self {
            AppFact::Dns(_) => AppSet::DNS,
            AppFact::TlsClient(h) if h.ja4.0[0] == b'q' => AppSet::QUIC,
            AppFact::TlsClient(_) | AppFact::TlsServer(_) => AppSet::TLS,
            AppFact::HttpRequest(_) | AppFact::HttpResponse(_) => AppSet::HTTP,
        }
    }

    /// Whether its direction can say nothing more that the record would keep (the first
    /// value of each field wins): true but for an HTTP CONNECT request and HTTP responses,
    /// after which a tunnelled TLS handshake may follow.
    pub fn ends_direction(&self) -> bool {
        match self {
            AppFact::HttpRequest(q) => q.method.as_bytes() != b"CONNECT",
            AppFact::HttpResponse(_) => false,
            _ => true,
        }
    }
}

/// The application bytes of a decoded frame: after the TCP or UDP header, up to the end of
/// the IP packet (Ethernet padding left out); empty for other protocols and later fragments.
pub fn payload<'a>(frame: &'a [u8], s: &FrameSummary) -> &'a [u8] {
    if s.l4_offset == u16::MAX {
        return &[];
    }
    let l4 = s.l4_offset as usize;
    let end = (s.ip_offset as usize + s.ip_octets as usize).min(frame.len());
    let header = match s.protocol {
        6 => match frame.get(l4 + 12) {
            Some(b) => (b >> 4) as usize * 4,
            None => return &[],
        },
        17 => 8,
        _ => return &[],
    };
    frame.get(l4 + header..end).unwrap_or(&[])
}

/// The application parsers of one decoder, with what they keep between packets: scratch
/// space for a TLS handshake spread over records, a buffer to decrypt QUIC Initials in, and
/// the hellos that one packet did not hold ([`reassembly`], bounded).
pub struct Inspector {
    set: AppSet,
    /// QUIC Initials' ciphers; without them QUIC is left out of `set`.
    crypto: Option<&'static dyn quic::InitialCrypto>,
    scratch: Vec<u8>,
    packet: Vec<u8>,
    pending: reassembly::Pending,
    looks: looks::Looks,
}

/// What a packet of a flow with an unfinished hello did to it (inline, like [`AppFact`]).
#[allow(clippy::large_enum_variant)]
enum Progress {
    Done(Option<AppFact>),
    Waiting,
    GiveUp,
}

impl Inspector {
    /// The parsers of `set`, with [`quic::default_crypto`] for QUIC.
    pub fn new(set: AppSet) -> Inspector {
        Self::with_crypto(set, quic::default_crypto())
    }

    /// The parsers of `set`, QUIC's with `crypto`; without one, QUIC's fields are left out.
    pub fn with_crypto(set: AppSet, crypto: Option<&'static dyn quic::InitialCrypto>) -> Inspector {
        let set = match crypto {
            Some(_) => set,
            None => AppSet(set.0 & !AppSet::QUIC.0),
        };
        Inspector {
            set,
            crypto,
            scratch: if set.has(AppSet::TLS) || set.has(AppSet::QUIC) {
                vec![0; tls::MAX_HELLO]
            } else {
                Vec::new()
            },
            packet: if set.has(AppSet::QUIC) {
                vec![0; quic::MAX_PACKET]
            } else {
                Vec::new()
            },
            pending: reassembly::Pending::default(),
            looks: looks::Looks::default(),
        }
    }

    /// Messages left alone because their direction had its first [`looks::MAX_LOOKS`] ones
    /// parsed without a fact.
    pub fn past_bound(&self) -> u64 {
        self.looks.past_bound
    }

    /// Hellos finished from several packets, and those given up (slots full, flow quiet).
    pub fn reassembly_counts(&self) -> (u64, u64, u64) {
        (
            self.pending.completed,
            self.pending.evicted,
            self.pending.expired,
        )
    }

    /// Reads one metered frame's payload: DNS on port 53 or 5353 (either end); TLS
    /// handshakes and HTTP/1.x on any TCP port (recognised by their first bytes); QUIC client
    /// Initials on any UDP port (recognised by their long header and version).
    ///
    /// Every metered packet comes through here, and nearly all of them say nothing: this
    /// gate decides from the summary alone (protocol, ports, lengths) whether a parser could
    /// want the payload, in a few instructions and without touching the payload's bytes; the
    /// parsers' dispatch, out of line, runs only when one could.
    #[inline]
    pub fn inspect(&mut self, frame: &[u8], s: &FrameSummary, ts_ns: u64) -> Option<AppFact> {
        if s.l4_offset == u16::MAX {
            return None;
        }
        let set = self.set;
        // The transport header and what follows it, up to the IP packet's end.
        let after =
            (s.ip_offset as usize + s.ip_octets as usize).saturating_sub(s.l4_offset as usize);
        let dns_port = |p: u16| p == 53 || p == 5353;
        let wanted = match s.protocol {
            17 => {
                set.has(AppSet::DNS) && (dns_port(s.src_port) || dns_port(s.dst_port))
                    || set.has(AppSet::QUIC) && after >= 8 + quic::MIN_CLIENT_DATAGRAM
            }
            6 => {
                (set.has(AppSet::TLS)
                    || set.has(AppSet::HTTP)
                    || set.has(AppSet::DNS) && (s.src_port == 53 || s.dst_port == 53))
                    // Pure ACKs (with or without options) carry nothing.
                    && frame
                        .get(s.l4_offset as usize + 12)
                        .is_some_and(|b| after > (b >> 4) as usize * 4)
            }
            _ => false,
        };
        if !wanted {
            return None;
        }
        self.inspect_payload(frame, s, ts_ns)
    }

    /// Runs `parse` on a payload that looks like a message for it, within the bound per flow
    /// ([`looks`]): a direction that gave its fact, or had its first messages looked at
    /// without one, is left alone. Consulted only here, for payloads a parser would read, not
    /// for every packet: the table is one more cache line, and most packets never get this
    /// far.
    #[inline]
    fn bounded(
        &mut self,
        s: &FrameSummary,
        ts_ns: u64,
        parse: impl FnOnce() -> Option<AppFact>,
    ) -> Option<AppFact> {
        let slot = match self.looks.look(s, ts_ns) {
            looks::Look::Parse(slot) => slot,
            looks::Look::Done => return None,
            looks::Look::PastBound => {
                self.looks.past_bound += 1;
                return None;
            }
        };
        let fact = parse();
        self.looks
            .looked(slot, fact.as_ref().is_some_and(AppFact::ends_direction));
        fact
    }

    /// [`Self::inspect`] past its gate: which parser the payload is for. Each parser runs
    /// out of line, so a payload none of them wants (a segment of application data, most of
    /// what passes the gate) costs a few comparisons and no large stack frame.
    #[inline(never)]
    fn inspect_payload(&mut self, frame: &[u8], s: &FrameSummary, ts_ns: u64) -> Option<AppFact> {
        let payload = payload(frame, s);
        if payload.is_empty() {
            return None;
        }
        let set = self.set;
        let dns_port = |p: u16| p == 53 || p == 5353;
        match s.protocol {
            // The bound per flow is for messages a flow can repeat without end (HTTP requests
            // and responses, DNS over TCP). A DNS datagram is one message, whose parse costs
            // less than consulting the bound (a cache miss in a table of all live directions);
            // a TLS or QUIC hello comes once per direction (a QUIC flow whose hello was read
            // is skipped by `reassembly`'s recently finished ones), and the handshake records
            // after it are turned away by their header.
            17 if set.has(AppSet::DNS) && (dns_port(s.src_port) || dns_port(s.dst_port)) => {
                dns_fact(payload, false)
            }
            17 if set.has(AppSet::QUIC)
                && payload.len() >= quic::MIN_CLIENT_DATAGRAM
                && quic::may_be_initial(payload) =>
            {
                self.quic(s, payload, ts_ns)
            }
            6 if set.has(AppSet::DNS) && (s.src_port == 53 || s.dst_port == 53) => {
                self.bounded(s, ts_ns, || dns_fact(payload, true))
            }
            6 => {
                if set.has(AppSet::TLS) {
                    // A hello being put together is followed to its end, bound or not.
                    if !self.pending.is_empty() {
                        if let Some(p) = self.tls_continued(frame, s, payload, ts_ns) {
                            return p;
                        }
                    }
                    if payload[0] == 22 {
                        return self.tls_first(frame, s, payload, ts_ns);
                    }
                }
                if set.has(AppSet::HTTP)
                    && (payload.starts_with(b"HTTP/1.") || http::may_be_request(payload))
                {
                    self.bounded(s, ts_ns, || http_fact(payload))
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// A segment that starts with a TLS handshake record.
    #[inline(never)]
    fn tls_first(
        &mut self,
        frame: &[u8],
        s: &FrameSummary,
        payload: &[u8],
        ts_ns: u64,
    ) -> Option<AppFact> {
        match tls::first_handshake(payload, &mut self.scratch) {
            tls::Handshake::Message(t, body) => handshake_fact(t, body, false),
            tls::Handshake::Incomplete { .. } if payload.len() < tls::MAX_HELLO => {
                let slot = self
                    .pending
                    .start(reassembly::FlowId::of(s), tcp_seq(frame, s), ts_ns);
                slot.bytes.put(0, payload);
                slot.packets = 1;
                None
            }
            _ => None,
        }
    }

    /// A segment of a flow whose hello is unfinished (`None`: the flow has none).
    #[inline(never)]
    fn tls_continued(
        &mut self,
        frame: &[u8],
        s: &FrameSummary,
        payload: &[u8],
        ts_ns: u64,
    ) -> Option<Option<AppFact>> {
        let id = reassembly::FlowId::of(s);
        let slot = self.pending.get(&id, ts_ns)?;
        let offset = tcp_seq(frame, s).wrapping_sub(slot.base);
        slot.bytes.put(offset as u64, payload);
        slot.packets += 1;
        let stream = slot.bytes.prefix();
        let progress = match tls::first_handshake(stream, &mut self.scratch) {
            tls::Handshake::Message(t, body) => Progress::Done(handshake_fact(t, body, false)),
            tls::Handshake::Incomplete { .. } if stream.len() < tls::MAX_HELLO => Progress::Waiting,
            _ => Progress::GiveUp,
        };
        Some(self.settle(&id, progress))
    }

    /// The client Initial packets of a UDP datagram (several may be coalesced).
    #[inline(never)]
    fn quic(&mut self, s: &FrameSummary, payload: &[u8], ts_ns: u64) -> Option<AppFact> {
        // A datagram from port 443 to another port is a server's: its Initials are protected
        // with keys this datagram does not give (see `quic`), so none is tried.
        if s.src_port == 443 && s.dst_port != 443 {
            return None;
        }
        let id = reassembly::FlowId::of(s);
        if self.pending.recently_finished(&id) {
            return None;
        }
        let crypto = self.crypto?;
        let mut at = 0;
        let mut fresh = None;
        for _ in 0..4 {
            let Some(o) = payload
                .get(at..)
                .and_then(|d| quic::open_initial(crypto, d, &mut self.packet))
            else {
                break;
            };
            at += o.packet_len;
            // The CRYPTO frames' offsets and where their bytes are (at most 16 per packet).
            let frames = &self.packet[o.frames.clone()];
            let mut pieces = [(0u64, 0usize, 0usize); 16];
            let mut n = 0;
            quic::crypto_frames(frames, |off, d| {
                if n < pieces.len() && !d.is_empty() {
                    let start = d.as_ptr() as usize - frames.as_ptr() as usize;
                    pieces[n] = (off, start, start + d.len());
                    n += 1;
                }
            });
            if n == 0 {
                continue; // an ACK-only Initial
            }
            // The common case: the first Initial holds the whole hello in a frame at offset 0.
            // It is read where it was decrypted, with no reassembly slot.
            if fresh.is_none() && !self.pending.has(&id) {
                if let Some(&(_, a, b)) = pieces[..n].iter().find(|p| p.0 == 0) {
                    let d = &frames[a..b];
                    let need = d
                        .get(1..4)
                        .map(|l| 4 + u32::from_be_bytes([0, l[0], l[1], l[2]]) as usize);
                    if let Some(need) = need.filter(|&need| d.len() >= need) {
                        let f = handshake_fact(d[0], &d[4..need], true);
                        self.pending.finish(&id, true);
                        return f;
                    }
                }
            }
            let slot = match self.pending.get(&id, ts_ns) {
                Some(slot) => slot,
                None => {
                    fresh.get_or_insert(true);
                    self.pending.start(id, 0, ts_ns)
                }
            };
            fresh.get_or_insert(false);
            for &(off, a, b) in &pieces[..n] {
                slot.bytes.put(off, &frames[a..b]);
            }
            slot.packets += 1;
        }
        fresh?;
        let slot = self.pending.get(&id, ts_ns)?;
        let stream = slot.bytes.prefix();
        let progress = if stream.len() >= 4 {
            let need = 4 + u32::from_be_bytes([0, stream[1], stream[2], stream[3]]) as usize;
            if stream.len() >= need {
                Progress::Done(handshake_fact(stream[0], &stream[4..need], true))
            } else if need > tls::MAX_HELLO {
                Progress::GiveUp
            } else {
                Progress::Waiting
            }
        } else {
            Progress::Waiting
        };
        self.settle(&id, progress)
    }

    fn settle(&mut self, id: &reassembly::FlowId, p: Progress) -> Option<AppFact> {
        match p {
            Progress::Done(f) => {
                self.pending.finish(id, true);
                f
            }
            Progress::Waiting => None,
            Progress::GiveUp => {
                self.pending.finish(id, false);
                None
            }
        }
    }
}

/// The TCP sequence number of a segment (0 when the header is cut).
fn tcp_seq(frame: &[u8], s: &FrameSummary) -> u32 {
    let at = s.l4_offset as usize + 4;
    frame
        .get(at..at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The fact of a DNS message (`tcp`: with its two-byte length first).
#[inline(never)]
fn dns_fact(payload: &[u8], tcp: bool) -> Option<AppFact> {
    if tcp {
        dns::parse_tcp(payload).map(AppFact::Dns)
    } else {
        dns::parse(payload).map(AppFact::Dns)
    }
}

/// The fact of an HTTP/1.x request or response.
#[inline(never)]
fn http_fact(payload: &[u8]) -> Option<AppFact> {
    if payload.starts_with(b"HTTP/1.") {
        http::parse_response(payload).map(AppFact::HttpResponse)
    } else {
        http::parse_request(payload).map(AppFact::HttpRequest)
    }
}

/// The fact of a whole handshake message.
fn handshake_fact(t: u8, body: &[u8], quic: bool) -> Option<AppFact> {
    match t {
        tls::HANDSHAKE_CLIENT_HELLO => tls::client_hello(body, quic).map(AppFact::TlsClient),
        tls::HANDSHAKE_SERVER_HELLO if !quic => tls::server_hello(body).map(AppFact::TlsServer),
        _ => None,
    }
}

/// Adds what one packet said to its flow's fields: the first value of each wins (a DNS flow's
/// first question, a connection's first ClientHello and request), responses fill theirs. A
/// flow may hold more than one kind (an HTTP CONNECT, then TLS inside the tunnel). The flow
/// cache keeps one boxed `AppRecord` per flow that has a fact, and the record leaves with it
/// as it is: no conversion at export.
pub fn add_fact(r: &mut ipfix_export::AppRecord, f: &AppFact) {
    use ipfix_export::Text;
    match f {
        AppFact::Dns(m) => {
            if let (Some(q), None) = (&m.question, r.dns_query_type) {
                r.set_text_bytes(Text::DnsQueryName, q.name.as_bytes());
                r.dns_query_type = Some(q.qtype);
                r.dns_query_class = Some(q.qclass);
            }
            if m.response && r.dns_rcode.is_none() {
                r.dns_rcode = Some(m.rcode);
                r.dns_answers = Some(m.answers);
            }
        }
        // One hello's fields together: a second ClientHello (after a HelloRetryRequest)
        // adds nothing.
        AppFact::TlsClient(h) if r.tls_client_version.is_none() => {
            r.reserve_text(
                h.sni.as_ref().map_or(0, |n| n.as_bytes().len()) + h.alpn.as_bytes().len() + 36,
            );
            if let Some(sni) = &h.sni {
                r.set_text_bytes(Text::TlsServerName, sni.as_bytes());
            }
            if !h.alpn.is_empty() {
                r.set_text_bytes(Text::TlsAlpn, h.alpn.as_bytes());
            }
            r.tls_client_version = Some(h.version);
            r.set_text(Text::TlsJa4, h.ja4.as_str());
        }
        AppFact::TlsServer(h) if r.tls_server_version.is_none() => {
            r.tls_server_version = Some(h.version);
            r.tls_cipher_suite = Some(h.cipher);
        }
        AppFact::HttpRequest(q) if r.http_method().is_none() => {
            r.reserve_text(
                q.method.as_bytes().len()
                    + q.host.as_bytes().len()
                    + q.target.as_bytes().len()
                    + q.user_agent.as_bytes().len(),
            );
            r.set_text_bytes(Text::HttpMethod, q.method.as_bytes());
            if !q.host.is_empty() {
                r.set_text_bytes(Text::HttpHost, q.host.as_bytes());
            }
            r.set_text_bytes(Text::HttpTarget, q.target.as_bytes());
            if !q.user_agent.is_empty() {
                r.set_text_bytes(Text::HttpUserAgent, q.user_agent.as_bytes());
            }
        }
        AppFact::HttpResponse(c) if r.http_status.is_none() => r.http_status = Some(*c),
        _ => {}
    }
}

/// Text of at most `N` bytes held inline (no allocation): what is longer is cut at `N` bytes
/// and marked `truncated`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BoundedText<const N: usize> {
    len: u16,
    pub truncated: bool,
    bytes: [u8; N],
}

impl<const N: usize> Default for BoundedText<N> {
    fn default() -> Self {
        BoundedText {
            len: 0,
            truncated: false,
            bytes: [0; N],
        }
    }
}

impl<const N: usize> std::fmt::Debug for BoundedText<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl<const N: usize> BoundedText<N> {
    pub fn new(b: &[u8]) -> Self {
        let mut t = Self::default();
        t.push(b);
        t
    }

    /// Appends what fits.
    pub fn push(&mut self, b: &[u8]) {
        let room = N - self.len as usize;
        let n = b.len().min(room);
        self.bytes[self.len as usize..self.len as usize + n].copy_from_slice(&b[..n]);
        self.len += n as u16;
        if n < b.len() {
            self.truncated = true;
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The text, with bytes that are not UTF-8 replaced.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// TLS GREASE values (RFC 8701): 0x0a0a, 0x1a1a, … 0xfafa, ignored everywhere by JA4.
#[inline]
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// A big-endian reader over a slice that never panics: every read past the end is `None`.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b }
    }
    pub fn remaining(&self) -> usize {
        self.b.len()
    }
    pub fn rest(&self) -> &'a [u8] {
        self.b
    }
    pub fn u8(&mut self) -> Option<u8> {
        let (&x, rest) = self.b.split_first()?;
        self.b = rest;
        Some(x)
    }
    pub fn u16(&mut self) -> Option<u16> {
        let x = self.b.get(..2)?;
        self.b = &self.b[2..];
        Some(u16::from_be_bytes([x[0], x[1]]))
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let x = self.b.get(..n)?;
        self.b = &self.b[n..];
        Some(x)
    }
    /// A vector with a `len_bytes`-byte length prefix (1 or 2).
    pub fn vec(&mut self, len_bytes: u8) -> Option<Reader<'a>> {
        let n = match len_bytes {
            1 => self.u8()? as usize,
            _ => self.u16()? as usize,
        };
        self.take(n).map(Reader::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grease_values() {
        let all: Vec<u16> = (0..=0xffffu16).filter(|&v| is_grease(v)).collect();
        assert_eq!(all.len(), 16);
        assert_eq!(all[0], 0x0a0a);
        assert_eq!(all[15], 0xfafa);
    }

    #[test]
    fn bounded_text_cuts_and_says_so() {
        let mut t = BoundedText::<4>::new(b"ab");
        assert!(!t.truncated);
        t.push(b"cdef");
        assert_eq!(t.as_bytes(), b"abcd");
        assert!(t.truncated);
    }
}

#[cfg(test)]
mod size_tests {
    /// The per-flow memory README states: keep it true.
    #[test]
    fn per_flow_memory_is_what_the_docs_say() {
        let slot = std::mem::size_of::<Option<Box<ipfix_export::AppRecord>>>();
        let record = std::mem::size_of::<ipfix_export::AppRecord>();
        eprintln!("per-flow app memory: slot {slot}, record {record} + its text");
        assert_eq!((slot, record), (8, 120));
    }
}
