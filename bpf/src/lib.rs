//! The XDP program that steers frames into AF_XDP sockets, and its loader.
//!
//! `src/bpf/steer.bpf.c` is compiled by `build.rs` (clang) into a libbpf skeleton. This crate
//! wraps it in a small safe API: load with a configuration ([`SteerConfig`]), attach to one
//! interface through a bpf_link ([`Steering::attach`]), register one AF_XDP socket per RX
//! queue, and read the per-queue counters summed over CPUs.
//!
//! Attaching through a bpf_link (not the older netlink attach) ties the program's life to a
//! file descriptor of this process: when the probe dies, even by SIGKILL, the kernel closes the
//! descriptor and the program leaves the interface. A second attach to an interface that already
//! has an XDP program fails with EBUSY instead of silently replacing it.

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use std::ffi::CString;
use std::fmt;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

mod skel {
    #![allow(unused_imports, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/steer.skel.rs"));
}

/// RX queues the program can steer (the XSKMAP size); higher queues are counted together.
pub const MAX_QUEUES: u32 = 64;
/// Bytes the program writes in front of each redirected frame (see [`FrameMeta`]).
pub const META_LEN: usize = 16;

/// How a frame carries the kernel's arrival time to userspace; the loader takes the first of
/// these that this kernel accepts ([`Steering::load`]), unless one is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stamp {
    /// `bpf_xdp_adjust_meta`: the metadata area just before the frame (kernels and drivers
    /// with XDP metadata; some recent kernels refuse the helper to XDP programs).
    Metadata,
    /// `bpf_xdp_adjust_head`: a [`META_LEN`]-byte prefix pushed in front of the Ethernet
    /// header, which the RX thread strips before anything reads the frame. Same precision as
    /// [`Stamp::Metadata`]; the frame costs 16 bytes more in the UMEM copy.
    Prefix,
    /// No kernel time: the RX thread stamps frames when it reads their batch (the error is a
    /// batch's wait in the ring, and frames of two queues can be stamped out of order).
    UserSpace,
}

impl Stamp {
    /// The order the loader tries them in.
    pub const PREFERENCE: [Stamp; 3] = [Stamp::Metadata, Stamp::Prefix, Stamp::UserSpace];

    fn code(self) -> u8 {
        match self {
            Stamp::UserSpace => 0,
            Stamp::Metadata => 1,
            Stamp::Prefix => 2,
        }
    }

    /// The name used on the command line, in the books and in the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Stamp::Metadata => "xdp-metadata",
            Stamp::Prefix => "xdp-prefix",
            Stamp::UserSpace => "userspace",
        }
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stamp::Metadata => "kernel time in the XDP metadata area",
            Stamp::Prefix => "kernel time in a prefix in front of the frame",
            Stamp::UserSpace => "user space at batch read",
        })
    }
}

/// How the loaded program behaves: set at load, and changed in place by [`Steering::update`]
/// (a reload) without detaching the program or the sockets.
#[derive(Clone, Debug, Default)]
pub struct SteerConfig {
    /// Keep 1 in N frames (0 or 1: keep all).
    pub sample_every: u32,
    /// Random 1-in-N instead of every Nth frame.
    pub sample_random: bool,
    /// 1 in N address pairs of the innermost packet instead of frames, chosen by a hash under
    /// `sample_key` (see `probe_core::sample`, which decides what the program passes up).
    pub sample_by_pair: bool,
    pub sample_key: u32,
    /// Frames from or to these prefixes go to the kernel stack unmetered.
    pub ignore: Vec<(IpAddr, u8)>,
    /// The tunnels inside which the ignore-list also looks, one layer deep: bit `k` for the
    /// probe's tunnel kind code `k` (GRE 1, ERSPAN I-III 2-4, VXLAN 5, Geneve 6, GTP-U 7,
    /// NVGRE 9), and the UDP ports of VXLAN and Geneve (0: unused slot).
    pub decap_kinds: u32,
    pub vxlan_ports: [u16; 4],
    pub geneve_ports: [u16; 4],
}

/// Where the program runs on the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver, before any socket buffer exists.
    Native,
    /// In the kernel's generic hook, after the socket buffer is built: works on every device,
    /// costs more per frame.
    Generic,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

/// Why steering could not be set up. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    #[error("no network interface named '{0}' (list them with `ip link show`)")]
    NoSuchInterface(String),
    #[error(
        "not allowed to load an XDP program: run as root, or with CAP_BPF, CAP_NET_ADMIN and \
         CAP_NET_RAW (and CAP_SYS_ADMIN on kernels before 5.8)"
    )]
    Permission,
    #[error(
        "interface '{0}' already has an XDP program (another probe?): stop it, or look with \
         `ip link show {0}` and `bpftool net show`"
    )]
    Busy(String),
    #[error("the driver of '{0}' cannot run XDP in native mode: use --xdp-mode generic (or auto)")]
    NativeUnsupported(String),
    #[error("cannot attach XDP to '{iface}' in {mode} mode: {reason}{hint}")]
    Attach {
        iface: String,
        mode: XdpMode,
        reason: std::io::Error,
        hint: &'static str,
    },
    #[error("cannot load the XDP program: {0}")]
    Load(String),
    #[error("ignore-list entry {addr}/{len}: {reason}")]
    BadPrefix {
        addr: IpAddr,
        len: u8,
        reason: &'static str,
    },
    #[error("RX queue {0} is beyond the {MAX_QUEUES} queues the XDP program can steer")]
    QueueTooHigh(u32),
    #[error("cannot register the AF_XDP socket of queue {queue}: {reason}")]
    Register { queue: u32, reason: String },
    #[error("cannot read the XDP counters: {0}")]
    Counters(String),
}

/// The program's counters for one RX queue, summed over CPUs.
///
/// `seen = redirected + redirect_errors + no_socket + sampled_out + ignored`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounters {
    pub seen: u64,
    pub redirected: u64,
    pub redirect_errors: u64,
    pub no_socket: u64,
    pub sampled_out: u64,
    pub ignored: u64,
    /// Frames redirected without a kernel timestamp (driver without metadata support).
    pub meta_failed: u64,
    /// Frames the ignore-list could not look all the way into (a tunnel inside a tunnel, GTP-U
    /// extension headers): left to user space, not a separate outcome (they are in `seen`
    /// and in whatever happened to them next).
    pub inner_unparsed: u64,
    /// Frames pair sampling could not decide (their innermost packet out of reach): passed up
    /// for user space to decide, like `inner_unparsed` not an outcome of their own.
    pub sample_deferred: u64,
}

impl QueueCounters {
    pub fn balanced(&self) -> bool {
        self.seen
            == self.redirected
                + self.redirect_errors
                + self.no_socket
                + self.sampled_out
                + self.ignored
    }

    fn add(&mut self, o: &QueueCounters) {
        self.seen += o.seen;
        self.redirected += o.redirected;
        self.redirect_errors += o.redirect_errors;
        self.no_socket += o.no_socket;
        self.sampled_out += o.sampled_out;
        self.ignored += o.ignored;
        self.meta_failed += o.meta_failed;
        self.inner_unparsed += o.inner_unparsed;
        self.sample_deferred += o.sample_deferred;
    }

    /// Decodes one CPU's `struct queue_counters` (ten native-endian u64s; the eighth is
    /// sampling state).
    fn from_bytes(b: &[u8]) -> Option<QueueCounters> {
        let f = |i: usize| -> Option<u64> {
            Some(u64::from_ne_bytes(
                b.get(i * 8..i * 8 + 8)?.try_into().ok()?,
            ))
        };
        Some(QueueCounters {
            seen: f(0)?,
            redirected: f(1)?,
            redirect_errors: f(2)?,
            no_socket: f(3)?,
            sampled_out: f(4)?,
            ignored: f(5)?,
            meta_failed: f(6)?,
            inner_unparsed: f(8)?,
            sample_deferred: f(9)?,
        })
    }
}

/// The metadata the program writes just before a redirected frame's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameMeta {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC when the frame reached XDP.
    pub ktime_ns: u64,
    pub queue: u32,
}

impl FrameMeta {
    /// Reads the stamp from [`META_LEN`] bytes; `None` when the program did not write it,
    /// known by `cookie` ([`Steering::cookie`], random per load, so a frame's own bytes are
    /// not taken for a stamp). In the metadata area the caller clears the cookie after each
    /// read, so stale bytes from an earlier frame in the same UMEM chunk never pass.
    #[inline]
    pub fn parse(b: &[u8; META_LEN], cookie: u32) -> Option<FrameMeta> {
        let magic = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
        (magic == cookie).then(|| FrameMeta {
            ktime_ns: u64::from_ne_bytes(b[0..8].try_into().expect("8 bytes")),
            queue: u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
        })
    }

    /// Clears the magic so the bytes are not taken for a later frame's metadata.
    #[inline]
    pub fn clear(b: &mut [u8; META_LEN]) {
        b[8..12].fill(0);
    }
}

/// The loaded program; attached to one interface by [`Steering::attach`].
pub struct Steering {
    skel: skel::SteerSkel<'static>,
    link: Option<OwnedFd>,
    cpus: usize,
    stamp: Stamp,
    cookie: u32,
    /// Why better stamps than `stamp` were not used (one line per refusal).
    stamp_fallbacks: Vec<(Stamp, String)>,
}

impl Steering {
    /// Loads the program into the kernel with `cfg`; nothing is attached yet. With `stamp`
    /// `None`, tries each [`Stamp`] in [`Stamp::PREFERENCE`] and keeps the first this kernel
    /// loads (why the better ones failed: [`Steering::stamp_fallbacks`]); with a stamp named,
    /// only that one, and its refusal is the error.
    pub fn load(cfg: &SteerConfig, stamp: Option<Stamp>) -> Result<Steering, SteerError> {
        let wanted: &[Stamp] = match &stamp {
            Some(s) => std::slice::from_ref(s),
            None => &Stamp::PREFERENCE,
        };
        let mut fallbacks = Vec::new();
        for &s in wanted {
            match Steering::load_one(cfg, s) {
                Ok(mut st) => {
                    st.stamp_fallbacks = fallbacks;
                    return Ok(st);
                }
                Err(SteerError::Permission) => return Err(SteerError::Permission),
                Err(e) if stamp.is_some() => return Err(e),
                Err(e) => fallbacks.push((s, refusal(&e))),
            }
        }
        Err(SteerError::Load(format!(
            "no way of stamping frames loads on this kernel: {}",
            fallbacks
                .iter()
                .map(|(s, why)| format!("{}: {why}", s.name()))
                .collect::<Vec<_>>()
                .join("; ")
        )))
    }

    /// How frames carry their arrival time with this program.
    pub fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// The value that marks a stamp as the program's (see [`FrameMeta::parse`]).
    pub fn cookie(&self) -> u32 {
        self.cookie
    }

    /// The better stamps this kernel refused, each with the reason (empty: the best loaded).
    pub fn stamp_fallbacks(&self) -> &[(Stamp, String)] {
        &self.stamp_fallbacks
    }

    /// Why the stamp in use is not the best one, in one line for people (`None`: it is).
    pub fn stamp_fallback_reason(&self) -> Option<String> {
        (!self.stamp_fallbacks.is_empty()).then(|| {
            self.stamp_fallbacks
                .iter()
                .map(|(s, why)| format!("this kernel refuses {}: {why}", s.name()))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn load_one(cfg: &SteerConfig, stamp: Stamp) -> Result<Steering, SteerError> {
        // libbpf prints its own diagnostics on stderr; keep them (the verifier's log among
        // them) and add them to a load error instead, so an operator sees one line unless
        // there is something a developer must read.
        libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Warn, keep_libbpf_message)));
        LIBBPF_LOG.lock().map(|mut l| l.clear()).ok();
        // The skeleton borrows its object for its whole life; the probe loads one program per
        // run, so the object lives as long as the process.
        let object: &'static mut MaybeUninit<libbpf_rs::OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = skel::SteerSkelBuilder::default()
            .open(object)
            .map_err(load_error)?;
        let ro = open
            .maps
            .rodata_data
            .as_deref_mut()
            .ok_or_else(|| SteerError::Load("the program has no .rodata section".into()))?;
        let cookie = random_cookie();
        ro.stamp_mode = stamp.code();
        ro.stamp_cookie = cookie;
        let skel = open.load().map_err(load_error)?;
        let cpus = libbpf_rs::num_possible_cpus()
            .map_err(|e| SteerError::Load(format!("cannot count CPUs: {e}")))?;
        let mut s = Steering {
            skel,
            link: None,
            cpus,
            stamp,
            cookie,
            stamp_fallbacks: Vec::new(),
        };
        s.update(cfg)?;
        Ok(s)
    }

    /// Applies `cfg` to the running program, in place: the sampling and the ignore-list change
    /// between one frame and the next, the program and the sockets stay. New prefixes go in
    /// before stale ones leave, so no prefix in both lists is ever briefly not ignored.
    pub fn update(&mut self, cfg: &SteerConfig) -> Result<(), SteerError> {
        let keys = |want_v4: bool| -> Vec<Vec<u8>> {
            cfg.ignore
                .iter()
                .filter(|(a, _)| a.is_ipv4() == want_v4)
                .map(|&(addr, len)| {
                    let mut k = (len as u32).to_ne_bytes().to_vec();
                    match addr {
                        IpAddr::V4(a) => k.extend_from_slice(&a.octets()),
                        IpAddr::V6(a) => k.extend_from_slice(&a.octets()),
                    }
                    k
                })
                .collect()
        };
        let skel = &self.skel;
        for &(addr, len) in &cfg.ignore {
            let (map, key) = match addr {
                IpAddr::V4(a) if len <= 32 => {
                    let mut k = (len as u32).to_ne_bytes().to_vec();
                    k.extend_from_slice(&a.octets());
                    (&skel.maps.ignore_v4, k)
                }
                IpAddr::V6(a) if len <= 128 => {
                    let mut k = (len as u32).to_ne_bytes().to_vec();
                    k.extend_from_slice(&a.octets());
                    (&skel.maps.ignore_v6, k)
                }
                _ => {
                    return Err(SteerError::BadPrefix {
                        addr,
                        len,
                        reason: "prefix length too long for the address family",
                    })
                }
            };
            map.update(&key, &[1], MapFlags::ANY)
                .map_err(|e| SteerError::BadPrefix {
                    addr,
                    len,
                    reason: if e.kind() == libbpf_rs::ErrorKind::OutOfMemory {
                        "the ignore-list holds at most 1024 prefixes per address family"
                    } else {
                        "the kernel refused it"
                    },
                })?;
        }
        for (map, want) in [
            (&skel.maps.ignore_v4, keys(true)),
            (&skel.maps.ignore_v6, keys(false)),
        ] {
            let stale: Vec<Vec<u8>> = map.keys().filter(|k| !want.contains(k)).collect();
            for k in stale {
                let _ = map.delete(&k);
            }
        }
        let bss = self
            .skel
            .maps
            .bss_data
            .as_deref_mut()
            .ok_or_else(|| SteerError::Load("the program has no .bss section".into()))?;
        bss.sample_every = cfg.sample_every;
        bss.sample_random = u8::from(cfg.sample_random);
        bss.sample_by_pair = u8::from(cfg.sample_by_pair);
        bss.sample_key = cfg.sample_key;
        bss.ignore_enabled = u8::from(!cfg.ignore.is_empty());
        bss.decap_kinds = cfg.decap_kinds;
        bss.vxlan_ports = cfg.vxlan_ports;
        bss.geneve_ports = cfg.geneve_ports;
        Ok(())
    }

    /// Attaches to `iface` in `mode`; with `mode == None` tries native first and falls back to
    /// generic when native fails. Returns the mode it got and, after a fallback, why native
    /// failed.
    pub fn attach(
        &mut self,
        iface: &str,
        mode: Option<XdpMode>,
    ) -> Result<(XdpMode, Option<SteerError>), SteerError> {
        let ifindex = ifindex(iface)?;
        let modes: &[XdpMode] = match mode {
            Some(XdpMode::Native) => &[XdpMode::Native],
            Some(XdpMode::Generic) => &[XdpMode::Generic],
            None => &[XdpMode::Native, XdpMode::Generic],
        };
        let mut last = None;
        for &m in modes {
            match self.link_create(ifindex, m) {
                Ok(fd) => {
                    self.link = Some(fd);
                    return Ok((m, last));
                }
                Err(e) => {
                    let errno = e.raw_os_error().unwrap_or(0);
                    let err = match errno {
                        libc::EBUSY | libc::EEXIST => return Err(SteerError::Busy(iface.into())),
                        libc::EPERM | libc::EACCES => return Err(SteerError::Permission),
                        libc::EOPNOTSUPP if m == XdpMode::Native => {
                            SteerError::NativeUnsupported(iface.into())
                        }
                        _ => SteerError::Attach {
                            iface: iface.into(),
                            mode: m,
                            reason: e,
                            hint: match (errno, m) {
                                (libc::ERANGE, XdpMode::Native) => {
                                    " (the MTU is too large for native XDP on this driver: \
                                     lower it, or use --xdp-mode generic)"
                                }
                                (_, XdpMode::Native) => " (try --xdp-mode generic)",
                                _ => "",
                            },
                        },
                    };
                    last = Some(err);
                }
            }
        }
        Err(last.expect("at least one mode was tried"))
    }

    fn link_create(&self, ifindex: u32, mode: XdpMode) -> std::io::Result<OwnedFd> {
        const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
        const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
        let opts = libbpf_rs::libbpf_sys::bpf_link_create_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_link_create_opts>() as _,
            flags: match mode {
                XdpMode::Native => XDP_FLAGS_DRV_MODE,
                XdpMode::Generic => XDP_FLAGS_SKB_MODE,
            },
            ..Default::default()
        };
        let prog_fd = self.skel.progs.steer.as_fd().as_raw_fd();
        // SAFETY: `opts` is a valid, fully initialised options struct with its size set.
        let fd = unsafe {
            libbpf_rs::libbpf_sys::bpf_link_create(
                prog_fd,
                ifindex as i32,
                libbpf_rs::libbpf_sys::BPF_XDP,
                &opts,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::from_raw_os_error(-fd));
        }
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Steers frames of RX `queue` into the AF_XDP socket `fd`.
    pub fn register_socket(&self, queue: u32, fd: RawFd) -> Result<(), SteerError> {
        if queue >= MAX_QUEUES {
            return Err(SteerError::QueueTooHigh(queue));
        }
        self.skel
            .maps
            .xsks
            .update(
                &queue.to_ne_bytes(),
                &(fd as u32).to_ne_bytes(),
                MapFlags::ANY,
            )
            .map_err(|e| SteerError::Register {
                queue,
                reason: e.to_string(),
            })
    }

    /// Stops steering `queue`: its frames go to the kernel stack again.
    pub fn unregister_socket(&self, queue: u32) {
        let _ = self.skel.maps.xsks.delete(&queue.to_ne_bytes());
    }

    /// The counters of RX `queue` (queues at or above [`MAX_QUEUES`] share one slot).
    pub fn counters(&self, queue: u32) -> Result<QueueCounters, SteerError> {
        let slot = queue.min(MAX_QUEUES);
        let per_cpu = self
            .skel
            .maps
            .counters
            .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| SteerError::Counters(e.to_string()))?
            .unwrap_or_default();
        let mut total = QueueCounters::default();
        for cpu in per_cpu.iter().take(self.cpus) {
            let c = QueueCounters::from_bytes(cpu)
                .ok_or_else(|| SteerError::Counters("short per-CPU value".into()))?;
            total.add(&c);
        }
        Ok(total)
    }

    /// The kernel's run-time statistics of the program: (runs, total ns). Zero unless the
    /// kernel counts them (`sysctl kernel.bpf_stats_enabled=1`, which costs a clock read per
    /// run); the cost per frame is their ratio.
    pub fn run_stats(&self) -> (u64, u64) {
        let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_prog_info>() as u32;
        let fd = self.skel.progs.steer.as_fd().as_raw_fd();
        // SAFETY: `info` is a valid bpf_prog_info of `len` bytes; the kernel fills at most that.
        let rc = unsafe { libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len) };
        if rc != 0 {
            return (0, 0);
        }
        (info.run_cnt, info.run_time_ns)
    }

    /// Detaches the program from the interface now (dropping `Steering` does the same).
    pub fn detach(&mut self) {
        self.link = None;
    }
}

/// An XDP program already attached to an interface (by anyone), as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachedXdp {
    /// The program's id (`bpftool prog show id N`).
    pub prog_id: u32,
    /// Where it runs: native (driver), generic (skb) or offloaded to the NIC.
    pub mode: &'static str,
}

/// The XDP program attached to interface `ifindex`, if any. Changes nothing.
pub fn attached_xdp(ifindex: u32) -> Result<Option<AttachedXdp>, SteerError> {
    let mut opts = libbpf_rs::libbpf_sys::bpf_xdp_query_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: `opts` is a valid, fully initialised options struct with its size set.
    let rc = unsafe { libbpf_rs::libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) };
    if rc < 0 {
        return Err(match -rc {
            libc::EPERM | libc::EACCES => SteerError::Permission,
            e => SteerError::Load(format!(
                "cannot ask the kernel for the interface's XDP program: {}",
                std::io::Error::from_raw_os_error(e)
            )),
        });
    }
    // XDP_ATTACHED_DRV = 1, SKB = 2, HW = 3, MULTI = 4.
    let mode = match opts.attach_mode {
        0 => return Ok(None),
        1 => "native",
        2 => "generic",
        3 => "offloaded",
        _ => "several modes",
    };
    let prog_id = [
        opts.prog_id,
        opts.drv_prog_id,
        opts.skb_prog_id,
        opts.hw_prog_id,
    ]
    .into_iter()
    .find(|&id| id != 0)
    .unwrap_or(0);
    Ok(Some(AttachedXdp { prog_id, mode }))
}

/// The kernel's index for interface `name`.
pub fn ifindex(name: &str) -> Result<u32, SteerError> {
    let c = CString::new(name).map_err(|_| SteerError::NoSuchInterface(name.into()))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(SteerError::NoSuchInterface(name.into()))
    } else {
        Ok(idx)
    }
}

/// A random, non-zero cookie (zeroed memory is never taken for a stamp).
fn random_cookie() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: the buffer is valid for 4 bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 4, 0) };
    let r = if n == 4 {
        u32::from_ne_bytes(b)
    } else {
        // No getrandom: the clock's low bits and the pid are unpredictable enough to tell a
        // stamp from frame bytes that happen to sit there.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        t ^ std::process::id().rotate_left(16)
    };
    r.max(1)
}

/// The line of a load error that says why (the verifier's refusal of a helper, when that is
/// it), for the one line printed at start.
fn refusal(e: &SteerError) -> String {
    let text = e.to_string();
    text.lines()
        .find(|l| l.contains("cannot use helper") || l.contains("unknown func"))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| text.lines().next().unwrap_or_default().to_string())
}

/// The last libbpf diagnostics, for load errors.
static LIBBPF_LOG: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn keep_libbpf_message(_level: libbpf_rs::PrintLevel, msg: String) {
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        if log.len() >= 40 {
            log.remove(0);
        }
        log.push(msg.trim_end().to_string());
    }
}

fn load_error(e: libbpf_rs::Error) -> SteerError {
    if e.kind() == libbpf_rs::ErrorKind::PermissionDenied {
        SteerError::Permission
    } else {
        let log = LIBBPF_LOG.lock().map(|l| l.join("\n")).unwrap_or_default();
        SteerError::Load(if log.is_empty() {
            format!("{e:#}")
        } else {
            format!("{e:#}; libbpf said:\n{log}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip_and_clear() {
        let mut b = [0u8; META_LEN];
        b[0..8].copy_from_slice(&123_456_789u64.to_ne_bytes());
        b[8..12].copy_from_slice(&0xfeed_f00du32.to_ne_bytes());
        b[12..16].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(
            FrameMeta::parse(&b, 0xfeed_f00d),
            Some(FrameMeta {
                ktime_ns: 123_456_789,
                queue: 3
            })
        );
        assert_eq!(
            FrameMeta::parse(&b, 0xfeed_f00e),
            None,
            "another load's cookie"
        );
        FrameMeta::clear(&mut b);
        assert_eq!(FrameMeta::parse(&b, 0xfeed_f00d), None);
    }

    #[test]
    fn counters_decode_and_balance() {
        let mut b = Vec::new();
        for v in [10u64, 6, 1, 1, 1, 1, 0, 99, 4, 2] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        let c = QueueCounters::from_bytes(&b).unwrap();
        assert_eq!(c.seen, 10);
        assert!(c.balanced());
        assert_eq!(c.inner_unparsed, 4);
        assert_eq!(c.sample_deferred, 2);
        assert!(QueueCounters::from_bytes(&b[..72]).is_none());
    }
}
