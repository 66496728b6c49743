//! The node's indexing buffer (`indices.memory.index_buffer_size`): the operations every shard
//! holds in memory until its next refresh (the tail and the version map) are bounded in bytes
//! for the node as a whole. When they exceed the budget, the shards holding most are refreshed
//! until they fit, as Elasticsearch's `IndexingMemoryController` does; with
//! `refresh_interval: -1` (the bulk-load recipe) this is what keeps a node's memory flat.
//!
//! Guarantees: checked every [`INDEXING_BUFFER_CHECK_INTERVAL`], so the buffer exceeds its
//! budget by at most what the node writes in that time; tantivy's own indexing memory is bounded
//! apart, per shard, by its writer budget.

use std::sync::Arc;
use std::time::Duration;

use tandem_engine::Indices;
use tokio::task::JoinHandle;

/// How often the node compares its indexing buffer with the budget.
pub const INDEXING_BUFFER_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// Starts the loop that keeps `indices` within `budget` bytes of indexing buffer.
pub fn spawn(indices: Arc<Indices>, budget: u64) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(INDEXING_BUFFER_CHECK_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if indices.indexing_buffer_bytes() <= budget {
                continue;
            }
            let enforcing = indices.clone();
            match tokio::task::spawn_blocking(move || enforcing.enforce_indexing_buffer(budget))
                .await
            {
                Ok(refreshed) => {
                    for (index, shard, bytes) in refreshed {
                        tracing::debug!(%index, shard, bytes, budget, "refreshed for the indexing buffer");
                    }
                }
                Err(error) => tracing::warn!(%error, "enforcing the indexing buffer"),
            }
        }
    })
}
