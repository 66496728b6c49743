//! Helpers shared by the recovery integration tests: a leader index with history, a follower
//! request, file comparisons, and a fault-injecting leader client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tandem_engine::index::{Index, IndexMetadata};
use tandem_engine::mapping::DocumentMapper;
use tandem_engine::shard::{DeleteRequest, IndexRequest};
use tandem_engine::{Durability, SeqNo, ShardConfig, ShardEngine};
use tandem_recovery::{
    FileChunk, ForwardingLeaderClient, InProcessLeaderClient, LeaderClient, LeaderError,
    LeaderFuture, ReadFileChunkRequest, RecoveryRequest, RecoverySettings, RecoverySource,
    RecoverySourceSettings, ShardId,
};

pub const LEADER_INDEX: &str = "leader";

/// Id of the lease [`create_leader`] adds so that the leader keeps its whole history.
pub const HISTORY_LEASE: &str = "keep-all-history";

/// A one-shard leader index without background refresh. It holds a retain-all lease, so its
/// commits keep `min_retained_seq_no` at 0 and the whole history can be compared.
pub fn create_leader(dir: &Path) -> Arc<Index> {
    let settings = serde_json::json!({"index": {"number_of_shards": 1, "refresh_interval": "-1"}});
    let mappings = serde_json::json!({"properties": {"body": {"type": "text"}}});
    let index = Index::create(&dir.join(LEADER_INDEX), LEADER_INDEX, &settings, &mappings).unwrap();
    index.shards()[0]
        .add_retention_lease(HISTORY_LEASE, SeqNo(0), "test")
        .unwrap();
    Arc::new(index)
}

pub fn leader_shard(index: &Index) -> &ShardEngine {
    &index.shards()[0]
}

pub fn shard_id() -> ShardId {
    ShardId::new(LEADER_INDEX, 0)
}

/// Writes `batches` refreshed batches (one segment each) of updates and deletes over `ids`
/// distinct ids, so the shard has several segments, deleted documents and history.
pub fn write_history(index: &Index, batches: u64, per_batch: u64, ids: u64, salt: &str) {
    let shard = leader_shard(index);
    for batch in 0..batches {
        for n in 0..per_batch {
            let id = (batch * per_batch + n) % ids;
            let body = format!(
                r#"{{"body":"{salt} batch {batch} doc {n} {}"}}"#,
                "x".repeat(64)
            );
            shard
                .index(IndexRequest::new(format!("doc-{id}"), body.into_bytes()))
                .unwrap();
        }
        shard
            .delete(DeleteRequest::new(format!("doc-{}", batch % ids)))
            .unwrap();
        shard.refresh().unwrap();
    }
}

/// Waits until the shard's latest commit stops changing (background merges ended), so a
/// session opened now and one opened later pin the same files.
pub fn settle(shard: &ShardEngine) {
    // An unchanged commit alone is not enough: a merge can run longer than the interval
    // without changing the commit, then end and commit under a recovery that assumed none.
    let mut last = shard.pin_latest_commit().unwrap().file_infos();
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(50));
        let now = shard.pin_latest_commit().unwrap().file_infos();
        if now == last && shard.merging_segment_count() == 0 {
            return;
        }
        last = now;
    }
    panic!("the shard's commit kept changing");
}

pub fn client_for(index: &Arc<Index>) -> InProcessLeaderClient {
    client_with(index, RecoverySourceSettings::default())
}

pub fn client_with(index: &Arc<Index>, settings: RecoverySourceSettings) -> InProcessLeaderClient {
    let client = InProcessLeaderClient::new(RecoverySource::new(settings));
    client.register_index(index.clone());
    client
}

pub fn follower_mapper(metadata: &IndexMetadata) -> Arc<DocumentMapper> {
    Arc::new(DocumentMapper::new(
        metadata.mappings.clone(),
        metadata.mapping_version,
        None,
    ))
}

/// A follower without background refresh that keeps the history it holds (its commits would
/// otherwise raise `min_retained_seq_no` to the checkpoint, hiding the copied history from the
/// changes API the tests compare with).
pub fn follower_config() -> ShardConfig {
    ShardConfig {
        retention_operations: 1 << 40,
        refresh_interval: None,
        writer_memory_bytes: 32 * 1024 * 1024,
        indexing_threads: 1,
        durability: Durability::Request,
        ..ShardConfig::default()
    }
}

pub fn request(index: &Index, follower_dir: &Path) -> RecoveryRequest {
    RecoveryRequest {
        leader_shard: shard_id(),
        follower_shard_dir: follower_dir.to_path_buf(),
        lease_id: "follower-cluster/follower/0".to_string(),
        mapper: follower_mapper(&index.metadata()),
        shard_config: follower_config(),
    }
}

/// Small chunks (many requests), unthrottled, fast retries.
pub fn test_settings() -> RecoverySettings {
    RecoverySettings {
        chunk_size_bytes: 16 * 1024,
        max_bytes_per_sec: 0,
        retry_initial_backoff: Duration::from_millis(1),
        retry_max_backoff: Duration::from_millis(20),
        chunk_request_timeout: Duration::from_secs(5),
        ..RecoverySettings::default()
    }
}

/// Every file of a directory, by name.
pub fn read_dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_str().unwrap().to_string(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

/// One history entry: (seq_no, term, version, op type, id, source).
pub type HistoryEntry = (i64, u64, u64, String, Option<String>, Option<Vec<u8>>);

/// Every operation of the shard's history from 0 to `to`.
pub fn history_up_to(shard: &ShardEngine, to: SeqNo) -> Vec<HistoryEntry> {
    history_range(shard, SeqNo(0), to)
}

/// Every operation of the shard's history from `from` to `to`.
pub fn history_range(shard: &ShardEngine, from: SeqNo, to: SeqNo) -> Vec<HistoryEntry> {
    let mut out = Vec::new();
    let mut from = from.0;
    while from <= to.0 {
        let batch = shard.changes(SeqNo(from), to, 1000, usize::MAX).unwrap();
        assert!(!batch.is_empty(), "no progress at {from}");
        for op in batch {
            assert_eq!(op.seq_no.0, from, "contiguous");
            out.push((
                op.seq_no.0,
                op.primary_term.0,
                op.version,
                op.op_type().name().to_string(),
                op.id().map(str::to_string),
                op.source().map(<[u8]>::to_vec),
            ));
            from += 1;
        }
    }
    out
}

pub fn index_dir(shard_dir: &Path) -> PathBuf {
    shard_dir.join("index")
}

/// Fault probabilities, per chunk request, in percent.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    pub drop_percent: u32,
    pub delay_percent: u32,
    pub corrupt_percent: u32,
    pub error_percent: u32,
}

/// How many faults of each kind a [`FaultyLeaderClient`] injected.
#[derive(Default, Debug)]
pub struct FaultCounts {
    pub drops: AtomicU64,
    pub delays: AtomicU64,
    pub corruptions: AtomicU64,
    pub errors: AtomicU64,
}

/// Wraps a leader client; chunk requests are dropped (never answered), delayed, corrupted (one
/// byte flipped) or failed at random, from a seeded generator.
pub struct FaultyLeaderClient {
    pub inner: Arc<dyn LeaderClient>,
    pub faults: Faults,
    pub rng: Mutex<StdRng>,
    pub counts: FaultCounts,
}

impl FaultyLeaderClient {
    pub fn new(inner: Arc<dyn LeaderClient>, faults: Faults, seed: u64) -> Self {
        FaultyLeaderClient {
            inner,
            faults,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            counts: FaultCounts::default(),
        }
    }
}

enum Fault {
    None,
    Drop,
    Delay(Duration),
    Corrupt(usize),
    Error,
}

impl FaultyLeaderClient {
    fn roll(&self, length: usize) -> Fault {
        let mut rng = self.rng.lock();
        let roll = rng.random_range(0..100u32);
        let f = self.faults;
        if roll < f.drop_percent {
            Fault::Drop
        } else if roll < f.drop_percent + f.delay_percent {
            Fault::Delay(Duration::from_millis(rng.random_range(1..20)))
        } else if roll < f.drop_percent + f.delay_percent + f.corrupt_percent {
            Fault::Corrupt(rng.random_range(0..length.max(1)))
        } else if roll < f.drop_percent + f.delay_percent + f.corrupt_percent + f.error_percent {
            Fault::Error
        } else {
            Fault::None
        }
    }
}

impl ForwardingLeaderClient for FaultyLeaderClient {
    fn inner(&self) -> &dyn LeaderClient {
        self.inner.as_ref()
    }

    fn read_file_chunk(&self, request: ReadFileChunkRequest) -> LeaderFuture<'_, FileChunk> {
        let fault = self.roll(request.length);
        Box::pin(async move {
            match fault {
                Fault::Drop => {
                    self.counts.drops.fetch_add(1, Ordering::Relaxed);
                    // Never answered: the target's request timeout must fire.
                    std::future::pending::<()>().await;
                    unreachable!()
                }
                Fault::Error => {
                    self.counts.errors.fetch_add(1, Ordering::Relaxed);
                    Err(LeaderError::Unavailable("injected fault".to_string()))
                }
                Fault::Delay(delay) => {
                    self.counts.delays.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    self.inner.read_file_chunk(request).await
                }
                Fault::Corrupt(at) => {
                    let mut chunk = self.inner.read_file_chunk(request).await?;
                    let mut data = chunk.data.to_vec();
                    if let Some(byte) = data.get_mut(at) {
                        *byte ^= 0x5a;
                        self.counts.corruptions.fetch_add(1, Ordering::Relaxed);
                    }
                    chunk.data = data.into();
                    Ok(chunk)
                }
                Fault::None => self.inner.read_file_chunk(request).await,
            }
        })
    }
}

/// A predicate and the action it triggers, run once.
pub type Hook = (
    Box<dyn Fn() -> bool + Send + Sync>,
    Box<dyn FnOnce() + Send + 'static>,
);

/// Wraps a leader client; before serving a chunk, runs (to completion, on the blocking pool)
/// every hook whose predicate holds, once each. Makes "something happens on the leader in the
/// middle of the copy" deterministic.
pub struct HookClient {
    pub inner: Arc<dyn LeaderClient>,
    pub hooks: Mutex<Vec<Hook>>,
}

impl HookClient {
    pub fn new(inner: Arc<dyn LeaderClient>, hooks: Vec<Hook>) -> Self {
        HookClient {
            inner,
            hooks: Mutex::new(hooks),
        }
    }

    pub fn hooks_left(&self) -> usize {
        self.hooks.lock().len()
    }

    async fn run_due_hooks(&self) {
        let due: Vec<Box<dyn FnOnce() + Send>> = {
            let mut hooks = self.hooks.lock();
            let mut due = Vec::new();
            let mut index = 0;
            while index < hooks.len() {
                if (hooks[index].0)() {
                    due.push(hooks.remove(index).1);
                } else {
                    index += 1;
                }
            }
            due
        };
        for action in due {
            tokio::task::spawn_blocking(action).await.unwrap();
        }
    }
}

impl ForwardingLeaderClient for HookClient {
    fn inner(&self) -> &dyn LeaderClient {
        self.inner.as_ref()
    }

    fn read_file_chunk(&self, request: ReadFileChunkRequest) -> LeaderFuture<'_, FileChunk> {
        Box::pin(async move {
            self.run_due_hooks().await;
            self.inner.read_file_chunk(request).await
        })
    }
}
