//! `POST /{index}/_ccr/verify` and `tandem verify`: a follower that replicated under load,
//! with updates, deletes and network faults, verifies equal while its leader keeps writing; a
//! follower that received one changed operation, or lost one, is told exactly which seq_no and
//! `_id`; a non-follower, a paused follower, a follower still recovering and a seq_no the
//! follower has not processed get clear errors.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_for_count, EsClient};
use serde_json::{json, Value};
use tandem_engine::{Operation, OperationKind};
use tandem_recovery::leader_api::{
    FileChunk, ForwardingLeaderClient, LeaderClient, LeaderFuture, ReadFileChunkRequest,
    ShardChangesRequest, ShardChangesResponse,
};
use tandem_testkit::fault_proxy::{Fault, FaultProxy};
use tandem_transport::HttpLeaderClient;

/// What a [`Tampering`] leader does to one document's operation on its way to the follower.
#[derive(Clone, Copy)]
enum Tamper {
    /// The source arrives changed.
    ChangeSource,
    /// A no-op arrives in its place (the follower's checkpoint still advances).
    Drop,
}

/// A leader whose changes lose or change the operations of the listed (index, id).
struct Tampering {
    inner: Arc<dyn LeaderClient>,
    rules: BTreeMap<(String, String), Tamper>,
}

impl ForwardingLeaderClient for Tampering {
    fn inner(&self) -> &dyn LeaderClient {
        self.inner.as_ref()
    }

    fn shard_changes(
        &self,
        request: ShardChangesRequest,
    ) -> LeaderFuture<'_, ShardChangesResponse> {
        Box::pin(async move {
            let index = request.shard.index.clone();
            let mut response = self.inner.shard_changes(request).await?;
            for operation in &mut response.changes.operations {
                let Some(id) = operation.id() else { continue };
                let Some(rule) = self.rules.get(&(index.clone(), id.to_string())) else {
                    continue;
                };
                let tampered = match rule {
                    Tamper::ChangeSource => Operation {
                        kind: OperationKind::Index {
                            id: id.to_string(),
                            source: br#"{"body":"changed on the way"}"#.to_vec(),
                        },
                        ..(**operation).clone()
                    },
                    Tamper::Drop => Operation {
                        version: 1,
                        kind: OperationKind::NoOp {
                            reason: "lost on the way".into(),
                        },
                        ..(**operation).clone()
                    },
                };
                *operation = Arc::new(tampered);
            }
            Ok(response)
        })
    }
}

/// A leader whose file chunks never come: a follow against it stays recovering.
struct StalledChunks {
    inner: Arc<dyn LeaderClient>,
}

impl ForwardingLeaderClient for StalledChunks {
    fn inner(&self) -> &dyn LeaderClient {
        self.inner.as_ref()
    }

    fn read_file_chunk(&self, _request: ReadFileChunkRequest) -> LeaderFuture<'_, FileChunk> {
        Box::pin(std::future::pending())
    }
}

async fn create(client: &EsClient, index: &str, shards: u32) {
    let created = client
        .put(
            &format!("/{index}"),
            json!({"settings": {"index": {"number_of_shards": shards}}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
}

async fn follow(client: &EsClient, follower: &str, remote: &str, leader: &str) {
    let followed = client
        .put(
            &format!("/{follower}/_ccr/follow?wait_for_active_shards=1"),
            json!({"remote_cluster": remote, "leader_index": leader}),
        )
        .await;
    assert_eq!(followed.status, 200, "{}", followed.text);
}

/// Indexes `count` documents `doc-<n>` from `from`, in one `_bulk`.
async fn index_documents(client: &EsClient, index: &str, from: u64, count: u64) {
    let mut ndjson = String::new();
    for n in from..from + count {
        ndjson
            .push_str(&json!({"index": {"_index": index, "_id": format!("doc-{n}")}}).to_string());
        ndjson.push('\n');
        ndjson.push_str(&json!({"n": n, "body": format!("document {n}")}).to_string());
        ndjson.push('\n');
    }
    let answer = client.bulk("/_bulk", ndjson).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["errors"], false, "{}", answer.text);
}

async fn verify(client: &EsClient, index: &str) -> common::Answer {
    client.post_empty(&format!("/{index}/_ccr/verify")).await
}

/// Runs `tandem verify` against `url`; returns its exit code and its output.
fn verify_command(url: &str, index: &str, extra: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["verify", "--node", url, "--index", index])
        .args(extra)
        .output()
        .expect("run tandem verify");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The leader's `_seq_no` of a document.
async fn seq_no_of(client: &EsClient, index: &str, id: &str) -> i64 {
    let got = client.get(&format!("/{index}/_doc/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    got.body["_seq_no"].as_i64().expect("a _seq_no")
}

/// The one shard of a verify answer that differs.
fn differing_shard(answer: &Value) -> &Value {
    let differing: Vec<&Value> = answer["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .filter(|shard| shard["equal"] == false)
        .collect();
    assert_eq!(differing.len(), 1, "{answer}");
    differing[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_or_lost_operation_is_named_by_seq_no_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let pair = common::in_process_pair(dir.path()).await;
    let rules = BTreeMap::from([
        (("changed".into(), "doc-77".into()), Tamper::ChangeSource),
        (("lost".into(), "doc-151".into()), Tamper::Drop),
    ]);
    pair.follower.node.remotes.set(
        "tampering",
        Arc::new(Tampering {
            inner: Arc::new(pair.leader.node.leader.clone()),
            rules,
        }),
    );
    for index in ["changed", "lost"] {
        create(&pair.leader_client, index, 2).await;
        index_documents(&pair.leader_client, index, 0, 50).await;
        follow(
            &pair.follower_client,
            &format!("{index}-copy"),
            "tampering",
            index,
        )
        .await;
        // Replicated through the changes API (the first 50 came with the recovery).
        index_documents(&pair.leader_client, index, 50, 250).await;
    }
    wait_for_count(&pair.follower_client, "changed-copy", 300).await;
    wait_for_count(&pair.follower_client, "lost-copy", 299).await;

    let answer = verify(&pair.follower_client, "changed-copy").await;
    eprintln!("verify of a changed document: {}", answer.text);
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["equal"], false, "{}", answer.text);
    let shard = differing_shard(&answer.body);
    let difference = &shard["first_difference"];
    let seq_no = seq_no_of(&pair.leader_client, "changed", "doc-77").await;
    assert_eq!(difference["_id"], "doc-77", "{}", answer.text);
    assert_eq!(difference["seq_no"], seq_no, "{}", answer.text);
    assert_eq!(difference["leader"]["kind"], "live", "{}", answer.text);
    assert_eq!(difference["follower"]["_id"], "doc-77", "{}", answer.text);
    assert_ne!(
        difference["leader"]["source_hash"], difference["follower"]["source_hash"],
        "{}",
        answer.text
    );

    let answer = verify(&pair.follower_client, "lost-copy").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let shard = differing_shard(&answer.body);
    let difference = &shard["first_difference"];
    let seq_no = seq_no_of(&pair.leader_client, "lost", "doc-151").await;
    assert_eq!(difference["_id"], "doc-151", "{}", answer.text);
    assert_eq!(difference["seq_no"], seq_no, "{}", answer.text);
    assert_eq!(difference["follower"], Value::Null, "{}", answer.text);
    assert_eq!(
        shard["leader"]["live_docs"].as_u64().unwrap(),
        shard["live_docs"].as_u64().unwrap() + 1
    );

    // `tandem verify` says so with its exit code.
    let (code, stdout, stderr) = verify_command(&pair.follower.url(), "lost-copy", &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("doc-151"), "{stdout}");

    pair.follower.stop().await;
    pair.leader.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_replicating_under_load_and_faults_verifies_equal() {
    let dir = tempfile::tempdir().unwrap();
    let leader = common::start_in_process("leader", dir.path()).await;
    let follower = common::start_in_process("follower", dir.path()).await;
    let proxy = FaultProxy::start(leader.address).await;
    follower.node.remotes.set(
        "leader",
        Arc::new(HttpLeaderClient::new(vec![proxy.address.to_string()])),
    );
    let (leader_client, follower_client) =
        (EsClient::new(&leader.url()), EsClient::new(&follower.url()));
    create(&leader_client, "logs", 2).await;
    index_documents(&leader_client, "logs", 0, 400).await;
    follow(&follower_client, "logs-copy", "leader", "logs").await;

    // A writer that updates, deletes and adds documents until the test ends.
    let writing = Arc::new(AtomicBool::new(true));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (client, writing, written) = (leader_client.clone(), writing.clone(), written.clone());
        tokio::spawn(async move {
            let mut round = 0u64;
            while writing.load(Ordering::Relaxed) {
                let mut ndjson = String::new();
                for n in 0..40 {
                    let id = format!("doc-{}", (round * 37 + n * 11) % 600);
                    if n % 7 == 3 {
                        ndjson.push_str(
                            &json!({"delete": {"_index": "logs", "_id": id}}).to_string(),
                        );
                    } else {
                        ndjson
                            .push_str(&json!({"index": {"_index": "logs", "_id": id}}).to_string());
                        ndjson.push('\n');
                        ndjson.push_str(&json!({"round": round, "n": n}).to_string());
                    }
                    ndjson.push('\n');
                }
                let answer = client.bulk("/_bulk", ndjson).await;
                assert_eq!(answer.status, 200, "{}", answer.text);
                written.fetch_add(40, Ordering::Relaxed);
                round += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Faults between follower and leader while the writes go on.
    for fault in [Fault::Reset, Fault::CutAfter(3000), Fault::BlackHole] {
        tokio::time::sleep(Duration::from_millis(700)).await;
        proxy.set(fault);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        proxy.heal();
    }
    while written.load(Ordering::Relaxed) < 2000 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Verified while the leader keeps writing: equal, every time.
    let mut verified_up_to = Vec::new();
    for _ in 0..3 {
        let answer = verify(&follower_client, "logs-copy").await;
        eprintln!("verify under load: {}", answer.text);
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.body["equal"], true, "{}", answer.text);
        let shards = answer.body["shards"].as_array().expect("shards");
        assert_eq!(shards.len(), 2, "{}", answer.text);
        for shard in shards {
            assert_eq!(shard["equal"], true, "{}", answer.text);
            assert!(
                shard["up_to_seq_no"].as_i64().unwrap() > 0,
                "{}",
                answer.text
            );
            assert!(shard["live_docs"].as_u64().unwrap() > 0, "{}", answer.text);
        }
        verified_up_to.push(shards[0]["up_to_seq_no"].as_i64().unwrap());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        verified_up_to.windows(2).all(|pair| pair[0] <= pair[1]),
        "{verified_up_to:?}"
    );
    // Far below what the follower retains, the changes above it can no longer be told.
    let answer = follower_client
        .post_empty("/logs-copy/_ccr/verify?up_to_seq_no=25")
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(
        answer
            .text
            .contains("no longer holds every operation above up_to_seq_no [25]"),
        "{}",
        answer.text
    );
    // Through `tandem verify`.
    let (code, stdout, stderr) = verify_command(&follower.url(), "logs-copy", &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let printed: Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(printed["equal"], true, "{stdout}");

    // The leader's verify sessions are closed and their leases gone.
    assert_eq!(leader.node.leader.verify_source().open_session_count(), 0);
    let leases = leader_client.get("/logs/_stats?level=shards").await;
    assert!(!leases.text.contains("tandem-verify/"), "{}", leases.text);

    writing.store(false, Ordering::Relaxed);
    writer.await.expect("the writer");
    follower.stop().await;
    leader.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_verified_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let pair = common::in_process_pair(dir.path()).await;
    pair.follower.node.remotes.set(
        "stalled",
        Arc::new(StalledChunks {
            inner: Arc::new(pair.leader.node.leader.clone()),
        }),
    );
    create(&pair.leader_client, "logs", 1).await;
    index_documents(&pair.leader_client, "logs", 0, 20).await;
    pair.leader_client.post_empty("/logs/_flush").await;

    // Not a follower; no such index.
    create(&pair.follower_client, "plain", 1).await;
    let answer = verify(&pair.follower_client, "plain").await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(
        answer
            .text
            .contains("index [plain] is not a follower index"),
        "{}",
        answer.text
    );
    let (code, _, stderr) = verify_command(&pair.follower.url(), "plain", &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not a follower index"), "{stderr}");
    let answer = verify(&pair.follower_client, "missing").await;
    assert_eq!(answer.status, 404, "{}", answer.text);

    // Still recovering.
    let started = pair
        .follower_client
        .put(
            "/stuck/_ccr/follow",
            json!({"remote_cluster": "stalled", "leader_index": "logs"}),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.text);
    let answer = verify(&pair.follower_client, "stuck").await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(
        answer.text.contains("still being recovered"),
        "{}",
        answer.text
    );
    assert_eq!(pair.follower_client.delete("/stuck").await.status, 200);

    // A seq_no the follower has not processed; a paused follower.
    follow(&pair.follower_client, "logs-copy", "leader", "logs").await;
    wait_for_count(&pair.follower_client, "logs-copy", 20).await;
    let answer = pair
        .follower_client
        .post_empty("/logs-copy/_ccr/verify?up_to_seq_no=1000")
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(
        answer
            .text
            .contains("up_to_seq_no [1000] is above the global checkpoint [19]"),
        "{}",
        answer.text
    );
    let answer = pair
        .follower_client
        .post_empty("/logs-copy/_ccr/verify?up_to_seq_no=x")
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    let answer = pair
        .follower_client
        .post_empty("/logs-copy/_ccr/verify?up_to_seq_no=19")
        .await;
    assert_eq!(answer.body["equal"], true, "{}", answer.text);
    assert_eq!(answer.body["shards"][0]["live_docs"], 20, "{}", answer.text);
    let paused = pair
        .follower_client
        .post_empty("/logs-copy/_ccr/pause_follow")
        .await;
    assert_eq!(paused.status, 200, "{}", paused.text);
    let answer = verify(&pair.follower_client, "logs-copy").await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(answer.text.contains("it is paused"), "{}", answer.text);

    pair.follower.stop().await;
    pair.leader.stop().await;
}
