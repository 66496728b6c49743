//! How long a dead connection costs replication, per kind of fault: two nodes in this process
//! (leader and follower, each serving HTTP on loopback from its own runtime, as two processes
//! would), the follower connected to the leader as a user connects it (`PUT _cluster/settings`
//! with `cluster.remote.leader.seeds`) but through a TCP fault proxy
//! (`tandem_testkit::fault_proxy`), following a one-shard leader index with a long-poll
//! `read_poll_timeout` of 30 s, so noticing a dead connection cannot come from a poll ending.
//!
//! For each fault kind (a black hole, a half-open connection, a slow drip of one byte per
//! second each way, resets, refused connections, answers cut 300 bytes into a frame), a fresh
//! pair of nodes runs `TANDEM_BENCH_DEADCONN_ROUNDS` (default 5) rounds, each:
//! - from a caught-up follower whose read in flight is a long poll, applies the fault for 6 s
//!   while the leader keeps writing (50 documents every 500 ms, over REST);
//! - detection: from the fault to the first new failed read in `GET /{follower}/_ccr/stats`
//!   (`failed_read_requests`; its `read_exceptions` entry gives the reason), sampled every
//!   20 ms (target <= 5 s);
//! - heals, writes 50 more documents, and measures resume: from the heal to the follower's
//!   global checkpoint reaching the leader's (target <= 10 s);
//! - checks the follower is identical to the leader (global checkpoints, max seq_nos, the
//!   history both still retain, every document, the live document count) and has no fatal
//!   exception; anything else stops the bench (as does a follower not caught up 60 s after the
//!   heal).
//!
//! Printed: each round's timings, then per fault kind the rounds, how many were detected while
//! the fault lasted, detection median and max, resume median and max, whether both targets
//! were met in every round, and one read exception reason.
//!
//! Each round is one event seconds long, so the bench runs its own loop rather than criterion's
//! sampling. Run: `cargo bench -p tandem-benches --bench dead_connections` (about 3.5 minutes;
//! `TANDEM_BENCH_DEADCONN_ROUNDS=1` for a quick look).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{start_node, Rest};
use serde_json::json;
use tandem_benches::{env_usize, median, temp_dir};
use tandem_engine::index::Index;
use tandem_engine::{EngineError, SeqNo, ShardEngine};
use tandem_node::server::RunningNode;
use tandem_replication::stats::ShardFollowStats;
use tandem_testkit::fault_proxy::{Fault, FaultProxy};
use tokio::runtime::Runtime;

/// The allocator of the `tandem` binary, so the nodes here run as the binary's do.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rounds per fault kind, unless `TANDEM_BENCH_DEADCONN_ROUNDS` says.
const ROUNDS: usize = 5;
/// Target: a dead connection is noticed this soon after it dies.
const DETECTED_WITHIN: Duration = Duration::from_secs(5);
/// Target: the follower holds every operation this soon after the network heals.
const RESUMED_WITHIN: Duration = Duration::from_secs(10);
/// How long each fault lasts: past the detection target, so it is noticed while it lasts.
const FAULT_LASTS: Duration = Duration::from_secs(6);
/// The follow's long-poll timeout: far longer than the detection target.
const READ_POLL_TIMEOUT: &str = "30s";
/// Past this after a heal (or before a round) without the follower caught up, the bench fails.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);
/// Time given to a caught-up follower to send its next read (a long poll) before a fault.
const SETTLE: Duration = Duration::from_millis(500);
/// How often the follower's stats and checkpoint are read.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// The leader gets [`WRITE_DOCS`] documents this often while a fault lasts.
const WRITE_EVERY: Duration = Duration::from_millis(500);
/// Documents per leader write.
const WRITE_DOCS: u64 = 50;
/// Document ids cycle over this many (later writes update earlier documents).
const IDS: u64 = 40;
/// The follower cluster's alias of the leader cluster.
const REMOTE: &str = "leader";
const LEADER_INDEX: &str = "logs";
const FOLLOWER_INDEX: &str = "logs-copy";

/// The faults measured, with their labels.
fn faults() -> [(&'static str, Fault); 6] {
    [
        ("black hole", Fault::BlackHole),
        ("half-open", Fault::HalfOpen),
        ("drip 1 B/s", Fault::Drip(Duration::from_secs(1))),
        ("reset", Fault::Reset),
        ("refused", Fault::Refused),
        ("cut mid-frame", Fault::CutAfter(300)),
    ]
}

/// A leader node, a fault proxy in front of it, and a follower node following the leader's
/// index through the proxy.
struct Cluster {
    _data: tempfile::TempDir,
    leader_runtime: Runtime,
    follower_runtime: Runtime,
    leader: RunningNode,
    follower: RunningNode,
    proxy: FaultProxy,
    on_leader: Rest,
    on_follower: Rest,
    /// Documents written to the leader so far.
    written: u64,
}

/// What one fault did to replication.
struct Round {
    /// From the fault to the first new failed read, if one failed while it lasted.
    detected: Option<Duration>,
    /// The read exception seen at detection, `type: reason`.
    exception: Option<String>,
    /// From the heal to the follower holding every operation of the leader.
    resumed: Duration,
    /// Operations of history found identical on both after the round.
    compared: usize,
}

impl Cluster {
    /// Starts both nodes and the proxy, creates the leader index, follows it through the proxy
    /// and waits for the follower to catch up. The proxy, the REST clients and the measurement
    /// loop run on `clients`.
    fn start(clients: &Runtime) -> Cluster {
        let data = temp_dir();
        let leader_runtime = tandem_benches::runtime_on_cpus(2, None);
        let follower_runtime = tandem_benches::runtime_on_cpus(2, None);
        let leader = start_node(&leader_runtime, data.path().join("leader"), "leader");
        let follower = start_node(&follower_runtime, data.path().join("follower"), "follower");
        let proxy = clients.block_on(FaultProxy::start(leader.address));
        let mut cluster = Cluster {
            _data: data,
            on_leader: Rest::new(leader.url()),
            on_follower: Rest::new(follower.url()),
            leader_runtime,
            follower_runtime,
            leader,
            follower,
            proxy,
            written: 0,
        };
        clients.block_on(cluster.connect());
        cluster
    }

    async fn connect(&mut self) {
        let seeds = json!([self.proxy.address.to_string()]);
        self.on_follower
            .put(
                "/_cluster/settings",
                json!({"persistent": {"cluster": {"remote": {REMOTE: {"seeds": seeds}}}}}),
            )
            .await;
        self.on_leader
            .put(
                &format!("/{LEADER_INDEX}"),
                json!({"settings": {"index": {"number_of_shards": 1}}}),
            )
            .await;
        self.write(100).await;
        let answer = self
            .on_follower
            .put(
                &format!("/{FOLLOWER_INDEX}/_ccr/follow?wait_for_active_shards=1"),
                json!({
                    "remote_cluster": REMOTE,
                    "leader_index": LEADER_INDEX,
                    "read_poll_timeout": READ_POLL_TIMEOUT,
                }),
            )
            .await;
        assert_eq!(answer["index_following_started"], true, "{answer}");
        self.write(100).await;
        assert!(
            self.wait_caught_up(CATCH_UP_DEADLINE).await.is_some(),
            "the follower did not catch up within {CATCH_UP_DEADLINE:?} of the follow"
        );
    }

    /// Writes `count` documents on the leader (updates of earlier ones as ids cycle), each
    /// with a distinct body so that answers do not compress to nothing.
    async fn write(&mut self, count: u64) {
        let mut body = Vec::new();
        for n in self.written..self.written + count {
            body.extend_from_slice(
                format!("{{\"index\":{{\"_id\":\"doc-{}\"}}}}\n", n % IDS).as_bytes(),
            );
            let source = json!({
                "n": n,
                "body": format!("{n:x}-{}", "payload ".repeat((n % 7) as usize + 3)),
            });
            body.extend_from_slice(source.to_string().as_bytes());
            body.push(b'\n');
        }
        self.on_leader.bulk(LEADER_INDEX, body).await;
        self.written += count;
    }

    fn leader_index(&self) -> Arc<Index> {
        self.leader
            .node
            .indices
            .get(LEADER_INDEX)
            .expect("the leader index")
    }

    fn follower_index(&self) -> Arc<Index> {
        self.follower
            .node
            .indices
            .get(FOLLOWER_INDEX)
            .expect("the follower index")
    }

    /// The follower shard's `_ccr/stats`, read over REST.
    async fn stats(&self) -> ShardFollowStats {
        let answer = self
            .on_follower
            .get(&format!("/{FOLLOWER_INDEX}/_ccr/stats"))
            .await;
        serde_json::from_value(answer["indices"][0]["shards"][0].clone())
            .unwrap_or_else(|error| panic!("follower stats {answer}: {error}"))
    }

    /// Waits until the follower's global checkpoint reaches the leader's; returns how long it
    /// took, or `None` past `within`.
    async fn wait_caught_up(&self, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let (leader, follower) = (self.leader_index(), self.follower_index());
        while started.elapsed() < within {
            if follower.shards()[0].global_checkpoint() >= leader.shards()[0].global_checkpoint() {
                return Some(started.elapsed());
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
        None
    }

    /// Runs one round of `fault` on `clients`, then checks the follower is identical to the
    /// leader.
    fn round(&mut self, clients: &Runtime, fault: Fault) -> Round {
        let mut round = clients.block_on(self.fault_round(fault));
        round.compared = self.assert_identical();
        round
    }

    /// From a caught-up follower, applies `fault` for [`FAULT_LASTS`] while the leader keeps
    /// writing, heals, and waits for the follower to catch up.
    async fn fault_round(&mut self, fault: Fault) -> Round {
        assert!(
            self.wait_caught_up(CATCH_UP_DEADLINE).await.is_some(),
            "the follower is not caught up before {fault:?}"
        );
        // Caught up: the follower's read in flight is a long poll.
        tokio::time::sleep(SETTLE).await;
        let failed_before = self.stats().await.failed_read_requests;
        self.proxy.set(fault);
        let started = Instant::now();
        let (mut detected, mut exception) = (None, None);
        let mut next_write = started + WRITE_EVERY;
        while started.elapsed() < FAULT_LASTS {
            if Instant::now() >= next_write {
                self.write(WRITE_DOCS).await;
                next_write += WRITE_EVERY;
            }
            if detected.is_none() {
                let stats = self.stats().await;
                if stats.failed_read_requests > failed_before {
                    detected = Some(started.elapsed());
                    let seen = stats.read_exceptions.first().unwrap_or_else(|| {
                        panic!("{fault:?}: a failed read without a read exception: {stats:?}")
                    });
                    exception = Some(format!(
                        "{}: {}",
                        seen.exception.error_type, seen.exception.reason
                    ));
                }
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
        self.proxy.heal();
        let healed = Instant::now();
        self.write(WRITE_DOCS).await;
        let caught_up = self.wait_caught_up(CATCH_UP_DEADLINE).await;
        let resumed = healed.elapsed();
        let stats = self.stats().await;
        assert!(
            caught_up.is_some(),
            "replication did not resume within {CATCH_UP_DEADLINE:?} after {fault:?} healed: \
             {stats:?}"
        );
        assert!(
            stats.fatal_exception.is_none(),
            "{fault:?}: a fatal exception: {stats:?}"
        );
        Round {
            detected,
            exception,
            resumed,
            compared: 0,
        }
    }

    /// Panics unless the follower holds the leader's checkpoints, history and documents;
    /// returns how many operations of history were compared.
    fn assert_identical(&self) -> usize {
        let (leader_index, follower_index) = (self.leader_index(), self.follower_index());
        let (leader, follower) = (&leader_index.shards()[0], &follower_index.shards()[0]);
        assert_eq!(
            leader.global_checkpoint(),
            follower.global_checkpoint(),
            "global checkpoints differ"
        );
        assert_eq!(
            leader.max_seq_no(),
            follower.max_seq_no(),
            "max seq_nos differ"
        );
        let (from, on_leader, on_follower) = retained_histories(leader, follower);
        assert!(
            on_leader == on_follower,
            "histories from seq_no {from} differ ({} and {} operations)",
            on_leader.len(),
            on_follower.len()
        );
        for n in 0..IDS {
            let id = format!("doc-{n}");
            let on_leader = leader_index.get(&id).expect("leader get");
            let on_follower = follower_index.get(&id).expect("follower get");
            assert_eq!(
                on_leader.map(|d| (d.seq_no, d.version, d.source)),
                on_follower.map(|d| (d.seq_no, d.version, d.source)),
                "document {id} differs"
            );
        }
        leader.refresh().expect("leader refresh");
        follower.refresh().expect("follower refresh");
        assert_eq!(
            leader.doc_count(),
            follower.doc_count(),
            "live document counts differ"
        );
        on_leader.len()
    }

    /// Stops the follower, then the proxy (on `clients`, where it runs), then the leader.
    fn stop(self, clients: &Runtime) {
        self.follower_runtime.block_on(self.follower.stop());
        {
            let _entered = clients.enter();
            drop(self.proxy);
        }
        self.leader_runtime.block_on(self.leader.stop());
    }
}

type History = Vec<(i64, u64, u64, String, Option<String>, Option<Vec<u8>>)>;

/// Times the histories are read again when a merge drops operations while they are read.
const HISTORY_ATTEMPTS: usize = 10;

/// The history both shards still retain (merges drop deleted documents below a shard's
/// `min_retained_seq_no`, the follower's retention lease on the leader keeps only what it has
/// not copied): where it starts, the leader's and the follower's.
fn retained_histories(leader: &ShardEngine, follower: &ShardEngine) -> (i64, History, History) {
    for _ in 0..HISTORY_ATTEMPTS {
        let from = leader
            .min_retained_seq_no()
            .max(follower.min_retained_seq_no());
        if let (Some(on_leader), Some(on_follower)) =
            (history(leader, from), history(follower, from))
        {
            return (from.0, on_leader, on_follower);
        }
    }
    panic!("the retained history kept moving over {HISTORY_ATTEMPTS} reads");
}

/// Every operation of `shard`'s history from `from`, in seq_no order; `None` if a merge has
/// dropped some of it. Panics on a gap or any other error.
fn history(shard: &ShardEngine, from: SeqNo) -> Option<History> {
    let max = shard.max_seq_no();
    let mut out = History::new();
    let mut from = from.0;
    while from <= max.0 {
        let batch = match shard.changes(SeqNo(from), max, 1000, usize::MAX) {
            Ok(batch) => batch,
            Err(EngineError::MissingHistory { .. }) => return None,
            Err(error) => panic!("changes from {from}: {error}"),
        };
        assert!(!batch.is_empty(), "history stops at {from}");
        for operation in batch {
            assert_eq!(operation.seq_no.0, from, "a gap in the history");
            from = operation.seq_no.0 + 1;
            out.push((
                operation.seq_no.0,
                operation.primary_term.0,
                operation.version,
                operation.op_type().name().to_string(),
                operation.id().map(str::to_string),
                operation.source().map(<[u8]>::to_vec),
            ));
        }
    }
    Some(out)
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

fn main() {
    tandem_benches::init_tracing_from_env();
    let rounds = env_usize("TANDEM_BENCH_DEADCONN_ROUNDS", ROUNDS).max(1);
    println!(
        "dead_connections: {rounds} rounds per fault, each fault lasting {FAULT_LASTS:?} while \
         the leader writes; follow read_poll_timeout {READ_POLL_TIMEOUT}; targets: detected \
         <= {DETECTED_WITHIN:?}, resumed <= {RESUMED_WITHIN:?} after the heal"
    );
    let clients = tandem_benches::runtime_on_cpus(2, None);
    let mut summaries = Vec::new();
    for (label, fault) in faults() {
        let mut cluster = Cluster::start(&clients);
        let mut results = Vec::with_capacity(rounds);
        for round in 1..=rounds {
            let result = cluster.round(&clients, fault);
            println!(
                "  {label:<14} round {round}: detected {}, resumed {:.2} s, {} operations \
                 identical{}",
                result
                    .detected
                    .map_or("never".to_string(), |d| format!("{:.2} s", seconds(d))),
                seconds(result.resumed),
                result.compared,
                result
                    .exception
                    .as_ref()
                    .map_or(String::new(), |e| format!(" ({e})")),
            );
            results.push(result);
        }
        cluster.stop(&clients);
        summaries.push((label, results));
    }
    println!();
    println!(
        "{:<14} {:>6} {:>8} {:>10} {:>10} {:>10} {:>10} {:>7}",
        "fault",
        "rounds",
        "detected",
        "det med s",
        "det max s",
        "res med s",
        "res max s",
        "targets"
    );
    let mut reasons = Vec::new();
    for (label, results) in &summaries {
        let detections: Vec<f64> = results
            .iter()
            .filter_map(|r| r.detected.map(seconds))
            .collect();
        let resumes: Vec<f64> = results.iter().map(|r| seconds(r.resumed)).collect();
        let max = |values: &[f64]| values.iter().copied().fold(f64::NAN, f64::max);
        let met = detections.len() == results.len()
            && max(&detections) <= DETECTED_WITHIN.as_secs_f64()
            && max(&resumes) <= RESUMED_WITHIN.as_secs_f64();
        let or_dash = |value: f64| {
            if value.is_nan() {
                "-".to_string()
            } else {
                format!("{value:.2}")
            }
        };
        println!(
            "{label:<14} {:>6} {:>8} {:>10} {:>10} {:>10.2} {:>10.2} {:>7}",
            results.len(),
            format!("{}/{}", detections.len(), results.len()),
            or_dash(if detections.is_empty() {
                f64::NAN
            } else {
                median(&detections)
            }),
            or_dash(max(&detections)),
            median(&resumes),
            max(&resumes),
            if met { "met" } else { "MISSED" },
        );
        let reason = results
            .iter()
            .find_map(|r| r.exception.clone())
            .unwrap_or_else(|| "(none seen)".to_string());
        reasons.push((label, reason));
    }
    println!();
    for (label, reason) in reasons {
        println!("{label:<14} {reason}");
    }
}
