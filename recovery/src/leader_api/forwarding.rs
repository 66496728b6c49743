//! [`ForwardingLeaderClient`]: a wrapper over a [`LeaderClient`] that writes only the calls it
//! changes.

use tandem_engine::index::IndexMetadata;

use super::types::{
    AddRetentionLeaseRequest, CloseRecoverySessionRequest, FailbackSourceRequest,
    FailbackSourceResponse, FileChunk, IndexMetadataRequest, LeaderIndexSummary,
    OpenRecoverySessionRequest, ReadFileChunkRequest, RecoverySessionInfo,
    RemoveRetentionLeaseRequest, RenewRetentionLeaseRequest, ShardChangesRequest,
    ShardChangesResponse, VerifyShardRequest, VerifyShardResponse,
};
use super::{LeaderClient, LeaderFuture};

/// A [`LeaderClient`] that wraps another one and forwards every call it does not override.
///
/// Wrappers (fault injection, test hooks, restricted views) implement this trait instead of
/// [`LeaderClient`] and write only the methods they change; the blanket implementation below
/// makes them `LeaderClient`s.
pub trait ForwardingLeaderClient: Send + Sync {
    /// The client every call not overridden goes to.
    fn inner(&self) -> &dyn LeaderClient;

    /// See [`LeaderClient::index_metadata`].
    fn index_metadata(&self, request: IndexMetadataRequest) -> LeaderFuture<'_, IndexMetadata> {
        self.inner().index_metadata(request)
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
    fn add_retention_lease(&self, request: AddRetentionLeaseRequest) -> LeaderFuture<'_, ()> {
        self.inner().add_retention_lease(request)
    }

    /// See [`LeaderClient::renew_retention_lease`].
    fn renew_retention_lease(&self, request: RenewRetentionLeaseRequest) -> LeaderFuture<'_, ()> {
        self.inner().renew_retention_lease(request)
    }

    /// See [`LeaderClient::remove_retention_lease`].
    fn remove_retention_lease(&self, request: RemoveRetentionLeaseRequest) -> LeaderFuture<'_, ()> {
        self.inner().remove_retention_lease(request)
    }

    /// See [`LeaderClient::open_recovery_session`].
    fn open_recovery_session(
        &self,
        request: OpenRecoverySessionRequest,
    ) -> LeaderFuture<'_, RecoverySessionInfo> {
        self.inner().open_recovery_session(request)
    }

    /// See [`LeaderClient::read_file_chunk`].
    fn read_file_chunk(&self, request: ReadFileChunkRequest) -> LeaderFuture<'_, FileChunk> {
        self.inner().read_file_chunk(request)
    }

    /// See [`LeaderClient::close_recovery_session`].
    fn close_recovery_session(&self, request: CloseRecoverySessionRequest) -> LeaderFuture<'_, ()> {
        self.inner().close_recovery_session(request)
    }

    /// See [`LeaderClient::verify_shard`].
    fn verify_shard(&self, request: VerifyShardRequest) -> LeaderFuture<'_, VerifyShardResponse> {
        self.inner().verify_shard(request)
    }

    /// See [`LeaderClient::failback_source`].
    fn failback_source(
        &self,
        request: FailbackSourceRequest,
    ) -> LeaderFuture<'_, FailbackSourceResponse> {
        self.inner().failback_source(request)
    }
}

impl<T: ForwardingLeaderClient> LeaderClient for T {
    fn index_metadata(&self, request: IndexMetadataRequest) -> LeaderFuture<'_, IndexMetadata> {
        ForwardingLeaderClient::index_metadata(self, request)
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

    fn add_retention_lease(&self, request: AddRetentionLeaseRequest) -> LeaderFuture<'_, ()> {
        ForwardingLeaderClient::add_retention_lease(self, request)
    }

    fn renew_retention_lease(&self, request: RenewRetentionLeaseRequest) -> LeaderFuture<'_, ()> {
        ForwardingLeaderClient::renew_retention_lease(self, request)
    }

    fn remove_retention_lease(&self, request: RemoveRetentionLeaseRequest) -> LeaderFuture<'_, ()> {
        ForwardingLeaderClient::remove_retention_lease(self, request)
    }

    fn open_recovery_session(
        &self,
        request: OpenRecoverySessionRequest,
    ) -> LeaderFuture<'_, RecoverySessionInfo> {
        ForwardingLeaderClient::open_recovery_session(self, request)
    }

    fn read_file_chunk(&self, request: ReadFileChunkRequest) -> LeaderFuture<'_, FileChunk> {
        ForwardingLeaderClient::read_file_chunk(self, request)
    }

    fn close_recovery_session(&self, request: CloseRecoverySessionRequest) -> LeaderFuture<'_, ()> {
        ForwardingLeaderClient::close_recovery_session(self, request)
    }

    fn verify_shard(&self, request: VerifyShardRequest) -> LeaderFuture<'_, VerifyShardResponse> {
        ForwardingLeaderClient::verify_shard(self, request)
    }

    fn failback_source(
        &self,
        request: FailbackSourceRequest,
    ) -> LeaderFuture<'_, FailbackSourceResponse> {
        ForwardingLeaderClient::failback_source(self, request)
    }
}
