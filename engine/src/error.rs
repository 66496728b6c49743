//! The engine's error type. Every variant says what went wrong and where; corruption is its own
//! variant, never folded into I/O.

use std::path::PathBuf;

use crate::mapping::{DocumentError, MappingError, QueryError};
use crate::translog::TranslogError;
use crate::types::{PrimaryTerm, SeqNo};

/// Errors returned by the engine.
///
/// I/O failures ([`Io`](Self::Io), [`Translog`](Self::Translog)) and corruption
/// ([`Corrupted`](Self::Corrupted)) are the server's fault, never the request's: their
/// [`status`](Self::status) is 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// An I/O error on a file of the engine.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file of the engine holds bytes that cannot be what the engine wrote.
    #[error("corrupted data in {path}: {reason}")]
    Corrupted {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The translog failed (I/O or corruption of its files).
    #[error(transparent)]
    Translog(#[from] TranslogError),
    /// A state of the engine (commit payload, index metadata, retention leases) could not be
    /// encoded as JSON. Every such state serializes, so this is a bug, not a bad request.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// tantivy failed.
    #[error("index error ({context}): {source}")]
    Index {
        /// What the engine was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: tantivy::TantivyError,
    },
    /// One of tantivy's indexing or merging threads died on an I/O error of the index
    /// directory, which tantivy reports only as a dead thread; `cause` names the call.
    #[error("index error ({context}): {source}; the index directory failed first: {cause}")]
    IndexThreadFailed {
        /// What the engine was doing.
        context: &'static str,
        /// tantivy's error.
        #[source]
        source: tantivy::TantivyError,
        /// The first failed call that wrote to the index directory, and its error.
        cause: String,
    },
    /// Optimistic concurrency control rejected a write (HTTP 409).
    #[error("[{id}]: version conflict, {reason}")]
    VersionConflict {
        /// The document id.
        id: String,
        /// Why, in Elasticsearch's words.
        reason: String,
    },
    /// The document does not exist.
    #[error("document [{id}] not found")]
    DocumentNotFound {
        /// The document id.
        id: String,
    },
    /// The requested operations are no longer (or not) in the shard's history.
    #[error(
        "Operations are no longer available for replicating. Requested operations \
         [{from}, {to}] but operation [{missing}] is missing; maybe increase the retention lease \
         period setting [index.soft_deletes.retention_lease.period]?"
    )]
    MissingHistory {
        /// First requested sequence number.
        from: SeqNo,
        /// Last requested sequence number.
        to: SeqNo,
        /// The first sequence number not found.
        missing: SeqNo,
    },
    /// A follower expected another history than the shard has (the leader shard was replaced).
    #[error("unexpected history uuid, expected [{expected}], actual [{actual}]")]
    HistoryUuidMismatch {
        /// The history uuid the follower follows.
        expected: String,
        /// The shard's history uuid.
        actual: String,
    },
    /// A document does not fit the index's mappings.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// Invalid mappings.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// Invalid query.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A retention lease operation was refused.
    #[error("{0}")]
    RetentionLease(String),
    /// An argument is invalid.
    #[error("{0}")]
    InvalidArgument(String),
    /// No index of that name.
    #[error("no such index [{name}]")]
    IndexNotFound {
        /// The index name.
        name: String,
    },
    /// The index is closed: open it first.
    #[error("index [{name}] is closed")]
    IndexClosed {
        /// The index name.
        name: String,
    },
    /// An index of that name exists already.
    #[error("index [{name}] already exists")]
    IndexAlreadyExists {
        /// The index name.
        name: String,
    },
    /// Adding these shards would take the node past its shard limit
    /// (`cluster.max_shards_per_node`); the text is Elasticsearch's.
    #[error(
        "Validation Failed: 1: this action would add [{adding}] shards, but this cluster \
         currently has [{open}]/[{limit}] maximum normal shards open;"
    )]
    ShardLimitExceeded {
        /// Shards the action would add.
        adding: u64,
        /// Shards open (or being added by actions in progress).
        open: u64,
        /// The limit.
        limit: u64,
    },
    /// Direct writes are refused because the shard follows a leader.
    #[error("a follower index does not accept direct writes: {0}")]
    ReadOnlyFollower(String),
    /// An operation of an older primary term arrived after a newer one was seen.
    #[error("operation primary term [{operation}] is below the shard's primary term [{shard}]")]
    StalePrimaryTerm {
        /// The operation's term.
        operation: PrimaryTerm,
        /// The shard's current term.
        shard: PrimaryTerm,
    },
    /// The disk under the shard's translog is full, or the index is blocked because the
    /// node's disk passed its flood-stage watermark (`index.blocks.read_only_allow_delete`):
    /// the write was refused (or, for the write that found the disk full, not made durable)
    /// and the shard stays open for reads. Writes resume by themselves once space is freed.
    /// Elasticsearch answers both with a 429 block, which its clients and follow tasks retry.
    #[error("{0}")]
    NoSpace(String),
    /// The engine was closed, or failed earlier and must be reopened.
    #[error("engine is closed: {0}")]
    Closed(String),
}

/// Result alias of the engine.
pub type Result<T> = std::result::Result<T, EngineError>;

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn index(context: &'static str, source: tantivy::TantivyError) -> Self {
        EngineError::Index { context, source }
    }

    /// tantivy reports failures to open or read a directory with its own types, holding the
    /// `io::Error` behind an `Arc`; they are I/O errors on `dir`, with tantivy's error kept as
    /// the source.
    pub(crate) fn directory(
        dir: impl Into<PathBuf>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        EngineError::io(dir, std::io::Error::other(source))
    }

    pub(crate) fn encode(what: &'static str, source: serde_json::Error) -> Self {
        EngineError::Encode { what, source }
    }

    /// This error, shard-wide, as the error of each item of a batch it stopped: a full disk
    /// stays a full disk (clients retry its 429); anything else closed the shard.
    pub(crate) fn for_batch_item(&self) -> EngineError {
        match self {
            EngineError::NoSpace(reason) => EngineError::NoSpace(reason.clone()),
            other => EngineError::Closed(other.to_string()),
        }
    }

    /// The HTTP status Elasticsearch would answer with.
    pub fn status(&self) -> u16 {
        match self {
            EngineError::VersionConflict { .. } => 409,
            EngineError::DocumentNotFound { .. } | EngineError::IndexNotFound { .. } => 404,
            EngineError::IndexAlreadyExists { .. }
            | EngineError::Document(_)
            | EngineError::Mapping(_)
            | EngineError::Query(_)
            | EngineError::InvalidArgument(_)
            | EngineError::RetentionLease(_)
            | EngineError::MissingHistory { .. }
            | EngineError::IndexClosed { .. }
            | EngineError::ShardLimitExceeded { .. } => 400,
            EngineError::ReadOnlyFollower(_) => 403,
            EngineError::NoSpace(_) => 429,
            _ => 500,
        }
    }

    /// The Elasticsearch exception type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            EngineError::VersionConflict { .. } => "version_conflict_engine_exception",
            EngineError::DocumentNotFound { .. } => "document_missing_exception",
            EngineError::IndexNotFound { .. } => "index_not_found_exception",
            EngineError::IndexAlreadyExists { .. } => "resource_already_exists_exception",
            EngineError::IndexClosed { .. } => "index_closed_exception",
            EngineError::ShardLimitExceeded { .. } => "validation_exception",
            EngineError::Document(DocumentError::ImmenseTerm { .. }) => {
                "illegal_argument_exception"
            }
            EngineError::Document(_) => "document_parsing_exception",
            EngineError::Mapping(_) => "mapper_parsing_exception",
            EngineError::Query(QueryError::Parsing(_)) => "parsing_exception",
            EngineError::Query(_) => "query_shard_exception",
            EngineError::MissingHistory { .. } => "resource_not_found_exception",
            EngineError::ReadOnlyFollower(_) | EngineError::NoSpace(_) => "cluster_block_exception",
            EngineError::RetentionLease(_) => "retention_lease_exception",
            EngineError::InvalidArgument(_) => "illegal_argument_exception",
            EngineError::HistoryUuidMismatch { .. } => "illegal_state_exception",
            EngineError::Corrupted { .. }
            | EngineError::Translog(TranslogError::Corrupted { .. }) => "corrupt_index_exception",
            _ => "engine_exception",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::io;

    use super::*;

    fn io_error() -> EngineError {
        EngineError::io("shard/index", io::Error::other("disk failed"))
    }

    fn corrupted() -> EngineError {
        EngineError::Corrupted {
            path: "shard/index/meta.json".into(),
            reason: "invalid commit payload".into(),
        }
    }

    fn translog_io() -> EngineError {
        EngineError::Translog(TranslogError::Io {
            path: "shard/translog".into(),
            source: io::Error::other("disk failed"),
        })
    }

    fn translog_corrupted() -> EngineError {
        EngineError::Translog(TranslogError::Corrupted {
            path: "shard/translog/translog-1.tlog".into(),
            offset: 8,
            reason: "frame checksum mismatch".into(),
        })
    }

    fn encode() -> EngineError {
        let source = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        EngineError::encode("index metadata", source)
    }

    #[test]
    fn io_corruption_and_encoding_failures_are_server_errors_not_bad_requests() {
        for error in [
            io_error(),
            corrupted(),
            translog_io(),
            translog_corrupted(),
            encode(),
        ] {
            assert_eq!(error.status(), 500, "{error}");
            assert_ne!(error.type_name(), "illegal_argument_exception", "{error}");
        }
    }

    #[test]
    fn corruption_is_reported_as_corruption() {
        assert_eq!(corrupted().type_name(), "corrupt_index_exception");
        assert_eq!(translog_corrupted().type_name(), "corrupt_index_exception");
        assert_eq!(io_error().type_name(), "engine_exception");
    }

    #[test]
    fn io_errors_keep_the_io_error_as_their_source() {
        let error = io_error();
        let source = error.source().expect("an I/O error has a source");
        assert!(source.downcast_ref::<io::Error>().is_some(), "{source:?}");
        let directory = EngineError::directory("shard/index", io::Error::other("not a directory"));
        assert!(matches!(directory, EngineError::Io { .. }));
        assert_eq!(directory.status(), 500);
    }
}
