//! SIGINT and SIGTERM ask the probe to stop: it stops reading, exports every active flow
//! (forcedEnd), flushes the exporter and prints its books, instead of dying with flows unsaid.
//! A second signal exits at once (status 130).

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // A second signal means "now": the operator does not want to wait for the remaining
    // records to be paced out. `_exit` is async-signal-safe.
    if STOP.swap(true, Ordering::Relaxed) {
        unsafe { libc::_exit(130) };
    }
}

/// Installs the handlers. Without SA_RESTART, so a read blocked on a pipe returns EINTR and the
/// reader notices at once.
pub fn install() -> std::io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a plain sigaction with a handler that only stores to an atomic.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
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
