//! Repairs failed shards: an index with a failed shard (see `ShardEngine::failure`) is
//! reopened from its durable state, as Elasticsearch reallocates a failed shard, so that the
//! sequence numbers the failure left unprocessed are filled with no-ops and the checkpoints, and
//! every follower, move on. Until then the index is red in `_cluster/health`.
//!
//! Guarantees: a failed index is retried every [`SHARD_FAILURE_CHECK_INTERVAL`], at most
//! [`MAX_REOPEN_ATTEMPTS`] times in a row (Elasticsearch's `index.allocation.max_retries`);
//! after that it stays red until an operator closes and opens it, or the node restarts. The
//! follow tasks of a failed follower index are stopped for the reopen and started again after.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tandem_engine::Indices;
use tandem_replication::follower_indices::FollowerIndices;
use tokio::task::JoinHandle;

/// How often the node looks for failed shards.
pub const SHARD_FAILURE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Reopens of one index tried in a row before it is left failed.
pub const MAX_REOPEN_ATTEMPTS: u32 = 5;
/// How long a reopen waits for the users of the failed index (long polls end at once).
const REOPEN_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the repair loop.
pub fn spawn(indices: Arc<Indices>, followers: Arc<FollowerIndices>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut attempts: BTreeMap<String, u32> = BTreeMap::new();
        let mut interval = tokio::time::interval(SHARD_FAILURE_CHECK_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let failed = {
                let indices = indices.clone();
                match tokio::task::spawn_blocking(move || failed_indices(&indices)).await {
                    Ok(failed) => failed,
                    Err(error) => {
                        tracing::warn!(%error, "looking for failed shards");
                        continue;
                    }
                }
            };
            attempts.retain(|name, _| failed.contains(name));
            for name in failed {
                let tried = attempts.entry(name.clone()).or_insert(0);
                if *tried >= MAX_REOPEN_ATTEMPTS {
                    continue;
                }
                *tried += 1;
                let attempt = *tried;
                match repair(&indices, &followers, &name).await {
                    Ok(repaired) => {
                        attempts.remove(&name);
                        tracing::warn!(index = %name, failures = ?repaired, "index reopened after a shard failure");
                    }
                    Err(error) if attempt >= MAX_REOPEN_ATTEMPTS => {
                        tracing::error!(index = %name, %error, attempt, "cannot reopen the index after a shard failure; giving up (close and open it to retry)");
                    }
                    Err(error) => {
                        tracing::warn!(index = %name, %error, attempt, "cannot reopen the index after a shard failure; retrying");
                    }
                }
            }
        }
    })
}

/// The open indices with a failed shard.
fn failed_indices(indices: &Indices) -> Vec<String> {
    indices
        .names()
        .into_iter()
        .filter(|name| {
            indices
                .get(name)
                .is_ok_and(|index| !index.shard_failures().is_empty())
        })
        .collect()
}

/// Reopens `name`; returns the failures repaired.
async fn repair(
    indices: &Arc<Indices>,
    followers: &FollowerIndices,
    name: &str,
) -> Result<Vec<String>, String> {
    followers.index_closing(name).await;
    let reopened = {
        let indices = indices.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || indices.reopen_failed(&name, REOPEN_DRAIN_TIMEOUT))
            .await
            .map_err(|error| error.to_string())
            .and_then(|reopened| reopened.map_err(|error| error.to_string()))
    };
    if let Err(error) = followers.index_opened(name).await {
        tracing::warn!(index = %name, %error, "cannot restart following after reopening the index");
    }
    reopened
}
