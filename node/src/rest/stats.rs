//! `GET /_stats[/{metric}]` and `GET /{index}/_stats[/{metric}]`: Elasticsearch's index stats,
//! in its shape, for the tools that read them (exporters, Kibana-like dashboards, the official
//! clients' `indices.stats`).
//!
//! Sections: `docs`, `store`, `indexing`, `search`, `refresh`, `flush`, `merges`, `translog`,
//! `segments` (a `{metric}` list picks some). `level=cluster` answers `_all` only, `indices`
//! (the default) adds each index, `shards` adds each shard with its `routing`, `seq_no`
//! (`max_seq_no`, `local_checkpoint`, `global_checkpoint`) and `retention_leases`. A node holds
//! one copy of each shard: `primaries` and `total` are equal. Closed indices are skipped, as
//! Elasticsearch skips them.
//!
//! Where Tandem differs from Lucene: a refresh is a commit, so `flush.total` counts the same
//! commits as `refresh.total` (its time is the commit part); `segments.memory_in_bytes` is 0
//! (tantivy keeps no per-segment heap structures Elasticsearch would count there).

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use tandem_engine::ShardEngine;

use super::blocking::blocking;
use super::index_expression::open_indices;
use super::{ok, NodeState, Params};
use crate::error::RestError;

/// Every section, in Elasticsearch's order.
pub const METRICS: &[&str] = &[
    "docs", "store", "indexing", "search", "refresh", "flush", "merges", "translog", "segments",
];

/// Parameters Elasticsearch's stats API takes that change nothing here.
const ACCEPTED: &[&str] = &[
    "level",
    "expand_wildcards",
    "ignore_unavailable",
    "allow_no_indices",
    "forbid_closed_indices",
    "fields",
    "completion_fields",
    "fielddata_fields",
    "groups",
    "include_segment_file_sizes",
    "include_unloaded_segments",
];

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/_stats", get(all))
        .route("/_stats/{metric}", get(all_metric))
        .route("/{index}/_stats", get(some))
        .route("/{index}/_stats/{metric}", get(some_metric))
}

/// How deep the answer goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Cluster,
    Indices,
    Shards,
}

fn level(params: &Params) -> Result<Level, RestError> {
    match params.get("level") {
        None | Some("indices") => Ok(Level::Indices),
        Some("cluster") => Ok(Level::Cluster),
        Some("shards") => Ok(Level::Shards),
        Some(other) => Err(RestError::illegal_argument(format!(
            "level parameter must be one of [cluster] or [indices] or [shards] but was [{other}]"
        ))),
    }
}

/// The sections a `{metric}` list asks for (`_all` for all).
pub fn metrics(list: Option<&str>) -> Result<Vec<&'static str>, RestError> {
    let Some(list) = list else {
        return Ok(METRICS.to_vec());
    };
    let mut chosen = Vec::new();
    for name in list.split(',') {
        if name == "_all" {
            return Ok(METRICS.to_vec());
        }
        let Some(known) = METRICS.iter().find(|known| **known == name) else {
            return Err(RestError::illegal_argument(format!(
                "request [_stats] contains unrecognized metric: [{name}]"
            )));
        };
        chosen.push(*known);
    }
    Ok(chosen)
}

fn millis(duration: std::time::Duration) -> u64 {
    duration.as_millis() as u64
}

/// The sections `metrics` of one shard, in Elasticsearch's shape.
pub fn shard_sections(shard: &ShardEngine, metrics: &[&str]) -> Map<String, Value> {
    let stats = shard.stats();
    let counters = shard.counters();
    let store = if metrics.contains(&"store") || metrics.contains(&"docs") {
        shard.store_size_in_bytes()
    } else {
        0
    };
    let mut sections = Map::new();
    for metric in metrics {
        let section = match *metric {
            "docs" => json!({
                "count": stats.doc_count,
                "deleted": stats.doc_count_with_history.saturating_sub(stats.doc_count),
                "total_size_in_bytes": store,
            }),
            "store" => json!({
                "size_in_bytes": store,
                "total_data_set_size_in_bytes": store,
                "reserved_in_bytes": 0,
            }),
            "indexing" => json!({
                "index_total": counters.index_total,
                "index_time_in_millis": millis(counters.index_time),
                "index_current": 0,
                "index_failed": counters.index_failed,
                "delete_total": counters.delete_total,
                "delete_time_in_millis": millis(counters.delete_time),
                "delete_current": 0,
                "noop_update_total": counters.noop_total,
                "is_throttled": false,
                "throttle_time_in_millis": 0,
            }),
            "search" => json!({
                "open_contexts": 0,
                "query_total": counters.query_total,
                "query_time_in_millis": millis(counters.query_time),
                "query_current": 0,
                "fetch_total": counters.fetch_total,
                "fetch_time_in_millis": millis(counters.fetch_time),
                "fetch_current": 0,
                "scroll_total": 0,
                "scroll_time_in_millis": 0,
                "scroll_current": 0,
                "suggest_total": 0,
                "suggest_time_in_millis": 0,
                "suggest_current": 0,
            }),
            "refresh" => json!({
                "total": stats.refresh_count,
                "total_time_in_millis": millis(counters.refresh_time),
                "external_total": stats.refresh_count,
                "external_total_time_in_millis": millis(counters.refresh_time),
                "listeners": 0,
            }),
            "flush" => json!({
                "total": stats.refresh_count,
                "periodic": 0,
                "total_time_in_millis": millis(counters.commit_time),
            }),
            "merges" => json!({
                "current": counters.merge_current,
                "current_docs": counters.merge_current_docs,
                "current_size_in_bytes": 0,
                "total": counters.merge_total,
                "total_time_in_millis": millis(counters.merge_time),
                "total_docs": counters.merge_docs,
                "total_size_in_bytes": 0,
                "total_stopped_time_in_millis": 0,
                "total_throttled_time_in_millis": 0,
                "total_auto_throttle_in_bytes": 0,
            }),
            "translog" => json!({
                "operations": stats.tail_operations,
                "size_in_bytes": stats.translog_size_in_bytes,
                "uncommitted_operations": stats.tail_operations,
                "uncommitted_size_in_bytes": stats.translog_size_in_bytes,
                "earliest_last_modified_age": 0,
            }),
            "segments" => json!({
                "count": stats.segment_count,
                "memory_in_bytes": 0,
                "terms_memory_in_bytes": 0,
                "stored_fields_memory_in_bytes": 0,
                "term_vectors_memory_in_bytes": 0,
                "norms_memory_in_bytes": 0,
                "points_memory_in_bytes": 0,
                "doc_values_memory_in_bytes": 0,
                "index_writer_memory_in_bytes": stats.indexing_buffer_bytes,
                "version_map_memory_in_bytes": 0,
                "fixed_bit_set_memory_in_bytes": 0,
                "max_unsafe_auto_id_timestamp": -1,
                "file_sizes": {},
            }),
            _ => continue,
        };
        sections.insert(metric.to_string(), section);
    }
    sections
}

/// The shard-level extras of `level=shards`: routing, sequence numbers, retention leases.
fn shard_extras(shard: &ShardEngine, node_id: &str, sections: &mut Map<String, Value>) {
    let stats = shard.stats();
    let leases = shard.retention_leases();
    sections.insert(
        "routing".to_string(),
        json!({"state": "STARTED", "primary": true, "node": node_id, "relocating_node": null}),
    );
    sections.insert(
        "seq_no".to_string(),
        json!({
            "max_seq_no": stats.max_seq_no.0,
            "local_checkpoint": stats.local_checkpoint.0,
            "global_checkpoint": stats.global_checkpoint.0,
        }),
    );
    sections.insert(
        "retention_leases".to_string(),
        json!({
            "primary_term": stats.primary_term.0,
            "version": leases.version,
            "leases": leases.leases.values().map(|lease| json!({
                "id": lease.id,
                "retaining_seq_no": lease.retaining_seq_no.0,
                "timestamp": lease.timestamp_millis,
                "source": lease.source,
            })).collect::<Vec<_>>(),
        }),
    );
    sections.insert(
        "shard_path".to_string(),
        json!({
            "state_path": shard.dir().display().to_string(),
            "data_path": shard.dir().display().to_string(),
            "is_custom_data_path": false,
        }),
    );
}

/// Adds every number of `from` to the same place in `into` (objects recursively); other values
/// are taken from `from` where `into` has none.
pub fn add_numbers(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(key), value) {
            (Some(Value::Object(into)), Value::Object(from)) => add_numbers(into, from),
            (Some(Value::Number(sum)), Value::Number(add)) => {
                let total = match (sum.as_u64(), add.as_u64()) {
                    (Some(a), Some(b)) => json!(a.saturating_add(b)),
                    _ => json!(sum
                        .as_i64()
                        .unwrap_or(0)
                        .saturating_add(add.as_i64().unwrap_or(0))),
                };
                into.insert(key.clone(), total);
            }
            (Some(_), _) => {}
            (None, value) => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

fn stats(
    node: &NodeState,
    expression: Option<&str>,
    metrics: &[&str],
    level: Level,
) -> Result<Value, RestError> {
    let mut all = Map::new();
    let mut by_index = Map::new();
    let mut shards_total = 0;
    for (name, index) in open_indices(&node.indices, expression)? {
        let mut index_sum = Map::new();
        let mut shard_entries = Map::new();
        for (number, shard) in index.shards().iter().enumerate() {
            shards_total += 1;
            let mut sections = shard_sections(shard, metrics);
            add_numbers(&mut index_sum, &sections);
            if level == Level::Shards {
                shard_extras(shard, &node.identity.node_id, &mut sections);
                shard_entries.insert(number.to_string(), json!([sections]));
            }
        }
        add_numbers(&mut all, &index_sum);
        if level != Level::Cluster {
            let failed = !index.shard_failures().is_empty();
            let mut entry = json!({
                "uuid": index.metadata().uuid,
                "health": if failed { "red" } else { "green" },
                "status": "open",
                "primaries": index_sum,
                "total": index_sum,
            });
            if level == Level::Shards {
                entry["shards"] = Value::Object(shard_entries);
            }
            by_index.insert(name, entry);
        }
    }
    let mut answer = json!({
        "_shards": {"total": shards_total, "successful": shards_total, "failed": 0},
        "_all": {"primaries": all, "total": all},
    });
    if level != Level::Cluster {
        answer["indices"] = Value::Object(by_index);
    }
    Ok(answer)
}

async fn answer(
    node: NodeState,
    expression: Option<String>,
    metric: Option<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(ACCEPTED)?;
    let level = level(&params)?;
    let metrics = metrics(metric.as_deref())?;
    let answer = blocking(move || stats(&node, expression.as_deref(), &metrics, level)).await?;
    Ok(ok(answer))
}

async fn all(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    answer(node, None, None, params).await
}

async fn all_metric(
    State(node): State<NodeState>,
    Path(metric): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    answer(node, None, Some(metric), params).await
}

async fn some(
    State(node): State<NodeState>,
    Path(index): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    answer(node, Some(index), None, params).await
}

async fn some_metric(
    State(node): State<NodeState>,
    Path((index, metric)): Path<(String, String)>,
    params: Params,
) -> Result<Response, RestError> {
    answer(node, Some(index), Some(metric), params).await
}
