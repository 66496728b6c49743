//! What must hold at the end of the soak, read from the two processes over HTTP: the follower's
//! global checkpoint reaches the leader's max_seq_no on every shard (within a deadline); both
//! shards' histories are the same operation for operation (read through the transport's
//! `shard_changes`); both indices hold the same documents, which are the writers' model and
//! what the history says (ids and `_source` of every document by searching bucket by bucket;
//! `_version`, `_seq_no` and `_primary_term` by getting each document, or a seeded sample of
//! them past [`GET_ALL_UP_TO`]); and `_ccr/stats` shows no fatal exception.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::{json, Value};
use tandem_engine::shard::ChangesRequest;
use tandem_engine::{Operation, OperationKind, SeqNo};
use tandem_recovery::leader_api::{LeaderClient, ShardChangesRequest, ShardId};
use tandem_transport::HttpLeaderClient;

use crate::common::EsClient;
use crate::ingest::{clip, BUCKETS};
use crate::{FOLLOWER_INDEX, LEADER_INDEX, SHARDS};

/// Every document is fetched one by one up to this many; past it, a seeded sample this big.
pub const GET_ALL_UP_TO: usize = 20_000;
/// Operations per history read.
const HISTORY_BATCH_OPERATIONS: usize = 1000;
/// Bytes per history read.
const HISTORY_BATCH_BYTES: usize = 8 << 20;
/// Concurrent `GET`s while comparing documents.
const GET_CONCURRENCY: usize = 8;

/// A document as the leader's history says it is: `(seq_no, primary_term, version, _source)`.
pub type DocumentState = (i64, u64, u64, Value);

/// A read of `index` shard `shard` from `from`, answered at once.
fn changes_request(index: &str, shard: u32, from: i64) -> ShardChangesRequest {
    ShardChangesRequest {
        shard: ShardId::new(index, shard),
        changes: ChangesRequest {
            from_seq_no: SeqNo(from),
            max_operation_count: HISTORY_BATCH_OPERATIONS,
            max_batch_size: HISTORY_BATCH_BYTES,
            poll_timeout: Duration::ZERO,
            expected_history_uuid: None,
        },
    }
}

/// `(global_checkpoint, max_seq_no)` of `index` shard `shard`.
async fn checkpoints(
    client: &HttpLeaderClient,
    index: &str,
    shard: u32,
) -> Result<(i64, i64), String> {
    let response = client
        .shard_changes(changes_request(index, shard, i64::MAX / 2))
        .await
        .map_err(|error| format!("checkpoints of {index}[{shard}]: {error}"))?;
    Ok((
        response.changes.global_checkpoint.0,
        response.changes.max_seq_no.0,
    ))
}

/// Waits until the follower's global checkpoint reaches the leader's max_seq_no on every
/// shard; returns the leader's max_seq_no per shard, or what was last seen past `within`.
pub async fn wait_converged(
    leader: &HttpLeaderClient,
    follower: &HttpLeaderClient,
    within: Duration,
) -> Result<Vec<i64>, String> {
    let mut targets = Vec::new();
    for shard in 0..SHARDS {
        let (global_checkpoint, max_seq_no) = checkpoints(leader, LEADER_INDEX, shard).await?;
        if global_checkpoint != max_seq_no {
            return Err(format!(
                "leader shard {shard}: global checkpoint {global_checkpoint} behind max_seq_no {max_seq_no} with writes stopped"
            ));
        }
        targets.push(max_seq_no);
    }
    let started = Instant::now();
    loop {
        let mut seen = Vec::new();
        for shard in 0..SHARDS {
            seen.push(checkpoints(follower, FOLLOWER_INDEX, shard).await);
        }
        let caught_up = seen
            .iter()
            .zip(&targets)
            .all(|(seen, target)| matches!(seen, Ok((checkpoint, _)) if checkpoint >= target));
        if caught_up {
            return Ok(targets);
        }
        if started.elapsed() > within {
            return Err(format!(
                "the follower did not reach the leader's max_seq_no {targets:?} within {within:?}: (global checkpoint, max_seq_no) per shard {seen:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An operation as compared: `(seq_no, primary_term, version, op type, id, _source)`.
fn comparable(operation: &Operation) -> (i64, u64, u64, &'static str, Option<&str>, Option<&[u8]>) {
    (
        operation.seq_no.0,
        operation.primary_term.0,
        operation.version,
        operation.op_type().name(),
        operation.id(),
        operation.source(),
    )
}

fn describe(operation: &Operation) -> String {
    let (seq_no, term, version, op_type, id, source) = comparable(operation);
    let source = source.map(|bytes| clip(&String::from_utf8_lossy(bytes)));
    format!("seq_no {seq_no} term {term} version {version} {op_type} {id:?} {source:?}")
}

/// Compares the histories of every shard, 0..=max_seq_no, streaming both sides; returns the
/// differences and the documents the leader's history leaves (the last operation of each id).
pub async fn compare_histories(
    leader: &HttpLeaderClient,
    follower: &HttpLeaderClient,
    max_seq_nos: &[i64],
) -> (Vec<String>, BTreeMap<String, DocumentState>) {
    let mut problems = Vec::new();
    let mut documents = BTreeMap::new();
    for (shard, &max_seq_no) in (0..SHARDS).zip(max_seq_nos) {
        match follower_max_seq_no(follower, shard).await {
            Ok(follower_max) if follower_max == max_seq_no => {}
            Ok(follower_max) => problems.push(format!(
                "shard {shard}: follower max_seq_no {follower_max}, leader {max_seq_no}"
            )),
            Err(error) => problems.push(error),
        }
        if let Err(problem) =
            compare_shard_history(leader, follower, shard, max_seq_no, &mut documents).await
        {
            problems.push(problem);
        }
    }
    (problems, documents)
}

async fn follower_max_seq_no(follower: &HttpLeaderClient, shard: u32) -> Result<i64, String> {
    Ok(checkpoints(follower, FOLLOWER_INDEX, shard).await?.1)
}

async fn compare_shard_history(
    leader: &HttpLeaderClient,
    follower: &HttpLeaderClient,
    shard: u32,
    max_seq_no: i64,
    documents: &mut BTreeMap<String, DocumentState>,
) -> Result<(), String> {
    let mut from = 0;
    while from <= max_seq_no {
        let on_leader = read_history(leader, LEADER_INDEX, shard, from).await?;
        let on_follower = read_history(follower, FOLLOWER_INDEX, shard, from).await?;
        let common = on_leader.len().min(on_follower.len());
        if common == 0 {
            return Err(format!(
                "shard {shard}: history stops at {from} (leader {} operations, follower {})",
                on_leader.len(),
                on_follower.len()
            ));
        }
        for (leader_operation, follower_operation) in on_leader.iter().zip(&on_follower) {
            if leader_operation.seq_no.0 != from {
                return Err(format!(
                    "shard {shard}: the leader's history is not contiguous at {from}: {}",
                    describe(leader_operation)
                ));
            }
            if comparable(leader_operation) != comparable(follower_operation) {
                return Err(format!(
                    "shard {shard}: histories differ at seq_no {from}: leader {}, follower {}",
                    describe(leader_operation),
                    describe(follower_operation)
                ));
            }
            apply(documents, leader_operation)?;
            from += 1;
        }
    }
    Ok(())
}

/// The operations of `index` shard `shard` from `from` (one read).
async fn read_history(
    client: &HttpLeaderClient,
    index: &str,
    shard: u32,
    from: i64,
) -> Result<Vec<tandem_engine::SharedOperation>, String> {
    client
        .shard_changes(changes_request(index, shard, from))
        .await
        .map(|response| response.changes.operations)
        .map_err(|error| format!("history of {index}[{shard}] at {from}: {error}"))
}

/// The document state after `operation`.
fn apply(
    documents: &mut BTreeMap<String, DocumentState>,
    operation: &Operation,
) -> Result<(), String> {
    match &operation.kind {
        OperationKind::Index { id, source } => {
            let source: Value = serde_json::from_slice(source).map_err(|error| {
                format!(
                    "a source in the history is not JSON ({error}): {}",
                    describe(operation)
                )
            })?;
            documents.insert(
                id.clone(),
                (
                    operation.seq_no.0,
                    operation.primary_term.0,
                    operation.version,
                    source,
                ),
            );
        }
        OperationKind::Delete { id } => {
            documents.remove(id);
        }
        OperationKind::NoOp { .. } => {}
    }
    Ok(())
}

/// Every document of `index` by id with its `_source`, read by searching bucket by bucket
/// (each search is checked to return all its hits).
async fn all_documents(client: &EsClient, index: &str) -> Result<BTreeMap<String, Value>, String> {
    let refreshed = client.post_empty(&format!("/{index}/_refresh")).await;
    if refreshed.status != 200 {
        return Err(format!("refresh {index}: {}", clip(&refreshed.text)));
    }
    let mut documents = BTreeMap::new();
    for bucket in 0..BUCKETS {
        let answer = client
            .post(
                &format!("/{index}/_search"),
                json!({
                    "query": {"term": {"bucket": format!("b{bucket}")}},
                    "size": 10_000,
                    "track_total_hits": true,
                }),
            )
            .await;
        if answer.status != 200 {
            return Err(format!(
                "search {index} bucket {bucket}: {}",
                clip(&answer.text)
            ));
        }
        let hits = answer.body["hits"]["hits"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let total = &answer.body["hits"]["total"];
        if total["relation"] != "eq" || total["value"].as_u64() != Some(hits.len() as u64) {
            return Err(format!(
                "search {index} bucket {bucket}: {} hits of {total}",
                hits.len()
            ));
        }
        for hit in hits {
            let id = hit["_id"].as_str().unwrap_or_default().to_string();
            if documents
                .insert(id.clone(), hit["_source"].clone())
                .is_some()
            {
                return Err(format!("{index}: document {id} found twice"));
            }
        }
    }
    Ok(documents)
}

/// Differences between two maps of documents, `left` and `right` named as given.
fn differences(
    (left_name, left): (&str, &BTreeMap<String, Value>),
    (right_name, right): (&str, &BTreeMap<String, Value>),
) -> Vec<String> {
    let mut found = Vec::new();
    let ids: HashSet<&String> = left.keys().chain(right.keys()).collect();
    let mut ids: Vec<&String> = ids.into_iter().collect();
    ids.sort();
    for id in ids {
        let (on_left, on_right) = (left.get(id), right.get(id));
        if on_left != on_right {
            found.push(format!(
                "document {id}: {left_name} {}, {right_name} {}",
                clip(&format!("{on_left:?}")),
                clip(&format!("{on_right:?}"))
            ));
        }
    }
    found
}

/// What is compared, with a description of the differences if there are any.
pub struct DocumentsCompared {
    /// Documents on the leader.
    pub count: usize,
    /// Documents fetched one by one on each side.
    pub fetched: usize,
    /// What differs (empty when everything matches).
    pub problems: Vec<String>,
}

/// Compares the documents of both sides with each other, with the writers' `model` and with
/// the `history` of the leader.
pub async fn compare_documents(
    leader: &EsClient,
    follower: &EsClient,
    model: &BTreeMap<String, Value>,
    history: &BTreeMap<String, DocumentState>,
    rng: &mut StdRng,
) -> DocumentsCompared {
    let mut problems = Vec::new();
    let (on_leader, on_follower) = match (
        all_documents(leader, LEADER_INDEX).await,
        all_documents(follower, FOLLOWER_INDEX).await,
    ) {
        (Ok(on_leader), Ok(on_follower)) => (on_leader, on_follower),
        (leader_read, follower_read) => {
            problems.extend(leader_read.err());
            problems.extend(follower_read.err());
            return DocumentsCompared {
                count: 0,
                fetched: 0,
                problems,
            };
        }
    };
    let from_history: BTreeMap<String, Value> = history
        .iter()
        .map(|(id, (_, _, _, source))| (id.clone(), source.clone()))
        .collect();
    problems.extend(differences(
        ("leader", &on_leader),
        ("follower", &on_follower),
    ));
    problems.extend(differences(
        ("leader", &on_leader),
        ("writers' model", model),
    ));
    problems.extend(differences(
        ("leader", &on_leader),
        ("history", &from_history),
    ));
    let ids: Vec<String> = on_leader.keys().cloned().collect();
    let fetched: Vec<String> = if ids.len() <= GET_ALL_UP_TO {
        ids.clone()
    } else {
        ids.choose_multiple(rng, GET_ALL_UP_TO).cloned().collect()
    };
    problems.extend(compare_fetched(leader, follower, &fetched, history).await);
    DocumentsCompared {
        count: on_leader.len(),
        fetched: fetched.len(),
        problems,
    }
}

/// Gets each of `ids` from both sides and compares `_seq_no`, `_version`, `_primary_term` and
/// `_source` with each other and with the history.
async fn compare_fetched(
    leader: &EsClient,
    follower: &EsClient,
    ids: &[String],
    history: &BTreeMap<String, DocumentState>,
) -> Vec<String> {
    let history = Arc::new(history.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for part in ids.chunks(ids.len().div_ceil(GET_CONCURRENCY).max(1)) {
        let (leader, follower, history) = (leader.clone(), follower.clone(), history.clone());
        let part = part.to_vec();
        tasks.spawn(async move {
            let mut problems = Vec::new();
            for id in part {
                let expected = history
                    .get(&id)
                    .map(|(seq_no, term, version, source)| {
                        (Some(*seq_no), Some(*term), Some(*version), source.clone())
                    });
                let leader_state = get(&leader, LEADER_INDEX, &id).await;
                let follower_state = get(&follower, FOLLOWER_INDEX, &id).await;
                if leader_state != follower_state || leader_state != expected {
                    problems.push(format!(
                        "document {id} (seq_no, term, version, source): leader {}, follower {}, history {}",
                        clip(&format!("{leader_state:?}")),
                        clip(&format!("{follower_state:?}")),
                        clip(&format!("{expected:?}"))
                    ));
                }
            }
            problems
        });
    }
    let mut problems = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(found) => problems.extend(found),
            Err(error) => problems.push(format!("a GET task failed: {error}")),
        }
    }
    problems
}

type Fetched = Option<(Option<i64>, Option<u64>, Option<u64>, Value)>;

async fn get(client: &EsClient, index: &str, id: &str) -> Fetched {
    let answer = client.get(&format!("/{index}/_doc/{id}")).await;
    (answer.body["found"] == true).then(|| {
        (
            answer.body["_seq_no"].as_i64(),
            answer.body["_primary_term"].as_u64(),
            answer.body["_version"].as_u64(),
            answer.body["_source"].clone(),
        )
    })
}

/// What `_ccr/stats` says of the follower index at the end.
#[derive(Debug, Default)]
pub struct FollowStats {
    /// Reads that failed (faults noticed).
    pub failed_read_requests: u64,
    /// Fatal exceptions, by shard (must stay empty).
    pub fatal_exceptions: Vec<String>,
}

/// Reads `_ccr/stats` of the follower index.
pub async fn follow_stats(follower: &EsClient) -> Result<FollowStats, String> {
    let answer = follower.get(&format!("/{FOLLOWER_INDEX}/_ccr/stats")).await;
    if answer.status != 200 {
        return Err(format!("_ccr/stats: {}", clip(&answer.text)));
    }
    let mut stats = FollowStats::default();
    let indices = answer.body["indices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let shards: Vec<Value> = indices
        .iter()
        .flat_map(|index| index["shards"].as_array().cloned().unwrap_or_default())
        .collect();
    if shards.len() != SHARDS as usize {
        return Err(format!(
            "_ccr/stats lists {} shards: {}",
            shards.len(),
            clip(&answer.text)
        ));
    }
    for shard in shards {
        stats.failed_read_requests += shard["failed_read_requests"].as_u64().unwrap_or(0);
        if !shard["fatal_exception"].is_null() {
            stats.fatal_exceptions.push(format!(
                "shard {}: {}",
                shard["shard_id"], shard["fatal_exception"]
            ));
        }
    }
    Ok(stats)
}
