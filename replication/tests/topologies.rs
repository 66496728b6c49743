//! Replication topologies through the lifecycle API, each cluster a data directory of its own
//! in this process: failover and failback (seed tutorial 000), bi-directional (each cluster
//! leads one index and follows the other) and chained (A -> B -> C), plus forget-follower.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::open_followers;
use serde_json::json;
use tandem_engine::index::Index;
use tandem_engine::indices::Indices;
use tandem_engine::shard::{IndexRequest, WriteRequest};
use tandem_engine::units::TimeValue;
use tandem_recovery::in_process::InProcessLeaderClient;
use tandem_recovery::source::{RecoverySource, RecoverySourceSettings};
use tandem_replication::follower_indices::{FollowRequest, FollowerIndices};
use tandem_replication::leader::{forget_follower, ForgetFollowerRequest};
use tandem_replication::params::FollowParameters;
use tandem_replication::remote::RemoteClusters;

const WAIT: Duration = Duration::from_secs(60);
const IDS: u64 = 60;

/// One cluster: its indices, the remote clusters it knows, and its follower indices.
struct Cluster {
    name: String,
    indices: Arc<Indices>,
    remotes: Arc<RemoteClusters>,
    followers: Arc<FollowerIndices>,
}

impl Cluster {
    async fn start(root: &Path, name: &str) -> Cluster {
        let dir = root.join(name);
        let remotes = Arc::new(RemoteClusters::new());
        let (indices, followers) = open_followers(name, &dir, remotes.clone()).await;
        Cluster {
            name: name.to_string(),
            indices,
            remotes,
            followers,
        }
    }

    /// Lets this cluster reach `leader`'s current indices under the alias `leader.name`.
    fn connect(&self, leader: &Cluster) {
        let client =
            InProcessLeaderClient::new(RecoverySource::new(RecoverySourceSettings::default()));
        for name in leader.indices.names() {
            if let Ok(index) = leader.indices.get(&name) {
                client.register_index(index);
            }
        }
        self.remotes.set(leader.name.clone(), Arc::new(client));
    }

    async fn follow(&self, leader: &Cluster, leader_index: &str, follower_index: &str) {
        self.connect(leader);
        let response = self
            .followers
            .follow(FollowRequest {
                remote_cluster: leader.name.clone(),
                leader_index: leader_index.to_string(),
                follower_index: follower_index.to_string(),
                parameters: FollowParameters {
                    read_poll_timeout: Some(TimeValue::from_millis(100)),
                    ..FollowParameters::default()
                },
                wait_for_active_shards: true,
                settings: serde_json::Value::Null,
            })
            .await
            .unwrap();
        assert!(response.index_following_started);
    }

    fn index(&self, name: &str) -> Arc<Index> {
        self.indices.get(name).unwrap()
    }
}

fn create(cluster: &Cluster, name: &str) -> Arc<Index> {
    cluster
        .indices
        .create(
            name,
            &json!({"number_of_shards": 2}),
            &json!({"properties": {"n": {"type": "long"}, "body": {"type": "text"}}}),
        )
        .unwrap()
}

fn write(index: &Index, from: u64, to: u64, body: &str) {
    let bulk = (from..to)
        .map(|n| {
            WriteRequest::Index(IndexRequest::new(
                format!("doc-{}", n % IDS),
                format!(r#"{{"n":{n},"body":"{body}"}}"#),
            ))
        })
        .collect();
    for result in index.bulk(bulk) {
        result.expect("write");
    }
}

async fn wait_same(leader: &Index, follower: &Index) {
    let started = Instant::now();
    while !leader
        .shards()
        .iter()
        .zip(follower.shards())
        .all(|(l, f)| f.global_checkpoint() == l.global_checkpoint())
    {
        assert!(started.elapsed() < WAIT, "the follower did not catch up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in 0..IDS {
        let id = format!("doc-{n}");
        let l = leader.get(&id).unwrap().map(|d| (d.seq_no, d.source));
        let f = follower.get(&id).unwrap().map(|d| (d.seq_no, d.source));
        assert_eq!(l, f, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_follower_and_failback() {
    let root = tempfile::tempdir().unwrap();
    let a = Cluster::start(root.path(), "cluster-a").await;
    let b = Cluster::start(root.path(), "cluster-b").await;
    let logs = create(&a, "logs");
    write(&logs, 0, 200, "written on a");
    b.follow(&a, "logs", "logs").await;
    write(&logs, 200, 260, "written on a while followed");
    wait_same(&logs, &b.index("logs")).await;

    // Failover: b's copy becomes a normal, writable index.
    b.followers.pause("logs").await.unwrap();
    b.indices.close_index("logs").unwrap();
    assert!(b.followers.unfollow("logs").await.unwrap().is_empty());
    let promoted = b.indices.open_index("logs").unwrap();
    write(&promoted, 260, 320, "written on b after failover");

    // Failback: a drops its stale copy and follows b's index under the same name.
    drop(logs);
    a.indices.delete("logs").unwrap();
    a.follow(&b, "logs", "logs").await;
    write(&promoted, 320, 340, "written on b while a follows");
    wait_same(&promoted, &a.index("logs")).await;
    let body = a.index("logs").get("doc-5").unwrap().unwrap().source;
    assert!(
        String::from_utf8_lossy(&body).contains("on b"),
        "a has b's writes"
    );
    a.followers.shutdown().await;
    b.followers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidirectional_each_cluster_leads_one_index() {
    let root = tempfile::tempdir().unwrap();
    let a = Cluster::start(root.path(), "cluster-a").await;
    let b = Cluster::start(root.path(), "cluster-b").await;
    let logs_a = create(&a, "logs-a");
    let logs_b = create(&b, "logs-b");
    write(&logs_a, 0, 100, "a");
    write(&logs_b, 0, 100, "b");
    b.follow(&a, "logs-a", "logs-a").await;
    a.follow(&b, "logs-b", "logs-b").await;
    write(&logs_a, 100, 150, "a again");
    write(&logs_b, 100, 150, "b again");
    wait_same(&logs_a, &b.index("logs-a")).await;
    wait_same(&logs_b, &a.index("logs-b")).await;
    assert!(a.index("logs-b").is_follower() && !a.index("logs-a").is_follower());
    a.followers.shutdown().await;
    b.followers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_a_to_b_to_c() {
    let root = tempfile::tempdir().unwrap();
    let a = Cluster::start(root.path(), "cluster-a").await;
    let b = Cluster::start(root.path(), "cluster-b").await;
    let c = Cluster::start(root.path(), "cluster-c").await;
    let logs = create(&a, "logs");
    write(&logs, 0, 150, "a");
    b.follow(&a, "logs", "logs-b").await;
    wait_same(&logs, &b.index("logs-b")).await;
    // b's follower index is c's leader.
    c.follow(&b, "logs-b", "logs-c").await;
    write(&logs, 150, 260, "a again");
    wait_same(&logs, &b.index("logs-b")).await;
    wait_same(&logs, &c.index("logs-c")).await;
    a.followers.shutdown().await;
    b.followers.shutdown().await;
    c.followers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_follower_removes_the_followers_leases() {
    let root = tempfile::tempdir().unwrap();
    let a = Cluster::start(root.path(), "cluster-a").await;
    let b = Cluster::start(root.path(), "cluster-b").await;
    let logs = create(&a, "logs");
    write(&logs, 0, 50, "a");
    b.follow(&a, "logs", "logs-copy").await;
    let lease_id = b.followers.info(Some("logs-copy")).await.unwrap()[0]
        .metadata
        .lease_id
        .clone();
    assert!(logs
        .shards()
        .iter()
        .all(|shard| shard.retention_leases().leases.contains_key(&lease_id)));
    b.followers.pause("logs-copy").await.unwrap();
    let request = ForgetFollowerRequest {
        follower_cluster: "cluster-b".to_string(),
        follower_index: "logs-copy".to_string(),
        follower_index_uuid: b.indices.metadata("logs-copy").unwrap().uuid,
        leader_remote_cluster: "cluster-a".to_string(),
    };
    let response = forget_follower(&logs, &request);
    assert_eq!(
        (response.total, response.successful, response.failed),
        (2, 2, 0)
    );
    assert!(logs
        .shards()
        .iter()
        .all(|shard| !shard.retention_leases().leases.contains_key(&lease_id)));
    // Idempotent.
    assert_eq!(forget_follower(&logs, &request).successful, 2);
    b.followers.shutdown().await;
}
