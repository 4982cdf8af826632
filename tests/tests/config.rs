//! `--config FILE` and `probe check-config`: the example config, settings that take effect, the
//! command line winning, and mistakes that name the line and the fix.

use e2e::capture::{write_pcap, LINKTYPE_ETHERNET};
use e2e::craft::mixed_traffic;
use e2e::tools::*;
use e2e::TempDir;

const BASE: u64 = 1_700_000_000_000_000_000;

#[test]
fn the_example_config_checks_clean_once_its_interface_exists() {
    let tmp = TempDir::new("cfgexample");
    let text = std::fs::read_to_string(e2e::workspace_root().join("dist/probe.toml")).unwrap();
    // This machine has no eth1 and no /var/lib/probe: point them at what exists.
    let text = text
        .replace("\"eth1\"", "\"lo\"")
        .replace("/var/lib/probe", tmp.path().to_str().unwrap());
    let file = tmp.path().join("probe.toml");
    std::fs::write(&file, text).unwrap();
    let out = run_probe(&["check-config", file.to_str().unwrap()]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("is valid"), "{stderr}");
    assert!(stdout.contains("interface = \"lo\"  # file"), "{stdout}");
    assert!(
        stdout.contains("tcp-end-grace = \"2s\"  # default"),
        "{stdout}"
    );
    // The shipped file as is: its interface does not exist here, and check-config says so.
    let shipped = e2e::workspace_root().join("dist/probe.toml");
    let out = run_probe(&["check-config", shipped.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'eth1' does not exist"));
}

#[test]
fn settings_take_effect_and_the_command_line_wins() {
    let tmp = TempDir::new("cfgread");
    let pcap = tmp.path().join("mix.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &mixed_traffic(BASE));
    let stats = tmp.path().join("books.json");
    let file = tmp.path().join("read.toml");
    std::fs::write(
        &file,
        format!(
            "print = \"json\"\nstats-json = \"{}\"\nmax-flows = 3\nidle_timeout = \"1s\"\n",
            stats.display()
        ),
    )
    .unwrap();
    // The file's max-flows 3 would evict; the command line's 1000 replaces it.
    let out = run_probe(&[
        "read",
        "--config",
        file.to_str().unwrap(),
        pcap.to_str().unwrap(),
        "--max-flows",
        "1000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let books = read_books(&stats);
    assert_eq!(books["flows"]["by_end_reason"]["lackOfResources"], 0);
    assert!(
        books["flows"]["by_end_reason"]["idleTimeout"]
            .as_u64()
            .unwrap()
            > 0
    );
    let lines = String::from_utf8_lossy(&out.stdout).lines().count() as u64;
    assert_eq!(lines, books["export"]["records"].as_u64().unwrap());
    // Without the override, the file's bound applies.
    let out = run_probe(&[
        "read",
        "--config",
        file.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(
        read_books(&stats)["flows"]["by_end_reason"]["lackOfResources"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn mistakes_name_the_file_the_line_and_the_fix() {
    let tmp = TempDir::new("cfgbad");
    let cases = [
        (
            "interface = \"lo\"\nidle-timout = \"5s\"\n",
            "line 2",
            "did you mean 'idle-timeout'",
        ),
        (
            "interface = \"lo\"\nidle-timeout = \"5x\"\n",
            "'5x' is not a duration",
            "check-config",
        ),
        (
            "interface = \"lo\"\nipfix = [\"udp://h\"]\n",
            "no port",
            "udp://127.0.0.1:4739",
        ),
        ("interface = \"lo\"\nbiflow = \"yes\"\n", "line 2", "switch"),
        ("interface = \"lo\n", "bad.toml", "line 1"),
        // Issue #18: what a new user met.
        (
            "interface = \"lo\"\nmax-flows = -5\n",
            "line 2: 'max-flows' = -5: '-5' must be a whole number greater than 0",
            "max-flows = 1000000 (the default)",
        ),
        (
            "config = \"other.toml\"\n",
            "line 1: 'config' cannot be set in a config file",
            "command-line option",
        ),
        (
            "interface = \"lo\"\n\n[export]\nbiflow = true\n",
            "line 3: 'export' is a section",
            "idle-timeout = \"15s\"",
        ),
        (
            "interface = \"lo\"\nidle-timeout = \"30\"\n",
            "line 2: 'idle-timeout' = \"30\": '30' needs a unit: write 30s",
            "idle-timeout = \"15s\" (the default)",
        ),
        (
            "interface = \"lo\"\nactive-timeout = true\n",
            "line 2: 'active-timeout' takes a value, not true",
            "active-timeout = \"60s\"",
        ),
        (
            "interface = \"lo\"\nprint = 3\n",
            "line 2: 'print' = 3: '3' is not one of json, table",
            "see `probe capture --help`",
        ),
    ];
    for (i, (text, a, b)) in cases.iter().enumerate() {
        let file = tmp.path().join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = run_probe(&["capture", "--config", file.to_str().unwrap()]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = stderr.replace(&format!("bad{i}.toml"), "bad.toml");
        assert!(stderr.contains(a) && stderr.contains(b), "{text}: {stderr}");
    }
}

#[test]
fn an_observation_domain_netflow_v5_cannot_carry_is_refused() {
    let tmp = TempDir::new("cfgv5");
    let pcap = tmp.path().join("in.pcap");
    e2e::capture::write_pcap(
        &pcap,
        e2e::capture::LINKTYPE_ETHERNET,
        false,
        &e2e::craft::mixed_traffic(1_700_000_000_000_000_000),
    );
    let out = run_probe(&[
        "read",
        pcap.to_str().unwrap(),
        "--observation-domain",
        "300",
        "--ipfix",
        "netflow5://127.0.0.1:9",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("observation domain 300 does not fit NetFlow v5's 8-bit engine id")
            && stderr.contains("0-255"),
        "{stderr}"
    );
    let cfg = tmp.path().join("v5.toml");
    std::fs::write(
        &cfg,
        "interface = \"lo\"\nobservation-domain = 300\nipfix = [\"netflow5://127.0.0.1:9\"]\n",
    )
    .unwrap();
    let out = run_probe(&["check-config", cfg.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        format!("{stdout}{stderr}").contains("observation-domain 300 does not fit"),
        "{stdout}{stderr}"
    );
    // 255 fits, and v9 and IPFIX carry 32-bit ids.
    let out = run_probe(&[
        "read",
        pcap.to_str().unwrap(),
        "--observation-domain",
        "300",
        "--ipfix",
        "netflow9://127.0.0.1:9",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_systemd_unit_verifies_and_checks_its_config_first() {
    let unit = std::fs::read_to_string(e2e::workspace_root().join("dist/probe.service")).unwrap();
    assert!(unit.contains("ExecStartPre=/usr/local/bin/probe check-config /etc/probe/probe.toml"));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(
        unit.contains("ProtectSystem=strict") && unit.contains("ReadWritePaths=/var/lib/probe")
    );
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed");
        return;
    }
    // Verify the unit as shipped, with the binary path pointed at the build.
    let tmp = TempDir::new("unit");
    let path = tmp.path().join("probe.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/probe", e2e::probe_bin().to_str().unwrap()),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
