//! The flood-stage disk watermark: the node watches the disk of its data directory and, once
//! it passes `cluster.routing.allocation.disk.watermark.flood_stage` (95% by default), sets
//! `index.blocks.read_only_allow_delete` on every open index, so that writes (a follower's
//! included) are refused with a 429 that clients and follow tasks retry, before the disk is
//! actually full and a commit fails. Once the disk is back under the high watermark (90%), the
//! node clears the block again, as Elasticsearch has done since 7.4.
//!
//! Guarantees:
//! - the disk is checked at start, every `cluster.info.update.interval` (30s by default, at
//!   least [`MIN_CHECK_INTERVAL`]) and at once when a watermark setting changes;
//! - past the flood stage, every open index is blocked at each check (an index opened or
//!   created since, or unblocked by hand, is blocked again); under the high watermark, every
//!   open index with the block is unblocked, a block set by hand included; in between,
//!   nothing changes;
//! - a block that cannot be persisted (the disk too full to write the index's metadata) still
//!   holds in memory (a restart checks the disk again before long);
//! - `cluster.routing.allocation.disk.threshold_enabled: false` stops the checks; blocks
//!   already set stay until cleared by hand, as in Elasticsearch.
//!
//! One node holds every shard of its indices, so "every index with a shard on the node" is
//! every open index.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tandem_engine::Indices;
use tandem_recovery::DiskWatermark;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Elasticsearch's low watermark: checked for order against the others; a one-node cluster
/// has nowhere else to allocate shards, so it has no other effect.
pub const DISK_WATERMARK_LOW_SETTING: &str = "cluster.routing.allocation.disk.watermark.low";
/// Past this watermark every index of the node is blocked.
pub const DISK_WATERMARK_FLOOD_STAGE_SETTING: &str =
    "cluster.routing.allocation.disk.watermark.flood_stage";
/// How often the disk is checked.
pub const INFO_UPDATE_INTERVAL_SETTING: &str = "cluster.info.update.interval";
/// The shortest check interval Elasticsearch accepts.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// What the disk monitor does (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskMonitorSettings {
    /// `cluster.routing.allocation.disk.threshold_enabled` (default true).
    pub enabled: bool,
    /// `…watermark.low` (default 85%).
    pub low: DiskWatermark,
    /// `…watermark.high` (default 90%): blocks are cleared under it.
    pub high: DiskWatermark,
    /// `…watermark.flood_stage` (default 95%): every index is blocked past it.
    pub flood_stage: DiskWatermark,
    /// `cluster.info.update.interval` (default 30s).
    pub interval: Duration,
}

impl Default for DiskMonitorSettings {
    fn default() -> Self {
        DiskMonitorSettings {
            enabled: true,
            low: DiskWatermark::UsedBasisPoints(8_500),
            high: DiskWatermark::UsedBasisPoints(9_000),
            flood_stage: DiskWatermark::UsedBasisPoints(9_500),
            interval: Duration::from_secs(30),
        }
    }
}

/// What one check found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The indices blocked by this check.
    pub blocked: Vec<String>,
    /// The indices unblocked by this check.
    pub unblocked: Vec<String>,
}

/// Starts the monitor; it checks at once, then as the module documentation says, until the
/// settings' sender is dropped.
pub fn spawn(
    indices: Arc<Indices>,
    data: PathBuf,
    mut settings: watch::Receiver<DiskMonitorSettings>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut flooded = false;
        loop {
            let current = *settings.borrow_and_update();
            let checked = {
                let (indices, data) = (indices.clone(), data.clone());
                tokio::task::spawn_blocking(move || check(&indices, &data, &current)).await
            };
            match checked {
                Ok(Some((space, outcome))) => {
                    report(&data, &current, space, &outcome, &mut flooded);
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "checking the disk failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(current.interval) => {}
                changed = settings.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// Logs what a check found: the flood stage once when it is passed, and every change.
fn report(
    data: &std::path::Path,
    settings: &DiskMonitorSettings,
    space: tandem_engine::storage::DiskSpace,
    outcome: &CheckOutcome,
    flooded: &mut bool,
) {
    let passed = settings
        .flood_stage
        .is_exceeded(space.total_bytes, space.available_bytes);
    if passed && !*flooded {
        tracing::warn!(
            path = %data.display(),
            watermark = %settings.flood_stage,
            available_bytes = space.available_bytes,
            total_bytes = space.total_bytes,
            "flood stage disk watermark exceeded: every index on this node is marked read-only (index.blocks.read_only_allow_delete) until the disk is under the high watermark"
        );
    }
    *flooded = passed;
    if !outcome.blocked.is_empty() {
        tracing::warn!(indices = ?outcome.blocked, "disk past the flood stage watermark: indices blocked");
    }
    if !outcome.unblocked.is_empty() {
        tracing::info!(
            indices = ?outcome.unblocked,
            watermark = %settings.high,
            available_bytes = space.available_bytes,
            "disk under the high watermark: read-only-allow-delete block released"
        );
    }
}

/// One check of the disk under `data` (see the module documentation); `None` when the
/// monitor is disabled or the disk's size cannot be known.
pub fn check(
    indices: &Indices,
    data: &std::path::Path,
    settings: &DiskMonitorSettings,
) -> Option<(tandem_engine::storage::DiskSpace, CheckOutcome)> {
    if !settings.enabled {
        return None;
    }
    let space = match indices.storage().disk_space(data) {
        Ok(Some(space)) => space,
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(path = %data.display(), %error, "cannot read the disk's free space");
            return None;
        }
    };
    let (total, available) = (space.total_bytes, space.available_bytes);
    let mut outcome = CheckOutcome::default();
    let block = if settings.flood_stage.is_exceeded(total, available) {
        true
    } else if !settings.high.is_exceeded(total, available) {
        false
    } else {
        return Some((space, outcome));
    };
    for name in indices.names() {
        // Closed indices take no writes; an index opened later is checked next time.
        let Ok(index) = indices.get(&name) else {
            continue;
        };
        if index.read_only_allow_delete() == block {
            continue;
        }
        if let Err(error) = index.set_read_only_allow_delete(block) {
            tracing::error!(index = %name, %error, blocked = block, "cannot persist index.blocks.read_only_allow_delete; it holds in memory");
        }
        if block {
            outcome.blocked.push(name);
        } else {
            outcome.unblocked.push(name);
        }
    }
    Some((space, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(high_keep: u64, flood_keep: u64) -> DiskMonitorSettings {
        DiskMonitorSettings {
            low: DiskWatermark::FreeBytes(high_keep),
            high: DiskWatermark::FreeBytes(high_keep),
            flood_stage: DiskWatermark::FreeBytes(flood_keep),
            ..DiskMonitorSettings::default()
        }
    }

    #[test]
    fn blocks_past_the_flood_stage_keeps_between_the_marks_and_releases_under_the_high_one() {
        let dir = tempfile::tempdir().unwrap();
        let indices = Indices::open(dir.path()).unwrap();
        for name in ["a", "b"] {
            indices.create(name, &json!({}), &json!({})).unwrap();
        }
        let blocked = |name: &str| indices.get(name).unwrap().read_only_allow_delete();

        let (_, outcome) = check(&indices, dir.path(), &settings(u64::MAX, u64::MAX)).unwrap();
        assert_eq!(outcome.blocked, ["a", "b"]);
        assert!(blocked("a") && blocked("b"));
        // Unblocked by hand while still past the flood stage: blocked again.
        indices
            .get("b")
            .unwrap()
            .set_read_only_allow_delete(false)
            .unwrap();
        let (_, outcome) = check(&indices, dir.path(), &settings(u64::MAX, u64::MAX)).unwrap();
        assert_eq!(outcome.blocked, ["b"]);

        // Past the high watermark, under the flood stage: nothing changes either way.
        indices.create("c", &json!({}), &json!({})).unwrap();
        let (_, outcome) = check(&indices, dir.path(), &settings(u64::MAX, 0)).unwrap();
        assert_eq!(outcome, CheckOutcome::default());
        assert!(blocked("a") && !blocked("c"));

        // Under the high watermark: every block goes, one set by hand included.
        indices
            .get("c")
            .unwrap()
            .set_read_only_allow_delete(true)
            .unwrap();
        let (_, outcome) = check(&indices, dir.path(), &settings(0, 0)).unwrap();
        assert_eq!(outcome.unblocked, ["a", "b", "c"]);
        assert!(!blocked("a") && !blocked("b") && !blocked("c"));

        // Disabled: no check at all.
        let disabled = DiskMonitorSettings {
            enabled: false,
            ..settings(u64::MAX, u64::MAX)
        };
        assert!(check(&indices, dir.path(), &disabled).is_none());
        assert!(!blocked("a"));
    }
}
