//! A write that fails after its sequence number was assigned never wedges the checkpoints: the
//! shard fails loudly (its long polls end, its reads and writes are refused with the reason),
//! and reopening it through [`Indices::reopen_failed`] closes the lost sequence number with a
//! no-op, so that the writes after it reach the global checkpoint and a follower's read.
//!
//! Failures are injected with the `shard::primary_after_seq_no` failpoint (TiKV's `fail`),
//! which is process-global: every test here runs inside one `FailScenario`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use serde_json::json;
use tandem_engine::indices::Indices;
use tandem_engine::shard::{ChangesRequest, IndexRequest};
use tandem_engine::{EngineError, OpType, SeqNo};

/// Long enough that a wait ending by its own deadline would fail the test's bound.
const POLL_TIMEOUT: Duration = Duration::from_secs(60);
/// A failed shard answers its waits at once; this is the bound a test allows them.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

fn doc(id: &str) -> IndexRequest {
    IndexRequest::new(id, format!(r#"{{"body":"{id}"}}"#).into_bytes())
}

/// A waker that counts its wake-ups (a task's long poll, polled by hand).
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn poll_once<F: Future + Unpin>(future: &mut F, waker: &Arc<CountingWaker>) -> Poll<F::Output> {
    let waker = Waker::from(waker.clone());
    Pin::new(future).poll(&mut Context::from_waker(&waker))
}

fn read_request(from: i64) -> ChangesRequest {
    ChangesRequest {
        from_seq_no: SeqNo(from),
        max_operation_count: 100,
        max_batch_size: usize::MAX,
        poll_timeout: POLL_TIMEOUT,
        expected_history_uuid: None,
    }
}

#[test]
fn a_write_interrupted_after_its_seq_no_fails_the_shard_and_a_reopen_closes_the_gap() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let indices = Indices::open(dir.path()).unwrap();
    let index = indices
        .create("logs", &json!({"number_of_shards": 1}), &json!({}))
        .unwrap();
    for n in 0..5 {
        let written = index.index(doc(&format!("before-{n}"))).unwrap();
        assert_eq!(written.seq_no, SeqNo(n));
    }

    // A follower's long poll waits for seq_no 5.
    let poll = {
        let index = index.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let answer = index.shards()[0]
                .shard_changes_or_cancel(&read_request(5), &AtomicBool::new(false));
            (answer, started.elapsed())
        })
    };

    // And a task's long poll (as a leader node serves one) waits for it too.
    let task_waker = Arc::new(CountingWaker::default());
    let mut task_wait = index.shards()[0].global_checkpoint_reached(SeqNo(5));
    assert!(poll_once(&mut task_wait, &task_waker).is_pending());

    // The first write to pass the failpoint (seq_no 5) stops there until a second write has
    // taken seq_no 6 and been acknowledged, then panics.
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(Some(released));
    fail::cfg_callback("shard::primary_after_seq_no", move || {
        let first = released.lock().unwrap().take();
        if let Some(released) = first {
            released.recv().unwrap();
            panic!("injected failure after the seq_no was assigned");
        }
    })
    .unwrap();
    let interrupted = {
        let index = index.clone();
        std::thread::spawn(move || index.index(doc("interrupted")))
    };
    // The interrupted write holds seq_no 5 once the second write gets 6.
    let acknowledged = loop {
        if index.shards()[0].max_seq_no() >= SeqNo(5) {
            break index.index(doc("acknowledged")).unwrap();
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(acknowledged.seq_no, SeqNo(6));
    assert_eq!(index.shards()[0].local_checkpoint(), SeqNo(4), "5 is a gap");
    release.send(()).unwrap();
    assert!(
        interrupted.join().is_err(),
        "the interrupted write panicked"
    );
    fail::remove("shard::primary_after_seq_no");

    // Loud: the reason is kept, writes and reads are refused, the long poll ended.
    let shard = &index.shards()[0];
    let failure = shard.failure().expect("the shard failed");
    assert!(
        failure.contains("sequence numbers were assigned"),
        "{failure}"
    );
    assert!(matches!(
        index.index(doc("refused")),
        Err(EngineError::Closed(_))
    ));
    let (answer, waited) = poll.join().unwrap();
    assert!(
        matches!(answer, Err(EngineError::Closed(_))),
        "the long poll ends with the failure: {answer:?}"
    );
    assert!(
        waited < ANSWER_WITHIN,
        "the long poll ended after {waited:?}"
    );
    assert!(
        task_waker.0.load(Ordering::SeqCst) >= 1,
        "the failure woke the task's wait"
    );
    assert_eq!(
        poll_once(&mut task_wait, &task_waker),
        Poll::Ready(SeqNo(4))
    );
    assert_eq!(shard.checkpoint_task_waits(), 0);
    drop(task_wait);
    let started = Instant::now();
    let answer = shard.shard_changes_or_cancel(&read_request(5), &AtomicBool::new(false));
    assert!(matches!(answer, Err(EngineError::Closed(_))));
    assert!(started.elapsed() < ANSWER_WITHIN);
    assert_eq!(index.shard_failures().len(), 1);
    drop(index);

    // Reopened: the acknowledged write is there, 5 is a no-op, the checkpoints moved on.
    let repaired = indices
        .reopen_failed("logs", Duration::from_secs(30))
        .unwrap();
    assert_eq!(repaired.len(), 1, "{repaired:?}");
    let index = indices.get("logs").unwrap();
    let shard = &index.shards()[0];
    assert!(shard.failure().is_none());
    assert_eq!(shard.local_checkpoint(), SeqNo(6));
    assert!(shard.get("acknowledged").unwrap().is_some());
    assert!(shard.get("interrupted").unwrap().is_none());
    let later = index.index(doc("later")).unwrap();
    assert_eq!(later.seq_no, SeqNo(7));
    assert_eq!(shard.global_checkpoint(), SeqNo(7));
    let read = shard
        .shard_changes_or_cancel(&read_request(5), &AtomicBool::new(false))
        .unwrap();
    let read: Vec<(i64, OpType, Option<&str>)> = read
        .operations
        .iter()
        .map(|op| (op.seq_no.0, op.op_type(), op.id()))
        .collect();
    assert_eq!(
        read,
        vec![
            (5, OpType::NoOp, None),
            (6, OpType::Index, Some("acknowledged")),
            (7, OpType::Index, Some("later")),
        ]
    );
    // A healthy index is left alone.
    assert!(indices
        .reopen_failed("logs", Duration::from_secs(30))
        .unwrap()
        .is_empty());
    scenario.teardown();
}
