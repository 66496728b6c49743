//! The live version map and the in-memory tail: what the shard knows about writes that no
//! refreshed reader shows yet.
//!
//! tantivy only shows documents to readers after a commit, so between refreshes the engine keeps
//! (a) per document id, the latest operation ([`LiveVersionMap`], for real-time get and for
//! version/conflict resolution), and (b) per sequence number, every operation ([`Tail`], for the
//! changes API). A refresh moves both into a "refreshing" generation before it commits and drops
//! that generation once the new reader is installed, so every operation is always visible in at
//! least one place: the maps or the reader.
//!
//! The version map is striped; a stripe's lock is also the per-id lock that serializes writes to
//! the ids hashing to it (like Elasticsearch's per-uid lock).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};

use parking_lot::{Mutex, MutexGuard};

use crate::types::{SeqNo, SharedOperation};

/// Number of stripes of the version map; a power of two.
pub const VERSION_MAP_STRIPES: usize = 64;

/// What the version map knows about one id.
#[derive(Clone, Debug)]
pub struct VersionValue {
    /// The latest operation on the id (index or delete).
    pub operation: SharedOperation,
}

impl VersionValue {
    /// True when the latest operation deleted the document.
    pub fn is_delete(&self) -> bool {
        self.operation.source().is_none()
    }
}

/// One stripe: the current and the refreshing generation.
#[derive(Default, Debug)]
pub struct VersionStripe {
    current: HashMap<String, VersionValue>,
    refreshing: Option<HashMap<String, VersionValue>>,
}

impl VersionStripe {
    /// The latest known operation on `id` since the last installed reader.
    pub fn get(&self, id: &str) -> Option<&VersionValue> {
        self.current
            .get(id)
            .or_else(|| self.refreshing.as_ref().and_then(|map| map.get(id)))
    }

    /// Records the latest operation on `id`.
    pub fn put(&mut self, id: &str, value: VersionValue) {
        if let Some(existing) = self.current.get_mut(id) {
            *existing = value;
        } else {
            self.current.insert(id.to_string(), value);
        }
    }
}

/// The striped live version map.
pub struct LiveVersionMap {
    stripes: Box<[Mutex<VersionStripe>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for LiveVersionMap {
    fn default() -> Self {
        LiveVersionMap {
            stripes: (0..VERSION_MAP_STRIPES)
                .map(|_| Mutex::new(VersionStripe::default()))
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl LiveVersionMap {
    /// The stripe number of `key` (a document id; no-ops use their sequence number).
    pub fn stripe_of<K: Hash + ?Sized>(&self, key: &K) -> usize {
        self.hasher.hash_one(key) as usize & (VERSION_MAP_STRIPES - 1)
    }

    /// Locks the stripe of `key`.
    pub fn lock<K: Hash + ?Sized>(&self, key: &K) -> MutexGuard<'_, VersionStripe> {
        self.stripes[self.stripe_of(key)].lock()
    }

    /// Locks the given stripes, in increasing order (so concurrent callers cannot deadlock).
    pub fn lock_many(&self, mut stripes: Vec<usize>) -> LockedStripes<'_> {
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards: Vec<Option<MutexGuard<'_, VersionStripe>>> =
            (0..VERSION_MAP_STRIPES).map(|_| None).collect();
        for stripe in stripes {
            guards[stripe] = Some(self.stripes[stripe].lock());
        }
        LockedStripes { guards }
    }

    /// Starts a refresh: the current generation becomes the refreshing one.
    pub fn begin_refresh(&self) {
        for stripe in self.stripes.iter() {
            let mut stripe = stripe.lock();
            assert!(stripe.refreshing.is_none(), "refreshes do not overlap");
            let current = std::mem::take(&mut stripe.current);
            stripe.refreshing = Some(current);
        }
    }

    /// Ends a refresh once the new reader is installed: returns the refreshing generation, for
    /// the caller to drop once it holds no lock (freeing a second of writes is not free).
    pub fn end_refresh(&self) -> Vec<HashMap<String, VersionValue>> {
        self.stripes
            .iter()
            .filter_map(|stripe| stripe.lock().refreshing.take())
            .collect()
    }

    /// Number of ids held (both generations).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.stripes
            .iter()
            .map(|stripe| {
                let stripe = stripe.lock();
                stripe.current.len() + stripe.refreshing.as_ref().map_or(0, HashMap::len)
            })
            .sum()
    }
}

/// A set of stripes held by one writer for the length of a batch.
pub struct LockedStripes<'a> {
    guards: Vec<Option<MutexGuard<'a, VersionStripe>>>,
}

impl LockedStripes<'_> {
    /// The stripe `stripe`; panics if the caller did not lock it (a bug).
    pub fn get(&mut self, stripe: usize) -> &mut VersionStripe {
        self.guards[stripe]
            .as_deref_mut()
            .expect("stripe locked for this batch")
    }
}

/// Every operation since the last installed reader, by sequence number.
#[derive(Default, Debug)]
pub struct Tail {
    current: BTreeMap<i64, SharedOperation>,
    refreshing: BTreeMap<i64, SharedOperation>,
}

impl Tail {
    /// Adds an operation.
    pub fn insert(&mut self, operation: SharedOperation) {
        self.current.insert(operation.seq_no.0, operation);
    }

    /// Starts a refresh.
    pub fn begin_refresh(&mut self) {
        assert!(self.refreshing.is_empty(), "refreshes do not overlap");
        self.refreshing = std::mem::take(&mut self.current);
    }

    /// Ends a refresh: operations of the refreshing generation are in the reader now. Returns
    /// them, for the caller to drop outside its locks.
    pub fn end_refresh(&mut self) -> BTreeMap<i64, SharedOperation> {
        std::mem::take(&mut self.refreshing)
    }

    /// Appends the operations with sequence numbers in `[from, to]` to `out` (unordered between
    /// generations; the caller sorts).
    pub fn collect_range(&self, from: SeqNo, to: SeqNo, out: &mut Vec<SharedOperation>) {
        for map in [&self.refreshing, &self.current] {
            out.extend(map.range(from.0..=to.0).map(|(_, op)| op.clone()));
        }
    }

    /// Number of operations held.
    pub fn len(&self) -> usize {
        self.current.len() + self.refreshing.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::types::{Operation, OperationKind, PrimaryTerm};

    fn op(seq_no: i64, id: &str) -> SharedOperation {
        Arc::new(Operation {
            seq_no: SeqNo(seq_no),
            primary_term: PrimaryTerm(1),
            version: 1,
            kind: OperationKind::Index {
                id: id.to_string(),
                source: b"{}".to_vec(),
            },
        })
    }

    #[test]
    fn refreshing_generation_stays_visible_until_the_refresh_ends() {
        let map = LiveVersionMap::default();
        map.lock("a").put(
            "a",
            VersionValue {
                operation: op(0, "a"),
            },
        );
        map.begin_refresh();
        assert!(map.lock("a").get("a").is_some(), "visible while refreshing");
        map.lock("b").put(
            "b",
            VersionValue {
                operation: op(1, "b"),
            },
        );
        map.end_refresh();
        assert!(
            map.lock("a").get("a").is_none(),
            "now served by the new reader"
        );
        assert!(
            map.lock("b").get("b").is_some(),
            "written during the refresh"
        );
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn locked_stripes_cover_every_requested_key() {
        let map = LiveVersionMap::default();
        let keys = ["x", "y", "z", "x"];
        let stripes = keys.iter().map(|key| map.stripe_of(*key)).collect();
        let mut locked = map.lock_many(stripes);
        for key in keys {
            locked.get(map.stripe_of(key)).put(
                key,
                VersionValue {
                    operation: op(0, key),
                },
            );
        }
        drop(locked);
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn tail_serves_both_generations_by_range() {
        let mut tail = Tail::default();
        for seq_no in 0..5 {
            tail.insert(op(seq_no, "a"));
        }
        tail.begin_refresh();
        for seq_no in 5..8 {
            tail.insert(op(seq_no, "a"));
        }
        let mut out = Vec::new();
        tail.collect_range(SeqNo(3), SeqNo(6), &mut out);
        let mut seq_nos: Vec<i64> = out.iter().map(|op| op.seq_no.0).collect();
        seq_nos.sort_unstable();
        assert_eq!(seq_nos, vec![3, 4, 5, 6]);
        tail.end_refresh();
        assert_eq!(tail.len(), 3);
    }
}
