//! Long polls hold no thread. A node serving many more open long polls (followers' shard
//! changes reads waiting for a write) than its runtime has blocking threads still answers an
//! unrelated search and `GET /` at once, every poll answers as soon as the write it waits for
//! lands, and a poll whose follower goes away leaves no waiter registered on the shard.
//!
//! The polls are real: an [`HttpLeaderClient`] over loopback TCP to the node's
//! `/_tandem/v1/shard_changes`, as a follower sends them, on a runtime whose blocking pool is
//! far smaller than the number of polls.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{start_in_process, EsClient};
use serde_json::json;
use tandem_engine::shard::ChangesRequest;
use tandem_engine::SeqNo;
use tandem_node::server::RunningNode;
use tandem_recovery::leader_api::{
    LeaderClient, LeaderError, ShardChangesRequest, ShardChangesResponse, ShardId,
};
use tandem_transport::HttpLeaderClient;
use tokio::task::JoinHandle;

/// Open polls: many times the blocking pool.
const POLLS: usize = 600;
/// The runtime's blocking pool: a poll holding a blocking thread would exhaust it 75 times.
const BLOCKING_THREADS: usize = 8;
/// A poll's own timeout: far longer than any bound below, so that a poll answered by its
/// timeout (not by the write) fails the test.
const POLL_TIMEOUT: Duration = Duration::from_secs(60);
/// What "at once" allows on a loaded machine: well under the poll timeout.
const PROMPTLY: Duration = Duration::from_secs(10);
/// Longest the test waits for a condition it polls.
const CONDITION_TIMEOUT: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A caught-up follower's read of shard 0 of `leader`: everything from `from_seq_no`, waiting
/// up to [`POLL_TIMEOUT`] for it.
fn long_poll(from_seq_no: i64) -> ShardChangesRequest {
    ShardChangesRequest {
        shard: ShardId::new("leader", 0),
        changes: ChangesRequest {
            from_seq_no: SeqNo(from_seq_no),
            max_operation_count: 100,
            max_batch_size: 1024 * 1024,
            poll_timeout: POLL_TIMEOUT,
            expected_history_uuid: None,
        },
    }
}

/// Polls `condition` until it holds, failing the test after [`CONDITION_TIMEOUT`].
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + CONDITION_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node with a caught-up leader index `leader` (one document, seq_no 0) and an unrelated
/// index `other` holding one searchable document.
async fn node_with_indices(dir: &std::path::Path) -> (RunningNode, EsClient) {
    let node = start_in_process("leader", dir).await;
    let client = EsClient::new(&node.url());
    for index in ["leader", "other"] {
        let created = client
            .put(
                &format!("/{index}"),
                json!({"settings": {"number_of_shards": 1}}),
            )
            .await;
        assert_eq!(created.status, 200, "{}", created.text);
        let written = client
            .put(
                &format!("/{index}/_doc/0?refresh=true"),
                json!({"body": "first"}),
            )
            .await;
        assert_eq!(written.status, 201, "{}", written.text);
    }
    (node, client)
}

/// Registered checkpoint waits on the leader shard.
fn registered_waits(node: &RunningNode) -> usize {
    node.node
        .indices
        .get("leader")
        .expect("the leader index")
        .shards()[0]
        .checkpoint_task_waits()
}

fn open_polls(
    leader: &Arc<HttpLeaderClient>,
    count: usize,
) -> Vec<JoinHandle<Result<ShardChangesResponse, LeaderError>>> {
    (0..count)
        .map(|_| {
            let leader = leader.clone();
            tokio::spawn(async move { leader.shard_changes(long_poll(1)).await })
        })
        .collect()
}

#[test]
fn open_long_polls_leave_the_node_responsive_and_answer_when_the_write_lands() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (node, client) = node_with_indices(dir.path()).await;
        let leader = Arc::new(HttpLeaderClient::new(vec![node.address.to_string()]));
        let polls = open_polls(&leader, POLLS);
        wait_until("every poll waits on the shard", || {
            registered_waits(&node) == POLLS
        })
        .await;

        // Unrelated requests that need the blocking pool are answered at once.
        let started = Instant::now();
        let search = client.get("/other/_search").await;
        assert_eq!(search.status, 200, "{}", search.text);
        assert_eq!(search.body["hits"]["total"]["value"], 1, "{}", search.text);
        let root = client.get("/").await;
        assert_eq!(root.status, 200, "{}", root.text);
        let read = leader
            .shard_changes(ShardChangesRequest {
                changes: ChangesRequest {
                    poll_timeout: Duration::ZERO,
                    ..long_poll(0).changes
                },
                ..long_poll(0)
            })
            .await
            .expect("a read without a poll");
        assert_eq!(read.changes.operations.len(), 1);
        let answered = started.elapsed();
        assert!(
            answered < PROMPTLY,
            "with {POLLS} polls open, a search, GET / and a read took {answered:?}"
        );
        assert_eq!(registered_waits(&node), POLLS, "no poll answered yet");

        // The write the polls wait for answers every one of them.
        let started = Instant::now();
        let written = client
            .put("/leader/_doc/1", json!({"body": "awaited"}))
            .await;
        assert_eq!(written.status, 201, "{}", written.text);
        for poll in polls {
            let answer = poll
                .await
                .expect("the poll task")
                .expect("the poll's answer");
            let seq_nos: Vec<i64> = answer
                .changes
                .operations
                .iter()
                .map(|op| op.seq_no.0)
                .collect();
            assert_eq!(seq_nos, vec![1]);
        }
        let answered = started.elapsed();
        assert!(
            answered < PROMPTLY,
            "{POLLS} polls answered {answered:?} after the write"
        );
        assert_eq!(registered_waits(&node), 0);
        node.stop().await;
    });
}

#[test]
fn a_long_poll_whose_follower_went_away_unregisters_its_wait() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (node, _client) = node_with_indices(dir.path()).await;
        let leader = Arc::new(HttpLeaderClient::new(vec![node.address.to_string()]));
        let polls = open_polls(&leader, 100);
        wait_until("every poll waits on the shard", || {
            registered_waits(&node) == 100
        })
        .await;
        // The followers go away: their requests (and connections) are dropped mid-answer.
        let started = Instant::now();
        for poll in &polls {
            poll.abort();
        }
        for poll in polls {
            assert!(poll.await.unwrap_err().is_cancelled());
        }
        drop(leader);
        wait_until("the abandoned polls are unregistered", || {
            registered_waits(&node) == 0
        })
        .await;
        let unregistered = started.elapsed();
        assert!(
            unregistered < PROMPTLY,
            "abandoned polls were unregistered after {unregistered:?}"
        );
        node.stop().await;
    });
}
