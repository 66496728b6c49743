//! The cost of idle shards: `TANDEM_BENCH_IDLE_INDICES` indices (default 500) of 2 shards
//! each, created in process through `tandem_engine::Indices` (as auto-follow of daily indices
//! accumulates them), then left idle.
//!
//! Printed to stderr, from one run before the criterion groups: the process's RSS (VmRSS, and
//! its growth over the baseline taken before creating), threads and open files after creating
//! and after reopening, and the time to create them, to drop the registry (a node shutdown:
//! every shard's background work stops) and to reopen the data directory (`Indices::open`, a
//! node restart). The criterion group `idle_shards` then times create and reopen again, one
//! whole run per sample.
//!
//! The node's allocator (mimalloc) is used, so RSS is what a node would show.
//!
//! Run: `cargo bench -p tandem-benches --bench idle_shards` (resource figures only:
//! `cargo bench -p tandem-benches --bench idle_shards -- resources-only`, which matches no
//! criterion benchmark).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use serde_json::json;
use tandem_benches::{env_usize, temp_dir};
use tandem_engine::indices::Indices;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Shards per index.
const SHARDS_PER_INDEX: usize = 2;
/// Idle time before the resources are read, so background work due after creation has run.
const SETTLE: Duration = Duration::from_secs(3);

/// The process's resources at one moment.
#[derive(Clone, Copy, Debug)]
struct Resources {
    rss_bytes: u64,
    threads: u64,
    open_files: u64,
}

impl Resources {
    fn now() -> Resources {
        let status =
            std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
        };
        let open_files = std::fs::read_dir("/proc/self/fd")
            .expect("reading /proc/self/fd")
            .count() as u64;
        Resources {
            rss_bytes: field("VmRSS:") * 1024,
            threads: field("Threads:"),
            open_files,
        }
    }

    fn report(&self, when: &str, baseline: &Resources, shards: usize) {
        let grown = self.rss_bytes.saturating_sub(baseline.rss_bytes);
        eprintln!(
            "idle_shards {when}: VmRSS {:.1} MiB (+{:.1} MiB over the baseline, {:.1} KiB per shard), \
             threads {} (+{}), open files {} (+{})",
            mib(self.rss_bytes),
            mib(grown),
            grown as f64 / 1024.0 / shards as f64,
            self.threads,
            self.threads.saturating_sub(baseline.threads),
            self.open_files,
            self.open_files.saturating_sub(baseline.open_files),
        );
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Creates `indices` indices of [`SHARDS_PER_INDEX`] shards in `registry`.
fn create_all(registry: &Indices, indices: usize) -> Duration {
    let started = Instant::now();
    for number in 0..indices {
        registry
            .create(
                &format!("daily-{number:04}"),
                &json!({"number_of_shards": SHARDS_PER_INDEX}),
                &json!({}),
            )
            .expect("creating an index");
    }
    started.elapsed()
}

/// One run with resource readings, printed.
fn resources(indices: usize) {
    let shards = indices * SHARDS_PER_INDEX;
    let dir = temp_dir();
    let baseline = Resources::now();
    let registry = Indices::open(dir.path()).expect("opening the data directory");
    let created = create_all(&registry, indices);
    std::thread::sleep(SETTLE);
    let after_create = Resources::now();
    let started = Instant::now();
    drop(registry);
    let dropped = started.elapsed();
    let started = Instant::now();
    let registry = Indices::open(dir.path()).expect("reopening the data directory");
    let reopened = started.elapsed();
    assert_eq!(registry.names().len(), indices, "every index reopened");
    std::thread::sleep(SETTLE);
    let after_open = Resources::now();
    eprintln!(
        "idle_shards: {indices} indices x {SHARDS_PER_INDEX} shards = {shards} shards; create \
         {:.2} s ({:.1} ms per shard), drop (shutdown) {:.2} s, Indices::open {:.2} s",
        created.as_secs_f64(),
        created.as_secs_f64() * 1000.0 / shards as f64,
        dropped.as_secs_f64(),
        reopened.as_secs_f64()
    );
    eprintln!(
        "idle_shards baseline: VmRSS {:.1} MiB, threads {}, open files {}",
        mib(baseline.rss_bytes),
        baseline.threads,
        baseline.open_files
    );
    after_create.report("after create", &baseline, shards);
    after_open.report("after reopen", &baseline, shards);
    drop(registry);
}

fn idle_shards(c: &mut Criterion) {
    let indices = env_usize("TANDEM_BENCH_IDLE_INDICES", 500);
    resources(indices);
    let mut group = c.benchmark_group("idle_shards");
    // One whole run per sample; ten samples.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_millis(1));
    group.bench_function(format!("create_{indices}x{SHARDS_PER_INDEX}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = temp_dir();
                let registry = Indices::open(dir.path()).expect("opening the data directory");
                total += create_all(&registry, indices);
            }
            total
        })
    });
    group.bench_function(format!("open_{indices}x{SHARDS_PER_INDEX}"), |b| {
        let dir = temp_dir();
        let registry = Indices::open(dir.path()).expect("opening the data directory");
        create_all(&registry, indices);
        drop(registry);
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let registry = Indices::open(dir.path()).expect("reopening the data directory");
                total += started.elapsed();
                drop(registry);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, idle_shards);
criterion_main!(benches);
