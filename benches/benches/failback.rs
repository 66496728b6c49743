//! Failback by operations against a full remote recovery of the same index, in one run: the
//! bytes each sends over the network and the time each takes.
//!
//! Set-up (once): nodes A and B in this process, each on a runtime of its own (A's on CPU 0,
//! B's on CPU 1: the engine threads they start inherit it), each reaching the other through a
//! counting proxy (`FaultProxy`, healthy), so every byte of the transport between them is
//! counted. A's index `failback` (2 shards) is loaded until its files hold at least
//! `TANDEM_BENCH_FAILBACK_MB` MiB (default 1024; documents with a 4 KiB random keyword); B
//! follows it (that first recovery is not measured). Before B follows, A's index is
//! force-merged to one segment per shard: an index in steady state, whose merges are done. A
//! freshly loaded one holds 8 equal segments per shard, and the log merge policy selects their
//! merge (the whole shard, tens of seconds with these keywords) at every open; the samples
//! close and open each index every half minute, so that merge would start again in every
//! sample and never end, competing for the node's core with everything measured.
//!
//! Each sample, with L the current leader and F its follower (they swap every sample: A -> B
//! -> A -> B, the scenario of a failover and a failback done again and again):
//! 1. F is paused (the link goes dark), L updates 1% of the documents (never shipped);
//! 2. F is promoted (`_ccr/promote`) and updates another 1% (other ids);
//! 3. **failback**: L's `_ccr/failback` from F, until L has caught up with F: the bytes
//!    through L's proxy and the wall time;
//! 4. **full recovery**: on L's node, a new index follows F's (`_ccr/follow`: a remote
//!    recovery of every file, then the pull loop) until it has caught up: bytes and time;
//!    then it is deleted.
//!
//! Reported: the medians of the paired ratios, failback bytes / full-recovery bytes (goal
//! <= 0.05) and full-recovery time / failback time (goal >= 10).
//!
//! Run: `cargo bench -p tandem-benches --bench failback`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{start_node, Rest};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tandem_benches::{env_usize, median, runtime_on_cpus, temp_dir};
use tandem_engine::index::Index;
use tandem_engine::shard::{IndexRequest, WriteRequest};
use tandem_node::server::RunningNode;
use tandem_testkit::fault_proxy::FaultProxy;
use tokio::runtime::Runtime;

const INDEX: &str = "failback";
const FULL: &str = "failback-full-copy";
const MIB: u64 = 1024 * 1024;
/// Longest a follower may take to catch up.
const CATCH_UP: Duration = Duration::from_secs(600);

/// One node, the runtime it runs on, a REST client of it, and the proxy through which it
/// reaches the other node (under the alias `other`).
struct Side {
    name: &'static str,
    _runtime: Runtime,
    node: RunningNode,
    rest: Rest,
    to_other: FaultProxy,
}

impl Side {
    fn index(&self, name: &str) -> Arc<Index> {
        self.node.node.indices.get(name).expect("the index")
    }

    /// Bytes through this side's proxy so far, both ways.
    fn bytes(&self) -> u64 {
        let counters = self.to_other.counters();
        counters.bytes_to_leader + counters.bytes_to_follower
    }
}

/// A document with a 4 KiB random keyword.
fn blob(rng: &mut StdRng, id: u64, round: u64) -> WriteRequest {
    let blob: String = (0..4096)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect();
    WriteRequest::Index(IndexRequest::new(
        format!("doc-{id}"),
        serde_json::to_vec(&json!({"blob": blob, "round": round})).expect("json"),
    ))
}

fn write(index: &Index, requests: Vec<WriteRequest>) {
    for result in index.bulk(requests) {
        result.expect("indexing");
    }
}

/// Loads `index` with documents until its last commits hold `target` bytes; returns the
/// number of documents.
fn load(index: &Index, target: u64) -> u64 {
    let mut rng = StdRng::seed_from_u64(7);
    let mut docs = 0u64;
    loop {
        for _ in 0..16 {
            let bulk = (docs..docs + 500).map(|id| blob(&mut rng, id, 0)).collect();
            write(index, bulk);
            docs += 500;
        }
        index.refresh().expect("refresh");
        let bytes: u64 = index
            .shards()
            .iter()
            .map(|shard| shard.pin_latest_commit().expect("pin").total_bytes())
            .sum();
        if bytes >= target {
            eprintln!("failback: loaded {docs} documents, {} MiB", bytes / MIB);
            return docs;
        }
    }
}

/// Updates `count` random documents of the first `docs` of `index`.
fn update_some(index: &Index, docs: u64, count: u64, rng: &mut StdRng, round: u64) {
    let mut left = count;
    while left > 0 {
        let batch = left.min(500);
        let bulk = (0..batch)
            .map(|_| {
                let id = rng.random_range(0..docs);
                blob(rng, id, round)
            })
            .collect();
        write(index, bulk);
        left -= batch;
    }
}

/// Waits until every shard of `follower` on `side` has the global checkpoint of the same
/// shard of `leader`.
async fn caught_up(leader: &Index, side: &Side, follower: &str) {
    let started = Instant::now();
    loop {
        if let Ok(index) = side.node.node.indices.get(follower) {
            let done = leader
                .shards()
                .iter()
                .zip(index.shards())
                .all(|(l, f)| f.global_checkpoint() >= l.global_checkpoint());
            if done {
                return;
            }
        }
        assert!(started.elapsed() < CATCH_UP, "{follower} did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bench_failback(c: &mut Criterion) {
    tandem_benches::init_tracing_from_env();
    let target = env_usize("TANDEM_BENCH_FAILBACK_MB", 1024) as u64 * MIB;
    let data = temp_dir();
    let clients = runtime_on_cpus(1, None);
    let (a_runtime, b_runtime) = (
        runtime_on_cpus(2, Some(&[0])),
        runtime_on_cpus(2, Some(&[1])),
    );
    let (a_node, b_node) = (
        start_node(&a_runtime, data.path().join("a"), "a"),
        start_node(&b_runtime, data.path().join("b"), "b"),
    );
    let (a_proxy, b_proxy) = clients.block_on(async {
        (
            FaultProxy::start(b_node.address).await,
            FaultProxy::start(a_node.address).await,
        )
    });
    let sides = [
        Side {
            name: "a",
            _runtime: a_runtime,
            rest: Rest::new(a_node.url()),
            node: a_node,
            to_other: a_proxy,
        },
        Side {
            name: "b",
            _runtime: b_runtime,
            rest: Rest::new(b_node.url()),
            node: b_node,
            to_other: b_proxy,
        },
    ];
    clients.block_on(async {
        for side in &sides {
            side.rest
                .put(
                    "/_cluster/settings",
                    json!({"persistent": {"cluster": {"remote": {"other": {
                        "seeds": [side.to_other.address.to_string()]}}}}}),
                )
                .await;
        }
        sides[0]
            .rest
            .put(
                &format!("/{INDEX}"),
                json!({"settings": {"index": {"number_of_shards": 2,
                                              "translog.durability": "async"}},
                       "mappings": {"properties": {"blob": {"type": "keyword"}}}}),
            )
            .await;
    });
    let docs = load(&sides[0].index(INDEX), target);
    clients.block_on(async {
        // A steady-state index: its merges done (see the module documentation).
        sides[0]
            .rest
            .post(
                &format!("/{INDEX}/_forcemerge?max_num_segments=1"),
                json!({}),
            )
            .await;
        sides[1]
            .rest
            .put(
                &format!("/{INDEX}/_ccr/follow?wait_for_active_shards=1"),
                json!({"remote_cluster": "other", "leader_index": INDEX,
                       "read_poll_timeout": "1s"}),
            )
            .await;
        caught_up(&sides[0].index(INDEX), &sides[1], INDEX).await;
    });
    let changed = (docs / 100).max(1);
    let mut rng = StdRng::seed_from_u64(11);
    let (mut byte_ratios, mut speedups) = (Vec::new(), Vec::new());
    let (mut failback_bytes, mut full_bytes) = (Vec::new(), Vec::new());
    let (mut failback_secs, mut full_secs) = (Vec::new(), Vec::new());
    let mut leader = 0usize;
    let mut round = 1u64;
    let mut group = c.benchmark_group("failback");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(1));
    group.bench_function("failback_vs_full_recovery", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (l, f) = (&sides[leader], &sides[1 - leader]);
                clients.block_on(async {
                    f.rest
                        .post(&format!("/{INDEX}/_ccr/pause_follow"), json!({}))
                        .await;
                });
                update_some(&l.index(INDEX), docs, changed, &mut rng, round);
                clients.block_on(async {
                    f.rest
                        .post(&format!("/{INDEX}/_ccr/promote"), json!({}))
                        .await;
                });
                update_some(&f.index(INDEX), docs, changed, &mut rng, round + 1);
                round += 2;
                // Failback: the old leader follows the promoted index again.
                let (before, started) = (l.bytes(), Instant::now());
                clients.block_on(async {
                    l.rest
                        .post(
                            &format!("/{INDEX}/_ccr/failback"),
                            json!({"remote_cluster": "other", "leader_index": INDEX,
                                   "read_poll_timeout": "1s"}),
                        )
                        .await;
                    caught_up(&f.index(INDEX), l, INDEX).await;
                });
                let failback_took = started.elapsed();
                let failback = l.bytes() - before;
                // The same index copied whole, from the same leader, on the same node.
                let (before, started) = (l.bytes(), Instant::now());
                clients.block_on(async {
                    l.rest
                        .put(
                            &format!("/{FULL}/_ccr/follow?wait_for_active_shards=1"),
                            json!({"remote_cluster": "other", "leader_index": INDEX,
                                   "read_poll_timeout": "1s"}),
                        )
                        .await;
                    caught_up(&f.index(INDEX), l, FULL).await;
                });
                let full_took = started.elapsed();
                let full = l.bytes() - before;
                clients.block_on(async {
                    l.rest.delete(&format!("/{FULL}")).await;
                });
                assert_eq!(
                    l.index(INDEX).doc_count(),
                    f.index(INDEX).doc_count(),
                    "the failed-back index differs from its leader"
                );
                eprintln!(
                    "failback: {} <- {}: failback {:.2} s, {} KiB; full recovery {:.2} s, {} KiB",
                    l.name,
                    f.name,
                    failback_took.as_secs_f64(),
                    failback / 1024,
                    full_took.as_secs_f64(),
                    full / 1024
                );
                byte_ratios.push(failback as f64 / full.max(1) as f64);
                speedups.push(full_took.as_secs_f64() / failback_took.as_secs_f64());
                failback_bytes.push(failback as f64);
                full_bytes.push(full as f64);
                failback_secs.push(failback_took.as_secs_f64());
                full_secs.push(full_took.as_secs_f64());
                total += failback_took;
                leader = 1 - leader;
            }
            total
        })
    });
    group.finish();
    if byte_ratios.is_empty() {
        return; // filtered out on the command line
    }
    eprintln!(
        "failback: {docs} documents, {changed} changed on each side per round; medians of {}: \
         failback {:.2} s and {:.1} MiB, full recovery {:.2} s and {:.1} MiB; \
         bytes failback/full = {:.4} (goal <= 0.05), time full/failback = {:.1}x (goal >= 10)",
        byte_ratios.len(),
        median(&failback_secs),
        median(&failback_bytes) / MIB as f64,
        median(&full_secs),
        median(&full_bytes) / MIB as f64,
        median(&byte_ratios),
        median(&speedups)
    );
}

criterion_group!(benches, bench_failback);
criterion_main!(benches);
