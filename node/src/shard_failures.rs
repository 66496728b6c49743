//! Repairs failed shards: an index with a failed shard (see `ShardEngine::failure`) is
//! reopened from its durable state, as Elasticsearch reallocates a failed shard, so that the
//! sequence numbers the failure left unprocessed are filled with no-ops and the checkpoints, and
//! every follower, move on. Until then the index is red in `_cluster/health`.
//!
//! Guarantees:
//! - an open index with a failed shard is reopened; an index whose reopen failed (left closed
//!   and down, see `Indices::failed_reopens`) is opened again;
//! - the attempts on one index back off: [`SHARD_FAILURE_CHECK_INTERVAL`] after the first,
//!   then twice as long each time, up to [`MAX_RETRY_DELAY`];
//! - at most [`MAX_REOPEN_ATTEMPTS`] failed attempts in a row (Elasticsearch's
//!   `index.allocation.max_retries`), after which the index stays red until an operator opens
//!   it (or closes and opens it) or the node restarts; except while the failure is a full
//!   disk (`ENOSPC`): then the attempts go on until space returns, as Elasticsearch waits for
//!   disk before it allocates a shard again;
//! - the follow tasks of a failed follower index are stopped for the reopen and started again
//!   after.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tandem_engine::Indices;
use tandem_replication::follower_indices::FollowerIndices;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often the node looks for failed shards, and the first retry delay.
pub const SHARD_FAILURE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Failed reopens of one index tried in a row before it is left failed (a full disk aside).
pub const MAX_REOPEN_ATTEMPTS: u32 = 5;
/// The longest delay between two attempts on one index.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// How long a reopen waits for the users of the failed index (long polls end at once).
const REOPEN_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The attempts on one index so far.
struct Attempts {
    tried: u32,
    next: Instant,
}

/// Whether a failure is a full disk, which the node waits out instead of giving up on.
pub fn is_no_space(reason: &str) -> bool {
    reason.contains("No space left on device") || reason.contains("os error 28")
}

/// Whether an index that failed `tried` attempts in a row, the last with `reason`, is tried
/// again (see the module documentation).
fn worth_another_attempt(tried: u32, reason: &str) -> bool {
    tried < MAX_REOPEN_ATTEMPTS || is_no_space(reason)
}

/// The delay after `tried` attempts.
fn retry_delay(tried: u32) -> Duration {
    SHARD_FAILURE_CHECK_INTERVAL
        .saturating_mul(1 << tried.saturating_sub(1).min(16))
        .min(MAX_RETRY_DELAY)
}

/// Starts the repair loop.
pub fn spawn(indices: Arc<Indices>, followers: Arc<FollowerIndices>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut attempts: BTreeMap<String, Attempts> = BTreeMap::new();
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
            attempts.retain(|name, _| failed.contains_key(name));
            for (name, (reason, down)) in failed {
                let now = Instant::now();
                let entry = attempts.entry(name.clone()).or_insert(Attempts {
                    tried: 0,
                    next: now,
                });
                if now < entry.next || !worth_another_attempt(entry.tried, &reason) {
                    continue;
                }
                entry.tried += 1;
                entry.next = now + retry_delay(entry.tried);
                let attempt = entry.tried;
                let result = if down {
                    reopen_down(&indices, &followers, &name).await
                } else {
                    repair(&indices, &followers, &name).await
                };
                match result {
                    Ok(repaired) => {
                        attempts.remove(&name);
                        tracing::warn!(index = %name, failures = ?repaired, "index reopened after a shard failure");
                    }
                    Err(error) if is_no_space(&error) => {
                        tracing::warn!(index = %name, %error, attempt, "cannot reopen the index after a shard failure: the disk is full; retrying until space is freed");
                    }
                    Err(error) if attempt >= MAX_REOPEN_ATTEMPTS => {
                        tracing::error!(index = %name, %error, attempt, "cannot reopen the index after a shard failure; giving up (open it, or close and open it, to retry)");
                    }
                    Err(error) => {
                        tracing::warn!(index = %name, %error, attempt, "cannot reopen the index after a shard failure; retrying");
                    }
                }
            }
        }
    })
}

/// The indices to repair, with why and whether they are down (closed by a failed reopen)
/// rather than open with a failed shard.
fn failed_indices(indices: &Indices) -> BTreeMap<String, (String, bool)> {
    let mut failed: BTreeMap<String, (String, bool)> = indices
        .names()
        .into_iter()
        .filter_map(|name| {
            let failures = indices.get(&name).ok()?.shard_failures();
            let reason = failures
                .into_iter()
                .map(|(_, failure)| failure)
                .collect::<Vec<_>>()
                .join("; ");
            (!reason.is_empty()).then_some((name, (reason, false)))
        })
        .collect();
    for (name, reason) in indices.failed_reopens() {
        failed.insert(name, (reason, true));
    }
    failed
}

/// Reopens `name`; returns the failures repaired.
async fn repair(
    indices: &Arc<Indices>,
    followers: &FollowerIndices,
    name: &str,
) -> Result<Vec<String>, String> {
    followers.index_closing(name).await;
    let reopened = on_blocking_pool(indices, name, |indices, name| {
        indices.reopen_failed(name, REOPEN_DRAIN_TIMEOUT)
    })
    .await;
    // Also when the reopen failed: a reopen refused because the index was still in use
    // left it open, and its follow tasks must run again.
    restart_following(followers, name).await;
    reopened
}

/// Opens `name` again after its reopen failed; returns what had kept it down.
async fn reopen_down(
    indices: &Arc<Indices>,
    followers: &FollowerIndices,
    name: &str,
) -> Result<Vec<String>, String> {
    let opened = on_blocking_pool(indices, name, |indices, name| {
        let reason = indices.failed_reopens().remove(name);
        indices
            .retry_failed_reopen(name)
            .map(|()| reason.into_iter().collect())
    })
    .await;
    if opened.is_ok() {
        restart_following(followers, name).await;
    }
    opened
}

/// Runs `reopen` on index `name` on the blocking pool (it waits on the disk); its error, or
/// the task's, as text.
async fn on_blocking_pool(
    indices: &Arc<Indices>,
    name: &str,
    reopen: fn(&Indices, &str) -> tandem_engine::Result<Vec<String>>,
) -> Result<Vec<String>, String> {
    let (indices, name) = (indices.clone(), name.to_string());
    tokio::task::spawn_blocking(move || reopen(&indices, &name))
        .await
        .map_err(|error| error.to_string())
        .and_then(|reopened| reopened.map_err(|error| error.to_string()))
}

async fn restart_following(followers: &FollowerIndices, name: &str) {
    if let Err(error) = followers.index_opened(name).await {
        tracing::warn!(index = %name, %error, "cannot restart following after reopening the index");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_the_longest_delay() {
        let delays: Vec<u64> = (1..=7).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }

    #[test]
    fn a_full_disk_is_waited_out_other_failures_are_given_up_on() {
        let full = std::io::Error::from_raw_os_error(28).to_string();
        let broken = std::io::Error::from_raw_os_error(5).to_string();
        for tried in 0..MAX_REOPEN_ATTEMPTS {
            assert!(worth_another_attempt(tried, &broken));
        }
        assert!(!worth_another_attempt(MAX_REOPEN_ATTEMPTS, &broken));
        assert!(worth_another_attempt(MAX_REOPEN_ATTEMPTS, &full));
        assert!(worth_another_attempt(1_000, &full));
    }

    #[test]
    fn a_full_disk_is_told_by_its_os_error() {
        let full = std::io::Error::from_raw_os_error(28).to_string();
        assert!(is_no_space(&format!("writing x.idx: {full}")), "{full}");
        assert!(!is_no_space("Input/output error (os error 5)"));
    }
}
