//! No tight loops: a leader whose answers cannot be used (a long poll answered at once with
//! nothing, a global checkpoint behind the follower's, a batch with a gap) is asked again only
//! after the follow's backoff (`max_retry_delay`), and each such answer is reported as a failed
//! read with its reason in `read_exceptions`. A long poll that waited its full timeout and
//! found nothing is sent again at once, as Elasticsearch does.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tandem_engine::index::Index;
use tandem_engine::shard::IndexRequest;
use tandem_engine::SeqNo;
use tandem_recovery::in_process::InProcessLeaderClient;
use tandem_recovery::leader_api::{
    CheckedLeaderClient, ForwardingLeaderClient, LeaderClient, LeaderFuture, ShardChangesRequest,
    ShardChangesResponse, ShardId,
};
use tandem_recovery::source::{RecoverySource, RecoverySourceSettings};
use tandem_replication::params::FollowParameters;
use tandem_replication::stats::ShardFollowStats;
use tandem_replication::task::{ShardFollowTask, ShardFollowTaskConfig};

/// How long requests are counted.
const WINDOW: Duration = Duration::from_secs(2);
/// A follow whose reads were re-sent at once would send hundreds in the window; with a
/// 500 ms backoff cap it sends fewer than this.
const MAX_REQUESTS_WITH_BACKOFF: u64 = 20;

/// How the leader answers.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// As the leader does.
    Honest = 0,
    /// A long poll answered at once, with nothing.
    EarlyEmpty = 1,
    /// The leader's global checkpoint one below the follower's.
    Behind = 2,
    /// The first operation of each batch missing.
    Gapped = 3,
}

struct MisbehavingLeader {
    inner: Arc<dyn LeaderClient>,
    mode: AtomicU8,
    /// The follower's checkpoint, for [`Mode::Behind`].
    follower_checkpoint: AtomicU64,
    requests: AtomicU64,
}

impl MisbehavingLeader {
    fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, SeqCst);
        self.requests.store(0, SeqCst);
    }
}

impl ForwardingLeaderClient for MisbehavingLeader {
    fn inner(&self) -> &dyn LeaderClient {
        self.inner.as_ref()
    }

    fn shard_changes(
        &self,
        mut request: ShardChangesRequest,
    ) -> LeaderFuture<'_, ShardChangesResponse> {
        self.requests.fetch_add(1, SeqCst);
        let mode = self.mode.load(SeqCst);
        Box::pin(async move {
            if mode == Mode::EarlyEmpty as u8 {
                request.changes.poll_timeout = Duration::ZERO;
            }
            let mut response = self.inner.shard_changes(request).await?;
            if mode == Mode::Behind as u8 {
                let behind = self.follower_checkpoint.load(SeqCst) as i64 - 1;
                response.changes.global_checkpoint = SeqNo(behind);
                response.changes.operations.clear();
            }
            if mode == Mode::Gapped as u8 && response.changes.operations.len() > 1 {
                response.changes.operations.remove(0);
            }
            Ok(response)
        })
    }
}

fn create_index(dir: &std::path::Path, name: &str) -> Arc<Index> {
    let mappings = json!({"properties": {"n": {"type": "long"}}});
    Arc::new(Index::create(dir, name, &json!({"number_of_shards": 1}), &mappings).unwrap())
}

struct Fixture {
    _dir: tempfile::TempDir,
    leader: Arc<Index>,
    follower: Arc<Index>,
    client: Arc<MisbehavingLeader>,
}

fn fixture(mode: Mode) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let leader = create_index(&dir.path().join("leader"), "logs");
    let follower = create_index(&dir.path().join("follower"), "logs-copy");
    follower.set_follower(true).unwrap();
    for n in 0..10 {
        leader
            .index(IndexRequest::new(
                format!("doc-{n}"),
                format!(r#"{{"n":{n}}}"#),
            ))
            .unwrap();
    }
    let inner = InProcessLeaderClient::new(RecoverySource::new(RecoverySourceSettings::default()));
    inner.register_index(leader.clone());
    let client = Arc::new(MisbehavingLeader {
        inner: Arc::new(inner),
        mode: AtomicU8::new(mode as u8),
        follower_checkpoint: AtomicU64::new(0),
        requests: AtomicU64::new(0),
    });
    Fixture {
        _dir: dir,
        leader,
        follower,
        client,
    }
}

fn start(fixture: &Fixture) -> ShardFollowTask {
    let parameters = FollowParameters {
        max_retry_delay: Some(tandem_engine::units::TimeValue::from_millis(500)),
        read_poll_timeout: Some(tandem_engine::units::TimeValue::from_millis(100)),
        ..FollowParameters::default()
    };
    let config = ShardFollowTaskConfig {
        remote_cluster: "leader".to_string(),
        leader_shard: ShardId::new(fixture.leader.name(), 0),
        follower_index: fixture.follower.clone(),
        parameters: parameters.resolve().unwrap(),
        leader_history_uuid: None,
        lease: None,
        follower_mapping_version: fixture.leader.metadata().mapping_version,
        follower_settings_version: fixture.leader.metadata().settings_version,
        lag_clock: Default::default(),
    };
    // Checked as every remote cluster's client is.
    ShardFollowTask::start(CheckedLeaderClient::wrap(fixture.client.clone()), config)
}

async fn wait_caught_up(fixture: &Fixture) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let target = fixture.leader.shards()[0].global_checkpoint();
    while fixture.follower.shards()[0].global_checkpoint() < target {
        assert!(Instant::now() < deadline, "the follower did not catch up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Counts the requests the task sends in [`WINDOW`] from now; returns them and the stats at
/// the end.
async fn requests_in_window(fixture: &Fixture, task: &ShardFollowTask) -> (u64, ShardFollowStats) {
    let before = fixture.client.requests.load(SeqCst);
    tokio::time::sleep(WINDOW).await;
    let stats = task.stats();
    (fixture.client.requests.load(SeqCst) - before, stats)
}

fn assert_backed_off_and_reported(requests: u64, stats: &ShardFollowStats, reason: &str) {
    assert!(
        requests < MAX_REQUESTS_WITH_BACKOFF,
        "{requests} requests in {WINDOW:?}: {stats:?}"
    );
    assert!(requests >= 2, "the read is retried: {requests}");
    assert!(stats.failed_read_requests >= 2, "{stats:?}");
    assert!(stats.fatal_exception.is_none(), "{stats:?}");
    let exception = stats
        .read_exceptions
        .first()
        .unwrap_or_else(|| panic!("a read exception is reported: {stats:?}"));
    assert!(exception.retries >= 2, "{stats:?}");
    assert!(
        exception.exception.reason.contains(reason),
        "{reason:?} in {:?}",
        exception.exception
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_answered_at_once_with_nothing_backs_off() {
    let fixture = fixture(Mode::Honest);
    let task = start(&fixture);
    wait_caught_up(&fixture).await;
    fixture.client.set_mode(Mode::EarlyEmpty);
    let (requests, stats) = requests_in_window(&fixture, &task).await;
    task.stop().await;
    assert_backed_off_and_reported(requests, &stats, "before its poll timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_checkpoint_behind_the_follower_backs_off() {
    let fixture = fixture(Mode::Honest);
    let task = start(&fixture);
    wait_caught_up(&fixture).await;
    let checkpoint = fixture.follower.shards()[0].global_checkpoint();
    fixture
        .client
        .follower_checkpoint
        .store(checkpoint.0 as u64, SeqCst);
    fixture.client.set_mode(Mode::Behind);
    let (requests, stats) = requests_in_window(&fixture, &task).await;
    task.stop().await;
    assert_backed_off_and_reported(requests, &stats, "is behind the follower's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_gap_backs_off_and_nothing_of_it_is_applied() {
    let fixture = fixture(Mode::Gapped);
    let task = start(&fixture);
    let (requests, stats) = requests_in_window(&fixture, &task).await;
    assert_backed_off_and_reported(requests, &stats, "contiguous");
    assert_eq!(
        fixture.follower.shards()[0].max_seq_no(),
        SeqNo::NO_OPS_PERFORMED,
        "nothing of a gapped batch is written"
    );
    // Once the leader answers whole batches again, the follower catches up.
    fixture.client.set_mode(Mode::Honest);
    wait_caught_up(&fixture).await;
    task.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_that_waited_its_timeout_is_sent_again_at_once() {
    let fixture = fixture(Mode::Honest);
    let task = start(&fixture);
    wait_caught_up(&fixture).await;
    let failed_before = task.stats().failed_read_requests;
    let (requests, stats) = requests_in_window(&fixture, &task).await;
    task.stop().await;
    // 100 ms polls, one after the other: about 20 in 2 s.
    assert!(requests >= 12, "{requests} long polls in {WINDOW:?}");
    assert!(requests <= 21, "{requests} long polls in {WINDOW:?}");
    assert_eq!(stats.failed_read_requests, failed_before, "{stats:?}");
    assert!(stats.read_exceptions.is_empty(), "{stats:?}");
}
