//! # tandem-engine
//!
//! A tantivy-backed shard engine built for cross-cluster replication: every write gets a
//! sequence number and primary term, acknowledged writes are durable through a write-ahead
//! translog with group commit, updated and deleted documents stay readable as *history* until
//! retention lets them go, and a *changes API* serves every operation of a sequence-number range
//! in order.
//!
//! The public surface, one module per noun an embedder works with:
//!
//! - [`shard`]: [`ShardEngine`], one shard (tantivy index + translog + checkpoints + leases):
//!   writes, reads, the changes API, retention leases, pinned commits for file-based recovery.
//! - [`index`]: [`Index`], N shards with settings, mappings, routing and search.
//! - [`indices`]: [`Indices`], the indices of a data directory, by name.
//! - [`mapping`]: mappings, the tantivy schema built from them, and the
//!   [`DocumentMapper`](mapping::DocumentMapper) an index's shards share.
//! - [`shard_limit`]: the node-wide shard limit (`cluster.max_shards_per_node`).
//! - [`durable_file`]: atomic replace of state files and durable directories, for every crate.
//! - [`storage`]: the storage seam every write goes through: the file system, or a simulated
//!   disk that can lose power at any call.
//! - [`units`]: Elasticsearch time values and byte sizes.
//! - At the root: the operation types ([`SeqNo`], [`PrimaryTerm`], [`Operation`], …) and the
//!   error types [`EngineError`] and [`TranslogError`].
//! - `fuzzing` (with the `fuzzing` feature): the bodies of the fuzz targets in `fuzz/`.
//!
//! Everything else (the translog, the checkpoint tracker, the version map, history reading, the
//! merge policy, the per-segment id filters) is implementation and private to the crate.
//!
//! The invariants this crate keeps are listed in `DESIGN.md` §7 and referred to by number
//! where they are enforced.

#![warn(missing_docs)]
#![warn(unnameable_types)]

pub mod durable_file;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod index;
pub mod indices;
pub mod mapping;
pub mod segment_directory;
pub mod shard;
pub mod shard_limit;
pub mod storage;
pub mod strict_json;
pub mod units;

mod checkpoint;
mod error;
mod history;
mod id_filter;
mod lease_log;
mod leases;
mod merge;
mod record;
mod translog;
mod types;
mod version_map;

pub use error::{EngineError, Result};
pub use index::Index;
pub use indices::Indices;
pub use shard::{Durability, ShardConfig, ShardEngine};
pub use translog::TranslogError;
pub use types::{OpType, Operation, OperationKind, PrimaryTerm, SeqNo, SharedOperation};
