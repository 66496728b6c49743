//! The write paths of a shard: the primary path (assigns sequence numbers and versions, checks
//! optimistic concurrency) and the replica path (applies operations that already carry them, in
//! any order, idempotently), plus real-time get.
//!
//! Every call is applied as one tantivy batch (`IndexWriter::run`), which tantivy always puts
//! whole into one segment, and every batch starts with an *anchor* document (see
//! [`crate::history`]): a segment therefore always holds a live document, because tantivy
//! silently discards committed segments whose documents are all deleted, which would discard
//! their soft-deleted history.
//!
//! Locking: a batch holds the `batches` read lock and, in increasing order, the version-map
//! stripe of every id it touches, from version resolution until its tantivy operations are
//! queued (or parked during a commit), so the operations of one id reach tantivy in the order
//! their versions were resolved. The `IndexWriter::run` calls themselves are serialized by the
//! [`super::writer_slot::WriterSlot`]: tantivy's delete queue must receive deletes in opstamp
//! order, and concurrent `run` calls do not guarantee that. Before it takes the stripes (and,
//! but for the replay on open, the `batches` lock), a call reserves places for its documents in
//! the writer's indexing queue, waiting while it is full: tantivy's indexing threads need none
//! of these locks to free places, so the wait always ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use tantivy::indexer::UserOperation;
use tantivy::{TantivyDocument, Term};

use super::lock_order::{LockRank, RankedMutex, RankedMutexGuard, RankedRwLock, RankedWriteGuard};
use super::writer_slot::{IndexingTicket, ShardOperation, ShardWriter, WriterOpener, WriterSlot};
use super::{Durability, ShardEngine, ShardInner};
use crate::error::{EngineError, Result};
use crate::history::{anchor_document, lookup_latest};
use crate::record;
use crate::translog::TranslogLocation;
use crate::types::{Operation, OperationKind, PrimaryTerm, SeqNo, SharedOperation};
use crate::version_map::{LiveVersionMap, Tail, VersionStripe, VersionValue};

/// The write path of a shard: what a write batch holds and changes between version resolution
/// and its hand-over to tantivy. A refresh shares it: its commit section takes `batches`
/// exclusively and opens new generations of the version map and the tail.
pub(crate) struct WritePath {
    /// Held shared by every write batch, from version resolution until its operations are
    /// handed to tantivy (or parked), the tail, the translog and the tracker; held exclusively
    /// by a refresh while it fixes the commit's payload, rolls the translog, opens new
    /// version-map and tail generations and takes the writer. So a commit holds exactly the
    /// operations processed when its payload was fixed; batches after it wait for nothing but
    /// that short section (see [`super::writer_slot`]).
    batches: RankedRwLock<()>,
    /// The tantivy writer; every `IndexWriter::run` goes through it.
    writer: WriterSlot,
    /// The latest version of every id written since the last refresh (the per-id locks).
    version_map: LiveVersionMap,
    /// Operations not yet in a refreshed reader, by sequence number.
    tail: RankedMutex<Tail>,
    max_seq_no_of_updates: AtomicI64,
    follower: AtomicBool,
    /// Numbers anchor documents; starts at a random value so numbers stay unique across
    /// restarts without being persisted.
    anchor_counter: AtomicU64,
    /// Estimated bytes held by the tail and the version map for the operations written since
    /// the last refresh began ([`BUFFERED_OPERATION_OVERHEAD_BYTES`] each, plus the source
    /// and the id); only a refresh releases them.
    buffered_bytes: AtomicU64,
    /// The same for the generation a refresh in progress is making searchable.
    refreshing_bytes: AtomicU64,
}

/// What the tail and the version map hold for one operation beyond its source and id: the
/// shared operation and its header, a tail entry and a version-map entry (with its own copy of
/// the id). An estimate, as Elasticsearch's `RamUsageEstimator` is: it bounds the indexing
/// buffer, it is not an allocator count.
pub(crate) const BUFFERED_OPERATION_OVERHEAD_BYTES: u64 = 192;

/// The bytes [`WritePath`] accounts for `operation` while it is buffered.
fn buffered_size(operation: &Operation) -> u64 {
    let id = operation.id().map_or(0, str::len);
    (operation.size_in_bytes() + id) as u64 + BUFFERED_OPERATION_OVERHEAD_BYTES
}

impl WritePath {
    /// The write path over `writer`, opened again by `open` when needed after it was closed
    /// for idleness, starting from the commit's `max_seq_no_of_updates`.
    pub(crate) fn new(
        open: WriterOpener,
        writer: ShardWriter,
        max_seq_no_of_updates: SeqNo,
        follower: bool,
    ) -> Self {
        WritePath {
            batches: RankedRwLock::new(LockRank::Batches, ()),
            writer: WriterSlot::new(open).holding(writer),
            version_map: LiveVersionMap::default(),
            tail: RankedMutex::new(LockRank::Tail, Tail::default()),
            max_seq_no_of_updates: AtomicI64::new(max_seq_no_of_updates.0),
            follower: AtomicBool::new(follower),
            anchor_counter: AtomicU64::new(rand::random::<u64>() >> 1),
            buffered_bytes: AtomicU64::new(0),
            refreshing_bytes: AtomicU64::new(0),
        }
    }

    /// Estimated bytes the tail and the version map hold (both generations): the shard's part
    /// of the node's indexing buffer, released by a refresh.
    pub(crate) fn buffered_bytes(&self) -> u64 {
        self.buffered_bytes.load(Ordering::Acquire) + self.refreshing_bytes.load(Ordering::Acquire)
    }

    /// The highest sequence number of an update or delete.
    pub(crate) fn max_seq_no_of_updates(&self) -> SeqNo {
        SeqNo(self.max_seq_no_of_updates.load(Ordering::Acquire))
    }

    /// Raises the highest sequence number of an update or delete to `seq_no`.
    fn raise_max_seq_no_of_updates(&self, seq_no: SeqNo) {
        self.max_seq_no_of_updates
            .fetch_max(seq_no.0, Ordering::AcqRel);
    }

    /// True while the shard refuses direct writes.
    pub(crate) fn is_follower(&self) -> bool {
        self.follower.load(Ordering::Acquire)
    }

    /// Makes the shard refuse (`true`) or accept direct writes.
    pub(crate) fn set_follower(&self, follower: bool) {
        self.follower.store(follower, Ordering::Release);
    }

    /// The number of the next anchor document.
    pub(super) fn next_anchor(&self) -> u64 {
        self.anchor_counter.fetch_add(1, Ordering::Relaxed)
    }

    /// The tantivy writer.
    pub(crate) fn writer(&self) -> &WriterSlot {
        &self.writer
    }

    /// The operations not yet in a refreshed reader, locked.
    pub(crate) fn tail(&self) -> RankedMutexGuard<'_, Tail> {
        self.tail.lock()
    }

    /// Holds every write batch back until the guard is dropped (the `batches` lock, taken
    /// exclusively): meanwhile no batch is between version resolution and the hand-over of
    /// its operations to tantivy.
    pub(crate) fn hold_batches(&self) -> RankedWriteGuard<'_, ()> {
        self.batches.write()
    }

    /// Starts a refresh while the batches are held back (`_held`): the operations and
    /// versions written so far become the refreshing generations of the tail and the version
    /// map, and later writes go to new ones.
    pub(crate) fn begin_refresh(&self, _held: &RankedWriteGuard<'_, ()>) {
        self.version_map.begin_refresh();
        self.tail.lock().begin_refresh();
        // No batch is adding to the count: they are held back.
        let buffered = self.buffered_bytes.swap(0, Ordering::AcqRel);
        self.refreshing_bytes.store(buffered, Ordering::Release);
    }

    /// Ends a refresh: runs `install_reader` (which installs the reader holding the refreshing
    /// generations) while the tail is locked, then releases the refreshing generation of the
    /// version map. In that order, an operation or a version missing from the tail or the
    /// version map is in the installed reader. Returns the released generations, for the
    /// caller to drop outside its locks.
    pub(crate) fn end_refresh(&self, install_reader: impl FnOnce()) -> RefreshedGenerations {
        let tail = {
            let mut tail = self.tail.lock();
            install_reader();
            tail.end_refresh()
        };
        let versions = self.version_map.end_refresh();
        self.refreshing_bytes.store(0, Ordering::Release);
        RefreshedGenerations {
            _tail: tail,
            _versions: versions,
        }
    }
}

/// The generations of the tail and the version map that a refresh made searchable. Dropping
/// them frees every operation and version written since the refresh before, which takes a
/// while for a second of writes.
pub(crate) struct RefreshedGenerations {
    _tail: BTreeMap<i64, SharedOperation>,
    _versions: Vec<HashMap<String, VersionValue>>,
}

/// Index (create or replace) a document through the primary path.
#[derive(Clone, Debug)]
pub struct IndexRequest {
    /// Document id.
    pub id: String,
    /// JSON object `_source`.
    pub source: Vec<u8>,
    /// Only apply if the document's current sequence number is this (with `if_primary_term`).
    pub if_seq_no: Option<SeqNo>,
    /// Only apply if the document's current primary term is this (with `if_seq_no`).
    pub if_primary_term: Option<PrimaryTerm>,
    /// Fail if the document exists (`op_type=create`).
    pub create_only: bool,
    /// The id was generated for this request by the node (a random one, as for `POST
    /// /{index}/_doc` or a bulk `index` without `_id`): no document can have it yet, so the
    /// primary skips looking it up, as Elasticsearch does for auto-generated ids. Ignored with
    /// `if_seq_no`/`if_primary_term`. Never set for an id a client chose.
    pub automatic_id: bool,
}

impl IndexRequest {
    /// A plain index request.
    pub fn new(id: impl Into<String>, source: impl Into<Vec<u8>>) -> Self {
        IndexRequest {
            id: id.into(),
            source: source.into(),
            if_seq_no: None,
            if_primary_term: None,
            create_only: false,
            automatic_id: false,
        }
    }
}

/// Delete a document through the primary path.
#[derive(Clone, Debug)]
pub struct DeleteRequest {
    /// Document id.
    pub id: String,
    /// Only apply if the document's current sequence number is this.
    pub if_seq_no: Option<SeqNo>,
    /// Only apply if the document's current primary term is this.
    pub if_primary_term: Option<PrimaryTerm>,
}

impl DeleteRequest {
    /// A plain delete request.
    pub fn new(id: impl Into<String>) -> Self {
        DeleteRequest {
            id: id.into(),
            if_seq_no: None,
            if_primary_term: None,
        }
    }
}

/// One item of a bulk.
#[derive(Clone, Debug)]
pub enum WriteRequest {
    /// Index a document.
    Index(IndexRequest),
    /// Delete a document.
    Delete(DeleteRequest),
}

impl WriteRequest {
    /// The document id.
    pub fn id(&self) -> &str {
        match self {
            WriteRequest::Index(request) => &request.id,
            WriteRequest::Delete(request) => &request.id,
        }
    }
}

/// What a write did (Elasticsearch's `result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A new document.
    Created,
    /// A document replaced.
    Updated,
    /// A document deleted.
    Deleted,
    /// A delete of a document that did not exist (still recorded in the history).
    NotFound,
}

impl WriteOutcome {
    /// Elasticsearch's name for it.
    pub fn name(self) -> &'static str {
        match self {
            WriteOutcome::Created => "created",
            WriteOutcome::Updated => "updated",
            WriteOutcome::Deleted => "deleted",
            WriteOutcome::NotFound => "not_found",
        }
    }
}

/// The result of an acknowledged write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteResult {
    /// Document id.
    pub id: String,
    /// Sequence number assigned.
    pub seq_no: SeqNo,
    /// Primary term.
    pub primary_term: PrimaryTerm,
    /// Document version after the write.
    pub version: u64,
    /// What happened.
    pub outcome: WriteOutcome,
}

/// A document read by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetResult {
    /// Document id.
    pub id: String,
    /// Sequence number of the operation that wrote it.
    pub seq_no: SeqNo,
    /// Its primary term.
    pub primary_term: PrimaryTerm,
    /// Its version.
    pub version: u64,
    /// Its `_source`.
    pub source: Vec<u8>,
}

/// The latest known state of an id.
#[derive(Clone, Copy, Debug)]
struct Latest {
    seq_no: SeqNo,
    primary_term: PrimaryTerm,
    version: u64,
    deleted: bool,
}

enum Prepared {
    Index(IndexRequest, TantivyDocument),
    Delete(DeleteRequest),
}

/// The tantivy operations and history entries of one call, applied together, and the places
/// reserved for its documents in the indexing queue.
struct Batch {
    operations: Vec<ShardOperation>,
    history: Vec<SharedOperation>,
    ticket: IndexingTicket,
}

/// Armed from the moment a batch takes sequence numbers (or stages operations that carry
/// them) until the batch reached the checkpoint tracker. Dropped armed (a panic in between),
/// it fails the shard: those sequence numbers would otherwise stay unprocessed and hold the
/// local and global checkpoints, and every follower, below them for good. A failed shard
/// refuses work and ends its checkpoint waits; reopening it recovers from its durable state
/// and fills the gap with no-ops.
struct AssignedSeqNos<'a> {
    inner: &'a ShardInner,
    armed: bool,
}

impl<'a> AssignedSeqNos<'a> {
    fn arm(inner: &'a ShardInner) -> Self {
        AssignedSeqNos { inner, armed: true }
    }

    /// The batch reached the tracker, or failed the shard itself.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for AssignedSeqNos<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.fail(EngineError::Closed(
                "a write was interrupted after its sequence numbers were assigned; the shard \
                 must be reopened"
                    .to_string(),
            ));
        }
    }
}

impl ShardEngine {
    /// Indexes one document (primary path) and waits for durability.
    pub fn index(&self, request: IndexRequest) -> Result<WriteResult> {
        single(self.bulk(vec![WriteRequest::Index(request)]))
    }

    /// Deletes one document (primary path) and waits for durability.
    pub fn delete(&self, request: DeleteRequest) -> Result<WriteResult> {
        single(self.bulk(vec![WriteRequest::Delete(request)]))
    }

    /// Applies a bulk of writes through the primary path. Items fail independently (a bad
    /// document or a version conflict fails only its item); one translog fsync covers the
    /// whole bulk (and is shared with concurrent bulks).
    pub fn bulk(&self, requests: Vec<WriteRequest>) -> Vec<Result<WriteResult>> {
        let started = std::time::Instant::now();
        let results = self.bulk_uncounted(requests);
        let (mut indexed, mut deleted, mut failed) = (0, 0, 0);
        for result in &results {
            match result {
                Ok(result) => match result.outcome {
                    WriteOutcome::Created | WriteOutcome::Updated => indexed += 1,
                    WriteOutcome::Deleted | WriteOutcome::NotFound => deleted += 1,
                },
                Err(_) => failed += 1,
            }
        }
        self.inner
            .counters
            .record_writes(indexed, deleted, 0, failed, started.elapsed());
        results
    }

    fn bulk_uncounted(&self, requests: Vec<WriteRequest>) -> Vec<Result<WriteResult>> {
        let inner = &self.inner;
        if inner.writes.is_follower() {
            let reason =
                "this index is a follower index; writes must come from its leader".to_string();
            return requests
                .iter()
                .map(|_| Err(EngineError::ReadOnlyFollower(reason.clone())))
                .collect();
        }
        // Before parsing, which may grow the mappings.
        if let Err(error) = inner.check_write_block() {
            return requests
                .iter()
                .map(|_| Err(error.for_batch_item()))
                .collect();
        }
        // Parsing happens before any lock is taken.
        let prepared: Vec<Result<Prepared>> = requests
            .into_iter()
            .map(|request| match request {
                WriteRequest::Index(index) => {
                    validate_id(&index.id)?;
                    validate_source_len("document source", index.source.len())?;
                    let document = inner.mapper.parse(&index.source)?;
                    Ok(Prepared::Index(index, document))
                }
                WriteRequest::Delete(delete) => {
                    validate_id(&delete.id)?;
                    Ok(Prepared::Delete(delete))
                }
            })
            .collect();
        let mut results: Vec<Result<WriteResult>> = Vec::with_capacity(prepared.len());
        // Before any lock: waits while tantivy's indexing queue is full.
        let bytes = prepared.iter().flatten().map(prepared_bytes).sum::<u64>()
            + BUFFERED_OPERATION_OVERHEAD_BYTES;
        let ticket = match inner.reserve_indexing(batch_documents(prepared.len()), bytes) {
            Ok(ticket) => ticket,
            Err(error) => {
                return prepared
                    .iter()
                    .map(|_| Err(error.for_batch_item()))
                    .collect();
            }
        };
        let location = {
            let _batch = inner.writes.batches.read();
            let stripes = prepared
                .iter()
                .filter_map(|item| item.as_ref().ok())
                .map(|item| inner.writes.version_map.stripe_of(prepared_id(item)))
                .collect();
            let mut locked = inner.writes.version_map.lock_many(stripes);
            let mut batch = inner.new_batch(prepared.len(), ticket);
            let assigned = AssignedSeqNos::arm(inner);
            for item in prepared {
                results.push(item.and_then(|prepared| {
                    let stripe = inner.writes.version_map.stripe_of(prepared_id(&prepared));
                    inner.apply_primary(locked.get(stripe), &mut batch, prepared)
                }));
            }
            let location = inner.submit(batch, false);
            assigned.disarm();
            drop(locked);
            location
        };
        let durable = location.and_then(|location| match location {
            Some(location) => inner.wait_durable(location),
            None => Ok(()),
        });
        if let Err(error) = durable {
            return results
                .into_iter()
                .map(|result| result.and_then(|_| Err(error.for_batch_item())))
                .collect();
        }
        results
    }

    /// Records a no-op on the primary (fills a sequence number) and waits for durability.
    pub fn no_op(&self, reason: &str) -> Result<SeqNo> {
        let inner = &self.inner;
        validate_source_len("no-op reason", reason.len())?;
        let bytes = (reason.len() + 32) as u64 + 2 * BUFFERED_OPERATION_OVERHEAD_BYTES;
        inner.check_write_block()?;
        let ticket = inner.reserve_indexing(batch_documents(1), bytes)?;
        let (seq_no, location) = {
            let _batch = inner.writes.batches.read();
            inner.check_failed()?;
            let assigned = AssignedSeqNos::arm(inner);
            let seq_no = inner.checkpoints.lock().generate_seq_no();
            let operation = Arc::new(Operation {
                seq_no,
                primary_term: PrimaryTerm(inner.primary_term.load(Ordering::Acquire)),
                version: 1,
                kind: OperationKind::NoOp {
                    reason: reason.to_string(),
                },
            });
            let mut batch = inner.new_batch(1, ticket);
            inner.stage(&mut batch, operation, None, false, true);
            let location = inner.submit(batch, false);
            assigned.disarm();
            (seq_no, location?)
        };
        if let Some(location) = location {
            inner.wait_durable(location)?;
        }
        inner
            .counters
            .record_writes(0, 0, 1, 0, std::time::Duration::ZERO);
        Ok(seq_no)
    }

    /// Applies operations that already carry sequence numbers, terms and versions (replica and
    /// follower path), in any order; an operation already applied is skipped. An operation
    /// older than the latest one on its id is kept as soft-deleted history. Index operations
    /// above `max_seq_no_of_updates` (the leader's) cannot overwrite anything and, once every
    /// operation up to it is processed, are added without an id lookup. Returns how many
    /// operations were applied (not skipped).
    pub fn apply_operations(
        &self,
        operations: &[Operation],
        max_seq_no_of_updates: SeqNo,
    ) -> Result<usize> {
        self.apply_shared_operations(
            operations.iter().map(|op| Arc::new(op.clone())).collect(),
            max_seq_no_of_updates,
        )
    }

    /// [`ShardEngine::apply_operations`] for operations already shared (a follower's write
    /// buffer holds what the leader's changes API returned): no copy of any source.
    ///
    /// Every operation's sequence number and id are checked before any is applied. The
    /// operations are then parsed and handed to tantivy [`APPLY_CHUNK`] at a time, so that
    /// tantivy indexes the first chunk while the next is parsed (a follower's write carries up
    /// to 5,120 operations) and no chunk holds the batch lock or its ids' version-map stripes
    /// for long. A source that fails to parse ends the call with that error; the chunks before
    /// it stay applied, which is harmless, as applying an operation again is skipped. The call
    /// returns once everything it applied is durable (one translog sync, at the end).
    pub fn apply_shared_operations(
        &self,
        operations: Vec<SharedOperation>,
        max_seq_no_of_updates: SeqNo,
    ) -> Result<usize> {
        let started = std::time::Instant::now();
        let (mut indexed, mut deleted, mut noops) = (0, 0, 0);
        for operation in &operations {
            match operation.op_type() {
                crate::types::OpType::Index => indexed += 1,
                crate::types::OpType::Delete => deleted += 1,
                crate::types::OpType::NoOp => noops += 1,
            }
        }
        let applied = self.apply_uncounted(operations, max_seq_no_of_updates);
        let failed = u64::from(applied.is_err());
        self.inner
            .counters
            .record_writes(indexed, deleted, noops, failed, started.elapsed());
        applied
    }

    fn apply_uncounted(
        &self,
        operations: Vec<SharedOperation>,
        max_seq_no_of_updates: SeqNo,
    ) -> Result<usize> {
        let inner = &self.inner;
        inner.check_write_block()?;
        for operation in &operations {
            if !operation.seq_no.is_assigned() {
                return Err(EngineError::InvalidArgument(format!(
                    "operation without a sequence number: {:?}",
                    operation.kind
                )));
            }
            if let Some(id) = operation.id() {
                validate_id(id)?;
            }
            validate_source_len("operation body", record::body_len(operation))?;
        }
        inner
            .writes
            .raise_max_seq_no_of_updates(max_seq_no_of_updates);
        let mut applied = 0;
        let mut durable_at = None;
        let mut operations = operations.into_iter();
        loop {
            let chunk: Vec<SharedOperation> = operations.by_ref().take(APPLY_CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            let mut parsed = Vec::with_capacity(chunk.len());
            for operation in &chunk {
                parsed.push(match operation.source() {
                    Some(source) => Some(inner.mapper.parse_recorded(source)?),
                    None => None,
                });
            }
            let bytes = batch_bytes(chunk.iter().map(|operation| &**operation));
            let ticket = inner.reserve_indexing(batch_documents(chunk.len()), bytes)?;
            let (chunk_applied, location) = {
                let _batch = inner.writes.batches.read();
                inner.apply_replica_batch(chunk, parsed, false, ticket)?
            };
            applied += chunk_applied;
            // The translog is appended in order: the last chunk's place covers the others.
            durable_at = location.or(durable_at);
        }
        if let Some(location) = durable_at {
            inner.wait_durable(location)?;
        }
        Ok(applied)
    }

    /// Reads a document by id, seeing writes not yet refreshed (real-time get).
    pub fn get(&self, id: &str) -> Result<Option<GetResult>> {
        let inner = &self.inner;
        let stripe = inner.writes.version_map.lock(id);
        if let Some(value) = stripe.get(id) {
            let operation = &value.operation;
            return Ok(operation.source().map(|source| GetResult {
                id: id.to_string(),
                seq_no: operation.seq_no,
                primary_term: operation.primary_term,
                version: operation.version,
                source: source.to_vec(),
            }));
        }
        let searcher = inner.commits.searcher();
        drop(stripe);
        let Some(found) = lookup_latest(
            &searcher,
            inner.mapper.schema(),
            inner.retention.history(),
            id,
        )?
        else {
            return Ok(None);
        };
        if !found.alive || found.op_type != crate::types::OpType::Index {
            return Ok(None);
        }
        let (_, source) = self.read_document(&searcher, found.address)?;
        Ok(Some(GetResult {
            id: id.to_string(),
            seq_no: found.seq_no,
            primary_term: found.primary_term,
            version: found.version,
            source,
        }))
    }
}

fn prepared_id(prepared: &Prepared) -> &str {
    match prepared {
        Prepared::Index(request, _) => &request.id,
        Prepared::Delete(request) => &request.id,
    }
}

fn single(mut results: Vec<Result<WriteResult>>) -> Result<WriteResult> {
    results
        .pop()
        .unwrap_or_else(|| Err(EngineError::InvalidArgument("empty bulk".to_string())))
}

/// Operations of a replica or follower write parsed and handed to tantivy at a time (see
/// [`ShardEngine::apply_shared_operations`]).
pub const APPLY_CHUNK: usize = 512;

/// The documents a batch of `operations` hands to tantivy: one each, and the batch's anchor.
fn batch_documents(operations: usize) -> usize {
    operations + 1
}

/// The bytes a batch of `operations` reserves in the indexing queue (see
/// [`super::writer_slot`]): each operation's buffered size, and the overhead of the extra
/// document [`batch_documents`] counts.
fn batch_bytes<'a>(operations: impl IntoIterator<Item = &'a Operation>) -> u64 {
    operations.into_iter().map(buffered_size).sum::<u64>() + BUFFERED_OPERATION_OVERHEAD_BYTES
}

/// The bytes of a primary write's prepared operation, as [`buffered_size`] counts them.
fn prepared_bytes(prepared: &Prepared) -> u64 {
    let (id, source) = match prepared {
        Prepared::Index(index, _) => (index.id.len(), index.source.len()),
        Prepared::Delete(delete) => (delete.id.len(), 0),
    };
    (2 * id + source + 32) as u64 + BUFFERED_OPERATION_OVERHEAD_BYTES
}

/// Longest accepted document id, in bytes (Elasticsearch's limit).
pub const MAX_ID_BYTES: usize = 512;

/// The largest `_source` (or no-op reason) an operation may carry, in bytes: with an id of at
/// most [`MAX_ID_BYTES`], its translog record then fits in the translog's record limit. Checked
/// before a sequence number is assigned, so a refused document leaves no gap in the history.
pub const MAX_SOURCE_BYTES: usize =
    crate::translog::MAX_RECORD_BYTES - record::TRANSLOG_HEADER_BYTES - MAX_ID_BYTES;

fn validate_source_len(kind: &str, len: usize) -> Result<()> {
    if len > MAX_SOURCE_BYTES {
        return Err(EngineError::InvalidArgument(format!(
            "{kind} of {len} bytes exceeds the limit of {MAX_SOURCE_BYTES} bytes per operation"
        )));
    }
    Ok(())
}

fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(EngineError::InvalidArgument(
            "document id must not be empty".to_string(),
        ));
    }
    if id.len() > MAX_ID_BYTES {
        let mut cut = 32;
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        return Err(EngineError::InvalidArgument(format!(
            "id [{}...] is too long, must be no longer than {MAX_ID_BYTES} bytes but was: {}",
            &id[..cut],
            id.len()
        )));
    }
    if id.starts_with('\0') {
        // Reserved for the engine's anchor documents.
        return Err(EngineError::InvalidArgument(
            "document id must not start with a NUL character".to_string(),
        ));
    }
    Ok(())
}

impl ShardInner {
    pub(super) fn wait_durable(&self, location: TranslogLocation) -> Result<()> {
        if self.config().durability == Durability::Request {
            self.translog
                .sync_up_to(location)
                .map_err(|error| self.translog_failure(error))?;
        }
        Ok(())
    }

    /// Reserves places for `documents` of `bytes` in the writer's indexing queue (see
    /// [`super::writer_slot`]); gives up with the shard's failure if it fails meanwhile.
    fn reserve_indexing(&self, documents: usize, bytes: u64) -> Result<IndexingTicket> {
        self.check_space()?;
        self.writes
            .writer
            .reserve(documents, bytes, || self.failure.lock().clone())
            .map_err(EngineError::Closed)
    }

    /// The latest operation on `id`: the version map first, then the refreshed reader
    /// (deleted documents included). The caller holds the id's stripe lock.
    fn latest(&self, stripe: &VersionStripe, id: &str) -> Result<Option<Latest>> {
        if let Some(value) = stripe.get(id) {
            let operation = &value.operation;
            return Ok(Some(Latest {
                seq_no: operation.seq_no,
                primary_term: operation.primary_term,
                version: operation.version,
                deleted: value.is_delete(),
            }));
        }
        let searcher = self.commits.searcher();
        let found = lookup_latest(
            &searcher,
            self.mapper.schema(),
            self.retention.history(),
            id,
        )?;
        Ok(found.map(|found| Latest {
            seq_no: found.seq_no,
            primary_term: found.primary_term,
            version: found.version,
            deleted: !found.alive || found.op_type != crate::types::OpType::Index,
        }))
    }

    /// A batch for `capacity` operations, whose documents `ticket` reserved
    /// ([`batch_documents`] of `capacity`).
    fn new_batch(&self, capacity: usize, ticket: IndexingTicket) -> Batch {
        let anchor = self.writes.next_anchor();
        let mut operations = Vec::with_capacity(capacity * 2 + 1);
        operations.push(UserOperation::Add(
            anchor_document(self.mapper.schema(), anchor).into(),
        ));
        Batch {
            operations,
            history: Vec::with_capacity(capacity),
            ticket,
        }
    }

    fn apply_primary(
        &self,
        stripe: &mut VersionStripe,
        batch: &mut Batch,
        prepared: Prepared,
    ) -> Result<WriteResult> {
        self.check_failed()?;
        let (id, if_seq_no, if_primary_term, automatic_id) = match &prepared {
            Prepared::Index(request, _) => (
                request.id.clone(),
                request.if_seq_no,
                request.if_primary_term,
                request.automatic_id,
            ),
            Prepared::Delete(request) => (
                request.id.clone(),
                request.if_seq_no,
                request.if_primary_term,
                false,
            ),
        };
        // A generated id is new: looking it up would probe every segment's id filter and, on
        // each false positive, read a term dictionary block, for nothing.
        let latest = if automatic_id && if_seq_no.is_none() && if_primary_term.is_none() {
            None
        } else {
            self.latest(stripe, &id)?
        };
        let live = latest.filter(|latest| !latest.deleted);
        check_conditions(&id, live, if_seq_no, if_primary_term)?;
        if let Prepared::Index(request, _) = &prepared {
            if let (true, Some(live)) = (request.create_only, live) {
                return Err(EngineError::VersionConflict {
                    id,
                    reason: format!(
                        "document already exists (current version [{}])",
                        live.version
                    ),
                });
            }
        }
        let seq_no = self.checkpoints.lock().generate_seq_no();
        // Nothing below may fail: this seq_no is only closed by `submit` (see AssignedSeqNos).
        fail::fail_point!("shard::primary_after_seq_no");
        let version = latest.map_or(1, |latest| latest.version + 1);
        let primary_term = PrimaryTerm(self.primary_term.load(Ordering::Acquire));
        let (kind, document, outcome) = match prepared {
            Prepared::Index(request, document) => {
                let outcome = if live.is_some() {
                    WriteOutcome::Updated
                } else {
                    WriteOutcome::Created
                };
                let kind = OperationKind::Index {
                    id: request.id,
                    source: request.source,
                };
                (kind, Some(document), outcome)
            }
            Prepared::Delete(request) => {
                let outcome = if live.is_some() {
                    WriteOutcome::Deleted
                } else {
                    WriteOutcome::NotFound
                };
                (OperationKind::Delete { id: request.id }, None, outcome)
            }
        };
        let operation = Arc::new(Operation {
            seq_no,
            primary_term,
            version,
            kind,
        });
        let is_delete = document.is_none();
        // Every write that finds an older document of its id deletes it, so at most one
        // document per id is alive.
        self.stage(
            batch,
            operation.clone(),
            document,
            latest.is_some(),
            is_delete,
        );
        if is_delete || live.is_some() {
            self.writes.raise_max_seq_no_of_updates(seq_no);
        }
        stripe.put(&id, VersionValue { operation });
        Ok(WriteResult {
            id,
            seq_no,
            primary_term,
            version,
            outcome,
        })
    }

    /// Applies operations that carry their sequence numbers as one batch. Returns how many were
    /// applied (operations already applied are skipped) and the translog location to sync.
    /// `replaying` (translog replay on open) disables the append-only fast path, because the
    /// max_seq_no_of_updates of the commit does not cover the replayed updates, and does not
    /// append to the translog again.
    pub(super) fn apply_replica_batch(
        &self,
        operations: Vec<SharedOperation>,
        documents: Vec<Option<TantivyDocument>>,
        replaying: bool,
        ticket: IndexingTicket,
    ) -> Result<(usize, Option<TranslogLocation>)> {
        self.check_failed()?;
        let stripes = operations
            .iter()
            .map(|operation| self.stripe_key(operation))
            .collect();
        let mut locked = self.writes.version_map.lock_many(stripes);
        let mut batch = self.new_batch(operations.len(), ticket);
        // A follower's batches come in ascending order, so no operation repeats; only another
        // order needs a set to skip the repeats.
        let ascending = operations
            .windows(2)
            .all(|pair| pair[0].seq_no < pair[1].seq_no);
        let mut in_batch =
            (!ascending).then(|| std::collections::HashSet::with_capacity(operations.len()));
        // Staging changes the version map ahead of tantivy and the tracker.
        let assigned = AssignedSeqNos::arm(self);
        let mut applied = 0;
        for (operation, document) in operations.into_iter().zip(documents) {
            let stripe = locked.get(self.stripe_key(&operation));
            // Same seq_no = same operation = same stripe: this check cannot race.
            if self.checkpoints.lock().has_processed(operation.seq_no) {
                continue;
            }
            if in_batch
                .as_mut()
                .is_some_and(|seen| !seen.insert(operation.seq_no))
            {
                continue;
            }
            if let Err(error) =
                self.stage_replica(stripe, &mut batch, operation, document, replaying)
            {
                // What this batch put in the version map is not in tantivy.
                drop(assigned);
                return Err(error);
            }
            applied += 1;
        }
        let location = self.submit(batch, replaying);
        assigned.disarm();
        drop(locked);
        Ok((applied, location?))
    }

    fn stripe_key(&self, operation: &Operation) -> usize {
        match operation.id() {
            Some(id) => self.writes.version_map.stripe_of(id),
            None => self.writes.version_map.stripe_of(&operation.seq_no.0),
        }
    }

    fn stage_replica(
        &self,
        stripe: &mut VersionStripe,
        batch: &mut Batch,
        operation: SharedOperation,
        document: Option<TantivyDocument>,
        replaying: bool,
    ) -> Result<()> {
        let seq_no = operation.seq_no;
        let msu = self.writes.max_seq_no_of_updates();
        // The append-only fast path (as Elasticsearch's replicas): an index operation above the
        // MSU is not an update, but it may re-create an id deleted at or below the MSU, whose
        // earlier (live) document must have been deleted by then. That holds only once every
        // operation up to the MSU is processed; before, an out-of-order delivery (create,
        // re-create, then the delete in between) would leave two live documents for the id.
        let append_only = !replaying && seq_no > msu && self.checkpoints.processed() >= msu;
        let (stale, existing) = match &operation.kind {
            OperationKind::NoOp { .. } => (false, false),
            OperationKind::Index { .. } if append_only => (false, false),
            OperationKind::Index { id, .. } | OperationKind::Delete { id } => {
                let latest = self.latest(stripe, id)?;
                (
                    latest.is_some_and(|latest| latest.seq_no > seq_no),
                    latest.is_some(),
                )
            }
        };
        let is_delete = matches!(operation.kind, OperationKind::Delete { .. });
        let soft_delete_now =
            stale || is_delete || matches!(operation.kind, OperationKind::NoOp { .. });
        self.stage(
            batch,
            operation.clone(),
            document,
            existing && !stale,
            soft_delete_now,
        );
        if !stale {
            if is_delete || existing {
                self.writes.raise_max_seq_no_of_updates(seq_no);
            }
            if let Some(id) = operation.id() {
                let id = id.to_string();
                stripe.put(&id, VersionValue { operation });
            }
        }
        Ok(())
    }

    /// Adds the tantivy operations of one history operation to `batch`. `delete_previous`
    /// deletes the older documents of the id first; `soft_delete_now` deletes the new document
    /// at once (tombstones, no-ops, stale operations), so that it is history only.
    fn stage(
        &self,
        batch: &mut Batch,
        operation: SharedOperation,
        document: Option<TantivyDocument>,
        delete_previous: bool,
        soft_delete_now: bool,
    ) {
        let schema = self.mapper.schema();
        let seq_no = operation.seq_no;
        if let (Some(id), true) = (operation.id(), delete_previous) {
            batch
                .operations
                .push(UserOperation::Delete(Term::from_field_text(schema.id, id)));
        }
        let document = history_document(schema, &operation, document.unwrap_or_default());
        batch.operations.push(UserOperation::Add(document.into()));
        if soft_delete_now {
            batch
                .operations
                .push(UserOperation::Delete(Term::from_field_u64(
                    schema.seq_no,
                    seq_no.0 as u64,
                )));
        }
        batch.history.push(operation);
    }

    /// Queues the batch in tantivy, then records its operations in the tail, the translog and
    /// the checkpoint tracker. Returns the translog location to sync (`None` for an empty batch
    /// or a replay).
    fn submit(&self, batch: Batch, replaying: bool) -> Result<Option<TranslogLocation>> {
        let Batch {
            operations,
            history,
            ticket,
        } = batch;
        if history.is_empty() {
            return Ok(None);
        }
        self.writes
            .writer
            .run(operations, ticket)
            .map_err(|error| self.fail(EngineError::index("adding documents", error)))?;
        {
            let mut buffered = 0;
            let mut tail = self.writes.tail.lock();
            for operation in &history {
                buffered += buffered_size(operation);
                tail.insert(operation.clone());
            }
            // Under the tail lock, which a refresh's begin takes after the batches lock: the
            // bytes of this batch are counted in the generation its operations are in.
            self.writes
                .buffered_bytes
                .fetch_add(buffered, Ordering::AcqRel);
        }
        let location = if replaying {
            None
        } else {
            let mut payloads = Vec::with_capacity(history.len());
            for operation in &history {
                let mut payload = Vec::with_capacity(operation.size_in_bytes() + 32);
                record::encode_translog_payload(operation, &mut payload);
                payloads.push((operation.seq_no.0 as u64, payload));
            }
            let location = self.translog.append_batch(
                payloads
                    .iter()
                    .map(|(seq_no, payload)| (*seq_no, payload.as_slice())),
            );
            self.check_translog_threshold();
            Some(location)
        };
        {
            let mut tracker = self.checkpoints.lock();
            for operation in &history {
                tracker.mark_processed(operation.seq_no);
            }
        }
        self.commits.mark_dirty();
        Ok(location)
    }

    /// Re-applies translog records above the last commit (on open).
    pub(super) fn replay(&self, records: Vec<(u64, Vec<u8>)>) -> Result<()> {
        const REPLAY_BATCH: usize = 1024;
        let count = records.len();
        // Records the commit already holds (applied out of order above its checkpoint) are
        // dropped before they are decoded and parsed.
        let records: Vec<(u64, Vec<u8>)> = {
            let tracker = self.checkpoints.lock();
            records
                .into_iter()
                .filter(|(seq_no, _)| {
                    // An out-of-range seq_no is kept: decoding reports it as corruption.
                    i64::try_from(*seq_no)
                        .map_or(true, |seq_no| !tracker.has_processed(SeqNo(seq_no)))
                })
                .collect()
        };
        let mut applied = 0usize;
        let _batch = self.writes.batches.read();
        for chunk in records.chunks(REPLAY_BATCH) {
            let mut operations = Vec::with_capacity(chunk.len());
            let mut documents = Vec::with_capacity(chunk.len());
            for (seq_no, payload) in chunk {
                let operation =
                    record::decode_translog_payload(*seq_no, payload).map_err(|error| {
                        EngineError::Corrupted {
                            path: self.dir.join(super::TRANSLOG_DIR),
                            reason: format!("record of seq_no {seq_no}: {error}"),
                        }
                    })?;
                documents.push(match operation.source() {
                    Some(source) => Some(self.mapper.parse_recorded(source)?),
                    None => None,
                });
                operations.push(Arc::new(operation));
            }
            let bytes = batch_bytes(operations.iter().map(|operation| &**operation));
            let ticket = self.reserve_indexing(batch_documents(operations.len()), bytes)?;
            applied += self
                .apply_replica_batch(operations, documents, true, ticket)?
                .0;
            // Replayed records are durable: they were read back from the translog.
            let mut tracker = self.checkpoints.lock();
            for (seq_no, _) in chunk {
                tracker.mark_persisted(SeqNo(*seq_no as i64));
            }
        }
        self.checkpoints.notify_changed();
        tracing::info!(shard = ?self.dir, records = count, applied, "translog replayed");
        Ok(())
    }

    /// On a primary, after the replay: records a no-op for every sequence number between the
    /// local checkpoint and max_seq_no that no operation holds (Elasticsearch's
    /// `fillSeqNoGaps`). Concurrent writers append to the translog out of seq_no order, so a
    /// crash can keep an operation (even an acknowledged one) whose lower neighbour never
    /// reached the translog; unfilled, that gap would hold the local and global checkpoints
    /// (and every follower) below it forever. Returns how many no-ops were written.
    pub(super) fn fill_seq_no_gaps(&self) -> Result<usize> {
        if self.writes.is_follower() {
            // A follower's gaps are filled by the leader's operations.
            return Ok(0);
        }
        let (checkpoint, max_seq_no) = {
            let tracker = self.checkpoints.lock();
            (tracker.processed_checkpoint(), tracker.max_seq_no())
        };
        if checkpoint >= max_seq_no {
            return Ok(0);
        }
        let primary_term = PrimaryTerm(self.primary_term.load(Ordering::Acquire));
        let mut filled = 0usize;
        let gaps = (max_seq_no.0 - checkpoint.0) as usize;
        // Gap-filling no-ops carry a short fixed reason.
        let bytes = (gaps as u64 + 1) * (BUFFERED_OPERATION_OVERHEAD_BYTES + 64);
        let ticket = self.reserve_indexing(batch_documents(gaps), bytes)?;
        let location = {
            let _batch = self.writes.batches.read();
            let mut batch = self.new_batch(gaps, ticket);
            let assigned = AssignedSeqNos::arm(self);
            for seq_no in (checkpoint.0 + 1..=max_seq_no.0).map(SeqNo) {
                if self.checkpoints.lock().has_processed(seq_no) {
                    continue;
                }
                let operation = Arc::new(Operation {
                    seq_no,
                    primary_term,
                    version: 1,
                    kind: OperationKind::NoOp {
                        reason: "filling gaps".to_string(),
                    },
                });
                self.stage(&mut batch, operation, None, false, true);
                filled += 1;
            }
            let location = self.submit(batch, false);
            assigned.disarm();
            location?
        };
        if let Some(location) = location {
            self.wait_durable(location)?;
        }
        tracing::info!(shard = ?self.dir, filled, "filled sequence number gaps with no-ops");
        Ok(filled)
    }
}

fn check_conditions(
    id: &str,
    live: Option<Latest>,
    if_seq_no: Option<SeqNo>,
    if_primary_term: Option<PrimaryTerm>,
) -> Result<()> {
    let (Some(required_seq_no), Some(required_term)) = (if_seq_no, if_primary_term) else {
        if if_seq_no.is_some() != if_primary_term.is_some() {
            return Err(EngineError::InvalidArgument(
                "if_seq_no and if_primary_term must be set together".to_string(),
            ));
        }
        return Ok(());
    };
    match live {
        None => Err(EngineError::VersionConflict {
            id: id.to_string(),
            reason: format!(
                "required seqNo [{required_seq_no}], primary term [{required_term}] but no \
                 document was found"
            ),
        }),
        Some(live) if live.seq_no != required_seq_no || live.primary_term != required_term => {
            Err(EngineError::VersionConflict {
                id: id.to_string(),
                reason: format!(
                    "required seqNo [{required_seq_no}], primary term [{required_term}]. current \
                     document has seqNo [{}] and primary term [{}]",
                    live.seq_no, live.primary_term
                ),
            })
        }
        Some(_) => Ok(()),
    }
}

/// `document` (the indexed fields of `operation`, or nothing for history only) with what makes
/// it `operation`'s history: its id, seq_no, primary term, version and op type, and its stored
/// record.
pub(super) fn history_document(
    schema: &crate::mapping::IndexSchema,
    operation: &Operation,
    mut document: TantivyDocument,
) -> TantivyDocument {
    if let Some(id) = operation.id() {
        document.add_text(schema.id, id);
    }
    document.add_u64(schema.seq_no, operation.seq_no.0 as u64);
    document.add_u64(schema.primary_term, operation.primary_term.0);
    document.add_u64(schema.version, operation.version);
    document.add_u64(schema.op_type, operation.op_type() as u64);
    let mut stored = Vec::with_capacity(operation.size_in_bytes());
    record::encode_stored_record(operation, &mut stored);
    document.add_bytes(schema.record, &stored);
    document
}
