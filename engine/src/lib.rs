//! # tandem-engine
//!
//! A tantivy-backed shard engine built for cross-cluster replication: every write gets a
//! sequence number and primary term, acknowledged writes are durable through a write-ahead
//! translog with group commit, updated and deleted documents stay readable as *history* until
//! retention lets them go, and a *changes API* serves every operation of a sequence-number range
//! in order.
//!
//! - [`shard::ShardEngine`]: one shard (tantivy index + translog + checkpoints + leases).
//! - [`index::Index`]: N shards with settings, mappings, routing and search.
//! - [`durable_file`]: atomic replace of state files and durable directories, for every crate.
//! - [`translog`]: the write-ahead log; [`checkpoint`]: the local checkpoint tracker;
//!   [`leases`]: retention leases; [`merge`]: the retention-aware merge policy;
//!   [`history`]: reading history out of segments; [`mapping`]: mappings and schema;
//!   [`units`]: Elasticsearch time values and byte sizes.
//!
//! The invariants this crate keeps are listed in `DESIGN.md` §7 and referred to by number
//! where they are enforced.

#![warn(missing_docs)]

pub mod bloom;
pub mod checkpoint;
pub mod durable_file;
pub mod error;
pub mod fuzzing;
pub mod history;
pub mod index;
pub mod indices;
pub mod leases;
pub mod mapper;
pub mod mapping;
pub mod merge;
pub mod record;
pub mod shard;
pub mod translog;
pub mod types;
pub mod units;
pub mod version_map;

pub use error::{EngineError, Result};
pub use shard::{Durability, ShardConfig, ShardEngine};
pub use types::{OpType, Operation, OperationKind, PrimaryTerm, SeqNo, SharedOperation};
