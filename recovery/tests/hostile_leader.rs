//! A leader that announces file names leading outside the shard directory is refused before
//! anything is written; idle sessions on a leader are closed and their pins released.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tandem_recovery::{
    CloseRecoverySessionRequest, FileChunk, ForwardingLeaderClient, InProcessLeaderClient,
    LeaderClient, LeaderError, LeaderFuture, OpenRecoverySessionRequest, ReadFileChunkRequest,
    RecoveryError, RecoverySessionInfo, RecoverySourceSettings, RecoveryStage, RecoveryTarget,
    SessionId,
};

/// Renames the first file of every session to `name`, and serves it under that name.
struct RenamingClient {
    inner: InProcessLeaderClient,
    name: String,
}

impl ForwardingLeaderClient for RenamingClient {
    fn inner(&self) -> &dyn LeaderClient {
        &self.inner
    }

    fn open_recovery_session(
        &self,
        request: OpenRecoverySessionRequest,
    ) -> LeaderFuture<'_, RecoverySessionInfo> {
        Box::pin(async move {
            let mut info = self.inner.open_recovery_session(request).await?;
            info.files[0].name = self.name.clone();
            Ok(info)
        })
    }

    fn read_file_chunk(&self, request: ReadFileChunkRequest) -> LeaderFuture<'_, FileChunk> {
        Box::pin(async move {
            Ok(FileChunk {
                data: vec![b'!'; request.length].into(),
                source_throttle: Duration::ZERO,
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_traversal_file_names_are_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let leader = create_leader(dir.path());
    write_history(&leader, 2, 20, 30, "names");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let absolute = outside.join("abs").to_str().unwrap().to_string();
    for name in [
        "../x",
        "../../outside/x",
        absolute.as_str(),
        "a/b",
        "",
        ".",
        "..",
    ] {
        let inner = client_for(&leader);
        let source = inner.recovery_source().clone();
        let client = Arc::new(RenamingClient {
            inner,
            name: name.to_string(),
        });
        let target = RecoveryTarget::new(client, test_settings()).unwrap();
        let follower_dir = dir.path().join("shards").join("follower");
        let result = tokio::time::timeout(
            Duration::from_secs(30),
            target.recover(request(&leader, &follower_dir)),
        )
        .await
        .unwrap();
        assert!(
            matches!(result, Err(RecoveryError::InvalidFileName { .. })),
            "{name:?}: {:?}",
            result.err()
        );
        assert_eq!(target.progress().snapshot().stage, RecoveryStage::Failed);
        assert_eq!(
            source.open_session_count(),
            0,
            "{name:?}: session left open"
        );
        let written: Vec<_> = std::fs::read_dir(index_dir(&follower_dir))
            .unwrap()
            .collect();
        assert!(written.is_empty(), "{name:?}: {written:?}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "{name:?}");
        assert!(!dir.path().join("shards").join("x").exists());
        assert!(!dir.path().join("x").exists());
        // The failed recovery removed its lease.
        let leases = leader_shard(&leader).retention_leases();
        assert_eq!(leases.leases.keys().collect::<Vec<_>>(), [HISTORY_LEASE]);
    }
}

#[tokio::test(start_paused = true)]
async fn idle_sessions_time_out_and_release_their_pins() {
    let dir = tempfile::tempdir().unwrap();
    let leader = create_leader(dir.path());
    leader_shard(&leader)
        .remove_retention_lease(HISTORY_LEASE)
        .unwrap();
    write_history(&leader, 3, 50, 60, "timeout");
    let settings = RecoverySourceSettings {
        activity_timeout: Duration::from_secs(60),
        ..RecoverySourceSettings::default()
    };
    let client = client_with(&leader, settings);
    let source = client.recovery_source().clone();
    let reaper = source.spawn_idle_reaper();
    let shard = leader_shard(&leader);
    let info = source.open_session(shard_id(), shard, 1).unwrap();
    let file = info.files[0].name.clone();

    // Activity keeps it open past the timeout.
    tokio::time::sleep(Duration::from_secs(45)).await;
    source
        .read_chunk(&shard_id(), &info.session_id, &file, 0, 10)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(45)).await;
    assert_eq!(source.open_session_count(), 1, "active session closed");

    // While it is open, a merge does not take its files away.
    write_history(&leader, 1, 50, 60, "more");
    shard.force_merge(1).unwrap();
    shard.refresh().unwrap();
    let leader_index = leader.dir().join("0").join("index");
    let latest = shard.pin_latest_commit().unwrap();
    assert!(
        latest.file(&file).is_none(),
        "the merge kept {file}: the test proves nothing"
    );
    drop(latest);
    assert!(leader_index.join(&file).exists());

    // Idle for the timeout: the reaper closes it and the pin goes.
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(source.open_session_count(), 0);
    let error = source
        .read_chunk(&shard_id(), &info.session_id, &file, 0, 10)
        .await
        .unwrap_err();
    assert_eq!(error, LeaderError::UnknownSession(info.session_id.clone()));
    assert!(
        !source.close_session(&info.session_id),
        "closing twice is a no-op"
    );
    client
        .close_recovery_session(CloseRecoverySessionRequest::new(
            shard_id(),
            info.session_id.clone(),
        ))
        .await
        .unwrap();
    shard
        .index(tandem_engine::shard::IndexRequest::new(
            "trigger",
            b"{}".to_vec(),
        ))
        .unwrap();
    shard.refresh().unwrap();
    assert!(
        !leader_index.join(&file).exists(),
        "the pin was not released"
    );
    reaper.abort();
}

#[tokio::test(start_paused = true)]
async fn an_expired_session_is_closed_on_its_next_request_without_a_reaper() {
    let dir = tempfile::tempdir().unwrap();
    let leader = create_leader(dir.path());
    write_history(&leader, 1, 10, 10, "lazy");
    let client = client_for(&leader);
    let source = client.recovery_source().clone();
    let info = source
        .open_session(shard_id(), leader_shard(&leader), 1)
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let error = source
        .read_chunk(&shard_id(), &info.session_id, &info.files[0].name, 0, 1)
        .await
        .unwrap_err();
    assert!(matches!(error, LeaderError::UnknownSession(_)));
    assert_eq!(source.open_session_count(), 0);
    let unknown = source
        .read_chunk(&shard_id(), &SessionId("nope".into()), "meta.json", 0, 1)
        .await
        .unwrap_err();
    assert_eq!(unknown.to_string(), "unknown recovery session [nope]");
}
