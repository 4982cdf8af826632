//! A private network lab for live-capture tests: two network namespaces joined by a veth
//! pair, with names unique to this process and test, torn down on drop even when the test
//! fails. Traffic never leaves it: frames are crafted and sent from a thread that has entered
//! namespace A, through an AF_PACKET socket bound to A's end of the pair.
//!
//! IPv6 is switched off in both namespaces before the veth pair exists, so the kernel sends
//! no router or neighbour solicitations of its own: every frame on the wire is one the test
//! sent, and the probe's books can be checked to the frame.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Lab {
    /// The sender's namespace and veth end.
    pub ns_a: String,
    pub veth_a: String,
    /// The probe's namespace and veth end (its loopback is up, for a collector).
    pub ns_b: String,
    pub veth_b: String,
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("iproute2 is installed");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a shell command inside namespace `ns`.
pub fn in_ns(ns: &str, script: &str) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("ip netns exec")
}

/// Live tests need root (network namespaces, XDP). Outside CI a non-root run skips them with
/// a printed reason; in CI (`CI` set) a non-root run fails, so a broken setup cannot pass.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: live tests must run as root in CI"
    );
    eprintln!("SKIP {test}: needs root for network namespaces and XDP");
    false
}

impl Lab {
    /// A lab whose veth ends have `queues` RX and TX queues each.
    pub fn new(queues: u32) -> Lab {
        let id = format!(
            "{}x{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab {
            ns_a: format!("probe-lab-{id}-a"),
            ns_b: format!("probe-lab-{id}-b"),
            veth_a: format!("pv{id}a"),
            veth_b: format!("pv{id}b"),
        };
        // From here on, Drop removes whatever was made.
        for ns in [&lab.ns_a, &lab.ns_b] {
            ip(&["netns", "add", ns]);
            let out = in_ns(
                ns,
                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && \
                 echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
            );
            assert!(out.status.success(), "{out:?}");
        }
        let q = queues.to_string();
        ip(&[
            "link",
            "add",
            &lab.veth_a,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &lab.ns_a,
            "type",
            "veth",
            "peer",
            "name",
            &lab.veth_b,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &lab.ns_b,
        ]);
        for (ns, dev) in [(&lab.ns_a, &lab.veth_a), (&lab.ns_b, &lab.veth_b)] {
            ip(&["-n", ns, "link", "set", dev, "mtu", "1600", "up"]);
        }
        ip(&["-n", &lab.ns_b, "link", "set", "lo", "up"]);
        lab
    }

    /// Whether an XDP program is attached to B's end.
    pub fn xdp_attached(&self) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.ns_b, "-d", "link", "show", &self.veth_b])
            .output()
            .expect("ip link show");
        String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
    }

    /// Another veth pair between the same namespaces (A's end, B's end), up, with `queues`
    /// queues: the second port of a tap. Removed with the namespaces.
    pub fn add_pair(&self, queues: u32) -> (String, String) {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let a = format!("{}{n}", &self.veth_a[..self.veth_a.len() - 1]);
        let (a, b) = (format!("{a}a"), format!("{a}b"));
        let q = queues.to_string();
        ip(&[
            "link",
            "add",
            &a,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &self.ns_a,
            "type",
            "veth",
            "peer",
            "name",
            &b,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &self.ns_b,
        ]);
        for (ns, dev) in [(&self.ns_a, &a), (&self.ns_b, &b)] {
            ip(&["-n", ns, "link", "set", dev, "mtu", "1600", "up"]);
        }
        (a, b)
    }

    /// The ifindex of `dev` in namespace B.
    pub fn ifindex_in_b(&self, dev: &str) -> u32 {
        let out = in_ns(&self.ns_b, &format!("cat /sys/class/net/{dev}/ifindex"));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("an ifindex")
    }

    /// Sends each frame out of A's end `dev` from CPU `cpu` (the veth delivers it on the RX
    /// queue of that number), in order.
    pub fn send_pinned(&self, dev: &str, frames: &[(Vec<u8>, usize)]) {
        let ns = format!("/run/netns/{}", self.ns_a);
        let dev = dev.to_string();
        let frames = frames.to_vec();
        std::thread::spawn(move || {
            let data: Vec<Vec<u8>> = frames.iter().map(|f| f.0.clone()).collect();
            let cpus: Vec<usize> = frames.iter().map(|f| f.1).collect();
            send_each_from_ns(&ns, &dev, &data, &cpus)
        })
        .join()
        .expect("sender thread");
    }

    /// Sends `frames` out of A's end, in order, from a thread inside namespace A; with
    /// `cpus`, the sender moves to the next CPU of the list every `per_cpu` frames (the veth
    /// picks the receiving RX queue by the sending CPU). Paced so no queue overflows.
    pub fn send(&self, frames: &[Vec<u8>], cpus: &[usize], per_cpu: usize) {
        let ns = format!("/run/netns/{}", self.ns_a);
        let dev = self.veth_a.clone();
        let frames = frames.to_vec();
        let cpus = cpus.to_vec();
        std::thread::spawn(move || send_from_ns(&ns, &dev, &frames, &cpus, per_cpu))
            .join()
            .expect("sender thread");
    }
}

impl Lab {
    /// The probe binary under test, to run in namespace B (add its arguments).
    pub fn probe_in_b(&self) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns_b])
            .arg(crate::probe_bin());
        cmd
    }

    /// Runs a copy of the probe binary in namespace B as user and group nobody (65534), with
    /// no capabilities: what an operator without privileges gets. The copy sits in a
    /// directory of `scratch` that nobody can read, wherever the checkout lies.
    pub fn run_probe_in_b_as_nobody(
        &self,
        scratch: &std::path::Path,
        args: &[&str],
    ) -> std::process::Output {
        use std::os::unix::fs::PermissionsExt;
        let bin = scratch.join("probe");
        std::fs::copy(crate::probe_bin(), &bin).expect("copy the probe binary");
        for p in [scratch, bin.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
                .expect("make the copy executable by all");
        }
        Command::new("ip")
            .args(["netns", "exec", &self.ns_b, "setpriv"])
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(args)
            .output()
            .expect("ip netns exec setpriv")
    }

    /// `GET path` from inside namespace B (where the probe runs), returning the whole response.
    pub fn http_get_in_b(&self, addr: &str, path: &str) -> String {
        let ns = format!("/run/netns/{}", self.ns_b);
        let (addr, path) = (addr.to_string(), path.to_string());
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            use std::os::fd::AsRawFd;
            let f = std::fs::File::open(&ns).expect("open netns");
            // SAFETY: setns on this short-lived thread only.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            // The probe answers a connection whose request has not come within 200 ms (this
            // thread descheduled between connect and write, on a loaded machine) and closes
            // it; such a try fails here and is made again, as a scraper's next scrape would.
            let get = || -> std::io::Result<String> {
                let mut c = std::net::TcpStream::connect(&addr)?;
                write!(c, "GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n")?;
                let mut out = String::new();
                c.read_to_string(&mut out)?;
                Ok(out)
            };
            let mut tries = 0;
            loop {
                match get() {
                    Ok(out) if !out.is_empty() => return out,
                    Ok(_) | Err(_) if tries < 5 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    r => return r.expect("a response from the probe"),
                }
            }
        })
        .join()
        .expect("http thread")
    }
}

impl Lab {
    /// Sends `frames` from CPU `cpu` as [`Lab::send`] does, each with its last 8 bytes
    /// overwritten by CLOCK_REALTIME in ns (little-endian) just before it is sent: the
    /// truth a capture's timestamps are measured against.
    pub fn send_stamped(&self, frames: &[Vec<u8>], cpu: usize) {
        let ns = format!("/run/netns/{}", self.ns_a);
        let dev = self.veth_a.clone();
        let frames = frames.to_vec();
        std::thread::spawn(move || {
            let cpus = vec![cpu; frames.len()];
            send_frames(&ns, &dev, &frames, &cpus, true)
        })
        .join()
        .expect("sender thread");
    }
}

fn send_from_ns(ns: &str, dev: &str, frames: &[Vec<u8>], cpus: &[usize], per_cpu: usize) {
    let each: Vec<usize> = if cpus.is_empty() {
        vec![]
    } else {
        (0..frames.len())
            .map(|i| cpus[(i / per_cpu.max(1)) % cpus.len()])
            .collect()
    };
    send_each_from_ns(ns, dev, frames, &each)
}

/// Sends frame i from CPU `cpus[i]` (no pinning when `cpus` is empty). The socket bypasses the
/// qdisc (PACKET_QDISC_BYPASS, as trafgen does), so the kernel puts each frame on the TX queue
/// of the CPU it runs on, and the veth delivers it on its peer's RX queue of that number.
fn send_each_from_ns(ns: &str, dev: &str, frames: &[Vec<u8>], cpus: &[usize]) {
    send_frames(ns, dev, frames, cpus, false)
}

fn send_frames(ns: &str, dev: &str, frames: &[Vec<u8>], cpus: &[usize], stamp: bool) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(ns).expect("open netns");
    // SAFETY: setns on this thread only; the fd is valid.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    let name = std::ffi::CString::new(dev).unwrap();
    // SAFETY: valid C string; the lookup happens in this thread's namespace.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(ifindex > 0, "no {dev} in the sender's namespace");
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a zeroed sockaddr_ll is valid; we set the fields bind needs.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: bind with a valid sockaddr_ll.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a valid int option on our socket.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    assert_eq!(
        rc,
        0,
        "PACKET_QDISC_BYPASS: {}",
        std::io::Error::last_os_error()
    );
    let mut on_cpu = usize::MAX;
    for (i, frame) in frames.iter().enumerate() {
        if let Some(&cpu) = cpus.get(i) {
            if cpu != on_cpu {
                pin(cpu);
                on_cpu = cpu;
            }
        }
        let mut stamped;
        let frame = if stamp && frame.len() >= 8 {
            stamped = frame.clone();
            let at = stamped.len() - 8;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_nanos() as u64;
            stamped[at..].copy_from_slice(&now.to_le_bytes());
            &stamped
        } else {
            frame
        };
        loop {
            // SAFETY: sending a valid buffer on our socket.
            let n = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), 0) };
            if n == frame.len() as isize {
                break;
            }
            let e = std::io::Error::last_os_error();
            assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS), "send: {e}");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if i % 64 == 63 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    // SAFETY: closing our own socket.
    unsafe { libc::close(fd) };
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one CPU set; affinity of this thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth end inside it, and with it the pair.
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}
