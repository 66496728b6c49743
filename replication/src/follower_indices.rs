//! `FollowerIndices`: the follower indices of one cluster and their lifecycle, as a library API
//! a search service embeds (the node maps the `_ccr` REST endpoints onto it): follow (remote
//! recovery of every shard, then one [`ShardFollowTask`] per shard), pause, resume, unfollow,
//! follow info and stats; and, on a leader, forget-follower.
//!
//! Guarantees:
//! - the follow state (leader, parameters, paused or not) is persisted atomically in
//!   `<state_dir>/ccr_followers.json` before a request returns, and [`FollowerIndices::open`]
//!   restarts the tasks of every follower that was not paused;
//! - a follower index refuses direct writes and mapping changes for as long as it follows;
//!   `unfollow` is the only way back to a normal index, and only from paused + closed;
//! - no task outlives a pause, an unfollow or [`FollowerIndices::shutdown`];
//! - a follower index exists from the moment its follow is accepted: while its remote recovery
//!   runs it is *recovering* (shown by follow info, follow stats and the recoveries), and
//!   [`FollowerIndices::cancel_recovery`] (a `DELETE` of the index) stops the recovery within
//!   one poll of its task, removes its files and its leases on the leader; pause, unfollow
//!   and close answer that it is recovering ([`CcrError::StillRecovering`]), as only a
//!   delete stops a recovery. A recovery that fails leaves the index *failed*, with the
//!   reason as the fatal exception of its follow stats and in its follow info, until it is
//!   deleted; the failed state is not persisted (after a restart the name is free again).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tandem_engine::index::{Index, IndexMetadata, IndexSettings};
use tandem_engine::indices::{Indices, ShardReservation};
use tandem_engine::mapping::DocumentMapper;
use tandem_engine::shard::{ChangesRequest, FollowedLeader, PromotionLease, PromotionRequest};
use tandem_engine::storage::StorageRef;
use tandem_engine::SeqNo;
use tandem_recovery::leader_api::{LeaderClient, ShardChangesRequest, ShardId};
use tandem_recovery::progress::{RecoveryProgress, RecoveryProgressSnapshot};
use tandem_recovery::target::{RecoveryRequest, RecoverySettings, RecoveryTarget};
use tandem_recovery::{IndexMetadataRequest, LeaderError};
use tokio::sync::Mutex;

use crate::error::CcrError;
use crate::lag::{Lag, LagClock};
use crate::leader::follower_lease_id;
use crate::lease_cleanup::{LeaseCleanup, PendingLeaseRemoval};
use crate::params::{FollowParameters, ResolvedFollowParameters};
use crate::remote::RemoteClusters;
use crate::state_file;
use crate::stats::{ErrorBody, IndexFollowStats, ShardFollowStats};
use crate::task::{
    FollowerLease, ShardFollowTask, ShardFollowTaskConfig, DEFAULT_LEASE_RENEW_INTERVAL,
};
use crate::verify::{verify_shard, IndexVerification, VerifyTarget};

mod failback;

pub use failback::{
    FailbackRequest, FailbackResponse, FailedBackShard, DIVERGENT_DIR, MAX_DIVERGENT_BYTES,
};

/// File of the persisted follow state.
const STATE_FILE: &str = "ccr_followers.json";
/// File of the follows whose remote recovery has not completed: a restart starts them again
/// ([`FollowerIndices::resume_pending_follows`]), as Elasticsearch resumes a follower index
/// that is still being restored.
const PENDING_FILE: &str = "ccr_pending_follows.json";

/// A follow request whose recovery has not completed, as persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PendingFollow {
    remote_cluster: String,
    leader_index: String,
    /// Follow parameters, as Elasticsearch writes them.
    parameters: Map<String, Value>,
    /// Settings overrides of the request.
    settings: Value,
}

/// A follow request (`PUT /{follower}/_ccr/follow`).
#[derive(Clone, Debug)]
pub struct FollowRequest {
    /// Alias of the leader cluster.
    pub remote_cluster: String,
    /// The leader index.
    pub leader_index: String,
    /// The follower index to create.
    pub follower_index: String,
    /// Follow parameters.
    pub parameters: FollowParameters,
    /// Return only once every shard is recovered and following (`wait_for_active_shards` of
    /// 1 or more, or `all`: one node holds one copy of each shard). `false` (`0`,
    /// Elasticsearch's default) returns once the recovery has started; it goes on in the
    /// background and following starts when it completes.
    pub wait_for_active_shards: bool,
    /// Settings of the follower index that differ from the leader's (`settings` of the
    /// request; `null` or `{}` for none). Only per-cluster (non-replicated) settings can be
    /// given, which in Tandem is every setting but `number_of_shards`.
    pub settings: Value,
}

/// What a follow request did (Elasticsearch's response fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FollowResponse {
    /// The follower index exists.
    pub follow_index_created: bool,
    /// Its shards are recovered and started.
    pub follow_index_shards_acked: bool,
    /// Its shard follow tasks run.
    pub index_following_started: bool,
}

/// The persisted follow state of one follower index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerMetadata {
    /// Alias of the leader cluster.
    pub remote_cluster: String,
    /// The leader index.
    pub leader_index: String,
    /// The leader index's uuid when following started.
    pub leader_index_uuid: String,
    /// Per shard, the leader shard's history uuid the follower was recovered from.
    pub leader_history_uuids: Vec<String>,
    /// The follow parameters as given (request form).
    pub parameters: Map<String, Value>,
    /// Paused followers keep their state but run no task.
    pub paused: bool,
    /// Id of the retention lease the follower holds on every leader shard.
    pub lease_id: String,
    /// Set while the follower is being promoted ([`FollowerIndices::promote`]): a restart
    /// finishes the promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoting: Option<Promoting>,
    /// Set when the follower became one by a failback ([`FollowerIndices::failback`]): the
    /// shared points and the divergent operations files, shown by follow info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_back: Option<Vec<FailedBackShard>>,
}

/// A promotion under way, as persisted with the follow state until it has completed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promoting {
    /// Per shard, the leader's max_seq_no as the follower last heard it (-1: never heard).
    pub leader_max_seq_nos: Vec<i64>,
    /// How long the promoted index keeps its history from the recovery point
    /// ([`PromoteRequest::retention_period`]), in milliseconds.
    pub retention_period_millis: u64,
}

/// Default of [`PromoteRequest::retention_period`]: as long as Elasticsearch keeps a
/// follower's lease without renewal.
pub const DEFAULT_PROMOTION_RETENTION_PERIOD: Duration = Duration::from_secs(12 * 3600);

/// A promotion of a follower index to a writable index (`POST /{index}/_ccr/promote`).
#[derive(Clone, Debug)]
pub struct PromoteRequest {
    /// The follower index.
    pub follower_index: String,
    /// How long the promoted index keeps the history above its recovery point, so that its
    /// old leader can fail back by operations (default
    /// [`DEFAULT_PROMOTION_RETENTION_PERIOD`]).
    pub retention_period: Duration,
}

/// What a promotion did, per shard ([`FollowerIndices::promote`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PromoteResponse {
    /// The promoted index.
    pub index: String,
    /// Its shards, by number.
    pub shards: Vec<PromotedShard>,
}

/// One promoted shard: where it stands against its old leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PromotedShard {
    /// The shard number.
    pub shard: u32,
    /// The recovery point: every operation at or below it was received from the leader.
    pub local_checkpoint: i64,
    /// The highest sequence number the shard held (operations received out of order above
    /// the checkpoint; the gaps among them were filled with no-ops).
    pub max_seq_no: i64,
    /// The leader's max_seq_no as last heard (-1 when never heard since the node started).
    pub leader_max_seq_no: i64,
    /// Operations the leader had (as last heard) above the recovery point: at most this
    /// many acknowledged writes may be missing from the promoted index.
    pub operations_behind_leader: u64,
    /// The primary term the shard writes in from now on.
    pub primary_term: u64,
    /// The lease keeping the history from `local_checkpoint + 1` for a failback.
    pub retention_lease: Option<String>,
}

/// Longest the metrics wait for a paused follower's leader to say its max_seq_no.
pub const LAG_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the metrics show of one follower shard ([`FollowerIndices::follow_metrics`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FollowShardMetrics {
    /// The follower index.
    pub follower_index: String,
    /// The shard.
    pub shard: u32,
    /// True while the follower is paused (its stats are then those of no task).
    pub paused: bool,
    /// Its follow stats.
    pub stats: ShardFollowStats,
    /// How far it trails.
    pub lag: Lag,
}

/// Follow info of one follower index (`GET /{index}/_ccr/info`).
#[derive(Clone, Debug, PartialEq)]
pub struct FollowInfo {
    /// The follower index.
    pub follower_index: String,
    /// Its follow state.
    pub metadata: FollowerMetadata,
    /// The parameters in effect (defaults filled in).
    pub parameters: ResolvedFollowParameters,
    /// Set while the index's remote recovery has not completed.
    pub recovery: Option<FollowRecovery>,
}

/// The remote recovery of a follower index that has not completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowRecovery {
    /// It runs.
    Running,
    /// It failed, for this reason.
    Failed(String),
}

impl FollowInfo {
    /// Elasticsearch's rendering of one follower (`status` active or paused; parameters only
    /// for active followers). A follower whose recovery has not completed is active, as in
    /// Elasticsearch, with Tandem's `recovering: true`, and `fatal_exception` once its
    /// recovery failed.
    pub fn to_es_json(&self) -> Value {
        let mut entry = serde_json::json!({
            "follower_index": self.follower_index,
            "remote_cluster": self.metadata.remote_cluster,
            "leader_index": self.metadata.leader_index,
            "status": if self.metadata.paused { "paused" } else { "active" },
        });
        if !self.metadata.paused {
            entry["parameters"] = self.parameters.to_es_json();
        }
        if let Some(shards) = &self.metadata.failed_back {
            // A Tandem extension: what the failback that made this follower left behind.
            entry["failback"] = serde_json::json!({
                "divergent_operations": shards.iter().map(|s| s.divergent_operations).sum::<u64>(),
                "shards": shards,
            });
        }
        match &self.recovery {
            None => {}
            Some(FollowRecovery::Running) => entry["recovering"] = Value::Bool(true),
            Some(FollowRecovery::Failed(reason)) => {
                entry["recovering"] = Value::Bool(false);
                entry["fatal_exception"] =
                    serde_json::json!({"type": "exception", "reason": reason});
            }
        }
        entry
    }
}

struct Follower {
    metadata: FollowerMetadata,
    tasks: Vec<ShardFollowTask>,
}

/// A follower index whose remote recovery has not completed.
struct RecoveringFollower {
    metadata: FollowerMetadata,
    /// Shards of the leader index (each holds a lease of the recovery).
    shards: u32,
    /// Where the shards are copied.
    dir: PathBuf,
    state: RecoveryState,
    /// The task running the recovery and the registration (`None` once it ended).
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Where a recovering follower is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RecoveryState {
    /// Copying the leader's files; a cancel aborts the copy.
    Copying,
    /// Copied; being registered as an index (a cancel waits for it, then deletes the index).
    Registering,
    /// Failed, for this reason; files and leases are already removed.
    Failed(String),
}

impl RecoveringFollower {
    fn fatal_exception(&self) -> Option<ErrorBody> {
        match &self.state {
            RecoveryState::Failed(reason) => Some(ErrorBody {
                error_type: "exception".to_string(),
                reason: reason.clone(),
            }),
            _ => None,
        }
    }

    fn refusal(&self, name: &str) -> CcrError {
        match &self.state {
            RecoveryState::Failed(reason) => CcrError::RecoveryFailed {
                index: name.to_string(),
                reason: reason.clone(),
            },
            _ => CcrError::StillRecovering(name.to_string()),
        }
    }
}

/// The remote recovery of one follower shard (`GET /{index}/_recovery`).
#[derive(Clone, Debug)]
pub struct FollowerShardRecovery {
    /// The follower index.
    pub follower_index: String,
    /// The follower shard number.
    pub shard: u32,
    /// Alias of the leader cluster.
    pub remote_cluster: String,
    /// The leader index.
    pub leader_index: String,
    /// Where the recovery is (live while it runs, frozen once it stopped).
    pub progress: RecoveryProgressSnapshot,
}

/// One shard's recovery as recorded: shard number, leader shard, remote alias, progress.
type RecoveryRecord = (u32, ShardId, String, RecoveryProgress);

/// A follower name taken by a follow request until its index is registered (or the request
/// failed): a second request for the same name is refused meanwhile.
struct Reservation {
    followers: Arc<FollowerIndices>,
    name: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.followers.reserved.lock().remove(&self.name);
    }
}

/// What a follow needs once the leader has been asked: everything to recover and start.
/// Preparing it registers the follower as recovering.
struct PreparedFollow {
    request: FollowRequest,
    /// The follower index's settings: the leader's with the request's overrides.
    settings: IndexSettings,
    parameters: ResolvedFollowParameters,
    client: Arc<dyn LeaderClient>,
    leader: IndexMetadata,
    follower_uuid: String,
    lease_id: String,
    targets: Vec<RecoveryTarget>,
    /// Where the shards are copied.
    dir: PathBuf,
    /// The follower's shards, counted against the node's shard limit from the moment the
    /// follow is accepted until they are registered.
    shards: ShardReservation,
    _reservation: Reservation,
}

/// The follower indices of this cluster (see the module documentation).
pub struct FollowerIndices {
    cluster_name: String,
    indices: Arc<Indices>,
    remotes: Arc<RemoteClusters>,
    /// Settings of the recoveries that start from now on (see
    /// [`set_recovery_settings`](Self::set_recovery_settings)).
    recovery: parking_lot::Mutex<RecoverySettings>,
    state_dir: PathBuf,
    followers: Mutex<BTreeMap<String, Follower>>,
    /// Follower names of follow requests being prepared (asking the leader).
    reserved: parking_lot::Mutex<BTreeSet<String>>,
    /// Follower indices whose remote recovery has not completed, by name.
    recovering: parking_lot::Mutex<BTreeMap<String, RecoveringFollower>>,
    /// Per follower index, its shards' recoveries (kept after they finish, as the
    /// `_recovery` API shows them); bounded by the number of follower indices.
    recoveries: parking_lot::Mutex<BTreeMap<String, Vec<RecoveryRecord>>>,
    /// Follows whose recovery has not completed, by follower index (persisted). An async
    /// lock: it is held across the write of the file, which keeps the file in the order of
    /// the changes.
    pending: Mutex<BTreeMap<String, PendingFollow>>,
    /// Removes the leases of follows that ended, retrying while the leader is unreachable.
    lease_cleanup: Arc<LeaseCleanup>,
    /// The task retrying the lease removals ([`LeaseCleanup::run`]).
    lease_cleanup_task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Per follower shard, what was seen of its leader's progress (kept across pauses;
    /// pruned to the follower indices by [`FollowerIndices::follow_metrics`]).
    lag_clocks: parking_lot::Mutex<BTreeMap<(String, u32), Arc<LagClock>>>,
    /// The failbacks in progress, by index (persisted; see `failback.rs`). An async lock,
    /// held through a failback: one runs at a time.
    failbacks: Mutex<BTreeMap<String, failback::FailbackState>>,
}

impl Drop for FollowerIndices {
    fn drop(&mut self) {
        if let Some(task) = self.lease_cleanup_task.lock().take() {
            task.abort();
        }
    }
}

impl FollowerIndices {
    /// Loads the follow state from `state_dir` and restarts the tasks of every follower that
    /// was not paused and whose index is open. Call inside a tokio runtime.
    pub async fn open(
        cluster_name: impl Into<String>,
        indices: Arc<Indices>,
        remotes: Arc<RemoteClusters>,
        recovery: RecoverySettings,
        state_dir: &Path,
    ) -> Result<FollowerIndices, CcrError> {
        let storage = indices.storage().clone();
        let state: BTreeMap<String, FollowerMetadata> =
            state_file::load(&*storage, state_dir, STATE_FILE)?;
        let pending: BTreeMap<String, PendingFollow> =
            state_file::load(&*storage, state_dir, PENDING_FILE)?;
        let failbacks: BTreeMap<String, failback::FailbackState> =
            state_file::load(&*storage, state_dir, failback::FAILBACK_FILE)?;
        let lease_cleanup = Arc::new(LeaseCleanup::open(storage, remotes.clone(), state_dir)?);
        let lease_cleanup_task = tokio::spawn(lease_cleanup.clone().run());
        let this = FollowerIndices {
            cluster_name: cluster_name.into(),
            indices,
            remotes,
            recovery: parking_lot::Mutex::new(recovery),
            state_dir: state_dir.to_path_buf(),
            followers: Mutex::new(BTreeMap::new()),
            reserved: parking_lot::Mutex::new(BTreeSet::new()),
            recovering: parking_lot::Mutex::new(BTreeMap::new()),
            recoveries: parking_lot::Mutex::new(BTreeMap::new()),
            pending: Mutex::new(pending),
            lease_cleanup,
            lease_cleanup_task: parking_lot::Mutex::new(Some(lease_cleanup_task)),
            lag_clocks: parking_lot::Mutex::new(BTreeMap::new()),
            failbacks: Mutex::new(failbacks),
        };
        {
            let mut followers = this.followers.lock().await;
            for (name, metadata) in state {
                let tasks = if metadata.paused || this.indices.is_closed(&name).unwrap_or(true) {
                    Vec::new()
                } else {
                    match this.start_tasks(&name, &metadata) {
                        Ok(tasks) => tasks,
                        Err(error) => {
                            tracing::warn!(follower = %name, %error, "cannot resume following after a restart");
                            Vec::new()
                        }
                    }
                };
                followers.insert(name, Follower { metadata, tasks });
            }
            this.settle_failbacks(&followers).await?;
            // Promotions a crash interrupted: finished now (each step is idempotent).
            let promoting: Vec<String> = followers
                .iter()
                .filter(|(_, follower)| follower.metadata.promoting.is_some())
                .map(|(name, _)| name.clone())
                .collect();
            for name in promoting {
                match this.finish_promotion(&name, &mut followers).await {
                    Ok(promoted) => {
                        tracing::info!(index = %name, ?promoted, "finished a promotion interrupted by a restart")
                    }
                    Err(error) => {
                        tracing::error!(index = %name, %error, "cannot finish a promotion interrupted by a restart; it is retried at the next start or by a new promote request")
                    }
                }
            }
        }
        Ok(this)
    }

    /// The settings a recovery started now runs with.
    pub fn recovery_settings(&self) -> RecoverySettings {
        self.recovery.lock().clone()
    }

    /// Replaces the settings of the recoveries that start from now on (the node's
    /// `ccr.indices.recovery.*` cluster settings); recoveries already running keep the
    /// settings they started with. Invalid settings are refused and change nothing.
    pub fn set_recovery_settings(&self, settings: RecoverySettings) -> Result<(), CcrError> {
        settings.validate()?;
        *self.recovery.lock() = settings;
        Ok(())
    }

    /// Creates `follower_index` as a copy of the leader index (remote recovery of every shard,
    /// a retention lease on each leader shard) and starts following it. With
    /// `wait_for_active_shards`, returns once the shards are recovered and their tasks run;
    /// without, once the recovery has started (its failure is then logged and shown by
    /// [`recoveries`](Self::recoveries)).
    pub async fn follow(
        self: &Arc<Self>,
        request: FollowRequest,
    ) -> Result<FollowResponse, CcrError> {
        let prepared = self.prepare_follow(request).await?;
        let follower_index = prepared.request.follower_index.clone();
        if let Err(error) = self
            .set_pending(&follower_index, Some(&prepared.request))
            .await
        {
            self.recovering.lock().remove(&follower_index);
            self.forget_recoveries(&follower_index);
            return Err(error);
        }
        let wait = prepared.request.wait_for_active_shards;
        // The recovery runs in its own task, so that a delete of the index can abort it
        // whoever waits for it.
        let (completed_sender, completed) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let name = follower_index.clone();
        {
            // The task is recorded before it can look at its entry (it takes this lock first).
            let mut recovering = self.recovering.lock();
            let handle = tokio::spawn(async move {
                let result = this.complete_follow(prepared).await;
                this.forget_pending(&name).await;
                if let Err(error) = &result {
                    tracing::warn!(follower = %name, %error, "following failed");
                }
                let _ = completed_sender.send(result);
            });
            if let Some(entry) = recovering.get_mut(&follower_index) {
                entry.task = Some(handle);
            }
        }
        if wait {
            return match completed.await {
                Ok(result) => result.map(|()| FollowResponse {
                    follow_index_created: true,
                    follow_index_shards_acked: true,
                    index_following_started: true,
                }),
                Err(_) => Err(CcrError::RecoveryCancelled(follower_index)),
            };
        }
        Ok(FollowResponse {
            follow_index_created: true,
            follow_index_shards_acked: false,
            index_following_started: false,
        })
    }

    /// Starts again, in the background, the follows whose recovery had not completed when
    /// the process stopped (their half-copied directories were removed when the indices were
    /// opened). A follow that cannot start (the leader unreachable, say) stays pending for
    /// the next start and is logged; one whose follower index exists already (it completed
    /// just before the stop) is forgotten. Call once, after [`open`](Self::open).
    pub async fn resume_pending_follows(self: &Arc<Self>) {
        let pending: Vec<(String, PendingFollow)> = self
            .pending
            .lock()
            .await
            .iter()
            .map(|(name, follow)| (name.clone(), follow.clone()))
            .collect();
        for (follower_index, follow) in pending {
            if self.indices.metadata(&follower_index).is_ok() {
                self.forget_pending(&follower_index).await;
                continue;
            }
            let parameters = match FollowParameters::from_es_json(&follow.parameters) {
                Ok(parameters) => parameters,
                Err(error) => {
                    tracing::warn!(follower = %follower_index, %error, "dropping a pending follow with invalid parameters");
                    self.forget_pending(&follower_index).await;
                    continue;
                }
            };
            let request = FollowRequest {
                remote_cluster: follow.remote_cluster,
                leader_index: follow.leader_index,
                follower_index: follower_index.clone(),
                parameters,
                wait_for_active_shards: false,
                settings: follow.settings,
            };
            tracing::info!(follower = %follower_index, "resuming a follow whose recovery did not complete");
            if let Err(error) = self.follow(request).await {
                tracing::warn!(follower = %follower_index, %error, "cannot resume a pending follow; it is tried again at the next start");
            }
        }
    }

    /// Records (`Some`) or clears (`None`) the pending follow of `follower_index`, durably.
    async fn set_pending(
        &self,
        follower_index: &str,
        request: Option<&FollowRequest>,
    ) -> Result<(), CcrError> {
        let mut pending = self.pending.lock().await;
        let before = pending.clone();
        match request {
            Some(request) => {
                pending.insert(
                    follower_index.to_string(),
                    PendingFollow {
                        remote_cluster: request.remote_cluster.clone(),
                        leader_index: request.leader_index.clone(),
                        parameters: request.parameters.to_es_json(),
                        settings: request.settings.clone(),
                    },
                );
            }
            None => {
                if pending.remove(follower_index).is_none() {
                    return Ok(());
                }
            }
        }
        let stored = state_file::store_off_thread(
            self.storage().clone(),
            &self.state_dir,
            PENDING_FILE,
            &*pending,
        )
        .await;
        if stored.is_err() {
            *pending = before;
        }
        stored
    }

    /// Clears a pending follow (it completed or failed); a failure to persist is logged (the
    /// next start then finds the follower index, or retries a failed follow).
    async fn forget_pending(&self, follower_index: &str) {
        if let Err(error) = self.set_pending(follower_index, None).await {
            tracing::warn!(follower = %follower_index, %error, "cannot clear a pending follow");
        }
    }

    /// Checks the request, reserves the follower name and registers one recovery per shard.
    async fn prepare_follow(
        self: &Arc<Self>,
        request: FollowRequest,
    ) -> Result<PreparedFollow, CcrError> {
        // Checked before anything is asked of the leader or copied: a name the index cannot
        // take would otherwise fail only once the recovery is complete.
        tandem_engine::index::validate_index_name(&request.follower_index)?;
        let parameters = request.parameters.resolve()?;
        let client = self.remotes.get(&request.remote_cluster)?;
        let already_exists = || {
            CcrError::Engine(tandem_engine::EngineError::IndexAlreadyExists {
                name: request.follower_index.clone(),
            })
        };
        if self.indices.metadata(&request.follower_index).is_ok()
            || self.recovering.lock().contains_key(&request.follower_index)
            || !self.reserved.lock().insert(request.follower_index.clone())
        {
            return Err(already_exists());
        }
        let reservation = Reservation {
            followers: self.clone(),
            name: request.follower_index.clone(),
        };
        let leader = client
            .index_metadata(IndexMetadataRequest::new(&request.leader_index))
            .await?;
        let mut settings = leader.settings.clone();
        // A block the leader's node set for its own disk is not the follower's.
        settings.read_only_allow_delete = false;
        if !request.settings.is_null() {
            settings.apply_es_json(&request.settings, false)?;
        }
        let shards = self
            .indices
            .reserve_shards(u64::from(leader.settings.number_of_shards))?;
        let follower_uuid = uuid::Uuid::new_v4().simple().to_string();
        let lease_id = follower_lease_id(
            &self.cluster_name,
            &request.follower_index,
            &follower_uuid,
            &request.remote_cluster,
            &leader.name,
            &leader.uuid,
        );
        let recovery = self.recovery_settings();
        let targets = (0..leader.settings.number_of_shards)
            .map(|_| {
                RecoveryTarget::new(client.clone(), recovery.clone())
                    .map(|target| target.on_storage(self.storage().clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let records = targets
            .iter()
            .zip(0..)
            .map(|(target, shard)| {
                (
                    shard,
                    ShardId::new(leader.name.clone(), shard),
                    request.remote_cluster.clone(),
                    target.progress(),
                )
            })
            .collect();
        let dir = self.indices.new_index_dir();
        // Recovering before its records exist: a `_recovery` in between, which forgets the
        // records of indices that are neither recovering nor exist, keeps them.
        self.recovering.lock().insert(
            request.follower_index.clone(),
            RecoveringFollower {
                metadata: FollowerMetadata {
                    remote_cluster: request.remote_cluster.clone(),
                    leader_index: leader.name.clone(),
                    leader_index_uuid: leader.uuid.clone(),
                    leader_history_uuids: Vec::new(),
                    parameters: request.parameters.to_es_json(),
                    paused: false,
                    lease_id: lease_id.clone(),
                    promoting: None,
                    failed_back: None,
                },
                shards: leader.settings.number_of_shards,
                dir: dir.clone(),
                state: RecoveryState::Copying,
                task: None,
            },
        );
        self.recoveries
            .lock()
            .insert(request.follower_index.clone(), records);
        Ok(PreparedFollow {
            dir,
            request,
            settings,
            parameters,
            client,
            leader,
            follower_uuid,
            lease_id,
            targets,
            shards,
            _reservation: reservation,
        })
    }

    /// Recovers every shard, registers the follower index and starts its tasks. On failure
    /// the copy and the leases are removed and the follower is left failed, with the reason.
    async fn complete_follow(&self, prepared: PreparedFollow) -> Result<(), CcrError> {
        let follower_index = prepared.request.follower_index.clone();
        let dir = prepared.dir.clone();
        let result = self.recover_and_register(prepared).await;
        if let Err(error) = &result {
            if matches!(error, CcrError::RecoveryCancelled(_)) {
                return result;
            }
            // Only a follower still recovering is cleaned up here: one that became an index
            // (and failed to start following) is deleted as an index.
            let failed = {
                let mut recovering = self.recovering.lock();
                match recovering.get_mut(&follower_index) {
                    Some(entry) => {
                        entry.state = RecoveryState::Failed(error.to_string());
                        entry.task = None;
                        Some((entry.metadata.clone(), entry.shards))
                    }
                    None => None,
                }
            };
            if let Some((metadata, shards)) = failed {
                remove_dir_with_retries(self.storage(), &dir).await;
                self.remove_leases(&metadata, shards).await;
            }
        }
        result
    }

    async fn recover_and_register(&self, prepared: PreparedFollow) -> Result<(), CcrError> {
        let PreparedFollow {
            request,
            settings,
            parameters,
            client,
            leader,
            follower_uuid,
            lease_id,
            targets,
            dir,
            shards,
            _reservation,
        } = prepared;
        drop(_reservation);
        // The recovery runs without the lock: stats and other followers' requests go on.
        let history_uuids = recover_shards(&targets, &leader, &settings, &dir, &lease_id).await?;
        {
            // From here on a cancel waits for the registration and deletes the index.
            let mut recovering = self.recovering.lock();
            match recovering.get_mut(&request.follower_index) {
                Some(entry) if entry.state == RecoveryState::Copying => {
                    entry.state = RecoveryState::Registering;
                }
                _ => return Err(CcrError::RecoveryCancelled(request.follower_index)),
            }
        }
        let metadata = IndexMetadata {
            name: request.follower_index.clone(),
            uuid: follower_uuid,
            settings,
            ..leader.clone()
        };
        let mut followers = self.followers.lock().await;
        // Writes the index metadata and opens the shards: on the blocking pool. The lock is
        // held across it so that a delete of the name waits for the registration; nothing on
        // the blocking pool takes it.
        let indices = self.indices.clone();
        let (built, registered) = (dir.clone(), metadata.clone());
        on_blocking_pool("registering the follower index", move || {
            indices.register_built(&built, &registered, shards)
        })
        .await?;
        // An index now: whatever happens next, it is deleted as one.
        self.recovering.lock().remove(&request.follower_index);
        let follow = FollowerMetadata {
            remote_cluster: request.remote_cluster.clone(),
            leader_index: leader.name.clone(),
            leader_index_uuid: leader.uuid.clone(),
            leader_history_uuids: history_uuids,
            parameters: request.parameters.to_es_json(),
            paused: false,
            lease_id,
            promoting: None,
            failed_back: None,
        };
        let tasks = self.start_tasks_with(&request.follower_index, &follow, client, parameters)?;
        followers.insert(
            request.follower_index.clone(),
            Follower {
                metadata: follow,
                tasks,
            },
        );
        self.persist(&followers).await
    }

    /// Cancels the remote recovery of `follower_index` and forgets it, as a delete of the
    /// index does: the copy stops (a chunk read in flight is dropped), the copied files and
    /// the leases the recovery added on the leader are removed (retried in the background
    /// while the leader cannot be reached). A failed recovery is just
    /// forgotten. Returns `false` when the index is not recovering (it may be a registered
    /// index, which the caller then deletes as usual: that is also the case of a recovery
    /// that completed while the cancel waited for its registration).
    pub async fn cancel_recovery(&self, follower_index: &str) -> bool {
        let Some(mut entry) = self.recovering.lock().remove(follower_index) else {
            return false;
        };
        let task = entry.task.take();
        match entry.state {
            RecoveryState::Registering => {
                if let Some(task) = task {
                    let _ = task.await;
                }
                return false;
            }
            RecoveryState::Failed(_) => {}
            RecoveryState::Copying => {
                if let Some(task) = task {
                    task.abort();
                    let _ = task.await;
                }
                tracing::info!(follower = %follower_index, "remote recovery cancelled");
                self.forget_pending(follower_index).await;
                remove_dir_with_retries(self.storage(), &entry.dir).await;
                self.remove_leases(&entry.metadata, entry.shards).await;
            }
        }
        self.forget_recoveries(follower_index);
        true
    }

    /// Fails with [`CcrError::StillRecovering`] or [`CcrError::RecoveryFailed`] when
    /// `follower_index` is recovering or its recovery failed (for the requests that a
    /// recovering index refuses: close, pause, unfollow, resume).
    pub fn check_not_recovering(&self, follower_index: &str) -> Result<(), CcrError> {
        match self.recovering.lock().get(follower_index) {
            Some(entry) => Err(entry.refusal(follower_index)),
            None => Ok(()),
        }
    }

    /// True when `follower_index` is recovering or its recovery failed.
    pub fn is_recovering(&self, follower_index: &str) -> bool {
        self.recovering.lock().contains_key(follower_index)
    }

    /// The remote recoveries of the given follower index, or of all of them, by index and
    /// shard.
    /// The records of indices that no longer exist (deleted, or a follow that failed and left
    /// no index) are forgotten first, whatever path removed the index.
    pub fn recoveries(&self, follower_index: Option<&str>) -> Vec<FollowerShardRecovery> {
        let mut recoveries = self.recoveries.lock();
        recoveries.retain(|name, _| {
            self.indices.metadata(name).is_ok() || self.recovering.lock().contains_key(name)
        });
        recoveries
            .iter()
            .filter(|(name, _)| follower_index.is_none_or(|wanted| wanted == name.as_str()))
            .flat_map(|(name, shards)| {
                shards.iter().map(
                    |(shard, leader_shard, remote, progress)| FollowerShardRecovery {
                        follower_index: name.clone(),
                        shard: *shard,
                        remote_cluster: remote.clone(),
                        leader_index: leader_shard.index.clone(),
                        progress: progress.snapshot(),
                    },
                )
            })
            .collect()
    }

    /// Forgets the recoveries of an index (it was deleted).
    pub fn forget_recoveries(&self, follower_index: &str) {
        self.recoveries.lock().remove(follower_index);
    }

    fn start_tasks(
        &self,
        follower_index: &str,
        metadata: &FollowerMetadata,
    ) -> Result<Vec<ShardFollowTask>, CcrError> {
        let client = self.remotes.get(&metadata.remote_cluster)?;
        let parameters = FollowParameters::from_es_json(&metadata.parameters)?.resolve()?;
        self.start_tasks_with(follower_index, metadata, client, parameters)
    }

    fn start_tasks_with(
        &self,
        follower_index: &str,
        metadata: &FollowerMetadata,
        client: Arc<dyn LeaderClient>,
        parameters: ResolvedFollowParameters,
    ) -> Result<Vec<ShardFollowTask>, CcrError> {
        let index = self.indices.get(follower_index)?;
        if !index.is_follower() {
            index.set_follower(true)?;
        }
        let versions = index.metadata();
        Ok((0..index.shards().len() as u32)
            .map(|shard| {
                ShardFollowTask::start(
                    client.clone(),
                    ShardFollowTaskConfig {
                        remote_cluster: metadata.remote_cluster.clone(),
                        leader_shard: ShardId::new(metadata.leader_index.clone(), shard),
                        follower_index: index.clone(),
                        parameters,
                        leader_history_uuid: metadata
                            .leader_history_uuids
                            .get(shard as usize)
                            .cloned(),
                        lease: Some(FollowerLease {
                            id: metadata.lease_id.clone(),
                            renew_interval: DEFAULT_LEASE_RENEW_INTERVAL,
                        }),
                        lag_clock: self.lag_clock(follower_index, shard),
                        follower_mapping_version: versions.mapping_version,
                        follower_settings_version: versions.settings_version,
                    },
                )
            })
            .collect())
    }

    /// Pauses following: stops every shard follow task of the index (waiting for them to end);
    /// the follower keeps its state and its leases (renewed again on resume).
    pub async fn pause(&self, follower_index: &str) -> Result<(), CcrError> {
        self.check_not_recovering(follower_index)?;
        let mut followers = self.followers.lock().await;
        let follower = followers
            .get_mut(follower_index)
            .ok_or_else(|| CcrError::NotAFollower(follower_index.to_string()))?;
        if follower.metadata.paused {
            return Err(CcrError::NoFollowTasks(follower_index.to_string()));
        }
        for task in std::mem::take(&mut follower.tasks) {
            task.stop().await;
        }
        follower.metadata.paused = true;
        self.persist(&followers).await
    }

    /// Resumes a paused follower, with `parameters` (the defaults where unset, as
    /// Elasticsearch does). Checks first that both indices are open and that the leader
    /// index is still the one followed: same uuid, shard count and shard histories.
    pub async fn resume(
        &self,
        follower_index: &str,
        parameters: FollowParameters,
    ) -> Result<(), CcrError> {
        self.check_not_recovering(follower_index)?;
        let resolved = parameters.resolve()?;
        let mut followers = self.followers.lock().await;
        let follower = followers
            .get_mut(follower_index)
            .ok_or_else(|| CcrError::NotAFollower(follower_index.to_string()))?;
        if !follower.metadata.paused {
            return Err(CcrError::AlreadyFollowing(follower_index.to_string()));
        }
        if self.indices.is_closed(follower_index)? {
            return Err(CcrError::NotOpen);
        }
        let client = self.remotes.get(&follower.metadata.remote_cluster)?;
        let leader = match client
            .index_metadata(IndexMetadataRequest::new(&follower.metadata.leader_index))
            .await
        {
            Err(LeaderError::IndexClosed(_)) => return Err(CcrError::NotOpen),
            found => found?,
        };
        if leader.uuid != follower.metadata.leader_index_uuid {
            return Err(CcrError::LeaderChanged(format!(
                "the leader index [{}] was replaced: it had uuid [{}] when following started \
                 and has [{}] now",
                leader.name, follower.metadata.leader_index_uuid, leader.uuid
            )));
        }
        let follower_shards = self
            .indices
            .metadata(follower_index)?
            .settings
            .number_of_shards;
        if leader.settings.number_of_shards != follower_shards {
            return Err(CcrError::LeaderChanged(format!(
                "leader index primary shards [{}] does not match with the number of shards \
                 of the follow index [{follower_shards}]",
                leader.settings.number_of_shards
            )));
        }
        check_leader_histories(client.as_ref(), &follower.metadata).await?;
        let mut metadata = follower.metadata.clone();
        metadata.paused = false;
        metadata.parameters = parameters.to_es_json();
        follower.tasks = self.start_tasks_with(follower_index, &metadata, client, resolved)?;
        follower.metadata = metadata;
        self.persist(&followers).await
    }

    /// Turns a paused and closed follower index into a normal index (writable once opened)
    /// and removes its retention leases from the leader. The conversion happens even when
    /// the leader cannot be reached; the leases that could not be removed at once are returned,
    /// and their removal is retried in the background until it succeeds or they expire.
    pub async fn unfollow(&self, follower_index: &str) -> Result<Vec<String>, CcrError> {
        self.check_not_recovering(follower_index)?;
        let mut followers = self.followers.lock().await;
        let follower = followers
            .get(follower_index)
            .ok_or_else(|| CcrError::NotAFollower(follower_index.to_string()))?;
        if !follower.metadata.paused {
            return Err(CcrError::NotPaused(follower_index.to_string()));
        }
        if !self.indices.is_closed(follower_index)? {
            return Err(CcrError::NotClosed(follower_index.to_string()));
        }
        // Rewrites the shards' follower markers: on the blocking pool (the lock is held across
        // it as across the state write below; nothing on the blocking pool takes it).
        // The promotion the next open makes records the leader followed (without a lease:
        // that is `promote`'s), so that a failback of the old leader can name it.
        let requests = self.promotion_requests(follower_index, &follower.metadata, None);
        let indices = self.indices.clone();
        let unfollowed = follower_index.to_string();
        on_blocking_pool("unmarking the follower shards", move || {
            indices.with_closed_index(&unfollowed, |dir, _| {
                Index::mark_for_promotion(&**indices.storage(), dir, &requests)
            })
        })
        .await?;
        let metadata = follower.metadata.clone();
        followers.remove(follower_index);
        self.persist(&followers).await?;
        drop(followers);
        let shards = self
            .indices
            .metadata(follower_index)?
            .settings
            .number_of_shards;
        let not_removed = self.remove_leases(&metadata, shards).await;
        Ok(not_removed)
    }

    /// Promotes a follower index to a writable index in one call (a Tandem extension; the
    /// four calls pause, close, unfollow and open still work): stops its tasks, converts its
    /// shards to primaries of a new term, each recording its recovery point (see
    /// [`tandem_engine::shard::ShardEngine::promote_to_primary`]) and keeping its history
    /// above it for `retention_period` under a lease, and opens it. Its leases on the old
    /// leader are left: they keep the old leader's history above the recovery point for a
    /// failback ([`FollowerIndices::failback`] removes them; unrenewed, they expire). A
    /// follower that has not caught up can be promoted: the answer says how far behind it
    /// was.
    ///
    /// Durable at each step: the promotion is recorded in the follow state before anything
    /// changes, and a restart that finds it recorded finishes it
    /// ([`FollowerIndices::open`]); every step is idempotent.
    pub async fn promote(&self, request: PromoteRequest) -> Result<PromoteResponse, CcrError> {
        let name = request.follower_index.as_str();
        self.check_not_recovering(name)?;
        let period_millis = u64::try_from(request.retention_period.as_millis()).unwrap_or(u64::MAX);
        if period_millis == 0 {
            return Err(CcrError::InvalidArgument(
                "[retention_period] must be positive".to_string(),
            ));
        }
        let mut followers = self.followers.lock().await;
        let follower = followers
            .get_mut(name)
            .ok_or_else(|| CcrError::NotAFollower(name.to_string()))?;
        if follower.metadata.promoting.is_none() {
            for task in std::mem::take(&mut follower.tasks) {
                task.stop().await;
            }
            let shards = follower.metadata.leader_history_uuids.len() as u32;
            follower.metadata.paused = true;
            follower.metadata.promoting = Some(Promoting {
                leader_max_seq_nos: (0..shards)
                    .map(|shard| self.last_known_leader_max_seq_no(name, shard))
                    .collect(),
                retention_period_millis: period_millis,
            });
            self.persist(&followers).await?;
        }
        self.finish_promotion(name, &mut followers).await
    }

    /// Finishes the recorded promotion of `name` (see [`FollowerIndices::promote`]): each
    /// step checks whether it already happened.
    async fn finish_promotion(
        &self,
        name: &str,
        followers: &mut BTreeMap<String, Follower>,
    ) -> Result<PromoteResponse, CcrError> {
        let metadata = followers
            .get(name)
            .map(|follower| follower.metadata.clone())
            .ok_or_else(|| CcrError::NotAFollower(name.to_string()))?;
        let Some(promoting) = metadata.promoting.clone() else {
            return Err(CcrError::InvalidArgument(format!(
                "index [{name}] is not being promoted"
            )));
        };
        self.ensure_closed(name, "closing the promoted index")
            .await?;
        let index_uuid = self.indices.metadata(name)?.uuid;
        let lease = PromotionLease {
            id: crate::leader::promotion_lease_id(&self.cluster_name, name, &index_uuid),
            period_millis: promoting.retention_period_millis,
        };
        let requests = self.promotion_requests(name, &metadata, Some(lease));
        let indices = self.indices.clone();
        let marking = name.to_string();
        let index = on_blocking_pool("promoting the follower shards", move || {
            indices.with_closed_index(&marking, |dir, _| {
                Index::mark_for_promotion(&**indices.storage(), dir, &requests)
            })?;
            indices.open_index(&marking)
        })
        .await?;
        followers.remove(name);
        // The follower's leases on the old leader stay: they keep the old leader's history
        // above the recovery point, which a failback reads (it removes them); otherwise
        // they expire after their period.
        self.persist(followers).await?;
        let shards = index
            .shards()
            .iter()
            .enumerate()
            .map(|(shard, engine)| {
                let promotion = engine.promotion().ok_or_else(|| {
                    CcrError::InvalidArgument(format!(
                        "shard [{shard}] of [{name}] opened without its promotion"
                    ))
                })?;
                let leader_max_seq_no = promotion
                    .leader
                    .as_ref()
                    .map_or(-1, |leader| leader.leader_max_seq_no.0);
                Ok(PromotedShard {
                    shard: shard as u32,
                    local_checkpoint: promotion.local_checkpoint.0,
                    max_seq_no: promotion.max_seq_no.0,
                    leader_max_seq_no,
                    operations_behind_leader: (leader_max_seq_no - promotion.local_checkpoint.0)
                        .max(0) as u64,
                    primary_term: promotion.primary_term.0,
                    retention_lease: promotion.lease_id,
                })
            })
            .collect::<Result<Vec<_>, CcrError>>()?;
        tracing::info!(index = %name, ?shards, "follower index promoted");
        Ok(PromoteResponse {
            index: name.to_string(),
            shards,
        })
    }

    /// The highest max_seq_no of the leader of follower shard `name`/`shard` this node
    /// knows: the last its reads saw, and at least what the follower shard holds (a follower
    /// caught up by its recovery may not have finished a read yet).
    fn last_known_leader_max_seq_no(&self, name: &str, shard: u32) -> i64 {
        let held = self
            .indices
            .get(name)
            .ok()
            .and_then(|index| index.shards().get(shard as usize).map(|s| s.max_seq_no().0))
            .unwrap_or(-1);
        self.lag_clock(name, shard).latest().max(held)
    }

    /// Closes index `name` (on the blocking pool) unless it is closed already; `context`
    /// names the close in errors.
    async fn ensure_closed(&self, name: &str, context: &'static str) -> Result<(), CcrError> {
        if self.indices.is_closed(name)? {
            return Ok(());
        }
        let indices = self.indices.clone();
        let closing = name.to_string();
        on_blocking_pool(context, move || indices.close_index(&closing)).await
    }

    /// Per shard, the promotion of the follower `name` (whose follow state is `metadata`)
    /// with `lease`: the leader shard it followed, and the leader's max_seq_no last heard
    /// (as recorded by a promotion in progress, else as its lag clock knows it).
    fn promotion_requests(
        &self,
        name: &str,
        metadata: &FollowerMetadata,
        lease: Option<PromotionLease>,
    ) -> Vec<PromotionRequest> {
        metadata
            .leader_history_uuids
            .iter()
            .enumerate()
            .map(|(shard, history_uuid)| {
                let recorded = metadata
                    .promoting
                    .as_ref()
                    .and_then(|promoting| promoting.leader_max_seq_nos.get(shard).copied());
                let leader_max_seq_no = recorded
                    .unwrap_or_else(|| self.last_known_leader_max_seq_no(name, shard as u32));
                PromotionRequest {
                    lease: lease.clone(),
                    leader: Some(FollowedLeader {
                        remote_cluster: metadata.remote_cluster.clone(),
                        leader_index: metadata.leader_index.clone(),
                        leader_index_uuid: metadata.leader_index_uuid.clone(),
                        leader_history_uuid: history_uuid.clone(),
                        leader_max_seq_no: SeqNo(leader_max_seq_no),
                    }),
                }
            })
            .collect()
    }

    /// The follower index `name` is about to be closed: stops its follow tasks. Its follow
    /// state stays as it is (a following index is still following), so
    /// [`index_opened`](Self::index_opened) starts the tasks again. Nothing happens for an
    /// index that is not a follower.
    pub async fn index_closing(&self, name: &str) {
        let mut followers = self.followers.lock().await;
        if let Some(follower) = followers.get_mut(name) {
            for task in std::mem::take(&mut follower.tasks) {
                task.stop().await;
            }
        }
    }

    /// The follower index `name` was opened again: starts the follow tasks of a following
    /// (not paused) follower that has none. Nothing happens for any other index.
    pub async fn index_opened(&self, name: &str) -> Result<(), CcrError> {
        let mut followers = self.followers.lock().await;
        let Some(follower) = followers.get_mut(name) else {
            return Ok(());
        };
        if follower.metadata.paused || !follower.tasks.is_empty() {
            return Ok(());
        }
        let metadata = follower.metadata.clone();
        follower.tasks = self.start_tasks(name, &metadata)?;
        Ok(())
    }

    /// The follower index `name` was deleted (stop its tasks first with
    /// [`index_closing`](Self::index_closing)): forgets its follow state and recoveries, and
    /// removes its retention leases from the leader (retried in the background while the
    /// leader cannot be reached). Nothing happens for an index that is not a follower.
    pub async fn index_deleted(&self, name: &str) -> Result<(), CcrError> {
        self.forget_recoveries(name);
        {
            // A failback left incomplete has nothing left to resume.
            let mut failbacks = self.failbacks.lock().await;
            if failbacks.remove(name).is_some() {
                self.persist_failbacks(&failbacks).await?;
            }
        }
        let mut followers = self.followers.lock().await;
        let Some(mut follower) = followers.remove(name) else {
            return Ok(());
        };
        for task in std::mem::take(&mut follower.tasks) {
            task.stop().await;
        }
        self.persist(&followers).await?;
        drop(followers);
        let shards = follower.metadata.leader_history_uuids.len() as u32;
        self.remove_leases(&follower.metadata, shards).await;
        Ok(())
    }

    /// Removes the follower's lease from every leader shard; a removal that fails is logged,
    /// persisted and retried in the background ([`LeaseCleanup`]). Returns the failures of
    /// the first attempt.
    async fn remove_leases(&self, metadata: &FollowerMetadata, shards: u32) -> Vec<String> {
        self.lease_cleanup
            .remove(
                &metadata.remote_cluster,
                &metadata.leader_index,
                shards,
                &metadata.lease_id,
            )
            .await
    }

    /// The lease removals waiting for their leader (follows that ended while it could not be
    /// reached).
    pub fn pending_lease_removals(&self) -> Vec<PendingLeaseRemoval> {
        self.lease_cleanup.pending()
    }

    /// Follow info of every follower index, or of the given one.
    pub async fn info(&self, follower_index: Option<&str>) -> Result<Vec<FollowInfo>, CcrError> {
        let followers = self.followers.lock().await;
        let mut out = Vec::new();
        for (name, follower) in followers.iter() {
            if follower_index.is_some_and(|wanted| wanted != name) {
                continue;
            }
            out.push(FollowInfo {
                follower_index: name.clone(),
                metadata: follower.metadata.clone(),
                parameters: FollowParameters::from_es_json(&follower.metadata.parameters)?
                    .resolve()?,
                recovery: None,
            });
        }
        drop(followers);
        for (name, entry) in self.recovering.lock().iter() {
            if follower_index.is_some_and(|wanted| wanted != name) {
                continue;
            }
            out.push(FollowInfo {
                follower_index: name.clone(),
                metadata: entry.metadata.clone(),
                parameters: FollowParameters::from_es_json(&entry.metadata.parameters)?
                    .resolve()?,
                recovery: Some(match &entry.state {
                    RecoveryState::Failed(reason) => FollowRecovery::Failed(reason.clone()),
                    _ => FollowRecovery::Running,
                }),
            });
        }
        out.sort_by(|a, b| a.follower_index.cmp(&b.follower_index));
        if let Some(name) = follower_index {
            if out.is_empty() {
                return Err(CcrError::NotAFollower(name.to_string()));
            }
        }
        Ok(out)
    }

    /// Verifies a follower index against its leader index, shard by shard (see
    /// [`crate::verify`]), at `up_to` (default: each shard's global checkpoint). Refused for
    /// an index that is not a follower, that is still recovering, or that is paused.
    pub async fn verify(
        &self,
        follower_index: &str,
        up_to: Option<SeqNo>,
    ) -> Result<IndexVerification, CcrError> {
        self.check_not_recovering(follower_index)?;
        let metadata = match self.followers.lock().await.get(follower_index) {
            Some(follower) => follower.metadata.clone(),
            None => return Err(CcrError::NotAFollower(follower_index.to_string())),
        };
        if metadata.paused {
            return Err(CcrError::InvalidArgument(format!(
                "cannot verify follower index [{follower_index}]: it is paused, so it does not \
                 replicate its leader; resume it (POST /{follower_index}/_ccr/resume_follow) and \
                 verify again"
            )));
        }
        let leader = self.remotes.get(&metadata.remote_cluster)?;
        let index = self.indices.get(follower_index)?;
        let shards = index.shards().len();
        if metadata.leader_history_uuids.len() != shards {
            return Err(CcrError::InvalidArgument(format!(
                "follower index [{follower_index}] has [{shards}] shards and follows [{}] leader shards",
                metadata.leader_history_uuids.len()
            )));
        }
        let mut verified = Vec::with_capacity(shards);
        for (shard, history_uuid) in metadata.leader_history_uuids.iter().enumerate() {
            let global_checkpoint = index.shards()[shard].global_checkpoint();
            let at = match up_to {
                Some(asked) if asked > global_checkpoint => {
                    return Err(CcrError::InvalidArgument(format!(
                        "up_to_seq_no [{asked}] is above the global checkpoint [{global_checkpoint}] \
                         of shard [{shard}] of follower index [{follower_index}]: verify at a \
                         sequence number the follower has processed"
                    )))
                }
                asked => asked,
            };
            let target = VerifyTarget {
                follower: index.clone(),
                shard: shard as u32,
                leader_shard: ShardId::new(metadata.leader_index.clone(), shard as u32),
                leader_history_uuid: history_uuid.clone(),
            };
            verified.push(verify_shard(leader.clone(), target, at).await?);
        }
        let equal = verified.iter().all(|shard| shard.equal);
        Ok(IndexVerification {
            shards: verified,
            equal,
        })
    }

    /// The lag clock of shard `shard` of `follower_index` (made on first use).
    fn lag_clock(&self, follower_index: &str, shard: u32) -> Arc<LagClock> {
        self.lag_clocks
            .lock()
            .entry((follower_index.to_string(), shard))
            .or_default()
            .clone()
    }

    /// What the metrics show of every follower shard, paused ones included: its follow stats,
    /// and its lag. A paused follower's leader is asked for its max_seq_no (within
    /// [`LAG_PROBE_TIMEOUT`] per shard; an unreachable leader leaves the last known lag).
    pub async fn follow_metrics(&self) -> Vec<FollowShardMetrics> {
        let followers: Vec<(String, FollowerMetadata, Vec<ShardFollowStats>)> = {
            let followers = self.followers.lock().await;
            followers
                .iter()
                .map(|(name, follower)| {
                    (
                        name.clone(),
                        follower.metadata.clone(),
                        follower.tasks.iter().map(ShardFollowTask::stats).collect(),
                    )
                })
                .collect()
        };
        self.lag_clocks
            .lock()
            .retain(|(name, _), _| followers.iter().any(|(known, _, _)| known == name));
        let mut out = Vec::new();
        for (name, metadata, stats) in followers {
            let Ok(index) = self.indices.get(&name) else {
                continue;
            };
            for (shard, engine) in index.shards().iter().enumerate() {
                let shard = shard as u32;
                let clock = self.lag_clock(&name, shard);
                let stats = match stats.get(shard as usize) {
                    Some(stats) => stats.clone(),
                    None => {
                        self.probe_leader(&metadata, shard, &clock).await;
                        ShardFollowStats::before_following(
                            &metadata.remote_cluster,
                            &metadata.leader_index,
                            &name,
                            shard,
                            None,
                        )
                    }
                };
                let lag = clock.lag(engine.local_checkpoint().0, std::time::Instant::now());
                out.push(FollowShardMetrics {
                    paused: metadata.paused,
                    stats,
                    lag,
                    follower_index: name.clone(),
                    shard,
                });
            }
        }
        out
    }

    /// Asks the leader shard of a paused follower shard for its max_seq_no and notes it.
    async fn probe_leader(&self, metadata: &FollowerMetadata, shard: u32, clock: &LagClock) {
        let Ok(client) = self.remotes.get(&metadata.remote_cluster) else {
            return;
        };
        let request = ShardChangesRequest {
            shard: ShardId::new(metadata.leader_index.clone(), shard),
            changes: ChangesRequest {
                from_seq_no: SeqNo(i64::MAX / 2),
                max_operation_count: 1,
                max_batch_size: 1,
                poll_timeout: Duration::ZERO,
                expected_history_uuid: metadata.leader_history_uuids.get(shard as usize).cloned(),
            },
        };
        match tokio::time::timeout(LAG_PROBE_TIMEOUT, client.shard_changes(request)).await {
            Ok(Ok(response)) => {
                clock.observe(response.changes.max_seq_no.0, std::time::Instant::now())
            }
            Ok(Err(error)) => tracing::debug!(%error, "probing a paused follower's leader failed"),
            Err(_) => tracing::debug!("probing a paused follower's leader timed out"),
        }
    }

    /// Follow stats of every following (not paused) index, or of the given one.
    pub async fn stats(
        &self,
        follower_index: Option<&str>,
    ) -> Result<Vec<IndexFollowStats>, CcrError> {
        let followers = self.followers.lock().await;
        let recovering = self.recovering.lock();
        if let Some(name) = follower_index {
            if !followers.contains_key(name) && !recovering.contains_key(name) {
                return Err(CcrError::NotAFollower(name.to_string()));
            }
        }
        let mut out: Vec<IndexFollowStats> = followers
            .iter()
            .filter(|(name, follower)| {
                follower_index.is_none_or(|wanted| wanted == name.as_str())
                    && !follower.tasks.is_empty()
            })
            .map(|(name, follower)| {
                let shards: Vec<ShardFollowStats> =
                    follower.tasks.iter().map(ShardFollowTask::stats).collect();
                IndexFollowStats::new(name.clone(), shards)
            })
            .collect();
        // A recovering follower has no task yet: its shards show no checkpoint, and a failed
        // recovery's reason as their fatal exception.
        for (name, entry) in recovering.iter() {
            if follower_index.is_some_and(|wanted| wanted != name) {
                continue;
            }
            let fatal_exception = entry.fatal_exception();
            let shards = (0..entry.shards)
                .map(|shard| {
                    ShardFollowStats::before_following(
                        &entry.metadata.remote_cluster,
                        &entry.metadata.leader_index,
                        name,
                        shard,
                        fatal_exception.clone(),
                    )
                })
                .collect();
            out.push(IndexFollowStats::new(name.clone(), shards));
        }
        out.sort_by(|a, b| a.index.cmp(&b.index));
        Ok(out)
    }

    /// Stops every task (the follow state stays as persisted, so a reopen resumes them) and
    /// abandons the recoveries still running in the background (their half-copied directory
    /// is removed when the indices are next opened).
    pub async fn shutdown(&self) {
        let cleanup = self.lease_cleanup_task.lock().take();
        if let Some(task) = cleanup {
            task.abort();
            let _ = task.await;
        }
        let background: Vec<_> = self
            .recovering
            .lock()
            .values_mut()
            .filter_map(|entry| entry.task.take())
            .collect();
        for handle in background {
            handle.abort();
            let _ = handle.await;
        }
        let mut followers = self.followers.lock().await;
        for follower in followers.values_mut() {
            for task in std::mem::take(&mut follower.tasks) {
                task.stop().await;
            }
        }
    }

    /// Stores the follow state of `followers`, on the blocking pool. Callers hold the
    /// `followers` lock across it, so that the file follows the changes in their order (see
    /// [`state_file::store_off_thread`] for why that is safe).
    fn persist(&self, followers: &BTreeMap<String, Follower>) -> state_file::StoreOffThread {
        let state: BTreeMap<&String, &FollowerMetadata> = followers
            .iter()
            .map(|(name, follower)| (name, &follower.metadata))
            .collect();
        state_file::store_off_thread(self.storage().clone(), &self.state_dir, STATE_FILE, &state)
    }

    /// The storage of the follower indices and of the follow state.
    pub fn storage(&self) -> &StorageRef {
        self.indices.storage()
    }
}

/// Runs the engine call `work` on the blocking pool; a panic in it (a bug) is an engine error
/// naming `context`.
async fn on_blocking_pool<T: Send + 'static>(
    context: &'static str,
    work: impl FnOnce() -> tandem_engine::Result<T> + Send + 'static,
) -> Result<T, CcrError> {
    let result = tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|error| {
            Err(tandem_engine::EngineError::Closed(format!(
                "{context} failed: {error}"
            )))
        });
    Ok(result?)
}

/// Removes the directory of a cancelled or failed recovery. A chunk write or a file rename of
/// the recovery may still be finishing on a blocking thread (they are not cancellable), which
/// can make one removal fail: it is tried a few times, then left to the next start (a directory
/// without index metadata is removed when the indices are opened).
async fn remove_dir_with_retries(storage: &StorageRef, dir: &Path) {
    const ATTEMPTS: u32 = 10;
    for attempt in 1..=ATTEMPTS {
        // A recovery directory may hold many large files: removed on the blocking pool.
        let removing = dir.to_path_buf();
        let storage = storage.clone();
        let removed = tokio::task::spawn_blocking(move || storage.remove_dir_all(&removing))
            .await
            .unwrap_or_else(|error| Err(std::io::Error::other(error)));
        match removed {
            Ok(()) => return,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
            Err(error) if attempt == ATTEMPTS => {
                tracing::warn!(dir = %dir.display(), %error, "cannot remove the files of a stopped recovery; they are removed at the next start");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Recovers every shard of the follower index into `dir`, one after the other; returns the
/// leader shards' history uuids.
async fn recover_shards(
    targets: &[RecoveryTarget],
    leader: &IndexMetadata,
    settings: &IndexSettings,
    dir: &Path,
    lease_id: &str,
) -> Result<Vec<String>, CcrError> {
    let mapper = Arc::new(DocumentMapper::new(
        leader.mappings.clone(),
        leader.mapping_version,
        None,
    ));
    let mut shard_config = settings.shard_config();
    shard_config.follower = true;
    let mut history_uuids = Vec::new();
    for (target, shard) in targets.iter().zip(0..) {
        let recovered = target
            .recover(RecoveryRequest {
                leader_shard: ShardId::new(leader.name.clone(), shard),
                follower_shard_dir: dir.join(shard.to_string()),
                lease_id: lease_id.to_string(),
                mapper: mapper.clone(),
                shard_config: shard_config.clone(),
            })
            .await?;
        history_uuids.push(recovered.commit.session.history_uuid.clone());
        // Reopened by the index, with the index's own mapper.
        recovered.engine.close()?;
    }
    Ok(history_uuids)
}

/// Checks every leader shard still has the history the follower was recovered from (a leader
/// restored from a snapshot, or re-created with the same uuid, has another one): following
/// another history would silently mix two.
async fn check_leader_histories(
    client: &dyn LeaderClient,
    metadata: &FollowerMetadata,
) -> Result<(), CcrError> {
    for (expected, shard) in metadata.leader_history_uuids.iter().zip(0..) {
        let shard_id = ShardId::new(metadata.leader_index.clone(), shard);
        // A read far above anything written, without waiting: only the history check runs.
        let peek = ShardChangesRequest {
            shard: shard_id.clone(),
            changes: ChangesRequest {
                from_seq_no: SeqNo(i64::MAX),
                max_operation_count: 1,
                max_batch_size: 1,
                poll_timeout: Duration::ZERO,
                expected_history_uuid: Some(expected.clone()),
            },
        };
        match client.shard_changes(peek).await {
            Ok(_) => {}
            Err(LeaderError::HistoryUuidMismatch { expected, actual }) => {
                return Err(CcrError::LeaderChanged(format!(
                    "leader shard [{}][{}] should reference [{expected}] as history uuid but \
                     instead reference [{actual}] as history uuid",
                    shard_id.index, shard_id.shard
                )));
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}
