//! Every number a leader sends is range-checked before the follower uses it: a leader that
//! claims 4294967295 shards fails the follow with a clear error and no allocation for them,
//! and operations with a primary term or a version no leader can have stop the follow with a
//! fatal exception in its stats, before anything of them is written.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::open_followers;
use serde_json::json;
use tandem_engine::index::IndexMetadata;
use tandem_engine::indices::Indices;
use tandem_engine::shard::{IndexRequest, WriteRequest};
use tandem_engine::Operation;
use tandem_recovery::in_process::InProcessLeaderClient;
use tandem_recovery::leader_api::{
    ForwardingLeaderClient, IndexMetadataRequest, LeaderClient, LeaderFuture, ShardChangesRequest,
    ShardChangesResponse,
};
use tandem_recovery::source::{RecoverySource, RecoverySourceSettings};
use tandem_replication::follower_indices::{FollowRequest, FollowerIndices};
use tandem_replication::params::FollowParameters;
use tandem_replication::remote::RemoteClusters;
use tandem_testkit::allocations::CountingAllocator;

/// Every allocation of this binary is counted, so memory is measured.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Lies about the shard count, or about the terms and versions of operations, when told to.
struct LyingLeader {
    inner: Arc<dyn LeaderClient>,
    shard_count: Option<u32>,
    huge_terms: AtomicBool,
}

impl ForwardingLeaderClient for LyingLeader {
    fn inner(&self) -> &dyn LeaderClient {
        self.inner.as_ref()
    }

    fn index_metadata(&self, request: IndexMetadataRequest) -> LeaderFuture<'_, IndexMetadata> {
        Box::pin(async move {
            let mut metadata = self.inner.index_metadata(request).await?;
            if let Some(shards) = self.shard_count {
                metadata.settings.number_of_shards = shards;
            }
            Ok(metadata)
        })
    }

    fn shard_changes(
        &self,
        request: ShardChangesRequest,
    ) -> LeaderFuture<'_, ShardChangesResponse> {
        Box::pin(async move {
            let mut response = self.inner.shard_changes(request).await?;
            if self.huge_terms.load(Ordering::SeqCst) {
                response.changes.operations = response
                    .changes
                    .operations
                    .iter()
                    .map(|operation| {
                        Arc::new(Operation {
                            primary_term: tandem_engine::PrimaryTerm(u64::MAX),
                            version: u64::MAX,
                            ..(**operation).clone()
                        })
                    })
                    .collect();
            }
            Ok(response)
        })
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    leader: Arc<Indices>,
    indices: Arc<Indices>,
    followers: Arc<FollowerIndices>,
    client: Arc<LyingLeader>,
}

async fn cluster(shard_count: Option<u32>) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let leader = Arc::new(Indices::open(&dir.path().join("leader")).unwrap());
    let logs = leader
        .create(
            "logs",
            &json!({"number_of_shards": 1}),
            &json!({"properties": {"n": {"type": "long"}}}),
        )
        .unwrap();
    let bulk = (0..20)
        .map(|n| {
            WriteRequest::Index(IndexRequest::new(
                format!("d{n}"),
                format!(r#"{{"n":{n}}}"#),
            ))
        })
        .collect();
    for result in logs.bulk(bulk) {
        result.unwrap();
    }
    let client = Arc::new(LyingLeader {
        inner: Arc::new(InProcessLeaderClient::over_indices(
            leader.clone(),
            RecoverySource::new(RecoverySourceSettings::default()),
        )),
        shard_count,
        huge_terms: AtomicBool::new(false),
    });
    let remotes = Arc::new(RemoteClusters::new());
    remotes.set("leader", client.clone());
    let (indices, followers) =
        open_followers("follower-cluster", &dir.path().join("follower"), remotes).await;
    Cluster {
        _dir: dir,
        leader,
        indices,
        followers,
        client,
    }
}

fn follow_request() -> FollowRequest {
    FollowRequest {
        remote_cluster: "leader".to_string(),
        leader_index: "logs".to_string(),
        follower_index: "logs-copy".to_string(),
        parameters: FollowParameters {
            read_poll_timeout: Some(tandem_engine::units::TimeValue::from_millis(100)),
            ..FollowParameters::default()
        },
        wait_for_active_shards: true,
        settings: serde_json::Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_claiming_4294967295_shards_fails_the_follow_with_memory_flat() {
    let cluster = cluster(Some(u32::MAX)).await;
    let before = CountingAllocator::reset_peak();
    let error = cluster
        .followers
        .follow(follow_request())
        .await
        .unwrap_err();
    let peak = CountingAllocator::peak() - before;
    let message = error.to_string();
    assert!(
        message.contains("index.number_of_shards [4294967295]") && message.contains("[1, 1024]"),
        "{message}"
    );
    assert!(
        peak < 16 * 1024 * 1024,
        "{peak} bytes allocated by the follow"
    );
    assert!(cluster.followers.recoveries(None).is_empty());
    assert!(cluster.indices.metadata("logs-copy").is_err());
    let leader = cluster.leader.get("logs").unwrap();
    assert!(
        leader.shards()[0].retention_leases().leases.is_empty(),
        "no lease taken for a follow that cannot start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_with_impossible_terms_and_versions_are_a_fatal_follow_error() {
    let cluster = cluster(None).await;
    cluster.followers.follow(follow_request()).await.unwrap();
    let copy = cluster.indices.get("logs-copy").unwrap();
    let leader = cluster.leader.get("logs").unwrap();
    // The follow answers once the recovery is done; the operations the leader holds past the
    // recovered commit arrive through the pull loop after it: caught up first.
    let caught_up = leader.shards()[0].stats().max_seq_no;
    let deadline = Instant::now() + Duration::from_secs(30);
    while copy.shards()[0].global_checkpoint() < caught_up {
        assert!(Instant::now() < deadline, "the follower never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let checkpoint = copy.shards()[0].global_checkpoint();
    assert_eq!(checkpoint, caught_up);
    cluster.client.huge_terms.store(true, Ordering::SeqCst);
    leader
        .index(IndexRequest::new("new", r#"{"n":99}"#))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let fatal = loop {
        let stats = cluster.followers.stats(Some("logs-copy")).await.unwrap();
        if let Some(fatal) = stats[0].shards[0].fatal_exception.clone() {
            break fatal;
        }
        assert!(Instant::now() < deadline, "no fatal exception: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(fatal.error_type, "illegal_state_exception");
    assert!(fatal.reason.contains("primary term"), "{fatal:?}");
    assert_eq!(
        copy.shards()[0].global_checkpoint(),
        checkpoint,
        "nothing of the bad operation was written"
    );
    assert!(copy.get("new").unwrap().is_none());
}
