//! [`VerifySource`]: the leader side of verify sessions (see
//! [`tandem_engine::shard::verify`]).
//!
//! A session is a leader shard's [`VerifyView`] at the follower's `up_to_seq_no`, kept between
//! the steps of one verify: the snapshot it reads (its segments stay on disk, unchanged, while
//! it lives) and a retention lease `tandem-verify/<session>` that keeps the shard's history
//! from its floor for the duration, so that the history the verify compares is not merged away
//! under later snapshots either.
//!
//! Guarantees:
//! - at most [`VerifySourceSettings::max_sessions`] sessions are open; one more is refused
//!   (retryable), as each holds a snapshot's segments;
//! - a session that sees no step for `activity_timeout` is closed, its lease removed and its
//!   snapshot released, when the source is next used and by the idle reaper
//!   ([`VerifySource::spawn_idle_reaper`]);
//! - a lease left by a session this process no longer knows (a leader restarted during a
//!   verify) is removed by the next session opened on the shard;
//! - closing is idempotent; a lost session answers [`LeaderError::UnknownSession`].

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tandem_engine::index::Index;
use tandem_engine::shard::verify::{ChangedIds, SeqRange, VerifyView, LEAF_SEQ_NOS};
use tandem_engine::{SeqNo, ShardEngine};
use tokio::task::JoinHandle;

use crate::leader_api::{
    LeaderError, SessionId, ShardId, VerifyOpened, VerifyShardResponse,
    MAX_FOLLOWER_UNDETERMINED_BYTES, MAX_VERIFY_RANGES,
};

/// Prefix of the retention lease ids of verify sessions.
pub const VERIFY_LEASE_PREFIX: &str = "tandem-verify/";
/// The `source` of a verify session's lease.
pub const VERIFY_LEASE_SOURCE: &str = "ccr-verify";

/// Limits of the verify sessions of a leader.
#[derive(Clone, Debug)]
pub struct VerifySourceSettings {
    /// Sessions idle this long are closed.
    pub activity_timeout: Duration,
    /// Most sessions open at once.
    pub max_sessions: usize,
}

impl Default for VerifySourceSettings {
    fn default() -> Self {
        VerifySourceSettings {
            activity_timeout: Duration::from_secs(60),
            max_sessions: 16,
        }
    }
}

struct Session {
    shard: ShardId,
    index: Weak<Index>,
    lease_id: String,
    view: Arc<VerifyView>,
    last_activity: Instant,
}

/// The leader's verify sessions. Shared through `Arc`; every method takes `&self`. Methods
/// that read segments block: call them off the async runtime's worker threads.
pub struct VerifySource {
    settings: VerifySourceSettings,
    sessions: Mutex<HashMap<SessionId, Session>>,
}

impl VerifySource {
    /// A source without sessions.
    pub fn new(settings: VerifySourceSettings) -> Arc<VerifySource> {
        Arc::new(VerifySource {
            settings,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// Opens a session on shard `shard` of `index` (see [`VerifyStep::Open`]
    /// (crate::leader_api::VerifyStep::Open)). Blocking.
    pub fn open(
        &self,
        shard: ShardId,
        index: &Arc<Index>,
        expected_history_uuid: &str,
        up_to: SeqNo,
        follower_history_from: SeqNo,
        follower_undetermined: &[String],
    ) -> Result<VerifyOpened, LeaderError> {
        let started = Instant::now();
        let bytes: usize = follower_undetermined.iter().map(|id| id.len() + 16).sum();
        if bytes > MAX_FOLLOWER_UNDETERMINED_BYTES {
            return Err(LeaderError::InvalidRequest(format!(
                "[{bytes}] bytes of undetermined ids sent, at most \
                 [{MAX_FOLLOWER_UNDETERMINED_BYTES}] are accepted"
            )));
        }
        self.close_idle_sessions();
        if self.sessions.lock().len() >= self.settings.max_sessions {
            return Err(LeaderError::Unavailable(format!(
                "too many verify sessions open (at most {})",
                self.settings.max_sessions
            )));
        }
        let engine = shard_engine(index, &shard)?;
        let actual = engine.history_uuid();
        if actual != expected_history_uuid {
            return Err(LeaderError::HistoryUuidMismatch {
                expected: expected_history_uuid.to_string(),
                actual,
            });
        }
        self.remove_orphan_leases(engine);
        let session = SessionId(uuid::Uuid::new_v4().to_string());
        let lease_id = format!("{VERIFY_LEASE_PREFIX}{session}");
        engine
            .add_retention_lease(&lease_id, engine.min_retained_seq_no(), VERIFY_LEASE_SOURCE)
            .map_err(|e| LeaderError::from_engine(&e))?;
        let built = build_view(engine, up_to, follower_history_from, follower_undetermined);
        let view = match built {
            Ok(view) => Arc::new(view),
            Err(error) => {
                let _ = engine.remove_retention_lease(&lease_id);
                return Err(error);
            }
        };
        let opened = VerifyOpened {
            session: session.clone(),
            history_from: view.history_from(),
            undetermined_ids: view
                .changes()
                .undetermined
                .iter()
                .map(str::to_string)
                .collect(),
            left_out: view.excluded().len() as u64,
            root: view.root(),
            max_seq_no: view.snapshot().max_seq_no(),
            took_millis: started.elapsed().as_millis() as u64,
        };
        tracing::info!(
            %shard,
            %session,
            up_to = %up_to,
            live_docs = opened.root.live_docs,
            history_ops = opened.root.history_ops,
            took_millis = opened.took_millis,
            "opened a verify session"
        );
        self.sessions.lock().insert(
            session,
            Session {
                shard,
                index: Arc::downgrade(index),
                lease_id,
                view,
                last_activity: Instant::now(),
            },
        );
        Ok(opened)
    }

    /// The digests of `ranges` in the session's view. Blocking.
    pub fn digests(
        &self,
        shard: &ShardId,
        session: &SessionId,
        ranges: &[SeqRange],
    ) -> Result<VerifyShardResponse, LeaderError> {
        if ranges.len() > MAX_VERIFY_RANGES {
            return Err(LeaderError::InvalidRequest(format!(
                "[{}] ranges asked, at most [{MAX_VERIFY_RANGES}] are served at once",
                ranges.len()
            )));
        }
        let view = self.touch(shard, session)?;
        let digests = ranges
            .iter()
            .map(|range| view.digest(*range))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LeaderError::from_engine(&e))?;
        Ok(VerifyShardResponse::Digests { digests })
    }

    /// The entries of `range` in the session's view. Blocking.
    pub fn entries(
        &self,
        shard: &ShardId,
        session: &SessionId,
        range: SeqRange,
    ) -> Result<VerifyShardResponse, LeaderError> {
        if range.len() > LEAF_SEQ_NOS {
            return Err(LeaderError::InvalidRequest(format!(
                "entries of [{}] seq_nos asked, at most [{LEAF_SEQ_NOS}] are served at once",
                range.len()
            )));
        }
        let view = self.touch(shard, session)?;
        let entries = view
            .entries(range)
            .map_err(|e| LeaderError::from_engine(&e))?;
        Ok(VerifyShardResponse::Entries { entries })
    }

    /// Closes a session: removes its lease, releases its snapshot. Idempotent.
    pub fn close(&self, session: &SessionId) -> bool {
        let removed = self.sessions.lock().remove(session);
        match removed {
            Some(session) => {
                release(session);
                true
            }
            None => false,
        }
    }

    /// Closes every session idle for the activity timeout; returns how many.
    pub fn close_idle_sessions(&self) -> usize {
        let timeout = self.settings.activity_timeout;
        let now = Instant::now();
        let idle: Vec<Session> = {
            let mut sessions = self.sessions.lock();
            let ids: Vec<SessionId> = sessions
                .iter()
                .filter(|(_, session)| {
                    now.saturating_duration_since(session.last_activity) >= timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        let count = idle.len();
        for session in idle {
            tracing::info!(shard = %session.shard, ?timeout, "closed an idle verify session");
            release(session);
        }
        count
    }

    /// Number of open sessions.
    pub fn open_session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Starts a task that closes idle sessions every quarter of the activity timeout; it ends
    /// when the source is dropped. Releasing runs on the blocking pool (a lease removal syncs).
    pub fn spawn_idle_reaper(self: &Arc<Self>) -> JoinHandle<()> {
        let source = Arc::downgrade(self);
        let period = (self.settings.activity_timeout / 4).max(Duration::from_millis(10));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(source) = source.upgrade() else {
                    return;
                };
                let _ = tokio::task::spawn_blocking(move || source.close_idle_sessions()).await;
            }
        })
    }

    fn touch(&self, shard: &ShardId, session: &SessionId) -> Result<Arc<VerifyView>, LeaderError> {
        let timeout = self.settings.activity_timeout;
        let mut sessions = self.sessions.lock();
        let open = sessions
            .get_mut(session)
            .ok_or_else(|| LeaderError::UnknownSession(session.clone()))?;
        if &open.shard != shard {
            return Err(LeaderError::InvalidRequest(format!(
                "verify session [{session}] is on shard {}, not {shard}",
                open.shard
            )));
        }
        let now = Instant::now();
        if now.saturating_duration_since(open.last_activity) >= timeout {
            if let Some(expired) = sessions.remove(session) {
                drop(sessions);
                release(expired);
            }
            return Err(LeaderError::UnknownSession(session.clone()));
        }
        open.last_activity = now;
        Ok(open.view.clone())
    }

    /// Removes the verify leases of `engine` that no open session holds.
    fn remove_orphan_leases(&self, engine: &ShardEngine) {
        let held: Vec<String> = self
            .sessions
            .lock()
            .values()
            .map(|session| session.lease_id.clone())
            .collect();
        for id in engine.retention_leases().leases.keys() {
            if id.starts_with(VERIFY_LEASE_PREFIX) && !held.contains(id) {
                match engine.remove_retention_lease(id) {
                    Ok(_) => {
                        tracing::info!(lease = %id, "removed a verify lease left by a lost session")
                    }
                    Err(error) => {
                        tracing::warn!(lease = %id, %error, "cannot remove a lost verify lease")
                    }
                }
            }
        }
    }
}

fn shard_engine<'a>(index: &'a Index, shard: &ShardId) -> Result<&'a ShardEngine, LeaderError> {
    index
        .shards()
        .get(shard.shard as usize)
        .ok_or_else(|| LeaderError::ShardNotFound {
            index: shard.index.clone(),
            shard: shard.shard,
        })
}

fn build_view(
    engine: &ShardEngine,
    up_to: SeqNo,
    follower_history_from: SeqNo,
    follower_undetermined: &[String],
) -> Result<VerifyView, LeaderError> {
    let engine_error = |e: tandem_engine::EngineError| LeaderError::from_engine(&e);
    let snapshot = engine.verify_snapshot(Some(up_to)).map_err(engine_error)?;
    let changes = snapshot.changes_above().map_err(engine_error)?;
    let mut excluded = ChangedIds::default();
    for id in follower_undetermined {
        excluded.insert(id).map_err(engine_error)?;
    }
    let history_from = snapshot.retained_from().max(follower_history_from);
    VerifyView::build(snapshot, changes, excluded, history_from).map_err(engine_error)
}

/// Removes a closed session's lease (when its index is still open) and drops its snapshot.
fn release(session: Session) {
    if let Some(index) = session.index.upgrade() {
        if let Ok(engine) = shard_engine(&index, &session.shard) {
            if let Err(error) = engine.remove_retention_lease(&session.lease_id) {
                tracing::debug!(lease = %session.lease_id, %error, "verify lease already gone");
            }
        }
    }
}
