//! `probe doctor -i IFACE`: the preflight on a veth (native XDP), on a namespace's loopback
//! (generic only), on a missing interface, without privileges, and on an interface another
//! program already holds. It must change nothing: no program is left attached.

use e2e::lab::{require_root, Lab};
use std::process::Output;

fn doctor_in(lab: &Lab, iface: &str) -> (Option<i32>, String) {
    let out: Output = lab
        .probe_in_b()
        .args(["doctor", "-i", iface])
        .output()
        .expect("probe runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn doctor_on_a_veth_says_native_mode_and_the_timestamp_source() {
    if !require_root("doctor_on_a_veth_says_native_mode_and_the_timestamp_source") {
        return;
    }
    let lab = Lab::new(2);
    let (code, text) = doctor_in(&lab, &lab.veth_b);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("driver veth"), "{text}");
    assert!(text.contains("2 RX queues"), "{text}");
    assert!(text.contains("no XDP program attached"), "{text}");
    assert!(
        text.contains("capture can start: XDP in native mode on 2 queues"),
        "{text}"
    );
    // veth has no zero-copy: the doctor says copy mode and why.
    assert!(
        text.contains("zero-copy: not offered by the driver"),
        "{text}"
    );
    // The timestamp source is named, and it is the one capture then uses.
    let plan = text
        .lines()
        .find(|l| l.starts_with("capture can start"))
        .unwrap();
    let stamp = plan.rsplit("timestamps ").next().unwrap().trim();
    assert!(
        ["xdp-metadata", "xdp-prefix", "userspace"].contains(&stamp),
        "{plan}"
    );
    // It changed nothing.
    assert!(!lab.xdp_attached(), "the doctor left XDP attached");
}

#[test]
fn doctor_on_a_namespace_loopback_says_generic_mode() {
    if !require_root("doctor_on_a_namespace_loopback_says_generic_mode") {
        return;
    }
    let lab = Lab::new(1);
    let (code, text) = doctor_in(&lab, "lo");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("the driver has no native XDP"), "{text}");
    assert!(
        text.contains("capture can start: XDP in generic mode on 1 queue"),
        "{text}"
    );
    // lo's MTU (65536) does not fit a UMEM frame: a warning with its fix.
    assert!(text.contains("warn  mtu: MTU 65536"), "{text}");
    assert!(text.contains("fix: lower the MTU"), "{text}");
}

#[test]
fn doctor_on_a_missing_interface_fails_and_names_it() {
    if !require_root("doctor_on_a_missing_interface_fails_and_names_it") {
        return;
    }
    let lab = Lab::new(1);
    let (code, text) = doctor_in(&lab, "nosuchif0");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("FAIL  interface: no network interface named 'nosuchif0'"),
        "{text}"
    );
    assert!(text.contains("capture cannot start"), "{text}");
}

#[test]
fn doctor_without_privileges_names_what_is_missing() {
    if !require_root("doctor_without_privileges_names_what_is_missing") {
        return;
    }
    let lab = Lab::new(1);
    let tmp = e2e::TempDir::new("doctor-unpriv");
    let out = lab.run_probe_in_b_as_nobody(tmp.path(), &["doctor", "-i", &lab.veth_b]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL  privileges: missing CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW"),
        "{text}"
    );
    assert!(text.contains("dist/probe.service"), "{text}");
}

#[test]
fn doctor_names_an_xdp_program_someone_else_attached() {
    if !require_root("doctor_names_an_xdp_program_someone_else_attached") {
        return;
    }
    let lab = Lab::new(1);
    // Another probe holds the interface.
    let mut holder = lab
        .probe_in_b()
        .args([
            "capture",
            "-i",
            &lab.veth_b,
            "--print",
            "json",
            "--duration",
            "20s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !lab.xdp_attached() && t0.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(lab.xdp_attached(), "the holder never attached");
    let (code, text) = doctor_in(&lab, &lab.veth_b);
    e2e::signal(holder.id(), libc::SIGINT);
    let _ = holder.wait();
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("FAIL  xdp: an XDP program is already attached (native mode, id "),
        "{text}"
    );
    assert!(text.contains("bpftool net show dev"), "{text}");
}
