//! The tools that work on what a capture left behind: `probe extract` ([`extract`], a flow's
//! packets out of capture files or the ring, from a flow list ([`flowlist`])) and `probe ring`
//! ([`ring`], the ring's files listed, checked and recovered), and `probe spool` ([`spool`],
//! what a destination's spool holds, replayed by hand).
//!
//! May use: `files` (the readers), the pipeline, `sys`, the core. Their options are parsed by
//! `cli`; each tool takes its own configuration.

pub mod extract;
pub mod flowlist;
pub mod ring;
pub mod spool;
