//! IPFIX over TLS (RFC 7011 §11), checked against TLS code someone else wrote: socat's
//! `OPENSSL-LISTEN` is the collector, writing the decrypted stream to a file for ipfixrw and
//! tshark; openssl makes the certificates (a CA, the collector's, a client's, an expired one).

use e2e::capture::write_pcap;
use e2e::collector::{
    ipfixrw_decode, record_rows as rows, split_messages, tshark_decode, Recorder,
};
use e2e::craft::mixed_traffic;
use e2e::tools::*;
use e2e::TempDir;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BASE: u64 = 1_700_000_000_000_000_000;

/// A CA; the collector's certificate for 127.0.0.1 and collector.test; a client's; an
/// expired collector certificate.
fn certificates(dir: &Path) {
    use e2e::certs::{issue, Cert};
    let server = "subjectAltName=IP:127.0.0.1,DNS:collector.test";
    issue(
        dir,
        "probe-test-ca",
        &[
            Cert {
                name: "server",
                cn: "collector.test",
                ext: server,
                days: 2,
            },
            Cert {
                name: "expired",
                cn: "collector.test",
                ext: server,
                days: 0,
            },
            Cert {
                name: "client",
                cn: "probe-exporter",
                ext: "extendedKeyUsage=clientAuth",
                days: 2,
            },
        ],
    )
    .unwrap();
    // "0 days": not valid after the second it was made.
    std::thread::sleep(Duration::from_millis(1100));
}

/// socat as a TLS collector on a free port, writing what it decrypts to `out`; with
/// `verify_client`, it demands a client certificate signed by the CA.
struct Collector {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Collector {
    fn start(dir: &Path, cert: &str, verify_client: bool, out: &str) -> Collector {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,cert={cert}.pem,key={cert}.key,cafile=ca.pem,verify={}",
            verify_client as u8
        );
        let child = Command::new("socat")
            .current_dir(dir)
            .args(["-u", &listen, &format!("OPEN:{out},creat,trunc")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat (installed by .ci/run)");
        // Listening once a plain TCP connect succeeds is too late to test; give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        Collector {
            child,
            port,
            out: dir.join(out),
        }
    }

    fn url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.port)
    }

    /// Waits for socat to finish (the probe closed the session), then returns the stream.
    fn finish(mut self) -> Vec<u8> {
        let t = std::time::Instant::now();
        while self.child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read(&self.out).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn setup(name: &str) -> (TempDir, PathBuf, Vec<String>) {
    let tmp = TempDir::new(name);
    certificates(tmp.path());
    let pcap = tmp.path().join("in.pcap");
    write_pcap(
        &pcap,
        e2e::capture::LINKTYPE_ETHERNET,
        false,
        &mixed_traffic(BASE),
    );
    let rec = Recorder::start();
    let out = run_probe(&["read", pcap.to_str().unwrap(), "--ipfix", &rec.url()]);
    assert!(out.status.success());
    let truth = rows(ipfixrw_decode(&rec.finish()));
    (tmp, pcap, truth)
}

#[test]
fn tls_export_equals_the_udp_export_and_mutual_authentication_works() {
    let (tmp, pcap, truth) = setup("tls");
    let dir = tmp.path();
    let ca = dir.join("ca.pem");
    // Server authentication only; the collector named by its IP address.
    let c = Collector::start(dir, "server", false, "plain.bin");
    let out = run_probe(&[
        "read",
        pcap.to_str().unwrap(),
        "--ipfix",
        &c.url(),
        "--tls-ca",
        ca.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let stream = c.finish();
    assert_eq!(
        rows(ipfixrw_decode(&split_messages(&stream))),
        truth,
        "{stderr}"
    );
    // tshark reads the decrypted stream as an IPFIX file (RFC 5655).
    let f = dir.join("plain.ipfix");
    std::fs::write(&f, &stream).unwrap();
    let verdict = tshark_decode(&f);
    assert!(verdict.problems.is_empty(), "{:?}", verdict.problems);
    assert_eq!(verdict.data_records, truth.len());

    // Mutual authentication, the collector's name checked against --tls-server-name.
    let c = Collector::start(dir, "server", true, "mutual.bin");
    let stats = dir.join("books.json");
    let out = run_probe(&[
        "read",
        pcap.to_str().unwrap(),
        "--ipfix",
        &c.url(),
        "--tls-ca",
        ca.to_str().unwrap(),
        "--tls-server-name",
        "collector.test",
        "--tls-cert",
        dir.join("client.pem").to_str().unwrap(),
        "--tls-key",
        dir.join("client.key").to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let stream = c.finish();
    assert_eq!(
        rows(ipfixrw_decode(&split_messages(&stream))),
        truth,
        "{stderr}"
    );
    let c = &read_books(&stats)["export"]["collectors"][0];
    assert_eq!(c["sessions"], 1, "{c}");
    assert_eq!(c["messages_lost"], 0, "{c}");
    assert_eq!(c["messages_sent"], c["messages"], "{c}");
}

#[test]
fn a_certificate_the_probe_cannot_trust_costs_counted_records_and_one_clear_line() {
    let (tmp, pcap, truth) = setup("tlsbad");
    let dir = tmp.path();
    let ca = dir.join("ca.pem");
    let cases: [(&str, bool, Vec<String>, &str); 4] = [
        (
            "expired",
            false,
            vec!["--tls-ca".into(), ca.display().to_string()],
            "expired",
        ),
        (
            "server",
            false,
            vec![
                "--tls-ca".into(),
                ca.display().to_string(),
                "--tls-server-name".into(),
                "other.test".into(),
            ],
            "not valid for name",
        ),
        // Our CA is not among the system's roots.
        ("server", false, vec![], "UnknownIssuer"),
        // The collector wants a client certificate we do not have.
        (
            "server",
            true,
            vec!["--tls-ca".into(), ca.display().to_string()],
            "CertificateRequired",
        ),
    ];
    for (i, (cert, verify, extra, reason)) in cases.iter().enumerate() {
        let c = Collector::start(dir, cert, *verify, &format!("bad{i}.bin"));
        let stats = dir.join(format!("books{i}.json"));
        let mut args = vec![
            "read".to_string(),
            pcap.display().to_string(),
            "--ipfix".into(),
            c.url(),
            "--export-drain".into(),
            "1s".into(),
            "--stats-json".into(),
            stats.display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_probe(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // Reading goes on and ends normally; the loss is counted, whole.
        assert!(out.status.success(), "case {i}: {stderr}");
        let books = read_books(&stats);
        let col = &books["export"]["collectors"][0];
        assert_eq!(col["messages_sent"], 0, "case {i}: {col}\n{stderr}");
        assert_eq!(
            col["not_sent"]["flows"].as_u64().unwrap() as usize,
            truth.len(),
            "case {i}: {col}"
        );
        // One line names the collector and the reason.
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains(&c.url()) && l.contains("TLS"))
            .collect();
        assert!(
            !lines.is_empty() && lines[0].contains(reason),
            "case {i}: {stderr}"
        );
        assert!(
            rows(ipfixrw_decode(&split_messages(&c.finish()))).is_empty(),
            "case {i}: nothing reached an untrusted collector"
        );
    }
}

#[test]
fn key_files_others_can_read_are_refused_before_anything_starts() {
    let tmp = TempDir::new("tlskey");
    let dir = tmp.path();
    certificates(dir);
    std::fs::set_permissions(
        dir.join("client.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let pcap = dir.join("in.pcap");
    write_pcap(
        &pcap,
        e2e::capture::LINKTYPE_ETHERNET,
        false,
        &mixed_traffic(BASE),
    );
    let out = run_probe(&[
        "read",
        pcap.to_str().unwrap(),
        "--ipfix",
        "tls://127.0.0.1:9",
        "--tls-cert",
        dir.join("client.pem").to_str().unwrap(),
        "--tls-key",
        dir.join("client.key").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--tls-key") && stderr.contains("0644") && stderr.contains("chmod 600"),
        "{stderr}"
    );
}

#[test]
fn a_tls_collectors_spool_keeps_what_it_missed_and_replays_it_over_tls() {
    // Issue #29 over TLS: the collector is not there, so every record stays in the spool
    // (`--export-drain 0s`); `probe spool replay` then delivers them to a TLS collector, and
    // they are the records UDP export gives.
    let (tmp, pcap, truth) = setup("tls-spool");
    let dir = tmp.path();
    let absent = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let spool = dir.join("spool");
    let stats = dir.join("books.json");
    let out = run_probe(&[
        "read",
        pcap.to_str().unwrap(),
        "--ipfix",
        &format!("tls://{absent}?spool={}", spool.display()),
        "--tls-ca",
        dir.join("ca.pem").to_str().unwrap(),
        "--export-drain",
        "0s",
        "--stats-json",
        stats.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let books = read_books(&stats);
    let c = &books["export"]["collectors"][0];
    assert_eq!(c["messages_lost"], 0, "kept, not lost: {c}");
    assert_eq!(
        c["spool"]["pending"]["flows"].as_u64().unwrap() as usize,
        truth.len(),
        "{c}"
    );
    let collector = Collector::start(dir, "server", false, "replayed.bin");
    let out = run_probe(&[
        "spool",
        "replay",
        "--spool",
        spool.to_str().unwrap(),
        "--ipfix",
        &collector.url(),
        "--tls-ca",
        dir.join("ca.pem").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got = rows(ipfixrw_decode(&split_messages(&collector.finish())));
    assert_eq!(got, truth, "{stderr}");
}
