//! Application fields (issue #15) against code someone else wrote: on every capture of the
//! shared corpus, each flow's DNS question, TLS server name, ALPN and ServerHello, and HTTP
//! request and status in `probe read --app all --print json` equal what tshark dissects from
//! the same flow's packets, and each JA4 equals the one the `ja4plus` package (PyPI) computes.

use e2e::tools::run_probe;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A flow as both sides name it: source, destination, ports, protocol.
type Key = (String, String, u16, u16, u8);

fn corpus() -> Vec<PathBuf> {
    let Some(root) = e2e::shared_pcaps_or_skip("the app corpus tests") else {
        return vec![];
    };
    let mut files = vec![];
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Each record's flow key and JSON, one record per flow (long timeouts).
fn probe_records(pcap: &Path) -> BTreeMap<Key, Vec<serde_json::Value>> {
    let out = run_probe(&[
        "read",
        "--app",
        "all",
        "--print",
        "json",
        "--idle-timeout",
        "1h",
        "--active-timeout",
        "1h",
        "--decap",
        "none",
        pcap.to_str().unwrap(),
    ]);
    let mut m: BTreeMap<Key, Vec<serde_json::Value>> = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let r: serde_json::Value = serde_json::from_str(l).unwrap();
        let addr = |v4: &str, v6: &str| {
            r[v4]
                .as_str()
                .or(r[v6].as_str())
                .unwrap_or_default()
                .to_string()
        };
        let key = (
            addr("sourceIPv4Address", "sourceIPv6Address"),
            addr("destinationIPv4Address", "destinationIPv6Address"),
            r["sourceTransportPort"].as_u64().unwrap_or(0) as u16,
            r["destinationTransportPort"].as_u64().unwrap_or(0) as u16,
            r["protocolIdentifier"].as_u64().unwrap() as u8,
        );
        m.entry(key).or_default().push(r);
    }
    m
}

/// The fields compared, tshark's name and the probe's, with the display filter of the frames
/// whose value counts (the first such frame of each flow).
const FIELDS: &[(&str, &str, &str)] = &[
    ("dns.qry.name", "dnsQueryName", "dns"),
    (
        "tls.handshake.extensions_server_name",
        "tlsServerName",
        "tls.handshake.type == 1",
    ),
    (
        "tls.handshake.extensions_alpn_str",
        "tlsAlpn",
        "tls.handshake.type == 1",
    ),
    ("http.request.method", "httpRequestMethod", "http.request"),
    ("http.host", "httpRequestHost", "http.request"),
    ("http.request.uri", "httpRequestTarget", "http.request"),
    ("http.user_agent", "httpUserAgent", "http.request"),
    ("http.response.code", "httpStatusCode", "http.response"),
];

/// tshark's first value of each of [`FIELDS`] in each flow (direction), in one pass: TCP
/// reassembly off (the probe reads each segment on its own: a response cut after its
/// headers is still dissected), DNS only on the probe's ports, frames inside tunnels or with
/// two IP headers left out (the probe ran `--decap none`).
fn tshark_first(pcap: &Path) -> BTreeMap<(&'static str, Key), String> {
    let mut cols = vec![
        "ip.src",
        "ipv6.src",
        "ip.dst",
        "ipv6.dst",
        "tcp.srcport",
        "udp.srcport",
        "tcp.dstport",
        "udp.dstport",
        "ip.proto",
        "ipv6.nxt",
        "tls.handshake.type",
        "http.request.version",
        "http.response.version",
        "frame.protocols",
    ];
    cols.extend(FIELDS.iter().map(|f| f.0));
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-o", "tcp.desegment_tcp_streams:FALSE", "-r"])
        .arg(pcap)
        .args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|", "-Y"])
        // TLS over TCP only: QUIC's Initial packets are not read yet.
        .arg("(udp.port == 53 || udp.port == 5353 || tcp.port == 53) && (dns || mdns) || tcp && tls.handshake || http");
    for f in &cols {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    let mut m = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let c: Vec<&str> = line.split('\t').collect();
        if c.len() < cols.len() || c[..10].iter().any(|v| v.contains('|')) {
            continue;
        }
        let stack = c[13];
        if ["vxlan", "gre", "geneve", "gtp", "erspan"]
            .iter()
            .any(|t| stack.contains(t))
        {
            continue;
        }
        let pick = |a: &str, b: &str| {
            if a.is_empty() {
                b.to_string()
            } else {
                a.to_string()
            }
        };
        let port = |a: &str, b: &str| pick(a, b).parse::<u16>().unwrap_or(0);
        let proto = pick(c[8], c[9]).parse::<u8>().unwrap_or(0);
        let key = (
            pick(c[0], c[1]),
            pick(c[2], c[3]),
            port(c[4], c[5]),
            port(c[6], c[7]),
            proto,
        );
        let hs = c[10].split('|').next().unwrap_or("");
        for (i, (_, name, filter)) in FIELDS.iter().enumerate() {
            let v = c[14 + i];
            let applies = match *filter {
                "dns" => stack.contains("dns") || stack.contains("mdns"),
                "tls.handshake.type == 1" => hs == "1",
                // Lines tshark takes for HTTP without a version (an HTTP/0.9 request, or a
                // body line such as "POST request received") are not compared.
                "http.request" => c[11].starts_with("HTTP/1"),
                _ => c[12].starts_with("HTTP/1."),
            };
            if !applies {
                // tshark read this frame as the protocol, but not as the probe compares it:
                // whatever the probe says of the flow is not held against it.
                if !v.is_empty() {
                    m.entry(("excluded", key.clone()))
                        .or_insert_with(String::new);
                }
                continue;
            }
            if v.is_empty() {
                continue;
            }
            // Every ALPN protocol, comma-separated as the probe writes them; of anything else
            // (several questions, pipelined requests) the first.
            let v = if *name == "tlsAlpn" {
                v.replace('|', ",")
            } else {
                v.split('|').next().unwrap().to_string()
            };
            m.entry((*name, key.clone())).or_insert(v);
        }
    }
    m
}

/// The probe's value of `name` for each flow that has one.
fn probe_field(
    records: &BTreeMap<Key, Vec<serde_json::Value>>,
    name: &str,
) -> BTreeMap<Key, String> {
    records
        .iter()
        .filter_map(|(k, rs)| {
            let v = rs.iter().find_map(|r| r.get(name))?;
            Some((
                k.clone(),
                v.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string()),
            ))
        })
        .collect()
}

/// Every flow the probe metered that tshark names a value for has the probe's same value, and
/// the probe names none tshark does not; differences go to `wrong`. (Flows the probe did not
/// meter at all, e.g. a link type it does not decode, are the flow tests' business.) tshark's
/// placeholders for what it could not read (`<Name too long>`, …) are no value.
// A test helper that reads best with every map it compares in sight.
#[allow(clippy::too_many_arguments)]
fn compare(
    what: &str,
    pcap: &Path,
    metered: &BTreeMap<Key, Vec<serde_json::Value>>,
    probe: &BTreeMap<Key, String>,
    tshark: &BTreeMap<Key, String>,
    excluded: &BTreeSet<Key>,
    dissected: &BTreeSet<Key>,
    checked: &mut usize,
    wrong: &mut Vec<String>,
) {
    let placeholder = |v: &str| v.starts_with('<') && v.ends_with('>') && v != "<Root>";
    for (k, t) in tshark.iter().filter(|(k, _)| metered.contains_key(*k)) {
        if placeholder(t) {
            continue;
        }
        // The probe keeps at most 255 or 256 bytes of a value (and says it cut it).
        let bound = if what == "httpRequestHost" || what == "dnsQueryName" {
            255
        } else {
            256
        };
        let t = &t.as_bytes()[..t.len().min(bound)];
        let t = &String::from_utf8_lossy(t).into_owned();
        if probe.get(k) != Some(t) {
            wrong.push(format!(
                "{what} of {k:?} in {}: tshark {t:?}, probe {:?}",
                pcap.display(),
                probe.get(k)
            ));
        }
        *checked += 1;
    }
    // tshark dissects HTTP on its ports only; the probe recognises requests on any port.
    let tshark_would = |k: &Key| {
        !what.starts_with("http")
            || [80u16, 8080, 3128, 8000]
                .iter()
                .any(|p| k.2 == *p || k.3 == *p)
    };
    for (k, v) in probe {
        // Only flows tshark dissected as this protocol (it leaves out new methods such as
        // QUERY, HTTP on a SOCKS port, frames whose IP fields it shows twice).
        if !tshark.contains_key(k)
            && tshark_would(k)
            && !excluded.contains(k)
            && dissected.contains(k)
        {
            wrong.push(format!(
                "{what} of {k:?} in {}: probe {v:?}, tshark none",
                pcap.display()
            ));
        }
    }
}

#[test]
fn app_fields_equal_tshark_on_the_shared_corpus() {
    let files = corpus();
    if files.is_empty() {
        eprintln!("SKIP: no shared captures on this machine");
        return;
    }
    let mut checked: BTreeMap<&str, usize> = BTreeMap::new();
    let mut wrong: Vec<String> = vec![];
    let mut compared_files = 0;
    for pcap in &files {
        let records = probe_records(pcap);
        // tshark runs (0.2 s a file) only on the captures where either could find something:
        // the probe named an application field, or a flow used a DNS, HTTP or TLS port.
        let ports = [53u16, 5353, 80, 443, 8000, 8080, 3128];
        let candidate = records.iter().any(|(k, rs)| {
            ports.contains(&k.2)
                || ports.contains(&k.3)
                || rs
                    .iter()
                    .any(|r| FIELDS.iter().any(|f| r.get(f.1).is_some()))
        });
        if !candidate {
            continue;
        }
        compared_files += 1;
        let tshark = tshark_first(pcap);
        let excluded: BTreeSet<Key> = tshark
            .keys()
            .filter(|(n, _)| *n == "excluded")
            .map(|(_, k)| k.clone())
            .collect();
        for (_, name, _) in FIELDS {
            let family = &name[..4];
            let dissected: BTreeSet<Key> = tshark
                .keys()
                .filter(|(n, _)| n.starts_with(family))
                .map(|(_, k)| k.clone())
                .collect();
            let t: BTreeMap<Key, String> = tshark
                .iter()
                .filter(|((n, _), _)| n == name)
                .map(|((_, k), v)| (k.clone(), v.clone()))
                .collect();
            compare(
                name,
                pcap,
                &records,
                &probe_field(&records, name),
                &t,
                &excluded,
                &dissected,
                checked.entry(name).or_default(),
                &mut wrong,
            );
        }
    }
    eprintln!("{compared_files} captures compared; flows checked against tshark: {checked:?}");
    assert!(
        wrong.is_empty(),
        "{} differences:\n{}",
        wrong.len(),
        wrong
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(checked["dnsQueryName"] >= 100, "{checked:?}");
    assert!(checked["tlsServerName"] >= 3, "{checked:?}");
    assert!(checked["httpRequestHost"] >= 20, "{checked:?}");
    assert!(checked["httpStatusCode"] >= 20, "{checked:?}");
}

#[test]
fn ja4_equals_the_ja4plus_package_on_every_client_hello_of_the_corpus() {
    let files = corpus();
    if files.is_empty() {
        eprintln!("SKIP: no shared captures on this machine");
        return;
    }
    // On PATH, or in the venv `cargo xtask deps` makes (xtask/src/deps.rs).
    let ja4plus = ["ja4plus", "/opt/probe-pyref/bin/ja4plus"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok());
    let Some(ja4plus) = ja4plus else {
        assert!(
            std::env::var_os("CI").is_none(),
            "ja4plus (PyPI) must be installed in CI: .ci/run installs it"
        );
        eprintln!("SKIP: ja4plus is not installed (pip install ja4plus)");
        return;
    };
    let mut checked = 0;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for pcap in &files {
        // ja4plus (scapy) and tshark are slow: only the captures where the probe found a
        // ClientHello or a flow used a TLS port (ja4plus then says whether there was one).
        let records = probe_records(pcap);
        let probe = probe_field(&records, "tlsJa4");
        let tls_ports = [443u16, 8443, 465, 636, 853, 993, 995, 5061];
        let tls_port = records
            .keys()
            .any(|k| k.4 == 6 && (tls_ports.contains(&k.2) || tls_ports.contains(&k.3)));
        if probe.is_empty() && !tls_port {
            continue;
        }
        let out = Command::new(ja4plus)
            .args(["--format", "json", "--types", "ja4", "analyze"])
            .arg(pcap)
            .output()
            .expect("run ja4plus");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let fp = v["fingerprint"].as_str().unwrap_or_default();
            let key: Key = (
                v["src_ip"].as_str().unwrap().to_string(),
                v["dst_ip"].as_str().unwrap().to_string(),
                v["src_port"].as_u64().unwrap() as u16,
                v["dst_port"].as_u64().unwrap() as u16,
                if fp.starts_with('q') { 17 } else { 6 },
            );
            assert_eq!(
                probe.get(&key).map(String::as_str),
                Some(fp),
                "JA4 of {key:?} in {}",
                pcap.display()
            );
            seen.insert(fp.to_string());
            checked += 1;
        }
    }
    eprintln!(
        "JA4 checked against ja4plus: {checked} hellos, {} distinct: {seen:?}",
        seen.len()
    );
    assert!(checked >= 5, "{checked}");
}
