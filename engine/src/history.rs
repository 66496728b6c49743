//! Reading the soft-delete history out of tantivy segments.
//!
//! Every operation is one document; updated, deleted, stale and no-op documents are deleted in
//! tantivy but stay in their segment (readable by doc id, fast fields included) until a merge
//! drops them. This module owns the per-segment view of that history:
//!
//! - [`SegmentHistory`]: the meta-field columns of one segment and its (seq_no -> doc) order,
//!   built once per segment (segments are immutable; merges produce new segment ids). A segment
//!   written by one indexing thread is already in seq_no order and needs no permutation; a merged
//!   segment gets a permutation of its doc ids sorted by seq_no (4 bytes a doc), built on the
//!   first range read of its history, so the segments of an index nobody reads the history of
//!   (a bulk load without followers) hold none.
//! - [`HistoryCache`]: those views by segment id, pruned to the live segments on each refresh,
//!   and the segments' *history ceilings*.
//! - **History ceilings.** A rollback ([`crate::shard::ShardEngine::roll_back_to`]) removes the
//!   operations above a point from the history without rewriting the segments that hold them:
//!   it deletes them in tantivy and gives each of those segments a ceiling, the point. An
//!   operation of a segment above its ceiling is *voided*: it reads as an anchor does, outside
//!   every history range, in no lookup, never carried forward, so the next merge of its segment
//!   drops it (it is deleted). A ceiling is persisted in the commit that deletes its
//!   operations (`CommitPayload::history_ceilings`) and is forgotten with its segment.
//! - [`lookup_latest`]: the latest operation on a document id, *including deleted documents*, so
//!   the follower path can tell a stale operation from a new one.
//!
//! **Anchors.** tantivy discards a committed segment as soon as all of its documents are deleted
//! (`SegmentManager::remove_empty_segments`), and with it the soft-deleted history it holds (a
//! batch of deletes, or a small segment whose documents are all updated later, would vanish at
//! the next commit). So every write batch starts with an *anchor*: a document that is never part
//! of the history, never matches a search, and is deleted only when its segment holds another
//! live anchor. Anchors have `_seq_no = u64::MAX` (so no history range contains them),
//! `_op_type = 3`, `_version` = a unique anchor number and `_id = "\0anchor:<number>"` (user ids
//! may not start with NUL), by which the refresh deletes the surplus ones.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tantivy::columnar::Column;
use tantivy::index::SegmentId;
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{DocId, DocSet, Searcher, SegmentReader, TantivyDocument, Term, TERMINATED};

use crate::error::{EngineError, Result};
use crate::id_filter::{IdFilter, IdFilterBuilder};
use crate::mapping::{IndexSchema, OP_TYPE_FIELD, PRIMARY_TERM_FIELD, SEQ_NO_FIELD, VERSION_FIELD};
use crate::record;
use crate::types::{OpType, Operation, PrimaryTerm, SeqNo};

/// `_seq_no` of anchor documents.
pub const ANCHOR_SEQ_NO: u64 = u64::MAX;
/// `_op_type` code of anchor documents.
pub const ANCHOR_OP_TYPE: u64 = 3;
/// Largest sequence number a history range may reach (anchors sit above it).
pub const MAX_HISTORY_SEQ_NO: u64 = i64::MAX as u64;

/// The `_id` of anchor number `number`.
pub fn anchor_id(number: u64) -> String {
    format!("\0anchor:{number:016x}")
}

/// Builds anchor document number `number`.
pub fn anchor_document(schema: &IndexSchema, number: u64) -> TantivyDocument {
    let mut document = TantivyDocument::default();
    document.add_text(schema.id, anchor_id(number));
    document.add_u64(schema.seq_no, ANCHOR_SEQ_NO);
    document.add_u64(schema.primary_term, 0);
    document.add_u64(schema.version, number);
    document.add_u64(schema.op_type, ANCHOR_OP_TYPE);
    document.add_bytes(schema.record, &[][..]);
    document
}

/// `query` restricted to real documents: anchors never match a search.
pub fn without_anchors(
    query: Box<dyn tantivy::query::Query>,
    schema: &IndexSchema,
) -> tantivy::query::BooleanQuery {
    let anchors: Box<dyn tantivy::query::Query> = Box::new(tantivy::query::TermQuery::new(
        Term::from_field_u64(schema.seq_no, ANCHOR_SEQ_NO),
        IndexRecordOption::Basic,
    ));
    tantivy::query::BooleanQuery::new(vec![
        (tantivy::query::Occur::Must, query),
        (tantivy::query::Occur::MustNot, anchors),
    ])
}

/// A segment's history ceiling (see the module documentation), as a commit records it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryCeiling {
    /// The segment's id (tantivy's uuid string).
    pub segment: String,
    /// The segment's operations above this seq_no are voided (all of them at -1).
    pub ceiling: SeqNo,
}

/// The history view of one segment.
pub struct SegmentHistory {
    /// `_seq_no` column.
    seq_nos: Column<u64>,
    /// Operations above it are voided (see the module documentation); `MAX_HISTORY_SEQ_NO`
    /// when the segment has no ceiling, -1 when all of them are.
    ceiling: i64,
    primary_terms: Column<u64>,
    versions: Column<u64>,
    op_types: Column<u64>,
    /// Whether doc order already is seq_no order (anchors aside).
    sorted: bool,
    /// The segment's non-anchor docs sorted by seq_no, built on the first range read of an
    /// unsorted segment: 4 bytes a doc, held only by segments whose history is read (a leader
    /// nobody follows never builds it), released with the segment.
    permutation: std::sync::OnceLock<Vec<DocId>>,
    /// `(doc, anchor number)` of every anchor of the segment.
    anchors: Vec<(DocId, u64)>,
    max_doc: DocId,
    /// Largest seq_no among deleted docs, and the number of deleted docs it was computed for.
    max_deleted: Mutex<Option<(u32, Option<u64>)>>,
    /// The ids of the segment, built on first lookup.
    ids: std::sync::OnceLock<IdFilter>,
    /// The segment's document store for single reads (gets), without a cache of decompressed
    /// blocks: a cache per live segment would grow with the number of segments, which history
    /// retention can keep from merging (see [`SegmentHistory::scan_store`]).
    store: std::sync::OnceLock<tantivy::store::StoreReader>,
}

/// Decompressed doc-store blocks a scan of the history ([`SegmentHistory::scan_store`]) keeps
/// per segment it reads, for as long as the scan lasts (a merged segment's seq_no order visits
/// one run per source segment, each in its own block).
const STORE_CACHE_BLOCKS: usize = 32;

impl SegmentHistory {
    fn open(segment: &SegmentReader, ceiling: Option<SeqNo>) -> Result<SegmentHistory> {
        let fast_fields = segment.fast_fields();
        let column = |name: &str| {
            fast_fields
                .u64(name)
                .map_err(|error| EngineError::index("opening a history column", error))
        };
        let seq_nos = column(SEQ_NO_FIELD)?;
        let versions = column(VERSION_FIELD)?;
        let max_doc = segment.max_doc();
        let mut sorted = true;
        let mut previous: Option<u64> = None;
        let mut anchors = Vec::new();
        for doc in 0..max_doc {
            let Some(seq_no) = seq_nos.first(doc) else {
                return Err(EngineError::Corrupted {
                    path: format!("segment {}", segment.segment_id().uuid_string()).into(),
                    reason: format!("document {doc} has no _seq_no"),
                });
            };
            if seq_no == ANCHOR_SEQ_NO {
                anchors.push((doc, versions.first(doc).unwrap_or(0)));
                sorted = false;
                continue;
            }
            if previous.is_some_and(|previous| seq_no <= previous) {
                sorted = false;
            }
            previous = Some(seq_no);
        }
        Ok(SegmentHistory {
            primary_terms: column(PRIMARY_TERM_FIELD)?,
            op_types: column(OP_TYPE_FIELD)?,
            versions,
            seq_nos,
            ceiling: ceiling.map_or(MAX_HISTORY_SEQ_NO as i64, |ceiling| ceiling.0),
            sorted,
            permutation: std::sync::OnceLock::new(),
            anchors,
            max_doc,
            max_deleted: Mutex::new(None),
            ids: std::sync::OnceLock::new(),
            store: std::sync::OnceLock::new(),
        })
    }

    /// The `_seq_no` of `doc` as the history reads it: [`ANCHOR_SEQ_NO`] (outside every
    /// history range) for an anchor and for an operation above the segment's ceiling.
    pub fn seq_no(&self, doc: DocId) -> Option<u64> {
        let seq_no = self.seq_nos.first(doc)?;
        // Anchors (u64::MAX) read as themselves; no real seq_no exceeds i64::MAX.
        Some(match seq_no as i64 > self.ceiling {
            true => ANCHOR_SEQ_NO,
            false => seq_no,
        })
    }

    /// True when an operation of the segment with `seq_no` is above its ceiling.
    pub fn is_voided(&self, seq_no: SeqNo) -> bool {
        seq_no.0 > self.ceiling
    }

    /// True when `doc` is no operation of the history: an anchor, or an operation above the
    /// segment's ceiling.
    pub fn is_outside_history(&self, doc: DocId) -> bool {
        self.seq_no(doc) == Some(ANCHOR_SEQ_NO)
    }

    /// Appends `(seq_no, doc)` for every document with a seq_no in `[from, to]`, in seq_no order.
    pub fn docs_in_range(&self, from: u64, to: u64, out: &mut Vec<(u64, DocId)>) {
        if self.ceiling < 0 {
            return;
        }
        let to = to.min(self.ceiling as u64);
        if from > to
            || self.max_doc == 0
            || self.seq_nos.max_value() < from
            || self.seq_nos.min_value() > to
        {
            return;
        }
        let seq_no_of = |doc: DocId| self.seq_nos.first(doc).unwrap_or(u64::MAX);
        match self.sorted {
            false => {
                let docs = self.permutation();
                let start = docs.partition_point(|doc| seq_no_of(*doc) < from);
                out.extend(
                    docs[start..]
                        .iter()
                        .map(|doc| (seq_no_of(*doc), *doc))
                        .take_while(|(seq_no, _)| *seq_no <= to),
                );
            }
            true => {
                let (mut low, mut high) = (0, self.max_doc);
                while low < high {
                    let middle = low + (high - low) / 2;
                    if seq_no_of(middle) < from {
                        low = middle + 1;
                    } else {
                        high = middle;
                    }
                }
                for doc in low..self.max_doc {
                    let seq_no = seq_no_of(doc);
                    if seq_no > to {
                        break;
                    }
                    out.push((seq_no, doc));
                }
            }
        }
    }

    /// The non-anchor docs in seq_no order (built once; see [`SegmentHistory::permutation`]'s
    /// field).
    fn permutation(&self) -> &[DocId] {
        self.permutation.get_or_init(|| {
            let mut pairs: Vec<(u64, DocId)> = (0..self.max_doc)
                .filter_map(|doc| {
                    let seq_no = self.seq_nos.first(doc)?;
                    (seq_no != ANCHOR_SEQ_NO).then_some((seq_no, doc))
                })
                .collect();
            // Nearly sorted input (one run per merged segment): cheap for a pattern-defeating
            // sort. The seq_nos are dropped once sorted: the column gives them back.
            pairs.sort_unstable();
            pairs.into_iter().map(|(_, doc)| doc).collect()
        })
    }

    /// The segment's document store for single reads (opened once, no block cache).
    pub fn store(&self, segment: &SegmentReader) -> Result<&tantivy::store::StoreReader> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let opened = segment
            .get_store_reader(0)
            .map_err(|error| EngineError::io("document store", error))?;
        Ok(self.store.get_or_init(|| opened))
    }

    /// A document store of the segment for one scan of its history, with a cache of
    /// [`STORE_CACHE_BLOCKS`] decompressed blocks that lives as long as the scan holds it: the
    /// memory of block caches is bounded by the scans running, not by the segments alive.
    pub fn scan_store(segment: &SegmentReader) -> Result<tantivy::store::StoreReader> {
        segment
            .get_store_reader(STORE_CACHE_BLOCKS)
            .map_err(|error| EngineError::io("document store", error))
    }

    /// False when no document of the segment has id `id`.
    pub fn may_contain_id(
        &self,
        segment: &SegmentReader,
        id_field: tantivy::schema::Field,
        id: &str,
    ) -> Result<bool> {
        Ok(self
            .id_filter(segment, id_field)?
            .may_contain(id.as_bytes()))
    }

    /// The filter of the segment's ids, built on first use (it streams every id of the
    /// segment).
    fn id_filter(
        &self,
        segment: &SegmentReader,
        id_field: tantivy::schema::Field,
    ) -> Result<&IdFilter> {
        if let Some(filter) = self.ids.get() {
            return Ok(filter);
        }
        let inverted = segment
            .inverted_index(id_field)
            .map_err(|error| EngineError::index("opening the _id index", error))?;
        let terms = inverted.terms();
        let mut builder = IdFilterBuilder::with_capacity(terms.num_terms());
        let mut stream = terms
            .stream()
            .map_err(|error| EngineError::io("segment term dictionary", error))?;
        while stream.advance() {
            builder.insert(stream.key());
        }
        let filter = builder.build();
        Ok(self.ids.get_or_init(|| filter))
    }

    /// `(doc, anchor number)` of the anchors of the segment that are alive in `segment`.
    pub fn live_anchors(&self, segment: &SegmentReader) -> Vec<(DocId, u64)> {
        self.anchors
            .iter()
            .filter(|(doc, _)| !segment.is_deleted(*doc))
            .copied()
            .collect()
    }

    /// Number of anchors (alive or not) in the segment.
    pub fn anchor_count(&self) -> usize {
        self.anchors.len()
    }

    /// The meta fields of `doc`.
    pub fn meta(&self, doc: DocId) -> Result<(SeqNo, PrimaryTerm, u64, OpType)> {
        let missing = |what: &str| EngineError::Corrupted {
            path: "segment".into(),
            reason: format!("document {doc} has no {what}"),
        };
        let seq_no = self.seq_nos.first(doc).ok_or_else(|| missing("_seq_no"))?;
        let term = self
            .primary_terms
            .first(doc)
            .ok_or_else(|| missing("_primary_term"))?;
        let version = self
            .versions
            .first(doc)
            .ok_or_else(|| missing("_version"))?;
        let code = self
            .op_types
            .first(doc)
            .ok_or_else(|| missing("_op_type"))?;
        let op_type = OpType::from_code(code).ok_or_else(|| missing("valid _op_type"))?;
        Ok((SeqNo(seq_no as i64), PrimaryTerm(term), version, op_type))
    }

    /// The largest seq_no among the deleted documents of the segment (`None` if none is
    /// deleted). Computed once per number of deleted docs (deletes only grow).
    pub fn max_deleted_seq_no(&self, segment: &SegmentReader) -> Option<u64> {
        let num_deleted = segment.num_deleted_docs();
        let mut cached = self.max_deleted.lock();
        if let Some((count, value)) = *cached {
            if count == num_deleted {
                return value;
            }
        }
        let value = if num_deleted == 0 {
            None
        } else {
            (0..self.max_doc)
                .filter(|doc| segment.is_deleted(*doc))
                .filter_map(|doc| self.seq_no(doc))
                .filter(|seq_no| *seq_no != ANCHOR_SEQ_NO)
                .max()
        };
        *cached = Some((num_deleted, value));
        value
    }
}

/// [`SegmentHistory`] views by segment id, and the segments' history ceilings.
#[derive(Default)]
pub struct HistoryCache {
    segments: Mutex<HashMap<SegmentId, Arc<SegmentHistory>>>,
    ceilings: Mutex<HashMap<SegmentId, SeqNo>>,
}

impl HistoryCache {
    /// A cache whose segments have the ceilings of `ceilings` (a commit's).
    pub fn with_ceilings(ceilings: &[HistoryCeiling]) -> Result<HistoryCache> {
        let mut by_segment = HashMap::with_capacity(ceilings.len());
        for entry in ceilings {
            let segment = SegmentId::from_uuid_string(&entry.segment).map_err(|error| {
                EngineError::Corrupted {
                    path: "commit payload".into(),
                    reason: format!("history ceiling of segment [{}]: {error}", entry.segment),
                }
            })?;
            by_segment.insert(segment, entry.ceiling);
        }
        Ok(HistoryCache {
            segments: Mutex::default(),
            ceilings: Mutex::new(by_segment),
        })
    }

    /// The view of `segment`, built on first use.
    pub fn get(&self, segment: &SegmentReader) -> Result<Arc<SegmentHistory>> {
        let id = segment.segment_id();
        if let Some(found) = self.segments.lock().get(&id) {
            return Ok(found.clone());
        }
        loop {
            let ceiling = self.ceilings.lock().get(&id).copied();
            // Built outside the locks: building may scan the whole segment.
            let built = Arc::new(SegmentHistory::open(segment, ceiling)?);
            // Kept only if the segment's ceiling did not change meanwhile (the locks are
            // taken in `lower_ceiling`'s order).
            let ceilings = self.ceilings.lock();
            if ceilings.get(&id).copied() == ceiling {
                return Ok(self.segments.lock().entry(id).or_insert(built).clone());
            }
        }
    }

    /// Voids the operations of `segment` above `ceiling` (a lower ceiling it already has
    /// stays). Views built before keep reading the segment as it was: the caller (a
    /// rollback) holds off every reader of the history meanwhile.
    pub fn lower_ceiling(&self, segment: SegmentId, ceiling: SeqNo) {
        let mut ceilings = self.ceilings.lock();
        let entry = ceilings.entry(segment).or_insert(ceiling);
        *entry = (*entry).min(ceiling);
        self.segments.lock().remove(&segment);
    }

    /// The ceilings of the segments that have one, as a commit records them (in segment
    /// order).
    pub fn ceilings(&self) -> Vec<HistoryCeiling> {
        let mut ceilings: Vec<HistoryCeiling> = self
            .ceilings
            .lock()
            .iter()
            .map(|(segment, ceiling)| HistoryCeiling {
                segment: segment.uuid_string(),
                ceiling: *ceiling,
            })
            .collect();
        ceilings.sort_by(|a, b| a.segment.cmp(&b.segment));
        ceilings
    }

    /// Builds, for every segment of `searcher` not seen yet, its view and its id filter, which
    /// an id lookup would otherwise build on first use: on a write path, under the write's
    /// version-map locks (a merged segment's take tens of milliseconds, a stall of every
    /// write, and on a follower of every apply). A refresh calls it before it publishes the
    /// searcher.
    ///
    /// Returns the segments whose filter it built: it read their whole `_id` term dictionary.
    pub fn warm(
        &self,
        searcher: &Searcher,
        id_field: tantivy::schema::Field,
    ) -> Result<Vec<SegmentId>> {
        let mut built = Vec::new();
        for segment in searcher.segment_readers() {
            let history = self.get(segment)?;
            if history.ids.get().is_none() {
                history.id_filter(segment, id_field)?;
                built.push(segment.segment_id());
            }
        }
        Ok(built)
    }

    /// Forgets segments that `searcher` no longer holds, with their ceilings: a segment
    /// merged away never comes back, and its merge dropped its voided operations.
    pub fn retain(&self, searcher: &Searcher) {
        let live: Vec<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(SegmentReader::segment_id)
            .collect();
        self.segments.lock().retain(|id, _| live.contains(id));
        self.ceilings.lock().retain(|id, _| live.contains(id));
    }
}

/// The latest operation on a document id found in a reader.
#[derive(Clone, Copy, Debug)]
pub struct IndexedVersion {
    /// Sequence number of the latest operation on the id.
    pub seq_no: SeqNo,
    /// Its primary term.
    pub primary_term: PrimaryTerm,
    /// The document version after it.
    pub version: u64,
    /// Index or delete.
    pub op_type: OpType,
    /// Where it lives: (segment ordinal, doc id).
    pub address: tantivy::DocAddress,
    /// True when the document is live (not deleted in tantivy).
    pub alive: bool,
}

/// Finds the operation with the highest seq_no on `id` among all documents (deleted included).
pub fn lookup_latest(
    searcher: &Searcher,
    schema: &IndexSchema,
    cache: &HistoryCache,
    id: &str,
) -> Result<Option<IndexedVersion>> {
    let term = Term::from_field_text(schema.id, id);
    let mut best: Option<IndexedVersion> = None;
    for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
        let history = cache.get(segment)?;
        if !history.may_contain_id(segment, schema.id, id)? {
            continue;
        }
        let inverted = segment
            .inverted_index(schema.id)
            .map_err(|error| EngineError::index("opening the _id index", error))?;
        let postings = inverted
            .read_postings(&term, IndexRecordOption::Basic)
            .map_err(|error| EngineError::io("segment postings", error))?;
        let Some(mut postings) = postings else {
            continue;
        };
        let mut doc = postings.doc();
        while doc != TERMINATED {
            let (seq_no, primary_term, version, op_type) = history.meta(doc)?;
            if history.is_voided(seq_no) {
                doc = postings.advance();
                continue;
            }
            let alive = !segment.is_deleted(doc);
            // Among equal seq_nos (a carried copy, or a document a rollback restored beside
            // its deleted original) the live one is the document's state.
            let better = best.is_none_or(|found| {
                seq_no > found.seq_no || (seq_no == found.seq_no && alive && !found.alive)
            });
            if better {
                best = Some(IndexedVersion {
                    seq_no,
                    primary_term,
                    version,
                    op_type,
                    address: tantivy::DocAddress::new(ordinal as u32, doc),
                    alive,
                });
            }
            doc = postings.advance();
        }
    }
    Ok(best)
}

/// tantivy's type code of a bytes value in its stored-document format.
const STORED_BYTES_CODE: u8 = 4;

fn read_vint(bytes: &[u8], position: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*position)?;
        *position += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 != 0 {
            return Some(value);
        }
    }
    None
}

/// Extracts the `_record` value from the raw stored bytes of a document, without building a
/// `TantivyDocument` (which copies a bytes value one byte at a time). The layout is tantivy's
/// stored-document format: `VInt(number of values) | field id: u32 LE | type code | VInt(len) |
/// bytes`. Returns `None` when the bytes do not have exactly that shape (the caller then falls
/// back to tantivy's decoder), so a format change cannot produce wrong data.
pub fn record_from_stored_bytes(raw: &[u8], record_field: tantivy::schema::Field) -> Option<&[u8]> {
    let mut position = 0;
    if read_vint(raw, &mut position)? != 1 {
        return None;
    }
    let field = raw.get(position..position + 4)?;
    position += 4;
    if u32::from_le_bytes([field[0], field[1], field[2], field[3]]) != record_field.field_id() {
        return None;
    }
    if *raw.get(position)? != STORED_BYTES_CODE {
        return None;
    }
    position += 1;
    let length = usize::try_from(read_vint(raw, &mut position)?).ok()?;
    let end = position.checked_add(length)?;
    if end != raw.len() {
        return None;
    }
    Some(&raw[position..end])
}

/// Calls `read` with the `_record` stored bytes of `doc`: decoded in place from the raw stored
/// bytes (no copy), or through tantivy's decoder when they do not have the expected shape.
pub fn with_record<T>(
    store: &tantivy::store::StoreReader,
    schema: &IndexSchema,
    doc: DocId,
    read: impl FnOnce(&[u8]) -> Result<T>,
) -> Result<T> {
    let raw = store
        .get_document_bytes(doc)
        .map_err(|error| EngineError::index("reading a stored document", error))?;
    if let Some(record) = record_from_stored_bytes(raw.as_slice(), schema.record) {
        return read(record);
    }
    let document: TantivyDocument = store
        .get(doc)
        .map_err(|error| EngineError::index("reading a stored document", error))?;
    let bytes = document
        .get_first(schema.record)
        .and_then(|value| value.as_bytes())
        .ok_or_else(|| EngineError::Corrupted {
            path: "segment".into(),
            reason: format!("document {doc} has no _record"),
        })?;
    read(bytes)
}

/// The id and `_source` (or no-op reason) stored as `doc`.
pub fn read_id_and_body(
    store: &tantivy::store::StoreReader,
    schema: &IndexSchema,
    doc: DocId,
) -> Result<(String, Vec<u8>)> {
    with_record(store, schema, doc, |bytes| {
        let (id, body) = record::split_id(bytes).map_err(corrupted)?;
        Ok((id.to_string(), body.to_vec()))
    })
}

/// Rebuilds the operation stored as `doc` of a segment.
pub fn read_operation(
    history: &SegmentHistory,
    store: &tantivy::store::StoreReader,
    schema: &IndexSchema,
    doc: DocId,
) -> Result<Operation> {
    let (seq_no, primary_term, version, op_type) = history.meta(doc)?;
    with_record(store, schema, doc, |bytes| {
        let (id, body) = record::split_id(bytes).map_err(corrupted)?;
        record::operation_from_parts(seq_no, primary_term, version, op_type, id, body)
            .map_err(corrupted)
    })
}

fn corrupted(error: record::RecordError) -> EngineError {
    EngineError::Corrupted {
        path: "segment".into(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Mappings;

    #[test]
    fn raw_record_decoding_matches_tantivys_decoder() {
        let schema = IndexSchema::build(&Mappings::empty());
        let index = tantivy::Index::create_in_ram(schema.schema.clone());
        let mut writer: tantivy::IndexWriter =
            index.writer_with_num_threads(1, 15_000_000).unwrap();
        let payloads: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"x".to_vec(),
            vec![7u8; 127],
            vec![9u8; 128],
            (0..20_000u32).map(|n| n as u8).collect(),
        ];
        for payload in &payloads {
            let mut document = TantivyDocument::default();
            document.add_u64(schema.seq_no, 1);
            document.add_bytes(schema.record, payload.as_slice());
            writer.add_document(document).unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let segment = &searcher.segment_readers()[0];
        let store = segment.get_store_reader(1).unwrap();
        for doc in 0..segment.max_doc() {
            let raw = store.get_document_bytes(doc).unwrap();
            let fast = record_from_stored_bytes(raw.as_slice(), schema.record).expect("fast path");
            let decoded: TantivyDocument = store.get(doc).unwrap();
            let slow = decoded
                .get_first(schema.record)
                .and_then(|v| v.as_bytes())
                .unwrap();
            assert_eq!(fast, slow);
            assert_eq!(fast, payloads[doc as usize].as_slice());
            assert!(
                record_from_stored_bytes(&raw.as_slice()[..raw.len() - 1], schema.record).is_none()
            );
        }
    }
}
