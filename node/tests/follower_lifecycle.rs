//! A follower index's life through the REST API, with two nodes in this process (the
//! follower reaches the leader through the in-process client, so this test does not depend on
//! the HTTP transport): follow, `_recovery` and `_cat/recovery`, closing and reopening a
//! following index (its tasks stop and start again), then deleting it (its follow state goes).

mod common;

use std::time::{Duration, Instant};

use common::{wait_for_count, EsClient};
use serde_json::{json, Value};

async fn index_documents(client: &EsClient, index: &str, from: u64, to: u64) {
    let mut ndjson = String::new();
    for n in from..to {
        ndjson.push_str(&format!("{{\"index\":{{\"_id\":\"{n}\"}}}}\n"));
        ndjson.push_str(&json!({"host": format!("host-{}", n % 3), "total": n}).to_string());
        ndjson.push('\n');
    }
    let answer = client
        .bulk(&format!("/{index}/_bulk?refresh=true"), ndjson)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["errors"], false, "{}", answer.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_index_recovers_closes_reopens_and_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let common::InProcessPair {
        leader,
        follower,
        leader_client,
        follower_client,
    } = common::in_process_pair(dir.path()).await;

    let created = leader_client
        .put(
            "/metrics",
            json!({"settings": {"index": {"number_of_shards": 2}}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    index_documents(&leader_client, "metrics", 0, 200).await;
    leader_client.post_empty("/metrics/_flush").await;

    let followed = follower_client
        .put(
            "/metrics-copy/_ccr/follow?wait_for_active_shards=1",
            json!({"remote_cluster": "leader", "leader_index": "metrics"}),
        )
        .await;
    assert_eq!(followed.status, 200, "{}", followed.text);
    wait_for_count(&follower_client, "metrics-copy", 200).await;

    // _cat/recovery: one row per shard, the CCR repository, done.
    let table = follower_client.get("/_cat/recovery?v&h=index,shard,type,stage,repository,snapshot,files_percent,bytes_percent").await;
    assert_eq!(table.status, 200, "{}", table.text);
    let lines: Vec<Vec<&str>> = table
        .text
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "index",
            "shard",
            "type",
            "stage",
            "repository",
            "snapshot",
            "files_percent",
            "bytes_percent"
        ]
    );
    assert_eq!(lines.len(), 3, "{}", table.text);
    for (shard, line) in lines[1..].iter().enumerate() {
        let shard = shard.to_string();
        assert_eq!(
            line,
            &[
                "metrics-copy",
                shard.as_str(),
                "snapshot",
                "done",
                "_ccr_leader",
                "_latest_",
                "100.0%",
                "100.0%"
            ]
        );
    }
    let rows = follower_client
        .get("/_cat/recovery/metrics-copy?format=json&bytes=b")
        .await;
    assert_eq!(rows.status, 200, "{}", rows.text);
    let rows = rows.body.as_array().unwrap().clone();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row["stage"], "done");
        assert_eq!(row["bytes_recovered"], row["bytes_total"]);
        assert!(row["bytes_total"].as_str().unwrap().parse::<u64>().unwrap() > 0);
        assert!(row.get("start_time").is_none(), "hidden by default");
    }
    assert_eq!(
        follower_client
            .get("/_cat/recovery?active_only=true")
            .await
            .text,
        ""
    );
    assert_eq!(
        follower_client
            .get("/_cat/recovery/no-such-index")
            .await
            .status,
        404
    );
    assert_eq!(
        follower_client.get("/_cat/recovery?h=nope").await.status,
        400
    );

    // Closing a following index stops its tasks; opening it starts them again and it catches
    // up with what the leader wrote meanwhile.
    assert_eq!(
        follower_client
            .post_empty("/metrics-copy/_close")
            .await
            .status,
        200
    );
    let stats = follower_client.get("/_ccr/stats").await;
    assert_eq!(
        stats.body["follow_stats"]["indices"],
        json!([]),
        "{}",
        stats.text
    );
    index_documents(&leader_client, "metrics", 200, 300).await;
    assert_eq!(
        follower_client
            .post_empty("/metrics-copy/_open")
            .await
            .status,
        200
    );
    wait_for_count(&follower_client, "metrics-copy", 300).await;
    let info = follower_client.get("/metrics-copy/_ccr/info").await;
    assert_eq!(
        info.body["follower_indices"][0]["status"], "active",
        "{}",
        info.text
    );

    // Closing the leader index while it is followed: the close ends the follower's long polls
    // (it does not wait a minute for them), the follower retries the closed index, and goes on
    // once the leader is open again.
    let closing = Instant::now();
    let closed = leader_client.post_empty("/metrics/_close").await;
    assert_eq!(closed.status, 200, "{}", closed.text);
    assert!(
        closing.elapsed() < Duration::from_secs(20),
        "{:?}",
        closing.elapsed()
    );
    let started = Instant::now();
    loop {
        let stats = follower_client.get("/metrics-copy/_ccr/stats").await;
        let shards = stats.body["indices"][0]["shards"].as_array().cloned();
        let retried = shards.as_ref().is_some_and(|shards| {
            shards.iter().all(|shard| {
                shard.get("fatal_exception").is_none()
                    && shard["read_exceptions"][0]["exception"]["type"] == "index_closed_exception"
            })
        });
        if retried {
            break;
        }
        assert!(
            started.elapsed() < common::CONVERGE_WITHIN,
            "{}",
            stats.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(leader_client.post_empty("/metrics/_open").await.status, 200);
    index_documents(&leader_client, "metrics", 300, 350).await;
    wait_for_count(&follower_client, "metrics-copy", 350).await;

    // Resume needs the leader open.
    assert_eq!(
        follower_client
            .post_empty("/metrics-copy/_ccr/pause_follow")
            .await
            .status,
        200
    );
    assert_eq!(
        leader_client.post_empty("/metrics/_close").await.status,
        200
    );
    let refused = follower_client
        .post("/metrics-copy/_ccr/resume_follow", json!({}))
        .await;
    assert_eq!(
        error_of(&refused),
        (400, "illegal_argument_exception".to_string())
    );
    assert_eq!(
        refused.body["error"]["reason"], "leader and follow index must be open",
        "{}",
        refused.text
    );
    assert_eq!(leader_client.post_empty("/metrics/_open").await.status, 200);
    let resumed = follower_client
        .post("/metrics-copy/_ccr/resume_follow", json!({}))
        .await;
    assert_eq!(resumed.status, 200, "{}", resumed.text);

    // Deleting it stops following for good and forgets its recoveries.
    assert_eq!(follower_client.delete("/metrics-copy").await.status, 200);
    let info = follower_client.get("/_all/_ccr/info").await;
    assert_eq!(info.body["follower_indices"], json!([]), "{}", info.text);
    assert_eq!(follower_client.get("/_cat/recovery").await.text, "");
    let stats: Value = follower_client.get("/_ccr/stats").await.body;
    assert_eq!(stats["follow_stats"]["indices"], json!([]));

    // The name is free again: following anew recovers from scratch.
    let again = follower_client
        .put(
            "/metrics-copy/_ccr/follow?wait_for_active_shards=1",
            json!({"remote_cluster": "leader", "leader_index": "metrics"}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    wait_for_count(&follower_client, "metrics-copy", 350).await;

    follower.stop().await;
    leader.stop().await;
}

/// The status and type of an error answer.
fn error_of(answer: &common::Answer) -> (u16, String) {
    (
        answer.status,
        answer.body["error"]["type"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_requests_on_missing_plain_and_paused_indices_fail_as_in_elasticsearch() {
    let dir = tempfile::tempdir().unwrap();
    let common::InProcessPair {
        leader,
        follower,
        leader_client,
        follower_client,
    } = common::in_process_pair(dir.path()).await;
    assert_eq!(leader_client.put("/metrics", json!({})).await.status, 200);
    assert_eq!(follower_client.put("/plain", json!({})).await.status, 200);
    let followed = follower_client
        .put(
            "/metrics-copy/_ccr/follow?wait_for_active_shards=1",
            json!({"remote_cluster": "leader", "leader_index": "metrics"}),
        )
        .await;
    assert_eq!(followed.status, 200, "{}", followed.text);

    // Elasticsearch looks the index up first: a missing one is a 404, an existing index that
    // does not follow is a 400.
    let not_found = (404, "index_not_found_exception".to_string());
    let not_a_follower = (400, "illegal_argument_exception".to_string());
    for action in ["pause_follow", "resume_follow", "unfollow", "promote"] {
        let missing = follower_client
            .post_empty(&format!("/missing/_ccr/{action}"))
            .await;
        assert_eq!(error_of(&missing), not_found, "{action}: {}", missing.text);
        assert_eq!(missing.body["error"]["index"], "missing");
        let plain = follower_client
            .post_empty(&format!("/plain/_ccr/{action}"))
            .await;
        assert_eq!(error_of(&plain), not_a_follower, "{action}: {}", plain.text);
    }

    // Follow stats list the indices with shard follow tasks; naming only indices without
    // any (missing, not a follower, paused) is a 404.
    let no_tasks = (404, "resource_not_found_exception".to_string());
    let stats = follower_client.get("/metrics-copy,plain/_ccr/stats").await;
    assert_eq!(stats.status, 200, "{}", stats.text);
    assert_eq!(stats.body["indices"][0]["index"], "metrics-copy");
    assert_eq!(stats.body["indices"].as_array().unwrap().len(), 1);
    for names in ["missing", "plain", "missing,plain"] {
        let stats = follower_client.get(&format!("/{names}/_ccr/stats")).await;
        assert_eq!(error_of(&stats), no_tasks, "{names}: {}", stats.text);
        assert_eq!(
            stats.body["error"]["reason"],
            format!("No shard follow tasks for follower indices [{names}]")
        );
    }
    let paused = follower_client
        .post_empty("/metrics-copy/_ccr/pause_follow")
        .await;
    assert_eq!(paused.status, 200, "{}", paused.text);
    let stats = follower_client.get("/metrics-copy/_ccr/stats").await;
    assert_eq!(error_of(&stats), no_tasks, "{}", stats.text);
    let all = follower_client.get("/_all/_ccr/stats").await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(all.body["indices"], json!([]));

    follower.stop().await;
    leader.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_makes_a_following_index_writable_in_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let common::InProcessPair {
        leader,
        follower,
        leader_client,
        follower_client,
    } = common::in_process_pair(dir.path()).await;
    let created = leader_client
        .put(
            "/metrics",
            json!({"settings": {"index": {"number_of_shards": 2}}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    index_documents(&leader_client, "metrics", 0, 120).await;
    let followed = follower_client
        .put(
            "/metrics-copy/_ccr/follow?wait_for_active_shards=1",
            json!({"remote_cluster": "leader", "leader_index": "metrics"}),
        )
        .await;
    assert_eq!(followed.status, 200, "{}", followed.text);
    wait_for_count(&follower_client, "metrics-copy", 120).await;

    for (body, reason) in [
        (
            json!({"retention_period": "soon"}),
            "failed to parse [retention_period]",
        ),
        (
            json!({"retention_period": "0s"}),
            "failed to parse [retention_period]",
        ),
        (json!({"wait": true}), "unknown field [wait]"),
    ] {
        let refused = follower_client
            .post("/metrics-copy/_ccr/promote", body)
            .await;
        assert_eq!(refused.status, 400, "{}", refused.text);
        assert!(refused.text.contains(reason), "{}", refused.text);
    }
    // Still following after the refusals.
    let info = follower_client.get("/metrics-copy/_ccr/info").await;
    assert_eq!(
        info.body["follower_indices"][0]["status"], "active",
        "{}",
        info.text
    );

    let promoted = follower_client
        .post(
            "/metrics-copy/_ccr/promote",
            json!({"retention_period": "1d"}),
        )
        .await;
    assert_eq!(promoted.status, 200, "{}", promoted.text);
    assert_eq!(promoted.body["acknowledged"], true);
    assert_eq!(promoted.body["index"], "metrics-copy");
    let shards = promoted.body["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    let mut operations = 0;
    for (number, shard) in shards.iter().enumerate() {
        assert_eq!(shard["shard"], number);
        // Caught up: nothing behind, the recovery point is the leader's max_seq_no.
        assert_eq!(shard["operations_behind_leader"], 0, "{shard}");
        assert_eq!(
            shard["local_checkpoint"], shard["leader_max_seq_no"],
            "{shard}"
        );
        assert_eq!(shard["local_checkpoint"], shard["max_seq_no"], "{shard}");
        assert!(shard["retention_lease"]
            .as_str()
            .unwrap()
            .ends_with("-promoted"));
        operations += shard["local_checkpoint"].as_i64().unwrap() + 1;
    }
    assert_eq!(operations, 120);

    // Writable, not a follower any more.
    let info = follower_client.get("/metrics-copy/_ccr/info").await;
    assert_eq!(info.body["follower_indices"], json!([]), "{}", info.text);
    let written = follower_client
        .put("/metrics-copy/_doc/new?refresh=true", json!({"total": 1}))
        .await;
    assert_eq!(written.status, 201, "{}", written.text);
    wait_for_count(&follower_client, "metrics-copy", 121).await;
    let lease_ids = |stats: &Value| -> Vec<String> {
        stats["indices"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|index| index["shards"].as_object().unwrap().values())
            .flat_map(|copies| copies.as_array().unwrap())
            .flat_map(|copy| copy["retention_leases"]["leases"].as_array().unwrap())
            .map(|lease| lease["id"].as_str().unwrap().to_string())
            .collect()
    };
    let leader_stats = leader_client.get("/metrics/_stats?level=shards").await;
    assert_eq!(leader_stats.status, 200, "{}", leader_stats.text);
    // The follower's leases stay on the old leader: they keep its history for a failback.
    let kept = lease_ids(&leader_stats.body);
    assert_eq!(kept.len(), 2, "{}", leader_stats.text);
    assert!(kept.iter().all(|id| id.contains("-following-")));
    let promoted_stats = follower_client
        .get("/metrics-copy/_stats?level=shards")
        .await;
    let promoted_leases = lease_ids(&promoted_stats.body);
    assert_eq!(promoted_leases.len(), 2, "{}", promoted_stats.text);
    assert!(promoted_leases.iter().all(|id| id.ends_with("-promoted")));
    let again = follower_client
        .post_empty("/metrics-copy/_ccr/promote")
        .await;
    assert_eq!(
        error_of(&again),
        (400, "illegal_argument_exception".to_string())
    );

    follower.stop().await;
    leader.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_settings_from_cluster_settings_reach_the_followers_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::start_in_process("follower", dir.path()).await;
    assert_eq!(
        node.node.followers.recovery_settings().max_bytes_per_sec,
        40 << 20,
        "Elasticsearch's default"
    );
    let client = EsClient::new(&node.url());
    let updated = client
        .put(
            "/_cluster/settings",
            json!({"persistent": {"ccr.indices.recovery.max_bytes_per_sec": "10gb",
                "ccr.indices.recovery.max_concurrent_file_chunks": 10}}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    let applied = node.node.followers.recovery_settings();
    assert_eq!(applied.max_bytes_per_sec, 10 << 30);
    assert_eq!(applied.max_concurrent_file_chunks, 10);
    let refused = client
        .put(
            "/_cluster/settings",
            json!({"transient": {"ccr.indices.recovery.chunk_size": "0"}}),
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(node.node.followers.recovery_settings(), applied);
    node.stop().await;

    let restarted = common::start_in_process("follower", dir.path()).await;
    assert_eq!(restarted.node.followers.recovery_settings(), applied);
    restarted.stop().await;
}
