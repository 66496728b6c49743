//! # tandem-recovery
//!
//! Snapshot-style remote recovery: a new follower shard starts from a copy of the leader
//! shard's latest commit instead of replaying history (which the leader may have pruned).
//!
//! - [`leader_api`]: the leader API, [`LeaderClient`] (index metadata, shard changes,
//!   retention leases, recovery sessions), its request and answer types and [`LeaderError`],
//!   which recovery, replication and the HTTP transport (crate `tandem-transport`) all speak;
//! - [`in_process`]: [`InProcessLeaderClient`], the leader API over the engines of this process;
//! - [`source`]: the leader side, [`RecoverySource`]: sessions pinning a commit, chunk reads,
//!   idle-session cleanup;
//! - [`target`]: the follower side, [`RecoveryTarget`]: lease, chunked rate-limited
//!   checksum-verified copy, bootstrap of the follower engine;
//! - [`disk`]: the disk high watermark a recovery checks before copying;
//! - [`chunk_bytes`]: [`ChunkBytes`], a chunk's bytes in the pieces they travel in;
//! - [`progress`]: [`RecoveryProgress`], the live progress handle;
//! - [`rate_limiter`]: the token bucket both sides throttle with;
//! - `conformance` (feature `conformance`): the suite every [`LeaderClient`] implementation
//!   must pass;
//! - `fuzzing` (feature `fuzzing`): the body of the `recovery_session` fuzz target.
//!
//! Invariant 6 of `DESIGN.md` §7 (a recovered follower's files are byte-identical to the
//! leader's pinned commit, verified by checksum) is enforced in [`target`].

#![warn(missing_docs)]

pub mod chunk_bytes;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod disk;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod in_process;
pub mod leader_api;
pub mod progress;
pub mod rate_limiter;
pub mod source;
pub mod target;
pub mod verify_source;

pub use chunk_bytes::ChunkBytes;
pub use disk::DiskWatermark;
pub use error::RecoveryError;
pub use in_process::InProcessLeaderClient;
pub use leader_api::{
    AddRetentionLeaseRequest, CheckedLeaderClient, CloseRecoverySessionRequest, FailbackDocument,
    FailbackSourceRequest, FailbackSourceResponse, FileChunk, ForwardingLeaderClient,
    IndexMetadataRequest, LeaderClient, LeaderError, LeaderFuture, LeaderIndexSummary,
    OpenRecoverySessionRequest, PromotedIndexInfo, PromotedShardInfo, ReadFileChunkRequest,
    RecoverySessionInfo, RemoveRetentionLeaseRequest, RenewRetentionLeaseRequest, SessionId,
    ShardChangesRequest, ShardChangesResponse, ShardId, VerifyOpened, VerifyShardRequest,
    VerifyShardResponse, VerifyStep,
};
pub use progress::{RecoveryProgress, RecoveryProgressSnapshot, RecoveryStage};
pub use rate_limiter::RateLimiter;
pub use source::{RecoverySource, RecoverySourceSettings};
pub use target::{RecoveredShard, RecoveryRequest, RecoverySettings, RecoveryTarget};
pub use verify_source::{VerifySource, VerifySourceSettings};
