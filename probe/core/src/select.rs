//! Which packets the PCAP ring keeps: a small, tcpdump-like expression language.
//!
//! ```text
//! expr     := term (("and" | "&&" | "or" | "||") term)*      left to right, as in tcpdump
//! term     := ("not" | "!") term | "(" expr ")" | primitive
//! primitive:= "all"
//!           | [dir] "host" ADDR | [dir] "net" CIDR | [dir] "port" N
//!           | ("tcp" | "udp" | "sctp") [[dir] "port" N]
//!           | "icmp" | "icmp6" | "ip" | "ip6" | "proto" N
//!           | "vlan" N
//!           | "tunnel" | "vni" N | "erspan" "session" N | "gtp" "teid" N | "gre" "key" N
//!           | "outer" [dir] ("host" ADDR | "net" CIDR)
//!           | "sni" NAME | "dns" "name" NAME | "http" "host" NAME | "ja4" FINGERPRINT
//! dir      := "src" | "dst"
//! NAME     := a name (exact, any case) | "*." name (that name and every name under it)
//! ```
//!
//! As in pcap-filter(7), `and` and `or` have the same precedence and group from the left
//! (`a or b and c` is `(a or b) and c`); `not` binds tightest; use parentheses. `host` and
//! `net` without a direction match either address, `port` either port; `port` matches TCP,
//! UDP, SCTP, DCCP and UDP-Lite only. `vlan N` matches the outer or the inner (QinQ) tag.
//! A frame that could not be decoded matches only `all`.
//!
//! Every primitive but the tunnel ones looks at the innermost packet, the one that is metered
//! (`host 10.0.0.5` finds that host inside VXLAN, ERSPAN or GTP-U as well as bare). `tunnel`
//! matches any frame that came through one (PPPoE included); `vni N` a VXLAN or Geneve VNI, `erspan session N`
//! an ERSPAN II/III session, `gtp teid N` a GTP-U TEID, `gre key N` a GRE key or NVGRE VSID,
//! each at the outermost or innermost tunnel; `outer host`/`outer net` the endpoints of the
//! outermost tunnel (the mirroring switch, the VTEPs).
//!
//! The name primitives are flow-aware (issue #15): `sni` is a TLS or QUIC ClientHello's
//! server name, `dns name` a DNS query's first question, `http host` an HTTP request's Host
//! (without its port), `ja4` a ClientHello's JA4. They are true only on the packet that
//! carries that field, and such a packet that makes the whole expression true marks its flow:
//! every later packet of the flow, in both directions, is kept (see `ring::Marks`), and with
//! `--pcap-lookback N` the flow's first N packets too. The parsers they need run even when
//! `--app` does not export their fields.
//!
//! A bad expression fails when the probe starts, with the column of the error.

use crate::app::{AppFact, AppSet};
use crate::wire::{FrameSummary, TunnelKind};
use std::cell::Cell;
use std::net::IpAddr;

/// A name in a name primitive: exact, or `*.example.com` for example.com and every name
/// under it; compared without regard to case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern {
    /// Lower case, without the `*.`.
    name: String,
    wildcard: bool,
}

impl NamePattern {
    fn parse(text: &str) -> NamePattern {
        match text.strip_prefix("*.") {
            Some(rest) => NamePattern {
                name: rest.to_ascii_lowercase(),
                wildcard: true,
            },
            None => NamePattern {
                name: text.to_ascii_lowercase(),
                wildcard: false,
            },
        }
    }

    pub fn matches(&self, name: &[u8]) -> bool {
        let n = self.name.as_bytes();
        if name.eq_ignore_ascii_case(n) {
            return true;
        }
        self.wildcard
            && name.len() > n.len()
            && name[name.len() - n.len()..].eq_ignore_ascii_case(n)
            && name[name.len() - n.len() - 1] == b'.'
    }
}

/// Which application field a name primitive reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameField {
    /// A TLS or QUIC ClientHello's server name.
    Sni,
    DnsName,
    HttpHost,
    Ja4,
}

/// Where a primitive looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Src,
    Dst,
    Either,
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    All,
    /// A prefix as a 128-bit value and mask over `FrameSummary`'s 16-byte address form (IPv4
    /// in the first four bytes): one AND and one compare per address.
    Net {
        dir: Dir,
        v6: bool,
        addr: u128,
        mask: u128,
    },
    Port {
        dir: Dir,
        port: u16,
    },
    Proto(u8),
    IpVersion(u8),
    Vlan(u16),
    /// Came through any tunnel.
    Tunnel,
    /// Came through a tunnel of one of these kinds with this identity.
    TunnelId(&'static [TunnelKind], u32),
    /// A prefix matched against the outermost tunnel's endpoints.
    OuterNet {
        dir: Dir,
        v6: bool,
        addr: u128,
        mask: u128,
    },
    /// A name primitive: true on a packet whose application fact has a matching field.
    Name(NameField, NamePattern),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// A syntax error and where it is (1-based column).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct SelectError {
    pub column: usize,
    pub message: String,
}

/// Whether the source, the destination or either address (as `dir` says) is in the prefix.
#[inline]
fn prefix_matches(dir: Dir, src: u128, dst: u128, addr: u128, mask: u128) -> bool {
    match dir {
        Dir::Src => src & mask == addr,
        Dir::Dst => dst & mask == addr,
        Dir::Either => src & mask == addr || dst & mask == addr,
    }
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 33 | 132 | 136)
}

/// A compiled selection. Matching runs for every packet a worker sees, so it converts the
/// frame's addresses once (prefixes are 128-bit value/mask pairs) and walks the expression
/// tree. Measured in `cargo bench --bench select` against a postfix program over a bit stack
/// and against a tree with flattened and/or chains: this plain tree was the fastest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    expr: Expr,
    /// The expression as the user wrote it (recorded with every ring file).
    text: String,
}

/// The frame's fields as the matcher reads them, converted once per frame.
struct View<'a> {
    s: &'a FrameSummary,
    v6: bool,
    src: u128,
    dst: u128,
    ports: bool,
    /// What the packet said at the application layer (name primitives read it).
    fact: Option<&'a AppFact>,
    /// Set when a name primitive was true.
    named: Cell<bool>,
}

/// What the selection says of one packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub keep: bool,
    /// Kept because a name primitive was true: its flow is marked (all its later packets
    /// kept, both directions).
    pub marks_flow: bool,
}

impl Selection {
    pub fn parse(text: &str) -> Result<Selection, SelectError> {
        Ok(Selection {
            expr: Expr::parse(text)?,
            text: text.trim().to_string(),
        })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Does a decoded frame match? (A frame that could not be decoded matches only `all`.)
    /// Name primitives are false here: see [`Selection::verdict`].
    #[inline]
    pub fn matches(&self, s: &FrameSummary) -> bool {
        self.verdict(s, None).keep
    }

    /// Does a decoded frame with its application fact (if any) match, and does it mark its
    /// flow?
    #[inline]
    pub fn verdict(&self, s: &FrameSummary, fact: Option<&AppFact>) -> Verdict {
        if let Expr::All = self.expr {
            return Verdict {
                keep: true,
                marks_flow: false,
            };
        }
        let v = View {
            s,
            v6: s.ip_version == 6,
            src: u128::from_be_bytes(s.src_addr),
            dst: u128::from_be_bytes(s.dst_addr),
            ports: has_ports(s.protocol),
            fact,
            named: Cell::new(false),
        };
        let keep = self.expr.eval(&v);
        Verdict {
            keep,
            marks_flow: keep && v.named.get(),
        }
    }

    /// The application parsers the name primitives need (empty without any).
    pub fn app_needs(&self) -> AppSet {
        let mut set = AppSet::default();
        self.expr.visit(&mut |e| {
            if let Expr::Name(f, _) = e {
                set = set.with(match f {
                    NameField::Sni | NameField::Ja4 => AppSet::TLS.with(AppSet::QUIC),
                    NameField::DnsName => AppSet::DNS,
                    NameField::HttpHost => AppSet::HTTP,
                });
            }
        });
        set
    }

    /// Whether the expression has a name primitive (flows get marked).
    pub fn is_flow_aware(&self) -> bool {
        !self.app_needs().is_empty()
    }

    /// Whether the expression keeps every frame (then frames are kept without decoding).
    pub fn is_all(&self) -> bool {
        matches!(self.expr, Expr::All)
    }
}

impl Expr {
    fn visit(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Not(e) => e.visit(f),
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.visit(f);
                b.visit(f);
            }
            _ => {}
        }
    }

    fn eval(&self, v: &View) -> bool {
        let s = v.s;
        match self {
            Expr::Name(field, pattern) => {
                let hit = v.fact.is_some_and(|f| name_matches(f, *field, pattern));
                if hit {
                    v.named.set(true);
                }
                hit
            }
            Expr::All => true,
            Expr::Net {
                dir,
                v6,
                addr,
                mask,
            } => v.v6 == *v6 && prefix_matches(*dir, v.src, v.dst, *addr, *mask),
            Expr::Port { dir, port } => {
                v.ports
                    && match dir {
                        Dir::Src => s.src_port == *port,
                        Dir::Dst => s.dst_port == *port,
                        Dir::Either => s.src_port == *port || s.dst_port == *port,
                    }
            }
            Expr::Proto(p) => s.protocol == *p,
            Expr::IpVersion(ver) => s.ip_version == *ver,
            Expr::Vlan(id) => s.vlan_id == *id || s.customer_vlan_id == *id,
            Expr::Tunnel => s.tunnel.kinds != 0,
            Expr::TunnelId(kinds, id) => s.tunnel.has(kinds, *id),
            Expr::OuterNet {
                dir,
                v6,
                addr,
                mask,
            } => {
                let t = &s.tunnel;
                let (src, dst) = (
                    u128::from_be_bytes(t.outer_src),
                    u128::from_be_bytes(t.outer_dst),
                );
                t.depth != 0
                    && (t.outer_version == 6) == *v6
                    && prefix_matches(*dir, src, dst, *addr, *mask)
            }
            Expr::Not(e) => !e.eval(v),
            Expr::And(a, b) => a.eval(v) && b.eval(v),
            Expr::Or(a, b) => a.eval(v) || b.eval(v),
        }
    }
}

impl Expr {
    pub fn parse(text: &str) -> Result<Expr, SelectError> {
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Err(SelectError {
                column: 1,
                message: "empty expression: write e.g. 'net 10.1.0.0/16 and port 445', or 'all'"
                    .into(),
            });
        }
        let mut p = Parser {
            tokens,
            pos: 0,
            end_col: text.chars().count() + 1,
        };
        let e = p.expr()?;
        if let Some(t) = p.tokens.get(p.pos) {
            return Err(SelectError {
                column: t.col,
                message: format!("unexpected '{}': expected 'and', 'or' or the end", t.text),
            });
        }
        Ok(e)
    }
}

struct Token {
    text: String,
    col: usize,
}

fn tokenize(text: &str) -> Result<Vec<Token>, SelectError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let col = i + 1;
        if c == '(' || c == ')' {
            out.push(Token {
                text: c.to_string(),
                col,
            });
            i += 1;
        } else if c == '!' {
            out.push(Token {
                text: "not".into(),
                col,
            });
            i += 1;
        } else if (c == '&' || c == '|') && chars.get(i + 1) == Some(&c) {
            out.push(Token {
                text: if c == '&' { "and" } else { "or" }.into(),
                col,
            });
            i += 2;
        } else if c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/' | '-' | '_' | '*') {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || matches!(chars[i], '.' | ':' | '/' | '-' | '_' | '*'))
            {
                i += 1;
            }
            out.push(Token {
                text: chars[start..i]
                    .iter()
                    .collect::<String>()
                    .to_ascii_lowercase(),
                col,
            });
        } else {
            return Err(SelectError {
                column: col,
                message: format!("unexpected character '{c}'"),
            });
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    end_col: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(|t| t.text.as_str())
    }

    fn col(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end_col, |t| t.col)
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, SelectError> {
        Err(SelectError {
            column: self.col(),
            message: message.into(),
        })
    }

    fn next(&mut self, what: &str) -> Result<(String, usize), SelectError> {
        match self.tokens.get(self.pos) {
            Some(t) => {
                self.pos += 1;
                Ok((t.text.clone(), t.col))
            }
            None => self.err(format!("expected {what}, found the end")),
        }
    }

    /// The next token as a number no larger than `max`.
    fn number(&mut self, what: &str, max: u32) -> Result<u32, SelectError> {
        let (n, c) = self.next(what)?;
        match n.parse::<u32>() {
            Ok(v) if v <= max => Ok(v),
            _ => Err(SelectError {
                column: c,
                message: format!("'{n}' is not {what} (0-{max})"),
            }),
        }
    }

    /// The second word of a two-word primitive (`erspan session`, `gtp teid`).
    fn keyword(&mut self, word: &str, after: &str) -> Result<(), SelectError> {
        let (w, c) = self.next(&format!("'{word}' after '{after}'"))?;
        if w == word {
            Ok(())
        } else {
            Err(SelectError {
                column: c,
                message: format!("expected '{word}' after '{after}', found '{w}'"),
            })
        }
    }

    /// A name primitive's argument: a name, or `*.` and a name.
    fn name_pattern(&mut self, what: &str) -> Result<NamePattern, SelectError> {
        let (n, c) = self.next(what)?;
        let bare = n.strip_prefix("*.").unwrap_or(&n);
        if bare.is_empty() || bare.contains('*') || matches!(n.as_str(), "and" | "or" | "not") {
            return Err(SelectError {
                column: c,
                message: format!("'{n}' is not {what}: write a name, or '*.' and a name"),
            });
        }
        Ok(NamePattern::parse(&n))
    }

    /// Is the next primitive a port (`port N`, `src port N`, `dst port N`)?
    fn port_follows(&self) -> bool {
        let at = |i: usize| self.tokens.get(self.pos + i).map(|t| t.text.as_str());
        at(0) == Some("port") || (matches!(at(0), Some("src" | "dst")) && at(1) == Some("port"))
    }

    fn expr(&mut self) -> Result<Expr, SelectError> {
        let mut left = self.term()?;
        while let Some(op) = self.peek() {
            let and = match op {
                "and" => true,
                "or" => false,
                _ => break,
            };
            self.pos += 1;
            let right = self.term()?;
            left = if and {
                Expr::And(Box::new(left), Box::new(right))
            } else {
                Expr::Or(Box::new(left), Box::new(right))
            };
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, SelectError> {
        match self.peek() {
            Some("not") => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.term()?)))
            }
            Some("(") => {
                self.pos += 1;
                let e = self.expr()?;
                match self.peek() {
                    Some(")") => {
                        self.pos += 1;
                        Ok(e)
                    }
                    _ => self.err("expected ')'"),
                }
            }
            _ => self.primitive(),
        }
    }

    fn primitive(&mut self) -> Result<Expr, SelectError> {
        let (word, col) = self.next("a primitive such as 'host', 'net', 'port', 'tcp' or 'all'")?;
        let dir = match word.as_str() {
            "src" => Some(Dir::Src),
            "dst" => Some(Dir::Dst),
            _ => None,
        };
        let (word, col) = if dir.is_some() {
            let (w, c) = self.next("'host', 'net' or 'port' after the direction")?;
            if !matches!(w.as_str(), "host" | "net" | "port") {
                return Err(SelectError {
                    column: c,
                    message: format!(
                        "expected 'host', 'net' or 'port' after the direction, found '{w}'"
                    ),
                });
            }
            (w, c)
        } else {
            (word, col)
        };
        let dir = dir.unwrap_or(Dir::Either);
        match word.as_str() {
            "all" => Ok(Expr::All),
            // tcpdump's `tcp port 80`, `udp dst port 53`: a protocol qualifying a port.
            "tcp" | "udp" | "sctp" if self.port_follows() => {
                let proto = match word.as_str() {
                    "tcp" => 6,
                    "udp" => 17,
                    _ => 132,
                };
                let port = self.primitive()?;
                Ok(Expr::And(
                    Box::new(Expr::Proto(proto)),
                    Box::new(port),
                ))
            }
            "tcp" => Ok(Expr::Proto(6)),
            "udp" => Ok(Expr::Proto(17)),
            "icmp" => Ok(Expr::Proto(1)),
            "icmp6" => Ok(Expr::Proto(58)),
            "sctp" => Ok(Expr::Proto(132)),
            "ip" => Ok(Expr::IpVersion(4)),
            "ip6" => Ok(Expr::IpVersion(6)),
            "proto" => {
                let (n, c) = self.next("a protocol number")?;
                n.parse::<u8>().map(Expr::Proto).map_err(|_| SelectError {
                    column: c,
                    message: format!("'{n}' is not a protocol number (0-255)"),
                })
            }
            "vlan" => {
                let (n, c) = self.next("a VLAN id")?;
                match n.parse::<u16>() {
                    Ok(v) if v < 4096 => Ok(Expr::Vlan(v)),
                    _ => Err(SelectError {
                        column: c,
                        message: format!("'{n}' is not a VLAN id (0-4095)"),
                    }),
                }
            }
            "port" => {
                let (n, c) = self.next("a port number")?;
                n.parse::<u16>()
                    .map(|port| Expr::Port { dir, port })
                    .map_err(|_| SelectError {
                        column: c,
                        message: format!("'{n}' is not a port number (0-65535)"),
                    })
            }
            "host" | "net" => {
                let (a, c) = self.next("an address")?;
                let bad = |m: String| SelectError { column: c, message: m };
                let (addr_s, len_s) = match a.split_once('/') {
                    Some((x, y)) => (x, Some(y)),
                    None => (a.as_str(), None),
                };
                if word == "host" && len_s.is_some() {
                    return Err(bad(format!("'host' takes an address, not a prefix: use 'net {a}'")));
                }
                let ip: IpAddr = addr_s
                    .parse()
                    .map_err(|_| bad(format!("'{addr_s}' is not an IPv4 or IPv6 address")))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let len = match len_s {
                    None => max,
                    Some(l) => match l.parse::<u8>() {
                        Ok(n) if n <= max => n,
                        _ => return Err(bad(format!("prefix length '{l}' must be 0 to {max}"))),
                    },
                };
                let mut bytes = [0u8; 16];
                match ip {
                    IpAddr::V4(v) => bytes[..4].copy_from_slice(&v.octets()),
                    IpAddr::V6(v) => bytes.copy_from_slice(&v.octets()),
                }
                // Keep only the prefix bits, so `net 10.1.2.3/16` means 10.1.0.0/16.
                let mask = if len == 0 { 0 } else { u128::MAX << (128 - len as u32) };
                Ok(Expr::Net {
                    dir,
                    v6: ip.is_ipv6(),
                    addr: u128::from_be_bytes(bytes) & mask,
                    mask,
                })
            }
            "sni" => self.name_pattern("a server name").map(|p| Expr::Name(NameField::Sni, p)),
            "ja4" => self
                .name_pattern("a JA4 fingerprint")
                .map(|p| Expr::Name(NameField::Ja4, p)),
            "dns" => {
                self.keyword("name", "dns")?;
                self.name_pattern("a DNS name")
                    .map(|p| Expr::Name(NameField::DnsName, p))
            }
            "http" => {
                self.keyword("host", "http")?;
                self.name_pattern("an HTTP host")
                    .map(|p| Expr::Name(NameField::HttpHost, p))
            }
            "tunnel" => Ok(Expr::Tunnel),
            "vni" => self
                .number("a VNI", 0xff_ffff)
                .map(|n| Expr::TunnelId(&[TunnelKind::Vxlan, TunnelKind::Geneve], n)),
            "erspan" => {
                self.keyword("session", "erspan")?;
                self.number("an ERSPAN session id", 0x3ff)
                    .map(|n| Expr::TunnelId(&[TunnelKind::ErspanII, TunnelKind::ErspanIII], n))
            }
            "gtp" => {
                self.keyword("teid", "gtp")?;
                self.number("a TEID", u32::MAX)
                    .map(|n| Expr::TunnelId(&[TunnelKind::GtpU], n))
            }
            "gre" => {
                self.keyword("key", "gre")?;
                self.number("a GRE key", u32::MAX)
                    .map(|n| Expr::TunnelId(&[TunnelKind::Gre, TunnelKind::Nvgre], n))
            }
            "outer" => match self.primitive()? {
                Expr::Net {
                    dir,
                    v6,
                    addr,
                    mask,
                } => Ok(Expr::OuterNet {
                    dir,
                    v6,
                    addr,
                    mask,
                }),
                _ => Err(SelectError {
                    column: col,
                    message: "'outer' takes 'host ADDR' or 'net CIDR' (with src/dst if wanted)"
                        .into(),
                }),
            },
            "and" | "or" | ")" => Err(SelectError {
                column: col,
                message: format!("expected a primitive before '{word}'"),
            }),
            other => Err(SelectError {
                column: col,
                message: format!(
                    "unknown primitive '{other}': use host, net, port, src, dst, tcp, udp, icmp, icmp6, sctp, ip, ip6, proto, vlan, tunnel, vni, erspan session, gtp teid, gre key, outer, sni, dns name, http host, ja4 or all"
                ),
            }),
        }
    }
}

/// Whether `fact` has the field `field` and it matches.
fn name_matches(fact: &AppFact, field: NameField, p: &NamePattern) -> bool {
    match (field, fact) {
        (NameField::Sni, AppFact::TlsClient(h)) => {
            h.sni.as_ref().is_some_and(|n| p.matches(n.as_bytes()))
        }
        (NameField::Ja4, AppFact::TlsClient(h)) => p.matches(h.ja4.as_str().as_bytes()),
        (NameField::DnsName, AppFact::Dns(m)) => m
            .question
            .as_ref()
            .is_some_and(|q| p.matches(q.name.as_bytes())),
        (NameField::HttpHost, AppFact::HttpRequest(r)) => {
            let host = r.host.as_bytes();
            // Host carries the port when it is not the default: compare the name.
            let name = match host.iter().rposition(|&b| b == b':') {
                Some(i) if !host.contains(&b']') || host[..i].ends_with(b"]") => &host[..i],
                _ => host,
            };
            let name = name
                .strip_prefix(b"[")
                .and_then(|n| n.strip_suffix(b"]"))
                .unwrap_or(name);
            p.matches(name)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16) -> FrameSummary {
        let mut s = FrameSummary {
            ip_version: 4,
            protocol: proto,
            src_port: sport,
            dst_port: dport,
            ..Default::default()
        };
        s.src_addr[..4].copy_from_slice(&src);
        s.dst_addr[..4].copy_from_slice(&dst);
        s
    }

    fn m(expr: &str, s: &FrameSummary) -> bool {
        Selection::parse(expr).unwrap().matches(s)
    }

    #[test]
    fn primitives_and_directions() {
        let s = v4([10, 1, 2, 3], [192, 0, 2, 9], 6, 40000, 445);
        assert!(m("all", &s));
        assert!(m("net 10.1.0.0/16", &s));
        assert!(m("src net 10.1.0.0/16", &s));
        assert!(!m("dst net 10.1.0.0/16", &s));
        assert!(m("host 192.0.2.9", &s));
        assert!(!m("src host 192.0.2.9", &s));
        assert!(m("port 445 and tcp", &s));
        assert!(m("dst port 445", &s));
        assert!(!m("src port 445", &s));
        assert!(!m("udp", &s));
        assert!(m("proto 6", &s));
        assert!(m("ip and not ip6", &s));
        assert!(m("net 10.1.2.3/9", &s), "host bits of a prefix are ignored");
        assert!(!m("net 2001:db8::/32", &s), "families never cross");
        let mut icmp = v4([10, 0, 0, 1], [10, 0, 0, 2], 1, 0, 8 * 256);
        assert!(!m("port 2048", &icmp), "ICMP type/code is not a port");
        icmp.vlan_id = 100;
        icmp.customer_vlan_id = 30;
        assert!(m("vlan 100 && vlan 30 && icmp", &icmp));
    }

    #[test]
    fn ipv6_prefixes() {
        let mut s = FrameSummary {
            ip_version: 6,
            protocol: 17,
            src_port: 53,
            dst_port: 5000,
            ..Default::default()
        };
        s.src_addr = "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        s.dst_addr = "fd00::5".parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert!(m("net 2001:db8::/32 and udp port 53", &s));
        assert!(m("udp src port 53", &s));
        assert!(!m("tcp port 53", &s));
        assert!(m("host 2001:db8::1", &s));
        assert!(m("dst net fd00::/8", &s));
        assert!(!m("ip", &s));
    }

    #[test]
    fn precedence_is_tcpdumps() {
        // (a or b) and c, left to right, as tcpdump groups them; each expression gives the
        // other answer under C-style precedence (and before or), so either grouping bug fails.
        let s = v4([1, 1, 1, 1], [2, 2, 2, 2], 17, 1, 2);
        assert!(!m("udp or tcp and port 80", &s)); // C-style: udp or (tcp and port 80) = true
        assert!(!m("port 2 or tcp and icmp", &s)); // C-style: port 2 or (tcp and icmp) = true
        assert!(m("tcp and port 80 or udp", &s)); // both: (tcp and port 80) or udp = true
        assert!(m("tcp or (udp and port 2)", &s));
        assert!(m("not tcp and not icmp", &s));
        assert!(m("!(tcp || icmp)", &s));
    }

    #[test]
    fn errors_name_the_column() {
        let e = Expr::parse("net 10.0.0.0/33").unwrap_err();
        assert_eq!(e.column, 5);
        assert!(e.message.contains("0 to 32"), "{e}");
        let e = Expr::parse("port 445 and hots 10.0.0.1").unwrap_err();
        assert_eq!(e.column, 14);
        assert!(e.to_string().contains("unknown primitive 'hots'"));
        let e = Expr::parse("(tcp or udp").unwrap_err();
        assert_eq!(e.column, 12);
        let e = Expr::parse("src tcp").unwrap_err();
        assert_eq!(e.column, 5);
        assert!(Expr::parse("").is_err());
        assert!(Expr::parse("port 70000")
            .unwrap_err()
            .message
            .contains("0-65535"));
        assert!(Expr::parse("tcp udp")
            .unwrap_err()
            .message
            .contains("expected 'and'"));
        assert!(Expr::parse("host 10.0.0.0/8")
            .unwrap_err()
            .message
            .contains("use 'net"));
        assert_eq!(Expr::parse("tcp $").unwrap_err().column, 5);
    }
}
