//! Leases of a follow that ended do not leak: a follower index deleted while its leader cannot
//! be reached leaves its lease removals pending (persisted, visible, retried with backoff),
//! and they complete once the leader is back, across a restart of the follower.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::open_followers;
use serde_json::json;
use tandem_engine::indices::Indices;
use tandem_engine::shard::{IndexRequest, WriteRequest};
use tandem_recovery::in_process::InProcessLeaderClient;
use tandem_recovery::leader_api::{
    ForwardingLeaderClient, LeaderClient, LeaderFuture, RemoveRetentionLeaseRequest,
};
use tandem_recovery::source::{RecoverySource, RecoverySourceSettings};
use tandem_recovery::LeaderError;
use tandem_replication::follower_indices::FollowRequest;
use tandem_replication::params::FollowParameters;
use tandem_replication::remote::RemoteClusters;

const WAIT: Duration = Duration::from_secs(60);

/// A leader that refuses lease removals while it is "stopped" (as a leader whose node is down
/// answers: connection refused) and serves everything else.
struct StoppableLeader {
    inner: Arc<dyn LeaderClient>,
    stopped: AtomicBool,
}

impl ForwardingLeaderClient for StoppableLeader {
    fn inner(&self) -> &dyn LeaderClient {
        self.inner.as_ref()
    }

    fn remove_retention_lease(&self, request: RemoveRetentionLeaseRequest) -> LeaderFuture<'_, ()> {
        Box::pin(async move {
            if self.stopped.load(SeqCst) {
                return Err(LeaderError::Unavailable("connection refused".to_string()));
            }
            self.inner.remove_retention_lease(request).await
        })
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < WAIT, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_of_a_follower_deleted_while_the_leader_is_down_are_removed_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let leader_indices = Arc::new(Indices::open(&dir.path().join("leader")).unwrap());
    let leader = leader_indices
        .create(
            "logs",
            &json!({"number_of_shards": 2}),
            &json!({"properties": {"n": {"type": "long"}}}),
        )
        .unwrap();
    let bulk = (0..50)
        .map(|n| {
            WriteRequest::Index(IndexRequest::new(
                format!("d{n}"),
                format!(r#"{{"n":{n}}}"#),
            ))
        })
        .collect();
    for result in leader.bulk(bulk) {
        result.unwrap();
    }
    let client = Arc::new(StoppableLeader {
        inner: Arc::new(InProcessLeaderClient::over_indices(
            leader_indices.clone(),
            RecoverySource::new(RecoverySourceSettings::default()),
        )),
        stopped: AtomicBool::new(false),
    });
    let remotes = Arc::new(RemoteClusters::new());
    remotes.set("leader", client.clone());
    let follower_dir = dir.path().join("follower");
    let (indices, followers) =
        open_followers("follower-cluster", &follower_dir, remotes.clone()).await;
    followers
        .follow(FollowRequest {
            remote_cluster: "leader".to_string(),
            leader_index: "logs".to_string(),
            follower_index: "logs-copy".to_string(),
            parameters: FollowParameters::default(),
            wait_for_active_shards: true,
            settings: serde_json::Value::Null,
        })
        .await
        .unwrap();
    let lease_id = followers.info(Some("logs-copy")).await.unwrap()[0]
        .metadata
        .lease_id
        .clone();
    let holds_lease = || {
        leader
            .shards()
            .iter()
            .filter(|shard| shard.retention_leases().leases.contains_key(&lease_id))
            .count()
    };
    assert_eq!(holds_lease(), 2);

    // The leader is down when the follower index is deleted.
    client.stopped.store(true, SeqCst);
    followers.index_closing("logs-copy").await;
    indices.delete("logs-copy").unwrap();
    followers.index_deleted("logs-copy").await.unwrap();
    let pending = followers.pending_lease_removals();
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert!(pending.iter().all(|removal| removal.lease_id == lease_id));
    assert_eq!(holds_lease(), 2, "nothing removed while the leader is down");

    // The pending removals survive a restart of the follower.
    followers.shutdown().await;
    drop(followers);
    drop(indices);
    let (indices, followers) =
        open_followers("follower-cluster", &follower_dir, remotes.clone()).await;
    assert_eq!(followers.pending_lease_removals().len(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let retried = followers.pending_lease_removals();
    assert_eq!(retried.len(), 2, "still pending while the leader is down");
    assert_eq!(holds_lease(), 2);

    // Back: the leases go, and nothing is pending any more (also after another restart).
    client.stopped.store(false, SeqCst);
    wait_until("the leases are removed from the leader", || {
        holds_lease() == 0
    })
    .await;
    wait_until("no removal is pending", || {
        followers.pending_lease_removals().is_empty()
    })
    .await;
    followers.shutdown().await;
    drop(followers);
    drop(indices);
    let (_indices, followers) = open_followers("follower-cluster", &follower_dir, remotes).await;
    assert!(followers.pending_lease_removals().is_empty());
}
