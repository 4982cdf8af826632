//! Flow-aware PCAP selection (issue #15): `sni`, `dns name`, `http host` and `ja4` keep every
//! packet of the flows they mark, both directions; with `--pcap-lookback` from the flow's
//! SYN; `probe extract` takes the same primitives. What the ring holds is read back with
//! tshark and compared, frame by frame (by timestamp), with what the capture holds.

use e2e::capture::{write_pcap, Frame, LINKTYPE_ETHERNET};
use e2e::hello::{client_hello, record, server_hello};
use e2e::tools::{read_books, run_probe, run_probe_ok};
use e2e::TempDir;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const BASE: u64 = 1_700_000_000_000_000_000;

/// One crafted frame and the conversation it belongs to.
struct Tagged {
    conv: &'static str,
    frame: Frame,
}

fn ip4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().unwrap().octets()
}

/// [`e2e::craft::tcp_exchange`], each frame tagged with `conv`.
fn tcp_conv(
    conv: &'static str,
    client: (&str, u16),
    server: (&str, u16),
    request: &[u8],
    reply: &[u8],
    t0: u64,
) -> Vec<Tagged> {
    e2e::craft::tcp_exchange(client, server, request, reply, t0)
        .into_iter()
        .map(|frame| Tagged { conv, frame })
        .collect()
}

fn dns_conv(conv: &'static str, sport: u16, name: &str, t0: u64) -> Vec<Tagged> {
    let q =
        |response: bool| e2e::craft::dns_message(0x1234, name, 1, response.then_some((0, &[][..])));
    let (c, s) = (ip4("10.91.0.7"), ip4("10.92.0.53"));
    let mut out = vec![];
    for (i, response) in [false, true].into_iter().enumerate() {
        let (src, dst, sp, dp) = if response {
            (s, c, 53, sport)
        } else {
            (c, s, sport, 53)
        };
        let f = e2e::craft::udp4(src, sp, dst, dp, &q(response));
        out.push(Tagged {
            conv,
            frame: Frame {
                ts_ns: t0 + i as u64 * 2_000_000,
                data: f,
            },
        });
    }
    out
}

/// Five conversations, interleaved in time: two TLS (one to a watched name), two DNS
/// queries (one for a watched name), an HTTP request to a watched host with a port.
fn traffic() -> Vec<Tagged> {
    let ms = 1_000_000;
    let mut all = vec![];
    all.extend(tcp_conv(
        "tls-watched",
        ("10.91.0.5", 41000),
        ("10.92.0.1", 443),
        &record(&client_hello("secret.example.com", &["h2"], 0, false)),
        &record(&server_hello()),
        BASE,
    ));
    all.extend(tcp_conv(
        "tls-other",
        ("10.91.0.6", 41001),
        ("10.92.0.2", 443),
        &record(&client_hello("other.example.net", &["http/1.1"], 0, false)),
        &record(&server_hello()),
        BASE + ms,
    ));
    all.extend(dns_conv(
        "dns-watched",
        5301,
        "www.secret.example.com",
        BASE + 2 * ms,
    ));
    all.extend(dns_conv("dns-other", 5302, "benign.org", BASE + 4 * ms));
    all.extend(tcp_conv(
        "http-watched",
        ("10.91.0.8", 41002),
        ("10.92.0.80", 8080),
        b"GET /x HTTP/1.1\r\nHost: Intranet.Example.com:8080\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        BASE + 5 * ms,
    ));
    all.sort_by_key(|t| t.frame.ts_ns);
    all
}

/// [`traffic`], written as `in.pcap` in `tmp`.
fn traffic_pcap(tmp: &TempDir) -> (Vec<Tagged>, std::path::PathBuf) {
    let all = traffic();
    let pcap = tmp.path().join("in.pcap");
    let frames: Vec<Frame> = all
        .iter()
        .map(|t| Frame {
            ts_ns: t.frame.ts_ns,
            data: t.frame.data.clone(),
        })
        .collect();
    write_pcap(&pcap, LINKTYPE_ETHERNET, true, &frames);
    (all, pcap)
}

/// The nanosecond timestamps of the frames tshark reads from the ring's files (or a file).
fn times_in(paths: &[std::path::PathBuf]) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for p in paths {
        let o = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(p)
            .args(["-T", "fields", "-e", "frame.time_epoch"])
            .output()
            .unwrap();
        assert!(o.status.success(), "tshark {}", p.display());
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            let (s, f) = l.split_once('.').unwrap();
            let ns = format!("{f:0<9}");
            out.insert(s.parse::<u64>().unwrap() * 1_000_000_000 + ns[..9].parse::<u64>().unwrap());
        }
    }
    out
}

fn ring_files(dir: &Path) -> Vec<std::path::PathBuf> {
    e2e::sorted_dir(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect()
}

/// Timestamps of the frames of `convs`, from the `first`-th frame of each on.
fn want(all: &[Tagged], convs: &[(&str, usize)]) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for (conv, first) in convs {
        for (i, t) in all.iter().filter(|t| t.conv == *conv).enumerate() {
            if i >= *first {
                out.insert(t.frame.ts_ns);
            }
        }
    }
    out
}

fn read(
    tmp: &TempDir,
    pcap: &Path,
    name: &str,
    select: &str,
    extra: &[&str],
) -> (Vec<std::path::PathBuf>, serde_json::Value) {
    let dir = tmp.path().join(name);
    let books = tmp.path().join(format!("{name}.json"));
    let mut args = vec![
        "read",
        pcap.to_str().unwrap(),
        "--pcap-dir",
        dir.to_str().unwrap(),
        "--pcap-select",
        select,
        "--stats-json",
        books.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_probe_ok(&args);
    (ring_files(&dir), read_books(&books))
}

#[test]
fn name_primitives_keep_whole_flows_both_directions() {
    let tmp = TempDir::new("ring-names");
    let (all, pcap) = traffic_pcap(&tmp);
    let select = "sni *.example.com or dns name *.example.com or http host intranet.example.com";
    // Without lookback: from the packet with the name (the 4th of a TCP conversation, the
    // query of a DNS exchange) on, both directions.
    let (files, books) = read(&tmp, &pcap, "plain", select, &[]);
    let expect = want(
        &all,
        &[("tls-watched", 3), ("http-watched", 3), ("dns-watched", 0)],
    );
    assert_eq!(times_in(&files), expect);
    let ring = &books["pcap_ring"];
    assert_eq!(ring["flows_marked"], 3, "{ring}");
    assert_eq!(
        ring["selected"].as_u64(),
        Some(expect.len() as u64),
        "{ring}"
    );
    assert_eq!(ring["balanced"], true, "{ring}");
    // With lookback: from each flow's first packet, its SYN.
    let (files, books) = read(&tmp, &pcap, "lookback", select, &["--pcap-lookback", "8"]);
    let expect = want(
        &all,
        &[("tls-watched", 0), ("http-watched", 0), ("dns-watched", 0)],
    );
    assert_eq!(times_in(&files), expect);
    let ring = &books["pcap_ring"];
    assert_eq!(
        ring["lookback_released"], 6,
        "three frames before each TCP hello: {ring}"
    );
    // A name that appears nowhere keeps nothing; `not` of a name keeps the rest.
    let (files, _) = read(&tmp, &pcap, "none", "sni nowhere.example", &[]);
    assert!(times_in(&files).is_empty());
    // JA4: the other TLS client's fingerprint (they differ by ALPN), from the probe's JSON.
    let out = run_probe(&[
        "read",
        pcap.to_str().unwrap(),
        "--app",
        "tls",
        "--print",
        "json",
    ]);
    let ja4 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["tlsServerName"] == "other.example.net")
        .and_then(|r| r["tlsJa4"].as_str().map(String::from))
        .expect("a JA4 for the other client");
    let (files, _) = read(
        &tmp,
        &pcap,
        "ja4",
        &format!("ja4 {ja4}"),
        &["--pcap-lookback", "4"],
    );
    assert_eq!(times_in(&files), want(&all, &[("tls-other", 0)]));
    // The names stay out of the records unless --app asks: the selection's parsers ran.
    let out = run_probe(&[
        "read",
        pcap.to_str().unwrap(),
        "--print",
        "json",
        "--pcap-dir",
        tmp.path().join("private").to_str().unwrap(),
        "--pcap-select",
        select,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("example"), "{text}");
}

#[test]
fn extract_takes_name_primitives_and_says_when_the_ring_lacks_the_names() {
    let tmp = TempDir::new("extract-names");
    let (all, pcap) = traffic_pcap(&tmp);
    // A ring of everything, then the flows by name out of it: every packet of each, from the
    // SYN (the ring holds it).
    let (_, _) = read(&tmp, &pcap, "ring", "all", &[]);
    let ring = tmp.path().join("ring");
    let out_file = tmp.path().join("out.pcap");
    let out = run_probe(&[
        "extract",
        "--pcap-dir",
        ring.to_str().unwrap(),
        "-w",
        out_file.to_str().unwrap(),
        "sni",
        "secret.example.com",
        "or",
        "dns",
        "name",
        "www.secret.example.com",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("2 flows carry a matching name"), "{err}");
    assert_eq!(
        times_in(std::slice::from_ref(&out_file)),
        want(&all, &[("tls-watched", 0), ("dns-watched", 0)])
    );
    // A ring that kept only port 53 holds no ClientHello: extract says why nothing came out.
    let (_, _) = read(&tmp, &pcap, "dnsonly", "port 53", &[]);
    let out = run_probe(&[
        "extract",
        "--pcap-dir",
        tmp.path().join("dnsonly").to_str().unwrap(),
        "-w",
        out_file.to_str().unwrap(),
        "sni",
        "secret.example.com",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0 flows carry a matching name") && err.contains("--pcap-select kept it"),
        "{err}"
    );
}
