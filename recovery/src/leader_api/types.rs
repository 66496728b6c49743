//! The requests and answers of the leader API, one type per call: what a follower sends to a
//! leader and what it gets back. Every request is serializable, so that a transport carries it
//! as it is; answers too, except the two whose bytes travel in frames of their own
//! ([`ShardChangesResponse`] and [`FileChunk`]).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tandem_engine::shard::verify::{RangeDigest, SeqRange, VerifyEntry};
use tandem_engine::shard::{ChangesRequest, ChangesResponse, CommitFileInfo, ShardPromotion};
use tandem_engine::SeqNo;

use crate::chunk_bytes::ChunkBytes;

/// One shard of a leader index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardId {
    /// The leader index's name.
    pub index: String,
    /// The shard number.
    pub shard: u32,
}

impl ShardId {
    /// Shard `shard` of `index`.
    pub fn new(index: impl Into<String>, shard: u32) -> ShardId {
        ShardId {
            index: index.into(),
            shard,
        }
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}][{}]", self.index, self.shard)
    }
}

/// Identifies a recovery session on the leader.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionId(pub String);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Asks for the metadata of a leader index (settings, mappings, uuid, versions).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexMetadataRequest {
    /// The leader index.
    pub index: String,
}

impl IndexMetadataRequest {
    /// The metadata of `index`.
    pub fn new(index: impl Into<String>) -> IndexMetadataRequest {
        IndexMetadataRequest {
            index: index.into(),
        }
    }
}

/// One index of a leader cluster, as listed for auto-follow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderIndexSummary {
    /// Index name.
    pub name: String,
    /// Index uuid (a re-created index of the same name has a new one).
    pub uuid: String,
}

/// A read of a leader shard's operations: the engine's [`ChangesRequest`] addressed to a shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardChangesRequest {
    /// The leader shard.
    pub shard: ShardId,
    /// What is read: from which sequence number, how much, how long to long-poll, and the
    /// history the follower replicates (another one fails the read with
    /// [`LeaderError::HistoryUuidMismatch`](super::LeaderError::HistoryUuidMismatch), fatal).
    pub changes: ChangesRequest,
}

/// The operations of a leader shard with its checkpoints ([`ChangesResponse`]), and the
/// versions of its index's metadata at the time, which tell the follower when to fetch it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardChangesResponse {
    /// The engine's answer: operations contiguous from the request's `from_seq_no` (empty when
    /// none became available within the poll timeout), the checkpoints, and the time taken.
    /// Shared: in process, nothing is copied between the leader's changes API and the
    /// follower's write.
    pub changes: ChangesResponse,
    /// The leader index's mapping version.
    pub mapping_version: u64,
    /// The leader index's settings version.
    pub settings_version: u64,
    /// The leader index's aliases version.
    pub aliases_version: u64,
}

/// Adds a retention lease on a leader shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddRetentionLeaseRequest {
    /// The leader shard.
    pub shard: ShardId,
    /// The lease id (Elasticsearch's: `<follower cluster>/<follower index>/<uuid>-following-...`).
    pub lease_id: String,
    /// Operations at or above this sequence number are retained.
    pub retaining_seq_no: SeqNo,
    /// The holder's kind (`ccr`).
    pub source: String,
}

impl AddRetentionLeaseRequest {
    /// Lease `lease_id` on `shard`, retaining from `retaining_seq_no`, held by `source`.
    pub fn new(
        shard: ShardId,
        lease_id: impl Into<String>,
        retaining_seq_no: SeqNo,
        source: impl Into<String>,
    ) -> AddRetentionLeaseRequest {
        AddRetentionLeaseRequest {
            shard,
            lease_id: lease_id.into(),
            retaining_seq_no,
            source: source.into(),
        }
    }
}

/// Renews a retention lease (its retaining sequence number never goes backwards).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRetentionLeaseRequest {
    /// The leader shard.
    pub shard: ShardId,
    /// The lease id.
    pub lease_id: String,
    /// Operations at or above this sequence number are retained.
    pub retaining_seq_no: SeqNo,
}

impl RenewRetentionLeaseRequest {
    /// Renews `lease_id` on `shard` to retain from `retaining_seq_no`.
    pub fn new(
        shard: ShardId,
        lease_id: impl Into<String>,
        retaining_seq_no: SeqNo,
    ) -> RenewRetentionLeaseRequest {
        RenewRetentionLeaseRequest {
            shard,
            lease_id: lease_id.into(),
            retaining_seq_no,
        }
    }
}

/// Removes a retention lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveRetentionLeaseRequest {
    /// The leader shard.
    pub shard: ShardId,
    /// The lease id.
    pub lease_id: String,
}

impl RemoveRetentionLeaseRequest {
    /// Removes `lease_id` from `shard`.
    pub fn new(shard: ShardId, lease_id: impl Into<String>) -> RemoveRetentionLeaseRequest {
        RemoveRetentionLeaseRequest {
            shard,
            lease_id: lease_id.into(),
        }
    }
}

/// Opens a recovery session on a leader shard, pinning its latest commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRecoverySessionRequest {
    /// The leader shard.
    pub shard: ShardId,
}

impl OpenRecoverySessionRequest {
    /// A session on `shard`.
    pub fn new(shard: ShardId) -> OpenRecoverySessionRequest {
        OpenRecoverySessionRequest { shard }
    }
}

/// What the leader answers when a recovery session opens: the pinned commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverySessionInfo {
    /// The session, for chunk requests and close.
    pub session_id: SessionId,
    /// The shard whose commit is pinned.
    pub shard: ShardId,
    /// Every file of the commit (segment files, `.managed.json`, then `meta.json`).
    pub files: Vec<CommitFileInfo>,
    /// The commit's local checkpoint: replication continues at the next sequence number.
    pub local_checkpoint: SeqNo,
    /// The commit's highest sequence number.
    pub max_seq_no: SeqNo,
    /// The leader index's mapping version when the session opened.
    pub mapping_version: u64,
    /// The leader shard's history uuid in the pinned commit: a follower recovered from it
    /// replicates that history (and checks it on every read).
    pub history_uuid: String,
}

/// Reads a piece of a file of a session's pinned commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadFileChunkRequest {
    /// The leader shard.
    pub shard: ShardId,
    /// The session.
    pub session: SessionId,
    /// A file of the session's commit.
    pub file: String,
    /// First byte wanted.
    pub offset: u64,
    /// Bytes wanted (fewer come back at the end of the file).
    pub length: usize,
}

impl ReadFileChunkRequest {
    /// `length` bytes of `file` from `offset`, out of `session`'s commit of `shard`.
    pub fn new(
        shard: ShardId,
        session: SessionId,
        file: impl Into<String>,
        offset: u64,
        length: usize,
    ) -> ReadFileChunkRequest {
        ReadFileChunkRequest {
            shard,
            session,
            file: file.into(),
            offset,
            length,
        }
    }
}

/// A piece of a file of a pinned commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChunk {
    /// The bytes, `length` of them unless the file ends first.
    pub data: ChunkBytes,
    /// Time the leader spent throttling this chunk (its own rate limit).
    pub source_throttle: Duration,
}

/// Closes a recovery session and releases its pin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseRecoverySessionRequest {
    /// The leader shard.
    pub shard: ShardId,
    /// The session.
    pub session: SessionId,
}

impl CloseRecoverySessionRequest {
    /// Closes `session` on `shard`.
    pub fn new(shard: ShardId, session: SessionId) -> CloseRecoverySessionRequest {
        CloseRecoverySessionRequest { shard, session }
    }
}

/// One step of a verify of a follower shard against its leader shard (see
/// [`tandem_engine::shard::verify`]): the follower opens a session on the leader shard, asks for
/// digests of ranges and for the entries of a small range, and closes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyShardRequest {
    /// The leader shard.
    pub shard: ShardId,
    /// What is asked.
    pub step: VerifyStep,
}

/// What a [`VerifyShardRequest`] asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum VerifyStep {
    /// Snapshots the shard at `up_to_seq_no`, holds its history with a lease and builds its
    /// digests; answers [`VerifyShardResponse::Opened`].
    Open {
        /// The history the follower follows; another one fails the step.
        expected_history_uuid: String,
        /// The seq_no both sides verify at.
        up_to_seq_no: SeqNo,
        /// The follower's retention floor: the history compared starts at the larger floor.
        history_from: SeqNo,
        /// Ids changed above `up_to_seq_no` whose state at it the follower cannot tell: the
        /// leader leaves them out too (at most [`MAX_FOLLOWER_UNDETERMINED_BYTES`]).
        undetermined_ids: Vec<String>,
    },
    /// The digests of `ranges` (at most [`MAX_VERIFY_RANGES`]).
    Digests {
        /// The session.
        session: SessionId,
        /// The ranges.
        ranges: Vec<SeqRange>,
    },
    /// The entries of `range` (at most
    /// [`LEAF_SEQ_NOS`](tandem_engine::shard::verify::LEAF_SEQ_NOS) seq_nos).
    Entries {
        /// The session.
        session: SessionId,
        /// The range.
        range: SeqRange,
    },
    /// Ends the session and releases its lease and snapshot (idempotent).
    Close {
        /// The session.
        session: SessionId,
    },
}

/// Most bytes of ids a follower sends in [`VerifyStep::Open`] (the request must stay within the
/// transport's request limit).
pub const MAX_FOLLOWER_UNDETERMINED_BYTES: usize = 512 * 1024;

/// Most ranges one [`VerifyStep::Digests`] may ask for.
pub const MAX_VERIFY_RANGES: usize = 64;

/// What the leader answers to a [`VerifyShardRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum VerifyShardResponse {
    /// The session is open.
    Opened(VerifyOpened),
    /// One digest per asked range, in order.
    Digests {
        /// The digests.
        digests: Vec<RangeDigest>,
    },
    /// The entries of the range, sorted by (seq_no, kind).
    Entries {
        /// The entries.
        entries: Vec<VerifyEntry>,
    },
    /// The session is closed.
    Closed,
}

/// The leader's side of an opened verify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOpened {
    /// The session, for the next steps.
    pub session: SessionId,
    /// First seq_no of the history compared (the larger of both floors).
    pub history_from: SeqNo,
    /// Ids changed above `up_to_seq_no` whose state at it the leader cannot tell: the
    /// follower leaves them out of its live entries too.
    pub undetermined_ids: Vec<String>,
    /// Ids the leader left out of its live entries (its undetermined ones and the
    /// follower's).
    pub left_out: u64,
    /// The digest of `[0, up_to_seq_no]`.
    pub root: RangeDigest,
    /// The leader shard's max_seq_no at the snapshot.
    pub max_seq_no: SeqNo,
    /// Milliseconds the leader took to build its side.
    pub took_millis: u64,
}

/// What an old leader failing back asks of the index promoted in its place (see
/// `tandem_replication`'s failback): who it is and where each shard was promoted, and the
/// live versions of ids at the shared point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum FailbackSourceRequest {
    /// The promoted index's uuid and, per shard, its history uuid and promotion record;
    /// answers [`FailbackSourceResponse::Promotion`].
    Promotion {
        /// The promoted index.
        index: String,
    },
    /// The live documents of `ids` whose latest operation is at or below `at_or_below`:
    /// the state of those ids at the shared point that the promoted shard still holds (an id
    /// it changed above the point, or does not hold, has none). At most
    /// [`MAX_FAILBACK_IDS`] ids of at most [`MAX_FAILBACK_IDS_BYTES`] in all; answers
    /// [`FailbackSourceResponse::Documents`].
    Documents {
        /// The promoted shard.
        shard: ShardId,
        /// Its history, as the promotion record named it; another one fails the request.
        expected_history_uuid: String,
        /// The shared point.
        at_or_below: SeqNo,
        /// The ids.
        ids: Vec<String>,
    },
}

/// Most ids one [`FailbackSourceRequest::Documents`] asks for.
pub const MAX_FAILBACK_IDS: usize = 1024;

/// Most bytes of ids one [`FailbackSourceRequest::Documents`] carries.
pub const MAX_FAILBACK_IDS_BYTES: usize = 512 * 1024;

/// Most bytes of sources one [`FailbackSourceResponse::Documents`] carries; the ids past it
/// are asked again (`answered` says how many were).
pub const MAX_FAILBACK_DOCUMENTS_BYTES: usize = 16 * 1024 * 1024;

/// What the promoted index answers to a [`FailbackSourceRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum FailbackSourceResponse {
    /// See [`FailbackSourceRequest::Promotion`].
    Promotion(PromotedIndexInfo),
    /// See [`FailbackSourceRequest::Documents`].
    Documents {
        /// How many of the asked ids (from the first) this answer covers: fewer than asked
        /// when [`MAX_FAILBACK_DOCUMENTS_BYTES`] was reached; at least one.
        answered: usize,
        /// The live documents found among them.
        documents: Vec<FailbackDocument>,
    },
}

/// A promoted index, as a failback sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotedIndexInfo {
    /// The index.
    pub index: String,
    /// Its uuid.
    pub index_uuid: String,
    /// Its mapping version (a failing-back follower takes its mappings from it).
    pub mapping_version: u64,
    /// Per shard, by number.
    pub shards: Vec<PromotedShardInfo>,
}

/// One shard of a [`PromotedIndexInfo`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotedShardInfo {
    /// The shard's history uuid (the failed-back follower follows this history).
    pub history_uuid: String,
    /// Its max_seq_no now.
    pub max_seq_no: SeqNo,
    /// Its global checkpoint now.
    pub global_checkpoint: SeqNo,
    /// Its last promotion; `None` for a shard never promoted from a follower.
    pub promotion: Option<ShardPromotion>,
}

/// A live document of a [`FailbackSourceResponse::Documents`] answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailbackDocument {
    /// Its id.
    #[serde(rename = "_id")]
    pub id: String,
    /// The sequence number of the operation that wrote it.
    pub seq_no: SeqNo,
    /// Its primary term.
    pub primary_term: u64,
    /// Its version.
    pub version: u64,
    /// Its `_source` (JSON text).
    pub source: String,
}
