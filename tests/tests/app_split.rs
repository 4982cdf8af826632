//! Hellos that one packet does not hold, and QUIC (issue #15): QUIC v1 and v2 client
//! Initials, a QUIC ClientHello over two Initial packets with its CRYPTO frames shuffled (as
//! Chrome sends them), and a TLS ClientHello over three TCP segments, two out of order. The
//! server name and ALPN the probe reads equal tshark's (which decrypts the Initials and
//! reassembles the streams with its own code), each JA4 equals ja4plus' where ja4plus reads
//! the hello, and the real QUIC captures of the shared corpus agree with both.

use e2e::capture::{write_pcap, Frame, LINKTYPE_ETHERNET};
use e2e::craft::{MAC_A, MAC_B};
use e2e::hello::{client_hello, crypto_frame, record};
use e2e::tools::run_probe_ok;
use e2e::TempDir;
use etherparse::PacketBuilder;
use probe_core::app::quic::{protect_initial, V1, V2};
use std::collections::BTreeMap;
use std::process::Command;

const BASE: u64 = 1_700_000_000_000_000_000;
const CLIENT: [u8; 4] = [10, 71, 0, 1];
const SERVER: [u8; 4] = [10, 72, 0, 1];

fn udp(sport: u16, payload: &[u8]) -> Vec<u8> {
    e2e::craft::udp4(CLIENT, sport, SERVER, 443, payload)
}

fn tcp(sport: u16, seq: u32, syn: bool, data: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(CLIENT, SERVER, 64)
        .tcp(sport, 443, seq, 64240);
    b = if syn { b.syn() } else { b.ack(1).psh() };
    let mut out = Vec::new();
    b.write(&mut out, data).unwrap();
    out
}

/// A client Initial datagram of `frames`, padded (PADDING frames) to 1200 bytes.
fn initial(version: u32, dcid: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
    let mut payload = frames.to_vec();
    // Header: 1 + 4 + 1 + dcid + 1 + 1 + 2 + 4 (packet number), then the 16-byte tag.
    let overhead = 14 + dcid.len() + 16;
    payload.resize((1200 - overhead).max(payload.len()), 0);
    protect_initial(version, dcid, pn, &payload)
}

/// The traffic, and what each client port's hello holds: (server name, ALPN).
fn traffic() -> (Vec<Frame>, BTreeMap<u16, (&'static str, &'static str)>) {
    let mut frames = vec![];
    let mut want = BTreeMap::new();
    // QUIC v1 and v2, one Initial each.
    for (port, version, sni) in [(50001, V1, "v1.example.net"), (50002, V2, "v2.example.net")] {
        let hello = client_hello(sni, &["h3"], 0, true);
        frames.push(udp(
            port,
            &initial(
                version,
                b"\x11\x22\x33\x44\x55\x66\x77\x88",
                0,
                &crypto_frame(0, &hello),
            ),
        ));
        want.insert(port, (sni, "h3"));
    }
    // QUIC v1, a 1,900-byte hello over two Initials; the first carries its CRYPTO frames
    // in reverse order.
    let hello = client_hello("split.example.net", &["h3", "h3-29"], 1500, true);
    let dcid = b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a";
    let mut first = crypto_frame(600, &hello[600..1000]);
    first.extend(crypto_frame(0, &hello[..600]));
    frames.push(udp(50003, &initial(V1, dcid, 0, &first)));
    frames.push(udp(
        50003,
        &initial(V1, dcid, 1, &crypto_frame(1000, &hello[1000..])),
    ));
    want.insert(50003, ("split.example.net", "h3,h3-29"));
    // TLS over TCP: a 1,700-byte hello in three segments, the last two swapped.
    let rec = record(&client_hello(
        "tcp-split.example.org",
        &["h2", "http/1.1"],
        1300,
        false,
    ));
    frames.push(tcp(40300, 100, true, b""));
    frames.push(tcp(40300, 101, false, &rec[..700]));
    frames.push(tcp(40300, 101 + 1400, false, &rec[1400..]));
    frames.push(tcp(40300, 101 + 700, false, &rec[700..1400]));
    want.insert(40300, ("tcp-split.example.org", "h2,http/1.1"));
    let frames = frames
        .into_iter()
        .enumerate()
        .map(|(i, data)| Frame {
            ts_ns: BASE + i as u64 * 1_000_000,
            data,
        })
        .collect();
    (frames, want)
}

/// Server name, ALPN and JA4 of each flow, by client port.
fn probe_hellos(pcap: &std::path::Path) -> BTreeMap<u16, (String, String, String)> {
    probe_hellos_and_books(pcap).0
}

/// [`probe_hellos`], and the run's books.
fn probe_hellos_and_books(
    pcap: &std::path::Path,
) -> (BTreeMap<u16, (String, String, String)>, serde_json::Value) {
    // Not beside the capture: the shared corpus is not ours to write in.
    let tmp = TempDir::new("app-split-books");
    let books = tmp.path().join("books.json");
    let out = run_probe_ok(&[
        "read",
        "--app",
        "all",
        "--print",
        "json",
        "--stats-json",
        books.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    let mut m = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let r: serde_json::Value = serde_json::from_str(l).unwrap();
        if let Some(sni) = r["tlsServerName"].as_str() {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            m.insert(
                r["sourceTransportPort"].as_u64().unwrap() as u16,
                (sni.to_string(), s("tlsAlpn"), s("tlsJa4")),
            );
        }
    }
    (m, e2e::tools::read_books(&books))
}

/// What tshark reads from each client hello (it decrypts QUIC Initials itself).
fn tshark_hellos(pcap: &std::path::Path) -> BTreeMap<u16, (String, String)> {
    let out = Command::new("tshark")
        .args(["-n", "-o", "tcp.reassemble_out_of_order:TRUE", "-r"])
        .arg(pcap)
        .args([
            "-Y",
            "tls.handshake.type == 1",
            "-T",
            "fields",
            "-e",
            "udp.srcport",
            "-e",
            "tcp.srcport",
            "-e",
            "tls.handshake.extensions_server_name",
            "-e",
            "tls.handshake.extensions_alpn_str",
            "-E",
            "aggregator=,",
        ])
        .output()
        .unwrap();
    let mut m = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let c: Vec<&str> = l.split('\t').collect();
        let port = if c[0].is_empty() { c[1] } else { c[0] };
        m.insert(port.parse().unwrap(), (c[2].to_string(), c[3].to_string()));
    }
    m
}

fn ja4plus() -> Option<&'static str> {
    ["ja4plus", "/opt/probe-pyref/bin/ja4plus"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
}

/// ja4plus' fingerprints by client port.
fn ja4plus_hellos(tool: &str, pcap: &std::path::Path) -> BTreeMap<u16, String> {
    let out = Command::new(tool)
        .args(["--format", "json", "--types", "ja4", "analyze"])
        .arg(pcap)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["src_port"].as_u64().unwrap() as u16,
                v["fingerprint"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn split_and_quic_hellos_equal_tshark_and_ja4plus() {
    let tmp = TempDir::new("app-split");
    let pcap = tmp.path().join("split.pcap");
    let (frames, want) = traffic();
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &frames);
    let (got, books) = probe_hellos_and_books(&pcap);
    // The QUIC hello over two Initials and the TLS hello over three segments.
    assert_eq!(books["frames"]["hellos_joined"], 2, "{}", books["frames"]);
    assert_eq!(books["frames"]["hellos_given_up"], 0, "{}", books["frames"]);
    let shark = tshark_hellos(&pcap);
    for (port, (sni, alpn)) in &want {
        let g = got
            .get(port)
            .unwrap_or_else(|| panic!("port {port}: no hello read; got {got:?}"));
        assert_eq!((g.0.as_str(), g.1.as_str()), (*sni, *alpn), "port {port}");
        // tshark 4.0 decrypts QUIC v1 Initials; it may not know version 2.
        match shark.get(port) {
            Some(t) => assert_eq!(
                (t.0.as_str(), t.1.as_str()),
                (*sni, *alpn),
                "tshark, port {port}"
            ),
            None => assert_eq!(
                *port, 50002,
                "tshark read no hello on port {port}: {shark:?}"
            ),
        }
        let q = if *port >= 50000 { 'q' } else { 't' };
        assert!(g.2.starts_with(q), "{port}: {}", g.2);
    }
    assert!(
        [40300, 50001, 50003].iter().all(|p| shark.contains_key(p)),
        "{shark:?}"
    );
    if let Some(tool) = ja4plus() {
        let theirs = ja4plus_hellos(tool, &pcap);
        for (port, fp) in &theirs {
            assert_eq!(
                got.get(port).map(|g| g.2.as_str()),
                Some(fp.as_str()),
                "JA4 of port {port}"
            );
        }
        eprintln!(
            "ja4plus read {} of the {} hellos: {theirs:?}",
            theirs.len(),
            want.len()
        );
        assert!(theirs.contains_key(&50001), "{theirs:?}");
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "ja4plus must be installed in CI"
        );
    }
}

#[test]
fn quic_captures_of_the_corpus_equal_tshark_and_ja4plus() {
    let Some(root) = e2e::shared_pcaps_or_skip("the split-hello corpus test") else {
        return;
    };
    let mut checked = 0;
    for name in [
        "quic_handshake.pcap",
        "quic_retry.pcap",
        "quic_handshake_truncated.pcap",
    ] {
        let pcap = root.join("tcpdump").join(name);
        if !pcap.exists() {
            continue;
        }
        let got = probe_hellos(&pcap);
        let shark = tshark_hellos(&pcap);
        for (port, (sni, alpn)) in &shark {
            let g = got
                .get(port)
                .unwrap_or_else(|| panic!("{name} port {port}: {got:?}"));
            assert_eq!((&g.0, &g.1), (sni, alpn), "{name} port {port}");
            checked += 1;
        }
        assert_eq!(got.len(), shark.len(), "{name}: {got:?} vs {shark:?}");
        if let Some(tool) = ja4plus() {
            for (port, fp) in ja4plus_hellos(tool, &pcap) {
                assert_eq!(
                    got.get(&port).map(|g| g.2.as_str()),
                    Some(fp.as_str()),
                    "{name}"
                );
            }
        }
    }
    assert!(checked >= 2, "{checked}");
}
