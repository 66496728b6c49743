//! `cluster.max_shards_per_node` through the REST API, with two nodes in this process: index
//! creation, opening a closed index, a follow and an auto-follow past the limit are refused
//! with Elasticsearch's 400 `validation_exception`, nothing of them is left behind, and a
//! settings update (transient over persistent, `null` back to the default) is honoured at
//! once.

mod common;

use std::time::{Duration, Instant};

use common::EsClient;
use serde_json::{json, Value};

/// Longest wait for the auto-follow coordinator to act (it polls every second).
const AUTO_FOLLOW_WITHIN: Duration = Duration::from_secs(30);

fn limit_error(adding: u64, open: u64, limit: u64) -> String {
    format!(
        "Validation Failed: 1: this action would add [{adding}] shards, but this cluster \
         currently has [{open}]/[{limit}] maximum normal shards open;"
    )
}

fn assert_refused(answer: &common::Answer, reason: &str) {
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert_eq!(
        answer.body,
        json!({"error": {"root_cause": [{"type": "validation_exception", "reason": reason}],
                         "type": "validation_exception", "reason": reason},
               "status": 400}),
    );
}

async fn set_limit(client: &EsClient, scope: &str, limit: Value) {
    let answer = client
        .put(
            "/_cluster/settings",
            json!({ scope: {"cluster.max_shards_per_node": limit} }),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

async fn create(client: &EsClient, index: &str, shards: u32) -> common::Answer {
    client
        .put(
            &format!("/{index}"),
            json!({"settings": {"number_of_shards": shards}}),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_past_the_shard_limit_are_refused_until_the_setting_allows_them() {
    let dir = tempfile::tempdir().unwrap();
    let common::InProcessPair {
        leader: _leader,
        follower: _follower,
        leader_client,
        follower_client: client,
    } = common::in_process_pair(dir.path()).await;

    let invalid = client
        .put(
            "/_cluster/settings",
            json!({"persistent": {"cluster.max_shards_per_node": 0}}),
        )
        .await;
    assert_eq!(invalid.status, 400, "{}", invalid.text);
    assert_eq!(invalid.body["error"]["type"], "illegal_argument_exception");

    // Persistent 10, transient 3: the transient value is the limit.
    set_limit(&client, "persistent", json!(10)).await;
    set_limit(&client, "transient", json!("3")).await;
    assert_eq!(create(&client, "a", 2).await.status, 200);
    assert_refused(&create(&client, "b", 2).await, &limit_error(2, 2, 3));
    assert_eq!(client.get("/b").await.status, 404, "nothing was created");
    assert_eq!(create(&client, "b", 1).await.status, 200);

    // A closed index frees its shards; opening it counts them again.
    assert_eq!(client.post_empty("/a/_close").await.status, 200);
    assert_eq!(create(&client, "c", 2).await.status, 200);
    assert_refused(&client.post_empty("/a/_open").await, &limit_error(2, 3, 3));
    let closed = client.get("/_cat/indices/a?h=status").await;
    assert_eq!(closed.text.trim(), "close", "still closed");

    // A follow counts the leader's shards before anything is copied.
    assert_eq!(create(&leader_client, "logs", 2).await.status, 200);
    let follow = client
        .put(
            "/logs-copy/_ccr/follow?wait_for_active_shards=1",
            json!({"remote_cluster": "leader", "leader_index": "logs"}),
        )
        .await;
    assert_refused(&follow, &limit_error(2, 3, 3));
    assert_eq!(client.get("/logs-copy").await.status, 404);
    let recoveries = client.get("/_recovery").await;
    assert!(
        recoveries.body.get("logs-copy").is_none(),
        "{}",
        recoveries.text
    );

    // An auto-follow of a new leader index is refused the same way, and says so.
    let pattern = client
        .put(
            "/_ccr/auto_follow/daily",
            json!({"remote_cluster": "leader", "leader_index_patterns": ["daily-*"]}),
        )
        .await;
    assert_eq!(pattern.status, 200, "{}", pattern.text);
    assert_eq!(create(&leader_client, "daily-1", 1).await.status, 200);
    let started = Instant::now();
    let errors = loop {
        let stats = client.get("/_ccr/stats").await;
        let errors = stats.body["auto_follow_stats"]["recent_auto_follow_errors"].clone();
        if errors.as_array().is_some_and(|errors| !errors.is_empty()) {
            break errors;
        }
        assert!(
            started.elapsed() < AUTO_FOLLOW_WITHIN,
            "no auto-follow error: {}",
            stats.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(errors[0]["leader_index"], "daily-1");
    assert_eq!(
        errors[0]["auto_follow_exception"]["type"],
        "validation_exception"
    );
    assert_eq!(
        errors[0]["auto_follow_exception"]["reason"],
        limit_error(1, 3, 3)
    );
    assert_eq!(client.get("/daily-1").await.status, 404);

    // Back to the persistent limit: the refused actions now pass.
    set_limit(&client, "transient", Value::Null).await;
    assert_eq!(client.post_empty("/a/_open").await.status, 200);
    let follow = client
        .put(
            "/logs-copy/_ccr/follow?wait_for_active_shards=1",
            json!({"remote_cluster": "leader", "leader_index": "logs"}),
        )
        .await;
    assert_eq!(follow.status, 200, "{}", follow.text);
    // 2 + 1 + 2 + 2 = 7 open; 4 more do not fit in 10.
    assert_refused(&create(&client, "d", 4).await, &limit_error(4, 7, 10));
    assert_eq!(create(&client, "d", 3).await.status, 200);
}
