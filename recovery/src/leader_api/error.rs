//! [`LeaderError`]: what a leader (or the transport to it) answers instead of a result, and the
//! one place that decides which of them are worth retrying ([`LeaderError::is_retryable`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tandem_engine::{EngineError, SeqNo};

use super::types::SessionId;

/// What a leader (or the transport to it) answered instead of a result.
///
/// Serializable so that a transport carries the leader's error to the follower unchanged: the
/// follower classifies what it rebuilds exactly as it would classify the leader's own value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum LeaderError {
    /// The recovery session is not (or no longer) open on the leader: it timed out, was closed,
    /// or the leader restarted. A recovery opens a new session.
    #[error("unknown recovery session [{0}]")]
    UnknownSession(SessionId),
    /// No index of that name on the leader.
    #[error("no such index [{0}] on the leader")]
    IndexNotFound(String),
    /// The leader index is closed: reads wait for it to be opened again (retryable, as in
    /// Elasticsearch).
    #[error("closed index [{0}] on the leader")]
    IndexClosed(String),
    /// The index has no shard of that number.
    #[error("index [{index}] has no shard [{shard}]")]
    ShardNotFound {
        /// The index name.
        index: String,
        /// The shard number.
        shard: u32,
    },
    /// The file is not part of the session's commit.
    #[error("file [{name}] is not part of recovery session [{session}]")]
    UnknownFile {
        /// The session.
        session: SessionId,
        /// The file name asked for.
        name: String,
    },
    /// A retention lease with that id exists already.
    #[error("retention lease [{0}] already exists")]
    RetentionLeaseAlreadyExists(String),
    /// No retention lease with that id.
    #[error("retention lease [{0}] not found")]
    RetentionLeaseNotFound(String),
    /// The requested operations are no longer in the leader's history (Elasticsearch's
    /// message: the fix is a longer lease period).
    #[error(
        "{}",
        EngineError::MissingHistory { from: *from, to: *to, missing: *missing }
    )]
    MissingHistory {
        /// First requested sequence number.
        from: SeqNo,
        /// Last requested sequence number.
        to: SeqNo,
        /// First missing sequence number.
        missing: SeqNo,
    },
    /// The follower expects another history of the leader shard (the leader index was
    /// replaced or restored): fatal for the follower.
    #[error("unexpected history uuid, expected [{expected}], actual [{actual}]")]
    HistoryUuidMismatch {
        /// The history the follower replicates.
        expected: String,
        /// The leader shard's history.
        actual: String,
    },
    /// The request is invalid (a bug or a version mismatch between the clusters).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The leader cannot answer now (shard closed or reopening, node unreachable).
    #[error("leader unavailable: {0}")]
    Unavailable(String),
    /// No answer within the time allowed.
    #[error("no answer from the leader within {0:?}")]
    Timeout(Duration),
    /// The leader's answer arrived damaged or malformed (bad checksum, truncated frame,
    /// impossible length). Retryable: the next answer usually arrives intact, and a leader
    /// that keeps sending bad frames keeps the follower retrying rather than applying them.
    #[error("corrupted response from the leader: {0}")]
    CorruptedResponse(String),
    /// The leader answered a value out of its range (a shard count, a term, a version or a
    /// checkpoint no leader can have): it is not to be trusted, and asking again gets the same
    /// answer, so the follow that asked fails. Checked in one place,
    /// [`CheckedLeaderClient`](super::CheckedLeaderClient).
    #[error("invalid response from the leader: {0}")]
    InvalidResponse(String),
    /// The leader refused the follower's credentials, or they do not cover the index (a
    /// cross-cluster API key without the index in its `replication` names, an expired or
    /// invalidated key): fatal until an operator fixes the credentials. The text is the
    /// leader's `security_exception` reason.
    #[error("{0}")]
    Unauthorized(String),
    /// The leader's engine failed on a file or its data.
    #[error("leader engine error: {message}")]
    Engine {
        /// The leader's error, as text (it crosses a process boundary).
        message: String,
        /// Whether trying again may succeed (I/O) or not (corruption).
        retryable: bool,
    },
}

impl LeaderError {
    /// True when the same request may succeed later, so a caller retries it with backoff.
    /// `UnknownSession` is not retryable as such: the caller must open a new session.
    pub fn is_retryable(&self) -> bool {
        match self {
            LeaderError::Unavailable(_)
            | LeaderError::Timeout(_)
            | LeaderError::IndexClosed(_)
            | LeaderError::CorruptedResponse(_) => true,
            LeaderError::Engine { retryable, .. } => *retryable,
            LeaderError::UnknownSession(_)
            | LeaderError::IndexNotFound(_)
            | LeaderError::ShardNotFound { .. }
            | LeaderError::UnknownFile { .. }
            | LeaderError::RetentionLeaseAlreadyExists(_)
            | LeaderError::RetentionLeaseNotFound(_)
            | LeaderError::MissingHistory { .. }
            | LeaderError::HistoryUuidMismatch { .. }
            | LeaderError::InvalidRequest(_)
            | LeaderError::InvalidResponse(_)
            | LeaderError::Unauthorized(_) => false,
        }
    }

    /// Maps an error of the leader's engine to what a client sees.
    pub fn from_engine(error: &EngineError) -> LeaderError {
        match error {
            EngineError::MissingHistory { from, to, missing } => LeaderError::MissingHistory {
                from: *from,
                to: *to,
                missing: *missing,
            },
            EngineError::IndexNotFound { name } => LeaderError::IndexNotFound(name.clone()),
            EngineError::IndexClosed { name } => LeaderError::IndexClosed(name.clone()),
            EngineError::HistoryUuidMismatch { expected, actual } => {
                LeaderError::HistoryUuidMismatch {
                    expected: expected.clone(),
                    actual: actual.clone(),
                }
            }
            EngineError::InvalidArgument(message) | EngineError::RetentionLease(message) => {
                LeaderError::InvalidRequest(message.clone())
            }
            EngineError::Closed(message) => LeaderError::Unavailable(message.clone()),
            EngineError::Io { .. } | EngineError::Index { .. } | EngineError::Translog(_) => {
                LeaderError::Engine {
                    message: error.to_string(),
                    retryable: true,
                }
            }
            _ => LeaderError::Engine {
                message: error.to_string(),
                retryable: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_leader_errors_are_retryable() {
        assert!(LeaderError::Unavailable("restarting".into()).is_retryable());
        assert!(LeaderError::Timeout(Duration::from_secs(1)).is_retryable());
        let io = EngineError::Io {
            path: "x".into(),
            source: std::io::Error::other("disk"),
        };
        assert!(LeaderError::from_engine(&io).is_retryable());
        assert!(LeaderError::from_engine(&EngineError::Closed("reopening".into())).is_retryable());
    }

    #[test]
    fn corrupted_responses_are_retryable() {
        assert!(LeaderError::CorruptedResponse("crc mismatch".into()).is_retryable());
    }

    #[test]
    fn leader_errors_survive_serialization() {
        let errors = [
            LeaderError::UnknownSession(SessionId("s".into())),
            LeaderError::ShardNotFound {
                index: "i".into(),
                shard: 3,
            },
            LeaderError::MissingHistory {
                from: SeqNo(1),
                to: SeqNo(9),
                missing: SeqNo(4),
            },
            LeaderError::Timeout(Duration::from_millis(1500)),
            LeaderError::Engine {
                message: "disk".into(),
                retryable: true,
            },
            LeaderError::CorruptedResponse("bad frame".into()),
        ];
        for error in errors {
            let json = serde_json::to_string(&error).unwrap();
            let back: LeaderError = serde_json::from_str(&json).unwrap();
            assert_eq!(back, error);
            assert_eq!(back.is_retryable(), error.is_retryable());
        }
    }

    #[test]
    fn permanent_leader_errors_are_fatal() {
        assert!(!LeaderError::UnknownSession(SessionId("s".into())).is_retryable());
        assert!(!LeaderError::IndexNotFound("i".into()).is_retryable());
        assert!(!LeaderError::InvalidRequest("bad".into()).is_retryable());
        let corrupted = EngineError::Corrupted {
            path: "x".into(),
            reason: "bad bytes".into(),
        };
        assert!(!LeaderError::from_engine(&corrupted).is_retryable());
        let missing = EngineError::MissingHistory {
            from: SeqNo(0),
            to: SeqNo(9),
            missing: SeqNo(3),
        };
        assert!(matches!(
            LeaderError::from_engine(&missing),
            LeaderError::MissingHistory { .. }
        ));
    }
}
