//! Feeds written by scapy (the PyPI package, in `cargo xtask deps`' venv): frames another
//! program built, for the tunnel tests from files and in the live lab.

use std::path::{Path, PathBuf};

/// The Python that has scapy, or `None` after saying why the test skips; under CI a missing
/// scapy fails the test.
pub fn python(test: &str) -> Option<PathBuf> {
    for py in ["/opt/probe-pyref/bin/python", "python3"] {
        let ok = std::process::Command::new(py)
            .args(["-c", "import scapy"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(py.into());
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: scapy is missing (cargo xtask deps installs it into /opt/probe-pyref)"
    );
    eprintln!("SKIP {test}: no Python with scapy (cargo xtask deps installs it)");
    None
}

/// The VXLAN feeds of `tests/scapy/vxlan_feeds.py`: (case, tshark options that make tshark
/// read it as the sender meant, tunnel layers). Each is `DIR/CASE.pcap`; so is
/// `random4789.pcap`, UDP to 4789 that is not VXLAN.
pub const VXLAN_FEEDS: [(&str, &[&str], u64); 5] = [
    // scapy's default: flags 0x0c with Next Protocol 3 (Ethernet).
    ("default", &[], 1),
    // Reserved bits and fields set: RFC 7348 says ignore them.
    ("reserved", &[], 1),
    // VXLAN-GPE on its own port: IPv4, IPv6 and Ethernet inside.
    ("gpe4790", &[], 1),
    // VXLAN-GPE on 4789 (tshark 4.0 reads 4789 as plain VXLAN unless told).
    ("gpe4789", &["-d", "udp.port==4789,vxlan_gpe"], 1),
    // VXLAN, Geneve, GRE: three deep.
    ("stack3", &[], 3),
];

/// Writes the VXLAN feeds into `dir`; false (the test skips) without scapy outside CI.
pub fn write_vxlan_feeds(test: &str, dir: &Path) -> bool {
    let Some(py) = python(test) else {
        return false;
    };
    let script = crate::workspace_root().join("tests/scapy/vxlan_feeds.py");
    let out = std::process::Command::new(&py)
        .arg(&script)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}
