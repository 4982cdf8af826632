//! pmacct's nfacctd with its memory plugin, a second collector someone else wrote.

use crate::tools::free_udp_port;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A row of pmacct's table: (source, destination, source port, destination port, protocol
/// name) to (packets, bytes).
pub type PmacctTable = BTreeMap<(String, String, u64, u64, String), (u64, u64)>;

/// pmacct's nfacctd with its memory plugin, queried with the `pmacct` client.
pub struct Nfacctd {
    child: Child,
    pipe: std::path::PathBuf,
    pub port: u16,
}

impl Nfacctd {
    pub fn start(dir: &std::path::Path) -> Nfacctd {
        Nfacctd::start_with(dir, "src_host, dst_host, src_port, dst_port, proto")
    }

    /// nfacctd aggregating by `aggregate` (pmacct's primitives).
    pub fn start_with(dir: &std::path::Path, aggregate: &str) -> Nfacctd {
        let port = free_udp_port();
        let pipe = dir.join("imt.pipe");
        let conf = dir.join("nfacctd.conf");
        std::fs::write(
            &conf,
            format!(
                "daemonize: false\nnfacctd_ip: 127.0.0.1\nnfacctd_port: {port}\n\
                 plugins: memory[m]\nimt_path[m]: {}\n\
                 aggregate[m]: {aggregate}\n",
                pipe.display()
            ),
        )
        .unwrap();
        let child = Command::new("nfacctd")
            .arg("-f")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nfacctd (Debian package pmacct) is installed");
        let t = std::time::Instant::now();
        while !pipe.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "nfacctd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        Nfacctd { child, pipe, port }
    }

    /// The memory table's rows as pmacct prints them in JSON.
    pub fn rows(&mut self) -> Vec<serde_json::Value> {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "nfacctd exited (it crashes on records it cannot handle)"
        );
        let out = Command::new("pmacct")
            .arg("-p")
            .arg(&self.pipe)
            .args(["-s", "-O", "json"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The memory table.
    pub fn table(&mut self) -> PmacctTable {
        self.rows()
            .into_iter()
            .map(|v| {
                (
                    (
                        v["ip_src"].as_str().unwrap().to_string(),
                        v["ip_dst"].as_str().unwrap().to_string(),
                        v["port_src"].as_u64().unwrap(),
                        v["port_dst"].as_u64().unwrap(),
                        v["ip_proto"].as_str().unwrap().to_string(),
                    ),
                    (v["packets"].as_u64().unwrap(), v["bytes"].as_u64().unwrap()),
                )
            })
            .collect()
    }
}

impl Drop for Nfacctd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The table nfacctd should hold for `flows` (tshark's truth): nfacctd 1.7.7 keeps no ICMP
/// type/code from IPFIX (its destination port is 0) and names protocols.
pub fn truth_of(flows: &crate::tools::Flows) -> PmacctTable {
    let mut truth = PmacctTable::new();
    for (k, t) in flows {
        let (dport, proto) = match k.proto {
            6 => (k.dport as u64, "tcp".to_string()),
            17 => (k.dport as u64, "udp".to_string()),
            1 => (0, "icmp".to_string()),
            58 => (0, "ipv6-icmp".to_string()),
            p => (k.dport as u64, p.to_string()),
        };
        let e = truth
            .entry((
                k.src.to_string(),
                k.dst.to_string(),
                k.sport as u64,
                dport,
                proto,
            ))
            .or_default();
        e.0 += t.packets;
        e.1 += t.bytes;
    }
    truth
}
