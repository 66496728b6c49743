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
//! - no task outlives a pause, an unfollow or [`FollowerIndices::shutdown`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tandem_engine::index::{Index, IndexMetadata};
use tandem_engine::indices::Indices;
use tandem_engine::mapper::DocumentMapper;
use tandem_recovery::client::{LeaderClient, ShardId};
use tandem_recovery::target::{RecoveryRequest, RecoverySettings, RecoveryTarget};
use tokio::sync::Mutex;

use crate::error::CcrError;
use crate::leader::follower_lease_id;
use crate::params::{FollowParameters, ResolvedFollowParameters};
use crate::remote::RemoteClusters;
use crate::state_file;
use crate::stats::{IndexFollowStats, ShardFollowStats};
use crate::task::{
    FollowerLease, ShardFollowTask, ShardFollowTaskConfig, DEFAULT_LEASE_RENEW_INTERVAL,
};

/// File of the persisted follow state.
const STATE_FILE: &str = "ccr_followers.json";

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
}

impl FollowInfo {
    /// Elasticsearch's rendering of one follower (`status` active or paused; parameters only
    /// for active followers).
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
        entry
    }
}

struct Follower {
    metadata: FollowerMetadata,
    tasks: Vec<ShardFollowTask>,
}

/// The follower indices of this cluster (see the module documentation).
pub struct FollowerIndices {
    cluster_name: String,
    indices: Arc<Indices>,
    remotes: Arc<RemoteClusters>,
    recovery: RecoverySettings,
    state_dir: PathBuf,
    followers: Mutex<BTreeMap<String, Follower>>,
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
        let state: BTreeMap<String, FollowerMetadata> = state_file::load(state_dir, STATE_FILE)?;
        let this = FollowerIndices {
            cluster_name: cluster_name.into(),
            indices,
            remotes,
            recovery,
            state_dir: state_dir.to_path_buf(),
            followers: Mutex::new(BTreeMap::new()),
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
        }
        Ok(this)
    }

    /// Creates `follower_index` as a copy of the leader index (remote recovery of every shard,
    /// a retention lease on each leader shard) and starts following it. Returns once the
    /// shards are recovered and their tasks run.
    pub async fn follow(&self, request: FollowRequest) -> Result<FollowResponse, CcrError> {
        let parameters = request.parameters.resolve()?;
        let client = self.remotes.get(&request.remote_cluster)?;
        if self.indices.metadata(&request.follower_index).is_ok() {
            return Err(CcrError::Engine(
                tandem_engine::EngineError::IndexAlreadyExists {
                    name: request.follower_index.clone(),
                },
            ));
        }
        // The recovery runs without the lock: stats and other followers' requests go on.
        let leader = client.index_metadata(&request.leader_index).await?;
        let follower_uuid = uuid::Uuid::new_v4().simple().to_string();
        let lease_id = follower_lease_id(
            &self.cluster_name,
            &request.follower_index,
            &follower_uuid,
            &request.remote_cluster,
            &leader.name,
            &leader.uuid,
        );
        let dir = self.indices.new_index_dir();
        let recovered = self
            .recover_shards(client.clone(), &leader, &dir, &lease_id)
            .await;
        let history_uuids = match recovered {
            Ok(uuids) => uuids,
            Err(error) => {
                if let Err(cleanup) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), %cleanup, "cannot remove a failed recovery");
                }
                return Err(error);
            }
        };
        let metadata = IndexMetadata {
            name: request.follower_index.clone(),
            uuid: follower_uuid,
            ..leader.clone()
        };
        let mut followers = self.followers.lock().await;
        self.indices.register_built(&dir, &metadata)?;
        let follow = FollowerMetadata {
            remote_cluster: request.remote_cluster.clone(),
            leader_index: leader.name.clone(),
            leader_index_uuid: leader.uuid.clone(),
            leader_history_uuids: history_uuids,
            parameters: request.parameters.to_es_json(),
            paused: false,
            lease_id,
        };
        let tasks = self.start_tasks_with(&request.follower_index, &follow, client, parameters)?;
        followers.insert(
            request.follower_index.clone(),
            Follower {
                metadata: follow,
                tasks,
            },
        );
        self.persist(&followers)?;
        Ok(FollowResponse {
            follow_index_created: true,
            follow_index_shards_acked: true,
            index_following_started: true,
        })
    }

    async fn recover_shards(
        &self,
        client: Arc<dyn LeaderClient>,
        leader: &IndexMetadata,
        dir: &Path,
        lease_id: &str,
    ) -> Result<Vec<String>, CcrError> {
        let mapper = Arc::new(DocumentMapper::new(
            leader.mappings.clone(),
            leader.mapping_version,
            None,
        ));
        let mut shard_config = leader.settings.shard_config();
        shard_config.follower = true;
        let mut history_uuids = Vec::new();
        for shard in 0..leader.settings.number_of_shards {
            let target = RecoveryTarget::new(client.clone(), self.recovery.clone())?;
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
        self.persist(&followers)
    }

    /// Resumes a paused follower, with `parameters` (the defaults where unset, as
    /// Elasticsearch does). Checks first that the leader index is still the one followed:
    /// same uuid and shard count.
    pub async fn resume(
        &self,
        follower_index: &str,
        parameters: FollowParameters,
    ) -> Result<(), CcrError> {
        let resolved = parameters.resolve()?;
        let mut followers = self.followers.lock().await;
        let follower = followers
            .get_mut(follower_index)
            .ok_or_else(|| CcrError::NotAFollower(follower_index.to_string()))?;
        if !follower.metadata.paused {
            return Err(CcrError::AlreadyFollowing(follower_index.to_string()));
        }
        let client = self.remotes.get(&follower.metadata.remote_cluster)?;
        let leader = client
            .index_metadata(&follower.metadata.leader_index)
            .await?;
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
                "leader index [{}] has [{}] shards, follower index [{follower_index}] has [{}]",
                leader.name, leader.settings.number_of_shards, follower_shards
            )));
        }
        let mut metadata = follower.metadata.clone();
        metadata.paused = false;
        metadata.parameters = parameters.to_es_json();
        follower.tasks = self.start_tasks_with(follower_index, &metadata, client, resolved)?;
        follower.metadata = metadata;
        self.persist(&followers)
    }

    /// Turns a paused and closed follower index into a normal index (writable once opened)
    /// and removes its retention leases from the leader. The conversion happens even when
    /// the leader cannot be reached; the leases that could not be removed are returned (they
    /// expire on the leader after their period).
    pub async fn unfollow(&self, follower_index: &str) -> Result<Vec<String>, CcrError> {
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
        self.indices
            .with_closed_index(follower_index, |dir, metadata| {
                Index::set_follower_markers(dir, metadata.settings.number_of_shards, false)
            })?;
        let metadata = follower.metadata.clone();
        followers.remove(follower_index);
        self.persist(&followers)?;
        drop(followers);
        let mut not_removed = Vec::new();
        let shards = self
            .indices
            .metadata(follower_index)?
            .settings
            .number_of_shards;
        let client = self.remotes.get(&metadata.remote_cluster).ok();
        for shard in 0..shards {
            let shard_id = ShardId::new(metadata.leader_index.clone(), shard);
            let removed = match &client {
                Some(client) => client
                    .remove_retention_lease(shard_id.clone(), metadata.lease_id.clone())
                    .await
                    .map_err(|error| error.to_string()),
                None => Err(format!(
                    "no such remote cluster: [{}]",
                    metadata.remote_cluster
                )),
            };
            if let Err(error) = removed {
                tracing::warn!(%shard_id, lease = %metadata.lease_id, %error, "could not remove a follower retention lease");
                not_removed.push(format!("{shard_id}: {error}"));
            }
        }
        Ok(not_removed)
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
            });
        }
        if let Some(name) = follower_index {
            if out.is_empty() {
                return Err(CcrError::NotAFollower(name.to_string()));
            }
        }
        Ok(out)
    }

    /// Follow stats of every following (not paused) index, or of the given one.
    pub async fn stats(
        &self,
        follower_index: Option<&str>,
    ) -> Result<Vec<IndexFollowStats>, CcrError> {
        let followers = self.followers.lock().await;
        if let Some(name) = follower_index {
            if !followers.contains_key(name) {
                return Err(CcrError::NotAFollower(name.to_string()));
            }
        }
        Ok(followers
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
            .collect())
    }

    /// Stops every task (the follow state stays as persisted, so a reopen resumes them).
    pub async fn shutdown(&self) {
        let mut followers = self.followers.lock().await;
        for follower in followers.values_mut() {
            for task in std::mem::take(&mut follower.tasks) {
                task.stop().await;
            }
        }
    }

    fn persist(&self, followers: &BTreeMap<String, Follower>) -> Result<(), CcrError> {
        let state: BTreeMap<&String, &FollowerMetadata> = followers
            .iter()
            .map(|(name, follower)| (name, &follower.metadata))
            .collect();
        state_file::store(&self.state_dir, STATE_FILE, &state)
    }
}
