//! The leader's cost of encoding a shard changes answer, per compression scheme of the HTTP
//! transport's frames (none, zstd level 1, LZ4): the part of serving a follower that grows with
//! the bytes replicated. Batches of `server-metrics` operations (30% updates) of 700 operations
//! (what a caught-up follower's read gets in `node_http`'s pinned rounds) and of 5,120 (a full
//! read); criterion times encode and decode of each, and the run prints each scheme's frame
//! size against the uncompressed body.
//!
//! Run: `cargo bench -p tandem-benches --bench transport_frames`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tandem_benches::{Workload, SEED};
use tandem_engine::shard::ChangesResponse;
use tandem_engine::{Operation, OperationKind, PrimaryTerm, SeqNo};
use tandem_recovery::leader_api::ShardChangesResponse;
use tandem_transport::wire::{decode_shard_changes, encode_shard_changes_with, Compression};

/// Batch sizes measured, in operations.
const BATCHES: [usize; 2] = [700, 5120];

fn batch(operations: usize) -> ShardChangesResponse {
    let workload = Workload::generate(operations, 0.3, 1, SEED + 3);
    let operations: Vec<_> = workload.threads[0]
        .iter()
        .enumerate()
        .map(|(seq_no, op)| {
            Arc::new(Operation {
                seq_no: SeqNo(seq_no as i64),
                primary_term: PrimaryTerm(1),
                version: if op.update { 2 } else { 1 },
                kind: OperationKind::Index {
                    id: op.id.clone(),
                    source: op.source.clone(),
                },
            })
        })
        .collect();
    let last = SeqNo(operations.len() as i64 - 1);
    ShardChangesResponse {
        changes: ChangesResponse {
            operations,
            global_checkpoint: last,
            max_seq_no: last,
            max_seq_no_of_updates: last,
            took: Duration::from_micros(120),
        },
        mapping_version: 1,
        settings_version: 1,
        aliases_version: 1,
    }
}

fn transport_frames(c: &mut Criterion) {
    let schemes = [
        ("none", Compression::None),
        ("zstd", Compression::Zstd),
        ("lz4", Compression::Lz4),
    ];
    let mut group = c.benchmark_group("transport_frames");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for operations in BATCHES {
        let response = batch(operations);
        let body_bytes = encode_shard_changes_with(&response, Compression::None).len();
        group.throughput(Throughput::Bytes(body_bytes as u64));
        for (name, scheme) in schemes {
            let frame = encode_shard_changes_with(&response, scheme);
            assert_eq!(decode_shard_changes(&frame).as_ref(), Ok(&response));
            eprintln!(
                "transport_frames: {operations} ops, {name}: {} bytes, {:.3} of {body_bytes}",
                frame.len(),
                frame.len() as f64 / body_bytes as f64
            );
            group.bench_with_input(
                BenchmarkId::new(format!("encode/{name}"), operations),
                &response,
                |b, response| b.iter(|| encode_shard_changes_with(response, scheme)),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("decode/{name}"), operations),
                &frame,
                |b, frame| b.iter(|| decode_shard_changes(frame).expect("a frame")),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, transport_frames);
criterion_main!(benches);
