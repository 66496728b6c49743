//! The shard follow task against real leader and follower engines in this process: the
//! follower converges to the leader's live documents and history (invariant 2) under
//! concurrent leader writes with updates and deletes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tandem_engine::index::{AliasAction, Index};
use tandem_engine::shard::{DeleteRequest, IndexRequest, WriteRequest};
use tandem_engine::{SeqNo, ShardEngine};
use tandem_recovery::in_process::InProcessLeaderClient;
use tandem_recovery::leader_api::{
    ForwardingLeaderClient, LeaderClient, LeaderFuture, ShardChangesRequest, ShardChangesResponse,
    ShardId,
};
use tandem_recovery::source::{RecoverySource, RecoverySourceSettings};
use tandem_recovery::LeaderError;
use tandem_replication::params::FollowParameters;
use tandem_replication::task::{ShardFollowTask, ShardFollowTaskConfig};

const CONVERGE_WITHIN: Duration = Duration::from_secs(120);

fn mappings() -> serde_json::Value {
    json!({"properties": {"n": {"type": "long"}, "body": {"type": "text"}}})
}

fn create_index(dir: &std::path::Path, name: &str, shards: u32) -> Arc<Index> {
    let index = Index::create(dir, name, &json!({"number_of_shards": shards}), &mappings())
        .expect("create index");
    for shard in index.shards() {
        // Keep all history on both sides so the histories can be compared in full.
        shard
            .add_retention_lease("test-retain-all", SeqNo(0), "test")
            .expect("lease");
    }
    Arc::new(index)
}

/// A leader index `logs` and a follower index `logs-copy` (in follower mode) in `dir`.
fn leader_and_follower(dir: &std::path::Path, shards: u32) -> (Arc<Index>, Arc<Index>) {
    let leader = create_index(&dir.join("leader"), "logs", shards);
    let follower = create_index(&dir.join("follower"), "logs-copy", shards);
    follower.set_follower(true).unwrap();
    (leader, follower)
}

/// An in-process leader client serving `leader`.
fn client_for(leader: &Arc<Index>) -> InProcessLeaderClient {
    let client = InProcessLeaderClient::new(RecoverySource::new(RecoverySourceSettings::default()));
    client.register_index(leader.clone());
    client
}

/// Samples `metric` of the task's stats until shard 0 of the follower has caught up with the
/// leader; returns the largest value seen. Fails on a fatal exception or no progress.
async fn peak_until_caught_up(
    task: &ShardFollowTask,
    leader: &Index,
    follower: &Index,
    metric: impl Fn(&tandem_replication::stats::ShardFollowStats) -> u64,
) -> u64 {
    let target = leader.shards()[0].global_checkpoint();
    let mut peak = 0u64;
    let started = Instant::now();
    while follower.shards()[0].global_checkpoint() < target {
        let stats = task.stats();
        peak = peak.max(metric(&stats));
        assert!(stats.fatal_exception.is_none(), "{stats:?}");
        assert!(
            started.elapsed() < CONVERGE_WITHIN,
            "no progress: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    peak
}

type History = Vec<(i64, u64, u64, String, Option<String>, Option<Vec<u8>>)>;

fn history(shard: &ShardEngine) -> History {
    let max = shard.max_seq_no();
    let mut out = History::new();
    let mut from = 0;
    while from <= max.0 {
        let batch = shard
            .changes(SeqNo(from), max, 1000, usize::MAX)
            .expect("changes");
        assert!(!batch.is_empty(), "history stops at {from}");
        for op in batch {
            out.push((
                op.seq_no.0,
                op.primary_term.0,
                op.version,
                op.op_type().name().to_string(),
                op.id().map(str::to_string),
                op.source().map(<[u8]>::to_vec),
            ));
            from = op.seq_no.0 + 1;
        }
    }
    out
}

/// Live documents by id: (seq_no, version, source).
fn live_documents(index: &Index, ids: u64) -> BTreeMap<String, (i64, u64, Vec<u8>)> {
    (0..ids)
        .filter_map(|n| {
            let id = format!("doc-{n}");
            index
                .get(&id)
                .expect("get")
                .map(|doc| (id, (doc.seq_no.0, doc.version, doc.source)))
        })
        .collect()
}

async fn replicate_under_load(shards: u32) {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = leader_and_follower(dir.path(), shards);
    let client = client_for(&leader);
    let client = Arc::new(client);

    let parameters = FollowParameters {
        max_read_request_operation_count: Some(64),
        max_outstanding_read_requests: Some(4),
        max_write_request_operation_count: Some(50),
        max_outstanding_write_requests: Some(3),
        read_poll_timeout: Some(tandem_engine::units::TimeValue::from_millis(200)),
        ..FollowParameters::default()
    };
    let tasks: Vec<ShardFollowTask> = (0..shards)
        .map(|shard| {
            ShardFollowTask::start(
                client.clone(),
                task_config(&leader, &follower, shard, parameters.clone()),
            )
        })
        .collect();

    // Leader writes while the tasks pull: 30% of the operations update or delete.
    const IDS: u64 = 400;
    let writer = {
        let leader = leader.clone();
        tokio::task::spawn_blocking(move || {
            let mut state = 0x2545_f491_4f6c_dd1du64;
            let mut next_new = 0u64;
            for round in 0..120 {
                let mut bulk = Vec::new();
                for _ in 0..25 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let roll = state % 100;
                    if roll < 70 || next_new == 0 {
                        let n = next_new % IDS;
                        next_new += 1;
                        bulk.push(WriteRequest::Index(IndexRequest::new(
                            format!("doc-{n}"),
                            format!(r#"{{"n":{n},"body":"new {round}"}}"#),
                        )));
                    } else if roll < 90 {
                        let n = state % next_new.min(IDS);
                        bulk.push(WriteRequest::Index(IndexRequest::new(
                            format!("doc-{n}"),
                            format!(r#"{{"n":{n},"body":"update {round}"}}"#),
                        )));
                    } else {
                        let n = state % next_new.min(IDS);
                        bulk.push(WriteRequest::Delete(DeleteRequest::new(format!("doc-{n}"))));
                    }
                }
                for result in leader.bulk(bulk) {
                    result.expect("leader write");
                }
                if round % 20 == 0 {
                    leader.refresh().expect("refresh");
                }
            }
        })
    };
    writer.await.unwrap();

    let started = Instant::now();
    loop {
        // Caught up once every shard's checkpoint matches and the task has counted the write
        // that got it there (the counters move just after the engine's checkpoint).
        let caught_up = (0..shards as usize).all(|shard| {
            let leader_checkpoint = leader.shards()[shard].global_checkpoint();
            follower.shards()[shard].global_checkpoint() == leader_checkpoint
                && tasks[shard].stats().operations_written > leader_checkpoint.0 as u64
        });
        if caught_up {
            break;
        }
        assert!(
            started.elapsed() < CONVERGE_WITHIN,
            "the follower did not catch up: {:?}",
            tasks.iter().map(ShardFollowTask::stats).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats: Vec<_> = tasks.iter().map(ShardFollowTask::stats).collect();
    for task in tasks {
        task.stop().await;
    }
    for (shard, stats) in stats.iter().enumerate() {
        assert!(stats.fatal_exception.is_none(), "{stats:?}");
        assert_eq!(
            stats.leader_global_checkpoint,
            leader.shards()[shard].global_checkpoint().0
        );
        assert!(stats.operations_written > stats.leader_global_checkpoint as u64);
        assert!(stats.successful_read_requests > 1, "many reads of 64 ops");
        assert!(stats.time_since_last_read_millis >= 0);
    }
    for shard in 0..shards as usize {
        let leader_history = history(&leader.shards()[shard]);
        let follower_history = history(&follower.shards()[shard]);
        assert_eq!(
            leader_history.len(),
            follower_history.len(),
            "shard {shard}"
        );
        assert!(
            leader_history == follower_history,
            "shard {shard}: histories differ"
        );
    }
    leader.refresh().unwrap();
    follower.refresh().unwrap();
    assert_eq!(live_documents(&leader, IDS), live_documents(&follower, IDS));
    assert_eq!(leader.doc_count(), follower.doc_count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_converges_to_the_leader_on_one_shard() {
    replicate_under_load(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_converges_to_the_leader_on_three_shards() {
    replicate_under_load(3).await;
}

fn task_config(
    leader: &Index,
    follower: &Arc<Index>,
    shard: u32,
    parameters: FollowParameters,
) -> ShardFollowTaskConfig {
    ShardFollowTaskConfig {
        remote_cluster: "leader".to_string(),
        leader_shard: ShardId::new(leader.name(), shard),
        follower_index: follower.clone(),
        parameters: parameters.resolve().expect("valid test parameters"),
        leader_history_uuid: None,
        lease: None,
        follower_mapping_version: leader.metadata().mapping_version,
        follower_settings_version: leader.metadata().settings_version,
        lag_clock: Default::default(),
    }
}

fn fill(leader: &Index, docs: u64) {
    for chunk in (0..docs).collect::<Vec<_>>().chunks(500) {
        let bulk = chunk
            .iter()
            .map(|n| {
                WriteRequest::Index(IndexRequest::new(
                    format!("doc-{}", n % 700),
                    format!(r#"{{"n":{n},"body":"backlog"}}"#),
                ))
            })
            .collect();
        for result in leader.bulk(bulk) {
            result.expect("leader write");
        }
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < CONVERGE_WITHIN,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_buffer_stays_under_its_caps_with_a_slow_follower() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = leader_and_follower(dir.path(), 1);
    fill(&leader, 4000);
    let client = client_for(&leader);
    // One write of 5 operations at a time against reads of 40: the follower is the bottleneck.
    const BUFFER_COUNT: i64 = 120;
    const READ_OPS: i64 = 40;
    const READS: i64 = 2;
    let parameters = FollowParameters {
        max_read_request_operation_count: Some(READ_OPS),
        max_outstanding_read_requests: Some(READS),
        max_write_request_operation_count: Some(5),
        max_outstanding_write_requests: Some(1),
        max_write_buffer_count: Some(BUFFER_COUNT),
        read_poll_timeout: Some(tandem_engine::units::TimeValue::from_millis(100)),
        ..FollowParameters::default()
    };
    let task = ShardFollowTask::start(
        Arc::new(client),
        task_config(&leader, &follower, 0, parameters),
    );
    let peak = peak_until_caught_up(&task, &leader, &follower, |stats| {
        stats.write_buffer_operation_count
    })
    .await;
    task.stop().await;
    // Reads stop once the buffer is full; those already in flight may still land.
    let bound = (BUFFER_COUNT + READS * READ_OPS) as u64;
    assert!(peak <= bound, "buffer peaked at {peak} > {bound}");
    assert!(
        peak >= BUFFER_COUNT as u64 / 2,
        "the buffer never filled ({peak}): no back-pressure was exercised"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_cap_bounds_the_write_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = leader_and_follower(dir.path(), 1);
    fill(&leader, 3000);
    let one_op = leader.shards()[0]
        .changes(SeqNo(0), SeqNo(0), 1, usize::MAX)
        .unwrap()[0]
        .size_in_bytes() as u64;
    let client = client_for(&leader);
    let cap = 60 * one_op;
    let parameters = FollowParameters {
        max_read_request_operation_count: Some(30),
        max_outstanding_read_requests: Some(2),
        max_write_request_operation_count: Some(5),
        max_outstanding_write_requests: Some(1),
        max_write_buffer_size: Some(tandem_engine::units::ByteSize(cap)),
        read_poll_timeout: Some(tandem_engine::units::TimeValue::from_millis(100)),
        ..FollowParameters::default()
    };
    let task = ShardFollowTask::start(
        Arc::new(client),
        task_config(&leader, &follower, 0, parameters),
    );
    let peak = peak_until_caught_up(&task, &leader, &follower, |stats| {
        stats.write_buffer_size_in_bytes
    })
    .await;
    task.stop().await;
    // Sources vary a little in length: allow 10% per operation.
    let bound = (cap + 2 * 30 * one_op) * 11 / 10;
    assert!(peak <= bound, "buffer peaked at {peak} bytes > {bound}");
    assert!(peak >= cap / 2, "the buffer never filled ({peak} bytes)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_leader_index_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = leader_and_follower(dir.path(), 1);
    // The client knows no index: the leader index is gone.
    let client = InProcessLeaderClient::new(RecoverySource::new(RecoverySourceSettings::default()));
    let task = ShardFollowTask::start(
        Arc::new(client),
        task_config(&leader, &follower, 0, Default::default()),
    );
    wait_until("the task stops", || task.is_finished()).await;
    let fatal = task.fatal_exception().expect("a fatal exception");
    assert_eq!(fatal.error_type, "index_not_found_exception");
    assert!(fatal.reason.contains("logs"), "{}", fatal.reason);
    assert_eq!(task.stats().fatal_exception, Some(fatal));
    task.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_leader_history_is_fatal_with_the_missing_history_message() {
    let dir = tempfile::tempdir().unwrap();
    let leader_dir = dir.path().join("leader");
    // No lease on this leader: an update-heavy history is merged away once refreshed.
    let leader = Arc::new(
        Index::create(
            &leader_dir,
            "logs",
            &json!({"number_of_shards": 1}),
            &mappings(),
        )
        .unwrap(),
    );
    for round in 0..5 {
        for n in 0..10 {
            leader
                .index(IndexRequest::new(
                    format!("doc-{n}"),
                    format!(r#"{{"n":{n},"body":"round {round}"}}"#),
                ))
                .unwrap();
        }
    }
    leader.refresh().unwrap();
    leader.shards()[0].force_merge(1).unwrap();
    let follower = create_index(&dir.path().join("follower"), "logs-copy", 1);
    follower.set_follower(true).unwrap();
    let client = client_for(&leader);
    let task = ShardFollowTask::start(
        Arc::new(client),
        task_config(&leader, &follower, 0, Default::default()),
    );
    wait_until("the task stops", || task.is_finished()).await;
    let fatal = task.fatal_exception().expect("a fatal exception");
    assert_eq!(fatal.error_type, "resource_not_found_exception");
    assert!(
        fatal
            .reason
            .starts_with("Operations are no longer available for replicating."),
        "{}",
        fatal.reason
    );
    assert!(
        fatal.reason.ends_with(
            "maybe increase the retention lease period setting \
             [index.soft_deletes.retention_lease.period]?"
        ),
        "{}",
        fatal.reason
    );
    assert_eq!(
        follower.shards()[0].max_seq_no(),
        SeqNo(-1),
        "nothing applied"
    );
    task.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_leader_mappings_settings_and_aliases_are_applied_before_the_operations() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = leader_and_follower(dir.path(), 1);
    let client = client_for(&leader);
    let task = ShardFollowTask::start(
        Arc::new(client),
        task_config(&leader, &follower, 0, Default::default()),
    );
    assert!(leader
        .put_mapping(&json!({"properties": {"status": {"type": "keyword"}}}))
        .unwrap());
    assert!(leader
        .update_settings(&json!({"index.refresh_interval": "5s"}))
        .unwrap());
    assert!(leader
        .update_aliases(&[AliasAction::Add {
            alias: "current".to_string(),
            body: json!({"is_write_index": true}),
        }])
        .unwrap());
    let leader_version = leader.metadata().mapping_version;
    let follower_refresh = follower.metadata().settings.refresh_interval_millis;
    leader
        .index(IndexRequest::new("doc-1", r#"{"n":1,"status":"ok"}"#))
        .unwrap();
    let target = leader.shards()[0].global_checkpoint();
    wait_until("the follower has the document", || {
        follower.shards()[0].global_checkpoint() >= target
    })
    .await;
    let stats = task.stats();
    task.stop().await;
    assert_eq!(stats.follower_mapping_version, leader_version);
    let leader_metadata = leader.metadata();
    let follower_metadata = follower.metadata();
    assert_eq!(
        stats.follower_settings_version,
        leader_metadata.settings_version
    );
    assert_eq!(
        stats.follower_aliases_version,
        leader_metadata.aliases_version
    );
    assert_eq!(follower_metadata.aliases, leader_metadata.aliases);
    assert_eq!(
        follower_metadata.settings.refresh_interval_millis, follower_refresh,
        "refresh_interval is not replicated (Elasticsearch's non-replicated settings)"
    );
    let refused = follower
        .update_aliases(&[AliasAction::Remove {
            alias: "current".to_string(),
        }])
        .unwrap_err();
    assert_eq!(refused.status(), 403, "{refused}");
    assert_eq!(
        follower.mapper().mappings().field_type("status"),
        Some(tandem_engine::mapping::FieldType::Keyword),
        "the leader's explicit type, not a dynamically inferred one"
    );
    assert!(follower.get("doc-1").unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_leader_history_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = leader_and_follower(dir.path(), 1);
    leader
        .index(IndexRequest::new("doc-1", r#"{"n":1}"#))
        .unwrap();
    let client = client_for(&leader);
    let mut config = task_config(&leader, &follower, 0, Default::default());
    config.leader_history_uuid = Some("a-replaced-leader".to_string());
    let task = ShardFollowTask::start(Arc::new(client), config);
    wait_until("the task stops", || task.is_finished()).await;
    let fatal = task.fatal_exception().expect("a fatal exception");
    assert_eq!(fatal.error_type, "illegal_state_exception");
    assert!(
        fatal
            .reason
            .starts_with("unexpected history uuid, expected [a-replaced-leader]"),
        "{}",
        fatal.reason
    );
    assert_eq!(follower.shards()[0].max_seq_no(), SeqNo(-1));
    task.stop().await;
}

/// A leader client that fails, delays and "disconnects" shard-changes requests at random.
struct FaultyLeader {
    inner: Arc<dyn LeaderClient>,
    rng: parking_lot::Mutex<rand::rngs::StdRng>,
    errors: std::sync::atomic::AtomicU64,
    delays: std::sync::atomic::AtomicU64,
}

impl FaultyLeader {
    fn new(inner: Arc<dyn LeaderClient>, seed: u64) -> FaultyLeader {
        FaultyLeader {
            inner,
            rng: parking_lot::Mutex::new(rand::SeedableRng::seed_from_u64(seed)),
            errors: Default::default(),
            delays: Default::default(),
        }
    }

    fn roll(&self) -> u32 {
        rand::Rng::random_range(&mut *self.rng.lock(), 0..100)
    }
}

impl ForwardingLeaderClient for FaultyLeader {
    fn inner(&self) -> &dyn LeaderClient {
        self.inner.as_ref()
    }

    fn shard_changes(
        &self,
        request: ShardChangesRequest,
    ) -> LeaderFuture<'_, ShardChangesResponse> {
        let roll = self.roll();
        Box::pin(async move {
            use std::sync::atomic::Ordering::Relaxed;
            match roll {
                0..15 => {
                    self.errors.fetch_add(1, Relaxed);
                    Err(LeaderError::Unavailable("connection refused".to_string()))
                }
                15..25 => {
                    // The answer is lost on the way back: the leader did the work.
                    let _ = self.inner.shard_changes(request).await;
                    self.errors.fetch_add(1, Relaxed);
                    Err(LeaderError::Unavailable("connection reset".to_string()))
                }
                25..40 => {
                    self.delays.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(u64::from(roll % 7) * 3)).await;
                    self.inner.shard_changes(request).await
                }
                _ => self.inner.shard_changes(request).await,
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_cost_retries_but_no_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = leader_and_follower(dir.path(), 1);
    let client = client_for(&leader);
    let faulty = Arc::new(FaultyLeader::new(Arc::new(client), 17));
    let parameters = FollowParameters {
        max_read_request_operation_count: Some(50),
        max_outstanding_read_requests: Some(3),
        max_retry_delay: Some(tandem_engine::units::TimeValue::from_millis(20)),
        read_poll_timeout: Some(tandem_engine::units::TimeValue::from_millis(50)),
        ..FollowParameters::default()
    };
    let task = ShardFollowTask::start(
        faulty.clone(),
        task_config(&leader, &follower, 0, parameters),
    );
    for round in 0..10 {
        fill(&leader, 200 + round);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let target = leader.shards()[0].global_checkpoint();
    wait_until("the follower catches up through the faults", || {
        follower.shards()[0].global_checkpoint() >= target
    })
    .await;
    let stats = task.stats();
    task.stop().await;
    assert!(stats.fatal_exception.is_none(), "{stats:?}");
    let errors = faulty.errors.load(std::sync::atomic::Ordering::Relaxed);
    assert!(errors > 5, "faults were injected ({errors})");
    assert!(stats.failed_read_requests >= errors.min(5), "{stats:?}");
    assert_eq!(history(&leader.shards()[0]), history(&follower.shards()[0]));
    follower.refresh().unwrap();
    leader.refresh().unwrap();
    assert_eq!(live_documents(&leader, 700), live_documents(&follower, 700));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_renewed_to_the_follower_checkpoint_and_re_added_when_it_vanished() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = leader_and_follower(dir.path(), 1);
    fill(&leader, 100);
    let client = client_for(&leader);
    leader.shards()[0]
        .add_retention_lease("follower-lease", SeqNo(0), "ccr")
        .unwrap();
    let mut config = task_config(&leader, &follower, 0, Default::default());
    config.lease = Some(tandem_replication::task::FollowerLease {
        id: "follower-lease".to_string(),
        renew_interval: Duration::from_millis(30),
    });
    let task = ShardFollowTask::start(Arc::new(client), config);
    let target = leader.shards()[0].global_checkpoint();
    let retaining = |leader: &Index| {
        leader.shards()[0]
            .retention_leases()
            .leases
            .get("follower-lease")
            .map(|lease| lease.retaining_seq_no)
    };
    wait_until("the lease retains from the follower checkpoint + 1", || {
        follower.shards()[0].global_checkpoint() >= target
            && retaining(&leader) == Some(SeqNo(target.0 + 1))
    })
    .await;
    leader.shards()[0]
        .remove_retention_lease("follower-lease")
        .unwrap();
    wait_until("the vanished lease is added again", || {
        retaining(&leader) == Some(SeqNo(target.0 + 1))
    })
    .await;
    task.stop().await;
}

/// A leader client that refuses every shard-changes request while `refusing` is set, and
/// counts the requests it is sent.
struct SwitchableLeader {
    inner: Arc<dyn LeaderClient>,
    refusing: std::sync::atomic::AtomicBool,
    requests: std::sync::atomic::AtomicU64,
}

impl SwitchableLeader {
    fn new(inner: Arc<dyn LeaderClient>, refusing: bool) -> SwitchableLeader {
        SwitchableLeader {
            inner,
            refusing: refusing.into(),
            requests: Default::default(),
        }
    }

    fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl ForwardingLeaderClient for SwitchableLeader {
    fn inner(&self) -> &dyn LeaderClient {
        self.inner.as_ref()
    }

    fn shard_changes(
        &self,
        request: ShardChangesRequest,
    ) -> LeaderFuture<'_, ShardChangesResponse> {
        use std::sync::atomic::Ordering::SeqCst;
        self.requests.fetch_add(1, SeqCst);
        let refusing = self.refusing.load(SeqCst);
        Box::pin(async move {
            if refusing {
                return Err(LeaderError::Unavailable("connection refused".to_string()));
            }
            self.inner.shard_changes(request).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reads_are_reported_by_their_first_seq_no_with_their_retries() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = leader_and_follower(dir.path(), 1);
    fill(&leader, 100);
    let leader_client = Arc::new(SwitchableLeader::new(Arc::new(client_for(&leader)), true));
    let parameters = FollowParameters {
        max_outstanding_read_requests: Some(1),
        max_retry_delay: Some(tandem_engine::units::TimeValue::from_millis(20)),
        read_poll_timeout: Some(tandem_engine::units::TimeValue::from_millis(50)),
        ..FollowParameters::default()
    };
    let task = ShardFollowTask::start(
        leader_client.clone(),
        task_config(&leader, &follower, 0, parameters),
    );
    // No read has succeeded yet: Elasticsearch's -1.
    wait_until("the read from 0 has been retried three times", || {
        task.stats()
            .read_exceptions
            .first()
            .is_some_and(|exception| exception.retries >= 3)
    })
    .await;
    let stats = task.stats();
    assert_eq!(stats.time_since_last_read_millis, -1, "{stats:?}");
    assert_eq!(stats.successful_read_requests, 0);
    assert!(stats.failed_read_requests >= 3, "{stats:?}");
    assert_eq!(stats.read_exceptions.len(), 1, "{stats:?}");
    let exception = &stats.read_exceptions[0];
    assert_eq!(exception.from_seq_no, 0);
    assert!(
        exception.exception.reason.contains("connection refused"),
        "{exception:?}"
    );
    assert!(
        stats.fatal_exception.is_none(),
        "a refused connection is retried"
    );

    // The leader answers again: the read succeeds, and its exception is cleared.
    leader_client
        .refusing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let target = leader.shards()[0].global_checkpoint();
    wait_until("the follower catches up", || {
        follower.shards()[0].global_checkpoint() >= target
    })
    .await;
    let stats = task.stats();
    task.stop().await;
    assert!(stats.read_exceptions.is_empty(), "{stats:?}");
    assert!(stats.time_since_last_read_millis >= 0, "{stats:?}");
    assert_eq!(history(&leader.shards()[0]), history(&follower.shards()[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_cut_short_by_the_byte_limit_are_re_requested_from_where_they_ended() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = leader_and_follower(dir.path(), 1);
    fill(&leader, 600);
    let one_op = leader.shards()[0]
        .changes(SeqNo(0), SeqNo(0), 1, usize::MAX)
        .unwrap()[0]
        .size_in_bytes() as u64;
    // Reads of up to 64 operations that the leader cuts at about 4 operations' worth of bytes.
    let parameters = FollowParameters {
        max_read_request_operation_count: Some(64),
        max_read_request_size: Some(tandem_engine::units::ByteSize(4 * one_op)),
        max_outstanding_read_requests: Some(2),
        read_poll_timeout: Some(tandem_engine::units::TimeValue::from_millis(50)),
        ..FollowParameters::default()
    };
    let task = ShardFollowTask::start(
        Arc::new(client_for(&leader)),
        task_config(&leader, &follower, 0, parameters),
    );
    let target = leader.shards()[0].global_checkpoint();
    wait_until("the follower catches up", || {
        follower.shards()[0].global_checkpoint() >= target
    })
    .await;
    let stats = task.stats();
    task.stop().await;
    assert!(stats.fatal_exception.is_none(), "{stats:?}");
    // 600 operations in reads of about 4: many more reads than 600 / 64 whole ones.
    assert!(
        stats.successful_read_requests >= 600 / 8,
        "the reads were not cut short: {stats:?}"
    );
    assert_eq!(history(&leader.shards()[0]), history(&follower.shards()[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_or_dropped_task_sends_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = leader_and_follower(dir.path(), 1);
    fill(&leader, 50);
    let leader_client = Arc::new(SwitchableLeader::new(Arc::new(client_for(&leader)), false));
    // Short polls and retries: a task left running would send several requests per 100 ms.
    let parameters = FollowParameters {
        max_retry_delay: Some(tandem_engine::units::TimeValue::from_millis(10)),
        read_poll_timeout: Some(tandem_engine::units::TimeValue::from_millis(20)),
        ..FollowParameters::default()
    };
    let quiet_after = |what: &'static str| {
        let leader_client = leader_client.clone();
        async move {
            // Whatever was in flight ends; then nothing new is sent.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let before = leader_client.requests();
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(leader_client.requests(), before, "requests after {what}");
        }
    };

    let task = ShardFollowTask::start(
        leader_client.clone(),
        task_config(&leader, &follower, 0, parameters.clone()),
    );
    let target = leader.shards()[0].global_checkpoint();
    wait_until("the follower catches up", || {
        follower.shards()[0].global_checkpoint() >= target
    })
    .await;
    // Caught up, the task long-polls: requests keep coming while it runs.
    let before = leader_client.requests();
    wait_until("the task polls again", || {
        leader_client.requests() > before + 2
    })
    .await;
    task.stop().await;
    quiet_after("stop").await;

    // Dropped without stop (a pause or unfollow that lost its handle), while failing reads
    // are being retried.
    leader_client
        .refusing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let task = ShardFollowTask::start(
        leader_client.clone(),
        task_config(&leader, &follower, 0, parameters),
    );
    let before = leader_client.requests();
    wait_until("the task retries", || leader_client.requests() > before + 2).await;
    drop(task);
    quiet_after("drop").await;
}
