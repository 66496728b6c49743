//! A write that fails after its sequence number was assigned fails its shard, and the node
//! repairs it (reopens the index from its durable state, as Elasticsearch reallocates a failed
//! shard): later writes are acknowledged again and replicate to a follower, which ends with
//! the leader's documents and checkpoints. Two nodes in this process (the failpoint is
//! process-global); the failure is injected with the `shard::primary_after_seq_no` failpoint.
//!
//! A full disk under the translog (`storage::io` failpoint, `ENOSPC`) does not fail the shard:
//! writes get Elasticsearch's 429 block, which its clients retry, reads keep working, and writes
//! are acknowledged again as soon as the disk has room.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::EsClient;
use serde_json::json;

/// Longest wait for a state to show.
const WITHIN: Duration = Duration::from_secs(60);

/// The follower's global checkpoint of shard 0 of `index`, from `_ccr/stats`.
async fn follower_checkpoint(client: &EsClient, index: &str) -> Option<i64> {
    let stats = client.get(&format!("/{index}/_ccr/stats")).await;
    stats.body["indices"][0]["shards"][0]["follower_global_checkpoint"].as_i64()
}

/// Fails the shard of `logs`: one write panics after it took its seq_no, before any I/O.
async fn fail_a_write_after_its_seq_no(client: &EsClient) {
    let injected = Arc::new(AtomicBool::new(false));
    let once = injected.clone();
    fail::cfg_callback("shard::primary_after_seq_no", move || {
        if !once.swap(true, Ordering::SeqCst) {
            panic!("injected failure after the seq_no was assigned");
        }
    })
    .unwrap();
    let failed = client.put("/logs/_doc/interrupted", json!({"n": -1})).await;
    assert!(injected.load(Ordering::SeqCst));
    assert_eq!(failed.status, 500, "{}", failed.text);
    fail::remove("shard::primary_after_seq_no");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_leader_shard_is_reopened_and_later_writes_replicate() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    // Both nodes live until the end of the test.
    let common::InProcessPair {
        leader: _leader,
        follower: _follower,
        leader_client,
        follower_client,
    } = common::in_process_pair(dir.path()).await;
    common::create_with_documents(&leader_client, "logs", 1, 0..5).await;
    common::follow(&follower_client, "logs-copy", "logs").await;

    // One write panics after it took seq_no 5: the shard fails.
    fail_a_write_after_its_seq_no(&leader_client).await;

    // The node reopens the index; writes are acknowledged again.
    let started = Instant::now();
    let later = loop {
        let put = leader_client.put("/logs/_doc/later", json!({"n": 5})).await;
        if put.status == 201 {
            break put;
        }
        assert!(
            started.elapsed() < WITHIN,
            "no write acknowledged after the failure: {}",
            put.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(later.body["_seq_no"], 5, "{}", later.text);
    let health = leader_client.get("/_cluster/health/logs").await;
    assert_eq!(health.body["status"], "green", "{}", health.text);
    assert_eq!(health.body["unassigned_shards"], 0, "{}", health.text);
    let more = leader_client.put("/logs/_doc/more", json!({"n": 6})).await;
    assert_eq!(more.body["_seq_no"], 6, "{}", more.text);

    // The follower reaches the leader's checkpoint and holds its documents.
    let started = Instant::now();
    while follower_checkpoint(&follower_client, "logs-copy").await != Some(6) {
        assert!(
            started.elapsed() < WITHIN,
            "the follower did not catch up: {}",
            follower_client.get("/logs-copy/_ccr/stats").await.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (client, index) in [(&leader_client, "logs"), (&follower_client, "logs-copy")] {
        client.post_empty(&format!("/{index}/_refresh")).await;
        let ids = client
            .post(&format!("/{index}/_search"), json!({"size": 100}))
            .await;
        assert_eq!(ids.status, 200, "{}", ids.text);
        let mut ids: Vec<&str> = ids.body["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hit| hit["_id"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, ["0", "1", "2", "3", "4", "later", "more"], "{index}");
    }
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_translog_disk_answers_429_serves_reads_and_writes_resume() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let common::InProcessPair {
        leader: _leader,
        follower: _follower,
        leader_client,
        ..
    } = common::in_process_pair(dir.path()).await;
    common::create_with_documents(&leader_client, "logs", 1, 0..5).await;
    leader_client.post_empty("/logs/_refresh").await;

    // The disk under every translog of this process is full.
    fail::cfg("storage::io", "return(write@.tlog:ENOSPC)").unwrap();
    let bulk = leader_client
        .bulk(
            "/_bulk",
            [
                r#"{"index":{"_index":"logs","_id":"b1"}}"#,
                r#"{"n":10}"#,
                r#"{"index":{"_index":"logs","_id":"b2"}}"#,
                r#"{"n":11}"#,
                "",
            ]
            .join("\n"),
        )
        .await;
    assert_eq!(bulk.status, 200, "{}", bulk.text);
    assert_eq!(bulk.body["errors"], true, "{}", bulk.text);
    for item in bulk.body["items"].as_array().unwrap() {
        assert_eq!(item["index"]["status"], 429, "{}", bulk.text);
        assert_eq!(
            item["index"]["error"]["type"], "cluster_block_exception",
            "{}",
            bulk.text
        );
        let reason = item["index"]["error"]["reason"].as_str().unwrap();
        assert!(reason.contains("No space left on device"), "{reason}");
    }
    let refused = leader_client
        .put("/logs/_doc/refused", json!({"n": -1}))
        .await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    // Reads keep working, and the index is not failed.
    let got = leader_client.get("/logs/_doc/3").await;
    assert_eq!(got.status, 200, "{}", got.text);
    let count = leader_client.get("/logs/_count").await;
    assert_eq!(count.body["count"], 5, "{}", count.text);
    let health = leader_client.get("/_cluster/health/logs").await;
    assert_eq!(health.body["status"], "green", "{}", health.text);

    // Space returns: the next write is acknowledged at once.
    fail::remove("storage::io");
    let after = leader_client
        .put("/logs/_doc/after", json!({"n": 12}))
        .await;
    assert_eq!(after.status, 201, "{}", after.text);
    leader_client.post_empty("/logs/_refresh").await;
    let count = leader_client.get("/logs/_count").await;
    // The two bulk items that found the disk full were kept and written once it had room.
    assert_eq!(count.body["count"], 8, "{}", count.text);
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_disk_is_full_waits_and_catches_up_once_space_returns() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let common::InProcessPair {
        leader: _leader,
        follower: _follower,
        leader_client,
        follower_client,
    } = common::in_process_pair(dir.path()).await;
    common::create_with_documents(&leader_client, "logs", 1, 0..1).await;
    common::follow(&follower_client, "logs-copy", "logs").await;
    let started = Instant::now();
    while follower_checkpoint(&follower_client, "logs-copy").await != Some(0) {
        assert!(started.elapsed() < WITHIN, "the follower did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The follower's translog disk fills up while the leader takes writes.
    fail::cfg("storage::io", "return(write@/follower/*.tlog:ENOSPC)").unwrap();
    for n in 1..=20 {
        let put = leader_client
            .put(&format!("/logs/_doc/{n}"), json!({"n": n}))
            .await;
        assert_eq!(put.status, 201, "{}", put.text);
    }
    let started = Instant::now();
    loop {
        let stats = follower_client.get("/logs-copy/_ccr/stats").await;
        let shard = &stats.body["indices"][0]["shards"][0];
        assert!(
            shard["fatal_exception"].is_null(),
            "a full disk is not fatal: {}",
            stats.text
        );
        if shard["failed_write_requests"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(
            started.elapsed() < WITHIN,
            "no refused write: {}",
            stats.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(follower_checkpoint(&follower_client, "logs-copy").await < Some(20));

    // Space returns: the follower catches up by itself.
    fail::remove("storage::io");
    let started = Instant::now();
    while follower_checkpoint(&follower_client, "logs-copy").await != Some(20) {
        assert!(
            started.elapsed() < WITHIN,
            "the follower did not catch up: {}",
            follower_client.get("/logs-copy/_ccr/stats").await.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    follower_client.post_empty("/logs-copy/_refresh").await;
    let count = follower_client.get("/logs-copy/_count").await;
    assert_eq!(count.body["count"], 21, "{}", count.text);
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_whose_repair_finds_the_disk_full_is_red_and_comes_back_once_space_returns() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let _leader = common::start_in_process("leader", dir.path()).await;
    let client = EsClient::new(&_leader.url());
    common::create_with_documents(&client, "logs", 1, 0..5).await;

    // The node's disk is full, then a write fails its shard (after its seq_no, before any
    // I/O): the repair cannot reopen the index, which is down and red, not given up on.
    fail::cfg("storage::io", "return(any@/leader/*:ENOSPC)").unwrap();
    fail_a_write_after_its_seq_no(&client).await;
    let started = Instant::now();
    loop {
        let health = client.get("/_cluster/health").await;
        let get = client.get("/logs/_doc/0").await;
        // Down: registered closed after the failed reopen, and counted unassigned.
        if health.body["status"] == "red"
            && health.body["unassigned_shards"] == 1
            && get.body["error"]["type"] == "index_closed_exception"
        {
            break;
        }
        assert!(
            started.elapsed() < WITHIN,
            "the index never went down: {} / {}",
            health.text,
            get.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Space returns: the node opens the index by itself; nothing acknowledged is lost.
    fail::remove("storage::io");
    let started = Instant::now();
    loop {
        let health = client.get("/_cluster/health/logs").await;
        if health.body["status"] == "green" {
            break;
        }
        assert!(
            started.elapsed() < WITHIN,
            "the index did not come back: {}",
            health.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let put = client.put("/logs/_doc/later", json!({"n": 5})).await;
    assert_eq!(put.status, 201, "{}", put.text);
    client.post_empty("/logs/_refresh").await;
    let ids = client.post("/logs/_search", json!({"size": 100})).await;
    let mut ids: Vec<&str> = ids.body["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["0", "1", "2", "3", "4", "later"]);
    scenario.teardown();
}
