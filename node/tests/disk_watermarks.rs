//! The flood-stage disk watermark, as an operator meets it: past
//! `cluster.routing.allocation.disk.watermark.flood_stage` every index of the node gets
//! `index.blocks.read_only_allow_delete`, writes answer Elasticsearch's 429 block while reads
//! and deletes go on, a follower on such a node waits and then catches up, and the block goes
//! once the disk is under the high watermark (or is cleared by hand). The watermarks are set as
//! bytes to keep free, so that the real disk under the test is "full" (keep 1000 PB free) or
//! "empty" (keep 0 bytes free) whatever it holds.

mod common;

use std::time::{Duration, Instant};

use common::EsClient;
use serde_json::{json, Value};

/// Longest wait for the monitor or a follower to act.
const WITHIN: Duration = Duration::from_secs(30);

/// Watermarks every disk is past.
fn flooded() -> Value {
    json!({"transient": {
        "cluster.routing.allocation.disk.watermark.low": "1000pb",
        "cluster.routing.allocation.disk.watermark.high": "1000pb",
        "cluster.routing.allocation.disk.watermark.flood_stage": "1000pb",
    }})
}

/// Watermarks no disk is past.
fn roomy() -> Value {
    json!({"transient": {
        "cluster.routing.allocation.disk.watermark.low": "0b",
        "cluster.routing.allocation.disk.watermark.high": "0b",
        "cluster.routing.allocation.disk.watermark.flood_stage": "0b",
    }})
}

async fn set_cluster(client: &EsClient, body: Value) {
    let answer = client.put("/_cluster/settings", body).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

async fn blocked(client: &EsClient, index: &str) -> bool {
    let answer = client.get(&format!("/{index}/_settings")).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body[index]["settings"]["index"]["blocks"]["read_only_allow_delete"] == "true"
}

async fn wait_blocked(client: &EsClient, index: &str, expected: bool) {
    let started = Instant::now();
    while blocked(client, index).await != expected {
        assert!(
            started.elapsed() < WITHIN,
            "[{index}] read_only_allow_delete never became {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_flood_block(answer: &common::Answer, index: &str) {
    assert_eq!(answer.status, 429, "{}", answer.text);
    assert_eq!(
        answer.body["error"]["type"], "cluster_block_exception",
        "{}",
        answer.text
    );
    assert_eq!(
        answer.body["error"]["reason"],
        format!(
            "index [{index}] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage \
             watermark, index has read-only-allow-delete block];"
        ),
        "{}",
        answer.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_flood_stage_writes_are_blocked_reads_go_on_and_the_block_lifts_with_space() {
    let dir = tempfile::tempdir().unwrap();
    let common::InProcessPair {
        leader: _leader,
        follower: _follower,
        leader_client,
        follower_client,
    } = common::in_process_pair(dir.path()).await;
    common::create_with_documents(&leader_client, "logs", 2, 0..3).await;
    common::create_with_documents(&leader_client, "scratch", 2, 0..0).await;
    leader_client.post_empty("/logs/_refresh").await;
    common::follow(&follower_client, "logs-copy", "logs").await;
    common::wait_for_count(&follower_client, "logs-copy", 3).await;

    // The defaults are Elasticsearch's.
    let defaults = leader_client
        .get("/_cluster/settings?include_defaults=true&flat_settings=true")
        .await;
    let defaults = &defaults.body["defaults"];
    for (key, value) in [
        ("cluster.routing.allocation.disk.watermark.low", "85%"),
        ("cluster.routing.allocation.disk.watermark.high", "90%"),
        (
            "cluster.routing.allocation.disk.watermark.flood_stage",
            "95%",
        ),
        ("cluster.info.update.interval", "30s"),
    ] {
        assert_eq!(defaults[key], value, "{defaults}");
    }
    // Watermarks out of order, of mixed forms, or checked too often are refused whole.
    for bad in [
        json!({"cluster.routing.allocation.disk.watermark.flood_stage": "80%"}),
        json!({"cluster.routing.allocation.disk.watermark.flood_stage": "10gb"}),
        json!({"cluster.routing.allocation.disk.watermark.low": "99%"}),
        json!({"cluster.info.update.interval": "1s"}),
        json!({"cluster.routing.allocation.disk.watermark.flood_stage": "120%"}),
    ] {
        let refused = leader_client
            .put("/_cluster/settings", json!({"persistent": bad}))
            .await;
        assert_eq!(refused.status, 400, "{bad}: {}", refused.text);
        assert_eq!(refused.body["error"]["type"], "illegal_argument_exception");
    }

    // Past the flood stage (the check runs at once on a settings change): every index of the
    // leader's node is blocked, the follower's node is not.
    set_cluster(&leader_client, flooded()).await;
    wait_blocked(&leader_client, "logs", true).await;
    wait_blocked(&leader_client, "scratch", true).await;
    assert!(!blocked(&follower_client, "logs-copy").await);
    let put = leader_client.put("/logs/_doc/x", json!({"n": 9})).await;
    assert_flood_block(&put, "logs");
    let bulk = leader_client
        .bulk(
            "/_bulk",
            "{\"index\":{\"_index\":\"logs\",\"_id\":\"b\"}}\n{\"n\":1}\n\
             {\"delete\":{\"_index\":\"logs\",\"_id\":\"0\"}}\n"
                .to_string(),
        )
        .await;
    assert_eq!(bulk.status, 200, "{}", bulk.text);
    assert_eq!(bulk.body["errors"], true);
    for item in bulk.body["items"].as_array().unwrap() {
        let (_, result) = item.as_object().unwrap().iter().next().unwrap();
        assert_eq!(result["status"], 429, "{item}");
        assert_eq!(result["error"]["type"], "cluster_block_exception", "{item}");
    }
    let settings = leader_client
        .put(
            "/logs/_settings",
            json!({"index": {"number_of_replicas": 0}}),
        )
        .await;
    assert_flood_block(&settings, "logs");
    // Reads go on, and an index can still be deleted to make room.
    let get = leader_client.get("/logs/_doc/1").await;
    assert_eq!(get.status, 200, "{}", get.text);
    let count = leader_client.get("/logs/_count").await;
    assert_eq!(count.body["count"], 3, "{}", count.text);
    let deleted = leader_client.delete("/scratch").await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);

    // Under the high watermark again: the block goes and writes are acknowledged.
    set_cluster(&leader_client, roomy()).await;
    wait_blocked(&leader_client, "logs", false).await;
    for n in 3..5 {
        let put = leader_client
            .put(&format!("/logs/_doc/{n}"), json!({"n": n}))
            .await;
        assert_eq!(put.status, 201, "{}", put.text);
    }

    // A follower on a node past the flood stage: its index is blocked and it stops applying
    // (the leader's writes wait on the leader); once there is room it catches up.
    common::wait_for_count(&follower_client, "logs-copy", 5).await;
    set_cluster(&follower_client, flooded()).await;
    wait_blocked(&follower_client, "logs-copy", true).await;
    for n in 5..8 {
        let put = leader_client
            .put(&format!("/logs/_doc/{n}"), json!({"n": n}))
            .await;
        assert_eq!(put.status, 201, "{}", put.text);
    }
    let started = Instant::now();
    loop {
        let stats = follower_client.get("/logs-copy/_ccr/stats").await;
        let shards = stats.body["indices"][0]["shards"].as_array().cloned();
        let failed: u64 = shards
            .iter()
            .flatten()
            .map(|shard| shard["failed_write_requests"].as_u64().unwrap_or(0))
            .sum();
        if failed > 0 {
            for shard in shards.iter().flatten() {
                assert!(shard["fatal_exception"].is_null(), "{shard}");
            }
            break;
        }
        assert!(
            started.elapsed() < WITHIN,
            "no write refused: {}",
            stats.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    follower_client.post_empty("/logs-copy/_refresh").await;
    let held = follower_client.get("/logs-copy/_count").await;
    assert_eq!(held.body["count"], 5, "{}", held.text);
    set_cluster(&follower_client, roomy()).await;
    wait_blocked(&follower_client, "logs-copy", false).await;
    common::wait_for_count(&follower_client, "logs-copy", 8).await;

    // An operator may set and clear the block by hand (`null`, as Elasticsearch's docs do).
    let set = leader_client
        .put(
            "/logs/_settings",
            json!({"index.blocks.read_only_allow_delete": true}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    assert_flood_block(&leader_client.put("/logs/_doc/y", json!({})).await, "logs");
    let cleared = leader_client
        .put(
            "/logs/_settings",
            json!({"index": {"blocks": {"read_only_allow_delete": null}}}),
        )
        .await;
    assert_eq!(cleared.status, 200, "{}", cleared.text);
    let put = leader_client.put("/logs/_doc/y", json!({"n": 10})).await;
    assert_eq!(put.status, 201, "{}", put.text);
}
