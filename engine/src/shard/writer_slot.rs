//! `WriterSlot`: the shard's tantivy `IndexWriter`, and the batches parked while a commit has
//! it.
//!
//! tantivy's `IndexWriter::prepare_commit` needs the writer exclusively while the indexing
//! threads finish their segments: serializing a second of writes and fsyncing its files, about
//! 100 ms on this project's machines. Writers waiting for it would stall every
//! acknowledgement and every follower apply once per refresh. Instead, a commit takes the
//! writer out of the slot; batches submitted meanwhile are parked here, in arrival order, and
//! are handed to tantivy, still in that order, when the commit gives the writer back. A parked
//! batch is already in the tail, the version map, the translog and the checkpoint tracker, so
//! it is readable, durable and acknowledged like any other; only its tantivy segment comes a
//! commit later.
//!
//! The writer is opened on first use and closed again by [`WriterSlot::release_if_idle`] once
//! everything handed to it was committed and no write came for a while: an open writer holds
//! tantivy's indexing, segment-updater and merge threads and the index's lock file, which an
//! idle shard (most shards of a node holding daily indices) has no use for.
//!
//! Invariants:
//! - the writer is present whenever no batch is parked (`give_back` drains before it returns the
//!   writer), so the order of batches in tantivy is their order of submission;
//! - every `IndexWriter::run` happens under the slot's lock: tantivy stamps a batch's operations
//!   first and pushes its deletes to the delete queue afterwards, and every segment reads that
//!   queue in push order assuming the stamps increase along it. Two batches racing between
//!   stamping and pushing break that assumption, and a batch's `Delete(_id)` then also deletes
//!   the document the same batch added for the id: an acknowledged write lost;
//! - parked operations are bounded by count ([`MAX_PARKED_OPERATIONS`]) and by bytes
//!   ([`MAX_PARKED_BYTES`]): past either, submitters wait for the writer to come back;
//! - documents queued for tantivy's indexing threads are bounded by the slot's
//!   [`IndexingQueue`] limits ([`MAX_QUEUED_OPERATIONS`] documents, [`MAX_QUEUED_BYTES`]): a
//!   write reserves its documents and their bytes before it takes any lock, and waits while the
//!   queue is full.
//!
//! Bytes are the caller's estimate of a batch's parsed documents (source, id and a fixed
//! overhead per document, see `write.rs`); the count bounds alone would let 64 Ki documents of a
//! few megabytes each pile up. A batch larger than a byte bound on its own is let through once
//! nothing else is queued or parked, so no batch waits forever; the bound then holds to within
//! one batch, and a batch is bounded by the request that carried it.
//!
//! Why the queue bound: `IndexWriter::run` only queues a batch (tantivy's channel holds 10,000
//! batches, whatever their size), and tantivy's indexing threads index it later. Unbounded,
//! writers acknowledged by the translog could run arbitrarily far ahead of indexing: parsed
//! documents piling up in memory (a writer faster than indexing grows it without end), and
//! an ingest rate that indexing does not sustain. Bounded, a write waits for indexing once the
//! queue is full, as an Elasticsearch write (which indexes in the writing thread) does. A batch's reservation is released when tantivy drops the batch's last document, which
//! it does once an indexing thread has indexed it (each batch goes whole to one thread, in
//! order), or when the writer drops a batch it will not index.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use tantivy::indexer::UserOperation;
use tantivy::schema::document::Document;
use tantivy::{IndexWriter, TantivyDocument};

/// Operations that may wait for a commit before submitters are held back (a few commits'
/// worth of a fast follower's batches; each holds a parsed document).
pub const MAX_PARKED_OPERATIONS: usize = 64 * 1024;

/// Documents that may wait in tantivy's indexing queue before writers are held back. Not
/// below [`MAX_PARKED_OPERATIONS`]: batches parked during a commit keep their places until they
/// are indexed, so a smaller queue would stall writers for every commit again, the stall
/// parking exists to avoid (measured with 16 Ki: a follower's apply rate fell from 0.99 of the
/// leader's ingest to 0.59-0.73). About 200 MB of parsed `server-metrics` documents.
pub const MAX_QUEUED_OPERATIONS: usize = MAX_PARKED_OPERATIONS;

/// Bytes of parked batches past which submitters wait for the writer: above what 64 Ki small
/// documents take, so it binds only on large documents.
pub const MAX_PARKED_BYTES: u64 = 256 * 1024 * 1024;

/// Bytes of documents that may wait in tantivy's indexing queue before writers are held back
/// (not below [`MAX_PARKED_BYTES`], for the reason [`MAX_QUEUED_OPERATIONS`] gives).
pub const MAX_QUEUED_BYTES: u64 = MAX_PARKED_BYTES;

/// The bounds of a [`WriterSlot`]; [`SlotLimits::default`] is the production set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLimits {
    /// Documents reserved in the indexing queue.
    pub queued_documents: usize,
    /// Bytes reserved in the indexing queue.
    pub queued_bytes: u64,
    /// Operations parked while a commit has the writer.
    pub parked_operations: usize,
    /// Bytes parked while a commit has the writer.
    pub parked_bytes: u64,
}

impl Default for SlotLimits {
    fn default() -> SlotLimits {
        SlotLimits {
            queued_documents: MAX_QUEUED_OPERATIONS,
            queued_bytes: MAX_QUEUED_BYTES,
            parked_operations: MAX_PARKED_OPERATIONS,
            parked_bytes: MAX_PARKED_BYTES,
        }
    }
}

/// The shard's tantivy writer type.
pub type ShardWriter = IndexWriter<QueuedDocument>;

/// One operation of a batch for [`ShardWriter`].
pub type ShardOperation = UserOperation<QueuedDocument>;

/// A document on its way through tantivy's indexing queue; the last one of a batch carries the
/// batch's [`IndexingTicket`], so dropping it (once indexed) releases the batch's reservation.
pub struct QueuedDocument {
    document: TantivyDocument,
    ticket: Option<IndexingTicket>,
}

impl QueuedDocument {
    /// A document without a ticket.
    pub fn new(document: TantivyDocument) -> QueuedDocument {
        QueuedDocument {
            document,
            ticket: None,
        }
    }
}

impl From<TantivyDocument> for QueuedDocument {
    fn from(document: TantivyDocument) -> QueuedDocument {
        QueuedDocument::new(document)
    }
}

impl Document for QueuedDocument {
    type Value<'a> = <TantivyDocument as Document>::Value<'a>;
    type FieldsValuesIter<'a> = <TantivyDocument as Document>::FieldsValuesIter<'a>;

    fn iter_fields_and_values(&self) -> Self::FieldsValuesIter<'_> {
        self.document.iter_fields_and_values()
    }
}

/// How often a reservation waiting for places checks whether to give up.
pub const ABORT_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Counts the documents reserved for tantivy's indexing queue and not yet indexed; see the
/// module documentation.
pub struct IndexingQueue {
    queued: Mutex<Queued>,
    indexed: Condvar,
    limit: usize,
    byte_limit: u64,
}

/// What an [`IndexingQueue`] holds reserved.
#[derive(Default)]
struct Queued {
    documents: usize,
    bytes: u64,
}

impl IndexingQueue {
    /// A queue that holds writers back past `limit` documents or `byte_limit` bytes.
    pub fn new(limit: usize, byte_limit: u64) -> Arc<IndexingQueue> {
        assert!(limit > 0, "an indexing queue holds at least one document");
        assert!(byte_limit > 0, "an indexing queue holds at least one byte");
        Arc::new(IndexingQueue {
            queued: Mutex::new(Queued::default()),
            indexed: Condvar::new(),
            limit,
            byte_limit,
        })
    }

    /// Reserves `documents` places and `bytes`, waiting while either limit would be passed. A
    /// reservation larger than a limit is granted once the queue is empty, so no batch waits
    /// forever. While it waits
    /// it asks `aborted` every [`ABORT_POLL`] whether to give up: documents of a writer whose
    /// indexing threads died are never indexed (tantivy keeps them queued until the writer is
    /// dropped), so their places would never come back; the shard latches that failure and
    /// the wait ends with it.
    pub fn reserve(
        self: &Arc<Self>,
        documents: usize,
        bytes: u64,
        aborted: impl Fn() -> Option<String>,
    ) -> Result<IndexingTicket, String> {
        let mut queued = self.queued.lock();
        while queued.documents > 0
            && (queued.documents + documents > self.limit || queued.bytes + bytes > self.byte_limit)
        {
            if let Some(reason) = aborted() {
                return Err(reason);
            }
            self.indexed.wait_for(&mut queued, ABORT_POLL);
        }
        queued.documents += documents;
        queued.bytes += bytes;
        Ok(IndexingTicket {
            queue: self.clone(),
            documents,
            bytes,
        })
    }

    /// Documents reserved and not yet released.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queued.lock().documents
    }

    /// Bytes reserved and not yet released.
    #[cfg(test)]
    pub fn queued_bytes(&self) -> u64 {
        self.queued.lock().bytes
    }

    /// True when no document is reserved.
    pub fn is_empty(&self) -> bool {
        self.queued.lock().documents == 0
    }
}

/// A reservation of places in the [`IndexingQueue`], released when dropped.
pub struct IndexingTicket {
    queue: Arc<IndexingQueue>,
    documents: usize,
    bytes: u64,
}

impl IndexingTicket {
    /// The bytes the ticket reserved (the batch's estimated size).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for IndexingTicket {
    fn drop(&mut self) {
        let mut queued = self.queue.queued.lock();
        debug_assert!(
            queued.documents >= self.documents && queued.bytes >= self.bytes,
            "a ticket releases what it reserved"
        );
        queued.documents -= self.documents;
        queued.bytes -= self.bytes;
        drop(queued);
        self.queue.indexed.notify_all();
    }
}

/// Hands `ticket` to the last document `operations` add (dropped at once if none does).
fn attach(ticket: IndexingTicket, operations: &mut [ShardOperation]) {
    let last = operations
        .iter_mut()
        .rev()
        .find_map(|operation| match operation {
            UserOperation::Add(document) => Some(document),
            UserOperation::Delete(_) => None,
        });
    if let Some(document) = last {
        document.ticket = Some(ticket);
    }
}

/// Where the writer is.
enum WriterState {
    /// Open in the slot (boxed: the other states are empty).
    Open(Box<ShardWriter>),
    /// Taken by a commit.
    Committing,
    /// Not open: opened by the next use (see [`WriterSlot::release_if_idle`]).
    Closed,
}

struct Slot {
    writer: WriterState,
    /// Batches submitted while the writer was out, oldest first.
    parked: VecDeque<Vec<ShardOperation>>,
    /// Operations in `parked`.
    parked_operations: usize,
    /// Estimated bytes of `parked` (their tickets' bytes).
    parked_bytes: u64,
    /// Something (documents, deletes, a merge) was handed to the open writer since a commit
    /// last took it.
    uncommitted: bool,
    /// When a batch was last handed to the writer (or parked for it).
    last_write: Option<Instant>,
}

/// Opens the shard's writer (on the shard's tantivy index, with its memory and threads).
pub type WriterOpener = Box<dyn Fn() -> tantivy::Result<ShardWriter> + Send + Sync>;

/// The shard's tantivy writer; see the module documentation.
pub struct WriterSlot {
    slot: Mutex<Slot>,
    returned: Condvar,
    queue: Arc<IndexingQueue>,
    limits: SlotLimits,
    open: WriterOpener,
}

impl WriterSlot {
    /// A slot whose writer `open` opens on first use, with the production [`SlotLimits`].
    pub fn new(open: WriterOpener) -> WriterSlot {
        WriterSlot::with_limits(open, SlotLimits::default())
    }

    /// A slot whose writer `open` opens on first use, bounded by `limits`.
    pub fn with_limits(open: WriterOpener, limits: SlotLimits) -> WriterSlot {
        assert!(
            limits.parked_operations > 0 && limits.parked_bytes > 0,
            "parking holds at least one batch"
        );
        WriterSlot {
            slot: Mutex::new(Slot {
                writer: WriterState::Closed,
                parked: VecDeque::new(),
                parked_operations: 0,
                parked_bytes: 0,
                uncommitted: false,
                last_write: None,
            }),
            returned: Condvar::new(),
            queue: IndexingQueue::new(limits.queued_documents, limits.queued_bytes),
            limits,
            open,
        }
    }

    /// This slot, holding `writer` (already open) until it is idle.
    pub fn holding(self, writer: ShardWriter) -> WriterSlot {
        let mut slot = self.slot.lock();
        assert!(matches!(slot.writer, WriterState::Closed), "a new slot");
        slot.writer = WriterState::Open(Box::new(writer));
        drop(slot);
        self
    }

    /// Reserves places for `documents` of `bytes` in the indexing queue, waiting while it is
    /// full (see [`IndexingQueue::reserve`] for `aborted`). Call it before taking any lock a
    /// batch holds: indexing needs none of them, so the wait ends.
    pub fn reserve(
        &self,
        documents: usize,
        bytes: u64,
        aborted: impl Fn() -> Option<String>,
    ) -> Result<IndexingTicket, String> {
        self.queue.reserve(documents, bytes, aborted)
    }

    /// Documents reserved in the indexing queue and not yet indexed.
    #[cfg(test)]
    pub fn queued_documents(&self) -> usize {
        self.queue.queued()
    }

    /// Bytes reserved in the indexing queue and not yet indexed.
    #[cfg(test)]
    pub fn queued_bytes(&self) -> u64 {
        self.queue.queued_bytes()
    }

    /// The open writer of `slot`, opening it if it is closed. Not during a commit.
    fn open_writer<'a>(&self, slot: &'a mut Slot) -> tantivy::Result<&'a mut ShardWriter> {
        if let WriterState::Closed = slot.writer {
            debug_assert!(
                slot.parked.is_empty(),
                "nothing is parked for a closed writer"
            );
            slot.writer = WriterState::Open(Box::new((self.open)()?));
        }
        match &mut slot.writer {
            WriterState::Open(writer) => Ok(writer),
            WriterState::Committing | WriterState::Closed => {
                unreachable!("the writer is in the slot outside a commit")
            }
        }
    }

    /// Hands a batch to tantivy, or parks it while a commit has the writer (waiting first while
    /// parking it would pass [`SlotLimits::parked_operations`] or [`SlotLimits::parked_bytes`],
    /// unless nothing is parked). `ticket`, the batch's reservation, is released once tantivy has
    /// indexed the batch. Opens the writer if it is closed.
    pub fn run(
        &self,
        mut operations: Vec<ShardOperation>,
        ticket: IndexingTicket,
    ) -> tantivy::Result<()> {
        if operations.is_empty() {
            return Ok(());
        }
        let bytes = ticket.bytes();
        attach(ticket, &mut operations);
        let mut slot = self.slot.lock();
        while matches!(slot.writer, WriterState::Committing)
            && !slot.parked.is_empty()
            && (slot.parked_operations + operations.len() > self.limits.parked_operations
                || slot.parked_bytes + bytes > self.limits.parked_bytes)
        {
            self.returned.wait(&mut slot);
        }
        slot.last_write = Some(Instant::now());
        if let WriterState::Committing = slot.writer {
            slot.parked_operations += operations.len();
            slot.parked_bytes += bytes;
            slot.parked.push_back(operations);
            return Ok(());
        }
        debug_assert!(
            slot.parked.is_empty(),
            "the writer is back only once drained"
        );
        slot.uncommitted = true;
        self.open_writer(&mut slot)?.run(operations)?;
        Ok(())
    }

    /// Takes the writer for a commit (opening it if it is closed); batches submitted until
    /// [`WriterSlot::give_back`] are parked. The caller serializes commits (the shard's
    /// refresh lock).
    pub fn take(&self) -> tantivy::Result<ShardWriter> {
        let mut slot = self.slot.lock();
        assert!(
            slot.parked.is_empty(),
            "nothing is parked while the writer is in"
        );
        self.open_writer(&mut slot)?;
        let WriterState::Open(writer) =
            std::mem::replace(&mut slot.writer, WriterState::Committing)
        else {
            unreachable!("just opened");
        };
        // The commit holds everything handed to the writer so far.
        slot.uncommitted = false;
        Ok(*writer)
    }

    /// Returns the writer after a commit: the parked batches are handed to it first, in order.
    /// The writer is back even if a parked batch fails (tantivy then refuses everything); the
    /// first error is returned, and the caller fails the shard (the batches are in the
    /// translog, so a reopen replays them).
    pub fn give_back(&self, writer: ShardWriter) -> tantivy::Result<()> {
        let mut slot = self.slot.lock();
        assert!(
            matches!(slot.writer, WriterState::Committing),
            "the writer was taken"
        );
        let mut result = Ok(());
        while let Some(operations) = slot.parked.pop_front() {
            slot.uncommitted = true;
            if result.is_ok() {
                result = writer.run(operations).map(|_| ());
            }
        }
        slot.parked_operations = 0;
        slot.parked_bytes = 0;
        slot.writer = WriterState::Open(Box::new(writer));
        self.returned.notify_all();
        result
    }

    /// Runs `action` with the writer, opening it if it is closed, for work that leaves
    /// nothing for a commit to take (starting merges: the merged segments replace committed
    /// ones by themselves). Must not be called while a commit holds it: the caller holds the
    /// refresh lock.
    pub fn with<R>(&self, action: impl FnOnce(&mut ShardWriter) -> R) -> tantivy::Result<R> {
        let mut slot = self.slot.lock();
        Ok(action(self.open_writer(&mut slot)?))
    }

    /// Like [`WriterSlot::with`], for changes the next commit takes (deletes): the writer is
    /// not released before that commit.
    pub fn with_changes<R>(
        &self,
        action: impl FnOnce(&mut ShardWriter) -> R,
    ) -> tantivy::Result<R> {
        let mut slot = self.slot.lock();
        slot.uncommitted = true;
        Ok(action(self.open_writer(&mut slot)?))
    }

    /// Closes the writer (its indexing, segment-updater and merge threads stop, its directory
    /// lock is released) when it holds nothing a commit has not taken, no batch is queued for
    /// it or parked, and none was handed to it for `idle_for`. The caller holds the refresh
    /// lock, so no commit runs, and makes sure no merge runs (a merge runs on the writer's
    /// threads). Returns whether it closed it. The next use opens it again.
    pub fn release_if_idle(&self, idle_for: std::time::Duration) -> bool {
        let mut slot = self.slot.lock();
        let idle = !slot.uncommitted
            && slot.parked.is_empty()
            && self.queue.is_empty()
            && slot
                .last_write
                .is_none_or(|last_write| last_write.elapsed() >= idle_for);
        if !idle || !matches!(slot.writer, WriterState::Open(_)) {
            return false;
        }
        // Dropped under the slot lock: the directory lock must be free before the next use
        // opens a writer again.
        slot.writer = WriterState::Closed;
        slot.last_write = None;
        true
    }

    /// True while the writer is open (or taken by a commit).
    pub fn is_open(&self) -> bool {
        !matches!(self.slot.lock().writer, WriterState::Closed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tantivy::collector::TopDocs;
    use tantivy::query::AllQuery;
    use tantivy::schema::{Schema, Value, INDEXED, STORED, STRING};
    use tantivy::{doc, Index, TantivyDocument, Term};

    use super::*;

    fn index() -> (Index, tantivy::schema::Field) {
        let mut builder = Schema::builder();
        let id = builder.add_text_field("id", STRING | STORED);
        builder.add_u64_field("n", INDEXED);
        (Index::create_in_ram(builder.build()), id)
    }

    fn live_ids(index: &Index, id: tantivy::schema::Field) -> Vec<String> {
        let reader = index.reader().unwrap();
        reader.reload().unwrap();
        let searcher = reader.searcher();
        let mut ids: Vec<String> = searcher
            .search(&AllQuery, &TopDocs::with_limit(100).order_by_score())
            .unwrap()
            .into_iter()
            .map(|(_, address)| {
                let document: TantivyDocument = searcher.doc(address).unwrap();
                document
                    .get_first(id)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        ids.sort();
        ids
    }

    fn add(id: tantivy::schema::Field, value: &str) -> ShardOperation {
        UserOperation::Add(doc!(id => value).into())
    }

    fn writer(index: &Index) -> WriterOpener {
        let index = index.clone();
        Box::new(move || index.writer_with_num_threads(1, 15_000_000))
    }

    /// Runs `operations` with a reservation of their count.
    /// The bytes tests reserve per batch unless they test bytes.
    const BYTES_PER_TEST_DOCUMENT: u64 = 1;

    /// Production limits but an indexing queue of `documents`.
    fn queue_of(documents: usize) -> SlotLimits {
        SlotLimits {
            queued_documents: documents,
            ..SlotLimits::default()
        }
    }

    fn run(slot: &WriterSlot, operations: Vec<ShardOperation>) {
        let ticket = slot
            .reserve(operations.len(), BYTES_PER_TEST_DOCUMENT, || None)
            .unwrap();
        slot.run(operations, ticket).unwrap();
    }

    #[test]
    fn batches_parked_during_a_commit_reach_tantivy_in_order() {
        let (index, id) = index();
        let slot = WriterSlot::new(writer(&index));
        run(&slot, vec![add(id, "a")]);

        let mut writer = slot.take().unwrap();
        // Parked: re-create `a` (delete then add) and add `b`, then delete `b`. Run out of
        // order, the delete of `b` would miss it, or the delete of `a` would hit the new `a`.
        run(
            &slot,
            vec![
                UserOperation::Delete(Term::from_field_text(id, "a")),
                add(id, "a2"),
            ],
        );
        run(&slot, vec![add(id, "b")]);
        run(
            &slot,
            vec![UserOperation::Delete(Term::from_field_text(id, "b"))],
        );
        writer.commit().unwrap();
        assert_eq!(
            live_ids(&index, id),
            ["a"],
            "the commit holds only what came before"
        );
        slot.give_back(writer).unwrap();

        slot.with(|writer| writer.commit()).unwrap().unwrap();
        assert_eq!(live_ids(&index, id), ["a2"]);
    }

    #[test]
    fn an_idle_writer_closes_only_once_everything_is_committed_and_reopens_on_use() {
        let (index, id) = index();
        let slot = WriterSlot::new(writer(&index));
        assert!(!slot.is_open(), "opened on first use");
        run(&slot, vec![add(id, "a")]);
        assert!(slot.is_open());
        assert!(
            !slot.release_if_idle(Duration::ZERO),
            "an uncommitted document keeps it open"
        );
        let mut writer = slot.take().unwrap();
        writer.commit().unwrap();
        slot.give_back(writer).unwrap();
        assert!(
            !slot.release_if_idle(Duration::from_secs(3600)),
            "written too recently"
        );
        assert!(slot.release_if_idle(Duration::ZERO));
        assert!(!slot.is_open());
        // The index lock is free again: the next use opens a writer, and nothing was lost.
        slot.with_changes(|writer| writer.delete_term(Term::from_field_text(id, "none")))
            .unwrap();
        assert!(
            !slot.release_if_idle(Duration::ZERO),
            "a delete waits for its commit"
        );
        run(&slot, vec![add(id, "b")]);
        slot.with(|writer| writer.commit()).unwrap().unwrap();
        assert_eq!(live_ids(&index, id), ["a", "b"]);
    }

    #[test]
    fn submitters_wait_once_the_parked_operations_reach_the_bound() {
        let (index, id) = index();
        let slot = Arc::new(WriterSlot::with_limits(
            writer(&index),
            SlotLimits {
                queued_documents: 2 * MAX_PARKED_OPERATIONS,
                ..SlotLimits::default()
            },
        ));
        let writer = slot.take().unwrap();
        let full: Vec<ShardOperation> = (0..MAX_PARKED_OPERATIONS)
            .map(|n| add(id, &format!("p{n}")))
            .collect();
        run(&slot, full);
        let done = Arc::new(AtomicBool::new(false));
        let submitter = {
            let (slot, done) = (slot.clone(), done.clone());
            std::thread::spawn(move || {
                run(&slot, vec![add(id, "late")]);
                done.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !done.load(Ordering::SeqCst),
            "past the bound a submitter waits"
        );
        slot.give_back(writer).unwrap();
        submitter.join().unwrap();
        assert!(done.load(Ordering::SeqCst));
        slot.with(|writer| writer.commit()).unwrap().unwrap();
        assert_eq!(
            index.reader().unwrap().searcher().num_docs() as usize,
            MAX_PARKED_OPERATIONS + 1
        );
    }

    #[test]
    fn a_full_indexing_queue_holds_reservations_back_until_places_are_released() {
        let queue = IndexingQueue::new(10, u64::MAX);
        let first = queue.reserve(6, 1, || None).unwrap();
        let second = queue.reserve(4, 1, || None).unwrap();
        assert_eq!(queue.queued(), 10);
        let granted = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (queue, granted) = (queue.clone(), granted.clone());
            std::thread::spawn(move || {
                let ticket = queue.reserve(5, 1, || None).unwrap();
                granted.store(true, Ordering::SeqCst);
                ticket
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !granted.load(Ordering::SeqCst),
            "a full queue holds it back"
        );
        drop(second);
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !granted.load(Ordering::SeqCst),
            "6 + 5 places still exceed the limit"
        );
        drop(first);
        let third = waiter.join().unwrap();
        assert!(granted.load(Ordering::SeqCst));
        assert_eq!(queue.queued(), 5);
        drop(third);
        assert_eq!(queue.queued(), 0);
        // Larger than the limit: granted on an empty queue rather than never.
        let large = queue.reserve(25, 1, || None).unwrap();
        assert_eq!(queue.queued(), 25);
        drop(large);
    }

    #[test]
    fn a_waiting_reservation_gives_up_when_told_to() {
        let queue = IndexingQueue::new(10, u64::MAX);
        let _full = queue.reserve(10, 1, || None).unwrap();
        let failed = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (queue, failed) = (queue.clone(), failed.clone());
            std::thread::spawn(move || {
                queue
                    .reserve(1, 1, || {
                        failed
                            .load(Ordering::SeqCst)
                            .then(|| "the shard failed".to_string())
                    })
                    .map(|_| ())
            })
        };
        std::thread::sleep(Duration::from_millis(150));
        assert!(!waiter.is_finished(), "a full queue holds it back");
        failed.store(true, Ordering::SeqCst);
        assert_eq!(waiter.join().unwrap(), Err("the shard failed".to_string()));
        assert_eq!(
            queue.queued(),
            10,
            "nothing was reserved by the aborted wait"
        );
    }

    #[test]
    fn a_batch_keeps_its_places_until_tantivy_has_indexed_it() {
        let (index, id) = index();
        let slot = WriterSlot::with_limits(writer(&index), queue_of(8));
        let mut writer = slot.take().unwrap();
        // Parked while the commit has the writer: not indexed, so still reserved.
        run(&slot, vec![add(id, "a"), add(id, "b"), add(id, "c")]);
        assert_eq!(slot.queued_documents(), 3);
        writer.commit().unwrap();
        slot.give_back(writer).unwrap();
        // A commit returns once the indexing threads have indexed everything queued.
        slot.with(|writer| writer.commit()).unwrap().unwrap();
        assert_eq!(slot.queued_documents(), 0);
        assert_eq!(live_ids(&index, id), ["a", "b", "c"]);
        // A batch without documents releases its places at once.
        run(
            &slot,
            vec![UserOperation::Delete(Term::from_field_text(id, "a"))],
        );
        assert_eq!(slot.queued_documents(), 0);
    }

    #[test]
    fn writers_past_the_queue_limit_still_index_everything() {
        let (index, id) = index();
        let slot = Arc::new(WriterSlot::with_limits(writer(&index), queue_of(16)));
        let high_water = Arc::new(Mutex::new(0usize));
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let (slot, high_water) = (slot.clone(), high_water.clone());
                scope.spawn(move || {
                    for batch in 0..50 {
                        let operations = (0..4)
                            .map(|n| add(id, &format!("t{thread}-{batch}-{n}")))
                            .collect::<Vec<_>>();
                        let ticket = slot
                            .reserve(operations.len(), BYTES_PER_TEST_DOCUMENT, || None)
                            .unwrap();
                        let queued = slot.queued_documents();
                        let mut high = high_water.lock();
                        *high = (*high).max(queued);
                        drop(high);
                        slot.run(operations, ticket).unwrap();
                    }
                });
            }
        });
        assert!(*high_water.lock() <= 16, "the queue stays within its limit");
        slot.with(|writer| writer.commit()).unwrap().unwrap();
        assert_eq!(slot.queued_documents(), 0);
        assert_eq!(index.reader().unwrap().searcher().num_docs(), 4 * 50 * 4);
    }

    #[test]
    fn the_indexing_queue_holds_reservations_back_by_bytes() {
        let queue = IndexingQueue::new(1_000, 100);
        let first = queue.reserve(1, 70, || None).unwrap();
        let granted = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (queue, granted) = (queue.clone(), granted.clone());
            std::thread::spawn(move || {
                let ticket = queue.reserve(1, 40, || None).unwrap();
                granted.store(true, Ordering::SeqCst);
                ticket
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !granted.load(Ordering::SeqCst),
            "70 + 40 bytes exceed the byte limit although 2 documents do not"
        );
        drop(first);
        let second = waiter.join().unwrap();
        assert_eq!((queue.queued(), queue.queued_bytes()), (1, 40));
        drop(second);
        // Larger than the byte limit: granted on an empty queue rather than never.
        let large = queue.reserve(1, 500, || None).unwrap();
        assert_eq!(queue.queued_bytes(), 500);
        drop(large);
        assert_eq!((queue.queued(), queue.queued_bytes()), (0, 0));
    }

    #[test]
    fn submitters_wait_once_the_parked_bytes_reach_the_bound() {
        let (index, id) = index();
        let slot = Arc::new(WriterSlot::with_limits(
            writer(&index),
            SlotLimits {
                parked_bytes: 1_000,
                ..SlotLimits::default()
            },
        ));
        let park = move |slot: &WriterSlot, name: &str, bytes: u64| {
            let ticket = slot.reserve(1, bytes, || None).unwrap();
            slot.run(vec![add(id, name)], ticket).unwrap();
        };
        let writer = slot.take().unwrap();
        // One batch over the bound on its own is parked: nothing else is.
        park(&slot, "huge", 5_000);
        let done = Arc::new(AtomicBool::new(false));
        let submitter = {
            let (slot, done) = (slot.clone(), done.clone());
            std::thread::spawn(move || {
                park(&slot, "late", 10);
                done.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !done.load(Ordering::SeqCst),
            "past the byte bound a submitter waits for the writer"
        );
        slot.give_back(writer).unwrap();
        submitter.join().unwrap();
        slot.with(|writer| writer.commit()).unwrap().unwrap();
        assert_eq!(live_ids(&index, id), ["huge", "late"]);
        assert_eq!(
            slot.queued_bytes(),
            0,
            "indexed batches release their bytes"
        );
    }
}
