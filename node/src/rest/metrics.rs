//! `GET /_prometheus/metrics` (a Tandem extension): the node's metrics in the Prometheus text
//! format (OpenMetrics 1.0, which Prometheus scrapes natively), read at scrape time from the
//! same sources as `_ccr/stats`, `_stats`, `_cat/recovery` and `_nodes/stats`.
//!
//! Families (units in the names; counters end in `_total`):
//! - per follower shard (`index`, `shard`, `remote_cluster`, `leader_index`):
//!   `tandem_follower_lag_operations`, `tandem_follower_lag_seconds` (the age of the oldest
//!   operation the leader has and the follower has not applied, see
//!   [`tandem_replication::lag`]), `tandem_follower_read_operations_total`,
//!   `tandem_follower_read_bytes_total`, `tandem_follower_written_operations_total`,
//!   `tandem_follower_written_bytes_total`, `tandem_follower_failed_reads_total`,
//!   `tandem_follower_failed_writes_total`, `tandem_follower_read_latency_seconds` and
//!   `tandem_follower_write_latency_seconds` (histograms), `tandem_follower_outstanding_reads`,
//!   `tandem_follower_outstanding_writes`, `tandem_follower_paused` and `tandem_follower_fatal`
//!   (1 when a fatal error stopped the shard's task);
//! - per recovery (`index`, `shard`): `tandem_recovery_copied_bytes`,
//!   `tandem_recovery_total_bytes`, `tandem_recovery_rate_bytes_per_second`,
//!   `tandem_recovery_done`;
//! - per shard (`index`, `shard`): `tandem_shard_indexed_operations_total` (its rate is the
//!   indexing rate), `tandem_shard_deleted_operations_total`, `tandem_shard_docs`,
//!   `tandem_shard_translog_bytes`, `tandem_shard_refresh_seconds_total`,
//!   `tandem_shard_merge_seconds_total`, `tandem_shard_segments`,
//!   `tandem_shard_retention_floor_seq_no`, `tandem_shard_max_seq_no`,
//!   `tandem_shard_global_checkpoint`;
//! - the process: `tandem_process_resident_memory_bytes`, `tandem_process_cpu_seconds_total`,
//!   `tandem_process_open_fds`, `tandem_http_open_connections`, `tandem_runtime_tasks`
//!   (tokio tasks alive), `tandem_follow_tasks` (shard follow tasks running),
//!   `tandem_verify_sessions`.

use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tandem_replication::follower_indices::{FollowShardMetrics, FollowerShardRecovery};
use tandem_replication::stats::LatencyHistogram;

use super::blocking::blocking;
use super::index_expression::open_indices;
use super::{NodeState, Params};
use crate::error::RestError;
use crate::system;

/// The content type of the answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new().route("/_prometheus/metrics", get(scrape))
}

/// One shard's figures.
#[derive(Debug)]
struct ShardFigures {
    index: String,
    shard: u32,
    indexed: u64,
    deleted: u64,
    docs: u64,
    translog_bytes: u64,
    refresh_seconds: f64,
    merge_seconds: f64,
    segments: u64,
    retention_floor: i64,
    max_seq_no: i64,
    global_checkpoint: i64,
}

/// Everything a scrape shows, gathered before it is encoded.
#[derive(Debug)]
struct Scrape {
    follows: Vec<FollowShardMetrics>,
    recoveries: Vec<FollowerShardRecovery>,
    shards: Vec<ShardFigures>,
    process: system::ProcessSample,
    http_open: u64,
    runtime_tasks: u64,
    verify_sessions: u64,
}

type Labels = Vec<(String, String)>;

/// A value of one label set.
enum Value {
    Gauge(f64),
    Counter(f64),
    Histogram(LatencyHistogram),
}

impl EncodeMetric for Value {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Value::Gauge(value) => encoder.encode_gauge(value),
            Value::Counter(value) => encoder.encode_counter::<Labels, _, f64>(value, None),
            Value::Histogram(histogram) => encoder.encode_histogram::<Labels>(
                Duration::from_nanos(histogram.sum_nanos).as_secs_f64(),
                histogram.count(),
                &histogram.buckets(),
                None,
            ),
        }
    }

    fn metric_type(&self) -> MetricType {
        match self {
            Value::Gauge(_) => MetricType::Gauge,
            Value::Counter(_) => MetricType::Counter,
            Value::Histogram(_) => MetricType::Histogram,
        }
    }
}

/// A family: its name, help, type and one value per label set.
struct Family {
    name: &'static str,
    help: &'static str,
    metric_type: MetricType,
    values: Vec<(Labels, Value)>,
}

fn family(
    name: &'static str,
    help: &'static str,
    metric_type: MetricType,
    values: Vec<(Labels, Value)>,
) -> Family {
    Family {
        name,
        help,
        metric_type,
        values,
    }
}

fn follower_labels(follow: &FollowShardMetrics) -> Labels {
    vec![
        ("index".to_string(), follow.follower_index.clone()),
        ("shard".to_string(), follow.shard.to_string()),
        (
            "remote_cluster".to_string(),
            follow.stats.remote_cluster.clone(),
        ),
        (
            "leader_index".to_string(),
            follow.stats.leader_index.clone(),
        ),
    ]
}

fn shard_labels(index: &str, shard: u32) -> Labels {
    vec![
        ("index".to_string(), index.to_string()),
        ("shard".to_string(), shard.to_string()),
    ]
}

impl Scrape {
    fn families(&self) -> Vec<Family> {
        use MetricType::{Counter, Gauge, Histogram};
        let per_follow = |read: &dyn Fn(&FollowShardMetrics) -> Value| {
            self.follows
                .iter()
                .map(|follow| (follower_labels(follow), read(follow)))
                .collect::<Vec<_>>()
        };
        let per_recovery = |read: &dyn Fn(&FollowerShardRecovery) -> Value| {
            self.recoveries
                .iter()
                .map(|recovery| {
                    (
                        shard_labels(&recovery.follower_index, recovery.shard),
                        read(recovery),
                    )
                })
                .collect::<Vec<_>>()
        };
        let per_shard = |read: &dyn Fn(&ShardFigures) -> Value| {
            self.shards
                .iter()
                .map(|shard| (shard_labels(&shard.index, shard.shard), read(shard)))
                .collect::<Vec<_>>()
        };
        let one = |value: Value| vec![(Labels::new(), value)];
        vec![
            family("tandem_follower_lag_operations", "Operations the leader shard has and the follower shard has not applied.", Gauge,
                per_follow(&|f| Value::Gauge(f.lag.operations as f64))),
            family("tandem_follower_lag_seconds", "Age of the oldest operation the leader shard has and the follower shard has not applied.", Gauge,
                per_follow(&|f| Value::Gauge(f.lag.seconds))),
            family("tandem_follower_read_operations", "Operations read from the leader shard.", Counter,
                per_follow(&|f| Value::Counter(f.stats.operations_read as f64))),
            family("tandem_follower_read_bytes", "Bytes of operations read from the leader shard.", Counter,
                per_follow(&|f| Value::Counter(f.stats.bytes_read as f64))),
            family("tandem_follower_written_operations", "Operations written to the follower shard.", Counter,
                per_follow(&|f| Value::Counter(f.stats.operations_written as f64))),
            family("tandem_follower_written_bytes", "Bytes of operations written to the follower shard.", Counter,
                per_follow(&|f| Value::Counter(f.stats.metrics.bytes_written as f64))),
            family("tandem_follower_failed_reads", "Reads from the leader shard that failed.", Counter,
                per_follow(&|f| Value::Counter(f.stats.failed_read_requests as f64))),
            family("tandem_follower_failed_writes", "Writes to the follower shard that failed.", Counter,
                per_follow(&|f| Value::Counter(f.stats.failed_write_requests as f64))),
            family("tandem_follower_read_latency_seconds", "Latency of reads from the leader shard, end to end.", Histogram,
                per_follow(&|f| Value::Histogram(f.stats.metrics.read_latency.clone()))),
            family("tandem_follower_write_latency_seconds", "Latency of writes to the follower shard.", Histogram,
                per_follow(&|f| Value::Histogram(f.stats.metrics.write_latency.clone()))),
            family("tandem_follower_outstanding_reads", "Reads in flight.", Gauge,
                per_follow(&|f| Value::Gauge(f64::from(f.stats.outstanding_read_requests)))),
            family("tandem_follower_outstanding_writes", "Writes in flight.", Gauge,
                per_follow(&|f| Value::Gauge(f64::from(f.stats.outstanding_write_requests)))),
            family("tandem_follower_paused", "1 while the follower index is paused.", Gauge,
                per_follow(&|f| Value::Gauge(if f.paused { 1.0 } else { 0.0 }))),
            family("tandem_follower_fatal", "1 when a fatal error stopped the shard's follow task.", Gauge,
                per_follow(&|f| Value::Gauge(if f.stats.fatal_exception.is_some() { 1.0 } else { 0.0 }))),
            family("tandem_recovery_copied_bytes", "Bytes a remote recovery has copied.", Gauge,
                per_recovery(&|r| Value::Gauge(r.progress.bytes_recovered as f64))),
            family("tandem_recovery_total_bytes", "Bytes a remote recovery copies in all.", Gauge,
                per_recovery(&|r| Value::Gauge(r.progress.bytes_total as f64))),
            family("tandem_recovery_rate_bytes_per_second", "Bytes per second a remote recovery copied, over its run so far.", Gauge,
                per_recovery(&|r| Value::Gauge(recovery_rate(r)))),
            family("tandem_recovery_done", "1 once a remote recovery has finished.", Gauge,
                per_recovery(&|r| Value::Gauge(if r.progress.stop_time.is_some() { 1.0 } else { 0.0 }))),
            family("tandem_shard_indexed_operations", "Index operations applied to the shard (its rate is the indexing rate).", Counter,
                per_shard(&|s| Value::Counter(s.indexed as f64))),
            family("tandem_shard_deleted_operations", "Delete operations applied to the shard.", Counter,
                per_shard(&|s| Value::Counter(s.deleted as f64))),
            family("tandem_shard_docs", "Live documents of the shard.", Gauge,
                per_shard(&|s| Value::Gauge(s.docs as f64))),
            family("tandem_shard_translog_bytes", "Bytes of the shard's translog.", Gauge,
                per_shard(&|s| Value::Gauge(s.translog_bytes as f64))),
            family("tandem_shard_refresh_seconds", "Time the shard spent refreshing.", Counter,
                per_shard(&|s| Value::Counter(s.refresh_seconds))),
            family("tandem_shard_merge_seconds", "Time the shard's merges took.", Counter,
                per_shard(&|s| Value::Counter(s.merge_seconds))),
            family("tandem_shard_segments", "Segments of the shard's reader.", Gauge,
                per_shard(&|s| Value::Gauge(s.segments as f64))),
            family("tandem_shard_retention_floor_seq_no", "Merges may drop history below this sequence number.", Gauge,
                per_shard(&|s| Value::Gauge(s.retention_floor as f64))),
            family("tandem_shard_max_seq_no", "Highest sequence number of the shard.", Gauge,
                per_shard(&|s| Value::Gauge(s.max_seq_no as f64))),
            family("tandem_shard_global_checkpoint", "Global checkpoint of the shard.", Gauge,
                per_shard(&|s| Value::Gauge(s.global_checkpoint as f64))),
            family("tandem_process_resident_memory_bytes", "Resident memory of the node's process.", Gauge,
                one(Value::Gauge(self.process.resident_bytes as f64))),
            family("tandem_process_cpu_seconds", "CPU time of the node's process.", Counter,
                one(Value::Counter(self.process.cpu_millis as f64 / 1000.0))),
            family("tandem_process_open_fds", "Open file descriptors of the node's process.", Gauge,
                one(Value::Gauge(self.process.open_file_descriptors as f64))),
            family("tandem_http_open_connections", "HTTP connections open (REST and transport).", Gauge,
                one(Value::Gauge(self.http_open as f64))),
            family("tandem_runtime_tasks", "Asynchronous tasks alive in the node's runtime.", Gauge,
                one(Value::Gauge(self.runtime_tasks as f64))),
            family("tandem_follow_tasks", "Shard follow tasks running.", Gauge,
                one(Value::Gauge(self.follows.iter().filter(|f| !f.paused && f.stats.fatal_exception.is_none()).count() as f64))),
            family("tandem_verify_sessions", "Verify sessions this node holds as a leader.", Gauge,
                one(Value::Gauge(self.verify_sessions as f64))),
        ]
    }
}

fn recovery_rate(recovery: &FollowerShardRecovery) -> f64 {
    let progress = &recovery.progress;
    let elapsed = match progress.stop_time {
        Some(_) => progress.total_time,
        None => SystemTime::now()
            .duration_since(progress.start_time)
            .unwrap_or_default(),
    };
    if elapsed.is_zero() {
        0.0
    } else {
        progress.bytes_recovered as f64 / elapsed.as_secs_f64()
    }
}

impl Collector for ScrapeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in self.0.families() {
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, family.metric_type)?;
            for (labels, value) in &family.values {
                if labels.is_empty() {
                    // A family of one value without labels (`name value`, not `name{} value`).
                    value.encode(metric)?;
                    break;
                }
                value.encode(metric.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct ScrapeCollector(Scrape);

async fn gather(node: &NodeState) -> Result<Scrape, RestError> {
    let follows = node.followers.follow_metrics().await;
    let recoveries = node.followers.recoveries(None);
    let runtime_tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks() as u64;
    let reading = node.clone();
    let (shards, process) = blocking(move || {
        let mut shards = Vec::new();
        for (name, index) in open_indices(&reading.indices, None)? {
            for (number, shard) in index.shards().iter().enumerate() {
                let stats = shard.stats();
                let counters = shard.counters();
                shards.push(ShardFigures {
                    index: name.clone(),
                    shard: number as u32,
                    indexed: counters.index_total,
                    deleted: counters.delete_total,
                    docs: stats.doc_count,
                    translog_bytes: stats.translog_size_in_bytes,
                    refresh_seconds: counters.refresh_time.as_secs_f64(),
                    merge_seconds: counters.merge_time.as_secs_f64(),
                    segments: stats.segment_count as u64,
                    retention_floor: stats.min_retained_seq_no.0,
                    max_seq_no: stats.max_seq_no.0,
                    global_checkpoint: stats.global_checkpoint.0,
                });
            }
        }
        Ok((shards, system::process()))
    })
    .await?;
    Ok(Scrape {
        follows,
        recoveries,
        shards,
        process,
        http_open: node.http_counters.current_open(),
        runtime_tasks,
        verify_sessions: node.leader.verify_source().open_session_count() as u64,
    })
}

async fn scrape(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    params.allow(&[])?;
    let scrape = gather(&node).await?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ScrapeCollector(scrape)));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .map_err(|error| RestError::internal(format!("cannot encode the metrics: {error}")))?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}
