//! Memory advice for the core's flow tables ([`probe_core::flow::memory`]): back them with
//! transparent huge pages where THP is in `madvise` mode, as on Debian. Flows are reached at
//! random, and with 4 KiB pages a cache of 100,000 flows spans 3,000 pages, more than the TLB
//! holds.

/// A [`probe_core::flow::memory::Advise`]: asks for huge pages over the whole pages inside
/// `start..start + len`. Best effort: an error changes nothing.
pub fn huge_pages(start: *const u8, len: usize) {
    const PAGE: usize = 4096;
    let start = start as usize;
    let end = start + len;
    let aligned = (start + PAGE - 1) & !(PAGE - 1);
    if end > aligned + PAGE {
        // SAFETY: the caller passes a region its own allocation reserved; MADV_HUGEPAGE
        // changes how the kernel backs it, not its contents.
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                (end - aligned) & !(PAGE - 1),
                libc::MADV_HUGEPAGE,
            );
        }
    }
}
