//! `GET /` (who this node is, the answer clients use to check the product and version) and
//! `GET /_cluster/health[/{index}]`.

use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::index_expression::resolve_indices;
use super::{ok, NodeState, Params};
use crate::error::RestError;
use crate::node::COMPATIBLE_VERSION;

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/", get(info).head(info))
        .route("/_cluster/health", get(health))
        .route("/_cluster/health/{index}", get(index_health))
}

async fn info(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    params.allow(&[])?;
    Ok(ok(json!({
        "name": node.config.name,
        "cluster_name": node.identity.cluster_name,
        "cluster_uuid": node.identity.cluster_uuid,
        "version": {
            "number": COMPATIBLE_VERSION,
            "build_flavor": "default",
            "build_type": "tandem",
            "build_hash": "tandem",
            "build_date": "2026-11-01T00:00:00.000Z",
            "build_snapshot": false,
            "lucene_version": "tantivy-0.27",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
            "tandem_version": env!("CARGO_PKG_VERSION"),
        },
        "tagline": "You Know, for Search",
    })))
}

/// Parameters that make `_cluster/health` wait. On one node every shard of an existing open
/// index is active at once, so all of them are met as soon as the named indices exist.
const HEALTH_WAIT_PARAMETERS: &[&str] = &[
    "wait_for_status",
    "wait_for_active_shards",
    "wait_for_no_relocating_shards",
    "wait_for_no_initializing_shards",
];
/// Elasticsearch's default `timeout` of a waiting health request.
const HEALTH_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// How often a waiting health request looks for the indices it names.
const HEALTH_POLL_INTERVAL: Duration = Duration::from_millis(100);

async fn health(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    cluster_health(node, None, params).await
}

async fn index_health(
    State(node): State<NodeState>,
    Path(index): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    cluster_health(node, Some(index), params).await
}

/// `_cluster/health[/{index}]`. As in Elasticsearch, a named index that does not exist makes
/// the health red (it is not an error); a request with a `wait_for_*` parameter waits for it
/// up to `timeout`, then answers 408 with `timed_out: true`.
async fn cluster_health(
    node: NodeState,
    index: Option<String>,
    params: Params,
) -> Result<Response, RestError> {
    let mut allowed = vec!["timeout", "level", "local", "master_timeout"];
    allowed.extend_from_slice(HEALTH_WAIT_PARAMETERS);
    params.allow(&allowed)?;
    params.flag("local", false)?;
    params.time("master_timeout")?;
    if let Some(status) = params.get("wait_for_status") {
        if !matches!(status, "green" | "yellow" | "red") {
            return Err(RestError::illegal_argument(format!(
                "unknown cluster health status [{status}]"
            )));
        }
    }
    let waits = HEALTH_WAIT_PARAMETERS
        .iter()
        .any(|key| params.get(key).is_some());
    let deadline = Instant::now() + params.time("timeout")?.unwrap_or(HEALTH_TIMEOUT_DEFAULT);
    let resolved = loop {
        let resolved = match &index {
            None => Some(resolve_indices(&node.indices, "_all")?),
            Some(expression) => match resolve_indices(&node.indices, expression) {
                Ok(names) => Some(names),
                Err(error) if error.status == StatusCode::NOT_FOUND => None,
                Err(error) => return Err(error),
            },
        };
        if resolved.is_some() || !waits || Instant::now() >= deadline {
            break resolved;
        }
        tokio::time::sleep(HEALTH_POLL_INTERVAL).await;
    };
    // A failed shard is unassigned until the node reopens it (see `shard_failures`).
    let (shards, failed) = resolved
        .iter()
        .flatten()
        .filter_map(|name| node.indices.get(name).ok())
        .fold((0usize, 0usize), |(shards, failed), index| {
            (
                shards + index.shards().len(),
                failed + index.shard_failures().len(),
            )
        });
    let active = shards - failed;
    let (status, timed_out) = match resolved {
        Some(_) if failed > 0 => ("red", false),
        Some(_) => ("green", false),
        None => ("red", waits),
    };
    let active_percent = if shards == 0 {
        100.0
    } else {
        active as f64 * 100.0 / shards as f64
    };
    let answer = json!({
        "cluster_name": node.identity.cluster_name,
        "status": status,
        "timed_out": timed_out,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": active,
        "active_shards": active,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": failed,
        "unassigned_primary_shards": failed,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": active_percent,
    });
    let code = if timed_out {
        StatusCode::REQUEST_TIMEOUT
    } else {
        StatusCode::OK
    };
    Ok((code, axum::Json(answer)).into_response())
}
