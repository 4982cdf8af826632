//! `--metrics ADDR`: the live books in Prometheus text format, for scraping.
//!
//! The main thread serves it between its other chores (a non-blocking listener polled every
//! 50 ms), so the counters are read where they live: the XDP program's maps through
//! `Steering`, the sockets' statistics by descriptor, the workers' progress atomics. One
//! request per connection, answered and closed; anything but `GET /metrics` gets a 404.

use super::{xsk, Capture, RxWatch};
use crate::pipeline::worker::WorkerProgress;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub struct Metrics {
    listener: TcpListener,
    interface: String,
}

impl Metrics {
    pub fn bind(addr: SocketAddr, interface: &str) -> std::io::Result<Metrics> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Metrics {
            listener,
            interface: interface.to_string(),
        })
    }

    /// Answers the requests waiting, if any. `reloads`: SIGHUP reloads applied and refused;
    /// `collectors`: the exporter's destinations as it last published them.
    pub fn poll(
        &self,
        captures: &[Capture],
        watch: &[RxWatch],
        workers: &[Arc<WorkerProgress>],
        reloads: (u64, u64),
        collectors: &crate::pipeline::exporter::Gauges,
    ) {
        while let Ok((mut conn, _)) = self.listener.accept() {
            let _ = conn.set_nonblocking(false);
            let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = conn.set_write_timeout(Some(Duration::from_millis(500)));
            let mut req = [0u8; 1024];
            let n = conn.read(&mut req).unwrap_or(0);
            let line = String::from_utf8_lossy(&req[..n]);
            let reply = if line.starts_with("GET /metrics ") || line.starts_with("GET / ") {
                let mut body = self.render(captures, watch, workers, reloads);
                render_collectors(&mut body, &collectors.collectors());
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            };
            let _ = conn.write_all(reply.as_bytes());
        }
    }

    fn render(
        &self,
        captures: &[Capture],
        watch: &[RxWatch],
        workers: &[Arc<WorkerProgress>],
        reloads: (u64, u64),
    ) -> String {
        let all = &self.interface;
        let mut s = String::new();
        s += "# HELP probe_reloads_total Config reloads (SIGHUP), applied or refused.\n";
        s += "# TYPE probe_reloads_total counter\n";
        let _ = writeln!(
            s,
            "probe_reloads_total{{interface=\"{all}\",result=\"applied\"}} {}",
            reloads.0
        );
        let _ = writeln!(
            s,
            "probe_reloads_total{{interface=\"{all}\",result=\"refused\"}} {}",
            reloads.1
        );
        s += "# HELP probe_capture_info How each interface captures: XDP mode, AF_XDP copy or zero-copy, and where frame timestamps come from (chosen at start).\n";
        s += "# TYPE probe_capture_info gauge\n";
        for c in captures {
            let _ = writeln!(
                s,
                "probe_capture_info{{interface=\"{}\",xdp_mode=\"{}\",socket_mode=\"{}\",timestamps=\"{}\",timestamps_fallback=\"{}\"}} 1",
                c.name,
                c.mode,
                if c.zero_copy { "zero-copy" } else { "copy" },
                c.steering.stamp().name(),
                !c.steering.stamp_fallbacks().is_empty()
            );
        }
        s += "# HELP probe_xdp_frames_total Frames the XDP program handled, by what it did with them.\n";
        s += "# TYPE probe_xdp_frames_total counter\n";
        for w in watch {
            let (i, q) = (&captures[w.iface].name, w.queue);
            if let Ok(c) = captures[w.iface].steering.counters(q) {
                for (outcome, v) in [
                    ("seen", c.seen),
                    ("redirected", c.redirected),
                    ("redirect_error", c.redirect_errors),
                    ("no_socket", c.no_socket),
                    ("sampled_out", c.sampled_out),
                    ("ignored", c.ignored),
                ] {
                    let _ = writeln!(
                        s,
                        "probe_xdp_frames_total{{interface=\"{i}\",queue=\"{q}\",outcome=\"{outcome}\"}} {v}"
                    );
                }
            }
        }
        s += "# HELP probe_socket_dropped_frames_total Frames the AF_XDP socket dropped, by reason.\n";
        s += "# TYPE probe_socket_dropped_frames_total counter\n";
        for w in watch {
            let (i, q) = (&captures[w.iface].name, w.queue);
            if let Ok(st) = xsk::stats_of(w.fd) {
                for (reason, v) in [
                    ("rx_ring_full", st.rx_ring_full),
                    ("rx_dropped", st.rx_dropped),
                ] {
                    let _ = writeln!(
                        s,
                        "probe_socket_dropped_frames_total{{interface=\"{i}\",queue=\"{q}\",reason=\"{reason}\"}} {v}"
                    );
                }
            }
        }
        s += "# HELP probe_worker_frames_total Frames the queue's RX thread read (and decoded).\n";
        s += "# TYPE probe_worker_frames_total counter\n";
        for w in watch {
            let (i, q) = (&captures[w.iface].name, w.queue);
            let _ = writeln!(
                s,
                "probe_worker_frames_total{{interface=\"{i}\",queue=\"{q}\"}} {}",
                w.progress.frames.load(Ordering::Relaxed)
            );
        }
        if !workers.is_empty() {
            s += "# HELP probe_handoff_dropped_total Summaries an RX thread could not hand to their metering worker (its ring was full).\n";
            s += "# TYPE probe_handoff_dropped_total counter\n";
            for w in watch {
                let (i, q) = (&captures[w.iface].name, w.queue);
                let _ = writeln!(
                    s,
                    "probe_handoff_dropped_total{{interface=\"{i}\",queue=\"{q}\"}} {}",
                    w.progress.handoff_dropped.load(Ordering::Relaxed)
                );
            }
            s += "# HELP probe_metering_summaries_total Frame summaries a metering worker took.\n";
            s += "# TYPE probe_metering_summaries_total counter\n";
            for (n, p) in workers.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "probe_metering_summaries_total{{worker=\"{n}\"}} {}",
                    p.summaries.load(Ordering::Relaxed)
                );
            }
        }
        s += "# HELP probe_flows_active Flows in a cache: a queue's (one hop) or a metering worker's (fan-out).\n";
        s += "# TYPE probe_flows_active gauge\n";
        if workers.is_empty() {
            for w in watch {
                let (i, q) = (&captures[w.iface].name, w.queue);
                let _ = writeln!(
                    s,
                    "probe_flows_active{{interface=\"{i}\",queue=\"{q}\"}} {}",
                    w.progress.flows_active.load(Ordering::Relaxed)
                );
            }
        }
        for (n, p) in workers.iter().enumerate() {
            let _ = writeln!(
                s,
                "probe_flows_active{{worker=\"{n}\"}} {}",
                p.flows_active.load(Ordering::Relaxed)
            );
        }
        s
    }
}

/// Per collector: records delivered and not, and its spool. Published by the exporter once a
/// second, so a scrape may be up to a second behind.
fn render_collectors(s: &mut String, reports: &[ipfix_export::DestinationReport]) {
    if reports.is_empty() {
        return;
    }
    let rows = |s: &mut String,
                name: &str,
                kind: &str,
                help: &str,
                v: &dyn Fn(&ipfix_export::DestinationReport) -> Option<u64>| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for r in reports {
            if let Some(x) = v(r) {
                let _ = writeln!(s, "{name}{{collector=\"{}\"}} {x}", r.url);
            }
        }
    };
    rows(s, "probe_export_records_sent_total", "counter", "Flow records the collector's transport took (UDP sent, TCP/SCTP/TLS acknowledged, file written).", &|r| Some(r.records_sent));
    rows(s, "probe_export_records_not_sent_total", "counter", "Flow records that did not reach the collector, for any reason (its RFC 7011 notSentFlowTotalCount).", &|r| Some(r.not_sent.flows));
    rows(
        s,
        "probe_spool_pending_records",
        "gauge",
        "Flow records in the collector's spool not yet acknowledged.",
        &|r| r.spool.as_ref().map(|p| p.pending.flows.flows),
    );
    rows(s, "probe_spool_replayed_records_total", "counter", "Flow records delivered from the spool after waiting there (the collector was away, or an earlier run left them).", &|r| r.spool.as_ref().map(|p| p.replayed.flows.flows));
    rows(
        s,
        "probe_spool_bytes",
        "gauge",
        "Bytes of the collector's spool on disk.",
        &|r| r.spool.as_ref().map(|p| p.bytes),
    );
    let name = "probe_spool_dropped_records_total";
    let _ = writeln!(s, "# HELP {name} Flow records the spool dropped, by reason: full (its policy), expired (spool-age), disk (neither disk nor memory could take them).\n# TYPE {name} counter");
    for r in reports {
        if let Some(p) = &r.spool {
            for (reason, t) in [
                ("full", p.dropped_full),
                ("expired", p.dropped_expired),
                ("disk", p.dropped_disk),
            ] {
                let _ = writeln!(
                    s,
                    "{name}{{collector=\"{}\",reason=\"{reason}\"}} {}",
                    r.url, t.flows.flows
                );
            }
        }
    }
}
