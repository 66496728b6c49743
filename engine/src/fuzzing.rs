//! Bodies of the fuzz targets in `fuzz/` (cargo-fuzz), kept in the library so that the
//! ordinary test suite (`tests/model_based.rs`) runs them too, over the checked-in seed corpus
//! and over pseudo-random inputs.
//!
//! - [`translog_replay`]: arbitrary bytes as a translog generation file, opened and replayed.
//! - [`engine_ops`]: arbitrary bytes decoded into a short sequence of engine [`Action`]s that
//!   run against a shard and, step by step, against a simple in-memory model; then the shard's
//!   history is replayed, shuffled and duplicated, on a follower shard. Any disagreement is a
//!   panic (`assert!`), which is what a fuzzer reports.
//!
//! Invariants checked by [`run_actions`] (DESIGN.md §7):
//! - live documents equal the model (`get` of every id, and the search count after refresh);
//! - sequence numbers are assigned 0, 1, 2, …, versions grow per id, and both checkpoints follow
//!   (every write is acknowledged with `request` durability);
//! - the changes API returns exactly the model's history from `min_retained_seq_no` on,
//!   contiguous and without duplicates, and the whole history (from 0) while the retain-all
//!   lease is held; below `min_retained_seq_no` it either returns the exact history or fails
//!   with `MissingHistory` (invariants 3 and 4);
//! - `min_retained_seq_no` never decreases, reopens and process crashes included (invariant 4);
//! - a follower fed the full history in a shuffled order, in chunks, and then fed it all again,
//!   ends with the same live documents and the same history as the leader (invariants 2, 5).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::error::EngineError;
use crate::mapping::{DocumentMapper, Mappings};
use crate::shard::{
    DeleteRequest, Durability, IndexRequest, ShardConfig, ShardEngine, WriteOutcome,
};
use crate::storage::SimStorage;
use crate::types::{Operation, OperationKind, PrimaryTerm, SeqNo};

/// The translog and its record encoding, for tests that build [`translog_replay`] inputs
/// (seed corpora) through the real write path.
pub use crate::record::encode_translog_payload;
/// See [`encode_translog_payload`].
pub use crate::translog::{Translog, TranslogLocation, MAX_RECORD_BYTES};

/// Most actions [`decode_actions`] produces from one input.
pub const MAX_ACTIONS: usize = 64;
/// Document ids are `doc-0` … `doc-{ID_COUNT - 1}`.
pub const ID_COUNT: u8 = 8;
/// Retention leases the actions may add, renew and remove are `lease-0` … `lease-{LEASE_COUNT - 1}`.
pub const LEASE_COUNT: u8 = 3;
/// Most [`Action::Reopen`]s [`decode_actions`] keeps (later ones become refreshes).
pub const MAX_REOPENS: usize = 4;
/// Most [`Action::ForceMerge`]s [`decode_actions`] keeps (later ones become refreshes).
pub const MAX_FORCE_MERGES: usize = 8;
/// The lease that retains the whole history from the start of a run until
/// [`Action::ToggleRetainAll`] removes it.
pub const RETAIN_ALL_LEASE: &str = "retain-all";

/// Fuzz body of the `translog_replay` target: `data` is written as a translog generation file
/// and opened (see `translog::fuzz_translog_replay`). Never panics on any input unless
/// the translog breaks one of its own guarantees.
pub fn translog_replay(data: &[u8]) {
    crate::translog::fuzz_translog_replay(data);
}

/// Fuzz body of the `engine_ops` target: decodes `data` with [`decode_actions`] and runs the
/// actions with [`run_actions`]. Panics when the engine breaks an invariant.
pub fn engine_ops(data: &[u8]) {
    let (actions, seed) = decode_actions(data);
    run_actions(&actions, seed);
}

/// One step of an [`engine_ops`] run, applied to the leader shard and to the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Index `doc-{id % ID_COUNT}` with a small JSON source derived from `value`.
    Index {
        /// Document number.
        id: u8,
        /// Selects the source.
        value: u8,
    },
    /// Index with `if_seq_no`/`if_primary_term`: the document's current ones (`stale: false`)
    /// or wrong ones (`stale: true`); the model predicts success or a version conflict.
    ConditionalIndex {
        /// Document number.
        id: u8,
        /// Selects the source.
        value: u8,
        /// Use a sequence number that is not the document's.
        stale: bool,
    },
    /// Delete `doc-{id % ID_COUNT}` (recorded even when the document does not exist).
    Delete {
        /// Document number.
        id: u8,
    },
    /// Record a no-op.
    NoOp,
    /// Refresh (commit + new reader).
    Refresh,
    /// `force_merge(1)`.
    ForceMerge,
    /// Add `lease-{lease % LEASE_COUNT}` retaining `retaining % (max_seq_no + 2)`.
    AddLease {
        /// Lease number.
        lease: u8,
        /// Selects the retaining sequence number.
        retaining: u8,
    },
    /// Renew `lease-{lease % LEASE_COUNT}` to `retaining % (max_seq_no + 2)`.
    RenewLease {
        /// Lease number.
        lease: u8,
        /// Selects the retaining sequence number.
        retaining: u8,
    },
    /// Remove `lease-{lease % LEASE_COUNT}`.
    RemoveLease {
        /// Lease number.
        lease: u8,
    },
    /// Remove the [`RETAIN_ALL_LEASE`] if held, else add it back at 0 (history already let go
    /// stays gone).
    ToggleRetainAll,
    /// Close the shard and open it again.
    Reopen,
}

/// Decodes fuzz input into at most [`MAX_ACTIONS`] actions plus a seed for the follower's
/// shuffle (a hash of the whole input). Every byte string decodes; missing argument bytes
/// read as 0.
pub fn decode_actions(data: &[u8]) -> (Vec<Action>, u64) {
    let mut bytes = data.iter().copied();
    let arg = |bytes: &mut dyn Iterator<Item = u8>| bytes.next().unwrap_or(0);
    let mut actions = Vec::new();
    let (mut reopens, mut merges) = (0, 0);
    while actions.len() < MAX_ACTIONS {
        let Some(opcode) = bytes.next() else { break };
        let action = match opcode % 16 {
            0..=3 | 15 => Action::Index {
                id: arg(&mut bytes),
                value: arg(&mut bytes),
            },
            4 => {
                let id = arg(&mut bytes);
                let value = arg(&mut bytes);
                Action::ConditionalIndex {
                    id,
                    value,
                    stale: value & 0x80 != 0,
                }
            }
            5 | 6 => Action::Delete {
                id: arg(&mut bytes),
            },
            7 => Action::NoOp,
            8 => Action::Refresh,
            9 if merges < MAX_FORCE_MERGES => {
                merges += 1;
                Action::ForceMerge
            }
            10 => Action::AddLease {
                lease: arg(&mut bytes),
                retaining: arg(&mut bytes),
            },
            11 => Action::RenewLease {
                lease: arg(&mut bytes),
                retaining: arg(&mut bytes),
            },
            12 => Action::RemoveLease {
                lease: arg(&mut bytes),
            },
            13 if reopens < MAX_REOPENS => {
                reopens += 1;
                Action::Reopen
            }
            14 => Action::ToggleRetainAll,
            _ => Action::Refresh,
        };
        actions.push(action);
    }
    (actions, fnv1a(data))
}

/// Runs `actions` on a fresh shard (on an in-memory [`SimStorage`]: no file system, no fsync
/// cost) and on the model, checking the invariants listed in the module docs after every
/// action, then checks a follower fed the resulting history in an order shuffled by
/// `shuffle_seed`. Reopens alternate between a clean close and a process crash (`kill -9`:
/// nothing closed, every handle dead, what was written stays). Panics on any violation.
pub fn run_actions(actions: &[Action], shuffle_seed: u64) {
    let mut disk = SimStorage::new();
    let leader_dir = Path::new(LEADER_DIR);
    let mut leader =
        ShardEngine::create(leader_dir, mapper(), config(&disk, false), PrimaryTerm(1))
            .expect("create the leader shard");
    leader
        .add_retention_lease(RETAIN_ALL_LEASE, SeqNo(0), "fuzz")
        .expect("add the retain-all lease");
    let mut model = Model::default();
    model.leases.insert(RETAIN_ALL_LEASE.to_string(), SeqNo(0));
    model.check(&leader, true);
    let mut reopens = 0;
    for action in actions {
        let refreshed = if *action == Action::Reopen {
            reopens += 1;
            if reopens % 2 == 0 {
                // The dead process's shard goes with its handles; its drop must not touch
                // the new one's files (every call through the old handles fails).
                disk = disk.crash_process();
                drop(leader);
            } else {
                leader.close().expect("close the leader");
            }
            leader = ShardEngine::open(leader_dir, mapper(), config(&disk, false))
                .expect("reopen the leader");
            true
        } else {
            model.apply(&leader, action)
        };
        model.check(&leader, refreshed);
    }
    leader.refresh().expect("final refresh");
    model.check(&leader, true);
    check_follower(&leader, &model, &disk, shuffle_seed);
    leader.close().expect("close the leader");
}

/// Where [`run_actions`] puts the leader and the follower on its simulated disk.
const LEADER_DIR: &str = "/fuzz/leader";
const FOLLOWER_DIR: &str = "/fuzz/follower";

/// The in-memory model of one shard.
#[derive(Default)]
struct Model {
    /// Every operation, by seq_no (index = seq_no).
    history: Vec<Operation>,
    /// The latest state of every id that has an operation.
    docs: BTreeMap<String, DocState>,
    /// Leases by id.
    leases: BTreeMap<String, SeqNo>,
    /// True once the retain-all lease was removed: merges may drop history, and with it the
    /// tombstones versions continue from.
    released: bool,
    /// The highest `min_retained_seq_no` seen.
    min_retained: i64,
}

#[derive(Clone, Debug)]
struct DocState {
    version: u64,
    /// `(seq_no, source)` when the document is live.
    live: Option<(SeqNo, Vec<u8>)>,
}

impl Model {
    fn next_seq_no(&self) -> SeqNo {
        SeqNo(self.history.len() as i64)
    }

    fn live_count(&self) -> usize {
        self.docs.values().filter(|doc| doc.live.is_some()).count()
    }

    /// Checks the version a write got: exact, unless the id's latest operation was a delete
    /// whose history may have been merged away (then any version from 1 up is legal).
    fn check_version(&self, id: &str, version: u64) {
        match self.docs.get(id) {
            None => assert_eq!(version, 1, "first version of {id}"),
            Some(doc) if doc.live.is_some() || !self.released => {
                assert_eq!(version, doc.version + 1, "version of {id}")
            }
            Some(doc) => assert!(
                (1..=doc.version + 1).contains(&version),
                "version {version} of {id} after version {}",
                doc.version
            ),
        }
    }

    fn record(&mut self, operation: Operation) {
        assert_eq!(operation.seq_no, self.next_seq_no(), "seq_no assignment");
        assert_eq!(operation.primary_term, PrimaryTerm(1), "primary term");
        match &operation.kind {
            OperationKind::Index { id, source } => {
                self.docs.insert(
                    id.clone(),
                    DocState {
                        version: operation.version,
                        live: Some((operation.seq_no, source.clone())),
                    },
                );
            }
            OperationKind::Delete { id } => {
                self.docs.insert(
                    id.clone(),
                    DocState {
                        version: operation.version,
                        live: None,
                    },
                );
            }
            OperationKind::NoOp { .. } => {}
        }
        self.history.push(operation);
    }

    fn retaining(&self, selector: u8) -> SeqNo {
        SeqNo(i64::from(selector) % (self.next_seq_no().0 + 1))
    }

    /// Applies `action` to the shard and the model; returns true when the shard's reader was
    /// refreshed (so the search count is checked).
    fn apply(&mut self, shard: &ShardEngine, action: &Action) -> bool {
        match *action {
            Action::Index { id, value } => {
                let id = doc_id(id);
                let source = source(&id, value);
                let result = shard
                    .index(IndexRequest::new(id.clone(), source.clone()))
                    .expect("index");
                self.check_version(&id, result.version);
                let expected = match self.docs.get(&id) {
                    Some(doc) if doc.live.is_some() => WriteOutcome::Updated,
                    _ => WriteOutcome::Created,
                };
                assert_eq!(result.outcome, expected, "outcome of indexing {id}");
                self.record(Operation {
                    seq_no: result.seq_no,
                    primary_term: result.primary_term,
                    version: result.version,
                    kind: OperationKind::Index { id, source },
                });
                false
            }
            Action::ConditionalIndex { id, value, stale } => {
                let id = doc_id(id);
                let source = source(&id, value);
                let live_seq_no = self
                    .docs
                    .get(&id)
                    .and_then(|doc| doc.live.as_ref().map(|(seq_no, _)| *seq_no));
                let mut request = IndexRequest::new(id.clone(), source.clone());
                let required = match (live_seq_no, stale) {
                    (Some(seq_no), false) => seq_no,
                    (Some(seq_no), true) => SeqNo(seq_no.0 + 1000),
                    (None, _) => SeqNo(i64::from(value)),
                };
                request.if_seq_no = Some(required);
                request.if_primary_term = Some(PrimaryTerm(1));
                let result = shard.index(request);
                if live_seq_no.is_some() && !stale {
                    let result = result.expect("conditional index with the current seq_no");
                    self.check_version(&id, result.version);
                    assert_eq!(result.outcome, WriteOutcome::Updated);
                    self.record(Operation {
                        seq_no: result.seq_no,
                        primary_term: result.primary_term,
                        version: result.version,
                        kind: OperationKind::Index { id, source },
                    });
                } else {
                    match result {
                        Err(EngineError::VersionConflict { .. }) => {}
                        other => panic!("expected a version conflict on {id}, got {other:?}"),
                    }
                }
                false
            }
            Action::Delete { id } => {
                let id = doc_id(id);
                let result = shard
                    .delete(DeleteRequest::new(id.clone()))
                    .expect("delete");
                self.check_version(&id, result.version);
                let expected = match self.docs.get(&id) {
                    Some(doc) if doc.live.is_some() => WriteOutcome::Deleted,
                    _ => WriteOutcome::NotFound,
                };
                assert_eq!(result.outcome, expected, "outcome of deleting {id}");
                self.record(Operation {
                    seq_no: result.seq_no,
                    primary_term: result.primary_term,
                    version: result.version,
                    kind: OperationKind::Delete { id },
                });
                false
            }
            Action::NoOp => {
                let reason = format!("fuzz no-op {}", self.history.len());
                let seq_no = shard.no_op(&reason).expect("no-op");
                self.record(Operation {
                    seq_no,
                    primary_term: PrimaryTerm(1),
                    version: 1,
                    kind: OperationKind::NoOp { reason },
                });
                false
            }
            Action::Refresh => {
                shard.refresh().expect("refresh");
                true
            }
            Action::ForceMerge => {
                shard.force_merge(1).expect("force merge");
                true
            }
            Action::AddLease { lease, retaining } => {
                let id = lease_id(lease);
                let retaining = self.retaining(retaining);
                let result = shard.add_retention_lease(&id, retaining, "fuzz");
                match self.leases.entry(id) {
                    std::collections::btree_map::Entry::Occupied(entry) => {
                        assert!(result.is_err(), "adding lease {} twice", entry.key())
                    }
                    std::collections::btree_map::Entry::Vacant(entry) => {
                        result.expect("add a lease");
                        entry.insert(retaining);
                    }
                }
                false
            }
            Action::RenewLease { lease, retaining } => {
                let id = lease_id(lease);
                let retaining = self.retaining(retaining);
                let result = shard.renew_retention_lease(&id, retaining);
                match self.leases.get(&id) {
                    Some(current) if *current <= retaining => {
                        result.expect("renew a lease");
                        self.leases.insert(id, retaining);
                    }
                    _ => assert!(result.is_err(), "renewing lease {id} to {retaining}"),
                }
                false
            }
            Action::RemoveLease { lease } => {
                let id = lease_id(lease);
                let result = shard.remove_retention_lease(&id);
                if self.leases.remove(&id).is_some() {
                    result.expect("remove a lease");
                } else {
                    assert!(result.is_err(), "removing absent lease {id}");
                }
                false
            }
            Action::ToggleRetainAll => {
                if self.leases.remove(RETAIN_ALL_LEASE).is_some() {
                    shard
                        .remove_retention_lease(RETAIN_ALL_LEASE)
                        .expect("remove the retain-all lease");
                    self.released = true;
                } else {
                    shard
                        .add_retention_lease(RETAIN_ALL_LEASE, SeqNo(0), "fuzz")
                        .expect("add the retain-all lease back");
                    self.leases.insert(RETAIN_ALL_LEASE.to_string(), SeqNo(0));
                }
                false
            }
            Action::Reopen => unreachable!("run_actions reopens the shard itself"),
        }
    }

    /// Checks the shard against the model; `refreshed` also checks the search count.
    fn check(&mut self, shard: &ShardEngine, refreshed: bool) {
        let last = SeqNo(self.next_seq_no().0 - 1);
        assert_eq!(shard.max_seq_no(), last, "max_seq_no");
        assert_eq!(shard.local_checkpoint(), last, "local checkpoint");
        assert_eq!(shard.global_checkpoint(), last, "global checkpoint");
        assert_eq!(shard.primary_term(), PrimaryTerm(1));

        for n in 0..ID_COUNT {
            let id = doc_id(n);
            let got = shard.get(&id).expect("get");
            let expected = self.docs.get(&id).and_then(|doc| {
                doc.live
                    .as_ref()
                    .map(|(seq_no, source)| (*seq_no, doc.version, source.clone()))
            });
            let got = got.map(|got| {
                assert_eq!(got.primary_term, PrimaryTerm(1));
                (got.seq_no, got.version, got.source)
            });
            assert_eq!(got, expected, "get {id}");
        }
        if refreshed {
            // Live documents of the refreshed reader, as a match-all search counts them.
            assert_eq!(shard.doc_count(), self.live_count() as u64, "search count");
            assert_eq!(
                shard.stats().doc_count,
                self.live_count() as u64,
                "doc count"
            );
        }

        let leases: BTreeMap<String, SeqNo> = shard
            .retention_leases()
            .leases
            .into_iter()
            .map(|(id, lease)| (id, lease.retaining_seq_no))
            .collect();
        assert_eq!(leases, self.leases, "retention leases");

        let min_retained = shard.min_retained_seq_no().0;
        assert!(
            min_retained >= self.min_retained,
            "min_retained_seq_no went back from {} to {min_retained}",
            self.min_retained
        );
        self.min_retained = min_retained;
        assert!(
            min_retained <= last.0 + 1,
            "min_retained_seq_no beyond max_seq_no + 1"
        );
        if !self.released {
            assert_eq!(
                min_retained, 0,
                "the retain-all lease holds every operation"
            );
        }
        if last.0 < 0 {
            return;
        }
        let from = min_retained.max(0);
        if from <= last.0 {
            let changes = shard
                .changes(SeqNo(from), last, usize::MAX, usize::MAX)
                .expect("changes above min_retained_seq_no");
            assert_history(&changes, &self.history[from as usize..], "leader");
        }
        if from > 0 {
            match shard.changes(SeqNo(0), last, usize::MAX, usize::MAX) {
                Ok(changes) => assert_history(&changes, &self.history, "leader (from 0)"),
                Err(EngineError::MissingHistory { missing, .. }) => {
                    assert!(missing.0 < from, "missing {missing} at or above {from}")
                }
                Err(other) => panic!("changes from 0 failed: {other}"),
            }
        }
    }
}

/// Asserts that `changes` is exactly `expected`: same operations, in order, contiguous.
fn assert_history(changes: &[Arc<Operation>], expected: &[Operation], who: &str) {
    for pair in changes.windows(2) {
        assert_eq!(
            pair[1].seq_no.0,
            pair[0].seq_no.0 + 1,
            "{who}: changes not contiguous"
        );
    }
    assert_eq!(changes.len(), expected.len(), "{who}: number of operations");
    for (got, expected) in changes.iter().zip(expected) {
        assert_eq!(**got, *expected, "{who}: operation {}", expected.seq_no);
    }
}

/// Feeds the model's history (checked equal to the leader's) to a follower in a shuffled
/// order, in chunks, with refreshes between some chunks, then all of it again, and compares.
fn check_follower(leader: &ShardEngine, model: &Model, disk: &SimStorage, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = Path::new(FOLLOWER_DIR);
    let mut follower = ShardEngine::create(dir, mapper(), config(disk, true), PrimaryTerm(1))
        .expect("create follower");
    follower
        .add_retention_lease(RETAIN_ALL_LEASE, SeqNo(0), "fuzz")
        .expect("follower lease");
    let msu = leader.max_seq_no_of_updates();
    let mut ops = model.history.clone();
    ops.shuffle(&mut rng);
    let mut applied = 0;
    let mut rest = &ops[..];
    while !rest.is_empty() {
        let size = rng.random_range(1..=8usize).min(rest.len());
        let (chunk, tail) = rest.split_at(size);
        applied += follower
            .apply_operations(chunk, msu)
            .expect("apply operations");
        // A duplicate of an already applied operation is skipped.
        let again = rng.random_range(0..chunk.len());
        assert_eq!(
            follower
                .apply_operations(&chunk[again..=again], msu)
                .expect("apply a duplicate"),
            0,
            "a duplicate was applied"
        );
        if rng.random_ratio(1, 4) {
            follower.refresh().expect("follower refresh");
        }
        rest = tail;
    }
    assert_eq!(applied, ops.len(), "every operation applied once");
    if seed & 1 == 1 {
        follower.close().expect("close follower");
        follower = ShardEngine::open(dir, mapper(), config(disk, true)).expect("reopen follower");
    }
    compare_follower(leader, &follower, model);
    let mut again = 0;
    for chunk in model.history.chunks(5) {
        again += follower
            .apply_operations(chunk, msu)
            .expect("apply operations again");
    }
    assert_eq!(again, 0, "operations applied twice");
    compare_follower(leader, &follower, model);
    follower.close().expect("close follower");
}

fn compare_follower(leader: &ShardEngine, follower: &ShardEngine, model: &Model) {
    let last = SeqNo(model.next_seq_no().0 - 1);
    assert_eq!(follower.max_seq_no(), last, "follower max_seq_no");
    assert_eq!(
        follower.local_checkpoint(),
        last,
        "follower local checkpoint"
    );
    for n in 0..ID_COUNT {
        let id = doc_id(n);
        assert_eq!(
            follower.get(&id).expect("follower get"),
            leader.get(&id).expect("leader get"),
            "follower and leader disagree on {id}"
        );
    }
    follower.refresh().expect("follower refresh");
    assert_eq!(
        follower.doc_count(),
        model.live_count() as u64,
        "follower search count"
    );
    if last.0 >= 0 {
        let changes = follower
            .changes(SeqNo(0), last, usize::MAX, usize::MAX)
            .expect("follower changes");
        assert_history(&changes, &model.history, "follower");
    }
}

fn doc_id(n: u8) -> String {
    format!("doc-{}", n % ID_COUNT)
}

fn lease_id(n: u8) -> String {
    format!("lease-{}", n % LEASE_COUNT)
}

/// A small JSON source; each field name always has the same type.
fn source(id: &str, value: u8) -> Vec<u8> {
    match value % 4 {
        0 => format!(r#"{{"id":"{id}","n":{value}}}"#),
        1 => format!(r#"{{"id":"{id}","text":"value {value} of {id}"}}"#),
        2 => format!(
            r#"{{"id":"{id}","obj":{{"flag":{},"n":{value}}}}}"#,
            value & 1 == 1
        ),
        _ => format!(r#"{{"id":"{id}","tags":["a","b{value}"],"n":{value}}}"#),
    }
    .into_bytes()
}

fn mapper() -> Arc<DocumentMapper> {
    Arc::new(DocumentMapper::new(Mappings::empty(), 1, None))
}

/// A small, fast shard on `disk`: no background refresh, one indexing thread, tantivy's
/// smallest writer budget.
fn config(disk: &SimStorage, follower: bool) -> ShardConfig {
    ShardConfig {
        storage: disk.as_storage(),
        durability: Durability::Request,
        refresh_interval: None,
        writer_memory_bytes: 15_000_000,
        indexing_threads: 1,
        follower,
        ..ShardConfig::default()
    }
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
