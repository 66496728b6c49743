//! The leader side of the follow lifecycle: the follower's retention lease id, and
//! forget-follower (`POST /{leader}/_ccr/forget_follower`), which removes a follower's leases
//! from every shard of a leader index so its history is no longer held for it.

use serde::Serialize;
use tandem_engine::index::Index;

/// The id of the retention lease a follower index holds on each shard of its leader index
/// (Elasticsearch's format, so that forget-follower requests written for it work).
pub fn follower_lease_id(
    follower_cluster: &str,
    follower_index: &str,
    follower_index_uuid: &str,
    leader_remote_cluster: &str,
    leader_index: &str,
    leader_index_uuid: &str,
) -> String {
    format!(
        "{follower_cluster}/{follower_index}/{follower_index_uuid}-following-\
         {leader_remote_cluster}/{leader_index}/{leader_index_uuid}"
    )
}

/// The id of the lease a promoted index holds on its own shards, keeping their history above
/// the promotion's recovery point for a failback of the old leader (see
/// [`crate::follower_indices::FollowerIndices::promote`]).
pub fn promotion_lease_id(cluster: &str, index: &str, index_uuid: &str) -> String {
    format!("{cluster}/{index}/{index_uuid}-promoted")
}

/// A forget-follower request, as sent to the leader cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgetFollowerRequest {
    /// Name of the follower's cluster.
    pub follower_cluster: String,
    /// The follower index.
    pub follower_index: String,
    /// The follower index's uuid.
    pub follower_index_uuid: String,
    /// The alias under which the follower cluster knows this (leader) cluster.
    pub leader_remote_cluster: String,
}

/// One shard whose lease could not be removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShardFailure {
    /// Shard number.
    pub shard: u32,
    /// Why.
    pub reason: String,
}

/// Elasticsearch's `_shards` summary of a forget-follower.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForgetFollowerResponse {
    /// Shards of the leader index.
    pub total: u32,
    /// Shards whose lease is gone (removed now, or absent already).
    pub successful: u32,
    /// Shards whose lease could not be removed.
    pub failed: u32,
    /// The failures.
    pub failures: Vec<ShardFailure>,
}

/// Removes the follower's lease from every shard of `leader`. A shard that has no such lease
/// counts as successful: forgetting is idempotent.
pub fn forget_follower(leader: &Index, request: &ForgetFollowerRequest) -> ForgetFollowerResponse {
    let metadata = leader.metadata();
    let lease_id = follower_lease_id(
        &request.follower_cluster,
        &request.follower_index,
        &request.follower_index_uuid,
        &request.leader_remote_cluster,
        &metadata.name,
        &metadata.uuid,
    );
    let mut failures = Vec::new();
    for (shard, engine) in leader.shards().iter().enumerate() {
        if !engine.retention_leases().leases.contains_key(&lease_id) {
            continue;
        }
        if let Err(error) = engine.remove_retention_lease(&lease_id) {
            failures.push(ShardFailure {
                shard: shard as u32,
                reason: error.to_string(),
            });
        }
    }
    let total = leader.shards().len() as u32;
    let failed = failures.len() as u32;
    ForgetFollowerResponse {
        total,
        successful: total - failed,
        failed,
        failures,
    }
}
