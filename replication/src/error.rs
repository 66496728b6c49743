//! Errors of the follow lifecycle, with the HTTP status and Elasticsearch exception type a REST
//! layer answers with, and Elasticsearch's messages where users know them.

use std::path::PathBuf;

use tandem_engine::EngineError;
use tandem_recovery::{LeaderError, RecoveryError};

use crate::params::FollowParametersError;

/// Why a follow lifecycle request failed.
///
/// Failures of the node's own files ([`Io`](Self::Io), [`Corrupted`](Self::Corrupted),
/// [`Encode`](Self::Encode)) are the server's fault: [`status`](Self::status) 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CcrError {
    /// Invalid follow parameters.
    #[error(transparent)]
    Parameters(#[from] FollowParametersError),
    /// No remote cluster with that alias.
    #[error("no such remote cluster: [{0}]")]
    NoSuchRemoteCluster(String),
    /// The index is not a follower index.
    #[error("index [{0}] is not a follower index")]
    NotAFollower(String),
    /// Pause of a follower index that is already paused.
    #[error("no shard follow tasks for [{0}]")]
    NoFollowTasks(String),
    /// Resume of a follower index that is not paused.
    #[error("cannot resume following index [{0}]: it is being followed already")]
    AlreadyFollowing(String),
    /// Unfollow of a follower index that is still following.
    #[error(
        "cannot convert the follower index [{0}] to a non-follower, because it has not been paused"
    )]
    NotPaused(String),
    /// Unfollow of a follower index that is open.
    #[error(
        "cannot convert the follower index [{0}] to a non-follower, because it has not been closed"
    )]
    NotClosed(String),
    /// Pause, unfollow or close of a follower index whose remote recovery still runs: the
    /// way to stop it is to delete the index.
    #[error(
        "follower index [{0}] is still being recovered from its leader: wait for the recovery \
         to complete (GET /{0}/_recovery), or delete the index to cancel it"
    )]
    StillRecovering(String),
    /// A request on a follower index whose remote recovery failed.
    #[error(
        "the remote recovery of follower index [{index}] failed: {reason}; delete the index \
         and follow again"
    )]
    RecoveryFailed {
        /// The follower index.
        index: String,
        /// Why the recovery failed.
        reason: String,
    },
    /// A follow that waited for its recovery, which was cancelled by deleting the index.
    #[error("the remote recovery of follower index [{0}] was cancelled: the index was deleted")]
    RecoveryCancelled(String),
    /// Resume while the leader or the follower index is closed.
    #[error("leader and follow index must be open")]
    NotOpen,
    /// Resume against a leader index that is no longer the one followed.
    #[error("{0}")]
    LeaderChanged(String),
    /// No auto-follow pattern of that name.
    #[error("auto-follow pattern [{0}] is missing")]
    NoSuchPattern(String),
    /// A request argument is invalid.
    #[error("{0}")]
    InvalidArgument(String),
    /// A failback that cannot be done by operations: the old leader's index never led the
    /// promoted one, or their histories cannot be reconciled (and a full recovery was not
    /// allowed).
    #[error("cannot fail back index [{index}]: {reason}")]
    FailbackRefused {
        /// The old leader's index.
        index: String,
        /// Why.
        reason: String,
    },
    /// A request on an index whose failback has not completed: it stays closed until the
    /// failback is asked again and completes.
    #[error(
        "index [{index}] is being failed back from [{remote_cluster}:{leader_index}] and stays \
         closed until that completes: POST /{index}/_ccr/failback again to resume it"
    )]
    FailbackInProgress {
        /// The index.
        index: String,
        /// The promoted index's cluster.
        remote_cluster: String,
        /// The promoted index.
        leader_index: String,
    },
    /// The leader cluster refused or failed a request.
    #[error(transparent)]
    Leader(#[from] LeaderError),
    /// Copying the leader's files failed.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    /// The local engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A follow state file cannot be read or written.
    #[error("I/O error on the follow state file {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A follow state file holds bytes that are not a follow state.
    #[error("corrupted follow state file {path}: {source}")]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The follow state could not be encoded as JSON (a bug: every state type serializes).
    #[error("cannot encode the follow state for {path}: {source}")]
    Encode {
        /// The file it was meant for.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
}

impl CcrError {
    /// The HTTP status Elasticsearch answers with.
    pub fn status(&self) -> u16 {
        match self {
            CcrError::Parameters(_)
            | CcrError::NotAFollower(_)
            | CcrError::AlreadyFollowing(_)
            | CcrError::NotPaused(_)
            | CcrError::NotClosed(_)
            | CcrError::NotOpen
            | CcrError::LeaderChanged(_)
            | CcrError::StillRecovering(_)
            | CcrError::RecoveryFailed { .. }
            | CcrError::FailbackRefused { .. }
            | CcrError::InvalidArgument(_) => 400,
            CcrError::FailbackInProgress { .. } => 409,
            CcrError::RecoveryCancelled(_) => 404,
            // Elasticsearch's pause of a paused follower is an IllegalArgumentException.
            CcrError::NoFollowTasks(_) => 400,
            CcrError::NoSuchRemoteCluster(_) | CcrError::NoSuchPattern(_) => 404,
            CcrError::Leader(LeaderError::IndexNotFound(_)) => 404,
            CcrError::Leader(LeaderError::Unauthorized(_)) => 403,
            CcrError::Leader(LeaderError::IndexClosed(_) | LeaderError::InvalidRequest(_)) => 400,
            CcrError::Engine(error) => error.status(),
            CcrError::Io { .. } | CcrError::Corrupted { .. } | CcrError::Encode { .. } => 500,
            _ => 500,
        }
    }

    /// Elasticsearch's exception type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            CcrError::Parameters(FollowParametersError::Validation(_)) => {
                "action_request_validation_exception"
            }
            CcrError::Parameters(FollowParametersError::Parse { .. }) => {
                "x_content_parse_exception"
            }
            CcrError::NoSuchRemoteCluster(_) => "no_such_remote_cluster_exception",
            CcrError::NoSuchPattern(_) => "resource_not_found_exception",
            CcrError::NoFollowTasks(_)
            | CcrError::NotAFollower(_)
            | CcrError::AlreadyFollowing(_)
            | CcrError::NotPaused(_)
            | CcrError::NotClosed(_)
            | CcrError::NotOpen
            | CcrError::LeaderChanged(_)
            | CcrError::StillRecovering(_)
            | CcrError::RecoveryFailed { .. }
            | CcrError::FailbackRefused { .. }
            | CcrError::InvalidArgument(_) => "illegal_argument_exception",
            CcrError::FailbackInProgress { .. } => "status_exception",
            CcrError::RecoveryCancelled(_) => "index_not_found_exception",
            CcrError::Leader(error) => crate::task::leader_error_type(error),
            CcrError::Engine(error) => error.type_name(),
            _ => "exception",
        }
    }
}
