//! [`InProcessLeaderClient`]: a [`LeaderClient`] over leader indices living in the same
//! process, so recovery and replication run (and are tested) without a network.
//!
//! Engine calls block (fsyncs, segment reads), so each runs on tokio's blocking pool; chunk
//! reads are memory copies out of the pinned files and run inline.
//!
//! A long poll (shard changes with a poll timeout) waits as a task, not on a thread: the wait
//! for the global checkpoint is the engine's [`GlobalCheckpointWait`] future, raced against the
//! poll timeout and [`InProcessLeaderClient::stop_long_polls`]. Only the read after the wait
//! runs on the blocking pool, within [`CHANGES_READ_DEADLINE`]. So open polls cost no thread,
//! and a follower that goes away (its request future dropped) unregisters its wait at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tandem_engine::index::{Index, IndexMetadata};
use tandem_engine::indices::Indices;
use tandem_engine::shard::GlobalCheckpointWait;

use crate::leader_api::{
    AddRetentionLeaseRequest, CloseRecoverySessionRequest, FailbackDocument, FailbackSourceRequest,
    FailbackSourceResponse, FileChunk, IndexMetadataRequest, LeaderClient, LeaderError,
    LeaderFuture, LeaderIndexSummary, OpenRecoverySessionRequest, PromotedIndexInfo,
    PromotedShardInfo, ReadFileChunkRequest, RecoverySessionInfo, RemoveRetentionLeaseRequest,
    RenewRetentionLeaseRequest, ShardChangesRequest, ShardChangesResponse, ShardId,
    VerifyShardRequest, VerifyShardResponse, VerifyStep, MAX_FAILBACK_DOCUMENTS_BYTES,
    MAX_FAILBACK_IDS, MAX_FAILBACK_IDS_BYTES,
};
use crate::source::RecoverySource;
use crate::verify_source::{VerifySource, VerifySourceSettings};

/// Longest long poll a changes request may ask for.
pub const MAX_POLL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a changes read may take on the blocking pool once its wait is over (a busy pool
/// queues it): past it the read answers [`LeaderError::Timeout`], which the follower retries,
/// as a follower's own request deadline would have given up on it by then.
pub const CHANGES_READ_DEADLINE: Duration = Duration::from_secs(10);

/// Where the leader indices come from.
#[derive(Clone)]
enum LeaderIndices {
    /// Indices registered one by one ([`InProcessLeaderClient::register_index`]).
    Registered(Arc<RwLock<HashMap<String, Arc<Index>>>>),
    /// Every open index of a data directory (a node serving its own cluster).
    Cluster(Arc<Indices>),
}

/// A leader "cluster" in this process: its indices and their recovery source.
#[derive(Clone)]
pub struct InProcessLeaderClient {
    indices: LeaderIndices,
    source: Arc<RecoverySource>,
    verify: Arc<VerifySource>,
    polls: Arc<LongPolls>,
}

/// The stop signal of the long polls: every poll waits on it beside its checkpoint and its
/// timeout, so that [`InProcessLeaderClient::stop_long_polls`] ends them all at once.
struct LongPolls {
    /// Becomes true, for good, once the client stops serving long polls: waits in progress
    /// end and later ones answer at once. A watch keeps the value, so a poll that subscribes
    /// after the stop still sees it.
    stopped: tokio::sync::watch::Sender<bool>,
}

impl Default for LongPolls {
    fn default() -> Self {
        LongPolls {
            stopped: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl LongPolls {
    /// Waits until `reached` resolves, `timeout` passes or the polls are stopped, holding no
    /// thread; dropping the returned future (the follower went away) drops the wait and
    /// unregisters it from the shard.
    async fn wait(&self, reached: GlobalCheckpointWait, timeout: Duration) {
        let mut stopped = self.stopped.subscribe();
        tokio::select! {
            _ = reached => {}
            _ = tokio::time::sleep(timeout) => {}
            // Checks the current value first: a stop before the subscription is seen too.
            _ = stopped.wait_for(|stopped| *stopped) => {}
        }
    }
}

impl InProcessLeaderClient {
    /// A client serving no index until [`register_index`](Self::register_index), with
    /// `source` for recovery sessions.
    pub fn new(source: Arc<RecoverySource>) -> InProcessLeaderClient {
        InProcessLeaderClient {
            indices: LeaderIndices::Registered(Arc::new(RwLock::new(HashMap::new()))),
            source,
            verify: VerifySource::new(VerifySourceSettings::default()),
            polls: Arc::default(),
        }
    }

    /// A client serving every open index of `indices` (created, closed and deleted indices
    /// are seen at once), with `source` for recovery sessions.
    pub fn over_indices(
        indices: Arc<Indices>,
        source: Arc<RecoverySource>,
    ) -> InProcessLeaderClient {
        InProcessLeaderClient {
            indices: LeaderIndices::Cluster(indices),
            source,
            verify: VerifySource::new(VerifySourceSettings::default()),
            polls: Arc::default(),
        }
    }

    /// Makes `index` reachable under its name (replacing one of the same name).
    ///
    /// # Panics
    /// On a client built with [`over_indices`](Self::over_indices): its indices are those of
    /// the data directory.
    pub fn register_index(&self, index: Arc<Index>) {
        match &self.indices {
            LeaderIndices::Registered(registered) => {
                registered.write().insert(index.name(), index);
            }
            LeaderIndices::Cluster(_) => panic!("register_index on a client over a data directory"),
        }
    }

    /// Makes the index `name` unreachable (as if deleted on the leader); true if it was known.
    ///
    /// # Panics
    /// On a client built with [`over_indices`](Self::over_indices).
    pub fn unregister_index(&self, name: &str) -> bool {
        match &self.indices {
            LeaderIndices::Registered(registered) => registered.write().remove(name).is_some(),
            LeaderIndices::Cluster(_) => {
                panic!("unregister_index on a client over a data directory")
            }
        }
    }

    /// The recovery source serving this client's sessions.
    pub fn recovery_source(&self) -> &Arc<RecoverySource> {
        &self.source
    }

    /// The verify sessions of this client's shards.
    pub fn verify_source(&self) -> &Arc<VerifySource> {
        &self.verify
    }

    /// Ends every long poll in progress (each answers with what it has) and makes later ones
    /// answer at once: call it when the node stops serving, so that no answer keeps a
    /// connection (and a graceful shutdown) waiting for writes that will not come.
    pub fn stop_long_polls(&self) {
        self.polls.stopped.send_replace(true);
    }

    fn index(&self, name: &str) -> Result<Arc<Index>, LeaderError> {
        match &self.indices {
            LeaderIndices::Registered(registered) => registered
                .read()
                .get(name)
                .cloned()
                .ok_or_else(|| LeaderError::IndexNotFound(name.to_string())),
            LeaderIndices::Cluster(indices) => indices.get(name).map_err(engine_error),
        }
    }

    /// Runs `work` on shard `shard` of its index on the blocking pool.
    fn on_shard<T: Send + 'static>(
        &self,
        shard: ShardId,
        work: impl FnOnce(&Index, &tandem_engine::ShardEngine) -> Result<T, LeaderError>
            + Send
            + 'static,
    ) -> LeaderFuture<'_, T> {
        Box::pin(async move {
            let index = self.index(&shard.index)?;
            tokio::task::spawn_blocking(move || {
                let engine = index.shards().get(shard.shard as usize).ok_or_else(|| {
                    LeaderError::ShardNotFound {
                        index: shard.index.clone(),
                        shard: shard.shard,
                    }
                })?;
                work(&index, engine)
            })
            .await
            .map_err(|e| LeaderError::Unavailable(format!("leader task failed: {e}")))?
        })
    }
}

fn engine_error(error: tandem_engine::EngineError) -> LeaderError {
    LeaderError::from_engine(&error)
}

impl LeaderClient for InProcessLeaderClient {
    fn index_metadata(&self, request: IndexMetadataRequest) -> LeaderFuture<'_, IndexMetadata> {
        let found = self.index(&request.index);
        Box::pin(async move { Ok(found?.metadata()) })
    }

    fn list_indices(&self) -> LeaderFuture<'_, Vec<LeaderIndexSummary>> {
        let mut listed: Vec<LeaderIndexSummary> = match &self.indices {
            LeaderIndices::Registered(registered) => registered
                .read()
                .values()
                .map(|index| index.metadata())
                .map(|metadata| LeaderIndexSummary {
                    name: metadata.name,
                    uuid: metadata.uuid,
                })
                .collect(),
            LeaderIndices::Cluster(indices) => indices
                .names()
                .into_iter()
                .filter_map(|name| indices.metadata(&name).ok())
                .map(|metadata| LeaderIndexSummary {
                    name: metadata.name,
                    uuid: metadata.uuid,
                })
                .collect(),
        };
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        Box::pin(async move { Ok(listed) })
    }

    fn shard_changes(
        &self,
        request: ShardChangesRequest,
    ) -> LeaderFuture<'_, ShardChangesResponse> {
        Box::pin(async move {
            let index = self.index(&request.shard.index)?;
            let shard = request.shard.shard as usize;
            if shard >= index.shards().len() {
                return Err(LeaderError::ShardNotFound {
                    index: request.shard.index.clone(),
                    shard: request.shard.shard,
                });
            }
            let started = Instant::now();
            let changes = request.changes;
            let engine = &index.shards()[shard];
            engine
                .check_changes_request(&changes)
                .map_err(engine_error)?;
            let poll_timeout = changes.poll_timeout.min(MAX_POLL_TIMEOUT);
            if !poll_timeout.is_zero() && changes.from_seq_no > engine.global_checkpoint() {
                let reached = engine.global_checkpoint_reached(changes.from_seq_no);
                self.polls.wait(reached, poll_timeout).await;
            }
            let served = index.clone();
            let read = tokio::task::spawn_blocking(move || {
                served.shards()[shard]
                    .read_shard_changes(&changes, started)
                    .map_err(engine_error)
            });
            let response = tokio::time::timeout(CHANGES_READ_DEADLINE, read)
                .await
                .map_err(|_| LeaderError::Timeout(CHANGES_READ_DEADLINE))?
                .map_err(|e| LeaderError::Unavailable(format!("leader task failed: {e}")))??;
            let metadata = index.metadata();
            Ok(ShardChangesResponse {
                changes: response,
                mapping_version: metadata.mapping_version,
                settings_version: metadata.settings_version,
                aliases_version: metadata.aliases_version,
            })
        })
    }

    fn add_retention_lease(&self, request: AddRetentionLeaseRequest) -> LeaderFuture<'_, ()> {
        let AddRetentionLeaseRequest {
            shard,
            lease_id,
            retaining_seq_no,
            source,
        } = request;
        self.on_shard(shard, move |_, engine| {
            if engine.retention_leases().leases.contains_key(&lease_id) {
                return Err(LeaderError::RetentionLeaseAlreadyExists(lease_id));
            }
            engine
                .add_retention_lease(&lease_id, retaining_seq_no, &source)
                .map(|_| ())
                .map_err(engine_error)
        })
    }

    fn renew_retention_lease(&self, request: RenewRetentionLeaseRequest) -> LeaderFuture<'_, ()> {
        let RenewRetentionLeaseRequest {
            shard,
            lease_id,
            retaining_seq_no,
        } = request;
        self.on_shard(shard, move |_, engine| {
            if !engine.retention_leases().leases.contains_key(&lease_id) {
                return Err(LeaderError::RetentionLeaseNotFound(lease_id));
            }
            engine
                .renew_retention_lease(&lease_id, retaining_seq_no)
                .map(|_| ())
                .map_err(engine_error)
        })
    }

    fn remove_retention_lease(&self, request: RemoveRetentionLeaseRequest) -> LeaderFuture<'_, ()> {
        let RemoveRetentionLeaseRequest { shard, lease_id } = request;
        self.on_shard(shard, move |_, engine| {
            if !engine.retention_leases().leases.contains_key(&lease_id) {
                return Err(LeaderError::RetentionLeaseNotFound(lease_id));
            }
            engine
                .remove_retention_lease(&lease_id)
                .map(|_| ())
                .map_err(engine_error)
        })
    }

    fn open_recovery_session(
        &self,
        request: OpenRecoverySessionRequest,
    ) -> LeaderFuture<'_, RecoverySessionInfo> {
        let shard = request.shard;
        let source = self.source.clone();
        self.on_shard(shard.clone(), move |index, engine| {
            source.open_session(shard, engine, index.metadata().mapping_version)
        })
    }

    fn read_file_chunk(&self, request: ReadFileChunkRequest) -> LeaderFuture<'_, FileChunk> {
        Box::pin(async move {
            let ReadFileChunkRequest {
                shard,
                session,
                file,
                offset,
                length,
            } = request;
            self.source
                .read_chunk(&shard, &session, &file, offset, length)
                .await
        })
    }

    fn close_recovery_session(&self, request: CloseRecoverySessionRequest) -> LeaderFuture<'_, ()> {
        Box::pin(async move {
            self.source.close_session(&request.session);
            Ok(())
        })
    }

    fn verify_shard(&self, request: VerifyShardRequest) -> LeaderFuture<'_, VerifyShardResponse> {
        Box::pin(async move {
            let index = self.index(&request.shard.index)?;
            let verify = self.verify.clone();
            tokio::task::spawn_blocking(move || {
                let VerifyShardRequest { shard, step } = request;
                match step {
                    VerifyStep::Open {
                        expected_history_uuid,
                        up_to_seq_no,
                        history_from,
                        undetermined_ids,
                    } => verify
                        .open(
                            shard,
                            &index,
                            &expected_history_uuid,
                            up_to_seq_no,
                            history_from,
                            &undetermined_ids,
                        )
                        .map(VerifyShardResponse::Opened),
                    VerifyStep::Digests { session, ranges } => {
                        verify.digests(&shard, &session, &ranges)
                    }
                    VerifyStep::Entries { session, range } => {
                        verify.entries(&shard, &session, range)
                    }
                    VerifyStep::Close { session } => {
                        verify.close(&session);
                        Ok(VerifyShardResponse::Closed)
                    }
                }
            })
            .await
            .map_err(|e| LeaderError::Unavailable(format!("leader task failed: {e}")))?
        })
    }

    fn failback_source(
        &self,
        request: FailbackSourceRequest,
    ) -> LeaderFuture<'_, FailbackSourceResponse> {
        match request {
            FailbackSourceRequest::Promotion { index } => Box::pin(async move {
                let index = self.index(&index)?;
                let metadata = index.metadata();
                let shards = index
                    .shards()
                    .iter()
                    .map(|engine| PromotedShardInfo {
                        history_uuid: engine.history_uuid(),
                        max_seq_no: engine.max_seq_no(),
                        global_checkpoint: engine.global_checkpoint(),
                        promotion: engine.promotion(),
                    })
                    .collect();
                Ok(FailbackSourceResponse::Promotion(PromotedIndexInfo {
                    index: metadata.name,
                    index_uuid: metadata.uuid,
                    mapping_version: metadata.mapping_version,
                    shards,
                }))
            }),
            FailbackSourceRequest::Documents {
                shard,
                expected_history_uuid,
                at_or_below,
                ids,
            } => self.on_shard(shard, move |_, engine| {
                if engine.history_uuid() != expected_history_uuid {
                    return Err(LeaderError::HistoryUuidMismatch {
                        expected: expected_history_uuid,
                        actual: engine.history_uuid(),
                    });
                }
                if ids.len() > MAX_FAILBACK_IDS
                    || ids.iter().map(String::len).sum::<usize>() > MAX_FAILBACK_IDS_BYTES
                {
                    return Err(LeaderError::InvalidRequest(format!(
                        "a failback asks for at most [{MAX_FAILBACK_IDS}] ids of \
                         [{MAX_FAILBACK_IDS_BYTES}] bytes at once"
                    )));
                }
                let mut documents = Vec::new();
                let mut bytes = 0usize;
                let mut answered = 0;
                for id in &ids {
                    if answered > 0 && bytes >= MAX_FAILBACK_DOCUMENTS_BYTES {
                        break;
                    }
                    answered += 1;
                    let Some(found) = engine.get(id).map_err(engine_error)? else {
                        continue;
                    };
                    if found.seq_no > at_or_below {
                        continue;
                    }
                    let source =
                        String::from_utf8(found.source).map_err(|_| LeaderError::Engine {
                            message: format!("the source of [{id}] is not UTF-8"),
                            retryable: false,
                        })?;
                    bytes += source.len() + id.len();
                    documents.push(FailbackDocument {
                        id: id.clone(),
                        seq_no: found.seq_no,
                        primary_term: found.primary_term.0,
                        version: found.version,
                        source,
                    });
                }
                Ok(FailbackSourceResponse::Documents {
                    answered,
                    documents,
                })
            }),
        }
    }
}
