//! A follower replicating over HTTP through a TCP fault proxy: a black hole, a half-open
//! connection, a slow drip of one byte per second, resets, refused connections and answers cut
//! in the middle of a frame. A connection that stops delivering bytes is noticed within 5 s
//! (counted as a failed read with a read exception), replication resumes within 10 s of the
//! network healing, and every run ends with the leader's documents and history on the
//! follower.
//!
//! The follow's poll timeout is 30 s, so noticing a dead connection cannot come from the long
//! poll ending. Each test prints its detection and resume times (`--nocapture` shows them).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::LeaderServer;
use serde_json::json;
use tandem_engine::index::Index;
use tandem_engine::indices::Indices;
use tandem_engine::shard::{IndexRequest, WriteRequest};
use tandem_engine::{SeqNo, ShardEngine};
use tandem_recovery::RecoverySettings;
use tandem_replication::follower_indices::{FollowRequest, FollowerIndices};
use tandem_replication::params::FollowParameters;
use tandem_replication::remote::RemoteClusters;
use tandem_replication::stats::ShardFollowStats;
use tandem_testkit::fault_proxy::{Fault, FaultProxy};
use tandem_transport::HttpLeaderClient;

/// A dead connection must be noticed this soon after it dies.
const DETECTED_WITHIN: Duration = Duration::from_secs(5);
/// Replication must resume (the follower holds every operation) this soon after a heal.
const RESUMED_WITHIN: Duration = Duration::from_secs(10);
/// How long each fault lasts: past the detection bound, so the fault is noticed while it
/// lasts.
const FAULT_LASTS: Duration = Duration::from_secs(6);
/// The follow's long-poll timeout: far longer than the detection bound.
const READ_POLL_TIMEOUT_MILLIS: u64 = 30_000;
/// Documents ids cycle over this many (later writes update earlier documents).
const IDS: u64 = 40;

/// A leader served over HTTP, a fault proxy in front of it, and a follower index following it
/// through the proxy.
struct Following {
    leader: LeaderServer,
    leader_index: Arc<Index>,
    proxy: FaultProxy,
    follower_indices: Arc<Indices>,
    followers: Arc<FollowerIndices>,
    written: u64,
}

impl Following {
    async fn start(dir: &Path) -> Following {
        let leader = LeaderServer::start(&dir.join("leader")).await;
        let leader_index = leader
            .indices
            .create(
                "logs",
                &json!({"index": {"number_of_shards": 1}}),
                &json!({}),
            )
            .expect("create the leader index");
        let proxy = FaultProxy::start(leader.address).await;
        let follower_indices =
            Arc::new(Indices::open(&dir.join("follower")).expect("open the follower"));
        let remotes = Arc::new(RemoteClusters::new());
        remotes.set(
            "leader",
            Arc::new(HttpLeaderClient::new(vec![proxy.address.to_string()])),
        );
        let followers = Arc::new(
            FollowerIndices::open(
                "follower",
                follower_indices.clone(),
                remotes,
                RecoverySettings::default(),
                &dir.join("follower-state"),
            )
            .await
            .expect("open the follower indices"),
        );
        let mut following = Following {
            leader,
            leader_index,
            proxy,
            follower_indices,
            followers,
            written: 0,
        };
        following.write(100);
        following
            .followers
            .follow(FollowRequest {
                remote_cluster: "leader".to_string(),
                leader_index: "logs".to_string(),
                follower_index: "logs-copy".to_string(),
                parameters: FollowParameters {
                    read_poll_timeout: Some(tandem_engine::units::TimeValue::from_millis(
                        READ_POLL_TIMEOUT_MILLIS,
                    )),
                    ..FollowParameters::default()
                },
                wait_for_active_shards: true,
                settings: serde_json::Value::Null,
            })
            .await
            .expect("follow");
        following.write(100);
        let caught_up = following.wait_caught_up(RESUMED_WITHIN).await;
        assert!(caught_up.is_some(), "the follower never caught up");
        following
    }

    /// Writes `count` documents on the leader (updates of earlier ones as ids cycle), each with
    /// a distinct body so that frames do not compress to nothing.
    fn write(&mut self, count: u64) {
        let bulk = (self.written..self.written + count)
            .map(|n| {
                WriteRequest::Index(IndexRequest::new(
                    format!("doc-{}", n % IDS),
                    json!({"n": n, "body": format!("{n:x}-{}", "payload ".repeat((n % 7) as usize + 3))})
                        .to_string(),
                ))
            })
            .collect();
        for result in self.leader_index.bulk(bulk) {
            result.expect("leader write");
        }
        self.written += count;
    }

    fn leader_shard(&self) -> &ShardEngine {
        &self.leader_index.shards()[0]
    }

    fn follower_index(&self) -> Arc<Index> {
        self.follower_indices
            .get("logs-copy")
            .expect("the follower index")
    }

    async fn stats(&self) -> ShardFollowStats {
        let mut indices = self
            .followers
            .stats(Some("logs-copy"))
            .await
            .expect("stats");
        assert_eq!(indices.len(), 1);
        indices.remove(0).shards.remove(0)
    }

    /// Waits until the follower holds every operation of the leader; returns how long it took,
    /// or `None` past `within`.
    async fn wait_caught_up(&self, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let follower = self.follower_index();
        while started.elapsed() < within {
            let target = self.leader_shard().global_checkpoint();
            if follower.shards()[0].global_checkpoint() >= target {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The leader and the follower hold the same documents and the same history.
    fn assert_identical(&self) {
        let follower = self.follower_index();
        assert_eq!(
            history(self.leader_shard()),
            history(&follower.shards()[0]),
            "histories differ"
        );
        for n in 0..IDS {
            let id = format!("doc-{n}");
            let leader = self.leader_index.get(&id).expect("leader get");
            let copy = follower.get(&id).expect("follower get");
            assert_eq!(
                leader.map(|d| (d.seq_no, d.version, d.source)),
                copy.map(|d| (d.seq_no, d.version, d.source)),
                "document {id} differs"
            );
        }
    }

    async fn stop(self) {
        self.followers.shutdown().await;
        drop(self.proxy);
        self.leader.stop().await;
    }
}

type History = Vec<(i64, u64, u64, String, Option<String>, Option<Vec<u8>>)>;

fn history(shard: &ShardEngine) -> History {
    let max = shard.max_seq_no();
    let mut out = History::new();
    let mut from = 0;
    while from <= max.0 {
        let batch = shard
            .changes(SeqNo(from), max, 1000, usize::MAX)
            .expect("changes");
        assert!(!batch.is_empty(), "history stops at {from}");
        for operation in batch {
            from = operation.seq_no.0 + 1;
            out.push((
                operation.seq_no.0,
                operation.primary_term.0,
                operation.version,
                operation.op_type().name().to_string(),
                operation.id().map(str::to_string),
                operation.source().map(<[u8]>::to_vec),
            ));
        }
    }
    out
}

/// What a fault did to replication.
#[derive(Debug)]
struct Timings {
    /// From the fault to the first failed read, if one failed while it lasted.
    detected: Option<Duration>,
    /// From the heal to the follower holding every operation.
    resumed: Duration,
    /// The first read exception seen.
    exception: Option<String>,
}

/// Follows through the proxy, applies `fault` for [`FAULT_LASTS`] while the leader keeps
/// writing, heals, and checks that the follower catches up within [`RESUMED_WITHIN`] and ends
/// identical to the leader.
async fn survive(fault: Fault) -> Timings {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut following = Following::start(dir.path()).await;
    // Caught up: the follower's read in flight is a long poll.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let failed_before = following.stats().await.failed_read_requests;
    following.proxy.set(fault);
    let started = Instant::now();
    let mut detected = None;
    let mut exception = None;
    let mut next_write = Instant::now() + Duration::from_millis(500);
    while started.elapsed() < FAULT_LASTS {
        if Instant::now() >= next_write {
            following.write(50);
            next_write += Duration::from_millis(500);
        }
        if detected.is_none() {
            let stats = following.stats().await;
            if stats.failed_read_requests > failed_before {
                detected = Some(started.elapsed());
                assert!(
                    !stats.read_exceptions.is_empty(),
                    "a failed read without a read exception: {stats:?}"
                );
                exception = Some(stats.read_exceptions[0].exception.reason.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    following.proxy.heal();
    following.write(50);
    let resumed = following.wait_caught_up(RESUMED_WITHIN).await;
    let stats = following.stats().await;
    let resumed = resumed.unwrap_or_else(|| {
        panic!("replication did not resume within {RESUMED_WITHIN:?} after {fault:?} healed: {stats:?}")
    });
    assert!(stats.fatal_exception.is_none(), "{stats:?}");
    following.assert_identical();
    following.stop().await;
    let timings = Timings {
        detected,
        resumed,
        exception,
    };
    println!("{fault:?}: {timings:?}");
    timings
}

fn assert_detected_in_time(fault: &str, timings: &Timings) {
    let detected = timings
        .detected
        .unwrap_or_else(|| panic!("{fault} was never noticed: {timings:?}"));
    assert!(
        detected <= DETECTED_WITHIN,
        "{fault} noticed after {detected:?}"
    );
    assert!(timings.resumed <= RESUMED_WITHIN, "{timings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_is_noticed_in_seconds_and_replication_resumes_after_it_heals() {
    let timings = survive(Fault::BlackHole).await;
    assert_detected_in_time("a black hole", &timings);
    let reason = timings.exception.unwrap_or_default();
    assert!(reason.contains("no answer from the leader"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_noticed_in_seconds() {
    let timings = survive(Fault::HalfOpen).await;
    assert_detected_in_time("a half-open connection", &timings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_drip_is_noticed_and_replication_resumes_after_it_heals() {
    let timings = survive(Fault::Drip(Duration::from_secs(1))).await;
    assert_detected_in_time("a slow drip", &timings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connections_are_retried_until_the_network_heals() {
    let timings = survive(Fault::Reset).await;
    assert_detected_in_time("a reset", &timings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_retried_until_the_leader_listens_again() {
    let timings = survive(Fault::Refused).await;
    assert_detected_in_time("refused connections", &timings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_cut_in_the_middle_of_a_frame_are_read_again() {
    let timings = survive(Fault::CutAfter(300)).await;
    assert_detected_in_time("a cut answer", &timings);
}
