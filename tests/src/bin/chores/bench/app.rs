//! `cargo xtask bench --app-only` (and part of the full run): what the application parsers
//! (issue #15) cost. `probe read` with `--app all --community-id` against `probe read`
//! without, exporting IPFIX to a file, on two captures, measured alternately in the same run:
//!
//! - the 2M-packet benchmark capture (zero-filled payloads, UDP to port 53 and TCP to 443: the
//!   DNS parser reads every datagram and finds no question, the others turn every segment
//!   away on its first bytes);
//! - a capture rich in what they read, generated here: per round two DNS exchanges (query and
//!   answer), a TLS conversation (ClientHello, ServerHello, data; ten frames), a QUIC
//!   connection (a client Initial of 1,200 bytes that must be decrypted, a server Initial, 16
//!   short-header packets) and an HTTP/1.1 conversation (ten frames). 42 frames and five
//!   flows per round, each flow with its own addresses: every flow is parsed and short, the
//!   worst case for the parsers;
//! - the same with 40 more data packets in each TLS, HTTP and QUIC connection (162 frames per
//!   round), closer to real connections.

use super::{measure, probe_read, Measured, RUNS};
use anyhow::{bail, Result};
use e2e::capture::{PcapWriter, LINKTYPE_ETHERNET};
use e2e::craft::{tcp_exchange, udp4};
use e2e::hello::{client_hello, crypto_frame, record, server_hello};
use std::path::Path;

const BASE_NS: u64 = 1_700_000_000_000_000_000;

pub fn run(probe: &Path, tmp: &Path, packets: u64, flows: u32) -> Result<()> {
    let plain = tmp.join("app-plain.pcap");
    super::generate(&plain, packets, flows)?;
    let rich = tmp.join("app-rich.pcap");
    let rich_packets = generate_rich(&rich, RICH_ROUNDS, 0)?;
    let long = tmp.join("app-rich-long.pcap");
    let long_packets = generate_rich(&long, LONG_ROUNDS, 40)?;
    println!(
        "\n| `probe read` (median of {RUNS}) | CPU s per M packets, parsers off | `--app all` | more CPU per packet | `--app all --community-id` | more CPU per packet | peak RSS MB off / all / all+cid | records |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let configs: [&[&str]; 3] = [&[], &["--app", "all"], &["--app", "all", "--community-id"]];
    for (name, pcap, n) in [
        ("2M benchmark capture", &plain, packets),
        ("rich capture, handshakes only", &rich, rich_packets),
        (
            "rich capture, 40 more packets per connection",
            &long,
            long_packets,
        ),
    ] {
        let mut runs: Vec<Vec<Measured>> = vec![vec![]; configs.len()];
        let mut records = vec![0u64; configs.len()];
        for i in 0..RUNS {
            for (c, extra) in configs.iter().enumerate() {
                let out = tmp.join(format!("app-{i}-{c}.ipfix"));
                let stats = tmp.join(format!("app-{i}-{c}.json"));
                let mut cmd = probe_read(probe, pcap, &format!("file://{}", out.display()));
                cmd.arg("--stats-json").arg(&stats).args(*extra);
                let m = measure(&mut cmd)?;
                let books: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
                records[c] = books["flows"]["records"].as_u64().unwrap_or(0);
                runs[c].push(m);
                std::fs::remove_file(&out)?;
            }
        }
        if records.iter().any(|&r| r != records[0]) {
            bail!("{name}: the parsers changed the records: {records:?}");
        }
        let median = |v: &[Measured]| {
            let mut c: Vec<f64> = v.iter().map(|m| m.user + m.sys).collect();
            c.sort_by(f64::total_cmp);
            c[c.len() / 2]
        };
        let rss =
            |v: &[Measured]| v.iter().map(|m| m.max_rss_kb).max().unwrap_or(0) as f64 / 1024.0;
        let cpu: Vec<f64> = runs.iter().map(|r| median(r)).collect();
        let per_m = |c: f64| c / (n as f64 / 1e6);
        println!(
            "| {name} ({n} packets) | {:.3} | {:.3} | {:+.1} % | {:.3} | {:+.1} % | {:.0} / {:.0} / {:.0} | {} |",
            per_m(cpu[0]),
            per_m(cpu[1]),
            (cpu[1] / cpu[0] - 1.0) * 100.0,
            per_m(cpu[2]),
            (cpu[2] / cpu[0] - 1.0) * 100.0,
            rss(&runs[0]),
            rss(&runs[1]),
            rss(&runs[2]),
            records[0]
        );
    }
    per_parser(probe, tmp, &long, long_packets)?;
    for f in [&plain, &rich, &long] {
        std::fs::remove_file(f)?;
    }
    Ok(())
}

/// Rounds of the two rich captures (252,000 and 324,000 packets). Larger ones hold more flows
/// at once, and on this VM the CPU time of such memory-heavy runs varied by a third from run
/// to run; at this size it varies by a few per cent.
pub const RICH_ROUNDS: u32 = 6_000;
pub const LONG_ROUNDS: u32 = 2_000;

/// Each parser alone against none, on the capture with 40 more packets per connection: what
/// one parsed connection costs the whole process (parsing, the flow's fields, their export),
/// and how many packets a connection of that kind must carry for its parser to stay within
/// the 15 % budget.
fn per_parser(probe: &Path, tmp: &Path, pcap: &Path, packets: u64) -> Result<()> {
    const N: usize = 7;
    // Parsed connections of each kind in the capture: per round two DNS exchanges, one TLS,
    // one QUIC and one HTTP connection.
    let kinds: [(&str, u64); 4] = [
        ("dns", 2 * LONG_ROUNDS as u64),
        ("tls", LONG_ROUNDS as u64),
        ("quic", LONG_ROUNDS as u64),
        ("http", LONG_ROUNDS as u64),
    ];
    let mut cpu: Vec<Vec<f64>> = vec![vec![]; kinds.len() + 1];
    for i in 0..N {
        for c in 0..=kinds.len() {
            let out = tmp.join(format!("app-p{i}-{c}.ipfix"));
            let mut cmd = probe_read(probe, pcap, &format!("file://{}", out.display()));
            if c > 0 {
                cmd.args(["--app", kinds[c - 1].0]);
            }
            let m = measure(&mut cmd)?;
            cpu[c].push(m.user + m.sys);
            std::fs::remove_file(&out)?;
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let off = median(&mut cpu[0]);
    let per_packet_us = off / packets as f64 * 1e6;
    println!(
        "\nEach parser alone, `--app X` against none, on the capture with 40 more packets per \
         connection (median of {N}; {per_packet_us:.3} µs of CPU per packet without parsers):\n"
    );
    println!("| `--app` | parsed connections | more CPU, µs per parsed connection | packets per connection at which that is 15 % |");
    println!("|---|---|---|---|");
    for (k, (name, conns)) in kinds.iter().enumerate() {
        let extra_us = (median(&mut cpu[k + 1]) - off) / *conns as f64 * 1e6;
        println!(
            "| {name} | {conns} | {extra_us:.2} | {:.0} |",
            extra_us / (0.15 * per_packet_us)
        );
    }
    Ok(())
}

/// A small deterministic generator (xorshift64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A query, or its answer with one address.
fn dns(id: u16, response: bool, name: &str) -> Vec<u8> {
    e2e::craft::dns_message(id, name, 1, response.then_some((0, &[[192, 0, 2, 1]][..])))
}

/// Writes `rounds` rounds of the rich mix; returns the frames written.
pub fn generate_rich(path: &Path, rounds: u32, extra: u32) -> Result<u64> {
    let mut w = PcapWriter::create(path, LINKTYPE_ETHERNET, true)?;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut frames: Vec<(u64, Vec<u8>)> = vec![];
    let step = 20_000_000_000 / rounds as u64;
    for r in 0..rounds {
        let t0 = BASE_NS + r as u64 * step;
        let c = [10, 100 + (r >> 16) as u8, (r >> 8) as u8, r as u8];
        let s = [10, 200, (r >> 8) as u8, r as u8];
        let site = format!("www{}.example{}.com", r % 977, r % 13);
        for (k, name) in [site.as_str(), "time.example.org"].into_iter().enumerate() {
            let sport = 30000 + k as u16;
            frames.push((t0, udp4(c, sport, s, 53, &dns(r as u16, false, name))));
            frames.push((
                t0 + 200_000,
                udp4(s, 53, c, sport, &dns(r as u16, true, name)),
            ));
        }
        let cs = |x: [u8; 4]| format!("{}.{}.{}.{}", x[0], x[1], x[2], x[3]);
        let tls = tcp_exchange(
            (&cs(c), 40000),
            (&cs(s), 443),
            &record(&client_hello(&site, &["h2", "http/1.1"], 0, false)),
            &record(&server_hello()),
            t0 + 1_000_000,
        );
        let http = tcp_exchange(
            (&cs(c), 40001),
            (&cs(s), 80),
            format!("GET /index.html?r={r} HTTP/1.1\r\nHost: {site}\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n\r\n").as_bytes(),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 900\r\n\r\n",
            t0 + 2_000_000,
        );
        for conv in [tls, http] {
            // `extra` more data frames (copies of the two data frames, alternating) before the
            // FINs, 100 µs apart.
            let (head, tail) = conv.split_at(7);
            frames.extend(head.iter().map(|f| (f.ts_ns, f.data.clone())));
            for k in 0..extra as u64 {
                let f = &head[5 + (k % 2) as usize];
                frames.push((f.ts_ns + 1_000 + k * 100_000, f.data.clone()));
            }
            let shift = extra as u64 * 100_000;
            frames.extend(tail.iter().map(|f| (f.ts_ns + shift, f.data.clone())));
        }
        // QUIC: the client's Initial (decrypted by the probe), the server's (tried, fails),
        // then 16 short-header packets.
        let dcid = rng.bytes(8);
        let hello = client_hello(&site, &["h3"], 0, true);
        let mut payload = crypto_frame(0, &hello);
        payload.resize(1200 - 14 - dcid.len() - 16, 0);
        let initial =
            probe_core::app::quic::protect_initial(probe_core::app::quic::V1, &dcid, 0, &payload);
        let t = t0 + 3_000_000;
        frames.push((t, udp4(c, 50000, s, 443, &initial)));
        let mut server = vec![0xc1, 0, 0, 0, 1, 8];
        server.extend(rng.bytes(8));
        server.extend_from_slice(&[8]);
        server.extend(dcid.iter());
        server.push(0); // no token
        let length = 1200 - server.len() - 2;
        server.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
        server.extend(rng.bytes(length));
        frames.push((t + 300_000, udp4(s, 443, c, 50000, &server)));
        for i in 0..16 + extra as u64 {
            let mut short = vec![0x40 | (rng.next() as u8 & 0x1f)];
            short.extend(rng.bytes(if i % 2 == 0 { 1100 } else { 60 }));
            let (a, ap, b, bp) = if i % 2 == 0 {
                (s, 443, c, 50000)
            } else {
                (c, 50000, s, 443)
            };
            frames.push((t + 600_000 + i * 200_000, udp4(a, ap, b, bp, &short)));
        }
    }
    frames.sort_by_key(|f| f.0);
    for (ts, data) in &frames {
        w.write(*ts, data)?;
    }
    w.finish()?;
    Ok(frames.len() as u64)
}
