//! [`InProcessLeaderClient`]: a [`LeaderClient`] over leader indices living in the same
//! process, so recovery and replication run (and are tested) without a network.
//!
//! Engine calls block (fsyncs, segment reads), so each runs on tokio's blocking pool; chunk
//! reads are memory copies out of the pinned files and run inline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tandem_engine::index::{Index, IndexMetadata};
use tandem_engine::indices::Indices;
use tandem_engine::shard::ChangesRequest;

use crate::leader_api::{
    AddRetentionLeaseRequest, CloseRecoverySessionRequest, FileChunk, IndexMetadataRequest,
    LeaderClient, LeaderError, LeaderFuture, LeaderIndexSummary, OpenRecoverySessionRequest,
    ReadFileChunkRequest, RecoverySessionInfo, RemoveRetentionLeaseRequest,
    RenewRetentionLeaseRequest, ShardChangesRequest, ShardChangesResponse, ShardId,
};
use crate::source::RecoverySource;

/// Longest long poll a changes request may ask for.
pub const MAX_POLL_TIMEOUT: Duration = Duration::from_secs(60);

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
    polls: Arc<LongPolls>,
}

/// The long polls in progress, so that [`InProcessLeaderClient::stop_long_polls`] can end
/// them: each waits on a thread of the blocking pool, which a server shutting down (or a
/// runtime being dropped) would otherwise wait for.
#[derive(Default)]
struct LongPolls {
    /// Set once the client stops serving long polls: new ones answer at once.
    stopped: AtomicBool,
    next_id: std::sync::atomic::AtomicU64,
    /// Poll id -> its cancel flag and the shard it waits on.
    waiting: parking_lot::Mutex<HashMap<u64, WaitingPoll>>,
}

/// A long poll's cancel flag, and the index and shard number it waits on.
type WaitingPoll = (Arc<AtomicBool>, Arc<Index>, usize);

impl InProcessLeaderClient {
    /// A client serving no index until [`register_index`](Self::register_index), with
    /// `source` for recovery sessions.
    pub fn new(source: Arc<RecoverySource>) -> InProcessLeaderClient {
        InProcessLeaderClient {
            indices: LeaderIndices::Registered(Arc::new(RwLock::new(HashMap::new()))),
            source,
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

    /// Ends every long poll in progress (each answers with what it has) and makes later ones
    /// answer at once: call it when the node stops serving, so that no blocking thread keeps
    /// waiting for writes that will not come.
    pub fn stop_long_polls(&self) {
        self.polls.stopped.store(true, Ordering::Release);
        let waiting: Vec<_> = self.polls.waiting.lock().values().cloned().collect();
        for (cancelled, index, shard) in waiting {
            cancelled.store(true, Ordering::Release);
            index.shards()[shard].wake_checkpoint_waiters();
        }
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

/// Cancels a long poll when the request future is dropped, and unregisters it.
struct CancelOnDrop {
    cancelled: Arc<AtomicBool>,
    index: Arc<Index>,
    shard: usize,
    polls: Arc<LongPolls>,
    id: u64,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.polls.waiting.lock().remove(&self.id);
        self.cancelled.store(true, Ordering::Release);
        self.index.shards()[self.shard].wake_checkpoint_waiters();
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
            // A long poll blocks a thread: if this future is dropped (the follower stopped),
            // the guard cancels the wait so the thread is back at once.
            let cancelled = Arc::new(AtomicBool::new(false));
            let id = self.polls.next_id.fetch_add(1, Ordering::Relaxed);
            self.polls
                .waiting
                .lock()
                .insert(id, (cancelled.clone(), index.clone(), shard));
            let _cancel_on_drop = CancelOnDrop {
                cancelled: cancelled.clone(),
                index: index.clone(),
                shard,
                polls: self.polls.clone(),
                id,
            };
            // Checked after registering, so that `stop_long_polls` cannot miss this poll.
            let poll_timeout = if self.polls.stopped.load(Ordering::Acquire) {
                Duration::ZERO
            } else {
                request.changes.poll_timeout.min(MAX_POLL_TIMEOUT)
            };
            let engine_request = ChangesRequest {
                poll_timeout,
                ..request.changes
            };
            let served = index.clone();
            let response = tokio::task::spawn_blocking(move || {
                served.shards()[shard]
                    .shard_changes_or_cancel(&engine_request, &cancelled)
                    .map_err(engine_error)
            })
            .await
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
}
