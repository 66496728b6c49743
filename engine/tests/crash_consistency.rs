//! Invariant 1 (DESIGN.md §7): an acknowledged write survives `kill -9` of the process at any
//! moment.
//!
//! The test binary re-executes itself: `crash_writer_child` (ignored, a no-op unless
//! [`ENV_DIR`] is set) opens the shard and runs writer threads (single index/delete, bulks of
//! index/delete, no-ops) and a refresh/force-merge thread forever; after each write is
//! acknowledged it prints one line `ACK <seq_no> <term> <version> <op> <id|-> <hash|->` to
//! stdout. The parent (`acknowledged_writes_survive_sigkill`) runs `TANDEM_CRASH_CYCLES`
//! cycles (default 20): spawn the child, sleep a seeded random time, SIGKILL it, then reopen
//! the shard (translog replay of the crash) and check that
//!
//! 1. every acknowledged operation is in the history exactly as acknowledged (a retention
//!    lease at 0 keeps all history, so this is exact);
//! 2. the local checkpoint covers every acknowledged seq_no, equals max_seq_no, and the history
//!    `[0, local_checkpoint]` is contiguous, without duplicates, and never changes below an
//!    earlier recovery's checkpoint;
//! 3. the live documents (`get` and the doc count) equal a replay of the history, and each id's
//!    versions run 1, 2, 3, ...;
//! 4. the latest acknowledged operation on each id wins unless a later one is in the history.
//!
//! Some cycles skip the verification, so the next child recovers the crashed shard itself (and
//! may be killed during that recovery). `TANDEM_CRASH_SEED` changes the seed; `TANDEM_CRASH_DIR`
//! runs in (and keeps) the given directory instead of a temporary one.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tandem_engine::shard::{DeleteRequest, IndexRequest, WriteRequest, WriteResult};
use tandem_engine::{Durability, PrimaryTerm, SeqNo, ShardConfig, ShardEngine};

const ENV_DIR: &str = "TANDEM_CRASH_CHILD_DIR";
const ENV_SEED: &str = "TANDEM_CRASH_CHILD_SEED";
const ENV_WRITERS: &str = "TANDEM_CRASH_CHILD_WRITERS";
const ENV_CYCLE: &str = "TANDEM_CRASH_CHILD_CYCLE";
const DEFAULT_CYCLES: usize = 20;
const DEFAULT_SEED: u64 = 0x7a4d_e17c_2a5b_0001;
/// Writer threads per child.
const WRITERS: u32 = 8;
/// Distinct writer ids; each cycle uses a window of `WRITERS` of them, so later cycles update
/// and delete documents written by earlier ones.
const WRITER_ID_SPACE: u32 = 12;
/// Document ids per writer id.
const IDS_PER_WRITER: u32 = 40;
const LEASE_ID: &str = "crash-consistency";
/// Time allowed for the whole run, per cycle, on top of a fixed allowance.
const TIME_PER_CYCLE: Duration = Duration::from_secs(10);
const TIME_FIXED: Duration = Duration::from_secs(120);

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn child_config() -> ShardConfig {
    ShardConfig {
        durability: Durability::Request,
        refresh_interval: Some(Duration::from_millis(50)),
        writer_memory_bytes: 32 * 1024 * 1024,
        indexing_threads: 2,
        ..ShardConfig::default()
    }
}

fn parent_config() -> ShardConfig {
    ShardConfig {
        durability: Durability::Request,
        refresh_interval: None,
        writer_memory_bytes: 16 * 1024 * 1024,
        indexing_threads: 1,
        ..ShardConfig::default()
    }
}

// ------------------------------------------------------------------------------------------
// Child
// ------------------------------------------------------------------------------------------

/// Writes whole lines to stdout (the `StdoutLock` serializes threads) and flushes. A parent
/// that went away ends the child.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(2);
    }
}

fn ack_line(out: &mut String, result: &WriteResult, op: &str, hash: Option<u64>) {
    use std::fmt::Write as _;
    let hash = hash.map_or_else(|| "-".to_string(), |hash| format!("{hash:016x}"));
    let _ = writeln!(
        out,
        "ACK {} {} {} {} {} {}",
        result.seq_no, result.primary_term, result.version, op, result.id, hash
    );
}

/// The child: runs only when the parent set [`ENV_DIR`].
#[test]
#[ignore = "child process of acknowledged_writes_survive_sigkill"]
fn crash_writer_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    // libtest may have printed "test crash_writer_child ... " without a newline.
    emit("\nSTART\n");
    let seed: u64 = std::env::var(ENV_SEED).unwrap().parse().unwrap();
    let cycle: u64 = std::env::var(ENV_CYCLE).unwrap().parse().unwrap();
    let writers = std::env::var(ENV_WRITERS).unwrap();
    let (first, last) = writers.split_once("..").unwrap();
    let (first, last): (u32, u32) = (first.parse().unwrap(), last.parse().unwrap());

    let shard = match ShardEngine::open(Path::new(&dir), common::mapper(), child_config()) {
        Ok(shard) => Arc::new(shard),
        Err(error) => {
            emit(&format!("ERR open: {error}\n"));
            std::process::exit(3);
        }
    };
    emit(&format!(
        "READY {} {}\n",
        shard.max_seq_no(),
        shard.local_checkpoint()
    ));

    let mut threads = Vec::new();
    for writer in first..last {
        let shard = shard.clone();
        let seed = seed ^ (u64::from(writer) << 32);
        threads.push(std::thread::spawn(move || {
            writer_loop(&shard, writer, cycle, seed)
        }));
    }
    {
        let shard = shard.clone();
        threads.push(std::thread::spawn(move || refresher_loop(&shard, seed)));
    }
    for thread in threads {
        let _ = thread.join();
    }
    // Writers never stop; reaching this means one panicked.
    emit("ERR a child thread ended\n");
    std::process::exit(4);
}

fn source_for(rng: &mut StdRng, writer: u32, key: u32, cycle: u64, counter: u64) -> Vec<u8> {
    let pad = "abcdefghijklmnopqrstuvwxyz0123456789";
    let len = rng.random_range(0..160usize);
    let body: String = pad
        .chars()
        .cycle()
        .skip(counter as usize % 36)
        .take(len)
        .collect();
    format!(r#"{{"w":{writer},"k":{key},"c":{cycle},"i":{counter},"body":"{body}"}}"#).into_bytes()
}

fn writer_loop(shard: &ShardEngine, writer: u32, cycle: u64, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counter = 0u64;
    let mut out = String::new();
    loop {
        out.clear();
        let roll = rng.random_range(0..100u32);
        if roll < 3 {
            match shard.no_op("crash test") {
                Ok(seq_no) => out.push_str(&format!(
                    "ACK {seq_no} {} 1 noop - -\n",
                    shard.primary_term()
                )),
                Err(error) => out.push_str(&format!("ERR no_op: {error}\n")),
            }
            emit(&out);
            continue;
        }
        let items = if roll < 45 {
            1
        } else {
            rng.random_range(5..=50usize)
        };
        let mut requests = Vec::with_capacity(items);
        let mut described = Vec::with_capacity(items);
        for _ in 0..items {
            let key = rng.random_range(0..IDS_PER_WRITER);
            let id = format!("w{writer}-{key}");
            counter += 1;
            if rng.random_ratio(1, 4) {
                requests.push(WriteRequest::Delete(DeleteRequest::new(id)));
                described.push(("delete", None));
            } else {
                let source = source_for(&mut rng, writer, key, cycle, counter);
                described.push(("index", Some(fnv1a(&source))));
                requests.push(WriteRequest::Index(IndexRequest::new(id, source)));
            }
        }
        // Acknowledged only once `bulk` returned: print after, never before.
        let results = shard.bulk(requests);
        for (result, (op, hash)) in results.iter().zip(described) {
            match result {
                Ok(result) => ack_line(&mut out, result, op, hash),
                Err(error) => out.push_str(&format!("ERR bulk item: {error}\n")),
            }
        }
        emit(&out);
    }
}

fn refresher_loop(shard: &ShardEngine, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    loop {
        std::thread::sleep(Duration::from_millis(rng.random_range(5..60)));
        let result = if rng.random_ratio(1, 12) {
            shard.force_merge(1)
        } else {
            shard.refresh()
        };
        if let Err(error) = result {
            emit(&format!("ERR refresh/merge: {error}\n"));
        }
    }
}

// ------------------------------------------------------------------------------------------
// Parent
// ------------------------------------------------------------------------------------------

/// One acknowledged operation, as the child reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ack {
    seq_no: i64,
    term: u64,
    version: u64,
    op: String,
    id: Option<String>,
    hash: Option<u64>,
}

impl Ack {
    fn parse(line: &str) -> Option<Ack> {
        let mut parts = line.split(' ');
        if parts.next()? != "ACK" {
            return None;
        }
        let seq_no = parts.next()?.parse().ok()?;
        let term = parts.next()?.parse().ok()?;
        let version = parts.next()?.parse().ok()?;
        let op = parts.next()?.to_string();
        let id = match parts.next()? {
            "-" => None,
            id => Some(id.to_string()),
        };
        let hash = match parts.next()? {
            "-" => None,
            hash => Some(u64::from_str_radix(hash, 16).ok()?),
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Ack {
            seq_no,
            term,
            version,
            op,
            id,
            hash,
        })
    }

    fn from_operation(op: &tandem_engine::Operation) -> Ack {
        Ack {
            seq_no: op.seq_no.0,
            term: op.primary_term.0,
            version: op.version,
            op: op.op_type().name().to_string(),
            id: op.id().map(str::to_string),
            hash: op.source().map(fnv1a),
        }
    }
}

/// What one child run printed.
#[derive(Default)]
struct ChildOutput {
    acks: Vec<Ack>,
    errors: Vec<String>,
    ready: Option<String>,
    lines: usize,
}

/// Reads the child's stdout to EOF; only complete (newline-terminated) lines count: a line the
/// kill cut short was never fully reported.
fn read_child_output(stdout: impl Read) -> ChildOutput {
    let mut reader = BufReader::with_capacity(1 << 16, stdout);
    let mut output = ChildOutput::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return output,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') {
            return output;
        }
        output.lines += 1;
        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        if text.starts_with("ACK ") {
            match Ack::parse(&text) {
                Some(ack) => output.acks.push(ack),
                None => output.errors.push(format!("unparsable ack line: {text:?}")),
            }
        } else if let Some(rest) = text.strip_prefix("ERR ") {
            output.errors.push(rest.to_string());
        } else if text.starts_with("READY ") {
            output.ready = Some(text);
        }
    }
}

/// Kills the running child and ends the test process when the run overruns its deadline (a
/// hung child or a deadlocked recovery must fail the test, not hang it).
fn start_watchdog(deadline: Instant, child_pid: Arc<AtomicU32>, done: Arc<AtomicBool>) {
    std::thread::spawn(move || loop {
        if done.load(Ordering::Acquire) {
            return;
        }
        if Instant::now() >= deadline {
            let pid = child_pid.load(Ordering::Acquire);
            if pid != 0 {
                // The shell's kill(1): the engine does not depend on libc.
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            eprintln!(
                "crash_consistency: the run exceeded its time limit (a child or a recovery hung); \
                 child pid {pid} killed"
            );
            std::process::exit(101);
        }
        std::thread::sleep(Duration::from_millis(100));
    });
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not valid")),
        Err(_) => default,
    }
}

fn spawn_child(
    shard_dir: &Path,
    stderr_path: &Path,
    seed: u64,
    cycle: usize,
    writers: (u32, u32),
) -> Child {
    let stderr = std::fs::File::create(stderr_path).expect("child stderr file");
    Command::new(std::env::current_exe().expect("current_exe"))
        .args([
            "--exact",
            "crash_writer_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DIR, shard_dir)
        .env(ENV_SEED, seed.to_string())
        .env(ENV_CYCLE, cycle.to_string())
        .env(ENV_WRITERS, format!("{}..{}", writers.0, writers.1))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("spawning the child")
}

/// Everything the parent knows across cycles.
#[derive(Default)]
struct Model {
    /// The verified history, indexed by seq_no (every entry at index i has seq_no i).
    history: Vec<Ack>,
    /// Acks of all cycles, checked against `history` at every verification.
    acks: Vec<Ack>,
    /// Acks not yet checked one by one through `changes(seq, seq)`.
    unverified: Vec<Ack>,
}

struct Recovered {
    max_seq_no: i64,
    local_checkpoint: i64,
    live_docs: u64,
    segments: usize,
}

/// Reopens the shard after a crash and checks checks 1-4 (see the module docs).
fn verify(shard_dir: &Path, model: &mut Model, cycle: usize) -> Recovered {
    let shard = ShardEngine::open(shard_dir, common::mapper(), parent_config())
        .unwrap_or_else(|error| panic!("cycle {cycle}: reopening after the crash failed: {error}"));
    let local_checkpoint = shard.local_checkpoint().0;
    let max_seq_no = shard.max_seq_no().0;
    let max_acked = model.acks.iter().map(|ack| ack.seq_no).max().unwrap_or(-1);

    // 1. every acknowledged operation is there, exactly as acknowledged.
    for ack in &model.unverified {
        let ops = shard
            .changes(SeqNo(ack.seq_no), SeqNo(ack.seq_no), 1, usize::MAX)
            .unwrap_or_else(|error| {
                panic!("cycle {cycle}: LOST acknowledged {ack:?}: changes failed: {error}")
            });
        assert_eq!(
            ops.len(),
            1,
            "cycle {cycle}: LOST acknowledged {ack:?}: changes returned {ops:?}"
        );
        assert_eq!(
            &Ack::from_operation(&ops[0]),
            ack,
            "cycle {cycle}: acknowledged op differs after recovery"
        );
    }
    model.unverified.clear();

    // 2. checkpoints and a contiguous history without duplicates.
    assert!(
        local_checkpoint >= max_acked,
        "cycle {cycle}: local checkpoint {local_checkpoint} < max acknowledged seq_no {max_acked} \
         (max_seq_no {max_seq_no}): the history has a gap below an acknowledged op"
    );
    assert_eq!(
        local_checkpoint, max_seq_no,
        "cycle {cycle}: a recovered primary must have no gap below max_seq_no"
    );
    let mut history = Vec::with_capacity((local_checkpoint + 1).max(0) as usize);
    let mut from = 0i64;
    while from <= local_checkpoint {
        let batch = shard
            .changes(SeqNo(from), SeqNo(local_checkpoint), 4096, usize::MAX)
            .unwrap_or_else(|error| panic!("cycle {cycle}: changes from {from}: {error}"));
        assert!(
            !batch.is_empty(),
            "cycle {cycle}: changes({from}, {local_checkpoint}) returned nothing"
        );
        for op in batch {
            assert_eq!(op.seq_no.0, from, "cycle {cycle}: history not contiguous");
            history.push(Ack::from_operation(&op));
            from += 1;
        }
    }
    let previous = model.history.len();
    assert!(
        history.len() >= previous,
        "cycle {cycle}: the history shrank from {previous} to {} ops",
        history.len()
    );
    if let Some(position) = (0..previous).find(|&i| history[i] != model.history[i]) {
        panic!(
            "cycle {cycle}: history changed below an earlier checkpoint: was {:?}, now {:?}",
            model.history[position], history[position]
        );
    }
    model.history = history;
    for ack in &model.acks {
        assert_eq!(
            model.history.get(ack.seq_no as usize),
            Some(ack),
            "cycle {cycle}: acknowledged op differs from the history"
        );
    }

    // 3. live documents = replay of the history; versions per id run 1, 2, 3, ...
    let mut live: BTreeMap<&str, &Ack> = BTreeMap::new();
    let mut last_op: HashMap<&str, &Ack> = HashMap::new();
    for op in &model.history {
        let Some(id) = op.id.as_deref() else {
            assert_eq!(op.op, "noop", "cycle {cycle}: op without id: {op:?}");
            continue;
        };
        let expected_version = last_op.get(id).map_or(1, |previous| previous.version + 1);
        assert_eq!(
            op.version,
            expected_version,
            "cycle {cycle}: version chain broken on {id}: {op:?} after {:?}",
            last_op.get(id)
        );
        last_op.insert(id, op);
        match op.op.as_str() {
            "index" => {
                live.insert(id, op);
            }
            "delete" => {
                live.remove(id);
            }
            other => panic!("cycle {cycle}: unexpected op type {other} on {id}"),
        }
    }
    for id in last_op.keys() {
        let got = shard
            .get(id)
            .unwrap_or_else(|error| panic!("cycle {cycle}: get({id}): {error}"));
        let got = got.map(|got| (got.seq_no.0, got.version, fnv1a(&got.source)));
        let expected = live
            .get(id)
            .map(|op| (op.seq_no, op.version, op.hash.expect("index op hash")));
        assert_eq!(
            got, expected,
            "cycle {cycle}: get({id}) disagrees with the history"
        );
    }
    shard.refresh().expect("refresh");
    let live_docs = shard.doc_count();
    assert_eq!(
        live_docs,
        live.len() as u64,
        "cycle {cycle}: doc count disagrees with the history"
    );

    // 4. the latest acknowledged op per id wins unless a later op is in the history.
    let mut latest_ack: HashMap<&str, &Ack> = HashMap::new();
    for ack in &model.acks {
        if let Some(id) = ack.id.as_deref() {
            let entry = latest_ack.entry(id).or_insert(ack);
            if ack.seq_no > entry.seq_no {
                *entry = ack;
            }
        }
    }
    for (id, ack) in latest_ack {
        let last = last_op[id];
        assert!(
            last.seq_no >= ack.seq_no,
            "cycle {cycle}: {id}: latest history op {last:?} older than acked {ack:?}"
        );
        if last.seq_no == ack.seq_no {
            let alive = live.get(id).map(|op| op.seq_no);
            let expected = (ack.op == "index").then_some(ack.seq_no);
            assert_eq!(
                alive, expected,
                "cycle {cycle}: {id}: the latest acknowledged op {ack:?} did not win"
            );
        }
    }

    let segments = shard.stats().segment_count;
    shard.close().expect("closing the shard");
    Recovered {
        max_seq_no,
        local_checkpoint,
        live_docs,
        segments,
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let cycles: usize = env_or("TANDEM_CRASH_CYCLES", DEFAULT_CYCLES);
    let seed: u64 = env_or("TANDEM_CRASH_SEED", DEFAULT_SEED);
    let started = Instant::now();
    let deadline = started + TIME_FIXED + TIME_PER_CYCLE * cycles as u32;
    let child_pid = Arc::new(AtomicU32::new(0));
    let done = Arc::new(AtomicBool::new(false));
    start_watchdog(deadline, child_pid.clone(), done.clone());

    // TANDEM_CRASH_DIR keeps the shard and the children's stderr for a post-mortem.
    let (_temp, run_dir): (Option<tempfile::TempDir>, PathBuf) =
        match std::env::var_os("TANDEM_CRASH_DIR") {
            Some(dir) => {
                std::fs::create_dir_all(&dir).unwrap();
                (None, PathBuf::from(dir))
            }
            None => {
                let temp = tempfile::tempdir().unwrap();
                let path = temp.path().to_path_buf();
                (Some(temp), path)
            }
        };
    let shard_dir: PathBuf = run_dir.join("shard");
    {
        let shard = ShardEngine::create(
            &shard_dir,
            common::mapper(),
            parent_config(),
            PrimaryTerm(1),
        )
        .expect("create shard");
        // Holds all history: merges cannot drop any op, so check 1 is exact.
        shard
            .add_retention_lease(LEASE_ID, SeqNo(0), "crash_consistency test")
            .expect("lease");
        shard.close().expect("close");
    }

    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let mut total_acks = 0usize;
    let mut cycles_with_acks = 0usize;
    let mut verifications = 0usize;
    for cycle in 0..cycles {
        let cycle_started = Instant::now();
        let sleep_ms: u64 = if rng.random_ratio(1, 6) {
            rng.random_range(5..=20)
        } else {
            rng.random_range(50..=400)
        };
        let base = rng.random_range(0..=WRITER_ID_SPACE - WRITERS);
        let child_seed: u64 = rng.random();
        let stderr_path = run_dir.join(format!("child-{cycle}.stderr"));
        let mut child = spawn_child(
            &shard_dir,
            &stderr_path,
            child_seed,
            cycle,
            (base, base + WRITERS),
        );
        child_pid.store(child.id(), Ordering::Release);
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || read_child_output(stdout));
        std::thread::sleep(Duration::from_millis(sleep_ms));
        let early_exit = child.try_wait().expect("try_wait");
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("wait for the child");
        child_pid.store(0, Ordering::Release);
        let output = reader.join().expect("reader thread");
        let child_stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if let Some(status) = early_exit {
            panic!(
                "cycle {cycle}: the child exited by itself ({status}) before the kill; \
                 errors: {:?}; stderr:\n{}",
                output.errors,
                child_stderr()
            );
        }
        assert!(
            output.errors.is_empty(),
            "cycle {cycle}: the child reported errors: {:?}; stderr:\n{}",
            &output.errors[..output.errors.len().min(20)],
            child_stderr()
        );
        let acked = output.acks.len();
        total_acks += acked;
        cycles_with_acks += usize::from(acked > 0);
        let max_acked = output.acks.iter().map(|ack| ack.seq_no).max();
        model.acks.extend(output.acks.iter().cloned());
        model.unverified.extend(output.acks);

        // Sometimes leave the crashed shard to the next child, which then recovers it itself
        // (and may be killed while doing so).
        let last = cycle + 1 == cycles;
        let verified = last || rng.random_ratio(4, 5);
        let summary = if verified {
            verifications += 1;
            let recovered = verify(&shard_dir, &mut model, cycle);
            format!(
                "recovered max_seq_no {} local_checkpoint {} live docs {} segments {}",
                recovered.max_seq_no,
                recovered.local_checkpoint,
                recovered.live_docs,
                recovered.segments
            )
        } else {
            "not verified (the next child recovers)".to_string()
        };
        eprintln!(
            "cycle {cycle}/{cycles}: slept {sleep_ms} ms, {} ({status}), acked {acked} ops \
             (max acked seq_no {}), {summary}, {:.2} s",
            output.ready.as_deref().unwrap_or("killed before READY"),
            max_acked.map_or("-".to_string(), |seq_no| seq_no.to_string()),
            cycle_started.elapsed().as_secs_f64()
        );
    }
    done.store(true, Ordering::Release);
    eprintln!(
        "crash_consistency: {cycles} cycles, {verifications} verifications, {total_acks} acked \
         ops, 0 lost, history of {} ops, {:.1} s",
        model.history.len(),
        started.elapsed().as_secs_f64()
    );
    if cycles >= 10 {
        assert!(
            cycles_with_acks * 2 >= cycles,
            "only {cycles_with_acks} of {cycles} cycles acknowledged anything: the child is too slow \
             to start, the test proves little"
        );
    }
}

/// A kill during a tantivy commit can leave `<segment>.<opstamp>.del` files that no commit
/// references. Recovery replays the same operations from the same commit, so its own commit
/// reuses those opstamps: unless the leftovers are ignored, it fails with `FileAlreadyExists`
/// on every open and the shard can never open again.
#[test]
fn reopen_ignores_files_of_an_interrupted_commit() {
    let dir = tempfile::tempdir().unwrap();
    let shard = common::create_shard(dir.path());
    for n in 0..20 {
        shard.index(common::doc(n, "first")).unwrap();
    }
    shard.refresh().unwrap();
    let segments: Vec<String> = shard
        .searcher()
        .segment_readers()
        .iter()
        .map(|segment| segment.segment_id().uuid_string())
        .collect();
    assert!(!segments.is_empty());
    let opstamp = shard.tantivy_index().load_metas().unwrap().opstamp;
    for n in 0..20 {
        shard.index(common::doc(n, "second")).unwrap();
    }
    // A crash: the updates are only in the translog (and the pending deletes in memory).
    drop(shard);

    // What a commit killed before it wrote meta.json leaves behind: delete files of the
    // committed segments, at the opstamps the recovery's own commit will use, registered as
    // managed files (tantivy registers a file before creating it).
    let index_dir = dir.path().join("index");
    let managed_path = index_dir.join(".managed.json");
    let mut managed: Vec<String> =
        serde_json::from_slice(&std::fs::read(&managed_path).unwrap()).unwrap();
    for segment in &segments {
        for stamp in opstamp..opstamp + 500 {
            let name = format!("{segment}.{stamp}.del");
            std::fs::write(index_dir.join(&name), b"left by an interrupted commit").unwrap();
            managed.push(name);
        }
    }
    std::fs::write(&managed_path, serde_json::to_vec(&managed).unwrap()).unwrap();

    let shard = ShardEngine::open(dir.path(), common::mapper(), common::manual_config())
        .expect("reopen after an interrupted commit");
    for n in 0..20 {
        let got = shard.get(&format!("doc-{n}")).unwrap().expect("document");
        assert_eq!(got.version, 2);
        assert!(String::from_utf8_lossy(&got.source).contains("second"));
    }
    shard.index(common::doc(99, "after")).unwrap();
    shard.refresh().unwrap();
    assert_eq!(shard.doc_count(), 21);
    shard.close().unwrap();
    let shard = common::reopen(dir.path());
    assert_eq!(shard.doc_count(), 21);
}

fn gap_operations() -> Vec<tandem_engine::Operation> {
    [0i64, 1, 3]
        .into_iter()
        .map(|seq_no| tandem_engine::Operation {
            seq_no: SeqNo(seq_no),
            primary_term: PrimaryTerm(1),
            version: 1,
            kind: tandem_engine::OperationKind::Index {
                id: format!("doc-{seq_no}"),
                source: format!(r#"{{"n":{seq_no}}}"#).into_bytes(),
            },
        })
        .collect()
}

/// Concurrent writers append to the translog out of seq_no order, so a crash can keep seq_no 3
/// (even acknowledged) while 2 never reached the translog. A recovered primary fills such gaps
/// with no-ops; without them its local checkpoint would stay below the gap forever (and with it
/// the global checkpoint and every follower). A follower keeps its gaps: its leader fills them.
#[test]
fn a_recovered_primary_fills_seq_no_gaps_with_no_ops() {
    let dir = tempfile::tempdir().unwrap();
    let shard = common::create_shard(dir.path());
    shard
        .apply_operations(&gap_operations(), SeqNo(-1))
        .unwrap();
    assert_eq!(
        (shard.local_checkpoint(), shard.max_seq_no()),
        (SeqNo(1), SeqNo(3))
    );
    drop(shard); // a crash: seq_no 2 never existed
    let shard = common::reopen(dir.path());
    assert_eq!(shard.local_checkpoint(), SeqNo(3));
    assert_eq!(shard.global_checkpoint(), SeqNo(3));
    let history = shard.changes(SeqNo(0), SeqNo(3), 10, usize::MAX).unwrap();
    let kinds: Vec<&str> = history.iter().map(|op| op.op_type().name()).collect();
    assert_eq!(kinds, ["index", "index", "noop", "index"]);
    assert_eq!(history[2].primary_term, shard.primary_term());
    let next = shard.index(common::doc(9, "after")).unwrap();
    assert_eq!(next.seq_no, SeqNo(4));
    assert_eq!(shard.local_checkpoint(), SeqNo(4));
    shard.close().unwrap();
    let shard = common::reopen(dir.path());
    assert_eq!(
        (shard.local_checkpoint(), shard.max_seq_no()),
        (SeqNo(4), SeqNo(4))
    );
    drop(shard);

    let dir = tempfile::tempdir().unwrap();
    let follower = common::create_follower(dir.path());
    follower
        .apply_operations(&gap_operations(), SeqNo(-1))
        .unwrap();
    drop(follower);
    let config = ShardConfig {
        follower: true,
        ..common::manual_config()
    };
    let follower = ShardEngine::open(dir.path(), common::mapper(), config).unwrap();
    assert_eq!(
        (follower.local_checkpoint(), follower.max_seq_no()),
        (SeqNo(1), SeqNo(3)),
        "a follower waits for its leader's op 2"
    );
}
