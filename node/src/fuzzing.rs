//! Body of the `bulk_body` fuzz target (`fuzz/`), kept in the library so that the ordinary
//! test suite (`tests/fuzz_corpus.rs`) runs it over the checked-in corpus too.
//!
//! The target hands arbitrary bytes to the `_bulk` parser and, when they parse, applies the
//! items to indices on an in-memory disk ([`SimStorage`]), as the REST handler does. Checked:
//! - a body the parser refuses gets a 4xx error with a type and a reason (the whole request
//!   is refused, nothing is applied);
//! - a body it accepts gets one answer per item, in order, under the item's action name, with
//!   a status, the item's index and id; a failed item has a 4xx/5xx status and an error
//!   object (type and reason), any other is 200, 201, or a delete's 404 `not_found`, with a
//!   sequence number; `errors` is true exactly when some item failed;
//! - a write acknowledged 2xx is what the index holds afterwards: for every id whose items
//!   are plain writes, the document is the source of the last successful `index`/`create`, or
//!   absent after a successful `delete`.
//!
//! Never a panic: any violation is an `assert!`, which is what a fuzzer reports.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use tandem_engine::indices::Indices;
use tandem_engine::storage::SimStorage;

use crate::rest::bulk::{execute, parse_bulk, BulkAction, BulkItem};
use crate::rest::documents::RefreshPolicy;

/// The index the items of a body without `_index` go to, when the first byte asks for one
/// (the `/{index}/_bulk` form).
pub const DEFAULT_INDEX: &str = "fuzz";

/// Fuzz body of the `bulk_body` target: the first byte's low bit selects `/{index}/_bulk`
/// (with [`DEFAULT_INDEX`]) or `/_bulk`; the rest is the request body.
pub fn bulk_body(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let default_index = (flags & 1 == 1).then_some(DEFAULT_INDEX);
    let items = match parse_bulk(body, default_index) {
        Ok(items) => items,
        Err(error) => {
            assert!(
                error.status.is_client_error(),
                "a refused body answers {}, not 4xx: {}",
                error.status,
                error.reason
            );
            assert!(!error.error_type.is_empty() && !error.reason.is_empty());
            return;
        }
    };
    assert!(!items.is_empty(), "an accepted body has items");
    let disk = SimStorage::new();
    let indices =
        Indices::open_on(disk.as_storage(), Path::new("/data")).expect("open the indices");
    let (errors, answers) = execute(
        &indices,
        &items,
        RefreshPolicy::Immediate,
        &crate::rest::bulk::allow_all,
    );
    assert_eq!(answers.len(), items.len(), "one answer per item");
    if std::env::var_os("TANDEM_FUZZ_VERBOSE").is_some() {
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&answers).unwrap_or_default()
        );
    }
    let mut failed_any = false;
    // Per (index, id): the expected document after the run, or `None` if an update touched it
    // (its result depends on the merge, checked by the REST tests).
    let mut expected: BTreeMap<(String, String), Option<Option<Vec<u8>>>> = BTreeMap::new();
    for (item, answer) in items.iter().zip(&answers) {
        let failed = check_answer(item, answer);
        failed_any |= failed;
        // A fresh disk: an id no item wrote successfully is absent.
        let known = expected
            .entry((item.index.clone(), item.id.clone()))
            .or_insert(Some(None));
        match (&item.action, failed) {
            (BulkAction::Update(_), _) => *known = None,
            (_, true) => {}
            (BulkAction::Index { source, .. }, false) => {
                if known.is_some() {
                    *known = Some(Some(source.clone()));
                }
            }
            (BulkAction::Delete, false) => {
                if known.is_some() {
                    *known = Some(None);
                }
            }
        }
    }
    assert_eq!(errors, failed_any, "`errors` is whether an item failed");
    for ((index, id), document) in expected {
        let Some(document) = document else { continue };
        let Ok(target) = indices.get(&index) else {
            assert!(document.is_none(), "[{index}] missing after a write to it");
            continue;
        };
        let got = target
            .get(&id)
            .unwrap_or_else(|error| panic!("get [{index}/{id}] after the bulk: {error}"))
            .map(|got| got.source);
        assert_eq!(got, document, "[{index}/{id}] after the bulk");
    }
    drop(indices);
}

/// Checks one item's answer; returns whether the item failed.
fn check_answer(item: &BulkItem, answer: &Value) -> bool {
    let object = answer.as_object().expect("an item answer is an object");
    assert_eq!(object.len(), 1, "an item answer has one key: {answer}");
    let body = object
        .get(item.action.name())
        .unwrap_or_else(|| panic!("answer {answer} is not under [{}]", item.action.name()));
    let status = body["status"].as_u64().expect("an item has a status");
    assert!((200..600).contains(&status), "item status {status}");
    assert_eq!(body["_index"], item.index.as_str(), "item index: {answer}");
    assert_eq!(body["_id"], item.id.as_str(), "item id: {answer}");
    // As in Elasticsearch, a failure is an item with an `error`; a delete of a missing
    // document is a 404 `not_found` without one, and not a failure.
    let failed = body.get("error").is_some();
    if failed {
        let error = &body["error"];
        assert!(
            status >= 400,
            "a failed item with status {status}: {answer}"
        );
        assert!(
            error["type"].as_str().is_some_and(|kind| !kind.is_empty())
                && error["reason"].as_str().is_some(),
            "a failed item says why: {answer}"
        );
    } else {
        let not_found = matches!(item.action, BulkAction::Delete)
            && status == 404
            && body["result"] == "not_found";
        assert!(
            status == 200 || status == 201 || not_found,
            "an item without an error answered {status}: {answer}"
        );
        assert!(body["_seq_no"].as_i64().is_some_and(|seq_no| seq_no >= 0));
    }
    failed
}
