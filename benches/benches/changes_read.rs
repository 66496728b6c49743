//! Changes-API read throughput, one thread, 5,120-op ranges
//! (`changes(from, from + 5119, 5120, usize::MAX)`), reading a shard's whole history:
//!
//! - `segments`: `TANDEM_BENCH_CHANGES_DOCS` docs (default 500,000) indexed by 4 concurrent
//!   writers without background refresh, then one refresh (segments as tantivy flushed them);
//! - `merged`: the same, then `force_merge(1)` with no lease held (one merged segment whose doc
//!   order is not seq_no order: the segments it merged were interleaved);
//! - `tail`: `TANDEM_BENCH_TAIL_DOCS` docs (default 200,000) with `refresh_interval: None` and
//!   no refresh, so every operation comes from the in-memory tail.
//!
//! Each read of the changes API alternates with a *baseline* in the same process: raw tantivy
//! doc-store reads (`StoreReader::get_document_bytes`, the same 32-block cache the engine uses)
//! of the same documents in the same seq_no order, with the seq_no order computed beforehand. The
//! figure to compare across builds is the ratio of the two rates, which cancels out the machine's
//! noise and the segment layout a given build happened to flush (the baseline has no tail, so the
//! `tail` case reports its rate only).
//!
//! Run: `cargo bench -p tandem-benches --bench changes_read`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use tandem_benches::{
    create_shard, env_usize, load_shard, median, median_paired_ratio, per_second, temp_dir,
};
use tandem_engine::{SeqNo, ShardConfig, ShardEngine};

/// Operations per changes request.
const RANGE: i64 = 5120;

/// Reads `[0, max_seq_no]` in 5,120-op requests; returns the ops read and the time taken.
fn read_all(shard: &ShardEngine) -> (usize, Duration) {
    let max = shard.max_seq_no().0;
    let started = Instant::now();
    let mut from = 0i64;
    let mut read = 0usize;
    while from <= max {
        let ops = shard
            .changes(
                SeqNo(from),
                SeqNo(from + RANGE - 1),
                RANGE as usize,
                usize::MAX,
            )
            .expect("reading changes");
        assert!(!ops.is_empty(), "no operation at seq_no {from}");
        debug_assert_eq!(ops[0].seq_no.0, from);
        read += ops.len();
        from += ops.len() as i64;
        std::hint::black_box(ops);
    }
    let elapsed = started.elapsed();
    assert_eq!(read as i64, max + 1);
    (read, elapsed)
}

/// The shard's stored documents in seq_no order, as `(segment ordinal, doc)`, and a store
/// reader per segment: what [`read_raw`] reads.
struct RawHistory {
    stores: Vec<tantivy::store::StoreReader>,
    docs: Vec<(usize, tantivy::DocId)>,
}

/// Decompressed blocks cached per segment, as the engine's history reads do.
const STORE_CACHE_BLOCKS: usize = 32;

impl RawHistory {
    fn of(shard: &ShardEngine) -> RawHistory {
        let searcher = shard.searcher();
        let max = shard.max_seq_no().0 as u64;
        let mut stores = Vec::new();
        let mut docs = Vec::new();
        for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
            let column = segment
                .fast_fields()
                .u64(tandem_engine::mapping::SEQ_NO_FIELD)
                .expect("_seq_no column");
            for doc in 0..segment.max_doc() {
                if let Some(seq_no) = column.first(doc).filter(|seq_no| *seq_no <= max) {
                    docs.push((seq_no, ordinal, doc));
                }
            }
            stores.push(
                segment
                    .get_store_reader(STORE_CACHE_BLOCKS)
                    .expect("document store"),
            );
        }
        docs.sort_unstable();
        RawHistory {
            stores,
            docs: docs
                .into_iter()
                .map(|(_, ordinal, doc)| (ordinal, doc))
                .collect(),
        }
    }
}

/// Reads the stored bytes of every document of `raw` in seq_no order; returns the documents
/// read and the time taken.
fn read_raw(raw: &RawHistory) -> (usize, Duration) {
    let started = Instant::now();
    let mut bytes = 0usize;
    for &(ordinal, doc) in &raw.docs {
        let stored = raw.stores[ordinal]
            .get_document_bytes(doc)
            .expect("reading a stored document");
        bytes += stored.len();
        std::hint::black_box(stored);
    }
    std::hint::black_box(bytes);
    (raw.docs.len(), started.elapsed())
}

/// Segments of the shard's reader, and how many have their docs in seq_no order.
fn describe_segments(shard: &ShardEngine) -> String {
    let searcher = shard.searcher();
    let mut ordered = 0;
    for segment in searcher.segment_readers() {
        let column = segment
            .fast_fields()
            .u64(tandem_engine::mapping::SEQ_NO_FIELD)
            .expect("_seq_no column");
        let mut previous = None;
        let in_order = (0..segment.max_doc()).all(|doc| {
            let seq_no = column.first(doc);
            let ok = seq_no.is_some() && (previous.is_none() || seq_no > previous);
            previous = seq_no;
            ok
        });
        ordered += usize::from(in_order);
    }
    let stats = shard.stats();
    format!(
        "{} segments ({ordered} in seq_no order), {} docs, {} ops in the tail",
        stats.segment_count, stats.doc_count_with_history, stats.tail_operations
    )
}

fn bench_read(c: &mut Criterion, name: &str, shard: &ShardEngine) {
    let ops = (shard.max_seq_no().0 + 1) as u64;
    eprintln!("changes_read {name}: {}", describe_segments(shard));
    let raw = RawHistory::of(shard);
    // The tail is not in the doc store: no baseline for it.
    let baseline = raw.docs.len() as u64 == ops;
    let mut raw_rates = Vec::new();
    let mut group = c.benchmark_group("changes_read");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(1))
        .throughput(Throughput::Elements(ops));
    let mut rates = Vec::new();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if baseline {
                    let (read, elapsed) = read_raw(&raw);
                    raw_rates.push(per_second(read, elapsed));
                }
                let (read, elapsed) = read_all(shard);
                rates.push(per_second(read, elapsed));
                total += elapsed;
            }
            total
        })
    });
    group.finish();
    if rates.is_empty() {
        return; // filtered out on the command line
    }
    eprintln!(
        "changes_read {name}: {:.0} ops/s (median of {} full reads of {ops} ops)",
        median(&rates),
        rates.len()
    );
    if baseline {
        eprintln!(
            "changes_read {name}: raw tantivy doc-store baseline {:.0} docs/s; changes/baseline (median of paired ratios) = {:.3}",
            median(&raw_rates),
            median_paired_ratio(&raw_rates, &rates)
        );
    }
}

/// A shard with `docs` documents written by 4 writers and no background refresh (so the
/// documents stay in the in-memory tail until the caller refreshes).
fn loaded_shard_without_refreshes(dir: &std::path::Path, docs: usize) -> ShardEngine {
    let config = ShardConfig {
        refresh_interval: None,
        ..ShardConfig::default()
    };
    let shard = create_shard(dir, config);
    load_shard(&shard, docs, 4, 1000);
    shard
}

fn from_segments(c: &mut Criterion) {
    let docs = env_usize("TANDEM_BENCH_CHANGES_DOCS", 500_000);
    let dir = temp_dir();
    let shard = loaded_shard_without_refreshes(dir.path(), docs);
    shard.refresh().expect("refreshing");
    bench_read(c, "segments", &shard);

    // No lease is held and every op is below the last commit's checkpoint: all may merge.
    shard.force_merge(1).expect("force merge");
    bench_read(c, "merged", &shard);
}

fn from_tail(c: &mut Criterion) {
    let docs = env_usize("TANDEM_BENCH_TAIL_DOCS", 200_000);
    let dir = temp_dir();
    let shard = loaded_shard_without_refreshes(dir.path(), docs);
    bench_read(c, "tail", &shard);
}

criterion_group!(benches, from_segments, from_tail);
criterion_main!(benches);
