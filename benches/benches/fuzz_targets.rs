//! The rate of each fuzz target's body (`fuzz/`), in inputs per second on one core, without
//! the fuzzer's coverage instrumentation: one pass over the target's checked-in corpus plus
//! seeded random inputs drawn from it (what `cargo test` runs). `cargo fuzz run` is slower by
//! the instrumentation (every comparison and edge of every crate, tantivy's included).
//!
//! `tantivy_commit_floor` is the baseline beside them, in the same process: one raw tantivy
//! commit as the engine makes it (a writer with one indexing thread and tantivy's smallest
//! budget, one document, commit, reader reload) on tantivy's in-memory directory. tantivy 0.27
//! pays at every commit a new 10,000-slot document channel and, per indexing thread, a new
//! segment writer with a 512 Ki-entry term table (sized from the budget, whose floor is 15 MB);
//! `engine_ops` commits several times per input (shard creation, refreshes, merges, reopens,
//! the follower), so its rate is this floor divided by that count at best (measured: one
//! `engine_ops` input costs about 3.3 of these commits).
//!
//! Run: `cargo bench -p tandem-benches --bench fuzz_targets`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tandem_testkit::fuzz_corpus::{corpus, random_inputs};

/// Random inputs added to each corpus, and their longest length.
const RANDOM_INPUTS: usize = 200;

fn inputs(target: &str, max_len: usize) -> Vec<Vec<u8>> {
    let seeds: Vec<Vec<u8>> = corpus(target).into_iter().map(|(_, bytes)| bytes).collect();
    let mut inputs = random_inputs(0x7a4d_b000, RANDOM_INPUTS, &seeds, max_len);
    inputs.extend(seeds);
    inputs
}

fn bench_target(c: &mut Criterion, target: &str, max_len: usize, body: fn(&[u8])) {
    let inputs = inputs(target, max_len);
    let mut group = c.benchmark_group("fuzz_targets");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function(target, |b| {
        b.iter(|| inputs.iter().for_each(|input| body(input)))
    });
    group.finish();
}

/// One tantivy commit as the engine makes it, on a fresh in-memory index per sample batch.
fn tantivy_commit_floor(c: &mut Criterion) {
    use tantivy::schema::{Schema, STORED, STRING};
    let mut schema = Schema::builder();
    let id = schema.add_text_field("_id", STRING | STORED);
    let index = tantivy::Index::create_in_ram(schema.build());
    let mut writer: tantivy::IndexWriter = index
        .writer_with_num_threads(1, 15_000_000)
        .expect("tantivy writer");
    let reader = index.reader().expect("tantivy reader");
    let mut n = 0u64;
    let mut group = c.benchmark_group("fuzz_targets");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(1));
    group.bench_function("tantivy_commit_floor", |b| {
        b.iter(|| {
            n += 1;
            writer
                .add_document(tantivy::doc!(id => format!("doc-{}", n % 8)))
                .expect("add");
            writer.commit().expect("commit");
            reader.reload().expect("reload");
        })
    });
    group.finish();
}

fn fuzz_targets(c: &mut Criterion) {
    tantivy_commit_floor(c);
    bench_target(c, "engine_ops", 32, tandem_engine::fuzzing::engine_ops);
    bench_target(
        c,
        "translog_replay",
        512,
        tandem_engine::fuzzing::translog_replay,
    );
    bench_target(c, "wire_frame", 256, tandem_transport::fuzzing::wire_frame);
    bench_target(c, "bulk_body", 128, tandem_node::fuzzing::bulk_body);
    bench_target(c, "recovery_session", 96, |data| {
        tandem_recovery::fuzzing::recovery_session(data);
    });
}

criterion_group!(benches, fuzz_targets);
criterion_main!(benches);
