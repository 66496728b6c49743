//! Ingest throughput: `ShardEngine` (translog with group commit, seq_nos, version map, soft
//! deletes, 1 s refresh) against raw tantivy with the same schema, doc store compression,
//! writer memory and indexing threads (no translog, one commit at the end), for an append-only
//! workload and one where 30% of the writes re-index an existing id; plus acknowledged
//! single-document requests per second with 16 concurrent writers (group commit).
//!
//! Each criterion sample is one whole run (fresh directory, `TANDEM_BENCH_DOCS` documents,
//! default 200,000); the medians and the engine/raw ratios are printed to stderr.
//!
//! Run: `cargo bench -p tandem-benches --bench engine_ingest`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use tandem_benches::{
    create_shard, env_usize, mappings, median, per_second, temp_dir, FdatasyncCounter, Workload,
    SEED,
};
use tandem_engine::mapping::IndexSchema;
use tandem_engine::shard::IndexRequest;
use tandem_engine::{OpType, ShardConfig};
use tantivy::indexer::NoMergePolicy;
use tantivy::{IndexWriter, Term};

/// Concurrent client threads.
const WRITERS: usize = 16;
/// Index requests per bulk.
const BULK_SIZE: usize = 100;

/// Raw tantivy: 16 threads parse the documents with the engine's schema code, add the engine's
/// meta fields and feed one shared `IndexWriter`; updates delete the id's term first. Times
/// everything from the first document to the end of the commit.
fn raw_ingest(workload: &Workload) -> Duration {
    let dir = temp_dir();
    let mappings = mappings();
    let schema = IndexSchema::build(&mappings);
    let index = tantivy::Index::builder()
        .schema(schema.schema.clone())
        .settings(tandem_engine::shard::index_settings())
        .create_in_dir(dir.path())
        .expect("creating the raw index");
    let config = ShardConfig::default();
    let mut writer: IndexWriter = index
        .writer_with_num_threads(config.indexing_threads, config.writer_memory_bytes)
        .expect("opening the raw writer");
    // The engine schedules its own merges (none happen at this size); match it.
    writer.set_merge_policy(Box::new(NoMergePolicy));
    let seq_no = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for ops in &workload.threads {
            let (writer, schema, mappings, seq_no) = (&writer, &schema, &mappings, &seq_no);
            scope.spawn(move || {
                let mut record = Vec::new();
                for op in ops {
                    let mut document = schema
                        .parse_document(mappings, &op.source)
                        .expect("parsing a document")
                        .document;
                    document.add_text(schema.id, &op.id);
                    if op.update {
                        writer.delete_term(Term::from_field_text(schema.id, &op.id));
                    }
                    document.add_u64(schema.seq_no, seq_no.fetch_add(1, Ordering::Relaxed));
                    document.add_u64(schema.primary_term, 1);
                    document.add_u64(schema.version, if op.update { 2 } else { 1 });
                    document.add_u64(schema.op_type, OpType::Index as u64);
                    record.clear();
                    record.extend_from_slice(&(op.id.len() as u32).to_le_bytes());
                    record.extend_from_slice(op.id.as_bytes());
                    record.extend_from_slice(&op.source);
                    document.add_bytes(schema.record, &record);
                    writer.add_document(document).expect("adding a document");
                }
            });
        }
    });
    writer.commit().expect("committing");
    let elapsed = started.elapsed();
    writer.wait_merging_threads().expect("closing the writer");
    elapsed
}

/// The engine: 16 threads send `bulk` calls of 100 index requests (acknowledged after the
/// translog fsync), then one `refresh` commits. The requests are built before timing starts.
fn engine_ingest(workload: &Workload) -> Duration {
    let dir = temp_dir();
    let shard = create_shard(dir.path(), ShardConfig::default());
    let bulks = workload.bulks(BULK_SIZE);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread_bulks in bulks {
            let shard = &shard;
            scope.spawn(move || {
                for bulk in thread_bulks {
                    for result in shard.bulk(bulk) {
                        result.expect("indexing a document");
                    }
                }
            });
        }
    });
    shard.refresh().expect("refreshing");
    let elapsed = started.elapsed();
    let stats = shard.stats();
    assert_eq!(stats.max_seq_no.0 + 1, workload.total as i64);
    elapsed
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    // One run per sample, ten samples, one warm-up run: multi-second runs need no more.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(1));
}

fn ingest(c: &mut Criterion) {
    let docs = env_usize("TANDEM_BENCH_DOCS", 200_000);
    let variants = [
        ("append-only", Workload::generate(docs, 0.0, WRITERS, SEED)),
        (
            "30pct-updates",
            Workload::generate(docs, 0.3, WRITERS, SEED + 1),
        ),
    ];
    eprintln!(
        "engine_ingest: {docs} docs per run, {WRITERS} writer threads, {:.0} B average _source",
        variants[0].1.average_source_bytes()
    );
    let mut group = c.benchmark_group("engine_ingest");
    configure(&mut group);
    group.throughput(Throughput::Elements(docs as u64));
    for (name, workload) in &variants {
        let mut raw_rates = Vec::new();
        group.bench_function(BenchmarkId::new("raw_tantivy", name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let elapsed = raw_ingest(workload);
                    raw_rates.push(per_second(workload.total, elapsed));
                    total += elapsed;
                }
                total
            })
        });
        let mut engine_rates = Vec::new();
        group.bench_function(BenchmarkId::new("engine", name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let elapsed = engine_ingest(workload);
                    engine_rates.push(per_second(workload.total, elapsed));
                    total += elapsed;
                }
                total
            })
        });
        if engine_rates.is_empty() || raw_rates.is_empty() {
            continue; // filtered out on the command line
        }
        let (engine, raw) = (median(&engine_rates), median(&raw_rates));
        eprintln!(
            "engine_ingest {name}: engine {engine:.0} docs/s, raw {raw:.0} docs/s, ratio {:.2} \
             (medians of {} and {} runs)",
            engine / raw,
            engine_rates.len(),
            raw_rates.len()
        );
    }
    group.finish();
}

/// 16 threads each index one document at a time (`index()`, acknowledged after the fsync).
fn acked_single_docs(c: &mut Criterion) {
    let acks = env_usize("TANDEM_BENCH_ACK_DOCS", 64_000);
    let workload = Workload::generate(acks, 0.0, WRITERS, SEED + 2);
    let mut group = c.benchmark_group("engine_acked_single_doc");
    configure(&mut group);
    group.throughput(Throughput::Elements(acks as u64));
    let mut rates = Vec::new();
    let mut fsyncs_per_ack = Vec::new();
    group.bench_function("16_writers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = temp_dir();
                let shard = create_shard(dir.path(), ShardConfig::default());
                // Opened after the shard: counts only the client threads' fsyncs (the group
                // commit leader fsyncs on a client thread).
                let counter = FdatasyncCounter::open();
                let started = Instant::now();
                std::thread::scope(|scope| {
                    for ops in &workload.threads {
                        let shard = &shard;
                        scope.spawn(move || {
                            for op in ops {
                                shard
                                    .index(IndexRequest::new(op.id.clone(), op.source.clone()))
                                    .expect("indexing a document");
                            }
                        });
                    }
                });
                let elapsed = started.elapsed();
                if let Some(counter) = counter {
                    fsyncs_per_ack.push(counter.read() as f64 / workload.total as f64);
                }
                rates.push(per_second(workload.total, elapsed));
                total += elapsed;
            }
            total
        })
    });
    group.finish();
    if rates.is_empty() {
        return; // filtered out on the command line
    }
    let fsyncs = if fsyncs_per_ack.is_empty() {
        "fsyncs/ack n/a (no fdatasync tracepoint)".to_string()
    } else {
        let per_ack = median(&fsyncs_per_ack);
        format!(
            "{per_ack:.3} fsyncs/ack ({:.1} acks per fsync)",
            1.0 / per_ack.max(1e-9)
        )
    };
    eprintln!(
        "engine_acked_single_doc: {:.0} acked docs/s with {WRITERS} writers, {fsyncs} \
         (medians of {} runs of {acks} docs)",
        median(&rates),
        rates.len()
    );
}

criterion_group!(benches, ingest, acked_single_docs);
criterion_main!(benches);
