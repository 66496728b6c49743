//! `GET /{index}/_recovery` and `GET /_recovery`: the remote recoveries of follower indices in
//! Elasticsearch's shape (type `SNAPSHOT` from the `_ccr_<remote>` repository, as
//! Elasticsearch reports a CCR bootstrap), live while they run.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use tandem_recovery::progress::RecoveryStage;
use tandem_replication::follower_indices::FollowerShardRecovery;

use super::{ok, NodeState, Params};
use crate::error::RestError;
use crate::node::COMPATIBLE_VERSION;

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/_recovery", get(all_recoveries))
        .route("/{index}/_recovery", get(index_recoveries))
}

/// The recoveries of `index` (every follower when `None`), `active_only` keeping those still
/// running. A named index that does not exist is a 404.
pub fn recoveries(
    node: &NodeState,
    index: Option<&str>,
    active_only: bool,
) -> Result<Vec<FollowerShardRecovery>, RestError> {
    let mut found = Vec::new();
    match index {
        None => found.extend(node.followers.recoveries(None)),
        Some(names) => {
            for name in names.split(',') {
                if name == "_all" || name == "*" {
                    found.extend(node.followers.recoveries(None));
                    continue;
                }
                let recoveries = node.followers.recoveries(Some(name));
                if recoveries.is_empty() && node.indices.metadata(name).is_err() {
                    return Err(RestError::index_not_found(name));
                }
                found.extend(recoveries);
            }
        }
    }
    if active_only {
        found.retain(|recovery| {
            !matches!(
                recovery.progress.stage,
                RecoveryStage::Done | RecoveryStage::Failed
            )
        });
    }
    Ok(found)
}

/// Milliseconds since the Unix epoch.
pub fn epoch_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// `part` of `total` as Elasticsearch prints a recovery percentage (`42.0%`; `100.0%` when
/// there is nothing to recover).
pub fn percent(part: u64, total: u64) -> String {
    let value = if total == 0 {
        100.0
    } else {
        part as f64 * 100.0 / total as f64
    };
    format!("{value:.1}%")
}

/// Elasticsearch's stage name.
pub fn stage_name(stage: RecoveryStage) -> &'static str {
    match stage {
        RecoveryStage::Init => "INIT",
        RecoveryStage::Index => "INDEX",
        RecoveryStage::VerifyIndex => "VERIFY_INDEX",
        RecoveryStage::Finalize => "FINALIZE",
        RecoveryStage::Done => "DONE",
        RecoveryStage::Failed => "FAILED",
    }
}

fn render_shard(node: &NodeState, recovery: &FollowerShardRecovery) -> Value {
    let progress = &recovery.progress;
    let millis = |duration: Duration| duration.as_millis() as u64;
    let mut shard = json!({
        "id": recovery.shard,
        "type": "SNAPSHOT",
        "stage": stage_name(progress.stage),
        "primary": true,
        "start_time_in_millis": epoch_millis(progress.start_time),
        "total_time_in_millis": millis(progress.total_time),
        "source": {
            "repository": format!("_ccr_{}", recovery.remote_cluster),
            "snapshot": "_latest_",
            "version": COMPATIBLE_VERSION,
            "index": recovery.leader_index,
        },
        "target": {
            "id": node.identity.node_id,
            "host": node.config.http.ip().to_string(),
            "transport_address": node.config.http.to_string(),
            "ip": node.config.http.ip().to_string(),
            "name": node.config.name,
        },
        "index": {
            "size": {
                "total_in_bytes": progress.bytes_total,
                "reused_in_bytes": progress.bytes_reused,
                "recovered_in_bytes": progress.bytes_recovered,
                "percent": percent(progress.bytes_recovered, progress.bytes_total),
            },
            "files": {
                "total": progress.files_total,
                "reused": progress.files_reused,
                "recovered": progress.files_recovered,
                "percent": percent(progress.files_recovered, progress.files_total),
            },
            "total_time_in_millis": millis(progress.total_time),
            "source_throttle_time_in_millis": millis(progress.source_throttle_time),
            "target_throttle_time_in_millis": millis(progress.target_throttle_time),
        },
        "translog": {
            "recovered": 0,
            "total": 0,
            "percent": "100.0%",
            "total_on_start": 0,
            "total_time_in_millis": 0,
        },
        "verify_index": {
            "check_index_time_in_millis": 0,
            "total_time_in_millis": 0,
        },
    });
    if let Some(stop) = progress.stop_time {
        shard["stop_time_in_millis"] = json!(epoch_millis(stop));
    }
    if let Some(failure) = &progress.failure {
        shard["failure"] = json!(failure);
    }
    shard
}

fn render(node: &NodeState, recoveries: &[FollowerShardRecovery]) -> Value {
    let mut by_index = Map::new();
    for recovery in recoveries {
        let entry = by_index
            .entry(recovery.follower_index.clone())
            .or_insert_with(|| json!({"shards": []}));
        if let Some(shards) = entry["shards"].as_array_mut() {
            shards.push(render_shard(node, recovery));
        }
    }
    Value::Object(by_index)
}

async fn all_recoveries(
    State(node): State<NodeState>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["active_only"])?;
    let found = recoveries(&node, None, params.flag("active_only", false)?)?;
    Ok(ok(render(&node, &found)))
}

async fn index_recoveries(
    State(node): State<NodeState>,
    Path(index): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["active_only"])?;
    let found = recoveries(&node, Some(&index), params.flag("active_only", false)?)?;
    Ok(ok(render(&node, &found)))
}
