//! The kernel matrix: the live smoke under the host's kernel (the rest of the suite) and under
//! Debian 12's stock kernel (6.1) in a virtual machine, booted with virtme-ng on the host's
//! root filesystem (TCG emulation: KVM guests hang on these machines).
//!
//! Inside the VM the same live test binary runs three of its tests: native and generic XDP
//! into nfcapd with records checked against tshark's flows of the frames sent and books that
//! close (the driver's count included), and the timestamp check, which on 6.1 must take kernel
//! time from the XDP metadata area (the host's 6.18 refuses that helper and takes the prefix).
//!
//! Needs (installed by `cargo xtask deps`): qemu-system-x86, busybox-static, the kernel
//! package `linux-image-6.1.0-47-amd64-unsigned` (the `-cloud-` image has no 9p and cannot
//! mount the host's root), and virtme-ng from PyPI in /opt/probe-vng.

use e2e::lab::require_root;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One VM at a time: two TCG guests on a 2-core machine would starve each other.
static ONE_VM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The Debian 12 kernels to boot: every `/boot/vmlinuz-6.1.*-amd64` there is.
fn debian12_kernels() -> Vec<PathBuf> {
    let mut k: Vec<PathBuf> = std::fs::read_dir("/boot")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().unwrap().to_string_lossy().into_owned();
                    n.starts_with("vmlinuz-6.1.") && n.ends_with("-amd64")
                })
                .collect()
        })
        .unwrap_or_default();
    k.sort();
    k
}

fn vng() -> Option<PathBuf> {
    let venv = Path::new("/opt/probe-vng/bin/vng");
    if venv.exists() {
        return Some(venv.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("vng"))
            .find(|c| c.exists())
    })
}

/// The `live` test binary cargo built beside this one (the newest, if older builds linger).
fn live_test_binary() -> PathBuf {
    let me = std::env::current_exe().expect("the test binary's path");
    let deps = me.parent().expect("deps directory");
    std::fs::read_dir(deps)
        .expect("read the deps directory")
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("live-") && !n.contains('.')
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
        .expect("cargo builds the live tests with this one (cargo test --workspace)")
}

/// A Debian 12 kernel to boot and the vng that boots it, holding the one-VM-at-a-time lock.
struct Vm {
    vng: PathBuf,
    kernel: PathBuf,
    /// The host's PATH with vng's directory first, for the guest too.
    path: String,
    probe: PathBuf,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Vm {
    /// `None` after saying why `test` skips; under CI a missing VM fails the test.
    fn find(test: &str) -> Option<Vm> {
        if !require_root(test) {
            return None;
        }
        let (Some(vng), Some(kernel)) = (vng(), debian12_kernels().into_iter().next()) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: CI must run the kernel matrix: `cargo xtask deps` installs virtme-ng, qemu-system-x86, busybox-static and linux-image-6.1.0-47-amd64-unsigned"
            );
            eprintln!("SKIP {test}: no vng or no /boot/vmlinuz-6.1.*");
            return None;
        };
        let path = format!(
            "{}:{}",
            vng.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let probe = e2e::probe_bin();
        let probe = std::fs::canonicalize(&probe).unwrap_or(probe);
        Some(Vm {
            vng,
            kernel,
            path,
            probe,
            _one: ONE_VM.lock().unwrap_or_else(|e| e.into_inner()),
        })
    }

    /// Boots the kernel (2 CPUs, 2 GiB, TCG) with `extra` vng options and runs `script` as
    /// root in the guest; returns its stdout and stderr.
    fn run(&self, extra: &[&str], script: &str) -> (String, String) {
        let out = Command::new(&self.vng)
            .args(["--run"])
            .arg(&self.kernel)
            .args(["--disable-kvm", "--memory", "2G", "--cpus", "2"])
            .args(extra)
            .arg("--")
            .arg(script)
            .env("PATH", &self.path)
            .output()
            .expect("vng runs");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

const GUEST_TESTS: [&str; 4] = [
    "native_mode_meters_every_frame_into_nfcapd",
    "generic_mode_meters_every_frame_into_nfcapd",
    "timestamps_from_the_kernel_and_from_user_space_are_near_the_send_time_and_keep_the_order",
    // The tunnel parsing of the ignore-list, through this kernel's verifier.
    "the_ignore_list_looks_inside_one_tunnel_layer_in_the_kernel",
];

#[test]
fn live_smoke_under_debian_12s_kernel_in_a_vm() {
    let Some(vm) = Vm::find("live_smoke_under_debian_12s_kernel_in_a_vm") else {
        return;
    };
    let (kernel, path, probe) = (&vm.kernel, &vm.path, &vm.probe);
    let live = live_test_binary();
    let script = format!(
        "cd {root} && export PATH='{path}' PROBE_BIN='{probe}' CI=true && modprobe veth && uname -r && \
         {live} --exact {tests} --nocapture --test-threads 1",
        root = e2e::workspace_root().display(),
        probe = probe.display(),
        live = live.display(),
        tests = GUEST_TESTS.join(" "),
    );
    let t0 = std::time::Instant::now();
    let (out, err) = vm.run(&[], &script);
    let text = format!("{out}{err}");
    eprintln!(
        "kernel matrix: {} booted and tested in {:.0} s",
        kernel.display(),
        t0.elapsed().as_secs_f64()
    );
    for l in text.lines().filter(|l| l.starts_with("timestamps ")) {
        eprintln!("  guest: {l}");
    }
    let release = kernel
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("vmlinuz-")
        .to_string();
    assert!(
        text.lines().any(|l| l.trim() == release),
        "the guest did not run {release}:\n{text}"
    );
    assert!(
        text.contains(&format!("test result: ok. {} passed", GUEST_TESTS.len())),
        "the live smoke failed under {release}:\n{text}"
    );
    // Debian 12's kernel lets XDP programs use the metadata helper: kernel time from there.
    assert!(
        text.contains("timestamps auto (\"xdp-metadata\")"),
        "under {release} auto should take the XDP metadata area:\n{text}"
    );
}

/// The guest's side of the virtio_net check: one NIC moved into a namespace as the sender,
/// the other captured in native mode; 100 UDP datagrams, a static neighbour entry (the probe
/// takes every frame, ARP replies included); the records and the books on stdout.
const VIRTIO_GUEST: &str = r#"set -e
A=$(ls /sys/class/net | grep -v '^lo$' | sort | head -1)
B=$(ls /sys/class/net | grep -v '^lo$' | sort | tail -1)
echo "driver: $(basename $(readlink /sys/class/net/$A/device/driver))"
ip netns add sender
ip link set $B netns sender
ip -n sender link set $B up
ip -n sender addr add 10.50.0.1/24 dev $B
ip link set $A up
ip addr add 10.50.0.2/24 dev $A
ip -n sender neigh add 10.50.0.2 lladdr $(cat /sys/class/net/$A/address) dev $B
sleep 1
"$PROBE_BIN" capture -i $A --xdp-mode native --print json --stats-json "$OUT/books.json" --duration 8s > "$OUT/flows.json" 2> "$OUT/stderr.txt" &
for i in $(seq 50); do grep -q "capturing on" "$OUT/stderr.txt" 2>/dev/null && break; sleep 0.2; done
ip netns exec sender python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(100):
    s.sendto(b'probe-virtio-%03d' % i, ('10.50.0.2', 7000))
"
wait
echo "=== stderr"; cat "$OUT/stderr.txt"
echo "=== flows"; cat "$OUT/flows.json"
echo "=== books"; cat "$OUT/books.json"
"#;

#[test]
fn native_xdp_on_virtio_net_reads_every_datagram_and_the_driver_count_agrees() {
    let Some(vm) =
        Vm::find("native_xdp_on_virtio_net_reads_every_datagram_and_the_driver_count_agrees")
    else {
        return;
    };
    let tmp = e2e::TempDir::new("virtio");
    let script = tmp.path().join("guest.sh");
    std::fs::write(&script, VIRTIO_GUEST).unwrap();
    let (text, err) = vm.run(
        &["--network", "loop", "--no-dhcp"],
        &format!(
            "export PATH='{}' PROBE_BIN='{}' OUT=$(mktemp -d); bash {}",
            vm.path,
            vm.probe.display(),
            script.display()
        ),
    );
    let kernel = &vm.kernel;
    let all = format!("{text}{err}");
    assert!(
        text.contains("driver: virtio_net"),
        "not virtio_net:\n{all}"
    );
    let section = |name: &str| -> String {
        let start = text
            .find(&format!("=== {name}\n"))
            .unwrap_or_else(|| panic!("no {name} section:\n{all}"));
        let rest = &text[start + name.len() + 5..];
        rest[..rest.find("\n=== ").unwrap_or(rest.len())].to_string()
    };
    let stderr = section("stderr");
    assert!(stderr.contains("XDP in native mode"), "{stderr}");
    // Every datagram sent is in one record.
    let packets: u64 = section("flows")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["destinationTransportPort"] == 7000 && r["protocolIdentifier"] == 17)
        .map(|r| r["packetDeltaCount"].as_u64().unwrap())
        .sum();
    assert_eq!(packets, 100, "datagrams metered, of 100 sent:\n{stderr}");
    // The books close, and the driver's own count agrees with what XDP saw.
    let books: serde_json::Value = serde_json::from_str(&section("books")).expect("books JSON");
    let l = &books["live"];
    assert_eq!(l["xdp_mode"], "native", "{l}");
    assert_eq!(l["balanced"], true, "{l}");
    assert_eq!(l["missed_before_xdp"], 0, "{l}");
    assert_eq!(l["interface_received"], l["seen"], "{l}");
    assert_eq!(l["dropped"], 0, "{l}");
    eprintln!(
        "virtio_net, native XDP, {}: driver counted {}, XDP saw {}, 100 of 100 datagrams metered",
        kernel.display(),
        l["interface_received"],
        l["seen"]
    );
}
