//! Body of the `recovery_session` fuzz target (`fuzz/`), kept in the library so that the
//! ordinary test suite (`tests/fuzz_corpus.rs`) runs it over the checked-in corpus too.
//!
//! A hostile leader answers a [`RecoveryTarget`] on an in-memory disk ([`SimStorage`]). It
//! starts from a genuine commit (a small leader shard built once per process) and lets the
//! input change what it says: the session's file list (names that climb out of the shard
//! directory, absolute paths, separators, duplicates, the recovery's own temp suffix, lengths
//! up to `u64::MAX`, wrong checksums, extra or missing files, a checkpoint above
//! `max_seq_no` or one the commit does not hold) and each chunk answer (flipped bits, short, long, retryable and fatal errors,
//! a lost session). Once the input is used up, the leader answers truthfully, so every run
//! ends. Checked, by `assert!` (what a fuzzer reports):
//! - nothing is written outside the follower shard's directory;
//! - every chunk request stays within the announced file and asks for at most one chunk
//!   (`chunk_size_bytes`), and at most `max_concurrent_file_chunks` are in flight, whatever
//!   the lengths announced: what the target holds in memory is bounded by its settings;
//! - a recovery that succeeds holds the genuine commit: every segment file byte for byte,
//!   the genuine documents, and the genuine checkpoint to resume replication from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tandem_engine::index::{IndexMetadata, IndexSettings};
use tandem_engine::indices::Indices;
use tandem_engine::mapping::{DocumentMapper, Mappings};
use tandem_engine::shard::{
    DeleteRequest, Durability, IndexRequest, ShardConfig, MANAGED_FILE, META_FILE,
};
use tandem_engine::storage::{EntryKind, SimStorage, Storage};
use tandem_engine::SeqNo;

use crate::leader_api::{
    AddRetentionLeaseRequest, CloseRecoverySessionRequest, FileChunk, IndexMetadataRequest,
    LeaderClient, LeaderFuture, LeaderIndexSummary, OpenRecoverySessionRequest,
    ReadFileChunkRequest, RecoverySessionInfo, RemoveRetentionLeaseRequest,
    RenewRetentionLeaseRequest, SessionId, ShardChangesRequest, ShardChangesResponse, ShardId,
};
use crate::{ChunkBytes, InProcessLeaderClient, LeaderError, RecoveryRequest};
use crate::{RecoverySettings, RecoverySource, RecoverySourceSettings, RecoveryTarget};

/// The follower shard's directory on the target's disk.
const FOLLOWER_SHARD: &str = "/data/follower/0";
const LEADER_INDEX: &str = "leader";
/// Chunks of the target: small, so that files take several and the limits are exercised.
const CHUNK_BYTES: usize = 4096;
const MAX_IN_FLIGHT: usize = 3;

/// The genuine commit the hostile leader starts from.
struct Genuine {
    session: RecoverySessionInfo,
    files: BTreeMap<String, Vec<u8>>,
    metadata: IndexMetadata,
    doc_count: u64,
}

fn genuine() -> &'static Genuine {
    static GENUINE: OnceLock<Genuine> = OnceLock::new();
    GENUINE.get_or_init(build_genuine)
}

/// A leader shard with a few segments, updates and deletes, and its commit read through the
/// real recovery source.
fn build_genuine() -> Genuine {
    let disk = SimStorage::new();
    let indices = Arc::new(
        Indices::open_on(disk.as_storage(), Path::new("/leader")).expect("open the leader"),
    );
    let settings = IndexSettings {
        refresh_interval_millis: None,
        ..IndexSettings::default()
    };
    let index = indices
        .create_with(
            LEADER_INDEX,
            "leader-uuid",
            settings,
            Mappings::empty(),
            false,
        )
        .expect("create the leader index");
    let shard = &index.shards()[0];
    for batch in 0..3 {
        for n in 0..6 {
            let body = format!(r#"{{"body":"batch {batch} doc {n}","n":{n}}}"#);
            shard
                .index(IndexRequest::new(format!("doc-{n}"), body.into_bytes()))
                .expect("index");
        }
        shard
            .delete(DeleteRequest::new(format!("doc-{batch}")))
            .expect("delete");
        shard.refresh().expect("refresh");
    }
    let doc_count = shard.doc_count();
    let runtime = runtime();
    let client = InProcessLeaderClient::new(RecoverySource::new(RecoverySourceSettings::default()));
    client.register_index(index.clone());
    let shard_id = ShardId::new(LEADER_INDEX, 0);
    let (session, files) = runtime.block_on(async {
        let session = client
            .open_recovery_session(OpenRecoverySessionRequest::new(shard_id.clone()))
            .await
            .expect("open a session");
        let mut files = BTreeMap::new();
        for file in &session.files {
            let chunk = client
                .read_file_chunk(ReadFileChunkRequest {
                    shard: shard_id.clone(),
                    session: session.session_id.clone(),
                    file: file.name.clone(),
                    offset: 0,
                    length: file.length as usize,
                })
                .await
                .expect("read a file");
            files.insert(file.name.clone(), chunk.data.to_vec());
        }
        client
            .close_recovery_session(CloseRecoverySessionRequest::new(
                shard_id.clone(),
                session.session_id.clone(),
            ))
            .await
            .expect("close the session");
        (session, files)
    });
    // Segment file names hold random ids, and the session lists them by name: order them by
    // what does not change between processes (length, then extension), so that an input
    // means the same files in every run. The commit point stays last, as the leader lists it.
    let mut session = session;
    let commit_point = |name: &str| name == META_FILE || name == MANAGED_FILE;
    let mut segment_files: Vec<_> = session
        .files
        .iter()
        .filter(|file| !commit_point(&file.name))
        .cloned()
        .collect();
    segment_files.sort_by(|a, b| {
        let extension = |name: &str| name.rsplit_once('.').map(|(_, ext)| ext.to_string());
        (a.length, extension(&a.name)).cmp(&(b.length, extension(&b.name)))
    });
    segment_files.extend(
        session
            .files
            .iter()
            .filter(|file| commit_point(&file.name))
            .cloned(),
    );
    session.files = segment_files;
    Genuine {
        metadata: index.metadata(),
        session,
        files,
        doc_count,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
}

/// The input, read a byte at a time; 0 once used up (0 always means "the truth").
struct Script {
    bytes: Vec<u8>,
    at: usize,
}

impl Script {
    fn byte(&mut self) -> u8 {
        let byte = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        byte
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |value, _| (value << 8) | u64::from(self.byte()))
    }
}

/// Names a hostile leader may give a file.
const HOSTILE_NAMES: [&str; 12] = [
    "../escape",
    "../../data/other/0/index/meta.json",
    "/etc/passwd",
    "sub/dir",
    "back\\slash",
    "",
    ".",
    "..",
    "nul\0byte",
    "meta.json.recovering",
    META_FILE,
    MANAGED_FILE,
];

struct HostileLeader {
    script: Mutex<Script>,
    /// The session as last announced (the truth, or what the script made of it).
    session: Mutex<Option<RecoverySessionInfo>>,
    sessions_opened: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    violations: Mutex<Vec<String>>,
}

impl HostileLeader {
    fn violation(&self, what: String) {
        self.violations.lock().push(what);
    }

    fn lie_about_session(&self) -> RecoverySessionInfo {
        let genuine = genuine();
        let mut session = genuine.session.clone();
        let opened = self.sessions_opened.fetch_add(1, Ordering::Relaxed);
        session.session_id = SessionId(format!("session-{opened}"));
        let mut script = self.script.lock();
        let lies = script.byte() % 4;
        for _ in 0..lies {
            let op = script.byte();
            let count = session.files.len().max(1);
            let file = usize::from(script.byte()) % count;
            match op % 9 {
                0 => {}
                1 => {
                    if let Some(info) = session.files.get_mut(file) {
                        info.name = HOSTILE_NAMES[usize::from(script.byte()) % 12].to_string();
                    }
                }
                2 => {
                    if let Some(info) = session.files.get_mut(file) {
                        info.length = match script.byte() % 5 {
                            0 => 0,
                            1 => info.length.saturating_sub(1),
                            2 => info.length + 1,
                            3 => 1 << 40,
                            _ => script.u64(),
                        };
                    }
                }
                3 => {
                    if let Some(info) = session.files.get_mut(file) {
                        info.checksum ^= 1 << (script.byte() % 32);
                    }
                }
                4 => {
                    if let Some(info) = session.files.get(file).cloned() {
                        session.files.push(info);
                    }
                }
                5 => {
                    if file < session.files.len() {
                        session.files.remove(file);
                    }
                }
                6 => session.local_checkpoint = SeqNo(session.max_seq_no.0 + 1),
                7 => {
                    // A checkpoint the commit does not hold, consistent with itself.
                    let checkpoint = i64::from(script.byte()) - 1;
                    session.local_checkpoint = SeqNo(checkpoint);
                    session.max_seq_no = SeqNo(checkpoint.max(session.max_seq_no.0));
                }
                _ => {
                    let mut info = session.files[0].clone();
                    info.name = format!("extra-{}", script.byte());
                    info.length = u64::from(script.byte()) * 1000;
                    session.files.push(info);
                }
            }
        }
        *self.session.lock() = Some(session.clone());
        session
    }

    async fn answer_chunk(&self, request: ReadFileChunkRequest) -> Result<FileChunk, LeaderError> {
        // Counted until answered or dropped (a request the target times out or aborts).
        struct InFlight<'a>(&'a AtomicUsize);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let in_flight = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        let _counted = InFlight(&self.in_flight);
        self.max_in_flight.fetch_max(in_flight, Ordering::AcqRel);
        // Let the other requests of the target come in before answering.
        tokio::task::yield_now().await;
        self.chunk(&request)
    }

    fn chunk(&self, request: &ReadFileChunkRequest) -> Result<FileChunk, LeaderError> {
        let announced = self.session.lock().clone();
        match announced
            .as_ref()
            .and_then(|session| session.files.iter().find(|f| f.name == request.file))
        {
            None => self.violation(format!("a chunk of unannounced file {:?}", request.file)),
            Some(info) => {
                let end = request.offset.checked_add(request.length as u64);
                if end.is_none_or(|end| end > info.length) {
                    self.violation(format!(
                        "chunk {}+{} past the end ({}) of {:?}",
                        request.offset, request.length, info.length, request.file
                    ));
                }
            }
        }
        if request.length > CHUNK_BYTES {
            self.violation(format!("a chunk request of {} bytes", request.length));
        }
        let genuine = genuine();
        let data = genuine
            .files
            .get(&request.file)
            .map(|bytes| {
                let start = usize::try_from(request.offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let end = start.saturating_add(request.length).min(bytes.len());
                bytes[start..end].to_vec()
            })
            .unwrap_or_default();
        let mut script = self.script.lock();
        let mut data = data;
        match script.byte() % 8 {
            0 | 1 => {}
            2 => {
                if !data.is_empty() {
                    let at = usize::from(script.byte()) % data.len();
                    data[at] ^= 1 << (script.byte() % 8);
                }
            }
            3 => {
                data.pop();
            }
            4 => data.extend_from_slice(&[script.byte(); 3]),
            5 => return Err(LeaderError::Unavailable("hostile: try again".into())),
            6 => return Err(LeaderError::UnknownSession(request.session.clone())),
            _ => {
                return Err(LeaderError::InvalidRequest(
                    "hostile: a fatal refusal".into(),
                ))
            }
        }
        Ok(FileChunk {
            data: ChunkBytes::from(data),
            source_throttle: Duration::ZERO,
        })
    }

    fn lease_answer(&self) -> Result<(), LeaderError> {
        match self.script.lock().byte() % 16 {
            1 => Err(LeaderError::Unavailable("hostile: busy".into())),
            2 => Err(LeaderError::RetentionLeaseAlreadyExists("hostile".into())),
            _ => Ok(()),
        }
    }
}

impl LeaderClient for HostileLeader {
    fn index_metadata(&self, _request: IndexMetadataRequest) -> LeaderFuture<'_, IndexMetadata> {
        Box::pin(async { Ok(genuine().metadata.clone()) })
    }

    fn list_indices(&self) -> LeaderFuture<'_, Vec<LeaderIndexSummary>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn shard_changes(
        &self,
        _request: ShardChangesRequest,
    ) -> LeaderFuture<'_, ShardChangesResponse> {
        Box::pin(async { Err(LeaderError::InvalidRequest("not in this target".into())) })
    }

    fn add_retention_lease(&self, _request: AddRetentionLeaseRequest) -> LeaderFuture<'_, ()> {
        Box::pin(async { self.lease_answer() })
    }

    fn renew_retention_lease(&self, _request: RenewRetentionLeaseRequest) -> LeaderFuture<'_, ()> {
        Box::pin(async { self.lease_answer() })
    }

    fn remove_retention_lease(
        &self,
        _request: RemoveRetentionLeaseRequest,
    ) -> LeaderFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn open_recovery_session(
        &self,
        _request: OpenRecoverySessionRequest,
    ) -> LeaderFuture<'_, RecoverySessionInfo> {
        Box::pin(async { Ok(self.lie_about_session()) })
    }

    fn read_file_chunk(&self, request: ReadFileChunkRequest) -> LeaderFuture<'_, FileChunk> {
        Box::pin(self.answer_chunk(request))
    }

    fn close_recovery_session(
        &self,
        _request: CloseRecoverySessionRequest,
    ) -> LeaderFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn verify_shard(
        &self,
        _request: crate::leader_api::VerifyShardRequest,
    ) -> LeaderFuture<'_, crate::leader_api::VerifyShardResponse> {
        Box::pin(async { Err(LeaderError::InvalidRequest("not in this target".into())) })
    }

    fn failback_source(
        &self,
        _request: crate::leader_api::FailbackSourceRequest,
    ) -> LeaderFuture<'_, crate::leader_api::FailbackSourceResponse> {
        Box::pin(async { Err(LeaderError::InvalidRequest("not in this target".into())) })
    }
}

/// Every file and directory on `disk`, depth first from the root.
fn every_path(disk: &SimStorage) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let mut dirs = vec![PathBuf::from("/")];
    while let Some(dir) = dirs.pop() {
        for entry in disk.list(&dir).expect("list a directory") {
            let path = dir.join(&entry.name);
            if entry.kind == EntryKind::Dir {
                dirs.push(path.clone());
            }
            paths.push(path);
        }
    }
    paths
}

/// Fuzz body of the `recovery_session` target (see the module documentation). Returns
/// whether the recovery succeeded (after every check passed).
pub fn recovery_session(data: &[u8]) -> bool {
    let genuine = genuine();
    let leader = Arc::new(HostileLeader {
        script: Mutex::new(Script {
            bytes: data.to_vec(),
            at: 0,
        }),
        session: Mutex::new(None),
        sessions_opened: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        violations: Mutex::new(Vec::new()),
    });
    let disk = SimStorage::new();
    let settings = RecoverySettings {
        chunk_size_bytes: CHUNK_BYTES,
        max_concurrent_file_chunks: MAX_IN_FLIGHT,
        max_bytes_per_sec: 0,
        retry_initial_backoff: Duration::from_millis(1),
        retry_max_backoff: Duration::from_millis(4),
        max_chunk_attempts: 3,
        // The seed corpus's `flipped_chunk` flips two chunk answers. Which requests those are
        // depends on how the five in flight interleave, and on a loaded machine both can be
        // the same file's (its first fetch and its refetch): three attempts keep a recovery
        // from two flipped answers recoverable in every interleaving.
        max_file_attempts: 3,
        max_session_losses: 2,
        ..RecoverySettings::default()
    };
    let target = RecoveryTarget::new(leader.clone(), settings)
        .expect("valid settings")
        .on_storage(disk.as_storage());
    let request = RecoveryRequest {
        leader_shard: ShardId::new(LEADER_INDEX, 0),
        follower_shard_dir: PathBuf::from(FOLLOWER_SHARD),
        lease_id: "fuzz/follower/0".to_string(),
        mapper: Arc::new(DocumentMapper::new(
            genuine.metadata.mappings.clone(),
            genuine.metadata.mapping_version,
            None,
        )),
        shard_config: ShardConfig {
            refresh_interval: None,
            durability: Durability::Request,
            writer_memory_bytes: 15_000_000,
            indexing_threads: 1,
            retention_operations: 1 << 40,
            ..ShardConfig::default()
        },
    };
    let result = runtime().block_on(target.recover(request));
    let violations = leader.violations.lock().clone();
    assert!(violations.is_empty(), "the target asked: {violations:?}");
    let max_in_flight = leader.max_in_flight.load(Ordering::Acquire);
    assert!(
        max_in_flight <= MAX_IN_FLIGHT,
        "{max_in_flight} chunk requests in flight"
    );
    for path in every_path(&disk) {
        assert!(
            path.starts_with(FOLLOWER_SHARD) || Path::new(FOLLOWER_SHARD).starts_with(&path),
            "the recovery wrote {path:?}, outside {FOLLOWER_SHARD}"
        );
    }
    let recovered = match result {
        Ok(recovered) => recovered,
        Err(error) => {
            tracing::debug!(%error, "the hostile leader's recovery failed");
            if std::env::var_os("TANDEM_FUZZ_VERBOSE").is_some() {
                eprintln!("recovery failed: {error}");
            }
            return false;
        }
    };
    // What the leader said last is what the target kept: it must be the truth where it
    // matters (the files the commit holds, and the checkpoint to resume from).
    assert_eq!(
        recovered.commit.session.local_checkpoint, genuine.session.local_checkpoint,
        "a recovery resumes from a checkpoint the commit does not hold"
    );
    assert_eq!(
        recovered.engine.local_checkpoint(),
        genuine.session.local_checkpoint,
        "the recovered shard's checkpoint"
    );
    assert_eq!(recovered.engine.doc_count(), genuine.doc_count, "documents");
    let index_dir = recovered.commit.index_dir.clone();
    for (name, bytes) in &genuine.files {
        if name == META_FILE || name == MANAGED_FILE {
            continue;
        }
        let copied = disk
            .read(&index_dir.join(name))
            .unwrap_or_else(|error| panic!("segment file {name} missing: {error}"));
        assert!(
            copied == *bytes,
            "segment file {name} differs from the leader's"
        );
    }
    true
}
