//! What open long polls cost a leader node: one node in this process, serving HTTP on loopback
//! with a runtime built as the `tandem` binary builds its own, holding a caught-up leader index
//! (`leader`, one shard) and an unrelated index (`other`, one searchable document).
//!
//! `TANDEM_BENCH_POLLS` (default 1,000) followers' long polls are then opened on `leader` and
//! kept open: each is a real `POST /_tandem/v1/shard_changes` over its own loopback connection,
//! from the next sequence number with a 60 s poll timeout, sent again as soon as its answer
//! ends (as a follower's read loop does), so the polls stay open for the whole measurement.
//! A poll counts as open from its answer's headers (a long poll is answered at once as a
//! heartbeat stream) to the end of its body.
//!
//! Measured, first with no poll open (the baseline), then while the polls wait:
//! - `GET /` latency: `TANDEM_BENCH_ROOT_REQUESTS` (default 500) sequential requests on one
//!   keep-alive connection, p50 and p99 (target: p99 < 50 ms while the polls wait); criterion
//!   also times `GET /` in each state (`long_polls/get_root/*`);
//! - `GET /other/_search` latency: 50 sequential searches, each given 30 s, p50, p99 and how
//!   many ran out of time (a search needs the blocking pool, which a poll holding a blocking
//!   thread exhausts);
//! - threads: the process's thread count (`Threads` of `/proc/self/status`) and the node
//!   runtime's own threads (named `tandem-node`), before any poll and while they wait (target:
//!   unchanged).
//!
//! The file-descriptor limit is raised to its hard limit (two sockets per poll).
//!
//! Run: `cargo bench -p tandem-benches --bench long_polls`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use serde_json::json;
use tandem_benches::{env_usize, percentile, temp_dir};
use tandem_engine::shard::ChangesRequest;
use tandem_engine::SeqNo;
use tandem_node::config::NodeConfig;
use tandem_node::server::RunningNode;
use tandem_recovery::leader_api::{ShardChangesRequest, ShardId};

/// The allocator of the `tandem` binary, so the node here runs as the binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Long polls kept open, unless `TANDEM_BENCH_POLLS` says.
const POLLS: usize = 1_000;
/// `GET /` requests per latency run, unless `TANDEM_BENCH_ROOT_REQUESTS` says.
const ROOT_REQUESTS: usize = 500;
/// Searches per latency run.
const SEARCHES: usize = 50;
/// Longest a search may take before it counts as timed out.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Each poll's own timeout (the leader's longest).
const POLL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for every poll to be open.
const OPEN_WITHIN: Duration = Duration::from_secs(120);
/// Time given to the polls, once all are open, to reach their wait.
const SETTLE: Duration = Duration::from_secs(2);
/// Name of the node runtime's threads.
const NODE_THREAD_NAME: &str = "tandem-node";
const SHARD_CHANGES_PATH: &str = "/_tandem/v1/shard_changes";

/// Raises the soft limit of open files to the hard one.
fn raise_open_files_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit on a properly initialised struct of this process.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        limit.rlim_cur
    }
}

/// `Threads` of `/proc/self/status`.
fn process_threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
        .expect("a Threads line")
}

/// Threads of this process whose name starts with `prefix` (`/proc/self/task/*/comm`).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// The body of a caught-up follower's long poll of shard 0 of `leader` (at seq_no 0).
fn long_poll_body() -> Vec<u8> {
    serde_json::to_vec(&ShardChangesRequest {
        shard: ShardId::new("leader", 0),
        changes: ChangesRequest {
            from_seq_no: SeqNo(1),
            max_operation_count: 1024,
            max_batch_size: 1024 * 1024,
            poll_timeout: POLL_TIMEOUT,
            expected_history_uuid: None,
        },
    })
    .expect("a request body")
}

/// Latencies in milliseconds of `count` sequential `GET {path}` answered 200 within
/// `timeout`, and how many were not.
async fn latencies(
    http: &reqwest::Client,
    url: &str,
    count: usize,
    timeout: Duration,
) -> (Vec<f64>, usize) {
    let mut took = Vec::with_capacity(count);
    let mut failed = 0;
    for _ in 0..count {
        let started = Instant::now();
        let answered = tokio::time::timeout(timeout, async {
            let response = http.get(url).send().await.ok()?;
            let ok = response.status().is_success();
            response.bytes().await.ok().filter(|_| ok)
        })
        .await;
        match answered {
            Ok(Some(_)) => took.push(started.elapsed().as_secs_f64() * 1000.0),
            _ => failed += 1,
        }
    }
    (took, failed)
}

fn summary(what: &str, (took, failed): &(Vec<f64>, usize)) -> String {
    format!(
        "{what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} answered, {failed} failed or timed out",
        percentile(took, 50.0),
        percentile(took, 99.0),
        percentile(took, 100.0),
        took.len()
    )
}

/// Keeps `count` long polls open on `url` until the runtime stops: each sends its poll again
/// as soon as the answer ends. `open` counts the polls whose answer has started and not ended.
fn open_polls(runtime: &tokio::runtime::Runtime, url: &str, count: usize, open: Arc<AtomicUsize>) {
    tandem_transport::tls::install_default_provider();
    let body = long_poll_body();
    for _ in 0..count {
        let (url, body, open) = (url.to_string(), body.clone(), open.clone());
        runtime.spawn(async move {
            // One connection per poll, as each follower shard task's read holds one.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("a client");
            loop {
                let Ok(response) = http.post(&url).body(body.clone()).send().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                open.fetch_add(1, Ordering::SeqCst);
                let _ = response.bytes().await;
                open.fetch_sub(1, Ordering::SeqCst);
            }
        });
    }
}

fn node_runtime() -> tokio::runtime::Runtime {
    // As `tandem` builds its runtime (default workers and blocking pool), named to be counted.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(NODE_THREAD_NAME)
        .build()
        .expect("the node runtime")
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let polls = env_usize("TANDEM_BENCH_POLLS", POLLS);
    let root_requests = env_usize("TANDEM_BENCH_ROOT_REQUESTS", ROOT_REQUESTS);
    let open_files = raise_open_files_limit();
    let dir = temp_dir();
    let node_runtime = node_runtime();
    let node = node_runtime.block_on(async {
        RunningNode::start(NodeConfig {
            data: dir.path().join("node"),
            http: "127.0.0.1:0".parse().expect("a loopback address"),
            name: "leader".to_string(),
            indexing_buffer_bytes: tandem_node::config::default_indexing_buffer_bytes(),
            http_limits: tandem_node::http::HttpLimits::default(),
            tls: None,
            security: false,
            insecure: false,
        })
        .await
        .expect("the node starts")
    });
    let base = node.url();
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("bench-client")
        .build()
        .expect("the clients' runtime");
    tandem_transport::tls::install_default_provider();
    let http = reqwest::Client::new();
    clients.block_on(async {
        for index in ["leader", "other"] {
            let created = http
                .put(format!("{base}/{index}"))
                .json(&json!({"settings": {"number_of_shards": 1}}))
                .send()
                .await
                .expect("create an index");
            assert!(created.status().is_success(), "{}", created.status());
            let written = http
                .put(format!("{base}/{index}/_doc/0?refresh=true"))
                .json(&json!({"body": "first"}))
                .send()
                .await
                .expect("write a document");
            assert!(written.status().is_success(), "{}", written.status());
        }
    });
    let root = format!("{base}/");
    let search = format!("{base}/other/_search");
    let measure = |state: &str| {
        let (root_latencies, search_latencies) = clients.block_on(async {
            let root = latencies(&http, &root, root_requests, SEARCH_TIMEOUT).await;
            let search = latencies(&http, &search, SEARCHES, SEARCH_TIMEOUT).await;
            (root, search)
        });
        println!("{}", summary(&format!("GET / ({state})"), &root_latencies));
        println!(
            "{}",
            summary(&format!("GET /other/_search ({state})"), &search_latencies)
        );
    };

    // Baseline: no poll open.
    measure("warm-up");
    let threads_before = (process_threads(), threads_named(NODE_THREAD_NAME));
    measure("no poll open");
    criterion.bench_function("long_polls/get_root/no_poll_open", |bencher| {
        bencher.iter(|| {
            clients.block_on(async { http.get(&root).send().await.unwrap().bytes().await.unwrap() })
        })
    });

    // The polls.
    let open = Arc::new(AtomicUsize::new(0));
    let opened = Instant::now();
    open_polls(
        &clients,
        &format!("{base}{SHARD_CHANGES_PATH}"),
        polls,
        open.clone(),
    );
    while open.load(Ordering::SeqCst) < polls {
        assert!(
            opened.elapsed() < OPEN_WITHIN,
            "only {} of {polls} polls open after {OPEN_WITHIN:?}",
            open.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "{polls} polls open after {:?} (open files limit {open_files})",
        opened.elapsed()
    );
    std::thread::sleep(SETTLE);
    let threads_waiting = (process_threads(), threads_named(NODE_THREAD_NAME));
    measure(&format!("{polls} polls waiting"));
    criterion.bench_function(
        &format!("long_polls/get_root/{polls}_polls_waiting"),
        |bencher| {
            bencher.iter(|| {
                clients.block_on(async {
                    http.get(&root).send().await.unwrap().bytes().await.unwrap()
                })
            })
        },
    );
    let threads_after = (process_threads(), threads_named(NODE_THREAD_NAME));
    println!(
        "threads (process, node runtime): {threads_before:?} before any poll, \
         {threads_waiting:?} while {polls} polls wait, {threads_after:?} after the criterion runs; \
         {} polls open at the end",
        open.load(Ordering::SeqCst)
    );
    criterion.final_summary();
    // The pollers are dropped with their runtime; the node's polls end with it.
    node.node.leader.stop_long_polls();
    drop(clients);
    node_runtime.block_on(node.stop());
}
