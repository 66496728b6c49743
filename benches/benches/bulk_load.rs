//! A bulk load with refresh disabled, the usual recipe, and what it costs in memory and disk:
//! `TANDEM_BENCH_BULK_DOCS` (default 10,000,000) ~200-byte `server-metrics` documents sent as
//! `_bulk` requests of 1,000 by 4 concurrent clients over loopback HTTP into one node in this
//! process, one index of one shard created with `refresh_interval: -1`.
//!
//! Every 100 ms a sampler reads the process's resident memory (`VmRSS` of `/proc/self/status`,
//! and its anonymous and file-backed parts, `RssAnon` and `RssFile`: the second is the mapped
//! segment files, page cache the kernel reclaims under pressure) and the bytes of the shard's
//! translog directory. Printed at the end:
//! - peak RSS (target <= 1 GiB), RSS after 2 M documents and at the end (target: within 20%);
//! - peak translog bytes (target: at most `index.translog.flush_threshold_size`, 512 MiB by
//!   default, plus one generation);
//! - the ingest rate in documents per second, until the last bulk is acknowledged;
//! - the RSS profile: the peak RSS (anonymous and file-backed) in each tenth of the load, and
//!   the last tenth's peak against the peak of the tenth that ends at 2 M documents. The
//!   indexing buffer fills and is refreshed in a sawtooth of up to its size, so two single
//!   samples can differ by the whole buffer with nothing growing; peaks of equal windows do not.
//!
//! The node's indexing buffer is the default (`indices.memory.index_buffer_size`, 10% of this
//! machine's memory, at most 256 MiB), as the `tandem` binary sets it. RSS includes the clients,
//! whose bulk bodies are built one at a time per client (a few MB in all).
//!
//! One load is the whole measurement: minutes long, it is run once rather than sampled by
//! criterion. Run: `cargo bench -p tandem-benches --bench bulk_load` (small:
//! `TANDEM_BENCH_BULK_DOCS=1000000`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;
use tandem_benches::{env_usize, generate_doc, per_second, temp_dir};
use tandem_node::config::NodeConfig;
use tandem_node::server::RunningNode;

/// The allocator of the `tandem` binary, so the node here runs as the binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Concurrent `_bulk` clients.
const CLIENTS: usize = 4;
/// Documents per `_bulk` request.
const BULK_DOCS: usize = 1_000;
/// Documents after which the "early" RSS is read.
const EARLY_DOCS: u64 = 2_000_000;
const MIB: f64 = 1024.0 * 1024.0;

/// Resident memory of this process, in bytes: all of it (`VmRSS`), its anonymous pages
/// (`RssAnon`: heap, stacks, buffers) and its file-backed pages (`RssFile`: mapped segment
/// files, page cache the kernel may reclaim).
#[derive(Clone, Copy, Default)]
struct Rss {
    total: u64,
    anon: u64,
    file: u64,
}

fn rss() -> Rss {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| {
                let kib = line.strip_prefix(name)?.trim().strip_suffix("kB")?;
                kib.trim().parse::<u64>().ok()
            })
            .map_or(0, |kib| kib * 1024)
    };
    Rss {
        total: field("VmRSS:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
    }
}

/// Bytes of the files of every `translog` directory under `dir`.
fn translog_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|name| name == "translog") {
            total += std::fs::read_dir(&path)
                .map(|files| {
                    files
                        .flatten()
                        .filter_map(|file| file.metadata().ok())
                        .map(|metadata| metadata.len())
                        .sum::<u64>()
                })
                .unwrap_or(0);
        } else {
            total += translog_bytes(&path);
        }
    }
    total
}

/// Windows the load is cut into for the RSS profile (a tenth of the documents each).
const WINDOWS: u64 = 10;

/// What the sampler saw.
#[derive(Default)]
struct Samples {
    /// Per window of acknowledged documents, the largest RSS seen in it: the node's indexing
    /// buffer fills and is refreshed in a sawtooth, so a window's peak compares load to load
    /// where one sample would compare a full buffer with an empty one.
    windows: parking_lot::Mutex<Vec<Rss>>,
    peak_rss: AtomicU64,
    peak_anon: AtomicU64,
    peak_file: AtomicU64,
    early_rss: AtomicU64,
    early_anon: AtomicU64,
    peak_translog: AtomicU64,
}

fn bulk_body(rng: &mut StdRng, first: u64, docs: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(docs * 260);
    for sequence in first..first + docs as u64 {
        body.extend_from_slice(b"{\"index\":{}}\n");
        body.extend_from_slice(&generate_doc(rng, sequence));
        body.push(b'\n');
    }
    body
}

fn main() {
    tandem_benches::init_tracing_from_env();
    let docs = env_usize("TANDEM_BENCH_BULK_DOCS", 10_000_000) as u64;
    let data = temp_dir();
    let node_runtime = tandem_benches::runtime_on_cpus(2, None);
    let node = node_runtime
        .block_on(RunningNode::start(NodeConfig {
            data: data.path().to_path_buf(),
            http: "127.0.0.1:0".parse().expect("an address"),
            name: "bulk".to_string(),
            indexing_buffer_bytes: tandem_node::config::default_indexing_buffer_bytes(),
            http_limits: tandem_node::http::HttpLimits::default(),
            tls: None,
            security: false,
            insecure: false,
        }))
        .expect("starting a node");
    let url = node.url();
    let client_runtime = tandem_benches::runtime_on_cpus(2, None);
    tandem_transport::tls::install_default_provider();
    let http = reqwest::Client::new();
    client_runtime.block_on(async {
        let created = http
            .put(format!("{url}/bulk"))
            .json(&json!({
                "settings": {
                    "number_of_shards": 1,
                    "refresh_interval": "-1",
                },
                "mappings": tandem_benches::mappings_json(),
            }))
            .send()
            .await
            .expect("creating the index");
        assert!(created.status().is_success(), "{:?}", created.text().await);
    });

    let baseline_rss = rss().total;
    let samples = Arc::new(Samples::default());
    let acknowledged = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, acknowledged, done) = (samples.clone(), acknowledged.clone(), done.clone());
        let dir = data.path().to_path_buf();
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                let now = rss();
                let window = (acknowledged.load(Ordering::Acquire) * WINDOWS / docs.max(1))
                    .min(WINDOWS - 1) as usize;
                {
                    let mut windows = samples.windows.lock();
                    if windows.len() <= window {
                        windows.resize(window + 1, Rss::default());
                    }
                    let peak = &mut windows[window];
                    peak.total = peak.total.max(now.total);
                    peak.anon = peak.anon.max(now.anon);
                    peak.file = peak.file.max(now.file);
                }
                samples.peak_rss.fetch_max(now.total, Ordering::AcqRel);
                samples.peak_anon.fetch_max(now.anon, Ordering::AcqRel);
                samples.peak_file.fetch_max(now.file, Ordering::AcqRel);
                if acknowledged.load(Ordering::Acquire) >= EARLY_DOCS
                    && samples.early_rss.load(Ordering::Acquire) == 0
                {
                    samples.early_anon.store(now.anon, Ordering::Release);
                    samples.early_rss.store(now.total, Ordering::Release);
                }
                samples
                    .peak_translog
                    .fetch_max(translog_bytes(&dir), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    client_runtime.block_on(async {
        let mut clients = Vec::new();
        for client in 0..CLIENTS {
            let (http, url, next, acknowledged) = (
                http.clone(),
                url.clone(),
                next.clone(),
                acknowledged.clone(),
            );
            clients.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(0xB01C ^ client as u64);
                loop {
                    let first = next.fetch_add(BULK_DOCS as u64, Ordering::AcqRel);
                    if first >= docs {
                        break;
                    }
                    let count = BULK_DOCS.min((docs - first) as usize);
                    let body = bulk_body(&mut rng, first, count);
                    let response = http
                        .post(format!("{url}/bulk/_bulk"))
                        .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                        .body(body)
                        .send()
                        .await
                        .expect("sending a bulk");
                    let status = response.status();
                    let answer: serde_json::Value =
                        response.json().await.expect("a JSON bulk answer");
                    assert!(status.is_success(), "bulk: {status} {answer}");
                    assert_eq!(answer["errors"], false, "bulk: {answer}");
                    acknowledged.fetch_add(count as u64, Ordering::AcqRel);
                }
            }));
        }
        for client in clients {
            client.await.expect("a bulk client");
        }
    });
    let elapsed = started.elapsed();
    let end = rss();
    let end_rss = end.total;
    done.store(true, Ordering::Release);
    sampler.join().expect("the sampler");
    let peak_rss = samples.peak_rss.load(Ordering::Acquire).max(end_rss);
    let early_rss = samples.early_rss.load(Ordering::Acquire);
    let early_anon = samples.early_anon.load(Ordering::Acquire);
    let peak_anon = samples.peak_anon.load(Ordering::Acquire).max(end.anon);
    let peak_file = samples.peak_file.load(Ordering::Acquire).max(end.file);
    let peak_translog = samples.peak_translog.load(Ordering::Acquire);

    eprintln!(
        "bulk_load: {docs} docs in {:.1} s: {:.0} docs/s",
        elapsed.as_secs_f64(),
        per_second(docs as usize, elapsed)
    );
    eprintln!(
        "bulk_load: RSS before {:.0} MiB, peak {:.0} MiB (target <= 1024), after {} docs {:.0} MiB, at the end {:.0} MiB (end/early = {:.3}, target within 0.8..1.2)",
        baseline_rss as f64 / MIB,
        peak_rss as f64 / MIB,
        EARLY_DOCS,
        early_rss as f64 / MIB,
        end_rss as f64 / MIB,
        if early_rss > 0 { end_rss as f64 / early_rss as f64 } else { 0.0 },
    );
    eprintln!(
        "bulk_load: of which anonymous (heap): peak {:.0} MiB, after {} docs {:.0} MiB, at the end {:.0} MiB (end/early = {:.3}); file-backed (mapped segments, reclaimable): peak {:.0} MiB, at the end {:.0} MiB",
        peak_anon as f64 / MIB,
        EARLY_DOCS,
        early_anon as f64 / MIB,
        end.anon as f64 / MIB,
        if early_anon > 0 { end.anon as f64 / early_anon as f64 } else { 0.0 },
        peak_file as f64 / MIB,
        end.file as f64 / MIB,
    );
    let windows = samples.windows.lock().clone();
    for (number, peak) in windows.iter().enumerate() {
        eprintln!(
            "bulk_load: docs {:>5.1} M..{:>5.1} M: peak RSS {:>5.0} MiB = anonymous {:>5.0} + file-backed {:>5.0}",
            (number as u64 * docs / WINDOWS) as f64 / 1e6,
            ((number as u64 + 1) * docs / WINDOWS) as f64 / 1e6,
            peak.total as f64 / MIB,
            peak.anon as f64 / MIB,
            peak.file as f64 / MIB,
        );
    }
    // The window that ends at EARLY_DOCS against the last one: peak against peak.
    let early_window = ((EARLY_DOCS * WINDOWS / docs.max(1)).max(1) - 1) as usize;
    if let (Some(early), Some(last)) = (windows.get(early_window), windows.last()) {
        eprintln!(
            "bulk_load: window peaks, last / the one ending at {} docs: RSS {:.3}, anonymous {:.3} (target within 0.8..1.2)",
            EARLY_DOCS,
            last.total as f64 / early.total.max(1) as f64,
            last.anon as f64 / early.anon.max(1) as f64,
        );
    }
    eprintln!(
        "bulk_load: translog peak {:.0} MiB (target <= flush threshold 512 MiB + one generation)",
        peak_translog as f64 / MIB
    );
    node_runtime.block_on(node.stop());
}
