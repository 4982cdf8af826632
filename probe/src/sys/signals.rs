//! SIGINT and SIGTERM ask the probe to stop: it stops reading, exports every active flow
//! (forcedEnd), flushes the exporter and prints its books, instead of dying with flows unsaid.
//! A second signal more than [`GRACE_NS`] after the first exits at once (status 130); one that
//! follows within the grace is the same request: GNU `timeout` sends SIGTERM to the probe and
//! then to its whole process group, so the probe sees two signals microseconds apart, and the
//! second must not abort the orderly stop it asked for.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
/// SIGHUP: re-read the config file (`probe capture`).
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hangup(_: libc::c_int) {
    RELOAD.store(true, Ordering::Relaxed);
}

/// Whether SIGHUP arrived since the last call (and forgets it).
pub fn take_reload() -> bool {
    RELOAD.swap(false, Ordering::Relaxed)
}
/// CLOCK_MONOTONIC nanoseconds of the first signal (0: none yet).
static FIRST_NS: AtomicU64 = AtomicU64::new(0);

/// How long after the first signal another one still counts as the same request: far longer
/// than `timeout`'s two kill(2) calls, shorter than a person's deliberate second Ctrl-C.
pub const GRACE_NS: u64 = 500_000_000;

fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime is async-signal-safe and writes one timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

extern "C" fn on_signal(_: libc::c_int) {
    let now = monotonic_ns().max(1);
    match FIRST_NS.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => STOP.store(true, Ordering::Relaxed),
        // A second signal after the grace means "now": the operator does not want to wait for
        // the remaining records to be paced out. `_exit` is async-signal-safe.
        Err(first) if now.saturating_sub(first) > GRACE_NS => unsafe { libc::_exit(130) },
        Err(_) => {}
    }
}

/// Installs the handlers. Without SA_RESTART, so a read blocked on a pipe returns EINTR and the
/// reader notices at once.
pub fn install() -> std::io::Result<()> {
    for (sig, handler) in [
        (libc::SIGINT, on_signal as *const () as usize),
        (libc::SIGTERM, on_signal as *const () as usize),
        (libc::SIGHUP, on_hangup as *const () as usize),
    ] {
        // SAFETY: a plain sigaction with a handler that only uses atomics, clock_gettime and
        // _exit.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM has arrived.
#[inline]
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}
