//! Model-based tests: random operation sequences against an in-memory model (primary path),
//! random replays of a leader's history on followers (replica path, DESIGN.md §7 invariants 2
//! and 5), and the fuzz target bodies over the checked-in seed corpus and pseudo-random inputs.
//!
//! Case counts are small by default so the file stays fast in the debug test profile; set
//! `TANDEM_PROPTEST_CASES` to run more cases per property (and more pseudo-random fuzz inputs:
//! ten per case).

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use tandem_engine::fuzzing::{self, Action};
use tandem_engine::shard::{DeleteRequest, IndexRequest};
use tandem_engine::{Operation, SeqNo, ShardEngine};
use tandem_testkit::fuzz_corpus::{corpus, random_count, random_inputs, write_corpus};

/// Cases per property: `TANDEM_PROPTEST_CASES`, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("TANDEM_PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        // Shrinking replays whole shard runs; keep it bounded.
        max_shrink_iters: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// (a) The primary path against the model of `tandem_engine::fuzzing::run_actions`.
// ---------------------------------------------------------------------------------------------

/// Writes (index, conditional index, delete, no-op) dominate; refresh, force merge, lease
/// changes and reopen are occasional. `retention`: also release/re-take the retain-all lease.
fn action(retention: bool) -> BoxedStrategy<Action> {
    let ids = 0u8..5;
    let mut choices: Vec<(u32, BoxedStrategy<Action>)> = vec![
        (
            8,
            (ids.clone(), any::<u8>())
                .prop_map(|(id, value)| Action::Index { id, value })
                .boxed(),
        ),
        (
            2,
            (ids.clone(), any::<u8>(), any::<bool>())
                .prop_map(|(id, value, stale)| Action::ConditionalIndex { id, value, stale })
                .boxed(),
        ),
        (4, ids.clone().prop_map(|id| Action::Delete { id }).boxed()),
        (1, Just(Action::NoOp).boxed()),
        (2, Just(Action::Refresh).boxed()),
        (1, Just(Action::ForceMerge).boxed()),
        (1, Just(Action::Reopen).boxed()),
        (
            1,
            (any::<u8>(), any::<u8>())
                .prop_map(|(lease, retaining)| Action::AddLease { lease, retaining })
                .boxed(),
        ),
        (
            1,
            (any::<u8>(), any::<u8>())
                .prop_map(|(lease, retaining)| Action::RenewLease { lease, retaining })
                .boxed(),
        ),
        (
            1,
            any::<u8>()
                .prop_map(|lease| Action::RemoveLease { lease })
                .boxed(),
        ),
    ];
    if retention {
        choices.push((1, Just(Action::ToggleRetainAll).boxed()));
        choices.push((2, Just(Action::ForceMerge).boxed()));
    }
    proptest::strategy::Union::new_weighted(choices).boxed()
}

/// At most a few reopens per case: each costs a commit and an index open.
fn actions(retention: bool) -> impl Strategy<Value = Vec<Action>> {
    proptest::collection::vec(action(retention), 1..48).prop_map(|mut actions| {
        let mut reopens = 0;
        for action in &mut actions {
            if *action == Action::Reopen {
                reopens += 1;
                if reopens > 3 {
                    *action = Action::Refresh;
                }
            }
        }
        actions
    })
}

proptest! {
    #![proptest_config(config(24))]

    /// Index/update/delete/no-op with ids from a small set, with refreshes, force merges,
    /// lease changes and reopens, while the retain-all lease is held: after every step the
    /// live documents (`get`), versions, seq_no assignment, checkpoints, the search count
    /// (after refreshes) and the complete history from 0 through the changes API equal the
    /// model; at the end a follower replays the history shuffled and duplicated and agrees.
    #[test]
    fn primary_path_matches_the_model(actions in actions(false), seed in any::<u64>()) {
        fuzzing::run_actions(&actions, seed);
    }
}

proptest! {
    #![proptest_config(config(12))]

    /// As above, but the retain-all lease may be released (and taken again), so force merges
    /// drop history: the changes API stays exact from `min_retained_seq_no` on, fails with
    /// `MissingHistory` (never a wrong answer) below it, and `min_retained_seq_no` never
    /// decreases.
    #[test]
    fn history_is_exact_above_min_retained_seq_no(actions in actions(true), seed in any::<u64>()) {
        fuzzing::run_actions(&actions, seed);
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Followers: any order, any chunking, duplicates interleaved, same result.
// ---------------------------------------------------------------------------------------------

/// A primary-path step that produces the leader's history.
#[derive(Clone, Debug)]
enum Write {
    Index(u8, u8),
    Delete(u8),
    NoOp,
    Refresh,
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        6 => (0u8..6, any::<u8>()).prop_map(|(id, value)| Write::Index(id, value)),
        3 => (0u8..6).prop_map(Write::Delete),
        1 => Just(Write::NoOp),
        1 => Just(Write::Refresh),
    ]
}

/// How a follower receives the history.
#[derive(Clone, Debug)]
struct Delivery {
    /// The permutation of the history (indices into it).
    order: Vec<usize>,
    /// Chunk sizes, used in turn, with whether to refresh the follower after the chunk.
    chunks: Vec<(usize, bool)>,
    /// After each chunk, re-send one already sent operation picked by the next index.
    duplicates: Vec<Index>,
}

fn scenario() -> impl Strategy<Value = (Vec<Write>, Delivery)> {
    proptest::collection::vec(write(), 1..80).prop_flat_map(|writes| {
        let ops = writes
            .iter()
            .filter(|write| !matches!(write, Write::Refresh))
            .count();
        let order = Just((0..ops).collect::<Vec<_>>()).prop_shuffle();
        let chunks = proptest::collection::vec((1usize..10, prop::bool::weighted(0.2)), 1..16);
        let duplicates = proptest::collection::vec(any::<Index>(), 0..24);
        (Just(writes), (order, chunks, duplicates)).prop_map(
            |(writes, (order, chunks, duplicates))| {
                (
                    writes,
                    Delivery {
                        order,
                        chunks,
                        duplicates,
                    },
                )
            },
        )
    })
}

/// Runs the writes on a fresh leader.
fn run_leader(dir: &std::path::Path, writes: &[Write]) -> ShardEngine {
    let leader = retaining_all(create_shard(dir));
    for write in writes {
        match *write {
            Write::Index(id, value) => {
                let source = format!(r#"{{"n":{value},"body":"v{value} of {id}"}}"#);
                leader
                    .index(IndexRequest::new(format!("d{id}"), source.into_bytes()))
                    .expect("index");
            }
            Write::Delete(id) => {
                leader
                    .delete(DeleteRequest::new(format!("d{id}")))
                    .expect("delete");
            }
            Write::NoOp => {
                leader.no_op("gap").expect("no-op");
            }
            Write::Refresh => leader.refresh().expect("refresh"),
        }
    }
    leader
}

/// Adds a lease at 0, so refreshes never let a merge drop history.
fn retaining_all(shard: ShardEngine) -> ShardEngine {
    shard
        .add_retention_lease("retain-all", SeqNo(0), "test")
        .expect("retain-all lease");
    shard
}

/// The leader's whole history as operations, through the changes API.
fn leader_operations(leader: &ShardEngine) -> Vec<Operation> {
    let max = leader.max_seq_no();
    if max.0 < 0 {
        return Vec::new();
    }
    let ops = leader
        .changes(SeqNo(0), max, usize::MAX, usize::MAX)
        .expect("leader changes");
    ops.iter().map(|op| (**op).clone()).collect()
}

/// Live documents by id (`get` over every id the history names), and the search count after a
/// refresh.
fn live_docs(shard: &ShardEngine, ops: &[Operation]) -> (BTreeMap<String, String>, usize) {
    let mut docs = BTreeMap::new();
    for id in ops.iter().filter_map(Operation::id) {
        if let Some(got) = shard.get(id).expect("get") {
            docs.insert(
                id.to_string(),
                format!(
                    "seq_no={} term={} version={} source={}",
                    got.seq_no,
                    got.primary_term,
                    got.version,
                    String::from_utf8_lossy(&got.source)
                ),
            );
        }
    }
    shard.refresh().expect("refresh");
    (docs, shard.doc_count() as usize)
}

fn deliver(follower: &ShardEngine, ops: &[Operation], delivery: &Delivery, msu: SeqNo) {
    let mut sent: Vec<Operation> = Vec::new();
    let mut order = delivery.order.iter().map(|&i| &ops[i]).peekable();
    let mut chunks = delivery.chunks.iter().cycle();
    let mut duplicates = delivery.duplicates.iter();
    let mut applied = 0;
    while order.peek().is_some() {
        let &(size, refresh) = chunks.next().expect("chunks is not empty");
        let mut chunk: Vec<Operation> = order.by_ref().take(size).cloned().collect();
        sent.extend(chunk.iter().cloned());
        // A duplicate of an operation sent before or in this chunk, in the chunk's middle.
        if let Some(index) = duplicates.next() {
            let duplicate = sent[index.index(sent.len())].clone();
            chunk.insert(chunk.len() / 2, duplicate);
        }
        applied += follower.apply_operations(&chunk, msu).expect("apply");
        if refresh {
            follower.refresh().expect("follower refresh");
        }
    }
    assert_eq!(applied, ops.len(), "each operation applied exactly once");
}

proptest! {
    #![proptest_config(config(32))]

    /// The leader's history applied to a follower in a random order, in random-sized chunks
    /// with duplicates interleaved and refreshes in between, gives the same live documents,
    /// search count and history (seq_no, term, version, op type, id, source) as applying it in
    /// order to another follower, and as the leader; applying it all again changes nothing.
    #[test]
    fn followers_converge_whatever_the_order((writes, delivery) in scenario()) {
        let dir = tempfile::tempdir().unwrap();
        let leader = run_leader(&dir.path().join("leader"), &writes);
        let ops = leader_operations(&leader);
        prop_assert_eq!(ops.len(), delivery.order.len());
        let msu = leader.max_seq_no_of_updates();

        let in_order = retaining_all(create_follower(&dir.path().join("in-order")));
        let applied = in_order.apply_operations(&ops, msu).expect("apply in order");
        prop_assert_eq!(applied, ops.len());

        let shuffled = retaining_all(create_follower(&dir.path().join("shuffled")));
        deliver(&shuffled, &ops, &delivery, msu);

        let expected_history = full_history(&leader);
        let expected_docs = live_docs(&leader, &ops);
        for (name, follower) in [("in-order", &in_order), ("shuffled", &shuffled)] {
            prop_assert_eq!(follower.max_seq_no(), leader.max_seq_no(), "{}", name);
            prop_assert_eq!(follower.local_checkpoint(), leader.max_seq_no(), "{}", name);
            prop_assert_eq!(&live_docs(follower, &ops), &expected_docs, "{}", name);
            prop_assert_eq!(&full_history(follower), &expected_history, "{}", name);
            // Everything again, in order: nothing is applied, nothing changes.
            prop_assert_eq!(follower.apply_operations(&ops, msu).expect("again"), 0, "{}", name);
            prop_assert_eq!(&live_docs(follower, &ops), &expected_docs, "{}", name);
            prop_assert_eq!(&full_history(follower), &expected_history, "{}", name);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (c) The fuzz target bodies over the seed corpus and pseudo-random inputs.
// ---------------------------------------------------------------------------------------------

#[test]
fn translog_replay_over_corpus_and_random_inputs() {
    let started = Instant::now();
    let files = corpus("translog_replay");
    for (path, bytes) in &files {
        eprintln!("translog_replay {path:?}");
        fuzzing::translog_replay(bytes);
    }
    let seeds: Vec<Vec<u8>> = files.into_iter().map(|(_, bytes)| bytes).collect();
    // fsync-bound: a few threads overlap the waits.
    let inputs = random_inputs(0x7a4d_0001, random_count(2_000), &seeds, 512);
    std::thread::scope(|scope| {
        for part in inputs.chunks(inputs.len().div_ceil(4).max(1)) {
            scope.spawn(move || {
                part.iter()
                    .for_each(|input| fuzzing::translog_replay(input))
            });
        }
    });
    eprintln!("translog_replay: {:?}", started.elapsed());
}

#[test]
fn engine_ops_over_corpus_and_random_inputs() {
    let started = Instant::now();
    let files = corpus("engine_ops");
    for (path, bytes) in &files {
        eprintln!("engine_ops {path:?}");
        fuzzing::engine_ops(bytes);
    }
    let seeds: Vec<Vec<u8>> = files.into_iter().map(|(_, bytes)| bytes).collect();
    for input in random_inputs(0x7a4d_0002, random_count(600), &seeds, 32) {
        fuzzing::engine_ops(&input);
    }
    eprintln!("engine_ops: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// The seed corpus (checked in under fuzz/corpus/). Regenerate with
// `cargo test -p tandem-engine --test model_based -- --ignored write_seed_corpus`.
// ---------------------------------------------------------------------------------------------

/// Hand-written `engine_ops` inputs (see `fuzzing::decode_actions` for the byte format:
/// opcode % 16 = 0-3,15 index(id, value) | 4 conditional index(id, value; value >= 0x80 is
/// stale) | 5,6 delete(id) | 7 no-op | 8 refresh | 9 force merge | 10 add lease(lease,
/// retaining) | 11 renew lease | 12 remove lease | 13 reopen | 14 toggle the retain-all lease).
fn engine_ops_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", vec![]),
        ("index_update_delete", vec![0, 1, 0, 0, 1, 1, 5, 1, 8]),
        // Create, delete, re-create: the re-create does not move the MSU.
        ("recreate_after_delete", vec![0, 3, 0, 5, 3, 0, 3, 1]),
        (
            "recreate_after_delete_refreshed",
            vec![0, 3, 0, 8, 5, 3, 8, 0, 3, 1, 0, 4, 2, 5, 4, 0, 4, 3],
        ),
        ("noops_and_deletes_of_missing", vec![7, 5, 6, 7, 6, 7, 8, 7]),
        (
            "conditional_writes",
            vec![0, 2, 0, 4, 2, 1, 4, 2, 0x81, 4, 6, 2, 8, 4, 2, 3],
        ),
        (
            "leases",
            vec![
                0, 0, 0, 10, 0, 0, 10, 1, 9, 11, 0, 1, 11, 1, 0, 12, 0, 12, 2, 10, 0, 1, 8,
            ],
        ),
        (
            "reopen_with_unrefreshed_writes",
            vec![0, 1, 0, 8, 0, 1, 1, 5, 2, 7, 13, 0, 1, 2, 13, 8],
        ),
        (
            "release_and_merge",
            vec![
                0, 0, 0, 0, 1, 0, 8, 0, 0, 1, 5, 1, 8, 0, 2, 2, 8, 14, 8, 9, 0, 0, 3, 9, 14, 8, 13,
            ],
        ),
        (
            "updates_across_segments",
            vec![
                0, 0, 0, 0, 1, 0, 0, 2, 0, 8, 0, 0, 1, 0, 1, 1, 8, 0, 0, 2, 5, 2, 8, 9, 0, 1, 3, 8,
            ],
        ),
        (
            "every_opcode",
            vec![
                0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 3, 7, 5, 5, 6, 6, 7, 8, 9, 10, 1, 2, 11, 1,
                3, 12, 1, 13, 14, 15, 7, 7,
            ],
        ),
        (
            "many_small_updates",
            (0..60u8)
                .flat_map(|i| [i % 3 * 5, i % 4, i])
                .collect::<Vec<u8>>(),
        ),
    ]
}

/// A valid translog generation file with a few records of every kind, written through the
/// `Translog` API (truncated to its logical end: the current generation is preallocated).
fn valid_translog_generation(records: usize) -> Vec<u8> {
    use tandem_engine::fuzzing::{encode_translog_payload, Translog};
    use tandem_engine::{OperationKind, PrimaryTerm};

    let dir = tempfile::tempdir().unwrap();
    let translog = Translog::create(
        tandem_engine::storage::real(),
        dir.path(),
        "seed-corpus-uuid",
    )
    .expect("create translog");
    let mut end = None;
    for seq_no in 0..records as i64 {
        let kind = match seq_no % 3 {
            0 => OperationKind::Index {
                id: format!("doc-{}", seq_no % 4),
                source: format!(r#"{{"n":{seq_no}}}"#).into_bytes(),
            },
            1 => OperationKind::Delete {
                id: format!("doc-{}", seq_no % 4),
            },
            _ => OperationKind::NoOp {
                reason: "gap".to_string(),
            },
        };
        let operation = Operation {
            seq_no: SeqNo(seq_no),
            primary_term: PrimaryTerm(1),
            version: 1 + seq_no as u64 / 4,
            kind,
        };
        let mut payload = Vec::new();
        encode_translog_payload(&operation, &mut payload);
        end = Some(translog.append(seq_no as u64, &payload));
    }
    translog.sync().expect("sync translog");
    let bytes = std::fs::read(dir.path().join("translog-1.tlog")).expect("read generation");
    let end = end.map_or(bytes.len(), |location| location.end_offset as usize);
    let mut bytes = bytes;
    bytes.truncate(end.min(bytes.len()));
    // Without records, keep only the header (the file may be preallocated with zeros).
    if records == 0 {
        while bytes.last() == Some(&0) && bytes.len() > 8 {
            bytes.pop();
        }
    }
    bytes
}

fn translog_replay_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let valid = valid_translog_generation(6);
    let one = valid_translog_generation(1);
    let mut torn = valid.clone();
    torn.truncate(valid.len() - 5);
    let mut bad_crc = valid.clone();
    let last = bad_crc.len() - 3;
    bad_crc[last] ^= 0xff;
    let mut zero_tail = valid.clone();
    zero_tail.extend_from_slice(&[0u8; 64]);
    let mut garbage_tail = valid.clone();
    garbage_tail.extend_from_slice(b"\x07\x00\x00\x00garbage");
    let mut bad_magic = valid.clone();
    bad_magic[0] = b'X';
    let mut huge_len = one.clone();
    huge_len.extend_from_slice(&u32::MAX.to_le_bytes());
    huge_len.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    vec![
        ("valid_6_records", valid),
        ("valid_1_record", one),
        ("header_only", valid_translog_generation(0)),
        ("torn_tail", torn),
        ("bad_crc_in_last_record", bad_crc),
        ("zero_padded", zero_tail),
        ("garbage_tail", garbage_tail),
        ("bad_magic", bad_magic),
        ("huge_length", huge_len),
        ("empty", Vec::new()),
        ("magic_only", b"TNDMTLOG".to_vec()),
        ("valid_40_records", valid_translog_generation(40)),
    ]
}

#[test]
#[ignore = "writes the seed corpus under fuzz/corpus/"]
fn write_seed_corpus() {
    write_corpus("engine_ops", &engine_ops_seeds());
    write_corpus("translog_replay", &translog_replay_seeds());
}

/// `changes` with `max_operations = usize::MAX` must not wrap to a negative span and panic
/// ("range start is greater than range end"), and a `to` far beyond `max_seq_no` must not size
/// a buffer by the whole range.
#[test]
fn changes_accepts_unbounded_limits() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    shard.index(doc(1, "a")).unwrap();
    shard.delete(DeleteRequest::new("doc-1")).unwrap();
    let all = shard
        .changes(SeqNo(0), SeqNo(1), usize::MAX, usize::MAX)
        .unwrap();
    assert_eq!(all.len(), 2);
    let open_ended = shard
        .changes(SeqNo(0), SeqNo(i64::MAX), usize::MAX, usize::MAX)
        .unwrap();
    assert_eq!(open_ended.len(), 2);
    shard.refresh().unwrap();
    let beyond = shard
        .changes(SeqNo(1), SeqNo(i64::MAX), usize::MAX, usize::MAX)
        .unwrap();
    assert_eq!(beyond.len(), 1);
    assert!(shard
        .changes(SeqNo(5), SeqNo(i64::MAX), usize::MAX, usize::MAX)
        .unwrap()
        .is_empty());
}

/// Create, delete, re-create of one id gives MSU = the delete's seq_no. A follower receiving
/// the re-create (above the MSU) before the delete must not take the append-only fast path
/// while the earlier create is still live, or it ends with two live documents for the id: the
/// fast path also requires every operation up to the MSU to be processed (as Elasticsearch
/// does).
#[test]
fn recreate_delivered_before_the_delete_leaves_one_live_document() {
    let dir = tempfile::tempdir().unwrap();
    let leader = retaining_all(create_shard(&dir.path().join("leader")));
    leader.index(doc(1, "a")).unwrap();
    leader.delete(DeleteRequest::new("doc-1")).unwrap();
    leader.index(doc(1, "b")).unwrap();
    let msu = leader.max_seq_no_of_updates();
    assert_eq!(msu, SeqNo(1));
    let ops = leader_operations(&leader);
    for (name, order, per_op) in [
        ("one batch", [0, 2, 1], false),
        ("one op per call", [0, 2, 1], true),
        ("re-create first", [2, 0, 1], true),
    ] {
        let follower = retaining_all(create_follower(&dir.path().join(name)));
        let shuffled: Vec<Operation> = order.iter().map(|&i| ops[i].clone()).collect();
        if per_op {
            for op in &shuffled {
                follower
                    .apply_operations(std::slice::from_ref(op), msu)
                    .unwrap();
            }
        } else {
            follower.apply_operations(&shuffled, msu).unwrap();
        }
        assert_eq!(
            live_docs(&follower, &ops),
            live_docs(&leader, &ops),
            "{name}"
        );
        assert_eq!(follower.doc_count(), 1, "{name}");
        assert_eq!(full_history(&follower), full_history(&leader), "{name}");
    }
}
