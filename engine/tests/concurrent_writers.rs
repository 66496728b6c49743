//! Concurrent writers on shared ids, with refreshes in between: after every writer is done,
//! each id's document (read from the index, not the version map) must be its latest history
//! operation. Guards the ordering contract between tantivy's delete queue and concurrent
//! batches (see `crate::shard::write`).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tandem_engine::shard::{DeleteRequest, IndexRequest, ShardConfig, ShardEngine, WriteRequest};
use tandem_engine::{Durability, PrimaryTerm};

const WRITERS: usize = 8;
const IDS: u64 = 24;
/// Bulks per writer (`TANDEM_STRESS_BULKS` overrides).
const BULKS_PER_WRITER: usize = 1500;

#[test]
fn latest_operation_of_every_id_survives_concurrent_updates_and_refreshes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ShardConfig {
        refresh_interval: None,
        writer_memory_bytes: 32 * 1024 * 1024,
        indexing_threads: 2,
        retention_operations: 1_000_000,
        durability: Durability::Async {
            interval: std::time::Duration::from_millis(50),
        },
        ..ShardConfig::default()
    };
    let shard = Arc::new(
        ShardEngine::create(dir.path(), common::mapper(), config, PrimaryTerm(1))
            .expect("create shard"),
    );
    let done = Arc::new(AtomicBool::new(false));
    let refresher = {
        let shard = shard.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                shard.refresh().expect("refresh");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let bulks: usize = std::env::var("TANDEM_STRESS_BULKS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(BULKS_PER_WRITER);
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let shard = shard.clone();
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15u64 ^ writer as u64);
                for _ in 0..bulks {
                    let mut bulk = Vec::new();
                    for _ in 0..3 {
                        let state: u64 = rng.random();
                        let id = format!("id-{}", state % IDS);
                        if state.is_multiple_of(5) {
                            bulk.push(WriteRequest::Delete(DeleteRequest::new(id)));
                        } else {
                            let source = format!(r#"{{"writer":{writer},"n":{}}}"#, state % 1000);
                            bulk.push(WriteRequest::Index(IndexRequest::new(id, source)));
                        }
                    }
                    for result in shard.bulk(bulk) {
                        result.expect("write");
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer thread");
    }
    done.store(true, Ordering::Release);
    refresher.join().expect("refresher thread");
    shard.refresh().expect("final refresh");

    let mut latest: HashMap<String, common::HistoryEntry> = HashMap::new();
    for entry in common::full_history(&shard) {
        if let Some(id) = entry.4.clone() {
            latest.insert(id, entry);
        }
    }
    let mut live = 0;
    for (id, (seq_no, _, version, op_type, _, source)) in &latest {
        let got = shard.get(id).expect("get");
        match op_type.as_str() {
            "index" => {
                live += 1;
                let got = got.unwrap_or_else(|| panic!("{id}: latest op {seq_no} is lost"));
                assert_eq!((got.seq_no.0, got.version), (*seq_no, *version), "{id}");
                assert_eq!(Some(&got.source), source.as_ref(), "{id}");
            }
            _ => assert!(got.is_none(), "{id}: deleted at {seq_no} but readable"),
        }
    }
    assert_eq!(
        shard.doc_count(),
        live as u64,
        "one live document per live id"
    );
}
