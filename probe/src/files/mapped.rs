//! Capture files mapped into memory instead of read into a buffer.
//!
//! Why: reading copies every byte of the file from the page cache (a third of `probe read`'s
//! CPU on the benchmark capture), while metering looks at the first hundred bytes or so of each
//! packet. Mapped, only those bytes cross into the core, and the reader prefetches each next
//! record a packet early. Only regular files are mapped; pipes and anything that cannot be
//! mapped are read as before.
//!
//! Two things a mapping would otherwise get wrong, handled here:
//! - **Memory**: pages of the file stay in the process's resident set once touched (1.6 GB
//!   for a 1.6 GB file). The reader drops the pages it has passed every [`RELEASE_EVERY`]
//!   bytes, so the resident set stays near that; the page cache keeps the file as before.
//! - **A file truncated while it is read** (another program rewriting it): touching a page
//!   past the new end raises SIGBUS, which would kill the probe and lose every flow. A SIGBUS
//!   handler recognises addresses inside our mappings, maps a page of zeros there and marks
//!   the mapping; the reader then stops that file with an error naming the cause, and
//!   everything read before it is exported as usual. SIGBUS anywhere else keeps its default
//!   action. (The rest of the file's new last page reads as zeros without a fault: up to a
//!   page of empty records is metered, as malformed, before the reader notices.)

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

/// How far the reader gets past pages before it drops them from the resident set.
pub const RELEASE_EVERY: usize = 16 << 20;

/// Mappings the SIGBUS handler knows about. A file that finds no free slot is read instead.
const SLOTS: usize = 16;

struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    faulted: AtomicBool::new(false),
};
static REGISTRY: [Slot; SLOTS] = [FREE; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(4096);
static HANDLER: Once = Once::new();

/// A read-only private mapping of a whole file, unmapped on drop.
pub struct MappedFile {
    ptr: *const u8,
    len: usize,
    slot: &'static Slot,
    /// Everything before this offset has been dropped from the resident set.
    released: usize,
}

// SAFETY: the mapping is read-only and owned; nothing mutates it through this type.
unsafe impl Send for MappedFile {}

impl MappedFile {
    /// Maps `file` when it is a non-empty regular file; `None` otherwise (read it instead).
    pub fn map(file: &File) -> Option<MappedFile> {
        let meta = file.metadata().ok()?;
        if !meta.file_type().is_file() || meta.len() == 0 {
            return None;
        }
        let len = usize::try_from(meta.len()).ok()?;
        install_handler();
        let slot = REGISTRY.iter().find(|s| {
            s.start
                .compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        // SAFETY: a fresh read-only mapping of an open file; the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            slot.start.store(0, Ordering::Release);
            return None;
        }
        // SAFETY: advice on our own mapping; an error changes nothing.
        unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        slot.faulted.store(false, Ordering::Release);
        slot.len.store(len, Ordering::Release);
        slot.start.store(ptr as usize, Ordering::Release);
        Some(MappedFile {
            ptr: ptr as *const u8,
            len,
            slot,
            released: 0,
        })
    }

    /// Bytes at the start of the file already dropped from the resident set.
    pub fn released(&self) -> usize {
        self.released
    }

    #[inline]
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives (pages released
        // or replaced by zeros still read, as the file's contents or as zeros).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Whether a page past the file's end was touched: the file shrank while mapped, and
    /// some bytes read since may be zeros instead of the file's.
    #[inline]
    pub fn shrank(&self) -> bool {
        self.slot.faulted.load(Ordering::Relaxed)
    }

    /// Brings the two cache lines at `at` towards the core (a hint; any offset is fine).
    #[inline(always)]
    pub fn prefetch(&self, at: usize) {
        let p = self.ptr.wrapping_add(at);
        probe_core::flow::index::prefetch(p);
        probe_core::flow::index::prefetch(p.wrapping_add(64));
        probe_core::flow::index::prefetch(p.wrapping_add(128));
    }

    /// Drops the pages before `offset` from the resident set once [`RELEASE_EVERY`] bytes have
    /// passed. Nothing before `offset` may be borrowed any more.
    #[inline]
    pub fn passed(&mut self, offset: usize) {
        if offset - self.released < RELEASE_EVERY {
            return;
        }
        let page = PAGE.load(Ordering::Relaxed);
        let upto = offset & !(page - 1);
        // SAFETY: the range lies inside our mapping and nothing borrows it any more; for a
        // private read-only file mapping MADV_DONTNEED only drops page-table entries, and a
        // later access reads the file again.
        unsafe {
            libc::madvise(
                self.ptr.add(self.released) as *mut libc::c_void,
                upto - self.released,
                libc::MADV_DONTNEED,
            )
        };
        self.released = upto;
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        self.slot.len.store(0, Ordering::Release);
        // SAFETY: unmapping exactly what `map` mapped; no borrow of it outlives `self`.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
        self.slot.start.store(0, Ordering::Release);
    }
}

fn install_handler() {
    HANDLER.call_once(|| {
        // SAFETY: sysconf has no preconditions; sigaction installs a handler that only calls
        // async-signal-safe system calls (mmap, signal).
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE);
            if page > 0 {
                PAGE.store(page as usize, Ordering::Relaxed);
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
        }
    });
}

/// Replaces the page that faulted with zeros when it belongs to one of our mappings, and
/// marks the mapping; otherwise restores the default action, so the access faults again and
/// the process ends as it would have without us.
extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::Relaxed);
    for slot in &REGISTRY {
        let (start, len) = (
            slot.start.load(Ordering::Acquire),
            slot.len.load(Ordering::Acquire),
        );
        if start != 0 && start != usize::MAX && addr >= start && addr < start + len {
            // SAFETY: the page lies inside a mapping we own; MAP_FIXED replaces just it.
            let r = unsafe {
                libc::mmap(
                    (addr & !(page - 1)) as *mut libc::c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if r != libc::MAP_FAILED {
                slot.faulted.store(true, Ordering::Release);
                return;
            }
        }
    }
    // SAFETY: restoring the default disposition is async-signal-safe.
    unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
}
