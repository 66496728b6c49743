//! `WriterSlot`: the shard's tantivy `IndexWriter`, and the batches parked while a commit has
//! it.
//!
//! tantivy's `IndexWriter::prepare_commit` needs the writer exclusively while the indexing
//! threads finish their segments: serializing a second of writes and fsyncing its files, about
//! 100 ms on this project's machines. Writers used to wait for it, which stalled every
//! acknowledgement and every follower apply once per refresh. Instead, a commit takes the
//! writer out of the slot; batches submitted meanwhile are parked here, in arrival order, and
//! are handed to tantivy, still in that order, when the commit gives the writer back. A parked
//! batch is already in the tail, the version map, the translog and the checkpoint tracker, so
//! it is readable, durable and acknowledged like any other; only its tantivy segment comes a
//! commit later.
//!
//! Invariants:
//! - the writer is present whenever no batch is parked (`give_back` drains before it returns the
//!   writer), so the order of batches in tantivy is their order of submission;
//! - every `IndexWriter::run` happens under the slot's lock: tantivy stamps a batch's operations
//!   first and pushes its deletes to the delete queue afterwards, and every segment reads that
//!   queue in push order assuming the stamps increase along it. Two batches racing between
//!   stamping and pushing break that assumption, and a batch's `Delete(_id)` then also deletes
//!   the document the same batch added for the id: an acknowledged write lost;
//! - parked operations are bounded by [`MAX_PARKED_OPERATIONS`]: past it, submitters wait for
//!   the writer to come back.

use std::collections::VecDeque;

use parking_lot::{Condvar, Mutex};
use tantivy::indexer::UserOperation;
use tantivy::IndexWriter;

/// Operations that may wait for a commit before submitters are held back (a few commits'
/// worth of a fast follower's batches; each holds a parsed document).
pub const MAX_PARKED_OPERATIONS: usize = 64 * 1024;

struct Slot {
    /// `None` while a commit holds the writer.
    writer: Option<IndexWriter>,
    /// Batches submitted while the writer was out, oldest first.
    parked: VecDeque<Vec<UserOperation>>,
    /// Operations in `parked`.
    parked_operations: usize,
}

/// The shard's tantivy writer; see the module documentation.
pub struct WriterSlot {
    slot: Mutex<Slot>,
    returned: Condvar,
}

impl WriterSlot {
    /// A slot holding `writer`.
    pub fn new(writer: IndexWriter) -> WriterSlot {
        WriterSlot {
            slot: Mutex::new(Slot {
                writer: Some(writer),
                parked: VecDeque::new(),
                parked_operations: 0,
            }),
            returned: Condvar::new(),
        }
    }

    /// Hands a batch to tantivy, or parks it while a commit has the writer (waiting first if
    /// [`MAX_PARKED_OPERATIONS`] are parked already).
    pub fn run(&self, operations: Vec<UserOperation>) -> tantivy::Result<()> {
        if operations.is_empty() {
            return Ok(());
        }
        let mut slot = self.slot.lock();
        while slot.writer.is_none() && slot.parked_operations >= MAX_PARKED_OPERATIONS {
            self.returned.wait(&mut slot);
        }
        match slot.writer.as_ref() {
            Some(writer) => {
                debug_assert!(
                    slot.parked.is_empty(),
                    "the writer is back only once drained"
                );
                writer.run(operations)?;
            }
            None => {
                slot.parked_operations += operations.len();
                slot.parked.push_back(operations);
            }
        }
        Ok(())
    }

    /// Takes the writer for a commit; batches submitted until [`WriterSlot::give_back`] are
    /// parked. The caller serializes commits (the shard's refresh lock).
    pub fn take(&self) -> IndexWriter {
        let mut slot = self.slot.lock();
        assert!(
            slot.parked.is_empty(),
            "nothing is parked while the writer is in"
        );
        slot.writer
            .take()
            .expect("one commit at a time takes the writer")
    }

    /// Returns the writer after a commit: the parked batches are handed to it first, in order.
    /// The writer is back even if a parked batch fails (tantivy then refuses everything); the
    /// first error is returned, and the caller fails the shard (the batches are in the
    /// translog, so a reopen replays them).
    pub fn give_back(&self, writer: IndexWriter) -> tantivy::Result<()> {
        let mut slot = self.slot.lock();
        assert!(slot.writer.is_none(), "the writer was taken");
        let mut result = Ok(());
        while let Some(operations) = slot.parked.pop_front() {
            if result.is_ok() {
                result = writer.run(operations).map(|_| ());
            }
        }
        slot.parked_operations = 0;
        slot.writer = Some(writer);
        self.returned.notify_all();
        result
    }

    /// Runs `action` with the writer (merges, anchor deletes). Must not be called while a
    /// commit holds it: the caller holds the refresh lock.
    pub fn with<R>(&self, action: impl FnOnce(&mut IndexWriter) -> R) -> R {
        let mut slot = self.slot.lock();
        let writer = slot
            .writer
            .as_mut()
            .expect("the writer is in the slot outside a commit");
        action(writer)
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

    #[test]
    fn batches_parked_during_a_commit_reach_tantivy_in_order() {
        let (index, id) = index();
        let slot = WriterSlot::new(index.writer_with_num_threads(1, 15_000_000).unwrap());
        slot.run(vec![UserOperation::Add(doc!(id => "a"))]).unwrap();

        let mut writer = slot.take();
        // Parked: re-create `a` (delete then add) and add `b`, then delete `b`. Run out of
        // order, the delete of `b` would miss it, or the delete of `a` would hit the new `a`.
        slot.run(vec![
            UserOperation::Delete(Term::from_field_text(id, "a")),
            UserOperation::Add(doc!(id => "a2")),
        ])
        .unwrap();
        slot.run(vec![UserOperation::Add(doc!(id => "b"))]).unwrap();
        slot.run(vec![UserOperation::Delete(Term::from_field_text(id, "b"))])
            .unwrap();
        writer.commit().unwrap();
        assert_eq!(
            live_ids(&index, id),
            ["a"],
            "the commit holds only what came before"
        );
        slot.give_back(writer).unwrap();

        slot.with(|writer| writer.commit()).unwrap();
        assert_eq!(live_ids(&index, id), ["a2"]);
    }

    #[test]
    fn submitters_wait_once_the_parked_operations_reach_the_bound() {
        let (index, id) = index();
        let slot = Arc::new(WriterSlot::new(
            index.writer_with_num_threads(1, 15_000_000).unwrap(),
        ));
        let writer = slot.take();
        let full: Vec<UserOperation> = (0..MAX_PARKED_OPERATIONS)
            .map(|n| UserOperation::Add(doc!(id => format!("p{n}"))))
            .collect();
        slot.run(full).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let submitter = {
            let (slot, done) = (slot.clone(), done.clone());
            std::thread::spawn(move || {
                slot.run(vec![UserOperation::Add(doc!(id => "late"))])
                    .unwrap();
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
        slot.with(|writer| writer.commit()).unwrap();
        assert_eq!(
            index.reader().unwrap().searcher().num_docs() as usize,
            MAX_PARKED_OPERATIONS + 1
        );
    }
}
