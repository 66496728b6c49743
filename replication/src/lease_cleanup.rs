//! `LeaseCleanup`: removes the retention leases a follower no longer needs from its leader,
//! retrying until the removal succeeds or the lease would have expired on the leader anyway.
//!
//! A follow that failed, was cancelled, unfollowed or deleted leaves one lease per leader
//! shard; each keeps the leader's history from its retaining sequence number on until it
//! expires (`index.soft_deletes.retention_lease.period`, 12 hours by default). When the leader
//! cannot be reached at that moment, the removal is recorded here instead of being forgotten.
//!
//! Guarantees:
//! - a removal that failed is persisted in `<state_dir>/ccr_pending_lease_removals.json`
//!   before [`LeaseCleanup::remove`] returns, so it survives a restart of the follower;
//! - each pending removal is retried with [`crate::backoff`] (capped at
//!   [`LEASE_REMOVAL_MAX_RETRY_DELAY`]) until the leader answers that the lease is gone (removed
//!   now, or absent already, or its index or shard gone) or until
//!   [`LEASE_EXPIRY_AFTER`] has passed since it was recorded (the leader has expired it);
//! - every failed attempt is logged with the lease and the reason, and
//!   [`LeaseCleanup::pending`] tells how many removals wait (shown in `_ccr/stats`);
//! - at most [`MAX_PENDING_LEASE_REMOVALS`] removals wait: beyond that the oldest is dropped
//!   with a log line (its lease expires on the leader).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tandem_engine::storage::StorageRef;
use tandem_recovery::{LeaderError, RemoveRetentionLeaseRequest, ShardId};
use tokio::sync::Notify;

use crate::backoff::retry_delay;
use crate::error::CcrError;
use crate::remote::RemoteClusters;
use crate::state_file;

/// File of the pending removals.
const PENDING_REMOVALS_FILE: &str = "ccr_pending_lease_removals.json";
/// How long after a removal was recorded the lease is taken as expired on the leader: the
/// default `index.soft_deletes.retention_lease.period`. The follower does not renew a lease
/// it is removing, so the leader expires it at the latest this long after it was recorded.
pub const LEASE_EXPIRY_AFTER: Duration = Duration::from_secs(12 * 3600);
/// The longest wait between two attempts of one removal.
pub const LEASE_REMOVAL_MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// The most removals that wait at once (a thousand follower indices of a thousand shards
/// is already beyond what a node holds).
pub const MAX_PENDING_LEASE_REMOVALS: usize = 100_000;
/// Deadline of one removal request.
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A pending removal's identity: remote cluster, leader index, shard, lease id.
type RemovalKey = (String, String, u32, String);

/// One lease to remove, as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLeaseRemoval {
    /// Alias of the leader cluster.
    pub remote_cluster: String,
    /// The leader shard.
    pub shard: ShardId,
    /// The lease id.
    pub lease_id: String,
    /// When the removal was first recorded, in milliseconds since the Unix epoch.
    pub recorded_millis: u64,
    /// Attempts that failed so far.
    pub failed_attempts: u32,
}

/// The pending removals and the task that retries them (see the module documentation).
pub struct LeaseCleanup {
    storage: StorageRef,
    remotes: Arc<RemoteClusters>,
    state_dir: PathBuf,
    /// Pending removals, by (remote, index, shard, lease id).
    pending: Mutex<BTreeMap<RemovalKey, PendingLeaseRemoval>>,
    /// Woken when a removal is recorded.
    wake: Notify,
}

impl LeaseCleanup {
    /// Loads the removals left pending by an earlier run from `state_dir`.
    pub fn open(
        storage: StorageRef,
        remotes: Arc<RemoteClusters>,
        state_dir: &Path,
    ) -> Result<LeaseCleanup, CcrError> {
        let loaded: Vec<PendingLeaseRemoval> =
            state_file::load(&*storage, state_dir, PENDING_REMOVALS_FILE)?;
        let pending = loaded
            .into_iter()
            .map(|removal| (key(&removal), removal))
            .collect();
        Ok(LeaseCleanup {
            storage,
            remotes,
            state_dir: state_dir.to_path_buf(),
            pending: Mutex::new(pending),
            wake: Notify::new(),
        })
    }

    /// Removals waiting for their leader.
    pub fn pending(&self) -> Vec<PendingLeaseRemoval> {
        self.pending.lock().values().cloned().collect()
    }

    /// Removes `lease_id` from every shard in `0..shards` of `leader_index` on `remote_cluster`;
    /// each removal that fails is recorded and retried in the background. Returns the
    /// failures of this first attempt (`"[index][shard]: reason"`).
    pub async fn remove(
        &self,
        remote_cluster: &str,
        leader_index: &str,
        shards: u32,
        lease_id: &str,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        let mut recorded = false;
        for shard in 0..shards {
            let shard_id = ShardId::new(leader_index, shard);
            if let Err(error) = self.try_remove(remote_cluster, &shard_id, lease_id).await {
                tracing::warn!(%shard_id, lease = %lease_id, %error, "could not remove a follower retention lease; retrying in the background");
                failures.push(format!("{shard_id}: {error}"));
                let removal = PendingLeaseRemoval {
                    remote_cluster: remote_cluster.to_string(),
                    shard: shard_id,
                    lease_id: lease_id.to_string(),
                    recorded_millis: now_millis(),
                    failed_attempts: 1,
                };
                self.record(removal);
                recorded = true;
            }
        }
        if recorded {
            self.persist();
            self.wake.notify_one();
        }
        failures
    }

    fn record(&self, removal: PendingLeaseRemoval) {
        let mut pending = self.pending.lock();
        pending.entry(key(&removal)).or_insert(removal);
        while pending.len() > MAX_PENDING_LEASE_REMOVALS {
            let oldest = pending
                .iter()
                .min_by_key(|(_, removal)| removal.recorded_millis)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest.and_then(|key| pending.remove(&key)) {
                tracing::warn!(shard = %oldest.shard, lease = %oldest.lease_id, "too many pending retention lease removals; this one is left to expire on the leader");
            }
        }
    }

    /// One attempt; `Ok` when the lease is gone from the leader.
    async fn try_remove(
        &self,
        remote_cluster: &str,
        shard: &ShardId,
        lease_id: &str,
    ) -> Result<(), String> {
        let client = self
            .remotes
            .get(remote_cluster)
            .map_err(|error| error.to_string())?;
        let request = RemoveRetentionLeaseRequest::new(shard.clone(), lease_id);
        match tokio::time::timeout(REMOVAL_TIMEOUT, client.remove_retention_lease(request)).await {
            Ok(Ok(()))
            | Ok(Err(
                LeaderError::RetentionLeaseNotFound(_)
                | LeaderError::IndexNotFound(_)
                | LeaderError::ShardNotFound { .. },
            )) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(LeaderError::Timeout(REMOVAL_TIMEOUT).to_string()),
        }
    }

    /// Persists the pending removals; a failure is logged (they are retried all the same, and
    /// recorded again by the next change).
    fn persist(&self) {
        let pending = self.pending();
        if let Err(error) = state_file::store(
            &*self.storage,
            &self.state_dir,
            PENDING_REMOVALS_FILE,
            &pending,
        ) {
            tracing::warn!(%error, "cannot persist the pending retention lease removals");
        }
    }

    /// Retries the pending removals until `self` is dropped by everyone else; spawn it once.
    pub async fn run(self: Arc<Self>) {
        let mut rng = StdRng::from_os_rng();
        loop {
            let due = self.pending();
            let mut next_delay = LEASE_REMOVAL_MAX_RETRY_DELAY;
            let mut changed = false;
            for removal in due {
                if Arc::strong_count(&self) == 1 {
                    return;
                }
                let key = key(&removal);
                let expired = now_millis().saturating_sub(removal.recorded_millis)
                    > LEASE_EXPIRY_AFTER.as_millis() as u64;
                let outcome = if expired {
                    tracing::info!(shard = %removal.shard, lease = %removal.lease_id, "giving up removing a retention lease: it has expired on the leader");
                    Ok(())
                } else {
                    self.try_remove(&removal.remote_cluster, &removal.shard, &removal.lease_id)
                        .await
                };
                match outcome {
                    Ok(()) => {
                        if !expired {
                            tracing::info!(shard = %removal.shard, lease = %removal.lease_id, "removed a follower retention lease left pending");
                        }
                        self.pending.lock().remove(&key);
                        changed = true;
                    }
                    Err(error) => {
                        let attempts = removal.failed_attempts.saturating_add(1);
                        tracing::warn!(shard = %removal.shard, lease = %removal.lease_id, attempts, %error, "removing a follower retention lease failed again; retrying");
                        if let Some(entry) = self.pending.lock().get_mut(&key) {
                            entry.failed_attempts = attempts;
                        }
                        next_delay = next_delay.min(retry_delay(
                            attempts,
                            LEASE_REMOVAL_MAX_RETRY_DELAY,
                            &mut rng,
                        ));
                    }
                }
            }
            if changed {
                self.persist();
            }
            if Arc::strong_count(&self) == 1 {
                return;
            }
            let _ = tokio::time::timeout(
                next_delay.max(Duration::from_millis(50)),
                self.wake.notified(),
            )
            .await;
        }
    }
}

fn key(removal: &PendingLeaseRemoval) -> RemovalKey {
    (
        removal.remote_cluster.clone(),
        removal.shard.index.clone(),
        removal.shard.shard,
        removal.lease_id.clone(),
    )
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
