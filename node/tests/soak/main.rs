//! The soak: two real `tandem` processes, a leader and a follower that reaches it through a
//! TCP fault proxy (its remote cluster's seed is the proxy). A leader index of 2 shards is
//! followed while writers send `_bulk` and single-document requests (new documents, 30%
//! updates, 10% deletes, bad documents mixed in: each must get its 4xx, never a 5xx), and a
//! trouble maker breaks the network every few seconds (each of the proxy's faults, held 1-8 s)
//! or kills the follower (SIGKILL) and starts it again. Both processes' RSS is sampled every
//! second.
//!
//! At the end the network heals and writing stops; the follower must reach the leader's
//! max_seq_no on every shard within [`CONVERGE_WITHIN`], both sides must hold the same
//! documents (which are the writers' model) and the same histories, `_ccr/stats` must show no
//! fatal exception, a restarted follower must not have copied the leader's files again, and
//! each process's RSS must have stayed under [`RSS_BOUND_BYTES`]. A summary is printed either
//! way (`--nocapture` shows it).
//!
//! `TANDEM_SOAK_SECS` sets how long the trouble lasts (default [`DEFAULT_SOAK_SECS`]);
//! `TANDEM_SOAK_SEED` replays a run's choices (its seed is printed first).

#[path = "../common/mod.rs"]
mod common;

mod chaos;
mod checks;
mod ingest;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{EsClient, TandemProcess};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use tandem_testkit::fault_proxy::FaultProxy;
use tandem_testkit::memory::RssSampler;
use tandem_transport::HttpLeaderClient;

/// How long the trouble lasts by default (what CI runs).
const DEFAULT_SOAK_SECS: u64 = 120;
/// Neither process's RSS may go past this.
const RSS_BOUND_BYTES: u64 = 1 << 30;
/// No shard of either process may end with more segments: with the whole history retained,
/// segments merge only because the engine carries their history forward (`shard::carry`);
/// without that the count grows with every refresh (2,366 on the leader after 10 minutes).
const SEGMENTS_BOUND: usize = 100;
/// After the last heal, the follower must hold every operation within this.
const CONVERGE_WITHIN: Duration = Duration::from_secs(120);
/// The leader index.
pub const LEADER_INDEX: &str = "logs";
/// The follower index.
pub const FOLLOWER_INDEX: &str = "logs-copy";
/// Shards of the leader index.
pub const SHARDS: u32 = 2;
/// `index.soft_deletes.retention.operations` of the leader index, which the follower index
/// inherits: both keep their whole history, so that the histories can be compared from seq_no
/// 0 (with leases alone, each side may merge away what is below its own retention floor).
const RETAINED_OPERATIONS: u64 = 1_000_000_000;
/// Concurrent writers.
const WORKERS: usize = 2;
/// Writing goes on this long before the follow starts (the follower copies files, then
/// replicates what follows).
const WRITES_BEFORE_FOLLOW: Duration = Duration::from_secs(3);

/// The two processes, the proxy between them and the RSS sampler watching them.
pub struct Cluster {
    /// When the cluster started (the summary's clock).
    pub started: Instant,
    dir: tempfile::TempDir,
    leader: TandemProcess,
    follower: Option<TandemProcess>,
    follower_data: PathBuf,
    follower_address: String,
    /// Between the follower and the leader.
    pub proxy: FaultProxy,
    sampler: RssSampler,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let sampler = RssSampler::start(Duration::from_secs(1));
        let leader = TandemProcess::start("leader", &dir.path().join("leader"));
        sampler.watch("leader", leader.pid());
        let follower_data = dir.path().join("follower");
        let follower = TandemProcess::start("follower", &follower_data);
        sampler.watch("follower", follower.pid());
        let proxy = FaultProxy::start(leader.address().parse().expect("leader address")).await;
        Cluster {
            started: Instant::now(),
            dir,
            follower_address: follower.address().to_string(),
            leader,
            follower: Some(follower),
            follower_data,
            proxy,
            sampler,
        }
    }

    fn leader(&self) -> EsClient {
        self.leader.client()
    }

    fn follower(&self) -> EsClient {
        EsClient::new(&format!("http://{}", self.follower_address))
    }

    /// The leader's transport, read directly (not through the proxy).
    fn leader_transport(&self) -> HttpLeaderClient {
        HttpLeaderClient::new(vec![self.leader.address().to_string()])
    }

    /// The follower's transport (it serves its follower index's history like any index).
    fn follower_transport(&self) -> HttpLeaderClient {
        HttpLeaderClient::new(vec![self.follower_address.clone()])
    }

    fn kill_follower(&mut self) {
        self.sampler.unwatch("follower");
        if let Some(mut follower) = self.follower.take() {
            follower.kill9();
        }
    }

    fn start_follower(&mut self) {
        let follower = tokio::task::block_in_place(|| {
            TandemProcess::start_on("follower", &self.follower_data, &self.follower_address)
        });
        self.sampler.watch("follower", follower.pid());
        self.follower = Some(follower);
    }

    /// The follower index's shards the running follower process copied from the leader.
    async fn follower_recoveries(&self) -> Vec<String> {
        let answer = self.follower().get("/_recovery").await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.body[FOLLOWER_INDEX]["shards"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|shard| format!("{FOLLOWER_INDEX}[{}] {}", shard["id"], shard["stage"]))
            .collect()
    }

    /// Creates the leader index and points the follower's remote cluster at the proxy.
    async fn prepare(&self) {
        let created = self
            .leader()
            .put(
                &format!("/{LEADER_INDEX}"),
                json!({
                    "settings": {
                        "number_of_shards": SHARDS,
                        "soft_deletes.retention.operations": RETAINED_OPERATIONS.to_string(),
                    },
                    "mappings": {"properties": {
                        "worker": {"type": "keyword"},
                        "bucket": {"type": "keyword"},
                        "n": {"type": "long"},
                        "body": {"type": "text"},
                    }},
                }),
            )
            .await;
        ingest::expect_status(&created, 200, "create the leader index");
        let remote = self
            .follower()
            .put(
                "/_cluster/settings",
                json!({"persistent": {"cluster": {"remote": {"leader": {
                    "seeds": [self.proxy.address.to_string()],
                }}}}}),
            )
            .await;
        ingest::expect_status(&remote, 200, "the follower's remote cluster");
    }

    async fn follow(&self) {
        let followed = self
            .follower()
            .put(
                &format!("/{FOLLOWER_INDEX}/_ccr/follow?wait_for_active_shards=1"),
                json!({"remote_cluster": "leader", "leader_index": LEADER_INDEX}),
            )
            .await;
        ingest::expect_status(&followed, 200, "follow");
    }
}

/// How long, and with which seed.
struct SoakSettings {
    duration: Duration,
    seed: u64,
}

impl SoakSettings {
    fn from_env() -> SoakSettings {
        let number = |name: &str| {
            std::env::var(name).ok().map(|value| {
                value
                    .trim()
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("{name}={value:?} is not a number"))
            })
        };
        let seed = number("TANDEM_SOAK_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos() as u64)
                .unwrap_or(0)
        });
        SoakSettings {
            duration: Duration::from_secs(number("TANDEM_SOAK_SECS").unwrap_or(DEFAULT_SOAK_SECS)),
            seed,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_and_follower_converge_through_faults_restarts_and_bad_documents() {
    let settings = SoakSettings::from_env();
    println!(
        "soak: seed {} (TANDEM_SOAK_SEED={} replays its choices), {} s of trouble",
        settings.seed,
        settings.seed,
        settings.duration.as_secs()
    );
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let mut cluster = Cluster::start().await;
    cluster.prepare().await;

    let tally = Arc::new(ingest::Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|number| {
            let worker = ingest::Worker::new(
                number,
                settings.seed,
                cluster.leader(),
                tally.clone(),
                stop.clone(),
            );
            tokio::spawn(worker.run())
        })
        .collect();
    tokio::time::sleep(WRITES_BEFORE_FOLLOW).await;
    cluster.follow().await;
    let trouble_until = Instant::now() + settings.duration;
    let chaos = chaos::run(&mut cluster, &mut rng, trouble_until).await;
    let healed = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let mut model = BTreeMap::new();
    for worker in workers {
        model.extend(worker.await.expect("a writer panicked").into_map());
    }

    let outcome = check(&cluster, &chaos, &model, healed, &mut rng).await;
    let rss = cluster.sampler.peaks();
    let segments = [
        ("leader", segment_counts(&cluster.dir.path().join("leader"))),
        ("follower", segment_counts(&cluster.follower_data)),
    ];
    print_summary(&settings, &cluster, &tally.counts(), &chaos, &outcome, &rss);
    for (name, counts) in &segments {
        println!("segments {name}: {counts:?} (per shard, from each last commit)");
    }

    let mut failures = outcome.problems;
    failures.extend(tally.counts().violations);
    failures.extend(
        chaos
            .copies_after_restart
            .iter()
            .map(|copy| format!("a restarted follower copied {copy} from the leader again")),
    );
    for (name, counts) in &segments {
        if counts.iter().any(|count| *count > SEGMENTS_BOUND) {
            failures.push(format!(
                "{name}: a shard ended with more than {SEGMENTS_BOUND} segments: {counts:?}"
            ));
        }
    }
    for (name, seen) in &rss {
        if seen.peak_bytes > RSS_BOUND_BYTES {
            failures.push(format!(
                "{name}: RSS peaked at {} MiB, over the {} MiB bound",
                seen.peak_bytes >> 20,
                RSS_BOUND_BYTES >> 20
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "soak with seed {} failed ({} problems; the first {}):\n{}",
        settings.seed,
        failures.len(),
        failures.len().min(20),
        failures
            .iter()
            .take(20)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The segment count of every shard under `data` (a node's data directory), read from the
/// `meta.json` of its last tantivy commit.
fn segment_counts(data: &std::path::Path) -> Vec<usize> {
    fn visit(dir: &std::path::Path, counts: &mut Vec<usize>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                visit(&path, counts);
            } else if path.file_name().is_some_and(|name| name == "meta.json") {
                let meta: serde_json::Value = std::fs::read(&path)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .unwrap_or_else(|| panic!("{} is not a tantivy meta.json", path.display()));
                counts.push(meta["segments"].as_array().map_or(0, Vec::len));
            }
        }
    }
    let mut counts = Vec::new();
    visit(data, &mut counts);
    counts.sort_unstable();
    counts
}

/// What the end checks found.
struct Outcome {
    converged: Option<Duration>,
    max_seq_nos: Vec<i64>,
    documents: usize,
    fetched: usize,
    failed_read_requests: u64,
    problems: Vec<String>,
}

async fn check(
    cluster: &Cluster,
    chaos: &chaos::ChaosReport,
    model: &BTreeMap<String, Value>,
    healed: Instant,
    rng: &mut StdRng,
) -> Outcome {
    let (leader, follower) = (cluster.leader_transport(), cluster.follower_transport());
    let mut outcome = Outcome {
        converged: None,
        max_seq_nos: Vec::new(),
        documents: 0,
        fetched: 0,
        failed_read_requests: 0,
        problems: Vec::new(),
    };
    match checks::wait_converged(&leader, &follower, CONVERGE_WITHIN).await {
        Ok(max_seq_nos) => {
            outcome.converged = Some(healed.elapsed());
            outcome.max_seq_nos = max_seq_nos;
        }
        Err(problem) => {
            outcome.problems.push(problem);
            return outcome;
        }
    }
    let (history_problems, history) =
        checks::compare_histories(&leader, &follower, &outcome.max_seq_nos).await;
    outcome.problems.extend(history_problems);
    let compared =
        checks::compare_documents(&cluster.leader(), &cluster.follower(), model, &history, rng)
            .await;
    outcome.documents = compared.count;
    outcome.fetched = compared.fetched;
    outcome.problems.extend(compared.problems);
    match checks::follow_stats(&cluster.follower()).await {
        Ok(stats) => {
            outcome.failed_read_requests = stats.failed_read_requests;
            outcome.problems.extend(stats.fatal_exceptions);
        }
        Err(problem) => outcome.problems.push(problem),
    }
    if chaos.restarts > 0 {
        let copies = cluster.follower_recoveries().await;
        outcome.problems.extend(
            copies
                .into_iter()
                .map(|copy| format!("the last restarted follower copied {copy} again")),
        );
    }
    outcome
}

fn print_summary(
    settings: &SoakSettings,
    cluster: &Cluster,
    counts: &ingest::Counts,
    chaos: &chaos::ChaosReport,
    outcome: &Outcome,
    rss: &BTreeMap<String, tandem_testkit::memory::RssPeak>,
) {
    let operations: u64 = counts.operations.values().sum();
    let bad: u64 = counts
        .bad
        .values()
        .flat_map(|statuses| statuses.values())
        .sum();
    let proxy = cluster.proxy.counters();
    println!("==== soak summary (seed {}) ====", settings.seed);
    println!(
        "ran {:.0} s, trouble for {} s; leader max_seq_no per shard {:?}; {} documents at the end ({} fetched one by one on each side)",
        cluster.started.elapsed().as_secs_f64(),
        settings.duration.as_secs(),
        outcome.max_seq_nos,
        outcome.documents,
        outcome.fetched
    );
    println!(
        "operations acknowledged: {operations} {:?}; requests {:?}",
        counts.operations, counts.requests
    );
    println!("bad documents: {bad}, by kind and status {:?}", counts.bad);
    println!(
        "faults: {} {:?}, held {:.0} s in all; follower kill -9 and restart: {}",
        chaos.faults.values().sum::<u64>(),
        chaos.faults,
        chaos.faulted.as_secs_f64(),
        chaos.restarts
    );
    println!(
        "proxy: {} connections, {} KiB to the leader, {} KiB to the follower; follower failed_read_requests {}",
        proxy.connections,
        proxy.bytes_to_leader >> 10,
        proxy.bytes_to_follower >> 10,
        outcome.failed_read_requests
    );
    for (name, seen) in rss {
        println!(
            "RSS {name}: peak {} MiB (peaks of its parts: anonymous {} MiB, file-backed {} MiB), last {} MiB ({} samples), bound {} MiB",
            seen.peak_bytes >> 20,
            seen.peak_anon_bytes >> 20,
            seen.peak_file_bytes >> 20,
            seen.last_bytes >> 20,
            seen.samples,
            RSS_BOUND_BYTES >> 20
        );
    }
    match outcome.converged {
        Some(took) => println!("converged {:.1} s after the last heal", took.as_secs_f64()),
        None => println!("did NOT converge within {CONVERGE_WITHIN:?} of the last heal"),
    }
    println!(
        "problems: {}, violations: {}",
        outcome.problems.len(),
        counts.violations.len()
    );
}
