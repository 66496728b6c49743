//! Shared helpers for Tandem benchmarks.
