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
//! dir      := "src" | "dst"
//! ```
//!
//! As in pcap-filter(7), `and` and `or` have the same precedence and group from the left
//! (`a or b and c` is `(a or b) and c`); `not` binds tightest; use parentheses. `host` and
//! `net` without a direction match either address, `port` either port; `port` matches TCP,
//! UDP, SCTP, DCCP and UDP-Lite only. `vlan N` matches the outer or the inner (QinQ) tag.
//! A frame that could not be decoded matches only `all`.
//!
//! A bad expression fails when the probe starts, with the column of the error.

use crate::wire::FrameSummary;
use std::net::IpAddr;

/// Where a primitive looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Src,
    Dst,
    Either,
}

/// A compiled expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    All,
    /// `addr` masked to `len` bits, in the 16-byte form of `FrameSummary` (IPv4 in the first 4).
    Net {
        dir: Dir,
        v6: bool,
        addr: [u8; 16],
        len: u8,
    },
    Port {
        dir: Dir,
        port: u16,
    },
    Proto(u8),
    IpVersion(u8),
    Vlan(u16),
    Not(Box<Selection>),
    And(Box<Selection>, Box<Selection>),
    Or(Box<Selection>, Box<Selection>),
}

/// A syntax error and where it is (1-based column).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("--pcap-select: column {column}: {message}")]
pub struct SelectError {
    pub column: usize,
    pub message: String,
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 33 | 132 | 136)
}

fn prefix_match(a: &[u8; 16], net: &[u8; 16], len: u8) -> bool {
    let full = (len / 8) as usize;
    if a[..full] != net[..full] {
        return false;
    }
    let rem = len % 8;
    rem == 0 || (a[full] ^ net[full]) & (0xffu8 << (8 - rem)) == 0
}

impl Selection {
    pub fn parse(text: &str) -> Result<Selection, SelectError> {
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

    /// Does a decoded frame match? (A frame that could not be decoded matches only `All`.)
    #[inline]
    pub fn matches(&self, s: &FrameSummary) -> bool {
        match self {
            Selection::All => true,
            Selection::Net { dir, v6, addr, len } => {
                (s.ip_version == 6) == *v6
                    && match dir {
                        Dir::Src => prefix_match(&s.src_addr, addr, *len),
                        Dir::Dst => prefix_match(&s.dst_addr, addr, *len),
                        Dir::Either => {
                            prefix_match(&s.src_addr, addr, *len)
                                || prefix_match(&s.dst_addr, addr, *len)
                        }
                    }
            }
            Selection::Port { dir, port } => {
                has_ports(s.protocol)
                    && match dir {
                        Dir::Src => s.src_port == *port,
                        Dir::Dst => s.dst_port == *port,
                        Dir::Either => s.src_port == *port || s.dst_port == *port,
                    }
            }
            Selection::Proto(p) => s.protocol == *p,
            Selection::IpVersion(v) => s.ip_version == *v,
            Selection::Vlan(v) => s.vlan_id == *v || s.customer_vlan_id == *v,
            Selection::Not(e) => !e.matches(s),
            Selection::And(a, b) => a.matches(s) && b.matches(s),
            Selection::Or(a, b) => a.matches(s) || b.matches(s),
        }
    }

    /// Whether the expression keeps every frame (then frames are kept without decoding).
    pub fn is_all(&self) -> bool {
        matches!(self, Selection::All)
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
        } else if c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/' | '-' | '_') {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || matches!(chars[i], '.' | ':' | '/' | '-' | '_'))
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

    /// Is the next primitive a port (`port N`, `src port N`, `dst port N`)?
    fn port_follows(&self) -> bool {
        let at = |i: usize| self.tokens.get(self.pos + i).map(|t| t.text.as_str());
        at(0) == Some("port") || (matches!(at(0), Some("src" | "dst")) && at(1) == Some("port"))
    }

    fn expr(&mut self) -> Result<Selection, SelectError> {
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
                Selection::And(Box::new(left), Box::new(right))
            } else {
                Selection::Or(Box::new(left), Box::new(right))
            };
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Selection, SelectError> {
        match self.peek() {
            Some("not") => {
                self.pos += 1;
                Ok(Selection::Not(Box::new(self.term()?)))
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

    fn primitive(&mut self) -> Result<Selection, SelectError> {
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
            "all" => Ok(Selection::All),
            // tcpdump's `tcp port 80`, `udp dst port 53`: a protocol qualifying a port.
            "tcp" | "udp" | "sctp" if self.port_follows() => {
                let proto = match word.as_str() {
                    "tcp" => 6,
                    "udp" => 17,
                    _ => 132,
                };
                let port = self.primitive()?;
                Ok(Selection::And(
                    Box::new(Selection::Proto(proto)),
                    Box::new(port),
                ))
            }
            "tcp" => Ok(Selection::Proto(6)),
            "udp" => Ok(Selection::Proto(17)),
            "icmp" => Ok(Selection::Proto(1)),
            "icmp6" => Ok(Selection::Proto(58)),
            "sctp" => Ok(Selection::Proto(132)),
            "ip" => Ok(Selection::IpVersion(4)),
            "ip6" => Ok(Selection::IpVersion(6)),
            "proto" => {
                let (n, c) = self.next("a protocol number")?;
                n.parse::<u8>().map(Selection::Proto).map_err(|_| SelectError {
                    column: c,
                    message: format!("'{n}' is not a protocol number (0-255)"),
                })
            }
            "vlan" => {
                let (n, c) = self.next("a VLAN id")?;
                match n.parse::<u16>() {
                    Ok(v) if v < 4096 => Ok(Selection::Vlan(v)),
                    _ => Err(SelectError {
                        column: c,
                        message: format!("'{n}' is not a VLAN id (0-4095)"),
                    }),
                }
            }
            "port" => {
                let (n, c) = self.next("a port number")?;
                n.parse::<u16>()
                    .map(|port| Selection::Port { dir, port })
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
                let mut addr = [0u8; 16];
                match ip {
                    IpAddr::V4(v) => addr[..4].copy_from_slice(&v.octets()),
                    IpAddr::V6(v) => addr.copy_from_slice(&v.octets()),
                }
                // Keep only the prefix bits, so `net 10.1.2.3/16` means 10.1.0.0/16.
                for (i, b) in addr.iter_mut().enumerate() {
                    let bits = (len as usize).saturating_sub(i * 8).min(8);
                    *b &= if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
                }
                Ok(Selection::Net {
                    dir,
                    v6: ip.is_ipv6(),
                    addr,
                    len,
                })
            }
            "and" | "or" | ")" => Err(SelectError {
                column: col,
                message: format!("expected a primitive before '{word}'"),
            }),
            other => Err(SelectError {
                column: col,
                message: format!(
                    "unknown primitive '{other}': use host, net, port, src, dst, tcp, udp, icmp, icmp6, sctp, ip, ip6, proto, vlan or all"
                ),
            }),
        }
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
        // (a or b) and c, left to right.
        let s = v4([1, 1, 1, 1], [2, 2, 2, 2], 17, 1, 2);
        assert!(!m("tcp or udp and port 80", &s));
        assert!(m("tcp or (udp and port 2)", &s));
        assert!(m("not tcp and not icmp", &s));
        assert!(m("!(tcp || icmp)", &s));
    }

    #[test]
    fn errors_name_the_column() {
        let e = Selection::parse("net 10.0.0.0/33").unwrap_err();
        assert_eq!(e.column, 5);
        assert!(e.message.contains("0 to 32"), "{e}");
        let e = Selection::parse("port 445 and hots 10.0.0.1").unwrap_err();
        assert_eq!(e.column, 14);
        assert!(e.to_string().contains("unknown primitive 'hots'"));
        let e = Selection::parse("(tcp or udp").unwrap_err();
        assert_eq!(e.column, 12);
        let e = Selection::parse("src tcp").unwrap_err();
        assert_eq!(e.column, 5);
        assert!(Selection::parse("").is_err());
        assert!(Selection::parse("port 70000")
            .unwrap_err()
            .message
            .contains("0-65535"));
        assert!(Selection::parse("tcp udp")
            .unwrap_err()
            .message
            .contains("expected 'and'"));
        assert!(Selection::parse("host 10.0.0.0/8")
            .unwrap_err()
            .message
            .contains("use 'net"));
        assert_eq!(Selection::parse("tcp $").unwrap_err().column, 5);
    }
}
