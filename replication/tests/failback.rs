//! Failover by promotion and failback by operations (`FollowerIndices::promote`, then
//! `FollowerIndices::failback` on the old leader), two clusters in this process: the old
//! leader ends as a follower of the promoted index, holding the same documents and history
//! from the shared point on; the writes it acknowledged and never shipped are exactly the
//! divergent file's; and the failback is refused for an index the promoted one never followed
//! and for a history that diverged below the shared point.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::open_followers;
use serde_json::{json, Value};
use tandem_engine::index::Index;
use tandem_engine::indices::Indices;
use tandem_engine::shard::{DeleteRequest, IndexRequest, WriteRequest};
use tandem_engine::units::TimeValue;
use tandem_engine::SeqNo;
use tandem_recovery::in_process::InProcessLeaderClient;
use tandem_recovery::source::{RecoverySource, RecoverySourceSettings};
use tandem_replication::error::CcrError;
use tandem_replication::follower_indices::{
    FailbackRequest, FollowRequest, FollowerIndices, PromoteRequest,
    DEFAULT_PROMOTION_RETENTION_PERIOD,
};
use tandem_replication::params::FollowParameters;
use tandem_replication::remote::RemoteClusters;

const WAIT: Duration = Duration::from_secs(60);

struct Cluster {
    name: String,
    dir: std::path::PathBuf,
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
            dir,
            indices,
            remotes,
            followers,
        }
    }

    /// Lets this cluster reach `other`'s indices, whatever they become, as `other.name`.
    fn connect(&self, other: &Cluster) {
        let client = InProcessLeaderClient::over_indices(
            other.indices.clone(),
            RecoverySource::new(RecoverySourceSettings::default()),
        );
        self.remotes.set(other.name.clone(), Arc::new(client));
    }

    fn index(&self, name: &str) -> Arc<Index> {
        self.indices.get(name).unwrap()
    }

    async fn promote(&self, name: &str) -> tandem_replication::follower_indices::PromoteResponse {
        self.followers
            .promote(PromoteRequest {
                follower_index: name.to_string(),
                retention_period: DEFAULT_PROMOTION_RETENTION_PERIOD,
            })
            .await
            .unwrap()
    }

    async fn failback(
        &self,
        index: &str,
        from: &Cluster,
        leader_index: &str,
    ) -> Result<tandem_replication::follower_indices::FailbackResponse, CcrError> {
        self.failback_with(index, from, leader_index, false).await
    }

    async fn failback_with(
        &self,
        index: &str,
        from: &Cluster,
        leader_index: &str,
        allow_full_recovery: bool,
    ) -> Result<tandem_replication::follower_indices::FailbackResponse, CcrError> {
        self.followers
            .failback(FailbackRequest {
                index: index.to_string(),
                remote_cluster: from.name.clone(),
                leader_index: leader_index.to_string(),
                parameters: parameters(),
                allow_full_recovery,
            })
            .await
    }
}

/// Clusters A and B in `root`, each reaching the other.
async fn connected_pair(root: &Path) -> (Cluster, Cluster) {
    let a = Cluster::start(root, "cluster-a").await;
    let b = Cluster::start(root, "cluster-b").await;
    a.connect(&b);
    b.connect(&a);
    (a, b)
}

fn parameters() -> FollowParameters {
    FollowParameters {
        read_poll_timeout: Some(TimeValue::from_millis(100)),
        ..FollowParameters::default()
    }
}

/// `followers` (cluster B's) follow cluster A's `logs` as `logs-copy`, recovered at once.
async fn follow_logs(followers: &Arc<FollowerIndices>) {
    followers
        .follow(FollowRequest {
            remote_cluster: "cluster-a".to_string(),
            leader_index: "logs".to_string(),
            follower_index: "logs-copy".to_string(),
            parameters: parameters(),
            wait_for_active_shards: true,
            settings: Value::Null,
        })
        .await
        .unwrap();
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

/// Writes `ids` with `body`; returns them (acknowledged).
fn write_ids(index: &Index, ids: &[String], body: &str) -> Vec<String> {
    let bulk = ids
        .iter()
        .map(|id| {
            WriteRequest::Index(IndexRequest::new(
                id.clone(),
                format!(r#"{{"id":"{id}","body":"{body}"}}"#),
            ))
        })
        .collect();
    for result in index.bulk(bulk) {
        result.expect("write");
    }
    ids.to_vec()
}

fn ids(prefix: &str, range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|n| format!("{prefix}-{n}")).collect()
}

async fn wait_caught_up(leader: &Index, follower: &Index) {
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
}

/// Every live document of `index` by id: (seq_no, version, source).
fn documents(index: &Index) -> BTreeMap<String, (i64, u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for shard in index.shards() {
        let history = shard
            .operations_present(SeqNo(0), shard.max_seq_no(), usize::MAX, usize::MAX)
            .unwrap();
        for op in history {
            if let Some(id) = op.id() {
                if let Some(found) = shard.get(id).unwrap() {
                    out.insert(
                        id.to_string(),
                        (found.seq_no.0, found.version, found.source),
                    );
                }
            }
        }
    }
    out
}

/// One operation as compared: (seq_no, term, op type, id).
type Entry = (i64, u64, String, Option<String>);

/// Each shard's operations from `from[shard]`.
fn history_from(index: &Index, from: &[i64]) -> Vec<Vec<Entry>> {
    index
        .shards()
        .iter()
        .zip(from)
        .map(|(shard, from)| {
            shard
                .changes(SeqNo(*from), shard.max_seq_no(), usize::MAX, usize::MAX)
                .unwrap()
                .iter()
                .map(|op| {
                    (
                        op.seq_no.0,
                        op.primary_term.0,
                        op.op_type().name().to_string(),
                        op.id().map(str::to_string),
                    )
                })
                .collect()
        })
        .collect()
}

/// The ids of the divergent files' lines (each line checked for its fields).
fn divergent_ids(response: &tandem_replication::follower_indices::FailbackResponse) -> Vec<String> {
    let mut out = Vec::new();
    for shard in &response.shards {
        let Some(file) = &shard.divergent_file else {
            assert_eq!(shard.divergent_operations, 0);
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len() as u64, shard.divergent_operations, "{file}");
        for line in lines {
            assert!(
                line["seq_no"].as_i64().unwrap() > shard.shared_seq_no,
                "{line}"
            );
            assert!(
                line["primary_term"].is_u64() && line["version"].is_u64(),
                "{line}"
            );
            let op_type = line["op_type"].as_str().unwrap();
            assert!(op_type == "index" || op_type == "delete", "{line}");
            if op_type == "index" {
                assert!(line["_source"]["body"].is_string(), "{line}");
            }
            out.push(line["_id"].as_str().unwrap().to_string());
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failback_by_operations_exports_what_was_never_shipped_and_converges() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = connected_pair(root.path()).await;
    let logs = create(&a, "logs");
    write_ids(&logs, &ids("doc", 0..200), "written on a");
    follow_logs(&b.followers).await;
    write_ids(&logs, &ids("doc", 150..250), "written on a while followed");
    wait_caught_up(&logs, &b.index("logs-copy")).await;

    // The asynchronous window: b stops receiving (as when a's site goes dark) while a
    // acknowledges new documents, updates and a delete that b never gets.
    b.followers.pause("logs-copy").await.unwrap();
    let mut unshipped = write_ids(&logs, &ids("lost", 0..30), "acknowledged, never shipped");
    unshipped.extend(write_ids(
        &logs,
        &ids("doc", 0..10),
        "updated, never shipped",
    ));
    logs.delete(DeleteRequest::new("doc-20")).unwrap();
    unshipped.push("doc-20".to_string());
    unshipped.sort();

    // Failover: b's copy is promoted and takes writes of its own, some on the same ids.
    let promoted = b.promote("logs-copy").await;
    let points: Vec<i64> = promoted.shards.iter().map(|s| s.local_checkpoint).collect();
    let copy = b.index("logs-copy");
    write_ids(&copy, &ids("doc", 5..15), "written on b after the failover");
    write_ids(
        &copy,
        &ids("new-on-b", 0..20),
        "written on b after the failover",
    );

    // Refused: an index b's copy never followed.
    let other = create(&a, "other");
    drop(other);
    let refused = a.failback("other", &b, "logs-copy").await.unwrap_err();
    assert!(refused.to_string().contains("never followed"), "{refused}");

    // Failback: a's index follows b's copy from the shared point on.
    drop(logs);
    let response = a.failback("logs", &b, "logs-copy").await.unwrap();
    assert_eq!(response.shards.len(), 2);
    for (shard, points) in response.shards.iter().zip(&points) {
        assert_eq!(shard.shared_seq_no, *points);
    }
    assert_eq!(divergent_ids(&response), unshipped);
    let rolled_back: u64 = response
        .shards
        .iter()
        .map(|s| s.rolled_back_operations)
        .sum();
    assert_eq!(rolled_back, unshipped.len() as u64);
    // The updated ids got b's versions at the shared point back before following.
    let restored: u64 = response.shards.iter().map(|s| s.restored_documents).sum();
    // doc-0..doc-4 and doc-20; b changed doc-5..doc-9 after the promotion, so their state
    // comes with its operations.
    assert_eq!(restored, 6);

    let logs = a.index("logs");
    assert!(logs.is_follower());
    write_ids(&copy, &ids("doc", 30..40), "written on b while a follows");
    wait_caught_up(&copy, &logs).await;
    assert_eq!(documents(&logs), documents(&copy));
    let from: Vec<i64> = points.iter().map(|point| point + 1).collect();
    assert_eq!(history_from(&logs, &from), history_from(&copy, &from));
    for lost in ids("lost", 0..30) {
        assert!(logs.get(&lost).unwrap().is_none(), "{lost}");
    }
    // The promoted index's leases: the promotion's went, the failed-back follower's holds.
    for shard in copy.shards() {
        let leases = shard.retention_leases();
        assert_eq!(leases.leases.len(), 1, "{:?}", leases.leases.keys());
        assert!(leases.leases.keys().all(|id| id.contains("-following-")));
    }
    // And the old leader no longer holds the promoted index's old follower leases.
    for shard in logs.shards() {
        assert!(shard.retention_leases().leases.is_empty());
    }

    // A -> B -> A -> B: a is promoted in its turn and b fails back to it.
    drop((logs, copy));
    let promoted_a = a.promote("logs").await;
    let a_points: Vec<i64> = promoted_a
        .shards
        .iter()
        .map(|s| s.local_checkpoint)
        .collect();
    write_ids(
        &a.index("logs"),
        &ids("doc", 40..60),
        "written on a after the second failover",
    );
    let back = b.failback("logs-copy", &a, "logs").await.unwrap();
    assert!(back.shards.iter().all(|s| s.divergent_operations == 0));
    let copy = b.index("logs-copy");
    let logs = a.index("logs");
    wait_caught_up(&logs, &copy).await;
    assert_eq!(documents(&logs), documents(&copy));
    let from: Vec<i64> = a_points.iter().map(|point| point + 1).collect();
    assert_eq!(history_from(&logs, &from), history_from(&copy, &from));
    let _ = (&a.dir, &b.dir);
    a.followers.shutdown().await;
    b.followers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failback_is_refused_when_the_history_diverged_below_the_shared_point() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = connected_pair(root.path()).await;
    let logs = create(&a, "logs");
    write_ids(&logs, &ids("doc", 0..100), "before the backup");
    // A backup of a's index directory, taken while it is closed.
    drop(logs);
    a.indices.close_index("logs").unwrap();
    let dir = a
        .indices
        .with_closed_index("logs", |dir, _| Ok(dir.to_path_buf()))
        .unwrap();
    let backup = root.path().join("backup");
    copy_dir(&dir, &backup);
    let logs = a.indices.open_index("logs").unwrap();
    write_ids(&logs, &ids("doc", 100..200), "after the backup");
    follow_logs(&b.followers).await;
    wait_caught_up(&logs, &b.index("logs-copy")).await;
    b.promote("logs-copy").await;

    // a's index is restored from the backup: its history ends before the shared point.
    drop(logs);
    a.indices.close_index("logs").unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(&backup, &dir);
    let logs = a.indices.open_index("logs").unwrap();
    let missing = a.failback("logs", &b, "missing").await.unwrap_err();
    assert_eq!(missing.status(), 404, "{missing}");
    let refused = a.failback("logs", &b, "logs-copy").await.unwrap_err();
    assert!(
        refused.to_string().contains("below the shared point"),
        "{refused}"
    );
    // It takes new writes on the same sequence numbers: now it holds other operations
    // where the promoted index holds the ones it received.
    write_ids(&logs, &ids("other", 0..150), "written after the restore");
    let refused = a.failback("logs", &b, "logs-copy").await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("diverged below the shared point"),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("allow_full_recovery"),
        "{refused}"
    );
    // Nothing changed: the index is open and writable.
    assert!(!logs.is_follower());
    assert!(!a.indices.is_closed("logs").unwrap());

    // Allowed to: what it holds above the last point both provably share is exported, and
    // the promoted index is copied whole.
    drop(logs);
    let response = a
        .failback_with("logs", &b, "logs-copy", true)
        .await
        .unwrap();
    assert!(response.full_recovery);
    let exported = divergent_ids(&response);
    for id in ids("other", 0..150) {
        assert!(exported.binary_search(&id).is_ok(), "{id} was not exported");
    }
    let logs = a.index("logs");
    assert!(logs.is_follower());
    let copy = b.index("logs-copy");
    write_ids(
        &copy,
        &ids("doc", 0..5),
        "written on b after the full recovery",
    );
    wait_caught_up(&copy, &logs).await;
    assert_eq!(documents(&logs), documents(&copy));
    drop((logs, copy));
    a.followers.shutdown().await;
    b.followers.shutdown().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Opens cluster A's indices and follower indices on the simulated disk `storage`, as a
/// restarted node does, reaching cluster B through `remotes`.
async fn open_a_on(
    storage: &tandem_engine::storage::StorageRef,
    remotes: &Arc<RemoteClusters>,
) -> (Arc<Indices>, Arc<FollowerIndices>) {
    let root = Path::new("/cluster-a");
    let indices = Arc::new(Indices::open_on(storage.clone(), &root.join("data")).unwrap());
    let followers = FollowerIndices::open(
        "cluster-a",
        indices.clone(),
        remotes.clone(),
        tandem_recovery::target::RecoverySettings {
            max_bytes_per_sec: 0,
            ..Default::default()
        },
        &root.join("data"),
    )
    .await
    .unwrap();
    (indices, Arc::new(followers))
}

/// The (seq_no, id) of every line of the divergent files a failback answered, read from
/// `storage`.
fn divergent_lines(
    storage: &tandem_engine::storage::StorageRef,
    response: &tandem_replication::follower_indices::FailbackResponse,
) -> Vec<(u32, i64, String)> {
    let mut out = Vec::new();
    for shard in &response.shards {
        let Some(file) = &shard.divergent_file else {
            continue;
        };
        let bytes = storage.read(Path::new(file)).unwrap();
        for line in String::from_utf8(bytes).unwrap().lines() {
            let op: Value = serde_json::from_str(line).unwrap();
            out.push((
                shard.shard,
                op["seq_no"].as_i64().unwrap(),
                op["_id"].as_str().unwrap().to_string(),
            ));
        }
    }
    out.sort();
    out
}

async fn fail_a_back(
    followers: &Arc<FollowerIndices>,
) -> Result<tandem_replication::follower_indices::FailbackResponse, CcrError> {
    followers
        .failback(FailbackRequest {
            index: "logs".to_string(),
            remote_cluster: "cluster-b".to_string(),
            leader_index: "logs-copy".to_string(),
            parameters: parameters(),
            allow_full_recovery: false,
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_during_a_failback_leaves_it_resumable_and_never_open_half_done() {
    use tandem_engine::storage::{CutMode, SimStorage};
    let root = tempfile::tempdir().unwrap();
    let b = Cluster::start(root.path(), "cluster-b").await;
    let a_remotes = Arc::new(RemoteClusters::new());
    a_remotes.set(
        "cluster-b",
        Arc::new(InProcessLeaderClient::over_indices(
            b.indices.clone(),
            RecoverySource::new(RecoverySourceSettings::default()),
        )),
    );
    let disk = SimStorage::new();
    let base = {
        let (a_indices, a_followers) = open_a_on(&disk.as_storage(), &a_remotes).await;
        b.remotes.set(
            "cluster-a",
            Arc::new(InProcessLeaderClient::over_indices(
                a_indices.clone(),
                RecoverySource::new(RecoverySourceSettings::default()),
            )),
        );
        let logs = a_indices
            .create(
                "logs",
                &json!({"number_of_shards": 2}),
                &json!({"properties": {"body": {"type": "text"}}}),
            )
            .unwrap();
        write_ids(&logs, &ids("doc", 0..120), "written on a");
        follow_logs(&b.followers).await;
        wait_caught_up(&logs, &b.index("logs-copy")).await;
        b.followers.pause("logs-copy").await.unwrap();
        write_ids(&logs, &ids("lost", 0..12), "never shipped");
        write_ids(&logs, &ids("doc", 0..6), "updated, never shipped");
        b.promote("logs-copy").await;
        write_ids(&b.index("logs-copy"), &ids("doc", 3..9), "written on b");
        drop(logs);
        a_followers.shutdown().await;
        b.remotes.remove("cluster-a");
        drop((a_indices, a_followers));
        disk.snapshot_after_cut(CutMode::Durable, 0)
    };

    // The run whose every storage call is a cut point: a restart of A, then its failback.
    let recorded = base.snapshot_after_process_crash();
    recorded.record_journal();
    let expected = {
        let storage = recorded.as_storage();
        let (a_indices, a_followers) = open_a_on(&storage, &a_remotes).await;
        let response = fail_a_back(&a_followers).await.unwrap();
        a_followers.shutdown().await;
        drop(a_indices);
        divergent_lines(&storage, &response)
    };
    assert_eq!(expected.len(), 18, "{expected:?}");
    let journal = recorded.take_journal();
    let calls = journal.len();
    let stride = (calls / 200).max(1);
    let offset = (std::process::id() as usize) % stride;
    eprintln!("{calls} storage calls, cut every {stride} from {offset}");
    let replayed = base.snapshot_after_process_crash();
    let mut done = 0;
    let mut seen = BTreeMap::new();
    for cut in (offset..=calls).step_by(stride) {
        replayed.replay(&journal, done..cut);
        done = cut;
        let survivor = replayed.snapshot_after_cut(CutMode::Durable, cut as u64);
        let storage = survivor.as_storage();
        let (a_indices, a_followers) = open_a_on(&storage, &a_remotes).await;
        let failing = a_followers.check_not_failing_back("logs").await.is_err();
        let following = !a_followers
            .info(Some("logs"))
            .await
            .unwrap_or_default()
            .is_empty();
        let closed = a_indices.is_closed("logs").unwrap();
        let state = match (failing, following, closed) {
            // Not started, or its record not durable: the leader as it was.
            (false, false, false) => {
                let logs = a_indices.get("logs").unwrap();
                assert!(!logs.is_follower(), "cut {cut}");
                assert!(logs.get("lost-3").unwrap().is_some(), "cut {cut}");
                "not started"
            }
            // Under way: closed, whatever was rolled back.
            (true, _, true) => "closed, resumable",
            (false, true, false) => "done",
            other => panic!("cut {cut}: failing back, following, closed = {other:?}"),
        };
        *seen.entry(state).or_insert(0) += 1;
        if state != "done" {
            let response = fail_a_back(&a_followers).await.unwrap_or_else(|error| {
                panic!("cut {cut} ({state}): the failback did not resume: {error}")
            });
            // Every shard's divergent file holds the same operations as the recorded run's.
            assert_eq!(
                divergent_lines(&storage, &response),
                expected,
                "cut {cut} ({state})"
            );
        }
        let logs = a_indices.get("logs").unwrap();
        assert!(logs.is_follower(), "cut {cut}");
        wait_caught_up(&b.index("logs-copy"), &logs).await;
        assert_eq!(
            documents(&logs),
            documents(&b.index("logs-copy")),
            "cut {cut}"
        );
        drop(logs);
        a_followers.shutdown().await;
    }
    eprintln!("states after the cuts: {seen:?}");
    assert!(seen.len() >= 3, "{seen:?}");
}
