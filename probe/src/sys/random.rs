//! Random seeds from the operating system, for what must not be predictable from outside (the
//! fan-out's hash key). std's `RandomState` draws its keys from the OS (getrandom) once per
//! thread and steps them per instance; SipHash of nothing under such a key is a fresh random
//! word, with no crate added.

use std::hash::{BuildHasher, Hasher};

/// 64 unpredictable bits.
pub fn seed() -> u64 {
    std::hash::RandomState::new().build_hasher().finish()
}
