//! [`ShardCounters`]: what a shard has done since it was opened (writes, searches, refreshes,
//! merges), counted with relaxed atomics on the paths that do it, for `_stats`, `_nodes/stats`
//! and the Prometheus metrics. Counters only grow; a reopened shard starts from zero, as an
//! Elasticsearch shard does after a restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The counters of one shard (see the module documentation).
#[derive(Debug, Default)]
pub struct ShardCounters {
    index_total: AtomicU64,
    index_time_nanos: AtomicU64,
    index_failed: AtomicU64,
    delete_total: AtomicU64,
    delete_time_nanos: AtomicU64,
    noop_total: AtomicU64,
    query_total: AtomicU64,
    query_time_nanos: AtomicU64,
    fetch_total: AtomicU64,
    fetch_time_nanos: AtomicU64,
    refresh_time_nanos: AtomicU64,
    commit_time_nanos: AtomicU64,
    merge_total: AtomicU64,
    merge_time_nanos: AtomicU64,
    merge_docs: AtomicU64,
    merge_current_docs: AtomicU64,
    merge_current: AtomicU64,
}

/// A copy of [`ShardCounters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Index operations applied (primary writes and follower applies).
    pub index_total: u64,
    /// Time spent on them.
    pub index_time: Duration,
    /// Index or delete requests that failed.
    pub index_failed: u64,
    /// Delete operations applied.
    pub delete_total: u64,
    /// Time spent on them.
    pub delete_time: Duration,
    /// No-ops recorded.
    pub noop_total: u64,
    /// Queries run on the shard (searches and counts).
    pub query_total: u64,
    /// Time spent on them.
    pub query_time: Duration,
    /// Fetches of hits' documents.
    pub fetch_total: u64,
    /// Time spent on them.
    pub fetch_time: Duration,
    /// Time spent in refreshes (a Tandem refresh is a commit plus a reader reload).
    pub refresh_time: Duration,
    /// Time spent in the commits of those refreshes (Elasticsearch's flushes).
    pub commit_time: Duration,
    /// Merges completed.
    pub merge_total: u64,
    /// Time they took.
    pub merge_time: Duration,
    /// Documents they merged.
    pub merge_docs: u64,
    /// Documents of the merges running now.
    pub merge_current_docs: u64,
    /// Merges running now.
    pub merge_current: u64,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl ShardCounters {
    /// Counts a batch of writes: `indexed` index and `deleted` delete operations, `noops`
    /// no-ops and `failed` failed items, which took `took` together (split between index and
    /// delete time by count).
    pub fn record_writes(
        &self,
        indexed: u64,
        deleted: u64,
        noops: u64,
        failed: u64,
        took: Duration,
    ) {
        let total = indexed + deleted;
        if total > 0 {
            let took = nanos(took);
            let index_share = (u128::from(took) * u128::from(indexed) / u128::from(total)) as u64;
            self.index_total.fetch_add(indexed, Ordering::Relaxed);
            self.delete_total.fetch_add(deleted, Ordering::Relaxed);
            self.index_time_nanos
                .fetch_add(index_share, Ordering::Relaxed);
            self.delete_time_nanos
                .fetch_add(took - index_share, Ordering::Relaxed);
        }
        self.noop_total.fetch_add(noops, Ordering::Relaxed);
        self.index_failed.fetch_add(failed, Ordering::Relaxed);
    }

    /// Counts one query on the shard.
    pub fn record_query(&self, took: Duration) {
        self.query_total.fetch_add(1, Ordering::Relaxed);
        self.query_time_nanos
            .fetch_add(nanos(took), Ordering::Relaxed);
    }

    /// Counts one fetch of hits from the shard.
    pub fn record_fetch(&self, took: Duration) {
        self.fetch_total.fetch_add(1, Ordering::Relaxed);
        self.fetch_time_nanos
            .fetch_add(nanos(took), Ordering::Relaxed);
    }

    /// Counts one refresh, of which `commit` was the commit.
    pub fn record_refresh(&self, took: Duration, commit: Duration) {
        self.refresh_time_nanos
            .fetch_add(nanos(took), Ordering::Relaxed);
        self.commit_time_nanos
            .fetch_add(nanos(commit), Ordering::Relaxed);
    }

    /// Counts a merge of `docs` documents starting.
    pub fn merge_started(&self, docs: u64) {
        self.merge_current.fetch_add(1, Ordering::Relaxed);
        self.merge_current_docs.fetch_add(docs, Ordering::Relaxed);
    }

    /// Counts a merge of `docs` documents that ended after `took`.
    pub fn merge_ended(&self, docs: u64, took: Duration) {
        self.merge_current.fetch_sub(1, Ordering::Relaxed);
        self.merge_current_docs.fetch_sub(docs, Ordering::Relaxed);
        self.merge_total.fetch_add(1, Ordering::Relaxed);
        self.merge_docs.fetch_add(docs, Ordering::Relaxed);
        self.merge_time_nanos
            .fetch_add(nanos(took), Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> CounterSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let time = |counter: &AtomicU64| Duration::from_nanos(counter.load(Ordering::Relaxed));
        CounterSnapshot {
            index_total: load(&self.index_total),
            index_time: time(&self.index_time_nanos),
            index_failed: load(&self.index_failed),
            delete_total: load(&self.delete_total),
            delete_time: time(&self.delete_time_nanos),
            noop_total: load(&self.noop_total),
            query_total: load(&self.query_total),
            query_time: time(&self.query_time_nanos),
            fetch_total: load(&self.fetch_total),
            fetch_time: time(&self.fetch_time_nanos),
            refresh_time: time(&self.refresh_time_nanos),
            commit_time: time(&self.commit_time_nanos),
            merge_total: load(&self.merge_total),
            merge_time: time(&self.merge_time_nanos),
            merge_docs: load(&self.merge_docs),
            merge_current_docs: load(&self.merge_current_docs),
            merge_current: load(&self.merge_current),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_time_is_split_by_count_and_merges_balance() {
        let counters = ShardCounters::default();
        counters.record_writes(3, 1, 2, 1, Duration::from_nanos(400));
        counters.merge_started(10);
        assert_eq!(counters.snapshot().merge_current_docs, 10);
        counters.merge_ended(10, Duration::from_millis(5));
        let snapshot = counters.snapshot();
        assert_eq!(
            (
                snapshot.index_total,
                snapshot.delete_total,
                snapshot.noop_total
            ),
            (3, 1, 2)
        );
        assert_eq!(snapshot.index_failed, 1);
        assert_eq!(snapshot.index_time, Duration::from_nanos(300));
        assert_eq!(snapshot.delete_time, Duration::from_nanos(100));
        assert_eq!((snapshot.merge_total, snapshot.merge_docs), (1, 10));
        assert_eq!(snapshot.merge_current_docs, 0);
    }
}
