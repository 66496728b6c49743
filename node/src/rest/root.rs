//! `GET /` (who this node is, the answer clients use to check the product and version) and
//! `GET /_cluster/health`.

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::{ok, NodeState, Params};
use crate::error::RestError;
use crate::node::COMPATIBLE_VERSION;

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/", get(info).head(info))
        .route("/_cluster/health", get(health))
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

async fn health(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    params.allow(&[
        "wait_for_status",
        "timeout",
        "level",
        "local",
        "master_timeout",
    ])?;
    let names = node.indices.names();
    let open: Vec<usize> = names
        .iter()
        .filter_map(|name| node.indices.get(name).ok())
        .map(|index| index.shards().len())
        .collect();
    let shards: usize = open.iter().sum();
    Ok(ok(json!({
        "cluster_name": node.identity.cluster_name,
        "status": "green",
        "timed_out": false,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": shards,
        "active_shards": shards,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0,
        "unassigned_primary_shards": 0,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 100.0,
    })))
}
