//! Where finished messages go: collector URLs and the UDP sender.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

/// A collector, as the user names it on the command line (`udp://HOST:PORT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Udp(SocketAddr),
}

/// Why a collector URL was refused; the message says how to write it instead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("'{0}' is not a collector URL: write udp://HOST:PORT, e.g. udp://127.0.0.1:4739 or udp://[::1]:4739")]
    Syntax(String),
    #[error("'{url}': the {scheme} transport is not available yet; use udp://HOST:PORT")]
    UnsupportedScheme { url: String, scheme: String },
    #[error("'{url}': port must be a number from 1 to 65535")]
    BadPort { url: String },
    #[error("'{url}': cannot resolve host '{host}': {reason}")]
    Resolve {
        url: String,
        host: String,
        reason: String,
    },
}

impl Destination {
    /// Parses `udp://HOST:PORT`; HOST may be a name, an IPv4 address or a bracketed IPv6 address.
    pub fn parse(url: &str) -> Result<Destination, UrlError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| UrlError::Syntax(url.into()))?;
        match scheme {
            "udp" => {}
            "tcp" | "sctp" | "file" | "netflow9" | "netflow5" => {
                return Err(UrlError::UnsupportedScheme {
                    url: url.into(),
                    scheme: scheme.into(),
                })
            }
            _ => return Err(UrlError::Syntax(url.into())),
        }
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| UrlError::Syntax(url.into()))?;
        let port: u16 = match port.parse() {
            Ok(p) if p > 0 => p,
            _ => return Err(UrlError::BadPort { url: url.into() }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(UrlError::Syntax(url.into()));
        }
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| UrlError::Resolve {
                url: url.into(),
                host: host.into(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| UrlError::Resolve {
                url: url.into(),
                host: host.into(),
                reason: "no address".into(),
            })?;
        Ok(Destination::Udp(addr))
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Udp(a) => write!(f, "udp://{a}"),
        }
    }
}

/// Counters of one UDP sender.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendStats {
    pub messages_sent: u64,
    pub octets_sent: u64,
    /// Messages the kernel refused (for instance ECONNREFUSED after the collector's port closed).
    pub messages_lost: u64,
}

/// Sends each message as one datagram to one collector. A send error never stops the exporter:
/// the message is counted as lost and the next one is tried.
pub struct UdpSender {
    socket: UdpSocket,
    dest: SocketAddr,
    stats: SendStats,
    last_error: Option<io::ErrorKind>,
}

impl UdpSender {
    pub fn connect(dest: SocketAddr) -> io::Result<UdpSender> {
        let bind: SocketAddr = if dest.is_ipv6() {
            "[::]:0".parse().unwrap()
        } else {
            "0.0.0.0:0".parse().unwrap()
        };
        let socket = UdpSocket::bind(bind)?;
        socket.connect(dest)?;
        Ok(UdpSender {
            socket,
            dest,
            stats: SendStats::default(),
            last_error: None,
        })
    }

    pub fn destination(&self) -> SocketAddr {
        self.dest
    }

    pub fn stats(&self) -> SendStats {
        self.stats
    }

    /// Sends one message. Returns the error only when it differs from the previous one, so the
    /// caller logs once per episode rather than once per message.
    pub fn send(&mut self, msg: &[u8]) -> Option<io::Error> {
        match self.socket.send(msg) {
            Ok(_) => {
                self.stats.messages_sent += 1;
                self.stats.octets_sent += msg.len() as u64;
                self.last_error = None;
                None
            }
            Err(e) => {
                self.stats.messages_lost += 1;
                let new_episode = self.last_error != Some(e.kind());
                self.last_error = Some(e.kind());
                new_episode.then_some(e)
            }
        }
    }
}

/// Spaces messages out to at most `rate` per second.
///
/// UDP has no back-pressure: a sender faster than the collector loses datagrams in the
/// collector's socket buffer, silently. A capture file can be read far faster than any collector
/// keeps up, so offline export is paced. The pacer sleeps only when it is ahead by more than
/// [`PACER_SLACK`], so it wakes at most a few hundred times a second (sleeping per message cost
/// 0.3 s of system time per 100,000 records in the benchmark); the burst this allows (50
/// messages at 10,000/s) fits a default 212 KB socket buffer.
pub const PACER_SLACK: Duration = Duration::from_millis(5);

pub struct Pacer {
    interval: Option<Duration>,
    /// The earliest time the next message is due.
    next: Instant,
}

impl Pacer {
    /// `None` or `Some(0)`: no limit.
    pub fn new(rate: Option<u32>) -> Pacer {
        let interval = rate
            .filter(|&r| r > 0)
            .map(|r| Duration::from_secs_f64(1.0 / r as f64));
        Pacer {
            interval,
            next: Instant::now(),
        }
    }

    /// Waits, if needed, until one more message may be sent. A pause banks nothing: after one,
    /// at most [`PACER_SLACK`] worth of messages leave back to back.
    pub fn wait(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        if self.next > now + PACER_SLACK {
            std::thread::sleep(self.next - now);
        }
        self.next = self.next.max(now) + interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_collector_urls() {
        assert_eq!(
            Destination::parse("udp://127.0.0.1:4739").unwrap(),
            Destination::Udp("127.0.0.1:4739".parse().unwrap())
        );
        assert_eq!(
            Destination::parse("udp://[::1]:2055").unwrap(),
            Destination::Udp("[::1]:2055".parse().unwrap())
        );
        assert!(matches!(
            Destination::parse("udp://127.0.0.1:0"),
            Err(UrlError::BadPort { .. })
        ));
        assert!(matches!(
            Destination::parse("127.0.0.1:4739"),
            Err(UrlError::Syntax(_))
        ));
        assert!(matches!(
            Destination::parse("tcp://127.0.0.1:4739"),
            Err(UrlError::UnsupportedScheme { .. })
        ));
    }

    #[test]
    fn pacer_spaces_messages() {
        let mut p = Pacer::new(Some(2000));
        let t = Instant::now();
        for _ in 0..100 {
            p.wait();
        }
        // 100 messages at 2000/s: the first leaves at once, the slack lets 10 more through
        // (5 ms at 2000/s), the other 89 are spaced 0.5 ms apart: at least 44.5 ms. Sleeping
        // never returns early, so a busy machine can only make this longer.
        assert!(
            t.elapsed() >= Duration::from_micros(44_000),
            "{:?}",
            t.elapsed()
        );
        let mut unlimited = Pacer::new(None);
        let t = Instant::now();
        for _ in 0..100_000 {
            unlimited.wait();
        }
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn sends_datagrams_and_counts_refusals() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut tx = UdpSender::connect(rx.local_addr().unwrap()).unwrap();
        assert!(tx.send(b"hello").is_none());
        let mut buf = [0u8; 16];
        assert_eq!(rx.recv(&mut buf).unwrap(), 5);
        drop(rx);
        // The first send after the port closed provokes ICMP port unreachable; a later one
        // reports ECONNREFUSED. Either way, nothing panics and losses are counted.
        for _ in 0..5 {
            tx.send(b"x");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let s = tx.stats();
        assert_eq!(s.messages_sent + s.messages_lost, 6);
        assert!(s.messages_lost >= 1);
    }
}
