//! `GET /_nodes/stats` and `GET /_cluster/stats`: the node and the cluster (one node) in
//! Elasticsearch's shapes, without a JVM: `indices` (every open shard's index stats summed),
//! `os`, `process`, `fs` (the data directory's file system), `http` (connections) and
//! `transport` (the follower-facing `/_tandem/v1` requests, which share the HTTP port).
//!
//! `{node_id}` filters take `_all`, `*`, `_local`, `_master`, the node's id or its name; any
//! other filter matches no node (an empty `nodes` object, as Elasticsearch answers).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use axum::body::{Body, HttpBody};
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use super::blocking::blocking;
use super::index_expression::open_indices;
use super::stats::{add_numbers, shard_sections, METRICS};
use super::{ok, NodeState, Params};
use crate::error::RestError;
use crate::system;

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/_nodes/stats", get(nodes_stats))
        .route("/_nodes/stats/{metric}", get(nodes_stats_metric))
        .route("/_nodes/{node_id}/stats", get(node_stats))
        .route("/_nodes/{node_id}/stats/{metric}", get(node_stats_metric))
        .route("/_cluster/stats", get(cluster_stats))
        .route(
            "/_cluster/stats/nodes/{node_id}",
            get(cluster_stats_filtered),
        )
}

/// The requests and bytes of the transport endpoints this node served.
#[derive(Debug, Default)]
pub struct TransportCounters {
    rx_count: AtomicU64,
    rx_bytes: AtomicU64,
    tx_count: AtomicU64,
    tx_bytes: AtomicU64,
}

impl TransportCounters {
    /// (requests received, their bytes, answers sent, their bytes).
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.rx_count.load(Ordering::Relaxed),
            self.rx_bytes.load(Ordering::Relaxed),
            self.tx_count.load(Ordering::Relaxed),
            self.tx_bytes.load(Ordering::Relaxed),
        )
    }
}

/// Counts a transport request and its answer (the answer's bytes as far as known before it
/// streams: a heartbeat stream counts what its first frame announces).
pub async fn count_transport(
    State(node): State<NodeState>,
    request: Request,
    next: Next,
) -> Response {
    let counters = &node.transport_counters;
    counters.rx_count.fetch_add(1, Ordering::Relaxed);
    counters
        .rx_bytes
        .fetch_add(request.body().size_hint().lower(), Ordering::Relaxed);
    let response: Response<Body> = next.run(request).await;
    counters.tx_count.fetch_add(1, Ordering::Relaxed);
    counters
        .tx_bytes
        .fetch_add(response.body().size_hint().lower(), Ordering::Relaxed);
    response
}

/// The metrics `_nodes/stats` knows (Elasticsearch's names; those without a Tandem
/// counterpart, such as `jvm`, are accepted and left out of the answer).
const NODE_METRICS: &[&str] = &[
    "indices",
    "os",
    "process",
    "fs",
    "http",
    "transport",
    "jvm",
    "thread_pool",
    "breaker",
    "script",
    "discovery",
    "ingest",
    "adaptive_selection",
    "script_cache",
    "indexing_pressure",
    "repositories",
    "allocations",
];

fn node_metrics(list: Option<&str>) -> Result<Vec<&'static str>, RestError> {
    let Some(list) = list else {
        return Ok(NODE_METRICS.to_vec());
    };
    let mut chosen = Vec::new();
    for name in list.split(',') {
        if name == "_all" {
            return Ok(NODE_METRICS.to_vec());
        }
        match NODE_METRICS.iter().find(|known| **known == name) {
            Some(known) => chosen.push(*known),
            None => {
                return Err(RestError::illegal_argument(format!(
                    "request [/_nodes/stats/{list}] contains unrecognized metric: [{name}]"
                )))
            }
        }
    }
    Ok(chosen)
}

/// True when `filter` names this node.
fn matches_node(node: &NodeState, filter: &str) -> bool {
    filter.split(',').any(|part| {
        matches!(part, "_all" | "*" | "_local" | "_master")
            || part == node.identity.node_id
            || part == node.config.name
    })
}

fn epoch_millis() -> u64 {
    crate::rest::recovery::epoch_millis(SystemTime::now())
}

/// Every open shard's index stats, summed.
fn indices_section(node: &NodeState) -> (Map<String, Value>, IndexCounts) {
    let mut sum = Map::new();
    let mut counts = IndexCounts::default();
    for (_, index) in open_indices(&node.indices, None).unwrap_or_default() {
        counts.indices += 1;
        for shard in index.shards() {
            counts.shards += 1;
            add_numbers(&mut sum, &shard_sections(shard, METRICS));
        }
    }
    (sum, counts)
}

#[derive(Default)]
struct IndexCounts {
    indices: u64,
    shards: u64,
}

fn os_section(node: &NodeState) -> Value {
    let os = system::os();
    let (_, machine_percent) = node.cpu.percents();
    let used = os.mem_total_bytes.saturating_sub(os.mem_free_bytes);
    let percent = system::percent;
    json!({
        "timestamp": epoch_millis(),
        "cpu": {
            "percent": machine_percent,
            "load_average": {
                "1m": os.load_average[0],
                "5m": os.load_average[1],
                "15m": os.load_average[2],
            },
        },
        "mem": {
            "total_in_bytes": os.mem_total_bytes,
            "adjusted_total_in_bytes": os.mem_total_bytes,
            "free_in_bytes": os.mem_free_bytes,
            "used_in_bytes": used,
            "free_percent": percent(os.mem_free_bytes, os.mem_total_bytes),
            "used_percent": percent(used, os.mem_total_bytes),
        },
        "swap": {
            "total_in_bytes": os.swap_total_bytes,
            "free_in_bytes": os.swap_free_bytes,
            "used_in_bytes": os.swap_total_bytes.saturating_sub(os.swap_free_bytes),
        },
    })
}

fn process_section(node: &NodeState) -> Value {
    let process = system::process();
    let (process_percent, _) = node.cpu.percents();
    json!({
        "timestamp": epoch_millis(),
        "open_file_descriptors": process.open_file_descriptors,
        "max_file_descriptors": process.max_file_descriptors,
        "cpu": {"percent": process_percent, "total_in_millis": process.cpu_millis},
        "mem": {
            "total_virtual_in_bytes": process.virtual_bytes,
            "resident_in_bytes": process.resident_bytes,
        },
    })
}

fn fs_section(node: &NodeState) -> Value {
    let data = &node.config.data;
    let space = node.indices.storage().disk_space(data).ok().flatten();
    let (total, available) =
        space.map_or((0, 0), |space| (space.total_bytes, space.available_bytes));
    json!({
        "timestamp": epoch_millis(),
        "total": {
            "total_in_bytes": total,
            "free_in_bytes": available,
            "available_in_bytes": available,
        },
        "data": [{
            "path": data.display().to_string(),
            "total_in_bytes": total,
            "free_in_bytes": available,
            "available_in_bytes": available,
        }],
    })
}

fn one_node(node: &NodeState, metrics: &[&str]) -> Value {
    let address = node.config.http.to_string();
    let mut entry = json!({
        "timestamp": epoch_millis(),
        "name": node.config.name,
        "transport_address": address,
        "host": node.config.http.ip().to_string(),
        "ip": address,
        "roles": ["data", "ingest", "master", "remote_cluster_client"],
        "attributes": {},
    });
    for metric in metrics {
        let section = match *metric {
            "indices" => Value::Object(indices_section(node).0),
            "os" => os_section(node),
            "process" => process_section(node),
            "fs" => fs_section(node),
            "http" => json!({
                "current_open": node.http_counters.current_open(),
                "total_opened": node.http_counters.total_opened(),
            }),
            "transport" => {
                let (rx_count, rx_bytes, tx_count, tx_bytes) = node.transport_counters.snapshot();
                json!({
                    "server_open": node.http_counters.current_open(),
                    "total_outbound_connections": 0,
                    "rx_count": rx_count,
                    "rx_size_in_bytes": rx_bytes,
                    "tx_count": tx_count,
                    "tx_size_in_bytes": tx_bytes,
                })
            }
            _ => continue,
        };
        entry[*metric] = section;
    }
    entry
}

async fn nodes_answer(
    node: NodeState,
    filter: Option<String>,
    metric: Option<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&[
        "level",
        "timeout",
        "groups",
        "fields",
        "types",
        "include_segment_file_sizes",
    ])?;
    let metrics = node_metrics(metric.as_deref())?;
    let answer = blocking(move || {
        let mut nodes = Map::new();
        if filter
            .as_deref()
            .is_none_or(|filter| matches_node(&node, filter))
        {
            nodes.insert(node.identity.node_id.clone(), one_node(&node, &metrics));
        }
        let count = nodes.len();
        Ok(json!({
            "_nodes": {"total": count, "successful": count, "failed": 0},
            "cluster_name": node.identity.cluster_name,
            "nodes": nodes,
        }))
    })
    .await?;
    Ok(ok(answer))
}

async fn nodes_stats(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    nodes_answer(node, None, None, params).await
}

async fn nodes_stats_metric(
    State(node): State<NodeState>,
    Path(metric): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    nodes_answer(node, None, Some(metric), params).await
}

async fn node_stats(
    State(node): State<NodeState>,
    Path(filter): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    nodes_answer(node, Some(filter), None, params).await
}

async fn node_stats_metric(
    State(node): State<NodeState>,
    Path((filter, metric)): Path<(String, String)>,
    params: Params,
) -> Result<Response, RestError> {
    nodes_answer(node, Some(filter), Some(metric), params).await
}

async fn cluster_answer(node: NodeState, params: Params) -> Result<Response, RestError> {
    params.allow(&["timeout", "include_remotes"])?;
    let health = super::root::health_now(&node, None)?;
    let answer = blocking(move || {
        let (indices, counts) = indices_section(&node);
        let section = |name: &str| indices.get(name).cloned().unwrap_or_else(|| json!({}));
        let os = system::os();
        let process = system::process();
        let (process_percent, _) = node.cpu.percents();
        let shards_per_index = match counts.indices {
            0 => 0.0,
            indices => counts.shards as f64 / indices as f64,
        };
        Ok(json!({
            "_nodes": {"total": 1, "successful": 1, "failed": 0},
            "cluster_name": node.identity.cluster_name,
            "cluster_uuid": node.identity.cluster_uuid,
            "timestamp": epoch_millis(),
            "status": health.status.name(),
            "indices": {
                "count": counts.indices,
                "shards": {
                    "total": counts.shards,
                    "primaries": counts.shards,
                    "replication": 0.0,
                    "index": {
                        "shards": {"min": 1, "max": counts.shards.max(1), "avg": shards_per_index},
                        "primaries": {"min": 1, "max": counts.shards.max(1), "avg": shards_per_index},
                        "replication": {"min": 0.0, "max": 0.0, "avg": 0.0},
                    },
                },
                "docs": {
                    "count": section("docs")["count"],
                    "deleted": section("docs")["deleted"],
                },
                "store": section("store"),
                "segments": section("segments"),
            },
            "nodes": {
                "count": {
                    "total": 1, "data": 1, "ingest": 1, "master": 1,
                    "remote_cluster_client": 1, "coordinating_only": 0,
                },
                "versions": [crate::node::COMPATIBLE_VERSION],
                "os": {
                    "available_processors": os.cpus,
                    "allocated_processors": os.cpus,
                    "mem": {
                        "total_in_bytes": os.mem_total_bytes,
                        "free_in_bytes": os.mem_free_bytes,
                        "used_in_bytes": os.mem_total_bytes.saturating_sub(os.mem_free_bytes),
                    },
                },
                "process": {
                    "cpu": {"percent": process_percent},
                    "open_file_descriptors": {
                        "min": process.open_file_descriptors,
                        "max": process.open_file_descriptors,
                        "avg": process.open_file_descriptors,
                    },
                },
                "fs": fs_section(&node)["total"],
            },
        }))
    })
    .await?;
    Ok(ok(answer))
}

async fn cluster_stats(
    State(node): State<NodeState>,
    params: Params,
) -> Result<Response, RestError> {
    cluster_answer(node, params).await
}

async fn cluster_stats_filtered(
    State(node): State<NodeState>,
    Path(_filter): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    cluster_answer(node, params).await
}

/// Every section `_nodes/stats` answers for this node (for the metrics endpoint).
pub fn node_sections(node: &NodeState) -> Value {
    one_node(node, NODE_METRICS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_elasticsearchs() {
        assert_eq!(node_metrics(Some("os,jvm")).unwrap(), vec!["os", "jvm"]);
        assert_eq!(
            node_metrics(Some("_all")).unwrap().len(),
            NODE_METRICS.len()
        );
        assert!(node_metrics(Some("nonsense")).is_err());
    }
}
