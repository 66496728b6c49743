//! The leader API: everything a follower asks of a leader cluster (index metadata, the index
//! list, shard changes, retention leases, recovery sessions), as one object-safe async trait,
//! [`LeaderClient`], with one request type per call ([`types`]) and one error type
//! ([`LeaderError`]). Recovery, replication and the HTTP transport all speak it: the in-process
//! leader ([`InProcessLeaderClient`](crate::InProcessLeaderClient)) implements it over local
//! engines, the transport crate carries the same values over HTTP.
//!
//! Why boxed futures instead of `async fn` in the trait: followers hold the client as
//! `Arc<dyn LeaderClient>`, and a trait with `async fn` methods is not usable as `dyn`. One
//! allocation per request is negligible next to a 1 MB chunk or a network round trip.
//!
//! Guarantees every implementation gives (the suite in `conformance`, feature `conformance`,
//! checks them):
//! - requests are independent and may run concurrently from several tasks;
//! - `close_recovery_session` and a verify's `Close` step are idempotent;
//! - a lost or expired session is reported as [`LeaderError::UnknownSession`], never as
//!   another error, so a recovery knows to open a new one;
//! - errors are classified with [`LeaderError::is_retryable`].
//!
//! What a leader answers is not trusted: [`CheckedLeaderClient`] range-checks every number of
//! every answer, for every implementation, before a follower uses it.

pub mod checked;
mod error;
mod forwarding;
pub mod types;

use std::future::Future;
use std::pin::Pin;

use tandem_engine::index::IndexMetadata;

pub use checked::CheckedLeaderClient;
pub use error::LeaderError;
pub use forwarding::ForwardingLeaderClient;
pub use types::{
    AddRetentionLeaseRequest, CloseRecoverySessionRequest, FailbackDocument, FailbackSourceRequest,
    FailbackSourceResponse, FileChunk, IndexMetadataRequest, LeaderIndexSummary,
    OpenRecoverySessionRequest, PromotedIndexInfo, PromotedShardInfo, ReadFileChunkRequest,
    RecoverySessionInfo, RemoveRetentionLeaseRequest, RenewRetentionLeaseRequest, SessionId,
    ShardChangesRequest, ShardChangesResponse, ShardId, VerifyOpened, VerifyShardRequest,
    VerifyShardResponse, VerifyStep, MAX_FAILBACK_DOCUMENTS_BYTES, MAX_FAILBACK_IDS,
    MAX_FAILBACK_IDS_BYTES, MAX_FOLLOWER_UNDETERMINED_BYTES, MAX_VERIFY_RANGES,
};

/// The future every [`LeaderClient`] method returns.
pub type LeaderFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LeaderError>> + Send + 'a>>;

/// Everything a follower asks of a leader cluster. See the module documentation for the
/// guarantees; every method may be called from any task, concurrently.
pub trait LeaderClient: Send + Sync {
    /// Metadata of a leader index: settings (shard count among them), mappings, uuid, versions.
    fn index_metadata(&self, request: IndexMetadataRequest) -> LeaderFuture<'_, IndexMetadata>;

    /// The open indices of the leader cluster (auto-follow polls this).
    fn list_indices(&self) -> LeaderFuture<'_, Vec<LeaderIndexSummary>>;

    /// Operations of a leader shard (see [`ShardChangesRequest`]).
    fn shard_changes(&self, request: ShardChangesRequest)
        -> LeaderFuture<'_, ShardChangesResponse>;

    /// Adds a retention lease on a leader shard; fails with
    /// [`LeaderError::RetentionLeaseAlreadyExists`] if the id is taken. Durable on the leader
    /// when the future resolves.
    fn add_retention_lease(&self, request: AddRetentionLeaseRequest) -> LeaderFuture<'_, ()>;

    /// Renews a retention lease (its retaining sequence number never goes backwards).
    fn renew_retention_lease(&self, request: RenewRetentionLeaseRequest) -> LeaderFuture<'_, ()>;

    /// Removes a retention lease.
    fn remove_retention_lease(&self, request: RemoveRetentionLeaseRequest) -> LeaderFuture<'_, ()>;

    /// Opens a recovery session: pins the shard's latest commit until the session is closed or
    /// sees no request for the leader's activity timeout.
    fn open_recovery_session(
        &self,
        request: OpenRecoverySessionRequest,
    ) -> LeaderFuture<'_, RecoverySessionInfo>;

    /// Reads `length` bytes of `file` from `offset` (fewer at the end of the file) out of the
    /// session's pinned commit. Counts as session activity.
    fn read_file_chunk(&self, request: ReadFileChunkRequest) -> LeaderFuture<'_, FileChunk>;

    /// Closes a session and releases its pin. Idempotent: closing an unknown or already closed
    /// session succeeds.
    fn close_recovery_session(&self, request: CloseRecoverySessionRequest) -> LeaderFuture<'_, ()>;

    /// One step of a verify of a follower shard against this leader shard (see
    /// [`VerifyStep`]). A lost or expired session is [`LeaderError::UnknownSession`]; closing
    /// is idempotent.
    fn verify_shard(&self, request: VerifyShardRequest) -> LeaderFuture<'_, VerifyShardResponse>;

    /// One request of a failback of the old leader of a promoted index (see
    /// [`FailbackSourceRequest`]).
    fn failback_source(
        &self,
        request: FailbackSourceRequest,
    ) -> LeaderFuture<'_, FailbackSourceResponse>;
}
