//! Replication throughput, leader and follower in this process over the in-process leader
//! client, one shard each, `TANDEM_BENCH_REPLICATION_DOCS` documents (default 100,000) written
//! by 16 threads in bulks of 100 (request durability). An ingest is timed until its last write
//! is acknowledged and a refresh has made everything searchable (see [`ingest`]), and an apply
//! until the follower has caught up and refreshed:
//!
//! - `leader_alone`: leader ingest with no follower;
//! - `leader_followed`: the same ingest while a shard follow task replicates it (the ratio to
//!   `leader_alone` is the cost of being followed; target >= 0.97);
//! - `follower_apply`: a follower started on a fully loaded leader at rest (refreshed, its
//!   indexing threads and merges done, so the follower does not compete with the leader's
//!   own indexing of what it acknowledged), timed until it has caught up and refreshed; its
//!   apply rate against the leader's ingest of the same round, which is timed as
//!   `leader_alone`'s (median of the per-round ratios over 20 rounds, or
//!   `TANDEM_BENCH_APPLY_ROUNDS`; target >= 0.90);
//! - `lag`: the leader paced at half of `leader_alone`'s rate while a follower replicates; for
//!   every bulk the time from its acknowledgement on the leader to the moment the follower's
//!   global checkpoint covers it, reported as p50 and p99 over every sample's bulks (target
//!   p99 <= 50 ms). Run alone, it first measures `leader_alone`'s rate in three rounds.
//!
//! - `pinned`: `leader_alone` and `leader_followed` again, alternating, placed as on two
//!   machines: the leader's threads (its writers, and tantivy's indexing and merge threads,
//!   which inherit their creator's CPUs) on core 0, the follower's and its task's runtime on
//!   core 1. The ratio then is what being followed costs the leader, not the follower's
//!   indexing competing for the same cores. With the in-process client, the leader's side of
//!   a changes request (reading the tail) runs on the follower's runtime, so `node_http`'s
//!   pinned rounds (over HTTP, with encoding and compression on the leader) are the stricter
//!   figure.
//!   Each round also has a `neighboured` run: no follower, while core 1 indexes the same
//!   bulks into an index of its own as the leader acknowledges them. The two cores share
//!   this machine's caches and memory bandwidth (the bench measures it: a memory-bound loop on
//!   core 0 ran 1.0 to 3.5 times slower while core 1 ran one too, in one day's runs), so a follower slows
//!   its leader here in a way two machines would not: `leader_followed` against
//!   `neighboured` (the target's figure) is the cost of being followed with that taken out.
//!   Each run prints how busy each core was, to show the neighbour loads its core as the
//!   follower does.
//! - `pinned_lag`: `lag` placed as `pinned`, paced at half of the pinned leader's rate.
//!
//! Apart from `pinned`, both engines share this machine's two cores, so a follower's indexing
//! competes with the leader's: `leader_followed` measures that contention as much as the
//! protocol.
//!
//! Run: `cargo bench -p tandem-benches --bench replication_throughput`.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// The allocator of the `tandem` binary, so the engines here run as the node's do.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use parking_lot::Mutex;
use tandem_benches::{
    env_usize, format_busy, init_tracing_from_env, lags_ms, mappings, median, median_busy,
    median_paired_ratio, on_cpus, per_second, percentile, perf_record, pin_current_thread,
    runtime_on_cpus, settle_writeback, shared_cache_slowdown, spawn_twins, temp_dir,
    CheckpointSampler, CoreTimes, Workload, SEED,
};
use tandem_engine::index::{Index, IndexSettings};
use tandem_engine::shard::WriteRequest;
use tandem_engine::SeqNo;
use tandem_recovery::{InProcessLeaderClient, RecoverySource, RecoverySourceSettings, ShardId};
use tandem_replication::params::FollowParameters;
use tandem_replication::task::{ShardFollowTask, ShardFollowTaskConfig};

/// Concurrent leader client threads.
const WRITERS: usize = 16;
/// Index requests per bulk.
const BULK_SIZE: usize = 100;
/// How often the lag sampler looks at the follower's checkpoint.
const SAMPLE_EVERY: Duration = Duration::from_micros(200);
/// Rounds (criterion samples) of every run but `follower_apply` and `pinned`.
const ROUNDS: usize = 10;
/// `pinned`: rounds (criterion samples) of alone, followed and neighboured runs, unless
/// `TANDEM_BENCH_PINNED_ROUNDS` says.
const PINNED_ROUNDS: usize = 30;
/// `follower_apply`: rounds (criterion samples) of a leader ingest paired with a follower's
/// apply, unless `TANDEM_BENCH_APPLY_ROUNDS` says. On this shared host one round's ratio falls
/// anywhere in about 0.76..1.15, and the median of ten rounds moved by up to 0.05 from run to
/// run; twenty rounds narrow that by about 1/sqrt(2).
const APPLY_ROUNDS: usize = 20;
/// `pinned`: the leader's threads and its clients.
const LEADER_CPUS: [usize; 1] = [0];
/// `pinned`: the follower's threads and its task's runtime.
const FOLLOWER_CPUS: [usize; 1] = [1];

struct Pair {
    _dir: tempfile::TempDir,
    leader: Arc<Index>,
    follower: Arc<Index>,
    client: Arc<InProcessLeaderClient>,
}

fn pair() -> Pair {
    pair_on(false)
}

/// A leader and a follower index; with `pinned`, the leader's threads on core 0 and the
/// follower's on core 1.
fn pair_on(pinned: bool) -> Pair {
    let (leader_cpus, follower_cpus) = if pinned {
        (Some(&LEADER_CPUS[..]), Some(&FOLLOWER_CPUS[..]))
    } else {
        (None, None)
    };
    let dir = temp_dir();
    let settings = IndexSettings::default();
    let leader = Arc::new(on_cpus(leader_cpus, || {
        Index::create_with(
            &tandem_engine::storage::real(),
            &dir.path().join("leader"),
            "leader",
            "leader-uuid",
            settings.clone(),
            mappings(),
            false,
        )
        .expect("creating the leader")
    }));
    let follower = follower_index(&dir.path().join("follower"), follower_cpus);
    // The follower starts from operation 0: the leader keeps all of its history for it.
    leader.shards()[0]
        .add_retention_lease("bench-follower", SeqNo(0), "bench")
        .expect("adding the lease");
    let client = InProcessLeaderClient::new(RecoverySource::new(RecoverySourceSettings::default()));
    client.register_index(leader.clone());
    Pair {
        _dir: dir,
        leader,
        follower,
        client: Arc::new(client),
    }
}

/// An empty follower index in `dir`, its threads on `cpus` if given.
fn follower_index(dir: &std::path::Path, cpus: Option<&[usize]>) -> Arc<Index> {
    Arc::new(on_cpus(cpus, || {
        Index::create_with(
            &tandem_engine::storage::real(),
            dir,
            "follower",
            "follower-uuid",
            IndexSettings::default(),
            mappings(),
            true,
        )
        .expect("creating the follower")
    }))
}

fn follow(pair: &Pair) -> ShardFollowTask {
    ShardFollowTask::start(
        pair.client.clone(),
        ShardFollowTaskConfig {
            remote_cluster: "leader".to_string(),
            leader_shard: ShardId::new("leader", 0),
            follower_index: pair.follower.clone(),
            parameters: FollowParameters::default().resolve().expect("defaults"),
            leader_history_uuid: None,
            lease: None,
            follower_mapping_version: pair.leader.metadata().mapping_version,
            follower_settings_version: pair.leader.metadata().settings_version,
            lag_clock: Default::default(),
        },
    )
}

/// Ingests every bulk from `WRITERS` threads, then refreshes; returns the elapsed time: until
/// every write is acknowledged *and indexed*. tantivy indexes after the acknowledgement (up to
/// the engine's queue bound, 64 Ki documents), so timing only the acknowledgements of a run
/// this short would time a burst the indexing does not sustain, and "half the leader's max
/// load" would be near all of it.
fn ingest(leader: &Index, bulks: Vec<Vec<Vec<WriteRequest>>>) -> Duration {
    ingest_on(None, leader, bulks)
}

/// [`ingest`] from threads restricted to `cpus`, if given.
fn ingest_on(
    cpus: Option<&[usize]>,
    leader: &Index,
    bulks: Vec<Vec<Vec<WriteRequest>>>,
) -> Duration {
    ingest_mirrored(cpus, leader, bulks, None)
}

/// [`ingest_on`]; with `mirror`, each writer has a twin on the follower's core that writes
/// the same bulks (its own copy of them) into the mirror index as the leader acknowledges
/// them ([`spawn_twins`]). Returns the leader's time; the twins finish before this returns.
fn ingest_mirrored(
    cpus: Option<&[usize]>,
    leader: &Index,
    bulks: Vec<Vec<Vec<WriteRequest>>>,
    mirror: Option<(&Index, Vec<Vec<Vec<WriteRequest>>>)>,
) -> Duration {
    std::thread::scope(|scope| {
        let mut twins = mirror
            .map(|(neighbour, twin_bulks)| {
                spawn_twins(scope, neighbour, twin_bulks, Some(&FOLLOWER_CPUS))
            })
            .unwrap_or_default()
            .into_iter();
        let (started, times) = (Instant::now(), CoreTimes::now());
        std::thread::scope(|writers| {
            for thread_bulks in bulks {
                let twin = twins.next();
                writers.spawn(move || {
                    if let Some(cpus) = cpus {
                        assert!(pin_current_thread(cpus), "pinning a writer to {cpus:?}");
                    }
                    for bulk in thread_bulks {
                        for result in leader.bulk(bulk) {
                            result.expect("leader write");
                        }
                        if let Some(twin) = &twin {
                            // A twin stops early only by panicking, which the scope reports.
                            let _ = twin.send(());
                        }
                    }
                });
            }
        });
        leader.refresh().expect("refreshing the leader");
        *LAST_BUSY.lock() = CoreTimes::busy_since(&times);
        started.elapsed()
    })
}

/// How busy each core was during the last [`ingest_mirrored`].
static LAST_BUSY: Mutex<Vec<f64>> = Mutex::new(Vec::new());

/// The busy fraction of each core during the last timed ingest.
fn last_busy() -> Vec<f64> {
    LAST_BUSY.lock().clone()
}

/// A plain index (not a follower) placed as `pair`'s follower, with its directory: the
/// `neighboured` run's load on the follower's core.
fn neighbour_of(pair: &Pair) -> Arc<Index> {
    let settings = IndexSettings::default();
    Arc::new(on_cpus(Some(&FOLLOWER_CPUS), || {
        Index::create_with(
            &tandem_engine::storage::real(),
            &pair._dir.path().join("neighbour"),
            "neighbour",
            "neighbour-uuid",
            settings,
            mappings(),
            false,
        )
        .expect("creating the neighbour")
    }))
}

/// Waits until no merge runs on the leader: with the refresh that ends every [`ingest`], the
/// leader is then at rest (its indexing done, nothing competing with a follower).
fn wait_for_merges(leader: &Index) {
    let started = Instant::now();
    while leader.shards()[0].merging_segment_count() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the leader's merges did not end"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_caught_up(pair: &Pair, deadline: Duration) -> Duration {
    let started = Instant::now();
    let target = pair.leader.shards()[0].global_checkpoint();
    while pair.follower.shards()[0].global_checkpoint() < target {
        assert!(
            started.elapsed() < deadline,
            "the follower did not catch up"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    started.elapsed()
}

/// Paced ingest at `rate` docs/s (bulks of `BULK_SIZE` from 4 threads) while a sampler
/// records when the follower's checkpoint covers each acknowledged operation. Returns the
/// per-bulk lags in milliseconds.
fn paced_lags(pair: &Pair, workload: &Workload, rate: f64) -> Vec<f64> {
    paced_lags_on(None, pair, workload, rate)
}

/// [`paced_lags`] with the writers restricted to `cpus`, if given.
fn paced_lags_on(cpus: Option<&[usize]>, pair: &Pair, workload: &Workload, rate: f64) -> Vec<f64> {
    const PACED_WRITERS: usize = 4;
    let epoch = Instant::now();
    // (highest seq_no of a bulk, its acknowledgement time) per bulk.
    let acks: Mutex<Vec<(i64, Duration)>> = Mutex::new(Vec::new());
    let follower = pair.follower.clone();
    let sampler = CheckpointSampler::start(epoch, SAMPLE_EVERY, move || {
        follower.shards()[0].global_checkpoint().0
    });
    let bulks = {
        let mut bulks = workload
            .bulks(BULK_SIZE)
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
        let mut per_writer: Vec<Vec<Vec<WriteRequest>>> = vec![Vec::new(); PACED_WRITERS];
        for (i, bulk) in bulks.drain(..).enumerate() {
            per_writer[i % PACED_WRITERS].push(bulk);
        }
        per_writer
    };
    let bulk_interval = Duration::from_secs_f64(BULK_SIZE as f64 * PACED_WRITERS as f64 / rate);
    std::thread::scope(|scope| {
        for (writer, thread_bulks) in bulks.into_iter().enumerate() {
            let (acks, leader) = (&acks, &pair.leader);
            scope.spawn(move || {
                if let Some(cpus) = cpus {
                    assert!(pin_current_thread(cpus), "pinning a writer to {cpus:?}");
                }
                let start =
                    Instant::now() + bulk_interval.mul_f64(writer as f64 / PACED_WRITERS as f64);
                for (i, bulk) in thread_bulks.into_iter().enumerate() {
                    let due = start + bulk_interval * i as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let highest = leader
                        .bulk(bulk)
                        .into_iter()
                        .map(|result| result.expect("leader write").seq_no.0)
                        .max()
                        .unwrap_or(-1);
                    acks.lock().push((highest, epoch.elapsed()));
                }
            });
        }
    });
    wait_caught_up(pair, Duration::from_secs(120));
    std::thread::sleep(SAMPLE_EVERY * 4);
    lags_ms(&acks.into_inner(), &sampler.stop())
}

fn replication(c: &mut Criterion) {
    init_tracing_from_env();
    let docs = env_usize("TANDEM_BENCH_REPLICATION_DOCS", 100_000);
    let workload = Workload::generate(docs, 0.3, WRITERS, SEED + 7);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let _entered = runtime.enter();
    let mut group = c.benchmark_group("replication_throughput");
    group
        .sample_size(ROUNDS)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(1));
    let (mut alone, mut followed, mut applied) = (Vec::new(), Vec::new(), Vec::new());
    // `follower_apply`'s own leader ingest of each round (timed as `leader_alone`'s), the
    // baseline its apply is paired with.
    let mut apply_baseline = Vec::new();
    group.bench_function("leader_alone", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let pair = pair();
                let bulks = workload.bulks(BULK_SIZE);
                settle_writeback();
                perf_record(true);
                let elapsed = ingest(&pair.leader, bulks);
                perf_record(false);
                alone.push(per_second(docs, elapsed));
                total += elapsed;
            }
            total
        })
    });
    group.bench_function("leader_followed", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let pair = pair();
                let bulks = workload.bulks(BULK_SIZE);
                settle_writeback();
                let task = follow(&pair);
                let elapsed = ingest(&pair.leader, bulks);
                followed.push(per_second(docs, elapsed));
                wait_caught_up(&pair, Duration::from_secs(300));
                runtime.block_on(task.stop());
                total += elapsed;
            }
            total
        })
    });
    group.sample_size(env_usize("TANDEM_BENCH_APPLY_ROUNDS", APPLY_ROUNDS));
    group.bench_function("follower_apply", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut pair = pair();
                let bulks = workload.bulks(BULK_SIZE);
                settle_writeback();
                let ingested = ingest(&pair.leader, bulks);
                let ingest_busy = last_busy();
                apply_baseline.push(per_second(docs, ingested));
                wait_for_merges(&pair.leader);
                // The follower index is created as the follow starts (a follow creates it), as
                // the leader was just before its ingest: the periodic refresh (every second
                // from an index's creation) then falls at the same point of both timed phases.
                pair.follower = follower_index(&pair._dir.path().join("follower-at-rest"), None);
                settle_writeback();
                perf_record(true);
                let (started, times) = (Instant::now(), CoreTimes::now());
                let task = follow(&pair);
                // The first applied operation: the task's start and first read round trip.
                while pair.follower.shards()[0].max_seq_no() < SeqNo(0) {
                    std::thread::sleep(SAMPLE_EVERY);
                }
                let first_applied = started.elapsed();
                wait_caught_up(&pair, Duration::from_secs(300));
                // As the leader's ingest: until indexed.
                pair.follower.refresh().expect("refreshing the follower");
                let elapsed = started.elapsed();
                perf_record(false);
                let busy = CoreTimes::busy_since(&times);
                runtime.block_on(task.stop());
                applied.push(per_second(docs, elapsed));
                eprintln!(
                    "replication_throughput: follower apply {:.0} docs/s [{}] after this \
                     round's leader ingest at {:.0} docs/s [{}], the first operation applied \
                     after {first_applied:.1?}",
                    per_second(docs, elapsed),
                    format_busy(&busy),
                    per_second(docs, ingested),
                    format_busy(&ingest_busy),
                );
                total += elapsed;
            }
            total
        })
    });
    group.sample_size(ROUNDS);
    let mut lags = Vec::new();
    let mut paced_rate = 0.0;
    group.bench_function("lag", |b| {
        b.iter_custom(|iters| {
            if alone.is_empty() {
                // Run on its own: the leader's max rate first, as `leader_alone` measures it.
                for _ in 0..3 {
                    let pair = pair();
                    alone.push(per_second(
                        docs,
                        ingest(&pair.leader, workload.bulks(BULK_SIZE)),
                    ));
                }
            }
            paced_rate = median(&alone) / 2.0;
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let pair = pair();
                let task = follow(&pair);
                let started = Instant::now();
                lags.extend(paced_lags(&pair, &workload, paced_rate));
                total += started.elapsed();
                runtime.block_on(task.stop());
            }
            total
        })
    });
    let follower_runtime = runtime_on_cpus(1, Some(&FOLLOWER_CPUS));
    let (mut pinned_alone, mut pinned_followed, mut pinned_neighboured) =
        (Vec::new(), Vec::new(), Vec::new());
    // How busy the cores were in each kind of run: alone, followed, neighboured.
    let mut pinned_busy: [Vec<Vec<f64>>; 3] = Default::default();
    // The pinned ratio is of two nearly equal rates, on cores whose speed drifts by tens of
    // percent: more rounds.
    group.sample_size(env_usize("TANDEM_BENCH_PINNED_ROUNDS", PINNED_ROUNDS));
    let mut cache_slowdown = None;
    group.bench_function("pinned", |b| {
        b.iter_custom(|iters| {
            cache_slowdown.get_or_insert_with(shared_cache_slowdown);
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let round = pinned_alone.len();
                for step in 0..3 {
                    let pair = pair_on(true);
                    let elapsed = match (round + step) % 3 {
                        0 => {
                            let elapsed = ingest_on(
                                Some(&LEADER_CPUS),
                                &pair.leader,
                                workload.bulks(BULK_SIZE),
                            );
                            pinned_alone.push(per_second(docs, elapsed));
                            elapsed
                        }
                        1 => {
                            let task = {
                                let _entered = follower_runtime.enter();
                                follow(&pair)
                            };
                            let elapsed = ingest_on(
                                Some(&LEADER_CPUS),
                                &pair.leader,
                                workload.bulks(BULK_SIZE),
                            );
                            pinned_followed.push(per_second(docs, elapsed));
                            wait_caught_up(&pair, Duration::from_secs(300));
                            follower_runtime.block_on(task.stop());
                            elapsed
                        }
                        _ => {
                            let neighbour = neighbour_of(&pair);
                            let elapsed = ingest_mirrored(
                                Some(&LEADER_CPUS),
                                &pair.leader,
                                workload.bulks(BULK_SIZE),
                                Some((&neighbour, workload.bulks(BULK_SIZE))),
                            );
                            pinned_neighboured.push(per_second(docs, elapsed));
                            elapsed
                        }
                    };
                    pinned_busy[(round + step) % 3].push(last_busy());
                    total += elapsed;
                }
                eprintln!(
                    "replication_throughput: pinned round {round}: alone {:.0} docs/s [{}], \
                     followed {:.0} docs/s [{}], neighboured {:.0} docs/s [{}]",
                    pinned_alone[round],
                    format_busy(&pinned_busy[0][round]),
                    pinned_followed[round],
                    format_busy(&pinned_busy[1][round]),
                    pinned_neighboured[round],
                    format_busy(&pinned_busy[2][round]),
                );
            }
            total
        })
    });
    let (mut pinned_lags, mut pinned_paced_rate) = (Vec::new(), 0.0);
    group.sample_size(ROUNDS);
    group.bench_function("pinned_lag", |b| {
        b.iter_custom(|iters| {
            if pinned_alone.is_empty() {
                // Run on its own: the pinned leader's max rate first, as `pinned` measures it.
                for _ in 0..3 {
                    let pair = pair_on(true);
                    let elapsed =
                        ingest_on(Some(&LEADER_CPUS), &pair.leader, workload.bulks(BULK_SIZE));
                    pinned_alone.push(per_second(docs, elapsed));
                }
            }
            pinned_paced_rate = median(&pinned_alone) / 2.0;
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let pair = pair_on(true);
                let task = {
                    let _entered = follower_runtime.enter();
                    follow(&pair)
                };
                let started = Instant::now();
                pinned_lags.extend(paced_lags_on(
                    Some(&LEADER_CPUS),
                    &pair,
                    &workload,
                    pinned_paced_rate,
                ));
                total += started.elapsed();
                follower_runtime.block_on(task.stop());
            }
            total
        })
    });
    group.finish();
    if !pinned_lags.is_empty() {
        eprintln!(
            "replication_throughput: pinned, at half the pinned leader's rate \
             ({pinned_paced_rate:.0} docs/s) lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over \
             {} bulks (target p99 <= 50 ms)",
            percentile(&pinned_lags, 50.0),
            percentile(&pinned_lags, 99.0),
            percentile(&pinned_lags, 100.0),
            pinned_lags.len()
        );
    }
    if !pinned_alone.is_empty() && !pinned_followed.is_empty() {
        let (alone, followed) = (median(&pinned_alone), median(&pinned_followed));
        eprintln!(
            "replication_throughput: pinned (leader and writers on core 0, follower on core 1), \
             medians of {} rounds: leader alone {alone:.0} docs/s, followed {followed:.0} docs/s \
             (ratio {:.3}; median of the per-round ratios {:.3}; the target on two machines)",
            pinned_alone.len(),
            followed / alone,
            median_paired_ratio(&pinned_alone, &pinned_followed)
        );
        if let Some(Some(slowdown)) = cache_slowdown {
            eprintln!(
                "replication_throughput: on this machine a memory-bound loop on core 0 takes \
                 {slowdown:.2}x as long while core 1 runs one too (shared caches)"
            );
        }
        eprintln!(
            "replication_throughput: pinned, median busy cores during the timed ingests: alone \
             {}; followed {}; neighboured {}",
            format_busy(&median_busy(&pinned_busy[0])),
            format_busy(&median_busy(&pinned_busy[1])),
            format_busy(&median_busy(&pinned_busy[2])),
        );
        let neighboured = median(&pinned_neighboured);
        eprintln!(
            "replication_throughput: pinned, neighboured (no follower; core 1 indexes the same \
             bulks into an index of its own) {neighboured:.0} docs/s: ratio to alone {:.3} \
             (per-round {:.3}); followed to neighboured {:.3} (per-round {:.3}; target >= 0.97)",
            neighboured / alone,
            median_paired_ratio(&pinned_alone, &pinned_neighboured),
            followed / neighboured,
            median_paired_ratio(&pinned_neighboured, &pinned_followed)
        );
    }
    let max_rate = median(&alone);
    if !followed.is_empty() {
        eprintln!(
            "replication_throughput: {docs} docs (30% updates), leader alone {max_rate:.0} \
             docs/s, followed {:.0} docs/s (ratio {:.3}, on shared cores; see the README)",
            median(&followed),
            median(&followed) / max_rate
        );
    }
    if !applied.is_empty() {
        // Each round's apply against the same round's leader ingest, seconds apart: the host's
        // load moves within minutes, so `leader_alone`'s rounds (run before) are a looser
        // baseline, printed beside it.
        eprintln!(
            "replication_throughput: follower apply {:.0} docs/s against its rounds' leader \
             ingest {:.0} docs/s: median of per-round ratios {:.3} (ratio of medians {:.3}; \
             target >= 0.90)",
            median(&applied),
            median(&apply_baseline),
            median_paired_ratio(&apply_baseline, &applied),
            median(&applied) / median(&apply_baseline)
        );
        if !alone.is_empty() {
            eprintln!(
                "replication_throughput: follower apply against `leader_alone` {max_rate:.0} \
                 docs/s: ratio {:.3}",
                median(&applied) / max_rate
            );
        }
    }
    if !lags.is_empty() {
        eprintln!(
            "replication_throughput: at half load ({paced_rate:.0} docs/s) lag p50 {:.1} ms, \
             p99 {:.1} ms, max {:.1} ms over {} bulks (target p99 <= 50 ms)",
            percentile(&lags, 50.0),
            percentile(&lags, 99.0),
            percentile(&lags, 100.0),
            lags.len()
        );
    }
}

criterion_group!(benches, replication);
criterion_main!(benches);
