//! `ShardFollowTask`: the pull loop of one follower shard (DESIGN.md §4).
//!
//! One tokio task owns all of the loop's state; reads from the leader, writes to the follower
//! engine and lease renewals run as child futures in a `JoinSet` whose results come back to it,
//! so the state needs no lock and every transition happens in one place
//! ([`FollowLoop::on_read`], [`FollowLoop::on_write`]).
//!
//! Guarantees:
//! - operations reach the follower through `apply_shared_operations` (idempotent, any order), so
//!   concurrent writes and re-sent reads never leave a gap or a duplicate (invariant 5);
//! - reads are issued only while the write buffer has room (invariant 7: the buffer holds at
//!   most `max_write_buffer_size` plus the reads in flight when it filled);
//! - recoverable leader errors are retried forever with [`crate::backoff`]; a fatal one is
//!   recorded as `fatal_exception` and stops the loop;
//! - an answer that cannot be used (a global checkpoint behind the follower's, no operation
//!   where some were announced, a long poll answered before its timeout) is retried with the
//!   same backoff and reported as a failed read, never re-sent at once
//!   ([`FollowLoop::read_anomaly`]);
//! - a write the follower's disk is too full to take (`EngineError::NoSpace`) goes back to the
//!   buffer, ahead of what followed, and writes wait with the same backoff (reported as failed
//!   writes) until the disk takes them again; reads stop once the buffer is full; any other
//!   write failure is fatal;
//! - stopping (pause, unfollow, drop) aborts the reads in flight, waits for the writes in flight
//!   (they are short and must not be cut in half), and leaves no child task behind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tandem_engine::index::Index;
use tandem_engine::shard::ChangesRequest;
use tandem_engine::{EngineError, SeqNo, ShardEngine, SharedOperation};
use tandem_recovery::in_process::MAX_POLL_TIMEOUT;
use tandem_recovery::leader_api::{
    LeaderClient, ShardChangesRequest, ShardChangesResponse, ShardId,
};
use tandem_recovery::{
    AddRetentionLeaseRequest, IndexMetadataRequest, LeaderError, RenewRetentionLeaseRequest,
};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::backoff::retry_delay;
use crate::buffer::WriteBuffer;
use crate::params::ResolvedFollowParameters;
use crate::stats::{ErrorBody, ReadException, ShardFollowStats};

/// Default interval between renewals of the follower's retention lease on the leader shard.
pub const DEFAULT_LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(30);

/// The follower's retention lease on its leader shard.
#[derive(Clone, Debug)]
pub struct FollowerLease {
    /// Lease id (Elasticsearch's `<cluster>/<index>/<uuid>-following-<remote>/<leader>/<uuid>`).
    pub id: String,
    /// How often it is renewed.
    pub renew_interval: Duration,
}

/// Everything a shard follow task needs to run.
#[derive(Clone)]
pub struct ShardFollowTaskConfig {
    /// Alias of the leader cluster (for stats).
    pub remote_cluster: String,
    /// The leader shard.
    pub leader_shard: ShardId,
    /// The follower index and its shard number (same as the leader's).
    pub follower_index: Arc<Index>,
    /// The follow parameters.
    pub parameters: ResolvedFollowParameters,
    /// The leader shard's history uuid the follower was created from; reads fail fatally if it
    /// changes. `None` skips the check.
    pub leader_history_uuid: Option<String>,
    /// The retention lease to keep renewing, if any.
    pub lease: Option<FollowerLease>,
    /// The leader's mapping version the follower index already has.
    pub follower_mapping_version: u64,
    /// The leader's settings version the follower index already has.
    pub follower_settings_version: u64,
    /// Where the task notes what it sees of the leader's progress (the lag metrics read it,
    /// also while the follower is paused).
    pub lag_clock: Arc<crate::lag::LagClock>,
}

/// A running (or stopped) pull loop. Dropping it stops the loop.
pub struct ShardFollowTask {
    status: Arc<Mutex<TaskStatus>>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl ShardFollowTask {
    /// Starts the loop on the current tokio runtime. It reads from the follower shard's global
    /// checkpoint + 1 on.
    pub fn start(client: Arc<dyn LeaderClient>, config: ShardFollowTaskConfig) -> ShardFollowTask {
        assert!(
            (config.leader_shard.shard as usize) < config.follower_index.shards().len(),
            "the follower index has the leader's shard count"
        );
        let follower_checkpoint = follower_engine(&config).global_checkpoint();
        let status = Arc::new(Mutex::new(TaskStatus {
            stats: initial_stats(&config, follower_engine(&config)),
            last_read: None,
        }));
        let (stop, stopped) = oneshot::channel();
        let follow = FollowLoop {
            client,
            leader_global_checkpoint: follower_checkpoint,
            leader_max_seq_no: follower_checkpoint,
            leader_max_seq_no_of_updates: SeqNo(-1),
            last_requested_seq_no: follower_checkpoint,
            outstanding_reads: 0,
            outstanding_writes: 0,
            buffer: WriteBuffer::new(),
            read_exceptions: BTreeMap::new(),
            write_retries: 0,
            writes_paused_until: None,
            follower_versions: MetadataVersions {
                mapping: config.follower_mapping_version,
                settings: config.follower_settings_version,
                aliases: config.follower_index.metadata().aliases_version,
            },
            status: status.clone(),
            rng: StdRng::from_os_rng(),
            fatal: None,
            config,
            counters: Counters::default(),
        };
        let handle = tokio::spawn(follow.run(stopped));
        ShardFollowTask {
            status,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// The current stats.
    pub fn stats(&self) -> ShardFollowStats {
        let status = self.status.lock();
        let mut stats = status.stats.clone();
        stats.time_since_last_read_millis = status
            .last_read
            .map_or(-1, |last| last.elapsed().as_millis() as i64);
        stats
    }

    /// The error that stopped the loop, if one did.
    pub fn fatal_exception(&self) -> Option<ErrorBody> {
        self.status.lock().stats.fatal_exception.clone()
    }

    /// True once the loop has ended (stopped or failed).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the loop and waits until it and every child task have ended.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            if let Err(error) = handle.await {
                tracing::warn!(%error, "shard follow task ended abnormally");
            }
        }
    }
}

impl Drop for ShardFollowTask {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn follower_engine(config: &ShardFollowTaskConfig) -> &ShardEngine {
    &config.follower_index.shards()[config.leader_shard.shard as usize]
}

fn initial_stats(config: &ShardFollowTaskConfig, engine: &ShardEngine) -> ShardFollowStats {
    let checkpoint = engine.global_checkpoint().0;
    ShardFollowStats {
        leader_global_checkpoint: checkpoint,
        leader_max_seq_no: checkpoint,
        follower_global_checkpoint: checkpoint,
        follower_max_seq_no: engine.max_seq_no().0,
        last_requested_seq_no: checkpoint,
        follower_mapping_version: config.follower_mapping_version,
        follower_settings_version: config.follower_settings_version,
        follower_aliases_version: config.follower_index.metadata().aliases_version,
        ..ShardFollowStats::before_following(
            &config.remote_cluster,
            &config.leader_shard.index,
            &config.follower_index.name(),
            config.leader_shard.shard,
            None,
        )
    }
}

/// What the loop publishes for stats calls.
struct TaskStatus {
    stats: ShardFollowStats,
    /// When the last read returned.
    last_read: Option<Instant>,
}

/// Counters that only grow.
#[derive(Default)]
struct Counters {
    read_latency: crate::stats::LatencyHistogram,
    write_latency: crate::stats::LatencyHistogram,
    bytes_written: u64,
    total_read_time: Duration,
    total_read_remote_exec_time: Duration,
    successful_reads: u64,
    failed_reads: u64,
    operations_read: u64,
    bytes_read: u64,
    total_write_time: Duration,
    successful_writes: u64,
    failed_writes: u64,
    operations_written: u64,
}

/// A read: `[from, ..]`, wanting everything up to `max_required` (below `from` for a peek).
#[derive(Clone, Copy, Debug)]
struct ReadRange {
    from: SeqNo,
    max_required: SeqNo,
    peek: bool,
}

enum Event {
    Read {
        range: ReadRange,
        started: Instant,
        result: Result<ShardChangesResponse, LeaderError>,
    },
    Write {
        operations: usize,
        /// Bytes of those operations.
        bytes: u64,
        started: Instant,
        result: Result<(), EngineError>,
        /// The operations, back from a write the follower's full disk refused.
        refused: Option<Vec<SharedOperation>>,
    },
    LeaseRenewed(Result<(), LeaderError>),
}

/// The versions of an index's mappings, settings and aliases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MetadataVersions {
    mapping: u64,
    settings: u64,
    aliases: u64,
}

impl MetadataVersions {
    /// True when `leader` has a newer version of anything.
    fn is_behind(&self, leader: &MetadataVersions) -> bool {
        leader.mapping > self.mapping
            || leader.settings > self.settings
            || leader.aliases > self.aliases
    }

    /// The newer of each version.
    fn max(self, other: MetadataVersions) -> MetadataVersions {
        MetadataVersions {
            mapping: self.mapping.max(other.mapping),
            settings: self.settings.max(other.settings),
            aliases: self.aliases.max(other.aliases),
        }
    }
}

struct FollowLoop {
    client: Arc<dyn LeaderClient>,
    config: ShardFollowTaskConfig,
    leader_global_checkpoint: SeqNo,
    leader_max_seq_no: SeqNo,
    leader_max_seq_no_of_updates: SeqNo,
    last_requested_seq_no: SeqNo,
    outstanding_reads: usize,
    outstanding_writes: usize,
    buffer: WriteBuffer,
    /// The leader metadata versions the follower index has applied.
    follower_versions: MetadataVersions,
    /// Reads being retried: first seq_no -> (retries, last error).
    read_exceptions: BTreeMap<i64, (u32, ErrorBody)>,
    /// Writes refused by a full disk in a row, and when writes may be tried again.
    write_retries: u32,
    writes_paused_until: Option<tokio::time::Instant>,
    status: Arc<Mutex<TaskStatus>>,
    rng: StdRng,
    fatal: Option<ErrorBody>,
    counters: Counters,
}

/// Waits until `deadline` (never, for `None`: the caller's guard keeps that branch off).
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl FollowLoop {
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        // Reads and lease renewals may be aborted at any await; writes are never cut (see the
        // module documentation), so they live in their own set.
        let mut reads: JoinSet<Event> = JoinSet::new();
        let mut writes: JoinSet<Event> = JoinSet::new();
        let renew_every = self
            .config
            .lease
            .as_ref()
            .map_or(DEFAULT_LEASE_RENEW_INTERVAL, |lease| lease.renew_interval);
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while self.fatal.is_none() {
            self.coordinate_reads(&mut reads);
            self.coordinate_writes(&mut writes);
            self.publish();
            tokio::select! {
                _ = &mut stopped => break,
                Some(joined) = reads.join_next() => match joined {
                    Ok(Event::Read { range, started, result }) => {
                        self.on_read(range, started, result, &mut reads).await;
                    }
                    Ok(Event::LeaseRenewed(result)) => self.on_lease_renewed(result),
                    Ok(Event::Write { .. }) => unreachable!("writes run in their own set"),
                    Err(error) => self.on_child_failure(error),
                },
                Some(joined) = writes.join_next() => match joined {
                    Ok(Event::Write { operations, bytes, started, result, refused }) => {
                        self.on_write((operations, bytes), started, result, refused);
                    }
                    Ok(_) => unreachable!("only writes run in the write set"),
                    Err(error) => self.on_child_failure(error),
                },
                _ = renew.tick(), if self.config.lease.is_some() => self.renew_lease(&mut reads),
                _ = sleep_until_some(self.writes_paused_until), if self.writes_paused_until.is_some() => {
                    self.writes_paused_until = None;
                }
            }
        }
        reads.abort_all();
        while reads.join_next().await.is_some() {}
        self.outstanding_reads = 0;
        while let Some(joined) = writes.join_next().await {
            match joined {
                Ok(Event::Write {
                    operations,
                    bytes,
                    started,
                    result,
                    refused,
                }) => self.on_write((operations, bytes), started, result, refused),
                Ok(_) => {}
                Err(error) => self.on_child_failure(error),
            }
        }
        self.buffer.clear();
        self.publish();
    }

    fn on_child_failure(&mut self, error: tokio::task::JoinError) {
        if error.is_cancelled() {
            return;
        }
        self.fail(ErrorBody {
            error_type: "illegal_state_exception".to_string(),
            reason: format!("a child task of the follow loop failed: {error}"),
        });
    }

    fn has_read_budget(&self) -> bool {
        let parameters = &self.config.parameters;
        self.outstanding_reads < parameters.max_outstanding_read_requests
            && self.buffer.has_room(
                parameters.max_write_buffer_count,
                parameters.max_write_buffer_size.bytes(),
            )
    }

    fn coordinate_reads(&mut self, children: &mut JoinSet<Event>) {
        let max_operations = self.config.parameters.max_read_request_operation_count as i64;
        while self.has_read_budget() && self.last_requested_seq_no < self.leader_global_checkpoint {
            let from = SeqNo(self.last_requested_seq_no.0 + 1);
            let max_required = SeqNo(
                self.leader_global_checkpoint
                    .0
                    .min(from.0.saturating_add(max_operations - 1)),
            );
            self.outstanding_reads += 1;
            self.last_requested_seq_no = max_required;
            self.send_read(
                children,
                ReadRange {
                    from,
                    max_required,
                    peek: false,
                },
                Duration::ZERO,
            );
        }
        if self.outstanding_reads == 0
            && self.has_read_budget()
            && self.last_requested_seq_no >= self.leader_global_checkpoint
        {
            // Caught up: one long-poll read waits on the leader for new operations.
            self.outstanding_reads += 1;
            let from = SeqNo(self.last_requested_seq_no.0 + 1);
            self.send_read(
                children,
                ReadRange {
                    from,
                    max_required: self.last_requested_seq_no,
                    peek: true,
                },
                Duration::ZERO,
            );
        }
    }

    fn send_read(&mut self, children: &mut JoinSet<Event>, range: ReadRange, delay: Duration) {
        let parameters = &self.config.parameters;
        let wanted = if range.peek {
            parameters.max_read_request_operation_count
        } else {
            (range.max_required.0 - range.from.0 + 1) as usize
        };
        let request = ShardChangesRequest {
            shard: self.config.leader_shard.clone(),
            changes: ChangesRequest {
                from_seq_no: range.from,
                max_operation_count: wanted,
                max_batch_size: usize::try_from(parameters.max_read_request_size.bytes())
                    .unwrap_or(usize::MAX),
                poll_timeout: if range.peek {
                    parameters.read_poll_timeout()
                } else {
                    Duration::ZERO
                },
                expected_history_uuid: self.config.leader_history_uuid.clone(),
            },
        };
        let client = self.client.clone();
        children.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let started = Instant::now();
            let result = client.shard_changes(request).await;
            Event::Read {
                range,
                started,
                result,
            }
        });
    }

    async fn on_read(
        &mut self,
        range: ReadRange,
        started: Instant,
        result: Result<ShardChangesResponse, LeaderError>,
        children: &mut JoinSet<Event>,
    ) {
        let elapsed = started.elapsed();
        self.counters.total_read_time += elapsed;
        self.counters.read_latency.record(elapsed);
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                let body = leader_error_body(&error);
                if error.is_retryable() {
                    tracing::debug!(from = range.from.0, %error, "retrying a read");
                    self.retry_read(range, body, children);
                } else {
                    self.counters.failed_reads += 1;
                    self.fail(body);
                }
                return;
            }
        };
        if let Some(anomaly) = self.read_anomaly(range, elapsed, &response) {
            tracing::debug!(from = range.from.0, reason = %anomaly.reason, "backing off a read");
            self.retry_read(range, anomaly, children);
            return;
        }
        self.leader_global_checkpoint = self
            .leader_global_checkpoint
            .max(response.changes.global_checkpoint);
        self.leader_max_seq_no = self.leader_max_seq_no.max(response.changes.max_seq_no);
        self.config
            .lag_clock
            .observe(response.changes.max_seq_no.0, Instant::now());
        self.leader_max_seq_no_of_updates = self
            .leader_max_seq_no_of_updates
            .max(response.changes.max_seq_no_of_updates);
        let leader_versions = MetadataVersions {
            mapping: response.mapping_version,
            settings: response.settings_version,
            aliases: response.aliases_version,
        };
        if self.follower_versions.is_behind(&leader_versions) {
            if let Err(error) = self.catch_up_metadata(leader_versions).await {
                // Nothing of the response is applied yet: retried like a failed read.
                self.retry_read(range, error, children);
                return;
            }
        }
        self.read_exceptions.remove(&range.from.0);
        self.counters.successful_reads += 1;
        self.counters.total_read_remote_exec_time += response.changes.took;
        self.status.lock().last_read = Some(Instant::now());
        let mut next_from = range.from;
        if let Some(last) = response.changes.operations.last() {
            next_from = SeqNo(last.seq_no.0 + 1);
            self.last_requested_seq_no = self.last_requested_seq_no.max(last.seq_no);
            self.counters.operations_read += response.changes.operations.len() as u64;
            self.counters.bytes_read += response.changes.operations_size_in_bytes() as u64;
            self.buffer.extend(response.changes.operations);
        }
        if !range.peek && next_from <= range.max_required {
            // A partial read: ask for the rest of the range in the same slot.
            self.send_read(
                children,
                ReadRange {
                    from: next_from,
                    max_required: range.max_required,
                    peek: false,
                },
                Duration::ZERO,
            );
        } else {
            self.outstanding_reads -= 1;
        }
    }

    /// Why an answer that arrived without error cannot be used as it is, if it cannot: it is
    /// then retried with backoff like a failed read, never re-sent at once (a leader that
    /// answers the same way every time would otherwise be asked in a tight loop).
    ///
    /// - the leader's global checkpoint is behind what the follower already has (a leader
    ///   restored or replaced under the same history, or answering from a stale copy);
    /// - a read of operations the leader announced returned none of them;
    /// - a long poll returned nothing before its poll timeout (a leader that is not waiting).
    ///
    /// A long poll that waited its full timeout and returned nothing is normal (the leader had
    /// no new operation): it is sent again at once, as Elasticsearch does.
    fn read_anomaly(
        &self,
        range: ReadRange,
        elapsed: Duration,
        response: &ShardChangesResponse,
    ) -> Option<ErrorBody> {
        let changes = &response.changes;
        let follower_checkpoint = self.engine().global_checkpoint();
        let anomaly = |reason: String| {
            Some(ErrorBody {
                error_type: "illegal_state_exception".to_string(),
                reason,
            })
        };
        if changes.global_checkpoint < follower_checkpoint {
            return anomaly(format!(
                "the leader's global checkpoint [{}] is behind the follower's [{}]",
                changes.global_checkpoint, follower_checkpoint
            ));
        }
        if !changes.operations.is_empty() {
            return None;
        }
        if !range.peek {
            return anomaly(format!(
                "the leader answered no operation for [{}..={}] below its global checkpoint \
                 [{}]",
                range.from, range.max_required, self.leader_global_checkpoint
            ));
        }
        let poll_timeout = self
            .config
            .parameters
            .read_poll_timeout()
            .min(MAX_POLL_TIMEOUT);
        // Timers are not exact: a poll that waited nine tenths of its timeout waited it.
        let waited_enough = elapsed.saturating_mul(10) >= poll_timeout.saturating_mul(9);
        if changes.global_checkpoint <= self.last_requested_seq_no && !waited_enough {
            return anomaly(format!(
                "the leader answered a long poll from [{}] with no operation after {} ms, \
                 before its poll timeout of {} ms",
                range.from,
                elapsed.as_millis(),
                poll_timeout.as_millis()
            ));
        }
        None
    }

    /// Counts a failed read and sends it again after the backoff delay; it keeps its slot.
    fn retry_read(&mut self, range: ReadRange, error: ErrorBody, children: &mut JoinSet<Event>) {
        self.counters.failed_reads += 1;
        let entry = self
            .read_exceptions
            .entry(range.from.0)
            .or_insert((0, error.clone()));
        entry.0 += 1;
        entry.1 = error;
        let delay = retry_delay(
            entry.0,
            self.config.parameters.max_retry_delay.0,
            &mut self.rng,
        );
        self.send_read(children, range, delay);
    }

    /// Applies the leader's newer mappings, settings version and aliases before any operation
    /// of the read that revealed them is written (an operation may need a new field).
    async fn catch_up_metadata(
        &mut self,
        leader_versions: MetadataVersions,
    ) -> Result<(), ErrorBody> {
        let metadata = self
            .client
            .index_metadata(IndexMetadataRequest::new(&self.config.leader_shard.index))
            .await
            .map_err(|error| leader_error_body(&error))?;
        self.config
            .follower_index
            .apply_leader_metadata(&metadata)
            .map_err(|error| engine_error_body(&error))?;
        let fetched = MetadataVersions {
            mapping: metadata.mapping_version,
            settings: metadata.settings_version,
            aliases: metadata.aliases_version,
        };
        self.follower_versions = self.follower_versions.max(fetched.max(leader_versions));
        Ok(())
    }

    fn coordinate_writes(&mut self, children: &mut JoinSet<Event>) {
        let parameters = self.config.parameters;
        if self.writes_paused_until.is_some() {
            return;
        }
        while self.outstanding_writes < parameters.max_outstanding_write_requests
            && !self.buffer.is_empty()
        {
            let operations = self.buffer.take_batch(
                parameters.max_write_request_operation_count,
                parameters.max_write_request_size.bytes(),
            );
            self.outstanding_writes += 1;
            let index = self.config.follower_index.clone();
            let shard = self.config.leader_shard.shard as usize;
            let max_seq_no_of_updates = self.leader_max_seq_no_of_updates;
            let bytes: u64 = operations
                .iter()
                .map(|operation| operation.size_in_bytes() as u64)
                .sum();
            children.spawn(async move {
                let started = Instant::now();
                let count = operations.len();
                // Kept for a retry: the engine consumes the batch, and a full disk refuses it
                // (a vector of reference-counted operations, no copy of their bytes).
                let kept = operations.clone();
                let result = tokio::task::spawn_blocking(move || {
                    index.shards()[shard]
                        .apply_shared_operations(operations, max_seq_no_of_updates)
                        .map(|_| ())
                })
                .await
                .unwrap_or_else(|error| {
                    Err(EngineError::Closed(format!(
                        "the write task failed: {error}"
                    )))
                });
                let refused = matches!(result, Err(EngineError::NoSpace(_))).then_some(kept);
                Event::Write {
                    operations: count,
                    bytes,
                    started,
                    result,
                    refused,
                }
            });
        }
    }

    fn on_write(
        &mut self,
        (operations, bytes): (usize, u64),
        started: Instant,
        result: Result<(), EngineError>,
        refused: Option<Vec<SharedOperation>>,
    ) {
        self.outstanding_writes -= 1;
        self.counters.total_write_time += started.elapsed();
        self.counters.write_latency.record(started.elapsed());
        match (result, refused) {
            (Ok(()), _) => {
                self.counters.successful_writes += 1;
                self.counters.operations_written += operations as u64;
                self.counters.bytes_written += bytes;
                self.write_retries = 0;
            }
            (Err(error), Some(refused)) => {
                // The follower's disk is full: the batch waits in the buffer (the engine
                // applies an operation it already has as a no-op, so a retry is safe).
                self.counters.failed_writes += 1;
                self.write_retries += 1;
                let delay = retry_delay(
                    self.write_retries,
                    self.config.parameters.max_retry_delay.0,
                    &mut self.rng,
                );
                tracing::warn!(shard = %self.config.leader_shard, %error, retry = self.write_retries, ?delay, "follower disk full; retrying the write");
                self.buffer.extend(refused);
                self.writes_paused_until = Some(tokio::time::Instant::now() + delay);
            }
            (Err(error), None) => {
                // The follower engine refused operations the leader accepted: the follower is
                // broken or closed, and retrying cannot help.
                self.counters.failed_writes += 1;
                self.fail(engine_error_body(&error));
            }
        }
    }

    fn renew_lease(&mut self, children: &mut JoinSet<Event>) {
        let Some(lease) = self.config.lease.clone() else {
            return;
        };
        let client = self.client.clone();
        let shard = self.config.leader_shard.clone();
        let retaining = SeqNo(self.engine().global_checkpoint().0 + 1);
        let source = format!("ccr-follower/{}", self.config.follower_index.name());
        children.spawn(async move {
            let renewed = client
                .renew_retention_lease(RenewRetentionLeaseRequest::new(shard.clone(), lease.id.clone(), retaining))
                .await;
            let result = match renewed {
                Err(LeaderError::RetentionLeaseNotFound(_)) => {
                    // Expired or removed on the leader: add it again.
                    tracing::info!(lease = %lease.id, "retention lease vanished on the leader; re-adding it");
                    client
                        .add_retention_lease(AddRetentionLeaseRequest::new(shard, lease.id, retaining, source))
                        .await
                }
                other => other,
            };
            Event::LeaseRenewed(result)
        });
    }

    fn on_lease_renewed(&mut self, result: Result<(), LeaderError>) {
        if let Err(error) = result {
            // The next renewal tries again; reads report a lost history if it comes to that.
            tracing::warn!(%error, shard = %self.config.leader_shard, "renewing the retention lease failed");
        }
    }

    fn fail(&mut self, error: ErrorBody) {
        tracing::warn!(shard = %self.config.leader_shard, reason = %error.reason, "shard follow task stopped by a fatal error");
        self.fatal = Some(error);
        self.buffer.clear();
    }

    /// Copies the loop's state into the shared stats.
    fn engine(&self) -> &ShardEngine {
        follower_engine(&self.config)
    }

    fn publish(&self) {
        let mut guard = self.status.lock();
        let status = &mut guard.stats;
        status.leader_global_checkpoint = self.leader_global_checkpoint.0;
        status.leader_max_seq_no = self.leader_max_seq_no.0;
        status.follower_global_checkpoint = self.engine().global_checkpoint().0;
        status.follower_max_seq_no = self.engine().max_seq_no().0;
        status.last_requested_seq_no = self.last_requested_seq_no.0;
        status.follower_mapping_version = self.follower_versions.mapping;
        status.follower_settings_version = self.follower_versions.settings;
        status.follower_aliases_version = self.follower_versions.aliases;
        status.outstanding_read_requests = self.outstanding_reads as u32;
        status.outstanding_write_requests = self.outstanding_writes as u32;
        status.write_buffer_operation_count = self.buffer.len() as u64;
        status.write_buffer_size_in_bytes = self.buffer.size_in_bytes() as u64;
        let counters = &self.counters;
        status.total_read_time_millis = counters.total_read_time.as_millis() as u64;
        status.total_read_remote_exec_time_millis =
            counters.total_read_remote_exec_time.as_millis() as u64;
        status.successful_read_requests = counters.successful_reads;
        status.failed_read_requests = counters.failed_reads;
        status.operations_read = counters.operations_read;
        status.bytes_read = counters.bytes_read;
        status.total_write_time_millis = counters.total_write_time.as_millis() as u64;
        status.successful_write_requests = counters.successful_writes;
        status.failed_write_requests = counters.failed_writes;
        status.operations_written = counters.operations_written;
        status.read_exceptions = self
            .read_exceptions
            .iter()
            .map(|(from, (retries, exception))| ReadException {
                from_seq_no: *from,
                retries: *retries,
                exception: exception.clone(),
            })
            .collect();
        status.fatal_exception = self.fatal.clone();
        status.metrics = crate::stats::FollowMetrics {
            read_latency: counters.read_latency.clone(),
            write_latency: counters.write_latency.clone(),
            bytes_written: counters.bytes_written,
        };
    }
}

/// Elasticsearch's rendering of a leader error.
pub fn leader_error_body(error: &LeaderError) -> ErrorBody {
    ErrorBody {
        error_type: leader_error_type(error).to_string(),
        reason: error.to_string(),
    }
}

/// Elasticsearch's exception type name of a leader error.
pub fn leader_error_type(error: &LeaderError) -> &'static str {
    match error {
        LeaderError::IndexNotFound(_) => "index_not_found_exception",
        LeaderError::IndexClosed(_) => "index_closed_exception",
        LeaderError::ShardNotFound { .. } => "shard_not_found_exception",
        LeaderError::MissingHistory { .. } => "resource_not_found_exception",
        LeaderError::HistoryUuidMismatch { .. } => "illegal_state_exception",
        LeaderError::RetentionLeaseNotFound(_) => "retention_lease_not_found_exception",
        LeaderError::RetentionLeaseAlreadyExists(_) => "retention_lease_already_exists_exception",
        LeaderError::Unavailable(_) => "connect_transport_exception",
        LeaderError::Timeout(_) => "receive_timeout_transport_exception",
        LeaderError::InvalidRequest(_) => "illegal_argument_exception",
        LeaderError::InvalidResponse(_) => "illegal_state_exception",
        LeaderError::Unauthorized(_) => "security_exception",
        _ => "exception",
    }
}

/// Elasticsearch's rendering of a follower engine error.
pub fn engine_error_body(error: &EngineError) -> ErrorBody {
    ErrorBody {
        error_type: error.type_name().to_string(),
        reason: error.to_string(),
    }
}
