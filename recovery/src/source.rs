//! Leader side of remote recovery: [`RecoverySource`] keeps one session per recovering
//! follower shard, each pinning the shard's latest commit ([`PinnedCommit`]), and serves chunks
//! of the pinned files.
//!
//! Guarantees:
//! - a session's files stay readable and unchanged until the session is closed, whatever the
//!   shard does meanwhile (the pin holds them);
//! - a session that sees no request for `activity_timeout` is closed and its pin released, both
//!   when it is next used and by the idle reaper ([`RecoverySource::spawn_idle_reaper`]);
//! - closing is idempotent; a request for an unknown session gets
//!   [`LeaderError::UnknownSession`];
//! - at most `max_sessions` sessions are open at once, and a chunk is at most
//!   [`MAX_CHUNK_BYTES`].
//!
//! Time is tokio's, so tests can pause and advance it.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tandem_engine::shard::PinnedCommit;
use tandem_engine::ShardEngine;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::chunk_bytes::ChunkBytes;
use crate::leader_api::{FileChunk, LeaderError, RecoverySessionInfo, SessionId, ShardId};
use crate::rate_limiter::RateLimiter;

/// Largest chunk a source serves; larger requests are refused.
pub const MAX_CHUNK_BYTES: usize = 64 * 1024 * 1024;

/// How a recovery source behaves.
#[derive(Clone, Debug)]
pub struct RecoverySourceSettings {
    /// Sessions idle this long are closed (`ccr.indices.recovery.recovery_activity_timeout`,
    /// 60 s by default).
    pub activity_timeout: Duration,
    /// The leader's own limit on chunk bytes per second, shared by all sessions; 0 (default) is
    /// unlimited (the follower's limit applies).
    pub max_bytes_per_sec: u64,
    /// At most this many sessions open at once.
    pub max_sessions: usize,
}

impl Default for RecoverySourceSettings {
    fn default() -> Self {
        RecoverySourceSettings {
            activity_timeout: Duration::from_secs(60),
            max_bytes_per_sec: 0,
            max_sessions: 256,
        }
    }
}

struct SourceSession {
    shard: ShardId,
    commit: Arc<PinnedCommit>,
    last_activity: Instant,
}

/// A range of one file of a pinned commit, shared without copying: the chunk's bytes stay in
/// the commit's memory map, which the view keeps alive (with the pin) until the transport has
/// sent them.
struct PinnedFileView {
    commit: Arc<PinnedCommit>,
    file: usize,
    start: usize,
    end: usize,
}

impl PinnedFileView {
    /// `length` bytes of file number `file` from `offset` (fewer at its end); an error when
    /// `offset` is past the end.
    fn new(
        commit: Arc<PinnedCommit>,
        file: usize,
        offset: u64,
        length: usize,
    ) -> Result<PinnedFileView, LeaderError> {
        let range = commit.files()[file]
            .read(offset, length)
            .map_err(|e| LeaderError::InvalidRequest(e.to_string()))?
            .len();
        // `read` accepted the offset, so it is within the file and fits a usize.
        let start = offset as usize;
        Ok(PinnedFileView {
            commit,
            file,
            start,
            end: start + range,
        })
    }
}

impl AsRef<[u8]> for PinnedFileView {
    fn as_ref(&self) -> &[u8] {
        &self.commit.files()[self.file].bytes()[self.start..self.end]
    }
}

/// The leader's recovery sessions. Shared through `Arc`; every method takes `&self`.
pub struct RecoverySource {
    settings: RecoverySourceSettings,
    sessions: Mutex<HashMap<SessionId, SourceSession>>,
    limiter: RateLimiter,
}

impl RecoverySource {
    /// A source without sessions.
    pub fn new(settings: RecoverySourceSettings) -> Arc<RecoverySource> {
        let limiter = RateLimiter::new(settings.max_bytes_per_sec);
        Arc::new(RecoverySource {
            settings,
            sessions: Mutex::new(HashMap::new()),
            limiter,
        })
    }

    /// Opens a session on `engine` (the shard `shard`): pins its latest commit. Blocking (maps
    /// the commit's files); call it off the async runtime's worker threads.
    pub fn open_session(
        &self,
        shard: ShardId,
        engine: &ShardEngine,
        mapping_version: u64,
    ) -> Result<RecoverySessionInfo, LeaderError> {
        self.close_idle_sessions();
        if self.sessions.lock().len() >= self.settings.max_sessions {
            return Err(LeaderError::Unavailable(format!(
                "too many recovery sessions open (at most {})",
                self.settings.max_sessions
            )));
        }
        let commit = engine
            .pin_latest_commit()
            .map_err(|e| LeaderError::from_engine(&e))?;
        let session_id = SessionId(uuid::Uuid::new_v4().to_string());
        let info = RecoverySessionInfo {
            session_id: session_id.clone(),
            shard: shard.clone(),
            files: commit.file_infos(),
            local_checkpoint: commit.payload().local_checkpoint,
            max_seq_no: commit.payload().max_seq_no,
            mapping_version,
            history_uuid: commit.payload().history_uuid.clone(),
        };
        tracing::info!(
            %shard,
            session = %session_id,
            files = info.files.len(),
            bytes = commit.total_bytes(),
            local_checkpoint = %info.local_checkpoint,
            "opened a recovery session"
        );
        self.sessions.lock().insert(
            session_id,
            SourceSession {
                shard,
                commit,
                last_activity: Instant::now(),
            },
        );
        Ok(info)
    }

    /// Reads a chunk of `file` of the session's pinned commit, throttled by the source's rate
    /// limit. Counts as activity.
    pub async fn read_chunk(
        &self,
        shard: &ShardId,
        session: &SessionId,
        file: &str,
        offset: u64,
        length: usize,
    ) -> Result<FileChunk, LeaderError> {
        if length > MAX_CHUNK_BYTES {
            return Err(LeaderError::InvalidRequest(format!(
                "chunk of {length} bytes requested, at most {MAX_CHUNK_BYTES} are served"
            )));
        }
        let commit = self.touch(shard, session)?;
        let index = commit
            .file_index(file)
            .ok_or_else(|| LeaderError::UnknownFile {
                session: session.clone(),
                name: file.to_string(),
            })?;
        let view = PinnedFileView::new(commit, index, offset, length)?;
        let source_throttle = self.limiter.acquire(view.as_ref().len() as u64).await;
        Ok(FileChunk {
            data: ChunkBytes::from(Bytes::from_owner(view)),
            source_throttle,
        })
    }

    /// Closes a session and releases its pin; returns whether it was open. Idempotent.
    pub fn close_session(&self, session: &SessionId) -> bool {
        let removed = self.sessions.lock().remove(session);
        if let Some(removed) = &removed {
            tracing::info!(shard = %removed.shard, %session, "closed a recovery session");
        }
        removed.is_some()
    }

    /// Closes every session idle for the activity timeout; returns how many.
    pub fn close_idle_sessions(&self) -> usize {
        let now = Instant::now();
        let timeout = self.settings.activity_timeout;
        let mut sessions = self.sessions.lock();
        let before = sessions.len();
        sessions.retain(|session_id, session| {
            let alive = now.saturating_duration_since(session.last_activity) < timeout;
            if !alive {
                tracing::warn!(
                    shard = %session.shard,
                    session = %session_id,
                    ?timeout,
                    "closing an idle recovery session"
                );
            }
            alive
        });
        before - sessions.len()
    }

    /// Closes every session (as a leader restart loses them); returns how many were open.
    pub fn close_all_sessions(&self) -> usize {
        let mut sessions = self.sessions.lock();
        let count = sessions.len();
        sessions.clear();
        count
    }

    /// Number of open sessions.
    pub fn open_session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Starts a task that closes idle sessions every quarter of the activity timeout; it ends
    /// when the source is dropped (or the handle is aborted).
    pub fn spawn_idle_reaper(self: &Arc<Self>) -> JoinHandle<()> {
        let source: Weak<RecoverySource> = Arc::downgrade(self);
        let period = (self.settings.activity_timeout / 4).max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(source) = source.upgrade() else {
                    return;
                };
                source.close_idle_sessions();
            }
        })
    }

    /// Marks the session active and returns its commit; an expired session is closed here.
    fn touch(
        &self,
        shard: &ShardId,
        session: &SessionId,
    ) -> Result<Arc<PinnedCommit>, LeaderError> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        let Some(open) = sessions.get_mut(session) else {
            return Err(LeaderError::UnknownSession(session.clone()));
        };
        if now.saturating_duration_since(open.last_activity) >= self.settings.activity_timeout {
            sessions.remove(session);
            return Err(LeaderError::UnknownSession(session.clone()));
        }
        if open.shard != *shard {
            return Err(LeaderError::InvalidRequest(format!(
                "recovery session [{session}] belongs to shard {}, not {shard}",
                open.shard
            )));
        }
        open.last_activity = now;
        Ok(open.commit.clone())
    }
}
