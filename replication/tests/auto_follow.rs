//! Auto-follow through the coordinator, against a leader cluster in this process: indices that
//! existed at pattern creation are never followed, exclusions win, paused patterns catch up on
//! resume, two matching patterns are an error, and the stats count all of it.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::open_followers;
use serde_json::{json, Map};
use tandem_engine::indices::Indices;
use tandem_engine::shard::IndexRequest;
use tandem_recovery::in_process::InProcessLeaderClient;
use tandem_recovery::source::{RecoverySource, RecoverySourceSettings};
use tandem_replication::auto_follow::{AutoFollowCoordinator, AutoFollowPattern};
use tandem_replication::follower_indices::FollowerIndices;
use tandem_replication::remote::RemoteClusters;

fn connect(remotes: &RemoteClusters, leader: &Indices) {
    let client = InProcessLeaderClient::new(RecoverySource::new(RecoverySourceSettings::default()));
    for name in leader.names() {
        client.register_index(leader.get(&name).unwrap());
    }
    remotes.set("leader", Arc::new(client));
}

fn create(leader: &Indices, name: &str) {
    let index = leader
        .create(
            name,
            &json!({}),
            &json!({"properties": {"n": {"type": "long"}}}),
        )
        .unwrap();
    index.index(IndexRequest::new("1", r#"{"n":1}"#)).unwrap();
}

async fn open(
    dir: &Path,
    remotes: Arc<RemoteClusters>,
) -> (Arc<Indices>, Arc<FollowerIndices>, AutoFollowCoordinator) {
    let (indices, followers) = open_followers("follower", dir, remotes.clone()).await;
    let coordinator =
        AutoFollowCoordinator::open(followers.clone(), remotes, &dir.join("state")).unwrap();
    (indices, followers, coordinator)
}

fn pattern(patterns: &[&str], exclusions: &[&str]) -> AutoFollowPattern {
    let mut parameters = Map::new();
    parameters.insert("read_poll_timeout".to_string(), json!("100ms"));
    parameters.insert("max_read_request_operation_count".to_string(), json!(1000));
    AutoFollowPattern {
        remote_cluster: "leader".to_string(),
        leader_index_patterns: patterns.iter().map(|p| p.to_string()).collect(),
        leader_index_exclusion_patterns: exclusions.iter().map(|p| p.to_string()).collect(),
        follow_index_pattern: Some("{{leader_index}}-copy".to_string()),
        parameters,
        settings: json!({"index.refresh_interval": "7s", "number_of_replicas": 0})
            .as_object()
            .cloned()
            .unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_follow_rules_and_stats() {
    let root = tempfile::tempdir().unwrap();
    let leader = Indices::open(&root.path().join("leader")).unwrap();
    create(&leader, "logs-old");
    let remotes = Arc::new(RemoteClusters::new());
    connect(&remotes, &leader);
    let follower_dir = root.path().join("follower");
    let (indices, followers, coordinator) = open(&follower_dir, remotes.clone()).await;

    coordinator
        .put_pattern("logs", pattern(&["logs-*"], &["logs-secret*"]))
        .await
        .unwrap();
    assert!(
        coordinator.poll_once().await.is_empty(),
        "indices matching at creation are never followed"
    );

    create(&leader, "logs-new");
    create(&leader, "logs-secret-1");
    create(&leader, "metrics-1");
    connect(&remotes, &leader);
    assert_eq!(
        coordinator.poll_once().await,
        vec!["logs-new-copy".to_string()]
    );
    assert!(coordinator.poll_once().await.is_empty(), "followed once");
    let copy = indices.get("logs-new-copy").unwrap();
    assert!(copy.is_follower());
    let settings = copy.metadata().settings;
    assert_eq!(
        settings.refresh_interval_millis,
        Some(7000),
        "the pattern's settings"
    );
    assert_eq!(settings.number_of_replicas, 0);
    let started = Instant::now();
    while copy.get("1").unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the follower never got the document"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let info = &followers.info(Some("logs-new-copy")).await.unwrap()[0];
    assert_eq!(info.metadata.leader_index, "logs-new");
    // The pattern's follow parameters are the follower's; the others are the defaults.
    assert_eq!(
        info.parameters.read_poll_timeout,
        tandem_engine::units::TimeValue::from_millis(100)
    );
    assert_eq!(info.parameters.max_read_request_operation_count, 1000);
    assert_eq!(info.parameters.max_outstanding_read_requests, 12);
    let stats = followers.stats(Some("logs-new-copy")).await.unwrap();
    assert!(!stats[0].shards.is_empty(), "the follower's tasks run");

    // Paused: nothing is followed; on resume, what was created meanwhile is.
    coordinator.set_active("logs", false).await.unwrap();
    create(&leader, "logs-while-paused");
    connect(&remotes, &leader);
    assert!(coordinator.poll_once().await.is_empty());
    coordinator.set_active("logs", true).await.unwrap();
    assert_eq!(
        coordinator.poll_once().await,
        vec!["logs-while-paused-copy".to_string()]
    );

    // Two patterns match one new index: neither follows it, an error is recorded.
    coordinator
        .put_pattern("dups", pattern(&["*-dup"], &[]))
        .await
        .unwrap();
    create(&leader, "logs-dup");
    connect(&remotes, &leader);
    assert!(coordinator.poll_once().await.is_empty());
    assert!(indices.get("logs-dup-copy").is_err());

    let stats = coordinator.stats();
    assert_eq!(stats.number_of_successful_follow_indices, 2);
    assert_eq!(stats.number_of_failed_follow_indices, 1);
    let error = &stats.recent_auto_follow_errors[0];
    assert_eq!(error.leader_index, "logs-dup");
    assert!(
        error
            .auto_follow_exception
            .reason
            .contains("matches with other patterns"),
        "{error:?}"
    );
    assert_eq!(stats.auto_followed_clusters[0].cluster_name, "leader");
    assert!(stats.auto_followed_clusters[0].last_seen_metadata_version >= 5);

    // A remote that cannot be reached counts as a failed remote request.
    remotes.remove("leader");
    coordinator.poll_once().await;
    assert_eq!(
        coordinator
            .stats()
            .number_of_failed_remote_cluster_state_requests,
        1
    );
    connect(&remotes, &leader);

    // Get, delete, persistence.
    let listed = coordinator.get_patterns(None).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|(name, _, active)| (name.as_str(), *active))
            .collect::<Vec<_>>(),
        [("dups", true), ("logs", true)]
    );
    let error = coordinator.delete_pattern("nope").await.unwrap_err();
    assert_eq!(error.to_string(), "auto-follow pattern [nope] is missing");
    assert_eq!(error.status(), 404);
    coordinator.delete_pattern("dups").await.unwrap();
    assert_eq!(
        coordinator.poll_once().await,
        vec!["logs-dup-copy".to_string()],
        "the conflict is gone"
    );
    followers.shutdown().await;
    drop(coordinator);
    drop(followers);
    drop(copy);
    drop(indices);
    let (_indices, followers, coordinator) = open(&follower_dir, remotes.clone()).await;
    let listed = coordinator.get_patterns(None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].1, pattern(&["logs-*"], &["logs-secret*"]));
    // Already followed and pre-existing indices stay handled after the restart.
    assert!(coordinator.poll_once().await.is_empty());
    followers.shutdown().await;
}
