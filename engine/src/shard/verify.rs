//! Verify: order-free digests of what a shard holds as of a sequence number, so that a follower
//! and its leader can prove they are equal, or find their first difference, without shipping
//! their documents.
//!
//! At `up_to_seq_no` N, a shard's *entries* are:
//! - one **live** entry per document alive in the snapshot whose latest operation is at or
//!   below N: `(seq_no, _primary_term, _version, _id, xxh3(_source))`, except for the ids in
//!   the *changed set*: ids with an operation above N (on either side; see below);
//! - one **history** entry per operation with a seq_no in `[history_from, N]` (a range both
//!   sides retain): `(seq_no, term, version, op type, _id, xxh3(_source))` (a no-op's reason
//!   is not part of it: a follower fills gaps with its own).
//!
//! Why the changed set: the leader keeps indexing while a verify runs, and a document updated
//! above N is no longer the version it had at N; that version may already be merged away (it
//! is below the retention floor), so neither side can rebuild it. Both sides leave such ids out
//! of the live entries and report how many they left out; their operations at or below N are
//! still compared by the history entries where both retain them. The follower's snapshot is
//! taken before the leader's, so every operation the follower holds above N is also above N on
//! the leader: its changed ids are a subset of the leader's, and the follower uses the union.
//! An id only the follower changed is a difference, and it shows as one.
//!
//! A [`RangeDigest`] sums the xxh3-128 hashes of the entries of a seq_no range, with their
//! counts: wrapping addition is order-free, so one pass over the segments in any order builds
//! the digest of every bucket (2^`bucket_bits` seq_nos), and a range's digest is the sum of its
//! buckets'. Both sides split ranges the same way ([`SeqRange::children`]: sixteen aligned
//! parts), so a difference is found by descending into the first differing child: a
//! logarithmic number of round trips, each answered from the buckets or, below a bucket, by a
//! read of that range only. [`LEAF_SEQ_NOS`] or fewer seq_nos are compared entry by entry.
//!
//! Bounds: the changed set holds at most [`MAX_CHANGED_IDS_BYTES`] of ids, a view at most
//! [`MAX_BUCKETS`] buckets, an entry list at most [`MAX_ENTRIES_BYTES`]; past each the call
//! fails with a message naming the limit. A [`VerifySnapshot`] holds a searcher: the segments
//! it reads stay on disk, unchanged, until it is dropped.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, DocSet, Searcher, SegmentReader, Term, TERMINATED};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use super::ShardEngine;
use crate::error::{EngineError, Result};
use crate::history::{with_record, SegmentHistory, ANCHOR_SEQ_NO};
use crate::mapping::IndexSchema;
use crate::record;
use crate::types::{OpType, Operation, OperationKind, SeqNo};

/// Children of a range ([`SeqRange::children`]).
pub const VERIFY_FANOUT: u64 = 16;
/// Most bytes of ids the changed set of a verify may hold (ids with an operation above
/// `up_to_seq_no`): the operations of a leader far ahead of its follower.
pub const MAX_CHANGED_IDS_BYTES: usize = 32 * 1024 * 1024;
/// Buckets of a view have at least 2^this seq_nos.
pub const MIN_BUCKET_BITS: u32 = 10;
/// Most buckets a view holds (each is a [`RangeDigest`], 48 bytes).
pub const MAX_BUCKETS: u64 = 1 << 16;
/// A range of at most this many seq_nos is compared entry by entry.
pub const LEAF_SEQ_NOS: u64 = 256;
/// Most bytes of entries one [`VerifyView::entries`] answer holds.
pub const MAX_ENTRIES_BYTES: usize = 16 * 1024 * 1024;

/// A sum of 128-bit entry hashes (wrapping): order-free, and a removed entry is subtracted.
/// Travels as 32 hex digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DigestSum(pub u128);

impl fmt::Display for DigestSum {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:032x}", self.0)
    }
}

impl Serialize for DigestSum {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DigestSum {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.len() != 32 {
            return Err(serde::de::Error::custom("a digest is 32 hex digits"));
        }
        u128::from_str_radix(&text, 16)
            .map(DigestSum)
            .map_err(serde::de::Error::custom)
    }
}

/// The digest of a seq_no range: how many live and history entries it holds and the sums of
/// their hashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDigest {
    /// Live entries.
    pub live_docs: u64,
    /// Sum of the live entries' hashes.
    pub live_sum: DigestSum,
    /// History entries.
    pub history_ops: u64,
    /// Sum of the history entries' hashes.
    pub history_sum: DigestSum,
}

impl RangeDigest {
    fn add(&mut self, kind: EntryKind, hash: u128) {
        match kind {
            EntryKind::Live => {
                self.live_docs += 1;
                self.live_sum.0 = self.live_sum.0.wrapping_add(hash);
            }
            EntryKind::History => {
                self.history_ops += 1;
                self.history_sum.0 = self.history_sum.0.wrapping_add(hash);
            }
        }
    }

    fn subtract(&mut self, kind: EntryKind, hash: u128) {
        match kind {
            EntryKind::Live => {
                self.live_docs = self.live_docs.wrapping_sub(1);
                self.live_sum.0 = self.live_sum.0.wrapping_sub(hash);
            }
            EntryKind::History => {
                self.history_ops = self.history_ops.wrapping_sub(1);
                self.history_sum.0 = self.history_sum.0.wrapping_sub(hash);
            }
        }
    }

    /// Adds `other`'s entries to this digest.
    pub fn merge(&mut self, other: &RangeDigest) {
        self.live_docs = self.live_docs.wrapping_add(other.live_docs);
        self.live_sum.0 = self.live_sum.0.wrapping_add(other.live_sum.0);
        self.history_ops = self.history_ops.wrapping_add(other.history_ops);
        self.history_sum.0 = self.history_sum.0.wrapping_add(other.history_sum.0);
    }
}

/// What an entry stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A live document as of `up_to_seq_no`.
    Live,
    /// An operation of the history.
    History,
}

/// One live document or one operation, as a verify compares them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VerifyEntry {
    /// Its sequence number.
    pub seq_no: i64,
    /// Live document or operation.
    pub kind: EntryKind,
    /// The document id (empty for a no-op).
    #[serde(rename = "_id")]
    pub id: String,
    /// Its primary term.
    pub primary_term: u64,
    /// Its version.
    pub version: u64,
    /// `index`, `delete` or `noop`.
    pub op_type: String,
    /// xxh3-64 of its `_source` (0 for a delete or a no-op).
    pub source_hash: u64,
}

impl VerifyEntry {
    /// The history entry of `operation`.
    pub fn of_operation(operation: &Operation) -> VerifyEntry {
        let (id, source_hash) = match &operation.kind {
            OperationKind::Index { id, source } => (id.as_str(), xxh3_64(source)),
            OperationKind::Delete { id } => (id.as_str(), 0),
            OperationKind::NoOp { .. } => ("", 0),
        };
        VerifyEntry {
            seq_no: operation.seq_no.0,
            kind: EntryKind::History,
            id: id.to_string(),
            primary_term: operation.primary_term.0,
            version: operation.version,
            op_type: operation.op_type().name().to_string(),
            source_hash,
        }
    }

    /// The 128-bit hash that digests sum.
    pub fn hash(&self) -> u128 {
        self.borrowed().hash()
    }

    /// The entry as an [`EntryRef`].
    pub fn borrowed(&self) -> EntryRef<'_> {
        EntryRef {
            seq_no: self.seq_no,
            kind: self.kind,
            id: &self.id,
            primary_term: self.primary_term,
            version: self.version,
            op_type: &self.op_type,
            source_hash: self.source_hash,
        }
    }

    /// Approximate size (what [`MAX_ENTRIES_BYTES`] bounds).
    pub fn size_in_bytes(&self) -> usize {
        64 + self.id.len()
    }
}

/// A [`VerifyEntry`] borrowed from the document it was read from: what the one-pass digest
/// hashes without allocating.
#[derive(Clone, Copy, Debug)]
pub struct EntryRef<'a> {
    /// Its sequence number.
    pub seq_no: i64,
    /// Live document or operation.
    pub kind: EntryKind,
    /// The document id (empty for a no-op).
    pub id: &'a str,
    /// Its primary term.
    pub primary_term: u64,
    /// Its version.
    pub version: u64,
    /// `index`, `delete` or `noop`.
    pub op_type: &'a str,
    /// xxh3-64 of its `_source` (0 for a delete or a no-op).
    pub source_hash: u64,
}

/// Ids up to this long are hashed from a buffer on the stack (Elasticsearch's `_id` limit).
const STACK_ID_BYTES: usize = 512;

impl EntryRef<'_> {
    /// The 128-bit hash that digests sum: xxh3-128 of the fields, in a fixed layout.
    pub fn hash(&self) -> u128 {
        const FIXED: usize = 1 + 8 + 8 + 8 + 8 + 1 + 8;
        let mut fixed = [0u8; FIXED];
        fixed[0] = match self.kind {
            EntryKind::Live => b'L',
            EntryKind::History => b'H',
        };
        fixed[1..9].copy_from_slice(&self.seq_no.to_le_bytes());
        fixed[9..17].copy_from_slice(&self.primary_term.to_le_bytes());
        fixed[17..25].copy_from_slice(&self.version.to_le_bytes());
        // The operation type by its first byte (`i`, `d`, `n`) and length.
        fixed[25..33].copy_from_slice(&(self.op_type.len() as u64).to_le_bytes());
        fixed[33] = self.op_type.as_bytes().first().copied().unwrap_or(0);
        fixed[34..42].copy_from_slice(&self.source_hash.to_le_bytes());
        let id = self.id.as_bytes();
        if id.len() <= STACK_ID_BYTES {
            let mut bytes = [0u8; FIXED + STACK_ID_BYTES];
            bytes[..FIXED].copy_from_slice(&fixed);
            bytes[FIXED..FIXED + id.len()].copy_from_slice(id);
            xxh3_128(&bytes[..FIXED + id.len()])
        } else {
            let mut bytes = Vec::with_capacity(FIXED + id.len());
            bytes.extend_from_slice(&fixed);
            bytes.extend_from_slice(id);
            xxh3_128(&bytes)
        }
    }

    /// The owned entry.
    pub fn to_owned_entry(&self) -> VerifyEntry {
        VerifyEntry {
            seq_no: self.seq_no,
            kind: self.kind,
            id: self.id.to_string(),
            primary_term: self.primary_term,
            version: self.version,
            op_type: self.op_type.to_string(),
            source_hash: self.source_hash,
        }
    }
}

/// An inclusive range of sequence numbers, a node of the verify tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    /// First seq_no.
    pub from: i64,
    /// Last seq_no (inclusive).
    pub to: i64,
}

impl SeqRange {
    /// The root of the tree at `up_to`: `[0, up_to]` (`None` when nothing is at or below it).
    pub fn root(up_to: SeqNo) -> Option<SeqRange> {
        (up_to.0 >= 0).then_some(SeqRange {
            from: 0,
            to: up_to.0,
        })
    }

    /// Number of seq_nos in the range.
    pub fn len(&self) -> u64 {
        if self.to < self.from {
            0
        } else {
            (self.to - self.from) as u64 + 1
        }
    }

    /// True when the range holds no seq_no.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `other` lies inside this range.
    pub fn contains(&self, other: &SeqRange) -> bool {
        self.from <= other.from && other.to <= self.to
    }

    /// The range split into at most [`VERIFY_FANOUT`] parts of a power-of-two size aligned on
    /// that size (the last one clipped): both sides split the same way, and a part of at least
    /// a bucket's size is made of whole buckets. Empty for a single seq_no.
    pub fn children(&self) -> Vec<SeqRange> {
        let len = self.len();
        if len <= 1 {
            return Vec::new();
        }
        let child = (len.next_power_of_two() / VERIFY_FANOUT).max(1);
        let mut children = Vec::with_capacity(VERIFY_FANOUT as usize + 1);
        let mut from = self.from as u64;
        while from <= self.to as u64 {
            let to = (from + child - 1).min(self.to as u64);
            children.push(SeqRange {
                from: from as i64,
                to: to as i64,
            });
            from += child;
        }
        children
    }
}

/// Ids with an operation above `up_to_seq_no`: left out of the live entries.
#[derive(Clone, Debug, Default)]
pub struct ChangedIds {
    ids: HashSet<Box<str>>,
    bytes: usize,
}

impl ChangedIds {
    /// Adds `id`; fails past [`MAX_CHANGED_IDS_BYTES`]. True if it was new.
    pub fn insert(&mut self, id: &str) -> Result<bool> {
        if self.ids.contains(id) {
            return Ok(false);
        }
        self.bytes += id.len() + 16;
        if self.bytes > MAX_CHANGED_IDS_BYTES {
            return Err(EngineError::InvalidArgument(format!(
                "the ids changed above up_to_seq_no exceed the verify limit of [{MAX_CHANGED_IDS_BYTES}] bytes: \
                 verify at a higher up_to_seq_no, or once the follower has caught up"
            )));
        }
        self.ids.insert(id.into());
        Ok(true)
    }

    /// True when `id` is in the set.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The ids, in no order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(|id| &**id)
    }
}

/// A point-in-time view of a shard for a verify: a refreshed searcher holding every operation
/// at or below `up_to`, with the history floor it guarantees.
pub struct VerifySnapshot {
    searcher: Searcher,
    histories: Vec<Arc<SegmentHistory>>,
    schema: Arc<IndexSchema>,
    up_to: SeqNo,
    retained_from: SeqNo,
    max_seq_no: SeqNo,
}

impl ShardEngine {
    /// Refreshes the shard and snapshots it for a verify at `up_to` (see the module
    /// documentation); `None` verifies at the local checkpoint of the refresh's commit (every
    /// operation at or below it is durable and in the snapshot). Fails when the shard has not
    /// processed `up_to` yet.
    pub fn verify_snapshot(&self, up_to: Option<SeqNo>) -> Result<VerifySnapshot> {
        let inner = &self.inner;
        inner.check_failed()?;
        if let Some(up_to) = up_to {
            let processed = inner.checkpoints.processed();
            if up_to > processed {
                return Err(EngineError::InvalidArgument(format!(
                    "up_to_seq_no [{up_to}] is above the shard's local checkpoint [{processed}]: \
                     it has not processed every operation up to it"
                )));
            }
            if up_to.0 < -1 {
                return Err(EngineError::InvalidArgument(format!(
                    "up_to_seq_no [{up_to}] must be at least -1"
                )));
            }
        }
        // Every operation at or below `up_to` was processed before this refresh began; under
        // its lock, the searcher, the floor and the commit's checkpoint are of one commit (the
        // floor never passes that checkpoint + 1).
        let (searcher, retained_from, up_to) = inner.refresh_then(|committed| {
            (
                inner.commits.searcher(),
                inner.retention.min_retained_seq_no(),
                up_to.unwrap_or(committed),
            )
        })?;
        let histories = searcher
            .segment_readers()
            .iter()
            .map(|segment| inner.retention.history().get(segment))
            .collect::<Result<Vec<_>>>()?;
        Ok(VerifySnapshot {
            searcher,
            histories,
            schema: inner.mapper.schema().clone(),
            up_to,
            retained_from,
            max_seq_no: inner.checkpoints.max_seq_no(),
        })
    }
}

/// The document of a snapshot an entry is read from.
struct DocAt<'a> {
    segment: &'a SegmentReader,
    history: &'a SegmentHistory,
    store: &'a tantivy::store::StoreReader,
    doc: DocId,
}

/// What a side can tell of one id's state at `up_to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateAt {
    /// A live document: its live entry.
    Live(VerifyEntry),
    /// No live document (deleted, or not created yet).
    Absent,
    /// The operation that set it was merged away: this side cannot tell.
    Unknown,
}

/// What a snapshot holds above `up_to`, and what it can tell of the ids changed there.
#[derive(Clone, Debug)]
pub struct ChangesAbove {
    /// Ids with an operation above `up_to`: their live documents are not their state at it.
    pub changed: ChangedIds,
    /// Those whose state at `up_to` this side cannot tell (see [`StateAt::Unknown`]).
    pub undetermined: ChangedIds,
    /// Every seq_no of `[complete_from, up_to]` has its operation in the snapshot (merges
    /// dropped none of them).
    pub complete_from: SeqNo,
}

/// Most seq_nos below `up_to` whose presence [`VerifySnapshot::changes_above`] tracks to find
/// how far back the history is complete (a bit each: 16 MiB).
pub const COMPLETENESS_WINDOW_SEQ_NOS: u64 = 1 << 27;

impl VerifySnapshot {
    /// The seq_no the snapshot verifies at.
    pub fn up_to(&self) -> SeqNo {
        self.up_to
    }

    /// Every operation at or above it is in the snapshot (the shard's retention floor).
    pub fn retained_from(&self) -> SeqNo {
        self.retained_from
    }

    /// The shard's max_seq_no when the snapshot was taken.
    pub fn max_seq_no(&self) -> SeqNo {
        self.max_seq_no
    }

    fn segments(&self) -> impl Iterator<Item = (&SegmentReader, &SegmentHistory)> {
        self.searcher
            .segment_readers()
            .iter()
            .zip(self.histories.iter().map(|history| &**history))
    }

    /// The ids with an operation above `up_to`, how far back the history is complete, and
    /// which of those ids' states at `up_to` cannot be told. One pass over the seq_no columns,
    /// then a read of the documents above `up_to` and a lookup of each changed id.
    pub fn changes_above(&self) -> Result<ChangesAbove> {
        let up_to = self.up_to.0;
        // Merges may have dropped operations above `up_to` (a delete's tombstone with every
        // version before it): the changed ids could not be told.
        if self.retained_from.0 > up_to.saturating_add(1) {
            return Err(EngineError::InvalidArgument(format!(
                "the shard no longer holds every operation above up_to_seq_no [{up_to}]: it \
                 retains its history from seq_no [{}]; verify at [{}] or above",
                self.retained_from,
                self.retained_from.0 - 1
            )));
        }
        // With nothing at or below `up_to`, every id's state there is "absent".
        let mut changes = ChangesAbove {
            changed: ChangedIds::default(),
            undetermined: ChangedIds::default(),
            complete_from: SeqNo(0),
        };
        let window_start = (up_to + 1)
            .saturating_sub(COMPLETENESS_WINDOW_SEQ_NOS as i64)
            .max(0);
        let window = (up_to + 1 - window_start).max(0) as usize;
        let mut present = vec![0u64; window.div_ceil(64)];
        let mut above: Vec<Vec<DocId>> = Vec::with_capacity(self.histories.len());
        for (segment, history) in self.segments() {
            let mut docs = Vec::new();
            for doc in 0..segment.max_doc() {
                let Some(seq_no) = history.seq_no(doc) else {
                    continue;
                };
                if seq_no == ANCHOR_SEQ_NO {
                    continue;
                }
                let seq_no = seq_no as i64;
                if seq_no > up_to {
                    docs.push(doc);
                } else if seq_no >= window_start {
                    let bit = (seq_no - window_start) as usize;
                    present[bit / 64] |= 1 << (bit % 64);
                }
            }
            above.push(docs);
        }
        if up_to >= 0 {
            let mut complete_from = window_start;
            for seq_no in (window_start..=up_to).rev() {
                let bit = (seq_no - window_start) as usize;
                if present[bit / 64] & (1 << (bit % 64)) == 0 {
                    complete_from = seq_no + 1;
                    break;
                }
            }
            changes.complete_from = SeqNo(complete_from);
        }
        drop(present);
        for ((segment, _), docs) in self.segments().zip(&above) {
            if docs.is_empty() {
                continue;
            }
            let store = SegmentHistory::scan_store(segment)?;
            for &doc in docs {
                with_record(&store, &self.schema, doc, |bytes| {
                    let (id, _) = record::split_id(bytes).map_err(corrupted)?;
                    if !id.is_empty() {
                        changes.changed.insert(id)?;
                    }
                    Ok(())
                })?;
            }
        }
        for id in changes.changed.iter() {
            if self.state_at(id, true, changes.complete_from)? == StateAt::Unknown {
                changes.undetermined.insert(id)?;
            }
        }
        Ok(changes)
    }

    /// What this snapshot tells of `id`'s state at `up_to`. Without an operation above
    /// `up_to` (`changed` false), it is its live document: its latest operation is at or below
    /// `up_to`. With one, it is the latest operation at or below `up_to` when that one is in
    /// the complete part of the history (nothing on the id between it and `up_to` can have
    /// been merged away), else [`StateAt::Unknown`].
    pub fn state_at(&self, id: &str, changed: bool, complete_from: SeqNo) -> Result<StateAt> {
        let id_field = self.schema.id;
        let term = Term::from_field_text(id_field, id);
        // (seq_no, segment ordinal, doc) of the best candidate.
        let mut best: Option<(i64, usize, DocId)> = None;
        for (ordinal, (segment, history)) in self.segments().enumerate() {
            if !history.may_contain_id(segment, id_field, id)? {
                continue;
            }
            let inverted = segment
                .inverted_index(id_field)
                .map_err(|error| EngineError::index("opening the _id index", error))?;
            let Some(mut postings) = inverted
                .read_postings(&term, IndexRecordOption::Basic)
                .map_err(|error| EngineError::io("segment postings", error))?
            else {
                continue;
            };
            let mut doc = postings.doc();
            while doc != TERMINATED {
                let seq_no = history.seq_no(doc).unwrap_or(ANCHOR_SEQ_NO);
                let candidate = match changed {
                    false => !segment.is_deleted(doc),
                    true => seq_no <= self.up_to.0 as u64,
                };
                if candidate && seq_no != ANCHOR_SEQ_NO {
                    let seq_no = seq_no as i64;
                    if best.is_none_or(|(found, _, _)| seq_no > found) {
                        best = Some((seq_no, ordinal, doc));
                    }
                }
                doc = postings.advance();
            }
        }
        let Some((seq_no, ordinal, doc)) = best else {
            return Ok(match changed && complete_from.0 > 0 {
                true => StateAt::Unknown,
                false => StateAt::Absent,
            });
        };
        if changed && seq_no < complete_from.0 {
            return Ok(StateAt::Unknown);
        }
        let segment = self.searcher.segment_reader(ordinal as u32);
        let history = &self.histories[ordinal];
        let (_, _, _, op_type) = history.meta(doc)?;
        if op_type != OpType::Index {
            return Ok(StateAt::Absent);
        }
        let at = DocAt {
            segment,
            history,
            store: history.store(segment)?,
            doc,
        };
        let mut found = None;
        self.entry_of(&at, EntryKind::Live, &mut |entry| {
            found = Some(entry.to_owned_entry())
        })?;
        Ok(found.map_or(StateAt::Absent, StateAt::Live))
    }

    /// Calls `visit` with the entry of kind `kind` of one document.
    fn entry_of(
        &self,
        at: &DocAt<'_>,
        kind: EntryKind,
        visit: &mut dyn FnMut(&EntryRef<'_>),
    ) -> Result<()> {
        let (seq_no, primary_term, version, op_type) = at.history.meta(at.doc)?;
        with_record(at.store, &self.schema, at.doc, |bytes| {
            let (id, body) = record::split_id(bytes).map_err(corrupted)?;
            visit(&EntryRef {
                seq_no: seq_no.0,
                kind,
                id,
                primary_term: primary_term.0,
                version,
                op_type: op_type.name(),
                source_hash: match op_type {
                    OpType::Index => xxh3_64(body),
                    OpType::Delete | OpType::NoOp => 0,
                },
            });
            Ok(())
        })
    }

    /// Calls `visit` with the entries of one document: its live entry (when alive, an index
    /// operation at or below `up_to` and `live` says so of its id) and its history entry
    /// (when its seq_no is in `[history_from, up_to]`).
    fn entries_of(
        &self,
        at: &DocAt<'_>,
        live: &dyn Fn(&str) -> bool,
        history_from: SeqNo,
        visit: &mut dyn FnMut(&EntryRef<'_>),
    ) -> Result<()> {
        let (seq_no, primary_term, version, op_type) = at.history.meta(at.doc)?;
        if seq_no > self.up_to {
            return Ok(());
        }
        let alive = !at.segment.is_deleted(at.doc) && op_type == OpType::Index;
        let in_history = seq_no >= history_from;
        if !(in_history || alive) {
            return Ok(());
        }
        with_record(at.store, &self.schema, at.doc, |bytes| {
            let (id, body) = record::split_id(bytes).map_err(corrupted)?;
            let source_hash = match op_type {
                OpType::Index => xxh3_64(body),
                OpType::Delete | OpType::NoOp => 0,
            };
            let entry = |kind| EntryRef {
                seq_no: seq_no.0,
                kind,
                id,
                primary_term: primary_term.0,
                version,
                op_type: op_type.name(),
                source_hash,
            };
            if alive && live(id) {
                visit(&entry(EntryKind::Live));
            }
            if in_history {
                visit(&entry(EntryKind::History));
            }
            Ok(())
        })
    }

    /// Calls `visit` with every entry of the documents whose seq_no is in `range`, reading
    /// only the documents of that range.
    fn visit_range(
        &self,
        range: SeqRange,
        live: &dyn Fn(&str) -> bool,
        history_from: SeqNo,
        visit: &mut dyn FnMut(&EntryRef<'_>),
    ) -> Result<()> {
        let to = range.to.min(self.up_to.0);
        if range.from < 0 || to < range.from {
            return Ok(());
        }
        let mut docs = Vec::new();
        for (segment, history) in self.segments() {
            docs.clear();
            history.docs_in_range(range.from as u64, to as u64, &mut docs);
            if docs.is_empty() {
                continue;
            }
            let store = SegmentHistory::scan_store(segment)?;
            for &(_, doc) in &docs {
                let at = DocAt {
                    segment,
                    history,
                    store: &store,
                    doc,
                };
                self.entries_of(&at, live, history_from, visit)?;
            }
        }
        Ok(())
    }

    /// Calls `visit` with every entry of the documents of the snapshot, in one pass over each
    /// segment.
    fn visit_all(
        &self,
        live: &dyn Fn(&str) -> bool,
        history_from: SeqNo,
        visit: &mut dyn FnMut(&EntryRef<'_>),
    ) -> Result<()> {
        let up_to = self.up_to.0;
        for (segment, history) in self.segments() {
            let store = SegmentHistory::scan_store(segment)?;
            for doc in 0..segment.max_doc() {
                let Some(seq_no) = history.seq_no(doc) else {
                    continue;
                };
                if seq_no == ANCHOR_SEQ_NO || seq_no > up_to as u64 {
                    continue;
                }
                if (seq_no as i64) < history_from.0 && segment.is_deleted(doc) {
                    continue;
                }
                let at = DocAt {
                    segment,
                    history,
                    store: &store,
                    doc,
                };
                self.entries_of(&at, live, history_from, visit)?;
            }
        }
        Ok(())
    }
}

/// A shard's side of a verify: a snapshot, what changed above `up_to`, the ids left out, the
/// history range compared and the digest of every bucket.
///
/// Live entries: the live documents of the ids without an operation above `up_to`, and, for
/// the ids with one, the state at `up_to` rebuilt from the history ([`StateAt`]); an id is
/// left out (`excluded`) when either side cannot tell its state there.
pub struct VerifyView {
    snapshot: VerifySnapshot,
    changes: ChangesAbove,
    excluded: ChangedIds,
    /// The live entries rebuilt for changed ids, sorted by seq_no.
    rebuilt: Vec<VerifyEntry>,
    history_from: SeqNo,
    bucket_bits: u32,
    buckets: Vec<RangeDigest>,
}

impl VerifyView {
    /// Builds the view in one pass over the snapshot's segments: `excluded` ids (with this
    /// side's undetermined ones added) are left out of the live entries, history entries are
    /// those in `[history_from, up_to]` (`history_from` must not be below the snapshot's
    /// retention floor: below it the history is not whole).
    pub fn build(
        snapshot: VerifySnapshot,
        changes: ChangesAbove,
        mut excluded: ChangedIds,
        history_from: SeqNo,
    ) -> Result<VerifyView> {
        if history_from < snapshot.retained_from {
            return Err(EngineError::InvalidArgument(format!(
                "history_from [{history_from}] is below the shard's retention floor [{}]",
                snapshot.retained_from
            )));
        }
        for id in changes.undetermined.iter() {
            excluded.insert(id)?;
        }
        let mut rebuilt = Vec::new();
        for id in changes.changed.iter() {
            if excluded.contains(id) {
                continue;
            }
            match snapshot.state_at(id, true, changes.complete_from)? {
                StateAt::Live(entry) => rebuilt.push(entry),
                StateAt::Absent => {}
                StateAt::Unknown => {
                    excluded.insert(id)?;
                }
            }
        }
        rebuilt.sort();
        let seq_nos = (snapshot.up_to.0 + 1).max(0) as u64;
        let mut bucket_bits = MIN_BUCKET_BITS;
        while seq_nos.div_ceil(1 << bucket_bits) > MAX_BUCKETS {
            bucket_bits += 1;
        }
        let count = seq_nos.div_ceil(1 << bucket_bits) as usize;
        let mut buckets = vec![RangeDigest::default(); count];
        {
            let live = |id: &str| !changes.changed.contains(id) && !excluded.contains(id);
            let mut add = |entry: &EntryRef<'_>| {
                let bucket = (entry.seq_no as u64 >> bucket_bits) as usize;
                buckets[bucket].add(entry.kind, entry.hash());
            };
            snapshot.visit_all(&live, history_from, &mut add)?;
            for entry in &rebuilt {
                add(&entry.borrowed());
            }
        }
        Ok(VerifyView {
            snapshot,
            changes,
            excluded,
            rebuilt,
            history_from,
            bucket_bits,
            buckets,
        })
    }

    /// The snapshot the view reads.
    pub fn snapshot(&self) -> &VerifySnapshot {
        &self.snapshot
    }

    /// What changed above `up_to` on this side.
    pub fn changes(&self) -> &ChangesAbove {
        &self.changes
    }

    /// The ids left out of the live entries.
    pub fn excluded(&self) -> &ChangedIds {
        &self.excluded
    }

    /// First seq_no of the history compared.
    pub fn history_from(&self) -> SeqNo {
        self.history_from
    }

    /// The digest of `[0, up_to]`.
    pub fn root(&self) -> RangeDigest {
        let mut root = RangeDigest::default();
        for bucket in &self.buckets {
            root.merge(bucket);
        }
        root
    }

    fn is_live(&self, id: &str) -> bool {
        !self.changes.changed.contains(id) && !self.excluded.contains(id)
    }

    /// Calls `visit` with every entry in `range`, read from the segments.
    fn visit_range(&self, range: SeqRange, visit: &mut dyn FnMut(&EntryRef<'_>)) -> Result<()> {
        let live = |id: &str| self.is_live(id);
        self.snapshot
            .visit_range(range, &live, self.history_from, visit)?;
        let start = self
            .rebuilt
            .partition_point(|entry| entry.seq_no < range.from);
        for entry in self.rebuilt[start..]
            .iter()
            .take_while(|entry| entry.seq_no <= range.to)
        {
            visit(&entry.borrowed());
        }
        Ok(())
    }

    /// The digest of `range`: summed from the buckets when it is made of whole buckets, read
    /// from the segments otherwise.
    pub fn digest(&self, range: SeqRange) -> Result<RangeDigest> {
        let up_to = self.snapshot.up_to.0;
        let to = range.to.min(up_to);
        if range.from < 0 || to < range.from {
            return Ok(RangeDigest::default());
        }
        let size = 1i64 << self.bucket_bits;
        let aligned = range.from % size == 0 && ((to + 1) % size == 0 || to == up_to);
        let mut digest = RangeDigest::default();
        if aligned {
            for bucket in &self.buckets[(range.from / size) as usize..=(to / size) as usize] {
                digest.merge(bucket);
            }
        } else {
            self.visit_range(range, &mut |entry| digest.add(entry.kind, entry.hash()))?;
        }
        Ok(digest)
    }

    /// The entries of `range`, sorted by (seq_no, kind); fails past [`MAX_ENTRIES_BYTES`].
    pub fn entries(&self, range: SeqRange) -> Result<Vec<VerifyEntry>> {
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        self.visit_range(range, &mut |entry| {
            let entry = entry.to_owned_entry();
            bytes += entry.size_in_bytes();
            entries.push(entry);
        })?;
        if bytes > MAX_ENTRIES_BYTES {
            return Err(EngineError::InvalidArgument(format!(
                "the entries of seq_nos [{}, {}] exceed the verify limit of [{MAX_ENTRIES_BYTES}] bytes",
                range.from, range.to
            )));
        }
        entries.sort();
        Ok(entries)
    }

    /// Leaves `ids` out of the live entries too (those whose state the other side cannot
    /// tell), subtracting the live entries they had here.
    pub fn exclude_ids<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) -> Result<()> {
        for id in ids {
            if self.excluded.contains(id) {
                continue;
            }
            let had = if self.changes.changed.contains(id) {
                let found = self.rebuilt.iter().position(|entry| entry.id == id);
                found.map(|at| self.rebuilt.remove(at))
            } else {
                match self
                    .snapshot
                    .state_at(id, false, self.changes.complete_from)?
                {
                    StateAt::Live(entry) => Some(entry),
                    StateAt::Absent | StateAt::Unknown => None,
                }
            };
            if let Some(entry) = had {
                let bucket = (entry.seq_no as u64 >> self.bucket_bits) as usize;
                self.buckets[bucket].subtract(entry.kind, entry.hash());
            }
            self.excluded.insert(id)?;
        }
        Ok(())
    }

    /// Moves the start of the history compared up to `from` (the other side retains less),
    /// subtracting the history entries below it.
    pub fn raise_history_from(&mut self, from: SeqNo) -> Result<()> {
        if from <= self.history_from {
            return Ok(());
        }
        let dropped = SeqRange {
            from: self.history_from.0,
            to: from.0.saturating_sub(1),
        };
        let bucket_bits = self.bucket_bits;
        let buckets = &mut self.buckets;
        self.snapshot
            .visit_range(dropped, &|_| false, self.history_from, &mut |entry| {
                if entry.kind == EntryKind::History {
                    let bucket = (entry.seq_no as u64 >> bucket_bits) as usize;
                    buckets[bucket].subtract(entry.kind, entry.hash());
                }
            })?;
        self.history_from = from;
        Ok(())
    }
}

fn corrupted(error: record::RecordError) -> EngineError {
    EngineError::Corrupted {
        path: "segment".into(),
        reason: error.to_string(),
    }
}

/// The first difference between two sides' entries of the same range: the smallest (seq_no,
/// kind) one side has and the other has not, or has differently. `None` when equal.
pub fn first_difference(
    leader: &[VerifyEntry],
    follower: &[VerifyEntry],
) -> Option<(Option<VerifyEntry>, Option<VerifyEntry>)> {
    let key = |entry: &VerifyEntry| (entry.seq_no, entry.kind);
    let (mut l, mut f) = (leader.iter().peekable(), follower.iter().peekable());
    loop {
        match (l.peek(), f.peek()) {
            (None, None) => return None,
            (Some(a), None) => return Some((Some((*a).clone()), None)),
            (None, Some(b)) => return Some((None, Some((*b).clone()))),
            (Some(a), Some(b)) => match key(a).cmp(&key(b)) {
                std::cmp::Ordering::Less => return Some((Some((*a).clone()), None)),
                std::cmp::Ordering::Greater => return Some((None, Some((*b).clone()))),
                std::cmp::Ordering::Equal => {
                    if a != b {
                        return Some((Some((*a).clone()), Some((*b).clone())));
                    }
                    l.next();
                    f.next();
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_cover_their_parent_in_aligned_parts() {
        for (from, to) in [
            (0, 0),
            (0, 1),
            (0, 15),
            (0, 16),
            (0, 99),
            (0, 1_000_000),
            (96, 99),
        ] {
            let range = SeqRange { from, to };
            let children = range.children();
            if range.len() <= 1 {
                assert!(children.is_empty());
                continue;
            }
            assert!(children.len() <= VERIFY_FANOUT as usize);
            assert_eq!(children[0].from, from);
            assert_eq!(children.last().map(|c| c.to), Some(to));
            for pair in children.windows(2) {
                assert_eq!(pair[0].to + 1, pair[1].from);
            }
            let size = children[0].len();
            assert!(size.is_power_of_two());
            for child in &children {
                assert_eq!(child.from as u64 % size, 0, "{child:?} is aligned");
                assert!(child.len() < range.len());
            }
        }
    }

    #[test]
    fn digest_sums_travel_as_hex() {
        let digest = RangeDigest {
            live_docs: 3,
            live_sum: DigestSum(u128::MAX - 5),
            history_ops: 0,
            history_sum: DigestSum(1),
        };
        let json = serde_json::to_string(&digest).unwrap();
        assert!(
            json.contains("\"00000000000000000000000000000001\""),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<RangeDigest>(&json).unwrap(), digest);
        assert!(serde_json::from_str::<DigestSum>("\"12\"").is_err());
    }

    #[test]
    fn the_first_difference_is_the_smallest_seq_no() {
        let entry = |seq_no, kind, hash| VerifyEntry {
            seq_no,
            kind,
            id: format!("d{seq_no}"),
            primary_term: 1,
            version: 1,
            op_type: "index".into(),
            source_hash: hash,
        };
        let leader = vec![
            entry(1, EntryKind::Live, 1),
            entry(2, EntryKind::Live, 2),
            entry(3, EntryKind::Live, 3),
        ];
        assert_eq!(first_difference(&leader, &leader), None);
        let mut changed = leader.clone();
        changed[1].source_hash = 9;
        let (a, b) = first_difference(&leader, &changed).unwrap();
        assert_eq!((a.unwrap().seq_no, b.unwrap().source_hash), (2, 9));
        let missing = vec![leader[0].clone(), leader[2].clone()];
        let (a, b) = first_difference(&leader, &missing).unwrap();
        assert_eq!((a.unwrap().seq_no, b), (2, None));
    }
}
