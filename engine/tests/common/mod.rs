//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use tandem_engine::mapping::DocumentMapper;
use tandem_engine::mapping::Mappings;
use tandem_engine::shard::{IndexRequest, ShardConfig, ShardEngine};
use tandem_engine::{Durability, PrimaryTerm, SeqNo};

/// A configuration without background refreshes, so tests decide when segments appear.
pub fn manual_config() -> ShardConfig {
    ShardConfig {
        refresh_interval: None,
        writer_memory_bytes: 32 * 1024 * 1024,
        indexing_threads: 1,
        durability: Durability::Request,
        ..ShardConfig::default()
    }
}

pub fn mapper() -> Arc<DocumentMapper> {
    Arc::new(DocumentMapper::new(Mappings::empty(), 1, None))
}

pub fn create_shard(dir: &Path) -> ShardEngine {
    ShardEngine::create(dir, mapper(), manual_config(), PrimaryTerm(1)).expect("create shard")
}

pub fn create_follower(dir: &Path) -> ShardEngine {
    let config = ShardConfig {
        follower: true,
        ..manual_config()
    };
    ShardEngine::create(dir, mapper(), config, PrimaryTerm(1)).expect("create follower shard")
}

pub fn reopen(dir: &Path) -> ShardEngine {
    ShardEngine::open(dir, mapper(), manual_config()).expect("reopen shard")
}

pub fn doc(n: u64, body: &str) -> IndexRequest {
    IndexRequest::new(
        format!("doc-{n}"),
        format!(r#"{{"n":{n},"body":"{body}"}}"#).into_bytes(),
    )
}

/// One history entry: (seq_no, term, version, op type, id, source).
pub type HistoryEntry = (i64, u64, u64, String, Option<String>, Option<Vec<u8>>);

/// Every operation of the shard's history from 0 to max_seq_no, as comparable tuples.
pub fn full_history(shard: &ShardEngine) -> Vec<HistoryEntry> {
    let max = shard.max_seq_no();
    if max.0 < 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut from = 0i64;
    while from <= max.0 {
        let batch = shard
            .changes(SeqNo(from), max, 1000, usize::MAX)
            .expect("changes");
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
