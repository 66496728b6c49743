//! The soak's writers: each worker owns the ids that start with its name and keeps a model of
//! them (which exist, with which `_source`), so the leader's final documents can be checked
//! against what was acknowledged. Writes go straight to the leader (never through the proxy):
//! `_bulk` requests and single-document requests, about 60% new documents, 30% updates of
//! existing ones (whole replacements and partial `_update`s) and 10% deletes, with bad
//! documents mixed in. Every answer is checked: a good write must succeed with the result the
//! model predicts, a bad one must get a 4xx (never a 5xx) and change nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use crate::common::{Answer, EsClient};
use crate::LEADER_INDEX;

/// Documents carry a `bucket` keyword (a hash of the id modulo this), so that every document
/// can be listed by searching bucket by bucket, each under `index.max_result_window`.
pub const BUCKETS: u64 = 256;
/// Longest pause between two requests of one worker (a random pause up to this keeps the load
/// steady on a shared machine instead of saturating it).
const MAX_PAUSE: Duration = Duration::from_millis(300);
/// Operations per `_bulk` request.
const BULK_OPERATIONS: std::ops::RangeInclusive<usize> = 5..=100;
/// Bytes of a document's `body` text, usually.
const BODY_BYTES: std::ops::RangeInclusive<usize> = 10..=400;
/// Bytes of the `body` of the rare large document (a few frames, or a chunk, on the wire).
const LARGE_BODY_BYTES: std::ops::RangeInclusive<usize> = 20_000..=120_000;
/// An id this long is refused (the limit is 512 bytes).
const OVERSIZED_ID_BYTES: usize = 600;

/// The bucket of a document id (FNV-1a: stable across processes and runs).
pub fn bucket_of(id: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("b{}", hash % BUCKETS)
}

/// What every worker did, shared and counted as it happens.
#[derive(Debug, Default)]
pub struct Tally {
    inner: Mutex<Counts>,
}

/// The counts of a [`Tally`].
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Good operations acknowledged, by kind (`new`, `replace`, `partial_update`, `delete`).
    pub operations: BTreeMap<&'static str, u64>,
    /// Requests sent, by kind (`bulk`, `single`).
    pub requests: BTreeMap<&'static str, u64>,
    /// Bad documents sent, by kind, with the statuses they got.
    pub bad: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Answers that were not what they must be (a 5xx, a bad document accepted, a good write
    /// refused, a result the model did not predict).
    pub violations: Vec<String>,
}

impl Tally {
    fn with<T>(&self, change: impl FnOnce(&mut Counts) -> T) -> T {
        change(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A copy of the counts so far.
    pub fn counts(&self) -> Counts {
        self.with(|counts| counts.clone())
    }

    fn operation(&self, kind: &'static str) {
        self.with(|counts| *counts.operations.entry(kind).or_default() += 1);
    }

    fn request(&self, kind: &'static str) {
        self.with(|counts| *counts.requests.entry(kind).or_default() += 1);
    }

    fn bad(&self, kind: String, status: u16) {
        self.with(|counts| {
            *counts
                .bad
                .entry(kind)
                .or_default()
                .entry(status)
                .or_default() += 1
        });
    }

    fn violation(&self, what: String) {
        eprintln!("soak violation: {what}");
        self.with(|counts| {
            // Bounded: the first ones say what went wrong; the count says how often.
            if counts.violations.len() < 1000 {
                counts.violations.push(what);
            }
        });
    }
}

/// The documents a worker believes exist, with their `_source`; picks one at random in O(1).
#[derive(Debug, Default)]
pub struct LiveDocuments {
    ids: Vec<String>,
    documents: HashMap<String, (usize, Value)>,
}

impl LiveDocuments {
    fn insert(&mut self, id: &str, source: Value) {
        match self.documents.get_mut(id) {
            Some(entry) => entry.1 = source,
            None => {
                self.documents
                    .insert(id.to_string(), (self.ids.len(), source));
                self.ids.push(id.to_string());
            }
        }
    }

    fn remove(&mut self, id: &str) {
        let Some((position, _)) = self.documents.remove(id) else {
            return;
        };
        self.ids.swap_remove(position);
        if let Some(moved) = self.ids.get(position) {
            self.documents
                .get_mut(moved)
                .expect("every listed id has a document")
                .0 = position;
        }
    }

    fn source(&self, id: &str) -> Option<&Value> {
        self.documents.get(id).map(|(_, source)| source)
    }

    fn random(&self, rng: &mut StdRng) -> Option<String> {
        self.ids.choose(rng).cloned()
    }

    /// The documents, by id.
    pub fn into_map(self) -> BTreeMap<String, Value> {
        self.documents
            .into_iter()
            .map(|(id, (_, source))| (id, source))
            .collect()
    }
}

/// One write the worker means to make, and what it expects of it.
#[derive(Clone, Debug)]
enum Write {
    /// A new document (201 `created`).
    New { id: String, source: Value },
    /// A whole new source for an existing document (200 `updated`).
    Replace { id: String, source: Value },
    /// `_update` with a partial document merged into the existing one (200 `updated`).
    PartialUpdate { id: String, doc: Value },
    /// Deletes an existing document (200 `deleted`).
    Delete { id: String },
}

/// Bad documents, each refused with a 400 and changing nothing.
#[derive(Clone, Copy, Debug)]
enum Bad {
    MalformedJson,
    WrongType,
    DuplicateKey,
    OversizedId,
}

impl Bad {
    const IN_A_DOCUMENT: [Bad; 3] = [Bad::MalformedJson, Bad::WrongType, Bad::DuplicateKey];
    const ALL: [Bad; 4] = [
        Bad::MalformedJson,
        Bad::WrongType,
        Bad::DuplicateKey,
        Bad::OversizedId,
    ];

    fn name(self) -> &'static str {
        match self {
            Bad::MalformedJson => "malformed_json",
            Bad::WrongType => "wrong_type",
            Bad::DuplicateKey => "duplicate_key",
            Bad::OversizedId => "oversized_id",
        }
    }

    /// The source line of the bad document (the id is separate).
    fn source(self, n: u64) -> String {
        match self {
            Bad::MalformedJson => format!("{{\"n\": {n}, \"body\": \"cut"),
            Bad::WrongType => json!({"n": format!("not a number {n}")}).to_string(),
            Bad::DuplicateKey => format!("{{\"n\": {n}, \"body\": \"a\", \"n\": \"twice\"}}"),
            Bad::OversizedId => json!({"n": n}).to_string(),
        }
    }
}

/// One writer.
pub struct Worker {
    name: String,
    client: EsClient,
    rng: StdRng,
    live: LiveDocuments,
    next: u64,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    /// Worker `number` of a soak seeded with `seed`, writing to `client` until `stop`.
    pub fn new(
        number: usize,
        seed: u64,
        client: EsClient,
        tally: Arc<Tally>,
        stop: Arc<AtomicBool>,
    ) -> Worker {
        Worker {
            name: format!("w{number}"),
            client,
            rng: StdRng::seed_from_u64(seed ^ (number as u64 + 1).wrapping_mul(0x9e37_79b9)),
            live: LiveDocuments::default(),
            next: 0,
            tally,
            stop,
        }
    }

    /// Writes until told to stop; returns the documents it believes exist.
    pub async fn run(mut self) -> LiveDocuments {
        while !self.stop.load(Ordering::Relaxed) {
            match self.rng.random_range(0..100) {
                0..70 => self.bulk().await,
                70..95 => self.single().await,
                _ => self.refused_bulk().await,
            }
            let pause = self.rng.random_range(Duration::ZERO..=MAX_PAUSE);
            tokio::time::sleep(pause).await;
        }
        self.live
    }

    fn new_id(&mut self) -> String {
        self.next += 1;
        format!("{}-{}", self.name, self.next)
    }

    fn body(&mut self) -> String {
        let length = if self.rng.random_bool(0.005) {
            self.rng.random_range(LARGE_BODY_BYTES)
        } else {
            self.rng.random_range(BODY_BYTES)
        };
        let words = ["alpha", "beta", "gamma", "delta", "kappa", "omega", "sigma"];
        let mut body = String::with_capacity(length + 8);
        while body.len() < length {
            body.push_str(words.choose(&mut self.rng).expect("words"));
            body.push(' ');
        }
        body
    }

    fn source(&mut self, id: &str) -> Value {
        self.next += 1;
        json!({
            "worker": self.name,
            "bucket": bucket_of(id),
            "n": self.next,
            "body": self.body(),
        })
    }

    /// The next good write, never on an id in `touched` (one write per id per request keeps
    /// the expected outcome independent of the order the shards apply a bulk in).
    fn next_write(&mut self, touched: &mut HashSet<String>) -> Write {
        let roll = self.rng.random_range(0..100);
        let existing = (roll < 40)
            .then(|| self.live.random(&mut self.rng))
            .flatten()
            .filter(|id| !touched.contains(id));
        let write = match existing {
            Some(id) if roll < 10 => Write::Delete { id },
            Some(id) if roll < 25 => {
                let source = self.source(&id);
                Write::Replace { id, source }
            }
            Some(id) => {
                self.next += 1;
                let doc = json!({"n": self.next, "body": self.body()});
                Write::PartialUpdate { id, doc }
            }
            None => {
                let id = self.new_id();
                let source = self.source(&id);
                Write::New { id, source }
            }
        };
        touched.insert(write.id().to_string());
        write
    }

    async fn bulk(&mut self) {
        let count = self.rng.random_range(BULK_OPERATIONS);
        let mut touched = HashSet::new();
        let mut items = Vec::with_capacity(count + 1);
        let mut ndjson = String::new();
        for _ in 0..count {
            let write = self.next_write(&mut touched);
            write.push_bulk_lines(&mut ndjson);
            items.push(Ok(write));
        }
        if self.rng.random_bool(0.3) {
            let bad = *Bad::IN_A_DOCUMENT.choose(&mut self.rng).expect("kinds");
            let id = self.target_of_bad(&touched);
            let position = self.rng.random_range(0..=items.len());
            let mut lines = String::new();
            lines.push_str(&json!({"index": {"_index": LEADER_INDEX, "_id": id}}).to_string());
            lines.push('\n');
            lines.push_str(&bad.source(self.next));
            lines.push('\n');
            // Insert the bad item's two lines at its position among the others.
            let offset = byte_offset_of_item(&ndjson, &items, position);
            ndjson.insert_str(offset, &lines);
            items.insert(position, Err((bad, id)));
        }
        self.tally.request("bulk");
        let answer = self.client.bulk("/_bulk", ndjson).await;
        if answer.status != 200 {
            self.tally.violation(format!(
                "a bulk of {} items answered {}: {}",
                items.len(),
                answer.status,
                clip(&answer.text)
            ));
            return;
        }
        let Some(results) = answer.body["items"].as_array() else {
            self.tally.violation(format!(
                "a bulk answer without items: {}",
                clip(&answer.text)
            ));
            return;
        };
        if results.len() != items.len() {
            self.tally.violation(format!(
                "a bulk of {} items answered {} items",
                items.len(),
                results.len()
            ));
            return;
        }
        for (item, result) in items.into_iter().zip(results) {
            let result = result
                .as_object()
                .and_then(|object| object.values().next())
                .cloned()
                .unwrap_or(Value::Null);
            let status = result["status"].as_u64().unwrap_or(0) as u16;
            match item {
                Ok(write) => self.check_write(&write, status, &result),
                Err((bad, id)) => {
                    self.check_bad(format!("{} (bulk item)", bad.name()), &id, status)
                }
            }
        }
    }

    /// An id for a bad document: an existing one when there is one (a refused write must leave
    /// it as it was), else a new one (which must not come to exist).
    fn target_of_bad(&mut self, touched: &HashSet<String>) -> String {
        match self.live.random(&mut self.rng) {
            Some(id) if !touched.contains(&id) => id,
            _ => self.new_id(),
        }
    }

    async fn single(&mut self) {
        if self.rng.random_bool(0.2) {
            let bad = *Bad::ALL.choose(&mut self.rng).expect("kinds");
            let id = match bad {
                Bad::OversizedId => "x".repeat(OVERSIZED_ID_BYTES),
                _ => self.target_of_bad(&HashSet::new()),
            };
            let body = bad.source(self.next).into_bytes();
            self.tally.request("single");
            let answer = self
                .client
                .send(
                    reqwest::Method::PUT,
                    &format!("/{LEADER_INDEX}/_doc/{id}"),
                    Some(("application/json", body)),
                )
                .await;
            self.check_bad(format!("{} (single)", bad.name()), &id, answer.status);
            return;
        }
        let write = self.next_write(&mut HashSet::new());
        let (method, path, body) = match &write {
            Write::New { id, source } | Write::Replace { id, source } => (
                reqwest::Method::PUT,
                format!("/{LEADER_INDEX}/_doc/{id}"),
                Some(source.to_string()),
            ),
            Write::PartialUpdate { id, doc } => (
                reqwest::Method::POST,
                format!("/{LEADER_INDEX}/_update/{id}"),
                Some(json!({ "doc": doc }).to_string()),
            ),
            Write::Delete { id } => (
                reqwest::Method::DELETE,
                format!("/{LEADER_INDEX}/_doc/{id}"),
                None,
            ),
        };
        self.tally.request("single");
        let answer = self
            .client
            .send(
                method,
                &path,
                body.map(|body| ("application/json", body.into_bytes())),
            )
            .await;
        self.check_write(&write, answer.status, &answer.body);
    }

    /// A `_bulk` refused as a whole (400): one item with an oversized id, or a malformed
    /// action line, among good items that must not be applied.
    async fn refused_bulk(&mut self) {
        let mut touched = HashSet::new();
        let mut ndjson = String::new();
        for _ in 0..self.rng.random_range(1..=5) {
            self.next_write(&mut touched).push_bulk_lines(&mut ndjson);
        }
        let kind = if self.rng.random_bool(0.5) {
            let id = "y".repeat(OVERSIZED_ID_BYTES);
            ndjson.push_str(&json!({"index": {"_index": LEADER_INDEX, "_id": id}}).to_string());
            ndjson.push_str("\n{\"n\": 1}\n");
            "oversized_id (whole bulk)"
        } else {
            ndjson.push_str(&format!("{{\"index\": {{\"_index\": \"{LEADER_INDEX}\"\n"));
            ndjson.push_str("{\"n\": 1}\n");
            "malformed_action (whole bulk)"
        };
        self.tally.request("bulk");
        let answer = self.client.bulk("/_bulk", ndjson).await;
        self.check_bad(kind.to_string(), "", answer.status);
        if answer.status == 200 {
            self.tally.violation(format!(
                "a bulk that must be refused as a whole was applied: {}",
                clip(&answer.text)
            ));
        }
    }

    fn check_bad(&mut self, kind: String, id: &str, status: u16) {
        self.tally.bad(kind.clone(), status);
        if !(400..500).contains(&status) {
            self.tally
                .violation(format!("bad document {kind} on [{id}] answered {status}"));
        }
    }

    fn check_write(&mut self, write: &Write, status: u16, answer: &Value) {
        let (expected_status, expected_result) = match write {
            Write::New { .. } => (201, "created"),
            Write::Replace { .. } | Write::PartialUpdate { .. } => (200, "updated"),
            Write::Delete { .. } => (200, "deleted"),
        };
        if status != expected_status || answer["result"] != expected_result {
            self.tally.violation(format!(
                "{write:?} answered {status}: {}",
                clip(&answer.to_string())
            ));
            // The model no longer knows this id: stop predicting it.
            self.live.remove(write.id());
            return;
        }
        match write {
            Write::New { id, source } | Write::Replace { id, source } => {
                self.live.insert(id, source.clone());
            }
            Write::PartialUpdate { id, doc } => {
                let mut merged = self.live.source(id).cloned().unwrap_or(json!({}));
                if let (Some(target), Some(fields)) = (merged.as_object_mut(), doc.as_object()) {
                    merge(target, fields);
                }
                self.live.insert(id, merged);
            }
            Write::Delete { id } => self.live.remove(id),
        }
        self.tally.operation(write.kind());
    }
}

impl Write {
    fn id(&self) -> &str {
        match self {
            Write::New { id, .. }
            | Write::Replace { id, .. }
            | Write::PartialUpdate { id, .. }
            | Write::Delete { id } => id,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Write::New { .. } => "new",
            Write::Replace { .. } => "replace",
            Write::PartialUpdate { .. } => "partial_update",
            Write::Delete { .. } => "delete",
        }
    }

    fn push_bulk_lines(&self, ndjson: &mut String) {
        let meta = json!({"_index": LEADER_INDEX, "_id": self.id()});
        let (action, body) = match self {
            Write::New { source, .. } => ("create", Some(source.clone())),
            Write::Replace { source, .. } => ("index", Some(source.clone())),
            Write::PartialUpdate { doc, .. } => ("update", Some(json!({ "doc": doc }))),
            Write::Delete { .. } => ("delete", None),
        };
        ndjson.push_str(&json!({ action: meta }).to_string());
        ndjson.push('\n');
        if let Some(body) = body {
            ndjson.push_str(&body.to_string());
            ndjson.push('\n');
        }
    }
}

/// The byte offset in `ndjson` where item `position` of `items` starts (every item is one
/// line, or two for those with a body).
fn byte_offset_of_item(
    ndjson: &str,
    items: &[Result<Write, (Bad, String)>],
    position: usize,
) -> usize {
    let lines: usize = items[..position]
        .iter()
        .map(|item| match item {
            Ok(Write::Delete { .. }) => 1,
            _ => 2,
        })
        .sum();
    ndjson.split_inclusive('\n').take(lines).map(str::len).sum()
}

/// Elasticsearch's partial update: objects merge key by key, anything else replaces.
fn merge(target: &mut Map<String, Value>, fields: &Map<String, Value>) {
    for (key, value) in fields {
        match (target.get_mut(key), value) {
            (Some(Value::Object(existing)), Value::Object(inner)) => merge(existing, inner),
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The start of a long answer, for a message.
pub fn clip(text: &str) -> String {
    text.chars().take(600).collect()
}

/// The answer's status, and its text when it is not `expected`.
pub fn expect_status(answer: &Answer, expected: u16, what: &str) {
    assert_eq!(answer.status, expected, "{what}: {}", clip(&answer.text));
}
