//! Flow metering state: the flow key, the per-worker flow cache and the fragment table.
//!
//! Everything here is owned by one worker and takes no locks; time is a parameter
//! (nanoseconds since the UNIX epoch), and expired flows are appended to a caller's vector.

pub mod cache;
pub mod dedup;
pub mod distinct;
pub mod fragments;
pub mod hash;
pub mod index;
pub mod key;
pub mod memory;
pub mod rollup;

pub use cache::{CacheConfig, CacheStats, FlowCache};
pub use dedup::Dedup;
pub use fragments::{FragmentStats, FragmentTable};
pub use hash::{symmetric_hash, worker_of, HashKey};
pub use key::FlowKey;
pub use rollup::{RollupConfig, RollupStats};
