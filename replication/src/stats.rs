//! Follow stats in Elasticsearch's shape (`GET /{index}/_ccr/stats`): per shard every field of
//! DESIGN.md §6, per index the total global checkpoint lag.
//!
//! These are plain values: a shard follow task fills one in when asked, so a stats call never
//! blocks the task for longer than a copy.

use serde::{Deserialize, Serialize};

/// An error as Elasticsearch renders one inside stats (`{"type": ..., "reason": ...}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Elasticsearch's exception type name (`illegal_state_exception`, ...).
    #[serde(rename = "type")]
    pub error_type: String,
    /// The message.
    pub reason: String,
}

/// A read that failed with a recoverable error and is being retried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadException {
    /// First sequence number of the failed read.
    pub from_seq_no: i64,
    /// How many times it has been retried so far.
    pub retries: u32,
    /// The last error.
    pub exception: ErrorBody,
}

/// Upper bounds (seconds) of the buckets of the follow latency histograms.
pub const LATENCY_BUCKETS_SECONDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram with the buckets of [`LATENCY_BUCKETS_SECONDS`] (and one above them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Per bucket (not cumulative); the last counts what exceeded every bound.
    pub counts: [u64; LATENCY_BUCKETS_SECONDS.len() + 1],
    /// Sum of the latencies, in nanoseconds.
    pub sum_nanos: u64,
}

impl LatencyHistogram {
    /// Counts one latency.
    pub fn record(&mut self, latency: std::time::Duration) {
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.counts[bucket] += 1;
        self.sum_nanos = self
            .sum_nanos
            .saturating_add(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Latencies counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// (upper bound, count of that bucket alone) per bucket, `+Inf` last.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        LATENCY_BUCKETS_SECONDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts)
            .collect()
    }

    /// (upper bound, cumulative count) per bucket, `+Inf` last: Prometheus' buckets.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        LATENCY_BUCKETS_SECONDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts)
            .map(|(bound, count)| {
                total += count;
                (bound, total)
            })
            .collect()
    }
}

/// What a follower shard's task measures beyond Elasticsearch's follow stats (for the
/// Prometheus metrics; not part of `_ccr/stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FollowMetrics {
    /// End-to-end latency of reads from the leader.
    pub read_latency: LatencyHistogram,
    /// Latency of writes to the follower shard.
    pub write_latency: LatencyHistogram,
    /// Bytes of the operations written to the follower shard.
    pub bytes_written: u64,
}

/// The stats of one follower shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardFollowStats {
    /// Alias of the leader's cluster.
    pub remote_cluster: String,
    /// Leader index name.
    pub leader_index: String,
    /// Follower index name.
    pub follower_index: String,
    /// Shard number.
    pub shard_id: u32,
    /// The leader shard's global checkpoint, as of the last read.
    pub leader_global_checkpoint: i64,
    /// The leader shard's max_seq_no, as of the last read.
    pub leader_max_seq_no: i64,
    /// The follower shard's global checkpoint.
    pub follower_global_checkpoint: i64,
    /// The follower shard's max_seq_no.
    pub follower_max_seq_no: i64,
    /// Highest sequence number requested from the leader so far.
    pub last_requested_seq_no: i64,
    /// Reads in flight.
    pub outstanding_read_requests: u32,
    /// Writes in flight.
    pub outstanding_write_requests: u32,
    /// Operations in the write buffer.
    pub write_buffer_operation_count: u64,
    /// Bytes in the write buffer.
    pub write_buffer_size_in_bytes: u64,
    /// Mapping version the follower has applied.
    pub follower_mapping_version: u64,
    /// Settings version the follower has applied.
    pub follower_settings_version: u64,
    /// Aliases version the follower has applied.
    pub follower_aliases_version: u64,
    /// Time spent in reads, end to end.
    pub total_read_time_millis: u64,
    /// Time the leader spent executing reads.
    pub total_read_remote_exec_time_millis: u64,
    /// Reads that succeeded.
    pub successful_read_requests: u64,
    /// Reads that failed.
    pub failed_read_requests: u64,
    /// Operations received from the leader.
    pub operations_read: u64,
    /// Bytes of operations received from the leader.
    pub bytes_read: u64,
    /// Time spent in writes.
    pub total_write_time_millis: u64,
    /// Writes that succeeded.
    pub successful_write_requests: u64,
    /// Writes that failed.
    pub failed_write_requests: u64,
    /// Operations written to the follower.
    pub operations_written: u64,
    /// Reads being retried, by first sequence number.
    pub read_exceptions: Vec<ReadException>,
    /// Milliseconds since the last read returned; -1 before the first.
    pub time_since_last_read_millis: i64,
    /// The error that stopped the task, if one did.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fatal_exception: Option<ErrorBody>,
    /// Latencies and bytes written (for the metrics).
    #[serde(skip)]
    pub metrics: FollowMetrics,
}

impl ShardFollowStats {
    /// The stats of a shard whose follow task has not started (its index is still being
    /// recovered, or its recovery failed with `fatal_exception`): no checkpoint known (-1),
    /// nothing read or written.
    pub fn before_following(
        remote_cluster: &str,
        leader_index: &str,
        follower_index: &str,
        shard_id: u32,
        fatal_exception: Option<ErrorBody>,
    ) -> ShardFollowStats {
        ShardFollowStats {
            remote_cluster: remote_cluster.to_string(),
            leader_index: leader_index.to_string(),
            follower_index: follower_index.to_string(),
            shard_id,
            leader_global_checkpoint: -1,
            leader_max_seq_no: -1,
            follower_global_checkpoint: -1,
            follower_max_seq_no: -1,
            last_requested_seq_no: -1,
            outstanding_read_requests: 0,
            outstanding_write_requests: 0,
            write_buffer_operation_count: 0,
            write_buffer_size_in_bytes: 0,
            follower_mapping_version: 0,
            follower_settings_version: 0,
            follower_aliases_version: 0,
            total_read_time_millis: 0,
            total_read_remote_exec_time_millis: 0,
            successful_read_requests: 0,
            failed_read_requests: 0,
            operations_read: 0,
            bytes_read: 0,
            total_write_time_millis: 0,
            successful_write_requests: 0,
            failed_write_requests: 0,
            operations_written: 0,
            read_exceptions: Vec::new(),
            time_since_last_read_millis: -1,
            fatal_exception,
            metrics: FollowMetrics::default(),
        }
    }

    /// How far the follower's global checkpoint trails the leader's (never negative).
    pub fn global_checkpoint_lag(&self) -> u64 {
        (self.leader_global_checkpoint - self.follower_global_checkpoint).max(0) as u64
    }
}

/// The stats of one follower index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFollowStats {
    /// Follower index name.
    pub index: String,
    /// Sum over the shards of the global checkpoint lag.
    pub total_global_checkpoint_lag: u64,
    /// Per shard.
    pub shards: Vec<ShardFollowStats>,
}

impl IndexFollowStats {
    /// Groups shard stats under their index and sums the lag.
    pub fn new(index: impl Into<String>, shards: Vec<ShardFollowStats>) -> IndexFollowStats {
        IndexFollowStats {
            index: index.into(),
            total_global_checkpoint_lag: shards
                .iter()
                .map(ShardFollowStats::global_checkpoint_lag)
                .sum(),
            shards,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(shard_id: u32, leader: i64, follower: i64) -> ShardFollowStats {
        ShardFollowStats {
            leader_global_checkpoint: leader,
            leader_max_seq_no: leader,
            follower_global_checkpoint: follower,
            follower_max_seq_no: follower,
            last_requested_seq_no: leader,
            outstanding_read_requests: 1,
            follower_mapping_version: 1,
            follower_settings_version: 1,
            follower_aliases_version: 1,
            ..ShardFollowStats::before_following("leader", "logs", "logs-copy", shard_id, None)
        }
    }

    #[test]
    fn every_documented_field_is_serialized_and_lag_sums() {
        let index = IndexFollowStats::new("logs-copy", vec![shard(0, 100, 40), shard(1, 7, 9)]);
        assert_eq!(index.total_global_checkpoint_lag, 60);
        let json = serde_json::to_value(&index.shards[0]).unwrap();
        let fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for field in [
            "remote_cluster",
            "leader_index",
            "follower_index",
            "shard_id",
            "leader_global_checkpoint",
            "leader_max_seq_no",
            "follower_global_checkpoint",
            "follower_max_seq_no",
            "last_requested_seq_no",
            "outstanding_read_requests",
            "outstanding_write_requests",
            "write_buffer_operation_count",
            "write_buffer_size_in_bytes",
            "follower_mapping_version",
            "follower_settings_version",
            "follower_aliases_version",
            "total_read_time_millis",
            "total_read_remote_exec_time_millis",
            "successful_read_requests",
            "failed_read_requests",
            "operations_read",
            "bytes_read",
            "total_write_time_millis",
            "successful_write_requests",
            "failed_write_requests",
            "operations_written",
            "read_exceptions",
            "time_since_last_read_millis",
        ] {
            assert!(fields.contains(&field), "missing {field}");
        }
        assert!(
            !fields.contains(&"fatal_exception"),
            "only present once fatal"
        );
        assert_eq!(json["time_since_last_read_millis"], -1);

        let mut failed = shard(2, 5, 5);
        failed.read_exceptions.push(ReadException {
            from_seq_no: 6,
            retries: 3,
            exception: ErrorBody {
                error_type: "connect_transport_exception".into(),
                reason: "connection refused".into(),
            },
        });
        failed.fatal_exception = Some(ErrorBody {
            error_type: "resource_not_found_exception".into(),
            reason: "leader index gone".into(),
        });
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(
            json["read_exceptions"][0]["exception"]["type"],
            "connect_transport_exception"
        );
        assert_eq!(json["fatal_exception"]["reason"], "leader index gone");
        let back: ShardFollowStats = serde_json::from_value(json).unwrap();
        assert_eq!(back, failed);
    }
}
