//! Failback: the old leader's index becomes a follower of the index promoted in its place,
//! without copying what both already hold (DESIGN.md §10; `POST /{index}/_ccr/failback`).
//!
//! Per shard, the *shared point* is the promoted shard's local checkpoint at its promotion:
//! every operation at or below it came from this index, so both histories hold it. It is
//! checked before anything changes: the promoted index followed this index (same uuid), each
//! shard's history uuid is the one it followed, this shard holds every operation up to the
//! point, the operations the promotion recorded at the point are the ones this shard holds
//! there, and this shard still holds its history above the point. Then, per shard:
//! 1. every operation this shard holds above the point that the promoted shard does not hold
//!    as it is (the acknowledged writes that were never shipped) is written to
//!    `<data>/divergent/<index>/<shard>-<failback id>.ndjson`, one operation a line;
//! 2. the shard is rolled back to the point
//!    ([`ShardEngine::roll_back_to`](tandem_engine::shard::ShardEngine::roll_back_to)), the
//!    ids touched above it getting the promoted shard's live versions at the point, fetched
//!    by id;
//! 3. once every shard is rolled back, the index follows the promoted one from the point + 1,
//!    under a follower lease added at once (the promotion's lease kept the history until
//!    then, and is removed).
//!
//! Durability: the failback is recorded (`ccr_failbacks.json`) before the index is closed,
//! and each shard's outcome once its rollback is committed; the index stays closed, and its
//! open is refused, until the failback completes. A failback asked again resumes where the
//! last one stopped: a divergent file already written is kept, and a rollback run again
//! finds nothing left to remove.
//!
//! Bounds: the operations above the point of one shard are read into memory, at most
//! [`MAX_DIVERGENT_BYTES`]; ids are fetched [`MAX_FAILBACK_IDS`] at a time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tandem_engine::index::Index;
use tandem_engine::shard::verify::VerifyEntry;
use tandem_engine::shard::{ChangesRequest, ShardEngine, ShardPromotion};
use tandem_engine::{Operation, OperationKind, PrimaryTerm, SeqNo};
use tandem_recovery::leader_api::{
    FailbackSourceRequest, FailbackSourceResponse, LeaderClient, ShardChangesRequest, ShardId,
    MAX_FAILBACK_IDS, MAX_FAILBACK_IDS_BYTES,
};
use tandem_recovery::{
    AddRetentionLeaseRequest, IndexMetadataRequest, LeaderError, RemoveRetentionLeaseRequest,
    RenewRetentionLeaseRequest,
};

use super::{on_blocking_pool, Follower, FollowerIndices, FollowerMetadata};
use crate::error::CcrError;
use crate::leader::follower_lease_id;
use crate::params::FollowParameters;
use crate::state_file;

/// File of the failbacks in progress.
pub(super) const FAILBACK_FILE: &str = "ccr_failbacks.json";

/// Directory (in the data directory) of the divergent operations files.
pub const DIVERGENT_DIR: &str = "divergent";

/// The most bytes of operations above the shared point one shard's failback reads.
pub const MAX_DIVERGENT_BYTES: usize = 256 * 1024 * 1024;

/// A failback (`POST /{index}/_ccr/failback`).
#[derive(Clone, Debug)]
pub struct FailbackRequest {
    /// The old leader's index, on this cluster.
    pub index: String,
    /// Alias of the cluster holding the promoted index.
    pub remote_cluster: String,
    /// The promoted index.
    pub leader_index: String,
    /// Follow parameters of the follow that ends the failback.
    pub parameters: FollowParameters,
    /// When the histories cannot be reconciled, export what this index holds above the
    /// last point they provably share, delete it and copy the promoted index whole (a
    /// remote recovery), instead of refusing. An index the promoted one never followed is
    /// refused whatever this says.
    pub allow_full_recovery: bool,
}

/// What a failback did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailbackResponse {
    /// The index, now following.
    pub index: String,
    /// The promoted index's cluster.
    pub remote_cluster: String,
    /// The promoted index, now its leader.
    pub leader_index: String,
    /// True when the histories could not be reconciled and the index was copied whole: the
    /// divergent files then hold everything it held above the last point both provably
    /// shared, which may include writes the promoted index has too.
    pub full_recovery: bool,
    /// Per shard, by number.
    pub shards: Vec<FailedBackShard>,
}

/// What the failback did to one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedBackShard {
    /// The shard number.
    pub shard: u32,
    /// The last sequence number both histories share: the shard follows from the next one.
    pub shared_seq_no: i64,
    /// Operations above the shared point removed by the rollback.
    pub rolled_back_operations: u64,
    /// Of them, the writes the promoted index never received (in `divergent_file`).
    pub divergent_operations: u64,
    /// The file holding them (absent when there were none).
    pub divergent_file: Option<String>,
    /// Documents whose state at the shared point was fetched from the promoted index.
    pub restored_documents: u64,
}

/// A failback in progress, as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FailbackState {
    /// Names this failback's divergent files.
    id: String,
    remote_cluster: String,
    leader_index: String,
    leader_index_uuid: String,
    /// Per shard, the promoted shard's history uuid (followed from now on).
    leader_history_uuids: Vec<String>,
    /// Per shard, the promoted shard's max_seq_no at the promotion: above the shared point
    /// and up to it, it holds operations it received out of order.
    promoted_max_seq_nos: Vec<i64>,
    /// Per shard, the shared point.
    shared_seq_nos: Vec<i64>,
    /// The lease the promotion added on each promoted shard.
    promotion_lease_id: Option<String>,
    /// Follow parameters, as Elasticsearch writes them.
    parameters: Map<String, Value>,
    /// Per shard, its outcome once its rollback is committed.
    shards: Vec<Option<FailedBackShard>>,
    /// The histories could not be reconciled: the index is exported above the shared
    /// points, deleted and recovered whole.
    #[serde(default)]
    full_recovery: bool,
}

impl FollowerIndices {
    /// Fails the old leader's index `request.index` back from the index promoted in its
    /// place (see the module documentation): it ends as a follower of the promoted index,
    /// holding the same documents and history from the shared point on, and the writes the
    /// promoted index never received are in the divergent files the answer names. Asked
    /// again after a failure, it resumes.
    pub async fn failback(
        self: &Arc<Self>,
        request: FailbackRequest,
    ) -> Result<FailbackResponse, CcrError> {
        let name = request.index.clone();
        let client = self.remotes.get(&request.remote_cluster)?;
        let mut failbacks = self.failbacks.lock().await;
        let state = match failbacks.get(&name) {
            Some(state) => {
                if state.remote_cluster != request.remote_cluster
                    || state.leader_index != request.leader_index
                {
                    return Err(CcrError::FailbackInProgress {
                        index: name,
                        remote_cluster: state.remote_cluster.clone(),
                        leader_index: state.leader_index.clone(),
                    });
                }
                state.clone()
            }
            None => {
                let state = self.plan_failback(&request, client.as_ref()).await?;
                failbacks.insert(name.clone(), state.clone());
                self.persist_failbacks(&failbacks).await?;
                state
            }
        };
        let response = if state.full_recovery {
            self.run_full_recovery(&name, state, client, &mut failbacks)
                .await?
        } else {
            self.run_failback(&name, state, client, &mut failbacks)
                .await?
        };
        failbacks.remove(&name);
        self.persist_failbacks(&failbacks).await?;
        tracing::info!(index = %name, ?response, "failed back");
        Ok(response)
    }

    /// At a start: a failback whose index follows already completed (only its record's
    /// removal was lost) and is forgotten; the index of any other stays closed until the
    /// failback is asked again (a crash may have come before the close was durable).
    pub(super) async fn settle_failbacks(
        &self,
        followers: &BTreeMap<String, Follower>,
    ) -> Result<(), CcrError> {
        let mut failbacks = self.failbacks.lock().await;
        let before = failbacks.len();
        failbacks.retain(|name, _| !followers.contains_key(name));
        if failbacks.len() != before {
            self.persist_failbacks(&failbacks).await?;
        }
        for name in failbacks.keys() {
            if self.indices.metadata(name).is_ok() {
                self.ensure_closed(name, "closing an index whose failback is incomplete")
                    .await?;
                tracing::info!(index = %name, "closed until its failback is asked for again and completes");
            }
        }
        Ok(())
    }

    /// The failback in progress of `index`, if one is: its index stays closed until it
    /// completes (the node refuses to open it).
    pub async fn check_not_failing_back(&self, index: &str) -> Result<(), CcrError> {
        match self.failbacks.lock().await.get(index) {
            Some(state) => Err(CcrError::FailbackInProgress {
                index: index.to_string(),
                remote_cluster: state.remote_cluster.clone(),
                leader_index: state.leader_index.clone(),
            }),
            None => Ok(()),
        }
    }

    pub(super) fn persist_failbacks(
        &self,
        failbacks: &BTreeMap<String, FailbackState>,
    ) -> state_file::StoreOffThread {
        state_file::store_off_thread(
            self.storage().clone(),
            &self.state_dir,
            FAILBACK_FILE,
            failbacks,
        )
    }

    /// Checks that `request.index` can fail back by operations from the promoted index, and
    /// finds each shard's shared point (see the module documentation); changes nothing.
    async fn plan_failback(
        &self,
        request: &FailbackRequest,
        client: &dyn LeaderClient,
    ) -> Result<FailbackState, CcrError> {
        let name = &request.index;
        self.check_not_recovering(name)?;
        if self.followers.lock().await.contains_key(name) {
            return Err(CcrError::FailbackRefused {
                index: name.clone(),
                reason: "it is a follower index; a failback turns the old leader's index into \
                         a follower of the index promoted in its place"
                    .to_string(),
            });
        }
        let parameters = request.parameters.to_es_json();
        request.parameters.resolve()?;
        let index = self.indices.get(name)?;
        let refused = |reason: String| CcrError::FailbackRefused {
            index: name.clone(),
            reason,
        };
        let promoted = match client
            .failback_source(FailbackSourceRequest::Promotion {
                index: request.leader_index.clone(),
            })
            .await?
        {
            FailbackSourceResponse::Promotion(info) => info,
            _ => {
                return Err(LeaderError::InvalidResponse(
                    "a failback promotion answer of another kind".to_string(),
                )
                .into())
            }
        };
        let remote = format!("{}:{}", request.remote_cluster, request.leader_index);
        let uuid = index.metadata().uuid;
        if promoted.shards.len() != index.shards().len() {
            return Err(refused(format!(
                "[{remote}] has [{}] shards and [{name}] [{}]",
                promoted.shards.len(),
                index.shards().len()
            )));
        }
        let mut shared_seq_nos = Vec::new();
        let mut diverged = Vec::new();
        let mut promotion_lease_id = None;
        for (number, (shard, info)) in index.shards().iter().zip(&promoted.shards).enumerate() {
            let followed = info
                .promotion
                .as_ref()
                .and_then(|promotion| promotion.leader.as_ref().map(|leader| (promotion, leader)));
            let Some((promotion, leader)) = followed else {
                return Err(refused(format!(
                    "[{remote}] was not promoted from a follower of [{name}]: it never \
                     followed it"
                )));
            };
            if leader.leader_index_uuid != uuid {
                return Err(refused(format!(
                    "[{remote}] was promoted from a follower of index [{}] with uuid [{}], \
                     not of [{name}] (uuid [{uuid}]): it never followed this index",
                    leader.leader_index, leader.leader_index_uuid
                )));
            }
            match check_shared_history(shard, number, promotion, &leader.leader_history_uuid) {
                Ok(()) => shared_seq_nos.push(promotion.local_checkpoint.0),
                Err(reason) => {
                    diverged.push(reason);
                    shared_seq_nos.push(provably_shared(shard, promotion));
                }
            }
            promotion_lease_id = promotion_lease_id.or(promotion.lease_id.clone());
        }
        if !diverged.is_empty() && !request.allow_full_recovery {
            return Err(refused(format!(
                "{}; to copy [{remote}] whole instead (what this index holds above the last \
                 point both provably share is exported first), ask again with \
                 [allow_full_recovery]",
                diverged.join("; ")
            )));
        }
        Ok(FailbackState {
            full_recovery: !diverged.is_empty(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            remote_cluster: request.remote_cluster.clone(),
            leader_index: request.leader_index.clone(),
            leader_index_uuid: promoted.index_uuid.clone(),
            leader_history_uuids: promoted
                .shards
                .iter()
                .map(|shard| shard.history_uuid.clone())
                .collect(),
            promoted_max_seq_nos: promoted
                .shards
                .iter()
                .map(|shard| shard.promotion.as_ref().map_or(-1, |p| p.max_seq_no.0))
                .collect(),
            shared_seq_nos,
            promotion_lease_id,
            parameters,
            shards: vec![None; promoted.shards.len()],
        })
    }

    /// Runs (or resumes) the recorded failback `state` of `name` to its end: the index
    /// follows the promoted one when this returns.
    async fn run_failback(
        &self,
        name: &str,
        mut state: FailbackState,
        client: Arc<dyn LeaderClient>,
        failbacks: &mut BTreeMap<String, FailbackState>,
    ) -> Result<FailbackResponse, CcrError> {
        let started = std::time::Instant::now();
        let took = |step: &str| log_step(name, None, started, step);
        // An earlier run that got as far as following: its tasks stop before the close.
        self.index_closing(name).await;
        // Closed, and its shards followers: the private open below opens them so (no gap is
        // filled, no write taken), and so does the open at the end.
        self.ensure_closed(name, "closing the failing-back index")
            .await?;
        took("closed");
        let indices = self.indices.clone();
        let opening = name.to_string();
        let index = on_blocking_pool("opening the failing-back index", move || {
            let dir = indices.with_closed_index(&opening, |dir, metadata| {
                Index::set_follower_markers(
                    &**indices.storage(),
                    dir,
                    metadata.settings.number_of_shards,
                    true,
                )?;
                Ok(dir.to_path_buf())
            })?;
            Index::open_for_maintenance(indices.storage(), &dir)
        })
        .await?;
        let index = Arc::new(index);
        took("opened privately");
        let uuid = index.metadata().uuid;
        let outcome = self
            .roll_back_shards(name, &index, &mut state, client.as_ref(), failbacks)
            .await;
        // The leader's mappings and aliases, so that its next changes apply on top of them.
        let leader_metadata = match outcome {
            Ok(()) => Some(
                client
                    .index_metadata(IndexMetadataRequest::new(&state.leader_index))
                    .await,
            ),
            Err(_) => None,
        };
        // The promoted index's leases from when it followed this one kept the history the
        // rollback read; this index follows it now, and they go.
        let stale = format!(
            "/{}/{}-following-",
            state.leader_index, state.leader_index_uuid
        );
        if let Some(Err(error)) = &leader_metadata {
            // The follow tasks fetch it when the leader's next changes say it is newer.
            tracing::warn!(index = %name, %error, "the promoted index's mappings could not be read; they are fetched when followed");
        }
        let rolled_back = outcome.is_ok();
        let applied = {
            // The last reference: the close below ends the engines (and their writers)
            // before the index is opened as a follower.
            on_blocking_pool("closing the rolled-back index", move || {
                for shard in index.shards().iter().filter(|_| rolled_back) {
                    for id in shard.retention_leases().leases.into_keys() {
                        if id.contains(&stale) {
                            shard.remove_retention_lease(&id)?;
                        }
                    }
                }
                if let Some(Ok(leader)) = &leader_metadata {
                    index.apply_leader_mappings(leader.mappings.clone(), leader.mapping_version)?;
                    index.apply_leader_metadata(leader)?;
                }
                match Arc::try_unwrap(index) {
                    Ok(index) => index.close(),
                    Err(_) => Err(tandem_engine::EngineError::Closed(
                        "the rolled-back index is still in use".to_string(),
                    )),
                }
            })
            .await
        };
        took("rolled back");
        outcome?;
        applied?;
        let shards: Vec<FailedBackShard> = state.shards.iter().flatten().cloned().collect();
        let lease_id = follower_lease_id(
            &self.cluster_name,
            name,
            &uuid,
            &state.remote_cluster,
            &state.leader_index,
            &state.leader_index_uuid,
        );
        for shard in &shards {
            let leader_shard = ShardId::new(state.leader_index.clone(), shard.shard);
            let retaining = SeqNo(shard.shared_seq_no + 1);
            let added = client
                .add_retention_lease(AddRetentionLeaseRequest::new(
                    leader_shard.clone(),
                    lease_id.clone(),
                    retaining,
                    "ccr",
                ))
                .await;
            match added {
                Ok(()) => {}
                Err(LeaderError::RetentionLeaseAlreadyExists(_)) => {
                    // Added by an earlier run of this failback. It may already retain from
                    // further on (the follow that run started renewed it from the
                    // follower's persisted checkpoint, which this shard holds): then it is
                    // left as it is.
                    let renewed = client
                        .renew_retention_lease(RenewRetentionLeaseRequest::new(
                            leader_shard.clone(),
                            lease_id.clone(),
                            retaining,
                        ))
                        .await;
                    if let Err(error) = renewed {
                        tracing::info!(lease = %lease_id, %error, "kept the follower lease of an earlier failback run");
                    }
                }
                Err(error) => return Err(error.into()),
            }
            if let Some(promotion_lease) = &state.promotion_lease_id {
                let removed = client
                    .remove_retention_lease(RemoveRetentionLeaseRequest::new(
                        leader_shard,
                        promotion_lease.clone(),
                    ))
                    .await;
                if let Err(error) = removed {
                    tracing::info!(lease = %promotion_lease, %error, "the promotion's lease stays until it expires");
                }
            }
        }
        let metadata = FollowerMetadata {
            remote_cluster: state.remote_cluster.clone(),
            leader_index: state.leader_index.clone(),
            leader_index_uuid: state.leader_index_uuid.clone(),
            leader_history_uuids: state.leader_history_uuids.clone(),
            parameters: state.parameters.clone(),
            paused: false,
            lease_id,
            promoting: None,
            failed_back: Some(shards.clone()),
        };
        took("leases");
        // Opened (a follower, every shard rolled back) before the follow state records it: a
        // crash in between leaves an open index with an incomplete failback, which the next
        // start closes again (see `settle_failbacks`).
        let mut followers = self.followers.lock().await;
        let indices = self.indices.clone();
        let opening = name.to_string();
        on_blocking_pool("opening the failed-back index", move || {
            indices.open_index(&opening)
        })
        .await?;
        followers.insert(
            name.to_string(),
            Follower {
                metadata: metadata.clone(),
                tasks: Vec::new(),
            },
        );
        self.persist(&followers).await?;
        let tasks = self.start_tasks(name, &metadata)?;
        if let Some(follower) = followers.get_mut(name) {
            follower.tasks = tasks;
        }
        took("following");
        Ok(FailbackResponse {
            index: name.to_string(),
            remote_cluster: state.remote_cluster.clone(),
            leader_index: state.leader_index.clone(),
            full_recovery: false,
            shards,
        })
    }

    /// The failback of histories that cannot be reconciled (`allow_full_recovery`): every
    /// operation each shard holds above its provably shared point is exported, the index
    /// is deleted, and the promoted index is followed from a copy of its files.
    async fn run_full_recovery(
        self: &Arc<Self>,
        name: &str,
        mut state: FailbackState,
        client: Arc<dyn LeaderClient>,
        failbacks: &mut BTreeMap<String, FailbackState>,
    ) -> Result<FailbackResponse, CcrError> {
        if self.indices.metadata(name).is_ok() && !self.followers.lock().await.contains_key(name) {
            let index = self.indices.get(name)?;
            for number in 0..state.shards.len() {
                if state.shards[number].is_some() {
                    continue;
                }
                let point = SeqNo(state.shared_seq_nos[number]);
                let shard_index = number;
                let held = {
                    let index = index.clone();
                    on_blocking_pool("reading the operations to export", move || {
                        let shard = &index.shards()[shard_index];
                        shard.operations_present(
                            SeqNo(point.0 + 1),
                            shard.max_seq_no(),
                            usize::MAX,
                            MAX_DIVERGENT_BYTES,
                        )
                    })
                    .await?
                };
                let file = self.divergent_file(name, number as u32, &state.id);
                let exported: Vec<&Operation> = held
                    .iter()
                    .map(|op| &**op)
                    .filter(|op| !matches!(op.kind, OperationKind::NoOp { .. }))
                    .collect();
                if !exported.is_empty() {
                    write_divergent(self, &file, &exported).await?;
                }
                state.shards[number] = Some(FailedBackShard {
                    shard: number as u32,
                    shared_seq_no: point.0,
                    rolled_back_operations: held.len() as u64,
                    divergent_operations: exported.len() as u64,
                    divergent_file: (!exported.is_empty()).then(|| file.display().to_string()),
                    restored_documents: 0,
                });
                failbacks.insert(name.to_string(), state.clone());
                self.persist_failbacks(failbacks).await?;
            }
            drop(index);
            let indices = self.indices.clone();
            let deleting = name.to_string();
            on_blocking_pool("deleting the diverged index", move || {
                indices.delete(&deleting)
            })
            .await?;
        }
        let following = self.followers.lock().await.contains_key(name);
        if !following {
            drop(client);
            self.follow(crate::follower_indices::FollowRequest {
                remote_cluster: state.remote_cluster.clone(),
                leader_index: state.leader_index.clone(),
                follower_index: name.to_string(),
                parameters: FollowParameters::from_es_json(&state.parameters)?,
                wait_for_active_shards: true,
                settings: Value::Null,
            })
            .await?;
        }
        let shards: Vec<FailedBackShard> = state.shards.iter().flatten().cloned().collect();
        if let Some(follower) = self.followers.lock().await.get_mut(name) {
            follower.metadata.failed_back = Some(shards.clone());
        }
        self.persist(&*self.followers.lock().await).await?;
        Ok(FailbackResponse {
            index: name.to_string(),
            remote_cluster: state.remote_cluster.clone(),
            leader_index: state.leader_index.clone(),
            full_recovery: true,
            shards,
        })
    }

    /// Where the divergent operations of shard `number` of `name` go, for failback `id`.
    fn divergent_file(&self, name: &str, number: u32, id: &str) -> PathBuf {
        self.state_dir
            .join(DIVERGENT_DIR)
            .join(name)
            .join(format!("{number}-{id}.ndjson"))
    }

    /// Exports and rolls back every shard not done yet, persisting each outcome.
    async fn roll_back_shards(
        &self,
        name: &str,
        index: &Arc<Index>,
        state: &mut FailbackState,
        client: &dyn LeaderClient,
        failbacks: &mut BTreeMap<String, FailbackState>,
    ) -> Result<(), CcrError> {
        for number in 0..state.shards.len() {
            if state.shards[number].is_some() {
                continue;
            }
            let outcome = self
                .roll_back_shard(name, index, number as u32, state, client)
                .await?;
            state.shards[number] = Some(outcome);
            failbacks.insert(name.to_string(), state.clone());
            self.persist_failbacks(failbacks).await?;
        }
        Ok(())
    }

    /// Steps 1 and 2 of the module documentation for one shard.
    async fn roll_back_shard(
        &self,
        name: &str,
        index: &Arc<Index>,
        number: u32,
        state: &FailbackState,
        client: &dyn LeaderClient,
    ) -> Result<FailedBackShard, CcrError> {
        let shard_index = number as usize;
        let started = std::time::Instant::now();
        let took = |step: &str| log_step(name, Some(number), started, step);
        let point = SeqNo(state.shared_seq_nos[shard_index]);
        let leader_shard = ShardId::new(state.leader_index.clone(), number);
        let history_uuid = state.leader_history_uuids[shard_index].clone();
        let above = {
            let index = index.clone();
            on_blocking_pool("reading the operations above the shared point", move || {
                operations_above(&index.shards()[shard_index], point)
            })
            .await?
        };
        took("read the operations above the point");
        let file = self.divergent_file(name, number, &state.id);
        let exists = self
            .storage()
            .exists(&file)
            .map_err(|source| CcrError::Io {
                path: file.clone(),
                source,
            })?;
        let divergent_operations = if exists || above.is_empty() {
            // Written by an earlier run of this failback (its rollback may have removed them
            // since): the file is the record.
            count_lines(self, &file)?
        } else {
            let until = SeqNo(state.promoted_max_seq_nos[shard_index]);
            let received =
                received_above(client, &leader_shard, &history_uuid, point, until).await?;
            let divergent: Vec<&Operation> = above
                .iter()
                .filter(|op| !matches!(op.kind, OperationKind::NoOp { .. }))
                .filter(|op| received.get(&op.seq_no.0) != Some(&VerifyEntry::of_operation(op)))
                .collect();
            if !divergent.is_empty() {
                write_divergent(self, &file, &divergent).await?;
            }
            divergent.len() as u64
        };
        took("wrote the divergent operations");
        let mut ids: Vec<String> = above
            .iter()
            .filter_map(|op| op.id().map(str::to_string))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        ids.sort();
        let restored =
            restored_documents(client, &leader_shard, &history_uuid, point, &ids).await?;
        took("fetched the restored documents");
        let restored_count = restored.len() as u64;
        let rolled_back = above.len() as u64;
        {
            let index = index.clone();
            on_blocking_pool("rolling the shard back", move || {
                index.shards()[shard_index].roll_back_to(point, &restored)
            })
            .await?;
        }
        took("rolled back");
        Ok(FailedBackShard {
            shard: number,
            shared_seq_no: point.0,
            rolled_back_operations: rolled_back,
            divergent_operations,
            divergent_file: (divergent_operations > 0).then(|| file.display().to_string()),
            restored_documents: restored_count,
        })
    }
}

/// Logs that the failback of `index` (info), or of its shard `shard` (debug), finished `step`
/// after the time since `started`.
fn log_step(index: &str, shard: Option<u32>, started: std::time::Instant, step: &str) {
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match shard {
        None => tracing::info!(index, step, elapsed_ms, "failback"),
        Some(shard) => tracing::debug!(index, shard, step, elapsed_ms, "failback of a shard"),
    }
}

/// The highest sequence number up to which `shard` provably shares the promoted shard's
/// history when the check of the whole point failed: the highest operation of the
/// promotion's boundary it holds as it is, else just below what it retains (everything it
/// holds is then exported).
fn provably_shared(shard: &ShardEngine, promotion: &ShardPromotion) -> i64 {
    let matching = promotion.boundary.iter().find(|entry| {
        shard
            .operations_present(SeqNo(entry.seq_no), SeqNo(entry.seq_no), 1, usize::MAX)
            .ok()
            .and_then(|found| {
                found
                    .first()
                    .map(|op| VerifyEntry::of_operation(op) == **entry)
            })
            .unwrap_or(false)
    });
    match matching {
        Some(entry)
            if shard.history_uuid()
                == promotion
                    .leader
                    .as_ref()
                    .map_or("", |leader| leader.leader_history_uuid.as_str()) =>
        {
            entry.seq_no
        }
        _ => shard.min_retained_seq_no().0 - 1,
    }
}

/// Checks that `shard` (number `number`) shares its history with the promoted shard up to
/// the promotion's checkpoint; the reason why not otherwise.
fn check_shared_history(
    shard: &ShardEngine,
    number: usize,
    promotion: &ShardPromotion,
    followed_history_uuid: &str,
) -> Result<(), String> {
    let point = promotion.local_checkpoint;
    if shard.history_uuid() != followed_history_uuid {
        return Err(format!(
            "shard [{number}] has history [{}], the promoted shard followed history \
             [{followed_history_uuid}]: the index was restored or re-created since",
            shard.history_uuid()
        ));
    }
    if shard.max_seq_no() < point {
        return Err(format!(
            "shard [{number}] holds operations only up to [{}], below the shared point \
             [{point}] the promoted shard received from it: its history diverged (restored \
             from an older copy?)",
            shard.max_seq_no()
        ));
    }
    for entry in &promotion.boundary {
        let found = shard
            .operations_present(SeqNo(entry.seq_no), SeqNo(entry.seq_no), 1, usize::MAX)
            .map_err(|error| format!("shard [{number}]: {error}"))?;
        if let Some(op) = found.first() {
            let own = VerifyEntry::of_operation(op);
            if own != *entry {
                return Err(format!(
                    "shard [{number}] holds another operation at seq_no [{}] (term [{}], \
                     [{}] of [{}]) than the promoted shard received from it (term [{}], [{}] \
                     of [{}]): their histories diverged below the shared point [{point}]",
                    entry.seq_no,
                    own.primary_term,
                    own.op_type,
                    own.id,
                    entry.primary_term,
                    entry.op_type,
                    entry.id
                ));
            }
        }
    }
    if shard.min_retained_seq_no().0 > point.0 + 1 {
        return Err(format!(
            "shard [{number}] no longer holds its history above the shared point [{point}] \
             (it retains operations from [{}] only: the follower's retention lease expired?)",
            shard.min_retained_seq_no()
        ));
    }
    Ok(())
}

/// Every operation `shard` holds above `point`, in order (its history above the point is
/// complete: the plan checked its retention).
fn operations_above(shard: &ShardEngine, point: SeqNo) -> tandem_engine::Result<Vec<Operation>> {
    let max = shard.max_seq_no();
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut from = SeqNo(point.0 + 1);
    while from <= max {
        let batch = shard.changes(from, max, 4096, 8 * 1024 * 1024)?;
        let Some(last) = batch.last() else {
            break;
        };
        from = SeqNo(last.seq_no.0 + 1);
        for op in batch {
            bytes += op.size_in_bytes();
            if bytes > MAX_DIVERGENT_BYTES {
                return Err(tandem_engine::EngineError::InvalidArgument(format!(
                    "the operations above the shared point [{point}] exceed \
                     [{MAX_DIVERGENT_BYTES}] bytes"
                )));
            }
            out.push((*op).clone());
        }
    }
    Ok(out)
}

/// The operations the promoted shard holds in `(point, until]` (received from the old
/// leader before the promotion, or no-ops it filled gaps with), by seq_no.
async fn received_above(
    client: &dyn LeaderClient,
    shard: &ShardId,
    history_uuid: &str,
    point: SeqNo,
    until: SeqNo,
) -> Result<HashMap<i64, VerifyEntry>, CcrError> {
    let mut received = HashMap::new();
    let mut from = SeqNo(point.0 + 1);
    while from <= until {
        let response = client
            .shard_changes(ShardChangesRequest {
                shard: shard.clone(),
                changes: ChangesRequest {
                    from_seq_no: from,
                    max_operation_count: (until.0 - from.0 + 1).min(4096) as usize,
                    max_batch_size: 8 * 1024 * 1024,
                    poll_timeout: std::time::Duration::ZERO,
                    expected_history_uuid: Some(history_uuid.to_string()),
                },
            })
            .await?;
        let Some(last) = response.changes.operations.last() else {
            break;
        };
        from = SeqNo(last.seq_no.0 + 1);
        for op in &response.changes.operations {
            if op.seq_no <= until {
                received.insert(op.seq_no.0, VerifyEntry::of_operation(op));
            }
        }
    }
    Ok(received)
}

/// The promoted shard's live versions, at or below `point`, of `ids`.
async fn restored_documents(
    client: &dyn LeaderClient,
    shard: &ShardId,
    history_uuid: &str,
    point: SeqNo,
    ids: &[String],
) -> Result<Vec<Operation>, CcrError> {
    let mut restored = Vec::new();
    let mut next = 0;
    while next < ids.len() {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while next + batch.len() < ids.len() && batch.len() < MAX_FAILBACK_IDS {
            let id = &ids[next + batch.len()];
            if bytes + id.len() > MAX_FAILBACK_IDS_BYTES && !batch.is_empty() {
                break;
            }
            bytes += id.len();
            batch.push(id.clone());
        }
        let asked = batch.len();
        let answer = client
            .failback_source(FailbackSourceRequest::Documents {
                shard: shard.clone(),
                expected_history_uuid: history_uuid.to_string(),
                at_or_below: point,
                ids: batch,
            })
            .await?;
        let FailbackSourceResponse::Documents {
            answered,
            documents,
        } = answer
        else {
            return Err(LeaderError::InvalidResponse(
                "a failback documents answer of another kind".to_string(),
            )
            .into());
        };
        next += answered.clamp(1, asked);
        restored.extend(documents.into_iter().map(|document| Operation {
            seq_no: document.seq_no,
            primary_term: PrimaryTerm(document.primary_term),
            version: document.version,
            kind: OperationKind::Index {
                id: document.id,
                source: document.source.into_bytes(),
            },
        }));
    }
    Ok(restored)
}

/// Writes the divergent operations file `file` atomically (temp file, fsync, rename, fsync
/// of the directory), its directory created durably first.
async fn write_divergent(
    followers: &FollowerIndices,
    file: &Path,
    operations: &[&Operation],
) -> Result<(), CcrError> {
    let mut bytes = Vec::new();
    for op in operations {
        let source = op.source().map(|source| {
            serde_json::from_slice::<Value>(source)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(source).into_owned()))
        });
        let mut line = json!({
            "seq_no": op.seq_no.0,
            "primary_term": op.primary_term.0,
            "version": op.version,
            "op_type": op.op_type().name(),
            "_id": op.id(),
        });
        if let Some(source) = source {
            line["_source"] = source;
        }
        serde_json::to_writer(&mut bytes, &line).map_err(|source| CcrError::Encode {
            path: file.to_path_buf(),
            source,
        })?;
        bytes.push(b'\n');
    }
    let storage = followers.storage().clone();
    let path = file.to_path_buf();
    on_blocking_pool("writing the divergent operations", move || {
        if let Some(dir) = path.parent() {
            tandem_engine::durable_file::create_dir_all(&*storage, dir)?;
        }
        Ok(tandem_engine::durable_file::replace_atomically(
            &*storage, &path, &bytes,
        )?)
    })
    .await
}

/// Lines of the divergent file `file` (0 when it does not exist).
fn count_lines(followers: &FollowerIndices, file: &Path) -> Result<u64, CcrError> {
    match followers.storage().read(file) {
        Ok(bytes) => Ok(bytes.iter().filter(|byte| **byte == b'\n').count() as u64),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(CcrError::Io {
            path: file.to_path_buf(),
            source,
        }),
    }
}
