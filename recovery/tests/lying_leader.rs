//! A leader that announces files larger than the follower can hold (by mistake or on purpose)
//! costs the follower an error, not its disk or its memory: a commit past the disk high
//! watermark or past the named size limits is refused before any file is created, and while
//! a copy runs the follower's memory stays bounded by the chunks in flight, whatever lengths
//! were announced.
//!
//! This binary counts every allocation (its own global allocator), so memory is measured, not
//! inferred from timing.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tandem_engine::shard::{ChecksumKind, CommitFileInfo};
use tandem_recovery::disk::DISK_WATERMARK_HIGH_SETTING;
use tandem_recovery::{
    DiskWatermark, FileChunk, ForwardingLeaderClient, InProcessLeaderClient, LeaderClient,
    LeaderFuture, OpenRecoverySessionRequest, ReadFileChunkRequest, RecoveryError,
    RecoverySessionInfo, RecoverySettings, RecoveryStage, RecoveryTarget,
};
use tandem_testkit::allocations::CountingAllocator;

/// Every allocation of this binary is counted, so memory is measured.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Held by every test: allocations are counted process-wide.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TIB: u64 = 1 << 40;

/// Announces `extra` files before the leader's real ones and serves their chunks as zeros;
/// counts the chunk requests in flight and the most there ever were.
struct LyingClient {
    inner: InProcessLeaderClient,
    extra: Vec<(String, u64)>,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    served: AtomicU64,
}

impl LyingClient {
    fn new(inner: InProcessLeaderClient, extra: Vec<(String, u64)>) -> LyingClient {
        LyingClient {
            inner,
            extra,
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            served: AtomicU64::new(0),
        }
    }
}

impl ForwardingLeaderClient for LyingClient {
    fn inner(&self) -> &dyn LeaderClient {
        &self.inner
    }

    fn open_recovery_session(
        &self,
        request: OpenRecoverySessionRequest,
    ) -> LeaderFuture<'_, RecoverySessionInfo> {
        Box::pin(async move {
            let mut info = self.inner.open_recovery_session(request).await?;
            let lies = self.extra.iter().map(|(name, length)| CommitFileInfo {
                name: name.clone(),
                length: *length,
                checksum: 0,
                checksum_kind: ChecksumKind::WholeFile,
                footer_checksum: None,
            });
            info.files.splice(0..0, lies);
            Ok(info)
        })
    }

    fn read_file_chunk(&self, request: ReadFileChunkRequest) -> LeaderFuture<'_, FileChunk> {
        Box::pin(async move {
            if !self.extra.iter().any(|(name, _)| *name == request.file) {
                return self.inner.read_file_chunk(request).await;
            }
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.served.fetch_add(1, Ordering::SeqCst);
            Ok(FileChunk {
                data: vec![0; request.length].into(),
                source_throttle: Duration::ZERO,
            })
        })
    }
}

fn sixteen_tib_files(count: usize) -> Vec<(String, u64)> {
    (0..count)
        .map(|n| (format!("lie_{n:03}.idx"), 16 * TIB))
        .collect()
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            found.extend(files_under(&entry.path()));
        } else {
            found.push(entry.path().display().to_string());
        }
    }
    found
}

/// Runs a recovery that must fail before copying; returns its error.
async fn refused_recovery(extra: Vec<(String, u64)>, settings: RecoverySettings) -> RecoveryError {
    let dir = tempfile::tempdir().unwrap();
    let leader = create_leader(dir.path());
    write_history(&leader, 2, 20, 30, "lies");
    let inner = client_for(&leader);
    let source = inner.recovery_source().clone();
    let client = Arc::new(LyingClient::new(inner, extra));
    let target = RecoveryTarget::new(client.clone(), settings).unwrap();
    let follower_dir = dir.path().join("shards").join("follower");
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        target.recover(request(&leader, &follower_dir)),
    )
    .await
    .unwrap();
    let Err(error) = result else {
        panic!("a lying leader's commit was recovered");
    };
    let snapshot = target.progress().snapshot();
    assert_eq!(snapshot.stage, RecoveryStage::Failed);
    assert_eq!(snapshot.failure, Some(error.to_string()));
    assert_eq!(client.served.load(Ordering::SeqCst), 0, "a lie was copied");
    assert_eq!(files_under(&follower_dir), Vec::<String>::new());
    assert_eq!(source.open_session_count(), 0, "session left open");
    let leases = leader_shard(&leader).retention_leases();
    assert_eq!(leases.leases.keys().collect::<Vec<_>>(), [HISTORY_LEASE]);
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_files_of_16_tib_are_refused_at_the_disk_watermark_before_any_file_is_created() {
    let _serial = SERIAL.lock().await;
    let baseline = CountingAllocator::reset_peak();
    let error = refused_recovery(sixteen_tib_files(100), test_settings()).await;
    let message = error.to_string();
    assert!(
        matches!(
            error,
            RecoveryError::DiskWatermark { needed_bytes, .. } if needed_bytes >= 1600 * TIB
        ),
        "{message}"
    );
    assert!(message.contains(DISK_WATERMARK_HIGH_SETTING), "{message}");
    assert!(message.contains("=90%"), "{message}");
    let peak = CountingAllocator::peak() - baseline;
    assert!(peak < 64 << 20, "{peak} bytes allocated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_larger_than_the_free_space_is_refused_before_any_file_is_created() {
    let _serial = SERIAL.lock().await;
    let probe = tempfile::tempdir().unwrap();
    let free = tandem_engine::storage::Storage::disk_space(
        &tandem_engine::storage::RealStorage,
        probe.path(),
    )
    .unwrap()
    .unwrap()
    .available_bytes;
    // Past the free space whatever the watermark: even 100% used is refused.
    let settings = RecoverySettings {
        disk_watermark_high: DiskWatermark::UsedBasisPoints(10_000),
        ..test_settings()
    };
    let extra = vec![("huge.idx".to_string(), free + (1 << 30))];
    let error = refused_recovery(extra, settings).await;
    let RecoveryError::DiskWatermark {
        needed_bytes,
        available_bytes,
        ..
    } = error
    else {
        panic!("{error}");
    };
    assert!(needed_bytes > free + (1 << 30), "{needed_bytes}");
    assert!(available_bytes < needed_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_past_the_named_limits_are_refused_without_overflow() {
    let _serial = SERIAL.lock().await;
    let settings = RecoverySettings {
        disk_watermark_high: DiskWatermark::Disabled,
        ..test_settings()
    };
    let overflowing = vec![
        ("a.idx".to_string(), u64::MAX),
        ("b.idx".to_string(), u64::MAX),
    ];
    let error = refused_recovery(overflowing, settings.clone()).await;
    assert!(
        matches!(error, RecoveryError::CommitTooLarge { limit, .. } if limit == tandem_recovery::target::MAX_COMMIT_BYTES),
        "{error}"
    );
    let many = (0..=tandem_recovery::target::MAX_COMMIT_FILES)
        .map(|n| (format!("f{n}.idx"), 0))
        .collect();
    let error = refused_recovery(many, settings).await;
    assert!(
        matches!(error, RecoveryError::CommitTooLarge { value, .. } if value as usize > tandem_recovery::target::MAX_COMMIT_FILES),
        "{error}"
    );
}

/// With the watermark disabled the copy of the lies starts: chunk requests are made as the
/// copy proceeds, so memory stays that of the chunks in flight (a request per chunk of
/// every file made up front would be 100 * 2^30 of them here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_while_copying_files_announced_at_16_tib() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let leader = create_leader(dir.path());
    write_history(&leader, 1, 10, 10, "lies");
    let settings = RecoverySettings {
        disk_watermark_high: DiskWatermark::Disabled,
        ..test_settings()
    };
    let chunk_size_bytes = settings.chunk_size_bytes as u64;
    let max_in_flight = settings.max_concurrent_file_chunks as u64;
    let client = Arc::new(LyingClient::new(
        client_for(&leader),
        sixteen_tib_files(100),
    ));
    let target = RecoveryTarget::new(client.clone(), settings).unwrap();
    let follower_dir = dir.path().join("shards").join("follower");
    let baseline = CountingAllocator::reset_peak();
    let mut recovery = Box::pin(target.recover(request(&leader, &follower_dir)));
    let wanted_chunks = 400;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while client.served.load(Ordering::SeqCst) < wanted_chunks {
        assert!(tokio::time::Instant::now() < deadline, "the copy stalled");
        tokio::select! {
            result = &mut recovery => panic!("the recovery ended: {:?}", result.err()),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    let peak = CountingAllocator::peak() - baseline;
    drop(recovery);
    assert!(
        client.max_in_flight.load(Ordering::SeqCst) <= max_in_flight,
        "{} chunk requests in flight",
        client.max_in_flight.load(Ordering::SeqCst)
    );
    // The chunks in flight, their tasks and the copy's bookkeeping: a few MiB at most.
    assert!(
        peak < (max_in_flight * chunk_size_bytes) as usize + (16 << 20),
        "{peak} bytes allocated at the peak"
    );
    // One file at a time is started, and it grows as it is written: nothing of the
    // announced 16 TiB is reserved.
    let temp_files = files_under(&follower_dir);
    assert_eq!(temp_files.len(), 1, "{temp_files:?}");
    let written = std::fs::metadata(&temp_files[0]).unwrap().len();
    assert!(written < 1 << 30, "{written} bytes long");
}
