//! [`RecoveryError`]: why a recovery failed.

use std::path::PathBuf;

use tandem_engine::EngineError;

use crate::leader_api::LeaderError;

/// Why a recovery failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// A setting is out of range.
    #[error("invalid recovery setting [{setting}]: {reason}")]
    InvalidSetting {
        /// The setting's name.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The leader announced a file name that could lead outside the shard directory or clash
    /// with the recovery's own files. Nothing was written.
    #[error("invalid file name [{name}] from the leader: {reason}")]
    InvalidFileName {
        /// The name, as received (escaped for display).
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The leader's file list is not a usable commit.
    #[error("invalid file list from the leader: {0}")]
    InvalidFileList(String),
    /// The leader's commit is larger (in files or bytes) than a recovery accepts: a named
    /// limit far above any real shard, so that no announced number can overflow or exhaust
    /// the follower. Nothing was written.
    #[error("the leader's commit is too large: {what} is {value}, over the limit of {limit}")]
    CommitTooLarge {
        /// What is counted.
        what: &'static str,
        /// The leader's figure.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// Copying the commit would take the follower's disk past its high watermark. Nothing
    /// was written.
    #[error(
        "recovering needs {needed_bytes} bytes but only {writable_bytes} bytes can be written \
         to {path} before the disk high watermark [{setting}={watermark}] is passed \
         ({available_bytes} bytes available on the disk)"
    )]
    DiskWatermark {
        /// The setting (`cluster.routing.allocation.disk.watermark.high`).
        setting: &'static str,
        /// Its value.
        watermark: String,
        /// Bytes of the files still to copy, as the leader announces them.
        needed_bytes: u64,
        /// Bytes that can be written before the watermark.
        writable_bytes: u64,
        /// Bytes available on the file system.
        available_bytes: u64,
        /// The follower shard's directory.
        path: PathBuf,
    },
    /// The leader answered with an error that retrying does not fix, or retries ran out.
    #[error("leader request failed ({context}): {source}")]
    Leader {
        /// What the recovery was doing.
        context: String,
        /// The leader's error.
        #[source]
        source: LeaderError,
    },
    /// A file kept failing its checksum after every allowed refetch.
    #[error("file [{name}] failed verification {attempts} times: {reason}")]
    ChecksumMismatch {
        /// The file.
        name: String,
        /// Fetches tried.
        attempts: u32,
        /// The last verification failure.
        reason: String,
    },
    /// The leader's commit changed (or its session was lost) more often than allowed.
    #[error("recovery gave up after {0} lost sessions")]
    TooManySessionLosses(u32),
    /// An I/O error on a file of the follower shard.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The follower's engine failed (verifying or bootstrapping the copy).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A task of the recovery panicked or was cancelled (a bug).
    #[error("recovery task failed: {0}")]
    Task(String),
}

impl RecoveryError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RecoveryError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn leader(context: impl Into<String>, source: LeaderError) -> Self {
        RecoveryError::Leader {
            context: context.into(),
            source,
        }
    }
}
