//! One AF_XDP socket: its UMEM, its fill and RX rings, and the receive loop's primitives.
//!
//! Written on the kernel ABI (`linux/if_xdp.h`, through `libc`) instead of xsk-rs: xsk-rs 0.11
//! builds libxdp from source and pins libbpf-sys to 1.5.1, which conflicts with the libbpf-rs
//! that loads our program, and it hands out RX frames with no view of the XDP metadata in
//! front of them, where our program writes each frame's timestamp. The part of the ABI a
//! receive-only socket needs is small: four setsockopts, three mmaps and two ring disciplines.
//!
//! Rings are single-producer single-consumer queues shared with the kernel: the producer writes
//! entries then publishes its index with release ordering; the consumer reads the index with
//! acquire ordering, reads the entries, then publishes its own index. Indexes are free-running
//! u32 and wrap; `index & mask` is the slot.

pub use crate::pipeline::books::XskStats;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// How to ask for zero-copy mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroCopy {
    Auto,
    On,
    Off,
}

impl ZeroCopy {
    pub const CHOICES: [(&'static str, ZeroCopy, &'static str); 3] = [
        (
            "auto",
            ZeroCopy::Auto,
            "Zero-copy when the driver offers it, copy mode otherwise.",
        ),
        ("on", ZeroCopy::On, "Zero-copy or fail."),
        ("off", ZeroCopy::Off, "Always copy mode."),
    ];
}

/// Sizes and modes of one socket.
#[derive(Clone, Debug)]
pub struct XskConfig {
    /// Bytes per UMEM frame: 2048 or 4096 (a frame holds one packet after 256 bytes of headroom).
    pub frame_size: u32,
    /// Frames in the UMEM; all of them start in the fill ring.
    pub frames: u32,
    /// RX ring entries (power of two).
    pub rx_size: u32,
    pub zero_copy: ZeroCopy,
    /// Busy-poll budget: `Some(n)` turns on SO_PREFER_BUSY_POLL and drives the driver from the
    /// RX thread with non-blocking recvfrom, n packets per call.
    pub busy_poll: Option<u32>,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            frame_size: 2048,
            frames: 32768,
            rx_size: 16384,
            zero_copy: ZeroCopy::Auto,
            busy_poll: None,
        }
    }
}

/// One received frame: where it lies in the UMEM.
#[derive(Clone, Copy, Debug, Default)]
pub struct RxDesc {
    pub addr: u64,
    pub len: u32,
}

struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mmap {
    fn new(fd: Option<RawFd>, len: usize, offset: u64) -> io::Result<Mmap> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd),
            None => (
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
            ),
        };
        // SAFETY: a fresh mapping; the kernel checks fd, length and offset.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap {
            ptr: NonNull::new(p.cast()).expect("mmap never returns null on success"),
            len,
        })
    }
}

impl Mmap {
    /// Anonymous memory for a UMEM, backed by transparent huge pages where the kernel allows:
    /// each frame is a page of its own otherwise, and a TLB miss per frame costs as much as
    /// the rest of the worker's per-frame work together. The region is 2 MiB aligned (huge
    /// pages need it) and populated before the kernel pins it.
    fn umem(len: usize) -> io::Result<Mmap> {
        const HUGE: usize = 2 << 20;
        let padded = len + HUGE;
        // SAFETY: a fresh private anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                padded,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = p as usize;
        let aligned = (start + HUGE - 1) & !(HUGE - 1);
        // SAFETY: trimming the unaligned head and the tail beyond `len` of our own mapping;
        // the advice only changes how the kernel backs the pages; touching them populates.
        unsafe {
            if aligned > start {
                libc::munmap(p, aligned - start);
            }
            let tail = start + padded - (aligned + len);
            if tail > 0 {
                libc::munmap((aligned + len) as *mut libc::c_void, tail);
            }
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            let base = aligned as *mut u8;
            for off in (0..len).step_by(4096) {
                base.add(off).write_volatile(0);
            }
        }
        Ok(Mmap {
            ptr: NonNull::new(aligned as *mut u8).expect("mmap never returns null"),
            len,
        })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: we own this mapping and nothing points into it once the socket is dropped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A ring mapped from the socket: indexes shared with the kernel, and the entries.
struct Ring {
    _map: Mmap,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    entries: *mut u8,
    mask: u32,
    size: u32,
}

impl Ring {
    fn map(
        fd: RawFd,
        off: &libc::xdp_ring_offset,
        size: u32,
        entry: usize,
        pgoff: u64,
    ) -> io::Result<Ring> {
        let len = off.desc as usize + size as usize * entry;
        let map = Mmap::new(Some(fd), len, pgoff)?;
        let base = map.ptr.as_ptr();
        // SAFETY: the kernel's offsets lie inside the mapping it sized for us.
        unsafe {
            Ok(Ring {
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                flags: base.add(off.flags as usize).cast(),
                entries: base.add(off.desc as usize),
                mask: size - 1,
                size,
                _map: map,
            })
        }
    }

    #[inline]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into our live mapping; the kernel writes it only atomically.
        unsafe { &*self.producer }
    }

    #[inline]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.consumer }
    }

    #[inline]
    fn flags(&self) -> u32 {
        // SAFETY: as for `producer`.
        unsafe { (*self.flags).load(Ordering::Relaxed) }
    }
}

/// An AF_XDP socket bound to one RX queue, with its own UMEM.
pub struct XskSocket {
    fill: Ring,
    rx: Ring,
    _comp: Ring,
    umem: Mmap,
    fd: OwnedFd,
    frame_size: u32,
    zero_copy: bool,
    busy_poll: bool,
}

// SAFETY: the socket is used by one worker thread at a time; the raw pointers point into
// mappings the socket owns.
unsafe impl Send for XskSocket {}

fn setsockopt<T>(fd: RawFd, level: i32, name: i32, val: &T, len: usize) -> io::Result<()> {
    // SAFETY: `val` is valid for `len` bytes (len <= size_of::<T>()).
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            len as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn getsockopt<T: Default>(fd: RawFd, level: i32, name: i32) -> io::Result<T> {
    let mut v = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` is valid for writes of `len` bytes.
    let r = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut T).cast(), &mut len) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v)
    }
}

/// Why a socket could not be opened; the caller words the advice.
#[derive(Debug)]
pub struct OpenError {
    pub step: &'static str,
    pub source: io::Error,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.source)?;
        match self.source.raw_os_error() {
            Some(libc::EAFNOSUPPORT) => write!(f, " (this kernel has no AF_XDP: CONFIG_XDP_SOCKETS)"),
            Some(libc::EPERM) | Some(libc::EACCES) => {
                write!(f, " (run as root, or with CAP_NET_RAW and CAP_NET_ADMIN)")
            }
            Some(libc::ENOMEM) | Some(libc::ENOBUFS) => write!(
                f,
                " (not enough lockable memory for the UMEM: raise `ulimit -l`, or use fewer --umem-frames)"
            ),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for OpenError {}

fn step(step: &'static str) -> impl FnOnce(io::Error) -> OpenError {
    move |source| OpenError { step, source }
}

impl XskSocket {
    /// Opens a socket on `ifindex`/`queue`. With [`ZeroCopy::Auto`] a refused zero-copy bind is
    /// retried in copy mode on a fresh socket.
    pub fn open(ifindex: u32, queue: u32, cfg: &XskConfig) -> Result<XskSocket, OpenError> {
        match cfg.zero_copy {
            ZeroCopy::On => Self::open_mode(ifindex, queue, cfg, true),
            ZeroCopy::Off => Self::open_mode(ifindex, queue, cfg, false),
            ZeroCopy::Auto => Self::open_mode(ifindex, queue, cfg, true)
                .or_else(|_| Self::open_mode(ifindex, queue, cfg, false)),
        }
    }

    fn open_mode(
        ifindex: u32,
        queue: u32,
        cfg: &XskConfig,
        zero_copy: bool,
    ) -> Result<XskSocket, OpenError> {
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(step("cannot create an AF_XDP socket")(
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: we just created it and own it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem_len = cfg.frames as usize * cfg.frame_size as usize;
        let umem = Mmap::umem(umem_len).map_err(step("cannot allocate the UMEM"))?;
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr.as_ptr() as u64,
            len: umem_len as u64,
            chunk_size: cfg.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        // The v1 layout (24 bytes) is accepted by every kernel with AF_XDP.
        setsockopt(raw, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg, 24)
            .map_err(step("cannot register the UMEM"))?;
        let fill_size = cfg.frames.next_power_of_two();
        let comp_size = 64u32;
        setsockopt(raw, libc::SOL_XDP, libc::XDP_UMEM_FILL_RING, &fill_size, 4)
            .map_err(step("cannot size the fill ring"))?;
        setsockopt(
            raw,
            libc::SOL_XDP,
            libc::XDP_UMEM_COMPLETION_RING,
            &comp_size,
            4,
        )
        .map_err(step("cannot size the completion ring"))?;
        setsockopt(raw, libc::SOL_XDP, libc::XDP_RX_RING, &cfg.rx_size, 4)
            .map_err(step("cannot size the RX ring"))?;
        let off: XdpMmapOffsets = getsockopt(raw, libc::SOL_XDP, libc::XDP_MMAP_OFFSETS)
            .map_err(step("cannot read the ring offsets"))?;
        let off = off.0;
        let desc_len = std::mem::size_of::<libc::xdp_desc>();
        let rx = Ring::map(
            raw,
            &off.rx,
            cfg.rx_size,
            desc_len,
            libc::XDP_PGOFF_RX_RING as u64,
        )
        .map_err(step("cannot map the RX ring"))?;
        let fill = Ring::map(raw, &off.fr, fill_size, 8, libc::XDP_UMEM_PGOFF_FILL_RING)
            .map_err(step("cannot map the fill ring"))?;
        let comp = Ring::map(
            raw,
            &off.cr,
            comp_size,
            8,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
        )
        .map_err(step("cannot map the completion ring"))?;
        if let Some(budget) = cfg.busy_poll {
            let one: i32 = 1;
            let usecs: i32 = 20;
            let budget = budget as i32;
            const SO_PREFER_BUSY_POLL: i32 = 69;
            const SO_BUSY_POLL_BUDGET: i32 = 70;
            setsockopt(raw, libc::SOL_SOCKET, SO_PREFER_BUSY_POLL, &one, 4)
                .and_then(|_| setsockopt(raw, libc::SOL_SOCKET, libc::SO_BUSY_POLL, &usecs, 4))
                .and_then(|_| setsockopt(raw, libc::SOL_SOCKET, SO_BUSY_POLL_BUDGET, &budget, 4))
                .map_err(step("cannot turn on busy polling"))?;
        }
        let mut sock = XskSocket {
            fill,
            rx,
            _comp: comp,
            umem,
            fd,
            frame_size: cfg.frame_size,
            zero_copy,
            busy_poll: cfg.busy_poll.is_some(),
        };
        // Every frame starts in the fill ring, so the kernel has somewhere to put the first burst.
        let frames = cfg.frames.min(fill_size);
        let mut addrs = (0..frames).map(|i| i as u64 * cfg.frame_size as u64);
        sock.refill(&mut addrs);
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_USE_NEED_WAKEUP
                | if zero_copy {
                    libc::XDP_ZEROCOPY
                } else {
                    libc::XDP_COPY
                },
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sa` is a valid sockaddr_xdp of the size we pass.
        let r = unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(OpenError {
                step: if zero_copy {
                    "cannot bind in zero-copy mode"
                } else {
                    "cannot bind in copy mode"
                },
                source: e,
            });
        }
        Ok(sock)
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// RX ring entries.
    pub fn rx_size(&self) -> u32 {
        self.rx.size
    }

    /// Moves received descriptors into `out` (at most `out.len()`); returns how many. The
    /// frames stay ours until given back with [`XskSocket::refill`].
    #[inline]
    pub fn receive(&mut self, out: &mut [RxDesc]) -> usize {
        let cons = self.rx.consumer().load(Ordering::Relaxed);
        let prod = self.rx.producer().load(Ordering::Acquire);
        let n = (prod.wrapping_sub(cons) as usize).min(out.len());
        for (i, d) in out.iter_mut().take(n).enumerate() {
            let slot = (cons.wrapping_add(i as u32) & self.rx.mask) as usize;
            // SAFETY: slot < ring size; entries are xdp_desc, written before `prod` was published.
            let desc = unsafe {
                (self.rx.entries as *const libc::xdp_desc)
                    .add(slot)
                    .read_volatile()
            };
            *d = RxDesc {
                addr: desc.addr,
                len: desc.len,
            };
        }
        self.rx
            .consumer()
            .store(cons.wrapping_add(n as u32), Ordering::Release);
        n
    }

    /// The frame bytes of `d` and the metadata area in front of them (when the frame starts at
    /// least `M` bytes into its chunk).
    #[inline]
    pub fn frame<const M: usize>(&mut self, d: &RxDesc) -> (Option<&mut [u8; M]>, &[u8]) {
        let addr = d.addr as usize;
        let chunk_off = addr % self.frame_size as usize;
        let len = (d.len as usize).min(self.frame_size as usize - chunk_off);
        let base = self.umem.ptr.as_ptr();
        // SAFETY: the kernel hands out addresses inside the UMEM and lengths inside the chunk
        // (clamped above); meta and data do not overlap.
        unsafe {
            let data = std::slice::from_raw_parts(base.add(addr), len);
            let meta = (chunk_off >= M).then(|| &mut *(base.add(addr - M) as *mut [u8; M]));
            (meta, data)
        }
    }

    /// Starts loading the cache lines of `d`'s metadata and first bytes: the kernel wrote them
    /// on another core, so each is a cross-core miss; overlapping the misses of a batch is
    /// most of the per-frame cost saved.
    #[inline]
    pub fn prefetch(&self, d: &RxDesc) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let addr = (d.addr as usize).min(self.umem.len - 1);
            let base = self.umem.ptr.as_ptr();
            // SAFETY: prefetching is a hint and never faults; both addresses lie in the UMEM.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(base.add(addr.saturating_sub(16)) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(base.add(addr) as *const i8);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = d;
    }

    /// Gives frames back to the kernel through the fill ring; returns how many went in.
    #[inline]
    pub fn refill(&mut self, addrs: &mut impl Iterator<Item = u64>) -> u32 {
        let prod = self.fill.producer().load(Ordering::Relaxed);
        let cons = self.fill.consumer().load(Ordering::Acquire);
        let free = self.fill.size - prod.wrapping_sub(cons);
        let mut n = 0u32;
        while n < free {
            let Some(a) = addrs.next() else { break };
            let slot = (prod.wrapping_add(n) & self.fill.mask) as usize;
            // Aligned mode: the kernel wants the chunk's start.
            let chunk = a - a % self.frame_size as u64;
            // SAFETY: slot < ring size; fill entries are u64 addresses.
            unsafe {
                (self.fill.entries as *mut u64)
                    .add(slot)
                    .write_volatile(chunk)
            };
            n += 1;
        }
        self.fill
            .producer()
            .store(prod.wrapping_add(n), Ordering::Release);
        n
    }

    /// Does the kernel want a syscall to go on filling the RX ring?
    #[inline]
    pub fn needs_wakeup(&self) -> bool {
        self.fill.flags() & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Whether the socket was opened for busy polling.
    pub fn busy_polling(&self) -> bool {
        self.busy_poll
    }

    /// A non-blocking, zero-length recvfrom: how a socket tells the kernel to look at its
    /// rings again (need_wakeup) or drives the driver itself (busy polling).
    fn recv_nothing(&self) -> isize {
        // SAFETY: a zero-length non-blocking recvfrom on our socket reads nothing.
        unsafe {
            libc::recvfrom(
                self.fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        }
    }

    /// Tells the kernel to look at the fill ring again (the need_wakeup protocol).
    pub fn kick(&self) {
        self.recv_nothing();
    }

    /// Waits up to `timeout_ms` for frames (or, with busy polling, drives the driver once).
    pub fn wait(&self, timeout_ms: i32) -> io::Result<()> {
        if self.busy_poll {
            let r = self.recv_nothing();
            if r < 0 {
                let e = io::Error::last_os_error();
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENETDOWN)
                ) {
                    return Err(e);
                }
            }
            return Ok(());
        }
        let mut pfd = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The kernel's statistics for this socket.
    pub fn stats(&self) -> io::Result<XskStats> {
        stats_of(self.fd())
    }
}

/// The kernel's statistics for the AF_XDP socket `fd` (readable from any thread).
pub fn stats_of(fd: RawFd) -> io::Result<XskStats> {
    {
        let s: XdpStatistics = getsockopt(fd, libc::SOL_XDP, libc::XDP_STATISTICS)?;
        let s = s.0;
        Ok(XskStats {
            rx_dropped: s.rx_dropped,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            rx_invalid_descs: s.rx_invalid_descs,
        })
    }
}

/// `libc::xdp_mmap_offsets` with a zeroed `Default`.
struct XdpMmapOffsets(libc::xdp_mmap_offsets);

impl Default for XdpMmapOffsets {
    fn default() -> Self {
        // SAFETY: plain integers; all-zero is valid.
        XdpMmapOffsets(unsafe { std::mem::zeroed() })
    }
}

/// `libc::xdp_statistics` with a zeroed `Default`.
struct XdpStatistics(libc::xdp_statistics);

impl Default for XdpStatistics {
    fn default() -> Self {
        // SAFETY: plain integers; all-zero is valid.
        XdpStatistics(unsafe { std::mem::zeroed() })
    }
}
