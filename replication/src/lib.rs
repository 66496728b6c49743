//! # tandem-replication
//!
//! The follower side of cross-cluster replication (DESIGN.md §4): per follower shard a
//! `ShardFollowTask` pulls batches of operations from the leader shard, buffers them with
//! back-pressure, applies them to the read-only follower engine, retries recoverable errors and
//! stops on fatal ones.
//!
//! - [`params`]: the ten follow parameters, Elasticsearch's defaults and validation.
//! - [`buffer`]: the write buffer, ordered by sequence number, bounded by count and bytes.
//! - [`backoff`]: the retry delay of recoverable errors.
//! - [`stats`]: the per-shard follow stats, in Elasticsearch's shape.
//! - [`task`]: the shard follow task (the pull loop itself).
//! - [`follower_indices`]: the follow lifecycle (follow, pause, resume, unfollow, info, stats).
//! - [`auto_follow`]: auto-follow patterns and their coordinator.
//! - [`lag`]: how far a follower shard trails, in operations and seconds.
//! - [`verify`]: proof that a follower holds what its leader holds, shard by shard.
//! - [`leader`]: the leader side: follower lease ids and forget-follower.
//! - [`lease_cleanup`]: removal of the leases of follows that ended, retried until done.
//! - [`remote`]: the remote clusters, by alias; [`error`]: lifecycle errors;
//!   [`state_file`]: the persisted follow state.

#![warn(missing_docs)]

pub mod auto_follow;
pub mod backoff;
pub mod buffer;
pub mod error;
pub mod follower_indices;
pub mod lag;
pub mod leader;
pub mod lease_cleanup;
pub mod params;
pub mod remote;
pub mod state_file;
pub mod stats;
pub mod task;
pub mod verify;
