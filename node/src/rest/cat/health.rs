//! `GET /_cat/health`: the cluster's health in one row, as `_cluster/health` computes it (see
//! `rest::root`).
//!
//! Columns: epoch timestamp cluster status node.total node.data shards pri relo init unassign
//! unassign.pri pending_tasks max_task_wait_time active_shards_percent. `?ts=false` leaves out
//! epoch and timestamp. Tandem is one node: every shard is a primary, none relocates or
//! initializes, and no task waits (`max_task_wait_time` is `-`, as Elasticsearch shows none).

use std::time::SystemTime;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::{epoch_and_timestamp, CatRequest, Column};
use crate::error::RestError;
use crate::rest::root::health_now;
use crate::rest::{NodeState, Params};

/// Every column, in display order.
pub const COLUMNS: &[Column] = &[
    Column::number("epoch"),
    Column::text("timestamp"),
    Column::text("cluster"),
    Column::text("status"),
    Column::number("node.total"),
    Column::number("node.data"),
    Column::number("shards"),
    Column::number("pri"),
    Column::number("relo"),
    Column::number("init"),
    Column::number("unassign"),
    Column::number("unassign.pri"),
    Column::number("pending_tasks"),
    Column::text("max_task_wait_time"),
    Column::text("active_shards_percent"),
];

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new().route("/_cat/health", get(cat_health))
}

async fn cat_health(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    let mut request = CatRequest::parse("_cat/health", COLUMNS, &params, &["ts"], "cluster")?;
    if !params.flag("ts", true)? {
        request.hide(&["epoch", "timestamp"]);
    }
    let health = health_now(&node, None)?;
    let [epoch, timestamp] = epoch_and_timestamp(SystemTime::now());
    let row = vec![
        epoch,
        timestamp,
        node.identity.cluster_name.clone(),
        health.status.name().to_string(),
        "1".to_string(),
        "1".to_string(),
        health.active.to_string(),
        health.active.to_string(),
        health.relocating.to_string(),
        health.initializing.to_string(),
        health.unassigned.to_string(),
        health.unassigned.to_string(),
        "0".to_string(),
        "-".to_string(),
        format!("{:.1}%", health.active_percent()),
    ];
    request.respond(vec![row])
}
