//! A live, cloneable view of one recovery: stage, files, bytes, throttle times, retries. The
//! recovery updates it as it goes; any clone reads a consistent snapshot at any time (this is
//! what the `_recovery` API shows).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;

/// Where a recovery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecoveryStage {
    /// Adding the retention lease and opening the session.
    Init,
    /// Copying files.
    Index,
    /// Checking the copied commit is complete.
    VerifyIndex,
    /// Opening the follower engine on the copy.
    Finalize,
    /// Finished.
    Done,
    /// Failed (see `failure`).
    Failed,
}

/// One consistent reading of a [`RecoveryProgress`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecoveryProgressSnapshot {
    /// Current stage.
    pub stage: RecoveryStage,
    /// Files of the leader's commit.
    pub files_total: u64,
    /// Files copied and verified so far (reused ones included).
    pub files_recovered: u64,
    /// Files already present and verified from an earlier attempt, not copied again.
    pub files_reused: u64,
    /// Bytes of the leader's commit.
    pub bytes_total: u64,
    /// Bytes copied so far, plus the bytes of reused files.
    pub bytes_recovered: u64,
    /// Bytes of reused files.
    pub bytes_reused: u64,
    /// Time the leader spent throttling chunks.
    pub source_throttle_time: Duration,
    /// Time the follower spent throttling chunks.
    pub target_throttle_time: Duration,
    /// When the recovery started.
    pub start_time: SystemTime,
    /// When it stopped (done or failed).
    pub stop_time: Option<SystemTime>,
    /// Time from start to stop, or to now while it runs.
    pub total_time: Duration,
    /// Chunk requests retried (errors, timeouts, short chunks).
    pub chunk_retries: u64,
    /// Files fetched again after failing verification.
    pub file_refetches: u64,
    /// New sessions opened after the leader lost one.
    pub session_reopens: u64,
    /// Times the copy started over because the leader's commit changed under copied files.
    pub restarts: u64,
    /// Renewals of the retention lease while the recovery ran.
    pub lease_renewals: u64,
    /// Why it failed.
    pub failure: Option<String>,
}

impl RecoveryProgressSnapshot {
    /// Recovered bytes as a percentage of the total (100 for an empty commit).
    pub fn percent(&self) -> f64 {
        if self.bytes_total == 0 {
            return 100.0;
        }
        self.bytes_recovered as f64 * 100.0 / self.bytes_total as f64
    }
}

struct ProgressState {
    snapshot: RecoveryProgressSnapshot,
    started: Instant,
    stopped: Option<Instant>,
}

/// The live progress handle; clones share the same state.
#[derive(Clone)]
pub struct RecoveryProgress {
    state: Arc<Mutex<ProgressState>>,
}

impl Default for RecoveryProgress {
    fn default() -> Self {
        RecoveryProgress::new()
    }
}

impl RecoveryProgress {
    /// A progress in stage `Init`, started now.
    pub fn new() -> RecoveryProgress {
        let snapshot = RecoveryProgressSnapshot {
            stage: RecoveryStage::Init,
            files_total: 0,
            files_recovered: 0,
            files_reused: 0,
            bytes_total: 0,
            bytes_recovered: 0,
            bytes_reused: 0,
            source_throttle_time: Duration::ZERO,
            target_throttle_time: Duration::ZERO,
            start_time: SystemTime::now(),
            stop_time: None,
            total_time: Duration::ZERO,
            chunk_retries: 0,
            file_refetches: 0,
            session_reopens: 0,
            restarts: 0,
            lease_renewals: 0,
            failure: None,
        };
        RecoveryProgress {
            state: Arc::new(Mutex::new(ProgressState {
                snapshot,
                started: Instant::now(),
                stopped: None,
            })),
        }
    }

    /// A consistent reading.
    pub fn snapshot(&self) -> RecoveryProgressSnapshot {
        let state = self.state.lock();
        let mut snapshot = state.snapshot.clone();
        snapshot.total_time = state
            .stopped
            .unwrap_or_else(Instant::now)
            .duration_since(state.started);
        snapshot
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut RecoveryProgressSnapshot)) {
        change(&mut self.state.lock().snapshot);
    }

    pub(crate) fn set_stage(&self, stage: RecoveryStage) {
        self.update(|snapshot| snapshot.stage = stage);
    }

    /// Starts counting a (new) file list: totals set, counters of copied data reset.
    pub(crate) fn set_totals(&self, files_total: u64, bytes_total: u64) {
        self.update(|snapshot| {
            snapshot.files_total = files_total;
            snapshot.bytes_total = bytes_total;
            snapshot.files_recovered = 0;
            snapshot.files_reused = 0;
            snapshot.bytes_recovered = 0;
            snapshot.bytes_reused = 0;
        });
    }

    pub(crate) fn stop(&self, stage: RecoveryStage, failure: Option<String>) {
        let mut state = self.state.lock();
        state.snapshot.stage = stage;
        state.snapshot.failure = failure;
        state.snapshot.stop_time = Some(SystemTime::now());
        state.stopped = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_state_and_percent_follows_bytes() {
        let progress = RecoveryProgress::new();
        let view = progress.clone();
        progress.set_totals(4, 200);
        progress.update(|snapshot| snapshot.bytes_recovered = 50);
        assert_eq!(view.snapshot().percent(), 25.0);
        progress.stop(RecoveryStage::Done, None);
        let stopped = view.snapshot();
        assert_eq!(stopped.stage, RecoveryStage::Done);
        assert!(stopped.stop_time.is_some());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            view.snapshot().total_time,
            stopped.total_time,
            "frozen once stopped"
        );
    }
}
