//! The leader-client seam: everything a follower asks of a leader cluster (index metadata,
//! shard changes, retention leases, recovery sessions), as one object-safe async trait.
//!
//! Why boxed futures instead of `async fn` in the trait: followers hold the client as
//! `Arc<dyn LeaderClient>` (in-process in tests and embeddings, HTTP in the node), and a trait
//! with `async fn` methods is not usable as `dyn`. One allocation per request is negligible next
//! to a 1 MB chunk or a network round trip, and it keeps implementations free of extra crates.
//!
//! Guarantees every implementation gives (the suite in `conformance`, feature `conformance`, checks them):
//! - requests are independent and may run concurrently from several tasks;
//! - `close_recovery_session` is idempotent;
//! - a lost or expired session is reported as [`LeaderError::UnknownSession`], never as
//!   another error, so a recovery knows to open a new one;
//! - errors are classified with [`LeaderError::is_retryable`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tandem_engine::index::IndexMetadata;
use tandem_engine::shard::CommitFileInfo;
use tandem_engine::{SeqNo, SharedOperation};

use crate::chunk_bytes::ChunkBytes;
use crate::error::LeaderError;

/// The future every [`LeaderClient`] method returns.
pub type LeaderFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LeaderError>> + Send + 'a>>;

/// One shard of a leader index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardId {
    /// The leader index's name.
    pub index: String,
    /// The shard number.
    pub shard: u32,
}

impl ShardId {
    /// Shard `shard` of `index`.
    pub fn new(index: impl Into<String>, shard: u32) -> ShardId {
        ShardId {
            index: index.into(),
            shard,
        }
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}][{}]", self.index, self.shard)
    }
}

/// Identifies a recovery session on the leader.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionId(pub String);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the leader answers when a recovery session opens: the pinned commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverySessionInfo {
    /// The session, for chunk requests and close.
    pub session_id: SessionId,
    /// The shard whose commit is pinned.
    pub shard: ShardId,
    /// Every file of the commit (segment files, `.managed.json`, then `meta.json`).
    pub files: Vec<CommitFileInfo>,
    /// The commit's local checkpoint: replication continues at the next sequence number.
    pub local_checkpoint: SeqNo,
    /// The commit's highest sequence number.
    pub max_seq_no: SeqNo,
    /// The leader index's mapping version when the session opened.
    pub mapping_version: u64,
    /// The leader shard's history uuid in the pinned commit: a follower recovered from it
    /// replicates that history (and checks it on every read).
    pub history_uuid: String,
}

/// A piece of a file of a pinned commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChunk {
    /// The bytes, `length` of them unless the file ends first.
    pub data: ChunkBytes,
    /// Time the leader spent throttling this chunk (its own rate limit).
    pub source_throttle: Duration,
}

/// A request for the operations of a leader shard from a sequence number on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardChangesRequest {
    /// The leader shard.
    pub shard: ShardId,
    /// First sequence number wanted.
    pub from_seq_no: SeqNo,
    /// At most this many operations.
    pub max_operations: usize,
    /// Stop adding operations once this many bytes are reached (at least one is returned).
    pub max_bytes: usize,
    /// When nothing at or above `from_seq_no` is below the global checkpoint yet, wait this long
    /// for it (long poll); zero answers at once.
    pub poll_timeout: Duration,
    /// The leader shard history the follower replicates; another one fails the read with
    /// [`LeaderError::HistoryUuidMismatch`] (fatal). `None` skips the check.
    pub expected_history_uuid: Option<String>,
}

/// The operations of a leader shard, and its checkpoints at the time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardChangesResponse {
    /// Operations in sequence-number order, contiguous from the request's `from_seq_no`
    /// (empty when none is available yet). Shared: in process, nothing is copied between the
    /// leader's changes API and the follower's write.
    pub operations: Vec<SharedOperation>,
    /// The leader shard's global checkpoint.
    pub global_checkpoint: SeqNo,
    /// The leader shard's highest sequence number.
    pub max_seq_no: SeqNo,
    /// The leader shard's highest sequence number of an update or delete.
    pub max_seq_no_of_updates: SeqNo,
    /// The leader index's mapping version.
    pub mapping_version: u64,
    /// The leader index's settings version.
    pub settings_version: u64,
    /// The leader index's aliases version.
    pub aliases_version: u64,
    /// Time the leader spent serving the read, long-poll wait included.
    pub took: Duration,
}

/// One index of a leader cluster, as listed for auto-follow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderIndexSummary {
    /// Index name.
    pub name: String,
    /// Index uuid (a re-created index of the same name has a new one).
    pub uuid: String,
}

/// Everything a follower asks of a leader cluster. See the module documentation for the
/// guarantees; every method may be called from any task, concurrently.
pub trait LeaderClient: Send + Sync {
    /// Metadata of a leader index: settings (shard count among them), mappings, uuid, versions.
    fn index_metadata(&self, index: &str) -> LeaderFuture<'_, IndexMetadata>;

    /// The open indices of the leader cluster (auto-follow polls this).
    fn list_indices(&self) -> LeaderFuture<'_, Vec<LeaderIndexSummary>>;

    /// Operations of a leader shard (see [`ShardChangesRequest`]).
    fn shard_changes(&self, request: ShardChangesRequest)
        -> LeaderFuture<'_, ShardChangesResponse>;

    /// Adds a retention lease on a leader shard; fails with
    /// [`LeaderError::RetentionLeaseAlreadyExists`] if the id is taken. Durable on the leader
    /// when the future resolves.
    fn add_retention_lease(
        &self,
        shard: ShardId,
        lease_id: String,
        retaining_seq_no: SeqNo,
        source: String,
    ) -> LeaderFuture<'_, ()>;

    /// Renews a retention lease (its retaining sequence number never goes backwards).
    fn renew_retention_lease(
        &self,
        shard: ShardId,
        lease_id: String,
        retaining_seq_no: SeqNo,
    ) -> LeaderFuture<'_, ()>;

    /// Removes a retention lease.
    fn remove_retention_lease(&self, shard: ShardId, lease_id: String) -> LeaderFuture<'_, ()>;

    /// Opens a recovery session: pins the shard's latest commit until the session is closed or
    /// sees no request for the leader's activity timeout.
    fn open_recovery_session(&self, shard: ShardId) -> LeaderFuture<'_, RecoverySessionInfo>;

    /// Reads `length` bytes of `file` from `offset` (fewer at the end of the file) out of the
    /// session's pinned commit. Counts as session activity.
    fn read_file_chunk(
        &self,
        shard: ShardId,
        session: SessionId,
        file: String,
        offset: u64,
        length: usize,
    ) -> LeaderFuture<'_, FileChunk>;

    /// Closes a session and releases its pin. Idempotent: closing an unknown or already closed
    /// session succeeds.
    fn close_recovery_session(&self, shard: ShardId, session: SessionId) -> LeaderFuture<'_, ()>;
}

/// A [`LeaderClient`] that wraps another one and forwards every call it does not override.
///
/// Wrappers (fault injection, test hooks, restricted views) implement this trait instead of
/// [`LeaderClient`] and write only the methods they change; the blanket implementation below
/// makes them `LeaderClient`s.
pub trait ForwardingLeaderClient: Send + Sync {
    /// The client every call not overridden goes to.
    fn inner(&self) -> &dyn LeaderClient;

    /// See [`LeaderClient::index_metadata`].
    fn index_metadata(&self, index: &str) -> LeaderFuture<'_, IndexMetadata> {
        self.inner().index_metadata(index)
    }

    /// See [`LeaderClient::list_indices`].
    fn list_indices(&self) -> LeaderFuture<'_, Vec<LeaderIndexSummary>> {
        self.inner().list_indices()
    }

    /// See [`LeaderClient::shard_changes`].
    fn shard_changes(
        &self,
        request: ShardChangesRequest,
    ) -> LeaderFuture<'_, ShardChangesResponse> {
        self.inner().shard_changes(request)
    }

    /// See [`LeaderClient::add_retention_lease`].
    fn add_retention_lease(
        &self,
        shard: ShardId,
        lease_id: String,
        retaining_seq_no: SeqNo,
        source: String,
    ) -> LeaderFuture<'_, ()> {
        self.inner()
            .add_retention_lease(shard, lease_id, retaining_seq_no, source)
    }

    /// See [`LeaderClient::renew_retention_lease`].
    fn renew_retention_lease(
        &self,
        shard: ShardId,
        lease_id: String,
        retaining_seq_no: SeqNo,
    ) -> LeaderFuture<'_, ()> {
        self.inner()
            .renew_retention_lease(shard, lease_id, retaining_seq_no)
    }

    /// See [`LeaderClient::remove_retention_lease`].
    fn remove_retention_lease(&self, shard: ShardId, lease_id: String) -> LeaderFuture<'_, ()> {
        self.inner().remove_retention_lease(shard, lease_id)
    }

    /// See [`LeaderClient::open_recovery_session`].
    fn open_recovery_session(&self, shard: ShardId) -> LeaderFuture<'_, RecoverySessionInfo> {
        self.inner().open_recovery_session(shard)
    }

    /// See [`LeaderClient::read_file_chunk`].
    fn read_file_chunk(
        &self,
        shard: ShardId,
        session: SessionId,
        file: String,
        offset: u64,
        length: usize,
    ) -> LeaderFuture<'_, FileChunk> {
        self.inner()
            .read_file_chunk(shard, session, file, offset, length)
    }

    /// See [`LeaderClient::close_recovery_session`].
    fn close_recovery_session(&self, shard: ShardId, session: SessionId) -> LeaderFuture<'_, ()> {
        self.inner().close_recovery_session(shard, session)
    }
}

impl<T: ForwardingLeaderClient> LeaderClient for T {
    fn index_metadata(&self, index: &str) -> LeaderFuture<'_, IndexMetadata> {
        ForwardingLeaderClient::index_metadata(self, index)
    }

    fn list_indices(&self) -> LeaderFuture<'_, Vec<LeaderIndexSummary>> {
        ForwardingLeaderClient::list_indices(self)
    }

    fn shard_changes(
        &self,
        request: ShardChangesRequest,
    ) -> LeaderFuture<'_, ShardChangesResponse> {
        ForwardingLeaderClient::shard_changes(self, request)
    }

    fn add_retention_lease(
        &self,
        shard: ShardId,
        lease_id: String,
        retaining_seq_no: SeqNo,
        source: String,
    ) -> LeaderFuture<'_, ()> {
        ForwardingLeaderClient::add_retention_lease(self, shard, lease_id, retaining_seq_no, source)
    }

    fn renew_retention_lease(
        &self,
        shard: ShardId,
        lease_id: String,
        retaining_seq_no: SeqNo,
    ) -> LeaderFuture<'_, ()> {
        ForwardingLeaderClient::renew_retention_lease(self, shard, lease_id, retaining_seq_no)
    }

    fn remove_retention_lease(&self, shard: ShardId, lease_id: String) -> LeaderFuture<'_, ()> {
        ForwardingLeaderClient::remove_retention_lease(self, shard, lease_id)
    }

    fn open_recovery_session(&self, shard: ShardId) -> LeaderFuture<'_, RecoverySessionInfo> {
        ForwardingLeaderClient::open_recovery_session(self, shard)
    }

    fn read_file_chunk(
        &self,
        shard: ShardId,
        session: SessionId,
        file: String,
        offset: u64,
        length: usize,
    ) -> LeaderFuture<'_, FileChunk> {
        ForwardingLeaderClient::read_file_chunk(self, shard, session, file, offset, length)
    }

    fn close_recovery_session(&self, shard: ShardId, session: SessionId) -> LeaderFuture<'_, ()> {
        ForwardingLeaderClient::close_recovery_session(self, shard, session)
    }
}
