//! Retention leases are persisted as an append-only log: a lease change costs one record (not a
//! rewrite of every lease), a torn tail left by a crash is ignored on open (the state is what
//! was fsynced), and the log is compacted when it grows past its bound.

mod common;

use std::fs::{self, OpenOptions};

use common::*;
use tandem_engine::shard::{
    LEASE_LOG_COMPACT_MIN_BYTES, MAX_RETENTION_LEASES_PER_SHARD, MAX_RETENTION_LEASE_ID_BYTES,
    RETENTION_LEASES_LOG_FILE,
};
use tandem_engine::SeqNo;

fn log_bytes(dir: &std::path::Path) -> u64 {
    fs::metadata(dir.join(RETENTION_LEASES_LOG_FILE))
        .expect("lease log")
        .len()
}

#[test]
fn a_thousand_adds_cost_one_record_each() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    let mut growth = Vec::new();
    for n in 0..MAX_RETENTION_LEASES_PER_SHARD {
        let before = log_bytes(dir.path());
        shard
            .add_retention_lease(&format!("follower-{n:04}"), SeqNo(n as i64), "ccr")
            .unwrap();
        let after = log_bytes(dir.path());
        assert_eq!(after, shard.retention_lease_log_bytes());
        growth.push(after - before);
    }
    // Every add appends about the same few bytes, whatever the number of leases before it
    // (a rewrite of all leases would grow with n).
    let first = growth[0];
    let last = growth[growth.len() - 1];
    assert!(first < 200, "one add costs {first} bytes");
    // Only the digits of the version and the retaining seq_no grow (999 and 1000 have 3 and
    // 4); a rewrite of all leases would cost about 100 KB by the last add.
    let largest = growth.iter().copied().max().unwrap_or(0);
    assert!(largest <= first + 8, "adds cost {first} to {largest} bytes");
    assert!(last + 4 >= first, "{first} then {last}");
    let error = shard
        .add_retention_lease("one-too-many", SeqNo(0), "ccr")
        .unwrap_err();
    assert_eq!(error.status(), 400, "{error}");
    let error = shard
        .add_retention_lease(&"x".repeat(10 * 1024 * 1024), SeqNo(0), "ccr")
        .unwrap_err();
    assert_eq!(error.status(), 400, "{error}");
    let expected = shard.retention_leases();
    drop(shard); // a crash: nothing committed since the creation
    let reopened = reopen(dir.path());
    assert_eq!(reopened.retention_leases(), expected);
    assert_eq!(
        reopened.retention_leases().leases.len(),
        MAX_RETENTION_LEASES_PER_SHARD
    );
}

#[test]
fn a_torn_tail_is_ignored_and_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    shard.add_retention_lease("a", SeqNo(1), "ccr").unwrap();
    shard.add_retention_lease("b", SeqNo(2), "ccr").unwrap();
    drop(shard); // a crash
                 // The append of "b" was cut short by the crash.
    let path = dir.path().join(RETENTION_LEASES_LOG_FILE);
    let length = log_bytes(dir.path());
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(length - 3)
        .unwrap();
    let shard = reopen(dir.path());
    let ids: Vec<String> = shard.retention_leases().leases.into_keys().collect();
    assert_eq!(ids, ["a"]);
    // The torn bytes are gone: later records follow the last good one and replay.
    shard.add_retention_lease("c", SeqNo(3), "ccr").unwrap();
    drop(shard);
    // Zeros after the last record (a file extended before its data reached the disk) are a
    // torn tail too.
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0; 64]);
    fs::write(&path, &bytes).unwrap();
    let shard = reopen(dir.path());
    let ids: Vec<String> = shard.retention_leases().leases.into_keys().collect();
    assert_eq!(ids, ["a", "c"]);
}

#[test]
fn the_log_is_compacted_past_its_bound_and_replays_the_same_leases() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    let id = "l".repeat(MAX_RETENTION_LEASE_ID_BYTES);
    shard.add_retention_lease(&id, SeqNo(0), "ccr").unwrap();
    shard.add_retention_lease("other", SeqNo(5), "ccr").unwrap();
    let mut largest = 0;
    let mut compacted = false;
    for renewal in 1..=3_000i64 {
        let before = log_bytes(dir.path());
        shard.renew_retention_lease(&id, SeqNo(renewal)).unwrap();
        let after = log_bytes(dir.path());
        largest = largest.max(after);
        if after < before {
            compacted = true;
            assert!(before > LEASE_LOG_COMPACT_MIN_BYTES, "{before}");
            assert!(after < 8 * 1024, "a snapshot of two leases: {after} bytes");
            break;
        }
    }
    assert!(
        compacted,
        "the log reached {largest} bytes without a compaction"
    );
    assert!(
        largest <= LEASE_LOG_COMPACT_MIN_BYTES + 4 * 1024,
        "{largest}"
    );
    shard.renew_retention_lease("other", SeqNo(6)).unwrap();
    let expected = shard.retention_leases();
    drop(shard);
    let reopened = reopen(dir.path());
    assert_eq!(reopened.retention_leases(), expected);
    // min_retained_seq_no never moves backwards across the compaction and the reopen.
    assert!(reopened.min_retained_seq_no() >= SeqNo(0));
}
