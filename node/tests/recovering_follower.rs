//! A follower index exists from the moment its follow is accepted: while its remote recovery
//! runs, `_ccr/info`, `_ccr/stats` and `_recovery` show it recovering, pause and close answer
//! why they cannot act, and `DELETE` cancels the recovery (also with a chunk read in flight)
//! and removes its files and its leases on the leader. A recovery that fails leaves the index
//! with its reason in `_ccr/stats` and `_ccr/info`, and in the follow response when the follow
//! waited for it. Two nodes in this process; the follower reaches the leader through a
//! wrapper of the in-process client that stalls or lies.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::EsClient;
use serde_json::{json, Value};
use tandem_engine::shard::{ChecksumKind, CommitFileInfo};
use tandem_node::server::RunningNode;
use tandem_recovery::{
    FileChunk, ForwardingLeaderClient, InProcessLeaderClient, LeaderClient, LeaderFuture,
    OpenRecoverySessionRequest, ReadFileChunkRequest, RecoverySessionInfo,
};

/// Longest wait for a state to show.
const WITHIN: Duration = Duration::from_secs(30);
/// Longest a delete may take to stop a recovery.
const CANCEL_WITHIN: Duration = Duration::from_secs(5);

/// The leader client, except that chunk reads never answer (a leader that went silent in the
/// middle of a copy) while `stall` is set, and that `extra_bytes` > 0 adds a file of that
/// length to every commit.
struct WrappedLeader {
    inner: InProcessLeaderClient,
    stall: bool,
    extra_bytes: u64,
    chunk_reads: AtomicU64,
}

impl ForwardingLeaderClient for WrappedLeader {
    fn inner(&self) -> &dyn LeaderClient {
        &self.inner
    }

    fn open_recovery_session(
        &self,
        request: OpenRecoverySessionRequest,
    ) -> LeaderFuture<'_, RecoverySessionInfo> {
        Box::pin(async move {
            let mut info = self.inner.open_recovery_session(request).await?;
            if self.extra_bytes > 0 {
                info.files.insert(
                    0,
                    CommitFileInfo {
                        name: "lie.idx".to_string(),
                        length: self.extra_bytes,
                        checksum: 0,
                        checksum_kind: ChecksumKind::WholeFile,
                        footer_checksum: None,
                    },
                );
            }
            Ok(info)
        })
    }

    fn read_file_chunk(&self, request: ReadFileChunkRequest) -> LeaderFuture<'_, FileChunk> {
        Box::pin(async move {
            self.chunk_reads.fetch_add(1, Ordering::SeqCst);
            if self.stall {
                std::future::pending::<()>().await;
            }
            self.inner.read_file_chunk(request).await
        })
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    leader: RunningNode,
    follower: RunningNode,
    leader_client: EsClient,
    follower_client: EsClient,
}

async fn cluster() -> Cluster {
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
    let mut ndjson = String::new();
    for n in 0..100 {
        ndjson.push_str(&format!("{{\"index\":{{\"_id\":\"{n}\"}}}}\n"));
        ndjson.push_str(&json!({"total": n}).to_string());
        ndjson.push('\n');
    }
    let bulk = leader_client
        .bulk("/metrics/_bulk?refresh=true", ndjson)
        .await;
    assert_eq!(bulk.status, 200, "{}", bulk.text);
    leader_client.post_empty("/metrics/_flush").await;
    Cluster {
        _dir: dir,
        leader,
        follower,
        leader_client,
        follower_client,
    }
}

impl Cluster {
    fn wrap_leader(&self, stall: bool, extra_bytes: u64) -> Arc<WrappedLeader> {
        let wrapped = Arc::new(WrappedLeader {
            inner: self.leader.node.leader.clone(),
            stall,
            extra_bytes,
            chunk_reads: AtomicU64::new(0),
        });
        self.follower.node.remotes.set("leader", wrapped.clone());
        wrapped
    }

    /// Retention leases of the follower index `follower` on the leader's shards.
    fn follower_leases(&self, follower: &str) -> Vec<String> {
        let index = self.leader.node.indices.get("metrics").unwrap();
        index
            .shards()
            .iter()
            .flat_map(|shard| shard.retention_leases().leases.into_keys())
            .filter(|id| id.contains(&format!("/{follower}/")))
            .collect()
    }

    /// Every file under the follower's index directories.
    fn follower_index_files(&self) -> Vec<String> {
        files_under(&self.follower.node.config.data.join("indices"))
    }
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            found.extend(files_under(&entry.path()));
        } else {
            found.push(entry.path().display().to_string());
        }
    }
    found
}

fn follow_body() -> Value {
    json!({"remote_cluster": "leader", "leader_index": "metrics"})
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < WITHIN, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_follower_during_its_recovery_cancels_it_and_removes_its_files_and_leases() {
    let cluster = cluster().await;
    let stalling = cluster.wrap_leader(true, 0);
    let client = &cluster.follower_client;

    let follow = client.put("/copy/_ccr/follow", follow_body()).await;
    assert_eq!(follow.status, 200, "{}", follow.text);
    assert_eq!(follow.body["follow_index_created"], true);
    wait_until("a chunk read in flight", async || {
        stalling.chunk_reads.load(Ordering::SeqCst) > 0
    })
    .await;
    assert!(!cluster.follower_leases("copy").is_empty());

    // Shown recovering.
    let info = client.get("/copy/_ccr/info").await;
    assert_eq!(info.status, 200, "{}", info.text);
    assert_eq!(
        info.body["follower_indices"][0]["recovering"], true,
        "{}",
        info.text
    );
    let stats = client.get("/copy/_ccr/stats").await;
    assert_eq!(stats.status, 200, "{}", stats.text);
    assert_eq!(stats.body["indices"][0]["index"], "copy", "{}", stats.text);
    assert_eq!(
        stats.body["indices"][0]["shards"].as_array().unwrap().len(),
        2
    );
    let recovery = client.get("/copy/_recovery").await;
    assert_eq!(recovery.status, 200, "{}", recovery.text);
    assert_eq!(
        recovery.body["copy"]["shards"][0]["stage"], "INDEX",
        "{}",
        recovery.text
    );

    // Pause, unfollow and close say why they cannot act.
    for (path, answer) in [
        (
            "/copy/_ccr/pause_follow",
            client.post_empty("/copy/_ccr/pause_follow").await,
        ),
        (
            "/copy/_ccr/unfollow",
            client.post_empty("/copy/_ccr/unfollow").await,
        ),
        ("/copy/_close", client.post_empty("/copy/_close").await),
    ] {
        assert_eq!(answer.status, 400, "{path}: {}", answer.text);
        let reason = answer.body["error"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("still being recovered"), "{path}: {reason}");
    }

    // Delete cancels it, with a chunk read in flight that never answers.
    let started = Instant::now();
    let deleted = client.delete("/copy").await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(deleted.body["acknowledged"], true);
    assert!(started.elapsed() < CANCEL_WITHIN, "{:?}", started.elapsed());
    assert_eq!(cluster.follower_index_files(), Vec::<String>::new());
    assert_eq!(cluster.follower_leases("copy"), Vec::<String>::new());
    for path in ["/copy/_ccr/info", "/copy/_recovery", "/copy"] {
        let answer = client.get(path).await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.text);
    }

    // The name is free: following again (from a leader that answers) completes.
    cluster.wrap_leader(false, 0);
    let follow = client
        .put("/copy/_ccr/follow?wait_for_active_shards=1", follow_body())
        .await;
    assert_eq!(follow.status, 200, "{}", follow.text);
    assert_eq!(follow.body["index_following_started"], true);
    let leader_count = cluster.leader_client.get("/metrics/_count").await;
    client.post_empty("/copy/_refresh").await;
    let count = client.get("/copy/_count").await;
    assert_eq!(
        count.body["count"], leader_count.body["count"],
        "{}",
        count.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_recovery_leaves_the_follower_with_its_reason_in_ccr_stats() {
    let cluster = cluster().await;
    // 16 PiB less one byte: under the commit size limit, past any disk's watermark.
    cluster.wrap_leader(false, (1 << 54) - (1 << 20));
    let client = &cluster.follower_client;

    // Waiting for the shards: the refusal is the follow response.
    let follow = client
        .put(
            "/waited/_ccr/follow?wait_for_active_shards=1",
            follow_body(),
        )
        .await;
    assert_eq!(follow.status, 500, "{}", follow.text);
    let reason = follow.body["error"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cluster.routing.allocation.disk.watermark.high"),
        "{reason}"
    );

    // Not waiting: the follow is accepted, and the reason shows where the user looks.
    let follow = client.put("/copy/_ccr/follow", follow_body()).await;
    assert_eq!(follow.status, 200, "{}", follow.text);
    let mut stats = Value::Null;
    wait_until("the recovery failure in _ccr/stats", async || {
        let answer = client.get("/copy/_ccr/stats").await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        stats = answer.body;
        !stats["indices"][0]["shards"][0]["fatal_exception"].is_null()
    })
    .await;
    let reason = stats["indices"][0]["shards"][0]["fatal_exception"]["reason"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("cluster.routing.allocation.disk.watermark.high"),
        "{reason}"
    );
    let info = client.get("/copy/_ccr/info").await;
    assert_eq!(
        info.body["follower_indices"][0]["fatal_exception"]["reason"], reason,
        "{}",
        info.text
    );
    let all = client.get("/_ccr/stats").await;
    assert!(all.text.contains("watermark"), "{}", all.text);
    let recovery = client.get("/copy/_recovery").await;
    assert_eq!(
        recovery.body["copy"]["shards"][0]["stage"], "FAILED",
        "{}",
        recovery.text
    );
    assert_eq!(cluster.follower_index_files(), Vec::<String>::new());
    wait_until("the leases removed", async || {
        cluster.follower_leases("copy").is_empty() && cluster.follower_leases("waited").is_empty()
    })
    .await;

    // The name stays taken until the index is deleted.
    let again = client.put("/copy/_ccr/follow", follow_body()).await;
    assert_eq!(again.status, 400, "{}", again.text);
    let pause = client.post_empty("/copy/_ccr/pause_follow").await;
    assert_eq!(pause.status, 400, "{}", pause.text);
    assert!(pause.text.contains("failed"), "{}", pause.text);
    let deleted = client.delete("/copy").await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    let gone = client.get("/copy/_ccr/stats").await;
    assert_eq!(gone.status, 404, "{}", gone.text);
    let deleted = client.delete("/waited").await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
}
