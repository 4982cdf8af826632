//! Application fields and Community IDs in the exported IPFIX (issue #15), read by code
//! someone else wrote: tshark decodes every message without a warning and names IANA's http*
//! elements with the values in the capture; nfdump (nfcapd) and pmacct (nfacctd) still read
//! every standard field of records that carry the new variable-length ones; each Community ID
//! equals the one the spec authors' `communityid` package (PyPI) computes.

use e2e::capture::{write_pcap, Frame, LINKTYPE_ETHERNET};
use e2e::collector::{tshark_decode, write_datagrams_pcap, Recorder};
use e2e::craft::{MAC_A, MAC_B};
use e2e::hello::{client_hello, record, server_hello};
use e2e::pmacct::Nfacctd;
use e2e::tools::*;
use e2e::TempDir;
use etherparse::PacketBuilder;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

const BASE: u64 = 1_700_000_000_000_000_000;
const MS: u64 = 1_000_000;

fn ip4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().unwrap().octets()
}

fn udp(src: &str, sport: u16, dst: &str, dport: u16, payload: &[u8]) -> Vec<u8> {
    e2e::craft::udp4(ip4(src), sport, ip4(dst), dport, payload)
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, seq: u32, syn: bool, data: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(ip4(src), ip4(dst), 64)
        .tcp(sport, dport, seq, 64240);
    b = if syn { b.syn() } else { b.ack(1).psh() };
    let mut out = Vec::new();
    b.write(&mut out, data).unwrap();
    out
}

/// A query, or its NXDOMAIN answer.
fn dns(id: u16, response: bool, name: &str, qtype: u16) -> Vec<u8> {
    e2e::craft::dns_message(id, name, qtype, response.then_some((3, &[][..])))
}

/// DNS, HTTP and TLS conversations, each with its answer.
fn app_traffic() -> Vec<Frame> {
    let (c, s) = ("10.61.0.5", "10.62.0.9");
    let frames =
        vec![
        udp(c, 40001, s, 53, &dns(0x1234, false, "www.example.org", 1)),
        udp(s, 53, c, 40001, &dns(0x1234, true, "www.example.org", 1)),
        udp(c, 40002, s, 53, &dns(0x2345, false, "mail.example.net", 28)),
        tcp(c, 40100, s, 80, 100, true, b""),
        tcp(
            c,
            40100,
            s,
            80,
            101,
            false,
            b"GET /a/b?c=1 HTTP/1.1\r\nHost: web.example.org\r\nUser-Agent: probe-test/1.0\r\n\r\n",
        ),
        tcp(
            s,
            80,
            c,
            40100,
            500,
            false,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ),
        tcp(c, 40200, s, 443, 100, true, b""),
        tcp(
            c,
            40200,
            s,
            443,
            101,
            false,
            &record(&client_hello("secure.example.org", &["h2", "http/1.1"], 0, false)),
        ),
        tcp(s, 443, c, 40200, 900, false, &record(&server_hello())),
    ];
    frames
        .into_iter()
        .enumerate()
        .map(|(i, data)| Frame {
            ts_ns: BASE + i as u64 * 10 * MS,
            data,
        })
        .collect()
}

#[test]
fn app_fields_in_ipfix_are_read_by_tshark_nfdump_and_pmacct() {
    let tmp = TempDir::new("appexport");
    let pcap = tmp.path().join("app.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &app_traffic());
    let dir = tmp.path().join("nf");
    std::fs::create_dir(&dir).unwrap();
    let nfcapd = Nfcapd::start(&dir);
    let mut nfacctd = Nfacctd::start(tmp.path());
    let rec = Recorder::start();
    run_probe_ok(&[
        "read",
        pcap.to_str().unwrap(),
        "--app",
        "all",
        "--community-id",
        "--ipfix",
        &rec.url(),
        "--ipfix",
        &nfcapd.url(),
        "--ipfix",
        &format!("udp://127.0.0.1:{}", nfacctd.port),
    ]);
    let p = tmp.path().join("export.pcap");
    write_datagrams_pcap(&rec.finish(), &p);
    let v = tshark_decode(&p);
    assert!(v.problems.is_empty(), "tshark: {:?}", v.problems);
    assert!(
        v.template_ids.iter().any(|&id| id >= 1024),
        "{:?}",
        v.template_ids
    );
    // IANA's http* elements, by tshark's names, with the capture's values.
    let http = tshark_frames(
        &p,
        "cflow.http_request_host || cflow.http_statuscode",
        &[
            "cflow.http_request_method",
            "cflow.http_request_host",
            "cflow.http_request_target",
            "cflow.http_user_agent",
            "cflow.http_statuscode",
        ],
    );
    let joined = http.join("\n");
    for want in [
        "GET\tweb.example.org\t/a/b?c=1\tprobe-test/1.0",
        "\t\t\t\t404",
    ] {
        assert!(joined.contains(want), "{want:?} not in tshark's {joined}");
    }
    // The CESNET and probe elements: tshark shows them as enterprise fields with their bytes.
    // The CESNET and the probe's own elements: tshark decodes them as enterprise entries and
    // shows their bytes (it has no names for CESNET's).
    let private = tshark_frames(
        &p,
        "cflow.enterprise_private_entry",
        &["cflow.enterprise_private_entry"],
    )
    .join(",");
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    for want in [
        "www.example.org",
        "mail.example.net",
        "secure.example.org",
        "h2,http/1.1",
        "t13d0306h2_",
        "1:",
    ] {
        assert!(
            private.contains(&hex(want)),
            "{want:?} not among tshark's enterprise entries: {private}"
        );
    }
    // nfdump and pmacct read every standard field of the same records.
    let truth = tshark_flows(&pcap);
    let nf = nfcapd.finish();
    assert_same_flows(
        &truth,
        &nfdump_flows(&nf),
        "nfdump on records with app fields",
    );
    let want = e2e::pmacct::truth_of(&truth);
    let t = std::time::Instant::now();
    let mut got = nfacctd.table();
    while got != want && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(250));
        got = nfacctd.table();
    }
    assert_eq!(got, want, "nfacctd on records with app fields");
}

/// A Python that has the `communityid` package: on PATH, or the venv `cargo xtask deps`
/// makes.
fn python_with_communityid() -> Option<&'static str> {
    ["/opt/probe-pyref/bin/python", "python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import communityid"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// The Community IDs `communityid` computes for JSON records (seed, one per line).
fn reference_ids(python: &str, seed: u16, records: &[serde_json::Value]) -> Vec<String> {
    let script = r#"
import sys, json, communityid
cid = communityid.CommunityID(seed=int(sys.argv[1]))
for line in sys.stdin:
    r = json.loads(line)
    src = r.get("sourceIPv4Address") or r["sourceIPv6Address"]
    dst = r.get("destinationIPv4Address") or r["destinationIPv6Address"]
    p = r["protocolIdentifier"]
    if p in (1, 58):
        tc = r.get("icmpTypeCodeIPv4", r.get("icmpTypeCodeIPv6", 0))
        t = communityid.FlowTuple(p, src, dst, tc >> 8, tc & 255)
    elif p in (6, 17, 132):
        t = communityid.FlowTuple(p, src, dst, r["sourceTransportPort"], r["destinationTransportPort"])
    else:
        t = communityid.FlowTuple(p, src, dst)
    print(cid.calc(t))
"#;
    use std::io::Write;
    let mut child = Command::new(python)
        .args(["-c", script, &seed.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for r in records {
        input.push_str(&r.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn community_ids_equal_the_communityid_package_for_every_flow() {
    let Some(python) = python_with_communityid() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "communityid (PyPI) must be installed in CI: .ci/run installs it"
        );
        eprintln!("SKIP: the communityid package is not installed");
        return;
    };
    let tmp = TempDir::new("communityid-pypi");
    let crafted = tmp.path().join("mix.pcap");
    let mut frames = e2e::craft::mixed_traffic(BASE);
    frames.extend(app_traffic());
    frames.sort_by_key(|f| f.ts_ns);
    write_pcap(&crafted, LINKTYPE_ETHERNET, false, &frames);
    // The crafted mix, then the whole shared corpus as one input.
    let mut inputs = vec![vec![crafted.to_str().unwrap().to_string()]];
    if let Some(root) = e2e::shared_pcaps_or_skip("the corpus input of the Community ID test") {
        let mut files = vec![];
        for dir in ["tcpdump", "zeek"] {
            for e in std::fs::read_dir(root.join(dir))
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = e.path().to_string_lossy().to_string();
                if name.ends_with(".pcap") || name.ends_with(".pcapng") {
                    files.push(name);
                }
            }
        }
        files.sort();
        inputs.push(files);
    }
    let mut kinds = BTreeSet::new();
    for input in &inputs {
        for seed in [0u16, 7] {
            let seed_s = seed.to_string();
            let mut argv = vec![
                "read",
                "--community-id",
                "--community-id-seed",
                &seed_s,
                "--decap",
                "none",
                "--print",
                "json",
            ];
            argv.extend(input.iter().map(String::as_str));
            let out = run_probe(&argv);
            // Exit 2: the corpus has captures of link types the probe does not meter.
            assert!(
                out.status.success() || out.status.code() == Some(2),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert!(records.len() > 20, "{input:?}: {} records", records.len());
            let want = reference_ids(python, seed, &records);
            assert_eq!(want.len(), records.len());
            for (r, w) in records.iter().zip(&want) {
                assert_eq!(
                    r["communityId"].as_str(),
                    Some(w.as_str()),
                    "seed {seed}: {r}"
                );
                kinds.insert(r["protocolIdentifier"].as_u64().unwrap());
            }
            eprintln!(
                "{} input(s) seed {seed}: {} records agree",
                input.len(),
                records.len()
            );
        }
    }
    assert!(
        [1, 6, 17, 58].iter().all(|p| kinds.contains(p)),
        "{kinds:?}"
    );
}
