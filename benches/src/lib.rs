//! Shared helpers for Tandem benchmarks: deterministic `server-metrics` documents, workloads
//! (as engine bulks or `_bulk` ndjson bodies), shards filled to a size with blob documents,
//! temporary directories on a real disk, environment overrides, statistics, replication lag
//! from acknowledgements and sampled checkpoints, `cp` + fsync as the copy baseline, and an
//! fdatasync counter.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tandem_engine::mapping::DocumentMapper;
use tandem_engine::mapping::Mappings;
use tandem_engine::shard::{IndexRequest, WriteRequest};
use tandem_engine::{PrimaryTerm, ShardConfig, ShardEngine};

/// Seed of every generated document set.
pub const SEED: u64 = 0x7a4d_3e11;

/// Reads a positive integer from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .replace('_', "")
            .parse()
            .ok()
            .filter(|parsed| *parsed > 0)
            .unwrap_or_else(|| panic!("{name}={value:?} is not a positive integer")),
        Err(_) => default,
    }
}

/// Root of the benchmarks' temporary directories: `TANDEM_BENCH_TMP`, or `target/bench-tmp` of
/// the workspace (a real disk, so fsyncs cost what they cost in production, unlike tmpfs).
pub fn bench_tmp_root() -> PathBuf {
    match std::env::var_os("TANDEM_BENCH_TMP") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp"),
    }
}

/// A fresh temporary directory under [`bench_tmp_root`], removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    let root = bench_tmp_root();
    std::fs::create_dir_all(&root).expect("creating the bench tmp root");
    tempfile::tempdir_in(&root).expect("creating a bench tmp dir")
}

/// The `server-metrics` mappings as Elasticsearch JSON: `@timestamp` date, `host.name`
/// keyword, `cpu.usage` double, `memory.used` long, `status` keyword, `message` text.
pub fn mappings_json() -> serde_json::Value {
    serde_json::json!({
        "properties": {
            "@timestamp": {"type": "date"},
            "host": {"properties": {"name": {"type": "keyword"}}},
            "cpu": {"properties": {"usage": {"type": "double"}}},
            "memory": {"properties": {"used": {"type": "long"}}},
            "status": {"type": "keyword"},
            "message": {"type": "text"}
        }
    })
}

/// The `server-metrics` mappings ([`mappings_json`]).
pub fn mappings() -> Mappings {
    Mappings::from_es_json(&mappings_json()).expect("valid server-metrics mappings")
}

/// A document mapper over [`mappings`].
pub fn mapper() -> Arc<DocumentMapper> {
    Arc::new(DocumentMapper::new(mappings(), 1, None))
}

/// Creates a shard in `dir` with `config` and primary term 1.
pub fn create_shard(dir: &std::path::Path, config: ShardConfig) -> ShardEngine {
    ShardEngine::create(dir, mapper(), config, PrimaryTerm(1)).expect("creating a shard")
}

const STATUSES: [&str; 4] = ["ok", "ok", "warn", "error"];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const PATHS: [&str; 6] = [
    "/api/v1/items",
    "/api/v1/orders",
    "/api/v2/users",
    "/health",
    "/metrics",
    "/api/v1/search",
];
const WORDS: [&str; 12] = [
    "completed",
    "request",
    "upstream",
    "cache",
    "miss",
    "hit",
    "slow",
    "retry",
    "timeout",
    "backend",
    "served",
    "queued",
];

/// One ~200-byte `server-metrics` JSON document drawn from `rng`.
pub fn generate_doc(rng: &mut StdRng, sequence: u64) -> Vec<u8> {
    let millis = 1_714_521_600_000u64 + sequence * 37 + rng.random_range(0..37);
    let (secs, ms) = (millis / 1000, millis % 1000);
    let day_secs = secs % 86_400;
    let day = 1 + (secs / 86_400 - 19_844) % 28;
    let timestamp = format!(
        "2024-05-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    );
    let method = METHODS[rng.random_range(0..METHODS.len())];
    let path = PATHS[rng.random_range(0..PATHS.len())];
    let word_a = WORDS[rng.random_range(0..WORDS.len())];
    let word_b = WORDS[rng.random_range(0..WORDS.len())];
    let doc = serde_json::json!({
        "@timestamp": timestamp,
        "host": {"name": format!("host-{:04}", rng.random_range(0..500))},
        "cpu": {"usage": (rng.random_range(0..10_000) as f64) / 100.0},
        "memory": {"used": rng.random_range(100_000_000i64..16_000_000_000)},
        "status": STATUSES[rng.random_range(0..STATUSES.len())],
        "message": format!(
            "{method} {path}/{} {word_a} {word_b} in {} ms",
            rng.random_range(0..100_000),
            rng.random_range(1..2_000)
        ),
    });
    serde_json::to_vec(&doc).expect("encoding a document")
}

/// One write of a workload.
#[derive(Clone, Debug)]
pub struct WorkOp {
    /// Document id.
    pub id: String,
    /// JSON `_source`.
    pub source: Vec<u8>,
    /// True when the id was written before (a re-index).
    pub update: bool,
}

/// Writes split over writer threads; deterministic for a given (count, update ratio, threads,
/// seed). An update re-indexes an id its own thread created earlier, with a new document.
pub struct Workload {
    /// The writes of each thread, in order.
    pub threads: Vec<Vec<WorkOp>>,
    /// Total writes.
    pub total: usize,
}

impl Workload {
    /// `count` writes over `threads` threads; `update_ratio` of them re-index an existing id.
    pub fn generate(count: usize, update_ratio: f64, threads: usize, seed: u64) -> Workload {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut next_id = 0u64;
        let mut sequence = 0u64;
        let per_thread = count.div_ceil(threads);
        let mut out = Vec::with_capacity(threads);
        let mut remaining = count;
        for _ in 0..threads {
            let n = per_thread.min(remaining);
            remaining -= n;
            let mut ops = Vec::with_capacity(n);
            let mut created: Vec<u64> = Vec::with_capacity(n);
            for _ in 0..n {
                let update = !created.is_empty() && rng.random_bool(update_ratio);
                let id = if update {
                    created[rng.random_range(0..created.len())]
                } else {
                    next_id += 1;
                    created.push(next_id);
                    next_id
                };
                sequence += 1;
                ops.push(WorkOp {
                    id: format!("doc-{id:010}"),
                    source: generate_doc(&mut rng, sequence),
                    update,
                });
            }
            out.push(ops);
        }
        Workload {
            threads: out,
            total: count,
        }
    }

    /// Average `_source` size in bytes.
    pub fn average_source_bytes(&self) -> f64 {
        let bytes: usize = self
            .threads
            .iter()
            .flatten()
            .map(|op| op.source.len())
            .sum();
        bytes as f64 / self.total.max(1) as f64
    }

    /// The writes of each thread as `_bulk` ndjson bodies of `bulk_size` `index` actions (an
    /// action line with the id, then the source, each ending with a newline).
    pub fn ndjson_bulks(&self, bulk_size: usize) -> Vec<Vec<Vec<u8>>> {
        self.threads
            .iter()
            .map(|ops| {
                ops.chunks(bulk_size)
                    .map(|chunk| {
                        let mut body = Vec::with_capacity(chunk.len() * 256);
                        for op in chunk {
                            body.extend_from_slice(b"{\"index\":{\"_id\":\"");
                            body.extend_from_slice(op.id.as_bytes());
                            body.extend_from_slice(b"\"}}\n");
                            body.extend_from_slice(&op.source);
                            body.push(b'\n');
                        }
                        body
                    })
                    .collect()
            })
            .collect()
    }

    /// The writes of each thread as `bulk` requests of `bulk_size` index requests.
    pub fn bulks(&self, bulk_size: usize) -> Vec<Vec<Vec<WriteRequest>>> {
        self.threads
            .iter()
            .map(|ops| {
                ops.chunks(bulk_size)
                    .map(|chunk| {
                        chunk
                            .iter()
                            .map(|op| {
                                WriteRequest::Index(IndexRequest::new(
                                    op.id.clone(),
                                    op.source.clone(),
                                ))
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }
}

/// Indexes `docs` fresh documents (ids `seed-<n>`) through `bulk` from `threads` threads in
/// bulks of `bulk_size`; panics on any failure.
pub fn load_shard(shard: &ShardEngine, docs: usize, threads: usize, bulk_size: usize) {
    let workload = Workload::generate(docs, 0.0, threads, SEED ^ 0x55);
    let bulks = workload.bulks(bulk_size);
    std::thread::scope(|scope| {
        for thread_bulks in bulks {
            scope.spawn(move || {
                for bulk in thread_bulks {
                    for result in shard.bulk(bulk) {
                        result.expect("loading a document");
                    }
                }
            });
        }
    });
}

/// Mappings of the blob documents of [`fill_shard_with_blobs`]: one `blob` keyword.
pub fn blob_mappings_json() -> serde_json::Value {
    serde_json::json!({"properties": {"blob": {"type": "keyword"}}})
}

/// Index settings that make [`fill_shard_with_blobs`] fast: one shard, no scheduled refresh,
/// `async` translog durability.
pub fn blob_settings_json() -> serde_json::Value {
    serde_json::json!({"index": {"number_of_shards": 1, "refresh_interval": "-1",
        "translog.durability": "async"}})
}

/// Indexes documents with a 4 KiB random `blob` keyword (mappings: [`blob_mappings_json`])
/// into `shard` until its latest commit holds at least `target_bytes` of files; every round
/// of 16 bulks of 500 ends with a commit. Panics on any failure.
pub fn fill_shard_with_blobs(shard: &ShardEngine, target_bytes: u64) {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut next_id = 0u64;
    loop {
        for _ in 0..16 {
            let bulk: Vec<WriteRequest> = (0..500)
                .map(|_| {
                    next_id += 1;
                    let blob: String = (0..4096)
                        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                        .collect();
                    let source = serde_json::json!({ "blob": blob });
                    WriteRequest::Index(IndexRequest::new(
                        format!("doc-{next_id}"),
                        serde_json::to_vec(&source).expect("json"),
                    ))
                })
                .collect();
            for result in shard.bulk(bulk) {
                result.expect("indexing");
            }
        }
        shard.refresh().expect("refresh");
        let size = shard.pin_latest_commit().expect("pin").total_bytes();
        if size >= target_bytes {
            return;
        }
    }
}

/// Writes back every dirty page of the system, so a timed run starts from a clean page cache.
pub fn flush_dirty_pages() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Restricts the calling thread to the CPUs in `cpus`; threads it spawns afterwards inherit
/// the restriction (Linux `sched_setaffinity`). Used to give each node of a two-node bench a
/// core of its own, as two machines would. Returns false if the CPUs cannot be used.
pub fn pin_current_thread(cpus: &[usize]) -> bool {
    // SAFETY: `cpu_set_t` is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: `CPU_SET` writes one bit of `set`, which outlives the call; `cpu` is checked
        // against the set's capacity first.
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return false;
        }
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid `cpu_set_t` of the size passed.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// Profiling aid: with `TANDEM_BENCH_PERF_CTL` naming the control FIFO of a `perf record
/// --control fifo:<path> -D -1` started on this bench, turns recording on (`true`) or off, so
/// that a profile holds one phase of a run only (for example the follower's apply, not the
/// leader's ingest before it). Does nothing without the variable.
pub fn perf_record(enabled: bool) {
    let Ok(path) = std::env::var("TANDEM_BENCH_PERF_CTL") else {
        return;
    };
    let command: &[u8] = if enabled { b"enable\n" } else { b"disable\n" };
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut fifo| std::io::Write::write_all(&mut fifo, command));
    if let Err(error) = written {
        eprintln!("TANDEM_BENCH_PERF_CTL [{path}]: {error}");
    }
}

/// Per-core CPU time from `/proc/stat`, to tell how busy each core was over a run: a snapshot
/// of every core's busy and total jiffies.
#[derive(Clone, Debug)]
pub struct CoreTimes(Vec<(u64, u64)>);

impl CoreTimes {
    /// The times so far; empty where `/proc/stat` cannot be read (not Linux).
    pub fn now() -> CoreTimes {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        CoreTimes(
            stat.lines()
                .filter(|line| {
                    line.starts_with("cpu")
                        && line.as_bytes().get(3).is_some_and(u8::is_ascii_digit)
                })
                .map(|line| {
                    // user nice system idle iowait irq softirq steal ...
                    let fields: Vec<u64> = line
                        .split_whitespace()
                        .skip(1)
                        .filter_map(|field| field.parse().ok())
                        .collect();
                    let total: u64 = fields.iter().take(8).sum();
                    let idle =
                        fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
                    (total - idle.min(total), total)
                })
                .collect(),
        )
    }

    /// The busy fraction (0..=1) of each core between `earlier` and now.
    pub fn busy_since(earlier: &CoreTimes) -> Vec<f64> {
        CoreTimes::now()
            .0
            .iter()
            .zip(&earlier.0)
            .map(|((busy, total), (busy_before, total_before))| {
                let total = total.saturating_sub(*total_before);
                if total == 0 {
                    0.0
                } else {
                    busy.saturating_sub(*busy_before) as f64 / total as f64
                }
            })
            .collect()
    }
}

/// The median busy fraction of each core over `runs` (each from [`CoreTimes::busy_since`]).
pub fn median_busy(runs: &[Vec<f64>]) -> Vec<f64> {
    let cores = runs.iter().map(Vec::len).min().unwrap_or(0);
    (0..cores)
        .map(|core| median(&runs.iter().map(|busy| busy[core]).collect::<Vec<_>>()))
        .collect()
}

/// The twins of a `neighboured` run: one thread per writer on `cpus` (if given), each writing
/// its own copy of that writer's bulks into `neighbour`, one bulk per signal on the returned
/// sender (send one as each of the writer's bulks is acknowledged). A twin ends when its
/// bulks are done or its sender is dropped; the scope joins them.
pub fn spawn_twins<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    neighbour: &'env tandem_engine::index::Index,
    bulks: Vec<Vec<Vec<WriteRequest>>>,
    cpus: Option<&'env [usize]>,
) -> Vec<std::sync::mpsc::Sender<()>> {
    bulks
        .into_iter()
        .map(|thread_bulks| {
            let (sender, receiver) = std::sync::mpsc::channel::<()>();
            scope.spawn(move || {
                if let Some(cpus) = cpus {
                    assert!(pin_current_thread(cpus), "pinning a twin to {cpus:?}");
                }
                for bulk in thread_bulks {
                    if receiver.recv().is_err() {
                        return;
                    }
                    for result in neighbour.bulk(bulk) {
                        result.expect("a neighbour write");
                    }
                }
            });
            sender
        })
        .collect()
}

/// `busy` (from [`CoreTimes::busy_since`]) as `"core 0 93%, core 1 71%"`.
pub fn format_busy(busy: &[f64]) -> String {
    busy.iter()
        .enumerate()
        .map(|(core, busy)| format!("core {core} {:.0}%", busy * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How much slower a memory-bound loop runs on core 0 while core 1 runs one too (time with
/// the twin / time alone, median of three alternating pairs): what two cores of this machine
/// share beyond their own (the last-level cache, memory bandwidth) costs each when both work.
/// The pinned runs of `replication_throughput` and `node_http` place a leader and a follower
/// on one core each as on two machines; this says how far one machine is from two. A
/// compute-only loop (no memory traffic) would show no such slowdown; random reads and
/// writes over 16 MiB, half the last-level cache here, do. `None` when this machine has fewer
/// than two cores or pinning fails.
pub fn shared_cache_slowdown() -> Option<f64> {
    const WORDS: usize = 4 << 20;
    const STEPS: u64 = 60_000_000;
    fn random_walk(words: &mut [u32]) -> Duration {
        let started = Instant::now();
        let mut x: u32 = 1;
        for _ in 0..STEPS {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let slot = x as usize % words.len();
            words[slot] = words[slot].wrapping_add(x);
        }
        std::hint::black_box(&words[..]);
        started.elapsed()
    }
    if std::thread::available_parallelism().map_or(0, |cores| cores.get()) < 2 {
        return None;
    }
    let mut ratios = Vec::new();
    for _ in 0..3 {
        let alone = std::thread::scope(|scope| {
            scope
                .spawn(|| pin_current_thread(&[0]).then(|| random_walk(&mut vec![1; WORDS])))
                .join()
                .ok()
                .flatten()
        })?;
        let stop = AtomicBool::new(false);
        let beside = std::thread::scope(|scope| {
            let stop = &stop;
            let twin = scope.spawn(move || {
                if !pin_current_thread(&[1]) {
                    return false;
                }
                let mut words = vec![1; WORDS];
                while !stop.load(Ordering::Relaxed) {
                    random_walk(&mut words[..]);
                }
                true
            });
            let measured = scope
                .spawn(|| {
                    pin_current_thread(&[0]).then(|| {
                        // The twin is under way first.
                        std::thread::sleep(Duration::from_millis(50));
                        random_walk(&mut vec![1; WORDS])
                    })
                })
                .join()
                .ok()
                .flatten();
            stop.store(true, Ordering::Relaxed);
            let twin_ran = twin.join().unwrap_or(false);
            measured.filter(|_| twin_ran)
        })?;
        ratios.push(beside.as_secs_f64() / alone.as_secs_f64());
    }
    Some(median(&ratios))
}

/// Runs `work` on a thread restricted to `cpus` (if given), and returns its result; threads
/// it starts (tantivy's indexing and merge threads, a shard's background thread) inherit the
/// restriction.
pub fn on_cpus<T: Send>(cpus: Option<&[usize]>, work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if let Some(cpus) = cpus {
                    assert!(pin_current_thread(cpus), "pinning a thread to {cpus:?}");
                }
                work()
            })
            .join()
            .expect("a pinned thread")
    })
}

/// A multi-threaded tokio runtime of `workers` threads whose threads (workers and blocking
/// pool) run on `cpus`, if given.
pub fn runtime_on_cpus(workers: usize, cpus: Option<&'static [usize]>) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(workers).enable_all();
    if let Some(cpus) = cpus {
        builder.on_thread_start(move || {
            assert!(pin_current_thread(cpus), "pinning a thread to {cpus:?}");
        });
    }
    builder.build().expect("a tokio runtime")
}

/// Writes every dirty page of this machine back to disk (`sync(2)`) and waits for it, so that
/// a timed phase does not pay for the writeback of what the phase before it wrote (an ingest
/// of 100,000 documents leaves a few hundred MB of dirty pages, flushed while the next phase's
/// fsyncs wait behind them).
pub fn settle_writeback() {
    // SAFETY: `sync` takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// `cp` of `files` from `from` into `to`, then fsync of every copy and of the directory: the
/// baseline of a remote recovery. Returns the elapsed time.
pub fn cp_and_fsync(from: &Path, files: &[String], to: &Path) -> Duration {
    let started = Instant::now();
    let sources: Vec<PathBuf> = files.iter().map(|name| from.join(name)).collect();
    let status = std::process::Command::new("cp")
        .args(&sources)
        .arg(to)
        .status()
        .expect("running cp");
    assert!(status.success(), "cp failed");
    for name in files {
        std::fs::File::open(to.join(name))
            .and_then(|file| file.sync_all())
            .expect("fsync of a copy");
    }
    std::fs::File::open(to)
        .and_then(|dir| dir.sync_all())
        .expect("fsync of the directory");
    started.elapsed()
}

/// Median of `values` (0 when empty).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// The median of the per-round ratios `followed[i] / alone[i]`: with each round's two runs
/// back to back, a ratio of neighbours, which the machine's drift between rounds (the speed of
/// this VM's cores changes by tens of percent from one second to the next) moves much less
/// than a ratio of the two medians. 0 when either is empty.
pub fn median_paired_ratio(alone: &[f64], followed: &[f64]) -> f64 {
    let ratios: Vec<f64> = alone
        .iter()
        .zip(followed)
        .filter(|(alone, _)| **alone > 0.0)
        .map(|(alone, followed)| followed / alone)
        .collect();
    median(&ratios)
}

/// The `p`th percentile (0..=100) of `values`, nearest rank (0 when empty).
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Records every change of a checkpoint, read every `every` on a thread of its own, with the
/// time since `epoch` it was first seen, until stopped.
pub struct CheckpointSampler {
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Duration, i64)>>,
}

impl CheckpointSampler {
    /// Starts sampling `read` (e.g. a follower shard's global checkpoint).
    pub fn start(
        epoch: Instant,
        every: Duration,
        read: impl Fn() -> i64 + Send + 'static,
    ) -> CheckpointSampler {
        let done = Arc::new(AtomicBool::new(false));
        let stop = done.clone();
        let thread = std::thread::spawn(move || {
            let mut observed = Vec::new();
            let mut last = i64::MIN;
            while !stop.load(Ordering::Acquire) {
                let checkpoint = read();
                if checkpoint != last {
                    observed.push((epoch.elapsed(), checkpoint));
                    last = checkpoint;
                }
                std::thread::sleep(every);
            }
            observed
        });
        CheckpointSampler { done, thread }
    }

    /// Stops sampling; returns the observations `(time since epoch, checkpoint)` in order.
    pub fn stop(self) -> Vec<(Duration, i64)> {
        self.done.store(true, Ordering::Release);
        self.thread.join().expect("the sampler thread")
    }
}

/// Replication lag in milliseconds of every acknowledged write: `acks` holds, per write (or
/// bulk), its highest seq_no and when it was acknowledged; `observed` the follower checkpoints
/// of a [`CheckpointSampler`] with the same epoch. The lag is the time from the acknowledgement
/// to the first observation at or after it that covers the seq_no (or, when the follower was
/// already there, the first that covers it at all: lag 0).
pub fn lags_ms(acks: &[(i64, Duration)], observed: &[(Duration, i64)]) -> Vec<f64> {
    acks.iter()
        .map(|&(seq_no, acked)| {
            let visible = observed
                .iter()
                .find(|(at, checkpoint)| *checkpoint >= seq_no && *at >= acked)
                .or_else(|| {
                    observed
                        .iter()
                        .find(|(_, checkpoint)| *checkpoint >= seq_no)
                })
                .map_or(acked, |(at, _)| *at);
            visible.saturating_sub(acked).as_secs_f64() * 1000.0
        })
        .collect()
}

/// Logs to stderr through `tracing` when `RUST_LOG` is set (for example
/// `RUST_LOG=tandem_engine=debug` shows each refresh's timings).
pub fn init_tracing_from_env() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
}

/// Operations per second.
pub fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Counts `fdatasync` system calls made by the calling thread and every thread it spawns after
/// the counter is opened (a perf tracepoint counter with `inherit`; needs tracefs and enough
/// perf permissions). Counts of spawned threads are folded in when they exit, so read it after
/// joining them.
pub struct FdatasyncCounter {
    fd: i32,
}

impl FdatasyncCounter {
    /// Opens the counter, or `None` when tracepoints are not available.
    pub fn open() -> Option<FdatasyncCounter> {
        let id = [
            "/sys/kernel/tracing/events/syscalls/sys_enter_fdatasync/id",
            "/sys/kernel/debug/tracing/events/syscalls/sys_enter_fdatasync/id",
        ]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| text.trim().parse::<u64>().ok())?;
        // struct perf_event_attr, first version (64 bytes): type, size, config, sample_period,
        // sample_type, read_format, flags (bit 1 = inherit), wakeup_events + bp_type.
        const PERF_TYPE_TRACEPOINT: u64 = 2;
        const ATTR_SIZE: u64 = 64;
        const INHERIT: u64 = 1 << 1;
        let attr: [u64; 8] = [
            PERF_TYPE_TRACEPOINT | (ATTR_SIZE << 32),
            id,
            0,
            0,
            0,
            INHERIT,
            0,
            0,
        ];
        // SAFETY: `attr` is a valid perf_event_attr of the declared size that outlives the
        // call; pid 0 / cpu -1 = this process on any CPU; no group fd; no flags.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                attr.as_ptr(),
                0 as libc::pid_t,
                -1 as libc::c_int,
                -1 as libc::c_int,
                0 as libc::c_ulong,
            )
        };
        if fd < 0 {
            return None;
        }
        Some(FdatasyncCounter { fd: fd as i32 })
    }

    /// fdatasync calls counted so far.
    pub fn read(&self) -> u64 {
        let mut value = 0u64;
        // SAFETY: reads 8 bytes into `value` from the counter's fd, which we own.
        let read = unsafe {
            libc::read(
                self.fd,
                (&mut value as *mut u64).cast::<libc::c_void>(),
                std::mem::size_of::<u64>(),
            )
        };
        if read == std::mem::size_of::<u64>() as isize {
            value
        } else {
            0
        }
    }
}

impl Drop for FdatasyncCounter {
    fn drop(&mut self) {
        // SAFETY: closes the fd this counter owns, once.
        unsafe {
            libc::close(self.fd);
        }
    }
}
