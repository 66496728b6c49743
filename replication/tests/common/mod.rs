//! What the replication tests share: a follower cluster's indices and follower indices, opened
//! on real directories.
#![allow(dead_code)] // each test binary uses part of it

use std::path::Path;
use std::sync::Arc;

use tandem_engine::indices::Indices;
use tandem_recovery::target::RecoverySettings;
use tandem_replication::follower_indices::FollowerIndices;
use tandem_replication::remote::RemoteClusters;

/// Opens the follower cluster `cluster_name` in `dir` (its indices in `data/`, its follow
/// state in `state/`), reaching leaders through `remotes`; recoveries are not throttled.
pub async fn open_followers(
    cluster_name: &str,
    dir: &Path,
    remotes: Arc<RemoteClusters>,
) -> (Arc<Indices>, Arc<FollowerIndices>) {
    let indices = Arc::new(Indices::open(&dir.join("data")).expect("open the follower's indices"));
    let recovery = RecoverySettings {
        max_bytes_per_sec: 0,
        ..RecoverySettings::default()
    };
    let followers = FollowerIndices::open(
        cluster_name,
        indices.clone(),
        remotes,
        recovery,
        &dir.join("state"),
    )
    .await
    .expect("open the follower indices");
    (indices, Arc::new(followers))
}
