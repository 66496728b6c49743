//! `GET /_cat/shards[/{index}]`: one row per shard of every open index (a node holds one copy:
//! every shard is a started primary), and `GET /_cat/segments[/{index}]`: one row per segment
//! of those shards' readers (see the parent module for the table parameters).
//!
//! Shards columns: index shard prirep state docs store dataset ip node, and on request id,
//! seq_no.max, seq_no.local_checkpoint, seq_no.global_checkpoint, segments.count,
//! indexing.index_total, refresh.total, merges.total. Segments columns: index shard prirep ip
//! segment generation docs.count docs.deleted size size.memory committed searchable version
//! compound (a segment is named by its tantivy id; the reader's segments are all committed).

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::{CatRequest, Column};
use crate::error::RestError;
use crate::rest::blocking::blocking;
use crate::rest::index_expression::open_indices;
use crate::rest::{NodeState, Params};

/// Every `_cat/shards` column, in display order.
pub const SHARD_COLUMNS: &[Column] = &[
    Column::text("index"),
    Column::number("shard"),
    Column::text("prirep"),
    Column::text("state"),
    Column::number("docs"),
    Column::number("store"),
    Column::number("dataset"),
    Column::text("ip"),
    Column::text("node"),
    Column::text("id").hidden(),
    Column::number("seq_no.max").hidden(),
    Column::number("seq_no.local_checkpoint").hidden(),
    Column::number("seq_no.global_checkpoint").hidden(),
    Column::number("segments.count").hidden(),
    Column::number("indexing.index_total").hidden(),
    Column::number("refresh.total").hidden(),
    Column::number("merges.total").hidden(),
];

/// Every `_cat/segments` column, in display order.
pub const SEGMENT_COLUMNS: &[Column] = &[
    Column::text("index"),
    Column::number("shard"),
    Column::text("prirep"),
    Column::text("ip"),
    Column::text("segment"),
    Column::number("generation"),
    Column::number("docs.count"),
    Column::number("docs.deleted"),
    Column::number("size"),
    Column::number("size.memory"),
    Column::text("committed"),
    Column::text("searchable"),
    Column::text("version"),
    Column::text("compound"),
];

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/_cat/shards", get(shards_all))
        .route("/_cat/shards/{index}", get(shards_some))
        .route("/_cat/segments", get(segments_all))
        .route("/_cat/segments/{index}", get(segments_some))
}

async fn shards(
    node: NodeState,
    expression: Option<String>,
    params: Params,
) -> Result<Response, RestError> {
    let request = CatRequest::parse("_cat/shards", SHARD_COLUMNS, &params, &[], "index")?;
    let request_ref = std::sync::Arc::new(request);
    let for_rows = request_ref.clone();
    let rows = blocking(move || {
        let ip = node.config.http.ip().to_string();
        let mut rows = Vec::new();
        for (name, index) in open_indices(&node.indices, expression.as_deref())? {
            let failed = index.shard_failures();
            for (number, shard) in index.shards().iter().enumerate() {
                let stats = shard.stats();
                let counters = shard.counters();
                let store = shard.store_size_in_bytes();
                let state = if failed.iter().any(|(failed, _)| *failed == number) {
                    "UNASSIGNED"
                } else {
                    "STARTED"
                };
                rows.push(vec![
                    name.clone(),
                    number.to_string(),
                    "p".to_string(),
                    state.to_string(),
                    stats.doc_count.to_string(),
                    for_rows.size(store),
                    for_rows.size(store),
                    ip.clone(),
                    node.config.name.clone(),
                    node.identity.node_id.clone(),
                    stats.max_seq_no.0.to_string(),
                    stats.local_checkpoint.0.to_string(),
                    stats.global_checkpoint.0.to_string(),
                    stats.segment_count.to_string(),
                    counters.index_total.to_string(),
                    stats.refresh_count.to_string(),
                    counters.merge_total.to_string(),
                ]);
            }
        }
        Ok(rows)
    })
    .await?;
    request_ref.respond(rows)
}

async fn segments(
    node: NodeState,
    expression: Option<String>,
    params: Params,
) -> Result<Response, RestError> {
    let request = std::sync::Arc::new(CatRequest::parse(
        "_cat/segments",
        SEGMENT_COLUMNS,
        &params,
        &[],
        "index",
    )?);
    let for_rows = request.clone();
    let rows = blocking(move || {
        let ip = node.config.http.ip().to_string();
        let mut rows = Vec::new();
        for (name, index) in open_indices(&node.indices, expression.as_deref())? {
            for (number, shard) in index.shards().iter().enumerate() {
                for (generation, segment) in shard.segments().into_iter().enumerate() {
                    rows.push(vec![
                        name.clone(),
                        number.to_string(),
                        "p".to_string(),
                        ip.clone(),
                        segment.name,
                        generation.to_string(),
                        segment.live_docs.to_string(),
                        segment.deleted_docs.to_string(),
                        for_rows.size(segment.size_in_bytes),
                        for_rows.size(0),
                        "true".to_string(),
                        "true".to_string(),
                        "tantivy-0.27".to_string(),
                        "false".to_string(),
                    ]);
                }
            }
        }
        Ok(rows)
    })
    .await?;
    request.respond(rows)
}

async fn shards_all(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    shards(node, None, params).await
}

async fn shards_some(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    shards(node, Some(expression), params).await
}

async fn segments_all(
    State(node): State<NodeState>,
    params: Params,
) -> Result<Response, RestError> {
    segments(node, None, params).await
}

async fn segments_some(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    segments(node, Some(expression), params).await
}
