//! How the flow tables ask the host about their memory, without the core making a system call.
//!
//! Flows are reached at random, and with 4 KiB pages a cache of 100,000 flows spans 3,000
//! pages, more than the TLB holds; backing the tables with transparent huge pages helps. That
//! is an `madvise`, which the core does not make: the caller passes a function in
//! [`CacheConfig::advise`](super::CacheConfig::advise) (the probe's asks for huge pages), and
//! the tables call it for each region they reserve, before its pages are first touched.

/// Called with the start and length in bytes of a region a flow table has just reserved.
/// Best effort: it may do nothing, and must not touch the region's contents.
pub type Advise = fn(start: *const u8, len: usize);

/// Calls `advise`, if any, with the whole reserved capacity of `v`.
pub(super) fn advise_reserved<T>(advise: Option<Advise>, v: &Vec<T>) {
    if let Some(f) = advise {
        f(
            v.as_ptr() as *const u8,
            v.capacity() * std::mem::size_of::<T>(),
        );
    }
}
