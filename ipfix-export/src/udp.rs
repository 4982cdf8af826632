//! UDP collectors: one datagram per message, and a pacer, because UDP has no back-pressure.

use crate::encoder::Message;
use crate::options::FlowTotals;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Counters of one UDP sender.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendStats {
    pub messages_sent: u64,
    pub octets_sent: u64,
    /// Flow records in the messages sent.
    pub records_sent: u64,
    /// Messages the kernel refused (for instance ECONNREFUSED after the collector's port closed).
    pub messages_lost: u64,
    /// The flows, packets and octets those messages carried.
    pub not_sent: FlowTotals,
}

/// Sends each message as one datagram to one collector. A send error never stops the exporter:
/// the message is counted as lost and the next one is tried.
pub struct UdpSender {
    socket: UdpSocket,
    dest: SocketAddr,
    stats: SendStats,
    /// The last error reported, and when: the same error is reported again only after
    /// [`REPORT_AGAIN_AFTER`]. (Successes do not end an episode: with a dead collector, a UDP
    /// socket alternates between accepted datagrams and ECONNREFUSED from the ICMP reply.)
    reported: Option<(io::ErrorKind, Instant)>,
}

/// How long the same send error stays quiet after it was reported.
pub const REPORT_AGAIN_AFTER: Duration = Duration::from_secs(60);

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
            reported: None,
        })
    }

    pub fn destination(&self) -> SocketAddr {
        self.dest
    }

    pub fn stats(&self) -> SendStats {
        self.stats
    }

    /// Sends one message. Returns the error only when it is new or was last reported a while
    /// ago, so the caller logs once per episode rather than once per message.
    pub fn send(&mut self, msg: &Message<'_>) -> Option<io::Error> {
        match self.socket.send(msg) {
            Ok(_) => {
                self.stats.messages_sent += 1;
                self.stats.octets_sent += msg.len() as u64;
                self.stats.records_sent += msg.flows.flows;
                None
            }
            Err(e) => {
                self.stats.messages_lost += 1;
                self.stats.not_sent += msg.flows;
                let quiet = self
                    .reported
                    .is_some_and(|(k, at)| k == e.kind() && at.elapsed() < REPORT_AGAIN_AFTER);
                if quiet {
                    return None;
                }
                self.reported = Some((e.kind(), Instant::now()));
                Some(e)
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

    /// Whether a message may leave at `now` without waiting (the non-blocking side, for an
    /// exporter that queues what must wait instead of sleeping).
    pub fn ready(&self, now: Instant) -> bool {
        self.interval.is_none() || self.next <= now + PACER_SLACK
    }

    /// How long from `now` until [`Self::ready`].
    pub fn until_ready(&self, now: Instant) -> Duration {
        match self.interval {
            None => Duration::ZERO,
            Some(_) => self.next.saturating_duration_since(now + PACER_SLACK),
        }
    }

    /// Counts one message sent at `now` without waiting for its turn.
    pub fn spend(&mut self, now: Instant) {
        if let Some(interval) = self.interval {
            self.next = self.next.max(now) + interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let msg = |b: &'static [u8]| Message {
            bytes: b,
            templates: false,
            data_records: 1,
            flows: FlowTotals {
                flows: 1,
                packets: 2,
                octets: 3,
            },
        };
        assert!(tx.send(&msg(b"hello")).is_none());
        let mut buf = [0u8; 16];
        assert_eq!(rx.recv(&mut buf).unwrap(), 5);
        drop(rx);
        // The first send after the port closed provokes ICMP port unreachable; a later one
        // reports ECONNREFUSED. Either way, nothing panics and losses are counted.
        for _ in 0..5 {
            tx.send(&msg(b"x"));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let s = tx.stats();
        assert_eq!(s.messages_sent + s.messages_lost, 6);
        assert!(s.messages_lost >= 1);
        assert_eq!(s.not_sent.packets, 2 * s.messages_lost);
    }
}
