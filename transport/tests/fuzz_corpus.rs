//! The `wire_frame` fuzz target's body (`tandem_transport::fuzzing`) over its checked-in seed
//! corpus (`fuzz/corpus/wire_frame/`) and pseudo-random inputs derived from it. Regenerate the
//! corpus with `cargo test -p tandem-transport --test fuzz_corpus -- --ignored write_seed_corpus`.

use std::sync::Arc;
use std::time::Duration;

use tandem_engine::shard::ChangesResponse;
use tandem_engine::{Operation, OperationKind, PrimaryTerm, SeqNo};
use tandem_recovery::chunk_bytes::ChunkBytes;
use tandem_recovery::leader_api::{FileChunk, ShardChangesResponse};
use tandem_recovery::LeaderError;
use tandem_testkit::fuzz_corpus::{corpus, random_count, random_inputs, write_corpus};
use tandem_transport::fuzzing::wire_frame;
use tandem_transport::wire::{self, Compression};

#[test]
fn wire_frame_over_corpus_and_random_inputs() {
    let files = corpus("wire_frame");
    for (path, bytes) in &files {
        eprintln!("wire_frame {path:?}");
        wire_frame(bytes);
    }
    let seeds: Vec<Vec<u8>> = files.into_iter().map(|(_, bytes)| bytes).collect();
    for input in random_inputs(0x7a4d_0003, random_count(20_000), &seeds, 256) {
        wire_frame(&input);
    }
}

#[test]
#[ignore = "writes the seed corpus under fuzz/corpus/"]
fn write_seed_corpus() {
    write_corpus("wire_frame", &seeds());
}

fn operation(seq_no: i64, kind: OperationKind) -> Arc<Operation> {
    Arc::new(Operation {
        seq_no: SeqNo(seq_no),
        primary_term: PrimaryTerm(2),
        version: seq_no as u64 + 1,
        kind,
    })
}

fn response(operations: usize) -> ShardChangesResponse {
    let kinds = |n: usize| match n % 3 {
        0 => OperationKind::Index {
            id: format!("doc-{n}"),
            source: format!(r#"{{"n":{n},"text":"some repeated text some repeated text"}}"#)
                .into_bytes(),
        },
        1 => OperationKind::Delete {
            id: format!("doc-{}", n - 1),
        },
        _ => OperationKind::NoOp {
            reason: "filled".to_string(),
        },
    };
    ShardChangesResponse {
        changes: ChangesResponse {
            operations: (0..operations)
                .map(|n| operation(n as i64, kinds(n)))
                .collect(),
            global_checkpoint: SeqNo(operations as i64 - 1),
            max_seq_no: SeqNo(operations as i64 - 1),
            max_seq_no_of_updates: SeqNo(1),
            took: Duration::from_micros(1234),
        },
        mapping_version: 3,
        settings_version: 1,
        aliases_version: 1,
    }
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut input = vec![mode];
    input.extend_from_slice(bytes);
    input
}

fn chunk_input(values: &str, requested: u16, body: &[u8]) -> Vec<u8> {
    let mut input = vec![3, values.len() as u8];
    input.extend_from_slice(values.as_bytes());
    input.extend_from_slice(&requested.to_le_bytes());
    input.extend_from_slice(body);
    input
}

fn chunk_seed(data: &[u8], requested: u16, compress: bool) -> Vec<u8> {
    let chunk = FileChunk {
        data: ChunkBytes::from(data.to_vec()),
        source_throttle: Duration::from_nanos(1500),
    };
    let (header, body) = wire::encode_chunk(chunk, compress);
    let values: Vec<String> = header.to_pairs().into_iter().map(|(_, v)| v).collect();
    chunk_input(&values.join("\n"), requested, &body)
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let small = response(3);
    let large = response(40);
    let empty = response(0);
    let frame = |value: &ShardChangesResponse, compression| {
        wire::encode_shard_changes_with(value, compression)
    };
    let text = b"tantivy segment bytes tantivy segment bytes tantivy segment bytes ".repeat(20);
    vec![
        (
            "changes_empty",
            with_mode(0, &frame(&empty, Compression::None)),
        ),
        (
            "changes_small",
            with_mode(0, &frame(&small, Compression::None)),
        ),
        (
            "changes_lz4",
            with_mode(0, &frame(&large, Compression::Lz4)),
        ),
        (
            "changes_zstd",
            with_mode(0, &frame(&large, Compression::Zstd)),
        ),
        (
            "changes_sealed",
            with_mode(1, &frame(&small, Compression::None)),
        ),
        (
            "changes_sealed_lz4",
            with_mode(1, &frame(&large, Compression::Lz4)),
        ),
        (
            "long_poll_frame",
            with_mode(
                2,
                &wire::encode_long_poll_outcome(Ok(frame(&small, Compression::None))),
            ),
        ),
        (
            "long_poll_error",
            with_mode(
                2,
                &wire::encode_long_poll_outcome(Err(LeaderError::Unavailable(
                    "leader shutting down".into(),
                ))),
            ),
        ),
        ("chunk_identity", chunk_seed(b"0123456789abcdef", 64, false)),
        ("chunk_zstd", chunk_seed(&text, 4096, true)),
        ("chunk_empty", chunk_seed(b"", 16, false)),
        (
            "chunk_bad_number",
            chunk_input("+5\n0\nidentity\n0", 8, b"12345"),
        ),
    ]
}
