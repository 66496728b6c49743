//! `ShardEngine`: one shard of an index: tantivy + translog + sequence numbers + soft-delete
//! history + retention leases.
//!
//! On disk, a shard directory holds `index/` (the tantivy index), `translog/` (the write-ahead
//! log) and `retention_leases.log` (see `lease_log`). Each tantivy commit carries a [`CommitPayload`]: the local
//! checkpoint and max_seq_no at the commit, the max_seq_no of updates or deletes, the history
//! uuid, the primary term, the translog generation the commit does not cover, the retention
//! leases and the minimum retained sequence number.
//!
//! Guarantees (DESIGN.md §7):
//! - *acknowledged writes survive a crash* (invariant 1): with `request` durability a write is
//!   acknowledged only after its translog record is fsynced; on open the translog is replayed on
//!   top of the last commit;
//! - *the history is complete above `min_retained_seq_no`* (invariants 3 and 4): updated and
//!   deleted documents stay in their segments, and only merges the engine schedules itself may
//!   drop them: over committed segments whose deleted documents are all below
//!   `min_retained_seq_no`, or whose retained deleted documents a commit already holds copies
//!   of (`carry.rs`);
//! - *replica application is idempotent and order-independent* (invariant 5).
//!
//! The state of a shard is split into parts that own it: [`write::WritePath`] (the batches
//! lock, the tantivy writer, the version map and the tail), [`checkpoints::Checkpoints`]
//! (processed and persisted sequence numbers and the waits on them), [`refresh::Commits`] (the
//! refresh lock, the reader each refresh installs and the merges it schedules) and
//! [`retention::Retention`] (the history cache, the leases and `min_retained_seq_no`); the
//! translog, the identity (history uuid, translog uuid, primary term), the dynamic settings and
//! the latched failure sit beside them in `ShardInner`.
//!
//! Background work (refresh on the interval, translog fsync under `async` durability, flush at
//! the translog threshold, lease expiry) runs as one pass per shard in the node-wide
//! `scheduler`, a timer thread and a small worker pool: an idle shard holds no thread.
//!
//! Concurrency: writers hold the `batches` read lock and one version-map stripe lock (the per-id
//! lock) while they apply an operation; a refresh takes the `batches` write lock only to fix
//! its payload and take the tantivy writer, so a commit always holds exactly the operations
//! whose processing finished by then, and writes go on while tantivy finishes the commit (their
//! batches are parked, see `writer_slot.rs`); only a carry whose group keeps being hit by
//! deletes holds it through two commits (`carry.rs`). Translog fsyncs happen after the locks are
//! released, so concurrent writers share them (group commit).
//!
//! Lock order: a thread holding one of these locks takes only locks further down the list.
//! `lock_order.rs` checks it on every acquisition in debug builds.
//! 1. `Refresh`: `Commits::refresh_lock`, held through a refresh and a merge selection.
//! 2. `Config`: the dynamic settings (written while the translog is fsynced on a change to
//!    `request` durability, whose listener takes `Tracker`).
//! 3. `Batches`: `WritePath::batches`.
//! 4. The version-map stripes (unranked; several only through `lock_many`, in increasing
//!    order), then the writer slot (unranked; under it only `Merging` and `Failure` are
//!    taken).
//! 5. `Tail`: `WritePath::tail`.
//! 6. `Tracker`: `Checkpoints::tracker` (the translog's durability listener takes it outside
//!    every translog lock); the registry of task wakers is taken under it or alone (unranked;
//!    nothing is taken under it).
//! 7. `Searcher`: `Commits::searcher`, swapped under `Tail`.
//! 8. `Leases`: `Retention::leases`.
//! 9. `Merging`: `Commits::merging`, also taken under the writer slot when a merge starts.
//! 10. `Failure`: the latched failure; taken anywhere, nothing is taken under it.

mod carry;
mod changes;
mod checkpoints;
mod commit_point;
pub mod counters;
mod lock_order;
mod refresh;
mod retention;
mod rollback;
mod scheduler;
pub mod verify;
mod write;
mod writer_slot;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use checkpoints::Checkpoints;
use lock_order::{LockRank, RankedMutex, RankedRwLock};
use parking_lot::Mutex;
use refresh::Commits;
use retention::Retention;
use scheduler::{Pass, Scheduled};
use serde::{Deserialize, Serialize};
use tantivy::indexer::NoMergePolicy;
use tantivy::schema::document::Document;
use tantivy::store::Compressor;
use tantivy::{IndexSettings, IndexWriter, ReloadPolicy, Searcher};
use write::WritePath;
use writer_slot::ShardWriter;

use crate::checkpoint::LocalCheckpointTracker;
use crate::error::{EngineError, Result};
use crate::history::HistoryCache;
use crate::lease_log::LeaseLog;
use crate::mapping::DocumentMapper;
use crate::segment_directory::SegmentDirectory;
use crate::storage::StorageRef;
use crate::translog::Translog;
use crate::types::{PrimaryTerm, SeqNo};

pub use crate::history::HistoryCeiling;
pub use crate::lease_log::{LEASE_LOG_COMPACT_MIN_BYTES, RETENTION_LEASES_LOG_FILE};
pub use crate::leases::{
    RetentionLease, RetentionLeases, MAX_RETENTION_LEASES_PER_SHARD, MAX_RETENTION_LEASE_ID_BYTES,
    MAX_RETENTION_LEASE_SOURCE_BYTES,
};
pub use changes::{ChangesRequest, ChangesResponse};
pub use checkpoints::GlobalCheckpointWait;
pub use commit_point::{
    checksum_file, checksum_file_from_ranges, footer_checksum, ChecksumKind, CommitFileInfo,
    FileChecksums, PinnedCommit, PinnedFile, RangeChecksum, FOLLOWER_MARKER_FILE, MANAGED_FILE,
    META_FILE,
};
pub use rollback::RollbackOutcome;
pub use write::{
    DeleteRequest, GetResult, IndexRequest, WriteOutcome, WriteRequest, WriteResult, APPLY_CHUNK,
    MAX_ID_BYTES, MAX_SOURCE_BYTES,
};

const INDEX_DIR: &str = "index";
const TRANSLOG_DIR: &str = "translog";
/// How often expired leases are removed (and the longest a shard's background pass waits,
/// so a failed shard or a changed setting is looked at again within it).
const LEASE_EXPIRY_CHECK: Duration = Duration::from_secs(1);

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// After its translog record is fsynced (Elasticsearch's `request`, the default).
    Request,
    /// Immediately; the translog is fsynced every `interval` (Elasticsearch's `async`).
    Async {
        /// Time between background fsyncs.
        interval: Duration,
    },
}

/// How a shard behaves.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// When writes are acknowledged.
    pub durability: Durability,
    /// Interval of the background refresh; `None` refreshes only on demand.
    pub refresh_interval: Option<Duration>,
    /// Memory budget of the tantivy writer, in bytes.
    pub writer_memory_bytes: usize,
    /// Number of tantivy indexing threads.
    pub indexing_threads: usize,
    /// Leases not renewed for this long expire (`index.soft_deletes.retention_lease.period`).
    pub retention_lease_period: Duration,
    /// Operations kept below the global checkpoint regardless of leases
    /// (`index.soft_deletes.retention.operations`).
    pub retention_operations: u64,
    /// A follower shard refuses direct (primary) writes.
    pub follower: bool,
    /// A commit (Elasticsearch's flush) starts once the translog holds more than this many
    /// bytes (`index.translog.flush_threshold_size`), whatever the refresh interval.
    pub translog_flush_threshold_bytes: u64,
    /// The tantivy writer (its indexing, segment-updater and merge threads and the index lock
    /// file) is closed once everything written was committed and nothing was written for this
    /// long, and opened again by the next write; a shard that was not written since it was
    /// opened holds no writer.
    pub writer_idle_release: Duration,
    /// Where the shard's files are: the file system, or a simulated disk in tests.
    pub storage: StorageRef,
    /// When false, the shard starts no merge of its own (refreshes select none): a shard
    /// opened for maintenance, such as a rollback, whose merges of big segments would hold
    /// the maintenance up. Merges asked for (a force merge, a rollback's) still run.
    pub scheduled_merges: bool,
}

/// Default of [`ShardConfig::writer_idle_release`].
pub const DEFAULT_WRITER_IDLE_RELEASE: Duration = Duration::from_secs(30);

/// Default of [`ShardConfig::translog_flush_threshold_bytes`] (Elasticsearch's 512mb).
pub const DEFAULT_TRANSLOG_FLUSH_THRESHOLD_BYTES: u64 = 512 << 20;

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            durability: Durability::Request,
            refresh_interval: Some(Duration::from_secs(1)),
            writer_memory_bytes: 128 * 1024 * 1024,
            indexing_threads: std::thread::available_parallelism()
                .map(|cores| cores.get().clamp(1, 4))
                .unwrap_or(2),
            retention_lease_period: Duration::from_secs(12 * 3600),
            retention_operations: 0,
            follower: false,
            translog_flush_threshold_bytes: DEFAULT_TRANSLOG_FLUSH_THRESHOLD_BYTES,
            writer_idle_release: DEFAULT_WRITER_IDLE_RELEASE,
            storage: crate::storage::real(),
            scheduled_merges: true,
        }
    }
}

/// The part of a [`ShardConfig`] that may change while the shard is open (Elasticsearch's
/// dynamic index settings). The background pass and the write path read it on every use, and
/// an update wakes the background pass, so it takes effect at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DynamicShardConfig {
    /// When writes are acknowledged.
    pub durability: Durability,
    /// Interval of the background refresh; `None` refreshes only on demand.
    pub refresh_interval: Option<Duration>,
    /// Leases not renewed for this long expire.
    pub retention_lease_period: Duration,
    /// Operations kept below the global checkpoint regardless of leases.
    pub retention_operations: u64,
    /// A commit starts once the translog holds more than this many bytes.
    pub translog_flush_threshold_bytes: u64,
}

impl ShardConfig {
    /// The dynamic part of this configuration.
    pub fn dynamic(&self) -> DynamicShardConfig {
        DynamicShardConfig {
            durability: self.durability,
            refresh_interval: self.refresh_interval,
            retention_lease_period: self.retention_lease_period,
            retention_operations: self.retention_operations,
            translog_flush_threshold_bytes: self.translog_flush_threshold_bytes,
        }
    }
}

/// What every commit records, as JSON in tantivy's commit payload.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommitPayload {
    /// Every operation at or below it is in this commit.
    pub local_checkpoint: SeqNo,
    /// The highest sequence number in this commit.
    pub max_seq_no: SeqNo,
    /// The highest sequence number of an update or delete known at the commit.
    pub max_seq_no_of_updates: SeqNo,
    /// Identifies this shard's history; a new one is made when the history is reset.
    pub history_uuid: String,
    /// The primary term at the commit.
    pub primary_term: PrimaryTerm,
    /// Identifies the translog that goes with this index.
    pub translog_uuid: String,
    /// Translog generations from this one on hold operations the commit may not contain.
    pub translog_generation: u64,
    /// The leases at the commit.
    pub retention_leases: RetentionLeases,
    /// Merges may drop deleted documents below this sequence number.
    pub min_retained_seq_no: SeqNo,
    /// Set once the shard was promoted from follower to primary: the recovery point of the
    /// promotion (see [`ShardPromotion`]). Carried by every later commit; a newer promotion
    /// replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<ShardPromotion>,
    /// The history ceilings of the commit's segments that have one: the operations a rollback
    /// voided (see `crate::history`). Held by the segments, so a copy of the commit's files
    /// keeps them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history_ceilings: Vec<HistoryCeiling>,
}

/// The most operations a promotion records at its recovery point
/// ([`ShardPromotion::boundary`]).
pub const PROMOTION_BOUNDARY_OPERATIONS: usize = 8;

/// How far below its checkpoint a promotion looks for the operations of its boundary.
const PROMOTION_BOUNDARY_SCAN: i64 = 256;

/// What a follower shard recorded when it was promoted to a primary
/// ([`ShardEngine::promote_to_primary`]): the point up to which its history is the old
/// leader's, which a failback of the old leader starts from (DESIGN.md §10).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardPromotion {
    /// The local checkpoint at the promotion: every operation at or below it came from the
    /// old leader, so the two histories share everything up to it.
    pub local_checkpoint: SeqNo,
    /// The highest sequence number the shard held at the promotion. Operations between the
    /// checkpoint and it had arrived out of order; the gaps among them were filled with
    /// no-ops in the new term.
    pub max_seq_no: SeqNo,
    /// The primary term the promoted shard writes in (above every term of its history).
    pub primary_term: PrimaryTerm,
    /// When it was promoted, in milliseconds since the Unix epoch.
    pub promoted_at_millis: u64,
    /// The highest operations at or below the checkpoint the shard held, highest first (at
    /// most [`PROMOTION_BOUNDARY_OPERATIONS`]), as a verify compares them: a failback checks
    /// that the old leader holds the same operations at these sequence numbers, so that
    /// both histories provably agree up to the checkpoint.
    pub boundary: Vec<verify::VerifyEntry>,
    /// The leader shard the shard followed until the promotion, when the promotion said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<FollowedLeader>,
    /// The id of the lease the promotion added (see [`PromotionLease`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
}

/// What a promotion records and adds beside the new term: the content of a shard's promotion
/// marker (see [`crate::index::Index::set_follower_markers`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionRequest {
    /// The lease to add, if any.
    #[serde(default)]
    pub lease: Option<PromotionLease>,
    /// The leader shard followed until now, if known.
    #[serde(default)]
    pub leader: Option<FollowedLeader>,
}

/// The retention lease a promotion adds on the promoted shard, keeping its history from the
/// promotion's checkpoint + 1 so that the old leader can fail back by operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionLease {
    /// The lease id.
    pub id: String,
    /// How long the lease lasts, in milliseconds from the promotion.
    pub period_millis: u64,
}

/// The leader shard a promoted shard followed: whom a failback must come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowedLeader {
    /// The alias of the leader's cluster on the promoted shard's cluster.
    pub remote_cluster: String,
    /// The leader index.
    pub leader_index: String,
    /// Its uuid.
    pub leader_index_uuid: String,
    /// The leader shard's history uuid.
    pub leader_history_uuid: String,
    /// The leader shard's max_seq_no as the follower last heard it (-1 when never heard):
    /// how many operations the promotion may have lost is this minus the checkpoint.
    pub leader_max_seq_no: SeqNo,
}

/// One segment of a shard's reader (see [`ShardEngine::segments`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment's id (tantivy's uuid, as its files are named).
    pub name: String,
    /// Live documents.
    pub live_docs: u64,
    /// Soft-deleted documents still in the segment (history, and updated documents).
    pub deleted_docs: u64,
    /// Bytes of the segment's files.
    pub size_in_bytes: u64,
}

/// Checkpoints and counters of a shard, at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShardStats {
    /// Every operation at or below it has been applied.
    pub local_checkpoint: SeqNo,
    /// Every operation at or below it is durable (one copy: the global checkpoint).
    pub global_checkpoint: SeqNo,
    /// Highest sequence number seen.
    pub max_seq_no: SeqNo,
    /// Highest sequence number of an update or delete.
    pub max_seq_no_of_updates_or_deletes: SeqNo,
    /// Merges may drop deleted documents below it.
    pub min_retained_seq_no: SeqNo,
    /// The primary term.
    pub primary_term: PrimaryTerm,
    /// Live documents in the last refreshed reader.
    pub doc_count: u64,
    /// Documents (live and deleted) in the last refreshed reader.
    pub doc_count_with_history: u64,
    /// Segments in the last refreshed reader.
    pub segment_count: usize,
    /// Operations not yet in a refreshed reader.
    pub tail_operations: usize,
    /// Estimated bytes those operations hold in memory (see
    /// [`ShardEngine::indexing_buffer_bytes`]).
    pub indexing_buffer_bytes: u64,
    /// Bytes of the translog.
    pub translog_size_in_bytes: u64,
    /// Number of refreshes (commits) since the shard was opened.
    pub refresh_count: u64,
    /// Why the shard failed (see [`ShardEngine::failure`]); `None` while it works.
    pub failure: Option<String>,
}

pub(crate) struct ShardInner {
    /// Where the shard's files are.
    storage: StorageRef,
    dir: PathBuf,
    /// The settings that may change while open; the static ones were used by `open`.
    config: RankedRwLock<DynamicShardConfig>,
    mapper: Arc<DocumentMapper>,
    index: tantivy::Index,
    /// The index's directory, through which the engine lets go of mapped pages it no longer
    /// needs resident.
    directory: SegmentDirectory,
    /// Identifies this shard's history; kept for the shard's lifetime.
    history_uuid: String,
    /// Identifies the translog that goes with this index.
    translog_uuid: String,
    primary_term: AtomicU64,
    /// Version resolution, the tantivy writer and the operations not yet refreshed.
    writes: WritePath,
    /// Sequence numbers processed and persisted, and the waits on them.
    checkpoints: Checkpoints,
    translog: Arc<Translog>,
    /// Refreshes, the reader they install and the merges they schedule.
    commits: Commits,
    /// The history cache, the retention leases and the floor they set.
    retention: Retention,
    /// What the shard has done since it was opened (shared with merge waiters).
    counters: Arc<counters::ShardCounters>,
    /// The latched failure (see [`ShardInner::fail`]).
    failure: RankedMutex<Option<String>>,
    /// The shard's last promotion, carried by every commit (see [`ShardPromotion`]).
    promotion: Mutex<Option<ShardPromotion>>,
    /// Set when the translog's disk was full (see [`ShardInner::translog_failure`]): writes
    /// are refused before they take a sequence number until a sync of the translog succeeds.
    no_space: AtomicBool,
    /// The reason of a block on writes set from outside (see [`ShardEngine::set_write_block`]);
    /// `write_blocked` says whether there is one without taking the lock.
    write_block: Mutex<Option<Arc<str>>>,
    write_blocked: AtomicBool,
    /// The translog flush threshold of the dynamic settings, readable under any lock (the
    /// write path compares the translog with it while it holds the batches lock).
    translog_flush_threshold_bytes: AtomicU64,
    /// See [`ShardConfig::writer_idle_release`].
    writer_idle_release: Duration,
    /// See [`ShardConfig::writer_memory_bytes`]: the most tantivy's in-memory segments of
    /// the shard hold before tantivy writes them out by itself.
    writer_memory_bytes: u64,
    /// The shard's background pass in the node-wide scheduler, once registered.
    background: OnceLock<Scheduled>,
    /// See [`ShardConfig::scheduled_merges`].
    scheduled_merges: bool,
}

/// One shard. Cheap to share through `Arc`; all methods take `&self`.
pub struct ShardEngine {
    inner: Arc<ShardInner>,
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// The tantivy settings of every shard. The doc store (which holds `_record`, i.e. every
/// operation's id and source) is lz4-compressed: the changes API reads it one document at a
/// time, and with zstd, block decompression was over a third of that read loop (a third of it
/// creating a decompression context per block). lz4 costs disk space, not ingest speed.
pub fn index_settings() -> IndexSettings {
    IndexSettings {
        docstore_compression: Compressor::Lz4,
        ..IndexSettings::default()
    }
}

impl ShardEngine {
    /// Creates a new, empty shard in `dir` (created if absent; must not hold a shard).
    pub fn create(
        dir: &Path,
        mapper: Arc<DocumentMapper>,
        config: ShardConfig,
        primary_term: PrimaryTerm,
    ) -> Result<ShardEngine> {
        let index_dir = dir.join(INDEX_DIR);
        let translog_dir = dir.join(TRANSLOG_DIR);
        let storage = config.storage.clone();
        for path in [dir, &index_dir, &translog_dir] {
            crate::durable_file::create_dir_all(&*storage, path)?;
        }
        let directory = SegmentDirectory::open(storage.clone(), &index_dir)
            .map_err(|e| EngineError::directory(&index_dir, e))?;
        let exists = tantivy::Index::exists(&directory)
            .map_err(|e| EngineError::directory(&index_dir, e))?;
        if exists {
            return Err(EngineError::InvalidArgument(format!(
                "a shard already exists in {}",
                dir.display()
            )));
        }
        let index = tantivy::Index::builder()
            .schema(mapper.schema().schema.clone())
            .settings(index_settings())
            .open_or_create(directory)
            .map_err(|e| EngineError::index("creating the index", e))?;
        let translog_uuid = uuid::Uuid::new_v4().to_string();
        Translog::create(storage, &translog_dir, &translog_uuid)?;
        let payload = CommitPayload {
            local_checkpoint: SeqNo::NO_OPS_PERFORMED,
            max_seq_no: SeqNo::NO_OPS_PERFORMED,
            max_seq_no_of_updates: SeqNo::NO_OPS_PERFORMED,
            history_uuid: uuid::Uuid::new_v4().to_string(),
            primary_term,
            translog_uuid,
            translog_generation: 1,
            retention_leases: RetentionLeases::default(),
            min_retained_seq_no: SeqNo(0),
            promotion: None,
            history_ceilings: Vec::new(),
        };
        let mut writer: IndexWriter =
            small_writer(&index).map_err(|e| EngineError::index("opening a writer", e))?;
        commit_with_payload(&mut writer, &payload)?;
        drop(writer);
        Self::open(dir, mapper, config)
    }

    /// Opens the shard in `dir`: loads the last commit, replays the translog above it and
    /// rebuilds the checkpoints.
    pub fn open(
        dir: &Path,
        mapper: Arc<DocumentMapper>,
        config: ShardConfig,
    ) -> Result<ShardEngine> {
        let storage = config.storage.clone();
        let (index, directory, payload) = open_last_commit(&storage, dir, "opening the index")?;
        let (translog, records) = Translog::open(
            storage.clone(),
            &dir.join(TRANSLOG_DIR),
            payload.translog_generation,
        )?;
        if translog.uuid() != payload.translog_uuid {
            return Err(EngineError::Corrupted {
                path: dir.join(TRANSLOG_DIR),
                reason: format!(
                    "translog uuid {} does not match the commit's {}",
                    translog.uuid(),
                    payload.translog_uuid
                ),
            });
        }
        let open_writer = writer_opener(&index, &config);
        // With nothing to replay, the writer of the open only collects garbage and makes the
        // open's commit, and is closed right after it: the smallest one tantivy allows does
        // (one indexing thread, one merge thread). Writes open the configured one.
        let writer = if records.is_empty() {
            small_writer(&index)
        } else {
            open_writer()
        }
        .map_err(|e| EngineError::index("opening a writer", e))?;
        writer.set_merge_policy(Box::new(NoMergePolicy));
        // A process killed during a commit or merge leaves files no commit references, among
        // them `<segment>.<opstamp>.del`: the replay below reaches the same opstamps, and its
        // commit would fail with `FileAlreadyExists` on every open. Delete them first (nothing
        // else uses the index yet).
        writer
            .garbage_collect_files()
            .wait()
            .map_err(|e| EngineError::index("removing files of an interrupted commit", e))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| EngineError::index("opening a reader", e))?;
        let searcher = reader.searcher();
        let (lease_log, leases) = match LeaseLog::open(storage.clone(), dir)? {
            (log, loaded) if loaded.version >= payload.retention_leases.version => (log, loaded),
            // The commit knows a later version than the log (a log lost with its directory
            // entry): the commit's leases are the state, and the log starts again from them.
            _ => (
                LeaseLog::create(storage.clone(), dir, &payload.retention_leases)?,
                payload.retention_leases.clone(),
            ),
        };
        let follower = config.follower;
        let inner = Arc::new(ShardInner {
            storage,
            dir: dir.to_path_buf(),
            config: RankedRwLock::new(LockRank::Config, config.dynamic()),
            mapper,
            index,
            directory,
            history_uuid: payload.history_uuid.clone(),
            translog_uuid: payload.translog_uuid.clone(),
            primary_term: AtomicU64::new(payload.primary_term.0),
            writes: WritePath::new(open_writer, writer, payload.max_seq_no_of_updates, follower),
            checkpoints: Checkpoints::new(LocalCheckpointTracker::new(
                payload.max_seq_no,
                payload.local_checkpoint,
            )),
            translog: Arc::new(translog),
            commits: Commits::new(reader, searcher, payload.local_checkpoint),
            retention: Retention::new(
                HistoryCache::with_ceilings(&payload.history_ceilings)?,
                lease_log,
                leases,
                payload.min_retained_seq_no,
            ),
            counters: Arc::default(),
            failure: RankedMutex::new(LockRank::Failure, None),
            promotion: Mutex::new(payload.promotion.clone()),
            no_space: AtomicBool::new(false),
            write_block: Mutex::new(None),
            write_blocked: AtomicBool::new(false),
            translog_flush_threshold_bytes: AtomicU64::new(config.translog_flush_threshold_bytes),
            writer_idle_release: config.writer_idle_release,
            writer_memory_bytes: config.writer_memory_bytes as u64,
            background: OnceLock::new(),
            scheduled_merges: config.scheduled_merges,
        });
        inner.restore_committed_seq_nos(payload.local_checkpoint)?;
        let weak = Arc::downgrade(&inner);
        inner
            .translog
            .set_durability_listener(Box::new(move |seq_nos| {
                if let Some(shard) = weak.upgrade() {
                    shard.checkpoints.mark_persisted(seq_nos);
                }
            }));
        inner.replay(records)?;
        inner.fill_seq_no_gaps()?;
        inner.refresh(true)?;
        inner.release_idle_writer(Duration::ZERO);
        start_background(&inner);
        Ok(ShardEngine { inner })
    }

    /// The shard directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The storage the shard's files are on.
    pub fn storage(&self) -> &StorageRef {
        &self.inner.storage
    }

    /// The index's document mapper.
    pub fn mapper(&self) -> &Arc<DocumentMapper> {
        &self.inner.mapper
    }

    /// The last refreshed searcher (live documents only, through collectors).
    pub fn searcher(&self) -> Searcher {
        self.inner.commits.searcher()
    }

    /// The id and `_source` of the document at `address` of `searcher` (a searcher of this
    /// shard), read through the shard's cached document stores.
    pub fn read_document(
        &self,
        searcher: &Searcher,
        address: tantivy::DocAddress,
    ) -> Result<(String, Vec<u8>)> {
        let segment = searcher.segment_reader(address.segment_ord);
        let history = self.inner.retention.history().get(segment)?;
        let store = history.store(segment)?;
        crate::history::read_id_and_body(store, self.inner.mapper.schema(), address.doc_id)
    }

    /// The tantivy index (for building queries).
    pub fn tantivy_index(&self) -> &tantivy::Index {
        &self.inner.index
    }

    /// Checkpoints and counters.
    pub fn stats(&self) -> ShardStats {
        let inner = &self.inner;
        let (local_checkpoint, global_checkpoint, max_seq_no) = {
            let tracker = inner.checkpoints.lock();
            (
                tracker.processed_checkpoint(),
                tracker.persisted_checkpoint(),
                tracker.max_seq_no(),
            )
        };
        let searcher = self.searcher();
        let doc_count = self.doc_count();
        let doc_count_with_history = searcher
            .segment_readers()
            .iter()
            .map(|segment| {
                let anchors = inner
                    .retention
                    .history()
                    .get(segment)
                    .map_or(0, |history| history.anchor_count());
                u64::from(segment.max_doc()).saturating_sub(anchors as u64)
            })
            .sum();
        ShardStats {
            local_checkpoint,
            global_checkpoint,
            max_seq_no,
            max_seq_no_of_updates_or_deletes: self.max_seq_no_of_updates(),
            min_retained_seq_no: self.min_retained_seq_no(),
            primary_term: self.primary_term(),
            doc_count,
            doc_count_with_history,
            segment_count: searcher.segment_readers().len(),
            tail_operations: inner.writes.tail().len(),
            indexing_buffer_bytes: inner.indexing_buffer_bytes(),
            translog_size_in_bytes: inner.translog.size_in_bytes(),
            refresh_count: inner.commits.refresh_count(),
            failure: inner.failure.lock().clone(),
        }
    }

    /// Live documents in the last refreshed reader (anchors excluded).
    pub fn doc_count(&self) -> u64 {
        let searcher = self.searcher();
        let anchors: u64 = searcher
            .segment_readers()
            .iter()
            .map(|segment| {
                self.inner
                    .retention
                    .history()
                    .get(segment)
                    .map_or(0, |history| history.live_anchors(segment).len() as u64)
            })
            .sum();
        searcher.num_docs().saturating_sub(anchors)
    }

    /// Bytes of the shard's files on disk (segments, translog, state files), listed through
    /// its storage: what `_stats` reports as the store size.
    pub fn store_size_in_bytes(&self) -> u64 {
        fn walk(storage: &StorageRef, dir: &Path, depth: usize) -> u64 {
            let Ok(entries) = storage.list(dir) else {
                return 0;
            };
            entries
                .into_iter()
                .map(|entry| {
                    let path = dir.join(&entry.name);
                    match entry.kind {
                        crate::storage::EntryKind::Dir if depth < 4 => {
                            walk(storage, &path, depth + 1)
                        }
                        crate::storage::EntryKind::Dir => 0,
                        _ => storage.metadata(&path).map_or(0, |metadata| metadata.len),
                    }
                })
                .sum()
        }
        walk(&self.inner.storage, &self.inner.dir, 0)
    }

    /// The segments of the last refreshed reader, as `_cat/segments` shows them: documents
    /// without the engine's anchors, and the bytes of the segment's files.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let inner = &self.inner;
        let searcher = inner.commits.searcher();
        let index_dir = inner.dir.join(INDEX_DIR);
        let files: Vec<(String, u64)> = inner
            .storage
            .list(&index_dir)
            .unwrap_or_default()
            .into_iter()
            .map(|entry| {
                let len = inner
                    .storage
                    .metadata(&index_dir.join(&entry.name))
                    .map_or(0, |metadata| metadata.len);
                (entry.name, len)
            })
            .collect();
        searcher
            .segment_readers()
            .iter()
            .map(|segment| {
                let uuid = segment.segment_id().uuid_string();
                let anchors = inner
                    .retention
                    .history()
                    .get(segment)
                    .map_or(0, |history| history.live_anchors(segment).len() as u64);
                SegmentInfo {
                    live_docs: u64::from(segment.num_docs()).saturating_sub(anchors),
                    deleted_docs: u64::from(segment.num_deleted_docs()),
                    size_in_bytes: files
                        .iter()
                        .filter(|(name, _)| name.starts_with(&uuid))
                        .map(|(_, len)| len)
                        .sum(),
                    name: uuid,
                }
            })
            .collect()
    }

    /// What the shard has done since it was opened (see [`counters::ShardCounters`]).
    pub fn counters(&self) -> counters::CounterSnapshot {
        self.inner.counters.snapshot()
    }

    /// Counts a query or a fetch run on this shard's searcher by its index.
    pub fn record_search(&self, query: Option<Duration>, fetch: Option<Duration>) {
        if let Some(took) = query {
            self.inner.counters.record_query(took);
        }
        if let Some(took) = fetch {
            self.inner.counters.record_fetch(took);
        }
    }

    /// Every operation at or below it has been applied.
    pub fn local_checkpoint(&self) -> SeqNo {
        self.inner.checkpoints.processed()
    }

    /// Every operation at or below it is durable; with one copy this is the global checkpoint.
    pub fn global_checkpoint(&self) -> SeqNo {
        self.inner.checkpoints.persisted()
    }

    /// The highest sequence number seen.
    pub fn max_seq_no(&self) -> SeqNo {
        self.inner.checkpoints.max_seq_no()
    }

    /// The highest sequence number of an update or delete.
    pub fn max_seq_no_of_updates(&self) -> SeqNo {
        self.inner.writes.max_seq_no_of_updates()
    }

    /// Merges may drop deleted documents below it; it never decreases.
    pub fn min_retained_seq_no(&self) -> SeqNo {
        self.inner.retention.min_retained_seq_no()
    }

    /// The current primary term.
    pub fn primary_term(&self) -> PrimaryTerm {
        PrimaryTerm(self.inner.primary_term.load(Ordering::Acquire))
    }

    /// The history uuid.
    pub fn history_uuid(&self) -> String {
        self.inner.history_uuid.clone()
    }

    /// True when the shard refuses direct writes.
    pub fn is_follower(&self) -> bool {
        self.inner.writes.is_follower()
    }

    /// Turns a follower shard into a primary that accepts writes, as Elasticsearch promotes a
    /// replica: bumps the primary term, records the promotion ([`ShardPromotion`]: the local
    /// checkpoint it stands at, its max_seq_no and the operations at its checkpoint) and, if
    /// asked, adds the request's lease, which keeps the history from the checkpoint + 1;
    /// commits, so the new term is durable before any write uses it; then fills the gaps
    /// above the checkpoint with no-ops in the new term and commits again. A crash between
    /// the two commits leaves a primary whose next open fills the gaps (in the new term).
    pub fn promote_to_primary(&self, request: &PromotionRequest) -> Result<ShardPromotion> {
        let inner = &self.inner;
        inner.check_failed()?;
        // A follower is written only by its follow tasks, stopped before a promotion: the
        // checkpoint read here is the one the promotion records (checked again below, with
        // the writers held back).
        let checkpoint_read = inner.checkpoints.processed();
        let boundary = self.promotion_boundary(checkpoint_read)?;
        let now = now_millis();
        // The lease first: when it cannot be added, nothing changed. A crash after it leaves
        // a follower holding it, whose promotion (run again at its next open) replaces it.
        if let Some(lease) = &request.lease {
            inner.update_leases(|leases| {
                leases.put_expiring(
                    &lease.id,
                    SeqNo(checkpoint_read.0 + 1),
                    "promotion",
                    now,
                    now.saturating_add(lease.period_millis),
                )
            })?;
        }
        let batches = inner.writes.hold_batches();
        let (local_checkpoint, max_seq_no) = {
            let tracker = inner.checkpoints.lock();
            (tracker.processed_checkpoint(), tracker.max_seq_no())
        };
        if local_checkpoint != checkpoint_read {
            return Err(EngineError::InvalidArgument(format!(
                "shard [{}] was written while it was being promoted (its checkpoint moved from \
                 [{checkpoint_read}] to [{local_checkpoint}]): stop its follow tasks first",
                inner.dir.display()
            )));
        }
        let highest_term = boundary
            .iter()
            .map(|entry| entry.primary_term)
            .max()
            .unwrap_or(0);
        let term = inner.primary_term.load(Ordering::Acquire).max(highest_term) + 1;
        inner.primary_term.store(term, Ordering::Release);
        let promotion = ShardPromotion {
            local_checkpoint,
            max_seq_no,
            primary_term: PrimaryTerm(term),
            promoted_at_millis: now,
            boundary,
            leader: request.leader.clone(),
            lease_id: request.lease.as_ref().map(|lease| lease.id.clone()),
        };
        *inner.promotion.lock() = Some(promotion.clone());
        inner.writes.set_follower(false);
        inner.commits.mark_dirty();
        drop(batches);
        inner.refresh(true)?;
        let filled = inner.fill_seq_no_gaps()?;
        if filled > 0 {
            inner.refresh(true)?;
        }
        tracing::info!(
            shard = %inner.dir.display(),
            term,
            local_checkpoint = %local_checkpoint,
            max_seq_no = %max_seq_no,
            gaps_filled = filled,
            "follower shard promoted to primary"
        );
        Ok(promotion)
    }

    /// The highest operations at or below `checkpoint` the shard holds, highest first (see
    /// [`ShardPromotion::boundary`]).
    fn promotion_boundary(&self, checkpoint: SeqNo) -> Result<Vec<verify::VerifyEntry>> {
        if checkpoint.0 < 0 {
            return Ok(Vec::new());
        }
        let mut to = checkpoint;
        let mut boundary = Vec::new();
        // Windows of the range below the checkpoint, highest first, until enough are found or
        // the scan bound is reached (a shard whose recent history was merged away records
        // fewer).
        while boundary.len() < PROMOTION_BOUNDARY_OPERATIONS
            && to.0 >= 0
            && checkpoint.0 - to.0 < PROMOTION_BOUNDARY_SCAN
        {
            let from = SeqNo((to.0 - 63).max(0));
            let found = self.operations_present(from, to, 64, usize::MAX)?;
            boundary.extend(
                found
                    .iter()
                    .rev()
                    .take(PROMOTION_BOUNDARY_OPERATIONS - boundary.len())
                    .map(|operation| verify::VerifyEntry::of_operation(operation)),
            );
            to = SeqNo(from.0 - 1);
        }
        Ok(boundary)
    }

    /// The shard's last promotion, if it was ever promoted from a follower.
    pub fn promotion(&self) -> Option<ShardPromotion> {
        self.inner.promotion.lock().clone()
    }

    /// Blocks (`Some(reason)`) or unblocks (`None`) writes: while blocked, direct writes,
    /// no-ops and a follower's applied operations are refused with
    /// [`EngineError::NoSpace`]`(reason)` before they take a sequence number, which clients
    /// and follow tasks retry; reads, refreshes, flushes, merges and retention leases go on.
    /// The index sets it from `index.blocks.read_only_allow_delete` (the node's flood-stage
    /// disk watermark); it is not persisted by the shard.
    pub fn set_write_block(&self, reason: Option<&str>) {
        let mut block = self.inner.write_block.lock();
        *block = reason.map(Arc::from);
        self.inner
            .write_blocked
            .store(block.is_some(), Ordering::Release);
    }

    /// The reason writes are blocked, if they are (see [`ShardEngine::set_write_block`]).
    pub fn write_block(&self) -> Option<String> {
        self.inner.write_block.lock().as_deref().map(str::to_string)
    }

    /// Makes the shard refuse direct writes (it becomes a follower).
    pub fn set_follower(&self, follower: bool) {
        self.inner.writes.set_follower(follower);
    }

    /// Waits until the global checkpoint reaches `seq_no` or `timeout` passes; returns the
    /// global checkpoint at that moment.
    pub fn wait_for_global_checkpoint(&self, seq_no: SeqNo, timeout: Duration) -> SeqNo {
        self.wait_for_global_checkpoint_or_cancel(seq_no, timeout, &AtomicBool::new(false))
    }

    /// Like [`ShardEngine::wait_for_global_checkpoint`], but also returns as soon as `cancelled`
    /// is set and [`ShardEngine::wake_checkpoint_waiters`] called (a long poll whose requester
    /// went away must not hold a thread until its timeout).
    pub fn wait_for_global_checkpoint_or_cancel(
        &self,
        seq_no: SeqNo,
        timeout: Duration,
        cancelled: &AtomicBool,
    ) -> SeqNo {
        self.inner
            .checkpoints
            .wait_for_persisted(seq_no, Instant::now() + timeout, cancelled)
    }

    /// A future that resolves to the global checkpoint once it reaches `seq_no`, or at once
    /// when the shard is closing or has failed: the wait of a long poll served by an async
    /// task, which holds no thread while it waits (see [`GlobalCheckpointWait`] for its
    /// deadline and cancellation).
    pub fn global_checkpoint_reached(&self, seq_no: SeqNo) -> GlobalCheckpointWait {
        GlobalCheckpointWait::new(self.inner.clone(), seq_no)
    }

    /// How many [`GlobalCheckpointWait`]s are registered with this shard, waiting (dropped
    /// ones are not): what a test checks to see that abandoned long polls leave nothing
    /// behind.
    pub fn checkpoint_task_waits(&self) -> usize {
        self.inner.checkpoints.task_waits()
    }

    /// Wakes every thread waiting for the global checkpoint, so that waits whose cancel flag
    /// was set return.
    pub fn wake_checkpoint_waiters(&self) {
        self.inner.checkpoints.wake_waiters();
    }

    /// Marks the shard as closing (`true`): every checkpoint wait in progress returns now,
    /// and later ones return at once, so that a long poll does not keep a closing index in
    /// use until its timeout. `false` undoes it (the close did not happen).
    pub fn set_closing(&self, closing: bool) {
        self.inner.checkpoints.set_closing(closing);
    }

    /// Estimated bytes the shard holds in memory for the operations written since its last
    /// refresh: the tail and the version map, and tantivy's in-memory segments holding the
    /// same operations (see [`indexing_buffer_estimate`]). Only a refresh releases them all:
    /// this is what a node-wide indexing-buffer budget watches.
    pub fn indexing_buffer_bytes(&self) -> u64 {
        self.inner.indexing_buffer_bytes()
    }

    /// Why the shard failed, if it did. A failed shard refuses every write and read of its
    /// history and answers its checkpoint waits at once; it stays failed until it is
    /// reopened, which recovers it from its durable state (the translog is replayed and a
    /// primary fills the sequence numbers lost with the failure with no-ops).
    pub fn failure(&self) -> Option<String> {
        self.inner.failure.lock().clone()
    }

    /// True while the shard's tantivy writer is open (see
    /// [`ShardConfig::writer_idle_release`]): an idle shard holds none.
    pub fn writer_is_open(&self) -> bool {
        self.inner.writes.writer().is_open()
    }

    /// Makes every write so far searchable and durable in a tantivy commit.
    pub fn refresh(&self) -> Result<()> {
        self.inner.refresh(true)
    }

    /// fsyncs the translog (useful with `async` durability).
    pub fn sync_translog(&self) -> Result<()> {
        self.inner.check_failed()?;
        self.inner
            .translog
            .sync()
            .map_err(|e| self.inner.translog_failure(e))
    }

    /// Number of segments being merged now (by merges the engine scheduled; 0 when idle).
    pub fn merging_segment_count(&self) -> usize {
        self.inner.commits.merging_segment_count()
    }

    /// The dynamic settings in effect.
    pub fn dynamic_config(&self) -> DynamicShardConfig {
        self.inner.config()
    }

    /// Applies new dynamic settings at once: the next write obeys the new durability, the
    /// background pass (woken now) the new intervals, the next refresh the new retention. Going from
    /// `async` to `request` durability first fsyncs the translog, so that every write
    /// acknowledged before the change is as durable as those after it.
    pub fn update_dynamic_config(&self, config: DynamicShardConfig) -> Result<()> {
        self.inner.check_failed()?;
        let mut current = self.inner.config.write();
        if config.durability == Durability::Request && current.durability != Durability::Request {
            self.inner
                .translog
                .sync()
                .map_err(|e| self.inner.fail(e.into()))?;
        }
        *current = config;
        self.inner
            .translog_flush_threshold_bytes
            .store(config.translog_flush_threshold_bytes, Ordering::Release);
        drop(current);
        // The next pass is due at a time computed from the old settings.
        self.inner.wake_background();
        Ok(())
    }

    /// Merges the committed segments whose history may be dropped down to at most
    /// `max_num_segments`, and waits for the merges. Segments holding deleted documents at or
    /// above `min_retained_seq_no` are never merged (invariant 4).
    pub fn force_merge(&self, max_num_segments: usize) -> Result<()> {
        self.inner.force_merge(max_num_segments.max(1))
    }

    /// Adds a retention lease.
    pub fn add_retention_lease(
        &self,
        id: &str,
        retaining_seq_no: SeqNo,
        source: &str,
    ) -> Result<RetentionLease> {
        self.inner
            .update_leases(|leases| leases.add(id, retaining_seq_no, source, now_millis()))
    }

    /// Renews a retention lease (its retaining sequence number never goes backwards).
    pub fn renew_retention_lease(
        &self,
        id: &str,
        retaining_seq_no: SeqNo,
    ) -> Result<RetentionLease> {
        self.inner
            .update_leases(|leases| leases.renew(id, retaining_seq_no, now_millis()))
    }

    /// Removes a retention lease.
    pub fn remove_retention_lease(&self, id: &str) -> Result<RetentionLease> {
        self.inner.update_leases(|leases| leases.remove(id))
    }

    /// Bytes of the shard's retention lease log on disk (it grows by one record per lease
    /// change and is compacted past [`LEASE_LOG_COMPACT_MIN_BYTES`]).
    pub fn retention_lease_log_bytes(&self) -> u64 {
        self.inner.retention.lease_log_bytes()
    }

    /// The current leases.
    pub fn retention_leases(&self) -> RetentionLeases {
        self.inner.retention.leases()
    }

    /// Removes the leases not renewed within the lease period before `now_millis`.
    pub fn expire_retention_leases(&self, now_millis: u64) -> Result<Vec<RetentionLease>> {
        let period = self.inner.config().retention_lease_period.as_millis() as u64;
        let mut removed = Vec::new();
        self.inner.update_leases(|leases| {
            removed = leases.expire(now_millis, period);
            Ok(())
        })?;
        Ok(removed)
    }

    /// Stops background work, fsyncs the translog and commits, so a reopen has nothing to replay.
    /// Selects no merge: the writer goes with the engine, and a merge it started now would
    /// only slow down what follows the close (a failback's rollback, a reopen).
    pub fn close(self) -> Result<()> {
        self.stop_background();
        if self.inner.check_failed().is_ok() {
            self.inner.translog.sync()?;
            self.inner.commit_for_close()?;
        }
        Ok(())
    }

    fn stop_background(&self) {
        if let Some(background) = self.inner.background.get() {
            background.cancel();
        }
    }
}

impl Drop for ShardEngine {
    fn drop(&mut self) {
        self.stop_background();
        // What the writer's threads still do (a merge, which tantivy lets run on after the
        // writer is dropped and whose result no one registers) is discarded with the engine:
        // it stops at its next write, rather than competing with what opens the shard next.
        self.inner.directory.retire();
    }
}

/// The indexing buffer of a shard whose tail and version map hold `buffered` bytes (their
/// estimate): those bytes, plus tantivy's in-memory segments of the same operations, counted
/// as the same bytes again up to the writer's budget `writer_memory_bytes` (past it tantivy
/// writes a segment out by itself). tantivy does not report its arena's size, so this is an
/// estimate, as Elasticsearch's `RamUsageEstimator` is; it makes the node-wide budget cover the
/// writers' buffers too, so that many shards written at once cannot each hold a full arena
/// beside it.
pub fn indexing_buffer_estimate(buffered: u64, writer_memory_bytes: u64) -> u64 {
    buffered.saturating_add(buffered.min(writer_memory_bytes))
}

impl ShardInner {
    /// See [`ShardEngine::indexing_buffer_bytes`].
    fn indexing_buffer_bytes(&self) -> u64 {
        indexing_buffer_estimate(self.writes.buffered_bytes(), self.writer_memory_bytes)
    }

    /// The dynamic settings in effect (a copy: the lock is not held while they are used).
    fn config(&self) -> DynamicShardConfig {
        *self.config.read()
    }

    fn check_failed(&self) -> Result<()> {
        match &*self.failure.lock() {
            Some(reason) => Err(EngineError::Closed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Latches a failure: an engine that could not apply or persist an operation stops
    /// accepting work until it is reopened (and recovers from its durable state).
    fn fail(&self, error: EngineError) -> EngineError {
        let error = self.with_directory_cause(error);
        {
            let mut failure = self.failure.lock();
            if failure.is_some() {
                return error;
            }
            tracing::error!(shard = ?self.dir, %error, "shard engine failed");
            *failure = Some(error.to_string());
        }
        // After the failure lock (the last in the lock order) is released.
        self.checkpoints.set_failed();
        error
    }

    /// tantivy reports an I/O error of one of its threads only as a dead thread ("an index
    /// writer was killed"); this names the failed call the index directory recorded.
    fn with_directory_cause(&self, error: EngineError) -> EngineError {
        match error {
            EngineError::Index {
                context,
                source:
                    source @ (tantivy::TantivyError::ErrorInThread(_)
                    | tantivy::TantivyError::SystemError(_)),
            } => match self.directory.first_write_failure() {
                Some(cause) => EngineError::IndexThreadFailed {
                    context,
                    source,
                    cause,
                },
                None => EngineError::Index { context, source },
            },
            other => other,
        }
    }

    /// The engine's answer to a failed translog sync: a full disk blocks writes (no
    /// sequence number is taken until a sync succeeds, see [`ShardInner::check_space`]) and
    /// keeps the shard open, reads and all; any other failure latches the shard.
    fn translog_failure(&self, error: crate::translog::TranslogError) -> EngineError {
        if let crate::translog::TranslogError::NoSpace { .. } = &error {
            if !self.no_space.swap(true, Ordering::AcqRel) {
                tracing::error!(shard = ?self.dir, %error, "translog disk full: writes refused until space is freed");
            }
            return EngineError::NoSpace(format!(
                "shard [{}]: {error}; writes are refused until space is freed",
                self.dir.display()
            ));
        }
        self.fail(error.into())
    }

    /// Refuses a write while writes are blocked (see [`ShardEngine::set_write_block`]), before
    /// it takes a sequence number. Internal writes (translog replay, gap filling at open) do
    /// not check it.
    fn check_write_block(&self) -> Result<()> {
        if !self.write_blocked.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.write_block.lock().as_deref() {
            Some(reason) => Err(EngineError::NoSpace(reason.to_string())),
            None => Ok(()),
        }
    }

    /// Refuses a write while the translog's disk is full, before it takes a sequence number.
    /// While blocked, each write first retries writing the buffered operations: once that
    /// succeeds (space was freed), the block lifts and the write goes on.
    fn check_space(&self) -> Result<()> {
        if !self.no_space.load(Ordering::Acquire) {
            return Ok(());
        }
        self.translog.sync().map_err(|e| self.translog_failure(e))?;
        if self.no_space.swap(false, Ordering::AcqRel) {
            tracing::info!(shard = ?self.dir, "translog has space again: writes resume");
        }
        Ok(())
    }

    /// Marks the operations of the last commit above its local checkpoint (applied out of
    /// order before the commit) as processed and persisted.
    fn restore_committed_seq_nos(&self, local_checkpoint: SeqNo) -> Result<()> {
        let searcher = self.commits.searcher();
        let mut found = Vec::new();
        for segment in searcher.segment_readers() {
            let history = self.retention.history().get(segment)?;
            history.docs_in_range(
                (local_checkpoint.0 + 1) as u64,
                crate::history::MAX_HISTORY_SEQ_NO,
                &mut found,
            );
        }
        let mut tracker = self.checkpoints.lock();
        for (seq_no, _) in found {
            tracker.mark_processed(SeqNo(seq_no as i64));
            tracker.mark_persisted(SeqNo(seq_no as i64));
        }
        Ok(())
    }

    /// Applies `change` to a copy of the leases, persists the copy, then installs it: a failed
    /// change or persist leaves the leases as they were.
    fn update_leases<T>(
        &self,
        change: impl FnOnce(&mut RetentionLeases) -> Result<T>,
    ) -> Result<T> {
        let (result, changed) = self.retention.update_leases(change)?;
        if changed {
            self.commits.mark_dirty();
        }
        Ok(result)
    }
}

/// The smallest writer tantivy allows (one indexing thread with its minimum memory, one merge
/// thread), for writers that only commit.
fn small_writer<D: Document>(index: &tantivy::Index) -> tantivy::Result<IndexWriter<D>> {
    index.writer_with_options(
        tantivy::indexer::IndexWriterOptions::builder()
            .num_worker_threads(1)
            .num_merge_threads(1)
            .build(),
    )
}

/// Opens writers on `index` with the memory and threads of `config`, without tantivy's merge
/// policy (the engine schedules its own merges, see `refresh.rs`).
fn writer_opener(index: &tantivy::Index, config: &ShardConfig) -> writer_slot::WriterOpener {
    let index = index.clone();
    let (threads, memory_bytes) = (config.indexing_threads, config.writer_memory_bytes);
    Box::new(move || {
        let writer: ShardWriter = index.writer_with_num_threads(threads, memory_bytes)?;
        writer.set_merge_policy(Box::new(NoMergePolicy));
        Ok(writer)
    })
}

/// Opens the tantivy index of the shard in `dir` (`context` says why, for errors) and reads
/// the payload of its last commit.
fn open_last_commit(
    storage: &StorageRef,
    dir: &Path,
    context: &'static str,
) -> Result<(tantivy::Index, SegmentDirectory, CommitPayload)> {
    let index_dir = dir.join(INDEX_DIR);
    let directory = SegmentDirectory::open(storage.clone(), &index_dir)
        .map_err(|e| EngineError::directory(&index_dir, e))?;
    let index =
        tantivy::Index::open(directory.clone()).map_err(|e| EngineError::index(context, e))?;
    let meta = index
        .load_metas()
        .map_err(|e| EngineError::index("loading the commit", e))?;
    let payload = commit_payload(&meta, &index_dir, "the last commit")?;
    Ok((index, directory, payload))
}

/// The Tandem payload of the commit `meta` of the index in `index_dir`; `commit` names the
/// commit in errors. A commit without one, or with one that does not parse, is corrupted.
fn commit_payload(
    meta: &tantivy::IndexMeta,
    index_dir: &Path,
    commit: &str,
) -> Result<CommitPayload> {
    let payload = meta
        .payload
        .as_deref()
        .ok_or_else(|| EngineError::Corrupted {
            path: index_dir.join(META_FILE),
            reason: format!("{commit} has no Tandem payload"),
        })?;
    serde_json::from_str(payload).map_err(|e| EngineError::Corrupted {
        path: index_dir.join(META_FILE),
        reason: format!("invalid commit payload: {e}"),
    })
}

fn commit_with_payload<D: Document>(
    writer: &mut IndexWriter<D>,
    payload: &CommitPayload,
) -> Result<()> {
    prepare_commit(writer, payload)?
        .wait()
        .map_err(|e| EngineError::index("committing", e))?;
    Ok(())
}

/// Prepares a commit of everything handed to `writer` so far, with `payload`, and schedules it:
/// the returned future completes once the commit is durable. The writer is free again as soon
/// as this returns.
fn prepare_commit<D: Document>(
    writer: &mut IndexWriter<D>,
    payload: &CommitPayload,
) -> Result<tantivy::FutureResult<tantivy::Opstamp>> {
    let json =
        serde_json::to_string(payload).map_err(|e| EngineError::encode("the commit payload", e))?;
    let mut prepared = writer
        .prepare_commit()
        .map_err(|e| EngineError::index("preparing a commit", e))?;
    prepared.set_payload(&json);
    Ok(prepared.commit_future())
}

/// What a shard's background pass remembers between runs.
struct PassState {
    last_refresh: Instant,
    last_sync: Instant,
    last_expiry: Instant,
}

/// A shard's background pass, as the scheduler runs it; holds the shard weakly, so that a
/// dropped shard's pass ends by itself.
struct ShardPass {
    shard: Weak<ShardInner>,
    state: Mutex<PassState>,
}

impl Pass for ShardPass {
    fn run(&self) -> Option<Instant> {
        let shard = self.shard.upgrade()?;
        let next = shard.background_pass(&mut self.state.lock());
        Some(next)
    }
}

fn start_background(inner: &Arc<ShardInner>) {
    let now = Instant::now();
    let pass = ShardPass {
        shard: Arc::downgrade(inner),
        state: Mutex::new(PassState {
            last_refresh: now,
            last_sync: now,
            last_expiry: now,
        }),
    };
    let first_run = inner.next_background_pass(&pass.state.lock(), now);
    let scheduled = scheduler::scheduler().register(Box::new(pass), first_run);
    assert!(
        inner.background.set(scheduled).is_ok(),
        "a shard registers one background pass"
    );
}

impl ShardInner {
    /// Runs the background pass as soon as a worker is free (no-op before it is registered).
    fn wake_background(&self) {
        if let Some(background) = self.background.get() {
            background.wake();
        }
    }

    /// Asks for a flush once the translog holds more than its threshold; called by the write
    /// path after every append, under its locks (the scheduler's lock is a leaf).
    fn check_translog_threshold(&self) {
        let threshold = self.translog_flush_threshold_bytes.load(Ordering::Acquire);
        if self.translog.size_in_bytes() > threshold {
            self.wake_background();
        }
    }

    /// The work the per-shard loops used to do, once: fsync the translog under `async`
    /// durability when its interval has passed, expire leases every [`LEASE_EXPIRY_CHECK`],
    /// commit when the translog passed its flush threshold, refresh when the refresh interval
    /// has passed. Returns when it is next due.
    fn background_pass(&self, pass: &mut PassState) -> Instant {
        let now = Instant::now();
        if self.check_failed().is_err() {
            return now + LEASE_EXPIRY_CHECK;
        }
        let config = self.config();
        if let Durability::Async { interval } = config.durability {
            if now >= pass.last_sync + interval {
                if self.translog.needs_sync() {
                    if let Err(error) = self.translog.sync() {
                        self.translog_failure(error);
                        return now + LEASE_EXPIRY_CHECK;
                    }
                }
                pass.last_sync = now;
            }
        }
        if now >= pass.last_expiry + LEASE_EXPIRY_CHECK {
            pass.last_expiry = now;
            let period = config.retention_lease_period.as_millis() as u64;
            let wall_clock = now_millis();
            let _ = self.update_leases(|leases| {
                let removed = leases.expire(wall_clock, period);
                for lease in &removed {
                    tracing::info!(lease = %lease.id, "retention lease expired");
                }
                Ok(())
            });
        }
        if self.translog.size_in_bytes() > config.translog_flush_threshold_bytes {
            // A commit starts a new translog generation and trims the ones it holds.
            pass.last_refresh = now;
            if let Err(error) = self.refresh(false) {
                tracing::warn!(%error, "flush at the translog threshold failed");
            }
        } else if let Some(interval) = config.refresh_interval {
            if now >= pass.last_refresh + interval {
                pass.last_refresh = now;
                if let Err(error) = self.refresh(false) {
                    tracing::warn!(%error, "background refresh failed");
                }
            }
        }
        self.release_merge_sources();
        if let Err(error) = self.reload_after_merges() {
            tracing::warn!(%error, "installing the reader after a merge failed");
        }
        self.release_idle_writer(self.writer_idle_release);
        self.next_background_pass(pass, Instant::now())
    }

    /// When the pass is next due after `now`: the earliest of the next refresh, fsync and
    /// lease expiry, and not sooner than [`scheduler::MIN_PASS_DELAY`].
    fn next_background_pass(&self, pass: &PassState, now: Instant) -> Instant {
        let config = self.config();
        let mut next = pass.last_expiry + LEASE_EXPIRY_CHECK;
        if let Some(interval) = config.refresh_interval {
            next = next.min(pass.last_refresh + interval);
        }
        if let Durability::Async { interval } = config.durability {
            next = next.min(pass.last_sync + interval);
        }
        if self.commits.merging_segment_count() > 0 {
            next = next.min(now + refresh::MERGE_PAGES_RELEASE_INTERVAL);
        }
        next.max(now + scheduler::MIN_PASS_DELAY)
    }
}
