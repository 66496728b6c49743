//! Remote recovery throughput over the in-process leader client, against `cp` + fsync of the
//! same files, in one run:
//!
//! - a leader index of one shard is loaded until its latest commit holds at least
//!   `TANDEM_BENCH_RECOVERY_MB` MiB (default 1024) of files (documents with a 4 KiB random
//!   keyword, so the size comes quickly);
//! - `cp`: the commit's files copied by the `cp` binary, then each copy and the directory
//!   fsynced;
//! - `recovery`: `RecoveryTarget::recover` with throttling off (1 MiB chunks, 5 in flight):
//!   copy, per-file checksum verification, fsync, rename, directory fsync and the follower
//!   engine's bootstrap. `copy` is the same without the bootstrap (`copy_commit`);
//! - all three run `TANDEM_BENCH_RECOVERY_ROUNDS` times (default 5), their order rotating from
//!   round to round (this VM's disk makes whichever run follows a big write or delete slow);
//!   the best and the median of each are compared (ratio = cp time / recovery time, so >= 1
//!   means recovery is as fast);
//! - `throttled`: `copy_commit` at 40 MiB/s over the first `TANDEM_BENCH_THROTTLED_MB` MiB of
//!   files (default 400), reporting the achieved rate and its deviation.
//!
//! The leader's files are in the page cache for every run (just written or read), so the
//! comparison is of the copy paths, not of cold reads. Before every timed run all dirty pages
//! are flushed (`sync(2)`), so no run pays for the writeback of the one before.
//!
//! Run: `cargo bench -p tandem-benches --bench recovery_throughput`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_benches::{
    blob_mappings_json, blob_settings_json, cp_and_fsync, env_usize, fill_shard_with_blobs,
    flush_dirty_pages, temp_dir,
};
use tandem_engine::index::Index;
use tandem_engine::mapping::DocumentMapper;
use tandem_engine::ShardConfig;
use tandem_recovery::{
    InProcessLeaderClient, LeaderClient, RecoveryRequest, RecoverySettings, RecoverySource,
    RecoverySourceSettings, RecoveryTarget, ShardId,
};

const MIB: u64 = 1024 * 1024;
const INDEX: &str = "bench-leader";

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let target_mb = env_usize("TANDEM_BENCH_RECOVERY_MB", 1024) as u64;
    let rounds = env_usize("TANDEM_BENCH_RECOVERY_ROUNDS", 5);
    let throttled_mb = env_usize("TANDEM_BENCH_THROTTLED_MB", 400) as u64;
    let dir = temp_dir();
    let loaded = Instant::now();
    let leader = load_leader(dir.path(), target_mb * MIB);
    let pinned = leader.shards()[0].pin_latest_commit().expect("pinning");
    let total_bytes = pinned.total_bytes();
    let files: Vec<String> = pinned
        .files()
        .iter()
        .map(|f| f.info().name.clone())
        .collect();
    // Held to the end: `cp` reads these files from the leader's directory, and a merge that
    // ends meanwhile must not garbage-collect them (it did: `cp` failed on a vanished file).
    let _pinned = pinned;
    println!(
        "recovery_throughput: leader shard of {:.0} MiB in {} files (loaded in {:.1?})",
        total_bytes as f64 / MIB as f64,
        files.len(),
        loaded.elapsed()
    );
    let leader = Arc::new(leader);
    let source = RecoverySource::new(RecoverySourceSettings::default());
    let client = InProcessLeaderClient::new(source);
    client.register_index(leader.clone());
    let client: Arc<dyn LeaderClient> = Arc::new(client);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let leader_index_dir = leader.dir().join("0").join("index");
    let mapper = Arc::new(DocumentMapper::new(
        leader.metadata().mappings,
        leader.metadata().mapping_version,
        None,
    ));

    let mut cp_times = Vec::new();
    let mut recovery_times = Vec::new();
    let mut copy_times = Vec::new();
    for round in 0..rounds {
        // The three runs rotate their order from round to round, so that whatever one run
        // leaves behind in the disk's writeback state does not always land on the same one.
        let (mut cp_time, mut recovery_time, mut copy_time) = Default::default();
        for step in 0..3 {
            match (round + step) % 3 {
                0 => {
                    let cp_dir = temp_dir();
                    flush_dirty_pages();
                    cp_time = cp_and_fsync(&leader_index_dir, &files, cp_dir.path());
                }
                1 => {
                    let follower_dir = temp_dir();
                    let target =
                        RecoveryTarget::new(client.clone(), unthrottled()).expect("settings");
                    let request = RecoveryRequest {
                        leader_shard: ShardId::new(INDEX, 0),
                        follower_shard_dir: follower_dir.path().join("0"),
                        lease_id: format!("bench-{round}"),
                        mapper: mapper.clone(),
                        shard_config: follower_config(),
                    };
                    flush_dirty_pages();
                    let started = Instant::now();
                    let recovered = runtime.block_on(target.recover(request)).expect("recovery");
                    recovery_time = started.elapsed();
                    drop(recovered);
                }
                _ => {
                    let copy_dir = temp_dir();
                    let target =
                        RecoveryTarget::new(client.clone(), unthrottled()).expect("settings");
                    flush_dirty_pages();
                    let started = Instant::now();
                    runtime
                        .block_on(
                            target.copy_commit(
                                &ShardId::new(INDEX, 0),
                                &copy_dir.path().join("index"),
                            ),
                        )
                        .expect("copy");
                    copy_time = started.elapsed();
                }
            }
        }
        println!(
            "  round {round}: cp+fsync {cp_time:.2?} ({:.0} MiB/s), recovery {recovery_time:.2?} ({:.0} MiB/s), copy only {copy_time:.2?} ({:.0} MiB/s)",
            rate(total_bytes, cp_time),
            rate(total_bytes, recovery_time),
            rate(total_bytes, copy_time)
        );
        cp_times.push(cp_time);
        recovery_times.push(recovery_time);
        copy_times.push(copy_time);
    }
    let best = |times: &[Duration]| times.iter().min().copied().unwrap_or_default();
    let middle = |times: &[Duration]| {
        let mut sorted = times.to_vec();
        sorted.sort();
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    };
    let (cp, recovery, copy) = (best(&cp_times), best(&recovery_times), best(&copy_times));
    println!(
        "recovery_throughput: best cp+fsync {cp:.2?}, recovery {recovery:.2?}, copy {copy:.2?}; \
         ratio recovery/cp = {:.3} (copy only {:.3}); target >= 0.90",
        cp.as_secs_f64() / recovery.as_secs_f64(),
        cp.as_secs_f64() / copy.as_secs_f64()
    );
    let (cp, recovery, copy) = (
        middle(&cp_times),
        middle(&recovery_times),
        middle(&copy_times),
    );
    println!(
        "recovery_throughput: median cp+fsync {cp:.2?}, recovery {recovery:.2?}, copy {copy:.2?}; \
         ratio recovery/cp = {:.3} (copy only {:.3})",
        cp.as_secs_f64() / recovery.as_secs_f64(),
        cp.as_secs_f64() / copy.as_secs_f64()
    );

    throttled(&runtime, &client, throttled_mb * MIB, total_bytes);
}

fn unthrottled() -> RecoverySettings {
    RecoverySettings {
        max_bytes_per_sec: 0,
        ..RecoverySettings::default()
    }
}

fn follower_config() -> ShardConfig {
    ShardConfig {
        refresh_interval: None,
        ..ShardConfig::default()
    }
}

fn rate(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / MIB as f64 / elapsed.as_secs_f64()
}

/// Copies at 40 MiB/s; when the shard is larger than `budget` bytes, a leader client that
/// serves only the first files up to `budget` keeps the run short.
fn throttled(
    runtime: &tokio::runtime::Runtime,
    client: &Arc<dyn LeaderClient>,
    budget: u64,
    total_bytes: u64,
) {
    let limit = 40 * MIB;
    let settings = RecoverySettings {
        max_bytes_per_sec: limit,
        ..RecoverySettings::default()
    };
    let subset: Arc<dyn LeaderClient> = Arc::new(subset::SubsetClient {
        inner: client.clone(),
        budget,
    });
    let dir = temp_dir();
    let target = RecoveryTarget::new(subset, settings).expect("settings");
    flush_dirty_pages();
    let started = Instant::now();
    let copied = runtime
        .block_on(target.copy_commit(&ShardId::new(INDEX, 0), &dir.path().join("index")))
        .expect("throttled copy");
    let elapsed = started.elapsed();
    let bytes: u64 = copied.session.files.iter().map(|f| f.length).sum();
    let achieved = bytes as f64 / elapsed.as_secs_f64();
    let deviation = (achieved - limit as f64) / limit as f64 * 100.0;
    println!(
        "recovery_throughput: throttled to 40 MiB/s: {:.0} MiB of {:.0} in {elapsed:.2?} = {:.2} MiB/s ({deviation:+.2}%, target within 5%), throttle time {:.2?}",
        bytes as f64 / MIB as f64,
        total_bytes as f64 / MIB as f64,
        achieved / MIB as f64,
        target.progress().snapshot().target_throttle_time
    );
}

/// Loads a one-shard leader until its latest commit holds `target_bytes` of files.
fn load_leader(dir: &Path, target_bytes: u64) -> Index {
    let index = Index::create(
        &dir.join(INDEX),
        INDEX,
        &blob_settings_json(),
        &blob_mappings_json(),
    )
    .expect("leader");
    fill_shard_with_blobs(&index.shards()[0], target_bytes);
    index
}

mod subset {
    use std::sync::Arc;

    use tandem_recovery::{
        ForwardingLeaderClient, LeaderClient, LeaderFuture, OpenRecoverySessionRequest,
        RecoverySessionInfo,
    };

    /// Announces only the first files of a session, up to `budget` bytes (the copy is then not
    /// a complete commit; only `copy_commit`'s transfer is measured).
    pub struct SubsetClient {
        pub inner: Arc<dyn LeaderClient>,
        pub budget: u64,
    }

    impl ForwardingLeaderClient for SubsetClient {
        fn inner(&self) -> &dyn LeaderClient {
            self.inner.as_ref()
        }

        fn open_recovery_session(
            &self,
            request: OpenRecoverySessionRequest,
        ) -> LeaderFuture<'_, RecoverySessionInfo> {
            Box::pin(async move {
                let mut info = self.inner.open_recovery_session(request).await?;
                let meta = info.files.pop();
                let mut used = 0;
                info.files.retain(|file| {
                    let keep = used + file.length <= self.budget;
                    if keep {
                        used += file.length;
                    }
                    keep
                });
                // Keep meta.json: the target refuses a file list without it.
                info.files.extend(meta);
                Ok(info)
            })
        }
    }
}
