//! Cross-cluster replication end to end: two Tandem nodes in this process, each serving HTTP on
//! loopback with a tokio runtime of its own, the follower reaching the leader through the HTTP
//! transport (`/_tandem/v1`) exactly as a user configures it (`PUT /_cluster/settings` with
//! `cluster.remote.leader.seeds`, then `PUT /{follower}/_ccr/follow?wait_for_active_shards=1`).
//! Every write and every CCR request goes through the REST API with `reqwest`; only the global
//! checkpoints are read in-process, to time replication finely.
//!
//! The leader indices have one shard and `translog.durability: request`; their documents are
//! `TANDEM_BENCH_HTTP_DOCS` (default 100,000) `server-metrics` documents (30% re-index an
//! existing id), sent as `_bulk` requests of 200 by 8 concurrent clients.
//!
//! - `ingest_round`: one round of three runs, each on fresh indices, their order rotating from
//!   round to round so that the noise of this shared machine spreads over all three (criterion
//!   times the round; the figures are the medians of the runs). An ingest is timed until its
//!   last bulk is acknowledged and a `_refresh` has returned (everything indexed), an apply
//!   until the follower has caught up and refreshed:
//!   - `leader_alone`: the ingest with no follower;
//!   - `leader_followed`: the same ingest while a follower index replicates it (ratio to
//!     `leader_alone`: the cost of being followed; target >= 0.97);
//!   - `follower_apply`: a follower of an empty leader index is paused, the leader ingests
//!     everything (its retention lease keeps the history) and is refreshed (so its indexing is
//!     done and does not compete with the follower's), then `resume_follow` is timed until
//!     the follower's global checkpoint reaches the leader's (ratio to `leader_alone`; target
//!     >= 0.90). Following a loaded leader would recover its files instead of replaying.
//! - `lag`: after the rounds, the leader paced at half of `leader_alone`'s median rate (4
//!   clients) while a follower replicates; for every acknowledged bulk, the time from its
//!   acknowledgement to the follower's global checkpoint covering its highest seq_no (sampled
//!   every 200 µs), as p50 and p99 (target p99 <= 50 ms). On two shared cores half of
//!   `leader_alone` can be more than the leader sustains while followed, so a second run paced
//!   at half of `leader_followed`'s median shows the lag without that overload.
//! - `ingest_round_pinned` (criterion's second function): `leader_alone`, `leader_followed` and
//!   `leader_neighboured` again, on a second pair of nodes placed as on two machines: every
//!   thread of the leader node and of the clients on core 0, every thread of the follower node on
//!   core 1 (threads inherit their creator's affinity, so tantivy's indexing and merge threads
//!   follow their node). The ratio then is what being followed costs the leader (serving shard
//!   changes, leases), not the follower's indexing competing for the same cores. The two cores
//!   still share this machine's caches and memory bandwidth (measured and printed: how much
//!   slower a memory-bound loop on core 0 runs while core 1 runs one), which two machines do not:
//!   `leader_neighboured` (no follower; the follower node indexes the same bulks in-process as
//!   they are acknowledged, loading its core as a follower does) is the baseline that has the
//!   same load beside the leader, and followed/neighboured the target's figure. Every run prints
//!   how busy each core was. After its rounds, a `lag` run on the same pair, paced at half the
//!   pinned `leader_alone` median (`TANDEM_BENCH_PIN_LEADER_CPU=1` swaps the cores; each followed
//!   run also reports the follower's read requests). It runs before the recovery leader exists,
//!   whose merges would otherwise run on both cores.
//! - `recovery` (criterion's third function, timing the follow of each round): a leader
//!   index of one shard filled (in-process, as `recovery_throughput` does)
//!   until its committed files hold `TANDEM_BENCH_HTTP_RECOVERY_BYTES` (default 1 GiB), then
//!   flushed. Each round times `PUT /{follower}/_ccr/follow?wait_for_active_shards=1` (it
//!   returns once the recovery is complete and the follower follows) and `cp` + fsync of the
//!   same committed files, in alternating order, with every dirty page written back before each
//!   (ratio = follow MiB/s / cp MiB/s; target >= 0.90). `cp` copies the leader's commit once
//!   background merges have settled; the leader can still commit anew later (a merge), so each
//!   rate is over the bytes its own copy held and a round says when they differ. The follower's recovery is not throttled:
//!   `ccr.indices.recovery.max_bytes_per_sec` is set to `0` (no limit) through
//!   `_cluster/settings` (`TANDEM_BENCH_HTTP_RECOVERY_MAX_BYTES_PER_SEC` to try another). The
//!   leader's files are in the page cache for both, so the copy paths are compared, not reads.
//!   `TANDEM_BENCH_HTTP_RECOVERY_CHUNKS` sets `ccr.indices.recovery.max_concurrent_file_chunks`
//!   (default 5) for every recovery of the run.
//!
//! - `security_round` (criterion's fourth function, timing the secure pair's runs): what TLS
//!   and security cost replication. Two fresh pairs of nodes side by side in this process,
//!   each placed as on two machines (as `ingest_round_pinned`: the leader node and the clients
//!   on core 0, the follower node on core 1, so that the leader's encryption and the
//!   follower's decryption run on a core each, as they would): one as nodes start by default,
//!   one as the secure demo runs them (TLS with certificates from
//!   `tandem certs`, security on, the clients sending `elastic`'s password, the follower a
//!   cross-cluster API key from its keystore, over TLS). Each round runs `leader_alone`,
//!   `follower_apply` and a recovery (a follow of a one-shard index of
//!   `TANDEM_BENCH_HTTP_SECURITY_RECOVERY_BYTES`, default 256 MiB, made on each pair) on both
//!   pairs back to back, the pair going first alternating; the figures are the secure-to-plain
//!   ratios of the medians (targets >= 0.90). Alone: `cargo bench -p tandem-benches --bench
//!   node_http -- security_round`. Profiling aids: `TANDEM_BENCH_HTTP_SECURITY_RECOVERY_ONLY=1`
//!   runs only the recoveries of each round, `TANDEM_BENCH_HTTP_SECURITY_PAIR=secure` (or
//!   `plain`) runs only that pair's parts (no ratio then).
//!
//! Apart from `ingest_round_pinned`, both nodes, the clients and the follower's indexing share
//! this machine's two cores.
//!
//! Run: `cargo bench -p tandem-benches --bench node_http` (small:
//! `TANDEM_BENCH_HTTP_DOCS=20000 TANDEM_BENCH_HTTP_RECOVERY_BYTES=67108864`). Profiling aids:
//! `TANDEM_BENCH_HTTP_LAG_ONLY=<docs/s>` runs only the lag run at that pace;
//! `TANDEM_BENCH_HTTP_PINNED_RUNS=alone,followed,retained` chooses the runs of the pinned
//! rounds (`retained`: the ingest with a paused follower, whose lease retains the history while
//! nobody reads, splits the cost of being followed into retention and reads; a single kind of
//! run is what a profile of it needs); `RUST_LOG` (for example
//! `tandem_engine=debug`) logs to stderr.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

/// The allocator of the `tandem` binary, so the nodes here run as the binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::{Duration, Instant};

use common::Rest;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use serde_json::json;
use tandem_benches::{
    blob_mappings_json, blob_settings_json, cp_and_fsync, env_usize, fill_shard_with_blobs,
    flush_dirty_pages, format_busy, init_tracing_from_env, lags_ms, mappings_json, median,
    median_busy, median_paired_ratio, on_cpus, per_second, percentile, runtime_on_cpus,
    shared_cache_slowdown, spawn_twins, temp_dir, CheckpointSampler, CoreTimes, Workload, SEED,
};
use tandem_engine::index::Index;
use tandem_engine::shard::PinnedCommit;
use tandem_engine::shard::WriteRequest;
use tandem_node::server::RunningNode;
use tokio::runtime::Runtime;

/// Concurrent `_bulk` clients of the ingest runs.
const WRITERS: usize = 8;
/// Documents per `_bulk` request.
const BULK_SIZE: usize = 200;
/// Concurrent `_bulk` clients of the paced (`lag`) run.
const PACED_WRITERS: usize = 4;
/// `ingest_round_pinned`: rounds (criterion samples), unless `TANDEM_BENCH_PINNED_ROUNDS` says.
const PINNED_ROUNDS: usize = 20;
/// How often the follower's global checkpoint is read while waiting or sampling.
const SAMPLE_EVERY: Duration = Duration::from_micros(200);
/// Longest wait for a follower to catch up before the bench fails.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(300);
/// The follower cluster's alias of the leader cluster.
const REMOTE: &str = "leader";
/// The follower's recovery rate limit (`ccr.indices.recovery.max_bytes_per_sec`) unless
/// `TANDEM_BENCH_HTTP_RECOVERY_MAX_BYTES_PER_SEC` says otherwise: `0`, no limit (`10gb`
/// measured the same, with the limiter's accounted throttle time of ~0.1 ms per 1 MiB chunk).
const RECOVERY_MAX_BYTES_PER_SEC: &str = "0";
/// Name of the leader index the recovery rounds copy.
const RECOVERY_LEADER: &str = "recovery-leader";
const MIB: f64 = 1024.0 * 1024.0;

/// The leader and follower nodes, each on its own runtime (as two processes would be), and
/// the REST clients' runtime.
struct Cluster {
    _data: tempfile::TempDir,
    leader_runtime: Runtime,
    follower_runtime: Runtime,
    client_runtime: Runtime,
    /// Where the follower node's threads run, if pinned.
    follower_cpus: Option<&'static [usize]>,
    leader: RunningNode,
    follower: RunningNode,
    /// How busy each core was during the last ingest's timed part.
    last_busy: parking_lot::Mutex<Vec<f64>>,
    on_leader: Rest,
    on_follower: Rest,
}

/// Where the threads of the bench run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Both nodes and the clients share every core.
    Shared,
    /// As on two machines: the leader node (and the clients) on core 0, the follower node on
    /// core 1. Every thread a node starts inherits its core.
    Pinned,
}

impl Placement {
    fn cpus(self, node: &str) -> Option<&'static [usize]> {
        let leader_cpu = env_usize("TANDEM_BENCH_PIN_LEADER_CPU", 0);
        let (leader, follower): (&'static [usize], &'static [usize]) = if leader_cpu == 1 {
            (&[1], &[0])
        } else {
            (&[0], &[1])
        };
        match (self, node) {
            (Placement::Shared, _) => None,
            (Placement::Pinned, "follower") => Some(follower),
            (Placement::Pinned, _) => Some(leader),
        }
    }
}

/// A runtime of two threads, placed on `cpus` if given.
fn runtime(cpus: Option<&'static [usize]>) -> Runtime {
    runtime_on_cpus(2, cpus)
}

/// Starts a node on `runtime`, from a thread placed like the runtime's; with TLS and security
/// when `certs` (from `common::make_certs`) is given.
fn start_node(
    runtime: &Runtime,
    cpus: Option<&'static [usize]>,
    data: PathBuf,
    name: &str,
    certs: Option<&std::path::Path>,
) -> RunningNode {
    on_cpus(cpus, || {
        common::start_node_secured(runtime, data, name, certs)
    })
}

/// Whether a [`Cluster`] runs as nodes start by default or as the secure demo runs them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Security {
    /// Plain HTTP, no authentication.
    Off,
    /// TLS on both nodes (certificates from `tandem certs`), security on: the clients send
    /// `elastic`'s password, the follower a cross-cluster API key from its keystore.
    On,
}

impl Cluster {
    /// Starts both nodes and connects the follower to the leader through `_cluster/settings`.
    fn start(placement: Placement) -> Cluster {
        Cluster::start_with(placement, Security::Off)
    }

    /// [`Cluster::start`], in the given security set-up.
    fn start_with(placement: Placement, security: Security) -> Cluster {
        let data = temp_dir();
        let certs = (security == Security::On).then(|| common::make_certs(data.path()));
        let (leader_cpus, follower_cpus) = (placement.cpus("leader"), placement.cpus("follower"));
        let (leader_runtime, follower_runtime) = (runtime(leader_cpus), runtime(follower_cpus));
        let leader = start_node(
            &leader_runtime,
            leader_cpus,
            data.path().join("leader"),
            "leader",
            certs.as_deref(),
        );
        let follower = start_node(
            &follower_runtime,
            follower_cpus,
            data.path().join("follower"),
            "follower",
            certs.as_deref(),
        );
        let rest = |node: &RunningNode| match &certs {
            None => Rest::new(node.url()),
            Some(certs) => Rest::secured(node.url(), certs, &common::elastic_password(node)),
        };
        let (on_leader, on_follower) = (rest(&leader), rest(&follower));
        let cluster = Cluster {
            _data: data,
            leader_runtime,
            follower_runtime,
            // The clients go with the leader: the same core with a follower and without.
            client_runtime: runtime(leader_cpus),
            follower_cpus,
            on_leader,
            on_follower,
            leader,
            follower,
            last_busy: parking_lot::Mutex::new(Vec::new()),
        };
        if security == Security::On {
            // As the secure demo: a cross-cluster API key of the leader in the follower's
            // keystore.
            let key = cluster.rest(cluster.on_leader.post(
                "/_security/cross_cluster/api_key",
                json!({"name": "bench", "access": {"replication": [{"names": ["*"]}]}}),
            ));
            let encoded = key["encoded"].as_str().expect("an encoded key");
            tandem_node::security::keystore::Keystore::open(
                tandem_engine::storage::real(),
                &cluster.follower.node.config.data,
            )
            .and_then(|keystore| {
                keystore.add(&format!("cluster.remote.{REMOTE}.credentials"), encoded)
            })
            .expect("the follower's keystore");
            cluster.rest(
                cluster
                    .on_follower
                    .post("/_nodes/reload_secure_settings", json!({})),
            );
        }
        let seeds = json!([cluster.leader.address.to_string()]);
        cluster.rest(cluster.on_follower.put(
            "/_cluster/settings",
            json!({"persistent": {"cluster": {"remote": {REMOTE: {"seeds": seeds}}}}}),
        ));
        cluster
    }

    /// Runs REST calls (and the tasks they spawn) on the clients' runtime.
    fn rest<T>(&self, calls: impl std::future::Future<Output = T>) -> T {
        self.client_runtime.block_on(calls)
    }

    fn leader_index(&self, name: &str) -> Arc<Index> {
        self.leader.node.indices.get(name).expect("a leader index")
    }

    fn follower_index(&self, name: &str) -> Arc<Index> {
        self.follower
            .node
            .indices
            .get(name)
            .expect("a follower index")
    }

    /// Creates a one-shard `server-metrics` index on the leader, durable per request.
    fn create_leader(&self, name: &str) {
        self.create_index(&self.on_leader, name);
    }

    /// Creates a one-shard `server-metrics` index, durable per request, on the node of `rest`.
    fn create_index(&self, rest: &Rest, name: &str) {
        self.rest(rest.put(
            &format!("/{name}"),
            json!({
                "settings": {"index": {"number_of_shards": 1, "translog.durability": "request"}},
                "mappings": mappings_json(),
            }),
        ));
    }

    /// Creates the leader index `name` and a follower `copy` of it, then pauses the follower:
    /// its lease keeps the leader's history, and nothing reads it.
    fn follow_paused(&self, copy: &str, name: &str) {
        self.create_leader(name);
        self.follow(copy, name);
        self.rest(
            self.on_follower
                .post(&format!("/{copy}/_ccr/pause_follow"), json!({})),
        );
    }

    /// Follows `leader_index` as `follower_index`; returns once it is recovered and following.
    fn follow(&self, follower_index: &str, leader_index: &str) -> Duration {
        let started = Instant::now();
        let answer = self.rest(self.on_follower.put(
            &format!("/{follower_index}/_ccr/follow?wait_for_active_shards=1"),
            json!({"remote_cluster": REMOTE, "leader_index": leader_index}),
        ));
        let elapsed = started.elapsed();
        assert_eq!(answer["index_following_started"], true, "{answer}");
        elapsed
    }

    /// Waits until the follower's global checkpoint reaches the leader's as it is now; returns
    /// how long that took.
    fn wait_caught_up(&self, leader_index: &str, follower_index: &str) -> Duration {
        let started = Instant::now();
        let target = self.leader_index(leader_index).shards()[0].global_checkpoint();
        let follower = self.follower_index(follower_index);
        while follower.shards()[0].global_checkpoint() < target {
            assert!(
                started.elapsed() < CATCH_UP_WITHIN,
                "[{follower_index}] did not catch up with [{leader_index}] within {CATCH_UP_WITHIN:?}"
            );
            std::thread::sleep(SAMPLE_EVERY);
        }
        started.elapsed()
    }

    /// Deletes a follower index (its task stops) and its leader index.
    fn delete(&self, follower_index: Option<&str>, leader_index: &str) {
        if let Some(follower_index) = follower_index {
            self.rest(self.on_follower.delete(&format!("/{follower_index}")));
        }
        self.rest(self.on_leader.delete(&format!("/{leader_index}")));
    }

    /// Every `_bulk` body, from `WRITERS` concurrent clients, then a `_refresh`; returns the
    /// elapsed time.
    fn ingest(&self, index: &str, bulks: Vec<Vec<Vec<u8>>>) -> Duration {
        self.ingest_mirrored(index, bulks, None)
    }

    /// [`Cluster::ingest`]; with `mirror`, each client has a twin thread placed as the follower
    /// node, which writes the same bulks (given as engine requests) in-process into the index
    /// `mirror` as the client's are acknowledged: the follower's work of parsing and indexing
    /// every document, without replication. Untimed: the ingest returns once the leader has
    /// indexed everything; the twins finish before this returns.
    fn ingest_mirrored(
        &self,
        index: &str,
        bulks: Vec<Vec<Vec<u8>>>,
        mirror: Option<(&Index, Vec<Vec<Vec<WriteRequest>>>)>,
    ) -> Duration {
        std::thread::scope(|scope| {
            let twins = mirror
                .map(|(neighbour, twin_bulks)| {
                    spawn_twins(scope, neighbour, twin_bulks, self.follower_cpus)
                })
                .unwrap_or_default();
            let mut twins = twins.into_iter();
            self.rest(async {
                let (started, times) = (Instant::now(), CoreTimes::now());
                let writers: Vec<_> = bulks
                    .into_iter()
                    .map(|bodies| {
                        let (rest, index) = (self.on_leader.clone(), index.to_string());
                        let twin = twins.next();
                        tokio::spawn(async move {
                            for body in bodies {
                                rest.bulk(&index, body).await;
                                if let Some(twin) = &twin {
                                    // A twin stops early only by panicking, which the scope
                                    // reports.
                                    let _ = twin.send(());
                                }
                            }
                        })
                    })
                    .collect();
                for writer in writers {
                    writer.await.expect("a bulk client");
                }
                // Until indexed: tantivy indexes after the acknowledgement (up to the engine's
                // queue bound), so a run this short timed by its acknowledgements alone would
                // time a burst that indexing does not sustain.
                self.on_leader
                    .post(&format!("/{index}/_refresh"), json!({}))
                    .await;
                *self.last_busy.lock() = CoreTimes::busy_since(&times);
                started.elapsed()
            })
        })
    }

    /// Stops the follower, then the leader.
    fn stop(self) {
        self.follower_runtime.block_on(self.follower.stop());
        self.leader_runtime.block_on(self.leader.stop());
    }
}

impl IngestFigures {
    /// Per kind of run, the median busy fraction of each core, as `alone: core 0 93%, ...`.
    fn median_busy(&self) -> String {
        let mut kinds: Vec<IngestRun> = Vec::new();
        for (kind, _) in &self.busy {
            if !kinds.contains(kind) {
                kinds.push(*kind);
            }
        }
        kinds
            .iter()
            .map(|kind| {
                let runs: Vec<Vec<f64>> = self
                    .busy
                    .iter()
                    .filter(|(of, _)| of == kind)
                    .map(|(_, busy)| busy.clone())
                    .collect();
                let medians = median_busy(&runs);
                format!(
                    "{} {}",
                    format!("{kind:?}").to_lowercase(),
                    format_busy(&medians)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The per-run figures of the ingest rounds.
#[derive(Default)]
struct IngestFigures {
    /// `leader_alone` docs/s.
    alone: Vec<f64>,
    /// `leader_followed` docs/s.
    followed: Vec<f64>,
    /// After a `leader_followed` ingest, how long until the follower had caught up.
    caught_up_after: Vec<f64>,
    /// `follower_apply` docs/s.
    applied: Vec<f64>,
    /// `leader_retained` docs/s.
    retained: Vec<f64>,
    /// `leader_neighboured` docs/s.
    neighboured: Vec<f64>,
    /// How busy each core was during each run's timed ingest.
    busy: Vec<(IngestRun, Vec<f64>)>,
}

/// `leader_alone`: the ingest into a fresh index nobody follows.
fn leader_alone(cluster: &Cluster, workload: &Workload, name: &str) -> Duration {
    cluster.create_leader(name);
    let elapsed = cluster.ingest(name, workload.ndjson_bulks(BULK_SIZE));
    cluster.delete(None, name);
    elapsed
}

/// `leader_neighboured`: the ingest with no follower, while the follower node indexes the
/// same bulks as they are acknowledged into an index of its own (in-process, from threads on
/// its cores, as a follower's apply writes through the engine, not REST): the load a
/// follower puts on its cores (and on what they share with the leader's, the
/// memory caches above all), without replication. On one machine, `leader_followed` against
/// this is what being followed costs the leader itself (serving reads, retention).
fn leader_neighboured(cluster: &Cluster, workload: &Workload, name: &str) -> Duration {
    let neighbour = format!("{name}-neighbour");
    cluster.create_leader(name);
    cluster.create_index(&cluster.on_follower, &neighbour);
    let neighbour_index = cluster.follower_index(&neighbour);
    let elapsed = cluster.ingest_mirrored(
        name,
        workload.ndjson_bulks(BULK_SIZE),
        Some((&neighbour_index, workload.bulks(BULK_SIZE))),
    );
    cluster.rest(cluster.on_follower.delete(&format!("/{neighbour}")));
    cluster.delete(None, name);
    elapsed
}

/// `leader_retained`: the ingest into an index whose follower is paused: its retention lease
/// keeps the history (as while followed), but nobody reads. Against `leader_alone` and
/// `leader_followed` it splits the cost of being followed into retention and serving reads.
fn leader_retained(cluster: &Cluster, workload: &Workload, name: &str) -> Duration {
    let copy = format!("{name}-copy");
    cluster.follow_paused(&copy, name);
    let elapsed = cluster.ingest(name, workload.ndjson_bulks(BULK_SIZE));
    cluster.delete(Some(&copy), name);
    elapsed
}

/// `leader_followed`: the ingest while a follower replicates; also returns how long the
/// follower took to catch up once the last bulk was acknowledged, and how many shard changes
/// requests the follower's reads took (its `successful_read_requests`).
fn leader_followed(
    cluster: &Cluster,
    workload: &Workload,
    name: &str,
) -> (Duration, Duration, u64) {
    let copy = format!("{name}-copy");
    cluster.create_leader(name);
    cluster.follow(&copy, name);
    let elapsed = cluster.ingest(name, workload.ndjson_bulks(BULK_SIZE));
    let caught_up = cluster.wait_caught_up(name, &copy);
    let stats = cluster.rest(cluster.on_follower.get(&format!("/{copy}/_ccr/stats")));
    let reads = stats["indices"][0]["shards"]
        .as_array()
        .map_or(0, |shards| {
            shards
                .iter()
                .filter_map(|shard| shard["successful_read_requests"].as_u64())
                .sum()
        });
    cluster.delete(Some(&copy), name);
    (elapsed, caught_up, reads)
}

/// `follower_apply`: a paused follower resumes behind a fully loaded leader; returns the time
/// from `resume_follow` until it has caught up.
fn follower_apply(cluster: &Cluster, workload: &Workload, name: &str) -> Duration {
    let copy = format!("{name}-copy");
    cluster.follow_paused(&copy, name);
    // Ends with a refresh: the leader's indexing is done and does not compete with the
    // follower's apply.
    cluster.ingest(name, workload.ndjson_bulks(BULK_SIZE));
    let started = Instant::now();
    cluster.rest(
        cluster
            .on_follower
            .post(&format!("/{copy}/_ccr/resume_follow"), json!({})),
    );
    cluster.wait_caught_up(name, &copy);
    // As the leader's ingest: until indexed.
    cluster.rest(
        cluster
            .on_follower
            .post(&format!("/{copy}/_refresh"), json!({})),
    );
    let elapsed = started.elapsed();
    cluster.delete(Some(&copy), name);
    elapsed
}

/// An ingest run of a round.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum IngestRun {
    Alone,
    Followed,
    Apply,
    Retained,
    Neighboured,
}

/// One round of `runs`, in an order rotating with `round` so that the noise of this shared
/// machine spreads over all of them; `label` names the round and prefixes the index names.
/// Returns the sum of their timed parts.
fn ingest_round(
    cluster: &Cluster,
    workload: &Workload,
    (label, runs): (&str, &[IngestRun]),
    round: usize,
    figures: &mut IngestFigures,
) -> Duration {
    let docs = workload.total;
    let mut total = Duration::ZERO;
    let mut line = format!("node_http: {label}round {round}:");
    for step in 0..runs.len() {
        let elapsed = match runs[(round + step) % runs.len()] {
            IngestRun::Alone => {
                let elapsed = leader_alone(cluster, workload, &format!("{label}alone-{round}"));
                figures.alone.push(per_second(docs, elapsed));
                line += &format!(" alone {:.0} docs/s;", per_second(docs, elapsed));
                elapsed
            }
            IngestRun::Followed => {
                let (elapsed, caught_up, reads) =
                    leader_followed(cluster, workload, &format!("{label}followed-{round}"));
                figures.followed.push(per_second(docs, elapsed));
                figures
                    .caught_up_after
                    .push(caught_up.as_secs_f64() * 1000.0);
                line += &format!(
                    " followed {:.0} docs/s (caught up {caught_up:.0?} after; {reads} reads, \
                     {:.0}/s);",
                    per_second(docs, elapsed),
                    reads as f64 / elapsed.as_secs_f64()
                );
                elapsed
            }
            IngestRun::Retained => {
                let elapsed =
                    leader_retained(cluster, workload, &format!("{label}retained-{round}"));
                figures.retained.push(per_second(docs, elapsed));
                line += &format!(" retained {:.0} docs/s;", per_second(docs, elapsed));
                elapsed
            }
            IngestRun::Neighboured => {
                let elapsed =
                    leader_neighboured(cluster, workload, &format!("{label}neighboured-{round}"));
                figures.neighboured.push(per_second(docs, elapsed));
                line += &format!(" neighboured {:.0} docs/s;", per_second(docs, elapsed));
                elapsed
            }
            IngestRun::Apply => {
                let elapsed = follower_apply(cluster, workload, &format!("{label}apply-{round}"));
                figures.applied.push(per_second(docs, elapsed));
                line += &format!(" apply {:.0} docs/s;", per_second(docs, elapsed));
                elapsed
            }
        };
        let busy = cluster.last_busy.lock().clone();
        line += &format!(" [{}];", format_busy(&busy));
        figures.busy.push((runs[(round + step) % runs.len()], busy));
        total += elapsed;
    }
    eprintln!("{line}");
    total
}

/// The runs of an `ingest_round` round.
const SHARED_ROUND: (&str, &[IngestRun]) = (
    "",
    &[IngestRun::Alone, IngestRun::Followed, IngestRun::Apply],
);
/// The runs of an `ingest_round_pinned` round, on a [`Placement::Pinned`] cluster: the cost of
/// being followed when the follower has a core of its own.
const PINNED_ROUND: (&str, &[IngestRun]) = (
    "pinned-",
    &[
        IngestRun::Alone,
        IngestRun::Followed,
        IngestRun::Neighboured,
    ],
);

/// The runs of a pinned round: [`PINNED_ROUND`]'s unless `TANDEM_BENCH_HTTP_PINNED_RUNS` lists
/// others (comma-separated, of `alone`, `followed`, `retained`).
fn pinned_runs() -> Vec<IngestRun> {
    let Ok(list) = std::env::var("TANDEM_BENCH_HTTP_PINNED_RUNS") else {
        return PINNED_ROUND.1.to_vec();
    };
    list.split(',')
        .map(|run| match run.trim() {
            "alone" => IngestRun::Alone,
            "followed" => IngestRun::Followed,
            "retained" => IngestRun::Retained,
            "neighboured" => IngestRun::Neighboured,
            other => panic!("TANDEM_BENCH_HTTP_PINNED_RUNS: unknown run [{other}]"),
        })
        .collect()
}

/// What a paced run measured.
struct PacedRun {
    /// The lag of every acknowledged bulk, in milliseconds.
    lags_ms: Vec<f64>,
    /// The rate the leader sustained (below the pace when it could not keep up).
    achieved_docs_per_sec: f64,
}

/// The `lag` run: the leader index `name` paced at `rate` docs/s by `PACED_WRITERS` clients
/// while a follower replicates.
fn paced_lags(cluster: &Cluster, workload: &Workload, rate: f64, name: &'static str) -> PacedRun {
    let copy = format!("{name}-copy");
    cluster.create_leader(name);
    cluster.follow(&copy, name);
    let follower = cluster.follower_index(&copy);
    let epoch = Instant::now();
    let sampler = CheckpointSampler::start(epoch, SAMPLE_EVERY, move || {
        follower.shards()[0].global_checkpoint().0
    });
    let mut per_writer: Vec<Vec<Vec<u8>>> = vec![Vec::new(); PACED_WRITERS];
    for (i, body) in workload
        .ndjson_bulks(BULK_SIZE)
        .into_iter()
        .flatten()
        .enumerate()
    {
        per_writer[i % PACED_WRITERS].push(body);
    }
    let interval = Duration::from_secs_f64((BULK_SIZE * PACED_WRITERS) as f64 / rate);
    let acks: Vec<(i64, Duration)> = cluster.rest(async {
        let start = tokio::time::Instant::now();
        let writers: Vec<_> = per_writer
            .into_iter()
            .enumerate()
            .map(|(writer, bodies)| {
                let rest = cluster.on_leader.clone();
                // The clients are spread evenly over one interval.
                let first = start + interval.mul_f64(writer as f64 / PACED_WRITERS as f64);
                tokio::spawn(async move {
                    let mut acks = Vec::with_capacity(bodies.len());
                    for (i, body) in bodies.into_iter().enumerate() {
                        tokio::time::sleep_until(first + interval * i as u32).await;
                        let highest = rest.bulk(name, body).await;
                        acks.push((highest, epoch.elapsed()));
                    }
                    acks
                })
            })
            .collect();
        let mut acks = Vec::new();
        for writer in writers {
            acks.extend(writer.await.expect("a paced client"));
        }
        acks
    });
    let ingested = acks
        .iter()
        .map(|(_, acked)| *acked)
        .max()
        .unwrap_or_default();
    cluster.wait_caught_up(name, &copy);
    std::thread::sleep(SAMPLE_EVERY * 4);
    let lags = lags_ms(&acks, &sampler.stop());
    cluster.delete(Some(&copy), name);
    PacedRun {
        lags_ms: lags,
        achieved_docs_per_sec: per_second(workload.total, ingested),
    }
}

fn print_lags(load: &str, rate: f64, run: &PacedRun) {
    let lags = &run.lags_ms;
    eprintln!(
        "node_http: at {load} ({rate:.0} docs/s paced, {:.0} sustained, {PACED_WRITERS} clients) \
         lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} bulks (target p99 <= 50 ms)",
        run.achieved_docs_per_sec,
        percentile(lags, 50.0),
        percentile(lags, 99.0),
        percentile(lags, 100.0),
        lags.len()
    );
}

/// The recovery rounds' leader: its committed files, pinned so no merge removes them.
struct RecoveryLeader {
    /// The leader index's name.
    name: String,
    files: Vec<String>,
    total_bytes: u64,
    /// The leader shard's tantivy directory.
    dir: PathBuf,
    _pinned: Arc<PinnedCommit>,
}

/// Lifts the follower's recovery rate limit through `_cluster/settings`, creates the recovery
/// leader `name` through REST, fills it in-process until its commit holds `target_bytes`, and
/// flushes it through REST.
fn recovery_leader(cluster: &Cluster, name: &str, target_bytes: u64) -> RecoveryLeader {
    let mut recovery_settings = json!({
        "max_bytes_per_sec": std::env::var("TANDEM_BENCH_HTTP_RECOVERY_MAX_BYTES_PER_SEC")
            .unwrap_or_else(|_| RECOVERY_MAX_BYTES_PER_SEC.to_string())
    });
    if let Ok(chunks) = std::env::var("TANDEM_BENCH_HTTP_RECOVERY_CHUNKS") {
        recovery_settings["max_concurrent_file_chunks"] = json!(chunks);
    }
    cluster.rest(cluster.on_follower.put(
        "/_cluster/settings",
        json!({"persistent": {"ccr": {"indices": {"recovery": recovery_settings}}}}),
    ));
    let loaded = Instant::now();
    cluster.rest(cluster.on_leader.put(
        &format!("/{name}"),
        json!({"settings": blob_settings_json(), "mappings": blob_mappings_json()}),
    ));
    let index = cluster.leader_index(name);
    fill_shard_with_blobs(&index.shards()[0], target_bytes);
    cluster.rest(
        cluster
            .on_leader
            .post(&format!("/{name}/_flush"), json!({})),
    );
    let pinned = settled_commit(&index);
    let files: Vec<String> = pinned
        .files()
        .iter()
        .map(|file| file.info().name.clone())
        .collect();
    let leader = RecoveryLeader {
        name: name.to_string(),
        total_bytes: pinned.total_bytes(),
        dir: index.shards()[0].dir().join("index"),
        files,
        _pinned: pinned,
    };
    eprintln!(
        "node_http: recovery leader [{name}] of {:.0} MiB in {} files (loaded in {:.1?})",
        leader.total_bytes as f64 / MIB,
        leader.files.len(),
        loaded.elapsed()
    );
    leader
}

/// The leader shard's latest commit once background merges are over (no merge running and the
/// same files for `SETTLED_AFTER`), so that the follows copy the files `cp` copies and no merge
/// competes with the copies for the cores and the disk. (A merge of this index runs for many
/// seconds without changing the commit: waiting for an unchanged commit alone once let one
/// run through every round.)
fn settled_commit(index: &Index) -> Arc<PinnedCommit> {
    const SETTLED_AFTER: Duration = Duration::from_secs(3);
    const SETTLE_WITHIN: Duration = Duration::from_secs(900);
    let names = |pinned: &PinnedCommit| -> Vec<String> {
        pinned
            .files()
            .iter()
            .map(|file| file.info().name.clone())
            .collect()
    };
    let started = Instant::now();
    let shard = &index.shards()[0];
    let mut pinned = shard
        .pin_latest_commit()
        .expect("pinning the leader's commit");
    let mut unchanged_since = Instant::now();
    while unchanged_since.elapsed() < SETTLED_AFTER && started.elapsed() < SETTLE_WITHIN {
        std::thread::sleep(Duration::from_millis(250));
        let latest = shard
            .pin_latest_commit()
            .expect("pinning the leader's commit");
        if names(&latest) != names(&pinned) || shard.merging_segment_count() > 0 {
            pinned = latest;
            unchanged_since = Instant::now();
        }
    }
    pinned
}

/// Follows `leader` as `copy` with every dirty page written back first, then deletes the
/// copy; returns how long the follow took, the `index` section of the copy's `_recovery`, and
/// how busy each core was during the follow.
fn follow_recovery(
    cluster: &Cluster,
    leader: &RecoveryLeader,
    copy: &str,
) -> (Duration, serde_json::Value, Vec<f64>) {
    flush_dirty_pages();
    let cores = CoreTimes::now();
    let elapsed = cluster.follow(copy, &leader.name);
    let busy = CoreTimes::busy_since(&cores);
    let recovery = cluster.rest(cluster.on_follower.get(&format!("/{copy}/_recovery")));
    cluster.rest(cluster.on_follower.delete(&format!("/{copy}")));
    let index = recovery[copy]["shards"][0]["index"].clone();
    assert_eq!(
        index["size"]["total_in_bytes"], index["size"]["recovered_in_bytes"],
        "{index}"
    );
    (elapsed, index, busy)
}

/// What one recovery round measured.
#[derive(Default)]
struct RecoveryRound {
    cp_mib_per_sec: f64,
    follow_mib_per_sec: f64,
    /// How long the follow request took.
    follow_time: Duration,
}

/// One recovery round: `cp` + fsync and a follow of the recovery leader, in an order
/// alternating with `round`. Returns the rates in MiB/s of cp and of the follow, each over the
/// bytes it copied (a merge that commits meanwhile could give the follow other files than
/// `cp`'s: the rates stay comparable, and the round says so).
fn recovery_round(cluster: &Cluster, leader: &RecoveryLeader, round: usize) -> RecoveryRound {
    let mut figures = RecoveryRound::default();
    let mut line = format!("node_http: recovery round {round}:");
    for step in 0..2 {
        if (round + step).is_multiple_of(2) {
            let target = temp_dir();
            flush_dirty_pages();
            let elapsed = cp_and_fsync(&leader.dir, &leader.files, target.path());
            figures.cp_mib_per_sec = leader.total_bytes as f64 / MIB / elapsed.as_secs_f64();
            line += &format!(
                " cp+fsync {elapsed:.2?} ({:.0} MiB/s);",
                figures.cp_mib_per_sec
            );
        } else {
            let (follow_time, index, _) =
                follow_recovery(cluster, leader, &format!("recovery-copy-{round}"));
            figures.follow_time = follow_time;
            let bytes = index["size"]["recovered_in_bytes"]
                .as_u64()
                .expect("the recovered bytes");
            figures.follow_mib_per_sec = bytes as f64 / MIB / figures.follow_time.as_secs_f64();
            line += &format!(
                " follow {:.2?} ({:.0} MiB/s, throttled {} ms{});",
                figures.follow_time,
                figures.follow_mib_per_sec,
                index["target_throttle_time_in_millis"],
                if bytes == leader.total_bytes {
                    String::new()
                } else {
                    format!(", {bytes} bytes: the leader committed since the pin")
                }
            );
        }
    }
    eprintln!("{line}");
    figures
}

/// The leader index of the security rounds' recoveries, on both pairs.
const SECURITY_RECOVERY_LEADER: &str = "security-recovery-leader";

/// The per-round figures of the security rounds, per set-up.
#[derive(Default)]
struct SecurityFigures {
    /// `leader_alone` docs/s: plain, secure.
    ingest: (Vec<f64>, Vec<f64>),
    /// `follower_apply` docs/s: plain, secure.
    apply: (Vec<f64>, Vec<f64>),
    /// Recovery (a follow of the security recovery leader) MiB/s: plain, secure.
    recovery: (Vec<f64>, Vec<f64>),
}

impl SecurityFigures {
    /// Rounds run so far (every round recovers; a round may run one pair only).
    fn rounds(&self) -> usize {
        self.recovery.0.len().max(self.recovery.1.len())
    }
}

/// A pair of nodes of the security rounds, with its recovery leader.
struct SecurityPair {
    cluster: Cluster,
    leader: RecoveryLeader,
}

/// One security round: `leader_alone`, `follower_apply` and a recovery, each on the plain pair
/// and on the secure pair back to back, the pair going first alternating with `round`.
/// Returns the secure pair's timed parts.
fn security_round(
    plain: &SecurityPair,
    secure: &SecurityPair,
    workload: &Workload,
    round: usize,
    figures: &mut SecurityFigures,
) -> Duration {
    let docs = workload.total;
    let recovery_only = std::env::var_os("TANDEM_BENCH_HTTP_SECURITY_RECOVERY_ONLY").is_some();
    let mut secure_time = Duration::ZERO;
    let mut line = format!("node_http: security round {round}:");
    let order = if round.is_multiple_of(2) {
        [(false, plain), (true, secure)]
    } else {
        [(true, secure), (false, plain)]
    };
    let only = std::env::var("TANDEM_BENCH_HTTP_SECURITY_PAIR").ok();
    for (is_secure, pair) in order {
        let label = if is_secure { "secure" } else { "plain" };
        if only.as_deref().is_some_and(|only| only != label) {
            continue;
        }
        let cluster = &pair.cluster;
        let (ingest, apply) = if recovery_only {
            (Duration::ZERO, Duration::ZERO)
        } else {
            (
                leader_alone(cluster, workload, &format!("{label}-alone-{round}")),
                follower_apply(cluster, workload, &format!("{label}-apply-{round}")),
            )
        };
        let (follow, index, recovery_busy) =
            follow_recovery(cluster, &pair.leader, &format!("{label}-recovery-{round}"));
        let bytes = index["size"]["recovered_in_bytes"]
            .as_u64()
            .expect("the recovered bytes");
        let rates = (
            per_second(docs, ingest),
            per_second(docs, apply),
            bytes as f64 / MIB / follow.as_secs_f64(),
        );
        if !recovery_only {
            line += &format!(
                " {label}: ingest {:.0} docs/s, apply {:.0} docs/s,",
                rates.0, rates.1
            );
        } else {
            line += &format!(" {label}:");
        }
        line += &format!(
            " recovery {:.0} MiB/s [{}];",
            rates.2,
            format_busy(&recovery_busy)
        );
        let side = |pair: &mut (Vec<f64>, Vec<f64>), rate: f64| {
            if is_secure {
                pair.1.push(rate)
            } else {
                pair.0.push(rate)
            }
        };
        if !recovery_only {
            side(&mut figures.ingest, rates.0);
            side(&mut figures.apply, rates.1);
        }
        side(&mut figures.recovery, rates.2);
        if is_secure {
            secure_time = ingest + apply + follow;
        }
    }
    eprintln!("{line}");
    secure_time
}

fn node_http(c: &mut Criterion) {
    init_tracing_from_env();
    let docs = env_usize("TANDEM_BENCH_HTTP_DOCS", 100_000);
    if let Some(rate) = std::env::var("TANDEM_BENCH_HTTP_LAG_ONLY")
        .ok()
        .and_then(|rate| rate.parse::<f64>().ok())
    {
        // Profiling aid: only the lag run, paced at the given rate.
        let workload = Workload::generate(docs, 0.3, WRITERS, SEED + 11);
        let cluster = Cluster::start(Placement::Shared);
        let run = paced_lags(&cluster, &workload, rate, "lag");
        print_lags("the given rate", rate, &run);
        cluster.stop();
        return;
    }
    let recovery_bytes = env_usize("TANDEM_BENCH_HTTP_RECOVERY_BYTES", 1 << 30) as u64;
    let workload = Workload::generate(docs, 0.3, WRITERS, SEED + 11);
    let cluster = Cluster::start(Placement::Shared);
    eprintln!(
        "node_http: leader {} and follower {} over loopback HTTP; {docs} docs of {:.0} bytes \
         (30% updates) in bulks of {BULK_SIZE} from {WRITERS} clients, request durability",
        cluster.leader.url(),
        cluster.follower.url(),
        workload.average_source_bytes()
    );
    let mut group = c.benchmark_group("node_http");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(1));
    let mut figures = IngestFigures::default();
    let mut round = 0;
    group.bench_function("ingest_round", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += ingest_round(&cluster, &workload, SHARED_ROUND, round, &mut figures);
                round += 1;
            }
            total
        })
    });
    let mut pinned = None;
    let mut pinned_figures = IngestFigures::default();
    let mut pinned_round_count = 0;
    let pinned_runs = pinned_runs();
    let pinned_round = (PINNED_ROUND.0, &pinned_runs[..]);
    // The pinned ratio is of two nearly equal rates, on cores whose speed drifts by tens of
    // percent: more rounds.
    group.sample_size(env_usize("TANDEM_BENCH_PINNED_ROUNDS", PINNED_ROUNDS));
    let mut cache_slowdown = None;
    group.bench_function("ingest_round_pinned", |b| {
        b.iter_custom(|iters| {
            cache_slowdown.get_or_insert_with(shared_cache_slowdown);
            let cluster = pinned.get_or_insert_with(|| Cluster::start(Placement::Pinned));
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += ingest_round(
                    cluster,
                    &workload,
                    pinned_round,
                    pinned_round_count,
                    &mut pinned_figures,
                );
                pinned_round_count += 1;
            }
            total
        })
    });
    // The lag at half the pinned leader's rate, with the follower on a core of its own.
    let pinned_lag = pinned.take().map(|cluster| {
        let rate = median(&pinned_figures.alone) / 2.0;
        if pinned_figures.alone.is_empty() {
            cluster.stop();
            return None;
        }
        let run = paced_lags(&cluster, &workload, rate, "pinned-lag");
        cluster.stop();
        Some((rate, run))
    });
    group.sample_size(10);
    let mut leader = None;
    let (mut cp_rates, mut follow_rates) = (Vec::new(), Vec::new());
    group.bench_function("recovery", |b| {
        b.iter_custom(|iters| {
            let leader = leader
                .get_or_insert_with(|| recovery_leader(&cluster, RECOVERY_LEADER, recovery_bytes));
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let round = recovery_round(&cluster, leader, cp_rates.len());
                cp_rates.push(round.cp_mib_per_sec);
                follow_rates.push(round.follow_mib_per_sec);
                total += round.follow_time;
            }
            total
        })
    });
    // TLS and security against none: two fresh pairs of nodes placed as on two machines, one
    // as the secure demo runs them, each with a recovery leader of the same size.
    let mut security_pairs = None;
    let mut security_figures = SecurityFigures::default();
    group.bench_function("security_round", |b| {
        b.iter_custom(|iters| {
            let (plain, secure) = security_pairs.get_or_insert_with(|| {
                let bytes = env_usize("TANDEM_BENCH_HTTP_SECURITY_RECOVERY_BYTES", 256 << 20);
                let secure = Cluster::start_with(Placement::Pinned, Security::On);
                let leader = recovery_leader(&secure, SECURITY_RECOVERY_LEADER, bytes as u64);
                let secure = SecurityPair {
                    cluster: secure,
                    leader,
                };
                let plain = Cluster::start(Placement::Pinned);
                let plain = SecurityPair {
                    leader: recovery_leader(&plain, SECURITY_RECOVERY_LEADER, bytes as u64),
                    cluster: plain,
                };
                (plain, secure)
            });
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let round = security_figures.rounds();
                total += security_round(plain, secure, &workload, round, &mut security_figures);
            }
            total
        })
    });
    group.finish();
    if let Some((plain, secure)) = security_pairs.take() {
        let ratio = |(plain, secure): &(Vec<f64>, Vec<f64>)| {
            if plain.is_empty() || secure.is_empty() {
                return format!(
                    "plain {:.0}, secure {:.0} (a pair not run)",
                    median(plain),
                    median(secure)
                );
            }
            format!(
                "{:.0} vs {:.0}, ratio {:.3} (per-round {:.3})",
                median(secure),
                median(plain),
                median(secure) / median(plain),
                median_paired_ratio(plain, secure)
            )
        };
        eprintln!(
            "node_http: TLS and security (Basic for the clients, a cross-cluster API key for \
             the follower) against none, medians of {} rounds: ingest docs/s {}; follower apply \
             docs/s {}; recovery of {:.0} MiB, MiB/s {} (targets >= 0.90)",
            security_figures.rounds(),
            ratio(&security_figures.ingest),
            ratio(&security_figures.apply),
            secure.leader.total_bytes as f64 / MIB,
            ratio(&security_figures.recovery),
        );
        secure.cluster.stop();
        drop(plain.leader);
        plain.cluster.stop();
    }
    if !pinned_figures.alone.is_empty() && !pinned_figures.followed.is_empty() {
        let (alone, followed) = (
            median(&pinned_figures.alone),
            median(&pinned_figures.followed),
        );
        eprintln!(
            "node_http: pinned (leader and clients on core 0, follower on core 1), medians of {} \
             rounds: leader alone {alone:.0} docs/s; followed {followed:.0} docs/s, ratio {:.3}, \
             median of the per-round ratios {:.3} (the target on two machines), follower caught \
             up {:.1} ms \
             after the last bulk",
            pinned_figures.alone.len(),
            followed / alone,
            median_paired_ratio(&pinned_figures.alone, &pinned_figures.followed),
            median(&pinned_figures.caught_up_after),
        );
        if let Some(Some(slowdown)) = cache_slowdown {
            eprintln!(
                "node_http: on this machine a memory-bound loop on core 0 takes {slowdown:.2}x \
                 as long while core 1 runs one too (shared caches)"
            );
        }
        eprintln!(
            "node_http: pinned, median busy cores during the timed ingests: {}",
            pinned_figures.median_busy()
        );
        if !pinned_figures.neighboured.is_empty() {
            let neighboured = median(&pinned_figures.neighboured);
            eprintln!(
                "node_http: pinned, neighboured (no follower; the follower node indexes the same \
                 bulks into an index of its own) {neighboured:.0} docs/s: ratio to alone {:.3} \
                 (per-round {:.3}); followed to neighboured {:.3} (per-round {:.3}; target >= \
                 0.97)",
                neighboured / alone,
                median_paired_ratio(&pinned_figures.alone, &pinned_figures.neighboured),
                followed / neighboured,
                median_paired_ratio(&pinned_figures.neighboured, &pinned_figures.followed),
            );
        }
        if !pinned_figures.retained.is_empty() {
            let retained = median(&pinned_figures.retained);
            eprintln!(
                "node_http: pinned, retained (a paused follower's lease, no reads) {retained:.0} \
                 docs/s: ratio to alone {:.3} (per-round {:.3}), followed to retained {:.3} \
                 (per-round {:.3})",
                retained / alone,
                median_paired_ratio(&pinned_figures.alone, &pinned_figures.retained),
                followed / retained,
                median_paired_ratio(&pinned_figures.retained, &pinned_figures.followed),
            );
        }
    }
    if let Some(Some((rate, run))) = &pinned_lag {
        print_lags("half the pinned leader's rate", *rate, run);
    }
    let recovered_bytes = leader.as_ref().map(|leader| leader.total_bytes);
    if leader.take().is_some() {
        cluster.rest(cluster.on_leader.delete(&format!("/{RECOVERY_LEADER}")));
    }

    if !figures.alone.is_empty() {
        let max_rate = median(&figures.alone);
        let (followed, applied) = (median(&figures.followed), median(&figures.applied));
        let half_load = paced_lags(&cluster, &workload, max_rate / 2.0, "lag");
        // Half of what the leader sustains while followed: the lag without overload.
        let half_followed = paced_lags(&cluster, &workload, followed / 2.0, "lag-followed");
        eprintln!(
            "node_http: {docs} docs, medians of {} rounds: leader alone {max_rate:.0} docs/s; \
             followed {followed:.0} docs/s, ratio {:.3} (on shared cores; see the README), \
             follower caught up \
             {:.1} ms after the last bulk; follower apply {applied:.0} docs/s, ratio {:.3} \
             (target >= 0.90)",
            figures.alone.len(),
            followed / max_rate,
            median(&figures.caught_up_after),
            applied / max_rate,
        );
        print_lags("half load", max_rate / 2.0, &half_load);
        print_lags("half the followed rate", followed / 2.0, &half_followed);
    }
    if let Some(bytes) = recovered_bytes {
        let (cp, follow) = (median(&cp_rates), median(&follow_rates));
        let best = |rates: &[f64]| rates.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "node_http: recovery of a {:.0} MiB shard over HTTP, medians of {} rounds: follow \
             {follow:.0} MiB/s vs cp+fsync {cp:.0} MiB/s, ratio {:.3} (best of each: {:.3}; \
             target >= 0.90)",
            bytes as f64 / MIB,
            follow_rates.len(),
            follow / cp,
            best(&follow_rates) / best(&cp_rates),
        );
    }
    cluster.stop();
}

criterion_group!(benches, node_http);
criterion_main!(benches);
