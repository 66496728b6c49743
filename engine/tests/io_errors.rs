//! I/O errors at every kind of storage call that persists a shard's state, injected on the
//! real file system with the `storage::io` failpoint (see `engine::storage::fault`).
//!
//! For each case: an index takes acknowledged writes, a lease and a flush; then every call of
//! one kind on one kind of file fails (`EIO`) while the case's step runs until it returns the
//! error; then the failpoint is removed and:
//!
//! - state that write-ahead logging or a commit depends on (translog records, its fsync and
//!   checkpoint, its generations and directory, segment files, the commit's rename and the
//!   index directory's sync): the shard latches failed, says why (its `failure`, its stats,
//!   the next write's error), and refuses writes;
//! - state whose change is all-or-nothing (the lease log, the index metadata file): the call
//!   fails, nothing changes, and the next call succeeds;
//! - in both: a restart (the node's indices opened again on the same directory) finds every
//!   acknowledged write with its body, a gap-free history and the acknowledged lease, and
//!   takes writes again.
//!
//! The failpoint is process-global: every case runs inside one `FailScenario`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;
use tandem_engine::indices::Indices;
use tandem_engine::shard::IndexRequest;
use tandem_engine::{EngineError, SeqNo};

/// What a case does while the fault is on.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Index one document (acknowledged once its translog record is durable).
    Write,
    /// Index one document, then give tantivy's indexing thread a moment: a fault on that
    /// thread is seen by a later write, once the thread has died.
    WriteThenPause,
    /// Index one document, then refresh (a tantivy commit).
    Refresh,
    /// Flush: sync the translog, commit, roll and trim the translog.
    Flush,
    /// Add a retention lease.
    Lease,
    /// Change a dynamic index setting (rewrites the index metadata file).
    Settings,
}

struct Case {
    /// The failpoint argument: `<ops>@<path part>`.
    fault: &'static str,
    step: Step,
    /// The shard latches failed (else the call fails alone).
    latches: bool,
}

const CASES: &[Case] = &[
    Case {
        fault: "write@.tlog",
        step: Step::Write,
        latches: true,
    },
    Case {
        fault: "sync_data@.tlog",
        step: Step::Write,
        latches: true,
    },
    Case {
        fault: "write@translog.ckp",
        step: Step::Write,
        latches: true,
    },
    Case {
        fault: "create@.tlog",
        step: Step::Flush,
        latches: true,
    },
    Case {
        fault: "sync_dir@translog",
        step: Step::Flush,
        latches: true,
    },
    // tantivy's list of managed files, written before each new segment file.
    Case {
        fault: "write@.managed.json",
        step: Step::Refresh,
        latches: true,
    },
    // A new segment file, created by one of tantivy's indexing threads, which dies on the
    // error: the engine names the failed call, not only the dead thread.
    Case {
        fault: "create@.idx",
        step: Step::Refresh,
        latches: true,
    },
    // The same while only writes run: the thread's death is seen by a later write.
    Case {
        fault: "create@.idx",
        step: Step::WriteThenPause,
        latches: true,
    },
    // A segment file's own write and fsync.
    Case {
        fault: "write@.idx",
        step: Step::Refresh,
        latches: true,
    },
    Case {
        fault: "sync_data|sync_all@.idx",
        step: Step::Refresh,
        latches: true,
    },
    Case {
        fault: "write@meta.json",
        step: Step::Refresh,
        latches: true,
    },
    Case {
        fault: "rename@meta.json",
        step: Step::Refresh,
        latches: true,
    },
    Case {
        fault: "sync_dir@/0/index",
        step: Step::Refresh,
        latches: true,
    },
    Case {
        fault: "write@retention_leases.log",
        step: Step::Lease,
        latches: false,
    },
    Case {
        fault: "sync_data@retention_leases.log",
        step: Step::Lease,
        latches: false,
    },
    Case {
        fault: "rename@index_metadata.json",
        step: Step::Settings,
        latches: false,
    },
    Case {
        fault: "sync_data|sync_all@index_metadata.json",
        step: Step::Settings,
        latches: false,
    },
];

/// Steps tried before a case gives up on seeing its fault.
const MAX_STEPS: usize = 20;
/// [`Step::WriteThenPause`]'s pause: with [`MAX_STEPS`], a loaded machine's indexing thread
/// gets seconds to meet the fault.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(250);
/// The text of an injected `EIO`.
const EIO_TEXT: &str = "Input/output error";

fn body(id: &str) -> String {
    format!(r#"{{"body":"{id}"}}"#)
}

fn doc(id: &str) -> IndexRequest {
    IndexRequest::new(id, body(id).into_bytes())
}

/// Runs one case; `Err` says what broke.
fn run(case: &Case, data_dir: &Path) -> Result<(), String> {
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let mut leases = vec!["kept".to_string()];
    {
        let indices = Indices::open(data_dir).map_err(|e| format!("open: {e}"))?;
        let index = indices
            .create(
                "logs",
                &json!({"number_of_shards": 1, "refresh_interval": "-1"}),
                &json!({}),
            )
            .map_err(|e| format!("create: {e}"))?;
        let shard = &index.shards()[0];
        for n in 0..10 {
            let id = format!("before-{n}");
            index.index(doc(&id)).map_err(|e| format!("write: {e}"))?;
            acked.insert(id.clone(), body(&id));
        }
        index.flush().map_err(|e| format!("flush: {e}"))?;
        shard
            .add_retention_lease("kept", SeqNo(0), "test")
            .map_err(|e| format!("lease: {e}"))?;
        for n in 0..5 {
            // In the translog only.
            let id = format!("tail-{n}");
            index.index(doc(&id)).map_err(|e| format!("write: {e}"))?;
            acked.insert(id.clone(), body(&id));
        }

        fail::cfg("storage::io", &format!("return({})", case.fault)).unwrap();
        let mut failed = None;
        for k in 0..MAX_STEPS {
            let id = format!("during-{k}");
            let outcome = match case.step {
                Step::Write => index.index(doc(&id)).map(|_| Some(id.clone())),
                Step::WriteThenPause => index.index(doc(&id)).map(|_| {
                    std::thread::sleep(PAUSE);
                    Some(id.clone())
                }),
                Step::Refresh => index
                    .index(doc(&id))
                    .and_then(|_| {
                        acked.insert(id.clone(), body(&id));
                        index.refresh()
                    })
                    .map(|()| None),
                Step::Flush => index.flush().map(|()| None),
                Step::Lease => shard
                    .add_retention_lease(&format!("lease-{k}"), SeqNo(0), "test")
                    .map(|_| {
                        leases.push(format!("lease-{k}"));
                        None
                    }),
                Step::Settings => index
                    .update_settings(&json!({"index": {"refresh_interval": format!("{}s", k + 1)}}))
                    .map(|_| None),
            };
            match outcome {
                Ok(Some(id)) => {
                    acked.insert(id.clone(), body(&id));
                }
                Ok(None) => {}
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        fail::remove("storage::io");
        let error = failed.ok_or_else(|| format!("{MAX_STEPS} steps met no fault"))?;
        println!("{} during {:?}: {error}", case.fault, case.step);
        if !error.to_string().contains(EIO_TEXT) {
            return Err(format!("the error does not say what failed: {error}"));
        }

        if case.latches {
            let failure = shard
                .failure()
                .ok_or_else(|| format!("the shard did not latch the failure of: {error}"))?;
            if !failure.contains(EIO_TEXT) {
                return Err(format!("the failure does not say what failed: {failure}"));
            }
            if shard.stats().failure.as_deref() != Some(failure.as_str()) {
                return Err("the stats do not show the failure".into());
            }
            if index.shard_failures() != vec![(0, failure.clone())] {
                return Err("the index does not list the failed shard".into());
            }
            match index.index(doc("refused")) {
                Err(EngineError::Closed(reason)) if reason == failure => {}
                other => return Err(format!("a write after the failure: {other:?}")),
            }
        } else {
            if let Some(failure) = shard.failure() {
                return Err(format!("the shard latched: {failure}"));
            }
            // The same call works once the disk does.
            let id = "after".to_string();
            match case.step {
                Step::Lease => {
                    shard
                        .add_retention_lease("after", SeqNo(0), "test")
                        .map_err(|e| format!("lease after the fault: {e}"))?;
                    leases.push(id);
                }
                _ => {
                    index
                        .update_settings(&json!({"index": {"refresh_interval": "30s"}}))
                        .map_err(|e| format!("settings after the fault: {e}"))?;
                    index.index(doc(&id)).map_err(|e| format!("write: {e}"))?;
                    acked.insert(id.clone(), body(&id));
                }
            }
        }
    }

    // Restart.
    let indices = Indices::open(data_dir).map_err(|e| format!("reopen: {e}"))?;
    let index = indices
        .get("logs")
        .map_err(|e| format!("reopened index: {e}"))?;
    let shard = &index.shards()[0];
    for (id, expected) in &acked {
        let found = index
            .get(id)
            .map_err(|e| format!("get {id} after the restart: {e}"))?
            .ok_or_else(|| format!("acknowledged write {id} lost"))?;
        if found.source != expected.as_bytes() {
            return Err(format!("{id} changed"));
        }
    }
    let max = shard.max_seq_no();
    let history = shard
        .changes(SeqNo(0), max, usize::MAX, usize::MAX)
        .map_err(|e| format!("history after the restart: {e}"))?;
    if history.len() as i64 != max.0 + 1 || shard.local_checkpoint() != max {
        return Err(format!(
            "history has {} operations up to {max:?}, local checkpoint {:?}",
            history.len(),
            shard.local_checkpoint()
        ));
    }
    let held = shard.retention_leases();
    for lease in &leases {
        if !held.leases.contains_key(lease) {
            return Err(format!("acknowledged lease {lease} lost"));
        }
    }
    index
        .index(doc("after-restart"))
        .map_err(|e| format!("a write after the restart: {e}"))?;
    Ok(())
}

#[test]
fn every_kind_of_io_error_is_reported_and_loses_nothing_acknowledged() {
    let scenario = fail::FailScenario::setup();
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        if let Err(failure) = run(case, dir.path()) {
            failures.push(format!("{} during {:?}: {failure}", case.fault, case.step));
        }
    }
    scenario.teardown();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_malformed_fault_fails_loudly() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    fail::cfg("storage::io", "return(wirte@.tlog)").unwrap();
    let opened = Indices::open(dir.path());
    fail::remove("storage::io");
    scenario.teardown();
    let error = opened.err().expect("every storage call fails");
    assert!(
        error.to_string().contains("unknown operation [wirte]"),
        "{error}"
    );
}

#[test]
fn a_full_translog_disk_refuses_writes_keeps_reads_and_resumes_when_space_returns() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    {
        let indices = Indices::open(dir.path()).unwrap();
        let index = indices
            .create(
                "logs",
                &json!({"number_of_shards": 1, "refresh_interval": "-1"}),
                &json!({}),
            )
            .unwrap();
        let shard = &index.shards()[0];
        for n in 0..10 {
            let id = format!("before-{n}");
            index.index(doc(&id)).unwrap();
            acked.push(id);
        }
        index.refresh().unwrap();

        fail::cfg("storage::io", "return(write@.tlog:ENOSPC)").unwrap();
        // The write that finds the disk full: a clear error, a status clients retry.
        let error = index.index(doc("found-full")).unwrap_err();
        assert!(matches!(error, EngineError::NoSpace(_)), "{error:?}");
        assert_eq!(error.status(), 429);
        assert!(
            error.to_string().contains("No space left on device"),
            "{error}"
        );
        let max_seq_no = shard.max_seq_no();
        // Later writes are refused before they take a sequence number; bulk items too.
        for n in 0..3 {
            let refused = index.index(doc(&format!("refused-{n}"))).unwrap_err();
            assert!(matches!(refused, EngineError::NoSpace(_)), "{refused:?}");
        }
        assert_eq!(
            shard.max_seq_no(),
            max_seq_no,
            "a refused write took a seq_no"
        );
        // A refresh cannot commit what is not durable, and does not fail the shard.
        assert!(matches!(index.refresh(), Err(EngineError::NoSpace(_))));
        assert_eq!(shard.failure(), None, "a full disk does not fail the shard");
        // Reads keep working: documents, search and the durable history.
        for id in &acked {
            assert!(index.get(id).unwrap().is_some(), "{id}");
        }
        let all = tandem_engine::index::SearchQuery::Dsl(json!({"match_all": {}}));
        assert_eq!(index.count(&all).unwrap(), 10);
        let durable = shard.global_checkpoint();
        assert_eq!(
            shard
                .changes(SeqNo(0), durable, usize::MAX, usize::MAX)
                .unwrap()
                .len() as i64,
            durable.0 + 1
        );

        // Space returns: the next write goes through, and the one that found the disk full
        // became durable with it.
        fail::remove("storage::io");
        index.index(doc("after")).unwrap();
        acked.push("after".into());
        assert_eq!(shard.global_checkpoint(), shard.max_seq_no());
        index.refresh().unwrap();
        assert!(index.get("found-full").unwrap().is_some());
        assert!(index.get("refused-0").unwrap().is_none());
    }
    // The reopen stays inside the scenario: the failpoint is process-global, and another
    // test's scenario (a malformed fault, say) must not configure it while this one still
    // does I/O (that race failed CI once).
    let indices = Indices::open(dir.path()).unwrap();
    let index = indices.get("logs").unwrap();
    for id in &acked {
        assert!(index.get(id).unwrap().is_some(), "acknowledged {id} lost");
    }
    let shard = &index.shards()[0];
    assert_eq!(shard.local_checkpoint(), shard.max_seq_no());
    drop(indices);
    scenario.teardown();
}
