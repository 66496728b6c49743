//! Follower side of remote recovery: [`RecoveryTarget`] copies a leader shard's pinned commit
//! into a follower shard directory and opens the follower engine on it.
//!
//! What it guarantees:
//! - *nothing is written outside the shard directory*: every file name from the leader is
//!   checked by [`validate_file_name`] before anything is written;
//! - *a renamed file is a verified file* (invariant 6): a file is written to a temp file, the
//!   CRC-32 of every chunk is computed from the bytes as they are written, the file is fsynced,
//!   its length and checksum are verified (the chunks' CRCs combined, so the body is not read
//!   back: only its footer is), then it is renamed into place; the directory is fsynced before
//!   the engine opens on the copy;
//! - *bounded whatever the leader announces*: a commit of more than [`MAX_COMMIT_FILES`] files
//!   or [`MAX_COMMIT_BYTES`] bytes is refused, and so is one that would take the disk past its
//!   high watermark ([`crate::disk`]), before any file is created; chunk requests are made
//!   per file as the copy proceeds (one file at a time is started, and a cursor over its
//!   offsets makes the next request), so memory is bounded by the requests in flight, never
//!   by the announced lengths; at most `max_concurrent_file_chunks` chunk requests are in
//!   flight, each of at most `chunk_size_bytes`; every retry loop has a cap on attempts and
//!   on backoff delay;
//! - *resumable*: a file already in place with the right length and checksum (from an earlier,
//!   interrupted recovery) is reused, not copied again; a lost session opens a new one and the
//!   copy continues unless the leader's commit changed under files already copied, in which
//!   case the copy starts cleanly over.
//!
//! While it runs the recovery holds a retain-all retention lease on the leader shard, renewed
//! every `lease_renew_interval`; on success the lease is renewed to retain from the recovered
//! checkpoint + 1 and left for replication to take over, on failure it is removed.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tandem_engine::durable_file::{self, DurableFileError};
use tandem_engine::mapping::DocumentMapper;
use tandem_engine::shard::{checksum_file, checksum_file_from_ranges, META_FILE};
use tandem_engine::shard::{CommitFileInfo, RangeChecksum};
use tandem_engine::storage::{EntryKind, OpenMode, Storage, StorageFile, StorageRef, SyncSite};
use tandem_engine::{SeqNo, ShardConfig, ShardEngine};
use tokio::task::JoinSet;

use crate::chunk_bytes::ChunkBytes;
use crate::disk::{check_watermark, DiskWatermark};
use crate::error::RecoveryError;
use crate::leader_api::{
    AddRetentionLeaseRequest, CloseRecoverySessionRequest, LeaderClient, LeaderError,
    OpenRecoverySessionRequest, ReadFileChunkRequest, RecoverySessionInfo,
    RemoveRetentionLeaseRequest, RenewRetentionLeaseRequest, SessionId, ShardId,
};
use crate::progress::{RecoveryProgress, RecoveryStage};
use crate::rate_limiter::RateLimiter;

/// Suffix of the temp files a recovery writes before renaming them into place. Leader file
/// names ending with it are refused.
pub const TEMP_FILE_SUFFIX: &str = ".recovering";
/// Longest file name accepted from a leader.
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Largest allowed `chunk_size_bytes`.
pub const MAX_CHUNK_SIZE_BYTES: usize = crate::source::MAX_CHUNK_BYTES;
/// Valid values of `max_concurrent_file_chunks`.
pub const MAX_CONCURRENT_FILE_CHUNKS_RANGE: std::ops::RangeInclusive<usize> = 1..=10;
/// Most files a leader's commit may have. A tantivy commit has a handful of files per segment
/// and a merged shard a few dozen segments; this is two orders of magnitude above that.
pub const MAX_COMMIT_FILES: usize = 100_000;
/// Most bytes a leader's commit may have (16 PiB): far above any real shard, and far enough
/// below `u64::MAX` that no offset or sum computed from announced lengths can overflow. The
/// disk high watermark is what bounds a real recovery.
pub const MAX_COMMIT_BYTES: u64 = 1 << 54;
/// Retaining sequence number of the lease held while recovering: all history.
const RETAIN_ALL: SeqNo = SeqNo(0);
const INDEX_DIR: &str = "index";

/// How a follower recovers (`ccr.indices.recovery.*` in Elasticsearch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoverySettings {
    /// Bytes per chunk request (1 MB).
    pub chunk_size_bytes: usize,
    /// Chunk requests in flight at once (5; valid 1..=10).
    pub max_concurrent_file_chunks: usize,
    /// Follower-side limit on copied bytes per second (40 MB/s; 0 = unlimited).
    pub max_bytes_per_sec: u64,
    /// Interval between renewals of the recovery's retention lease (30 s).
    pub lease_renew_interval: Duration,
    /// A chunk request not answered within this is retried (30 s).
    pub chunk_request_timeout: Duration,
    /// Attempts per chunk before the recovery fails (10).
    pub max_chunk_attempts: u32,
    /// First retry delay; doubles per attempt (50 ms).
    pub retry_initial_backoff: Duration,
    /// Cap on the retry delay (5 s).
    pub retry_max_backoff: Duration,
    /// Fetches of one file that may fail verification before the recovery fails (3).
    pub max_file_attempts: u32,
    /// New sessions (leader lost one, or the commit changed) before the recovery fails (5).
    pub max_session_losses: u32,
    /// How full the copy may make the follower's disk (90% used).
    pub disk_watermark_high: DiskWatermark,
}

impl Default for RecoverySettings {
    fn default() -> Self {
        RecoverySettings {
            chunk_size_bytes: 1024 * 1024,
            max_concurrent_file_chunks: 5,
            max_bytes_per_sec: 40 * 1024 * 1024,
            lease_renew_interval: Duration::from_secs(30),
            chunk_request_timeout: Duration::from_secs(30),
            max_chunk_attempts: 10,
            retry_initial_backoff: Duration::from_millis(50),
            retry_max_backoff: Duration::from_secs(5),
            max_file_attempts: 3,
            max_session_losses: 5,
            disk_watermark_high: DiskWatermark::default(),
        }
    }
}

impl RecoverySettings {
    /// Checks every setting is in range.
    pub fn validate(&self) -> Result<(), RecoveryError> {
        let invalid =
            |setting, reason: String| Err(RecoveryError::InvalidSetting { setting, reason });
        if self.chunk_size_bytes == 0 || self.chunk_size_bytes > MAX_CHUNK_SIZE_BYTES {
            return invalid(
                "chunk_size",
                format!(
                    "{} bytes is not in 1..={MAX_CHUNK_SIZE_BYTES}",
                    self.chunk_size_bytes
                ),
            );
        }
        if !MAX_CONCURRENT_FILE_CHUNKS_RANGE.contains(&self.max_concurrent_file_chunks) {
            return invalid(
                "max_concurrent_file_chunks",
                format!("{} is not in 1..=10", self.max_concurrent_file_chunks),
            );
        }
        for (setting, value) in [
            ("lease_renew_interval", self.lease_renew_interval),
            ("chunk_request_timeout", self.chunk_request_timeout),
            ("retry_max_backoff", self.retry_max_backoff),
        ] {
            if value.is_zero() {
                return invalid(setting, "must be positive".to_string());
            }
        }
        for (setting, value) in [
            ("max_chunk_attempts", self.max_chunk_attempts),
            ("max_file_attempts", self.max_file_attempts),
        ] {
            if value == 0 {
                return invalid(setting, "must be at least 1".to_string());
            }
        }
        Ok(())
    }

    /// Delay before retry number `retry` (1-based): exponential, capped.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(20);
        self.retry_initial_backoff
            .saturating_mul(factor)
            .min(self.retry_max_backoff)
    }
}

/// Checks a file name announced by a leader: a single plain path component that cannot clash
/// with the recovery's temp files.
pub fn validate_file_name(name: &str) -> Result<(), RecoveryError> {
    let refuse = |reason| {
        Err(RecoveryError::InvalidFileName {
            name: name.escape_debug().to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("empty");
    }
    if name == "." || name == ".." {
        return refuse("a directory reference");
    }
    if name.len() > MAX_FILE_NAME_BYTES {
        return refuse("longer than 255 bytes");
    }
    if name.contains(['/', '\\', '\0']) {
        return refuse("contains a path separator or NUL");
    }
    if name.ends_with(TEMP_FILE_SUFFIX) {
        return refuse("ends with the recovery's temp file suffix");
    }
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) => Ok(()),
        _ => refuse("not a plain file name"),
    }
}

fn validate_session(session: &RecoverySessionInfo) -> Result<(), RecoveryError> {
    if session.files.len() > MAX_COMMIT_FILES {
        return Err(RecoveryError::CommitTooLarge {
            what: "the number of files",
            value: session.files.len() as u64,
            limit: MAX_COMMIT_FILES as u64,
        });
    }
    let mut total_bytes = 0u64;
    for file in &session.files {
        total_bytes = total_bytes.saturating_add(file.length);
    }
    if total_bytes > MAX_COMMIT_BYTES {
        return Err(RecoveryError::CommitTooLarge {
            what: "the sum of the file lengths in bytes",
            value: total_bytes,
            limit: MAX_COMMIT_BYTES,
        });
    }
    let mut names = HashSet::new();
    for file in &session.files {
        validate_file_name(&file.name)?;
        if !names.insert(file.name.as_str()) {
            return Err(RecoveryError::InvalidFileList(format!(
                "file [{}] is listed twice",
                file.name
            )));
        }
    }
    if !names.contains(META_FILE) {
        return Err(RecoveryError::InvalidFileList(format!(
            "no [{META_FILE}] in the commit"
        )));
    }
    if session.local_checkpoint > session.max_seq_no {
        return Err(RecoveryError::InvalidFileList(format!(
            "local checkpoint {} above max_seq_no {}",
            session.local_checkpoint, session.max_seq_no
        )));
    }
    Ok(())
}

/// Which follower shard to recover from which leader shard.
#[derive(Clone)]
pub struct RecoveryRequest {
    /// The leader shard.
    pub leader_shard: ShardId,
    /// The follower shard's directory (created if absent; the recovery owns it).
    pub follower_shard_dir: PathBuf,
    /// Id of the retention lease held on the leader shard.
    pub lease_id: String,
    /// Mapper of the follower index.
    pub mapper: Arc<DocumentMapper>,
    /// Configuration of the follower engine (opened in follower mode whatever it says).
    pub shard_config: ShardConfig,
}

/// The commit a recovery copied.
#[derive(Clone, Debug)]
pub struct CopiedCommit {
    /// The session the last files came from.
    pub session: RecoverySessionInfo,
    /// Where the files are.
    pub index_dir: PathBuf,
}

/// A recovered follower shard.
pub struct RecoveredShard {
    /// The follower engine, in follower mode.
    pub engine: ShardEngine,
    /// The commit it was recovered from; replication starts at its local checkpoint + 1.
    pub commit: CopiedCommit,
}

/// Recovers follower shards from a leader; one recovery per target (it owns the progress).
pub struct RecoveryTarget {
    client: Arc<dyn LeaderClient>,
    /// Where the copied files and the bootstrapped shard go (see [`RecoveryTarget::on_storage`]).
    storage: StorageRef,
    settings: RecoverySettings,
    limiter: Arc<RateLimiter>,
    progress: RecoveryProgress,
}

impl RecoveryTarget {
    /// A target using `client`; fails if a setting is out of range.
    pub fn new(
        client: Arc<dyn LeaderClient>,
        settings: RecoverySettings,
    ) -> Result<RecoveryTarget, RecoveryError> {
        settings.validate()?;
        Ok(RecoveryTarget {
            client,
            storage: tandem_engine::storage::real(),
            limiter: Arc::new(RateLimiter::new(settings.max_bytes_per_sec)),
            settings,
            progress: RecoveryProgress::new(),
        })
    }

    /// This target writing on `storage` instead of the file system: the copied files, and the
    /// shard it bootstraps (whatever storage the request's shard configuration names).
    pub fn on_storage(mut self, storage: StorageRef) -> RecoveryTarget {
        self.storage = storage;
        self
    }

    /// The live progress of this target's recovery.
    pub fn progress(&self) -> RecoveryProgress {
        self.progress.clone()
    }

    /// Recovers the follower shard: lease, copy, verify, bootstrap. See the module docs.
    pub async fn recover(&self, request: RecoveryRequest) -> Result<RecoveredShard, RecoveryError> {
        let result = self.recover_inner(&request).await;
        match &result {
            Ok(_) => self.progress.stop(RecoveryStage::Done, None),
            Err(error) => {
                tracing::warn!(shard = %request.leader_shard, %error, "recovery failed");
                self.progress
                    .stop(RecoveryStage::Failed, Some(error.to_string()));
                let removed = self
                    .client
                    .remove_retention_lease(RemoveRetentionLeaseRequest::new(
                        request.leader_shard.clone(),
                        request.lease_id.clone(),
                    ))
                    .await;
                if let Err(error) = removed {
                    tracing::warn!(%error, "could not remove the recovery's retention lease");
                }
            }
        }
        result
    }

    async fn recover_inner(
        &self,
        request: &RecoveryRequest,
    ) -> Result<RecoveredShard, RecoveryError> {
        self.progress.set_stage(RecoveryStage::Init);
        let shard = request.leader_shard.clone();
        self.add_lease(&shard, &request.lease_id).await?;
        let renewer = LeaseRenewer::spawn(
            self.client.clone(),
            shard.clone(),
            request.lease_id.clone(),
            self.settings.lease_renew_interval,
            self.progress.clone(),
        );
        let index_dir = request.follower_shard_dir.join(INDEX_DIR);
        let copied = self.copy_commit(&shard, &index_dir).await;
        drop(renewer);
        let copied = copied?;
        self.progress.set_stage(RecoveryStage::Finalize);
        let dir = request.follower_shard_dir.clone();
        let mapper = request.mapper.clone();
        let mut config = request.shard_config.clone();
        config.storage = self.storage.clone();
        let engine = tokio::task::spawn_blocking(move || {
            ShardEngine::bootstrap_follower(&dir, mapper, config)
        })
        .await
        .map_err(|e| RecoveryError::Task(e.to_string()))??;
        check_commit_matches_session(&engine, &copied.session)?;
        let retain_from = copied.session.local_checkpoint.next();
        self.client
            .renew_retention_lease(RenewRetentionLeaseRequest::new(
                shard,
                request.lease_id.clone(),
                retain_from,
            ))
            .await
            .map_err(|e| RecoveryError::leader("renewing the lease after recovery", e))?;
        Ok(RecoveredShard {
            engine,
            commit: copied,
        })
    }

    async fn add_lease(&self, shard: &ShardId, lease_id: &str) -> Result<(), RecoveryError> {
        let add = |context| {
            self.with_retries(context, || {
                self.client
                    .add_retention_lease(AddRetentionLeaseRequest::new(
                        shard.clone(),
                        lease_id.to_string(),
                        RETAIN_ALL,
                        "ccr".to_string(),
                    ))
            })
        };
        let added = add("adding the retention lease").await;
        let Err(RecoveryError::Leader {
            source: LeaderError::RetentionLeaseAlreadyExists(_),
            ..
        }) = added
        else {
            return added;
        };
        // A resumed recovery finds its own lease. Renewing it to retain all works while it
        // does; once an earlier attempt completed and advanced it past 0 (a crash before the
        // follow was recorded), a renew cannot lower it: the lease is added again.
        let renewed = self
            .with_retries("renewing the retention lease", || {
                self.client
                    .renew_retention_lease(RenewRetentionLeaseRequest::new(
                        shard.clone(),
                        lease_id.to_string(),
                        RETAIN_ALL,
                    ))
            })
            .await;
        if renewed.is_ok() {
            return renewed;
        }
        self.with_retries("removing the advanced retention lease", || {
            self.client
                .remove_retention_lease(RemoveRetentionLeaseRequest::new(
                    shard.clone(),
                    lease_id.to_string(),
                ))
        })
        .await?;
        add("adding the retention lease again").await
    }

    /// Copies the leader shard's latest commit into `index_dir` (created if absent; files that
    /// are not part of the commit are removed) and verifies it. Does not open an engine.
    pub async fn copy_commit(
        &self,
        shard: &ShardId,
        index_dir: &Path,
    ) -> Result<CopiedCommit, RecoveryError> {
        durable_file::create_dir_all(&*self.storage, index_dir).map_err(from_durable_file)?;
        let mut session = self.open_session(shard).await?;
        let mut done: BTreeMap<String, CommitFileInfo> = BTreeMap::new();
        let mut losses = 0u32;
        self.progress.set_stage(RecoveryStage::Index);
        loop {
            let result = self.copy_files(shard, &session, index_dir, &mut done).await;
            match result {
                Ok(()) => break,
                Err(CopyFailure::Fatal(error)) => {
                    self.close_session(shard, &session.session_id).await;
                    return Err(error);
                }
                Err(CopyFailure::SessionLost) => {
                    losses += 1;
                    self.progress.update(|p| p.session_reopens += 1);
                    if losses > self.settings.max_session_losses {
                        return Err(RecoveryError::TooManySessionLosses(losses));
                    }
                    tracing::warn!(%shard, session = %session.session_id, "recovery session lost; opening a new one");
                    session = self.open_session(shard).await?;
                    let changed = done.iter().any(|(name, info)| {
                        !session
                            .files
                            .iter()
                            .any(|file| file.name == *name && file == info)
                    });
                    if changed {
                        tracing::warn!(%shard, "the leader's commit changed under copied files; starting over");
                        self.progress.update(|p| p.restarts += 1);
                        done.clear();
                        clear_dir(&*self.storage, index_dir, &HashSet::new())?;
                    }
                }
            }
        }
        self.close_session(shard, &session.session_id).await;
        self.progress.set_stage(RecoveryStage::VerifyIndex);
        verify_copy(&*self.storage, index_dir, &session)?;
        Ok(CopiedCommit {
            session,
            index_dir: index_dir.to_path_buf(),
        })
    }

    async fn open_session(&self, shard: &ShardId) -> Result<RecoverySessionInfo, RecoveryError> {
        let session = self
            .with_retries("opening a recovery session", || {
                self.client
                    .open_recovery_session(OpenRecoverySessionRequest::new(shard.clone()))
            })
            .await?;
        if let Err(error) = validate_session(&session) {
            self.close_session(shard, &session.session_id).await;
            return Err(error);
        }
        let bytes = session.files.iter().map(|file| file.length).sum();
        self.progress.set_totals(session.files.len() as u64, bytes);
        Ok(session)
    }

    async fn close_session(&self, shard: &ShardId, session: &SessionId) {
        if let Err(error) = self
            .client
            .close_recovery_session(CloseRecoverySessionRequest::new(
                shard.clone(),
                session.clone(),
            ))
            .await
        {
            tracing::warn!(%shard, %session, %error, "could not close the recovery session");
        }
    }

    /// Runs a leader request, retrying retryable errors with capped backoff.
    async fn with_retries<T, F>(
        &self,
        context: &str,
        mut request: impl FnMut() -> F,
    ) -> Result<T, RecoveryError>
    where
        F: std::future::Future<Output = Result<T, LeaderError>>,
    {
        let mut attempt = 1;
        loop {
            let answer = tokio::time::timeout(self.settings.chunk_request_timeout, request())
                .await
                .unwrap_or(Err(LeaderError::Timeout(
                    self.settings.chunk_request_timeout,
                )));
            match answer {
                Ok(value) => return Ok(value),
                Err(error)
                    if error.is_retryable() && attempt < self.settings.max_chunk_attempts =>
                {
                    tracing::debug!(context, %error, attempt, "retrying a leader request");
                    tokio::time::sleep(self.settings.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(error) => return Err(RecoveryError::leader(context, error)),
            }
        }
    }

    /// Copies the files of `session` not in `done` yet; adds each verified file to `done`.
    async fn copy_files(
        &self,
        shard: &ShardId,
        session: &RecoverySessionInfo,
        index_dir: &Path,
        done: &mut BTreeMap<String, CommitFileInfo>,
    ) -> Result<(), CopyFailure> {
        let wanted: HashSet<String> = session.files.iter().map(|f| f.name.clone()).collect();
        let storage = &*self.storage;
        clear_dir(storage, index_dir, &wanted).map_err(CopyFailure::Fatal)?;
        let mut to_copy = VecDeque::new();
        let mut needed_bytes = 0u64;
        for (index, info) in session.files.iter().enumerate() {
            if done.contains_key(&info.name) {
                self.count_done(info, true);
                continue;
            }
            if is_verified(storage, &index_dir.join(&info.name), info) {
                tracing::debug!(file = %info.name, "reusing a verified file");
                self.count_done(info, true);
                done.insert(info.name.clone(), info.clone());
                continue;
            }
            // Cannot overflow: the session's total is at most MAX_COMMIT_BYTES.
            needed_bytes += info.length;
            to_copy.push_back(index);
        }
        check_watermark(
            storage,
            index_dir,
            self.settings.disk_watermark_high,
            needed_bytes,
        )
        .map_err(CopyFailure::Fatal)?;
        let mut copy = FileCopy::new(self, shard, session, index_dir, to_copy);
        let result = copy.run(done).await;
        copy.abort().await;
        result?;
        sync_dir(storage, index_dir).map_err(CopyFailure::Fatal)
    }

    fn count_done(&self, info: &CommitFileInfo, reused: bool) {
        self.progress.update(|p| {
            p.files_recovered += 1;
            if reused {
                p.files_reused += 1;
                p.bytes_reused += info.length;
                p.bytes_recovered += info.length;
            }
        });
    }
}

enum CopyFailure {
    SessionLost,
    Fatal(RecoveryError),
}

/// The outcome of one chunk task.
enum ChunkOutcome {
    Written { file: usize, range: RangeChecksum },
    Failed(CopyFailure),
}

/// The outcome of finalizing one file.
enum FinalizeOutcome {
    Verified { file: usize },
    Mismatch { file: usize, reason: String },
    Failed(RecoveryError),
}

struct FileState {
    temp_path: PathBuf,
    handle: Option<Arc<dyn StorageFile>>,
    chunks_left: u64,
    /// CRC-32 of each chunk written so far, as computed from the bytes written.
    written: Vec<RangeChecksum>,
    attempts: u32,
}

/// Where the next chunk request of a copy comes from: the file being requested and the offset
/// of its next chunk. The requests of a file are made as the copy reaches them, so what a copy
/// holds is the chunks in flight, whatever length the leader announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ChunkCursor {
    file: usize,
    offset: u64,
    length: u64,
}

impl ChunkCursor {
    /// The next chunk `(offset, length)` of at most `chunk_size` bytes, or `None` past the end.
    fn next_chunk(&mut self, chunk_size: u64) -> Option<(u64, usize)> {
        if self.offset >= self.length {
            return None;
        }
        let length = chunk_size.min(self.length - self.offset);
        let offset = self.offset;
        self.offset += length;
        Some((offset, length as usize))
    }
}

/// One pass of copying a session's files: chunk requests in flight, files being finalized.
struct FileCopy<'a> {
    target: &'a RecoveryTarget,
    shard: &'a ShardId,
    session: &'a RecoverySessionInfo,
    index_dir: &'a Path,
    /// Files started and not verified yet (at most the files of the chunks in flight and
    /// those being finalized).
    files: BTreeMap<usize, FileState>,
    /// Files not started yet, in the order they are copied (a file that failed verification
    /// goes back to the front).
    to_start: VecDeque<usize>,
    /// The file whose chunks are being requested.
    cursor: Option<ChunkCursor>,
    chunks: JoinSet<ChunkOutcome>,
    finalizing: JoinSet<FinalizeOutcome>,
}

impl<'a> FileCopy<'a> {
    fn new(
        target: &'a RecoveryTarget,
        shard: &'a ShardId,
        session: &'a RecoverySessionInfo,
        index_dir: &'a Path,
        to_start: VecDeque<usize>,
    ) -> Self {
        FileCopy {
            target,
            shard,
            session,
            index_dir,
            files: BTreeMap::new(),
            to_start,
            cursor: None,
            chunks: JoinSet::new(),
            finalizing: JoinSet::new(),
        }
    }

    /// Creates (truncates) the file's temp file, empty: it grows as chunks are written, so an
    /// announced length reserves nothing. Returns the file's chunk cursor.
    fn start_file(&mut self, index: usize) -> Result<ChunkCursor, RecoveryError> {
        let info = &self.session.files[index];
        let temp_path = self
            .index_dir
            .join(format!("{}{TEMP_FILE_SUFFIX}", info.name));
        let handle = self
            .target
            .storage
            .open(&temp_path, OpenMode::CreateTruncate)
            .map_err(|e| RecoveryError::io(&temp_path, e))?;
        let chunk_size = self.target.settings.chunk_size_bytes as u64;
        let chunks = info.length.div_ceil(chunk_size);
        let attempts = self.files.get(&index).map_or(0, |state| state.attempts) + 1;
        self.files.insert(
            index,
            FileState {
                temp_path,
                handle: Some(Arc::from(handle)),
                chunks_left: chunks,
                written: Vec::new(),
                attempts,
            },
        );
        if chunks == 0 {
            self.finalize(index);
        }
        Ok(ChunkCursor {
            file: index,
            offset: 0,
            length: info.length,
        })
    }

    /// The next chunk to request `(file, offset, length)`, starting the next file when the
    /// current one has all its chunks requested; `None` when every file has.
    fn next_chunk(&mut self) -> Result<Option<(usize, u64, usize)>, RecoveryError> {
        let chunk_size = self.target.settings.chunk_size_bytes as u64;
        loop {
            if let Some(cursor) = &mut self.cursor {
                if let Some((offset, length)) = cursor.next_chunk(chunk_size) {
                    return Ok(Some((cursor.file, offset, length)));
                }
            }
            let Some(file) = self.to_start.pop_front() else {
                self.cursor = None;
                return Ok(None);
            };
            self.cursor = Some(self.start_file(file)?);
        }
    }

    async fn run(
        &mut self,
        done: &mut BTreeMap<String, CommitFileInfo>,
    ) -> Result<(), CopyFailure> {
        loop {
            while self.chunks.len() < self.target.settings.max_concurrent_file_chunks {
                let Some((file, offset, length)) = self.next_chunk().map_err(CopyFailure::Fatal)?
                else {
                    break;
                };
                self.spawn_chunk(file, offset, length);
            }
            if self.chunks.is_empty() && self.finalizing.is_empty() {
                return Ok(());
            }
            tokio::select! {
                Some(joined) = self.chunks.join_next() => {
                    let outcome = joined.map_err(|e| CopyFailure::Fatal(RecoveryError::Task(e.to_string())))?;
                    self.on_chunk(outcome)?;
                }
                Some(joined) = self.finalizing.join_next() => {
                    let outcome = joined.map_err(|e| CopyFailure::Fatal(RecoveryError::Task(e.to_string())))?;
                    self.on_finalized(outcome, done)?;
                }
            }
        }
    }

    fn on_chunk(&mut self, outcome: ChunkOutcome) -> Result<(), CopyFailure> {
        match outcome {
            ChunkOutcome::Written { file, range } => {
                self.target
                    .progress
                    .update(|p| p.bytes_recovered += range.length);
                let state = self.files.get_mut(&file).ok_or_else(|| {
                    CopyFailure::Fatal(RecoveryError::Task(format!("chunk of unknown file {file}")))
                })?;
                state.written.push(range);
                state.chunks_left -= 1;
                if state.chunks_left == 0 {
                    self.finalize(file);
                }
                Ok(())
            }
            ChunkOutcome::Failed(failure) => Err(failure),
        }
    }

    fn on_finalized(
        &mut self,
        outcome: FinalizeOutcome,
        done: &mut BTreeMap<String, CommitFileInfo>,
    ) -> Result<(), CopyFailure> {
        match outcome {
            FinalizeOutcome::Verified { file } => {
                let info = &self.session.files[file];
                self.target.count_done(info, false);
                self.files.remove(&file);
                done.insert(info.name.clone(), info.clone());
                Ok(())
            }
            FinalizeOutcome::Mismatch { file, reason } => {
                let info = &self.session.files[file];
                let attempts = self.files.get(&file).map_or(0, |state| state.attempts);
                if attempts >= self.target.settings.max_file_attempts {
                    return Err(CopyFailure::Fatal(RecoveryError::ChecksumMismatch {
                        name: info.name.clone(),
                        attempts,
                        reason,
                    }));
                }
                tracing::warn!(file = %info.name, %reason, "copied file failed verification; fetching it again");
                self.target.progress.update(|p| {
                    p.file_refetches += 1;
                    p.bytes_recovered = p.bytes_recovered.saturating_sub(info.length);
                });
                // Fetched again once the chunks already requested are: the file's old
                // state stays in `files` until then, counting its attempts.
                self.to_start.push_front(file);
                Ok(())
            }
            FinalizeOutcome::Failed(error) => Err(CopyFailure::Fatal(error)),
        }
    }

    fn spawn_chunk(&mut self, file: usize, offset: u64, length: usize) {
        let Some(handle) = self.files.get(&file).and_then(|state| state.handle.clone()) else {
            return;
        };
        let fetch = ChunkFetch {
            client: self.target.client.clone(),
            limiter: self.target.limiter.clone(),
            progress: self.target.progress.clone(),
            settings: self.target.settings.clone(),
            shard: self.shard.clone(),
            session: self.session.session_id.clone(),
            name: self.session.files[file].name.clone(),
            offset,
            length,
        };
        self.chunks.spawn(async move {
            let data = match fetch.fetch().await {
                Ok(data) => data,
                Err(failure) => return ChunkOutcome::Failed(failure),
            };
            let path_name = fetch.name.clone();
            let written =
                tokio::task::spawn_blocking(move || write_chunk(&*handle, &data, offset)).await;
            match written {
                Ok(Ok(crc32)) => ChunkOutcome::Written {
                    file,
                    range: RangeChecksum {
                        offset,
                        length: length as u64,
                        crc32,
                    },
                },
                Ok(Err(error)) => ChunkOutcome::Failed(CopyFailure::Fatal(RecoveryError::io(
                    format!("{path_name}{TEMP_FILE_SUFFIX}"),
                    error,
                ))),
                Err(error) => {
                    ChunkOutcome::Failed(CopyFailure::Fatal(RecoveryError::Task(error.to_string())))
                }
            }
        });
    }

    /// Fsyncs, verifies and renames a file whose chunks are all written, in the background.
    fn finalize(&mut self, file: usize) {
        let info = self.session.files[file].clone();
        let Some(state) = self.files.get_mut(&file) else {
            return;
        };
        let Some(handle) = state.handle.take() else {
            return;
        };
        let mut written = std::mem::take(&mut state.written);
        written.sort_unstable_by_key(|range| range.offset);
        let temp_path = state.temp_path.clone();
        let final_path = self.index_dir.join(&info.name);
        let storage = self.target.storage.clone();
        self.finalizing.spawn_blocking(move || {
            if let Err(error) = handle.sync_all(SyncSite::RecoveryFile) {
                return FinalizeOutcome::Failed(RecoveryError::io(&temp_path, error));
            }
            drop(handle);
            match verify_written_file(&*storage, &temp_path, &info, &written) {
                Ok(()) => {}
                Err(VerifyFailure::Mismatch(reason)) => {
                    return FinalizeOutcome::Mismatch { file, reason };
                }
                Err(VerifyFailure::Io(error)) => return FinalizeOutcome::Failed(error),
            }
            match storage.rename(&temp_path, &final_path) {
                Ok(()) => FinalizeOutcome::Verified { file },
                Err(error) => FinalizeOutcome::Failed(RecoveryError::io(&final_path, error)),
            }
        });
    }

    /// Stops every task still running (after a failure) and waits for them.
    async fn abort(&mut self) {
        self.chunks.shutdown().await;
        while self.finalizing.join_next().await.is_some() {}
    }
}

struct ChunkFetch {
    client: Arc<dyn LeaderClient>,
    limiter: Arc<RateLimiter>,
    progress: RecoveryProgress,
    settings: RecoverySettings,
    shard: ShardId,
    session: SessionId,
    name: String,
    offset: u64,
    length: usize,
}

impl ChunkFetch {
    /// Fetches the chunk, retrying failures with capped backoff.
    async fn fetch(&self) -> Result<ChunkBytes, CopyFailure> {
        let mut attempt = 1;
        loop {
            let throttled = self.limiter.acquire(self.length as u64).await;
            self.progress
                .update(|p| p.target_throttle_time += throttled);
            let request = self.client.read_file_chunk(ReadFileChunkRequest::new(
                self.shard.clone(),
                self.session.clone(),
                self.name.clone(),
                self.offset,
                self.length,
            ));
            let error = match tokio::time::timeout(self.settings.chunk_request_timeout, request)
                .await
            {
                Ok(Ok(chunk)) if chunk.data.len() == self.length => {
                    self.progress
                        .update(|p| p.source_throttle_time += chunk.source_throttle);
                    return Ok(chunk.data);
                }
                Ok(Ok(chunk)) => LeaderError::Unavailable(format!(
                    "short chunk: {} bytes instead of {}",
                    chunk.data.len(),
                    self.length
                )),
                Ok(Err(LeaderError::UnknownSession(_))) => return Err(CopyFailure::SessionLost),
                Ok(Err(error)) => error,
                Err(_) => LeaderError::Timeout(self.settings.chunk_request_timeout),
            };
            if !error.is_retryable() || attempt >= self.settings.max_chunk_attempts {
                return Err(CopyFailure::Fatal(RecoveryError::leader(
                    format!("reading [{}] at offset {}", self.name, self.offset),
                    error,
                )));
            }
            tracing::debug!(file = %self.name, offset = self.offset, %error, attempt, "retrying a chunk");
            self.progress.update(|p| p.chunk_retries += 1);
            tokio::time::sleep(self.settings.backoff(attempt)).await;
            attempt += 1;
        }
    }
}

enum VerifyFailure {
    Mismatch(String),
    Io(RecoveryError),
}

/// Writes a chunk's pieces at `offset` on; returns the CRC-32 of the bytes written.
fn write_chunk(file: &dyn StorageFile, data: &ChunkBytes, offset: u64) -> std::io::Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    let mut at = offset;
    for piece in data.pieces() {
        hasher.update(piece);
        file.write_all_at(piece, at)?;
        at += piece.len() as u64;
    }
    Ok(hasher.finalize())
}

/// Reads the file back and checks its length and checksum against the leader's.
fn verify_file(
    storage: &dyn Storage,
    path: &Path,
    info: &CommitFileInfo,
) -> Result<(), VerifyFailure> {
    check_length(storage, path, info)?;
    check_checksums(info, checksum_file(storage, path, info.checksum_kind))
}

/// Checks a copied file's length, and its checksum computed from the CRC-32s of the chunks
/// written into it (only the footer is read back).
fn verify_written_file(
    storage: &dyn Storage,
    path: &Path,
    info: &CommitFileInfo,
    written: &[RangeChecksum],
) -> Result<(), VerifyFailure> {
    check_length(storage, path, info)?;
    check_checksums(
        info,
        checksum_file_from_ranges(storage, path, info.checksum_kind, written),
    )
}

fn check_length(
    storage: &dyn Storage,
    path: &Path,
    info: &CommitFileInfo,
) -> Result<(), VerifyFailure> {
    let length = storage
        .metadata(path)
        .map_err(|e| VerifyFailure::Io(RecoveryError::io(path, e)))?
        .len;
    if length != info.length {
        return Err(VerifyFailure::Mismatch(format!(
            "{length} bytes instead of {}",
            info.length
        )));
    }
    Ok(())
}

fn check_checksums(
    info: &CommitFileInfo,
    computed: tandem_engine::Result<tandem_engine::shard::FileChecksums>,
) -> Result<(), VerifyFailure> {
    match computed {
        Ok(computed) if info.matches(computed) => Ok(()),
        Ok(computed) => Err(VerifyFailure::Mismatch(format!(
            "checksums {:#010x}/{:?} instead of {:#010x}/{:?}",
            computed.checksum, computed.footer_checksum, info.checksum, info.footer_checksum
        ))),
        Err(tandem_engine::EngineError::Corrupted { reason, .. }) => {
            Err(VerifyFailure::Mismatch(reason))
        }
        Err(error) => Err(VerifyFailure::Io(RecoveryError::Engine(error))),
    }
}

/// True when `path` holds exactly the leader's file (a resumed recovery reuses it).
fn is_verified(storage: &dyn Storage, path: &Path, info: &CommitFileInfo) -> bool {
    storage.is_file(path) && verify_file(storage, path, info).is_ok()
}

/// Removes from `dir` every file not named in `keep` (stale files of another commit, temp files
/// of an interrupted recovery). The recovery owns the directory.
fn clear_dir(
    storage: &dyn Storage,
    dir: &Path,
    keep: &HashSet<String>,
) -> Result<(), RecoveryError> {
    let entries = storage.list(dir).map_err(|e| RecoveryError::io(dir, e))?;
    for entry in entries {
        if keep.contains(&entry.name) {
            continue;
        }
        let path = dir.join(&entry.name);
        let removed = if entry.kind == EntryKind::Dir {
            storage.remove_dir_all(&path)
        } else {
            storage.remove_file(&path)
        };
        removed.map_err(|e| RecoveryError::io(&path, e))?;
    }
    sync_dir(storage, dir)
}

/// fsyncs `dir` so that the files renamed or removed in it survive a power cut.
fn sync_dir(storage: &dyn Storage, dir: &Path) -> Result<(), RecoveryError> {
    durable_file::sync_dir(storage, dir, SyncSite::RecoveryDir).map_err(from_durable_file)
}

fn from_durable_file(error: DurableFileError) -> RecoveryError {
    RecoveryError::io(error.path, error.source)
}

/// The copy is complete: every file of the commit is in place with its length, nothing else.
fn verify_copy(
    storage: &dyn Storage,
    index_dir: &Path,
    session: &RecoverySessionInfo,
) -> Result<(), RecoveryError> {
    for file in &session.files {
        let path = index_dir.join(&file.name);
        let length = storage
            .metadata(&path)
            .map_err(|e| RecoveryError::io(&path, e))?
            .len;
        if length != file.length {
            return Err(RecoveryError::ChecksumMismatch {
                name: file.name.clone(),
                attempts: 1,
                reason: format!("{length} bytes in place instead of {}", file.length),
            });
        }
    }
    let count = storage
        .list(index_dir)
        .map_err(|e| RecoveryError::io(index_dir, e))?
        .len();
    if count != session.files.len() {
        return Err(RecoveryError::InvalidFileList(format!(
            "{count} files in {} after the copy, {} expected",
            index_dir.display(),
            session.files.len()
        )));
    }
    Ok(())
}

/// Checks that the copied commit holds the checkpoints the session announced: replication
/// resumes at the session's local checkpoint + 1, so a leader whose session metadata
/// disagreed with the files it served would otherwise make the follower skip operations (a
/// checkpoint above the commit's) or take a history it does not hold for complete.
fn check_commit_matches_session(
    engine: &ShardEngine,
    session: &RecoverySessionInfo,
) -> Result<(), RecoveryError> {
    let held = (engine.local_checkpoint(), engine.max_seq_no());
    let announced = (session.local_checkpoint, session.max_seq_no);
    if held != announced {
        return Err(RecoveryError::InvalidFileList(format!(
            "the session announced local checkpoint {} and max_seq_no {}, but the copied \
             commit holds {} and {}",
            announced.0, announced.1, held.0, held.1
        )));
    }
    Ok(())
}

/// Renews the recovery's lease in the background until dropped.
struct LeaseRenewer {
    task: tokio::task::JoinHandle<()>,
}

impl LeaseRenewer {
    fn spawn(
        client: Arc<dyn LeaderClient>,
        shard: ShardId,
        lease_id: String,
        interval: Duration,
        progress: RecoveryProgress,
    ) -> LeaseRenewer {
        let task = tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match client
                    .renew_retention_lease(RenewRetentionLeaseRequest::new(
                        shard.clone(),
                        lease_id.clone(),
                        RETAIN_ALL,
                    ))
                    .await
                {
                    Ok(()) => progress.update(|p| p.lease_renewals += 1),
                    Err(error) => {
                        tracing::warn!(%shard, %error, "could not renew the recovery's retention lease")
                    }
                }
            }
        });
        LeaseRenewer { task }
    }
}

impl Drop for LeaseRenewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_traversal_and_odd_names_are_refused() {
        for name in [
            "",
            ".",
            "..",
            "../x",
            "/abs",
            "a/b",
            "a\\b",
            "nul\0",
            "x.recovering",
            &"n".repeat(256),
        ] {
            assert!(
                matches!(
                    validate_file_name(name),
                    Err(RecoveryError::InvalidFileName { .. })
                ),
                "{name:?} accepted"
            );
        }
        for name in ["meta.json", ".managed.json", "0a1b2c.idx", "0a1b2c.42.del"] {
            validate_file_name(name).unwrap();
        }
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        let defaults = RecoverySettings::default();
        assert_eq!(defaults.chunk_size_bytes, 1 << 20);
        assert_eq!(defaults.max_concurrent_file_chunks, 5);
        defaults.validate().unwrap();
        for concurrency in [0, 11] {
            let settings = RecoverySettings {
                max_concurrent_file_chunks: concurrency,
                ..RecoverySettings::default()
            };
            let error = settings.validate().unwrap_err().to_string();
            assert!(error.contains("max_concurrent_file_chunks"), "{error}");
        }
        for concurrency in [1, 10] {
            RecoverySettings {
                max_concurrent_file_chunks: concurrency,
                ..RecoverySettings::default()
            }
            .validate()
            .unwrap();
        }
        let zero_chunk = RecoverySettings {
            chunk_size_bytes: 0,
            ..RecoverySettings::default()
        };
        assert!(zero_chunk.validate().is_err());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let settings = RecoverySettings {
            retry_initial_backoff: Duration::from_millis(10),
            retry_max_backoff: Duration::from_millis(70),
            ..RecoverySettings::default()
        };
        let delays: Vec<u128> = (1..=6)
            .map(|retry| settings.backoff(retry).as_millis())
            .collect();
        assert_eq!(delays, [10, 20, 40, 70, 70, 70]);
        assert_eq!(settings.backoff(u32::MAX), Duration::from_millis(70));
    }
}
