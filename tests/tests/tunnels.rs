//! Mirror feeds in tunnels: every encapsulation the probe removes, crafted and from real
//! captures, metered into nfcapd and compared with the flows tshark reads from the innermost
//! headers; the tunnel elements through tshark and nfdump; duplicates from overlapping
//! mirror sessions; the PCAP selection by tunnel with the original frames kept.

use e2e::capture::{write_pcap, Frame, LINKTYPE_ETHERNET};
use e2e::collector::{tshark_decode, write_datagrams_pcap, Recorder};
use e2e::craft::{ethernet, tcp_session, L4};
use e2e::encap::{wrap, Encap, OUTER_V4};
use e2e::tools::*;
use e2e::TempDir;
use std::net::IpAddr;
use std::path::Path;

const BASE: u64 = 1_795_388_820_000_000_000;
const MS: u64 = 1_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn outer_v4() -> (IpAddr, IpAddr) {
    (OUTER_V4.0.into(), OUTER_V4.1.into())
}

/// The encapsulations of the crafted feed, each with the flows of its own ports.
fn encapsulations() -> Vec<(&'static str, Encap, (IpAddr, IpAddr))> {
    let v6 = (ip("fd00:e::1"), ip("fd00:e::2"));
    vec![
        ("vxlan", Encap::Vxlan { vni: 5001 }, outer_v4()),
        ("vxlan", Encap::Vxlan { vni: 5002 }, v6),
        ("geneve", Encap::Geneve { vni: 77 }, outer_v4()),
        ("gre", Encap::Gre { key: Some(0xabcd) }, outer_v4()),
        ("gre", Encap::Gre { key: None }, outer_v4()),
        ("nvgre", Encap::Nvgre { vsid: 0x1234 }, outer_v4()),
        ("erspan1", Encap::ErspanI, outer_v4()),
        ("erspan2", Encap::ErspanII { session: 300 }, outer_v4()),
        (
            "erspan3",
            Encap::ErspanIII {
                session: 301,
                subheader: false,
            },
            outer_v4(),
        ),
        (
            "erspan3",
            Encap::ErspanIII {
                session: 302,
                subheader: true,
            },
            outer_v4(),
        ),
        ("gtpu", Encap::GtpU { teid: 0x0a0b0c0d }, outer_v4()),
        ("ipip", Encap::IpInIp, outer_v4()),
        ("pppoe", Encap::Pppoe { session: 0x42 }, outer_v4()),
    ]
}

/// One TCP session, a DNS exchange and (for IPv4) a ping per encapsulation, wrapped; then the
/// nested case, VLAN 300 inside VXLAN inside GRE inside VLAN 5.
fn tunnelled_feed() -> Vec<Frame> {
    let mut out = vec![];
    for (i, (_, encap, outer)) in encapsulations().into_iter().enumerate() {
        let i16 = i as u16;
        let t0 = BASE + i as u64 * 40 * MS;
        let (c, s) = if i % 3 == 2 {
            (ip("fd00:1::5"), ip("fd00:2::80"))
        } else {
            (ip("10.1.0.5"), ip("10.2.0.80"))
        };
        let mut inner = tcp_session((c, 41000 + i16), (s, 443), t0, MS, 3 + i % 4, &[]);
        for k in 0..3u64 {
            let q = L4::Udp {
                sport: 5300 + i16,
                dport: 53,
            };
            let r = L4::Udp {
                sport: 53,
                dport: 5300 + i16,
            };
            inner.push(Frame {
                ts_ns: t0 + 20 * MS + k * MS,
                data: ethernet(
                    c,
                    ip(if c.is_ipv4() { "10.9.9.9" } else { "fd00:9::9" }),
                    q,
                    30,
                    &[],
                    64,
                ),
            });
            inner.push(Frame {
                ts_ns: t0 + 20 * MS + k * MS + 300_000,
                data: ethernet(
                    ip(if c.is_ipv4() { "10.9.9.9" } else { "fd00:9::9" }),
                    c,
                    r,
                    90,
                    &[],
                    60,
                ),
            });
        }
        if c.is_ipv4() {
            inner.push(Frame {
                ts_ns: t0 + 30 * MS,
                data: ethernet(c, s, L4::Echo { reply: false }, 56 + i, &[], 64),
            });
        }
        out.extend(inner.into_iter().map(|f| Frame {
            ts_ns: f.ts_ns,
            data: wrap(encap, &f.data, outer),
        }));
    }
    // Nested: an inner frame tagged 300, in VXLAN 9000, in GRE key 7, in a frame tagged 5.
    let t0 = BASE + 900 * MS;
    for f in tcp_session(
        (ip("10.7.0.1"), 40404),
        (ip("10.7.0.2"), 8080),
        t0,
        MS,
        4,
        &[300],
    ) {
        let vx = wrap(Encap::Vxlan { vni: 9000 }, &f.data, outer_v4());
        let mut g = wrap(
            Encap::Gre { key: Some(7) },
            &vx,
            (ip("198.51.100.1"), ip("198.51.100.2")),
        );
        g.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
        out.push(Frame {
            ts_ns: f.ts_ns,
            data: g,
        });
    }
    out.sort_by_key(|f| f.ts_ns);
    out
}

fn probe_read(pcap: &Path, extra: &[&str], stats: &Path) -> std::process::Output {
    let mut args = vec![
        "read",
        pcap.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_probe(&args)
}

/// Meters `pcap` into a fresh nfcapd; returns nfdump's flows and the books.
fn through_nfcapd(tmp: &TempDir, pcap: &Path, extra: &[&str]) -> (Flows, serde_json::Value) {
    let nf = Nfcapd::start(tmp.path());
    let stats = tmp.path().join("books.json");
    let url = nf.url();
    let mut args = vec!["--ipfix", url.as_str()];
    args.extend_from_slice(extra);
    let out = probe_read(pcap, &args, &stats);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = nf.finish();
    (nfdump_flows(&records), read_books(&stats))
}

#[test]
fn every_encapsulation_meters_the_inner_flows_as_tshark_reads_them() {
    let tmp = TempDir::new("tunnels");
    let pcap = tmp.path().join("tunnels.pcap");
    let frames = tunnelled_feed();
    write_pcap(&pcap, LINKTYPE_ETHERNET, true, &frames);
    let truth = tshark_inner_flows(&pcap, &[]);
    assert!(truth.len() > 50, "the feed has {} inner flows", truth.len());
    // tshark sees the inner addresses, never the tunnel endpoints.
    assert!(truth
        .keys()
        .all(|k| !k.src.to_string().starts_with("192.0.2.")));

    let (got, books) = through_nfcapd(&tmp, &pcap, &[]);
    assert_same_flows(&truth, &got, "nfdump");
    assert_balanced(&books);
    let f = &books["frames"];
    assert_eq!(f["read"], frames.len());
    assert_eq!(f["metered"], frames.len(), "{f}");
    let kinds = &f["encapsulated_by_kind"];
    for (name, ..) in encapsulations() {
        assert!(kinds[name].as_u64().unwrap() > 0, "{name}: {kinds}");
    }
    // The nested frames count under GRE and VXLAN both.
    assert!(kinds["vxlan"].as_u64().unwrap() > kinds["gre"].as_u64().unwrap() / 2);

    // --decap none meters the tunnels by their outer headers (PPPoE, not IP at the link
    // layer, is then not metered): every flow is between tunnel endpoints.
    let tmp2 = TempDir::new("tunnels-none");
    let (got, books) = through_nfcapd(&tmp2, &pcap, &["--decap", "none"]);
    assert_balanced(&books);
    let endpoints = [
        "192.0.2.1",
        "192.0.2.2",
        "198.51.100.1",
        "198.51.100.2",
        "fd00:e::1",
        "fd00:e::2",
    ];
    for k in got.keys() {
        assert!(
            endpoints.contains(&k.src.to_string().as_str()),
            "{k:?} is not a tunnel endpoint"
        );
    }
    let pppoe = frames
        .iter()
        .filter(|f| f.data[12..14] == [0x88, 0x64])
        .count();
    let packets: u64 = got.values().map(|t| t.packets).sum();
    assert_eq!(packets as usize, frames.len() - pppoe);
    assert_eq!(books["frames"]["filtered"], pppoe);
}

#[test]
fn tunnel_elements_decode_in_tshark_and_json() {
    let tmp = TempDir::new("tunnel-ie");
    let pcap = tmp.path().join("tunnels.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, true, &tunnelled_feed());
    let rec = Recorder::start();
    let stats = tmp.path().join("books.json");
    let url = rec.url();
    let out = probe_read(&pcap, &["--ipfix", &url, "--print", "json"], &stats);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let datagrams = rec.finish();
    let ipfix = tmp.path().join("ipfix.pcap");
    write_datagrams_pcap(&datagrams, &ipfix);
    let verdict = tshark_decode(&ipfix);
    assert!(verdict.problems.is_empty(), "{:#?}", verdict.problems);
    assert!(verdict.template_ids.iter().any(|t| (512..540).contains(t)));
    assert!(verdict.template_ids.iter().any(|t| (768..796).contains(t)));

    // tshark names every tunnel element it knows: tunnelTechnology, layer2SegmentId and
    // ntop's tunnel id; its values are ours.
    // tshark's defaults: every occurrence, joined by commas.
    let fields = tshark_frames(
        &ipfix,
        "",
        &[
            "cflow.tunnel_technology",
            "cflow.layer2_segment_id",
            "cflow.pie.ntop.tunnel_id",
        ],
    );
    let all = |col: usize| -> Vec<String> {
        fields
            .iter()
            .flat_map(|l| {
                l.split('\t')
                    .nth(col)
                    .unwrap_or("")
                    .split(',')
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .filter(|s| !s.is_empty())
            .collect()
    };
    let tech = all(0);
    for name in [
        "vxlan", "geneve", "gre", "nvgre", "erspan1", "erspan2", "erspan3", "gtpu", "ipip",
    ] {
        assert!(tech.iter().any(|t| t == name), "{name} not in {tech:?}");
    }
    let segments = all(1);
    assert!(
        segments.contains(&((1u64 << 56) | 5001).to_string()),
        "{segments:?}"
    );
    assert!(
        segments.contains(&((2u64 << 56) | 0x1234).to_string()),
        "{segments:?}"
    );
    let ids = all(2);
    for id in [5001u32, 77, 0xabcd, 300, 301, 302, 0x0a0b0c0d, 7] {
        assert!(ids.contains(&id.to_string()), "{id} not in {ids:?}");
    }

    // The JSON lines name the same things.
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let nested = lines
        .iter()
        .find(|r| r["destinationTransportPort"] == 8080)
        .expect("the nested flow");
    assert_eq!(
        nested["tunnelTechnology"], "gre",
        "the outermost tunnel: {nested}"
    );
    assert_eq!(nested["tunnelId"], 7);
    assert_eq!(
        nested["layer2SegmentId"],
        (1u64 << 56) | 9000,
        "the innermost segment"
    );
    assert_eq!(
        (&nested["tunnelKeyType"], &nested["tunnelKey"]),
        (&serde_json::json!("vxlan"), &serde_json::json!(9000)),
        "the segment that keys the flow: {nested}"
    );
    assert_eq!(nested["tunnelSourceIPv4Address"], "198.51.100.1");
    assert_eq!(nested["vlanId"], 300, "the inner frame's VLAN");
    let v6 = lines
        .iter()
        .find(|r| r["tunnelSourceIPv6Address"] == "fd00:e::1")
        .expect("VXLAN over IPv6");
    assert_eq!(v6["tunnelId"], 5002);
}

#[test]
fn two_tenants_with_the_same_addresses_stay_apart() {
    // The same inner conversation in VNI 1 and VNI 2 is two flows, not one of twice the size.
    let tmp = TempDir::new("tenants");
    let pcap = tmp.path().join("tenants.pcap");
    let mut frames = vec![];
    for vni in [1, 2] {
        for f in tcp_session(
            (ip("10.0.0.1"), 40000),
            (ip("10.0.0.2"), 80),
            BASE,
            MS,
            3,
            &[],
        ) {
            frames.push(Frame {
                ts_ns: f.ts_ns + vni as u64 * 100,
                data: wrap(Encap::Vxlan { vni }, &f.data, outer_v4()),
            });
        }
    }
    frames.sort_by_key(|f| f.ts_ns);
    write_pcap(&pcap, LINKTYPE_ETHERNET, true, &frames);
    let stats = tmp.path().join("books.json");
    let out = probe_read(&pcap, &["--print", "json"], &stats);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Two directions in two tenants.
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let per_flow = tshark_inner_flows(&pcap, &[]);
    for r in &lines {
        let k = per_flow
            .iter()
            .find(|(k, _)| k.sport as u64 == r["sourceTransportPort"].as_u64().unwrap())
            .unwrap();
        assert_eq!(r["packetDeltaCount"].as_u64().unwrap() * 2, k.1.packets);
    }
}

/// Real captures from tcpdump's and Zeek's test suites that carry tunnels.
const SHARED_TUNNELS: &[&str] = &[
    "tcpdump/vxlan.pcap",
    "tcpdump/geneve.pcap",
    "tcpdump/geneve-gcp.pcap",
    "tcpdump/gso-ipv4-vxlan-ipv4.pcap",
    "tcpdump/gso-ipv6-vxlan-ipv6.pcap",
    "tcpdump/gso-ipv4-geneve-ipv6.pcap",
    "tcpdump/erspan-type-i-1.pcap",
    "tcpdump/erspan-type-ii-1.pcap",
    "tcpdump/erspan-type-ii-2.pcap",
    "tcpdump/erspan-type-iii-ft-0.pcap",
    "zeek/erspanI.pcap",
    "zeek/erspanII.pcap",
    "zeek/erspanIII.pcap",
    "tcpdump/various_gre.pcap",
    "tcpdump/pppoes.pcap",
];

#[test]
fn shared_tunnel_captures_match_tshark() {
    let Some(root) = e2e::shared_pcaps_or_skip("the shared tunnel captures") else {
        return;
    };
    for name in SHARED_TUNNELS {
        let pcap = root.join(name);
        let tmp = TempDir::new("shared-tunnel");
        // VLAN ids are keyed by the probe but not by tshark's ground truth.
        let (got, books) = through_nfcapd(&tmp, &pcap, &["--no-vlan-key"]);
        let truth = tshark_inner_flows(&pcap, &[]);
        assert_same_flows(&truth, &got, &format!("nfdump for {name}"));
        assert_balanced(&books);
    }
}

#[test]
fn duplicates_from_overlapping_mirror_sessions_are_counted_and_dropped() {
    // Every packet arrives twice: in ERSPAN session 1 and, 20 µs later with a TTL one lower,
    // in session 2 (ingress of one port, egress of the next).
    let tmp = TempDir::new("dedup");
    let mut once = vec![];
    let mut twice = vec![];
    for i in 0..4u16 {
        let s = tcp_session(
            (ip("10.5.0.1"), 42000 + i),
            (ip("10.5.0.2"), 443),
            BASE + i as u64 * 50 * MS,
            MS,
            5,
            &[],
        );
        for f in s {
            once.push(f.clone());
            twice.push(Frame {
                ts_ns: f.ts_ns,
                data: wrap(Encap::ErspanII { session: 1 }, &f.data, outer_v4()),
            });
            let mut copy = f.data.clone();
            copy[14 + 8] -= 1; // TTL
            twice.push(Frame {
                ts_ns: f.ts_ns + 20_000,
                data: wrap(Encap::ErspanII { session: 2 }, &copy, outer_v4()),
            });
        }
    }
    twice.sort_by_key(|f| f.ts_ns);
    let (single, doubled) = (tmp.path().join("once.pcap"), tmp.path().join("twice.pcap"));
    write_pcap(&single, LINKTYPE_ETHERNET, true, &once);
    write_pcap(&doubled, LINKTYPE_ETHERNET, true, &twice);
    let truth = tshark_flows(&single);

    let (got, books) = through_nfcapd(&tmp, &doubled, &["--dedup", "1ms"]);
    assert_same_flows(&truth, &got, "nfdump with --dedup");
    assert_balanced(&books);
    let f = &books["frames"];
    assert_eq!(f["duplicates_seen"], once.len(), "{f}");
    assert_eq!(f["duplicates_dropped"], once.len(), "{f}");
    assert_eq!(f["metered"], once.len());

    // Without --dedup every count doubles, which is why the option exists.
    let tmp2 = TempDir::new("dedup-off");
    let (got, books) = through_nfcapd(&tmp2, &doubled, &[]);
    let pkts = |fl: &Flows| fl.values().map(|t| t.packets).sum::<u64>();
    assert_eq!(pkts(&got), 2 * pkts(&truth));
    assert_eq!(books["frames"]["duplicates_seen"], 0);
    // --dedup-keep counts them and meters them anyway.
    let tmp3 = TempDir::new("dedup-keep");
    let (got, books) = through_nfcapd(&tmp3, &doubled, &["--dedup", "1ms", "--dedup-keep"]);
    assert_eq!(pkts(&got), 2 * pkts(&truth));
    assert_eq!(books["frames"]["duplicates_seen"], once.len());
    assert_eq!(books["frames"]["duplicates_dropped"], 0);
    assert_balanced(&books);
}

#[test]
fn the_ring_selects_by_inner_and_tunnel_and_keeps_the_original_frames() {
    let tmp = TempDir::new("tunnel-ring");
    let pcap = tmp.path().join("tunnels.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, true, &tunnelled_feed());
    for (n, (select, filter)) in [
        (
            "vni 5001 and host 10.2.0.80",
            "vxlan.vni == 5001 && ip.addr == 10.2.0.80",
        ),
        ("erspan session 301", "erspan.spanid == 301"),
        ("gtp teid 168496141", "gtp.teid == 168496141"),
        (
            "tunnel and port 53",
            "(vxlan || geneve || gre || gtp || ip.proto == 4 || ip.proto == 41 || pppoes) && udp.port == 53",
        ),
        ("outer host 198.51.100.1", "ip.addr == 198.51.100.1"),
    ]
    .into_iter()
    .enumerate()
    {
        let ring = tmp.path().join(format!("ring-{n}"));
        let stats = tmp.path().join("books.json");
        let out = probe_read(
            &pcap,
            &[
                "--pcap-dir",
                ring.to_str().unwrap(),
                "--pcap-select",
                select,
            ],
            &stats,
        );
        assert!(
            out.status.success(),
            "{select}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut got = vec![];
        for f in e2e::sorted_dir(&ring) {
            got.extend(frames_of(&f, ""));
        }
        let want = frames_of(&pcap, filter);
        assert!(!want.is_empty(), "{filter}");
        assert_eq!(
            got, want,
            "{select}: the ring holds the original frames tshark selects"
        );

        // probe extract finds the same frames in the ring.
        let out_pcap = tmp.path().join("extract.pcap");
        let mut args = vec![
            "extract",
            "--pcap-dir",
            ring.to_str().unwrap(),
            "-w",
            out_pcap.to_str().unwrap(),
        ];
        args.extend(select.split(' '));
        run_probe_ok(&args);
        assert_eq!(frames_of(&out_pcap, ""), want, "extract {select}");
    }
}

/// (time, length, MD5 of the bytes) of every frame tshark shows under `filter`.
fn frames_of(pcap: &Path, filter: &str) -> Vec<String> {
    tshark_frames(
        pcap,
        filter,
        &["frame.time_epoch", "frame.len", "frame.md5_hash"],
    )
}

#[test]
fn vxlan_and_vxlan_gpe_feeds_written_by_scapy_meter_the_inner_flows_tshark_reads() {
    let tmp = TempDir::new("scapy-vxlan");
    if !e2e::scapy::write_vxlan_feeds("vxlan_and_vxlan_gpe_feeds_written_by_scapy", tmp.path()) {
        return;
    }
    for (name, tshark_opts, depth) in e2e::scapy::VXLAN_FEEDS {
        let pcap = tmp.path().join(format!("{name}.pcap"));
        let truth = tshark_inner_flows(&pcap, tshark_opts);
        assert!(!truth.is_empty(), "{name}: no inner flows");
        assert!(
            truth
                .keys()
                .all(|k| !k.src.to_string().starts_with("192.0.2.")),
            "{name}: tshark's truth holds outer flows"
        );
        let run = TempDir::new(&format!("scapy-{name}"));
        let (got, books) = through_nfcapd(&run, &pcap, &[]);
        assert_same_flows(&truth, &got, name);
        assert_balanced(&books);
        let f = &books["frames"];
        assert_eq!(f["metered"], f["read"], "{name}: {f}");
        assert_eq!(f["port_not_tunnel"], 0, "{name}: {f}");
        assert!(
            f["encapsulated_by_kind"]["vxlan"].as_u64().unwrap() > 0,
            "{name}: {f}"
        );
        if depth == 3 {
            let k = &f["encapsulated_by_kind"];
            assert!(
                k["geneve"].as_u64().unwrap() > 0 && k["gre"].as_u64().unwrap() > 0,
                "{k}"
            );
            // The record names the outermost tunnel (the mirror's VXLAN, VNI 400) and the
            // segment that keys the flow: the Geneve VNI 500 (the GRE inside has no key), which
            // layer2SegmentId has no type for.
            let out = run_probe_ok(&["read", pcap.to_str().unwrap(), "--print", "json"]);
            let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert!(!lines.is_empty());
            for r in &lines {
                assert_eq!(r["tunnelTechnology"], "vxlan", "{r}");
                assert_eq!(r["tunnelId"], 400, "{r}");
                assert_eq!(r["tunnelKeyType"], "geneve", "{r}");
                assert_eq!(r["tunnelKey"], 500, "{r}");
                assert!(r.get("layer2SegmentId").is_none(), "{r}");
            }
        }
    }
    // Random UDP to 4789, half with the I flag set: what is inside does not decode, so every
    // datagram is metered as the UDP flow it is (tshark told to read the payload as data).
    let pcap = tmp.path().join("random4789.pcap");
    let truth = tshark_inner_flows(&pcap, &["-d", "udp.port==4789,data"]);
    assert_eq!(truth.len(), 10, "ten source ports");
    let run = TempDir::new("scapy-random");
    let (got, books) = through_nfcapd(&run, &pcap, &[]);
    assert_same_flows(&truth, &got, "random UDP to 4789");
    let f = &books["frames"];
    assert_eq!(f["metered"], 300, "{f}");
    assert_eq!(f["encapsulated_by_kind"]["vxlan"], 0, "{f}");
}
