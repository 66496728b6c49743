//! Verify rate: how fast each side of a verify digests its shard, and a whole verify of a
//! follower against its leader.
//!
//! Set-up (once): a leader shard with `TANDEM_BENCH_VERIFY_DOCS` documents (default
//! 10,000,000 `server-metrics` documents of ~200 bytes, written by two writers, refreshed by
//! the engine as usual), and a follower shard that applied the leader's whole history in
//! 5,120-operation batches, as a follower's pull loop does.
//!
//! Each sample:
//! - **baseline**: raw tantivy, in this process: every live document's stored bytes read
//!   through `StoreReader::get_document_bytes` (a 32-block cache, in doc order) and hashed with
//!   xxh3, over the leader's segments: the least a digest of every document's source costs;
//! - **verify**: both sides at once, each on its own core (leader on CPU 0, follower on CPU 1):
//!   snapshot (a refresh), the changes above `up_to_seq_no`, and the one-pass digest of every
//!   bucket (`VerifyView::build`), as a verify's leader session and follower do; the roots must
//!   be equal.
//!
//! Reported: per side documents per second, the wall time of the whole verify, and the ratio
//! of the leader side's rate to the baseline's (median of paired ratios: the machine's noise
//! cancels out).
//!
//! Run: `cargo bench -p tandem-benches --bench verify_rate`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use tandem_benches::{
    create_shard, env_usize, load_shard, median, median_paired_ratio, per_second,
    pin_current_thread, temp_dir,
};
use tandem_engine::shard::verify::{ChangedIds, RangeDigest, VerifyView};
use tandem_engine::{SeqNo, ShardConfig, ShardEngine};

/// Operations per follower apply (a follower's write batch).
const APPLY_BATCH: usize = 5120;

/// A follower of `leader`: its whole history applied in batches.
fn follower_of(dir: &std::path::Path, leader: &ShardEngine) -> ShardEngine {
    let follower = create_shard(
        dir,
        ShardConfig {
            follower: true,
            ..ShardConfig::default()
        },
    );
    let max = leader.max_seq_no().0;
    let mut from = 0i64;
    while from <= max {
        let batch = leader
            .changes(SeqNo(from), SeqNo(max), APPLY_BATCH, usize::MAX)
            .expect("reading the leader's history");
        from += batch.len() as i64;
        follower
            .apply_shared_operations(batch, leader.max_seq_no_of_updates())
            .expect("applying to the follower");
    }
    follower.refresh().expect("refreshing the follower");
    follower
}

/// Every live document's stored bytes, read and hashed: the baseline. Returns the documents
/// read and the time taken.
fn raw_digest(shard: &ShardEngine) -> (usize, Duration) {
    let searcher = shard.searcher();
    let started = Instant::now();
    let mut docs = 0usize;
    let mut sum = 0u64;
    for segment in searcher.segment_readers() {
        let store = segment.get_store_reader(32).expect("document store");
        for doc in 0..segment.max_doc() {
            if segment.is_deleted(doc) {
                continue;
            }
            let bytes = store.get_document_bytes(doc).expect("stored document");
            sum = sum.wrapping_add(xxhash_rust::xxh3::xxh3_64(bytes.as_slice()));
            docs += 1;
        }
    }
    std::hint::black_box(sum);
    (docs, started.elapsed())
}

/// One side of a verify at `up_to`, with `history_from` as agreed: its root and time.
fn side(shard: &ShardEngine, up_to: SeqNo, history_from: SeqNo) -> (RangeDigest, Duration) {
    let started = Instant::now();
    let snapshot = shard.verify_snapshot(Some(up_to)).expect("snapshot");
    let changes = snapshot.changes_above().expect("changes above");
    let view =
        VerifyView::build(snapshot, changes, ChangedIds::default(), history_from).expect("digest");
    (view.root(), started.elapsed())
}

fn bench_verify(c: &mut Criterion) {
    let docs = env_usize("TANDEM_BENCH_VERIFY_DOCS", 10_000_000);
    let (leader_dir, follower_dir) = (temp_dir(), temp_dir());
    let started = Instant::now();
    let leader = create_shard(leader_dir.path(), ShardConfig::default());
    load_shard(&leader, docs, 2, 1000);
    leader.refresh().expect("refreshing the leader");
    eprintln!(
        "verify_rate: leader loaded with {docs} docs in {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let follower = follower_of(follower_dir.path(), &leader);
    eprintln!(
        "verify_rate: follower applied them in {:?}",
        started.elapsed()
    );
    let up_to = leader.max_seq_no();
    assert_eq!(follower.local_checkpoint(), up_to);
    let history_from = leader
        .min_retained_seq_no()
        .max(follower.min_retained_seq_no());

    let (mut baseline_rates, mut leader_rates, mut follower_rates, mut walls) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut group = c.benchmark_group("verify_rate");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(1))
        .throughput(Throughput::Elements(docs as u64));
    group.bench_function("both_sides", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (read, elapsed) = raw_digest(&leader);
                baseline_rates.push(per_second(read, elapsed));
                let wall = Instant::now();
                let ((leader_root, leader_took), (follower_root, follower_took)) =
                    std::thread::scope(|scope| {
                        let leader_side = scope.spawn(|| {
                            pin_current_thread(&[0]);
                            side(&leader, up_to, history_from)
                        });
                        let follower_side = scope.spawn(|| {
                            pin_current_thread(&[1]);
                            side(&follower, up_to, history_from)
                        });
                        (
                            leader_side.join().expect("leader side"),
                            follower_side.join().expect("follower side"),
                        )
                    });
                let wall = wall.elapsed();
                assert_eq!(leader_root, follower_root, "the sides differ");
                assert_eq!(leader_root.live_docs, docs as u64);
                leader_rates.push(per_second(docs, leader_took));
                follower_rates.push(per_second(docs, follower_took));
                walls.push(wall.as_secs_f64());
                total += wall;
            }
            total
        })
    });
    group.finish();
    if walls.is_empty() {
        return; // filtered out on the command line
    }
    eprintln!(
        "verify_rate: {docs} docs: leader side {:.0} docs/s, follower side {:.0} docs/s, whole verify (both sides at once, one core each) {:.2} s (medians of {})",
        median(&leader_rates),
        median(&follower_rates),
        median(&walls),
        walls.len()
    );
    eprintln!(
        "verify_rate: raw tantivy read+xxh3 baseline {:.0} docs/s; leader side/baseline (median of paired ratios) = {:.3}",
        median(&baseline_rates),
        median_paired_ratio(&baseline_rates, &leader_rates)
    );
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
