//! Identifiers and the operation model shared by every part of the engine.
//!
//! Every write to a shard becomes one [`Operation`] with a sequence number ([`SeqNo`]), the
//! primary term it was assigned under ([`PrimaryTerm`]) and a per-document version. The same
//! value flows through the translog, the tantivy index (as one document) and the changes API.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A shard-local sequence number. Assigned by the primary as 0, 1, 2, ...
///
/// Negative values are sentinels (as in Elasticsearch): [`SeqNo::NO_OPS_PERFORMED`] (-1) is the
/// checkpoint of an empty shard and [`SeqNo::UNASSIGNED`] (-2) marks "no sequence number yet".
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SeqNo(pub i64);

impl SeqNo {
    /// The checkpoint of a shard that holds no operation.
    pub const NO_OPS_PERFORMED: SeqNo = SeqNo(-1);
    /// An operation that has not been given a sequence number.
    pub const UNASSIGNED: SeqNo = SeqNo(-2);

    /// The raw value.
    pub fn get(self) -> i64 {
        self.0
    }

    /// True for a real sequence number (>= 0).
    pub fn is_assigned(self) -> bool {
        self.0 >= 0
    }

    /// The next sequence number.
    pub fn next(self) -> SeqNo {
        SeqNo(self.0 + 1)
    }
}

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The term of the primary that assigned an operation's sequence number. Starts at 1 and grows
/// whenever a copy becomes primary (for example a follower promoted by unfollow).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PrimaryTerm(pub u64);

impl fmt::Display for PrimaryTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What an operation does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperationKind {
    /// Creates or replaces the document `id` with `source` (a JSON object).
    Index {
        /// Document id.
        id: String,
        /// The document's `_source` bytes (JSON).
        source: Vec<u8>,
    },
    /// Deletes the document `id` (recorded as a tombstone in the history).
    Delete {
        /// Document id.
        id: String,
    },
    /// Fills a sequence number without touching any document.
    NoOp {
        /// Why the no-op was recorded.
        reason: String,
    },
}

/// The numeric code of an operation kind, as stored in the `_op_type` fast field and the
/// translog.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpType {
    /// [`OperationKind::Index`].
    Index = 0,
    /// [`OperationKind::Delete`].
    Delete = 1,
    /// [`OperationKind::NoOp`].
    NoOp = 2,
}

impl OpType {
    /// Decodes a stored code; `None` for an unknown one (a corrupted value).
    pub fn from_code(code: u64) -> Option<OpType> {
        match code {
            0 => Some(OpType::Index),
            1 => Some(OpType::Delete),
            2 => Some(OpType::NoOp),
            _ => None,
        }
    }

    /// The Elasticsearch name of the kind (`index`, `delete`, `noop`).
    pub fn name(self) -> &'static str {
        match self {
            OpType::Index => "index",
            OpType::Delete => "delete",
            OpType::NoOp => "noop",
        }
    }
}

/// One operation of a shard's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Sequence number.
    pub seq_no: SeqNo,
    /// Term of the primary that assigned `seq_no`.
    pub primary_term: PrimaryTerm,
    /// Per-document version after this operation (1 for a no-op).
    pub version: u64,
    /// What the operation does.
    pub kind: OperationKind,
}

/// Operations are shared, not copied, between the in-memory tail, the version map and readers.
pub type SharedOperation = Arc<Operation>;

impl Operation {
    /// The kind's code.
    pub fn op_type(&self) -> OpType {
        match self.kind {
            OperationKind::Index { .. } => OpType::Index,
            OperationKind::Delete { .. } => OpType::Delete,
            OperationKind::NoOp { .. } => OpType::NoOp,
        }
    }

    /// The document id, if the operation concerns a document.
    pub fn id(&self) -> Option<&str> {
        match &self.kind {
            OperationKind::Index { id, .. } | OperationKind::Delete { id } => Some(id),
            OperationKind::NoOp { .. } => None,
        }
    }

    /// The `_source` of an index operation.
    pub fn source(&self) -> Option<&[u8]> {
        match &self.kind {
            OperationKind::Index { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Approximate size in bytes, used to bound batches and buffers.
    pub fn size_in_bytes(&self) -> usize {
        const FIXED_BYTES: usize = 32;
        FIXED_BYTES
            + match &self.kind {
                OperationKind::Index { id, source } => id.len() + source.len(),
                OperationKind::Delete { id } => id.len(),
                OperationKind::NoOp { reason } => reason.len(),
            }
    }
}
