//! Test support shared by the tests of Tandem's crates (a dev-dependency only, never shipped):
//!
//! - [`allocations`]: an allocator that counts what a test binary allocates, with peaks;
//! - [`fault_proxy`]: a TCP proxy that fails the way networks do (black hole, half-open, drip,
//!   reset, refused, cut), put between a follower and its leader;
//! - [`fuzz_corpus`]: the checked-in fuzz corpora and pseudo-random inputs derived from them;
//! - [`memory`]: the resident memory of real processes, sampled on a thread, with peaks.
//!
//! Everything here runs real sockets and reads real `/proc` files: it fakes nothing of what
//! the tests it serves are about.

#![warn(missing_docs)]

pub mod allocations;
pub mod fault_proxy;
pub mod fuzz_corpus;
pub mod memory;
