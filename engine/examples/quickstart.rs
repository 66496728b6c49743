//! Quickstart: a `server-metrics` index on the Tandem engine.
//!
//! Creates a two-shard index, writes metrics documents, updates and deletes some, searches,
//! prints the operation history of a shard through the changes API, then closes and reopens the
//! index and checks that nothing was lost.
//!
//! Run: `cargo run --release -p tandem-engine --example quickstart [DATA_DIR]`

use std::error::Error;
use std::path::PathBuf;

use serde_json::json;
use tandem_engine::index::Index;
use tandem_engine::shard::{DeleteRequest, IndexRequest, WriteRequest};
use tandem_engine::{OperationKind, SeqNo};

const HOSTS: [&str; 3] = ["web-01", "web-02", "db-01"];

fn metric(n: u64, status: &str) -> Vec<u8> {
    json!({
        "@timestamp": format!("2026-11-21T10:{:02}:{:02}Z", (n / 60) % 60, n % 60),
        "host": { "name": HOSTS[(n % 3) as usize] },
        "cpu": { "usage": (n * 7 % 100) as f64 + 0.5 },
        "memory": { "used": 1_000_000 + n * 1024 },
        "status": status,
        "message": format!("sample {n} from {}", HOSTS[(n % 3) as usize]),
    })
    .to_string()
    .into_bytes()
}

/// The number of operations in each shard's history, read through the changes API.
fn history_lengths(index: &Index) -> Result<Vec<usize>, Box<dyn Error>> {
    let mut lengths = Vec::new();
    for shard in index.shards() {
        lengths.push(
            shard
                .changes(SeqNo(0), shard.max_seq_no(), usize::MAX, usize::MAX)?
                .len(),
        );
    }
    Ok(lengths)
}

fn main() -> Result<(), Box<dyn Error>> {
    let temp = tempfile::tempdir()?;
    let data_dir: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    let index_dir = data_dir.join("server-metrics");
    println!(
        "== creating index server-metrics in {}",
        index_dir.display()
    );
    let index = Index::create(
        &index_dir,
        "server-metrics",
        &json!({ "number_of_shards": 2 }),
        &json!({ "properties": {
            "@timestamp": { "type": "date" },
            "host": { "properties": { "name": { "type": "keyword" } } },
            "cpu": { "properties": { "usage": { "type": "double" } } },
            "memory": { "properties": { "used": { "type": "long" } } },
            "status": { "type": "keyword" },
            "message": { "type": "text" },
        }}),
    )?;

    let bulk: Vec<WriteRequest> = (0..1000)
        .map(|n| WriteRequest::Index(IndexRequest::new(format!("m-{n}"), metric(n, "ok"))))
        .collect();
    let failed = index.bulk(bulk).into_iter().filter(Result::is_err).count();
    println!("== indexed 1000 documents ({failed} failed)");
    for n in (0..1000).step_by(10) {
        index.index(IndexRequest::new(format!("m-{n}"), metric(n, "error")))?;
    }
    println!("== updated 100 documents to status=error");
    for n in (5..1000).step_by(50) {
        index.delete(DeleteRequest::new(format!("m-{n}")))?;
    }
    println!("== deleted 20 documents");
    let bad = index.index(IndexRequest::new(
        "bad",
        br#"{"cpu": {"usage": "high"}}"#.to_vec(),
    ));
    println!(
        "== a document that does not fit the mapping is refused: {}",
        bad.unwrap_err()
    );
    // A dynamic field, not in the mappings: indexed through the catch-all JSON field.
    index.index(IndexRequest::new(
        "note-1",
        br#"{"user": "kimchy", "note": "hello"}"#.to_vec(),
    ))?;

    index.refresh()?;
    println!("== {} live documents", index.doc_count());
    for query in [
        "status:error",
        "host.name:web-01 AND status:error",
        "cpu.usage:[90 TO 100]",
        "kimchy",
    ] {
        let result = index.search(query, 0, 2)?;
        let first = result
            .hits
            .first()
            .map(|hit| format!("{} {}", hit.id, String::from_utf8_lossy(&hit.source)))
            .unwrap_or_default();
        println!(
            "   search {query:<36} -> {:>4} hits; first: {first}",
            result.total_hits
        );
    }

    let shard = &index.shards()[0];
    let stats = shard.stats();
    println!(
        "== shard 0: max_seq_no {} local checkpoint {} global checkpoint {} max_seq_no_of_updates {}",
        stats.max_seq_no, stats.local_checkpoint, stats.global_checkpoint, stats.max_seq_no_of_updates_or_deletes
    );
    let history = shard.changes(SeqNo(0), stats.max_seq_no, usize::MAX, usize::MAX)?;
    println!(
        "== shard 0 history through the changes API: {} operations; the last five:",
        history.len()
    );
    for operation in history.iter().rev().take(5).rev() {
        let what = match &operation.kind {
            OperationKind::Index { id, .. } => format!("index  {id}"),
            OperationKind::Delete { id } => format!("delete {id}"),
            OperationKind::NoOp { reason } => format!("noop   {reason}"),
        };
        println!(
            "   seq_no {:>4} term {} version {} {what}",
            operation.seq_no, operation.primary_term, operation.version
        );
    }

    let live_before = index.doc_count();
    let histories_before = history_lengths(&index)?;
    index.close()?;
    println!("== closed; reopening");
    let index = Index::open(&index_dir)?;
    let histories_after = history_lengths(&index)?;
    let live_after = index.doc_count();
    println!("   live documents {live_before} -> {live_after}; history per shard {histories_before:?} -> {histories_after:?}");
    if live_before != live_after || histories_before != histories_after {
        return Err("something was lost across the reopen".into());
    }
    let m10 = index.get("m-10")?.ok_or("m-10 missing")?;
    println!(
        "   m-10 version {} status error: {}",
        m10.version,
        String::from_utf8_lossy(&m10.source).contains("error")
    );
    println!("== nothing lost");
    index.close()?;
    Ok(())
}
