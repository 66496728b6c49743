//! The [`LeaderClient`] conformance suite: one body of checks that every implementation must
//! pass, whatever carries the requests (in process, HTTP).
//!
//! A check receives a [`LeaderFixture`]: the leader cluster's indices (the check creates and
//! writes its own indices there), a *reference* [`InProcessLeaderClient`] serving those indices
//! (sharing the recovery source of the client under test, so a session opened through one is
//! readable through the other), and the client under test. Each check compares what the client
//! under test answers with what the leader holds, and with what the reference answers.
//!
//! Compiled only with the `conformance` feature; test crates instantiate the whole suite with
//! [`leader_client_conformance!`](crate::leader_client_conformance), one `#[tokio::test]` per
//! check. Checks panic on failure (they are test bodies).
//!
//! Test crates also read a leader shard with [`immediate_changes_request`], whatever client
//! they hold.

use std::any::Any;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tandem_engine::index::Index;
use tandem_engine::indices::Indices;
use tandem_engine::shard::{ChangesRequest, DeleteRequest, IndexRequest};
use tandem_engine::{OperationKind, SeqNo};

use crate::in_process::InProcessLeaderClient;
use crate::leader_api::{
    AddRetentionLeaseRequest, CloseRecoverySessionRequest, IndexMetadataRequest, LeaderClient,
    LeaderError, OpenRecoverySessionRequest, ReadFileChunkRequest, RemoveRetentionLeaseRequest,
    RenewRetentionLeaseRequest, ShardChangesRequest, ShardChangesResponse, ShardId,
};
use crate::source::{RecoverySource, RecoverySourceSettings, MAX_CHUNK_BYTES};

/// Longest any single step of a check may take before it is reported as hung.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// What a check runs against.
pub struct LeaderFixture {
    /// The leader cluster's indices.
    pub indices: Arc<Indices>,
    /// An in-process client over `indices`, sharing the recovery source of `client`.
    pub reference: InProcessLeaderClient,
    /// The client under test.
    pub client: Arc<dyn LeaderClient>,
    /// Whatever must live as long as the fixture (temporary directory, server).
    pub guard: Box<dyn Any + Send + Sync>,
}

impl LeaderFixture {
    /// A leader cluster over the data directory `data`, with the in-process client itself as
    /// the client under test. `guard` is kept alive with the fixture.
    pub fn in_process(data: &Path, guard: Box<dyn Any + Send + Sync>) -> LeaderFixture {
        let indices = Arc::new(Indices::open(data).expect("open the leader indices"));
        let source = RecoverySource::new(RecoverySourceSettings::default());
        let reference = InProcessLeaderClient::over_indices(indices.clone(), source);
        LeaderFixture {
            indices,
            client: Arc::new(reference.clone()),
            reference,
            guard,
        }
    }
}

/// Instantiates every check of the suite as a `#[tokio::test]` in the calling test crate.
/// `$fixture` is an async function (no argument) returning a [`LeaderFixture`]; it is called
/// once per check. The calling crate needs `tokio` with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! leader_client_conformance {
    ($fixture:path) => {
        $crate::leader_client_conformance!(@checks $fixture;
            index_metadata_matches_the_leader,
            list_indices_names_every_index_in_order,
            shard_changes_returns_the_history,
            shard_changes_honours_its_limits,
            long_poll_returns_when_a_write_arrives,
            long_poll_times_out_empty,
            shard_changes_refuses_another_history,
            shard_changes_reports_missing_history,
            shard_changes_on_unknown_index_or_shard_fails,
            retention_leases_add_renew_remove,
            recovery_session_serves_the_pinned_files,
            recovery_session_close_is_idempotent_and_final,
            recovery_session_refuses_unknown_files_and_sessions,
            chunk_reads_run_concurrently_beside_a_long_poll,
        );
    };
    (@checks $fixture:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture().await;
                $crate::conformance::$check(&fixture).await;
            }
        )*
    };
}

/// Runs blocking leader work (index creation, writes) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("leader work panicked")
}

/// Awaits `future`, failing the check if it takes longer than [`STEP_TIMEOUT`].
async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(STEP_TIMEOUT, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not complete within {STEP_TIMEOUT:?}"),
    }
}

/// Creates a leader index of `shards` shards without background refresh.
async fn create_index(fixture: &LeaderFixture, name: &str, shards: u32) -> Arc<Index> {
    let indices = fixture.indices.clone();
    let name = name.to_string();
    blocking(move || {
        let settings = json!({"index": {"number_of_shards": shards, "refresh_interval": "-1"}});
        let mappings = json!({"properties": {"body": {"type": "text"}}});
        indices
            .create(&name, &settings, &mappings)
            .expect("create the leader index")
    })
    .await
}

/// Writes `count` operations to shard 0 of `index`: index operations over ten ids (so some
/// are updates), and a delete after every seventh.
async fn write_history(index: &Arc<Index>, count: u64, salt: &'static str) {
    let index = index.clone();
    blocking(move || {
        let shard = &index.shards()[0];
        let mut written = 0;
        let mut n = 0u64;
        while written < count {
            let id = format!("doc-{}", n % 10);
            if n % 7 == 6 {
                shard.delete(DeleteRequest::new(id)).expect("leader delete");
            } else {
                let body = format!(r#"{{"body":"{salt} {n} {}"}}"#, "x".repeat(n as usize % 50));
                shard
                    .index(IndexRequest::new(id, body.into_bytes()))
                    .expect("leader write");
            }
            written += 1;
            n += 1;
        }
    })
    .await
}

/// A read of `shard` from `from` that answers at once (no long poll), with at most 100
/// operations and about 1 MiB of them, and accepts any history: how a test looks at a leader
/// shard's operations and checkpoints.
pub fn immediate_changes_request(shard: ShardId, from: SeqNo) -> ShardChangesRequest {
    ShardChangesRequest {
        shard,
        changes: ChangesRequest {
            from_seq_no: from,
            max_operation_count: 100,
            max_batch_size: 1 << 20,
            poll_timeout: Duration::ZERO,
            expected_history_uuid: None,
        },
    }
}

fn changes_request(index: &str, from: i64, poll_timeout: Duration) -> ShardChangesRequest {
    ShardChangesRequest {
        shard: ShardId::new(index, 0),
        changes: ChangesRequest {
            from_seq_no: SeqNo(from),
            max_operation_count: 10_000,
            max_batch_size: usize::MAX,
            poll_timeout,
            expected_history_uuid: None,
        },
    }
}

/// Everything of a response but the time it took (which differs between two reads).
fn without_took(mut response: ShardChangesResponse) -> ShardChangesResponse {
    response.changes.took = Duration::ZERO;
    response
}

fn assert_contiguous(response: &ShardChangesResponse, from: i64) {
    for (offset, operation) in response.changes.operations.iter().enumerate() {
        assert_eq!(
            operation.seq_no,
            SeqNo(from + offset as i64),
            "operations are contiguous from the requested sequence number"
        );
    }
}

/// `index_metadata` answers the leader's metadata, and `IndexNotFound` for a missing index.
pub async fn index_metadata_matches_the_leader(fixture: &LeaderFixture) {
    let index = create_index(fixture, "metadata", 2).await;
    let metadata = bounded(
        "index_metadata",
        fixture
            .client
            .index_metadata(IndexMetadataRequest::new("metadata")),
    )
    .await
    .expect("metadata");
    assert_eq!(metadata, index.metadata());
    assert_eq!(metadata.settings.number_of_shards, 2);
    let missing = fixture
        .client
        .index_metadata(IndexMetadataRequest::new("no-such-index"))
        .await;
    assert_eq!(
        missing,
        Err(LeaderError::IndexNotFound("no-such-index".to_string()))
    );
}

/// `list_indices` names every open index with its uuid, sorted by name.
pub async fn list_indices_names_every_index_in_order(fixture: &LeaderFixture) {
    let second = create_index(fixture, "list-b", 1).await;
    let first = create_index(fixture, "list-a", 1).await;
    let listed = bounded("list_indices", fixture.client.list_indices())
        .await
        .expect("list");
    let names: Vec<(&str, &str)> = listed
        .iter()
        .map(|summary| (summary.name.as_str(), summary.uuid.as_str()))
        .collect();
    let expected_first = first.metadata();
    let expected_second = second.metadata();
    assert_eq!(
        names,
        vec![
            ("list-a", expected_first.uuid.as_str()),
            ("list-b", expected_second.uuid.as_str())
        ]
    );
    assert_eq!(Ok(listed), fixture.reference.list_indices().await);
}

/// The operations of a shard arrive complete, contiguous, in order and unchanged, with the
/// leader's checkpoints and versions.
pub async fn shard_changes_returns_the_history(fixture: &LeaderFixture) {
    let index = create_index(fixture, "changes", 1).await;
    write_history(&index, 40, "history").await;
    let request = changes_request("changes", 0, Duration::ZERO);
    let response = bounded(
        "shard_changes",
        fixture.client.shard_changes(request.clone()),
    )
    .await
    .expect("changes");
    assert_eq!(response.changes.operations.len(), 40);
    assert_contiguous(&response, 0);
    let shard = &index.shards()[0];
    assert_eq!(
        response.changes.global_checkpoint,
        shard.global_checkpoint()
    );
    assert_eq!(response.changes.max_seq_no, SeqNo(39));
    assert_eq!(
        response.changes.max_seq_no_of_updates,
        shard.max_seq_no_of_updates()
    );
    let metadata = index.metadata();
    assert_eq!(response.mapping_version, metadata.mapping_version);
    assert_eq!(response.settings_version, metadata.settings_version);
    assert_eq!(response.aliases_version, metadata.aliases_version);
    let deletes = response
        .changes
        .operations
        .iter()
        .filter(|operation| matches!(operation.kind, OperationKind::Delete { .. }))
        .count();
    assert_eq!(deletes, 5);
    let expected = fixture
        .reference
        .shard_changes(request)
        .await
        .expect("reference changes");
    assert_eq!(without_took(response), without_took(expected));
}

/// `max_operations` caps the count; `max_bytes` caps the size but at least one operation is
/// returned; a range above the global checkpoint answers empty at once without long poll.
pub async fn shard_changes_honours_its_limits(fixture: &LeaderFixture) {
    let index = create_index(fixture, "limits", 1).await;
    write_history(&index, 20, "limits").await;
    let mut request = changes_request("limits", 5, Duration::ZERO);
    request.changes.max_operation_count = 4;
    let capped = fixture
        .client
        .shard_changes(request.clone())
        .await
        .expect("changes");
    assert_eq!(capped.changes.operations.len(), 4);
    assert_contiguous(&capped, 5);
    request.changes.max_operation_count = 100;
    request.changes.max_batch_size = 1;
    let one = fixture
        .client
        .shard_changes(request)
        .await
        .expect("changes");
    assert_eq!(one.changes.operations.len(), 1);
    assert_contiguous(&one, 5);
    let beyond = fixture
        .client
        .shard_changes(changes_request("limits", 20, Duration::ZERO))
        .await
        .expect("changes");
    assert!(beyond.changes.operations.is_empty());
    assert_eq!(beyond.changes.global_checkpoint, SeqNo(19));
}

/// A long poll waiting above the global checkpoint returns as soon as a write arrives, long
/// before its timeout.
pub async fn long_poll_returns_when_a_write_arrives(fixture: &LeaderFixture) {
    let index = create_index(fixture, "poll", 1).await;
    write_history(&index, 3, "before").await;
    let writer = {
        let index = index.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            write_history(&index, 1, "during").await;
        })
    };
    let started = Instant::now();
    let poll_timeout = Duration::from_secs(20);
    let response = bounded(
        "a woken long poll",
        fixture
            .client
            .shard_changes(changes_request("poll", 3, poll_timeout)),
    )
    .await
    .expect("long poll");
    writer.await.expect("writer");
    assert_eq!(response.changes.operations.len(), 1);
    assert_contiguous(&response, 3);
    assert!(
        started.elapsed() < poll_timeout,
        "woken by the write after {:?}, not by the timeout",
        started.elapsed()
    );
}

/// A long poll that sees no write answers empty once its timeout passes.
pub async fn long_poll_times_out_empty(fixture: &LeaderFixture) {
    let index = create_index(fixture, "idle", 1).await;
    write_history(&index, 2, "idle").await;
    let poll_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let response = bounded(
        "an idle long poll",
        fixture
            .client
            .shard_changes(changes_request("idle", 2, poll_timeout)),
    )
    .await
    .expect("long poll");
    assert!(response.changes.operations.is_empty());
    assert_eq!(response.changes.global_checkpoint, SeqNo(1));
    assert!(
        started.elapsed() >= poll_timeout - Duration::from_millis(50),
        "answered after {:?}, before the poll timeout",
        started.elapsed()
    );
}

/// A read that expects another history of the shard fails with `HistoryUuidMismatch` (fatal);
/// the right history is served.
pub async fn shard_changes_refuses_another_history(fixture: &LeaderFixture) {
    let index = create_index(fixture, "history", 1).await;
    write_history(&index, 5, "history").await;
    let actual = index.shards()[0].history_uuid();
    let mut request = changes_request("history", 0, Duration::ZERO);
    request.changes.expected_history_uuid = Some("another-history".to_string());
    let error = fixture
        .client
        .shard_changes(request.clone())
        .await
        .expect_err("another history");
    assert_eq!(
        error,
        LeaderError::HistoryUuidMismatch {
            expected: "another-history".to_string(),
            actual: actual.clone(),
        }
    );
    assert!(!error.is_retryable());
    request.changes.expected_history_uuid = Some(actual);
    let served = fixture
        .client
        .shard_changes(request)
        .await
        .expect("changes");
    assert_eq!(served.changes.operations.len(), 5);
}

/// History merged away without a lease is reported as `MissingHistory` (fatal), with the
/// leader's message.
pub async fn shard_changes_reports_missing_history(fixture: &LeaderFixture) {
    let index = create_index(fixture, "pruned", 1).await;
    write_history(&index, 30, "pruned").await;
    let merged = index.clone();
    blocking(move || {
        merged.refresh().expect("refresh");
        merged.shards()[0].force_merge(1).expect("force merge");
    })
    .await;
    let error = fixture
        .client
        .shard_changes(changes_request("pruned", 0, Duration::ZERO))
        .await
        .expect_err("history is gone");
    assert!(
        matches!(error, LeaderError::MissingHistory { from: SeqNo(0), .. }),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert!(error
        .to_string()
        .contains("index.soft_deletes.retention_lease.period"));
    let expected = fixture
        .reference
        .shard_changes(changes_request("pruned", 0, Duration::ZERO))
        .await;
    assert_eq!(Err(error), expected);
}

/// Changes of a missing index or shard fail with `IndexNotFound` / `ShardNotFound`.
pub async fn shard_changes_on_unknown_index_or_shard_fails(fixture: &LeaderFixture) {
    create_index(fixture, "one-shard", 1).await;
    let missing = fixture
        .client
        .shard_changes(changes_request("absent", 0, Duration::ZERO))
        .await;
    assert_eq!(
        missing.map(without_took),
        Err(LeaderError::IndexNotFound("absent".to_string()))
    );
    let mut request = changes_request("one-shard", 0, Duration::ZERO);
    request.shard.shard = 7;
    let no_shard = fixture.client.shard_changes(request).await;
    assert_eq!(
        no_shard.map(without_took),
        Err(LeaderError::ShardNotFound {
            index: "one-shard".to_string(),
            shard: 7,
        })
    );
}

/// Leases: add, add again (`RetentionLeaseAlreadyExists`), renew, renew an unknown one
/// (`RetentionLeaseNotFound`), remove, remove again (`RetentionLeaseNotFound`); each change is
/// on the leader shard when the call returns.
pub async fn retention_leases_add_renew_remove(fixture: &LeaderFixture) {
    let index = create_index(fixture, "leases", 1).await;
    write_history(&index, 10, "leases").await;
    let shard = ShardId::new("leases", 0);
    let client = &fixture.client;
    let lease = "follower/leases/uuid-following-leader/leases/uuid".to_string();
    let leases = || index.shards()[0].retention_leases().leases;
    client
        .add_retention_lease(AddRetentionLeaseRequest::new(
            shard.clone(),
            lease.clone(),
            SeqNo(2),
            "ccr".to_string(),
        ))
        .await
        .expect("add");
    let added = leases()
        .get(&lease)
        .cloned()
        .expect("the lease is on the leader");
    assert_eq!(
        (added.retaining_seq_no, added.source.as_str()),
        (SeqNo(2), "ccr")
    );
    let again = client
        .add_retention_lease(AddRetentionLeaseRequest::new(
            shard.clone(),
            lease.clone(),
            SeqNo(3),
            "ccr".to_string(),
        ))
        .await;
    assert_eq!(
        again,
        Err(LeaderError::RetentionLeaseAlreadyExists(lease.clone()))
    );
    client
        .renew_retention_lease(RenewRetentionLeaseRequest::new(
            shard.clone(),
            lease.clone(),
            SeqNo(7),
        ))
        .await
        .expect("renew");
    assert_eq!(leases()[&lease].retaining_seq_no, SeqNo(7));
    let unknown = client
        .renew_retention_lease(RenewRetentionLeaseRequest::new(
            shard.clone(),
            "unknown".to_string(),
            SeqNo(1),
        ))
        .await;
    assert_eq!(
        unknown,
        Err(LeaderError::RetentionLeaseNotFound("unknown".to_string()))
    );
    client
        .remove_retention_lease(RemoveRetentionLeaseRequest::new(
            shard.clone(),
            lease.clone(),
        ))
        .await
        .expect("remove");
    assert!(!leases().contains_key(&lease));
    let removed = client
        .remove_retention_lease(RemoveRetentionLeaseRequest::new(shard, lease.clone()))
        .await;
    assert_eq!(
        removed,
        Err(LeaderError::RetentionLeaseNotFound(lease.clone()))
    );
    let no_index = client
        .add_retention_lease(AddRetentionLeaseRequest::new(
            ShardId::new("absent", 0),
            lease,
            SeqNo(0),
            "ccr".to_string(),
        ))
        .await;
    assert_eq!(
        no_index,
        Err(LeaderError::IndexNotFound("absent".to_string()))
    );
}

/// A session pins the shard's commit; reading every file in chunks through the client yields
/// the announced lengths and the bytes the leader serves.
pub async fn recovery_session_serves_the_pinned_files(fixture: &LeaderFixture) {
    let index = create_index(fixture, "recover", 1).await;
    write_history(&index, 200, "recover").await;
    let committed = index.clone();
    blocking(move || committed.refresh().expect("commit")).await;
    let shard = ShardId::new("recover", 0);
    let info = bounded(
        "open_recovery_session",
        fixture
            .client
            .open_recovery_session(OpenRecoverySessionRequest::new(shard.clone())),
    )
    .await
    .expect("open");
    let engine = &index.shards()[0];
    assert_eq!(info.shard, shard);
    assert_eq!(info.history_uuid, engine.history_uuid());
    assert_eq!(info.local_checkpoint, SeqNo(199));
    assert_eq!(info.max_seq_no, SeqNo(199));
    assert_eq!(info.mapping_version, index.metadata().mapping_version);
    assert!(info.files.iter().any(|file| file.name == "meta.json"));
    const CHUNK_BYTES: usize = 4096;
    for file in &info.files {
        let mut offset = 0u64;
        let mut copied = Vec::new();
        loop {
            let request = ReadFileChunkRequest::new(
                shard.clone(),
                info.session_id.clone(),
                file.name.clone(),
                offset,
                CHUNK_BYTES,
            );
            let chunk = fixture
                .client
                .read_file_chunk(request.clone())
                .await
                .expect("chunk");
            assert!(chunk.data.len() <= CHUNK_BYTES);
            let expected = fixture
                .reference
                .read_file_chunk(request)
                .await
                .expect("reference chunk");
            assert_eq!(chunk.data, expected.data, "{} at {offset}", file.name);
            if chunk.data.is_empty() {
                break;
            }
            offset += chunk.data.len() as u64;
            copied.extend_from_slice(&chunk.data.to_vec());
        }
        assert_eq!(copied.len() as u64, file.length, "{}", file.name);
    }
    fixture
        .client
        .close_recovery_session(CloseRecoverySessionRequest::new(shard, info.session_id))
        .await
        .expect("close");
}

/// Closing is idempotent (twice, and an unknown session); after close, the session is
/// `UnknownSession` and its pin is released.
pub async fn recovery_session_close_is_idempotent_and_final(fixture: &LeaderFixture) {
    let index = create_index(fixture, "close", 1).await;
    write_history(&index, 10, "close").await;
    let shard = ShardId::new("close", 0);
    let source = fixture.reference.recovery_source().clone();
    let before = source.open_session_count();
    let info = fixture
        .client
        .open_recovery_session(OpenRecoverySessionRequest::new(shard.clone()))
        .await
        .expect("open");
    assert_eq!(source.open_session_count(), before + 1);
    let file = info.files[0].name.clone();
    for _ in 0..2 {
        fixture
            .client
            .close_recovery_session(CloseRecoverySessionRequest::new(
                shard.clone(),
                info.session_id.clone(),
            ))
            .await
            .expect("close is idempotent");
    }
    assert_eq!(source.open_session_count(), before);
    let after = fixture
        .client
        .read_file_chunk(ReadFileChunkRequest::new(
            shard.clone(),
            info.session_id.clone(),
            file,
            0,
            16,
        ))
        .await;
    assert_eq!(after, Err(LeaderError::UnknownSession(info.session_id)));
    fixture
        .client
        .close_recovery_session(CloseRecoverySessionRequest::new(
            shard,
            crate::leader_api::SessionId("never-opened".to_string()),
        ))
        .await
        .expect("closing an unknown session succeeds");
}

/// Chunk requests for an unknown file, an unknown session, an oversized chunk, or a shard
/// that does not exist fail with the matching error.
pub async fn recovery_session_refuses_unknown_files_and_sessions(fixture: &LeaderFixture) {
    let index = create_index(fixture, "refuse", 1).await;
    write_history(&index, 10, "refuse").await;
    let shard = ShardId::new("refuse", 0);
    let client = &fixture.client;
    let info = client
        .open_recovery_session(OpenRecoverySessionRequest::new(shard.clone()))
        .await
        .expect("open");
    let session = info.session_id.clone();
    let unknown_file = client
        .read_file_chunk(ReadFileChunkRequest::new(
            shard.clone(),
            session.clone(),
            "nope.bin".to_string(),
            0,
            16,
        ))
        .await;
    assert_eq!(
        unknown_file,
        Err(LeaderError::UnknownFile {
            session: session.clone(),
            name: "nope.bin".to_string(),
        })
    );
    let oversized = client
        .read_file_chunk(ReadFileChunkRequest::new(
            shard.clone(),
            session.clone(),
            info.files[0].name.clone(),
            0,
            MAX_CHUNK_BYTES + 1,
        ))
        .await;
    assert!(
        matches!(oversized, Err(LeaderError::InvalidRequest(_))),
        "{oversized:?}"
    );
    let stranger = crate::leader_api::SessionId("stranger".to_string());
    let unknown_session = client
        .read_file_chunk(ReadFileChunkRequest::new(
            shard.clone(),
            stranger.clone(),
            "meta.json".to_string(),
            0,
            16,
        ))
        .await;
    assert_eq!(unknown_session, Err(LeaderError::UnknownSession(stranger)));
    let no_shard = client
        .open_recovery_session(OpenRecoverySessionRequest::new(ShardId::new("refuse", 3)))
        .await;
    assert_eq!(
        no_shard.map(|info| info.session_id),
        Err(LeaderError::ShardNotFound {
            index: "refuse".to_string(),
            shard: 3,
        })
    );
    client
        .close_recovery_session(CloseRecoverySessionRequest::new(shard, session))
        .await
        .expect("close");
}

/// Several chunk reads run at once, and none waits behind a long poll in flight on the same
/// client.
pub async fn chunk_reads_run_concurrently_beside_a_long_poll(fixture: &LeaderFixture) {
    const READERS: u64 = 8;
    const CHUNK_BYTES: usize = 2048;
    let index = create_index(fixture, "concurrent", 1).await;
    write_history(&index, 300, "concurrent").await;
    let committed = index.clone();
    blocking(move || committed.refresh().expect("commit")).await;
    let shard = ShardId::new("concurrent", 0);
    let poll_timeout = Duration::from_secs(20);
    let poller = {
        let client = fixture.client.clone();
        tokio::spawn(async move {
            client
                .shard_changes(changes_request("concurrent", 300, poll_timeout))
                .await
        })
    };
    let info = fixture
        .client
        .open_recovery_session(OpenRecoverySessionRequest::new(shard.clone()))
        .await
        .expect("open");
    let largest = info
        .files
        .iter()
        .max_by_key(|file| file.length)
        .expect("the commit has files")
        .clone();
    let started = Instant::now();
    let readers: Vec<_> = (0..READERS)
        .map(|n| {
            let client = fixture.client.clone();
            let (shard, session, file) =
                (shard.clone(), info.session_id.clone(), largest.name.clone());
            let offset = (n * CHUNK_BYTES as u64).min(largest.length);
            tokio::spawn(async move {
                let chunk = client
                    .read_file_chunk(ReadFileChunkRequest::new(
                        shard,
                        session,
                        file,
                        offset,
                        CHUNK_BYTES,
                    ))
                    .await;
                (offset, chunk)
            })
        })
        .collect();
    for reader in readers {
        let (offset, chunk) = bounded("a chunk read", reader).await.expect("reader");
        let chunk = chunk.expect("chunk");
        let expected = fixture
            .reference
            .read_file_chunk(ReadFileChunkRequest::new(
                shard.clone(),
                info.session_id.clone(),
                largest.name.clone(),
                offset,
                CHUNK_BYTES,
            ))
            .await
            .expect("reference chunk");
        assert_eq!(chunk, expected);
    }
    assert!(
        started.elapsed() < poll_timeout / 2,
        "chunk reads waited {:?} behind the long poll",
        started.elapsed()
    );
    assert!(!poller.is_finished(), "the long poll is still waiting");
    write_history(&index, 1, "wake").await;
    let woken = bounded("the woken long poll", poller)
        .await
        .expect("poller")
        .expect("long poll");
    assert_eq!(woken.changes.operations.len(), 1);
    fixture
        .client
        .close_recovery_session(CloseRecoverySessionRequest::new(shard, info.session_id))
        .await
        .expect("close");
}
